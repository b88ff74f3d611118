//! `[registry]`: the Confluent-compatible schema registry (docs/formats.md) and which wire
//! format producers write.

use std::time::Duration;

use serde::Deserialize;
use strikeflow_kafka::RegistryConnection;
use strikeflow_schemas::Encoding;

use super::{Config, ConfigError};

/// `[registry]`: where the schema registry is (env `SCHEMA_REGISTRY_URL`) and what the
/// producers write. Without a URL every producer writes single-object Avro and needs no
/// registry; with one, Confluent framing is the default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySection {
    /// Base URL of the Confluent-compatible API, e.g.
    /// `http://127.0.0.1:18081/apis/ccompat/v7` (Apicurio); empty: no registry.
    pub url: String,
    /// `confluent` or `single-object`; unset: `confluent` when `url` is set, else
    /// `single-object`.
    pub encoding: Option<Encoding>,
    /// Limit of one registry request, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for RegistrySection {
    fn default() -> Self {
        Self {
            url: String::new(),
            encoding: None,
            timeout_ms: 5_000,
        }
    }
}

impl Config {
    /// The registry every stage uses, or `None` when no URL is configured.
    pub fn registry_connection(&self) -> Option<RegistryConnection> {
        let url = self.registry.url.trim();
        if url.is_empty() {
            return None;
        }
        Some(RegistryConnection {
            url: url.to_owned(),
            timeout: Duration::from_millis(self.registry.timeout_ms),
            encoding: self.registry.encoding.unwrap_or(Encoding::Confluent),
        })
    }

    /// `[registry]`: a usable URL, an encoding that has what it needs, a timeout.
    pub(super) fn validate_registry(&self) -> Result<(), ConfigError> {
        let registry = &self.registry;
        let url = registry.url.trim();
        if url.is_empty() {
            if registry.encoding == Some(Encoding::Confluent) {
                return Err(ConfigError::invalid(
                    "registry.encoding",
                    "confluent needs a schema registry: set registry.url (or SCHEMA_REGISTRY_URL)",
                ));
            }
        } else {
            // The client's own parser, so what passes here connects later.
            strikeflow_kafka::Registry::new(self.registry_connection().as_ref())
                .map_err(|e| ConfigError::invalid("registry.url", e.to_string()))?;
        }
        if !(1..=600_000).contains(&registry.timeout_ms) {
            return Err(ConfigError::invalid(
                "registry.timeout_ms",
                "must be between 1 and 600000 milliseconds",
            ));
        }
        Ok(())
    }
}
