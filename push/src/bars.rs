//! 3-, 5- and 15-minute bars built from the one-minute bars of the bars topic.
//!
//! The processors publish one-minute bars only (their indicators aggregate on their own);
//! a dashboard also wants the longer candles, so push folds each instrument's one-minute
//! bars into windows aligned to the epoch (as the processors' indicator timeframes are). A
//! window is emitted when its last minute arrives, or when a minute of a later window shows
//! that the window is over (a minute without trades has no bar). Everything depends only on
//! the one-minute bars, so every push node builds the same bars, and each carries the
//! position of the one-minute bar that completed it as its `seq`.

use std::collections::HashMap;

use strikeflow_schemas::Bar;

/// One minute in the bars' time unit (microseconds).
const MINUTE: i64 = 60_000_000;

/// The open windows, per instrument and timeframe.
#[derive(Default)]
pub(crate) struct BarBuilder {
    open: HashMap<(i64, u32), Bar>,
}

impl BarBuilder {
    /// Fold one one-minute `bar` into the `minutes`-long window; returns the window(s)
    /// it completes (a finished earlier window and/or the current one), oldest first.
    pub(crate) fn on_minute(&mut self, bar: &Bar, minutes: u32) -> Vec<Bar> {
        let span = i64::from(minutes) * MINUTE;
        let start = bar.window_start.div_euclid(span) * span;
        let key = (bar.instrument_token, minutes);
        let mut done = Vec::new();
        match self.open.get_mut(&key) {
            Some(open) if open.window_start == start => {
                open.high = open.high.max(bar.high);
                open.low = open.low.min(bar.low);
                open.close = bar.close;
                open.volume += bar.volume;
                open.oi = bar.oi;
                open.tick_count += bar.tick_count;
                open.window_end = start + span;
            }
            Some(open) if open.window_start > start => return done, // a stale repeat
            _ => {
                if let Some(finished) = self.open.remove(&key) {
                    done.push(finished);
                }
                self.open.insert(
                    key,
                    Bar {
                        window_start: start,
                        window_end: start + span,
                        ..bar.clone()
                    },
                );
            }
        }
        if bar.window_end >= start + span {
            if let Some(finished) = self.open.remove(&key) {
                done.push(finished);
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(i: i64, close: f64) -> Bar {
        Bar {
            instrument_token: 1,
            window_start: i * MINUTE,
            window_end: (i + 1) * MINUTE,
            open: close - 1.0,
            high: close + 1.0,
            low: close - 2.0,
            close,
            volume: 10,
            oi: 100 + i,
            tick_count: 3,
        }
    }

    #[test]
    fn five_minute_bars_aggregate_their_minutes() {
        let mut b = BarBuilder::default();
        let mut out = Vec::new();
        for i in 0..10 {
            out.extend(b.on_minute(&minute(i, 100.0 + i as f64), 5));
        }
        assert_eq!(out.len(), 2);
        let first = &out[0];
        assert_eq!((first.window_start, first.window_end), (0, 5 * MINUTE));
        assert_eq!(first.open, 99.0);
        assert_eq!(first.close, 104.0);
        assert_eq!(first.high, 105.0);
        assert_eq!(first.low, 98.0);
        assert_eq!(first.volume, 50);
        assert_eq!(first.tick_count, 15);
        assert_eq!(first.oi, 104);
    }

    #[test]
    fn a_missing_last_minute_closes_the_window_at_the_next_one() {
        let mut b = BarBuilder::default();
        assert!(b.on_minute(&minute(0, 1.0), 3).is_empty());
        assert!(b.on_minute(&minute(1, 2.0), 3).is_empty());
        // Minute 2 had no trades; minute 3 starts the next window.
        let out = b.on_minute(&minute(3, 4.0), 3);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].close, 2.0);
        assert_eq!(out[0].window_end, 3 * MINUTE);
    }
}
