//! Consumed offsets kept in PostgreSQL beside the data they produced.

use std::collections::HashMap;

/// Reads the next offset to consume per (topic, partition) for one sink.
pub(crate) async fn load(
    client: &tokio_postgres::Client,
    consumer: &str,
) -> Result<HashMap<(String, i32), i64>, tokio_postgres::Error> {
    let rows = client
        .query(
            "SELECT topic, partition, next_offset FROM sink_offsets WHERE consumer = $1",
            &[&consumer],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                (row.get::<_, String>(0), row.get::<_, i32>(1)),
                row.get::<_, i64>(2),
            )
        })
        .collect())
}
