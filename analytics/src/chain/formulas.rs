//! Pure chain-metric formulas, written once so the engine and the tests share them. All of
//! them are O(strikes) and allocation-free; none returns a NaN (absent values are `None`).

use strikeflow_schemas::{BuildUp, OptionSide};

/// Open interest of both sides at one strike: the input of [`max_pain`].
///
/// Exists so the max-pain formula can be tested on its own with the brief's vector.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StrikeOi {
    /// Strike in rupees.
    pub strike: f64,
    /// Call open interest at the strike.
    pub ce_oi: i64,
    /// Put open interest at the strike.
    pub pe_oi: i64,
}

/// The max-pain strike: the listed strike `S` minimising
/// `Σ_K CE_OI(K)·max(0, S−K) + PE_OI(K)·max(0, K−S)` (the total payout option writers owe at
/// expiry if the underlying settles at `S`).
///
/// `rows` must be sorted by ascending strike. Computed in one pass with running sums (O(n), not
/// O(n²)). Ties go to the lower strike. `None` when the chain has no open interest at all.
///
/// Exists because max pain is a standard option-chain statistic traders watch near expiry.
pub fn max_pain(rows: &[StrikeOi]) -> Option<f64> {
    let (mut pe_rest, mut pe_k_rest) = (0.0_f64, 0.0_f64);
    let mut any_oi = false;
    for r in rows {
        pe_rest += r.pe_oi as f64;
        pe_k_rest += r.pe_oi as f64 * r.strike;
        any_oi |= r.ce_oi != 0 || r.pe_oi != 0;
    }
    if !any_oi {
        return None;
    }
    // Calls below S pay S−K: S·Σce − Σce·K over K < S. Puts above S pay K−S: Σpe·K − S·Σpe.
    let (mut ce_below, mut ce_k_below) = (0.0_f64, 0.0_f64);
    let mut best: Option<(f64, f64)> = None;
    for r in rows {
        pe_rest -= r.pe_oi as f64;
        pe_k_rest -= r.pe_oi as f64 * r.strike;
        let s = r.strike;
        let pain = (s * ce_below - ce_k_below) + (pe_k_rest - s * pe_rest);
        if best.is_none_or(|(_, p)| pain < p) {
            best = Some((s, pain));
        }
        ce_below += r.ce_oi as f64;
        ce_k_below += r.ce_oi as f64 * s;
    }
    best.map(|(s, _)| s)
}

/// The OI build-up class of a price change and an OI change: price ↑ OI ↑ long build-up,
/// price ↓ OI ↑ short build-up, price ↑ OI ↓ short covering, price ↓ OI ↓ long unwinding,
/// and neutral when either change is zero (or not finite).
///
/// Exists so the classification is one tested function.
pub fn build_up(price_change: f64, oi_change: i64) -> BuildUp {
    if !price_change.is_finite() || price_change == 0.0 || oi_change == 0 {
        return BuildUp::Neutral;
    }
    match (price_change > 0.0, oi_change > 0) {
        (true, true) => BuildUp::LongBuildup,
        (false, true) => BuildUp::ShortBuildup,
        (true, false) => BuildUp::ShortCovering,
        (false, false) => BuildUp::LongUnwinding,
    }
}

/// Bucket name of moneyness `level` (`(K − ATM)/step`) for one side: `ATM` at 0; calls are
/// in the money below the ATM strike (`ITMn` for level −n) and puts above it (`ITMn` for +n).
///
/// Exists so a moneyness series ("OTM1 CE") is named the same way everywhere.
pub fn moneyness_bucket(side: OptionSide, level: i32) -> String {
    let itm = match side {
        OptionSide::CE => level < 0,
        OptionSide::PE => level > 0,
    };
    match level {
        0 => "ATM".to_owned(),
        l if itm => format!("ITM{}", l.unsigned_abs()),
        l => format!("OTM{}", l.unsigned_abs()),
    }
}

/// IV at `target` delta, interpolated linearly in delta between the first pair of consecutive
/// `(delta, iv)` points that brackets it; `points` are in strike order (delta is monotone in
/// strike). `None` when no pair brackets the target (no extrapolation).
///
/// Exists for the 25-delta skew: listed strikes rarely sit exactly at ±0.25 delta.
pub fn iv_at_delta(points: &[(f64, f64)], target: f64) -> Option<f64> {
    for pair in points.windows(2) {
        let ((d0, v0), (d1, v1)) = (pair[0], pair[1]);
        if (d0 - target) * (d1 - target) > 0.0 {
            continue;
        }
        if d1 == d0 {
            return Some(0.5 * (v0 + v1));
        }
        let w = (target - d0) / (d1 - d0);
        let iv = v0 + w * (v1 - v0);
        return iv.is_finite().then_some(iv);
    }
    match points {
        [(d, v)] if *d == target => Some(*v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_pain_matches_the_brief_vector() {
        let rows = [
            StrikeOi {
                strike: 7700.0,
                ce_oi: 1_823_400,
                pe_oi: 5_783_025,
            },
            StrikeOi {
                strike: 7800.0,
                ce_oi: 3_448_575,
                pe_oi: 4_864_125,
            },
            StrikeOi {
                strike: 7900.0,
                ce_oi: 5_367_450,
                pe_oi: 2_559_375,
            },
        ];
        assert_eq!(max_pain(&rows), Some(7800.0));
    }

    #[test]
    fn max_pain_agrees_with_brute_force() {
        let rows: Vec<StrikeOi> = (0..30)
            .map(|i| StrikeOi {
                strike: 20_000.0 + 50.0 * f64::from(i),
                ce_oi: i64::from((i * 7919) % 101) * 1000,
                pe_oi: i64::from((i * 104_729) % 97) * 1000,
            })
            .collect();
        let brute = rows
            .iter()
            .map(|s| {
                let pain: f64 = rows
                    .iter()
                    .map(|k| {
                        k.ce_oi as f64 * (s.strike - k.strike).max(0.0)
                            + k.pe_oi as f64 * (k.strike - s.strike).max(0.0)
                    })
                    .sum();
                (s.strike, pain)
            })
            .fold(None::<(f64, f64)>, |best, (s, p)| match best {
                Some((_, bp)) if bp <= p => best,
                _ => Some((s, p)),
            })
            .map(|(s, _)| s);
        assert_eq!(max_pain(&rows), brute);
        assert_eq!(max_pain(&[]), None);
    }

    #[test]
    fn build_up_classes() {
        assert_eq!(build_up(1.0, 10), BuildUp::LongBuildup);
        assert_eq!(build_up(-1.0, 10), BuildUp::ShortBuildup);
        assert_eq!(build_up(1.0, -10), BuildUp::ShortCovering);
        assert_eq!(build_up(-1.0, -10), BuildUp::LongUnwinding);
        assert_eq!(build_up(0.0, 10), BuildUp::Neutral);
        assert_eq!(build_up(1.0, 0), BuildUp::Neutral);
        assert_eq!(build_up(f64::NAN, 5), BuildUp::Neutral);
    }

    #[test]
    fn buckets() {
        assert_eq!(moneyness_bucket(OptionSide::CE, 0), "ATM");
        assert_eq!(moneyness_bucket(OptionSide::CE, -2), "ITM2");
        assert_eq!(moneyness_bucket(OptionSide::CE, 3), "OTM3");
        assert_eq!(moneyness_bucket(OptionSide::PE, 2), "ITM2");
        assert_eq!(moneyness_bucket(OptionSide::PE, -1), "OTM1");
    }

    #[test]
    fn delta_interpolation() {
        let calls = [(0.8, 0.10), (0.5, 0.12), (0.3, 0.14), (0.2, 0.16)];
        let iv = iv_at_delta(&calls, 0.25).expect("bracketed");
        assert!((iv - 0.15).abs() < 1e-12);
        assert_eq!(iv_at_delta(&calls, 0.1), None);
        assert_eq!(iv_at_delta(&[], 0.25), None);
        assert_eq!(iv_at_delta(&[(0.25, 0.2)], 0.25), Some(0.2));
    }
}
