//! The instrument master: what is listed, symbols, tokens, lots and strikes.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use strikeflow_schemas::{date_from_days, InstrumentType};

use super::{day, position, token_of};
use crate::calendar::{
    default_holidays, future_symbol, next_tuesday, option_symbol, ExpiryKind, TradingCalendar,
};
use crate::simulator::{
    on_grid, MarketSimulator, SimulatorConfig, BANKNIFTY_SPOT_TOKEN, NIFTY_SPOT_TOKEN, TICK_SIZE,
};

#[test]
fn default_market_lists_full_nifty_and_banknifty_chains() {
    let sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let mut counts: HashMap<(&str, InstrumentType), usize> = HashMap::new();
    for i in sim.instruments() {
        *counts.entry((&i.name, i.instrument_type)).or_default() += 1;
    }
    // NIFTY: 4 weekly + 3 monthly expiries, BANKNIFTY: 3 monthly; 41 strikes each.
    let expected = [
        (("NIFTY", InstrumentType::EQ), 1),
        (("NIFTY", InstrumentType::FUT), 3),
        (("NIFTY", InstrumentType::CE), 7 * 41),
        (("NIFTY", InstrumentType::PE), 7 * 41),
        (("BANKNIFTY", InstrumentType::EQ), 1),
        (("BANKNIFTY", InstrumentType::FUT), 3),
        (("BANKNIFTY", InstrumentType::CE), 3 * 41),
        (("BANKNIFTY", InstrumentType::PE), 3 * 41),
    ];
    assert_eq!(counts, expected.into_iter().collect());
    assert_eq!(sim.instruments().len(), 828);
    let expiries = |name: &str| -> Vec<NaiveDate> {
        let set: BTreeSet<NaiveDate> = sim
            .instruments()
            .iter()
            .filter(|i| i.name == name && i.instrument_type == InstrumentType::CE)
            .filter_map(|i| i.expiry.and_then(date_from_days))
            .collect();
        set.into_iter().collect()
    };
    // Republic Day (Tuesday 26 Jan 2027) moves January's monthly expiry to Monday.
    assert_eq!(
        expiries("NIFTY"),
        [
            day(2026, 12, 1),
            day(2026, 12, 8),
            day(2026, 12, 15),
            day(2026, 12, 22),
            day(2026, 12, 29),
            day(2027, 1, 25),
            day(2027, 2, 23)
        ]
    );
    assert_eq!(
        expiries("BANKNIFTY"),
        [day(2026, 12, 29), day(2027, 1, 25), day(2027, 2, 23)]
    );
    for symbol in [
        "NIFTY 50",
        "NIFTY BANK",
        "NIFTY26DECFUT",
        "NIFTY27JANFUT",
        "NIFTY27FEBFUT",
        "BANKNIFTY27FEBFUT",
        "NIFTY26D0124500CE",
        "NIFTY26D2225500PE",
        "NIFTY26DEC23500PE",
        "NIFTY27JAN24500CE",
        "BANKNIFTY27JAN53000PE",
        "BANKNIFTY26DEC57000CE",
    ] {
        position(&sim, symbol);
    }
}

#[test]
fn instrument_master_is_well_formed() {
    let sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let calendar = TradingCalendar::new(default_holidays());
    let tokens: HashSet<i64> = sim
        .instruments()
        .iter()
        .map(|i| i.instrument_token)
        .collect();
    assert_eq!(tokens.len(), sim.instruments().len(), "tokens are unique");
    // (underlying, right, expiry) -> strikes in listing order
    let mut chains: HashMap<(String, InstrumentType, i32), Vec<f64>> = HashMap::new();
    for i in sim.instruments() {
        assert_eq!(i.exchange_token, i.instrument_token >> 8, "{i:?}");
        assert!(
            i.last_price > 0.0 && on_grid(i.last_price) == i.last_price,
            "{i:?}"
        );
        if i.instrument_type == InstrumentType::EQ {
            assert_eq!(i.instrument_token & 0xff, 9, "indices are segment 9");
            assert_eq!(
                (i.segment.as_str(), i.exchange.as_str()),
                ("INDICES", "NSE")
            );
            assert_eq!((i.expiry, i.lot_size, i.tick_size), (None, 0, 0.0));
            continue;
        }
        assert_eq!(
            i.instrument_token & 0xff,
            2,
            "derivatives are NFO, segment 2"
        );
        assert!((35_000..35_000 + 65_536).contains(&i.exchange_token));
        assert_eq!(i.exchange, "NFO");
        assert_eq!(i.tick_size, TICK_SIZE);
        let (lot, step) = match i.name.as_str() {
            "NIFTY" => (65, 50.0),
            "BANKNIFTY" => (30, 100.0),
            other => panic!("unexpected underlying {other}"),
        };
        assert_eq!(i.lot_size, lot, "{}", i.tradingsymbol);
        let expiry = date_from_days(i.expiry.unwrap()).unwrap();
        assert!(calendar.is_trading_day(expiry), "{expiry} is a trading day");
        assert_eq!(
            calendar.expiry_for(next_tuesday(expiry)),
            expiry,
            "{expiry} is a Tuesday or the trading day a holiday moved it to"
        );
        if i.instrument_type == InstrumentType::FUT {
            assert_eq!(i.segment, "NFO-FUT");
            assert_eq!(calendar.kind_of(expiry), ExpiryKind::Monthly);
            assert_eq!(i.tradingsymbol, future_symbol(&i.name, expiry));
            assert_eq!(i.strike, 0.0);
        } else {
            assert_eq!(i.segment, "NFO-OPT");
            assert_eq!(i.strike % step, 0.0, "{} is on the strike step", i.strike);
            let right = if i.instrument_type == InstrumentType::CE {
                "CE"
            } else {
                "PE"
            };
            let kind = calendar.kind_of(expiry);
            assert_eq!(
                i.tradingsymbol,
                option_symbol(&i.name, expiry, kind, i.strike, right)
            );
            chains
                .entry((i.name.clone(), i.instrument_type, i.expiry.unwrap()))
                .or_default()
                .push(i.strike);
        }
    }
    // Every chain side lists 41 consecutive strikes centred on the opening ATM strike.
    assert_eq!(chains.len(), 2 * (7 + 3));
    for ((name, _, _), strikes) in &chains {
        let (atm, step) = if name == "BANKNIFTY" {
            (55_000.0, 100.0)
        } else {
            (24_500.0, 50.0)
        };
        let expected: Vec<f64> = (-20..=20).map(|j| atm + f64::from(j) * step).collect();
        assert_eq!(strikes, &expected, "{name}");
    }
}

#[test]
fn tokens_depend_on_the_contract_only() {
    let full = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let other_seed = MarketSimulator::new(&SimulatorConfig {
        seed: 99,
        ..SimulatorConfig::default()
    })
    .unwrap();
    let small = MarketSimulator::new(&SimulatorConfig::single_chain()).unwrap();
    for i in small.instruments() {
        assert_eq!(token_of(&full, &i.tradingsymbol), i.instrument_token);
    }
    let tokens = |s: &MarketSimulator| -> Vec<i64> {
        s.instruments().iter().map(|i| i.instrument_token).collect()
    };
    assert_eq!(tokens(&full), tokens(&other_seed));
    assert_eq!(token_of(&full, "NIFTY 50"), NIFTY_SPOT_TOKEN);
    assert_eq!(token_of(&full, "NIFTY BANK"), BANKNIFTY_SPOT_TOKEN);
}

#[test]
fn single_chain_is_the_twelve_instrument_test_market() {
    let sim = MarketSimulator::new(&SimulatorConfig::single_chain()).unwrap();
    let symbols: Vec<&str> = sim
        .instruments()
        .iter()
        .map(|i| i.tradingsymbol.as_str())
        .collect();
    assert_eq!(
        symbols,
        [
            "NIFTY 50",
            "NIFTY26DECFUT",
            "NIFTY26D0824400CE",
            "NIFTY26D0824400PE",
            "NIFTY26D0824450CE",
            "NIFTY26D0824450PE",
            "NIFTY26D0824500CE",
            "NIFTY26D0824500PE",
            "NIFTY26D0824550CE",
            "NIFTY26D0824550PE",
            "NIFTY26D0824600CE",
            "NIFTY26D0824600PE",
        ]
    );
}
