//! Rows PostgreSQL rejects: finding them in a batch, dead-lettering them, storing the rest.
//!
//! A record can decode and still be refused by PostgreSQL: a NUL byte in a text field
//! (SQLSTATE 22021), a timestamp out of range (22008), a constraint (class 23). Retrying
//! such a batch would fail forever and stall every partition behind it, so when the whole
//! batch fails with a data error (class 22) or an integrity error (class 23), it is written
//! again in one transaction, in pieces: each piece under a savepoint, and a failing piece
//! is halved until the failing messages stand alone. Those go to their topic's dead-letter
//! topic with the SQLSTATE in the `reason` header; every other piece is stored; then the
//! offsets of the whole batch are stored and the transaction commits. The dead letters are
//! acknowledged by Kafka before the commit, as for undecodable messages, so a crash leaves
//! either nothing committed (and the batch is read again) or rows, offsets and dead letters.
//!
//! Pieces are written in message order, so a key upserted in two pieces ends with its latest
//! version, as it would in one. Any other error (a lost connection, a fenced sink) rolls the
//! transaction back and is returned, as for a whole batch.

use strikeflow_kafka::rdkafka::message::Message;
use strikeflow_kafka::{DeadLetter, Outbox};
use tokio_postgres::error::DbError;
use tokio_postgres::Client;
use tracing::warn;

use crate::writer::{commit_with_offsets, write_rows};
use crate::{Batch, SinkError, Sources};

/// The `kind` (and `dead_letters_total` `reason` label) of a record PostgreSQL refused.
pub(crate) const REJECTED: &str = "rejected_by_postgres";

/// Whether `error` is about the data rather than the database: SQLSTATE class 22 (data
/// exception) or 23 (integrity constraint violation). Only these are worth isolating: the
/// same rows would fail the same way on every retry.
pub(crate) fn is_data_error(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(data_class)
}

fn data_class(error: &DbError) -> bool {
    data_sqlstate(error.code().code())
}

fn data_sqlstate(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23")
}

/// The `reason` of a rejected record: the SQLSTATE first, so it can be matched on, then
/// PostgreSQL's own words.
pub(crate) fn reason(error: &DbError) -> String {
    let mut reason = format!("SQLSTATE {}: {}", error.code().code(), error.message());
    if let Some(detail) = error.detail() {
        reason.push_str(&format!(" ({detail})"));
    }
    if let Some(table) = error.table() {
        reason.push_str(&format!(" [table {table}]"));
    }
    reason
}

/// What isolating the rejected rows of one batch did.
pub(crate) struct Isolated<'s> {
    /// The pieces stored, for their metrics.
    pub(crate) stored: Vec<Batch<'s>>,
    /// Messages dead-lettered because PostgreSQL refused them.
    pub(crate) rejected: usize,
}

/// Writes `messages` (whose rows, as one batch `whole`, PostgreSQL refused with a data
/// error) piece by piece in one transaction, dead-letters the messages it refuses alone,
/// and commits the rest with the offsets of all of them.
pub(crate) async fn store_isolating<'s, M: Message>(
    client: &mut Client,
    consumer: &str,
    sources: &'s Sources,
    messages: &[M],
    whole: &Batch<'_>,
    outbox: &mut Outbox,
) -> Result<Isolated<'s>, SinkError> {
    let mut tx = client.transaction().await?;
    let mut stored = Vec::new();
    let mut rejected: Vec<(usize, String)> = Vec::new();
    // Ranges still to write, the next on top: the left half is pushed last, so pieces are
    // written in message order.
    let mut pending = vec![(0, messages.len())];
    while let Some((start, end)) = pending.pop() {
        let mut piece = Batch::new(sources);
        for msg in &messages[start..end] {
            piece.add_again(msg);
        }
        crate::tables::clear_stages(&tx).await?;
        let savepoint = tx.savepoint("piece").await?;
        match write_rows(&savepoint, &piece).await {
            Ok(()) => {
                savepoint.commit().await?;
                stored.push(piece);
            }
            Err(e) => match e.as_db_error().filter(|db| data_class(db)) {
                Some(db) => {
                    let why = reason(db);
                    savepoint.rollback().await?;
                    if end - start == 1 {
                        rejected.push((start, why));
                    } else {
                        let middle = start + (end - start) / 2;
                        pending.push((middle, end));
                        pending.push((start, middle));
                    }
                }
                None => return Err(e.into()),
            },
        }
    }
    for (index, why) in &rejected {
        let msg = &messages[*index];
        warn!(
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
            reason = %why,
            "PostgreSQL refused a record; dead-lettering it and storing the rest of the batch"
        );
        let letter = DeadLetter {
            reason: why,
            kind: REJECTED,
            stage: "sink",
            source: Some((msg.topic(), msg.partition(), msg.offset())),
            position: None,
        };
        outbox.dead_letter(
            &sources.dead_letter_topic(msg.topic()),
            msg.key(),
            msg.payload().unwrap_or_default(),
            &letter,
        )?;
    }
    // Dead letters must be durable before the offsets that skip them are.
    outbox.flush().await?;
    commit_with_offsets(tx, consumer, whole).await?;
    Ok(Isolated {
        stored,
        rejected: rejected.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::data_sqlstate;

    #[test]
    fn only_classes_22_and_23_are_isolated() {
        for (code, isolated) in [
            ("22021", true), // NUL byte / invalid encoding
            ("22008", true), // timestamp out of range
            ("23505", true), // unique violation
            ("23514", true), // check violation
            ("40001", false),
            ("57P01", false), // admin shutdown
            ("08006", false), // connection failure
            ("21000", false),
        ] {
            assert_eq!(data_sqlstate(code), isolated, "{code}");
        }
    }
}
