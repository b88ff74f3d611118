//! The messages that travel on the topics. Each type mirrors its `.avsc` file under
//! `schemas/avro/` field for field and in the same order (the Avro binary encoding is positional).

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::impl_avro_record;

/// Kind of contract, as Kite's instrument master spells it (Avro enum
/// `strikeflow.InstrumentType`). Decides which analytics apply to an instrument: options (CE/PE)
/// feed the chain analytics, FUT gives the forward and volume, EQ is the spot index.
#[allow(clippy::upper_case_acronyms)] // the names are the wire symbols EQ/FUT/CE/PE
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum InstrumentType {
    /// Equity or index (the spot index in this pipeline).
    EQ,
    /// Future.
    FUT,
    /// Call option.
    CE,
    /// Put option.
    PE,
}

/// One row of the instrument master (`strikeflow.Instrument` on `instruments.v1`): the static
/// facts every processor needs to interpret a tick's `instrument_token` (underlying, expiry,
/// strike, lot size, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instrument {
    /// Feed-wide numeric id (Kite `instrument_token`); the low byte is the segment.
    pub instrument_token: i64,
    /// The exchange's own id for the instrument.
    pub exchange_token: i64,
    /// Trading symbol, e.g. "NIFTY26DEC24500CE"; the spot index is e.g. "NIFTY 50".
    pub tradingsymbol: String,
    /// Underlying, e.g. "NIFTY", "BANKNIFTY".
    pub name: String,
    /// Last price in rupees when the master was published.
    pub last_price: f64,
    /// Expiry as days since 1970-01-01 (Avro `date`); `None` for the spot index.
    pub expiry: Option<i32>,
    /// Strike in rupees; 0 for non-options.
    pub strike: f64,
    /// Minimum price step in rupees.
    pub tick_size: f64,
    /// Contract lot size (changes over time, so it always comes from the master).
    pub lot_size: i32,
    /// Kind of contract.
    pub instrument_type: InstrumentType,
    /// Kite segment: "NFO-OPT", "NFO-FUT", "INDICES".
    pub segment: String,
    /// Exchange: "NFO" or "NSE".
    pub exchange: String,
}

/// One normalised market-data update (`strikeflow.Tick` on `ticks.v1`): the unit of work of the
/// whole pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// Instrument id; joins to [`Instrument::instrument_token`].
    pub instrument_token: i64,
    /// Exchange timestamp in UTC microseconds since the epoch (Avro `timestamp-micros`): the
    /// event time.
    pub exchange_ts: i64,
    /// Last traded price in rupees.
    pub ltp: f64,
    /// Quantity of the last trade.
    pub last_qty: i64,
    /// Cumulative traded quantity for the day.
    pub volume: i64,
    /// Open interest.
    pub oi: i64,
    /// Best bid price in rupees.
    pub bid: f64,
    /// Quantity at the best bid.
    pub bid_qty: i64,
    /// Best ask price in rupees.
    pub ask: f64,
    /// Quantity at the best ask.
    pub ask_qty: i64,
}

/// A one-minute OHLCV + OI bar (`strikeflow.Bar` on `bars.v1`) over the event-time window
/// `[window_start, window_end)`: what the indicators and the database consume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bar {
    /// Instrument id; joins to [`Instrument::instrument_token`].
    pub instrument_token: i64,
    /// Inclusive window start, UTC microseconds since the epoch (Avro `timestamp-micros`).
    pub window_start: i64,
    /// Exclusive window end, UTC microseconds since the epoch (Avro `timestamp-micros`).
    pub window_end: i64,
    /// Price of the first tick in the window.
    pub open: f64,
    /// Highest price in the window.
    pub high: f64,
    /// Lowest price in the window.
    pub low: f64,
    /// Price of the last tick in the window.
    pub close: f64,
    /// Quantity traded inside the window.
    pub volume: i64,
    /// Open interest at the last tick of the window.
    pub oi: i64,
    /// Number of ticks aggregated into the bar.
    pub tick_count: i32,
}

/// An event-time marker (`strikeflow.Watermark` on `ticks.v1`, with
/// [`crate::WATERMARK_HEADER`]): the source promises that no tick older than `event_ts` follows
/// in the partition. Exists so a session's last bar and analytics close at the session close
/// instead of when the next session's first tick arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Watermark {
    /// UTC microseconds since the epoch (Avro `timestamp-micros`) up to which event time is
    /// complete: the session close, 15:30 IST, for an end-of-session marker.
    pub event_ts: i64,
    /// The feed that vouched for it (`simulator`, `replay`, `kite`), for operators.
    pub source: String,
}

impl_avro_record!(
    Instrument,
    "strikeflow.Instrument",
    include_str!("../avro/instrument.avsc")
);
impl_avro_record!(Tick, "strikeflow.Tick", include_str!("../avro/tick.avsc"));
impl_avro_record!(Bar, "strikeflow.Bar", include_str!("../avro/bar.avsc"));
impl_avro_record!(
    Watermark,
    "strikeflow.Watermark",
    include_str!("../avro/watermark.avsc")
);

/// Days between 0001-01-01 (chrono's day 1 of the common era) and 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

/// The calendar date of an Avro `date` (days since 1970-01-01); `None` outside chrono's range.
/// Exists so expiry dates are converted in one audited place.
pub fn date_from_days(days: i32) -> Option<NaiveDate> {
    NaiveDate::from_num_days_from_ce_opt(days.checked_add(UNIX_EPOCH_DAYS_FROM_CE)?)
}

/// The Avro `date` (days since 1970-01-01) of a calendar date; inverse of [`date_from_days`].
pub fn days_from_date(d: NaiveDate) -> i32 {
    // chrono dates span about ±262,000 years (±96 million days), far inside i32.
    d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE
}

/// Kafka message key: one option chain = (underlying, expiry). All ticks of one chain share a key so
/// they land in one partition. The spot index has no expiry and keys by the underlying alone.
///
/// The string form ([`fmt::Display`], parsed back by [`ChainKey::parse`]) is `"NIFTY:2026-12-29"`
/// (ISO date of the expiry) or `"NIFTY"`; its UTF-8 bytes are the Kafka key. Underlyings never
/// contain `':'`. An expiry outside years 0000-9999 (never a real contract) is written as its raw
/// day number so that every key still round-trips.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChainKey {
    /// Underlying name, e.g. "NIFTY" ([`Instrument::name`]).
    pub underlying: String,
    /// Expiry in days since 1970-01-01; `None` for the spot index.
    pub expiry: Option<i32>,
}

/// Why a string is not a [`ChainKey`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainKeyError {
    /// The underlying part (before any `':'`) is empty.
    #[error("chain key {0:?} has an empty underlying")]
    EmptyUnderlying(String),
    /// The part after `':'` is not an ISO `YYYY-MM-DD` date in canonical form.
    #[error("chain key {0:?} has an invalid expiry (expected YYYY-MM-DD)")]
    InvalidExpiry(String),
}

impl ChainKey {
    /// Builds a key; exists for readability at call sites.
    pub fn new(underlying: impl Into<String>, expiry: Option<i32>) -> Self {
        Self {
            underlying: underlying.into(),
            expiry,
        }
    }

    /// Parses the string form written by [`fmt::Display`] (its exact inverse; non-canonical
    /// spellings such as `2026-1-5` are rejected so that one chain has exactly one key).
    pub fn parse(s: &str) -> Result<Self, ChainKeyError> {
        let (underlying, expiry) = match s.split_once(':') {
            None => (s, None),
            Some((u, e)) => (u, Some(e)),
        };
        if underlying.is_empty() {
            return Err(ChainKeyError::EmptyUnderlying(s.to_owned()));
        }
        let expiry = match expiry {
            None => None,
            Some(text) => {
                Some(parse_expiry(text).ok_or_else(|| ChainKeyError::InvalidExpiry(s.to_owned()))?)
            }
        };
        Ok(Self::new(underlying, expiry))
    }
}

/// Parses an expiry written by [`format_expiry`], accepting only its canonical spelling.
fn parse_expiry(text: &str) -> Option<i32> {
    let days = match text.parse::<NaiveDate>() {
        Ok(date) => days_from_date(date),
        Err(_) => text.parse::<i32>().ok()?,
    };
    (format_expiry(days) == text).then_some(days)
}

/// ISO `YYYY-MM-DD` for four-digit years (every real contract); the raw day number otherwise,
/// so that every `i32` still has exactly one spelling.
fn format_expiry(days: i32) -> String {
    match date_from_days(days) {
        Some(date) if (0..=9999).contains(&date.year()) => date.format("%Y-%m-%d").to_string(),
        _ => days.to_string(),
    }
}

impl fmt::Display for ChainKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.expiry {
            None => f.write_str(&self.underlying),
            Some(days) => write!(f, "{}:{}", self.underlying, format_expiry(days)),
        }
    }
}

impl FromStr for ChainKey {
    type Err = ChainKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Instrument {
    /// The option chain this instrument belongs to (its Kafka key): `(name, expiry)`.
    pub fn chain_key(&self) -> ChainKey {
        ChainKey::new(self.name.clone(), self.expiry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
    }

    #[test]
    fn days_conversions() {
        assert_eq!(days_from_date(date(1970, 1, 1)), 0);
        assert_eq!(days_from_date(date(1969, 12, 31)), -1);
        assert_eq!(days_from_date(date(2026, 12, 29)), 20_816);
        assert_eq!(date_from_days(20_816), Some(date(2026, 12, 29)));
        assert_eq!(date_from_days(i32::MAX), None);
        assert_eq!(date_from_days(i32::MIN), None);
    }

    #[test]
    fn chain_key_display_and_parse() {
        let key = ChainKey::new("NIFTY", Some(days_from_date(date(2026, 12, 29))));
        assert_eq!(key.to_string(), "NIFTY:2026-12-29");
        assert_eq!(ChainKey::parse("NIFTY:2026-12-29"), Ok(key));
        let spot = ChainKey::new("NIFTY", None);
        assert_eq!(spot.to_string(), "NIFTY");
        assert_eq!("NIFTY".parse::<ChainKey>(), Ok(spot));
        let far = ChainKey::new("X", Some(i32::MAX));
        assert_eq!(far.to_string(), format!("X:{}", i32::MAX));
        assert_eq!(ChainKey::parse(&far.to_string()), Ok(far));
    }

    #[test]
    fn chain_key_rejects_bad_input() {
        for bad in [
            "",
            ":2026-12-29",
            "NIFTY:",
            "NIFTY:2026-1-5",
            "NIFTY:tomorrow",
            "NIFTY:20816",
            "A:2026-12-29:x",
        ] {
            assert!(ChainKey::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn instrument_chain_key() {
        let inst = Instrument {
            instrument_token: 1,
            exchange_token: 2,
            tradingsymbol: "NIFTY26DEC24500CE".into(),
            name: "NIFTY".into(),
            last_price: 0.0,
            expiry: Some(days_from_date(date(2026, 12, 29))),
            strike: 24_500.0,
            tick_size: 0.05,
            lot_size: 65,
            instrument_type: InstrumentType::CE,
            segment: "NFO-OPT".into(),
            exchange: "NFO".into(),
        };
        assert_eq!(inst.chain_key().to_string(), "NIFTY:2026-12-29");
    }
}
