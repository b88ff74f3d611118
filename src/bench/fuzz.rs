//! `strikeflow bench fuzz`: the fuzz targets of `strikeflow-fuzz` for millions of inputs,
//! with the figures `docs/fuzzing.md` records (inputs/s, the slowest input, the peak
//! allocation of one input) and any failing input saved for reproduction.
//!
//! The counting allocator is this binary's global allocator, so allocations can be
//! measured per input. It forwards to the system allocator; on every thread but the fuzzing
//! one it costs one thread-local flag read per allocation.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strikeflow_fuzz::{check_input, run_target, select, CountingAlloc, Report, RunConfig};

/// Per-input allocation measurement for `bench fuzz` (see the module documentation).
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// What `strikeflow bench fuzz` was asked for.
#[derive(Debug, Clone)]
pub struct FuzzBench {
    /// A target name or `all`.
    pub target: String,
    /// Inputs per target.
    pub inputs: u64,
    /// The seed every input derives from.
    pub seed: u64,
    /// An input taking longer than this fails the run.
    pub time_limit: Duration,
    /// Where failing inputs are saved.
    pub out: PathBuf,
    /// Run this one saved input through the target's checks instead of fuzzing.
    pub replay: Option<PathBuf>,
}

/// Runs the fuzz bench; an error when any target failed (its input saved under `out`).
pub async fn fuzz(bench: FuzzBench) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("fuzz: interrupted; stopping after the current input");
            on_signal.store(true, Ordering::Relaxed);
        }
    });
    let result = tokio::task::spawn_blocking(move || run(&bench, stop))
        .await
        .context("the fuzzing thread failed")?;
    signal.abort();
    result
}

fn run(bench: &FuzzBench, stop: Arc<AtomicBool>) -> Result<()> {
    let targets = select(&bench.target)?;
    if let Some(path) = &bench.replay {
        let input = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        for target in &targets {
            match check_input(target.as_ref(), &input, bench.time_limit) {
                Ok(accepted) => println!(
                    "{}: {} passes ({})",
                    target.name(),
                    path.display(),
                    if accepted { "accepted" } else { "rejected" }
                ),
                Err(kind) => bail!("{}: {} fails: {kind}", target.name(), path.display()),
            }
        }
        return Ok(());
    }
    println!(
        "fuzz: seed {}, {} inputs per target, time limit {:?} per input, {} target(s); {}",
        bench.seed,
        bench.inputs,
        bench.time_limit,
        targets.len(),
        machine()
    );
    let config = RunConfig {
        seed: bench.seed,
        inputs: bench.inputs,
        time_limit: bench.time_limit,
        hang_abort: (bench.time_limit * 30).max(Duration::from_secs(30)),
        out_dir: bench.out.clone(),
        progress: Some(Duration::from_secs(30)),
        stop: Some(stop.clone()),
    };
    let started = Instant::now();
    let mut reports: Vec<Report> = Vec::new();
    for target in &targets {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        println!("fuzz: {} — {}", target.name(), target.describe());
        let report = run_target(target.as_ref(), &config);
        println!("{report}");
        reports.push(report);
    }
    println!(
        "fuzz: {} target(s) in {:.0} s",
        reports.len(),
        started.elapsed().as_secs_f64()
    );
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| r.failure.is_some())
        .map(|r| r.target)
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} target(s) failed: {} (inputs saved under {}; reproduce with --target <name> --replay <file>)",
            failed.len(),
            failed.join(", "),
            bench.out.display()
        );
    }
    Ok(())
}

/// The machine and build, for the record.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let build = if cfg!(debug_assertions) {
        "debug assertions on"
    } else {
        "debug assertions off"
    };
    format!("{cpu}, {cores} core(s), {build}")
}
