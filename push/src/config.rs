//! What push is told: where things are ([`PushConfig`]) and how to serve
//! ([`PushSettings`], the `[push]` section of the configuration file).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use strikeflow_kafka::{KafkaConnection, RegistryConnection};

use crate::auth::{AuthSettings, DEV_JWT_SECRET};
use crate::PushError;

/// Push's tuning, as written in the `[push]` section. Connection settings and the token
/// keys are not here (they are shared with other stages; see [`PushConfig`]); every missing
/// key takes its default, and an unknown key is an error, so a misspelt setting is reported
/// instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Address the HTTP/WebSocket listener binds to (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// Maximum queued messages per client before a tick subscriber is closed as slow
    /// (default 1024).
    pub client_queue: usize,
    /// Maximum bytes of queued ordered messages (ticks, bars, replies) per client before it
    /// is closed as slow (default 4 MiB). Snapshot-like channels conflate instead.
    pub client_queue_bytes: usize,
    /// Bytes of recent messages kept per channel, from which a client resuming with
    /// `since` gets exactly what it missed (default 128 KiB; at least the latest message).
    /// Memory: up to this much for every channel that has carried data.
    pub history_bytes: usize,
    /// Seconds of the stateful topics (bars, strikes, chains, moneyness, indicators) read
    /// back at start-up, so the chain, moneyness and indicator snapshots and the open
    /// 3/5/15-minute bars are whole (default 28800, a trading session).
    pub replay_secs: u64,
    /// Seconds between server WebSocket pings (default 15); a client silent for two
    /// intervals is closed.
    pub ping_interval_secs: u64,
    /// WebSocket connections this node serves at once (default 50000); more are refused
    /// with HTTP 503.
    pub max_connections: usize,
    /// Connections one token subject (`sub`) may hold across every push node sharing the
    /// Redis (default 20); more are refused with HTTP 429 or close code 4009.
    pub max_connections_per_user: usize,
    /// Channels one connection may subscribe to at once (default 256).
    pub max_subscriptions: usize,
    /// Client requests per second a connection may sustain (default 50) ...
    pub ops_per_sec: u32,
    /// ... with bursts of up to this many (default 300); beyond, close code 4029.
    pub ops_burst: u32,
    /// Largest client message in bytes (default 65536); larger ones close the connection
    /// with 1009.
    pub max_frame_bytes: usize,
    /// Seconds a client that upgraded without a token has to send its `auth` message
    /// (default 10); then close code 4004.
    pub auth_timeout_secs: u64,
    /// Seconds a client has to send a complete HTTP request head, including the WebSocket
    /// upgrade request (default 10); a slower client is disconnected.
    pub header_timeout_secs: u64,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            client_queue: 1024,
            client_queue_bytes: 4 << 20,
            history_bytes: crate::hub::DEFAULT_HISTORY_BYTES,
            replay_secs: 8 * 3600,
            ping_interval_secs: 15,
            max_connections: 50_000,
            max_connections_per_user: 20,
            max_subscriptions: 256,
            ops_per_sec: 50,
            ops_burst: 300,
            max_frame_bytes: 64 * 1024,
            auth_timeout_secs: 10,
            header_timeout_secs: 10,
        }
    }
}

/// Smallest `max_frame_bytes`: a refresh carries a whole JWT.
const MIN_FRAME_BYTES: usize = 4 * 1024;
/// Largest `max_frame_bytes`: client requests are small JSON objects.
const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

impl PushSettings {
    /// Checks the values before anything binds or connects, so a bad file fails at once
    /// with the key named (`push.<key>: <reason>`).
    pub fn validate(&self) -> Result<(), PushError> {
        let at_least_one = [
            ("push.client_queue", self.client_queue as u64),
            ("push.client_queue_bytes", self.client_queue_bytes as u64),
            ("push.history_bytes", self.history_bytes as u64),
            ("push.ping_interval_secs", self.ping_interval_secs),
            ("push.max_connections", self.max_connections as u64),
            (
                "push.max_connections_per_user",
                self.max_connections_per_user as u64,
            ),
            ("push.max_subscriptions", self.max_subscriptions as u64),
            ("push.ops_per_sec", u64::from(self.ops_per_sec)),
            ("push.ops_burst", u64::from(self.ops_burst)),
            ("push.auth_timeout_secs", self.auth_timeout_secs),
            ("push.header_timeout_secs", self.header_timeout_secs),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(PushError::config(key, "must be at least 1"));
            }
        }
        if !(MIN_FRAME_BYTES..=MAX_FRAME_BYTES).contains(&self.max_frame_bytes) {
            return Err(PushError::config(
                "push.max_frame_bytes",
                "must be between 4096 and 16777216",
            ));
        }
        Ok(())
    }

    /// How far back the stateful topics are read at start-up.
    pub fn replay(&self) -> Duration {
        Duration::from_secs(self.replay_secs)
    }

    /// The server ping period.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }
}

/// Everything push needs to run: the shared connection settings, the token keys and its
/// own tuning. Built by the binary from `[kafka]`, `[database]`, `[redis]`, `[auth]` and
/// `[push]`; not read from a file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushConfig {
    /// Brokers and the topic names to read instruments, ticks and bars from.
    pub kafka: KafkaConnection,
    /// The schema registry (`[registry]`) Confluent-framed records' ids are resolved from;
    /// `None`: such records are counted and skipped as undecodable.
    pub registry: Option<RegistryConnection>,
    /// PostgreSQL URL; only checked by `/readyz` so operators see the whole pipeline's health.
    pub database_url: String,
    /// Redis URL: the latest bar per channel for new subscribers, revoked token ids and
    /// the per-user connection count shared by every push node.
    pub redis_url: String,
    /// Token keys and claim requirements (`[auth]`).
    pub auth: AuthSettings,
    /// Listener, limits and per-client tuning.
    pub settings: PushSettings,
}

impl Default for PushConfig {
    /// The local development setup (`./dev up` ports, the development secret).
    fn default() -> Self {
        Self {
            kafka: KafkaConnection::default(),
            registry: None,
            database_url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".to_owned(),
            redis_url: "redis://127.0.0.1:16379".to_owned(),
            auth: AuthSettings::default(),
            settings: PushSettings::default(),
        }
    }
}

impl PushConfig {
    /// Checks the keys (see [`AuthSettings::validate`]), the settings (see
    /// [`PushSettings::validate`]) and that a listener reachable from other hosts is not
    /// protected by the development secret or a short HMAC secret.
    pub fn validate(&self) -> Result<(), PushError> {
        self.settings.validate()?;
        self.auth.validate()?;
        self.check_exposure()
    }

    /// Refuse the development secret, or an HMAC secret shorter than 32 bytes, on any
    /// address but loopback: anyone who can reach the port could mint tokens.
    fn check_exposure(&self) -> Result<(), PushError> {
        let listen = self.settings.listen;
        if listen.ip().is_loopback() {
            return Ok(());
        }
        let secret = &self.auth.jwt_secret;
        if secret == DEV_JWT_SECRET {
            return Err(PushError::config(
                "auth.jwt_secret",
                format!(
                    "push listens on {listen}, which is not loopback, with the published \
                     development secret; set STRIKEFLOW_JWT_SECRET to a random secret of at \
                     least {} bytes",
                    crate::auth::MIN_PUBLIC_SECRET
                ),
            ));
        }
        if !secret.is_empty() && secret.len() < crate::auth::MIN_PUBLIC_SECRET {
            return Err(PushError::config(
                "auth.jwt_secret",
                format!(
                    "push listens on {listen}, which is not loopback, and the HMAC secret is \
                     {} bytes; it must be at least {}",
                    secret.len(),
                    crate::auth::MIN_PUBLIC_SECRET
                ),
            ));
        }
        Ok(())
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
        assert_eq!(config.auth.jwt_secret, "strikeflow-dev-secret-change-me");
        assert_eq!(config.kafka.brokers.bootstrap, "127.0.0.1:19092");
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
            ("client_queue_bytes = 0", "push.client_queue_bytes: "),
            ("history_bytes = 0", "push.history_bytes: "),
            ("ping_interval_secs = 0", "push.ping_interval_secs: "),
        ] {
            let error = parse(toml)
                .expect("parsed")
                .validate()
                .expect_err("invalid");
            assert!(error.to_string().starts_with(key), "{toml}: {error}");
        }
        for (toml, key) in [
            ("max_connections = 0", "push.max_connections: "),
            (
                "max_connections_per_user = 0",
                "push.max_connections_per_user: ",
            ),
            ("max_subscriptions = 0", "push.max_subscriptions: "),
            ("ops_per_sec = 0", "push.ops_per_sec: "),
            ("ops_burst = 0", "push.ops_burst: "),
            ("max_frame_bytes = 10", "push.max_frame_bytes: "),
            ("auth_timeout_secs = 0", "push.auth_timeout_secs: "),
            ("header_timeout_secs = 0", "push.header_timeout_secs: "),
        ] {
            let error = parse(toml)
                .expect("parsed")
                .validate()
                .expect_err("invalid");
            assert!(error.to_string().starts_with(key), "{toml}: {error}");
        }
        let mut config = PushConfig::default();
        config.auth.jwt_secret = String::new();
        let error = config.validate().expect_err("an empty secret");
        assert!(
            error.to_string().starts_with("auth.jwt_secret: "),
            "{error}"
        );
    }

    #[test]
    fn a_public_address_needs_a_real_secret() {
        let public = |secret: &str, listen: &str| {
            let mut config = PushConfig::default();
            config.auth.jwt_secret = secret.to_owned();
            config.settings.listen = listen.parse().expect("address");
            config.validate()
        };
        // Loopback (v4 and v6) may use anything.
        assert!(public(DEV_JWT_SECRET, "127.0.0.1:8080").is_ok());
        assert!(public("short", "[::1]:8080").is_ok());
        // Anywhere else: not the development secret, not under 32 bytes.
        for listen in ["0.0.0.0:8080", "10.1.2.3:8080", "[::]:8080"] {
            let error = public(DEV_JWT_SECRET, listen).expect_err("dev secret");
            let text = error.to_string();
            assert!(text.starts_with("auth.jwt_secret: "), "{text}");
            assert!(text.contains("development secret"), "{text}");
            let error = public(&"x".repeat(31), listen).expect_err("31 bytes");
            assert!(error.to_string().contains("31 bytes"), "{error}");
            assert!(public(&"x".repeat(32), listen).is_ok());
        }
    }

    #[test]
    fn an_unknown_key_fails_to_deserialize() {
        let error = parse("ping_interval = 5").expect_err("a typo is an error");
        assert!(error.to_string().contains("ping_interval"), "{error}");
        // Connection settings belong to their own sections now.
        assert!(parse("brokers = \"b:1\"").is_err());
    }
}
