//! Reading a compacted topic in full and following it: the instrument master, which every
//! processor instance and every push instance needs whole, whatever partitions they own.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::metrics::ConsumerErrorSurvived;
use crate::{partition_ids, reader_config, Brokers, KafkaError};

/// How often a topic that does not exist yet is looked for.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Time limit of one metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a consumer error so a broken broker does not spin the caller's loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);

/// A private reader of every partition of one compacted topic, from the beginning.
///
/// It belongs to no consumer group (each reader needs all of the topic, not a share of it)
/// and commits nothing. [`CompactedReader::catch_up`] reads until every partition reached
/// its end, so a stage starts with the whole table; [`CompactedReader::recv`] then follows
/// what is written later. The topic's partitions are re-checked every
/// [`REFRESH_EVERY`](CompactedReader::REFRESH_EVERY) and
/// new ones are read from their beginning; a topic that does not exist yet is waited for.
pub struct CompactedReader {
    consumer: Arc<StreamConsumer>,
    state: State,
}

impl std::fmt::Debug for CompactedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompactedReader")
            .field("topic", &self.state.topic)
            .field("assigned", &self.state.assigned)
            .finish_non_exhaustive()
    }
}

/// What the reader knows about its partitions; kept apart from the consumer so a record
/// borrowed from the consumer can be returned while this is updated.
struct State {
    name: String,
    topic: String,
    assigned: HashSet<i32>,
    at_end: HashSet<i32>,
    refresh: Refresh,
}

/// When the next metadata check is due, and the one in flight. The request runs on a
/// blocking thread and its handle is kept here, so a `recv` cancelled by the caller's
/// `select!` does not lose or repeat it.
struct Refresh {
    next: Instant,
    pending: Option<JoinHandle<Result<Vec<i32>, KafkaError>>>,
}

/// What one step of reading produced.
enum Event<'c> {
    Record(BorrowedMessage<'c>),
    /// A partition reached its end.
    End,
}

impl CompactedReader {
    /// How often the topic is checked for partitions added since the last check.
    pub const REFRESH_EVERY: Duration = Duration::from_secs(5);

    /// Creates the reader of `topic`; `name` labels its logs, its error count and its
    /// (unique) group id. Nothing is contacted yet: partitions are assigned on the first
    /// [`catch_up`](CompactedReader::catch_up) or [`recv`](CompactedReader::recv), or by
    /// [`assign_new_partitions`](CompactedReader::assign_new_partitions).
    pub fn new(brokers: &Brokers, topic: &str, name: &str) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer = reader_config(brokers, name).create()?;
        Ok(Self {
            consumer: Arc::new(consumer),
            state: State {
                name: name.to_owned(),
                topic: topic.to_owned(),
                assigned: HashSet::new(),
                at_end: HashSet::new(),
                refresh: Refresh {
                    next: Instant::now(),
                    pending: None,
                },
            },
        })
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.state.topic
    }

    /// How many partitions are assigned so far.
    pub fn partitions(&self) -> usize {
        self.state.assigned.len()
    }

    /// Whether every assigned partition has been read to its end (and there is one).
    pub fn caught_up(&self) -> bool {
        self.state.caught_up()
    }

    /// Assigns the partitions of the topic not yet assigned, from their beginning, now;
    /// returns how many were added. For a stage that must not start without the topic:
    /// a missing topic is [`KafkaError::MissingTopic`] here, where `catch_up` would wait.
    pub async fn assign_new_partitions(&mut self) -> Result<usize, KafkaError> {
        let ids = fetch_partition_ids(&self.consumer, &self.state.topic).await?;
        self.state.refresh.next = Instant::now() + CompactedReader::REFRESH_EVERY;
        self.state.assign(&self.consumer, &ids)
    }

    /// Reads until every partition reached its end or `limit` passed, and returns what
    /// `decode` made of each record (`None`: nothing to keep, e.g. a tombstone). Running
    /// out of time is logged, not an error: a stage serves with what it has.
    pub async fn catch_up<T>(
        &mut self,
        limit: Duration,
        mut decode: impl FnMut(&BorrowedMessage<'_>) -> Option<T>,
    ) -> Vec<T> {
        let deadline = Instant::now() + limit;
        let mut values = Vec::new();
        let mut read = 0_usize;
        while !self.state.caught_up() {
            match tokio::time::timeout_at(deadline, next_event(&self.consumer, &mut self.state))
                .await
            {
                Ok(Event::Record(msg)) => {
                    read += 1;
                    values.extend(decode(&msg));
                    drop(msg);
                    // librdkafka hands over buffered records without ever returning Pending;
                    // a large table must not hold the runtime thread for the whole read.
                    tokio::task::coop::consume_budget().await;
                }
                Ok(Event::End) => {}
                Err(_elapsed) => {
                    tracing::warn!(
                        topic = %self.state.topic,
                        read,
                        "compacted topic not read to its end in {limit:?}; continuing"
                    );
                    return values;
                }
            }
        }
        tracing::info!(topic = %self.state.topic, read, "compacted topic read to its end");
        values
    }

    /// The next record, from any partition, including partitions added since the start.
    /// Ends of partitions are noted, not returned; consumer errors are logged, counted
    /// (`consumer_errors_total`) and waited out. Cancel-safe, so it can be one branch of a
    /// `select!`.
    pub async fn recv(&mut self) -> BorrowedMessage<'_> {
        let consumer = &self.consumer;
        loop {
            if let Event::Record(msg) = next_event(consumer, &mut self.state).await {
                return msg;
            }
        }
    }

    /// Closes the consumer on a blocking thread: librdkafka can block briefly while it
    /// leaves, which must not stall the runtime.
    pub async fn close(self) {
        let Self { consumer, state } = self;
        drop(state);
        if let Err(e) = tokio::task::spawn_blocking(move || drop(consumer)).await {
            tracing::warn!(error = %e, "closing a compacted-topic reader failed");
        }
    }
}

/// One record or end of partition, after any metadata check that fell due.
async fn next_event<'c>(consumer: &'c Arc<StreamConsumer>, state: &mut State) -> Event<'c> {
    loop {
        tokio::select! {
            biased;
            fetched = state.refresh.due(consumer, &state.topic) => state.refreshed(consumer, fetched),
            received = consumer.recv() => match received {
                Ok(msg) => {
                    // New records after an end: that partition is behind again.
                    state.at_end.remove(&msg.partition());
                    return Event::Record(msg);
                }
                Err(RdKafkaError::PartitionEOF(partition)) => {
                    state.at_end.insert(partition);
                    return Event::End;
                }
                Err(error) => {
                    ConsumerErrorSurvived { consumer: &state.name, error: &error }.emit();
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            },
        }
    }
}

/// The partition ids of `topic`, from a blocking thread.
async fn fetch_partition_ids(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
) -> Result<Vec<i32>, KafkaError> {
    spawn_fetch(consumer, topic)
        .await
        .map_err(KafkaError::Task)?
}

fn spawn_fetch(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
) -> JoinHandle<Result<Vec<i32>, KafkaError>> {
    let (consumer, topic) = (consumer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || partition_ids(&consumer, &topic, METADATA_TIMEOUT))
}

impl Refresh {
    /// Waits until a check is due, then for its answer.
    async fn due(
        &mut self,
        consumer: &Arc<StreamConsumer>,
        topic: &str,
    ) -> Result<Vec<i32>, KafkaError> {
        if self.pending.is_none() {
            tokio::time::sleep_until(self.next).await;
        }
        let request = self
            .pending
            .get_or_insert_with(|| spawn_fetch(consumer, topic));
        let answer = request.await;
        self.pending = None;
        answer.map_err(KafkaError::Task)?
    }
}

impl State {
    fn caught_up(&self) -> bool {
        !self.assigned.is_empty() && self.assigned.is_subset(&self.at_end)
    }

    /// Applies the answer of a periodic check and schedules the next one.
    fn refreshed(&mut self, consumer: &StreamConsumer, fetched: Result<Vec<i32>, KafkaError>) {
        let assigned = fetched.and_then(|ids| self.assign(consumer, &ids));
        let wait = match assigned {
            Ok(_) => CompactedReader::REFRESH_EVERY,
            Err(e) => {
                // Usually a topic not created yet (`strikeflow migrate` not run).
                tracing::debug!(topic = %self.topic, error = %e, "compacted topic not ready");
                RETRY_EVERY
            }
        };
        self.refresh.next = Instant::now() + wait;
    }

    /// Adds the partitions among `ids` not assigned yet, from their beginning.
    fn assign(&mut self, consumer: &StreamConsumer, ids: &[i32]) -> Result<usize, KafkaError> {
        let added: Vec<i32> = ids
            .iter()
            .copied()
            .filter(|id| !self.assigned.contains(id))
            .collect();
        if added.is_empty() {
            return Ok(0);
        }
        let mut list = TopicPartitionList::new();
        for &id in &added {
            list.add_partition_offset(&self.topic, id, Offset::Beginning)?;
        }
        consumer.incremental_assign(&list)?;
        self.assigned.extend(&added);
        tracing::info!(topic = %self.topic, partitions = ?added, "reading partitions from the beginning");
        Ok(added.len())
    }
}
