//! Upserted tables end with the latest value per key, once, whether a batch's keys are new
//! (COPY straight into the table) or some are stored already (the COPY is refused with a
//! unique violation and the batch is merged through the stage table instead); values come
//! back exactly as published through the hand-written binary COPY (`sink/src/copy.rs`)
//! (real Kafka and PostgreSQL from `./dev up`).

mod common;

use std::time::Duration;

use common::{connect, count, eventually, sandbox};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::Outbox;
use strikeflow_schemas::{
    encode, AvroRecord, Bar, BuildUp, NoIvReason, OptionSide, StrikeAnalytics,
};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// 2025-12-17 20:00 UTC, in micros.
const T0: i64 = 1_766_001_600_000_000;
/// 2027-01-28, days since 1970-01-01.
const EXPIRY: i32 = 20_846;

fn strike(token: i64, second: i64, ltp: f64) -> StrikeAnalytics {
    StrikeAnalytics {
        instrument_token: token,
        tradingsymbol: format!("NIFTY27JAN{token}CE"),
        underlying: "NIFTY".into(),
        expiry: EXPIRY,
        strike: 24_500.0 + token as f64,
        option_type: OptionSide::CE,
        ts: T0 + second * 1_000_000,
        ltp,
        ltp_change_prev_close: Some(-1.25),
        oi: 1_500,
        oi_change_prev_close: None,
        oi_change_window: Some(-75),
        volume: 9_000,
        bid: ltp - 0.05,
        ask: ltp + 0.05,
        iv: Some(0.1234),
        no_iv_reason: None,
        delta: Some(0.5),
        gamma: Some(0.0003),
        theta: Some(-7.5),
        vega: Some(12.0),
        rho: Some(3.0),
        build_up: BuildUp::LongBuildup,
        strike_pcr: None,
        gex: Some(1e9),
    }
}

fn bar(token: i64, minute: i64, close: f64) -> Bar {
    let window_start = T0 + minute * 60_000_000;
    Bar {
        instrument_token: token,
        window_start,
        window_end: window_start + 60_000_000,
        open: 100.0,
        high: 101.0,
        low: 99.0,
        close,
        volume: 10,
        oi: 20,
        tick_count: 3,
    }
}

async fn publish<T: AvroRecord>(outbox: &mut Outbox, topic: &str, records: &[T]) {
    for record in records {
        let payload = encode(record).unwrap();
        outbox
            .send_record(FutureRecord::to(topic).key("NIFTY").payload(&payload))
            .unwrap();
    }
    outbox.flush().await.unwrap();
}

/// Waits until the sink's offsets cover `records` records of `topic`.
async fn stored(db: &Client, topic: &str, records: i64) {
    let sql = format!(
        "SELECT coalesce(sum(next_offset), 0)::bigint FROM sink_offsets \
         WHERE consumer = 'sink' AND topic = '{topic}'"
    );
    eventually(
        &format!("{records} records of {topic} stored"),
        Duration::from_secs(30),
        || async { (count(db, &sql).await >= records).then_some(()) },
    )
    .await;
}

/// The stored strike rows as (token, seconds after T0, ltp, iv, no_iv_reason), by key.
async fn strikes(db: &Client) -> Vec<(i64, i64, f64, Option<f64>, Option<String>)> {
    db.query(
        "SELECT instrument_token, (extract(epoch FROM ts) * 1000000)::bigint, ltp, iv, no_iv_reason \
         FROM strike_analytics ORDER BY instrument_token, ts",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| {
        (
            r.get(0),
            (r.get::<_, i64>(1) - T0) / 1_000_000,
            r.get(2),
            r.get(3),
            r.get(4),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn re_emitted_keys_keep_the_latest_value_once() {
    let config = sandbox("sinkupsert").await;
    let topics = config.kafka.topics.clone();
    let db = connect(&config.database_url).await;
    let mut outbox = Outbox::connect(&config.kafka.brokers).unwrap();
    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.clone(), stop.clone()));

    // New keys only: the direct COPY stores them.
    publish(
        &mut outbox,
        &topics.strikes(),
        &[strike(1, 0, 10.0), strike(2, 0, 20.0)],
    )
    .await;
    publish(&mut outbox, &topics.bars(), &[bar(1, 0, 100.5)]).await;
    stored(&db, &topics.strikes(), 2).await;
    stored(&db, &topics.bars(), 1).await;
    assert_eq!(
        strikes(&db).await,
        [
            (1, 0, 10.0, Some(0.1234), None),
            (2, 0, 20.0, Some(0.1234), None)
        ]
    );
    // Every column reads back as published.
    let row = db
        .query_one(
            "SELECT tradingsymbol, expiry = DATE '2027-01-28', option_type, ltp_change_prev_close, \
             oi_change_prev_close, oi_change_window, build_up, strike_pcr, gex, bid, ask \
             FROM strike_analytics WHERE instrument_token = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "NIFTY27JAN1CE");
    assert!(row.get::<_, bool>(1), "expiry");
    assert_eq!(row.get::<_, String>(2), "CE");
    assert_eq!(row.get::<_, Option<f64>>(3), Some(-1.25));
    assert_eq!(row.get::<_, Option<i64>>(4), None);
    assert_eq!(row.get::<_, Option<i64>>(5), Some(-75));
    assert_eq!(row.get::<_, String>(6), "LONG_BUILDUP");
    assert_eq!(row.get::<_, Option<f64>>(7), None);
    assert_eq!(row.get::<_, Option<f64>>(8), Some(1e9));
    assert_eq!((row.get::<_, f64>(9), row.get::<_, f64>(10)), (9.95, 10.05));

    // A batch mixing stored keys (one changed, one identical) with a new one, and a key
    // that comes twice: the direct COPY is refused and the merge keeps the latest.
    let mut changed = strike(1, 0, 11.0);
    changed.iv = None;
    changed.no_iv_reason = Some(NoIvReason::NoTwoSidedMarket);
    publish(
        &mut outbox,
        &topics.strikes(),
        &[
            changed,
            strike(2, 0, 20.0),
            strike(3, 5, 30.0),
            strike(3, 5, 31.0),
        ],
    )
    .await;
    publish(
        &mut outbox,
        &topics.bars(),
        &[bar(1, 0, 100.75), bar(1, 1, 102.0)],
    )
    .await;
    stored(&db, &topics.strikes(), 6).await;
    stored(&db, &topics.bars(), 3).await;
    assert_eq!(
        strikes(&db).await,
        [
            (1, 0, 11.0, None, Some("NO_TWO_SIDED_MARKET".to_owned())),
            (2, 0, 20.0, Some(0.1234), None),
            (3, 5, 31.0, Some(0.1234), None),
        ]
    );
    let closes: Vec<(i64, f64)> = db
        .query(
            "SELECT instrument_token, close FROM bars_1m ORDER BY window_start",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(closes, [(1, 100.75), (1, 102.0)]);

    // New keys again after a merge (which sends the next batches straight to the merge):
    // stored, and nothing of the earlier batch is merged again from the stage.
    publish(&mut outbox, &topics.strikes(), &[strike(4, 9, 40.0)]).await;
    stored(&db, &topics.strikes(), 7).await;
    assert_eq!(count(&db, "SELECT count(*) FROM strike_analytics").await, 4);

    stop.cancel();
    sink.await.unwrap().expect("graceful stop");
}
