//! A seeded, deterministic NIFTY market: spot index, one future and options around spot.
//!
//! Pure: no clock and no I/O. The same seed and settings give the same instruments and the
//! same tick sequence, which is what the end-to-end tests count on.

use chrono::{Duration, NaiveDate};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use serde::Deserialize;
use strikeflow_schemas::{days_from_date, Instrument, InstrumentType, Tick};

use crate::calendar::{
    future_symbol, ist_micros, monthly_expiry, option_symbol, trading_day_on_or_after,
    weekly_expiry, SESSION_CLOSE, SESSION_OPEN,
};

/// Kite's instrument token of the NIFTY 50 index.
pub const NIFTY_SPOT_TOKEN: i64 = 256_265;
/// NSE tick size in rupees.
pub const TICK_SIZE: f64 = 0.05;
const NIFTY_STEP: f64 = 50.0;
const NIFTY_LOT: i32 = 65;
const MICROS_PER_YEAR: f64 = 365.0 * 86_400.0 * 1e6;

/// Settings of the simulated market.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SimulatorConfig {
    /// Seed of the random walk: same seed, same ticks.
    pub seed: u64,
    /// Trading day the session starts on (weekends roll forward).
    pub session_date: NaiveDate,
    /// NIFTY spot at the open.
    pub spot_open: f64,
    /// Annualised volatility of the spot walk.
    pub annual_vol: f64,
    /// Strikes listed on each side of the at-the-money strike.
    pub strikes_each_side: u32,
    /// Event time between two consecutive ticks, in milliseconds.
    pub tick_interval_ms: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            session_date: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap_or_default(),
            spot_open: 24_500.0,
            annual_vol: 0.13,
            strikes_each_side: 2,
            tick_interval_ms: 100,
        }
    }
}

/// Rejected simulator settings.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// A setting is outside what a market can look like.
    #[error("invalid simulator setting: {0}")]
    Invalid(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum Contract {
    Spot,
    Future {
        expiry_micros: i64,
    },
    Option {
        strike: f64,
        call: bool,
        expiry_micros: i64,
    },
}

#[derive(Debug, Clone)]
struct Quote {
    contract: Contract,
    volume: i64,
    oi: i64,
}

/// The simulated market: instruments plus the state of their prices, volume and OI.
#[derive(Debug, Clone)]
pub struct MarketSimulator {
    instruments: Vec<Instrument>,
    quotes: Vec<Quote>,
    rng: SmallRng,
    spot: f64,
    annual_vol: f64,
    session_date: NaiveDate,
    now: i64,
    interval: i64,
    cursor: usize,
}

impl MarketSimulator {
    /// Lists the instruments of the session and places the clock at 09:15 IST.
    pub fn new(config: &SimulatorConfig) -> Result<Self, SimulatorError> {
        if !(config.spot_open.is_finite() && config.spot_open > 0.0) {
            return Err(SimulatorError::Invalid(
                "spot_open must be a positive price",
            ));
        }
        if !(config.annual_vol.is_finite() && config.annual_vol > 0.0 && config.annual_vol < 5.0) {
            return Err(SimulatorError::Invalid("annual_vol must be in (0, 5)"));
        }
        if config.tick_interval_ms == 0 {
            return Err(SimulatorError::Invalid("tick_interval_ms must be positive"));
        }
        let date = trading_day_on_or_after(config.session_date);
        let weekly = weekly_expiry(date);
        let monthly = monthly_expiry(date);
        let mut instruments = vec![Instrument {
            instrument_token: NIFTY_SPOT_TOKEN,
            exchange_token: NIFTY_SPOT_TOKEN >> 8,
            tradingsymbol: "NIFTY 50".into(),
            name: "NIFTY".into(),
            last_price: config.spot_open,
            expiry: None,
            strike: 0.0,
            tick_size: 0.0,
            lot_size: 0,
            instrument_type: InstrumentType::EQ,
            segment: "INDICES".into(),
            exchange: "NSE".into(),
        }];
        let mut quotes = vec![Quote {
            contract: Contract::Spot,
            volume: 0,
            oi: 0,
        }];
        let expiry_micros = |d: NaiveDate| ist_micros(d, SESSION_CLOSE);

        instruments.push(contract(
            "NIFTY",
            10_000_001,
            future_symbol("NIFTY", monthly),
            monthly,
            0.0,
            InstrumentType::FUT,
        ));
        quotes.push(Quote {
            contract: Contract::Future {
                expiry_micros: expiry_micros(monthly),
            },
            volume: 0,
            oi: 10_000_000,
        });
        let atm = (config.spot_open / NIFTY_STEP).round() * NIFTY_STEP;
        let n = i64::from(config.strikes_each_side);
        let mut token = 10_000_100;
        for k in -n..=n {
            let strike = atm + k as f64 * NIFTY_STEP;
            for (kind, call) in [(InstrumentType::CE, true), (InstrumentType::PE, false)] {
                let symbol = option_symbol("NIFTY", weekly, strike, if call { "CE" } else { "PE" });
                instruments.push(contract("NIFTY", token, symbol, weekly, strike, kind));
                quotes.push(Quote {
                    contract: Contract::Option {
                        strike,
                        call,
                        expiry_micros: expiry_micros(weekly),
                    },
                    volume: 0,
                    // Far strikes carry less open interest than those near the money.
                    oi: 1_300_000 / (1 + k.abs()),
                });
                token += 1;
            }
        }
        Ok(Self {
            instruments,
            quotes,
            rng: SmallRng::seed_from_u64(config.seed),
            spot: config.spot_open,
            annual_vol: config.annual_vol,
            session_date: date,
            now: ist_micros(date, SESSION_OPEN),
            interval: i64::try_from(config.tick_interval_ms).unwrap_or(i64::MAX / 1_000) * 1_000,
            cursor: 0,
        })
    }

    /// The instrument master of the simulated session.
    pub fn instruments(&self) -> &[Instrument] {
        &self.instruments
    }

    /// Advances the market by one tick interval and returns the next instrument's tick.
    pub fn next_tick(&mut self) -> Tick {
        self.advance_clock();
        let z: f64 = self.rng.sample(StandardNormal);
        let dt = self.interval as f64 / trading_micros_per_year();
        self.spot *=
            (self.annual_vol * dt.sqrt() * z - 0.5 * self.annual_vol * self.annual_vol * dt).exp();

        let index = self.cursor % self.quotes.len();
        self.cursor += 1;
        let now = self.now;
        let spot = self.spot;
        let vol = self.annual_vol;
        let traded = i64::from(self.rng.random_range(1..=20)) * i64::from(NIFTY_LOT);
        let oi_moves = self.rng.random_bool(0.02);
        let oi_step = i64::from(self.rng.random_range(-5..=10)) * i64::from(NIFTY_LOT) * 10;
        let quote = &mut self.quotes[index];
        let (fair, tradable) = match quote.contract {
            Contract::Spot => (spot, false),
            Contract::Future { expiry_micros } => {
                // Cost of carry at 6.5% a year.
                let years = ((expiry_micros - now) as f64 / MICROS_PER_YEAR).max(0.0);
                (spot * (0.065 * years).exp(), true)
            }
            Contract::Option {
                strike,
                call,
                expiry_micros,
            } => {
                let years = ((expiry_micros - now) as f64 / MICROS_PER_YEAR).max(1e-6);
                // A put skew: lower strikes trade at higher implied volatility.
                let smile = vol * (1.0 - 0.8 * (strike / spot).ln()).max(0.3);
                (black76(spot, strike, years, smile, call), true)
            }
        };
        let ltp = on_grid(fair.max(TICK_SIZE));
        let (last_qty, spread) = if tradable {
            quote.volume += traded;
            if oi_moves {
                quote.oi = (quote.oi + oi_step).max(0);
            }
            (traded, on_grid((ltp * 0.0005).max(TICK_SIZE)))
        } else {
            (0, 0.0)
        };
        Tick {
            instrument_token: self.instruments[index].instrument_token,
            exchange_ts: now,
            ltp,
            last_qty,
            volume: quote.volume,
            oi: quote.oi,
            bid: if tradable {
                on_grid((ltp - spread).max(TICK_SIZE))
            } else {
                0.0
            },
            bid_qty: if tradable { traded * 3 } else { 0 },
            ask: if tradable { on_grid(ltp + spread) } else { 0.0 },
            ask_qty: if tradable { traded * 2 } else { 0 },
        }
    }

    /// Moves event time forward, rolling from 15:30 to the next trading day's 09:15.
    fn advance_clock(&mut self) {
        self.now += self.interval;
        if self.now >= ist_micros(self.session_date, SESSION_CLOSE) {
            self.session_date = trading_day_on_or_after(self.session_date + Duration::days(1));
            self.now = ist_micros(self.session_date, SESSION_OPEN);
        }
    }
}

fn contract(
    name: &str,
    token: i64,
    symbol: String,
    expiry: NaiveDate,
    strike: f64,
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
        lot_size: NIFTY_LOT,
        instrument_type: kind,
        segment: segment.into(),
        exchange: "NFO".into(),
    }
}

/// Trading time in a year: 252 sessions of 375 minutes (volatility accrues while trading).
fn trading_micros_per_year() -> f64 {
    252.0 * 375.0 * 60.0 * 1e6
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

/// Black-76 price with r = 0 on a forward approximated by spot (the simulator's options
/// are weeklies, where the carry over days is within the bid-ask spread).
fn black76(forward: f64, strike: f64, years: f64, vol: f64, call: bool) -> f64 {
    let sd = vol * years.sqrt();
    let d1 = ((forward / strike).ln() + 0.5 * sd * sd) / sd;
    let d2 = d1 - sd;
    if call {
        forward * norm_cdf(d1) - strike * norm_cdf(d2)
    } else {
        strike * norm_cdf(-d2) - forward * norm_cdf(-d1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ticks() {
        let config = SimulatorConfig::default();
        let mut a = MarketSimulator::new(&config).unwrap();
        let mut b = MarketSimulator::new(&config).unwrap();
        for _ in 0..1_000 {
            assert_eq!(a.next_tick(), b.next_tick());
        }
        let mut c = MarketSimulator::new(&SimulatorConfig { seed: 7, ..config }).unwrap();
        let differs = (0..1_000).any(|_| a.next_tick() != c.next_tick());
        assert!(differs, "another seed must give another walk");
    }

    #[test]
    fn prices_sit_on_the_tick_grid_and_oi_never_goes_negative() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        for _ in 0..20_000 {
            let t = sim.next_tick();
            for p in [t.ltp, t.bid, t.ask] {
                let paise = (p * 100.0).round();
                assert_eq!(paise % 5.0, 0.0, "{p} is off the 0.05 grid");
                assert_eq!(
                    paise / 100.0,
                    p,
                    "{p} is not the nearest double to its paise"
                );
            }
            assert!(t.oi >= 0 && t.volume >= 0);
        }
    }

    #[test]
    fn ticks_stay_in_session_and_cycle_through_instruments() {
        let config = SimulatorConfig {
            tick_interval_ms: 60_000,
            ..SimulatorConfig::default()
        };
        let mut sim = MarketSimulator::new(&config).unwrap();
        let n = sim.instruments().len();
        assert_eq!(n, 2 + 10);
        let first: Vec<i64> = (0..n).map(|_| sim.next_tick().instrument_token).collect();
        let mut tokens: Vec<i64> = sim
            .instruments()
            .iter()
            .map(|i| i.instrument_token)
            .collect();
        assert_eq!(first, tokens);
        tokens.sort();
        tokens.dedup();
        assert_eq!(tokens.len(), n, "tokens are unique");
        for _ in 0..2_000 {
            let t = sim.next_tick();
            let day_micros = (t.exchange_ts + 19_800_000_000).rem_euclid(86_400_000_000);
            let (open, close) = (
                (9 * 60 + 15) * 60_000_000i64,
                (15 * 60 + 30) * 60_000_000i64,
            );
            assert!(
                (open..close).contains(&day_micros),
                "tick outside 09:15-15:30 IST"
            );
        }
    }

    #[test]
    fn black76_matches_put_call_parity() {
        let (f, k, t, v) = (24_500.0, 24_600.0, 7.0 / 365.0, 0.14);
        let parity = black76(f, k, t, v, true) - black76(f, k, t, v, false);
        assert!((parity - (f - k)).abs() < 1e-9);
    }
}
