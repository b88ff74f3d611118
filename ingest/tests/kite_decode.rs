//! The Kite binary decoder on hand-built golden packets, broken frames and random input, and
//! the packet → tick mapping.

use proptest::prelude::*;
use strikeflow_ingest::kite::decode::{
    decode_frame, encode_frame, is_heartbeat, price_divisor, DecodeError, DepthLevel, Full, Index,
    Ltp, Packet, Quote, HEARTBEAT,
};
use strikeflow_ingest::kite::{packet_from_tick, TickAssembler};
use strikeflow_schemas::Tick;

const NIFTY_INDEX: u32 = 256_265; // segment 9
const OPTION: u32 = 12_345_602; // segment 2 (NFO)

/// Big-endian bytes of a list of u32 fields.
fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// A frame around raw packets, built by hand (independent of `encode_frame`).
fn frame(packets: &[Vec<u8>]) -> Vec<u8> {
    let mut out = (packets.len() as u16).to_be_bytes().to_vec();
    for p in packets {
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

fn golden_quote_bytes() -> Vec<u8> {
    words(&[
        OPTION, 10_505, 65, 10_412, 1_234_500, 50_000, 60_000, 9_800, 11_000, 9_500, 9_000,
    ])
}

fn golden_quote() -> Quote {
    Quote {
        token: OPTION,
        ltp: 105.05,
        last_qty: 65,
        avg_price: 104.12,
        volume: 1_234_500,
        total_buy_qty: 50_000,
        total_sell_qty: 60_000,
        open: 98.0,
        high: 110.0,
        low: 95.0,
        close: 90.0,
    }
}

fn golden_full_bytes() -> Vec<u8> {
    let mut p = golden_quote_bytes();
    p.extend(words(&[
        1_764_926_095,
        3_448_575,
        3_500_000,
        3_400_000,
        1_764_926_100,
    ]));
    let levels: [(u32, u32, u16); 10] = [
        (650, 10_500, 3),
        (1_300, 10_495, 5),
        (195, 10_490, 1),
        (0, 0, 0),
        (65, 10_400, 1),
        (325, 10_510, 2),
        (975, 10_515, 4),
        (130, 10_520, 1),
        (65, 10_600, 1),
        (4_000_000_000, 10_700, 65_535),
    ];
    for (qty, price, orders) in levels {
        p.extend(qty.to_be_bytes());
        p.extend(price.to_be_bytes());
        p.extend(orders.to_be_bytes());
        p.extend([0xAB, 0xCD]); // padding is ignored
    }
    assert_eq!(p.len(), 184);
    p
}

#[test]
fn golden_ltp_packet() {
    let bytes = frame(&[words(&[NIFTY_INDEX, 2_450_050])]);
    assert_eq!(bytes.len(), 2 + 2 + 8);
    assert_eq!(
        decode_frame(&bytes),
        Ok(vec![Packet::Ltp(Ltp {
            token: NIFTY_INDEX,
            ltp: 24_500.5
        })])
    );
}

#[test]
fn golden_index_quote_and_full_packets_read_high_low_before_open_close() {
    let quote = words(&[
        NIFTY_INDEX,
        2_450_050,
        2_460_000,
        2_440_000,
        2_445_000,
        2_430_000,
        20_050,
    ]);
    let mut full = quote.clone();
    full.extend(words(&[1_764_926_100]));
    let negative_change = words(&[
        NIFTY_INDEX,
        2_420_000,
        2_460_000,
        2_410_000,
        2_445_000,
        2_430_000,
        (-1_000i32) as u32,
    ]);
    let packets = decode_frame(&frame(&[quote, full, negative_change])).unwrap();
    let expected = Index {
        token: NIFTY_INDEX,
        ltp: 24_500.5,
        high: 24_600.0,
        low: 24_400.0,
        open: 24_450.0,
        close: 24_300.0,
        change: 200.5,
        exchange_timestamp: None,
    };
    assert_eq!(packets[0], Packet::Index(expected.clone()));
    assert_eq!(packets[0].mode(), Some("quote"));
    assert_eq!(
        packets[1],
        Packet::Index(Index {
            exchange_timestamp: Some(1_764_926_100),
            ..expected
        })
    );
    assert_eq!(packets[1].mode(), Some("full"));
    let Packet::Index(third) = &packets[2] else {
        panic!("{:?}", packets[2])
    };
    assert_eq!(third.change, -10.0, "the change field is signed");
}

#[test]
fn golden_quote_packet() {
    let packets = decode_frame(&frame(&[golden_quote_bytes()])).unwrap();
    assert_eq!(packets, vec![Packet::Quote(golden_quote())]);
    assert_eq!(packets[0].mode(), Some("quote"));
}

#[test]
fn golden_full_packet_with_depth() {
    let packets = decode_frame(&frame(&[golden_full_bytes()])).unwrap();
    let Packet::Full(full) = &packets[0] else {
        panic!("{:?}", packets[0])
    };
    assert_eq!(full.quote, golden_quote());
    assert_eq!(
        (
            full.last_trade_time,
            full.oi,
            full.oi_day_high,
            full.oi_day_low,
            full.exchange_timestamp
        ),
        (
            1_764_926_095,
            3_448_575,
            3_500_000,
            3_400_000,
            1_764_926_100
        )
    );
    let level = |qty, price, orders| DepthLevel { qty, price, orders };
    assert_eq!(
        full.bids,
        [
            level(650, 105.0, 3),
            level(1_300, 104.95, 5),
            level(195, 104.9, 1),
            level(0, 0.0, 0),
            level(65, 104.0, 1)
        ]
    );
    assert_eq!(
        full.asks,
        [
            level(325, 105.1, 2),
            level(975, 105.15, 4),
            level(130, 105.2, 1),
            level(65, 106.0, 1),
            level(4_000_000_000, 107.0, 65_535), // unsigned, as kiteconnect reads it
        ]
    );
    assert_eq!(packets[0].mode(), Some("full"));
}

#[test]
fn price_divisor_follows_the_segment_like_kiteconnect() {
    assert_eq!(price_divisor(0x1003), 10_000_000.0, "CDS");
    assert_eq!(price_divisor(0x1006), 10_000.0, "BCD");
    assert_eq!(price_divisor(0x100C), 10_000.0, "NCO");
    for segment in [1, 2, 4, 5, 7, 8, 9] {
        assert_eq!(price_divisor(0x1000 | segment), 100.0, "segment {segment}");
    }
    let packets = decode_frame(&frame(&[
        words(&[0x1003, 835_012_500]),
        words(&[0x1006, 835_012]),
        words(&[0x100C, 123_456]),
    ]))
    .unwrap();
    let ltps: Vec<f64> = packets
        .iter()
        .map(|p| {
            if let Packet::Ltp(l) = p {
                l.ltp
            } else {
                f64::NAN
            }
        })
        .collect();
    assert_eq!(ltps, vec![83.50125, 83.5012, 12.3456]);
}

#[test]
fn several_packets_of_every_kind_in_one_frame_decode_in_order() {
    let bytes = frame(&[
        words(&[NIFTY_INDEX, 2_450_050]),
        golden_full_bytes(),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10], // unknown length: kept, the rest survives
        golden_quote_bytes(),
        words(&[NIFTY_INDEX, 1, 2, 3, 4, 5, 6, 7]),
    ]);
    let packets = decode_frame(&bytes).unwrap();
    let kinds: Vec<Option<&str>> = packets.iter().map(Packet::mode).collect();
    assert_eq!(
        kinds,
        vec![Some("ltp"), Some("full"), None, Some("quote"), Some("full")]
    );
    assert_eq!(
        packets[2],
        Packet::Unknown(vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    );
    assert_eq!(packets[2].token(), Some(0x0102_0304));
    // Re-encoding gives the same bytes, except the full packet's padding (written as zeros).
    let mut expected = bytes.clone();
    let full_depth_start = 2 + (2 + 8) + 2 + 64;
    for level in 0..10 {
        let pad = full_depth_start + level * 12 + 10;
        expected[pad..pad + 2].copy_from_slice(&[0, 0]);
    }
    assert_eq!(encode_frame(&packets), expected);
}

#[test]
fn heartbeats_and_empty_frames() {
    assert!(is_heartbeat(&HEARTBEAT));
    assert_eq!(decode_frame(&[0x7f]), Ok(vec![]));
    assert_eq!(decode_frame(&[]), Err(DecodeError::Empty));
    assert_eq!(decode_frame(&[0, 0]), Ok(vec![]), "a frame of zero packets");
    assert_eq!(encode_frame(&[]), vec![0, 0]);
}

#[test]
fn broken_framing_is_a_typed_error() {
    let good = frame(&[golden_quote_bytes(), words(&[NIFTY_INDEX, 100])]);
    // Declares 3 packets, holds 2: ends where the third length should be.
    let mut more = good.clone();
    more[1] = 3;
    assert_eq!(
        decode_frame(&more),
        Err(DecodeError::TruncatedLength {
            packet: 2,
            available: 0
        })
    );
    // One byte of a length.
    let mut half = more.clone();
    half.push(0);
    assert_eq!(
        decode_frame(&half),
        Err(DecodeError::TruncatedLength {
            packet: 2,
            available: 1
        })
    );
    // A packet longer than what is left.
    assert_eq!(
        decode_frame(&good[..good.len() - 3]),
        Err(DecodeError::TruncatedPacket {
            packet: 1,
            declared: 8,
            available: 5
        })
    );
    // Bytes after the declared packets.
    let mut long = good.clone();
    long.extend([1, 2, 3]);
    assert_eq!(
        decode_frame(&long),
        Err(DecodeError::TrailingBytes {
            packets: 2,
            extra: 3
        })
    );
    let mut fewer = good.clone();
    fewer[1] = 1;
    assert_eq!(
        decode_frame(&fewer),
        Err(DecodeError::TrailingBytes {
            packets: 1,
            extra: 10
        })
    );
    assert!(DecodeError::TruncatedPacket {
        packet: 1,
        declared: 8,
        available: 5
    }
    .to_string()
    .contains("8 bytes"));
}

#[test]
fn every_truncation_of_a_real_frame_is_an_error() {
    let bytes = frame(&[
        golden_full_bytes(),
        golden_quote_bytes(),
        words(&[NIFTY_INDEX, 2_450_050]),
    ]);
    for cut in 0..bytes.len() {
        let result = decode_frame(&bytes[..cut]);
        if cut == 1 {
            assert_eq!(result, Ok(vec![]), "one byte is a heartbeat");
        } else {
            assert!(result.is_err(), "{cut}-byte prefix decoded as {result:?}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// random input

fn token() -> impl Strategy<Value = u32> {
    // Mostly real segments, sometimes anything.
    prop_oneof![
        (
            any::<u32>(),
            prop::sample::select(vec![1u32, 2, 3, 4, 5, 6, 7, 8, 9, 12])
        )
            .prop_map(|(t, s)| (t & !0xff) | s),
        any::<u32>(),
    ]
}

/// A price the format can carry for `token`: a raw integer over the segment's divisor.
fn price(token: u32, raw: u32) -> f64 {
    f64::from(raw) / price_divisor(token)
}

fn quote() -> impl Strategy<Value = Quote> {
    (token(), prop::array::uniform11(any::<u32>())).prop_map(|(token, r)| Quote {
        token,
        ltp: price(token, r[0]),
        last_qty: r[1],
        avg_price: price(token, r[2]),
        volume: r[3],
        total_buy_qty: r[4],
        total_sell_qty: r[5],
        open: price(token, r[6]),
        high: price(token, r[7]),
        low: price(token, r[8]),
        close: price(token, r[9]),
    })
}

fn packet() -> impl Strategy<Value = Packet> {
    prop_oneof![
        (token(), any::<u32>()).prop_map(|(token, raw)| Packet::Ltp(Ltp {
            token,
            ltp: price(token, raw)
        })),
        (
            token(),
            prop::array::uniform5(any::<u32>()),
            any::<i32>(),
            any::<Option<u32>>()
        )
            .prop_map(
                |(token, r, change, exchange_timestamp)| Packet::Index(Index {
                    token,
                    ltp: price(token, r[0]),
                    high: price(token, r[1]),
                    low: price(token, r[2]),
                    open: price(token, r[3]),
                    close: price(token, r[4]),
                    change: f64::from(change) / price_divisor(token),
                    exchange_timestamp,
                })
            ),
        quote().prop_map(Packet::Quote),
        (
            quote(),
            prop::array::uniform5(any::<u32>()),
            prop::collection::vec((any::<u32>(), any::<u32>(), any::<u16>()), 10)
        )
            .prop_map(|(quote, t, depth)| {
                let level = |i: usize| DepthLevel {
                    qty: depth[i].0,
                    price: price(quote.token, depth[i].1),
                    orders: depth[i].2,
                };
                Packet::Full(Box::new(Full {
                    last_trade_time: t[0],
                    oi: t[1],
                    oi_day_high: t[2],
                    oi_day_low: t[3],
                    exchange_timestamp: t[4],
                    bids: std::array::from_fn(level),
                    asks: std::array::from_fn(|i| level(i + 5)),
                    quote,
                }))
            }),
        prop::collection::vec(any::<u8>(), 0..300)
            .prop_filter("known lengths decode as packets", |b| !matches!(
                b.len(),
                8 | 28 | 32 | 44 | 184
            ))
            .prop_map(Packet::Unknown),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn random_frames_with_a_plausible_header_never_panic(
        count in 0u16..6,
        lengths in prop::collection::vec(prop::sample::select(vec![0u16, 3, 8, 28, 32, 44, 184, 200]), 0..6),
        body in prop::collection::vec(any::<u8>(), 0..800),
    ) {
        let mut bytes = count.to_be_bytes().to_vec();
        let mut at = 0;
        for len in lengths {
            bytes.extend(len.to_be_bytes());
            let end = (at + usize::from(len)).min(body.len());
            bytes.extend(&body[at..end]);
            at = end;
        }
        let _ = decode_frame(&bytes);
    }

    #[test]
    fn encode_then_decode_is_the_identity(packets in prop::collection::vec(packet(), 0..8)) {
        let bytes = encode_frame(&packets);
        prop_assert_eq!(decode_frame(&bytes), Ok(packets));
        for cut in (0..bytes.len()).filter(|&cut| cut != 1) {
            prop_assert!(decode_frame(&bytes[..cut]).is_err());
        }
        let mut extended = bytes.clone();
        extended.push(0);
        let trailing_bytes = matches!(decode_frame(&extended), Err(DecodeError::TrailingBytes { .. }));
        prop_assert!(trailing_bytes);
    }
}

// ---------------------------------------------------------------------------------------
// packets → ticks

const RECEIVED: i64 = 1_764_926_101_250_000; // µs: just after the golden full packet

fn golden_full() -> Full {
    let Packet::Full(full) = decode_frame(&frame(&[golden_full_bytes()]))
        .unwrap()
        .remove(0)
    else {
        unreachable!()
    };
    *full
}

#[test]
fn full_packet_gives_a_complete_tick_stamped_by_the_exchange() {
    let mut assembler = TickAssembler::new();
    let tick = assembler
        .apply(&Packet::Full(Box::new(golden_full())), RECEIVED)
        .unwrap();
    assert_eq!(
        tick,
        Tick {
            instrument_token: i64::from(OPTION),
            exchange_ts: 1_764_926_100_000_000,
            ltp: 105.05,
            last_qty: 65,
            volume: 1_234_500,
            oi: 3_448_575,
            bid: 105.0,
            bid_qty: 650,
            ask: 105.1,
            ask_qty: 325,
        }
    );
    let zero_ts = Full {
        exchange_timestamp: 0,
        ..golden_full()
    };
    assert_eq!(
        assembler
            .apply(&Packet::Full(Box::new(zero_ts)), RECEIVED)
            .unwrap()
            .exchange_ts,
        RECEIVED
    );
}

#[test]
fn partial_packets_carry_the_last_state_over() {
    let mut assembler = TickAssembler::new();
    let full = assembler
        .apply(&Packet::Full(Box::new(golden_full())), RECEIVED)
        .unwrap();
    let quote = Quote {
        ltp: 106.0,
        last_qty: 130,
        volume: 1_300_000,
        ..golden_quote()
    };
    let after_quote = assembler
        .apply(&Packet::Quote(quote), RECEIVED + 1_000)
        .unwrap();
    assert_eq!(
        after_quote,
        Tick {
            exchange_ts: RECEIVED + 1_000,
            ltp: 106.0,
            last_qty: 130,
            volume: 1_300_000,
            ..full.clone()
        },
        "quote: no timestamp (receive time), OI and depth carried over"
    );
    let after_ltp = assembler
        .apply(
            &Packet::Ltp(Ltp {
                token: OPTION,
                ltp: 106.5,
            }),
            RECEIVED + 2_000,
        )
        .unwrap();
    assert_eq!(
        after_ltp,
        Tick {
            exchange_ts: RECEIVED + 2_000,
            ltp: 106.5,
            ..after_quote
        }
    );
    // Another token has its own state: a first LTP packet starts from zeros.
    let other = assembler
        .apply(
            &Packet::Ltp(Ltp {
                token: OPTION + 256,
                ltp: 5.0,
            }),
            RECEIVED,
        )
        .unwrap();
    assert_eq!(
        (other.instrument_token, other.ltp, other.volume, other.oi),
        (i64::from(OPTION + 256), 5.0, 0, 0)
    );
    assert_eq!(
        assembler.apply(&Packet::Unknown(vec![0; 10]), RECEIVED),
        None
    );
}

#[test]
fn index_packets_have_no_volume_or_oi() {
    let mut assembler = TickAssembler::new();
    let index = Index {
        token: NIFTY_INDEX,
        ltp: 24_500.5,
        high: 24_600.0,
        low: 24_400.0,
        open: 24_450.0,
        close: 24_300.0,
        change: 200.5,
        exchange_timestamp: Some(1_764_926_100),
    };
    let full = assembler
        .apply(&Packet::Index(index.clone()), RECEIVED)
        .unwrap();
    assert_eq!(
        full,
        Tick {
            instrument_token: i64::from(NIFTY_INDEX),
            exchange_ts: 1_764_926_100_000_000,
            ltp: 24_500.5,
            last_qty: 0,
            volume: 0,
            oi: 0,
            bid: 0.0,
            bid_qty: 0,
            ask: 0.0,
            ask_qty: 0,
        }
    );
    let quote = assembler
        .apply(
            &Packet::Index(Index {
                exchange_timestamp: None,
                ltp: 24_501.0,
                ..index
            }),
            RECEIVED,
        )
        .unwrap();
    assert_eq!(
        quote,
        Tick {
            exchange_ts: RECEIVED,
            ltp: 24_501.0,
            ..full
        }
    );
}

#[test]
fn packet_from_tick_round_trips_through_the_wire() {
    let tick = Tick {
        instrument_token: i64::from(OPTION),
        exchange_ts: 1_764_649_800_000_000,
        ltp: 105.05,
        last_qty: 65,
        volume: 1_234_500,
        oi: 3_448_575,
        bid: 105.0,
        bid_qty: 650,
        ask: 105.1,
        ask_qty: 325,
    };
    let index = Tick {
        instrument_token: i64::from(NIFTY_INDEX),
        ltp: 24_500.5,
        last_qty: 0,
        volume: 0,
        oi: 0,
        bid: 0.0,
        bid_qty: 0,
        ask: 0.0,
        ask_qty: 0,
        ..tick.clone()
    };
    let packets = vec![
        packet_from_tick(&tick).unwrap(),
        packet_from_tick(&index).unwrap(),
    ];
    let mut assembler = TickAssembler::new();
    let back: Vec<Tick> = decode_frame(&encode_frame(&packets))
        .unwrap()
        .iter()
        .map(|p| assembler.apply(p, 0).unwrap())
        .collect();
    assert_eq!(back, vec![tick.clone(), index]);
    assert_eq!(
        packet_from_tick(&Tick {
            instrument_token: -1,
            ..tick.clone()
        }),
        None
    );
    assert_eq!(
        packet_from_tick(&Tick {
            oi: i64::from(u32::MAX) + 1,
            ..tick
        }),
        None
    );
}
