//! strikeflow analytics: the deterministic heart of the pipeline, with no I/O.
//!
//! Ticks and instruments go in; one-minute bars, IV and Greeks, per-strike and per-chain
//! analytics, moneyness series, indicator values and late ticks come out. Time is only
//! ever the ticks' exchange timestamps, so the same input always gives the same output,
//! and a core restored from a snapshot continues exactly as the original would have.
//!
//! Like quinn-proto beside quinn, this crate owns the logic and nothing else: no Kafka, no
//! clock, no logging, no global metrics. It reports what happened in return values
//! ([`CoreStats`]); the Kafka runner in `strikeflow-processors` drives it and exports those
//! counts. `tests/sans_io.rs` fails if an I/O dependency is ever added.

pub mod bars;
pub mod chain;
pub mod core;
pub mod indicator_bank;
pub mod indicators;
pub mod pricing;
pub mod watermark;

pub use crate::core::{CoreSettings, CoreStats, Output, SnapshotError, TickProcessor};
