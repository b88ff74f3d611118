//! The sink's metrics, named and described in one place so dashboards and code agree.
//!
//! Dead letters are not counted here: the Kafka outbox counts them for every stage
//! (`dead_letters_total{stage="sink"}`).

/// Counter: ticks written to `ticks`.
pub(crate) const TICKS: &str = "sink_ticks_total";
/// Counter: bars upserted into `bars_1m` (the latest version per bar in a batch).
pub(crate) const BARS: &str = "sink_bars_total";
/// Counter: instrument definitions upserted into `instruments`.
pub(crate) const INSTRUMENTS: &str = "sink_instruments_total";
/// Counter: reference copies of spot ticks skipped (their primary is stored).
pub(crate) const REFERENCE_COPIES_SKIPPED: &str = "sink_reference_copies_skipped_total";

/// Registers the descriptions with whatever recorder the binary installed; called once
/// when the sink starts, so `/metrics` explains what it counts.
pub(crate) fn describe() {
    ::metrics::describe_counter!(TICKS, "Ticks written to PostgreSQL");
    ::metrics::describe_counter!(BARS, "One-minute bars upserted into PostgreSQL");
    ::metrics::describe_counter!(
        INSTRUMENTS,
        "Instrument definitions upserted into PostgreSQL"
    );
    ::metrics::describe_counter!(
        REFERENCE_COPIES_SKIPPED,
        "Reference copies of spot ticks skipped; their primary is stored"
    );
    strikeflow_kafka::metrics::describe();
}

/// A batch was committed with its offsets: counted and logged here, once.
pub(crate) struct BatchCommitted {
    /// Messages consumed into the batch (dead letters and reference copies included).
    pub(crate) messages: usize,
    pub(crate) ticks: usize,
    pub(crate) bars: usize,
    pub(crate) instruments: usize,
    pub(crate) dead_letters: usize,
    pub(crate) reference_copies: usize,
}

impl BatchCommitted {
    pub(crate) fn emit(&self) {
        tracing::debug!(
            messages = self.messages,
            ticks = self.ticks,
            bars = self.bars,
            instruments = self.instruments,
            dead_letters = self.dead_letters,
            reference_copies = self.reference_copies,
            "batch committed"
        );
        ::metrics::counter!(TICKS).increment(self.ticks as u64);
        ::metrics::counter!(BARS).increment(self.bars as u64);
        ::metrics::counter!(INSTRUMENTS).increment(self.instruments as u64);
        ::metrics::counter!(REFERENCE_COPIES_SKIPPED).increment(self.reference_copies as u64);
    }
}
