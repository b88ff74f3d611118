//! Micro-benchmark of `strikeflow_analytics::pricing`: implied volatility and Greeks.
//!
//! Run with `cargo run --release -p strikeflow-analytics --example pricing_bench`.
//!
//! Workload: a NIFTY-like chain (F ≈ 24 500, strikes F ± 20 × 50), expiries from 1 to 90
//! days, out-of-the-money side only (puts below the forward, calls above), a smile of
//! volatilities, and prices built by our own pricer and rounded to the 0.05 tick. Prints
//! nanoseconds per evaluation for the `implied-vol` crate alone (its default Hybrid solver
//! and the Jäckel solver we use) and for our IV, our IV + all Greeks under both conventions.
//!
//! Each line is timed with `std::time::Instant` over ≥ 1M evaluations, `REPEATS` times,
//! interleaved with the other lines so that background load hits all of them alike; the
//! minimum (the figure least disturbed by other processes) and the median are printed.

use std::hint::black_box;
use std::time::Instant;

use implied_vol::solver::Jaeckel;
use implied_vol::{DefaultSpecialFn, ImpliedBlackVolatility};
use strikeflow_analytics::pricing::{Convention, OptionKind, Pricer};

/// Evaluations per timed run (the case set is cycled; rounded up to whole passes).
const EVALUATIONS: usize = 1_000_000;
/// Timed runs per line.
const REPEATS: usize = 9;
/// Distinct cases in the workload.
const CASES: usize = 4_096;

/// One benchmark case: an option and its market price, in forward space.
#[derive(Clone, Copy)]
struct Case {
    kind: OptionKind,
    forward: f64,
    spot: f64,
    strike: f64,
    t: f64,
    /// Black-76 (r = 0) price.
    price_b76: f64,
    /// NSE (BS on spot, r = 10%) price.
    price_nse: f64,
}

/// SplitMix64: a tiny deterministic generator, so runs are comparable.
struct SplitMix(u64);

impl SplitMix {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn round_to_tick(p: f64) -> f64 {
    (p / 0.05).round() * 0.05
}

fn workload() -> Vec<Case> {
    let mut rng = SplitMix(20_260_101);
    let mut cases = Vec::with_capacity(CASES);
    while cases.len() < CASES {
        let forward = 24_500.0 + (rng.next_f64() - 0.5) * 200.0;
        let atm = (forward / 50.0).round() * 50.0;
        let offset = (rng.next_f64() * 41.0).floor() - 20.0;
        let strike = atm + 50.0 * offset;
        let days = 1.0 + rng.next_f64() * 89.0;
        let t = days / 365.0;
        let kind = if strike >= forward {
            OptionKind::Call
        } else {
            OptionKind::Put
        };
        let m = (strike / forward).ln() / t.sqrt();
        let sigma = 0.12 + 0.6 * m * m - 0.05 * m;
        let spot = forward * (-Convention::NSE_RATE * t).exp();
        let price_b76 = Convention::BLACK76
            .price(kind, forward, strike, t, sigma)
            .map(round_to_tick);
        let price_nse = Convention::NSE
            .price(kind, spot, strike, t, sigma)
            .map(round_to_tick);
        // Keep only options quoted above one tick: the chain's live part.
        if let (Some(price_b76), Some(price_nse)) = (price_b76, price_nse) {
            if price_b76 >= 0.1 && price_nse >= 0.1 {
                cases.push(Case {
                    kind,
                    forward,
                    spot,
                    strike,
                    t,
                    price_b76,
                    price_nse,
                });
            }
        }
    }
    cases
}

/// One measured operation: evaluates a case and returns something to keep it alive.
type Eval<'a> = dyn Fn(&Case) -> f64 + 'a;

/// Runs `f` over the cases for at least `EVALUATIONS` calls; returns ns per call.
fn measure(cases: &[Case], f: &Eval<'_>) -> f64 {
    let rounds = EVALUATIONS.div_ceil(cases.len());
    let mut checksum = 0.0;
    let start = Instant::now();
    for _ in 0..rounds {
        for c in cases {
            checksum += f(black_box(c));
        }
    }
    let elapsed = start.elapsed();
    black_box(checksum);
    elapsed.as_nanos() as f64 / (rounds * cases.len()) as f64
}

fn main() {
    let cases = workload();
    let b76 = Pricer::new(Convention::BLACK76);
    let nse = Pricer::new(Convention::NSE);
    let failures = cases
        .iter()
        .filter(|c| {
            b76.iv_and_greeks(c.kind, c.forward, c.strike, c.t, c.price_b76)
                .is_err()
                || nse
                    .iv_and_greeks(c.kind, c.spot, c.strike, c.t, c.price_nse)
                    .is_err()
        })
        .count();
    println!(
        "pricing_bench: {} cases (F≈24500, K = ATM ± 20×50, T 1–90 days, OTM calls/puts, \
         tick-rounded prices); {} evaluations per timed run, {REPEATS} runs per line; \
         {failures} cases without IV",
        cases.len(),
        EVALUATIONS.div_ceil(cases.len()) * cases.len()
    );

    let crate_iv = |c: &Case, jaeckel: bool| {
        let iv = ImpliedBlackVolatility::builder()
            .option_price(c.price_b76)
            .forward(c.forward)
            .strike(c.strike)
            .expiry(c.t)
            .is_call(c.kind.is_call())
            .build_unchecked();
        let sigma = if jaeckel {
            iv.calculate_with::<Jaeckel>()
        } else {
            iv.calculate::<DefaultSpecialFn>()
        };
        sigma.unwrap_or(0.0)
    };
    let b76_iv = |c: &Case| {
        b76.implied_vol(c.kind, c.forward, c.strike, c.t, c.price_b76)
            .unwrap_or(0.0)
    };
    let b76_greeks = |c: &Case| {
        Convention::BLACK76
            .greeks(c.kind, c.forward, c.strike, c.t, 0.15)
            .map_or(0.0, |g| {
                g.delta + g.gamma + g.theta + g.vega + g.rho + g.price
            })
    };
    let b76_all = |c: &Case| {
        b76.iv_and_greeks(c.kind, c.forward, c.strike, c.t, c.price_b76)
            .map_or(0.0, |r| {
                let g = r.greeks;
                r.iv + g.delta + g.gamma + g.theta + g.vega + g.rho + g.price
            })
    };
    let nse_all = |c: &Case| {
        nse.iv_and_greeks(c.kind, c.spot, c.strike, c.t, c.price_nse)
            .map_or(0.0, |r| {
                let g = r.greeks;
                r.iv + g.delta + g.gamma + g.theta + g.vega + g.rho + g.price
            })
    };
    let hybrid = |c: &Case| crate_iv(c, false);
    let jaeckel = |c: &Case| crate_iv(c, true);
    let lines: [(&str, &Eval<'_>); 6] = [
        ("implied-vol crate alone, default (Hybrid) solver", &hybrid),
        (
            "implied-vol crate alone, Jaeckel solver (the one we use)",
            &jaeckel,
        ),
        ("ours: IV only, Black-76 r=0", &b76_iv),
        (
            "ours: all Greeks + price at a given σ, Black-76 r=0",
            &b76_greeks,
        ),
        ("ours: IV + all Greeks, Black-76 r=0", &b76_all),
        ("ours: IV + all Greeks, NSE (BS on spot, r=10%)", &nse_all),
    ];
    // Warm-up, then interleaved timed runs.
    for (_, f) in &lines {
        black_box(cases.iter().map(f).sum::<f64>());
    }
    let mut samples = vec![Vec::with_capacity(REPEATS); lines.len()];
    for _ in 0..REPEATS {
        for (i, (_, f)) in lines.iter().enumerate() {
            samples[i].push(measure(&cases, *f));
        }
    }
    println!("     min   median  ns/eval");
    for ((name, _), mut s) in lines.iter().zip(samples) {
        s.sort_by(f64::total_cmp);
        println!("{:8.1} {:8.1}  {name}", s[0], s[s.len() / 2]);
    }
}
