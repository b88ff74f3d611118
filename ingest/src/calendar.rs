//! NSE calendar facts the simulator needs: session times, expiries, trading symbols.

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

/// The first weekday on or after `date` (weekends are never trading days).
pub fn trading_day_on_or_after(mut date: NaiveDate) -> NaiveDate {
    while matches!(date.weekday(), Weekday::Sat | Weekday::Sun) {
        date += Duration::days(1);
    }
    date
}

/// The weekly expiry on or after `date`: NSE F&O expire on Tuesdays since 2 Sep 2025.
pub fn weekly_expiry(date: NaiveDate) -> NaiveDate {
    let ahead =
        (Weekday::Tue.num_days_from_monday() + 7 - date.weekday().num_days_from_monday()) % 7;
    date + Duration::days(i64::from(ahead))
}

/// The last Tuesday of `date`'s month: the monthly expiry.
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

/// The monthly expiry on or after `date`.
pub fn monthly_expiry(date: NaiveDate) -> NaiveDate {
    let this = last_tuesday(date.year(), date.month());
    if this >= date {
        this
    } else {
        let next = date.with_day(1).unwrap_or(date) + Duration::days(32);
        last_tuesday(next.year(), next.month())
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];

/// Kite trading symbol of a future: `NIFTY26DECFUT`.
pub fn future_symbol(underlying: &str, expiry: NaiveDate) -> String {
    format!(
        "{underlying}{:02}{}FUT",
        expiry.year() % 100,
        MONTHS[expiry.month0() as usize]
    )
}

/// Kite trading symbol of an option: monthly `NIFTY26DEC24500CE`, weekly
/// `NIFTY26D0824500CE` (YY, month as 1-9/O/N/D, DD).
pub fn option_symbol(underlying: &str, expiry: NaiveDate, strike: f64, kind: &str) -> String {
    let yy = expiry.year() % 100;
    let strike = format!("{strike}");
    if expiry == last_tuesday(expiry.year(), expiry.month()) {
        format!(
            "{underlying}{yy:02}{}{strike}{kind}",
            MONTHS[expiry.month0() as usize]
        )
    } else {
        let m = match expiry.month() {
            10 => 'O',
            11 => 'N',
            12 => 'D',
            n => char::from_digit(n, 10).unwrap_or('?'),
        };
        format!("{underlying}{yy:02}{m}{:02}{strike}{kind}", expiry.day())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn expiries_fall_on_tuesdays() {
        assert_eq!(weekly_expiry(d(2026, 11, 30)), d(2026, 12, 1));
        assert_eq!(weekly_expiry(d(2026, 12, 1)), d(2026, 12, 1));
        assert_eq!(last_tuesday(2026, 12), d(2026, 12, 29));
        assert_eq!(monthly_expiry(d(2026, 12, 30)), d(2027, 1, 26));
    }

    #[test]
    fn kite_symbols() {
        assert_eq!(future_symbol("NIFTY", d(2026, 12, 29)), "NIFTY26DECFUT");
        assert_eq!(
            option_symbol("NIFTY", d(2026, 12, 29), 24500.0, "CE"),
            "NIFTY26DEC24500CE"
        );
        assert_eq!(
            option_symbol("NIFTY", d(2026, 12, 8), 24500.0, "PE"),
            "NIFTY26D0824500PE"
        );
        assert_eq!(
            option_symbol("NIFTY", d(2027, 3, 2), 25000.0, "CE"),
            "NIFTY2730225000CE"
        );
    }

    #[test]
    fn session_open_is_0345_utc() {
        let micros = ist_micros(d(2026, 12, 1), SESSION_OPEN);
        assert_eq!(micros % 86_400_000_000, (3 * 3600 + 45 * 60) * 1_000_000);
    }
}
