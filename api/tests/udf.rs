//! The TradingView UDF datafeed against the rows of `common/fixture.rs`, field by field:
//! configuration, time, symbol resolve, search, and history (ok, every resolution, daily
//! stamps, `no_data` with and without `nextTime`, `countback`, errors).

mod common;

use common::fixture::{day1_bar, day2_bar, rollup, Bar, DAY1_OPEN, DAY2_OPEN};
use common::{enc, Api, Reply, Sandbox};
use serde_json::{json, Value};

/// 00:00 UTC of 2 December: the stamp of its daily bar (which starts at 09:15 IST).
const DAY2_MIDNIGHT: i64 = DAY2_OPEN - 13_500;
const DAY1_MIDNIGHT: i64 = DAY1_OPEN - 13_500;

/// Asserts a UDF error answer naming `parameter`.
fn udf_error(reply: &Reply, status: u16, code: &str, parameter: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["s"], "error", "{}", reply.body);
    let errmsg = body["errmsg"].as_str().expect("errmsg");
    assert_eq!(body["error"]["code"], code, "{}", reply.body);
    assert_eq!(body["error"]["parameter"], parameter, "{}", reply.body);
    assert_eq!(body["error"]["message"], errmsg);
}

/// The `ok` answer for these bars.
fn ok(bars: &[Bar]) -> Value {
    json!({
        "s": "ok",
        "t": bars.iter().map(|b| b.0).collect::<Vec<_>>(),
        "o": bars.iter().map(|b| b.1).collect::<Vec<_>>(),
        "h": bars.iter().map(|b| b.2).collect::<Vec<_>>(),
        "l": bars.iter().map(|b| b.3).collect::<Vec<_>>(),
        "c": bars.iter().map(|b| b.4).collect::<Vec<_>>(),
        "v": bars.iter().map(|b| b.5).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn config_time_symbols_and_search() {
    let sandbox = Sandbox::with_fixture("udf_meta").await;
    let api = Api::start(&sandbox.url).await;

    assert_eq!(
        api.get("/udf/config").await.ok(),
        json!({
            "supported_resolutions": ["1", "3", "5", "15", "60", "1D"],
            "supports_search": true,
            "supports_group_request": false,
            "supports_marks": false,
            "supports_timescale_marks": false,
            "supports_time": true,
            "exchanges": [
                {"value": "", "name": "All exchanges", "desc": ""},
                {"value": "NFO", "name": "NFO", "desc": "NSE futures and options"},
                {"value": "NSE", "name": "NSE", "desc": "NSE indices"},
            ],
            "symbols_types": [
                {"name": "All types", "value": ""},
                {"name": "Index", "value": "index"},
                {"name": "Futures", "value": "futures"},
                {"name": "Options", "value": "option"},
            ],
        })
    );

    let time = api.get("/udf/time").await;
    assert_eq!(time.status, 200);
    assert!(
        time.content_type.starts_with("text/plain"),
        "{}",
        time.content_type
    );
    let server: i64 = time.body.parse().expect("unix seconds");
    assert!((server - chrono::Utc::now().timestamp()).abs() <= 5);

    let expiry_close = chrono::NaiveDate::from_ymd_opt(2026, 12, 29)
        .and_then(|d| d.and_hms_opt(10, 0, 0))
        .expect("time")
        .and_utc()
        .timestamp();
    let future = json!({
        "name": "NIFTY26DECFUT", "ticker": "NIFTY26DECFUT", "full_name": "NFO:NIFTY26DECFUT",
        "description": "NIFTY futures 29 Dec 2026", "type": "futures", "exchange": "NFO",
        "listed_exchange": "NFO", "timezone": "Asia/Kolkata", "session": "0915-1530",
        "format": "price", "minmov": 5, "pricescale": 100, "has_intraday": true,
        "has_daily": true, "has_weekly_and_monthly": false,
        "intraday_multipliers": ["1", "3", "5", "15", "60"],
        "supported_resolutions": ["1", "3", "5", "15", "60", "1D"],
        "volume_precision": 0, "data_status": "streaming", "instrument_token": 9001,
        "lot_size": 65, "expiration_date": expiry_close,
        "expired": expiry_close <= chrono::Utc::now().timestamp(),
    });
    assert_eq!(
        api.get("/udf/symbols?symbol=NIFTY26DECFUT").await.ok(),
        future
    );
    assert_eq!(
        api.get(&format!("/udf/symbols?symbol={}", enc("NFO:nifty26decfut")))
            .await
            .ok(),
        future
    );
    let option = api.get("/udf/symbols?symbol=NIFTY26D0824500CE").await.ok();
    assert_eq!(option["type"], "option");
    assert_eq!(option["description"], "NIFTY 24500 CE 08 Dec 2026");
    let index = api
        .get(&format!("/udf/symbols?symbol={}", enc("NIFTY 50")))
        .await
        .ok();
    assert_eq!(index["type"], "index");
    assert_eq!(index["exchange"], "NSE");
    assert_eq!(index["description"], "NIFTY 50 index");
    assert_eq!(
        (index["minmov"].clone(), index["pricescale"].clone()),
        (json!(1), json!(100))
    );
    assert!(index.get("expiration_date").is_none() && index.get("expired").is_none());

    udf_error(
        &api.get("/udf/symbols?symbol=XYZ").await,
        404,
        "unknown_symbol",
        "symbol",
    );
    udf_error(
        &api.get("/udf/symbols").await,
        400,
        "missing_parameter",
        "symbol",
    );

    let weekly = api.get("/udf/search?query=nifty26d0").await.ok();
    assert_eq!(
        weekly[0],
        json!({"symbol": "NIFTY26D0824500CE", "full_name": "NFO:NIFTY26D0824500CE",
               "description": "NIFTY 24500 CE 08 Dec 2026", "exchange": "NFO",
               "ticker": "NIFTY26D0824500CE", "type": "option"})
    );
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|r| r["symbol"].as_str().expect("symbol").to_owned())
            .collect()
    };
    assert_eq!(
        names(&weekly),
        [
            "NIFTY26D0824500CE",
            "NIFTY26D0824500PE",
            "NIFTY26D0824600CE",
            "NIFTY26D0824600PE",
            "NIFTY26D0824700CE",
            "NIFTY26D0824700PE"
        ]
    );
    assert_eq!(
        names(&api.get("/udf/search?query=NIFTY&type=futures").await.ok()),
        ["NIFTY26DECFUT"]
    );
    assert_eq!(
        names(&api.get("/udf/search?query=&exchange=NSE&type=").await.ok()),
        ["NIFTY 50", "NIFTY BANK"]
    );
    // Indices, then futures, then options by expiry and strike; `limit` caps.
    let all = api.get("/udf/search?query=NIFTY").await.ok();
    assert_eq!(all.as_array().map(Vec::len), Some(12));
    assert_eq!(
        names(&all)[..4],
        [
            "NIFTY 50",
            "NIFTY BANK",
            "NIFTY26DECFUT",
            "NIFTY26N2424500CE"
        ]
    );
    assert_eq!(
        names(&api.get("/udf/search?query=NIFTY&limit=3").await.ok()),
        ["NIFTY 50", "NIFTY BANK", "NIFTY26DECFUT"]
    );
    assert_eq!(api.get("/udf/search?query=SENSEX").await.ok(), json!([]));
    udf_error(
        &api.get("/udf/search?query=N&type=stock").await,
        400,
        "bad_parameter",
        "type",
    );
    udf_error(
        &api.get("/udf/search?query=N&exchange=BSE").await,
        400,
        "bad_parameter",
        "exchange",
    );
    udf_error(
        &api.get("/udf/search?query=N&limit=0").await,
        400,
        "bad_parameter",
        "limit",
    );
    // Parameters of its own a charting host adds are ignored.
    assert_eq!(
        names(
            &api.get("/udf/search?query=NIFTY26DECF&session=xyz")
                .await
                .ok()
        ),
        ["NIFTY26DECFUT"]
    );

    api.stop().await;
    sandbox.finish().await;
}

#[tokio::test]
async fn history_bars_no_data_and_countback() {
    let sandbox = Sandbox::with_fixture("udf_history").await;
    let api = Api::start(&sandbox.url).await;
    let day1: Vec<_> = (0..3).map(day1_bar).collect();
    let day2: Vec<_> = (0..10).map(day2_bar).collect();
    let history = |resolution: &str, from: i64, to: i64| {
        format!("/udf/history?symbol=NIFTY26DECFUT&resolution={resolution}&from={from}&to={to}")
    };

    // One-minute bars, [from, to), ascending, field by field.
    let body = api
        .get(&history("1", DAY2_OPEN, DAY2_OPEN + 300))
        .await
        .ok();
    assert_eq!(body, ok(&day2[0..5]));
    // Exchange-prefixed symbols, and parameters the library adds, are fine.
    let prefixed = api
        .get(&format!(
            "/udf/history?symbol={}&resolution=1&from={DAY2_OPEN}&to={}&firstDataRequest=true",
            enc("NFO:NIFTY26DECFUT"),
            DAY2_OPEN + 300
        ))
        .await
        .ok();
    assert_eq!(prefixed, body);

    // Rollups, stamped with their start.
    assert_eq!(
        api.get(&history("5", DAY2_OPEN, DAY2_OPEN + 600))
            .await
            .ok(),
        ok(&[
            rollup(DAY2_OPEN, &day2[0..5]),
            rollup(DAY2_OPEN + 300, &day2[5..10])
        ])
    );
    assert_eq!(
        api.get(&history("3", DAY2_OPEN, DAY2_OPEN + 360))
            .await
            .ok(),
        ok(&[
            rollup(DAY2_OPEN, &day2[0..3]),
            rollup(DAY2_OPEN + 180, &day2[3..6])
        ])
    );
    assert_eq!(
        api.get(&history("15", DAY2_OPEN - 3600, DAY2_OPEN + 3600))
            .await
            .ok(),
        ok(&[rollup(DAY2_OPEN, &day2)])
    );
    assert_eq!(
        api.get(&history("60", DAY1_OPEN, DAY2_OPEN + 3600))
            .await
            .ok(),
        ok(&[rollup(DAY1_OPEN, &day1), rollup(DAY2_OPEN, &day2)])
    );
    // Daily bars at 00:00 UTC of their trading day, as D and as 1D.
    let daily = ok(&[rollup(DAY1_MIDNIGHT, &day1), rollup(DAY2_MIDNIGHT, &day2)]);
    assert_eq!(
        api.get(&history("D", DAY1_MIDNIGHT, DAY2_MIDNIGHT + 86_400))
            .await
            .ok(),
        daily
    );
    assert_eq!(
        api.get(&history("1D", DAY1_MIDNIGHT, DAY2_MIDNIGHT + 86_400))
            .await
            .ok(),
        daily
    );
    assert_eq!(
        api.get(&history("D", DAY2_MIDNIGHT, DAY2_MIDNIGHT + 86_400))
            .await
            .ok(),
        ok(&[rollup(DAY2_MIDNIGHT, &day2)]),
        "`from` is inclusive and `to` exclusive on the stamps"
    );

    // No bars in range: no_data, and nextTime is the newest bar before `from`.
    let no_data = |next: i64| json!({"s": "no_data", "nextTime": next});
    assert_eq!(
        api.get(&history("1", DAY2_OPEN + 3600, DAY2_OPEN + 7200))
            .await
            .ok(),
        no_data(DAY2_OPEN + 540)
    );
    assert_eq!(
        api.get(&history("1", DAY1_OPEN + 900, DAY2_OPEN - 2700))
            .await
            .ok(),
        no_data(DAY1_OPEN + 120),
        "overnight: the previous session's last bar"
    );
    assert_eq!(
        api.get(&history("5", DAY2_OPEN + 420, DAY2_OPEN + 480))
            .await
            .ok(),
        no_data(DAY2_OPEN + 300),
        "from inside a bucket: that bucket started before from"
    );
    assert_eq!(
        api.get(&history("60", DAY2_OPEN + 3600, DAY2_OPEN + 7200))
            .await
            .ok(),
        no_data(DAY2_OPEN)
    );
    assert_eq!(
        api.get(&history(
            "D",
            DAY2_MIDNIGHT + 86_400,
            DAY2_MIDNIGHT + 2 * 86_400
        ))
        .await
        .ok(),
        no_data(DAY2_MIDNIGHT)
    );
    // Nothing before either: no_data without nextTime.
    assert_eq!(
        api.get(&history(
            "1",
            DAY1_OPEN - 30 * 86_400,
            DAY1_OPEN - 29 * 86_400
        ))
        .await
        .ok(),
        json!({"s": "no_data"})
    );
    let index = api
        .get(&format!(
            "/udf/history?symbol={}&resolution=1&from={DAY2_OPEN}&to={}",
            enc("NIFTY 50"),
            DAY2_OPEN + 60
        ))
        .await
        .ok();
    assert_eq!(
        index,
        json!({"s": "ok", "t": [DAY2_OPEN], "o": [24550.0], "h": [24560.0], "l": [24540.0],
               "c": [24555.0], "v": [0]})
    );

    // countback wins over from: the last N bars before `to`.
    let countback = |resolution: &str, from: i64, to: i64, n: i64| {
        format!("{}&countback={n}", history(resolution, from, to))
    };
    assert_eq!(
        api.get(&countback("1", DAY2_OPEN, DAY2_OPEN + 600, 3))
            .await
            .ok(),
        ok(&day2[7..10])
    );
    let every: Vec<_> = day1.iter().chain(&day2).copied().collect();
    assert_eq!(
        api.get(&countback("1", DAY2_OPEN + 9_999, DAY2_OPEN + 600, 100))
            .await
            .ok(),
        ok(&every),
        "fewer bars than asked: all of them, across sessions"
    );
    assert_eq!(
        api.get(&countback("D", DAY2_MIDNIGHT, DAY2_MIDNIGHT + 86_400, 1))
            .await
            .ok(),
        ok(&[rollup(DAY2_MIDNIGHT, &day2)])
    );
    assert_eq!(
        api.get(&countback("1", DAY1_OPEN - 600, DAY1_OPEN, 5))
            .await
            .ok(),
        json!({"s": "no_data"}),
        "nothing before `to`"
    );
    assert_eq!(
        api.get(&format!(
            "/udf/history?symbol=NIFTY26DECFUT&resolution=1&to={}&countback=2",
            DAY2_OPEN + 600
        ))
        .await
        .ok(),
        ok(&day2[8..10]),
        "from may be left out with countback"
    );

    // Errors.
    let e = |q: &str| format!("/udf/history?{q}");
    let range = format!("from={DAY2_OPEN}&to={}", DAY2_OPEN + 60);
    udf_error(
        &api.get(&e(&format!("resolution=1&{range}"))).await,
        400,
        "missing_parameter",
        "symbol",
    );
    udf_error(
        &api.get(&e(&format!("symbol=NIFTY26DECFUT&{range}"))).await,
        400,
        "missing_parameter",
        "resolution",
    );
    for resolution in ["30", "1W", "2", "x"] {
        udf_error(
            &api.get(&e(&format!(
                "symbol=NIFTY26DECFUT&resolution={resolution}&{range}"
            )))
            .await,
            400,
            "bad_parameter",
            "resolution",
        );
    }
    udf_error(
        &api.get(&e(&format!(
            "symbol=NIFTY26DECFUT&resolution=1&from=abc&to={DAY2_OPEN}"
        )))
        .await,
        400,
        "bad_parameter",
        "from",
    );
    udf_error(
        &api.get(&e(&format!(
            "symbol=NIFTY26DECFUT&resolution=1&from={DAY2_OPEN}"
        )))
        .await,
        400,
        "missing_parameter",
        "to",
    );
    udf_error(
        &api.get(&e(&format!(
            "symbol=NIFTY26DECFUT&resolution=1&to={DAY2_OPEN}"
        )))
        .await,
        400,
        "missing_parameter",
        "from",
    );
    udf_error(
        &api.get(&e(&format!(
            "symbol=NIFTY26DECFUT&resolution=1&from={DAY2_OPEN}&to={DAY2_OPEN}"
        )))
        .await,
        400,
        "bad_parameter",
        "from",
    );
    udf_error(
        &api.get(&e(&format!(
            "symbol=NIFTY26DECFUT&resolution=1&{range}&countback=0"
        )))
        .await,
        400,
        "bad_parameter",
        "countback",
    );
    udf_error(
        &api.get(&e(&format!(
            "symbol=NIFTY26DECFUT&resolution=1&from=1.5&to={DAY2_OPEN}"
        )))
        .await,
        400,
        "bad_parameter",
        "from",
    );
    udf_error(
        &api.get(&e(
            "symbol=NIFTY26DECFUT&resolution=1&from=0&to=99999999999",
        ))
        .await,
        400,
        "bad_parameter",
        "to",
    );
    udf_error(
        &api.get(&e(&format!("symbol=NIFTY26JANFUT&resolution=1&{range}")))
            .await,
        404,
        "unknown_symbol",
        "symbol",
    );

    api.stop().await;
    sandbox.finish().await;
}
