//! The metrics of the Kafka plumbing, named and described in one place.
//!
//! Each is owned by one event type below that also owns the log line, so a dead letter or
//! a consumer error is logged and counted together, once, whichever stage it happens in.

/// Counter: messages written to a dead-letter topic, labelled `stage` (`ingest`,
/// `processor`, `sink`) and `topic` (the dead-letter topic).
pub(crate) const DEAD_LETTERS: &str = "dead_letters_total";
/// Counter: consumer errors ridden out (the consumer carried on), labelled `consumer` (the
/// name the stage gave the consumer, e.g. `sink`, `processor`, `push-instruments`).
pub(crate) const CONSUMER_ERRORS: &str = "consumer_errors_total";

/// Registers the descriptions of these metrics with whatever recorder the binary installed.
/// Exists so `/metrics` explains them; stages call it once at start-up.
pub fn describe() {
    ::metrics::describe_counter!(
        DEAD_LETTERS,
        "Messages written to a dead-letter topic, by stage and dead-letter topic"
    );
    ::metrics::describe_counter!(
        CONSUMER_ERRORS,
        "Kafka consumer errors the consumer recovered from, by consumer"
    );
}

/// A message was enqueued on a dead-letter topic.
pub(crate) struct DeadLettered<'a> {
    /// The stage that rejected it.
    pub(crate) stage: &'a str,
    /// The dead-letter topic.
    pub(crate) topic: &'a str,
    /// Why it was rejected.
    pub(crate) reason: &'a str,
    /// Why, as a fixed label.
    pub(crate) kind: &'a str,
    /// Where it was read from, when it was read from Kafka.
    pub(crate) source: Option<(&'a str, i32, i64)>,
}

impl DeadLettered<'_> {
    pub(crate) fn emit(&self) {
        tracing::warn!(
            reason = self.reason,
            stage = self.stage,
            topic = self.topic,
            source = ?self.source,
            "dead-lettering message"
        );
        ::metrics::counter!(
            DEAD_LETTERS,
            "stage" => self.stage.to_owned(),
            "topic" => self.topic.to_owned(),
            "reason" => self.kind.to_owned()
        )
        .increment(1);
    }
}

/// A consumer reported an error it recovers from by itself (a broker restarting, a
/// connection dropped); the consumer carries on.
pub(crate) struct ConsumerErrorSurvived<'a> {
    /// The consumer's name.
    pub(crate) consumer: &'a str,
    /// What librdkafka said.
    pub(crate) error: &'a rdkafka::error::KafkaError,
}

impl ConsumerErrorSurvived<'_> {
    pub(crate) fn emit(&self) {
        tracing::warn!(consumer = self.consumer, error = %self.error, "consumer error; continuing");
        ::metrics::counter!(CONSUMER_ERRORS, "consumer" => self.consumer.to_owned()).increment(1);
    }
}
