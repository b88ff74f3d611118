//! What the API is told: where things are ([`ApiConfig`]) and how to serve ([`ApiSettings`],
//! the `[api]` section of the configuration file).

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::HeaderValue;
use serde::Deserialize;
use strikeflow_push::auth::{KeySet, DEV_JWT_SECRET};
use strikeflow_push::AuthSettings;

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
    /// The `aud` an API token must carry (or list), default `strikeflow-api`: push's
    /// tokens (`[auth] audience`) are not API tokens. Keys, issuer and leeway are `[auth]`'s.
    pub audience: String,
    /// The scope a token's `scope` claim (space-separated, or a list) must hold for
    /// `/api/v1` and `/udf` (default `api:read`); without it the answer is 403.
    pub scope: String,
    /// Origins allowed to call the API from a browser (CORS), e.g.
    /// `["https://dash.example"]`, or `["*"]` for any; default none (no CORS headers).
    pub cors_origins: Vec<String>,
    /// How long a hot answer (chain, chains, UDF history) is kept in Redis, in
    /// milliseconds (default 1000, the processors' emission interval; 0 = no cache). An
    /// answer is never served older than this.
    pub cache_ttl_ms: u64,
    /// Requests per second one client may make (sustained): a token's subject, or an
    /// address without a valid token (default 100). Beyond: 429 with `Retry-After`.
    pub requests_per_sec: u32,
    /// Requests one client may make at once above the sustained rate (default 200).
    pub requests_burst: u32,
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
            audience: DEFAULT_AUDIENCE.to_owned(),
            scope: DEFAULT_SCOPE.to_owned(),
            cors_origins: Vec::new(),
            cache_ttl_ms: 1_000,
            requests_per_sec: 100,
            requests_burst: 200,
        }
    }
}

/// The `aud` of API tokens unless `api.audience` says otherwise.
pub const DEFAULT_AUDIENCE: &str = "strikeflow-api";
/// The scope API tokens need unless `api.scope` says otherwise.
pub const DEFAULT_SCOPE: &str = "api:read";
/// Longest `cache_ttl_ms`: the cache holds live answers, not an archive.
const MAX_CACHE_TTL_MS: u64 = 60_000;
/// Shortest HMAC secret accepted when the API listens beyond loopback (as push: 256 bits).
const MIN_PUBLIC_SECRET: usize = 32;

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
            ("api.requests_per_sec", u64::from(self.requests_per_sec)),
            ("api.requests_burst", u64::from(self.requests_burst)),
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
        if self.audience.trim().is_empty() {
            return Err(ApiError::config("api.audience", "must not be empty"));
        }
        if self.scope.is_empty() || self.scope.chars().any(char::is_whitespace) {
            return Err(ApiError::config(
                "api.scope",
                "must be one scope (no spaces), e.g. \"api:read\"",
            ));
        }
        if self.cache_ttl_ms > MAX_CACHE_TTL_MS {
            return Err(ApiError::config(
                "api.cache_ttl_ms",
                format!("must be at most {MAX_CACHE_TTL_MS}"),
            ));
        }
        self.cors()?;
        Ok(())
    }

    /// The CORS origins as header values: `None` for none, `Some(None)` for any (`"*"`).
    pub(crate) fn cors(&self) -> Result<Option<Option<Vec<HeaderValue>>>, ApiError> {
        const KEY: &str = "api.cors_origins";
        if self.cors_origins.is_empty() {
            return Ok(None);
        }
        if self.cors_origins.iter().any(|o| o == "*") {
            if self.cors_origins.len() > 1 {
                return Err(ApiError::config(
                    KEY,
                    "\"*\" allows every origin: list it alone",
                ));
            }
            return Ok(Some(None));
        }
        let mut origins = Vec::with_capacity(self.cors_origins.len());
        for origin in &self.cors_origins {
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let fine = rest.is_some_and(|rest| {
                !rest.is_empty()
                    && !rest.contains('/')
                    && !rest.chars().any(|c| c.is_whitespace() || c.is_control())
            });
            let value = HeaderValue::from_str(origin).ok().filter(|_| fine);
            match value {
                Some(value) => origins.push(value),
                None => {
                    return Err(ApiError::config(
                        KEY,
                        format!(
                            "{origin:?} is not an origin: scheme://host[:port] without a path \
                             (https://dash.example), or \"*\""
                        ),
                    ))
                }
            }
        }
        Ok(Some(Some(origins)))
    }

    /// How long a cached answer lives (zero: no cache).
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_millis(self.cache_ttl_ms)
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

/// Everything the API needs to run: the shared connection settings and its own tuning.
/// Built by the binary from `[database]`, `[redis]`, `[auth]` and `[api]`; not read from a
/// file as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// PostgreSQL connection string (`[database] url`, env `DATABASE_URL`), as the sink's.
    pub database_url: String,
    /// Redis of the answer cache (`[redis] url`, env `REDIS_URL`), as push's.
    pub redis_url: String,
    /// Token keys, issuer and leeway (`[auth]`, shared with push); the audience is
    /// `api.audience`, not `auth.audience`.
    pub auth: AuthSettings,
    /// Listener, pool, limits, token audience and scope, CORS and cache.
    pub settings: ApiSettings,
}

impl Default for ApiConfig {
    /// The local services of `./dev up`.
    fn default() -> Self {
        Self {
            database_url: "postgres://strikeflow@127.0.0.1:15432/strikeflow".into(),
            redis_url: "redis://127.0.0.1:16379".into(),
            auth: AuthSettings::default(),
            settings: ApiSettings::default(),
        }
    }
}

impl ApiConfig {
    /// Checks the settings (see [`ApiSettings::validate`]), that the connection strings
    /// parse (`database.url`, `redis.url`), that every configured key loads (`auth.*`),
    /// and that a listener beyond loopback does not trust the development or a short HMAC
    /// secret (`auth.jwt_secret`, as push refuses it).
    pub fn validate(&self) -> Result<(), ApiError> {
        self.settings.validate()?;
        self.postgres()?;
        strikeflow_tls::redis_client(&self.redis_url)
            .map_err(|e| ApiError::config("redis.url", e.to_string()))?;
        self.keys()?;
        self.check_exposure()
    }

    /// The verification keys of `[auth]`, expecting `api.audience`.
    pub(crate) fn keys(&self) -> Result<KeySet, ApiError> {
        AuthSettings {
            audience: self.settings.audience.clone(),
            ..self.auth.clone()
        }
        .load_keys()
        .map_err(ApiError::Keys)
    }

    /// Anyone who can reach the port could mint tokens with a published or short secret.
    fn check_exposure(&self) -> Result<(), ApiError> {
        let listen = self.settings.listen;
        let secret = &self.auth.jwt_secret;
        if listen.ip().is_loopback() || secret.is_empty() {
            return Ok(());
        }
        if secret == DEV_JWT_SECRET || secret.len() < MIN_PUBLIC_SECRET {
            return Err(ApiError::config(
                "auth.jwt_secret",
                format!(
                    "the API listens on {listen}, which is not loopback, with the development \
                     secret or one under {MIN_PUBLIC_SECRET} bytes; set STRIKEFLOW_JWT_SECRET \
                     to a random secret of at least {MIN_PUBLIC_SECRET} bytes"
                ),
            ));
        }
        Ok(())
    }

    /// The connection settings of the API's sessions (with the TLS connector its `sslmode`
    /// and `sslrootcert` ask for): the configured string, named
    /// `strikeflow api` (unless it names itself) so `pg_stat_activity` tells them apart,
    /// read-only (the API never writes) and with the configured `statement_timeout`.
    pub(crate) fn postgres(&self) -> Result<strikeflow_tls::PgTarget, ApiError> {
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
        let mut target = strikeflow_tls::postgres(&self.database_url)
            .map_err(|e| ApiError::config(KEY, e.to_string()))?;
        let config = &mut target.config;
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
        Ok(target)
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
            ("audience = \" \"", "api.audience: "),
            ("scope = \"api:read api:write\"", "api.scope: "),
            ("scope = \"\"", "api.scope: "),
            ("cache_ttl_ms = 60001", "api.cache_ttl_ms: "),
            ("requests_per_sec = 0", "api.requests_per_sec: "),
            ("requests_burst = 0", "api.requests_burst: "),
            ("cors_origins = [\"dash.example\"]", "api.cors_origins: "),
            (
                "cors_origins = [\"https://dash.example/\"]",
                "api.cors_origins: ",
            ),
            (
                "cors_origins = [\"*\", \"https://a.example\"]",
                "api.cors_origins: ",
            ),
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
    fn cors_origins_are_read() {
        let settings = parse("cors_origins = [\"https://a.example\", \"http://127.0.0.1:3000\"]")
            .expect("parsed");
        let origins = settings
            .cors()
            .expect("valid")
            .expect("some")
            .expect("a list");
        assert_eq!(origins.len(), 2);
        let any = parse("cors_origins = [\"*\"]").expect("parsed");
        assert_eq!(any.cors().expect("valid"), Some(None));
        assert_eq!(ApiSettings::default().cors().expect("valid"), None);
    }

    #[test]
    fn a_public_listener_refuses_a_weak_secret_and_keys_are_checked() {
        let public = |secret: &str| ApiConfig {
            auth: AuthSettings {
                jwt_secret: secret.to_owned(),
                ..AuthSettings::default()
            },
            settings: ApiSettings {
                listen: SocketAddr::from(([0, 0, 0, 0], 8081)),
                ..ApiSettings::default()
            },
            ..ApiConfig::default()
        };
        for weak in [DEV_JWT_SECRET, "short"] {
            let error = public(weak).validate().expect_err("refused");
            assert!(
                error.to_string().starts_with("auth.jwt_secret: "),
                "{error}"
            );
        }
        assert!(public(&"k".repeat(32)).validate().is_ok());
        let missing_key = ApiConfig {
            auth: AuthSettings {
                jwks_file: "/nonexistent.json".into(),
                ..AuthSettings::default()
            },
            ..ApiConfig::default()
        };
        let error = missing_key.validate().expect_err("refused");
        assert!(error.to_string().starts_with("auth.jwks_file"), "{error}");
        let bad_redis = ApiConfig {
            redis_url: "postgres://x".into(),
            ..ApiConfig::default()
        };
        let error = bad_redis.validate().expect_err("refused");
        assert!(error.to_string().starts_with("redis.url: "), "{error}");
    }

    #[test]
    fn sessions_are_named_read_only_and_time_limited() {
        let config = ApiConfig {
            database_url: "postgres://u@127.0.0.1:1/db?options=-c%20work_mem%3D8MB".into(),
            settings: ApiSettings {
                statement_timeout_ms: 1234,
                ..ApiSettings::default()
            },
            ..ApiConfig::default()
        };
        let pg = config.postgres().expect("parses").config;
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
            named
                .postgres()
                .expect("parses")
                .config
                .get_application_name(),
            Some("mine")
        );
    }
}
