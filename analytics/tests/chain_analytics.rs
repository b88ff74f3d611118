//! Behaviour of `strikeflow_analytics::chain::ChainAnalyticsEngine` against the definitions in the domain
//! brief ("Chain analytics definitions"): max pain, PCR, ATM and ATM IV, moneyness buckets,
//! build-up, forward selection, no-NaN outputs, cadence, previous-close ΔOI and skew.

use chrono::NaiveDate;
use strikeflow_analytics::chain::{
    ChainAnalyticsEngine, ChainSettings, EngineOutput, ReferenceChoice,
};
use strikeflow_analytics::pricing::{years_to_expiry, Convention, DayCount, OptionKind};
use strikeflow_schemas::{
    days_from_date, BuildUp, ChainAnalytics, Instrument, InstrumentType, MoneynessPoint,
    NoIvReason, OptionSide, ReferenceKind, StrikeAnalytics, Tick,
};

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// 2026-12-01 09:30:00 IST (04:00 UTC) plus `offset` micros.
fn at(offset: i64) -> i64 {
    i64::from(days_from_date(date(2026, 12, 1))) * 86_400 * SEC + 4 * 60 * MIN + offset
}

fn monthly() -> i32 {
    days_from_date(date(2026, 12, 29))
}

fn weekly() -> i32 {
    days_from_date(date(2026, 12, 8))
}

fn inst(token: i64, ty: InstrumentType, expiry: Option<i32>, strike: f64) -> Instrument {
    Instrument {
        instrument_token: token,
        exchange_token: token,
        tradingsymbol: format!("NIFTY-{token}"),
        name: "NIFTY".into(),
        last_price: 0.0,
        expiry,
        strike,
        tick_size: 0.05,
        lot_size: 65,
        instrument_type: ty,
        segment: "NFO-OPT".into(),
        exchange: "NFO".into(),
    }
}

const SPOT: i64 = 256_265;
const FUT: i64 = 900;

/// Token of the option at `strike` on `side` of the monthly (base 0) or weekly (base 50_000).
fn tok(base: i64, strike: f64, side: OptionSide) -> i64 {
    base + strike as i64 * 2 + i64::from(side == OptionSide::PE)
}

/// NIFTY spot + monthly future + monthly and weekly chains at `strikes`.
fn engine(settings: ChainSettings, strikes: &[f64]) -> ChainAnalyticsEngine {
    let mut e = ChainAnalyticsEngine::new(settings);
    e.register(&inst(SPOT, InstrumentType::EQ, None, 0.0))
        .expect("spot");
    e.register(&inst(FUT, InstrumentType::FUT, Some(monthly()), 0.0))
        .expect("future");
    for (base, expiry) in [(0, monthly()), (50_000, weekly())] {
        for &k in strikes {
            e.register(&inst(
                tok(base, k, OptionSide::CE),
                InstrumentType::CE,
                Some(expiry),
                k,
            ))
            .expect("ce");
            e.register(&inst(
                tok(base, k, OptionSide::PE),
                InstrumentType::PE,
                Some(expiry),
                k,
            ))
            .expect("pe");
        }
    }
    e
}

fn tick(token: i64, ts: i64, ltp: f64, oi: i64, volume: i64) -> Tick {
    Tick {
        instrument_token: token,
        exchange_ts: ts,
        ltp,
        last_qty: 1,
        volume,
        oi,
        bid: ltp - 0.05,
        bid_qty: 100,
        ask: ltp + 0.05,
        ask_qty: 100,
    }
}

fn price_tick(token: i64, ts: i64, price: f64) -> Tick {
    tick(token, ts, price, 0, 0)
}

fn chains(out: &[EngineOutput]) -> Vec<&ChainAnalytics> {
    out.iter()
        .filter_map(|o| match o {
            EngineOutput::Chain(c) => Some(c),
            _ => None,
        })
        .collect()
}

fn strikes_out(out: &[EngineOutput]) -> Vec<&StrikeAnalytics> {
    out.iter()
        .filter_map(|o| match o {
            EngineOutput::Strike(s) => Some(s),
            _ => None,
        })
        .collect()
}

fn moneyness(out: &[EngineOutput]) -> Vec<&MoneynessPoint> {
    out.iter()
        .filter_map(|o| match o {
            EngineOutput::Moneyness(m) => Some(m),
            _ => None,
        })
        .collect()
}

fn chain_of(out: &[EngineOutput], expiry: i32) -> ChainAnalytics {
    chains(out)
        .into_iter()
        .find(|c| c.expiry == expiry)
        .cloned()
        .expect("chain output")
}

/// Ticks every option of the chain at `base` with Black-76 prices at forward `f`, vol from
/// `vol(strike, side)`.
fn price_chain(
    e: &mut ChainAnalyticsEngine,
    base: i64,
    expiry: i32,
    strikes: &[f64],
    f: f64,
    ts: i64,
    vol: impl Fn(f64, OptionKind) -> f64,
) {
    let t = years_to_expiry(
        ts - ts.rem_euclid(SEC) + SEC,
        strikeflow_schemas::date_from_days(expiry).expect("date"),
        DayCount::Act365,
    );
    for &k in strikes {
        for (side, kind) in [
            (OptionSide::CE, OptionKind::Call),
            (OptionSide::PE, OptionKind::Put),
        ] {
            let p = Convention::BLACK76
                .price(kind, f, k, t, vol(k, kind))
                .expect("price");
            let mut tk = tick(tok(base, k, side), ts, p, 1000, 10);
            tk.bid = p;
            tk.ask = p;
            e.on_tick(&tk);
        }
    }
}

#[test]
fn max_pain_and_pcr_match_the_brief_vector() {
    let strikes = [7700.0, 7800.0, 7900.0];
    let mut e = engine(ChainSettings::default(), &strikes);
    let ce = [1_823_400, 3_448_575, 5_367_450];
    let pe = [5_783_025, 4_864_125, 2_559_375];
    e.on_tick(&price_tick(SPOT, at(0), 7810.0));
    e.on_tick(&price_tick(FUT, at(0), 7820.0));
    for (i, &k) in strikes.iter().enumerate() {
        e.on_tick(&tick(tok(0, k, OptionSide::CE), at(1), 50.0, ce[i], 100));
        e.on_tick(&tick(tok(0, k, OptionSide::PE), at(1), 50.0, pe[i], 300));
    }
    let mut out = Vec::new();
    e.advance(at(SEC), &mut out);
    let c = chain_of(&out, monthly());
    assert_eq!(c.max_pain, Some(7800.0));
    let (ce_sum, pe_sum) = (ce.iter().sum::<i64>(), pe.iter().sum::<i64>());
    assert_eq!((c.total_ce_oi, c.total_pe_oi), (ce_sum, pe_sum));
    assert_eq!(c.pcr_oi, Some(pe_sum as f64 / ce_sum as f64));
    assert_eq!(c.pcr_volume, Some(3.0));
    assert_eq!(c.support, Some(7700.0));
    assert_eq!(c.resistance, Some(7900.0));
    assert_eq!(c.basis, Some(10.0));
    // Per-strike PCR: 7700 PE/CE.
    let s7700 = strikes_out(&out)
        .into_iter()
        .find(|s| s.instrument_token == tok(0, 7700.0, OptionSide::CE))
        .cloned()
        .expect("7700 CE");
    assert_eq!(s7700.strike_pcr, Some(5_783_025.0 / 1_823_400.0));
}

#[test]
fn atm_is_the_strike_nearest_the_future_and_atm_iv_is_the_mean() {
    let strikes: Vec<f64> = (0..9).map(|i| 24_000.0 + 50.0 * f64::from(i)).collect();
    let mut e = engine(ChainSettings::default(), &strikes);
    e.on_tick(&price_tick(SPOT, at(0), 24_100.0));
    e.on_tick(&price_tick(FUT, at(0), 24_180.0)); // nearest 24_200 (spot would give 24_100)
    price_chain(
        &mut e,
        0,
        monthly(),
        &strikes,
        24_180.0,
        at(10),
        |k, kind| {
            if k == 24_200.0 && kind == OptionKind::Put {
                0.14
            } else {
                0.12
            }
        },
    );
    let mut out = Vec::new();
    e.advance(at(SEC), &mut out);
    let c = chain_of(&out, monthly());
    assert_eq!(c.reference_kind, ReferenceKind::Future);
    assert_eq!(c.reference_price, 24_180.0);
    assert_eq!(c.atm_strike, 24_200.0);
    let atm_iv = c.atm_iv.expect("atm iv");
    assert!((atm_iv - 0.13).abs() < 1e-6, "{atm_iv}");
    let straddle = c.atm_straddle.expect("straddle");
    assert!((c.implied_move_pct.expect("move") - straddle / 24_180.0 * 100.0).abs() < 1e-12);

    // Spot reference: ATM follows spot.
    let settings = ChainSettings {
        reference: ReferenceChoice::Spot,
        ..ChainSettings::default()
    };
    let mut e = engine(settings, &strikes);
    e.on_tick(&price_tick(SPOT, at(0), 24_110.0));
    e.on_tick(&price_tick(FUT, at(0), 24_180.0));
    price_chain(&mut e, 0, monthly(), &strikes, 24_180.0, at(10), |_, _| {
        0.12
    });
    let mut out = Vec::new();
    e.advance(at(SEC), &mut out);
    let c = chain_of(&out, monthly());
    assert_eq!(
        (c.reference_kind, c.atm_strike),
        (ReferenceKind::Spot, 24_100.0)
    );
}

#[test]
fn parity_forward_for_a_weekly_and_the_future_for_the_monthly() {
    let strikes: Vec<f64> = (0..9).map(|i| 24_000.0 + 50.0 * f64::from(i)).collect();
    let mut e = engine(ChainSettings::default(), &strikes);
    e.on_tick(&price_tick(SPOT, at(0), 24_100.0));
    e.on_tick(&price_tick(FUT, at(0), 24_260.0));
    price_chain(&mut e, 0, monthly(), &strikes, 24_260.0, at(10), |_, _| {
        0.12
    });
    price_chain(
        &mut e,
        50_000,
        weekly(),
        &strikes,
        24_130.0,
        at(10),
        |_, _| 0.11,
    );
    let mut out = Vec::new();
    e.advance(at(SEC), &mut out);
    let m = chain_of(&out, monthly());
    assert_eq!(m.reference_kind, ReferenceKind::Future);
    assert_eq!(m.future, Some(24_260.0));
    assert_eq!(m.atm_strike, 24_250.0);
    let w = chain_of(&out, weekly());
    assert_eq!(w.future, None, "no weekly future");
    assert_eq!(w.reference_kind, ReferenceKind::ParityForward);
    let pf = w.parity_forward.expect("parity forward");
    assert!((pf - 24_130.0).abs() < 1e-6, "{pf}");
    assert_eq!(w.reference_price, pf);
    assert_eq!(w.atm_strike, 24_150.0);
    assert_eq!(w.basis, None);
    // Weekly IVs are solved on the parity forward: they recover the 11% used to price them.
    for s in strikes_out(&out)
        .into_iter()
        .filter(|s| s.expiry == weekly())
    {
        if let Some(iv) = s.iv {
            assert!((iv - 0.11).abs() < 1e-6, "{} {iv}", s.tradingsymbol);
        }
    }
}

#[test]
fn moneyness_bucket_follows_spot_across_a_strike() {
    let strikes: Vec<f64> = (0..11).map(|i| 24_000.0 + 50.0 * f64::from(i)).collect();
    let settings = ChainSettings {
        reference: ReferenceChoice::Spot,
        moneyness_levels: 2,
        ..ChainSettings::default()
    };
    let mut e = engine(settings, &strikes);
    e.on_tick(&price_tick(SPOT, at(0), 24_210.0));
    price_chain(&mut e, 0, monthly(), &strikes, 24_210.0, at(10), |_, _| {
        0.12
    });
    let mut out = Vec::new();
    e.advance(at(MIN), &mut out); // 09:31:00: minute close
    let otm1 = |out: &[EngineOutput]| {
        moneyness(out)
            .into_iter()
            .find(|m| m.expiry == monthly() && m.bucket == "OTM1" && m.side == OptionSide::CE)
            .cloned()
            .expect("OTM1 CE")
    };
    let first = otm1(&out);
    assert_eq!(first.strike, 24_250.0);
    assert_eq!(first.level, 1);
    assert_eq!(first.minute, at(0));
    // 2 levels each side + ATM, two sides.
    let points: Vec<_> = moneyness(&out)
        .into_iter()
        .filter(|m| m.expiry == monthly())
        .collect();
    assert_eq!(points.len(), 10);
    let itm2_pe = points
        .iter()
        .find(|m| m.bucket == "ITM2" && m.side == OptionSide::PE)
        .expect("ITM2 PE");
    assert_eq!(itm2_pe.strike, 24_300.0);

    // Spot crosses 24_250 → ATM 24_250, OTM1 CE is now 24_300 (another instrument).
    e.on_tick(&price_tick(SPOT, at(MIN + 5), 24_262.0));
    out.clear();
    e.advance(at(2 * MIN), &mut out);
    let second = otm1(&out);
    assert_eq!(second.strike, 24_300.0);
    assert_ne!(second.instrument_token, first.instrument_token);
    assert_eq!(second.minute, at(MIN));
}

#[test]
fn build_up_classes_against_previous_close() {
    let strikes = [24_000.0, 24_100.0, 24_200.0];
    let mut e = engine(ChainSettings::default(), &strikes);
    let day2 = 86_400 * SEC;
    e.on_tick(&price_tick(FUT, at(0), 24_100.0));
    let tokens: Vec<i64> = strikes
        .iter()
        .flat_map(|&k| [tok(0, k, OptionSide::CE), tok(0, k, OptionSide::PE)])
        .collect();
    for &t in &tokens {
        e.on_tick(&tick(t, at(1), 100.0, 10_000, 50));
    }
    let mut out = Vec::new();
    e.advance(at(SEC), &mut out);
    // First emission ever: no previous close, compared with the first values of the day.
    assert!(strikes_out(&out)
        .iter()
        .all(|s| s.build_up == BuildUp::Neutral && s.oi_change_prev_close.is_none()));

    // Next day: (price, OI) moves → classes.
    let moves = [
        (110.0, 11_000, BuildUp::LongBuildup),
        (90.0, 11_000, BuildUp::ShortBuildup),
        (110.0, 9_000, BuildUp::ShortCovering),
        (90.0, 9_000, BuildUp::LongUnwinding),
        (100.0, 12_000, BuildUp::Neutral),
        (105.0, 10_000, BuildUp::Neutral),
    ];
    e.on_tick(&price_tick(FUT, at(day2), 24_100.0));
    for (&t, &(p, oi, _)) in tokens.iter().zip(&moves) {
        e.on_tick(&tick(t, at(day2 + 1), p, oi, 7));
    }
    out.clear();
    e.advance(at(day2 + SEC), &mut out);
    let rows = strikes_out(&out);
    assert_eq!(rows.len(), 6);
    for (&t, &(p, oi, class)) in tokens.iter().zip(&moves) {
        let s = rows
            .iter()
            .find(|s| s.instrument_token == t)
            .expect("emitted");
        assert_eq!(s.build_up, class, "token {t}");
        assert_eq!(s.oi_change_prev_close, Some(oi - 10_000));
        assert_eq!(s.ltp_change_prev_close, Some(p - 100.0));
    }
}

#[test]
fn previous_close_oi_change_across_a_day_roll() {
    let strikes = [24_000.0, 24_100.0];
    let mut e = engine(ChainSettings::default(), &strikes);
    let day2 = 86_400 * SEC;
    e.on_tick(&price_tick(FUT, at(0), 24_050.0));
    let ce = tok(0, 24_000.0, OptionSide::CE);
    let pe = tok(0, 24_100.0, OptionSide::PE);
    e.on_tick(&tick(ce, at(1), 100.0, 5_000, 10));
    e.on_tick(&tick(ce, at(5 * 3600 * SEC), 120.0, 7_000, 20)); // 14:30 IST, last of day 1
    e.on_tick(&tick(pe, at(2), 80.0, 3_000, 10));
    let mut out = Vec::new();
    e.advance(at(5 * 3600 * SEC + SEC), &mut out);
    assert_eq!(chain_of(&out, monthly()).ce_oi_change_prev_close, None);

    // Day 2: CE OI 7_500 (+500 vs the close of 7_000); the PE does not tick yet (+0).
    e.on_tick(&tick(ce, at(day2), 121.0, 7_500, 5));
    // A late tick of day 1 after the roll is counted, not applied.
    e.on_tick(&tick(ce, at(6 * 3600 * SEC), 1.0, 1, 1));
    assert_eq!(e.stats().previous_day, 1);
    out.clear();
    e.advance(at(day2 + SEC), &mut out);
    let c = chain_of(&out, monthly());
    assert_eq!(c.ce_oi_change_prev_close, Some(500));
    assert_eq!(c.pe_oi_change_prev_close, Some(0));
    assert_eq!(c.total_ce_oi, 7_500);
    assert_eq!(
        c.pcr_volume,
        Some(0.0),
        "PE day volume reset to 0 at the roll"
    );
    let s = strikes_out(&out)
        .into_iter()
        .find(|s| s.instrument_token == ce)
        .cloned()
        .expect("ce row");
    assert_eq!(s.oi_change_prev_close, Some(500));
    assert_eq!(s.ltp_change_prev_close, Some(1.0));
    assert_eq!(s.volume, 5);
}

#[test]
fn oi_change_over_the_window() {
    let strikes = [24_000.0];
    let settings = ChainSettings {
        oi_window_minutes: 15,
        ..ChainSettings::default()
    };
    let mut e = engine(settings, &strikes);
    let ce = tok(0, 24_000.0, OptionSide::CE);
    e.on_tick(&price_tick(FUT, at(0), 24_000.0));
    e.on_tick(&tick(ce, at(10 * SEC), 100.0, 1_000, 1));
    e.on_tick(&tick(ce, at(3 * MIN), 100.0, 1_200, 1));
    e.on_tick(&tick(ce, at(16 * MIN + 30 * SEC), 100.0, 1_500, 1));
    let mut out = Vec::new();
    e.advance(at(16 * MIN + 31 * SEC), &mut out);
    // 15 minutes before 09:46:31 is 09:31:31; OI as of 09:31:00 was 1_000.
    let s = strikes_out(&out)[0].clone();
    assert_eq!(s.oi_change_window, Some(500));
    e.on_tick(&tick(ce, at(18 * MIN + 10 * SEC), 100.0, 1_600, 1));
    out.clear();
    e.advance(at(18 * MIN + 11 * SEC), &mut out);
    // 15 minutes before 09:48:11 → as of 09:33:00: still 1_000 (1_200 arrived at 09:33:00,
    // inside the next minute).
    assert_eq!(strikes_out(&out)[0].oi_change_window, Some(600));
    // Far later with no ticks in between: the back-filled ring still answers.
    e.on_tick(&tick(ce, at(40 * MIN), 100.0, 1_700, 1));
    out.clear();
    e.advance(at(40 * MIN + SEC), &mut out);
    assert_eq!(strikes_out(&out)[0].oi_change_window, Some(100));
}

#[test]
fn no_nan_anywhere_and_no_iv_is_flagged() {
    let strikes = [23_000.0, 24_000.0, 25_000.0];
    let mut e = engine(ChainSettings::default(), &strikes);
    let mut out = Vec::new();
    // Options before any underlying: NoUnderlying, no chain output (no reference).
    e.on_tick(&tick(tok(0, 24_000.0, OptionSide::CE), at(1), 100.0, 10, 1));
    e.advance(at(SEC), &mut out);
    assert!(chains(&out).is_empty());
    assert_eq!(
        strikes_out(&out)[0].no_iv_reason,
        Some(NoIvReason::NoUnderlying)
    );

    e.on_tick(&price_tick(FUT, at(SEC + 1), 24_000.0));
    // Deep ITM call quoted below intrinsic (intrinsic 1000).
    e.on_tick(&tick(
        tok(0, 23_000.0, OptionSide::CE),
        at(SEC + 2),
        990.0,
        10,
        1,
    ));
    // One-sided market: bid only.
    let mut one_sided = tick(tok(0, 25_000.0, OptionSide::CE), at(SEC + 3), 5.0, 10, 1);
    one_sided.ask = 0.0;
    e.on_tick(&one_sided);
    // Zero OI everywhere on the put side, zero call OI at 25_000 for strike PCR.
    e.on_tick(&tick(
        tok(0, 25_000.0, OptionSide::PE),
        at(SEC + 4),
        0.0,
        0,
        0,
    ));
    out.clear();
    e.advance(at(2 * SEC), &mut out);
    let rows = strikes_out(&out);
    let reason = |t: i64| {
        rows.iter()
            .find(|s| s.instrument_token == t)
            .map(|s| (s.iv, s.no_iv_reason, s.delta, s.gex))
            .expect("row")
    };
    assert_eq!(
        reason(tok(0, 23_000.0, OptionSide::CE)),
        (None, Some(NoIvReason::BelowIntrinsic), None, None)
    );
    assert_eq!(
        reason(tok(0, 25_000.0, OptionSide::CE)),
        (None, Some(NoIvReason::NoTwoSidedMarket), None, None)
    );
    let c = chain_of(&out, monthly());
    assert_eq!(c.skew_25d, None);
    let text = format!("{out:?}");
    assert!(!text.contains("NaN") && !text.contains("inf"), "{text}");
    // Every message encodes (the Avro unions accept every None).
    for o in &out {
        match o {
            EngineOutput::Chain(c) => drop(strikeflow_schemas::encode(c).expect("encode")),
            EngineOutput::Strike(s) => drop(strikeflow_schemas::encode(s).expect("encode")),
            EngineOutput::Moneyness(m) => drop(strikeflow_schemas::encode(m).expect("encode")),
        }
    }
}

#[test]
fn cadence_one_emission_per_boundary_and_minute_close() {
    let strikes = [24_000.0, 24_050.0];
    let mut e = engine(ChainSettings::default(), &strikes);
    let ce = tok(0, 24_000.0, OptionSide::CE);
    e.on_tick(&price_tick(FUT, at(0), 24_000.0));
    let mut out = Vec::new();
    // Ticks every 100 ms from 09:30:57 to 09:31:03, advancing the watermark with each.
    let start = 57 * SEC;
    let mut ts = start;
    while ts <= 63 * SEC {
        e.on_tick(&tick(ce, at(ts), 100.0 + (ts / SEC) as f64, 1000, 1));
        e.advance(at(ts), &mut out);
        ts += 100_000;
    }
    let cs = chains(&out);
    let stamps: Vec<i64> = cs.iter().map(|c| c.ts - at(0)).collect();
    // The first boundary after the engine's first tick (09:30:00) that the watermark crosses
    // is 09:30:57, then one per second.
    assert_eq!(stamps, (57..=63).map(|s| s * SEC).collect::<Vec<_>>());
    let closes: Vec<bool> = cs.iter().map(|c| c.minute_close).collect();
    assert_eq!(closes, [false, false, false, true, false, false, false]);
    // One StrikeAnalytics per boundary for the ticking option, none for the silent one.
    assert_eq!(strikes_out(&out).len(), 7);
    // Moneyness only at the minute close, for the minute 09:30.
    let m = moneyness(&out);
    assert!(!m.is_empty());
    assert!(m.iter().all(|p| p.minute == at(0)));

    // A jump over many boundaries (and a minute) emits once, at the latest, flagged.
    out.clear();
    e.on_tick(&tick(ce, at(150 * SEC), 130.0, 1000, 1));
    e.advance(at(150 * SEC + 500_000), &mut out);
    let cs = chains(&out);
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0].ts, at(150 * SEC));
    assert!(cs[0].minute_close);
    // The latest minute that closed by 09:32:30 is 09:31.
    assert!(!moneyness(&out).is_empty());
    assert!(moneyness(&out).iter().all(|p| p.minute == at(MIN)));
    // Same watermark again: nothing.
    out.clear();
    e.advance(at(150 * SEC + 900_000), &mut out);
    assert!(out.is_empty());
}

#[test]
fn skew_is_positive_when_puts_are_richer() {
    let strikes: Vec<f64> = (0..41).map(|i| 23_000.0 + 50.0 * f64::from(i)).collect();
    let mut e = engine(ChainSettings::default(), &strikes);
    e.on_tick(&price_tick(FUT, at(0), 24_000.0));
    // A smile with a put skew: IV falls with strike, puts on top of it by 2 vol points.
    price_chain(
        &mut e,
        0,
        monthly(),
        &strikes,
        24_000.0,
        at(10),
        |k, kind| {
            let base = 0.14 - 0.04 * (k - 24_000.0) / 1000.0;
            if kind == OptionKind::Put {
                base + 0.02
            } else {
                base
            }
        },
    );
    let mut out = Vec::new();
    e.advance(at(SEC), &mut out);
    let c = chain_of(&out, monthly());
    let skew = c.skew_25d.expect("25-delta strikes are bracketed");
    // 25Δ put sits below the money (higher IV), 25Δ call above (lower IV), plus 2 points.
    assert!(skew > 0.02, "{skew}");
    assert!(c.net_gex.is_some());
    let gex_pe = strikes_out(&out)
        .into_iter()
        .find(|s| s.option_type == OptionSide::PE)
        .and_then(|s| s.gex)
        .expect("put gex");
    assert!(gex_pe < 0.0);
}
