//! One transaction's worth of decoded rows and the offsets they advance.

use std::collections::HashMap;

use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Message};
use strikeflow_kafka::{DeadLetter, KafkaError, Outbox};
use strikeflow_schemas::{decode, AvroRecord, Bar, Instrument, Tick, Topics};

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
    pub fn add(
        &mut self,
        msg: &BorrowedMessage<'_>,
        outbox: &mut Outbox,
    ) -> Result<(), KafkaError> {
        self.messages += 1;
        let payload = msg.payload();
        let source = self.sources.classify(msg.topic());
        if let Some(source) = source {
            self.offsets
                .insert((source, msg.partition()), msg.offset() + 1);
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
            let letter = DeadLetter {
                reason: &reason,
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

    /// Counts what a committed batch wrote.
    pub fn record_metrics(&self) {
        metrics::counter!("sink_ticks_total").increment(self.ticks.len() as u64);
        metrics::counter!("sink_bars_total").increment(self.bars.len() as u64);
        metrics::counter!("sink_instruments_total").increment(self.instruments.len() as u64);
        metrics::counter!("sink_dead_letters_total").increment(self.dead_letters as u64);
    }
}
