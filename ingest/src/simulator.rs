//! A seeded, deterministic market of NSE index derivatives that looks and behaves like a
//! NIFTY/BANKNIFTY session: spot indices, near/next/far futures and full option chains.
//!
//! Pure: no clock and no I/O. The same seed and settings give the same instruments and the
//! same tick sequence, which is what the end-to-end tests count on.
//!
//! How the market works:
//! - **Listing** (at construction): per underlying its index, `futures` monthly futures and
//!   options ±`strikes_each_side` strikes around the opening spot for the next weekly and
//!   monthly expiries (NSE rules: Tuesday expiries moved back over the configured holidays,
//!   see [`crate::calendar`]), Kite trading symbols and Kite-style tokens
//!   (`exchange_token << 8 | segment`; derived from the trading symbol, so a contract keeps
//!   its token whatever else is listed). Lot sizes are written into the master only.
//! - **Prices**: the indices follow correlated geometric Brownian motions with a U-shaped
//!   intraday volatility, overnight gaps and optional market-wide jumps. A future is the
//!   spot carried at `carry_rate` to its expiry; an option is Black-76 (r = 0, the brokers'
//!   convention) on the same forward, with a volatility smile (put skew, curvature) in
//!   standardised moneyness and an upward-sloping ATM term structure. Quotes are rebuilt
//!   only for the instrument that ticks, from per-expiry values cached once a second.
//! - **Activity**: instruments are drawn with weights (refreshed every minute of event time)
//!   that favour near-the-money and near-expiry contracts and the near future; each index
//!   ticks about once a second. Contracts stop ticking once they have expired.
//! - **Trading**: trades are bid-ask bounces in lots; volume is cumulative per day; bid-ask
//!   spreads widen away from the money and with time to expiry; open interest moves with
//!   chain-wide build-up/unwinding episodes but is published only at exchange refreshes
//!   (every `oi_refresh_secs`), ticks in between repeat it.
//! - **Time**: every tick advances event time by `tick_interval_ms` inside 09:15–15:30 IST,
//!   rolling to the next trading day (weekends and holidays skipped) at the close.

use std::collections::HashSet;

use chrono::NaiveDate;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::Deserialize;
use strikeflow_schemas::{days_from_date, Instrument, InstrumentType, Tick};

use crate::calendar::{
    default_holidays, future_symbol, ist_micros, option_symbol, TradingCalendar, SESSION_CLOSE,
    SESSION_OPEN,
};

/// Kite's instrument token of the NIFTY 50 index (segment 9, indices).
pub const NIFTY_SPOT_TOKEN: i64 = 256_265;
/// Kite's instrument token of the NIFTY BANK index (segment 9, indices).
pub const BANKNIFTY_SPOT_TOKEN: i64 = 260_105;
/// NSE tick size in rupees: every simulated price is a multiple of it.
pub const TICK_SIZE: f64 = 0.05;

/// Kite segment of NSE futures and options (the low byte of their tokens).
const NFO_SEGMENT: i64 = 2;
/// Exchange tokens of simulated derivatives are drawn from this range (NFO tokens are five
/// to six digits), which keeps `token << 8` far inside Kite's signed 32-bit packets.
const EXCHANGE_TOKEN_BASE: i64 = 35_000;
const EXCHANGE_TOKEN_SPAN: i64 = 1 << 16;

/// ACT/365 year in micros: time to expiry for pricing.
const MICROS_PER_YEAR: f64 = 365.0 * 86_400.0 * 1e6;
/// Trading time in a year, 252 sessions of 375 minutes: volatility accrues while trading.
const TRADING_MICROS_PER_YEAR: f64 = 252.0 * 375.0 * 60.0 * 1e6;
/// Floor on time to expiry (one minute), so expiry-day prices stay finite up to 15:30.
const MIN_YEARS: f64 = 60e6 / MICROS_PER_YEAR;
/// How often per-expiry caches and the intraday volatility are refreshed.
const REFRESH_MICROS: i64 = 1_000_000;
/// How often the tick distribution follows the market (moneyness, time to expiry).
const REWEIGHT_MICROS: i64 = 60_000_000;
/// OI refresh epochs per day never exceed this (refresh ≥ 1 s, a session is 22,500 s).
const EPOCHS_PER_DAY: i64 = 1_000_000;
/// Length of a session (09:15–15:30) in micros.
const SESSION_MICROS: i64 = 375 * 60 * 1_000_000;
/// Term structure: ATM volatility goes from `(1 - term_slope)` to `(1 + term_slope)` times
/// the base with this time constant (30 days).
const TERM_TAU_YEARS: f64 = 30.0 / 365.0;
/// Activity of the near, next and far futures relative to the most active option.
const FUTURE_ACTIVITY: [f64; 3] = [1.5, 0.15, 0.04];
/// Bid-ask spread of the near, next and far futures, in ticks.
const FUTURE_SPREAD_TICKS: [i64; 3] = [2, 6, 12];

/// An index whose derivatives the simulator lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Underlying {
    /// NIFTY 50: weekly and monthly options, 50-point strikes, lot 65.
    #[serde(rename = "NIFTY")]
    Nifty,
    /// NIFTY BANK: monthly options, 100-point strikes, lot 30.
    #[serde(rename = "BANKNIFTY")]
    BankNifty,
}

impl Underlying {
    /// The underlying's name in the instrument master (`name` of its derivatives).
    pub fn name(self) -> &'static str {
        match self {
            Self::Nifty => "NIFTY",
            Self::BankNifty => "BANKNIFTY",
        }
    }

    fn index_symbol(self) -> &'static str {
        match self {
            Self::Nifty => "NIFTY 50",
            Self::BankNifty => "NIFTY BANK",
        }
    }

    fn index_token(self) -> i64 {
        match self {
            Self::Nifty => NIFTY_SPOT_TOKEN,
            Self::BankNifty => BANKNIFTY_SPOT_TOKEN,
        }
    }

    fn strike_step(self) -> f64 {
        match self {
            Self::Nifty => 50.0,
            Self::BankNifty => 100.0,
        }
    }

    /// Lot size as of the Jan-2026 expiry; it is only ever written into the master.
    fn lot_size(self) -> i32 {
        match self {
            Self::Nifty => 65,
            Self::BankNifty => 30,
        }
    }

    /// Share of trading relative to NIFTY.
    fn activity(self) -> f64 {
        match self {
            Self::Nifty => 1.0,
            Self::BankNifty => 0.6,
        }
    }

    /// Open interest (units) of an at-the-money near-expiry strike and of the near future.
    fn oi_scale(self) -> (f64, f64) {
        match self {
            Self::Nifty => (6_000_000.0, 14_000_000.0),
            Self::BankNifty => (1_500_000.0, 2_500_000.0),
        }
    }
}

/// Which contracts of one underlying are listed. A table lists exactly what it says: a key
/// left out lists none of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default)]
pub struct Listing {
    /// Weekly option expiries (Tuesdays other than the month's last), nearest first.
    pub weekly_expiries: u32,
    /// Monthly option expiries (the month's last Tuesday), nearest first.
    pub monthly_expiries: u32,
    /// Monthly futures: 3 = near, next and far month.
    pub futures: u32,
}

/// Settings of the simulated market. Every field has a default (see [`Default`]), so a
/// configuration only names what it changes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SimulatorConfig {
    /// Seed of every random choice: same seed, same ticks.
    pub seed: u64,
    /// Trading day the session starts on (weekends and holidays roll forward).
    pub session_date: NaiveDate,
    /// NIFTY spot at the open.
    pub spot_open: f64,
    /// Annualised volatility of NIFTY: of the spot walk and the level of its ATM implied
    /// volatility.
    pub annual_vol: f64,
    /// Strikes listed on each side of the at-the-money strike, per expiry.
    pub strikes_each_side: u32,
    /// Event time between two consecutive ticks, in milliseconds. The default, 5 ms, is 200
    /// ticks per second across the whole market (the busiest contracts a few a second, as a
    /// Kite feed delivers them); published at 200 ticks/s it runs in real time.
    pub tick_interval_ms: u64,
    /// Underlyings listed, in this order in the master.
    pub underlyings: Vec<Underlying>,
    /// NIFTY contracts listed.
    pub nifty: Listing,
    /// BANKNIFTY contracts listed.
    pub banknifty: Listing,
    /// NIFTY BANK spot at the open.
    pub banknifty_spot_open: f64,
    /// Annualised volatility of NIFTY BANK.
    pub banknifty_annual_vol: f64,
    /// Correlation of NIFTY BANK's moves with NIFTY's.
    pub index_correlation: f64,
    /// Trading holidays (weekends are always closed); the default is the configured list
    /// of [`crate::calendar::default_holidays`].
    pub holidays: Vec<NaiveDate>,
    /// Annual cost of carry (rate minus dividend yield): futures and forwards are
    /// `spot · e^(carry_rate · T)`.
    pub carry_rate: f64,
    /// Put skew: relative rise of implied volatility per standard deviation of moneyness
    /// below the forward (and fall above it).
    pub skew: f64,
    /// Smile curvature: relative rise of implied volatility per squared standard deviation.
    pub smile: f64,
    /// ATM term structure: implied volatility runs from `(1 - term_slope)` (expiring) to
    /// `(1 + term_slope)` (long-dated) times the underlying's volatility.
    pub term_slope: f64,
    /// Expected market-wide jumps per session (0 disables jumps).
    pub jumps_per_day: f64,
    /// Mean log-size of a jump (negative: markets gap down more than up).
    pub jump_mean: f64,
    /// Standard deviation of a jump's log-size.
    pub jump_vol: f64,
    /// Seconds between the exchange's open-interest refreshes.
    pub oi_refresh_secs: u64,
    /// Event time between two ticks of an index, in milliseconds.
    pub index_interval_ms: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            session_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
            spot_open: 24_500.0,
            annual_vol: 0.13,
            strikes_each_side: 20,
            tick_interval_ms: 5,
            underlyings: vec![Underlying::Nifty, Underlying::BankNifty],
            nifty: Listing {
                weekly_expiries: 4,
                monthly_expiries: 3,
                futures: 3,
            },
            banknifty: Listing {
                weekly_expiries: 0,
                monthly_expiries: 3,
                futures: 3,
            },
            banknifty_spot_open: 55_000.0,
            banknifty_annual_vol: 0.15,
            index_correlation: 0.75,
            holidays: default_holidays(),
            carry_rate: 0.065,
            skew: 0.15,
            smile: 0.04,
            term_slope: 0.1,
            jumps_per_day: 0.5,
            jump_mean: -0.002,
            jump_vol: 0.004,
            oi_refresh_secs: 180,
            index_interval_ms: 1_000,
        }
    }
}

impl SimulatorConfig {
    /// The smallest market with a chain: the NIFTY index, its near future and one weekly
    /// expiry of ±2 strikes (12 instruments) at 100 ms a tick, from Wednesday 2 Dec 2026 (so
    /// the weekly has six days to run and all its strikes trade every minute; on expiry day
    /// only the ATM strikes would). End-to-end tests pin it so their counts stay small and
    /// their arithmetic holds.
    pub fn single_chain() -> Self {
        Self {
            session_date: NaiveDate::from_ymd_opt(2026, 12, 2).unwrap_or_default(),
            strikes_each_side: 2,
            tick_interval_ms: 100,
            underlyings: vec![Underlying::Nifty],
            nifty: Listing {
                weekly_expiries: 1,
                monthly_expiries: 0,
                futures: 1,
            },
            ..Self::default()
        }
    }

    fn listing(&self, underlying: Underlying) -> Listing {
        match underlying {
            Underlying::Nifty => self.nifty,
            Underlying::BankNifty => self.banknifty,
        }
    }

    fn spot_and_vol(&self, underlying: Underlying) -> (f64, f64) {
        match underlying {
            Underlying::Nifty => (self.spot_open, self.annual_vol),
            Underlying::BankNifty => (self.banknifty_spot_open, self.banknifty_annual_vol),
        }
    }

    fn validate(&self) -> Result<(), SimulatorError> {
        let check = |ok: bool, why: &'static str| {
            if ok {
                Ok(())
            } else {
                Err(SimulatorError::Invalid(why))
            }
        };
        let finite = |x: f64, lo: f64, hi: f64| x.is_finite() && x >= lo && x <= hi;
        check(
            self.spot_open.is_finite() && self.spot_open > 0.0,
            "spot_open must be a positive price",
        )?;
        check(
            self.banknifty_spot_open.is_finite() && self.banknifty_spot_open > 0.0,
            "banknifty_spot_open must be a positive price",
        )?;
        for vol in [self.annual_vol, self.banknifty_annual_vol] {
            check(
                vol.is_finite() && vol > 0.0 && vol < 5.0,
                "annual_vol and banknifty_annual_vol must be in (0, 5)",
            )?;
        }
        check(
            (1..=SESSION_MICROS as u64 / 1_000).contains(&self.tick_interval_ms),
            "tick_interval_ms must be positive and at most a session (22,500,000)",
        )?;
        check(
            (1..=SESSION_MICROS as u64 / 1_000).contains(&self.index_interval_ms),
            "index_interval_ms must be positive and at most a session (22,500,000)",
        )?;
        check(
            (1..=SESSION_MICROS as u64 / 1_000_000).contains(&self.oi_refresh_secs),
            "oi_refresh_secs must be positive and at most a session (22,500)",
        )?;
        check(
            self.strikes_each_side <= 500,
            "strikes_each_side must be at most 500",
        )?;
        check(
            !self.underlyings.is_empty(),
            "underlyings must not be empty",
        )?;
        let distinct: HashSet<_> = self.underlyings.iter().collect();
        check(
            distinct.len() == self.underlyings.len(),
            "underlyings must not repeat",
        )?;
        for listing in [self.nifty, self.banknifty] {
            check(
                listing.weekly_expiries <= 52 && listing.monthly_expiries <= 24,
                "at most 52 weekly and 24 monthly expiries",
            )?;
            check(listing.futures <= 3, "at most 3 futures (near, next, far)")?;
        }
        check(
            finite(self.index_correlation, -1.0, 1.0),
            "index_correlation must be in [-1, 1]",
        )?;
        check(
            finite(self.carry_rate, -0.5, 0.5),
            "carry_rate must be in [-0.5, 0.5]",
        )?;
        check(
            finite(self.skew, -1.0, 1.0) && finite(self.smile, 0.0, 1.0),
            "skew must be in [-1, 1] and smile in [0, 1]",
        )?;
        check(
            finite(self.term_slope, -0.9, 0.9),
            "term_slope must be in [-0.9, 0.9]",
        )?;
        check(
            finite(self.jumps_per_day, 0.0, 1_000.0)
                && finite(self.jump_mean, -0.5, 0.5)
                && finite(self.jump_vol, 0.0, 0.5),
            "jumps_per_day must be in [0, 1000], jump_mean in [-0.5, 0.5], jump_vol in [0, 0.5]",
        )?;
        Ok(())
    }
}

/// Rejected simulator settings.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// A setting is outside what a market can look like.
    #[error("invalid simulator setting: {0}")]
    Invalid(&'static str),
}

/// What a listed instrument is, for pricing and scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Index,
    Future,
    Call,
    Put,
}

/// Hot state of one instrument (the master row lives in `instruments` at the same index).
#[derive(Debug, Clone)]
struct Contract {
    kind: Kind,
    underlying: usize,
    /// Into `expiries` (unused for indices).
    expiry: usize,
    /// Near = 0, next = 1, far = 2 (futures only).
    rank: usize,
    strike: f64,
    lot: i64,
    /// Traded quantity today.
    volume: i64,
    /// Open interest as last published by the exchange.
    oi: i64,
    /// Open interest as trades left it (published at the next refresh).
    oi_latent: i64,
    /// Refresh epoch `oi` belongs to.
    oi_epoch: i64,
    /// Activity weight at the last reweight (0: not trading).
    weight: f64,
}

/// Price state of one index and the schedule of its index ticks.
#[derive(Debug, Clone)]
struct UnderlyingState {
    kind: Underlying,
    spot: f64,
    vol: f64,
    /// Loadings of the log-return on the market shock and on the underlying's own shock.
    market_loading: f64,
    own_loading: f64,
    /// Per-tick log-return standard deviation and drift (refreshed with the intraday vol).
    diffusion: f64,
    drift: f64,
    /// Contract index of the index itself.
    index: usize,
    /// Event time of its next index tick.
    index_due: i64,
    /// Offset of its index ticks from the open, so indices do not tick together.
    index_offset: i64,
}

/// A build-up (+) / unwinding (−) episode: the share of traded lots that changes OI.
#[derive(Debug, Clone, Copy)]
struct Episode {
    drift: f64,
    epoch: i64,
}

/// Values shared by every contract of one (underlying, expiry), cached once a second.
#[derive(Debug, Clone)]
struct ExpiryState {
    underlying: usize,
    close_micros: i64,
    /// Years to expiry (ACT/365) and its square root, as of the last refresh.
    years: f64,
    sqrt_years: f64,
    /// At-the-money implied volatility.
    atm_vol: f64,
    /// Forward over spot.
    carry: f64,
    /// Episodes of the chain's calls, puts and future.
    episodes: [Episode; 3],
}

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
        let rho = config.index_correlation;
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
            let first = k == 0;
            let index_offset = index_interval * k as i64 / n_underlyings;
            sim.underlyings.push(UnderlyingState {
                kind: underlying,
                spot,
                vol,
                market_loading: if first { 1.0 } else { rho },
                own_loading: if first {
                    0.0
                } else {
                    (1.0 - rho * rho).max(0.0).sqrt()
                },
                diffusion: 0.0,
                drift: 0.0,
                index: sim.contracts.len(),
                index_due: day_open + index_offset,
                index_offset,
            });
            sim.list(k, config, &mut used_tokens);
        }
        sim.refresh();
        sim.open_book(config.seed);
        sim.schedule_jump();
        Ok(sim)
    }

    /// Lists underlying `k`'s index, futures and options.
    fn list(&mut self, k: usize, config: &SimulatorConfig, used: &mut HashSet<i64>) {
        let underlying = self.underlyings[k].kind;
        let name = underlying.name();
        let listing = config.listing(underlying);
        let date = self.session_date;
        let token = underlying.index_token();
        used.insert(token);
        self.push(
            Instrument {
                instrument_token: token,
                exchange_token: token >> 8,
                tradingsymbol: underlying.index_symbol().into(),
                name: name.into(),
                last_price: 0.0,
                expiry: None,
                strike: 0.0,
                tick_size: 0.0,
                lot_size: 0,
                instrument_type: InstrumentType::EQ,
                segment: "INDICES".into(),
                exchange: "NSE".into(),
            },
            Contract::new(Kind::Index, k, 0, 0, 0.0, 0),
        );

        let futures = self
            .calendar
            .monthly_expiries(date, listing.futures as usize);
        let mut option_expiries = self
            .calendar
            .weekly_expiries(date, listing.weekly_expiries as usize);
        option_expiries.extend(
            self.calendar
                .monthly_expiries(date, listing.monthly_expiries as usize),
        );
        option_expiries.sort_unstable();
        option_expiries.dedup();
        let mut dates: Vec<NaiveDate> = futures.iter().chain(&option_expiries).copied().collect();
        dates.sort_unstable();
        dates.dedup();
        let first_expiry = self.expiries.len();
        for &d in &dates {
            self.expiries.push(ExpiryState {
                underlying: k,
                close_micros: ist_micros(d, SESSION_CLOSE),
                years: 0.0,
                sqrt_years: 0.0,
                atm_vol: 0.0,
                carry: 1.0,
                episodes: [Episode {
                    drift: 0.0,
                    epoch: -1,
                }; 3],
            });
        }
        let expiry_index =
            |d: NaiveDate| first_expiry + dates.iter().position(|&x| x == d).unwrap_or(0);

        let lot = underlying.lot_size();
        for (rank, &expiry) in futures.iter().enumerate() {
            let symbol = future_symbol(name, expiry);
            self.push(
                derivative(
                    name,
                    unique_token(&symbol, used),
                    symbol,
                    expiry,
                    0.0,
                    lot,
                    InstrumentType::FUT,
                ),
                Contract::new(Kind::Future, k, expiry_index(expiry), rank, 0.0, lot),
            );
        }
        let step = underlying.strike_step();
        let atm = (self.underlyings[k].spot / step).round() * step;
        let n = i64::from(config.strikes_each_side);
        for &expiry in &option_expiries {
            let kind = self.calendar.kind_of(expiry);
            for j in -n..=n {
                let strike = atm + j as f64 * step;
                if strike <= 0.0 {
                    continue;
                }
                for (right, itype, ckind) in [
                    ("CE", InstrumentType::CE, Kind::Call),
                    ("PE", InstrumentType::PE, Kind::Put),
                ] {
                    let symbol = option_symbol(name, expiry, kind, strike, right);
                    self.push(
                        derivative(
                            name,
                            unique_token(&symbol, used),
                            symbol,
                            expiry,
                            strike,
                            lot,
                            itype,
                        ),
                        Contract::new(ckind, k, expiry_index(expiry), 0, strike, lot),
                    );
                }
            }
        }
    }

    fn push(&mut self, instrument: Instrument, contract: Contract) {
        self.instruments.push(instrument);
        self.contracts.push(contract);
    }

    /// Opening prices into the master, opening open interest (peaked near the money, calls
    /// above and puts below, heavier on round strikes and near expiries) and the opening
    /// OI episodes.
    fn open_book(&mut self, seed: u64) {
        // A stream of its own, so the book does not shift the tick sequence's randomness.
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x6f70_656e_5f62_6f6f);
        for i in 0..self.contracts.len() {
            let price = self.fair(i).0;
            self.instruments[i].last_price = on_grid(price.max(TICK_SIZE));
            let c = &self.contracts[i];
            if c.kind == Kind::Index {
                continue;
            }
            let u = &self.underlyings[c.underlying];
            let e = &self.expiries[c.expiry];
            let (option_oi, future_oi) = u.kind.oi_scale();
            let units = match c.kind {
                Kind::Index => 0.0,
                Kind::Future => future_oi * [1.0, 0.2, 0.04][c.rank.min(2)],
                Kind::Call | Kind::Put => {
                    let forward = u.spot * e.carry;
                    // Strike distance in standard deviations of the forward at expiry,
                    // with at least a week's worth so expiry day is not a single strike.
                    let sd = forward * e.atm_vol * e.sqrt_years.max((7.0f64 / 365.0).sqrt());
                    let m = (c.strike - forward) / sd;
                    let centre = if c.kind == Kind::Call { 0.5 } else { -0.5 };
                    let step = u.kind.strike_step();
                    let round = if c.strike % (10.0 * step) == 0.0 {
                        1.8
                    } else if c.strike % (2.0 * step) == 0.0 {
                        1.2
                    } else {
                        1.0
                    };
                    let days = e.years * 365.0;
                    option_oi * (-(m - centre).powi(2) / 2.0).exp() * round / (1.0 + days / 20.0)
                }
            };
            let lots = (units * rng.random_range(0.7..1.3) / c.lot as f64).round() as i64;
            let c = &mut self.contracts[i];
            c.oi = lots.max(10) * c.lot;
            c.oi_latent = c.oi;
        }
        for e in &mut self.expiries {
            let expiry_day = e.years * 365.0 < 1.0;
            for episode in &mut e.episodes {
                episode.drift = episode_drift(&mut rng, expiry_day);
            }
        }
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
        // Overnight gap: about a quarter of a session's variance.
        let z_market: f64 = self.rng.sample(StandardNormal);
        for u in &mut self.underlyings {
            let z_own: f64 = if u.own_loading > 0.0 {
                self.rng.sample(StandardNormal)
            } else {
                0.0
            };
            let sd = u.vol * (0.25 / 252.0f64).sqrt();
            u.spot *= (sd * (u.market_loading * z_market + u.own_loading * z_own)).exp();
            u.index_due = self.day_open + u.index_offset;
        }
    }

    /// Per-expiry caches and the intraday volatility; every minute also the distribution.
    fn refresh(&mut self) {
        let now = self.now;
        for e in &mut self.expiries {
            let years = ((e.close_micros - now) as f64 / MICROS_PER_YEAR).max(MIN_YEARS);
            let base = self.underlyings[e.underlying].vol;
            e.years = years;
            e.sqrt_years = years.sqrt();
            e.atm_vol = atm_vol(base, self.term_slope, years);
            e.carry = (self.carry_rate * years).exp();
        }
        // U-shaped intraday volatility: busy open, livelier close; averages to about 1.
        let since_open = (now - self.day_open) as f64 / 60e6;
        let to_close = (self.day_close - now) as f64 / 60e6;
        self.vol_multiplier =
            (1.0 + 0.8 * (-since_open / 25.0).exp() + 0.4 * (-to_close / 20.0).exp()) / 1.074;
        let dt = self.interval as f64 / TRADING_MICROS_PER_YEAR;
        for u in &mut self.underlyings {
            u.diffusion = u.vol * self.vol_multiplier * dt.sqrt();
            u.drift = -0.5 * u.diffusion * u.diffusion;
        }
        self.next_refresh = now + REFRESH_MICROS;
        if now >= self.next_reweight {
            self.reweight();
            self.next_reweight = now + REWEIGHT_MICROS;
        }
    }

    /// Activity weights: near-the-money (out of the money more than in), near-expiry
    /// options and the near future trade most; expired contracts not at all.
    fn reweight(&mut self) {
        self.cumulative.clear();
        self.scheduled.clear();
        let mut total = 0.0;
        for (i, c) in self.contracts.iter_mut().enumerate() {
            if c.kind == Kind::Index {
                c.weight = 0.0;
                continue;
            }
            let e = &self.expiries[c.expiry];
            let u = &self.underlyings[c.underlying];
            let weight = match c.kind {
                _ if e.close_micros <= self.now => 0.0,
                Kind::Index => 0.0,
                Kind::Future => u.kind.activity() * FUTURE_ACTIVITY[c.rank.min(2)],
                Kind::Call | Kind::Put => {
                    let forward = u.spot * e.carry;
                    let x = (c.strike / forward).ln() / (e.atm_vol * e.sqrt_years);
                    let itm = (c.kind == Kind::Call) == (x < 0.0);
                    let days = e.years * 365.0;
                    let moneyness = 0.015 + (-x * x / 1.5).exp();
                    u.kind.activity()
                        * moneyness
                        * if itm { 0.4 } else { 1.0 }
                        * (1.0 / (1.0 + days / 3.0))
                }
            };
            c.weight = weight;
            if weight > 0.0 {
                total += weight;
                self.cumulative.push(total);
                self.scheduled.push(i as u32);
            }
        }
    }

    /// One step of the correlated index walks, plus a market-wide jump when one is due.
    fn move_spots(&mut self) {
        let z_market: f64 = self.rng.sample(StandardNormal);
        for u in &mut self.underlyings {
            let z = if u.own_loading > 0.0 {
                let z_own: f64 = self.rng.sample(StandardNormal);
                u.market_loading * z_market + u.own_loading * z_own
            } else {
                u.market_loading * z_market
            };
            u.spot *= (u.diffusion * z + u.drift).exp();
        }
        if self.traded_micros >= self.next_jump {
            let z: f64 = self.rng.sample(StandardNormal);
            let size = self.jump_mean + self.jump_vol * z;
            let reference = self.underlyings.first().map_or(1.0, |u| u.vol);
            for u in &mut self.underlyings {
                // Higher-volatility indices move more on the same news.
                u.spot *= (size * u.vol / reference).exp();
            }
            self.schedule_jump();
        }
    }

    /// Draws when the next jump comes (exponential waiting time in trading time).
    fn schedule_jump(&mut self) {
        self.next_jump = if self.jump_rate > 0.0 {
            let u: f64 = self.rng.random::<f64>().max(1e-300);
            let wait = (-u.ln() / self.jump_rate).min(1e15);
            self.traded_micros.saturating_add(wait as i64)
        } else {
            i64::MAX
        };
    }

    /// The instrument of this tick: an index when its tick is due, otherwise a draw from
    /// the activity weights.
    fn pick(&mut self) -> usize {
        let now = self.now;
        let mut due: Option<usize> = None;
        for (k, u) in self.underlyings.iter().enumerate() {
            let earlier = due.is_none_or(|d| u.index_due < self.underlyings[d].index_due);
            if earlier && (u.index_due <= now || self.scheduled.is_empty()) {
                due = Some(k);
            }
        }
        if let Some(k) = due {
            let u = &mut self.underlyings[k];
            u.index_due = (u.index_due + self.index_interval).max(now + self.index_gap);
            return u.index;
        }
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = self.rng.random::<f64>() * total;
        let j = self
            .cumulative
            .partition_point(|&c| c <= x)
            .min(self.scheduled.len() - 1);
        self.scheduled[j] as usize
    }

    /// Fair price of a derivative now, with its standardised moneyness (0 for futures).
    fn fair(&self, i: usize) -> (f64, f64) {
        let c = &self.contracts[i];
        let spot = self.underlyings[c.underlying].spot;
        if c.kind == Kind::Index {
            return (spot, 0.0);
        }
        let e = &self.expiries[c.expiry];
        let forward = spot * e.carry;
        match c.kind {
            Kind::Index | Kind::Future => (forward, 0.0),
            Kind::Call | Kind::Put => {
                let ln_kf = (c.strike / forward).ln();
                let x = ln_kf / (e.atm_vol * e.sqrt_years);
                let vol = smile_vol(e.atm_vol, x, self.skew, self.smile);
                let price = black76_ln(
                    forward,
                    c.strike,
                    ln_kf,
                    vol * e.sqrt_years,
                    c.kind == Kind::Call,
                );
                (price, x)
            }
        }
    }

    /// A trade in a derivative: quote around the fair price, trade at bid, ask or inside,
    /// cumulate volume, move latent OI and publish it at refreshes.
    fn trade(&mut self, i: usize) -> Tick {
        let (fair, x) = self.fair(i);
        let r = self.rng.random::<u64>();
        let c = &self.contracts[i];
        let e = &self.expiries[c.expiry];
        // Disjoint bit fields of one draw: spread jitter, trade side, lots, block, depth, OI.
        let bits = |shift: u32, width: u32| (r >> shift) & ((1 << width) - 1);
        let jitter = bits(0, 1) as i64;
        let spread = match c.kind {
            Kind::Future => FUTURE_SPREAD_TICKS[c.rank.min(2)] + jitter,
            _ => {
                let days = e.years * 365.0;
                let illiquid = 2.0 * x.abs().min(4.0) + 1.5 * (1.0 + days / 7.0).ln();
                let wide = 1 + (fair * 0.005) as i64 + illiquid as i64 + jitter;
                // Cheap options are quoted a tick or two wide, never wider than their price.
                wide.min(((fair / TICK_SIZE) as i64).max(2))
            }
        };
        let fair_ticks = fair / TICK_SIZE;
        let bid = ((fair_ticks - spread as f64 / 2.0).floor() as i64).max(1);
        let ask = bid + spread;
        let ltp = match bits(1, 8) % 3 {
            0 => bid,
            1 => ask,
            _ => (fair_ticks.round() as i64).clamp(bid, ask),
        };
        // Mostly a few lots, now and then a block.
        let mut lots = 1 + (bits(9, 8) % if c.kind == Kind::Future { 4 } else { 10 }) as i64;
        if bits(17, 8) % 25 == 0 {
            lots *= 10;
        }
        let depth = 1.0 + 4.0 * c.weight.min(1.0);
        let bid_lots = ((1 + bits(25, 8) % 40) as f64 * depth) as i64;
        let ask_lots = ((1 + bits(33, 8) % 40) as f64 * depth) as i64;
        let rounding = bits(41, 10) as f64 / 1_024.0;
        let switch = bits(51, 10) as f64 / 1_024.0;
        let side = match c.kind {
            Kind::Call => 0,
            Kind::Put => 1,
            _ => 2,
        };
        let epoch = self.day_number * EPOCHS_PER_DAY + (self.now - self.day_open) / self.oi_refresh;
        let expiry_day = e.years * 365.0 < 1.0;
        let (lot, expiry) = (c.lot, c.expiry);
        if c.oi_epoch != epoch {
            self.switch_episode(expiry, side, epoch, switch, expiry_day);
        }
        let drift = self.expiries[expiry].episodes[side].drift;
        let c = &mut self.contracts[i];
        if c.oi_epoch != epoch {
            c.oi = c.oi_latent;
            c.oi_epoch = epoch;
        }
        // Futures positions turn over far more than they grow: a quarter of the share.
        let share = if c.kind == Kind::Future {
            drift / 4.0
        } else {
            drift
        };
        // Stochastic rounding keeps small shares of small trades unbiased.
        let change = (lots as f64 * share + rounding).floor() as i64;
        c.oi_latent = (c.oi_latent + change * lot).max(0);
        let last_qty = lots * lot;
        c.volume += last_qty;
        Tick {
            instrument_token: self.instruments[i].instrument_token,
            exchange_ts: self.now,
            ltp: from_ticks(ltp),
            last_qty,
            volume: c.volume,
            oi: c.oi,
            bid: from_ticks(bid),
            bid_qty: bid_lots * lot,
            ask: from_ticks(ask),
            ask_qty: ask_lots * lot,
        }
    }

    /// At a chain side's first trade after an OI refresh, its episode may change (one
    /// chance in four).
    fn switch_episode(&mut self, expiry: usize, side: usize, epoch: i64, u: f64, expiry_day: bool) {
        let episode = &mut self.expiries[expiry].episodes[side];
        if episode.epoch == epoch {
            return;
        }
        episode.epoch = epoch;
        if u < 0.25 {
            episode.drift = episode_drift(&mut self.rng, expiry_day);
        }
    }
}

/// A new OI episode: build-up (40%), unwinding (25%) or churn, with unwinding into expiry
/// on expiry day. The value is the share of traded lots that adds to (or removes from) OI:
/// a few percent, since most trades only pass positions on (an ATM weekly turns its OI
/// over several times a day while OI moves by tens of percent).
fn episode_drift(rng: &mut SmallRng, expiry_day: bool) -> f64 {
    let v = rng.random::<f64>();
    let strength = rng.random_range(0.03..0.12);
    let drift = if v < 0.4 {
        strength
    } else if v < 0.65 {
        -strength
    } else {
        strength / 3.0 - 0.02
    };
    if expiry_day {
        drift - 0.05
    } else {
        drift
    }
}

impl Contract {
    fn new(
        kind: Kind,
        underlying: usize,
        expiry: usize,
        rank: usize,
        strike: f64,
        lot: i32,
    ) -> Self {
        Self {
            kind,
            underlying,
            expiry,
            rank,
            strike,
            lot: i64::from(lot),
            volume: 0,
            oi: 0,
            oi_latent: 0,
            oi_epoch: -1,
            weight: 0.0,
        }
    }
}

fn derivative(
    name: &str,
    token: i64,
    symbol: String,
    expiry: NaiveDate,
    strike: f64,
    lot: i32,
    kind: InstrumentType,
) -> Instrument {
    let segment = if kind == InstrumentType::FUT {
        "NFO-FUT"
    } else {
        "NFO-OPT"
    };
    Instrument {
        instrument_token: token,
        exchange_token: token >> 8,
        tradingsymbol: symbol,
        name: name.into(),
        last_price: 0.0,
        expiry: Some(days_from_date(expiry)),
        strike,
        tick_size: TICK_SIZE,
        lot_size: lot,
        instrument_type: kind,
        segment: segment.into(),
        exchange: "NFO".into(),
    }
}

/// A Kite-style NFO token for `symbol`: a hash of the symbol picks the exchange token (the
/// next free one on a collision), so a contract's token does not depend on the seed or on
/// what else is listed.
fn unique_token(symbol: &str, used: &mut HashSet<i64>) -> i64 {
    // FNV-1a, then a splitmix64 finaliser: stable across platforms and Rust versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in symbol.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    let mut slot = (h % EXCHANGE_TOKEN_SPAN as u64) as i64;
    loop {
        let token = ((EXCHANGE_TOKEN_BASE + slot) << 8) | NFO_SEGMENT;
        if used.insert(token) {
            return token;
        }
        slot = (slot + 1) % EXCHANGE_TOKEN_SPAN;
    }
}

/// ATM implied volatility at `years` to expiry: from `(1 - slope)·base` for an expiring
/// contract to `(1 + slope)·base` for long-dated ones.
fn atm_vol(base: f64, slope: f64, years: f64) -> f64 {
    base * (1.0 - slope + 2.0 * slope * (1.0 - (-years / TERM_TAU_YEARS).exp()))
}

/// Implied volatility at standardised moneyness `x = ln(K/F) / (σ_ATM √T)`: a put skew
/// (higher below the forward) with some curvature. Near the money it is
/// `σ_ATM (1 − skew·x + smile·x²)`; both terms saturate smoothly far out (the wings level off
/// at `1 ± 2·skew + 4·smile`), so short expiries keep an arbitrage-free, convex chain.
fn smile_vol(atm: f64, x: f64, skew: f64, smile: f64) -> f64 {
    let x = x.clamp(-50.0, 50.0);
    let factor = 1.0 - 2.0 * skew * (x / 2.0).tanh() + smile * x * x / (1.0 + x * x / 4.0);
    atm * factor.max(0.2)
}

/// Converts a count of 0.05 ticks to rupees, exactly as [`on_grid`] would round it.
fn from_ticks(ticks: i64) -> f64 {
    (ticks * 5) as f64 / 100.0
}

/// Rounds a price to the 0.05 grid through whole paise, so the result is the double nearest
/// the two-decimal price (no `24500.050000000003`).
pub fn on_grid(price: f64) -> f64 {
    let paise = (price * 100.0 / 5.0).round() * 5.0;
    paise / 100.0
}

fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Black-76 price with r = 0 (undiscounted, the brokers' convention), given `ln(K/F)` and
/// the total standard deviation `σ√T` so callers reuse what they already computed.
fn black76_ln(forward: f64, strike: f64, ln_kf: f64, sd: f64, call: bool) -> f64 {
    let d1 = (-ln_kf + 0.5 * sd * sd) / sd;
    let d2 = d1 - sd;
    if call {
        forward * norm_cdf(d1) - strike * norm_cdf(d2)
    } else {
        strike * norm_cdf(-d2) - forward * norm_cdf(-d1)
    }
}

/// Black-76 price with r = 0 on `forward`.
#[cfg(test)]
fn black76(forward: f64, strike: f64, years: f64, vol: f64, call: bool) -> f64 {
    black76_ln(
        forward,
        strike,
        (strike / forward).ln(),
        vol * years.sqrt(),
        call,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use chrono::{Datelike, Weekday};
    use strikeflow_schemas::date_from_days;

    use super::*;
    use crate::calendar::{next_tuesday, ExpiryKind, IST};

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

    /// Black-76 (r = 0) implied volatility by bisection.
    fn implied_vol(price: f64, forward: f64, strike: f64, years: f64, call: bool) -> f64 {
        let (mut lo, mut hi) = (1e-4, 5.0);
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if black76(forward, strike, years, mid, call) > price {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        0.5 * (lo + hi)
    }

    #[test]
    fn same_seed_same_ticks() {
        let config = SimulatorConfig::default();
        let mut a = MarketSimulator::new(&config).unwrap();
        let mut b = MarketSimulator::new(&config).unwrap();
        assert_eq!(a.instruments(), b.instruments());
        for _ in 0..20_000 {
            assert_eq!(a.next_tick(), b.next_tick());
        }
        let mut c = MarketSimulator::new(&SimulatorConfig { seed: 7, ..config }).unwrap();
        let differs = (0..1_000)
            .filter(|_| a.next_tick() != c.next_tick())
            .count();
        assert!(differs > 900, "another seed must give another market");
    }

    #[test]
    fn default_market_lists_full_nifty_and_banknifty_chains() {
        let sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let mut counts: HashMap<(&str, InstrumentType), usize> = HashMap::new();
        for i in sim.instruments() {
            *counts.entry((&i.name, i.instrument_type)).or_default() += 1;
        }
        // NIFTY: 4 weekly + 3 monthly expiries, BANKNIFTY: 3 monthly; 41 strikes each.
        let expected = [
            (("NIFTY", InstrumentType::EQ), 1),
            (("NIFTY", InstrumentType::FUT), 3),
            (("NIFTY", InstrumentType::CE), 7 * 41),
            (("NIFTY", InstrumentType::PE), 7 * 41),
            (("BANKNIFTY", InstrumentType::EQ), 1),
            (("BANKNIFTY", InstrumentType::FUT), 3),
            (("BANKNIFTY", InstrumentType::CE), 3 * 41),
            (("BANKNIFTY", InstrumentType::PE), 3 * 41),
        ];
        assert_eq!(counts, expected.into_iter().collect());
        assert_eq!(sim.instruments().len(), 828);
        let expiries = |name: &str| -> Vec<NaiveDate> {
            let set: BTreeSet<NaiveDate> = sim
                .instruments()
                .iter()
                .filter(|i| i.name == name && i.instrument_type == InstrumentType::CE)
                .filter_map(|i| i.expiry.and_then(date_from_days))
                .collect();
            set.into_iter().collect()
        };
        // Republic Day (Tuesday 26 Jan 2027) moves January's monthly expiry to Monday.
        assert_eq!(
            expiries("NIFTY"),
            [
                day(2026, 12, 1),
                day(2026, 12, 8),
                day(2026, 12, 15),
                day(2026, 12, 22),
                day(2026, 12, 29),
                day(2027, 1, 25),
                day(2027, 2, 23)
            ]
        );
        assert_eq!(
            expiries("BANKNIFTY"),
            [day(2026, 12, 29), day(2027, 1, 25), day(2027, 2, 23)]
        );
        for symbol in [
            "NIFTY 50",
            "NIFTY BANK",
            "NIFTY26DECFUT",
            "NIFTY27JANFUT",
            "NIFTY27FEBFUT",
            "BANKNIFTY27FEBFUT",
            "NIFTY26D0124500CE",
            "NIFTY26D2225500PE",
            "NIFTY26DEC23500PE",
            "NIFTY27JAN24500CE",
            "BANKNIFTY27JAN53000PE",
            "BANKNIFTY26DEC57000CE",
        ] {
            position(&sim, symbol);
        }
    }

    #[test]
    fn instrument_master_is_well_formed() {
        let sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let calendar = TradingCalendar::new(default_holidays());
        let tokens: HashSet<i64> = sim
            .instruments()
            .iter()
            .map(|i| i.instrument_token)
            .collect();
        assert_eq!(tokens.len(), sim.instruments().len(), "tokens are unique");
        // (underlying, right, expiry) -> strikes in listing order
        let mut chains: HashMap<(String, InstrumentType, i32), Vec<f64>> = HashMap::new();
        for i in sim.instruments() {
            assert_eq!(i.exchange_token, i.instrument_token >> 8, "{i:?}");
            assert!(
                i.last_price > 0.0 && on_grid(i.last_price) == i.last_price,
                "{i:?}"
            );
            if i.instrument_type == InstrumentType::EQ {
                assert_eq!(i.instrument_token & 0xff, 9, "indices are segment 9");
                assert_eq!(
                    (i.segment.as_str(), i.exchange.as_str()),
                    ("INDICES", "NSE")
                );
                assert_eq!((i.expiry, i.lot_size, i.tick_size), (None, 0, 0.0));
                continue;
            }
            assert_eq!(
                i.instrument_token & 0xff,
                2,
                "derivatives are NFO, segment 2"
            );
            assert!((35_000..35_000 + 65_536).contains(&i.exchange_token));
            assert_eq!(i.exchange, "NFO");
            assert_eq!(i.tick_size, TICK_SIZE);
            let (lot, step) = match i.name.as_str() {
                "NIFTY" => (65, 50.0),
                "BANKNIFTY" => (30, 100.0),
                other => panic!("unexpected underlying {other}"),
            };
            assert_eq!(i.lot_size, lot, "{}", i.tradingsymbol);
            let expiry = date_from_days(i.expiry.unwrap()).unwrap();
            assert!(calendar.is_trading_day(expiry), "{expiry} is a trading day");
            assert_eq!(
                calendar.expiry_for(next_tuesday(expiry)),
                expiry,
                "{expiry} is a Tuesday or the trading day a holiday moved it to"
            );
            if i.instrument_type == InstrumentType::FUT {
                assert_eq!(i.segment, "NFO-FUT");
                assert_eq!(calendar.kind_of(expiry), ExpiryKind::Monthly);
                assert_eq!(i.tradingsymbol, future_symbol(&i.name, expiry));
                assert_eq!(i.strike, 0.0);
            } else {
                assert_eq!(i.segment, "NFO-OPT");
                assert_eq!(i.strike % step, 0.0, "{} is on the strike step", i.strike);
                let right = if i.instrument_type == InstrumentType::CE {
                    "CE"
                } else {
                    "PE"
                };
                let kind = calendar.kind_of(expiry);
                assert_eq!(
                    i.tradingsymbol,
                    option_symbol(&i.name, expiry, kind, i.strike, right)
                );
                chains
                    .entry((i.name.clone(), i.instrument_type, i.expiry.unwrap()))
                    .or_default()
                    .push(i.strike);
            }
        }
        // Every chain side lists 41 consecutive strikes centred on the opening ATM strike.
        assert_eq!(chains.len(), 2 * (7 + 3));
        for ((name, _, _), strikes) in &chains {
            let (atm, step) = if name == "BANKNIFTY" {
                (55_000.0, 100.0)
            } else {
                (24_500.0, 50.0)
            };
            let expected: Vec<f64> = (-20..=20).map(|j| atm + f64::from(j) * step).collect();
            assert_eq!(strikes, &expected, "{name}");
        }
    }

    #[test]
    fn tokens_depend_on_the_contract_only() {
        let full = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let other_seed = MarketSimulator::new(&SimulatorConfig {
            seed: 99,
            ..SimulatorConfig::default()
        })
        .unwrap();
        let small = MarketSimulator::new(&SimulatorConfig::single_chain()).unwrap();
        for i in small.instruments() {
            assert_eq!(token_of(&full, &i.tradingsymbol), i.instrument_token);
        }
        let tokens = |s: &MarketSimulator| -> Vec<i64> {
            s.instruments().iter().map(|i| i.instrument_token).collect()
        };
        assert_eq!(tokens(&full), tokens(&other_seed));
        assert_eq!(token_of(&full, "NIFTY 50"), NIFTY_SPOT_TOKEN);
        assert_eq!(token_of(&full, "NIFTY BANK"), BANKNIFTY_SPOT_TOKEN);
    }

    #[test]
    fn single_chain_is_the_twelve_instrument_test_market() {
        let sim = MarketSimulator::new(&SimulatorConfig::single_chain()).unwrap();
        let symbols: Vec<&str> = sim
            .instruments()
            .iter()
            .map(|i| i.tradingsymbol.as_str())
            .collect();
        assert_eq!(
            symbols,
            [
                "NIFTY 50",
                "NIFTY26DECFUT",
                "NIFTY26D0824400CE",
                "NIFTY26D0824400PE",
                "NIFTY26D0824450CE",
                "NIFTY26D0824450PE",
                "NIFTY26D0824500CE",
                "NIFTY26D0824500PE",
                "NIFTY26D0824550CE",
                "NIFTY26D0824550PE",
                "NIFTY26D0824600CE",
                "NIFTY26D0824600PE",
            ]
        );
    }

    #[test]
    fn config_deserialises_with_defaults_for_what_is_left_out() {
        let config: SimulatorConfig = serde_json::from_str(
            r#"{"seed": 5, "underlyings": ["BANKNIFTY"], "banknifty": {"monthly_expiries": 1},
                "holidays": ["2026-12-08"]}"#,
        )
        .unwrap();
        assert_eq!(config.seed, 5);
        assert_eq!(config.strikes_each_side, 20);
        assert_eq!(config.holidays, [day(2026, 12, 8)]);
        assert_eq!(
            config.banknifty,
            Listing {
                weekly_expiries: 0,
                monthly_expiries: 1,
                futures: 0
            }
        );
        let sim = MarketSimulator::new(&config).unwrap();
        assert_eq!(sim.instruments().len(), 1 + 41 * 2);
        assert_eq!(sim.instruments()[1].tradingsymbol, "BANKNIFTY26DEC53000CE");
    }

    #[test]
    fn config_reads_flattened_into_a_larger_section() {
        // As `[simulate]` embeds it next to the publisher's own keys.
        #[derive(Deserialize)]
        struct Section {
            #[serde(flatten)]
            market: SimulatorConfig,
            rate: f64,
        }
        let section: Section = serde_json::from_str(
            r#"{"rate": 500, "spot_open": 25000, "tick_interval_ms": 100,
                "underlyings": ["NIFTY"], "nifty": {"weekly_expiries": 2, "futures": 1}}"#,
        )
        .unwrap();
        assert_eq!(section.rate, 500.0);
        let sim = MarketSimulator::new(&section.market).unwrap();
        assert_eq!(sim.instruments().len(), 1 + 1 + 2 * 41 * 2);
        assert_eq!(sim.instruments()[0].last_price, 25_000.0);
    }

    #[test]
    fn invalid_settings_are_rejected() {
        let base = SimulatorConfig::default();
        let bad = [
            SimulatorConfig {
                spot_open: 0.0,
                ..base.clone()
            },
            SimulatorConfig {
                annual_vol: f64::NAN,
                ..base.clone()
            },
            SimulatorConfig {
                tick_interval_ms: 0,
                ..base.clone()
            },
            SimulatorConfig {
                oi_refresh_secs: 0,
                ..base.clone()
            },
            SimulatorConfig {
                underlyings: vec![],
                ..base.clone()
            },
            SimulatorConfig {
                underlyings: vec![Underlying::Nifty, Underlying::Nifty],
                ..base.clone()
            },
            SimulatorConfig {
                index_correlation: 1.5,
                ..base.clone()
            },
            SimulatorConfig {
                jumps_per_day: -1.0,
                ..base.clone()
            },
            SimulatorConfig {
                nifty: Listing {
                    futures: 4,
                    ..base.nifty
                },
                ..base.clone()
            },
        ];
        for config in bad {
            assert!(MarketSimulator::new(&config).is_err(), "{config:?}");
        }
    }

    #[test]
    fn prices_sit_on_the_tick_grid_and_quotes_are_sane() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let indices = [NIFTY_SPOT_TOKEN, BANKNIFTY_SPOT_TOKEN];
        for _ in 0..100_000 {
            let t = sim.next_tick();
            for p in [t.ltp, t.bid, t.ask] {
                let paise = (p * 100.0).round();
                assert_eq!(paise % 5.0, 0.0, "{p} is off the 0.05 grid");
                assert_eq!(
                    paise / 100.0,
                    p,
                    "{p} is not the nearest double to its paise"
                );
                assert_eq!(on_grid(p), p);
            }
            assert!(t.oi >= 0 && t.volume >= 0 && t.bid_qty >= 0 && t.ask_qty >= 0);
            if indices.contains(&t.instrument_token) {
                assert_eq!(
                    (t.volume, t.oi, t.last_qty, t.bid, t.ask),
                    (0, 0, 0, 0.0, 0.0)
                );
            } else {
                assert!(TICK_SIZE <= t.bid && t.bid < t.ask, "{t:?}");
                assert!(t.bid <= t.ltp && t.ltp <= t.ask, "{t:?}");
                assert!(t.last_qty > 0 && t.bid_qty > 0 && t.ask_qty > 0, "{t:?}");
                assert!(t.oi > 0, "{t:?}");
            }
        }
    }

    #[test]
    fn volume_is_cumulative_per_day_and_oi_moves_only_at_refreshes() {
        let config = SimulatorConfig {
            tick_interval_ms: 250,
            ..SimulatorConfig::default()
        };
        let refresh = config.oi_refresh_secs as i64 * 1_000_000;
        let mut sim = MarketSimulator::new(&config).unwrap();
        // token -> (date, refresh window, volume, oi) of its previous tick
        let mut last: HashMap<i64, (NaiveDate, i64, i64, i64)> = HashMap::new();
        let (mut rises, mut falls, mut resets) = (0, 0, 0);
        // 120,000 ticks of 250 ms: about a session and a third.
        for _ in 0..120_000 {
            let t = sim.next_tick();
            let (date, since_open) = session_position(t.exchange_ts);
            let window = since_open / refresh;
            if let Some(&(d, w, volume, oi)) = last.get(&t.instrument_token) {
                if d == date {
                    assert_eq!(t.volume, volume + t.last_qty, "volume cumulates trades");
                } else {
                    assert_eq!(t.volume, t.last_qty, "volume restarts every day");
                    resets += 1;
                }
                if (d, w) == (date, window) {
                    assert_eq!(t.oi, oi, "OI only changes at an exchange refresh");
                } else if t.oi > oi {
                    rises += 1;
                } else if t.oi < oi {
                    falls += 1;
                }
            }
            last.insert(t.instrument_token, (date, window, t.volume, t.oi));
        }
        assert!(
            resets > 100,
            "the run crosses into the next session ({resets})"
        );
        // Build-up and unwinding both happen.
        assert!(
            rises > 200 && falls > 200,
            "OI rises {rises} and falls {falls} times"
        );
    }

    #[test]
    fn indices_tick_about_once_a_second() {
        let config = SimulatorConfig::default();
        let mut sim = MarketSimulator::new(&config).unwrap();
        let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
        let ticks = 100_000;
        let seconds = (ticks * config.tick_interval_ms / 1_000) as usize;
        for _ in 0..ticks {
            let t = sim.next_tick();
            seen.entry(t.instrument_token)
                .or_default()
                .push(t.exchange_ts);
        }
        for token in [NIFTY_SPOT_TOKEN, BANKNIFTY_SPOT_TOKEN] {
            let ts = &seen[&token];
            assert!(
                (seconds - 1..=seconds + 1).contains(&ts.len()),
                "{token} ticked {} times",
                ts.len()
            );
            // After the first (at the open), exactly one a second.
            assert!(ts[1..].windows(2).all(|w| w[1] - w[0] == 1_000_000));
        }
    }

    #[test]
    fn near_the_money_near_expiry_contracts_tick_most() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let mut counts: HashMap<i64, usize> = HashMap::new();
        for _ in 0..500_000 {
            *counts.entry(sim.next_tick().instrument_token).or_default() += 1;
        }
        let n = |symbol: &str| counts.get(&token_of(&sim, symbol)).copied().unwrap_or(0);
        // Second weekly (8 Dec): the opening ATM pair against 20 strikes out of the money.
        let (atm, far_put, far_call) = (
            n("NIFTY26D0824500PE") + n("NIFTY26D0824500CE"),
            n("NIFTY26D0823500PE"),
            n("NIFTY26D0825500CE"),
        );
        // (The spot wanders over the run, so the margin is kept loose.)
        assert!(
            atm > 8 * (far_put + far_call),
            "ATM {atm}, far OTM {far_put}/{far_call}"
        );
        // Near expiry against far expiry, at the money.
        let far_month = n("NIFTY27FEB24500PE") + n("NIFTY27FEB24500CE");
        assert!(
            atm > 3 * far_month,
            "weekly ATM {atm}, far month ATM {far_month}"
        );
        assert!(n("NIFTY26DECFUT") > 5 * n("NIFTY27FEBFUT"));
        assert!(n("NIFTY26DECFUT") > n("BANKNIFTY26DECFUT"));
        // Not round robin, but nothing is starved either.
        assert_eq!(
            counts.len(),
            sim.instruments().len(),
            "every instrument ticks"
        );
    }

    #[test]
    fn spreads_widen_away_from_the_money() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        // token -> (Σ spread, Σ spread / mid, ticks)
        let mut spreads: HashMap<i64, (f64, f64, usize)> = HashMap::new();
        for _ in 0..500_000 {
            let t = sim.next_tick();
            let entry = spreads.entry(t.instrument_token).or_default();
            entry.0 += t.ask - t.bid;
            entry.1 += (t.ask - t.bid) / (0.5 * (t.ask + t.bid)).max(TICK_SIZE);
            entry.2 += 1;
        }
        let mean = |symbol: &str| {
            let (abs, rel, n) = spreads[&token_of(&sim, symbol)];
            (abs / n as f64, rel / n as f64)
        };
        for (atm, far) in [
            ("NIFTY26D0824500PE", "NIFTY26D0823500PE"),
            ("NIFTY26D0824500CE", "NIFTY26D0825500CE"),
            ("NIFTY26D1524500PE", "NIFTY26D1523600PE"),
        ] {
            let (atm_abs, atm_rel) = mean(atm);
            let (far_abs, far_rel) = mean(far);
            assert!(
                far_abs > atm_abs,
                "{far} {far_abs:.2} vs {atm} {atm_abs:.2}"
            );
            assert!(
                far_rel > 3.0 * atm_rel,
                "{far} {far_rel:.4} vs {atm} {atm_rel:.4}"
            );
        }
        for (atm, far) in [
            ("NIFTY27FEB24500PE", "NIFTY27FEB23500PE"),
            ("BANKNIFTY27JAN55000PE", "BANKNIFTY27JAN53000PE"),
        ] {
            let ((_, atm_rel), (_, far_rel)) = (mean(atm), mean(far));
            assert!(
                far_rel > atm_rel,
                "{far} {far_rel:.4} vs {atm} {atm_rel:.4}"
            );
        }
    }

    #[test]
    fn options_show_a_put_skew_and_an_upward_atm_term_structure() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        for _ in 0..50_000 {
            sim.next_tick();
        }
        // IV recovered from the generated (on-grid) price, on the forward of its expiry.
        let iv = |symbol: &str| {
            let i = position(&sim, symbol);
            let c = &sim.contracts[i];
            let e = &sim.expiries[c.expiry];
            let forward = sim.underlyings[c.underlying].spot * e.carry;
            let price = on_grid(sim.fair(i).0);
            implied_vol(price, forward, c.strike, e.years, c.kind == Kind::Call)
        };
        // The 15 Dec weekly: OTM puts from ATM down 12 strikes.
        let puts: Vec<f64> = (0..=12)
            .map(|j| iv(&format!("NIFTY26D15{}PE", 24_500 - 50 * j)))
            .collect();
        assert!(
            puts.windows(2).all(|w| w[1] > w[0]),
            "OTM puts: IV rises as the strike falls: {puts:?}"
        );
        assert!(puts[12] > puts[0] + 0.02, "{puts:?}");
        let call = iv("NIFTY26D1525000CE");
        assert!(
            call < puts[0],
            "OTM calls trade below ATM: {call} vs {}",
            puts[0]
        );
        // ATM IV rises with time to expiry.
        let atm: Vec<f64> = [
            "NIFTY26D0824500CE",
            "NIFTY26D1524500CE",
            "NIFTY26D2224500CE",
            "NIFTY26DEC24500CE",
            "NIFTY27JAN24500CE",
            "NIFTY27FEB24500CE",
        ]
        .iter()
        .map(|s| iv(s))
        .collect();
        assert!(
            atm.windows(2).all(|w| w[1] > w[0]),
            "NIFTY ATM term structure {atm:?}"
        );
        assert!(
            (0.10..0.16).contains(&atm[0]) && (0.12..0.16).contains(&atm[5]),
            "{atm:?}"
        );
        let bank: Vec<f64> = [
            "BANKNIFTY26DEC55000CE",
            "BANKNIFTY27JAN55000CE",
            "BANKNIFTY27FEB55000CE",
        ]
        .iter()
        .map(|s| iv(s))
        .collect();
        assert!(
            bank.windows(2).all(|w| w[1] > w[0]),
            "BANKNIFTY ATM term structure {bank:?}"
        );
    }

    #[test]
    fn chains_are_free_of_static_arbitrage() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        for _ in 0..10_000 {
            sim.next_tick();
        }
        let mut chains: HashMap<(usize, bool), Vec<(f64, f64)>> = HashMap::new();
        for i in 0..sim.contracts.len() {
            let c = &sim.contracts[i];
            if matches!(c.kind, Kind::Call | Kind::Put) {
                chains
                    .entry((c.expiry, c.kind == Kind::Call))
                    .or_default()
                    .push((c.strike, sim.fair(i).0));
            }
        }
        for ((expiry, call), chain) in chains {
            for w in chain.windows(3) {
                let (a, b, c) = (w[0].1, w[1].1, w[2].1);
                // Monotone in the strike and convex (no butterfly arbitrage).
                let monotone = if call {
                    a >= b && b >= c
                } else {
                    a <= b && b <= c
                };
                assert!(monotone, "expiry {expiry} call {call}: {w:?}");
                assert!(
                    a + c - 2.0 * b >= -1e-9,
                    "expiry {expiry} call {call}: {w:?}"
                );
            }
        }
    }

    #[test]
    fn futures_carry_a_basis_over_spot() {
        let sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let price = |symbol: &str| sim.instruments()[position(&sim, symbol)].last_price;
        let spot = price("NIFTY 50");
        let mut previous = spot;
        for (symbol, expiry) in [
            ("NIFTY26DECFUT", day(2026, 12, 29)),
            ("NIFTY27JANFUT", day(2027, 1, 25)),
            ("NIFTY27FEBFUT", day(2027, 2, 23)),
        ] {
            let future = price(symbol);
            let micros =
                ist_micros(expiry, SESSION_CLOSE) - ist_micros(day(2026, 12, 1), SESSION_OPEN);
            let years = micros as f64 / (365.0 * 86_400e6);
            let fair = spot * (0.065 * years).exp();
            assert!((future - fair).abs() < 0.1, "{symbol} {future} vs {fair}");
            assert!(
                future > previous,
                "{symbol} is dearer than the nearer contract"
            );
            previous = future;
        }
    }

    #[test]
    fn jumps_come_at_the_configured_rate() {
        // Almost no diffusion, so every big index move between two seconds is a jump.
        let jumps = |jumps_per_day: f64| {
            let config = SimulatorConfig {
                annual_vol: 0.001,
                jumps_per_day,
                jump_mean: 0.0,
                jump_vol: 0.01,
                ..SimulatorConfig::single_chain()
            };
            let mut sim = MarketSimulator::new(&config).unwrap();
            let mut previous: Option<f64> = None;
            let mut count = 0;
            // Two sessions of 100 ms ticks.
            for _ in 0..2 * 225_000 {
                let t = sim.next_tick();
                if t.instrument_token == NIFTY_SPOT_TOKEN {
                    if previous.is_some_and(|p| (t.ltp / p).ln().abs() > 0.002) {
                        count += 1;
                    }
                    previous = Some(t.ltp);
                }
            }
            count
        };
        assert_eq!(jumps(0.0), 0);
        // 2 sessions × 25 jumps, 84% of them larger than 0.2%: about 42.
        let n = jumps(25.0);
        assert!((20..=70).contains(&n), "{n} jumps");
    }

    #[test]
    fn ticks_stay_in_session_and_roll_over_weekends_and_holidays() {
        // 60 s ticks: 375 ticks a session, a month in 8,000 ticks.
        let config = SimulatorConfig {
            tick_interval_ms: 60_000,
            ..SimulatorConfig::single_chain()
        };
        let mut sim = MarketSimulator::new(&config).unwrap();
        let expiry_of: HashMap<i64, Option<i32>> = sim
            .instruments()
            .iter()
            .map(|i| (i.instrument_token, i.expiry))
            .collect();
        let calendar = TradingCalendar::new(default_holidays());
        let mut dates = BTreeSet::new();
        let mut seen = HashSet::new();
        let mut previous = i64::MIN;
        for _ in 0..8_000 {
            let t = sim.next_tick();
            assert!(t.exchange_ts > previous, "event time only moves forward");
            previous = t.exchange_ts;
            let (date, since_open) = session_position(t.exchange_ts);
            assert!(
                (0..SESSION_MICROS).contains(&since_open),
                "tick outside 09:15-15:30 IST"
            );
            assert!(calendar.is_trading_day(date), "{date} is not a trading day");
            if let Some(expiry) = expiry_of[&t.instrument_token] {
                let expiry = date_from_days(expiry).unwrap();
                assert!(date <= expiry, "a contract of {expiry} ticked on {date}");
            }
            dates.insert(date);
            seen.insert(t.instrument_token);
        }
        assert_eq!(
            seen.len(),
            sim.instruments().len(),
            "every instrument ticks before it expires"
        );
        // Every trading day from 1 Dec on, in order: weekends and Christmas are skipped.
        let first = *dates.first().unwrap();
        let last = *dates.last().unwrap();
        assert_eq!(first, day(2026, 12, 2));
        assert!(last > day(2026, 12, 28), "{last}");
        let mut expected = BTreeSet::new();
        let mut d = first;
        while d <= last {
            expected.insert(d);
            d = calendar.next_trading_day(d);
        }
        assert_eq!(dates, expected);
        assert!(!dates.contains(&day(2026, 12, 25)));
        assert!(dates
            .iter()
            .all(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)));
    }

    #[test]
    fn a_session_starting_on_a_holiday_opens_on_the_next_trading_day() {
        let config = SimulatorConfig {
            session_date: day(2026, 12, 25),
            ..SimulatorConfig::single_chain()
        };
        let mut sim = MarketSimulator::new(&config).unwrap();
        let (date, _) = session_position(sim.next_tick().exchange_ts);
        assert_eq!(date, day(2026, 12, 28));
        // Its weekly skips the monthly week: 5 Jan 2027, not 29 Dec.
        position(&sim, "NIFTY2710524500CE");
    }

    #[test]
    fn black76_matches_put_call_parity_and_the_reference_iv() {
        let (f, k, t, v) = (24_500.0, 24_600.0, 7.0 / 365.0, 0.14);
        let parity = black76(f, k, t, v, true) - black76(f, k, t, v, false);
        assert!((parity - (f - k)).abs() < 1e-9);
        // Domain reference: price 20, F = 100, K = 90, T = 30 → σ = 0.07011701801482094.
        let sigma = implied_vol(20.0, 100.0, 90.0, 30.0, true);
        assert!((sigma - 0.070_117_018_014_820_94).abs() < 1e-9, "{sigma}");
    }
}
