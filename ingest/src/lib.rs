//! strikeflow ingest: market feeds into Kafka.
//!
//! Sources (the [`simulator`], [`replay`] of recordings, the [`kite`] ticker) produce
//! [`strikeflow_schemas::Tick`]s; the [`publisher`] validates them and sends them to `ticks.v1`
//! keyed by option chain, after the instrument master went to `instruments.v1`. Every metric
//! they emit is named in [`metrics`].

pub mod calendar;
pub mod kite;
pub mod master;
pub mod metrics;
pub mod publisher;
pub mod replay;
pub mod simulate;
pub mod simulator;
pub mod validate;

pub use publisher::TickPublisher;
pub use simulate::{run_simulation, SimulateConfig, SimulationReport};
pub use simulator::{MarketSimulator, SimulatorConfig};

/// Why an ingest run stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
    /// A message could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[from] strikeflow_schemas::CodecError),
    /// The schema registry is misconfigured, unreachable at start, or lacks a schema.
    #[error(transparent)]
    Registry(#[from] strikeflow_kafka::RegistryError),
    /// The simulator settings are invalid.
    #[error(transparent)]
    Simulator(#[from] simulator::SimulatorError),
    /// A recording could not be written.
    #[error(transparent)]
    Recording(#[from] replay::FormatError),
}
