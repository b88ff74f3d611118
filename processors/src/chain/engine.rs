//! The chain analytics state machine. See the parent module for the contract.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use strikeflow_schemas::{
    date_from_days, BuildUp, ChainAnalytics, ChainKey, Instrument, InstrumentType, MoneynessPoint,
    NoIvReason, OptionSide, ReferenceKind, StrikeAnalytics, Tick,
};

use super::metrics::{build_up, iv_at_delta, max_pain, moneyness_bucket, StrikeOi};
use crate::bars::BAR_MICROS;
use crate::pricing::{
    parity_forward, years_to_expiry, Convention, DayCount, IvGreeks, NoIv, OptionKind, ParityQuote,
    Pricer, Quote,
};

const IST_OFFSET_MICROS: i64 = 330 * 60_000_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// Which price a chain's ATM strike and moneyness are measured against.
///
/// Exists because brokers use the forward and some screens use spot; the brief makes it
/// configurable with the forward as default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReferenceChoice {
    /// The future of the chain's expiry if it has traded, else the put–call parity forward,
    /// else spot (`reference_kind` says which was used).
    #[default]
    Forward,
    /// The spot index; falls back to the forward as above before the first spot tick.
    Spot,
}

/// Configuration of a [`ChainAnalyticsEngine`].
///
/// Exists so the conventions that change the numbers (pricing model, day count, reference)
/// and the emission shape (cadence, moneyness depth, OI window) are explicit settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ChainSettings {
    /// IV/Greeks model. Under Black-76 the underlying is the chain's forward (future, else
    /// parity forward, else spot); under Black–Scholes on spot it is the spot index.
    pub pricer: Pricer,
    /// Year-fraction convention for time to expiry.
    pub day_count: DayCount,
    /// Price the ATM strike is nearest to.
    pub reference: ReferenceChoice,
    /// Moneyness buckets per side: ITM1..ITMn, ATM, OTM1..OTMn.
    pub moneyness_levels: u32,
    /// `oi_change_window` compares with the OI this many minutes earlier.
    pub oi_window_minutes: u32,
    /// Emission cadence in event-time microseconds.
    pub emit_every_micros: i64,
}

impl Default for ChainSettings {
    /// Black-76 (r = 0), ACT/365, forward reference, 5 levels, 15-minute OI window, 1 s cadence.
    fn default() -> Self {
        Self {
            pricer: Pricer::default(),
            day_count: DayCount::Act365,
            reference: ReferenceChoice::Forward,
            moneyness_levels: 5,
            oi_window_minutes: 15,
            emit_every_micros: 1_000_000,
        }
    }
}

/// One message produced by [`ChainAnalyticsEngine::advance`], tagged with its topic's type.
///
/// Exists so one output buffer carries all three streams in emission order.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineOutput {
    /// For `chains.v1`.
    Chain(ChainAnalytics),
    /// For `strikes.v1`.
    Strike(StrikeAnalytics),
    /// For `moneyness.v1`.
    Moneyness(MoneynessPoint),
}

/// Counters of ticks the engine did not apply, so nothing is dropped silently.
///
/// Exists for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Ticks seen.
    pub ticks: u64,
    /// Ticks of tokens never registered.
    pub unknown_instrument: u64,
    /// Ticks older than the instrument's latest applied tick (state keeps the latest).
    pub out_of_order: u64,
    /// Ticks from an IST trading day before the current one (after the day rolled).
    pub previous_day: u64,
    /// Ticks with a non-finite price.
    pub invalid: u64,
}

/// Why an instrument could not be registered.
///
/// Exists so a bad master row is reported instead of silently creating a broken chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// An option or future without an expiry date.
    #[error("instrument {0} has no expiry")]
    MissingExpiry(i64),
    /// An option whose strike is not a positive finite number.
    #[error("option {0} has an invalid strike")]
    InvalidStrike(i64),
    /// The token is already registered as a different kind of instrument or chain.
    #[error("instrument {0} is already registered differently")]
    Conflict(i64),
}

/// Multiplicative hasher for instrument tokens: the token map is hit once per tick, and
/// SipHash would be a noticeable share of the per-tick cost. Tokens are not attacker-chosen.
#[derive(Default, Clone, Copy)]
struct TokenHasher(u64);

impl Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_i64(&mut self, i: i64) {
        let x = (i as u64 ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = x ^ (x >> 29);
    }
}

type TokenMap<V> = HashMap<i64, V, BuildHasherDefault<TokenHasher>>;

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Slot {
    Option { chain: usize, option: usize },
    Series(usize),
}

/// A spot index or a future: a price series shared by every chain of its underlying.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Series {
    price: Option<f64>,
    last_ts: i64,
}

/// Per-minute ring of OI ("OI as of the end of minute m") for the intraday ΔOI window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OiRing {
    slots: Box<[(i64, i64)]>,
    last_minute: Option<i64>,
}

impl OiRing {
    fn new(window_minutes: u32) -> Self {
        // The current minute m and the window's target minute m − N − 1 must both fit.
        let len = window_minutes.max(1) as usize + 2;
        Self {
            slots: vec![(i64::MIN, 0); len].into_boxed_slice(),
            last_minute: None,
        }
    }

    fn index(&self, minute: i64) -> usize {
        minute.rem_euclid(self.slots.len() as i64) as usize
    }

    /// O(1) except on the first tick of a new minute, which back-fills at most `len` skipped
    /// minutes with the previous OI (OI is unchanged while no tick arrives).
    fn record(&mut self, minute: i64, oi: i64) {
        match self.last_minute {
            Some(last) if minute < last => return,
            Some(last) if minute > last => {
                let prev = self.slots[self.index(last)].1;
                let len = self.slots.len() as i64;
                for m in (last + 1).max(minute - len + 1)..minute {
                    let i = self.index(m);
                    self.slots[i] = (m, prev);
                }
            }
            _ => {}
        }
        let i = self.index(minute);
        self.slots[i] = (minute, oi);
        self.last_minute = Some(minute);
    }

    /// The OI as of the end of `minute`, if still in the ring.
    fn as_of(&self, minute: i64) -> Option<i64> {
        let last = self.last_minute?;
        if minute >= last {
            return Some(self.slots[self.index(last)].1);
        }
        let (m, oi) = self.slots[self.index(minute)];
        (m == minute).then_some(oi)
    }

    fn clear(&mut self) {
        self.slots.fill((i64::MIN, 0));
        self.last_minute = None;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct OptionState {
    token: i64,
    tradingsymbol: String,
    strike: f64,
    side: OptionSide,
    lot_size: f64,
    has_data: bool,
    dirty: bool,
    last_ts: i64,
    ltp: f64,
    bid: f64,
    ask: f64,
    oi: i64,
    volume: i64,
    /// Last (LTP, OI) of the previous trading day.
    prev_close: Option<(f64, i64)>,
    /// First (LTP, OI) seen this trading day: the build-up base when there is no previous close.
    day_first: Option<(f64, i64)>,
    ring: OiRing,
    /// IV and Greeks at the latest emission.
    calc: Result<IvGreeks, NoIvReason>,
}

impl OptionState {
    fn kind(&self) -> OptionKind {
        match self.side {
            OptionSide::CE => OptionKind::Call,
            OptionSide::PE => OptionKind::Put,
        }
    }

    fn oi_if_data(&self) -> i64 {
        if self.has_data {
            self.oi
        } else {
            0
        }
    }

    /// Price for parity: the mid of a two-sided market, else a positive LTP.
    fn parity_price(&self) -> Option<f64> {
        if !self.has_data {
            return None;
        }
        Quote {
            bid: self.bid,
            ask: self.ask,
        }
        .mid()
        .ok()
        .or((self.ltp > 0.0).then_some(self.ltp))
    }
}

/// One listed strike of a chain and its call/put (indices into `Chain::options`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StrikeRow {
    strike: f64,
    ce: Option<usize>,
    pe: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Chain {
    underlying: String,
    expiry: i32,
    spot: Option<usize>,
    future: Option<usize>,
    has_data: bool,
    options: Vec<OptionState>,
    /// Sorted by strike.
    rows: Vec<StrikeRow>,
    /// Smallest gap between listed strikes.
    step: Option<f64>,
}

/// Option-chain analytics over a stream of ticks: keeps per-option and per-chain state and
/// emits [`ChainAnalytics`], [`StrikeAnalytics`] and [`MoneynessPoint`] on an event-time
/// cadence.
///
/// Exists as the chain stage of the pipeline, sans-I/O so it is testable and benchmarkable
/// without Kafka. Feed it the instrument master with [`register`](Self::register), then ticks
/// with [`on_tick`](Self::on_tick), and call [`advance`](Self::advance) with the watermark.
///
/// Semantics worth knowing:
/// * An emission at boundary `B` is stamped `ts = B` and reflects every tick applied before
///   the `advance` call that crossed `B` (drive it as `on_tick(t); advance(watermark)`).
/// * The trading day is the IST date of the tick timestamps. When a tick of a later day
///   arrives, every instrument's last LTP/OI becomes its previous close, day volume resets to
///   0 and the OI ring empties; ticks of an earlier day are counted and ignored.
/// * Build-up compares the option's current LTP and OI with its previous close, or, when the
///   previous day was not seen, with the first LTP/OI seen this trading day.
///
/// The whole engine (instruments and their state) serialises with serde, so a processor can
/// snapshot it and restore it after a crash; settings and scratch buffers are not part of
/// the snapshot (restore with [`with_settings`](Self::with_settings)).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainAnalyticsEngine {
    #[serde(skip)]
    settings: ChainSettings,
    tokens: TokenMap<Slot>,
    chains: Vec<Chain>,
    chain_ids: HashMap<ChainKey, usize>,
    series: Vec<Series>,
    spot_by_underlying: HashMap<String, usize>,
    future_by_chain: HashMap<ChainKey, usize>,
    session_day: Option<i64>,
    last_boundary: Option<i64>,
    stats: EngineStats,
    #[serde(skip)]
    parity_scratch: Vec<ParityQuote>,
    #[serde(skip)]
    oi_scratch: Vec<StrikeOi>,
    #[serde(skip)]
    delta_scratch: Vec<(f64, f64)>,
}

fn no_iv_reason(e: NoIv) -> NoIvReason {
    match e {
        NoIv::BelowIntrinsic => NoIvReason::BelowIntrinsic,
        NoIv::AboveMaximum => NoIvReason::AboveMaximum,
        NoIv::NoTwoSidedMarket => NoIvReason::NoTwoSidedMarket,
        NoIv::Expired => NoIvReason::Expired,
        NoIv::InvalidInput => NoIvReason::InvalidInput,
    }
}

fn ist_day(ts: i64) -> i64 {
    (ts + IST_OFFSET_MICROS).div_euclid(DAY_MICROS)
}

/// `Some(a / b)` when `b > 0` and the ratio is finite.
fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b).filter(|r| r.is_finite())
}

impl ChainAnalyticsEngine {
    /// An engine with no instruments.
    pub fn new(settings: ChainSettings) -> Self {
        Self {
            settings,
            tokens: TokenMap::default(),
            chains: Vec::new(),
            chain_ids: HashMap::new(),
            series: Vec::new(),
            spot_by_underlying: HashMap::new(),
            future_by_chain: HashMap::new(),
            session_day: None,
            last_boundary: None,
            stats: EngineStats::default(),
            parity_scratch: Vec::new(),
            oi_scratch: Vec::new(),
            delta_scratch: Vec::new(),
        }
    }

    /// The engine restored from a snapshot, running with `settings` again (settings are not
    /// part of a snapshot; the caller checks they are the ones the snapshot was taken with).
    pub fn with_settings(mut self, settings: ChainSettings) -> Self {
        self.settings = settings;
        self
    }

    /// The settings the engine runs with.
    pub fn settings(&self) -> &ChainSettings {
        &self.settings
    }

    /// Counters of ticks seen and not applied.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Number of option chains known (registered options grouped by underlying and expiry).
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    /// Adds one row of the instrument master: an option joins its chain (created on first
    /// sight), a future becomes the forward of the chain with its underlying and expiry, and
    /// the spot index (EQ) becomes the spot of every chain of its underlying (`name`).
    /// Registering a token again updates an option's symbol and lot size and is otherwise a
    /// no-op. Instruments may be registered in any order.
    pub fn register(&mut self, inst: &Instrument) -> Result<(), RegisterError> {
        let token = inst.instrument_token;
        if let Some(slot) = self.tokens.get(&token).copied() {
            return match (slot, inst.instrument_type) {
                (Slot::Option { chain, option }, InstrumentType::CE | InstrumentType::PE) => {
                    let o = &mut self.chains[chain].options[option];
                    o.tradingsymbol.clone_from(&inst.tradingsymbol);
                    o.lot_size = f64::from(inst.lot_size);
                    Ok(())
                }
                (Slot::Series(_), InstrumentType::EQ | InstrumentType::FUT) => Ok(()),
                _ => Err(RegisterError::Conflict(token)),
            };
        }
        match inst.instrument_type {
            InstrumentType::EQ => {
                let id = self.new_series();
                self.spot_by_underlying.insert(inst.name.clone(), id);
                for chain in self.chains.iter_mut().filter(|c| c.underlying == inst.name) {
                    chain.spot = Some(id);
                }
                self.tokens.insert(token, Slot::Series(id));
            }
            InstrumentType::FUT => {
                let expiry = inst.expiry.ok_or(RegisterError::MissingExpiry(token))?;
                let id = self.new_series();
                let key = ChainKey::new(inst.name.clone(), Some(expiry));
                if let Some(&c) = self.chain_ids.get(&key) {
                    self.chains[c].future = Some(id);
                }
                self.future_by_chain.insert(key, id);
                self.tokens.insert(token, Slot::Series(id));
            }
            InstrumentType::CE | InstrumentType::PE => {
                let expiry = inst.expiry.ok_or(RegisterError::MissingExpiry(token))?;
                if !(inst.strike.is_finite() && inst.strike > 0.0) {
                    return Err(RegisterError::InvalidStrike(token));
                }
                let side = if inst.instrument_type == InstrumentType::CE {
                    OptionSide::CE
                } else {
                    OptionSide::PE
                };
                let chain_id = self.chain_for(&inst.name, expiry);
                let chain = &mut self.chains[chain_id];
                let row_pos = chain.rows.partition_point(|r| r.strike < inst.strike);
                let existing = chain
                    .rows
                    .get(row_pos)
                    .filter(|r| r.strike == inst.strike)
                    .and_then(|r| match side {
                        OptionSide::CE => r.ce,
                        OptionSide::PE => r.pe,
                    });
                if existing.is_some() {
                    return Err(RegisterError::Conflict(token));
                }
                let option_id = chain.options.len();
                chain.options.push(OptionState {
                    token,
                    tradingsymbol: inst.tradingsymbol.clone(),
                    strike: inst.strike,
                    side,
                    lot_size: f64::from(inst.lot_size),
                    has_data: false,
                    dirty: false,
                    last_ts: i64::MIN,
                    ltp: 0.0,
                    bid: 0.0,
                    ask: 0.0,
                    oi: 0,
                    volume: 0,
                    prev_close: None,
                    day_first: None,
                    ring: OiRing::new(self.settings.oi_window_minutes),
                    calc: Err(NoIvReason::NoUnderlying),
                });
                if chain
                    .rows
                    .get(row_pos)
                    .is_none_or(|r| r.strike != inst.strike)
                {
                    chain.rows.insert(
                        row_pos,
                        StrikeRow {
                            strike: inst.strike,
                            ce: None,
                            pe: None,
                        },
                    );
                }
                let row = &mut chain.rows[row_pos];
                match side {
                    OptionSide::CE => row.ce = Some(option_id),
                    OptionSide::PE => row.pe = Some(option_id),
                }
                chain.step = chain
                    .rows
                    .windows(2)
                    .map(|w| w[1].strike - w[0].strike)
                    .filter(|d| *d > 0.0)
                    .reduce(f64::min);
                self.tokens.insert(
                    token,
                    Slot::Option {
                        chain: chain_id,
                        option: option_id,
                    },
                );
            }
        }
        Ok(())
    }

    fn new_series(&mut self) -> usize {
        self.series.push(Series {
            price: None,
            last_ts: i64::MIN,
        });
        self.series.len() - 1
    }

    fn chain_for(&mut self, underlying: &str, expiry: i32) -> usize {
        let key = ChainKey::new(underlying, Some(expiry));
        if let Some(&id) = self.chain_ids.get(&key) {
            return id;
        }
        let id = self.chains.len();
        self.chains.push(Chain {
            underlying: underlying.to_owned(),
            expiry,
            spot: self.spot_by_underlying.get(underlying).copied(),
            future: self.future_by_chain.get(&key).copied(),
            has_data: false,
            options: Vec::new(),
            rows: Vec::new(),
            step: None,
        });
        self.chain_ids.insert(key, id);
        id
    }

    /// Applies one tick in O(1): updates the instrument's last price, quote, OI and volume,
    /// marks it changed for the next emission and records its OI in the per-minute ring.
    /// Unknown tokens, stale ticks and ticks of an earlier trading day are counted in
    /// [`stats`](Self::stats) and otherwise ignored.
    pub fn on_tick(&mut self, tick: &Tick) {
        self.stats.ticks += 1;
        let Some(&slot) = self.tokens.get(&tick.instrument_token) else {
            self.stats.unknown_instrument += 1;
            return;
        };
        if !tick.ltp.is_finite() {
            self.stats.invalid += 1;
            return;
        }
        let ts = tick.exchange_ts;
        let day = ist_day(ts);
        match self.session_day {
            Some(d) if day < d => {
                self.stats.previous_day += 1;
                return;
            }
            Some(d) if day > d => self.roll_day(day),
            Some(_) => {}
            None => self.session_day = Some(day),
        }
        if self.last_boundary.is_none() {
            let every = self.settings.emit_every_micros.max(1);
            self.last_boundary = Some(ts.div_euclid(every) * every);
        }
        match slot {
            Slot::Series(id) => {
                let s = &mut self.series[id];
                if ts < s.last_ts {
                    self.stats.out_of_order += 1;
                    return;
                }
                s.last_ts = ts;
                s.price = (tick.ltp > 0.0).then_some(tick.ltp).or(s.price);
            }
            Slot::Option { chain, option } => {
                let c = &mut self.chains[chain];
                let o = &mut c.options[option];
                if ts < o.last_ts {
                    self.stats.out_of_order += 1;
                    return;
                }
                c.has_data = true;
                o.has_data = true;
                o.dirty = true;
                o.last_ts = ts;
                o.ltp = tick.ltp;
                o.bid = tick.bid;
                o.ask = tick.ask;
                o.oi = tick.oi;
                o.volume = tick.volume;
                if o.day_first.is_none() {
                    o.day_first = Some((tick.ltp, tick.oi));
                }
                o.ring.record(ts.div_euclid(BAR_MICROS), tick.oi);
            }
        }
    }

    /// Rolls every instrument to a new IST trading day (once per day, O(instruments)).
    fn roll_day(&mut self, day: i64) {
        self.session_day = Some(day);
        for chain in &mut self.chains {
            for o in chain.options.iter_mut().filter(|o| o.has_data) {
                o.prev_close = Some((o.ltp, o.oi));
                o.day_first = None;
                o.volume = 0;
                o.ring.clear();
            }
        }
    }

    /// Emits at the latest cadence boundary `B ≤ watermark` not yet emitted (at most one
    /// emission per chain per call, however many boundaries were crossed): for every chain
    /// with option data, a [`ChainAnalytics`] (when a reference price is known) and a
    /// [`StrikeAnalytics`] per option that ticked since its previous emission; if a minute
    /// boundary lies in `(previous B, B]`, the chain output is flagged `minute_close` and the
    /// [`MoneynessPoint`]s of the minute that closed follow. Outputs are appended to `out`.
    pub fn advance(&mut self, watermark_micros: i64, out: &mut Vec<EngineOutput>) {
        let Some(last) = self.last_boundary else {
            return;
        };
        let every = self.settings.emit_every_micros.max(1);
        let boundary = watermark_micros.div_euclid(every) * every;
        if boundary <= last {
            return;
        }
        let minute_close = boundary.div_euclid(BAR_MICROS) > last.div_euclid(BAR_MICROS);
        self.last_boundary = Some(boundary);
        let mut scratch = Scratch {
            parity: std::mem::take(&mut self.parity_scratch),
            oi: std::mem::take(&mut self.oi_scratch),
            deltas: std::mem::take(&mut self.delta_scratch),
        };
        for chain in self.chains.iter_mut().filter(|c| c.has_data) {
            emit_chain(
                &self.settings,
                &self.series,
                chain,
                boundary,
                minute_close,
                &mut scratch,
                out,
            );
        }
        self.parity_scratch = scratch.parity;
        self.oi_scratch = scratch.oi;
        self.delta_scratch = scratch.deltas;
    }
}

/// Reusable buffers for one emission (no allocation per emission once warm).
struct Scratch {
    parity: Vec<ParityQuote>,
    oi: Vec<StrikeOi>,
    deltas: Vec<(f64, f64)>,
}

/// All the work of one chain at one boundary: O(options in the chain).
fn emit_chain(
    settings: &ChainSettings,
    series: &[Series],
    chain: &mut Chain,
    boundary: i64,
    minute_close: bool,
    scratch: &mut Scratch,
    out: &mut Vec<EngineOutput>,
) {
    let convention = settings.pricer.convention;
    let t = date_from_days(chain.expiry)
        .map(|d| years_to_expiry(boundary, d, settings.day_count))
        .unwrap_or(0.0);
    let spot = chain.spot.and_then(|i| series[i].price);
    let future = chain.future.and_then(|i| series[i].price);

    scratch.parity.clear();
    for row in &chain.rows {
        if let (Some(c), Some(p)) = (row.ce, row.pe) {
            let (c, p) = (&chain.options[c], &chain.options[p]);
            if let (Some(call), Some(put)) = (c.parity_price(), p.parity_price()) {
                scratch.parity.push(ParityQuote {
                    strike: row.strike,
                    call,
                    put,
                });
            }
        }
    }
    let parity = parity_forward(&scratch.parity, convention.rate(), t)
        .map(|p| p.forward)
        .filter(|f| f.is_finite() && *f > 0.0);

    let forward = future
        .map(|f| (f, ReferenceKind::Future))
        .or(parity.map(|f| (f, ReferenceKind::ParityForward)))
        .or(spot.map(|s| (convention.forward(s, t), ReferenceKind::Spot)));
    let reference = match settings.reference {
        ReferenceChoice::Forward => forward,
        ReferenceChoice::Spot => spot.map(|s| (s, ReferenceKind::Spot)).or(forward),
    };
    let underlying = match convention {
        Convention::Black76 { .. } => forward.map(|(f, _)| f),
        Convention::BlackScholesSpot { .. } => spot,
    };

    // IV and Greeks of every option with data.
    for o in chain.options.iter_mut().filter(|o| o.has_data) {
        o.calc = match underlying {
            None => Err(NoIvReason::NoUnderlying),
            Some(u) => Quote {
                bid: o.bid,
                ask: o.ask,
            }
            .mid()
            .and_then(|price| {
                settings
                    .pricer
                    .iv_and_greeks(o.kind(), u, o.strike, t, price)
            })
            .map_err(no_iv_reason),
        };
    }
    let gex_of = |o: &OptionState| -> Option<f64> {
        let g = o.calc.as_ref().ok()?.greeks.gamma;
        let u = underlying?;
        let v = o.oi as f64 * g * u * o.lot_size * 0.01;
        let v = if o.side == OptionSide::PE { -v } else { v };
        v.is_finite().then_some(v)
    };

    // Chain aggregates, one pass over the strikes.
    let (mut ce_oi, mut pe_oi, mut ce_vol, mut pe_vol) = (0i64, 0i64, 0i64, 0i64);
    let (mut ce_d, mut pe_d): (Option<i64>, Option<i64>) = (None, None);
    // (strike, OI) of the largest put / call OI so far.
    let mut support: Option<(f64, i64)> = None;
    let mut resistance: Option<(f64, i64)> = None;
    let mut net_gex: Option<f64> = None;
    scratch.oi.clear();
    for row in &chain.rows {
        let ce = row.ce.map(|i| &chain.options[i]);
        let pe = row.pe.map(|i| &chain.options[i]);
        let row_ce = ce.map_or(0, OptionState::oi_if_data);
        let row_pe = pe.map_or(0, OptionState::oi_if_data);
        scratch.oi.push(StrikeOi {
            strike: row.strike,
            ce_oi: row_ce,
            pe_oi: row_pe,
        });
        for (o, total, vol, change) in [
            (ce, &mut ce_oi, &mut ce_vol, &mut ce_d),
            (pe, &mut pe_oi, &mut pe_vol, &mut pe_d),
        ] {
            let Some(o) = o.filter(|o| o.has_data) else {
                continue;
            };
            *total = total.saturating_add(o.oi);
            *vol = vol.saturating_add(o.volume);
            if let Some((_, prev_oi)) = o.prev_close {
                *change = Some(change.unwrap_or(0).saturating_add(o.oi - prev_oi));
            }
            if let Some(g) = gex_of(o) {
                net_gex = Some(net_gex.unwrap_or(0.0) + g);
            }
        }
        if row_ce > 0 && resistance.is_none_or(|(_, oi)| row_ce > oi) {
            resistance = Some((row.strike, row_ce));
        }
        if row_pe > 0 && support.is_none_or(|(_, oi)| row_pe > oi) {
            support = Some((row.strike, row_pe));
        }
    }

    // ATM: listed strike nearest the reference (ties to the lower strike).
    let atm = reference.and_then(|(r, _)| {
        let i = chain.rows.partition_point(|row| row.strike < r);
        let below = i.checked_sub(1);
        match (below, (i < chain.rows.len()).then_some(i)) {
            (Some(b), Some(a)) => {
                if r - chain.rows[b].strike <= chain.rows[a].strike - r {
                    Some(b)
                } else {
                    Some(a)
                }
            }
            (b, a) => b.or(a),
        }
    });

    if let (Some((reference_price, reference_kind)), Some(atm_i)) = (reference, atm) {
        let row = chain.rows[atm_i];
        let ce = row.ce.map(|i| &chain.options[i]).filter(|o| o.has_data);
        let pe = row.pe.map(|i| &chain.options[i]).filter(|o| o.has_data);
        let atm_straddle = match (ce, pe) {
            (Some(c), Some(p)) if c.ltp > 0.0 && p.ltp > 0.0 => Some(c.ltp + p.ltp),
            _ => None,
        };
        let ivs: Vec<f64> = [ce, pe]
            .into_iter()
            .flatten()
            .filter_map(|o| o.calc.as_ref().ok().map(|c| c.iv))
            .collect();
        let atm_iv = (!ivs.is_empty()).then(|| ivs.iter().sum::<f64>() / ivs.len() as f64);

        let mut iv_at = |side: OptionSide, target: f64| {
            scratch.deltas.clear();
            for row in &chain.rows {
                let id = match side {
                    OptionSide::CE => row.ce,
                    OptionSide::PE => row.pe,
                };
                if let Some(Ok(c)) = id.map(|i| &chain.options[i]).map(|o| o.calc.as_ref()) {
                    scratch.deltas.push((c.greeks.delta, c.iv));
                }
            }
            iv_at_delta(&scratch.deltas, target)
        };
        // Only options with data have an Ok calc (others keep the NoUnderlying default).
        let skew_25d = match (iv_at(OptionSide::PE, -0.25), iv_at(OptionSide::CE, 0.25)) {
            (Some(p), Some(c)) => Some(p - c),
            _ => None,
        };
        let basis = match (future, spot) {
            (Some(f), Some(s)) => Some(f - s),
            _ => None,
        };
        let annualised_carry = match (future, spot) {
            (Some(f), Some(s)) if t > 0.0 && s > 0.0 => {
                Some((f / s - 1.0) / t).filter(|v| v.is_finite())
            }
            _ => None,
        };
        out.push(EngineOutput::Chain(ChainAnalytics {
            underlying: chain.underlying.clone(),
            expiry: chain.expiry,
            ts: boundary,
            minute_close,
            time_to_expiry: t,
            spot,
            future,
            parity_forward: parity,
            reference_price,
            reference_kind,
            atm_strike: row.strike,
            pcr_oi: ratio(pe_oi as f64, ce_oi as f64),
            pcr_volume: ratio(pe_vol as f64, ce_vol as f64),
            max_pain: max_pain(&scratch.oi),
            atm_straddle,
            implied_move_pct: atm_straddle.and_then(|s| ratio(s * 100.0, reference_price)),
            atm_iv,
            skew_25d,
            support: support.map(|(k, _)| k),
            resistance: resistance.map(|(k, _)| k),
            basis,
            annualised_carry,
            net_gex,
            total_ce_oi: ce_oi,
            total_pe_oi: pe_oi,
            ce_oi_change_prev_close: ce_d,
            pe_oi_change_prev_close: pe_d,
        }));
    }

    // Per-option rows for the options that ticked since their last emission.
    let window_minute =
        (boundary - i64::from(settings.oi_window_minutes) * BAR_MICROS).div_euclid(BAR_MICROS) - 1;
    for (row_i, row) in chain.rows.iter().enumerate() {
        let strike_oi = scratch.oi.get(row_i).copied();
        let strike_pcr = match (row.ce, row.pe, strike_oi) {
            (Some(_), Some(_), Some(s)) => ratio(s.pe_oi as f64, s.ce_oi as f64),
            _ => None,
        };
        for id in [row.ce, row.pe].into_iter().flatten() {
            let o = &chain.options[id];
            if !o.dirty {
                continue;
            }
            let gex = gex_of(o);
            let o = &mut chain.options[id];
            o.dirty = false;
            let base = o.prev_close.or(o.day_first);
            let build = base.map_or(BuildUp::Neutral, |(p, oi)| build_up(o.ltp - p, o.oi - oi));
            let calc = o.calc.as_ref().ok();
            let greek = |f: fn(&IvGreeks) -> f64| calc.map(f).filter(|v| v.is_finite());
            out.push(EngineOutput::Strike(StrikeAnalytics {
                instrument_token: o.token,
                tradingsymbol: o.tradingsymbol.clone(),
                underlying: chain.underlying.clone(),
                expiry: chain.expiry,
                strike: o.strike,
                option_type: o.side,
                ts: boundary,
                ltp: o.ltp,
                ltp_change_prev_close: o.prev_close.map(|(p, _)| o.ltp - p),
                oi: o.oi,
                oi_change_prev_close: o.prev_close.map(|(_, oi)| o.oi - oi),
                oi_change_window: o.ring.as_of(window_minute).map(|oi| o.oi - oi),
                volume: o.volume,
                bid: o.bid,
                ask: o.ask,
                iv: greek(|c| c.iv),
                no_iv_reason: o.calc.as_ref().err().copied(),
                delta: greek(|c| c.greeks.delta),
                gamma: greek(|c| c.greeks.gamma),
                theta: greek(|c| c.greeks.theta),
                vega: greek(|c| c.greeks.vega),
                rho: greek(|c| c.greeks.rho),
                build_up: build,
                strike_pcr,
                gex,
            }));
        }
    }

    // Moneyness series at the minute close.
    if !minute_close {
        return;
    }
    let (Some(atm_i), Some(_)) = (atm, reference) else {
        return;
    };
    let atm_strike = chain.rows[atm_i].strike;
    let minute = boundary.div_euclid(BAR_MICROS) * BAR_MICROS - BAR_MICROS;
    let levels = i64::from(settings.moneyness_levels);
    for row in &chain.rows {
        let level = match chain.step {
            Some(step) => ((row.strike - atm_strike) / step).round(),
            None => 0.0,
        };
        let outside = level.is_nan() || level.abs() > levels as f64;
        if outside || (chain.step.is_none() && row.strike != atm_strike) {
            continue;
        }
        let level = level as i32;
        for id in [row.ce, row.pe].into_iter().flatten() {
            let o = &chain.options[id];
            if !o.has_data {
                continue;
            }
            let calc = o.calc.as_ref().ok();
            out.push(EngineOutput::Moneyness(MoneynessPoint {
                underlying: chain.underlying.clone(),
                expiry: chain.expiry,
                minute,
                bucket: moneyness_bucket(o.side, level),
                level,
                side: o.side,
                instrument_token: o.token,
                strike: o.strike,
                ltp: o.ltp,
                iv: calc.map(|c| c.iv),
                delta: calc.map(|c| c.greeks.delta),
                oi: o.oi,
                volume: o.volume,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oi_ring_back_fills_and_expires() {
        let mut r = OiRing::new(2);
        assert_eq!(r.as_of(10), None);
        r.record(10, 100);
        r.record(10, 110);
        r.record(13, 200);
        assert_eq!(r.as_of(10), Some(110));
        assert_eq!(r.as_of(11), Some(110));
        assert_eq!(r.as_of(12), Some(110));
        assert_eq!(r.as_of(13), Some(200));
        assert_eq!(r.as_of(20), Some(200));
        assert_eq!(r.as_of(9), None);
        r.record(30, 300);
        assert_eq!(r.as_of(27), Some(200));
        assert_eq!(r.as_of(26), None);
        r.clear();
        assert_eq!(r.as_of(30), None);
    }

    #[test]
    fn token_hasher_spreads_neighbouring_tokens() {
        use std::hash::Hash;
        let h = |t: i64| {
            let mut s = TokenHasher::default();
            t.hash(&mut s);
            s.finish()
        };
        assert_ne!(h(1) >> 57, h(2) >> 57);
        assert_ne!(h(256) & 0xff, h(512) & 0xff);
    }
}
