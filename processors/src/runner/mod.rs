//! The Kafka shell around the analytics core (`strikeflow_analytics::TickProcessor`):
//! exactly-once consume–transform–produce.
//!
//! Each assigned ticks partition has its own core, so its outputs are a function of that
//! partition's log alone. Per batch, one Kafka transaction carries the outputs, a snapshot
//! of the state of every partition whose snapshot is due (to the compacted
//! `processor-state.v1`), and the next input offsets, sent with the group metadata so a
//! member that lost its partitions in a rebalance cannot commit them. Each committed offset
//! carries, as metadata, where that partition's latest snapshot is
//! ([`SnapshotLocation`]).
//!
//! Restoring a partition (on start, after a rebalance, after an aborted transaction) reads
//! the committed offset `C` and its snapshot taken at offset `S <= C`, replays the ticks in
//! `[S, C)` through the restored core without publishing (their outputs were committed
//! with them), and continues at `C`. Downstream readers use `read_committed`, so they see
//! each output exactly once whatever crashed when.
//!
//! The parts, by concern: [`checkpoint`] (snapshot records, locations, when one is due),
//! `restore` (restore and replay), `transaction` (commit, abort, which errors abort),
//! `routing` (topics, keys, publishing), `stage` (the assigned partitions and their
//! cores), `instruments` (the instrument master every core needs).

pub mod checkpoint;
mod instruments;
mod restore;
pub mod routing;
mod stage;
mod transaction;

pub use checkpoint::SnapshotLocation;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use strikeflow_kafka::rdkafka::consumer::Consumer;
use strikeflow_kafka::rdkafka::message::Message;
use strikeflow_kafka::rdkafka::producer::{FutureProducer, Producer};
use strikeflow_kafka::{
    consumer_config, producer_config, BatchCollector, CompactedReader, Outbox, Registry,
};
use strikeflow_schemas::Topics;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::checkpoint::settings_fingerprint;
use self::instruments::decode_instrument;
use self::routing::Routes;
use self::stage::{register, Batch, CoreFactory, RebalanceCounter, Stage, TicksConsumer};
use self::transaction::{abort, blocking, is_abortable};
use crate::{metrics, ProcessorConfig, ProcessorError};

/// Longest a blocking Kafka call (metadata, committed offsets, transaction steps) may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the processor stage until `shutdown` is cancelled or a fatal Kafka error occurs.
pub async fn run(
    config: ProcessorConfig,
    shutdown: CancellationToken,
) -> Result<(), ProcessorError> {
    config.settings.validate()?;
    metrics::describe();
    let settings = &config.settings;
    let registry = Registry::new(config.registry.as_ref())?;
    // Output ids first: an unregistered schema stops the start with its subject named.
    let routes = Routes::new(&config.kafka.topics, &registry).await?;
    registry.warm(&config.kafka.topics).await;
    let core_settings = settings.core_settings();
    let fingerprint = settings_fingerprint(&core_settings, settings);
    let mut feed = CompactedReader::new(
        &config.kafka.brokers,
        &config.kafka.topics.instruments(),
        "processor-instruments",
    )?;
    // A missing topic stops the start ("run `strikeflow migrate`") instead of waiting.
    feed.assign_new_partitions().await?;
    // Chains need their strikes before their ticks: read the master to its end first.
    let master = feed
        .catch_up(KAFKA_TIMEOUT, |msg| decode_instrument(msg, registry.ids()))
        .await;
    let mut factory = CoreFactory {
        settings: core_settings,
        indicators: settings.indicator_bank()?,
        fingerprint,
        master,
        registry: registry.clone(),
    };

    let transactional_id = format!("{}-{}", settings.group_id, settings.instance_id);
    let producer: FutureProducer = producer_config(&config.kafka.brokers)
        .set("transactional.id", &transactional_id)
        .set(
            "transaction.timeout.ms",
            settings.transaction_timeout_ms.to_string(),
        )
        .set(
            "message.max.bytes",
            Topics::STATE_MAX_MESSAGE_BYTES.to_string(),
        )
        .create()?;
    {
        // Fences a predecessor with the same id and aborts whatever it left open.
        let producer = producer.clone();
        blocking(move || producer.init_transactions(KAFKA_TIMEOUT)).await?;
    }
    let mut outbox = Outbox::new(producer);
    let consumer: Arc<TicksConsumer> = Arc::new(
        consumer_config(&config.kafka.brokers, &settings.group_id)
            .set("enable.auto.commit", "false")
            // Eager rebalancing: a rebalance revokes everything and positions restart at
            // the committed offsets, which is what a restore from the committed state needs.
            .set("partition.assignment.strategy", "roundrobin")
            .set(
                "session.timeout.ms",
                settings.session_timeout_ms.to_string(),
            )
            .create_with_context(RebalanceCounter::default())?,
    );
    consumer.subscribe(&[&routes.ticks])?;

    let mut stage = Stage {
        config: &config,
        routes: &routes,
        consumer,
        partitions: BTreeMap::new(),
        rebalances_seen: 0,
    };
    let collector = BatchCollector::new(
        "processor",
        settings.batch_max,
        Duration::from_millis(settings.batch_wait_ms),
    );
    // Records borrow this handle, not `stage`, so a record can be applied (and the stage
    // restored) while it is held, without copying it.
    let consumer = stage.consumer.clone();
    // A rebalance happens inside `recv`, which only returns with a record: restore right
    // after it even when no record follows, so a new owner is ready before data arrives.
    let mut rebalance_check = tokio::time::interval(Duration::from_millis(200));
    info!(topic = %routes.ticks, group = %settings.group_id, %transactional_id, "processor started");

    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = rebalance_check.tick() => {
                if stage.rebalanced() {
                    stage.restore_all(&factory, false).await?;
                }
                continue;
            }
            msg = feed.recv() => {
                registry.resolve(msg.payload().unwrap_or_default()).await;
                if let Some(instrument) = decode_instrument(&msg, registry.ids()) {
                    for partition in stage.partitions.values_mut() {
                        register(&mut partition.core, &instrument);
                    }
                    factory.master.push(instrument);
                }
                continue;
            }
            msg = collector.next(&consumer) => msg?,
        };
        let mut batch = Batch::default();
        for msg in &collector.fill(&consumer, first).await? {
            stage.take(&factory, msg, &mut batch).await?;
        }
        if stage.rebalanced() {
            // The rebalance happened after the last record: nothing of this batch may be
            // committed under the new generation.
            stage.restore_all(&factory, false).await?;
            continue;
        }
        if let Err(e) = stage.commit(&factory, &mut outbox, batch, false).await {
            if !is_abortable(&e) {
                return Err(e);
            }
            warn!(error = %e, "transaction aborted; restoring from the committed state");
            abort(&outbox).await?;
            stage.restore_all(&factory, true).await?;
        }
    }
    // A final snapshot of every partition makes the next start replay nothing.
    if !stage.partitions.is_empty() && !stage.rebalanced() {
        stage
            .commit(&factory, &mut outbox, Batch::default(), true)
            .await?;
    }
    feed.close().await;
    info!("processor stopped");
    Ok(())
}
