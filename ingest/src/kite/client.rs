//! The live Kite ticker client: WebSocket in, validated ticks out to Kafka.
//!
//! One run publishes the instrument master, then keeps a connection to the ticker for as long
//! as it is not told to stop: it subscribes every wanted token in full mode, decodes the
//! binary frames into ticks ([`super::TickAssembler`]) and publishes them through
//! [`TickPublisher`] with the wall clock, so ticks stamped in the future are dead-lettered.
//!
//! Failures it survives:
//! - a dropped or refused connection: reconnect with exponential backoff and jitter (capped at
//!   `max_backoff_secs`), resubscribing every time;
//! - a silent socket: Kite sends a heartbeat every second, so no frame at all (heartbeats
//!   included) for `ping_timeout_secs` means the feed is dead even if TCP is not, and the
//!   watchdog reconnects. WebSocket pings are sent meanwhile to keep proxies from idling the
//!   connection out; pongs do not count as life, since a server that answers pings may still
//!   have stopped sending data;
//! - undecodable frames and packets of unknown length: counted (`dead_letters_total{reason="kite_frame"|"kite_unknown_packet"}`),
//!   logged and dead-lettered raw, never fatal.
//!
//! The session close is marked: once the wall clock is [`CLOSE_GRACE`] past 15:30 IST, and
//! if ticks were published since the previous marker, an event-time marker at 15:30:00 IST
//! goes to every ticks partition ([`TickPublisher::publish_watermark`]), so the day's last
//! bars and chain analytics are published by 15:31 instead of with the next morning's
//! first tick. A close that passed before the run started (or while no tick flowed: a
//! holiday, a weekend) is not marked.
//!
//! Fatal: the instrument master cannot be read, Kafka fails, or the ticker refuses the
//! credentials (HTTP 401/403: retrying an expired access token cannot help).

use std::path::PathBuf;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use strikeflow_kafka::{backoff, RegistryConnection};
use strikeflow_schemas::Topics;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Bytes, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::decode::{decode_frame, is_heartbeat};
use super::tick::TickAssembler;
use super::KiteError;
use crate::calendar::latest_close;
use crate::master::load_master_file;
use crate::metrics::{self, Source};
use crate::publisher::TickPublisher;

/// Waiting for a handshake longer than this counts as a failed attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after 15:30 IST the session close is marked: ticks stamped just before the close
/// may still be in flight (feed and network delay), and a marker ahead of them would make
/// them late. Well inside the minute the last bar may take (stored by 15:31).
const CLOSE_GRACE: Duration = Duration::from_secs(10);
/// How often the wall clock is compared with the next session close while connected.
const CLOSE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Kite serves at most this many tokens per connection.
const MAX_TOKENS_PER_CONNECTION: usize = 3_000;

/// Configuration of `strikeflow ingest kite`. Every field has a default, so a config file
/// names only what differs.
#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct KiteConfig {
    /// Ticker endpoint without query parameters, e.g. `wss://ws.kite.trade`.
    pub url: String,
    /// Kite Connect API key.
    pub api_key: String,
    /// Access token of the day (never logged).
    pub access_token: String,
    /// The Kite-format instrument master the tokens belong to.
    pub instruments_csv: PathBuf,
    /// Tokens to subscribe; empty means every token in the master.
    pub tokens: Vec<i64>,
    /// Kafka brokers and their security settings (from `[kafka]`, set by the binary).
    #[serde(skip)]
    pub brokers: strikeflow_kafka::Brokers,
    /// Topic names.
    pub topics: Topics,
    /// The schema registry (`[registry]`), which decides the encoding; `None`: single
    /// object.
    #[serde(skip)]
    pub registry: Option<RegistryConnection>,
    /// No frame (heartbeats included) for this long means a dead feed: reconnect.
    pub ping_timeout_secs: u64,
    /// Upper bound of the reconnect delay.
    pub max_backoff_secs: u64,
    /// How far an exchange timestamp may be ahead of the local clock before the tick is
    /// rejected as future-dated (clock skew allowance).
    pub future_tolerance_ms: i64,
}

impl Default for KiteConfig {
    fn default() -> Self {
        Self {
            url: "wss://ws.kite.trade".into(),
            api_key: String::new(),
            access_token: String::new(),
            instruments_csv: PathBuf::from("instruments.csv"),
            tokens: Vec::new(),
            brokers: strikeflow_kafka::Brokers::default(),
            topics: Topics::default(),
            registry: None,
            ping_timeout_secs: 10,
            max_backoff_secs: 30,
            future_tolerance_ms: 2_000,
        }
    }
}

impl std::fmt::Debug for KiteConfig {
    /// Like a derived `Debug`, with the access token redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KiteConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("access_token", &"***")
            .field("instruments_csv", &self.instruments_csv)
            .field("tokens", &self.tokens)
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("ping_timeout_secs", &self.ping_timeout_secs)
            .field("max_backoff_secs", &self.max_backoff_secs)
            .field("future_tolerance_ms", &self.future_tolerance_ms)
            .finish()
    }
}

/// What a run did, for the operator and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KiteReport {
    /// Successful handshakes (1 + reconnects that succeeded).
    pub connections: u64,
    /// Connections lost, refused or timed out (each followed by a reconnect attempt).
    pub disconnects: u64,
    /// Of those, the ones the watchdog declared dead.
    pub watchdog_timeouts: u64,
    /// Binary frames received, heartbeats included.
    pub frames: u64,
    /// Heartbeat frames received.
    pub heartbeats: u64,
    /// Packets decoded (unknown ones included).
    pub packets: u64,
    /// Ticks published to the ticks topic.
    pub published: u64,
    /// Ticks the validator dead-lettered (unknown token, future-dated, off grid...).
    pub rejected: u64,
    /// Undecodable frames plus packets of unknown length (dead-lettered raw).
    pub decode_errors: u64,
    /// Text (JSON) messages received.
    pub text_messages: u64,
    /// Session closes marked (event-time markers written to every ticks partition).
    pub markers: u64,
}

/// How one connection ended.
enum Ended {
    Shutdown,
    Lost {
        reason: String,
        healthy: bool,
        watchdog: bool,
    },
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Runs the Kite ticker into Kafka until `shutdown` is cancelled, then flushes and reports.
pub async fn run_kite(
    config: KiteConfig,
    shutdown: CancellationToken,
) -> Result<KiteReport, KiteError> {
    if config.ping_timeout_secs == 0 {
        return Err(KiteError::Config(
            "ping_timeout_secs must be at least 1".into(),
        ));
    }
    metrics::describe();
    let master = load_master_file(&config.instruments_csv)?;
    for bad in &master.errors {
        warn!(file = %config.instruments_csv.display(), line = bad.line, reason = %bad.reason, "skipping instrument row");
    }
    let tokens = subscription(
        &config,
        master.instruments.iter().map(|i| i.instrument_token),
    )?;
    let tolerance = config.future_tolerance_ms.saturating_mul(1_000);
    let mut publisher = TickPublisher::connect(&config.brokers, &config.topics, Some(tolerance))?;
    publisher.use_registry(config.registry.as_ref()).await?;
    publisher.publish_instruments(&master.instruments).await?;
    // Exactly one TLS crypto provider is compiled in; installing it explicitly keeps `wss://`
    // working even if another crate ever enables a second one. Err = already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let mut feed = Feed {
        marked_close: latest_close(now_micros(), grace_micros()),
        published_at_mark: publisher.published(),
        publisher,
        assembler: TickAssembler::new(),
        report: KiteReport::default(),
    };
    let outcome = feed.run(&config, &tokens, &shutdown).await;
    // Whatever ended the run, what was enqueued is delivered before returning.
    let flushed = feed.publisher.flush().await;
    outcome?;
    flushed?;
    feed.report.published = feed.publisher.published();
    feed.report.rejected = feed
        .publisher
        .rejected()
        .saturating_sub(feed.report.decode_errors);
    info!(report = ?feed.report, "kite ticker stopped");
    Ok(feed.report)
}

/// The tokens to subscribe, as the wire's u32s.
fn subscription(
    config: &KiteConfig,
    master: impl Iterator<Item = i64>,
) -> Result<Vec<u32>, KiteError> {
    let known: std::collections::HashSet<i64> = master.collect();
    let wanted: Vec<i64> = if config.tokens.is_empty() {
        let mut all: Vec<i64> = known.iter().copied().collect();
        all.sort_unstable();
        all
    } else {
        config.tokens.clone()
    };
    let mut tokens = Vec::with_capacity(wanted.len());
    for token in wanted {
        let Ok(wire) = u32::try_from(token) else {
            return Err(KiteError::Config(format!(
                "token {token} does not fit Kite's 32-bit tokens"
            )));
        };
        if !known.contains(&token) {
            warn!(token, "subscribing a token that is not in the instrument master: its ticks will be dead-lettered");
        }
        tokens.push(wire);
    }
    if tokens.is_empty() {
        return Err(KiteError::Config(
            "no tokens to subscribe (the instrument master is empty)".into(),
        ));
    }
    if tokens.len() > MAX_TOKENS_PER_CONNECTION {
        warn!(
            tokens = tokens.len(),
            limit = MAX_TOKENS_PER_CONNECTION,
            "more tokens than Kite serves on one connection"
        );
    }
    Ok(tokens)
}

/// `{url}?api_key=..&access_token=..`, values percent-encoded. A URL without a path gets
/// `/` (`wss://ws.kite.trade` → `wss://ws.kite.trade/?...`): the request line needs a path.
fn socket_url(config: &KiteConfig) -> String {
    let mut url = config.url.clone();
    let authority = url.find("://").map_or(0, |i| i + 3);
    match url[authority..]
        .find(['/', '?', '#'])
        .map(|i| i + authority)
    {
        None => url.push('/'),
        Some(i) if url.as_bytes()[i] != b'/' => url.insert(i, '/'),
        Some(_) => {}
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{separator}api_key={}&access_token={}",
        percent_encode(&config.api_key),
        percent_encode(&config.access_token)
    )
}

fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn grace_micros() -> i64 {
    i64::try_from(CLOSE_GRACE.as_micros()).unwrap_or(i64::MAX)
}

struct Feed {
    publisher: TickPublisher,
    assembler: TickAssembler,
    report: KiteReport,
    /// The latest session close already marked (or passed before the run started).
    marked_close: i64,
    /// Ticks published when `marked_close` was set: a close with no tick since is not marked.
    published_at_mark: u64,
}

impl Feed {
    /// Connects, serves and reconnects until shutdown or a fatal error.
    async fn run(
        &mut self,
        config: &KiteConfig,
        tokens: &[u32],
        shutdown: &CancellationToken,
    ) -> Result<(), KiteError> {
        let url = socket_url(config);
        let ping_timeout = Duration::from_secs(config.ping_timeout_secs);
        let max_backoff = Duration::from_secs(config.max_backoff_secs);
        let mut failures = 0u32;
        loop {
            // A close that passed while disconnected is marked before reconnecting.
            self.mark_close_if_due().await?;
            info!(url = %config.url, tokens = tokens.len(), "connecting to the kite ticker");
            let connected = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                connected = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(url.as_str())) => connected,
            };
            let reason = match connected {
                Ok(Ok((socket, _))) => {
                    self.report.connections += 1;
                    metrics::kite_connections().increment(1);
                    match self.session(socket, tokens, ping_timeout, shutdown).await? {
                        Ended::Shutdown => return Ok(()),
                        Ended::Lost {
                            reason,
                            healthy,
                            watchdog,
                        } => {
                            if healthy {
                                failures = 0;
                            }
                            if watchdog {
                                self.report.watchdog_timeouts += 1;
                                metrics::kite_watchdog_timeouts().increment(1);
                            }
                            reason
                        }
                    }
                }
                Ok(Err(tungstenite::Error::Http(response)))
                    if matches!(response.status().as_u16(), 401 | 403) =>
                {
                    let body = response
                        .body()
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    return Err(KiteError::Refused {
                        status: response.status().as_u16(),
                        body: body.into_owned(),
                    });
                }
                Ok(Err(e)) => format!("connecting failed: {e}"),
                Err(_) => format!("no handshake within {CONNECT_TIMEOUT:?}"),
            };
            failures = failures.saturating_add(1);
            self.report.disconnects += 1;
            metrics::kite_disconnects().increment(1);
            let delay = backoff(failures, max_backoff);
            warn!(%reason, attempt = failures, delay_ms = delay.as_millis() as u64, "kite ticker connection lost; reconnecting");
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Subscribes and serves one connection until it is lost or shutdown is requested.
    async fn session(
        &mut self,
        mut socket: Socket,
        tokens: &[u32],
        ping_timeout: Duration,
        shutdown: &CancellationToken,
    ) -> Result<Ended, KiteError> {
        let lost = |reason: String, healthy: bool| Ended::Lost {
            reason,
            healthy,
            watchdog: false,
        };
        let subscribe = serde_json::json!({"a": "subscribe", "v": tokens}).to_string();
        let mode = serde_json::json!({"a": "mode", "v": ["full", tokens]}).to_string();
        for message in [subscribe, mode] {
            if let Err(e) = socket.send(Message::text(message)).await {
                return Ok(lost(format!("subscribing failed: {e}"), false));
            }
        }
        info!(
            tokens = tokens.len(),
            "subscribed to the kite ticker in full mode"
        );
        let ping_every = (ping_timeout / 3).max(Duration::from_millis(100));
        let mut pings = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut close_checks = tokio::time::interval(CLOSE_CHECK_EVERY);
        close_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_frame = Instant::now();
        let mut healthy = false;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return Ok(Ended::Shutdown);
                }
                message = socket.next() => match message {
                    Some(Ok(Message::Binary(frame))) => {
                        last_frame = Instant::now();
                        healthy = true;
                        self.on_binary(&frame).await?;
                    }
                    Some(Ok(Message::Text(text))) => {
                        last_frame = Instant::now();
                        healthy = true;
                        self.on_text(text.as_str());
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let why = frame.map(|f| format!("{} {}", f.code, f.reason)).unwrap_or_default();
                        return Ok(lost(format!("closed by the server {why}"), healthy));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(e)) => return Ok(lost(format!("read failed: {e}"), healthy)),
                    None => return Ok(lost("connection ended".into(), healthy)),
                },
                _ = tokio::time::sleep_until(last_frame + ping_timeout) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                    return Ok(Ended::Lost {
                        reason: format!("no frame for {ping_timeout:?} (watchdog)"),
                        healthy,
                        watchdog: true,
                    });
                }
                _ = close_checks.tick() => self.mark_close_if_due().await?,
                _ = pings.tick() => {
                    if let Err(e) = socket.send(Message::Ping(Bytes::new())).await {
                        return Ok(lost(format!("ping failed: {e}"), healthy));
                    }
                }
            }
        }
    }

    /// Marks the latest session close once the wall clock is [`CLOSE_GRACE`] past it, if it
    /// was not marked yet and ticks were published since the previous mark.
    async fn mark_close_if_due(&mut self) -> Result<(), KiteError> {
        let close = latest_close(now_micros(), grace_micros());
        if close <= self.marked_close {
            return Ok(());
        }
        let published = self.publisher.published();
        let traded = published > self.published_at_mark;
        self.marked_close = close;
        self.published_at_mark = published;
        if traded {
            self.publisher
                .publish_watermark(close, Source::Kite.label())
                .await?;
            metrics::watermark_markers(Source::Kite).increment(1);
            self.report.markers += 1;
            info!(close, "session close marked");
        }
        Ok(())
    }

    /// Decodes one binary frame and publishes its ticks; bad input is dead-lettered raw.
    async fn on_binary(&mut self, frame: &[u8]) -> Result<(), KiteError> {
        self.report.frames += 1;
        let frame_no = self.report.frames;
        let received = now_micros();
        let packets = match decode_frame(frame) {
            Ok(packets) => packets,
            Err(e) => {
                let reason = format!("undecodable kite frame: {e}");
                warn!(frame = frame_no, bytes = frame.len(), error = %e, "undecodable kite frame");
                return self
                    .decode_error(
                        "kite_frame",
                        frame,
                        &reason,
                        &format!("kite:frame {frame_no}"),
                    )
                    .await;
            }
        };
        if packets.is_empty() && is_heartbeat(frame) {
            self.report.heartbeats += 1;
            return Ok(());
        }
        let published_before = self.publisher.published();
        for (i, packet) in packets.iter().enumerate() {
            self.report.packets += 1;
            let position = || format!("kite:frame {frame_no} packet {i}");
            match self.assembler.apply(packet, received) {
                Some(tick) => {
                    self.publisher
                        .publish(&tick, position, Some(received))
                        .await?
                }
                None => {
                    let bytes = match packet {
                        super::Packet::Unknown(bytes) => bytes.as_slice(),
                        _ => &[],
                    };
                    let reason = format!("kite packet of unknown length {}", bytes.len());
                    warn!(
                        frame = frame_no,
                        packet = i,
                        bytes = bytes.len(),
                        "kite packet of unknown length skipped"
                    );
                    self.decode_error("kite_unknown_packet", bytes, &reason, &position())
                        .await?;
                }
            }
        }
        metrics::ticks(Source::Kite).increment(self.publisher.published() - published_before);
        Ok(())
    }

    async fn decode_error(
        &mut self,
        kind: &'static str,
        bytes: &[u8],
        reason: &str,
        position: &str,
    ) -> Result<(), KiteError> {
        self.report.decode_errors += 1;
        self.publisher
            .reject_raw(bytes, kind, reason, position)
            .await?;
        Ok(())
    }

    /// Logs a text message: errors at warn, order updates at info, anything else at debug.
    fn on_text(&mut self, text: &str) {
        self.report.text_messages += 1;
        let Ok(message) = serde_json::from_str::<serde_json::Value>(text) else {
            warn!(%text, "kite text message is not JSON");
            return;
        };
        let data = message
            .get("data")
            .map(ToString::to_string)
            .unwrap_or_default();
        match message.get("type").and_then(serde_json::Value::as_str) {
            Some("error") => warn!(error = %data, "kite ticker error message"),
            Some("order") => info!(order = %data, "kite order update"),
            Some("message") => info!(message = %data, "kite ticker message"),
            other => debug!(kind = ?other, %text, "kite text message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_carries_encoded_credentials() {
        let config = KiteConfig {
            api_key: "key".into(),
            access_token: "a/b+c".into(),
            ..KiteConfig::default()
        };
        assert_eq!(
            socket_url(&config),
            "wss://ws.kite.trade/?api_key=key&access_token=a%2Fb%2Bc"
        );
        let with_path = KiteConfig {
            url: "ws://127.0.0.1:9/ticker".into(),
            ..config.clone()
        };
        assert_eq!(
            socket_url(&with_path),
            "ws://127.0.0.1:9/ticker?api_key=key&access_token=a%2Fb%2Bc"
        );
        let with_query = KiteConfig {
            url: "ws://h:9?x=1".into(),
            ..config.clone()
        };
        assert_eq!(
            socket_url(&with_query),
            "ws://h:9/?x=1&api_key=key&access_token=a%2Fb%2Bc"
        );
        let debug = format!("{config:?}");
        assert!(!debug.contains("a/b+c"), "{debug}");
    }

    #[test]
    fn config_defaults_and_partial_override() {
        let config: KiteConfig =
            serde_json::from_str(r#"{"api_key":"k","tokens":[256265]}"#).unwrap();
        assert_eq!(
            (config.ping_timeout_secs, config.max_backoff_secs),
            (10, 30)
        );
        assert_eq!(config.url, "wss://ws.kite.trade");
        assert_eq!(config.tokens, vec![256_265]);
    }
}
