//! NSE calendar facts the simulator needs: session times, trading days, expiries and Kite
//! trading symbols.
//!
//! Expiry rules (NSE F&O since 2 Sep 2025): contracts expire on Tuesday at 15:30 IST; when
//! that Tuesday is a trading holiday the contract expires on the previous trading day. The
//! monthly contract is the one of the month's last Tuesday; NIFTY weeklies are the other
//! Tuesdays. Holidays cannot be fetched here: they are *configured* (see
//! [`default_holidays`]) and any list can be passed to [`TradingCalendar::new`].

use std::collections::BTreeSet;

use chrono::{Datelike, Duration, FixedOffset, NaiveDate, NaiveTime, Weekday};

/// India Standard Time, UTC+05:30 (no daylight saving). Evaluated at compile time.
pub const IST: FixedOffset = match FixedOffset::east_opt(19_800) {
    Some(offset) => offset,
    None => panic!("UTC+05:30 is a valid offset"),
};

/// Session open, 09:15 IST.
pub const SESSION_OPEN: NaiveTime = match NaiveTime::from_hms_opt(9, 15, 0) {
    Some(t) => t,
    None => panic!("09:15 is a valid time"),
};

/// Session close, 15:30 IST (also the expiry time of contracts).
pub const SESSION_CLOSE: NaiveTime = match NaiveTime::from_hms_opt(15, 30, 0) {
    Some(t) => t,
    None => panic!("15:30 is a valid time"),
};

/// Micros since the epoch of a wall-clock time in IST on `date`.
pub fn ist_micros(date: NaiveDate, time: NaiveTime) -> i64 {
    // A fixed offset has exactly one instant per local time.
    date.and_time(time).and_utc().timestamp_micros() - i64::from(IST.local_minus_utc()) * 1_000_000
}

/// One minute in micros: the bar length, which an end-of-input marker rounds up to.
const MINUTE_MICROS: i64 = 60_000_000;

/// The IST calendar date of an instant (micros since the epoch). Session closes are IST
/// wall-clock times, so a UTC date would put a 05:00 IST tick on the previous day.
pub fn ist_date(ts: i64) -> NaiveDate {
    match chrono::DateTime::from_timestamp_micros(ts) {
        Some(utc) => utc.with_timezone(&IST).date_naive(),
        // Beyond chrono's ±262,000 years: no exchange timestamp, only hostile input.
        None if ts < 0 => NaiveDate::MIN,
        None => NaiveDate::MAX,
    }
}

/// The session close (15:30 IST) of the IST day holding `ts`.
pub fn session_close_of(ts: i64) -> i64 {
    ist_micros(ist_date(ts), SESSION_CLOSE)
}

/// The event time an end-of-input marker carries after the newest tick `last_ts`: that
/// day's session close, or, for a tick stamped after the close (closing-session prints),
/// the end of its minute, so its bar closes too.
pub fn session_end_after(last_ts: i64) -> i64 {
    // Saturating: a recording line stamped within a minute of i64::MAX (hostile or corrupt,
    // found by fuzzing) overflowed here at the end of a replay.
    let minute_end = last_ts
        .saturating_sub(last_ts.rem_euclid(MINUTE_MICROS))
        .saturating_add(MINUTE_MICROS);
    session_close_of(last_ts).max(minute_end)
}

/// The event-time marker owed between two consecutive ticks of a recording (`newest` is the
/// newest event time so far, `next` the tick about to be published), if a session ended in
/// between: the close when `next` is at or past it, or [`session_end_after`] when `next`
/// is on a later IST day after post-close ticks.
pub fn session_boundary(newest: i64, next: i64) -> Option<i64> {
    let close = session_close_of(newest);
    if newest < close && next >= close {
        return Some(close);
    }
    (ist_date(next) > ist_date(newest)).then(|| session_end_after(newest))
}

/// The most recent session close that is at least `grace_micros` in the past at `now`: a
/// live feed vouches for a close only once ticks stamped before it have had `grace_micros`
/// to arrive.
pub fn latest_close(now: i64, grace_micros: i64) -> i64 {
    let date = ist_date(now.saturating_sub(grace_micros));
    let close = ist_micros(date, SESSION_CLOSE);
    if close.saturating_add(grace_micros) <= now {
        close
    } else {
        ist_micros(date.pred_opt().unwrap_or(date), SESSION_CLOSE)
    }
}

/// Weekday trading holidays (year, month, day) of the default calendar, with the occasion.
/// Source: *configured* for late 2026 and 2027 from the usual Indian exchange holidays (the
/// NSE circular cannot be fetched here); dates of lunar festivals are estimates. Replace
/// them with the exchange's published list through the simulator's `holidays` setting.
const DEFAULT_HOLIDAYS: [(i32, u32, u32, &str); 20] = [
    (2026, 9, 14, "Ganesh Chaturthi"),
    (2026, 10, 2, "Mahatma Gandhi Jayanti"),
    (2026, 10, 20, "Dussehra"),
    (2026, 11, 10, "Diwali Balipratipada"),
    (2026, 11, 24, "Guru Nanak Jayanti"),
    (2026, 12, 25, "Christmas"),
    (2027, 1, 26, "Republic Day"),
    (2027, 3, 5, "Mahashivratri"),
    (2027, 3, 22, "Holi"),
    (2027, 3, 26, "Good Friday"),
    (2027, 4, 14, "Dr. Baba Saheb Ambedkar Jayanti"),
    (2027, 4, 15, "Shri Ram Navami"),
    (2027, 4, 19, "Shri Mahavir Jayanti"),
    (2027, 5, 17, "Bakri Id"),
    (2027, 6, 15, "Muharram"),
    (2027, 8, 16, "Parsi New Year"),
    (2027, 8, 25, "Ganesh Chaturthi"),
    (2027, 10, 29, "Diwali Laxmi Pujan"),
    (2027, 11, 15, "Guru Nanak Jayanti"),
    (2027, 12, 24, "Christmas (observed)"),
];

/// The default (configured) NSE trading holidays for late 2026 and 2027: the simulator's
/// default `holidays`, so expiries and session roll-overs move the way they do on NSE.
pub fn default_holidays() -> Vec<NaiveDate> {
    DEFAULT_HOLIDAYS
        .iter()
        .filter_map(|&(y, m, d, _)| NaiveDate::from_ymd_opt(y, m, d))
        .collect()
}

/// Whether a contract is the month's (last-Tuesday) contract or a weekly one: the two are
/// spelled differently in Kite trading symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryKind {
    /// Expires on a Tuesday other than the month's last (NIFTY weeklies).
    Weekly,
    /// Expires on the month's last Tuesday (futures and monthly options).
    Monthly,
}

/// Trading days and expiries of NSE F&O under a configured holiday list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TradingCalendar {
    holidays: BTreeSet<NaiveDate>,
}

impl TradingCalendar {
    /// A calendar where weekends and `holidays` are closed.
    pub fn new(holidays: impl IntoIterator<Item = NaiveDate>) -> Self {
        Self {
            holidays: holidays.into_iter().collect(),
        }
    }

    /// Whether the exchange is open on `date` (a weekday that is not a holiday).
    pub fn is_trading_day(&self, date: NaiveDate) -> bool {
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun) && !self.holidays.contains(&date)
    }

    /// The first trading day on or after `date`: where a session that would start on a
    /// weekend or holiday starts instead.
    pub fn trading_day_on_or_after(&self, mut date: NaiveDate) -> NaiveDate {
        // Weekends alone never close more than two days in a row; holidays add a few more.
        for _ in 0..366 {
            if self.is_trading_day(date) {
                return date;
            }
            date += Duration::days(1);
        }
        date
    }

    /// The trading day after `date`: where the session rolls after the 15:30 close.
    pub fn next_trading_day(&self, date: NaiveDate) -> NaiveDate {
        self.trading_day_on_or_after(date + Duration::days(1))
    }

    /// The last trading day on or before `date`: where an expiry falling on a holiday moves.
    pub fn trading_day_on_or_before(&self, mut date: NaiveDate) -> NaiveDate {
        for _ in 0..366 {
            if self.is_trading_day(date) {
                return date;
            }
            date -= Duration::days(1);
        }
        date
    }

    /// The actual expiry of the contract scheduled for `tuesday` (the previous trading day
    /// when the Tuesday is a holiday).
    pub fn expiry_for(&self, tuesday: NaiveDate) -> NaiveDate {
        self.trading_day_on_or_before(tuesday)
    }

    /// The monthly expiry of (`year`, `month`): its last Tuesday, moved back over holidays.
    pub fn monthly_expiry(&self, year: i32, month: u32) -> NaiveDate {
        self.expiry_for(last_tuesday(year, month))
    }

    /// Whether an (actual) expiry date is its month's monthly expiry.
    pub fn kind_of(&self, expiry: NaiveDate) -> ExpiryKind {
        if expiry == self.monthly_expiry(expiry.year(), expiry.month()) {
            ExpiryKind::Monthly
        } else {
            ExpiryKind::Weekly
        }
    }

    /// The next `n` monthly expiries still open on `date` (an expiry on `date` itself counts:
    /// it trades until 15:30).
    pub fn monthly_expiries(&self, date: NaiveDate, n: usize) -> Vec<NaiveDate> {
        let mut out = Vec::with_capacity(n);
        let (mut year, mut month) = (date.year(), date.month());
        while out.len() < n {
            let expiry = self.monthly_expiry(year, month);
            if expiry >= date {
                out.push(expiry);
            }
            (year, month) = if month == 12 {
                (year + 1, 1)
            } else {
                (year, month + 1)
            };
        }
        out
    }

    /// The next `n` weekly expiries still open on `date`: Tuesday contracts that are not the
    /// month's last Tuesday (NSE lists four weeklies besides the monthly series).
    pub fn weekly_expiries(&self, date: NaiveDate, n: usize) -> Vec<NaiveDate> {
        let mut out = Vec::with_capacity(n);
        // Expiries only move backwards, so the first candidate is the Tuesday on or after
        // `date` (whose contract may already be over if a holiday moved it before `date`).
        let mut tuesday = next_tuesday(date);
        while out.len() < n {
            if tuesday != last_tuesday(tuesday.year(), tuesday.month()) {
                let expiry = self.expiry_for(tuesday);
                if expiry >= date {
                    out.push(expiry);
                }
            }
            tuesday += Duration::days(7);
        }
        out
    }
}

/// The Tuesday on or after `date`.
pub fn next_tuesday(date: NaiveDate) -> NaiveDate {
    let ahead =
        (Weekday::Tue.num_days_from_monday() + 7 - date.weekday().num_days_from_monday()) % 7;
    date + Duration::days(i64::from(ahead))
}

/// The last Tuesday of (`year`, `month`): the scheduled monthly expiry before holidays.
pub fn last_tuesday(year: i32, month: u32) -> NaiveDate {
    let (ny, nm) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    let first_next = NaiveDate::from_ymd_opt(ny, nm, 1).unwrap_or(NaiveDate::MIN);
    let mut d = first_next - Duration::days(1);
    while d.weekday() != Weekday::Tue {
        d -= Duration::days(1);
    }
    d
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Kite trading symbol of a (monthly) future: `NIFTY26DECFUT`.
pub fn future_symbol(underlying: &str, expiry: NaiveDate) -> String {
    format!(
        "{underlying}{:02}{}FUT",
        expiry.year() % 100,
        MONTHS[expiry.month0() as usize]
    )
}

/// Kite trading symbol of an option: monthly `NIFTY26DEC24500CE` (YY, MON), weekly
/// `NIFTY26D0824500CE` (YY, month as 1-9/O/N/D, DD of the actual expiry date).
pub fn option_symbol(
    underlying: &str,
    expiry: NaiveDate,
    kind: ExpiryKind,
    strike: f64,
    right: &str,
) -> String {
    let yy = expiry.year() % 100;
    match kind {
        ExpiryKind::Monthly => format!(
            "{underlying}{yy:02}{}{strike}{right}",
            MONTHS[expiry.month0() as usize]
        ),
        ExpiryKind::Weekly => {
            let m = match expiry.month() {
                10 => 'O',
                11 => 'N',
                12 => 'D',
                n => char::from_digit(n, 10).unwrap_or('?'),
            };
            format!("{underlying}{yy:02}{m}{:02}{strike}{right}", expiry.day())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn nse() -> TradingCalendar {
        TradingCalendar::new(default_holidays())
    }

    #[test]
    fn expiries_fall_on_tuesdays() {
        let cal = TradingCalendar::default();
        assert_eq!(next_tuesday(d(2026, 11, 30)), d(2026, 12, 1));
        assert_eq!(next_tuesday(d(2026, 12, 1)), d(2026, 12, 1));
        assert_eq!(last_tuesday(2026, 12), d(2026, 12, 29));
        assert_eq!(
            cal.monthly_expiries(d(2026, 12, 30), 1),
            vec![d(2027, 1, 26)]
        );
        assert_eq!(
            cal.weekly_expiries(d(2026, 12, 1), 4),
            vec![
                d(2026, 12, 1),
                d(2026, 12, 8),
                d(2026, 12, 15),
                d(2026, 12, 22)
            ],
            "the monthly week (29 Dec) is not a weekly"
        );
        assert_eq!(
            cal.weekly_expiries(d(2026, 12, 23), 2),
            vec![d(2027, 1, 5), d(2027, 1, 12)]
        );
        for e in cal.weekly_expiries(d(2026, 9, 1), 40) {
            assert_eq!(e.weekday(), Weekday::Tue);
        }
    }

    #[test]
    fn holiday_on_tuesday_moves_expiry_to_the_previous_trading_day() {
        let cal = nse();
        // Dussehra, Tuesday 20 Oct 2026: the weekly expires on Monday 19 Oct.
        assert_eq!(cal.expiry_for(d(2026, 10, 20)), d(2026, 10, 19));
        assert!(cal
            .weekly_expiries(d(2026, 10, 14), 2)
            .contains(&d(2026, 10, 19)));
        // Guru Nanak Jayanti on the last Tuesday of November 2026: the monthly moves too.
        assert_eq!(cal.monthly_expiry(2026, 11), d(2026, 11, 23));
        assert_eq!(cal.kind_of(d(2026, 11, 23)), ExpiryKind::Monthly);
        // Republic Day 2027 is the last Tuesday of January.
        assert_eq!(
            cal.monthly_expiries(d(2026, 12, 1), 3),
            vec![d(2026, 12, 29), d(2027, 1, 25), d(2027, 2, 23)]
        );
        // A Monday holiday too pushes the expiry back to Friday.
        let cal = TradingCalendar::new([d(2026, 12, 7), d(2026, 12, 8)]);
        assert_eq!(cal.expiry_for(d(2026, 12, 8)), d(2026, 12, 4));
        assert_eq!(cal.weekly_expiries(d(2026, 12, 2), 1), vec![d(2026, 12, 4)]);
        // An expiry moved before `date` is over: the next one is listed.
        assert_eq!(
            cal.weekly_expiries(d(2026, 12, 7), 1),
            vec![d(2026, 12, 15)]
        );
    }

    #[test]
    fn trading_days_skip_weekends_and_holidays() {
        let cal = nse();
        assert!(cal.is_trading_day(d(2026, 12, 1)));
        assert!(!cal.is_trading_day(d(2026, 12, 5)), "Saturday");
        assert!(!cal.is_trading_day(d(2026, 12, 25)), "Christmas");
        assert_eq!(cal.next_trading_day(d(2026, 12, 24)), d(2026, 12, 28));
        assert_eq!(cal.next_trading_day(d(2026, 12, 4)), d(2026, 12, 7));
        assert_eq!(
            cal.trading_day_on_or_after(d(2026, 12, 25)),
            d(2026, 12, 28)
        );
        assert_eq!(
            cal.trading_day_on_or_before(d(2026, 12, 27)),
            d(2026, 12, 24)
        );
    }

    #[test]
    fn default_holidays_are_sorted_weekdays_in_late_2026_and_2027() {
        let days = default_holidays();
        assert_eq!(days.len(), DEFAULT_HOLIDAYS.len(), "every entry is a date");
        assert!(days.windows(2).all(|w| w[0] < w[1]));
        for day in days {
            assert!(
                !matches!(day.weekday(), Weekday::Sat | Weekday::Sun),
                "{day}"
            );
            assert!((d(2026, 9, 1)..d(2028, 1, 1)).contains(&day));
        }
    }

    #[test]
    fn kite_symbols() {
        let cal = nse();
        assert_eq!(future_symbol("NIFTY", d(2026, 12, 29)), "NIFTY26DECFUT");
        assert_eq!(
            option_symbol("NIFTY", d(2026, 12, 29), ExpiryKind::Monthly, 24500.0, "CE"),
            "NIFTY26DEC24500CE"
        );
        assert_eq!(
            option_symbol("NIFTY", d(2026, 12, 8), ExpiryKind::Weekly, 24500.0, "PE"),
            "NIFTY26D0824500PE"
        );
        assert_eq!(
            option_symbol("NIFTY", d(2027, 3, 2), ExpiryKind::Weekly, 25000.0, "CE"),
            "NIFTY2730225000CE"
        );
        // Weeklies are spelled with their actual (holiday-moved) date, in October as 'O'.
        let moved = cal.expiry_for(d(2026, 10, 20));
        assert_eq!(
            option_symbol("NIFTY", moved, cal.kind_of(moved), 24000.0, "PE"),
            "NIFTY26O1924000PE"
        );
        // A monthly moved onto a Monday is still the monthly contract.
        let monthly = cal.monthly_expiry(2026, 11);
        assert_eq!(
            option_symbol("BANKNIFTY", monthly, cal.kind_of(monthly), 55000.0, "CE"),
            "BANKNIFTY26NOV55000CE"
        );
        assert_eq!(future_symbol("BANKNIFTY", monthly), "BANKNIFTY26NOVFUT");
    }

    #[test]
    fn session_open_is_0345_utc() {
        let micros = ist_micros(d(2026, 12, 1), SESSION_OPEN);
        assert_eq!(micros % 86_400_000_000, (3 * 3600 + 45 * 60) * 1_000_000);
    }

    const MIN: i64 = 60_000_000;

    #[test]
    fn ist_dates_and_closes() {
        let close = ist_micros(d(2026, 12, 1), SESSION_CLOSE);
        assert_eq!(
            close % 86_400_000_000,
            10 * 3600 * 1_000_000,
            "15:30 IST is 10:00 UTC"
        );
        // 00:30 IST on 2 Dec is still 1 Dec in UTC.
        let early = ist_micros(d(2026, 12, 2), NaiveTime::from_hms_opt(0, 30, 0).unwrap());
        assert_eq!(ist_date(early), d(2026, 12, 2));
        assert_eq!(ist_date(early - 1_000_000 * 3600), d(2026, 12, 1));
        assert_eq!(session_close_of(close - 1), close);
        assert_eq!(session_close_of(early), close + 86_400_000_000);
    }

    #[test]
    fn end_of_input_marker_is_the_close_or_the_end_of_a_later_minute() {
        let close = ist_micros(d(2026, 12, 1), SESSION_CLOSE);
        assert_eq!(session_end_after(close - 1), close);
        assert_eq!(session_end_after(close - 5 * 3600 * 1_000_000), close);
        assert_eq!(session_end_after(close + MIN + 5), close + 2 * MIN);
    }

    #[test]
    fn boundaries_between_ticks() {
        let close = ist_micros(d(2026, 12, 1), SESSION_CLOSE);
        let next_open = ist_micros(d(2026, 12, 2), SESSION_OPEN);
        assert_eq!(session_boundary(close - MIN, close - 1), None);
        assert_eq!(session_boundary(close - 1, next_open), Some(close));
        assert_eq!(session_boundary(close - 1, close), Some(close));
        // Post-close prints, then the next day: their minute closes too.
        assert_eq!(session_boundary(close + 30, close + 90_000_000), None);
        assert_eq!(
            session_boundary(close + 90_000_000, next_open),
            Some(close + 2 * MIN)
        );
    }

    #[test]
    fn latest_close_waits_for_the_grace() {
        let close = ist_micros(d(2026, 12, 1), SESSION_CLOSE);
        let grace = 10_000_000;
        let day = 86_400_000_000;
        assert_eq!(latest_close(close + grace, grace), close);
        assert_eq!(latest_close(close + grace - 1, grace), close - day);
        assert_eq!(latest_close(close + 8 * 3600 * 1_000_000, grace), close);
        assert_eq!(latest_close(close + day - 1, grace), close);
    }
}
