//! The pool and the one way handlers reach PostgreSQL: [`Db::query`], one statement.
//!
//! Statements are sent with `query_typed`: an unnamed statement parsed, bound and executed
//! in one round trip, with the parameter types given by the [`Sql`] beside its text. So a
//! request costs one round trip even on a fresh connection (no prepare), and PostgreSQL
//! plans each statement with the actual values, which is what lets the analyst functions of
//! `migrations/0005_analyst_functions.sql` pick one rollup and reach the primary keys.

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use crate::error::Problem;
use crate::{metrics, ApiConfig, ApiError};

/// A statement: its name (for metrics and logs), its text, and its parameters' types.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) name: &'static str,
    pub(crate) text: &'static str,
    pub(crate) types: &'static [Type],
}

/// The API's connections.
pub(crate) struct Db {
    pool: Pool,
    wait_ms: u64,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Db {
    /// A pool of at most `api.pool_size` connections, opened on demand (so the API starts,
    /// and answers `/healthz`, while PostgreSQL is still coming up). A returned connection
    /// is reused without a round trip (`RecyclingMethod::Fast`: only a closed one is
    /// replaced), so the statement of a request is the only thing it sends.
    pub(crate) fn new(config: &ApiConfig) -> Result<Db, ApiError> {
        let target = config.postgres()?;
        let manager = Manager::from_config(
            target.config,
            target.tls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let settings = &config.settings;
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .wait_timeout(Some(settings.pool_wait()))
            .create_timeout(Some(settings.connect_timeout()))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| ApiError::config("api.pool_size", e.to_string()))?;
        Ok(Db {
            pool,
            wait_ms: settings.pool_wait_ms,
        })
    }

    /// Runs `sql` with `params` (one per type in `sql.types`) and returns its rows.
    pub(crate) async fn query(
        &self,
        sql: &Sql,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Problem> {
        if params.len() != sql.types.len() {
            tracing::error!(
                query = sql.name,
                given = params.len(),
                expected = sql.types.len(),
                "statement called with the wrong number of parameters"
            );
            return Err(Problem::internal());
        }
        let typed: Vec<(&(dyn ToSql + Sync), Type)> = params
            .iter()
            .zip(sql.types)
            .map(|(value, ty)| (*value, ty.clone()))
            .collect();
        let client = self.pool.get().await.map_err(|e| self.pool_problem(e))?;
        ::metrics::counter!(metrics::STATEMENTS, "query" => sql.name).increment(1);
        client
            .query_typed(sql.text, &typed)
            .await
            .map_err(|e| statement_problem(sql.name, &e))
    }

    fn pool_problem(&self, error: PoolError) -> Problem {
        ::metrics::counter!(metrics::DB_ERRORS, "kind" => "unavailable").increment(1);
        tracing::warn!(error = %error, "no PostgreSQL connection for a request");
        let message = match error {
            PoolError::Timeout(_) => format!(
                "no database connection became free within {} ms; try again",
                self.wait_ms
            ),
            _ => "the database cannot be reached; try again".to_owned(),
        };
        Problem::unavailable("database_unavailable", message)
    }
}

/// A failed statement as an answer: the server's fault or state, never blamed on input the
/// handler already checked, except values PostgreSQL itself refuses (class 22), which are
/// the request's (every parameter is checked first, so this is a safety net).
fn statement_problem(query: &'static str, error: &tokio_postgres::Error) -> Problem {
    let code = error.code();
    let class = code.map(|c| &c.code()[..2]);
    let (kind, problem) = if code == Some(&SqlState::QUERY_CANCELED) {
        (
            "timeout",
            Problem::unavailable(
                "query_timeout",
                "the query ran longer than the API allows (api.statement_timeout_ms); narrow the request",
            ),
        )
    } else if error.is_closed() || matches!(class, Some("08" | "53" | "57" | "58")) {
        (
            "unavailable",
            Problem::unavailable(
                "database_unavailable",
                "the database cannot be reached; try again",
            ),
        )
    } else if class == Some("22") {
        (
            "rejected",
            Problem {
                status: axum::http::StatusCode::BAD_REQUEST,
                code: "bad_parameter",
                message: format!(
                    "the database refused a value of this request: {}",
                    error
                        .as_db_error()
                        .map_or_else(|| error.to_string(), |db| db.message().to_owned())
                ),
                parameter: None,
            },
        )
    } else {
        ("other", Problem::internal())
    };
    ::metrics::counter!(metrics::DB_ERRORS, "kind" => kind).increment(1);
    if kind == "other" {
        tracing::error!(query, error = ?error, "API statement failed");
    } else {
        tracing::warn!(query, error = %error, kind, "API statement failed");
    }
    problem
}
