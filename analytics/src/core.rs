//! The processor's sans-I/O core: ticks in; bars, chain analytics, moneyness, indicators
//! and late ticks out.
//!
//! No Kafka and no clock here. One [`TickProcessor`] serves one ticks partition: the runner
//! feeds it the instrument master and that partition's records in offset order, and
//! everything it returns is what must be published. All emission is driven by the
//! partition's own event-time watermark, so the same partition log always gives the same
//! outputs, and a core restored from a [snapshot](TickProcessor::snapshot) continues exactly
//! as the original would have.

use serde::{Deserialize, Serialize};
use strikeflow_schemas::{
    Bar, ChainAnalytics, IndicatorPoint, Instrument, MoneynessPoint, StrikeAnalytics, Tick,
};

use crate::bars::{window_start, BarAggregator, BAR_MICROS};
use crate::chain::{ChainAnalyticsEngine, ChainSettings, EngineOutput, EngineStats, RegisterError};
use crate::indicator_bank::{IndicatorBank, IndicatorSeries};
use crate::indicators::IndicatorError;
use crate::watermark::PartitionWatermark;

/// Version of the snapshot layout; bumped whenever a state type changes shape, so an old
/// snapshot is refused with a clear error instead of being misread.
const SNAPSHOT_FORMAT: u32 = 1;

/// Settings of the event-time core.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    /// How far behind its partition's newest event a tick may arrive and still count.
    pub allowed_lateness_micros: i64,
    /// Option-chain analytics: pricing convention, cadence, moneyness depth.
    pub chain: ChainSettings,
}

impl CoreSettings {
    /// Bars only, with default chain settings (tests and tools that need no analytics).
    pub fn with_lateness(allowed_lateness_micros: i64) -> Self {
        Self {
            allowed_lateness_micros,
            chain: ChainSettings::default(),
        }
    }
}

/// What the core asks the runner to publish.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A closed one-minute bar.
    Bar(Bar),
    /// A tick whose bar had already closed when it arrived: published, never dropped.
    Late(Tick),
    /// One option's analytics at an emission.
    Strike(StrikeAnalytics),
    /// One chain's analytics at an emission.
    Chain(ChainAnalytics),
    /// One moneyness bucket at a minute close.
    Moneyness(MoneynessPoint),
    /// One indicator value at a bar close.
    Indicator(IndicatorPoint),
}

/// Why a snapshot could not be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Serialising the state failed (a bug: every state type is plain data).
    #[error("encoding processor state: {0}")]
    Encode(postcard::Error),
    /// The bytes are not a snapshot of this layout.
    #[error("decoding processor state: {0}")]
    Decode(postcard::Error),
    /// The snapshot was written by a processor with another state layout.
    #[error("processor state has format {found}, this build reads format {expected}")]
    Format {
        /// Format in the snapshot.
        found: u32,
        /// Format this build writes.
        expected: u32,
    },
    /// The snapshot was taken under other settings (lateness, conventions, indicators);
    /// continuing from it would mix two configurations in one series.
    #[error("processor state was taken with other settings ({found}); this run uses {expected}")]
    Settings {
        /// Settings fingerprint in the snapshot.
        found: String,
        /// Settings fingerprint of this run.
        expected: String,
    },
}

/// What a core did since the caller last asked ([`TickProcessor::take_stats`]).
///
/// The core has no logger and no metrics registry (it is sans-I/O); it counts instead, and
/// the runner turns these counts into metrics and log lines. Nothing the core declines to
/// apply goes uncounted.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreStats {
    /// Primary ticks handled (applied or routed out as late).
    pub ticks: u64,
    /// Reference copies of spot ticks handled.
    pub reference_ticks: u64,
    /// Primary ticks whose bar had already closed, returned as [`Output::Late`].
    pub late_ticks: u64,
    /// Event-time markers handled (see [`TickProcessor::on_watermark`]).
    pub watermark_markers: u64,
    /// Of those, markers at or behind the watermark, which changed nothing (a repeated
    /// marker, or a partition whose ticks had already passed it).
    pub stale_watermark_markers: u64,
    /// Reference copies behind the watermark, ignored (their primary is routed as late in
    /// its own partition).
    pub late_reference_ticks: u64,
    /// Ticks the chain engine saw but did not apply: unknown instrument, out of order, of
    /// an earlier trading day, or with a non-finite price (`ticks` there counts every tick
    /// the engine saw, reference copies included).
    pub chains: EngineStats,
    /// Bars an indicator failed to update on (a registry bug, never bad input: every
    /// choice is validated when the bank is built); the bar itself is still emitted.
    pub indicator_errors: u64,
    /// The most recent indicator failure, for the runner to log.
    pub last_indicator_error: Option<IndicatorError>,
}

impl CoreStats {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Event-time processing state of one ticks partition.
#[derive(Debug, Clone)]
pub struct TickProcessor {
    watermark: PartitionWatermark,
    bars: BarAggregator,
    chains: ChainAnalyticsEngine,
    indicators: IndicatorBank,
    late_ticks: u64,
    closed: Vec<Bar>,
    analytics: Vec<EngineOutput>,
    indicator_points: Vec<IndicatorPoint>,
    /// Counts since the last [`take_stats`](Self::take_stats) (not state: never
    /// snapshotted).
    stats: CoreStats,
    /// The chain engine's cumulative counts at the last `take_stats`.
    chains_reported: EngineStats,
}

/// The serialised part of a [`TickProcessor`], borrowed for writing.
#[derive(Serialize)]
struct StateRef<'a> {
    format: u32,
    settings: &'a str,
    watermark: &'a PartitionWatermark,
    bars: &'a BarAggregator,
    chains: &'a ChainAnalyticsEngine,
    indicators: &'a IndicatorSeries,
    late_ticks: u64,
}

/// The serialised part of a [`TickProcessor`], owned for reading (same field order as
/// [`StateRef`], which is what the binary encoding relies on).
#[derive(Deserialize)]
struct State {
    format: u32,
    settings: String,
    watermark: PartitionWatermark,
    bars: BarAggregator,
    chains: ChainAnalyticsEngine,
    indicators: IndicatorSeries,
    late_ticks: u64,
}

impl TickProcessor {
    /// A processor with no state yet.
    pub fn new(settings: CoreSettings, indicators: IndicatorBank) -> Self {
        Self {
            watermark: PartitionWatermark::new(settings.allowed_lateness_micros),
            bars: BarAggregator::new(),
            chains: ChainAnalyticsEngine::new(settings.chain),
            indicators,
            late_ticks: 0,
            closed: Vec::new(),
            analytics: Vec::new(),
            indicator_points: Vec::new(),
            stats: CoreStats::default(),
            chains_reported: EngineStats::default(),
        }
    }

    /// Learns an instrument from the master (chains need strikes, expiries and lot sizes).
    pub fn on_instrument(&mut self, instrument: &Instrument) -> Result<(), RegisterError> {
        self.chains.register(instrument)
    }

    /// Handles the partition's next tick, appending whatever became final.
    pub fn on_tick(&mut self, tick: Tick, out: &mut Vec<Output>) {
        self.stats.ticks += 1;
        if self.is_late(&tick) {
            self.late_ticks += 1;
            self.stats.late_ticks += 1;
            out.push(Output::Late(tick));
            return;
        }
        self.watermark.observe(tick.exchange_ts);
        self.bars.add(&tick);
        self.chains.on_tick(&tick);
        self.close_ready(out);
    }

    /// Handles a reference copy of a spot tick (see `strikeflow_schemas::REFERENCE_COPY_HEADER`):
    /// it moves the partition's event time and the chains' spot, but its bar, late routing
    /// and storage belong to the primary copy in the spot's own partition.
    pub fn on_reference_tick(&mut self, tick: &Tick, out: &mut Vec<Output>) {
        self.stats.reference_ticks += 1;
        if self.is_late(tick) {
            self.stats.late_reference_ticks += 1;
            return;
        }
        self.watermark.observe(tick.exchange_ts);
        self.chains.on_tick(tick);
        self.close_ready(out);
    }

    /// Handles an event-time marker (see `strikeflow_schemas::WATERMARK_HEADER`): the source
    /// promises that no tick older than `event_ts` follows, so the watermark moves to
    /// `event_ts` itself (no lateness is added: the marker already says the wait is over).
    /// Every bar ending at or before it closes and the chains emit up to it, which is how
    /// the session's last bar and analytics come out at the close rather than with the next
    /// session's first tick. A marker at or behind the watermark changes nothing, so
    /// repeating one is harmless and time never moves back; a tick older than the marker
    /// that arrives after it is late, as the promise was broken.
    pub fn on_watermark(&mut self, event_ts: i64, out: &mut Vec<Output>) {
        self.stats.watermark_markers += 1;
        if !self.watermark.advance_to(event_ts) {
            self.stats.stale_watermark_markers += 1;
            return;
        }
        self.close_ready(out);
    }

    /// The current watermark in event-time micros, if any tick was seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark.current()
    }

    /// How many late ticks were routed out so far.
    pub fn late_ticks(&self) -> u64 {
        self.late_ticks
    }

    /// What the core did since the previous call (or since it was built or restored), and
    /// starts counting afresh. The runner calls it once per batch and exports the counts;
    /// after a replay it discards them, since those ticks were counted the first time.
    pub fn take_stats(&mut self) -> CoreStats {
        let cumulative = self.chains.stats();
        let before = std::mem::replace(&mut self.chains_reported, cumulative);
        let mut stats = std::mem::take(&mut self.stats);
        stats.chains = EngineStats {
            ticks: cumulative.ticks.saturating_sub(before.ticks),
            unknown_instrument: cumulative
                .unknown_instrument
                .saturating_sub(before.unknown_instrument),
            out_of_order: cumulative.out_of_order.saturating_sub(before.out_of_order),
            previous_day: cumulative.previous_day.saturating_sub(before.previous_day),
            invalid: cumulative.invalid.saturating_sub(before.invalid),
        };
        stats
    }

    /// The core's state as bytes, tagged with `settings` (a fingerprint of the configuration
    /// that shaped it), for the runner to store beside the input offset it corresponds to.
    pub fn snapshot(&self, settings: &str) -> Result<Vec<u8>, SnapshotError> {
        postcard::to_stdvec(&StateRef {
            format: SNAPSHOT_FORMAT,
            settings,
            watermark: &self.watermark,
            bars: &self.bars,
            chains: &self.chains,
            indicators: self.indicators.series(),
            late_ticks: self.late_ticks,
        })
        .map_err(SnapshotError::Encode)
    }

    /// A core continuing from `bytes` (written by [`snapshot`](Self::snapshot) under the
    /// same `settings` fingerprint); `core_settings` and `indicators` rebuild the parts that
    /// are configuration rather than state.
    pub fn restore(
        bytes: &[u8],
        settings: &str,
        core_settings: CoreSettings,
        mut indicators: IndicatorBank,
    ) -> Result<Self, SnapshotError> {
        let state: State = postcard::from_bytes(bytes).map_err(SnapshotError::Decode)?;
        if state.format != SNAPSHOT_FORMAT {
            return Err(SnapshotError::Format {
                found: state.format,
                expected: SNAPSHOT_FORMAT,
            });
        }
        if state.settings != settings {
            return Err(SnapshotError::Settings {
                found: state.settings,
                expected: settings.to_owned(),
            });
        }
        indicators.restore_series(state.indicators);
        // The restored engine's counts were reported by the core that took the snapshot.
        let chains_reported = state.chains.stats();
        Ok(Self {
            watermark: state.watermark,
            bars: state.bars,
            chains: state.chains.with_settings(core_settings.chain),
            indicators,
            late_ticks: state.late_ticks,
            closed: Vec::new(),
            analytics: Vec::new(),
            indicator_points: Vec::new(),
            stats: CoreStats::default(),
            chains_reported,
        })
    }

    /// A tick is late when its bar already closed.
    fn is_late(&self, tick: &Tick) -> bool {
        self.watermark
            .current()
            .is_some_and(|wm| window_start(tick.exchange_ts) + BAR_MICROS <= wm)
    }

    fn close_ready(&mut self, out: &mut Vec<Output>) {
        let Some(wm) = self.watermark.current() else {
            return;
        };
        self.bars.close_until(wm, &mut self.closed);
        for bar in self.closed.drain(..) {
            // Every choice was validated when the bank was built; an error here would be a
            // registry bug, and losing one indicator value must not lose the bar.
            if let Err(e) = self.indicators.on_bar(&bar, &mut self.indicator_points) {
                self.stats.indicator_errors += 1;
                self.stats.last_indicator_error = Some(e);
            }
            out.push(Output::Bar(bar));
        }
        out.extend(self.indicator_points.drain(..).map(Output::Indicator));
        self.chains.advance(wm, &mut self.analytics);
        out.extend(self.analytics.drain(..).map(|o| match o {
            EngineOutput::Chain(c) => Output::Chain(c),
            EngineOutput::Strike(s) => Output::Strike(s),
            EngineOutput::Moneyness(m) => Output::Moneyness(m),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn tick(token: i64, ts: i64) -> Tick {
        Tick {
            instrument_token: token,
            exchange_ts: ts,
            ltp: 100.0,
            last_qty: 1,
            volume: ts / SEC,
            oi: 0,
            bid: 99.95,
            bid_qty: 1,
            ask: 100.05,
            ask_qty: 1,
        }
    }

    fn processor(lateness: i64) -> TickProcessor {
        TickProcessor::new(
            CoreSettings::with_lateness(lateness),
            IndicatorBank::new(&[], &[1]).unwrap(),
        )
    }

    fn bars(out: &[Output]) -> Vec<(i64, i64)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Bar(b) => Some((b.instrument_token, b.window_start)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn bar_closes_when_watermark_passes_its_end() {
        let mut p = processor(2 * SEC);
        let mut out = Vec::new();
        p.on_tick(tick(1, 10 * SEC), &mut out);
        p.on_tick(tick(1, 61 * SEC), &mut out);
        assert!(
            bars(&out).is_empty(),
            "61s - 2s lateness has not passed 60s"
        );
        p.on_tick(tick(1, 62 * SEC), &mut out);
        assert_eq!(bars(&out), vec![(1, 0)]);
    }

    #[test]
    fn out_of_order_within_lateness_is_kept_and_beyond_is_late() {
        let mut p = processor(5 * SEC);
        let mut out = Vec::new();
        p.on_tick(tick(1, 50 * SEC), &mut out);
        p.on_tick(tick(1, 63 * SEC), &mut out);
        p.on_tick(tick(1, 59 * SEC), &mut out); // within lateness: joins the first bar
        assert!(out.is_empty());
        p.on_tick(tick(1, 66 * SEC), &mut out); // watermark 61s closes [0, 60)
        let first = match &out[..] {
            [Output::Bar(b)] => b.clone(),
            other => panic!("expected one bar, got {other:?}"),
        };
        assert_eq!(first.tick_count, 2);
        out.clear();
        p.on_tick(tick(1, 30 * SEC), &mut out); // its bar is closed: late
        assert_eq!(out, vec![Output::Late(tick(1, 30 * SEC))]);
        assert_eq!(p.late_ticks(), 1);
    }

    #[test]
    fn stats_count_what_happened_once_and_start_afresh() {
        let mut p = processor(0);
        let mut out = Vec::new();
        p.on_tick(tick(1, 10 * SEC), &mut out); // token 1 is in no registered chain
        p.on_tick(tick(1, 130 * SEC), &mut out);
        p.on_tick(tick(1, 20 * SEC), &mut out); // its bar closed: late
        p.on_reference_tick(&tick(2, 5 * SEC), &mut out); // behind the watermark
        let stats = p.take_stats();
        assert_eq!(stats.ticks, 3);
        assert_eq!(stats.late_ticks, 1);
        assert_eq!(stats.reference_ticks, 1);
        assert_eq!(stats.late_reference_ticks, 1);
        assert_eq!(
            stats.chains.unknown_instrument, 2,
            "the late tick never reached it"
        );
        assert_eq!(stats.indicator_errors, 0);
        assert!(p.take_stats().is_empty(), "counts are handed out once");

        // A restored core reports only what it does itself, not its predecessor's counts.
        let snapshot = p.snapshot("s").unwrap();
        let mut restored = TickProcessor::restore(
            &snapshot,
            "s",
            CoreSettings::with_lateness(0),
            IndicatorBank::new(&[], &[1]).unwrap(),
        )
        .unwrap();
        assert!(restored.take_stats().is_empty());
        restored.on_tick(tick(1, 140 * SEC), &mut out);
        let stats = restored.take_stats();
        assert_eq!((stats.ticks, stats.chains.unknown_instrument), (1, 1));
    }

    #[test]
    fn idle_partition_does_not_stall_a_busy_one() {
        // One core per partition: partition 1 spoke once and went quiet; partition 0's bars
        // close on its own clock regardless.
        let (mut busy, mut idle) = (processor(0), processor(0));
        let mut out = Vec::new();
        idle.on_tick(tick(9, 5 * SEC), &mut out);
        busy.on_tick(tick(1, 10 * SEC), &mut out);
        busy.on_tick(tick(1, 130 * SEC), &mut out);
        assert_eq!(bars(&out), vec![(1, 0)]);
        assert_eq!(idle.watermark(), Some(5 * SEC));
    }

    #[test]
    fn reference_copy_moves_time_but_makes_no_bar_and_is_never_late() {
        let mut p = processor(0);
        let mut out = Vec::new();
        p.on_tick(tick(1, 10 * SEC), &mut out);
        p.on_reference_tick(&tick(7, 70 * SEC), &mut out);
        assert_eq!(bars(&out), vec![(1, 0)], "the copy's time closed bar 1");
        out.clear();
        p.on_reference_tick(&tick(7, 5 * SEC), &mut out);
        p.on_reference_tick(&tick(7, 200 * SEC), &mut out);
        assert!(bars(&out).is_empty(), "copies never open bars: {out:?}");
        assert_eq!(p.late_ticks(), 0);
    }

    /// 15:29 IST on 2026-12-01 (09:59 UTC) and the session close a minute later.
    const LAST_MINUTE: i64 = 1_796_119_140 * SEC;
    const CLOSE: i64 = LAST_MINUTE + 60 * SEC;

    #[test]
    fn session_close_marker_closes_the_last_bar() {
        let mut p = processor(2 * SEC);
        let mut out = Vec::new();
        p.on_tick(tick(1, LAST_MINUTE + 10 * SEC), &mut out);
        p.on_tick(tick(2, CLOSE - SEC), &mut out); // the session's last tick, 15:29:59
        assert!(bars(&out).is_empty(), "without a marker 15:29 stays open");
        p.on_watermark(CLOSE, &mut out);
        assert_eq!(bars(&out), vec![(1, LAST_MINUTE), (2, LAST_MINUTE)]);
        assert_eq!(p.watermark(), Some(CLOSE));
        let stats = p.take_stats();
        assert_eq!(
            (stats.watermark_markers, stats.stale_watermark_markers),
            (1, 0)
        );
    }

    #[test]
    fn a_second_marker_is_a_no_op_and_time_never_moves_back() {
        let mut p = processor(2 * SEC);
        let mut out = Vec::new();
        p.on_tick(tick(1, CLOSE - SEC), &mut out);
        p.on_watermark(CLOSE, &mut out);
        let after_first = out.len();
        p.on_watermark(CLOSE, &mut out);
        p.on_watermark(LAST_MINUTE, &mut out);
        assert_eq!(
            out.len(),
            after_first,
            "repeated and older markers emit nothing"
        );
        assert_eq!(p.watermark(), Some(CLOSE));
        let stats = p.take_stats();
        assert_eq!(
            (stats.watermark_markers, stats.stale_watermark_markers),
            (3, 2)
        );
    }

    #[test]
    fn a_tick_before_the_marker_arriving_after_it_is_late() {
        let mut p = processor(2 * SEC);
        let mut out = Vec::new();
        p.on_tick(tick(1, CLOSE - 30 * SEC), &mut out);
        p.on_watermark(CLOSE, &mut out);
        out.clear();
        p.on_tick(tick(1, CLOSE - SEC), &mut out);
        assert_eq!(out, vec![Output::Late(tick(1, CLOSE - SEC))]);
        // The next session's ticks are on time again: the marker added no lateness.
        p.on_tick(tick(1, CLOSE + 5 * SEC), &mut out);
        assert_eq!(p.late_ticks(), 1);
    }

    #[test]
    fn marker_makes_the_chains_emit_at_the_close() {
        use strikeflow_schemas::{days_from_date, InstrumentType};
        let expiry = chrono::NaiveDate::from_ymd_opt(2026, 12, 29).map(days_from_date);
        let instrument = |token: i64, instrument_type, strike: f64| Instrument {
            instrument_token: token,
            exchange_token: token,
            tradingsymbol: format!("NIFTY-{token}"),
            name: "NIFTY".into(),
            last_price: 0.0,
            expiry: (instrument_type != InstrumentType::EQ)
                .then_some(expiry)
                .flatten(),
            strike,
            tick_size: 0.05,
            lot_size: 65,
            instrument_type,
            segment: "NFO-OPT".into(),
            exchange: "NFO".into(),
        };
        let mut p = processor(2 * SEC);
        for i in [
            instrument(256_265, InstrumentType::EQ, 0.0),
            instrument(900, InstrumentType::FUT, 0.0),
            instrument(901, InstrumentType::CE, 24_500.0),
            instrument(902, InstrumentType::PE, 24_500.0),
        ] {
            p.on_instrument(&i).unwrap();
        }
        let mut out = Vec::new();
        for (token, ltp) in [
            (256_265, 24_480.0),
            (900, 24_510.0),
            (901, 120.0),
            (902, 110.0),
        ] {
            p.on_tick(
                Tick {
                    ltp,
                    bid: ltp - 0.05,
                    ask: ltp + 0.05,
                    ..tick(token, CLOSE - 3 * SEC)
                },
                &mut out,
            );
        }
        let chain_times = |out: &[Output]| -> Vec<(i64, bool)> {
            out.iter()
                .filter_map(|o| match o {
                    Output::Chain(c) => Some((c.ts, c.minute_close)),
                    _ => None,
                })
                .collect()
        };
        assert!(chain_times(&out).iter().all(|&(ts, _)| ts < CLOSE));
        out.clear();
        p.on_watermark(CLOSE, &mut out);
        assert_eq!(chain_times(&out), vec![(CLOSE, true)]);
        assert!(out.iter().any(|o| matches!(o, Output::Moneyness(_))));
    }

    #[test]
    fn marker_on_an_empty_partition_sets_its_watermark() {
        let mut p = processor(2 * SEC);
        let mut out = Vec::new();
        p.on_watermark(CLOSE, &mut out);
        assert!(out.is_empty());
        assert_eq!(p.watermark(), Some(CLOSE));
    }

    #[test]
    fn restored_core_continues_exactly() {
        let ticks: Vec<Tick> = (0..600)
            .map(|i| Tick {
                ltp: 100.0 + f64::from(i % 37) * 0.05,
                ..tick(
                    1 + i64::from(i % 3),
                    i64::from(i) * SEC + (i64::from(i) % 7) * 100,
                )
            })
            .collect();
        let bank =
            || IndicatorBank::new(&crate::indicator_bank::IndicatorChoice::defaults(), &[1, 3]);
        let settings = || CoreSettings::with_lateness(2 * SEC);
        let mut whole = TickProcessor::new(settings(), bank().unwrap());
        let mut expected = Vec::new();
        for t in &ticks {
            whole.on_tick(t.clone(), &mut expected);
        }
        let mut first = TickProcessor::new(settings(), bank().unwrap());
        let mut got = Vec::new();
        for t in &ticks[..333] {
            first.on_tick(t.clone(), &mut got);
        }
        let bytes = first.snapshot("s1").unwrap();
        let mut second = TickProcessor::restore(&bytes, "s1", settings(), bank().unwrap()).unwrap();
        for t in &ticks[333..] {
            second.on_tick(t.clone(), &mut got);
        }
        assert!(expected.iter().any(|o| matches!(o, Output::Indicator(_))));
        assert_eq!(got, expected);
    }

    #[test]
    fn snapshot_refuses_other_settings_and_garbage() {
        let p = processor(0);
        let bytes = p.snapshot("lateness=0").unwrap();
        let bank = IndicatorBank::new(&[], &[1]).unwrap();
        let other = TickProcessor::restore(
            &bytes,
            "lateness=5",
            CoreSettings::with_lateness(0),
            bank.clone(),
        );
        assert!(
            matches!(other, Err(SnapshotError::Settings { .. })),
            "{other:?}"
        );
        let garbage = TickProcessor::restore(
            &[0xff; 3],
            "lateness=0",
            CoreSettings::with_lateness(0),
            bank,
        );
        assert!(
            matches!(garbage, Err(SnapshotError::Decode(_))),
            "{garbage:?}"
        );
    }
}
