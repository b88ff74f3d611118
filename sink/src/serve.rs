//! One PostgreSQL session of the sink: ownership, assignment, then batches until shutdown.
//!
//! Batches are pipelined one deep: while batch N is written (COPY, offsets, commit), batch
//! N+1 is read from Kafka and decoded, so PostgreSQL's core and the sink's are busy at the
//! same time instead of taking turns. Only written batches advance `sink_offsets`; a batch
//! read ahead and not yet written when the session ends is simply read again by the next
//! session (it starts from the stored offsets), so the pipeline changes nothing about
//! exactly-once.

use std::sync::Arc;
use std::time::Duration;

use strikeflow_kafka::rdkafka::consumer::StreamConsumer;
use strikeflow_kafka::rdkafka::message::{BorrowedMessage, Message};
use strikeflow_kafka::{consumer_config, BatchCollector, KafkaError, Outbox};
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::retry::Progress;
use crate::{ownership, partitions, poison, writer, Batch, SinkError, SinkSettings, Sources};

/// Connects, then [`serve`]s on the connection until it ends.
pub(crate) async fn session(
    pg: &strikeflow_tls::PgTarget,
    kafka: &strikeflow_kafka::KafkaConnection,
    registry: &strikeflow_kafka::Registry,
    settings: &SinkSettings,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> Result<(), SinkError> {
    let (mut client, connection) = pg.connect().await?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    let result = serve(&mut client, kafka, registry, settings, shutdown, progress).await;
    // Closing the session releases the ownership lock at once.
    drop(client);
    connection.abort();
    result
}

/// A run of messages and the rows decoded from them, ready to be written.
struct Decoded<'c, 's> {
    messages: Vec<BorrowedMessage<'c>>,
    batch: Batch<'s>,
}

/// The sink on an open connection: ownership, assignment, then batches until `shutdown`.
async fn serve(
    client: &mut Client,
    kafka: &strikeflow_kafka::KafkaConnection,
    registry: &strikeflow_kafka::Registry,
    settings: &SinkSettings,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> Result<(), SinkError> {
    let name = settings.consumer_name.as_str();
    ownership::claim(client, name).await?;
    progress.owned = true;
    crate::metrics::postgres_connected(true);
    writer::prepare_session(client).await?;

    let sources = Sources::new(&kafka.topics).with_registry(registry.clone());
    let inputs: Vec<String> = settings
        .topics
        .iter()
        .map(|&source| sources.name(source).to_owned())
        .collect();
    let consumer: StreamConsumer =
        consumer_config(&kafka.brokers, &format!("strikeflow-sink-{name}"))
            .set("enable.auto.commit", "false")
            // A position whose records expired is an error, never a silent jump ahead
            // (see `partitions`).
            .set("auto.offset.reset", "error")
            // Bounded read-ahead: about two batches per partition are fetched ahead of the
            // one being written (librdkafka's default is 100,000 messages per partition).
            .set("queued.min.messages", (2 * settings.batch_rows).to_string())
            // Once that read-ahead is full librdkafka looks again only after this pause
            // (1,000 ms by default): a sink writing a batch in ~0.1 s would then idle most of
            // each second (docs/benchmarks.md, "Ticks, as shipped").
            .set("fetch.queue.backoff.ms", "10")
            .create()?;
    let consumer = Arc::new(consumer);
    let mut assignment = partitions::Assignment::new(consumer.clone(), &inputs);
    first_assignment(&mut assignment, client, name, shutdown).await?;
    // Two outboxes: the batch being written dead-letters the rows PostgreSQL refuses while
    // the next batch, being decoded, dead-letters the records that do not decode.
    let mut outbox = Outbox::connect(&kafka.brokers)?;
    let mut decode_outbox = Outbox::connect(&kafka.brokers)?;
    info!(consumer = %name, partitions = assignment.len(), "sink started");

    let collector = BatchCollector::new(
        "sink",
        settings.batch_rows,
        Duration::from_millis(settings.batch_wait_ms),
    );
    let mut next_refresh = Instant::now() + partitions::REFRESH_EVERY;
    let mut refresh_failures = 0;
    let mut ahead: Option<Decoded> = None;
    loop {
        if Instant::now() >= next_refresh {
            refresh(&mut assignment, client, name, &mut refresh_failures).await?;
            next_refresh = Instant::now() + partitions::REFRESH_EVERY;
        }
        let current = match ahead.take() {
            Some(decoded) => decoded,
            None => {
                let first = tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep_until(next_refresh) => continue,
                    msg = collector.next(&consumer) => msg,
                };
                let decoded = match first {
                    Ok(first) => {
                        read(&collector, &consumer, first, &sources, &mut decode_outbox).await
                    }
                    Err(e) => Err(e),
                };
                match decoded {
                    Ok(decoded) => decoded,
                    Err(e) => return Err(consumer_failed(e, &assignment, client, name).await),
                }
            }
        };
        // Dead letters must be durable before the offsets that skip them are.
        decode_outbox.flush().await?;
        let (stored, next) = tokio::join!(
            store(client, name, &sources, &current, &mut outbox),
            read_ahead(&collector, &consumer, &sources, &mut decode_outbox),
        );
        stored?;
        progress.committed = true;
        drop(current);
        ahead = match next {
            Ok(next) => next,
            Err(e) => return Err(consumer_failed(e, &assignment, client, name).await),
        };
        if shutdown.is_cancelled() {
            // What was read ahead is not written: the next start reads it again.
            return Ok(());
        }
    }
}

/// How long a starting sink waits for its input topics to show up in the brokers' metadata
/// (a topic created moments ago is not known to every broker at once) before it stops with
/// the missing topic named.
const TOPICS_GRACE: Duration = Duration::from_secs(30);

/// Assigns every partition of the input topics, waiting up to [`TOPICS_GRACE`] for topics
/// the metadata does not list yet.
async fn first_assignment(
    assignment: &mut partitions::Assignment,
    client: &Client,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<(), SinkError> {
    let deadline = Instant::now() + TOPICS_GRACE;
    loop {
        match assignment.extend(client, name).await {
            Err(SinkError::Kafka(KafkaError::MissingTopic { topic, .. }))
                if Instant::now() < deadline =>
            {
                warn!(%topic, "input topic not in the brokers' metadata yet; waiting for it");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Metadata checks failing in a row (each one up to its timeout apart, so about a minute of
/// a broker that answers nothing) after which the session ends: its Kafka clients are
/// dropped and the supervisor starts the sink again with fresh ones. A broker blip stays
/// a warning; a client left waiting on a connection that will never answer (seen after a
/// broker was frozen and thawed) does not stall the sink for good.
const REFRESH_FAILURES_TO_RESTART: u32 = 4;

/// Assigns partitions added to the input topics since the last check.
async fn refresh(
    assignment: &mut partitions::Assignment,
    client: &Client,
    name: &str,
    failures: &mut u32,
) -> Result<(), SinkError> {
    match assignment.extend(client, name).await {
        Ok(_) => {
            *failures = 0;
            Ok(())
        }
        Err(SinkError::Kafka(e)) if *failures + 1 < REFRESH_FAILURES_TO_RESTART => {
            *failures += 1;
            warn!(error = %e, failures = *failures, "checking the input topics for new partitions failed");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// `first` and what follows it within the batch limits, decoded; undecodable records are
/// dead-lettered through `outbox` (flushed by the caller before the batch is written).
async fn read<'c, 's>(
    collector: &BatchCollector,
    consumer: &'c StreamConsumer,
    first: BorrowedMessage<'c>,
    sources: &'s Sources,
    outbox: &mut Outbox,
) -> Result<Decoded<'c, 's>, KafkaError> {
    let messages = collector.fill(consumer, first).await?;
    let mut batch = Batch::new(sources);
    for msg in &messages {
        // A new schema id is fetched once (bounded by the registry timeout); a known one,
        // or a single-object record, costs no I/O.
        sources
            .registry()
            .resolve(msg.payload().unwrap_or_default())
            .await;
        batch.add(msg, outbox)?;
    }
    Ok(Decoded { messages, batch })
}

/// The next batch, while the current one is written: `None` when no record arrives within
/// the batch wait (the input is idle; the loop then waits with shutdown and refresh in view).
async fn read_ahead<'c, 's>(
    collector: &BatchCollector,
    consumer: &'c StreamConsumer,
    sources: &'s Sources,
    outbox: &mut Outbox,
) -> Result<Option<Decoded<'c, 's>>, KafkaError> {
    // `next` is cancel-safe, so giving up on it loses nothing; once a record is in hand the
    // batch is read to its end.
    match tokio::time::timeout(collector.wait(), collector.next(consumer)).await {
        Err(_idle) => Ok(None),
        Ok(first) => Ok(Some(
            read(collector, consumer, first?, sources, outbox).await?,
        )),
    }
}

/// Writes one batch with its offsets; rows PostgreSQL refuses (data or constraint errors)
/// are isolated and dead-lettered, and the rest stored in the same transaction.
async fn store(
    client: &mut Client,
    name: &str,
    sources: &Sources,
    decoded: &Decoded<'_, '_>,
    outbox: &mut Outbox,
) -> Result<(), SinkError> {
    let Decoded { messages, batch } = decoded;
    match writer::write_batch(client, name, batch).await {
        Ok(()) => {
            batch.record_metrics();
            Ok(())
        }
        Err(SinkError::Postgres(e)) if poison::is_data_error(&e) => {
            warn!(error = %e, messages = messages.len(), "PostgreSQL refused the batch; isolating the rows it refuses");
            let isolated =
                poison::store_isolating(client, name, sources, messages, batch, outbox).await?;
            info!(
                rejected = isolated.rejected,
                "batch stored without the refused rows"
            );
            for piece in &isolated.stored {
                piece.record_metrics();
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The sink's error for a consumer failure: a read position whose records expired becomes
/// the offset gap it reveals (see `partitions`), anything else stays a Kafka error.
async fn consumer_failed(
    error: KafkaError,
    assignment: &partitions::Assignment,
    client: &Client,
    name: &str,
) -> SinkError {
    if !is_expired_position(&error) {
        return error.into();
    }
    match assignment.expired(client, name).await {
        Ok(Some(gap)) => gap,
        Ok(None) => error.into(),
        Err(e) => e,
    }
}

/// The consumer's report that a position fell below its log start (`auto.offset.reset =
/// error`), as returned by [`BatchCollector`].
fn is_expired_position(e: &KafkaError) -> bool {
    use strikeflow_kafka::rdkafka::error::KafkaError as Client;
    use strikeflow_kafka::rdkafka::types::RDKafkaErrorCode;
    matches!(
        e,
        KafkaError::Client(Client::MessageConsumption(
            RDKafkaErrorCode::AutoOffsetReset
        ))
    )
}
