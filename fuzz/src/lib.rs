//! Fuzzing of strikeflow's decoders and parsers: a seeded, structure-aware mutation harness
//! (no coverage instrumentation: it runs on stable Rust with no tools to install, in
//! `cargo test` and in `strikeflow bench fuzz`). See `docs/fuzzing.md`.
//!
//! * [`targets`]: the code under test, each with a corpus of real inputs (encoded records,
//!   Kite frames, replay lines, client requests, tokens) and its own structure-aware
//!   mutations.
//! * [`harness`]: input generation (a pure function of seed, target and index, so every
//!   input can be regenerated), `catch_unwind`, the time limit and hang watchdog, the
//!   allocation bound, and saving failing inputs.
//! * [`alloc`]: the counting global allocator the allocation bound is measured with.
//! * [`mutate`] and [`rng`]: the mutations and the generator they draw from.

pub mod alloc;
pub mod harness;
pub mod mutate;
pub mod rng;
pub mod targets;

pub use alloc::CountingAlloc;
pub use harness::{
    check_input, generate, run_target, Failure, FailureKind, Report, RunConfig, Target, ALLOC_BASE,
    ALLOC_PER_INPUT_BYTE,
};
pub use targets::{select, target, TargetError, NAMES};
