//! IST session calendar arithmetic shared by session VWAP and the rollups.
//!
//! NSE trades 09:15–15:30 IST (UTC+05:30, no daylight saving), while bars carry UTC
//! microseconds; these helpers convert without a time-zone database or a clock.

/// IST minus UTC in microseconds (+05:30).
pub const IST_OFFSET_MICROS: i64 = (5 * 60 + 30) * MINUTE_MICROS;

/// Minute of the IST day at which the cash/F&O session opens (09:15).
pub const SESSION_OPEN_MINUTE: i64 = 9 * 60 + 15;

/// Minute of the IST day at which the session closes (15:30).
pub const SESSION_CLOSE_MINUTE: i64 = 15 * 60 + 30;

/// One minute in microseconds.
pub(crate) const MINUTE_MICROS: i64 = 60_000_000;

/// One day in microseconds.
pub(crate) const DAY_MICROS: i64 = 24 * 60 * MINUTE_MICROS;

/// The IST calendar day (days since 1970-01-01 in IST) holding the UTC-microsecond
/// instant `ts`: the session key, since a session is one IST calendar day.
pub fn ist_day(ts: i64) -> i64 {
    (ts + IST_OFFSET_MICROS).div_euclid(DAY_MICROS)
}

/// UTC microseconds of 00:00 IST on IST day `day`.
pub(crate) fn ist_midnight(day: i64) -> i64 {
    day * DAY_MICROS - IST_OFFSET_MICROS
}
