//! `/api/v1` against a private database holding the rows of `common/fixture.rs`: every
//! endpoint's answer field by field, its paging, and its bad inputs (400 naming the
//! parameter, 404 for what is not stored, never a 500).

mod common;

use chrono::{FixedOffset, NaiveDate, Utc};
use common::fixture::{day1_bar, day2_bar, rollup, Bar, T1};
use common::{enc, Api, Sandbox};
use serde_json::{json, Value};

/// `at` = 2026-12-02 10:00 IST, percent-encoded.
fn at_t1() -> String {
    enc("2026-12-02T10:00:00+05:30")
}

/// Whether `expiry` is before today in IST (what `expired` says).
fn expired(expiry: &str) -> bool {
    let ist = FixedOffset::east_opt(19_800).expect("IST");
    let today = Utc::now().with_timezone(&ist).date_naive();
    NaiveDate::parse_from_str(expiry, "%Y-%m-%d").expect("date") < today
}

fn symbols(items: &Value, field: &str) -> Vec<String> {
    items
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| i[field].as_str().expect("a string").to_owned())
        .collect()
}

#[tokio::test]
async fn underlyings_and_expiries() {
    let sandbox = Sandbox::with_fixture("underlyings").await;
    let api = Api::start(&sandbox.url).await;

    let body = api.get("/api/v1/underlyings").await.ok();
    assert_eq!(
        body,
        json!({"underlyings": [
            {"name": "BANKNIFTY", "spot_symbol": "NIFTY BANK", "spot_token": 260105,
             "futures": 1, "options": 0, "expiries": 1,
             "first_expiry": "2026-12-29", "last_expiry": "2026-12-29"},
            {"name": "NIFTY", "spot_symbol": "NIFTY 50", "spot_token": 256265,
             "futures": 1, "options": 9, "expiries": 3,
             "first_expiry": "2026-11-24", "last_expiry": "2026-12-29"},
        ]})
    );

    let body = api.get("/api/v1/expiries?underlying=nifty").await.ok();
    assert_eq!(
        body,
        json!({"underlying": "NIFTY", "expiries": [
            {"expiry": "2026-11-24", "expired": expired("2026-11-24"), "futures": 0, "options": 1,
             "strikes": 1, "min_strike": 24500.0, "max_strike": 24500.0, "lot_size": 75},
            {"expiry": "2026-12-08", "expired": expired("2026-12-08"), "futures": 0, "options": 6,
             "strikes": 3, "min_strike": 24500.0, "max_strike": 24700.0, "lot_size": 65},
            {"expiry": "2026-12-29", "expired": expired("2026-12-29"), "futures": 1, "options": 2,
             "strikes": 1, "min_strike": 24600.0, "max_strike": 24600.0, "lot_size": 65},
        ]})
    );
    // BANKNIFTY lists only a future.
    let body = api.get("/api/v1/expiries?underlying=BANKNIFTY").await.ok();
    assert_eq!(body["expiries"].as_array().map(Vec::len), Some(1));

    api.get("/api/v1/expiries").await.bad("underlying");
    api.get("/api/v1/expiries?underlying=NI%3BFTY")
        .await
        .bad("underlying");
    let e = api
        .get("/api/v1/expiries?underlying=SENSEX")
        .await
        .error(404, "unknown_underlying");
    assert_eq!(e["parameter"], "underlying");
    api.get("/api/v1/underlyings?x=1").await.bad("x");

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn instrument_search_pages_and_lookup() {
    let sandbox = Sandbox::with_fixture("instruments").await;
    let api = Api::start(&sandbox.url).await;

    let weekly = api.get("/api/v1/instruments?q=nifty26d0").await.ok();
    assert_eq!(
        symbols(&weekly["instruments"], "tradingsymbol"),
        [
            "NIFTY26D0824500CE",
            "NIFTY26D0824500PE",
            "NIFTY26D0824600CE",
            "NIFTY26D0824600PE",
            "NIFTY26D0824700CE",
            "NIFTY26D0824700PE"
        ]
    );
    assert_eq!(weekly["next_cursor"], Value::Null);
    assert_eq!(
        weekly["instruments"][0],
        json!({"instrument_token": 9101, "exchange_token": 41,
               "tradingsymbol": "NIFTY26D0824500CE", "name": "NIFTY", "last_price": 150.0,
               "expiry": "2026-12-08", "strike": 24500.0, "tick_size": 0.05, "lot_size": 65,
               "instrument_type": "CE", "segment": "NFO-OPT", "exchange": "NFO",
               "updated_at": "2026-12-01T12:00:00Z"})
    );

    // Paged: the pages add up to the whole list, in order.
    let first = api
        .get("/api/v1/instruments?q=NIFTY26D0&limit=4")
        .await
        .ok();
    assert_eq!(first["instruments"].as_array().map(Vec::len), Some(4));
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = api
        .get(&format!(
            "/api/v1/instruments?q=NIFTY26D0&limit=4&cursor={}",
            enc(&cursor)
        ))
        .await
        .ok();
    assert_eq!(second["next_cursor"], Value::Null);
    let mut paged = symbols(&first["instruments"], "tradingsymbol");
    paged.extend(symbols(&second["instruments"], "tradingsymbol"));
    assert_eq!(paged, symbols(&weekly["instruments"], "tradingsymbol"));

    let futures = api.get("/api/v1/instruments?type=fut").await.ok();
    assert_eq!(
        symbols(&futures["instruments"], "tradingsymbol"),
        ["BANKNIFTY26DECFUT", "NIFTY26DECFUT"]
    );
    let by_strike = api
        .get("/api/v1/instruments?strike=24600&type=CE")
        .await
        .ok();
    assert_eq!(
        symbols(&by_strike["instruments"], "tradingsymbol"),
        ["NIFTY26D0824600CE", "NIFTY26DEC24600CE"]
    );
    let monthly = api
        .get("/api/v1/instruments?expiry=2026-12-29&underlying=NIFTY")
        .await
        .ok();
    assert_eq!(
        symbols(&monthly["instruments"], "tradingsymbol"),
        ["NIFTY26DEC24600CE", "NIFTY26DEC24600PE", "NIFTY26DECFUT"]
    );
    let none = api.get("/api/v1/instruments?q=SENSEX").await.ok();
    assert_eq!(none, json!({"instruments": [], "next_cursor": null}));

    let one = api.get("/api/v1/instruments/9001").await.ok();
    assert_eq!(
        one,
        json!({"instrument_token": 9001, "exchange_token": 35, "tradingsymbol": "NIFTY26DECFUT",
               "name": "NIFTY", "last_price": 24600.0, "expiry": "2026-12-29", "strike": 0.0,
               "tick_size": 0.05, "lot_size": 65, "instrument_type": "FUT",
               "segment": "NFO-FUT", "exchange": "NFO", "updated_at": "2026-12-01T12:00:00Z"})
    );
    let index = api.get("/api/v1/instruments/256265").await.ok();
    assert_eq!(index["expiry"], Value::Null);
    let e = api
        .get("/api/v1/instruments/1")
        .await
        .error(404, "unknown_instrument");
    assert_eq!(e["parameter"], "token");
    api.get("/api/v1/instruments/NIFTY").await.bad("token");
    api.get("/api/v1/instruments/99999999999999999999")
        .await
        .bad("token");

    for (query, parameter) in [
        ("type=XX", "type"),
        ("expiry=2026-13-01", "expiry"),
        ("strike=-5", "strike"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=nonsense", "cursor"),
        ("cursor=zz.1", "cursor"),
        ("underlying=%27x", "underlying"),
        ("q=A&q=B", "q"),
        ("sort=asc", "sort"),
    ] {
        api.get(&format!("/api/v1/instruments?{query}"))
            .await
            .bad(parameter);
    }

    api.stop().await;
    sandbox.finish().await;
}

/// The quote of 24500 CE emitted at 04:29:40.
fn ce_24500_at_0429_40() -> Value {
    json!({"instrument_token": 9101, "tradingsymbol": "NIFTY26D0824500CE",
           "ts": "2026-12-02T04:29:40Z", "ltp": 152.0, "ltp_change_prev_close": 12.0,
           "oi": 104000, "oi_change_prev_close": 9000, "oi_change_window": 6000,
           "volume": 1200, "bid": 151.5, "ask": 152.5, "iv": 0.151, "no_iv_reason": null,
           "delta": 0.63, "gamma": 0.0004, "theta": -12.6, "vega": 10.3, "rho": 3.2,
           "build_up": "LONG_BUILDUP", "strike_pcr": 1.92, "gex": 1250.0})
}

fn pe_24500() -> Value {
    json!({"instrument_token": 9102, "tradingsymbol": "NIFTY26D0824500PE",
           "ts": "2026-12-02T04:29:30Z", "ltp": 60.0, "ltp_change_prev_close": -8.0,
           "oi": 200000, "oi_change_prev_close": 20000, "oi_change_window": 5000,
           "volume": 3000, "bid": 59.5, "ask": 60.5, "iv": 0.16, "no_iv_reason": null,
           "delta": -0.38, "gamma": 0.0004, "theta": -11.0, "vega": 10.0, "rho": -2.0,
           "build_up": "SHORT_BUILDUP", "strike_pcr": 1.92, "gex": -1500.0})
}

#[tokio::test]
async fn the_chain_newest_and_as_of_a_moment() {
    let sandbox = Sandbox::with_fixture("chain").await;
    let api = Api::start(&sandbox.url).await;

    let chain = api
        .get(&format!(
            "/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&at={}",
            at_t1()
        ))
        .await
        .ok();
    assert_eq!(chain["underlying"], "NIFTY");
    assert_eq!(chain["expiry"], "2026-12-08");
    assert_eq!(chain["at"], T1);
    assert_eq!(
        chain["summary"],
        json!({"ts": "2026-12-02T04:30:00Z", "time_to_expiry": 0.0165, "spot": 24550.5,
               "future": 24600.0, "parity_forward": 24580.0, "reference_price": 24580.0,
               "reference_kind": "PARITY_FORWARD", "atm_strike": 24600.0, "pcr_oi": 1.25,
               "pcr_volume": 0.9, "max_pain": 24500.0, "atm_straddle": 210.5,
               "implied_move_pct": 0.86, "atm_iv": 0.145, "skew_25d": 0.012,
               "support": 24500.0, "resistance": 24700.0, "basis": 49.5,
               "annualised_carry": 0.07, "net_gex": 1500000.0, "total_ce_oi": 300000,
               "total_pe_oi": 375000, "ce_oi_change_prev_close": 15000,
               "pe_oi_change_prev_close": null})
    );
    // As of 04:30:00: 24500 CE's 04:29:40 row (not 04:31's), 24600 PE not yet emitted
    // (04:30:05), 24700 not at all.
    assert_eq!(
        chain["strikes"],
        json!([
            {"strike": 24500.0, "ce": ce_24500_at_0429_40(), "pe": pe_24500()},
            {"strike": 24600.0, "ce": {
                "instrument_token": 9103, "tradingsymbol": "NIFTY26D0824600CE",
                "ts": "2026-12-02T04:30:00Z", "ltp": 100.0, "ltp_change_prev_close": 5.0,
                "oi": 150000, "oi_change_prev_close": null, "oi_change_window": null,
                "volume": 2500, "bid": 99.5, "ask": 100.5, "iv": 0.14, "no_iv_reason": null,
                "delta": 0.52, "gamma": 0.0005, "theta": -14.0, "vega": 11.0, "rho": 2.5,
                "build_up": "NEUTRAL", "strike_pcr": 1.1, "gex": 1800.0}, "pe": null},
        ])
    );

    // The newest stored state.
    let newest = api
        .get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-08")
        .await
        .ok();
    assert_eq!(newest["at"], Value::Null);
    assert_eq!(newest["summary"]["ts"], "2026-12-02T04:31:00Z");
    assert_eq!(newest["summary"]["pe_oi_change_prev_close"], 30000);
    let strikes = newest["strikes"].as_array().expect("strikes");
    assert_eq!(
        strikes
            .iter()
            .map(|s| s["strike"].clone())
            .collect::<Vec<_>>(),
        [json!(24500.0), json!(24600.0), json!(24700.0)]
    );
    assert_eq!(strikes[0]["ce"]["ts"], "2026-12-02T04:31:00Z");
    assert_eq!(strikes[0]["ce"]["ltp"], 155.0);
    assert_eq!(strikes[0]["pe"], pe_24500());
    let pe_24600 = &strikes[1]["pe"];
    assert_eq!(pe_24600["iv"], Value::Null);
    assert_eq!(pe_24600["no_iv_reason"], "NO_TWO_SIDED_MARKET");
    assert_eq!(pe_24600["delta"], Value::Null);
    assert_eq!(pe_24600["ltp_change_prev_close"], Value::Null);
    assert_eq!(pe_24600["oi_change_window"], -1000);
    assert_eq!(pe_24600["build_up"], "LONG_UNWINDING");
    assert_eq!(strikes[2]["ce"]["ltp"], 65.0);
    assert_eq!(
        strikes[2]["pe"],
        Value::Null,
        "24700 PE is listed but never emitted"
    );

    // Before the chain's first emission: known, but empty.
    let early = api
        .get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&at=2026-12-02T03:00:00Z")
        .await
        .ok();
    assert_eq!(early["summary"], Value::Null);
    assert_eq!(early["strikes"], json!([]));

    // Unix seconds are accepted for `at` too.
    let unix = api
        .get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&at=1796185800")
        .await
        .ok();
    assert_eq!(unix["strikes"], chain["strikes"]);

    let e = api
        .get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-15")
        .await
        .error(404, "unknown_chain");
    assert_eq!(e["parameter"], "expiry");
    api.get("/api/v1/chain?underlying=FINNIFTY&expiry=2026-12-08")
        .await
        .error(404, "unknown_chain");
    api.get("/api/v1/chain?expiry=2026-12-08")
        .await
        .bad("underlying");
    api.get("/api/v1/chain?underlying=NIFTY")
        .await
        .bad("expiry");
    api.get("/api/v1/chain?underlying=NIFTY&expiry=8-12-2026")
        .await
        .bad("expiry");
    api.get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&at=noon")
        .await
        .bad("at");
    api.get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&at=2026-12-02T10:00:00")
        .await
        .bad("at");
    api.get("/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&at=99999999999")
        .await
        .bad("at");

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn chains_of_the_nearest_expiries() {
    let sandbox = Sandbox::with_fixture("chains").await;
    let api = Api::start(&sandbox.url).await;

    let chains = api
        .get(&format!(
            "/api/v1/chains?underlying=NIFTY&expiries=2&at={}",
            at_t1()
        ))
        .await
        .ok();
    assert_eq!(chains["underlying"], "NIFTY");
    assert_eq!(chains["at"], T1);
    let list = chains["chains"].as_array().expect("chains");
    assert_eq!(
        list.iter().map(|c| c["expiry"].clone()).collect::<Vec<_>>(),
        [json!("2026-12-08"), json!("2026-12-29")]
    );
    // Each chain is what /chain gives for it.
    for chain in list {
        let one = api
            .get(&format!(
                "/api/v1/chain?underlying=NIFTY&expiry={}&at={}",
                chain["expiry"].as_str().expect("expiry"),
                at_t1()
            ))
            .await
            .ok();
        assert_eq!(chain["summary"], one["summary"]);
        assert_eq!(chain["strikes"], one["strikes"]);
    }
    assert_eq!(list[1]["summary"]["reference_kind"], "FUTURE");
    assert_eq!(list[1]["summary"]["parity_forward"], Value::Null);
    assert_eq!(list[1]["strikes"][0]["ce"]["ltp"], 300.0);
    assert_eq!(list[1]["strikes"][0]["pe"]["ltp"], 280.0);

    // On 20 November the 24 Nov weekly was live: three expiries, the later two empty then.
    let november = api
        .get("/api/v1/chains?underlying=NIFTY&at=2026-11-20T11:00:00%2B05:30")
        .await
        .ok();
    let list = november["chains"].as_array().expect("chains");
    assert_eq!(
        list.iter().map(|c| c["expiry"].clone()).collect::<Vec<_>>(),
        [
            json!("2026-11-24"),
            json!("2026-12-08"),
            json!("2026-12-29")
        ]
    );
    assert_eq!(list[0]["summary"]["reference_kind"], "SPOT");
    assert_eq!(
        list[0]["strikes"][0]["ce"]["tradingsymbol"],
        "NIFTY26N2424500CE"
    );
    assert_eq!(list[0]["strikes"][0]["pe"], Value::Null);
    assert_eq!(list[1]["summary"], Value::Null);
    assert_eq!(list[1]["strikes"], json!([]));

    // Without `at`: the expiries not expired today (IST), newest data.
    let today = api.get("/api/v1/chains?underlying=NIFTY").await.ok();
    let expected: Vec<Value> = ["2026-11-24", "2026-12-08", "2026-12-29"]
        .into_iter()
        .filter(|e| {
            let ist = FixedOffset::east_opt(19_800).expect("IST");
            NaiveDate::parse_from_str(e, "%Y-%m-%d").expect("date")
                >= Utc::now().with_timezone(&ist).date_naive()
        })
        .map(|e| json!(e))
        .collect();
    let got: Vec<Value> = today["chains"]
        .as_array()
        .expect("chains")
        .iter()
        .map(|c| c["expiry"].clone())
        .collect();
    assert_eq!(got, expected);

    // A known underlying with no options.
    let bank = api.get("/api/v1/chains?underlying=BANKNIFTY").await.ok();
    assert_eq!(bank["chains"], json!([]));
    api.get("/api/v1/chains?underlying=SENSEX")
        .await
        .error(404, "unknown_underlying");
    api.get("/api/v1/chains?underlying=NIFTY&expiries=0")
        .await
        .bad("expiries");
    api.get("/api/v1/chains?underlying=NIFTY&expiries=11")
        .await
        .bad("expiries");
    api.get("/api/v1/chains").await.bad("underlying");

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn strike_analysis_through_time() {
    let sandbox = Sandbox::with_fixture("strikes").await;
    let api = Api::start(&sandbox.url).await;
    let base = "/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08&from=2026-12-02T04:00:00Z&to=2026-12-02T05:00:00Z";

    let body = api.get(base).await.ok();
    assert_eq!(body["tf"], "1m");
    assert_eq!(body["next_from"], Value::Null);
    let points = body["points"].as_array().expect("points");
    let summary: Vec<(String, f64, String, String)> = points
        .iter()
        .map(|p| {
            (
                p["time"].as_str().expect("time").to_owned(),
                p["strike"].as_f64().expect("strike"),
                p["side"].as_str().expect("side").to_owned(),
                p["ts"].as_str().expect("ts").to_owned(),
            )
        })
        .collect();
    let row = |time: &str, strike: f64, side: &str, ts: &str| {
        (
            format!("2026-12-02T{time}:00Z"),
            strike,
            side.to_owned(),
            format!("2026-12-02T{ts}Z"),
        )
    };
    assert_eq!(
        summary,
        [
            row("04:29", 24500.0, "CE", "04:29:40"),
            row("04:29", 24500.0, "PE", "04:29:30"),
            row("04:30", 24600.0, "CE", "04:30:00"),
            row("04:30", 24600.0, "PE", "04:30:05"),
            row("04:31", 24500.0, "CE", "04:31:00"),
            row("04:31", 24700.0, "CE", "04:31:10"),
        ]
    );
    assert_eq!(
        points[0],
        json!({"time": "2026-12-02T04:29:00Z", "ts": "2026-12-02T04:29:40Z", "strike": 24500.0,
               "side": "CE", "instrument_token": 9101, "tradingsymbol": "NIFTY26D0824500CE",
               "ltp": 152.0, "oi": 104000, "oi_change_prev_close": 9000,
               "oi_change_window": 6000, "volume": 1200, "iv": 0.151,
               "build_up": "LONG_BUILDUP", "strike_pcr": 1.92})
    );
    assert_eq!(points[3]["iv"], Value::Null);
    assert_eq!(points[3]["build_up"], "LONG_UNWINDING");

    // Five-minute buckets (on the 09:15 IST grid: 04:25Z and 04:30Z).
    let five = api.get(&format!("{base}&tf=5m")).await.ok();
    let got: Vec<(String, String)> = five["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["time"].as_str().expect("time").to_owned(),
                p["tradingsymbol"].as_str().expect("symbol").to_owned(),
            )
        })
        .collect();
    let at = |t: &str, s: &str| (format!("2026-12-02T{t}:00Z"), s.to_owned());
    assert_eq!(
        got,
        [
            at("04:25", "NIFTY26D0824500CE"),
            at("04:25", "NIFTY26D0824500PE"),
            at("04:30", "NIFTY26D0824500CE"),
            at("04:30", "NIFTY26D0824600CE"),
            at("04:30", "NIFTY26D0824600PE"),
            at("04:30", "NIFTY26D0824700CE"),
        ]
    );
    assert_eq!(five["points"][0]["ts"], "2026-12-02T04:29:40Z");
    assert_eq!(five["points"][2]["ts"], "2026-12-02T04:31:00Z");

    let one_strike = api.get(&format!("{base}&strike=24500")).await.ok();
    assert_eq!(one_strike["points"].as_array().map(Vec::len), Some(3));

    // Pages never split a bucket.
    let page = api.get(&format!("{base}&limit=3")).await.ok();
    assert_eq!(page["points"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_from"], "2026-12-02T04:30:00Z");
    let rest = api
        .get("/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08&from=2026-12-02T04:30:00Z&to=2026-12-02T05:00:00Z&limit=3")
        .await
        .ok();
    assert_eq!(rest["points"].as_array().map(Vec::len), Some(2));
    assert_eq!(rest["next_from"], "2026-12-02T04:31:00Z");
    api.get(&format!("{base}&limit=1")).await.bad("limit");

    // `to` is exclusive: nothing at 04:29:40 or later when to = 04:29:40.
    let early = api
        .get("/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08&from=2026-12-02T04:00:00Z&to=2026-12-02T04:29:40Z")
        .await
        .ok();
    assert_eq!(early["points"].as_array().map(Vec::len), Some(2));
    assert_eq!(early["points"][0]["ts"], "2026-12-02T04:29:00Z");

    api.get("/api/v1/strikes?underlying=NIFTY&expiry=2026-12-15&from=2026-12-02T04:00:00Z")
        .await
        .error(404, "unknown_chain");
    api.get("/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08")
        .await
        .bad("from");
    api.get(&format!("{base}&tf=2m")).await.bad("tf");
    api.get(&format!("{base}&strike=abc")).await.bad("strike");
    api.get("/api/v1/strikes?underlying=NIFTY&expiry=2026-12-08&from=2026-12-02T05:00:00Z&to=2026-12-02T04:00:00Z")
        .await
        .bad("to");

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn moneyness_series() {
    let sandbox = Sandbox::with_fixture("moneyness").await;
    let api = Api::start(&sandbox.url).await;
    let base = "/api/v1/moneyness?underlying=NIFTY&expiry=2026-12-08&from=2026-12-02T04:00:00Z";

    let atm = api.get(&format!("{base}&bucket=atm")).await.ok();
    assert_eq!(atm["bucket"], "ATM");
    assert_eq!(
        atm["points"],
        json!([
            {"minute": "2026-12-02T04:30:00Z", "side": "CE", "level": 0, "strike": 24600.0,
             "instrument_token": 9103, "ltp": 100.0, "iv": 0.14, "delta": 0.52, "oi": 150000,
             "volume": 2500},
            {"minute": "2026-12-02T04:30:00Z", "side": "PE", "level": 0, "strike": 24600.0,
             "instrument_token": 9104, "ltp": 110.0, "iv": null, "delta": null, "oi": 165000,
             "volume": 2700},
            {"minute": "2026-12-02T04:31:00Z", "side": "CE", "level": 0, "strike": 24600.0,
             "instrument_token": 9103, "ltp": 101.0, "iv": 0.141, "delta": 0.53, "oi": 151000,
             "volume": 2600},
            {"minute": "2026-12-02T04:31:00Z", "side": "PE", "level": 0, "strike": 24600.0,
             "instrument_token": 9104, "ltp": 109.0, "iv": 0.15, "delta": -0.47, "oi": 166000,
             "volume": 2800},
        ])
    );
    assert_eq!(atm["next_from"], Value::Null);

    let calls = api.get(&format!("{base}&bucket=ATM&side=ce")).await.ok();
    assert_eq!(
        calls["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["ltp"].clone())
            .collect::<Vec<_>>(),
        [json!(100.0), json!(101.0)]
    );
    let otm = api.get(&format!("{base}&bucket=OTM1")).await.ok();
    let otm = otm["points"].as_array().expect("points");
    assert_eq!(otm.len(), 2);
    assert_eq!(
        (otm[0]["strike"].clone(), otm[0]["level"].clone()),
        (json!(24700.0), json!(1))
    );
    assert_eq!(
        (otm[1]["strike"].clone(), otm[1]["level"].clone()),
        (json!(24500.0), json!(-1))
    );

    let page = api.get(&format!("{base}&bucket=ATM&limit=3")).await.ok();
    assert_eq!(page["points"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_from"], "2026-12-02T04:31:00Z");
    let later = api
        .get(&format!("{base}&bucket=ATM&to=2026-12-02T04:31:00Z"))
        .await
        .ok();
    assert_eq!(later["points"].as_array().map(Vec::len), Some(2));
    let empty = api.get(&format!("{base}&bucket=ITM3")).await.ok();
    assert_eq!(empty["points"], json!([]));

    api.get(&format!("{base}&bucket=NEAR")).await.bad("bucket");
    api.get(base).await.bad("bucket");
    api.get(&format!("{base}&bucket=ATM&side=XX"))
        .await
        .bad("side");
    api.get("/api/v1/moneyness?underlying=NIFTY&expiry=2026-12-08&bucket=ATM")
        .await
        .bad("from");
    api.get(
        "/api/v1/moneyness?underlying=NIFTY&expiry=2027-01-05&bucket=ATM&from=2026-12-02T04:00:00Z",
    )
    .await
    .error(404, "unknown_chain");

    api.stop().await;
    sandbox.finish().await;
}

fn bar_json(b: Bar, width: i64) -> Value {
    let t = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .expect("instant")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    json!({"window_start": t(b.0), "window_end": t(b.0 + width), "open": b.1, "high": b.2,
           "low": b.3, "close": b.4, "volume": b.5, "oi": b.6, "tick_count": b.7})
}

#[tokio::test]
async fn bars_of_every_timeframe() {
    let sandbox = Sandbox::with_fixture("bars").await;
    let api = Api::start(&sandbox.url).await;
    let day1: Vec<_> = (0..3).map(day1_bar).collect();
    let day2: Vec<_> = (0..10).map(day2_bar).collect();

    let one = api
        .get("/api/v1/bars?symbol=nifty26decfut&tf=1m&from=2026-12-01T00:00:00Z")
        .await
        .ok();
    assert_eq!(one["symbol"], "NIFTY26DECFUT");
    assert_eq!(one["tf"], "1m");
    let expected: Vec<Value> = day1.iter().chain(&day2).map(|b| bar_json(*b, 60)).collect();
    assert_eq!(one["bars"], json!(expected));
    assert_eq!(one["next_from"], Value::Null);

    let five = api
        .get("/api/v1/bars?symbol=NIFTY26DECFUT&tf=5m&from=2026-12-01T00:00:00Z")
        .await
        .ok();
    assert_eq!(
        five["bars"],
        json!([
            bar_json(rollup(day1[0].0, &day1), 300),
            bar_json(rollup(day2[0].0, &day2[0..5]), 300),
            bar_json(rollup(day2[5].0, &day2[5..10]), 300),
        ])
    );
    let three = api
        .get("/api/v1/bars?symbol=NIFTY26DECFUT&tf=3m&from=2026-12-02T00:00:00Z")
        .await
        .ok();
    assert_eq!(
        three["bars"],
        json!([
            bar_json(rollup(day2[0].0, &day2[0..3]), 180),
            bar_json(rollup(day2[3].0, &day2[3..6]), 180),
            bar_json(rollup(day2[6].0, &day2[6..9]), 180),
            bar_json(rollup(day2[9].0, &day2[9..10]), 180),
        ])
    );
    for (tf, width) in [("15m", 900), ("1h", 3600), ("1d", 86_400)] {
        let body = api
            .get(&format!(
                "/api/v1/bars?symbol=NIFTY26DECFUT&tf={tf}&from=2026-12-01T00:00:00Z"
            ))
            .await
            .ok();
        assert_eq!(
            body["bars"],
            json!([
                bar_json(rollup(day1[0].0, &day1), width),
                bar_json(rollup(day2[0].0, &day2), width),
            ]),
            "{tf}"
        );
    }

    // [from, to), paged.
    let window = api
        .get("/api/v1/bars?symbol=NIFTY26DECFUT&tf=1m&from=2026-12-02T03:47:00Z&to=2026-12-02T03:50:00Z")
        .await
        .ok();
    let expected: Vec<Value> = day2[2..5].iter().map(|b| bar_json(*b, 60)).collect();
    assert_eq!(window["bars"], json!(expected));
    let page = api
        .get("/api/v1/bars?symbol=NIFTY26DECFUT&tf=1m&from=2026-12-01T00:00:00Z&limit=4")
        .await
        .ok();
    assert_eq!(page["bars"].as_array().map(Vec::len), Some(4));
    assert_eq!(page["next_from"], "2026-12-02T03:46:00Z");

    let index = api
        .get(&format!(
            "/api/v1/bars?symbol={}&tf=1m&from=2026-12-02T00:00:00Z",
            enc("NIFTY 50")
        ))
        .await
        .ok();
    assert_eq!(index["bars"][0]["close"], 24555.0);
    let none = api
        .get("/api/v1/bars?symbol=NIFTY26D0824500CE&tf=1m&from=2026-12-02T00:00:00Z")
        .await
        .ok();
    assert_eq!(none["bars"], json!([]));

    let e = api
        .get("/api/v1/bars?symbol=NIFTY26JANFUT&tf=1m&from=2026-12-02T00:00:00Z")
        .await
        .error(404, "unknown_symbol");
    assert_eq!(e["parameter"], "symbol");
    api.get("/api/v1/bars?tf=1m&from=2026-12-02T00:00:00Z")
        .await
        .bad("symbol");
    api.get("/api/v1/bars?symbol=NIFTY26DECFUT&from=2026-12-02T00:00:00Z")
        .await
        .bad("tf");
    api.get("/api/v1/bars?symbol=NIFTY26DECFUT&tf=2h&from=2026-12-02T00:00:00Z")
        .await
        .bad("tf");
    api.get("/api/v1/bars?symbol=NIFTY26DECFUT&tf=1m")
        .await
        .bad("from");
    api.get("/api/v1/bars?symbol=NIFTY26DECFUT&tf=1m&from=2026-12-02T00:00:00Z&limit=10001")
        .await
        .bad("limit");
    api.get(
        "/api/v1/bars?symbol=NIFTY26DECFUT&tf=1m&from=2026-12-02T00:00:00Z&to=2026-12-02T00:00:00Z",
    )
    .await
    .bad("to");
    api.get(&format!(
        "/api/v1/bars?symbol={}&tf=1m&from=2026-12-02T00:00:00Z",
        "X".repeat(65)
    ))
    .await
    .bad("symbol");

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn the_indicator_registry_and_stored_values() {
    let sandbox = Sandbox::with_fixture("indicators").await;
    let api = Api::start(&sandbox.url).await;

    let registry = api.get("/api/v1/indicators").await.ok();
    let names = symbols(&registry["indicators"], "name");
    assert_eq!(
        names,
        [
            "sma",
            "ema",
            "wma",
            "rsi",
            "macd",
            "bbands",
            "atr",
            "supertrend",
            "vwap",
            "adx",
            "stoch",
            "obv"
        ]
    );
    let rsi = &registry["indicators"][3];
    assert_eq!(rsi["title"], "Relative strength index");
    assert_eq!(rsi["inputs"], json!(["close"]));
    assert_eq!(rsi["outputs"], json!(["value"]));
    assert_eq!(rsi["params"][0]["name"], "period");
    assert_eq!(rsi["params"][0]["kind"], "integer");
    assert_eq!(rsi["params"][0]["default"], 14.0);
    assert_eq!(rsi["params"][0]["min"], 2.0);
    assert_eq!(
        registry["indicators"][4]["outputs"],
        json!(["macd", "signal", "hist"])
    );
    assert_eq!(
        registry["timeframes"],
        json!(["1m", "3m", "5m", "15m", "1h", "1d"])
    );

    let base = "symbol=NIFTY26DECFUT&from=2026-12-02T00:00:00Z";
    let values = api
        .get(&format!("/api/v1/indicators/rsi?tf=1m&{base}"))
        .await
        .ok();
    assert_eq!(values["indicator"], "rsi");
    assert_eq!(values["symbol"], "NIFTY26DECFUT");
    assert_eq!(values["tf"], "1m");
    let expected: Vec<Value> = (0..5)
        .map(|i| {
            json!({"window_start": format!("2026-12-02T03:5{i}:00Z"), "params": "",
                   "outputs": {"value": 50.5 + f64::from(i)}})
        })
        .collect();
    assert_eq!(values["values"], json!(expected));
    assert_eq!(values["next_from"], Value::Null);
    // The defaults, named: stored as "" and found.
    let named = api
        .get(&format!(
            "/api/v1/indicators/RSI?tf=1m&params=period%3D14&{base}"
        ))
        .await
        .ok();
    assert_eq!(named["values"], values["values"]);
    let other = api
        .get(&format!(
            "/api/v1/indicators/rsi?tf=1m&params=period%3D21&{base}"
        ))
        .await
        .ok();
    assert_eq!(other["values"], json!([]));

    // EMA runs with two periods: both, in time then params order, or one.
    let ema = api
        .get(&format!("/api/v1/indicators/ema?tf=1m&{base}"))
        .await
        .ok();
    let ema = ema["values"].as_array().expect("values");
    assert_eq!(ema.len(), 10);
    assert_eq!(
        (ema[0]["params"].clone(), ema[0]["outputs"]["value"].clone()),
        (json!("period=20"), json!(24600.75))
    );
    assert_eq!(
        (ema[1]["params"].clone(), ema[1]["outputs"]["value"].clone()),
        (json!("period=9"), json!(24605.25))
    );
    let nine = api
        .get(&format!(
            "/api/v1/indicators/ema?tf=1m&params=period%3D9&{base}"
        ))
        .await
        .ok();
    let nine = nine["values"].as_array().expect("values");
    assert_eq!(nine.len(), 5);
    assert!(nine.iter().all(|v| v["params"] == "period=9"));
    let page = api
        .get(&format!("/api/v1/indicators/ema?tf=1m&limit=3&{base}"))
        .await
        .ok();
    assert_eq!(page["values"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["next_from"], "2026-12-02T03:51:00Z");

    let macd = api
        .get(&format!("/api/v1/indicators/macd?tf=5m&{base}"))
        .await
        .ok();
    assert_eq!(
        macd["values"],
        json!([{"window_start": "2026-12-02T03:50:00Z", "params": "",
                "outputs": {"macd": 1.5, "signal": 1.25, "hist": 0.25}}])
    );
    let on_1m = api
        .get(&format!("/api/v1/indicators/macd?tf=1m&{base}"))
        .await
        .ok();
    assert_eq!(on_1m["values"], json!([]));

    let e = api
        .get(&format!("/api/v1/indicators/rsx?tf=1m&{base}"))
        .await
        .error(404, "unknown_indicator");
    assert_eq!(e["parameter"], "name");
    api.get("/api/v1/indicators/rsi?tf=1m&symbol=NOPE&from=2026-12-02T00:00:00Z")
        .await
        .error(404, "unknown_symbol");
    api.get(&format!("/api/v1/indicators/rsi?{base}"))
        .await
        .bad("tf");
    api.get(&format!("/api/v1/indicators/rsi?tf=7m&{base}"))
        .await
        .bad("tf");
    for bad in [
        "period%3D1",
        "period",
        "length%3D3",
        "period%3Dx",
        "period%3D14%2Cperiod%3D15",
    ] {
        api.get(&format!("/api/v1/indicators/rsi?tf=1m&params={bad}&{base}"))
            .await
            .bad("params");
    }
    api.get(&format!(
        "/api/v1/indicators/macd?tf=5m&params=fast%3D30%2Cslow%3D12&{base}"
    ))
    .await
    .bad("params");
    api.get("/api/v1/indicators?tf=1m").await.bad("tf");

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn routes_errors_and_health() {
    let sandbox = Sandbox::with_fixture("routes").await;
    let api = Api::start(&sandbox.url).await;

    assert_eq!(api.get("/healthz").await.ok(), json!({"status": "ok"}));
    assert_eq!(api.get("/readyz").await.ok(), json!({"status": "ready"}));
    let doc = api.get("/api/v1/openapi.json").await.ok();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/chain"]["get"].is_object());

    let e = api.get("/api/v1/nothing").await.error(404, "not_found");
    assert!(e["message"]
        .as_str()
        .expect("message")
        .contains("/api/v1/nothing"));
    api.get("/nowhere").await.error(404, "not_found");
    api.get("/api/v1/chain/").await.error(404, "not_found");
    let e = api
        .get("/api/v1/underlyings?%zz=1")
        .await
        .error(400, "unknown_parameter");
    assert_eq!(e["parameter"], "%zz");

    // Every endpoint is GET.
    let mut stream = tokio::net::TcpStream::connect(api.addr)
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"POST /api/v1/underlyings HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.expect("read");
    assert!(raw.starts_with("HTTP/1.1 405"), "{raw}");
    assert!(raw.contains("\"method_not_allowed\""), "{raw}");

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn without_the_database_it_answers_503_not_500() {
    // A port nothing listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        listener.local_addr().expect("addr").port()
    };
    let api = Api::start_with(
        &format!("postgres://strikeflow@127.0.0.1:{port}/none"),
        strikeflow_api::ApiSettings {
            connect_timeout_ms: 500,
            pool_wait_ms: 500,
            ..strikeflow_api::ApiSettings::default()
        },
    )
    .await;
    assert_eq!(api.get("/healthz").await.ok(), json!({"status": "ok"}));
    api.get("/readyz").await.error(503, "database_unavailable");
    api.get("/api/v1/underlyings")
        .await
        .error(503, "database_unavailable");
    // Bad input is still answered without the database.
    api.get("/api/v1/chain?underlying=NIFTY")
        .await
        .bad("expiry");
    // And what needs no database still works.
    assert_eq!(
        api.get("/api/v1/indicators").await.ok()["indicators"]
            .as_array()
            .map(Vec::len),
        Some(12)
    );
    api.stop().await;
}
