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
/// Counter: strike analytics rows upserted into `strike_analytics`.
pub(crate) const STRIKES: &str = "sink_strikes_total";
/// Counter: chain analytics rows upserted into `chain_analytics`.
pub(crate) const CHAINS: &str = "sink_chains_total";
/// Counter: moneyness points upserted into `moneyness_points`.
pub(crate) const MONEYNESS: &str = "sink_moneyness_total";
/// Counter: indicator values upserted into `indicator_values`.
pub(crate) const INDICATORS: &str = "sink_indicators_total";
/// Counter: late ticks written to `late_ticks`.
pub(crate) const LATE_TICKS: &str = "sink_late_ticks_total";
/// Counter: ticks-topic control records skipped (spot reference copies, event-time markers).
pub(crate) const CONTROL_RECORDS_SKIPPED: &str = "sink_control_records_skipped_total";

/// Counter, labelled `topic`: partitions whose stored offset was below the partition's log
/// start when the sink went to read them (records expired from Kafka unread); the sink stops.
pub(crate) const OFFSET_GAPS: &str = "sink_offset_gaps_total";

/// Counter: times the sink lost PostgreSQL (a restart, an outage, a dropped connection) and
/// went to reconnect; the open batch was rolled back and is read again from Kafka.
pub(crate) const POSTGRES_LOST: &str = "sink_postgres_lost_total";
/// Gauge: 1 while the sink holds a PostgreSQL session that owns its name, 0 while it waits
/// to reconnect (consumption is paused meanwhile).
pub(crate) const POSTGRES_CONNECTED: &str = "sink_postgres_connected";

/// Registers the descriptions with whatever recorder the binary installed; called once
/// when the sink starts, so `/metrics` explains what it counts.
pub(crate) fn describe() {
    ::metrics::describe_counter!(TICKS, "Ticks written to PostgreSQL");
    ::metrics::describe_counter!(BARS, "One-minute bars upserted into PostgreSQL");
    ::metrics::describe_counter!(
        INSTRUMENTS,
        "Instrument definitions upserted into PostgreSQL"
    );
    ::metrics::describe_counter!(STRIKES, "Strike analytics rows upserted into PostgreSQL");
    ::metrics::describe_counter!(CHAINS, "Chain analytics rows upserted into PostgreSQL");
    ::metrics::describe_counter!(MONEYNESS, "Moneyness points upserted into PostgreSQL");
    ::metrics::describe_counter!(INDICATORS, "Indicator values upserted into PostgreSQL");
    ::metrics::describe_counter!(LATE_TICKS, "Late ticks written to PostgreSQL");
    ::metrics::describe_counter!(
        CONTROL_RECORDS_SKIPPED,
        "Ticks-topic control records skipped: spot reference copies (the primary is stored) and event-time markers"
    );
    ::metrics::describe_counter!(
        OFFSET_GAPS,
        "Partitions whose stored sink offset was below the log start (records expired unread), by topic"
    );
    ::metrics::describe_counter!(
        POSTGRES_LOST,
        "Times the sink lost PostgreSQL and went to reconnect (the open batch is read again)"
    );
    ::metrics::describe_gauge!(
        POSTGRES_CONNECTED,
        "1 while the sink owns a PostgreSQL session, 0 while it waits to reconnect"
    );
    strikeflow_kafka::metrics::describe();
}

/// The sink has (1) or has not (0) a PostgreSQL session owning its name.
pub(crate) fn postgres_connected(connected: bool) {
    ::metrics::gauge!(POSTGRES_CONNECTED).set(if connected { 1.0 } else { 0.0 });
}

/// PostgreSQL was lost and the sink waits `delay` before attempt `attempt` to reconnect:
/// logged at WARN and counted, here, once per loss.
pub(crate) struct PostgresLost<'a> {
    pub(crate) error: &'a crate::SinkError,
    /// Consecutive attempts that failed so far, this one included.
    pub(crate) attempt: u32,
    pub(crate) delay: std::time::Duration,
}

impl PostgresLost<'_> {
    pub(crate) fn emit(&self) {
        tracing::warn!(
            error = %self.error,
            attempt = self.attempt,
            retry_in_ms = self.delay.as_millis() as u64,
            "sink lost PostgreSQL; consumption paused, the open batch will be read again from Kafka"
        );
        ::metrics::counter!(POSTGRES_LOST).increment(1);
        postgres_connected(false);
    }
}

/// A stored offset below its partition's log start: logged at ERROR with everything an
/// operator needs to decide, and counted, here, once per partition found.
pub(crate) struct OffsetGap<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    /// The next offset the sink stored.
    pub(crate) stored: i64,
    /// The partition's first offset still in Kafka.
    pub(crate) log_start: i64,
}

impl OffsetGap<'_> {
    pub(crate) fn emit(&self) {
        tracing::error!(
            topic = self.topic,
            partition = self.partition,
            stored_offset = self.stored,
            log_start = self.log_start,
            lost = self.log_start - self.stored,
            "records expired from Kafka before the sink stored them; refusing to skip them"
        );
        ::metrics::counter!(OFFSET_GAPS, "topic" => self.topic.to_owned()).increment(1);
    }
}

/// A batch was committed with its offsets: counted and logged here, once.
pub(crate) struct BatchCommitted {
    /// Messages consumed into the batch (dead letters and reference copies included).
    pub(crate) messages: usize,
    pub(crate) ticks: usize,
    pub(crate) bars: usize,
    pub(crate) instruments: usize,
    pub(crate) strikes: usize,
    pub(crate) chains: usize,
    pub(crate) moneyness: usize,
    pub(crate) indicators: usize,
    pub(crate) late_ticks: usize,
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
            strikes = self.strikes,
            chains = self.chains,
            moneyness = self.moneyness,
            indicators = self.indicators,
            late_ticks = self.late_ticks,
            dead_letters = self.dead_letters,
            reference_copies = self.reference_copies,
            "batch committed"
        );
        ::metrics::counter!(TICKS).increment(self.ticks as u64);
        ::metrics::counter!(BARS).increment(self.bars as u64);
        ::metrics::counter!(INSTRUMENTS).increment(self.instruments as u64);
        ::metrics::counter!(STRIKES).increment(self.strikes as u64);
        ::metrics::counter!(CHAINS).increment(self.chains as u64);
        ::metrics::counter!(MONEYNESS).increment(self.moneyness as u64);
        ::metrics::counter!(INDICATORS).increment(self.indicators as u64);
        ::metrics::counter!(LATE_TICKS).increment(self.late_ticks as u64);
        ::metrics::counter!(CONTROL_RECORDS_SKIPPED).increment(self.reference_copies as u64);
    }
}
