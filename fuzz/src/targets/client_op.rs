//! The WebSocket client-op parser: JSON text frames (`ClientOp::parse`) and MessagePack
//! binary frames (`ClientOp::parse_msgpack`), then the channel-name parser a subscribe goes
//! through.
//!
//! Structure-aware: JSON requests are mutated token by token with the protocol's own words
//! (ops, field names, channel names); MessagePack requests by walking the encoding and
//! corrupting its headers (a string, array or map claiming 2³²−1 elements), nesting values
//! thousands deep, and swapping type markers.
//!
//! Property on accepted requests: a channel that parses has a canonical name that parses to
//! itself.

use strikeflow_push::protocol::{parse_channel, ClientOp};

use crate::harness::Target;
use crate::mutate::{json_mutation, replace};
use crate::rng::Rng;

/// The protocol's words, for field names, ops and channel names.
const DICTIONARY: &[&str] = &[
    "op",
    "subscribe",
    "unsubscribe",
    "list",
    "ping",
    "auth",
    "channel",
    "since",
    "epoch",
    "seq",
    "token",
    "bars.NIFTY26DECFUT",
    "bars.NIFTY26DECFUT.1m",
    "bars.NIFTY26DECFUT.3m",
    "indicators.NIFTY26DECFUT.15m",
    "chain.NIFTY.2026-12-29",
    "moneyness.BANKNIFTY.2026-12-30",
    "ticks.NIFTY26DEC24500CE",
    "ticks.",
    "chain.NIFTY.",
];

/// Valid requests of every op.
const REQUESTS: &[&str] = &[
    r#"{"op":"subscribe","channel":"bars.NIFTY26DECFUT"}"#,
    r#"{"op":"subscribe","channel":"bars.NIFTY26DECFUT.5m","since":{"epoch":"e1-3f","seq":42}}"#,
    r#"{"op":"subscribe","channel":"chain.NIFTY.2026-12-29","since":null}"#,
    r#"{"op":"subscribe","channel":"moneyness.BANKNIFTY.2026-12-30"}"#,
    r#"{"op":"subscribe","channel":"indicators.NIFTY26DECFUT.15m"}"#,
    r#"{"op":"subscribe","channel":"ticks.NIFTY26DEC24500CE"}"#,
    r#"{"op":"unsubscribe","channel":"bars.NIFTY26DECFUT"}"#,
    r#"{"op":"list"}"#,
    r#"{"op":"ping"}"#,
    r#"{"op":"auth","token":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"}"#,
    r#" { "channel" : "bars.X" , "op" : "subscribe" , "extra" : [1, 2.5, true] } "#,
];

/// Runs a parsed request the way a session does: a subscribe or unsubscribe channel goes
/// through the channel parser, whose canonical name must parse to itself.
fn follow(op: &ClientOp) -> Result<(), String> {
    let channel = match op {
        ClientOp::Subscribe { channel, .. } | ClientOp::Unsubscribe { channel } => channel,
        _ => return Ok(()),
    };
    if let Ok(parsed) = parse_channel(channel) {
        match parse_channel(&parsed.name) {
            Ok(again) if again == parsed => {}
            other => {
                return Err(format!(
                    "canonical channel {:?} of {channel:?} does not parse to itself: {other:?}",
                    parsed.name
                ))
            }
        }
    }
    Ok(())
}

/// `ClientOp::parse` on JSON text frames.
pub struct ClientOpJson {
    corpus: Vec<Vec<u8>>,
}

impl ClientOpJson {
    /// The target, seeded with a valid request of every op.
    pub fn new() -> Self {
        Self {
            corpus: REQUESTS.iter().map(|r| r.as_bytes().to_vec()).collect(),
        }
    }
}

impl Default for ClientOpJson {
    fn default() -> Self {
        Self::new()
    }
}

impl Target for ClientOpJson {
    fn name(&self) -> &'static str {
        "client-op-json"
    }

    fn describe(&self) -> &'static str {
        "strikeflow_push::protocol::ClientOp::parse (JSON text frames) and parse_channel"
    }

    fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    fn max_len(&self) -> usize {
        // Above push's client message limit is refused by the WebSocket layer, but the
        // parser itself must cope with anything: let some inputs be large.
        16 * 1024
    }

    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        json_mutation(rng, data, DICTIONARY, self.max_len());
    }

    fn run(&self, input: &[u8]) -> Result<bool, String> {
        // Text frames are UTF-8 by the time they are parsed (the WebSocket layer checks).
        let text = String::from_utf8_lossy(input);
        match ClientOp::parse(&text) {
            Ok(op) => follow(&op).map(|()| true),
            Err(_) => Ok(false),
        }
    }
}

/// What a MessagePack header introduces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bin,
    Array,
    Map,
    Scalar,
}

/// One value of a MessagePack document: where its header starts, how long the header is,
/// where the whole value ends, and what it is.
#[derive(Debug, Clone, Copy)]
struct Value {
    at: usize,
    header: usize,
    end: usize,
    kind: Kind,
}

fn be(b: &[u8], at: usize, n: usize) -> Option<usize> {
    let bytes = b.get(at..at + n)?;
    Some(
        bytes
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x)),
    )
}

/// Walks the value at `at`, recording it and its children (up to a depth).
fn walk(b: &[u8], at: usize, depth: usize, out: &mut Vec<Value>) -> Option<usize> {
    if depth > 32 {
        return None;
    }
    let m = *b.get(at)?;
    let (kind, header, len) = match m {
        0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => (Kind::Scalar, 1, 0),
        0x80..=0x8f => (Kind::Map, 1, usize::from(m & 0x0f)),
        0x90..=0x9f => (Kind::Array, 1, usize::from(m & 0x0f)),
        0xa0..=0xbf => (Kind::Str, 1, usize::from(m & 0x1f)),
        0xc4 => (Kind::Bin, 2, be(b, at + 1, 1)?),
        0xc5 => (Kind::Bin, 3, be(b, at + 1, 2)?),
        0xc6 => (Kind::Bin, 5, be(b, at + 1, 4)?),
        0xca => (Kind::Scalar, 5, 0),
        0xcb => (Kind::Scalar, 9, 0),
        0xcc | 0xd0 => (Kind::Scalar, 2, 0),
        0xcd | 0xd1 => (Kind::Scalar, 3, 0),
        0xce | 0xd2 => (Kind::Scalar, 5, 0),
        0xcf | 0xd3 => (Kind::Scalar, 9, 0),
        0xd9 => (Kind::Str, 2, be(b, at + 1, 1)?),
        0xda => (Kind::Str, 3, be(b, at + 1, 2)?),
        0xdb => (Kind::Str, 5, be(b, at + 1, 4)?),
        0xdc => (Kind::Array, 3, be(b, at + 1, 2)?),
        0xdd => (Kind::Array, 5, be(b, at + 1, 4)?),
        0xde => (Kind::Map, 3, be(b, at + 1, 2)?),
        0xdf => (Kind::Map, 5, be(b, at + 1, 4)?),
        _ => return None,
    };
    let index = out.len();
    out.push(Value {
        at,
        header,
        end: at + header,
        kind,
    });
    let mut end = at + header;
    match kind {
        Kind::Str | Kind::Bin => end = end.checked_add(len).filter(|&e| e <= b.len())?,
        Kind::Array | Kind::Map => {
            let items = if kind == Kind::Map {
                len.checked_mul(2)?
            } else {
                len
            };
            if items > b.len() {
                return None;
            }
            for _ in 0..items {
                end = walk(b, end, depth + 1, out)?;
            }
        }
        Kind::Scalar => {}
    }
    if end > b.len() {
        return None;
    }
    out[index].end = end;
    Some(end)
}

/// `ClientOp::parse_msgpack` on MessagePack binary frames.
pub struct ClientOpMsgPack {
    corpus: Vec<Vec<u8>>,
}

impl ClientOpMsgPack {
    /// The target, seeded with the MessagePack encoding of a valid request of every op.
    pub fn new() -> Result<Self, String> {
        let corpus = REQUESTS
            .iter()
            .map(|r| {
                let value: serde_json::Value =
                    serde_json::from_str(r).map_err(|e| e.to_string())?;
                rmp_serde::to_vec(&value).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { corpus })
    }
}

impl Target for ClientOpMsgPack {
    fn name(&self) -> &'static str {
        "client-op-msgpack"
    }

    fn describe(&self) -> &'static str {
        "strikeflow_push::protocol::ClientOp::parse_msgpack (binary frames) and parse_channel"
    }

    fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    fn max_len(&self) -> usize {
        16 * 1024
    }

    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let mut values = Vec::new();
        let _ = walk(data, 0, 0, &mut values);
        let Some(mut v) = rng.pick(&values).copied() else {
            data.push(rng.byte());
            return;
        };
        // A value cut short by the end of the input ends there.
        v.end = v.end.min(data.len());
        let header_end = (v.at + v.header).min(data.len());
        match rng.below(7) {
            0 => {
                // A 32-bit header of the same kind claiming a huge or slightly wrong size.
                let marker = match v.kind {
                    Kind::Str => 0xdb,
                    Kind::Bin => 0xc6,
                    Kind::Array => 0xdd,
                    Kind::Map => 0xdf,
                    Kind::Scalar => 0xdd,
                };
                let n: u32 = *rng
                    .pick(&[u32::MAX, 0x7fff_ffff, 0x0100_0000, 0x10000, 17, 1, 0])
                    .unwrap_or(&u32::MAX);
                let mut h = vec![marker];
                h.extend_from_slice(&n.to_be_bytes());
                replace(data, v.at, header_end, &h);
            }
            1 => {
                // Nest the value deep inside one-element arrays or maps.
                let depth = *rng
                    .pick(&[2usize, 127, 128, 129, 1_000, 10_000])
                    .unwrap_or(&2);
                let wrap: &[u8] = if rng.one_in(2) {
                    &[0x91]
                } else {
                    &[0x81, 0xa1, b'k']
                };
                let prefix: Vec<u8> = wrap
                    .iter()
                    .copied()
                    .cycle()
                    .take(wrap.len() * depth)
                    .collect();
                replace(data, v.at, v.at, &prefix);
            }
            2 => {
                // Another type in its place.
                let value: &[u8] = rng
                    .pick(&[
                        &[0xc0][..],
                        &[0xc1],
                        &[0xc3],
                        &[0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
                        &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
                        &[0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0],
                        &[0xc4, 0x02, 0xff, 0xfe],
                        &[0xd4, 0x01, 0x02],
                        &[0xc7, 0x03, 0x01, 1, 2, 3],
                        &[0x90],
                        &[0x80],
                        &[0xa0],
                        &[0xa2, 0xff, 0xfe],
                    ])
                    .copied()
                    .unwrap_or(&[0xc0]);
                replace(data, v.at, v.end, value);
            }
            3 => {
                // Duplicate the value (a repeated key or element), fixing nothing.
                let chunk = data[v.at..v.end].to_vec();
                replace(data, v.end, v.end, &chunk);
            }
            4 => data.truncate(v.at + rng.below(v.end - v.at + 1)),
            5 if v.kind == Kind::Str => {
                // A string of the protocol's words, or an interesting one.
                let s = rng.pick(DICTIONARY).copied().unwrap_or("op");
                let mut h = if s.len() < 32 {
                    vec![0xa0 | s.len() as u8]
                } else {
                    vec![0xd9, s.len() as u8]
                };
                h.extend_from_slice(s.as_bytes());
                replace(data, v.at, v.end, &h);
            }
            _ => {
                if header_end > v.at {
                    let at = v.at + rng.below(header_end - v.at);
                    data[at] = data[at].wrapping_add(rng.range(1, 3) as u8);
                }
            }
        }
        data.truncate(self.max_len());
    }

    fn run(&self, input: &[u8]) -> Result<bool, String> {
        match ClientOp::parse_msgpack(input) {
            Ok(op) => follow(&op).map(|()| true),
            Err(_) => Ok(false),
        }
    }
}
