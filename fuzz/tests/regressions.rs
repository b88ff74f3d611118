//! Inputs the fuzzer found failing, kept as regression tests.
//!
//! Every file in `fuzz/regressions/` is named `<target>--<what>.bin` and must pass its
//! target's checks (no panic, property, time limit, allocation bound): add a failing input
//! the fuzzer saved by copying it there under such a name. The tests below also pin the
//! behaviour each fix gave.

use std::path::Path;
use std::time::Duration;

use strikeflow_fuzz::{alloc, check_input, target, CountingAlloc};
use strikeflow_ingest::calendar::session_end_after;
use strikeflow_ingest::kite::{decode_frame, DecodeError};
use strikeflow_ingest::replay::Format;
use strikeflow_schemas::{decode, CodecError, Watermark, MAX_FIELD_BYTES};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn regression(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("regressions")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_saved_regression_input_passes_its_target() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some((target_name, _)) = name.split_once("--") else {
            panic!("{name}: regression inputs are named <target>--<what>.bin");
        };
        let target = target(target_name).unwrap();
        let input = std::fs::read(&path).unwrap();
        let result = check_input(target.as_ref(), &input, Duration::from_secs(5));
        assert!(result.is_ok(), "{name}: {result:?}");
        checked += 1;
    }
    assert!(
        checked >= 6,
        "only {checked} regression inputs found in {}",
        dir.display()
    );
}

/// Bytes held at once while `f` runs on this thread (after the codecs are built: their
/// one-off schema parsing is not the decode's).
fn peak_of<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let _ = strikeflow_schemas::try_fingerprint::<Watermark>();
    alloc::arm();
    let out = f();
    (out, alloc::disarm().peak)
}

#[test]
fn a_watermark_declaring_a_512_mib_string_is_malformed_without_reserving_it() {
    // Before the cap, apache-avro reserved the declared 512 MiB - 1 bytes, then failed.
    let input = regression("avro-watermark--512mib-string-length.bin");
    let (result, peak) = peak_of(|| decode::<Watermark>(&input));
    assert!(
        matches!(result, Err(CodecError::Malformed { .. })),
        "{result:?}"
    );
    assert!(peak < 64 * 1024, "held {peak} bytes");
}

#[test]
fn a_string_within_the_cap_but_beyond_the_input_costs_at_most_the_cap() {
    let input = regression("avro-watermark--1mib-string-length.bin");
    let (result, peak) = peak_of(|| decode::<Watermark>(&input));
    assert!(
        matches!(result, Err(CodecError::Truncated { .. })),
        "{result:?}"
    );
    assert!(peak <= MAX_FIELD_BYTES as u64 + 4096, "held {peak} bytes");
}

#[test]
fn a_kite_frame_declaring_more_packets_than_it_can_hold_reserves_only_what_it_can() {
    // A 3-byte frame declaring 65 535 packets reserved 65 535 packets (2.6 MB) before.
    for name in [
        "kite-frame--3-byte-frame-65535-packets.bin",
        "kite-frame--packet-count-32768.bin",
    ] {
        let input = regression(name);
        let (result, peak) = peak_of(|| decode_frame(&input));
        assert!(
            matches!(
                result,
                Err(DecodeError::TruncatedLength { .. } | DecodeError::TruncatedPacket { .. })
            ),
            "{name}: {result:?}"
        );
        assert!(peak <= 64 * input.len() as u64, "{name}: held {peak} bytes");
    }
}

#[test]
fn a_replay_line_stamped_at_i64_max_ends_its_session_without_overflow() {
    // Replay keeps the newest event time of every parsed line, valid or not, and marks the
    // end of input after it: this line made that arithmetic overflow (a panic in debug
    // builds, a wrapped marker time in release builds).
    let line = String::from_utf8(regression("replay-csv--exchange-ts-i64-max.bin")).unwrap();
    let tick = Format::Csv.parse(line.trim()).unwrap();
    assert_eq!(tick.exchange_ts, i64::MAX);
    assert_eq!(session_end_after(i64::MAX), i64::MAX);
    assert_eq!(session_end_after(i64::MAX - 1), i64::MAX);
    let near = i64::MAX - 120_000_000;
    assert!(session_end_after(near) > near);
}
