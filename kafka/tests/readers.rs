//! The compacted-topic reader and the batch collector against the real broker of
//! `./dev up` (`KAFKA_BROKERS` to use another).

use std::time::{Duration, Instant};

use rand::Rng;
use strikeflow_kafka::rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use strikeflow_kafka::rdkafka::client::DefaultClientContext;
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::message::Message;
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::{
    client_config, delete_topics, ensure_topics, reader_config, BatchCollector, Brokers,
    CompactedReader, KafkaError, Outbox,
};
use strikeflow_schemas::TopicSpec;

fn brokers() -> Brokers {
    Brokers::plaintext(
        std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".to_owned()),
    )
}

/// A fresh topic of `partitions` partitions.
async fn topic(label: &str, partitions: i32, compacted: bool) -> String {
    let name = format!("kafka-test-{label}-{:08x}", rand::rng().random::<u32>());
    let spec = TopicSpec {
        name: name.clone(),
        partitions,
        compacted,
        max_message_bytes: None,
    };
    ensure_topics(&brokers(), &[spec], 1)
        .await
        .expect("creating a topic (is Kafka up? ./dev up)");
    name
}

/// Writes `values` to one partition and waits for their acknowledgements.
async fn produce(outbox: &mut Outbox, topic: &str, partition: i32, values: &[String]) {
    for value in values {
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(value)
            .payload(value);
        outbox.send_record(record).expect("enqueued");
    }
    outbox.flush().await.expect("acknowledged");
}

/// [`produce`] to a partition added a moment ago: a producer knows only the partitions of
/// its last metadata, so a fresh one is tried until the broker's metadata has the new one.
async fn produce_to_new_partition(topic: &str, partition: i32, values: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut outbox = Outbox::connect(&brokers()).expect("a producer");
        let sent = values.iter().try_for_each(|value| {
            outbox.send_record(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(value)
                    .payload(value),
            )
        });
        match sent {
            Ok(()) => match outbox.flush().await {
                Ok(()) => return,
                Err(e) => assert!(Instant::now() < deadline, "producing: {e}"),
            },
            Err(e) => assert!(Instant::now() < deadline, "producing: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn text<M: Message>(msg: &M) -> Option<String> {
    msg.payload()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

#[tokio::test]
async fn catch_up_reads_every_partition_then_follows_new_partitions() {
    let topic = topic("compacted", 2, true).await;
    let mut outbox = Outbox::connect(&brokers()).expect("a producer");
    let (p0, p1) = (values("p0", 30), values("p1", 20));
    produce(&mut outbox, &topic, 0, &p0).await;
    produce(&mut outbox, &topic, 1, &p1).await;

    let mut reader = CompactedReader::new(&brokers(), &topic, "kafka-test").expect("a reader");
    let mut read = reader.catch_up(Duration::from_secs(30), |m| text(m)).await;
    assert!(reader.caught_up(), "both partitions reached their end");
    assert_eq!(reader.partitions(), 2);
    read.sort();
    let mut expected = [p0, p1].concat();
    expected.sort();
    assert_eq!(read, expected, "every record of every partition, once");

    // Records written later to a known partition, then to a partition added later, are
    // followed; the new partition is read from its beginning.
    produce(&mut outbox, &topic, 1, &values("later", 1)).await;
    let admin: AdminClient<DefaultClientContext> =
        client_config(&brokers()).create().expect("an admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let added = admin
        .create_partitions(&[NewPartitions::new(&topic, 3)], &options)
        .await
        .expect("adding a partition");
    assert!(added.iter().all(Result::is_ok), "{added:?}");
    produce_to_new_partition(&topic, 2, &values("new", 3)).await;

    let mut followed = Vec::new();
    let deadline = CompactedReader::REFRESH_EVERY * 4;
    while followed.len() < 4 {
        let msg = tokio::time::timeout(deadline, reader.recv())
            .await
            .unwrap_or_else(|_| panic!("only {followed:?} followed within {deadline:?}"));
        followed.push((msg.partition(), text(&msg).expect("a payload")));
    }
    followed.sort();
    assert_eq!(
        followed,
        vec![
            (1, "later-0".to_owned()),
            (2, "new-0".to_owned()),
            (2, "new-1".to_owned()),
            (2, "new-2".to_owned()),
        ]
    );
    assert_eq!(reader.partitions(), 3);
    reader.close().await;
    delete_topics(&brokers(), &[&topic])
        .await
        .expect("cleaned up");
}

#[tokio::test]
async fn catch_up_stops_at_its_deadline() {
    // A topic that does not exist never reaches its end: catch-up returns when time is up.
    let missing = format!("kafka-test-missing-{:08x}", rand::rng().random::<u32>());
    let mut reader = CompactedReader::new(&brokers(), &missing, "kafka-test").expect("a reader");
    let limit = Duration::from_millis(800);
    let started = Instant::now();
    let read = reader.catch_up(limit, |m| text(m)).await;
    let elapsed = started.elapsed();
    assert!(read.is_empty());
    assert!(!reader.caught_up());
    assert!(elapsed >= limit, "returned after {elapsed:?}");
    assert!(
        elapsed < limit + Duration::from_secs(2),
        "returned after {elapsed:?}"
    );
    // A stage that must not start without the topic asks for its partitions directly.
    assert!(matches!(
        reader.assign_new_partitions().await,
        Err(KafkaError::MissingTopic { .. })
    ));
    reader.close().await;
}

#[tokio::test]
async fn batches_stop_at_max_records_or_after_the_wait() {
    let topic = topic("batch", 1, false).await;
    let mut outbox = Outbox::connect(&brokers()).expect("a producer");
    produce(&mut outbox, &topic, 0, &values("r", 25)).await;

    let consumer: StreamConsumer = reader_config(&brokers(), "kafka-test")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, 0, Offset::Beginning)
        .expect("a partition");
    consumer.assign(&assignment).expect("assigned");

    let wait = Duration::from_millis(500);
    let collector = BatchCollector::new("kafka-test", 10, wait);
    let mut sizes = Vec::new();
    let mut offsets = Vec::new();
    let mut last_elapsed = Duration::ZERO;
    while offsets.len() < 25 {
        let first = tokio::time::timeout(Duration::from_secs(30), collector.next(&consumer))
            .await
            .expect("a record within 30 s")
            .expect("no consumer error");
        let started = Instant::now();
        let batch = collector.fill(&consumer, first).await.expect("a batch");
        last_elapsed = started.elapsed();
        sizes.push(batch.len());
        offsets.extend(batch.iter().map(|m| m.offset()));
    }
    assert_eq!(sizes, vec![10, 10, 5], "full batches, then the rest");
    assert_eq!(
        offsets,
        (0..25).collect::<Vec<i64>>(),
        "in order, none twice"
    );
    // The last batch could not fill, so it waited for the time limit (end-of-partition
    // markers in between did not end it).
    assert!(
        last_elapsed >= wait,
        "the short batch took {last_elapsed:?}"
    );
}
