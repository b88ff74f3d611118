//! Routing: which topic and key each core output goes to, and publishing them into the
//! open transaction.

use strikeflow_analytics::Output;
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::{DeadLetter, Outbox};
use strikeflow_schemas::{encode, ChainKey, Topics};

use crate::{metrics, ProcessorError};

/// Topic names the runner reads and writes, resolved once.
pub(super) struct Routes {
    pub(super) ticks: String,
    pub(super) bars: String,
    pub(super) dead_letters: String,
    pub(super) late: String,
    pub(super) strikes: String,
    pub(super) chains: String,
    pub(super) moneyness: String,
    pub(super) indicators: String,
    pub(super) state: String,
}

impl Routes {
    pub(super) fn new(topics: &Topics) -> Self {
        Self {
            ticks: topics.ticks(),
            bars: topics.bars(),
            dead_letters: topics.dead_letter(&topics.ticks()),
            late: topics.late(),
            strikes: topics.strikes(),
            chains: topics.chains(),
            moneyness: topics.moneyness(),
            indicators: topics.indicators(),
            state: topics.processor_state(),
        }
    }
}

/// The Kafka key of a chain's outputs: the same chain key its ticks travel under.
fn chain_key(underlying: &str, expiry: i32) -> String {
    ChainKey {
        underlying: underlying.to_owned(),
        expiry: Some(expiry),
    }
    .to_string()
}

/// Enqueues every output without waiting; the caller flushes the outbox once per batch.
pub(super) fn publish(
    outbox: &mut Outbox,
    routes: &Routes,
    outputs: &mut Vec<Output>,
) -> Result<(), ProcessorError> {
    for output in outputs.drain(..) {
        match output {
            Output::Bar(bar) => {
                outbox.send(
                    &routes.bars,
                    &bar.instrument_token.to_string(),
                    &encode(&bar)?,
                )?;
                metrics::bar_published();
            }
            Output::Late(tick) => {
                // Counted by the core's stats; the record keeps the dead-letter headers so
                // readers of the late topic see why it is there.
                let letter = DeadLetter {
                    reason: "late: its bar had already closed",
                    kind: "late",
                    stage: "processor",
                    source: None,
                    position: None,
                };
                let key = tick.instrument_token.to_string();
                outbox.send_record(
                    FutureRecord::to(&routes.late)
                        .key(&key)
                        .payload(&encode(&tick)?)
                        .headers(letter.headers()),
                )?;
            }
            Output::Strike(strike) => {
                let key = chain_key(&strike.underlying, strike.expiry);
                outbox.send(&routes.strikes, &key, &encode(&strike)?)?;
            }
            Output::Chain(chain) => {
                let key = chain_key(&chain.underlying, chain.expiry);
                outbox.send(&routes.chains, &key, &encode(&chain)?)?;
            }
            Output::Moneyness(point) => {
                let key = chain_key(&point.underlying, point.expiry);
                outbox.send(&routes.moneyness, &key, &encode(&point)?)?;
            }
            Output::Indicator(point) => {
                outbox.send(
                    &routes.indicators,
                    &point.instrument_token.to_string(),
                    &encode(&point)?,
                )?;
            }
        }
    }
    Ok(())
}
