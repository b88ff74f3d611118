//! What the sink is told: where things are ([`SinkConfig`]) and how to batch
//! ([`SinkSettings`], the `[sink]` section of the configuration file).

use serde::Deserialize;
use strikeflow_kafka::{KafkaConnection, RegistryConnection};

use crate::{SinkError, Source};

/// The sink's tuning, as written in the `[sink]` section. Connection settings are not here
/// (they are shared by every stage; see [`SinkConfig`]), and an unknown key is an error, so
/// a misspelt setting is reported instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkSettings {
    /// Names this sink's rows in `sink_offsets`, so several sinks can share a database.
    pub consumer_name: String,
    /// Most messages per transaction.
    pub batch_rows: usize,
    /// Longest wait to fill a batch once its first message arrived, in milliseconds.
    pub batch_wait_ms: u64,
    /// Which outputs this sink stores (all by default). Scaling out is by giving each of
    /// several sinks, with different `consumer_name`s, its own share of the topics: each
    /// stores its own offsets, so none depends on another (see docs/sql.md, "More than one
    /// sink").
    pub topics: Vec<Source>,
    /// Longest pause between attempts to reach PostgreSQL again after losing it, in seconds
    /// (the pause doubles from 0.5 s per failed attempt up to this).
    pub max_backoff_secs: u64,
}

impl Default for SinkSettings {
    fn default() -> Self {
        Self {
            consumer_name: "sink".into(),
            batch_rows: 20_000,
            batch_wait_ms: 200,
            topics: Source::ALL.to_vec(),
            max_backoff_secs: 30,
        }
    }
}

impl SinkSettings {
    /// Checks the values before anything connects, so a bad file fails at once with the
    /// key named (`sink.<key>: <reason>`).
    pub fn validate(&self) -> Result<(), SinkError> {
        let invalid = |key, reason| Err(SinkError::Config { key, reason });
        if self.consumer_name.trim().is_empty() {
            return invalid("consumer_name", "must not be empty");
        }
        if self.batch_rows == 0 {
            return invalid("batch_rows", "must be at least 1");
        }
        if self.batch_wait_ms == 0 {
            return invalid("batch_wait_ms", "must be at least 1");
        }
        if self.topics.is_empty() {
            return invalid("topics", "must name at least one output to store");
        }
        if (1..self.topics.len()).any(|i| self.topics[..i].contains(&self.topics[i])) {
            return invalid("topics", "names an output twice");
        }
        if self.max_backoff_secs == 0 {
            return invalid("max_backoff_secs", "must be at least 1");
        }
        Ok(())
    }
}

/// Everything the sink needs to run: the shared connection settings and its own tuning.
/// Built by the binary from `[kafka]`, `[database]` and `[sink]`; not read from a file
/// as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkConfig {
    /// Brokers and topic names.
    pub kafka: KafkaConnection,
    /// The schema registry (`[registry]`) Confluent-framed records' ids are resolved from;
    /// `None`: such records are dead-lettered as undecodable.
    pub registry: Option<RegistryConnection>,
    /// PostgreSQL connection string.
    pub database_url: String,
    /// Batching and naming.
    pub settings: SinkSettings,
}

impl Default for SinkConfig {
    /// The local services of `./dev up`.
    fn default() -> Self {
        Self {
            kafka: KafkaConnection::default(),
            registry: None,
            database_url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".into(),
            settings: SinkSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::*;

    fn parse(toml: &str) -> Result<SinkSettings, Box<figment::Error>> {
        Figment::from(Toml::string(toml))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn the_defaults_validate() {
        assert!(SinkSettings::default().validate().is_ok());
        assert_eq!(parse("").expect("empty is fine"), SinkSettings::default());
    }

    #[test]
    fn a_partial_section_takes_the_rest_from_the_defaults() {
        let settings = parse("batch_rows = 7").expect("parsed");
        assert_eq!(settings.batch_rows, 7);
        assert_eq!(settings.batch_wait_ms, 200);
        assert_eq!(settings.consumer_name, "sink");
    }

    #[test]
    fn a_bad_value_fails_naming_its_key() {
        for (toml, key) in [
            ("batch_rows = 0", "sink.batch_rows: "),
            ("batch_wait_ms = 0", "sink.batch_wait_ms: "),
            ("consumer_name = \" \"", "sink.consumer_name: "),
            ("topics = []", "sink.topics: "),
            ("topics = [\"ticks\", \"bars\", \"ticks\"]", "sink.topics: "),
            ("max_backoff_secs = 0", "sink.max_backoff_secs: "),
        ] {
            let error = parse(toml)
                .expect("parsed")
                .validate()
                .expect_err("invalid");
            assert!(error.to_string().starts_with(key), "{toml}: {error}");
        }
    }

    #[test]
    fn a_share_of_the_topics_is_named_by_output() {
        let settings = parse("topics = [\"ticks\", \"late_ticks\"]").expect("parsed");
        assert_eq!(settings.topics, [Source::Ticks, Source::Late]);
        assert!(settings.validate().is_ok());
        let error = parse("topics = [\"tick\"]").expect_err("an unknown output is an error");
        assert!(error.to_string().contains("tick"), "{error}");
    }

    #[test]
    fn an_unknown_key_fails_to_deserialize() {
        let error = parse("batch_row = 5000").expect_err("a typo is an error");
        assert!(error.to_string().contains("batch_row"), "{error}");
    }

    #[test]
    fn default_config_is_the_dev_setup() {
        let config = SinkConfig::default();
        assert_eq!(config.kafka.brokers.bootstrap, "127.0.0.1:19092");
        assert_eq!(
            config.database_url,
            "postgres://strikeflow@127.0.0.1:15432/strikeflow"
        );
    }
}
