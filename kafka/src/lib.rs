//! Kafka plumbing shared by the strikeflow stages.
//!
//! Every stage produces the same way (idempotent, batched, never awaiting sends one at a
//! time), dead-letters the same way (reason and origin in headers) and needs the same topics
//! to exist, builds its clients from the same settings ([`client_config`] and the builders
//! on it), reads compacted topics with one [`CompactedReader`] and collects batches with one
//! [`BatchCollector`]. Keeping that here means one place decides those settings.

mod admin;
mod backoff;
mod batch;
mod compacted;
mod connection;
pub mod metrics;
mod outbox;
mod registry;
mod security;

pub use admin::{delete_topics, ensure_topics, partition_ids};
pub use backoff::backoff;
pub use batch::BatchCollector;
pub use compacted::CompactedReader;
pub use connection::{
    client_config, consumer_config, producer_config, reader_config, Brokers, KafkaConnection,
};
pub use outbox::{DeadLetter, Outbox};
pub use rdkafka;
pub use registry::{Registry, RegistryConnection, RegistryError, RETRY_UNRESOLVED};
pub use security::{KafkaSecurity, SaslLogin, SaslMechanism, SecurityProtocol};

use rdkafka::message::{Headers, Message};

/// What a record of the ticks topic is, told by its headers alone (no decoding).
///
/// The ticks topic carries, besides the ticks themselves, records that exist so each
/// partition's log is self-contained: copies of spot ticks and event-time markers. Deciding
/// the kind here, once, keeps every stage's reading of those headers the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicksRecord {
    /// A tick as published (the primary): stored, barred and pushed.
    Tick,
    /// A reference copy of a spot tick ([`strikeflow_schemas::REFERENCE_COPY_HEADER`]): moves
    /// a partition's spot and event time, nothing else.
    ReferenceCopy,
    /// An event-time marker ([`strikeflow_schemas::WATERMARK_HEADER`], payload a
    /// [`strikeflow_schemas::Watermark`]): advances the partition's watermark.
    Watermark,
}

/// The kind of a ticks record. Primaries carry no headers, so for them this is one null
/// check.
pub fn ticks_record<M: Message>(msg: &M) -> TicksRecord {
    let Some(headers) = msg.headers() else {
        return TicksRecord::Tick;
    };
    for header in headers.iter() {
        if header.key == strikeflow_schemas::REFERENCE_COPY_HEADER {
            return TicksRecord::ReferenceCopy;
        }
        if header.key == strikeflow_schemas::WATERMARK_HEADER {
            return TicksRecord::Watermark;
        }
    }
    TicksRecord::Tick
}

/// Whether a ticks record is anything but a primary tick (a reference copy or an
/// event-time marker). Sink and push skip these through this one check, so a new kind of
/// control record cannot be stored or pushed as a tick by one of them forgetting it.
pub fn is_control<M: Message>(msg: &M) -> bool {
    ticks_record(msg) != TicksRecord::Tick
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

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    use super::*;

    fn message(header: Option<&str>) -> OwnedMessage {
        let headers = header.map(|key| {
            OwnedHeaders::new().insert(Header {
                key,
                value: Some("1"),
            })
        });
        OwnedMessage::new(
            None,
            None,
            "ticks.v1".into(),
            Timestamp::NotAvailable,
            0,
            0,
            headers,
        )
    }

    #[test]
    fn kinds_follow_the_headers() {
        assert_eq!(ticks_record(&message(None)), TicksRecord::Tick);
        assert_eq!(ticks_record(&message(Some("other"))), TicksRecord::Tick);
        let copy = message(Some(strikeflow_schemas::REFERENCE_COPY_HEADER));
        assert_eq!(ticks_record(&copy), TicksRecord::ReferenceCopy);
        let marker = message(Some(strikeflow_schemas::WATERMARK_HEADER));
        assert_eq!(ticks_record(&marker), TicksRecord::Watermark);
        assert!(is_control(&copy) && is_control(&marker));
        assert!(!is_control(&message(None)));
    }
}
