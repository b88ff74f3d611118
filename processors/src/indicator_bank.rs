//! Indicators for every instrument on every timeframe, fed closed one-minute bars.
//!
//! One-minute bars go straight to the 1-minute indicators and through a [`Rollup`] to the
//! 3/5/15-minute ones, so every timeframe sees bars built from the same ticks.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use strikeflow_schemas::{Bar, IndicatorPoint};

use crate::indicators::{build, spec, Indicator, IndicatorError, Rollup};

/// One indicator to run, by registry name, with parameter overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct IndicatorChoice {
    /// Registry name (`rsi`, `macd`, …; see `processors::indicators::registry`).
    pub name: String,
    /// Parameters that differ from the registry's defaults.
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
}

impl IndicatorChoice {
    fn new(name: &str, params: &[(&str, f64)]) -> Self {
        Self {
            name: name.into(),
            params: params.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        }
    }

    /// What dashboards for index options show (the domain brief's list).
    pub fn defaults() -> Vec<Self> {
        vec![
            Self::new("ema", &[("period", 9.0)]),
            Self::new("ema", &[("period", 20.0)]),
            Self::new("ema", &[("period", 50.0)]),
            Self::new("ema", &[("period", 200.0)]),
            Self::new("rsi", &[]),
            Self::new("macd", &[]),
            Self::new("bbands", &[]),
            Self::new("atr", &[]),
            Self::new("supertrend", &[]),
            Self::new("vwap", &[]),
            Self::new("adx", &[]),
            Self::new("stoch", &[]),
            Self::new("obv", &[]),
        ]
    }
}

/// A validated choice: its outputs' names and its parameters as text for the output record.
#[derive(Debug, Clone)]
struct Prepared {
    name: String,
    params: Vec<(String, f64)>,
    params_text: String,
    outputs: &'static [&'static str],
}

/// The indicators of one instrument on one timeframe.
struct Frame {
    minutes: u32,
    rollup: Option<Rollup>,
    indicators: Vec<Box<dyn Indicator + Send>>,
}

/// Indicator state for every instrument seen, created on its first bar.
pub struct IndicatorBank {
    prepared: Vec<Prepared>,
    timeframes: Vec<u32>,
    series: HashMap<i64, Vec<Frame>>,
    rolled: Vec<Bar>,
}

impl std::fmt::Debug for IndicatorBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndicatorBank")
            .field("indicators", &self.prepared.len())
            .field("timeframes", &self.timeframes)
            .field("instruments", &self.series.len())
            .finish()
    }
}

impl IndicatorBank {
    /// Validates every choice against the registry and every timeframe, once, up front.
    pub fn new(choices: &[IndicatorChoice], timeframes: &[u32]) -> Result<Self, IndicatorError> {
        let mut prepared = Vec::with_capacity(choices.len());
        for choice in choices {
            let params: Vec<(String, f64)> =
                choice.params.iter().map(|(k, v)| (k.clone(), *v)).collect();
            build(&choice.name, &params)?; // reject bad names and parameters at start-up
            let outputs = spec(&choice.name).map_or(&[][..], |s| s.outputs);
            let params_text = params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            prepared.push(Prepared {
                name: choice.name.clone(),
                params,
                params_text,
                outputs,
            });
        }
        for &minutes in timeframes {
            if minutes != 1 {
                Rollup::new(minutes)?;
            }
        }
        Ok(Self {
            prepared,
            timeframes: timeframes.to_vec(),
            series: HashMap::new(),
            rolled: Vec::new(),
        })
    }

    /// Feeds one closed one-minute bar; appends every indicator value that became known.
    pub fn on_bar(
        &mut self,
        bar: &Bar,
        out: &mut Vec<IndicatorPoint>,
    ) -> Result<(), IndicatorError> {
        let frames = match self.series.entry(bar.instrument_token) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let mut frames = Vec::with_capacity(self.timeframes.len());
                for &minutes in &self.timeframes {
                    let rollup = if minutes == 1 {
                        None
                    } else {
                        Some(Rollup::new(minutes)?)
                    };
                    let indicators = self
                        .prepared
                        .iter()
                        .map(|p| build(&p.name, &p.params))
                        .collect::<Result<Vec<_>, _>>()?;
                    frames.push(Frame {
                        minutes,
                        rollup,
                        indicators,
                    });
                }
                e.insert(frames)
            }
        };
        for frame in frames.iter_mut() {
            self.rolled.clear();
            match frame.rollup.as_mut() {
                None => self.rolled.push(bar.clone()),
                Some(rollup) => self.rolled.extend(rollup.update(bar)),
            }
            for rolled in &self.rolled {
                for (indicator, prepared) in frame.indicators.iter_mut().zip(&self.prepared) {
                    if let Some(value) = indicator.update(rolled) {
                        let outputs = prepared
                            .outputs
                            .iter()
                            .zip(value.outputs().iter())
                            .filter(|(_, v)| v.is_finite())
                            .map(|(name, v)| ((*name).to_owned(), *v))
                            .collect();
                        out.push(IndicatorPoint {
                            instrument_token: rolled.instrument_token,
                            timeframe_minutes: frame.minutes as i32,
                            window_start: rolled.window_start,
                            indicator: prepared.name.clone(),
                            params: prepared.params_text.clone(),
                            outputs,
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bars::BAR_MICROS;

    fn bar(minute: i64, close: f64) -> Bar {
        // 09:15 IST on 2026-12-01 is 03:45 UTC.
        let start = 1_796_096_700_000_000 + minute * BAR_MICROS;
        Bar {
            instrument_token: 7,
            window_start: start,
            window_end: start + BAR_MICROS,
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 100,
            oi: 0,
            tick_count: 3,
        }
    }

    #[test]
    fn values_appear_after_warm_up_on_every_timeframe() {
        let choices = vec![IndicatorChoice::new("sma", &[("period", 3.0)])];
        let mut bank = IndicatorBank::new(&choices, &[1, 3]).unwrap();
        let mut out = Vec::new();
        for m in 0..9 {
            bank.on_bar(&bar(m, 100.0 + m as f64), &mut out).unwrap();
        }
        let one: Vec<f64> = out
            .iter()
            .filter(|p| p.timeframe_minutes == 1)
            .map(|p| p.outputs["value"])
            .collect();
        assert_eq!(one, vec![101.0, 102.0, 103.0, 104.0, 105.0, 106.0, 107.0]);
        // 3-minute closes 102, 105, 108: the 3-period SMA exists once all three are in.
        let three: Vec<f64> = out
            .iter()
            .filter(|p| p.timeframe_minutes == 3)
            .map(|p| p.outputs["value"])
            .collect();
        assert_eq!(three, vec![105.0]);
        assert!(out
            .iter()
            .all(|p| p.params == "period=3" && p.indicator == "sma"));
    }

    #[test]
    fn bad_choices_are_rejected_up_front() {
        assert!(IndicatorBank::new(&[IndicatorChoice::new("nope", &[])], &[1]).is_err());
        assert!(
            IndicatorBank::new(&[IndicatorChoice::new("rsi", &[("period", 0.0)])], &[1]).is_err()
        );
        assert!(IndicatorBank::new(&IndicatorChoice::defaults(), &[0]).is_err());
        assert!(IndicatorBank::new(&IndicatorChoice::defaults(), &[1, 3, 5, 15]).is_ok());
    }
}
