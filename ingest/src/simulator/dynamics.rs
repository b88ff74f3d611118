//! How the market moves: the correlated index walks with intraday volatility, overnight gaps
//! and jumps; per-expiry caches of time, volatility and carry; trades, cumulative volume and
//! open interest driven by chain-wide build-up/unwinding episodes.

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use strikeflow_schemas::Tick;

use super::listing::{Kind, Underlying};
use super::pricing::{atm_vol, from_ticks, on_grid, TICK_SIZE};
use super::MarketSimulator;

/// ACT/365 year in micros: time to expiry for pricing.
const MICROS_PER_YEAR: f64 = 365.0 * 86_400.0 * 1e6;
/// Trading time in a year, 252 sessions of 375 minutes: volatility accrues while trading.
const TRADING_MICROS_PER_YEAR: f64 = 252.0 * 375.0 * 60.0 * 1e6;
/// Floor on time to expiry (one minute), so expiry-day prices stay finite up to 15:30.
const MIN_YEARS: f64 = 60e6 / MICROS_PER_YEAR;
/// How often per-expiry caches and the intraday volatility are refreshed.
const REFRESH_MICROS: i64 = 1_000_000;
/// OI refresh epochs per day never exceed this (refresh ≥ 1 s, a session is 22,500 s).
const EPOCHS_PER_DAY: i64 = 1_000_000;

/// Price state of one index and the schedule of its index ticks.
#[derive(Debug, Clone)]
pub(super) struct UnderlyingState {
    pub(super) kind: Underlying,
    pub(super) spot: f64,
    /// Annualised volatility.
    pub(super) vol: f64,
    /// Loadings of the log-return on the market shock and on the underlying's own shock.
    market_loading: f64,
    own_loading: f64,
    /// Per-tick log-return standard deviation and drift (refreshed with the intraday vol).
    diffusion: f64,
    drift: f64,
    /// Contract index of the index itself.
    pub(super) index: usize,
    /// Event time of its next index tick.
    pub(super) index_due: i64,
    /// Offset of its index ticks from the open, so indices do not tick together.
    index_offset: i64,
}

impl UnderlyingState {
    /// An index at its opening `spot` whose moves have `correlation` with the market shock
    /// (1 for the first index, which is the market), ticking first at `open + index_offset`.
    pub(super) fn new(
        kind: Underlying,
        spot: f64,
        vol: f64,
        correlation: f64,
        index: usize,
        open: i64,
        index_offset: i64,
    ) -> Self {
        Self {
            kind,
            spot,
            vol,
            market_loading: correlation,
            own_loading: (1.0 - correlation * correlation).max(0.0).sqrt(),
            diffusion: 0.0,
            drift: 0.0,
            index,
            index_due: open + index_offset,
            index_offset,
        }
    }
}

/// A build-up (+) / unwinding (−) episode: the share of traded lots that changes OI.
#[derive(Debug, Clone, Copy)]
pub(super) struct Episode {
    drift: f64,
    /// OI refresh epoch in which the episode last had its chance to change.
    epoch: i64,
}

/// Values shared by every contract of one (underlying, expiry), cached once a second.
#[derive(Debug, Clone)]
pub(super) struct ExpiryState {
    /// Into `underlyings`.
    pub(super) underlying: usize,
    /// Event time of the expiry's 15:30 close.
    pub(super) close_micros: i64,
    /// Years to expiry (ACT/365) and its square root, as of the last refresh.
    pub(super) years: f64,
    pub(super) sqrt_years: f64,
    /// At-the-money implied volatility.
    pub(super) atm_vol: f64,
    /// Forward over spot.
    pub(super) carry: f64,
    /// Episodes of the chain's calls, puts and future.
    episodes: [Episode; 3],
}

impl ExpiryState {
    /// An expiry of underlying `underlying` closing at `close_micros`; the first refresh
    /// fills in its time, volatility and carry.
    pub(super) fn new(underlying: usize, close_micros: i64) -> Self {
        Self {
            underlying,
            close_micros,
            years: 0.0,
            sqrt_years: 0.0,
            atm_vol: 0.0,
            carry: 1.0,
            episodes: [Episode {
                drift: 0.0,
                epoch: -1,
            }; 3],
        }
    }
}

impl MarketSimulator {
    /// Opening prices into the master, opening open interest (peaked near the money, calls
    /// above and puts below, heavier on round strikes and near expiries) and the opening
    /// OI episodes.
    pub(super) fn open_book(&mut self, seed: u64) {
        // A stream of its own, so the book does not shift the tick sequence's randomness.
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x6f70_656e_5f62_6f6f);
        for i in 0..self.contracts.len() {
            let price = self.fair(i).0;
            self.instruments[i].last_price = on_grid(price.max(TICK_SIZE));
            let c = &self.contracts[i];
            if c.kind == Kind::Index {
                continue;
            }
            let u = &self.underlyings[c.underlying];
            let e = &self.expiries[c.expiry];
            let (option_oi, future_oi) = u.kind.oi_scale();
            let units = match c.kind {
                Kind::Index => 0.0,
                Kind::Future => future_oi * [1.0, 0.2, 0.04][c.rank.min(2)],
                Kind::Call | Kind::Put => {
                    let forward = u.spot * e.carry;
                    // Strike distance in standard deviations of the forward at expiry,
                    // with at least a week's worth so expiry day is not a single strike.
                    let sd = forward * e.atm_vol * e.sqrt_years.max((7.0f64 / 365.0).sqrt());
                    let m = (c.strike - forward) / sd;
                    let centre = if c.kind == Kind::Call { 0.5 } else { -0.5 };
                    let step = u.kind.strike_step();
                    let round = if c.strike % (10.0 * step) == 0.0 {
                        1.8
                    } else if c.strike % (2.0 * step) == 0.0 {
                        1.2
                    } else {
                        1.0
                    };
                    let days = e.years * 365.0;
                    option_oi * (-(m - centre).powi(2) / 2.0).exp() * round / (1.0 + days / 20.0)
                }
            };
            let lots = (units * rng.random_range(0.7..1.3) / c.lot as f64).round() as i64;
            let c = &mut self.contracts[i];
            c.oi = lots.max(10) * c.lot;
            c.oi_latent = c.oi;
        }
        for e in &mut self.expiries {
            let expiry_day = e.years * 365.0 < 1.0;
            for episode in &mut e.episodes {
                episode.drift = episode_drift(&mut rng, expiry_day);
            }
        }
    }

    /// Per-expiry caches and the intraday volatility; every minute also the distribution.
    pub(super) fn refresh(&mut self) {
        let now = self.now;
        for e in &mut self.expiries {
            let years = ((e.close_micros - now) as f64 / MICROS_PER_YEAR).max(MIN_YEARS);
            let base = self.underlyings[e.underlying].vol;
            e.years = years;
            e.sqrt_years = years.sqrt();
            e.atm_vol = atm_vol(base, self.term_slope, years);
            e.carry = (self.carry_rate * years).exp();
        }
        // U-shaped intraday volatility: busy open, livelier close; averages to about 1.
        let since_open = (now - self.day_open) as f64 / 60e6;
        let to_close = (self.day_close - now) as f64 / 60e6;
        self.vol_multiplier =
            (1.0 + 0.8 * (-since_open / 25.0).exp() + 0.4 * (-to_close / 20.0).exp()) / 1.074;
        let dt = self.interval as f64 / TRADING_MICROS_PER_YEAR;
        for u in &mut self.underlyings {
            u.diffusion = u.vol * self.vol_multiplier * dt.sqrt();
            u.drift = -0.5 * u.diffusion * u.diffusion;
        }
        self.next_refresh = now + REFRESH_MICROS;
        if now >= self.next_reweight {
            self.reweight();
        }
    }

    /// Overnight gap at a new session: about a quarter of a session's variance, correlated
    /// across indices; index ticks restart at the open.
    pub(super) fn gap_overnight(&mut self) {
        let z_market: f64 = self.rng.sample(StandardNormal);
        for u in &mut self.underlyings {
            let z_own: f64 = if u.own_loading > 0.0 {
                self.rng.sample(StandardNormal)
            } else {
                0.0
            };
            let sd = u.vol * (0.25 / 252.0f64).sqrt();
            u.spot *= (sd * (u.market_loading * z_market + u.own_loading * z_own)).exp();
            u.index_due = self.day_open + u.index_offset;
        }
    }

    /// One step of the correlated index walks, plus a market-wide jump when one is due.
    pub(super) fn move_spots(&mut self) {
        let z_market: f64 = self.rng.sample(StandardNormal);
        for u in &mut self.underlyings {
            let z = if u.own_loading > 0.0 {
                let z_own: f64 = self.rng.sample(StandardNormal);
                u.market_loading * z_market + u.own_loading * z_own
            } else {
                u.market_loading * z_market
            };
            u.spot *= (u.diffusion * z + u.drift).exp();
        }
        if self.traded_micros >= self.next_jump {
            let z: f64 = self.rng.sample(StandardNormal);
            let size = self.jump_mean + self.jump_vol * z;
            let reference = self.underlyings.first().map_or(1.0, |u| u.vol);
            for u in &mut self.underlyings {
                // Higher-volatility indices move more on the same news.
                u.spot *= (size * u.vol / reference).exp();
            }
            self.schedule_jump();
        }
    }

    /// Draws when the next jump comes (exponential waiting time in trading time).
    pub(super) fn schedule_jump(&mut self) {
        self.next_jump = if self.jump_rate > 0.0 {
            let u: f64 = self.rng.random::<f64>().max(1e-300);
            let wait = (-u.ln() / self.jump_rate).min(1e15);
            self.traded_micros.saturating_add(wait as i64)
        } else {
            i64::MAX
        };
    }

    /// A trade in a derivative: quote around the fair price, trade at bid, ask or inside,
    /// cumulate volume, move latent OI and publish it at refreshes.
    pub(super) fn trade(&mut self, i: usize) -> Tick {
        let (fair, x) = self.fair(i);
        let r = self.rng.random::<u64>();
        // Disjoint bit fields of one draw: spread jitter, trade side, lots, block, depth, OI.
        let bits = |shift: u32, width: u32| (r >> shift) & ((1 << width) - 1);
        let quote = self.quote(i, fair, x, bits(0, 1) as i64, bits(1, 8));
        let c = &self.contracts[i];
        let e = &self.expiries[c.expiry];
        // Mostly a few lots, now and then a block.
        let mut lots = 1 + (bits(9, 8) % if c.kind == Kind::Future { 4 } else { 10 }) as i64;
        if bits(17, 8) % 25 == 0 {
            lots *= 10;
        }
        let depth = 1.0 + 4.0 * c.weight.min(1.0);
        let bid_lots = ((1 + bits(25, 8) % 40) as f64 * depth) as i64;
        let ask_lots = ((1 + bits(33, 8) % 40) as f64 * depth) as i64;
        let rounding = bits(41, 10) as f64 / 1_024.0;
        let switch = bits(51, 10) as f64 / 1_024.0;
        let side = match c.kind {
            Kind::Call => 0,
            Kind::Put => 1,
            _ => 2,
        };
        let epoch = self.day_number * EPOCHS_PER_DAY + (self.now - self.day_open) / self.oi_refresh;
        let expiry_day = e.years * 365.0 < 1.0;
        let (lot, expiry) = (c.lot, c.expiry);
        if c.oi_epoch != epoch {
            self.switch_episode(expiry, side, epoch, switch, expiry_day);
        }
        let drift = self.expiries[expiry].episodes[side].drift;
        let c = &mut self.contracts[i];
        if c.oi_epoch != epoch {
            c.oi = c.oi_latent;
            c.oi_epoch = epoch;
        }
        // Futures positions turn over far more than they grow: a quarter of the share.
        let share = if c.kind == Kind::Future {
            drift / 4.0
        } else {
            drift
        };
        // Stochastic rounding keeps small shares of small trades unbiased.
        let change = (lots as f64 * share + rounding).floor() as i64;
        c.oi_latent = (c.oi_latent + change * lot).max(0);
        let last_qty = lots * lot;
        c.volume += last_qty;
        Tick {
            instrument_token: self.instruments[i].instrument_token,
            exchange_ts: self.now,
            ltp: from_ticks(quote.last),
            last_qty,
            volume: c.volume,
            oi: c.oi,
            bid: from_ticks(quote.bid),
            bid_qty: bid_lots * lot,
            ask: from_ticks(quote.ask),
            ask_qty: ask_lots * lot,
        }
    }

    /// At a chain side's first trade after an OI refresh, its episode may change (one
    /// chance in four).
    fn switch_episode(&mut self, expiry: usize, side: usize, epoch: i64, u: f64, expiry_day: bool) {
        let episode = &mut self.expiries[expiry].episodes[side];
        if episode.epoch == epoch {
            return;
        }
        episode.epoch = epoch;
        if u < 0.25 {
            episode.drift = episode_drift(&mut self.rng, expiry_day);
        }
    }
}

/// A new OI episode: build-up (40%), unwinding (25%) or churn, with unwinding into expiry
/// on expiry day. The value is the share of traded lots that adds to (or removes from) OI:
/// a few percent, since most trades only pass positions on (an ATM weekly turns its OI
/// over several times a day while OI moves by tens of percent).
fn episode_drift(rng: &mut SmallRng, expiry_day: bool) -> f64 {
    let v = rng.random::<f64>();
    let strength = rng.random_range(0.03..0.12);
    let drift = if v < 0.4 {
        strength
    } else if v < 0.65 {
        -strength
    } else {
        strength / 3.0 - 0.02
    };
    if expiry_day {
        drift - 0.05
    } else {
        drift
    }
}
