//! Helpers for the API's tests against the PostgreSQL of `./dev up`: a private database per
//! test with every migration applied and known rows inserted, the API serving it on a free
//! port, a raw HTTP client, and a proxy that counts the statements the API sends.

#![allow(dead_code)] // each test binary uses a different subset

pub(crate) mod fixture;
pub(crate) mod proxy;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use strikeflow_api::{
    mint_token, ApiConfig, ApiServer, ApiSettings, TokenRequest, DEFAULT_AUDIENCE, DEFAULT_SCOPE,
};
use strikeflow_push::AuthSettings;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// The server `./dev test` exports, or its default.
pub(crate) fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://strikeflow@127.0.0.1:15432/strikeflow".to_owned())
}

pub(crate) async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url} (is PostgreSQL up? ./dev up): {e}"));
    tokio::spawn(connection);
    client
}

/// The same server URL pointing at another database.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (base, _) = url.rsplit_once('/').expect("DATABASE_URL has a /database");
    let query = url
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    format!("{base}/{database}{query}")
}

/// Every file of `migrations/`, in name order: what `strikeflow migrate` applies (the
/// binary's `src/migrate.rs` lists the same files; this crate cannot depend on it), read
/// from the directory so a new migration is applied here without editing this list.
fn migrations() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the workspace's migrations/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned();
            (
                name,
                std::fs::read_to_string(&p).expect("a readable migration"),
            )
        })
        .collect()
}

/// A private database with the migrations applied (plain PostgreSQL: rollups and the chain
/// summary are views, as on the `./dev` server), named after `label`.
pub(crate) struct Sandbox {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) db: Client,
}

impl Sandbox {
    pub(crate) async fn new(label: &str) -> Sandbox {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!("sf_api_{label}_{}_{nanos:08x}", std::process::id());
        let server = server_url();
        connect(&server)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("creating a test database");
        let url = with_database(&server, &name);
        let db = connect(&url).await;
        // As `strikeflow migrate --no-timescale` runs them: one transaction each.
        db.batch_execute("SET client_min_messages = warning; SET strikeflow.timescale = off")
            .await
            .expect("session settings");
        for (file, sql) in migrations() {
            db.batch_execute(&format!("BEGIN;\n{sql}\nCOMMIT;"))
                .await
                .unwrap_or_else(|e| panic!("applying {file}: {e:?}"));
        }
        Sandbox { name, url, db }
    }

    /// A sandbox holding the rows of [`fixture`].
    pub(crate) async fn with_fixture(label: &str) -> Sandbox {
        let sandbox = Sandbox::new(label).await;
        sandbox
            .db
            .batch_execute(fixture::ROWS)
            .await
            .unwrap_or_else(|e| panic!("inserting the fixture: {e:?}"));
        sandbox
    }

    /// Drops the database (after the API using it stopped). A failed test leaves it behind
    /// for a look.
    pub(crate) async fn finish(self) {
        drop(self.db);
        connect(&server_url())
            .await
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("dropping the test database");
    }
}

/// The Redis `./dev test` exports, or its default.
pub(crate) fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".to_owned())
}

/// The HS256 secret of the tests' `[auth]`.
pub(crate) const SECRET: &str = "api-tests-secret-of-at-least-32-bytes";

/// The tests' `[auth]`: the defaults with [`SECRET`].
pub(crate) fn auth() -> AuthSettings {
    AuthSettings {
        jwt_secret: SECRET.to_owned(),
        ..AuthSettings::default()
    }
}

/// A token of `sub` for `audiences` with `scopes`, valid for a minute.
pub(crate) fn token_for(sub: &str, audiences: &[&str], scopes: &[&str]) -> String {
    mint_token(
        &auth(),
        &TokenRequest {
            sub: sub.to_owned(),
            ttl: Duration::from_secs(60),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            channels: Vec::new(),
        },
    )
    .expect("minting a test token")
}

/// A valid API token with the default scope.
pub(crate) fn token() -> String {
    token_for("tester", &[DEFAULT_AUDIENCE], &[DEFAULT_SCOPE])
}

/// The configuration the tests start the API with: `database_url`, the tests' Redis and
/// `[auth]`, a free loopback port and `settings` otherwise.
pub(crate) fn config(database_url: &str, settings: ApiSettings) -> ApiConfig {
    ApiConfig {
        database_url: database_url.to_owned(),
        redis_url: redis_url(),
        auth: auth(),
        settings: ApiSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..settings
        },
    }
}

/// The API serving a database on a free loopback port.
pub(crate) struct Api {
    pub(crate) addr: SocketAddr,
    /// A valid token with the scope, sent by [`Api::get`].
    pub(crate) token: String,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), strikeflow_api::ApiError>>,
}

impl Api {
    pub(crate) async fn start(database_url: &str) -> Api {
        Self::start_with(database_url, ApiSettings::default()).await
    }

    pub(crate) async fn start_with(database_url: &str, settings: ApiSettings) -> Api {
        Self::start_config(config(database_url, settings)).await
    }

    pub(crate) async fn start_config(config: ApiConfig) -> Api {
        let server = ApiServer::bind(config).await.expect("binding the API");
        let addr = server.local_addr();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));
        Api {
            addr,
            token: token(),
            shutdown,
            task,
        }
    }

    /// `GET path` with the valid token.
    pub(crate) async fn get(&self, path: &str) -> Reply {
        let bearer = format!("Bearer {}", self.token);
        request(self.addr, path, &[("Authorization", &bearer)]).await
    }

    /// `GET path` with exactly `headers` (no token unless one of them carries it).
    pub(crate) async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, path, headers).await
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("the server task")
            .expect("the server stopped cleanly");
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Reply {
    /// The value of header `name` (case-insensitive), if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    /// Asserts a JSON 200 and returns the body.
    pub(crate) fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.body);
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        self.json()
    }

    /// Asserts a REST error answer and returns its `error` object.
    pub(crate) fn error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        let body = self.json();
        let error = body["error"].clone();
        assert_eq!(error["code"], code, "{}", self.body);
        assert!(error["message"].is_string(), "{}", self.body);
        error
    }

    /// Asserts a 400 naming `parameter` (in the field and at the start of the message).
    pub(crate) fn bad(&self, parameter: &str) -> Value {
        assert_eq!(self.status, 400, "{}", self.body);
        let error = self.json()["error"].clone();
        assert_eq!(error["parameter"], parameter, "{}", self.body);
        let message = error["message"].as_str().expect("message");
        assert!(
            message.starts_with(&format!("{parameter}: ")),
            "{message} does not name {parameter}"
        );
        error
    }
}

/// `GET path` with `headers` on a fresh connection (`Connection: close`), read to the end.
pub(crate) async fn request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(addr, "GET", path, headers).await
}

/// `method path` with `headers` on a fresh connection, read to the end.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connecting to the API");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending the request");
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .expect("reading the response");
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        content_type: header("content-type").unwrap_or_default(),
        headers,
        body,
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("a chunk size");
        let size = usize::from_str_radix(size.trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// Percent-encodes a query value.
pub(crate) fn enc(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
