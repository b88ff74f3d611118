//! The Kite binary frame decoder (`decode_frame`), and the tick assembler behind it.
//!
//! Structure-aware: the mutator walks the frame's `u16` packet count and each packet's `u16`
//! length, and corrupts exactly those (counts and lengths off by one, zero, 0xffff, a length
//! of another packet kind with or without the bytes to match), duplicates and drops packets,
//! and moves tokens between segments (whose price divisors differ).
//!
//! Properties on accepted frames: re-encoding the packets and decoding that gives the same
//! packets, and every packet goes through the [`TickAssembler`] without a panic.

use strikeflow_ingest::kite::decode::{
    FULL_LEN, HEARTBEAT, INDEX_FULL_LEN, INDEX_QUOTE_LEN, LTP_LEN, QUOTE_LEN,
};
use strikeflow_ingest::kite::{
    decode_frame, encode_frame, packet_from_tick, Packet, TickAssembler,
};
use strikeflow_ingest::{MarketSimulator, SimulatorConfig};

use crate::harness::Target;
use crate::mutate::replace;
use crate::rng::Rng;

/// Packet lengths on and around the boundaries of the known kinds.
const INTERESTING_LENGTHS: [u16; 20] = [
    0, 1, 2, 3, 4, 5, 7, 8, 9, 27, 28, 29, 32, 43, 44, 45, 183, 184, 185, 0xffff,
];

/// Token low bytes: the segments with special divisors, indices, and unassigned ones.
const SEGMENTS: [u8; 7] = [0, 1, 2, 3, 6, 9, 255];

/// Where the count, each length field and each packet body sit in a frame.
struct Layout {
    /// (offset of the length field, offset of the body, declared length) per packet read.
    packets: Vec<(usize, usize, usize)>,
}

fn layout(frame: &[u8]) -> Layout {
    let mut packets = Vec::new();
    if frame.len() >= 2 {
        let count = usize::from(u16::from_be_bytes([frame[0], frame[1]]));
        let mut at = 2;
        for _ in 0..count {
            if at + 2 > frame.len() {
                break;
            }
            let len = usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
            packets.push((at, at + 2, len));
            at = (at + 2).saturating_add(len);
            if at > frame.len() {
                break;
            }
        }
    }
    Layout { packets }
}

/// The frame decoder, fuzzed from frames of simulated ticks in every packet kind.
pub struct KiteTarget {
    corpus: Vec<Vec<u8>>,
}

impl KiteTarget {
    /// Builds the corpus from a simulated session.
    pub fn new() -> Result<Self, String> {
        let mut sim =
            MarketSimulator::new(&SimulatorConfig::default()).map_err(|e| e.to_string())?;
        let mut packets = Vec::new();
        for _ in 0..400 {
            if let Some(p) = packet_from_tick(&sim.next_tick()) {
                packets.push(p);
            }
        }
        let mut corpus = vec![HEARTBEAT.to_vec(), encode_frame(&[])];
        for (i, packet) in packets.iter().enumerate().take(60) {
            let variants = match packet {
                Packet::Full(full) => vec![
                    packet.clone(),
                    Packet::Quote(full.quote.clone()),
                    Packet::Ltp(strikeflow_ingest::kite::decode::Ltp {
                        token: full.quote.token,
                        ltp: full.quote.ltp,
                    }),
                ],
                Packet::Index(index) => {
                    let mut quote = index.clone();
                    quote.exchange_timestamp = None;
                    vec![packet.clone(), Packet::Index(quote)]
                }
                other => vec![other.clone()],
            };
            let n = 1 + i % 5;
            let mut frame: Vec<Packet> = packets.iter().skip(i).take(n).cloned().collect();
            frame.extend(variants.iter().cloned());
            corpus.push(encode_frame(&frame));
            for v in variants {
                corpus.push(encode_frame(&[v]));
            }
        }
        corpus.push(encode_frame(&[Packet::Unknown(vec![0, 4, 0, 2, 9, 9, 9])]));
        Ok(Self { corpus })
    }
}

impl Target for KiteTarget {
    fn name(&self) -> &'static str {
        "kite-frame"
    }

    fn describe(&self) -> &'static str {
        "strikeflow_ingest::kite::decode_frame, the encode round trip and TickAssembler::apply"
    }

    fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    fn max_len(&self) -> usize {
        4096
    }

    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let layout = layout(data);
        let packet = rng.pick(&layout.packets).copied();
        match (rng.below(8), packet) {
            (0, _) | (_, None) if data.len() >= 2 => {
                let count = u16::from_be_bytes([data[0], data[1]]);
                let n = match rng.below(4) {
                    0 => *rng.pick(&[0u16, 1, 0x7fff, 0x8000, 0xffff]).unwrap_or(&0),
                    1 => count.wrapping_add(1),
                    2 => count.wrapping_sub(1),
                    _ => rng.next_u64() as u16,
                };
                data[..2].copy_from_slice(&n.to_be_bytes());
            }
            (1, Some((at, _, len))) => {
                // A wrong length, the bytes unchanged.
                let n = match rng.below(3) {
                    0 => (len as u16).wrapping_add(1),
                    1 => (len as u16).wrapping_sub(1),
                    _ => *rng.pick(&INTERESTING_LENGTHS).unwrap_or(&0),
                };
                data[at..at + 2].copy_from_slice(&n.to_be_bytes());
            }
            (2, Some((at, body, len))) => {
                // Another kind's length, with bytes to match.
                let want = *rng
                    .pick(&[
                        LTP_LEN,
                        INDEX_QUOTE_LEN,
                        INDEX_FULL_LEN,
                        QUOTE_LEN,
                        FULL_LEN,
                        0,
                        4,
                        6,
                    ])
                    .unwrap_or(&0);
                let end = (body + len).min(data.len());
                let mut bytes = data[body..end].to_vec();
                bytes.resize(want, rng.byte());
                replace(data, body, end, &bytes);
                data[at..at + 2].copy_from_slice(&(want as u16).to_be_bytes());
            }
            (3, Some((at, body, len))) => {
                // Duplicate a packet, fixing the count or not.
                let end = (body + len).min(data.len());
                let chunk = data[at..end].to_vec();
                replace(data, end, end, &chunk);
                if rng.one_in(2) {
                    let count = u16::from_be_bytes([data[0], data[1]]).wrapping_add(1);
                    data[..2].copy_from_slice(&count.to_be_bytes());
                }
            }
            (4, Some((at, body, len))) => {
                // Drop a packet, fixing the count or not.
                let end = (body + len).min(data.len());
                replace(data, at, end, &[]);
                if rng.one_in(2) {
                    let count = u16::from_be_bytes([data[0], data[1]]).wrapping_sub(1);
                    data[..2].copy_from_slice(&count.to_be_bytes());
                }
            }
            (5, Some((_, body, len))) if len >= 4 && body + 4 <= data.len() => {
                data[body + 3] = *rng.pick(&SEGMENTS).unwrap_or(&0);
            }
            (6, Some((_, body, len))) if len >= 8 => {
                // A 32-bit field of the packet at its extremes.
                let field = body + 4 * rng.below(len / 4);
                if field + 4 <= data.len() {
                    let v = *rng
                        .pick(&[0u32, 1, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff])
                        .unwrap_or(&0);
                    data[field..field + 4].copy_from_slice(&v.to_be_bytes());
                }
            }
            (_, Some((_, body, len))) => {
                // Cut the frame inside a packet.
                data.truncate(body + rng.below(len + 1));
            }
            _ => data.push(rng.byte()),
        }
    }

    fn run(&self, input: &[u8]) -> Result<bool, String> {
        let Ok(packets) = decode_frame(input) else {
            return Ok(false);
        };
        let again = decode_frame(&encode_frame(&packets))
            .map_err(|e| format!("re-encoded frame does not decode: {e}"))?;
        if again != packets {
            return Err("re-encoded frame decodes to other packets".to_owned());
        }
        let mut assembler = TickAssembler::new();
        for packet in &packets {
            let _ = assembler.apply(packet, 1_766_979_000_000_000);
        }
        Ok(true)
    }
}
