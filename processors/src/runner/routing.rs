//! Routing: which topic and key each core output goes to, and publishing them into the
//! open transaction.

use strikeflow_analytics::Output;
use strikeflow_kafka::rdkafka::message::{Header, OwnedHeaders};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::{DeadLetter, Outbox, Registry};
use strikeflow_schemas::{
    encode_framed, Bar, ChainAnalytics, ChainKey, Framing, IndicatorPoint, MoneynessPoint,
    StrikeAnalytics, Tick, Topics, STRIKE_ROWS_HEADER,
};

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
    framings: Framings,
}

/// How each output type is framed on its topic (single object, or Confluent with the id
/// looked up once at start).
struct Framings {
    bar: Framing,
    late: Framing,
    strike: Framing,
    chain: Framing,
    moneyness: Framing,
    indicator: Framing,
}

impl Routes {
    /// The topics, and the framing of every output (looked up in the registry when the
    /// encoding is Confluent: an unregistered output schema fails here, at start).
    pub(super) async fn new(topics: &Topics, registry: &Registry) -> Result<Self, ProcessorError> {
        let framings = Framings {
            bar: registry.framing::<Bar>(topics, &topics.bars()).await?,
            late: registry.framing::<Tick>(topics, &topics.late()).await?,
            strike: registry
                .framing::<StrikeAnalytics>(topics, &topics.strikes())
                .await?,
            chain: registry
                .framing::<ChainAnalytics>(topics, &topics.chains())
                .await?,
            moneyness: registry
                .framing::<MoneynessPoint>(topics, &topics.moneyness())
                .await?,
            indicator: registry
                .framing::<IndicatorPoint>(topics, &topics.indicators())
                .await?,
        };
        Ok(Self {
            ticks: topics.ticks(),
            bars: topics.bars(),
            dead_letters: topics.dead_letter(&topics.ticks()),
            late: topics.late(),
            strikes: topics.strikes(),
            chains: topics.chains(),
            moneyness: topics.moneyness(),
            indicators: topics.indicators(),
            state: topics.processor_state(),
            framings,
        })
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

/// How many strike rows each chain boundary in a batch of outputs has: the value of the
/// [`STRIKE_ROWS_HEADER`] on its summary. The core emits a boundary's rows and summary
/// together, so one batch of outputs holds all of them.
///
/// A list, not a map: a batch holds a few boundaries whose rows come one after another, so
/// the underlying's name is copied once per boundary rather than once per row, and a lookup
/// scans a handful of entries.
#[derive(Debug, Default)]
pub struct StrikeRowCounts(Vec<(String, i32, i64, u32)>);

impl StrikeRowCounts {
    /// Counts the strike rows of `outputs` per (underlying, expiry, ts).
    pub fn of(outputs: &[Output]) -> Self {
        let mut counts: Vec<(String, i32, i64, u32)> = Vec::new();
        for output in outputs {
            let Output::Strike(s) = output else { continue };
            match counts.last_mut() {
                Some((u, e, t, n)) if *u == s.underlying && *e == s.expiry && *t == s.ts => {
                    *n += 1;
                }
                _ => counts.push((s.underlying.clone(), s.expiry, s.ts, 1)),
            }
        }
        Self(counts)
    }

    /// The strike rows of one boundary (0 when it has none).
    pub fn rows(&self, underlying: &str, expiry: i32, ts: i64) -> u32 {
        self.0
            .iter()
            .filter(|(u, e, t, _)| u == underlying && *e == expiry && *t == ts)
            .map(|(_, _, _, n)| n)
            .sum()
    }
}

/// The headers of a chain summary whose boundary has `rows` strike rows.
pub fn strike_rows_headers(rows: u32) -> OwnedHeaders {
    let value = rows.to_string();
    OwnedHeaders::new().insert(Header {
        key: STRIKE_ROWS_HEADER,
        value: Some(value.as_bytes()),
    })
}

/// Enqueues every output without waiting; the caller flushes the outbox once per batch.
pub(super) fn publish(
    outbox: &mut Outbox,
    routes: &Routes,
    outputs: &mut Vec<Output>,
) -> Result<(), ProcessorError> {
    let strike_rows = StrikeRowCounts::of(outputs);
    let f = &routes.framings;
    for output in outputs.drain(..) {
        match output {
            Output::Bar(bar) => {
                outbox.send(
                    &routes.bars,
                    &bar.instrument_token.to_string(),
                    &encode_framed(&bar, f.bar)?,
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
                        .payload(&encode_framed(&tick, f.late)?)
                        .headers(letter.headers()),
                )?;
            }
            Output::Strike(strike) => {
                let key = chain_key(&strike.underlying, strike.expiry);
                outbox.send(&routes.strikes, &key, &encode_framed(&strike, f.strike)?)?;
            }
            Output::Chain(chain) => {
                let key = chain_key(&chain.underlying, chain.expiry);
                let rows = strike_rows.rows(&chain.underlying, chain.expiry, chain.ts);
                outbox.send_record(
                    FutureRecord::to(&routes.chains)
                        .key(&key)
                        .payload(&encode_framed(&chain, f.chain)?)
                        .headers(strike_rows_headers(rows)),
                )?;
            }
            Output::Moneyness(point) => {
                let key = chain_key(&point.underlying, point.expiry);
                outbox.send(
                    &routes.moneyness,
                    &key,
                    &encode_framed(&point, f.moneyness)?,
                )?;
            }
            Output::Indicator(point) => {
                outbox.send(
                    &routes.indicators,
                    &point.instrument_token.to_string(),
                    &encode_framed(&point, f.indicator)?,
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use strikeflow_kafka::rdkafka::message::Headers;

    use super::*;

    #[test]
    fn strike_rows_header_carries_the_count() {
        let headers = strike_rows_headers(17);
        let header = headers.get(0);
        assert_eq!(header.key, STRIKE_ROWS_HEADER);
        assert_eq!(header.value, Some(&b"17"[..]));
    }
}
