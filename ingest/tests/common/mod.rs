//! Helpers for ingest tests against the real Kafka of `./dev up`: private topics per test,
//! and reading messages back with their headers.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use strikeflow_kafka::ensure_topics;
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::message::{Headers, Message};
use strikeflow_kafka::rdkafka::ClientConfig;
use strikeflow_schemas::Topics;

/// Where Kafka is: `KAFKA_BROKERS`, or `./dev up`'s default.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into())
}

/// Fresh topics named after `label` plus a random id, and an empty scratch directory.
pub async fn topics_and_dir(label: &str) -> (Topics, PathBuf) {
    let id: u32 = rand::rng().random();
    let topics = Topics::new(format!("{label}_{id:08x}."));
    ensure_topics(&brokers(), &topics.all(), 1)
        .await
        .expect("creating topics (is Kafka up? ./dev up)");
    let dir = std::env::temp_dir().join(format!("strikeflow-{label}-{id:08x}"));
    std::fs::create_dir_all(&dir).expect("creating a scratch directory");
    (topics, dir)
}

/// A consumer reading `topic` from the start, in a group of its own.
pub fn consumer(topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set(
            "group.id",
            format!("{topic}-reader-{}", rand::rng().random::<u32>()),
        )
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a test consumer");
    consumer.subscribe(&[topic]).expect("subscribing");
    consumer
}

/// The next `n` messages: payload and headers; panics after `wait` without one.
pub async fn read(
    consumer: &StreamConsumer,
    n: usize,
    wait: Duration,
) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(wait, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", out.len()))
            .expect("a message");
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
        out.push((msg.payload().unwrap_or_default().to_vec(), headers));
    }
    out
}
