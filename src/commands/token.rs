//! `token`: a development JWT that push, configured with the same `[auth]`, accepts; or,
//! with `--revoke`, the revocation of one.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use strikeflow::Config;
use strikeflow_push::presence::Presence;
use strikeflow_push::redis_link::RedisLink;

use crate::cli::TokenArgs;

/// Prints an HS256 token signed with `[auth] jwt_secret`, carrying `[auth] issuer` and
/// `audience`, a fresh `jti` and the channel patterns (every channel, `*`, when none is
/// given). The token is the only line on stdout, so scripts can capture it.
pub(crate) async fn execute(config: &Config, args: TokenArgs) -> Result<()> {
    if let Some(jti) = &args.revoke {
        return revoke(config, jti, args.ttl_secs).await;
    }
    let ttl = Duration::from_secs(args.ttl_secs);
    let token = strikeflow_push::auth::mint_with(&config.auth, &args.sub, ttl, args.channels)
        .context("minting a token with [auth] jwt_secret")?;
    println!("{token}");
    Ok(())
}

/// Marks `jti` revoked in the deployment's Redis for `ttl_secs`.
async fn revoke(config: &Config, jti: &str, ttl_secs: u64) -> Result<()> {
    let link = Arc::new(RedisLink::new(&config.redis.url).context("the Redis URL")?);
    let presence = Presence::new(link, &config.kafka.topic_prefix);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let until = now.saturating_add(ttl_secs);
    presence
        .revoke(jti, until)
        .await
        .with_context(|| format!("revoking {jti} in Redis"))?;
    println!("revoked {jti} until {until} (seconds since the epoch)");
    Ok(())
}
