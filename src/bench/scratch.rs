//! The benchmarks' scratch databases: a private database on the configured server, created
//! for one run and dropped after it (`bench sink`, `bench api`).

use anyhow::{Context, Result};
use tokio_postgres::Client;

/// A client of `url`, its connection driven on the runtime.
pub(super) async fn connect(url: &str) -> Result<Client> {
    let (client, connection) = strikeflow_tls::postgres(url)?.connect().await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Creates the scratch database `name` on the server of `server_url`; returns a session on
/// that server (to drop it with afterwards) and the scratch database's URL.
pub(super) async fn create_database(server_url: &str, name: &str) -> Result<(Client, String)> {
    let admin = connect(server_url)
        .await
        .context("connecting to PostgreSQL (is it up? ./dev up)")?;
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("creating database {name}"))?;
    Ok((admin, with_database(server_url, name)?))
}

/// Drops the scratch database `name` even while sessions hold it.
pub(super) async fn drop_database(admin: &Client, name: &str) -> Result<()> {
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .with_context(|| format!("dropping database {name}"))
}

/// The same server's connection string naming another database (URL or key=value form).
pub(super) fn with_database(url: &str, database: &str) -> Result<String> {
    if !url.contains("://") {
        return Ok(format!("{url} dbname={database}"));
    }
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (url, String::new()),
    };
    let scheme_end = path.find("://").map_or(0, |i| i + 3);
    let base = match path[scheme_end..].find('/') {
        Some(slash) => &path[..scheme_end + slash],
        None => path,
    };
    Ok(format!("{base}/{database}{query}"))
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn another_database_on_the_same_server() {
        let url = |u: &str| with_database(u, "sf_bench_1").expect("url");
        assert_eq!(
            url("postgres://strikeflow@127.0.0.1:15432/strikeflow"),
            "postgres://strikeflow@127.0.0.1:15432/sf_bench_1"
        );
        assert_eq!(
            url("postgres://u:p@h/db?sslmode=disable"),
            "postgres://u:p@h/sf_bench_1?sslmode=disable"
        );
        assert_eq!(url("postgres://h:5432"), "postgres://h:5432/sf_bench_1");
        assert_eq!(url("host=h user=u"), "host=h user=u dbname=sf_bench_1");
        assert_eq!(
            url("postgres://u@h:1/strikeflow?sslmode=disable"),
            "postgres://u@h:1/sf_bench_1?sslmode=disable"
        );
    }
}
