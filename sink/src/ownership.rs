//! One sink per name: a PostgreSQL advisory lock on the sink's own connection.
//!
//! Offsets in `sink_offsets` are keyed by the sink's name, so two processes with the same
//! name would read the same partitions and both advance the same offsets: rows stored twice.
//! The sink therefore takes a session-level advisory lock keyed by its name when it starts
//! ([`claim`]) and refuses to run when another session holds it, naming that session. The
//! lock lives exactly as long as the sink's connection, so a crashed sink's lock goes with
//! its session; and every batch transaction checks that the lock is still held by its own
//! session before it stores offsets ([`verify`]), so a batch can never commit on a session
//! that is not the owner.

use std::time::Duration;

use tokio::time::Instant;
use tokio_postgres::{Client, GenericClient};
use tracing::info;

use crate::SinkError;

/// The first of the two advisory-lock keys, saying "a strikeflow sink"; the second is
/// `hashtext(consumer_name)`. Visible in `pg_locks` as `classid = 7373020`, `objsubid = 2`
/// (two-key form), `objid` the hash. (`migrate` uses 7373010 with the one-key form.)
pub const SINK_LOCK_CLASS: i32 = 7_373_020;

/// How long a starting sink keeps trying for its lock before refusing. A sink restarted
/// right after a crash or `kill -9` may find its predecessor's session still closing on the
/// server for a moment; a live sink holds the lock for good, so waiting longer is pointless.
const CLAIM_GRACE: Duration = Duration::from_secs(3);
/// Pause between attempts within [`CLAIM_GRACE`].
const CLAIM_RETRY: Duration = Duration::from_millis(100);

/// The `application_name` of a sink's session, so `pg_stat_activity` (and a refused sink's
/// error) says which sink a connection belongs to.
pub(crate) fn application_name(consumer: &str) -> String {
    format!("strikeflow sink {consumer}")
}

/// Takes the advisory lock of `consumer` on `client`'s session, or fails with
/// [`SinkError::AlreadyRunning`] naming the session that holds it.
pub(crate) async fn claim(client: &Client, consumer: &str) -> Result<(), SinkError> {
    let deadline = Instant::now() + CLAIM_GRACE;
    loop {
        let row = client
            .query_one(
                "SELECT pg_try_advisory_lock($1, hashtext($2))",
                &[&SINK_LOCK_CLASS, &consumer],
            )
            .await?;
        if row.get::<_, bool>(0) {
            info!(consumer, "sink ownership lock taken");
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(SinkError::AlreadyRunning {
                consumer: consumer.to_owned(),
                holder: holder(client, consumer).await?,
            });
        }
        tokio::time::sleep(CLAIM_RETRY).await;
    }
}

/// Describes the session holding `consumer`'s lock: pid, application name, client address
/// and since when, from `pg_locks` and `pg_stat_activity`.
async fn holder(client: &Client, consumer: &str) -> Result<String, SinkError> {
    let rows = client
        .query(
            "SELECT l.pid, coalesce(a.application_name, ''), \
             coalesce(host(a.client_addr), 'local socket'), \
             coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '?') \
             FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted \
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND l.classid = ($1::int4)::oid AND l.objid = hashtext($2)::oid AND l.objsubid = 2",
            &[&SINK_LOCK_CLASS, &consumer],
        )
        .await?;
    Ok(match rows.first() {
        Some(row) => format!(
            "pid {} (application_name '{}', client {}, connected {})",
            row.get::<_, i32>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3),
        ),
        // Released between the attempt and this look-up: rare, and a retry will tell.
        None => "a session that has just released it".to_owned(),
    })
}

/// Checks, inside a batch transaction, that this session still holds `consumer`'s lock;
/// [`SinkError::Fenced`] otherwise, and the caller's transaction is rolled back (dropped).
pub(crate) async fn verify(tx: &impl GenericClient, consumer: &str) -> Result<(), SinkError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND pid = pg_backend_pid() AND classid = ($1::int4)::oid \
             AND objid = hashtext($2)::oid AND objsubid = 2)",
            &[&SINK_LOCK_CLASS, &consumer],
        )
        .await?;
    if row.get::<_, bool>(0) {
        Ok(())
    } else {
        Err(SinkError::Fenced {
            consumer: consumer.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_names_its_sink() {
        assert_eq!(application_name("eu-1"), "strikeflow sink eu-1");
    }
}
