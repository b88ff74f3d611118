-- Tables for every processor output topic and the instrument master's history, so analysts
-- answer chain questions (PCR and max pain through a day, the IV smile at a minute, OI
-- build-up by strike, straddle decay, 25-delta skew, basis, RSI on 5-minute bars, top OI
-- changes) with plain SQL instead of reading Kafka.
--
-- Plain PostgreSQL only: this file must run unchanged on a server with or without
-- TimescaleDB. Hypertables, compression and retention for these tables come in a later
-- migration; every unique key below therefore already contains the time column, which
-- TimescaleDB requires of a hypertable's unique indexes.
--
-- Conventions (shared with ticks and bars_1m):
-- * times are timestamptz (the Avro fields are UTC microseconds; timestamptz keeps micros
--   exactly); expiries are date.
-- * Avro enums are text with a CHECK listing the wire symbols (CE/PE, LONG_BUILDUP, ...): they
--   read naturally in SQL, and a new symbol is one ALTER of a constraint, not an ALTER TYPE.
-- * Avro ["null", T] unions are nullable columns; nothing else is nullable.
-- * A table with a natural key is written by upsert (COPY into a session temp table, then
--   INSERT ... ON CONFLICT DO UPDATE): the processors publish exactly once, but a record
--   can legitimately come again with the same key — an operator reprocessing a session after
--   a fix, a processor restart around a newly listed instrument (docs/exactly-once.md), the
--   same session replayed under new topics — and the table must then hold the latest value,
--   once. Tables without a natural key (late_ticks, like ticks) are written by plain COPY;
--   the sink's offsets, stored in the same transaction, keep them exactly once.

-- strikes.v1 (strikeflow.StrikeAnalytics): one row per option per emission. An option is
-- emitted only at the cadence boundaries (every event second by default) where its market
-- data changed, so "the chain as of T" is each option's latest row at or before T.
--
-- Key (instrument_token, ts): the Kafka record's identity (one option, one emission instant);
-- narrow (16 bytes) on the widest, busiest table, and it is the index for one option's
-- history and for "latest row at or before T" per option (a LATERAL ... ORDER BY ts DESC
-- LIMIT 1 over the chain's options). A recycled token cannot collide: at one instant a token
-- means one contract.
-- Index (underlying, expiry, ts): every chain-wide question — the smile at a minute
-- (DISTINCT ON (strike, option_type) over a short window before T), OI build-up by strike over
-- an interval, the top OI changes at a minute — is a range of one chain's timeline.
CREATE TABLE IF NOT EXISTS strike_analytics (
    ts                    timestamptz NOT NULL,
    instrument_token      bigint NOT NULL,
    tradingsymbol         text NOT NULL,
    underlying            text NOT NULL,
    expiry                date NOT NULL,
    strike                double precision NOT NULL,
    option_type           text NOT NULL CHECK (option_type IN ('CE', 'PE')),
    ltp                   double precision NOT NULL,
    ltp_change_prev_close double precision,
    oi                    bigint NOT NULL,
    oi_change_prev_close  bigint,
    oi_change_window      bigint,
    volume                bigint NOT NULL,
    bid                   double precision NOT NULL,
    ask                   double precision NOT NULL,
    iv                    double precision,
    no_iv_reason          text CHECK (no_iv_reason IN ('BELOW_INTRINSIC', 'ABOVE_MAXIMUM',
                              'NO_TWO_SIDED_MARKET', 'EXPIRED', 'INVALID_INPUT', 'NO_UNDERLYING')),
    delta                 double precision,
    gamma                 double precision,
    theta                 double precision,
    vega                  double precision,
    rho                   double precision,
    build_up              text NOT NULL CHECK (build_up IN ('LONG_BUILDUP', 'SHORT_BUILDUP',
                              'SHORT_COVERING', 'LONG_UNWINDING', 'NEUTRAL')),
    strike_pcr            double precision,
    gex                   double precision,
    PRIMARY KEY (instrument_token, ts)
);
CREATE INDEX IF NOT EXISTS strike_analytics_chain_ts_idx
    ON strike_analytics (underlying, expiry, ts);

-- chains.v1 (strikeflow.ChainAnalytics): one row per chain per emission (every event second
-- by default; minute_close marks the first emission of each minute, for per-minute series).
--
-- Key (underlying, expiry, ts): the record's identity, and every chain question (PCR and max
-- pain through a day, straddle decay, 25-delta skew, basis and carry) is a time range of one
-- chain, so the key is the only index needed.
CREATE TABLE IF NOT EXISTS chain_analytics (
    underlying              text NOT NULL,
    expiry                  date NOT NULL,
    ts                      timestamptz NOT NULL,
    minute_close            boolean NOT NULL,
    time_to_expiry          double precision NOT NULL,
    spot                    double precision,
    future                  double precision,
    parity_forward          double precision,
    reference_price         double precision NOT NULL,
    reference_kind          text NOT NULL CHECK (reference_kind IN ('SPOT', 'FUTURE', 'PARITY_FORWARD')),
    atm_strike              double precision NOT NULL,
    pcr_oi                  double precision,
    pcr_volume              double precision,
    max_pain                double precision,
    atm_straddle            double precision,
    implied_move_pct        double precision,
    atm_iv                  double precision,
    skew_25d                double precision,
    support                 double precision,
    resistance              double precision,
    basis                   double precision,
    annualised_carry        double precision,
    net_gex                 double precision,
    total_ce_oi             bigint NOT NULL,
    total_pe_oi             bigint NOT NULL,
    ce_oi_change_prev_close bigint,
    pe_oi_change_prev_close bigint,
    PRIMARY KEY (underlying, expiry, ts)
);

-- moneyness.v1 (strikeflow.MoneynessPoint): the option occupying one bucket (ATM, ITMn,
-- OTMn) on one side of one chain at each minute close.
--
-- Key (underlying, expiry, bucket, side, minute): a moneyness series ("NIFTY weekly OTM1 CE
-- through the day") is exactly this prefix plus a minute range. bucket and side together name
-- the series; level is the same information signed and is kept as a column.
CREATE TABLE IF NOT EXISTS moneyness_points (
    underlying       text NOT NULL,
    expiry           date NOT NULL,
    minute           timestamptz NOT NULL,
    bucket           text NOT NULL,
    level            integer NOT NULL,
    side             text NOT NULL CHECK (side IN ('CE', 'PE')),
    instrument_token bigint NOT NULL,
    strike           double precision NOT NULL,
    ltp              double precision NOT NULL,
    iv               double precision,
    delta            double precision,
    oi               bigint NOT NULL,
    volume           bigint NOT NULL,
    PRIMARY KEY (underlying, expiry, bucket, side, minute)
);

-- indicators.v1 (strikeflow.IndicatorPoint): one row per (instrument, timeframe, bar,
-- indicator, params) with the outputs as JSONB ({"rsi": 61.2}, {"macd": .., "signal": ..,
-- "hist": ..}), rather than one row per output value.
--
-- Why: a row is one Kafka record, so the upsert key is the record's identity; multi-output
-- indicators (MACD, Bollinger, Stochastic, ADX, Supertrend) stay on one row and need no pivot
-- to chart line, signal and histogram together, while a single output is one operator away
-- ((outputs->>'rsi')::float8). Storage: one row per value would repeat the 23-byte tuple
-- header, the five key columns and an index entry for every output (about 1.6 outputs per
-- record on average, 3 for MACD and Bollinger), which costs more than JSONB's per-key bytes.
-- Adding an indicator or an output needs no migration. Values are written as JSON numbers in
-- their shortest round-trip form, so (outputs->>'x')::float8 gives back the published double
-- exactly; the sink dead-letters a record with a non-finite output (JSON has no NaN).
--
-- Key (instrument_token, timeframe_minutes, indicator, params, window_start): "RSI(14) on
-- 5-minute bars of one instrument over a week" is this prefix plus a window_start range.
CREATE TABLE IF NOT EXISTS indicator_values (
    instrument_token  bigint NOT NULL,
    timeframe_minutes integer NOT NULL,
    indicator         text NOT NULL,
    params            text NOT NULL,
    window_start      timestamptz NOT NULL,
    outputs           jsonb NOT NULL,
    PRIMARY KEY (instrument_token, timeframe_minutes, indicator, params, window_start)
);

-- ticks.late.v1: ticks that arrived after their one-minute bar had closed (so no bar counts
-- them). Same columns as ticks. No natural key — two identical ticks are two ticks — so plain
-- COPY; the sink's offsets keep it exactly once.
CREATE TABLE IF NOT EXISTS late_ticks (
    ts               timestamptz NOT NULL,
    instrument_token bigint NOT NULL,
    ltp              double precision NOT NULL,
    last_qty         bigint NOT NULL,
    volume           bigint NOT NULL,
    oi               bigint NOT NULL,
    bid              double precision NOT NULL,
    bid_qty          bigint NOT NULL,
    ask              double precision NOT NULL,
    ask_qty          bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS late_ticks_instrument_ts_idx ON late_ticks (instrument_token, ts);
CREATE INDEX IF NOT EXISTS late_ticks_ts_idx ON late_ticks (ts);

-- The instrument master over time: one row per contract a token has named. instruments keeps
-- one row per token (the latest definition), and instruments.v1 is compacted by token, so
-- once an expired contract's token is recycled its definition would otherwise be gone and old
-- ticks, bars and indicators (which carry only the token) would join to the wrong contract.
--
-- Key (instrument_token, live_until), live_until = expiry (or 'infinity' for the spot index,
-- whose expiry is NULL as in instruments). Why the expiry and not a valid_from date: the
-- Kite master carries no listing date, and the time a definition reached Kafka says nothing
-- about the trading day of a replayed recording; a token is recycled only after its contract
-- expired, so the contract a token named on day D is the one with the smallest
-- live_until >= D — derivable from the data itself, for any replayed past:
--   SELECT * FROM instrument_history
--   WHERE instrument_token = $1 AND live_until >= $2::date ORDER BY live_until LIMIT 1;
-- (the day is the trading day in IST: (ts AT TIME ZONE 'Asia/Kolkata')::date). Changes to a
-- live contract (a lot-size revision, a new last_price) update its row in place: the
-- history tells contracts apart, not amendments within one contract.
CREATE TABLE IF NOT EXISTS instrument_history (
    instrument_token bigint NOT NULL,
    expiry           date,
    live_until       date NOT NULL GENERATED ALWAYS AS (coalesce(expiry, 'infinity'::date)) STORED,
    exchange_token   bigint NOT NULL,
    tradingsymbol    text NOT NULL,
    name             text NOT NULL,
    last_price       double precision NOT NULL,
    strike           double precision NOT NULL,
    tick_size        double precision NOT NULL,
    lot_size         integer NOT NULL,
    instrument_type  text NOT NULL CHECK (instrument_type IN ('EQ', 'FUT', 'CE', 'PE')),
    segment          text NOT NULL,
    exchange         text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instrument_token, live_until)
);
CREATE INDEX IF NOT EXISTS instrument_history_symbol_idx
    ON instrument_history (tradingsymbol, live_until);
CREATE INDEX IF NOT EXISTS instrument_history_chain_idx ON instrument_history (name, expiry);
