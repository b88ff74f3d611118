//! Helpers for ingest tests against the real Kafka of `./dev up`: private topics per test,
//! and reading messages back with their headers.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::Duration;

use rand::Rng;
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::error::KafkaError;
use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Headers, Message};
use strikeflow_kafka::rdkafka::types::RDKafkaErrorCode;
use strikeflow_kafka::{consumer_config, ensure_topics};
use strikeflow_schemas::{Topics, REFERENCE_COPY_HEADER, WATERMARK_HEADER};

/// Where Kafka is: `KAFKA_BROKERS`, or `./dev up`'s default.
pub(crate) fn brokers() -> strikeflow_kafka::Brokers {
    strikeflow_kafka::Brokers::plaintext(
        std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".into()),
    )
}

/// Fresh topics named after `label` plus a random id, and an empty scratch directory.
pub(crate) async fn topics_and_dir(label: &str) -> (Topics, PathBuf) {
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
pub(crate) fn consumer(topic: &str) -> StreamConsumer {
    let group = format!("{topic}-reader-{}", rand::rng().random::<u32>());
    let consumer: StreamConsumer = consumer_config(&brokers(), &group)
        .create()
        .expect("a test consumer");
    consumer.subscribe(&[topic]).expect("subscribing");
    consumer
}

/// One message read back, with where it was found.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// Whether this is a reference copy of a spot tick (see `REFERENCE_COPY_HEADER`).
    pub(crate) fn is_reference_copy(&self) -> bool {
        self.headers
            .iter()
            .any(|(key, _)| key == REFERENCE_COPY_HEADER)
    }

    /// Whether this is an event-time marker (see `WATERMARK_HEADER`).
    pub(crate) fn is_watermark(&self) -> bool {
        self.headers.iter().any(|(key, _)| key == WATERMARK_HEADER)
    }
}

/// The next `n` messages with partition, offset, key, payload and headers; panics after
/// `wait` without one.
pub(crate) async fn read_records(
    consumer: &StreamConsumer,
    n: usize,
    wait: Duration,
) -> Vec<Record> {
    let mut out = Vec::new();
    while out.len() < n {
        let msg = tokio::time::timeout(wait, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} messages arrived", out.len()));
        let msg = match msg {
            Ok(msg) => msg,
            // A topic created moments ago on a fresh broker can be unknown to the consumer's
            // first metadata; librdkafka recovers by itself, so keep waiting (the timeout
            // above still bounds the wait).
            Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)) => {
                continue
            }
            Err(e) => panic!("a message: {e}"),
        };
        out.push(record(&msg));
    }
    out
}

/// Whatever arrives within `wait` (for checking that nothing more was written).
pub(crate) async fn read_rest(consumer: &StreamConsumer, wait: Duration) -> Vec<Record> {
    let mut out = Vec::new();
    while let Ok(msg) = tokio::time::timeout(wait, consumer.recv()).await {
        out.push(record(&msg.expect("a message")));
    }
    out
}

fn record(msg: &BorrowedMessage<'_>) -> Record {
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
    Record {
        partition: msg.partition(),
        offset: msg.offset(),
        key: msg.key().unwrap_or_default().to_vec(),
        payload: msg.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// The next `n` messages: payload and headers; panics after `wait` without one.
pub(crate) async fn read(
    consumer: &StreamConsumer,
    n: usize,
    wait: Duration,
) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    read_records(consumer, n, wait)
        .await
        .into_iter()
        .map(|r| (r.payload, r.headers))
        .collect()
}

/// The next `n` messages that are not reference copies of spot ticks or event-time markers
/// (those are skipped): the ticks as published, once each.
pub(crate) async fn read_primaries(
    consumer: &StreamConsumer,
    n: usize,
    wait: Duration,
) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    let mut out = Vec::new();
    while out.len() < n {
        let got = read_records(consumer, 1, wait).await;
        out.extend(
            got.into_iter()
                .filter(|r| !r.is_reference_copy() && !r.is_watermark())
                .map(|r| (r.payload, r.headers)),
        );
    }
    out
}
