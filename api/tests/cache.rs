//! The Redis cache of hot answers, against the PostgreSQL and Redis of `./dev up`: a cached
//! answer costs no SQL statement (counted on the wire by the proxy), is never served past
//! `api.cache_ttl_ms`, and a Redis that is down or hangs only makes answers uncached.

mod common;

use std::time::{Duration, Instant};

use common::fixture::DAY2_OPEN;
use common::proxy::{self, Proxy};
use common::{config, server_url, Api, Reply, Sandbox};
use strikeflow_api::ApiSettings;

const CHAIN: &str = "/api/v1/chain?underlying=NIFTY&expiry=2026-12-08";
const CHAINS: &str = "/api/v1/chains?underlying=NIFTY&expiries=3&at=2026-12-02T05:00:00Z";

fn history(to: i64) -> String {
    format!("/udf/history?symbol=NIFTY26DECFUT&resolution=1&from={DAY2_OPEN}&to={to}")
}

fn settings(ttl_ms: u64) -> ApiSettings {
    ApiSettings {
        cache_ttl_ms: ttl_ms,
        ..ApiSettings::default()
    }
}

/// Asks `path` and returns the answer, how it met the cache and the statements it sent.
async fn ask(api: &Api, proxy: &Proxy, path: &str) -> (Reply, String, u64) {
    let before = proxy.statements();
    let reply = api.get(path).await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    let how = reply.header("x-cache").unwrap_or("none").to_owned();
    (reply, how, proxy.statements() - before)
}

#[tokio::test]
async fn a_cached_answer_costs_no_statement_and_expires() {
    let sandbox = Sandbox::with_fixture("cache_hits").await;
    let proxy = Proxy::start(proxy::upstream(&server_url()).await).await;
    let ttl = Duration::from_millis(1_500);
    let api = Api::start_with(&proxy.url(&server_url(), &sandbox.name), settings(1_500)).await;

    let to = DAY2_OPEN + 3_600;
    for path in [CHAIN.to_owned(), CHAINS.to_owned(), history(to)] {
        let started = Instant::now();
        let (first, how, sent) = ask(&api, &proxy, &path).await;
        assert_eq!((how.as_str(), sent), ("miss", 1), "{path}");
        let (second, how, sent) = ask(&api, &proxy, &path).await;
        if started.elapsed() < ttl {
            assert_eq!((how.as_str(), sent), ("hit", 0), "{path}");
            assert_eq!(second.body, first.body, "{path}: the same answer");
            assert!(second.content_type.starts_with("application/json"));
        }
    }
    // Keys are the canonical parameters: the same chain asked differently is the same entry.
    let (_, how, sent) = ask(
        &api,
        &proxy,
        "/api/v1/chain?expiry=2026-12-08&underlying=nifty",
    )
    .await;
    assert_eq!((how.as_str(), sent), ("hit", 0));
    // Different parameters are different answers.
    let (_, how, sent) = ask(&api, &proxy, &history(to - 60)).await;
    assert_eq!((how.as_str(), sent), ("miss", 1));
    // Errors are not cached.
    for _ in 0..2 {
        let before = proxy.statements();
        api.get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-15")
            .await
            .error(404, "unknown_chain");
        assert_eq!(proxy.statements() - before, 1);
    }

    // Newer data is seen once the entry expires, never later.
    let path = history(DAY2_OPEN + 86_400);
    let (old, _, _) = ask(&api, &proxy, &path).await;
    let stored = Instant::now();
    sandbox
        .db
        .batch_execute(
            "INSERT INTO bars_1m (instrument_token, window_start, window_end, open, high, low,
                                  close, volume, oi, tick_count)
             VALUES (9001, timestamptz '2026-12-02 05:00:00+00', timestamptz '2026-12-02 05:01:00+00',
                     1, 2, 0.5, 1.5, 10, 20, 3)",
        )
        .await
        .expect("a newer bar");
    let count = |reply: &Reply| reply.json()["t"].as_array().map_or(0, Vec::len);
    loop {
        let (now, how, _) = ask(&api, &proxy, &path).await;
        if count(&now) == count(&old) + 1 {
            assert_ne!(how, "hit", "a fresh answer comes from the database");
            break;
        }
        assert_eq!(how, "hit", "only a cached answer can be older");
        assert!(
            stored.elapsed() < ttl,
            "an answer older than cache_ttl_ms was served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn without_redis_answers_are_uncached_not_errors() {
    let sandbox = Sandbox::with_fixture("cache_down").await;
    let proxy = Proxy::start(proxy::upstream(&server_url()).await).await;
    let database = proxy.url(&server_url(), &sandbox.name);

    // A port nothing listens on: Redis is down.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("addr").port()
    };
    let mut down = config(&database, settings(1_000));
    down.redis_url = format!("redis://127.0.0.1:{closed}");
    let api = Api::start_config(down).await;
    for _ in 0..3 {
        for path in [CHAIN.to_owned(), history(DAY2_OPEN + 600)] {
            let (_, how, sent) = ask(&api, &proxy, &path).await;
            assert_eq!((how.as_str(), sent), ("bypass", 1), "{path}");
        }
    }
    api.stop().await;

    // A Redis that accepts connections and never answers: each answer still comes, from
    // the database, within the cache's time limits.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a port");
    let hung_addr = hung.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            held.push(socket);
        }
    });
    let mut hanging = config(&database, settings(1_000));
    hanging.redis_url = format!("redis://{hung_addr}");
    let api = Api::start_config(hanging).await;
    for _ in 0..3 {
        let started = Instant::now();
        let (_, how, sent) = ask(&api, &proxy, CHAIN).await;
        assert_eq!((how.as_str(), sent), ("bypass", 1));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
    api.stop().await;
    holder.abort();

    // And with the cache off, Redis is not consulted.
    let api = Api::start_with(&database, settings(0)).await;
    let (_, how, sent) = ask(&api, &proxy, CHAIN).await;
    assert_eq!((how.as_str(), sent), ("bypass", 1));
    api.stop().await;
    sandbox.finish().await;
}
