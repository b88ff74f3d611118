//! One transaction's worth of decoded rows and the offsets they advance.

use std::collections::HashMap;

use strikeflow_kafka::rdkafka::message::Message;
use strikeflow_kafka::{DeadLetter, KafkaError, Outbox};
use strikeflow_schemas::{decode, AvroRecord, Bar, Instrument, Tick, Topics};

use crate::metrics::BatchCommitted;

/// Which sink input a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The compacted instrument master.
    Instruments,
    /// Raw ticks.
    Ticks,
    /// One-minute bars.
    Bars,
}

/// The topics the sink reads and their dead-letter topics, named once at start-up: every
/// message is classified against them, so they must not be rebuilt per message.
#[derive(Debug, Clone)]
pub struct Sources {
    names: [String; 3],
    dead_letters: [String; 3],
}

impl Sources {
    /// Resolves the deployment's topic names.
    pub fn new(topics: &Topics) -> Self {
        let names = [topics.instruments(), topics.ticks(), topics.bars()];
        let dead_letters = names.clone().map(|name| topics.dead_letter(&name));
        Self {
            names,
            dead_letters,
        }
    }

    /// Every topic the sink reads.
    pub fn names(&self) -> &[String; 3] {
        &self.names
    }

    /// The topic of a source.
    pub fn name(&self, source: Source) -> &str {
        &self.names[source as usize]
    }

    fn classify(&self, topic: &str) -> Option<Source> {
        [Source::Instruments, Source::Ticks, Source::Bars]
            .into_iter()
            .find(|&s| self.names[s as usize] == topic)
    }
}

/// Rows decoded from a run of messages, plus the next offset to read per partition.
///
/// Instruments and bars are keyed by their natural key and keep the latest version, because
/// one `INSERT … ON CONFLICT` may not touch the same row twice; ticks have no natural key
/// and are kept in arrival order.
#[derive(Debug)]
pub struct Batch<'a> {
    sources: &'a Sources,
    /// Latest instrument definition per token.
    pub instruments: HashMap<i64, Instrument>,
    /// Ticks in arrival order.
    pub ticks: Vec<Tick>,
    /// Latest bar per (token, window start).
    pub bars: HashMap<(i64, i64), Bar>,
    /// Next offset to consume per (source, partition), stored with the rows.
    pub offsets: HashMap<(Source, i32), i64>,
    messages: usize,
    dead_letters: usize,
    reference_copies: usize,
}

impl<'a> Batch<'a> {
    /// An empty batch reading `sources`.
    pub fn new(sources: &'a Sources) -> Self {
        Self {
            sources,
            instruments: HashMap::new(),
            ticks: Vec::new(),
            bars: HashMap::new(),
            offsets: HashMap::new(),
            messages: 0,
            dead_letters: 0,
            reference_copies: 0,
        }
    }

    /// The topic name of a source (for storing offsets by name).
    pub fn name_of(&self, source: Source) -> &'a str {
        self.sources.name(source)
    }

    /// Messages consumed into this batch (including dead-lettered ones).
    pub fn len(&self) -> usize {
        self.messages
    }

    /// Whether nothing was consumed yet.
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Decodes one message into the batch; a message that does not decode goes to its
    /// topic's dead-letter topic (the caller flushes the outbox before committing).
    ///
    /// A reference copy of a spot tick (header [`strikeflow_schemas::REFERENCE_COPY_HEADER`]) duplicates the
    /// primary in the spot's own partition, so it is not stored; its offset still advances.
    pub fn add<M: Message>(&mut self, msg: &M, outbox: &mut Outbox) -> Result<(), KafkaError> {
        self.messages += 1;
        let payload = msg.payload();
        let source = self.sources.classify(msg.topic());
        if let Some(source) = source {
            self.offsets
                .insert((source, msg.partition()), msg.offset() + 1);
        }
        if source == Some(Source::Ticks) && strikeflow_kafka::is_reference_copy(msg) {
            self.reference_copies += 1;
            return Ok(());
        }
        let decoded = match (source, payload) {
            // A tombstone on the compacted instrument topic retires a token; rows that refer
            // to it stay valid history, so there is nothing to write.
            (Some(Source::Instruments), None) => Ok(()),
            (Some(Source::Instruments), Some(bytes)) => self.keep(bytes, |b, i: Instrument| {
                b.instruments.insert(i.instrument_token, i);
            }),
            (Some(Source::Ticks), Some(bytes)) => self.keep(bytes, |b, t: Tick| b.ticks.push(t)),
            (Some(Source::Bars), Some(bytes)) => self.keep(bytes, |b, bar: Bar| {
                b.bars.insert((bar.instrument_token, bar.window_start), bar);
            }),
            (Some(_), None) => Err("empty payload".to_owned()),
            (None, _) => Err(format!("sink does not read topic {}", msg.topic())),
        };
        if let Err(reason) = decoded {
            self.dead_letters += 1;
            let kind = match (source, payload) {
                (Some(_), Some(_)) => "undecodable",
                (Some(_), None) => "empty_payload",
                (None, _) => "unknown_topic",
            };
            let letter = DeadLetter {
                reason: &reason,
                kind,
                stage: "sink",
                source: Some((msg.topic(), msg.partition(), msg.offset())),
                position: None,
            };
            // The consumer is assigned only the sources' partitions, so an unknown topic
            // cannot arrive; if it ever did, its own dead-letter topic takes it.
            let topic = match source {
                Some(s) => self.sources.dead_letters[s as usize].clone(),
                None => Topics::default().dead_letter(msg.topic()),
            };
            outbox.dead_letter(&topic, msg.key(), payload.unwrap_or_default(), &letter)?;
        }
        Ok(())
    }

    fn keep<T: AvroRecord>(
        &mut self,
        bytes: &[u8],
        put: impl FnOnce(&mut Self, T),
    ) -> Result<(), String> {
        let value = decode::<T>(bytes).map_err(|e| e.to_string())?;
        put(self, value);
        Ok(())
    }

    /// Counts and logs what a committed batch wrote.
    pub(crate) fn record_metrics(&self) {
        BatchCommitted {
            messages: self.messages,
            ticks: self.ticks.len(),
            bars: self.bars.len(),
            instruments: self.instruments.len(),
            dead_letters: self.dead_letters,
            reference_copies: self.reference_copies,
        }
        .emit();
    }
}

#[cfg(test)]
mod tests {
    use strikeflow_kafka::rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    use strikeflow_kafka::rdkafka::Timestamp;
    use strikeflow_schemas::{encode, REFERENCE_COPY_HEADER};

    use super::*;

    fn tick(token: i64, ltp: f64) -> Tick {
        Tick {
            instrument_token: token,
            exchange_ts: 1_766_000_001_000_000,
            ltp,
            last_qty: 0,
            volume: 0,
            oi: 0,
            bid: 0.0,
            bid_qty: 0,
            ask: 0.0,
            ask_qty: 0,
        }
    }

    fn message(
        topic: &str,
        partition: i32,
        offset: i64,
        payload: Vec<u8>,
        header: Option<&str>,
    ) -> OwnedMessage {
        let headers = header.map(|key| {
            OwnedHeaders::new().insert(Header {
                key,
                value: Some("1"),
            })
        });
        OwnedMessage::new(
            Some(payload),
            Some(b"NIFTY".to_vec()),
            topic.to_owned(),
            Timestamp::NotAvailable,
            partition,
            offset,
            headers,
        )
    }

    /// No broker is contacted: creating a producer does not connect, and nothing here is
    /// dead-lettered.
    fn outbox() -> Outbox {
        Outbox::connect("127.0.0.1:1").expect("a producer")
    }

    #[test]
    fn reference_copies_are_not_stored_but_advance_offsets() {
        let sources = Sources::new(&Topics::new("t."));
        let ticks = sources.name(Source::Ticks).to_owned();
        let mut outbox = outbox();
        let mut batch = Batch::new(&sources);
        let spot = encode(&tick(256_265, 24_500.5)).expect("encode");
        // The primary in partition 2, then a copy in each of three partitions (2 included),
        // then an option tick after the copy in partition 1.
        let messages = [
            message(&ticks, 2, 10, spot.clone(), None),
            message(&ticks, 0, 4, spot.clone(), Some(REFERENCE_COPY_HEADER)),
            message(&ticks, 1, 7, spot.clone(), Some(REFERENCE_COPY_HEADER)),
            message(&ticks, 2, 11, spot.clone(), Some(REFERENCE_COPY_HEADER)),
            message(
                &ticks,
                1,
                8,
                encode(&tick(1, 100.0)).expect("encode"),
                Some("traceparent"),
            ),
        ];
        for msg in &messages {
            batch.add(msg, &mut outbox).expect("added");
        }
        assert_eq!(batch.len(), 5, "every message is consumed");
        assert_eq!(
            batch.ticks,
            vec![tick(256_265, 24_500.5), tick(1, 100.0)],
            "only the primary and the option tick are stored"
        );
        assert_eq!(batch.dead_letters, 0);
        let mut offsets: Vec<_> = batch.offsets.iter().map(|(k, v)| (*k, *v)).collect();
        offsets.sort_unstable_by_key(|&((_, p), _)| p);
        assert_eq!(
            offsets,
            vec![
                ((Source::Ticks, 0), 5),
                ((Source::Ticks, 1), 9),
                ((Source::Ticks, 2), 12),
            ],
            "offsets move past the copies"
        );
    }

    #[test]
    fn a_batch_of_only_copies_still_commits_its_offsets() {
        let sources = Sources::new(&Topics::default());
        let ticks = sources.name(Source::Ticks).to_owned();
        let mut outbox = outbox();
        let mut batch = Batch::new(&sources);
        let copy = message(
            &ticks,
            3,
            41,
            encode(&tick(256_265, 24_500.5)).expect("encode"),
            Some(REFERENCE_COPY_HEADER),
        );
        batch.add(&copy, &mut outbox).expect("added");
        assert!(batch.ticks.is_empty());
        assert!(!batch.is_empty());
        assert_eq!(batch.offsets.get(&(Source::Ticks, 3)), Some(&42));
    }
}
