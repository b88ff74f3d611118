//! The `[auth]` section: which keys sign client tokens and what their claims must say.
//! Shared by `push` (verifying) and `strikeflow token` (minting).

use std::time::Duration;

use serde::Deserialize;

use super::keys::KeySet;
use crate::PushError;

/// The development secret; push refuses it on any address but loopback.
pub const DEV_JWT_SECRET: &str = "strikeflow-dev-secret-change-me";
/// The `iss` push expects unless configured otherwise (and `strikeflow token` writes).
pub const DEFAULT_ISSUER: &str = "strikeflow";
/// The `aud` push expects unless configured otherwise (and `strikeflow token` writes).
pub const DEFAULT_AUDIENCE: &str = "strikeflow-push";
/// Largest accepted `leeway_secs`: more would keep expired tokens working.
const MAX_LEEWAY_SECS: u64 = 300;
/// Shortest HMAC secret push accepts on a non-loopback address (RFC 7518 §3.2: a key of
/// at least the hash's size, 256 bits for HS256).
pub(crate) const MIN_PUBLIC_SECRET: usize = 32;

/// `[auth]`: keys and claim requirements for client tokens. Every missing key takes its
/// default; an unknown key is an error.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// HS256 secret (env `STRIKEFLOW_JWT_SECRET`); empty disables HS256, which then needs
    /// another key. Outside loopback it must be at least 32 bytes and not the development
    /// secret.
    pub jwt_secret: String,
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (or list).
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (at most 300).
    pub leeway_secs: u64,
    /// PEM file with the RSA public key of RS256 tokens (`""`: none).
    pub rs256_public_key_file: String,
    /// PEM file with the P-256 public key of ES256 tokens (`""`: none).
    pub es256_public_key_file: String,
    /// JWKS file (`{"keys":[…]}`) with RS256/ES256 keys chosen by the token's `kid`
    /// (`""`: none). Re-read when its modification time or size changes.
    pub jwks_file: String,
    /// How often the JWKS file's modification time is checked, in seconds.
    pub jwks_reload_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            jwt_secret: DEV_JWT_SECRET.to_owned(),
            issuer: DEFAULT_ISSUER.to_owned(),
            audience: DEFAULT_AUDIENCE.to_owned(),
            leeway_secs: super::LEEWAY_SECS,
            rs256_public_key_file: String::new(),
            es256_public_key_file: String::new(),
            jwks_file: String::new(),
            jwks_reload_secs: 10,
        }
    }
}

/// Never prints the secret (configurations end up in logs and panics).
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "jwt_secret",
                &format_args!("<{} bytes>", self.jwt_secret.len()),
            )
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("rs256_public_key_file", &self.rs256_public_key_file)
            .field("es256_public_key_file", &self.es256_public_key_file)
            .field("jwks_file", &self.jwks_file)
            .field("jwks_reload_secs", &self.jwks_reload_secs)
            .finish()
    }
}

impl AuthSettings {
    /// Checks the values and loads every configured key, so a missing file or a key that
    /// does not parse fails at start with the key named (`auth.<key>: <reason>`).
    pub fn validate(&self) -> Result<(), PushError> {
        self.load_keys().map(drop)
    }

    /// The checked key set (see [`AuthSettings::validate`]).
    pub fn load_keys(&self) -> Result<KeySet, PushError> {
        if self.issuer.trim().is_empty() {
            return Err(PushError::config("auth.issuer", "must not be empty"));
        }
        if self.audience.trim().is_empty() {
            return Err(PushError::config("auth.audience", "must not be empty"));
        }
        if self.leeway_secs > MAX_LEEWAY_SECS {
            return Err(PushError::config(
                "auth.leeway_secs",
                "must be at most 300: a larger leeway keeps expired tokens working",
            ));
        }
        if self.jwks_reload_secs == 0 {
            return Err(PushError::config(
                "auth.jwks_reload_secs",
                "must be at least 1",
            ));
        }
        let any_key = !self.jwt_secret.is_empty()
            || !self.rs256_public_key_file.is_empty()
            || !self.es256_public_key_file.is_empty()
            || !self.jwks_file.is_empty();
        if !any_key {
            return Err(PushError::config(
                "auth.jwt_secret",
                "must not be empty unless rs256_public_key_file, es256_public_key_file or \
                 jwks_file is set",
            ));
        }
        KeySet::load(self)
    }

    /// The JWKS poll period.
    pub fn jwks_reload(&self) -> Duration {
        Duration::from_secs(self.jwks_reload_secs.max(1))
    }
}
