//! Metric names, in one place so dashboards and code agree.

/// Counter: Kafka messages read, labelled `kind` = instrument | tick | bar.
pub(crate) const MESSAGES_IN: &str = "push_messages_in_total";
/// Counter: messages queued to clients (one per client per message).
pub(crate) const DELIVERIES: &str = "push_deliveries_total";
/// Counter: clients closed with 4008 because their queue overflowed.
pub(crate) const SLOW_CLIENT_CLOSES: &str = "push_slow_client_closes_total";
/// Counter: ticks/bars whose instrument token is not (yet) in the instrument map.
pub(crate) const UNKNOWN_TOKEN: &str = "push_unknown_token_total";
/// Counter: ticks-topic control records skipped (spot reference copies, event-time markers).
pub(crate) const CONTROL_RECORDS_SKIPPED: &str = "push_control_records_skipped_total";
/// Counter: Kafka messages that could not be decoded, labelled `kind`.
pub(crate) const DECODE_ERRORS: &str = "push_decode_errors_total";
/// Counter: failed writes of bar snapshots to Redis.
pub(crate) const SNAPSHOT_ERRORS: &str = "push_snapshot_errors_total";
/// Gauge: connected WebSocket clients.
pub(crate) const CLIENTS: &str = "push_clients";

/// Register descriptions with whatever recorder the binary installed.
pub(crate) fn describe() {
    metrics::describe_counter!(MESSAGES_IN, "Kafka messages read by push, by kind");
    metrics::describe_counter!(DELIVERIES, "Messages queued to WebSocket clients");
    metrics::describe_counter!(
        SLOW_CLIENT_CLOSES,
        "Clients closed with 4008 because they could not keep up"
    );
    metrics::describe_counter!(
        UNKNOWN_TOKEN,
        "Ticks and bars whose instrument token was not in the instrument map"
    );
    metrics::describe_counter!(
        CONTROL_RECORDS_SKIPPED,
        "Ticks-topic control records skipped: spot reference copies (the primary is pushed) and event-time markers"
    );
    metrics::describe_counter!(DECODE_ERRORS, "Kafka messages push could not decode");
    metrics::describe_counter!(SNAPSHOT_ERRORS, "Failed Redis writes of bar snapshots");
    metrics::describe_gauge!(CLIENTS, "Connected WebSocket clients");
    // The instrument reader's consumer errors are counted by the Kafka plumbing.
    strikeflow_kafka::metrics::describe();
}
