//! Option pricing: implied volatility and Greeks for NSE index options.
//!
//! Pure functions: no I/O, no clock (the event time is an argument of
//! [`years_to_expiry`]), no allocation.
//!
//! # Conventions
//!
//! Two conventions are in use in the Indian market and they give different IVs for the same
//! premium, so the choice is explicit ([`Convention`]):
//!
//! * **Black-76 on the forward** ([`Convention::Black76`], rate 0 by default): what brokers
//!   (Sensibull/Kite, PhonePe) display. The forward is the matching future, or for weeklies
//!   the put–call-parity forward from [`parity_forward`].
//! * **Black–Scholes on spot with r = 10%** ([`Convention::BlackScholesSpot`],
//!   [`Convention::NSE`]): NSE's published IV. Forward = `S·e^{rT}`, so this is the
//!   discounted Black-76 price on that forward.
//!
//! Prices are premiums as quoted (discounted): `e^{−rT} × Black(F, K, T, σ)`.
//!
//! # Units
//!
//! `T` is a year fraction ([`years_to_expiry`], ACT/365 by default). Greeks follow the
//! display convention of brokers and py_vollib: theta per calendar day (annual / 365), vega
//! per 1 vol point and rho per 1 rate point (both / 100). Delta and gamma are with respect
//! to the convention's underlying (the forward for Black-76, spot for Black–Scholes).
//!
//! # Solver
//!
//! Implied volatility comes from Peter Jäckel's "Let's Be Rational" as ported by the
//! `implied-vol` crate (full double precision in at most two Householder steps). A price that
//! has no implied volatility is a typed [`NoIv`], never a NaN.

#![warn(missing_docs)]

mod black;
mod expiry;
mod forward;
mod normal;

#[cfg(test)]
mod tests;

pub use expiry::{expiry_instant_micros, minutes_to_expiry, years_to_expiry, DayCount};
pub use forward::{parity_forward, ParityForward, ParityQuote};
pub use normal::{norm_cdf, norm_pdf};

/// NSE tick size for index options, in rupees.
///
/// Exists as the default scale of [`Pricer::min_time_value`].
pub const NSE_TICK: f64 = 0.05;

/// Call or put.
///
/// Exists because every formula branches on it; a bool would be unreadable at call sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OptionKind {
    /// Right to buy (NSE `CE`).
    Call,
    /// Right to sell (NSE `PE`).
    Put,
}

impl OptionKind {
    /// `true` for a call: the flag the Black kernels take.
    #[must_use]
    pub const fn is_call(self) -> bool {
        matches!(self, Self::Call)
    }
}

/// Why a price has no implied volatility.
///
/// Exists so that "no IV" is a value callers must handle (skip the strike, show a dash,
/// count it) instead of a NaN that silently poisons averages, skews and surfaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum NoIv {
    /// The price is at or below the intrinsic value (for [`Pricer`], within
    /// [`Pricer::min_time_value`] of it): no time value, so any volatility ≥ 0 fits.
    #[error("price at or below intrinsic value")]
    BelowIntrinsic,
    /// The price is at or above the no-arbitrage maximum (discounted forward for a call,
    /// discounted strike for a put), or so close to it that the volatility is infinite.
    #[error("price at or above the no-arbitrage maximum")]
    AboveMaximum,
    /// The quote lacks a bid or an ask (zero, negative or non-finite), or is crossed.
    #[error("no two-sided market")]
    NoTwoSidedMarket,
    /// Time to expiry is zero or negative.
    #[error("option has expired")]
    Expired,
    /// A non-finite input, or a non-positive underlying, strike or price.
    #[error("invalid input")]
    InvalidInput,
}

/// The pricing model and its rate: which IV a premium maps to.
///
/// Exists because the two conventions used in India give different IVs and Greeks for the
/// same premium; every price, IV and Greek is computed under an explicit one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Convention {
    /// Black-76: the underlying argument is the **forward** `F`; price =
    /// `e^{−rT}·Black(F, K, T, σ)`. Brokers use `rate = 0` ([`Convention::BLACK76`]). Delta
    /// and gamma are with respect to `F`; rho holds `F` fixed (only discounting moves);
    /// theta holds `F` fixed.
    Black76 {
        /// Continuously compounded discount rate.
        rate: f64,
    },
    /// Black–Scholes on spot: the underlying argument is **spot** `S`, forward `S·e^{rT}`,
    /// price = `e^{−rT}·Black(S·e^{rT}, K, T, σ)`. NSE publishes IVs with `rate = 0.10`
    /// ([`Convention::NSE`]). Delta and gamma are with respect to `S`; theta and rho hold
    /// `S` fixed (the textbook Black–Scholes Greeks).
    BlackScholesSpot {
        /// Continuously compounded risk-free rate.
        rate: f64,
    },
}

impl Default for Convention {
    /// Black-76 with r = 0, the convention traders see in their broker's option chain.
    fn default() -> Self {
        Self::BLACK76
    }
}

/// Greeks and price of one option at one volatility, in display units.
///
/// Exists as the one output shape for both conventions, so downstream (GEX, skew, the chain
/// view) never needs to know which model produced it.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Greeks {
    /// Model premium (discounted), in rupees.
    pub price: f64,
    /// ∂price/∂underlying (forward for Black-76, spot for Black–Scholes).
    pub delta: f64,
    /// ∂²price/∂underlying², per rupee of underlying.
    pub gamma: f64,
    /// Price change per calendar day of passing time: −∂price/∂T / 365 (negative for a
    /// long option with r = 0). `T`'s day count does not change this scale.
    pub theta: f64,
    /// Price change per 1 vol point (σ + 0.01): ∂price/∂σ / 100.
    pub vega: f64,
    /// Price change per 1 rate point (r + 0.01): ∂price/∂r / 100.
    pub rho: f64,
}

/// An implied volatility together with the Greeks at that volatility.
///
/// Exists as the result of the hot path [`Pricer::iv_and_greeks`], run per option tick.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IvGreeks {
    /// Annualised implied volatility (0.15 = 15%).
    pub iv: f64,
    /// Greeks at `iv`.
    pub greeks: Greeks,
}

/// Forward-space view of one option under a convention: what the Black kernel needs.
#[derive(Clone, Copy, Debug)]
struct ForwardSpace {
    forward: f64,
    /// `e^{−rT}`.
    discount: f64,
}

impl Convention {
    /// NSE's rate for its published IVs: 10%, continuously compounded.
    pub const NSE_RATE: f64 = 0.10;
    /// Black-76 on the forward with r = 0: the brokers' convention.
    pub const BLACK76: Self = Self::Black76 { rate: 0.0 };
    /// Black–Scholes on spot with r = 10%: NSE's published-IV convention.
    pub const NSE: Self = Self::BlackScholesSpot {
        rate: Self::NSE_RATE,
    };

    /// The rate `r` of this convention.
    ///
    /// Exists for callers that need to discount or carry alongside the pricer
    /// (e.g. [`parity_forward`]).
    #[must_use]
    pub const fn rate(self) -> f64 {
        match self {
            Self::Black76 { rate } | Self::BlackScholesSpot { rate } => rate,
        }
    }

    /// The forward that `underlying` implies at `t`: itself for Black-76, `S·e^{rT}` for
    /// Black–Scholes on spot.
    ///
    /// Exists so the chain can pick its ATM strike from the same forward the pricer uses.
    #[must_use]
    pub fn forward(self, underlying: f64, t: f64) -> f64 {
        match self {
            Self::Black76 { .. } => underlying,
            Self::BlackScholesSpot { rate } => underlying / (-rate * t).exp(),
        }
    }

    /// Validates the inputs shared by pricing and inversion and maps them to forward space.
    fn forward_space(self, underlying: f64, strike: f64, t: f64) -> Result<ForwardSpace, NoIv> {
        let rate = self.rate();
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(underlying) || !positive(strike) || !t.is_finite() || !rate.is_finite() {
            return Err(NoIv::InvalidInput);
        }
        if t <= 0.0 {
            return Err(NoIv::Expired);
        }
        // Dividing by the deflator (rather than multiplying by e^{rT}) mirrors py_vollib.
        let discount = if rate == 0.0 { 1.0 } else { (-rate * t).exp() };
        let forward = match self {
            Self::Black76 { .. } => underlying,
            Self::BlackScholesSpot { .. } => underlying / discount,
        };
        if !positive(forward) || !positive(discount) {
            return Err(NoIv::InvalidInput);
        }
        Ok(ForwardSpace { forward, discount })
    }

    /// Model premium (discounted) at volatility `sigma`.
    ///
    /// `underlying` is the forward (Black-76) or spot (Black–Scholes); `t` in years. At
    /// `t = 0` or `sigma = 0` this is the discounted intrinsic value. Returns `None` for a
    /// non-finite input, a non-positive underlying or strike, or a negative `t` or `sigma`.
    ///
    /// Exists to build model prices (fair value, the round trip in tests, scenario P&L).
    #[must_use]
    pub fn price(
        self,
        kind: OptionKind,
        underlying: f64,
        strike: f64,
        t: f64,
        sigma: f64,
    ) -> Option<f64> {
        if !sigma.is_finite() || sigma < 0.0 {
            return None;
        }
        let fs = match self.forward_space(underlying, strike, t) {
            Ok(fs) => fs,
            // At expiry the premium is the intrinsic value.
            Err(NoIv::Expired) if t == 0.0 => ForwardSpace {
                forward: underlying,
                discount: 1.0,
            },
            Err(_) => return None,
        };
        let p = fs.discount * black::price(kind, fs.forward, strike, t, sigma);
        p.is_finite().then_some(p)
    }

    /// Greeks (and price) at volatility `sigma`, in display units (see [`Greeks`]).
    ///
    /// Returns `None` unless all inputs are finite and `underlying`, `strike`, `t`, `sigma`
    /// are positive (at `t = 0` or `σ = 0` gamma is a delta function).
    ///
    /// Exists for risk at a chosen volatility (e.g. a surface vol rather than the option's
    /// own IV).
    #[must_use]
    pub fn greeks(
        self,
        kind: OptionKind,
        underlying: f64,
        strike: f64,
        t: f64,
        sigma: f64,
    ) -> Option<Greeks> {
        if !sigma.is_finite() || sigma <= 0.0 {
            return None;
        }
        let fs = self.forward_space(underlying, strike, t).ok()?;
        let price = fs.discount * black::price(kind, fs.forward, strike, t, sigma);
        let point = black::Point::new(fs.forward, strike, t, sigma);
        let g = self.greeks_in(kind, fs, point, t, price);
        let finite = [g.price, g.delta, g.gamma, g.theta, g.vega, g.rho]
            .iter()
            .all(|v| v.is_finite());
        finite.then_some(g)
    }

    /// Greeks from validated forward-space inputs and the (discounted) price at the point.
    #[inline]
    fn greeks_in(
        self,
        kind: OptionKind,
        fs: ForwardSpace,
        point: black::Point,
        t: f64,
        price: f64,
    ) -> Greeks {
        let ForwardSpace { forward, discount } = fs;
        let s = black::sensitivities(kind, forward, point);
        match self {
            Self::Black76 { rate } => Greeks {
                price,
                delta: discount * s.dfwd,
                gamma: discount * s.dfwd2,
                theta: (rate * price - discount * s.dtime) / 365.0,
                vega: discount * s.dvol / 100.0,
                rho: -t * price / 100.0,
            },
            Self::BlackScholesSpot { rate } => {
                // K·e^{−rT}·N(d2) for a call, −K·e^{−rT}·N(−d2) for a put, both equal to
                // S·Δ − price (Euler's theorem); from the textbook theta and rho.
                let strike_leg = forward * discount * s.dfwd - price;
                Greeks {
                    price,
                    // ∂F/∂S = e^{rT} cancels the discount factor.
                    delta: s.dfwd,
                    gamma: s.dfwd2 / discount,
                    theta: (-discount * s.dtime - rate * strike_leg) / 365.0,
                    vega: discount * s.dvol / 100.0,
                    rho: t * strike_leg / 100.0,
                }
            }
        }
    }

    /// Implied volatility of a premium, exactly: any time value above zero has an IV.
    ///
    /// Errors: [`NoIv::InvalidInput`] (non-finite input; non-positive underlying, strike or
    /// price), [`NoIv::Expired`] (`t ≤ 0`), [`NoIv::BelowIntrinsic`] (price ≤ discounted
    /// intrinsic), [`NoIv::AboveMaximum`] (price ≥ discounted forward for a call, discounted
    /// strike for a put). Market data should go through [`Pricer`], which also rejects
    /// prices within a tick fraction of intrinsic.
    ///
    /// Exists as the exact inverse of [`Convention::price`].
    pub fn implied_vol(
        self,
        kind: OptionKind,
        underlying: f64,
        strike: f64,
        t: f64,
        price: f64,
    ) -> Result<f64, NoIv> {
        self.implied_vol_in(kind, underlying, strike, t, price, 0.0)
            .map(|(point, _)| point.sigma)
    }

    /// IV with a minimum discounted time value; also returns the forward space for Greeks.
    #[inline]
    fn implied_vol_in(
        self,
        kind: OptionKind,
        underlying: f64,
        strike: f64,
        t: f64,
        price: f64,
        min_time_value: f64,
    ) -> Result<(black::Point, ForwardSpace), NoIv> {
        if !price.is_finite() || price <= 0.0 {
            return Err(NoIv::InvalidInput);
        }
        let fs = self.forward_space(underlying, strike, t)?;
        let point = black::implied_vol(
            kind,
            fs.forward,
            strike,
            t,
            price / fs.discount,
            min_time_value / fs.discount,
        )?;
        Ok((point, fs))
    }
}

/// A bid/ask pair, for deriving the price an IV is computed from.
///
/// Exists so that one-sided or empty books are flagged ([`NoIv::NoTwoSidedMarket`]) instead
/// of producing an IV from a stale or half-missing quote.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quote {
    /// Best bid; zero, negative or non-finite means "no bid".
    pub bid: f64,
    /// Best ask; zero, negative or non-finite means "no ask".
    pub ask: f64,
}

impl Quote {
    /// Mid price `(bid + ask) / 2`, or [`NoIv::NoTwoSidedMarket`] if either side is missing
    /// or the book is crossed (`bid > ask`).
    ///
    /// Exists as the standard price for option IVs: LTPs of illiquid strikes can be hours old.
    pub fn mid(self) -> Result<f64, NoIv> {
        let side = |v: f64| v.is_finite() && v > 0.0;
        if !side(self.bid) || !side(self.ask) || self.bid > self.ask {
            return Err(NoIv::NoTwoSidedMarket);
        }
        Ok(0.5 * (self.bid + self.ask))
    }
}

/// A [`Convention`] plus the market-data tolerance used on real quotes.
///
/// Exists as the object a chain processor holds: configured once (from settings), then
/// called per tick.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pricer {
    /// Model and rate.
    pub convention: Convention,
    /// Smallest discounted time value (price − discounted intrinsic), in rupees, that is
    /// treated as information. Prices whose time value is at or below it are
    /// [`NoIv::BelowIntrinsic`]: quoted prices are rounded to the tick, so a time value
    /// within half a tick of zero cannot be told apart from zero. Default `NSE_TICK / 2`.
    pub min_time_value: f64,
}

impl Default for Pricer {
    /// Black-76 with r = 0 and a half-tick time-value floor.
    fn default() -> Self {
        Self::new(Convention::default())
    }
}

impl Pricer {
    /// A pricer for `convention` with the half-tick time-value floor.
    ///
    /// Exists as the usual constructor; set [`Pricer::min_time_value`] to change the floor.
    #[must_use]
    pub const fn new(convention: Convention) -> Self {
        Self {
            convention,
            min_time_value: NSE_TICK / 2.0,
        }
    }

    /// Implied volatility of a market price (e.g. [`Quote::mid`]); as
    /// [`Convention::implied_vol`] but with the [`Pricer::min_time_value`] floor.
    ///
    /// Exists for the IV column of the option chain.
    pub fn implied_vol(
        &self,
        kind: OptionKind,
        underlying: f64,
        strike: f64,
        t: f64,
        price: f64,
    ) -> Result<f64, NoIv> {
        self.convention
            .implied_vol_in(kind, underlying, strike, t, price, self.min_floor())
            .map(|(point, _)| point.sigma)
    }

    /// Implied volatility of a market price and the Greeks at that volatility, in one pass.
    /// `greeks.price` is `price` itself.
    ///
    /// Exists as the per-tick hot path (IV, delta for moneyness/skew, gamma for GEX).
    pub fn iv_and_greeks(
        &self,
        kind: OptionKind,
        underlying: f64,
        strike: f64,
        t: f64,
        price: f64,
    ) -> Result<IvGreeks, NoIv> {
        let (point, fs) =
            self.convention
                .implied_vol_in(kind, underlying, strike, t, price, self.min_floor())?;
        // The price at the IV is the market price itself (the solver reproduces it to a few
        // ulps); re-pricing would only add rounding noise and ~50 ns.
        let g = self.convention.greeks_in(kind, fs, point, t, price);
        // Only reachable with absurd inputs (σ·√T underflowing), but never hand out a NaN.
        let finite = g.price.is_finite()
            && g.delta.is_finite()
            && g.gamma.is_finite()
            && g.theta.is_finite()
            && g.vega.is_finite()
            && g.rho.is_finite();
        if !finite {
            return Err(NoIv::InvalidInput);
        }
        Ok(IvGreeks {
            iv: point.sigma,
            greeks: g,
        })
    }

    /// The floor as a valid non-negative number (a NaN or negative setting means "none").
    fn min_floor(&self) -> f64 {
        if self.min_time_value.is_finite() && self.min_time_value > 0.0 {
            self.min_time_value
        } else {
            0.0
        }
    }
}
