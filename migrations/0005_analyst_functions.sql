-- The analyst interface: functions an analyst calls without knowing the table layout.
--
--   chain_at(underlying, expiry, at)                              the chain as of a moment
--   bars(symbol, timeframe, from_ts, to_ts)                       OHLCV + OI bars of a symbol
--   moneyness_series(underlying, expiry, bucket, from_ts, to_ts)  one bucket, both sides
--   indicator_series(symbol, indicator, timeframe, from_ts, to_ts) an indicator's values
--
-- Functions, not views: a view over the rollups (bars_5m, ...) would pin them, and
-- strikeflow_enable_timescaledb() replaces those views by continuous aggregates of the same
-- names (docs/migrations.md). A LANGUAGE sql function records no dependency on the
-- relations it reads, so these work on plain PostgreSQL and on TimescaleDB alike, before
-- and after a conversion. They are STABLE and not STRICT, so the planner inlines them into
-- the calling query: the literal arguments become constants, the timeframe picks one
-- rollup at plan time, and the instrument filter reaches bars_1m's primary key under the
-- rollup's GROUP BY.
--
-- Conventions: time ranges are half-open, [from_ts, to_ts), on the row's own time (bar
-- window_start, moneyness minute). Timeframes are text: '1m', '3m', '5m', '15m', '1h',
-- '1d' (as the bars_<timeframe> relations are named); anything else is an error naming the
-- accepted values. A symbol is a Kite tradingsymbol ('NIFTY26DECFUT', 'NIFTY 50'),
-- resolved through instrument_history, so bars of a token that was recycled after its
-- contract expired are attributed to the contract that was live on the bar's trading day
-- (IST), never to a later one.

-- The width of a timeframe name; raises for an unknown one. IMMUTABLE, so with a literal
-- argument it is evaluated once, while the calling query is planned.
CREATE OR REPLACE FUNCTION strikeflow_timeframe(timeframe text) RETURNS interval
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
    CASE timeframe
        WHEN '1m' THEN RETURN interval '1 minute';
        WHEN '3m' THEN RETURN interval '3 minutes';
        WHEN '5m' THEN RETURN interval '5 minutes';
        WHEN '15m' THEN RETURN interval '15 minutes';
        WHEN '1h' THEN RETURN interval '1 hour';
        WHEN '1d' THEN RETURN interval '1 day';
        ELSE
            RAISE EXCEPTION USING ERRCODE = '22023',
                MESSAGE = format('unknown timeframe %L', timeframe),
                HINT = 'use one of 1m, 3m, 5m, 15m, 1h, 1d';
    END CASE;
END
$fn$;

-- The contracts a tradingsymbol has named: each token with the trading days (IST) on which
-- it named this symbol, (after, until]. `after` is the token's previous contract's last
-- day (-infinity when it had none): a token is recycled only once its contract expired.
CREATE OR REPLACE FUNCTION strikeflow_symbol_contracts(symbol text)
RETURNS TABLE (instrument_token bigint, after date, until date)
LANGUAGE sql STABLE AS $fn$
    SELECT h.instrument_token,
           coalesce((SELECT max(p.live_until) FROM instrument_history p
                     WHERE p.instrument_token = h.instrument_token
                       AND p.live_until < h.live_until), '-infinity'::date),
           h.live_until
    FROM instrument_history h
    WHERE h.tradingsymbol = strikeflow_symbol_contracts.symbol
$fn$;

-- The tokens of strikeflow_symbol_contracts, as an array: a STABLE function call (not a
-- subquery) may be pushed below a rollup view's GROUP BY, so `instrument_token = ANY(...)`
-- becomes an index condition on bars_1m.
CREATE OR REPLACE FUNCTION strikeflow_symbol_tokens(symbol text) RETURNS bigint[]
LANGUAGE sql STABLE AS $fn$
    SELECT coalesce(array_agg(DISTINCT instrument_token), '{}')
    FROM strikeflow_symbol_contracts(symbol)
$fn$;

-- The chain of (underlying, expiry) as of `at`: one row per strike, the call's and the put's
-- latest strike_analytics row at or before `at` side by side (NULLs on a side that has no
-- row yet). An option is emitted only when its data changed, so its latest row is its
-- state at `at`; ce_ts/pe_ts say when that row was emitted. The chain's options come from
-- instrument_history, and each option's row is one probe of the primary key
-- (instrument_token, ts), however long the day.
--   oi_change        OI minus the previous session's closing OI (NULL without one)
--   oi_change_window OI minus the OI oi_window_minutes (default 15) earlier
CREATE OR REPLACE FUNCTION chain_at(underlying text, expiry date, at timestamptz)
RETURNS TABLE (
    strike double precision,
    ce_tradingsymbol text, ce_ltp double precision, ce_iv double precision,
    ce_delta double precision, ce_oi bigint, ce_oi_change bigint, ce_oi_change_window bigint,
    ce_volume bigint, ce_build_up text, ce_ts timestamptz,
    pe_tradingsymbol text, pe_ltp double precision, pe_iv double precision,
    pe_delta double precision, pe_oi bigint, pe_oi_change bigint, pe_oi_change_window bigint,
    pe_volume bigint, pe_build_up text, pe_ts timestamptz)
LANGUAGE sql STABLE AS $fn$
    WITH latest AS (
        SELECT s.*
        FROM (SELECT DISTINCT h.instrument_token FROM instrument_history h
              WHERE h.name = chain_at.underlying AND h.expiry = chain_at.expiry
                AND h.instrument_type IN ('CE', 'PE')) o
        CROSS JOIN LATERAL (
            SELECT a.* FROM strike_analytics a
            WHERE a.instrument_token = o.instrument_token AND a.ts <= chain_at.at
              AND a.underlying = chain_at.underlying AND a.expiry = chain_at.expiry
            ORDER BY a.ts DESC LIMIT 1) s
    )
    SELECT coalesce(c.strike, p.strike),
           c.tradingsymbol, c.ltp, c.iv, c.delta, c.oi, c.oi_change_prev_close,
           c.oi_change_window, c.volume, c.build_up, c.ts,
           p.tradingsymbol, p.ltp, p.iv, p.delta, p.oi, p.oi_change_prev_close,
           p.oi_change_window, p.volume, p.build_up, p.ts
    FROM (SELECT * FROM latest WHERE option_type = 'CE') c
    FULL JOIN (SELECT * FROM latest WHERE option_type = 'PE') p ON p.strike = c.strike
    ORDER BY 1
$fn$;

-- Bars of `symbol` on `timeframe` with window_start in [from_ts, to_ts): bars_1m or the
-- rollup of that name (views on plain PostgreSQL, continuous aggregates on TimescaleDB).
CREATE OR REPLACE FUNCTION bars(symbol text, timeframe text, from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (
    window_start timestamptz, window_end timestamptz, open double precision,
    high double precision, low double precision, close double precision, volume bigint,
    oi bigint, tick_count integer)
LANGUAGE sql STABLE AS $fn$
    WITH picked AS (
        SELECT b.* FROM bars_1m b
        WHERE strikeflow_timeframe(bars.timeframe) = interval '1 minute'
          AND b.instrument_token = ANY (strikeflow_symbol_tokens(bars.symbol))
          AND b.window_start >= bars.from_ts AND b.window_start < bars.to_ts
        UNION ALL
        SELECT b.* FROM bars_3m b
        WHERE strikeflow_timeframe(bars.timeframe) = interval '3 minutes'
          AND b.instrument_token = ANY (strikeflow_symbol_tokens(bars.symbol))
          AND b.window_start >= bars.from_ts AND b.window_start < bars.to_ts
        UNION ALL
        SELECT b.* FROM bars_5m b
        WHERE strikeflow_timeframe(bars.timeframe) = interval '5 minutes'
          AND b.instrument_token = ANY (strikeflow_symbol_tokens(bars.symbol))
          AND b.window_start >= bars.from_ts AND b.window_start < bars.to_ts
        UNION ALL
        SELECT b.* FROM bars_15m b
        WHERE strikeflow_timeframe(bars.timeframe) = interval '15 minutes'
          AND b.instrument_token = ANY (strikeflow_symbol_tokens(bars.symbol))
          AND b.window_start >= bars.from_ts AND b.window_start < bars.to_ts
        UNION ALL
        SELECT b.* FROM bars_1h b
        WHERE strikeflow_timeframe(bars.timeframe) = interval '1 hour'
          AND b.instrument_token = ANY (strikeflow_symbol_tokens(bars.symbol))
          AND b.window_start >= bars.from_ts AND b.window_start < bars.to_ts
        UNION ALL
        SELECT b.* FROM bars_1d b
        WHERE strikeflow_timeframe(bars.timeframe) = interval '1 day'
          AND b.instrument_token = ANY (strikeflow_symbol_tokens(bars.symbol))
          AND b.window_start >= bars.from_ts AND b.window_start < bars.to_ts
    )
    SELECT b.window_start, b.window_end, b.open, b.high, b.low, b.close, b.volume, b.oi,
           b.tick_count
    FROM picked b
    JOIN strikeflow_symbol_contracts(bars.symbol) c
      ON c.instrument_token = b.instrument_token
     AND (b.window_start AT TIME ZONE 'Asia/Kolkata')::date > c.after
     AND (b.window_start AT TIME ZONE 'Asia/Kolkata')::date <= c.until
    ORDER BY b.window_start
$fn$;

-- The options that occupied `bucket` ('ATM', 'ITM1', 'OTM2', ...) of one chain at each
-- minute close with minute in [from_ts, to_ts), both sides (filter on side for one), in
-- minute then side order. The bucket is from each side's point of view: OTM1 CE is a strike
-- above the ATM, OTM1 PE one below.
CREATE OR REPLACE FUNCTION moneyness_series(underlying text, expiry date, bucket text,
                                            from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (
    minute timestamptz, side text, level integer, strike double precision,
    instrument_token bigint, ltp double precision, iv double precision,
    delta double precision, oi bigint, volume bigint)
LANGUAGE sql STABLE AS $fn$
    SELECT m.minute, m.side, m.level, m.strike, m.instrument_token, m.ltp, m.iv, m.delta,
           m.oi, m.volume
    FROM moneyness_points m
    WHERE m.underlying = moneyness_series.underlying AND m.expiry = moneyness_series.expiry
      AND m.bucket = moneyness_series.bucket
      AND m.minute >= moneyness_series.from_ts AND m.minute < moneyness_series.to_ts
    ORDER BY m.minute, m.side
$fn$;

-- The values of `indicator` (registry name: 'rsi', 'macd', 'ema', ...) on `symbol`'s bars of
-- `timeframe` ('1m', '3m', '5m', '15m': the timeframes the processors run indicators on)
-- with window_start in [from_ts, to_ts). One row per bar and parameter set (params such as
-- 'period=14'; EMA runs with several periods); outputs as published, e.g. {"value": 61.2}
-- for RSI (single-output indicators name their output value), read with
-- (outputs->>'value')::float8.
CREATE OR REPLACE FUNCTION indicator_series(symbol text, indicator text, timeframe text,
                                            from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (window_start timestamptz, params text, outputs jsonb)
LANGUAGE sql STABLE AS $fn$
    SELECT v.window_start, v.params, v.outputs
    FROM strikeflow_symbol_contracts(indicator_series.symbol) c
    JOIN indicator_values v
      ON v.instrument_token = c.instrument_token
     AND v.timeframe_minutes = (extract(epoch FROM strikeflow_timeframe(indicator_series.timeframe)) / 60)::integer
     AND v.indicator = indicator_series.indicator
     AND v.window_start >= indicator_series.from_ts AND v.window_start < indicator_series.to_ts
     AND (v.window_start AT TIME ZONE 'Asia/Kolkata')::date > c.after
     AND (v.window_start AT TIME ZONE 'Asia/Kolkata')::date <= c.until
    ORDER BY v.window_start, v.params
$fn$;
