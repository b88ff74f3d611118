//! Volume-based indicators: on-balance volume and session VWAP.

use serde::{Deserialize, Serialize};
use strikeflow_schemas::Bar;

use super::session::ist_day;
use super::{Indicator, IndicatorValue};

/// On-balance volume (TA-Lib `OBV`): cumulative volume signed by the close's direction, a
/// check on whether volume confirms the move.
///
/// As in TA-Lib the first bar's OBV is its own volume; afterwards the bar's volume is added
/// when the close rose, subtracted when it fell, and ignored when it is unchanged. Values
/// start with the first bar. Index bars have no volume, so use it on futures/options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Obv {
    prev_close: Option<f64>,
    obv: f64,
}

impl Obv {
    /// An OBV with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one bar's close and volume.
    pub fn next_cv(&mut self, close: f64, volume: f64) -> f64 {
        match self.prev_close.replace(close) {
            None => self.obv = volume,
            Some(prev) if close > prev => self.obv += volume,
            Some(prev) if close < prev => self.obv -= volume,
            Some(_) => {}
        }
        self.obv
    }
}

impl Indicator for Obv {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        Some(IndicatorValue::Scalar(
            self.next_cv(bar.close, bar.volume as f64),
        ))
    }

    fn reset(&mut self) {
        *self = Self::default();
    }

    fn lookback(&self) -> usize {
        0
    }
}

/// Session VWAP: Σ(typical price × volume) / Σ volume since the session start, with
/// typical price = (high + low + close)/3 — the intraday fair-value line for futures.
///
/// A session is one IST calendar day (UTC+05:30) of the bar's `window_start`; the sums
/// reset on the first bar of a new day. VWAP is undefined while the session has no volume
/// (always the case for the spot index, whose bars carry volume 0), so `update` returns
/// `None` then; feed it futures bars. Bars with non-positive volume add nothing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionVwap {
    session: Option<i64>,
    price_volume: f64,
    volume: i64,
}

impl SessionVwap {
    /// A VWAP with no session open yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one bar; returns the session VWAP so far, or `None` without volume.
    pub fn next_bar(&mut self, bar: &Bar) -> Option<f64> {
        let day = ist_day(bar.window_start);
        if self.session != Some(day) {
            self.session = Some(day);
            self.price_volume = 0.0;
            self.volume = 0;
        }
        if bar.volume > 0 {
            let typical = (bar.high + bar.low + bar.close) / 3.0;
            self.price_volume += typical * bar.volume as f64;
            self.volume = self.volume.saturating_add(bar.volume);
        }
        (self.volume > 0).then(|| self.price_volume / self.volume as f64)
    }
}

impl Indicator for SessionVwap {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        self.next_bar(bar).map(IndicatorValue::Scalar)
    }

    fn reset(&mut self) {
        *self = Self::default();
    }

    fn lookback(&self) -> usize {
        0
    }
}
