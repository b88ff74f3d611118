//! Database migrations: everything `strikeflow migrate` does to the database.
//!
//! Each migration is a SQL file applied once, in its own transaction, and recorded in
//! `schema_migrations` with the SHA-256 of its text, so an applied migration that was edited
//! afterwards is refused instead of silently diverging from the databases that ran the old
//! text. Runs are serialised by an advisory lock, taken with a timeout. TimescaleDB is used
//! when it can be loaded (`migrations/0004_rollups_and_timescale.sql` explains the rule), and
//! a database that gains it later is converted with [`TimescaleMode::Convert`].
//!
//! The schema registry's subjects are in [`schemas`].

pub mod schemas;

use std::fmt;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

/// The SQL migrations in `migrations/`, in the order they apply: `(version, name, SQL)`,
/// the file being `migrations/NNNN_name.sql`. Embedded so the binary migrates without the
/// source tree. To add one, append an entry; never edit an applied file (its checksum is
/// recorded, and `migrate` refuses a changed one).
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
    (
        3,
        "stored_analytics",
        include_str!("../migrations/0003_stored_analytics.sql"),
    ),
    (
        4,
        "rollups_and_timescale",
        include_str!("../migrations/0004_rollups_and_timescale.sql"),
    ),
    (
        5,
        "analyst_functions",
        include_str!("../migrations/0005_analyst_functions.sql"),
    ),
    (
        6,
        "analytics_timescale",
        include_str!("../migrations/0006_analytics_timescale.sql"),
    ),
];

/// The tables the TimescaleDB layer makes hypertables, as `strikeflow_hypertables()` of
/// migration 6 lists them (a test keeps the two equal). The layer is complete when all of
/// them are hypertables; `instrument_history` and the other master tables stay plain.
pub const HYPERTABLES: [&str; 7] = [
    "ticks",
    "bars_1m",
    "strike_analytics",
    "chain_analytics",
    "moneyness_points",
    "indicator_values",
    "late_ticks",
];

/// The advisory lock `migrate` holds while it runs (per database), so two stages starting at
/// once do not apply the same migration twice. Public so that tests and operators can see
/// who holds it (`pg_locks`: `classid = 0, objid = 7373010, objsubid = 1`).
pub const MIGRATION_LOCK_KEY: i64 = 7_373_010;

/// How long `migrate` waits for another run's lock by default: long enough for a normal
/// migration elsewhere to finish, short enough that a stuck one is reported, not waited on.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// How a migration run behaves; [`Default`] is what plain `strikeflow migrate` does.
#[derive(Debug, Clone, Copy)]
pub struct MigrateOptions<'a> {
    /// Give up (with [`MigrateError::LockTimeout`]) when another run holds the lock longer.
    pub lock_timeout: Duration,
    /// Whether to use TimescaleDB; see [`TimescaleMode`].
    pub timescale: TimescaleMode,
    /// The migrations to apply, normally [`MIGRATIONS`]; a parameter so tests can present an
    /// edited migration.
    pub migrations: &'a [(i32, &'a str, &'a str)],
}

impl Default for MigrateOptions<'static> {
    fn default() -> Self {
        Self {
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            timescale: TimescaleMode::Auto,
            migrations: MIGRATIONS,
        }
    }
}

/// Whether `migrate` uses TimescaleDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimescaleMode {
    /// When it is loadable as migration 4 applies (a new database; migration 6 completes
    /// the layer while its tables are still empty); a database already migrated stays as it
    /// is, because converting moves every row and locks the tables, so it is never done
    /// implicitly ([`MigrationReport::timescale_convertible`] says when
    /// [`TimescaleMode::Convert`] could).
    #[default]
    Auto,
    /// Convert now (`strikeflow migrate --timescale`): every table of [`HYPERTABLES`] a
    /// hypertable with compression and retention, the rollups and `chain_summary_1m`
    /// continuous aggregates, for a database that gained TimescaleDB after it was created
    /// or was converted before migration 6. Keeps retentions already set (calls
    /// `strikeflow_enable_timescaledb()` with no arguments). Fails when the extension
    /// cannot be loaded.
    Convert,
    /// Keep plain tables and views even where TimescaleDB loads (`--no-timescale`), for
    /// a new database; it does not undo a conversion.
    Off,
}

/// Whether an extension can be used on the server, as `strikeflow_extension_status()`
/// (migration 4) decides: available is not enough, TimescaleDB must be preloaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionStatus {
    /// Created in this database (so its library loaded).
    Installed {
        /// `pg_extension.extversion`.
        version: String,
    },
    /// Not created yet, but available and preloaded (or a rolled-back `CREATE EXTENSION`
    /// succeeded where this role may not read `shared_preload_libraries`).
    Loadable,
    /// Its files are installed but it cannot be created here.
    NotLoadable {
        /// Why, e.g. not listed in `shared_preload_libraries`.
        reason: String,
    },
    /// The server has no such extension.
    NotAvailable,
}

impl ExtensionStatus {
    /// Whether the TimescaleDB layer can be (or is) used.
    pub fn usable(&self) -> bool {
        matches!(self, Self::Installed { .. } | Self::Loadable)
    }

    /// Reads the text `strikeflow_extension_status()` returns.
    fn parse(text: &str) -> Self {
        if let Some(version) = text.strip_prefix("installed ") {
            Self::Installed {
                version: version.to_owned(),
            }
        } else if text == "loadable" {
            Self::Loadable
        } else if text == "not available" {
            Self::NotAvailable
        } else {
            let reason = text.strip_prefix("not loadable: ").unwrap_or(text);
            Self::NotLoadable {
                reason: reason.to_owned(),
            }
        }
    }
}

impl fmt::Display for ExtensionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Installed { version } => write!(f, "installed (version {version})"),
            Self::Loadable => f.write_str("loadable, not yet installed in this database"),
            Self::NotLoadable { reason } => write!(f, "not loadable: {reason}"),
            Self::NotAvailable => f.write_str("not available on this server"),
        }
    }
}

/// What `migrate` did and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this run (empty when the schema was current).
    pub applied: Vec<i32>,
    /// Versions applied before checksums existed, whose checksum this run recorded.
    pub checksums_recorded: Vec<i32>,
    /// TimescaleDB on this server and database.
    pub timescaledb: ExtensionStatus,
    /// Whether every table of [`HYPERTABLES`] is a hypertable (the TimescaleDB layer is in
    /// use and complete). False for a database converted before migration 6 whose analytics
    /// tables held rows when it was applied: migration 6 does not move rows implicitly, and
    /// [`MigrationReport::timescale_convertible`] then asks for `--timescale`.
    pub hypertables: bool,
}

impl MigrationReport {
    /// Whether TimescaleDB could be used but this database is still plain: the cue to run
    /// `strikeflow migrate --timescale` ([`TimescaleMode::Convert`]).
    pub fn timescale_convertible(&self) -> bool {
        self.timescaledb.usable() && !self.hypertables
    }
}

/// Why `migrate` stopped. Each variant names what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The server did not accept the connection.
    #[error("connecting to the database")]
    Connect(#[source] tokio_postgres::Error),
    /// The connection string or its TLS settings (`sslmode`, the `sslrootcert` file) are
    /// unusable.
    #[error("the database URL")]
    Url(#[source] strikeflow_tls::TlsError),
    /// A statement of the runner itself failed.
    #[error("{what}")]
    Database {
        /// What the runner was doing.
        what: &'static str,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// Another run held the lock for the whole timeout.
    #[error(
        "another migration run holds the migration lock on this database \
         (advisory lock {MIGRATION_LOCK_KEY}, {holder}); gave up after {waited:.1?}: \
         wait for it to finish or stop it, or raise --lock-timeout-secs"
    )]
    LockTimeout {
        /// How long this run waited.
        waited: Duration,
        /// Who holds it, as far as `pg_stat_activity` tells.
        holder: String,
    },
    /// An applied migration's text no longer matches the checksum recorded when it ran.
    #[error(
        "migration {label} was edited after it was applied to this database \
         (checksum recorded {recorded}, the file now has {current}); an applied migration \
         must not change: restore the file and put the change in a new migration \
         (migrations/NNNN_name.sql), or, for a throw-away development database, recreate it"
    )]
    ChecksumMismatch {
        /// `NNNN_name`, the migration's file name without `.sql`.
        label: String,
        /// The checksum in `schema_migrations`.
        recorded: String,
        /// The checksum of the text this binary carries.
        current: String,
    },
    /// A migration's SQL failed; its transaction was rolled back.
    #[error("applying migration {label}")]
    Apply {
        /// `NNNN_name`.
        label: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// `--timescale` on a server where TimescaleDB cannot be loaded.
    #[error(
        "--timescale: TimescaleDB is {status}; it must be available and listed in \
         shared_preload_libraries (then restart the server)"
    )]
    TimescaleUnavailable {
        /// What detection found.
        status: ExtensionStatus,
    },
    /// `strikeflow_enable_timescaledb()` failed; its transaction was rolled back.
    #[error("converting the database to TimescaleDB (SELECT strikeflow_enable_timescaledb())")]
    EnableTimescale(#[source] tokio_postgres::Error),
}

/// The checksum recorded for a migration: SHA-256 (hex) of its text with CRLF line endings
/// read as LF, so a checkout with `core.autocrlf` does not look like an edit.
pub fn checksum(sql: &str) -> String {
    let digest = Sha256::digest(sql.replace("\r\n", "\n").as_bytes());
    digest.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// `NNNN_name`: how errors and logs name a migration (its file name without `.sql`).
fn label(version: i32, name: &str) -> String {
    format!("{version:04}_{name}")
}

/// [`migrate_database_with`] with the defaults of plain `strikeflow migrate`.
pub async fn migrate_database(database_url: &str) -> Result<MigrationReport, MigrateError> {
    migrate_database_with(database_url, &MigrateOptions::default()).await
}

/// Applies every migration not yet recorded in `schema_migrations`, each in its own
/// transaction, after checking the recorded checksums; with `options.timescale`, then
/// converts the database to TimescaleDB. Uses one connection (the TimescaleDB check server
/// accepts only one), closed before returning.
pub async fn migrate_database_with(
    database_url: &str,
    options: &MigrateOptions<'_>,
) -> Result<MigrationReport, MigrateError> {
    let mut target = strikeflow_tls::postgres(database_url).map_err(MigrateError::Url)?;
    if target.config.get_application_name().is_none() {
        // Named, so a run waiting for the lock can say who holds it.
        target.config.application_name("strikeflow migrate");
    }
    let (mut client, connection) = target.connect().await.map_err(MigrateError::Connect)?;
    let connection = tokio::spawn(connection);
    let result = run(&mut client, options).await;
    // Closing the connection releases the advisory lock on every path.
    drop(client);
    let _ = connection.await;
    result
}

/// Everything after connecting; the caller closes the connection whatever this returns.
async fn run(
    client: &mut Client,
    options: &MigrateOptions<'_>,
) -> Result<MigrationReport, MigrateError> {
    let db = |what: &'static str| move |source| MigrateError::Database { what, source };
    // NOTICEs (such as "timescaledb is not available") are expected; the report says it.
    client
        .batch_execute("SET client_min_messages = warning")
        .await
        .map_err(db("setting up the session"))?;
    if options.timescale == TimescaleMode::Off {
        // Read by migration 4.
        client
            .batch_execute("SET strikeflow.timescale = off")
            .await
            .map_err(db("setting up the session"))?;
    }
    acquire_lock(client, options.lock_timeout).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version integer PRIMARY KEY,
                 name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now(),
                 checksum text);
             ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text",
        )
        .await
        .map_err(db("creating schema_migrations"))?;
    let checksums_recorded = check_applied(client, options.migrations).await?;

    let mut applied = Vec::new();
    let done: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(db("reading schema_migrations"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    for &(version, name, sql) in options.migrations {
        if done.contains(&version) {
            continue;
        }
        let label = label(version, name);
        let apply = |source| MigrateError::Apply {
            label: label.clone(),
            source,
        };
        let tx = client.transaction().await.map_err(apply)?;
        tx.batch_execute(sql).await.map_err(apply)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[&version, &name, &checksum(sql)],
        )
        .await
        .map_err(apply)?;
        tx.commit().await.map_err(apply)?;
        tracing::info!(migration = %label, "applied migration");
        applied.push(version);
    }

    let mut timescaledb = detect_extension(client, "timescaledb").await?;
    if options.timescale == TimescaleMode::Convert {
        if !timescaledb.usable() {
            return Err(MigrateError::TimescaleUnavailable {
                status: timescaledb,
            });
        }
        client
            .batch_execute("SELECT strikeflow_enable_timescaledb()")
            .await
            .map_err(MigrateError::EnableTimescale)?;
        timescaledb = detect_extension(client, "timescaledb").await?;
    }
    let hypertables = match timescaledb {
        ExtensionStatus::Installed { .. } => {
            let names: Vec<&str> = HYPERTABLES.to_vec();
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM timescaledb_information.hypertables
                     WHERE hypertable_schema = current_schema()
                       AND hypertable_name::text = ANY ($1)",
                    &[&names],
                )
                .await
                .map_err(db("listing hypertables"))?
                .get(0);
            n == HYPERTABLES.len() as i64
        }
        _ => false,
    };
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .map_err(db("releasing the migration lock"))?;
    Ok(MigrationReport {
        applied,
        checksums_recorded,
        timescaledb,
        hypertables,
    })
}

/// Takes the migration lock, polling `pg_try_advisory_lock` until `timeout` (a blocking
/// `pg_advisory_lock` could wait forever, and could not say who is in the way).
async fn acquire_lock(client: &Client, timeout: Duration) -> Result<(), MigrateError> {
    let start = Instant::now();
    let mut said = false;
    loop {
        let locked: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
            .await
            .map_err(|source| MigrateError::Database {
                what: "taking the migration lock",
                source,
            })?
            .get(0);
        if locked {
            return Ok(());
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(MigrateError::LockTimeout {
                waited,
                holder: lock_holder(client).await,
            });
        }
        if !said {
            tracing::info!(?timeout, "waiting for another migration run's lock");
            said = true;
        }
        tokio::time::sleep((timeout - waited).min(Duration::from_millis(200))).await;
    }
}

/// Who holds the migration lock, for the timeout message.
async fn lock_holder(client: &Client) -> String {
    let row = client
        .query_opt(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
                    a.backend_start::text
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted
               AND l.classid = 0 AND l.objid::bigint = $1 AND l.objsubid = 1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1",
            &[&MIGRATION_LOCK_KEY],
        )
        .await;
    match row {
        Ok(Some(row)) => {
            let (pid, app, state, since): (i32, String, String, Option<String>) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            format!(
                "held by pid {pid}, application_name '{app}', state {state}, connected since {}",
                since.unwrap_or_default()
            )
        }
        _ => "held by another session".to_owned(),
    }
}

/// Refuses applied migrations whose text changed, and records the checksum of those applied
/// before checksums existed. Returns the versions whose checksum it recorded.
///
/// A row without a checksum was applied by a binary from before checksums (versions 1 and
/// 2 at most). What text it ran cannot be known, so the current text's checksum is recorded
/// ("trust on first use"): from then on, edits are refused. This is safe for migration 2,
/// whose text changed in the same release: every version of it leaves a state migration 4
/// completes.
async fn check_applied(
    client: &Client,
    migrations: &[(i32, &str, &str)],
) -> Result<Vec<i32>, MigrateError> {
    let rows = client
        .query(
            "SELECT version, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(|source| MigrateError::Database {
            what: "reading schema_migrations",
            source,
        })?;
    let mut unrecorded = Vec::new();
    for row in &rows {
        let (version, recorded): (i32, Option<String>) = (row.get(0), row.get(1));
        let Some(&(_, name, sql)) = migrations.iter().find(|m| m.0 == version) else {
            tracing::warn!(
                version,
                "schema_migrations lists a migration this binary does not know (applied by a newer one?)"
            );
            continue;
        };
        let current = checksum(sql);
        match recorded {
            Some(recorded) if recorded != current => {
                return Err(MigrateError::ChecksumMismatch {
                    label: label(version, name),
                    recorded,
                    current,
                })
            }
            Some(_) => {}
            None => unrecorded.push((version, current)),
        }
    }
    let mut recorded = Vec::new();
    for (version, current) in unrecorded {
        client
            .execute(
                "UPDATE schema_migrations SET checksum = $2 WHERE version = $1",
                &[&version, &current],
            )
            .await
            .map_err(|source| MigrateError::Database {
                what: "recording checksums",
                source,
            })?;
        tracing::info!(
            version,
            "recorded the checksum of a migration applied before checksums"
        );
        recorded.push(version);
    }
    Ok(recorded)
}

/// Whether `extension` can be used here (see [`ExtensionStatus`]). Needs migration 4, which
/// defines the SQL function holding the rule, so the migration, this report and a DBA in
/// psql agree. Generic in the name so the rule can be tested with an extension every
/// PostgreSQL ships.
pub async fn detect_extension(
    client: &Client,
    extension: &str,
) -> Result<ExtensionStatus, MigrateError> {
    let text: String = client
        .query_one("SELECT strikeflow_extension_status($1)", &[&extension])
        .await
        .map_err(|source| MigrateError::Database {
            what: "detecting TimescaleDB (strikeflow_extension_status)",
            source,
        })?
        .get(0);
    Ok(ExtensionStatus::parse(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_ignore_line_endings_only() {
        assert_eq!(
            checksum("SELECT 1;\r\nSELECT 2;\n"),
            checksum("SELECT 1;\nSELECT 2;\n")
        );
        assert_ne!(checksum("SELECT 1;\n"), checksum("SELECT 1;\n-- edited\n"));
        assert_eq!(checksum("").len(), 64);
    }

    #[test]
    fn versions_are_unique_increasing_and_labelled_like_their_files() {
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.0).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
        assert_eq!(label(2, "timescale"), "0002_timescale");
    }

    #[test]
    fn extension_status_reads_the_sql_function() {
        assert_eq!(
            ExtensionStatus::parse("installed 2.23.0"),
            ExtensionStatus::Installed {
                version: "2.23.0".into()
            }
        );
        assert_eq!(
            ExtensionStatus::parse("loadable"),
            ExtensionStatus::Loadable
        );
        assert_eq!(
            ExtensionStatus::parse("not available"),
            ExtensionStatus::NotAvailable
        );
        let status = ExtensionStatus::parse(
            "not loadable: available but not in shared_preload_libraries ('')",
        );
        assert!(!status.usable());
        assert!(status.to_string().contains("shared_preload_libraries"));
    }
}
