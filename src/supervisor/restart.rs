//! Running one stage under supervision: restarted with capped, jittered backoff when it
//! fails, given up on when the failure is permanent or keeps coming back.

use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::board::{StageBoard, StageState, FINISHED};
use super::permanent::permanent;

/// When a failing stage is restarted and when the supervisor gives up on it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RestartPolicy {
    /// Consecutive failures after which the stage is given up on (and the process stops).
    pub(crate) max_consecutive_failures: u32,
    /// A run at least this long before failing counts as recovered: the failure count
    /// starts again at one.
    pub(crate) healthy_after: Duration,
    /// The longest wait between restarts (the wait doubles from 0.5 s up to it, jittered).
    pub(crate) max_backoff: Duration,
}

impl Default for RestartPolicy {
    /// Ten failures in a row, each within a minute of its start: with waits of 0.5, 1, 2,
    /// 4, 8, 16 s and then 30 s (jittered), about two minutes of a service being gone before
    /// the process gives up and the orchestrator takes over; a PostgreSQL or broker restart
    /// costs a stage without its own reconnect loop a few restarts, not the process.
    fn default() -> Self {
        RestartPolicy {
            max_consecutive_failures: 10,
            healthy_after: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Whether a failed stage may be started again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restart {
    /// Restart it after a backoff (stages that resume from durable state: the processor,
    /// the sink, push, the API).
    WithBackoff,
    /// Never: a restart would repeat work already published (a simulator starting its
    /// session again), so its failure stops the process.
    Never,
}

/// Runs the stage `start` makes until it ends cleanly, the process shuts down, or the
/// supervisor gives up on it; every state change goes to `board`.
///
/// Each run gets a child of `shutdown`, so a stage is stopped with the process. The error
/// returned says what failed and, for a permanent failure, what to fix.
pub(crate) async fn supervise<F, Fut>(
    name: &'static str,
    restart: Restart,
    policy: RestartPolicy,
    board: StageBoard,
    shutdown: CancellationToken,
    mut start: F,
) -> Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut restarts = 0u64;
    let mut consecutive = 0u32;
    loop {
        board.set(name, StageState::Running { restarts });
        let started = Instant::now();
        let result = start(shutdown.child_token()).await;
        let error = match result {
            Ok(()) => {
                let reason = if shutdown.is_cancelled() {
                    "shut down"
                } else {
                    FINISHED
                };
                board.set(
                    name,
                    StageState::Stopped {
                        reason: reason.into(),
                    },
                );
                return Ok(());
            }
            Err(e) => e,
        };
        let reason = format!("{error:#}");
        if shutdown.is_cancelled() {
            board.set(name, StageState::Stopped { reason });
            return Err(error);
        }
        if let Some(fix) = permanent(&error) {
            error!(stage = name, error = %reason, fix, "stage failed permanently; stopping");
            board.set(
                name,
                StageState::Stopped {
                    reason: format!("{reason} ({fix})"),
                },
            );
            return Err(error.context(format!("{name} cannot continue: {fix}")));
        }
        if restart == Restart::Never {
            board.set(name, StageState::Stopped { reason });
            return Err(error.context(format!("{name} failed and is not restartable")));
        }
        if started.elapsed() >= policy.healthy_after {
            consecutive = 0;
        }
        consecutive += 1;
        if consecutive >= policy.max_consecutive_failures {
            error!(stage = name, error = %reason, failures = consecutive, "stage keeps failing; giving up");
            board.set(
                name,
                StageState::Stopped {
                    reason: format!("gave up after {consecutive} consecutive failures: {reason}"),
                },
            );
            return Err(error.context(anyhow!(
                "{name} failed {consecutive} times in a row, each within {:?} of its start",
                policy.healthy_after
            )));
        }
        let delay = strikeflow_kafka::backoff(consecutive, policy.max_backoff);
        restarts += 1;
        board.restarted(name);
        warn!(stage = name, error = %reason, attempt = consecutive, delay_ms = delay.as_millis() as u64, "stage failed; restarting after a backoff");
        board.set(
            name,
            StageState::Degraded {
                reason,
                restarts,
                retry_in_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            },
        );
        tokio::select! {
            _ = shutdown.cancelled() => {
                board.set(name, StageState::Stopped { reason: "shut down".into() });
                return Ok(());
            }
            _ = tokio::time::sleep(delay) => {}
        }
        info!(stage = name, restarts, "restarting stage");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use strikeflow_sink::SinkError;

    use super::*;

    fn quick() -> RestartPolicy {
        RestartPolicy {
            max_consecutive_failures: 3,
            healthy_after: Duration::from_secs(60),
            max_backoff: Duration::from_millis(1),
        }
    }

    #[tokio::test]
    async fn a_stage_that_recovers_is_restarted_and_runs() {
        let board = StageBoard::default();
        let attempts = Arc::new(AtomicU32::new(0));
        let seen = attempts.clone();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let result = supervise(
            "sink",
            Restart::WithBackoff,
            quick(),
            board.clone(),
            shutdown,
            move |token| {
                let attempt = seen.fetch_add(1, Ordering::SeqCst);
                let stop = stop.clone();
                async move {
                    if attempt < 2 {
                        return Err(anyhow!("postgres: connection refused"));
                    }
                    stop.cancel();
                    token.cancelled().await;
                    Ok(())
                }
            },
        )
        .await;
        assert!(result.is_ok(), "{result:?}");
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(
            board.snapshot()["sink"],
            StageState::Stopped {
                reason: "shut down".into()
            }
        );
    }

    #[tokio::test]
    async fn a_stage_that_keeps_failing_is_given_up_on() {
        let board = StageBoard::default();
        let attempts = Arc::new(AtomicU32::new(0));
        let seen = attempts.clone();
        let result = supervise(
            "push",
            Restart::WithBackoff,
            quick(),
            board.clone(),
            CancellationToken::new(),
            move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                async { Err(anyhow!("kafka: all brokers down")) }
            },
        )
        .await;
        let error = result.expect_err("gave up");
        assert!(
            format!("{error:#}").contains("3 times in a row"),
            "{error:#}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert!(matches!(
            board.snapshot()["push"],
            StageState::Stopped { .. }
        ));
        assert!(!board.ready());
    }

    #[tokio::test]
    async fn a_permanent_failure_stops_at_once_saying_what_to_fix() {
        let board = StageBoard::default();
        let attempts = Arc::new(AtomicU32::new(0));
        let seen = attempts.clone();
        let result = supervise(
            "sink",
            Restart::WithBackoff,
            quick(),
            board.clone(),
            CancellationToken::new(),
            move |_| {
                seen.fetch_add(1, Ordering::SeqCst);
                async {
                    Err(SinkError::Config {
                        key: "batch_rows",
                        reason: "must be positive",
                    }
                    .into())
                }
            },
        )
        .await;
        let error = result.expect_err("permanent");
        assert_eq!(attempts.load(Ordering::SeqCst), 1);
        assert!(
            format!("{error:#}").contains("fix the setting"),
            "{error:#}"
        );
    }

    #[tokio::test]
    async fn a_stage_that_must_not_restart_stops_on_its_first_failure() {
        let board = StageBoard::default();
        let result = supervise(
            "simulator",
            Restart::Never,
            quick(),
            board.clone(),
            CancellationToken::new(),
            |_| async { Err(anyhow!("kafka: message timed out")) },
        )
        .await;
        assert!(result.is_err());
        assert!(matches!(
            board.snapshot()["simulator"],
            StageState::Stopped { .. }
        ));
    }

    #[tokio::test]
    async fn a_finished_stage_stays_ready() {
        let board = StageBoard::default();
        supervise(
            "simulator",
            Restart::Never,
            quick(),
            board.clone(),
            CancellationToken::new(),
            |_| async { Ok(()) },
        )
        .await
        .expect("finished");
        assert!(board.ready());
    }
}
