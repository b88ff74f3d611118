//! Complete sessions, end to end on the real services: a simulated session that ends is
//! closed by the simulator's end-of-session marker, so the 15:29 bar of every instrument
//! and the chain analytics at 15:30 are published (and stored) without any later tick.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{count, eventually, read_all, Sandbox};
use strikeflow_ingest::{MarketSimulator, SimulatorConfig};
use strikeflow_schemas::{decode, Bar, ChainAnalytics, Tick, Watermark};
use tokio_util::sync::CancellationToken;

const MINUTE: i64 = 60_000_000;
const LATENESS_MS: u64 = 2_000;

/// Start of the one-minute window holding `ts`.
fn minute_of(ts: i64) -> i64 {
    ts - ts.rem_euclid(MINUTE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_session_closes_its_last_bars_and_analytics() {
    let mut sandbox = Sandbox::new("close").await;
    let config = &mut sandbox.config;
    // One tick per event second over the single-chain market (12 instruments): a whole
    // session is 22,499 ticks, published as fast as Kafka takes them.
    let mut market = SimulatorConfig::single_chain();
    market.tick_interval_ms = 1_000;
    config.simulate.market = market.clone();
    config.simulate.rate = 0.0;
    config.processor.allowed_lateness_ms = LATENESS_MS;
    config.processor.group_id = format!("{}-processors", sandbox.name);

    // The same seeded session, generated here up to its last tick: what must come out.
    let mut simulator = MarketSimulator::new(&market).expect("the test market");
    let mut session: Vec<Tick> = Vec::new();
    let close = loop {
        session.push(simulator.next_tick());
        if let Some(close) = simulator.session_over() {
            break close;
        }
    };
    config.simulate.max_ticks = session.len() as u64;
    let config = sandbox.config.clone();
    let last_tick = session.last().map(|t| t.exchange_ts).unwrap_or_default();
    assert!(
        last_tick < close && last_tick >= close - MINUTE,
        "the session's last tick is in 15:29"
    );
    let expected_bars: BTreeSet<(i64, i64)> = session
        .iter()
        .map(|t| (t.instrument_token, minute_of(t.exchange_ts)))
        .collect();
    let last_minute: BTreeSet<i64> = session
        .iter()
        .filter(|t| t.exchange_ts >= close - MINUTE)
        .map(|t| t.instrument_token)
        .collect();
    assert!(
        last_minute.len() >= 6,
        "most instruments trade in the last minute: {last_minute:?}"
    );

    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));
    let report = strikeflow_ingest::run_simulation(config.simulate(), shutdown.clone())
        .await
        .expect("simulation");
    assert_eq!(report.ticks, session.len() as u64);
    assert_eq!(report.markers, 1, "one session ended");

    // The marker is in every ticks partition, after the session's ticks.
    let topics = config.topics();
    let ticks = read_all(&config.kafka.brokers, &topics.ticks());
    let markers: Vec<(i32, Watermark)> = ticks
        .iter()
        .filter(|r| r.watermark)
        .map(|r| (r.partition, decode(&r.payload).expect("a marker")))
        .collect();
    let partitions: BTreeSet<i32> = ticks.iter().map(|r| r.partition).collect();
    assert_eq!(markers.len(), partitions.len(), "{markers:?}");
    assert!(markers
        .iter()
        .all(|(_, m)| m.event_ts == close && m.source == "simulator"));
    let newest_tick = ticks
        .iter()
        .filter(|r| !r.watermark)
        .map(|r| decode::<Tick>(&r.payload).expect("a tick").exchange_ts)
        .max();
    assert_eq!(newest_tick, Some(last_tick), "no tick after the session");

    // Every bar of the session is on bars.v1, the 15:29 bars included, with no later tick:
    // without the marker the watermark would stop at 15:29:57 and leave 15:29 open.
    let bars = eventually(
        &format!("{} bars on bars.v1", expected_bars.len()),
        Duration::from_secs(120),
        || async {
            let bars: Vec<Bar> = read_all(&config.kafka.brokers, &topics.bars())
                .iter()
                .map(|r| decode(&r.payload).expect("a bar"))
                .collect();
            (bars.len() >= expected_bars.len()).then_some(bars)
        },
    )
    .await;
    let got: BTreeSet<(i64, i64)> = bars
        .iter()
        .map(|b| (b.instrument_token, b.window_start))
        .collect();
    assert_eq!(bars.len(), got.len(), "no bar published twice");
    assert_eq!(got, expected_bars);
    let closed_last: BTreeSet<i64> = bars
        .iter()
        .filter(|b| b.window_start == close - MINUTE)
        .map(|b| b.instrument_token)
        .collect();
    assert_eq!(closed_last, last_minute, "every 15:29 bar closed");

    // The chain emitted at the close itself, flagged as a minute close.
    let chains: Vec<ChainAnalytics> = read_all(&config.kafka.brokers, &topics.chains())
        .iter()
        .map(|r| decode(&r.payload).expect("chain analytics"))
        .collect();
    let at_close: Vec<&ChainAnalytics> = chains.iter().filter(|c| c.ts == close).collect();
    assert!(!at_close.is_empty(), "a chain emission at 15:30");
    assert!(at_close.iter().all(|c| c.minute_close));
    assert!(chains.iter().all(|c| c.ts <= close));

    // Stored: the 15:29 bars reach PostgreSQL; the markers are not stored as ticks.
    let db = sandbox.db().await;
    let expected_last = last_minute.len() as i64;
    eventually(
        "the 15:29 bars in bars_1m",
        Duration::from_secs(60),
        || async {
            let n = count(
                &db,
                &format!(
                    "SELECT count(*) FROM bars_1m WHERE window_start = to_timestamp({}::float8 / 1e6)",
                    close - MINUTE
                ),
            )
            .await;
            (n == expected_last).then_some(())
        },
    )
    .await;
    eventually(
        "every tick, and nothing else, in the ticks table",
        Duration::from_secs(60),
        || async {
            (count(&db, "SELECT count(*) FROM ticks").await == session.len() as i64).then_some(())
        },
    )
    .await;

    shutdown.cancel();
    processor.await.unwrap().expect("processor stops cleanly");
    sink.await.unwrap().expect("sink stops cleanly");
}
