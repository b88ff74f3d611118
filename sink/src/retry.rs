//! Telling a lost PostgreSQL (reconnect) from a fault reconnecting cannot cure (stop).

use crate::SinkError;

/// What one PostgreSQL session achieved before it ended, for the reconnect loop.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The session took the sink's ownership lock.
    pub(crate) owned: bool,
    /// At least one batch was committed on it (the backoff starts over).
    pub(crate) committed: bool,
}

impl SinkError {
    /// Whether this error means PostgreSQL went away (the sink reconnects) rather than a
    /// fault that reconnecting cannot cure. `owned_before`: an earlier session of this
    /// process held the lock, so a lock still held by "another" session is most likely
    /// that dead session not yet reaped by the server, worth waiting for.
    pub(crate) fn is_connection_lost(&self, owned_before: bool) -> bool {
        match self {
            SinkError::Postgres(e) => postgres_unreachable(e),
            SinkError::AlreadyRunning { .. } => owned_before,
            _ => false,
        }
    }
}

/// A connection refused, reset or closed, or a server shutting down, starting up or out of
/// resources: SQLSTATE classes 08, 53, 57P and 58, plus serialization failures and
/// deadlocks (40001, 40P01), which a new attempt resolves. Everything else (a missing
/// table, a refused password, a data error) stays an error.
fn postgres_unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            ["08", "53", "57P", "58"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "40001"
                || code == "40P01"
        }
        // No SQLSTATE: the error came from the socket (connect, read, write, timeout).
        None => std::error::Error::source(e).is_some_and(|cause| cause.is::<std::io::Error>()),
    }
}
