//! The processor's sans-I/O core: ticks in; bars, chain analytics, moneyness, indicators
//! and late ticks out.
//!
//! No Kafka and no clock here: the runner feeds it the instrument master and decoded ticks
//! with their partition, and tells it when a partition went idle; everything it returns is
//! what must be published. All emission is driven by the event-time watermark, so the same
//! input always gives the same output.

use strikeflow_schemas::{
    Bar, ChainAnalytics, IndicatorPoint, Instrument, MoneynessPoint, StrikeAnalytics, Tick,
};

use crate::bars::{window_start, BarAggregator, BAR_MICROS};
use crate::chain::{ChainAnalyticsEngine, ChainSettings, EngineOutput, RegisterError};
use crate::indicator_bank::IndicatorBank;
use crate::indicators::IndicatorError;
use crate::watermark::Watermarks;

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

/// Event-time processing state of one processor instance.
#[derive(Debug)]
pub struct TickProcessor {
    watermarks: Watermarks,
    bars: BarAggregator,
    chains: ChainAnalyticsEngine,
    indicators: IndicatorBank,
    closed: Vec<Bar>,
    analytics: Vec<EngineOutput>,
    indicator_points: Vec<IndicatorPoint>,
    late_ticks: u64,
}

impl TickProcessor {
    /// A processor with no state yet.
    pub fn new(settings: CoreSettings, indicators: IndicatorBank) -> Self {
        Self {
            watermarks: Watermarks::new(settings.allowed_lateness_micros),
            bars: BarAggregator::new(),
            chains: ChainAnalyticsEngine::new(settings.chain),
            indicators,
            closed: Vec::new(),
            analytics: Vec::new(),
            indicator_points: Vec::new(),
            late_ticks: 0,
        }
    }

    /// Learns an instrument from the master (chains need strikes, expiries and lot sizes).
    pub fn on_instrument(&mut self, instrument: &Instrument) -> Result<(), RegisterError> {
        self.chains.register(instrument)
    }

    /// Handles one tick read from `partition`, appending whatever became final.
    pub fn on_tick(&mut self, partition: i32, tick: Tick, out: &mut Vec<Output>) {
        let closed_up_to = self.watermarks.current();
        if closed_up_to.is_some_and(|wm| window_start(tick.exchange_ts) + BAR_MICROS <= wm) {
            self.late_ticks += 1;
            out.push(Output::Late(tick));
            return;
        }
        self.watermarks.observe(partition, tick.exchange_ts);
        self.bars.add(&tick);
        self.chains.on_tick(&tick);
        self.close_ready(out);
    }

    /// Tells the core this instance owns `partition` (before it delivered anything).
    pub fn on_assigned(&mut self, partition: i32) {
        self.watermarks.assign(partition);
    }

    /// Tells the core a partition has been quiet for the idle timeout.
    pub fn on_idle(&mut self, partition: i32, out: &mut Vec<Output>) {
        self.watermarks.mark_idle(partition);
        self.close_ready(out);
    }

    /// Forgets partitions this instance lost in a rebalance.
    pub fn on_revoked(&mut self, partition: i32) {
        self.watermarks.remove(partition);
    }

    /// The current watermark in event-time micros, if any tick was seen.
    pub fn watermark(&self) -> Option<i64> {
        self.watermarks.current()
    }

    /// How many late ticks were routed out so far.
    pub fn late_ticks(&self) -> u64 {
        self.late_ticks
    }

    fn close_ready(&mut self, out: &mut Vec<Output>) {
        let Some(wm) = self.watermarks.advance() else {
            return;
        };
        self.bars.close_until(wm, &mut self.closed);
        for bar in self.closed.drain(..) {
            // Every choice was validated when the bank was built; an error here would be a
            // registry bug, and losing one indicator value must not lose the bar.
            if let Err(e) = self.indicators.on_bar(&bar, &mut self.indicator_points) {
                report_indicator_error(&e);
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

fn report_indicator_error(e: &IndicatorError) {
    metrics::counter!("processor_indicator_errors_total").increment(1);
    tracing::error!(error = %e, "indicator update failed");
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
        p.on_tick(0, tick(1, 10 * SEC), &mut out);
        p.on_tick(0, tick(1, 61 * SEC), &mut out);
        assert!(
            bars(&out).is_empty(),
            "61s - 2s lateness has not passed 60s"
        );
        p.on_tick(0, tick(1, 62 * SEC), &mut out);
        assert_eq!(bars(&out), vec![(1, 0)]);
    }

    #[test]
    fn out_of_order_within_lateness_is_kept_and_beyond_is_late() {
        let mut p = processor(5 * SEC);
        let mut out = Vec::new();
        p.on_tick(0, tick(1, 50 * SEC), &mut out);
        p.on_tick(0, tick(1, 63 * SEC), &mut out);
        p.on_tick(0, tick(1, 59 * SEC), &mut out); // within lateness: joins the first bar
        assert!(out.is_empty());
        p.on_tick(0, tick(1, 66 * SEC), &mut out); // watermark 61s closes [0, 60)
        let first = match &out[..] {
            [Output::Bar(b)] => b.clone(),
            other => panic!("expected one bar, got {other:?}"),
        };
        assert_eq!(first.tick_count, 2);
        out.clear();
        p.on_tick(0, tick(1, 30 * SEC), &mut out); // its bar is closed: late
        assert_eq!(out, vec![Output::Late(tick(1, 30 * SEC))]);
        assert_eq!(p.late_ticks(), 1);
    }

    #[test]
    fn idle_partition_releases_bars_of_busy_ones() {
        let mut p = processor(0);
        let mut out = Vec::new();
        p.on_tick(1, tick(9, 5 * SEC), &mut out); // partition 1 then goes quiet
        p.on_tick(0, tick(1, 10 * SEC), &mut out);
        p.on_tick(0, tick(1, 130 * SEC), &mut out);
        assert!(
            bars(&out).is_empty(),
            "partition 1 holds the watermark at 5s"
        );
        p.on_idle(1, &mut out);
        assert_eq!(bars(&out), vec![(1, 0), (9, 0)]);
    }
}
