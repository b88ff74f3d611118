//! `/api/v1`: JSON over the stored analytics. Each handler checks its parameters, issues one
//! statement, and shapes the rows.

mod chain;
mod instruments;
mod series;

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;

use crate::error::Problem;
use crate::openapi;
use crate::server::App;

/// The `/api/v1` data routes (the OpenAPI document is routed beside them).
pub(crate) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route(openapi::UNDERLYINGS.path, get(instruments::underlyings))
        .route(openapi::EXPIRIES.path, get(instruments::expiries))
        .route(openapi::INSTRUMENTS.path, get(instruments::search))
        .route(openapi::INSTRUMENT.path, get(instruments::one))
        .route(openapi::CHAIN.path, get(chain::chain))
        .route(openapi::CHAINS.path, get(chain::chains))
        .route(openapi::STRIKES.path, get(series::strikes))
        .route(openapi::MONEYNESS.path, get(series::moneyness))
        .route(openapi::BARS.path, get(series::bars))
        .route(openapi::INDICATORS.path, get(series::registry))
        .route(openapi::INDICATOR.path, get(series::indicator))
}

/// Column `name` of `row`; a type mismatch is a server fault (logged), never a panic.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> Result<T, Problem> {
    row.try_get(name).map_err(|error| {
        tracing::error!(column = name, error = %error, "reading a result column");
        Problem::internal()
    })
}

/// Whether the statement found the symbol, chain or underlying it was asked about: every
/// statement that can answer 404 returns a `known` column on its first row (and at least
/// one row).
pub(crate) fn known(rows: &[Row]) -> Result<bool, Problem> {
    match rows.first() {
        Some(row) => col(row, "known"),
        None => Ok(false),
    }
}

/// Cuts a time-ordered series fetched with `limit + 1` rows to a page of at most `limit`.
/// A page never splits the rows of one instant (both sides of a minute, every parameter set
/// of a bar), so the next page starts exactly at the returned `next_from`.
pub(crate) fn page<T>(
    mut items: Vec<T>,
    limit: usize,
    time: impl Fn(&T) -> DateTime<Utc>,
) -> Result<(Vec<T>, Option<DateTime<Utc>>), Problem> {
    if items.len() <= limit {
        return Ok((items, None));
    }
    let next = time(&items[limit]);
    items.truncate(limit);
    while items.last().is_some_and(|item| time(item) == next) {
        items.pop();
    }
    if items.is_empty() {
        return Err(Problem::bad_parameter(
            "limit",
            format!("is smaller than the rows at {next}; raise it"),
        ));
    }
    Ok((items, Some(next)))
}

/// `limit + 1` as the statement's row limit (the extra row says whether a next page
/// exists).
pub(crate) fn fetch_limit(limit: usize) -> i64 {
    i64::try_from(limit).map_or(i64::MAX, |l| l.saturating_add(1))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 4, minute, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_short_series_is_one_page() {
        let (items, next) = page(vec![t(0), t(1)], 2, |x| *x).expect("page");
        assert_eq!(items, [t(0), t(1)]);
        assert_eq!(next, None);
    }

    #[test]
    fn a_page_ends_before_the_first_instant_left_out() {
        let rows = vec![t(0), t(0), t(1), t(1), t(2), t(2)];
        let (items, next) = page(rows.clone(), 3, |x| *x).expect("page");
        assert_eq!(items, [t(0), t(0)], "t(1) would be split");
        assert_eq!(next, Some(t(1)));
        let (items, next) = page(rows, 4, |x| *x).expect("page");
        assert_eq!(items, [t(0), t(0), t(1), t(1)]);
        assert_eq!(next, Some(t(2)));
    }

    #[test]
    fn a_limit_below_one_instant_is_the_callers_error() {
        let error = page(vec![t(0), t(0), t(0)], 2, |x| *x).expect_err("too small");
        assert_eq!(error.parameter.as_deref(), Some("limit"));
    }
}
