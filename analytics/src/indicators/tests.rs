//! Streaming == batch for every indicator, warm-up lengths, rollups and the registry.
//!
//! The batch versions here are written the plain textbook way over whole slices (no shared
//! code with the streaming state machines), so agreement checks the streaming bookkeeping.

// Index loops read like the textbook formulas the batch references transcribe.
#![allow(clippy::needless_range_loop)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use strikeflow_schemas::Bar;

use super::session::{ist_midnight, MINUTE_MICROS};
use super::*;

/// Monday 2026-01-05, IST days since the epoch.
const DAY: i64 = 20_458;

/// UTC micros of `hh:mm` IST on IST day `day`.
fn ist(day: i64, hh: i64, mm: i64) -> i64 {
    ist_midnight(day) + (hh * 60 + mm) * MINUTE_MICROS
}

fn bar_at(token: i64, start: i64, o: f64, h: f64, l: f64, c: f64, volume: i64) -> Bar {
    Bar {
        instrument_token: token,
        window_start: start,
        window_end: start + MINUTE_MICROS,
        open: o,
        high: h,
        low: l,
        close: c,
        volume,
        oi: volume * 3,
        tick_count: 7,
    }
}

/// A seeded random walk of one-minute session bars (375 a day, several days), prices on the
/// 0.05 tick grid so ties and unchanged closes occur, with a flat stretch and some
/// zero-volume bars to exercise the zero guards.
fn random_bars(n: usize, seed: u64, start_price: f64, step: f64) -> Vec<Bar> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let tick = |p: f64| (p / 0.05).round() * 0.05;
    let mut close = start_price;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let day = DAY + (i / 375) as i64;
        let minute = (i % 375) as i64;
        let start = ist(day, 9, 15) + minute * MINUTE_MICROS;
        let flat = (200..230).contains(&i);
        let open = if flat {
            close
        } else {
            tick(close + rng.random_range(-0.3..0.3) * step)
        };
        let new_close = if flat {
            close
        } else {
            tick((open + rng.random_range(-1.0..1.0) * step).max(0.05))
        };
        let high = if flat {
            close
        } else {
            tick(open.max(new_close) + rng.random_range(0.0..0.6) * step)
        };
        let low = if flat {
            close
        } else {
            tick((open.min(new_close) - rng.random_range(0.0..0.6) * step).max(0.05))
        };
        let volume = if i % 17 == 0 {
            0
        } else {
            rng.random_range(0..50_000)
        };
        out.push(bar_at(7, start, open, high, low, new_close, volume));
        close = new_close;
    }
    out
}

fn series() -> Vec<Vec<Bar>> {
    vec![
        random_bars(1200, 1, 24_000.0, 12.0),
        random_bars(1200, 2, 150.0, 2.0),
        random_bars(400, 3, 5.0, 0.4),
    ]
}

fn closes(bars: &[Bar]) -> Vec<f64> {
    bars.iter().map(|b| b.close).collect()
}

/// Runs a streaming indicator over the bars, keeping the outputs as plain vectors.
fn stream(ind: &mut dyn Indicator, bars: &[Bar]) -> Vec<Option<Vec<f64>>> {
    bars.iter()
        .map(|b| ind.update(b).map(|v| v.outputs().to_vec()))
        .collect()
}

fn single(v: Vec<Option<f64>>) -> Vec<Option<Vec<f64>>> {
    v.into_iter().map(|x| x.map(|x| vec![x])).collect()
}

fn assert_agree(what: &str, got: &[Option<Vec<f64>>], want: &[Option<Vec<f64>>], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        match (g, w) {
            (None, None) => {}
            (Some(g), Some(w)) => {
                assert_eq!(g.len(), w.len(), "{what}[{i}]: outputs");
                for (j, (a, b)) in g.iter().zip(w).enumerate() {
                    assert!(a.is_finite(), "{what}[{i}].{j}: {a} is not finite");
                    let scale = a.abs().max(b.abs()).max(1.0);
                    assert!(
                        (a - b).abs() <= tol * scale,
                        "{what}[{i}].{j}: streaming {a} vs batch {b}"
                    );
                }
            }
            _ => panic!("{what}[{i}]: streaming {g:?} vs batch {w:?} (warm-up differs)"),
        }
    }
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

// ---------------------------------------------------------------------------------------
// batch references

fn batch_sma(x: &[f64], n: usize) -> Vec<Option<f64>> {
    (0..x.len())
        .map(|i| (i + 1 >= n).then(|| mean(&x[i + 1 - n..=i])))
        .collect()
}

/// EMA with TA-Lib's seed: mean of the first `n` values at index `n − 1`.
fn batch_ema(x: &[f64], n: usize) -> Vec<Option<f64>> {
    let k = 2.0 / (n as f64 + 1.0);
    let mut out = vec![None; x.len()];
    if x.len() < n {
        return out;
    }
    let mut e = mean(&x[..n]);
    out[n - 1] = Some(e);
    for i in n..x.len() {
        e += (x[i] - e) * k;
        out[i] = Some(e);
    }
    out
}

fn batch_wma(x: &[f64], n: usize) -> Vec<Option<f64>> {
    let div = (n * (n + 1) / 2) as f64;
    (0..x.len())
        .map(|i| {
            (i + 1 >= n).then(|| {
                x[i + 1 - n..=i]
                    .iter()
                    .enumerate()
                    .map(|(j, v)| (j + 1) as f64 * v)
                    .sum::<f64>()
                    / div
            })
        })
        .collect()
}

fn batch_rsi(x: &[f64], n: usize) -> Vec<Option<f64>> {
    let mut out = vec![None; x.len()];
    if x.len() <= n {
        return out;
    }
    let gain = |i: usize| (x[i] - x[i - 1]).max(0.0);
    let loss = |i: usize| (x[i - 1] - x[i]).max(0.0);
    let nf = n as f64;
    let mut g = (1..=n).map(gain).sum::<f64>() / nf;
    let mut l = (1..=n).map(loss).sum::<f64>() / nf;
    let rsi = |g: f64, l: f64| {
        if g + l > 0.0 {
            100.0 * g / (g + l)
        } else {
            0.0
        }
    };
    out[n] = Some(rsi(g, l));
    for i in n + 1..x.len() {
        g = (g * (nf - 1.0) + gain(i)) / nf;
        l = (l * (nf - 1.0) + loss(i)) / nf;
        out[i] = Some(rsi(g, l));
    }
    out
}

fn batch_macd(x: &[f64], fast: usize, slow: usize, signal: usize) -> Vec<Option<Vec<f64>>> {
    let slow_ema = batch_ema(x, slow);
    // TA-Lib starts the fast EMA on the slow EMA's first bar.
    let first = slow - 1;
    let k = 2.0 / (fast as f64 + 1.0);
    let mut fast_ema = vec![None; x.len()];
    if x.len() > first {
        let mut e = mean(&x[slow - fast..slow]);
        fast_ema[first] = Some(e);
        for i in slow..x.len() {
            e += (x[i] - e) * k;
            fast_ema[i] = Some(e);
        }
    }
    let line: Vec<f64> = (first..x.len())
        .map(|i| fast_ema[i].unwrap_or(f64::NAN) - slow_ema[i].unwrap_or(f64::NAN))
        .collect();
    let sig = batch_ema(&line, signal);
    let mut out = vec![None; x.len()];
    for (j, s) in sig.iter().enumerate() {
        if let Some(s) = s {
            out[first + j] = Some(vec![line[j], *s, line[j] - s]);
        }
    }
    out
}

fn batch_bbands(x: &[f64], n: usize, up: f64, dn: f64) -> Vec<Option<Vec<f64>>> {
    (0..x.len())
        .map(|i| {
            (i + 1 >= n).then(|| {
                let w = &x[i + 1 - n..=i];
                let m = mean(w);
                let var = w.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n as f64;
                let sd = var.sqrt();
                vec![m + up * sd, m, m - dn * sd]
            })
        })
        .collect()
}

fn trs(bars: &[Bar]) -> Vec<f64> {
    (0..bars.len())
        .map(|i| {
            if i == 0 {
                f64::NAN
            } else {
                let (h, l, pc) = (bars[i].high, bars[i].low, bars[i - 1].close);
                (h - l).max((h - pc).abs()).max((l - pc).abs())
            }
        })
        .collect()
}

fn batch_atr(bars: &[Bar], n: usize) -> Vec<Option<f64>> {
    let tr = trs(bars);
    let mut out = vec![None; bars.len()];
    if bars.len() <= n {
        return out;
    }
    let nf = n as f64;
    let mut a = mean(&tr[1..=n]);
    out[n] = Some(a);
    for i in n + 1..bars.len() {
        a = (a * (nf - 1.0) + tr[i]) / nf;
        out[i] = Some(a);
    }
    out
}

fn batch_adx(bars: &[Bar], n: usize) -> Vec<Option<Vec<f64>>> {
    let len = bars.len();
    let tr = trs(bars);
    let mut pdm = vec![0.0; len];
    let mut mdm = vec![0.0; len];
    for i in 1..len {
        let up = bars[i].high - bars[i - 1].high;
        let down = bars[i - 1].low - bars[i].low;
        if down > 0.0 && up < down {
            mdm[i] = down;
        } else if up > 0.0 && up > down {
            pdm[i] = up;
        }
    }
    let nf = n as f64;
    let mut out = vec![None; len];
    if len < 2 * n {
        return out;
    }
    // Wilder sums start with the n − 1 values of bars 1..n−1.
    let (mut sp, mut sm, mut st) = (0.0, 0.0, 0.0);
    for i in 1..n {
        sp += pdm[i];
        sm += mdm[i];
        st += tr[i];
    }
    let mut dx = vec![None; len];
    let mut di = vec![(0.0, 0.0); len];
    for i in n..len {
        sp = sp - sp / nf + pdm[i];
        sm = sm - sm / nf + mdm[i];
        st = st - st / nf + tr[i];
        if st.abs() >= 1e-14 {
            let (p, m) = (100.0 * sp / st, 100.0 * sm / st);
            di[i] = (p, m);
            if (p + m).abs() >= 1e-14 {
                dx[i] = Some(100.0 * (p - m).abs() / (p + m));
            }
        }
    }
    let mut adx = (n..2 * n).map(|i| dx[i].unwrap_or(0.0)).sum::<f64>() / nf;
    out[2 * n - 1] = Some(vec![adx, di[2 * n - 1].0, di[2 * n - 1].1]);
    for i in 2 * n..len {
        if let Some(d) = dx[i] {
            adx = (adx * (nf - 1.0) + d) / nf;
        }
        out[i] = Some(vec![adx, di[i].0, di[i].1]);
    }
    out
}

fn batch_stoch(bars: &[Bar], fk: usize, sk: usize, sd: usize) -> Vec<Option<Vec<f64>>> {
    let len = bars.len();
    let fast: Vec<f64> = (fk - 1..len)
        .map(|i| {
            let w = &bars[i + 1 - fk..=i];
            let hh = w.iter().map(|b| b.high).fold(f64::MIN, f64::max);
            let ll = w.iter().map(|b| b.low).fold(f64::MAX, f64::min);
            if hh - ll <= 1e-14 * (hh.abs() + ll.abs()) {
                0.0
            } else {
                100.0 * (bars[i].close - ll) / (hh - ll)
            }
        })
        .collect();
    let slow_k: Vec<f64> = batch_sma(&fast, sk).into_iter().flatten().collect();
    let slow_d = batch_sma(&slow_k, sd);
    let offset = len - slow_d.len();
    let mut out = vec![None; len];
    for (j, d) in slow_d.iter().enumerate() {
        if let Some(d) = d {
            out[offset + j] = Some(vec![slow_k[j], *d]);
        }
    }
    out
}

fn batch_obv(bars: &[Bar]) -> Vec<Option<f64>> {
    (0..bars.len())
        .map(|i| {
            let mut obv = bars[0].volume as f64;
            for j in 1..=i {
                let v = bars[j].volume as f64;
                if bars[j].close > bars[j - 1].close {
                    obv += v;
                } else if bars[j].close < bars[j - 1].close {
                    obv -= v;
                }
            }
            Some(obv)
        })
        .collect()
}

fn batch_vwap(bars: &[Bar]) -> Vec<Option<f64>> {
    (0..bars.len())
        .map(|i| {
            let day = ist_day(bars[i].window_start);
            let session = bars[..=i]
                .iter()
                .filter(|b| ist_day(b.window_start) == day && b.volume > 0);
            let (pv, v) = session.fold((0.0, 0i64), |(pv, v), b| {
                (
                    pv + (b.high + b.low + b.close) / 3.0 * b.volume as f64,
                    v + b.volume,
                )
            });
            (v > 0).then(|| pv / v as f64)
        })
        .collect()
}

/// Supertrend straight from its definition (see [`Supertrend`]), over a batch ATR.
fn batch_supertrend(bars: &[Bar], n: usize, m: f64) -> Vec<Option<Vec<f64>>> {
    let atr = batch_atr(bars, n);
    let mut out = vec![None; bars.len()];
    let mut prev: Option<(f64, f64, f64, f64)> = None; // upper, lower, close, direction
    for (i, b) in bars.iter().enumerate() {
        let Some(a) = atr[i] else { continue };
        let mid = (b.high + b.low) / 2.0;
        let (bu, bl) = (mid + m * a, mid - m * a);
        let (u, l, dir) = match prev {
            None => (bu, bl, -1.0),
            Some((pu, pl, pc, pd)) => {
                let u = if bu < pu || pc > pu { bu } else { pu };
                let l = if bl > pl || pc < pl { bl } else { pl };
                let dir = if pd < 0.0 {
                    if b.close > u {
                        1.0
                    } else {
                        -1.0
                    }
                } else if b.close < l {
                    -1.0
                } else {
                    1.0
                };
                (u, l, dir)
            }
        };
        prev = Some((u, l, b.close, dir));
        out[i] = Some(vec![if dir > 0.0 { l } else { u }, dir]);
    }
    out
}

// ---------------------------------------------------------------------------------------
// streaming == batch

const TOL: f64 = 1e-10;

#[test]
fn moving_averages_match_batch() {
    for bars in series() {
        let x = closes(&bars);
        for n in [1, 2, 9, 20, 50, 200] {
            let mut sma = Sma::new(n).unwrap();
            assert_agree(
                "sma",
                &stream(&mut sma, &bars),
                &single(batch_sma(&x, n)),
                TOL,
            );
            let mut ema = Ema::new(n).unwrap();
            assert_agree(
                "ema",
                &stream(&mut ema, &bars),
                &single(batch_ema(&x, n)),
                TOL,
            );
            let mut wma = Wma::new(n).unwrap();
            assert_agree(
                "wma",
                &stream(&mut wma, &bars),
                &single(batch_wma(&x, n)),
                TOL,
            );
        }
    }
}

#[test]
fn rsi_matches_batch() {
    for bars in series() {
        let x = closes(&bars);
        for n in [2, 7, 14, 50] {
            let mut rsi = Rsi::new(n).unwrap();
            let got = stream(&mut rsi, &bars);
            assert_agree("rsi", &got, &single(batch_rsi(&x, n)), TOL);
            for v in got.iter().flatten() {
                assert!((0.0..=100.0).contains(&v[0]), "rsi out of 0..100: {}", v[0]);
            }
        }
    }
}

#[test]
fn macd_matches_batch() {
    for bars in series() {
        let x = closes(&bars);
        for (f, s, g) in [(12, 26, 9), (5, 35, 5), (3, 10, 1)] {
            let mut macd = Macd::new(f, s, g).unwrap();
            assert_agree(
                "macd",
                &stream(&mut macd, &bars),
                &batch_macd(&x, f, s, g),
                TOL,
            );
        }
    }
}

#[test]
fn bollinger_matches_two_pass_batch() {
    for bars in series() {
        let x = closes(&bars);
        for (n, up, dn) in [(20, 2.0, 2.0), (5, 1.5, 2.5), (2, 1.0, 1.0)] {
            let mut bb = Bollinger::new(n, up, dn).unwrap();
            assert_agree(
                "bbands",
                &stream(&mut bb, &bars),
                &batch_bbands(&x, n, up, dn),
                TOL,
            );
        }
    }
}

#[test]
fn atr_adx_stoch_match_batch() {
    for bars in series() {
        for n in [1, 5, 14] {
            let mut atr = Atr::new(n).unwrap();
            assert_agree(
                "atr",
                &stream(&mut atr, &bars),
                &single(batch_atr(&bars, n)),
                TOL,
            );
        }
        for n in [2, 5, 14] {
            let mut adx = Adx::new(n).unwrap();
            assert_agree("adx", &stream(&mut adx, &bars), &batch_adx(&bars, n), TOL);
        }
        for (fk, sk, sd) in [(5, 3, 3), (14, 1, 1), (1, 2, 4)] {
            let mut st = Stochastic::new(fk, sk, sd).unwrap();
            assert_agree(
                "stoch",
                &stream(&mut st, &bars),
                &batch_stoch(&bars, fk, sk, sd),
                TOL,
            );
        }
    }
}

#[test]
fn obv_vwap_supertrend_match_batch() {
    for bars in series() {
        assert_agree(
            "obv",
            &stream(&mut Obv::new(), &bars),
            &single(batch_obv(&bars)),
            0.0,
        );
        let mut vwap = SessionVwap::new();
        assert_agree(
            "vwap",
            &stream(&mut vwap, &bars),
            &single(batch_vwap(&bars)),
            TOL,
        );
        for (n, m) in [(10, 3.0), (7, 1.0), (1, 0.5)] {
            let mut st = Supertrend::new(n, m).unwrap();
            assert_agree(
                "supertrend",
                &stream(&mut st, &bars),
                &batch_supertrend(&bars, n, m),
                TOL,
            );
        }
    }
}

#[test]
fn long_streams_do_not_drift() {
    // ~5 years of one-minute bars, then a perfectly flat window: running sums must not
    // accumulate rounding error, and a flat window must give σ = 0 exactly.
    let mut bars = random_bars(500_000, 11, 24_000.0, 12.0);
    let last = bars[bars.len() - 1].clone();
    for i in 1..=25 {
        bars.push(Bar {
            window_start: last.window_start + i * MINUTE_MICROS,
            window_end: last.window_end + i * MINUTE_MICROS,
            open: last.close,
            high: last.close,
            low: last.close,
            ..last.clone()
        });
    }
    let (mut bb, mut sma, mut wma) = (
        Bollinger::new(20, 2.0, 2.0).unwrap(),
        Sma::new(20).unwrap(),
        Wma::new(20).unwrap(),
    );
    let x = closes(&bars);
    let mut checked = 0;
    for (i, &v) in x.iter().enumerate() {
        let (b, s, w) = (bb.next_value(v), sma.next_value(v), wma.next_value(v));
        // Compare with the exact batch value every so often and at the flat end.
        if i >= 20 && (i % 50_000 == 0 || i == x.len() - 30 || i + 1 == x.len()) {
            let want_bb = batch_bbands(&x[i - 19..=i], 20, 2.0, 2.0)
                .pop()
                .flatten()
                .unwrap();
            let (u, m, l) = b.unwrap();
            for (got, want) in [u, m, l].iter().zip(&want_bb) {
                assert!(
                    (got - want).abs() <= 1e-12 * want.abs(),
                    "bb[{i}]: {got} vs {want}"
                );
            }
            let want_sma = mean(&x[i - 19..=i]);
            assert!((s.unwrap() - want_sma).abs() <= 1e-12 * want_sma);
            let want_wma = batch_wma(&x[i - 19..=i], 20).pop().flatten().unwrap();
            assert!(
                (w.unwrap() - want_wma).abs() <= 1e-12 * want_wma,
                "wma[{i}]"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10);
    let (u, m, l) = bb.next_value(last.close).unwrap();
    assert_eq!(
        (u, l),
        (m, m),
        "flat window: bands collapse onto the middle"
    );
}

#[test]
fn supertrend_flips_and_ratchets() {
    let bars = &series()[0];
    let mut st = Supertrend::new(10, 3.0).unwrap();
    let out: Vec<_> = bars
        .iter()
        .filter_map(|b| st.next_hlc(b.high, b.low, b.close))
        .collect();
    let flips = out.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(
        flips > 3,
        "a 1200-bar random walk should flip the trend a few times ({flips})"
    );
    // While the trend holds, the line never moves against it.
    for w in out.windows(2) {
        match (w[0].1, w[1].1) {
            (Trend::Up, Trend::Up) => assert!(w[1].0 >= w[0].0),
            (Trend::Down, Trend::Down) => assert!(w[1].0 <= w[0].0),
            _ => {}
        }
    }
}

#[test]
fn reset_replays_identically() {
    let bars = &series()[1];
    for spec in registry() {
        let mut ind = build(spec.name, &[]).unwrap();
        let first = stream(&mut ind, bars);
        ind.reset();
        let second = stream(&mut ind, bars);
        assert_eq!(first, second, "{} after reset", spec.name);
    }
}

// ---------------------------------------------------------------------------------------
// warm-up

/// Index of the first bar with a value.
fn first_value(ind: &mut dyn Indicator, bars: &[Bar]) -> Option<usize> {
    bars.iter().position(|b| ind.update(b).is_some())
}

#[test]
fn warm_up_lengths_follow_talib() {
    let bars = &series()[0];
    type Case = (&'static str, Vec<(String, f64)>, usize);
    let cases: [Case; 12] = [
        ("sma", vec![], 19),
        ("ema", vec![("period".into(), 9.0)], 8),
        ("wma", vec![], 19),
        // RSI(14): the first value comes with the 15th price.
        ("rsi", vec![], 14),
        ("macd", vec![], 33),
        ("bbands", vec![], 19),
        ("atr", vec![], 14),
        ("supertrend", vec![], 10),
        ("vwap", vec![], 1), // bar 0 has volume 0 in this series
        ("adx", vec![], 27),
        ("stoch", vec![], 8),
        ("obv", vec![], 0),
    ];
    assert_eq!(bars[0].volume, 0);
    for (name, params, want) in cases {
        let mut ind = build(name, &params).unwrap();
        assert_eq!(first_value(&mut ind, bars), Some(want), "{name}");
        if name != "vwap" {
            assert_eq!(ind.lookback(), want, "{name} lookback");
        }
    }
    let mut rsi = Rsi::new(14).unwrap();
    let values: Vec<_> = (0..15).map(|i| rsi.next_value(100.0 + i as f64)).collect();
    assert!(values[..14].iter().all(Option::is_none));
    assert_eq!(values[14], Some(100.0));
}

#[test]
fn index_bars_without_volume_have_no_vwap() {
    let start = ist(DAY, 9, 15);
    let mut vwap = SessionVwap::new();
    for i in 0..10 {
        let b = bar_at(256_265, start + i * MINUTE_MICROS, 1.0, 2.0, 0.5, 1.5, 0);
        assert_eq!(vwap.update(&b), None);
    }
}

#[test]
fn vwap_resets_at_ist_midnight() {
    let mut vwap = SessionVwap::new();
    // 23:59 IST (18:29 UTC) and 00:00 IST the next day are different sessions.
    let late = bar_at(1, ist(DAY, 23, 59), 10.0, 10.0, 10.0, 10.0, 100);
    let next = bar_at(1, ist(DAY + 1, 0, 0), 40.0, 40.0, 40.0, 40.0, 100);
    assert_eq!(ist_day(late.window_start) + 1, ist_day(next.window_start));
    assert_eq!(vwap.next_bar(&late), Some(10.0));
    assert_eq!(vwap.next_bar(&next), Some(40.0));
    let open = bar_at(1, ist(DAY + 1, 9, 15), 20.0, 25.0, 15.0, 20.0, 300);
    assert_eq!(
        vwap.next_bar(&open),
        Some((40.0 * 100.0 + 20.0 * 300.0) / 400.0)
    );
}

// ---------------------------------------------------------------------------------------
// rollups

fn minute(token: i64, hh: i64, mm: i64, price: f64, volume: i64) -> Bar {
    Bar {
        oi: 1000 + mm,
        ..bar_at(
            token,
            ist(DAY, hh, mm),
            price,
            price + 1.0,
            price - 1.0,
            price + 0.5,
            volume,
        )
    }
}

#[test]
fn bucket_bounds_align_to_the_session_open() {
    let b = |hh, mm, k| {
        let (s, e) = bucket_bounds(ist(DAY, hh, mm), k);
        (
            (s - ist(DAY, 0, 0)) / MINUTE_MICROS,
            (e - ist(DAY, 0, 0)) / MINUTE_MICROS,
        )
    };
    let m = |hh: i64, mm: i64| hh * 60 + mm;
    assert_eq!(b(9, 15, 3), (m(9, 15), m(9, 18)));
    assert_eq!(b(9, 17, 3), (m(9, 15), m(9, 18)));
    assert_eq!(b(9, 18, 3), (m(9, 18), m(9, 21)));
    assert_eq!(b(9, 19, 5), (m(9, 15), m(9, 20)));
    assert_eq!(b(15, 29, 5), (m(15, 25), m(15, 30)));
    assert_eq!(b(15, 29, 15), (m(15, 15), m(15, 30)));
    assert_eq!(b(9, 29, 15), (m(9, 15), m(9, 30)));
    // Pre-open minutes fall on the same grid, before the open.
    assert_eq!(b(9, 14, 15), (m(9, 0), m(9, 15)));
    // Hourly bars follow the session and end with a short 15:15–15:30 bar.
    assert_eq!(b(10, 14, 60), (m(9, 15), m(10, 15)));
    assert_eq!(b(15, 20, 60), (m(15, 15), m(15, 30)));
    assert_eq!(b(15, 30, 60), (m(15, 30), m(16, 15)));
    assert_eq!(b(9, 10, 60), (m(8, 15), m(9, 15)));
    assert_eq!(b(0, 5, 60), (0, m(0, 15)));
}

#[test]
fn rollup_closes_on_the_last_minute_and_aggregates() {
    let mut r = Rollup::new(3).unwrap();
    assert_eq!(r.update(&minute(1, 9, 15, 100.0, 10)).count(), 0);
    assert_eq!(r.update(&minute(1, 9, 16, 103.0, 20)).count(), 0);
    let closed: Vec<Bar> = r.update(&minute(1, 9, 17, 98.0, 30)).collect();
    assert_eq!(closed.len(), 1);
    let bar = &closed[0];
    assert_eq!(bar.window_start, ist(DAY, 9, 15));
    assert_eq!(bar.window_end, ist(DAY, 9, 18));
    assert_eq!(bar.instrument_token, 1);
    assert_eq!(bar.open, 100.0);
    assert_eq!(bar.high, 104.0);
    assert_eq!(bar.low, 97.0);
    assert_eq!(bar.close, 98.5);
    assert_eq!(bar.volume, 60);
    assert_eq!(bar.oi, 1017);
    assert_eq!(bar.tick_count, 21);
    assert_eq!(r.open_buckets(), 0);
}

#[test]
fn rollup_closes_on_a_later_bucket_when_the_last_minute_is_missing() {
    let mut r = Rollup::new(5).unwrap();
    assert_eq!(r.update(&minute(1, 9, 15, 100.0, 1)).count(), 0);
    assert_eq!(r.update(&minute(1, 9, 17, 101.0, 1)).count(), 0);
    // 09:19 never comes; 09:24 is the last minute of 09:20–09:25, closing both.
    let closed: Vec<Bar> = r.update(&minute(1, 9, 24, 110.0, 5)).collect();
    assert_eq!(closed.len(), 2);
    assert_eq!(closed[0].window_start, ist(DAY, 9, 15));
    assert_eq!(closed[0].window_end, ist(DAY, 9, 20));
    assert_eq!(closed[0].volume, 2);
    assert_eq!(closed[0].close, 101.5);
    assert_eq!(closed[1].window_start, ist(DAY, 9, 20));
    assert_eq!(closed[1].open, 110.0);
    // Late and duplicate bars are ignored and counted.
    assert_eq!(r.update(&minute(1, 9, 26, 1.0, 1)).count(), 0);
    assert_eq!(r.update(&minute(1, 9, 23, 1.0, 1)).count(), 0);
    assert_eq!(r.update(&minute(1, 9, 26, 1.0, 1)).count(), 0);
    assert_eq!(r.ignored_bars(), 2);
}

#[test]
fn rollup_keeps_instruments_apart_and_flushes() {
    let mut r = Rollup::new(15).unwrap();
    for mm in 15..29 {
        assert_eq!(r.update(&minute(1, 9, mm, 100.0, 1)).count(), 0);
        assert_eq!(r.update(&minute(2, 9, mm, 200.0, 2)).count(), 0);
    }
    assert_eq!(r.open_buckets(), 2);
    let mut out = Vec::new();
    r.close_until(ist(DAY, 9, 29), &mut out);
    assert!(out.is_empty());
    let closed: Vec<Bar> = r.update(&minute(1, 9, 29, 100.0, 1)).collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].volume, 15);
    r.close_until(ist(DAY, 9, 30), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].instrument_token, out[0].volume), (2, 28));
    assert!(r.flush().is_empty());
    assert!(Rollup::new(0).is_err());
    assert!(Rollup::new(376).is_err());
}

#[test]
fn indicators_run_on_rolled_up_bars() {
    // A full session of one-minute bars rolled to 5 minutes: 75 bars, each the batch
    // aggregate of its five minutes; an SMA over them equals the batch SMA of their closes.
    let minutes: Vec<Bar> = random_bars(375, 9, 24_000.0, 10.0);
    let mut r = Rollup::new(5).unwrap();
    let rolled: Vec<Bar> = minutes.iter().flat_map(|b| r.update(b)).collect();
    assert_eq!(rolled.len(), 75);
    for (j, bar) in rolled.iter().enumerate() {
        let part = &minutes[5 * j..5 * j + 5];
        assert_eq!(bar.window_start, part[0].window_start);
        assert_eq!(bar.window_end, part[4].window_end);
        assert_eq!(bar.close, part[4].close);
        assert_eq!(bar.volume, part.iter().map(|b| b.volume).sum::<i64>());
        assert_eq!(
            bar.high,
            part.iter().map(|b| b.high).fold(f64::MIN, f64::max)
        );
    }
    let mut sma = Sma::new(10).unwrap();
    assert_agree(
        "sma5m",
        &stream(&mut sma, &rolled),
        &single(batch_sma(&closes(&rolled), 10)),
        TOL,
    );
}

// ---------------------------------------------------------------------------------------
// registry

#[test]
fn registry_lists_every_indicator_with_consistent_outputs() {
    let names: Vec<&str> = registry().iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "sma",
            "ema",
            "wma",
            "rsi",
            "macd",
            "bbands",
            "atr",
            "supertrend",
            "vwap",
            "adx",
            "stoch",
            "obv"
        ]
    );
    let bars = &series()[0];
    for spec in registry() {
        for p in spec.params {
            assert!(
                p.min <= p.default && p.default <= p.max,
                "{}.{}",
                spec.name,
                p.name
            );
        }
        let mut ind = build(spec.name, &[]).unwrap();
        let last = bars.iter().filter_map(|b| ind.update(b)).last().unwrap();
        assert_eq!(last.outputs().len(), spec.outputs.len(), "{}", spec.name);
    }
    let json = serde_json::to_value(registry()).unwrap();
    assert_eq!(json[4]["name"], "macd");
    assert_eq!(json[4]["params"][1]["name"], "slow");
    assert_eq!(json[4]["params"][1]["default"], 26.0);
    assert_eq!(json[4]["params"][1]["kind"], "integer");
    assert_eq!(json[4]["outputs"][2], "hist");
    assert!(spec("MACD").is_some());
}

#[test]
fn build_applies_params_and_rejects_bad_input() {
    let p = |v: &[(&str, f64)]| {
        v.iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect::<Vec<_>>()
    };
    let mut ema = build("ema", &p(&[("period", 9.0)])).unwrap();
    assert_eq!(ema.lookback(), 8);
    let macd = build(
        "macd",
        &p(&[("fast", 5.0), ("slow", 13.0), ("signal", 4.0)]),
    )
    .unwrap();
    assert_eq!(macd.lookback(), 12 + 3);
    assert!(ema.update(&series()[0][0]).is_none());

    assert!(matches!(build("kama", &[]), Err(IndicatorError::UnknownIndicator(n)) if n == "kama"));
    assert!(matches!(
        build("rsi", &p(&[("length", 14.0)])),
        Err(IndicatorError::UnknownParam {
            indicator: "rsi",
            ..
        })
    ));
    assert!(matches!(
        build("rsi", &p(&[("period", 1.0)])),
        Err(IndicatorError::OutOfRange {
            param: "period",
            ..
        })
    ));
    assert!(matches!(
        build("rsi", &p(&[("period", 14.5)])),
        Err(IndicatorError::NotInteger { .. })
    ));
    assert!(matches!(
        build("bbands", &p(&[("nbdev_up", f64::NAN)])),
        Err(IndicatorError::OutOfRange { .. })
    ));
    assert!(matches!(
        build("sma", &p(&[("period", 1e9)])),
        Err(IndicatorError::OutOfRange { .. })
    ));
    assert!(matches!(
        build("sma", &p(&[("period", 5.0), ("period", 6.0)])),
        Err(IndicatorError::DuplicateParam { .. })
    ));
    assert!(matches!(
        build("macd", &p(&[("fast", 26.0), ("slow", 12.0)])),
        Err(IndicatorError::Inconsistent { .. })
    ));
    assert!(matches!(
        build("obv", &p(&[("period", 3.0)])),
        Err(IndicatorError::UnknownParam { .. })
    ));
    assert!(Sma::new(0).is_err());
    assert!(Macd::new(12, 12, 9).is_err());
    let err = build("rsi", &p(&[("period", 0.0)])).err().unwrap();
    assert_eq!(
        err.to_string(),
        "parameter period of rsi must lie in [2, 100000], got 0"
    );
}

// ---------------------------------------------------------------------------------------
// snapshots

/// Outputs as bit patterns, so comparisons are exact (no tolerance, -0.0 ≠ 0.0).
fn bits(v: Option<IndicatorValue>) -> Option<Vec<u64>> {
    v.map(|v| v.outputs().iter().map(|x| x.to_bits()).collect())
}

#[test]
fn restored_indicators_continue_bit_for_bit() {
    let bars = &series()[0];
    // Before the first bar, mid warm-up, just warmed up, inside the flat stretch, later.
    for cut in [0, 5, 40, 215, 700] {
        for spec in registry() {
            let mut original = build(spec.name, &[]).unwrap();
            for b in &bars[..cut] {
                original.update(b);
            }
            let bytes = postcard::to_stdvec(&original).unwrap();
            let mut restored: StreamingIndicator = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(restored.lookback(), original.lookback(), "{}", spec.name);
            let mut fresh = build(spec.name, &[]).unwrap();
            let mut differs_from_fresh = false;
            for (i, b) in bars[cut..].iter().enumerate() {
                let want = bits(original.update(b));
                assert_eq!(
                    bits(restored.update(b)),
                    want,
                    "{} cut at {cut}, bar {}",
                    spec.name,
                    cut + i
                );
                differs_from_fresh |= bits(fresh.update(b)) != want;
            }
            // The state carried something: a fresh indicator does not reproduce it (OBV and
            // VWAP carry running totals, the rest their windows and averages).
            assert!(
                cut == 0 || differs_from_fresh,
                "{} cut at {cut}: snapshot test cannot fail",
                spec.name
            );
        }
    }
}

#[test]
fn restored_rollup_keeps_its_open_buckets() {
    let minutes = random_bars(375, 9, 24_000.0, 10.0);
    for cut in [1, 7, 13, 200] {
        let mut original = Rollup::new(15).unwrap();
        for b in &minutes[..cut] {
            original.update(b).for_each(drop);
        }
        let bytes = postcard::to_stdvec(&original).unwrap();
        let mut restored: Rollup = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(restored.open_buckets(), original.open_buckets());
        for b in &minutes[cut..] {
            let want: Vec<Bar> = original.update(b).collect();
            let got: Vec<Bar> = restored.update(b).collect();
            assert_eq!(got, want, "cut at {cut}");
        }
    }
}

#[test]
fn damaged_window_state_is_rejected_not_trusted() {
    // An SMA(3) after two values: period 3, ring [1, 2, 0] with next = 2 and len = 2.
    let mut sma = Sma::new(3).unwrap();
    sma.next_value(1.0);
    sma.next_value(2.0);
    let good = postcard::to_stdvec(&StreamingIndicator::from(sma)).unwrap();
    assert!(postcard::from_bytes::<StreamingIndicator>(&good).is_ok());
    // Layout: variant, period, buf len, 3 × f64, next, len, sum. Point `next` past the end.
    let next_at = 1 + 1 + 1 + 3 * 8;
    assert_eq!(good[next_at], 2);
    let mut bad = good.clone();
    bad[next_at] = 3;
    assert!(postcard::from_bytes::<StreamingIndicator>(&bad).is_err());
    let mut bad = good;
    bad[next_at + 1] = 4; // len > capacity
    assert!(postcard::from_bytes::<StreamingIndicator>(&bad).is_err());
}
