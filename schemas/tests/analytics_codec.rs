//! Codec round trips of the chain-analytics outputs (proptest, like `codec.rs` for the inputs):
//! every field, every union branch and every enum symbol survives encode → decode, and damaged
//! messages fail with the right error.

use proptest::prelude::*;
use strikeflow_schemas::{
    canonical_form, decode, encode, fingerprint, AvroRecord, BuildUp, ChainAnalytics, CodecError,
    IndicatorPoint, MoneynessPoint, NoIvReason, OptionSide, ReferenceKind, StrikeAnalytics,
    HEADER_LEN,
};

/// Doubles without NaN (the engine never emits NaN; NaN != NaN would break `PartialEq`).
fn double() -> impl Strategy<Value = f64> {
    prop::num::f64::POSITIVE
        | prop::num::f64::NEGATIVE
        | prop::num::f64::ZERO
        | prop::num::f64::SUBNORMAL
        | prop::num::f64::INFINITE
}

fn opt_double() -> impl Strategy<Value = Option<f64>> {
    proptest::option::of(double())
}

fn side() -> impl Strategy<Value = OptionSide> {
    prop_oneof![Just(OptionSide::CE), Just(OptionSide::PE)]
}

fn no_iv() -> impl Strategy<Value = Option<NoIvReason>> {
    proptest::option::of(prop_oneof![
        Just(NoIvReason::BelowIntrinsic),
        Just(NoIvReason::AboveMaximum),
        Just(NoIvReason::NoTwoSidedMarket),
        Just(NoIvReason::Expired),
        Just(NoIvReason::InvalidInput),
        Just(NoIvReason::NoUnderlying),
    ])
}

fn build_up() -> impl Strategy<Value = BuildUp> {
    prop_oneof![
        Just(BuildUp::LongBuildup),
        Just(BuildUp::ShortBuildup),
        Just(BuildUp::ShortCovering),
        Just(BuildUp::LongUnwinding),
        Just(BuildUp::Neutral),
    ]
}

fn reference_kind() -> impl Strategy<Value = ReferenceKind> {
    prop_oneof![
        Just(ReferenceKind::Spot),
        Just(ReferenceKind::Future),
        Just(ReferenceKind::ParityForward),
    ]
}

prop_compose! {
    fn greeks()(iv in opt_double(), no_iv_reason in no_iv(), delta in opt_double(),
                gamma in opt_double(), theta in opt_double(), vega in opt_double(),
                rho in opt_double())
        -> (Option<f64>, Option<NoIvReason>, [Option<f64>; 5]) {
        (iv, no_iv_reason, [delta, gamma, theta, vega, rho])
    }
}

prop_compose! {
    fn strike_analytics()(
        instrument_token in any::<i64>(),
        tradingsymbol in any::<String>(),
        underlying in any::<String>(),
        expiry in any::<i32>(),
        strike in double(),
        option_type in side(),
        ts in any::<i64>(),
        ltp in double(),
        ltp_change_prev_close in opt_double(),
        oi in any::<i64>(),
        oi_change_prev_close in proptest::option::of(any::<i64>()),
        oi_change_window in proptest::option::of(any::<i64>()),
        volume in any::<i64>(),
        bid in double(),
        ask in double(),
        (iv, no_iv_reason, g) in greeks(),
        build_up in build_up(),
        strike_pcr in opt_double(),
        gex in opt_double(),
    ) -> StrikeAnalytics {
        StrikeAnalytics {
            instrument_token, tradingsymbol, underlying, expiry, strike, option_type, ts, ltp,
            ltp_change_prev_close, oi, oi_change_prev_close, oi_change_window, volume, bid, ask,
            iv, no_iv_reason, delta: g[0], gamma: g[1], theta: g[2], vega: g[3], rho: g[4],
            build_up, strike_pcr, gex,
        }
    }
}

prop_compose! {
    fn chain_prices()(spot in opt_double(), future in opt_double(), parity_forward in opt_double(),
                      reference_price in double(), reference_kind in reference_kind(),
                      atm_strike in double(), pcr_oi in opt_double(), pcr_volume in opt_double(),
                      max_pain in opt_double(), atm_straddle in opt_double(),
                      implied_move_pct in opt_double(), atm_iv in opt_double())
        -> ([Option<f64>; 3], f64, ReferenceKind, f64, [Option<f64>; 6]) {
        ([spot, future, parity_forward], reference_price, reference_kind, atm_strike,
         [pcr_oi, pcr_volume, max_pain, atm_straddle, implied_move_pct, atm_iv])
    }
}

prop_compose! {
    fn chain_analytics()(
        underlying in any::<String>(),
        expiry in any::<i32>(),
        ts in any::<i64>(),
        minute_close in any::<bool>(),
        time_to_expiry in double(),
        (p, reference_price, reference_kind, atm_strike, m) in chain_prices(),
        skew_25d in opt_double(),
        support in opt_double(),
        resistance in opt_double(),
        basis in opt_double(),
        annualised_carry in opt_double(),
        net_gex in opt_double(),
        total_ce_oi in any::<i64>(),
        total_pe_oi in any::<i64>(),
        ce_oi_change_prev_close in proptest::option::of(any::<i64>()),
        pe_oi_change_prev_close in proptest::option::of(any::<i64>()),
    ) -> ChainAnalytics {
        ChainAnalytics {
            underlying, expiry, ts, minute_close, time_to_expiry, spot: p[0], future: p[1],
            parity_forward: p[2], reference_price, reference_kind, atm_strike, pcr_oi: m[0],
            pcr_volume: m[1], max_pain: m[2], atm_straddle: m[3], implied_move_pct: m[4],
            atm_iv: m[5], skew_25d, support, resistance, basis, annualised_carry, net_gex,
            total_ce_oi, total_pe_oi, ce_oi_change_prev_close, pe_oi_change_prev_close,
        }
    }
}

prop_compose! {
    fn moneyness_point()(
        underlying in any::<String>(),
        expiry in any::<i32>(),
        minute in any::<i64>(),
        bucket in any::<String>(),
        level in any::<i32>(),
        side in side(),
        instrument_token in any::<i64>(),
        strike in double(),
        ltp in double(),
        iv in opt_double(),
        delta in opt_double(),
        oi in any::<i64>(),
        volume in any::<i64>(),
    ) -> MoneynessPoint {
        MoneynessPoint { underlying, expiry, minute, bucket, level, side, instrument_token,
            strike, ltp, iv, delta, oi, volume }
    }
}

fn check<T: AvroRecord + PartialEq + std::fmt::Debug>(value: &T) -> Result<(), TestCaseError> {
    let bytes = encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&bytes[2..10], &fingerprint::<T>().to_le_bytes());
    prop_assert_eq!(
        &decode::<T>(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?,
        value
    );
    for cut in 0..bytes.len() {
        match decode::<T>(&bytes[..cut]) {
            Err(CodecError::NotSingleObject) => prop_assert!(cut < HEADER_LEN),
            Err(CodecError::Truncated { record }) => prop_assert_eq!(record, T::NAME),
            other => prop_assert!(false, "cut at {}: {:?}", cut, other),
        }
    }
    let mut longer = bytes;
    longer.push(0);
    let trailing = matches!(
        decode::<T>(&longer),
        Err(CodecError::TrailingBytes { extra: 1, .. })
    );
    prop_assert!(trailing, "one trailing byte must be reported");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn strike_analytics_round_trips(v in strike_analytics()) {
        check(&v)?;
    }

    #[test]
    fn chain_analytics_round_trips(v in chain_analytics()) {
        check(&v)?;
    }

    #[test]
    fn moneyness_point_round_trips(v in moneyness_point()) {
        check(&v)?;
    }

    #[test]
    fn garbage_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode::<StrikeAnalytics>(&garbage);
        let mut framed = vec![0xC3, 0x01];
        framed.extend_from_slice(&fingerprint::<ChainAnalytics>().to_le_bytes());
        framed.extend_from_slice(&garbage);
        let _ = decode::<ChainAnalytics>(&framed);
        framed[2..10].copy_from_slice(&fingerprint::<MoneynessPoint>().to_le_bytes());
        let _ = decode::<MoneynessPoint>(&framed);
    }
}

#[test]
fn names_docs_and_distinct_fingerprints() {
    let all = [
        (StrikeAnalytics::NAME, StrikeAnalytics::SCHEMA_JSON),
        (ChainAnalytics::NAME, ChainAnalytics::SCHEMA_JSON),
        (MoneynessPoint::NAME, MoneynessPoint::SCHEMA_JSON),
    ];
    for (name, json) in all {
        let pcf = canonical_form(json).expect("pcf");
        assert!(pcf.starts_with(&format!("{{\"name\":\"{name}\",")), "{pcf}");
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        assert!(v["doc"].is_string());
        for f in v["fields"].as_array().expect("fields") {
            assert!(f["doc"].is_string(), "{name}.{} has no doc", f["name"]);
            // Every union is ["null", T] with a null default: absent values, never NaN.
            if let Some(branches) = f["type"].as_array() {
                assert_eq!(branches[0], "null", "{name}.{}", f["name"]);
                assert!(f["default"].is_null(), "{name}.{}", f["name"]);
            }
        }
    }
    let fps = [
        fingerprint::<StrikeAnalytics>(),
        fingerprint::<ChainAnalytics>(),
        fingerprint::<MoneynessPoint>(),
    ];
    assert!(fps[0] != fps[1] && fps[1] != fps[2] && fps[0] != fps[2]);
}

proptest! {
    #[test]
    fn indicator_point_round_trips(
        instrument_token in any::<i64>(),
        timeframe_minutes in any::<i32>(),
        window_start in any::<i64>(),
        indicator in "[a-z]{1,12}",
        params in "[a-z]{0,8}=[0-9]{0,3}",
        outputs in proptest::collection::btree_map("[a-z]{1,8}", double(), 0..4),
    ) {
        let point = IndicatorPoint { instrument_token, timeframe_minutes, window_start, indicator, params, outputs };
        let bytes = encode(&point).unwrap();
        prop_assert_eq!(decode::<IndicatorPoint>(&bytes).unwrap(), point);
        for cut in HEADER_LEN..bytes.len() {
            prop_assert!(decode::<IndicatorPoint>(&bytes[..cut]).is_err());
        }
    }
}
