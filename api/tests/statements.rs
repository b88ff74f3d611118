//! "Each request issues at most one SQL query", counted on the wire: the API reaches
//! PostgreSQL through a proxy that reads the protocol and counts every `Execute` and simple
//! `Query` message (`common/proxy.rs`), whatever the handler, the pool or the driver send.

mod common;

use common::fixture::DAY2_OPEN;
use common::proxy::{self, Proxy};
use common::{enc, server_url, Api, Sandbox};

/// Every endpoint: a happy path (one statement), a bad parameter (none: refused before any
/// SQL), and the 404s (one: the statement itself says the symbol is unknown).
fn requests() -> Vec<(String, u16, u64)> {
    let from = "from=2026-12-02T00:00:00Z";
    let udf = |q: &str| format!("/udf/history?symbol=NIFTY26DECFUT&{q}");
    vec![
        ("/api/v1/underlyings".into(), 200, 1),
        ("/api/v1/underlyings?x=1".into(), 400, 0),
        ("/api/v1/expiries?underlying=NIFTY".into(), 200, 1),
        ("/api/v1/expiries?underlying=SENSEX".into(), 404, 1),
        ("/api/v1/expiries".into(), 400, 0),
        ("/api/v1/instruments?q=NIFTY&limit=2".into(), 200, 1),
        ("/api/v1/instruments?limit=0".into(), 400, 0),
        ("/api/v1/instruments/9001".into(), 200, 1),
        ("/api/v1/instruments/1".into(), 404, 1),
        ("/api/v1/instruments/x".into(), 400, 0),
        (
            "/api/v1/chain?underlying=NIFTY&expiry=2026-12-08".into(),
            200,
            1,
        ),
        (
            format!(
                "/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&at={}",
                enc("2026-12-02T10:00:00+05:30")
            ),
            200,
            1,
        ),
        (
            "/api/v1/chain?underlying=NIFTY&expiry=2026-12-15".into(),
            404,
            1,
        ),
        ("/api/v1/chain?underlying=NIFTY&expiry=soon".into(), 400, 0),
        (
            "/api/v1/chains?underlying=NIFTY&expiries=3&at=2026-11-20T05:30:00Z".into(),
            200,
            1,
        ),
        ("/api/v1/chains?underlying=NIFTY&expiries=99".into(), 400, 0),
        (
            format!("/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08&{from}&tf=5m"),
            200,
            1,
        ),
        (
            format!("/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08&{from}&limit=1"),
            400,
            1,
        ),
        (
            "/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08".into(),
            400,
            0,
        ),
        (
            format!("/api/v1/moneyness?underlying=NIFTY&expiry=2026-12-08&bucket=ATM&{from}"),
            200,
            1,
        ),
        (
            format!("/api/v1/moneyness?underlying=NIFTY&expiry=2026-12-08&bucket=X&{from}"),
            400,
            0,
        ),
        (
            format!("/api/v1/bars?symbol=NIFTY26DECFUT&tf=5m&{from}"),
            200,
            1,
        ),
        (
            format!("/api/v1/bars?symbol=NIFTY26DECFUT&tf=1d&{from}&limit=1"),
            200,
            1,
        ),
        (format!("/api/v1/bars?symbol=NOPE&tf=1m&{from}"), 404, 1),
        (
            format!("/api/v1/bars?symbol=NIFTY26DECFUT&tf=9m&{from}"),
            400,
            0,
        ),
        ("/api/v1/indicators".into(), 200, 0),
        (
            format!("/api/v1/indicators/ema?symbol=NIFTY26DECFUT&tf=1m&{from}"),
            200,
            1,
        ),
        (
            format!("/api/v1/indicators/ema?symbol=NIFTY26DECFUT&tf=1m&params=period%3D9&{from}"),
            200,
            1,
        ),
        (
            format!("/api/v1/indicators/nope?symbol=NIFTY26DECFUT&tf=1m&{from}"),
            404,
            0,
        ),
        (
            format!("/api/v1/indicators/rsi?symbol=NIFTY26DECFUT&tf=1m&params=period%3D1&{from}"),
            400,
            0,
        ),
        ("/api/v1/openapi.json".into(), 200, 0),
        ("/udf/config".into(), 200, 0),
        ("/udf/time".into(), 200, 0),
        ("/udf/symbols?symbol=NIFTY26DECFUT".into(), 200, 1),
        ("/udf/symbols?symbol=NOPE".into(), 404, 1),
        ("/udf/search?query=NIFTY&type=option".into(), 200, 1),
        ("/udf/search?query=NIFTY&type=bond".into(), 400, 0),
        (
            udf(&format!(
                "resolution=5&from={DAY2_OPEN}&to={}",
                DAY2_OPEN + 600
            )),
            200,
            1,
        ),
        (
            udf(&format!(
                "resolution=1&from={}&to={}",
                DAY2_OPEN + 3600,
                DAY2_OPEN + 7200
            )),
            200,
            1,
        ),
        (
            udf(&format!(
                "resolution=D&to={}&countback=2",
                DAY2_OPEN + 86_400
            )),
            200,
            1,
        ),
        (
            udf(&format!(
                "resolution=7&from={DAY2_OPEN}&to={}",
                DAY2_OPEN + 600
            )),
            400,
            0,
        ),
        ("/healthz".into(), 200, 0),
        ("/readyz".into(), 200, 1),
        ("/nowhere".into(), 404, 0),
    ]
}

#[tokio::test]
async fn every_request_sends_at_most_one_statement() {
    let sandbox = Sandbox::with_fixture("statements").await;
    let proxy = Proxy::start(proxy::upstream(&server_url()).await).await;
    let api = Api::start(&proxy.url(&server_url(), &sandbox.name)).await;

    for (path, status, expected) in requests() {
        let (statements, parses) = (proxy.statements(), proxy.parses());
        let reply = api.get(&path).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.body);
        let sent = proxy.statements() - statements;
        assert_eq!(sent, expected, "{path}: {sent} statements");
        // One round trip: the statement is parsed, bound and executed together, never
        // prepared separately first.
        assert_eq!(proxy.parses() - parses, expected, "{path}: parses");
    }

    api.stop().await;
    sandbox.finish().await;
}

/// The counter can fail: two statements on one connection through the proxy count two.
#[tokio::test]
async fn the_proxy_counts_every_statement() {
    let sandbox = Sandbox::new("proxycount").await;
    let proxy = Proxy::start(proxy::upstream(&server_url()).await).await;
    let client = common::connect(&proxy.url(&server_url(), &sandbox.name)).await;
    assert_eq!(proxy.statements(), 0, "connecting sends no statement");
    client.query_one("SELECT 1", &[]).await.expect("one");
    assert_eq!(proxy.statements(), 1);
    client
        .query_typed(
            "SELECT $1::int4 + 1",
            &[(&41_i32, tokio_postgres::types::Type::INT4)],
        )
        .await
        .expect("two");
    client.simple_query("SELECT 3").await.expect("three");
    assert_eq!(proxy.statements(), 3);
    drop(client);
    sandbox.finish().await;
}
