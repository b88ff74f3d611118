//! What the API is told: where things are ([`ApiConfig`]) and how to serve ([`ApiSettings`],
//! the `[api]` section of the configuration file).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::ApiError;

/// The API's tuning, as written in the `[api]` section. The connection string is not here
/// (it is shared by every stage: `[database] url`, see [`ApiConfig`]); every missing key
/// takes its default, and an unknown key is an error, so a misspelt setting is reported
/// instead of silently ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Address the HTTP listener binds to (default `127.0.0.1:8081`; push has 8080).
    pub listen: SocketAddr,
    /// PostgreSQL connections in the pool (default 8). Each request holds one for the
    /// duration of its single statement.
    pub pool_size: usize,
    /// Longest wait for a free pooled connection, in milliseconds (default 2000); then the
    /// request is answered 503 `database_unavailable`.
    pub pool_wait_ms: u64,
    /// Longest wait to open a new PostgreSQL connection, in milliseconds (default 5000).
    pub connect_timeout_ms: u64,
    /// PostgreSQL `statement_timeout` of the API's sessions, in milliseconds (default
    /// 5000); a longer statement is cancelled and answered 503 `query_timeout`.
    pub statement_timeout_ms: u64,
    /// Most rows one page of a time series (bars, indicator values, strike and moneyness
    /// series, UDF history) may hold, and the default `limit` (default 10000). A longer
    /// series is paged with `next_from`.
    pub max_rows: usize,
    /// Largest `limit` of the instrument search and of UDF search (default 1000).
    pub max_page: usize,
    /// Largest `expiries` of `/api/v1/chains` (default 10).
    pub max_chain_expiries: usize,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            pool_size: 8,
            pool_wait_ms: 2_000,
            connect_timeout_ms: 5_000,
            statement_timeout_ms: 5_000,
            max_rows: 10_000,
            max_page: 1_000,
            max_chain_expiries: 10,
        }
    }
}

/// Largest `pool_size`: PostgreSQL's default `max_connections` is 100, shared with every
/// other stage.
const MAX_POOL_SIZE: usize = 256;
/// Largest `max_rows`: a page is built in memory as one JSON body.
const MAX_MAX_ROWS: usize = 1_000_000;

impl ApiSettings {
    /// Checks the values before anything binds or connects, so a bad file fails at once
    /// with the key named (`api.<key>: <reason>`).
    pub fn validate(&self) -> Result<(), ApiError> {
        let at_least_one = [
            ("api.pool_size", self.pool_size as u64),
            ("api.pool_wait_ms", self.pool_wait_ms),
            ("api.connect_timeout_ms", self.connect_timeout_ms),
            ("api.statement_timeout_ms", self.statement_timeout_ms),
            ("api.max_rows", self.max_rows as u64),
            ("api.max_page", self.max_page as u64),
            ("api.max_chain_expiries", self.max_chain_expiries as u64),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(ApiError::config(key, "must be at least 1"));
            }
        }
        if self.pool_size > MAX_POOL_SIZE {
            return Err(ApiError::config(
                "api.pool_size",
                format!("must be at most {MAX_POOL_SIZE}"),
            ));
        }
        if self.max_rows > MAX_MAX_ROWS {
            return Err(ApiError::config(
                "api.max_rows",
                format!("must be at most {MAX_MAX_ROWS}"),
            ));
        }
        if self.max_page > self.max_rows {
            return Err(ApiError::config(
                "api.max_page",
                "must not exceed api.max_rows",
            ));
        }
        Ok(())
    }

    /// How long a request waits for a pooled connection.
    pub fn pool_wait(&self) -> Duration {
        Duration::from_millis(self.pool_wait_ms)
    }

    /// How long opening a PostgreSQL connection may take.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

/// Everything the API needs to run: the shared connection string and its own tuning. Built
/// by the binary from `[database]` and `[api]`; not read from a file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// PostgreSQL connection string (`[database] url`, env `DATABASE_URL`), as the sink's.
    pub database_url: String,
    /// Listener, pool and limits.
    pub settings: ApiSettings,
}

impl Default for ApiConfig {
    /// The local services of `./dev up`.
    fn default() -> Self {
        Self {
            database_url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".into(),
            settings: ApiSettings::default(),
        }
    }
}

impl ApiConfig {
    /// Checks the settings (see [`ApiSettings::validate`]) and that the connection string
    /// parses (`database.url`).
    pub fn validate(&self) -> Result<(), ApiError> {
        self.settings.validate()?;
        self.postgres().map(drop)
    }

    /// The connection settings of the API's sessions: the configured string, named
    /// `strikeflow api` (unless it names itself) so `pg_stat_activity` tells them apart,
    /// read-only (the API never writes) and with the configured `statement_timeout`.
    pub(crate) fn postgres(&self) -> Result<tokio_postgres::Config, ApiError> {
        const KEY: &str = "database.url";
        if let Some((scheme, _)) = self.database_url.split_once("://") {
            if !matches!(scheme, "postgres" | "postgresql") {
                return Err(ApiError::config(
                    KEY,
                    "must be a postgres:// or postgresql:// URL",
                ));
            }
        }
        // The parser's message never repeats the password.
        let mut config: tokio_postgres::Config = self.database_url.parse().map_err(|e| {
            ApiError::config(KEY, format!("not a PostgreSQL connection string: {e}"))
        })?;
        if config.get_application_name().is_none() {
            config.application_name("strikeflow api");
        }
        let options = format!(
            "{} -c statement_timeout={} -c default_transaction_read_only=on",
            config.get_options().unwrap_or_default(),
            self.settings.statement_timeout_ms
        );
        config.options(options.trim_start());
        config.connect_timeout(self.settings.connect_timeout());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format, Toml};
    use figment::Figment;

    use super::*;

    fn parse(toml: &str) -> Result<ApiSettings, Box<figment::Error>> {
        Figment::from(Toml::string(toml))
            .extract()
            .map_err(Box::new)
    }

    #[test]
    fn the_defaults_validate() {
        assert!(ApiConfig::default().validate().is_ok());
        assert_eq!(parse("").expect("empty is fine"), ApiSettings::default());
    }

    #[test]
    fn a_partial_section_takes_the_rest_from_the_defaults() {
        let settings = parse("pool_size = 3\nlisten = \"0.0.0.0:9000\"").expect("parsed");
        assert_eq!(settings.pool_size, 3);
        assert_eq!(settings.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(settings.max_rows, 10_000);
    }

    #[test]
    fn a_bad_value_fails_naming_its_key() {
        for (toml, key) in [
            ("pool_size = 0", "api.pool_size: "),
            ("pool_size = 1000", "api.pool_size: "),
            ("pool_wait_ms = 0", "api.pool_wait_ms: "),
            ("connect_timeout_ms = 0", "api.connect_timeout_ms: "),
            ("statement_timeout_ms = 0", "api.statement_timeout_ms: "),
            ("max_rows = 0", "api.max_rows: "),
            ("max_rows = 2000000", "api.max_rows: "),
            ("max_page = 0", "api.max_page: "),
            ("max_rows = 10\nmax_page = 11", "api.max_page: "),
            ("max_chain_expiries = 0", "api.max_chain_expiries: "),
        ] {
            let error = parse(toml)
                .expect("parsed")
                .validate()
                .expect_err("invalid");
            assert!(error.to_string().starts_with(key), "{toml}: {error}");
        }
    }

    #[test]
    fn an_unknown_key_fails_to_deserialize() {
        let error = parse("pool_sise = 5").expect_err("a typo is an error");
        assert!(error.to_string().contains("pool_sise"), "{error}");
    }

    #[test]
    fn a_bad_database_url_is_named() {
        for url in ["redis://127.0.0.1", "host=127.0.0.1 port=notaport"] {
            let config = ApiConfig {
                database_url: url.into(),
                ..ApiConfig::default()
            };
            let error = config.validate().expect_err("invalid");
            assert!(
                error.to_string().starts_with("database.url: "),
                "{url}: {error}"
            );
        }
    }

    #[test]
    fn sessions_are_named_read_only_and_time_limited() {
        let config = ApiConfig {
            database_url: "postgres://u@127.0.0.1:1/db?options=-c%20work_mem%3D8MB".into(),
            settings: ApiSettings {
                statement_timeout_ms: 1234,
                ..ApiSettings::default()
            },
        };
        let pg = config.postgres().expect("parses");
        assert_eq!(pg.get_application_name(), Some("strikeflow api"));
        assert_eq!(
            pg.get_options(),
            Some("-c work_mem=8MB -c statement_timeout=1234 -c default_transaction_read_only=on")
        );
        let named = ApiConfig {
            database_url: "postgres://u@h/db?application_name=mine".into(),
            ..ApiConfig::default()
        };
        assert_eq!(
            named.postgres().expect("parses").get_application_name(),
            Some("mine")
        );
    }
}
