//! Every metric the processor stage exports, in one place: names, descriptions, and one
//! function per event that owns both its counter and its log line.
//!
//! The analytics core counts what happened ([`CoreStats`]); this module is where those
//! counts become Prometheus series. `docs/metrics.md` lists them for operators.

use std::time::Duration;

use strikeflow_analytics::chain::RegisterError;
use strikeflow_analytics::CoreStats;
use tracing::{debug, error, warn};

/// Counter: ticks records taken into transactions (primaries, reference copies, event-time
/// markers and undecodable records alike).
const TICKS: &str = "processor_ticks_total";
/// Counter: one-minute bars published.
const BARS: &str = "processor_bars_total";
/// Counter: primary ticks whose bar had already closed, published to the late topic.
const LATE_TICKS: &str = "processor_late_ticks_total";
/// Counter: reference copies of spot ticks behind their partition's watermark, ignored.
const LATE_REFERENCE_TICKS: &str = "processor_late_reference_ticks_total";
/// Counter: event-time markers applied, labelled `effect` (`advanced` or `stale`).
const WATERMARK_MARKERS: &str = "processor_watermark_markers_total";
/// Counter: ticks the chain engine did not apply, labelled `reason`.
const UNAPPLIED_TICKS: &str = "processor_unapplied_ticks_total";
/// Counter: bars an indicator failed to update on.
const INDICATOR_ERRORS: &str = "processor_indicator_errors_total";
/// Counter: instrument master records that could not be registered.
const INSTRUMENT_ERRORS: &str = "processor_instrument_errors_total";
/// Counter: ticks replayed (without publishing) while restoring partitions.
const REPLAYED_TICKS: &str = "processor_replayed_ticks_total";
/// Histogram: seconds to send offsets and commit one transaction.
const COMMIT_SECONDS: &str = "processor_commit_seconds";
/// Histogram: bytes of each partition snapshot written.
const SNAPSHOT_BYTES: &str = "processor_snapshot_bytes";
/// Gauge: event-time watermark of each partition, Unix seconds, labelled `partition`.
const WATERMARK_SECONDS: &str = "processor_watermark_seconds";

/// Registers the descriptions with whatever recorder the binary installed.
pub(crate) fn describe() {
    metrics::describe_counter!(TICKS, "Ticks records taken into processor transactions");
    metrics::describe_counter!(BARS, "One-minute bars published");
    metrics::describe_counter!(
        LATE_TICKS,
        "Ticks whose bar had already closed, published to the late topic"
    );
    metrics::describe_counter!(
        LATE_REFERENCE_TICKS,
        "Reference copies of spot ticks behind their partition's watermark, ignored"
    );
    metrics::describe_counter!(
        WATERMARK_MARKERS,
        "Event-time markers (e.g. session close) applied, by effect (advanced: the watermark moved; stale: it was already there)"
    );
    metrics::describe_counter!(
        UNAPPLIED_TICKS,
        "Ticks the chain engine did not apply, by reason (unknown_instrument, out_of_order, previous_day, invalid)"
    );
    metrics::describe_counter!(INDICATOR_ERRORS, "Bars an indicator failed to update on");
    metrics::describe_counter!(
        INSTRUMENT_ERRORS,
        "Instrument master records the processor could not register"
    );
    metrics::describe_counter!(
        REPLAYED_TICKS,
        "Ticks replayed without publishing while restoring partitions"
    );
    metrics::describe_histogram!(
        COMMIT_SECONDS,
        metrics::Unit::Seconds,
        "Time to send offsets and commit one processor transaction"
    );
    metrics::describe_histogram!(
        SNAPSHOT_BYTES,
        metrics::Unit::Bytes,
        "Size of each partition state snapshot"
    );
    metrics::describe_gauge!(
        WATERMARK_SECONDS,
        "Event-time watermark of each ticks partition (Unix seconds)"
    );
}

/// What a partition's core did in one batch.
pub(crate) fn core_stats(partition: i32, stats: &CoreStats) {
    if stats.is_empty() {
        return;
    }
    if stats.late_ticks > 0 {
        // Late ticks are an expected market condition, not bad input: counted, and logged
        // at debug, since a lagging feed can make thousands a second.
        debug!(partition, late = stats.late_ticks, "late ticks");
        metrics::counter!(LATE_TICKS).increment(stats.late_ticks);
    }
    if stats.late_reference_ticks > 0 {
        metrics::counter!(LATE_REFERENCE_TICKS).increment(stats.late_reference_ticks);
    }
    if stats.watermark_markers > 0 {
        let stale = stats.stale_watermark_markers;
        let advanced = stats.watermark_markers.saturating_sub(stale);
        debug!(partition, advanced, stale, "event-time markers");
        for (effect, count) in [("advanced", advanced), ("stale", stale)] {
            if count > 0 {
                metrics::counter!(WATERMARK_MARKERS, "effect" => effect).increment(count);
            }
        }
    }
    let chains = &stats.chains;
    for (reason, count) in [
        ("unknown_instrument", chains.unknown_instrument),
        ("out_of_order", chains.out_of_order),
        ("previous_day", chains.previous_day),
        ("invalid", chains.invalid),
    ] {
        if count > 0 {
            metrics::counter!(UNAPPLIED_TICKS, "reason" => reason).increment(count);
        }
    }
    if stats.indicator_errors > 0 {
        metrics::counter!(INDICATOR_ERRORS).increment(stats.indicator_errors);
        if let Some(e) = &stats.last_indicator_error {
            error!(partition, count = stats.indicator_errors, error = %e, "indicator update failed");
        }
    }
}

/// A bar was published.
pub(crate) fn bar_published() {
    metrics::counter!(BARS).increment(1);
}

/// An instrument from the master could not be registered in a core.
pub(crate) fn instrument_not_registered(token: i64, e: &RegisterError) {
    metrics::counter!(INSTRUMENT_ERRORS).increment(1);
    warn!(token, error = %e, "instrument not registered");
}

/// An instrument record could not be decoded (the sink dead-letters it; this is a reader).
pub(crate) fn instrument_undecodable(offset: i64, e: &strikeflow_schemas::CodecError) {
    metrics::counter!(INSTRUMENT_ERRORS).increment(1);
    warn!(offset, error = %e, "undecodable instrument record");
}

/// Ticks replayed through a restored core.
pub(crate) fn replayed(ticks: u64) {
    metrics::counter!(REPLAYED_TICKS).increment(ticks);
}

/// A snapshot of `bytes` was written.
pub(crate) fn snapshot_written(bytes: usize) {
    metrics::histogram!(SNAPSHOT_BYTES).record(bytes as f64);
}

/// A transaction of `ticks` records committed in `took`.
pub(crate) fn committed(ticks: u64, took: Duration) {
    metrics::histogram!(COMMIT_SECONDS).record(took.as_secs_f64());
    metrics::counter!(TICKS).increment(ticks);
}

/// A partition's watermark after a batch: `time() - processor_watermark_seconds` is how
/// far behind the live market its closed bars and emissions are.
pub(crate) fn watermark(partition: i32, micros: i64) {
    metrics::gauge!(WATERMARK_SECONDS, "partition" => partition.to_string())
        .set(micros as f64 / 1e6);
}
