//! One rate step's figures, whether the pipeline held the rate, and how they are printed.

use crate::bench::push::clients::Latency;

use super::cpu::Cores;
use super::watch::{Commits, Lag};

/// The latency a held rate must keep: p99 tick → WebSocket (issue 12).
pub(super) const P99_LIMIT_MS: f64 = 50.0;
/// Share of the asked rate the feed must reach for the step to count.
const FEED_SHARE: f64 = 0.98;
/// Seconds of input a stage may be behind when the feed stops: batching keeps a stage a
/// little behind (the sink waits up to 200 ms for a batch), a stage that does not keep up
/// falls further behind all step long.
const LAG_LIMIT_SECS: f64 = 1.0;

/// What one step measured.
#[derive(Debug, Clone, Default)]
pub(super) struct Step {
    /// Ticks per second asked of the feed.
    pub(super) target: f64,
    pub(super) secs: f64,
    /// The load average when the step started.
    pub(super) load: String,
    /// Ticks published and acknowledged during the step.
    pub(super) sent: u64,
    pub(super) rejected: u64,
    /// Tick → WebSocket client.
    pub(super) ws: Latency,
    /// Messages the clients read (all channels).
    pub(super) deliveries: u64,
    pub(super) connected: usize,
    /// Clients push closed during the step.
    pub(super) closed: usize,
    /// Tick → row visible in PostgreSQL (the newest row's age, polled).
    pub(super) visible: Latency,
    pub(super) lag_max: Lag,
    pub(super) lag_end: Lag,
    /// Seconds from the feed's stop until both stages had consumed everything (`None`:
    /// not within the limit).
    pub(super) drained_secs: Option<f64>,
    /// The processor's transactions during the step.
    pub(super) commits: Commits,
    pub(super) cpu: Cores,
}

impl Step {
    /// Ticks per second the feed sustained over the step.
    pub(super) fn sustained(&self) -> f64 {
        self.sent as f64 / self.secs.max(1e-9)
    }

    /// Why the step did not hold its rate; empty when it did.
    pub(super) fn failures(&self) -> Vec<String> {
        let mut why = Vec::new();
        if self.sustained() < FEED_SHARE * self.target {
            why.push(format!(
                "the feed sustained only {:.0} ticks/s",
                self.sustained()
            ));
        }
        if self.ws.count == 0 {
            why.push("no tick reached a client".to_owned());
        } else if self.ws.p99_ms > P99_LIMIT_MS {
            why.push(format!(
                "p99 tick → WebSocket {:.1} ms > {P99_LIMIT_MS} ms",
                self.ws.p99_ms
            ));
        }
        let limit = (self.target * LAG_LIMIT_SECS) as i64;
        for (stage, lag) in [
            ("processor", self.lag_end.processor),
            ("sink", self.lag_end.sink),
        ] {
            if lag > limit {
                why.push(format!(
                    "{stage} {lag} records behind at the end (> {LAG_LIMIT_SECS} s of input)"
                ));
            }
        }
        if self.closed > 0 {
            why.push(format!("push closed {} clients", self.closed));
        }
        why
    }

    /// Prints the step's figures.
    pub(super) fn print(&self, n: usize) {
        println!(
            "step {n}: {:.0} ticks/s for {:.0} s (load average at start {})",
            self.target, self.secs, self.load
        );
        println!(
            "  sustained {:.0} ticks/s ({} ticks published, {} rejected by the validator)",
            self.sustained(),
            self.sent,
            self.rejected
        );
        println!(
            "  tick → WebSocket: n={} p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms  ({} clients, {} messages read, {} closed by push)",
            self.ws.count,
            self.ws.p50_ms,
            self.ws.p99_ms,
            self.ws.max_ms,
            self.connected,
            self.deliveries,
            self.closed
        );
        println!(
            "  tick → row visible in PostgreSQL (newest row's age, n={} polls): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms",
            self.visible.count, self.visible.p50_ms, self.visible.p99_ms, self.visible.max_ms
        );
        println!(
            "  consumer lag (ticks-topic records): processor max {} / at end {}; sink max {} / at end {}; drained {}",
            self.lag_max.processor,
            self.lag_end.processor,
            self.lag_max.sink,
            self.lag_end.sink,
            self.drained_secs
                .map_or("not within the limit".to_owned(), |s| format!("{s:.1} s after the feed stopped"))
        );
        let t = &self.commits;
        println!(
            "  processor transactions: {:.0}, {:.0} records each, committing (offsets + commit) {:.1} ms each = {:.0}% of the step",
            t.count,
            t.ticks / t.count.max(1.0),
            1_000.0 * t.seconds / t.count.max(1.0),
            100.0 * t.seconds / self.secs.max(1e-9)
        );
        let c = &self.cpu;
        println!(
            "  CPU (cores): feed {:.2} + its librdkafka {:.2}, processor {:.2}, sink {:.2}, push {:.2}, clients {:.2}, Kafka broker {:.2}, PostgreSQL {:.2} (scratch database's backends {:.2}); machine {:.2} of 2, other work {:.2}",
            c.feed,
            c.producer,
            c.processor,
            c.sink,
            c.push,
            c.clients,
            c.kafka,
            c.postgres,
            c.postgres_bench,
            c.machine,
            c.other()
        );
        let failures = self.failures();
        if failures.is_empty() {
            println!("  held: yes");
        } else {
            println!("  held: no ({})", failures.join("; "));
        }
    }
}

/// The highest rate of the steps that held it.
pub(super) fn highest_held(steps: &[Step]) -> Option<f64> {
    steps
        .iter()
        .filter(|s| s.failures().is_empty())
        .map(|s| s.target)
        .fold(None, |best, r| Some(best.map_or(r, |b: f64| b.max(r))))
}

/// The steps as a Markdown table, for `docs/benchmarks.md`.
pub(super) fn print_table(steps: &[Step]) {
    println!(
        "| target ticks/s | sustained | tick → WS p50 / p99 / max (ms) | → row visible p99 (ms) | lag max: processor / sink | CPU: feed+rdk / processor / sink / push / clients / Kafka / PostgreSQL / machine | held |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for s in steps {
        let c = &s.cpu;
        println!(
            "| {:.0} | {:.0} | {:.1} / {:.1} / {:.0} | {:.0} | {} / {} | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} / {:.2} / {:.2} / {:.2} | {} |",
            s.target,
            s.sustained(),
            s.ws.p50_ms,
            s.ws.p99_ms,
            s.ws.max_ms,
            s.visible.p99_ms,
            s.lag_max.processor,
            s.lag_max.sink,
            c.feed + c.producer,
            c.processor,
            c.sink,
            c.push,
            c.clients,
            c.kafka,
            c.postgres,
            c.machine,
            if s.failures().is_empty() { "yes" } else { "no" }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(target: f64, p99: f64, sink_lag_end: i64) -> Step {
        Step {
            target,
            secs: 10.0,
            sent: (target * 10.0) as u64,
            ws: Latency {
                count: 100,
                p50_ms: 5.0,
                p99_ms: p99,
                max_ms: p99 * 2.0,
            },
            lag_end: Lag {
                processor: 0,
                sink: sink_lag_end,
            },
            ..Step::default()
        }
    }

    #[test]
    fn a_step_holds_only_within_every_limit() {
        assert!(step(10_000.0, 20.0, 5_000).failures().is_empty());
        assert_eq!(step(10_000.0, 60.0, 0).failures().len(), 1);
        assert_eq!(step(10_000.0, 20.0, 20_000).failures().len(), 1);
        let mut short = step(10_000.0, 20.0, 0);
        short.sent = 90_000;
        assert_eq!(short.failures().len(), 1);
        let mut silent = step(10_000.0, 0.0, 0);
        silent.ws.count = 0;
        assert_eq!(silent.failures(), ["no tick reached a client"]);
    }

    #[test]
    fn highest_held_skips_failed_steps() {
        let steps = [
            step(10_000.0, 10.0, 0),
            step(25_000.0, 12.0, 0),
            step(50_000.0, 80.0, 0),
            step(100_000.0, 30.0, 0),
            step(200_000.0, 400.0, 0),
        ];
        assert_eq!(highest_held(&steps), Some(100_000.0));
        assert_eq!(highest_held(&steps[2..3]), None);
    }
}
