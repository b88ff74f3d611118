//! Helpers for tests against the real services started by `./dev up`.
//!
//! Every test gets its own database (created from `DATABASE_URL`, migrated) and its own
//! topic prefix, so tests run in parallel and leave each other alone.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::time::{Duration, Instant};

use rand::Rng;
use strikeflow::migrate::migrate_database;
use strikeflow::Config;
use strikeflow_kafka::ensure_topics;
use strikeflow_schemas::Topics;
use tokio_postgres::{Client, NoTls};

/// Where the services are: the variables `./dev test` exports, or its defaults.
pub struct Services {
    pub brokers: String,
    pub database_url: String,
    pub redis_url: String,
}

pub fn services() -> Services {
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
pub struct Sandbox {
    pub config: Config,
    pub name: String,
}

/// Routes the stages' logs to the test output, filtered by `RUST_LOG` (quiet by default).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

impl Sandbox {
    pub async fn new(label: &str) -> Sandbox {
        init_logs();
        let services = services();
        let id: u32 = rand::rng().random();
        let name = format!("sf_{label}_{id:08x}");
        let admin = connect(&services.database_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| {
                panic!("creating database {name} (is PostgreSQL up? ./dev up): {e}")
            });
        let database_url = with_database(&services.database_url, &name);
        migrate_database(&database_url)
            .await
            .expect("migrating the test database");

        let mut config = Config::default();
        config.kafka.brokers = services.brokers.clone();
        config.kafka.topic_prefix = format!("{name}.");
        config.database.url = database_url;
        config.redis.url = services.redis_url.clone();
        ensure_topics(
            &config.kafka.brokers,
            &Topics::new(config.kafka.topic_prefix.clone()).all(),
            1,
        )
        .await
        .expect("creating test topics (is Kafka up? ./dev up)");
        Sandbox { config, name }
    }

    pub async fn db(&self) -> Client {
        connect(&self.config.database.url).await
    }
}

pub async fn connect(url: &str) -> Client {
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
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
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

pub async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect(sql).get(0)
}

/// Reads `n` messages from the start of `topic` (a fresh group each call) and decodes them.
pub async fn read_topic<T: strikeflow_schemas::AvroRecord>(
    brokers: &str,
    topic: &str,
    n: usize,
) -> Vec<T> {
    use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
    use strikeflow_kafka::rdkafka::message::Message;
    let id: u32 = rand::rng().random();
    let consumer: StreamConsumer = strikeflow_kafka::rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}-reader-{id:08x}"))
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
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
