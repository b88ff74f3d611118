//! The end-to-end bench's feed: simulated ticks stamped with the bench's clock, published at
//! a fixed rate through the project's publisher, on a thread of its own.
//!
//! Ticks carry no ingest time of their own (`strikeflow.Tick` has only `exchange_ts`, the
//! event time), so the feed makes the event time the ingest time, as a live feed's is: each
//! tick's `exchange_ts` is set, just before it is handed to the publisher, to the simulated
//! session's open plus the time since the bench started. Every later stage keeps
//! `exchange_ts`, so a WebSocket client (the tick channel's JSON carries it) and a query on
//! the stored rows can both tell when a tick entered the pipeline, on the same clock, with
//! no table on the side. Prices and the choice of instrument still come from the simulator;
//! only its clock is replaced, so event time runs at wall speed whatever the rate.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use strikeflow_ingest::{MarketSimulator, TickPublisher};
use strikeflow_schemas::{Instrument, Topics};
use tokio::sync::{mpsc, oneshot};

use crate::Config;

/// The name of the feed's thread, by which its CPU time is told apart in `/proc`.
pub(super) const THREAD: &str = "e2e-feed";

/// The bench's clock: what the feed stamps into ticks and what clients and the row poller
/// compare them with.
pub(super) struct Clock {
    origin: Instant,
    /// `exchange_ts` of the instant `origin`: the simulated session's first tick.
    base_micros: i64,
}

impl Clock {
    /// Microseconds since the origin, now.
    pub(super) fn now_micros(&self) -> i64 {
        i64::try_from(self.origin.elapsed().as_micros()).unwrap_or(i64::MAX)
    }

    /// The `exchange_ts` of a tick sent now.
    pub(super) fn stamp(&self) -> i64 {
        self.base_micros.saturating_add(self.now_micros())
    }

    /// When a tick stamped `exchange_ts` was sent, in microseconds since the origin
    /// (`None` for a time before the origin: not one of ours).
    pub(super) fn sent_micros(&self, exchange_ts: i64) -> Option<i64> {
        let micros = exchange_ts.checked_sub(self.base_micros)?;
        (micros >= 0).then_some(micros)
    }
}

/// What the feed did in one step.
#[derive(Debug, Clone, Copy)]
pub(super) struct FeedReport {
    /// Ticks published and acknowledged.
    pub(super) sent: u64,
    /// Ticks the publisher's validator dead-lettered instead.
    pub(super) rejected: u64,
}

/// One step for the feed thread.
struct Step {
    rate: f64,
    duration: Duration,
    done: oneshot::Sender<Result<FeedReport>>,
}

/// The feed thread, waiting for steps.
pub(super) struct Feed {
    steps: mpsc::UnboundedSender<Step>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The simulated instrument master, already published.
    pub(super) instruments: Vec<Instrument>,
    pub(super) clock: Arc<Clock>,
}

impl Feed {
    /// Starts the thread, which publishes the instrument master and then waits for steps.
    pub(super) async fn start(config: &Config, topics: &Topics) -> Result<Self> {
        let market = config.simulate.market.clone();
        let brokers = config.kafka.brokers();
        let registry = config.registry_connection();
        let topics = topics.clone();
        let (ready_tx, ready) = oneshot::channel();
        let (steps, mut rx) = mpsc::unbounded_channel::<Step>();
        let thread = std::thread::Builder::new()
            .name(THREAD.to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!(e).context("the feed's runtime")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let setup = async {
                        let mut sim = MarketSimulator::new(&market)?;
                        let base_micros = sim.next_tick().exchange_ts;
                        let mut publisher = TickPublisher::connect(&brokers, &topics, None)?;
                        publisher.use_registry(registry.as_ref()).await?;
                        publisher.publish_instruments(sim.instruments()).await?;
                        let clock = Arc::new(Clock {
                            origin: Instant::now(),
                            base_micros,
                        });
                        Ok::<_, anyhow::Error>((sim, publisher, clock))
                    };
                    let (mut sim, mut publisher, clock) = match setup.await {
                        Ok(parts) => parts,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((sim.instruments().to_vec(), clock.clone())));
                    while let Some(step) = rx.recv().await {
                        let report =
                            publish(&mut sim, &mut publisher, &clock, step.rate, step.duration)
                                .await;
                        let _ = step.done.send(report);
                    }
                });
            })
            .context("starting the feed thread")?;
        let (instruments, clock) = ready
            .await
            .context("the feed thread stopped during start-up")??;
        Ok(Self {
            steps,
            thread: Some(thread),
            instruments,
            clock,
        })
    }

    /// Publishes at `rate` ticks per second for `duration`, then waits for the
    /// acknowledgements.
    pub(super) async fn run(&self, rate: f64, duration: Duration) -> Result<FeedReport> {
        let (done, report) = oneshot::channel();
        self.steps
            .send(Step {
                rate,
                duration,
                done,
            })
            .map_err(|_| anyhow!("the feed thread has stopped"))?;
        report.await.context("the feed thread stopped")?
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        // Closing the channel ends the thread's loop.
        let (closed, _) = mpsc::unbounded_channel();
        drop(std::mem::replace(&mut self.steps, closed));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The paced loop: every millisecond, send what is due by then (a late wake-up sends the
/// ticks it owes in one burst, as a feed catching up would).
async fn publish(
    sim: &mut MarketSimulator,
    publisher: &mut TickPublisher,
    clock: &Clock,
    rate: f64,
    duration: Duration,
) -> Result<FeedReport> {
    let rejected_before = publisher.rejected();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut pace = tokio::time::interval(Duration::from_millis(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total && started.elapsed() < duration {
        pace.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < due {
            let mut tick = sim.next_tick();
            tick.exchange_ts = clock.stamp();
            publisher
                .publish(&tick, || format!("bench e2e tick {sent}"), None)
                .await?;
            sent += 1;
        }
    }
    publisher.flush().await?;
    let rejected = publisher.rejected() - rejected_before;
    Ok(FeedReport {
        sent: sent - rejected,
        rejected,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_maps_back_to_its_send_time() {
        let clock = Clock {
            origin: Instant::now(),
            base_micros: 1_764_561_900_000_000,
        };
        let before = clock.now_micros();
        let sent = clock.sent_micros(clock.stamp()).unwrap();
        assert!(sent >= before && sent <= clock.now_micros());
        assert_eq!(clock.sent_micros(1_764_561_899_999_999), None);
    }
}
