//! Every fuzz target, with the real values their corpora start from.

mod avro;
mod client_op;
mod jwt;
mod kite;
mod replay;

use std::collections::BTreeMap;

use strikeflow_ingest::replay::Format;
use strikeflow_ingest::{MarketSimulator, SimulatorConfig};
use strikeflow_schemas::{
    Bar, BuildUp, ChainAnalytics, IndicatorPoint, Instrument, MoneynessPoint, NoIvReason,
    OptionSide, ReferenceKind, StrikeAnalytics, Tick, Watermark,
};

pub use avro::AvroTarget;
pub use client_op::{ClientOpJson, ClientOpMsgPack};
pub use jwt::JwtTarget;
pub use kite::KiteTarget;
pub use replay::ReplayTarget;

use crate::harness::Target;

/// The names of every target, in the order `all` runs them.
pub const NAMES: [&str; 14] = [
    "avro-tick",
    "avro-instrument",
    "avro-bar",
    "avro-watermark",
    "avro-strike",
    "avro-chain",
    "avro-moneyness",
    "avro-indicator",
    "kite-frame",
    "client-op-json",
    "client-op-msgpack",
    "replay-ndjson",
    "replay-csv",
    "jwt",
];

/// Why a target could not be built (its corpus or keys).
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// No target has that name.
    #[error("unknown fuzz target {0:?} (one of: all, {list})", list = NAMES.join(", "))]
    Unknown(String),
    /// Building the corpus or loading the keys failed.
    #[error("fuzz target {name}: {reason}")]
    Setup {
        /// The target.
        name: &'static str,
        /// What failed.
        reason: String,
    },
}

/// The target called `name` (one of [`NAMES`]).
pub fn target(name: &str) -> Result<Box<dyn Target>, TargetError> {
    let Some(&name) = NAMES.iter().find(|n| **n == name) else {
        return Err(TargetError::Unknown(name.to_owned()));
    };
    let setup = |reason: String| TargetError::Setup { name, reason };
    Ok(match name {
        "avro-tick" => Box::new(AvroTarget::new(name, &ticks(200)).map_err(setup)?),
        "avro-instrument" => Box::new(AvroTarget::new(name, &instruments()).map_err(setup)?),
        "avro-bar" => Box::new(AvroTarget::new(name, &bars()).map_err(setup)?),
        "avro-watermark" => Box::new(AvroTarget::new(name, &watermarks()).map_err(setup)?),
        "avro-strike" => Box::new(AvroTarget::new(name, &strikes()).map_err(setup)?),
        "avro-chain" => Box::new(AvroTarget::new(name, &chains()).map_err(setup)?),
        "avro-moneyness" => Box::new(AvroTarget::new(name, &moneyness()).map_err(setup)?),
        "avro-indicator" => Box::new(AvroTarget::new(name, &indicators()).map_err(setup)?),
        "kite-frame" => Box::new(KiteTarget::new().map_err(setup)?),
        "client-op-json" => Box::new(ClientOpJson::new()),
        "client-op-msgpack" => Box::new(ClientOpMsgPack::new().map_err(setup)?),
        "replay-ndjson" => Box::new(ReplayTarget::new(Format::Ndjson).map_err(setup)?),
        "replay-csv" => Box::new(ReplayTarget::new(Format::Csv).map_err(setup)?),
        _ => Box::new(JwtTarget::new().map_err(setup)?),
    })
}

/// The targets `selection` names: one name, or `all`.
pub fn select(selection: &str) -> Result<Vec<Box<dyn Target>>, TargetError> {
    if selection == "all" {
        NAMES.iter().map(|n| target(n)).collect()
    } else {
        Ok(vec![target(selection)?])
    }
}

fn simulator() -> Option<MarketSimulator> {
    MarketSimulator::new(&SimulatorConfig::default()).ok()
}

fn ticks(n: usize) -> Vec<Tick> {
    simulator().map_or_else(Vec::new, |mut sim| {
        (0..n).map(|_| sim.next_tick()).collect()
    })
}

fn instruments() -> Vec<Instrument> {
    simulator().map_or_else(Vec::new, |sim| {
        let all = sim.instruments();
        let step = (all.len() / 60).max(1);
        all.iter().step_by(step).cloned().collect()
    })
}

fn bars() -> Vec<Bar> {
    ticks(60)
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let start = t.exchange_ts - t.exchange_ts.rem_euclid(60_000_000);
            Bar {
                instrument_token: t.instrument_token,
                window_start: start,
                window_end: start + 60_000_000,
                open: t.ltp - 1.0,
                high: t.ltp + 2.5,
                low: t.ltp - 3.0,
                close: t.ltp,
                volume: t.volume % 100_000,
                oi: t.oi,
                tick_count: i as i32 + 1,
            }
        })
        .collect()
}

fn watermarks() -> Vec<Watermark> {
    ["simulator", "replay", "kite", ""]
        .iter()
        .enumerate()
        .map(|(i, source)| Watermark {
            event_ts: 1_766_999_400_000_000 + i as i64 * 86_400_000_000,
            source: (*source).to_owned(),
        })
        .collect()
}

fn strikes() -> Vec<StrikeAnalytics> {
    let full = StrikeAnalytics {
        instrument_token: 12_345_602,
        tradingsymbol: "NIFTY26DEC24500CE".to_owned(),
        underlying: "NIFTY".to_owned(),
        expiry: 20_816,
        strike: 24_500.0,
        option_type: OptionSide::CE,
        ts: 1_766_982_600_000_000,
        ltp: 182.35,
        ltp_change_prev_close: Some(-12.4),
        oi: 1_250_000,
        oi_change_prev_close: Some(75_000),
        oi_change_window: Some(-1_500),
        volume: 9_876_500,
        bid: 182.3,
        ask: 182.4,
        iv: Some(0.1342),
        no_iv_reason: None,
        delta: Some(0.52),
        gamma: Some(0.00041),
        theta: Some(-11.2),
        vega: Some(14.8),
        rho: Some(3.1),
        build_up: BuildUp::LongBuildup,
        strike_pcr: Some(1.07),
        gex: Some(-2.5e9),
    };
    let empty = StrikeAnalytics {
        tradingsymbol: "BANKNIFTY26DEC52000PE".to_owned(),
        underlying: "BANKNIFTY".to_owned(),
        option_type: OptionSide::PE,
        ltp_change_prev_close: None,
        oi_change_prev_close: None,
        oi_change_window: None,
        iv: None,
        no_iv_reason: Some(NoIvReason::NoTwoSidedMarket),
        delta: None,
        gamma: None,
        theta: None,
        vega: None,
        rho: None,
        build_up: BuildUp::Neutral,
        strike_pcr: None,
        gex: None,
        ..full.clone()
    };
    let reasons = [
        NoIvReason::BelowIntrinsic,
        NoIvReason::AboveMaximum,
        NoIvReason::Expired,
        NoIvReason::InvalidInput,
        NoIvReason::NoUnderlying,
    ];
    let builds = [
        BuildUp::ShortBuildup,
        BuildUp::ShortCovering,
        BuildUp::LongUnwinding,
        BuildUp::LongBuildup,
        BuildUp::Neutral,
    ];
    let mut out = vec![full.clone(), empty.clone()];
    out.extend(reasons.iter().zip(builds).map(|(r, b)| StrikeAnalytics {
        no_iv_reason: Some(*r),
        build_up: b,
        ..empty.clone()
    }));
    out
}

fn chains() -> Vec<ChainAnalytics> {
    let full = ChainAnalytics {
        underlying: "NIFTY".to_owned(),
        expiry: 20_816,
        ts: 1_766_982_600_000_000,
        minute_close: true,
        time_to_expiry: 0.0123,
        spot: Some(24_480.1),
        future: Some(24_530.0),
        parity_forward: Some(24_528.4),
        reference_price: 24_528.4,
        reference_kind: ReferenceKind::ParityForward,
        atm_strike: 24_500.0,
        pcr_oi: Some(0.93),
        pcr_volume: Some(1.12),
        max_pain: Some(24_400.0),
        atm_straddle: Some(361.2),
        implied_move_pct: Some(1.47),
        atm_iv: Some(0.135),
        skew_25d: Some(0.021),
        support: Some(24_000.0),
        resistance: Some(25_000.0),
        basis: Some(49.9),
        annualised_carry: Some(0.066),
        net_gex: Some(1.2e10),
        total_ce_oi: 98_000_000,
        total_pe_oi: 91_000_000,
        ce_oi_change_prev_close: Some(1_200_000),
        pe_oi_change_prev_close: Some(-300_000),
    };
    let empty = ChainAnalytics {
        underlying: "BANKNIFTY".to_owned(),
        minute_close: false,
        spot: None,
        future: None,
        parity_forward: None,
        reference_kind: ReferenceKind::Spot,
        pcr_oi: None,
        pcr_volume: None,
        max_pain: None,
        atm_straddle: None,
        implied_move_pct: None,
        atm_iv: None,
        skew_25d: None,
        support: None,
        resistance: None,
        basis: None,
        annualised_carry: None,
        net_gex: None,
        ce_oi_change_prev_close: None,
        pe_oi_change_prev_close: None,
        ..full.clone()
    };
    let future = ChainAnalytics {
        reference_kind: ReferenceKind::Future,
        ..empty.clone()
    };
    vec![full, empty, future]
}

fn moneyness() -> Vec<MoneynessPoint> {
    ["ATM", "ITM1", "OTM2", "OTM10"]
        .iter()
        .enumerate()
        .map(|(i, bucket)| MoneynessPoint {
            underlying: "NIFTY".to_owned(),
            expiry: 20_816,
            minute: 1_766_982_600_000_000,
            bucket: (*bucket).to_owned(),
            level: i as i32 - 2,
            side: if i % 2 == 0 {
                OptionSide::CE
            } else {
                OptionSide::PE
            },
            instrument_token: 12_345_602 + i as i64 * 256,
            strike: 24_400.0 + 50.0 * i as f64,
            ltp: 120.0 + i as f64,
            iv: (i % 2 == 0).then_some(0.14),
            delta: (i % 2 == 0).then_some(0.45),
            oi: 500_000,
            volume: 1_000_000,
        })
        .collect()
}

fn indicators() -> Vec<IndicatorPoint> {
    let outputs: [&[(&str, f64)]; 4] = [
        &[],
        &[("rsi", 61.5)],
        &[("macd", 12.1), ("signal", 10.4), ("histogram", 1.7)],
        &[
            ("upper", 24_700.0),
            ("middle", 24_500.0),
            ("lower", 24_300.0),
            ("width", 0.016),
        ],
    ];
    outputs
        .iter()
        .enumerate()
        .map(|(i, out)| IndicatorPoint {
            instrument_token: 256_265,
            timeframe_minutes: [1, 3, 5, 15][i],
            window_start: 1_766_982_600_000_000,
            indicator: ["ema", "rsi", "macd", "bollinger"][i].to_owned(),
            params: [
                "period=20",
                "period=14",
                "fast=12,slow=26,signal=9",
                "period=20,k=2",
            ][i]
                .to_owned(),
            outputs: out
                .iter()
                .map(|(k, v)| ((*k).to_owned(), *v))
                .collect::<BTreeMap<_, _>>(),
        })
        .collect()
}
