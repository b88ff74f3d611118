//! Publishing a simulated session to Kafka.

use std::time::{Duration, Instant};

use serde::Deserialize;
use strikeflow_kafka::Outbox;
use strikeflow_schemas::{encode_into, Topics};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::simulator::{MarketSimulator, SimulatorConfig};
use crate::IngestError;

/// Configuration of `strikeflow ingest simulate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SimulateConfig {
    /// Kafka bootstrap servers.
    pub brokers: String,
    /// Topic names (with the deployment's prefix).
    pub topics: Topics,
    /// The simulated market.
    pub simulator: SimulatorConfig,
    /// Stop after this many ticks (None: until shut down).
    pub max_ticks: Option<u64>,
    /// Ticks per second of wall time (None: as fast as Kafka takes them).
    pub rate: Option<f64>,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:19092".into(),
            topics: Topics::default(),
            simulator: SimulatorConfig::default(),
            max_ticks: None,
            rate: Some(200.0),
        }
    }
}

/// What a simulation run published.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulationReport {
    /// Instruments published to the instrument topic.
    pub instruments: usize,
    /// Ticks published and acknowledged.
    pub ticks: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Ticks enqueued between two waits for acknowledgements: bounds memory held by in-flight
/// deliveries without waiting on any single send.
const ACK_WINDOW: usize = 50_000;

/// Publishes the instrument master, then ticks, until `max_ticks` or `shutdown`.
/// Everything enqueued is acknowledged before this returns.
pub async fn run_simulation(config: SimulateConfig, shutdown: CancellationToken) -> Result<SimulationReport, IngestError> {
    let started = Instant::now();
    let mut market = MarketSimulator::new(&config.simulator)?;
    let mut outbox = Outbox::connect(&config.brokers)?;
    let (instruments_topic, ticks_topic) = (config.topics.instruments(), config.topics.ticks());

    let mut buf = Vec::with_capacity(256);
    for instrument in market.instruments() {
        encode_into(instrument, &mut buf)?;
        outbox.send(&instruments_topic, &instrument.instrument_token.to_string(), &buf)?;
    }
    outbox.flush().await?;
    // Chain keys per instrument, computed once: every tick of a chain goes to one partition.
    let keys: std::collections::HashMap<i64, String> = market
        .instruments()
        .iter()
        .map(|i| (i.instrument_token, i.chain_key().to_string()))
        .collect();
    info!(instruments = keys.len(), topic = %ticks_topic, rate = ?config.rate, max_ticks = ?config.max_ticks, "simulation started");

    let mut sent = 0u64;
    let mut pacer = config.rate.filter(|r| r.is_finite() && *r > 0.0).map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_millis(10));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        (interval, rate / 100.0, 0.0f64)
    });
    while config.max_ticks.is_none_or(|max| sent < max) && !shutdown.is_cancelled() {
        let budget = match pacer.as_mut() {
            Some((interval, per_slot, carry)) => {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = interval.tick() => {}
                }
                *carry += *per_slot;
                let whole = carry.floor();
                *carry -= whole;
                whole as u64
            }
            None => 1_000,
        };
        let budget = config.max_ticks.map_or(budget, |max| budget.min(max - sent));
        for _ in 0..budget {
            let tick = market.next_tick();
            encode_into(&tick, &mut buf)?;
            let key = keys.get(&tick.instrument_token).map_or("", String::as_str);
            outbox.send(&ticks_topic, key, &buf)?;
        }
        sent += budget;
        if outbox.pending() >= ACK_WINDOW {
            outbox.flush().await?;
        }
        if pacer.is_none() {
            // Let other tasks (and the shutdown signal) in between bursts.
            tokio::task::yield_now().await;
        }
    }
    outbox.flush().await?;
    metrics::counter!("ingest_ticks_total", "source" => "simulator").increment(sent);
    let report = SimulationReport { instruments: keys.len(), ticks: sent, elapsed: started.elapsed() };
    info!(ticks = report.ticks, elapsed = ?report.elapsed, "simulation finished");
    Ok(report)
}
