//! The `push` stage: serves live strikeflow data (bars and ticks of NSE index derivatives)
//! to dashboards over an authenticated WebSocket.
//!
//! Data flow, one direction only:
//!
//! ```text
//! Kafka (instruments, ticks, bars) ──feed──▶ hub ──per-client queue──▶ WebSocket session
//!                                              └──latest bar──▶ Redis (snapshots)
//! ```
//!
//! * [`feed`] reads every partition of the ticks and bars topics (no consumer group: every
//!   push instance fans out everything) and the compacted instruments topic, decodes each
//!   message once and hands the JSON to the hub.
//! * [`hub`] maps channels to subscribers, numbers each channel's messages and serialises
//!   each message once into shared bytes that every subscriber's queue clones cheaply.
//! * [`queue`] is the per-client bounded queue: bars and ticks are ordered streams whose
//!   overflow closes the client (4008 "slow consumer"); snapshot-like kinds (chain and
//!   strike analytics, to come) conflate to the latest message per channel instead.
//! * `server` is the axum router (`/healthz`, `/readyz`, `/ws`) and `session` one
//!   WebSocket connection.
//!
//! Shutdown is threaded through explicitly with a [`CancellationToken`].

pub mod auth;
mod config;
pub mod feed;
pub mod hub;
pub mod protocol;
pub mod queue;
pub mod ready;
mod server;
mod session;
pub mod snapshot;
mod stats;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

pub(crate) use config::DEV_JWT_SECRET;
pub use config::{PushConfig, PushSettings};
pub use server::PushServer;

/// Why the push stage could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A configuration value is unusable (reported before anything starts).
    #[error("{key}: {reason}")]
    Config {
        /// The key, with its section (`push.client_queue`, `auth.jwt_secret`).
        key: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// The HTTP listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The HTTP server failed while serving.
    #[error("serving http: {0}")]
    Serve(#[source] std::io::Error),
    /// A Kafka client could not be created.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
    /// The Redis URL is invalid.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The PostgreSQL URL is invalid.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// A background task panicked or was aborted.
    #[error("background task {task} failed: {source}")]
    Task {
        /// Which task.
        task: &'static str,
        /// The join error.
        source: tokio::task::JoinError,
    },
}

impl From<rdkafka::error::KafkaError> for PushError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e.into())
    }
}

/// The stage entry point: bind, then serve until `shutdown` is cancelled.
///
/// Exists so the binary (and end-to-end tests) start push with one call.
pub async fn run(config: PushConfig, shutdown: CancellationToken) -> Result<(), PushError> {
    config.validate()?;
    let server = PushServer::bind(config).await?;
    tracing::info!(addr = %server.local_addr(), "push listening");
    server.serve(shutdown).await
}
