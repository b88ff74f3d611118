//! End-to-end tests of the push stage against the real Kafka, Redis and PostgreSQL
//! (`./dev up`; addresses from KAFKA_BROKERS, REDIS_URL, DATABASE_URL).

mod common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use strikeflow_push::auth;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn token(channels: &[&str]) -> String {
    auth::mint(
        SECRET,
        "integration-test",
        Duration::from_secs(600),
        channels.iter().map(|c| c.to_string()).collect(),
    )
    .expect("mint")
}

/// The refused upgrade: status and JSON body.
async fn refused(
    request: tokio_tungstenite::tungstenite::handshake::client::Request,
) -> (u16, Value) {
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => panic!("upgrade should have been refused"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            let json = serde_json::from_slice(&body).expect("JSON error body");
            (status, json)
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

fn with_bearer(
    server: &TestServer,
    token: &str,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = server.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_without_a_valid_token_is_refused_with_401() {
    let topics = fresh_topics();
    let server = TestServer::start(config(&topics)).await;

    // No token at all.
    let request = server.ws_url().into_client_request().expect("request");
    let (status, body) = refused(request).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing")),
        "{body}"
    );

    // Garbage.
    let (status, body) = refused(with_bearer(&server, "not.a.jwt")).await;
    assert_eq!(status, 401);
    assert!(body["error"].is_string());

    // Signed with another secret.
    let forged = auth::mint("another-secret", "x", Duration::from_secs(60), vec![]).expect("mint");
    let (status, _) = refused(with_bearer(&server, &forged)).await;
    assert_eq!(status, 401);

    // Tampered: a valid signature on a different payload.
    let valid = token(&["bars.*"]);
    let wider = auth::mint(
        "another-secret",
        "x",
        Duration::from_secs(60),
        vec!["*".into()],
    )
    .expect("mint");
    let parts: Vec<&str> = valid.split('.').collect();
    let other: Vec<&str> = wider.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], other[1], parts[2]);
    let (status, _) = refused(with_bearer(&server, &tampered)).await;
    assert_eq!(status, 401);

    // Expired a minute ago.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({
            "sub": "late",
            "iss": auth::DEFAULT_ISSUER,
            "aud": auth::DEFAULT_AUDIENCE,
            "exp": now - 60,
            "iat": now - 120,
            "channels": ["*"],
        }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("key"),
    )
    .expect("encode");
    let (status, body) = refused(with_bearer(&server, &expired)).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("expired")),
        "{body}"
    );

    // A valid token in the query string is accepted.
    let url = format!("{}?token={}", server.ws_url(), token(&[]));
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    assert_eq!(response.status(), 101);
    send_json(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));

    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_errors_and_the_socket_stays_open() {
    let topics = fresh_topics();
    let server = TestServer::start(config(&topics)).await;
    let mut ws = connect(&server, &token(&["bars.*"])).await;

    let cases: Vec<(&str, &str)> = vec![
        ("{not json", "malformed"),
        ("[1,2,3]", "malformed"),
        (r#"{"channel":"bars.X"}"#, "op"),
        (r#"{"op":"dance"}"#, "unknown op"),
        (r#"{"op":"subscribe"}"#, "channel"),
        (
            r#"{"op":"subscribe","channel":"quotes.NIFTY26DECFUT"}"#,
            "unknown channel kind",
        ),
        (
            r#"{"op":"subscribe","channel":"ticks.NIFTY26DECFUT"}"#,
            "not allowed",
        ),
    ];
    // Within the default burst of requests.
    for (request, expected) in cases {
        send_text(&mut ws, request).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "reply to {request}: {reply}");
        let message = reply["message"].as_str().expect("message");
        assert!(
            message.to_lowercase().contains(expected),
            "reply to {request}: {message}"
        );
    }
    // Still open and serving.
    send_json(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    let channel = format!("bars.X{}", unique());
    send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut ws, &channel).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bar_reaches_subscriber_and_late_joiner_gets_the_snapshot() {
    let topics = fresh_topics();
    create_topics(&topics).await;
    let server = TestServer::start(config(&topics)).await;
    let producer = producer();

    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());
    let channel = format!("bars.{symbol}");
    let token_id: i64 = 13_238_786;

    let mut first = connect(&server, &token(&["bars.*"])).await;
    send_json(&mut first, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut first, &channel).await;

    let inst = strikeflow_schemas::encode(&instrument(token_id, &symbol)).expect("encode");
    produce(
        &producer,
        &topics.instruments(),
        &token_id.to_string(),
        &inst,
    )
    .await;
    let (msg, index, last) =
        produce_bars_until_received(&producer, &topics, &mut first, token_id, &channel).await;

    // Every field of the bar, plus the trading symbol.
    let mut expected = serde_json::to_value(bar(token_id, index)).expect("json");
    expected["tradingsymbol"] = json!(symbol);
    assert_eq!(msg["data"], expected);
    assert_eq!(msg["type"], "bar");
    let mut seq = msg["seq"].as_u64().expect("seq");
    assert!(seq >= 1);

    // Drain the bars still in flight so the latest is known.
    let mut latest = msg;
    let mut latest_index = index;
    while latest_index < last {
        latest = next_json(&mut first).await;
        let next_seq = latest["seq"].as_u64().expect("seq");
        assert_eq!(next_seq, seq + 1, "per-channel seq increases by one");
        seq = next_seq;
        latest_index = (latest["data"]["close"].as_f64().expect("close") - 26_000.0) as i64;
    }

    // A second client gets `subscribed`, then the latest bar at once.
    let mut second = connect(&server, &token(&[])).await;
    send_json(&mut second, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut second, &channel).await;
    assert_eq!(next_json(&mut second).await, latest);

    // The same message is in Redis.
    let redis = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    // Namespaced by the topic prefix (empty in production).
    let key = format!("strikeflow:last:{}{channel}", topics.prefix);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let stored: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        if let Some(stored) = stored {
            let stored: Value = serde_json::from_str(&stored).expect("stored JSON");
            if stored == latest {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "snapshot not in redis"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Shutdown closes clients with 1001.
    server.shutdown.cancel();
    match next_frame(&mut first, Duration::from_secs(10)).await {
        Some(Frame::Closed(Some((code, _)))) => assert_eq!(code, CloseCode::Away),
        other => panic!("expected a 1001 close, got {other:?}"),
    }
    server.stop().await;

    // A fresh instance (nothing in memory) serves the same latest bar: replayed from the
    // bars topic (push.replay_secs), or from Redis when the topic has nothing that recent.
    let restarted = TestServer::start(config(&topics)).await;
    let mut third = connect(&restarted, &token(&["bars.*"])).await;
    send_json(&mut third, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut third, &channel).await;
    assert_eq!(next_json(&mut third).await, latest);
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_stream_in_order_and_unknown_tokens_use_the_fallback_channel() {
    let topics = fresh_topics();
    create_topics(&topics).await;
    let server = TestServer::start(config(&topics)).await;
    let producer = producer();

    let symbol = format!("BANKNIFTY26DEC{}FUT", unique().to_uppercase());
    let channel = format!("ticks.{symbol}");
    let token_id: i64 = 12_345_678;
    let mut ws = connect(&server, &token(&["ticks.*", "bars.*"])).await;
    send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");

    // A bar for a token push has never seen goes to bars.<token>.
    let unknown: i64 = 990_000_000 + (std::process::id() as i64 % 1000);
    let fallback = format!("bars.{unknown}");
    send_json(&mut ws, json!({"op":"subscribe","channel":fallback})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    let inst = strikeflow_schemas::encode(&instrument(token_id, &symbol)).expect("encode");
    produce(
        &producer,
        &topics.instruments(),
        &token_id.to_string(),
        &inst,
    )
    .await;

    // Produce ticks until they flow, then check order and contents.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0i64;
    let first = loop {
        assert!(tokio::time::Instant::now() < deadline, "no tick arrived");
        let bytes = strikeflow_schemas::encode(&tick(token_id, i)).expect("encode");
        produce(&producer, &topics.ticks(), &token_id.to_string(), &bytes).await;
        i += 1;
        if let Some(Frame::Json(msg)) = next_frame(&mut ws, Duration::from_millis(300)).await {
            break msg;
        }
    };
    assert_eq!(first["type"], "tick");
    assert_eq!(first["channel"], channel);
    assert_eq!(first["data"]["tradingsymbol"], json!(symbol));
    let first_volume = first["data"]["volume"].as_i64().expect("volume");
    let mut expected = serde_json::to_value(tick(token_id, first_volume - 10_000)).expect("json");
    expected["tradingsymbol"] = json!(symbol);
    assert_eq!(first["data"], expected);

    // The rest arrive in order with consecutive seq numbers.
    let first_seq = first["seq"].as_u64().expect("seq");
    for (seq, volume) in (first_seq + 1..).zip(first_volume + 1..10_000 + i) {
        let msg = next_json(&mut ws).await;
        assert_eq!(msg["data"]["volume"], volume);
        assert_eq!(msg["seq"], seq);
    }

    let bytes = strikeflow_schemas::encode(&bar(unknown, 5)).expect("encode");
    produce(&producer, &topics.bars(), &unknown.to_string(), &bytes).await;
    let msg = next_json(&mut ws).await;
    assert_eq!(msg["type"], "bar");
    assert_eq!(msg["channel"], fallback);
    assert_eq!(msg["data"]["instrument_token"], unknown);
    assert_eq!(msg["data"]["tradingsymbol"], Value::Null);

    server.stop().await;
}

fn total_ticks() -> i64 {
    20_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_tick_consumer_is_closed() {
    let topics = fresh_topics();
    create_topics(&topics).await;
    let mut cfg = config(&topics);
    cfg.settings.client_queue = 4096;
    cfg.settings.ping_interval_secs = 60;
    let server = TestServer::start(cfg).await;
    let producer = producer();
    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());
    let channel = format!("ticks.{symbol}");
    let token_id: i64 = 4_242;

    // A client with a tiny receive window that stops reading after `subscribed`.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("rcvbuf");
    let stream = socket.connect(server.addr).await.expect("connect");
    let mut request = server.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", token(&[]))).expect("header"),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut slow, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("handshake");
    let mut watcher = connect(&server, &token(&[])).await;
    for ws in [&mut slow, &mut watcher] {
        send_json(ws, json!({"op":"subscribe","channel":channel})).await;
        assert_eq!(next_json(ws).await["type"], "subscribed");
    }
    let inst = strikeflow_schemas::encode(&instrument(token_id, &symbol)).expect("encode");
    produce(
        &producer,
        &topics.instruments(),
        &token_id.to_string(),
        &inst,
    )
    .await;

    // Wait until ticks flow (seen by the watcher, which keeps reading).
    let mut i = 0i64;
    loop {
        let bytes = strikeflow_schemas::encode(&tick(token_id, i)).expect("encode");
        produce(&producer, &topics.ticks(), &token_id.to_string(), &bytes).await;
        i += 1;
        if let Some(Frame::Json(_)) = next_frame(&mut watcher, Duration::from_millis(300)).await {
            break;
        }
        assert!(i < 200, "ticks never flowed");
    }
    // A well-behaved client keeps reading throughout, concurrently.
    let last_volume = 10_000 + i + total_ticks() - 1;
    let watch = tokio::spawn(async move {
        // Cheap per message (no JSON parsing), so this client is never the slow one.
        let needle = format!("\"volume\":{last_volume},");
        while let Some(Ok(frame)) = watcher.next().await {
            if let Message::Text(text) = &frame {
                if text.as_str().contains(&needle) {
                    return watcher;
                }
            }
        }
        panic!("watcher connection ended");
    });
    // Flood: far more than the socket buffers plus the client queue can hold.
    let total = total_ticks();
    let topic = topics.ticks();
    let key = token_id.to_string();
    let payloads: Vec<Vec<u8>> = (i..i + total)
        .map(|n| strikeflow_schemas::encode(&tick(token_id, n)).expect("encode"))
        .collect();
    let mut deliveries = Vec::with_capacity(payloads.len());
    for payload in &payloads {
        let record = rdkafka::producer::FutureRecord::to(&topic)
            .key(&key)
            .payload(payload);
        deliveries.push(producer.send(record, Duration::from_secs(30)));
    }
    for delivery in futures::future::join_all(deliveries).await {
        delivery.map_err(|(e, _)| e).expect("delivered");
    }
    let mut watcher = tokio::time::timeout(Duration::from_secs(60), watch)
        .await
        .expect("watcher saw every tick")
        .expect("watcher task");
    // The slow client now reads: it must find its stream ended early by the server, with a
    // 4008 close frame if that made it into the socket.
    let mut received = 0;
    let ended = loop {
        match next_frame(&mut slow, Duration::from_secs(10)).await {
            Some(Frame::Json(_)) => received += 1,
            Some(Frame::Closed(frame)) => break frame,
            Some(Frame::Ended) => break None,
            None => panic!("slow client was never closed (received {received})"),
        }
    };
    assert!(
        (received as i64) < total,
        "slow client got everything ({received})"
    );
    if let Some((code, reason)) = ended {
        assert_eq!(u16::from(code), 4008);
        assert_eq!(reason, "slow consumer");
    }
    // The watcher is still connected.
    send_json(&mut watcher, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut watcher).await, json!({"type":"pong"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_is_closed_after_two_ping_intervals() {
    let topics = fresh_topics();
    let mut cfg = config(&topics);
    cfg.settings.ping_interval_secs = 1;
    let server = TestServer::start(cfg).await;
    let mut request = server.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", token(&[]))).expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connect");
    // tungstenite answers pings only while the stream is polled: a client that keeps reading
    // stays alive...
    let alive_until = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < alive_until {
        if let Some(frame) = next_frame(&mut ws, Duration::from_millis(200)).await {
            panic!("a responsive client was closed: {frame:?}");
        }
    }
    // ...and one that stops reading (so sends no pongs) is closed by the server, with 4000
    // if the close frame is still readable (answering the buffered pings first may reset the
    // already-closed connection instead).
    tokio::time::sleep(Duration::from_secs(4)).await;
    match next_frame(&mut ws, Duration::from_secs(5)).await {
        Some(Frame::Closed(Some((code, _)))) => assert_eq!(u16::from(code), 4000),
        Some(Frame::Ended) => {}
        other => panic!("expected a ping-timeout close, got {other:?}"),
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_token_closes_the_session_unless_refreshed_in_band() {
    let topics = fresh_topics();
    let server = TestServer::start(config(&topics)).await;
    let short = |channels: &[&str]| {
        auth::mint(
            SECRET,
            "integration-test",
            Duration::from_secs(1),
            channels.iter().map(|c| c.to_string()).collect(),
        )
        .expect("mint")
    };
    let mut lapsing = connect(&server, &short(&[])).await;
    let mut refreshed = connect(&server, &short(&[])).await;
    let channel = format!("ticks.X{}", unique());
    send_json(&mut refreshed, json!({"op":"subscribe","channel":channel})).await;
    assert_eq!(next_json(&mut refreshed).await["type"], "subscribed");

    // A refresh with another subject is refused; the session keeps its token.
    let stranger =
        auth::mint(SECRET, "someone-else", Duration::from_secs(600), vec![]).expect("mint");
    send_json(&mut refreshed, json!({"op":"auth","token":stranger})).await;
    let reply = next_json(&mut refreshed).await;
    assert_eq!(reply["type"], "error");

    // A narrower token drops the subscription it no longer allows.
    send_json(
        &mut refreshed,
        json!({"op":"auth","token":token(&["bars.*"])}),
    )
    .await;
    let reply = next_json(&mut refreshed).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert!(reply["message"]
        .as_str()
        .is_some_and(|m| m.contains(&channel)));
    let reply = next_json(&mut refreshed).await;
    assert_eq!(reply["type"], "authenticated");

    // The unrefreshed session ends with 4001 once exp (plus the small leeway) passes.
    match next_frame(&mut lapsing, Duration::from_secs(15)).await {
        Some(Frame::Closed(Some((code, reason)))) => {
            assert_eq!(u16::from(code), 4001);
            assert_eq!(reason, "token expired");
        }
        other => panic!("expected a token-expired close, got {other:?}"),
    }
    // The refreshed one is still serving.
    send_json(&mut refreshed, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut refreshed).await, json!({"type":"pong"}));
    server.stop().await;
}
