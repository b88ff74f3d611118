//! The instrument master, read in full by every processor instance.
//!
//! Chain analytics need every strike, expiry and lot size of a chain, and which partition a
//! chain's ticks land on says nothing about where its instruments are, so each instance
//! reads the whole compacted `instruments` topic with the shared
//! [`CompactedReader`](strikeflow_kafka::CompactedReader) instead of sharing it through
//! the consumer group.

use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Message};
use strikeflow_schemas::{decode_any, Instrument, SchemaIds};

use crate::metrics;

/// The instrument in one record of the instruments topic. A tombstone retires a token (its
/// chain keeps the strike for history) and gives nothing; an undecodable record is counted
/// and logged, not returned: the sink dead-letters it, the processor only reads. Either
/// framing; a Confluent record's id must be resolved in `ids` already.
pub(super) fn decode_instrument(msg: &BorrowedMessage<'_>, ids: &SchemaIds) -> Option<Instrument> {
    let payload = msg.payload()?;
    match decode_any::<Instrument>(payload, ids) {
        Ok(instrument) => Some(instrument),
        Err(e) => {
            metrics::instrument_undecodable(msg.offset(), &e);
            None
        }
    }
}
