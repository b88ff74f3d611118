//! Which partitions the sink reads, from where, and noticing new ones while it runs.
//!
//! The sink assigns partitions by hand (no consumer group), each from the offset stored in
//! `sink_offsets` with the rows, or from the beginning when it has none. Partitions added to
//! an input topic later are found by a metadata check every [`REFRESH_EVERY`] and assigned
//! the same way, without a restart. A stored offset below the partition's log start means
//! records expired from Kafka before this sink stored them: that is refused loudly
//! ([`SinkError::OffsetGap`], `sink_offset_gaps_total`, an ERROR log), never skipped.
//! The same holds while the sink runs: its consumer has `auto.offset.reset = error`, so a
//! partition whose next records expire before the sink reads them (a sink lagging behind
//! retention) raises an error instead of jumping ahead, and [`Assignment::expired`] names
//! the partition.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::{partition_ids, KafkaError};
use tokio_postgres::Client;
use tracing::info;

use crate::metrics::OffsetGap;
use crate::{offsets, SinkError};

/// How often the input topics are checked for partitions added since the last check.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Time limit of one metadata or watermark request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a partition is read from, given the sink's stored next offset and the partition's
/// log start: `Err(())` when records between the two expired unread (a gap).
pub(crate) fn start_at(stored: Option<i64>, log_start: i64) -> Result<Offset, ()> {
    match stored {
        // Never stored: this sink has seen nothing of it, so nothing of it was skipped.
        None => Ok(Offset::Beginning),
        Some(next) if next >= log_start => Ok(Offset::Offset(next)),
        Some(_) => Err(()),
    }
}

/// The partitions assigned so far, and the consumer they are assigned to.
pub(crate) struct Assignment {
    consumer: Arc<StreamConsumer>,
    topics: Vec<String>,
    assigned: HashSet<(String, i32)>,
}

impl Assignment {
    /// Nothing assigned yet; [`Assignment::extend`] assigns.
    pub(crate) fn new(consumer: Arc<StreamConsumer>, topics: &[String]) -> Self {
        Self {
            consumer,
            topics: topics.to_vec(),
            assigned: HashSet::new(),
        }
    }

    /// How many partitions are assigned.
    pub(crate) fn len(&self) -> usize {
        self.assigned.len()
    }

    /// Assigns every partition of the input topics not assigned yet, from its stored
    /// offset (read now: the sink holds its name's lock, so only it writes them) or the
    /// beginning; returns how many were added. Any gap is logged and counted, each one,
    /// and then returned as the error, assigning nothing.
    pub(crate) async fn extend(
        &mut self,
        client: &Client,
        consumer_name: &str,
    ) -> Result<usize, SinkError> {
        let consumer = self.consumer.clone();
        let topics = self.topics.clone();
        let found = blocking(move || {
            let mut found = Vec::new();
            for topic in topics {
                for partition in partition_ids(&consumer, &topic, METADATA_TIMEOUT)? {
                    found.push((topic.clone(), partition));
                }
            }
            Ok(found)
        })
        .await?;
        let added: Vec<(String, i32)> = found
            .into_iter()
            .filter(|tp| !self.assigned.contains(tp))
            .collect();
        if added.is_empty() {
            return Ok(0);
        }
        let stored = offsets::load(client, consumer_name).await?;
        let starts = self.starts(&added, &stored).await?;
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in added.iter().zip(starts) {
            list.add_partition_offset(topic, *partition, offset)?;
        }
        self.consumer.incremental_assign(&list)?;
        info!(
            consumer = consumer_name,
            partitions = ?added,
            "sink reading partitions"
        );
        let count = added.len();
        self.assigned.extend(added);
        Ok(count)
    }

    /// After the consumer reported that a read position fell out of range (records expired
    /// before the sink read them: a sink lagging behind retention), checks every assigned
    /// partition's stored offset against its log start, as at assignment: each gap is
    /// logged and counted, and the first returned as [`SinkError::OffsetGap`] with the
    /// offset stored in `sink_offsets`. `None` when no stored offset is below its log start
    /// (a partition never stored is read from its beginning, which is no gap).
    pub(crate) async fn expired(
        &self,
        client: &Client,
        consumer_name: &str,
    ) -> Result<Option<SinkError>, SinkError> {
        let stored = offsets::load(client, consumer_name).await?;
        let assigned: Vec<(String, i32)> = self.assigned.iter().cloned().collect();
        match self.starts(&assigned, &stored).await {
            Ok(_) => Ok(None),
            Err(gap @ SinkError::OffsetGap { .. }) => Ok(Some(gap)),
            Err(e) => Err(e),
        }
    }

    /// The start offset of each of `added`, checking stored offsets against log starts.
    async fn starts(
        &self,
        added: &[(String, i32)],
        stored: &HashMap<(String, i32), i64>,
    ) -> Result<Vec<Offset>, SinkError> {
        let with_offset: Vec<(String, i32)> = added
            .iter()
            .filter(|tp| stored.contains_key(*tp))
            .cloned()
            .collect();
        let consumer = self.consumer.clone();
        let log_starts: HashMap<(String, i32), i64> = blocking(move || {
            let mut starts = HashMap::new();
            for (topic, partition) in with_offset {
                let (low, _high) =
                    consumer.fetch_watermarks(&topic, partition, METADATA_TIMEOUT)?;
                starts.insert((topic, partition), low);
            }
            Ok(starts)
        })
        .await?;
        let mut starts = Vec::with_capacity(added.len());
        let mut gaps = Vec::new();
        for tp in added {
            let next = stored.get(tp).copied();
            let log_start = log_starts.get(tp).copied().unwrap_or(0);
            match start_at(next, log_start) {
                Ok(offset) => starts.push(offset),
                Err(()) => {
                    let gap = SinkError::OffsetGap {
                        topic: tp.0.clone(),
                        partition: tp.1,
                        stored: next.unwrap_or_default(),
                        log_start,
                    };
                    OffsetGap {
                        topic: &tp.0,
                        partition: tp.1,
                        stored: next.unwrap_or_default(),
                        log_start,
                    }
                    .emit();
                    gaps.push(gap);
                }
            }
        }
        match gaps.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(starts),
        }
    }
}

/// Runs a blocking librdkafka request off the runtime's threads.
async fn blocking<T: Send + 'static>(
    request: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, SinkError> {
    match tokio::task::spawn_blocking(request).await {
        Ok(result) => Ok(result?),
        Err(e) => Err(SinkError::Kafka(KafkaError::Task(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_never_stored_is_read_from_the_beginning() {
        assert_eq!(start_at(None, 0), Ok(Offset::Beginning));
        // Even when old records expired: this sink never had them, so skipped none.
        assert_eq!(start_at(None, 500), Ok(Offset::Beginning));
    }

    #[test]
    fn a_stored_offset_at_or_above_the_log_start_is_resumed() {
        assert_eq!(start_at(Some(500), 500), Ok(Offset::Offset(500)));
        assert_eq!(start_at(Some(900), 500), Ok(Offset::Offset(900)));
    }

    #[test]
    fn a_stored_offset_below_the_log_start_is_a_gap() {
        assert_eq!(start_at(Some(499), 500), Err(()));
        assert_eq!(start_at(Some(0), 1), Err(()));
    }
}
