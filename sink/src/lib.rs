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
//!
//! Two sinks with the same `consumer_name` would store the same offsets twice, so a sink
//! owns its name through a PostgreSQL advisory lock (`ownership`); partitions added while
//! it runs are assigned without a restart and a stored offset whose records expired from
//! Kafka stops it loudly (`partitions`); a row PostgreSQL refuses is dead-lettered with its
//! SQLSTATE and the rest of its batch stored (`poison`).

mod batch;
mod config;
mod copy;
mod metrics;
mod offsets;
mod ownership;
mod partitions;
mod poison;
mod retry;
mod serve;
mod tables;
mod writer;

pub use batch::{Batch, ChainId, IndicatorId, MoneynessId, Source, Sources};
pub use config::{SinkConfig, SinkSettings};
pub use ownership::SINK_LOCK_CLASS;
pub use writer::{upsert_instruments, write_batch};

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::info;

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
    /// The database URL or its TLS settings (`sslmode`, the `sslrootcert` file) are
    /// unusable; reported before anything connects.
    #[error(transparent)]
    Tls(#[from] strikeflow_tls::TlsError),
    /// Another session holds this sink name's advisory lock: a sink with the same
    /// `consumer_name` is running, and two would store the same offsets twice.
    #[error(
        "sink.consumer_name {consumer:?} is already in use by a running sink: its lock is held by \
         {holder}; stop that sink, or give this one another consumer_name"
    )]
    AlreadyRunning {
        /// The sink name.
        consumer: String,
        /// The session holding the lock, from `pg_locks` and `pg_stat_activity`.
        holder: String,
    },
    /// The batch transaction found its session no longer holds the sink's lock; the batch
    /// was rolled back and the sink stops rather than write as a non-owner.
    #[error("sink {consumer:?} no longer holds its ownership lock; batch rolled back")]
    Fenced {
        /// The sink name.
        consumer: String,
    },
    /// A stored offset is below its partition's log start: records expired from Kafka
    /// before this sink stored them. The sink stops instead of skipping them silently.
    #[error(
        "{topic}[{partition}]: stored offset {stored} is below the log start {log_start}; \
         records {stored}..{log_start} expired from Kafka unread (see docs/sql.md, \"Offset gaps\")"
    )]
    OffsetGap {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset the sink stored in `sink_offsets`.
        stored: i64,
        /// The first offset Kafka still has.
        log_start: i64,
    },
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
    /// The schema registry URL cannot be used.
    #[error(transparent)]
    Registry(#[from] strikeflow_kafka::RegistryError),
}

impl From<strikeflow_kafka::rdkafka::error::KafkaError> for SinkError {
    fn from(e: strikeflow_kafka::rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e.into())
    }
}

/// Runs the sink until `shutdown` is cancelled; the batch being written is committed first
/// (one read ahead of it is not, and is read again at the next start).
///
/// Refuses to start ([`SinkError::AlreadyRunning`]) while another sink with the same
/// `consumer_name` runs, and stops with [`SinkError::OffsetGap`] when a stored offset's
/// records expired from Kafka.
///
/// Losing PostgreSQL (a restart, an outage, a dropped connection) does not stop it: the open
/// batch is rolled back with the session, the consumer is dropped (consumption pauses and
/// no memory grows), and after a backoff (0.5 s doubling to `max_backoff_secs`) the sink
/// connects again, takes its ownership lock again and re-reads from the offsets stored with
/// the rows — the same path as a restart, so nothing is lost or stored twice, even when a
/// commit succeeded but its acknowledgement was lost.
pub async fn run(config: SinkConfig, shutdown: CancellationToken) -> Result<(), SinkError> {
    let SinkConfig {
        kafka,
        registry,
        database_url,
        settings,
    } = config;
    settings.validate()?;
    // One table of schema ids for the whole run: a reconnect to PostgreSQL keeps it.
    let registry = strikeflow_kafka::Registry::new(registry.as_ref())?;
    registry.warm(&kafka.topics).await;
    metrics::describe();
    let mut pg = strikeflow_tls::postgres(&database_url)?;
    pg.config
        .application_name(ownership::application_name(&settings.consumer_name));
    let max_backoff = Duration::from_secs(settings.max_backoff_secs);
    let mut failures = 0;
    let mut owned_before = false;
    loop {
        let mut progress = retry::Progress::default();
        let result =
            serve::session(&pg, &kafka, &registry, &settings, &shutdown, &mut progress).await;
        owned_before |= progress.owned;
        match result {
            Ok(()) => {
                info!("sink stopped");
                return Ok(());
            }
            Err(e) if e.is_connection_lost(owned_before) => {
                if progress.committed {
                    failures = 0;
                }
                failures += 1;
                let delay = strikeflow_kafka::backoff(failures, max_backoff);
                metrics::PostgresLost {
                    error: &e,
                    attempt: failures,
                    delay,
                }
                .emit();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}
