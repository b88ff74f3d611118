//! strikeflow sink: Kafka topics into PostgreSQL / TimescaleDB, exactly once.
//!
//! It stores every topic the pipeline produces: the instrument master (current and history),
//! ticks, bars, per-strike and per-chain analytics, moneyness points, indicator values and
//! late ticks (tables in `migrations/`, described in `docs/sql.md`).
//!
//! Each batch is written with binary COPY and the consumed offsets are stored in
//! `sink_offsets` **in the same transaction**; on start the sink seeks to those offsets and
//! ignores Kafka's own committed offsets. A crash at any point therefore either commits a
//! batch with its offsets or neither, so rows are never lost or duplicated.

mod batch;
mod config;
mod metrics;
mod offsets;
mod tables;
mod writer;

pub use batch::{Batch, ChainId, IndicatorId, MoneynessId, Source, Sources};
pub use config::{SinkConfig, SinkSettings};
pub use writer::{upsert_instruments, write_batch};

use std::time::Duration;

use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::{consumer_config, partition_ids, BatchCollector, Outbox};
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Why the sink stopped (or did not start).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A `[sink]` setting is unusable; reported before anything connects.
    #[error("sink.{key}: {reason}")]
    Config {
        /// The key within `[sink]`.
        key: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
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
    let SinkConfig {
        kafka,
        database_url,
        settings,
    } = config;
    settings.validate()?;
    metrics::describe();
    let (mut client, connection) = tokio_postgres::connect(&database_url, NoTls).await?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            error!(error = %e, "postgres connection closed");
        }
    });
    writer::prepare_session(&client).await?;

    let sources = Sources::new(&kafka.topics);
    let stored = offsets::load(&client, &settings.consumer_name).await?;
    let consumer: StreamConsumer = consumer_config(
        &kafka.brokers,
        &format!("strikeflow-sink-{}", settings.consumer_name),
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
    let mut outbox = Outbox::connect(&kafka.brokers)?;
    info!(consumer = %settings.consumer_name, partitions = assignment.count(), "sink started");

    let collector = BatchCollector::new(
        "sink",
        settings.batch_rows,
        Duration::from_millis(settings.batch_wait_ms),
    );
    let result = loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            msg = collector.next(&consumer) => msg?,
        };
        let mut batch = Batch::new(&sources);
        for msg in collector.fill(&consumer, first).await? {
            batch.add(&msg, &mut outbox)?;
        }
        // Dead letters must be durable before the offsets that skip them are.
        outbox.flush().await?;
        if let Err(e) = write_batch(&mut client, &settings.consumer_name, &batch).await {
            break Err(e.into());
        }
        batch.record_metrics();
    };
    connection.abort();
    info!("sink stopped");
    result
}
