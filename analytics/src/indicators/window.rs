//! Fixed-size windows shared by the windowed indicators, so none of them re-scans history.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::registry::MAX_PERIOD;

/// The last `capacity` values in arrival order, stored once up front: windowed sums drop
/// the value leaving the window in O(1) without allocating per bar.
///
/// Serialisable as part of a processor snapshot; deserialising checks the invariants the
/// indexing relies on (non-empty storage, cursor and length in range), so a damaged
/// snapshot is rejected instead of panicking later.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RingData")]
pub(crate) struct Ring {
    buf: Vec<f64>,
    /// Slot the next value is written to (also the oldest slot once full).
    next: usize,
    len: usize,
}

/// [`Ring`] as it arrives from a snapshot, before its invariants are checked.
#[derive(Deserialize)]
struct RingData {
    buf: Vec<f64>,
    next: usize,
    len: usize,
}

impl TryFrom<RingData> for Ring {
    type Error = &'static str;

    fn try_from(d: RingData) -> Result<Self, Self::Error> {
        let cap = d.buf.len();
        if cap == 0 || cap > MAX_PERIOD || d.next >= cap || d.len > cap {
            return Err("inconsistent ring buffer");
        }
        Ok(Self {
            buf: d.buf,
            next: d.next,
            len: d.len,
        })
    }
}

impl Ring {
    /// An empty ring holding at most `capacity` values (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            buf: vec![0.0; capacity.max(1)],
            next: 0,
            len: 0,
        }
    }

    /// Appends `x`, returning the value it pushed out once the ring is full.
    pub(crate) fn push(&mut self, x: f64) -> Option<f64> {
        let cap = self.buf.len();
        let slot = &mut self.buf[self.next];
        let evicted = if self.len == cap {
            Some(*slot)
        } else {
            self.len += 1;
            None
        };
        *slot = x;
        self.next = (self.next + 1) % cap;
        evicted
    }

    /// The oldest value still held (the next one to be evicted when full).
    pub(crate) fn oldest(&self) -> Option<f64> {
        if self.len == 0 {
            return None;
        }
        let cap = self.buf.len();
        let idx = (self.next + cap - self.len) % cap;
        Some(self.buf[idx])
    }

    /// Number of values held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether the ring holds `capacity` values.
    pub(crate) fn is_full(&self) -> bool {
        self.len == self.buf.len()
    }

    /// The values held, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = f64> + '_ {
        let cap = self.buf.len();
        let first = (self.next + cap - self.len) % cap;
        (0..self.len).map(move |i| self.buf[(first + i) % cap])
    }

    /// Empties the ring, keeping its storage.
    pub(crate) fn clear(&mut self) {
        self.next = 0;
        self.len = 0;
    }
}

/// Rolling maximum (or minimum) over the last `window` values with a monotonic deque:
/// amortised O(1) per value, unlike re-scanning the window when the extreme expires.
///
/// Serialisable as part of a processor snapshot; deserialising checks the window and
/// reserves the queue's full capacity again, so a restored queue never grows per bar.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "RollingExtremeData")]
pub(crate) struct RollingExtreme {
    /// (sequence number, value), values strictly decreasing (max) / increasing (min).
    deque: VecDeque<(u64, f64)>,
    window: u64,
    seq: u64,
    max: bool,
}

/// [`RollingExtreme`] as it arrives from a snapshot, before its invariants are checked.
#[derive(Deserialize)]
struct RollingExtremeData {
    deque: VecDeque<(u64, f64)>,
    window: u64,
    seq: u64,
    max: bool,
}

impl TryFrom<RollingExtremeData> for RollingExtreme {
    type Error = &'static str;

    fn try_from(d: RollingExtremeData) -> Result<Self, Self::Error> {
        let window = usize::try_from(d.window).unwrap_or(usize::MAX);
        if window == 0 || window > MAX_PERIOD || d.deque.len() > window {
            return Err("inconsistent rolling extreme");
        }
        let mut deque = d.deque;
        deque.reserve_exact((window + 1).saturating_sub(deque.len()));
        Ok(Self {
            deque,
            window: d.window,
            seq: d.seq,
            max: d.max,
        })
    }
}

impl RollingExtreme {
    /// Rolling maximum over `window` values.
    pub(crate) fn max(window: usize) -> Self {
        Self::new(window, true)
    }

    /// Rolling minimum over `window` values.
    pub(crate) fn min(window: usize) -> Self {
        Self::new(window, false)
    }

    fn new(window: usize, max: bool) -> Self {
        let window = window.max(1);
        Self {
            deque: VecDeque::with_capacity(window + 1),
            window: window as u64,
            seq: 0,
            max,
        }
    }

    /// Adds `x` and returns the extreme of the last `window` values including `x`.
    pub(crate) fn push(&mut self, x: f64) -> f64 {
        while let Some(&(_, back)) = self.deque.back() {
            let dominated = if self.max { back <= x } else { back >= x };
            if !dominated {
                break;
            }
            self.deque.pop_back();
        }
        self.deque.push_back((self.seq, x));
        while let Some(&(seq, _)) = self.deque.front() {
            if seq + self.window > self.seq {
                break;
            }
            self.deque.pop_front();
        }
        self.seq += 1;
        self.deque.front().map_or(x, |&(_, v)| v)
    }

    /// Forgets all values.
    pub(crate) fn clear(&mut self) {
        self.deque.clear();
        self.seq = 0;
    }
}
