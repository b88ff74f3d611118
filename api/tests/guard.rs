//! What stands before the handlers, against a private database: API tokens (401, 403, the
//! query token of the UDF), request ids, CORS and per-client rate limits.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::proxy::{self, Proxy};
use common::{server_url, token_for, Api, Sandbox, SECRET};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use strikeflow_api::{ApiSettings, DEFAULT_AUDIENCE, DEFAULT_SCOPE};

const CHAIN: &str = "/api/v1/chain?underlying=NIFTY&expiry=2026-12-08";
const SYMBOL: &str = "/udf/symbols?symbol=NIFTY26DECFUT";

/// A token signed with `secret` holding exactly `claims`.
fn signed(secret: &str, claims: serde_json::Value) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("a key");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("a token")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn data_routes_need_an_api_token_with_the_scope() {
    let sandbox = Sandbox::with_fixture("guard_auth").await;
    let proxy = Proxy::start(proxy::upstream(&server_url()).await).await;
    let api = Api::start(&proxy.url(&server_url(), &sandbox.name)).await;

    // No token: 401, the challenge, and no SQL.
    let before = proxy.statements();
    let reply = api.get_with(CHAIN, &[]).await;
    let e = reply.error(401, "missing_token");
    assert!(e["message"].as_str().expect("message").contains("Bearer"));
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    let udf = api.get_with(SYMBOL, &[]).await;
    assert_eq!(udf.status, 401);
    assert_eq!(udf.json()["s"], "error");
    assert_eq!(udf.json()["error"]["code"], "missing_token");

    // Refused tokens: 401 invalid_token, the reason in the message.
    let exp = now() + 60;
    let claims = |aud: &str| json!({"sub": "eve", "iss": "strikeflow", "aud": aud, "exp": exp, "scope": DEFAULT_SCOPE});
    let expired = json!({"sub": "eve", "iss": "strikeflow", "aud": DEFAULT_AUDIENCE,
                         "exp": now() - 600, "scope": DEFAULT_SCOPE});
    for (token, reason) in [
        ("garbage".to_owned(), "malformed"),
        (
            signed(
                "another-secret-of-at-least-32-bytes!",
                claims(DEFAULT_AUDIENCE),
            ),
            "signature",
        ),
        (signed(SECRET, claims("strikeflow-push")), "audience"),
        (signed(SECRET, expired), "expired"),
        (token_for("eve", &["strikeflow-push"], &[]), "audience"),
    ] {
        let reply = api
            .get_with(CHAIN, &[("Authorization", &bearer(&token))])
            .await;
        let e = reply.error(401, "invalid_token");
        let message = e["message"].as_str().expect("message");
        assert!(message.contains(reason), "{reason}: {message}");
        assert!(!message.contains(&token), "the token is not echoed");
    }

    // A valid API token without the scope: 403.
    let unscoped = token_for("bob", &[DEFAULT_AUDIENCE], &["api:write"]);
    let reply = api
        .get_with(CHAIN, &[("Authorization", &bearer(&unscoped))])
        .await;
    reply.error(403, "insufficient_scope");
    assert_eq!(
        reply.header("www-authenticate"),
        Some("Bearer error=\"insufficient_scope\"")
    );
    let udf = api
        .get_with(&format!("{SYMBOL}&token={unscoped}"), &[])
        .await;
    assert_eq!((udf.status, udf.json()["s"].clone()), (403, json!("error")));
    assert_eq!(proxy.statements(), before, "refused requests send no SQL");

    // The scope as a list, and a token for both push and the API, are accepted.
    let listed = signed(
        SECRET,
        json!({"sub": "carol", "iss": "strikeflow", "aud": ["strikeflow-push", DEFAULT_AUDIENCE],
               "exp": exp, "scope": ["other", DEFAULT_SCOPE], "channels": ["*"]}),
    );
    api.get_with(CHAIN, &[("Authorization", &bearer(&listed))])
        .await
        .ok();
    // The UDF also takes `?token=` (the library cannot set headers); REST does not.
    let token = api.token.clone();
    assert_eq!(
        api.get_with(&format!("{SYMBOL}&token={token}"), &[])
            .await
            .ok()["name"],
        "NIFTY26DECFUT"
    );
    api.get_with(&format!("{CHAIN}&token={token}"), &[])
        .await
        .error(401, "missing_token");

    // Health, readiness and the OpenAPI document are open.
    for open in ["/healthz", "/readyz", "/api/v1/openapi.json"] {
        assert_eq!(api.get_with(open, &[]).await.status, 200, "{open}");
    }
    // An unknown path is still a 404 (not a 401) and a wrong method a 405.
    api.get_with("/api/v1/nothing", &[])
        .await
        .error(404, "not_found");
    for path in ["/healthz", "/api/v1/openapi.json"] {
        common::send(api.addr, "POST", path, &[("Content-Length", "0")])
            .await
            .error(405, "method_not_allowed");
    }

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn every_answer_carries_a_request_id() {
    let sandbox = Sandbox::with_fixture("guard_ids").await;
    let api = Api::start(&sandbox.url).await;

    let a = api.get("/healthz").await;
    let b = api.get_with(CHAIN, &[]).await;
    let ids: Vec<&str> = [&a, &b]
        .iter()
        .map(|r| r.header("x-request-id").expect("an id"))
        .collect();
    for id in &ids {
        assert_eq!(id.len(), 16, "{id}");
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
    }
    assert_ne!(ids[0], ids[1]);
    // The client's own id is echoed, on success and on errors; an unusable one replaced.
    let mine = api
        .get_with(CHAIN, &[("X-Request-Id", "trace-42:abc")])
        .await;
    assert_eq!(mine.header("x-request-id"), Some("trace-42:abc"));
    let long = "x".repeat(200);
    let replaced = api.get_with("/healthz", &[("X-Request-Id", &long)]).await;
    assert_eq!(replaced.header("x-request-id").map(str::len), Some(16));

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn cors_answers_the_configured_origins_only() {
    let sandbox = Sandbox::new("guard_cors").await;
    let settings = ApiSettings {
        cors_origins: vec!["https://dash.example".into()],
        ..ApiSettings::default()
    };
    let api = Api::start_with(&sandbox.url, settings).await;

    let preflight = common::send(
        api.addr,
        "OPTIONS",
        "/api/v1/underlyings",
        &[
            ("Origin", "https://dash.example"),
            ("Access-Control-Request-Method", "GET"),
            ("Access-Control-Request-Headers", "authorization"),
        ],
    )
    .await;
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    let allowed = preflight
        .header("access-control-allow-headers")
        .expect("allowed headers")
        .to_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    assert!(preflight
        .header("access-control-allow-methods")
        .is_some_and(|m| m.contains("GET")));

    // Errors carry the headers too, so the page can read a 401.
    let refused = api
        .get_with(CHAIN, &[("Origin", "https://dash.example")])
        .await;
    assert_eq!(refused.status, 401);
    assert_eq!(
        refused.header("access-control-allow-origin"),
        Some("https://dash.example")
    );
    let exposed = refused
        .header("access-control-expose-headers")
        .expect("exposed headers")
        .to_lowercase();
    assert!(exposed.contains("x-request-id") && exposed.contains("retry-after"));
    // Another origin gets no grant.
    let other = api
        .get_with("/healthz", &[("Origin", "https://evil.example")])
        .await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    api.stop().await;

    // Without cors_origins, no CORS headers at all.
    let plain = Api::start(&sandbox.url).await;
    let reply = plain
        .get_with("/healthz", &[("Origin", "https://dash.example")])
        .await;
    assert_eq!(reply.header("access-control-allow-origin"), None);
    plain.stop().await;
    sandbox.finish().await;
}

/// Sends `path` with `headers` until a 429 (at most 20 times); the answers before it must
/// be `ok` and no more than `burst` plus what the rate refilled meanwhile.
async fn drain(api: &Api, path: &str, headers: &[(&str, &str)], burst: u64) -> common::Reply {
    let started = std::time::Instant::now();
    for accepted in 0..20 {
        let reply = api.get_with(path, headers).await;
        if reply.status == 429 {
            assert!(accepted >= burst, "{path}: limited after {accepted}");
            return reply;
        }
        assert!(reply.status < 500, "{path}: {}", reply.body);
        assert!(
            accepted < burst + started.elapsed().as_secs() + 1,
            "{path}: {accepted} accepted within {:?}",
            started.elapsed()
        );
    }
    panic!("{path}: never limited");
}

#[tokio::test]
async fn each_client_is_rate_limited_on_its_own() {
    let sandbox = Sandbox::with_fixture("guard_rate").await;
    let settings = ApiSettings {
        requests_per_sec: 1,
        requests_burst: 3,
        ..ApiSettings::default()
    };
    let api = Api::start_with(&sandbox.url, settings).await;
    let mine = bearer(&api.token);

    // A subject: its burst, then 429 with Retry-After, REST or UDF.
    let limited = drain(&api, "/api/v1/indicators", &[("Authorization", &mine)], 3).await;
    let e = limited.error(429, "rate_limited");
    assert!(e["message"].as_str().expect("message").contains("retry"));
    assert_eq!(limited.header("retry-after"), Some("1"));
    let udf = drain(&api, "/udf/config", &[("Authorization", &mine)], 0).await;
    assert_eq!(udf.json()["s"], "error");
    assert_eq!(udf.json()["error"]["code"], "rate_limited");

    // Another subject has its own bucket, and so has this address without a token.
    let other = token_for("other", &[DEFAULT_AUDIENCE], &[DEFAULT_SCOPE]);
    api.get_with("/api/v1/indicators", &[("Authorization", &bearer(&other))])
        .await
        .ok();
    let anonymous = drain(&api, "/api/v1/openapi.json", &[], 3).await;
    anonymous.error(429, "rate_limited");
    // Probes are never limited.
    for _ in 0..10 {
        assert_eq!(api.get_with("/healthz", &[]).await.status, 200);
    }
    // The bucket refills at the rate.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    api.get("/api/v1/indicators").await.ok();

    api.stop().await;
    sandbox.finish().await;
}
