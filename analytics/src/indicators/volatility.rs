//! Volatility indicators: Bollinger bands, ATR and the ATR-based Supertrend.

use serde::{Deserialize, Serialize};
use strikeflow_schemas::Bar;

use super::registry::{check_period, check_real, IndicatorError};
use super::window::{Ring, RollingExtreme};
use super::{Indicator, IndicatorValue, Trend};

/// True range of a bar against the previous close: `max(high − low, |high − prev close|,
/// |low − prev close|)`. Shared by ATR, ADX and Supertrend so all three agree on gaps.
pub fn true_range(high: f64, low: f64, prev_close: f64) -> f64 {
    let mut range = high - low;
    let up = (high - prev_close).abs();
    if up > range {
        range = up;
    }
    let down = (low - prev_close).abs();
    if down > range {
        range = down;
    }
    range
}

/// Bollinger bands on the close (TA-Lib `BBANDS`, SMA middle, default 20/2/2): volatility
/// envelopes whose squeeze and expansion option sellers watch.
///
/// Middle = SMA(`period`); upper/lower = middle ± `nbdev`·σ with σ the **population**
/// standard deviation of the same window (divide by `period`, as TA-Lib does). First value
/// with bar `period`.
///
/// σ comes from a sliding-window Welford update (mean and sum of squared deviations), which
/// avoids the cancellation between Σx² and (Σx)² at index price levels. To keep rounding
/// drift bounded on endless streams, the two sums are recomputed exactly from the window
/// every `period` bars (2·`period` flops, so still amortised O(1) per bar), and a window
/// whose high and low close coincide (rolling max/min queues) gets σ = 0 exactly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bollinger {
    period: usize,
    nbdev_up: f64,
    nbdev_dn: f64,
    ring: Ring,
    /// Running sum in TA-Lib's SMA order, for the middle band.
    sum: f64,
    /// Welford mean and sum of squared deviations of the window.
    mean: f64,
    m2: f64,
    /// Sliding updates since the last exact recomputation.
    slides: usize,
    highest: RollingExtreme,
    lowest: RollingExtreme,
}

impl Bollinger {
    /// Bands over `period` closes (2..=100 000), `nbdev_up`/`nbdev_dn` standard deviations
    /// above/below (0..=50).
    pub fn new(period: usize, nbdev_up: f64, nbdev_dn: f64) -> Result<Self, IndicatorError> {
        let period = check_period("bbands", "period", period, 2)?;
        let nbdev_up = check_real("bbands", "nbdev_up", nbdev_up, 0.0, 50.0)?;
        let nbdev_dn = check_real("bbands", "nbdev_dn", nbdev_dn, 0.0, 50.0)?;
        Ok(Self {
            period,
            nbdev_up,
            nbdev_dn,
            ring: Ring::new(period),
            sum: 0.0,
            mean: 0.0,
            m2: 0.0,
            slides: 0,
            highest: RollingExtreme::max(period),
            lowest: RollingExtreme::min(period),
        })
    }

    /// Feeds one price; returns `(upper, middle, lower)` once `period` prices are in.
    pub fn next_value(&mut self, x: f64) -> Option<(f64, f64, f64)> {
        let n = self.period as f64;
        match self.ring.push(x) {
            None => {
                let count = self.ring.len() as f64;
                let delta = x - self.mean;
                self.mean += delta / count;
                self.m2 += delta * (x - self.mean);
            }
            Some(old) => {
                self.slides += 1;
                if self.slides >= self.period {
                    self.recompute();
                } else {
                    let old_mean = self.mean;
                    self.mean += (x - old) / n;
                    self.m2 += (x - old) * ((x - self.mean) + (old - old_mean));
                }
            }
        }
        let flat = self.highest.push(x) == self.lowest.push(x);
        self.sum += x;
        if !self.ring.is_full() {
            return None;
        }
        let middle = self.sum / n;
        self.sum -= self.ring.oldest().unwrap_or(0.0);
        let sd = if flat {
            0.0
        } else {
            (self.m2 / n).max(0.0).sqrt()
        };
        Some((
            middle + self.nbdev_up * sd,
            middle,
            middle - self.nbdev_dn * sd,
        ))
    }

    /// Exact two-pass mean and squared deviations of the current window.
    fn recompute(&mut self) {
        let n = self.ring.len() as f64;
        self.mean = self.ring.iter().sum::<f64>() / n;
        self.m2 = self
            .ring
            .iter()
            .map(|v| (v - self.mean) * (v - self.mean))
            .sum();
        self.slides = 0;
    }

    /// Forgets all prices.
    pub fn clear(&mut self) {
        self.ring.clear();
        self.sum = 0.0;
        self.mean = 0.0;
        self.m2 = 0.0;
        self.slides = 0;
        self.highest.clear();
        self.lowest.clear();
    }
}

impl Indicator for Bollinger {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        self.next_value(bar.close)
            .map(|(upper, middle, lower)| IndicatorValue::Bands {
                upper,
                middle,
                lower,
            })
    }

    fn reset(&mut self) {
        self.clear();
    }

    fn lookback(&self) -> usize {
        self.period - 1
    }
}

/// Wilder's average true range (TA-Lib `ATR`, default 14): the volatility yardstick for
/// stop distances and the input of [`Supertrend`].
///
/// As in TA-Lib the first bar has no true range (no previous close), the first ATR is the
/// simple mean of the true ranges of bars 2..=`period + 1` (so it arrives with bar
/// `period + 1`), then `atr = (atr·(period − 1) + tr) / period`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Atr {
    period: usize,
    prev_close: Option<f64>,
    ranges: usize,
    sum: f64,
    value: f64,
}

impl Atr {
    /// An ATR over `period` true ranges (1..=100 000).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        let period = check_period("atr", "period", period, 1)?;
        Ok(Self {
            period,
            prev_close: None,
            ranges: 0,
            sum: 0.0,
            value: 0.0,
        })
    }

    /// The smoothing period.
    pub fn period(&self) -> usize {
        self.period
    }

    /// Feeds one bar's high, low and close.
    pub fn next_hlc(&mut self, high: f64, low: f64, close: f64) -> Option<f64> {
        let prev = self.prev_close.replace(close)?;
        let tr = true_range(high, low, prev);
        let n = self.period as f64;
        if self.ranges < self.period {
            self.ranges += 1;
            self.sum += tr;
            if self.ranges < self.period {
                return None;
            }
            self.value = self.sum / n;
        } else {
            self.value = (self.value * (n - 1.0) + tr) / n;
        }
        Some(self.value)
    }

    /// Forgets all bars.
    pub fn clear(&mut self) {
        self.prev_close = None;
        self.ranges = 0;
        self.sum = 0.0;
        self.value = 0.0;
    }
}

impl Indicator for Atr {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        self.next_hlc(bar.high, bar.low, bar.close)
            .map(IndicatorValue::Scalar)
    }

    fn reset(&mut self) {
        self.clear();
    }

    fn lookback(&self) -> usize {
        self.period
    }
}

/// The final bands and trend carried from one bar to the next.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct SupertrendState {
    upper: f64,
    lower: f64,
    close: f64,
    trend: Trend,
}

/// Supertrend (default ATR 10 × 3): a trailing stop line that flips sides when the close
/// crosses it, popular for intraday index trading. TA-Lib has none; this is the standard
/// definition (as in TradingView's `ta.supertrend`):
///
/// - `atr` = [`Atr`]`(period)` (Wilder, TA-Lib seeding), `hl2 = (high + low) / 2`;
/// - basic bands: `hl2 ± multiplier·atr`;
/// - final upper = basic upper if it is below the previous final upper **or** the previous
///   close was above the previous final upper, else the previous final upper (the band only
///   ratchets down while the price stays under it); final lower mirrors this (basic lower if
///   above the previous final lower or the previous close was below it);
/// - trend: on the first bar with an ATR the bands are the basic bands and the trend is
///   down (TradingView's start); afterwards a down-trend flips up when the close ends above
///   the final upper band, an up-trend flips down when the close ends below the final
///   lower band;
/// - value: final lower band in an up-trend, final upper band in a down-trend.
///
/// First value with the first ATR, i.e. bar `period + 1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Supertrend {
    atr: Atr,
    multiplier: f64,
    prev: Option<SupertrendState>,
}

impl Supertrend {
    /// A Supertrend over an ATR of `period` bars (1..=100 000) and a band `multiplier`
    /// (0..=50).
    pub fn new(period: usize, multiplier: f64) -> Result<Self, IndicatorError> {
        let period = check_period("supertrend", "period", period, 1)?;
        let multiplier = check_real("supertrend", "multiplier", multiplier, 0.0, 50.0)?;
        Ok(Self {
            atr: Atr::new(period)?,
            multiplier,
            prev: None,
        })
    }

    /// Feeds one bar's high, low and close; returns the line and the trend.
    pub fn next_hlc(&mut self, high: f64, low: f64, close: f64) -> Option<(f64, Trend)> {
        let atr = self.atr.next_hlc(high, low, close)?;
        let hl2 = (high + low) / 2.0;
        let basic_upper = hl2 + self.multiplier * atr;
        let basic_lower = hl2 - self.multiplier * atr;
        let state = match self.prev {
            None => SupertrendState {
                upper: basic_upper,
                lower: basic_lower,
                close,
                trend: Trend::Down,
            },
            Some(prev) => {
                let upper = if basic_upper < prev.upper || prev.close > prev.upper {
                    basic_upper
                } else {
                    prev.upper
                };
                let lower = if basic_lower > prev.lower || prev.close < prev.lower {
                    basic_lower
                } else {
                    prev.lower
                };
                let trend = match prev.trend {
                    Trend::Down if close > upper => Trend::Up,
                    Trend::Up if close < lower => Trend::Down,
                    same => same,
                };
                SupertrendState {
                    upper,
                    lower,
                    close,
                    trend,
                }
            }
        };
        self.prev = Some(state);
        let value = match state.trend {
            Trend::Up => state.lower,
            Trend::Down => state.upper,
        };
        Some((value, state.trend))
    }

    /// Forgets all bars.
    pub fn clear(&mut self) {
        self.atr.clear();
        self.prev = None;
    }
}

impl Indicator for Supertrend {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        self.next_hlc(bar.high, bar.low, bar.close)
            .map(|(value, direction)| IndicatorValue::Supertrend { value, direction })
    }

    fn reset(&mut self) {
        self.clear();
    }

    fn lookback(&self) -> usize {
        self.atr.period()
    }
}
