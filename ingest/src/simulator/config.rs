//! Settings of the simulated market: what is listed, how prices move, how fast time runs.
//!
//! Read from the `[simulate.market]` table of the configuration file, so unknown keys are
//! an error (a misspelt key would otherwise silently keep its default) and
//! [`SimulatorConfig::validate`] names the offending key as written there,
//! `simulate.market.<field>`.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::Deserialize;

use super::listing::Underlying;
use super::SESSION_MICROS;
use crate::calendar::default_holidays;

/// Which contracts of one underlying are listed. A table lists exactly what it says: a key
/// left out lists none of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
#[serde(default, deny_unknown_fields)]
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

    /// Checks that every value describes a market the simulator can run (positive prices
    /// and intervals, probabilities and correlations in range, listings the calendar can
    /// serve), so a bad file fails at start-up with the key named instead of producing
    /// NaN prices or an empty market later. [`super::MarketSimulator::new`] calls it too.
    pub fn validate(&self) -> Result<(), ConfigError> {
        /// The largest interval in milliseconds that still fits in one session.
        const SESSION_MS: u64 = SESSION_MICROS as u64 / 1_000;
        positive_price("spot_open", self.spot_open)?;
        positive_price("banknifty_spot_open", self.banknifty_spot_open)?;
        for (key, vol) in [
            ("annual_vol", self.annual_vol),
            ("banknifty_annual_vol", self.banknifty_annual_vol),
        ] {
            check(
                vol.is_finite() && vol > 0.0 && vol < 5.0,
                key,
                format!("must be in (0, 5), not {vol}"),
            )?;
        }
        for (key, ms) in [
            ("tick_interval_ms", self.tick_interval_ms),
            ("index_interval_ms", self.index_interval_ms),
        ] {
            check(
                (1..=SESSION_MS).contains(&ms),
                key,
                format!("must be positive and at most a session ({SESSION_MS}), not {ms}"),
            )?;
        }
        let session_secs = SESSION_MS / 1_000;
        check(
            (1..=session_secs).contains(&self.oi_refresh_secs),
            "oi_refresh_secs",
            format!(
                "must be positive and at most a session ({session_secs}), not {}",
                self.oi_refresh_secs
            ),
        )?;
        check(
            self.strikes_each_side <= 500,
            "strikes_each_side",
            format!("must be at most 500, not {}", self.strikes_each_side),
        )?;
        check(
            !self.underlyings.is_empty(),
            "underlyings",
            "must list at least one index",
        )?;
        let distinct: HashSet<_> = self.underlyings.iter().collect();
        check(
            distinct.len() == self.underlyings.len(),
            "underlyings",
            "must not repeat an index",
        )?;
        for (name, listing) in [("nifty", self.nifty), ("banknifty", self.banknifty)] {
            listing.validate(name)?;
        }
        in_range("index_correlation", self.index_correlation, -1.0, 1.0)?;
        in_range("carry_rate", self.carry_rate, -0.5, 0.5)?;
        in_range("skew", self.skew, -1.0, 1.0)?;
        in_range("smile", self.smile, 0.0, 1.0)?;
        in_range("term_slope", self.term_slope, -0.9, 0.9)?;
        in_range("jumps_per_day", self.jumps_per_day, 0.0, 1_000.0)?;
        in_range("jump_mean", self.jump_mean, -0.5, 0.5)?;
        in_range("jump_vol", self.jump_vol, 0.0, 0.5)?;
        Ok(())
    }

    /// What is listed of `underlying`.
    pub(super) fn listing(&self, underlying: Underlying) -> Listing {
        match underlying {
            Underlying::Nifty => self.nifty,
            Underlying::BankNifty => self.banknifty,
        }
    }

    /// Opening spot and annualised volatility of `underlying`.
    pub(super) fn spot_and_vol(&self, underlying: Underlying) -> (f64, f64) {
        match underlying {
            Underlying::Nifty => (self.spot_open, self.annual_vol),
            Underlying::BankNifty => (self.banknifty_spot_open, self.banknifty_annual_vol),
        }
    }
}

impl Listing {
    /// Checks the table `simulate.market.<name>`: the calendar lists at most a year of weeklies,
    /// two years of monthlies and the three futures NSE trades.
    fn validate(&self, name: &str) -> Result<(), ConfigError> {
        check(
            self.weekly_expiries <= 52,
            &format!("{name}.weekly_expiries"),
            format!("must be at most 52, not {}", self.weekly_expiries),
        )?;
        check(
            self.monthly_expiries <= 24,
            &format!("{name}.monthly_expiries"),
            format!("must be at most 24, not {}", self.monthly_expiries),
        )?;
        check(
            self.futures <= 3,
            &format!("{name}.futures"),
            format!("must be at most 3 (near, next, far), not {}", self.futures),
        )
    }
}

/// A simulator setting that cannot describe a market, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The setting's full key in the configuration file, e.g. `simulate.market.spot_open`.
    pub key: String,
    /// What is wrong with its value.
    pub reason: String,
}

/// Rejected simulator settings.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    /// A setting is outside what a market can look like. Transparent: the message already
    /// names the key and the reason.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

/// Where the binary's configuration file holds these settings: errors name keys from here.
const KEY_PREFIX: &str = "simulate.market";

/// `Ok` when `ok`, else the error for `simulate.market.<key>`.
fn check(ok: bool, key: &str, reason: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError {
            key: format!("{KEY_PREFIX}.{key}"),
            reason: reason.into(),
        })
    }
}

/// A price must be finite and above zero: every other price is derived from it.
fn positive_price(key: &str, price: f64) -> Result<(), ConfigError> {
    check(
        price.is_finite() && price > 0.0,
        key,
        format!("must be a positive price, not {price}"),
    )
}

/// A finite value in `[lo, hi]`.
fn in_range(key: &str, x: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
    check(
        x.is_finite() && (lo..=hi).contains(&x),
        key,
        format!("must be in [{lo}, {hi}], not {x}"),
    )
}
