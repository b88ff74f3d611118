//! strikeflow processors: the Kafka shell around the sans-I/O analytics.
//!
//! The analytics themselves (watermarks, bars, pricing, chain analytics, moneyness,
//! indicators) live in `strikeflow-analytics`, which has no Kafka, clock, logs or metrics.
//! This crate drives one analytics core per ticks partition, exactly once: [`runner`] reads
//! ticks, publishes outputs, snapshots state and commits offsets in Kafka transactions,
//! and [`metrics`](crate::metrics) exports what the cores count.

mod config;
mod metrics;
pub mod runner;

pub use config::{
    AnalyticsSettings, ConventionName, DayCountName, ProcessorConfig, ProcessorSettings,
    ReferenceName,
};
pub use runner::{run, SnapshotLocation};

use strikeflow_analytics::indicators::IndicatorError;
use strikeflow_analytics::SnapshotError;

/// Why the processor stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Kafka refused or failed an operation.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
    /// A setting is unusable; `key` names it as written in the configuration file.
    #[error("{key}: {reason}")]
    Config {
        /// The setting, e.g. `processor.batch_max`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configured indicators or timeframes are not valid.
    #[error("{key}: not a valid indicator set")]
    Indicators {
        /// The setting, `processor.indicators`.
        key: String,
        /// What the indicator registry said.
        #[source]
        source: IndicatorError,
    },
    /// A partition's state could not be written.
    #[error("snapshot of ticks partition {partition}")]
    SnapshotWrite {
        /// The ticks partition.
        partition: i32,
        /// Why.
        #[source]
        source: SnapshotError,
    },
    /// A stored snapshot could not be read back.
    #[error("snapshot at {location}")]
    SnapshotRead {
        /// Where the snapshot is.
        location: SnapshotLocation,
        /// Why it could not be used.
        #[source]
        source: SnapshotReadError,
    },
    /// Replaying the ticks since a snapshot stopped before reaching the committed offset.
    #[error(
        "replaying {topic}/{partition} [{from}, {to}) stalled after {replayed} records; the broker did not deliver within the timeout"
    )]
    ReplayStalled {
        /// The ticks topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// First offset to replay.
        from: i64,
        /// Committed offset the replay must reach.
        to: i64,
        /// Records replayed before it stalled.
        replayed: u64,
    },
    /// The consumer left the group (or never joined), so there is no generation to commit
    /// under.
    #[error("the ticks consumer has no group metadata")]
    NoGroupMetadata,
    /// A blocking Kafka call could not be run to its end on the blocking pool.
    #[error("a blocking Kafka call did not complete")]
    Blocking(#[source] tokio::task::JoinError),
    /// An output could not be encoded (a bug in the contract, not bad input).
    #[error("encoding an output")]
    Encode(#[from] strikeflow_schemas::CodecError),
    /// The schema registry is misconfigured, or an output schema is not registered.
    #[error(transparent)]
    Registry(#[from] strikeflow_kafka::RegistryError),
}

/// Why a stored snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotReadError {
    /// Nothing arrived from the state topic in time.
    #[error("not readable within the timeout")]
    Unreadable,
    /// Compaction or retention removed it (the next record has a later offset).
    #[error("gone: the state topic's next record is at offset {found}")]
    Gone {
        /// Offset of the record read instead.
        found: i64,
    },
    /// Shorter than its offset header.
    #[error("truncated: {len} bytes")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// The core refused the state (format, settings or bytes).
    #[error(transparent)]
    State(#[from] SnapshotError),
}

impl From<strikeflow_kafka::rdkafka::error::KafkaError> for ProcessorError {
    fn from(e: strikeflow_kafka::rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e.into())
    }
}
