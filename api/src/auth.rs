//! Who is asking: API tokens, verified with push's key handling, and the scope they grant.
//!
//! A token is a JWT verified by [`strikeflow_push::auth::KeySet`] (HS256 with `[auth]
//! jwt_secret`, RS256/ES256 public keys, a reloaded JWKS file, chosen by the token's header;
//! `iss` as `[auth] issuer`, `exp`/`nbf` within `[auth] leeway_secs`) with one difference:
//! its `aud` must name the API (`api.audience`, default `strikeflow-api`), so a WebSocket
//! token of push is not an API token. The API then reads the `scope` claim of the verified
//! token (push's claims keep only `channels`): a space-separated string (`"api:read"`) or a
//! list; it must hold `api.scope`.
//!
//! The token comes in `Authorization: Bearer <jwt>`; under `/udf` also as `?token=<jwt>`
//! (TradingView's charting library cannot easily set headers). The query string is never
//! logged (the access log has the path only).
//!
//! Layers: [`identify`] runs on every request but health: it verifies a token when one is
//! sent, and keys the rate limit by the token's subject, or by the peer address without a
//! valid token. [`require`] guards the data routes: 401 without a valid token, 403 without
//! the scope.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use strikeflow_push::auth::{AuthError, KeySet};
use strikeflow_push::AuthSettings;

use crate::error::{Problem, UdfProblem};
use crate::limit::{ClientKey, Limiter};
use crate::metrics;
use crate::server::App;

/// Checks API tokens: push's keys with the API's audience, then the scope.
#[derive(Debug)]
pub(crate) struct Verifier {
    keys: Arc<KeySet>,
    scope: String,
}

/// What [`identify`] learnt about the caller, for [`require`] and the handlers.
#[derive(Debug, Clone)]
pub(crate) enum Caller {
    /// No token was sent.
    Anonymous,
    /// A token was sent and refused (the reason, for the 401).
    Refused(AuthError),
    /// A valid token of `sub`; `scoped` when it holds the required scope.
    Verified {
        /// The token's subject.
        sub: String,
        /// Whether its `scope` claim holds `api.scope`.
        scoped: bool,
    },
}

/// The scope claim, in either of its usual shapes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scope {
    Spaced(String),
    Listed(Vec<String>),
}

#[derive(Debug, Deserialize)]
struct ScopeClaim {
    #[serde(default)]
    scope: Option<Scope>,
}

impl Verifier {
    /// A verifier over `keys` (already expecting the API's audience).
    pub(crate) fn new(keys: Arc<KeySet>, scope: &str) -> Verifier {
        Verifier {
            keys,
            scope: scope.to_owned(),
        }
    }

    /// The keys, for the JWKS reload task.
    pub(crate) fn keys(&self) -> Arc<KeySet> {
        self.keys.clone()
    }

    /// Verifies `token` and tells whether it grants the scope.
    pub(crate) fn verify(&self, token: &str) -> Caller {
        let claims = match self.keys.verify(token) {
            Ok(claims) => claims,
            Err(error) => return Caller::Refused(error),
        };
        Caller::Verified {
            sub: claims.sub,
            scoped: scopes(token).contains(&self.scope),
        }
    }
}

/// The scopes of a token whose signature was verified (the payload is read again: push's
/// claims do not keep `scope`). A payload that does not decode grants none.
fn scopes(token: &str) -> Vec<String> {
    let payload = token
        .split('.')
        .nth(1)
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<ScopeClaim>(&json).ok());
    match payload.and_then(|p| p.scope) {
        Some(Scope::Spaced(text)) => text.split_whitespace().map(str::to_owned).collect(),
        Some(Scope::Listed(list)) => list,
        None => Vec::new(),
    }
}

/// The token of a request: `Authorization: Bearer`, or `?token=` where `query_allowed`.
fn token_of(headers: &HeaderMap, query: Option<&str>, query_allowed: bool) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned())
        .filter(|t| !t.is_empty());
    if bearer.is_some() || !query_allowed {
        return bearer;
    }
    serde_urlencoded::from_str::<Vec<(String, String)>>(query?)
        .ok()?
        .into_iter()
        .find(|(name, value)| name == "token" && !value.is_empty())
        .map(|(_, value)| value)
}

/// Whether `path` is answered the UDF way (`{"s":"error",…}`) and may carry `?token=`.
pub(crate) fn is_udf(path: &str) -> bool {
    path.starts_with("/udf/")
}

/// A problem in the shape the path answers errors in.
pub(crate) fn answer(path: &str, problem: Problem) -> Response {
    if is_udf(path) {
        UdfProblem(problem).into_response()
    } else {
        problem.into_response()
    }
}

/// Middleware on every route but health: verifies the token when one is sent, records the
/// caller for [`require`], and applies the caller's rate limit (429 with `Retry-After`).
pub(crate) async fn identify(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let token = token_of(request.headers(), request.uri().query(), is_udf(&path));
    let caller = match token {
        None => Caller::Anonymous,
        Some(token) => app.verifier.verify(&token),
    };
    let key = match &caller {
        Caller::Verified { sub, .. } => {
            tracing::Span::current().record("sub", tracing::field::display(sub));
            ClientKey::Subject(sub.clone())
        }
        _ => ClientKey::Address(peer.ip()),
    };
    if let Err(wait) = app.limiter.check(&key) {
        return limited(&path, &key, wait);
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// 429 `rate_limited` with `Retry-After` in whole seconds.
fn limited(path: &str, key: &ClientKey, wait: Duration) -> Response {
    ::metrics::counter!(metrics::RATE_LIMITED, "client" => key.kind()).increment(1);
    let secs = Limiter::retry_after_secs(wait);
    let problem = Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this client (api.requests_per_sec); retry in {secs} s"),
    );
    let mut response = answer(path, problem);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    response
}

/// Route layer of the data routes: a valid token with the scope, or 401 / 403.
pub(crate) async fn require(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let caller = request.extensions().get::<Caller>().cloned();
    let (reason, problem) = match caller {
        Some(Caller::Verified { scoped: true, .. }) => return next.run(request).await,
        Some(Caller::Verified { scoped: false, .. }) => (
            "scope",
            Problem::new(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                format!(
                    "the token's scope claim does not grant {:?}",
                    app.verifier.scope
                ),
            ),
        ),
        Some(Caller::Refused(error)) => (
            error.label(),
            Problem::new(StatusCode::UNAUTHORIZED, "invalid_token", error.to_string()),
        ),
        Some(Caller::Anonymous) | None => (
            "missing",
            Problem::new(
                StatusCode::UNAUTHORIZED,
                "missing_token",
                if is_udf(request.uri().path()) {
                    "a token is required: send `Authorization: Bearer <jwt>` or `?token=<jwt>`"
                } else {
                    "a token is required: send `Authorization: Bearer <jwt>`"
                },
            ),
        ),
    };
    ::metrics::counter!(metrics::AUTH_FAILURES, "reason" => reason).increment(1);
    let unauthorized = problem.status == StatusCode::UNAUTHORIZED;
    let mut response = answer(request.uri().path(), problem);
    let challenge = if unauthorized {
        "Bearer"
    } else {
        "Bearer error=\"insufficient_scope\""
    };
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// What an API token minted by [`mint_token`] says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// Subject (user name).
    pub sub: String,
    /// Lifetime.
    pub ttl: Duration,
    /// `aud`: one audience is written as a string, several as a list (a token for both
    /// push and the API names both).
    pub audiences: Vec<String>,
    /// `scope`, written space-separated (`api:read`); none: no claim.
    pub scopes: Vec<String>,
    /// Push's `channels` patterns; none: no claim.
    pub channels: Vec<String>,
}

/// Mints an HS256 token signed with `auth.jwt_secret`, carrying `auth.issuer`, a fresh
/// `jti` and what `request` says, so the API (and push, when the audiences name it)
/// configured with the same `[auth]` accepts it.
///
/// Exists for `strikeflow token --scope` and the tests; production tokens come from an
/// identity provider whose keys the API reads like push (RS256/ES256, JWKS).
pub fn mint_token(auth: &AuthSettings, request: &TokenRequest) -> Result<String, AuthError> {
    if auth.jwt_secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aud = match request.audiences.as_slice() {
        [one] => serde_json::json!(one),
        many => serde_json::json!(many),
    };
    let mut claims = serde_json::json!({
        "sub": request.sub,
        "iss": auth.issuer,
        "aud": aud,
        "iat": now,
        "exp": now.saturating_add(request.ttl.as_secs()),
        "jti": fresh_jti(now),
    });
    if !request.scopes.is_empty() {
        claims["scope"] = serde_json::json!(request.scopes.join(" "));
    }
    if !request.channels.is_empty() {
        claims["channels"] = serde_json::json!(request.channels);
    }
    let key = EncodingKey::from_secret(auth.jwt_secret.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

/// A token id unique to this process and moment.
fn fresh_jti(now: u64) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "api-{now:x}-{:x}-{:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: "a-test-secret-of-more-than-32-bytes!".into(),
            ..AuthSettings::default()
        }
    }

    fn verifier(scope: &str) -> Verifier {
        let keys = AuthSettings {
            audience: "strikeflow-api".into(),
            ..settings()
        }
        .load_keys()
        .expect("keys");
        Verifier::new(Arc::new(keys), scope)
    }

    fn token(audiences: &[&str], scopes: &[&str]) -> String {
        mint_token(
            &settings(),
            &TokenRequest {
                sub: "alice".into(),
                ttl: Duration::from_secs(60),
                audiences: audiences.iter().map(|s| s.to_string()).collect(),
                scopes: scopes.iter().map(|s| s.to_string()).collect(),
                channels: Vec::new(),
            },
        )
        .expect("minted")
    }

    #[test]
    fn a_token_for_the_api_with_the_scope_is_granted() {
        let caller = verifier("api:read").verify(&token(&["strikeflow-api"], &["api:read"]));
        assert!(
            matches!(caller, Caller::Verified { ref sub, scoped: true } if sub == "alice"),
            "{caller:?}"
        );
        let both = token(&["strikeflow-push", "strikeflow-api"], &["x", "api:read"]);
        assert!(matches!(
            verifier("api:read").verify(&both),
            Caller::Verified { scoped: true, .. }
        ));
    }

    #[test]
    fn a_push_token_or_one_without_the_scope_is_not() {
        let push = token(&["strikeflow-push"], &["api:read"]);
        assert!(matches!(
            verifier("api:read").verify(&push),
            Caller::Refused(AuthError::WrongAudience)
        ));
        let unscoped = token(&["strikeflow-api"], &["api:readx"]);
        assert!(matches!(
            verifier("api:read").verify(&unscoped),
            Caller::Verified { scoped: false, .. }
        ));
        assert!(matches!(
            verifier("api:read").verify("not.a.token"),
            Caller::Refused(_)
        ));
    }

    #[test]
    fn scopes_come_spaced_or_listed() {
        let encode = |json: &str| {
            format!(
                "h.{}.s",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
            )
        };
        assert_eq!(scopes(&encode(r#"{"scope":"a b"}"#)), ["a", "b"]);
        assert_eq!(scopes(&encode(r#"{"scope":["a","b"]}"#)), ["a", "b"]);
        assert!(scopes(&encode(r#"{"scope":7}"#)).is_empty());
        assert!(scopes("garbage").is_empty());
    }

    #[test]
    fn the_query_token_counts_only_where_allowed() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            token_of(&headers, Some("token=abc&x=1"), true).as_deref(),
            Some("abc")
        );
        assert_eq!(token_of(&headers, Some("token=abc"), false), None);
        assert_eq!(token_of(&headers, Some("token="), true), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer h.p.s"),
        );
        assert_eq!(
            token_of(&headers, Some("token=abc"), true).as_deref(),
            Some("h.p.s")
        );
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic xyz"));
        assert_eq!(token_of(&headers, None, false), None);
    }
}
