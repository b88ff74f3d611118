//! The option chain of one expiry as of a moment, and the chains of the nearest expiries.
//!
//! "The chain as of T" is each option's latest `strike_analytics` row at or before T (an
//! option is emitted only when its data changed), beside the chain's latest
//! `chain_analytics` row at or before T: the rule of `chain_at()` in
//! `migrations/0005_analyst_functions.sql`, with the same plan (one primary-key probe per
//! option of `instrument_history`). The statement is written here rather than calling
//! `chain_at()` because the chain view needs columns that function leaves out: the LTP
//! change, bid/ask, the no-IV reason, every Greek, strike PCR and GEX.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde::Serialize;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use super::col;
use crate::cache::{cache_key, cached};
use crate::db::Sql;
use crate::error::Problem;
use crate::openapi;
use crate::params::{self, Params};
use crate::server::App;

/// The chain-wide analytics of one emission (`chain_analytics`).
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    /// When this emission was made.
    ts: DateTime<Utc>,
    time_to_expiry: f64,
    spot: Option<f64>,
    future: Option<f64>,
    parity_forward: Option<f64>,
    reference_price: f64,
    reference_kind: String,
    atm_strike: f64,
    pcr_oi: Option<f64>,
    pcr_volume: Option<f64>,
    max_pain: Option<f64>,
    atm_straddle: Option<f64>,
    implied_move_pct: Option<f64>,
    atm_iv: Option<f64>,
    skew_25d: Option<f64>,
    support: Option<f64>,
    resistance: Option<f64>,
    basis: Option<f64>,
    annualised_carry: Option<f64>,
    net_gex: Option<f64>,
    total_ce_oi: i64,
    total_pe_oi: i64,
    ce_oi_change_prev_close: Option<i64>,
    pe_oi_change_prev_close: Option<i64>,
}

impl Summary {
    fn from_row(row: &Row) -> Result<Option<Self>, Problem> {
        let Some(ts) = col::<Option<DateTime<Utc>>>(row, "h_ts")? else {
            return Ok(None);
        };
        Ok(Some(Self {
            ts,
            time_to_expiry: col(row, "time_to_expiry")?,
            spot: col(row, "spot")?,
            future: col(row, "future")?,
            parity_forward: col(row, "parity_forward")?,
            reference_price: col(row, "reference_price")?,
            reference_kind: col(row, "reference_kind")?,
            atm_strike: col(row, "atm_strike")?,
            pcr_oi: col(row, "pcr_oi")?,
            pcr_volume: col(row, "pcr_volume")?,
            max_pain: col(row, "max_pain")?,
            atm_straddle: col(row, "atm_straddle")?,
            implied_move_pct: col(row, "implied_move_pct")?,
            atm_iv: col(row, "atm_iv")?,
            skew_25d: col(row, "skew_25d")?,
            support: col(row, "support")?,
            resistance: col(row, "resistance")?,
            basis: col(row, "basis")?,
            annualised_carry: col(row, "annualised_carry")?,
            net_gex: col(row, "net_gex")?,
            total_ce_oi: col(row, "total_ce_oi")?,
            total_pe_oi: col(row, "total_pe_oi")?,
            ce_oi_change_prev_close: col(row, "ce_oi_change_prev_close")?,
            pe_oi_change_prev_close: col(row, "pe_oi_change_prev_close")?,
        }))
    }
}

/// One option's latest row (`strike_analytics`).
#[derive(Debug, Serialize)]
pub(crate) struct Quote {
    instrument_token: i64,
    tradingsymbol: String,
    /// When this row was emitted.
    ts: DateTime<Utc>,
    ltp: f64,
    ltp_change_prev_close: Option<f64>,
    oi: i64,
    oi_change_prev_close: Option<i64>,
    oi_change_window: Option<i64>,
    volume: i64,
    bid: f64,
    ask: f64,
    iv: Option<f64>,
    no_iv_reason: Option<String>,
    delta: Option<f64>,
    gamma: Option<f64>,
    theta: Option<f64>,
    vega: Option<f64>,
    rho: Option<f64>,
    build_up: String,
    strike_pcr: Option<f64>,
    gex: Option<f64>,
}

impl Quote {
    fn from_row(row: &Row) -> Result<Option<(f64, String, Self)>, Problem> {
        let Some(ts) = col::<Option<DateTime<Utc>>>(row, "ts")? else {
            return Ok(None);
        };
        let quote = Self {
            instrument_token: col(row, "instrument_token")?,
            tradingsymbol: col(row, "tradingsymbol")?,
            ts,
            ltp: col(row, "ltp")?,
            ltp_change_prev_close: col(row, "ltp_change_prev_close")?,
            oi: col(row, "oi")?,
            oi_change_prev_close: col(row, "oi_change_prev_close")?,
            oi_change_window: col(row, "oi_change_window")?,
            volume: col(row, "volume")?,
            bid: col(row, "bid")?,
            ask: col(row, "ask")?,
            iv: col(row, "iv")?,
            no_iv_reason: col(row, "no_iv_reason")?,
            delta: col(row, "delta")?,
            gamma: col(row, "gamma")?,
            theta: col(row, "theta")?,
            vega: col(row, "vega")?,
            rho: col(row, "rho")?,
            build_up: col(row, "build_up")?,
            strike_pcr: col(row, "strike_pcr")?,
            gex: col(row, "gex")?,
        };
        Ok(Some((col(row, "strike")?, col(row, "option_type")?, quote)))
    }
}

/// One strike: the call and the put side by side (null on a side without a row yet).
#[derive(Debug, Serialize)]
pub(crate) struct Strike {
    strike: f64,
    ce: Option<Quote>,
    pe: Option<Quote>,
}

/// One expiry's chain.
#[derive(Debug, Serialize)]
pub(crate) struct Chain {
    expiry: NaiveDate,
    /// Null before the chain's first emission.
    summary: Option<Summary>,
    strikes: Vec<Strike>,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChainAnswer {
    underlying: String,
    /// The moment asked for; null for the newest stored state.
    at: Option<DateTime<Utc>>,
    #[serde(flatten)]
    chain: Chain,
}

#[derive(Debug, Serialize)]
pub(crate) struct ChainsAnswer {
    underlying: String,
    at: Option<DateTime<Utc>>,
    chains: Vec<Chain>,
}

/// The summary columns, prefixed where they would clash with an option's.
macro_rules! summary_columns {
    () => {
        "h.ts AS h_ts, h.time_to_expiry, h.spot, h.future, h.parity_forward, h.reference_price,
       h.reference_kind, h.atm_strike, h.pcr_oi, h.pcr_volume, h.max_pain, h.atm_straddle,
       h.implied_move_pct, h.atm_iv, h.skew_25d, h.support, h.resistance, h.basis,
       h.annualised_carry, h.net_gex, h.total_ce_oi, h.total_pe_oi, h.ce_oi_change_prev_close,
       h.pe_oi_change_prev_close"
    };
}

macro_rules! quote_columns {
    () => {
        "l.ts, l.instrument_token, l.tradingsymbol, l.strike, l.option_type, l.ltp,
       l.ltp_change_prev_close, l.oi, l.oi_change_prev_close, l.oi_change_window, l.volume, l.bid,
       l.ask, l.iv, l.no_iv_reason, l.delta, l.gamma, l.theta, l.vega, l.rho, l.build_up,
       l.strike_pcr, l.gex"
    };
}

const CHAIN: Sql = Sql {
    name: "chain",
    text: concat!(
        "WITH options AS (
    SELECT DISTINCT h.instrument_token FROM instrument_history h
    WHERE h.name = $1 AND h.expiry = $2 AND h.instrument_type IN ('CE', 'PE')
), latest AS (
    SELECT s.* FROM options o
    CROSS JOIN LATERAL (
        SELECT a.* FROM strike_analytics a
        WHERE a.instrument_token = o.instrument_token
          AND a.underlying = $1 AND a.expiry = $2
          AND a.ts <= coalesce($3, 'infinity'::timestamptz)
        ORDER BY a.ts DESC LIMIT 1) s
)
SELECT EXISTS (SELECT 1 FROM options) AS known, $2 AS expiry, ",
        summary_columns!(),
        ", ",
        quote_columns!(),
        "
FROM (SELECT 1) one
LEFT JOIN LATERAL (
    SELECT c.* FROM chain_analytics c
    WHERE c.underlying = $1 AND c.expiry = $2 AND c.ts <= coalesce($3, 'infinity'::timestamptz)
    ORDER BY c.ts DESC LIMIT 1) h ON true
LEFT JOIN latest l ON true
ORDER BY l.strike, l.option_type"
    ),
    types: &[Type::TEXT, Type::DATE, Type::TIMESTAMPTZ],
};

/// `GET /api/v1/chain?underlying=&expiry=&at=`: one expiry's chain, newest stored or as of
/// `at`.
pub(crate) async fn chain(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let params = Params::strict(query.as_deref(), openapi::CHAIN.params)?;
    let underlying = params.need("underlying", params::underlying)?;
    let expiry = params.need("expiry", params::date)?;
    let at = params.get("at", params::time)?;
    let key = cache_key(&("chain", &underlying, expiry, at))?;
    cached(&app, key, async {
        let rows = app.db.query(&CHAIN, &[&underlying, &expiry, &at]).await?;
        if !super::known(&rows)? {
            return Err(Problem::unknown(
                "unknown_chain",
                "expiry",
                format!("no {underlying} options expiring {expiry} are stored"),
            ));
        }
        let mut chains = group(&rows)?;
        let chain = chains.pop().ok_or_else(Problem::internal)?;
        Ok(ChainAnswer {
            underlying: underlying.clone(),
            at,
            chain,
        })
    })
    .await
}

const CHAINS: Sql = Sql {
    name: "chains",
    text: concat!(
        "WITH expiries AS (
    SELECT DISTINCT h.expiry FROM instrument_history h
    WHERE h.name = $1 AND h.instrument_type IN ('CE', 'PE') AND h.expiry >= $2
    ORDER BY h.expiry LIMIT $3
), options AS (
    SELECT DISTINCT h.expiry, h.instrument_token FROM instrument_history h
    JOIN expiries e ON e.expiry = h.expiry
    WHERE h.name = $1 AND h.instrument_type IN ('CE', 'PE')
), latest AS (
    SELECT s.* FROM options o
    CROSS JOIN LATERAL (
        SELECT a.* FROM strike_analytics a
        WHERE a.instrument_token = o.instrument_token
          AND a.underlying = $1 AND a.expiry = o.expiry
          AND a.ts <= coalesce($4, 'infinity'::timestamptz)
        ORDER BY a.ts DESC LIMIT 1) s
)
SELECT k.known, e.expiry, ",
        summary_columns!(),
        ", ",
        quote_columns!(),
        "
FROM (SELECT EXISTS (SELECT 1 FROM instrument_history WHERE name = $1) AS known) k
LEFT JOIN expiries e ON true
LEFT JOIN LATERAL (
    SELECT c.* FROM chain_analytics c
    WHERE c.underlying = $1 AND c.expiry = e.expiry
      AND c.ts <= coalesce($4, 'infinity'::timestamptz)
    ORDER BY c.ts DESC LIMIT 1) h ON true
LEFT JOIN latest l ON l.expiry = e.expiry
ORDER BY e.expiry, l.strike, l.option_type"
    ),
    types: &[Type::TEXT, Type::DATE, Type::INT8, Type::TIMESTAMPTZ],
};

/// Default `expiries` of `/chains`.
const DEFAULT_EXPIRIES: usize = 5;

/// `GET /api/v1/chains?underlying=&expiries=&at=`: the chains of the `expiries` nearest
/// expiries not yet expired on `at`'s trading day (today's without `at`), each newest
/// stored or as of `at`.
pub(crate) async fn chains(
    State(app): State<Arc<App>>,
    RawQuery(query): RawQuery,
) -> Result<Response, Problem> {
    let params = Params::strict(query.as_deref(), openapi::CHAINS.params)?;
    let underlying = params.need("underlying", params::underlying)?;
    let max = app.settings.max_chain_expiries;
    let count = params
        .get("expiries", |raw| params::count(raw, 1, max))?
        .unwrap_or(DEFAULT_EXPIRIES.min(max));
    let at = params.get("at", params::time)?;
    let day = ist_day(at.unwrap_or_else(Utc::now));
    let count = i64::try_from(count).map_err(|_| Problem::internal())?;
    let key = cache_key(&("chains", &underlying, count, day, at))?;
    cached(&app, key, async {
        let rows = app
            .db
            .query(&CHAINS, &[&underlying, &day, &count, &at])
            .await?;
        if !super::known(&rows)? {
            return Err(super::instruments::unknown_underlying(&underlying));
        }
        Ok(ChainsAnswer {
            underlying: underlying.clone(),
            at,
            chains: group(&rows)?,
        })
    })
    .await
}

/// The trading day (IST) of an instant.
pub(crate) fn ist_day(t: DateTime<Utc>) -> NaiveDate {
    t.checked_add_signed(TimeDelta::minutes(330))
        .unwrap_or(t)
        .date_naive()
}

/// Rows ordered by expiry, strike and side into chains of strikes.
fn group(rows: &[Row]) -> Result<Vec<Chain>, Problem> {
    let mut chains: Vec<Chain> = Vec::new();
    for row in rows {
        let Some(expiry) = col::<Option<NaiveDate>>(row, "expiry")? else {
            continue;
        };
        if chains.last().is_none_or(|c| c.expiry != expiry) {
            chains.push(Chain {
                expiry,
                summary: Summary::from_row(row)?,
                strikes: Vec::new(),
            });
        }
        let Some((strike, side, quote)) = Quote::from_row(row)? else {
            continue;
        };
        let chain = chains.last_mut().ok_or_else(Problem::internal)?;
        if chain.strikes.last().is_none_or(|s| s.strike != strike) {
            chain.strikes.push(Strike {
                strike,
                ce: None,
                pe: None,
            });
        }
        let entry = chain.strikes.last_mut().ok_or_else(Problem::internal)?;
        match side.as_str() {
            "CE" => entry.ce = Some(quote),
            _ => entry.pe = Some(quote),
        }
    }
    Ok(chains)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_trading_day_is_the_ist_date() {
        let late_utc = Utc
            .with_ymd_and_hms(2026, 12, 1, 19, 0, 0)
            .single()
            .expect("time");
        assert_eq!(
            ist_day(late_utc),
            NaiveDate::from_ymd_opt(2026, 12, 2).expect("date")
        );
    }
}
