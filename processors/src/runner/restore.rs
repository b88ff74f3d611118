//! Restore and replay: rebuilding each assigned partition's core from its committed
//! snapshot and the ticks since, without publishing anything.
//!
//! For a committed offset `C` whose metadata points at a snapshot taken at ticks offset
//! `S <= C`, the core is restored from the snapshot and the ticks in `[S, C)` are replayed
//! through it; their outputs were committed with `C`, so they are discarded. These calls
//! block (librdkafka's synchronous API), so the stage runs them on the blocking pool.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use strikeflow_analytics::TickProcessor;
use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Message};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::reader_config;
use tracing::{info, warn};

use super::checkpoint::{split_snapshot, SnapshotLocation};
use super::stage::{apply_record, CoreFactory, Partition, TicksConsumer};
use super::KAFKA_TIMEOUT;
use crate::{metrics, ProcessorError, SnapshotReadError};

/// Restores every partition of `ticks` assigned to `consumer`. `rewind` also seeks the
/// consumer to the committed offsets.
pub(super) fn restore_partitions(
    consumer: &TicksConsumer,
    brokers: &strikeflow_kafka::Brokers,
    ticks: &str,
    state_topic: &str,
    factory: &CoreFactory,
    rewind: bool,
) -> Result<BTreeMap<i32, Partition>, ProcessorError> {
    let assigned = consumer.assignment()?;
    let ids: Vec<i32> = assigned
        .elements_for_topic(ticks)
        .iter()
        .map(|e| e.partition())
        .collect();
    let mut restored = BTreeMap::new();
    if ids.is_empty() {
        return Ok(restored);
    }
    let committed = committed_offsets(consumer, &assigned)?;
    // The reader hops between partitions; a long-polling fetch on the previous one would
    // delay the next by up to the 500 ms default. Default fetch sizes are fine: the broker
    // returns a snapshot larger than them anyway (a fetch carries at least one batch).
    let reader: BaseConsumer = reader_config(brokers, "processor-restore")
        .set("fetch.wait.max.ms", "10")
        // Reads stop at a known offset, never at a partition's end.
        .set("enable.partition.eof", "false")
        .create()?;
    // Knowing both topics' leaders up front keeps the first fetch of each from waiting
    // on a metadata refresh.
    reader.fetch_metadata(Some(ticks), KAFKA_TIMEOUT)?;
    reader.fetch_metadata(Some(state_topic), KAFKA_TIMEOUT)?;
    let mut seek = TopicPartitionList::new();
    for id in ids {
        let elem = committed.find_partition(ticks, id);
        let (offset, metadata) = match &elem {
            Some(e) => (e.offset(), e.metadata().to_owned()),
            None => (Offset::Invalid, String::new()),
        };
        let location = metadata.parse::<SnapshotLocation>().ok();
        let (core, next_offset) = match (offset, location) {
            (Offset::Offset(committed), Some(location)) => {
                let started = Instant::now();
                let (mut core, from) = read_snapshot(&reader, factory, state_topic, location)?;
                let read = started.elapsed();
                replay(&reader, ticks, id, (from, committed), factory, &mut core)?;
                info!(
                    partition = id,
                    snapshot_offset = from,
                    committed,
                    read_snapshot = ?read,
                    replay = ?started.elapsed().saturating_sub(read),
                    "partition restored from its snapshot"
                );
                (core, committed)
            }
            (Offset::Offset(committed), None) => {
                warn!(
                    partition = id,
                    committed,
                    metadata,
                    "committed offset without a state snapshot: starting with empty state there"
                );
                (factory.empty(), committed)
            }
            _ => (factory.empty(), 0),
        };
        seek.add_partition_offset(ticks, id, Offset::Offset(next_offset))?;
        restored.insert(
            id,
            Partition {
                core,
                next_offset,
                snapshot_at: location.filter(|_| matches!(offset, Offset::Offset(_))),
                last_snapshot: Instant::now(),
            },
        );
    }
    if rewind {
        consumer.seek_partitions(seek, KAFKA_TIMEOUT)?;
    }
    Ok(restored)
}

/// The group's committed offsets for `partitions`, retrying while the group coordinator is
/// moving or still loading (a fresh or restarting broker answers so for a while).
fn committed_offsets(
    consumer: &TicksConsumer,
    partitions: &TopicPartitionList,
) -> Result<TopicPartitionList, ProcessorError> {
    use strikeflow_kafka::rdkafka::types::RDKafkaErrorCode::{
        CoordinatorLoadInProgress, CoordinatorNotAvailable, NotCoordinator,
    };
    let deadline = Instant::now() + KAFKA_TIMEOUT;
    loop {
        match consumer.committed_offsets(partitions.clone(), KAFKA_TIMEOUT) {
            Ok(committed) => return Ok(committed),
            Err(e)
                if Instant::now() < deadline
                    && matches!(
                        e.rdkafka_error_code(),
                        Some(NotCoordinator | CoordinatorLoadInProgress | CoordinatorNotAvailable)
                    ) =>
            {
                warn!(error = %e, "committed offsets not available yet; retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the snapshot at `location` and returns the restored core and the ticks offset it
/// was taken at.
fn read_snapshot(
    reader: &BaseConsumer,
    factory: &CoreFactory,
    topic: &str,
    location: SnapshotLocation,
) -> Result<(TickProcessor, i64), ProcessorError> {
    let failed = |source: SnapshotReadError| ProcessorError::SnapshotRead { location, source };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, location.partition, Offset::Offset(location.offset))?;
    reader.assign(&tpl)?;
    let Some(msg) = next_record(reader)? else {
        return Err(failed(SnapshotReadError::Unreadable));
    };
    if msg.offset() != location.offset {
        return Err(failed(SnapshotReadError::Gone {
            found: msg.offset(),
        }));
    }
    let payload = msg.payload().unwrap_or_default();
    let (taken_at, bytes) = split_snapshot(payload)
        .ok_or_else(|| failed(SnapshotReadError::Truncated { len: payload.len() }))?;
    let core = factory
        .restore(bytes)
        .map_err(|e| failed(SnapshotReadError::State(e)))?;
    Ok((core, taken_at))
}

/// The next record of the reader's assignment, or `None` when none arrived within
/// [`KAFKA_TIMEOUT`] (a restore fails only when the broker stalls, however long it is).
fn next_record(reader: &BaseConsumer) -> Result<Option<BorrowedMessage<'_>>, ProcessorError> {
    match reader.poll(KAFKA_TIMEOUT) {
        Some(result) => Ok(Some(result?)),
        None => Ok(None),
    }
}

/// Replays `[from, to)` of a ticks partition through `core`, discarding the outputs and
/// the counts: they were published, counted and committed together with offset `to`.
fn replay(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    (from, to): (i64, i64),
    factory: &CoreFactory,
    core: &mut TickProcessor,
) -> Result<(), ProcessorError> {
    if from >= to {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    reader.assign(&tpl)?;
    let mut discarded = Vec::new();
    let mut replayed = 0u64;
    loop {
        let Some(msg) = next_record(reader)? else {
            return Err(ProcessorError::ReplayStalled {
                topic: topic.to_owned(),
                partition,
                from,
                to,
                replayed,
            });
        };
        if msg.offset() >= to {
            break;
        }
        // Undecodable records were dead-lettered the first time; they change no state. A
        // schema id this process has not seen yet is resolved first, so a replay after a
        // restart decodes what the first run did.
        let payload = msg.payload().unwrap_or_default();
        factory.registry.resolve_blocking(payload);
        let _ = apply_record(
            core,
            payload,
            strikeflow_kafka::ticks_record(&msg),
            factory.registry.ids(),
            &mut discarded,
        );
        discarded.clear();
        replayed += 1;
        if msg.offset() + 1 >= to {
            break;
        }
    }
    core.take_stats();
    metrics::replayed(replayed);
    Ok(())
}
