//! Undiscounted Black on a forward: the one kernel both conventions are built from.
//!
//! Everything here is in "forward space": `F`, `K`, `T`, `σ`, undiscounted prices. The
//! conventions in the parent module turn spot into forward and apply the discount factor.

use implied_vol::solver::Jaeckel;
use implied_vol::{DefaultSpecialFn, ImpliedBlackVolatilityNormalised, PriceBlackScholes};

use super::normal::{norm_cdf, norm_pdf};
use super::{NoIv, OptionKind};

/// Undiscounted Black price. Callers guarantee `f, k > 0` finite, `sigma ≥ 0`, `t ≥ 0`.
///
/// Uses Jäckel's normalised Black from `implied-vol`, which keeps full relative precision for
/// deep out-of-the-money options and adds the intrinsic value exactly for in-the-money ones
/// (the textbook `F·N(d1) − K·N(d2)` cancels catastrophically in both places).
#[inline]
pub(crate) fn price(kind: OptionKind, f: f64, k: f64, t: f64, sigma: f64) -> f64 {
    PriceBlackScholes::builder()
        .forward(f)
        .strike(k)
        .volatility(sigma)
        .expiry(t)
        .is_call(kind.is_call())
        .build_unchecked()
        .calculate::<DefaultSpecialFn>()
}

/// `ln(F/K)`, computed as `implied-vol` does internally (`ln_1p` of the relative gap near
/// the money, so neighbouring strikes stay distinguishable; no underflow far from it).
/// Callers guarantee `f, k > 0` finite.
#[inline]
pub(crate) fn log_moneyness(f: f64, k: f64) -> f64 {
    let (smaller, larger) = if f < k { (f, k) } else { (k, f) };
    let negative_abs = if smaller >= 0.5 * larger {
        -((larger - smaller) / smaller).ln_1p()
    } else {
        let ratio = smaller / larger;
        if ratio >= f64::MIN_POSITIVE {
            ratio.ln()
        } else {
            smaller.ln() - larger.ln()
        }
    };
    if f < k {
        negative_abs
    } else {
        -negative_abs
    }
}

/// The moneyness and total volatility of one option: what the Greeks are computed from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    /// `ln(F/K)`.
    pub x: f64,
    /// `√T`.
    pub sqrt_t: f64,
    /// Total volatility `σ·√T`.
    pub total_vol: f64,
    /// Annualised volatility `σ`.
    pub sigma: f64,
}

impl Point {
    /// The point for a known volatility. Callers guarantee `f, k, t, sigma > 0` finite.
    #[inline]
    pub(crate) fn new(f: f64, k: f64, t: f64, sigma: f64) -> Self {
        let sqrt_t = t.sqrt();
        Self {
            x: log_moneyness(f, k),
            sqrt_t,
            total_vol: sigma * sqrt_t,
            sigma,
        }
    }
}

/// Partial derivatives of the undiscounted Black price, per unit (not per point).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sensitivities {
    /// ∂B/∂F.
    pub dfwd: f64,
    /// ∂²B/∂F².
    pub dfwd2: f64,
    /// ∂B/∂σ.
    pub dvol: f64,
    /// ∂B/∂T with F fixed (the "diffusion" part of theta, always ≥ 0).
    pub dtime: f64,
}

/// First and second derivatives (not the price: callers either have it already, as the
/// market price an IV was solved from, or get it from [`price`]).
#[inline]
pub(crate) fn sensitivities(kind: OptionKind, f: f64, p: Point) -> Sensitivities {
    let s = p.total_vol;
    let d1 = p.x / s + 0.5 * s;
    // N(d2) is not needed: wherever a Greek carries K·N(d2) it is F·∂B/∂F − B (Euler's
    // theorem for the degree-1 homogeneous B(F, K)), and the caller has B. That saves one
    // erfc per evaluation on the hot path.
    let pdf = norm_pdf(d1);
    let dfwd = match kind {
        OptionKind::Call => norm_cdf(d1),
        OptionKind::Put => -norm_cdf(-d1),
    };
    Sensitivities {
        dfwd,
        dfwd2: pdf / (f * s),
        dvol: f * pdf * p.sqrt_t,
        dtime: f * pdf * p.sigma / (2.0 * p.sqrt_t),
    }
}

/// Black implied volatility of an undiscounted price, with the point it was solved at.
///
/// `min_time_value` (undiscounted, ≥ 0) is how far above intrinsic a price must be to carry
/// volatility information; at or below it the answer is [`NoIv::BelowIntrinsic`].
/// Callers guarantee `f, k, t > 0` finite and `price > 0` finite.
///
/// This is `implied-vol`'s `ImpliedBlackVolatility::calculate_with::<Jaeckel>()` unrolled
/// onto its normalised entry point (same log-moneyness, same normalised time value, same
/// bounds), so that `ln(F/K)` and `σ√T` are computed once and shared with the Greeks.
#[inline]
pub(crate) fn implied_vol(
    kind: OptionKind,
    f: f64,
    k: f64,
    t: f64,
    price: f64,
    min_time_value: f64,
) -> Result<Point, NoIv> {
    let (intrinsic, cap) = match kind {
        OptionKind::Call => ((f - k).max(0.0), f),
        OptionKind::Put => ((k - f).max(0.0), k),
    };
    if price >= cap {
        return Err(NoIv::AboveMaximum);
    }
    let time_value = if intrinsic > 0.0 {
        price - intrinsic
    } else {
        price
    };
    if time_value <= min_time_value {
        return Err(NoIv::BelowIntrinsic);
    }
    let beta = time_value / (f.sqrt() * k.sqrt());
    if beta <= f64::MIN_POSITIVE {
        // The time value is too small to be told apart from zero in normalised units.
        return Err(NoIv::BelowIntrinsic);
    }
    let x = if f == k { 0.0 } else { log_moneyness(f, k) };
    // Jäckel's own Let's Be Rational path (not the crate's default Hybrid, which switches to
    // FlashIV for some low prices): it is the algorithm py_vollib wraps, so the contract
    // test compares like with like, and it reaches full double precision in ≤ 2 iterations.
    // The normalised price depends on |x| only, so calls and puts share it.
    let solved = ImpliedBlackVolatilityNormalised::builder()
        .log_moneyness(x)
        .normalised_price(beta)
        .build_unchecked()
        .calculate_with::<Jaeckel>();
    match solved {
        Some(total_vol) if total_vol.is_finite() && total_vol > 0.0 => {
            let sqrt_t = t.sqrt();
            Ok(Point {
                x,
                sqrt_t,
                total_vol,
                sigma: total_vol / sqrt_t,
            })
        }
        Some(0.0) => Err(NoIv::BelowIntrinsic),
        // Infinite volatility, or above the normalised maximum.
        _ => Err(NoIv::AboveMaximum),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use implied_vol::ImpliedBlackVolatility;

    /// The unrolled solver gives bit-for-bit the crate's own full-API answer.
    #[test]
    fn unrolled_solver_matches_crate_api() {
        let mut n = 0;
        for kind in [OptionKind::Call, OptionKind::Put] {
            for &f in &[24_480.0, 100.0, 1.0] {
                for i in 0..=30 {
                    let k = f * (0.5 + 0.035 * f64::from(i));
                    for &t in &[1.0 / 365.0, 0.1, 2.0] {
                        for &sigma in &[0.03, 0.15, 0.6, 3.0] {
                            let p = price(kind, f, k, t, sigma);
                            let ours = implied_vol(kind, f, k, t, p, 0.0).map(|pt| pt.sigma);
                            let theirs = ImpliedBlackVolatility::builder()
                                .option_price(p)
                                .forward(f)
                                .strike(k)
                                .expiry(t)
                                .is_call(kind.is_call())
                                .build_unchecked()
                                .calculate_with::<Jaeckel>();
                            match (ours, theirs) {
                                (Ok(a), Some(b)) => {
                                    assert_eq!(a, b, "{kind:?} {f} {k} {t} {sigma}")
                                }
                                (Err(NoIv::BelowIntrinsic), Some(b)) => assert_eq!(b, 0.0),
                                (a, b) => panic!("{kind:?} {f} {k} {t} {sigma}: {a:?} vs {b:?}"),
                            }
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, 2 * 3 * 31 * 3 * 4);
    }

    #[test]
    fn log_moneyness_is_signed_and_accurate() {
        assert_eq!(log_moneyness(100.0, 100.0), 0.0);
        assert!((log_moneyness(110.0, 100.0) - 1.1_f64.ln()).abs() < 1e-16);
        assert!((log_moneyness(100.0, 110.0) + 1.1_f64.ln()).abs() < 1e-16);
        assert!((log_moneyness(300.0, 100.0) - 3.0_f64.ln()).abs() < 1e-15);
        assert!((log_moneyness(1.0, 1e300) + 300.0 * 10.0_f64.ln()).abs() < 1e-12);
        // Adjacent doubles near the money stay distinguishable.
        let next = f64::from_bits(100.0_f64.to_bits() + 1);
        assert!(log_moneyness(next, 100.0) > 0.0);
    }
}
