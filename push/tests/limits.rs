//! Limits over the real server (`./dev up`): oversize messages, subscription and request
//! floods, connection floods per user across two nodes sharing Redis, the node's own
//! connection limit, slow request heads, and refusing to start exposed with a weak secret.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::tokens::{claims, hs256};
use common::*;
use futures::SinkExt;
use serde_json::json;
use strikeflow_push::auth::DEV_JWT_SECRET;
use strikeflow_push::{PushError, PushServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// The refusal status of an upgrade with `token`, or `None` if it was accepted (and the
/// socket, to keep it open).
async fn try_connect(server: &TestServer, token: &str) -> Result<Ws, u16> {
    let mut request = server.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_message_closes_the_connection_with_1009() {
    let mut cfg = config(&fresh_topics());
    cfg.settings.max_frame_bytes = 4096;
    let server = TestServer::start(cfg).await;
    let token = hs256(&claims("big", &["*"]));

    // Just over the limit: read whole, refused with 1009.
    let mut ws = connect(&server, &token).await;
    let padding = "x".repeat(5000);
    send_json(&mut ws, json!({"op":"ping","pad":padding})).await;
    assert_eq!(
        expect_close(&mut ws).await,
        (1009, "message too big".to_owned())
    );

    // Far over it: refused by the WebSocket layer before it is buffered; 1009 if the
    // close frame can still be read, else the connection is cut.
    let mut ws = connect(&server, &token).await;
    let _ = ws.send(Message::text("y".repeat(100_000))).await;
    match next_frame(&mut ws, Duration::from_secs(15)).await {
        Some(Frame::Closed(Some((code, _)))) => assert_eq!(u16::from(code), 1009),
        Some(Frame::Ended) => {}
        other => panic!("an oversize message was not refused: {other:?}"),
    }

    // At the limit is fine.
    let mut ws = connect(&server, &token).await;
    let fits = format!(r#"{{"op":"ping","pad":"{}"}}"#, "z".repeat(4000));
    assert!(fits.len() <= 4096);
    send_text(&mut ws, &fits).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_flood_is_capped_per_connection() {
    let mut cfg = config(&fresh_topics());
    cfg.settings.max_subscriptions = 5;
    let server = TestServer::start(cfg).await;
    let mut ws = connect(&server, &hs256(&claims("hoarder", &["*"]))).await;
    let base = unique();
    let channel = |i: usize| format!("ticks.FLOOD{base}X{i}");
    for i in 0..5 {
        send_json(&mut ws, json!({"op":"subscribe","channel":channel(i)})).await;
        assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    }
    // Re-subscribing to one already held is not a new one.
    send_json(&mut ws, json!({"op":"subscribe","channel":channel(0)})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    for i in 5..8 {
        send_json(&mut ws, json!({"op":"subscribe","channel":channel(i)})).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| m.contains("too many subscriptions (at most 5)")),
            "{reply}"
        );
    }
    // Room again after an unsubscribe; the connection was never closed.
    send_json(&mut ws, json!({"op":"unsubscribe","channel":channel(1)})).await;
    send_json(&mut ws, json!({"op":"subscribe","channel":channel(9)})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_is_closed_with_4029() {
    let mut cfg = config(&fresh_topics());
    cfg.settings.ops_per_sec = 2;
    cfg.settings.ops_burst = 10;
    let server = TestServer::start(cfg).await;
    let mut ws = connect(&server, &hs256(&claims("flooder", &["*"]))).await;
    // Within the burst: every request answered.
    for _ in 0..8 {
        send_json(&mut ws, json!({"op":"ping"})).await;
        assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    }
    // Then a flood: closed (replies still queued may be dropped with the connection).
    for _ in 0..50 {
        ws.feed(Message::text(r#"{"op":"ping"}"#))
            .await
            .expect("feed");
    }
    ws.flush().await.expect("flush");
    let mut pongs = 0;
    let closed = loop {
        match next_frame(&mut ws, Duration::from_secs(15)).await {
            Some(Frame::Json(reply)) => {
                assert_eq!(reply, json!({"type":"pong"}));
                pongs += 1;
            }
            Some(Frame::Closed(frame)) => break frame,
            other => panic!("expected a 4029 close, got {other:?} after {pongs} pongs"),
        }
    };
    assert_eq!(
        closed.map(|(code, reason)| (u16::from(code), reason)),
        Some((4029, "too many requests".to_owned()))
    );
    assert!(pongs < 10, "the flood was served: {pongs} pongs");

    // A client within its rate is never closed.
    let mut calm = connect(&server, &hs256(&claims("calm", &["*"]))).await;
    for _ in 0..5 {
        send_json(&mut calm, json!({"op":"ping"})).await;
        assert_eq!(next_json(&mut calm).await, json!({"type":"pong"}));
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_per_user_is_capped_across_nodes() {
    let topics = fresh_topics();
    let mut cfg = config(&topics);
    cfg.settings.max_connections_per_user = 2;
    // Two nodes of one deployment: the same topics (so the same Redis namespace).
    let a = TestServer::start(cfg.clone()).await;
    let b = TestServer::start(cfg).await;
    let user = format!("flooder-{}", unique());
    let token = || hs256(&claims(&user, &["*"]));

    let first = try_connect(&a, &token()).await.expect("first, on a");
    let second = try_connect(&b, &token()).await.expect("second, on b");
    assert_eq!(try_connect(&a, &token()).await.err(), Some(429));
    assert_eq!(try_connect(&b, &token()).await.err(), Some(429));
    // Through first-message auth: close code 4009.
    let mut request = a.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(strikeflow_push::PROTOCOL_JSON),
    );
    let (mut in_band, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    send_json(&mut in_band, json!({"op":"auth","token":token()})).await;
    let (code, reason) = expect_close(&mut in_band).await;
    assert_eq!(code, 4009);
    assert!(reason.contains("too many connections"), "{reason}");
    // Another user is not affected.
    let other = try_connect(&a, &hs256(&claims("someone-else", &["*"])))
        .await
        .expect("another user");

    // Closing one gives its place back (the lease is released at once).
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let third = loop {
        match try_connect(&b, &token()).await {
            Ok(ws) => break ws,
            Err(status) => {
                assert_eq!(status, 429);
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the closed connection's place never came back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    drop((second, third, other));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_per_user_limit_holds_per_node() {
    let mut cfg = config(&fresh_topics());
    cfg.redis_url = "redis://127.0.0.1:1".to_owned();
    cfg.settings.max_connections_per_user = 1;
    let server = TestServer::start(cfg).await;
    let token = || hs256(&claims("solo", &["*"]));
    let kept = try_connect(&server, &token()).await.expect("first");
    assert_eq!(try_connect(&server, &token()).await.err(), Some(429));
    drop(kept);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_connection_limit_answers_503() {
    let mut cfg = config(&fresh_topics());
    cfg.settings.max_connections = 2;
    let server = TestServer::start(cfg).await;
    let one = try_connect(&server, &hs256(&claims("u1", &["*"])))
        .await
        .expect("1");
    let two = try_connect(&server, &hs256(&claims("u2", &["*"])))
        .await
        .expect("2");
    assert_eq!(
        try_connect(&server, &hs256(&claims("u3", &["*"])))
            .await
            .err(),
        Some(503)
    );
    drop(one);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while try_connect(&server, &hs256(&claims("u3", &["*"])))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(two);
    server.stop().await;
}

/// Read until the server closes the connection; `None` if it is still open after `wait`.
async fn closed_within(stream: &mut tokio::net::TcpStream, wait: Duration) -> Option<()> {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(()),
            // A 408 or similar before the close is fine.
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_disconnected() {
    let mut cfg = config(&fresh_topics());
    cfg.settings.header_timeout_secs = 1;
    let server = TestServer::start(cfg).await;

    // Connects and says nothing.
    let mut silent = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    // Starts a WebSocket handshake and never finishes the headers.
    let mut slow = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    slow.write_all(b"GET /ws HTTP/1.1\r\nHost: push\r\nUpgrade: websocket\r\n")
        .await
        .expect("write");
    for stream in [&mut silent, &mut slow] {
        assert!(
            closed_within(stream, Duration::from_secs(10))
                .await
                .is_some(),
            "a slow client kept its connection"
        );
    }
    // Clients that send their request at once are served as usual.
    let (status, _) = http_get(server.addr, "/healthz").await;
    assert_eq!(status, 200);
    let mut ws = connect(&server, &hs256(&claims("prompt", &["*"]))).await;
    send_json(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_refuses_to_start_on_a_public_address_with_a_weak_secret() {
    let public = SocketAddr::from(([0, 0, 0, 0], 0));
    for (secret, expected) in [
        (DEV_JWT_SECRET.to_owned(), "development secret"),
        ("only-twenty-bytes-xx".to_owned(), "20 bytes"),
    ] {
        let mut cfg = config(&fresh_topics());
        cfg.settings.listen = public;
        cfg.auth.jwt_secret = secret;
        let error = PushServer::bind(cfg.clone())
            .await
            .expect_err("refused to bind");
        assert!(matches!(
            error,
            PushError::Config {
                key: "auth.jwt_secret",
                ..
            }
        ));
        assert!(error.to_string().contains(expected), "{error}");
        // The stage entry point refuses the same way, before serving anything.
        let run = strikeflow_push::run(cfg, tokio_util::sync::CancellationToken::new());
        let error = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("refused at once")
            .expect_err("refused");
        assert!(
            error.to_string().starts_with("auth.jwt_secret: "),
            "{error}"
        );
    }
    // A real secret on the same address starts.
    let mut cfg = config(&fresh_topics());
    cfg.settings.listen = public;
    cfg.auth.jwt_secret = "a-random-secret-of-at-least-32-bytes!".to_owned();
    let server = TestServer::start(cfg).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_of_a_dead_node_expire_and_live_ones_are_renewed() {
    use std::sync::Arc;

    use strikeflow_push::auth::Claims;
    use strikeflow_push::presence::{Admission, Presence};
    use strikeflow_push::redis_link::RedisLink;

    let namespace = format!("lease{}.", unique());
    let link = Arc::new(RedisLink::new(&redis_url()).expect("url"));
    let presence = Presence::new(link, &namespace);
    let user = Claims {
        sub: "leaser".into(),
        exp: u64::MAX,
        jti: None,
        channels: vec!["*".into()],
    };
    assert_eq!(presence.admit(1, &user, 2).await, Admission::Admitted);
    assert_eq!(presence.admit(2, &user, 2).await, Admission::Admitted);
    assert_eq!(presence.admit(3, &user, 2).await, Admission::OverLimit);

    let redis = redis::Client::open(redis_url()).expect("redis url");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let key = presence.connections_key("leaser");
    let scores = |mut conn: redis::aio::MultiplexedConnection| {
        let key = key.clone();
        async move {
            redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async::<Vec<(String, f64)>>(&mut conn)
                .await
                .expect("ZRANGE")
        }
    };
    // Renewal moves the leases' expiry forward.
    let before = scores(conn.clone()).await;
    assert_eq!(before.len(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    presence.renew().await.expect("renew");
    let after = scores(conn.clone()).await;
    let after: std::collections::HashMap<String, f64> = after.into_iter().collect();
    for (member, old) in &before {
        let new = after.get(member).copied().unwrap_or_default();
        assert!(new > *old, "{member} was not renewed: {old} -> {new}");
    }

    // A crashed node's lease (expired, never released) does not count.
    presence.release(2).await;
    let _: () = redis::cmd("ZADD")
        .arg(&key)
        .arg(1)
        .arg("node-dead:7")
        .query_async(&mut conn)
        .await
        .expect("ZADD");
    assert_eq!(presence.admit(4, &user, 2).await, Admission::Admitted);
    assert_eq!(presence.admit(5, &user, 2).await, Admission::OverLimit);
    let left: Vec<String> = scores(conn.clone())
        .await
        .into_iter()
        .map(|(member, _)| member)
        .collect();
    assert!(!left.iter().any(|m| m == "node-dead:7"), "{left:?}");
    presence.release(1).await;
    presence.release(4).await;
    assert!(scores(conn).await.is_empty());
}
