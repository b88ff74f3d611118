//! One sink per name: a second sink with a running sink's `consumer_name` refuses to start,
//! naming the holder, and a session that does not hold the name's lock cannot commit a
//! batch (real Kafka and PostgreSQL from `./dev up`).

mod common;

use std::time::Duration;

use common::{connect, count, eventually, sandbox, tick};
use strikeflow_kafka::rdkafka::message::OwnedMessage;
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::rdkafka::Timestamp;
use strikeflow_kafka::Outbox;
use strikeflow_schemas::encode;
use strikeflow_sink::{Batch, SinkError, Sources};
use tokio_util::sync::CancellationToken;

/// Publishes ticks `from..to` (distinct seconds, so every row is distinct) over the ticks
/// topic's partitions.
async fn publish(outbox: &mut Outbox, topic: &str, from: i64, to: i64) {
    for second in from..to {
        let payload = encode(&tick(256_265, second)).unwrap();
        let record = FutureRecord::to(topic)
            .partition((second % 3) as i32)
            .key("NIFTY")
            .payload(&payload);
        outbox.send_record(record).unwrap();
    }
    outbox.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sink_with_the_same_name_refuses_and_rows_stay_exact() {
    let config = sandbox("sinkown").await;
    let ticks = config.kafka.topics.ticks();
    let db = connect(&config.database_url).await;
    let mut outbox = Outbox::connect(&config.kafka.brokers).unwrap();
    publish(&mut outbox, &ticks, 0, 100).await;

    let stop_first = CancellationToken::new();
    let first = tokio::spawn(strikeflow_sink::run(config.clone(), stop_first.clone()));
    eventually(
        "the first sink to store",
        Duration::from_secs(20),
        || async { (count(&db, "SELECT count(*) FROM ticks").await == 100).then_some(()) },
    )
    .await;

    // The same name again: refused within the claim's grace, naming the holder.
    let second = tokio::time::timeout(
        Duration::from_secs(15),
        strikeflow_sink::run(config.clone(), CancellationToken::new()),
    )
    .await
    .expect("the second sink answers within 15 s");
    let error = second.expect_err("a second sink with the same name must refuse");
    assert!(matches!(error, SinkError::AlreadyRunning { .. }), "{error}");
    let message = error.to_string();
    for part in ["\"sink\"", "pid ", "strikeflow sink sink"] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    let named: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = 'strikeflow sink sink' AND datname = current_database()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(named, 1, "only the first sink's session remains");

    // The first goes on storing; once it stopped, the name is free again.
    publish(&mut outbox, &ticks, 100, 150).await;
    eventually(
        "the first sink to go on",
        Duration::from_secs(20),
        || async { (count(&db, "SELECT count(*) FROM ticks").await == 150).then_some(()) },
    )
    .await;
    stop_first.cancel();
    first.await.unwrap().expect("graceful stop");

    let stop = CancellationToken::new();
    let again = tokio::spawn(strikeflow_sink::run(config.clone(), stop.clone()));
    publish(&mut outbox, &ticks, 150, 200).await;
    eventually(
        "the restarted sink to store",
        Duration::from_secs(20),
        || async { (count(&db, "SELECT count(*) FROM ticks").await >= 200).then_some(()) },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    again.await.unwrap().expect("graceful stop");

    let (rows, distinct): (i64, i64) = {
        let row = db
            .query_one(
                "SELECT count(*), count(DISTINCT (instrument_token, ts)) FROM ticks",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((rows, distinct), (200, 200), "every tick stored once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_without_the_lock_cannot_commit_a_batch() {
    let config = sandbox("sinkfence").await;
    let sources = Sources::new(&config.kafka.topics);
    let ticks = config.kafka.topics.ticks();
    let msg = OwnedMessage::new(
        Some(encode(&tick(1, 1)).unwrap()),
        Some(b"NIFTY".to_vec()),
        ticks.clone(),
        Timestamp::NotAvailable,
        0,
        0,
        None,
    );
    // Never contacted: nothing is dead-lettered.
    let mut outbox = Outbox::connect(&strikeflow_kafka::Brokers::plaintext("127.0.0.1:1")).unwrap();
    let mut batch = Batch::new(&sources);
    batch.add(&msg, &mut outbox).unwrap();

    let mut client = connect(&config.database_url).await;
    let error = strikeflow_sink::write_batch(&mut client, "sink", &batch)
        .await
        .expect_err("no lock, no commit");
    assert!(matches!(error, SinkError::Fenced { .. }), "{error}");
    assert_eq!(count(&client, "SELECT count(*) FROM ticks").await, 0);
    assert_eq!(count(&client, "SELECT count(*) FROM sink_offsets").await, 0);
}
