//! strikeflow processors: event-time analytics over the tick stream.
//!
//! [`core`] holds the sans-I/O state machines (ticks in, outputs out, no Kafka, no clock),
//! [`runner`] the thin Kafka shell that drives them.

pub mod bars;
pub mod chain;
pub mod core;
pub mod indicator_bank;
pub mod indicators;
pub mod instruments;
pub mod pricing;
pub mod runner;
pub mod watermark;

pub use crate::core::{CoreSettings, Output, TickProcessor};
pub use runner::{run, ProcessorConfig};

/// Why the processor stage stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// Kafka refused or failed an operation.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
    /// The configuration is unusable.
    #[error("processor configuration: {0}")]
    Config(String),
    /// Stored processor state could not be read or written.
    #[error("processor state: {0}")]
    State(String),
    /// An output could not be encoded (a bug in the contract, not bad input).
    #[error("encoding an output: {0}")]
    Encode(#[from] strikeflow_schemas::CodecError),
}

impl From<strikeflow_kafka::rdkafka::error::KafkaError> for ProcessorError {
    fn from(e: strikeflow_kafka::rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e.into())
    }
}
