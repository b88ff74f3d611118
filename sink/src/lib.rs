//! strikeflow sink: Kafka topics into PostgreSQL / TimescaleDB, exactly once.
//!
//! It stores every topic the pipeline produces: the instrument master (current and history),
//! ticks, bars, per-strike and per-chain analytics, moneyness points, indicator values and
//! late ticks (tables in `migrations/`, described in `docs/sql.md`).
//!
//! Each batch is written with binary COPY and the consumed offsets are stored in
//! `sink_offsets` **in the same transaction**; on start the sink seeks to those offsets and
//! ignores Kafka's own committed offsets. A crash at any point therefore either commits a
//! batch with its offsets or neither, so rows are never lost or duplicated.
//!
//! Two sinks with the same `consumer_name` would store the same offsets twice, so a sink
//! owns its name through a PostgreSQL advisory lock (`ownership`); partitions added while
//! it runs are assigned without a restart and a stored offset whose records expired from
//! Kafka stops it loudly (`partitions`); a row PostgreSQL refuses is dead-lettered with its
//! SQLSTATE and the rest of its batch stored (`poison`).

mod batch;
mod config;
mod metrics;
mod offsets;
mod ownership;
mod partitions;
mod poison;
mod tables;
mod writer;

pub use batch::{Batch, ChainId, IndicatorId, MoneynessId, Source, Sources};
pub use config::{SinkConfig, SinkSettings};
pub use ownership::SINK_LOCK_CLASS;
pub use writer::{upsert_instruments, write_batch};

use std::sync::Arc;
use std::time::Duration;

use strikeflow_kafka::rdkafka::consumer::StreamConsumer;
use strikeflow_kafka::{consumer_config, BatchCollector, Outbox};
use tokio::time::MissedTickBehavior;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Why the sink stopped (or did not start).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A `[sink]` setting is unusable; reported before anything connects.
    #[error("sink.{key}: {reason}")]
    Config {
        /// The key within `[sink]`.
        key: &'static str,
        /// What is wrong with its value.
        reason: &'static str,
    },
    /// PostgreSQL failed; the open batch was rolled back and will be read again.
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// Another session holds this sink name's advisory lock: a sink with the same
    /// `consumer_name` is running, and two would store the same offsets twice.
    #[error(
        "sink.consumer_name {consumer:?} is already in use by a running sink: its lock is held by \
         {holder}; stop that sink, or give this one another consumer_name"
    )]
    AlreadyRunning {
        /// The sink name.
        consumer: String,
        /// The session holding the lock, from `pg_locks` and `pg_stat_activity`.
        holder: String,
    },
    /// The batch transaction found its session no longer holds the sink's lock; the batch
    /// was rolled back and the sink stops rather than write as a non-owner.
    #[error("sink {consumer:?} no longer holds its ownership lock; batch rolled back")]
    Fenced {
        /// The sink name.
        consumer: String,
    },
    /// A stored offset is below its partition's log start: records expired from Kafka
    /// before this sink stored them. The sink stops instead of skipping them silently.
    #[error(
        "{topic}[{partition}]: stored offset {stored} is below the log start {log_start}; \
         records {stored}..{log_start} expired from Kafka unread (see docs/sql.md, \"Offset gaps\")"
    )]
    OffsetGap {
        /// The topic.
        topic: String,
        /// The partition.
        partition: i32,
        /// The next offset the sink stored in `sink_offsets`.
        stored: i64,
        /// The first offset Kafka still has.
        log_start: i64,
    },
    /// Kafka failed.
    #[error(transparent)]
    Kafka(#[from] strikeflow_kafka::KafkaError),
}

impl From<strikeflow_kafka::rdkafka::error::KafkaError> for SinkError {
    fn from(e: strikeflow_kafka::rdkafka::error::KafkaError) -> Self {
        Self::Kafka(e.into())
    }
}

/// Runs the sink until `shutdown` is cancelled; the batch in hand is committed first.
///
/// Refuses to start ([`SinkError::AlreadyRunning`]) while another sink with the same
/// `consumer_name` runs, and stops with [`SinkError::OffsetGap`] when a stored offset's
/// records expired from Kafka.
///
/// Losing PostgreSQL (a restart, an outage, a dropped connection) does not stop it: the open
/// batch is rolled back with the session, the consumer is dropped (consumption pauses and
/// no memory grows), and after a backoff (0.5 s doubling to `max_backoff_secs`) the sink
/// connects again, takes its ownership lock again and re-reads from the offsets stored with
/// the rows — the same path as a restart, so nothing is lost or stored twice, even when a
/// commit succeeded but its acknowledgement was lost.
pub async fn run(config: SinkConfig, shutdown: CancellationToken) -> Result<(), SinkError> {
    let SinkConfig {
        kafka,
        database_url,
        settings,
    } = config;
    settings.validate()?;
    metrics::describe();
    let mut pg: tokio_postgres::Config = database_url.parse()?;
    pg.application_name(ownership::application_name(&settings.consumer_name));
    let max_backoff = Duration::from_secs(settings.max_backoff_secs);
    let mut failures = 0;
    let mut owned_before = false;
    loop {
        let mut progress = Progress::default();
        let result = session(&pg, &kafka, &settings, &shutdown, &mut progress).await;
        owned_before |= progress.owned;
        match result {
            Ok(()) => {
                info!("sink stopped");
                return Ok(());
            }
            Err(e) if e.is_connection_lost(owned_before) => {
                if progress.committed {
                    failures = 0;
                }
                failures += 1;
                let delay = strikeflow_kafka::backoff(failures, max_backoff);
                metrics::PostgresLost {
                    error: &e,
                    attempt: failures,
                    delay,
                }
                .emit();
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// What one PostgreSQL session achieved before it ended, for the reconnect loop.
#[derive(Debug, Default)]
struct Progress {
    /// The session took the sink's ownership lock.
    owned: bool,
    /// At least one batch was committed on it (the backoff starts over).
    committed: bool,
}

impl SinkError {
    /// Whether this error means PostgreSQL went away (the sink reconnects) rather than a
    /// fault that reconnecting cannot cure. `owned_before`: an earlier session of this
    /// process held the lock, so a lock still held by "another" session is most likely
    /// that dead session not yet reaped by the server, worth waiting for.
    fn is_connection_lost(&self, owned_before: bool) -> bool {
        match self {
            SinkError::Postgres(e) => postgres_unreachable(e),
            SinkError::AlreadyRunning { .. } => owned_before,
            _ => false,
        }
    }
}

/// A connection refused, reset or closed, or a server shutting down, starting up or out of
/// resources: SQLSTATE classes 08, 53, 57P and 58, plus serialization failures and
/// deadlocks (40001, 40P01), which a new attempt resolves. Everything else (a missing
/// table, a refused password, a data error) stays an error.
fn postgres_unreachable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        Some(code) => {
            let code = code.code();
            ["08", "53", "57P", "58"]
                .iter()
                .any(|class| code.starts_with(class))
                || code == "40001"
                || code == "40P01"
        }
        // No SQLSTATE: the error came from the socket (connect, read, write, timeout).
        None => std::error::Error::source(e).is_some_and(|cause| cause.is::<std::io::Error>()),
    }
}

/// One PostgreSQL session of the sink: connect, then [`serve`] on it until it ends.
async fn session(
    pg: &tokio_postgres::Config,
    kafka: &strikeflow_kafka::KafkaConnection,
    settings: &SinkSettings,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> Result<(), SinkError> {
    let (mut client, connection) = pg.connect(NoTls).await?;
    let connection = tokio::spawn(async move {
        if let Err(e) = connection.await {
            warn!(error = %e, "postgres connection closed");
        }
    });
    let result = serve(&mut client, kafka, settings, shutdown, progress).await;
    // Closing the session releases the ownership lock at once.
    drop(client);
    connection.abort();
    result
}

/// The sink on an open connection: ownership, assignment, then batches until `shutdown`.
async fn serve(
    client: &mut tokio_postgres::Client,
    kafka: &strikeflow_kafka::KafkaConnection,
    settings: &SinkSettings,
    shutdown: &CancellationToken,
    progress: &mut Progress,
) -> Result<(), SinkError> {
    let name = settings.consumer_name.as_str();
    ownership::claim(client, name).await?;
    progress.owned = true;
    metrics::postgres_connected(true);
    writer::prepare_session(client).await?;

    let sources = Sources::new(&kafka.topics);
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
            .create()?;
    let consumer = Arc::new(consumer);
    let mut assignment = partitions::Assignment::new(consumer.clone(), &inputs);
    assignment.extend(client, name).await?;
    let mut outbox = Outbox::connect(&kafka.brokers)?;
    info!(consumer = %name, partitions = assignment.len(), "sink started");

    let mut refresh = tokio::time::interval(partitions::REFRESH_EVERY);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Delay);
    refresh.reset();
    let collector = BatchCollector::new(
        "sink",
        settings.batch_rows,
        Duration::from_millis(settings.batch_wait_ms),
    );
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = refresh.tick() => {
                match assignment.extend(client, name).await {
                    Ok(_) => {}
                    // A broker blip must not stop the sink; the next check tries again.
                    Err(SinkError::Kafka(e)) => {
                        warn!(error = %e, "checking the input topics for new partitions failed");
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            msg = collector.next(&consumer) => msg,
        };
        let messages = match first {
            Ok(first) => collector.fill(&consumer, first).await,
            Err(e) => Err(e),
        };
        let messages = match messages {
            Ok(messages) => messages,
            Err(e) if is_expired_position(&e) => {
                return Err(assignment.expired(client, name).await?.unwrap_or(e.into()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut batch = Batch::new(&sources);
        for msg in &messages {
            batch.add(msg, &mut outbox)?;
        }
        // Dead letters must be durable before the offsets that skip them are.
        outbox.flush().await?;
        match write_batch(client, name, &batch).await {
            Ok(()) => {
                progress.committed = true;
                batch.record_metrics();
            }
            Err(SinkError::Postgres(e)) if poison::is_data_error(&e) => {
                warn!(error = %e, messages = messages.len(), "PostgreSQL refused the batch; isolating the rows it refuses");
                let isolated =
                    poison::store_isolating(client, name, &sources, &messages, &batch, &mut outbox)
                        .await?;
                info!(
                    rejected = isolated.rejected,
                    "batch stored without the refused rows"
                );
                progress.committed = true;
                for piece in &isolated.stored {
                    piece.record_metrics();
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// The consumer's report that a position fell below its log start (`auto.offset.reset =
/// error`), as returned by [`BatchCollector`].
fn is_expired_position(e: &strikeflow_kafka::KafkaError) -> bool {
    use strikeflow_kafka::rdkafka::error::KafkaError as Client;
    use strikeflow_kafka::rdkafka::types::RDKafkaErrorCode;
    matches!(
        e,
        strikeflow_kafka::KafkaError::Client(Client::MessageConsumption(
            RDKafkaErrorCode::AutoOffsetReset
        ))
    )
}
