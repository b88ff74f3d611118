//! Collecting a batch of records from a consumer: the one loop every stage that works in
//! batches (the sink, the processor runner) runs between "a record arrived" and "commit".

use std::time::Duration;

use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::types::RDKafkaErrorCode;

use crate::metrics::ConsumerErrorSurvived;
use crate::KafkaError;

/// Collects up to `max` records, waiting at most `wait` after the first, so a batch is
/// large under load and still prompt when traffic is thin.
///
/// The first record is passed in rather than read here, because a stage usually obtains it
/// in its own `select!` (with shutdown, rebalance or instrument branches). Consumer errors
/// librdkafka recovers from by itself are logged and counted here (`consumer_errors_total`,
/// labelled with this collector's consumer name) and end the fill; any other error is
/// returned. No record is lost either way: positions only move with records delivered.
#[derive(Debug, Clone)]
pub struct BatchCollector {
    consumer: String,
    max: usize,
    wait: Duration,
}

impl BatchCollector {
    /// A collector for the consumer named `consumer` (the `consumer` label of its error
    /// count), of at most `max` records (at least the first one) gathered within `wait`.
    pub fn new(consumer: &str, max: usize, wait: Duration) -> Self {
        Self {
            consumer: consumer.to_owned(),
            max: max.max(1),
            wait,
        }
    }

    /// Most records per batch.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Longest wait for a batch to fill once its first record arrived.
    pub fn wait(&self) -> Duration {
        self.wait
    }

    /// The next record, riding out recoverable errors (see [`BatchCollector::survive`]).
    /// Cancel-safe, so it can be one branch of a `select!`.
    pub async fn next<'c, C>(
        &self,
        consumer: &'c StreamConsumer<C>,
    ) -> Result<BorrowedMessage<'c>, KafkaError>
    where
        C: ConsumerContext + 'static,
    {
        loop {
            match consumer.recv().await {
                Ok(msg) => return Ok(msg),
                Err(RdKafkaError::PartitionEOF(_)) => {}
                Err(e) => self.survive(e)?,
            }
        }
    }

    /// `first` plus whatever `consumer` delivers until the batch holds [`max`] records or
    /// [`wait`] passed since this call. A recoverable consumer error ends the fill early
    /// (the records so far are returned); any other error is returned.
    ///
    /// [`max`]: BatchCollector::max
    /// [`wait`]: BatchCollector::wait
    pub async fn fill<'c, C>(
        &self,
        consumer: &'c StreamConsumer<C>,
        first: BorrowedMessage<'c>,
    ) -> Result<Vec<BorrowedMessage<'c>>, KafkaError>
    where
        C: ConsumerContext + 'static,
    {
        let deadline = tokio::time::Instant::now() + self.wait;
        let mut batch = Vec::with_capacity(self.max.min(1024));
        batch.push(first);
        while batch.len() < self.max {
            match tokio::time::timeout_at(deadline, consumer.recv()).await {
                Ok(Ok(msg)) => batch.push(msg),
                // The end of one partition says nothing about the others.
                Ok(Err(RdKafkaError::PartitionEOF(_))) => {}
                Ok(Err(e)) => {
                    self.survive(e)?;
                    break;
                }
                Err(_elapsed) => break,
            }
        }
        Ok(batch)
    }

    /// Decides whether a stage carries on after a consumer error: one librdkafka recovers
    /// from by itself (`MessageConsumption`: a broker restarting, a connection dropped) is
    /// logged, counted and `Ok`; any other is returned as the stage's error. For the
    /// errors a stage sees in its own `select!` before [`BatchCollector::fill`].
    ///
    /// A position out of range under `auto.offset.reset = error` (`AutoOffsetReset`: the
    /// next records expired unread) is returned too: librdkafka stops fetching that
    /// partition, so riding it out would stall the partition silently.
    pub fn survive(&self, error: RdKafkaError) -> Result<(), KafkaError> {
        match error {
            RdKafkaError::MessageConsumption(RDKafkaErrorCode::AutoOffsetReset) => {
                Err(error.into())
            }
            RdKafkaError::MessageConsumption(_) => {
                ConsumerErrorSurvived {
                    consumer: &self.consumer,
                    error: &error,
                }
                .emit();
                Ok(())
            }
            fatal => Err(fatal.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_holds_at_least_its_first_record() {
        let collector = BatchCollector::new("test", 0, Duration::from_millis(1));
        assert_eq!(collector.max(), 1);
    }

    #[test]
    fn only_consumption_errors_are_survived() {
        let collector = BatchCollector::new("test", 10, Duration::from_millis(1));
        assert!(collector
            .survive(RdKafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
            ))
            .is_ok());
        assert!(collector
            .survive(RdKafkaError::MessageConsumption(
                RDKafkaErrorCode::AutoOffsetReset
            ))
            .is_err());
        assert!(matches!(
            collector.survive(RdKafkaError::Canceled),
            Err(KafkaError::Client(RdKafkaError::Canceled))
        ));
    }
}
