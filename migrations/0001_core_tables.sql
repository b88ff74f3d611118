-- Core tables: the instrument master, raw ticks, one-minute bars, and the sink's consumed
-- offsets (written in the same transaction as the rows they produced).

CREATE TABLE IF NOT EXISTS instruments (
    instrument_token bigint PRIMARY KEY,
    exchange_token   bigint NOT NULL,
    tradingsymbol    text NOT NULL,
    name             text NOT NULL,
    last_price       double precision NOT NULL,
    expiry           date,
    strike           double precision NOT NULL,
    tick_size        double precision NOT NULL,
    lot_size         integer NOT NULL,
    instrument_type  text NOT NULL,
    segment          text NOT NULL,
    exchange         text NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS instruments_tradingsymbol_idx ON instruments (tradingsymbol);
CREATE INDEX IF NOT EXISTS instruments_chain_idx ON instruments (name, expiry);

CREATE TABLE IF NOT EXISTS ticks (
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
CREATE INDEX IF NOT EXISTS ticks_ts_idx ON ticks (ts DESC);
CREATE INDEX IF NOT EXISTS ticks_instrument_ts_idx ON ticks (instrument_token, ts DESC);

CREATE TABLE IF NOT EXISTS bars_1m (
    instrument_token bigint NOT NULL,
    window_start     timestamptz NOT NULL,
    window_end       timestamptz NOT NULL,
    open             double precision NOT NULL,
    high             double precision NOT NULL,
    low              double precision NOT NULL,
    close            double precision NOT NULL,
    volume           bigint NOT NULL,
    oi               bigint NOT NULL,
    tick_count       integer NOT NULL,
    PRIMARY KEY (instrument_token, window_start)
);
CREATE INDEX IF NOT EXISTS bars_1m_window_start_idx ON bars_1m (window_start DESC);

CREATE TABLE IF NOT EXISTS sink_offsets (
    consumer    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, topic, partition)
);
