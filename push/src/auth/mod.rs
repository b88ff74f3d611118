//! Client tokens: what push accepts and why a token is refused.
//!
//! Dashboards authenticate with a short-lived JWT whose `channels` claim limits what they
//! may subscribe to. Push verifies HS256 (a shared secret), RS256 and ES256 (public keys
//! from PEM files) and the RS256/ES256 keys of a JWKS file that is re-read when it changes,
//! so keys can be rotated without a restart ([`KeySet`]). Every token must carry `sub`,
//! `exp`, and the configured `iss` and `aud`; `exp` and `nbf` are checked with a small
//! leeway. A token without a `channels` claim may subscribe to nothing.
//!
//! Tokens are verified at the upgrade (or in the first `auth` message) and again at every
//! in-band refresh; a session ends when its token expires.

mod claims;
mod keys;
mod settings;

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub(crate) use claims::{fresh_jti, now_secs};
pub use claims::{pattern_matches, Claims};
pub use keys::KeySet;
pub(crate) use settings::MIN_PUBLIC_SECRET;
pub use settings::{AuthSettings, DEFAULT_AUDIENCE, DEFAULT_ISSUER, DEV_JWT_SECRET};

/// Clock skew tolerated by default when checking `exp` and `nbf`, in seconds. Small on
/// purpose: an expired token must stop working promptly.
pub const LEEWAY_SECS: u64 = 5;

/// Why a token could not be minted or was rejected. The text goes back to the client (in
/// the 401 body or the close reason), so it names the problem without echoing the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Minting needs an HMAC secret and the configured one is empty.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// Not three base64url parts, or a part that is not the JSON it should be.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names an algorithm push does not accept (`none`, `HS512`, …) or one for
    /// which no key is configured.
    #[error("token algorithm not accepted: {0}")]
    Algorithm(String),
    /// The header's `kid` is in no configured key set.
    #[error("unknown signing key {0:?}")]
    UnknownKey(String),
    /// The signature does not match (tampered token, wrong key, key confusion).
    #[error("invalid token signature")]
    BadSignature,
    /// `exp` is in the past (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `aud` does not name this deployment's push.
    #[error("token audience not accepted")]
    WrongAudience,
    /// `iss` is not the configured issuer.
    #[error("token issuer not accepted")]
    WrongIssuer,
    /// A required claim (`sub`, `exp`, `iss`, `aud`) is absent or of the wrong type.
    #[error("token claim missing or invalid: {0}")]
    Claim(String),
    /// The token's `jti` was revoked.
    #[error("token revoked")]
    Revoked,
}

impl AuthError {
    /// A fixed label for the `reason` of `push_auth_failures_total`.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::EmptySecret => "no_key",
            AuthError::Malformed(_) => "malformed",
            AuthError::Algorithm(_) => "algorithm",
            AuthError::UnknownKey(_) => "unknown_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongAudience => "audience",
            AuthError::WrongIssuer => "issuer",
            AuthError::Claim(_) => "claims",
            AuthError::Revoked => "revoked",
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidAlgorithmName
            | ErrorKind::UnsupportedAlgorithm
            | ErrorKind::MissingAlgorithm => AuthError::Algorithm(err.to_string()),
            ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
                AuthError::Claim(claim.clone())
            }
            ErrorKind::InvalidSubject => AuthError::Claim("sub".to_owned()),
            _ => AuthError::Malformed(err.to_string()),
        }
    }
}

/// Mint an HS256 token for `sub` with the default issuer and audience, valid for `ttl` and
/// limited to `channels`. An empty `channels` is written as `["*"]` (every channel), so a
/// minted token never depends on the claim's absence (which grants nothing).
///
/// Exists for tests and the local demo; a deployment with its own issuer or audience uses
/// [`mint_with`].
pub fn mint(
    secret: &str,
    sub: &str,
    ttl: Duration,
    channels: Vec<String>,
) -> Result<String, AuthError> {
    let settings = AuthSettings {
        jwt_secret: secret.to_owned(),
        ..AuthSettings::default()
    };
    mint_with(&settings, sub, ttl, channels)
}

/// Mint an HS256 token signed with `settings.jwt_secret` and carrying its `issuer` and
/// `audience`, so push configured with the same settings accepts it. Each token gets a
/// fresh `jti`, by which it can be revoked. Channels as in [`mint`].
///
/// Exists for `strikeflow token`; production tokens are usually minted by the dashboard's
/// backend (or an identity provider whose keys push reads from a JWKS file).
pub fn mint_with(
    settings: &AuthSettings,
    sub: &str,
    ttl: Duration,
    channels: Vec<String>,
) -> Result<String, AuthError> {
    if settings.jwt_secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    let iat = claims::now_secs();
    let channels = if channels.is_empty() {
        vec!["*".to_owned()]
    } else {
        channels
    };
    let claims = serde_json::json!({
        "sub": sub,
        "iss": settings.issuer,
        "aud": settings.audience,
        "iat": iat,
        "exp": iat.saturating_add(ttl.as_secs()),
        "jti": claims::fresh_jti(),
        "channels": channels,
    });
    let key = EncodingKey::from_secret(settings.jwt_secret.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &key,
    )?)
}

#[cfg(test)]
mod tests;
