//! Tests of the simulated market, one file per concern of the simulator, plus the helpers
//! they share.

mod activity;
mod config;
mod dynamics;
mod listing;
mod pricing;
mod session;

use chrono::NaiveDate;

use crate::calendar::{ist_micros, IST, SESSION_OPEN};
use crate::simulator::MarketSimulator;

/// A calendar date, for brevity.
fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

/// Position of a listed instrument.
fn position(sim: &MarketSimulator, symbol: &str) -> usize {
    sim.instruments()
        .iter()
        .position(|i| i.tradingsymbol == symbol)
        .unwrap_or_else(|| panic!("{symbol} is listed"))
}

/// Instrument token of a listed instrument.
fn token_of(sim: &MarketSimulator, symbol: &str) -> i64 {
    sim.instruments()[position(sim, symbol)].instrument_token
}

/// IST calendar date of a timestamp and its micros since that day's 09:15 open.
fn session_position(ts: i64) -> (NaiveDate, i64) {
    let local = chrono::DateTime::from_timestamp_micros(ts)
        .unwrap()
        .with_timezone(&IST);
    let date = local.date_naive();
    (date, ts - ist_micros(date, SESSION_OPEN))
}
