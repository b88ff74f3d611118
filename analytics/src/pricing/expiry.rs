//! Time to expiry as a year fraction, from an event timestamp and an expiry date.
//!
//! NSE F&O contracts expire at 15:30 IST on the expiry date. IST is a fixed UTC+05:30 (no
//! daylight saving), so everything here is integer arithmetic on microseconds: no time-zone
//! database and no clock (the caller passes the event time).

use chrono::{Datelike, NaiveDate};

const MICROS_PER_MINUTE: i64 = 60_000_000;
const MICROS_PER_DAY: i64 = 1_440 * MICROS_PER_MINUTE;
/// IST = UTC + 05:30.
const IST_OFFSET_MICROS: i64 = 330 * MICROS_PER_MINUTE;
/// Session open, 09:15 IST, as micros after IST midnight.
const SESSION_OPEN_MICROS: i64 = (9 * 60 + 15) * MICROS_PER_MINUTE;
/// Session close and contract expiry, 15:30 IST, as micros after IST midnight.
const SESSION_CLOSE_MICROS: i64 = (15 * 60 + 30) * MICROS_PER_MINUTE;
/// `NaiveDate::num_days_from_ce()` of 1970-01-01.
const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
/// Minutes in an ACT/365 year.
const MINUTES_PER_YEAR_365: f64 = 365.0 * 1_440.0;

/// How a span of wall-clock time becomes a year fraction `T`.
///
/// Exists because the two conventions in use give different `T` and therefore different
/// implied volatilities for the same price; the choice must be explicit and configurable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DayCount {
    /// Calendar time: minutes to 15:30 IST on expiry day / (365 × 1440). The common default
    /// (NSE, most brokers); weekends and holidays decay like any other time.
    #[default]
    Act365,
    /// Trading time, Sensibull-style: remaining trading sessions / 252.
    ///
    /// Exact definition: a session is 09:15–15:30 IST on a weekday (Monday–Friday; exchange
    /// holidays are *not* known here and count as sessions). Remaining sessions = the
    /// unexpired fraction of today's session if today is a weekday (1 before 09:15, linear in
    /// time from 1 at 09:15 down to 0 at 15:30, 0 after 15:30), plus one for each weekday
    /// strictly after today up to and including the expiry date. Nights and weekends
    /// therefore carry no time value.
    Trading252,
}

/// The instant a contract expiring on `expiry` stops trading: 15:30 IST that day, as UTC
/// microseconds since the Unix epoch.
///
/// Exists so every component agrees on the expiry instant used for `T`.
#[must_use]
pub fn expiry_instant_micros(expiry: NaiveDate) -> i64 {
    days_since_epoch(expiry) * MICROS_PER_DAY + SESSION_CLOSE_MICROS - IST_OFFSET_MICROS
}

/// Wall-clock minutes from `now_micros` (UTC micros since epoch) to 15:30 IST on `expiry`,
/// floored at 0 once the contract has expired.
///
/// Exists for display ("minutes to expiry") and as the numerator of ACT/365.
#[must_use]
pub fn minutes_to_expiry(now_micros: i64, expiry: NaiveDate) -> f64 {
    let left = expiry_instant_micros(expiry)
        .saturating_sub(now_micros)
        .max(0);
    left as f64 / MICROS_PER_MINUTE as f64
}

/// Year fraction `T` from `now_micros` (UTC micros since epoch) to 15:30 IST on `expiry`
/// under `day_count`; 0 at and after expiry (the IV functions report that as
/// [`super::NoIv::Expired`]).
///
/// Exists because every price, IV and Greek needs `T`, and computing it in one place keeps
/// the convention consistent across the pipeline.
#[must_use]
pub fn years_to_expiry(now_micros: i64, expiry: NaiveDate, day_count: DayCount) -> f64 {
    let expiry_at = expiry_instant_micros(expiry);
    if now_micros >= expiry_at {
        return 0.0;
    }
    match day_count {
        DayCount::Act365 => minutes_to_expiry(now_micros, expiry) / MINUTES_PER_YEAR_365,
        DayCount::Trading252 => trading_sessions_left(now_micros, expiry) / 252.0,
    }
}

/// Remaining sessions as defined on [`DayCount::Trading252`]. Caller ensures `now` is before
/// the expiry instant.
fn trading_sessions_left(now_micros: i64, expiry: NaiveDate) -> f64 {
    let ist = now_micros.saturating_add(IST_OFFSET_MICROS);
    let today = ist.div_euclid(MICROS_PER_DAY);
    let time_of_day = ist.rem_euclid(MICROS_PER_DAY);
    let expiry_day = days_since_epoch(expiry);
    let session = (SESSION_CLOSE_MICROS - SESSION_OPEN_MICROS) as f64;
    let today_fraction = if is_weekday(today) {
        ((SESSION_CLOSE_MICROS - time_of_day) as f64 / session).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let later_days = weekdays_through(expiry_day) - weekdays_through(today);
    today_fraction + later_days.max(0) as f64
}

fn days_since_epoch(date: NaiveDate) -> i64 {
    i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE
}

/// Monday = 0 … Sunday = 6 for a day number counted from 1970-01-01 (a Thursday).
fn weekday_index(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

fn is_weekday(day: i64) -> bool {
    weekday_index(day) < 5
}

/// Weekdays from Monday 1969-12-29 through `day` (a cumulative count; only differences are
/// meaningful, and they are right for negative days too).
fn weekdays_through(day: i64) -> i64 {
    let since_monday = day + 3;
    since_monday.div_euclid(7) * 5 + (since_monday.rem_euclid(7) + 1).min(5)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("valid test date")
    }

    /// UTC micros of an IST wall-clock time.
    fn ist(y: i32, m: u32, d: u32, hh: i64, mm: i64) -> i64 {
        days_since_epoch(date(y, m, d)) * MICROS_PER_DAY + (hh * 60 + mm) * MICROS_PER_MINUTE
            - IST_OFFSET_MICROS
    }

    #[test]
    fn expiry_instant_is_1530_ist() {
        // 2025-11-25 15:30 IST = 10:00 UTC = 1764064800 s.
        assert_eq!(
            expiry_instant_micros(date(2025, 11, 25)),
            1_764_064_800_000_000
        );
        let utc =
            chrono::DateTime::from_timestamp_micros(expiry_instant_micros(date(2025, 11, 25)))
                .expect("in range");
        assert_eq!(utc.to_rfc3339(), "2025-11-25T10:00:00+00:00");
    }

    #[test]
    fn act365_on_expiry_morning() {
        let now = ist(2025, 11, 25, 9, 15);
        assert_eq!(minutes_to_expiry(now, date(2025, 11, 25)), 375.0);
        let t = years_to_expiry(now, date(2025, 11, 25), DayCount::Act365);
        assert_eq!(t, 375.0 / 525_600.0);
    }

    #[test]
    fn act365_counts_weekends_and_fractions() {
        // Friday 15:30 to Tuesday 15:30 = 4 days.
        let now = ist(2025, 11, 21, 15, 30);
        let t = years_to_expiry(now, date(2025, 11, 25), DayCount::Act365);
        assert!((t - 4.0 / 365.0).abs() < 1e-15);
        // 30 seconds before expiry.
        let t = years_to_expiry(
            ist(2025, 11, 25, 15, 29) + 30_000_000,
            date(2025, 11, 25),
            DayCount::Act365,
        );
        assert!((t - 0.5 / 525_600.0).abs() < 1e-18);
    }

    #[test]
    fn expired_is_zero() {
        for dc in [DayCount::Act365, DayCount::Trading252] {
            assert_eq!(
                years_to_expiry(ist(2025, 11, 25, 15, 30), date(2025, 11, 25), dc),
                0.0
            );
            assert_eq!(
                years_to_expiry(ist(2025, 11, 26, 9, 15), date(2025, 11, 25), dc),
                0.0
            );
        }
        assert_eq!(
            minutes_to_expiry(ist(2025, 11, 26, 9, 15), date(2025, 11, 25)),
            0.0
        );
    }

    #[test]
    fn trading252_sessions() {
        let exp = date(2025, 11, 25); // a Tuesday
        let t = |now| years_to_expiry(now, exp, DayCount::Trading252);
        // Expiry day 09:15: one full session.
        assert!((t(ist(2025, 11, 25, 9, 15)) - 1.0 / 252.0).abs() < 1e-16);
        // Expiry day before the open: still one session.
        assert!((t(ist(2025, 11, 25, 7, 0)) - 1.0 / 252.0).abs() < 1e-16);
        // Expiry day 12:22:30: half of the 375-minute session.
        let noonish = ist(2025, 11, 25, 12, 22) + 30_000_000;
        assert!((t(noonish) - 0.5 / 252.0).abs() < 1e-16);
        // Monday 09:15: Monday + Tuesday.
        assert!((t(ist(2025, 11, 24, 9, 15)) - 2.0 / 252.0).abs() < 1e-16);
        // Friday after the close: Monday + Tuesday; the weekend adds nothing.
        assert!((t(ist(2025, 11, 21, 16, 0)) - 2.0 / 252.0).abs() < 1e-16);
        assert!((t(ist(2025, 11, 22, 11, 0)) - 2.0 / 252.0).abs() < 1e-16);
        assert!((t(ist(2025, 11, 23, 23, 59)) - 2.0 / 252.0).abs() < 1e-16);
        // Previous Tuesday 09:15: Tue..Fri (4) + Mon + Tue = 6.
        assert!((t(ist(2025, 11, 18, 9, 15)) - 6.0 / 252.0).abs() < 1e-16);
        // Across a month: Tue 2025-10-28 09:15 -> 2025-11-25 is 4 weeks of weekdays + 1.
        assert!((t(ist(2025, 10, 28, 9, 15)) - 21.0 / 252.0).abs() < 1e-16);
    }

    #[test]
    fn weekday_arithmetic() {
        assert_eq!(weekday_index(0), 3); // 1970-01-01 Thursday
        for (y, m, d) in [(2025, 11, 25), (1999, 12, 31), (1969, 7, 20), (2026, 2, 28)] {
            let day = days_since_epoch(date(y, m, d));
            let want = i64::from(date(y, m, d).weekday().num_days_from_monday());
            assert_eq!(weekday_index(day), want, "{y}-{m}-{d}");
        }
        // Brute-force the cumulative weekday count over a span including negative days.
        let mut count = 0;
        for day in -30..60 {
            if is_weekday(day) {
                count += 1;
            }
            assert_eq!(
                weekdays_through(day) - weekdays_through(-31),
                count,
                "day {day}"
            );
        }
    }
}
