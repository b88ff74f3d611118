//! Logs, metrics and health for operators: the tracing subscriber on stderr and one HTTP
//! listener per process serving `/metrics` (Prometheus), `/healthz` and `/readyz` (the
//! supervised stages' states). Set up once, before any stage starts, so every stage's first
//! events are seen.
//!
//! The listener is ours rather than the exporter's built-in one so that every process —
//! the processor and the sink too, which serve nothing else over HTTP — answers health
//! probes on the port Prometheus already scrapes.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::json;
use strikeflow::config::TelemetrySection;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::supervisor::StageBoard;

/// The target of rdkafka's default "Global error" callback. It repeats, at ERROR, what
/// librdkafka's own log (target `librdkafka`) already says about a broker or a login, and
/// it also reports every end of partition of the readers that ask for them
/// (`enable.partition.eof`) — several a second on push — so it is off unless a filter names
/// it.
const RDKAFKA_GLOBAL_ERRORS: &str = "rdkafka::client";

/// How often the exporter's histograms are compacted (the built-in listener's default).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the log subscriber (`RUST_LOG` wins over `[telemetry] log`) and, when an address
/// is configured, the metrics recorder and the `/metrics`, `/healthz`, `/readyz` listener.
pub(crate) fn init(telemetry: &TelemetrySection, board: StageBoard) -> Result<()> {
    let directives =
        std::env::var(EnvFilter::DEFAULT_ENV).unwrap_or_else(|_| telemetry.log.clone());
    let mut filter = EnvFilter::try_new(&directives).context("parsing the log filter")?;
    if !directives.contains(RDKAFKA_GLOBAL_ERRORS) {
        filter = filter.add_directive(
            format!("{RDKAFKA_GLOBAL_ERRORS}=off")
                .parse()
                .context("parsing the log filter")?,
        );
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(addr) = telemetry.metrics_listen {
        // Metrics are for operators, not for the data path: a taken port (a second stage on
        // the same host) is worth a warning, not a refusal to start.
        if let Err(e) = serve(addr, board) {
            warn!(%addr, error = %format!("{e:#}"), "metrics and health listener not started; set [telemetry] metrics_listen");
        }
    }
    Ok(())
}

/// Installs the recorder and starts the listener on `addr`, on a thread and runtime of its
/// own: a probe must be answered while a stage is stuck — even one that blocks the main
/// runtime's workers in a call to a dead broker — or the orchestrator restarts a process that
/// is only waiting out an outage.
fn serve(addr: SocketAddr, board: StageBoard) -> Result<()> {
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener
        .set_nonblocking(true)
        .context("configuring the listener")?;
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the health listener's runtime")?;
    std::thread::Builder::new()
        .name("strikeflow-health".into())
        .spawn(move || runtime.block_on(listen(listener, handle, board)))
        .context("starting the health listener's thread")?;
    info!(%addr, "metrics at http://{addr}/metrics, health at /healthz and /readyz");
    Ok(())
}

/// Serves the listener until the process ends, compacting histograms every
/// [`UPKEEP_EVERY`].
async fn listen(listener: std::net::TcpListener, handle: PrometheusHandle, board: StageBoard) {
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(listener) => listener,
        Err(e) => {
            warn!(error = %e, "metrics and health listener not started");
            return;
        }
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(handle)
        .route("/healthz", get(|| async { "ok" }))
        // The path the exporter's own listener answered on, which deployed probes and the
        // image's HEALTHCHECK use.
        .route("/health", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(board));
    if let Err(e) = axum::serve(listener, app).await {
        warn!(error = %e, "metrics and health listener stopped");
    }
}

/// The Prometheus text exposition of every metric.
async fn metrics(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
}

/// 200 while every supervised stage runs (or finished its work), 503 otherwise; the body
/// lists each stage's state, with the reason when it is degraded or stopped.
async fn readyz(State(board): State<StageBoard>) -> impl IntoResponse {
    let ready = board.ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({
            "status": if ready { "ok" } else { "unready" },
            "stages": board.snapshot(),
        })),
    )
}
