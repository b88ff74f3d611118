//! Codec behaviour: pinned fingerprints, exact wire bytes, round trips and hostile input.

use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use strikeflow_schemas::{
    canonical_form, date_from_days, days_from_date, decode, encode, encode_into, fingerprint,
    rabin_fingerprint, try_fingerprint, AvroRecord, Bar, ChainKey, CodecError, Instrument,
    InstrumentType, Tick, Watermark, HEADER_LEN,
};

/// Pinned fingerprints. The fastavro contract test checks that fastavro computes the same values
/// from the same .avsc files, so these are not self-fulfilling. A change here is a wire-format
/// change: bump the topic version.
const INSTRUMENT_FP: u64 = 0x2468_d85a_a3c4_57db;
const TICK_FP: u64 = 0x33e7_afa7_831e_c1bc;
const BAR_FP: u64 = 0x634b_b08e_0bfa_7875;
const WATERMARK_FP: u64 = 0x13e5_7924_6cfb_dc1b;

#[test]
fn fingerprints_are_pinned() {
    assert_eq!(fingerprint::<Instrument>(), INSTRUMENT_FP);
    assert_eq!(fingerprint::<Tick>(), TICK_FP);
    assert_eq!(fingerprint::<Bar>(), BAR_FP);
    assert_eq!(fingerprint::<Watermark>(), WATERMARK_FP);
    for (pcf, fp) in [
        (canonical_form(Instrument::SCHEMA_JSON), INSTRUMENT_FP),
        (canonical_form(Tick::SCHEMA_JSON), TICK_FP),
        (canonical_form(Bar::SCHEMA_JSON), BAR_FP),
        (canonical_form(Watermark::SCHEMA_JSON), WATERMARK_FP),
    ] {
        assert_eq!(rabin_fingerprint(pcf.expect("pcf").as_bytes()), fp);
    }
}

#[test]
fn record_names_match_schemas() {
    assert_eq!(Instrument::NAME, "strikeflow.Instrument");
    assert_eq!(Tick::NAME, "strikeflow.Tick");
    assert_eq!(Bar::NAME, "strikeflow.Bar");
    assert_eq!(Watermark::NAME, "strikeflow.Watermark");
    for (json, name) in [
        (Instrument::SCHEMA_JSON, Instrument::NAME),
        (Tick::SCHEMA_JSON, Tick::NAME),
        (Bar::SCHEMA_JSON, Bar::NAME),
        (Watermark::SCHEMA_JSON, Watermark::NAME),
    ] {
        let pcf = canonical_form(json).expect("pcf");
        assert!(pcf.starts_with(&format!("{{\"name\":\"{name}\",")), "{pcf}");
    }
}

/// Every field of every schema carries a "doc".
#[test]
fn every_field_is_documented() {
    for json in [
        Instrument::SCHEMA_JSON,
        Tick::SCHEMA_JSON,
        Bar::SCHEMA_JSON,
        Watermark::SCHEMA_JSON,
    ] {
        let v: serde_json::Value = serde_json::from_str(json).expect("json");
        assert!(v["doc"].is_string());
        for f in v["fields"].as_array().expect("fields") {
            assert!(f["doc"].is_string(), "field {} has no doc", f["name"]);
        }
    }
}

/// apache-avro's own fingerprint differs for our schemas (AVRO-4004); ours is the spec's. If this
/// fails after an apache-avro upgrade, upstream fixed the bug.
#[test]
fn apache_avro_fingerprint_differs_for_logical_types() {
    use apache_avro::rabin::Rabin;
    let schema = apache_avro::Schema::parse_str(Tick::SCHEMA_JSON).expect("parse");
    let theirs = schema.fingerprint::<Rabin>();
    let mut le = [0u8; 8];
    le.copy_from_slice(&theirs.bytes);
    assert_ne!(u64::from_le_bytes(le), TICK_FP);
}

fn sample_tick() -> Tick {
    Tick {
        instrument_token: 12_345_678,
        exchange_ts: 1_798_518_600_000_000, // 2026-12-29T04:30:00Z
        ltp: 142.35,
        last_qty: 65,
        volume: 1_234_500,
        oi: 9_876_500,
        bid: 142.3,
        bid_qty: 650,
        ask: 142.4,
        ask_qty: -1,
    }
}

fn zigzag(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// The exact bytes, built by hand from the spec (zig-zag varints, little-endian doubles).
#[test]
fn tick_wire_bytes_are_exact() {
    let t = sample_tick();
    let mut expected = vec![0xC3, 0x01];
    expected.extend_from_slice(&TICK_FP.to_le_bytes());
    zigzag(t.instrument_token, &mut expected);
    zigzag(t.exchange_ts, &mut expected);
    expected.extend_from_slice(&t.ltp.to_le_bytes());
    zigzag(t.last_qty, &mut expected);
    zigzag(t.volume, &mut expected);
    zigzag(t.oi, &mut expected);
    expected.extend_from_slice(&t.bid.to_le_bytes());
    zigzag(t.bid_qty, &mut expected);
    expected.extend_from_slice(&t.ask.to_le_bytes());
    zigzag(t.ask_qty, &mut expected);
    assert_eq!(encode(&t).expect("encode"), expected);
}

#[test]
fn instrument_wire_bytes_are_exact() {
    let i = Instrument {
        instrument_token: 1,
        exchange_token: -2,
        tradingsymbol: "é".into(),
        name: "N".into(),
        last_price: 0.5,
        expiry: Some(3),
        strike: 0.0,
        tick_size: 0.05,
        lot_size: 65,
        instrument_type: InstrumentType::PE,
        segment: String::new(),
        exchange: "NFO".into(),
    };
    let mut expected = vec![0xC3, 0x01];
    expected.extend_from_slice(&INSTRUMENT_FP.to_le_bytes());
    expected.extend_from_slice(&[2, 3, 4, 0xC3, 0xA9, 2, b'N']);
    expected.extend_from_slice(&0.5f64.to_le_bytes());
    expected.extend_from_slice(&[2, 6]); // union branch 1 ("int"), 3
    expected.extend_from_slice(&0.0f64.to_le_bytes());
    expected.extend_from_slice(&0.05f64.to_le_bytes());
    expected.extend_from_slice(&[130, 1, 6, 0, 6, b'N', b'F', b'O']); // 65, PE = 3, "", "NFO"
    assert_eq!(encode(&i).expect("encode"), expected);

    let none = Instrument { expiry: None, ..i };
    let bytes = encode(&none).expect("encode");
    assert_eq!(
        bytes[HEADER_LEN + 3 + 2 + 2 + 8],
        0,
        "null branch of the expiry union"
    );
    assert_eq!(decode::<Instrument>(&bytes).expect("decode"), none);
}

#[test]
fn encode_into_clears_and_reuses_the_buffer() {
    let mut buf = vec![0xAA; 500];
    encode_into(&sample_tick(), &mut buf).expect("encode");
    assert_eq!(buf, encode(&sample_tick()).expect("encode"));
    let cap = buf.capacity();
    encode_into(&sample_tick(), &mut buf).expect("encode");
    assert_eq!(buf.capacity(), cap);
}

#[test]
fn wrong_fingerprint_is_unknown_fingerprint() {
    let bytes = encode(&sample_tick()).expect("encode");
    match decode::<Bar>(&bytes) {
        Err(CodecError::UnknownFingerprint {
            found,
            expected,
            record,
        }) => {
            assert_eq!(
                (found, expected, record),
                (TICK_FP, BAR_FP, "strikeflow.Bar")
            );
        }
        other => panic!("expected UnknownFingerprint, got {other:?}"),
    }
    let mut flipped = bytes.clone();
    flipped[9] ^= 0x01;
    assert!(matches!(
        decode::<Tick>(&flipped),
        Err(CodecError::UnknownFingerprint {
            record: "strikeflow.Tick",
            ..
        })
    ));
}

#[test]
fn missing_marker_is_not_single_object() {
    let mut bytes = encode(&sample_tick()).expect("encode");
    assert!(matches!(
        decode::<Tick>(&[]),
        Err(CodecError::NotSingleObject)
    ));
    assert!(matches!(
        decode::<Tick>(&bytes[..9]),
        Err(CodecError::NotSingleObject)
    ));
    bytes[1] = 0x02;
    assert!(matches!(
        decode::<Tick>(&bytes),
        Err(CodecError::NotSingleObject)
    ));
}

#[test]
fn invalid_bodies_are_malformed() {
    let header = |fp: u64| {
        let mut v = vec![0xC3, 0x01];
        v.extend_from_slice(&fp.to_le_bytes());
        v
    };
    // Enum index 9 of a 4-symbol enum.
    let mut bad_enum = header(INSTRUMENT_FP);
    bad_enum.extend_from_slice(&[2, 2, 0, 0]);
    bad_enum.extend_from_slice(&0f64.to_le_bytes());
    bad_enum.push(0);
    bad_enum.extend_from_slice(&0f64.to_le_bytes());
    bad_enum.extend_from_slice(&0f64.to_le_bytes());
    bad_enum.extend_from_slice(&[2, 18, 0, 0]);
    assert!(
        matches!(
            decode::<Instrument>(&bad_enum),
            Err(CodecError::Malformed { .. })
        ),
        "{:?}",
        decode::<Instrument>(&bad_enum)
    );
    // Union branch 2 of a 2-branch union.
    let mut bad_union = header(INSTRUMENT_FP);
    bad_union.extend_from_slice(&[2, 2, 0, 0]);
    bad_union.extend_from_slice(&0f64.to_le_bytes());
    bad_union.extend_from_slice(&[4, 0]);
    assert!(matches!(
        decode::<Instrument>(&bad_union),
        Err(CodecError::Malformed { .. })
    ));
    // Invalid UTF-8 in a string.
    let mut bad_utf8 = header(INSTRUMENT_FP);
    bad_utf8.extend_from_slice(&[2, 2, 2, 0xFF]);
    assert!(matches!(
        decode::<Instrument>(&bad_utf8),
        Err(CodecError::Malformed { .. })
    ));
    // Negative string length.
    let mut neg_len = header(INSTRUMENT_FP);
    neg_len.extend_from_slice(&[2, 2, 1]);
    assert!(matches!(
        decode::<Instrument>(&neg_len),
        Err(CodecError::Malformed { .. })
    ));
    // Varint longer than 10 bytes.
    let mut long_varint = header(TICK_FP);
    long_varint.extend_from_slice(&[0xFF; 11]);
    assert!(matches!(
        decode::<Tick>(&long_varint),
        Err(CodecError::Malformed { .. })
    ));
    // int field (tick_count) holding a value outside i32.
    let mut big_int = header(BAR_FP);
    for _ in 0..3 {
        zigzag(1, &mut big_int);
    }
    for _ in 0..4 {
        big_int.extend_from_slice(&1f64.to_le_bytes());
    }
    zigzag(1, &mut big_int);
    zigzag(1, &mut big_int);
    zigzag(i64::from(i32::MAX) + 1, &mut big_int);
    assert!(matches!(
        decode::<Bar>(&big_int),
        Err(CodecError::Malformed { .. })
    ));
}

#[test]
fn trailing_bytes_are_reported() {
    let mut bytes = encode(&sample_tick()).expect("encode");
    bytes.extend_from_slice(&[0, 0, 0]);
    assert!(matches!(
        decode::<Tick>(&bytes),
        Err(CodecError::TrailingBytes {
            record: "strikeflow.Tick",
            extra: 3
        })
    ));
}

#[test]
fn nan_and_infinities_round_trip_bitwise() {
    let t = Tick {
        ltp: f64::NAN,
        bid: f64::INFINITY,
        ask: f64::NEG_INFINITY,
        ..sample_tick()
    };
    let back = decode::<Tick>(&encode(&t).expect("encode")).expect("decode");
    assert_eq!(back.ltp.to_bits(), t.ltp.to_bits());
    assert_eq!(back.bid, f64::INFINITY);
    assert_eq!(back.ask, f64::NEG_INFINITY);
}

/// A type from outside the crate, using the trait's default (registry) codec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Probe {
    at: i64,
    label: String,
}

impl AvroRecord for Probe {
    const NAME: &'static str = "test.Probe";
    const SCHEMA_JSON: &'static str = r#"{"type":"record","name":"Probe","namespace":"test",
        "fields":[{"name":"at","type":{"type":"long","logicalType":"timestamp-micros"}},
                  {"name":"label","type":"string"}]}"#;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Misnamed {
    at: i64,
}

impl AvroRecord for Misnamed {
    const NAME: &'static str = "test.Other";
    const SCHEMA_JSON: &'static str = r#"{"type":"record","name":"Misnamed","namespace":"test","fields":[{"name":"at","type":"long"}]}"#;
}

#[test]
fn default_registry_codec_works_for_other_types() {
    let p = Probe {
        at: 7,
        label: "x".into(),
    };
    let bytes = encode(&p).expect("encode");
    let pcf = r#"{"name":"test.Probe","type":"record","fields":[{"name":"at","type":"long"},{"name":"label","type":"string"}]}"#;
    assert_eq!(fingerprint::<Probe>(), rabin_fingerprint(pcf.as_bytes()));
    assert_eq!(bytes[2..10], fingerprint::<Probe>().to_le_bytes());
    assert_eq!(decode::<Probe>(&bytes).expect("decode"), p);
}

#[test]
fn schema_name_mismatch_is_a_schema_error() {
    assert!(matches!(
        try_fingerprint::<Misnamed>(),
        Err(CodecError::Schema(_))
    ));
    assert!(matches!(
        encode(&Misnamed { at: 1 }),
        Err(CodecError::Schema(_))
    ));
    assert!(matches!(
        decode::<Misnamed>(&[0xC3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2]),
        Err(CodecError::Schema(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// Doubles without NaN (NaN != NaN would break `PartialEq`; NaN is covered bitwise above).
fn double() -> impl Strategy<Value = f64> {
    prop::num::f64::POSITIVE
        | prop::num::f64::NEGATIVE
        | prop::num::f64::ZERO
        | prop::num::f64::SUBNORMAL
        | prop::num::f64::INFINITE
}

fn instrument_type() -> impl Strategy<Value = InstrumentType> {
    prop_oneof![
        Just(InstrumentType::EQ),
        Just(InstrumentType::FUT),
        Just(InstrumentType::CE),
        Just(InstrumentType::PE),
    ]
}

prop_compose! {
    fn instrument()(
        instrument_token in any::<i64>(),
        exchange_token in any::<i64>(),
        tradingsymbol in any::<String>(),
        name in any::<String>(),
        last_price in double(),
        expiry in proptest::option::of(any::<i32>()),
        strike in double(),
        tick_size in double(),
        lot_size in any::<i32>(),
        instrument_type in instrument_type(),
        segment in any::<String>(),
        exchange in any::<String>(),
    ) -> Instrument {
        Instrument { instrument_token, exchange_token, tradingsymbol, name, last_price, expiry,
            strike, tick_size, lot_size, instrument_type, segment, exchange }
    }
}

prop_compose! {
    fn tick()(
        instrument_token in any::<i64>(),
        exchange_ts in any::<i64>(),
        ltp in double(),
        last_qty in any::<i64>(),
        volume in any::<i64>(),
        oi in any::<i64>(),
        bid in double(),
        bid_qty in any::<i64>(),
        ask in double(),
        ask_qty in any::<i64>(),
    ) -> Tick {
        Tick { instrument_token, exchange_ts, ltp, last_qty, volume, oi, bid, bid_qty, ask, ask_qty }
    }
}

prop_compose! {
    fn bar()(
        instrument_token in any::<i64>(),
        window_start in any::<i64>(),
        window_end in any::<i64>(),
        open in double(),
        high in double(),
        low in double(),
        close in double(),
        volume in any::<i64>(),
        oi in any::<i64>(),
        tick_count in any::<i32>(),
    ) -> Bar {
        Bar { instrument_token, window_start, window_end, open, high, low, close, volume, oi, tick_count }
    }
}

/// Round trip, then every truncation is `NotSingleObject` (inside the header) or `Truncated`,
/// and appended bytes are `TrailingBytes`.
fn check_round_trip_and_damage<T: AvroRecord + PartialEq + std::fmt::Debug>(
    value: &T,
    extra: &[u8],
) -> Result<(), TestCaseError> {
    let bytes = encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&bytes[..2], &[0xC3, 0x01]);
    prop_assert_eq!(&bytes[2..10], &fingerprint::<T>().to_le_bytes());
    prop_assert_eq!(
        &decode::<T>(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?,
        value
    );
    for cut in 0..bytes.len() {
        match decode::<T>(&bytes[..cut]) {
            Err(CodecError::NotSingleObject) => prop_assert!(cut < HEADER_LEN),
            Err(CodecError::Truncated { record }) => {
                prop_assert!(cut >= HEADER_LEN);
                prop_assert_eq!(record, T::NAME);
            }
            other => prop_assert!(false, "cut at {}: {:?}", cut, other),
        }
    }
    if !extra.is_empty() {
        let mut longer = bytes.clone();
        longer.extend_from_slice(extra);
        match decode::<T>(&longer) {
            Err(CodecError::TrailingBytes { extra: n, .. }) => prop_assert_eq!(n, extra.len()),
            other => prop_assert!(false, "{:?}", other),
        }
    }
    Ok(())
}

/// Arbitrary bytes never panic and only ever produce decode-side errors; with a valid header
/// the body errors are the body variants.
fn check_garbage<T: AvroRecord + std::fmt::Debug>(garbage: &[u8]) -> Result<(), TestCaseError> {
    match decode::<T>(garbage) {
        Ok(_)
        | Err(CodecError::NotSingleObject)
        | Err(CodecError::UnknownFingerprint { .. })
        | Err(CodecError::Truncated { .. })
        | Err(CodecError::TrailingBytes { .. })
        | Err(CodecError::Malformed { .. }) => {}
        Err(e) => prop_assert!(false, "unexpected {:?}", e),
    }
    let mut framed = vec![0xC3, 0x01];
    framed.extend_from_slice(&fingerprint::<T>().to_le_bytes());
    framed.extend_from_slice(garbage);
    match decode::<T>(&framed) {
        Ok(_)
        | Err(CodecError::Truncated { .. })
        | Err(CodecError::TrailingBytes { .. })
        | Err(CodecError::Malformed { .. }) => {}
        Err(e) => prop_assert!(false, "unexpected {:?}", e),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn instrument_round_trips(i in instrument(), extra in prop::collection::vec(any::<u8>(), 0..4)) {
        check_round_trip_and_damage(&i, &extra)?;
        prop_assert_eq!(i.chain_key().expiry, i.expiry);
    }

    #[test]
    fn tick_round_trips(t in tick(), extra in prop::collection::vec(any::<u8>(), 0..4)) {
        check_round_trip_and_damage(&t, &extra)?;
    }

    #[test]
    fn bar_round_trips(b in bar(), extra in prop::collection::vec(any::<u8>(), 0..4)) {
        check_round_trip_and_damage(&b, &extra)?;
    }

    #[test]
    fn garbage_never_panics(garbage in prop::collection::vec(any::<u8>(), 0..200)) {
        check_garbage::<Instrument>(&garbage)?;
        check_garbage::<Tick>(&garbage)?;
        check_garbage::<Bar>(&garbage)?;
    }

    /// Random single-byte corruption of valid messages never panics.
    #[test]
    fn corrupted_messages_never_panic(t in tick(), i in instrument(), pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        for mut bytes in [encode(&t).map_err(|e| TestCaseError::fail(e.to_string()))?,
                          encode(&i).map_err(|e| TestCaseError::fail(e.to_string()))?] {
            let at = pos.index(bytes.len());
            bytes[at] = byte;
            let _ = decode::<Tick>(&bytes);
            let _ = decode::<Instrument>(&bytes);
        }
    }

    #[test]
    fn chain_key_round_trips(underlying in "[A-Z0-9 &-]{1,20}", expiry in proptest::option::of(any::<i32>())) {
        let key = ChainKey { underlying, expiry };
        prop_assert_eq!(ChainKey::parse(&key.to_string()), Ok(key));
    }

    #[test]
    fn days_round_trip(days in -700_000i32..3_000_000) {
        let date = date_from_days(days);
        prop_assert!(date.is_some());
        prop_assert_eq!(date.map(days_from_date), Some(days));
    }
}

/// A watermark marker round-trips, and a reader that takes it for a tick (ignoring the
/// `strikeflow.watermark` header) is refused by fingerprint instead of misreading it.
#[test]
fn watermark_marker_is_not_mistaken_for_a_tick() {
    let marker = Watermark {
        event_ts: 1_798_536_600_000_000, // 2026-12-29T10:00:00Z, 15:30 IST
        source: "simulator".into(),
    };
    let bytes = encode(&marker).expect("encode");
    assert_eq!(decode::<Watermark>(&bytes).expect("decode"), marker);
    match decode::<Tick>(&bytes) {
        Err(CodecError::UnknownFingerprint { .. }) => {}
        other => panic!("a marker read as a tick must fail by fingerprint, got {other:?}"),
    }
}
