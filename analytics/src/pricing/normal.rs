//! The standard normal distribution, to double precision.
//!
//! The CDF is the one the `implied-vol` crate uses inside Let's Be Rational (W. J. Cody's
//! rational `erfc`, with Jäckel's asymptotic expansion below −10), so Greeks and implied
//! volatilities rest on the same special function. Both are accurate to a few ulps in
//! relative terms over the whole real line, including the far tails where `1 − erf` would
//! cancel.

use implied_vol::{DefaultSpecialFn, SpecialFn};

/// `1 / sqrt(2π)`.
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Standard normal cumulative distribution function `N(x)`.
///
/// Exists so that Greeks (delta, rho, theta) use a CDF that keeps full relative precision in
/// both tails; `0.5 * (1 + erf(x/√2))` would return 0 long before `N(x)` underflows.
#[inline]
#[must_use]
pub fn norm_cdf(x: f64) -> f64 {
    <DefaultSpecialFn as SpecialFn>::norm_cdf(x)
}

/// Standard normal probability density `φ(x) = e^{−x²/2} / √(2π)`.
///
/// Exists for gamma, vega and theta, which all carry `φ(d1)`.
#[inline]
#[must_use]
pub fn norm_pdf(x: f64) -> f64 {
    FRAC_1_SQRT_2PI * (-0.5 * x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdf_reference_values() {
        // Values from a 40-digit mpmath evaluation of Φ.
        let cases = [
            (0.0, 0.5),
            (1.0, 0.841_344_746_068_542_9),
            (-1.0, 0.158_655_253_931_457_05),
            (1.96, 0.975_002_104_851_780_1),
            (-5.0, 2.866_515_718_791_939e-7),
            (-10.0, 7.619_853_024_160_527e-24),
            (-8.0, 6.220_960_574_271_784e-16),
            (-20.0, 2.753_624_118_606_233_7e-89),
            (-30.0, 4.906_713_927_148_187e-198),
        ];
        for (x, want) in cases {
            let got = norm_cdf(x);
            let rel = ((got - want) / want).abs();
            assert!(rel < 1e-14, "N({x}) = {got:e}, want {want:e} (rel {rel:e})");
        }
        // Symmetry N(x) + N(−x) = 1 in the body.
        for i in -60..=60 {
            let x = f64::from(i) * 0.1;
            assert!((norm_cdf(x) + norm_cdf(-x) - 1.0).abs() < 2e-16, "x = {x}");
        }
    }

    #[test]
    fn pdf_reference_values() {
        assert!((norm_pdf(0.0) - 0.398_942_280_401_432_7).abs() < 1e-17);
        let want = 0.241_970_724_519_143_37;
        assert!(((norm_pdf(1.0) - want) / want).abs() < 1e-15);
        assert_eq!(norm_pdf(3.0), norm_pdf(-3.0));
    }
}
