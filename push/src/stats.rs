//! Metric names, in one place so dashboards and code agree.

/// Counter: Kafka messages read, labelled `kind` = instrument | tick | bar | strike | chain |
/// moneyness | indicator.
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
/// Counter: tokens refused, labelled `reason` (see `AuthError::label`, plus `missing` and
/// `timeout`).
pub(crate) const AUTH_FAILURES: &str = "push_auth_failures_total";
/// Counter: connections refused by a limit, labelled `limit` = global | user.
pub(crate) const CONNECTIONS_REFUSED: &str = "push_connections_refused_total";
/// Counter: sessions closed for breaking a rule, labelled `reason` = rate_limit |
/// frame_too_big | revoked.
pub(crate) const POLICY_CLOSES: &str = "push_policy_closes_total";
/// Counter: subscriptions refused, labelled `reason` = limit | not_allowed.
pub(crate) const SUBSCRIPTIONS_REFUSED: &str = "push_subscriptions_refused_total";
/// Counter: revocation or per-user checks that could not reach Redis and fell back to
/// this node's own count (revocation unchecked), labelled `check` = connect | refresh.
pub(crate) const REDIS_FALLBACKS: &str = "push_redis_fallbacks_total";
/// Counter: JWKS file reloads, labelled `result` = ok | error.
pub(crate) const JWKS_RELOADS: &str = "push_jwks_reloads_total";
/// Gauge: usable keys in the JWKS file.
pub(crate) const JWKS_KEYS: &str = "push_jwks_keys";

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
    metrics::describe_counter!(AUTH_FAILURES, "Client tokens refused, by reason");
    metrics::describe_counter!(
        CONNECTIONS_REFUSED,
        "WebSocket connections refused by the global or per-user limit"
    );
    metrics::describe_counter!(
        POLICY_CLOSES,
        "Sessions closed for exceeding the request rate, sending an oversize message or a revoked token"
    );
    metrics::describe_counter!(
        SUBSCRIPTIONS_REFUSED,
        "Subscriptions refused: over the per-connection limit or not allowed by the token"
    );
    metrics::describe_counter!(
        REDIS_FALLBACKS,
        "Connection-limit and revocation checks done without Redis (node-local count only)"
    );
    metrics::describe_counter!(JWKS_RELOADS, "JWKS file reloads, by result");
    metrics::describe_gauge!(JWKS_KEYS, "Usable keys in the JWKS file");
    // The instrument reader's consumer errors are counted by the Kafka plumbing.
    strikeflow_kafka::metrics::describe();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented() {
        let docs = include_str!("../../docs/metrics.md");
        for name in [
            MESSAGES_IN,
            DELIVERIES,
            SLOW_CLIENT_CLOSES,
            UNKNOWN_TOKEN,
            CONTROL_RECORDS_SKIPPED,
            DECODE_ERRORS,
            SNAPSHOT_ERRORS,
            CLIENTS,
            AUTH_FAILURES,
            CONNECTIONS_REFUSED,
            POLICY_CLOSES,
            SUBSCRIPTIONS_REFUSED,
            REDIS_FALLBACKS,
            JWKS_RELOADS,
            JWKS_KEYS,
        ] {
            assert!(
                docs.contains(&format!("| `{name}` |")),
                "{name} is not in docs/metrics.md"
            );
        }
    }
}
