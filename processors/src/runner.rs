//! The Kafka shell around [`TickProcessor`]: exactly-once consume–transform–produce.
//!
//! Each assigned ticks partition has its own core, so its outputs are a function of that
//! partition's log alone. Per batch, one Kafka transaction carries the outputs, a snapshot
//! of the state of every partition whose snapshot is due (to the compacted
//! `processor-state.v1`), and the next input offsets, sent with the group metadata so a
//! member that lost its partitions in a rebalance cannot commit them. Each committed offset
//! carries, as metadata, where that partition's latest snapshot is (`<partition>:<offset>`
//! of the state topic).
//!
//! Restoring a partition (on start, after a rebalance, after an aborted transaction) reads
//! the committed offset `C` and its snapshot taken at offset `S <= C`, replays the ticks in
//! `[S, C)` through the restored core without publishing (their outputs were committed
//! with them), and continues at `C`. Downstream readers use `read_committed`, so they see
//! each output exactly once whatever crashed when.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use strikeflow_kafka::rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, ConsumerGroupMetadata, Rebalance, StreamConsumer,
};
use strikeflow_kafka::rdkafka::error::KafkaError as RdKafkaError;
use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Message};
use strikeflow_kafka::rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use strikeflow_kafka::rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use strikeflow_kafka::{consumer_config, producer_config, DeadLetter, KafkaError, Outbox};
use strikeflow_schemas::{decode, encode, ChainKey, CodecError, Instrument, Tick, Topics};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chain::{ChainSettings, ReferenceChoice};
use crate::core::{CoreSettings, Output, SnapshotError, TickProcessor};
use crate::indicator_bank::{IndicatorBank, IndicatorChoice};
use crate::instruments::InstrumentFeed;
use crate::pricing::{Convention, DayCount, Pricer};
use crate::ProcessorError;

/// Longest a blocking Kafka call (metadata, committed offsets, transaction steps) may take.
const KAFKA_TIMEOUT: Duration = Duration::from_secs(30);

/// Configuration of the processor stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ProcessorConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic names (with the deployment's prefix).
    pub topics: Topics,
    /// Consumer group shared by all processor instances; partitions are split among them.
    pub group_id: String,
    /// This instance's name in the group, stable across its restarts (default: the host
    /// name). It makes the transactional id `<group_id>-<instance_id>`, so a restarted
    /// instance aborts what its crashed predecessor left open instead of waiting for the
    /// transaction timeout. Two live instances must not share it.
    pub instance_id: String,
    /// How far behind its partition's newest tick a tick may arrive and still count.
    pub allowed_lateness_ms: u64,
    /// Most ticks handled per batch (one Kafka transaction for outputs and offsets).
    pub batch_max: usize,
    /// Longest wait to fill a batch once its first tick arrived.
    pub batch_wait_ms: u64,
    /// How often each partition's state is snapshotted into the transaction. A restart
    /// replays (without publishing) the ticks since the last snapshot, so this bounds the
    /// restart work; a snapshot of full NIFTY and BANKNIFTY chains is a few hundred KiB.
    pub snapshot_interval_ms: u64,
    /// Kafka `transaction.timeout.ms`: how long a crashed instance's open transaction can
    /// hold back `read_committed` readers if the instance does not come back.
    pub transaction_timeout_ms: u64,
    /// Kafka `session.timeout.ms`: how long the group waits for a crashed instance before
    /// giving its partitions to the others (librdkafka's 45 s default is long for live
    /// dashboards; a clean shutdown leaves the group at once either way).
    pub session_timeout_ms: u64,
    /// Option pricing and chain analytics.
    pub analytics: AnalyticsConfig,
    /// Indicators computed on every instrument's bars (default: the brief's dashboard set).
    pub indicators: Vec<IndicatorChoice>,
    /// Bar lengths, in minutes, the indicators run on.
    pub timeframes: Vec<u32>,
}

/// Pricing convention of implied volatilities and Greeks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConventionName {
    /// Black-76 on the forward (brokers: Sensibull, Kite), rate `rate`.
    Black76,
    /// Black–Scholes on spot with the rate `rate` (NSE publishes IV with 10%).
    Nse,
}

/// Year fraction used for time to expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayCountName {
    /// Minutes to 15:30 IST on expiry day over minutes in 365 days.
    Act365,
    /// Trading sessions over 252.
    Trading252,
}

/// `[processor.analytics]`: conventions that change the numbers, and emission shape.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AnalyticsConfig {
    /// `black76` (default) or `nse`.
    pub convention: ConventionName,
    /// Rate for the convention: default 0 under Black-76, 0.10 under NSE.
    pub rate: Option<f64>,
    /// `act365` (default) or `trading252`.
    pub day_count: DayCountName,
    /// ATM is the strike nearest the forward (`forward`, default) or the spot (`spot`).
    pub reference: String,
    /// Moneyness buckets per side (ITM1..ITMn, OTM1..OTMn).
    pub moneyness_levels: u32,
    /// ΔOI window in minutes.
    pub oi_window_minutes: u32,
    /// Strike and chain analytics cadence in event-time milliseconds (and at minute close).
    pub emit_every_ms: u64,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            convention: ConventionName::Black76,
            rate: None,
            day_count: DayCountName::Act365,
            reference: "forward".into(),
            moneyness_levels: 5,
            oi_window_minutes: 15,
            emit_every_ms: 1_000,
        }
    }
}

impl AnalyticsConfig {
    /// The engine settings these names stand for.
    pub fn chain_settings(&self) -> Result<ChainSettings, ProcessorError> {
        let convention = match self.convention {
            ConventionName::Black76 => Convention::Black76 {
                rate: self.rate.unwrap_or(0.0),
            },
            ConventionName::Nse => Convention::BlackScholesSpot {
                rate: self.rate.unwrap_or(Convention::NSE_RATE),
            },
        };
        let reference = match self.reference.as_str() {
            "forward" => ReferenceChoice::Forward,
            "spot" => ReferenceChoice::Spot,
            other => {
                return Err(ProcessorError::Config(format!(
                    "reference must be forward or spot, not {other:?}"
                )))
            }
        };
        if self.emit_every_ms == 0 {
            return Err(ProcessorError::Config(
                "emit_every_ms must be positive".into(),
            ));
        }
        Ok(ChainSettings {
            pricer: Pricer::new(convention),
            day_count: match self.day_count {
                DayCountName::Act365 => DayCount::Act365,
                DayCountName::Trading252 => DayCount::Trading252,
            },
            reference,
            moneyness_levels: self.moneyness_levels,
            oi_window_minutes: self.oi_window_minutes,
            emit_every_micros: i64::try_from(self.emit_every_ms)
                .unwrap_or(i64::MAX / 1_000)
                .saturating_mul(1_000),
        })
    }
}

impl Default for ProcessorConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".into(),
            topics: Topics::default(),
            group_id: "strikeflow-processors".into(),
            instance_id: host_name(),
            allowed_lateness_ms: 2_000,
            batch_max: 5_000,
            batch_wait_ms: 50,
            snapshot_interval_ms: 10_000,
            transaction_timeout_ms: 10_000,
            session_timeout_ms: 10_000,
            analytics: AnalyticsConfig::default(),
            indicators: IndicatorChoice::defaults(),
            timeframes: vec![1, 3, 5, 15],
        }
    }
}

/// The host name, the default instance id (stable across restarts on one host or pod).
fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "processor".into())
}

/// Topic names the runner reads and writes, resolved once.
struct Names {
    ticks: String,
    bars: String,
    dead_letters: String,
    late: String,
    strikes: String,
    chains: String,
    moneyness: String,
    indicators: String,
    state: String,
}

impl Names {
    fn new(topics: &Topics) -> Self {
        Self {
            ticks: topics.ticks(),
            bars: topics.bars(),
            dead_letters: topics.dead_letter(&topics.ticks()),
            late: topics.late(),
            strikes: topics.strikes(),
            chains: topics.chains(),
            moneyness: topics.moneyness(),
            indicators: topics.indicators(),
            state: topics.processor_state(),
        }
    }
}

/// Counts the consumer's rebalances, so the loop notices that its assignment (and the
/// positions of its partitions) changed under it and restores its cores.
#[derive(Default)]
struct RebalanceCounter {
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

type TicksConsumer = StreamConsumer<RebalanceCounter>;

/// What shapes a core's state: lateness, pricing and chain settings, indicators and
/// timeframes. Written into every snapshot; a snapshot with another one is refused, since
/// its state would not line up with this run's series.
fn settings_fingerprint(settings: &CoreSettings, config: &ProcessorConfig) -> String {
    format!(
        "{settings:?} indicators={:?} timeframes={:?}",
        config.indicators, config.timeframes
    )
}

/// Everything needed to build or restore one partition's core.
#[derive(Clone)]
struct CoreFactory {
    settings: CoreSettings,
    indicators: IndicatorBank,
    /// What shaped the state; a snapshot taken under other settings is refused.
    fingerprint: String,
    master: Vec<Instrument>,
}

impl CoreFactory {
    fn empty(&self) -> TickProcessor {
        self.with_master(TickProcessor::new(
            self.settings.clone(),
            self.indicators.clone(),
        ))
    }

    fn restore(&self, bytes: &[u8]) -> Result<TickProcessor, SnapshotError> {
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

fn register(core: &mut TickProcessor, instrument: &Instrument) {
    if let Err(e) = core.on_instrument(instrument) {
        metrics::counter!("processor_instrument_errors_total").increment(1);
        warn!(token = instrument.instrument_token, error = %e, "instrument not registered");
    }
}

/// One assigned ticks partition: its core and where it stands.
struct Partition {
    core: TickProcessor,
    /// Offset of the next record the core expects; anything older was already applied.
    next_offset: i64,
    /// `<partition>:<offset>` of this partition's latest snapshot in the state topic.
    snapshot_at: Option<String>,
    last_snapshot: Instant,
}

/// A record that could not be decoded, owed to the dead-letter topic in this transaction.
struct Rejected {
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    reason: String,
}

/// The work of one transaction, not yet published.
#[derive(Default)]
struct Batch {
    outputs: Vec<Output>,
    rejected: Vec<Rejected>,
    touched: BTreeSet<i32>,
    ticks: u64,
}

/// Feeds one ticks record to a core: the one code path for live records and for replay.
fn apply_record(
    core: &mut TickProcessor,
    payload: &[u8],
    reference: bool,
    out: &mut Vec<Output>,
) -> Result<(), CodecError> {
    let tick = decode::<Tick>(payload)?;
    if reference {
        core.on_reference_tick(&tick, out);
    } else {
        core.on_tick(tick, out);
    }
    Ok(())
}

/// Runs the processor stage until `shutdown` is cancelled or a fatal Kafka error occurs.
pub async fn run(
    config: ProcessorConfig,
    shutdown: CancellationToken,
) -> Result<(), ProcessorError> {
    let names = Names::new(&config.topics);
    let indicators = IndicatorBank::new(&config.indicators, &config.timeframes)
        .map_err(|e| ProcessorError::Config(format!("indicators: {e}")))?;
    let settings = CoreSettings {
        allowed_lateness_micros: i64::try_from(config.allowed_lateness_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000),
        chain: config.analytics.chain_settings()?,
    };
    if config.instance_id.is_empty() {
        return Err(ProcessorError::Config(
            "instance_id must not be empty".into(),
        ));
    }
    let fingerprint = settings_fingerprint(&settings, &config);
    let feed = InstrumentFeed::start(
        &config.brokers,
        &config.topics.instruments(),
        &config.group_id,
    )?;
    // Chains need their strikes before their ticks: read the master to its end first.
    let master = feed.catch_up(Duration::from_secs(30)).await?;
    let mut factory = CoreFactory {
        settings,
        indicators,
        fingerprint,
        master,
    };

    let transactional_id = format!("{}-{}", config.group_id, config.instance_id);
    let producer: FutureProducer = producer_config(&config.brokers)
        .set("transactional.id", &transactional_id)
        .set(
            "transaction.timeout.ms",
            config.transaction_timeout_ms.to_string(),
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
        consumer_config(&config.brokers, &config.group_id)
            .set("enable.auto.commit", "false")
            // Eager rebalancing: a rebalance revokes everything and positions restart at
            // the committed offsets, which is what a restore from the committed state needs.
            .set("partition.assignment.strategy", "roundrobin")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .create_with_context(RebalanceCounter::default())?,
    );
    consumer.subscribe(&[&names.ticks])?;

    let mut stage = Stage {
        config: &config,
        names: &names,
        consumer,
        partitions: BTreeMap::new(),
        rebalances_seen: 0,
    };
    let batch_wait = Duration::from_millis(config.batch_wait_ms);
    // Records borrow this handle, not `stage`, so a record can be applied (and the stage
    // restored) while it is held, without copying it.
    let consumer = stage.consumer.clone();
    // A rebalance happens inside `recv`, which only returns with a record: restore right
    // after it even when no record follows, so a new owner is ready before data arrives.
    let mut rebalance_check = tokio::time::interval(Duration::from_millis(200));
    info!(topic = %names.ticks, group = %config.group_id, %transactional_id, "processor started");

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
                if let Some(instrument) = InstrumentFeed::decode(msg) {
                    for partition in stage.partitions.values_mut() {
                        register(&mut partition.core, &instrument);
                    }
                    factory.master.push(instrument);
                }
                continue;
            }
            msg = consumer.recv() => match msg {
                Ok(msg) => msg,
                Err(e) => {
                    survive_consumer_error(e)?;
                    continue;
                }
            },
        };
        let mut batch = Batch::default();
        stage.take(&factory, first, &mut batch).await?;
        let deadline = tokio::time::Instant::now() + batch_wait;
        while batch.ticks < config.batch_max as u64 {
            let next = match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(next)) => next,
                Ok(Err(e)) => {
                    survive_consumer_error(e)?;
                    break;
                }
                Err(_elapsed) => break,
            };
            stage.take(&factory, next, &mut batch).await?;
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
    info!("processor stopped");
    Ok(())
}

/// Lets the loop carry on after a consumer error librdkafka recovers from by itself (a
/// broker restarting, a connection dropped); a fatal one stops the stage. Either way no
/// record is lost: positions only move with records actually delivered.
fn survive_consumer_error(e: RdKafkaError) -> Result<(), ProcessorError> {
    match e {
        RdKafkaError::MessageConsumption(code) => {
            metrics::counter!("processor_consumer_errors_total").increment(1);
            warn!(error = %code, "consumer error; continuing");
            Ok(())
        }
        fatal => Err(fatal.into()),
    }
}

/// Whether a failed transaction can be aborted and retried (anything else, e.g. being
/// fenced by another instance with the same transactional id, stops the stage).
fn is_abortable(e: &ProcessorError) -> bool {
    match e {
        ProcessorError::Kafka(KafkaError::Client(RdKafkaError::Transaction(t))) => {
            t.txn_requires_abort() || t.is_retriable()
        }
        // A failed delivery inside a transaction leaves it to be aborted.
        ProcessorError::Kafka(KafkaError::Client(_)) => true,
        _ => false,
    }
}

async fn abort(outbox: &Outbox) -> Result<(), ProcessorError> {
    let producer = outbox.producer().clone();
    blocking(move || producer.abort_transaction(KAFKA_TIMEOUT)).await
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T, F>(f: F) -> Result<T, ProcessorError>
where
    F: FnOnce() -> Result<T, RdKafkaError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProcessorError::State(format!("blocking Kafka call failed: {e}")))?
        .map_err(ProcessorError::from)
}

/// The consumer side of the loop and the cores of the assigned partitions.
struct Stage<'a> {
    config: &'a ProcessorConfig,
    names: &'a Names,
    consumer: Arc<TicksConsumer>,
    partitions: BTreeMap<i32, Partition>,
    rebalances_seen: u64,
}

impl Stage<'_> {
    fn rebalanced(&self) -> bool {
        self.consumer.context().count() != self.rebalances_seen
    }

    /// Applies one record to its partition's core, restoring first when the assignment
    /// changed since the last record (the batch so far is then discarded: it belongs to a
    /// generation that may no longer commit).
    async fn take<M: Message>(
        &mut self,
        factory: &CoreFactory,
        msg: M,
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
        if let Err(e) = apply_record(
            &mut partition.core,
            payload,
            strikeflow_kafka::is_reference_copy(&msg),
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
    async fn restore_all(
        &mut self,
        factory: &CoreFactory,
        rewind: bool,
    ) -> Result<(), ProcessorError> {
        self.rebalances_seen = self.consumer.context().count();
        self.partitions.clear();
        let started = Instant::now();
        let consumer = self.consumer.clone();
        let brokers = self.config.brokers.clone();
        let ticks = self.names.ticks.clone();
        let state = self.names.state.clone();
        let factory = factory.clone();
        let restored = tokio::task::spawn_blocking(move || {
            restore_partitions(&consumer, &brokers, &ticks, &state, &factory, rewind)
        })
        .await
        .map_err(|e| ProcessorError::State(format!("restore failed: {e}")))??;
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

    /// Publishes a batch in one transaction: outputs, due snapshots (all of them when
    /// `snapshot_all`), and the next offsets with the group metadata.
    async fn commit(
        &mut self,
        factory: &CoreFactory,
        outbox: &mut Outbox,
        mut batch: Batch,
        snapshot_all: bool,
    ) -> Result<(), ProcessorError> {
        let names = self.names;
        outbox.producer().begin_transaction()?;
        publish(outbox, names, &mut batch.outputs)?;
        for r in &batch.rejected {
            let letter = DeadLetter {
                reason: &r.reason,
                stage: "processor",
                source: Some((&names.ticks, r.partition, r.offset)),
                position: None,
            };
            outbox.dead_letter(&names.dead_letters, r.key.as_deref(), &r.payload, &letter)?;
        }
        let interval = Duration::from_millis(self.config.snapshot_interval_ms);
        let now = Instant::now();
        let mut snapshots = Vec::new();
        for (&id, partition) in &self.partitions {
            let due = snapshot_all
                || (batch.touched.contains(&id)
                    && (partition.snapshot_at.is_none()
                        || now.duration_since(partition.last_snapshot) >= interval));
            if !due {
                continue;
            }
            let state = partition
                .core
                .snapshot(&factory.fingerprint)
                .map_err(|e| ProcessorError::State(e.to_string()))?;
            let bytes = snapshot_record(partition.next_offset, &state);
            let key = state_key(&self.config.group_id, id);
            let delivery = outbox
                .producer()
                .send_result(FutureRecord::to(&names.state).key(&key).payload(&bytes))
                .map_err(|(e, _)| ProcessorError::from(e))?;
            snapshots.push((id, bytes.len(), delivery));
        }
        outbox.flush().await?;
        for (id, size, delivery) in snapshots {
            let done = delivery
                .await
                .map_err(|_| ProcessorError::Kafka(KafkaError::ProducerGone))?
                .map_err(|(e, _)| ProcessorError::from(e))?;
            metrics::histogram!("processor_snapshot_bytes").record(size as f64);
            if let Some(partition) = self.partitions.get_mut(&id) {
                partition.snapshot_at = Some(format!("{}:{}", done.partition, done.offset));
                partition.last_snapshot = now;
            }
        }
        let mut offsets = TopicPartitionList::new();
        for (&id, partition) in &self.partitions {
            if !(snapshot_all || batch.touched.contains(&id)) {
                continue;
            }
            offsets.add_partition_offset(
                &names.ticks,
                id,
                Offset::Offset(partition.next_offset),
            )?;
            if let (Some(at), Some(mut elem)) = (
                &partition.snapshot_at,
                offsets.find_partition(&names.ticks, id),
            ) {
                elem.set_metadata(at);
            }
        }
        let group: ConsumerGroupMetadata = self
            .consumer
            .group_metadata()
            .ok_or_else(|| ProcessorError::Config("consumer has no group metadata".into()))?;
        let producer = outbox.producer().clone();
        let committing = Instant::now();
        blocking(move || {
            if offsets.count() > 0 {
                producer.send_offsets_to_transaction(&offsets, &group, KAFKA_TIMEOUT)?;
            }
            producer.commit_transaction(KAFKA_TIMEOUT)
        })
        .await?;
        metrics::histogram!("processor_commit_seconds").record(committing.elapsed().as_secs_f64());
        metrics::counter!("processor_ticks_total").increment(batch.ticks);
        // Event time per partition: `time() - processor_watermark_seconds` is how far behind
        // the live market each partition's closed bars and emissions are.
        for &id in &batch.touched {
            if let Some(watermark) = self.partitions.get(&id).and_then(|p| p.core.watermark()) {
                metrics::gauge!("processor_watermark_seconds", "partition" => id.to_string())
                    .set(watermark as f64 / 1e6);
            }
        }
        Ok(())
    }
}

/// A snapshot record: the ticks offset the state corresponds to (8 bytes, big-endian), then
/// the core's state.
fn snapshot_record(next_offset: i64, state: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(8 + state.len());
    record.extend_from_slice(&next_offset.to_be_bytes());
    record.extend_from_slice(state);
    record
}

/// The parts of a [`snapshot_record`].
fn split_snapshot(record: &[u8]) -> Option<(i64, &[u8])> {
    let (offset, state) = record.split_first_chunk::<8>()?;
    Some((i64::from_be_bytes(*offset), state))
}

/// Key of a partition's snapshot in the compacted state topic.
fn state_key(group: &str, partition: i32) -> String {
    format!("{group}/{partition}")
}

/// The blocking part of a restore: committed offsets and snapshot locations, the
/// snapshots themselves, and the replay of ticks since each snapshot.
fn restore_partitions(
    consumer: &TicksConsumer,
    brokers: &str,
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
    let reader = private_reader(brokers)?;
    // Knowing both topics' leaders up front keeps the first fetch of each from waiting
    // on a metadata refresh.
    reader.fetch_metadata(Some(ticks), KAFKA_TIMEOUT)?;
    reader.fetch_metadata(Some(state_topic), KAFKA_TIMEOUT)?;
    let mut seek = TopicPartitionList::new();
    for id in ids {
        let elem = committed.find_partition(ticks, id);
        let (offset, location) = match &elem {
            Some(e) => (e.offset(), e.metadata().to_owned()),
            None => (Offset::Invalid, String::new()),
        };
        let (core, next_offset, snapshot_at) = match (offset, parse_location(&location)) {
            (Offset::Offset(committed), Some((state_partition, state_offset))) => {
                let started = Instant::now();
                let (mut core, from) =
                    read_snapshot(&reader, factory, state_topic, state_partition, state_offset)?;
                let read = started.elapsed();
                replay(&reader, ticks, id, from, committed, &mut core)?;
                info!(
                    partition = id,
                    snapshot_offset = from,
                    committed,
                    read_snapshot = ?read,
                    replay = ?started.elapsed().saturating_sub(read),
                    "partition restored from its snapshot"
                );
                (core, committed, Some(location))
            }
            (Offset::Offset(committed), None) => {
                warn!(
                    partition = id,
                    committed,
                    "committed offset without a state snapshot: starting with empty state there"
                );
                (factory.empty(), committed, None)
            }
            _ => (factory.empty(), 0, None),
        };
        seek.add_partition_offset(ticks, id, Offset::Offset(next_offset))?;
        restored.insert(
            id,
            Partition {
                core,
                next_offset,
                snapshot_at,
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

/// `<partition>:<offset>` of a snapshot, as stored in committed offset metadata.
fn parse_location(text: &str) -> Option<(i32, i64)> {
    let (partition, offset) = text.split_once(':')?;
    Some((partition.parse().ok()?, offset.parse().ok()?))
}

/// A consumer outside any group, for reading one snapshot and replaying ticks.
fn private_reader(brokers: &str) -> Result<BaseConsumer, ProcessorError> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "strikeflow-processor-restore")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // The reader hops between partitions; a long-polling fetch on the previous one
        // would delay the next by up to the 500 ms default.
        .set("fetch.wait.max.ms", "10")
        // Default fetch sizes: the broker returns a snapshot larger than them anyway (a
        // fetch always carries at least one whole record batch).
        .create()?)
}

/// Reads the snapshot at `offset` and returns the restored core and the ticks offset it
/// was taken at.
fn read_snapshot(
    reader: &BaseConsumer,
    factory: &CoreFactory,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(TickProcessor, i64), ProcessorError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    reader.assign(&tpl)?;
    let Some(msg) = next_record(reader)? else {
        return Err(ProcessorError::State(format!(
            "snapshot {topic}/{partition}@{offset} not readable in {KAFKA_TIMEOUT:?}"
        )));
    };
    if msg.offset() != offset {
        return Err(ProcessorError::State(format!(
            "snapshot {topic}/{partition}@{offset} is gone (read offset {} instead)",
            msg.offset()
        )));
    }
    let payload = msg.payload().unwrap_or_default();
    let (taken_at, bytes) = split_snapshot(payload).ok_or_else(|| {
        ProcessorError::State(format!(
            "snapshot {topic}/{partition}@{offset} is truncated"
        ))
    })?;
    let core = factory.restore(bytes).map_err(|e| {
        ProcessorError::State(format!("snapshot {topic}/{partition}@{offset}: {e}"))
    })?;
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

/// Replays `[from, to)` of a ticks partition through `core`, discarding the outputs: they
/// were published and committed together with offset `to`.
fn replay(
    reader: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
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
            return Err(ProcessorError::State(format!(
                "replaying {topic}/{partition} [{from}, {to}) stalled after {replayed} records"
            )));
        };
        if msg.offset() >= to {
            break;
        }
        // Undecodable records were dead-lettered the first time; they change no state.
        let _ = apply_record(
            core,
            msg.payload().unwrap_or_default(),
            strikeflow_kafka::is_reference_copy(&msg),
            &mut discarded,
        );
        discarded.clear();
        replayed += 1;
        if msg.offset() + 1 >= to {
            break;
        }
    }
    metrics::counter!("processor_replayed_ticks_total").increment(replayed);
    Ok(())
}

/// The Kafka key of a chain's outputs: the same chain key its ticks travel under.
fn chain_key(underlying: &str, expiry: i32) -> String {
    ChainKey {
        underlying: underlying.to_owned(),
        expiry: Some(expiry),
    }
    .to_string()
}

/// Enqueues every output without waiting; the caller flushes the outbox once per batch.
fn publish(
    outbox: &mut Outbox,
    names: &Names,
    outputs: &mut Vec<Output>,
) -> Result<(), ProcessorError> {
    for output in outputs.drain(..) {
        match output {
            Output::Bar(bar) => {
                outbox.send(
                    &names.bars,
                    &bar.instrument_token.to_string(),
                    &encode(&bar)?,
                )?;
                metrics::counter!("processor_bars_total").increment(1);
            }
            Output::Late(tick) => {
                let letter = DeadLetter {
                    reason: "late: its bar had already closed",
                    stage: "processor",
                    source: None,
                    position: None,
                };
                let key = tick.instrument_token.to_string();
                // Late ticks are an expected market condition, not bad input: counted, and
                // logged at debug, since a lagging feed can make thousands a second.
                tracing::debug!(
                    token = tick.instrument_token,
                    ts = tick.exchange_ts,
                    "late tick"
                );
                metrics::counter!("processor_late_ticks_total").increment(1);
                outbox.send_record(
                    FutureRecord::to(&names.late)
                        .key(&key)
                        .payload(&encode(&tick)?)
                        .headers(letter.headers()),
                )?;
            }
            Output::Strike(strike) => {
                let key = chain_key(&strike.underlying, strike.expiry);
                outbox.send(&names.strikes, &key, &encode(&strike)?)?;
            }
            Output::Chain(chain) => {
                let key = chain_key(&chain.underlying, chain.expiry);
                outbox.send(&names.chains, &key, &encode(&chain)?)?;
            }
            Output::Moneyness(point) => {
                let key = chain_key(&point.underlying, point.expiry);
                outbox.send(&names.moneyness, &key, &encode(&point)?)?;
            }
            Output::Indicator(point) => {
                outbox.send(
                    &names.indicators,
                    &point.instrument_token.to_string(),
                    &encode(&point)?,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_changes_with_everything_that_shapes_state() {
        let config = ProcessorConfig::default();
        let settings = |lateness| CoreSettings::with_lateness(lateness);
        let base = settings_fingerprint(&settings(2_000_000), &config);
        assert_eq!(base, settings_fingerprint(&settings(2_000_000), &config));
        assert_ne!(base, settings_fingerprint(&settings(3_000_000), &config));
        let mut other = config.clone();
        other.timeframes = vec![1, 5];
        assert_ne!(base, settings_fingerprint(&settings(2_000_000), &other));
        let mut other = config.clone();
        other.indicators[0].params.insert("period".into(), 10.0);
        assert_ne!(base, settings_fingerprint(&settings(2_000_000), &other));
        let mut other = config.clone();
        other.indicators.truncate(1);
        assert_ne!(base, settings_fingerprint(&settings(2_000_000), &other));
        let mut nse = CoreSettings::with_lateness(2_000_000);
        nse.chain.pricer = Pricer::new(Convention::BlackScholesSpot { rate: 0.1 });
        assert_ne!(base, settings_fingerprint(&nse, &config));
    }

    #[test]
    fn snapshot_record_carries_its_offset() {
        let record = snapshot_record(1_234_567_890_123, b"state");
        assert_eq!(
            split_snapshot(&record),
            Some((1_234_567_890_123, &b"state"[..]))
        );
        assert_eq!(split_snapshot(&record[..7]), None, "shorter than an offset");
    }

    #[test]
    fn snapshot_location_parses_only_partition_and_offset() {
        assert_eq!(parse_location("0:4711"), Some((0, 4711)));
        assert_eq!(parse_location(""), None);
        assert_eq!(parse_location("0"), None);
        assert_eq!(parse_location("x:1"), None);
        assert_eq!(parse_location("0:1:2"), None);
    }

    #[test]
    fn delivery_failures_abort_the_transaction_and_other_errors_stop() {
        use strikeflow_kafka::rdkafka::types::RDKafkaErrorCode;
        let delivery = ProcessorError::from(RdKafkaError::MessageProduction(
            RDKafkaErrorCode::MessageTimedOut,
        ));
        assert!(is_abortable(&delivery));
        let config = ProcessorError::Config("x".into());
        assert!(!is_abortable(&config));
    }
}
