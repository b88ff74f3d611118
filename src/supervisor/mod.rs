//! Stages under supervision: `strikeflow run` (every stage as a task of one process) and
//! each stage's own process. A stage that fails is restarted with backoff while the others
//! keep serving; only a permanent failure or one that keeps coming back stops the process
//! (`restart`, `permanent`). Each stage's state is on `/readyz` and
//! `strikeflow_stage_state` (`board`). Also the signal handling every subcommand shares,
//! since a stage only ever stops by its token.

mod board;
mod permanent;
mod restart;

use std::future::Future;

use anyhow::{Context, Result};
use strikeflow::Config;
use strikeflow_kafka::ensure_topics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

pub(crate) use board::{StageBoard, StageState, FINISHED};
pub(crate) use restart::Restart;
use restart::{supervise, RestartPolicy};

/// A stage's name and how it ended.
type StageResult = (&'static str, Result<()>);

/// Runs the processor, sink, push, the query API and (when asked) the simulator as
/// supervised tasks. A failing stage is restarted while the others go on; when one is given
/// up on, the others are stopped and its error is returned once all have finished.
pub(crate) async fn run_all(
    config: &Config,
    with_simulator: bool,
    board: StageBoard,
    shutdown: CancellationToken,
) -> Result<()> {
    ensure_topics(
        &config.kafka.brokers(),
        &config.topics().all(),
        config.kafka.replication,
    )
    .await
    .context("creating topics (is Kafka up? try ./dev up)")?;
    let mut stages = JoinSet::new();
    let supervisor = Supervisor {
        board,
        shutdown: shutdown.clone(),
    };
    let processor = config.clone();
    supervisor.spawn(
        &mut stages,
        "processor",
        Restart::WithBackoff,
        move |token| strikeflow_processors::run(processor.processor(), token),
    );
    let sink = config.clone();
    supervisor.spawn(&mut stages, "sink", Restart::WithBackoff, move |token| {
        strikeflow_sink::run(sink.sink(), token)
    });
    let push = config.clone();
    supervisor.spawn(&mut stages, "push", Restart::WithBackoff, move |token| {
        strikeflow_push::run(push.push(), token)
    });
    let api = config.clone();
    supervisor.spawn(&mut stages, "api", Restart::WithBackoff, move |token| {
        strikeflow_api::run(api.api(), token)
    });
    if with_simulator {
        let simulate = config.clone();
        supervisor.spawn(&mut stages, "simulator", Restart::Never, move |token| {
            let simulation = strikeflow_ingest::run_simulation(simulate.simulate(), token);
            async move {
                let report = simulation.await?;
                info!(ticks = report.ticks, "simulator done");
                Ok::<_, strikeflow_ingest::IngestError>(())
            }
        });
    }
    let mut first_error = None;
    while let Some(joined) = stages.join_next().await {
        let (stage, result) = joined.context("a stage panicked")?;
        if let Err(e) = result {
            if first_error.is_none() {
                error!(stage, error = %format!("{e:#}"), "stage given up on; stopping the others");
            }
            first_error.get_or_insert(e.context(format!("{stage} failed")));
            shutdown.cancel();
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs one stage as the whole process (`strikeflow sink`, `strikeflow push`, …), under
/// the same supervision as in `run`.
pub(crate) async fn run_one<F, Fut, E>(
    name: &'static str,
    restart: Restart,
    board: StageBoard,
    shutdown: CancellationToken,
    mut start: F,
) -> Result<()>
where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    supervise(
        name,
        restart,
        RestartPolicy::default(),
        board,
        shutdown,
        move |token| {
            let stage = start(token);
            async move { stage.await.map_err(anyhow::Error::from) }
        },
    )
    .await
}

/// What every supervised stage of one process shares.
struct Supervisor {
    board: StageBoard,
    shutdown: CancellationToken,
}

impl Supervisor {
    /// Starts one supervised stage, tagging its outcome with its name.
    fn spawn<F, Fut, T, E>(
        &self,
        stages: &mut JoinSet<StageResult>,
        name: &'static str,
        restart: Restart,
        mut start: F,
    ) where
        F: FnMut(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let board = self.board.clone();
        let shutdown = self.shutdown.clone();
        stages.spawn(async move {
            let result = supervise(
                name,
                restart,
                RestartPolicy::default(),
                board,
                shutdown,
                move |token| {
                    let stage = start(token);
                    async move { stage.await.map(drop).map_err(anyhow::Error::from) }
                },
            )
            .await;
            (name, result)
        });
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM, so stages finish their in-flight work (commit
/// or abort the open transaction) instead of dying mid-batch.
pub(crate) async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    info!("shutting down: finishing in-flight work");
    shutdown.cancel();
}
