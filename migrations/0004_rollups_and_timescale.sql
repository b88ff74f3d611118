-- Bars of 3 minutes to 1 day from bars_1m, and the TimescaleDB layer for ticks and bars_1m.
--
-- One schema for the analyst on both servers: the relations bars_3m, bars_5m, bars_15m,
-- bars_1h and bars_1d always exist, with the columns of bars_1m.
--   * plain PostgreSQL: views over bars_1m, bucketed with date_bin;
--   * TimescaleDB: continuous aggregates of the same names (time_bucket, first/last),
--     real-time (materialized_only = false), so they also show the minutes not yet
--     materialized, as the views do.
-- Every bucket is aligned to the NSE open, 09:15 IST (origin 2000-01-03 09:15+05:30, a
-- Monday): 3m/5m/15m buckets fall on the usual grid, hourly bars run 09:15-10:15 ... 15:15,
-- and a day bar runs from 09:15 IST to 09:15 IST the next day, so the whole session
-- (09:15-15:30) is one bar labelled with its open.
--
-- Detection: strikeflow_extension_status('timescaledb') says 'installed <version>',
-- 'loadable' (available and listed in shared_preload_libraries, or, when this role may not
-- read that setting, a CREATE EXTENSION probe that is rolled back succeeded), 'not
-- available', or 'not loadable: <why>'. Available is not enough: TimescaleDB refuses
-- CREATE EXTENSION unless its library is preloaded. This migration enables the layer when
-- the extension is installed or loadable (unless `strikeflow migrate --no-timescale` asked
-- for plain tables); otherwise the views stay and nothing fails.
-- A database that gains TimescaleDB later is converted by `strikeflow migrate --timescale`,
-- which calls strikeflow_enable_timescaledb() below (idempotent; it replaces the views by
-- continuous aggregates and moves the existing rows into chunks).
--
-- Chunk intervals, from the data rate (sizes measured on PostgreSQL 15 with 10^6 rows):
--   ticks: a row with its two indexes takes ~202 B (109 B heap, 93 B indexes). At the
--     design rate of 1,000 ticks/s across the NIFTY and BANKNIFTY chains (the processor
--     benchmark's "busy but ordinary" rate) a session of 6 h 15 min = 22,500 s is
--     22.5 M rows = ~4.5 GB. One session is one 1-day chunk (09:15-15:30 IST is
--     03:45-10:00 UTC, inside one UTC day), and 4.5 GB is below the ~25 % of memory
--     TimescaleDB advises for the chunk being written (6 GB on this 24 GB machine).
--     Above ~1,300 ticks/s sustained a day outgrows that: use
--     SELECT set_chunk_time_interval('ticks', interval '2 hours') (applies to new chunks).
--   bars_1m: ~161 B per row with its indexes. Full chains are ~3,000 instruments x 375
--     bars a session = 1.1 M rows = ~180 MB a session; 7-day chunks (5 sessions) are
--     ~0.9 GB: few enough chunks for multi-month queries, small enough to compress and
--     drop by week.
-- Compression: segment by instrument_token (every query filters or groups by instrument),
-- order by time descending (latest first). Policies: ticks chunks compress once older than
-- 3 days, bars_1m chunks once older than 14 days (a whole 7-day chunk no longer written).
-- Retention (defaults, arguments of strikeflow_enable_timescaledb): ticks 90 days (~90 x
-- 4.5 GB raw, ~10x less compressed), bars_1m 730 days. Retention counts from now(), so a
-- replayed recording older than that is dropped by the next retention job.
-- Continuous aggregates keep their rows after bars_1m drops its chunks (the 1-day bars
-- outlive the minute bars). Their refresh policies look back bars_retention - 1 day, never
-- as far as retention: a refresh over a window whose bars_1m rows were dropped would delete
-- the aggregated rows. The long look-back is cheap (a refresh only recomputes buckets whose
-- bars_1m rows changed) and picks up replayed history inside that window.

-- Whether an extension can be used here; see the header. A function so that this
-- migration, `strikeflow migrate` and a DBA in psql apply the same rule.
CREATE OR REPLACE FUNCTION strikeflow_extension_status(ext text) RETURNS text
LANGUAGE plpgsql AS $fn$
DECLARE
    version text;
    preload text;
BEGIN
    -- The Apache-2 edition of TimescaleDB has no compression or continuous aggregates.
    IF ext = 'timescaledb' AND current_setting('timescaledb.license', true) = 'apache' THEN
        RETURN 'not loadable: the Apache-2 edition (timescaledb.license = apache) lacks '
               'compression and continuous aggregates';
    END IF;
    SELECT extversion INTO version FROM pg_extension WHERE extname = ext;
    IF FOUND THEN
        RETURN 'installed ' || version;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = ext) THEN
        RETURN 'not available';
    END IF;
    -- Hidden from roles without pg_read_all_settings: then the row is missing.
    SELECT setting INTO preload FROM pg_settings WHERE name = 'shared_preload_libraries';
    IF FOUND THEN
        IF EXISTS (SELECT 1 FROM regexp_split_to_table(preload, ',') AS lib
                   WHERE regexp_replace(btrim(lib, ' "'), '^.*/|\.so$', '', 'g') = ext) THEN
            RETURN 'loadable';
        END IF;
        RETURN format('not loadable: available but not in shared_preload_libraries (%L)', preload);
    END IF;
    BEGIN
        EXECUTE format('CREATE EXTENSION %I', ext);
        RAISE EXCEPTION USING ERRCODE = 'SF001', MESSAGE = 'probe succeeded, rolled back';
    EXCEPTION
        WHEN SQLSTATE 'SF001' THEN
            RETURN 'loadable';
        WHEN OTHERS THEN
            RETURN 'not loadable: ' || SQLERRM;
    END;
END
$fn$;

-- The one definition of a rollup of bars_1m, for the views and the continuous aggregates.
-- window_end is computed in UTC (immutable: timestamptz + interval depends on TimeZone,
-- which a continuous aggregate must not).
CREATE OR REPLACE FUNCTION strikeflow_rollup_sql(width interval, timescale boolean) RETURNS text
LANGUAGE sql IMMUTABLE AS $fn$
    SELECT format(
        $q$SELECT instrument_token,
       %1$s AS window_start,
       ((%1$s AT TIME ZONE 'UTC') + %2$L::interval) AT TIME ZONE 'UTC' AS window_end,
       %3$s AS open,
       max(high) AS high,
       min(low) AS low,
       %4$s AS close,
       sum(volume)::bigint AS volume,
       %5$s AS oi,
       sum(tick_count)::integer AS tick_count
FROM bars_1m
GROUP BY instrument_token, %1$s$q$,
        CASE WHEN timescale
             THEN format('time_bucket(%L::interval, window_start, %L::timestamptz)', width, '2000-01-03 09:15:00+05:30')
             ELSE format('date_bin(%L::interval, window_start, %L::timestamptz)', width, '2000-01-03 09:15:00+05:30')
        END,
        width,
        CASE WHEN timescale THEN 'first(open, window_start)'
             ELSE '(array_agg(open ORDER BY window_start))[1]' END,
        CASE WHEN timescale THEN 'last(close, window_start)'
             ELSE '(array_agg(close ORDER BY window_start DESC))[1]' END,
        CASE WHEN timescale THEN 'last(oi, window_start)'
             ELSE '(array_agg(oi ORDER BY window_start DESC))[1]' END)
$fn$;

-- The timeframes, in one place for the views, the aggregates and their policies.
CREATE OR REPLACE FUNCTION strikeflow_rollups()
RETURNS TABLE (name text, width interval, schedule interval)
LANGUAGE sql IMMUTABLE AS $fn$
    VALUES ('bars_3m', interval '3 minutes', interval '3 minutes'),
           ('bars_5m', interval '5 minutes', interval '5 minutes'),
           ('bars_15m', interval '15 minutes', interval '15 minutes'),
           ('bars_1h', interval '1 hour', interval '1 hour'),
           ('bars_1d', interval '1 day', interval '1 hour')
$fn$;

-- Converts ticks and bars_1m (and the rollups) to TimescaleDB; safe to run again, and run
-- again with other retentions to change them. Locks ticks and bars_1m while their rows
-- move into chunks. Raises when TimescaleDB cannot be loaded.
CREATE OR REPLACE FUNCTION strikeflow_enable_timescaledb(
    ticks_retention interval DEFAULT interval '90 days',
    bars_retention interval DEFAULT interval '730 days')
RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    r record;
    look_back interval := bars_retention - interval '1 day';
BEGIN
    IF look_back < interval '3 days' THEN
        RAISE EXCEPTION 'bars_retention % is too short: the 1-day aggregate needs at least 4 days', bars_retention;
    END IF;
    CREATE EXTENSION IF NOT EXISTS timescaledb;

    PERFORM create_hypertable('ticks', 'ts', chunk_time_interval => interval '1 day',
                              create_default_indexes => FALSE, if_not_exists => TRUE,
                              migrate_data => TRUE);
    PERFORM create_hypertable('bars_1m', 'window_start', chunk_time_interval => interval '7 days',
                              create_default_indexes => FALSE, if_not_exists => TRUE,
                              migrate_data => TRUE);

    IF NOT (SELECT compression_enabled FROM timescaledb_information.hypertables
            WHERE hypertable_schema = current_schema() AND hypertable_name = 'ticks') THEN
        ALTER TABLE ticks SET (timescaledb.compress,
                               timescaledb.compress_segmentby = 'instrument_token',
                               timescaledb.compress_orderby = 'ts DESC');
    END IF;
    IF NOT (SELECT compression_enabled FROM timescaledb_information.hypertables
            WHERE hypertable_schema = current_schema() AND hypertable_name = 'bars_1m') THEN
        ALTER TABLE bars_1m SET (timescaledb.compress,
                                 timescaledb.compress_segmentby = 'instrument_token',
                                 timescaledb.compress_orderby = 'window_start DESC');
    END IF;
    -- Removed and added again, so that a second call with other values takes effect.
    PERFORM remove_compression_policy('ticks', if_exists => TRUE);
    PERFORM add_compression_policy('ticks', compress_after => interval '3 days');
    PERFORM remove_compression_policy('bars_1m', if_exists => TRUE);
    PERFORM add_compression_policy('bars_1m', compress_after => interval '14 days');
    PERFORM remove_retention_policy('ticks', if_exists => TRUE);
    PERFORM add_retention_policy('ticks', drop_after => ticks_retention);
    PERFORM remove_retention_policy('bars_1m', if_exists => TRUE);
    PERFORM add_retention_policy('bars_1m', drop_after => bars_retention);

    FOR r IN SELECT * FROM strikeflow_rollups() LOOP
        IF NOT EXISTS (SELECT 1 FROM timescaledb_information.continuous_aggregates
                       WHERE view_schema = current_schema() AND view_name = r.name) THEN
            -- The plain view of the same name (fails, naming the dependant, if another view
            -- was built on it).
            EXECUTE format('DROP VIEW IF EXISTS %I', r.name);
            EXECUTE format('CREATE MATERIALIZED VIEW %I WITH (timescaledb.continuous, '
                           'timescaledb.materialized_only = false) AS %s WITH NO DATA',
                           r.name, strikeflow_rollup_sql(r.width, true));
        END IF;
        PERFORM remove_continuous_aggregate_policy(r.name, if_exists => TRUE);
        PERFORM add_continuous_aggregate_policy(r.name, start_offset => look_back,
                                                end_offset => r.width,
                                                schedule_interval => r.schedule);
    END LOOP;
END
$fn$;

DO $$
DECLARE
    status text := strikeflow_extension_status('timescaledb');
    r record;
BEGIN
    -- `strikeflow migrate --no-timescale` sets strikeflow.timescale = off for its session.
    IF (status LIKE 'installed %' OR status = 'loadable')
       AND coalesce(current_setting('strikeflow.timescale', true), '') <> 'off' THEN
        PERFORM strikeflow_enable_timescaledb();
    ELSE
        RAISE NOTICE 'timescaledb %: ticks and bars_1m stay plain tables, rollups are views', status;
        FOR r IN SELECT * FROM strikeflow_rollups() LOOP
            EXECUTE format('CREATE OR REPLACE VIEW %I AS %s', r.name,
                           strikeflow_rollup_sql(r.width, false));
        END LOOP;
    END IF;
END
$$;
