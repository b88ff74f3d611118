//! Option-chain analytics: per-option IV/Greeks/ΔOI/build-up, per-chain ATM, PCR, max pain,
//! straddle, skew, GEX, basis, and moneyness series, emitted on an event-time cadence.
//!
//! Sans-I/O like [`crate::core`]: instruments and ticks go in, [`EngineOutput`]s come out, and
//! time is only ever the ticks' exchange timestamps and the watermark passed to
//! [`ChainAnalyticsEngine::advance`]. The Kafka shell that drives it lives elsewhere.
//!
//! Cost model: [`ChainAnalyticsEngine::on_tick`] is O(1) (one hash lookup and a few stores);
//! [`ChainAnalyticsEngine::advance`] does O(strikes) work per chain per crossed cadence
//! boundary (IV and Greeks of every priced option, then the chain metrics).

mod emission;
mod engine;
mod formulas;
mod state;

pub use engine::{
    ChainAnalyticsEngine, ChainSettings, EngineOutput, EngineStats, ReferenceChoice, RegisterError,
};
pub use formulas::{build_up, iv_at_delta, max_pain, moneyness_bucket, StrikeOi};
