//! The analyst's SQL on both schemas: migrate, insert a few rows with INSERT over one
//! connection, refresh the aggregates, check the 3m..1d rollups against values computed
//! here, and run every ```sql block of `README.md` and `docs/sql.md` plus a query on every
//! table and view.
//!
//! * `analyst_sql_on_plain_postgresql` runs in the default suite, on a fresh database of
//!   the `./dev up` server (rollups are `date_bin` views there).
//! * `analyst_sql_on_timescaledb` runs when `TIMESCALE_URL` names a TimescaleDB, and is
//!   skipped otherwise: `./dev check-timescale URL` runs it (with `--timescale`, so a
//!   database that is not yet converted is converted). It keeps to one connection at a
//!   time and no COPY, so the PGlite build of `../shared/timescale/run.sh` can serve it.
//!   Its rows use a random instrument token and are deleted at the end.

use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::Rng;
use strikeflow::migrate::{migrate_database, migrate_database_with, MigrateOptions, TimescaleMode};
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

/// The rollups: name and width in minutes.
const ROLLUPS: [(&str, i64); 5] = [
    ("bars_3m", 3),
    ("bars_5m", 5),
    ("bars_15m", 15),
    ("bars_1h", 60),
    ("bars_1d", 1440),
];

/// How many one-minute bars the check inserts (ending with the current minute).
const BARS: i64 = 150;

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
        close(client, connection).await;
        Some((token, bars))
    };

    let report = migrate_database_with(&url, &options)
        .await
        .unwrap_or_else(|e| panic!("migrate --timescale on TIMESCALE_URL: {e:#}"));
    eprintln!(
        "migrated --timescale: applied {:?}, checksums recorded {:?}, timescaledb {}",
        report.applied, report.checksums_recorded, report.timescaledb
    );
    assert!(report.hypertables, "{report:?}");
    if let Some((token, bars)) = before {
        let (client, connection) = connect(&url).await;
        refresh(&client).await;
        check_rollups(&client, token, &bars, "after conversion").await;
        delete_rows(&client, token).await;
        close(client, connection).await;
    }
    exercise(&url, true).await;
}

fn random_token() -> i64 {
    900_000_000 + i64::from(rand::rng().random::<u16>())
}

async fn assert_views(client: &Client) {
    for (name, _) in ROLLUPS {
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
    for table in ["bars_1m", "ticks", "instruments"] {
        client
            .execute(
                &format!("DELETE FROM {table} WHERE instrument_token = $1"),
                &[&token],
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
    } else {
        assert_views(&client).await;
    }

    let token = random_token();
    let bars = insert_rows(&client, token).await;
    if timescale {
        refresh(&client).await;
    }
    check_rollups(&client, token, &bars, "after insert").await;

    if timescale {
        // Compress everything, then do what the sink does to a compressed chunk: upsert a
        // bar again (a reprocessed session) and insert ticks.
        for table in ["ticks", "bars_1m"] {
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
    }
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
    if timescale {
        refresh(&client).await;
    }
    check_rollups(&client, token, &bars, "after an upsert").await;

    run_documented_queries(&client).await;

    delete_rows(&client, token).await;
    if timescale {
        refresh(&client).await;
    }
    close(client, connection).await;
}

/// Hypertables, compression, policies, and refresh windows inside retention.
async fn check_timescale_layer(client: &Client) {
    let hypertables: Vec<(String, bool)> = client
        .query(
            "SELECT hypertable_name::text, compression_enabled FROM timescaledb_information.hypertables
             WHERE hypertable_name IN ('ticks', 'bars_1m') ORDER BY 1",
            &[],
        )
        .await
        .expect("listing hypertables")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        hypertables,
        [("bars_1m".to_owned(), true), ("ticks".to_owned(), true)]
    );
    let aggregates: Vec<String> = client
        .query(
            "SELECT view_name::text FROM timescaledb_information.continuous_aggregates ORDER BY 1",
            &[],
        )
        .await
        .expect("listing continuous aggregates")
        .iter()
        .map(|row| row.get(0))
        .collect();
    for (name, _) in ROLLUPS {
        assert!(
            aggregates.iter().any(|a| a == name),
            "{name}: {aggregates:?}"
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
    for (proc, table) in [
        ("policy_compression", "ticks"),
        ("policy_compression", "bars_1m"),
        ("policy_retention", "ticks"),
        ("policy_retention", "bars_1m"),
    ] {
        let prefix = format!("{proc} {table} ");
        assert!(
            jobs.iter().any(|j| j.starts_with(&prefix)),
            "{prefix}: {jobs:?}"
        );
    }
    // Every refresh window of an aggregate on bars_1m stops short of bars_1m's retention.
    let beyond: i64 = client
        .query_one(
            "SELECT count(*) FROM timescaledb_information.jobs j
             JOIN timescaledb_information.continuous_aggregates c
               ON c.materialization_hypertable_name = j.hypertable_name
             WHERE j.proc_name = 'policy_refresh_continuous_aggregate'
               AND c.hypertable_name = 'bars_1m'
               AND (j.config->>'start_offset')::interval >= (
                   SELECT (config->>'drop_after')::interval FROM timescaledb_information.jobs
                   WHERE proc_name = 'policy_retention' AND hypertable_name = 'bars_1m')",
            &[],
        )
        .await
        .expect("comparing refresh windows with retention")
        .get(0);
    assert_eq!(beyond, 0, "a refresh window reaches past retention");
    let refreshes: i64 = client
        .query_one(
            "SELECT count(*) FROM timescaledb_information.jobs
             WHERE proc_name = 'policy_refresh_continuous_aggregate'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(refreshes >= ROLLUPS.len() as i64, "{jobs:?}");
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
    for (name, _) in ROLLUPS {
        client
            .batch_execute(&format!(
                "CALL refresh_continuous_aggregate('{name}', NULL, NULL)"
            ))
            .await
            .unwrap_or_else(|e| panic!("refreshing {name}: {e:#}"));
    }
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
            .unwrap_or_else(|e| panic!("reading {name}: {e:#}"));
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
