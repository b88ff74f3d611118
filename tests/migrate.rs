//! The migration runner against the real PostgreSQL of `./dev up`: checksums (an edited,
//! applied migration is refused, naming it; databases from before checksums are adopted),
//! the lock timeout (naming who holds the lock), and TimescaleDB detection on a server
//! without it. Each test migrates a database of its own.

use std::time::{Duration, Instant};

use rand::Rng;
use strikeflow::migrate::{
    checksum, detect_extension, migrate_database, migrate_database_with, ExtensionStatus,
    MigrateError, MigrateOptions, TimescaleMode, HYPERTABLES, MIGRATIONS, MIGRATION_LOCK_KEY,
};
use tokio_postgres::{Client, NoTls};

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://strikeflow@127.0.0.1:15432/strikeflow".to_owned())
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

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url} (is PostgreSQL up? ./dev up): {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh, empty database, dropped when the test ends (even when it fails).
struct FreshDb {
    name: String,
    url: String,
}

impl FreshDb {
    async fn new(label: &str) -> FreshDb {
        let id: u32 = rand::rng().random();
        let name = format!("strikeflow_test_{label}_{id:08x}");
        connect(&server_url())
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating the test database");
        let url = with_database(&server_url(), &name);
        FreshDb { name, url }
    }
}

impl Drop for FreshDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: the test's may be gone.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&server_url(), NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn an_edited_applied_migration_is_refused_naming_it() {
    let db = FreshDb::new("checksum").await;
    let report = migrate_database(&db.url).await.expect("first migrate");
    assert_eq!(
        report.applied,
        MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>()
    );

    // The same database, a binary whose 0002 was edited after it ran.
    let edited = format!("{}\n-- an edit after the fact\n", MIGRATIONS[1].2);
    let mut migrations = MIGRATIONS.to_vec();
    migrations[1].2 = &edited;
    let options = MigrateOptions {
        migrations: &migrations,
        ..MigrateOptions::default()
    };
    let err = migrate_database_with(&db.url, &options)
        .await
        .expect_err("an edited migration must be refused");
    let message = err.to_string();
    assert!(
        matches!(err, MigrateError::ChecksumMismatch { .. }),
        "{message}"
    );
    assert!(
        message.contains("migration 0002_timescale was edited"),
        "{message}"
    );
    assert!(message.contains(&checksum(&edited)), "{message}");
    assert!(message.contains("new migration"), "{message}");

    // The unedited binary still migrates it (nothing to do).
    let report = migrate_database(&db.url).await.expect("unchanged migrate");
    assert!(report.applied.is_empty() && report.checksums_recorded.is_empty());
}

#[tokio::test]
async fn a_database_from_before_checksums_gets_them_recorded() {
    let db = FreshDb::new("legacy").await;
    // What the runner before checksums left: 0001 and 0002 applied, no checksum column.
    let client = connect(&db.url).await;
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    client.batch_execute(MIGRATIONS[0].2).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO schema_migrations (version, name) VALUES (1, 'core_tables'), (2, 'timescale')",
        )
        .await
        .unwrap();

    let report = migrate_database(&db.url)
        .await
        .expect("migrate a legacy database");
    assert_eq!(report.checksums_recorded, vec![1, 2]);
    assert_eq!(
        report.applied,
        MIGRATIONS
            .iter()
            .map(|m| m.0)
            .filter(|&v| v > 2)
            .collect::<Vec<_>>()
    );
    let rows = client
        .query(
            "SELECT version, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    for (row, migration) in rows.iter().zip(MIGRATIONS) {
        assert_eq!(row.get::<_, i32>(0), migration.0);
        assert_eq!(row.get::<_, String>(1), checksum(migration.2));
    }
    let again = migrate_database(&db.url).await.expect("second migrate");
    assert!(again.applied.is_empty() && again.checksums_recorded.is_empty());
}

#[tokio::test]
async fn migrate_gives_up_on_a_held_lock_within_its_timeout_naming_the_holder() {
    let db = FreshDb::new("lock").await;
    let (holder, connection) = format!("{}?application_name=lock-holder-test", db.url)
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();

    let options = MigrateOptions {
        lock_timeout: Duration::from_secs(1),
        ..MigrateOptions::default()
    };
    let start = Instant::now();
    let err = migrate_database_with(&db.url, &options)
        .await
        .expect_err("migrate must not wait for ever");
    let took = start.elapsed();
    let message = err.to_string();
    assert!(matches!(err, MigrateError::LockTimeout { .. }), "{message}");
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(message.contains("migration lock"), "{message}");
    assert!(message.contains("lock-holder-test"), "{message}");
    assert!(message.contains("--lock-timeout-secs"), "{message}");

    // Released: the next run gets it.
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .unwrap();
    migrate_database_with(&db.url, &options)
        .await
        .expect("migrate once the lock is free");
}

#[tokio::test]
async fn detection_requires_loadable_not_only_available() {
    let db = FreshDb::new("detect").await;
    let report = migrate_database(&db.url)
        .await
        .expect("migrate on plain PostgreSQL");
    let client = connect(&db.url).await;

    // The rule, shown with an extension every PostgreSQL ships and nobody preloads here:
    // its files are available, but it is not in shared_preload_libraries.
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        available,
        "contrib's pg_stat_statements is expected on the test server"
    );
    let status = detect_extension(&client, "pg_stat_statements")
        .await
        .unwrap();
    assert!(
        matches!(&status, ExtensionStatus::NotLoadable { reason } if reason.contains("shared_preload_libraries")),
        "{status:?}"
    );
    assert!(!status.usable());

    // TimescaleDB on this server: whatever it is, migrate succeeded and reported it.
    let timescaledb = detect_extension(&client, "timescaledb").await.unwrap();
    assert_eq!(report.timescaledb, timescaledb);
    if !timescaledb.usable() {
        assert!(!report.hypertables);
        // The rollups exist as plain views of the same names.
        let views: Vec<String> = client
            .query(
                "SELECT table_name::text FROM information_schema.views
                 WHERE table_schema = current_schema() AND table_name LIKE 'bars\\_%'
                 ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(
            views,
            ["bars_15m", "bars_1d", "bars_1h", "bars_3m", "bars_5m"]
        );

        // Asking for TimescaleDB where it cannot load is a clear error, not a half-conversion.
        let options = MigrateOptions {
            timescale: TimescaleMode::Convert,
            ..MigrateOptions::default()
        };
        let err = migrate_database_with(&db.url, &options)
            .await
            .expect_err("--timescale without TimescaleDB");
        let message = err.to_string();
        assert!(
            matches!(err, MigrateError::TimescaleUnavailable { .. }),
            "{message}"
        );
        assert!(message.contains("shared_preload_libraries"), "{message}");
    }
}

#[tokio::test]
async fn migration_6_lists_the_layer_once_and_summarises_chains_already_stored() {
    let db = FreshDb::new("upgrade6").await;
    // A database of the release before 0006, holding chain rows.
    let before_0006: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.0 < 6).collect();
    let options = MigrateOptions {
        migrations: &before_0006,
        ..MigrateOptions::default()
    };
    migrate_database_with(&db.url, &options)
        .await
        .expect("migrate 0001-0005");
    let client = connect(&db.url).await;
    // Two minutes of one chain: 10:00:05 and 10:00:40 (the later one has no PCR), 10:01:10.
    client
        .batch_execute(
            "INSERT INTO chain_analytics (underlying, expiry, ts, minute_close, time_to_expiry,
                 reference_price, reference_kind, atm_strike, pcr_oi, max_pain, total_ce_oi, total_pe_oi)
             VALUES ('NIFTY', '2026-12-08', '2026-12-02 10:00:05+05:30', false, 0.02, 24010, 'FUTURE', 24000, 0.9, 23900, 100, 90),
                    ('NIFTY', '2026-12-08', '2026-12-02 10:00:40+05:30', false, 0.02, 24040, 'SPOT', 24050, NULL, 23950, 110, 95),
                    ('NIFTY', '2026-12-08', '2026-12-02 10:01:10+05:30', true, 0.02, 24020, 'FUTURE', 24000, 1.1, 24000, 120, 132)",
        )
        .await
        .expect("inserting chain rows");

    let report = migrate_database(&db.url).await.expect("migrate 0006");
    assert_eq!(report.applied, [6]);
    assert!(!report.hypertables);

    // The layer's table list is the runner's, and 0006 replaced 0004's
    // strikeflow_enable_timescaledb(interval, interval) instead of overloading it (the
    // runner calls it without arguments, which two overloads would make ambiguous).
    let listed: Vec<String> = client
        .query("SELECT name FROM strikeflow_hypertables()", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(listed, HYPERTABLES);
    let signatures: Vec<String> = client
        .query(
            "SELECT oid::regprocedure::text || ' defaults ' || pronargdefaults FROM pg_proc
             WHERE proname = 'strikeflow_enable_timescaledb'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        signatures,
        ["strikeflow_enable_timescaledb(interval,interval,interval,interval,interval,interval,interval) defaults 7"]
    );

    // chain_summary_1m is a view here, indexed for its minute filter, and summarises the
    // rows stored before it existed: per minute the last emission's values (a NULL there
    // stays NULL) and the count.
    let kind: String = client
        .query_one(
            "SELECT relkind::text FROM pg_class WHERE oid = 'chain_summary_1m'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "v");
    let rows: Vec<String> = client
        .query(
            "SELECT to_char(minute AT TIME ZONE 'Asia/Kolkata', 'HH24:MI:SS') || ' '
                    || to_char(last_ts AT TIME ZONE 'Asia/Kolkata', 'HH24:MI:SS') || ' '
                    || emissions || ' ' || coalesce(pcr_oi::text, 'NULL') || ' ' || max_pain
                    || ' ' || atm_strike || ' ' || reference_kind || ' ' || total_ce_oi || ' '
                    || total_pe_oi
             FROM chain_summary_1m
             WHERE underlying = 'NIFTY' AND expiry = '2026-12-08'
               AND minute >= '2026-12-02 10:00:00+05:30' AND minute < '2026-12-02 10:05:00+05:30'
             ORDER BY minute",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        rows,
        [
            "10:00:00 10:00:40 2 NULL 23950 24050 SPOT 110 95",
            "10:01:00 10:01:10 1 1.1 24000 24000 FUTURE 120 132"
        ]
    );
    // Three rows are read fastest by a sequential scan; without it the plan shows whether
    // the minute range can be an index condition.
    client
        .batch_execute("SET enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN (COSTS OFF) SELECT * FROM chain_summary_1m
             WHERE underlying = 'NIFTY' AND expiry = '2026-12-08'
               AND minute >= '2026-12-02 10:00:00+05:30' AND minute < '2026-12-02 10:05:00+05:30'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("chain_analytics_minute_idx") && plan.contains("date_bin"),
        "the minute range is an index condition:\n{plan}"
    );
}
