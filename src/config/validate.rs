//! Value checks of the whole configuration, run by `main` right after loading and before
//! anything connects, so a bad setting fails in milliseconds with its key named instead of
//! as a connection error (or a panic) somewhere inside a stage.

use tracing_subscriber::EnvFilter;

use super::{Config, ConfigError};

/// Kafka's limit on a topic name's length.
const MAX_TOPIC_NAME: usize = 249;

/// Room left for our longest topic name after the prefix (`processor-state.dlq.v1` and the
/// benchmarks' `bench-<millis>.` stay well inside it).
const LONGEST_TOPIC_SUFFIX: usize = 64;

impl Config {
    /// Checks every value: the connection sections here, then each stage's own settings.
    /// Each error names the key as written in the file and the reason.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_connections()?;
        self.validate_registry()?;
        EnvFilter::try_new(&self.telemetry.log)
            .map_err(|e| ConfigError::invalid("telemetry.log", format!("not a log filter: {e}")))?;
        let rate = self.simulate.rate;
        check(
            rate.is_finite() && rate >= 0.0,
            "simulate.rate",
            "must be a number of ticks per second, 0 or more",
        )?;
        self.simulate
            .market
            .validate()
            .map_err(ConfigError::stage)?;
        self.processor.validate().map_err(ConfigError::stage)?;
        self.sink.validate().map_err(ConfigError::stage)?;
        self.push.validate().map_err(ConfigError::stage)?;
        self.api.validate().map_err(ConfigError::stage)?;
        // The cache may not keep an answer longer than the processors take to emit a newer
        // one: no answer is served older than one emission interval.
        let emit_every_ms = self.processor.analytics.emit_every_ms;
        check(
            self.api.cache_ttl_ms <= emit_every_ms,
            "api.cache_ttl_ms",
            &format!(
                "must be at most processor.analytics.emit_every_ms ({emit_every_ms}): a cached \
                 answer may not outlive the emission interval (0 turns the cache off)"
            ),
        )?;
        Ok(())
    }

    /// `[kafka]`, `[database]`, `[redis]` and `[auth]`.
    fn validate_connections(&self) -> Result<(), ConfigError> {
        let kafka = &self.kafka;
        check(
            !kafka.brokers.trim().is_empty(),
            "kafka.brokers",
            "must name at least one broker (host:port)",
        )?;
        check(
            kafka.brokers.split(',').all(|b| !b.trim().is_empty()),
            "kafka.brokers",
            "has an empty entry in its comma-separated list",
        )?;
        check(
            kafka
                .topic_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "kafka.topic_prefix",
            "may only hold ASCII letters, digits, '.', '_' and '-' (Kafka's topic name characters)",
        )?;
        check(
            kafka.topic_prefix.len() + LONGEST_TOPIC_SUFFIX <= MAX_TOPIC_NAME,
            "kafka.topic_prefix",
            "is too long for Kafka's 249-character topic names",
        )?;
        check(
            kafka.replication >= 1,
            "kafka.replication",
            "must be at least 1",
        )?;
        kafka.validate_security()?;
        check_database_url(&self.database.url)?;
        check_redis_url(&self.redis.url)?;
        super::security::check_redis_tls(&self.redis.url)?;
        // Claim requirements, and every configured key file read and parsed.
        self.auth.validate().map_err(ConfigError::stage)
    }
}

/// A value that fails its test is refused with the key named.
fn check(ok: bool, key: &str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, reason))
    }
}

/// A PostgreSQL connection string: a `postgres://` / `postgresql://` URL or libpq's
/// `key=value` form, as every stage parses it when it connects (CA file included).
fn check_database_url(url: &str) -> Result<(), ConfigError> {
    const KEY: &str = "database.url";
    if let Some((scheme, _)) = url.split_once("://") {
        check(
            matches!(scheme, "postgres" | "postgresql"),
            KEY,
            "must be a postgres:// or postgresql:// URL",
        )?;
    }
    // Parsed with its TLS parameters (strikeflow-tls); the parser's message never repeats
    // the password, it says what it could not read.
    super::security::check_database_tls(url)
}

/// A Redis URL in one of the forms the redis crate accepts.
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    const KEY: &str = "redis.url";
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(ConfigError::invalid(
            KEY,
            "must be a URL such as redis://host:port",
        ));
    };
    check(
        matches!(scheme, "redis" | "rediss" | "unix" | "redis+unix"),
        KEY,
        "must be a redis://, rediss://, unix:// or redis+unix:// URL",
    )?;
    check(
        !rest.trim_start_matches('/').is_empty(),
        KEY,
        "names no host or socket path",
    )
}
