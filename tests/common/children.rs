//! Stages as child processes of a test (`strikeflow process`, `strikeflow sink`), so a test
//! can SIGKILL one and probe its health listener while a fault is active.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Sandbox;

/// One `strikeflow <stage>` process on a sandbox's configuration, with its metrics and
/// health listener on a port of its own and its log in a file; killed on drop.
pub(crate) struct StageChild {
    child: Child,
    /// What it is, for messages (`processor a`, `sink`).
    pub name: String,
    /// Its `/metrics`, `/healthz`, `/readyz` listener.
    pub port: u16,
    /// Its stderr.
    pub log: PathBuf,
}

impl StageChild {
    /// Starts `strikeflow <subcommand>` with the sandbox's Kafka, database and topics, and
    /// `env` on top (`STRIKEFLOW_<SECTION>__<KEY>` settings).
    pub(crate) fn spawn(
        sandbox: &Sandbox,
        subcommand: &str,
        name: &str,
        env: &[(&str, String)],
    ) -> Self {
        let config = &sandbox.config;
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("{}-{}.log", sandbox.name, name.replace(' ', "-")));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("a log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_strikeflow"));
        command
            .arg(subcommand)
            .env("KAFKA_BROKERS", &config.kafka.brokers)
            .env("DATABASE_URL", &config.database.url)
            .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", &config.kafka.topic_prefix)
            .env(
                "STRIKEFLOW_TELEMETRY__METRICS_LISTEN",
                format!("127.0.0.1:{port}"),
            )
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(stderr);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().expect("starting a strikeflow stage");
        eprintln!("started {name} (log: {})", log.display());
        Self {
            child,
            name: name.to_owned(),
            port,
            log,
        }
    }

    /// SIGKILL: no shutdown code runs; whatever was in flight is gone.
    pub(crate) fn kill_9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        eprintln!("killed {} with SIGKILL", self.name);
    }

    /// SIGTERM, then waits for a clean exit (panics on a failure or after 60 s).
    pub(crate) fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("sending SIGTERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                assert!(
                    status.success(),
                    "{} exited with {status}; log: {}",
                    self.name,
                    self.log.display()
                );
                return;
            }
            assert!(Instant::now() < deadline, "{} did not stop", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Panics when the process has exited.
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("waiting") {
            panic!(
                "{} exited early with {status}; log: {}",
                self.name,
                self.log.display()
            );
        }
    }

    /// Waits until its listener answers `/healthz` (the process has started), at most 30 s.
    pub(crate) fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.healthz().is_none() {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} did not listen within 30 s",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET /healthz`: how long the answer took, or None when it did not answer `200`
    /// within 5 s.
    pub(crate) fn healthz(&self) -> Option<Duration> {
        let started = Instant::now();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        // `HTTP/1.0 200 OK` (the server answers in the request's version).
        (response.split(' ').nth(1) == Some("200")).then(|| started.elapsed())
    }
}

impl Drop for StageChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
