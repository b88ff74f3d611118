//! The decoder reserves no more than [`MAX_FIELD_BYTES`] for a field whatever a message
//! declares (a regression found by fuzzing: apache-avro reserved up to 512 MiB for a string
//! length read from a 20-byte message; `docs/fuzzing.md`).

use strikeflow_schemas::{decode, encode, CodecError, Watermark, HEADER_LEN, MAX_FIELD_BYTES};

/// A watermark whose `source` string declares `len` bytes (and carries none).
fn watermark_declaring(len: u64) -> Vec<u8> {
    let mut bytes = encode(&Watermark {
        event_ts: 0,
        source: String::new(),
    })
    .unwrap();
    // The body is event_ts 0 (one byte) then the empty string's length (one byte).
    assert_eq!(bytes.len(), HEADER_LEN + 2);
    bytes.pop();
    let mut z = len << 1; // zig-zag of a non-negative length
    while z >= 0x80 {
        bytes.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    bytes.push(z as u8);
    bytes
}

#[test]
fn a_declared_length_beyond_the_cap_is_malformed() {
    for len in [MAX_FIELD_BYTES as u64 + 1, (1 << 29) - 1, 1 << 40] {
        let result = decode::<Watermark>(&watermark_declaring(len));
        assert!(
            matches!(result, Err(CodecError::Malformed { .. })),
            "{len}: {result:?}"
        );
    }
}

#[test]
fn a_declared_length_within_the_cap_but_beyond_the_message_is_truncated() {
    for len in [1, 1_000, MAX_FIELD_BYTES as u64] {
        let result = decode::<Watermark>(&watermark_declaring(len));
        assert!(
            matches!(result, Err(CodecError::Truncated { .. })),
            "{len}: {result:?}"
        );
    }
}
