-- Superseded by 0004_rollups_and_timescale.sql, which detects TimescaleDB correctly (the
-- extension must be loadable, i.e. preloaded, not only available: this migration used to
-- fail on a server where it was only available) and adds compression, retention and the
-- rollups. Kept, empty, so versions stay in order. A database that applied the earlier
-- text has hypertables (1-day ticks chunks, 7-day bars_1m chunks) or plain tables, both of
-- which 0004 completes; `strikeflow migrate` records this text's checksum for it (see
-- src/migrate.rs).
SELECT 1;
