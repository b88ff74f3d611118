//! Supervised stages, on the real binary and services: a stage that fails is restarted with
//! backoff while `/readyz` and `strikeflow_stage_state` say it is degraded and why, and it
//! recovers on its own once the cause is gone; a failure no restart can cure stops the
//! process at once, saying what to fix.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eventually, Sandbox};
use tokio_util::sync::CancellationToken;

/// A `strikeflow sink` child process with its metrics and health listener on `port`.
fn spawn_sink(sandbox: &Sandbox, database_url: &str, port: u16) -> Child {
    let config = &sandbox.config;
    Command::new(env!("CARGO_BIN_EXE_strikeflow"))
        .arg("sink")
        .env("KAFKA_BROKERS", &config.kafka.brokers)
        .env("DATABASE_URL", database_url)
        .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", &config.kafka.topic_prefix)
        .env("STRIKEFLOW_SINK__CONSUMER_NAME", &config.sink.consumer_name)
        .env(
            "STRIKEFLOW_TELEMETRY__METRICS_LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env("RUST_LOG", "info,librdkafka=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting strikeflow sink")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}

/// `GET path` on the child's listener: the status code and the body, or None while it does
/// not answer yet.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

fn readyz(port: u16) -> Option<(u16, serde_json::Value)> {
    let (status, body) = get(port, "/readyz")?;
    Some((status, serde_json::from_str(&body).ok()?))
}

/// Stops `child` with SIGTERM and returns its exit status and its log.
fn terminate(mut child: Child) -> (std::process::ExitStatus, String) {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let status = child.wait().expect("waiting for the child");
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut log);
    }
    (status, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_stage_is_restarted_shown_degraded_and_recovers() {
    let sandbox = Sandbox::new("supervised").await;
    // A sink with the same name already runs: the child's sink fails with `AlreadyRunning`
    // on every start until that one stops.
    let shutdown = CancellationToken::new();
    let first = tokio::spawn(strikeflow_sink::run(
        sandbox.config.sink(),
        shutdown.clone(),
    ));
    let db = sandbox.db().await;
    eventually(
        "the first sink owns its name",
        Duration::from_secs(30),
        || async {
            let held = common::count(
                &db,
                "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name LIKE 'strikeflow sink %' AND datname = current_database()",
            )
            .await;
            (held > 0).then_some(())
        },
    )
    .await;

    let port = free_port();
    let child = spawn_sink(&sandbox, &sandbox.config.database.url, port);
    let degraded = eventually(
        "the child's sink degraded",
        Duration::from_secs(30),
        || async {
            match readyz(port) {
                Some((503, body)) if body["stages"]["sink"]["state"] == "degraded" => Some(body),
                _ => None,
            }
        },
    )
    .await;
    let reason = degraded["stages"]["sink"]["reason"]
        .as_str()
        .unwrap_or_default();
    assert!(reason.contains("already in use"), "{degraded}");
    let (status, metrics) = get(port, "/metrics").expect("metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains(r#"strikeflow_stage_state{stage="sink",state="degraded"} 1"#),
        "{metrics}"
    );
    // Liveness does not depend on the stage.
    assert_eq!(get(port, "/healthz").map(|(s, _)| s), Some(200));

    // The cause goes away: the next restart takes over.
    shutdown.cancel();
    first.await.unwrap().expect("the first sink stops cleanly");
    let running = eventually(
        "the child's sink running again",
        Duration::from_secs(60),
        || async {
            match readyz(port) {
                Some((200, body)) if body["stages"]["sink"]["state"] == "running" => Some(body),
                _ => None,
            }
        },
    )
    .await;
    assert!(
        running["stages"]["sink"]["restarts"].as_u64() >= Some(1),
        "{running}"
    );
    let (_, metrics) = get(port, "/metrics").expect("metrics");
    let restarts = metrics
        .lines()
        .find(|l| l.starts_with(r#"strikeflow_stage_restarts_total{stage="sink"}"#))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
    assert!(restarts >= Some(1.0), "{metrics}");

    let (status, log) = terminate(child);
    assert!(
        status.success(),
        "the child stops cleanly on SIGTERM: {status}\n{log}"
    );
    assert!(log.contains("restarting after a backoff"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_no_restart_cures_stops_the_process_saying_what_to_fix() {
    let sandbox = Sandbox::new("permanent").await;
    // A role the server does not know: refused with SQLSTATE 28000 on every attempt.
    let url = with_user(&sandbox.config.database.url, "no_such_role");
    let child = spawn_sink(&sandbox, &url, free_port());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("the child exits");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{log}");
    assert!(log.contains("fix the credentials"), "{log}");
    assert!(
        !log.contains("restarting after a backoff"),
        "a permanent failure is not retried: {log}"
    );
}

/// `url` (`postgres://[user[:password]@]host…`) with its user replaced by `user`.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}
