//! The synthetic forward implied by put–call parity.

/// Call and put prices at one strike of one expiry: an input to [`parity_forward`].
///
/// Exists so a chain can hand over its strikes without the pricer knowing the chain type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParityQuote {
    /// Strike, in rupees.
    pub strike: f64,
    /// Call price (mid or LTP, the caller's choice), discounted as quoted.
    pub call: f64,
    /// Put price at the same strike, same basis as `call`.
    pub put: f64,
}

/// A synthetic forward and the strike it was read at.
///
/// Exists so callers can log or display which strike anchored the forward.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParityForward {
    /// `F = K + e^{rT}(C − P)`.
    pub forward: f64,
    /// The strike with the smallest `|C − P|`, where parity is least sensitive to stale or
    /// wide quotes.
    pub strike: f64,
}

/// The forward for one expiry from put–call parity: `F = K + e^{rT}(C − P)` at the strike
/// where `|C − P|` is smallest (the broker convention for weeklies, which have no future).
///
/// Quotes with a non-finite or non-positive strike or price, or a non-finite `C − P`, are
/// ignored. Ties go to the lower strike, so the result does not depend on input order.
/// Returns `None` if no usable quote remains or `rate`/`t` is not finite.
///
/// Exists because Black-76 needs a forward and weekly NIFTY expiries have no futures
/// contract to read it from.
#[must_use]
pub fn parity_forward(quotes: &[ParityQuote], rate: f64, t: f64) -> Option<ParityForward> {
    if !rate.is_finite() || !t.is_finite() {
        return None;
    }
    let usable = |q: &&ParityQuote| {
        [q.strike, q.call, q.put]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    };
    let best = quotes.iter().filter(usable).min_by(|a, b| {
        (a.call - a.put)
            .abs()
            .total_cmp(&(b.call - b.put).abs())
            .then(a.strike.total_cmp(&b.strike))
    })?;
    let forward = best.strike + (rate * t).exp() * (best.call - best.put);
    forward.is_finite().then_some(ParityForward {
        forward,
        strike: best.strike,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(strike: f64, call: f64, put: f64) -> ParityQuote {
        ParityQuote { strike, call, put }
    }

    #[test]
    fn picks_min_abs_call_minus_put() {
        let chain = [
            q(24_400.0, 180.0, 70.0),  // |C−P| = 110
            q(24_450.0, 146.0, 86.0),  // 60
            q(24_500.0, 115.5, 104.0), // 11.5  <- smallest
            q(24_550.0, 88.0, 127.0),  // 39
            q(24_600.0, 65.0, 154.0),  // 89
        ];
        let pf = parity_forward(&chain, 0.0, 7.0 / 365.0).expect("forward");
        assert_eq!(pf.strike, 24_500.0);
        assert_eq!(pf.forward, 24_511.5);
        // Order does not matter.
        let mut rev = chain;
        rev.reverse();
        assert_eq!(parity_forward(&rev, 0.0, 7.0 / 365.0), Some(pf));
    }

    #[test]
    fn applies_carry() {
        let chain = [q(100.0, 6.0, 4.0), q(110.0, 2.0, 10.0)];
        let pf = parity_forward(&chain, 0.1, 0.5).expect("forward");
        assert_eq!(pf.strike, 100.0);
        assert!((pf.forward - (100.0 + (0.05_f64).exp() * 2.0)).abs() < 1e-12);
        // Consistent with Black–Scholes: F = S·e^{rT} from Hull 15.6 prices.
        let (s, k, r, t) = (42.0_f64, 40.0, 0.1, 0.5);
        let call = 4.759_422_392_871_532;
        let put = 0.808_599_372_900_095;
        let pf = parity_forward(&[q(k, call, put)], r, t).expect("forward");
        assert!((pf.forward - s * (r * t).exp()).abs() < 1e-12);
    }

    #[test]
    fn ties_go_to_lower_strike_and_bad_quotes_are_ignored() {
        let chain = [
            q(200.0, 10.0, 12.0),
            q(100.0, 12.0, 10.0),
            q(150.0, f64::NAN, 1.0),
            q(150.0, 0.0, 0.0),
            q(-5.0, 1.0, 1.0),
        ];
        let pf = parity_forward(&chain, 0.0, 0.1).expect("forward");
        assert_eq!(pf.strike, 100.0);
        assert_eq!(pf.forward, 102.0);
        assert_eq!(parity_forward(&[], 0.0, 0.1), None);
        assert_eq!(parity_forward(&chain[2..], 0.0, 0.1), None);
        assert_eq!(parity_forward(&chain, f64::NAN, 0.1), None);
    }
}
