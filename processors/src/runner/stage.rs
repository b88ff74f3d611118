//! The consumer side of the loop: the assigned partitions, their cores, and how records
//! reach them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use strikeflow_analytics::indicator_bank::IndicatorBank;
use strikeflow_analytics::{CoreSettings, Output, SnapshotError, TickProcessor};
use strikeflow_kafka::rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use strikeflow_kafka::rdkafka::message::Message;
use strikeflow_kafka::rdkafka::{ClientContext, TopicPartitionList};
use strikeflow_kafka::{Registry, TicksRecord};
use strikeflow_schemas::{decode_any, CodecError, Instrument, SchemaIds, Tick, Watermark};
use tracing::{info, warn};

use super::checkpoint::SnapshotLocation;
use super::restore::restore_partitions;
use super::routing::Routes;
use crate::{metrics, ProcessorConfig, ProcessorError};

/// Counts the consumer's rebalances, so the loop notices that its assignment (and the
/// positions of its partitions) changed under it and restores its cores.
#[derive(Default)]
pub(super) struct RebalanceCounter {
    rebalances: AtomicU64,
}

impl RebalanceCounter {
    fn count(&self) -> u64 {
        self.rebalances.load(Ordering::SeqCst)
    }
}

impl ClientContext for RebalanceCounter {}

impl ConsumerContext for RebalanceCounter {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::SeqCst);
        let partitions = |tpl: &TopicPartitionList| -> Vec<i32> {
            tpl.elements().iter().map(|e| e.partition()).collect()
        };
        match rebalance {
            Rebalance::Assign(tpl) => {
                info!(partitions = ?partitions(tpl), "ticks partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                info!(partitions = ?partitions(tpl), "ticks partitions revoked")
            }
            Rebalance::Error(e) => warn!(error = %e, "rebalance failed"),
        }
    }
}

/// The group consumer of the ticks topic.
pub(super) type TicksConsumer = StreamConsumer<RebalanceCounter>;

/// Everything needed to build or restore one partition's core.
#[derive(Clone)]
pub(super) struct CoreFactory {
    pub(super) settings: CoreSettings,
    pub(super) indicators: IndicatorBank,
    /// What shaped the state; a snapshot taken under other settings is refused.
    pub(super) fingerprint: String,
    pub(super) master: Vec<Instrument>,
    /// Schema ids of Confluent-framed ticks, for live records and replays alike.
    pub(super) registry: Registry,
}

impl CoreFactory {
    pub(super) fn empty(&self) -> TickProcessor {
        self.with_master(TickProcessor::new(
            self.settings.clone(),
            self.indicators.clone(),
        ))
    }

    pub(super) fn restore(&self, bytes: &[u8]) -> Result<TickProcessor, SnapshotError> {
        let core = TickProcessor::restore(
            bytes,
            &self.fingerprint,
            self.settings.clone(),
            self.indicators.clone(),
        )?;
        // Registering again is a no-op for known tokens and adds instruments listed since.
        Ok(self.with_master(core))
    }

    fn with_master(&self, mut core: TickProcessor) -> TickProcessor {
        for instrument in &self.master {
            register(&mut core, instrument);
        }
        core
    }
}

/// Teaches a core one instrument; a bad master row is counted and logged, not fatal.
pub(super) fn register(core: &mut TickProcessor, instrument: &Instrument) {
    if let Err(e) = core.on_instrument(instrument) {
        metrics::instrument_not_registered(instrument.instrument_token, &e);
    }
}

/// One assigned ticks partition: its core and where it stands.
pub(super) struct Partition {
    pub(super) core: TickProcessor,
    /// Offset of the next record the core expects; anything older was already applied.
    pub(super) next_offset: i64,
    /// This partition's latest snapshot in the state topic.
    pub(super) snapshot_at: Option<SnapshotLocation>,
    pub(super) last_snapshot: Instant,
}

/// A record that could not be decoded, owed to the dead-letter topic in this transaction.
pub(super) struct Rejected {
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<Vec<u8>>,
    pub(super) payload: Vec<u8>,
    pub(super) reason: String,
}

/// The work of one transaction, not yet published.
#[derive(Default)]
pub(super) struct Batch {
    pub(super) outputs: Vec<Output>,
    pub(super) rejected: Vec<Rejected>,
    pub(super) touched: BTreeSet<i32>,
    pub(super) ticks: u64,
}

/// Feeds one ticks record to a core: the one code path for live records and for replay,
/// so an event-time marker is applied on restore exactly as it was the first time. Either
/// framing; a Confluent record's schema id must be resolved in `ids` first.
pub(super) fn apply_record(
    core: &mut TickProcessor,
    payload: &[u8],
    kind: TicksRecord,
    ids: &SchemaIds,
    out: &mut Vec<Output>,
) -> Result<(), CodecError> {
    match kind {
        TicksRecord::Tick => core.on_tick(decode_any::<Tick>(payload, ids)?, out),
        TicksRecord::ReferenceCopy => {
            core.on_reference_tick(&decode_any::<Tick>(payload, ids)?, out)
        }
        TicksRecord::Watermark => {
            core.on_watermark(decode_any::<Watermark>(payload, ids)?.event_ts, out)
        }
    }
    Ok(())
}

/// The consumer side of the loop and the cores of the assigned partitions.
pub(super) struct Stage<'a> {
    pub(super) config: &'a ProcessorConfig,
    pub(super) routes: &'a Routes,
    pub(super) consumer: Arc<TicksConsumer>,
    pub(super) partitions: BTreeMap<i32, Partition>,
    pub(super) rebalances_seen: u64,
}

impl Stage<'_> {
    /// Whether the assignment changed since the cores were last restored.
    pub(super) fn rebalanced(&self) -> bool {
        self.consumer.context().count() != self.rebalances_seen
    }

    /// Applies one record to its partition's core, restoring first when the assignment
    /// changed since the last record (the batch so far is then discarded: it belongs to a
    /// generation that may no longer commit).
    pub(super) async fn take<M: Message>(
        &mut self,
        factory: &CoreFactory,
        msg: &M,
        batch: &mut Batch,
    ) -> Result<(), ProcessorError> {
        if self.rebalanced() || !self.partitions.contains_key(&msg.partition()) {
            *batch = Batch::default();
            self.restore_all(factory, false).await?;
        }
        let Some(partition) = self.partitions.get_mut(&msg.partition()) else {
            warn!(
                partition = msg.partition(),
                "record of a partition not assigned here"
            );
            return Ok(());
        };
        if msg.offset() < partition.next_offset {
            return Ok(()); // already applied (restored state covers it)
        }
        partition.next_offset = msg.offset() + 1;
        batch.touched.insert(msg.partition());
        batch.ticks += 1;
        let payload = msg.payload().unwrap_or_default();
        // A new schema id is fetched once; a known one costs a table lookup.
        factory.registry.resolve(payload).await;
        if let Err(e) = apply_record(
            &mut partition.core,
            payload,
            strikeflow_kafka::ticks_record(msg),
            factory.registry.ids(),
            &mut batch.outputs,
        ) {
            batch.rejected.push(Rejected {
                partition: msg.partition(),
                offset: msg.offset(),
                key: msg.key().map(<[u8]>::to_vec),
                payload: payload.to_vec(),
                reason: e.to_string(),
            });
        }
        Ok(())
    }

    /// Rebuilds the core of every assigned partition from its committed snapshot and
    /// offset. `rewind` also moves the consumer back to the committed offsets (after an
    /// aborted transaction; after a rebalance the consumer starts there by itself).
    pub(super) async fn restore_all(
        &mut self,
        factory: &CoreFactory,
        rewind: bool,
    ) -> Result<(), ProcessorError> {
        self.rebalances_seen = self.consumer.context().count();
        self.partitions.clear();
        let started = Instant::now();
        let consumer = self.consumer.clone();
        let brokers = self.config.kafka.brokers.clone();
        let ticks = self.routes.ticks.clone();
        let state = self.routes.state.clone();
        let factory = factory.clone();
        let restored = tokio::task::spawn_blocking(move || {
            restore_partitions(&consumer, &brokers, &ticks, &state, &factory, rewind)
        })
        .await
        .map_err(ProcessorError::Blocking)??;
        if !restored.is_empty() {
            info!(
                partitions = ?restored.keys().collect::<Vec<_>>(),
                elapsed = ?started.elapsed(),
                "partitions restored"
            );
        }
        self.partitions = restored;
        Ok(())
    }
}
