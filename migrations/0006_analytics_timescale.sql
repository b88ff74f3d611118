-- The TimescaleDB layer for the tables of 0003 (strike_analytics, chain_analytics,
-- moneyness_points, indicator_values, late_ticks), and chain_summary_1m: one row per chain
-- (underlying, expiry) and minute, the chain as of the minute's last emission.
--
-- As in 0004, one schema for the analyst on both servers:
--   * plain PostgreSQL: chain_summary_1m is a view over chain_analytics bucketed with
--     date_bin, with an expression index (chain_analytics_minute_idx) so that a minute
--     range of one chain is an index condition; the tables stay plain.
--   * TimescaleDB: the five tables become hypertables with compression and retention, and
--     chain_summary_1m is a real-time continuous aggregate (time_bucket, last()) of the same
--     name and columns.
-- instrument_history stays a plain table: it is master data (a few thousand rows a year,
-- one per contract a token named), keyed by contract (instrument_token, live_until), not by
-- event time, and every analyst function joins it whole; there is nothing to chunk, compress
-- or expire. instruments, sink_offsets and schema_migrations are plain for the same reason.
--
-- Keys: TimescaleDB requires every unique index of a hypertable to contain its time
-- column. 0003 was written for this: strike_analytics (instrument_token, ts),
-- chain_analytics (underlying, expiry, ts), moneyness_points (underlying, expiry, bucket,
-- side, minute) and indicator_values (instrument_token, timeframe_minutes, indicator,
-- params, window_start) all end with it, and late_ticks has no unique key. Nothing changes.
--
-- When it happens:
--   * a database already on the TimescaleDB layer (ticks is a hypertable, i.e. 0004 enabled
--     it) whose five tables are still empty (a new database: 0004 ran a moment ago) gets the
--     layer here, so a fresh migrate on TimescaleDB ends with the whole layer;
--   * one that already holds rows in them is not converted implicitly (stages run
--     `strikeflow migrate` when they start, and moving a table's rows into chunks locks it
--     for as long as that takes): chain_summary_1m becomes a view, the runner reports the
--     database as convertible, and `strikeflow migrate --timescale` converts it;
--   * a plain database (or `--no-timescale`) gets the view and its index only;
--   * a database whose chain_summary_1m already is a continuous aggregate keeps it (this
--     text applied again, e.g. by psql, which records no schema_migrations).
-- `strikeflow migrate --timescale` calls strikeflow_enable_timescaledb(), which this
-- migration redefines to cover all seven tables (ticks and bars_1m as in 0004).
--
-- Row sizes, measured on PostgreSQL 15 (this project's local server) with 200,000 generated
-- rows per table shaped like the processor's output (pg_total_relation_size / rows; heap +
-- indexes):
--   strike_analytics 296 B (248 + 47: the chain index (underlying, expiry, ts) deduplicates
--     well because an emission stamps all its options with one ts), chain_analytics 318 B
--     (248 + 70), moneyness_points 211 B (126 + 85), indicator_values 212 B (126 + 86, a
--     typical outputs JSONB of 1-3 numbers), late_ticks 166 B (109 + 56).
-- Data rates: the design rate of 0004, 1,000 ticks/s over the NIFTY and BANKNIFTY chains for
-- a session of 22,500 s (09:15-15:30 IST = 03:45-10:00 UTC, inside one UTC day). The
-- processor emits on a 1 s event-time cadence (analytics/src/chain/engine.rs):
--   strike_analytics: one row per option per second in which it ticked, so at most one per
--     tick; `strikeflow bench process` on the simulated full market (828 instruments, 10
--     chains) gives 0.43 (856,733 rows for 2,000,000 ticks). At 0.43: 9.7 M rows = 2.9 GB a
--     session; at the bound of one per tick: 22.5 M rows = 6.7 GB.
--     -> 1-day chunks (one session each, as ticks). 0004's guide is ~25 % of memory for the
--     chunk being written, 6 GB here; a day stays below it up to ~900 strike rows/s
--     (~2,100 ticks/s at 0.43). Above that: set_chunk_time_interval('strike_analytics',
--     interval '6 hours') (chunks 00-06 and 06-12 UTC split a session 36 % / 64 %).
--   indicator_values: per instrument and closed one-minute bar, 13 indicators on 1, 3, 5
--     and 15-minute bars: 13 x (1 + 1/3 + 1/5 + 1/15) = 20.8 rows once warmed up. 828
--     instruments x 375 bars x 20.8 = 6.5 M rows = 1.4 GB a session; at 3,000 instruments
--     (0004's full chains) 23.4 M rows = 5.0 GB.
--     -> 1-day chunks.
--   chain_analytics: one row per chain per second, whether or not anything changed: 10
--     chains in the simulated market (the benchmark's 19,980 rows in ~2,000 s); assumed up
--     to 20 listed (NIFTY weeklies, monthlies and quarterlies, BANKNIFTY monthlies): 20 x
--     22,500 = 450,000 rows = 143 MB a session.
--     -> 7-day chunks (5 sessions, ~0.7 GB), as bars_1m.
--   moneyness_points: 11 buckets (ITM5..OTM5) x 2 sides = 22 rows per chain per minute: 20
--     chains x 375 x 22 = 165,000 rows = 35 MB a session.
--     -> 30-day chunks (~21 sessions, ~0.7 GB): fewer chunks for day-to-month series.
--   late_ticks: none from a healthy feed; a lagging one at 1 % of 1,000 ticks/s is 10/s =
--     225,000 rows = 37 MB a session.
--     -> 30-day chunks (~0.8 GB at that rate).
-- Chunk intervals apply when a table becomes a hypertable; set_chunk_time_interval changes
-- them for new chunks, and this migration leaves existing hypertables' intervals alone.
--
-- Compression (chunks older than compress_after, counted from the chunk's end):
--   strike_analytics, late_ticks: segment by instrument_token, order by ts DESC (one
--     option's history, as "the chain as of T" probes it: one option, latest row first).
--   chain_analytics: segment by the chain (underlying, expiry), order by ts DESC.
--   moneyness_points: segment by one series (underlying, expiry, bucket, side), order by
--     minute DESC: moneyness_series() reads exactly one segment.
--   indicator_values: segment by instrument_token, order by timeframe_minutes, indicator,
--     params, window_start DESC: one series lies in consecutive batches whose min/max
--     metadata lets a read of "RSI on 5-minute bars" skip the other 51 series. Segmenting by
--     the series instead would leave 15-minute series with 25 rows per daily chunk.
--   compress_after: 3 days for 1-day chunks (as ticks), 14 days for longer ones (as
--   bars_1m): recent sessions stay uncompressed for cheap re-upserts (a reprocessed
--   session); later upserts still work, into compressed chunks.
--
-- Retention (defaults; arguments of strikeflow_enable_timescaledb, see below):
--   strike_analytics 90 days and indicator_values 90 days (the per-instrument, per-second
--     or per-bar tables: 1.4-6.7 GB a session raw, as large as ticks, which also keep 90
--     days: the rows can be recomputed by replaying ticks for as long as the ticks exist),
--   chain_analytics 365 days (~36 GB raw at 20 chains; chain_summary_1m keeps the
--     per-minute picture after that), moneyness_points 730 days (as bars_1m; ~9 GB a year),
--   late_ticks 90 days (as ticks).
-- Retention counts from now(): a replayed recording older than that is dropped by the next
-- retention job.
--
-- chain_summary_1m: minute m's row is the chain's last emission in [m, m + 1 minute)
-- (last_ts says when it was), every chain_analytics value column as of that emission (a
-- NULL there stays NULL), and how many emissions the minute had. On TimescaleDB it is
-- real-time (materialized_only = false), refreshed every minute up to one minute before
-- now, looking back chain_analytics' retention minus 1 day: never as far as the retention,
-- since a refresh over a window whose chain_analytics chunks were dropped would delete the
-- summary rows (0004's rule for the bar rollups). So the summary outlives the 1-second rows
-- (a row is ~250 B: ~1.9 MB a session at 20 chains before indexes; it has no retention of
-- its own, like the bar rollups).

-- The hypertables of the TimescaleDB layer and their settings, in one place for the
-- conversion, the runner's report and the tests (the arithmetic is in the header above and
-- in 0004's for ticks and bars_1m).
CREATE OR REPLACE FUNCTION strikeflow_hypertables()
RETURNS TABLE (name text, time_column text, chunk_interval interval, segment_by text,
               order_by text, compress_after interval, retention interval)
LANGUAGE sql IMMUTABLE AS $fn$
    VALUES ('ticks', 'ts', interval '1 day', 'instrument_token', 'ts DESC',
            interval '3 days', interval '90 days'),
           ('bars_1m', 'window_start', interval '7 days', 'instrument_token',
            'window_start DESC', interval '14 days', interval '730 days'),
           ('strike_analytics', 'ts', interval '1 day', 'instrument_token', 'ts DESC',
            interval '3 days', interval '90 days'),
           ('chain_analytics', 'ts', interval '7 days', 'underlying, expiry', 'ts DESC',
            interval '14 days', interval '365 days'),
           ('moneyness_points', 'minute', interval '30 days', 'underlying, expiry, bucket, side',
            'minute DESC', interval '14 days', interval '730 days'),
           ('indicator_values', 'window_start', interval '1 day', 'instrument_token',
            'timeframe_minutes, indicator, params, window_start DESC', interval '3 days',
            interval '90 days'),
           ('late_ticks', 'ts', interval '30 days', 'instrument_token', 'ts DESC',
            interval '14 days', interval '90 days')
$fn$;

-- The one definition of chain_summary_1m, for the view and the continuous aggregate. The
-- last value of each column is the one at the greatest ts (a chain has one row per ts):
-- last() on TimescaleDB, the first element of an array ordered by ts descending otherwise
-- (both keep a NULL that is last).
CREATE OR REPLACE FUNCTION strikeflow_chain_summary_sql(timescale boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT format(
        $q$SELECT underlying,
       expiry,
       %1$s AS minute,
       max(ts) AS last_ts,
       count(*) AS emissions,
       %2$s
FROM chain_analytics
GROUP BY underlying, expiry, %1$s$q$,
        CASE WHEN timescale
             THEN $b$time_bucket(interval '1 minute', ts)$b$
             ELSE $b$date_bin(interval '1 minute', ts, timestamptz '2000-01-03 09:15:00+05:30')$b$
        END,
        (SELECT string_agg(CASE WHEN timescale
                                THEN format('last(%1$I, ts) AS %1$I', c)
                                ELSE format('(array_agg(%1$I ORDER BY ts DESC))[1] AS %1$I', c)
                           END, E',\n       ' ORDER BY n)
         FROM unnest(ARRAY['time_to_expiry', 'spot', 'future', 'parity_forward',
                           'reference_price', 'reference_kind', 'atm_strike', 'pcr_oi',
                           'pcr_volume', 'max_pain', 'atm_straddle', 'implied_move_pct',
                           'atm_iv', 'skew_25d', 'support', 'resistance', 'basis',
                           'annualised_carry', 'net_gex', 'total_ce_oi', 'total_pe_oi',
                           'ce_oi_change_prev_close', 'pe_oi_change_prev_close'])
              WITH ORDINALITY AS u (c, n)))
$fn$;

-- The retention a hypertable has now (NULL without a policy). plpgsql, so that it can be
-- defined where timescaledb_information does not exist.
CREATE OR REPLACE FUNCTION strikeflow_retention_of(hypertable text) RETURNS interval
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
    kept interval;
BEGIN
    SELECT (config->>'drop_after')::interval INTO kept
    FROM timescaledb_information.jobs
    WHERE proc_name = 'policy_retention' AND hypertable_schema = current_schema()
      AND hypertable_name = strikeflow_retention_of.hypertable;
    RETURN kept;
END
$fn$;

-- 0004 defined strikeflow_enable_timescaledb(interval, interval). CREATE OR REPLACE with
-- more arguments would add a second function beside it (and make the runner's
-- `SELECT strikeflow_enable_timescaledb()` ambiguous), so the old one goes first; the new
-- one is CREATE OR REPLACE only so that this text can run twice. Calls with 0004's named or
-- positional arguments keep working.
DROP FUNCTION IF EXISTS strikeflow_enable_timescaledb(interval, interval);

-- Converts every table of strikeflow_hypertables() to a hypertable with compression and
-- retention, and the bar rollups and chain_summary_1m to continuous aggregates; safe to run
-- again. A NULL retention (the default) keeps the table's current retention policy, or adds
-- the default of strikeflow_hypertables() when it has none, so running it again (as every
-- `strikeflow migrate --timescale` does) never undoes a retention a DBA chose; pass a value
-- to change one. Locks each table while its rows move into chunks. Raises when TimescaleDB
-- cannot be loaded.
CREATE OR REPLACE FUNCTION strikeflow_enable_timescaledb(
    ticks_retention interval DEFAULT NULL,
    bars_retention interval DEFAULT NULL,
    strikes_retention interval DEFAULT NULL,
    chains_retention interval DEFAULT NULL,
    moneyness_retention interval DEFAULT NULL,
    indicators_retention interval DEFAULT NULL,
    late_ticks_retention interval DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    t record;
    r record;
    asked interval;
    bars_look_back interval;
    chains_look_back interval;
BEGIN
    CREATE EXTENSION IF NOT EXISTS timescaledb;
    -- Serves only the plain view of chain_summary_1m, which the continuous aggregate below
    -- replaces; every chunk would carry it for nothing.
    DROP INDEX IF EXISTS chain_analytics_minute_idx;

    FOR t IN SELECT * FROM strikeflow_hypertables() LOOP
        asked := CASE t.name
                     WHEN 'ticks' THEN ticks_retention
                     WHEN 'bars_1m' THEN bars_retention
                     WHEN 'strike_analytics' THEN strikes_retention
                     WHEN 'chain_analytics' THEN chains_retention
                     WHEN 'moneyness_points' THEN moneyness_retention
                     WHEN 'indicator_values' THEN indicators_retention
                     WHEN 'late_ticks' THEN late_ticks_retention
                 END;
        PERFORM create_hypertable(t.name::regclass, t.time_column::name,
                                  chunk_time_interval => t.chunk_interval,
                                  create_default_indexes => FALSE, if_not_exists => TRUE,
                                  migrate_data => TRUE);
        IF NOT (SELECT compression_enabled FROM timescaledb_information.hypertables
                WHERE hypertable_schema = current_schema() AND hypertable_name = t.name) THEN
            EXECUTE format('ALTER TABLE %I SET (timescaledb.compress, '
                           'timescaledb.compress_segmentby = %L, '
                           'timescaledb.compress_orderby = %L)',
                           t.name, t.segment_by, t.order_by);
        END IF;
        PERFORM add_compression_policy(t.name::regclass, compress_after => t.compress_after,
                                       if_not_exists => TRUE);
        IF asked IS NOT NULL OR strikeflow_retention_of(t.name) IS NULL THEN
            PERFORM remove_retention_policy(t.name::regclass, if_exists => TRUE);
            PERFORM add_retention_policy(t.name::regclass,
                                         drop_after => coalesce(asked, t.retention));
        END IF;
    END LOOP;

    -- Refresh windows from the retention now in force (see the header and 0004's).
    bars_look_back := strikeflow_retention_of('bars_1m') - interval '1 day';
    IF bars_look_back < interval '3 days' THEN
        RAISE EXCEPTION 'bars_1m retention % is too short: the 1-day aggregate needs at least 4 days',
            strikeflow_retention_of('bars_1m');
    END IF;
    chains_look_back := strikeflow_retention_of('chain_analytics') - interval '1 day';
    IF chains_look_back < interval '1 day' THEN
        RAISE EXCEPTION 'chain_analytics retention % is too short: chain_summary_1m needs at least 2 days',
            strikeflow_retention_of('chain_analytics');
    END IF;

    FOR r IN SELECT * FROM strikeflow_rollups() LOOP
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                       WHERE view_schema = current_schema() AND view_name = r.name) THEN
            EXECUTE format('DROP VIEW IF EXISTS %I', r.name);
            EXECUTE format('CREATE MATERIALIZED VIEW %I WITH (timescaledb.continuous, '
                           'timescaledb.materialized_only = false) AS %s WITH NO DATA',
                           r.name, strikeflow_rollup_sql(r.width, true));
        END IF;
        PERFORM remove_continuous_aggregate_policy(r.name::regclass, if_exists => TRUE);
        PERFORM add_continuous_aggregate_policy(r.name::regclass, start_offset => bars_look_back,
                                                end_offset => r.width,
                                                schedule_interval => r.schedule);
    END LOOP;

    IF NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                   WHERE view_schema = current_schema() AND view_name = 'chain_summary_1m') THEN
        -- The plain view of the same name (fails, naming the dependant, if another view was
        -- built on it).
        DROP VIEW IF EXISTS chain_summary_1m;
        EXECUTE format('CREATE MATERIALIZED VIEW chain_summary_1m WITH (timescaledb.continuous, '
                       'timescaledb.materialized_only = false) AS %s WITH NO DATA',
                       strikeflow_chain_summary_sql(true));
    END IF;
    PERFORM remove_continuous_aggregate_policy('chain_summary_1m', if_exists => TRUE);
    PERFORM add_continuous_aggregate_policy('chain_summary_1m', start_offset => chains_look_back,
                                            end_offset => interval '1 minute',
                                            schedule_interval => interval '1 minute');
END
$fn$;

DO $$
DECLARE
    layer boolean := false;
    summary_aggregate boolean := false;
    t record;
    plain boolean;
    has_rows boolean;
    waiting text[] := '{}';
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') THEN
        -- On the TimescaleDB layer: 0004 made ticks a hypertable (not under --no-timescale,
        -- which sets strikeflow.timescale = off for the run).
        IF coalesce(current_setting('strikeflow.timescale', true), '') <> 'off' THEN
            EXECUTE $q$SELECT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                                      WHERE hypertable_schema = current_schema()
                                        AND hypertable_name = 'ticks')$q$ INTO layer;
        END IF;
        -- Already converted (this text applied again to a converted database, e.g. by psql,
        -- which keeps no schema_migrations): a view must not replace the aggregate.
        EXECUTE $q$SELECT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                                  WHERE view_schema = current_schema()
                                    AND view_name = 'chain_summary_1m')$q$ INTO summary_aggregate;
    END IF;
    IF layer THEN
        FOR t IN SELECT name FROM strikeflow_hypertables() LOOP
            EXECUTE $q$SELECT NOT EXISTS (SELECT 1 FROM timescaledb_information.hypertables
                                          WHERE hypertable_schema = current_schema()
                                            AND hypertable_name = $1)$q$
                INTO plain USING t.name;
            IF plain THEN
                EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I)', t.name) INTO has_rows;
                IF has_rows THEN
                    waiting := waiting || t.name;
                END IF;
            END IF;
        END LOOP;
    END IF;
    IF layer AND cardinality(waiting) = 0 THEN
        PERFORM strikeflow_enable_timescaledb();
    ELSIF summary_aggregate THEN
        RAISE NOTICE 'chain_summary_1m is already a continuous aggregate: left as it is';
    ELSE
        IF layer THEN
            RAISE NOTICE '% hold rows: not converted now (it locks them while the rows move); '
                         'run strikeflow migrate --timescale', array_to_string(waiting, ', ');
        ELSE
            -- The view's minute filter, pushed below its GROUP BY, is a condition on this
            -- expression; without the index a day of one chain would read the chain's
            -- whole life. Small: 60 rows a minute share each key (deduplicated).
            CREATE INDEX IF NOT EXISTS chain_analytics_minute_idx ON chain_analytics
                (underlying, expiry, date_bin(interval '1 minute', ts, timestamptz '2000-01-03 09:15:00+05:30'));
        END IF;
        EXECUTE format('CREATE OR REPLACE VIEW chain_summary_1m AS %s',
                       strikeflow_chain_summary_sql(false));
    END IF;
END
$$;
