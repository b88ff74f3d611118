//! A seeded, deterministic market of NSE index derivatives that looks and behaves like a
//! NIFTY/BANKNIFTY session: spot indices, near/next/far futures and full option chains.
//!
//! Pure: no clock and no I/O. The same seed and settings give the same instruments and the
//! same tick sequence, which is what the end-to-end tests count on.
//!
//! How the market works, and where each part lives:
//! - **Settings** (`config.rs`): [`SimulatorConfig`], checked by [`SimulatorConfig::validate`]
//!   before anything is listed.
//! - **Listing** (`listing.rs`, at construction): per underlying its index, `futures` monthly
//!   futures and options ±`strikes_each_side` strikes around the opening spot for the next
//!   weekly and monthly expiries (NSE rules: Tuesday expiries moved back over the configured
//!   holidays, see [`crate::calendar`]), Kite trading symbols and Kite-style tokens
//!   (`exchange_token << 8 | segment`; derived from the trading symbol, so a contract keeps
//!   its token whatever else is listed). Lot sizes are written into the master only.
//! - **Prices** (`pricing.rs`): a future is the spot carried at `carry_rate` to its expiry; an
//!   option is Black-76 (r = 0, the brokers' convention) on the same forward, with a
//!   volatility smile (put skew, curvature) in standardised moneyness and an upward-sloping
//!   ATM term structure. Quotes are rebuilt only for the instrument that ticks, from
//!   per-expiry values cached once a second.
//! - **Dynamics** (`dynamics.rs`): the indices follow correlated geometric Brownian motions
//!   with a U-shaped intraday volatility, overnight gaps and optional market-wide jumps.
//!   Trades are bid-ask bounces in lots; volume is cumulative per day; open interest moves
//!   with chain-wide build-up/unwinding episodes but is published only at exchange refreshes
//!   (every `oi_refresh_secs`), ticks in between repeat it.
//! - **Activity** (`activity.rs`): instruments are drawn with weights (refreshed every minute
//!   of event time) that favour near-the-money and near-expiry contracts and the near future;
//!   each index ticks about once a second. Contracts stop ticking once they have expired.
//! - **Time** (`mod.rs`): every tick advances event time by `tick_interval_ms` inside
//!   09:15–15:30 IST, rolling to the next trading day (weekends and holidays skipped) at the
//!   close.

mod activity;
mod config;
mod dynamics;
mod listing;
mod pricing;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use chrono::NaiveDate;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use strikeflow_schemas::{Instrument, Tick};

use crate::calendar::{ist_micros, TradingCalendar, SESSION_CLOSE, SESSION_OPEN};

pub use config::{ConfigError, Listing, SimulatorConfig, SimulatorError};
pub use listing::{Underlying, BANKNIFTY_SPOT_TOKEN, NIFTY_SPOT_TOKEN};
pub use pricing::{on_grid, TICK_SIZE};

use dynamics::{ExpiryState, UnderlyingState};
use listing::{Contract, Kind};

/// Length of a session (09:15–15:30) in micros: bounds the configured intervals and scales
/// the jump rate.
const SESSION_MICROS: i64 = 375 * 60 * 1_000_000;

/// The simulated market: instruments plus the state of their prices, volume and OI.
#[derive(Debug, Clone)]
pub struct MarketSimulator {
    instruments: Vec<Instrument>,
    contracts: Vec<Contract>,
    underlyings: Vec<UnderlyingState>,
    expiries: Vec<ExpiryState>,
    calendar: TradingCalendar,
    rng: SmallRng,
    // Clock.
    session_date: NaiveDate,
    day_number: i64,
    day_open: i64,
    day_close: i64,
    now: i64,
    /// Event time spent in sessions since the start (overnight gaps excluded): the clock
    /// jumps are scheduled on.
    traded_micros: i64,
    interval: i64,
    next_refresh: i64,
    next_reweight: i64,
    // Tick distribution: cumulative weights of the trading contracts.
    cumulative: Vec<f64>,
    scheduled: Vec<u32>,
    index_interval: i64,
    index_gap: i64,
    // Market parameters.
    oi_refresh: i64,
    carry_rate: f64,
    skew: f64,
    smile: f64,
    term_slope: f64,
    vol_multiplier: f64,
    jump_rate: f64,
    jump_mean: f64,
    jump_vol: f64,
    /// `traded_micros` at which the next jump comes.
    next_jump: i64,
}

impl MarketSimulator {
    /// Lists the instruments of the session and places the clock at 09:15 IST.
    pub fn new(config: &SimulatorConfig) -> Result<Self, SimulatorError> {
        config.validate()?;
        let calendar = TradingCalendar::new(config.holidays.iter().copied());
        let date = calendar.trading_day_on_or_after(config.session_date);
        let day_open = ist_micros(date, SESSION_OPEN);
        let interval = config.tick_interval_ms as i64 * 1_000;
        let index_interval = config.index_interval_ms as i64 * 1_000;
        let n_underlyings = config.underlyings.len() as i64;
        let mut sim = Self {
            instruments: Vec::new(),
            contracts: Vec::new(),
            underlyings: Vec::new(),
            expiries: Vec::new(),
            calendar,
            rng: SmallRng::seed_from_u64(config.seed),
            session_date: date,
            day_number: 0,
            day_open,
            day_close: ist_micros(date, SESSION_CLOSE),
            now: day_open,
            traded_micros: 0,
            interval,
            next_refresh: day_open,
            next_reweight: day_open,
            cumulative: Vec::new(),
            scheduled: Vec::new(),
            index_interval,
            // With coarse ticks the indices would take every slot: each then ticks at most
            // once in 3 × (number of indices) ticks.
            index_gap: 3 * n_underlyings * interval,
            oi_refresh: config.oi_refresh_secs as i64 * 1_000_000,
            carry_rate: config.carry_rate,
            skew: config.skew,
            smile: config.smile,
            term_slope: config.term_slope,
            vol_multiplier: 1.0,
            jump_rate: config.jumps_per_day / SESSION_MICROS as f64,
            jump_mean: config.jump_mean,
            jump_vol: config.jump_vol,
            next_jump: i64::MAX,
        };
        let mut used_tokens = HashSet::new();
        for (k, &underlying) in config.underlyings.iter().enumerate() {
            let (spot, vol) = config.spot_and_vol(underlying);
            // The first index is the market factor itself; the others load on it.
            let correlation = if k == 0 {
                1.0
            } else {
                config.index_correlation
            };
            // Indices tick at evenly spread offsets, so they do not tick together.
            let index_offset = index_interval * k as i64 / n_underlyings;
            sim.underlyings.push(UnderlyingState::new(
                underlying,
                spot,
                vol,
                correlation,
                sim.contracts.len(),
                day_open,
                index_offset,
            ));
            sim.list(k, config, &mut used_tokens);
        }
        sim.refresh();
        sim.open_book(config.seed);
        sim.schedule_jump();
        Ok(sim)
    }

    /// The instrument master of the simulated session.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// Advances the market by one tick interval and returns the next instrument's tick.
    pub fn next_tick(&mut self) -> Tick {
        self.advance_clock();
        if self.now >= self.next_refresh {
            self.refresh();
        }
        self.move_spots();
        let i = self.pick();
        if self.contracts[i].kind == Kind::Index {
            let u = &self.underlyings[self.contracts[i].underlying];
            Tick {
                instrument_token: self.instruments[i].instrument_token,
                exchange_ts: self.now,
                ltp: on_grid(u.spot),
                last_qty: 0,
                volume: 0,
                oi: 0,
                bid: 0.0,
                bid_qty: 0,
                ask: 0.0,
                ask_qty: 0,
            }
        } else {
            self.trade(i)
        }
    }

    /// The close (15:30 IST) of the current session once its last tick has been generated:
    /// the next tick would roll to the next trading day. The simulate loop writes the
    /// end-of-session marker then, right after the session's last tick, instead of leaving
    /// the last minute open until the next session's first tick.
    pub fn session_over(&self) -> Option<i64> {
        (self.now.saturating_add(self.interval) >= self.day_close).then_some(self.day_close)
    }

    /// Moves event time forward, rolling from 15:30 to the next trading day's 09:15.
    fn advance_clock(&mut self) {
        self.now += self.interval;
        self.traded_micros += self.interval;
        if self.now >= self.day_close {
            self.roll_day();
        }
    }

    /// A new session: volume restarts, the indices gap, the distribution drops expired
    /// contracts.
    fn roll_day(&mut self) {
        self.session_date = self.calendar.next_trading_day(self.session_date);
        self.day_number += 1;
        self.day_open = ist_micros(self.session_date, SESSION_OPEN);
        self.day_close = ist_micros(self.session_date, SESSION_CLOSE);
        self.now = self.day_open;
        self.next_refresh = self.now;
        self.next_reweight = self.now;
        for c in &mut self.contracts {
            c.volume = 0;
        }
        self.gap_overnight();
    }
}
