//! Cost of the streaming indicators per bar update, to size how many series one core can
//! keep live. Run in release:
//!
//! ```text
//! cargo run --release -p strikeflow-analytics --example indicators_bench [BARS]
//! ```
//!
//! Prints ns per bar for every registered indicator (default parameters, as the
//! [`StreamingIndicator`] enum the factory returns), for all of them together, and for the
//! 5-minute rollup.

use std::hint::black_box;
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use strikeflow_analytics::indicators::{
    build, registry, Indicator, IndicatorError, Rollup, StreamingIndicator,
};
use strikeflow_schemas::Bar;

fn bars(n: usize) -> Vec<Bar> {
    let mut rng = SmallRng::seed_from_u64(1);
    // 2026-01-05 09:15 IST in UTC microseconds.
    let first = 1_767_584_700_000_000_i64;
    let mut close = 24_000.0_f64;
    (0..n)
        .map(|i| {
            let open = close + rng.random_range(-3.0..3.0);
            close = open + rng.random_range(-10.0..10.0);
            let day = (i / 375) as i64 * 86_400_000_000;
            let start = first + day + (i % 375) as i64 * 60_000_000;
            Bar {
                instrument_token: 1,
                window_start: start,
                window_end: start + 60_000_000,
                open,
                high: open.max(close) + rng.random_range(0.0..5.0),
                low: open.min(close) - rng.random_range(0.0..5.0),
                close,
                volume: rng.random_range(0..100_000),
                oi: 1_000_000,
                tick_count: 50,
            }
        })
        .collect()
}

fn time_per_bar(bars: &[Bar], indicators: &mut [StreamingIndicator]) -> f64 {
    let start = Instant::now();
    for bar in bars {
        for ind in indicators.iter_mut() {
            black_box(ind.update(black_box(bar)));
        }
    }
    start.elapsed().as_nanos() as f64 / bars.len() as f64
}

fn main() -> Result<(), IndicatorError> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let bars = bars(n);
    println!("{n} one-minute bars, default parameters, best of 3 runs");
    let best = |f: &mut dyn FnMut() -> Result<f64, IndicatorError>| {
        (0..3).try_fold(f64::INFINITY, |best, _| Ok(f()?.min(best)))
    };

    for spec in registry() {
        let ns = best(&mut || {
            let mut one = vec![build(spec.name, &[])?];
            Ok(time_per_bar(&bars, &mut one))
        })?;
        println!("  {:<12} {ns:>7.1} ns/bar", spec.name);
    }
    let ns = best(&mut || {
        let mut all = registry()
            .iter()
            .map(|s| build(s.name, &[]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(time_per_bar(&bars, &mut all))
    })?;
    println!(
        "  {:<12} {ns:>7.1} ns/bar (all {} indicators on each bar)",
        "ALL",
        registry().len()
    );
    let ns = best(&mut || {
        let mut rollup = Rollup::new(5)?;
        let start = Instant::now();
        for bar in &bars {
            black_box(rollup.update(black_box(bar)).count());
        }
        Ok(start.elapsed().as_nanos() as f64 / bars.len() as f64)
    })?;
    println!("  {:<12} {ns:>7.1} ns/bar", "rollup 5m");
    Ok(())
}
