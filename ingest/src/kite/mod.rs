//! Kite-compatible ticker adapter: the one real market-data feed strikeflow ingests.
//!
//! - [`decode`]: the binary wire format, decoded without I/O (and encoded, for tests and the
//!   fake ticker); checked against the public `kiteconnect` Python parser.
//! - [`TickAssembler`]: Kite packets are partial updates; it keeps the last state per token so
//!   each packet becomes a complete [`strikeflow_schemas::Tick`].
//! - [`run_kite`]: the live client (subscribe, decode, publish, watchdog, reconnect).
//! - [`server`]: a local fake ticker speaking the same protocol, for tests and demos.

#![warn(missing_docs)]

mod client;
pub mod decode;
pub mod server;
mod tick;

pub use client::{run_kite, KiteConfig, KiteReport};
pub use decode::{decode_frame, encode_frame, DecodeError, Packet};
pub use server::{FakeTicker, FakeTickerConfig, ServerEvent};
pub use tick::{packet_from_tick, TickAssembler};

use crate::master::MasterError;
use crate::IngestError;

/// Why a Kite run stopped (connection losses are not errors: they are retried).
#[derive(Debug, thiserror::Error)]
pub enum KiteError {
    /// Publishing to Kafka failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// The instrument master could not be read.
    #[error(transparent)]
    Master(#[from] MasterError),
    /// The configuration cannot work (no tokens, a zero timeout...).
    #[error("kite configuration: {0}")]
    Config(String),
    /// The ticker refused the handshake with HTTP 401/403: the API key or access token is
    /// wrong or expired, and retrying cannot fix that.
    #[error("the kite ticker refused the credentials (HTTP {status}): {body}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Response body, if any.
        body: String,
    },
}
