//! Redis taken away from one push node mid-stream (a proxy between them is cut, the shared
//! Redis keeps serving the other tests): push keeps delivering live data, a client joining
//! meanwhile gets its snapshot from push's memory, `/healthz` answers at once, `/readyz`
//! says `degraded`, and all of it comes back when Redis does.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::proxy::Proxy;
use common::tokens::{claims, hs256};
use common::*;
use serde_json::json;

/// Where the shared Redis listens (`REDIS_URL`'s host and port).
fn redis_addr() -> SocketAddr {
    let url = redis_url();
    let host_port = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .expect("host:port")
        .rsplit('@')
        .next()
        .expect("host:port")
        .to_owned();
    host_port
        .parse()
        .expect("REDIS_URL names an IP address and port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_push_keeps_serving_and_snapshots_come_from_memory() {
    let topics = fresh_topics();
    create_topics(&topics).await;
    let proxy = Proxy::start(redis_addr()).await;
    let mut cfg = config(&topics);
    cfg.redis_url = format!("redis://{}", proxy.addr);
    let server = TestServer::start(cfg).await;
    let producer = producer();

    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());
    let channel = format!("bars.{symbol}");
    let token_id: i64 = 13_238_787;
    let token = || hs256(&claims("trader", &["bars.*"]));
    let mut watching = connect(&server, &token()).await;
    send_json(&mut watching, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut watching, &channel).await;
    let inst = strikeflow_schemas::encode(&instrument(token_id, &symbol)).expect("encode");
    produce(
        &producer,
        &topics.instruments(),
        &token_id.to_string(),
        &inst,
    )
    .await;
    let (_, _, mut last) =
        produce_bars_until_received(&producer, &topics, &mut watching, token_id, &channel).await;
    let (status, body) = http_get(server.addr, "/readyz").await;
    assert_eq!(status, 200, "{body}");

    // Redis goes away.
    proxy.cut();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = http_get(server.addr, "/readyz").await;
        if status == 200 && body.contains("degraded") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz did not report degraded: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let started = std::time::Instant::now();
    let (status, _) = http_get(server.addr, "/healthz").await;
    eprintln!("/healthz without Redis answered in {:?}", started.elapsed());
    assert_eq!(status, 200);

    // Live data keeps flowing to the connected client, in order.
    for _ in 0..5 {
        last += 1;
        let bytes = strikeflow_schemas::encode(&bar(token_id, last)).expect("encode bar");
        produce(&producer, &topics.bars(), &token_id.to_string(), &bytes).await;
    }
    let latest = loop {
        let msg = next_json(&mut watching).await;
        assert_eq!(msg["type"], "bar", "{msg}");
        let index = (msg["data"]["close"].as_f64().expect("close") - 26_000.0) as i64;
        if index == last {
            break msg;
        }
    };

    // A client joining now (its token's revocation check cannot reach Redis) gets the
    // latest bar from push's memory at once.
    let mut joining = connect(&server, &token()).await;
    send_json(&mut joining, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut joining, &channel).await;
    assert_eq!(next_json(&mut joining).await, latest);

    // Redis comes back: push is `ok` again.
    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = http_get(server.addr, "/readyz").await;
        if status == 200 && !body.contains("degraded") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz did not recover: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop((watching, joining));
    server.stop().await;
}
