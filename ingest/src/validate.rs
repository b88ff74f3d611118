//! The one gate every source's ticks pass before Kafka.
//!
//! A rejected tick is not dropped: the caller sends it to `ticks.dlq.v1` with
//! [`Rejection`]'s text as the reason, counts it, and carries on.

use std::collections::HashMap;
use std::fmt;

use chrono::{Datelike, NaiveTime, Weekday};
use strikeflow_schemas::{Instrument, Tick};

use crate::calendar::{IST, SESSION_CLOSE};

/// Futures trade from the 09:00 pre-open; nothing is stamped before it.
const PRE_OPEN: NaiveTime = match NaiveTime::from_hms_opt(9, 0, 0) {
    Some(t) => t,
    None => panic!("09:00 is a valid time"),
};

/// Why a tick was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The token is not in the instrument master.
    UnknownToken(i64),
    /// A price is NaN or infinite.
    NonFinitePrice(&'static str, f64),
    /// A price is below zero.
    NegativePrice(&'static str, f64),
    /// A price is not a multiple of the instrument's tick size.
    OffTickGrid {
        /// Which price (`ltp`, `bid`, `ask`).
        field: &'static str,
        /// The price as received.
        price: f64,
        /// The instrument's tick size from the master.
        tick_size: f64,
    },
    /// The exchange timestamp is outside 09:00–15:30 IST on a weekday.
    OutsideSession(i64),
    /// The exchange timestamp is ahead of the wall clock by more than the tolerance.
    InFuture {
        /// The tick's exchange timestamp, in micros since the epoch.
        ts: i64,
        /// The wall clock it was checked against, in micros since the epoch.
        now: i64,
    },
    /// Open interest below zero.
    NegativeOi(i64),
    /// Volume or a quantity below zero.
    NegativeQuantity(&'static str, i64),
}

impl Rejection {
    /// A short, fixed label for metrics (the Display text carries the details).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownToken(_) => "unknown_token",
            Self::NonFinitePrice(..) => "non_finite_price",
            Self::NegativePrice(..) => "negative_price",
            Self::OffTickGrid { .. } => "off_tick_grid",
            Self::OutsideSession(_) => "outside_session",
            Self::InFuture { .. } => "in_future",
            Self::NegativeOi(_) => "negative_oi",
            Self::NegativeQuantity(..) => "negative_quantity",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownToken(t) => write!(f, "unknown instrument token {t}"),
            Self::NonFinitePrice(field, p) => write!(f, "{field} is not finite ({p})"),
            Self::NegativePrice(field, p) => write!(f, "{field} is negative ({p})"),
            Self::OffTickGrid {
                field,
                price,
                tick_size,
            } => {
                write!(f, "{field} {price} is off the {tick_size} tick grid")
            }
            Self::OutsideSession(ts) => write!(
                f,
                "timestamp {ts} µs is outside the 09:00-15:30 IST session"
            ),
            Self::InFuture { ts, now } => write!(
                f,
                "timestamp {ts} µs is {} ms in the future",
                (ts - now) / 1_000
            ),
            Self::NegativeOi(oi) => write!(f, "open interest is negative ({oi})"),
            Self::NegativeQuantity(field, q) => write!(f, "{field} is negative ({q})"),
        }
    }
}

/// Checks ticks against the instrument master and the exchange's rules.
#[derive(Debug, Clone, Default)]
pub struct TickValidator {
    /// Tick size per token, in paise (0 for indices, which have no grid).
    tick_paise: HashMap<i64, i64>,
    /// How far ahead of the caller's clock a timestamp may be, in micros; `None` when the
    /// source's time is not wall time (simulation, replay).
    future_tolerance_micros: Option<i64>,
}

impl TickValidator {
    /// A validator for the given instrument master.
    pub fn new<'a>(
        instruments: impl IntoIterator<Item = &'a Instrument>,
        future_tolerance_micros: Option<i64>,
    ) -> Self {
        let mut validator = Self {
            tick_paise: HashMap::new(),
            future_tolerance_micros,
        };
        for instrument in instruments {
            validator.add_instrument(instrument);
        }
        validator
    }

    /// Adds or replaces one instrument (the master can change during a session).
    pub fn add_instrument(&mut self, instrument: &Instrument) {
        // Indices are quoted, not traded: the master lists them with no tick size.
        let paise = if instrument.tick_size > 0.0 {
            (instrument.tick_size * 100.0).round() as i64
        } else {
            0
        };
        self.tick_paise.insert(instrument.instrument_token, paise);
    }

    /// Accepts or rejects one tick; `now_micros` is the wall clock for live sources.
    pub fn check(&self, tick: &Tick, now_micros: Option<i64>) -> Result<(), Rejection> {
        let tick_paise = *self
            .tick_paise
            .get(&tick.instrument_token)
            .ok_or(Rejection::UnknownToken(tick.instrument_token))?;
        for (field, price) in [("ltp", tick.ltp), ("bid", tick.bid), ("ask", tick.ask)] {
            if !price.is_finite() {
                return Err(Rejection::NonFinitePrice(field, price));
            }
            if price < 0.0 {
                return Err(Rejection::NegativePrice(field, price));
            }
            if tick_paise > 0 {
                let paise = price * 100.0;
                let off = (paise - paise.round()).abs() > 1e-6
                    || (paise.round() as i64) % tick_paise != 0;
                if off {
                    return Err(Rejection::OffTickGrid {
                        field,
                        price,
                        tick_size: tick_paise as f64 / 100.0,
                    });
                }
            }
        }
        if tick.oi < 0 {
            return Err(Rejection::NegativeOi(tick.oi));
        }
        for (field, q) in [
            ("volume", tick.volume),
            ("last_qty", tick.last_qty),
            ("bid_qty", tick.bid_qty),
            ("ask_qty", tick.ask_qty),
        ] {
            if q < 0 {
                return Err(Rejection::NegativeQuantity(field, q));
            }
        }
        if !in_session(tick.exchange_ts) {
            return Err(Rejection::OutsideSession(tick.exchange_ts));
        }
        if let (Some(now), Some(tolerance)) = (now_micros, self.future_tolerance_micros) {
            if tick.exchange_ts > now.saturating_add(tolerance) {
                return Err(Rejection::InFuture {
                    ts: tick.exchange_ts,
                    now,
                });
            }
        }
        Ok(())
    }
}

/// Whether `ts` (UTC micros) falls in 09:00–15:30 IST on a weekday.
fn in_session(ts: i64) -> bool {
    let Some(utc) = chrono::DateTime::from_timestamp_micros(ts) else {
        return false;
    };
    let local = utc.with_timezone(&IST);
    let weekday = !matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
    weekday && (PRE_OPEN..=SESSION_CLOSE).contains(&local.time())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::{Listing, MarketSimulator, SimulatorConfig, Underlying};

    fn setup() -> (TickValidator, Tick) {
        // A pinned market of the NIFTY index and its near future: the index ticks first.
        let market = SimulatorConfig {
            underlyings: vec![Underlying::Nifty],
            nifty: Listing {
                futures: 1,
                ..Listing::default()
            },
            ..SimulatorConfig::default()
        };
        let mut sim = MarketSimulator::new(&market).unwrap();
        let validator = TickValidator::new(sim.instruments(), Some(1_000_000));
        sim.next_tick();
        (validator, sim.next_tick()) // the future: has a tick grid
    }

    #[test]
    fn simulated_ticks_pass() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let validator = TickValidator::new(sim.instruments(), None);
        for _ in 0..5_000 {
            let tick = sim.next_tick();
            assert_eq!(validator.check(&tick, None), Ok(()), "{tick:?}");
        }
    }

    #[test]
    fn each_rule_rejects_with_its_reason() {
        let (v, good) = setup();
        let cases: Vec<(Tick, &str)> = vec![
            (
                Tick {
                    instrument_token: 1,
                    ..good.clone()
                },
                "unknown instrument token 1",
            ),
            (
                Tick {
                    ltp: f64::NAN,
                    ..good.clone()
                },
                "ltp is not finite",
            ),
            (
                Tick {
                    bid: -0.05,
                    ..good.clone()
                },
                "bid is negative",
            ),
            (
                Tick {
                    ltp: good.ltp + 0.01,
                    ..good.clone()
                },
                "off the 0.05 tick grid",
            ),
            (
                Tick {
                    oi: -1,
                    ..good.clone()
                },
                "open interest is negative",
            ),
            (
                Tick {
                    volume: -5,
                    ..good.clone()
                },
                "volume is negative",
            ),
            (
                Tick {
                    exchange_ts: good.exchange_ts - 3 * 3_600_000_000,
                    ..good.clone()
                },
                "outside the 09:00-15:30 IST session",
            ),
        ];
        for (tick, reason) in cases {
            let rejected = v.check(&tick, None).expect_err(reason);
            assert!(
                rejected.to_string().contains(reason),
                "{rejected} should say {reason}"
            );
        }
        let future = v
            .check(&good, Some(good.exchange_ts - 5_000_000))
            .expect_err("future");
        assert!(matches!(future, Rejection::InFuture { .. }));
        assert_eq!(v.check(&good, Some(good.exchange_ts)), Ok(()));
    }

    #[test]
    fn weekend_is_outside_the_session() {
        // 2026-12-05 is a Saturday; 10:00 IST = 04:30 UTC.
        let saturday = chrono::NaiveDate::from_ymd_opt(2026, 12, 5).unwrap();
        let ts = crate::calendar::ist_micros(saturday, NaiveTime::from_hms_opt(10, 0, 0).unwrap());
        assert!(!in_session(ts));
        let tuesday = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert!(in_session(crate::calendar::ist_micros(
            tuesday,
            NaiveTime::from_hms_opt(10, 0, 0).unwrap()
        )));
    }
}
