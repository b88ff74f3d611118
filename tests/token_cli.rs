//! `strikeflow token`: the tokens it mints are the ones push accepts (with the same
//! `[auth]`), and `--revoke` reaches every push node through Redis (`./dev up`).

use std::process::Command;
use std::sync::Arc;

use strikeflow_push::auth::AuthError;
use strikeflow_push::presence::Presence;
use strikeflow_push::redis_link::RedisLink;
use strikeflow_push::AuthSettings;

const SECRET: &str = "token-cli-test-secret-of-32-bytes!";

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".to_owned())
}

/// Runs `strikeflow token <args>` with a known secret and audience; returns stdout.
fn strikeflow_token(args: &[&str], prefix: &str) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_strikeflow"))
        .arg("token")
        .args(args)
        .env("STRIKEFLOW_JWT_SECRET", SECRET)
        .env("STRIKEFLOW_AUTH__AUDIENCE", "dashboards")
        .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", prefix)
        .env("REDIS_URL", redis_url())
        .env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "")
        .output()
        .expect("running strikeflow");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "strikeflow token failed: {stderr}");
    String::from_utf8(output.stdout).expect("utf8")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_tokens_verify_and_revocation_reaches_redis() {
    let prefix = format!("tokcli{}.", std::process::id());
    let settings = AuthSettings {
        jwt_secret: SECRET.to_owned(),
        audience: "dashboards".to_owned(),
        ..AuthSettings::default()
    };
    let keys = settings.load_keys().expect("keys");

    let token = strikeflow_token(&["--sub", "cli-user", "--channel", "bars.*"], &prefix);
    let token = token.trim();
    let claims = keys.verify(token).expect("push accepts it");
    assert_eq!(claims.sub, "cli-user");
    assert_eq!(claims.channels, vec!["bars.*".to_owned()]);
    // The audience came from the configuration: push with the default one refuses it.
    let default_keys = AuthSettings {
        jwt_secret: SECRET.to_owned(),
        ..AuthSettings::default()
    }
    .load_keys()
    .expect("keys");
    assert_eq!(default_keys.verify(token), Err(AuthError::WrongAudience));

    // No --channel: every channel, written out (a token without the claim gets nothing).
    let all = strikeflow_token(&["--sub", "demo"], &prefix);
    let claims = keys.verify(all.trim()).expect("verify");
    assert_eq!(claims.channels, vec!["*".to_owned()]);
    assert!(claims.allows("ticks.NIFTY26DECFUT"));

    // --revoke: the jti is revoked for every node of this deployment (topic prefix).
    let jti = claims.jti.expect("a jti");
    let presence = Presence::new(
        Arc::new(RedisLink::new(&redis_url()).expect("url")),
        &prefix,
    );
    assert_eq!(presence.is_revoked(&jti).await, Some(false));
    let said = strikeflow_token(&["--revoke", &jti, "--ttl-secs", "600"], &prefix);
    assert!(said.starts_with(&format!("revoked {jti} until ")), "{said}");
    assert_eq!(presence.is_revoked(&jti).await, Some(true));
}
