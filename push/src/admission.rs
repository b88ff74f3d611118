//! Letting a client in: its token verified, its user under the per-user limit on this node
//! and across nodes, its `jti` not revoked. The same steps serve a token presented with
//! the upgrade request (refusals become HTTP statuses) and one sent in a first `auth`
//! message (refusals become close codes).

use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::auth::{AuthError, Claims};
use crate::hub::ClientId;
use crate::limits::ConnectionSlot;
use crate::presence::{Admission, Presence};
use crate::queue::{CLOSE_TOKEN_REVOKED, CLOSE_TOO_MANY_CONNECTIONS, CLOSE_UNAUTHORIZED};
use crate::server::AppState;
use crate::stats;

/// An admitted connection: who it is, and the node slot and Redis lease it holds until
/// [`Ticket::finish`] (or drop, which releases the lease in the background).
pub(crate) struct Ticket {
    pub(crate) id: ClientId,
    pub(crate) claims: Claims,
    _slot: ConnectionSlot,
    leased: Option<Arc<Presence>>,
}

impl Ticket {
    /// Give back the Redis lease now (the slot goes with `self`).
    pub(crate) async fn finish(mut self) {
        if let Some(presence) = self.leased.take() {
            presence.release(self.id).await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(presence) = self.leased.take() {
            let id = self.id;
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { presence.release(id).await });
            }
        }
    }
}

/// Why a client was not let in.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// No token was presented.
    Missing(&'static str),
    /// The token did not verify (or is revoked).
    Token(AuthError),
    /// The user holds the per-user limit (on this node or across all of them).
    UserLimit(usize),
    /// This node serves its maximum number of connections.
    NodeLimit,
}

impl Refusal {
    /// Count the refusal in its metric (and log it at debug level, never with the token).
    pub(crate) fn count(&self) {
        tracing::debug!(reason = %self.message(), "connection refused");
        match self {
            Refusal::Missing(_) => {
                metrics::counter!(stats::AUTH_FAILURES, "reason" => "missing").increment(1)
            }
            Refusal::Token(err) => {
                metrics::counter!(stats::AUTH_FAILURES, "reason" => err.label()).increment(1)
            }
            Refusal::UserLimit(_) => {
                metrics::counter!(stats::CONNECTIONS_REFUSED, "limit" => "user").increment(1)
            }
            Refusal::NodeLimit => {
                metrics::counter!(stats::CONNECTIONS_REFUSED, "limit" => "global").increment(1)
            }
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::Missing(how) => (*how).to_owned(),
            Refusal::Token(err) => err.to_string(),
            Refusal::UserLimit(limit) => {
                format!("too many connections for this user (at most {limit})")
            }
            Refusal::NodeLimit => "too many connections on this server".to_owned(),
        }
    }

    /// The refused upgrade: 401 (token), 429 (per-user limit) or 503 (node limit), with a
    /// JSON `{"error": …}` body.
    pub(crate) fn http(&self) -> Response {
        let body = Json(serde_json::json!({ "error": self.message() }));
        match self {
            Refusal::Missing(_) | Refusal::Token(_) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                body,
            )
                .into_response(),
            Refusal::UserLimit(_) => (StatusCode::TOO_MANY_REQUESTS, body).into_response(),
            Refusal::NodeLimit => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                body,
            )
                .into_response(),
        }
    }

    /// The close frame for a refused first `auth` message: 4005 (revoked), 4009 (too
    /// many connections) or 4003 (anything else), the reason cut to what a close frame holds.
    pub(crate) fn close(&self) -> (u16, String) {
        let code = match self {
            Refusal::Token(AuthError::Revoked) => CLOSE_TOKEN_REVOKED,
            Refusal::UserLimit(_) | Refusal::NodeLimit => CLOSE_TOO_MANY_CONNECTIONS,
            Refusal::Missing(_) | Refusal::Token(_) => CLOSE_UNAUTHORIZED,
        };
        (code, close_reason(&self.message()))
    }
}

/// A close reason fits in 123 bytes; cut at a character boundary.
pub(crate) fn close_reason(text: &str) -> String {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Verify `token` and admit its user on `slot`: node-local count, then the shared count and
/// the revocation list in Redis (skipped, with a metric, when Redis is unavailable).
pub(crate) async fn admit(
    state: &AppState,
    token: &str,
    mut slot: ConnectionSlot,
    id: ClientId,
) -> Result<Ticket, Refusal> {
    let claims = state.keys.verify(token).map_err(Refusal::Token)?;
    let limit = state.limits.max_per_user();
    if !slot.claim_user(&claims.sub) {
        return Err(Refusal::UserLimit(limit));
    }
    let leased = match state.presence.admit(id, &claims, limit).await {
        Admission::Admitted => Some(state.presence.clone()),
        Admission::Unchecked => None,
        Admission::Revoked => return Err(Refusal::Token(AuthError::Revoked)),
        Admission::OverLimit => return Err(Refusal::UserLimit(limit)),
    };
    Ok(Ticket {
        id,
        claims,
        _slot: slot,
        leased,
    })
}
