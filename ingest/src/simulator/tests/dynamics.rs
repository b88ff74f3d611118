//! How the market moves: volume, open interest and jumps.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::session_position;
use crate::simulator::{MarketSimulator, SimulatorConfig, NIFTY_SPOT_TOKEN};

#[test]
fn volume_is_cumulative_per_day_and_oi_moves_only_at_refreshes() {
    let config = SimulatorConfig {
        tick_interval_ms: 250,
        ..SimulatorConfig::default()
    };
    let refresh = config.oi_refresh_secs as i64 * 1_000_000;
    let mut sim = MarketSimulator::new(&config).unwrap();
    // token -> (date, refresh window, volume, oi) of its previous tick
    let mut last: HashMap<i64, (NaiveDate, i64, i64, i64)> = HashMap::new();
    let (mut rises, mut falls, mut resets) = (0, 0, 0);
    // 120,000 ticks of 250 ms: about a session and a third.
    for _ in 0..120_000 {
        let t = sim.next_tick();
        let (date, since_open) = session_position(t.exchange_ts);
        let window = since_open / refresh;
        if let Some(&(d, w, volume, oi)) = last.get(&t.instrument_token) {
            if d == date {
                assert_eq!(t.volume, volume + t.last_qty, "volume cumulates trades");
            } else {
                assert_eq!(t.volume, t.last_qty, "volume restarts every day");
                resets += 1;
            }
            if (d, w) == (date, window) {
                assert_eq!(t.oi, oi, "OI only changes at an exchange refresh");
            } else if t.oi > oi {
                rises += 1;
            } else if t.oi < oi {
                falls += 1;
            }
        }
        last.insert(t.instrument_token, (date, window, t.volume, t.oi));
    }
    assert!(
        resets > 100,
        "the run crosses into the next session ({resets})"
    );
    // Build-up and unwinding both happen.
    assert!(
        rises > 200 && falls > 200,
        "OI rises {rises} and falls {falls} times"
    );
}

#[test]
fn jumps_come_at_the_configured_rate() {
    // Almost no diffusion, so every big index move between two seconds is a jump.
    let jumps = |jumps_per_day: f64| {
        let config = SimulatorConfig {
            annual_vol: 0.001,
            jumps_per_day,
            jump_mean: 0.0,
            jump_vol: 0.01,
            ..SimulatorConfig::single_chain()
        };
        let mut sim = MarketSimulator::new(&config).unwrap();
        let mut previous: Option<f64> = None;
        let mut count = 0;
        // Two sessions of 100 ms ticks.
        for _ in 0..2 * 225_000 {
            let t = sim.next_tick();
            if t.instrument_token == NIFTY_SPOT_TOKEN {
                if previous.is_some_and(|p| (t.ltp / p).ln().abs() > 0.002) {
                    count += 1;
                }
                previous = Some(t.ltp);
            }
        }
        count
    };
    assert_eq!(jumps(0.0), 0);
    // 2 sessions × 25 jumps, 84% of them larger than 0.2%: about 42.
    let n = jumps(25.0);
    assert!((20..=70).contains(&n), "{n} jumps");
}
