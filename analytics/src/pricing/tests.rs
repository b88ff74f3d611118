//! Unit tests for `pricing`: textbook reference values, identities and the round trip.

use super::*;

const CONVENTIONS: [Convention; 4] = [
    Convention::BLACK76,
    Convention::Black76 { rate: 0.065 },
    Convention::NSE,
    Convention::BlackScholesSpot { rate: 0.0 },
];
const KINDS: [OptionKind; 2] = [OptionKind::Call, OptionKind::Put];

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:.15e}, want {want:.15e} (|diff| {:.3e} > {tol:e})",
        (got - want).abs()
    );
}

/// Hull, Options Futures and Other Derivatives, Examples 17.1–17.7 (the values py_vollib's
/// doctests print): S=49, K=50, r=5%, T=0.3846, σ=20%, call. Tolerance: half a unit of the
/// last printed digit.
#[test]
fn hull_black_scholes_greeks() {
    let g = Convention::BlackScholesSpot { rate: 0.05 }
        .greeks(OptionKind::Call, 49.0, 50.0, 0.3846, 0.2)
        .expect("greeks");
    close(g.delta, 0.521_601_633_972, 5e-13, "delta");
    close(g.gamma, 0.065_545_377_252_5, 5e-14, "gamma");
    close(g.theta * 365.0, -4.305_389_964_55, 5e-12, "annual theta");
    close(g.vega, 0.121_052_427_542, 5e-13, "vega per 1%");
    close(g.rho, 0.089_065_740_988, 5e-13, "rho per 1%");
    // The put's annual theta from py_vollib's doctest.
    let p = Convention::BlackScholesSpot { rate: 0.05 }
        .greeks(OptionKind::Put, 49.0, 50.0, 0.3846, 0.2)
        .expect("greeks");
    close(p.theta * 365.0, -1.853_005_672_2, 5e-11, "put annual theta");
    close(p.delta, g.delta - 1.0, 1e-15, "put delta");
    close(p.gamma, g.gamma, 1e-17, "put gamma");
    close(p.vega, g.vega, 1e-17, "put vega");
}

/// Hull Example 15.6: S=42, K=40, r=10%, σ=20%, T=0.5 → C = 4.7594, P = 0.8086.
#[test]
fn hull_black_scholes_prices() {
    let c = Convention::BlackScholesSpot { rate: 0.1 };
    let call = c
        .price(OptionKind::Call, 42.0, 40.0, 0.5, 0.2)
        .expect("call");
    let put = c.price(OptionKind::Put, 42.0, 40.0, 0.5, 0.2).expect("put");
    close(call, 4.7594, 5e-5, "call");
    close(put, 0.8086, 5e-5, "put");
    // And py_vollib's full-precision figures.
    close(call, 4.759_422_392_871_532, 1e-14, "call (vollib)");
    close(put, 0.808_599_372_900_095, 1e-14, "put (vollib)");
    // IV round trip on the textbook case.
    close(
        c.implied_vol(OptionKind::Call, 42.0, 40.0, 0.5, call)
            .expect("iv"),
        0.2,
        1e-15,
        "iv",
    );
}

/// Jäckel's reference: undiscounted Black price 20, F=100, K=90, T=30, call.
#[test]
fn black_reference_implied_vol() {
    let iv = Convention::BLACK76
        .implied_vol(OptionKind::Call, 100.0, 90.0, 30.0, 20.0)
        .expect("iv");
    close(iv, 0.070_117_018_014_820_94, 3e-17, "sigma");
}

#[test]
fn nse_convention_is_discounted_black_on_the_carried_forward() {
    let (s, k, t, sigma) = (24_480.0, 24_500.0, 9.0 / 365.0, 0.13);
    let r = Convention::NSE_RATE;
    let f = s * (r * t).exp();
    for kind in KINDS {
        let nse = Convention::NSE.price(kind, s, k, t, sigma).expect("nse");
        let b76 = Convention::Black76 { rate: r }
            .price(kind, f, k, t, sigma)
            .expect("b76");
        close(nse, b76, 1e-10, "price");
        let undiscounted = Convention::BLACK76
            .price(kind, f, k, t, sigma)
            .expect("b76 r=0");
        close(nse, (-r * t).exp() * undiscounted, 1e-10, "discounting");
        assert_eq!(Convention::NSE.forward(s, t), s / (-r * t).exp());
    }
}

#[test]
fn put_call_parity() {
    for conv in CONVENTIONS {
        for &t in &[1.0 / 365.0, 0.1, 1.0] {
            for &m in &[0.7, 0.95, 1.0, 1.05, 1.3] {
                for &sigma in &[0.05, 0.2, 0.8] {
                    let u = 24_500.0;
                    let k = (u * m / 50.0_f64).round() * 50.0;
                    let c = conv.price(OptionKind::Call, u, k, t, sigma).expect("call");
                    let p = conv.price(OptionKind::Put, u, k, t, sigma).expect("put");
                    let d = (-conv.rate() * t).exp();
                    let f = conv.forward(u, t);
                    close(
                        c - p,
                        d * (f - k),
                        1e-11 * u,
                        &format!("{conv:?} t={t} K={k} σ={sigma}"),
                    );
                    // The parity forward recovers F from these prices.
                    let q = ParityQuote {
                        strike: k,
                        call: c,
                        put: p,
                    };
                    if c > 0.0 && p > 0.0 {
                        let pf = parity_forward(&[q], conv.rate(), t).expect("parity");
                        close(pf.forward, f, 1e-10 * u, "parity forward");
                    }
                }
            }
        }
    }
}

/// price → IV → price over a grid spanning deep ITM to deep OTM, 1 day to 2 years,
/// σ from 1% to 200%, both conventions. σ must come back to near machine precision
/// wherever the price carries the information (vega not negligible against the price's own
/// rounding); where the time value has underflowed to nothing the answer must be
/// `BelowIntrinsic`, never a wrong number.
#[test]
fn iv_round_trip_grid() {
    let mut checked = 0;
    let mut no_time_value = 0;
    for conv in CONVENTIONS {
        for kind in KINDS {
            for &days in &[1.0, 3.0, 7.0, 30.0, 90.0, 365.0, 730.0] {
                let t = days / 365.0;
                for i in 0..=24 {
                    let k = 24_500.0 * (0.7 + 0.025 * f64::from(i));
                    for &sigma in &[0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 2.0] {
                        let u = 24_500.0;
                        let price = conv.price(kind, u, k, t, sigma).expect("price");
                        let d = (-conv.rate() * t).exp();
                        let f = conv.forward(u, t);
                        let intrinsic = d * match kind {
                            OptionKind::Call => (f - k).max(0.0),
                            OptionKind::Put => (k - f).max(0.0),
                        };
                        let ctx =
                            format!("{conv:?} {kind:?} T={days}d K={k} σ={sigma} price={price:e}");
                        match conv.implied_vol(kind, u, k, t, price) {
                            Ok(iv) => {
                                let g = conv.greeks(kind, u, k, t, sigma).expect("greeks");
                                let vega = g.vega * 100.0;
                                // Price accuracy: the round trip reproduces the price to a
                                // few ulps of the price itself plus a few ulps of σ (in the
                                // far wings a 1-ulp change of σ moves the price by many ulps).
                                let back = conv.price(kind, u, k, t, iv).expect("price back");
                                let tol = 2e-15 * price.max(intrinsic)
                                    + 4.0 * f64::EPSILON * vega * sigma;
                                close(back, price, tol + 1e-300, &ctx);
                                // Vol accuracy, scaled by how much the price pins σ down.
                                let attainable = 4.0 * f64::EPSILON * price / vega;
                                if attainable < 1e-10 {
                                    close(iv, sigma, 1e-12 + 4.0 * attainable, &ctx);
                                    checked += 1;
                                }
                            }
                            Err(NoIv::BelowIntrinsic) => {
                                // Time value lost in the price's rounding, or subnormal.
                                let tv = price - intrinsic;
                                assert!(
                                    tv <= 1e-12 * price || tv < 1e-290,
                                    "{ctx}: BelowIntrinsic with time value {:e}",
                                    price - intrinsic
                                );
                                no_time_value += 1;
                            }
                            Err(e) if price == 0.0 => assert_eq!(e, NoIv::InvalidInput, "{ctx}"),
                            Err(e) => panic!("{ctx}: unexpected {e}"),
                        }
                    }
                }
            }
        }
    }
    println!("round trip: σ checked on {checked} cases, {no_time_value} without time value");
    assert!(checked > 4_000, "only {checked} well-conditioned cases");
    assert!(
        no_time_value < checked / 4,
        "{no_time_value} cases without time value"
    );
}

#[test]
fn greeks_match_finite_differences() {
    let cases = [
        (Convention::BLACK76, 24_500.0, 24_300.0, 7.0 / 365.0, 0.14),
        (
            Convention::Black76 { rate: 0.07 },
            24_500.0,
            25_000.0,
            0.25,
            0.18,
        ),
        (Convention::NSE, 24_480.0, 24_500.0, 30.0 / 365.0, 0.12),
        (Convention::NSE, 52_000.0, 50_000.0, 2.0 / 365.0, 0.2),
    ];
    for (conv, u, k, t, sigma) in cases {
        for kind in KINDS {
            let g = conv.greeks(kind, u, k, t, sigma).expect("greeks");
            let p = |u: f64, t: f64, sigma: f64, conv: Convention| {
                conv.price(kind, u, k, t, sigma).expect("price")
            };
            let ctx = format!("{conv:?} {kind:?} K={k}");
            close(g.price, p(u, t, sigma, conv), 1e-9, &ctx);
            let h = u * 1e-5;
            let delta = (p(u + h, t, sigma, conv) - p(u - h, t, sigma, conv)) / (2.0 * h);
            close(g.delta, delta, 1e-7, &format!("{ctx} delta"));
            let gamma = (p(u + h, t, sigma, conv) - 2.0 * p(u, t, sigma, conv)
                + p(u - h, t, sigma, conv))
                / (h * h);
            close(
                g.gamma,
                gamma,
                1e-6 * g.gamma.abs() + 1e-9,
                &format!("{ctx} gamma"),
            );
            let dv = 1e-5;
            let vega = (p(u, t, sigma + dv, conv) - p(u, t, sigma - dv, conv)) / (2.0 * dv) / 100.0;
            close(g.vega, vega, 1e-6 * g.vega.abs(), &format!("{ctx} vega"));
            let dt = t * 1e-5;
            let theta =
                -(p(u, t + dt, sigma, conv) - p(u, t - dt, sigma, conv)) / (2.0 * dt) / 365.0;
            close(
                g.theta,
                theta,
                1e-6 * g.theta.abs(),
                &format!("{ctx} theta"),
            );
            let dr = 1e-6;
            let bump = |c: Convention, by: f64| match c {
                Convention::Black76 { rate } => Convention::Black76 { rate: rate + by },
                Convention::BlackScholesSpot { rate } => {
                    Convention::BlackScholesSpot { rate: rate + by }
                }
            };
            let rho = (p(u, t, sigma, bump(conv, dr)) - p(u, t, sigma, bump(conv, -dr)))
                / (2.0 * dr)
                / 100.0;
            close(g.rho, rho, 1e-6 * g.rho.abs() + 1e-9, &format!("{ctx} rho"));
        }
    }
}

#[test]
fn iv_and_greeks_is_iv_then_greeks() {
    let pricer = Pricer::new(Convention::NSE);
    let (s, k, t) = (24_480.0, 24_600.0, 5.0 / 365.0);
    let price = 61.35;
    let both = pricer
        .iv_and_greeks(OptionKind::Call, s, k, t, price)
        .expect("iv+greeks");
    let iv = pricer
        .implied_vol(OptionKind::Call, s, k, t, price)
        .expect("iv");
    assert_eq!(both.iv, iv);
    let g = Convention::NSE
        .greeks(OptionKind::Call, s, k, t, iv)
        .expect("greeks");
    // Same formulas; only the price differs (market price vs model price at the IV).
    assert_eq!(both.greeks.price, price);
    close(g.price, price, 1e-12, "model price at IV");
    assert_eq!(Greeks { price, ..g }, both.greeks);
}

#[test]
fn no_iv_outcomes() {
    let c = Convention::BLACK76;
    let (f, t) = (24_500.0, 7.0 / 365.0);
    use OptionKind::{Call, Put};
    // Below / at intrinsic.
    assert_eq!(
        c.implied_vol(Call, f, 24_000.0, t, 499.0),
        Err(NoIv::BelowIntrinsic)
    );
    assert_eq!(
        c.implied_vol(Call, f, 24_000.0, t, 500.0),
        Err(NoIv::BelowIntrinsic)
    );
    assert_eq!(
        c.implied_vol(Put, f, 25_000.0, t, 500.0),
        Err(NoIv::BelowIntrinsic)
    );
    assert!(c.implied_vol(Call, f, 24_000.0, t, 500.05).is_ok());
    // Above the maximum: a call worth the whole forward, a put worth the whole strike.
    assert_eq!(
        c.implied_vol(Call, f, 24_000.0, t, f),
        Err(NoIv::AboveMaximum)
    );
    assert_eq!(
        c.implied_vol(Call, f, 24_000.0, t, f + 1.0),
        Err(NoIv::AboveMaximum)
    );
    assert_eq!(
        c.implied_vol(Put, f, 25_000.0, t, 25_000.0),
        Err(NoIv::AboveMaximum)
    );
    // Discounted bound for BS on spot: a call cannot exceed spot.
    let nse = Convention::NSE;
    assert_eq!(
        nse.implied_vol(Call, f, 24_000.0, 0.5, f),
        Err(NoIv::AboveMaximum)
    );
    let put_cap = 25_000.0 * (-0.1_f64 * 0.5).exp();
    assert_eq!(
        nse.implied_vol(Put, f, 25_000.0, 0.5, put_cap + 0.01),
        Err(NoIv::AboveMaximum)
    );
    // Expired.
    assert_eq!(
        c.implied_vol(Call, f, 24_500.0, 0.0, 10.0),
        Err(NoIv::Expired)
    );
    assert_eq!(
        c.implied_vol(Call, f, 24_500.0, -1e-6, 10.0),
        Err(NoIv::Expired)
    );
    // Invalid inputs, never NaN.
    for (u, k, t, p) in [
        (f64::NAN, 24_500.0, t, 10.0),
        (f, f64::INFINITY, t, 10.0),
        (f, 24_500.0, f64::NAN, 10.0),
        (f, 24_500.0, t, f64::NAN),
        (f, 24_500.0, t, 0.0),
        (f, 24_500.0, t, -1.0),
        (0.0, 24_500.0, t, 10.0),
        (f, -50.0, t, 10.0),
    ] {
        assert_eq!(
            c.implied_vol(Call, u, k, t, p),
            Err(NoIv::InvalidInput),
            "{u} {k} {t} {p}"
        );
    }
    assert_eq!(
        Convention::Black76 { rate: f64::NAN }.implied_vol(Call, f, 24_500.0, t, 10.0),
        Err(NoIv::InvalidInput)
    );
    // Price and Greeks refuse invalid inputs too.
    assert_eq!(c.price(Call, f, 24_500.0, t, -0.1), None);
    assert_eq!(c.price(Call, f64::NAN, 24_500.0, t, 0.1), None);
    assert_eq!(c.greeks(Call, f, 24_500.0, 0.0, 0.1), None);
    assert_eq!(c.greeks(Call, f, 24_500.0, t, 0.0), None);
    // At expiry the price is intrinsic.
    assert_eq!(c.price(Call, f, 24_000.0, 0.0, 0.2), Some(500.0));
    assert_eq!(nse.price(Put, f, 25_000.0, 0.0, 0.2), Some(500.0));
}

#[test]
fn pricer_tick_floor_and_quotes() {
    let pricer = Pricer::default();
    assert_eq!(pricer.convention, Convention::BLACK76);
    let (f, t) = (24_500.0, 7.0 / 365.0);
    use OptionKind::{Call, Put};
    // Time value of 0.02 (< half a tick) is indistinguishable from intrinsic...
    assert_eq!(
        pricer.implied_vol(Call, f, 24_000.0, t, 500.02),
        Err(NoIv::BelowIntrinsic)
    );
    assert_eq!(
        pricer.implied_vol(Put, f, 26_000.0, t, 1_500.02),
        Err(NoIv::BelowIntrinsic)
    );
    // ...one tick is not. The exact Convention IV takes any positive time value.
    assert!(pricer.implied_vol(Call, f, 24_000.0, t, 500.05).is_ok());
    assert!(Convention::BLACK76
        .implied_vol(Call, f, 24_000.0, t, 500.02)
        .is_ok());
    // Far OTM options quoted at one tick still have an IV.
    assert!(pricer.implied_vol(Call, f, 26_000.0, t, 0.05).is_ok());
    // A floor of zero or garbage means "exact".
    let exact = Pricer {
        min_time_value: f64::NAN,
        ..pricer
    };
    assert!(exact.implied_vol(Call, f, 24_000.0, t, 500.02).is_ok());

    // Quotes.
    assert_eq!(
        Quote {
            bid: 10.0,
            ask: 10.5
        }
        .mid(),
        Ok(10.25)
    );
    assert_eq!(
        Quote {
            bid: 10.0,
            ask: 10.0
        }
        .mid(),
        Ok(10.0)
    );
    for (bid, ask) in [
        (0.0, 10.5),
        (10.0, 0.0),
        (f64::NAN, 10.5),
        (10.0, f64::INFINITY),
        (-1.0, 2.0),
        (11.0, 10.5),
    ] {
        assert_eq!(
            Quote { bid, ask }.mid(),
            Err(NoIv::NoTwoSidedMarket),
            "{bid}/{ask}"
        );
    }
    // The usual call chain: mid, then IV + Greeks.
    let quote = Quote {
        bid: 98.35,
        ask: 99.1,
    };
    let r = quote
        .mid()
        .and_then(|m| pricer.iv_and_greeks(Call, f, 24_600.0, t, m))
        .expect("iv");
    assert!(r.iv > 0.05 && r.iv < 0.5, "{r:?}");
    assert!(r.greeks.delta > 0.0 && r.greeks.delta < 0.5);
    assert!(r.greeks.theta < 0.0);
    let none = Quote {
        bid: 0.0,
        ask: 99.1,
    }
    .mid()
    .and_then(|m| pricer.iv_and_greeks(Call, f, 24_600.0, t, m));
    assert_eq!(none, Err(NoIv::NoTwoSidedMarket));
}

#[test]
fn greeks_signs_and_symmetries() {
    for conv in CONVENTIONS {
        let (u, k, t, sigma) = (24_500.0, 24_650.0, 20.0 / 365.0, 0.15);
        let c = conv.greeks(OptionKind::Call, u, k, t, sigma).expect("call");
        let p = conv.greeks(OptionKind::Put, u, k, t, sigma).expect("put");
        let d = (-conv.rate() * t).exp();
        // Delta parity: Δc − Δp = e^{−rT} (Black-76 on F) or 1 (BS on S).
        let want = match conv {
            Convention::Black76 { .. } => d,
            Convention::BlackScholesSpot { .. } => 1.0,
        };
        close(
            c.delta - p.delta,
            want,
            1e-15,
            &format!("{conv:?} delta parity"),
        );
        close(c.gamma, p.gamma, 1e-18, "gamma");
        close(c.vega, p.vega, 1e-13, "vega");
        assert!(c.delta > 0.0 && p.delta < 0.0);
        assert!(c.theta < 0.0);
    }
}
