//! Configuration: compiled-in defaults pointing at the local services of `./dev up`, then a
//! TOML file, then environment variables.
//!
//! Connection settings live in one place (`[kafka]`, `[database]`, `[redis]`, `[auth]`) and
//! are copied into each stage's own configuration by the accessors below, so a stage
//! section only carries that stage's tuning.

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use strikeflow_ingest::{SimulateConfig, SimulatorConfig};
use strikeflow_processors::ProcessorConfig;
use strikeflow_push::PushConfig;
use strikeflow_schemas::Topics;
use strikeflow_sink::SinkConfig;

/// The whole configuration of a strikeflow deployment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Kafka connection and topic naming.
    pub kafka: KafkaSection,
    /// PostgreSQL / TimescaleDB.
    pub database: DatabaseSection,
    /// Redis (latest-value snapshots for the push stage).
    pub redis: RedisSection,
    /// Token signing for the WebSocket and REST API.
    pub auth: AuthSection,
    /// Logs and metrics.
    pub telemetry: TelemetrySection,
    /// The simulator used by `ingest simulate` and `run`.
    pub simulate: SimulateSection,
    /// Processor tuning (connection fields here are ignored: `[kafka]` wins).
    pub processor: ProcessorConfig,
    /// Sink tuning (connection fields here are ignored).
    pub sink: SinkConfig,
    /// Push server settings (connection fields here are ignored).
    pub push: PushConfig,
}

/// `[kafka]`: where the brokers are and how topics are named.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct KafkaSection {
    /// Bootstrap servers (env `KAFKA_BROKERS`).
    pub brokers: String,
    /// Prepended to every topic name, to run several deployments on one cluster.
    pub topic_prefix: String,
    /// Replication factor of topics created by `strikeflow migrate`.
    pub replication: i32,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".into(),
            topic_prefix: String::new(),
            replication: 1,
        }
    }
}

/// `[database]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DatabaseSection {
    /// Connection string (env `DATABASE_URL`).
    pub url: String,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".into(),
        }
    }
}

/// `[redis]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisSection {
    /// Connection URL (env `REDIS_URL`).
    pub url: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:16379".into(),
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSection {
    /// HS256 secret for client tokens (env `STRIKEFLOW_JWT_SECRET`). The default is for
    /// local development only.
    pub jwt_secret: String,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            jwt_secret: PushConfig::default().jwt_secret,
        }
    }
}

/// `[telemetry]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySection {
    /// Log filter in `RUST_LOG` syntax (env `RUST_LOG` wins).
    pub log: String,
    /// Where to serve Prometheus metrics (`/metrics`); set to an empty string to disable.
    #[serde(deserialize_with = "optional_addr")]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for TelemetrySection {
    fn default() -> Self {
        Self {
            log: "info".into(),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
        }
    }
}

/// An address, or an empty string for none.
fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(serde::de::Error::custom)
}

/// `[simulate]`: the simulated market and how fast it is published.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SimulateSection {
    /// The market itself.
    #[serde(flatten)]
    pub market: SimulatorConfig,
    /// Ticks per second of wall time; 0 = as fast as Kafka takes them.
    pub rate: f64,
    /// Stop after this many ticks; 0 = run until stopped.
    pub max_ticks: u64,
}

impl Default for SimulateSection {
    fn default() -> Self {
        Self {
            market: SimulatorConfig::default(),
            rate: 2_000.0,
            max_ticks: 0,
        }
    }
}

/// Why the configuration could not be read (boxed: figment's error is large and this is
/// returned once, at start-up).
pub type ConfigError = Box<figment::Error>;

impl Config {
    /// Loads defaults, then `path` (if given, it must exist; otherwise `strikeflow.toml` in
    /// the working directory when present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        match path {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("strikeflow.toml")),
        }
        // Generic overrides: STRIKEFLOW_SINK__BATCH_ROWS=5000 sets [sink] batch_rows.
        figment = figment.merge(Env::prefixed("STRIKEFLOW_").split("__").ignore(&[
            "CONFIG",
            "JWT_SECRET",
            "PYTHON",
        ]));
        // The conventional names win over everything else.
        for (var, key) in [
            ("KAFKA_BROKERS", "kafka.brokers"),
            ("DATABASE_URL", "database.url"),
            ("REDIS_URL", "redis.url"),
            ("STRIKEFLOW_JWT_SECRET", "auth.jwt_secret"),
        ] {
            if let Ok(value) = std::env::var(var) {
                figment = figment.merge(Serialized::global(key, value));
            }
        }
        figment.extract().map_err(Box::new)
    }

    /// Topic names of this deployment.
    pub fn topics(&self) -> Topics {
        Topics::new(self.kafka.topic_prefix.clone())
    }

    /// The processor stage's configuration.
    pub fn processor(&self) -> ProcessorConfig {
        ProcessorConfig {
            brokers: self.kafka.brokers.clone(),
            topics: self.topics(),
            ..self.processor.clone()
        }
    }

    /// The sink stage's configuration.
    pub fn sink(&self) -> SinkConfig {
        SinkConfig {
            brokers: self.kafka.brokers.clone(),
            topics: self.topics(),
            database_url: self.database.url.clone(),
            ..self.sink.clone()
        }
    }

    /// The push stage's configuration.
    pub fn push(&self) -> PushConfig {
        PushConfig {
            brokers: self.kafka.brokers.clone(),
            topics: self.topics(),
            database_url: self.database.url.clone(),
            redis_url: self.redis.url.clone(),
            jwt_secret: self.auth.jwt_secret.clone(),
            ..self.push.clone()
        }
    }

    /// The simulator's configuration.
    pub fn simulate(&self) -> SimulateConfig {
        SimulateConfig {
            brokers: self.kafka.brokers.clone(),
            topics: self.topics(),
            simulator: self.simulate.market.clone(),
            max_ticks: (self.simulate.max_ticks > 0).then_some(self.simulate.max_ticks),
            rate: (self.simulate.rate > 0.0).then_some(self.simulate.rate),
            record: None,
        }
    }
}

#[cfg(test)]
// figment::Jail's closures return figment's own (large) error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn file_then_env_override_defaults() {
        figment::Jail::expect_with(|jail| {
            // `./dev test` exports KAFKA_BROKERS and friends; this test sets its own.
            jail.clear_env();
            jail.create_file(
                "custom.toml",
                "[kafka]\nbrokers = \"file:9092\"\ntopic_prefix = \"demo.\"\n[sink]\nbatch_rows = 7\n",
            )?;
            jail.set_env("STRIKEFLOW_PROCESSOR__ALLOWED_LATENESS_MS", "1234");
            jail.set_env("DATABASE_URL", "postgres://elsewhere/db");
            let config = Config::load(Some(Path::new("custom.toml"))).map_err(|e| *e)?;
            assert_eq!(config.sink().brokers, "file:9092");
            assert_eq!(config.sink().batch_rows, 7);
            assert_eq!(config.sink().database_url, "postgres://elsewhere/db");
            assert_eq!(config.processor().allowed_lateness_ms, 1234);
            assert_eq!(config.processor().topics.ticks(), "demo.ticks.v1");
            Ok(())
        });
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            assert!(Config::load(Some(Path::new("nope.toml"))).is_err());
            Ok(())
        });
    }
}
