//! The security side of the connection sections: `[kafka]`'s TLS/SASL keys turned into the
//! Kafka crate's settings and checked, the TLS parameters of `[database] url` and
//! `[redis] url` checked by building their connectors (CA files read now), and `Debug` for
//! the three sections without their secrets, so a configuration dump or a log line never
//! shows a password.

use std::fmt;
use std::path::{Path, PathBuf};

use strikeflow_kafka::{Brokers, KafkaSecurity, SaslLogin};

use super::{ConfigError, DatabaseSection, KafkaSection, RedisSection};

impl KafkaSection {
    /// The brokers with this section's security settings, as every Kafka client takes them.
    pub fn brokers(&self) -> Brokers {
        let file = |path: &str| (!path.trim().is_empty()).then(|| PathBuf::from(path.trim()));
        let protocol = self.security_protocol;
        Brokers {
            bootstrap: self.brokers.clone(),
            security: KafkaSecurity {
                protocol,
                ca_file: file(&self.ssl_ca_file),
                cert_file: file(&self.ssl_cert_file),
                key_file: file(&self.ssl_key_file),
                sasl: protocol.uses_sasl().then(|| SaslLogin {
                    mechanism: self.sasl_mechanism,
                    username: self.sasl_username.clone(),
                    password: self.sasl_password.clone(),
                }),
            },
        }
    }

    /// TLS files only with a TLS protocol, and readable; a client certificate with its key;
    /// a SASL login complete with a SASL protocol and absent otherwise. A setting that the
    /// protocol would ignore is an error, not a silent downgrade.
    pub(super) fn validate_security(&self) -> Result<(), ConfigError> {
        let protocol = self.security_protocol;
        let files = [
            ("kafka.ssl_ca_file", &self.ssl_ca_file),
            ("kafka.ssl_cert_file", &self.ssl_cert_file),
            ("kafka.ssl_key_file", &self.ssl_key_file),
        ];
        for (key, path) in files {
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            if !protocol.uses_tls() {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "is set but kafka.security_protocol is {}, which does not use TLS \
                         (ssl or sasl_ssl)",
                        protocol.as_str()
                    ),
                ));
            }
            readable_file(key, Path::new(path))?;
        }
        let (cert, key) = (self.ssl_cert_file.trim(), self.ssl_key_file.trim());
        if cert.is_empty() != key.is_empty() {
            let (missing, given) = if cert.is_empty() {
                ("kafka.ssl_cert_file", "kafka.ssl_key_file")
            } else {
                ("kafka.ssl_key_file", "kafka.ssl_cert_file")
            };
            return Err(ConfigError::invalid(
                missing,
                format!("is empty but {given} is set: mutual TLS needs both"),
            ));
        }
        let login = [
            ("kafka.sasl_username", &self.sasl_username),
            ("kafka.sasl_password", &self.sasl_password),
        ];
        for (key, value) in login {
            if protocol.uses_sasl() && value.is_empty() {
                let hint = if key == "kafka.sasl_password" {
                    " (set KAFKA_SASL_PASSWORD)"
                } else {
                    ""
                };
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "is empty but kafka.security_protocol {} logs in with SASL{hint}",
                        protocol.as_str()
                    ),
                ));
            }
            if !protocol.uses_sasl() && !value.is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "is set but kafka.security_protocol is {}, which does not log in \
                         (sasl_ssl or sasl_plaintext)",
                        protocol.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A file the process can open now (so a missing CA or key fails at start, named).
fn readable_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))
}

/// `[database] url` with its TLS parameters (`sslmode`, `sslrootcert`): the connector is
/// built, so an unknown mode or a missing, unreadable or empty CA file is refused here.
pub(super) fn check_database_tls(url: &str) -> Result<(), ConfigError> {
    strikeflow_tls::postgres(url)
        .map(drop)
        .map_err(|e| ConfigError::invalid("database.url", e.to_string()))
}

/// `[redis] url`, `rediss://` with its `sslrootcert` included.
pub(super) fn check_redis_tls(url: &str) -> Result<(), ConfigError> {
    strikeflow_tls::redis_client(url)
        .map(drop)
        .map_err(|e| ConfigError::invalid("redis.url", e.to_string()))
}

/// A connection string without its password: `scheme://user:secret@host` keeps the user,
/// libpq's `password=secret` becomes `password=***`.
pub fn redact_url(url: &str) -> String {
    if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) {
        if at > scheme {
            let userinfo = &url[scheme + 3..at];
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{}{user}:***@{}", &url[..scheme + 3], &url[at + 1..]);
            }
        }
        return url.to_owned();
    }
    url.split_whitespace()
        .map(|word| match word.split_once('=') {
            Some(("password", _)) => "password=***",
            _ => word,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Debug for KafkaSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let password = if self.sasl_password.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("KafkaSection")
            .field("brokers", &self.brokers)
            .field("topic_prefix", &self.topic_prefix)
            .field("replication", &self.replication)
            .field("security_protocol", &self.security_protocol)
            .field("ssl_ca_file", &self.ssl_ca_file)
            .field("ssl_cert_file", &self.ssl_cert_file)
            .field("ssl_key_file", &self.ssl_key_file)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &password)
            .finish()
    }
}

impl fmt::Debug for DatabaseSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSection")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

impl fmt::Debug for RedisSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSection")
            .field("url", &redact_url(&self.url))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    // figment::Jail's closures return figment's own (large) error type.
    #![allow(clippy::result_large_err)]

    use std::path::Path;

    use figment::Jail;
    use strikeflow_kafka::{SaslMechanism, SecurityProtocol};

    use super::*;
    use crate::Config;

    /// A self-signed CA certificate (public, no key kept): what a CA file holds.
    const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
MIIBnjCCAUWgAwIBAgIUDt5f0uJhVZKgwGOX+BCUbtwgJUUwCgYIKoZIzj0EAwIw\n\
JDEiMCAGA1UEAwwZc3RyaWtlZmxvdyBjb25maWcgdGVzdCBDQTAgFw0yNjEyMDEy\n\
MzE2MzVaGA8yMTI2MTEwNzIzMTYzNVowJDEiMCAGA1UEAwwZc3RyaWtlZmxvdyBj\n\
b25maWcgdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABH7J+ThiI1wU\n\
ZjR+NZaDc5XbXxX7TE2NwewldUpfmhrCZ/oRsLwJEMeifyHR7S6ht3LwOR4D7Lsu\n\
MSb573PgGNSjUzBRMB0GA1UdDgQWBBQxi9NeT6ZfaZmxCO+Q1BJJ/fPo+zAfBgNV\n\
HSMEGDAWgBQxi9NeT6ZfaZmxCO+Q1BJJ/fPo+zAPBgNVHRMBAf8EBTADAQH/MAoG\n\
CCqGSM49BAMCA0cAMEQCIFWvd1nt6cwNV2YdbwuCINVm0S0w07DnJ4uOvaiNTP9N\n\
AiAgPDLjiE36FijAeKmzw3fxUuQDoA25eZpNKLcoQQtr9Q==\n\
-----END CERTIFICATE-----\n";

    /// `custom.toml` with `text` (and `ca.pem`, `client.pem`, `client.key` beside it) loaded
    /// and validated in a jail with only `env` set; the message when refused.
    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        let mut outcome = Err(String::new());
        Jail::expect_with(|jail| {
            jail.clear_env();
            for file in ["ca.pem", "client.pem", "client.key"] {
                jail.create_file(file, CA_PEM)?;
            }
            for (name, value) in env {
                jail.set_env(name, value);
            }
            jail.create_file("custom.toml", text)?;
            outcome = Config::load(Some(Path::new("custom.toml")))
                .and_then(|config| config.validate().map(|()| config))
                .map_err(|e| e.to_string());
            Ok(())
        });
        outcome
    }

    fn refusal(text: &str) -> String {
        load(text, &[])
            .err()
            .unwrap_or_else(|| panic!("{text:?} was accepted"))
    }

    #[test]
    fn sasl_ssl_keys_and_the_password_variable_reach_every_client() {
        let config = load(
            "[kafka]\nsecurity_protocol = \"sasl_ssl\"\nssl_ca_file = \"ca.pem\"\n\
             sasl_mechanism = \"SCRAM-SHA-256\"\nsasl_username = \"sf\"\n",
            &[("KAFKA_SASL_PASSWORD", "from-a-secret")],
        )
        .expect("valid");
        let security = config.kafka_connection().brokers.security;
        assert_eq!(security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(security.ca_file.as_deref(), Some(Path::new("ca.pem")));
        let login = security.sasl.expect("a login");
        assert_eq!(login.mechanism, SaslMechanism::ScramSha256);
        assert_eq!(login.username, "sf");
        assert_eq!(login.password, "from-a-secret");
        assert_eq!(config.sink().kafka, config.kafka_connection());
        assert_eq!(config.simulate().brokers, config.kafka_connection().brokers);

        let mtls = load(
            "[kafka]\nsecurity_protocol = \"ssl\"\nssl_cert_file = \"client.pem\"\n\
             ssl_key_file = \"client.key\"\n",
            &[],
        )
        .expect("valid");
        let security = mtls.kafka.brokers().security;
        assert_eq!(security.key_file.as_deref(), Some(Path::new("client.key")));
        assert_eq!(security.sasl, None);
    }

    #[test]
    fn inconsistent_or_missing_security_settings_are_refused_by_key() {
        let cases = [
            ("security_protocol = \"tls\"", "kafka.security_protocol"),
            (
                "security_protocol = \"ssl\"\nssl_ca_file = \"missing.pem\"",
                "kafka.ssl_ca_file",
            ),
            ("ssl_ca_file = \"ca.pem\"", "kafka.ssl_ca_file"),
            (
                "security_protocol = \"ssl\"\nssl_cert_file = \"client.pem\"",
                "kafka.ssl_key_file",
            ),
            (
                "security_protocol = \"sasl_ssl\"\nsasl_username = \"u\"",
                "kafka.sasl_password",
            ),
            (
                "security_protocol = \"sasl_ssl\"\nsasl_password = \"p\"",
                "kafka.sasl_username",
            ),
            ("sasl_password = \"p\"", "kafka.sasl_password"),
            (
                "security_protocol = \"sasl_ssl\"\nsasl_mechanism = \"GSSAPI\"",
                "kafka.sasl_mechanism",
            ),
        ];
        for (keys, named) in cases {
            let message = refusal(&format!("[kafka]\n{keys}\n"));
            assert!(message.contains(named), "{keys:?}: {message}");
        }
        let message = refusal("[kafka]\nsecurity_protocol = \"sasl_ssl\"\nsasl_username = \"u\"\n");
        assert!(message.contains("KAFKA_SASL_PASSWORD"), "{message}");
    }

    #[test]
    fn tls_parameters_of_the_database_and_redis_urls_are_checked_at_start() {
        let message = refusal(
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify-full&sslrootcert=missing.pem\"\n",
        );
        assert!(message.starts_with("database.url"), "{message}");
        assert!(message.contains("missing.pem"), "{message}");
        let message = refusal("[database]\nurl = \"postgres://u@h/db?sslmode=verify\"\n");
        assert!(message.starts_with("database.url"), "{message}");
        let message = refusal("[redis]\nurl = \"redis://h:6379/?sslrootcert=ca.pem\"\n");
        assert!(message.starts_with("redis.url"), "{message}");
        let message = refusal("[redis]\nurl = \"rediss://h:6380/?sslrootcert=missing.pem\"\n");
        assert!(message.starts_with("redis.url"), "{message}");
        load(
            "[database]\nurl = \"postgres://u@h/db?sslmode=verify-full&sslrootcert=ca.pem\"\n\
             [redis]\nurl = \"rediss://h:6380/?sslrootcert=ca.pem\"\n",
            &[],
        )
        .expect("TLS URLs with a CA file are valid");
    }

    #[test]
    fn redaction_keeps_the_user_and_hides_the_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db?sslmode=verify-full"),
            "postgres://u:***@h:5432/db?sslmode=verify-full"
        );
        assert_eq!(
            redact_url("rediss://:secret@h:6380"),
            "rediss://:***@h:6380"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("host=h user=u password=secret"),
            "host=h user=u password=***"
        );
    }
}
