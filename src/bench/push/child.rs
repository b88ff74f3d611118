//! The push stage under test: `strikeflow push` in a child process.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::Config;

/// A loopback port nobody listens on right now.
pub(super) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `strikeflow push` in a child process, so its memory and CPU are its own.
pub(super) struct PushChild {
    child: Child,
    port: u16,
}

impl PushChild {
    pub(super) fn start(config: &Config, prefix: &str, port: u16, clients: usize) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the strikeflow binary")?;
        let child = Command::new(exe)
            .arg("push")
            .env("KAFKA_BROKERS", &config.kafka.brokers)
            .env("REDIS_URL", &config.redis.url)
            .env("DATABASE_URL", &config.database.url)
            .env("STRIKEFLOW_JWT_SECRET", &config.auth.jwt_secret)
            .env("STRIKEFLOW_AUTH__ISSUER", &config.auth.issuer)
            .env("STRIKEFLOW_AUTH__AUDIENCE", &config.auth.audience)
            .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", prefix)
            .env("STRIKEFLOW_PUSH__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "STRIKEFLOW_PUSH__MAX_CONNECTIONS",
                (clients + 1_000).to_string(),
            )
            .env(
                "STRIKEFLOW_PUSH__MAX_CONNECTIONS_PER_USER",
                (clients + 1_000).to_string(),
            )
            .env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting strikeflow push")?;
        Ok(Self { child, port })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(super) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Polls `/readyz` until it answers 200.
    pub(super) async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("strikeflow push exited during start-up: {status}");
            }
            if readyz(self.port).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("push was not ready within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(super) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET /readyz`: whether it answered 200.
async fn readyz(port: u16) -> Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(head.ends_with(b"200"))
}
