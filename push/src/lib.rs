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
//! * [`server`] is the axum router (`/healthz`, `/readyz`, `/ws`) and [`session`] one
//!   WebSocket connection.
//!
//! Shutdown is threaded through explicitly with a [`CancellationToken`].

#![warn(missing_docs)]

pub mod auth;
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

use serde::Deserialize;
use strikeflow_schemas::Topics;
use tokio_util::sync::CancellationToken;

pub use server::PushServer;

/// Configuration of the push stage.
///
/// Deserialisable so the binary can load it from files and environment (figment); every
/// missing field takes its [`Default`] value (the local development setup), so a partial
/// `[push]` section is fine. Push logs a warning when it runs with the development secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PushConfig {
    /// Address the HTTP/WebSocket listener binds to (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// HS256 secret that client JWTs must be signed with.
    pub jwt_secret: String,
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic names (prefix) to read instruments, ticks and bars from.
    #[serde(default)]
    pub topics: Topics,
    /// Redis URL; Redis holds the latest bar per channel for new subscribers.
    pub redis_url: String,
    /// PostgreSQL URL; only checked by `/readyz` so operators see the whole pipeline's health.
    pub database_url: String,
    /// Maximum queued messages per client before a tick subscriber is closed as slow
    /// (default 1024).
    #[serde(default = "default_client_queue")]
    pub client_queue: usize,
    /// Seconds between server WebSocket pings (default 15); a client silent for two
    /// intervals is closed.
    #[serde(default = "default_ping_interval_secs")]
    pub ping_interval_secs: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// The development secret; anything public-facing must override it.
pub(crate) const DEV_JWT_SECRET: &str = "strikeflow-dev-secret-change-me";

fn default_jwt_secret() -> String {
    DEV_JWT_SECRET.to_owned()
}

fn default_brokers() -> String {
    "127.0.0.1:19092".to_owned()
}

fn default_redis_url() -> String {
    "redis://127.0.0.1:16379".to_owned()
}

fn default_database_url() -> String {
    "postgres://strikeflow@127.0.0.1:15432/strikeflow".to_owned()
}

fn default_client_queue() -> usize {
    1024
}

fn default_ping_interval_secs() -> u64 {
    15
}

impl Default for PushConfig {
    /// The local development setup (`./dev up` ports).
    fn default() -> Self {
        PushConfig {
            listen: default_listen(),
            jwt_secret: default_jwt_secret(),
            brokers: default_brokers(),
            topics: Topics::default(),
            redis_url: default_redis_url(),
            database_url: default_database_url(),
            client_queue: default_client_queue(),
            ping_interval_secs: default_ping_interval_secs(),
        }
    }
}

/// Why the push stage could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// A configuration value is unusable (reported before anything starts).
    #[error("invalid push configuration: {0}")]
    Config(String),
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
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
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

/// The stage entry point: bind, then serve until `shutdown` is cancelled.
///
/// Exists so the binary (and end-to-end tests) start push with one call.
pub async fn run(config: PushConfig, shutdown: CancellationToken) -> Result<(), PushError> {
    let server = PushServer::bind(config).await?;
    tracing::info!(addr = %server.local_addr(), "push listening");
    server.serve(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_fill_missing_fields() {
        let config: PushConfig = serde_json::from_str(
            r#"{"jwt_secret":"s","brokers":"b:1","redis_url":"redis://r:1","database_url":"postgres://p/d"}"#,
        )
        .expect("parse");
        assert_eq!(config.listen, default_listen());
        assert_eq!(config.jwt_secret, "s");
        assert_eq!(config.brokers, "b:1");
        assert_eq!(config.client_queue, 1024);
        assert_eq!(config.ping_interval_secs, 15);
        assert_eq!(config.redis_url, "redis://r:1");
    }

    #[test]
    fn partial_config_takes_the_rest_from_default() {
        let config: PushConfig = serde_json::from_str(r#"{"client_queue":7}"#).expect("parse");
        assert_eq!(config.client_queue, 7);
        assert_eq!(config.jwt_secret, DEV_JWT_SECRET);
        assert_eq!(config.brokers, "127.0.0.1:19092");
        assert_eq!(config.topics, Topics::default());
    }

    #[test]
    fn default_matches_dev_setup() {
        let config = PushConfig::default();
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.jwt_secret, "strikeflow-dev-secret-change-me");
        assert_eq!(config.brokers, "127.0.0.1:19092");
        assert_eq!(
            config.database_url,
            "postgres://strikeflow@127.0.0.1:15432/strikeflow"
        );
    }
}
