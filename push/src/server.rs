//! The HTTP side: binding, the axum router, authentication at the upgrade, and orderly
//! shutdown of everything push runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::{self, Claims};
use crate::feed::Feed;
use crate::hub::Hub;
use crate::ready::Readiness;
use crate::snapshot::SnapshotStore;
use crate::{session, stats, PushConfig, PushError};

/// Largest frame or message a client may send; requests are tiny JSON objects.
pub(crate) const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Bytes tungstenite buffers per client before the writer must wait for the socket; with the
/// client queue this bounds the memory a slow client can hold.
const WRITE_BUFFER: usize = 64 * 1024;
/// How long shutdown waits for sessions to send their close frames.
const SESSION_DRAIN: Duration = Duration::from_secs(5);

/// What every request handler and session shares.
pub(crate) struct AppState {
    pub(crate) jwt_secret: String,
    pub(crate) client_queue: usize,
    pub(crate) ping_interval: Duration,
    pub(crate) hub: Arc<Hub>,
    pub(crate) snapshots: Arc<SnapshotStore>,
    pub(crate) readiness: Readiness,
    /// Cancelled when push stops; each session watches a child of it.
    pub(crate) shutdown: CancellationToken,
    /// Held (through the state) by every session; `serve` waits until all are dropped
    /// (the mini-redis `shutdown_complete` pattern).
    _sessions: mpsc::Sender<()>,
}

/// A bound, not yet running push server. Binding first lets callers (tests) listen on port
/// 0 and learn the address before serving.
pub struct PushServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    config: PushConfig,
    hub: Arc<Hub>,
    snapshots: Arc<SnapshotStore>,
    feed: Feed,
    postgres: tokio_postgres::Config,
}

impl std::fmt::Debug for PushServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl PushServer {
    /// Validate the configuration (see [`PushConfig::validate`]), create the clients and
    /// bind the listener.
    ///
    /// Kafka, Redis and PostgreSQL are connected lazily (in `serve` and on first use), so a
    /// dependency that is down delays data, never start-up; `/readyz` reports it.
    pub async fn bind(config: PushConfig) -> Result<PushServer, PushError> {
        config.validate()?;
        let postgres: tokio_postgres::Config = config.database_url.parse()?;
        let snapshots = Arc::new(SnapshotStore::new(
            &config.redis_url,
            &config.kafka.topics.prefix,
        )?);
        let hub = Arc::new(Hub::new());
        let feed = Feed::new(
            &config.kafka.brokers,
            config.kafka.topics.clone(),
            hub.clone(),
            snapshots.clone(),
        )?;
        let listener = TcpListener::bind(config.settings.listen)
            .await
            .map_err(|source| PushError::Bind {
                addr: config.settings.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| PushError::Bind {
            addr: config.settings.listen,
            source,
        })?;
        if config.jwt_secret == crate::DEV_JWT_SECRET {
            tracing::warn!("push is using the development JWT secret; set a real one outside dev");
        }
        stats::describe();
        Ok(PushServer {
            listener,
            local_addr,
            config,
            hub,
            snapshots,
            feed,
            postgres,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serve until `shutdown` is cancelled; then stop accepting, close every client with
    /// 1001, stop the feed, flush snapshots, and return.
    pub async fn serve(self, shutdown: CancellationToken) -> Result<(), PushError> {
        let PushServer {
            listener,
            local_addr,
            config,
            hub,
            snapshots,
            feed,
            postgres,
        } = self;
        // A child, so an internal failure can stop push without cancelling the caller's token.
        let stop = shutdown.child_token();
        let (sessions_tx, mut sessions_rx) = mpsc::channel::<()>(1);
        let state = Arc::new(AppState {
            jwt_secret: config.jwt_secret.clone(),
            client_queue: config.settings.client_queue,
            ping_interval: Duration::from_secs(config.settings.ping_interval_secs),
            hub,
            snapshots: snapshots.clone(),
            readiness: Readiness::new(feed.live_consumer(), postgres, snapshots.clone()),
            shutdown: stop.clone(),
            _sessions: sessions_tx,
        });

        let feed_task = tokio::spawn(feed.run(stop.clone()));
        let writer_task = tokio::spawn(snapshots.run_writer(stop.clone()));

        tracing::info!(addr = %local_addr, "push serving");
        let served = axum::serve(listener, router(state))
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .await;
        if let Err(err) = &served {
            tracing::error!(error = %err, "http server failed; stopping push");
        }
        stop.cancel();

        // The router (and its state) is gone; only sessions still hold the sender.
        if tokio::time::timeout(SESSION_DRAIN, sessions_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("some sessions did not finish closing within {SESSION_DRAIN:?}");
        }
        let feed_result = feed_task.await;
        let writer_result = writer_task.await;
        served.map_err(PushError::Serve)?;
        feed_result.map_err(|source| PushError::Task {
            task: "feed",
            source,
        })?;
        writer_result.map_err(|source| PushError::Task {
            task: "snapshot writer",
            source,
        })?;
        tracing::info!("push stopped");
        Ok(())
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/ws", get(ws))
        .with_state(state)
}

/// Liveness: the process is up and serving HTTP.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every dependency answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let report = state.readiness.check().await;
    let status = if report.all_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    token: Option<String>,
}

/// The WebSocket endpoint: authenticate first (refusing the upgrade with 401), then hand the
/// socket to a session.
async fn ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let token = bearer_token(&headers).or_else(|| query.ok().and_then(|q| q.0.token));
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return unauthorized(
            "missing token: send `Authorization: Bearer <jwt>` or `?token=<jwt>`".into(),
        );
    };
    let claims: Claims = match auth::verify(&state.jwt_secret, &token) {
        Ok(claims) => claims,
        Err(err) => return unauthorized(err.to_string()),
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_failed_upgrade(|err| tracing::debug!(error = %err, "websocket upgrade failed"))
        .on_upgrade(move |socket| session::run(socket, state, claims))
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn unauthorized(message: String) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": message })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn bearer_token_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc.def.ghi"),
        );
        assert_eq!(bearer_token(&headers).as_deref(), Some("abc.def.ghi"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer  x"));
        assert_eq!(bearer_token(&headers).as_deref(), Some("x"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic dXNlcg=="),
        );
        assert_eq!(bearer_token(&headers), None);
    }
}
