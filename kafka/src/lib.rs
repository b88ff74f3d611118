//! Kafka plumbing shared by the strikeflow stages.
//!
//! Every stage produces the same way (idempotent, batched, never awaiting sends one at a
//! time), dead-letters the same way (reason and origin in headers) and needs the same topics
//! to exist, builds its clients from the same settings ([`client_config`] and the builders
//! on it), reads compacted topics with one [`CompactedReader`] and collects batches with one
//! [`BatchCollector`]. Keeping that here means one place decides those settings.

mod admin;
mod batch;
mod compacted;
mod connection;
pub mod metrics;
mod outbox;

pub use admin::{delete_topics, ensure_topics, partition_ids};
pub use batch::BatchCollector;
pub use compacted::CompactedReader;
pub use connection::{
    client_config, consumer_config, producer_config, reader_config, KafkaConnection,
};
pub use outbox::{DeadLetter, Outbox};
pub use rdkafka;

use rdkafka::message::{Headers, Message};

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
    /// A metadata request run on a blocking thread panicked or was cancelled.
    #[error("a Kafka metadata request task failed")]
    Task(#[source] tokio::task::JoinError),
}
