//! The state the chain engine keeps between ticks: instruments, their latest quotes, the
//! per-minute OI ring, and each chain's strikes. Plain serialisable data, so a snapshot of
//! the engine is a snapshot of these.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};
use strikeflow_schemas::{NoIvReason, OptionSide};

use crate::pricing::{IvGreeks, OptionKind, Quote};

const IST_OFFSET_MICROS: i64 = 330 * 60_000_000;
const DAY_MICROS: i64 = 86_400_000_000;

/// Multiplicative hasher for instrument tokens: the token map is hit once per tick, and
/// SipHash would be a noticeable share of the per-tick cost. Tokens are not attacker-chosen.
#[derive(Default, Clone, Copy)]
pub(super) struct TokenHasher(u64);

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

pub(super) type TokenMap<V> = HashMap<i64, V, BuildHasherDefault<TokenHasher>>;

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(super) enum Slot {
    Option { chain: usize, option: usize },
    Series(usize),
}

/// A spot index or a future: a price series shared by every chain of its underlying.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Series {
    pub(super) price: Option<f64>,
    pub(super) last_ts: i64,
}

/// Per-minute ring of OI ("OI as of the end of minute m") for the intraday ΔOI window.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OiRing {
    pub(super) slots: Box<[(i64, i64)]>,
    pub(super) last_minute: Option<i64>,
}

impl OiRing {
    pub(super) fn new(window_minutes: u32) -> Self {
        // The current minute m and the window's target minute m − N − 1 must both fit.
        let len = window_minutes.max(1) as usize + 2;
        Self {
            slots: vec![(i64::MIN, 0); len].into_boxed_slice(),
            last_minute: None,
        }
    }

    pub(super) fn index(&self, minute: i64) -> usize {
        minute.rem_euclid(self.slots.len() as i64) as usize
    }

    /// O(1) except on the first tick of a new minute, which back-fills at most `len` skipped
    /// minutes with the previous OI (OI is unchanged while no tick arrives).
    pub(super) fn record(&mut self, minute: i64, oi: i64) {
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
    pub(super) fn as_of(&self, minute: i64) -> Option<i64> {
        let last = self.last_minute?;
        if minute >= last {
            return Some(self.slots[self.index(last)].1);
        }
        let (m, oi) = self.slots[self.index(minute)];
        (m == minute).then_some(oi)
    }

    pub(super) fn clear(&mut self) {
        self.slots.fill((i64::MIN, 0));
        self.last_minute = None;
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct OptionState {
    pub(super) token: i64,
    pub(super) tradingsymbol: String,
    pub(super) strike: f64,
    pub(super) side: OptionSide,
    pub(super) lot_size: f64,
    pub(super) has_data: bool,
    pub(super) dirty: bool,
    pub(super) last_ts: i64,
    pub(super) ltp: f64,
    pub(super) bid: f64,
    pub(super) ask: f64,
    pub(super) oi: i64,
    pub(super) volume: i64,
    /// Last (LTP, OI) of the previous trading day.
    pub(super) prev_close: Option<(f64, i64)>,
    /// First (LTP, OI) seen this trading day: the build-up base when there is no previous close.
    pub(super) day_first: Option<(f64, i64)>,
    pub(super) ring: OiRing,
    /// IV and Greeks at the latest emission.
    pub(super) calc: Result<IvGreeks, NoIvReason>,
}

impl OptionState {
    pub(super) fn kind(&self) -> OptionKind {
        match self.side {
            OptionSide::CE => OptionKind::Call,
            OptionSide::PE => OptionKind::Put,
        }
    }

    pub(super) fn oi_if_data(&self) -> i64 {
        if self.has_data {
            self.oi
        } else {
            0
        }
    }

    /// Price for parity: the mid of a two-sided market, else a positive LTP.
    pub(super) fn parity_price(&self) -> Option<f64> {
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
pub(super) struct StrikeRow {
    pub(super) strike: f64,
    pub(super) ce: Option<usize>,
    pub(super) pe: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Chain {
    pub(super) underlying: String,
    pub(super) expiry: i32,
    pub(super) spot: Option<usize>,
    pub(super) future: Option<usize>,
    pub(super) has_data: bool,
    pub(super) options: Vec<OptionState>,
    /// Sorted by strike.
    pub(super) rows: Vec<StrikeRow>,
    /// Smallest gap between listed strikes.
    pub(super) step: Option<f64>,
}

/// The IST calendar day of an event time, as days since the epoch: the trading day.
pub(super) fn ist_day(ts: i64) -> i64 {
    (ts + IST_OFFSET_MICROS).div_euclid(DAY_MICROS)
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
