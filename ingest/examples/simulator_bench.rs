//! How fast `MarketSimulator::next_tick` is: the publisher needs ≥200,000 ticks/s, so a
//! tick must cost well under a microsecond.
//!
//! `cargo run --release -p strikeflow-ingest --example simulator_bench [ticks] [single]`
//! (`single` benchmarks the 12-instrument test market instead of the default one).

use std::hint::black_box;
use std::time::Instant;

use strikeflow_ingest::{MarketSimulator, SimulatorConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let ticks: u64 = args.next().map_or(Ok(5_000_000), |a| a.parse())?;
    let config = match args.next().as_deref() {
        Some("single") => SimulatorConfig::single_chain(),
        _ => SimulatorConfig::default(),
    };
    let started = Instant::now();
    let mut sim = MarketSimulator::new(&config)?;
    let built = started.elapsed();
    // Warm up caches and the branch predictor.
    for _ in 0..100_000 {
        black_box(sim.next_tick());
    }
    let started = Instant::now();
    let mut checksum = 0i64;
    for _ in 0..ticks {
        let tick = sim.next_tick();
        checksum = checksum.wrapping_add(tick.instrument_token ^ tick.volume);
        black_box(&tick);
    }
    let elapsed = started.elapsed();
    println!(
        "{} instruments (built in {:.1} ms), {ticks} ticks in {:.3} s: {:.1} ns/tick, {:.2} M ticks/s (checksum {checksum})",
        sim.instruments().len(),
        built.as_secs_f64() * 1e3,
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 / ticks as f64,
        ticks as f64 / elapsed.as_secs_f64() / 1e6,
    );
    Ok(())
}
