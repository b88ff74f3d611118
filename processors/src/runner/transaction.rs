//! Transactions: one per batch, carrying the outputs, dead letters, due snapshots and the
//! next input offsets; and which failures abort and retry rather than stop the stage.

use std::time::Instant;

use strikeflow_kafka::rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use strikeflow_kafka::rdkafka::error::KafkaError as RdKafkaError;
use strikeflow_kafka::rdkafka::producer::{FutureRecord, Producer};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::{DeadLetter, KafkaError, Outbox};

use super::checkpoint::{snapshot_record, state_key, SnapshotLocation, SnapshotSchedule};
use super::routing::publish;
use super::stage::{Batch, CoreFactory, Stage};
use super::KAFKA_TIMEOUT;
use crate::{metrics, ProcessorError};

impl Stage<'_> {
    /// Publishes a batch in one transaction: outputs, due snapshots (all of them when
    /// `final_commit`), and the next offsets with the group metadata.
    pub(super) async fn commit(
        &mut self,
        factory: &CoreFactory,
        outbox: &mut Outbox,
        mut batch: Batch,
        final_commit: bool,
    ) -> Result<(), ProcessorError> {
        let routes = self.routes;
        outbox.producer().begin_transaction()?;
        publish(outbox, routes, &mut batch.outputs)?;
        for r in &batch.rejected {
            let letter = DeadLetter {
                reason: &r.reason,
                kind: "undecodable",
                stage: "processor",
                source: Some((&routes.ticks, r.partition, r.offset)),
                position: None,
            };
            outbox.dead_letter(&routes.dead_letters, r.key.as_deref(), &r.payload, &letter)?;
        }
        let schedule = SnapshotSchedule {
            interval: std::time::Duration::from_millis(self.config.settings.snapshot_interval_ms),
        };
        let now = Instant::now();
        let mut snapshots = Vec::new();
        for (&id, partition) in &self.partitions {
            let last = partition.snapshot_at.map(|_| partition.last_snapshot);
            if !schedule.due(batch.touched.contains(&id), last, now, final_commit) {
                continue;
            }
            let state = partition
                .core
                .snapshot(&factory.fingerprint)
                .map_err(|source| ProcessorError::SnapshotWrite {
                    partition: id,
                    source,
                })?;
            let bytes = snapshot_record(partition.next_offset, &state);
            let key = state_key(&self.config.settings.group_id, id);
            let delivery = outbox
                .producer()
                .send_result(FutureRecord::to(&routes.state).key(&key).payload(&bytes))
                .map_err(|(e, _)| ProcessorError::from(e))?;
            snapshots.push((id, bytes.len(), delivery));
        }
        outbox.flush().await?;
        for (id, size, delivery) in snapshots {
            let done = delivery
                .await
                .map_err(|_| ProcessorError::Kafka(KafkaError::ProducerGone))?
                .map_err(|(e, _)| ProcessorError::from(e))?;
            metrics::snapshot_written(size);
            if let Some(partition) = self.partitions.get_mut(&id) {
                partition.snapshot_at = Some(SnapshotLocation {
                    partition: done.partition,
                    offset: done.offset,
                });
                partition.last_snapshot = now;
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (&id, partition) in &self.partitions {
            if !(final_commit || batch.touched.contains(&id)) {
                continue;
            }
            offsets.add_partition_offset(
                &routes.ticks,
                id,
                Offset::Offset(partition.next_offset),
            )?;
            if let (Some(at), Some(mut elem)) = (
                partition.snapshot_at,
                offsets.find_partition(&routes.ticks, id),
            ) {
                elem.set_metadata(at.to_string());
            }
        }
        let group: ConsumerGroupMetadata = self
            .consumer
            .group_metadata()
            .ok_or(ProcessorError::NoGroupMetadata)?;
        let producer = outbox.producer().clone();
        let committing = Instant::now();
        blocking(move || {
            if offsets.count() > 0 {
                producer.send_offsets_to_transaction(&offsets, &group, KAFKA_TIMEOUT)?;
            }
            producer.commit_transaction(KAFKA_TIMEOUT)
        })
        .await?;
        metrics::committed(batch.ticks, committing.elapsed());
        for &id in &batch.touched {
            if let Some(partition) = self.partitions.get_mut(&id) {
                metrics::core_stats(id, &partition.core.take_stats());
                if let Some(watermark) = partition.core.watermark() {
                    metrics::watermark(id, watermark);
                }
            }
        }
        Ok(())
    }
}

/// Whether a failed transaction can be aborted and retried (anything else, e.g. being
/// fenced by another instance with the same transactional id, stops the stage).
pub(super) fn is_abortable(e: &ProcessorError) -> bool {
    match e {
        ProcessorError::Kafka(KafkaError::Client(RdKafkaError::Transaction(t))) => {
            t.txn_requires_abort() || t.is_retriable()
        }
        // A failed delivery inside a transaction leaves it to be aborted.
        ProcessorError::Kafka(KafkaError::Client(_)) => true,
        _ => false,
    }
}

/// Aborts the open transaction; its outputs, snapshots and offsets are never seen by
/// `read_committed` readers.
pub(super) async fn abort(outbox: &Outbox) -> Result<(), ProcessorError> {
    let producer = outbox.producer().clone();
    blocking(move || producer.abort_transaction(KAFKA_TIMEOUT)).await
}

/// Runs a blocking librdkafka call off the async threads.
pub(super) async fn blocking<T, F>(f: F) -> Result<T, ProcessorError>
where
    F: FnOnce() -> Result<T, RdKafkaError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ProcessorError::Blocking)?
        .map_err(ProcessorError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_failures_abort_the_transaction_and_other_errors_stop() {
        use strikeflow_kafka::rdkafka::types::RDKafkaErrorCode;
        let delivery = ProcessorError::from(RdKafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        ));
        assert!(is_abortable(&delivery));
        assert!(!is_abortable(&ProcessorError::NoGroupMetadata));
    }
}
