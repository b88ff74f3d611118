//! `/healthz` and `/readyz` over the real server (`./dev up`), with each dependency taken
//! away in turn.

mod common;

use std::time::Duration;

use common::tokens::{claims, hs256};
use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_reports_each_dependency_and_only_kafka_makes_push_unready() {
    let topics = fresh_topics();
    let server = TestServer::start(config(&topics)).await;
    let (status, body) = http_get(server.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        body,
        json!({"status":"ok","kafka":"ok","postgres":"ok","redis":"ok"})
    );
    server.stop().await;

    // Redis down (nothing listens on port 1): degraded, still 200, and clients still get
    // in (revocation and the shared user count wait for Redis).
    let mut broken = config(&topics);
    broken.redis_url = "redis://127.0.0.1:1".to_owned();
    let server = TestServer::start(broken).await;
    let started = std::time::Instant::now();
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["kafka"], "ok");
    assert_eq!(body["postgres"], "ok");
    assert!(body["redis"].as_str().is_some_and(|e| e != "ok"), "{body}");
    let mut ws = connect(&server, &hs256(&claims("probe", &["bars.*"]))).await;
    send_json(&mut ws, json!({"op":"ping"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type":"pong"}));
    server.stop().await;

    // PostgreSQL, which push does not use: degraded too.
    let mut broken = config(&topics);
    broken.database_url = "postgres://strikeflow@127.0.0.1:1/strikeflow".to_owned();
    let server = TestServer::start(broken).await;
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["status"], "degraded", "{body}");
    assert!(
        body["postgres"].as_str().is_some_and(|e| e != "ok"),
        "{body}"
    );
    server.stop().await;

    // Kafka down: unready, 503, and the report says why.
    let mut broken = config(&topics);
    broken.kafka.brokers = strikeflow_kafka::Brokers::plaintext("127.0.0.1:1");
    let server = TestServer::start(broken).await;
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["status"], "unready", "{body}");
    assert!(body["kafka"].as_str().is_some_and(|e| e != "ok"), "{body}");
    assert_eq!(body["redis"], "ok");
    // A second probe at once gets the same answer.
    let (status_again, body_again) = http_get(server.addr, "/readyz").await;
    assert_eq!(status_again, 503);
    assert_eq!(
        serde_json::from_str::<Value>(&body_again).expect("json"),
        body
    );
    server.stop().await;
}
