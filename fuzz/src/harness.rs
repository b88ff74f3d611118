//! The runner: generates each input from the seed, runs the target on it under
//! `catch_unwind`, a clock, a hang watchdog and the counting allocator, and stops a target at
//! its first failure with the input saved for reproduction.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::alloc;
use crate::mutate::byte_mutation;
use crate::rng::Rng;

/// Bytes per input byte a call may hold at once by default (see [`Target::alloc_limit`]):
/// `serde_json::Value` spends a ~650-byte B-tree node on each `{"a":` (5 bytes) of nesting.
pub const ALLOC_PER_INPUT_BYTE: u64 = 256;

/// Bytes any call may hold at once whatever its input (error messages, small buffers).
pub const ALLOC_BASE: u64 = 64 * 1024;

/// A parser or decoder under test, with the corpus of valid inputs its mutations start from.
pub trait Target: Send + Sync {
    /// Short name used on the command line and in file names (`avro-tick`, `jwt`, …).
    fn name(&self) -> &'static str;

    /// What the target exercises, one line.
    fn describe(&self) -> &'static str;

    /// Valid inputs (real encoded records, frames, lines, tokens). Never empty.
    fn corpus(&self) -> &[Vec<u8>];

    /// Applies one structure-aware mutation (length fields, varints, tokens, segments).
    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>);

    /// Feeds one input to the code under test. `Ok(true)`: accepted as valid, `Ok(false)`:
    /// rejected with an error (both are fine); `Err`: a property the target checks on
    /// accepted inputs (e.g. a round trip) does not hold.
    fn run(&self, input: &[u8]) -> Result<bool, String>;

    /// Longest input generated.
    fn max_len(&self) -> usize {
        4096
    }

    /// Percentage of mutations that are the target's structure-aware ones (the rest are
    /// byte-level).
    fn structure_percent(&self) -> usize {
        60
    }

    /// The most bytes one call may hold at once for an input of `len` bytes. The default,
    /// [`ALLOC_PER_INPUT_BYTE`] per input byte plus [`ALLOC_BASE`], is above what building a
    /// value from its input costs (the worst measured: a JSON tree of nested one-key objects,
    /// ~150 bytes per input byte) and far below what a trusted length or count field makes a
    /// decoder reserve (megabytes from a few bytes).
    fn alloc_limit(&self, len: usize) -> u64 {
        ALLOC_PER_INPUT_BYTE * len as u64 + ALLOC_BASE
    }
}

/// How a run is made.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The seed every input is derived from.
    pub seed: u64,
    /// Inputs per target (the corpus entries themselves come first).
    pub inputs: u64,
    /// An input that takes longer than this is a failure (a hang, or a quadratic path).
    pub time_limit: Duration,
    /// An input still running after this long aborts the process, after its bytes were
    /// saved (a true infinite loop cannot be interrupted otherwise).
    pub hang_abort: Duration,
    /// Where failing inputs are written.
    pub out_dir: PathBuf,
    /// Print a progress line to stderr this often (`None`: quiet).
    pub progress: Option<Duration>,
    /// When set, the run stops before the next input (Ctrl-C in `strikeflow bench fuzz`).
    pub stop: Option<Arc<AtomicBool>>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            inputs: 10_000,
            time_limit: Duration::from_secs(1),
            hang_abort: Duration::from_secs(30),
            out_dir: std::env::temp_dir().join("strikeflow-fuzz"),
            progress: None,
            stop: None,
        }
    }
}

/// What went wrong with one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The code panicked; the panic message.
    Panic(String),
    /// A property of an accepted input does not hold.
    Property(String),
    /// The input took longer than the time limit.
    Slow {
        /// How long it took.
        elapsed: Duration,
        /// The limit.
        limit: Duration,
    },
    /// The call held more bytes at once than the target's bound.
    Alloc {
        /// Peak bytes held.
        peak: u64,
        /// The bound for this input.
        limit: u64,
    },
}

impl FailureKind {
    /// One word for file names.
    pub fn label(&self) -> &'static str {
        match self {
            FailureKind::Panic(_) => "panic",
            FailureKind::Property(_) => "property",
            FailureKind::Slow { .. } => "slow",
            FailureKind::Alloc { .. } => "alloc",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Panic(msg) => write!(f, "panic: {msg}"),
            FailureKind::Property(msg) => write!(f, "property violated: {msg}"),
            FailureKind::Slow { elapsed, limit } => {
                write!(f, "took {elapsed:?} (limit {limit:?})")
            }
            FailureKind::Alloc { peak, limit } => {
                write!(f, "held {peak} bytes at once (limit {limit})")
            }
        }
    }
}

/// A failing input.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What went wrong.
    pub kind: FailureKind,
    /// Its index in the run (regenerate with [`generate`] and the run's seed).
    pub index: u64,
    /// The input itself.
    pub input: Vec<u8>,
    /// Where it was saved, if it could be.
    pub saved: Option<PathBuf>,
}

/// The figures of one target's run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// The seed.
    pub seed: u64,
    /// Inputs run.
    pub inputs: u64,
    /// Inputs the target accepted as valid.
    pub accepted: u64,
    /// Wall time of the run (generation included).
    pub elapsed: Duration,
    /// The slowest input's time inside the target.
    pub slowest: Duration,
    /// Its index.
    pub slowest_index: u64,
    /// The slowest input's best time over 5 re-runs after the run: tells a slow input from
    /// one that was descheduled (the machine is shared).
    pub slowest_rerun: Duration,
    /// Whether allocations were measured (the counting allocator is installed).
    pub alloc_measured: bool,
    /// The most bytes one input's call held at once.
    pub peak_alloc: u64,
    /// That input's index and length.
    pub peak_alloc_input: (u64, usize),
    /// The largest single allocation of any call.
    pub largest_alloc: u64,
    /// The first failure, which stopped the target.
    pub failure: Option<Failure>,
}

impl Report {
    /// Inputs per second of wall time.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alloc = if self.alloc_measured {
            format!(
                "peak alloc {} B (input #{} of {} B), largest single {} B",
                self.peak_alloc,
                self.peak_alloc_input.0,
                self.peak_alloc_input.1,
                self.largest_alloc
            )
        } else {
            "allocations not measured (no counting allocator)".to_owned()
        };
        write!(
            f,
            "{:<18} {:>11} inputs ({:>5.1}% accepted) in {:>7.1} s = {:>9.0}/s; slowest {:>9.1?} (#{}, {:.1?} re-run); {}",
            self.target,
            self.inputs,
            100.0 * self.accepted as f64 / self.inputs.max(1) as f64,
            self.elapsed.as_secs_f64(),
            self.rate(),
            self.slowest,
            self.slowest_index,
            self.slowest_rerun,
            alloc
        )?;
        if let Some(failure) = &self.failure {
            write!(
                f,
                "\n  FAILED on input #{}: {}",
                failure.index, failure.kind
            )?;
            match &failure.saved {
                Some(path) => write!(f, "\n  input saved to {}", path.display())?,
                None => write!(
                    f,
                    "\n  input: {:?}",
                    String::from_utf8_lossy(&failure.input)
                )?,
            }
        }
        Ok(())
    }
}

/// Writes input `index` of `target` under `seed` into `out`: the corpus entries as they
/// are first, then a corpus entry under 1–8 stacked mutations, structure-aware or
/// byte-level. A pure function of its arguments.
pub fn generate(target: &dyn Target, seed: u64, index: u64, out: &mut Vec<u8>) {
    out.clear();
    let corpus = target.corpus();
    if let Some(entry) = usize::try_from(index).ok().and_then(|i| corpus.get(i)) {
        out.extend_from_slice(entry);
        return;
    }
    let mut rng = Rng::for_input(seed, target.name(), index);
    if let Some(base) = rng.pick(corpus) {
        out.extend_from_slice(base);
    }
    let max_len = target.max_len();
    let ops = if rng.one_in(4) {
        rng.range(1, 8)
    } else {
        rng.range(1, 3)
    };
    for _ in 0..ops {
        if rng.below(100) < target.structure_percent() {
            target.mutate(&mut rng, out);
        } else {
            let other = rng.pick(corpus).map_or(&[][..], Vec::as_slice);
            byte_mutation(&mut rng, out, other, max_len);
        }
    }
    out.truncate(max_len);
}

/// What one call did.
#[derive(Debug, Clone, Copy)]
struct Observed {
    accepted: bool,
    elapsed: Duration,
    alloc: alloc::Measure,
}

/// Runs one input under `catch_unwind`, the clock and the allocation counter.
fn observe(target: &dyn Target, input: &[u8]) -> Result<Observed, (FailureKind, Duration)> {
    alloc::arm();
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let elapsed = started.elapsed();
    let measure = alloc::disarm();
    match result {
        Ok(Ok(accepted)) => Ok(Observed {
            accepted,
            elapsed,
            alloc: measure,
        }),
        Ok(Err(msg)) => Err((FailureKind::Property(msg), elapsed)),
        Err(payload) => Err((FailureKind::Panic(panic_message(&*payload)), elapsed)),
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// Checks one input against the time and allocation bounds as well as panics and
/// properties: what both the run loop and [`check_input`] apply.
fn judge(
    target: &dyn Target,
    input: &[u8],
    limit: Duration,
    measured: bool,
) -> Result<Observed, FailureKind> {
    let observed = observe(target, input).map_err(|(kind, _)| kind)?;
    if observed.elapsed > limit {
        return Err(FailureKind::Slow {
            elapsed: observed.elapsed,
            limit,
        });
    }
    let alloc_limit = target.alloc_limit(input.len());
    if measured && observed.alloc.peak > alloc_limit {
        return Err(FailureKind::Alloc {
            peak: observed.alloc.peak,
            limit: alloc_limit,
        });
    }
    Ok(observed)
}

/// Runs one given input (a saved failure, a regression case) through the same checks as a
/// fuzzing run: no panic, property, time limit, allocation bound.
pub fn check_input(
    target: &dyn Target,
    input: &[u8],
    time_limit: Duration,
) -> Result<bool, FailureKind> {
    let measured = alloc::installed();
    judge(target, input, time_limit, measured).map(|o| o.accepted)
}

/// Saves a failing input as `<dir>/<target>-<kind>-seed<seed>-<index>.bin`.
fn save(
    dir: &Path,
    target: &str,
    label: &str,
    seed: u64,
    index: u64,
    input: &[u8],
) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{target}-{label}-seed{seed}-{index}.bin"));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

/// The state the watchdog reads: the index of the running input plus one (0: between
/// inputs).
struct Watch {
    current: AtomicU64,
    done: AtomicBool,
}

/// Sets its flag and wakes the watchdog when dropped.
struct StopOnDrop<'a>(&'a AtomicBool, std::thread::Thread);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        self.1.unpark();
    }
}

/// Polls the running input; one running past the time limit is saved (so a hang that never
/// returns still leaves its input behind), one running past `hang_abort` aborts the process.
fn watchdog(target: &dyn Target, config: &RunConfig, watch: &Watch) {
    let poll = (config.time_limit / 4).clamp(Duration::from_millis(1), Duration::from_millis(200));
    let mut seen = 0;
    let mut since = Instant::now();
    let mut saved = false;
    while !watch.done.load(Ordering::Relaxed) {
        std::thread::park_timeout(poll);
        let current = watch.current.load(Ordering::Relaxed);
        if current != seen {
            seen = current;
            since = Instant::now();
            saved = false;
            continue;
        }
        if current == 0 {
            continue;
        }
        let running = since.elapsed();
        let index = current - 1;
        if running > config.time_limit && !saved {
            saved = true;
            let mut input = Vec::new();
            generate(target, config.seed, index, &mut input);
            let path = save(
                &config.out_dir,
                target.name(),
                "hang",
                config.seed,
                index,
                &input,
            );
            eprintln!(
                "fuzz {}: input #{index} has run for {running:?} (limit {:?}); saved to {}",
                target.name(),
                config.time_limit,
                path.map_or_else(
                    || "<could not save>".to_owned(),
                    |p| p.display().to_string()
                )
            );
        }
        if running > config.hang_abort {
            eprintln!(
                "fuzz {}: input #{index} still running after {running:?}: a hang; aborting",
                target.name()
            );
            std::process::abort();
        }
    }
}

/// Fuzzes one target: `config.inputs` inputs from `config.seed`, stopping at the first
/// failure (saved under `config.out_dir`).
pub fn run_target(target: &dyn Target, config: &RunConfig) -> Report {
    let measured = alloc::installed();
    let watch = Watch {
        current: AtomicU64::new(0),
        done: AtomicBool::new(false),
    };
    let mut report = Report {
        target: target.name(),
        seed: config.seed,
        inputs: 0,
        accepted: 0,
        elapsed: Duration::ZERO,
        slowest: Duration::ZERO,
        slowest_index: 0,
        slowest_rerun: Duration::ZERO,
        alloc_measured: measured,
        peak_alloc: 0,
        peak_alloc_input: (0, 0),
        largest_alloc: 0,
        failure: None,
    };
    let started = Instant::now();
    std::thread::scope(|scope| {
        let dog = scope.spawn(|| watchdog(target, config, &watch));
        // Stops the watchdog however this closure ends: a panic outside the target (a bug
        // in a mutator) must propagate, not leave the scope waiting for the watchdog.
        let _stop = StopOnDrop(&watch.done, dog.thread().clone());
        let mut input = Vec::with_capacity(target.max_len());
        let mut last_progress = Instant::now();
        for index in 0..config.inputs {
            if config
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Relaxed))
            {
                break;
            }
            generate(target, config.seed, index, &mut input);
            watch.current.store(index + 1, Ordering::Relaxed);
            let result = judge(target, &input, config.time_limit, measured);
            watch.current.store(0, Ordering::Relaxed);
            report.inputs = index + 1;
            match result {
                Ok(observed) => {
                    report.accepted += u64::from(observed.accepted);
                    if observed.elapsed > report.slowest {
                        report.slowest = observed.elapsed;
                        report.slowest_index = index;
                    }
                    if observed.alloc.peak > report.peak_alloc {
                        report.peak_alloc = observed.alloc.peak;
                        report.peak_alloc_input = (index, input.len());
                    }
                    report.largest_alloc = report.largest_alloc.max(observed.alloc.largest);
                }
                Err(kind) => {
                    let saved = save(
                        &config.out_dir,
                        target.name(),
                        kind.label(),
                        config.seed,
                        index,
                        &input,
                    );
                    report.failure = Some(Failure {
                        kind,
                        index,
                        input: input.clone(),
                        saved,
                    });
                    break;
                }
            }
            if let Some(every) = config.progress {
                if index % 4096 == 0 && last_progress.elapsed() >= every {
                    last_progress = Instant::now();
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!(
                        "fuzz {}: {} inputs, {:.0}/s",
                        target.name(),
                        index + 1,
                        (index + 1) as f64 / secs.max(1e-9)
                    );
                }
            }
        }
        report.elapsed = started.elapsed();
    });
    if report.inputs > 0 && report.failure.is_none() {
        let mut input = Vec::new();
        generate(target, config.seed, report.slowest_index, &mut input);
        report.slowest_rerun = (0..5)
            .filter_map(|_| observe(target, &input).ok().map(|o| o.elapsed))
            .min()
            .unwrap_or_default();
    }
    report
}
