//! One WebSocket client.
//!
//! A session is two loops in one task: the reader handles requests and watches liveness and
//! token expiry; the writer drains the client's queue onto the socket and sends pings. They
//! share the client's queue, whose stop token ends both, whoever decides (hub: slow
//! consumer; reader: ping timeout, token expiry, peer gone; writer: socket error; server:
//! shutdown). The writer then sends the matching close frame, with a time limit, because a
//! client that stopped reading would otherwise hold the session forever.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};

use crate::auth::{self, Claims, LEEWAY_SECS};
use crate::protocol::{parse_channel, ClientOp, ServerMsg};
use crate::queue::{ClientQueue, CloseReason, Pushed};
use crate::server::AppState;
use crate::stats;

/// Most channels one client may subscribe to at once.
pub(crate) const MAX_SUBSCRIPTIONS: usize = 4096;
/// Messages written per flush.
const WRITE_BATCH: usize = 64;
/// How long closing may take (close frame out, peer's close frame in).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a subscription waits for Redis before going on without a snapshot.
const SNAPSHOT_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Run one client's session until it closes or push shuts down.
pub(crate) async fn run(socket: WebSocket, state: Arc<AppState>, claims: Claims) {
    let stop = state.shutdown.child_token();
    let queue = Arc::new(ClientQueue::new(state.client_queue, stop));
    let id = state.hub.next_client_id();
    let clients = metrics::gauge!(stats::CLIENTS);
    clients.increment(1.0);
    tracing::debug!(client = id, sub = %claims.sub, "client connected");

    let (sink, stream) = socket.split();
    let mut reader = Reader {
        id,
        state: &state,
        queue: &queue,
        claims,
        subscriptions: HashSet::new(),
    };
    tokio::join!(
        write_loop(sink, &queue, state.ping_interval),
        reader.run(stream)
    );
    for channel in reader.subscriptions.drain() {
        state.hub.unsubscribe(id, &channel);
    }
    clients.decrement(1.0);
    tracing::debug!(client = id, reason = ?queue.close_reason(), "client disconnected");
}

/// The writing half: queue → socket, plus server pings.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    queue: &ClientQueue,
    ping_every: Duration,
) {
    let stop = queue.stop_token().clone();
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    'outer: loop {
        // Ping even while busy: a client that only listens must still be asked for pongs.
        if ping.tick().now_or_never().is_some() && !send(&mut sink, ping_frame(), queue).await {
            break;
        }
        let batch = queue.pop_batch(WRITE_BATCH);
        if batch.is_empty() {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = queue.wait() => {}
                _ = ping.tick() => {
                    if !send(&mut sink, ping_frame(), queue).await {
                        break;
                    }
                }
            }
            continue;
        }
        for msg in batch {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break 'outer,
                sent = sink.feed(Message::Text(msg)) => if sent.is_err() {
                    queue.close(CloseReason::PeerGone);
                    break 'outer;
                }
            }
        }
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            sent = sink.flush() => if sent.is_err() {
                queue.close(CloseReason::PeerGone);
                break;
            }
        }
    }
    let reason = queue.close_reason().unwrap_or(CloseReason::Shutdown);
    if let Some((code, text)) = reason.close_frame() {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: Utf8Bytes::from_static(text),
        }));
        // The peer may have stopped reading; never wait for it longer than this.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, sink.send(frame)).await;
    }
}

fn ping_frame() -> Message {
    Message::Ping(Bytes::new())
}

/// Send one frame unless the session stops first. False if the session is over.
async fn send(
    sink: &mut SplitSink<WebSocket, Message>,
    frame: Message,
    queue: &ClientQueue,
) -> bool {
    tokio::select! {
        biased;
        _ = queue.stop_token().cancelled() => false,
        sent = sink.send(frame) => {
            if sent.is_err() {
                queue.close(CloseReason::PeerGone);
            }
            sent.is_ok()
        }
    }
}

/// The reading half and the session's request state.
struct Reader<'a> {
    id: u64,
    state: &'a AppState,
    queue: &'a Arc<ClientQueue>,
    claims: Claims,
    subscriptions: HashSet<String>,
}

impl Reader<'_> {
    async fn run(&mut self, mut stream: SplitStream<WebSocket>) {
        let stop = self.queue.stop_token().clone();
        let ping_every = self.state.ping_interval;
        let mut liveness = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        liveness.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        let expiry = tokio::time::sleep_until(self.expires_at());
        tokio::pin!(expiry);

        let stream_open = loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break true,
                _ = &mut expiry => {
                    self.queue.close(CloseReason::TokenExpired);
                    break true;
                }
                _ = liveness.tick() => {
                    if last_seen.elapsed() >= 2 * ping_every {
                        tracing::debug!(client = self.id, "no traffic for two ping intervals");
                        self.queue.close(CloseReason::PingTimeout);
                        break true;
                    }
                }
                frame = stream.next() => {
                    last_seen = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            if let Some(new_expiry) = self.on_text(text.as_str()).await {
                                expiry.as_mut().reset(new_expiry);
                            }
                        }
                        Some(Ok(Message::Binary(_))) => {
                            self.error("binary frames are not supported; send JSON text frames");
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_))) => {
                            self.queue.close(CloseReason::PeerGone);
                            break true;
                        }
                        Some(Err(err)) => {
                            tracing::debug!(client = self.id, error = %err, "websocket read failed");
                            self.queue.close(CloseReason::PeerGone);
                            break false;
                        }
                        None => {
                            self.queue.close(CloseReason::PeerGone);
                            break false;
                        }
                    }
                }
            }
        };
        if stream_open {
            // Let the closing handshake finish (our close frame out, theirs in) so the client
            // sees the close code instead of a reset.
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                while let Some(Ok(frame)) = stream.next().await {
                    if matches!(frame, Message::Close(_)) {
                        // Keep reading once more so the close reply gets flushed.
                        let _ = stream.next().await;
                        break;
                    }
                }
            })
            .await;
        }
    }

    fn expires_at(&self) -> Instant {
        Instant::now() + self.claims.remaining() + Duration::from_secs(LEEWAY_SECS)
    }

    /// Handle one request. Returns the new expiry if the token was refreshed.
    async fn on_text(&mut self, text: &str) -> Option<Instant> {
        match ClientOp::parse(text) {
            Err(err) => self.error(&err.to_string()),
            Ok(ClientOp::Subscribe { channel }) => self.subscribe(channel).await,
            Ok(ClientOp::Unsubscribe { channel }) => {
                if self.subscriptions.remove(&channel) {
                    self.state.hub.unsubscribe(self.id, &channel);
                }
            }
            Ok(ClientOp::Ping) => self.reply(&ServerMsg::Pong),
            Ok(ClientOp::Auth { token }) => return self.refresh(&token),
        }
        None
    }

    async fn subscribe(&mut self, channel: String) {
        let kind = match parse_channel(&channel) {
            Ok(kind) => kind,
            Err(err) => return self.error(&err.to_string()),
        };
        if !self.claims.allows(&channel) {
            return self.error(&format!("channel {channel:?} is not allowed by your token"));
        }
        if !self.subscriptions.contains(&channel) && self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return self.error(&format!(
                "too many subscriptions (at most {MAX_SUBSCRIPTIONS})"
            ));
        }
        let hub = &self.state.hub;
        let stored = if kind.keeps_latest() && !hub.has_latest(&channel) {
            match tokio::time::timeout(SNAPSHOT_READ_TIMEOUT, self.state.snapshots.load(&channel))
                .await
            {
                Ok(Ok(stored)) => stored,
                Ok(Err(err)) => {
                    tracing::warn!(channel = %channel, error = %err, "snapshot unavailable");
                    None
                }
                Err(_) => {
                    tracing::warn!(channel = %channel, "snapshot read timed out");
                    None
                }
            }
        } else {
            None
        };
        hub.subscribe(self.id, self.queue, kind, &channel, stored);
        self.subscriptions.insert(channel);
    }

    /// In-band token refresh: same subject, new expiry and channel claims. Subscriptions the
    /// new claims no longer allow are dropped (with an error message each).
    fn refresh(&mut self, token: &str) -> Option<Instant> {
        let claims = match auth::verify(&self.state.jwt_secret, token) {
            Ok(claims) => claims,
            Err(err) => {
                self.error(&format!("token refresh rejected: {err}"));
                return None;
            }
        };
        if claims.sub != self.claims.sub {
            self.error("token refresh rejected: the subject differs");
            return None;
        }
        let revoked: Vec<String> = self
            .subscriptions
            .iter()
            .filter(|channel| !claims.allows(channel))
            .cloned()
            .collect();
        for channel in revoked {
            self.subscriptions.remove(&channel);
            self.state.hub.unsubscribe(self.id, &channel);
            self.error(&format!(
                "unsubscribed from {channel:?}: not allowed by the new token"
            ));
        }
        let exp = claims.exp;
        self.claims = claims;
        self.reply(&ServerMsg::Authenticated { exp });
        Some(self.expires_at())
    }

    fn error(&self, message: &str) {
        self.reply(&ServerMsg::Error { message });
    }

    fn reply(&self, msg: &ServerMsg<'_>) {
        if self.queue.push(Utf8Bytes::from(msg.to_json()), None) == Pushed::Overflow {
            metrics::counter!(stats::SLOW_CLIENT_CLOSES).increment(1);
        }
    }
}
