//! HS256 JWTs for WebSocket clients.
//!
//! Dashboards authenticate with a short-lived token whose `channels` claim limits what they
//! may subscribe to. Tokens are verified once at the upgrade and again when a session
//! refreshes in-band (`{"op":"auth"}`); a session ends when its token expires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Clock skew tolerated when checking `exp`, in seconds. Small on purpose: an expired token
/// must stop working promptly.
pub const LEEWAY_SECS: u64 = 5;

/// The claims push reads from a client token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the client is (logged, and must stay the same across in-band refreshes).
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issue time, seconds since the Unix epoch.
    pub iat: u64,
    /// Channel patterns the client may subscribe to, e.g. `"bars.*"`, `"ticks.NIFTY*"`,
    /// `"*"`. `*` matches any run of characters. Empty means every channel.
    #[serde(default)]
    pub channels: Vec<String>,
}

impl Claims {
    /// Whether these claims allow subscribing to `channel`.
    pub fn allows(&self, channel: &str) -> bool {
        self.channels.is_empty()
            || self
                .channels
                .iter()
                .any(|pattern| pattern_matches(pattern, channel))
    }

    /// How long until the token expires (zero if it already has).
    pub fn remaining(&self) -> Duration {
        Duration::from_secs(self.exp.saturating_sub(now_secs()))
    }
}

/// Why a token could not be minted or was rejected.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The secret is empty; an empty HMAC key would accept forged tokens.
    #[error("the JWT secret is empty")]
    EmptySecret,
    /// The token's `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// The signature does not match (tampered token or wrong secret).
    #[error("invalid token signature")]
    BadSignature,
    /// The token is signed with an algorithm other than HS256.
    #[error("token algorithm is not HS256")]
    WrongAlgorithm,
    /// Anything else: not a JWT, missing claims, bad JSON.
    #[error("invalid token: {0}")]
    Invalid(String),
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match err.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                AuthError::WrongAlgorithm
            }
            _ => AuthError::Invalid(err.to_string()),
        }
    }
}

/// Mint an HS256 token for `sub`, valid for `ttl`, limited to `channels` (empty = all).
///
/// Exists for operators and tests; production tokens are usually minted by the dashboard's
/// backend with the same secret.
pub fn mint(
    secret: &str,
    sub: &str,
    ttl: Duration,
    channels: Vec<String>,
) -> Result<String, AuthError> {
    let iat = now_secs();
    let claims = Claims {
        sub: sub.to_owned(),
        iat,
        exp: iat.saturating_add(ttl.as_secs()),
        channels,
    };
    encode_claims(secret, &claims)
}

/// Sign arbitrary claims (tests use it for already-expired tokens).
pub(crate) fn encode_claims(secret: &str, claims: &Claims) -> Result<String, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    let key = EncodingKey::from_secret(secret.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &key,
    )?)
}

/// Verify an HS256 token: signature, algorithm, and `exp` (with at most [`LEEWAY_SECS`] of
/// skew). Returns its claims.
pub fn verify(secret: &str, token: &str) -> Result<Claims, AuthError> {
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    let key = DecodingKey::from_secret(secret.as_bytes())?;
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_SECS;
    validation.validate_exp = true;
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "sub"]);
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)?;
    Ok(data.claims)
}

/// Glob match where `*` matches any (possibly empty) run of characters and everything else
/// matches itself.
pub fn pattern_matches(pattern: &str, text: &str) -> bool {
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0usize, 0usize);
    // Position of the last `*` seen and the text position it is currently absorbing up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "unit-test-secret";

    #[test]
    fn mint_verify_round_trip() {
        let token = mint(
            SECRET,
            "alice",
            Duration::from_secs(60),
            vec!["bars.*".into()],
        )
        .expect("mint");
        let claims = verify(SECRET, &token).expect("verify");
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.channels, vec!["bars.*".to_owned()]);
        assert_eq!(claims.exp, claims.iat + 60);
        assert!(claims.remaining() > Duration::from_secs(55));
    }

    #[test]
    fn expired_token_is_rejected() {
        let now = now_secs();
        let claims = Claims {
            sub: "bob".into(),
            iat: now - 120,
            exp: now - 60,
            channels: vec![],
        };
        let token = encode_claims(SECRET, &claims).expect("encode");
        assert!(matches!(verify(SECRET, &token), Err(AuthError::Expired)));
    }

    #[test]
    fn leeway_is_only_a_few_seconds() {
        let now = now_secs();
        let claims = Claims {
            sub: "bob".into(),
            iat: now - 120,
            exp: now - (LEEWAY_SECS + 2),
            channels: vec![],
        };
        let token = encode_claims(SECRET, &claims).expect("encode");
        assert!(verify(SECRET, &token).is_err());
    }

    #[test]
    fn tampered_signature_is_rejected() {
        let token = mint(SECRET, "carol", Duration::from_secs(60), vec![]).expect("mint");
        let (rest, signature) = token.rsplit_once('.').expect("three parts");
        // Flip one character of the signature.
        let mut sig: Vec<char> = signature.chars().collect();
        sig[3] = if sig[3] == 'A' { 'B' } else { 'A' };
        let tampered = format!("{rest}.{}", sig.into_iter().collect::<String>());
        assert!(matches!(
            verify(SECRET, &tampered),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn tampered_payload_is_rejected() {
        let token = mint(
            SECRET,
            "carol",
            Duration::from_secs(60),
            vec!["bars.*".into()],
        )
        .expect("mint");
        let other =
            mint(SECRET, "mallory", Duration::from_secs(60), vec!["*".into()]).expect("mint");
        let parts: Vec<&str> = token.split('.').collect();
        let other_parts: Vec<&str> = other.split('.').collect();
        // Carol's signature on Mallory's payload.
        let spliced = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
        assert!(verify(SECRET, &spliced).is_err());
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let token = mint(SECRET, "dave", Duration::from_secs(60), vec![]).expect("mint");
        assert!(matches!(
            verify("another-secret", &token),
            Err(AuthError::BadSignature)
        ));
    }

    #[test]
    fn wrong_algorithm_is_rejected() {
        let now = now_secs();
        let claims = Claims {
            sub: "eve".into(),
            iat: now,
            exp: now + 60,
            channels: vec![],
        };
        let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
        let hs512 =
            jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims, &key).expect("encode");
        assert!(matches!(
            verify(SECRET, &hs512),
            Err(AuthError::WrongAlgorithm)
        ));
        // An unsigned token ("alg":"none") must never pass.
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let payload = hs512.split('.').nth(1).expect("payload");
        assert!(verify(SECRET, &format!("{header}.{payload}.")).is_err());
    }

    #[test]
    fn garbage_and_empty_secret_are_rejected() {
        assert!(matches!(
            verify(SECRET, "not-a-jwt"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            mint("", "x", Duration::from_secs(1), vec![]),
            Err(AuthError::EmptySecret)
        ));
        assert!(matches!(verify("", "a.b.c"), Err(AuthError::EmptySecret)));
    }

    #[test]
    fn channel_pattern_claims() {
        let claims = |channels: &[&str]| Claims {
            sub: "s".into(),
            exp: 0,
            iat: 0,
            channels: channels.iter().map(|c| c.to_string()).collect(),
        };
        let all = claims(&[]);
        assert!(all.allows("bars.NIFTY26DECFUT"));
        assert!(all.allows("ticks.BANKNIFTY26DEC52000CE"));

        let star = claims(&["*"]);
        assert!(star.allows("ticks.X"));

        let bars = claims(&["bars.*"]);
        assert!(bars.allows("bars.NIFTY26DECFUT"));
        assert!(!bars.allows("ticks.NIFTY26DECFUT"));
        assert!(!bars.allows("barsX"));

        let exact = claims(&["ticks.NIFTY26DECFUT", "bars.BANK*FUT"]);
        assert!(exact.allows("ticks.NIFTY26DECFUT"));
        assert!(!exact.allows("ticks.NIFTY26DECFUT2"));
        assert!(exact.allows("bars.BANKNIFTY26DECFUT"));
        assert!(!exact.allows("bars.BANKNIFTY26DEC52000CE"));
    }

    #[test]
    fn glob_edge_cases() {
        assert!(pattern_matches("", ""));
        assert!(!pattern_matches("", "a"));
        assert!(pattern_matches("**", ""));
        assert!(pattern_matches("a*b*c", "aXXbYYc"));
        assert!(!pattern_matches("a*b*c", "aXXbYY"));
        assert!(pattern_matches("*c", "abcabc"));
        assert!(!pattern_matches("*c", "abcab"));
    }
}
