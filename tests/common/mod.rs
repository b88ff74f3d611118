//! Helpers for tests against the real services started by `./dev up`.
//!
//! Every test gets its own database (created from `DATABASE_URL`, migrated) and its own
//! topic prefix, so tests run in parallel and leave each other alone.

#![allow(dead_code)] // each test binary uses a different subset

pub(crate) mod children;
pub(crate) mod private_kafka;
pub(crate) mod private_postgres;
pub(crate) mod stored;

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use strikeflow::migrate::migrate_database;
use strikeflow::Config;
use strikeflow_kafka::ensure_topics;
use strikeflow_schemas::Topics;
use tokio_postgres::{Client, NoTls};

/// Where the services are: the variables `./dev test` exports, or its defaults.
pub(crate) struct Services {
    pub brokers: String,
    pub database_url: String,
    pub redis_url: String,
}

pub(crate) fn services() -> Services {
    let var =
        |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    Services {
        brokers: var("KAFKA_BROKERS", "127.0.0.1:19092"),
        database_url: var(
            "DATABASE_URL",
            "postgres://strikeflow@127.0.0.1:15432/strikeflow",
        ),
        redis_url: var("REDIS_URL", "redis://127.0.0.1:16379"),
    }
}

/// A private, migrated database and a private set of topics, wired into a `Config`.
pub(crate) struct Sandbox {
    pub config: Config,
    pub name: String,
}

/// Routes the stages' logs to the test output, filtered by `RUST_LOG` (quiet by default).
pub(crate) fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

impl Sandbox {
    pub(crate) async fn new(label: &str) -> Sandbox {
        Self::on_server(label, &services().database_url).await
    }

    /// A sandbox whose database lives on the PostgreSQL server of `server_url` (a private
    /// cluster a test may stop) instead of `DATABASE_URL`'s.
    pub(crate) async fn on_server(label: &str, server_url: &str) -> Sandbox {
        init_logs();
        let services = services();
        let id: u32 = rand::rng().random();
        let name = format!("sf_{label}_{id:08x}");
        let admin = connect(server_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!("creating database {name} (is PostgreSQL up? ./dev up): {e}")
            });
        let database_url = with_database(server_url, &name);
        migrate_database(&database_url)
            .await
            .expect("migrating the test database");

        let mut config = Config::default();
        config.kafka.brokers = services.brokers.clone();
        config.kafka.topic_prefix = format!("{name}.");
        config.database.url = database_url;
        config.redis.url = services.redis_url.clone();
        ensure_topics(
            &config.kafka.brokers(),
            &Topics::new(config.kafka.topic_prefix.clone()).all(),
            1,
        )
        .await
        .expect("creating test topics (is Kafka up? ./dev up)");
        Sandbox { config, name }
    }

    pub(crate) async fn db(&self) -> Client {
        connect(&self.config.database.url).await
    }
}

pub(crate) async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// The same server URL pointing at another database.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("DATABASE_URL has a /database part");
    let query = url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{base}/{database}{query}")
}

/// Polls `probe` until it returns Some or `timeout` passes; panics with `what` on timeout.
pub(crate) async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Waits until every table in `expected` holds its number of rows, while `sink` runs;
/// panics naming the tables still behind after 60 s, or when the sink stopped early.
pub(crate) async fn wait_until_stored<T>(
    db: &Client,
    expected: &[(&str, usize)],
    sink: &tokio::task::JoinHandle<T>,
) {
    wait_until_stored_while(db, expected, || !sink.is_finished()).await
}

/// [`wait_until_stored`] for a sink that is not a task (a child process): `running` says
/// whether it still runs.
pub(crate) async fn wait_until_stored_while(
    db: &Client,
    expected: &[(&str, usize)],
    running: impl FnMut() -> bool,
) {
    wait_until_stored_within(db, expected, Duration::from_secs(60), running).await
}

/// [`wait_until_stored_while`] with a time limit of the caller's (a sink recovering from a
/// fault may take longer than one catching up on a quiet run).
pub(crate) async fn wait_until_stored_within(
    db: &Client,
    expected: &[(&str, usize)],
    timeout: Duration,
    mut running: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut behind = Vec::new();
        for &(table, n) in expected {
            let stored = count(db, &format!("SELECT count(*) FROM {table}")).await;
            if stored != n as i64 {
                behind.push(format!("{table} {stored}/{n}"));
            }
        }
        if behind.is_empty() {
            return;
        }
        assert!(running(), "the sink stopped early");
        assert!(
            Instant::now() < deadline,
            "the sink did not catch up within {timeout:?}: {behind:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads `n` messages from the start of `topic` (a fresh group each call) and decodes them.
pub(crate) async fn read_topic<T: strikeflow_schemas::AvroRecord>(
    brokers: &str,
    topic: &str,
    n: usize,
) -> Vec<T> {
    use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
    use strikeflow_kafka::rdkafka::message::Message;
    let id: u32 = rand::rng().random();
    let group = format!("{topic}-reader-{id:08x}");
    let consumer: StreamConsumer =
        strikeflow_kafka::consumer_config(&strikeflow_kafka::Brokers::plaintext(brokers), &group)
            .create()
            .expect("a test consumer");
    consumer.subscribe(&[topic]).expect("subscribing");
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages on {topic} within 30 s", out.len()))
            .expect("a message");
        let payload = msg.payload().expect("a payload");
        out.push(
            strikeflow_schemas::decode::<T>(payload)
                .unwrap_or_else(|e| panic!("decoding a message of {topic}: {e}")),
        );
    }
    out
}

/// One record as stored in Kafka, for comparing topics byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Carries `strikeflow_schemas::REFERENCE_COPY_HEADER`.
    pub reference_copy: bool,
    /// Carries `strikeflow_schemas::WATERMARK_HEADER` (an event-time marker, not a tick).
    pub watermark: bool,
    /// The value of `strikeflow_schemas::STRIKE_ROWS_HEADER` (chain summaries).
    pub strike_rows: Option<String>,
}

/// Every committed record of `topic`, read from the start to the current end of each
/// partition, in partition then offset order.
pub(crate) fn read_all(brokers: &str, topic: &str) -> Vec<Record> {
    use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use strikeflow_kafka::rdkafka::error::KafkaError;
    use strikeflow_kafka::rdkafka::message::{Headers, Message};
    use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = strikeflow_kafka::reader_config(
        &strikeflow_kafka::Brokers::plaintext(brokers),
        &format!("{topic}-dump"),
    )
    .create()
    .expect("a test consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    assert!(!partitions.is_empty(), "{topic} has partitions");
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&tpl).expect("assigning");
    let mut at_end = std::collections::HashSet::new();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions.len() {
        assert!(Instant::now() < deadline, "reading {topic} to its end");
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            Some(Ok(msg)) => {
                at_end.remove(&msg.partition());
                records.push(Record {
                    partition: msg.partition(),
                    offset: msg.offset(),
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: msg.payload().unwrap_or_default().to_vec(),
                    reference_copy: msg.headers().is_some_and(|h| {
                        h.iter()
                            .any(|h| h.key == strikeflow_schemas::REFERENCE_COPY_HEADER)
                    }),
                    watermark: msg.headers().is_some_and(|h| {
                        h.iter()
                            .any(|h| h.key == strikeflow_schemas::WATERMARK_HEADER)
                    }),
                    strike_rows: msg.headers().and_then(|h| {
                        h.iter()
                            .find(|h| h.key == strikeflow_schemas::STRIKE_ROWS_HEADER)
                            .and_then(|h| h.value)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                    }),
                });
            }
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// How many records of `topic` the consumer group `group` has committed, summed over
/// partitions, and how many there are (end offsets); equal once the group is caught up.
/// Waits until the processor group of `config` has committed every record of the ticks
/// topic (so every output transaction is closed), while `processor` runs; panics after 60 s
/// or when it stopped early.
pub(crate) async fn wait_processed<T>(config: &Config, processor: &tokio::task::JoinHandle<T>) {
    let brokers = &config.kafka.brokers;
    let group = &config.processor.group_id;
    let ticks = config.topics().ticks();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (done, end) = group_progress(brokers, group, &ticks);
        if done == end && end > 0 {
            return;
        }
        assert!(!processor.is_finished(), "the processor stopped early");
        assert!(
            Instant::now() < deadline,
            "processors committed {done} of {end} ticks"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub(crate) fn group_progress(brokers: &str, group: &str, topic: &str) -> (i64, i64) {
    // A fresh broker answers "not coordinator" until the offsets topic is ready.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match try_group_progress(brokers, group, topic) {
            Ok(progress) => return progress,
            Err(e) => {
                assert!(Instant::now() < deadline, "group progress: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// [`group_progress`], or the broker's error (a broker restarting answers "not leader" or
/// "not coordinator" for a while).
pub(crate) fn try_group_progress(
    brokers: &str,
    group: &str,
    topic: &str,
) -> Result<(i64, i64), strikeflow_kafka::rdkafka::error::KafkaError> {
    use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer =
        strikeflow_kafka::client_config(&strikeflow_kafka::Brokers::plaintext(brokers))
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            // read_committed would make the offset fetch wait for a transaction left open by a
            // killed processor (KIP-447 "stable" offsets); the committed figure is what counts.
            .set("isolation.level", "read_uncommitted")
            .create()?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut tpl = TopicPartitionList::new();
    let mut end = 0;
    for p in metadata.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
        let (_, high) = consumer.fetch_watermarks(topic, p.id(), timeout)?;
        end += high;
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let done = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum();
    Ok((done, end))
}

/// Every committed record of `topic`, decoded, in partition then offset order.
pub(crate) fn records<T: strikeflow_schemas::AvroRecord>(brokers: &str, topic: &str) -> Vec<T> {
    read_all(brokers, topic)
        .iter()
        .map(|r| {
            strikeflow_schemas::decode(&r.payload)
                .unwrap_or_else(|e| panic!("decoding {topic}: {e}"))
        })
        .collect()
}

/// The last value per key, in key order: what an upserted table holds.
pub(crate) fn last_per_key<T, K: Ord>(values: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut by_key = std::collections::BTreeMap::new();
    for v in values {
        by_key.insert(key(&v), v);
    }
    by_key.into_values().collect()
}
