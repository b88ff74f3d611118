//! TradingView's UDF datafeed (the HTTP protocol of the charting library's
//! `UDFCompatibleDatafeed`): `/udf/config`, `/udf/symbols`, `/udf/search`, `/udf/history`,
//! `/udf/time`.
//!
//! Conventions of the protocol, as implemented here (`docs/api.md`):
//! * times are unix seconds; `from` is inclusive, `to` exclusive; bars come in ascending
//!   time; intraday bars are stamped with their start, daily bars with 00:00 UTC of their
//!   trading day (the NSE session's bar `bars_1d` starts at 09:15 IST = 03:45 UTC);
//! * `countback`, when given, wins over `from`: up to that many bars ending before `to`;
//! * an empty range answers `{"s":"no_data"}` with `nextTime`, the newest bar before
//!   `from`, when there is one;
//! * errors answer `{"s":"error","errmsg":…}` with a 4xx status.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::cache::{cache_key, cached};
use crate::db::Sql;
use crate::error::{Problem, UdfProblem};
use crate::openapi;
use crate::params::{self, Params, Timeframe};
use crate::rest::{col, known};
use crate::server::App;

/// The `/udf` routes.
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(openapi::UDF_CONFIG.path, get(config))
        .route(openapi::UDF_SYMBOLS.path, get(symbols))
        .route(openapi::UDF_SEARCH.path, get(search))
        .route(openapi::UDF_HISTORY.path, get(history))
        .route(openapi::UDF_TIME.path, get(time))
}

/// The resolutions served, as the protocol names them.
const RESOLUTIONS: [&str; 6] = ["1", "3", "5", "15", "60", "1D"];
/// The intraday resolutions stored as bars of their own (the library builds no others).
const INTRADAY: [&str; 5] = ["1", "3", "5", "15", "60"];
/// 09:15 IST, where every bucket starts (`migrations/0004_rollups_and_timescale.sql`):
/// 2000-01-03 09:15 IST in unix seconds.
const ORIGIN: i64 = 946_871_100;
/// A daily bar starts at 09:15 IST = 03:45 UTC and is stamped 00:00 UTC of its day.
const DAY_STAMP_SHIFT: i64 = 3 * 3600 + 45 * 60;

/// `GET /udf/config`.
async fn config() -> Json<Value> {
    Json(json!({
        "supported_resolutions": RESOLUTIONS,
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
    }))
}

/// `GET /udf/time`: the server's unix time in seconds, as plain text.
async fn time() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Utc::now().timestamp().to_string(),
    )
}

/// A symbol as the protocol names it: the tradingsymbol, optionally after `EXCHANGE:`.
fn udf_symbol(raw: &str) -> Result<String, String> {
    let bare = match raw.split_once(':') {
        Some((exchange, symbol)) if matches!(exchange.to_uppercase().as_str(), "NFO" | "NSE") => {
            symbol
        }
        _ => raw,
    };
    params::symbol(bare.trim())
}

/// A contract's UDF type: `index`, `futures`, `option` (or `stock`).
fn udf_type(instrument_type: &str) -> &'static str {
    match instrument_type {
        "FUT" => "futures",
        "CE" | "PE" => "option",
        "EQ" => "index",
        _ => "stock",
    }
}

/// A human description: `NIFTY 24500 CE 08 Dec 2026`, `NIFTY futures 29 Dec 2026`,
/// `NIFTY 50 index`.
fn description(
    symbol: &str,
    name: &str,
    kind: &str,
    expiry: Option<NaiveDate>,
    strike: f64,
) -> String {
    let day = expiry
        .map(|d| d.format("%d %b %Y").to_string())
        .unwrap_or_default();
    match kind {
        "FUT" => format!("{name} futures {day}"),
        "CE" | "PE" => format!("{name} {strike} {kind} {day}"),
        _ => format!("{symbol} index"),
    }
}

/// `minmov` and `pricescale` from the tick size: 0.05 → 5 / 100. A missing tick (the index
/// has none in the master) shows two decimals.
fn price_steps(tick_size: f64) -> (i64, i64) {
    if tick_size.is_finite() && tick_size > 0.0 {
        let mut scale = 1_i64;
        for _ in 0..=6 {
            let steps = tick_size * scale as f64;
            if (steps - steps.round()).abs() < 1e-6 {
                return ((steps.round() as i64).max(1), scale);
            }
            scale *= 10;
        }
    }
    (1, 100)
}

/// 15:30 IST on the expiry day, in unix seconds.
fn expiration(expiry: NaiveDate) -> Option<i64> {
    let close = expiry.and_hms_opt(10, 0, 0)?; // 15:30 IST = 10:00 UTC
    Some(close.and_utc().timestamp())
}

const SYMBOL: Sql = Sql {
    name: "udf_symbol",
    text: "SELECT instrument_token, tradingsymbol, name, expiry, strike, tick_size, lot_size,
       instrument_type, segment, exchange
FROM instrument_history
WHERE tradingsymbol = $1
ORDER BY live_until DESC
LIMIT 1",
    types: &[Type::TEXT],
};

fn unknown_symbol(symbol: &str) -> UdfProblem {
    UdfProblem(Problem::unknown(
        "unknown_symbol",
        "symbol",
        format!("unknown symbol {symbol:?}"),
    ))
}

/// `GET /udf/symbols?symbol=`: the symbol's information (the contract it named last).
async fn symbols(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, UdfProblem> {
    let params = Params::lenient(query.as_deref(), openapi::UDF_SYMBOLS.params)?;
    let symbol = params.need("symbol", udf_symbol)?;
    let rows = app.db.query(&SYMBOL, &[&symbol]).await?;
    let row = rows.first().ok_or_else(|| unknown_symbol(&symbol))?;
    Ok(Json(symbol_info(row)?))
}

fn symbol_info(row: &Row) -> Result<Value, Problem> {
    let symbol: String = col(row, "tradingsymbol")?;
    let name: String = col(row, "name")?;
    let kind: String = col(row, "instrument_type")?;
    let exchange: String = col(row, "exchange")?;
    let expiry: Option<NaiveDate> = col(row, "expiry")?;
    let strike: f64 = col(row, "strike")?;
    let (minmov, pricescale) = price_steps(col(row, "tick_size")?);
    let mut info = json!({
        "name": symbol,
        "ticker": symbol,
        "full_name": format!("{exchange}:{symbol}"),
        "description": description(&symbol, &name, &kind, expiry, strike),
        "type": udf_type(&kind),
        "exchange": exchange,
        "listed_exchange": exchange,
        "timezone": "Asia/Kolkata",
        "session": "0915-1530",
        "format": "price",
        "minmov": minmov,
        "pricescale": pricescale,
        "has_intraday": true,
        "has_daily": true,
        "has_weekly_and_monthly": false,
        "intraday_multipliers": INTRADAY,
        "supported_resolutions": RESOLUTIONS,
        "volume_precision": 0,
        "data_status": "streaming",
        "instrument_token": col::<i64>(row, "instrument_token")?,
        "lot_size": col::<i32>(row, "lot_size")?,
    });
    if let (Some(expiry), Some(map)) = (expiry, info.as_object_mut()) {
        let expires = expiration(expiry);
        map.insert("expiration_date".into(), json!(expires));
        map.insert(
            "expired".into(),
            json!(expires.is_some_and(|t| t <= Utc::now().timestamp())),
        );
    }
    Ok(info)
}

const SEARCH: Sql = Sql {
    name: "udf_search",
    text: "SELECT * FROM (
    SELECT DISTINCT ON (tradingsymbol) tradingsymbol, name, expiry, strike, instrument_type,
           exchange
    FROM instrument_history
    WHERE starts_with(tradingsymbol, $1)
      AND ($2::text[] IS NULL OR instrument_type = ANY ($2))
      AND ($3::text IS NULL OR exchange = $3)
    ORDER BY tradingsymbol, live_until DESC
) s
ORDER BY CASE instrument_type WHEN 'EQ' THEN 0 WHEN 'FUT' THEN 1 ELSE 2 END,
         expiry NULLS FIRST, strike, tradingsymbol
LIMIT $4",
    types: &[Type::TEXT, Type::TEXT_ARRAY, Type::TEXT, Type::INT8],
};

/// Default `limit` of a search.
const SEARCH_LIMIT: usize = 30;

/// One search result.
#[derive(Debug, Serialize)]
struct Found {
    symbol: String,
    full_name: String,
    description: String,
    exchange: String,
    ticker: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// `GET /udf/search?query=&type=&exchange=&limit=`: symbols starting with `query`
/// (indices, then futures, then options by expiry and strike).
async fn search(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<Found>>, UdfProblem> {
    let params = Params::lenient(query.as_deref(), openapi::UDF_SEARCH.params)?;
    let prefix = params.get("query", udf_symbol)?.unwrap_or_default();
    let types = params.get("type", |raw| match raw.to_lowercase().as_str() {
        "index" => Ok(vec!["EQ".to_owned()]),
        "futures" => Ok(vec!["FUT".to_owned()]),
        "option" => Ok(vec!["CE".to_owned(), "PE".to_owned()]),
        _ => Err(format!("{raw:?} is not one of index, futures, option")),
    })?;
    let exchange = params.get("exchange", |raw| params::one_of(raw, &["NFO", "NSE"]))?;
    let max = app.settings.max_page;
    let limit = params
        .get("limit", |raw| params::count(raw, 1, max))?
        .unwrap_or(SEARCH_LIMIT.min(max));
    let limit = i64::try_from(limit).map_err(|_| Problem::internal())?;
    let rows = app
        .db
        .query(&SEARCH, &[&prefix, &types, &exchange, &limit])
        .await?;
    let found = rows
        .iter()
        .map(|row| {
            let symbol: String = col(row, "tradingsymbol")?;
            let name: String = col(row, "name")?;
            let kind: String = col(row, "instrument_type")?;
            let exchange: String = col(row, "exchange")?;
            Ok(Found {
                full_name: format!("{exchange}:{symbol}"),
                description: description(
                    &symbol,
                    &name,
                    &kind,
                    col(row, "expiry")?,
                    col(row, "strike")?,
                ),
                ticker: symbol.clone(),
                symbol,
                exchange,
                kind: udf_type(&kind),
            })
        })
        .collect::<Result<_, Problem>>()?;
    Ok(Json(found))
}

const HISTORY: Sql = Sql {
    name: "udf_history",
    text: "WITH known AS (
    SELECT EXISTS (SELECT 1 FROM instrument_history WHERE tradingsymbol = $1) AS known
), page AS (
    SELECT b.window_start, b.open, b.high, b.low, b.close, b.volume
    FROM known k
    CROSS JOIN LATERAL bars($1, $2, coalesce($3, '-infinity'::timestamptz), $4) b
    WHERE k.known
    ORDER BY b.window_start DESC
    LIMIT $5
)
SELECT k.known, p.window_start, p.open, p.high, p.low, p.close, p.volume,
       CASE WHEN k.known AND $3 IS NOT NULL AND NOT EXISTS (SELECT 1 FROM page) THEN (
           SELECT max(x.window_start)
           FROM strikeflow_symbol_contracts($1) c
           CROSS JOIN LATERAL (
               SELECT m.window_start FROM bars_1m m
               WHERE m.instrument_token = c.instrument_token
                 AND m.window_start < $6
                 AND (m.window_start AT TIME ZONE 'Asia/Kolkata')::date > c.after
                 AND (m.window_start AT TIME ZONE 'Asia/Kolkata')::date <= c.until
               ORDER BY m.window_start DESC
               LIMIT 1) x
       ) END AS before
FROM known k
LEFT JOIN page p ON true
ORDER BY p.window_start",
    types: &[
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::INT8,
        Type::TIMESTAMPTZ,
    ],
};

/// A history request, in bar-start time (daily stamps shifted back to 09:15 IST).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HistoryWindow {
    /// `[from, to)` on `window_start`; `from` is `None` with `countback`.
    from: Option<i64>,
    to: i64,
    /// Most bars: `countback`, or `api.max_rows`.
    limit: i64,
    /// The newest one-minute bar that can lie in a bucket starting before `from` starts
    /// before this (the end of the bucket holding `from - 1 µs`).
    before: i64,
}

impl HistoryWindow {
    fn new(tf: Timeframe, from: i64, to: i64, countback: Option<i64>, max_rows: i64) -> Self {
        let shift = if tf == Timeframe::D1 {
            DAY_STAMP_SHIFT
        } else {
            0
        };
        let width = i64::from(tf.minutes()) * 60;
        let from = from + shift;
        let before = ORIGIN + (from - ORIGIN + width - 1).div_euclid(width) * width;
        HistoryWindow {
            from: if countback.is_some() {
                None
            } else {
                Some(from)
            },
            to: to + shift,
            limit: countback.unwrap_or(max_rows).min(max_rows),
            before,
        }
    }
}

/// The UDF time of a bar starting at `start` (unix seconds).
fn stamp(tf: Timeframe, start: i64) -> i64 {
    if tf == Timeframe::D1 {
        start - DAY_STAMP_SHIFT
    } else {
        start
    }
}

/// The start of the `tf` bucket holding `t` (unix seconds), aligned to 09:15 IST.
fn bucket_start(tf: Timeframe, t: i64) -> i64 {
    let width = i64::from(tf.minutes()) * 60;
    ORIGIN + (t - ORIGIN).div_euclid(width) * width
}

fn instant(seconds: i64) -> Result<DateTime<Utc>, Problem> {
    DateTime::from_timestamp(seconds, 0).ok_or_else(Problem::internal)
}

/// The answer of `/udf/history`.
#[derive(Debug, Default, Serialize)]
struct History {
    s: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    t: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    o: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    h: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    l: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    c: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    v: Vec<i64>,
    #[serde(rename = "nextTime", skip_serializing_if = "Option::is_none")]
    next_time: Option<i64>,
}

/// `GET /udf/history?symbol=&resolution=&from=&to=&countback=`.
async fn history(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Response, UdfProblem> {
    let params = Params::lenient(query.as_deref(), openapi::UDF_HISTORY.params)?;
    let symbol = params.need("symbol", udf_symbol)?;
    let tf = params.need("resolution", Timeframe::from_resolution)?;
    let to = params.need("to", params::unix_seconds)?;
    let max_rows = i64::try_from(app.settings.max_rows).map_err(|_| Problem::internal())?;
    let countback = params.get("countback", |raw| {
        params::count(raw, 1, usize::MAX).map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    })?;
    let from = match countback {
        // Read (and so checked) even though countback wins, as the protocol always sends it.
        Some(_) => params.get("from", params::unix_seconds)?.unwrap_or(to),
        None => params.need("from", params::unix_seconds)?,
    };
    if countback.is_none() && from >= to {
        return Err(Problem::bad_parameter("from", "must be earlier than to").into());
    }
    let window = HistoryWindow::new(tf, from, to, countback, max_rows);
    let key = cache_key(&(
        "history",
        &symbol,
        tf.name(),
        window.from,
        window.to,
        window.limit,
        window.before,
    ))?;
    cached(&app, key, read_history(&app, symbol.clone(), tf, window)).await
}

/// `/udf/history`'s statement and answer.
async fn read_history(
    app: &App,
    symbol: String,
    tf: Timeframe,
    window: HistoryWindow,
) -> Result<History, UdfProblem> {
    let from_ts = window.from.map(instant).transpose()?;
    let rows = app
        .db
        .query(
            &HISTORY,
            &[
                &symbol,
                &tf.name(),
                &from_ts,
                &instant(window.to)?,
                &window.limit,
                &instant(window.before)?,
            ],
        )
        .await?;
    if !known(&rows)? {
        return Err(unknown_symbol(&symbol));
    }
    let mut answer = History {
        s: "ok",
        ..History::default()
    };
    for row in &rows {
        if let Some(before) = col::<Option<DateTime<Utc>>>(row, "before")? {
            answer.next_time = Some(stamp(tf, bucket_start(tf, before.timestamp())));
        }
        let Some(start) = col::<Option<DateTime<Utc>>>(row, "window_start")? else {
            continue;
        };
        answer.t.push(stamp(tf, start.timestamp()));
        answer.o.push(col(row, "open")?);
        answer.h.push(col(row, "high")?);
        answer.l.push(col(row, "low")?);
        answer.c.push(col(row, "close")?);
        answer.v.push(col(row, "volume")?);
    }
    if answer.t.is_empty() {
        answer.s = "no_data";
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60;
    /// 2026-12-02 09:15 IST.
    const OPEN: i64 = 1_796_183_100;

    #[test]
    fn the_origin_is_0915_ist() {
        let origin = DateTime::from_timestamp(ORIGIN, 0).expect("instant");
        assert_eq!(origin.to_rfc3339(), "2000-01-03T03:45:00+00:00");
        assert_eq!((OPEN - ORIGIN) % (24 * 3600), 0);
    }

    #[test]
    fn buckets_start_on_the_session_grid() {
        assert_eq!(bucket_start(Timeframe::M5, OPEN + 7 * MIN), OPEN + 5 * MIN);
        assert_eq!(
            bucket_start(Timeframe::H1, OPEN + 61 * MIN),
            OPEN + 60 * MIN
        );
        assert_eq!(bucket_start(Timeframe::D1, OPEN + 300 * MIN), OPEN);
        assert_eq!(
            bucket_start(Timeframe::D1, OPEN - MIN),
            OPEN - 24 * 60 * MIN
        );
    }

    #[test]
    fn daily_bars_are_stamped_at_midnight_utc() {
        let midnight = OPEN - DAY_STAMP_SHIFT;
        assert_eq!(midnight % (24 * 3600), 0);
        assert_eq!(stamp(Timeframe::D1, OPEN), midnight);
        assert_eq!(stamp(Timeframe::M1, OPEN), OPEN);
        let w = HistoryWindow::new(Timeframe::D1, midnight, midnight + 86_400, None, 100);
        assert_eq!(w.from, Some(OPEN));
        assert_eq!(w.to, OPEN + 86_400);
    }

    #[test]
    fn the_bound_for_next_time_is_the_end_of_the_bucket_holding_from() {
        // Aligned: the buckets before `from` end at `from`.
        let w = HistoryWindow::new(Timeframe::M5, OPEN + 10 * MIN, OPEN + 20 * MIN, None, 100);
        assert_eq!(w.before, OPEN + 10 * MIN);
        // Inside a bucket: that bucket starts before `from`, so its minutes count.
        let w = HistoryWindow::new(Timeframe::M5, OPEN + 12 * MIN, OPEN + 20 * MIN, None, 100);
        assert_eq!(w.before, OPEN + 15 * MIN);
    }

    #[test]
    fn countback_wins_over_from_and_is_capped() {
        let w = HistoryWindow::new(Timeframe::M1, OPEN, OPEN + 10 * MIN, Some(3), 100);
        assert_eq!(w.from, None);
        assert_eq!(w.limit, 3);
        let w = HistoryWindow::new(Timeframe::M1, OPEN, OPEN + 10 * MIN, Some(1_000), 100);
        assert_eq!(w.limit, 100);
    }

    #[test]
    fn price_steps_follow_the_tick() {
        assert_eq!(price_steps(0.05), (5, 100));
        assert_eq!(price_steps(0.01), (1, 100));
        assert_eq!(price_steps(0.5), (5, 10));
        assert_eq!(price_steps(1.0), (1, 1));
        assert_eq!(price_steps(0.0), (1, 100));
        assert_eq!(price_steps(f64::NAN), (1, 100));
    }

    #[test]
    fn symbols_may_carry_their_exchange() {
        assert_eq!(udf_symbol("NFO:nifty26decfut"), Ok("NIFTY26DECFUT".into()));
        assert_eq!(udf_symbol("NSE:NIFTY 50"), Ok("NIFTY 50".into()));
        assert_eq!(udf_symbol("NIFTY 50"), Ok("NIFTY 50".into()));
    }

    #[test]
    fn expiry_is_the_close_on_the_day() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 8).expect("date");
        let t = expiration(day).expect("time");
        assert_eq!(
            DateTime::from_timestamp(t, 0)
                .expect("instant")
                .to_rfc3339(),
            "2026-12-08T10:00:00+00:00"
        );
    }
}
