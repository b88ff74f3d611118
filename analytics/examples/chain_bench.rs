//! Throughput of `strikeflow_analytics::chain::ChainAnalyticsEngine` on one core.
//!
//! Run with `cargo run --release -p strikeflow-analytics --example chain_bench`.
//!
//! Workload: NIFTY and BANKNIFTY, 5 expiries each (4 weeklies without a future, 1 monthly with
//! one), 41 strikes × CE/PE per expiry (820 options), plus both spot indices and futures.
//! Ticks hit a random option (90%) or a spot/future (10%); option prices random-walk, OI moves
//! now and then; event time advances 1 ms per tick and `advance(tick time)` is called after
//! every tick, so the engine emits at the default 1 s cadence (every chain, changed strikes,
//! moneyness at each minute close). Ticks are generated before timing; the timed loop is
//! `on_tick` + `advance` + clearing the output buffer. Prints ticks/s and outputs/s for
//! several runs, best and median.

use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use strikeflow_analytics::chain::{ChainAnalyticsEngine, ChainSettings, EngineOutput};
use strikeflow_schemas::{days_from_date, Instrument, InstrumentType, Tick};

const TICKS: usize = 2_000_000;
const REPEATS: usize = 5;
const STRIKES: i64 = 41;

struct Universe {
    instruments: Vec<Instrument>,
    /// (token, strike, is_call, forward) of each option.
    options: Vec<(i64, f64, bool, f64)>,
    /// (token, base price) of spots and futures.
    series: Vec<(i64, f64)>,
}

fn universe() -> Universe {
    let mut u = Universe {
        instruments: Vec::new(),
        options: Vec::new(),
        series: Vec::new(),
    };
    let base =
        |token: i64, name: &str, ty: InstrumentType, expiry: Option<i32>, strike: f64| Instrument {
            instrument_token: token,
            exchange_token: token,
            tradingsymbol: format!("{name}{token}"),
            name: name.to_owned(),
            last_price: 0.0,
            expiry,
            strike,
            tick_size: 0.05,
            lot_size: if name == "NIFTY" { 65 } else { 30 },
            instrument_type: ty,
            segment: "NFO-OPT".into(),
            exchange: "NFO".into(),
        };
    let first_expiry = chrono::NaiveDate::from_ymd_opt(2026, 12, 8).map_or(0, days_from_date);
    let mut token = 1_000_i64;
    for (name, spot, step) in [("NIFTY", 24_500.0, 50.0), ("BANKNIFTY", 52_000.0, 100.0)] {
        token += 1;
        u.instruments
            .push(base(token, name, InstrumentType::EQ, None, 0.0));
        u.series.push((token, spot));
        for e in 0..5 {
            let expiry = first_expiry + 7 * e;
            let forward = spot * (1.0 + 0.0005 * f64::from(e + 1));
            if e == 4 {
                token += 1;
                u.instruments
                    .push(base(token, name, InstrumentType::FUT, Some(expiry), 0.0));
                u.series.push((token, forward));
            }
            let atm = (spot / step).round() * step;
            for i in -(STRIKES / 2)..=(STRIKES / 2) {
                let k = atm + step * i as f64;
                for (ty, call) in [(InstrumentType::CE, true), (InstrumentType::PE, false)] {
                    token += 1;
                    u.instruments.push(base(token, name, ty, Some(expiry), k));
                    u.options.push((token, k, call, forward));
                }
            }
        }
    }
    u
}

/// A plausible premium: intrinsic plus time value decaying away from the money.
fn premium(k: f64, call: bool, f: f64) -> f64 {
    let intrinsic = if call {
        (f - k).max(0.0)
    } else {
        (k - f).max(0.0)
    };
    let tv = 0.012 * f * (-((k - f) / (0.02 * f)).powi(2)).exp() + 0.5;
    ((intrinsic + tv) * 20.0).round() / 20.0
}

fn ticks(u: &Universe, start: i64) -> Vec<Tick> {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut oi: Vec<i64> = vec![100_000; u.options.len()];
    let mut drift: Vec<f64> = vec![0.0; u.options.len()];
    (0..TICKS)
        .map(|i| {
            let ts = start + i as i64 * 1_000;
            if rng.random_range(0..10) == 0 {
                let (token, px) = u.series[rng.random_range(0..u.series.len())];
                let px = px * (1.0 + rng.random_range(-0.001..0.001));
                return Tick {
                    instrument_token: token,
                    exchange_ts: ts,
                    ltp: px,
                    last_qty: 0,
                    volume: 0,
                    oi: 0,
                    bid: 0.0,
                    bid_qty: 0,
                    ask: 0.0,
                    ask_qty: 0,
                };
            }
            let j = rng.random_range(0..u.options.len());
            let (token, k, call, f) = u.options[j];
            drift[j] = (drift[j] + rng.random_range(-0.5..0.5)).clamp(-5.0, 5.0);
            if rng.random_range(0..20) == 0 {
                oi[j] += rng.random_range(-5_000..5_000);
            }
            let ltp = (premium(k, call, f) + drift[j]).max(0.05);
            Tick {
                instrument_token: token,
                exchange_ts: ts,
                ltp,
                last_qty: 65,
                volume: i as i64,
                oi: oi[j],
                bid: (ltp - 0.05).max(0.05),
                bid_qty: 650,
                ask: ltp + 0.05,
                ask_qty: 650,
            }
        })
        .collect()
}

fn main() {
    let u = universe();
    // 2026-12-01 09:15 IST.
    let start = chrono::NaiveDate::from_ymd_opt(2026, 12, 1)
        .map_or(0, |d| i64::from(days_from_date(d)) * 86_400_000_000)
        + (3 * 60 + 45) * 60_000_000;
    let feed = ticks(&u, start);
    println!(
        "{} options, {} series, {} ticks, 1 ms of event time per tick",
        u.options.len(),
        u.series.len(),
        feed.len()
    );
    let mut rates = Vec::new();
    for run in 0..REPEATS {
        let mut engine = ChainAnalyticsEngine::new(ChainSettings::default());
        for inst in &u.instruments {
            if let Err(e) = engine.register(inst) {
                eprintln!("register {}: {e}", inst.instrument_token);
                return;
            }
        }
        let mut out: Vec<EngineOutput> = Vec::with_capacity(4096);
        let (mut outputs, mut chains, mut with_iv) = (0usize, 0usize, 0usize);
        let began = Instant::now();
        for t in &feed {
            engine.on_tick(t);
            engine.advance(t.exchange_ts, &mut out);
            if !out.is_empty() {
                outputs += out.len();
                for o in &out {
                    match o {
                        EngineOutput::Chain(_) => chains += 1,
                        EngineOutput::Strike(s) if s.iv.is_some() => with_iv += 1,
                        _ => {}
                    }
                }
                out.clear();
            }
        }
        let secs = began.elapsed().as_secs_f64();
        let rate = feed.len() as f64 / secs;
        rates.push(rate);
        println!(
            "run {run}: {:.2} M ticks/s ({:.3} s), {outputs} outputs ({chains} chain, {with_iv} strike rows with IV), {:?}",
            rate / 1e6,
            secs,
            engine.stats()
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "best {:.2} M ticks/s, median {:.2} M ticks/s",
        rates[rates.len() - 1] / 1e6,
        rates[rates.len() / 2] / 1e6
    );
}
