//! Kite's binary market-data frames: a pure decoder, and its exact inverse.
//!
//! A frame is `u16 packet_count`, then per packet `u16 length` + `length` bytes, all
//! big-endian; a 1-byte frame is a heartbeat. The packet kind follows from its length:
//!
//! | length | kind | fields (byte offsets) |
//! | --- | --- | --- |
//! | 8 | LTP | token 0, ltp 4 |
//! | 28 | index quote | token 0, ltp 4, high 8, low 12, open 16, close 20, change 24 |
//! | 32 | index full | index quote + exchange timestamp 28 |
//! | 44 | quote | token 0, ltp 4, last qty 8, avg price 12, volume 16, total buy qty 20, total sell qty 24, open 28, high 32, low 36, close 40 |
//! | 184 | full | quote + last trade time 44, OI 48, OI day high 52, OI day low 56, exchange timestamp 60, 5 bid + 5 ask levels of 12 bytes from 64 (qty u32, price u32, orders u16, 2 pad) |
//!
//! Integers are read unsigned, exactly as the public `kiteconnect` Python client
//! (`KiteTicker._parse_binary`) reads them; prices are divided by the segment's divisor
//! ([`price_divisor`]). Index packets put high/low *before* open/close, unlike quotes.
//! Timestamps are Unix seconds. The index `change` field (bytes 24..28) is not read by
//! `kiteconnect`, which recomputes it; it is kept here (signed) so encoding is lossless.

use std::fmt;

/// Low byte of an instrument token: the exchange segment (kiteconnect's `EXCHANGE_MAP`).
/// Kept as named constants because the price divisor and tradability depend on it.
pub mod segment {
    /// NSE cash.
    pub const NSE: u32 = 1;
    /// NSE futures and options.
    pub const NFO: u32 = 2;
    /// NSE currency derivatives: prices in 1e-7 rupees.
    pub const CDS: u32 = 3;
    /// BSE cash.
    pub const BSE: u32 = 4;
    /// BSE futures and options.
    pub const BFO: u32 = 5;
    /// BSE currency derivatives: prices in 1e-4 rupees.
    pub const BCD: u32 = 6;
    /// MCX commodities.
    pub const MCX: u32 = 7;
    /// MCX-SX.
    pub const MCXSX: u32 = 8;
    /// Indices: quoted, never traded.
    pub const INDICES: u32 = 9;
    /// NCDEX commodities: prices in 1e-4 rupees.
    pub const NCO: u32 = 12;
}

/// Length of an LTP packet.
pub const LTP_LEN: usize = 8;
/// Length of an index quote packet.
pub const INDEX_QUOTE_LEN: usize = 28;
/// Length of an index full packet.
pub const INDEX_FULL_LEN: usize = 32;
/// Length of a quote packet.
pub const QUOTE_LEN: usize = 44;
/// Length of a full packet.
pub const FULL_LEN: usize = 184;
/// Depth levels per side in a full packet.
pub const DEPTH_LEVELS: usize = 5;
/// A heartbeat frame, as the fake ticker sends it (any 1-byte frame is one).
pub const HEARTBEAT: [u8; 1] = [0];

/// What the integer prices of a token are divided by to get rupees, per segment, exactly as
/// `kiteconnect` does: CDS 10 000 000, BCD and NCO 10 000, everything else 100 (paise).
pub fn price_divisor(token: u32) -> f64 {
    match token & 0xff {
        segment::CDS => 10_000_000.0,
        segment::BCD | segment::NCO => 10_000.0,
        _ => 100.0,
    }
}

/// Whether a token can be traded (everything but the indices segment), as `kiteconnect`'s
/// `tradable` flag.
pub fn is_tradable(token: u32) -> bool {
    token & 0xff != segment::INDICES
}

/// An LTP-mode packet: the last traded price only.
#[derive(Debug, Clone, PartialEq)]
pub struct Ltp {
    /// Instrument token.
    pub token: u32,
    /// Last traded price, rupees.
    pub ltp: f64,
}

/// An index packet (quote or full mode): indices have no trades, so no quantities.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    /// Instrument token (segment 9).
    pub token: u32,
    /// Index value.
    pub ltp: f64,
    /// Day high.
    pub high: f64,
    /// Day low.
    pub low: f64,
    /// Day open.
    pub open: f64,
    /// Previous close.
    pub close: f64,
    /// Change as sent in bytes 24..28 (signed; `kiteconnect` ignores it).
    pub change: f64,
    /// Exchange timestamp, Unix seconds: present in full mode (32 bytes) only.
    pub exchange_timestamp: Option<u32>,
}

/// A quote-mode packet of a tradable instrument (no timestamp, no OI, no depth).
#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    /// Instrument token.
    pub token: u32,
    /// Last traded price, rupees.
    pub ltp: f64,
    /// Quantity of the last trade.
    pub last_qty: u32,
    /// Volume-weighted average traded price, rupees.
    pub avg_price: f64,
    /// Cumulative volume for the day.
    pub volume: u32,
    /// Total quantity bid.
    pub total_buy_qty: u32,
    /// Total quantity offered.
    pub total_sell_qty: u32,
    /// Day open.
    pub open: f64,
    /// Day high.
    pub high: f64,
    /// Day low.
    pub low: f64,
    /// Previous close.
    pub close: f64,
}

/// One market-depth level.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DepthLevel {
    /// Quantity at this price.
    pub qty: u32,
    /// Price, rupees.
    pub price: f64,
    /// Number of orders.
    pub orders: u16,
}

/// A full-mode packet: a quote plus times, OI and five levels of depth per side.
#[derive(Debug, Clone, PartialEq)]
pub struct Full {
    /// The quote part (bytes 0..44).
    pub quote: Quote,
    /// Time of the last trade, Unix seconds.
    pub last_trade_time: u32,
    /// Open interest.
    pub oi: u32,
    /// Day high of the open interest.
    pub oi_day_high: u32,
    /// Day low of the open interest.
    pub oi_day_low: u32,
    /// Exchange timestamp of this update, Unix seconds.
    pub exchange_timestamp: u32,
    /// Bids, best first.
    pub bids: [DepthLevel; DEPTH_LEVELS],
    /// Asks, best first.
    pub asks: [DepthLevel; DEPTH_LEVELS],
}

/// One decoded packet of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// 8 bytes.
    Ltp(Ltp),
    /// 28 (quote) or 32 (full) bytes.
    Index(Index),
    /// 44 bytes.
    Quote(Quote),
    /// 184 bytes (boxed: it is five times larger than the others).
    Full(Box<Full>),
    /// A well-framed packet of a length this decoder does not know; kept raw so the other
    /// packets of its frame survive (`kiteconnect` skips such packets silently).
    Unknown(Vec<u8>),
}

impl Packet {
    /// The instrument token, when the packet has one (an unknown packet of 4+ bytes is assumed
    /// to start with it, as every known kind does).
    pub fn token(&self) -> Option<u32> {
        match self {
            Self::Ltp(p) => Some(p.token),
            Self::Index(p) => Some(p.token),
            Self::Quote(p) => Some(p.token),
            Self::Full(p) => Some(p.quote.token),
            Self::Unknown(bytes) => bytes
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        }
    }

    /// The streaming mode the packet belongs to, in `kiteconnect`'s words (`ltp`, `quote`,
    /// `full`); `None` for unknown packets.
    pub fn mode(&self) -> Option<&'static str> {
        match self {
            Self::Ltp(_) => Some("ltp"),
            Self::Index(p) if p.exchange_timestamp.is_some() => Some("full"),
            Self::Index(_) | Self::Quote(_) => Some("quote"),
            Self::Full(_) => Some("full"),
            Self::Unknown(_) => None,
        }
    }
}

/// Why a frame could not be decoded. The framing itself is broken, so none of its packets
/// are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A zero-byte frame (not even a heartbeat).
    Empty,
    /// The frame ends inside the 2-byte length of packet `packet` (0-based).
    TruncatedLength {
        /// Index of the packet.
        packet: usize,
        /// Bytes left where the length should be.
        available: usize,
    },
    /// Packet `packet` declares more bytes than the frame has left.
    TruncatedPacket {
        /// Index of the packet.
        packet: usize,
        /// Its declared length.
        declared: usize,
        /// Bytes left in the frame.
        available: usize,
    },
    /// Bytes remain after the declared number of packets.
    TrailingBytes {
        /// Packets the frame declared.
        packets: usize,
        /// Bytes left over.
        extra: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => write!(f, "empty frame"),
            Self::TruncatedLength { packet, available } => {
                write!(
                    f,
                    "frame ends inside the length of packet {packet} ({available} bytes left)"
                )
            }
            Self::TruncatedPacket {
                packet,
                declared,
                available,
            } => {
                write!(
                    f,
                    "packet {packet} declares {declared} bytes but only {available} are left"
                )
            }
            Self::TrailingBytes { packets, extra } => {
                write!(
                    f,
                    "{extra} bytes left over after the {packets} declared packets"
                )
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Whether a frame is a heartbeat (a single byte).
pub fn is_heartbeat(frame: &[u8]) -> bool {
    frame.len() == 1
}

/// Decodes one binary frame into its packets. A heartbeat yields no packets. Never panics:
/// broken framing is a [`DecodeError`].
pub fn decode_frame(bytes: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    match bytes.len() {
        0 => return Err(DecodeError::Empty),
        1 => return Ok(Vec::new()),
        _ => {}
    }
    let count = usize::from(be_u16(bytes, 0));
    // Every packet takes at least its 2-byte length, so a frame of n bytes holds at most
    // (n - 2) / 2: reserving the declared count instead let a 3-byte frame reserve 65 535
    // packets (found by fuzzing, see docs/fuzzing.md).
    let mut packets = Vec::with_capacity(count.min((bytes.len() - 2) / 2));
    let mut at = 2;
    for packet in 0..count {
        let available = bytes.len() - at;
        if available < 2 {
            return Err(DecodeError::TruncatedLength { packet, available });
        }
        let declared = usize::from(be_u16(bytes, at));
        at += 2;
        let available = bytes.len() - at;
        if declared > available {
            return Err(DecodeError::TruncatedPacket {
                packet,
                declared,
                available,
            });
        }
        packets.push(decode_packet(&bytes[at..at + declared]));
        at += declared;
    }
    if at != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            packets: count,
            extra: bytes.len() - at,
        });
    }
    Ok(packets)
}

/// Decodes one packet whose length the framing already checked.
fn decode_packet(p: &[u8]) -> Packet {
    if !matches!(
        p.len(),
        LTP_LEN | INDEX_QUOTE_LEN | INDEX_FULL_LEN | QUOTE_LEN | FULL_LEN
    ) {
        return Packet::Unknown(p.to_vec());
    }
    let u = |at: usize| be_u32(p, at);
    let token = u(0);
    let divisor = price_divisor(token);
    let price = |at: usize| f64::from(u(at)) / divisor;
    match p.len() {
        LTP_LEN => Packet::Ltp(Ltp {
            token,
            ltp: price(4),
        }),
        INDEX_QUOTE_LEN | INDEX_FULL_LEN => Packet::Index(Index {
            token,
            ltp: price(4),
            high: price(8),
            low: price(12),
            open: price(16),
            close: price(20),
            change: f64::from(u(24) as i32) / divisor,
            exchange_timestamp: (p.len() == INDEX_FULL_LEN).then(|| u(28)),
        }),
        _ => {
            let quote = Quote {
                token,
                ltp: price(4),
                last_qty: u(8),
                avg_price: price(12),
                volume: u(16),
                total_buy_qty: u(20),
                total_sell_qty: u(24),
                open: price(28),
                high: price(32),
                low: price(36),
                close: price(40),
            };
            if p.len() == QUOTE_LEN {
                return Packet::Quote(quote);
            }
            let level = |i: usize| {
                let at = 64 + 12 * i;
                DepthLevel {
                    qty: u(at),
                    price: price(at + 4),
                    orders: be_u16(p, at + 8),
                }
            };
            Packet::Full(Box::new(Full {
                quote,
                last_trade_time: u(44),
                oi: u(48),
                oi_day_high: u(52),
                oi_day_low: u(56),
                exchange_timestamp: u(60),
                bids: std::array::from_fn(level),
                asks: std::array::from_fn(|i| level(i + DEPTH_LEVELS)),
            }))
        }
    }
}

/// Encodes packets as one frame: the exact inverse of [`decode_frame`] (what the fake ticker
/// and the tests send). Prices are multiplied by the token's divisor and rounded to the
/// nearest integer (saturating at the `u32` range), so prices on the segment's grid
/// round-trip exactly; depth padding is written as zeros. No packets give a 2-byte frame
/// with a count of 0, not a heartbeat (that is [`HEARTBEAT`]).
///
/// # Panics
///
/// If there are more than 65 535 packets or an [`Packet::Unknown`] is longer than 65 535
/// bytes: neither is representable in the format.
pub fn encode_frame(packets: &[Packet]) -> Vec<u8> {
    let Ok(count) = u16::try_from(packets.len()) else {
        panic!(
            "a Kite frame holds at most 65535 packets, got {}",
            packets.len()
        );
    };
    let mut out = Vec::with_capacity(2 + packets.len() * (2 + QUOTE_LEN));
    out.extend_from_slice(&count.to_be_bytes());
    for packet in packets {
        let start = out.len();
        out.extend_from_slice(&[0, 0]);
        encode_packet(packet, &mut out);
        let Ok(len) = u16::try_from(out.len() - start - 2) else {
            panic!(
                "a Kite packet is at most 65535 bytes, got {}",
                out.len() - start - 2
            );
        };
        out[start..start + 2].copy_from_slice(&len.to_be_bytes());
    }
    out
}

fn encode_packet(packet: &Packet, out: &mut Vec<u8>) {
    let put = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_be_bytes());
    let raw = |price: f64, divisor: f64| (price * divisor).round() as u32;
    match packet {
        Packet::Ltp(p) => {
            let d = price_divisor(p.token);
            put(out, p.token);
            put(out, raw(p.ltp, d));
        }
        Packet::Index(p) => {
            let d = price_divisor(p.token);
            put(out, p.token);
            for price in [p.ltp, p.high, p.low, p.open, p.close] {
                put(out, raw(price, d));
            }
            out.extend_from_slice(&((p.change * d).round() as i32).to_be_bytes());
            if let Some(ts) = p.exchange_timestamp {
                put(out, ts);
            }
        }
        Packet::Quote(q) => encode_quote(q, out),
        Packet::Full(f) => {
            encode_quote(&f.quote, out);
            let d = price_divisor(f.quote.token);
            for v in [
                f.last_trade_time,
                f.oi,
                f.oi_day_high,
                f.oi_day_low,
                f.exchange_timestamp,
            ] {
                put(out, v);
            }
            for level in f.bids.iter().chain(&f.asks) {
                put(out, level.qty);
                put(out, raw(level.price, d));
                out.extend_from_slice(&level.orders.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
        }
        Packet::Unknown(bytes) => out.extend_from_slice(bytes),
    }
}

fn encode_quote(q: &Quote, out: &mut Vec<u8>) {
    let d = price_divisor(q.token);
    let raw = |price: f64| (price * d).round() as u32;
    let fields = [
        q.token,
        raw(q.ltp),
        q.last_qty,
        raw(q.avg_price),
        q.volume,
        q.total_buy_qty,
        q.total_sell_qty,
        raw(q.open),
        raw(q.high),
        raw(q.low),
        raw(q.close),
    ];
    for v in fields {
        out.extend_from_slice(&v.to_be_bytes());
    }
}

/// Big-endian u16 at `at`; callers have checked the bounds.
fn be_u16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Big-endian u32 at `at`; callers have checked the bounds.
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prefix_of_a_frame_is_an_error_or_a_heartbeat_never_a_panic() {
        let frame = encode_frame(&[
            Packet::Ltp(Ltp {
                token: 256_265,
                ltp: 24_500.5,
            }),
            Packet::Unknown(vec![1, 2, 3]),
            Packet::Quote(Quote {
                token: 12_345_602,
                ltp: 100.05,
                last_qty: 65,
                avg_price: 99.5,
                volume: 1_000,
                total_buy_qty: 10,
                total_sell_qty: 20,
                open: 98.0,
                high: 101.0,
                low: 97.0,
                close: 95.0,
            }),
        ]);
        assert_eq!(decode_frame(&frame).map(|p| p.len()), Ok(3));
        for cut in 0..frame.len() {
            let result = decode_frame(&frame[..cut]);
            match cut {
                1 => assert_eq!(result, Ok(vec![])),
                _ => assert!(result.is_err(), "prefix of {cut} bytes decoded: {result:?}"),
            }
        }
    }
}
