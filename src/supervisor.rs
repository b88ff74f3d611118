//! `strikeflow run`: every stage as a task of one process, stopped together. Also the
//! signal handling every subcommand shares, since a stage only ever stops by its token.

use std::future::Future;

use anyhow::{Context, Result};
use strikeflow::Config;
use strikeflow_kafka::ensure_topics;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A stage's name and how it ended.
type StageResult = (&'static str, Result<()>);

/// Runs the processor, sink, push, the query API and (when asked) the simulator as tasks;
/// the first one to fail stops the others, and its error is returned once all have
/// finished.
pub(crate) async fn run_all(
    config: &Config,
    with_simulator: bool,
    shutdown: CancellationToken,
) -> Result<()> {
    ensure_topics(
        &config.kafka.brokers,
        &config.topics().all(),
        config.kafka.replication,
    )
    .await
    .context("creating topics (is Kafka up? try ./dev up)")?;
    let mut stages = JoinSet::new();
    spawn_stage(
        &mut stages,
        "processor",
        strikeflow_processors::run(config.processor(), shutdown.clone()),
    );
    spawn_stage(
        &mut stages,
        "sink",
        strikeflow_sink::run(config.sink(), shutdown.clone()),
    );
    spawn_stage(
        &mut stages,
        "push",
        strikeflow_push::run(config.push(), shutdown.clone()),
    );
    spawn_stage(
        &mut stages,
        "api",
        strikeflow_api::run(config.api(), shutdown.clone()),
    );
    if with_simulator {
        let simulation = strikeflow_ingest::run_simulation(config.simulate(), shutdown.clone());
        spawn_stage(&mut stages, "simulator", async move {
            let report = simulation.await?;
            info!(ticks = report.ticks, "simulator done");
            Ok::<_, strikeflow_ingest::IngestError>(())
        });
    }
    let mut first_error = None;
    while let Some(joined) = stages.join_next().await {
        let (stage, result) = joined.context("a stage panicked")?;
        if let Err(e) = result {
            error!(stage, error = %format!("{e:#}"), "stage failed; stopping the others");
            first_error.get_or_insert(e.context(format!("{stage} failed")));
            shutdown.cancel();
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Starts one stage, tagging its outcome with its name for the supervisor's log.
fn spawn_stage<T, E>(
    stages: &mut JoinSet<StageResult>,
    name: &'static str,
    stage: impl Future<Output = Result<T, E>> + Send + 'static,
) where
    E: std::error::Error + Send + Sync + 'static,
{
    stages.spawn(async move { (name, stage.await.map(drop).map_err(anyhow::Error::from)) });
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
