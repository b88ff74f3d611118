//! Kafka → hub.
//!
//! Every push instance must fan out every message, so push does not share a consumer group:
//! it assigns itself every partition of the topics it serves, and all partitions of the
//! compacted instruments topic from the beginning (to map instrument tokens to trading
//! symbols). Each consumer uses a unique `group.id` (librdkafka wants one even for manual
//! assignment) and commits nothing: push is a read-only view.
//!
//! * The ticks topic is read from its live end (ticks have no state to rebuild).
//! * The bars, moneyness and indicators topics (one live consumer with ticks), and the
//!   strikes and chains topics (a consumer each, so a partition's end is known per topic,
//!   which the chain merge needs) are read from `push.replay_secs` ago, so a freshly
//!   started node rebuilds the current chains, moneyness, indicator values and open
//!   3/5/15-minute bars before clients need them.
//!
//! Instruments are read by the shared [`CompactedReader`] (the processor reads the master
//! the same way) and always take priority, and live data waits (buffered by librdkafka, not
//! lost) until the instrument map has caught up at start-up, so the first bars after a
//! restart already go to `bars.<tradingsymbol>.<tf>`. A record whose token is still unknown
//! is counted and published under the token instead of the symbol.
//!
//! Topics that do not exist yet are waited for, and partitions added later are picked up
//! (from their beginning, since everything in them is new).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError as RdKafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use strikeflow_kafka::{reader_config, Brokers, CompactedReader, KafkaError, Registry};
use strikeflow_schemas::{Topics, STRIKE_ROWS_HEADER};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::catalogue::Catalogue;
use crate::chain::Side;
use crate::hub::Hub;
use crate::route::{FeedState, Position, Source};
use crate::snapshot::SnapshotStore;

/// How long live data waits for the instrument map to catch up at start-up.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);
/// How often the live topics are re-checked for new partitions once all are assigned.
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How often missing live topics are looked for.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// Time limit for a metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause after a consumer error so a broken broker does not spin the loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// Live records taken from librdkafka's buffer before the sessions they feed are woken.
const LIVE_BATCH: usize = 256;
/// Period of the chain merge's tick (how long a topic must stay at its end before a
/// chain group stops waiting for it).
const MERGE_TICK: Duration = Duration::from_millis(100);

/// The live consumers' settings: a reader of its own (see [`reader_config`]) whose first
/// position in a partition is its end, since push is a live view.
fn live_config(brokers: &Brokers, label: &str, partition_eof: bool) -> ClientConfig {
    let mut config = reader_config(brokers, label);
    config
        .set("client.id", "strikeflow-push")
        .set("auto.offset.reset", "latest")
        .set(
            "enable.partition.eof",
            if partition_eof { "true" } else { "false" },
        );
    if partition_eof {
        // The chain merge learns that a quiet topic has nothing more from the partition-end
        // event, which comes with the fetch after the last records: keep that fetch short.
        config.set("fetch.wait.max.ms", "50");
    }
    config
}

/// Where a topic's first partitions start.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// At the live end.
    End,
    /// At the first record of this time (milliseconds since the epoch), or the end.
    Since(i64),
}

/// The Kafka side of push: the instrument reader, the live consumers and the state that
/// turns records into channel messages.
pub struct Feed {
    instruments: CompactedReader,
    live: Arc<StreamConsumer>,
    strikes: Arc<StreamConsumer>,
    chains: Arc<StreamConsumer>,
    topics: Topics,
    replay: Duration,
    state: FeedState,
}

impl Feed {
    /// Create the consumers (this does not contact the brokers yet, so it cannot hang).
    /// `replay` is how far back the stateful topics are read at start-up.
    pub fn new(
        brokers: &Brokers,
        topics: Topics,
        replay: Duration,
        hub: Arc<Hub>,
        snapshots: Arc<SnapshotStore>,
        catalogue: Arc<Catalogue>,
    ) -> Result<Feed, KafkaError> {
        let instruments = CompactedReader::new(brokers, &topics.instruments(), "push-instruments")?;
        let live: StreamConsumer = live_config(brokers, "push-live", false).create()?;
        let strikes: StreamConsumer = live_config(brokers, "push-strikes", true).create()?;
        let chains: StreamConsumer = live_config(brokers, "push-chains", true).create()?;
        Ok(Feed {
            instruments,
            live: Arc::new(live),
            strikes: Arc::new(strikes),
            chains: Arc::new(chains),
            state: FeedState::new(hub, snapshots, catalogue, topics.clone()),
            topics,
            replay,
        })
    }

    /// Decodes Confluent-framed records with the schema ids of `registry`.
    pub fn with_registry(mut self, registry: Registry) -> Self {
        self.state.set_registry(registry);
        self
    }

    /// The live consumer, shared so `/readyz` can ask the brokers for metadata without a
    /// client of its own.
    pub fn live_consumer(&self) -> Arc<StreamConsumer> {
        self.live.clone()
    }

    /// Consume until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let Feed {
            mut instruments,
            live,
            strikes,
            chains,
            topics,
            replay,
            mut state,
        } = self;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let since = Start::Since(now_ms - replay.as_millis() as i64);
        let name = |s: Source| s.topic(&topics);
        let mut assignments = Assignments::new(vec![
            (live.clone(), name(Source::Ticks), Start::End),
            (live.clone(), name(Source::Bars), since),
            (live.clone(), name(Source::Moneyness), since),
            (live.clone(), name(Source::Indicators), since),
            (strikes.clone(), name(Source::Strikes), since),
            (chains.clone(), name(Source::Chains), since),
        ]);
        let live_sources: Vec<(String, Source)> = [
            Source::Ticks,
            Source::Bars,
            Source::Moneyness,
            Source::Indicators,
        ]
        .into_iter()
        .map(|s| (name(s), s))
        .collect();

        // This deployment's own schema ids, so the catch-up below (which cannot wait on the
        // registry) decodes Confluent-framed instruments too.
        state.registry().clone().warm(&topics).await;
        // The instrument map catches up first; meanwhile the live partitions are assigned
        // and their data waits in librdkafka.
        let stopped = {
            let catch_up = instruments.catch_up(CATCH_UP_LIMIT, |msg| {
                state.on_instrument(msg.payload());
                None::<()>
            });
            tokio::pin!(catch_up);
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break true,
                    _ = &mut catch_up => break false,
                    _ = tokio::time::sleep_until(assignments.next_refresh) => {
                        if !assignments.refresh_until(&shutdown).await {
                            break true;
                        }
                    }
                }
            }
        };
        if stopped {
            instruments.close().await;
            return;
        }
        tracing::info!(
            instruments = state.instruments(),
            caught_up = instruments.caught_up(),
            "serving live data"
        );

        let mut merge_tick = tokio::time::interval(MERGE_TICK);
        merge_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(assignments.next_refresh) => {
                    if !assignments.refresh_until(&shutdown).await {
                        break;
                    }
                }
                _ = merge_tick.tick() => state.on_merge_tick(),
                // Instruments always take priority, so a new instrument's first ticks
                // already find its symbol.
                msg = instruments.recv() => {
                    state.resolve(msg.payload()).await;
                    state.on_instrument(msg.payload());
                    drop(msg);
                    tokio::task::coop::consume_budget().await;
                }
                msg = strikes.recv() => {
                    on_chain_side(&mut state, Side::Strikes, msg).await;
                }
                msg = chains.recv() => {
                    on_chain_side(&mut state, Side::Chains, msg).await;
                }
                msg = live.recv() => match msg {
                    Ok(msg) => {
                        state.resolve(msg.payload()).await;
                        on_live(&mut state, &live_sources, &msg);
                        drop(msg);
                        // Take what librdkafka already holds, up to a batch, before waking
                        // the sessions: each then writes the batch with one flush. The
                        // batch ends early when the task's cooperative budget runs out, so
                        // the sessions are woken before the feed yields to them.
                        for _ in 1..LIVE_BATCH {
                            if !tokio::task::coop::has_budget_remaining() {
                                break;
                            }
                            match live.recv().now_or_never() {
                                Some(Ok(msg)) => {
                                    state.resolve(msg.payload()).await;
                                    on_live(&mut state, &live_sources, &msg);
                                }
                                Some(Err(err)) => {
                                    tracing::warn!(error = %err, "live consumer error");
                                    break;
                                }
                                None => break,
                            }
                            tokio::task::coop::consume_budget().now_or_never();
                        }
                        state.wake_sessions();
                        // librdkafka hands over buffered messages without ever returning
                        // Pending; give the sessions' writers a turn now and then.
                        tokio::task::coop::consume_budget().await;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "live consumer error");
                        tokio::time::sleep(ERROR_BACKOFF).await;
                    }
                },
            }
            state.wake_sessions();
        }
        instruments.close().await;
        tracing::debug!("feed stopped");
    }
}

/// One record of the live consumer (ticks, bars, moneyness, indicators).
fn on_live(state: &mut FeedState, sources: &[(String, Source)], msg: &BorrowedMessage<'_>) {
    let topic = msg.topic();
    match sources.iter().find(|(t, _)| t == topic).map(|(_, s)| *s) {
        Some(Source::Ticks) => state.on_tick_message(msg),
        Some(source @ Source::Bars) => state.on_bar(Position::of(source, msg), msg.payload()),
        Some(source @ Source::Moneyness) => {
            state.on_moneyness(Position::of(source, msg), msg.payload());
        }
        Some(source @ Source::Indicators) => {
            state.on_indicator(Position::of(source, msg), msg.payload());
        }
        _ => {}
    }
}

/// One record (or partition end) of the strikes or chains consumer.
async fn on_chain_side(
    state: &mut FeedState,
    side: Side,
    msg: Result<BorrowedMessage<'_>, RdKafkaError>,
) {
    let source = match side {
        Side::Strikes => Source::Strikes,
        Side::Chains => Source::Chains,
    };
    match msg {
        Ok(msg) => {
            state.resolve(msg.payload()).await;
            let at = Position::of(source, &msg);
            match side {
                Side::Strikes => state.on_strike(at, msg.payload()),
                Side::Chains => state.on_chain(at, msg.payload(), strike_rows(&msg)),
            }
            drop(msg);
            tokio::task::coop::consume_budget().await;
        }
        Err(RdKafkaError::PartitionEOF(partition)) => state.on_chain_end(side, partition),
        Err(err) => {
            tracing::warn!(error = %err, ?side, "chain consumer error");
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
}

/// The strike-row count a chain summary's header carries ([`STRIKE_ROWS_HEADER`]), if any.
fn strike_rows(msg: &BorrowedMessage<'_>) -> Option<u32> {
    let headers = msg.headers()?;
    let header = headers.iter().find(|h| h.key == STRIKE_ROWS_HEADER)?;
    std::str::from_utf8(header.value?).ok()?.parse().ok()
}

/// The topics' partitions assigned so far, and when to look for more.
struct Assignments {
    topics: Vec<(Arc<StreamConsumer>, String, Start, HashSet<i32>)>,
    next_refresh: Instant,
}

impl Assignments {
    fn new(topics: Vec<(Arc<StreamConsumer>, String, Start)>) -> Assignments {
        Assignments {
            topics: topics
                .into_iter()
                .map(|(c, t, s)| (c, t, s, HashSet::new()))
                .collect(),
            next_refresh: Instant::now(),
        }
    }

    /// [`Assignments::refresh`] unless `shutdown` comes first (then false).
    async fn refresh_until(&mut self, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = self.refresh() => true,
        }
    }

    /// Assigns partitions not assigned yet. A topic's first partitions begin where its
    /// `Start` says; partitions added later begin at the start (all of it is new). Every
    /// topic's start offsets are resolved before any is assigned: a consumer already
    /// fetching answers offset look-ups only between its fetches.
    async fn refresh(&mut self) {
        let mut complete = true;
        let mut resolved = Vec::new();
        for (i, (consumer, topic, start, assigned)) in self.topics.iter().enumerate() {
            let start = if assigned.is_empty() {
                *start
            } else {
                Start::Since(0)
            };
            match resolve(consumer, topic, assigned, start).await {
                Ok(list) if list.count() == 0 => {}
                Ok(list) => resolved.push((i, list)),
                Err(err) => {
                    complete = false;
                    tracing::debug!(topic = %topic, error = %err, "topic not ready");
                }
            }
        }
        for (i, list) in resolved {
            let (consumer, topic, _, assigned) = &mut self.topics[i];
            match consumer.incremental_assign(&list) {
                Ok(()) => {
                    assigned.extend(list.elements().iter().map(|e| e.partition()));
                    tracing::info!(topic = %topic, partitions = list.count(), "assigned");
                }
                Err(err) => {
                    complete = false;
                    tracing::warn!(topic = %topic, error = %err, "assigning partitions failed");
                }
            }
        }
        self.next_refresh = Instant::now() + if complete { REFRESH_EVERY } else { RETRY_EVERY };
    }
}

/// The partitions of `topic` not yet in `assigned`, with the offsets to start them at.
async fn resolve(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    assigned: &HashSet<i32>,
    start: Start,
) -> Result<TopicPartitionList, KafkaError> {
    let (consumer, topic) = (consumer.clone(), topic.to_owned());
    let known = assigned.clone();
    tokio::task::spawn_blocking(move || -> Result<_, KafkaError> {
        let ids = strikeflow_kafka::partition_ids(&consumer, &topic, METADATA_TIMEOUT)?;
        let mut list = TopicPartitionList::new();
        for id in ids.into_iter().filter(|id| !known.contains(id)) {
            let offset = match start {
                Start::End => Offset::End,
                Start::Since(0) => Offset::Beginning,
                Start::Since(ms) => Offset::Offset(ms),
            };
            list.add_partition_offset(&topic, id, offset)?;
        }
        let Start::Since(ms) = start else {
            return Ok(list);
        };
        if ms == 0 || list.count() == 0 {
            return Ok(list);
        }
        // Offsets for the time; a partition with nothing that recent starts at its end as
        // it is now (a logical end would skip what arrives before the fetch starts).
        let by_time = consumer.offsets_for_times(list, METADATA_TIMEOUT)?;
        let mut exact = TopicPartitionList::new();
        for element in by_time.elements() {
            let offset = match element.offset() {
                Offset::Offset(o) => Offset::Offset(o),
                _ => Offset::Offset(
                    consumer
                        .fetch_watermarks(&topic, element.partition(), METADATA_TIMEOUT)?
                        .1,
                ),
            };
            exact.add_partition_offset(&topic, element.partition(), offset)?;
        }
        Ok(exact)
    })
    .await
    .map_err(KafkaError::Task)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_configs_are_unique_and_never_commit() {
        let a = live_config(&Brokers::plaintext("b:1"), "push-live", false);
        let b = reader_config(&Brokers::plaintext("b:1"), "push-instruments");
        assert_ne!(a.get("group.id"), b.get("group.id"));
        assert_eq!(a.get("enable.auto.commit"), Some("false"));
        assert_eq!(a.get("auto.offset.reset"), Some("latest"));
        assert_eq!(a.get("enable.partition.eof"), Some("false"));
        assert_eq!(
            live_config(&Brokers::plaintext("b:1"), "push-chains", true)
                .get("enable.partition.eof"),
            Some("true")
        );
        assert_eq!(b.get("enable.partition.eof"), Some("true"));
    }
}
