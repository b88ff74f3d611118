//! The chain analytics engine: its settings, outputs and counters, and how ticks and the
//! watermark drive it. See the parent module for the contract; the state it keeps is in
//! `state`, the work of one emission in `emission`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use strikeflow_schemas::{
    ChainAnalytics, ChainKey, Instrument, InstrumentType, MoneynessPoint, NoIvReason, OptionSide,
    StrikeAnalytics, Tick,
};

use super::emission::{emit_chain, Scratch};
use super::formulas::StrikeOi;
use super::state::{ist_day, Chain, OiRing, OptionState, Series, Slot, StrikeRow, TokenMap};
use crate::bars::BAR_MICROS;
use crate::pricing::{DayCount, ParityQuote, Pricer};

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
