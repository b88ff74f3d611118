//! Contract test: the streaming indicators agree with TA-Lib, the reference for indicator
//! values (docs: domain brief, "Indicators").
//!
//! Each test generates a seeded random-walk series of one-minute bars, writes it as JSON to a
//! temporary file and runs `$STRIKEFLOW_PYTHON tests/contract/talib_reference.py FILE`,
//! which prints the outputs of Python TA-Lib (PyPI `TA-Lib`, which bundles the C library).
//! Every non-NaN TA-Lib value must match the streaming value at the same bar to 1e-9
//! relative, and TA-Lib's warm-up (NaN) positions must be exactly where the streaming
//! indicator returns `None`.
//!
//! Without `STRIKEFLOW_PYTHON` the tests fail (never pass silently): run them through
//! `./dev test`, which builds `.dev/venv` from `tests/contract/requirements.txt`.

use std::path::PathBuf;
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use strikeflow_analytics::indicators::{build, registry, Indicator};
use strikeflow_schemas::Bar;

/// Largest accepted |streaming − TA-Lib| / max(|streaming|, |TA-Lib|).
const REL_TOL: f64 = 1e-9;

/// One comparison: our indicator (registry name + params) against one TA-Lib function.
struct Case {
    indicator: &'static str,
    params: &'static [(&'static str, f64)],
    talib: &'static str,
    talib_params: Value,
    /// For TA-Lib output `j`, the index of our output it is compared with.
    outputs: &'static [usize],
    /// Whether TA-Lib's first value is on the same bar as ours. +DI/−DI: TA-Lib's
    /// `PLUS_DI` starts after `period` bars, our ADX reports the DI lines with the ADX.
    same_warm_up: bool,
    /// Differences of two comparable numbers (MACD line, histogram) can sit near zero
    /// where a relative error is meaningless: there the error is taken relative to the
    /// close instead (the magnitude the EMAs carry).
    relative_to_close: bool,
}

fn cases() -> Vec<Case> {
    let case = |indicator, params, talib, talib_params, outputs| Case {
        indicator,
        params,
        talib,
        talib_params,
        outputs,
        same_warm_up: true,
        relative_to_close: false,
    };
    vec![
        case(
            "sma",
            &[("period", 20.0)],
            "SMA",
            json!({"timeperiod": 20}),
            &[0],
        ),
        case(
            "sma",
            &[("period", 3.0)],
            "SMA",
            json!({"timeperiod": 3}),
            &[0],
        ),
        case(
            "ema",
            &[("period", 9.0)],
            "EMA",
            json!({"timeperiod": 9}),
            &[0],
        ),
        case(
            "ema",
            &[("period", 20.0)],
            "EMA",
            json!({"timeperiod": 20}),
            &[0],
        ),
        case(
            "ema",
            &[("period", 200.0)],
            "EMA",
            json!({"timeperiod": 200}),
            &[0],
        ),
        case(
            "wma",
            &[("period", 20.0)],
            "WMA",
            json!({"timeperiod": 20}),
            &[0],
        ),
        case(
            "rsi",
            &[("period", 14.0)],
            "RSI",
            json!({"timeperiod": 14}),
            &[0],
        ),
        case(
            "rsi",
            &[("period", 5.0)],
            "RSI",
            json!({"timeperiod": 5}),
            &[0],
        ),
        Case {
            relative_to_close: true,
            ..case(
                "macd",
                &[],
                "MACD",
                json!({"fastperiod": 12, "slowperiod": 26, "signalperiod": 9}),
                &[0, 1, 2],
            )
        },
        Case {
            relative_to_close: true,
            ..case(
                "macd",
                &[("fast", 5.0), ("slow", 35.0), ("signal", 5.0)],
                "MACD",
                json!({"fastperiod": 5, "slowperiod": 35, "signalperiod": 5}),
                &[0, 1, 2],
            )
        },
        case(
            "bbands",
            &[],
            "BBANDS",
            json!({"timeperiod": 20, "nbdevup": 2.0, "nbdevdn": 2.0, "matype": 0}),
            &[0, 1, 2],
        ),
        case(
            "bbands",
            &[("period", 10.0), ("nbdev_up", 1.5), ("nbdev_dn", 2.5)],
            "BBANDS",
            json!({"timeperiod": 10, "nbdevup": 1.5, "nbdevdn": 2.5, "matype": 0}),
            &[0, 1, 2],
        ),
        case("atr", &[], "ATR", json!({"timeperiod": 14}), &[0]),
        case(
            "atr",
            &[("period", 5.0)],
            "ATR",
            json!({"timeperiod": 5}),
            &[0],
        ),
        case("adx", &[], "ADX", json!({"timeperiod": 14}), &[0]),
        case(
            "adx",
            &[("period", 5.0)],
            "ADX",
            json!({"timeperiod": 5}),
            &[0],
        ),
        Case {
            same_warm_up: false,
            ..case("adx", &[], "PLUS_DI", json!({"timeperiod": 14}), &[1])
        },
        Case {
            same_warm_up: false,
            ..case("adx", &[], "MINUS_DI", json!({"timeperiod": 14}), &[2])
        },
        case(
            "stoch",
            &[],
            "STOCH",
            json!({"fastk_period": 5, "slowk_period": 3, "slowk_matype": 0,
                   "slowd_period": 3, "slowd_matype": 0}),
            &[0, 1],
        ),
        case(
            "stoch",
            &[("fastk", 14.0), ("slowk", 1.0), ("slowd", 4.0)],
            "STOCH",
            json!({"fastk_period": 14, "slowk_period": 1, "slowk_matype": 0,
                   "slowd_period": 4, "slowd_matype": 0}),
            &[0, 1],
        ),
        case("obv", &[], "OBV", json!({}), &[0]),
    ]
}

/// A deterministic random walk of one-minute bars on the 0.05 tick grid. `flat_every`
/// inserts runs of 40 identical bars (high = low = close, zero range) to exercise the
/// zero guards of RSI, STOCH, BBANDS and ADX.
fn random_walk(n: usize, seed: u64, start: f64, step: f64, flat_every: Option<usize>) -> Vec<Bar> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let tick = |p: f64| ((p / 0.05).round() * 0.05).max(0.05);
    // 2026-01-05 09:15 IST in UTC microseconds.
    let first = 1_767_584_700_000_000_i64;
    let mut close = start;
    (0..n)
        .map(|i| {
            let flat = flat_every.is_some_and(|k| i % k >= k - 40);
            let (open, high, low, new_close) = if flat {
                (close, close, close, close)
            } else {
                let open = tick(close + rng.random_range(-0.3..0.3) * step);
                let c = tick(open + rng.random_range(-1.0..1.0) * step);
                let h = tick(open.max(c) + rng.random_range(0.0..0.7) * step);
                let l = tick(open.min(c) - rng.random_range(0.0..0.7) * step);
                (open, h, l, c)
            };
            close = new_close;
            let volume = if i % 13 == 0 {
                0
            } else {
                rng.random_range(1..200_000)
            };
            Bar {
                instrument_token: 13_368_322,
                window_start: first + i as i64 * 60_000_000,
                window_end: first + (i as i64 + 1) * 60_000_000,
                open,
                high,
                low,
                close: new_close,
                volume,
                oi: 1_000_000 + i as i64,
                tick_count: 40,
            }
        })
        .collect()
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the TA-Lib reference script over `bars` for `cases`, returning its JSON answer.
fn talib_outputs(series: &str, bars: &[Bar], cases: &[Case]) -> Value {
    let Some(python) = std::env::var_os("STRIKEFLOW_PYTHON") else {
        panic!(
            "STRIKEFLOW_PYTHON is not set: this contract test compares the indicators with \
             Python TA-Lib. Run it through `./dev test` (which builds .dev/venv from \
             tests/contract/requirements.txt and exports STRIKEFLOW_PYTHON), or set \
             STRIKEFLOW_PYTHON to a python that has the `TA-Lib` package installed."
        );
    };
    let calls: Vec<Value> = cases
        .iter()
        .map(|c| json!({"function": c.talib, "params": c.talib_params}))
        .collect();
    let request = json!({"bars": bars, "calls": calls});
    let file = std::env::temp_dir().join(format!(
        "strikeflow-talib-{}-{series}.json",
        std::process::id()
    ));
    std::fs::write(&file, serde_json::to_vec(&request).unwrap()).unwrap();
    let root = workspace_root();
    let script = root.join("tests/contract/talib_reference.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&file)
        .current_dir(&root)
        .output()
        .unwrap_or_else(|e| panic!("running {python:?} {}: {e}", script.display()));
    let _ = std::fs::remove_file(&file);
    assert!(
        output.status.success(),
        "{} failed ({}): {}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("talib_reference.py printed invalid JSON")
}

/// Compares every case on one series; returns a report line per case and panics listing
/// every disagreement.
fn check_series(series: &str, bars: &[Bar]) {
    assert!(bars.len() >= 1000);
    let cases = cases();
    let answer = talib_outputs(series, bars, &cases);
    println!(
        "[{series}] {} bars, TA-Lib python {} / C {}",
        bars.len(),
        answer["talib_version"],
        answer["ta_lib_c_version"]
    );
    let mut failures = Vec::new();
    for (c, case) in cases.iter().enumerate() {
        let params: Vec<(String, f64)> = case
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let mut ind = build(case.indicator, &params).unwrap();
        let ours: Vec<_> = bars.iter().map(|b| ind.update(b)).collect();
        let label = format!("{} {} {}", case.indicator, case.talib, case.talib_params);
        let outputs = answer["results"][c].as_array().expect("results per call");
        assert_eq!(outputs.len(), case.outputs.len(), "{label}: output count");
        let (mut max_rel, mut compared, mut first) = (0.0f64, 0usize, None);
        for (j, out) in outputs.iter().enumerate() {
            let talib: Vec<Option<f64>> = out
                .as_array()
                .expect("output array")
                .iter()
                .map(Value::as_f64)
                .collect();
            assert_eq!(talib.len(), bars.len(), "{label}: output length");
            for (i, (t, o)) in talib.iter().zip(&ours).enumerate() {
                let mine = o.map(|v| v.outputs()[case.outputs[j]]);
                match (t, mine) {
                    (Some(t), Some(m)) => {
                        compared += 1;
                        first = Some(first.map_or(i, |f: usize| f.min(i)));
                        let mut scale = t.abs().max(m.abs());
                        if case.relative_to_close {
                            scale = scale.max(bars[i].close.abs());
                        }
                        let rel = if scale == 0.0 {
                            0.0
                        } else {
                            (t - m).abs() / scale
                        };
                        max_rel = max_rel.max(rel);
                        if rel.is_nan() || rel > REL_TOL {
                            failures.push(format!(
                                "{label} output {j} bar {i}: ours {m} vs TA-Lib {t} (rel {rel:e})"
                            ));
                        }
                    }
                    (None, None) => {}
                    (Some(t), None) if case.same_warm_up => failures.push(format!(
                        "{label} output {j} bar {i}: TA-Lib has {t}, ours is still warming up"
                    )),
                    (None, Some(m)) if case.same_warm_up => failures.push(format!(
                        "{label} output {j} bar {i}: ours {m}, TA-Lib is NaN (warm-up differs)"
                    )),
                    (None, Some(_)) | (Some(_), None) => {}
                }
            }
        }
        assert!(compared > 0, "{label}: nothing compared");
        println!(
            "[{series}] {label:<95} first value at bar {:>3}, {compared:>5} values, max rel err {max_rel:.1e}",
            first.unwrap_or(0)
        );
    }
    assert!(
        failures.is_empty(),
        "[{series}] {} disagreements with TA-Lib, first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn talib_agrees_on_index_futures_random_walk() {
    check_series("futures", &random_walk(2000, 42, 24_000.0, 12.0, None));
}

#[test]
fn talib_agrees_on_option_premium_random_walk() {
    // Premiums near the 0.05 floor: many ties and unchanged closes.
    check_series("option", &random_walk(2000, 7, 60.0, 1.5, None));
}

#[test]
fn talib_agrees_across_flat_stretches() {
    check_series("flat", &random_walk(1500, 3, 800.0, 4.0, Some(300)));
}

#[test]
fn every_talib_backed_indicator_is_covered() {
    let covered: Vec<&str> = cases().iter().map(|c| c.indicator).collect();
    for spec in registry() {
        if matches!(spec.name, "supertrend" | "vwap") {
            continue; // no TA-Lib counterpart; checked against batch definitions in unit tests
        }
        assert!(
            covered.contains(&spec.name),
            "{} has no TA-Lib case",
            spec.name
        );
    }
}
