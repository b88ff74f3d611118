//! Shared helpers for the push integration tests: services from the environment, unique
//! Kafka topics, a server on port 0, a WebSocket client and a tiny HTTP client.

#![allow(dead_code)]

pub(crate) mod chain;
pub(crate) mod proxy;
pub(crate) mod tokens;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use strikeflow_kafka::KafkaConnection;
use strikeflow_push::{AuthSettings, PushConfig, PushError, PushServer, PushSettings};
use strikeflow_schemas::{Bar, Instrument, InstrumentType, Tick, Topics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// The JWT secret every test server uses.
pub(crate) const SECRET: &str = "push-integration-test-secret";

/// How long a test waits, in all, for what a freshly started node delivers first: its
/// start-up (finding the fresh topics, reading the instrument master, replaying the
/// stateful topics) can take long on a loaded machine, so no single frame wait stands in
/// for it.
pub(crate) const STARTUP: Duration = Duration::from_secs(120);

/// A WebSocket client connection.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub(crate) fn brokers() -> strikeflow_kafka::Brokers {
    strikeflow_kafka::Brokers::plaintext(
        std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:19092".to_owned()),
    )
}

pub(crate) fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://strikeflow@127.0.0.1:15432/strikeflow".to_owned())
}

pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".to_owned())
}

/// A string unique to this test process and call, usable in topic names and symbols.
pub(crate) fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:x}{}",
        nanos & 0xffff_ffff_ffff,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Fresh, uniquely named topics (not created).
pub(crate) fn fresh_topics() -> Topics {
    Topics::new(format!("t{}.", unique()))
}

/// Create the instruments (compacted), ticks and bars topics.
pub(crate) async fn create_topics(topics: &Topics) {
    let specs: Vec<_> = topics.all().into_iter().take(3).collect();
    strikeflow_kafka::ensure_topics(&brokers(), &specs, 1)
        .await
        .expect("create topics");
}

pub(crate) fn producer() -> FutureProducer {
    strikeflow_kafka::producer_config(&brokers())
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer")
}

pub(crate) async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(err, _)| err)
        .expect("produce");
}

pub(crate) fn instrument(token: i64, symbol: &str) -> Instrument {
    Instrument {
        instrument_token: token,
        exchange_token: token >> 8,
        tradingsymbol: symbol.to_owned(),
        name: "NIFTY".to_owned(),
        last_price: 0.0,
        expiry: Some(20_814),
        strike: 0.0,
        tick_size: 0.05,
        lot_size: 65,
        instrument_type: InstrumentType::FUT,
        segment: "NFO-FUT".to_owned(),
        exchange: "NFO".to_owned(),
    }
}

pub(crate) fn bar(token: i64, i: i64) -> Bar {
    let start = 1_766_030_100_000_000 + i * 60_000_000;
    Bar {
        instrument_token: token,
        window_start: start,
        window_end: start + 60_000_000,
        open: 26_000.0,
        high: 26_080.5,
        low: 25_990.25,
        close: 26_000.0 + i as f64,
        volume: 1_300 + i,
        oi: 12_345_675,
        tick_count: 40 + i as i32,
    }
}

pub(crate) fn tick(token: i64, i: i64) -> Tick {
    Tick {
        instrument_token: token,
        exchange_ts: 1_766_030_100_000_000 + i * 1_000,
        ltp: 26_000.0 + i as f64 * 0.05,
        last_qty: 65,
        volume: 10_000 + i,
        oi: 12_345_675,
        bid: 26_000.0,
        bid_qty: 130,
        ask: 26_000.1,
        ask_qty: 195,
    }
}

/// A test configuration against the real services.
pub(crate) fn config(topics: &Topics) -> PushConfig {
    PushConfig {
        kafka: KafkaConnection {
            brokers: brokers(),
            topics: topics.clone(),
        },
        registry: None,
        redis_url: redis_url(),
        database_url: database_url(),
        auth: AuthSettings {
            jwt_secret: SECRET.to_owned(),
            ..AuthSettings::default()
        },
        settings: PushSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..PushSettings::default()
        },
    }
}

/// A push server running in the background.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    pub(crate) shutdown: CancellationToken,
    pub(crate) handle: JoinHandle<Result<(), PushError>>,
}

impl TestServer {
    pub(crate) async fn start(config: PushConfig) -> TestServer {
        let server = PushServer::bind(config).await.expect("bind");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(server.serve(shutdown.clone()));
        TestServer {
            addr,
            shutdown,
            handle,
        }
    }

    /// Cancel and wait for `serve` to return.
    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.handle)
            .await
            .expect("serve returns after shutdown")
            .expect("serve task")
            .expect("serve ok");
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }
}

/// Connect with `Authorization: Bearer <token>`.
pub(crate) async fn connect(server: &TestServer, token: &str) -> Ws {
    let mut request = server.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connect");
    assert_eq!(response.status(), 101);
    ws
}

pub(crate) async fn send_json(ws: &mut Ws, value: Value) {
    ws.send(Message::text(value.to_string()))
        .await
        .expect("send");
}

pub(crate) async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.expect("send");
}

/// What the next data-bearing frame was.
#[derive(Debug)]
pub(crate) enum Frame {
    Json(Value),
    Closed(Option<(CloseCode, String)>),
    Ended,
}

/// The next text or close frame (pings and pongs are skipped), or `None` on timeout.
pub(crate) async fn next_frame(ws: &mut Ws, wait: Duration) -> Option<Frame> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        match frame {
            Some(Ok(Message::Text(text))) => {
                return Some(Frame::Json(
                    serde_json::from_str(text.as_str()).expect("server sent JSON"),
                ))
            }
            Some(Ok(Message::Close(frame))) => {
                return Some(Frame::Closed(
                    frame.map(|f| (f.code, f.reason.as_str().to_owned())),
                ))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Some(Frame::Ended),
        }
    }
}

/// The close code and reason the server ends the connection with (JSON messages before it
/// are skipped); panics on timeout or when the connection ends without a close frame.
pub(crate) async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        match next_frame(ws, Duration::from_secs(15)).await {
            Some(Frame::Json(_)) => continue,
            Some(Frame::Closed(Some((code, reason)))) => return (u16::from(code), reason),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// The next text or close frame before `deadline` (see [`next_frame`]).
pub(crate) async fn next_frame_by(ws: &mut Ws, deadline: tokio::time::Instant) -> Option<Frame> {
    next_frame(
        ws,
        deadline.saturating_duration_since(tokio::time::Instant::now()),
    )
    .await
}

/// The next JSON message; panics on timeout or close.
pub(crate) async fn next_json(ws: &mut Ws) -> Value {
    match next_frame(ws, Duration::from_secs(10)).await {
        Some(Frame::Json(value)) => value,
        other => panic!("expected a JSON message, got {other:?}"),
    }
}

/// A plain HTTP/1.1 GET; returns status and body.
pub(crate) async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf8");
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, body.to_owned())
}

/// Produce bars for `token` (one every 300 ms) until `ws` receives one on `channel`; return
/// it with the index of the bar it carries. Covers the moments while push is still
/// discovering the fresh topics (up to [`STARTUP`]).
pub(crate) async fn produce_bars_until_received(
    producer: &FutureProducer,
    topics: &Topics,
    ws: &mut Ws,
    token: i64,
    channel: &str,
) -> (Value, i64, i64) {
    let deadline = tokio::time::Instant::now() + STARTUP;
    let mut produced = 0i64;
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no bar arrived on {channel} within {STARTUP:?}"
        );
        let bytes = strikeflow_schemas::encode(&bar(token, produced)).expect("encode bar");
        produce(producer, &topics.bars(), &token.to_string(), &bytes).await;
        produced += 1;
        if let Some(Frame::Json(msg)) = next_frame(ws, Duration::from_millis(300)).await {
            assert_eq!(msg["type"], "bar", "unexpected message {msg}");
            assert_eq!(msg["channel"], channel);
            let index = (msg["data"]["close"].as_f64().expect("close") - 26_000.0) as i64;
            return (msg, index, produced - 1);
        }
    }
}

/// Read the `subscribed` reply for `channel` (its `epoch` and `seq` are there once push has
/// seen the channel); returns it.
pub(crate) async fn expect_subscribed(ws: &mut Ws, channel: &str) -> Value {
    let reply = next_json(ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["channel"], channel, "{reply}");
    reply
}
