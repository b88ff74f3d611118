//! Producing without waiting on each send, and dead letters.

use std::time::Duration;

use futures::future::try_join_all;
use rdkafka::message::{Header, OwnedHeaders, ToBytes};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::metrics::DeadLettered;
use crate::KafkaError;

/// A producer plus the deliveries it still owes an acknowledgement for.
///
/// Records are enqueued at once and their acknowledgements awaited together in
/// [`Outbox::flush`], so a batch costs one round trip instead of one per record; a caller
/// stores input offsets only after `flush` succeeded.
pub struct Outbox {
    producer: FutureProducer,
    pending: Vec<DeliveryFuture>,
}

/// Where a dead-lettered message came from and why it was rejected; travels as headers.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Why the message was rejected, for a human reading the topic.
    pub reason: &'a str,
    /// The reason as a short, fixed label (`undecodable`, `late`, `off_tick_grid`, …): the
    /// `reason` label of `dead_letters_total`, so one count says both how many and why.
    pub kind: &'a str,
    /// The stage that rejected it (`ingest`, `processor`, `sink`).
    pub stage: &'a str,
    /// Where it was read from, when it was read from Kafka.
    pub source: Option<(&'a str, i32, i64)>,
    /// Where it was read from otherwise (`file.csv:17`, `simulator:1042`, `kite:frame 88`).
    pub position: Option<&'a str>,
}

impl<'a> DeadLetter<'a> {
    /// The headers a dead letter travels with, for callers that route records with them
    /// without the per-record warning of [`Outbox::dead_letter`].
    pub fn headers(&self) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(self.reason),
            })
            .insert(Header {
                key: "stage",
                value: Some(self.stage),
            });
        if let Some((topic, partition, offset)) = self.source {
            headers = headers
                .insert(Header {
                    key: "source.topic",
                    value: Some(topic),
                })
                .insert(Header {
                    key: "source.partition",
                    value: Some(&partition.to_string()),
                })
                .insert(Header {
                    key: "source.offset",
                    value: Some(&offset.to_string()),
                });
        }
        if let Some(position) = self.position {
            headers = headers.insert(Header {
                key: "source.position",
                value: Some(position),
            });
        }
        headers
    }
}

impl Outbox {
    /// Wraps a producer (see [`crate::producer_config`]).
    pub fn new(producer: FutureProducer) -> Self {
        Self {
            producer,
            pending: Vec::new(),
        }
    }

    /// Creates an idempotent producer for `brokers` and wraps it.
    pub fn connect(brokers: &crate::Brokers) -> Result<Self, KafkaError> {
        Ok(Self::new(crate::producer_config(brokers).create()?))
    }

    /// The underlying producer.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Deliveries enqueued and not yet confirmed.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Enqueues a record; waits for room only when librdkafka's local queue is full.
    pub fn send<K, P>(&mut self, topic: &str, key: &K, payload: &P) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.enqueue(FutureRecord::to(topic).key(key).payload(payload))
    }

    /// Enqueues a record built by the caller (an explicit partition, extra headers).
    pub fn send_record<K, P>(&mut self, record: FutureRecord<'_, K, P>) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        self.enqueue(record)
    }

    /// Enqueues a rejected message on a dead-letter topic with its reason and origin. This
    /// is where dead letters are logged and counted (`dead_letters_total`), so a stage does
    /// not count them again.
    pub fn dead_letter(
        &mut self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        letter: &DeadLetter<'_>,
    ) -> Result<(), KafkaError> {
        DeadLettered {
            stage: letter.stage,
            topic,
            reason: letter.reason,
            kind: letter.kind,
            source: letter.source,
        }
        .emit();
        let mut record = FutureRecord::to(topic)
            .payload(payload)
            .headers(letter.headers());
        if let Some(key) = key {
            record = record.key(key);
        }
        self.enqueue(record)
    }

    /// Waits until every enqueued record is acknowledged; the first failure is returned.
    pub async fn flush(&mut self) -> Result<(), KafkaError> {
        let pending = std::mem::take(&mut self.pending);
        try_join_all(pending.into_iter().map(|delivery| async move {
            match delivery.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(KafkaError::Client(e)),
                Err(_canceled) => Err(KafkaError::ProducerGone),
            }
        }))
        .await
        .map(|_| ())
    }

    fn enqueue<K, P>(&mut self, mut record: FutureRecord<'_, K, P>) -> Result<(), KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push(delivery);
                    return Ok(());
                }
                Err((
                    rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                    back,
                )) => {
                    // The local queue drains as the broker acknowledges; serving delivery
                    // reports here is the documented way to make room. While the broker is
                    // unreachable this waits as long as the outage lasts, so it must not hold
                    // an async worker thread.
                    wait_for_room(&self.producer);
                    record = back;
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Flushes librdkafka's own queue (used at shutdown, after [`Outbox::flush`]).
    pub fn close(&self, timeout: Duration) -> Result<(), KafkaError> {
        Ok(self.producer.flush(timeout)?)
    }
}

/// Serves delivery reports for a moment so a full local queue gets room, off the async
/// workers when called from one.
///
/// On a multi-threaded Tokio runtime the wait runs under `block_in_place`, which hands this
/// worker's other tasks to another worker first: a stage whose producer waits out a broker
/// outage then stalls only itself, not the WebSocket sessions or health checks sharing the
/// runtime. A current-thread runtime has no other worker to hand them to (and
/// `block_in_place` would panic there), so it waits in place, as it does outside any runtime.
fn wait_for_room(producer: &FutureProducer) {
    let wait = || producer.poll(Duration::from_millis(5));
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}
