//! Replaying recorded ticks into Kafka: real time, ×N, or as fast as possible.
//!
//! Event timestamps are kept as recorded; only the wall-clock pacing changes. Lines are
//! numbered across all files in order (the first data line is 1), so an interrupted replay
//! resumes with `from_line` = the `next_line` it reported.
//!
//! Session ends are marked: when the recording's event time crosses a session close (a
//! tick at or after 15:30 IST follows ticks before it), and once the input is exhausted,
//! an event-time marker goes to every ticks partition (see
//! [`TickPublisher::publish_watermark`]), so the last bars close without later ticks. An
//! interrupted replay writes no end-of-input marker: it resumes with `from_line`.

mod format;

pub use format::{open, Format, FormatError, TickRecorder, CSV_HEADER};

use std::io::IsTerminal;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;
use strikeflow_kafka::RegistryConnection;
use strikeflow_schemas::Topics;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::calendar::{session_boundary, session_end_after};
use crate::master::{load_master_file, MasterError};
use crate::metrics::{self, Source};
use crate::publisher::TickPublisher;
use crate::IngestError;

/// How fast to replay relative to the recorded event time.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(try_from = "String")]
pub enum Speed {
    /// Each tick is sent when as much wall time has passed as event time did.
    RealTime,
    /// `N` times faster than real time.
    Factor(f64),
    /// No pacing at all.
    Max,
}

impl FromStr for Speed {
    type Err = String;

    /// `1x` / `realtime`, `10x` (or `10`), `max`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "max" | "fast" => Ok(Self::Max),
            "realtime" | "real-time" | "1x" | "1" => Ok(Self::RealTime),
            other => {
                let factor: f64 = other.trim_end_matches('x').parse().map_err(|_| {
                    format!("speed {s:?} is not `max`, `realtime` or a factor like `10x`")
                })?;
                if factor.is_finite() && factor > 0.0 {
                    Ok(Self::Factor(factor))
                } else {
                    Err(format!("speed factor must be positive, got {s:?}"))
                }
            }
        }
    }
}

impl TryFrom<String> for Speed {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// Configuration of `strikeflow ingest replay`.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// Kafka brokers and their security settings.
    pub brokers: strikeflow_kafka::Brokers,
    /// Topic names.
    pub topics: Topics,
    /// The schema registry (`[registry]`), which decides the encoding; `None`: single
    /// object.
    pub registry: Option<RegistryConnection>,
    /// Recordings, replayed in order.
    pub files: Vec<PathBuf>,
    /// The Kite-format instrument master the recorded tokens belong to.
    pub instruments_csv: PathBuf,
    /// Pacing.
    pub speed: Speed,
    /// First data line to publish (1-based, counted across files); earlier lines are skipped.
    pub from_line: u64,
    /// Draw a progress bar on stderr (only when it is a terminal).
    pub progress: bool,
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// Ticks published.
    pub published: u64,
    /// Ticks the validator dead-lettered.
    pub rejected: u64,
    /// Lines that were not ticks (dead-lettered with the parse error).
    pub malformed: u64,
    /// Event-time markers written (session closes crossed, and the end of the input).
    pub markers: u64,
    /// The line to resume from (one past the last line handled).
    pub next_line: u64,
    /// Wall time taken.
    pub elapsed: Duration,
}

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Publishing failed.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// A recording could not be read.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The instrument master could not be read.
    #[error(transparent)]
    Master(#[from] MasterError),
}

/// Replays the files into the ticks topic (after publishing the instrument master).
pub async fn run_replay(
    config: ReplayConfig,
    shutdown: CancellationToken,
) -> Result<ReplayReport, ReplayError> {
    metrics::describe();
    let started = Instant::now();
    let master = load_master_file(&config.instruments_csv)?;
    for bad in &master.errors {
        warn!(file = %config.instruments_csv.display(), line = bad.line, reason = %bad.reason, "skipping instrument row");
    }
    let mut publisher = TickPublisher::connect(&config.brokers, &config.topics, None)?;
    publisher.use_registry(config.registry.as_ref()).await?;
    publisher.publish_instruments(&master.instruments).await?;

    let bar = progress_bar(&config)?;
    let mut line_no = 0u64;
    let mut malformed = 0u64;
    let mut clock: Option<(i64, tokio::time::Instant)> = None;
    // Newest event time replayed so far: where session boundaries are measured from.
    let mut newest: Option<i64> = None;
    let mut interrupted = false;
    'files: for path in &config.files {
        let (format, lines) = open(path)?;
        let header_lines = u64::from(format == Format::Csv);
        for (index, line) in lines.enumerate() {
            let line = line.map_err(|source| FormatError::Io {
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            line_no += 1;
            if line_no < config.from_line {
                continue;
            }
            if shutdown.is_cancelled() {
                line_no -= 1;
                interrupted = true;
                break 'files;
            }
            let position = || format!("{}:{}", path.display(), index as u64 + 1 + header_lines);
            match format.parse(&line) {
                Ok(tick) => {
                    if let Some(end) = newest.and_then(|n| session_boundary(n, tick.exchange_ts)) {
                        // Paced like a tick, so a real-time replay closes at the close.
                        pace(&config.speed, &mut clock, end, &shutdown).await;
                        mark(&mut publisher, end).await?;
                    }
                    pace(&config.speed, &mut clock, tick.exchange_ts, &shutdown).await;
                    newest = Some(newest.map_or(tick.exchange_ts, |n| n.max(tick.exchange_ts)));
                    publisher.publish(&tick, position, None).await?;
                }
                Err(reason) => {
                    malformed += 1;
                    let reason = format!("not a tick: {reason}");
                    publisher
                        .reject_raw(line.as_bytes(), "malformed", &reason, &position())
                        .await?;
                }
            }
            bar.inc(1);
        }
    }
    if let Some(last) = newest.filter(|_| !interrupted) {
        mark(&mut publisher, session_end_after(last)).await?;
    }
    publisher.flush().await?;
    bar.finish_and_clear();
    let report = ReplayReport {
        published: publisher.published(),
        rejected: publisher.rejected() - malformed,
        malformed,
        markers: publisher.markers(),
        next_line: line_no + 1,
        elapsed: started.elapsed(),
    };
    metrics::ticks(Source::Replay).increment(report.published);
    info!(?report, "replay finished");
    Ok(report)
}

/// Writes an end-of-session marker at `event_ts` into every ticks partition.
async fn mark(publisher: &mut TickPublisher, event_ts: i64) -> Result<(), IngestError> {
    publisher
        .publish_watermark(event_ts, Source::Replay.label())
        .await?;
    metrics::watermark_markers(Source::Replay).increment(1);
    info!(event_ts, "replayed session end marked");
    Ok(())
}

/// Sleeps until the tick's event time, scaled by the speed, has passed on the wall clock.
async fn pace(
    speed: &Speed,
    clock: &mut Option<(i64, tokio::time::Instant)>,
    event_ts: i64,
    shutdown: &CancellationToken,
) {
    let factor = match speed {
        Speed::Max => return,
        Speed::RealTime => 1.0,
        Speed::Factor(f) => *f,
    };
    let (first_ts, first_wall) = *clock.get_or_insert((event_ts, tokio::time::Instant::now()));
    let ahead_micros = (event_ts - first_ts).max(0) as f64 / factor;
    let due = first_wall + Duration::from_micros(ahead_micros as u64);
    // Sleeping for less than a millisecond costs more than it paces.
    if due > tokio::time::Instant::now() + Duration::from_millis(1) {
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = shutdown.cancelled() => {}
        }
    }
}

fn progress_bar(config: &ReplayConfig) -> Result<ProgressBar, ReplayError> {
    if !(config.progress && std::io::stderr().is_terminal()) {
        return Ok(ProgressBar::hidden());
    }
    // Counting lines first costs one read of the files and buys an ETA.
    let mut total = 0u64;
    for path in &config.files {
        let (_, lines) = open(path)?;
        total += lines
            .map_while(Result::ok)
            .filter(|l| !l.trim().is_empty())
            .count() as u64;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{bar:40} {pos}/{len} lines  {per_sec}  ETA {eta}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(config.from_line.saturating_sub(1).min(total));
    Ok(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse(), Ok(Speed::Max));
        assert_eq!("1x".parse(), Ok(Speed::RealTime));
        assert_eq!("10x".parse(), Ok(Speed::Factor(10.0)));
        assert_eq!("2.5".parse(), Ok(Speed::Factor(2.5)));
        assert!("-3x".parse::<Speed>().is_err());
        assert!("fast-ish".parse::<Speed>().is_err());
    }
}
