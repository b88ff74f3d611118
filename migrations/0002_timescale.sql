-- Hypertables when TimescaleDB is installed on the server; plain tables (with the time
-- indexes above) otherwise. Detected here, at migrate time, so one set of migrations
-- serves both. Both calls are no-ops when already applied.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('ticks', 'ts', chunk_time_interval => interval '1 day',
                                  if_not_exists => TRUE, migrate_data => TRUE);
        PERFORM create_hypertable('bars_1m', 'window_start', chunk_time_interval => interval '7 days',
                                  if_not_exists => TRUE, migrate_data => TRUE);
    ELSE
        RAISE NOTICE 'timescaledb is not available: ticks and bars_1m stay plain tables';
    END IF;
END
$$;
