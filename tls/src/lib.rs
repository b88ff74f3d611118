//! TLS to PostgreSQL and Redis, decided by their connection URLs and built in one place.
//!
//! Every stage that talks to PostgreSQL (migrate, ingest's instrument load, the sink, push's
//! readiness check, the API's pool, the benches) connects through [`postgres`], and every
//! Redis client (push, the API's cache) comes from [`redis_client`], so what a URL's
//! `sslmode`, `sslrootcert` or `rediss://` mean is decided once. The URLs stay the only
//! connection setting: a `DATABASE_URL` that works with `psql` works here, CA file and all.
//!
//! TLS always verifies the server's certificate chain (against `sslrootcert`, or the
//! system's roots with `sslrootcert=system` or when none is given); there is no mode that
//! accepts any certificate. rustls with ring does the work, as everywhere else in the tree.
//! (Kafka's TLS is librdkafka's own, configured in `strikeflow-kafka`.)

mod postgres;
mod redis;
mod roots;

pub use postgres::{postgres, PgSslMode, PgTarget, PgTls, PgTlsConnect, PgTlsStream};
pub use redis::redis_client;

use std::path::PathBuf;

/// Why TLS settings could not be built from a connection URL. Messages name the URL
/// parameter at fault and never repeat a password.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PostgreSQL connection string did not parse (tokio-postgres's message, which never
    /// repeats the password).
    #[error("not a PostgreSQL connection string: {0}")]
    Postgres(#[source] tokio_postgres::Error),
    /// The Redis URL did not parse, or the redis crate refused its TLS settings.
    #[error("not a usable Redis URL: {0}")]
    Redis(#[source] ::redis::RedisError),
    /// A parameter has a value this build does not understand.
    #[error("{param}={value} is not supported: {expected}")]
    Unsupported {
        /// The URL parameter.
        param: &'static str,
        /// Its value.
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// A CA file could not be read.
    #[error("sslrootcert {path}: {source}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A CA file holds no usable PEM certificate.
    #[error("sslrootcert {path}: no PEM certificate in the file")]
    EmptyCa {
        /// The file.
        path: PathBuf,
    },
    /// A CA certificate was refused by rustls.
    #[error("sslrootcert {path}: {source}")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// rustls's reason.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the client configuration built from valid roots (not expected with
    /// ring and the default protocol versions; kept as an error rather than a panic).
    #[error("building the TLS client configuration: {0}")]
    Config(String),
    /// The system's trust store could not be read or is empty.
    #[error("the system's CA certificates: {0}")]
    SystemRoots(String),
}
