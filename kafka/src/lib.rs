//! Kafka plumbing shared by the strikeflow stages.
//!
//! Every stage produces the same way (idempotent, batched, never awaiting sends one at a
//! time), dead-letters the same way (reason and origin in headers) and needs the same topics
//! to exist. Keeping that here means one place decides those settings.

mod admin;
mod outbox;

pub use admin::{delete_topics, ensure_topics, partition_ids};
pub use outbox::{DeadLetter, Outbox};
pub use rdkafka;

use rdkafka::message::{Headers, Message};
use rdkafka::ClientConfig;

/// Whether a ticks record is a reference copy of a spot tick (it carries
/// [`strikeflow_schemas::REFERENCE_COPY_HEADER`]). Sink and push skip copies; the processor
/// lets them move a chain's spot but builds no bar from them. Primaries carry no headers,
/// so for them this is one null check.
pub fn is_reference_copy<M: Message>(msg: &M) -> bool {
    msg.headers().is_some_and(|headers| {
        headers
            .iter()
            .any(|h| h.key == strikeflow_schemas::REFERENCE_COPY_HEADER)
    })
}

/// Why a Kafka operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// librdkafka reported an error.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The producer was dropped while deliveries were still outstanding.
    #[error("producer closed before confirming delivery")]
    ProducerGone,
    /// A topic the stage needs does not exist (run `strikeflow migrate`).
    #[error("topic {topic} is not usable ({reason}); run `strikeflow migrate` first")]
    MissingTopic {
        /// The topic.
        topic: String,
        /// What the metadata said.
        reason: String,
    },
    /// Creating or deleting a topic failed for a reason other than it (not) existing.
    #[error("topic {topic}: {reason}")]
    Topic {
        /// The topic that could not be created.
        topic: String,
        /// What the broker said.
        reason: String,
    },
}

/// Producer settings every stage uses: idempotent (no duplicates on retry), acks from all
/// in-sync replicas, small linger and LZ4 so throughput comes from batching.
pub fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
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
pub fn consumer_config(brokers: &str, group_id: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group_id)
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    config
}
