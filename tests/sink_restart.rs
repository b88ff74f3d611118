//! The sink stores offsets in the same transaction as rows: crashing or stopping it
//! mid-stream and starting it again loses and duplicates nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{count, eventually, Sandbox};
use strikeflow_ingest::{MarketSimulator, SimulatorConfig};
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::message::{Headers, Message};
use strikeflow_kafka::{consumer_config, Outbox};
use tokio_util::sync::CancellationToken;

const TICKS: u64 = 30_000;

/// (token, micros, ltp in paise): the identity and value of a tick, comparable exactly.
type TickRow = (i64, i64, i64);

async fn stored_ticks(db: &tokio_postgres::Client) -> Vec<TickRow> {
    db.query(
        "SELECT instrument_token, (extract(epoch FROM ts) * 1000000)::bigint, round(ltp * 100)::bigint FROM ticks",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_restart_lose_and_duplicate_nothing() {
    let mut sandbox = Sandbox::new("restart").await;
    // A pinned 12-instrument market: the test regenerates every tick it published.
    sandbox.config.simulate.market = SimulatorConfig::single_chain();
    sandbox.config.simulate.rate = 10_000.0; // ~3 s of stream, so the sink is stopped mid-way
    sandbox.config.simulate.max_ticks = TICKS;
    sandbox.config.sink.batch_rows = 500;
    sandbox.config.sink.batch_wait_ms = 20;
    let config = sandbox.config.clone();
    let db = sandbox.db().await;

    let feed = tokio::spawn(strikeflow_ingest::run_simulation(
        config.simulate(),
        CancellationToken::new(),
    ));

    // 1. A hard crash: the task is aborted wherever it is, possibly inside a transaction.
    let sink = tokio::spawn(strikeflow_sink::run(
        config.sink(),
        CancellationToken::new(),
    ));
    let at_crash = eventually(
        "the sink to store some ticks",
        Duration::from_secs(60),
        || async {
            let n = count(&db, "SELECT count(*) FROM ticks").await;
            if n == 0 && (sink.is_finished() || feed.is_finished()) {
                return Some(-1); // one of them stopped early: say why below
            }
            (n > 0).then_some(n)
        },
    )
    .await;
    if at_crash < 0 {
        let stopped = if sink.is_finished() {
            format!("sink: {:?}", sink.await)
        } else {
            format!("simulation: {:?}", feed.await)
        };
        panic!("a stage stopped before any tick was stored: {stopped}");
    }
    sink.abort();
    let _ = sink.await;
    assert!(
        at_crash < TICKS as i64,
        "the crash must happen mid-stream (stored {at_crash})"
    );

    // 2. Restart, then a graceful stop mid-stream, then a final run to the end.
    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    sink.await.unwrap().expect("graceful stop");
    let at_stop = count(&db, "SELECT count(*) FROM ticks").await;

    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), stop.clone()));
    let report = feed.await.unwrap().expect("simulation");
    assert_eq!(report.ticks, TICKS);
    eventually("all ticks stored", Duration::from_secs(90), || async {
        (count(&db, "SELECT count(*) FROM ticks").await >= TICKS as i64).then_some(())
    })
    .await;
    // Give a duplicating sink the chance to show itself before checking.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    sink.await.unwrap().expect("graceful stop");

    let mut stored = stored_ticks(&db).await;
    assert_eq!(
        stored.len(),
        TICKS as usize,
        "row count (crash at {at_crash}, stop at {at_stop})"
    );
    stored.sort_unstable();
    // The same seed regenerates exactly what was published.
    let mut market = MarketSimulator::new(&config.simulate.market).unwrap();
    let mut expected: Vec<TickRow> = (0..TICKS)
        .map(|_| {
            let t = market.next_tick();
            (
                t.instrument_token,
                t.exchange_ts,
                (t.ltp * 100.0).round() as i64,
            )
        })
        .collect();
    expected.sort_unstable();
    assert_eq!(stored, expected, "stored ticks differ from published ticks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_messages_are_dead_lettered_with_reason_and_skipped() {
    let sandbox = Sandbox::new("dlq").await;
    let config = sandbox.config.clone();
    let topics = config.topics();
    let db = sandbox.db().await;

    // Good ticks around one garbage message, all in one partition.
    let mut market = MarketSimulator::new(&config.simulate.market).unwrap();
    let mut outbox = Outbox::connect(&config.kafka.brokers()).unwrap();
    let garbage = b"\xC3\x01not an avro tick".to_vec();
    let mut payloads = Vec::new();
    for i in 0..10 {
        payloads.push(if i == 4 {
            garbage.clone()
        } else {
            strikeflow_schemas::encode(&market.next_tick()).unwrap()
        });
    }
    for p in &payloads {
        outbox.send(&topics.ticks(), "chain", p).unwrap();
    }
    outbox.flush().await.unwrap();

    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), stop.clone()));
    eventually("the good ticks stored", Duration::from_secs(60), || async {
        (count(&db, "SELECT count(*) FROM ticks").await == 9).then_some(())
    })
    .await;
    stop.cancel();
    sink.await.unwrap().expect("graceful stop");

    let group = format!("{}-dlq-reader", sandbox.name);
    let consumer: StreamConsumer = consumer_config(&config.kafka.brokers(), &group)
        .create()
        .unwrap();
    let dlq = topics.dead_letter(&topics.ticks());
    consumer.subscribe(&[&dlq]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("a dead letter within 30 s")
        .unwrap();
    assert_eq!(
        msg.payload(),
        Some(&garbage[..]),
        "the original bytes are kept"
    );
    let headers = msg.headers().expect("dead letters carry headers");
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    assert!(
        header("reason").is_some_and(|r| !r.is_empty()),
        "a reason is given"
    );
    assert_eq!(header("stage").as_deref(), Some("sink"));
    assert_eq!(header("source.topic"), Some(topics.ticks()));
    assert_eq!(header("source.offset").as_deref(), Some("4"));
    let distinct: BTreeSet<TickRow> = stored_ticks(&db).await.into_iter().collect();
    assert_eq!(distinct.len(), 9);
}
