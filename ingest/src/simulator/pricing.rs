//! Fair prices and the quotes around them: futures on the carried forward, options by
//! Black-76 with a volatility smile and an ATM term structure, all on NSE's 0.05 grid.
//!
//! The simulator prices options with its own Black-76 on purpose: it is an independent
//! oracle for the processor's pricing (IV and Greeks, in the analytics crate). The processor
//! recovers implied volatility from prices generated here; were both to share one
//! implementation, a bug in it would cancel out on the way through instead of showing up.

use super::listing::Kind;
use super::MarketSimulator;

/// NSE tick size in rupees: every simulated price is a multiple of it.
pub const TICK_SIZE: f64 = 0.05;

/// Term structure: ATM volatility goes from `(1 - term_slope)` to `(1 + term_slope)` times
/// the base with this time constant (30 days).
const TERM_TAU_YEARS: f64 = 30.0 / 365.0;
/// Bid-ask spread of the near, next and far futures, in ticks.
const FUTURE_SPREAD_TICKS: [i64; 3] = [2, 6, 12];

/// A two-sided quote and the price a trade printed at, in ticks of [`TICK_SIZE`] (whole
/// numbers, so bid < ask and bid ≤ last ≤ ask hold exactly).
#[derive(Debug, Clone, Copy)]
pub(super) struct Quote {
    pub(super) bid: i64,
    pub(super) ask: i64,
    pub(super) last: i64,
}

impl MarketSimulator {
    /// Fair price of a derivative now, with its standardised moneyness (0 for futures).
    pub(super) fn fair(&self, i: usize) -> (f64, f64) {
        let c = &self.contracts[i];
        let spot = self.underlyings[c.underlying].spot;
        if c.kind == Kind::Index {
            return (spot, 0.0);
        }
        let e = &self.expiries[c.expiry];
        let forward = spot * e.carry;
        match c.kind {
            Kind::Index | Kind::Future => (forward, 0.0),
            Kind::Call | Kind::Put => {
                let ln_kf = (c.strike / forward).ln();
                let x = ln_kf / (e.atm_vol * e.sqrt_years);
                let vol = smile_vol(e.atm_vol, x, self.skew, self.smile);
                let price = black76_ln(
                    forward,
                    c.strike,
                    ln_kf,
                    vol * e.sqrt_years,
                    c.kind == Kind::Call,
                );
                (price, x)
            }
        }
    }

    /// The quote of derivative `i` around its `fair` price (standardised moneyness `x`):
    /// spreads widen away from the money and with time to expiry. `jitter` (0 or 1) widens
    /// the spread by a tick now and then; `side` picks a trade at the bid, the ask or inside.
    pub(super) fn quote(&self, i: usize, fair: f64, x: f64, jitter: i64, side: u64) -> Quote {
        let c = &self.contracts[i];
        let e = &self.expiries[c.expiry];
        let spread = match c.kind {
            Kind::Future => FUTURE_SPREAD_TICKS[c.rank.min(2)] + jitter,
            _ => {
                let days = e.years * 365.0;
                let illiquid = 2.0 * x.abs().min(4.0) + 1.5 * (1.0 + days / 7.0).ln();
                let wide = 1 + (fair * 0.005) as i64 + illiquid as i64 + jitter;
                // Cheap options are quoted a tick or two wide, never wider than their price.
                wide.min(((fair / TICK_SIZE) as i64).max(2))
            }
        };
        let fair_ticks = fair / TICK_SIZE;
        let bid = ((fair_ticks - spread as f64 / 2.0).floor() as i64).max(1);
        let ask = bid + spread;
        let last = match side % 3 {
            0 => bid,
            1 => ask,
            _ => (fair_ticks.round() as i64).clamp(bid, ask),
        };
        Quote { bid, ask, last }
    }
}

/// ATM implied volatility at `years` to expiry: from `(1 - slope)·base` for an expiring
/// contract to `(1 + slope)·base` for long-dated ones.
pub(super) fn atm_vol(base: f64, slope: f64, years: f64) -> f64 {
    base * (1.0 - slope + 2.0 * slope * (1.0 - (-years / TERM_TAU_YEARS).exp()))
}

/// Implied volatility at standardised moneyness `x = ln(K/F) / (σ_ATM √T)`: a put skew
/// (higher below the forward) with some curvature. Near the money it is
/// `σ_ATM (1 − skew·x + smile·x²)`; both terms saturate smoothly far out (the wings level off
/// at `1 ± 2·skew + 4·smile`), so short expiries keep an arbitrage-free, convex chain.
fn smile_vol(atm: f64, x: f64, skew: f64, smile: f64) -> f64 {
    let x = x.clamp(-50.0, 50.0);
    let factor = 1.0 - 2.0 * skew * (x / 2.0).tanh() + smile * x * x / (1.0 + x * x / 4.0);
    atm * factor.max(0.2)
}

/// Converts a count of 0.05 ticks to rupees, exactly as [`on_grid`] would round it.
pub(super) fn from_ticks(ticks: i64) -> f64 {
    (ticks * 5) as f64 / 100.0
}

/// Rounds a price to the 0.05 grid through whole paise, so the result is the double nearest
/// the two-decimal price (no `24500.050000000003`).
pub fn on_grid(price: f64) -> f64 {
    let paise = (price * 100.0 / 5.0).round() * 5.0;
    paise / 100.0
}

/// Standard normal cumulative distribution, through `erfc` for accuracy in the tails.
fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// Black-76 price with r = 0 (undiscounted, the brokers' convention), given `ln(K/F)` and
/// the total standard deviation `σ√T` so callers reuse what they already computed.
///
/// Kept separate from the analytics crate's pricing on purpose (see the module docs): it is
/// the independent oracle the processor's IV and Greeks are checked against.
fn black76_ln(forward: f64, strike: f64, ln_kf: f64, sd: f64, call: bool) -> f64 {
    let d1 = (-ln_kf + 0.5 * sd * sd) / sd;
    let d2 = d1 - sd;
    if call {
        forward * norm_cdf(d1) - strike * norm_cdf(d2)
    } else {
        strike * norm_cdf(-d2) - forward * norm_cdf(-d1)
    }
}

/// Black-76 price with r = 0 on `forward`.
#[cfg(test)]
pub(super) fn black76(forward: f64, strike: f64, years: f64, vol: f64, call: bool) -> f64 {
    black76_ln(
        forward,
        strike,
        (strike / forward).ln(),
        vol * years.sqrt(),
        call,
    )
}
