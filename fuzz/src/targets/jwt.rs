//! Token verification: `KeySet::verify` with HS256, RS256 and ES256 keys configured both as
//! PEM files and as a JWKS file chosen by `kid`, as push loads them from `[auth]`.
//!
//! The corpus is real tokens: valid ones of every algorithm and key source, and ones push
//! must refuse (expired, not yet valid, wrong audience, no `channels`, `alg: none`, HS512).
//! Structure-aware: the mutator splits a token into its three segments, decodes a header or
//! claims segment, mutates its JSON token by token (algorithms, `kid`s, claim types and
//! edges), re-encodes it and, half the time, re-signs it with the HS256 secret, so claim
//! handling is reached past the signature check; it also swaps segments between tokens,
//! strips or replaces signatures and damages the base64.
//!
//! A token that verifies goes on as in a session: its channel patterns are matched and its
//! remaining lifetime computed.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use strikeflow_push::auth::KeySet;
use strikeflow_push::AuthSettings;

use crate::harness::Target;
use crate::mutate::{json_mutation, replace};
use crate::rng::Rng;

/// The HS256 secret of the fuzzed configuration.
const SECRET: &str = "fuzz-secret-0123456789abcdef0123456789abcdef";
const RSA_1: &str = include_str!("../../keys/rsa-1.pem");
const RSA_1_PUB: &str = include_str!("../../keys/rsa-1.pub.pem");
const RSA_2: &str = include_str!("../../keys/rsa-2.pem");
const EC_1: &str = include_str!("../../keys/ec-1.pem");
const EC_1_PUB: &str = include_str!("../../keys/ec-1.pub.pem");
const JWKS: &str = include_str!("../../keys/jwks.json");
/// 2100-01-01: tokens that stay valid, so the corpus is the same every day.
const FAR_EXP: u64 = 4_102_444_800;

/// Words of the JOSE header and the claims push reads.
const DICTIONARY: &[&str] = &[
    "alg",
    "typ",
    "kid",
    "JWT",
    "HS256",
    "RS256",
    "ES256",
    "HS512",
    "PS256",
    "EdDSA",
    "none",
    "None",
    "fuzz-rsa-2",
    "fuzz-ec-1",
    "sub",
    "iss",
    "aud",
    "exp",
    "nbf",
    "iat",
    "jti",
    "channels",
    "strikeflow",
    "strikeflow-push",
    "*",
    "bars.*",
    "crit",
    "jwk",
    "x5c",
    "cty",
];

/// `KeySet::verify`, fuzzed from real tokens.
pub struct JwtTarget {
    keys: KeySet,
    corpus: Vec<Vec<u8>>,
    resign: EncodingKey,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Writes the public keys to a fresh temporary directory, loads them the way push does, and
/// removes the directory (verification never reads the files again).
fn load_keys() -> Result<KeySet, String> {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "strikeflow-fuzz-keys-{}-{}",
        std::process::id(),
        RUN.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let write = |name: &str, text: &str| -> Result<String, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path.display().to_string())
    };
    let settings = AuthSettings {
        jwt_secret: SECRET.to_owned(),
        rs256_public_key_file: write("rsa-1.pub.pem", RSA_1_PUB)?,
        es256_public_key_file: write("ec-1.pub.pem", EC_1_PUB)?,
        jwks_file: write("jwks.json", JWKS)?,
        ..AuthSettings::default()
    };
    let keys = settings.load_keys().map_err(|e| e.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    keys
}

impl JwtTarget {
    /// Loads the keys and mints the corpus.
    pub fn new() -> Result<Self, String> {
        let keys = load_keys()?;
        let hs = EncodingKey::from_secret(SECRET.as_bytes()).map_err(|e| e.to_string())?;
        let rsa1 = EncodingKey::from_rsa_pem(RSA_1.as_bytes()).map_err(|e| e.to_string())?;
        let rsa2 = EncodingKey::from_rsa_pem(RSA_2.as_bytes()).map_err(|e| e.to_string())?;
        let ec1 = EncodingKey::from_ec_pem(EC_1.as_bytes()).map_err(|e| e.to_string())?;
        let claims = |extra: serde_json::Value| {
            let mut c = json!({
                "sub": "fuzz",
                "iss": "strikeflow",
                "aud": "strikeflow-push",
                "iat": 1_766_979_000u64,
                "exp": FAR_EXP,
                "jti": "fuzz-1",
                "channels": ["bars.*", "ticks.NIFTY*", "chain.NIFTY.*"],
            });
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                for (k, v) in extra {
                    if v.is_null() {
                        c.remove(k);
                    } else {
                        c.insert(k.clone(), v.clone());
                    }
                }
            }
            c
        };
        let header = |alg: Algorithm, kid: Option<&str>| {
            let mut h = Header::new(alg);
            h.kid = kid.map(str::to_owned);
            h
        };
        let sign = |h: Header, c: serde_json::Value, key: &EncodingKey| {
            jsonwebtoken::encode(&h, &c, key).map_err(|e| e.to_string())
        };
        let mut tokens = vec![
            sign(header(Algorithm::HS256, None), claims(json!({})), &hs)?,
            sign(
                header(Algorithm::HS256, None),
                claims(json!({"exp": 1_000_000_000u64})),
                &hs,
            )?,
            sign(
                header(Algorithm::HS256, None),
                claims(json!({"nbf": FAR_EXP - 10})),
                &hs,
            )?,
            sign(
                header(Algorithm::HS256, None),
                claims(json!({"aud": ["other", "strikeflow-push"]})),
                &hs,
            )?,
            sign(
                header(Algorithm::HS256, None),
                claims(json!({"aud": "other"})),
                &hs,
            )?,
            sign(
                header(Algorithm::HS256, None),
                claims(json!({"channels": null, "jti": null})),
                &hs,
            )?,
            sign(header(Algorithm::HS512, None), claims(json!({})), &hs)?,
            sign(
                header(Algorithm::RS256, None),
                claims(json!({"channels": ["*"]})),
                &rsa1,
            )?,
            sign(
                header(Algorithm::RS256, Some("fuzz-rsa-2")),
                claims(json!({})),
                &rsa2,
            )?,
            sign(
                header(Algorithm::RS256, Some("unknown-kid")),
                claims(json!({})),
                &rsa2,
            )?,
            sign(header(Algorithm::ES256, None), claims(json!({})), &ec1)?,
            sign(
                header(Algorithm::ES256, Some("fuzz-ec-1")),
                claims(json!({"sub": ""})),
                &ec1,
            )?,
        ];
        // Unsigned (`alg: none`) and a key-confusion attempt (RS256 header, HMAC signature).
        let body = b64(claims(json!({})).to_string().as_bytes());
        tokens.push(format!("{}.{body}.", b64(br#"{"alg":"none","typ":"JWT"}"#)));
        let confused = format!("{}.{body}", b64(br#"{"alg":"RS256","typ":"JWT"}"#));
        let sig = jsonwebtoken::crypto::sign(confused.as_bytes(), &hs, Algorithm::HS256)
            .map_err(|e| e.to_string())?;
        tokens.push(format!("{confused}.{sig}"));
        Ok(Self {
            keys,
            corpus: tokens.into_iter().map(String::into_bytes).collect(),
            resign: hs,
        })
    }

    /// Replaces the signature of `header.claims` with a valid HS256 one.
    fn resign(&self, data: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(data).into_owned();
        let signed: Vec<&str> = text.splitn(3, '.').collect();
        if signed.len() < 2 {
            return;
        }
        let message = format!("{}.{}", signed[0], signed[1]);
        if let Ok(sig) =
            jsonwebtoken::crypto::sign(message.as_bytes(), &self.resign, Algorithm::HS256)
        {
            *data = format!("{message}.{sig}").into_bytes();
        }
    }
}

/// The `.`-separated segments' byte ranges.
fn segments(data: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'.' {
            out.push((start, i));
            start = i + 1;
        }
    }
    out.push((start, data.len()));
    out
}

impl Target for JwtTarget {
    fn name(&self) -> &'static str {
        "jwt"
    }

    fn describe(&self) -> &'static str {
        "strikeflow_push::auth::KeySet::verify (HS256/RS256/ES256, PEM and JWKS keys) and Claims"
    }

    fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    fn max_len(&self) -> usize {
        8 * 1024
    }

    fn structure_percent(&self) -> usize {
        75
    }

    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let segs = segments(data);
        match rng.below(8) {
            0..=3 => {
                // Mutate the JSON of the header or the claims, re-encode, maybe re-sign.
                let which = if rng.one_in(3) { 0 } else { 1 };
                let Some(&(start, end)) = segs.get(which) else {
                    return;
                };
                let Ok(mut json) = URL_SAFE_NO_PAD.decode(&data[start..end]) else {
                    return;
                };
                for _ in 0..rng.range(1, 3) {
                    json_mutation(rng, &mut json, DICTIONARY, 2048);
                }
                replace(data, start, end, b64(&json).as_bytes());
                if rng.one_in(2) {
                    self.resign(data);
                }
            }
            4 => {
                // A segment from another token (header, claims or signature).
                let other = rng.pick(&self.corpus).cloned().unwrap_or_default();
                let theirs = segments(&other);
                let i = rng.below(segs.len().min(theirs.len()).max(1));
                if let (Some(&(s, e)), Some(&(os, oe))) = (segs.get(i), theirs.get(i)) {
                    replace(data, s, e, &other[os..oe]);
                }
            }
            5 => {
                // Signature stripped, emptied, or random base64url.
                if let Some(&(s, e)) = segs.get(2) {
                    let sig = match rng.below(3) {
                        0 => String::new(),
                        1 => b64(&(0..rng.range(1, 600))
                            .map(|_| rng.byte())
                            .collect::<Vec<_>>()),
                        _ => "A".repeat(rng.range(1, 400)),
                    };
                    replace(data, s, e, sig.as_bytes());
                } else {
                    data.push(b'.');
                }
            }
            6 => {
                // Damage the base64: padding, the standard alphabet, blanks, non-ASCII.
                let junk: &[u8] = rng
                    .pick(&[
                        &b"="[..],
                        b"==",
                        b"+",
                        b"/",
                        b" ",
                        b"\n",
                        b"\xc3\xa9",
                        b"%3D",
                        b".",
                    ])
                    .copied()
                    .unwrap_or(b"=");
                let at = rng.below(data.len() + 1);
                replace(data, at, at, junk);
            }
            _ => {
                // Too many or too few segments.
                if rng.one_in(2) {
                    let extra = b64(&[rng.byte(), rng.byte(), rng.byte()]);
                    data.push(b'.');
                    data.extend_from_slice(extra.as_bytes());
                } else if let Some(&(s, _)) = segs.last() {
                    data.truncate(s.saturating_sub(1));
                }
            }
        }
        data.truncate(self.max_len());
    }

    fn run(&self, input: &[u8]) -> Result<bool, String> {
        // Tokens arrive as strings (a header, a subprotocol, a JSON field).
        let token = String::from_utf8_lossy(input);
        let Ok(claims) = self.keys.verify(&token) else {
            return Ok(false);
        };
        for channel in [
            "bars.NIFTY26DECFUT",
            "ticks.NIFTY26DEC24500CE",
            "chain.NIFTY.2026-12-29",
        ] {
            let _ = claims.allows(channel);
        }
        let _ = claims.remaining();
        Ok(true)
    }
}
