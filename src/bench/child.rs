//! Pipeline stages under test as child processes (`strikeflow push`, `process`, `sink`), so
//! each one's CPU and memory are its own in `/proc`.

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

/// `strikeflow <stage>` with this configuration's connection and auth settings, the
/// benchmark's topic prefix, no metrics listener (several stages run at once) and warnings
/// only (on the bench's standard error unless the caller sends them elsewhere); the caller
/// adds the stage's own settings.
///
/// `own_session` starts it through `setsid` (util-linux), in a session of its own: Linux
/// schedules each session as one group (autogroup), so stages sharing the bench's session
/// would share one group's CPU between them while the broker and PostgreSQL each have a
/// whole group, as services in cgroups of their own do. `setsid` runs the stage in its own
/// process (it forks only when started as a process group leader, which a child is not), so
/// the child's pid is the stage's.
pub(super) fn stage_command(
    config: &Config,
    stage: &str,
    prefix: &str,
    own_session: bool,
) -> Result<Command> {
    let exe = std::env::current_exe().context("locating the strikeflow binary")?;
    let mut command = if own_session {
        let mut setsid = Command::new("setsid");
        setsid.arg(exe);
        setsid
    } else {
        Command::new(exe)
    };
    command
        .arg(stage)
        .env("KAFKA_BROKERS", &config.kafka.brokers)
        .env("REDIS_URL", &config.redis.url)
        .env("DATABASE_URL", &config.database.url)
        .env("STRIKEFLOW_JWT_SECRET", &config.auth.jwt_secret)
        .env("STRIKEFLOW_AUTH__ISSUER", &config.auth.issuer)
        .env("STRIKEFLOW_AUTH__AUDIENCE", &config.auth.audience)
        .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", prefix)
        .env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Ok(command)
}

/// A running stage; killed when dropped, so a bench that fails half-way leaves none behind.
pub(super) struct StageChild {
    child: Child,
    stage: String,
}

impl StageChild {
    /// Starts `command` (from [`stage_command`]) as `stage`.
    pub(super) fn start(stage: &str, mut command: Command) -> Result<Self> {
        let child = command.spawn().with_context(|| {
            format!("starting strikeflow {stage} (`setsid` comes with util-linux)")
        })?;
        Ok(Self {
            child,
            stage: stage.to_owned(),
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error naming the stage when it has exited.
    pub(super) fn check_running(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("strikeflow {} exited: {status}", self.stage);
        }
        Ok(())
    }

    pub(super) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for StageChild {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `strikeflow push` in a child process, listening on a loopback port of its own.
pub(super) struct PushChild {
    stage: StageChild,
    port: u16,
}

impl PushChild {
    /// Starts push with its standard error going to `stderr` (and in a session of its own
    /// when `own_session`, see [`stage_command`]).
    pub(super) fn start(
        config: &Config,
        prefix: &str,
        port: u16,
        clients: usize,
        stderr: Stdio,
        own_session: bool,
    ) -> Result<Self> {
        let mut command = stage_command(config, "push", prefix, own_session)?;
        command
            .stderr(stderr)
            .env("STRIKEFLOW_PUSH__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "STRIKEFLOW_PUSH__MAX_CONNECTIONS",
                (clients + 1_000).to_string(),
            )
            .env(
                "STRIKEFLOW_PUSH__MAX_CONNECTIONS_PER_USER",
                (clients + 1_000).to_string(),
            );
        Ok(Self {
            stage: StageChild::start("push", command)?,
            port,
        })
    }

    pub(super) fn pid(&self) -> u32 {
        self.stage.pid()
    }

    pub(super) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Polls `/readyz` until it answers 200.
    pub(super) async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.stage.check_running().context("during start-up")?;
            if readyz(self.port).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("push was not ready within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An error when push has exited.
    pub(super) fn check_running(&mut self) -> Result<()> {
        self.stage.check_running()
    }

    pub(super) fn stop(&mut self) {
        self.stage.stop();
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
