//! Creating the topics the stages need.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::types::RDKafkaErrorCode;
use strikeflow_schemas::TopicSpec;

use crate::{client_config, Brokers, KafkaError};

/// An admin client for `brokers`.
fn admin(brokers: &Brokers) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    Ok(client_config(brokers).create()?)
}

/// Creates every topic in `specs` that does not exist yet (auto-creation is off on purpose:
/// partition counts are part of the design). Existing topics are left as they are.
pub async fn ensure_topics(
    brokers: &Brokers,
    specs: &[TopicSpec],
    replication: i32,
) -> Result<(), KafkaError> {
    let admin = admin(brokers)?;
    // NewTopic borrows its settings, so their text must outlive `configs`.
    let max_bytes: Vec<Option<String>> = specs
        .iter()
        .map(|spec| spec.max_message_bytes.map(|b| b.to_string()))
        .collect();
    let configs: Vec<_> = specs
        .iter()
        .zip(&max_bytes)
        .map(|(spec, max_bytes)| {
            let topic = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(replication),
            );
            let topic = if spec.compacted {
                topic.set("cleanup.policy", "compact")
            } else {
                topic
            };
            match max_bytes {
                Some(bytes) => topic.set("max.message.bytes", bytes),
                None => topic,
            }
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&configs, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::Topic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Deletes topics (benchmarks clean up after themselves); missing topics are not an error.
pub async fn delete_topics(brokers: &Brokers, names: &[&str]) -> Result<(), KafkaError> {
    let admin = admin(brokers)?;
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.delete_topics(names, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::Topic {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// The partition ids of `topic`, from broker metadata. Blocks up to `timeout`: call it at
/// start-up or on a blocking thread. A topic that is missing, errored or has no partitions
/// is [`KafkaError::MissingTopic`] (auto-creation is off, so it was never created).
pub fn partition_ids(
    consumer: &StreamConsumer,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let missing = |reason: String| KafkaError::MissingTopic {
        topic: topic.to_owned(),
        reason,
    };
    let found = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| missing("not in the broker's metadata".into()))?;
    if let Some(error) = found.error() {
        return Err(missing(format!("{error:?}")));
    }
    let ids: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        return Err(missing("it has no partitions".into()));
    }
    Ok(ids)
}
