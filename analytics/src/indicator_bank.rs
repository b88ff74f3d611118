//! Indicators for every instrument on every timeframe, fed closed one-minute bars.
//!
//! One-minute bars go straight to the 1-minute indicators and through a [`Rollup`] to the
//! 3/5/15-minute ones, so every timeframe sees bars built from the same ticks. The state
//! (an [`IndicatorSeries`]) is plain data the processor snapshots and restores.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use strikeflow_schemas::{Bar, IndicatorPoint};

use crate::indicators::{build, spec, Indicator, IndicatorError, Rollup, StreamingIndicator};

/// One indicator to run, by registry name, with parameter overrides.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorChoice {
    /// Registry name (`rsi`, `macd`, …; see [`crate::indicators::registry`]). A name the
    /// registry does not know is refused when the configuration is read, listing the
    /// known ones.
    #[serde(deserialize_with = "registered_name")]
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

/// Reads an indicator name, refusing any the registry does not know. The registry is a
/// run-time catalogue (a UI lists it), so the names are checked against it rather than
/// duplicated in a Rust enum that could drift from it.
fn registered_name<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let name = String::deserialize(d)?;
    if spec(&name).is_some() {
        return Ok(name);
    }
    let known: Vec<&str> = crate::indicators::registry()
        .iter()
        .map(|s| s.name)
        .collect();
    Err(serde::de::Error::custom(format!(
        "unknown indicator {name:?}; known: {}",
        known.join(", ")
    )))
}

/// A validated choice: its outputs' names and its parameters as text for the output record.
#[derive(Debug, Clone)]
struct Prepared {
    name: String,
    params_text: String,
    outputs: &'static [&'static str],
}

/// The indicators of one instrument on one timeframe.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Frame {
    minutes: u32,
    rollup: Option<Rollup>,
    indicators: Vec<StreamingIndicator>,
}

/// The indicator state of every instrument seen (open rollup buckets and indicator
/// windows/averages per timeframe): plain data, apart from the bank's configuration, so the
/// processor can snapshot it and restore it after a crash ([`IndicatorBank::series`],
/// [`IndicatorBank::restore_series`]).
///
/// It only fits a bank with the same indicators, parameters and timeframes; the processor
/// core checks that (a fingerprint of its settings travels in every snapshot) before
/// restoring.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IndicatorSeries {
    /// Frames per instrument token, one per timeframe in the bank's order.
    instruments: HashMap<i64, Vec<Frame>>,
}

impl IndicatorSeries {
    /// Number of instruments with state, for logging and metrics around snapshots.
    pub fn instruments(&self) -> usize {
        self.instruments.len()
    }
}

/// Indicator state for every instrument seen, created on its first bar.
///
/// Configuration (the validated choices and timeframes) lives here; the state lives in an
/// [`IndicatorSeries`] that can be taken out and put back for snapshots.
#[derive(Clone)]
pub struct IndicatorBank {
    prepared: Vec<Prepared>,
    timeframes: Vec<u32>,
    /// The frames of an instrument before its first bar, cloned for each new instrument.
    template: Vec<Frame>,
    series: IndicatorSeries,
    /// Scratch for the bars one input bar closes on a timeframe (reused, not state).
    rolled: Vec<Bar>,
}

impl std::fmt::Debug for IndicatorBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndicatorBank")
            .field("indicators", &self.prepared.len())
            .field("timeframes", &self.timeframes)
            .field("instruments", &self.series.instruments.len())
            .finish()
    }
}

impl IndicatorBank {
    /// Validates every choice against the registry and every timeframe, once, up front.
    pub fn new(choices: &[IndicatorChoice], timeframes: &[u32]) -> Result<Self, IndicatorError> {
        let mut prepared = Vec::with_capacity(choices.len());
        let mut indicators = Vec::with_capacity(choices.len());
        for choice in choices {
            let params: Vec<(String, f64)> =
                choice.params.iter().map(|(k, v)| (k.clone(), *v)).collect();
            // Rejects bad names and parameters at start-up.
            indicators.push(build(&choice.name, &params)?);
            let outputs = spec(&choice.name).map_or(&[][..], |s| s.outputs);
            let params_text = params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            prepared.push(Prepared {
                name: choice.name.clone(),
                params_text,
                outputs,
            });
        }
        let mut template = Vec::with_capacity(timeframes.len());
        for &minutes in timeframes {
            let rollup = if minutes == 1 {
                None
            } else {
                Some(Rollup::new(minutes)?)
            };
            template.push(Frame {
                minutes,
                rollup,
                indicators: indicators.clone(),
            });
        }
        Ok(Self {
            prepared,
            timeframes: timeframes.to_vec(),
            template,
            series: IndicatorSeries::default(),
            rolled: Vec::new(),
        })
    }

    /// Feeds one closed one-minute bar; appends every indicator value that became known.
    pub fn on_bar(
        &mut self,
        bar: &Bar,
        out: &mut Vec<IndicatorPoint>,
    ) -> Result<(), IndicatorError> {
        let frames = self
            .series
            .instruments
            .entry(bar.instrument_token)
            .or_insert_with(|| self.template.clone());
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

    /// The indicator state of every instrument, for the processor's snapshot (serialise it,
    /// e.g. with postcard, and hand it to [`IndicatorBank::restore_series`] after a restart).
    pub fn series(&self) -> &IndicatorSeries {
        &self.series
    }

    /// Replaces the indicator state with a snapshot taken by [`IndicatorBank::series`], so a
    /// restarted processor continues exactly where the snapshot was taken: the following
    /// bars produce bit-for-bit the values the original bank would have.
    ///
    /// The snapshot must come from a bank with the same configuration (the processor
    /// core's settings fingerprint guarantees it).
    pub fn restore_series(&mut self, series: IndicatorSeries) {
        self.series = series;
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

    /// A point with its outputs as bit patterns, so comparisons are exact.
    type Exact = (i64, i32, i64, String, String, Vec<(String, u64)>);

    fn exact(points: &[IndicatorPoint]) -> Vec<Exact> {
        points
            .iter()
            .map(|p| {
                (
                    p.instrument_token,
                    p.timeframe_minutes,
                    p.window_start,
                    p.indicator.clone(),
                    p.params.clone(),
                    p.outputs
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_bits()))
                        .collect(),
                )
            })
            .collect()
    }

    /// Two sessions (a full day and 125 minutes of the next) of one-minute bars, interleaved
    /// by minute as the processor sees them: the spot index (no volume), its future and an
    /// illiquid option that skips minutes, on the 0.05 tick grid.
    fn market() -> Vec<Bar> {
        use rand::rngs::SmallRng;
        use rand::{Rng, SeedableRng};
        const DAY_MICROS: i64 = 86_400_000_000;
        // 09:15 IST on 2026-12-01.
        let open = 1_796_096_700_000_000;
        let tick = |p: f64| (p / 0.05).round() * 0.05;
        let mut rng = SmallRng::seed_from_u64(42);
        let mut spot = 24_000.0;
        let mut option = 150.0;
        let mut out = Vec::new();
        for i in 0..500_i64 {
            let start = open + (i / 375) * DAY_MICROS + (i % 375) * BAR_MICROS;
            let mut push = |token: i64, prev: f64, close: f64, spread: f64, volume: i64| {
                out.push(Bar {
                    instrument_token: token,
                    window_start: start,
                    window_end: start + BAR_MICROS,
                    open: prev,
                    high: tick(prev.max(close) + spread),
                    low: tick(prev.min(close) - spread),
                    close,
                    volume,
                    oi: 1_000_000 + 10 * i,
                    tick_count: 60,
                });
            };
            let prev = spot;
            spot = tick(spot + rng.random_range(-12.0..12.0));
            push(256_265, prev, spot, rng.random_range(0.0..6.0), 0);
            let basis = 110.0;
            push(
                13_000_001,
                prev + basis,
                spot + basis,
                rng.random_range(0.0..8.0),
                rng.random_range(1_000..40_000),
            );
            // An at-the-money call: delta 0.5 to the spot move, plus noise.
            let prev_option = option;
            let noise = rng.random_range(-1.5..1.5);
            option = tick((option + 0.5 * (spot - prev) + noise).max(0.05));
            if rng.random_range(0.0..1.0) < 0.85 {
                push(
                    13_100_002,
                    prev_option,
                    option,
                    rng.random_range(0.0..0.8),
                    rng.random_range(0..5_000) * 75,
                );
            }
        }
        out
    }

    #[test]
    fn restored_series_continues_bit_for_bit() {
        let bars = market();
        let choices = IndicatorChoice::defaults();
        let timeframes = [1, 3, 5, 15];
        // Minute 307 of the first session: 3/5/15-minute buckets are all half full.
        let cut = bars
            .iter()
            .position(|b| b.window_start >= bars[0].window_start + 307 * BAR_MICROS)
            .unwrap();

        let mut a = IndicatorBank::new(&choices, &timeframes).unwrap();
        let mut out_a = Vec::new();
        for bar in &bars[..cut] {
            a.on_bar(bar, &mut out_a).unwrap();
        }
        let snapshot = postcard::to_stdvec(a.series()).unwrap();
        assert_eq!(a.series().instruments(), 3);

        let mut b = IndicatorBank::new(&choices, &timeframes).unwrap();
        b.restore_series(postcard::from_bytes(&snapshot).unwrap());
        assert_eq!(b.series().instruments(), 3);
        let mut cloned = a.clone();
        let mut fresh = IndicatorBank::new(&choices, &timeframes).unwrap();

        let (mut after_a, mut after_b, mut after_clone, mut after_fresh) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for bar in &bars[cut..] {
            a.on_bar(bar, &mut after_a).unwrap();
            b.on_bar(bar, &mut after_b).unwrap();
            cloned.on_bar(bar, &mut after_clone).unwrap();
            fresh.on_bar(bar, &mut after_fresh).unwrap();
        }
        // Every indicator on the one-minute bars and every timeframe reported something
        // after the cut, so the comparison covers all of them.
        for choice in &choices {
            assert!(
                after_a
                    .iter()
                    .any(|p| p.timeframe_minutes == 1 && p.indicator == choice.name),
                "{} silent after the cut",
                choice.name
            );
        }
        for tf in timeframes {
            assert!(after_a.iter().any(|p| p.timeframe_minutes == tf as i32));
        }
        let want = exact(&after_a);
        assert_eq!(exact(&after_b), want, "restored bank diverged");
        assert_eq!(exact(&after_clone), want, "cloned bank diverged");
        // Without the snapshot the output differs: the comparison above can fail.
        assert_ne!(exact(&after_fresh), want);
    }
}
