//! `token --scope/--audience`: a development token for the query API (and push, when it
//! names push's audience too), minted by the API crate with the `[auth]` secret.

use std::time::Duration;

use anyhow::{Context, Result};
use strikeflow::Config;
use strikeflow_api::{mint_token, TokenRequest};

use crate::cli::TokenArgs;

/// Prints the token (the only line on stdout, so scripts can capture it).
pub(crate) fn token(config: &Config, args: TokenArgs) -> Result<()> {
    let request = request(config, args);
    let token =
        mint_token(&config.auth, &request).context("minting a token with [auth] jwt_secret")?;
    println!("{token}");
    Ok(())
}

/// The claims the flags ask for. Without `--audience`: the API's audience when scopes are
/// given, plus push's when channels are too. Push's channels default to every channel (`*`)
/// when the token is for push, as its plain tokens do.
fn request(config: &Config, args: TokenArgs) -> TokenRequest {
    let push = &config.auth.audience;
    let mut audiences = args.audiences;
    if audiences.is_empty() {
        if !args.scopes.is_empty() {
            audiences.push(config.api.audience.clone());
        }
        if !args.channels.is_empty() || args.scopes.is_empty() {
            audiences.push(push.clone());
        }
    }
    let mut channels = args.channels;
    if channels.is_empty() && audiences.contains(push) {
        channels.push("*".to_owned());
    }
    TokenRequest {
        sub: args.sub,
        ttl: Duration::from_secs(args.ttl_secs),
        audiences,
        scopes: args.scopes,
        channels,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(scopes: &[&str], audiences: &[&str], channels: &[&str]) -> TokenArgs {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        TokenArgs {
            sub: "dev".into(),
            ttl_secs: 60,
            channels: strings(channels),
            scopes: strings(scopes),
            audiences: strings(audiences),
            revoke: None,
        }
    }

    #[test]
    fn audiences_follow_the_claims_unless_given() {
        let config = Config::default();
        let api_only = request(&config, args(&["api:read"], &[], &[]));
        assert_eq!(api_only.audiences, ["strikeflow-api"]);
        assert!(api_only.channels.is_empty());
        assert_eq!(api_only.scopes, ["api:read"]);

        let both = request(&config, args(&["api:read"], &[], &["chain.*"]));
        assert_eq!(both.audiences, ["strikeflow-api", "strikeflow-push"]);
        assert_eq!(both.channels, ["chain.*"]);

        let named = request(
            &config,
            args(&["api:read"], &["strikeflow-push", "strikeflow-api"], &[]),
        );
        assert_eq!(named.audiences, ["strikeflow-push", "strikeflow-api"]);
        assert_eq!(named.channels, ["*"], "push's default: every channel");

        let push_only = request(&config, args(&[], &["strikeflow-push"], &[]));
        assert_eq!(push_only.audiences, ["strikeflow-push"]);
        assert!(push_only.scopes.is_empty());
    }

    #[test]
    fn the_token_is_accepted_by_the_api_settings_it_was_minted_for() {
        let config = Config::default();
        let token = mint_token(
            &config.auth,
            &request(&config, args(&["api:read"], &[], &[])),
        )
        .expect("minted");
        let keys = strikeflow_push::AuthSettings {
            audience: config.api.audience.clone(),
            ..config.auth.clone()
        }
        .load_keys()
        .expect("keys");
        assert_eq!(keys.verify(&token).expect("valid").sub, "dev");
        // And not by push, whose audience it does not name.
        let push = config.auth.load_keys().expect("keys");
        assert!(push.verify(&token).is_err());
    }
}
