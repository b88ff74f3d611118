//! Settings: defaults, deserialisation and validation.

use serde::Deserialize;

use super::day;
use crate::simulator::{Listing, MarketSimulator, SimulatorConfig, Underlying};

#[test]
fn config_deserialises_with_defaults_for_what_is_left_out() {
    let config: SimulatorConfig = serde_json::from_str(
        r#"{"seed": 5, "underlyings": ["BANKNIFTY"], "banknifty": {"monthly_expiries": 1},
            "holidays": ["2026-12-08"]}"#,
    )
    .unwrap();
    assert_eq!(config.seed, 5);
    assert_eq!(config.strikes_each_side, 20);
    assert_eq!(config.holidays, [day(2026, 12, 8)]);
    assert_eq!(
        config.banknifty,
        Listing {
            weekly_expiries: 0,
            monthly_expiries: 1,
            futures: 0
        }
    );
    let sim = MarketSimulator::new(&config).unwrap();
    assert_eq!(sim.instruments().len(), 1 + 41 * 2);
    assert_eq!(sim.instruments()[1].tradingsymbol, "BANKNIFTY26DEC53000CE");
}

#[test]
fn config_reads_flattened_into_a_larger_section() {
    // Embedding it next to a caller's own keys still works (the binary now nests it as its
    // own `[simulate.market]` table instead, since under `flatten` serde cannot refuse
    // unknown keys).
    #[derive(Deserialize)]
    struct Section {
        #[serde(flatten)]
        market: SimulatorConfig,
        rate: f64,
    }
    let section: Section = serde_json::from_str(
        r#"{"rate": 500, "spot_open": 25000, "tick_interval_ms": 100,
            "underlyings": ["NIFTY"], "nifty": {"weekly_expiries": 2, "futures": 1}}"#,
    )
    .unwrap();
    assert_eq!(section.rate, 500.0);
    let sim = MarketSimulator::new(&section.market).unwrap();
    assert_eq!(sim.instruments().len(), 1 + 1 + 2 * 41 * 2);
    assert_eq!(sim.instruments()[0].last_price, 25_000.0);
}

#[test]
fn invalid_settings_are_rejected() {
    let base = SimulatorConfig::default();
    let bad = [
        SimulatorConfig {
            spot_open: 0.0,
            ..base.clone()
        },
        SimulatorConfig {
            annual_vol: f64::NAN,
            ..base.clone()
        },
        SimulatorConfig {
            tick_interval_ms: 0,
            ..base.clone()
        },
        SimulatorConfig {
            oi_refresh_secs: 0,
            ..base.clone()
        },
        SimulatorConfig {
            underlyings: vec![],
            ..base.clone()
        },
        SimulatorConfig {
            underlyings: vec![Underlying::Nifty, Underlying::Nifty],
            ..base.clone()
        },
        SimulatorConfig {
            index_correlation: 1.5,
            ..base.clone()
        },
        SimulatorConfig {
            jumps_per_day: -1.0,
            ..base.clone()
        },
        SimulatorConfig {
            nifty: Listing {
                futures: 4,
                ..base.nifty
            },
            ..base.clone()
        },
    ];
    for config in bad {
        assert!(MarketSimulator::new(&config).is_err(), "{config:?}");
    }
}

#[test]
fn the_shipped_markets_validate() {
    SimulatorConfig::default().validate().unwrap();
    SimulatorConfig::single_chain().validate().unwrap();
}

#[test]
fn a_bad_value_fails_naming_its_key() {
    let base = SimulatorConfig::default();
    let cases = [
        (
            SimulatorConfig {
                spot_open: -1.0,
                ..base.clone()
            },
            "simulate.market.spot_open",
        ),
        (
            SimulatorConfig {
                banknifty_annual_vol: 0.0,
                ..base.clone()
            },
            "simulate.market.banknifty_annual_vol",
        ),
        (
            SimulatorConfig {
                tick_interval_ms: 0,
                ..base.clone()
            },
            "simulate.market.tick_interval_ms",
        ),
        (
            SimulatorConfig {
                index_interval_ms: 23_000_000,
                ..base.clone()
            },
            "simulate.market.index_interval_ms",
        ),
        (
            SimulatorConfig {
                oi_refresh_secs: 0,
                ..base.clone()
            },
            "simulate.market.oi_refresh_secs",
        ),
        (
            SimulatorConfig {
                strikes_each_side: 501,
                ..base.clone()
            },
            "simulate.market.strikes_each_side",
        ),
        (
            SimulatorConfig {
                underlyings: vec![],
                ..base.clone()
            },
            "simulate.market.underlyings",
        ),
        (
            SimulatorConfig {
                banknifty: Listing {
                    weekly_expiries: 53,
                    ..base.banknifty
                },
                ..base.clone()
            },
            "simulate.market.banknifty.weekly_expiries",
        ),
        (
            SimulatorConfig {
                nifty: Listing {
                    futures: 4,
                    ..base.nifty
                },
                ..base.clone()
            },
            "simulate.market.nifty.futures",
        ),
        (
            SimulatorConfig {
                index_correlation: f64::NAN,
                ..base.clone()
            },
            "simulate.market.index_correlation",
        ),
        (
            SimulatorConfig {
                smile: -0.1,
                ..base.clone()
            },
            "simulate.market.smile",
        ),
        (
            SimulatorConfig {
                jump_vol: 0.6,
                ..base.clone()
            },
            "simulate.market.jump_vol",
        ),
    ];
    for (config, key) in cases {
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, key, "{err}");
        assert!(err.to_string().starts_with(&format!("{key}: ")), "{err}");
        // The simulator refuses it with the same message.
        let refused = MarketSimulator::new(&config).unwrap_err();
        assert_eq!(refused.to_string(), err.to_string());
    }
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let err = serde_json::from_str::<SimulatorConfig>(r#"{"sed": 5}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `sed`"), "{err}");
    // Also inside a listing table.
    let err = serde_json::from_str::<SimulatorConfig>(r#"{"nifty": {"future": 1}}"#).unwrap_err();
    assert!(err.to_string().contains("unknown field `future`"), "{err}");
}
