//! What push is told: where things are ([`PushConfig`]) and how to serve
//! ([`PushSettings`], the `[push]` section of the configuration file).

use std::net::SocketAddr;

use serde::Deserialize;
use strikeflow_kafka::KafkaConnection;

use crate::PushError;

/// The development secret; anything public-facing must override it.
pub(crate) const DEV_JWT_SECRET: &str = "strikeflow-dev-secret-change-me";

/// Push's tuning, as written in the `[push]` section. Connection settings and the JWT secret
/// are not here (they are shared with other stages; see [`PushConfig`]); every missing key
/// takes its default, and an unknown key is an error, so a misspelt setting is reported
/// instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Address the HTTP/WebSocket listener binds to (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Maximum queued messages per client before a tick subscriber is closed as slow
    /// (default 1024).
    pub client_queue: usize,
    /// Seconds between server WebSocket pings (default 15); a client silent for two
    /// intervals is closed.
    pub ping_interval_secs: u64,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            client_queue: 1024,
            ping_interval_secs: 15,
        }
    }
}

impl PushSettings {
    /// Checks the values before anything binds or connects, so a bad file fails at once
    /// with the key named (`push.<key>: <reason>`).
    pub fn validate(&self) -> Result<(), PushError> {
        if self.client_queue == 0 {
            return Err(PushError::Config {
                key: "push.client_queue",
                reason: "must be at least 1",
            });
        }
        if self.ping_interval_secs == 0 {
            return Err(PushError::Config {
                key: "push.ping_interval_secs",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }
}

/// Everything push needs to run: the shared connection settings, the token secret and its
/// own tuning. Built by the binary from `[kafka]`, `[database]`, `[redis]`, `[auth]` and
/// `[push]`; not read from a file as a whole. Push logs a warning when it runs with the
/// development secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// Brokers and the topic names to read instruments, ticks and bars from.
    pub kafka: KafkaConnection,
    /// PostgreSQL URL; only checked by `/readyz` so operators see the whole pipeline's health.
    pub database_url: String,
    /// Redis URL; Redis holds the latest bar per channel for new subscribers.
    pub redis_url: String,
    /// HS256 secret that client JWTs must be signed with (`[auth] jwt_secret`).
    pub jwt_secret: String,
    /// Listener and per-client tuning.
    pub settings: PushSettings,
}

impl Default for PushConfig {
    /// The local development setup (`./dev up` ports, the development secret).
    fn default() -> Self {
        Self {
            kafka: KafkaConnection::default(),
            database_url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".to_owned(),
            redis_url: "redis://127.0.0.1:16379".to_owned(),
            jwt_secret: DEV_JWT_SECRET.to_owned(),
            settings: PushSettings::default(),
        }
    }
}

impl PushConfig {
    /// Checks the secret and the settings (see [`PushSettings::validate`]).
    pub fn validate(&self) -> Result<(), PushError> {
        if self.jwt_secret.is_empty() {
            return Err(PushError::Config {
                key: "auth.jwt_secret",
                reason: "must not be empty",
            });
        }
        self.settings.validate()
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Toml};
    use figment::Figment;
    use strikeflow_schemas::Topics;

    use super::*;

    fn parse(toml: &str) -> Result<PushSettings, Box<figment::Error>> {
        Figment::from(Toml::string(toml))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn settings_defaults_fill_missing_fields() {
        let settings = parse("").expect("parse");
        assert_eq!(settings.listen, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(settings.client_queue, 1024);
        assert_eq!(settings.ping_interval_secs, 15);
    }

    #[test]
    fn partial_settings_take_the_rest_from_default() {
        let settings = parse("client_queue = 7").expect("parse");
        assert_eq!(settings.client_queue, 7);
        assert_eq!(
            settings,
            PushSettings {
                client_queue: 7,
                ..PushSettings::default()
            }
        );
    }

    #[test]
    fn default_matches_dev_setup() {
        let config = PushConfig::default();
        assert_eq!(config.settings.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.jwt_secret, "strikeflow-dev-secret-change-me");
        assert_eq!(config.kafka.brokers, "127.0.0.1:19092");
        assert_eq!(config.kafka.topics, Topics::default());
        assert_eq!(config.redis_url, "redis://127.0.0.1:16379");
        assert_eq!(
            config.database_url,
            "postgres://strikeflow@127.0.0.1:15432/strikeflow"
        );
        assert!(config.validate().is_ok(), "the defaults validate");
    }

    #[test]
    fn a_bad_value_fails_naming_its_key() {
        for (toml, key) in [
            ("client_queue = 0", "push.client_queue: "),
            ("ping_interval_secs = 0", "push.ping_interval_secs: "),
        ] {
            let error = parse(toml)
                .expect("parsed")
                .validate()
                .expect_err("invalid");
            assert!(error.to_string().starts_with(key), "{toml}: {error}");
        }
        let config = PushConfig {
            jwt_secret: String::new(),
            ..PushConfig::default()
        };
        let error = config.validate().expect_err("an empty secret");
        assert!(
            error.to_string().starts_with("auth.jwt_secret: "),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_key_fails_to_deserialize() {
        let error = parse("ping_interval = 5").expect_err("a typo is an error");
        assert!(error.to_string().contains("ping_interval"), "{error}");
        // Connection settings belong to their own sections now.
        assert!(parse("brokers = \"b:1\"").is_err());
    }
}
