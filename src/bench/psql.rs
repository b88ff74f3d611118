//! The reference of `bench sink`: the same rows loaded by `psql \copy` from a file, and the
//! files it reads (tick rows written as CSV here; other tables exported by `\copy … TO`).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strikeflow_schemas::Tick;

/// The `ticks` columns, in the order the CSV file holds them.
pub(super) const TICK_COLUMNS: &str =
    "ts, instrument_token, ltp, last_qty, volume, oi, bid, bid_qty, ask, ask_qty";

/// Fails with what to install when `psql` cannot be run.
pub(super) fn require_psql() -> Result<()> {
    match Command::new("psql").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => bail!(
            "`psql --version` failed ({}): the reference of `bench sink` loads rows with psql \\copy",
            out.status
        ),
        Err(e) => bail!(
            "psql not found ({e}): the reference of `bench sink` loads rows with psql \\copy; \
             install the PostgreSQL client (Debian: apt-get install postgresql-client)"
        ),
    }
}

/// Reports, as a notice, the CPU time the session's backend has used (`cpu_ns=…`, from
/// `/proc/<pid>/schedstat` read by the server); silent where that cannot be read (not
/// Linux, or a role without `pg_read_server_files`).
const BACKEND_CPU: &str = "DO $$ BEGIN \
    RAISE NOTICE 'cpu_ns=%', split_part(pg_read_file('/proc/' || pg_backend_pid() || '/schedstat'), ' ', 1); \
    EXCEPTION WHEN OTHERS THEN NULL; END $$";

/// How long a psql run took, and the CPU time of its PostgreSQL backend when known.
pub(super) struct Run {
    /// psql's start-up and connection included.
    pub(super) wall: Duration,
    /// The backend's CPU time over the whole session (connection set-up included).
    pub(super) backend_cpu: Option<Duration>,
}

/// Runs one psql meta-command or statement against `url`, stopping at the first error,
/// then asks the backend for its CPU time; the CPU query is not part of the timed work but
/// is inside `wall` (a round trip).
pub(super) fn run(url: &str, command: &str) -> Result<Run> {
    let started = Instant::now();
    let out = Command::new("psql")
        .arg(url)
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            command,
            "-c",
            BACKEND_CPU,
        ])
        .output()
        .context("running psql")?;
    let wall = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "psql -c {command:?} failed ({}): {}",
            out.status,
            stderr.trim()
        );
    }
    let backend_cpu = stderr
        .split_once("cpu_ns=")
        .and_then(|(_, rest)| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos);
    Ok(Run { wall, backend_cpu })
}

/// `\copy target FROM 'file' (FORMAT format)`, timed; `target` is a table, optionally
/// with a column list.
pub(super) fn copy_from(url: &str, target: &str, file: &Path, format: &str) -> Result<Run> {
    run(
        url,
        &format!("\\copy {target} FROM {} (FORMAT {format})", quote(file)),
    )
}

/// `\copy table TO 'file' (FORMAT format)`: every column, the file a reference then loads.
pub(super) fn copy_to(url: &str, table: &str, file: &Path, format: &str) -> Result<()> {
    run(
        url,
        &format!("\\copy {table} TO {} (FORMAT {format})", quote(file)),
    )
    .map(drop)
}

/// A file name as a psql string literal.
fn quote(file: &Path) -> String {
    format!("'{}'", file.display().to_string().replace('\'', "''"))
}

/// Writes tick rows the way `ticks` stores them: timestamps in UTC with microseconds,
/// floats in their shortest round-trip form, so the loaded rows equal the sink's exactly.
pub(super) struct TickCsv {
    out: BufWriter<std::fs::File>,
}

impl TickCsv {
    pub(super) fn create(path: &Path) -> Result<Self> {
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
        })
    }

    pub(super) fn write(&mut self, t: &Tick) -> Result<()> {
        let ts = chrono::DateTime::from_timestamp_micros(t.exchange_ts)
            .context("tick timestamp out of range")?
            .format("%Y-%m-%d %H:%M:%S%.6f+00");
        writeln!(
            self.out,
            "{ts},{},{},{},{},{},{},{},{},{}",
            t.instrument_token,
            t.ltp,
            t.last_qty,
            t.volume,
            t.oi,
            t.bid,
            t.bid_qty,
            t.ask,
            t.ask_qty
        )?;
        Ok(())
    }

    pub(super) fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
