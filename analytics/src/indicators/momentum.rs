//! Momentum oscillators: RSI, MACD and the slow Stochastic, TA-Lib compatible.

use serde::{Deserialize, Serialize};
use strikeflow_schemas::Bar;

use super::average::{Ema, Sma};
use super::registry::{check_period, IndicatorError};
use super::window::RollingExtreme;
use super::{Indicator, IndicatorValue, TALIB_EPSILON};

/// Wilder's relative strength index of the close on a 0–100 scale (TA-Lib `RSI`): the
/// overbought/oversold gauge every options dashboard shows.
///
/// Average gain and loss are seeded with the simple mean of the first `period` changes
/// (so RSI(14) needs 15 closes) and then smoothed with α = 1/period:
/// `avg = (avg·(period − 1) + change) / period`. `RSI = 100·gain / (gain + loss)`, and 0
/// when the price has not moved at all (gain = loss = 0), as in TA-Lib. Unlike the `ta` /
/// `yata` crates this is not EMA-smoothed and not 0–1 scaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rsi {
    period: usize,
    prev: Option<f64>,
    changes: usize,
    gain: f64,
    loss: f64,
}

impl Rsi {
    /// An RSI over `period` changes (2..=100 000).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        let period = check_period("rsi", "period", period, 2)?;
        Ok(Self {
            period,
            prev: None,
            changes: 0,
            gain: 0.0,
            loss: 0.0,
        })
    }

    /// Feeds one price; the first value comes with price number `period + 1`.
    pub fn next_value(&mut self, x: f64) -> Option<f64> {
        let prev = self.prev.replace(x)?;
        let change = x - prev;
        let n = self.period as f64;
        if self.changes < self.period {
            self.changes += 1;
            if change < 0.0 {
                self.loss -= change;
            } else {
                self.gain += change;
            }
            if self.changes < self.period {
                return None;
            }
            self.loss /= n;
            self.gain /= n;
        } else {
            self.loss *= n - 1.0;
            self.gain *= n - 1.0;
            if change < 0.0 {
                self.loss -= change;
            } else {
                self.gain += change;
            }
            self.loss /= n;
            self.gain /= n;
        }
        let total = self.gain + self.loss;
        Some(if total > 0.0 {
            100.0 * (self.gain / total)
        } else {
            0.0
        })
    }

    /// Forgets all prices.
    pub fn clear(&mut self) {
        self.prev = None;
        self.changes = 0;
        self.gain = 0.0;
        self.loss = 0.0;
    }
}

close_indicator!(Rsi, |i| i.period);

/// Moving average convergence/divergence of the close (TA-Lib `MACD`, default 12/26/9):
/// trend and momentum in one, with signal-line crossovers as the usual trigger.
///
/// Matches TA-Lib exactly, including its alignment quirk: the slow EMA is seeded with the
/// mean of the first `slow` closes, and the fast EMA is *not* started at bar `fast` but
/// seeded on the same bar as the slow one, with the mean of the `fast` closes ending there
/// (closes before that window are ignored by the fast EMA). The signal EMA is seeded with the
/// mean of the first `signal` MACD values, and all three lines appear together with bar
/// `slow + signal − 1` (34 for 12/26/9).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Macd {
    slow_period: usize,
    signal_period: usize,
    seen: usize,
    /// Mean of the last `fast` closes, only needed to seed `fast`.
    fast_seed: Sma,
    fast: Ema,
    slow: Ema,
    signal: Ema,
}

impl Macd {
    /// MACD with `fast < slow` EMA periods (2..=100 000) and a `signal` period
    /// (1..=100 000).
    pub fn new(fast: usize, slow: usize, signal: usize) -> Result<Self, IndicatorError> {
        let fast = check_period("macd", "fast", fast, 2)?;
        let slow = check_period("macd", "slow", slow, 2)?;
        let signal = check_period("macd", "signal", signal, 1)?;
        if fast >= slow {
            return Err(IndicatorError::Inconsistent {
                indicator: "macd",
                reason: "the fast period must be shorter than the slow period",
            });
        }
        Ok(Self {
            slow_period: slow,
            signal_period: signal,
            seen: 0,
            fast_seed: Sma::new(fast)?,
            fast: Ema::new(fast)?,
            slow: Ema::new(slow)?,
            signal: Ema::new(signal)?,
        })
    }

    /// Feeds one price; returns `(macd, signal, hist)` once warmed up.
    pub fn next_value(&mut self, x: f64) -> Option<(f64, f64, f64)> {
        if self.seen <= self.slow_period {
            self.seen += 1;
        }
        let slow = self.slow.next_value(x);
        let fast = if self.seen < self.slow_period {
            self.fast_seed.next_value(x);
            None
        } else if self.seen == self.slow_period {
            let seed = self.fast_seed.next_value(x)?;
            self.fast.seed(seed);
            Some(seed)
        } else {
            self.fast.next_value(x)
        };
        let macd = fast? - slow?;
        let signal = self.signal.next_value(macd)?;
        Some((macd, signal, macd - signal))
    }

    /// Forgets all prices.
    pub fn clear(&mut self) {
        self.seen = 0;
        self.fast_seed.clear();
        self.fast.clear();
        self.slow.clear();
        self.signal.clear();
    }
}

impl Indicator for Macd {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        self.next_value(bar.close)
            .map(|(macd, signal, hist)| IndicatorValue::Macd { macd, signal, hist })
    }

    fn reset(&mut self) {
        self.clear();
    }

    fn lookback(&self) -> usize {
        self.slow_period - 1 + self.signal_period - 1
    }
}

/// Slow stochastic oscillator (TA-Lib `STOCH` with SMA smoothing, default 5/3/3): where the
/// close sits inside the recent high–low range, 0–100.
///
/// Fast %K = 100·(close − lowest low)/(highest high − lowest low) over `fastk` bars (0 when
/// the range is zero to within 1e-14 of the prices, TA-Lib's scaled flat-window rule);
/// slow %K = SMA(`slowk`) of fast %K; %D = SMA(`slowd`) of slow %K. The rolling high and
/// low use monotonic queues (amortised O(1)). First value with bar
/// `fastk + slowk + slowd − 2` (9 for 5/3/3).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stochastic {
    fastk_period: usize,
    highs: RollingExtreme,
    lows: RollingExtreme,
    seen: usize,
    slow_k: Sma,
    slow_d: Sma,
}

impl Stochastic {
    /// A stochastic with the given fast-%K window and slow-%K / %D SMA periods
    /// (each 1..=100 000).
    pub fn new(fastk: usize, slowk: usize, slowd: usize) -> Result<Self, IndicatorError> {
        let fastk = check_period("stoch", "fastk", fastk, 1)?;
        let slowk = check_period("stoch", "slowk", slowk, 1)?;
        let slowd = check_period("stoch", "slowd", slowd, 1)?;
        Ok(Self {
            fastk_period: fastk,
            highs: RollingExtreme::max(fastk),
            lows: RollingExtreme::min(fastk),
            seen: 0,
            slow_k: Sma::new(slowk)?,
            slow_d: Sma::new(slowd)?,
        })
    }

    /// Feeds one bar's high, low and close; returns `(%K, %D)` once warmed up.
    pub fn next_hlc(&mut self, high: f64, low: f64, close: f64) -> Option<(f64, f64)> {
        let highest = self.highs.push(high);
        let lowest = self.lows.push(low);
        if self.seen < self.fastk_period {
            self.seen += 1;
            if self.seen < self.fastk_period {
                return None;
            }
        }
        let range = highest - lowest;
        let fast_k = if range.abs() <= TALIB_EPSILON * (highest.abs() + lowest.abs()) {
            0.0
        } else {
            ((close - lowest) / range) * 100.0
        };
        let k = self.slow_k.next_value(fast_k)?;
        let d = self.slow_d.next_value(k)?;
        Some((k, d))
    }

    /// Forgets all bars.
    pub fn clear(&mut self) {
        self.highs.clear();
        self.lows.clear();
        self.seen = 0;
        self.slow_k.clear();
        self.slow_d.clear();
    }
}

impl Indicator for Stochastic {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        self.next_hlc(bar.high, bar.low, bar.close)
            .map(|(k, d)| IndicatorValue::Stoch { k, d })
    }

    fn reset(&mut self) {
        self.clear();
    }

    fn lookback(&self) -> usize {
        self.fastk_period - 1 + self.slow_k.period() - 1 + self.slow_d.period() - 1
    }
}
