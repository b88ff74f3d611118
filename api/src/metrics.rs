//! The API's metrics, named and described in one place so dashboards and code agree.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// Counter, labelled `route` (the route template, e.g. `/api/v1/chain`, or `unmatched`) and
/// `status` (the HTTP status code): requests answered.
pub(crate) const REQUESTS: &str = "api_requests_total";
/// Histogram, labelled `route`: seconds from the request's arrival to its response head.
pub(crate) const REQUEST_SECONDS: &str = "api_request_duration_seconds";
/// Counter, labelled `query` (the statement's name, e.g. `chain`): SQL statements sent. At
/// most one per request, by construction.
pub(crate) const STATEMENTS: &str = "api_db_statements_total";
/// Counter, labelled `kind` = unavailable (no connection within `api.pool_wait_ms`, or
/// PostgreSQL unreachable) | timeout (`statement_timeout`) | rejected (PostgreSQL refused a
/// value) | other: statements or connections that failed.
pub(crate) const DB_ERRORS: &str = "api_db_errors_total";
/// Counter, labelled `reason` = missing | scope | one of push's token refusals (`malformed`,
/// `algorithm`, `unknown_key`, `bad_signature`, `expired`, `not_yet_valid`, `audience`,
/// `issuer`, `claims`): data requests answered 401 or 403.
pub(crate) const AUTH_FAILURES: &str = "api_auth_failures_total";
/// Counter, labelled `client` = subject (a verified token's `sub`) | address (no valid
/// token): requests answered 429.
pub(crate) const RATE_LIMITED: &str = "api_rate_limited_total";
/// Counter, labelled `result` = hit | miss | bypass: lookups of cacheable answers.
pub(crate) const CACHE_LOOKUPS: &str = "api_cache_lookups_total";
/// Counter, labelled `op` = connect | get | set: Redis cache operations that failed or
/// timed out (each rests the cache for a second).
pub(crate) const CACHE_ERRORS: &str = "api_cache_errors_total";

/// Registers the descriptions with whatever recorder the binary installed; called once
/// when the API starts, so `/metrics` explains what it counts.
pub(crate) fn describe() {
    ::metrics::describe_counter!(
        REQUESTS,
        "HTTP requests answered by the API, by route and status"
    );
    ::metrics::describe_histogram!(
        REQUEST_SECONDS,
        ::metrics::Unit::Seconds,
        "Time to answer an API request, by route"
    );
    ::metrics::describe_counter!(STATEMENTS, "SQL statements sent by the API, by query");
    ::metrics::describe_counter!(
        DB_ERRORS,
        "API statements or connections that failed, by kind (unavailable, timeout, rejected, other)"
    );
    ::metrics::describe_counter!(AUTH_FAILURES, "API requests refused 401 or 403, by reason");
    ::metrics::describe_counter!(
        RATE_LIMITED,
        "API requests refused 429, by client kind (subject, address)"
    );
    ::metrics::describe_counter!(
        CACHE_LOOKUPS,
        "Lookups of cacheable API answers in Redis, by result (hit, miss, bypass)"
    );
    ::metrics::describe_counter!(
        CACHE_ERRORS,
        "Failed or timed-out Redis operations of the API cache, by operation"
    );
}

/// Every metric, for the documentation tests.
#[cfg(test)]
const ALL: &[&str] = &[
    REQUESTS,
    REQUEST_SECONDS,
    STATEMENTS,
    DB_ERRORS,
    AUTH_FAILURES,
    RATE_LIMITED,
    CACHE_LOOKUPS,
    CACHE_ERRORS,
];

/// Middleware: counts and times every request under its route template.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    ::metrics::counter!(
        REQUESTS,
        "route" => route.clone(),
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    ::metrics::histogram!(REQUEST_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented() {
        let api = include_str!("../../docs/api.md");
        let metrics = include_str!("../../docs/metrics.md");
        for name in ALL {
            assert!(
                api.contains(&format!("`{name}")),
                "{name} is not in docs/api.md"
            );
            assert!(
                metrics.contains(&format!("| `{name}` |")),
                "{name} is not in docs/metrics.md"
            );
        }
    }
}
