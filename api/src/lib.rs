//! The `api` stage: a read-only HTTP query API over the analytics the sink stores in
//! PostgreSQL / TimescaleDB, and a TradingView UDF datafeed for charts.
//!
//! ```text
//! client ──HTTP──▶ axum router ──▶ handler: parse and check every parameter (400 naming it)
//!                                     └──▶ exactly one SQL statement (pooled connection)
//!                                            └──▶ JSON built from the rows (404 when the
//!                                                 statement says the symbol is unknown)
//! ```
//!
//! * `/api/v1/…` (the `rest` module): underlyings, expiries, instrument search and
//!   lookup, the option chain as of a moment and across expiries, strike analysis, moneyness
//!   series, bars of every timeframe, the indicator registry and stored indicator values;
//!   `/api/v1/openapi.json` describes them (OpenAPI 3.1, `api/openapi.json`).
//! * `/udf/…` (the `udf` module): `config`, `symbols`, `search`, `history`, `time`, as TradingView's charting
//!   library's UDF adapter expects them.
//! * `/healthz` (the process answers) and `/readyz` (PostgreSQL answers).
//!
//! **Around the routes** (`server::router`): request ids and an access log (`access`),
//! CORS, per-client rate limits (`limit`), and API tokens on `/api/v1` and `/udf` (`auth`:
//! push's key handling, the API's own audience and a `scope` claim). Hot answers (chains,
//! UDF history) are cached in Redis for at most one emission interval (`cache`); a Redis
//! outage only makes them uncached.
//!
//! **One statement per request.** Every handler validates its parameters before touching the
//! database, then issues a single statement (`query_typed`: parse, bind and execute in one
//! round trip, planned with the actual values) whose result also tells an unknown symbol or
//! chain apart from an empty time range. Bad input therefore costs no query at all, and
//! `api/tests/statements.rs` counts the statements every endpoint sends on the wire.
//!
//! **Errors** are `{"error":{"code":…,"message":…,"parameter":…}}` with stable codes
//! (`docs/api.md`); the UDF endpoints answer `{"s":"error","errmsg":…}` as the UDF protocol
//! wants, with the same `error` object beside it.
//!
//! Shutdown is threaded through explicitly with a [`CancellationToken`].

mod access;
mod auth;
mod cache;
mod config;
mod dashboard;
mod db;
mod error;
mod limit;
mod metrics;
mod openapi;
mod params;
mod rest;
mod server;
mod udf;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

pub use auth::{mint_token, TokenRequest};
pub use config::{ApiConfig, ApiSettings, DEFAULT_AUDIENCE, DEFAULT_SCOPE};
pub use server::ApiServer;

/// Why the API stage could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A configuration value is unusable (reported before anything binds or connects).
    #[error("{key}: {reason}")]
    Config {
        /// The key, with its section (`api.pool_size`, `database.url`).
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The HTTP listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A token key of `[auth]` cannot be loaded (the message names `auth.<key>`).
    #[error(transparent)]
    Keys(strikeflow_push::PushError),
    /// The HTTP server stopped with an I/O error.
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

impl ApiError {
    /// A refused setting: `key: reason`.
    pub(crate) fn config(key: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError::Config {
            key,
            reason: reason.into(),
        }
    }
}

/// The stage entry point: check the configuration, bind, then serve until `shutdown` is
/// cancelled (requests in flight finish first).
///
/// Exists so the binary (`strikeflow api`, and `run`'s supervisor) starts the API with one
/// call, as it starts the other stages.
pub async fn run(config: ApiConfig, shutdown: CancellationToken) -> Result<(), ApiError> {
    let server = ApiServer::bind(config).await?;
    tracing::info!(addr = %server.local_addr(), "api listening");
    server.serve(shutdown).await
}
