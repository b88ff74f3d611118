//! Logs and metrics for operators: the tracing subscriber on stderr and the Prometheus
//! exporter. Set up once, before any stage starts, so every stage's first events are seen.

use anyhow::{Context, Result};
use strikeflow::config::TelemetrySection;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

/// Installs the log subscriber (`RUST_LOG` wins over `[telemetry] log`) and, when an address
/// is configured, the Prometheus `/metrics` listener.
pub(crate) fn init(telemetry: &TelemetrySection) -> Result<()> {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&telemetry.log))
        .context("parsing the log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(addr) = telemetry.metrics_listen {
        // Metrics are for operators, not for the data path: a taken port (a second stage on
        // the same host) is worth a warning, not a refusal to start.
        match metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
        {
            Ok(()) => info!(%addr, "prometheus metrics at http://{addr}/metrics"),
            Err(e) => {
                warn!(%addr, error = %e, "metrics exporter not started; set [telemetry] metrics_listen")
            }
        }
    }
    Ok(())
}
