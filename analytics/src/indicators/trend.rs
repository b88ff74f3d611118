//! Trend strength: Wilder's ADX with +DI/−DI, TA-Lib compatible.

use serde::{Deserialize, Serialize};
use strikeflow_schemas::Bar;

use super::registry::{check_period, IndicatorError};
use super::volatility::true_range;
use super::{Indicator, IndicatorValue, TALIB_EPSILON};

/// Wilder's average directional index (TA-Lib `ADX`, default 14) with the +DI/−DI lines
/// (TA-Lib `PLUS_DI`/`MINUS_DI`): how strong the trend is, regardless of its direction.
///
/// Per bar: +DM = up-move if it exceeds the down-move and is positive, −DM likewise, true
/// range as in [`super::Atr`]. DM and TR are Wilder-summed: the first sums cover bars
/// 2..=`period` (period − 1 values, as TA-Lib does), then `s = s − s/period + x`.
/// DI = 100·DM/TR, DX = 100·|+DI − −DI|/(+DI + −DI); the first ADX is the mean of the
/// first `period` DX values and then `adx = (adx·(period − 1) + dx)/period`. A bar whose
/// smoothed TR or DI sum is zero leaves the ADX unchanged, as in TA-Lib. First value with
/// bar `2·period` (28 for 14); +DI/−DI are reported from then on too.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Adx {
    period: usize,
    /// Bars seen, counted until the ADX is seeded.
    bars: usize,
    seeded: bool,
    prev_high: f64,
    prev_low: f64,
    prev_close: f64,
    plus_dm: f64,
    minus_dm: f64,
    tr: f64,
    sum_dx: f64,
    adx: f64,
}

/// A zero test with TA-Lib's absolute band (`TA_IS_ZERO`).
fn is_zero(v: f64) -> bool {
    -TALIB_EPSILON < v && v < TALIB_EPSILON
}

impl Adx {
    /// An ADX over `period` bars (2..=100 000).
    pub fn new(period: usize) -> Result<Self, IndicatorError> {
        let period = check_period("adx", "period", period, 2)?;
        Ok(Self {
            period,
            bars: 0,
            seeded: false,
            prev_high: 0.0,
            prev_low: 0.0,
            prev_close: 0.0,
            plus_dm: 0.0,
            minus_dm: 0.0,
            tr: 0.0,
            sum_dx: 0.0,
            adx: 0.0,
        })
    }

    /// Feeds one bar's high, low and close; returns `(adx, +DI, −DI)` once warmed up.
    pub fn next_hlc(&mut self, high: f64, low: f64, close: f64) -> Option<(f64, f64, f64)> {
        if !self.seeded {
            self.bars += 1;
        }
        if self.bars == 1 {
            self.prev_high = high;
            self.prev_low = low;
            self.prev_close = close;
            return None;
        }
        let n = self.period as f64;
        let diff_p = high - self.prev_high;
        let diff_m = self.prev_low - low;
        self.prev_high = high;
        self.prev_low = low;
        let tr = true_range(high, low, self.prev_close);
        self.prev_close = close;
        let warming_sums = !self.seeded && self.bars <= self.period;
        if !warming_sums {
            self.minus_dm -= self.minus_dm / n;
            self.plus_dm -= self.plus_dm / n;
        }
        if diff_m > 0.0 && diff_p < diff_m {
            self.minus_dm += diff_m;
        } else if diff_p > 0.0 && diff_p > diff_m {
            self.plus_dm += diff_p;
        }
        if warming_sums {
            self.tr += tr;
            return None;
        }
        self.tr = self.tr - self.tr / n + tr;

        let mut di = (0.0, 0.0);
        let mut dx = None;
        if !is_zero(self.tr) {
            let minus_di = 100.0 * (self.minus_dm / self.tr);
            let plus_di = 100.0 * (self.plus_dm / self.tr);
            di = (plus_di, minus_di);
            let sum = minus_di + plus_di;
            if !is_zero(sum) {
                dx = Some(100.0 * ((minus_di - plus_di).abs() / sum));
            }
        }
        if !self.seeded {
            self.sum_dx += dx.unwrap_or(0.0);
            if self.bars < 2 * self.period {
                return None;
            }
            self.adx = self.sum_dx / n;
            self.seeded = true;
        } else if let Some(dx) = dx {
            self.adx = (self.adx * (n - 1.0) + dx) / n;
        }
        Some((self.adx, di.0, di.1))
    }

    /// Forgets all bars.
    pub fn clear(&mut self) {
        self.bars = 0;
        self.seeded = false;
        self.plus_dm = 0.0;
        self.minus_dm = 0.0;
        self.tr = 0.0;
        self.sum_dx = 0.0;
        self.adx = 0.0;
    }
}

impl Indicator for Adx {
    #[inline]
    fn update(&mut self, bar: &Bar) -> Option<IndicatorValue> {
        self.next_hlc(bar.high, bar.low, bar.close)
            .map(|(adx, plus_di, minus_di)| IndicatorValue::Adx {
                adx,
                plus_di,
                minus_di,
            })
    }

    fn reset(&mut self) {
        self.clear();
    }

    fn lookback(&self) -> usize {
        2 * self.period - 1
    }
}
