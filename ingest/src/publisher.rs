//! The path every source's ticks take into Kafka: validate, key by chain, enqueue.
//!
//! A spot index tick (instrument type EQ) is written once as usual, the *primary*, and then
//! once more into every partition of the ticks topic as a *reference copy* carrying
//! [`REFERENCE_COPY_HEADER`]: every chain needs its underlying's spot, and this way each
//! processor partition sees it in its own log, in publish order.
//!
//! An event-time marker ([`TickPublisher::publish_watermark`], header [`WATERMARK_HEADER`])
//! goes into every partition the same way: a source's promise that no older tick follows
//! (the session close), which closes each partition's last bars without waiting for the
//! next session's first tick.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use strikeflow_kafka::rdkafka::consumer::StreamConsumer;
use strikeflow_kafka::rdkafka::message::{Header, OwnedHeaders};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::{
    client_config, partition_ids, DeadLetter, KafkaError, Outbox, Registry, RegistryConnection,
};
use strikeflow_schemas::{
    encode_framed_into, Framing, Instrument, InstrumentType, Tick, Topics, Watermark,
    REFERENCE_COPY_HEADER, WATERMARK_HEADER,
};

use crate::validate::TickValidator;
use crate::IngestError;

/// Ticks enqueued between two waits for acknowledgements: bounds memory held by in-flight
/// deliveries without ever waiting on a single send.
const ACK_WINDOW: usize = 50_000;

/// Time limit of one metadata request for the ticks topic's partitions.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a ticks topic that is not (yet) in the metadata is waited for: a topic created
/// just before (`strikeflow run` ensures topics, then starts ingest) can take a moment to
/// appear in the broker's metadata.
const TOPIC_WAIT: Duration = Duration::from_secs(5);
/// Pause between two metadata requests while waiting for the ticks topic.
const TOPIC_RETRY: Duration = Duration::from_millis(200);

/// Where an instrument's ticks go: its chain key, and whether it is a spot index whose
/// ticks are also copied into every partition.
struct Route {
    key: String,
    spot: bool,
}

/// Publishes instruments and validated ticks; rejected ticks go to the dead-letter topic.
pub struct TickPublisher {
    outbox: Outbox,
    validator: TickValidator,
    /// Chain key (and whether it is a spot index) per token, computed once: every tick of
    /// a chain lands in one partition, and a spot tick is found to need copies in the same
    /// lookup.
    routes: HashMap<i64, Route>,
    instruments_topic: String,
    ticks_topic: String,
    /// Partition ids of the ticks topic, each of which gets a reference copy of a spot tick.
    ticks_partitions: Vec<i32>,
    /// The reference-copy header, built once; each copy takes a clone (librdkafka owns a
    /// record's headers once it is enqueued).
    reference_header: OwnedHeaders,
    /// The event-time marker header, built once like `reference_header`.
    watermark_header: OwnedHeaders,
    dead_letters: String,
    /// How instruments, ticks and markers are framed (single object until
    /// [`TickPublisher::use_registry`] says otherwise).
    framings: Framings,
    buf: Vec<u8>,
    published: u64,
    rejected: u64,
    markers: u64,
    topics: Topics,
}

/// The framing of each record type the publisher writes.
struct Framings {
    instrument: Framing,
    tick: Framing,
    watermark: Framing,
}

impl Default for Framings {
    fn default() -> Self {
        Self {
            instrument: Framing::SingleObject,
            tick: Framing::SingleObject,
            watermark: Framing::SingleObject,
        }
    }
}

impl TickPublisher {
    /// Writes in the encoding of `registry` (`[registry]`; `None`: single object): for
    /// Confluent framing it looks up the ids of the instrument, tick and watermark schemas
    /// under their subjects now, so an unregistered schema fails the start with the subject
    /// named. Registers nothing.
    pub async fn use_registry(
        &mut self,
        registry: Option<&RegistryConnection>,
    ) -> Result<(), IngestError> {
        let registry = Registry::new(registry)?;
        let topics = &self.topics;
        self.framings = Framings {
            instrument: registry
                .framing::<Instrument>(topics, &self.instruments_topic)
                .await?,
            tick: registry.framing::<Tick>(topics, &self.ticks_topic).await?,
            watermark: registry
                .framing::<Watermark>(topics, &self.ticks_topic)
                .await?,
        };
        Ok(())
    }

    /// Connects to Kafka and learns the ticks topic's partitions (spot ticks are copied into
    /// each). `future_tolerance_micros` enables the "timestamp in the future" check for live
    /// sources; simulated and replayed time passes `None`.
    ///
    /// Blocks briefly on broker metadata (start-up only). A ticks topic that does not exist
    /// is [`KafkaError::MissingTopic`] (run `strikeflow migrate`).
    pub fn connect(
        brokers: &strikeflow_kafka::Brokers,
        topics: &Topics,
        future_tolerance_micros: Option<i64>,
    ) -> Result<Self, IngestError> {
        let ticks_topic = topics.ticks();
        let ticks_partitions = ticks_partitions(brokers, &ticks_topic)?;
        Ok(Self {
            outbox: Outbox::connect(brokers)?,
            validator: TickValidator::new([], future_tolerance_micros),
            routes: HashMap::new(),
            instruments_topic: topics.instruments(),
            ticks_partitions,
            reference_header: OwnedHeaders::new_with_capacity(1).insert(Header {
                key: REFERENCE_COPY_HEADER,
                value: Some("1"),
            }),
            watermark_header: OwnedHeaders::new_with_capacity(1).insert(Header {
                key: WATERMARK_HEADER,
                value: Some("1"),
            }),
            dead_letters: topics.dead_letter(&ticks_topic),
            ticks_topic,
            topics: topics.clone(),
            framings: Framings::default(),
            buf: Vec::with_capacity(256),
            published: 0,
            rejected: 0,
            markers: 0,
        })
    }

    /// Publishes instrument definitions (key = token) and learns them for validation.
    /// Waits for the acknowledgements, so consumers see instruments before their ticks.
    pub async fn publish_instruments<'a>(
        &mut self,
        instruments: impl IntoIterator<Item = &'a Instrument>,
    ) -> Result<usize, IngestError> {
        let mut n = 0;
        for instrument in instruments {
            encode_framed_into(instrument, self.framings.instrument, &mut self.buf)?;
            self.outbox.send(
                &self.instruments_topic,
                &instrument.instrument_token.to_string(),
                &self.buf,
            )?;
            self.validator.add_instrument(instrument);
            self.routes.insert(
                instrument.instrument_token,
                Route {
                    key: instrument.chain_key().to_string(),
                    spot: instrument.instrument_type == InstrumentType::EQ,
                },
            );
            n += 1;
        }
        self.outbox.flush().await?;
        Ok(n)
    }

    /// Validates and enqueues one tick (plus a reference copy per ticks partition when it is
    /// a spot index tick). `position` names where it came from (built only when the tick is
    /// rejected); `now_micros` is the wall clock for live sources.
    pub async fn publish(
        &mut self,
        tick: &Tick,
        position: impl FnOnce() -> String,
        now_micros: Option<i64>,
    ) -> Result<(), IngestError> {
        encode_framed_into(tick, self.framings.tick, &mut self.buf)?;
        match self.validator.check(tick, now_micros) {
            Ok(()) => {
                let (key, spot) = self
                    .routes
                    .get(&tick.instrument_token)
                    .map_or(("", false), |r| (r.key.as_str(), r.spot));
                self.outbox.send(&self.ticks_topic, key, &self.buf)?;
                self.published += 1;
                if spot {
                    // After the primary, so every partition sees the copy in publish order.
                    for &partition in &self.ticks_partitions {
                        self.outbox.send_record(
                            FutureRecord::to(&self.ticks_topic)
                                .partition(partition)
                                .key(key)
                                .payload(&self.buf)
                                .headers(self.reference_header.clone()),
                        )?;
                    }
                }
            }
            Err(rejection) => {
                self.rejected += 1;
                let (reason, position) = (rejection.to_string(), position());
                let letter = DeadLetter {
                    reason: &reason,
                    kind: rejection.kind(),
                    stage: "ingest",
                    source: None,
                    position: Some(&position),
                };
                let key = tick.instrument_token.to_string();
                self.outbox.dead_letter(
                    &self.dead_letters,
                    Some(key.as_bytes()),
                    &self.buf,
                    &letter,
                )?;
            }
        }
        if self.outbox.pending() >= ACK_WINDOW {
            self.outbox.flush().await?;
        }
        Ok(())
    }

    /// Writes an event-time marker at `event_ts` into every ticks partition and waits for
    /// the acknowledgements: the source promises that no tick older than `event_ts` follows
    /// (e.g. the session close), so every processor closes the bars and analytics up to it
    /// now rather than when the next session's first tick arrives. `source` names the feed
    /// for operators.
    ///
    /// It bypasses the validator (it is not a tick); everything enqueued before it lands
    /// before it in each partition. Markers carry no key: they belong to no chain.
    pub async fn publish_watermark(
        &mut self,
        event_ts: i64,
        source: &str,
    ) -> Result<(), IngestError> {
        encode_framed_into(
            &Watermark {
                event_ts,
                source: source.to_owned(),
            },
            self.framings.watermark,
            &mut self.buf,
        )?;
        for &partition in &self.ticks_partitions {
            self.outbox.send_record(
                FutureRecord::<(), [u8]>::to(&self.ticks_topic)
                    .partition(partition)
                    .payload(self.buf.as_slice())
                    .headers(self.watermark_header.clone()),
            )?;
        }
        self.markers += 1;
        self.outbox.flush().await?;
        Ok(())
    }

    /// Dead-letters input that is not a tick at all (a malformed recorded line, say);
    /// `kind` labels it in `dead_letters_total` (`malformed`, `kite_frame`, …).
    pub async fn reject_raw(
        &mut self,
        payload: &[u8],
        kind: &str,
        reason: &str,
        position: &str,
    ) -> Result<(), IngestError> {
        self.rejected += 1;
        let letter = DeadLetter {
            reason,
            kind,
            stage: "ingest",
            source: None,
            position: Some(position),
        };
        self.outbox
            .dead_letter(&self.dead_letters, None, payload, &letter)?;
        Ok(())
    }

    /// Waits until everything enqueued is acknowledged.
    pub async fn flush(&mut self) -> Result<(), IngestError> {
        self.outbox.flush().await?;
        Ok(())
    }

    /// Ticks accepted so far (reference copies of spot ticks are not counted).
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Ticks rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Event-time markers written so far (each once per ticks partition).
    pub fn markers(&self) -> u64 {
        self.markers
    }
}

/// The partition ids of the ticks topic, waiting up to [`TOPIC_WAIT`] for a topic that is not
/// in the metadata yet.
fn ticks_partitions(
    brokers: &strikeflow_kafka::Brokers,
    topic: &str,
) -> Result<Vec<i32>, KafkaError> {
    // A plain client for one metadata request; it never joins a group or consumes.
    let consumer: StreamConsumer = client_config(brokers).create()?;
    let started = Instant::now();
    loop {
        match partition_ids(&consumer, topic, METADATA_TIMEOUT) {
            Err(KafkaError::MissingTopic { .. }) if started.elapsed() < TOPIC_WAIT => {
                std::thread::sleep(TOPIC_RETRY);
            }
            result => return result,
        }
    }
}
