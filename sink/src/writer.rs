//! Writing one batch and its offsets in one PostgreSQL transaction.

use strikeflow_schemas::Instrument;
use tokio_postgres::{Client, Error, GenericClient, Transaction};

use crate::{Batch, SinkError};

/// Creates the per-session staging tables rows are copied into before their upsert
/// (binary COPY cannot resolve conflicts itself; see [`crate::tables`]).
pub(crate) async fn prepare_session(client: &Client) -> Result<(), Error> {
    crate::tables::prepare_session(client).await
}

/// Inserts or updates instrument definitions by token. Shared by the sink and by
/// `strikeflow ingest instruments`, which loads a master file straight into the table.
pub async fn upsert_instruments<'a>(
    client: &impl GenericClient,
    instruments: impl IntoIterator<Item = &'a Instrument>,
) -> Result<u64, Error> {
    let mut instruments = instruments.into_iter().peekable();
    if instruments.peek().is_none() {
        return Ok(0);
    }
    let upsert = client
        .prepare(
            "INSERT INTO instruments (instrument_token, exchange_token, tradingsymbol, name, last_price, \
             expiry, strike, tick_size, lot_size, instrument_type, segment, exchange, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, now()) \
             ON CONFLICT (instrument_token) DO UPDATE SET exchange_token = EXCLUDED.exchange_token, \
             tradingsymbol = EXCLUDED.tradingsymbol, name = EXCLUDED.name, last_price = EXCLUDED.last_price, \
             expiry = EXCLUDED.expiry, strike = EXCLUDED.strike, tick_size = EXCLUDED.tick_size, \
             lot_size = EXCLUDED.lot_size, instrument_type = EXCLUDED.instrument_type, \
             segment = EXCLUDED.segment, exchange = EXCLUDED.exchange, updated_at = now()",
        )
        .await?;
    let mut written = 0;
    for i in instruments {
        let expiry = i.expiry.and_then(strikeflow_schemas::date_from_days);
        let kind = format!("{:?}", i.instrument_type);
        written += client
            .execute(
                &upsert,
                &[
                    &i.instrument_token,
                    &i.exchange_token,
                    &i.tradingsymbol,
                    &i.name,
                    &i.last_price,
                    &expiry,
                    &i.strike,
                    &i.tick_size,
                    &i.lot_size,
                    &kind,
                    &i.segment,
                    &i.exchange,
                ],
            )
            .await?;
    }
    Ok(written)
}

/// Writes every row of `batch` and advances `consumer`'s offsets, atomically, provided this
/// session still owns `consumer` (its advisory lock, see `ownership`): otherwise nothing is
/// committed and the error is [`SinkError::Fenced`].
pub async fn write_batch(
    client: &mut Client,
    consumer: &str,
    batch: &Batch<'_>,
) -> Result<(), SinkError> {
    let tx = client.transaction().await?;
    write_rows(&tx, batch).await?;
    commit_with_offsets(tx, consumer, batch).await
}

/// Stores `batch`'s offsets in `tx` and commits, after checking that the session still
/// owns `consumer`; a dropped `tx` (any error) rolls back.
pub(crate) async fn commit_with_offsets(
    tx: Transaction<'_>,
    consumer: &str,
    batch: &Batch<'_>,
) -> Result<(), SinkError> {
    crate::ownership::verify(&tx, consumer).await?;
    let (mut topics, mut partitions, mut next) = (Vec::new(), Vec::new(), Vec::new());
    for ((source, partition), offset) in &batch.offsets {
        topics.push(batch.name_of(*source));
        partitions.push(*partition);
        next.push(*offset);
    }
    tx.execute(
        "INSERT INTO sink_offsets (consumer, topic, partition, next_offset, updated_at) \
         SELECT $1, t, p, o, now() FROM UNNEST($2::text[], $3::int[], $4::bigint[]) AS u(t, p, o) \
         ON CONFLICT (consumer, topic, partition) DO UPDATE \
         SET next_offset = EXCLUDED.next_offset, updated_at = now()",
        &[&consumer, &topics, &partitions, &next],
    )
    .await?;
    Ok(tx.commit().await?)
}

/// Writes every row of `batch` inside `tx` (a transaction or a savepoint), offsets aside.
pub(crate) async fn write_rows(tx: &Transaction<'_>, batch: &Batch<'_>) -> Result<(), Error> {
    upsert_instruments(tx, batch.instruments.values()).await?;

    crate::tables::write_ticks(tx, &batch.ticks).await?;
    crate::tables::write(tx, batch).await
}
