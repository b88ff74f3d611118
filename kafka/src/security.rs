//! How clients reach the brokers: encryption (TLS, optionally with a client certificate)
//! and authentication (SASL/SCRAM), applied by [`crate::client_config`] to every client.
//!
//! librdkafka does the work (built against the system's OpenSSL, the rdkafka crate's `ssl`
//! feature); this only names the settings once, so a stage, a test or a bench cannot build
//! a client that forgets them.

use std::fmt;
use std::path::PathBuf;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// librdkafka's `security.protocol`: whether the connection is encrypted and whether the
/// client logs in with SASL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// Neither (the local `./dev` broker's main listener).
    #[default]
    #[serde(alias = "PLAINTEXT")]
    Plaintext,
    /// TLS; with a client certificate and key this is mutual TLS (the broker maps the
    /// certificate's subject to a principal).
    #[serde(alias = "SSL")]
    Ssl,
    /// SASL login over plain TCP (only for networks that are otherwise protected).
    #[serde(alias = "SASL_PLAINTEXT")]
    SaslPlaintext,
    /// SASL login over TLS: the usual setting for a managed or shared cluster.
    #[serde(alias = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is encrypted (so TLS files mean something).
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether the client logs in with SASL (so SASL credentials are needed).
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// The SASL mechanisms this build supports (no GSSAPI/Kerberos, no OAUTHBEARER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// Salted challenge-response with SHA-512: the password never crosses the wire.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// The same with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// The password itself, protected only by TLS (some managed clusters want it).
    #[serde(rename = "PLAIN")]
    Plain,
}

impl SaslMechanism {
    /// The value librdkafka expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScramSha512 => "SCRAM-SHA-512",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::Plain => "PLAIN",
        }
    }
}

/// A SASL login. `Debug` never prints the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SaslLogin {
    /// How to log in.
    pub mechanism: SaslMechanism,
    /// The user.
    pub username: String,
    /// The password (from `KAFKA_SASL_PASSWORD` or a mounted Secret, not the image).
    pub password: String,
}

impl fmt::Debug for SaslLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Encryption and authentication towards the brokers, for every client alike. The default
/// is plaintext without a login, the local `./dev` broker's main listener. Checked for
/// consistency by the binary's configuration (`kafka.*` keys) before anything connects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// Encrypted and/or logged in.
    pub protocol: SecurityProtocol,
    /// PEM file of the CA(s) the brokers' certificates are verified against; the system's
    /// trust store without it. The broker's host name is always checked against its
    /// certificate (librdkafka's `ssl.endpoint.identification.algorithm=https`).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (a file, mounted from a Secret: only its path is
    /// ever in the configuration).
    pub key_file: Option<PathBuf>,
    /// The SASL login, for the `sasl_*` protocols.
    pub sasl: Option<SaslLogin>,
}

impl KafkaSecurity {
    /// Sets librdkafka's properties for these settings on `config`.
    pub(crate) fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_tls() {
            config.set("ssl.endpoint.identification.algorithm", "https");
            let files = [
                ("ssl.ca.location", &self.ca_file),
                ("ssl.certificate.location", &self.cert_file),
                ("ssl.key.location", &self.key_file),
            ];
            for (key, path) in files {
                if let Some(path) = path {
                    config.set(key, path.to_string_lossy());
                }
            }
        }
        if let (true, Some(login)) = (self.protocol.uses_sasl(), &self.sasl) {
            config
                .set("sasl.mechanism", login.mechanism.as_str())
                .set("sasl.username", &login.username)
                .set("sasl.password", &login.password);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_ssl() -> KafkaSecurity {
        KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            ca_file: Some("/ca.pem".into()),
            cert_file: None,
            key_file: None,
            sasl: Some(SaslLogin {
                mechanism: SaslMechanism::ScramSha512,
                username: "strikeflow".into(),
                password: "hunter2-secret".into(),
            }),
        }
    }

    #[test]
    fn sasl_ssl_sets_librdkafkas_properties() {
        let mut config = ClientConfig::new();
        sasl_ssl().apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(config.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(
            config.get("ssl.endpoint.identification.algorithm"),
            Some("https")
        );
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("strikeflow"));
        assert_eq!(config.get("sasl.password"), Some("hunter2-secret"));
        assert_eq!(config.get("ssl.certificate.location"), None);
    }

    #[test]
    fn plaintext_sets_no_tls_or_sasl_property() {
        let mut config = ClientConfig::new();
        KafkaSecurity::default().apply(&mut config);
        assert_eq!(config.get("security.protocol"), Some("plaintext"));
        assert_eq!(config.get("ssl.ca.location"), None);
        assert_eq!(config.get("sasl.password"), None);
    }

    #[test]
    fn debug_never_prints_the_password() {
        let shown = format!("{:?}", sasl_ssl());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}
