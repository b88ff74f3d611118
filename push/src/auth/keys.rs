//! The keys client tokens are verified with, and the verification itself.
//!
//! The key is chosen by the token's header, never by what the token could be verified
//! with: a `kid` found in the JWKS file selects that key (and its algorithm must match the
//! header's); otherwise `HS256` selects the secret, `RS256` the RSA key, `ES256` the EC
//! key, and any other algorithm (`none`, `HS512`, `PS256`, …) is refused. So an RS256
//! public key can never be used as an HMAC secret (HS/RS key confusion), and an unsigned
//! token never verifies.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokio_util::sync::CancellationToken;

use super::{AuthError, AuthSettings, Claims};
use crate::{stats, PushError};

/// Keys of a JWKS file by `kid`, with the algorithm each verifies.
type JwksKeys = HashMap<String, (Algorithm, DecodingKey)>;

/// Every configured verification key plus the claim requirements; cheap to share.
pub struct KeySet {
    hmac: Option<DecodingKey>,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
    jwks: Option<JwksFile>,
    issuer: String,
    audience: String,
    leeway: u64,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("hs256", &self.hmac.is_some())
            .field("rs256", &self.rsa.is_some())
            .field("es256", &self.ec.is_some())
            .field("jwks", &self.jwks.as_ref().map(|j| j.path.clone()))
            .finish_non_exhaustive()
    }
}

/// A JWKS file and the keys last read from it.
struct JwksFile {
    path: PathBuf,
    state: RwLock<JwksState>,
}

struct JwksState {
    /// Modification time and size when last read, to notice a change without reading.
    stamp: Option<(SystemTime, u64)>,
    keys: Arc<JwksKeys>,
}

impl KeySet {
    /// Load the keys `settings` name. Errors name the setting (`auth.jwks_file`, …).
    pub(super) fn load(settings: &AuthSettings) -> Result<KeySet, PushError> {
        let hmac = if settings.jwt_secret.is_empty() {
            None
        } else {
            Some(
                DecodingKey::from_secret(settings.jwt_secret.as_bytes()).map_err(|source| {
                    PushError::Key {
                        key: "auth.jwt_secret",
                        reason: "not usable as an HMAC key".to_owned(),
                        source,
                    }
                })?,
            )
        };
        let rsa = pem_key(
            "auth.rs256_public_key_file",
            &settings.rs256_public_key_file,
            DecodingKey::from_rsa_pem,
            "not an RSA public key in PEM",
        )?;
        let ec = pem_key(
            "auth.es256_public_key_file",
            &settings.es256_public_key_file,
            DecodingKey::from_ec_pem,
            "not an EC (P-256) public key in PEM",
        )?;
        let jwks = if settings.jwks_file.is_empty() {
            None
        } else {
            let path = PathBuf::from(&settings.jwks_file);
            let stamp = file_stamp(&path).map_err(|source| PushError::KeyFile {
                key: "auth.jwks_file",
                path: settings.jwks_file.clone(),
                source,
            })?;
            let keys = read_jwks(&path).map_err(|reason| PushError::Config {
                key: "auth.jwks_file",
                reason,
            })?;
            if keys.is_empty() {
                tracing::warn!(path = %path.display(), "the JWKS file holds no usable RS256/ES256 key with a kid");
            }
            metrics::gauge!(stats::JWKS_KEYS).set(keys.len() as f64);
            Some(JwksFile {
                path,
                state: RwLock::new(JwksState {
                    stamp: Some(stamp),
                    keys: Arc::new(keys),
                }),
            })
        };
        Ok(KeySet {
            hmac,
            rsa,
            ec,
            jwks,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            leeway: settings.leeway_secs,
        })
    }

    /// Verify `token`: a key chosen by its header (see the module docs), the signature,
    /// `exp` and `nbf` within the leeway, `iss` and `aud` as configured, and `sub`.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|err| header_error(token, err))?;
        let alg = header.alg;
        let jwks_keys = self.jwks.as_ref().map(JwksFile::keys);
        let from_jwks = match (&header.kid, &jwks_keys) {
            (Some(kid), Some(keys)) => keys.get(kid),
            _ => None,
        };
        let key = match from_jwks {
            Some((key_alg, key)) => {
                if *key_alg != alg {
                    return Err(AuthError::Algorithm(format!(
                        "{alg:?} token signed with key {:?}, which is {key_alg:?}",
                        header.kid.as_deref().unwrap_or_default()
                    )));
                }
                key
            }
            None => match self.static_key(alg)? {
                Some(key) => key,
                None => {
                    return Err(match header.kid {
                        Some(kid) if jwks_keys.is_some() => AuthError::UnknownKey(kid),
                        _ => AuthError::Algorithm(format!("no {alg:?} key is configured")),
                    })
                }
            },
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        // Decoded loosely first, so a missing or mistyped claim is reported by name by the
        // validation instead of as a JSON error.
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation)?;
        serde_json::from_value(data.claims).map_err(|e| AuthError::Claim(e.to_string()))
    }

    /// The clock skew tolerated on `exp` and `nbf`; sessions also end this long after `exp`.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// The configured key for a token without a known `kid`.
    fn static_key(&self, alg: Algorithm) -> Result<Option<&DecodingKey>, AuthError> {
        match alg {
            Algorithm::HS256 => Ok(self.hmac.as_ref()),
            Algorithm::RS256 => Ok(self.rsa.as_ref()),
            Algorithm::ES256 => Ok(self.ec.as_ref()),
            other => Err(AuthError::Algorithm(format!(
                "{other:?} (accepted: HS256, RS256, ES256)"
            ))),
        }
    }

    /// Re-read the JWKS file if its modification time or size changed. A file that no
    /// longer parses keeps the previous keys (and is reported); returns whether the keys
    /// were replaced.
    pub fn reload_jwks(&self) -> bool {
        let Some(jwks) = &self.jwks else {
            return false;
        };
        jwks.reload()
    }

    /// Poll the JWKS file every `every` until `shutdown` (nothing to do without one).
    pub async fn watch_jwks(
        self: Arc<Self>,
        every: std::time::Duration,
        shutdown: CancellationToken,
    ) {
        if self.jwks.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // File I/O off the async workers; the file is small.
            let keys = self.clone();
            if let Err(err) = tokio::task::spawn_blocking(move || keys.reload_jwks()).await {
                tracing::warn!(error = %err, "JWKS reload task failed");
            }
        }
    }
}

impl JwksFile {
    fn keys(&self) -> Arc<JwksKeys> {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .clone()
    }

    fn reload(&self) -> bool {
        let stamp = match file_stamp(&self.path) {
            Ok(stamp) => stamp,
            Err(err) => {
                metrics::counter!(stats::JWKS_RELOADS, "result" => "error").increment(1);
                tracing::warn!(path = %self.path.display(), error = %err, "cannot stat the JWKS file; keeping its previous keys");
                return false;
            }
        };
        let unchanged = self.state.read().unwrap_or_else(|e| e.into_inner()).stamp == Some(stamp);
        if unchanged {
            return false;
        }
        let result = read_jwks(&self.path);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        // Remember the stamp either way: a broken file is reported once, and read again
        // when it next changes.
        state.stamp = Some(stamp);
        match result {
            Ok(keys) => {
                metrics::counter!(stats::JWKS_RELOADS, "result" => "ok").increment(1);
                metrics::gauge!(stats::JWKS_KEYS).set(keys.len() as f64);
                tracing::info!(path = %self.path.display(), keys = keys.len(), "JWKS reloaded");
                state.keys = Arc::new(keys);
                true
            }
            Err(reason) => {
                metrics::counter!(stats::JWKS_RELOADS, "result" => "error").increment(1);
                tracing::warn!(path = %self.path.display(), %reason, "the JWKS file changed but does not parse; keeping its previous keys");
                false
            }
        }
    }
}

/// Load a PEM public key from `path` unless it is empty.
fn pem_key(
    key: &'static str,
    path: &str,
    parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>,
    what: &str,
) -> Result<Option<DecodingKey>, PushError> {
    if path.is_empty() {
        return Ok(None);
    }
    let pem = std::fs::read(path).map_err(|source| PushError::KeyFile {
        key,
        path: path.to_owned(),
        source,
    })?;
    parse(&pem).map(Some).map_err(|source| PushError::Key {
        key,
        reason: format!("{path}: {what}"),
        source,
    })
}

fn file_stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

/// Parse a JWKS file, keeping the RS256 and ES256 (P-256) keys that have a `kid`. Other
/// keys (symmetric, other curves and algorithms, no `kid`) are skipped with a warning.
fn read_jwks(path: &Path) -> Result<JwksKeys, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let set: JwkSet = serde_json::from_slice(&text)
        .map_err(|e| format!("{} is not a JWKS document: {e}", path.display()))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            tracing::warn!(path = %path.display(), "skipping a JWKS key without a kid");
            continue;
        };
        let alg = match (&jwk.algorithm, &jwk.common.key_algorithm) {
            (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Algorithm::RS256,
            (AlgorithmParameters::EllipticCurve(p), None | Some(KeyAlgorithm::ES256))
                if p.curve == EllipticCurve::P256 =>
            {
                Algorithm::ES256
            }
            _ => {
                tracing::warn!(path = %path.display(), %kid, "skipping a JWKS key that is not RS256 or ES256");
                continue;
            }
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, (alg, key));
            }
            Err(err) => {
                tracing::warn!(path = %path.display(), %kid, error = %err, "skipping an unusable JWKS key");
            }
        }
    }
    Ok(keys)
}

/// Why a header did not parse; an algorithm push does not know (`none`) is named as such.
fn header_error(token: &str, err: jsonwebtoken::errors::Error) -> AuthError {
    let alg = token
        .split('.')
        .next()
        .and_then(|part| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .ok()
        })
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|header| {
            header
                .get("alg")
                .and_then(|a| a.as_str())
                .map(str::to_owned)
        });
    match alg {
        Some(alg) if !matches!(alg.as_str(), "HS256" | "RS256" | "ES256") => AuthError::Algorithm(
            format!("{:?} (accepted: HS256, RS256, ES256)", truncate(&alg)),
        ),
        _ => AuthError::Malformed(err.to_string()),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(32).collect()
}
