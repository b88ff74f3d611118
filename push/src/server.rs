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

use crate::admission::{self, Refusal};
use crate::auth::KeySet;
use crate::catalogue::Catalogue;
use crate::feed::Feed;
use crate::frame::Format;
use crate::hub::Hub;
use crate::limits::Limits;
use crate::presence::Presence;
use crate::ready::Readiness;
use crate::redis_link::RedisLink;
use crate::session::{self, Start};
use crate::snapshot::SnapshotStore;
use crate::{http, stats, PushConfig, PushError, PushSettings};

/// The WebSocket subprotocol of the JSON protocol. A client offering it is selected with
/// it; one offering it without a token in the request authenticates with a first `auth`
/// message instead of being refused.
pub const PROTOCOL_JSON: &str = "strikeflow.v1";
/// The WebSocket subprotocol of the same protocol in MessagePack: every server message is a
/// binary frame holding the MessagePack encoding of the document a JSON client gets as
/// text, and requests may be MessagePack binary frames or JSON text frames. Otherwise like
/// [`PROTOCOL_JSON`] (first-message authentication included). A client offering both gets
/// the one it lists first.
pub const PROTOCOL_MSGPACK: &str = "strikeflow.v1.msgpack";
/// Prefix of the subprotocol that carries the token (`bearer.<jwt>`), for browsers, which
/// cannot set an `Authorization` header on a WebSocket. Never selected, never echoed.
pub const PROTOCOL_BEARER_PREFIX: &str = "bearer.";
/// Bytes tungstenite buffers per client before the writer must wait for the socket; with the
/// client queue this bounds the memory a slow client can hold.
const WRITE_BUFFER: usize = 64 * 1024;
/// Bytes tungstenite reads from a client socket at once. Its default (128 KiB) is
/// allocated per connection and zero-filled before every read, for clients that send a few
/// small requests: most of an idle connection's memory and a sixth of push's CPU under load
/// (`strikeflow bench push`). A larger request is simply read in several pieces.
const READ_BUFFER: usize = 4 * 1024;
/// How long shutdown waits for sessions to send their close frames.
const SESSION_DRAIN: Duration = Duration::from_secs(5);

/// What every request handler and session shares.
pub(crate) struct AppState {
    pub(crate) keys: Arc<KeySet>,
    pub(crate) settings: PushSettings,
    pub(crate) limits: Arc<Limits>,
    pub(crate) presence: Arc<Presence>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) snapshots: Arc<SnapshotStore>,
    pub(crate) catalogue: Arc<Catalogue>,
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
    keys: Arc<KeySet>,
    redis: Arc<RedisLink>,
    hub: Arc<Hub>,
    snapshots: Arc<SnapshotStore>,
    catalogue: Arc<Catalogue>,
    presence: Arc<Presence>,
    feed: Feed,
    postgres: strikeflow_tls::PgTarget,
}

impl std::fmt::Debug for PushServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushServer")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl PushServer {
    /// Validate the configuration (see [`PushConfig::validate`]), load the token keys,
    /// create the clients and bind the listener.
    ///
    /// Kafka, Redis and PostgreSQL are connected lazily (in `serve` and on first use), so a
    /// dependency that is down delays data, never start-up; `/readyz` reports it.
    pub async fn bind(config: PushConfig) -> Result<PushServer, PushError> {
        config.validate()?;
        let keys = Arc::new(config.auth.load_keys()?);
        let postgres = strikeflow_tls::postgres(&config.database_url)?;
        let redis = Arc::new(RedisLink::new(&config.redis_url)?);
        let namespace = &config.kafka.topics.prefix;
        let snapshots = Arc::new(SnapshotStore::new(redis.clone(), namespace));
        let presence = Arc::new(Presence::new(redis.clone(), namespace));
        let hub = Arc::new(Hub::with_history(config.settings.history_bytes));
        let catalogue = Arc::new(Catalogue::default());
        let feed = Feed::new(
            &config.kafka.brokers,
            config.kafka.topics.clone(),
            config.settings.replay(),
            hub.clone(),
            snapshots.clone(),
            catalogue.clone(),
        )?
        .with_registry(strikeflow_kafka::Registry::new(config.registry.as_ref())?);
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
        if config.auth.jwt_secret == crate::auth::DEV_JWT_SECRET {
            tracing::warn!("push is using the development JWT secret (allowed on loopback only)");
        }
        stats::describe();
        Ok(PushServer {
            listener,
            local_addr,
            config,
            keys,
            redis,
            hub,
            snapshots,
            catalogue,
            presence,
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
            keys,
            redis,
            hub,
            snapshots,
            catalogue,
            presence,
            feed,
            postgres,
        } = self;
        // A child, so an internal failure can stop push without cancelling the caller's token.
        let stop = shutdown.child_token();
        let (sessions_tx, mut sessions_rx) = mpsc::channel::<()>(1);
        let settings = config.settings.clone();
        let readiness = Readiness::new(
            feed.live_consumer(),
            config.kafka.topics.bars(),
            postgres,
            redis,
        );
        let state = Arc::new(AppState {
            keys: keys.clone(),
            limits: Limits::new(settings.max_connections, settings.max_connections_per_user),
            settings,
            presence: presence.clone(),
            hub,
            snapshots: snapshots.clone(),
            catalogue,
            readiness,
            shutdown: stop.clone(),
            _sessions: sessions_tx,
        });

        let feed_task = spawn_feed(feed, stop.clone());
        let writer_task = tokio::spawn(snapshots.run_writer(stop.clone()));
        let jwks_task = tokio::spawn(keys.watch_jwks(config.auth.jwks_reload(), stop.clone()));
        let lease_task = tokio::spawn(presence.run_renewer(stop.clone()));

        tracing::info!(addr = %local_addr, "push serving");
        let header_timeout = Duration::from_secs(config.settings.header_timeout_secs);
        http::serve(listener, router(state), header_timeout, stop.clone()).await;
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
        for (task, handle) in [("jwks watcher", jwks_task), ("lease renewer", lease_task)] {
            handle
                .await
                .map_err(|source| PushError::Task { task, source })?;
        }
        feed_result
            .map_err(|source| PushError::Task {
                task: "feed",
                source,
            })?
            .map_err(PushError::FeedRuntime)?;
        writer_result.map_err(|source| PushError::Task {
            task: "snapshot writer",
            source,
        })?;
        tracing::info!("push stopped");
        Ok(())
    }
}

/// Runs the feed on a thread and runtime of its own.
///
/// The feed is one task that serves every session; on the shared runtime, each time it
/// yielded it queued behind every session it had just woken — 10,000 writers at 5 µs each
/// put 50 ms between two of its turns, and the latency of every message grew by seconds
/// while the cores were half idle (`strikeflow bench push`). On its own thread the operating
/// system shares the cores between it and the sessions' workers instead.
fn spawn_feed(
    feed: Feed,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<Result<(), std::io::Error>> {
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("push-feed")
            .build()?;
        runtime.block_on(feed.run(stop));
        Ok(())
    })
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

/// Readiness: 200 while push can serve (`ok`, or `degraded` when an optional dependency
/// is down), 503 when it cannot; the body reports every dependency.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let report = state.readiness.report().await;
    let status = if report.is_ready() {
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

/// The WebSocket endpoint: take a node slot, authenticate (refusing the upgrade with 401,
/// 429 or 503), then hand the socket to a session in the format the subprotocol chose (see
/// [`preferred_protocols`]). A client offering `strikeflow.v1` or `strikeflow.v1.msgpack`
/// without a token is upgraded and must authenticate in its first message.
async fn ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let offered = offered_protocols(&headers);
    // The query-string form is for browsers; the URL (and so the token) is never logged.
    let token = bearer_token(&headers)
        .or_else(|| {
            offered
                .iter()
                .find_map(|p| p.strip_prefix(PROTOCOL_BEARER_PREFIX).map(str::to_owned))
        })
        .or_else(|| query.ok().and_then(|q| q.0.token))
        .filter(|t| !t.is_empty());
    let in_band = offered
        .iter()
        .any(|p| p == PROTOCOL_JSON || p == PROTOCOL_MSGPACK);
    if token.is_none() && !in_band {
        let refusal = Refusal::Missing(
            "missing token: send `Authorization: Bearer <jwt>`, the subprotocol \
             `bearer.<jwt>`, `?token=<jwt>`, or offer `strikeflow.v1` (or \
             `strikeflow.v1.msgpack`) and send {\"op\":\"auth\"} first",
        );
        refusal.count();
        return refusal.http();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade.protocols(preferred_protocols(&offered)),
        Err(rejection) => return rejection.into_response(),
    };
    // What the handshake answers is what the session speaks.
    let format = match upgrade.selected_protocol() {
        Some(selected) if selected.as_bytes() == PROTOCOL_MSGPACK.as_bytes() => Format::MsgPack,
        _ => Format::Json,
    };
    let Some(slot) = state.limits.try_connect() else {
        let refusal = Refusal::NodeLimit;
        refusal.count();
        return refusal.http();
    };
    let id = state.hub.next_client_id();
    let start = match token {
        Some(token) => match admission::admit(&state, &token, slot, id).await {
            Ok(ticket) => Start::Ready(ticket),
            Err(refusal) => {
                refusal.count();
                return refusal.http();
            }
        },
        None => Start::AwaitingAuth { slot, id },
    };
    // Generous: tungstenite refuses only messages far beyond the limit; the session closes
    // anything over it with 1009 after reading it whole (see `session`).
    let hard_limit = state.settings.max_frame_bytes.saturating_mul(2);
    upgrade
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(hard_limit)
        .max_frame_size(hard_limit)
        .on_failed_upgrade(|err| tracing::debug!(error = %err, "websocket upgrade failed"))
        .on_upgrade(move |socket| session::run(socket, state, start, format))
}

/// The subprotocols push speaks, in the order to select from what the client offers: of
/// `strikeflow.v1` and `strikeflow.v1.msgpack`, the one the client lists first (clients list
/// subprotocols by preference, RFC 6455 §4.1), JSON when it offers neither.
fn preferred_protocols(offered: &[String]) -> [&'static str; 2] {
    let position = |name: &str| offered.iter().position(|p| p == name);
    match (position(PROTOCOL_JSON), position(PROTOCOL_MSGPACK)) {
        (None, Some(_)) => [PROTOCOL_MSGPACK, PROTOCOL_JSON],
        (Some(json), Some(msgpack)) if msgpack < json => [PROTOCOL_MSGPACK, PROTOCOL_JSON],
        _ => [PROTOCOL_JSON, PROTOCOL_MSGPACK],
    }
}

/// The subprotocols a client offers (`Sec-WebSocket-Protocol`, comma-separated, possibly
/// over several header lines).
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
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

    #[test]
    fn the_first_offered_format_is_preferred() {
        let offer = |list: &[&str]| {
            let offered: Vec<String> = list.iter().map(|p| (*p).to_owned()).collect();
            preferred_protocols(&offered)[0]
        };
        assert_eq!(offer(&[]), PROTOCOL_JSON);
        assert_eq!(offer(&["bearer.x"]), PROTOCOL_JSON);
        assert_eq!(offer(&[PROTOCOL_JSON]), PROTOCOL_JSON);
        assert_eq!(offer(&["bearer.x", PROTOCOL_MSGPACK]), PROTOCOL_MSGPACK);
        assert_eq!(offer(&[PROTOCOL_MSGPACK, PROTOCOL_JSON]), PROTOCOL_MSGPACK);
        assert_eq!(offer(&[PROTOCOL_JSON, PROTOCOL_MSGPACK]), PROTOCOL_JSON);
        assert_eq!(
            offer(&["other", PROTOCOL_MSGPACK, "x", PROTOCOL_JSON]),
            PROTOCOL_MSGPACK
        );
    }

    #[test]
    fn offered_protocols_are_split_and_trimmed() {
        let mut headers = HeaderMap::new();
        assert!(offered_protocols(&headers).is_empty());
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("strikeflow.v1, bearer.a.b.c"),
        );
        headers.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(" other ,"),
        );
        assert_eq!(
            offered_protocols(&headers),
            vec!["strikeflow.v1", "bearer.a.b.c", "other"]
        );
    }
}
