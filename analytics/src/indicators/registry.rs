//! Run-time catalogue of the indicators and a factory building them from name + parameters,
//! so a UI can list what exists and ask for any of it without a code change.

use serde::Serialize;

use super::average::{Ema, Sma, Wma};
use super::momentum::{Macd, Rsi, Stochastic};
use super::trend::Adx;
use super::volatility::{Atr, Bollinger, Supertrend};
use super::volume::{Obv, SessionVwap};
use super::StreamingIndicator;

/// Longest window any indicator accepts (TA-Lib's limit); windows are allocated up front.
pub(crate) const MAX_PERIOD: usize = 100_000;

/// Why an indicator (or rollup) could not be built; returned instead of panicking so bad
/// requests from a UI become a clean error response.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndicatorError {
    /// No indicator of that name is registered (see [`registry`]).
    #[error("unknown indicator {0:?}")]
    UnknownIndicator(String),
    /// The indicator has no parameter of that name.
    #[error("indicator {indicator} has no parameter {param:?}")]
    UnknownParam {
        /// Indicator name.
        indicator: &'static str,
        /// The parameter name given.
        param: String,
    },
    /// The same parameter was given twice.
    #[error("parameter {param} of {indicator} is given more than once")]
    DuplicateParam {
        /// Indicator name.
        indicator: &'static str,
        /// The repeated parameter.
        param: &'static str,
    },
    /// The value is outside the parameter's range (or not a number).
    #[error("parameter {param} of {indicator} must lie in [{min}, {max}], got {value}")]
    OutOfRange {
        /// Indicator name.
        indicator: &'static str,
        /// Parameter name.
        param: &'static str,
        /// The rejected value.
        value: f64,
        /// Smallest accepted value.
        min: f64,
        /// Largest accepted value.
        max: f64,
    },
    /// An integer parameter (a period) was given a fractional value.
    #[error("parameter {param} of {indicator} must be a whole number, got {value}")]
    NotInteger {
        /// Indicator name.
        indicator: &'static str,
        /// Parameter name.
        param: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// Each parameter is fine on its own but the combination is not (MACD fast ≥ slow).
    #[error("{indicator}: {reason}")]
    Inconsistent {
        /// Indicator name.
        indicator: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Whether a parameter takes whole numbers (periods) or any real (multipliers), so a UI can
/// pick the right input control.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamKind {
    /// A whole number, e.g. a period in bars.
    Integer,
    /// Any real number, e.g. a standard-deviation multiplier.
    Real,
}

/// One tunable parameter of an indicator, with the bounds [`build`] enforces.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParamSpec {
    /// Name used in [`build`]'s parameter list.
    pub name: &'static str,
    /// What the parameter controls.
    pub description: &'static str,
    /// Integer or real.
    pub kind: ParamKind,
    /// Value used when the parameter is not given.
    pub default: f64,
    /// Smallest accepted value (inclusive).
    pub min: f64,
    /// Largest accepted value (inclusive).
    pub max: f64,
}

/// Catalogue entry for one indicator: everything a UI needs to list it, offer its
/// parameters and label its output lines.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IndicatorSpec {
    /// Name used with [`build`] (lower case).
    pub name: &'static str,
    /// Human-readable title.
    pub title: &'static str,
    /// What it measures and which convention it follows.
    pub description: &'static str,
    /// Bar fields it reads.
    pub inputs: &'static [&'static str],
    /// Its parameters, in the order they are documented.
    pub params: &'static [ParamSpec],
    /// Names of its output lines, in the order of
    /// [`IndicatorValue::outputs`](super::IndicatorValue::outputs).
    pub outputs: &'static [&'static str],
}

const MAX: f64 = MAX_PERIOD as f64;

const fn period(default: f64, min: f64, description: &'static str) -> ParamSpec {
    ParamSpec {
        name: "period",
        description,
        kind: ParamKind::Integer,
        default,
        min,
        max: MAX,
    }
}

const fn int(name: &'static str, default: f64, min: f64, description: &'static str) -> ParamSpec {
    ParamSpec {
        name,
        description,
        kind: ParamKind::Integer,
        default,
        min,
        max: MAX,
    }
}

const fn real(
    name: &'static str,
    default: f64,
    min: f64,
    max: f64,
    description: &'static str,
) -> ParamSpec {
    ParamSpec {
        name,
        description,
        kind: ParamKind::Real,
        default,
        min,
        max,
    }
}

const CLOSE: &[&str] = &["close"];
const HLC: &[&str] = &["high", "low", "close"];
const VALUE: &[&str] = &["value"];

static REGISTRY: [IndicatorSpec; 12] = [
    IndicatorSpec {
        name: "sma",
        title: "Simple moving average",
        description: "Mean of the last `period` closes (TA-Lib SMA).",
        inputs: CLOSE,
        params: &[period(20.0, 1.0, "Window length in bars.")],
        outputs: VALUE,
    },
    IndicatorSpec {
        name: "ema",
        title: "Exponential moving average",
        description: "EMA of the close with k = 2/(period+1), seeded with the SMA of the \
                      first `period` closes (TA-Lib EMA).",
        inputs: CLOSE,
        params: &[period(20.0, 1.0, "Smoothing period in bars.")],
        outputs: VALUE,
    },
    IndicatorSpec {
        name: "wma",
        title: "Weighted moving average",
        description: "Linearly weighted mean of the last `period` closes, newest weighted \
                      `period` (TA-Lib WMA).",
        inputs: CLOSE,
        params: &[period(20.0, 1.0, "Window length in bars.")],
        outputs: VALUE,
    },
    IndicatorSpec {
        name: "rsi",
        title: "Relative strength index",
        description: "Wilder RSI of the close, 0-100; averages seeded with the mean of the \
                      first `period` changes, so the first value needs period+1 closes \
                      (TA-Lib RSI).",
        inputs: CLOSE,
        params: &[period(14.0, 2.0, "Wilder smoothing period in bars.")],
        outputs: VALUE,
    },
    IndicatorSpec {
        name: "macd",
        title: "MACD",
        description: "Fast EMA minus slow EMA of the close, its signal EMA and the histogram; \
                      EMA alignment as TA-Lib MACD (first value with bar slow+signal-1).",
        inputs: CLOSE,
        params: &[
            int("fast", 12.0, 2.0, "Fast EMA period (shorter than slow)."),
            int("slow", 26.0, 2.0, "Slow EMA period."),
            int("signal", 9.0, 1.0, "Signal EMA period."),
        ],
        outputs: &["macd", "signal", "hist"],
    },
    IndicatorSpec {
        name: "bbands",
        title: "Bollinger bands",
        description: "SMA of the close with bands at ± nbdev population standard deviations \
                      of the same window (TA-Lib BBANDS, SMA middle).",
        inputs: CLOSE,
        params: &[
            period(20.0, 2.0, "Window length in bars."),
            real(
                "nbdev_up",
                2.0,
                0.0,
                50.0,
                "Standard deviations above the middle band.",
            ),
            real(
                "nbdev_dn",
                2.0,
                0.0,
                50.0,
                "Standard deviations below the middle band.",
            ),
        ],
        outputs: &["upper", "middle", "lower"],
    },
    IndicatorSpec {
        name: "atr",
        title: "Average true range",
        description: "Wilder average of the true range; first value = mean of the first \
                      `period` true ranges, from bar 2 on (TA-Lib ATR).",
        inputs: HLC,
        params: &[period(14.0, 1.0, "Wilder smoothing period in bars.")],
        outputs: VALUE,
    },
    IndicatorSpec {
        name: "supertrend",
        title: "Supertrend",
        description: "Trailing band at hl2 ± multiplier·ATR(period) that flips side when the \
                      close crosses it (TradingView definition; direction +1 up, -1 down).",
        inputs: HLC,
        params: &[
            period(10.0, 1.0, "ATR period in bars."),
            real("multiplier", 3.0, 0.0, 50.0, "Band distance in ATRs."),
        ],
        outputs: &["value", "direction"],
    },
    IndicatorSpec {
        name: "vwap",
        title: "Session VWAP",
        description: "Volume-weighted mean of the typical price (h+l+c)/3 since the start of \
                      the IST trading day; undefined (no value) without volume, e.g. on the \
                      spot index.",
        inputs: &["high", "low", "close", "volume", "window_start"],
        params: &[],
        outputs: VALUE,
    },
    IndicatorSpec {
        name: "adx",
        title: "Average directional index",
        description: "Wilder ADX with +DI and -DI, 0-100; first value with bar 2·period \
                      (TA-Lib ADX, PLUS_DI, MINUS_DI).",
        inputs: HLC,
        params: &[period(14.0, 2.0, "Wilder smoothing period in bars.")],
        outputs: &["adx", "plus_di", "minus_di"],
    },
    IndicatorSpec {
        name: "stoch",
        title: "Stochastic (slow)",
        description: "Fast %K over `fastk` bars, smoothed by SMA(slowk) into %K and \
                      SMA(slowd) into %D, 0-100 (TA-Lib STOCH with SMA smoothing).",
        inputs: HLC,
        params: &[
            int("fastk", 5.0, 1.0, "High-low window of fast %K in bars."),
            int("slowk", 3.0, 1.0, "SMA period turning fast %K into %K."),
            int("slowd", 3.0, 1.0, "SMA period turning %K into %D."),
        ],
        outputs: &["k", "d"],
    },
    IndicatorSpec {
        name: "obv",
        title: "On-balance volume",
        description: "Running volume added on up closes and subtracted on down closes; \
                      starts at the first bar's volume (TA-Lib OBV).",
        inputs: &["close", "volume"],
        params: &[],
        outputs: VALUE,
    },
];

/// Every indicator [`build`] can construct, for listing in a UI (serialise it as JSON).
pub fn registry() -> &'static [IndicatorSpec] {
    &REGISTRY
}

/// The catalogue entry named `name` (case-insensitive).
pub fn spec(name: &str) -> Option<&'static IndicatorSpec> {
    REGISTRY.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// Builds the indicator `name` (case-insensitive) from `(parameter, value)` pairs; missing
/// parameters take their defaults. Unknown names, unknown or repeated parameters, values
/// out of range, fractional periods and inconsistent combinations are rejected.
///
/// Returns a [`StreamingIndicator`] (an enum, not a box) so callers can keep many side by
/// side without an allocation each, and serialise their state.
pub fn build(name: &str, params: &[(String, f64)]) -> Result<StreamingIndicator, IndicatorError> {
    let spec = spec(name).ok_or_else(|| IndicatorError::UnknownIndicator(name.to_owned()))?;
    let values = resolve(spec, params)?;
    let int = |i: usize| values[i] as usize;
    Ok(match spec.name {
        "sma" => Sma::new(int(0))?.into(),
        "ema" => Ema::new(int(0))?.into(),
        "wma" => Wma::new(int(0))?.into(),
        "rsi" => Rsi::new(int(0))?.into(),
        "macd" => Macd::new(int(0), int(1), int(2))?.into(),
        "bbands" => Bollinger::new(int(0), values[1], values[2])?.into(),
        "atr" => Atr::new(int(0))?.into(),
        "supertrend" => Supertrend::new(int(0), values[1])?.into(),
        "vwap" => SessionVwap::new().into(),
        "adx" => Adx::new(int(0))?.into(),
        "stoch" => Stochastic::new(int(0), int(1), int(2))?.into(),
        "obv" => Obv::new().into(),
        _ => return Err(IndicatorError::UnknownIndicator(name.to_owned())),
    })
}

/// The parameter values in spec order: defaults overridden by `params`, all validated.
fn resolve(spec: &IndicatorSpec, params: &[(String, f64)]) -> Result<[f64; 4], IndicatorError> {
    let mut values = [0.0; 4];
    let mut given = [false; 4];
    for (value, p) in values.iter_mut().zip(spec.params) {
        *value = p.default;
    }
    for (name, value) in params {
        let idx = spec
            .params
            .iter()
            .position(|p| p.name == name)
            .ok_or_else(|| IndicatorError::UnknownParam {
                indicator: spec.name,
                param: name.clone(),
            })?;
        let p = &spec.params[idx];
        if given[idx] {
            return Err(IndicatorError::DuplicateParam {
                indicator: spec.name,
                param: p.name,
            });
        }
        given[idx] = true;
        let value = check_real(spec.name, p.name, *value, p.min, p.max)?;
        if p.kind == ParamKind::Integer && value.fract() != 0.0 {
            return Err(IndicatorError::NotInteger {
                indicator: spec.name,
                param: p.name,
                value,
            });
        }
        values[idx] = value;
    }
    Ok(values)
}

/// Validates a period given directly to a constructor: `min..=MAX_PERIOD`.
pub(crate) fn check_period(
    indicator: &'static str,
    param: &'static str,
    value: usize,
    min: usize,
) -> Result<usize, IndicatorError> {
    if (min..=MAX_PERIOD).contains(&value) {
        Ok(value)
    } else {
        Err(IndicatorError::OutOfRange {
            indicator,
            param,
            value: value as f64,
            min: min as f64,
            max: MAX,
        })
    }
}

/// Validates a real parameter: finite and within `min..=max`.
pub(crate) fn check_real(
    indicator: &'static str,
    param: &'static str,
    value: f64,
    min: f64,
    max: f64,
) -> Result<f64, IndicatorError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(IndicatorError::OutOfRange {
            indicator,
            param,
            value,
            min,
            max,
        })
    }
}
