//! Hot answers (`/api/v1/chain`, `/api/v1/chains`, `/udf/history`) kept in Redis for
//! `api.cache_ttl_ms`.
//!
//! * **Keys** are the request's canonical parameters, as the handler parsed them (so
//!   `underlying=nifty` and `underlying=NIFTY` share one), under a namespace of the crate
//!   version and the database (host, port, database name, user), so API nodes of one
//!   deployment share answers and nothing is shared across databases.
//! * **Freshness**: an entry expires `cache_ttl_ms` after it was read from PostgreSQL
//!   (`SET … PX`), and the binary refuses a TTL longer than the processors' emission interval
//!   (`processor.analytics.emit_every_ms`), so no answer is served older than one emission
//!   interval. There is no other invalidation: newer data is seen at the latest when the
//!   entry expires.
//! * **Redis is optional**: a failing, slow (100 ms per command) or unreachable Redis makes
//!   the request a plain database answer, never an error; after a failure Redis is left
//!   alone for a second, so an outage costs one slow request per second at most.
//!
//! Answers carry `x-cache: hit | miss | bypass` (bypass: Redis off or failing).

use std::future::Future;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use serde::Serialize;

use crate::error::Problem;
use crate::server::App;
use crate::{metrics, ApiConfig, ApiError};

/// Time limit of one Redis command; a cache slower than this is no help.
const COMMAND_TIMEOUT: Duration = Duration::from_millis(100);
/// Time limit of connecting to Redis.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// How long Redis is left alone after a failure.
const BACKOFF: Duration = Duration::from_secs(1);

/// The answer header telling how the cache took part.
pub(crate) const X_CACHE: &str = "x-cache";

/// The Redis cache, or nothing when `api.cache_ttl_ms` is 0.
pub(crate) struct Cache {
    client: redis::Client,
    ttl: Duration,
    namespace: String,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    down_until: std::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("ttl", &self.ttl)
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// The stored answer.
    Hit(Vec<u8>),
    /// Nothing stored: store the answer.
    Miss,
    /// The cache is off or Redis is failing: answer without it.
    Bypass,
}

impl Lookup {
    fn label(&self) -> &'static str {
        match self {
            Lookup::Hit(_) => "hit",
            Lookup::Miss => "miss",
            Lookup::Bypass => "bypass",
        }
    }
}

impl Cache {
    /// A cache on `config.redis_url` (not connected until first used).
    pub(crate) fn new(config: &ApiConfig) -> Result<Cache, ApiError> {
        let client = strikeflow_tls::redis_client(&config.redis_url)
            .map_err(|e| ApiError::config("redis.url", e.to_string()))?;
        let pg = config.postgres()?.config;
        let identity = format!(
            "{:?}|{:?}|{}|{}",
            pg.get_hosts(),
            pg.get_ports(),
            pg.get_dbname().unwrap_or_default(),
            pg.get_user().unwrap_or_default()
        );
        Ok(Cache {
            client,
            ttl: config.settings.cache_ttl(),
            namespace: format!(
                "strikeflow:api:{}:{:016x}:",
                env!("CARGO_PKG_VERSION"),
                fnv1a(identity.as_bytes())
            ),
            conn: tokio::sync::Mutex::new(None),
            down_until: std::sync::Mutex::new(None),
        })
    }

    fn resting(&self) -> bool {
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        down.is_some_and(|until| Instant::now() < until)
    }

    async fn failed(&self, op: &'static str, error: impl std::fmt::Display) {
        ::metrics::counter!(metrics::CACHE_ERRORS, "op" => op).increment(1);
        tracing::warn!(op, %error, "Redis cache failed; answering without it for a second");
        *self.down_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + BACKOFF);
        *self.conn.lock().await = None;
    }

    async fn connection(&self) -> Option<MultiplexedConnection> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Some(conn.clone());
        }
        // Checked again under the lock: requests queued behind a failed connect bypass.
        if self.resting() {
            return None;
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let connect = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let error = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(conn)) => {
                *guard = Some(conn.clone());
                return Some(conn);
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no connection within {CONNECT_TIMEOUT:?}"),
        };
        drop(guard);
        self.failed("connect", error).await;
        None
    }

    /// The stored answer under `key`.
    pub(crate) async fn get(&self, key: &str) -> Lookup {
        if self.ttl.is_zero() || self.resting() {
            return Lookup::Bypass;
        }
        let Some(mut conn) = self.connection().await else {
            return Lookup::Bypass;
        };
        let key = format!("{}{key}", self.namespace);
        let mut command = redis::cmd("GET");
        command.arg(&key);
        let get = command.query_async::<Option<Vec<u8>>>(&mut conn);
        match tokio::time::timeout(COMMAND_TIMEOUT, get).await {
            Ok(Ok(Some(body))) => Lookup::Hit(body),
            Ok(Ok(None)) => Lookup::Miss,
            Ok(Err(e)) => {
                self.failed("get", e).await;
                Lookup::Bypass
            }
            Err(_) => {
                self.failed("get", format!("no answer within {COMMAND_TIMEOUT:?}"))
                    .await;
                Lookup::Bypass
            }
        }
    }

    /// Stores `body` under `key` for the TTL.
    pub(crate) async fn put(&self, key: &str, body: &[u8]) {
        let Some(mut conn) = self.connection().await else {
            return;
        };
        let key = format!("{}{key}", self.namespace);
        let millis = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut command = redis::cmd("SET");
        command.arg(&key).arg(body).arg("PX").arg(millis);
        let set = command.query_async::<()>(&mut conn);
        match tokio::time::timeout(COMMAND_TIMEOUT, set).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.failed("set", e).await,
            Err(_) => {
                self.failed("set", format!("no answer within {COMMAND_TIMEOUT:?}"))
                    .await
            }
        }
    }
}

/// The answer of a cacheable request: the one stored under `key`, or `compute`'s, stored
/// for the next ones. `key` must hold every parameter the answer depends on.
pub(crate) async fn cached<T, E>(
    app: &App,
    key: String,
    compute: impl Future<Output = Result<T, E>>,
) -> Result<Response, E>
where
    T: Serialize,
    E: From<Problem>,
{
    let lookup = app.cache.get(&key).await;
    ::metrics::counter!(metrics::CACHE_LOOKUPS, "result" => lookup.label()).increment(1);
    let label = lookup.label();
    let body = match lookup {
        Lookup::Hit(body) => body,
        Lookup::Miss | Lookup::Bypass => {
            let answer = compute.await?;
            let body = serde_json::to_vec(&answer).map_err(|error| {
                tracing::error!(%error, "serialising an answer");
                Problem::internal()
            })?;
            if lookup == Lookup::Miss {
                app.cache.put(&key, &body).await;
            }
            body
        }
    };
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static(X_CACHE),
                HeaderValue::from_static(label),
            ),
        ],
        body,
    )
        .into_response())
}

/// A cache key: the canonical parameters as a JSON array (unambiguous whatever a symbol
/// holds), first the endpoint's name.
pub(crate) fn cache_key(parameters: &impl Serialize) -> Result<String, Problem> {
    serde_json::to_string(parameters).map_err(|error| {
        tracing::error!(%error, "building a cache key");
        Problem::internal()
    })
}

/// FNV-1a, 64 bits: stable across processes and builds (unlike std's hasher), so every
/// API node names a database's entries alike.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_is_the_published_function() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn namespaces_follow_the_database() {
        let cache = |url: &str| {
            Cache::new(&ApiConfig {
                database_url: url.into(),
                ..ApiConfig::default()
            })
            .expect("cache")
            .namespace
        };
        let a = cache("postgres://u@h:1/a");
        assert_eq!(a, cache("postgres://u@h:1/a?application_name=x"));
        assert_ne!(a, cache("postgres://u@h:1/b"));
        assert_ne!(a, cache("postgres://u@h:2/a"));
        assert!(a.starts_with("strikeflow:api:"), "{a}");
    }

    #[tokio::test]
    async fn a_cache_that_is_off_is_bypassed_without_connecting() {
        let cache = Cache::new(&ApiConfig {
            redis_url: "redis://127.0.0.1:1".into(),
            settings: crate::ApiSettings {
                cache_ttl_ms: 0,
                ..crate::ApiSettings::default()
            },
            ..ApiConfig::default()
        })
        .expect("cache");
        assert_eq!(cache.get("k").await, Lookup::Bypass);
        assert!(cache.conn.lock().await.is_none());
    }
}
