//! Where Kafka is, and every Kafka client configuration in the workspace, built in one place.
//!
//! The connection settings every stage shares live in [`KafkaConnection`], so stage
//! configurations carry only their own tuning. A stage, a test or a benchmark that talks to
//! Kafka starts from one of the builders here, so settings that matter for correctness
//! (idempotence, `read_committed`, never committing from a reader) are decided once instead
//! of at each call site.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use strikeflow_schemas::Topics;

use crate::KafkaSecurity;

/// Where the brokers are and how this deployment names its topics: the connection part of
/// every stage's configuration, kept apart from the stages' tuning so it is set once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConnection {
    /// The brokers and how to reach them.
    pub brokers: Brokers,
    /// Topic names (with the deployment's prefix).
    pub topics: Topics,
}

impl Default for KafkaConnection {
    /// The broker of `./dev up` and unprefixed topic names.
    fn default() -> Self {
        Self {
            brokers: Brokers::default(),
            topics: Topics::default(),
        }
    }
}

/// The brokers and how to reach them (TLS, client certificate, SASL login): what every
/// builder below takes, so no client can be built with the address but without the
/// security settings. `Display` shows only the address; `Debug` redacts the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brokers {
    /// Bootstrap servers, `host:port[,host:port…]`.
    pub bootstrap: String,
    /// Encryption and authentication.
    pub security: KafkaSecurity,
}

impl Brokers {
    /// Brokers reached over plain TCP without a login (the local `./dev` broker, tests).
    pub fn plaintext(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            security: KafkaSecurity::default(),
        }
    }
}

impl Default for Brokers {
    /// The broker of `./dev up`.
    fn default() -> Self {
        Self::plaintext("127.0.0.1:19092")
    }
}

impl fmt::Display for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.bootstrap)
    }
}

/// The base every other builder starts from: the bootstrap servers and the security
/// settings. Use it directly only for clients that neither produce nor consume (metadata
/// requests, admin).
pub fn client_config(brokers: &Brokers) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &brokers.bootstrap)
        // librdkafka leaves Nagle's algorithm on (the Java client turns it off): a small
        // produce or fetch request then waits for the previous one's ACK, which delayed ACKs
        // hold back for up to 40 ms — visible as latency on every live path.
        .set("socket.nagle.disable", "true");
    brokers.security.apply(&mut config);
    config
}

/// Producer settings every stage uses: idempotent (no duplicates on retry), acks from all
/// in-sync replicas, small linger and LZ4 so throughput comes from batching.
pub fn producer_config(brokers: &Brokers) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("compression.type", "lz4")
        // Murmur2 is what Java clients use, so non-Rust producers keyed by chain agree.
        .set("partitioner", "murmur2_random");
    config
}

/// Consumer settings every stage uses: offsets stored by hand once the work is durable,
/// committed transactions only.
pub fn consumer_config(brokers: &Brokers, group_id: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("group.id", group_id)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    config
}

/// Settings of a reader outside any consumer group, which assigns partitions by hand (a
/// compacted topic read in full, a live view, a restore, a dump in a test).
///
/// librdkafka wants a `group.id` even then; it is `strikeflow-<label>-…`, made unique per
/// process and call, so two readers never share broker-side state, and nothing is ever
/// committed under it. Only committed
/// transactions are read, and the end of each partition is reported
/// (`KafkaError::PartitionEOF`) so a reader can tell when it has caught up.
pub fn reader_config(brokers: &Brokers, label: &str) -> ClientConfig {
    let mut config = client_config(brokers);
    config
        .set("group.id", unique_group_id(label))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    config
}

/// `strikeflow-<label>`, the process id, the time and a per-process counter: unique across
/// processes and across calls in one process.
fn unique_group_id(label: &str) -> String {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    format!("strikeflow-{label}-{}-{nanos:x}-{call}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builder_starts_from_the_brokers() {
        let brokers = Brokers::plaintext("b:1");
        for config in [
            client_config(&brokers),
            producer_config(&brokers),
            consumer_config(&brokers, "g"),
            reader_config(&brokers, "r"),
        ] {
            assert_eq!(config.get("bootstrap.servers"), Some("b:1"));
            assert_eq!(config.get("socket.nagle.disable"), Some("true"));
            assert_eq!(config.get("security.protocol"), Some("plaintext"));
        }
    }

    #[test]
    fn every_builder_carries_the_security_settings() {
        let brokers = Brokers {
            bootstrap: "b:1".into(),
            security: KafkaSecurity {
                protocol: crate::SecurityProtocol::Ssl,
                ca_file: Some("/ca.pem".into()),
                cert_file: Some("/client.pem".into()),
                key_file: Some("/client.key".into()),
                sasl: None,
            },
        };
        for config in [
            producer_config(&brokers),
            consumer_config(&brokers, "g"),
            reader_config(&brokers, "r"),
        ] {
            assert_eq!(config.get("security.protocol"), Some("ssl"));
            assert_eq!(config.get("ssl.certificate.location"), Some("/client.pem"));
            assert_eq!(config.get("ssl.key.location"), Some("/client.key"));
        }
        assert_eq!(brokers.to_string(), "b:1");
    }

    #[test]
    fn readers_have_unique_groups_and_never_commit() {
        let brokers = Brokers::plaintext("b:1");
        let a = reader_config(&brokers, "test");
        let b = reader_config(&brokers, "test");
        assert_ne!(a.get("group.id"), b.get("group.id"));
        assert!(a
            .get("group.id")
            .is_some_and(|g| g.starts_with("strikeflow-test-")));
        assert_eq!(a.get("enable.auto.commit"), Some("false"));
        assert_eq!(a.get("isolation.level"), Some("read_committed"));
        assert_eq!(a.get("enable.partition.eof"), Some("true"));
    }

    #[test]
    fn default_connection_is_the_dev_broker() {
        let connection = KafkaConnection::default();
        assert_eq!(connection.brokers, Brokers::plaintext("127.0.0.1:19092"));
        assert_eq!(connection.topics, Topics::default());
    }
}
