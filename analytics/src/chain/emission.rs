//! One chain's emission at one cadence boundary: O(options in the chain).
//!
//! [`emit_chain`] runs the named steps in order: find the [`References`] (time to expiry,
//! spot, future, parity forward, the ATM reference and the pricing underlying), price every
//! option, total the chain in one pass over its strikes ([`ChainTotals`]), find the ATM
//! strike, then emit the chain record, the rows of the options that ticked, and at a minute
//! close the moneyness series. Each step reads what the previous ones computed, and the
//! arithmetic is done in the same order every time, so emissions are bit-for-bit
//! reproducible.

use strikeflow_schemas::{
    date_from_days, BuildUp, ChainAnalytics, MoneynessPoint, NoIvReason, OptionSide, ReferenceKind,
    StrikeAnalytics,
};

use super::engine::{ChainSettings, EngineOutput, ReferenceChoice};
use super::formulas::{build_up, iv_at_delta, max_pain, moneyness_bucket, StrikeOi};
use super::state::{Chain, OptionState, Series};
use crate::bars::BAR_MICROS;
use crate::pricing::{
    parity_forward, years_to_expiry, Convention, IvGreeks, NoIv, ParityQuote, Quote,
};

/// Reusable buffers for one emission (no allocation per emission once warm).
pub(super) struct Scratch {
    pub(super) parity: Vec<ParityQuote>,
    pub(super) oi: Vec<StrikeOi>,
    pub(super) deltas: Vec<(f64, f64)>,
}

/// Where a chain stands at a boundary: the prices everything else is measured against.
struct References {
    /// Time to expiry in years.
    t: f64,
    spot: Option<f64>,
    future: Option<f64>,
    /// Put–call parity forward from the two-sided strikes.
    parity: Option<f64>,
    /// What ATM and moneyness are measured against, and which price it is.
    reference: Option<(f64, ReferenceKind)>,
    /// The pricing model's underlying: the forward under Black-76, spot under NSE's
    /// Black–Scholes.
    underlying: Option<f64>,
}

/// Chain-wide totals from one pass over the strikes.
#[derive(Default)]
struct ChainTotals {
    ce_oi: i64,
    pe_oi: i64,
    ce_volume: i64,
    pe_volume: i64,
    /// ΔOI since the previous close, over the options that have one.
    ce_oi_change: Option<i64>,
    pe_oi_change: Option<i64>,
    /// (strike, OI) of the largest put OI: support.
    support: Option<(f64, i64)>,
    /// (strike, OI) of the largest call OI: resistance.
    resistance: Option<(f64, i64)>,
    net_gex: Option<f64>,
}

/// All the work of one chain at one boundary.
pub(super) fn emit_chain(
    settings: &ChainSettings,
    series: &[Series],
    chain: &mut Chain,
    boundary: i64,
    minute_close: bool,
    scratch: &mut Scratch,
    out: &mut Vec<EngineOutput>,
) {
    let refs = references(settings, series, chain, boundary, scratch);
    price_options(settings, chain, &refs);
    let totals = chain_totals(chain, refs.underlying, scratch);
    let atm = atm_row(chain, refs.reference);
    if let (Some(reference), Some(atm_i)) = (refs.reference, atm) {
        out.push(chain_record(
            chain,
            &refs,
            reference,
            atm_i,
            &totals,
            boundary,
            minute_close,
            scratch,
        ));
    }
    strike_records(settings, chain, refs.underlying, boundary, scratch, out);
    if minute_close && refs.reference.is_some() {
        if let Some(atm_i) = atm {
            moneyness_records(settings, chain, atm_i, boundary, out);
        }
    }
}

/// Time to expiry, the observed prices, the parity forward, the ATM reference and the
/// pricing underlying.
fn references(
    settings: &ChainSettings,
    series: &[Series],
    chain: &Chain,
    boundary: i64,
    scratch: &mut Scratch,
) -> References {
    let convention = settings.pricer.convention;
    let t = date_from_days(chain.expiry)
        .map(|d| years_to_expiry(boundary, d, settings.day_count))
        .unwrap_or(0.0);
    let spot = chain.spot.and_then(|i| series[i].price);
    let future = chain.future.and_then(|i| series[i].price);

    scratch.parity.clear();
    for row in &chain.rows {
        if let (Some(c), Some(p)) = (row.ce, row.pe) {
            let (c, p) = (&chain.options[c], &chain.options[p]);
            if let (Some(call), Some(put)) = (c.parity_price(), p.parity_price()) {
                scratch.parity.push(ParityQuote {
                    strike: row.strike,
                    call,
                    put,
                });
            }
        }
    }
    let parity = parity_forward(&scratch.parity, convention.rate(), t)
        .map(|p| p.forward)
        .filter(|f| f.is_finite() && *f > 0.0);

    let forward = future
        .map(|f| (f, ReferenceKind::Future))
        .or(parity.map(|f| (f, ReferenceKind::ParityForward)))
        .or(spot.map(|s| (convention.forward(s, t), ReferenceKind::Spot)));
    let reference = match settings.reference {
        ReferenceChoice::Forward => forward,
        ReferenceChoice::Spot => spot.map(|s| (s, ReferenceKind::Spot)).or(forward),
    };
    let underlying = match convention {
        Convention::Black76 { .. } => forward.map(|(f, _)| f),
        Convention::BlackScholesSpot { .. } => spot,
    };
    References {
        t,
        spot,
        future,
        parity,
        reference,
        underlying,
    }
}

/// IV and Greeks of every option with data, kept on the option until the next emission.
fn price_options(settings: &ChainSettings, chain: &mut Chain, refs: &References) {
    for o in chain.options.iter_mut().filter(|o| o.has_data) {
        o.calc = match refs.underlying {
            None => Err(NoIvReason::NoUnderlying),
            Some(u) => Quote {
                bid: o.bid,
                ask: o.ask,
            }
            .mid()
            .and_then(|price| {
                settings
                    .pricer
                    .iv_and_greeks(o.kind(), u, o.strike, refs.t, price)
            })
            .map_err(no_iv_reason),
        };
    }
}

/// An option's gamma exposure (calls positive, puts negative), per 1% move.
fn gex_of(o: &OptionState, underlying: Option<f64>) -> Option<f64> {
    let g = o.calc.as_ref().ok()?.greeks.gamma;
    let u = underlying?;
    let v = o.oi as f64 * g * u * o.lot_size * 0.01;
    let v = if o.side == OptionSide::PE { -v } else { v };
    v.is_finite().then_some(v)
}

/// Chain aggregates in one pass over the strikes; also fills `scratch.oi` (OI per strike)
/// for max pain and strike PCR.
fn chain_totals(chain: &Chain, underlying: Option<f64>, scratch: &mut Scratch) -> ChainTotals {
    let mut totals = ChainTotals::default();
    scratch.oi.clear();
    for row in &chain.rows {
        let ce = row.ce.map(|i| &chain.options[i]);
        let pe = row.pe.map(|i| &chain.options[i]);
        let row_ce = ce.map_or(0, OptionState::oi_if_data);
        let row_pe = pe.map_or(0, OptionState::oi_if_data);
        scratch.oi.push(StrikeOi {
            strike: row.strike,
            ce_oi: row_ce,
            pe_oi: row_pe,
        });
        let ChainTotals {
            ce_oi,
            pe_oi,
            ce_volume,
            pe_volume,
            ce_oi_change,
            pe_oi_change,
            net_gex,
            ..
        } = &mut totals;
        for (o, total, vol, change) in [
            (ce, ce_oi, ce_volume, ce_oi_change),
            (pe, pe_oi, pe_volume, pe_oi_change),
        ] {
            let Some(o) = o.filter(|o| o.has_data) else {
                continue;
            };
            *total = total.saturating_add(o.oi);
            *vol = vol.saturating_add(o.volume);
            if let Some((_, prev_oi)) = o.prev_close {
                *change = Some(change.unwrap_or(0).saturating_add(o.oi - prev_oi));
            }
            if let Some(g) = gex_of(o, underlying) {
                *net_gex = Some(net_gex.unwrap_or(0.0) + g);
            }
        }
        if row_ce > 0 && totals.resistance.is_none_or(|(_, oi)| row_ce > oi) {
            totals.resistance = Some((row.strike, row_ce));
        }
        if row_pe > 0 && totals.support.is_none_or(|(_, oi)| row_pe > oi) {
            totals.support = Some((row.strike, row_pe));
        }
    }
    totals
}

/// The listed strike nearest the reference (ties to the lower strike).
fn atm_row(chain: &Chain, reference: Option<(f64, ReferenceKind)>) -> Option<usize> {
    reference.and_then(|(r, _)| {
        let i = chain.rows.partition_point(|row| row.strike < r);
        let below = i.checked_sub(1);
        match (below, (i < chain.rows.len()).then_some(i)) {
            (Some(b), Some(a)) => {
                if r - chain.rows[b].strike <= chain.rows[a].strike - r {
                    Some(b)
                } else {
                    Some(a)
                }
            }
            (b, a) => b.or(a),
        }
    })
}

/// The chain's record: ATM straddle and IV, 25Δ skew, PCR, max pain, basis, GEX, OI.
#[allow(clippy::too_many_arguments)] // each is a distinct input of the one record
fn chain_record(
    chain: &Chain,
    refs: &References,
    (reference_price, reference_kind): (f64, ReferenceKind),
    atm_i: usize,
    totals: &ChainTotals,
    boundary: i64,
    minute_close: bool,
    scratch: &mut Scratch,
) -> EngineOutput {
    let (t, spot, future) = (refs.t, refs.spot, refs.future);
    let row = chain.rows[atm_i];
    let ce = row.ce.map(|i| &chain.options[i]).filter(|o| o.has_data);
    let pe = row.pe.map(|i| &chain.options[i]).filter(|o| o.has_data);
    let atm_straddle = match (ce, pe) {
        (Some(c), Some(p)) if c.ltp > 0.0 && p.ltp > 0.0 => Some(c.ltp + p.ltp),
        _ => None,
    };
    let ivs: Vec<f64> = [ce, pe]
        .into_iter()
        .flatten()
        .filter_map(|o| o.calc.as_ref().ok().map(|c| c.iv))
        .collect();
    let atm_iv = (!ivs.is_empty()).then(|| ivs.iter().sum::<f64>() / ivs.len() as f64);

    let mut iv_at = |side: OptionSide, target: f64| {
        scratch.deltas.clear();
        for row in &chain.rows {
            let id = match side {
                OptionSide::CE => row.ce,
                OptionSide::PE => row.pe,
            };
            if let Some(Ok(c)) = id.map(|i| &chain.options[i]).map(|o| o.calc.as_ref()) {
                scratch.deltas.push((c.greeks.delta, c.iv));
            }
        }
        iv_at_delta(&scratch.deltas, target)
    };
    // Only options with data have an Ok calc (others keep the NoUnderlying default).
    let skew_25d = match (iv_at(OptionSide::PE, -0.25), iv_at(OptionSide::CE, 0.25)) {
        (Some(p), Some(c)) => Some(p - c),
        _ => None,
    };
    let basis = match (future, spot) {
        (Some(f), Some(s)) => Some(f - s),
        _ => None,
    };
    let annualised_carry = match (future, spot) {
        (Some(f), Some(s)) if t > 0.0 && s > 0.0 => {
            Some((f / s - 1.0) / t).filter(|v| v.is_finite())
        }
        _ => None,
    };
    EngineOutput::Chain(ChainAnalytics {
        underlying: chain.underlying.clone(),
        expiry: chain.expiry,
        ts: boundary,
        minute_close,
        time_to_expiry: t,
        spot,
        future,
        parity_forward: refs.parity,
        reference_price,
        reference_kind,
        atm_strike: row.strike,
        pcr_oi: ratio(totals.pe_oi as f64, totals.ce_oi as f64),
        pcr_volume: ratio(totals.pe_volume as f64, totals.ce_volume as f64),
        max_pain: max_pain(&scratch.oi),
        atm_straddle,
        implied_move_pct: atm_straddle.and_then(|s| ratio(s * 100.0, reference_price)),
        atm_iv,
        skew_25d,
        support: totals.support.map(|(k, _)| k),
        resistance: totals.resistance.map(|(k, _)| k),
        basis,
        annualised_carry,
        net_gex: totals.net_gex,
        total_ce_oi: totals.ce_oi,
        total_pe_oi: totals.pe_oi,
        ce_oi_change_prev_close: totals.ce_oi_change,
        pe_oi_change_prev_close: totals.pe_oi_change,
    })
}

/// Per-option rows for the options that ticked since their last emission.
fn strike_records(
    settings: &ChainSettings,
    chain: &mut Chain,
    underlying: Option<f64>,
    boundary: i64,
    scratch: &Scratch,
    out: &mut Vec<EngineOutput>,
) {
    let window_minute =
        (boundary - i64::from(settings.oi_window_minutes) * BAR_MICROS).div_euclid(BAR_MICROS) - 1;
    for (row_i, row) in chain.rows.iter().enumerate() {
        let strike_oi = scratch.oi.get(row_i).copied();
        let strike_pcr = match (row.ce, row.pe, strike_oi) {
            (Some(_), Some(_), Some(s)) => ratio(s.pe_oi as f64, s.ce_oi as f64),
            _ => None,
        };
        for id in [row.ce, row.pe].into_iter().flatten() {
            let o = &chain.options[id];
            if !o.dirty {
                continue;
            }
            let gex = gex_of(o, underlying);
            let o = &mut chain.options[id];
            o.dirty = false;
            let base = o.prev_close.or(o.day_first);
            let build = base.map_or(BuildUp::Neutral, |(p, oi)| build_up(o.ltp - p, o.oi - oi));
            let calc = o.calc.as_ref().ok();
            let greek = |f: fn(&IvGreeks) -> f64| calc.map(f).filter(|v| v.is_finite());
            out.push(EngineOutput::Strike(StrikeAnalytics {
                instrument_token: o.token,
                tradingsymbol: o.tradingsymbol.clone(),
                underlying: chain.underlying.clone(),
                expiry: chain.expiry,
                strike: o.strike,
                option_type: o.side,
                ts: boundary,
                ltp: o.ltp,
                ltp_change_prev_close: o.prev_close.map(|(p, _)| o.ltp - p),
                oi: o.oi,
                oi_change_prev_close: o.prev_close.map(|(_, oi)| o.oi - oi),
                oi_change_window: o.ring.as_of(window_minute).map(|oi| o.oi - oi),
                volume: o.volume,
                bid: o.bid,
                ask: o.ask,
                iv: greek(|c| c.iv),
                no_iv_reason: o.calc.as_ref().err().copied(),
                delta: greek(|c| c.greeks.delta),
                gamma: greek(|c| c.greeks.gamma),
                theta: greek(|c| c.greeks.theta),
                vega: greek(|c| c.greeks.vega),
                rho: greek(|c| c.greeks.rho),
                build_up: build,
                strike_pcr,
                gex,
            }));
        }
    }
}

/// The moneyness series at a minute close: each option within `moneyness_levels` strikes
/// of ATM, bucketed ITMn..ATM..OTMn.
fn moneyness_records(
    settings: &ChainSettings,
    chain: &Chain,
    atm_i: usize,
    boundary: i64,
    out: &mut Vec<EngineOutput>,
) {
    let atm_strike = chain.rows[atm_i].strike;
    let minute = boundary.div_euclid(BAR_MICROS) * BAR_MICROS - BAR_MICROS;
    let levels = i64::from(settings.moneyness_levels);
    for row in &chain.rows {
        let level = match chain.step {
            Some(step) => ((row.strike - atm_strike) / step).round(),
            None => 0.0,
        };
        let outside = level.is_nan() || level.abs() > levels as f64;
        if outside || (chain.step.is_none() && row.strike != atm_strike) {
            continue;
        }
        let level = level as i32;
        for id in [row.ce, row.pe].into_iter().flatten() {
            let o = &chain.options[id];
            if !o.has_data {
                continue;
            }
            let calc = o.calc.as_ref().ok();
            out.push(EngineOutput::Moneyness(MoneynessPoint {
                underlying: chain.underlying.clone(),
                expiry: chain.expiry,
                minute,
                bucket: moneyness_bucket(o.side, level),
                level,
                side: o.side,
                instrument_token: o.token,
                strike: o.strike,
                ltp: o.ltp,
                iv: calc.map(|c| c.iv),
                delta: calc.map(|c| c.greeks.delta),
                oi: o.oi,
                volume: o.volume,
            }));
        }
    }
}

/// The published reason for a missing IV.
fn no_iv_reason(e: NoIv) -> NoIvReason {
    match e {
        NoIv::BelowIntrinsic => NoIvReason::BelowIntrinsic,
        NoIv::AboveMaximum => NoIvReason::AboveMaximum,
        NoIv::NoTwoSidedMarket => NoIvReason::NoTwoSidedMarket,
        NoIv::Expired => NoIvReason::Expired,
        NoIv::InvalidInput => NoIvReason::InvalidInput,
    }
}

/// `Some(a / b)` when `b > 0` and the ratio is finite.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b).filter(|r| r.is_finite())
}
