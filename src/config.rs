//! Configuration: compiled-in defaults pointing at the local services of `./dev up`, then a
//! TOML file, then environment variables.
//!
//! Connection settings live in one place (`[kafka]`, `[database]`, `[redis]`, `[auth]`) and
//! are combined with each stage's own section (only its tuning) by the accessors below.
//! Every section refuses keys it does not know, so a typo is an error naming the key rather
//! than a setting silently left at its default; [`Config::validate`] then checks the values.

mod error;
mod registry;
mod security;

pub use security::redact_url;
mod validate;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::Path;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::Deserialize;
use strikeflow_api::{ApiConfig, ApiSettings};
use strikeflow_ingest::{SimulateConfig, SimulatorConfig};
use strikeflow_kafka::{KafkaConnection, SaslMechanism, SecurityProtocol};
use strikeflow_processors::{ProcessorConfig, ProcessorSettings};
use strikeflow_push::{AuthSettings, PushConfig, PushSettings};
use strikeflow_schemas::Topics;
use strikeflow_sink::{SinkConfig, SinkSettings};

pub use error::ConfigError;
pub use registry::RegistrySection;

/// The whole configuration of a strikeflow deployment.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Kafka connection and topic naming.
    pub kafka: KafkaSection,
    /// PostgreSQL / TimescaleDB.
    pub database: DatabaseSection,
    /// Redis (push: latest-value snapshots, revoked tokens, per-user connection counts; api:
    /// the answer cache).
    pub redis: RedisSection,
    /// Token keys and claim requirements (push and the API verify, `token` mints); the
    /// API expects its own audience, `api.audience`.
    pub auth: AuthSettings,
    /// Logs and metrics.
    pub telemetry: TelemetrySection,
    /// The simulator used by `ingest simulate` and `run`.
    pub simulate: SimulateSection,
    /// Processor tuning.
    pub processor: ProcessorSettings,
    /// Sink tuning.
    pub sink: SinkSettings,
    /// Push server tuning.
    pub push: PushSettings,
    /// Query API tuning: listener, pool, token audience and scope, CORS, rate limits, cache.
    pub api: ApiSettings,
    /// The schema registry and the producers' wire format.
    pub registry: RegistrySection,
}

/// `[kafka]`: where the brokers are, how to reach them securely and how topics are named,
/// for every stage. `Debug` redacts the SASL password (src/config/security.rs).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap servers (env `KAFKA_BROKERS`).
    pub brokers: String,
    /// Prepended to every topic name, to run several deployments on one cluster.
    pub topic_prefix: String,
    /// Replication factor of topics created by `strikeflow migrate`.
    pub replication: i32,
    /// `plaintext`, `ssl` (TLS; mutual TLS with `ssl_cert_file` and `ssl_key_file`),
    /// `sasl_ssl` or `sasl_plaintext`.
    pub security_protocol: SecurityProtocol,
    /// PEM file of the CA the brokers' certificates are verified against; empty: the
    /// system's trust store.
    pub ssl_ca_file: String,
    /// PEM client certificate for mutual TLS (empty: none).
    pub ssl_cert_file: String,
    /// PEM private key of `ssl_cert_file` (mounted from a Secret).
    pub ssl_key_file: String,
    /// `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`, for the `sasl_*` protocols.
    pub sasl_mechanism: SaslMechanism,
    /// SASL user.
    pub sasl_username: String,
    /// SASL password (env `KAFKA_SASL_PASSWORD`; keep it out of files in images).
    pub sasl_password: String,
}

impl Default for KafkaSection {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".into(),
            topic_prefix: String::new(),
            replication: 1,
            security_protocol: SecurityProtocol::Plaintext,
            ssl_ca_file: String::new(),
            ssl_cert_file: String::new(),
            ssl_key_file: String::new(),
            sasl_mechanism: SaslMechanism::ScramSha512,
            sasl_username: String::new(),
            sasl_password: String::new(),
        }
    }
}

/// `[database]`: the PostgreSQL the sink writes to and push checks for readiness.
/// `Debug` redacts the URL's password.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSection {
    /// Connection string (env `DATABASE_URL`). TLS as in libpq: `sslmode=verify-full` (or
    /// `verify-ca`, `require`) with `sslrootcert=/path/ca.pem` (strikeflow-tls).
    pub url: String,
}

impl Default for DatabaseSection {
    fn default() -> Self {
        Self {
            url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".into(),
        }
    }
}

/// `[redis]`: where push keeps the latest value of each channel for new subscribers, the
/// revoked token ids and each user's connections across push nodes, and where the API
/// caches hot answers. `Debug` redacts the URL's password.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// Connection URL (env `REDIS_URL`); `rediss://…?sslrootcert=/path/ca.pem` for TLS.
    pub url: String,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:16379".into(),
        }
    }
}

/// `[telemetry]`: logs and metrics, which every subcommand sets up the same way.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

/// `[simulate]`: how fast the simulated market is published; `[simulate.market]` is the
/// market itself (a table of its own, so each side can refuse keys it does not know).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulateSection {
    /// Ticks per second of wall time; 0 = as fast as Kafka takes them.
    pub rate: f64,
    /// Stop after this many ticks; 0 = run until stopped.
    pub max_ticks: u64,
    /// The simulated market.
    pub market: SimulatorConfig,
}

impl Default for SimulateSection {
    fn default() -> Self {
        Self {
            rate: 2_000.0,
            max_ticks: 0,
            market: SimulatorConfig::default(),
        }
    }
}

/// Variables under the `STRIKEFLOW_` prefix that are not settings: the binary's
/// `--config` flag, the secret's conventional name (mapped below) and the tests' Python.
const NOT_SETTINGS: &[&str] = &["CONFIG", "JWT_SECRET", "PYTHON"];

/// Conventional variable names and the keys they set; they win over everything else.
const CONVENTIONAL_VARS: &[(&str, &str)] = &[
    ("KAFKA_BROKERS", "kafka.brokers"),
    ("KAFKA_SASL_PASSWORD", "kafka.sasl_password"),
    ("DATABASE_URL", "database.url"),
    ("REDIS_URL", "redis.url"),
    ("SCHEMA_REGISTRY_URL", "registry.url"),
    ("STRIKEFLOW_JWT_SECRET", "auth.jwt_secret"),
];

/// The generic overrides: `STRIKEFLOW_SINK__BATCH_ROWS=5000` sets `[sink] batch_rows`.
fn settings_env() -> Env {
    Env::prefixed("STRIKEFLOW_")
        .split("__")
        .ignore(NOT_SETTINGS)
}

impl Config {
    /// Loads defaults, then `path` (if given, it must exist; otherwise `strikeflow.toml` in
    /// the working directory when present), then the environment. Unknown keys and values
    /// of the wrong type are errors naming the key and where it came from; call
    /// [`Config::validate`] next for the values' ranges.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::new();
        match path {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None => figment = figment.merge(Toml::file("strikeflow.toml")),
        }
        figment = figment.merge(settings_env());
        for (var, key) in CONVENTIONAL_VARS {
            if let Ok(value) = std::env::var(var) {
                figment = figment.merge(Serialized::global(key, value));
            }
        }
        figment.extract().map_err(ConfigError::load)
    }

    /// Topic names of this deployment.
    pub fn topics(&self) -> Topics {
        Topics::new(self.kafka.topic_prefix.clone())
    }

    /// Where Kafka is, as every stage needs it.
    pub fn kafka_connection(&self) -> KafkaConnection {
        KafkaConnection {
            brokers: self.kafka.brokers(),
            topics: self.topics(),
        }
    }

    /// The processor stage's configuration.
    pub fn processor(&self) -> ProcessorConfig {
        ProcessorConfig {
            kafka: self.kafka_connection(),
            registry: self.registry_connection(),
            settings: self.processor.clone(),
        }
    }

    /// The sink stage's configuration.
    pub fn sink(&self) -> SinkConfig {
        SinkConfig {
            kafka: self.kafka_connection(),
            registry: self.registry_connection(),
            database_url: self.database.url.clone(),
            settings: self.sink.clone(),
        }
    }

    /// The push stage's configuration.
    pub fn push(&self) -> PushConfig {
        PushConfig {
            kafka: self.kafka_connection(),
            registry: self.registry_connection(),
            database_url: self.database.url.clone(),
            redis_url: self.redis.url.clone(),
            auth: self.auth.clone(),
            settings: self.push.clone(),
        }
    }

    /// The API stage's configuration: `[database]`, `[redis]` and `[auth]` (its keys,
    /// issuer and leeway; the audience is `api.audience`) with `[api]`.
    pub fn api(&self) -> ApiConfig {
        ApiConfig {
            database_url: self.database.url.clone(),
            redis_url: self.redis.url.clone(),
            auth: self.auth.clone(),
            settings: self.api.clone(),
        }
    }

    /// The simulator's configuration.
    pub fn simulate(&self) -> SimulateConfig {
        SimulateConfig {
            brokers: self.kafka.brokers(),
            topics: self.topics(),
            registry: self.registry_connection(),
            simulator: self.simulate.market.clone(),
            max_ticks: (self.simulate.max_ticks > 0).then_some(self.simulate.max_ticks),
            rate: (self.simulate.rate > 0.0).then_some(self.simulate.rate),
            record: None,
        }
    }
}
