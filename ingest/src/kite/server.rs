//! A local fake Kite ticker: speaks the documented protocol so the client can be tested
//! (and demoed) without Kite, including the failures that matter: dropped sockets and a
//! feed that goes silent while the TCP connection stays up.
//!
//! It records what clients send ([`ServerEvent`]), sends a heartbeat every interval, and
//! sends whatever frames it is fed ([`FakeTicker::send_frame`]) verbatim to every connected
//! client: it does not filter by subscription, so tests can send unknown tokens and broken
//! frames on purpose.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{broadcast, mpsc, Mutex};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::decode::{encode_frame, Packet, HEARTBEAT};

/// How the fake ticker behaves.
#[derive(Debug, Clone)]
pub struct FakeTickerConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Time between heartbeats (Kite sends one a second).
    pub heartbeat_interval: Duration,
    /// When set, connections whose `api_key` / `access_token` query parameters differ are
    /// refused with HTTP 403, as Kite refuses a bad or expired token.
    pub credentials: Option<(String, String)>,
}

impl Default for FakeTickerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            heartbeat_interval: Duration::from_secs(1),
            credentials: None,
        }
    }
}

/// Something a client did, in the order the server saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// A client completed the handshake; `query` is the request's query string.
    Connected {
        /// Connection number, from 1.
        connection: u64,
        /// The raw query string (`api_key=..&access_token=..`).
        query: String,
    },
    /// `{"a":"subscribe","v":[tokens]}`.
    Subscribe {
        /// Connection number.
        connection: u64,
        /// The tokens.
        tokens: Vec<i64>,
    },
    /// `{"a":"unsubscribe","v":[tokens]}`.
    Unsubscribe {
        /// Connection number.
        connection: u64,
        /// The tokens.
        tokens: Vec<i64>,
    },
    /// `{"a":"mode","v":[mode,[tokens]]}`.
    Mode {
        /// Connection number.
        connection: u64,
        /// `ltp`, `quote` or `full`.
        mode: String,
        /// The tokens.
        tokens: Vec<i64>,
    },
    /// A text message the server did not understand (it answered with an error message).
    Invalid {
        /// Connection number.
        connection: u64,
        /// The message.
        text: String,
    },
    /// A handshake was refused (wrong credentials).
    Refused {
        /// The raw query string.
        query: String,
    },
    /// A connection ended (either side).
    Disconnected {
        /// Connection number.
        connection: u64,
    },
}

/// What the test tells every connection currently open.
#[derive(Debug, Clone)]
enum Command {
    Binary(Bytes),
    Text(String),
    /// Close the TCP connection without a WebSocket close handshake.
    Drop,
    /// Stop sending anything (heartbeats included) while keeping the socket open.
    Silence,
}

/// A running fake ticker; stops when dropped or on [`FakeTicker::stop`].
pub struct FakeTicker {
    addr: SocketAddr,
    commands: broadcast::Sender<Command>,
    events: Mutex<mpsc::UnboundedReceiver<ServerEvent>>,
    live: Arc<AtomicUsize>,
    stop: CancellationToken,
}

struct Shared {
    config: FakeTickerConfig,
    commands: broadcast::Sender<Command>,
    events: mpsc::UnboundedSender<ServerEvent>,
    live: Arc<AtomicUsize>,
    next_id: AtomicU64,
    stop: CancellationToken,
}

impl FakeTicker {
    /// Binds and starts accepting connections in the background.
    pub async fn start(config: FakeTickerConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let (commands, _) = broadcast::channel(4_096);
        let (events_tx, events) = mpsc::unbounded_channel();
        let live = Arc::new(AtomicUsize::new(0));
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            config,
            commands: commands.clone(),
            events: events_tx,
            live: live.clone(),
            next_id: AtomicU64::new(1),
            stop: stop.clone(),
        });
        tokio::spawn(accept_loop(listener, shared));
        Ok(Self {
            addr,
            commands,
            events: Mutex::new(events),
            live,
            stop,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL a client connects to (`ws://127.0.0.1:port`), without query parameters.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Sends a binary frame, verbatim, to every connection open now (silenced ones excepted).
    /// Returns how many connections it was queued for.
    pub fn send_frame(&self, frame: impl Into<Bytes>) -> usize {
        self.commands
            .send(Command::Binary(frame.into()))
            .unwrap_or(0)
    }

    /// Encodes `packets` as one frame and sends it like [`FakeTicker::send_frame`].
    pub fn send_packets(&self, packets: &[Packet]) -> usize {
        self.send_frame(encode_frame(packets))
    }

    /// Sends a text frame (an order update or `{"type":"error",...}`) to every connection.
    pub fn send_text(&self, text: impl Into<String>) -> usize {
        self.commands.send(Command::Text(text.into())).unwrap_or(0)
    }

    /// Drops every connection open now without a close handshake (a network failure).
    /// Later connections are served normally.
    pub fn drop_connections(&self) -> usize {
        self.commands.send(Command::Drop).unwrap_or(0)
    }

    /// Makes every connection open now go silent: no heartbeats, no frames, yet the socket
    /// stays open and WebSocket pings are still answered (the failure a watchdog is for).
    /// Later connections are served normally.
    pub fn silence_connections(&self) -> usize {
        self.commands.send(Command::Silence).unwrap_or(0)
    }

    /// Waits up to `timeout` for an event `pick` accepts, consuming the events before it;
    /// `None` on timeout.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut pick: impl FnMut(&ServerEvent) -> Option<T>,
    ) -> Option<T> {
        let mut events = self.events.lock().await;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let event = tokio::time::timeout_at(deadline, events.recv())
                .await
                .ok()??;
            if let Some(found) = pick(&event) {
                return Some(found);
            }
        }
    }

    /// Every event recorded and not consumed yet, without waiting.
    pub async fn drain_events(&self) -> Vec<ServerEvent> {
        let mut events = self.events.lock().await;
        std::iter::from_fn(|| events.try_recv().ok()).collect()
    }

    /// Stops accepting and closes every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

impl Drop for FakeTicker {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let accepted = tokio::select! {
            _ = shared.stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Subscribed before the handshake, so nothing sent after the test saw this
                // connection's events can be missed.
                let commands = shared.commands.subscribe();
                tokio::spawn(serve(stream, peer, commands, shared.clone()));
            }
            Err(e) => {
                warn!(error = %e, "fake ticker: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

// The handshake callback's `Result<Response, ErrorResponse>` is tungstenite's signature.
#[allow(clippy::result_large_err)]
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    mut commands: broadcast::Receiver<Command>,
    shared: Arc<Shared>,
) {
    let mut query = String::new();
    let mut refused = false;
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        query = request.uri().query().unwrap_or_default().to_owned();
        if let Some((key, token)) = &shared.config.credentials {
            let param = |name: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
            };
            if param("api_key") != Some(key.as_str())
                || param("access_token") != Some(token.as_str())
            {
                refused = true;
                let mut denied = ErrorResponse::new(Some("invalid api_key or access_token".into()));
                *denied.status_mut() = StatusCode::FORBIDDEN;
                return Err(denied);
            }
        }
        Ok(response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async(stream, callback).await;
    let mut ws = match handshake {
        Ok(ws) => ws,
        Err(e) => {
            if refused {
                let _ = shared.events.send(ServerEvent::Refused { query });
            } else {
                debug!(%peer, error = %e, "fake ticker: handshake failed");
            }
            return;
        }
    };
    let connection = shared.next_id.fetch_add(1, Ordering::SeqCst);
    shared.live.fetch_add(1, Ordering::SeqCst);
    let _ = shared
        .events
        .send(ServerEvent::Connected { connection, query });
    let mut heartbeat = tokio::time::interval(shared.config.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent = false;
    let mut graceful = false;
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => {
                graceful = true;
                break;
            }
            _ = heartbeat.tick(), if !silent => {
                if ws.send(Message::Binary(Bytes::from_static(&HEARTBEAT))).await.is_err() {
                    break;
                }
            }
            command = commands.recv() => match command {
                Ok(Command::Binary(frame)) if !silent => {
                    if ws.send(Message::Binary(frame)).await.is_err() {
                        break;
                    }
                }
                Ok(Command::Text(text)) if !silent => {
                    if ws.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                Ok(Command::Binary(_) | Command::Text(_)) => {}
                Ok(Command::Drop) => break,
                Ok(Command::Silence) => silent = true,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    warn!(connection, skipped = n, "fake ticker: connection fell behind, frames skipped");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = handle_text(connection, text.as_str(), &shared.events) {
                        if !silent && ws.send(Message::text(reply)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {} // pings are answered by tungstenite itself
            },
        }
    }
    if graceful {
        let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
    }
    drop(ws); // without a close handshake unless graceful: the TCP connection just ends
    shared.live.fetch_sub(1, Ordering::SeqCst);
    let _ = shared.events.send(ServerEvent::Disconnected { connection });
}

/// Records a client message; returns the error message to send back if it is not one.
fn handle_text(
    connection: u64,
    text: &str,
    events: &mpsc::UnboundedSender<ServerEvent>,
) -> Option<String> {
    let parsed: Option<ServerEvent> = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| {
            let tokens = |v: &serde_json::Value| -> Option<Vec<i64>> {
                v.as_array()?
                    .iter()
                    .map(serde_json::Value::as_i64)
                    .collect()
            };
            let value = v.get("v")?;
            match v.get("a")?.as_str()? {
                "subscribe" => Some(ServerEvent::Subscribe {
                    connection,
                    tokens: tokens(value)?,
                }),
                "unsubscribe" => Some(ServerEvent::Unsubscribe {
                    connection,
                    tokens: tokens(value)?,
                }),
                "mode" => {
                    let mode = value.get(0)?.as_str()?;
                    if !matches!(mode, "ltp" | "quote" | "full") {
                        return None;
                    }
                    Some(ServerEvent::Mode {
                        connection,
                        mode: mode.to_owned(),
                        tokens: tokens(value.get(1)?)?,
                    })
                }
                _ => None,
            }
        });
    match parsed {
        Some(event) => {
            let _ = events.send(event);
            None
        }
        None => {
            let _ = events.send(ServerEvent::Invalid {
                connection,
                text: text.to_owned(),
            });
            Some(
                serde_json::json!({"type": "error", "data": format!("invalid message: {text}")})
                    .to_string(),
            )
        }
    }
}
