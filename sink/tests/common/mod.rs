//! Helpers for the sink's tests against the real services of `./dev up`: a private database
//! with the sink's tables and private topics per test, so tests run in parallel.

#![allow(dead_code)] // each test binary uses a different subset

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strikeflow_kafka::rdkafka::admin::AdminClient;
use strikeflow_kafka::rdkafka::client::DefaultClientContext;
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::message::{Headers, Message};
use strikeflow_kafka::{client_config, ensure_topics, reader_config, Brokers, KafkaConnection};
use strikeflow_schemas::{Tick, Topics};
use strikeflow_sink::{SinkConfig, SinkSettings};
use tokio_postgres::{Client, NoTls};

/// The tables the sink writes, from the workspace's migrations (the `strikeflow` crate that
/// applies them depends on this one).
const CORE_TABLES: &str = include_str!("../../../migrations/0001_core_tables.sql");
const ANALYTICS_TABLES: &str = include_str!("../../../migrations/0003_stored_analytics.sql");

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

pub(crate) async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url} (is PostgreSQL up? ./dev up): {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh database with the sink's tables, and fresh topics, both named after `label`.
pub(crate) async fn sandbox(label: &str) -> SinkConfig {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("sf_{label}_{}_{nanos:08x}", std::process::id());
    let brokers = Brokers::plaintext(var("KAFKA_BROKERS", "127.0.0.1:19092"));
    let server = var(
        "DATABASE_URL",
        "postgres://strikeflow@127.0.0.1:15432/strikeflow",
    );
    connect(&server)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating a test database");
    let (base, _) = server
        .rsplit_once('/')
        .expect("DATABASE_URL has a /database");
    let query = server
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    let database_url = format!("{base}/{name}{query}");
    connect(&database_url)
        .await
        .batch_execute(&format!("{CORE_TABLES}\n{ANALYTICS_TABLES}"))
        .await
        .expect("creating the tables");
    let topics = Topics::new(format!("{name}."));
    ensure_topics(&brokers, &topics.all(), 1)
        .await
        .expect("creating test topics (is Kafka up? ./dev up)");
    SinkConfig {
        kafka: KafkaConnection { brokers, topics },
        registry: None,
        database_url,
        settings: SinkSettings {
            consumer_name: "sink".into(),
            batch_rows: 100,
            batch_wait_ms: 20,
            ..SinkSettings::default()
        },
    }
}

pub(crate) fn admin(brokers: &Brokers) -> AdminClient<DefaultClientContext> {
    client_config(brokers).create().expect("an admin client")
}

pub(crate) fn tick(token: i64, second: i64) -> Tick {
    Tick {
        instrument_token: token,
        exchange_ts: 1_766_000_000_000_000 + second * 1_000_000,
        ltp: 24_500.5,
        last_qty: 0,
        volume: 0,
        oi: 0,
        bid: 0.0,
        bid_qty: 0,
        ask: 0.0,
        ask_qty: 0,
    }
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn count(db: &Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).await.expect(sql).get(0)
}

/// A record read back from a topic: payload and headers by name.
pub(crate) struct Read {
    pub(crate) payload: Vec<u8>,
    pub(crate) headers: Vec<(String, String)>,
}

impl Read {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads `n` records from the start of `topic`, within 20 s.
pub(crate) async fn read_topic(brokers: &Brokers, topic: &str, n: usize) -> Vec<Read> {
    let consumer: StreamConsumer = reader_config(brokers, "sink-test").create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut read = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while read.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(msg)) => msg,
            Ok(Err(_eof_or_error)) => continue,
            Err(_) => panic!("only {} of {n} records on {topic} within 20 s", read.len()),
        };
        let headers = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        read.push(Read {
            payload: msg.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    read
}
