//! Token verification, one refusal at a time, with the test keys of `push/tests/keys`.

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;

const SECRET: &str = "unit-test-secret-of-thirty-two-bytes";
const RSA_1: &str = include_str!("../../tests/keys/rsa-1.pem");
const RSA_2: &str = include_str!("../../tests/keys/rsa-2.pem");
const EC_1: &str = include_str!("../../tests/keys/ec-1.pem");

fn keys_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn settings() -> AuthSettings {
    AuthSettings {
        jwt_secret: SECRET.to_owned(),
        ..AuthSettings::default()
    }
}

fn with_public_keys() -> AuthSettings {
    AuthSettings {
        rs256_public_key_file: keys_dir().join("rsa-1.pub.pem").display().to_string(),
        es256_public_key_file: keys_dir().join("ec-1.pub.pem").display().to_string(),
        ..settings()
    }
}

fn now() -> u64 {
    claims::now_secs()
}

/// Claims that pass every check, to be spoilt one field at a time.
fn good_claims() -> Value {
    json!({
        "sub": "alice",
        "iss": DEFAULT_ISSUER,
        "aud": DEFAULT_AUDIENCE,
        "iat": now(),
        "exp": now() + 60,
        "jti": "jti-1",
        "channels": ["bars.*"],
    })
}

fn sign(alg: Algorithm, key: &EncodingKey, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("encode")
}

fn hs(claims: &Value) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    sign(Algorithm::HS256, &key, None, claims)
}

fn rs(pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("rsa key");
    sign(Algorithm::RS256, &key, kid, claims)
}

fn es(kid: Option<&str>, claims: &Value) -> String {
    let key = EncodingKey::from_ec_pem(EC_1.as_bytes()).expect("ec key");
    sign(Algorithm::ES256, &key, kid, claims)
}

fn verify(settings: &AuthSettings, token: &str) -> Result<Claims, AuthError> {
    settings.load_keys().expect("keys").verify(token)
}

fn spoilt(field: &str, value: Value) -> Value {
    let mut claims = good_claims();
    claims[field] = value;
    claims
}

fn without(field: &str) -> Value {
    let mut claims = good_claims();
    claims.as_object_mut().expect("object").remove(field);
    claims
}

#[test]
fn minted_tokens_verify_with_the_same_settings() {
    let token = mint(
        SECRET,
        "alice",
        Duration::from_secs(60),
        vec!["bars.*".into()],
    )
    .expect("mint");
    let claims = verify(&settings(), &token).expect("verify");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.channels, vec!["bars.*".to_owned()]);
    assert!(claims.jti.is_some(), "minted tokens are revocable");
    assert!(claims.remaining() > Duration::from_secs(55));
    // No patterns: every channel, written out.
    let all = mint(SECRET, "alice", Duration::from_secs(60), vec![]).expect("mint");
    let claims = verify(&settings(), &all).expect("verify");
    assert_eq!(claims.channels, vec!["*".to_owned()]);
    // Another deployment's issuer and audience.
    let custom = AuthSettings {
        issuer: "https://id.example".into(),
        audience: "dashboards".into(),
        ..settings()
    };
    let token = mint_with(&custom, "bob", Duration::from_secs(60), vec![]).expect("mint");
    assert!(verify(&custom, &token).is_ok());
    assert_eq!(verify(&settings(), &token), Err(AuthError::WrongIssuer));
    assert_eq!(
        mint_with(
            &AuthSettings {
                jwt_secret: String::new(),
                ..settings()
            },
            "x",
            Duration::from_secs(1),
            vec![]
        ),
        Err(AuthError::EmptySecret)
    );
}

#[test]
fn time_claims_are_checked_with_a_small_leeway() {
    let s = settings();
    assert!(verify(&s, &hs(&good_claims())).is_ok());
    assert_eq!(
        verify(&s, &hs(&spoilt("exp", json!(now() - 60)))),
        Err(AuthError::Expired)
    );
    assert!(
        verify(&s, &hs(&spoilt("exp", json!(now() - 2)))).is_ok(),
        "within the leeway"
    );
    assert_eq!(
        verify(&s, &hs(&spoilt("exp", json!(now() - (LEEWAY_SECS + 3))))),
        Err(AuthError::Expired)
    );
    assert_eq!(
        verify(&s, &hs(&spoilt("nbf", json!(now() + 120)))),
        Err(AuthError::NotYetValid)
    );
    assert!(verify(&s, &hs(&spoilt("nbf", json!(now() - 1)))).is_ok());
    assert_eq!(
        verify(&s, &hs(&without("exp"))),
        Err(AuthError::Claim("exp".into()))
    );
}

#[test]
fn an_exp_far_in_the_future_is_accepted_without_overflow() {
    let claims = verify(&settings(), &hs(&spoilt("exp", json!(u64::MAX)))).expect("verify");
    assert_eq!(claims.exp, u64::MAX);
    assert!(claims.remaining() > Duration::from_secs(1 << 40));
    // Not an integer: refused, not a panic.
    assert!(verify(&settings(), &hs(&spoilt("exp", json!(1e300)))).is_err());
    assert!(verify(&settings(), &hs(&spoilt("exp", json!(-5)))).is_err());
}

#[test]
fn issuer_and_audience_must_match() {
    let s = settings();
    assert_eq!(
        verify(&s, &hs(&spoilt("aud", json!("someone-else")))),
        Err(AuthError::WrongAudience)
    );
    assert!(
        verify(&s, &hs(&spoilt("aud", json!(["other", DEFAULT_AUDIENCE])))).is_ok(),
        "an audience list naming push"
    );
    assert_eq!(
        verify(&s, &hs(&spoilt("iss", json!("mallory")))),
        Err(AuthError::WrongIssuer)
    );
    assert_eq!(
        verify(&s, &hs(&without("aud"))),
        Err(AuthError::Claim("aud".into()))
    );
    assert_eq!(
        verify(&s, &hs(&without("iss"))),
        Err(AuthError::Claim("iss".into()))
    );
    assert!(verify(&s, &hs(&without("sub"))).is_err());
}

#[test]
fn tampering_and_other_keys_fail_the_signature() {
    let s = settings();
    let token = hs(&good_claims());
    let (rest, signature) = token.rsplit_once('.').expect("three parts");
    let mut sig: Vec<char> = signature.chars().collect();
    sig[3] = if sig[3] == 'A' { 'B' } else { 'A' };
    let flipped = format!("{rest}.{}", sig.into_iter().collect::<String>());
    assert_eq!(verify(&s, &flipped), Err(AuthError::BadSignature));

    // A valid signature over different claims.
    let wider = hs(&spoilt("channels", json!(["*"])));
    let parts: Vec<&str> = token.split('.').collect();
    let other: Vec<&str> = wider.split('.').collect();
    let spliced = format!("{}.{}.{}", parts[0], other[1], parts[2]);
    assert_eq!(verify(&s, &spliced), Err(AuthError::BadSignature));

    let forged = mint(
        "another-secret-of-thirty-two-bytes!",
        "alice",
        Duration::from_secs(60),
        vec![],
    )
    .expect("mint");
    assert_eq!(verify(&s, &forged), Err(AuthError::BadSignature));
}

#[test]
fn only_hs256_rs256_and_es256_are_accepted() {
    let s = with_public_keys();
    let secret = EncodingKey::from_secret(SECRET.as_bytes()).expect("key");
    let hs512 = sign(Algorithm::HS512, &secret, None, &good_claims());
    assert!(matches!(verify(&s, &hs512), Err(AuthError::Algorithm(_))));
    // Unsigned ("alg":"none"), with and without a signature part.
    let payload = hs(&good_claims())
        .split('.')
        .nth(1)
        .expect("payload")
        .to_owned();
    let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
    for token in [format!("{none}.{payload}."), format!("{none}.{payload}")] {
        let err = verify(&s, &token).expect_err("alg none");
        assert!(
            matches!(&err, AuthError::Algorithm(m) if m.contains("none")),
            "{err}"
        );
    }
    for garbage in ["not-a-jwt", "a.b.c", "", "...."] {
        assert!(
            matches!(verify(&s, garbage), Err(AuthError::Malformed(_))),
            "{garbage:?}"
        );
    }
}

#[test]
fn rs256_and_es256_keys_from_pem_files() {
    let s = with_public_keys();
    assert_eq!(
        verify(&s, &rs(RSA_1, None, &good_claims()))
            .expect("rs256")
            .sub,
        "alice"
    );
    assert!(verify(&s, &es(None, &good_claims())).is_ok());
    // Another RSA key: bad signature.
    assert_eq!(
        verify(&s, &rs(RSA_2, None, &good_claims())),
        Err(AuthError::BadSignature)
    );
    // Without the key configured, the algorithm is refused.
    assert!(matches!(
        verify(&settings(), &rs(RSA_1, None, &good_claims())),
        Err(AuthError::Algorithm(_))
    ));
}

#[test]
fn an_rsa_public_key_used_as_an_hmac_secret_never_verifies() {
    // HS/RS key confusion: the attacker knows the public key and signs HS256 with it.
    let public = std::fs::read(keys_dir().join("rsa-1.pub.pem")).expect("pem");
    let key = EncodingKey::from_secret(&public).expect("key");
    let confused = sign(Algorithm::HS256, &key, None, &good_claims());
    assert_eq!(
        verify(&with_public_keys(), &confused),
        Err(AuthError::BadSignature)
    );
    // With HS256 disabled it is refused outright.
    let rsa_only = AuthSettings {
        jwt_secret: String::new(),
        ..with_public_keys()
    };
    assert!(matches!(
        verify(&rsa_only, &confused),
        Err(AuthError::Algorithm(_))
    ));
}

/// A JWKS file in a fresh temporary directory.
struct Jwks(PathBuf);

impl Jwks {
    fn new(kids: &[&str]) -> Jwks {
        let dir = std::env::temp_dir().join(format!("strikeflow-jwks-{}", claims::fresh_jti()));
        std::fs::create_dir_all(&dir).expect("dir");
        let jwks = Jwks(dir.join("jwks.json"));
        jwks.write(kids);
        jwks
    }

    fn write(&self, kids: &[&str]) {
        let keys: Vec<Value> = kids
            .iter()
            .map(|kid| {
                let text = std::fs::read_to_string(keys_dir().join(format!("{kid}.jwk.json")))
                    .expect("jwk");
                serde_json::from_str(&text).expect("jwk json")
            })
            .collect();
        // Another size each time, so the change is seen even within one mtime tick.
        let padding = " ".repeat(kids.len() * 7 + kids.concat().len());
        std::fs::write(&self.0, format!("{}{padding}", json!({ "keys": keys }))).expect("write");
    }

    fn settings(&self) -> AuthSettings {
        AuthSettings {
            jwks_file: self.0.display().to_string(),
            ..settings()
        }
    }
}

impl Drop for Jwks {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

#[test]
fn jwks_keys_are_chosen_by_kid_and_reloaded_on_change() {
    let jwks = Jwks::new(&["rsa-1", "ec-1"]);
    let keys = jwks.settings().load_keys().expect("keys");
    assert!(keys
        .verify(&rs(RSA_1, Some("rsa-1"), &good_claims()))
        .is_ok());
    assert!(keys.verify(&es(Some("ec-1"), &good_claims())).is_ok());
    // A key signed by rsa-2 but claiming rsa-1's kid.
    assert_eq!(
        keys.verify(&rs(RSA_2, Some("rsa-1"), &good_claims())),
        Err(AuthError::BadSignature)
    );
    // The algorithm must be the key's: neither ES256 nor HS256 (key confusion) under an
    // RSA key's kid.
    assert!(matches!(
        keys.verify(&es(Some("rsa-1"), &good_claims())),
        Err(AuthError::Algorithm(_))
    ));
    let public = std::fs::read(keys_dir().join("rsa-1.pub.pem")).expect("pem");
    let confusion = EncodingKey::from_secret(&public).expect("key");
    assert!(matches!(
        keys.verify(&sign(
            Algorithm::HS256,
            &confusion,
            Some("rsa-1"),
            &good_claims()
        )),
        Err(AuthError::Algorithm(_))
    ));
    assert_eq!(
        keys.verify(&rs(RSA_2, Some("rsa-2"), &good_claims())),
        Err(AuthError::UnknownKey("rsa-2".into()))
    );
    // HS256 tokens still use the secret.
    assert!(keys.verify(&hs(&good_claims())).is_ok());

    // Rotation: rsa-1 out, rsa-2 in.
    assert!(!keys.reload_jwks(), "nothing changed yet");
    jwks.write(&["rsa-2"]);
    assert!(keys.reload_jwks(), "the new file is read");
    assert!(keys
        .verify(&rs(RSA_2, Some("rsa-2"), &good_claims()))
        .is_ok());
    assert_eq!(
        keys.verify(&rs(RSA_1, Some("rsa-1"), &good_claims())),
        Err(AuthError::UnknownKey("rsa-1".into()))
    );
    // A broken file keeps the keys it replaced.
    std::fs::write(&jwks.0, "{ not json").expect("write");
    assert!(!keys.reload_jwks());
    assert!(keys
        .verify(&rs(RSA_2, Some("rsa-2"), &good_claims()))
        .is_ok());
}

#[test]
fn bad_key_settings_fail_naming_the_key() {
    let cases = [
        (
            AuthSettings {
                issuer: " ".into(),
                ..settings()
            },
            "auth.issuer: ",
        ),
        (
            AuthSettings {
                audience: String::new(),
                ..settings()
            },
            "auth.audience: ",
        ),
        (
            AuthSettings {
                leeway_secs: 3600,
                ..settings()
            },
            "auth.leeway_secs: ",
        ),
        (
            AuthSettings {
                jwks_reload_secs: 0,
                ..settings()
            },
            "auth.jwks_reload_secs: ",
        ),
        (
            AuthSettings {
                jwt_secret: String::new(),
                ..settings()
            },
            "auth.jwt_secret: ",
        ),
        (
            AuthSettings {
                rs256_public_key_file: "/nonexistent/key.pem".into(),
                ..settings()
            },
            "auth.rs256_public_key_file: cannot read /nonexistent/key.pem",
        ),
        (
            AuthSettings {
                // An EC key where an RSA key is expected.
                rs256_public_key_file: keys_dir().join("ec-1.pub.pem").display().to_string(),
                ..settings()
            },
            "auth.rs256_public_key_file: ",
        ),
        (
            AuthSettings {
                es256_public_key_file: keys_dir().join("README.md").display().to_string(),
                ..settings()
            },
            "auth.es256_public_key_file: ",
        ),
        (
            AuthSettings {
                jwks_file: keys_dir().join("rsa-1.pem").display().to_string(),
                ..settings()
            },
            "auth.jwks_file: ",
        ),
    ];
    for (settings, expected) in cases {
        let error = settings.validate().expect_err("refused");
        assert!(
            error.to_string().starts_with(expected),
            "{settings:?}: {error}"
        );
    }
    // The secret never shows in Debug output.
    assert!(!format!("{:?}", settings()).contains(SECRET));
}

#[test]
fn channel_claims() {
    let claims = |channels: &[&str]| Claims {
        sub: "s".into(),
        exp: 0,
        jti: None,
        channels: channels.iter().map(|c| c.to_string()).collect(),
    };
    // No claim grants nothing.
    let none = claims(&[]);
    assert!(!none.allows("bars.NIFTY26DECFUT"));
    assert!(!none.allows(""));
    let missing: Claims = serde_json::from_value(json!({"sub":"s","exp":1})).expect("claims");
    assert!(!missing.allows("ticks.X"));

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
