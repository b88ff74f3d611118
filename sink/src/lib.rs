//! strikeflow sink: Kafka topics into PostgreSQL / TimescaleDB, exactly once.
//!
//! Each batch is written with binary COPY and the consumed offsets are stored in
//! `sink_offsets` **in the same transaction**; on start the sink seeks to those offsets and
//! ignores Kafka's own committed offsets. A crash at any point therefore either commits a
//! batch with its offsets or neither, so rows are never lost or duplicated.

mod batch;
mod offsets;
mod writer;

pub use batch::{Batch, Source, Sources};
pub use writer::{upsert_instruments, write_batch};

use std::time::Duration;

use serde::Deserialize;
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::{consumer_config, partition_ids, Outbox};
use strikeflow_schemas::Topics;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Configuration of the sink stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SinkConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic names (with the deployment's prefix).
    pub topics: Topics,
    /// PostgreSQL connection string.
    pub database_url: String,
    /// Names this sink's rows in `sink_offsets`, so several sinks can share a database.
    pub consumer_name: String,
    /// Most messages per transaction.
    pub batch_rows: usize,
    /// Longest wait to fill a batch once its first message arrived.
    pub batch_wait_ms: u64,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".into(),
            topics: Topics::default(),
            database_url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".into(),
            consumer_name: "sink".into(),
            batch_rows: 20_000,
            batch_wait_ms: 200,
        }
    }
}

/// Why the sink stopped.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// PostgreSQL failed; the open batch was rolled back and will be read again.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
}

impl From<strikeflow_kafka::rdkafka::error::KafkaError> for SinkError {
    fn from(e: strikeflow_kafka::rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e.into())
    }
}

/// Runs the sink until `shutdown` is cancelled; the batch in hand is committed first.
pub async fn run(config: SinkConfig, shutdown: CancellationToken) -> Result<(), SinkError> {
    let (mut client, connection) = tokio_postgres::connect(&config.database_url, NoTls).await?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            error!(error = %e, "postgres connection closed");
        }
    });
    writer::prepare_session(&client).await?;

    let sources = Sources::new(&config.topics);
    let stored = offsets::load(&client, &config.consumer_name).await?;
    let consumer: StreamConsumer = consumer_config(
        &config.brokers,
        &format!("strikeflow-sink-{}", config.consumer_name),
    )
    .set("enable.auto.commit", "false")
    .create()?;
    let mut assignment = TopicPartitionList::new();
    for topic in sources.names() {
        // Metadata is fetched once at start-up; blocking here briefly is harmless.
        for partition in partition_ids(&consumer, topic, Duration::from_secs(10))? {
            let offset = stored
                .get(&(topic.clone(), partition))
                .map_or(Offset::Beginning, |&next| Offset::Offset(next));
            assignment.add_partition_offset(topic, partition, offset)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut outbox = Outbox::connect(&config.brokers)?;
    info!(consumer = %config.consumer_name, partitions = assignment.count(), "sink started");

    let batch_wait = Duration::from_millis(config.batch_wait_ms);
    let result = loop {
        let mut batch = Batch::new(&sources);
        let first = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            msg = consumer.recv() => msg,
        };
        let deadline = tokio::time::Instant::now() + batch_wait;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            batch.add(&msg?, &mut outbox)?;
            if batch.len() >= config.batch_rows {
                break;
            }
            next = tokio::time::timeout_at(deadline, consumer.recv())
                .await
                .ok();
        }
        // Dead letters must be durable before the offsets that skip them are.
        outbox.flush().await?;
        if let Err(e) = write_batch(&mut client, &config.consumer_name, &batch).await {
            break Err(e.into());
        }
        batch.record_metrics();
    };
    connection.abort();
    info!("sink stopped");
    result
}
