//! MessagePack frames (subprotocol `strikeflow.v1.msgpack`) over the real server and Kafka
//! (`./dev up`): the same documents as JSON clients get, with the same numbers; requests as
//! MessagePack binary frames (or JSON text), replies and errors in MessagePack; the
//! negotiation rule; first-message authentication; and the slow-consumer close.

mod common;

use std::time::Duration;

use common::chain::*;
use common::tokens::{claims, hs256};
use common::*;
use futures::{SinkExt, StreamExt};
use rdkafka::producer::FutureRecord;
use serde_json::{json, Value};
use strikeflow_push::{PROTOCOL_BEARER_PREFIX, PROTOCOL_JSON, PROTOCOL_MSGPACK};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// What a MessagePack client received next.
#[derive(Debug)]
enum Got {
    /// A binary frame, decoded.
    Doc(Value),
    /// A text frame: never expected by a MessagePack client.
    Text(String),
    Closed(Option<(u16, String)>),
    Ended,
}

/// The next data-bearing frame (pings and pongs skipped), or `None` on timeout.
async fn next_got(ws: &mut Ws, wait: Duration) -> Option<Got> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next()).await.ok()?;
        return Some(match frame {
            Some(Ok(Message::Binary(bytes))) => Got::Doc(
                // Into a JSON value: fails on a map key that is not a string, or on any
                // MessagePack type JSON lacks.
                rmp_serde::from_slice(&bytes).expect("a MessagePack document"),
            ),
            Some(Ok(Message::Text(text))) => Got::Text(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                Got::Closed(frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())))
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => Got::Ended,
        });
    }
}

/// The next MessagePack message, decoded; panics on a text frame, a close or a timeout.
async fn next_msgpack(ws: &mut Ws) -> Value {
    match next_got(ws, Duration::from_secs(10)).await {
        Some(Got::Doc(value)) => value,
        other => panic!("expected a MessagePack message, got {other:?}"),
    }
}

async fn send_msgpack(ws: &mut Ws, value: Value) {
    let bytes = rmp_serde::to_vec_named(&value).expect("encode");
    ws.send(Message::binary(bytes)).await.expect("send");
}

/// Upgrade offering `protocols` (`Sec-WebSocket-Protocol`), with `Authorization: Bearer`
/// when a token is given; returns the socket and the subprotocol the server selected.
async fn connect_offering(
    server: &TestServer,
    protocols: &str,
    token: Option<&str>,
) -> (Ws, Option<String>) {
    let mut request = server.ws_url().into_client_request().expect("request");
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocols).expect("header"),
    );
    if let Some(token) = token {
        headers.insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
    }
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket connect");
    assert_eq!(response.status(), 101);
    let selected = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (ws, selected)
}

/// A MessagePack client authenticated at the upgrade.
async fn connect_msgpack(server: &TestServer, token: &str) -> Ws {
    let (ws, selected) = connect_offering(server, PROTOCOL_MSGPACK, Some(token)).await;
    assert_eq!(selected.as_deref(), Some(PROTOCOL_MSGPACK));
    ws
}

/// Read a MessagePack client's chain messages until one numbered `seq`.
async fn msgpack_chain_until(ws: &mut Ws, seq: u64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + STARTUP;
    let mut got = Vec::new();
    loop {
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let msg = match next_got(ws, wait).await {
            Some(Got::Doc(msg)) => msg,
            other => panic!("waiting for chain seq {seq} in MessagePack: {other:?}"),
        };
        if msg["type"] != "chain" {
            continue;
        }
        let at = msg["seq"].as_u64().expect("seq");
        got.push(msg);
        if at >= seq {
            return got;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_and_msgpack_clients_get_the_same_documents_and_numbers() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let server = TestServer::start(config(&topics)).await;
    let producer = producer();
    let channel = format!("chain.NIFTY.{}", expiry_date());
    let token = hs256(&claims("trader", &["chain.*"]));

    let mut text = connect(&server, &token).await;
    let mut binary = connect_msgpack(&server, &token).await;
    send_json(&mut text, json!({"op":"subscribe","channel":channel})).await;
    let subscribed = expect_subscribed(&mut text, &channel).await;
    // The MessagePack client subscribes with a MessagePack request.
    send_msgpack(&mut binary, json!({"op":"subscribe","channel":channel})).await;
    assert_eq!(next_msgpack(&mut binary).await, subscribed);

    let strikes = [25_950.0, 26_000.0, 26_050.0];
    for ts in 1..=3i64 {
        publish_boundary(&producer, &topics, "NIFTY", ts, &strikes, 0).await;
    }
    let mut view = ChainView::default();
    let from_text = read_chain_until(&mut text, &mut view, 3).await;
    let from_binary = msgpack_chain_until(&mut binary, 3).await;
    let seqs = |msgs: &[Value]| -> Vec<u64> {
        msgs.iter()
            .map(|m| m["seq"].as_u64().expect("seq"))
            .collect()
    };
    assert_eq!(seqs(&from_text), vec![1, 2, 3]);
    assert_eq!(seqs(&from_binary), seqs(&from_text));
    // Every field equal, numbers as numbers (floats, integers), nulls, booleans, nesting.
    assert_eq!(from_binary, from_text);
    let summary = &from_binary[2]["data"]["summary"];
    assert!(summary["spot"].is_f64(), "{summary}");
    assert!(summary["total_ce_oi"].is_u64(), "{summary}");
    assert!(summary["net_gex"].is_null(), "{summary}");
    assert_eq!(summary["minute_close"], false);

    // Late subscribers of both formats get the same snapshot.
    let mut late_text = connect(&server, &token).await;
    let mut late_binary = connect_msgpack(&server, &token).await;
    send_json(&mut late_text, json!({"op":"subscribe","channel":channel})).await;
    send_msgpack(
        &mut late_binary,
        json!({"op":"subscribe","channel":channel}),
    )
    .await;
    let reply = expect_subscribed(&mut late_text, &channel).await;
    assert_eq!(next_msgpack(&mut late_binary).await, reply);
    let snapshot = next_json(&mut late_text).await;
    assert_eq!(snapshot["snapshot"], true, "{snapshot}");
    assert_eq!(next_msgpack(&mut late_binary).await, snapshot);

    // Controls too: the MessagePack client's pong is MessagePack.
    send_msgpack(&mut binary, json!({"op":"ping"})).await;
    assert_eq!(next_msgpack(&mut binary).await, json!({"type":"pong"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_msgpack_client_gets_replies_and_errors_in_msgpack() {
    let server = TestServer::start(config(&fresh_topics())).await;
    let token = hs256(&claims("trader", &["bars.*"]));
    let mut ws = connect_msgpack(&server, &token).await;

    let encode = |v: Value| rmp_serde::to_vec_named(&v).expect("encode");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0xc1], "malformed messagepack"),
        (encode(json!([1, 2, 3])), "malformed messagepack"),
        (encode(json!({"channel":"bars.X"})), "op"),
        (encode(json!({"op":"dance"})), "unknown op"),
        (encode(json!({"op":"subscribe"})), "channel"),
        (
            encode(json!({"op":"subscribe","channel":"quotes.NIFTY26DECFUT"})),
            "unknown channel kind",
        ),
        (
            encode(json!({"op":"subscribe","channel":"ticks.NIFTY26DECFUT"})),
            "not allowed",
        ),
    ];
    for (request, expected) in cases {
        ws.send(Message::binary(request.clone()))
            .await
            .expect("send");
        let reply = next_msgpack(&mut ws).await;
        assert_eq!(reply["type"], "error", "reply to {request:x?}: {reply}");
        let message = reply["message"].as_str().expect("message");
        assert!(
            message.to_lowercase().contains(expected),
            "reply to {request:x?}: {message}"
        );
    }
    // JSON text requests are understood too, and answered in MessagePack.
    send_text(&mut ws, "{not json").await;
    let reply = next_msgpack(&mut ws).await;
    assert_eq!(reply["type"], "error");
    assert!(reply["message"]
        .as_str()
        .is_some_and(|m| m.contains("malformed JSON")));
    send_text(&mut ws, r#"{"op":"ping"}"#).await;
    assert_eq!(next_msgpack(&mut ws).await, json!({"type":"pong"}));
    // Still open and serving, in MessagePack.
    send_msgpack(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(next_msgpack(&mut ws).await, json!({"type":"pong"}));
    send_msgpack(&mut ws, json!({"op":"list"})).await;
    let list = next_msgpack(&mut ws).await;
    assert_eq!(list["type"], "list");
    assert_eq!(list["channels"], json!(["bars.<SYMBOL>[.<TF>]"]));
    let channel = format!("bars.X{}", unique());
    send_msgpack(&mut ws, json!({"op":"subscribe","channel":channel})).await;
    let reply = next_msgpack(&mut ws).await;
    assert_eq!(reply, json!({"type":"subscribed","channel":channel}));
    // An in-band refresh is answered in MessagePack.
    send_msgpack(&mut ws, json!({"op":"auth","token":token})).await;
    let reply = next_msgpack(&mut ws).await;
    assert_eq!(reply["type"], "authenticated", "{reply}");
    assert!(reply["exp"].is_u64(), "{reply}");

    // A JSON client's binary frame still gets the JSON error.
    let mut plain = connect(&server, &token).await;
    plain
        .send(Message::binary(encode(json!({"op":"ping"}))))
        .await
        .expect("send");
    let reply = next_json(&mut plain).await;
    assert_eq!(reply["type"], "error");
    assert!(reply["message"]
        .as_str()
        .is_some_and(|m| m.contains("binary frames are not supported")));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negotiation_picks_the_first_offered_format_and_first_message_auth_works() {
    let server = TestServer::start(config(&fresh_topics())).await;
    let token = hs256(&claims("trader", &["bars.*"]));

    // Both offered: the first listed wins.
    let offers = [
        (
            format!("{PROTOCOL_MSGPACK}, {PROTOCOL_JSON}"),
            PROTOCOL_MSGPACK,
        ),
        (
            format!("{PROTOCOL_JSON}, {PROTOCOL_MSGPACK}"),
            PROTOCOL_JSON,
        ),
        (
            format!("{PROTOCOL_MSGPACK}, {PROTOCOL_BEARER_PREFIX}{token}"),
            PROTOCOL_MSGPACK,
        ),
    ];
    for (offer, expected) in offers {
        // The last offer carries its token as a subprotocol only.
        let header_token = (!offer.contains(PROTOCOL_BEARER_PREFIX)).then_some(token.as_str());
        let (mut ws, selected) = connect_offering(&server, &offer, header_token).await;
        assert_eq!(selected.as_deref(), Some(expected), "{offer}");
        send_json(&mut ws, json!({"op":"ping"})).await;
        let pong = match next_got(&mut ws, Duration::from_secs(10)).await {
            Some(Got::Doc(doc)) if expected == PROTOCOL_MSGPACK => doc,
            Some(Got::Text(text)) if expected == PROTOCOL_JSON => {
                serde_json::from_str(&text).expect("json")
            }
            other => panic!("{offer}: pong in the wrong format: {other:?}"),
        };
        assert_eq!(pong, json!({"type":"pong"}), "{offer}");
    }

    // First-message authentication, with a MessagePack `auth` or a JSON one.
    for binary_auth in [true, false] {
        let (mut ws, selected) = connect_offering(&server, PROTOCOL_MSGPACK, None).await;
        assert_eq!(selected.as_deref(), Some(PROTOCOL_MSGPACK));
        let auth = json!({"op":"auth","token":token});
        if binary_auth {
            send_msgpack(&mut ws, auth).await;
        } else {
            send_json(&mut ws, auth).await;
        }
        let reply = next_msgpack(&mut ws).await;
        assert_eq!(reply["type"], "authenticated", "{reply}");
        assert!(reply["exp"].is_u64(), "{reply}");
        let channel = format!("bars.X{}", unique());
        send_msgpack(&mut ws, json!({"op":"subscribe","channel":channel})).await;
        assert_eq!(
            next_msgpack(&mut ws).await,
            json!({"type":"subscribed","channel":channel})
        );
    }

    // A first message other than `auth` closes as for JSON clients (4003).
    let (mut ws, _) = connect_offering(&server, PROTOCOL_MSGPACK, None).await;
    send_msgpack(&mut ws, json!({"op":"ping"})).await;
    match next_got(&mut ws, Duration::from_secs(10)).await {
        Some(Got::Closed(Some((code, reason)))) => {
            assert_eq!(code, 4003);
            assert!(reason.starts_with("authentication required"), "{reason}");
        }
        other => panic!("expected a 4003 close, got {other:?}"),
    }
    server.stop().await;
}

/// The channel's latest `(epoch, seq)` as a new subscriber's `subscribed` reply names it;
/// `None` while push has not seen the channel (or when the look was cut short).
async fn latest(server: &TestServer, token: &str, channel: &str) -> Option<(String, u64)> {
    let mut ws = connect(server, token).await;
    send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
    let reply = match next_frame(&mut ws, Duration::from_secs(10)).await {
        Some(Frame::Json(reply)) if reply["type"] == "subscribed" => Some(reply),
        _ => None,
    };
    let _ = ws.close(None).await;
    let reply = reply?;
    Some((reply["epoch"].as_str()?.to_owned(), reply["seq"].as_u64()?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_stream_overflow_closes_a_msgpack_client_with_4008() {
    let topics = fresh_topics();
    create_topics(&topics).await;
    let mut cfg = config(&topics);
    // Room for two queued messages; the history keeps every tick of this test.
    cfg.settings.client_queue = 2;
    cfg.settings.history_bytes = 1 << 20;
    // The node's progress is watched with a connection per look; never let leases still
    // being released count against the user.
    cfg.settings.max_connections_per_user = 1_000;
    let server = TestServer::start(cfg).await;
    let producer = producer();
    let token_id: i64 = 5_151_515;
    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());
    let channel = format!("ticks.{symbol}");
    let token = hs256(&claims("trader", &["ticks.*"]));
    let key = token_id.to_string();
    let inst = strikeflow_schemas::encode(&instrument(token_id, &symbol)).expect("encode");
    produce(&producer, &topics.instruments(), &key, &inst).await;

    // Ticks are read from the live end: produce one at a time until the node has one.
    // (Nobody is subscribed meanwhile: ticks held back while the node reads the instrument
    // master come in a burst, which would overflow a subscriber's tiny queue.)
    let deadline = tokio::time::Instant::now() + STARTUP;
    let mut i = 0i64;
    let (epoch, since) = loop {
        assert!(tokio::time::Instant::now() < deadline, "no tick arrived");
        let bytes = strikeflow_schemas::encode(&tick(token_id, i)).expect("encode");
        produce(&producer, &topics.ticks(), &key, &bytes).await;
        i += 1;
        if let Some(latest) = latest(&server, &token, &channel).await {
            break latest;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Then a burst: a client resuming from there is owed far more than its queue holds.
    let burst = 50;
    let mut last_offset = 0;
    for _ in 0..burst {
        let bytes = strikeflow_schemas::encode(&tick(token_id, i)).expect("encode");
        i += 1;
        let delivery = producer
            .send(
                FutureRecord::to(&topics.ticks()).key(&key).payload(&bytes),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(err, _)| err)
            .expect("produce");
        last_offset = delivery.offset;
    }
    // Wait until the node has read the burst.
    let last_seq = u64::try_from(last_offset + 1).expect("offset");
    while latest(&server, &token, &channel).await.map(|(_, seq)| seq) != Some(last_seq) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst never arrived"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut ws = connect_msgpack(&server, &token).await;
    send_msgpack(
        &mut ws,
        json!({"op":"subscribe","channel":channel,"since":{"epoch":epoch,"seq":since}}),
    )
    .await;
    // Whatever made it out before the overflow is MessagePack; then the 4008 close.
    let mut ticks = 0;
    let closed = loop {
        match next_got(&mut ws, Duration::from_secs(10)).await {
            Some(Got::Doc(doc)) if doc["type"] == "subscribed" => {
                assert_eq!(doc["recovered"], true, "{doc}");
            }
            Some(Got::Doc(doc)) if doc["type"] == "tick" => ticks += 1,
            Some(Got::Closed(frame)) => break frame,
            other => panic!("expected MessagePack messages, then a close: {other:?}"),
        }
    };
    assert!(ticks < burst, "got {ticks} ticks");
    assert_eq!(closed, Some((4008, "slow consumer".to_owned())));
    server.stop().await;
}
