//! Rolling one-minute bars up into 3/5/15-minute (or any 1..=375-minute) bars.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use strikeflow_schemas::Bar;

use super::registry::IndicatorError;
use super::session::{
    ist_day, ist_midnight, DAY_MICROS, MINUTE_MICROS, SESSION_CLOSE_MINUTE, SESSION_OPEN_MINUTE,
};

/// Longest supported bucket: the whole 09:15–15:30 session (375 minutes).
pub const MAX_ROLLUP_MINUTES: u32 = (SESSION_CLOSE_MINUTE - SESSION_OPEN_MINUTE) as u32;

/// The `[start, end)` bucket (UTC microseconds) of `minutes`-minute bars that holds the
/// one-minute bar starting at `ts`, so every consumer cuts timeframes the same way.
///
/// Buckets follow a grid anchored at the 09:15 IST session open (09:15–09:18, 09:18–09:21,
/// … for 3 minutes) and are clipped at 00:00, 09:15, 15:30 and 24:00 IST, so no bucket
/// straddles the open, the close or midnight (60-minute bars end with 15:15–15:30, as on
/// broker charts). For 3, 5 and 15 minutes no clipping ever happens. `minutes` is clamped
/// to `1..=MAX_ROLLUP_MINUTES`.
pub fn bucket_bounds(ts: i64, minutes: u32) -> (i64, i64) {
    let width = i64::from(minutes.clamp(1, MAX_ROLLUP_MINUTES)) * MINUTE_MICROS;
    let midnight = ist_midnight(ist_day(ts));
    let open = midnight + SESSION_OPEN_MINUTE * MINUTE_MICROS;
    let close = midnight + SESSION_CLOSE_MINUTE * MINUTE_MICROS;
    let (segment_start, segment_end) = if ts < open {
        (midnight, open)
    } else if ts < close {
        (open, close)
    } else {
        (close, midnight + DAY_MICROS)
    };
    let grid_start = open + (ts - open).div_euclid(width) * width;
    (
        grid_start.max(segment_start),
        (grid_start + width).min(segment_end),
    )
}

/// The rolled-up bars a single input bar closed: none, one, or two (the previous bucket,
/// closed by a bar from a later bucket, and that bar's own bucket if it was its last
/// minute). Iterates oldest first, without allocating.
#[derive(Debug, Default)]
pub struct Closed {
    bars: [Option<Bar>; 2],
    next: usize,
}

impl Closed {
    fn push(&mut self, bar: Bar) {
        let slot = if self.bars[0].is_none() { 0 } else { 1 };
        self.bars[slot] = Some(bar);
    }
}

impl Iterator for Closed {
    type Item = Bar;

    fn next(&mut self) -> Option<Bar> {
        while let Some(slot) = self.bars.get_mut(self.next) {
            self.next += 1;
            if let Some(bar) = slot.take() {
                return Some(bar);
            }
        }
        None
    }
}

/// A bucket still collecting one-minute bars.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenBucket {
    bar: Bar,
    /// `window_start` of the newest one-minute bar folded in.
    last_minute: i64,
}

/// Streaming aggregator from one-minute bars to `minutes`-minute bars per instrument, so
/// indicators run on 3/5/15-minute charts from the same one-minute feed.
///
/// Buckets are cut by [`bucket_bounds`] (aligned to the 09:15 IST open). A bucket closes
/// when its last minute arrives, or when a bar from a later bucket of the same instrument
/// arrives (a quiet last minute), or on [`Rollup::close_until`] / [`Rollup::flush`].
/// Rolled bars span the whole bucket (`window_start`/`window_end` are the bucket bounds):
/// open of the first bar, max high, min low, close and OI of the last bar, volume and
/// tick count summed. Input must be in time order per instrument: a bar older than the
/// open bucket, or not newer than the last bar folded in, is ignored and counted
/// ([`Rollup::ignored_bars`]). Plain data (serialisable), so a processor snapshot carries
/// its open buckets across a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rollup {
    minutes: u32,
    open: HashMap<i64, OpenBucket>,
    ignored: u64,
}

impl Rollup {
    /// An aggregator into `minutes`-minute bars (1..=375; 1 passes bars through).
    pub fn new(minutes: u32) -> Result<Self, IndicatorError> {
        if !(1..=MAX_ROLLUP_MINUTES).contains(&minutes) {
            return Err(IndicatorError::OutOfRange {
                indicator: "rollup",
                param: "minutes",
                value: f64::from(minutes),
                min: 1.0,
                max: f64::from(MAX_ROLLUP_MINUTES),
            });
        }
        Ok(Self {
            minutes,
            open: HashMap::new(),
            ignored: 0,
        })
    }

    /// The bucket length in minutes.
    pub fn minutes(&self) -> u32 {
        self.minutes
    }

    /// Input bars dropped for arriving out of order (see the type docs).
    pub fn ignored_bars(&self) -> u64 {
        self.ignored
    }

    /// Number of buckets still open (one per instrument at most).
    pub fn open_buckets(&self) -> usize {
        self.open.len()
    }

    /// Folds one closed one-minute bar in and returns the buckets it closed.
    #[must_use = "the buckets this bar closed are returned, not kept"]
    pub fn update(&mut self, bar: &Bar) -> Closed {
        let mut closed = Closed::default();
        let (start, end) = bucket_bounds(bar.window_start, self.minutes);
        match self.open.entry(bar.instrument_token) {
            Entry::Vacant(slot) => {
                slot.insert(OpenBucket::start(bar, start, end));
            }
            Entry::Occupied(mut slot) => {
                let bucket = slot.get_mut();
                if start > bucket.bar.window_start {
                    let previous = std::mem::replace(bucket, OpenBucket::start(bar, start, end));
                    closed.push(previous.bar);
                } else if start == bucket.bar.window_start && bar.window_start > bucket.last_minute
                {
                    bucket.fold(bar);
                } else {
                    self.ignored += 1;
                    return closed;
                }
            }
        }
        if bar.window_end >= end {
            if let Some(bucket) = self.open.remove(&bar.instrument_token) {
                closed.push(bucket.bar);
            }
        }
        closed
    }

    /// Closes every bucket that ends at or before `watermark` (UTC micros), oldest first,
    /// for buckets whose last minute never comes (illiquid strikes, the session end).
    pub fn close_until(&mut self, watermark: i64, out: &mut Vec<Bar>) {
        let first = out.len();
        self.open.retain(|_, bucket| {
            if bucket.bar.window_end <= watermark {
                out.push(bucket.bar.clone());
                false
            } else {
                true
            }
        });
        out[first..].sort_by_key(|b| (b.window_start, b.instrument_token));
    }

    /// Closes every open bucket (shutdown, end of a replay), oldest first.
    pub fn flush(&mut self) -> Vec<Bar> {
        let mut out = Vec::with_capacity(self.open.len());
        self.close_until(i64::MAX, &mut out);
        out
    }

    /// Drops all open buckets and the ignored-bar count.
    pub fn reset(&mut self) {
        self.open.clear();
        self.ignored = 0;
    }
}

impl OpenBucket {
    fn start(bar: &Bar, start: i64, end: i64) -> Self {
        Self {
            bar: Bar {
                window_start: start,
                window_end: end,
                ..bar.clone()
            },
            last_minute: bar.window_start,
        }
    }

    fn fold(&mut self, bar: &Bar) {
        let b = &mut self.bar;
        b.high = b.high.max(bar.high);
        b.low = b.low.min(bar.low);
        b.close = bar.close;
        b.oi = bar.oi;
        b.volume = b.volume.saturating_add(bar.volume);
        b.tick_count = b.tick_count.saturating_add(bar.tick_count);
        self.last_minute = bar.window_start;
    }
}
