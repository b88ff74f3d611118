//! Records that decode but PostgreSQL refuses (a NUL byte in text, a timestamp out of
//! range) are dead-lettered with their SQLSTATE, and their neighbours in the batch are
//! stored, with the offsets of all of them (real Kafka and PostgreSQL from `./dev up`).

mod common;

use std::time::Duration;

use common::{connect, count, eventually, read_topic, sandbox, tick};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::Outbox;
use strikeflow_schemas::{encode, Instrument, InstrumentType};
use tokio_util::sync::CancellationToken;

fn future(token: i64, symbol: &str) -> Instrument {
    Instrument {
        instrument_token: token,
        exchange_token: token / 256,
        tradingsymbol: symbol.to_owned(),
        name: "NIFTY".into(),
        last_price: 24_500.0,
        expiry: Some(20_816),
        strike: 0.0,
        tick_size: 0.05,
        lot_size: 75,
        instrument_type: InstrumentType::FUT,
        segment: "NFO-FUT".into(),
        exchange: "NFO".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_rows_are_dead_lettered_with_their_sqlstate_and_neighbours_stored() {
    let config = sandbox("sinkpoison").await;
    let topics = config.kafka.topics.clone();
    let db = connect(&config.database_url).await;
    let mut outbox = Outbox::connect(&config.kafka.brokers).unwrap();

    // Instruments: good, a NUL byte in the symbol (22021), good.
    let instruments = [
        future(101, "NIFTY26DECFUT"),
        future(102, "NIFTY\u{0}26DECFUT"),
        future(103, "NIFTY27JANFUT"),
    ];
    for i in &instruments {
        let payload = encode(i).unwrap();
        outbox
            .send_record(
                FutureRecord::to(&topics.instruments())
                    .key(&i.instrument_token.to_string())
                    .payload(&payload),
            )
            .unwrap();
    }
    // Ticks in one partition: 20 good ones around one ~146,000 years BC (22008).
    let mut ticks = Vec::new();
    for second in 0..21 {
        let mut t = tick(256_265, second);
        if second == 10 {
            t.exchange_ts = i64::MIN / 2;
        }
        ticks.push(encode(&t).unwrap());
    }
    for payload in &ticks {
        outbox
            .send_record(
                FutureRecord::to(&topics.ticks())
                    .partition(0)
                    .key("NIFTY")
                    .payload(payload),
            )
            .unwrap();
    }
    outbox.flush().await.unwrap();

    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.clone(), stop.clone()));
    eventually("the offsets past every record", Duration::from_secs(20), || async {
        let n = count(
            &db,
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM sink_offsets WHERE consumer = 'sink'",
        )
        .await;
        (n == 3 + 21).then_some(())
    })
    .await;
    stop.cancel();
    sink.await.unwrap().expect("graceful stop");

    let tokens: Vec<i64> = db
        .query("SELECT instrument_token FROM instruments ORDER BY 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        tokens,
        [101, 103],
        "the neighbours of the refused instrument"
    );
    assert_eq!(count(&db, "SELECT count(*) FROM ticks").await, 20);
    assert_eq!(
        count(&db, "SELECT count(DISTINCT ts) FROM ticks").await,
        20,
        "each good tick once"
    );

    let letters = read_topic(
        &config.kafka.brokers,
        &topics.dead_letter(&topics.instruments()),
        1,
    )
    .await;
    let letter = &letters[0];
    assert_eq!(letter.payload, encode(&instruments[1]).unwrap());
    let reason = letter.header("reason").unwrap_or_default();
    assert!(reason.starts_with("SQLSTATE 22021"), "{reason}");
    assert_eq!(letter.header("stage"), Some("sink"));
    assert_eq!(letter.header("source.offset"), Some("1"));

    let letters = read_topic(
        &config.kafka.brokers,
        &topics.dead_letter(&topics.ticks()),
        1,
    )
    .await;
    let reason = letters[0].header("reason").unwrap_or_default();
    assert!(reason.starts_with("SQLSTATE 22008"), "{reason}");
    assert_eq!(letters[0].header("source.offset"), Some("10"));
    assert_eq!(letters[0].payload, ticks[10]);
}
