//! The `push` stage: serves live strikeflow data (option chains, moneyness, indicators,
//! bars and ticks of NSE index derivatives) to dashboards over an authenticated WebSocket.
//!
//! Data flow, one direction only:
//!
//! ```text
//! Kafka (instruments, ticks, bars, strikes, chains, moneyness, indicators)
//!   ──feed──▶ route (decode, number, chain merge, 3/5/15-minute bars)
//!   ──▶ hub (snapshot + bounded history per channel) ──per-client queue──▶ WebSocket session
//!                                              └──latest bar──▶ Redis (snapshots)
//! ```
//!
//! * [`feed`] reads every partition of the topics (no consumer group: every push instance
//!   fans out everything) and the compacted instruments topic; `route` decodes each record
//!   once, numbers it from its Kafka position (`seq`, `epoch`) and hands the JSON to the hub;
//!   `chain` merges strike rows and chain summaries into one stream per chain, `bars`
//!   builds the longer bars.
//! * [`hub`] maps channels to subscribers, keeps each channel's snapshot and recent history
//!   (for clients resuming with `since`) and serialises each message once into shared bytes
//!   that every subscriber's queue clones cheaply; a [`frame::Frame`] adds the MessagePack
//!   encoding for clients of `strikeflow.v1.msgpack`, made at most once per message.
//! * [`queue`] is the per-client bounded queue: bars and ticks are ordered streams whose
//!   overflow closes the client (4008 "slow consumer"); snapshot-like kinds (chain,
//!   moneyness, indicators) conflate to the latest value per key instead.
//! * [`catalogue`] answers `{"op":"list"}`.
//! * `server` is the axum router (`/healthz`, `/readyz`, `/ws`) with authentication at the
//!   upgrade, `http` the accept loop (with the request-head deadline), and `session` one
//!   WebSocket connection.
//! * [`auth`] verifies client tokens; [`limits`] and [`presence`] bound what one client,
//!   one user and one node may hold, the per-user count and revoked token ids shared by
//!   every push node through Redis ([`redis_link`]).
//!
//! Shutdown is threaded through explicitly with a [`CancellationToken`].

mod admission;
pub mod auth;
mod bars;
pub mod catalogue;
mod chain;
mod config;
pub mod feed;
pub mod frame;
mod http;
pub mod hub;
pub mod limits;
pub mod presence;
pub mod protocol;
pub mod queue;
pub mod ready;
pub mod redis_link;
mod route;
mod server;
mod session;
pub mod snapshot;
mod stats;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

pub use auth::AuthSettings;
pub use config::{PushConfig, PushSettings};
pub use frame::Format;
pub use server::{PushServer, PROTOCOL_BEARER_PREFIX, PROTOCOL_JSON, PROTOCOL_MSGPACK};

/// Why the push stage could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A configuration value is unusable (reported before anything starts).
    #[error("{key}: {reason}")]
    Config {
        /// The key, with its section (`push.client_queue`, `auth.jwt_secret`).
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A key file named in the configuration cannot be read.
    #[error("{key}: cannot read {path}: {source}")]
    KeyFile {
        /// The setting naming the file (`auth.rs256_public_key_file`, …).
        key: &'static str,
        /// The file.
        path: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A configured key does not parse as the kind of key its setting expects.
    #[error("{key}: {reason}: {source}")]
    Key {
        /// The setting (`auth.es256_public_key_file`, …).
        key: &'static str,
        /// What was expected.
        reason: String,
        /// The parser's error.
        #[source]
        source: jsonwebtoken::errors::Error,
    },
    /// The HTTP listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A Kafka client could not be created.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
    /// The schema registry URL cannot be used.
    #[error(transparent)]
    Registry(#[from] strikeflow_kafka::RegistryError),
    /// The PostgreSQL or Redis URL, or a CA file it names, is unusable.
    #[error(transparent)]
    Tls(#[from] strikeflow_tls::TlsError),
    /// The feed's own runtime could not be built.
    #[error("starting the feed's runtime: {0}")]
    FeedRuntime(#[source] std::io::Error),
    /// A background task panicked or was aborted.
    #[error("background task {task} failed: {source}")]
    Task {
        /// Which task.
        task: &'static str,
        /// The join error.
        source: tokio::task::JoinError,
    },
}

impl PushError {
    /// A refused setting: `key: reason`.
    pub(crate) fn config(key: &'static str, reason: impl Into<String>) -> PushError {
        PushError::Config {
            key,
            reason: reason.into(),
        }
    }
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
