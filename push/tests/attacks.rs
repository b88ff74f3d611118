//! The authentication attack matrix, over the real server (`./dev up`): every way a token
//! can be missing, forged, stale or too broad, through every way a client can present one.
//! Limits (frame size, floods, slow clients) are in `limits.rs`.

mod common;

use std::time::Duration;

use common::tokens::{self, claims, hs256, with};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};
use strikeflow_push::{PushConfig, PROTOCOL_BEARER_PREFIX, PROTOCOL_JSON};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// A server that also accepts RS256 (`rsa-1`) and ES256 (`ec-1`) tokens.
fn keyed_config() -> PushConfig {
    let mut cfg = config(&fresh_topics());
    cfg.auth.rs256_public_key_file = tokens::key_path("rsa-1.pub.pem");
    cfg.auth.es256_public_key_file = tokens::key_path("ec-1.pub.pem");
    cfg
}

/// How a client presents its token.
#[derive(Debug, Clone, Copy)]
enum Via {
    Header,
    Subprotocol,
    Query,
}

fn request(server: &TestServer, via: Via, token: &str) -> Request {
    let url = match via {
        Via::Query => format!("{}?token={token}", server.ws_url()),
        _ => server.ws_url(),
    };
    let mut request = url.into_client_request().expect("request");
    let headers = request.headers_mut();
    match via {
        Via::Header => {
            headers.insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
            );
        }
        Via::Subprotocol => {
            headers.insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(&format!("{PROTOCOL_JSON}, {PROTOCOL_BEARER_PREFIX}{token}"))
                    .expect("header"),
            );
        }
        Via::Query => {}
    }
    request
}

/// The upgrade's outcome: the socket and response, or the refusal's status and JSON body.
async fn attempt(request: Request) -> Result<(Ws, Response), (u16, Value)> {
    match tokio_tungstenite::connect_async(request).await {
        Ok(ok) => Ok(ok),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            Err((
                status,
                serde_json::from_slice(&body).expect("JSON error body"),
            ))
        }
        Err(other) => panic!("unexpected error {other}"),
    }
}

/// Upgrade without a token, offering the JSON subprotocol (first-message auth).
async fn connect_in_band(server: &TestServer) -> Ws {
    let mut request = server.ws_url().into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(PROTOCOL_JSON),
    );
    let (ws, response) = attempt(request).await.expect("upgraded");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some(PROTOCOL_JSON)
    );
    ws
}

/// A valid signature over other claims: the first token's header and signature around the
/// second's payload.
fn splice(signed: &str, payload_from: &str) -> String {
    let a: Vec<&str> = signed.split('.').collect();
    let b: Vec<&str> = payload_from.split('.').collect();
    format!("{}.{}.{}", a[0], b[1], a[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forged_or_stale_token_is_refused_through_every_transport() {
    let server = TestServer::start(keyed_config()).await;
    let now = tokens::now();
    let good = claims("mallory", &["bars.*"]);
    let rsa_public = std::fs::read(tokens::key_path("rsa-1.pub.pem")).expect("pem");
    let confusion_key = EncodingKey::from_secret(&rsa_public).expect("key");
    let hs512_key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let payload = hs256(&good).split('.').nth(1).expect("payload").to_owned();
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed", "not.a.jwt".to_owned(), "malformed"),
        ("garbage", "garbage".to_owned(), "malformed"),
        (
            "tampered",
            splice(
                &hs256(&good),
                &hs256(&with(good.clone(), "channels", json!(["*"]))),
            ),
            "signature",
        ),
        (
            "wrong secret",
            tokens::sign(
                Algorithm::HS256,
                &EncodingKey::from_secret(b"another-secret-another-secret-32").expect("key"),
                None,
                &good,
            ),
            "signature",
        ),
        (
            "alg none",
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."),
            "algorithm",
        ),
        (
            "HS512",
            tokens::sign(Algorithm::HS512, &hs512_key, None, &good),
            "algorithm",
        ),
        (
            "HS/RS key confusion",
            tokens::sign(Algorithm::HS256, &confusion_key, None, &good),
            "signature",
        ),
        (
            "RS256 by an unknown key",
            tokens::rs256("rsa-2", None, &good),
            "signature",
        ),
        (
            "expired",
            hs256(&with(good.clone(), "exp", json!(now - 60))),
            "expired",
        ),
        (
            "not yet valid",
            hs256(&with(good.clone(), "nbf", json!(now + 300))),
            "not yet valid",
        ),
        (
            "wrong aud",
            hs256(&with(good.clone(), "aud", json!("another-service"))),
            "audience",
        ),
        (
            "no aud",
            hs256(&with(good.clone(), "aud", Value::Null)),
            "aud",
        ),
        (
            "wrong iss",
            hs256(&with(good.clone(), "iss", json!("mallory"))),
            "issuer",
        ),
        (
            "exp not an integer",
            hs256(&with(good.clone(), "exp", json!(1e300))),
            "exp",
        ),
    ];
    for via in [Via::Header, Via::Subprotocol, Via::Query] {
        for (name, token, expected) in &cases {
            let (status, body) = match attempt(request(&server, via, token)).await {
                Ok(_) => panic!("{name} via {via:?} was accepted"),
                Err(refusal) => refusal,
            };
            assert_eq!(status, 401, "{name} via {via:?}: {body}");
            let error = body["error"].as_str().expect("error text").to_lowercase();
            assert!(error.contains(expected), "{name} via {via:?}: {error}");
            // The refusal never echoes the token.
            assert!(!error.contains(token.as_str()), "{name}: {error}");
        }
    }

    // Missing altogether (no subprotocol either): 401 naming the ways to send one.
    let plain = server.ws_url().into_client_request().expect("request");
    let (status, body) = attempt(plain).await.expect_err("refused");
    assert_eq!(status, 401);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("missing")));

    // The genuine article, through each transport and with each key type.
    for via in [Via::Header, Via::Subprotocol, Via::Query] {
        for token in [
            hs256(&good),
            tokens::rs256("rsa-1", None, &good),
            tokens::es256(&good),
        ] {
            let (mut ws, response) = attempt(request(&server, via, &token))
                .await
                .unwrap_or_else(|e| panic!("{via:?}: refused {e:?}"));
            if let Via::Subprotocol = via {
                // The JSON protocol is selected; the token is never echoed back.
                assert_eq!(
                    response.headers().get("sec-websocket-protocol"),
                    Some(&HeaderValue::from_static(PROTOCOL_JSON))
                );
            }
            send_json(&mut ws, json!({"op":"ping"})).await;
            assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_auth_within_the_deadline() {
    let mut cfg = keyed_config();
    cfg.settings.auth_timeout_secs = 1;
    let server = TestServer::start(cfg).await;

    // Authenticates, then serves.
    let mut ws = connect_in_band(&server).await;
    let good = claims("browser", &["bars.*"]);
    send_json(&mut ws, json!({"op":"auth","token":hs256(&good)})).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["type"], "authenticated", "{reply}");
    assert_eq!(reply["exp"], good["exp"]);
    let channel = format!("bars.X{}", unique());
    send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut ws, &channel).await;

    // Anything but `auth` first: 4003.
    let mut ws = connect_in_band(&server).await;
    send_json(&mut ws, json!({"op":"subscribe","channel":"bars.X"})).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 4003);
    assert!(reason.contains("authentication required"), "{reason}");

    // A forged token: 4003 with the reason.
    let mut ws = connect_in_band(&server).await;
    let forged = splice(&hs256(&good), &hs256(&claims("admin", &["*"])));
    send_json(&mut ws, json!({"op":"auth","token":forged})).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(code, 4003);
    assert!(reason.contains("signature"), "{reason}");

    // Expired: 4003 too.
    let mut ws = connect_in_band(&server).await;
    let expired = hs256(&with(good.clone(), "exp", json!(tokens::now() - 60)));
    send_json(&mut ws, json!({"op":"auth","token":expired})).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4003, "token expired"));

    // Nothing at all: 4004 once the deadline passes.
    let mut ws = connect_in_band(&server).await;
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (4004, "authentication timeout"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_jti_is_refused_at_connect_and_on_refresh() {
    let topics = fresh_topics();
    let server = TestServer::start(config(&topics)).await;
    let redis = redis::Client::open(redis_url()).expect("redis url");
    let conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let revoke = |jti: String| {
        // Namespaced by the topic prefix (empty in production).
        let key = format!("strikeflow:revoked:{}{jti}", topics.prefix);
        let mut conn = conn.clone();
        async move {
            redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("EX")
                .arg(600)
                .query_async::<()>(&mut conn)
                .await
                .expect("SET");
        }
    };

    let first = claims("leaver", &["*"]);
    let mut open = connect(&server, &hs256(&first)).await;
    revoke(tokens::jti(&first)).await;

    // The same token can no longer connect, by any route.
    let (status, body) = attempt(request(&server, Via::Header, &hs256(&first)))
        .await
        .expect_err("refused");
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("revoked")),
        "{body}"
    );
    let mut in_band = connect_in_band(&server).await;
    send_json(&mut in_band, json!({"op":"auth","token":hs256(&first)})).await;
    assert_eq!(
        expect_close(&mut in_band).await,
        (4005, "token revoked".to_owned())
    );

    // A session refreshing to a revoked token is closed with 4005.
    let second = claims("leaver", &["*"]);
    revoke(tokens::jti(&second)).await;
    send_json(&mut open, json!({"op":"auth","token":hs256(&second)})).await;
    assert_eq!(
        expect_close(&mut open).await,
        (4005, "token revoked".to_owned())
    );
    // Another token of the same user is unaffected.
    let mut ws = connect(&server, &hs256(&claims("leaver", &["*"]))).await;
    send_json(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_channels_claim_grants_nothing_and_channels_cannot_be_escalated() {
    let server = TestServer::start(config(&fresh_topics())).await;
    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());

    // No `channels` claim: connected, but every subscription refused.
    let bare = with(claims("nobody", &[]), "channels", Value::Null);
    let mut ws = connect(&server, &hs256(&bare)).await;
    for channel in [format!("bars.{symbol}"), format!("ticks.{symbol}")] {
        send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert!(
            reply["message"]
                .as_str()
                .is_some_and(|m| m.contains("grants no channels")),
            "{reply}"
        );
    }

    // `bars.NIFTY*` only.
    let narrow = claims("trader", &["bars.NIFTY*"]);
    let mut ws = connect(&server, &hs256(&narrow)).await;
    let allowed = format!("bars.{symbol}");
    send_json(&mut ws, json!({"op":"subscribe","channel":allowed})).await;
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    for denied in [
        format!("ticks.{symbol}"),
        format!("bars.BANK{symbol}"),
        "bars.*".to_owned(),
        "bars.NIFTY*".to_owned(),
    ] {
        send_json(&mut ws, json!({"op":"subscribe","channel":denied})).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{denied}: {reply}");
    }
    // A wider token of someone else cannot be swapped in.
    let other = hs256(&claims("admin", &["*"]));
    send_json(&mut ws, json!({"op":"auth","token":other})).await;
    let reply = next_json(&mut ws).await;
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains("subject differs")),
        "{reply}"
    );
    send_json(
        &mut ws,
        json!({"op":"subscribe","channel":format!("ticks.{symbol}")}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["type"], "error");
    // Refreshing to a token without channels drops what was subscribed.
    let emptied = with(claims("trader", &[]), "channels", Value::Null);
    send_json(&mut ws, json!({"op":"auth","token":hs256(&emptied)})).await;
    let reply = next_json(&mut ws).await;
    assert!(
        reply["message"]
            .as_str()
            .is_some_and(|m| m.contains(&allowed) && m.contains("unsubscribed")),
        "{reply}"
    );
    assert_eq!(next_json(&mut ws).await["type"], "authenticated");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exp_far_in_the_future_never_panics() {
    let server = TestServer::start(config(&fresh_topics())).await;
    let forever = with(claims("immortal", &["*"]), "exp", json!(u64::MAX));
    let mut ws = connect(&server, &hs256(&forever)).await;
    send_json(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    // Refreshing to it as well.
    send_json(&mut ws, json!({"op":"auth","token":hs256(&forever)})).await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type":"authenticated","exp":u64::MAX})
    );
    // The server is still whole: a new client is served.
    let mut other = connect(&server, &hs256(&claims("mortal", &["*"]))).await;
    send_json(&mut other, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut other).await, json!({"type":"pong"}));
    server.stop().await;
}

/// A JWKS file in a fresh temporary directory holding the named test keys.
fn write_jwks(path: &std::path::Path, kids: &[&str]) {
    let keys: Vec<Value> = kids
        .iter()
        .map(|kid| {
            let text =
                std::fs::read_to_string(tokens::key_path(&format!("{kid}.jwk.json"))).expect("jwk");
            serde_json::from_str(&text).expect("jwk json")
        })
        .collect();
    // Write then rename, as a key-rotation job would, so the server never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json!({ "keys": keys }).to_string()).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_is_picked_up_without_a_restart() {
    let dir = std::env::temp_dir().join(format!("strikeflow-push-jwks-{}", unique()));
    std::fs::create_dir_all(&dir).expect("dir");
    let jwks = dir.join("jwks.json");
    write_jwks(&jwks, &["rsa-1"]);
    let mut cfg = config(&fresh_topics());
    cfg.auth.jwks_file = jwks.display().to_string();
    cfg.auth.jwks_reload_secs = 1;
    let server = TestServer::start(cfg).await;

    let good = claims("rotated", &["*"]);
    let old = tokens::rs256("rsa-1", Some("rsa-1"), &good);
    let new = tokens::rs256("rsa-2", Some("rsa-2"), &good);
    assert!(attempt(request(&server, Via::Header, &old)).await.is_ok());
    let (status, body) = attempt(request(&server, Via::Header, &new))
        .await
        .expect_err("unknown kid");
    assert_eq!(status, 401);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.contains("unknown signing key")));

    write_jwks(&jwks, &["rsa-2"]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while attempt(request(&server, Via::Header, &new)).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated key was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        attempt(request(&server, Via::Header, &old)).await.is_err(),
        "the retired key still verifies"
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
