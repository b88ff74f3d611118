//! Known rows, inserted with SQL, that the tests read back through the API field by field.
//!
//! The market: Wednesday 2 December 2026 (and a little of the 1st), NIFTY with its index
//! `NIFTY 50`, the future `NIFTY26DECFUT` (29 Dec), the weekly chain of 8 Dec (strikes
//! 24500, 24600, 24700), the monthly chain of 29 Dec (24600) and an older weekly of
//! 24 Nov; BANKNIFTY with its index and future. Times are UTC: 03:45Z is the 09:15 IST open,
//! 04:30Z is 10:00 IST.

/// 2026-12-02 09:15 IST (the day's first one-minute bar of `NIFTY26DECFUT`).
pub(crate) const DAY2_OPEN: i64 = 1_796_183_100;
/// 2026-12-01 09:15 IST.
pub(crate) const DAY1_OPEN: i64 = DAY2_OPEN - 86_400;
/// 2026-12-02 04:30:00Z, 10:00 IST.
pub(crate) const T1: &str = "2026-12-02T04:30:00Z";

/// A bar as (start in unix seconds, open, high, low, close, volume, oi, ticks).
pub(crate) type Bar = (i64, f64, f64, f64, f64, i64, i64, i64);

/// `NIFTY26DECFUT` one-minute bar `i` of 2 Dec (0..10).
pub(crate) fn day2_bar(i: i64) -> Bar {
    let x = i as f64;
    (
        DAY2_OPEN + 60 * i,
        24_600.0 + x,
        24_605.0 + x,
        24_597.0 + x,
        24_602.0 + x,
        1_000 + 10 * i,
        500_000 + 100 * i,
        20 + i,
    )
}

/// `NIFTY26DECFUT` one-minute bar `i` of 1 Dec (0..3).
pub(crate) fn day1_bar(i: i64) -> Bar {
    let x = i as f64;
    (
        DAY1_OPEN + 60 * i,
        24_500.0 + x,
        24_505.0 + x,
        24_497.0 + x,
        24_502.0 + x,
        900 + 10 * i,
        490_000 + 100 * i,
        10 + i,
    )
}

/// One-minute bars rolled up as the rollup views do (first open, max high, min low, last
/// close and OI, summed volume and ticks), stamped `start`.
pub(crate) fn rollup(start: i64, bars: &[Bar]) -> Bar {
    let first = bars.first().expect("bars");
    let last = bars.last().expect("bars");
    (
        start,
        first.1,
        bars.iter().map(|b| b.2).fold(f64::MIN, f64::max),
        bars.iter().map(|b| b.3).fold(f64::MAX, f64::min),
        last.4,
        bars.iter().map(|b| b.5).sum(),
        last.6,
        bars.iter().map(|b| b.7).sum(),
    )
}

pub(crate) const ROWS: &str = r#"
WITH data (instrument_token, exchange_token, tradingsymbol, name, last_price, expiry, strike,
           tick_size, lot_size, instrument_type, segment, exchange) AS (VALUES
    (256265::bigint, 1001::bigint, 'NIFTY 50', 'NIFTY', 0::float8, NULL::date, 0::float8, 0::float8, 0, 'EQ', 'INDICES', 'NSE'),
    (260105, 1016, 'NIFTY BANK', 'BANKNIFTY', 0, NULL, 0, 0, 0, 'EQ', 'INDICES', 'NSE'),
    (9001, 35, 'NIFTY26DECFUT', 'NIFTY', 24600, '2026-12-29', 0, 0.05, 65, 'FUT', 'NFO-FUT', 'NFO'),
    (9002, 36, 'BANKNIFTY26DECFUT', 'BANKNIFTY', 52000, '2026-12-29', 0, 0.05, 30, 'FUT', 'NFO-FUT', 'NFO'),
    (9101, 41, 'NIFTY26D0824500CE', 'NIFTY', 150, '2026-12-08', 24500, 0.05, 65, 'CE', 'NFO-OPT', 'NFO'),
    (9102, 42, 'NIFTY26D0824500PE', 'NIFTY', 60, '2026-12-08', 24500, 0.05, 65, 'PE', 'NFO-OPT', 'NFO'),
    (9103, 43, 'NIFTY26D0824600CE', 'NIFTY', 100, '2026-12-08', 24600, 0.05, 65, 'CE', 'NFO-OPT', 'NFO'),
    (9104, 44, 'NIFTY26D0824600PE', 'NIFTY', 110, '2026-12-08', 24600, 0.05, 65, 'PE', 'NFO-OPT', 'NFO'),
    (9105, 45, 'NIFTY26D0824700CE', 'NIFTY', 65, '2026-12-08', 24700, 0.05, 65, 'CE', 'NFO-OPT', 'NFO'),
    (9106, 46, 'NIFTY26D0824700PE', 'NIFTY', 160, '2026-12-08', 24700, 0.05, 65, 'PE', 'NFO-OPT', 'NFO'),
    (9201, 51, 'NIFTY26DEC24600CE', 'NIFTY', 300, '2026-12-29', 24600, 0.05, 65, 'CE', 'NFO-OPT', 'NFO'),
    (9202, 52, 'NIFTY26DEC24600PE', 'NIFTY', 280, '2026-12-29', 24600, 0.05, 65, 'PE', 'NFO-OPT', 'NFO'),
    (9301, 61, 'NIFTY26N2424500CE', 'NIFTY', 200, '2026-11-24', 24500, 0.05, 75, 'CE', 'NFO-OPT', 'NFO')
), current AS (
    INSERT INTO instruments (instrument_token, exchange_token, tradingsymbol, name, last_price,
                             expiry, strike, tick_size, lot_size, instrument_type, segment,
                             exchange, updated_at)
    SELECT *, timestamptz '2026-12-01 12:00:00+00' FROM data
)
INSERT INTO instrument_history (instrument_token, exchange_token, tradingsymbol, name,
                                last_price, expiry, strike, tick_size, lot_size,
                                instrument_type, segment, exchange)
SELECT * FROM data;

INSERT INTO strike_analytics (ts, instrument_token, tradingsymbol, underlying, expiry, strike,
    option_type, ltp, ltp_change_prev_close, oi, oi_change_prev_close, oi_change_window, volume,
    bid, ask, iv, no_iv_reason, delta, gamma, theta, vega, rho, build_up, strike_pcr, gex)
VALUES
    ('2026-12-02 04:29:00+00', 9101, 'NIFTY26D0824500CE', 'NIFTY', '2026-12-08', 24500, 'CE', 150, 10, 100000, 5000, 2000, 1000, 149.5, 150.5, 0.15, NULL, 0.62, 0.0004, -12.5, 10.2, 3.1, 'LONG_BUILDUP', 2.0, 1200),
    ('2026-12-02 04:29:40+00', 9101, 'NIFTY26D0824500CE', 'NIFTY', '2026-12-08', 24500, 'CE', 152, 12, 104000, 9000, 6000, 1200, 151.5, 152.5, 0.151, NULL, 0.63, 0.0004, -12.6, 10.3, 3.2, 'LONG_BUILDUP', 1.92, 1250),
    ('2026-12-02 04:31:00+00', 9101, 'NIFTY26D0824500CE', 'NIFTY', '2026-12-08', 24500, 'CE', 155, 15, 110000, 15000, 8000, 1500, 154.5, 155.5, 0.152, NULL, 0.64, 0.0004, -12.7, 10.4, 3.3, 'LONG_BUILDUP', 1.8, 1300),
    ('2026-12-02 04:29:30+00', 9102, 'NIFTY26D0824500PE', 'NIFTY', '2026-12-08', 24500, 'PE', 60, -8, 200000, 20000, 5000, 3000, 59.5, 60.5, 0.16, NULL, -0.38, 0.0004, -11, 10, -2, 'SHORT_BUILDUP', 1.92, -1500),
    ('2026-12-02 04:30:00+00', 9103, 'NIFTY26D0824600CE', 'NIFTY', '2026-12-08', 24600, 'CE', 100, 5, 150000, NULL, NULL, 2500, 99.5, 100.5, 0.14, NULL, 0.52, 0.0005, -14, 11, 2.5, 'NEUTRAL', 1.1, 1800),
    ('2026-12-02 04:30:05+00', 9104, 'NIFTY26D0824600PE', 'NIFTY', '2026-12-08', 24600, 'PE', 110, NULL, 165000, 3000, -1000, 2700, 109.5, 110.5, NULL, 'NO_TWO_SIDED_MARKET', NULL, NULL, NULL, NULL, NULL, 'LONG_UNWINDING', 1.1, NULL),
    ('2026-12-02 04:31:10+00', 9105, 'NIFTY26D0824700CE', 'NIFTY', '2026-12-08', 24700, 'CE', 65, -3, 90000, 1000, 500, 800, 64.5, 65.5, 0.135, NULL, 0.4, 0.0004, -13, 10.5, 1.8, 'SHORT_BUILDUP', NULL, 900),
    ('2026-12-02 04:30:00+00', 9201, 'NIFTY26DEC24600CE', 'NIFTY', '2026-12-29', 24600, 'CE', 300, 20, 70000, 2000, 100, 400, 299, 301, 0.13, NULL, 0.55, 0.0002, -6, 25, 9, 'LONG_BUILDUP', 1.1, 700),
    ('2026-12-02 04:30:00+00', 9202, 'NIFTY26DEC24600PE', 'NIFTY', '2026-12-29', 24600, 'PE', 280, -10, 77000, 4000, 200, 450, 279, 281, 0.135, NULL, -0.45, 0.0002, -5.5, 24, -8, 'SHORT_BUILDUP', 1.1, -650),
    ('2026-11-20 05:00:00+00', 9301, 'NIFTY26N2424500CE', 'NIFTY', '2026-11-24', 24500, 'CE', 200, NULL, 50000, NULL, NULL, 100, 199, 201, 0.12, NULL, 0.5, 0.0006, -20, 8, 1, 'NEUTRAL', NULL, 500);

INSERT INTO chain_analytics (underlying, expiry, ts, minute_close, time_to_expiry, spot, future,
    parity_forward, reference_price, reference_kind, atm_strike, pcr_oi, pcr_volume, max_pain,
    atm_straddle, implied_move_pct, atm_iv, skew_25d, support, resistance, basis,
    annualised_carry, net_gex, total_ce_oi, total_pe_oi, ce_oi_change_prev_close,
    pe_oi_change_prev_close)
VALUES
    ('NIFTY', '2026-12-08', '2026-12-02 04:30:00+00', true, 0.0165, 24550.5, 24600, 24580, 24580, 'PARITY_FORWARD', 24600, 1.25, 0.9, 24500, 210.5, 0.86, 0.145, 0.012, 24500, 24700, 49.5, 0.07, 1500000, 300000, 375000, 15000, NULL),
    ('NIFTY', '2026-12-08', '2026-12-02 04:31:00+00', true, 0.0164, 24552, 24601, 24581, 24581, 'PARITY_FORWARD', 24600, 1.3, 0.95, 24600, 212, 0.87, 0.146, 0.011, 24500, 24700, 49, 0.069, 1600000, 310000, 403000, 25000, 30000),
    ('NIFTY', '2026-12-29', '2026-12-02 04:30:00+00', true, 0.074, 24550.5, 24600, NULL, 24600, 'FUTURE', 24600, 1.1, NULL, 24600, 580, 2.36, 0.13, NULL, 24600, 24600, 49.5, 0.0274, NULL, 70000, 77000, NULL, NULL),
    ('NIFTY', '2026-11-24', '2026-11-20 05:00:00+00', true, 0.011, 24400, NULL, NULL, 24400, 'SPOT', 24400, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 50000, 0, NULL, NULL);

INSERT INTO moneyness_points (underlying, expiry, minute, bucket, level, side,
    instrument_token, strike, ltp, iv, delta, oi, volume)
VALUES
    ('NIFTY', '2026-12-08', '2026-12-02 04:30:00+00', 'ATM', 0, 'CE', 9103, 24600, 100, 0.14, 0.52, 150000, 2500),
    ('NIFTY', '2026-12-08', '2026-12-02 04:30:00+00', 'ATM', 0, 'PE', 9104, 24600, 110, NULL, NULL, 165000, 2700),
    ('NIFTY', '2026-12-08', '2026-12-02 04:30:00+00', 'OTM1', 1, 'CE', 9105, 24700, 64, 0.136, 0.41, 89000, 700),
    ('NIFTY', '2026-12-08', '2026-12-02 04:30:00+00', 'OTM1', -1, 'PE', 9102, 24500, 60, 0.16, -0.38, 200000, 3000),
    ('NIFTY', '2026-12-08', '2026-12-02 04:31:00+00', 'ATM', 0, 'CE', 9103, 24600, 101, 0.141, 0.53, 151000, 2600),
    ('NIFTY', '2026-12-08', '2026-12-02 04:31:00+00', 'ATM', 0, 'PE', 9104, 24600, 109, 0.15, -0.47, 166000, 2800);

INSERT INTO bars_1m (instrument_token, window_start, window_end, open, high, low, close, volume,
                     oi, tick_count)
SELECT 9001, t, t + interval '1 minute', 24600 + i, 24605 + i, 24597 + i, 24602 + i,
       1000 + 10 * i, 500000 + 100 * i, 20 + i
FROM generate_series(0, 9) AS i,
     LATERAL (SELECT timestamptz '2026-12-02 03:45:00+00' + i * interval '1 minute' AS t) w
UNION ALL
SELECT 9001, t, t + interval '1 minute', 24500 + i, 24505 + i, 24497 + i, 24502 + i,
       900 + 10 * i, 490000 + 100 * i, 10 + i
FROM generate_series(0, 2) AS i,
     LATERAL (SELECT timestamptz '2026-12-01 03:45:00+00' + i * interval '1 minute' AS t) w
UNION ALL
SELECT 256265, timestamptz '2026-12-02 03:45:00+00', timestamptz '2026-12-02 03:46:00+00',
       24550, 24560, 24540, 24555, 0, 0, 60;

INSERT INTO indicator_values (instrument_token, timeframe_minutes, indicator, params,
                              window_start, outputs)
SELECT 9001, 1, 'rsi', '', t, jsonb_build_object('value', 50.5 + i)
FROM generate_series(0, 4) AS i,
     LATERAL (SELECT timestamptz '2026-12-02 03:50:00+00' + i * interval '1 minute' AS t) w
UNION ALL
SELECT 9001, 1, 'ema', 'period=9', t, jsonb_build_object('value', 24605.25 + i)
FROM generate_series(0, 4) AS i,
     LATERAL (SELECT timestamptz '2026-12-02 03:50:00+00' + i * interval '1 minute' AS t) w
UNION ALL
SELECT 9001, 1, 'ema', 'period=20', t, jsonb_build_object('value', 24600.75 + i)
FROM generate_series(0, 4) AS i,
     LATERAL (SELECT timestamptz '2026-12-02 03:50:00+00' + i * interval '1 minute' AS t) w
UNION ALL
SELECT 9001, 5, 'macd', '', timestamptz '2026-12-02 03:50:00+00',
       jsonb_build_object('macd', 1.5, 'signal', 1.25, 'hist', 0.25);
"#;
