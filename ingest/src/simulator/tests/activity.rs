//! Which instruments tick: the index schedule and the activity weights.

use std::collections::HashMap;

use super::token_of;
use crate::simulator::{MarketSimulator, SimulatorConfig, BANKNIFTY_SPOT_TOKEN, NIFTY_SPOT_TOKEN};

#[test]
fn indices_tick_about_once_a_second() {
    let config = SimulatorConfig::default();
    let mut sim = MarketSimulator::new(&config).unwrap();
    let mut seen: HashMap<i64, Vec<i64>> = HashMap::new();
    let ticks = 100_000;
    let seconds = (ticks * config.tick_interval_ms / 1_000) as usize;
    for _ in 0..ticks {
        let t = sim.next_tick();
        seen.entry(t.instrument_token)
            .or_default()
            .push(t.exchange_ts);
    }
    for token in [NIFTY_SPOT_TOKEN, BANKNIFTY_SPOT_TOKEN] {
        let ts = &seen[&token];
        assert!(
            (seconds - 1..=seconds + 1).contains(&ts.len()),
            "{token} ticked {} times",
            ts.len()
        );
        // After the first (at the open), exactly one a second.
        assert!(ts[1..].windows(2).all(|w| w[1] - w[0] == 1_000_000));
    }
}

#[test]
fn near_the_money_near_expiry_contracts_tick_most() {
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for _ in 0..500_000 {
        *counts.entry(sim.next_tick().instrument_token).or_default() += 1;
    }
    let n = |symbol: &str| counts.get(&token_of(&sim, symbol)).copied().unwrap_or(0);
    // Second weekly (8 Dec): the opening ATM pair against 20 strikes out of the money.
    let (atm, far_put, far_call) = (
        n("NIFTY26D0824500PE") + n("NIFTY26D0824500CE"),
        n("NIFTY26D0823500PE"),
        n("NIFTY26D0825500CE"),
    );
    // (The spot wanders over the run, so the margin is kept loose.)
    assert!(
        atm > 8 * (far_put + far_call),
        "ATM {atm}, far OTM {far_put}/{far_call}"
    );
    // Near expiry against far expiry, at the money.
    let far_month = n("NIFTY27FEB24500PE") + n("NIFTY27FEB24500CE");
    assert!(
        atm > 3 * far_month,
        "weekly ATM {atm}, far month ATM {far_month}"
    );
    assert!(n("NIFTY26DECFUT") > 5 * n("NIFTY27FEBFUT"));
    assert!(n("NIFTY26DECFUT") > n("BANKNIFTY26DECFUT"));
    // Not round robin, but nothing is starved either.
    assert_eq!(
        counts.len(),
        sim.instruments().len(),
        "every instrument ticks"
    );
}
