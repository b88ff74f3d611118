//! The Kafka shell around [`TickProcessor`]: consume ticks, publish bars, store offsets.
//!
//! Delivery is at-least-once: a batch's input offsets are stored only after every output of
//! that batch was acknowledged by the broker, and the sink upserts bars on their natural key,
//! so a replayed batch overwrites rather than duplicates.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use strikeflow_kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Message};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_kafka::{consumer_config, DeadLetter, Outbox};
use strikeflow_schemas::{decode, encode, ChainKey, Tick, Topics};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::chain::{ChainSettings, ReferenceChoice};
use crate::core::{CoreSettings, Output, TickProcessor};
use crate::indicator_bank::{IndicatorBank, IndicatorChoice};
use crate::instruments::InstrumentFeed;
use crate::pricing::{Convention, DayCount, Pricer};
use crate::ProcessorError;

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
    /// How far behind its partition's newest tick a tick may arrive and still count.
    pub allowed_lateness_ms: u64,
    /// Wall-clock quiet time after which a partition no longer holds the watermark back.
    pub idle_timeout_ms: u64,
    /// Most ticks handled per batch (one broker round trip for outputs and offsets).
    pub batch_max: usize,
    /// Longest wait to fill a batch once its first tick arrived.
    pub batch_wait_ms: u64,
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
            allowed_lateness_ms: 2_000,
            idle_timeout_ms: 3_000,
            batch_max: 5_000,
            batch_wait_ms: 50,
            analytics: AnalyticsConfig::default(),
            indicators: IndicatorChoice::defaults(),
            timeframes: vec![1, 3, 5, 15],
        }
    }
}

/// Topic names the runner reads and writes, resolved once.
struct Outputs {
    ticks: String,
    bars: String,
    dead_letters: String,
    late: String,
    strikes: String,
    chains: String,
    moneyness: String,
    indicators: String,
}

/// Runs the processor stage until `shutdown` is cancelled or a fatal Kafka error occurs.
pub async fn run(
    config: ProcessorConfig,
    shutdown: CancellationToken,
) -> Result<(), ProcessorError> {
    let topics = &config.topics;
    let names = Outputs {
        ticks: topics.ticks(),
        bars: topics.bars(),
        dead_letters: topics.dead_letter(&topics.ticks()),
        late: topics.late(),
        strikes: topics.strikes(),
        chains: topics.chains(),
        moneyness: topics.moneyness(),
        indicators: topics.indicators(),
    };
    let indicators = IndicatorBank::new(&config.indicators, &config.timeframes)
        .map_err(|e| ProcessorError::Config(format!("indicators: {e}")))?;
    let settings = CoreSettings {
        allowed_lateness_micros: i64::try_from(config.allowed_lateness_ms)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000),
        chain: config.analytics.chain_settings()?,
    };
    let mut core = TickProcessor::new(settings, indicators);
    let instruments =
        InstrumentFeed::start(&config.brokers, &topics.instruments(), &config.group_id)?;
    // Chains need their strikes before their ticks: read the master to its end first.
    instruments
        .catch_up(&mut core, Duration::from_secs(30))
        .await?;
    let consumer: StreamConsumer = consumer_config(&config.brokers, &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .create()?;
    consumer.subscribe(&[&names.ticks])?;
    let mut outbox = Outbox::connect(&config.brokers)?;

    let idle_timeout = Duration::from_millis(config.idle_timeout_ms);
    let batch_wait = Duration::from_millis(config.batch_wait_ms);
    let mut last_seen: HashMap<i32, Instant> = HashMap::new();
    let mut idle_check = tokio::time::interval(Duration::from_millis(500));
    let mut outputs = Vec::new();
    info!(topic = %names.ticks, group = %config.group_id, "processor started");

    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = idle_check.tick() => {
                let now = Instant::now();
                track_assignment(&consumer, &names.ticks, &mut core, &mut last_seen, now)?;
                for (&partition, seen) in &last_seen {
                    if now.duration_since(*seen) >= idle_timeout {
                        core.on_idle(partition, &mut outputs);
                    }
                }
                publish(&mut outbox, &names, &mut outputs)?;
                outbox.flush().await?;
                continue;
            }
            msg = instruments.recv() => {
                instruments.apply(msg, &mut core);
                continue;
            }
            msg = consumer.recv() => msg?,
        };
        track_assignment(
            &consumer,
            &names.ticks,
            &mut core,
            &mut last_seen,
            Instant::now(),
        )?;
        let deadline = tokio::time::Instant::now() + batch_wait;
        let mut next_offsets: HashMap<i32, i64> = HashMap::new();
        let mut message = Some(first);
        let mut count = 0u64;
        while let Some(msg) = message.take() {
            next_offsets.insert(msg.partition(), msg.offset() + 1);
            handle(&msg, &names, &mut core, &mut outbox, &mut outputs)?;
            count += 1;
            if count >= config.batch_max as u64 {
                break;
            }
            message = match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(next) => Some(next?),
                Err(_elapsed) => None,
            };
        }
        // Liveness for idle detection: once per batch is precise enough for a timeout of
        // seconds, and keeps the clock out of the per-message loop.
        let now = Instant::now();
        for &partition in next_offsets.keys() {
            last_seen.insert(partition, now);
        }
        publish(&mut outbox, &names, &mut outputs)?;
        outbox.flush().await?;
        metrics::counter!("processor_ticks_total").increment(count);

        let mut offsets = TopicPartitionList::new();
        for (partition, offset) in next_offsets {
            offsets.add_partition_offset(&names.ticks, partition, Offset::Offset(offset))?;
        }
        consumer.store_offsets(&offsets)?;
    }
    outbox.flush().await?;
    info!(late_ticks = core.late_ticks(), "processor stopped");
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

/// Registers newly assigned partitions with the core (they hold the watermark until they
/// deliver or go idle) and forgets revoked ones. `assignment()` is a local call.
fn track_assignment(
    consumer: &StreamConsumer,
    topic: &str,
    core: &mut TickProcessor,
    last_seen: &mut HashMap<i32, Instant>,
    now: Instant,
) -> Result<(), ProcessorError> {
    let assigned: Vec<i32> = consumer
        .assignment()?
        .elements_for_topic(topic)
        .iter()
        .map(|e| e.partition())
        .collect();
    for &partition in &assigned {
        if let std::collections::hash_map::Entry::Vacant(slot) = last_seen.entry(partition) {
            slot.insert(now);
            core.on_assigned(partition);
        }
    }
    last_seen.retain(|partition, _| {
        let kept = assigned.contains(partition);
        if !kept {
            core.on_revoked(*partition);
        }
        kept
    });
    Ok(())
}

/// Feeds one consumed message to the core, or dead-letters it when it is not a tick.
fn handle(
    msg: &BorrowedMessage<'_>,
    names: &Outputs,
    core: &mut TickProcessor,
    outbox: &mut Outbox,
    outputs: &mut Vec<Output>,
) -> Result<(), ProcessorError> {
    let payload = msg.payload().unwrap_or_default();
    match decode::<Tick>(payload) {
        Ok(tick) => core.on_tick(msg.partition(), tick, outputs),
        Err(e) => {
            let reason = e.to_string();
            let letter = DeadLetter {
                reason: &reason,
                stage: "processor",
                source: Some((&names.ticks, msg.partition(), msg.offset())),
                position: None,
            };
            outbox.dead_letter(&names.dead_letters, msg.key(), payload, &letter)?;
        }
    }
    Ok(())
}

/// Enqueues every output without waiting; the caller flushes the outbox once per batch.
fn publish(
    outbox: &mut Outbox,
    names: &Outputs,
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
                outbox.dead_letter(&names.late, Some(key.as_bytes()), &encode(&tick)?, &letter)?;
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
