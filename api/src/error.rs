//! The error answers: `{"error":{"code":…,"message":…,"parameter":…}}` with a status and a
//! stable `code` (listed in `docs/api.md`), and the UDF flavour `{"s":"error","errmsg":…}`.

use std::fmt::Display;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Why a request was not answered with data. Built by the parameter checks, the handlers
/// and the database layer; rendered as JSON by [`IntoResponse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub(crate) status: StatusCode,
    /// Stable, machine-readable: clients branch on it, so it never changes meaning.
    pub(crate) code: &'static str,
    /// For people; may change wording.
    pub(crate) message: String,
    /// The query or path parameter at fault, when one is.
    pub(crate) parameter: Option<String>,
}

impl Problem {
    /// A problem with any status and code (those of `docs/api.md`).
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            parameter: None,
        }
    }

    fn about(mut self, parameter: &str) -> Self {
        self.parameter = Some(parameter.to_owned());
        self
    }

    /// 400 `bad_parameter`: `parameter` is present but its value is unusable.
    pub(crate) fn bad_parameter(parameter: &str, reason: impl Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_parameter",
            format!("{parameter}: {reason}"),
        )
        .about(parameter)
    }

    /// 400 `missing_parameter`: a required parameter is absent (or empty).
    pub(crate) fn missing_parameter(parameter: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "missing_parameter",
            format!("{parameter}: is required"),
        )
        .about(parameter)
    }

    /// 400 `unknown_parameter`: the endpoint takes no parameter of that name (a typo would
    /// otherwise be ignored silently).
    pub(crate) fn unknown_parameter(parameter: &str, known: &[&str]) -> Self {
        let known = if known.is_empty() {
            "this endpoint takes no parameters".to_owned()
        } else {
            format!("known: {}", known.join(", "))
        };
        Self::new(
            StatusCode::BAD_REQUEST,
            "unknown_parameter",
            format!("{parameter}: unknown parameter ({known})"),
        )
        .about(parameter)
    }

    /// 400 `bad_query`: the query string itself cannot be read.
    pub(crate) fn bad_query(reason: impl Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("the query string cannot be read: {reason}"),
        )
    }

    /// 404 with a specific code (`unknown_symbol`, `unknown_chain`, …), naming the
    /// parameter that named the missing thing.
    pub(crate) fn unknown(code: &'static str, parameter: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message).about(parameter)
    }

    /// 404 `not_found`: no such endpoint.
    pub(crate) fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {path} (see /api/v1/openapi.json)"),
        )
    }

    /// 405 `method_not_allowed`: every endpoint is GET.
    pub(crate) fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "only GET is served",
        )
    }

    /// 503 with a specific code (`database_unavailable`, `query_timeout`): try again later.
    pub(crate) fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// 500 `internal`: a fault of the server, never of the request. The detail goes to the
    /// log, not to the client.
    pub(crate) fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (logged)",
        )
    }

    fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            code: self.code,
            message: &self.message,
            parameter: self.parameter.as_deref(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorBody<'a>,
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Json(Envelope { error: self.body() });
        (self.status, body).into_response()
    }
}

/// A [`Problem`] answered the UDF way: `{"s":"error","errmsg":…}` (what TradingView's
/// adapter reads), with the `error` object of the REST API beside it.
#[derive(Debug)]
pub(crate) struct UdfProblem(pub(crate) Problem);

impl From<Problem> for UdfProblem {
    fn from(problem: Problem) -> Self {
        Self(problem)
    }
}

#[derive(Serialize)]
struct UdfEnvelope<'a> {
    s: &'static str,
    errmsg: &'a str,
    error: ErrorBody<'a>,
}

impl IntoResponse for UdfProblem {
    fn into_response(self) -> Response {
        let problem = &self.0;
        let body = Json(UdfEnvelope {
            s: "error",
            errmsg: &problem.message,
            error: problem.body(),
        });
        (problem.status, body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_parameter_names_itself_in_field_and_message() {
        let p = Problem::bad_parameter("from", "not a time");
        assert_eq!(p.status, StatusCode::BAD_REQUEST);
        assert_eq!(p.code, "bad_parameter");
        assert_eq!(p.message, "from: not a time");
        assert_eq!(p.parameter.as_deref(), Some("from"));
        let json = serde_json::to_value(Envelope { error: p.body() }).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "bad_parameter", "message": "from: not a time", "parameter": "from"}})
        );
    }

    #[test]
    fn errors_without_a_parameter_leave_the_field_out() {
        let p = Problem::internal();
        let json = serde_json::to_value(Envelope { error: p.body() }).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"error": {"code": "internal", "message": "internal error (logged)"}})
        );
    }
}
