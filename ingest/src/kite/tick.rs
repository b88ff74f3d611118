//! From Kite packets to complete [`Tick`]s, and back (for the fake ticker).
//!
//! Only full packets carry everything a tick needs; quote and LTP packets are partial
//! updates. [`TickAssembler`] keeps the last known state per token so every packet yields a
//! complete tick:
//!
//! | packet | exchange_ts | updates | carries over |
//! | --- | --- | --- | --- |
//! | full (184) | exchange timestamp (receive time if it is 0) | ltp, last qty, volume, OI, best bid/ask (depth level 0) | nothing |
//! | quote (44) | receive time (the packet has no timestamp) | ltp, last qty, volume | OI, bid, ask |
//! | LTP (8) | receive time | ltp | everything else |
//! | index quote (28) / full (32) | receive time / exchange timestamp | ltp | nothing: volume, OI, quantities and bid/ask are 0 |
//!
//! The receive time is the wall clock when the frame arrived: it is later than the trade by
//! the network latency, which is the best a packet without a timestamp allows. Kite's
//! timestamps are whole seconds, so ticks from full packets are stamped to the second.

use std::collections::HashMap;

use strikeflow_schemas::Tick;

use super::decode::{is_tradable, DepthLevel, Full, Index, Packet, Quote, DEPTH_LEVELS};

/// Turns a stream of (possibly partial) packets into complete ticks, one per packet.
#[derive(Debug, Clone, Default)]
pub struct TickAssembler {
    last: HashMap<u32, Tick>,
}

impl TickAssembler {
    /// An assembler that knows nothing yet (a token's first partial packet starts from zeros).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one packet received at `received_micros` (UTC micros) and returns the token's
    /// complete tick after it; `None` for a packet without a known layout.
    pub fn apply(&mut self, packet: &Packet, received_micros: i64) -> Option<Tick> {
        if matches!(packet, Packet::Unknown(_)) {
            return None;
        }
        let token = packet.token()?;
        let state = self
            .last
            .entry(token)
            .or_insert_with(|| empty(token, received_micros));
        match packet {
            Packet::Ltp(p) => {
                state.ltp = p.ltp;
                state.exchange_ts = received_micros;
            }
            Packet::Index(p) => {
                *state = Tick {
                    ltp: p.ltp,
                    exchange_ts: stamp(p.exchange_timestamp, received_micros),
                    ..empty(token, received_micros)
                };
            }
            Packet::Quote(q) => {
                state.ltp = q.ltp;
                state.last_qty = i64::from(q.last_qty);
                state.volume = i64::from(q.volume);
                state.exchange_ts = received_micros;
            }
            Packet::Full(f) => {
                let (bid, ask) = (f.bids[0], f.asks[0]);
                *state = Tick {
                    instrument_token: i64::from(token),
                    exchange_ts: stamp(Some(f.exchange_timestamp), received_micros),
                    ltp: f.quote.ltp,
                    last_qty: i64::from(f.quote.last_qty),
                    volume: i64::from(f.quote.volume),
                    oi: i64::from(f.oi),
                    bid: bid.price,
                    bid_qty: i64::from(bid.qty),
                    ask: ask.price,
                    ask_qty: i64::from(ask.qty),
                };
            }
            Packet::Unknown(_) => return None,
        }
        Some(state.clone())
    }
}

fn empty(token: u32, ts: i64) -> Tick {
    Tick {
        instrument_token: i64::from(token),
        exchange_ts: ts,
        ltp: 0.0,
        last_qty: 0,
        volume: 0,
        oi: 0,
        bid: 0.0,
        bid_qty: 0,
        ask: 0.0,
        ask_qty: 0,
    }
}

/// Exchange seconds to micros; a missing or zero timestamp falls back to the receive time.
fn stamp(exchange_seconds: Option<u32>, received_micros: i64) -> i64 {
    match exchange_seconds {
        Some(s) if s > 0 => i64::from(s) * 1_000_000,
        _ => received_micros,
    }
}

/// The full-mode packet a Kite server would send for `tick` (an index full packet for an
/// index token): lets the fake ticker replay simulated or recorded ticks. Sub-second time is
/// truncated (Kite stamps whole seconds); OHLC, average price and the other depth levels are
/// not in a tick and are sent as the ltp / zeros. `None` if a field does not fit the format
/// (token, quantities or the timestamp outside the `u32` range).
pub fn packet_from_tick(tick: &Tick) -> Option<Packet> {
    let u = |v: i64| u32::try_from(v).ok();
    let token = u(tick.instrument_token)?;
    let seconds = u(tick.exchange_ts.div_euclid(1_000_000))?;
    if !is_tradable(token) {
        return Some(Packet::Index(Index {
            token,
            ltp: tick.ltp,
            high: tick.ltp,
            low: tick.ltp,
            open: tick.ltp,
            close: tick.ltp,
            change: 0.0,
            exchange_timestamp: Some(seconds),
        }));
    }
    let mut bids = [DepthLevel::default(); DEPTH_LEVELS];
    let mut asks = [DepthLevel::default(); DEPTH_LEVELS];
    bids[0] = DepthLevel {
        qty: u(tick.bid_qty)?,
        price: tick.bid,
        orders: u16::from(tick.bid_qty > 0),
    };
    asks[0] = DepthLevel {
        qty: u(tick.ask_qty)?,
        price: tick.ask,
        orders: u16::from(tick.ask_qty > 0),
    };
    Some(Packet::Full(Box::new(Full {
        quote: Quote {
            token,
            ltp: tick.ltp,
            last_qty: u(tick.last_qty)?,
            avg_price: tick.ltp,
            volume: u(tick.volume)?,
            total_buy_qty: u(tick.bid_qty)?,
            total_sell_qty: u(tick.ask_qty)?,
            open: tick.ltp,
            high: tick.ltp,
            low: tick.ltp,
            close: tick.ltp,
        },
        last_trade_time: seconds,
        oi: u(tick.oi)?,
        oi_day_high: u(tick.oi)?,
        oi_day_low: u(tick.oi)?,
        exchange_timestamp: seconds,
        bids,
        asks,
    })))
}
