//! Every metric the ingest crate emits, named and described in one place, so dashboards,
//! `docs/metrics.md` and the code agree.
//!
//! Rejected input is not counted here: every rejection is a dead letter, counted once by
//! the `kafka` crate's outbox as `dead_letters_total{stage="ingest", reason=…}` with the
//! validator's reason (`off_tick_grid`, `unknown_token`, …), `malformed`, `kite_frame` or
//! `kite_unknown_packet` as its label.

use ::metrics::Counter;

/// Counter: ticks accepted and published to the ticks topic (reference copies of spot
/// ticks not included), labelled `source` = `simulator` | `replay` | `kite`.
pub const TICKS: &str = "ingest_ticks_total";
/// Counter: end-of-session event-time markers written (each into every ticks partition),
/// labelled `source`.
pub const WATERMARK_MARKERS: &str = "ingest_watermark_markers_total";
/// Counter: WebSocket connections opened to the Kite ticker (the first and every
/// reconnect).
pub const KITE_CONNECTIONS: &str = "kite_connections_total";
/// Counter: Kite ticker connections lost or failed to open; each is followed by a retry.
pub const KITE_DISCONNECTS: &str = "kite_disconnects_total";
/// Counter: Kite connections dropped by the watchdog because no frame arrived in time.
pub const KITE_WATCHDOG_TIMEOUTS: &str = "kite_watchdog_timeouts_total";

/// Where published ticks came from: the `source` label of [`TICKS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// `strikeflow ingest simulate`.
    Simulator,
    /// `strikeflow ingest replay`.
    Replay,
    /// `strikeflow ingest kite`.
    Kite,
}

impl Source {
    /// The label value, also the `source` written into event-time markers.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Simulator => "simulator",
            Self::Replay => "replay",
            Self::Kite => "kite",
        }
    }
}

/// The [`TICKS`] counter of one source.
pub(crate) fn ticks(source: Source) -> Counter {
    ::metrics::counter!(TICKS, "source" => source.label())
}

/// The [`WATERMARK_MARKERS`] counter of one source.
pub(crate) fn watermark_markers(source: Source) -> Counter {
    ::metrics::counter!(WATERMARK_MARKERS, "source" => source.label())
}

/// The [`KITE_CONNECTIONS`] counter.
pub(crate) fn kite_connections() -> Counter {
    ::metrics::counter!(KITE_CONNECTIONS)
}

/// The [`KITE_DISCONNECTS`] counter.
pub(crate) fn kite_disconnects() -> Counter {
    ::metrics::counter!(KITE_DISCONNECTS)
}

/// The [`KITE_WATCHDOG_TIMEOUTS`] counter.
pub(crate) fn kite_watchdog_timeouts() -> Counter {
    ::metrics::counter!(KITE_WATCHDOG_TIMEOUTS)
}

/// Registers the descriptions with whatever recorder the binary installed. Every ingest
/// entry point calls it; calling it again only repeats the same descriptions.
pub fn describe() {
    ::metrics::describe_counter!(
        TICKS,
        "Ticks published to the ticks topic, by source (simulator, replay, kite)"
    );
    ::metrics::describe_counter!(
        WATERMARK_MARKERS,
        "End-of-session event-time markers written to every ticks partition, by source"
    );
    ::metrics::describe_counter!(
        KITE_CONNECTIONS,
        "WebSocket connections opened to the Kite ticker"
    );
    ::metrics::describe_counter!(
        KITE_DISCONNECTS,
        "Kite ticker connections lost or failed to open (each is retried)"
    );
    ::metrics::describe_counter!(
        KITE_WATCHDOG_TIMEOUTS,
        "Kite connections dropped because no frame arrived within the ping timeout"
    );
}
