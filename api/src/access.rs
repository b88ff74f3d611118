//! Request ids and the access log.
//!
//! Every request gets an id: the client's `x-request-id` when it sent a usable one (1 to
//! 128 visible ASCII characters), otherwise a fresh 16-hex-digit one. The id is echoed in
//! the answer's `x-request-id`, is a field of the span the request runs in (so the
//! handler's and the database layer's log lines carry it), and is in the access log line:
//! one INFO line per request (target `strikeflow_api::access`; 5xx at WARN) with the method,
//! the path — never the query string, which may hold a UDF `?token=` — the status and the
//! time taken. The token's subject is added to the span once verified.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id header, read and answered.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-chosen id kept.
const MAX_ID: usize = 128;

/// The client's id, if usable.
fn client_id(value: &HeaderValue) -> Option<HeaderValue> {
    let bytes = value.as_bytes();
    let usable =
        !bytes.is_empty() && bytes.len() <= MAX_ID && bytes.iter().all(|b| b.is_ascii_graphic());
    usable.then(|| value.clone())
}

/// A fresh id: a counter hashed with this process's random keys, so ids are unique here and
/// do not repeat across restarts.
fn fresh_id() -> HeaderValue {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let hash = KEYS.get_or_init(RandomState::new).hash_one(n);
    HeaderValue::from_str(&format!("{hash:016x}"))
        .unwrap_or_else(|_| HeaderValue::from_static("0000000000000000"))
}

/// Middleware, outermost: assigns the id, runs the request in its span, answers the id and
/// writes the access log line.
pub(crate) async fn track(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(client_id)
        .unwrap_or_else(fresh_id);
    let id_text = id.to_str().unwrap_or_default().to_owned();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let span = tracing::info_span!("request", id = %id_text, sub = tracing::field::Empty);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    response.headers_mut().insert(X_REQUEST_ID, id);
    let status = response.status().as_u16();
    let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(target: "strikeflow_api::access", %method, path, status, micros, "request");
        } else {
            tracing::info!(target: "strikeflow_api::access", %method, path, status, micros, "request");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_client_id_is_kept() {
        let id = HeaderValue::from_static("abc-123_x.y");
        assert_eq!(client_id(&id), Some(id));
        assert_eq!(client_id(&HeaderValue::from_static("")), None);
        assert_eq!(client_id(&HeaderValue::from_static("a b")), None);
        let long = HeaderValue::from_str(&"x".repeat(MAX_ID + 1)).expect("header");
        assert_eq!(client_id(&long), None);
    }

    #[test]
    fn fresh_ids_differ() {
        let a = fresh_id();
        let b = fresh_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 16);
    }
}
