//! Streaming technical indicators over one-minute (or rolled-up) bars.
//!
//! Dashboards for index options show moving averages, RSI, MACD, Bollinger bands, ATR,
//! Supertrend, session VWAP, ADX, Stochastic and OBV on live bars. Everything here is pure:
//! no I/O, no clock, no allocation per bar. Each indicator is a small state machine fed one
//! closed bar at a time through [`Indicator::update`], costing O(1) per bar (ring buffers
//! and monotonic queues where a window is needed; history is never re-scanned).
//!
//! **Reference.** TA-Lib (PyPI `TA-Lib`, C library 0.6+) defines the values: seeding,
//! warm-up lengths (TA-Lib's "lookback") and the Wilder smoothing of RSI, ATR and ADX
//! follow it, and `analytics/tests/indicators_talib.rs` checks every TA-Lib function we
//! mirror against the real library. Supertrend and session VWAP have no TA-Lib
//! counterpart; their definitions are documented on [`Supertrend`] and [`SessionVwap`].
//!
//! **Warm-up.** Until an indicator has seen enough bars it returns `None`, never NaN. The
//! first value arrives with bar number `lookback() + 1` (e.g. RSI(14) with the 15th bar).
//!
//! **Timeframes.** [`Rollup`] turns one-minute bars into 3/5/15-minute bars aligned to the
//! 09:15 IST session open, so any indicator runs on any of those timeframes.
//!
//! **Run-time discovery.** [`registry`] lists every indicator (name, description,
//! parameters with default/min/max, output names) as serialisable data for a UI, and
//! [`build`] constructs one from a name and parameters as a [`StreamingIndicator`],
//! rejecting bad input with [`IndicatorError`].
//!
//! **State is plain data.** Every indicator, [`StreamingIndicator`] and [`Rollup`] derive
//! `Serialize`/`Deserialize` (and `Clone`), so the processor can snapshot its indicator
//! state and continue after a restart exactly where it stopped: a restored indicator
//! produces bit-for-bit the values the original would have.

/// Implements [`Indicator`] for an indicator driven by the close alone (an inherent
/// `next_value(close) -> Option<f64>` and `clear()`), with its TA-Lib lookback. The SMA,
/// EMA, WMA and RSI would otherwise each write out the same three methods.
macro_rules! close_indicator {
    ($indicator:ty, $lookback:expr) => {
        impl $crate::indicators::Indicator for $indicator {
            #[inline]
            fn update(
                &mut self,
                bar: &strikeflow_schemas::Bar,
            ) -> Option<$crate::indicators::IndicatorValue> {
                self.next_value(bar.close)
                    .map($crate::indicators::IndicatorValue::Scalar)
            }

            fn reset(&mut self) {
                self.clear();
            }

            fn lookback(&self) -> usize {
                let lookback: fn(&Self) -> usize = $lookback;
                lookback(self)
            }
        }
    };
}

mod average;
mod momentum;
mod registry;
mod rollup;
mod session;
mod streaming;
mod trend;
mod volatility;
mod volume;
mod window;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};
use strikeflow_schemas::Bar;

pub use average::{Ema, Sma, Wma};
pub use momentum::{Macd, Rsi, Stochastic};
pub use registry::{build, registry, spec, IndicatorError, IndicatorSpec, ParamKind, ParamSpec};
pub use rollup::{bucket_bounds, Closed, Rollup, MAX_ROLLUP_MINUTES};
pub use session::{ist_day, IST_OFFSET_MICROS, SESSION_CLOSE_MINUTE, SESSION_OPEN_MINUTE};
pub use streaming::StreamingIndicator;
pub use trend::Adx;
pub use volatility::{true_range, Atr, Bollinger, Supertrend};
pub use volume::{Obv, SessionVwap};

/// TA-Lib's zero band (`TA_EPSILON` since C 0.6): differences within this much (absolute, or
/// relative to the operands where TA-Lib scales it) count as zero in its guards.
pub(crate) const TALIB_EPSILON: f64 = 1e-14;

/// A streaming indicator over bars: the one interface every indicator implements, so code
/// can drive any of them alike. [`StreamingIndicator`] implements it too, by delegating to
/// the indicator it holds; that is what [`build`] returns for indicators chosen at run time.
pub trait Indicator {
    /// Feeds the next closed bar of the series (in time order) and returns the value as of
    /// that bar, or `None` while the indicator is still warming up (or, for VWAP, while the
    /// session has no volume). Never returns NaN for finite input.
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue>;

    /// Forgets all history, as if newly built with the same parameters (e.g. when a series
    /// is re-subscribed or replayed from the start).
    fn reset(&mut self);

    /// TA-Lib's "lookback": how many bars are consumed before the first value, so the first
    /// `Some` comes with bar number `lookback() + 1`. Lets a caller size its back-fill.
    fn lookback(&self) -> usize;
}

/// Direction of a [`Supertrend`]: which band the trend line is following.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trend {
    /// Up-trend: the line is the final lower band (support) under the price.
    Up,
    /// Down-trend: the line is the final upper band (resistance) over the price.
    Down,
}

impl Trend {
    /// `+1.0` for [`Trend::Up`], `-1.0` for [`Trend::Down`]: the numeric form used in
    /// [`IndicatorValue::outputs`] and charts.
    pub fn sign(self) -> f64 {
        match self {
            Trend::Up => 1.0,
            Trend::Down => -1.0,
        }
    }
}

/// One output of an indicator for one bar; multi-output indicators return all their lines
/// together so they stay aligned on the same bar.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IndicatorValue {
    /// Single-line indicators: SMA, EMA, WMA, RSI (0–100), ATR, VWAP, OBV.
    Scalar(f64),
    /// MACD line (fast EMA − slow EMA), its signal EMA, and the histogram (macd − signal).
    Macd {
        /// Fast EMA minus slow EMA.
        macd: f64,
        /// EMA of the MACD line.
        signal: f64,
        /// `macd - signal`.
        hist: f64,
    },
    /// Bollinger bands: middle = SMA, upper/lower = middle ± k·population std dev.
    Bands {
        /// `middle + nbdev_up · σ`.
        upper: f64,
        /// SMA of the close.
        middle: f64,
        /// `middle − nbdev_dn · σ`.
        lower: f64,
    },
    /// Slow stochastic: %K (SMA of fast %K) and %D (SMA of %K), 0–100.
    Stoch {
        /// Slow %K.
        k: f64,
        /// Slow %D.
        d: f64,
    },
    /// Supertrend line and the trend it represents.
    Supertrend {
        /// The final lower band in an up-trend, the final upper band in a down-trend.
        value: f64,
        /// Current trend.
        direction: Trend,
    },
    /// Wilder's ADX with the directional indicators it is built from (0–100 each).
    Adx {
        /// Average directional index.
        adx: f64,
        /// +DI (TA-Lib `PLUS_DI`).
        plus_di: f64,
        /// −DI (TA-Lib `MINUS_DI`).
        minus_di: f64,
    },
}

impl IndicatorValue {
    /// The lines as plain numbers, in the order of the spec's
    /// [`IndicatorSpec::outputs`], so generic code (UI, storage) can zip names and values.
    pub fn outputs(&self) -> Outputs {
        let (values, len) = match *self {
            IndicatorValue::Scalar(v) => ([v, 0.0, 0.0], 1),
            IndicatorValue::Macd { macd, signal, hist } => ([macd, signal, hist], 3),
            IndicatorValue::Bands {
                upper,
                middle,
                lower,
            } => ([upper, middle, lower], 3),
            IndicatorValue::Stoch { k, d } => ([k, d, 0.0], 2),
            IndicatorValue::Supertrend { value, direction } => ([value, direction.sign(), 0.0], 2),
            IndicatorValue::Adx {
                adx,
                plus_di,
                minus_di,
            } => ([adx, plus_di, minus_di], 3),
        };
        Outputs { values, len }
    }

    /// The value of a single-line indicator (`None` for multi-output ones), the common
    /// case for charts and threshold rules.
    pub fn scalar(&self) -> Option<f64> {
        match *self {
            IndicatorValue::Scalar(v) => Some(v),
            _ => None,
        }
    }
}

/// Up to three output values without allocation; derefs to a slice ordered like
/// [`IndicatorSpec::outputs`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outputs {
    values: [f64; 3],
    len: usize,
}

impl std::ops::Deref for Outputs {
    type Target = [f64];

    fn deref(&self) -> &[f64] {
        &self.values[..self.len]
    }
}
