//! One WebSocket client.
//!
//! A session is two loops in one task: the reader handles requests and watches liveness and
//! token expiry; the writer drains the client's queue onto the socket and sends pings. They
//! share the client's queue, whose stop token ends both, whoever decides (hub: slow
//! consumer; reader: ping timeout, token expiry, peer gone; writer: socket error; server:
//! shutdown). The writer then sends the matching close frame, with a time limit, because a
//! client that stopped reading would otherwise hold the session forever.
//!
//! A client that upgraded without a token first goes through `authenticate`: its first
//! message must be `auth`, within a deadline. The reader enforces the per-connection limits
//! (request rate, message size, subscriptions) and re-checks revocation at each refresh.
//!
//! Each session has the [`Format`] its subprotocol chose: the writer sends every queued
//! [`Frame`] as JSON text or as MessagePack binary, and a MessagePack client's requests may
//! come as MessagePack binary frames or as JSON text frames.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior};

use crate::admission::{self, close_reason, Refusal, Ticket};
use crate::auth::{AuthError, Claims};
use crate::frame::{Format, Frame};
use crate::hub::ClientId;
use crate::limits::{ConnectionSlot, RateLimit};
use crate::protocol::{parse_channel, ChannelKind, ClientOp, ParseError, ServerMsg, Since};
use crate::queue::{
    ClientQueue, CloseReason, Pushed, CLOSE_AUTH_TIMEOUT, CLOSE_GOING_AWAY, CLOSE_MESSAGE_TOO_BIG,
    CLOSE_UNAUTHORIZED,
};
use crate::server::AppState;
use crate::stats;

/// Messages written per flush.
const WRITE_BATCH: usize = 64;
/// How long closing may take (close frame out, peer's close frame in).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a subscription waits for Redis before going on without a snapshot.
const SNAPSHOT_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest a session's expiry timer is set for; a token whose `exp` lies further ahead
/// (even `u64::MAX`) is simply not expired within it, instead of overflowing an instant.
const MAX_SESSION_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How a session begins.
pub(crate) enum Start {
    /// The token came with the upgrade and was admitted.
    Ready(Ticket),
    /// No token yet: the first message must be `{"op":"auth","token":…}`.
    AwaitingAuth {
        /// The node slot reserved at the upgrade.
        slot: ConnectionSlot,
        /// The session's id.
        id: ClientId,
    },
}

/// Run one client's session, in `format`, until it closes or push shuts down.
pub(crate) async fn run(mut socket: WebSocket, state: Arc<AppState>, start: Start, format: Format) {
    let ticket = match start {
        Start::Ready(ticket) => ticket,
        Start::AwaitingAuth { slot, id } => {
            match authenticate(&mut socket, &state, slot, id, format).await {
                Some(ticket) => ticket,
                None => return,
            }
        }
    };
    let stop = state.shutdown.child_token();
    let queue = Arc::new(
        ClientQueue::new(state.settings.client_queue, stop)
            .with_max_bytes(state.settings.client_queue_bytes),
    );
    let id = ticket.id;
    let clients = metrics::gauge!(stats::CLIENTS);
    clients.increment(1.0);
    tracing::debug!(client = id, sub = %ticket.claims.sub, "client connected");

    let (sink, stream) = socket.split();
    let settings = &state.settings;
    let reader = Reader {
        id,
        state: state.clone(),
        queue: queue.clone(),
        format,
        claims: ticket.claims.clone(),
        subscriptions: HashSet::new(),
        rate: RateLimit::new(settings.ops_per_sec, settings.ops_burst),
    };
    // The reader is a task of its own: joined in one task, it would be polled (its timers,
    // its socket, the stop token's lock) every time the writer is woken for a message.
    let reading = tokio::spawn(reader.run(stream));
    write_loop(sink, &queue, settings.ping_interval(), format).await;
    match reading.await {
        Ok(mut reader) => {
            for channel in reader.subscriptions.drain() {
                state.hub.unsubscribe(id, &channel);
            }
        }
        Err(err) => {
            tracing::error!(client = id, error = %err, "a session's reader failed");
            state.hub.unsubscribe_everywhere(id);
        }
    }
    ticket.finish().await;
    clients.decrement(1.0);
    tracing::debug!(client = id, reason = ?queue.close_reason(), "client disconnected");
}

/// The first-message handshake of a client that upgraded without a token: its first
/// message must be `{"op":"auth","token":…}` (a text frame, or for a MessagePack client also
/// a binary one) and arrive within `push.auth_timeout_secs`. Anything else closes the socket
/// with a documented code; `None` then.
async fn authenticate(
    socket: &mut WebSocket,
    state: &AppState,
    slot: ConnectionSlot,
    id: ClientId,
    format: Format,
) -> Option<Ticket> {
    let deadline = Instant::now() + Duration::from_secs(state.settings.auth_timeout_secs);
    let max_frame = state.settings.max_frame_bytes;
    let required = "authentication required: send {\"op\":\"auth\",\"token\":…} first";
    let request = loop {
        let frame = tokio::select! {
            _ = state.shutdown.cancelled() => {
                close_socket(socket, CLOSE_GOING_AWAY, "server shutting down").await;
                return None;
            }
            frame = tokio::time::timeout_at(deadline, socket.recv()) => frame,
        };
        match frame {
            Err(_) => {
                metrics::counter!(stats::AUTH_FAILURES, "reason" => "timeout").increment(1);
                close_socket(socket, CLOSE_AUTH_TIMEOUT, "authentication timeout").await;
                return None;
            }
            Ok(None | Some(Ok(Message::Close(_)))) => return None,
            Ok(Some(Err(err))) => {
                if is_too_big(err) {
                    metrics::counter!(stats::POLICY_CLOSES, "reason" => "frame_too_big")
                        .increment(1);
                    close_socket(socket, CLOSE_MESSAGE_TOO_BIG, "message too big").await;
                }
                return None;
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Text(text)))) if text.len() > max_frame => {
                metrics::counter!(stats::POLICY_CLOSES, "reason" => "frame_too_big").increment(1);
                close_socket(socket, CLOSE_MESSAGE_TOO_BIG, "message too big").await;
                return None;
            }
            Ok(Some(Ok(Message::Text(text)))) => break ClientOp::parse(text.as_str()),
            Ok(Some(Ok(Message::Binary(bytes)))) if format == Format::MsgPack => {
                if bytes.len() > max_frame {
                    metrics::counter!(stats::POLICY_CLOSES, "reason" => "frame_too_big")
                        .increment(1);
                    close_socket(socket, CLOSE_MESSAGE_TOO_BIG, "message too big").await;
                    return None;
                }
                break ClientOp::parse_msgpack(&bytes);
            }
            Ok(Some(Ok(Message::Binary(_)))) => {
                Refusal::Missing(required).count();
                close_socket(socket, CLOSE_UNAUTHORIZED, required).await;
                return None;
            }
        }
    };
    let Ok(ClientOp::Auth { token }) = request else {
        Refusal::Missing(required).count();
        close_socket(socket, CLOSE_UNAUTHORIZED, required).await;
        return None;
    };
    match admission::admit(state, &token, slot, id).await {
        Ok(ticket) => {
            let reply = Frame::from(
                ServerMsg::Authenticated {
                    exp: ticket.claims.exp,
                }
                .to_json(),
            );
            if socket.send(outgoing(&reply, format)?).await.is_err() {
                return None;
            }
            Some(ticket)
        }
        Err(refusal) => {
            refusal.count();
            let (code, reason) = refusal.close();
            close_socket(socket, code, &reason).await;
            None
        }
    }
}

/// Send a close frame and wait (briefly) for the peer's, so it reads the code instead of
/// a reset.
async fn close_socket(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(close_reason(reason)),
    }));
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        if socket.send(frame).await.is_err() {
            return;
        }
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Whether a read failed because the client's message exceeded tungstenite's limit.
fn is_too_big(err: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error;
    matches!(
        err.into_inner().downcast_ref::<Error>(),
        Some(Error::Capacity(_))
    )
}

/// The WebSocket message carrying `frame` to a client of `format`. Should a message not
/// encode (never expected: push builds every message as valid JSON), the client gets an
/// `error` message saying so in its place, so it knows it missed one.
fn outgoing(frame: &Frame, format: Format) -> Option<Message> {
    match frame.to_message(format) {
        Ok(message) => Some(message),
        Err(err) => {
            tracing::error!(error = %err, ?format, "a message could not be encoded");
            let notice = ServerMsg::Error {
                message: &err.to_string(),
            };
            Frame::from(notice.to_json()).to_message(format).ok()
        }
    }
}

/// The writing half: queue → socket (in the client's format), plus server pings.
///
/// Written for the hot path, where a session wakes for every batch the feed delivers: the
/// socket is polled before the stop signal (a ready socket never touches the cancellation
/// token, whose every poll takes a lock), and the ping is due by a clock comparison rather
/// than by polling a timer per batch.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    queue: &ClientQueue,
    ping_every: Duration,
    format: Format,
) {
    let stop = queue.stop_token().clone();
    let stopped = stop.cancelled();
    tokio::pin!(stopped);
    let mut ping_due = Instant::now() + ping_every;
    let ping_timer = tokio::time::sleep_until(ping_due);
    tokio::pin!(ping_timer);
    'outer: loop {
        // Ping even while busy: a client that only listens must still be asked for pongs.
        if Instant::now() >= ping_due {
            if !send(&mut sink, ping_frame(), queue).await {
                break;
            }
            ping_due = Instant::now() + ping_every;
            ping_timer.as_mut().reset(ping_due);
        }
        let batch = queue.pop_batch(WRITE_BATCH);
        if batch.is_empty() {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = queue.wait() => {}
                _ = &mut ping_timer => {}
            }
            continue;
        }
        for frame in batch {
            let Some(message) = outgoing(&frame, format) else {
                continue;
            };
            tokio::select! {
                biased;
                sent = sink.feed(message) => if sent.is_err() {
                    queue.close(CloseReason::PeerGone);
                    break 'outer;
                },
                _ = &mut stopped => break 'outer,
            }
        }
        tokio::select! {
            biased;
            sent = sink.flush() => if sent.is_err() {
                queue.close(CloseReason::PeerGone);
                break;
            },
            _ = &mut stopped => break,
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
struct Reader {
    id: u64,
    state: Arc<AppState>,
    queue: Arc<ClientQueue>,
    /// The client's format: replies are sent in it, and a MessagePack client may send
    /// requests as binary frames.
    format: Format,
    claims: Claims,
    subscriptions: HashSet<String>,
    rate: RateLimit,
}

impl Reader {
    /// Reads until the session ends; returns itself so the session can drop its
    /// subscriptions.
    async fn run(mut self, mut stream: SplitStream<WebSocket>) -> Self {
        let stop = self.queue.stop_token().clone();
        let ping_every = self.state.settings.ping_interval();
        let max_frame = self.state.settings.max_frame_bytes;
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
                    let data_len = match &frame {
                        Some(Ok(Message::Text(text))) => Some(text.len()),
                        Some(Ok(Message::Binary(bytes))) => Some(bytes.len()),
                        _ => None,
                    };
                    if let Some(len) = data_len {
                        if len > max_frame {
                            self.policy_close(CloseReason::MessageTooBig, "frame_too_big");
                            break true;
                        }
                        if !self.rate.allow(last_seen) {
                            self.policy_close(CloseReason::RateLimited, "rate_limit");
                            break true;
                        }
                    }
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            let request = ClientOp::parse(text.as_str());
                            if let Some(new_expiry) = self.on_request(request).await {
                                expiry.as_mut().reset(new_expiry);
                            }
                        }
                        Some(Ok(Message::Binary(bytes))) if self.format == Format::MsgPack => {
                            let request = ClientOp::parse_msgpack(&bytes);
                            if let Some(new_expiry) = self.on_request(request).await {
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
                            if is_too_big(err) {
                                self.policy_close(CloseReason::MessageTooBig, "frame_too_big");
                                break true;
                            }
                            tracing::debug!(client = self.id, "websocket read failed");
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
        self
    }

    fn policy_close(&self, reason: CloseReason, label: &'static str) {
        metrics::counter!(stats::POLICY_CLOSES, "reason" => label).increment(1);
        tracing::debug!(client = self.id, sub = %self.claims.sub, ?reason, "closing a client that broke a limit");
        self.queue.close(reason);
    }

    fn expires_at(&self) -> Instant {
        let leeway = Duration::from_secs(self.state.keys.leeway_secs());
        let lifetime = self
            .claims
            .remaining()
            .saturating_add(leeway)
            .min(MAX_SESSION_LIFETIME);
        Instant::now() + lifetime
    }

    /// Handle one request (or answer why it could not be read). Returns the new expiry if
    /// the token was refreshed.
    async fn on_request(&mut self, request: Result<ClientOp, ParseError>) -> Option<Instant> {
        match request {
            Err(err) => self.error(&err.to_string()),
            Ok(ClientOp::Subscribe { channel, since }) => {
                self.subscribe(channel, since.as_ref()).await;
            }
            Ok(ClientOp::List) => {
                let reply = self.state.catalogue.list(&self.claims);
                if self.queue.push(Frame::from(reply), None) == Pushed::Overflow {
                    metrics::counter!(stats::SLOW_CLIENT_CLOSES).increment(1);
                }
            }
            Ok(ClientOp::Unsubscribe { channel }) => {
                let channel = parse_channel(&channel).map_or(channel, |parsed| parsed.name);
                if self.subscriptions.remove(&channel) {
                    self.state.hub.unsubscribe(self.id, &channel);
                }
            }
            Ok(ClientOp::Ping) => self.reply(&ServerMsg::Pong),
            Ok(ClientOp::Auth { token }) => return self.refresh(&token).await,
        }
        None
    }

    async fn subscribe(&mut self, requested: String, since: Option<&Since>) {
        let (kind, channel) = match parse_channel(&requested) {
            Ok(parsed) => (parsed.kind, parsed.name),
            Err(err) => return self.error(&err.to_string()),
        };
        if !self.claims.allows(&channel) {
            metrics::counter!(stats::SUBSCRIPTIONS_REFUSED, "reason" => "not_allowed").increment(1);
            let why = if self.claims.channels.is_empty() {
                " (it grants no channels)"
            } else {
                ""
            };
            return self.error(&format!(
                "channel {channel:?} is not allowed by your token{why}"
            ));
        }
        let max = self.state.settings.max_subscriptions;
        if !self.subscriptions.contains(&channel) && self.subscriptions.len() >= max {
            metrics::counter!(stats::SUBSCRIPTIONS_REFUSED, "reason" => "limit").increment(1);
            return self.error(&format!("too many subscriptions (at most {max})"));
        }
        let hub = &self.state.hub;
        let stored = if kind == ChannelKind::Bars && !hub.has_latest(&channel) {
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
        hub.subscribe(self.id, &self.queue, kind, &channel, since, stored);
        self.subscriptions.insert(channel);
    }

    /// In-band token refresh: same subject, new expiry and channel claims. Subscriptions the
    /// new claims no longer allow are dropped (with an error message each). A refused token
    /// leaves the session on its current one; a revoked one ends the session (4005).
    async fn refresh(&mut self, token: &str) -> Option<Instant> {
        let claims = match self.state.keys.verify(token) {
            Ok(claims) => claims,
            Err(err) => {
                metrics::counter!(stats::AUTH_FAILURES, "reason" => err.label()).increment(1);
                self.error(&format!("token refresh rejected: {err}"));
                return None;
            }
        };
        if claims.sub != self.claims.sub {
            self.error("token refresh rejected: the subject differs");
            return None;
        }
        if let Some(jti) = &claims.jti {
            if self.state.presence.is_revoked(jti).await == Some(true) {
                let revoked = AuthError::Revoked;
                metrics::counter!(stats::AUTH_FAILURES, "reason" => revoked.label()).increment(1);
                self.policy_close(CloseReason::TokenRevoked, "revoked");
                return None;
            }
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
        if self.queue.push(Frame::from(msg.to_json()), None) == Pushed::Overflow {
            metrics::counter!(stats::SLOW_CLIENT_CLOSES).increment(1);
        }
    }
}
