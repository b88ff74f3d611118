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
}

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
        let docs = include_str!("../../docs/api.md");
        for name in [REQUESTS, REQUEST_SECONDS, STATEMENTS, DB_ERRORS] {
            assert!(
                docs.contains(&format!("`{name}")),
                "{name} is not in docs/api.md"
            );
        }
    }
}
