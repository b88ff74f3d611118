//! Database migrations and Kafka topics: everything `strikeflow migrate` sets up.

use tokio_postgres::NoTls;

/// The SQL migrations in `migrations/`, in the order they apply. Embedded so the binary
/// migrates without the source tree.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "core_tables",
        include_str!("../migrations/0001_core_tables.sql"),
    ),
    (
        2,
        "timescale",
        include_str!("../migrations/0002_timescale.sql"),
    ),
];

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run (empty when the schema was current).
    pub applied: Vec<i32>,
    /// Whether the TimescaleDB extension is installed in the database.
    pub timescaledb: bool,
}

/// Applies every migration not yet recorded in `schema_migrations`, each in its own
/// transaction. An advisory lock serialises concurrent runs (two stages starting at once).
pub async fn migrate_database(
    database_url: &str,
) -> Result<MigrationReport, tokio_postgres::Error> {
    let (mut client, connection) = tokio_postgres::connect(database_url, NoTls).await?;
    let connection = tokio::spawn(connection);
    // NOTICEs (such as "timescaledb is not available") are expected; the report says it.
    client
        .batch_execute(
            "SET client_min_messages = warning;
             SELECT pg_advisory_lock(7373010);
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let done = client
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )
            .await?
            .is_some();
        if done {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, name, "applied migration");
        applied.push(version);
    }
    let timescaledb = client
        .query_opt(
            "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'",
            &[],
        )
        .await?
        .is_some();
    client
        .batch_execute("SELECT pg_advisory_unlock(7373010)")
        .await?;
    drop(client);
    let _ = connection.await;
    Ok(MigrationReport {
        applied,
        timescaledb,
    })
}
