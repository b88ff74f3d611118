//! Which instrument ticks next: indices on their own schedule, every other contract drawn
//! with an activity weight that follows the market (moneyness, time to expiry).

use rand::Rng;

use super::listing::Kind;
use super::MarketSimulator;

/// How often the tick distribution follows the market (moneyness, time to expiry).
const REWEIGHT_MICROS: i64 = 60_000_000;
/// Activity of the near, next and far futures relative to the most active option.
const FUTURE_ACTIVITY: [f64; 3] = [1.5, 0.15, 0.04];

impl MarketSimulator {
    /// Activity weights: near-the-money (out of the money more than in), near-expiry
    /// options and the near future trade most; expired contracts not at all.
    pub(super) fn reweight(&mut self) {
        self.cumulative.clear();
        self.scheduled.clear();
        let mut total = 0.0;
        for (i, c) in self.contracts.iter_mut().enumerate() {
            if c.kind == Kind::Index {
                c.weight = 0.0;
                continue;
            }
            let e = &self.expiries[c.expiry];
            let u = &self.underlyings[c.underlying];
            let weight = match c.kind {
                _ if e.close_micros <= self.now => 0.0,
                Kind::Index => 0.0,
                Kind::Future => u.kind.activity() * FUTURE_ACTIVITY[c.rank.min(2)],
                Kind::Call | Kind::Put => {
                    let forward = u.spot * e.carry;
                    let x = (c.strike / forward).ln() / (e.atm_vol * e.sqrt_years);
                    let itm = (c.kind == Kind::Call) == (x < 0.0);
                    let days = e.years * 365.0;
                    let moneyness = 0.015 + (-x * x / 1.5).exp();
                    u.kind.activity()
                        * moneyness
                        * if itm { 0.4 } else { 1.0 }
                        * (1.0 / (1.0 + days / 3.0))
                }
            };
            c.weight = weight;
            if weight > 0.0 {
                total += weight;
                self.cumulative.push(total);
                self.scheduled.push(i as u32);
            }
        }
        self.next_reweight = self.now + REWEIGHT_MICROS;
    }

    /// The instrument of this tick: an index when its tick is due, otherwise a draw from
    /// the activity weights.
    pub(super) fn pick(&mut self) -> usize {
        let now = self.now;
        let mut due: Option<usize> = None;
        for (k, u) in self.underlyings.iter().enumerate() {
            let earlier = due.is_none_or(|d| u.index_due < self.underlyings[d].index_due);
            if earlier && (u.index_due <= now || self.scheduled.is_empty()) {
                due = Some(k);
            }
        }
        if let Some(k) = due {
            let u = &mut self.underlyings[k];
            u.index_due = (u.index_due + self.index_interval).max(now + self.index_gap);
            return u.index;
        }
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = self.rng.random::<f64>() * total;
        let j = self
            .cumulative
            .partition_point(|&c| c <= x)
            .min(self.scheduled.len() - 1);
        self.scheduled[j] as usize
    }
}
