//! One-minute OHLCV + OI bars per instrument on event time.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use strikeflow_schemas::{Bar, Tick};

/// Bar length: one minute, in microseconds (the unit of `Tick::exchange_ts`).
pub const BAR_MICROS: i64 = 60_000_000;

/// Start of the one-minute window holding `ts` (floor, also for times before the epoch).
pub fn window_start(ts: i64) -> i64 {
    ts - ts.rem_euclid(BAR_MICROS)
}

/// A bar still collecting ticks, with the event times that decide its open and close.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenBar {
    bar: Bar,
    first_ts: i64,
    last_ts: i64,
}

/// Open bars keyed by (window end, token) so closing on a watermark pops from the front.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct BarAggregator {
    open: BTreeMap<(i64, i64), OpenBar>,
    /// Highest cumulative day volume seen per instrument: a tick's traded quantity is the
    /// growth of this figure, which stays right when ticks arrive out of order.
    day_volume: HashMap<i64, i64>,
}

impl BarAggregator {
    /// An aggregator with no open bars.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of bars still open (for metrics and tests).
    pub fn open_bars(&self) -> usize {
        self.open.len()
    }

    /// Folds an on-time tick into its instrument's bar for the tick's minute.
    pub fn add(&mut self, tick: &Tick) {
        let traded = match self.day_volume.get_mut(&tick.instrument_token) {
            Some(seen) => {
                let grown = (tick.volume - *seen).max(0);
                *seen = (*seen).max(tick.volume);
                grown
            }
            None => {
                // First sight of the instrument: only the last trade is known to be new.
                self.day_volume.insert(tick.instrument_token, tick.volume);
                tick.last_qty.clamp(0, tick.volume.max(0))
            }
        };
        let start = window_start(tick.exchange_ts);
        let end = start + BAR_MICROS;
        let ts = tick.exchange_ts;
        self.open
            .entry((end, tick.instrument_token))
            .and_modify(|open| {
                let bar = &mut open.bar;
                bar.high = bar.high.max(tick.ltp);
                bar.low = bar.low.min(tick.ltp);
                // Ticks may arrive out of order inside the lateness bound: open, close and
                // OI follow event time, not arrival order.
                if ts >= open.last_ts {
                    bar.close = tick.ltp;
                    bar.oi = tick.oi;
                    open.last_ts = ts;
                }
                if ts < open.first_ts {
                    bar.open = tick.ltp;
                    open.first_ts = ts;
                }
                bar.volume += traded;
                bar.tick_count += 1;
            })
            .or_insert_with(|| OpenBar {
                bar: Bar {
                    instrument_token: tick.instrument_token,
                    window_start: start,
                    window_end: end,
                    open: tick.ltp,
                    high: tick.ltp,
                    low: tick.ltp,
                    close: tick.ltp,
                    volume: traded,
                    oi: tick.oi,
                    tick_count: 1,
                },
                first_ts: ts,
                last_ts: ts,
            });
    }

    /// Closes every bar whose window ended at or before `watermark`, oldest first.
    pub fn close_until(&mut self, watermark: i64, out: &mut Vec<Bar>) {
        while let Some(entry) = self.open.first_entry() {
            if entry.key().0 > watermark {
                break;
            }
            out.push(entry.remove().bar);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(token: i64, ts: i64, ltp: f64, volume: i64, oi: i64) -> Tick {
        Tick {
            instrument_token: token,
            exchange_ts: ts,
            ltp,
            last_qty: 10,
            volume,
            oi,
            bid: ltp - 0.05,
            bid_qty: 1,
            ask: ltp + 0.05,
            ask_qty: 1,
        }
    }

    #[test]
    fn window_start_floors_negative_times() {
        assert_eq!(window_start(0), 0);
        assert_eq!(window_start(BAR_MICROS - 1), 0);
        assert_eq!(window_start(-1), -BAR_MICROS);
    }

    #[test]
    fn ohlc_follows_event_time_and_volume_is_day_volume_growth() {
        let mut agg = BarAggregator::new();
        agg.add(&tick(1, 1_000_000, 100.0, 10, 500));
        agg.add(&tick(1, 3_000_000, 103.0, 40, 520));
        // Arrives last but happened in between: changes neither open nor close.
        agg.add(&tick(1, 2_000_000, 98.0, 25, 510));
        let mut out = Vec::new();
        agg.close_until(BAR_MICROS - 1, &mut out);
        assert!(out.is_empty(), "window not ended yet");
        agg.close_until(BAR_MICROS, &mut out);
        assert_eq!(out.len(), 1);
        let bar = &out[0];
        assert_eq!(
            (bar.open, bar.high, bar.low, bar.close),
            (100.0, 103.0, 98.0, 103.0)
        );
        assert_eq!(bar.volume, 10 + 30);
        assert_eq!(bar.oi, 520);
        assert_eq!(bar.tick_count, 3);
        assert_eq!(agg.open_bars(), 0);
    }

    #[test]
    fn bars_close_oldest_first_across_instruments() {
        let mut agg = BarAggregator::new();
        agg.add(&tick(2, BAR_MICROS + 5, 1.0, 1, 0));
        agg.add(&tick(1, 5, 1.0, 1, 0));
        agg.add(&tick(3, 2 * BAR_MICROS + 5, 1.0, 1, 0));
        let mut out = Vec::new();
        agg.close_until(2 * BAR_MICROS, &mut out);
        let keys: Vec<_> = out
            .iter()
            .map(|b| (b.window_start, b.instrument_token))
            .collect();
        assert_eq!(keys, vec![(0, 1), (BAR_MICROS, 2)]);
        assert_eq!(agg.open_bars(), 1);
    }
}
