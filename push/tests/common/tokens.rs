//! Tokens for the push tests, well-formed or deliberately spoilt, signed with the test
//! secret or the test keys of `push/tests/keys`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use strikeflow_push::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER};

use super::SECRET;

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// A test key file (`rsa-1.pem`, `ec-1.pub.pem`, `rsa-2.jwk.json`, …).
pub(crate) fn key_path(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name)
        .display()
        .to_string()
}

/// Claims that pass every check: `sub`, the default `iss`/`aud`, ten minutes, a unique
/// `jti` and `channels`.
pub(crate) fn claims(sub: &str, channels: &[&str]) -> Value {
    static N: AtomicU64 = AtomicU64::new(0);
    json!({
        "sub": sub,
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "iat": now(),
        "exp": now() + 600,
        "jti": format!("test-{}-{}-{}", std::process::id(), now(), N.fetch_add(1, Ordering::Relaxed)),
        "channels": channels,
    })
}

/// `claims` with one field replaced (or removed, for `Value::Null`).
pub(crate) fn with(mut claims: Value, field: &str, value: Value) -> Value {
    if value.is_null() {
        claims.as_object_mut().expect("object").remove(field);
    } else {
        claims[field] = value;
    }
    claims
}

pub(crate) fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("encode")
}

/// HS256 with the servers' secret.
pub(crate) fn hs256(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    sign(Algorithm::HS256, &key, None, claims)
}

/// RS256 with a test key (`rsa-1`, `rsa-2`), optionally naming a `kid`.
pub(crate) fn rs256(name: &str, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(key_path(&format!("{name}.pem"))).expect("pem");
    let key = EncodingKey::from_rsa_pem(&pem).expect("rsa key");
    sign(Algorithm::RS256, &key, kid, claims)
}

/// ES256 with the test key `ec-1`.
pub(crate) fn es256(claims: &Value) -> String {
    let pem = std::fs::read(key_path("ec-1.pem")).expect("pem");
    let key = EncodingKey::from_ec_pem(&pem).expect("ec key");
    sign(Algorithm::ES256, &key, None, claims)
}

/// The `jti` of `claims`.
pub(crate) fn jti(claims: &Value) -> String {
    claims["jti"].as_str().expect("jti").to_owned()
}
