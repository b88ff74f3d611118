//! The path every source's ticks take into Kafka: validate, key by chain, enqueue.

use std::collections::HashMap;

use strikeflow_kafka::{DeadLetter, Outbox};
use strikeflow_schemas::{encode_into, Instrument, Tick, Topics};

use crate::validate::TickValidator;
use crate::IngestError;

/// Ticks enqueued between two waits for acknowledgements: bounds memory held by in-flight
/// deliveries without ever waiting on a single send.
const ACK_WINDOW: usize = 50_000;

/// Publishes instruments and validated ticks; rejected ticks go to the dead-letter topic.
pub struct TickPublisher {
    outbox: Outbox,
    validator: TickValidator,
    /// Chain key per token, computed once: every tick of a chain lands in one partition.
    keys: HashMap<i64, String>,
    instruments_topic: String,
    ticks_topic: String,
    dead_letters: String,
    buf: Vec<u8>,
    published: u64,
    rejected: u64,
}

impl TickPublisher {
    /// Connects to Kafka. `future_tolerance_micros` enables the "timestamp in the future"
    /// check for live sources; simulated and replayed time passes `None`.
    pub fn connect(
        brokers: &str,
        topics: &Topics,
        future_tolerance_micros: Option<i64>,
    ) -> Result<Self, IngestError> {
        Ok(Self {
            outbox: Outbox::connect(brokers)?,
            validator: TickValidator::new([], future_tolerance_micros),
            keys: HashMap::new(),
            instruments_topic: topics.instruments(),
            ticks_topic: topics.ticks(),
            dead_letters: topics.dead_letter(&topics.ticks()),
            buf: Vec::with_capacity(256),
            published: 0,
            rejected: 0,
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
            encode_into(instrument, &mut self.buf)?;
            self.outbox.send(
                &self.instruments_topic,
                &instrument.instrument_token.to_string(),
                &self.buf,
            )?;
            self.validator.add_instrument(instrument);
            self.keys.insert(
                instrument.instrument_token,
                instrument.chain_key().to_string(),
            );
            n += 1;
        }
        self.outbox.flush().await?;
        Ok(n)
    }

    /// Validates and enqueues one tick. `position` names where it came from (built only
    /// when the tick is rejected); `now_micros` is the wall clock for live sources.
    pub async fn publish(
        &mut self,
        tick: &Tick,
        position: impl FnOnce() -> String,
        now_micros: Option<i64>,
    ) -> Result<(), IngestError> {
        encode_into(tick, &mut self.buf)?;
        match self.validator.check(tick, now_micros) {
            Ok(()) => {
                let key = self
                    .keys
                    .get(&tick.instrument_token)
                    .map_or("", String::as_str);
                self.outbox.send(&self.ticks_topic, key, &self.buf)?;
                self.published += 1;
            }
            Err(rejection) => {
                self.rejected += 1;
                let (reason, position) = (rejection.to_string(), position());
                metrics::counter!("ingest_rejected_total", "reason" => rejection.kind())
                    .increment(1);
                let letter = DeadLetter {
                    reason: &reason,
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

    /// Dead-letters input that is not a tick at all (a malformed recorded line, say).
    pub async fn reject_raw(
        &mut self,
        payload: &[u8],
        reason: &str,
        position: &str,
    ) -> Result<(), IngestError> {
        self.rejected += 1;
        metrics::counter!("ingest_rejected_total", "reason" => "malformed").increment(1);
        let letter = DeadLetter {
            reason,
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

    /// Ticks accepted so far.
    pub fn published(&self) -> u64 {
        self.published
    }

    /// Ticks rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }
}
