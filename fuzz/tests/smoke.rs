//! A short run of every fuzz target (part of `cargo test`, so of `./dev test`), and tests of
//! the harness itself: that a panic, a property violation, a slow input and an allocation
//! beyond the bound are each caught, reported and saved.
//!
//! `STRIKEFLOW_FUZZ_SEED` and `STRIKEFLOW_FUZZ_INPUTS` change the seed (default 12) and the
//! inputs per target (default 20 000) of the short runs.

use std::time::Duration;

use strikeflow_fuzz::rng::Rng;
use strikeflow_fuzz::{
    alloc, check_input, generate, run_target, target, CountingAlloc, FailureKind, RunConfig, Target,
};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(inputs: u64) -> RunConfig {
    RunConfig {
        seed: env_u64("STRIKEFLOW_FUZZ_SEED", 12),
        inputs,
        // Unoptimised test builds are 10-50x slower than the release bench; a hang is still
        // caught, and the bench holds the real limit.
        time_limit: Duration::from_secs(5),
        hang_abort: Duration::from_secs(120),
        out_dir: std::env::temp_dir().join("strikeflow-fuzz-smoke"),
        progress: None,
        stop: None,
    }
}

fn short_run(name: &str, inputs: u64) {
    let target = target(name).unwrap();
    let report = run_target(
        target.as_ref(),
        &config(env_u64("STRIKEFLOW_FUZZ_INPUTS", inputs)),
    );
    println!("{report}");
    assert!(report.failure.is_none(), "{report}");
    assert!(report.alloc_measured, "the counting allocator is installed");
    assert!(
        report.accepted > 0,
        "{name}: no input was accepted: the corpus is broken"
    );
}

macro_rules! short_runs {
    ($($test:ident => $name:literal, $inputs:expr;)*) => {
        $(
            #[test]
            fn $test() {
                short_run($name, $inputs);
            }
        )*
    };
}

short_runs! {
    fuzz_avro_tick => "avro-tick", 20_000;
    fuzz_avro_instrument => "avro-instrument", 20_000;
    fuzz_avro_bar => "avro-bar", 20_000;
    fuzz_avro_watermark => "avro-watermark", 20_000;
    fuzz_avro_strike => "avro-strike", 20_000;
    fuzz_avro_chain => "avro-chain", 20_000;
    fuzz_avro_moneyness => "avro-moneyness", 20_000;
    fuzz_avro_indicator => "avro-indicator", 20_000;
    fuzz_kite_frame => "kite-frame", 20_000;
    fuzz_client_op_json => "client-op-json", 20_000;
    fuzz_client_op_msgpack => "client-op-msgpack", 20_000;
    fuzz_replay_ndjson => "replay-ndjson", 20_000;
    fuzz_replay_csv => "replay-csv", 20_000;
    fuzz_jwt => "jwt", 20_000;
}

/// A target whose behaviour is chosen by the first byte of the input: the harness must catch
/// and report each kind of failure.
struct Faulty {
    corpus: Vec<Vec<u8>>,
}

impl Faulty {
    fn new(first: u8) -> Self {
        Self {
            corpus: vec![vec![0, 1, 2], vec![first, 9, 9, 9]],
        }
    }
}

impl Target for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn describe(&self) -> &'static str {
        "a deliberately broken target"
    }
    fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }
    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        data.push(rng.byte());
    }
    fn run(&self, input: &[u8]) -> Result<bool, String> {
        match input.first() {
            Some(b'p') => panic!("deliberate panic on {input:?}"),
            Some(b'e') => Err("deliberately violated property".to_owned()),
            Some(b's') => {
                std::thread::sleep(Duration::from_millis(300));
                Ok(true)
            }
            Some(b'a') => {
                // 64 MiB for a 4-byte input: what a trusted length field does.
                let v = std::hint::black_box(Vec::<u8>::with_capacity(64 << 20));
                Ok(v.capacity() > 0)
            }
            _ => Ok(true),
        }
    }
}

/// The directory a harness test saves failing inputs in (one per test).
fn faulty_dir(first: u8) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "strikeflow-fuzz-harness-{}-{}",
        std::process::id(),
        first as char
    ))
}

/// Runs the faulty target, then removes what it saved (after `check` looked at it).
fn run_faulty(
    first: u8,
    time_limit: Duration,
    check: impl FnOnce(&strikeflow_fuzz::Report, &std::path::Path),
) {
    let dir = faulty_dir(first);
    let config = RunConfig {
        seed: 5,
        inputs: 100,
        time_limit,
        hang_abort: Duration::from_secs(60),
        out_dir: dir.clone(),
        progress: None,
        stop: None,
    };
    let report = run_target(&Faulty::new(first), &config);
    check(&report, &dir);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_panicking_target_is_caught_reported_and_its_input_saved() {
    run_faulty(b'p', Duration::from_secs(5), |report, _| {
        let failure = report.failure.as_ref().expect("the panic is reported");
        assert!(
            matches!(&failure.kind, FailureKind::Panic(m) if m.contains("deliberate panic")),
            "{report}"
        );
        // The corpus comes first: the panicking entry is input #1, and the run stopped there.
        assert_eq!((failure.index, report.inputs), (1, 2));
        let saved = failure.saved.as_ref().expect("the input is saved");
        assert_eq!(std::fs::read(saved).unwrap(), b"p\x09\x09\x09");
        assert!(
            report.to_string().contains("FAILED on input #1: panic"),
            "{report}"
        );
    });
}

#[test]
fn a_violated_property_is_a_failure() {
    run_faulty(b'e', Duration::from_secs(5), |report, _| {
        let kind = report.failure.as_ref().map(|f| f.kind.clone());
        assert_eq!(
            kind,
            Some(FailureKind::Property(
                "deliberately violated property".to_owned()
            ))
        );
    });
}

#[test]
fn an_input_over_the_time_limit_is_a_failure_and_the_watchdog_saves_it() {
    run_faulty(b's', Duration::from_millis(40), |report, dir| {
        let failure = report.failure.as_ref().expect("the slow input is reported");
        assert!(
            matches!(failure.kind, FailureKind::Slow { elapsed, .. } if elapsed >= Duration::from_millis(300))
        );
        // The watchdog saw it running past the limit and saved it before it returned.
        let hang = dir.join("faulty-hang-seed5-1.bin");
        assert_eq!(std::fs::read(hang).unwrap(), b"s\x09\x09\x09");
    });
}

#[test]
fn an_allocation_beyond_the_bound_is_a_failure() {
    run_faulty(b'a', Duration::from_secs(5), |report, _| {
        let failure = report.failure.as_ref().expect("the allocation is reported");
        assert!(
            matches!(failure.kind, FailureKind::Alloc { peak, .. } if peak >= 64 << 20),
            "{:?}",
            failure.kind
        );
    });
}

#[test]
fn a_clean_target_runs_every_input() {
    run_faulty(b'x', Duration::from_secs(5), |report, dir| {
        assert!(report.failure.is_none());
        assert_eq!(report.inputs, 100);
        assert!(report.rate() > 0.0);
        assert!(!dir.exists(), "nothing saved");
    });
}

#[test]
fn inputs_are_a_function_of_seed_target_and_index() {
    let target = target("client-op-json").unwrap();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for index in [0, 5, 100, 99_999] {
        generate(target.as_ref(), 42, index, &mut a);
        generate(target.as_ref(), 42, index, &mut b);
        assert_eq!(a, b);
    }
    let differs = (20..60).any(|index| {
        generate(target.as_ref(), 42, index, &mut a);
        generate(target.as_ref(), 43, index, &mut b);
        a != b
    });
    assert!(differs, "another seed gives other inputs");
}

#[test]
fn the_counting_allocator_measures_this_thread() {
    assert!(alloc::installed());
    alloc::arm();
    let v = std::hint::black_box(vec![1u8; 10_000]);
    drop(v);
    let m = alloc::disarm();
    assert!(
        m.peak >= 10_000 && m.total >= 10_000 && m.largest >= 10_000,
        "{m:?}"
    );
}

#[test]
fn check_input_applies_the_same_checks() {
    let faulty = Faulty::new(b'p');
    assert!(matches!(
        check_input(&faulty, b"p", Duration::from_secs(5)),
        Err(FailureKind::Panic(_))
    ));
    assert_eq!(check_input(&faulty, b"x", Duration::from_secs(5)), Ok(true));
}
