//! Query parameters: read as (name, value) pairs and checked one by one, so a bad value is
//! answered 400 naming its parameter, before any SQL runs.
//!
//! Conventions shared by every endpoint (`docs/api.md`):
//! * an empty value (`expiry=`) is the same as an absent parameter;
//! * a parameter given twice, or one the endpoint does not take (REST endpoints only; UDF
//!   clients may add their own), is an error;
//! * times are RFC 3339 (`2026-12-02T10:00:00+05:30`) or unix seconds; dates `YYYY-MM-DD`;
//! * symbols, underlyings, types and buckets are matched upper-cased (`nifty` is `NIFTY`).

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::error::Problem;

/// The parameters of one request, checked against the names its endpoint takes.
#[derive(Debug)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// REST: every name must be one of `known`, and none may repeat.
    pub(crate) fn strict(query: Option<&str>, known: &[&str]) -> Result<Self, Problem> {
        let params = Self::read(query, known)?;
        if let Some((name, _)) = params
            .pairs
            .iter()
            .find(|(n, _)| !known.contains(&n.as_str()))
        {
            return Err(Problem::unknown_parameter(name, known));
        }
        Ok(params)
    }

    /// UDF: names the endpoint does not take are ignored (the charting library and its
    /// hosts add their own); the known ones still may not repeat.
    pub(crate) fn lenient(query: Option<&str>, known: &[&str]) -> Result<Self, Problem> {
        Self::read(query, known)
    }

    fn read(query: Option<&str>, known: &[&str]) -> Result<Self, Problem> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or_default()).map_err(Problem::bad_query)?;
        for (i, (name, _)) in pairs.iter().enumerate() {
            if known.contains(&name.as_str()) && pairs[..i].iter().any(|(n, _)| n == name) {
                return Err(Problem::bad_parameter(name, "is given more than once"));
            }
        }
        Ok(Self { pairs })
    }

    /// The raw value of `name`; `None` when absent or empty. Control characters (NUL
    /// among them, which PostgreSQL refuses in text) are a bad value.
    pub(crate) fn raw(&self, name: &str) -> Result<Option<&str>, Problem> {
        match self.pairs.iter().find(|(n, _)| n == name) {
            None => Ok(None),
            Some((_, value)) if value.trim().is_empty() => Ok(None),
            Some((_, value)) if value.chars().any(char::is_control) => Err(Problem::bad_parameter(
                name,
                "must not contain control characters",
            )),
            Some((_, value)) => Ok(Some(value.trim())),
        }
    }

    /// `name`'s value read by `parse`, whose error message is prefixed with the name.
    pub(crate) fn get<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, Problem> {
        self.raw(name)?
            .map(|raw| parse(raw).map_err(|reason| Problem::bad_parameter(name, reason)))
            .transpose()
    }

    /// As [`Params::get`], for a parameter the endpoint cannot do without.
    pub(crate) fn need<T>(
        &self,
        name: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, Problem> {
        self.get(name, parse)?
            .ok_or_else(|| Problem::missing_parameter(name))
    }
}

/// Earliest and latest instant accepted: years 1970 to 2199 cover every market datum and
/// keep every value far inside PostgreSQL's range (so no bad input reaches it as an error).
const FIRST_YEAR: i32 = 1970;
const LAST_YEAR: i32 = 2199;

/// An instant: RFC 3339 with an offset, or whole unix seconds.
pub(crate) fn time(raw: &str) -> Result<DateTime<Utc>, String> {
    let parsed = if let Ok(seconds) = raw.parse::<i64>() {
        DateTime::from_timestamp(seconds, 0)
    } else {
        DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    };
    match parsed {
        Some(t) if (FIRST_YEAR..=LAST_YEAR).contains(&t.year()) => Ok(t),
        Some(_) => Err(format!("must lie in the years {FIRST_YEAR} to {LAST_YEAR}")),
        None => Err(format!(
            "{raw:?} is not a time: use RFC 3339 (2026-12-02T10:00:00+05:30) or unix seconds"
        )),
    }
}

/// Whole unix seconds (UDF), within the same years as [`time`].
pub(crate) fn unix_seconds(raw: &str) -> Result<i64, String> {
    let seconds: i64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a whole number of unix seconds"))?;
    match DateTime::from_timestamp(seconds, 0) {
        Some(t) if (FIRST_YEAR..=LAST_YEAR).contains(&t.year()) => Ok(seconds),
        _ => Err(format!("must lie in the years {FIRST_YEAR} to {LAST_YEAR}")),
    }
}

/// A calendar date, `YYYY-MM-DD`.
pub(crate) fn date(raw: &str) -> Result<NaiveDate, String> {
    match NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(d) if (FIRST_YEAR..=LAST_YEAR).contains(&d.year()) => Ok(d),
        Ok(_) => Err(format!("must lie in the years {FIRST_YEAR} to {LAST_YEAR}")),
        Err(_) => Err(format!("{raw:?} is not a date: use YYYY-MM-DD")),
    }
}

/// Longest symbol or underlying accepted (Kite tradingsymbols are under 32 characters).
const MAX_NAME: usize = 64;

/// A tradingsymbol (`NIFTY26DECFUT`, `NIFTY 50`), upper-cased.
pub(crate) fn symbol(raw: &str) -> Result<String, String> {
    if raw.chars().count() > MAX_NAME {
        return Err(format!("is longer than {MAX_NAME} characters"));
    }
    Ok(raw.to_uppercase())
}

/// An underlying (`NIFTY`, `BANKNIFTY`), upper-cased: letters, digits, spaces, `-`, `&`.
pub(crate) fn underlying(raw: &str) -> Result<String, String> {
    let name = symbol(raw)?;
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '&'))
    {
        Ok(name)
    } else {
        Err(format!("{raw:?} is not an underlying name such as NIFTY"))
    }
}

/// A whole number in `min..=max`.
pub(crate) fn count(raw: &str, min: usize, max: usize) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(format!("must be a whole number from {min} to {max}")),
    }
}

/// A strike in rupees: a finite positive number.
pub(crate) fn strike(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(k) if k.is_finite() && k > 0.0 => Ok(k),
        _ => Err(format!("{raw:?} is not a strike (a positive number)")),
    }
}

/// One of `choices` (compared upper-cased), returned as written in `choices`.
pub(crate) fn one_of(raw: &str, choices: &[&'static str]) -> Result<&'static str, String> {
    let upper = raw.to_uppercase();
    choices
        .iter()
        .find(|c| c.eq_ignore_ascii_case(&upper))
        .copied()
        .ok_or_else(|| format!("{raw:?} is not one of {}", choices.join(", ")))
}

/// A moneyness bucket: `ATM`, `ITM<n>` or `OTM<n>` with n from 1 to 99.
pub(crate) fn bucket(raw: &str) -> Result<String, String> {
    let upper = raw.to_uppercase();
    let level = upper
        .strip_prefix("ITM")
        .or_else(|| upper.strip_prefix("OTM"));
    let ok = upper == "ATM"
        || level.is_some_and(|n| {
            !n.starts_with('0') && n.parse::<u8>().is_ok_and(|n| (1..=99).contains(&n))
        });
    if ok {
        Ok(upper)
    } else {
        Err(format!(
            "{raw:?} is not a bucket: ATM, ITM1..ITM99 or OTM1..OTM99"
        ))
    }
}

/// A bar timeframe, as the `bars_*` relations and the SQL functions name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timeframe {
    M1,
    M3,
    M5,
    M15,
    H1,
    D1,
}

impl Timeframe {
    pub(crate) const ALL: [Timeframe; 6] = [
        Timeframe::M1,
        Timeframe::M3,
        Timeframe::M5,
        Timeframe::M15,
        Timeframe::H1,
        Timeframe::D1,
    ];

    /// `1m`, `3m`, `5m`, `15m`, `1h`, `1d`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Timeframe::M1 => "1m",
            Timeframe::M3 => "3m",
            Timeframe::M5 => "5m",
            Timeframe::M15 => "15m",
            Timeframe::H1 => "1h",
            Timeframe::D1 => "1d",
        }
    }

    /// Width in minutes.
    pub(crate) fn minutes(self) -> i32 {
        match self {
            Timeframe::M1 => 1,
            Timeframe::M3 => 3,
            Timeframe::M5 => 5,
            Timeframe::M15 => 15,
            Timeframe::H1 => 60,
            Timeframe::D1 => 1440,
        }
    }

    /// Reads a timeframe name.
    pub(crate) fn parse(raw: &str) -> Result<Timeframe, String> {
        Self::ALL
            .into_iter()
            .find(|tf| tf.name().eq_ignore_ascii_case(raw))
            .ok_or_else(|| format!("{raw:?} is not one of 1m, 3m, 5m, 15m, 1h, 1d"))
    }

    /// Reads a UDF resolution: minutes as a string, `D` or `1D` for days.
    pub(crate) fn from_resolution(raw: &str) -> Result<Timeframe, String> {
        match raw.to_uppercase().as_str() {
            "1" => Ok(Timeframe::M1),
            "3" => Ok(Timeframe::M3),
            "5" => Ok(Timeframe::M5),
            "15" => Ok(Timeframe::M15),
            "60" => Ok(Timeframe::H1),
            "D" | "1D" => Ok(Timeframe::D1),
            _ => Err(format!(
                "{raw:?} is not a supported resolution: 1, 3, 5, 15, 60, D"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_unix_seconds_within_the_supported_years() {
        let t = time("2026-12-02T10:00:00+05:30").expect("rfc 3339");
        assert_eq!(t.timestamp(), 1_796_185_800);
        assert_eq!(time("1796185800").expect("unix"), t);
        for bad in ["yesterday", "2026-12-02", "1e9", "99999999999999", "-5"] {
            assert!(time(bad).is_err(), "{bad}");
        }
        assert!(time("2300-01-01T00:00:00Z").is_err());
        assert!(unix_seconds("1796185800").is_ok());
        assert!(unix_seconds("1764649800.5").is_err());
        assert!(unix_seconds("-1").is_err());
    }

    #[test]
    fn dates_names_and_numbers() {
        assert_eq!(
            date("2026-12-08"),
            Ok(NaiveDate::from_ymd_opt(2026, 12, 8).expect("date"))
        );
        assert!(date("2026-02-30").is_err());
        assert!(date("08-12-2026").is_err());
        assert_eq!(underlying("nifty"), Ok("NIFTY".into()));
        assert!(underlying("NIFTY'; DROP").is_err());
        assert!(symbol(&"X".repeat(65)).is_err());
        assert_eq!(count("5", 1, 10), Ok(5));
        assert!(count("0", 1, 10).is_err());
        assert!(count("11", 1, 10).is_err());
        assert!(count("-1", 1, 10).is_err());
        assert_eq!(strike("24500"), Ok(24_500.0));
        for bad in ["0", "-50", "NaN", "inf", "x"] {
            assert!(strike(bad).is_err(), "{bad}");
        }
        assert_eq!(one_of("ce", &["CE", "PE"]), Ok("CE"));
        assert!(one_of("XX", &["CE", "PE"]).is_err());
    }

    #[test]
    fn buckets() {
        for ok in ["ATM", "itm1", "OTM12", "ITM99"] {
            assert!(bucket(ok).is_ok(), "{ok}");
        }
        for bad in ["ITM0", "OTM01", "ITM100", "OTM", "ITMx", "NEAR"] {
            assert!(bucket(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn timeframes_and_resolutions() {
        for tf in Timeframe::ALL {
            assert_eq!(Timeframe::parse(tf.name()), Ok(tf));
        }
        assert!(Timeframe::parse("2m").is_err());
        assert_eq!(Timeframe::from_resolution("60"), Ok(Timeframe::H1));
        assert_eq!(Timeframe::from_resolution("1D"), Ok(Timeframe::D1));
        assert_eq!(Timeframe::from_resolution("d"), Ok(Timeframe::D1));
        assert!(Timeframe::from_resolution("30").is_err());
        assert!(Timeframe::from_resolution("1W").is_err());
    }

    #[test]
    fn parameters_are_named_in_every_error() {
        let p = Params::strict(Some("from=x&to="), &["from", "to"]).expect("read");
        let e = p.get("from", time).expect_err("bad");
        assert_eq!(e.parameter.as_deref(), Some("from"));
        assert!(e.message.starts_with("from: "), "{}", e.message);
        assert_eq!(p.get("to", time), Ok(None), "empty is absent");
        let e = p.need("to", time).expect_err("missing");
        assert_eq!(e.code, "missing_parameter");
        assert_eq!(e.parameter.as_deref(), Some("to"));

        let e = Params::strict(Some("form=1"), &["from"]).expect_err("unknown");
        assert_eq!(e.code, "unknown_parameter");
        assert_eq!(e.parameter.as_deref(), Some("form"));
        let e = Params::strict(Some("from=1&from=2"), &["from"]).expect_err("repeated");
        assert_eq!(e.parameter.as_deref(), Some("from"));
        assert!(Params::lenient(Some("extra=1&from=1"), &["from"]).is_ok());

        let p = Params::strict(Some("q=A%00B"), &["q"]).expect("read");
        assert_eq!(p.raw("q").expect_err("nul").parameter.as_deref(), Some("q"));
    }
}
