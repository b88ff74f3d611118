//! One transaction's worth of decoded rows and the offsets they advance.

use std::collections::HashMap;

use strikeflow_kafka::rdkafka::message::Message;
use strikeflow_kafka::{DeadLetter, KafkaError, Outbox, Registry};
use strikeflow_schemas::{
    date_from_days, decode_any, AvroRecord, Bar, ChainAnalytics, IndicatorPoint, Instrument,
    MoneynessPoint, OptionSide, SchemaIds, StrikeAnalytics, Tick, Topics,
};

use crate::metrics::BatchCommitted;

/// Which sink input a message came from; in `[sink] topics`, the outputs a sink stores
/// (named as below: `instruments`, `ticks`, …, `late_ticks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The compacted instrument master.
    Instruments,
    /// Raw ticks.
    Ticks,
    /// One-minute bars.
    Bars,
    /// Per-option analytics.
    Strikes,
    /// Per-chain analytics.
    Chains,
    /// Moneyness series points.
    Moneyness,
    /// Indicator values at bar close.
    Indicators,
    /// Ticks that arrived after their bar closed.
    #[serde(rename = "late_ticks")]
    Late,
}

impl Source {
    /// Every source, in the order of [`Sources::names`].
    pub const ALL: [Source; 8] = [
        Source::Instruments,
        Source::Ticks,
        Source::Bars,
        Source::Strikes,
        Source::Chains,
        Source::Moneyness,
        Source::Indicators,
        Source::Late,
    ];
}

/// The topics the sink reads and their dead-letter topics, named once at start-up: every
/// message is classified against them, so they must not be rebuilt per message.
#[derive(Debug, Clone)]
pub struct Sources {
    names: [String; 8],
    dead_letters: [String; 8],
    /// Schema ids of Confluent-framed records (every input may carry either framing).
    registry: Registry,
}

impl Sources {
    /// Resolves the deployment's topic names.
    pub fn new(topics: &Topics) -> Self {
        let names = Source::ALL.map(|source| match source {
            Source::Instruments => topics.instruments(),
            Source::Ticks => topics.ticks(),
            Source::Bars => topics.bars(),
            Source::Strikes => topics.strikes(),
            Source::Chains => topics.chains(),
            Source::Moneyness => topics.moneyness(),
            Source::Indicators => topics.indicators(),
            Source::Late => topics.late(),
        });
        let dead_letters = names.clone().map(|name| topics.dead_letter(&name));
        Self {
            names,
            dead_letters,
            registry: Registry::none(),
        }
    }

    /// The same, decoding Confluent-framed records with the ids of `registry`.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The registry records' schema ids are resolved from; resolve each payload
    /// ([`Registry::resolve`]) before [`Batch::add`].
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every topic the sink reads.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The topic of a source.
    pub fn name(&self, source: Source) -> &str {
        &self.names[source as usize]
    }

    /// Where a rejected message of `topic` goes. The consumer is assigned only the sources'
    /// partitions, so an unknown topic cannot arrive; if it ever did, its own dead-letter
    /// topic takes it.
    pub(crate) fn dead_letter_topic(&self, topic: &str) -> String {
        match self.classify(topic) {
            Some(s) => self.dead_letters[s as usize].clone(),
            None => Topics::default().dead_letter(topic),
        }
    }

    fn classify(&self, topic: &str) -> Option<Source> {
        Source::ALL
            .into_iter()
            .find(|&s| self.names[s as usize] == topic)
    }
}

/// Identity of a chain record: (underlying, expiry days, ts micros).
pub type ChainId = (String, i32, i64);
/// Identity of a moneyness point: (underlying, expiry days, bucket, side, minute micros).
pub type MoneynessId = (String, i32, String, OptionSide, i64);
/// Identity of an indicator value: (token, timeframe minutes, indicator, params, window
/// start micros).
pub type IndicatorId = (i64, i32, String, String, i64);

/// Rows decoded from a run of messages, plus the next offset to read per partition.
///
/// Everything written by upsert is keyed by its table's key and keeps the latest version,
/// because one `INSERT … ON CONFLICT` may not touch the same row twice; ticks and late ticks
/// have no natural key and are kept in arrival order.
#[derive(Debug)]
pub struct Batch<'a> {
    sources: &'a Sources,
    /// Latest instrument definition per token.
    pub instruments: HashMap<i64, Instrument>,
    /// Latest definition per contract (token, expiry), for `instrument_history`.
    pub contracts: HashMap<(i64, Option<i32>), Instrument>,
    /// Ticks in arrival order.
    pub ticks: Vec<Tick>,
    /// Latest bar per (token, window start).
    pub bars: HashMap<(i64, i64), Bar>,
    /// Latest strike analytics per (token, ts).
    pub strikes: HashMap<(i64, i64), StrikeAnalytics>,
    /// Latest chain analytics per chain and ts.
    pub chains: HashMap<ChainId, ChainAnalytics>,
    /// Latest moneyness point per series and minute.
    pub moneyness: HashMap<MoneynessId, MoneynessPoint>,
    /// Latest indicator value per series and bar.
    pub indicators: HashMap<IndicatorId, IndicatorPoint>,
    /// Late ticks in arrival order.
    pub late: Vec<Tick>,
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
            contracts: HashMap::new(),
            ticks: Vec::new(),
            bars: HashMap::new(),
            strikes: HashMap::new(),
            chains: HashMap::new(),
            moneyness: HashMap::new(),
            indicators: HashMap::new(),
            late: Vec::new(),
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

    /// Decodes one message into the batch; a message that does not decode, or that no row
    /// can hold (an expiry outside the calendar, a non-finite indicator output), goes to its
    /// topic's dead-letter topic (the caller flushes the outbox before committing).
    ///
    /// A reference copy of a spot tick (header [`strikeflow_schemas::REFERENCE_COPY_HEADER`]) duplicates the
    /// primary in the spot's own partition, so it is not stored; its offset still advances.
    pub fn add<M: Message>(&mut self, msg: &M, outbox: &mut Outbox) -> Result<(), KafkaError> {
        let Some((reason, kind)) = self.take(msg) else {
            return Ok(());
        };
        self.dead_letters += 1;
        let letter = DeadLetter {
            reason: &reason,
            kind,
            stage: "sink",
            source: Some((msg.topic(), msg.partition(), msg.offset())),
            position: None,
        };
        let topic = self.sources.dead_letter_topic(msg.topic());
        outbox.dead_letter(
            &topic,
            msg.key(),
            msg.payload().unwrap_or_default(),
            &letter,
        )
    }

    /// Decodes one message into the batch again, when a batch is rebuilt from part of its
    /// messages to isolate a row PostgreSQL rejects: what does not decode was dead-lettered
    /// by [`Batch::add`] the first time, so it is only skipped here.
    pub(crate) fn add_again<M: Message>(&mut self, msg: &M) {
        if self.take(msg).is_some() {
            self.dead_letters += 1;
        }
    }

    /// Takes one message's offset and row; `Some((reason, kind))` when it holds no row.
    fn take<M: Message>(&mut self, msg: &M) -> Option<(String, &'static str)> {
        self.messages += 1;
        let payload = msg.payload();
        let source = self.sources.classify(msg.topic());
        if let Some(source) = source {
            self.offsets
                .insert((source, msg.partition()), msg.offset() + 1);
        }
        if source == Some(Source::Ticks) && strikeflow_kafka::is_control(msg) {
            self.reference_copies += 1;
            return None;
        }
        let decoded = match (source, payload) {
            // A tombstone on the compacted instrument topic retires a token; rows that refer
            // to it stay valid history, so there is nothing to write.
            (Some(Source::Instruments), None) => Ok(()),
            (Some(source), Some(bytes)) => self.keep(source, bytes),
            (Some(_), None) => Err("empty payload".to_owned()),
            (None, _) => Err(format!("sink does not read topic {}", msg.topic())),
        };
        let reason = decoded.err()?;
        let kind = match (source, payload) {
            (Some(_), Some(_)) => "undecodable",
            (Some(_), None) => "empty_payload",
            (None, _) => "unknown_topic",
        };
        Some((reason, kind))
    }

    /// Decodes `bytes` of `source` and files the value under its table's key.
    fn keep(&mut self, source: Source, bytes: &[u8]) -> Result<(), String> {
        let ids = self.sources.registry.ids();
        match source {
            Source::Instruments => {
                let i: Instrument = value(bytes, ids)?;
                if let Some(expiry) = i.expiry {
                    expiry_in_calendar(expiry)?;
                }
                self.contracts
                    .insert((i.instrument_token, i.expiry), i.clone());
                self.instruments.insert(i.instrument_token, i);
            }
            Source::Ticks => self.ticks.push(value(bytes, ids)?),
            Source::Late => self.late.push(value(bytes, ids)?),
            Source::Bars => {
                let bar: Bar = value(bytes, ids)?;
                self.bars
                    .insert((bar.instrument_token, bar.window_start), bar);
            }
            Source::Strikes => {
                let s: StrikeAnalytics = value(bytes, ids)?;
                expiry_in_calendar(s.expiry)?;
                self.strikes.insert((s.instrument_token, s.ts), s);
            }
            Source::Chains => {
                let c: ChainAnalytics = value(bytes, ids)?;
                expiry_in_calendar(c.expiry)?;
                self.chains
                    .insert((c.underlying.clone(), c.expiry, c.ts), c);
            }
            Source::Moneyness => {
                let m: MoneynessPoint = value(bytes, ids)?;
                expiry_in_calendar(m.expiry)?;
                let id = (
                    m.underlying.clone(),
                    m.expiry,
                    m.bucket.clone(),
                    m.side,
                    m.minute,
                );
                self.moneyness.insert(id, m);
            }
            Source::Indicators => {
                let p: IndicatorPoint = value(bytes, ids)?;
                // JSON has no NaN or infinity: such a value could only be stored as null,
                // silently, so the record is refused instead (the schema promises finite).
                if let Some((name, v)) = p.outputs.iter().find(|(_, v)| !v.is_finite()) {
                    return Err(format!("indicator output {name} is not finite ({v})"));
                }
                let id = (
                    p.instrument_token,
                    p.timeframe_minutes,
                    p.indicator.clone(),
                    p.params.clone(),
                    p.window_start,
                );
                self.indicators.insert(id, p);
            }
        }
        Ok(())
    }

    /// Counts and logs what a committed batch wrote.
    pub(crate) fn record_metrics(&self) {
        BatchCommitted {
            messages: self.messages,
            ticks: self.ticks.len(),
            bars: self.bars.len(),
            instruments: self.instruments.len(),
            strikes: self.strikes.len(),
            chains: self.chains.len(),
            moneyness: self.moneyness.len(),
            indicators: self.indicators.len(),
            late_ticks: self.late.len(),
            dead_letters: self.dead_letters,
            reference_copies: self.reference_copies,
        }
        .emit();
    }
}

/// Either framing; a Confluent record's schema id must have been resolved into `ids`.
fn value<T: AvroRecord>(bytes: &[u8], ids: &SchemaIds) -> Result<T, String> {
    decode_any::<T>(bytes, ids).map_err(|e| e.to_string())
}

/// An expiry PostgreSQL's `date` (via chrono) can hold; anything else is no real contract.
fn expiry_in_calendar(days: i32) -> Result<(), String> {
    match date_from_days(days) {
        Some(_) => Ok(()),
        None => Err(format!(
            "expiry {days} (days since 1970-01-01) is outside the calendar"
        )),
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
        Outbox::connect(&strikeflow_kafka::Brokers::plaintext("127.0.0.1:1")).expect("a producer")
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
