//! Publishing a simulated session to Kafka.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;
use strikeflow_kafka::RegistryConnection;
use strikeflow_schemas::Topics;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::metrics::{self, Source};
use crate::publisher::TickPublisher;
use crate::replay::TickRecorder;
use crate::simulator::{MarketSimulator, SimulatorConfig};
use crate::IngestError;

/// Configuration of `strikeflow ingest simulate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SimulateConfig {
    /// Kafka brokers and their security settings (from `[kafka]`, set by the binary).
    #[serde(skip)]
    pub brokers: strikeflow_kafka::Brokers,
    /// Topic names (with the deployment's prefix).
    pub topics: Topics,
    /// The schema registry (`[registry]`), which decides the encoding; `None`: single
    /// object.
    #[serde(skip)]
    pub registry: Option<RegistryConnection>,
    /// The simulated market.
    pub simulator: SimulatorConfig,
    /// Stop after this many ticks (None: until shut down).
    pub max_ticks: Option<u64>,
    /// Ticks per second of wall time (None: as fast as Kafka takes them).
    pub rate: Option<f64>,
    /// Also write every generated tick to this recording (`.ndjson` or `.csv`), for replay.
    pub record: Option<PathBuf>,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        Self {
            brokers: strikeflow_kafka::Brokers::default(),
            topics: Topics::default(),
            registry: None,
            simulator: SimulatorConfig::default(),
            max_ticks: None,
            rate: Some(200.0),
            record: None,
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
    /// Ticks the validator sent to the dead-letter topic instead.
    pub rejected: u64,
    /// End-of-session markers written (one per simulated session that ended).
    pub markers: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
}

/// Publishes the instrument master, then ticks, until `max_ticks` or `shutdown`.
/// Everything enqueued is acknowledged before this returns.
///
/// Right after each simulated session's last tick (15:29:59.x IST) an event-time marker at
/// the close is written into every ticks partition, so the session's last bars and
/// analytics are published without waiting for the next session. A run stopped inside a
/// session (`max_ticks` or shutdown) writes none: the session did not end.
pub async fn run_simulation(
    config: SimulateConfig,
    shutdown: CancellationToken,
) -> Result<SimulationReport, IngestError> {
    metrics::describe();
    let started = Instant::now();
    let mut market = MarketSimulator::new(&config.simulator)?;
    // Simulated time is not wall time, so there is no "in the future" check.
    let mut publisher = TickPublisher::connect(&config.brokers, &config.topics, None)?;
    publisher.use_registry(config.registry.as_ref()).await?;
    let instruments = publisher.publish_instruments(market.instruments()).await?;
    info!(instruments, rate = ?config.rate, max_ticks = ?config.max_ticks, "simulation started");

    let mut recorder = config
        .record
        .as_deref()
        .map(TickRecorder::create)
        .transpose()?;
    let mut sent = 0u64;
    let mut pacer = config
        .rate
        .filter(|r| r.is_finite() && *r > 0.0)
        .map(|rate| {
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
        let budget = config
            .max_ticks
            .map_or(budget, |max| budget.min(max - sent));
        for seq in sent..sent + budget {
            let tick = market.next_tick();
            if let Some(recorder) = recorder.as_mut() {
                recorder.record(&tick)?;
            }
            publisher
                .publish(&tick, || format!("simulator:{seq}"), None)
                .await?;
            if let Some(close) = market.session_over() {
                publisher
                    .publish_watermark(close, Source::Simulator.label())
                    .await?;
                metrics::watermark_markers(Source::Simulator).increment(1);
                info!(close, "simulated session closed");
            }
        }
        sent += budget;
        if pacer.is_none() {
            // Let other tasks (and the shutdown signal) in between bursts.
            tokio::task::yield_now().await;
        }
    }
    publisher.flush().await?;
    if let Some(recorder) = recorder {
        recorder.finish()?;
    }
    metrics::ticks(Source::Simulator).increment(publisher.published());
    let report = SimulationReport {
        instruments,
        ticks: publisher.published(),
        rejected: publisher.rejected(),
        markers: publisher.markers(),
        elapsed: started.elapsed(),
    };
    info!(ticks = report.ticks, rejected = report.rejected, elapsed = ?report.elapsed, "simulation finished");
    Ok(report)
}
