//! The analyst's SQL on both schemas: migrate, insert a few rows with INSERT over one
//! connection, refresh the aggregates, check the 3m..1d rollups and the per-minute chain
//! summary (`chain_summary_1m`) against values computed here, store rows in every analytics
//! table, and run every ```sql block of `README.md` and `docs/sql.md` plus a query on every
//! table and view. On TimescaleDB it also checks the whole layer (every table of
//! `HYPERTABLES` a hypertable with the compression and policies of
//! `strikeflow_hypertables()`, every continuous aggregate refreshed inside its source's
//! retention, retention configurable and kept by a call without arguments), compresses every
//! chunk and writes into the compressed chunks as the sink does.
//!
//! * `analyst_sql_on_plain_postgresql` runs in the default suite, on a fresh database of
//!   the `./dev up` server (rollups are `date_bin` views there).
//! * `analyst_sql_on_timescaledb` runs when `TIMESCALE_URL` names a TimescaleDB, and is
//!   skipped otherwise: `./dev check-timescale URL` runs it (with `--timescale`, so a
//!   database that is not yet converted is converted). It keeps to one connection at a
//!   time and no COPY, so the PGlite build of `../shared/timescale/run.sh` can serve it.
//!   Its rows use a random instrument token and are deleted at the end.
//! * `upgrade_to_0006_on_timescaledb` runs when `TIMESCALE_UPGRADE_URL` names a fresh
//!   TimescaleDB database: the upgrade of a database converted before migration 6.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::Rng;
use strikeflow::migrate::{
    migrate_database, migrate_database_with, MigrateOptions, TimescaleMode, HYPERTABLES,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The rollups: name and width in minutes.
const ROLLUPS: [(&str, i64); 5] = [
    ("bars_3m", 3),
    ("bars_5m", 5),
    ("bars_15m", 15),
    ("bars_1h", 60),
    ("bars_1d", 1440),
];

/// How many one-minute bars the check inserts (ending with the current minute); the chain
/// and analytics rows cover the same minutes.
const BARS: i64 = 150;

/// The per-minute chain summary: a view on plain PostgreSQL, a continuous aggregate on
/// TimescaleDB.
const SUMMARY: &str = "chain_summary_1m";

/// The expiry of the test chain (its underlying is random, see [`test_underlying`]).
const EXPIRY: &str = "2026-12-29";

#[tokio::test]
async fn analyst_sql_on_plain_postgresql() {
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://strikeflow@127.0.0.1:15432/strikeflow".to_owned());
    let id: u32 = rand::rng().random();
    let name = format!("strikeflow_test_sql_{id:08x}");
    let (admin, _admin_connection) = connect(&server).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating the test database (is PostgreSQL up? ./dev up)");
    let url = with_database(&server, &name);
    let outcome = tokio::spawn(async move {
        let report = migrate_database(&url).await.expect("migrate");
        if report.hypertables {
            eprintln!("note: this server has TimescaleDB, so this is not the plain path");
        }
        exercise(&url, report.hypertables).await
    })
    .await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .expect("dropping the test database");
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic.into_panic());
    }
}

#[tokio::test]
async fn analyst_sql_on_timescaledb() {
    let Ok(url) = std::env::var("TIMESCALE_URL") else {
        eprintln!("skipped: TIMESCALE_URL is not set (./dev check-timescale URL runs this)");
        return;
    };
    let options = MigrateOptions {
        timescale: TimescaleMode::Convert,
        ..MigrateOptions::default()
    };
    // First as a database created before the server had TimescaleDB: plain tables and
    // views (--no-timescale), holding rows. Skipped when the database is already migrated.
    let plain = MigrateOptions {
        timescale: TimescaleMode::Off,
        ..MigrateOptions::default()
    };
    let first = migrate_database_with(&url, &plain)
        .await
        .unwrap_or_else(|e| panic!("migrate --no-timescale on TIMESCALE_URL: {e:#}"));
    let before = if first.hypertables {
        eprintln!("already converted: the conversion step is skipped");
        None
    } else {
        eprintln!(
            "plain schema on a TimescaleDB server (applied {:?}); rows go in, then --timescale",
            first.applied
        );
        let (client, connection) = connect(&url).await;
        assert_views(&client).await;
        let token = random_token();
        let bars = insert_rows(&client, token).await;
        check_rollups(&client, token, &bars, "before conversion (views)").await;
        let chain = insert_chain(&client, token).await;
        check_summary(&client, token, &chain, "before conversion (view)").await;
        insert_analytics(&client, token, bars[0].start).await;
        let digest = analytics_digest(&client, token).await;
        assert_eq!(
            digest,
            expected_digest(&Upserted::default()),
            "before conversion"
        );
        close(client, connection).await;
        Some((token, bars, chain, digest))
    };

    let report = migrate_database_with(&url, &options)
        .await
        .unwrap_or_else(|e| panic!("migrate --timescale on TIMESCALE_URL: {e:#}"));
    eprintln!(
        "migrated --timescale: applied {:?}, checksums recorded {:?}, timescaledb {}",
        report.applied, report.checksums_recorded, report.timescaledb
    );
    assert!(report.hypertables, "{report:?}");
    if let Some((token, bars, chain, digest)) = before {
        // The rows moved into chunks, and the aggregates built from them equal the views.
        let (client, connection) = connect(&url).await;
        refresh(&client).await;
        check_rollups(&client, token, &bars, "after conversion").await;
        check_summary(&client, token, &chain, "after conversion").await;
        assert_eq!(
            analytics_digest(&client, token).await,
            digest,
            "after conversion"
        );
        delete_rows(&client, token).await;
        close(client, connection).await;
    }
    exercise(&url, true).await;
}

/// A database of the release before migration 6 on TimescaleDB (0001-0005 applied, ticks and
/// bars_1m converted, a DBA's 30-day ticks retention, rows in the analytics tables) upgraded
/// by plain `strikeflow migrate`: 0006 does not move those rows implicitly (chain_summary_1m
/// is a view, the report asks for --timescale), and `--timescale` then completes the layer,
/// keeping the DBA's retention and the rows. Needs a fresh TimescaleDB database of its own:
/// `TIMESCALE_UPGRADE_URL=URL cargo test -p strikeflow --test timescale -- --exact
/// upgrade_to_0006_on_timescaledb` (skipped without it; the PGlite server serves one
/// database, so this cannot share `./dev check-timescale`'s).
#[tokio::test]
async fn upgrade_to_0006_on_timescaledb() {
    let Ok(url) = std::env::var("TIMESCALE_UPGRADE_URL") else {
        eprintln!("skipped: TIMESCALE_UPGRADE_URL is not set");
        return;
    };
    let before_0006: Vec<_> = strikeflow::migrate::MIGRATIONS
        .iter()
        .copied()
        .filter(|m| m.0 < 6)
        .collect();
    let old = MigrateOptions {
        migrations: &before_0006,
        ..MigrateOptions::default()
    };
    let report = migrate_database_with(&url, &old)
        .await
        .unwrap_or_else(|e| panic!("migrate 0001-0005 on TIMESCALE_UPGRADE_URL: {e:#}"));
    assert_eq!(
        report.applied,
        [1, 2, 3, 4, 5],
        "a fresh database is needed"
    );
    assert!(!report.hypertables, "five of seven tables are still plain");

    let (client, connection) = connect(&url).await;
    assert_eq!(hypertable_names(&client).await, ["bars_1m", "ticks"]);
    client
        .batch_execute(
            "SELECT strikeflow_enable_timescaledb(ticks_retention => interval '30 days')",
        )
        .await
        .expect("a DBA's retention, with 0004's function");
    let token = random_token();
    let mut chain = insert_chain(&client, token).await;
    let first = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("minute")
        - TimeDelta::minutes(BARS - 1);
    insert_analytics(&client, token, first).await;
    let digest = analytics_digest(&client, token).await;
    close(client, connection).await;

    let report = migrate_database(&url)
        .await
        .expect("plain migrate applies 0006");
    assert_eq!(report.applied, [6]);
    assert!(
        !report.hypertables && report.timescale_convertible(),
        "{report:?}"
    );
    let (client, connection) = connect(&url).await;
    assert_eq!(hypertable_names(&client).await, ["bars_1m", "ticks"]);
    assert_views(&client).await;
    check_summary(
        &client,
        token,
        &chain,
        "upgraded, before --timescale (view)",
    )
    .await;
    close(client, connection).await;

    let convert = MigrateOptions {
        timescale: TimescaleMode::Convert,
        ..MigrateOptions::default()
    };
    let report = migrate_database_with(&url, &convert)
        .await
        .expect("migrate --timescale");
    assert!(report.hypertables && !report.timescale_convertible());
    let (client, connection) = connect(&url).await;
    let mut all: Vec<&str> = HYPERTABLES.to_vec();
    all.sort_unstable();
    assert_eq!(hypertable_names(&client).await, all);
    check_timescale_layer(&client).await;
    assert_eq!(
        retention_and_window(&client, "ticks", "bars_1d").await.0,
        "30 days",
        "--timescale keeps the retention a DBA set"
    );
    refresh(&client).await;
    check_summary(&client, token, &chain, "after --timescale").await;
    assert_eq!(analytics_digest(&client, token).await, digest);
    upsert_chain(&client, token, &mut chain).await;
    refresh(&client).await;
    check_summary(&client, token, &chain, "after --timescale and an upsert").await;
    delete_rows(&client, token).await;
    close(client, connection).await;
}

/// The hypertables of the current schema, by name.
async fn hypertable_names(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT hypertable_name::text FROM timescaledb_information.hypertables
             WHERE hypertable_schema = current_schema() ORDER BY 1",
            &[],
        )
        .await
        .expect("listing hypertables")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn random_token() -> i64 {
    900_000_000 + i64::from(rand::rng().random::<u16>())
}

async fn assert_views(client: &Client) {
    for name in ROLLUPS.map(|(name, _)| name).into_iter().chain([SUMMARY]) {
        let kind: String = client
            .query_one(
                "SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)",
                &[&name],
            )
            .await
            .unwrap_or_else(|e| panic!("{name} missing: {e}"))
            .get(0);
        assert_eq!(kind, "v", "{name} is a plain view");
    }
}

async fn delete_rows(client: &Client, token: i64) {
    for table in [
        "bars_1m",
        "ticks",
        "instruments",
        "strike_analytics",
        "indicator_values",
        "late_ticks",
    ] {
        client
            .execute(
                &format!("DELETE FROM {table} WHERE instrument_token = $1"),
                &[&token],
            )
            .await
            .unwrap_or_else(|e| panic!("cleaning up {table}: {e:#}"));
    }
    for table in ["chain_analytics", "moneyness_points"] {
        client
            .execute(
                &format!("DELETE FROM {table} WHERE underlying = $1"),
                &[&test_underlying(token)],
            )
            .await
            .unwrap_or_else(|e| panic!("cleaning up {table}: {e:#}"));
    }
}

/// The whole check on one connection; `timescale` says which schema to expect.
async fn exercise(url: &str, timescale: bool) {
    let (client, connection) = connect(url).await;
    if timescale {
        check_timescale_layer(&client).await;
        check_retention_is_configurable(&client).await;
    } else {
        assert_views(&client).await;
    }

    let token = random_token();
    let bars = insert_rows(&client, token).await;
    let mut chain = insert_chain(&client, token).await;
    insert_analytics(&client, token, bars[0].start).await;
    if timescale {
        refresh(&client).await;
    }
    check_rollups(&client, token, &bars, "after insert").await;
    check_summary(&client, token, &chain, "after insert").await;
    let digest = analytics_digest(&client, token).await;
    assert_eq!(
        digest,
        expected_digest(&Upserted::default()),
        "after insert"
    );

    if timescale {
        // Compress everything; the rows read back the same from the compressed chunks.
        for table in HYPERTABLES {
            let n = client
                .query(
                    &format!(
                        "SELECT compress_chunk(c, if_not_compressed => true) FROM show_chunks('{table}') c"
                    ),
                    &[],
                )
                .await
                .unwrap_or_else(|e| panic!("compressing {table}: {e:#}"))
                .len();
            eprintln!("compressed {n} chunk(s) of {table}");
        }
        let compressed: Vec<String> = client
            .query(
                "SELECT hypertable_name::text FROM timescaledb_information.chunks
                 WHERE hypertable_schema = current_schema() AND is_compressed
                 GROUP BY 1 ORDER BY 1",
                &[],
            )
            .await
            .expect("listing compressed chunks")
            .iter()
            .map(|row| row.get(0))
            .collect();
        let mut all: Vec<&str> = HYPERTABLES.to_vec();
        all.sort_unstable();
        assert_eq!(compressed, all, "every hypertable has compressed chunks");
        check_rollups(&client, token, &bars, "compressed").await;
        check_summary(&client, token, &chain, "compressed").await;
        assert_eq!(analytics_digest(&client, token).await, digest, "compressed");
    }
    // What the sink does to a (compressed) chunk: upsert a bar, analytics rows and a chain
    // row again (a reprocessed session), add a chain emission to an old minute, and insert
    // ticks and late ticks.
    let mut bars = bars;
    let first = &mut bars[0];
    first.close += 7.0;
    first.high = first.high.max(first.close);
    client
        .execute(
            "INSERT INTO bars_1m (instrument_token, window_start, window_end, open, high, low, close, volume, oi, tick_count)
             VALUES ($1, $2, $2::timestamptz + interval '1 minute', $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (instrument_token, window_start) DO UPDATE
             SET high = EXCLUDED.high, close = EXCLUDED.close",
            &[&token, &first.start, &first.open, &first.high, &first.low, &first.close, &first.volume, &first.oi, &first.ticks],
        )
        .await
        .expect("upserting a bar again");
    client
        .execute(
            "INSERT INTO ticks (ts, instrument_token, ltp, last_qty, volume, oi, bid, bid_qty, ask, ask_qty)
             VALUES ($1, $2, 24000, 75, 1, 50000, 23999.95, 150, 24000.05, 225)",
            &[&first.start, &token],
        )
        .await
        .expect("inserting a tick again");
    let upserted = upsert_analytics(&client, token, first.start).await;
    upsert_chain(&client, token, &mut chain).await;
    if timescale {
        refresh(&client).await;
    }
    check_rollups(&client, token, &bars, "after an upsert").await;
    check_summary(&client, token, &chain, "after an upsert").await;
    assert_eq!(
        analytics_digest(&client, token).await,
        expected_digest(&upserted),
        "after an upsert"
    );

    run_documented_queries(&client).await;

    delete_rows(&client, token).await;
    if timescale {
        refresh(&client).await;
    }
    let left: i64 = client
        .query_one(
            &format!("SELECT count(*) FROM {SUMMARY} WHERE underlying = $1"),
            &[&test_underlying(token)],
        )
        .await
        .expect("reading the summary after the cleanup")
        .get(0);
    assert_eq!(left, 0, "{SUMMARY} forgets deleted chain rows");
    close(client, connection).await;
}

/// Hypertables with the settings of `strikeflow_hypertables()`, their policies, the
/// continuous aggregates, and refresh windows inside their source's retention.
async fn check_timescale_layer(client: &Client) {
    let hypertables: Vec<(String, bool)> = client
        .query(
            "SELECT hypertable_name::text, compression_enabled FROM timescaledb_information.hypertables
             WHERE hypertable_schema = current_schema() ORDER BY 1",
            &[],
        )
        .await
        .expect("listing hypertables")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let mut want: Vec<(String, bool)> = HYPERTABLES.iter().map(|t| (t.to_string(), true)).collect();
    want.sort();
    assert_eq!(hypertables, want, "hypertables, with compression enabled");

    // Segment-by, order-by and chunk interval as the migration's table says (TimescaleDB
    // prints lists without spaces).
    let settings: Vec<String> = client
        .query(
            "SELECT t.name || ': ' || (replace(t.segment_by, ' ', '') = s.segmentby) || ' '
                    || (replace(t.order_by, ', ', ',') = s.orderby) || ' '
                    || (t.chunk_interval = d.time_interval) || ' ('
                    || s.segmentby || ' / ' || s.orderby || ' / ' || d.time_interval || ')'
             FROM strikeflow_hypertables() t
             LEFT JOIN timescaledb_information.hypertable_compression_settings s
               ON s.hypertable = t.name::regclass
             LEFT JOIN timescaledb_information.dimensions d
               ON d.hypertable_schema = current_schema() AND d.hypertable_name = t.name
             ORDER BY t.name",
            &[],
        )
        .await
        .expect("reading compression settings")
        .iter()
        .map(|row| row.get::<_, Option<String>>(0).unwrap_or_default())
        .collect();
    for line in &settings {
        eprintln!("settings {line}");
        assert!(line.contains(": true true true ("), "{line}");
    }
    assert_eq!(settings.len(), HYPERTABLES.len(), "{settings:?}");

    let aggregates: Vec<(String, bool)> = client
        .query(
            "SELECT view_name::text, materialized_only FROM timescaledb_information.continuous_aggregates
             WHERE view_schema = current_schema() ORDER BY 1",
            &[],
        )
        .await
        .expect("listing continuous aggregates")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for name in ROLLUPS.map(|(name, _)| name).into_iter().chain([SUMMARY]) {
        assert!(
            aggregates.contains(&(name.to_owned(), false)),
            "{name} is a real-time continuous aggregate: {aggregates:?}"
        );
    }
    let jobs: Vec<String> = client
        .query(
            "SELECT proc_name || ' ' || coalesce(hypertable_name, '?') || ' ' || config::text
             FROM timescaledb_information.jobs WHERE job_id >= 1000 ORDER BY 1",
            &[],
        )
        .await
        .expect("listing jobs")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for job in &jobs {
        eprintln!("job: {job}");
    }
    for table in HYPERTABLES {
        for proc in ["policy_compression", "policy_retention"] {
            let prefix = format!("{proc} {table} ");
            assert!(
                jobs.iter().any(|j| j.starts_with(&prefix)),
                "{prefix}: {jobs:?}"
            );
        }
    }
    // Every continuous aggregate has a refresh policy whose window stops short of its
    // source hypertable's retention (a refresh over dropped rows would delete the
    // aggregated ones). The jobs view names a refresh policy's hypertable by the aggregate
    // (2.23) or by its materialization hypertable (older releases): either matches, and a
    // policy matched by neither fails the check instead of passing it unseen.
    // (aggregate, start_offset, source's drop_after, start_offset < drop_after)
    type Window = (String, Option<String>, Option<String>, Option<bool>);
    let windows: Vec<Window> = client
        .query(
            "SELECT c.view_name::text, j.config->>'start_offset', r.config->>'drop_after',
                    (j.config->>'start_offset')::interval < (r.config->>'drop_after')::interval
             FROM timescaledb_information.continuous_aggregates c
             LEFT JOIN timescaledb_information.jobs j
               ON j.proc_name = 'policy_refresh_continuous_aggregate'
              AND j.hypertable_name IN (c.view_name, c.materialization_hypertable_name)
             LEFT JOIN timescaledb_information.jobs r
               ON r.proc_name = 'policy_retention' AND r.hypertable_name = c.hypertable_name
             WHERE c.view_schema = current_schema()
             ORDER BY 1",
            &[],
        )
        .await
        .expect("comparing refresh windows with retention")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
        .collect();
    assert_eq!(windows.len(), ROLLUPS.len() + 1, "{windows:?}");
    for window in &windows {
        eprintln!("refresh window {window:?}");
        assert_eq!(
            window.3,
            Some(true),
            "refresh window of {} must stop short of its source's retention: {window:?}",
            window.0
        );
    }
    // 0006 replaced strikeflow_enable_timescaledb(interval, interval) instead of adding an
    // overload beside it (which would make the call without arguments ambiguous).
    let overloads: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE proname = 'strikeflow_enable_timescaledb'",
            &[],
        )
        .await
        .expect("counting overloads")
        .get(0);
    assert_eq!(overloads, 1);
}

/// The retention of `table` and the refresh look-back of `aggregate` (None for a relation
/// without a refresh policy), as text.
async fn retention_and_window(
    client: &Client,
    table: &str,
    aggregate: &str,
) -> (String, Option<String>) {
    let row = client
        .query_one(
            "SELECT strikeflow_retention_of($1)::text,
                    (SELECT j.config->>'start_offset' FROM timescaledb_information.jobs j
                     JOIN timescaledb_information.continuous_aggregates c
                       ON j.hypertable_name IN (c.view_name, c.materialization_hypertable_name)
                     WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
                       AND c.view_name = $2)",
            &[&table, &aggregate],
        )
        .await
        .unwrap_or_else(|e| panic!("reading the retention of {table}: {e:#}"));
    (row.get(0), row.get(1))
}

/// Retention is an argument of strikeflow_enable_timescaledb(): a value changes it and moves
/// the refresh window with it, no value keeps it (so `migrate --timescale` run again leaves
/// a DBA's choice alone), and a value too short for the summary is refused. Leaves the
/// retention as it found it.
async fn check_retention_is_configurable(client: &Client) {
    let (found, _) = retention_and_window(client, "chain_analytics", SUMMARY).await;
    client
        .batch_execute(
            "SELECT strikeflow_enable_timescaledb(chains_retention => interval '200 days')",
        )
        .await
        .expect("setting chain_analytics' retention");
    assert_eq!(
        retention_and_window(client, "chain_analytics", SUMMARY).await,
        ("200 days".to_owned(), Some("199 days".to_owned()))
    );
    client
        .batch_execute("SELECT strikeflow_enable_timescaledb()")
        .await
        .expect("enabling again without arguments");
    assert_eq!(
        retention_and_window(client, "chain_analytics", SUMMARY).await,
        ("200 days".to_owned(), Some("199 days".to_owned())),
        "a call without arguments keeps the retention"
    );
    let err = client
        .batch_execute("SELECT strikeflow_enable_timescaledb(chains_retention => interval '1 day')")
        .await
        .expect_err("a retention shorter than the summary's look-back");
    let message = err
        .as_db_error()
        .map_or_else(|| err.to_string(), |e| e.message().to_owned());
    assert!(message.contains("too short"), "{message}");
    assert_eq!(
        retention_and_window(client, "chain_analytics", SUMMARY)
            .await
            .0,
        "200 days",
        "the refused call changed nothing"
    );
    client
        .execute(
            "SELECT strikeflow_enable_timescaledb(chains_retention => $1::text::interval)",
            &[&found],
        )
        .await
        .expect("restoring the retention");
    eprintln!("chain_analytics retention: 200 days, kept, refused 1 day, restored {found}");
}

/// One inserted one-minute bar.
#[derive(Debug, Clone)]
struct Bar {
    start: DateTime<Utc>,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: i64,
    oi: i64,
    ticks: i32,
}

/// An instrument, [`BARS`] one-minute bars ending with the current minute, and a few ticks.
async fn insert_rows(client: &Client, token: i64) -> Vec<Bar> {
    client
        .execute(
            "INSERT INTO instruments (instrument_token, exchange_token, tradingsymbol, name, last_price,
                                      expiry, strike, tick_size, lot_size, instrument_type, segment, exchange)
             VALUES ($1, $1::bigint / 256, 'NIFTY26DECFUT', 'NIFTY', 0, '2026-12-29', 0, 0.05, 75, 'FUT', 'NFO-FUT', 'NFO')",
            &[&token],
        )
        .await
        .expect("inserting the instrument");
    let now = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("minute");
    let bars: Vec<Bar> = (0..BARS)
        .map(|i| {
            let open = 24_000.0 + (i * 37 % 101) as f64;
            Bar {
                start: now - TimeDelta::minutes(BARS - 1 - i),
                open,
                high: open + 3.5,
                low: open - 2.0,
                close: open + 1.25,
                volume: 100 + i,
                oi: 50_000 + i * 3,
                ticks: 5 + (i % 7) as i32,
            }
        })
        .collect();
    let insert = client
        .prepare(
            "INSERT INTO bars_1m (instrument_token, window_start, window_end, open, high, low, close, volume, oi, tick_count)
             VALUES ($1, $2, $2::timestamptz + interval '1 minute', $3, $4, $5, $6, $7, $8, $9)",
        )
        .await
        .expect("preparing the bar insert");
    for bar in &bars {
        client
            .execute(
                &insert,
                &[
                    &token,
                    &bar.start,
                    &bar.open,
                    &bar.high,
                    &bar.low,
                    &bar.close,
                    &bar.volume,
                    &bar.oi,
                    &bar.ticks,
                ],
            )
            .await
            .expect("inserting a bar");
    }
    for i in 0..10_i64 {
        let ts = now - TimeDelta::seconds(i * 17);
        let ltp = 24_050.0 + i as f64;
        client
            .execute(
                "INSERT INTO ticks (ts, instrument_token, ltp, last_qty, volume, oi, bid, bid_qty, ask, ask_qty)
                 VALUES ($1, $2, $3::float8, 75, $4, 50000, $3::float8 - 0.05, 150, $3::float8 + 0.05, 225)",
                &[&ts, &token, &ltp, &(1_000 + i)],
            )
            .await
            .expect("inserting a tick");
    }
    bars
}

async fn refresh(client: &Client) {
    for name in ROLLUPS.map(|(name, _)| name).into_iter().chain([SUMMARY]) {
        client
            .batch_execute(&format!(
                "CALL refresh_continuous_aggregate('{name}', NULL, NULL)"
            ))
            .await
            .unwrap_or_else(|e| panic!("refreshing {name}: {e:#}"));
    }
}

/// The test chain's underlying: unique per run (from the random token), so the check reads
/// its own rows on a database that holds others.
fn test_underlying(token: i64) -> String {
    format!("TEST{token}")
}

/// One inserted chain_analytics row: the columns read back through chain_summary_1m (the
/// others are constants).
#[derive(Debug, Clone)]
struct ChainRow {
    ts: DateTime<Utc>,
    spot: Option<f64>,
    atm_strike: f64,
    pcr_oi: Option<f64>,
    max_pain: Option<f64>,
    reference_kind: &'static str,
    total_ce_oi: i64,
    total_pe_oi: i64,
}

/// Inserts `rows` into chain_analytics for the test chain, in one statement; with
/// `upsert`, rows whose key exists replace their values (as the sink's upsert does).
async fn write_chain(client: &Client, token: i64, rows: &[ChainRow], upsert: bool) {
    let ts: Vec<DateTime<Utc>> = rows.iter().map(|r| r.ts).collect();
    let spot: Vec<Option<f64>> = rows.iter().map(|r| r.spot).collect();
    let atm: Vec<f64> = rows.iter().map(|r| r.atm_strike).collect();
    let pcr: Vec<Option<f64>> = rows.iter().map(|r| r.pcr_oi).collect();
    let pain: Vec<Option<f64>> = rows.iter().map(|r| r.max_pain).collect();
    let kind: Vec<&str> = rows.iter().map(|r| r.reference_kind).collect();
    let ce: Vec<i64> = rows.iter().map(|r| r.total_ce_oi).collect();
    let pe: Vec<i64> = rows.iter().map(|r| r.total_pe_oi).collect();
    let conflict = if upsert {
        "ON CONFLICT (underlying, expiry, ts) DO UPDATE SET spot = EXCLUDED.spot,
             atm_strike = EXCLUDED.atm_strike, pcr_oi = EXCLUDED.pcr_oi,
             pcr_volume = EXCLUDED.pcr_volume, max_pain = EXCLUDED.max_pain,
             reference_kind = EXCLUDED.reference_kind, total_ce_oi = EXCLUDED.total_ce_oi,
             total_pe_oi = EXCLUDED.total_pe_oi"
    } else {
        ""
    };
    client
        .execute(
            &format!(
                "INSERT INTO chain_analytics (underlying, expiry, ts, minute_close, time_to_expiry, spot,
                     future, parity_forward, reference_price, reference_kind, atm_strike, pcr_oi,
                     pcr_volume, max_pain, atm_straddle, implied_move_pct, atm_iv, skew_25d, support,
                     resistance, basis, annualised_carry, net_gex, total_ce_oi, total_pe_oi,
                     ce_oi_change_prev_close, pe_oi_change_prev_close)
                 SELECT $1::text, '{EXPIRY}', u.ts, extract(second FROM u.ts) = 0, 0.05, u.spot,
                        u.spot + 12, NULL, u.atm + 3, u.kind, u.atm, u.pcr, u.pcr / 2, u.pain,
                        250, 1.1, 0.13, 0.01, u.atm - 200, u.atm + 200, 12, 0.07, 1e9, u.ce, u.pe,
                        NULL, NULL
                 FROM unnest($2::timestamptz[], $3::float8[], $4::float8[], $5::float8[],
                             $6::float8[], $7::text[], $8::int8[], $9::int8[])
                      AS u (ts, spot, atm, pcr, pain, kind, ce, pe)
                 {conflict}"
            ),
            &[&test_underlying(token), &ts, &spot, &atm, &pcr, &pain, &kind, &ce, &pe],
        )
        .await
        .unwrap_or_else(|e| panic!("writing chain_analytics rows: {e:#}"));
}

/// The test chain through the [`BARS`] minutes ending with the current one: 1 to 3
/// emissions a minute (at 0, 20, 40 s), some with NULLs, the last one of some minutes too
/// (a NULL that is last stays NULL in the summary).
async fn insert_chain(client: &Client, token: i64) -> Vec<ChainRow> {
    let now = Utc::now()
        .duration_trunc(TimeDelta::minutes(1))
        .expect("minute");
    let kinds = ["FUTURE", "SPOT", "PARITY_FORWARD"];
    let mut rows = Vec::new();
    for i in 0..BARS {
        let minute = now - TimeDelta::minutes(BARS - 1 - i);
        let emissions = 1 + i % 3;
        for k in 0..emissions {
            let last = k == emissions - 1;
            rows.push(ChainRow {
                ts: minute + TimeDelta::seconds(20 * k),
                spot: (i % 11 != 4 || !last).then_some(24_000.0 + i as f64 + 0.25 * k as f64),
                atm_strike: 24_000.0 + 50.0 * ((i + k) % 3) as f64,
                pcr_oi: (i % 7 != 3 || !last)
                    .then_some(0.8 + (i * 13 % 17) as f64 / 40.0 + k as f64 / 100.0),
                max_pain: (k != 0).then_some(23_900.0 + 50.0 * (i % 5) as f64),
                reference_kind: kinds[((i + k) % 3) as usize],
                total_ce_oi: 1_000_000 + i * 10 + k,
                total_pe_oi: 900_000 + i * 7 - k,
            });
        }
    }
    write_chain(client, token, &rows, false).await;
    rows
}

/// What the sink does to old chain rows: the last emission of the first minute again, with
/// other values (an upsert), and a later emission in the same minute (the minute's new last).
async fn upsert_chain(client: &Client, token: i64, rows: &mut Vec<ChainRow>) {
    let first_minute = rows[0].ts;
    let mut again = rows
        .iter()
        .rfind(|r| r.ts.duration_trunc(TimeDelta::minutes(1)).ok() == Some(first_minute))
        .expect("the first minute has rows")
        .clone();
    again.pcr_oi = Some(1.75);
    again.total_ce_oi += 500;
    let mut later = again.clone();
    later.ts = first_minute + TimeDelta::seconds(50);
    later.spot = Some(23_123.5);
    later.pcr_oi = None;
    later.reference_kind = "SPOT";
    write_chain(client, token, &[again.clone(), later.clone()], true).await;
    for row in rows.iter_mut() {
        if row.ts == again.ts {
            *row = again.clone();
        }
    }
    rows.push(later);
    rows.sort_by_key(|r| r.ts);
}

/// chain_summary_1m equals the chain rows summarised here: per minute, the last emission's
/// values, when it was, and how many there were.
async fn check_summary(client: &Client, token: i64, rows: &[ChainRow], when: &str) {
    let mut expected: Vec<(DateTime<Utc>, i64, ChainRow)> = Vec::new();
    for row in rows {
        let minute = row
            .ts
            .duration_trunc(TimeDelta::minutes(1))
            .expect("minute");
        match expected.last_mut() {
            Some((m, n, last)) if *m == minute => {
                *n += 1;
                if row.ts > last.ts {
                    *last = row.clone();
                }
            }
            _ => expected.push((minute, 1, row.clone())),
        }
    }
    let want: Vec<String> = expected
        .iter()
        .map(|(m, n, r)| {
            format!(
                "{m} {} {n} {:?} {} {:?} {:?} {:?} {} {} {}",
                r.ts,
                r.spot,
                r.atm_strike,
                r.pcr_oi,
                r.pcr_oi.map(|p| p / 2.0),
                r.max_pain,
                r.reference_kind,
                r.total_ce_oi,
                r.total_pe_oi
            )
        })
        .collect();
    let got: Vec<String> = client
        .query(
            &format!(
                "SELECT minute, last_ts, emissions, spot, atm_strike, pcr_oi, pcr_volume, max_pain,
                        reference_kind, total_ce_oi, total_pe_oi
                 FROM {SUMMARY} WHERE underlying = $1 AND expiry = '{EXPIRY}' ORDER BY minute"
            ),
            &[&test_underlying(token)],
        )
        .await
        .unwrap_or_else(|e| panic!("reading {SUMMARY}: {e:#}"))
        .iter()
        .map(|r| {
            let (m, ts, n): (DateTime<Utc>, DateTime<Utc>, i64) = (r.get(0), r.get(1), r.get(2));
            let (spot, atm, pcr, pcr_volume, pain): (
                Option<f64>,
                f64,
                Option<f64>,
                Option<f64>,
                Option<f64>,
            ) = (r.get(3), r.get(4), r.get(5), r.get(6), r.get(7));
            let (kind, ce, pe): (String, i64, i64) = (r.get(8), r.get(9), r.get(10));
            format!("{m} {ts} {n} {spot:?} {atm} {pcr:?} {pcr_volume:?} {pain:?} {kind} {ce} {pe}")
        })
        .collect();
    assert_eq!(got, want, "{SUMMARY} {when}");
    eprintln!("{SUMMARY} {when}: {} minute(s) as computed", got.len());
}

/// Rows in the other analytics tables (strike_analytics, moneyness_points, indicator_values,
/// late_ticks), one per minute from `first` (the first bar's minute, so that
/// [`upsert_analytics`] hits the first rows): value 100 + i for the i-th minute (50 + i for
/// the indicator), so the sums are known here.
async fn insert_analytics(client: &Client, token: i64, first: DateTime<Utc>) {
    let underlying = test_underlying(token);
    let strikes = format!(
        "INSERT INTO strike_analytics (ts, instrument_token, tradingsymbol, underlying, expiry, strike,
             option_type, ltp, oi, volume, bid, ask, build_up)
         SELECT $1::timestamptz + i * interval '1 minute' + interval '5 seconds', $2::bigint,
                'TEST24000CE', $4::text, '{EXPIRY}', 24000, 'CE', 100 + i, 5000 + i, 10 * i, 99 + i, 101 + i,
                'NEUTRAL'
         FROM generate_series(0, $3::bigint - 1) i"
    );
    let moneyness = format!(
        "INSERT INTO moneyness_points (underlying, expiry, minute, bucket, level, side, instrument_token,
             strike, ltp, iv, delta, oi, volume)
         SELECT $4::text, '{EXPIRY}', $1::timestamptz + i * interval '1 minute', 'ATM', 0, 'CE', $2::bigint,
                24000, 100 + i, NULL, NULL, 5000 + i, 10 * i
         FROM generate_series(0, $3::bigint - 1) i"
    );
    let indicators =
        "INSERT INTO indicator_values (instrument_token, timeframe_minutes, indicator, params,
             window_start, outputs)
         SELECT $2::bigint, 1, 'rsi', 'period=14', $1::timestamptz + i * interval '1 minute',
                jsonb_build_object('value', 50 + i)
         FROM generate_series(0, $3::bigint - 1) i";
    let late = "INSERT INTO late_ticks (ts, instrument_token, ltp, last_qty, volume, oi, bid, bid_qty,
             ask, ask_qty)
         SELECT $1::timestamptz + i * interval '17 seconds', $2::bigint, 24050 + i, 75, 1000 + i, 50000,
                24049.95 + i, 150, 24050.05 + i, 225
         FROM generate_series(0, 9) i";
    let statements: [(&str, &[&(dyn ToSql + Sync)]); 4] = [
        (&strikes, &[&first, &token, &BARS, &underlying]),
        (&moneyness, &[&first, &token, &BARS, &underlying]),
        (indicators, &[&first, &token, &BARS]),
        (late, &[&first, &token]),
    ];
    for (sql, params) in statements {
        client
            .execute(sql, params)
            .await
            .unwrap_or_else(|e| panic!("inserting analytics rows: {e:#}\n{sql}"));
    }
}

/// Which analytics rows [`upsert_analytics`] replaced or added.
#[derive(Debug, Default)]
struct Upserted {
    /// The first minute's strike, moneyness and indicator rows now hold this value.
    first_value: Option<f64>,
    /// Late ticks added, with their prices.
    late: Vec<f64>,
}

/// Upserts the first minute's row of strike_analytics, moneyness_points and
/// indicator_values with another value, and inserts a late tick (COPY in the sink; no key).
async fn upsert_analytics(client: &Client, token: i64, first: DateTime<Utc>) -> Upserted {
    let value = 999.5;
    let underlying = test_underlying(token);
    let strikes = format!(
        "INSERT INTO strike_analytics (ts, instrument_token, tradingsymbol, underlying, expiry, strike,
             option_type, ltp, oi, volume, bid, ask, build_up)
         VALUES ($1::timestamptz + interval '5 seconds', $2, 'TEST24000CE', $4, '{EXPIRY}', 24000, 'CE',
                 $3, 5000, 0, 99, 101, 'NEUTRAL')
         ON CONFLICT (instrument_token, ts) DO UPDATE SET ltp = EXCLUDED.ltp"
    );
    let moneyness = format!(
        "INSERT INTO moneyness_points (underlying, expiry, minute, bucket, level, side, instrument_token,
             strike, ltp, iv, delta, oi, volume)
         VALUES ($4, '{EXPIRY}', $1, 'ATM', 0, 'CE', $2, 24000, $3, NULL, NULL, 5000, 0)
         ON CONFLICT (underlying, expiry, bucket, side, minute) DO UPDATE SET ltp = EXCLUDED.ltp"
    );
    let indicators =
        "INSERT INTO indicator_values (instrument_token, timeframe_minutes, indicator, params,
             window_start, outputs)
         VALUES ($2, 1, 'rsi', 'period=14', $1, jsonb_build_object('value', $3::float8))
         ON CONFLICT (instrument_token, timeframe_minutes, indicator, params, window_start)
         DO UPDATE SET outputs = EXCLUDED.outputs";
    let late =
        "INSERT INTO late_ticks (ts, instrument_token, ltp, last_qty, volume, oi, bid, bid_qty,
             ask, ask_qty)
         VALUES ($1, $2, $3::float8, 75, 1, 50000, $3::float8 - 0.05, 150, $3::float8 + 0.05, 225)";
    let statements: [(&str, &[&(dyn ToSql + Sync)]); 4] = [
        (&strikes, &[&first, &token, &value, &underlying]),
        (&moneyness, &[&first, &token, &value, &underlying]),
        (indicators, &[&first, &token, &value]),
        (late, &[&first, &token, &value]),
    ];
    for (sql, params) in statements {
        client
            .execute(sql, params)
            .await
            .unwrap_or_else(|e| panic!("upserting analytics rows: {e:#}\n{sql}"));
    }
    Upserted {
        first_value: Some(value),
        late: vec![value],
    }
}

/// Per analytics table: rows and the sum of the value column, of the test's rows.
async fn analytics_digest(client: &Client, token: i64) -> Vec<String> {
    client
        .query(
            "SELECT 'strike_analytics', count(*), sum(ltp) FROM strike_analytics WHERE instrument_token = $1
             UNION ALL
             SELECT 'moneyness_points', count(*), sum(ltp) FROM moneyness_points WHERE underlying = $2
             UNION ALL
             SELECT 'indicator_values', count(*), sum((outputs->>'value')::float8) FROM indicator_values
             WHERE instrument_token = $1
             UNION ALL
             SELECT 'late_ticks', count(*), sum(ltp) FROM late_ticks WHERE instrument_token = $1",
            &[&token, &test_underlying(token)],
        )
        .await
        .expect("reading the analytics tables")
        .iter()
        .map(|r| {
            let (table, n, sum): (String, i64, Option<f64>) = (r.get(0), r.get(1), r.get(2));
            format!("{table} {n} {sum:?}")
        })
        .collect()
}

/// [`analytics_digest`] computed from what [`insert_analytics`] and [`upsert_analytics`]
/// wrote.
fn expected_digest(upserted: &Upserted) -> Vec<String> {
    let series = |base: f64| -> f64 {
        (0..BARS)
            .map(|i| match (i, upserted.first_value) {
                (0, Some(v)) => v,
                _ => base + i as f64,
            })
            .sum()
    };
    let late: Vec<f64> = (0..10)
        .map(|i| 24_050.0 + f64::from(i))
        .chain(upserted.late.iter().copied())
        .collect();
    vec![
        format!("strike_analytics {BARS} {:?}", Some(series(100.0))),
        format!("moneyness_points {BARS} {:?}", Some(series(100.0))),
        format!("indicator_values {BARS} {:?}", Some(series(50.0))),
        format!(
            "late_ticks {} {:?}",
            late.len(),
            Some(late.iter().sum::<f64>())
        ),
    ]
}

/// Each rollup equals the bars regrouped here, on buckets aligned to 09:15 IST.
async fn check_rollups(client: &Client, token: i64, bars: &[Bar], when: &str) {
    let origin: DateTime<Utc> = "2000-01-03T03:45:00Z".parse().expect("origin");
    for (name, minutes) in ROLLUPS {
        let width = TimeDelta::minutes(minutes);
        let mut expected: Vec<(DateTime<Utc>, Bar)> = Vec::new();
        for bar in bars {
            let offset = (bar.start - origin).num_minutes().div_euclid(minutes);
            let start = origin + TimeDelta::minutes(offset * minutes);
            match expected.last_mut() {
                Some((s, acc)) if *s == start => {
                    acc.high = acc.high.max(bar.high);
                    acc.low = acc.low.min(bar.low);
                    acc.close = bar.close;
                    acc.volume += bar.volume;
                    acc.oi = bar.oi;
                    acc.ticks += bar.ticks;
                }
                _ => expected.push((start, bar.clone())),
            }
        }
        let rows = client
            .query(
                &format!(
                    "SELECT window_start, window_end, open, high, low, close, volume, oi, tick_count
                     FROM {name} WHERE instrument_token = $1 ORDER BY window_start"
                ),
                &[&token],
            )
            .await
            .unwrap_or_else(|e| panic!("reading {name}: {e:?}"));
        let got: Vec<String> = rows
            .iter()
            .map(|r| {
                let (s, e): (DateTime<Utc>, DateTime<Utc>) = (r.get(0), r.get(1));
                let (o, h, l, c): (f64, f64, f64, f64) = (r.get(2), r.get(3), r.get(4), r.get(5));
                let (v, oi, t): (i64, i64, i32) = (r.get(6), r.get(7), r.get(8));
                format!("{s} {e} {o} {h} {l} {c} {v} {oi} {t}")
            })
            .collect();
        let want: Vec<String> = expected
            .iter()
            .map(|(s, b)| {
                format!(
                    "{s} {} {} {} {} {} {} {} {}",
                    *s + width,
                    b.open,
                    b.high,
                    b.low,
                    b.close,
                    b.volume,
                    b.oi,
                    b.ticks
                )
            })
            .collect();
        assert_eq!(got, want, "{name} {when}");
        eprintln!("{name} {when}: {} bucket(s) as computed", got.len());
    }
}

/// Every ```sql block of README.md and docs/sql.md (run as is, whole blocks), then a
/// query on every table and view of the schema.
async fn run_documented_queries(client: &Client) {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut queries: Vec<(String, String)> = Vec::new();
    for doc in ["README.md", "docs/sql.md"] {
        let Ok(text) = std::fs::read_to_string(format!("{root}/{doc}")) else {
            eprintln!("{doc}: not present, no queries from it");
            continue;
        };
        let blocks = sql_blocks(&text);
        eprintln!("{doc}: {} sql block(s)", blocks.len());
        for (i, block) in blocks.into_iter().enumerate() {
            queries.push((format!("{doc} sql block {}", i + 1), block));
        }
    }
    let relations: Vec<String> = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema() ORDER BY 1",
            &[],
        )
        .await
        .expect("listing relations")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for relation in relations {
        queries.push((
            format!("table/view {relation}"),
            format!("SELECT * FROM {relation} LIMIT 5"),
        ));
    }
    let mut failed = Vec::new();
    for (what, sql) in &queries {
        let started = std::time::Instant::now();
        match tokio::time::timeout(Duration::from_secs(60), client.simple_query(sql)).await {
            Ok(Ok(messages)) => {
                let rows = messages
                    .iter()
                    .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                    .count();
                eprintln!("ok   {what}: {rows} row(s), {:?}", started.elapsed());
            }
            Ok(Err(e)) => {
                eprintln!("FAIL {what}: {e:#}");
                failed.push(format!("{what}: {e:#}\n{sql}"));
            }
            Err(_) => failed.push(format!("{what}: no answer in 60 s\n{sql}")),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} queries failed:\n{}",
        failed.len(),
        queries.len(),
        failed.join("\n\n")
    );
}

/// The bodies of the ```sql fenced blocks of a Markdown text.
fn sql_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        let fence = line.trim_start();
        match &mut current {
            None if fence.starts_with("```sql") => current = Some(String::new()),
            Some(block) if fence.starts_with("```") => {
                if !block.trim().is_empty() {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// A connection and its driver task, so that [`close`] can wait until it is closed: the
/// PGlite server behind `../shared/timescale/run.sh` serves one connection at a time.
async fn connect(url: &str) -> (Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, task)
}

async fn close(client: Client, connection: tokio::task::JoinHandle<()>) {
    drop(client);
    let _ = connection.await;
}

/// The same server URL pointing at another database.
fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url
        .rsplit_once('/')
        .expect("DATABASE_URL has a /database part");
    let query = url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{base}/{database}{query}")
}

#[test]
fn sql_blocks_are_found() {
    let md =
        "text\n```sql\nSELECT 1;\n```\n```sh\nls\n```\n  ```sql\nSELECT 2;\nSELECT 3;\n  ```\n";
    assert_eq!(sql_blocks(md), ["SELECT 1;\n", "SELECT 2;\nSELECT 3;\n"]);
}
