//! The instrument master the simulator lists: indices, futures and option chains with Kite
//! trading symbols and tokens, and the per-contract state that travels with each row.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::Deserialize;
use strikeflow_schemas::{days_from_date, Instrument, InstrumentType};

use super::config::SimulatorConfig;
use super::dynamics::ExpiryState;
use super::pricing::TICK_SIZE;
use super::MarketSimulator;
use crate::calendar::{future_symbol, ist_micros, option_symbol, SESSION_CLOSE};

/// Kite's instrument token of the NIFTY 50 index (segment 9, indices).
pub const NIFTY_SPOT_TOKEN: i64 = 256_265;
/// Kite's instrument token of the NIFTY BANK index (segment 9, indices).
pub const BANKNIFTY_SPOT_TOKEN: i64 = 260_105;

/// Kite segment of NSE futures and options (the low byte of their tokens).
const NFO_SEGMENT: i64 = 2;
/// Exchange tokens of simulated derivatives are drawn from this range (NFO tokens are five
/// to six digits), which keeps `token << 8` far inside Kite's signed 32-bit packets.
const EXCHANGE_TOKEN_BASE: i64 = 35_000;
/// How many exchange tokens the range holds.
const EXCHANGE_TOKEN_SPAN: i64 = 1 << 16;

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

    /// Trading symbol of the index itself.
    fn index_symbol(self) -> &'static str {
        match self {
            Self::Nifty => "NIFTY 50",
            Self::BankNifty => "NIFTY BANK",
        }
    }

    /// Kite's token of the index itself.
    fn index_token(self) -> i64 {
        match self {
            Self::Nifty => NIFTY_SPOT_TOKEN,
            Self::BankNifty => BANKNIFTY_SPOT_TOKEN,
        }
    }

    /// Distance between two listed strikes, in index points.
    pub(super) fn strike_step(self) -> f64 {
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
    pub(super) fn activity(self) -> f64 {
        match self {
            Self::Nifty => 1.0,
            Self::BankNifty => 0.6,
        }
    }

    /// Open interest (units) of an at-the-money near-expiry strike and of the near future.
    pub(super) fn oi_scale(self) -> (f64, f64) {
        match self {
            Self::Nifty => (6_000_000.0, 14_000_000.0),
            Self::BankNifty => (1_500_000.0, 2_500_000.0),
        }
    }
}

/// What a listed instrument is, for pricing and scheduling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A spot index: ticks a price only.
    Index,
    /// A monthly future.
    Future,
    /// A call option.
    Call,
    /// A put option.
    Put,
}

/// Hot state of one instrument (the master row lives in `instruments` at the same index).
#[derive(Debug, Clone)]
pub(super) struct Contract {
    pub(super) kind: Kind,
    /// Into `underlyings`.
    pub(super) underlying: usize,
    /// Into `expiries` (unused for indices).
    pub(super) expiry: usize,
    /// Near = 0, next = 1, far = 2 (futures only).
    pub(super) rank: usize,
    pub(super) strike: f64,
    pub(super) lot: i64,
    /// Traded quantity today.
    pub(super) volume: i64,
    /// Open interest as last published by the exchange.
    pub(super) oi: i64,
    /// Open interest as trades left it (published at the next refresh).
    pub(super) oi_latent: i64,
    /// Refresh epoch `oi` belongs to.
    pub(super) oi_epoch: i64,
    /// Activity weight at the last reweight (0: not trading).
    pub(super) weight: f64,
}

impl Contract {
    /// A freshly listed contract: no volume, no OI (the opening book sets it), not trading.
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

impl MarketSimulator {
    /// Lists underlying `k`'s index, futures and options.
    pub(super) fn list(&mut self, k: usize, config: &SimulatorConfig, used: &mut HashSet<i64>) {
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
            self.expiries
                .push(ExpiryState::new(k, ist_micros(d, SESSION_CLOSE)));
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

    /// Adds a master row and its contract at the same index.
    fn push(&mut self, instrument: Instrument, contract: Contract) {
        self.instruments.push(instrument);
        self.contracts.push(contract);
    }
}

/// The master row of a future or option, as Kite's instrument dump has it.
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
