//! Undiscounted Black on a forward: the one kernel both conventions are built from.
//!
//! Everything here is in "forward space": `F`, `K`, `T`, `σ`, undiscounted prices. The
//! conventions in the parent module turn spot into forward and apply the discount factor.

use implied_vol::solver::Jaeckel;
use implied_vol::{DefaultSpecialFn, ImpliedBlackVolatility, PriceBlackScholes};

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

/// Partial derivatives of the undiscounted Black price, per unit (not per point).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sensitivities {
    /// Undiscounted price.
    pub price: f64,
    /// ∂B/∂F.
    pub dfwd: f64,
    /// ∂²B/∂F².
    pub dfwd2: f64,
    /// ∂B/∂σ.
    pub dvol: f64,
    /// ∂B/∂T with F fixed (the "diffusion" part of theta, always ≥ 0).
    pub dtime: f64,
    /// `N(d2)` for calls, `−N(−d2)` for puts: `−∂B/∂K`, which rho and spot theta need.
    pub signed_nd2: f64,
}

/// Price and first/second derivatives. Callers guarantee `f, k, t, sigma > 0` finite.
#[inline]
pub(crate) fn sensitivities(kind: OptionKind, f: f64, k: f64, t: f64, sigma: f64) -> Sensitivities {
    let sqrt_t = t.sqrt();
    let s = sigma * sqrt_t;
    let d1 = (f / k).ln() / s + 0.5 * s;
    let d2 = d1 - s;
    let pdf = norm_pdf(d1);
    let (dfwd, signed_nd2) = match kind {
        OptionKind::Call => (norm_cdf(d1), norm_cdf(d2)),
        OptionKind::Put => (-norm_cdf(-d1), -norm_cdf(-d2)),
    };
    Sensitivities {
        price: price(kind, f, k, t, sigma),
        dfwd,
        dfwd2: pdf / (f * s),
        dvol: f * pdf * sqrt_t,
        dtime: f * pdf * sigma / (2.0 * sqrt_t),
        signed_nd2,
    }
}

/// Black implied volatility of an undiscounted price.
///
/// `min_time_value` (undiscounted, ≥ 0) is how far above intrinsic a price must be to carry
/// volatility information; at or below it the answer is [`NoIv::BelowIntrinsic`].
/// Callers guarantee `f, k, t > 0` finite and `price > 0` finite.
#[inline]
pub(crate) fn implied_vol(
    kind: OptionKind,
    f: f64,
    k: f64,
    t: f64,
    price: f64,
    min_time_value: f64,
) -> Result<f64, NoIv> {
    let (intrinsic, cap) = match kind {
        OptionKind::Call => ((f - k).max(0.0), f),
        OptionKind::Put => ((k - f).max(0.0), k),
    };
    if price >= cap {
        return Err(NoIv::AboveMaximum);
    }
    if price - intrinsic <= min_time_value {
        return Err(NoIv::BelowIntrinsic);
    }
    // Jäckel's own Let's Be Rational path (not the crate's default Hybrid, which switches to
    // FlashIV for some low prices): it is the algorithm py_vollib wraps, so the contract
    // test compares like with like, and it reaches full double precision in ≤ 2 iterations.
    let solved = ImpliedBlackVolatility::builder()
        .option_price(price)
        .forward(f)
        .strike(k)
        .expiry(t)
        .is_call(kind.is_call())
        .build_unchecked()
        .calculate_with::<Jaeckel>();
    match solved {
        Some(sigma) if sigma.is_finite() && sigma > 0.0 => Ok(sigma),
        // The time value is too small to be told apart from zero in normalised units.
        Some(sigma) if sigma == 0.0 => Err(NoIv::BelowIntrinsic),
        // Infinite volatility, or the crate's rounded-cap rejection.
        _ => Err(NoIv::AboveMaximum),
    }
}
