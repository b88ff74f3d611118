//! Outputs of the option-chain analytics (`strikeflow_analytics::chain`): per-option analytics, per-chain
//! analytics and moneyness series points. Each type mirrors its `.avsc` file under
//! `schemas/avro/` field for field and in the same order (the Avro binary encoding is
//! positional). Values that can be absent are `Option`s (Avro `["null", T]` unions): no NaN is
//! ever published.

use serde::{Deserialize, Serialize};

use crate::impl_avro_record;

/// Call or put (Avro enum `strikeflow.OptionSide`, symbols `CE`/`PE`). Exists so the analytics
/// outputs carry the option side as a two-valued type rather than the four-valued
/// [`crate::InstrumentType`].
#[allow(clippy::upper_case_acronyms)] // the names are the wire symbols CE/PE
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OptionSide {
    /// Call option.
    CE,
    /// Put option.
    PE,
}

/// Why an option has no implied volatility (Avro enum `strikeflow.NoIvReason`). Exists so a
/// missing IV is published with its cause instead of as a NaN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NoIvReason {
    /// The price is at or below intrinsic value (within the pricer's time-value floor).
    BelowIntrinsic,
    /// The price is at or above the no-arbitrage maximum.
    AboveMaximum,
    /// The quote lacks a bid or an ask, or is crossed.
    NoTwoSidedMarket,
    /// The option has expired (time to expiry is zero).
    Expired,
    /// A non-finite or non-positive input.
    InvalidInput,
    /// No underlying price (spot, future or parity forward) is known yet.
    NoUnderlying,
}

/// OI build-up class (Avro enum `strikeflow.BuildUp`): how price and open interest moved
/// together. Exists because traders read positioning from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildUp {
    /// Price up, OI up.
    #[serde(rename = "LONG_BUILDUP")]
    LongBuildup,
    /// Price down, OI up.
    #[serde(rename = "SHORT_BUILDUP")]
    ShortBuildup,
    /// Price up, OI down.
    ShortCovering,
    /// Price down, OI down.
    LongUnwinding,
    /// Either change is zero or unknown.
    Neutral,
}

/// Which series a chain's reference price came from (Avro enum `strikeflow.ReferenceKind`).
/// Exists so consumers can tell a future-based ATM from a parity-forward or spot one.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReferenceKind {
    /// The spot index.
    Spot,
    /// The future of the chain's expiry.
    Future,
    /// The put–call parity forward of the chain.
    ParityForward,
}

/// Analytics of one option at one emission (`strikeflow.StrikeAnalytics` on `strikes.v1`):
/// the row of an option-chain screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrikeAnalytics {
    /// Instrument id of the option.
    pub instrument_token: i64,
    /// Trading symbol of the option.
    pub tradingsymbol: String,
    /// Underlying name, e.g. "NIFTY".
    pub underlying: String,
    /// Expiry, days since 1970-01-01 (Avro `date`).
    pub expiry: i32,
    /// Strike in rupees.
    pub strike: f64,
    /// Call or put.
    pub option_type: OptionSide,
    /// Emission event time, UTC micros (Avro `timestamp-micros`).
    pub ts: i64,
    /// Last traded price.
    pub ltp: f64,
    /// LTP minus the previous trading day's last LTP.
    pub ltp_change_prev_close: Option<f64>,
    /// Open interest.
    pub oi: i64,
    /// OI minus the previous trading day's last OI.
    pub oi_change_prev_close: Option<i64>,
    /// OI minus the OI the configured number of minutes earlier.
    pub oi_change_window: Option<i64>,
    /// Cumulative day volume.
    pub volume: i64,
    /// Best bid.
    pub bid: f64,
    /// Best ask.
    pub ask: f64,
    /// Implied volatility of the mid.
    pub iv: Option<f64>,
    /// Why `iv` is `None`.
    pub no_iv_reason: Option<NoIvReason>,
    /// Delta.
    pub delta: Option<f64>,
    /// Gamma.
    pub gamma: Option<f64>,
    /// Theta per calendar day.
    pub theta: Option<f64>,
    /// Vega per vol point.
    pub vega: Option<f64>,
    /// Rho per rate point.
    pub rho: Option<f64>,
    /// Build-up class.
    pub build_up: BuildUp,
    /// Put OI / call OI at this strike.
    pub strike_pcr: Option<f64>,
    /// Gamma exposure of this option (negative for puts).
    pub gex: Option<f64>,
}

/// Analytics of one option chain at one emission (`strikeflow.ChainAnalytics` on
/// `chains.v1`): the header of an option-chain screen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainAnalytics {
    /// Underlying name.
    pub underlying: String,
    /// Expiry, days since 1970-01-01.
    pub expiry: i32,
    /// Emission event time, UTC micros.
    pub ts: i64,
    /// First emission at or after a minute boundary.
    pub minute_close: bool,
    /// Year fraction to expiry.
    pub time_to_expiry: f64,
    /// Spot index price.
    pub spot: Option<f64>,
    /// Price of the future of the same expiry.
    pub future: Option<f64>,
    /// Put–call parity forward.
    pub parity_forward: Option<f64>,
    /// Price ATM and moneyness are measured against.
    pub reference_price: f64,
    /// Source of `reference_price`.
    pub reference_kind: ReferenceKind,
    /// Listed strike nearest the reference.
    pub atm_strike: f64,
    /// Σ put OI / Σ call OI.
    pub pcr_oi: Option<f64>,
    /// Σ put volume / Σ call volume.
    pub pcr_volume: Option<f64>,
    /// Max-pain strike.
    pub max_pain: Option<f64>,
    /// ATM call + put LTP.
    pub atm_straddle: Option<f64>,
    /// Straddle / reference × 100.
    pub implied_move_pct: Option<f64>,
    /// Mean ATM IV.
    pub atm_iv: Option<f64>,
    /// IV(25Δ put) − IV(25Δ call).
    pub skew_25d: Option<f64>,
    /// Strike of max put OI.
    pub support: Option<f64>,
    /// Strike of max call OI.
    pub resistance: Option<f64>,
    /// Future − spot.
    pub basis: Option<f64>,
    /// (F/S − 1)/T.
    pub annualised_carry: Option<f64>,
    /// Σ per-option GEX.
    pub net_gex: Option<f64>,
    /// Σ call OI.
    pub total_ce_oi: i64,
    /// Σ put OI.
    pub total_pe_oi: i64,
    /// Σ call (OI − previous-close OI).
    pub ce_oi_change_prev_close: Option<i64>,
    /// Σ put (OI − previous-close OI).
    pub pe_oi_change_prev_close: Option<i64>,
}

/// One bucket/side of one chain at one minute close (`strikeflow.MoneynessPoint` on
/// `moneyness.v1`): lets a chart follow "OTM1 CE" while the ATM strike moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MoneynessPoint {
    /// Underlying name.
    pub underlying: String,
    /// Expiry, days since 1970-01-01.
    pub expiry: i32,
    /// Start of the closed minute, UTC micros.
    pub minute: i64,
    /// "ATM", "ITM<n>" or "OTM<n>" from this side's point of view.
    pub bucket: String,
    /// Signed level (K − ATM) / step.
    pub level: i32,
    /// Call or put.
    pub side: OptionSide,
    /// Option occupying the bucket.
    pub instrument_token: i64,
    /// Its strike.
    pub strike: f64,
    /// Its LTP.
    pub ltp: f64,
    /// Its IV.
    pub iv: Option<f64>,
    /// Its delta.
    pub delta: Option<f64>,
    /// Its OI.
    pub oi: i64,
    /// Its cumulative day volume.
    pub volume: i64,
}

impl_avro_record!(
    StrikeAnalytics,
    "strikeflow.StrikeAnalytics",
    include_str!("../avro/strike.avsc")
);
impl_avro_record!(
    ChainAnalytics,
    "strikeflow.ChainAnalytics",
    include_str!("../avro/chain.avsc")
);
impl_avro_record!(
    MoneynessPoint,
    "strikeflow.MoneynessPoint",
    include_str!("../avro/moneyness.avsc")
);

/// One indicator value at a bar close (`strikeflow.IndicatorPoint`). Exists so dashboards
/// and SQL get indicator series computed once, in the pipeline, on the same bars everyone
/// sees; outputs are a map because indicators have one (RSI) to three (MACD) outputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndicatorPoint {
    /// Instrument the bars belong to.
    pub instrument_token: i64,
    /// Bar length the indicator ran on, in minutes.
    pub timeframe_minutes: i32,
    /// Start of the bar whose close produced the value (UTC micros).
    pub window_start: i64,
    /// Registry name of the indicator.
    pub indicator: String,
    /// Parameters as `name=value` pairs joined by commas.
    pub params: String,
    /// Output name → value (only after warm-up; never NaN).
    pub outputs: std::collections::BTreeMap<String, f64>,
}

impl_avro_record!(
    IndicatorPoint,
    "strikeflow.IndicatorPoint",
    include_str!("../avro/indicator.avsc")
);
