//! Moving averages of the close: SMA, EMA and WMA, TA-Lib compatible.

use serde::{Deserialize, Serialize};

use super::registry::{check_period, IndicatorError};
use super::window::Ring;

/// Simple moving average of the last `period` closes (TA-Lib `SMA`): the baseline trend
/// line, and the middle Bollinger band / stochastic smoother.
///
/// A running sum updated in TA-Lib's order (add the new value, divide, subtract the value
/// that leaves next), so each bar costs O(1). First value with bar `period`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sma {
    period: usize,
    ring: Ring,
    sum: f64,
}

impl Sma {
    /// An SMA over `period` values (1..=100 000).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        let period = check_period("sma", "period", period, 1)?;
        Ok(Self {
            period,
            ring: Ring::new(period),
            sum: 0.0,
        })
    }

    /// The window length.
    pub fn period(&self) -> usize {
        self.period
    }

    /// Feeds one value (not necessarily a close), so other indicators can average any
    /// series; returns the average once `period` values have been seen.
    pub fn next_value(&mut self, x: f64) -> Option<f64> {
        self.sum += x;
        self.ring.push(x);
        if !self.ring.is_full() {
            return None;
        }
        let out = self.sum / self.period as f64;
        // The oldest value leaves with the next push: take it out now, as TA-Lib does.
        self.sum -= self.ring.oldest().unwrap_or(0.0);
        Some(out)
    }

    /// Forgets all values.
    pub fn clear(&mut self) {
        self.ring.clear();
        self.sum = 0.0;
    }
}

close_indicator!(Sma, |i| i.period - 1);

/// Exponential moving average of the close (TA-Lib `EMA`): the dashboard's 9/20/50/200
/// trend lines and the building block of MACD.
///
/// `k = 2 / (period + 1)`; seeded like TA-Lib with the simple mean of the first `period`
/// values (first value with bar `period`), then `ema += (x − ema)·k`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ema {
    period: usize,
    k: f64,
    seen: usize,
    seed_sum: f64,
    value: f64,
}

impl Ema {
    /// An EMA over `period` values (1..=100 000).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        let period = check_period("ema", "period", period, 1)?;
        Ok(Self {
            period,
            k: 2.0 / (period as f64 + 1.0),
            seen: 0,
            seed_sum: 0.0,
            value: 0.0,
        })
    }

    /// The period the smoothing factor derives from.
    pub fn period(&self) -> usize {
        self.period
    }

    /// Feeds one value of any series (MACD smooths its own line with this).
    pub fn next_value(&mut self, x: f64) -> Option<f64> {
        if self.seen < self.period {
            self.seen += 1;
            self.seed_sum += x;
            if self.seen < self.period {
                return None;
            }
            self.value = self.seed_sum / self.period as f64;
        } else {
            self.value = ((x - self.value) * self.k) + self.value;
        }
        Some(self.value)
    }

    /// Starts the average at `value` as if it had just been seeded, so MACD can seed its
    /// fast EMA where TA-Lib does (see [`super::Macd`]).
    pub(crate) fn seed(&mut self, value: f64) {
        self.seen = self.period;
        self.seed_sum = 0.0;
        self.value = value;
    }

    /// Forgets all values.
    pub fn clear(&mut self) {
        self.seen = 0;
        self.seed_sum = 0.0;
        self.value = 0.0;
    }
}

close_indicator!(Ema, |i| i.period - 1);

/// Linearly weighted moving average of the close (TA-Lib `WMA`): weights `1..=period`,
/// newest heaviest, so it turns faster than an SMA of the same length.
///
/// O(1) per bar with TA-Lib's two running sums: the weighted sum, and the plain sum that is
/// subtracted from it each bar (every weight drops by one), plus a ring for the value that
/// leaves the window. Every `period` bars both sums are rebuilt exactly from the window
/// (amortised O(1)), which keeps rounding drift bounded on endless streams.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Wma {
    period: usize,
    divider: f64,
    ring: Ring,
    seen: usize,
    weighted_sum: f64,
    plain_sum: f64,
    /// Oldest value of the last full window (leaves the plain sum with the next value).
    trailing: f64,
    /// Outputs since the sums were last rebuilt from the window.
    trailing_updates: usize,
}

impl Wma {
    /// A WMA over `period` values (1..=100 000).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        let period = check_period("wma", "period", period, 1)?;
        Ok(Self {
            period,
            divider: ((period * (period + 1)) >> 1) as f64,
            ring: Ring::new(period),
            seen: 0,
            weighted_sum: 0.0,
            plain_sum: 0.0,
            trailing: 0.0,
            trailing_updates: 0,
        })
    }

    /// The window length.
    pub fn period(&self) -> usize {
        self.period
    }

    /// Feeds one value of any series.
    pub fn next_value(&mut self, x: f64) -> Option<f64> {
        self.ring.push(x);
        if self.seen + 1 < self.period {
            self.seen += 1;
            self.plain_sum += x;
            self.weighted_sum += x * self.seen as f64;
            return None;
        }
        self.seen = self.period;
        self.trailing_updates += 1;
        if self.trailing_updates >= self.period {
            return Some(self.recompute());
        }
        self.plain_sum += x;
        self.plain_sum -= self.trailing;
        self.weighted_sum += x * self.period as f64;
        self.trailing = self.ring.oldest().unwrap_or(0.0);
        let out = self.weighted_sum / self.divider;
        self.weighted_sum -= self.plain_sum;
        Some(out)
    }

    /// Rebuilds both running sums exactly from the (full) window and returns the average:
    /// subtracting the plain sum every bar feeds its rounding error into the weighted sum,
    /// which would otherwise grow without bound on an endless stream.
    fn recompute(&mut self) -> f64 {
        let (mut plain, mut weighted) = (0.0, 0.0);
        for (j, v) in self.ring.iter().enumerate() {
            plain += v;
            weighted += v * (j + 1) as f64;
        }
        self.plain_sum = plain;
        self.trailing = self.ring.oldest().unwrap_or(0.0);
        self.weighted_sum = weighted - plain;
        self.trailing_updates = 0;
        weighted / self.divider
    }

    /// Forgets all values.
    pub fn clear(&mut self) {
        self.ring.clear();
        self.seen = 0;
        self.weighted_sum = 0.0;
        self.plain_sum = 0.0;
        self.trailing = 0.0;
        self.trailing_updates = 0;
    }
}

close_indicator!(Wma, |i| i.period - 1);
