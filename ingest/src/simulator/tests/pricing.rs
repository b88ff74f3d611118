//! Prices and quotes: the tick grid, spreads, the smile, no static arbitrage, the basis.

use std::collections::HashMap;

use super::{day, position, token_of};
use crate::calendar::{ist_micros, SESSION_CLOSE, SESSION_OPEN};
use crate::simulator::listing::Kind;
use crate::simulator::pricing::black76;
use crate::simulator::{
    on_grid, MarketSimulator, SimulatorConfig, BANKNIFTY_SPOT_TOKEN, NIFTY_SPOT_TOKEN, TICK_SIZE,
};

/// Black-76 (r = 0) implied volatility by bisection.
fn implied_vol(price: f64, forward: f64, strike: f64, years: f64, call: bool) -> f64 {
    let (mut lo, mut hi) = (1e-4, 5.0);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if black76(forward, strike, years, mid, call) > price {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    0.5 * (lo + hi)
}

#[test]
fn prices_sit_on_the_tick_grid_and_quotes_are_sane() {
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let indices = [NIFTY_SPOT_TOKEN, BANKNIFTY_SPOT_TOKEN];
    for _ in 0..100_000 {
        let t = sim.next_tick();
        for p in [t.ltp, t.bid, t.ask] {
            let paise = (p * 100.0).round();
            assert_eq!(paise % 5.0, 0.0, "{p} is off the 0.05 grid");
            assert_eq!(
                paise / 100.0,
                p,
                "{p} is not the nearest double to its paise"
            );
            assert_eq!(on_grid(p), p);
        }
        assert!(t.oi >= 0 && t.volume >= 0 && t.bid_qty >= 0 && t.ask_qty >= 0);
        if indices.contains(&t.instrument_token) {
            assert_eq!(
                (t.volume, t.oi, t.last_qty, t.bid, t.ask),
                (0, 0, 0, 0.0, 0.0)
            );
        } else {
            assert!(TICK_SIZE <= t.bid && t.bid < t.ask, "{t:?}");
            assert!(t.bid <= t.ltp && t.ltp <= t.ask, "{t:?}");
            assert!(t.last_qty > 0 && t.bid_qty > 0 && t.ask_qty > 0, "{t:?}");
            assert!(t.oi > 0, "{t:?}");
        }
    }
}

#[test]
fn spreads_widen_away_from_the_money() {
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    // token -> (Σ spread, Σ spread / mid, ticks)
    let mut spreads: HashMap<i64, (f64, f64, usize)> = HashMap::new();
    for _ in 0..500_000 {
        let t = sim.next_tick();
        let entry = spreads.entry(t.instrument_token).or_default();
        entry.0 += t.ask - t.bid;
        entry.1 += (t.ask - t.bid) / (0.5 * (t.ask + t.bid)).max(TICK_SIZE);
        entry.2 += 1;
    }
    let mean = |symbol: &str| {
        let (abs, rel, n) = spreads[&token_of(&sim, symbol)];
        (abs / n as f64, rel / n as f64)
    };
    for (atm, far) in [
        ("NIFTY26D0824500PE", "NIFTY26D0823500PE"),
        ("NIFTY26D0824500CE", "NIFTY26D0825500CE"),
        ("NIFTY26D1524500PE", "NIFTY26D1523600PE"),
    ] {
        let (atm_abs, atm_rel) = mean(atm);
        let (far_abs, far_rel) = mean(far);
        assert!(
            far_abs > atm_abs,
            "{far} {far_abs:.2} vs {atm} {atm_abs:.2}"
        );
        assert!(
            far_rel > 3.0 * atm_rel,
            "{far} {far_rel:.4} vs {atm} {atm_rel:.4}"
        );
    }
    for (atm, far) in [
        ("NIFTY27FEB24500PE", "NIFTY27FEB23500PE"),
        ("BANKNIFTY27JAN55000PE", "BANKNIFTY27JAN53000PE"),
    ] {
        let ((_, atm_rel), (_, far_rel)) = (mean(atm), mean(far));
        assert!(
            far_rel > atm_rel,
            "{far} {far_rel:.4} vs {atm} {atm_rel:.4}"
        );
    }
}

#[test]
fn options_show_a_put_skew_and_an_upward_atm_term_structure() {
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    for _ in 0..50_000 {
        sim.next_tick();
    }
    // IV recovered from the generated (on-grid) price, on the forward of its expiry.
    let iv = |symbol: &str| {
        let i = position(&sim, symbol);
        let c = &sim.contracts[i];
        let e = &sim.expiries[c.expiry];
        let forward = sim.underlyings[c.underlying].spot * e.carry;
        let price = on_grid(sim.fair(i).0);
        implied_vol(price, forward, c.strike, e.years, c.kind == Kind::Call)
    };
    // The 15 Dec weekly: OTM puts from ATM down 12 strikes.
    let puts: Vec<f64> = (0..=12)
        .map(|j| iv(&format!("NIFTY26D15{}PE", 24_500 - 50 * j)))
        .collect();
    assert!(
        puts.windows(2).all(|w| w[1] > w[0]),
        "OTM puts: IV rises as the strike falls: {puts:?}"
    );
    assert!(puts[12] > puts[0] + 0.02, "{puts:?}");
    let call = iv("NIFTY26D1525000CE");
    assert!(
        call < puts[0],
        "OTM calls trade below ATM: {call} vs {}",
        puts[0]
    );
    // ATM IV rises with time to expiry.
    let atm: Vec<f64> = [
        "NIFTY26D0824500CE",
        "NIFTY26D1524500CE",
        "NIFTY26D2224500CE",
        "NIFTY26DEC24500CE",
        "NIFTY27JAN24500CE",
        "NIFTY27FEB24500CE",
    ]
    .iter()
    .map(|s| iv(s))
    .collect();
    assert!(
        atm.windows(2).all(|w| w[1] > w[0]),
        "NIFTY ATM term structure {atm:?}"
    );
    assert!(
        (0.10..0.16).contains(&atm[0]) && (0.12..0.16).contains(&atm[5]),
        "{atm:?}"
    );
    let bank: Vec<f64> = [
        "BANKNIFTY26DEC55000CE",
        "BANKNIFTY27JAN55000CE",
        "BANKNIFTY27FEB55000CE",
    ]
    .iter()
    .map(|s| iv(s))
    .collect();
    assert!(
        bank.windows(2).all(|w| w[1] > w[0]),
        "BANKNIFTY ATM term structure {bank:?}"
    );
}

#[test]
fn chains_are_free_of_static_arbitrage() {
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    for _ in 0..10_000 {
        sim.next_tick();
    }
    let mut chains: HashMap<(usize, bool), Vec<(f64, f64)>> = HashMap::new();
    for i in 0..sim.contracts.len() {
        let c = &sim.contracts[i];
        if matches!(c.kind, Kind::Call | Kind::Put) {
            chains
                .entry((c.expiry, c.kind == Kind::Call))
                .or_default()
                .push((c.strike, sim.fair(i).0));
        }
    }
    for ((expiry, call), chain) in chains {
        for w in chain.windows(3) {
            let (a, b, c) = (w[0].1, w[1].1, w[2].1);
            // Monotone in the strike and convex (no butterfly arbitrage).
            let monotone = if call {
                a >= b && b >= c
            } else {
                a <= b && b <= c
            };
            assert!(monotone, "expiry {expiry} call {call}: {w:?}");
            assert!(
                a + c - 2.0 * b >= -1e-9,
                "expiry {expiry} call {call}: {w:?}"
            );
        }
    }
}

#[test]
fn futures_carry_a_basis_over_spot() {
    let sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let price = |symbol: &str| sim.instruments()[position(&sim, symbol)].last_price;
    let spot = price("NIFTY 50");
    let mut previous = spot;
    for (symbol, expiry) in [
        ("NIFTY26DECFUT", day(2026, 12, 29)),
        ("NIFTY27JANFUT", day(2027, 1, 25)),
        ("NIFTY27FEBFUT", day(2027, 2, 23)),
    ] {
        let future = price(symbol);
        let micros = ist_micros(expiry, SESSION_CLOSE) - ist_micros(day(2026, 12, 1), SESSION_OPEN);
        let years = micros as f64 / (365.0 * 86_400e6);
        let fair = spot * (0.065 * years).exp();
        assert!((future - fair).abs() < 0.1, "{symbol} {future} vs {fair}");
        assert!(
            future > previous,
            "{symbol} is dearer than the nearer contract"
        );
        previous = future;
    }
}

#[test]
fn black76_matches_put_call_parity_and_the_reference_iv() {
    let (f, k, t, v) = (24_500.0, 24_600.0, 7.0 / 365.0, 0.14);
    let parity = black76(f, k, t, v, true) - black76(f, k, t, v, false);
    assert!((parity - (f - k)).abs() < 1e-9);
    // Domain reference: price 20, F = 100, K = 90, T = 30 → σ = 0.07011701801482094.
    let sigma = implied_vol(20.0, 100.0, 90.0, 30.0, true);
    assert!((sigma - 0.070_117_018_014_820_94).abs() < 1e-9, "{sigma}");
}
