//! Reference copies of spot ticks (header `REFERENCE_COPY_HEADER`) are not stored, yet the
//! sink's offsets move past them, in the same transaction as the rows (real Kafka and
//! PostgreSQL from `./dev up`).

mod common;

use std::time::{Duration, Instant};

use strikeflow_kafka::rdkafka::message::{Header, OwnedHeaders};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::Outbox;
use strikeflow_schemas::{encode, REFERENCE_COPY_HEADER};
use tokio_util::sync::CancellationToken;

use common::{connect, sandbox, tick};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_copies_are_skipped_and_their_offsets_committed() {
    let config = sandbox("sinkref").await;
    let ticks_topic = config.kafka.topics.ticks();

    // Partition 0: primary, copy, primary of an option, copy. Partition 1: only a copy.
    let header = OwnedHeaders::new().insert(Header {
        key: REFERENCE_COPY_HEADER,
        value: Some("1"),
    });
    let spot = encode(&tick(256_265, 1)).unwrap();
    let spot_later = encode(&tick(256_265, 2)).unwrap();
    let option = encode(&tick(12_345_602, 1)).unwrap();
    let mut outbox = Outbox::connect(&config.kafka.brokers).unwrap();
    let sends: [(i32, &[u8], bool); 5] = [
        (0, &spot, false),
        (0, &spot, true),
        (0, &option, false),
        (0, &spot_later, true),
        (1, &spot, true),
    ];
    for (partition, payload, copy) in sends {
        let record = FutureRecord::to(&ticks_topic)
            .partition(partition)
            .key("NIFTY")
            .payload(payload);
        let record = if copy {
            record.headers(header.clone())
        } else {
            record
        };
        outbox.send_record(record).unwrap();
        // One at a time, so the offsets are the order above.
        outbox.flush().await.unwrap();
    }

    let db = connect(&config.database_url).await;
    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.clone(), stop.clone()));
    let started = Instant::now();
    let offsets = loop {
        let rows = db
            .query(
                "SELECT partition, next_offset FROM sink_offsets \
                 WHERE consumer = 'sink' AND topic = $1 ORDER BY partition",
                &[&ticks_topic],
            )
            .await
            .unwrap();
        let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if offsets == [(0, 4), (1, 1)] {
            break offsets;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sink did not commit past the copies: {offsets:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Give a sink that stores copies the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    sink.await.unwrap().expect("graceful stop");

    assert_eq!(offsets, [(0, 4), (1, 1)], "offsets move past every copy");
    let stored: Vec<(i64, i64)> = db
        .query(
            "SELECT instrument_token, (extract(epoch FROM ts) * 1000000)::bigint FROM ticks \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        stored,
        vec![
            (256_265, tick(256_265, 1).exchange_ts),
            (12_345_602, tick(12_345_602, 1).exchange_ts),
        ],
        "only the primaries are stored"
    );
}
