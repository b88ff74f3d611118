//! The instrument master, read in full by every processor instance.
//!
//! Chain analytics need every strike, expiry and lot size of a chain, and which partition a
//! chain's ticks land on says nothing about where its instruments are, so each instance
//! reads the whole compacted `instruments` topic (manual assignment, from the beginning, no
//! commits) instead of sharing it through the consumer group.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use strikeflow_kafka::partition_ids;
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::error::{KafkaError, KafkaResult};
use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Message};
use strikeflow_kafka::rdkafka::{ClientConfig, Offset, TopicPartitionList};
use strikeflow_schemas::{decode, Instrument};
use tracing::{info, warn};

use crate::ProcessorError;

/// A private consumer of the instrument topic.
pub struct InstrumentFeed {
    consumer: StreamConsumer,
    partitions: usize,
}

impl InstrumentFeed {
    /// Assigns every partition of `topic` from its beginning.
    pub fn start(brokers: &str, topic: &str, group_id: &str) -> Result<Self, ProcessorError> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            // Never shared: every instance needs every instrument.
            .set(
                "group.id",
                format!("{group_id}-instruments-{}-{nanos:x}", std::process::id()),
            )
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()?;
        // Metadata is fetched once at start-up; blocking briefly here is harmless.
        let ids = partition_ids(&consumer, topic, Duration::from_secs(10))?;
        let mut assignment = TopicPartitionList::new();
        for &partition in &ids {
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
        consumer.assign(&assignment)?;
        Ok(Self {
            consumer,
            partitions: ids.len(),
        })
    }

    /// Reads until every partition reached its end (or `limit` passed) and returns the
    /// instruments read, so the first ticks already find their chains.
    pub async fn catch_up(&self, limit: Duration) -> Result<Vec<Instrument>, ProcessorError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut at_end = std::collections::HashSet::new();
        let mut master = Vec::new();
        while at_end.len() < self.partitions {
            match tokio::time::timeout_at(deadline, self.consumer.recv()).await {
                Err(_elapsed) => {
                    warn!(
                        read = master.len(),
                        "instrument master not read to its end in {limit:?}; continuing"
                    );
                    return Ok(master);
                }
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Ok(result) => master.extend(Self::decode(result)),
            }
        }
        info!(read = master.len(), "instrument master loaded");
        Ok(master)
    }

    /// The next instrument record (or end-of-partition marker).
    pub async fn recv(&self) -> KafkaResult<BorrowedMessage<'_>> {
        self.consumer.recv().await
    }

    /// The instrument in one record. Bad records are counted and logged, not returned: the
    /// sink dead-letters them, this is a reader.
    pub fn decode(result: KafkaResult<BorrowedMessage<'_>>) -> Option<Instrument> {
        let msg = match result {
            Ok(msg) => msg,
            Err(KafkaError::PartitionEOF(_)) => return None,
            Err(e) => {
                warn!(error = %e, "instrument consumer error");
                return None;
            }
        };
        // A tombstone retires a token; its chain keeps the strike for history.
        let payload = msg.payload()?;
        match decode::<Instrument>(payload) {
            Ok(instrument) => Some(instrument),
            Err(e) => {
                metrics::counter!("processor_instrument_errors_total").increment(1);
                warn!(offset = msg.offset(), error = %e, "undecodable instrument record");
                None
            }
        }
    }
}
