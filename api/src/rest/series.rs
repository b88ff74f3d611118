//! Time series: strike analysis, moneyness, bars and indicators, each over `[from, to)`
//! and paged by `next_from`; and the indicator registry.
//!
//! Moneyness, bars and indicators call the analyst functions of
//! `migrations/0005_analyst_functions.sql` (`moneyness_series`, `bars`, `indicator_series`),
//! so the API and an analyst in psql read the same rows the same way (symbols resolved
//! through `instrument_history`, rollups from `bars_1m`'s relations on either server).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use strikeflow_analytics::indicators::{self as registry_, IndicatorSpec};
use tokio_postgres::types::Type;

use super::{col, fetch_limit, known, page};
use crate::db::Sql;
use crate::error::Problem;
use crate::openapi;
use crate::params::{self, Params, Timeframe};
use crate::server::App;

/// `from`, `to` and `limit`, as every series endpoint takes them: `from` required, `to`
/// open-ended when absent, `limit` at most `api.max_rows`.
struct Range {
    from: DateTime<Utc>,
    to: Option<DateTime<Utc>>,
    limit: usize,
}

impl Range {
    fn read(params: &Params, app: &App) -> Result<Range, Problem> {
        let from = params.need("from", params::time)?;
        let to = params.get("to", params::time)?;
        if to.is_some_and(|to| to <= from) {
            return Err(Problem::bad_parameter("to", "must be later than from"));
        }
        let max = app.settings.max_rows;
        let limit = params
            .get("limit", |raw| params::count(raw, 1, max))?
            .unwrap_or(max);
        Ok(Range { from, to, limit })
    }
}

fn unknown_chain(underlying: &str, expiry: NaiveDate) -> Problem {
    Problem::unknown(
        "unknown_chain",
        "expiry",
        format!("no {underlying} options expiring {expiry} are stored"),
    )
}

fn unknown_symbol(symbol: &str) -> Problem {
    Problem::unknown(
        "unknown_symbol",
        "symbol",
        format!("no instrument with tradingsymbol {symbol:?} is stored"),
    )
}

/// One option at the end of one time bucket.
#[derive(Debug, Serialize)]
pub(crate) struct StrikePoint {
    /// The bucket's start.
    time: DateTime<Utc>,
    /// The emission the values are from: the option's last in the bucket.
    ts: DateTime<Utc>,
    strike: f64,
    side: String,
    instrument_token: i64,
    tradingsymbol: String,
    ltp: f64,
    oi: i64,
    oi_change_prev_close: Option<i64>,
    oi_change_window: Option<i64>,
    volume: i64,
    iv: Option<f64>,
    build_up: String,
    strike_pcr: Option<f64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Strikes {
    underlying: String,
    expiry: NaiveDate,
    tf: &'static str,
    points: Vec<StrikePoint>,
    next_from: Option<DateTime<Utc>>,
}

const STRIKES: Sql = Sql {
    name: "strikes",
    text: "SELECT k.known, x.time, x.ts, x.strike, x.option_type, x.instrument_token,
       x.tradingsymbol, x.ltp, x.oi, x.oi_change_prev_close, x.oi_change_window, x.volume, x.iv,
       x.build_up, x.strike_pcr
FROM (SELECT EXISTS (SELECT 1 FROM instrument_history
                     WHERE name = $1 AND expiry = $2 AND instrument_type IN ('CE', 'PE')) AS known) k
LEFT JOIN LATERAL (
    SELECT DISTINCT ON (a.instrument_token, b.time) b.time, a.*
    FROM strike_analytics a
    CROSS JOIN LATERAL (
        SELECT date_bin(make_interval(mins => $5), a.ts,
                        timestamptz '2000-01-03 09:15:00+05:30') AS time) b
    WHERE a.underlying = $1 AND a.expiry = $2
      AND a.ts >= $3 AND a.ts < coalesce($4, 'infinity'::timestamptz)
      AND ($6::float8 IS NULL OR a.strike = $6)
    ORDER BY a.instrument_token, b.time, a.ts DESC
) x ON k.known
ORDER BY x.time, x.strike, x.option_type
LIMIT $7",
    types: &[
        Type::TEXT,
        Type::DATE,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::INT4,
        Type::FLOAT8,
        Type::INT8,
    ],
};

/// `GET /api/v1/strikes?underlying=&expiry=&from=&to=&tf=&strike=&limit=`: strike analysis
/// through time — each option's OI, its changes, build-up and strike PCR at the end of
/// every `tf` bucket (aligned to 09:15 IST) in which it was emitted.
pub(crate) async fn strikes(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Strikes>, Problem> {
    let params = Params::strict(query.as_deref(), openapi::STRIKES.params)?;
    let underlying = params.need("underlying", params::underlying)?;
    let expiry = params.need("expiry", params::date)?;
    let range = Range::read(&params, &app)?;
    let tf = params.get("tf", Timeframe::parse)?.unwrap_or(Timeframe::M1);
    let strike = params.get("strike", params::strike)?;
    let rows = app
        .db
        .query(
            &STRIKES,
            &[
                &underlying,
                &expiry,
                &range.from,
                &range.to,
                &tf.minutes(),
                &strike,
                &fetch_limit(range.limit),
            ],
        )
        .await?;
    if !known(&rows)? {
        return Err(unknown_chain(&underlying, expiry));
    }
    let mut points = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(time) = col::<Option<DateTime<Utc>>>(row, "time")? else {
            continue;
        };
        points.push(StrikePoint {
            time,
            ts: col(row, "ts")?,
            strike: col(row, "strike")?,
            side: col(row, "option_type")?,
            instrument_token: col(row, "instrument_token")?,
            tradingsymbol: col(row, "tradingsymbol")?,
            ltp: col(row, "ltp")?,
            oi: col(row, "oi")?,
            oi_change_prev_close: col(row, "oi_change_prev_close")?,
            oi_change_window: col(row, "oi_change_window")?,
            volume: col(row, "volume")?,
            iv: col(row, "iv")?,
            build_up: col(row, "build_up")?,
            strike_pcr: col(row, "strike_pcr")?,
        });
    }
    let (points, next_from) = page(points, range.limit, |p| p.time)?;
    Ok(Json(Strikes {
        underlying,
        expiry,
        tf: tf.name(),
        points,
        next_from,
    }))
}

/// The option in one moneyness bucket on one side at one minute close.
#[derive(Debug, Serialize)]
pub(crate) struct MoneynessPoint {
    minute: DateTime<Utc>,
    side: String,
    level: i32,
    strike: f64,
    instrument_token: i64,
    ltp: f64,
    iv: Option<f64>,
    delta: Option<f64>,
    oi: i64,
    volume: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Moneyness {
    underlying: String,
    expiry: NaiveDate,
    bucket: String,
    points: Vec<MoneynessPoint>,
    next_from: Option<DateTime<Utc>>,
}

const MONEYNESS: Sql = Sql {
    name: "moneyness",
    text: "SELECT k.known, m.minute, m.side, m.level, m.strike, m.instrument_token, m.ltp, m.iv,
       m.delta, m.oi, m.volume
FROM (SELECT EXISTS (SELECT 1 FROM instrument_history
                     WHERE name = $1 AND expiry = $2 AND instrument_type IN ('CE', 'PE')) AS known) k
LEFT JOIN LATERAL (
    SELECT s.* FROM moneyness_series($1, $2, $3, $4, coalesce($5, 'infinity'::timestamptz)) s
    WHERE $6::text IS NULL OR s.side = $6
) m ON k.known
ORDER BY m.minute, m.side
LIMIT $7",
    types: &[
        Type::TEXT,
        Type::DATE,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::INT8,
    ],
};

/// `GET /api/v1/moneyness?underlying=&expiry=&bucket=&side=&from=&to=&limit=`: the
/// options that occupied a bucket (ATM, ITMn, OTMn: from each side's point of view) at
/// each minute close.
pub(crate) async fn moneyness(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Moneyness>, Problem> {
    let params = Params::strict(query.as_deref(), openapi::MONEYNESS.params)?;
    let underlying = params.need("underlying", params::underlying)?;
    let expiry = params.need("expiry", params::date)?;
    let bucket = params.need("bucket", params::bucket)?;
    let side = params.get("side", |raw| params::one_of(raw, &["CE", "PE"]))?;
    let range = Range::read(&params, &app)?;
    let rows = app
        .db
        .query(
            &MONEYNESS,
            &[
                &underlying,
                &expiry,
                &bucket,
                &range.from,
                &range.to,
                &side,
                &fetch_limit(range.limit),
            ],
        )
        .await?;
    if !known(&rows)? {
        return Err(unknown_chain(&underlying, expiry));
    }
    let mut points = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(minute) = col::<Option<DateTime<Utc>>>(row, "minute")? else {
            continue;
        };
        points.push(MoneynessPoint {
            minute,
            side: col(row, "side")?,
            level: col(row, "level")?,
            strike: col(row, "strike")?,
            instrument_token: col(row, "instrument_token")?,
            ltp: col(row, "ltp")?,
            iv: col(row, "iv")?,
            delta: col(row, "delta")?,
            oi: col(row, "oi")?,
            volume: col(row, "volume")?,
        });
    }
    let (points, next_from) = page(points, range.limit, |p| p.minute)?;
    Ok(Json(Moneyness {
        underlying,
        expiry,
        bucket,
        points,
        next_from,
    }))
}

/// One OHLCV + OI bar, `[window_start, window_end)`.
#[derive(Debug, Serialize)]
pub(crate) struct Bar {
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: i64,
    oi: i64,
    tick_count: i32,
}

#[derive(Debug, Serialize)]
pub(crate) struct Bars {
    symbol: String,
    tf: &'static str,
    bars: Vec<Bar>,
    next_from: Option<DateTime<Utc>>,
}

const BARS: Sql = Sql {
    name: "bars",
    text: "SELECT k.known, b.window_start, b.window_end, b.open, b.high, b.low, b.close, b.volume,
       b.oi, b.tick_count
FROM (SELECT EXISTS (SELECT 1 FROM instrument_history WHERE tradingsymbol = $1) AS known) k
LEFT JOIN LATERAL bars($1, $2, $3, coalesce($4, 'infinity'::timestamptz)) b ON k.known
ORDER BY b.window_start
LIMIT $5",
    types: &[
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::INT8,
    ],
};

/// `GET /api/v1/bars?symbol=&tf=&from=&to=&limit=`: bars of `bars_1m` or the rollup of
/// `tf` (hourly and daily buckets start at 09:15 IST).
pub(crate) async fn bars(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Bars>, Problem> {
    let params = Params::strict(query.as_deref(), openapi::BARS.params)?;
    let symbol = params.need("symbol", params::symbol)?;
    let tf = params.need("tf", Timeframe::parse)?;
    let range = Range::read(&params, &app)?;
    let rows = app
        .db
        .query(
            &BARS,
            &[
                &symbol,
                &tf.name(),
                &range.from,
                &range.to,
                &fetch_limit(range.limit),
            ],
        )
        .await?;
    if !known(&rows)? {
        return Err(unknown_symbol(&symbol));
    }
    let mut bars = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(window_start) = col::<Option<DateTime<Utc>>>(row, "window_start")? else {
            continue;
        };
        bars.push(Bar {
            window_start,
            window_end: col(row, "window_end")?,
            open: col(row, "open")?,
            high: col(row, "high")?,
            low: col(row, "low")?,
            close: col(row, "close")?,
            volume: col(row, "volume")?,
            oi: col(row, "oi")?,
            tick_count: col(row, "tick_count")?,
        });
    }
    let (bars, next_from) = page(bars, range.limit, |b| b.window_start)?;
    Ok(Json(Bars {
        symbol,
        tf: tf.name(),
        bars,
        next_from,
    }))
}

/// The registry: every indicator the processors can run.
#[derive(Debug, Serialize)]
pub(crate) struct Registry {
    indicators: &'static [IndicatorSpec],
    /// The timeframes `tf` may name.
    timeframes: Vec<&'static str>,
}

/// `GET /api/v1/indicators`: names, parameters (default, bounds, kind) and outputs, from
/// the analytics crate's registry itself.
pub(crate) async fn registry(RawQuery(query): RawQuery) -> Result<Json<Registry>, Problem> {
    Params::strict(query.as_deref(), openapi::INDICATORS.params)?;
    Ok(Json(Registry {
        indicators: registry_::registry(),
        timeframes: Timeframe::ALL.iter().map(|tf| tf.name()).collect(),
    }))
}

/// One indicator value on one bar for one parameter set.
#[derive(Debug, Serialize)]
pub(crate) struct IndicatorValue {
    window_start: DateTime<Utc>,
    /// The parameter set as stored: the overrides of the defaults, `name=value` joined by
    /// commas in name order (`period=9`; empty for the defaults).
    params: String,
    /// The outputs as published, e.g. `{"value": 61.2}` or `{"macd":…,"signal":…,"hist":…}`.
    outputs: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub(crate) struct Indicator {
    symbol: String,
    indicator: &'static str,
    tf: &'static str,
    values: Vec<IndicatorValue>,
    next_from: Option<DateTime<Utc>>,
}

const INDICATOR: Sql = Sql {
    name: "indicator",
    text: "SELECT k.known, v.window_start, v.params, v.outputs
FROM (SELECT EXISTS (SELECT 1 FROM instrument_history WHERE tradingsymbol = $1) AS known) k
LEFT JOIN LATERAL (
    SELECT s.* FROM indicator_series($1, $2, $3, $4, coalesce($5, 'infinity'::timestamptz)) s
    WHERE $6::text[] IS NULL OR s.params = ANY ($6)
) v ON k.known
ORDER BY v.window_start, v.params
LIMIT $7",
    types: &[
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TIMESTAMPTZ,
        Type::TIMESTAMPTZ,
        Type::TEXT_ARRAY,
        Type::INT8,
    ],
};

/// `GET /api/v1/indicators/{name}?symbol=&tf=&params=&from=&to=&limit=`: stored values of
/// one indicator (every parameter set it runs with, or the one `params` names).
pub(crate) async fn indicator(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Indicator>, Problem> {
    let params = Params::strict(query.as_deref(), openapi::INDICATOR.params)?;
    let spec = registry_::spec(&name).ok_or_else(|| {
        let known: Vec<&str> = registry_::registry().iter().map(|s| s.name).collect();
        Problem::unknown(
            "unknown_indicator",
            "name",
            format!(
                "no indicator {name:?}; known: {} (GET /api/v1/indicators)",
                known.join(", ")
            ),
        )
    })?;
    let symbol = params.need("symbol", params::symbol)?;
    let tf = params.need("tf", Timeframe::parse)?;
    let wanted = params.get("params", |raw| stored_params(spec, raw))?;
    let range = Range::read(&params, &app)?;
    let rows = app
        .db
        .query(
            &INDICATOR,
            &[
                &symbol,
                &spec.name,
                &tf.name(),
                &range.from,
                &range.to,
                &wanted,
                &fetch_limit(range.limit),
            ],
        )
        .await?;
    if !known(&rows)? {
        return Err(unknown_symbol(&symbol));
    }
    let mut values = Vec::with_capacity(rows.len());
    for row in &rows {
        let Some(window_start) = col::<Option<DateTime<Utc>>>(row, "window_start")? else {
            continue;
        };
        values.push(IndicatorValue {
            window_start,
            params: col(row, "params")?,
            outputs: col(row, "outputs")?,
        });
    }
    let (values, next_from) = page(values, range.limit, |v| v.window_start)?;
    Ok(Json(Indicator {
        symbol,
        indicator: spec.name,
        tf: tf.name(),
        values,
        next_from,
    }))
}

/// The `params` texts a requested parameter set may be stored under. The processors store
/// the parameters their configuration names (`IndicatorChoice::params`, in name order,
/// formatted as Rust prints an `f64`), which may be only the overrides of the defaults or
/// all of them; so a request such as `period=14` for RSI matches the set stored as `""`
/// (defaults) as well as `period=14`. Checked against the registry (names, bounds,
/// consistency) first.
fn stored_params(spec: &IndicatorSpec, raw: &str) -> Result<Vec<String>, String> {
    let mut given = Vec::new();
    for part in raw.split(',') {
        let (key, value) = part.split_once('=').ok_or_else(|| {
            format!("{part:?} is not name=value (e.g. period=14, or fast=12,slow=26)")
        })?;
        let value: f64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{value:?} is not a number"))?;
        given.push((key.trim().to_owned(), value));
    }
    registry_::build(spec.name, &given).map_err(|e| e.to_string())?;
    let text = |pairs: &BTreeMap<&str, f64>| {
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let as_given: BTreeMap<&str, f64> = given.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut effective: BTreeMap<&str, f64> =
        spec.params.iter().map(|p| (p.name, p.default)).collect();
    effective.extend(as_given.iter().map(|(k, v)| (*k, *v)));
    let overrides: BTreeMap<&str, f64> = effective
        .iter()
        .filter(|(k, v)| {
            spec.params
                .iter()
                .any(|p| p.name == **k && p.default != **v)
        })
        .map(|(k, v)| (*k, *v))
        .collect();
    let mut candidates = vec![text(&overrides), text(&effective), text(&as_given)];
    candidates.sort();
    candidates.dedup();
    Ok(candidates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> &'static IndicatorSpec {
        registry_::spec(name).expect("registered")
    }

    #[test]
    fn a_parameter_set_matches_its_stored_forms() {
        assert_eq!(
            stored_params(spec("rsi"), "period=14"),
            Ok(vec![String::new(), "period=14".into()])
        );
        assert_eq!(
            stored_params(spec("ema"), "period=9"),
            Ok(vec!["period=9".into()])
        );
        assert_eq!(
            stored_params(spec("macd"), "slow=30, fast=12"),
            Ok(vec![
                "fast=12,signal=9,slow=30".into(),
                "fast=12,slow=30".into(),
                "slow=30".into(),
            ])
        );
        assert_eq!(
            stored_params(spec("bbands"), "nbdev_up=2.5"),
            Ok(vec![
                "nbdev_dn=2,nbdev_up=2.5,period=20".into(),
                "nbdev_up=2.5".into(),
            ])
        );
    }

    #[test]
    fn a_bad_parameter_set_says_why() {
        for bad in ["period", "period=x", "length=3", "period=1", "period=2.5"] {
            assert!(stored_params(spec("rsi"), bad).is_err(), "{bad}");
        }
        assert!(stored_params(spec("macd"), "fast=30,slow=12").is_err());
    }
}
