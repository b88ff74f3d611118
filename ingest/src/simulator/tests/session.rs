//! The session driver: determinism, the event-time clock, and rolling over non-trading days.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{Datelike, Weekday};
use strikeflow_schemas::date_from_days;

use super::{day, position, session_position};
use crate::calendar::{default_holidays, TradingCalendar};
use crate::simulator::{MarketSimulator, SimulatorConfig, SESSION_MICROS};

#[test]
fn same_seed_same_ticks() {
    let config = SimulatorConfig::default();
    let mut a = MarketSimulator::new(&config).unwrap();
    let mut b = MarketSimulator::new(&config).unwrap();
    assert_eq!(a.instruments(), b.instruments());
    for _ in 0..20_000 {
        assert_eq!(a.next_tick(), b.next_tick());
    }
    let mut c = MarketSimulator::new(&SimulatorConfig { seed: 7, ..config }).unwrap();
    let differs = (0..1_000)
        .filter(|_| a.next_tick() != c.next_tick())
        .count();
    assert!(differs > 900, "another seed must give another market");
}

#[test]
fn ticks_stay_in_session_and_roll_over_weekends_and_holidays() {
    // 60 s ticks: 375 ticks a session, a month in 8,000 ticks.
    let config = SimulatorConfig {
        tick_interval_ms: 60_000,
        ..SimulatorConfig::single_chain()
    };
    let mut sim = MarketSimulator::new(&config).unwrap();
    let expiry_of: HashMap<i64, Option<i32>> = sim
        .instruments()
        .iter()
        .map(|i| (i.instrument_token, i.expiry))
        .collect();
    let calendar = TradingCalendar::new(default_holidays());
    let mut dates = BTreeSet::new();
    let mut seen = HashSet::new();
    let mut previous = i64::MIN;
    for _ in 0..8_000 {
        let t = sim.next_tick();
        assert!(t.exchange_ts > previous, "event time only moves forward");
        previous = t.exchange_ts;
        let (date, since_open) = session_position(t.exchange_ts);
        assert!(
            (0..SESSION_MICROS).contains(&since_open),
            "tick outside 09:15-15:30 IST"
        );
        assert!(calendar.is_trading_day(date), "{date} is not a trading day");
        if let Some(expiry) = expiry_of[&t.instrument_token] {
            let expiry = date_from_days(expiry).unwrap();
            assert!(date <= expiry, "a contract of {expiry} ticked on {date}");
        }
        dates.insert(date);
        seen.insert(t.instrument_token);
    }
    assert_eq!(
        seen.len(),
        sim.instruments().len(),
        "every instrument ticks before it expires"
    );
    // Every trading day from 1 Dec on, in order: weekends and Christmas are skipped.
    let first = *dates.first().unwrap();
    let last = *dates.last().unwrap();
    assert_eq!(first, day(2026, 12, 2));
    assert!(last > day(2026, 12, 28), "{last}");
    let mut expected = BTreeSet::new();
    let mut d = first;
    while d <= last {
        expected.insert(d);
        d = calendar.next_trading_day(d);
    }
    assert_eq!(dates, expected);
    assert!(!dates.contains(&day(2026, 12, 25)));
    assert!(dates
        .iter()
        .all(|d| !matches!(d.weekday(), Weekday::Sat | Weekday::Sun)));
}

#[test]
fn a_session_starting_on_a_holiday_opens_on_the_next_trading_day() {
    let config = SimulatorConfig {
        session_date: day(2026, 12, 25),
        ..SimulatorConfig::single_chain()
    };
    let mut sim = MarketSimulator::new(&config).unwrap();
    let (date, _) = session_position(sim.next_tick().exchange_ts);
    assert_eq!(date, day(2026, 12, 28));
    // Its weekly skips the monthly week: 5 Jan 2027, not 29 Dec.
    position(&sim, "NIFTY2710524500CE");
}

#[test]
fn session_over_right_after_the_last_tick_of_each_session() {
    // 60 s ticks: 374 ticks a session (09:16 .. 15:29), then the roll to 09:15.
    let config = SimulatorConfig {
        tick_interval_ms: 60_000,
        ..SimulatorConfig::single_chain()
    };
    let mut sim = MarketSimulator::new(&config).unwrap();
    let close = crate::calendar::ist_micros(day(2026, 12, 2), crate::calendar::SESSION_CLOSE);
    let mut closes = Vec::new();
    let mut last_before = None;
    for _ in 0..800 {
        let t = sim.next_tick();
        if let Some(c) = sim.session_over() {
            closes.push(c);
            last_before = last_before.or(Some(t.exchange_ts));
        }
    }
    assert_eq!(
        last_before,
        Some(close - 60_000_000),
        "15:29 is the last tick"
    );
    assert_eq!(closes[0], close);
    assert_eq!(
        closes.len(),
        2,
        "once per session, in ~2 sessions: {closes:?}"
    );
    assert!(closes[1] > close);
}
