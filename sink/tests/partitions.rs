//! Partitions added to an input topic while the sink runs are read without a restart, and a
//! stored offset whose records expired from Kafka stops the sink loudly, with a metric
//! (real Kafka and PostgreSQL from `./dev up`).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{admin, connect, count, eventually, sandbox, tick};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use strikeflow_kafka::rdkafka::admin::{AdminOptions, NewPartitions};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::Outbox;
use strikeflow_schemas::encode;
use strikeflow_sink::SinkError;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_added_while_the_sink_runs_is_consumed() {
    let config = sandbox("sinkparts").await;
    let late = config.kafka.topics.late();
    let db = connect(&config.database_url).await;
    let send = |partition: i32, second: i64| {
        let brokers = config.kafka.brokers.clone();
        let late = late.clone();
        async move {
            // A fresh producer sees the partitions that exist now.
            let mut outbox = Outbox::connect(&brokers).unwrap();
            let payload = encode(&tick(1, second)).unwrap();
            outbox
                .send_record(
                    FutureRecord::to(&late)
                        .partition(partition)
                        .key("x")
                        .payload(&payload),
                )
                .unwrap();
            outbox.flush().await
        }
    };
    send(0, 1).await.unwrap();

    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.clone(), stop.clone()));
    eventually("the first late tick", Duration::from_secs(20), || async {
        (count(&db, "SELECT count(*) FROM late_ticks").await == 1).then_some(())
    })
    .await;

    let results = admin(&config.kafka.brokers)
        .create_partitions(
            &[NewPartitions::new(&late, 2)],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    eventually(
        "a send to the new partition",
        Duration::from_secs(10),
        || async { send(1, 2).await.ok() },
    )
    .await;
    eventually(
        "the tick in the new partition stored",
        Duration::from_secs(20),
        || async { (count(&db, "SELECT count(*) FROM late_ticks").await == 2).then_some(()) },
    )
    .await;
    stop.cancel();
    sink.await.unwrap().expect("graceful stop");
    let next: i64 = db
        .query_one(
            "SELECT next_offset FROM sink_offsets WHERE topic = $1 AND partition = 1",
            &[&late],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 1);
}

/// Counts counters by name and labels, for the one test that reads a metric.
#[derive(Default)]
struct Counters(Mutex<HashMap<String, Arc<Count>>>);

#[derive(Default)]
struct Count(AtomicU64);

impl CounterFn for Count {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

impl Counters {
    fn get(&self, key: &str) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(key)
            .map_or(0, |c| c.0.load(Ordering::Relaxed))
    }
}

impl Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut name = key.name().to_owned();
        for label in key.labels() {
            name.push_str(&format!(",{}={}", label.key(), label.value()));
        }
        let count = self.0.lock().unwrap().entry(name).or_default().clone();
        Counter::from_arc(count)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

// One thread, so the recorder installed for this thread sees what the sink counts.
#[tokio::test(flavor = "current_thread")]
async fn a_stored_offset_below_the_log_start_stops_the_sink_with_a_metric() {
    let config = sandbox("sinkgap").await;
    let ticks = config.kafka.topics.ticks();
    let db = connect(&config.database_url).await;
    let mut outbox = Outbox::connect(&config.kafka.brokers).unwrap();
    publish_ticks(&mut outbox, &ticks, 0, 10).await;
    // The sink stored up to offset 2, then went away; records before 5 expired meanwhile.
    db.execute(
        "INSERT INTO sink_offsets (consumer, topic, partition, next_offset) VALUES ('sink', $1, 0, 2)",
        &[&ticks],
    )
    .await
    .unwrap();
    expire_before(&config.kafka.brokers, &ticks, 5).await;

    let counters = Counters::default();
    let _guard = metrics::set_default_local_recorder(&counters);
    let error = tokio::time::timeout(
        Duration::from_secs(20),
        strikeflow_sink::run(config.clone(), CancellationToken::new()),
    )
    .await
    .expect("the sink stops within 20 s")
    .expect_err("a gap stops the sink");
    match &error {
        SinkError::OffsetGap {
            topic,
            partition,
            stored,
            log_start,
        } => assert_eq!(
            (topic.as_str(), *partition, *stored, *log_start),
            (ticks.as_str(), 0, 2, 5)
        ),
        other => panic!("expected an offset gap, got {other}"),
    }
    assert_eq!(
        counters.get(&format!("sink_offset_gaps_total,topic={ticks}")),
        1
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM ticks").await,
        0,
        "nothing stored"
    );
    let next: i64 = db
        .query_one("SELECT next_offset FROM sink_offsets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 2, "the stored offset is left for the operator");
}

/// Deletes the records of partition 0 of `topic` before `offset` (as retention would).
async fn expire_before(brokers: &strikeflow_kafka::Brokers, topic: &str, offset: i64) {
    let mut expire = TopicPartitionList::new();
    expire
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    admin(brokers)
        .delete_records(
            &expire,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("deleting records");
}

/// Publishes `n` ticks (seconds `from..from + n` of token 1) to partition 0 of `topic`.
async fn publish_ticks(outbox: &mut Outbox, topic: &str, from: i64, n: i64) {
    for second in from..from + n {
        let payload = encode(&tick(1, second)).unwrap();
        outbox
            .send_record(
                FutureRecord::to(topic)
                    .partition(0)
                    .key("x")
                    .payload(&payload),
            )
            .unwrap();
    }
    outbox.flush().await.unwrap();
}

// One thread, so the recorder installed for this thread sees what the sink counts.
#[tokio::test(flavor = "current_thread")]
async fn records_expiring_while_the_sink_lags_stop_it_with_a_metric() {
    const BACKLOG: i64 = 150_000;
    let mut config = sandbox("sinklag").await;
    config.settings.batch_rows = 1_000;
    let ticks = config.kafka.topics.ticks();
    let db = connect(&config.database_url).await;
    let mut outbox = Outbox::connect(&config.kafka.brokers).unwrap();
    publish_ticks(&mut outbox, &ticks, 0, 10).await;

    let counters = Counters::default();
    let _guard = metrics::set_default_local_recorder(&counters);
    let sink = tokio::spawn(strikeflow_sink::run(
        config.clone(),
        CancellationToken::new(),
    ));
    eventually(
        "the first ticks stored",
        Duration::from_secs(30),
        || async { (count(&db, "SELECT count(*) FROM ticks").await == 10).then_some(()) },
    )
    .await;

    // The sink lags: its next batch waits for the test's lock on ticks while a backlog far
    // larger than its read-ahead (two batches) arrives, and then expires unread.
    let blocker = connect(&config.database_url).await;
    blocker
        .batch_execute("BEGIN; LOCK TABLE ticks IN EXCLUSIVE MODE")
        .await
        .unwrap();
    publish_ticks(&mut outbox, &ticks, 10, BACKLOG).await;
    eventually(
        "the sink waiting for the lock",
        Duration::from_secs(30),
        || async {
            let waiting: i64 = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = 'strikeflow sink sink' AND wait_event_type = 'Lock'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            (waiting == 1).then_some(())
        },
    )
    .await;
    let end = 10 + BACKLOG;
    expire_before(&config.kafka.brokers, &ticks, end).await;
    blocker.batch_execute("ROLLBACK").await.unwrap();

    let error = tokio::time::timeout(Duration::from_secs(120), sink)
        .await
        .expect("the sink stops within 120 s")
        .unwrap()
        .expect_err("records expiring unread stop the sink");
    let next: i64 = db
        .query_one(
            "SELECT next_offset FROM sink_offsets WHERE topic = $1",
            &[&ticks],
        )
        .await
        .unwrap()
        .get(0);
    match &error {
        SinkError::OffsetGap {
            topic,
            partition,
            stored,
            log_start,
        } => assert_eq!(
            (topic.as_str(), *partition, *stored, *log_start),
            (ticks.as_str(), 0, next, end)
        ),
        other => panic!("expected an offset gap, got {other}"),
    }
    assert!(
        (10..end).contains(&next),
        "the sink stored what it had read ahead ({next}), not the expired rest"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM ticks").await,
        next,
        "every record before the stored offset is stored, once"
    );
    assert_eq!(
        counters.get(&format!("sink_offset_gaps_total,topic={ticks}")),
        1
    );
}
