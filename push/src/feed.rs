//! Kafka → hub.
//!
//! Every push instance must fan out every message, so push does not share a consumer group:
//! it assigns itself all partitions of the ticks and bars topics at the live end, and all
//! partitions of the compacted instruments topic from the beginning (to map instrument
//! tokens to trading symbols). Each process uses a unique `group.id` (librdkafka wants one
//! even for manual assignment) and commits nothing: push is a read-only view.
//!
//! Instruments are read by the shared [`CompactedReader`] (the processor reads the master
//! the same way) and always take priority, and live data waits
//! (buffered by librdkafka, not lost) until the instrument map has caught up at start-up, so
//! the first bars after a restart already go to `bars.<tradingsymbol>`. A tick or bar whose
//! token is still unknown is counted and published on `bars.<token>` / `ticks.<token>`.
//!
//! Topics that do not exist yet are waited for, and partitions added later are picked up
//! (from their beginning, since everything in them is new).
//!
//! Reference copies of spot ticks (header [`strikeflow_schemas::REFERENCE_COPY_HEADER`], one per ticks partition)
//! are skipped: the primary copy is the one pushed, so subscribers see each spot tick once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use metrics::Counter;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use strikeflow_kafka::{reader_config, CompactedReader, KafkaError};
use strikeflow_schemas::{AvroRecord, Bar, Instrument, Tick, Topics};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;
use crate::protocol::{ChannelKind, WithSymbol};
use crate::snapshot::SnapshotStore;
use crate::stats;

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

/// The live consumer's settings: a reader of its own (see [`reader_config`]) whose first
/// position in a partition is its end, since push is a live view.
fn live_config(brokers: &str) -> ClientConfig {
    let mut config = reader_config(brokers, "push-live");
    config
        .set("client.id", "strikeflow-push")
        .set("auto.offset.reset", "latest")
        // Nothing waits for the live topics' ends.
        .set("enable.partition.eof", "false");
    config
}

/// The Kafka side of push: the instrument reader, the live consumer and the state that
/// turns messages into channel messages.
pub struct Feed {
    instruments: CompactedReader,
    live: Arc<StreamConsumer>,
    topics: Topics,
    state: FeedState,
}

impl Feed {
    /// Create the consumers (this does not contact the brokers yet, so it cannot hang).
    pub fn new(
        brokers: &str,
        topics: Topics,
        hub: Arc<Hub>,
        snapshots: Arc<SnapshotStore>,
    ) -> Result<Feed, KafkaError> {
        let instruments = CompactedReader::new(brokers, &topics.instruments(), "push-instruments")?;
        let live: StreamConsumer = live_config(brokers).create()?;
        Ok(Feed {
            instruments,
            live: Arc::new(live),
            topics,
            state: FeedState::new(hub, snapshots),
        })
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
            topics,
            mut state,
        } = self;
        let (ticks_topic, bars_topic) = (topics.ticks(), topics.bars());
        let mut live_topics = LiveTopics::new([ticks_topic.clone(), bars_topic.clone()]);

        // The instrument map catches up first; meanwhile the live partitions are assigned
        // (at their end) and their data waits in librdkafka.
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
                    _ = tokio::time::sleep_until(live_topics.next_refresh) => {
                        live_topics.refresh(&live).await;
                    }
                }
            }
        };
        if stopped {
            instruments.close().await;
            return;
        }
        tracing::info!(
            instruments = state.symbols.len(),
            caught_up = instruments.caught_up(),
            "serving live data"
        );

        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(live_topics.next_refresh) => {
                    live_topics.refresh(&live).await;
                }
                // Instruments always take priority, so a new instrument's first ticks
                // already find its symbol.
                msg = instruments.recv() => {
                    state.on_instrument(msg.payload());
                    drop(msg);
                    tokio::task::coop::consume_budget().await;
                }
                msg = live.recv() => match msg {
                    Ok(msg) => {
                        let topic = msg.topic();
                        if topic == ticks_topic {
                            state.on_tick_message(&msg);
                        } else if topic == bars_topic {
                            state.on_bar(msg.payload());
                        }
                        drop(msg);
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
        }
        instruments.close().await;
        tracing::debug!("feed stopped");
    }
}

/// The live topics' partitions assigned so far, and when to look for more.
struct LiveTopics {
    topics: [(String, HashSet<i32>); 2],
    next_refresh: Instant,
}

impl LiveTopics {
    fn new(names: [String; 2]) -> LiveTopics {
        LiveTopics {
            topics: names.map(|name| (name, HashSet::new())),
            next_refresh: Instant::now(),
        }
    }

    /// Assigns partitions not assigned yet. A topic's first partitions begin at the end
    /// (push is a live view); partitions added later begin at the start (all of it is new).
    async fn refresh(&mut self, live: &Arc<StreamConsumer>) {
        let mut complete = true;
        for (topic, assigned) in &mut self.topics {
            let offset = if assigned.is_empty() {
                Offset::End
            } else {
                Offset::Beginning
            };
            match assign_new(live, topic, assigned, offset).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(topic = %topic, partitions = n, "assigned"),
                Err(err) => {
                    complete = false;
                    tracing::debug!(topic = %topic, error = %err, "topic not ready");
                }
            }
        }
        self.next_refresh = Instant::now() + if complete { REFRESH_EVERY } else { RETRY_EVERY };
    }
}

/// Add partitions of `topic` not yet in `assigned` to the consumer's assignment at `offset`.
async fn assign_new(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
    assigned: &mut HashSet<i32>,
    offset: Offset,
) -> Result<usize, KafkaError> {
    let ids = {
        let (consumer, topic) = (consumer.clone(), topic.to_owned());
        tokio::task::spawn_blocking(move || {
            strikeflow_kafka::partition_ids(&consumer, &topic, METADATA_TIMEOUT)
        })
        .await
        .map_err(KafkaError::Task)??
    };
    let mut list = TopicPartitionList::new();
    let mut added = Vec::new();
    for id in ids {
        if !assigned.contains(&id) {
            list.add_partition_offset(topic, id, offset)?;
            added.push(id);
        }
    }
    if added.is_empty() {
        return Ok(0);
    }
    consumer.incremental_assign(&list)?;
    assigned.extend(added.iter().copied());
    Ok(added.len())
}

/// Channel names of one instrument, allocated once and shared with the hub.
struct Names {
    symbol: Arc<str>,
    bars: Arc<str>,
    ticks: Arc<str>,
}

impl Names {
    fn new(symbol: &str) -> Names {
        Names {
            symbol: Arc::from(symbol),
            bars: Arc::from(ChannelKind::Bars.channel(symbol)),
            ticks: Arc::from(ChannelKind::Ticks.channel(symbol)),
        }
    }
}

struct FeedCounters {
    instruments_in: Counter,
    ticks_in: Counter,
    bars_in: Counter,
    instrument_errors: Counter,
    tick_errors: Counter,
    bar_errors: Counter,
    unknown_token: Counter,
    reference_copies: Counter,
}

impl FeedCounters {
    fn new() -> FeedCounters {
        FeedCounters {
            instruments_in: metrics::counter!(stats::MESSAGES_IN, "kind" => "instrument"),
            ticks_in: metrics::counter!(stats::MESSAGES_IN, "kind" => "tick"),
            bars_in: metrics::counter!(stats::MESSAGES_IN, "kind" => "bar"),
            instrument_errors: metrics::counter!(stats::DECODE_ERRORS, "kind" => "instrument"),
            tick_errors: metrics::counter!(stats::DECODE_ERRORS, "kind" => "tick"),
            bar_errors: metrics::counter!(stats::DECODE_ERRORS, "kind" => "bar"),
            unknown_token: metrics::counter!(stats::UNKNOWN_TOKEN),
            reference_copies: metrics::counter!(stats::CONTROL_RECORDS_SKIPPED),
        }
    }
}

/// Decoding, symbol lookup and publishing: everything the feed does per message, apart from
/// Kafka itself (so it can be tested without a broker).
pub(crate) struct FeedState {
    hub: Arc<Hub>,
    snapshots: Arc<SnapshotStore>,
    symbols: HashMap<i64, Names>,
    counters: FeedCounters,
}

fn decode<T: AvroRecord>(payload: Option<&[u8]>) -> Result<T, String> {
    match payload {
        Some(bytes) => strikeflow_schemas::decode::<T>(bytes).map_err(|e| e.to_string()),
        None => Err("empty payload".to_owned()),
    }
}

impl FeedState {
    pub(crate) fn new(hub: Arc<Hub>, snapshots: Arc<SnapshotStore>) -> FeedState {
        FeedState {
            hub,
            snapshots,
            symbols: HashMap::new(),
            counters: FeedCounters::new(),
        }
    }

    /// Apply one record of the instruments topic to the token → symbol map.
    pub(crate) fn on_instrument(&mut self, payload: Option<&[u8]>) {
        self.counters.instruments_in.increment(1);
        if payload.is_none() {
            // A compaction tombstone: the instrument is gone, but its last symbol stays useful
            // for any straggling ticks, so keep the mapping.
            tracing::debug!("instrument tombstone ignored");
            return;
        }
        match decode::<Instrument>(payload) {
            Ok(instrument) => {
                let known = self
                    .symbols
                    .get(&instrument.instrument_token)
                    .is_some_and(|n| *n.symbol == *instrument.tradingsymbol);
                if !known {
                    self.symbols.insert(
                        instrument.instrument_token,
                        Names::new(&instrument.tradingsymbol),
                    );
                }
            }
            Err(err) => {
                self.counters.instrument_errors.increment(1);
                tracing::warn!(error = %err, "undecodable instrument record skipped");
            }
        }
    }

    /// Publish one message of the ticks topic, unless it is a reference copy of a spot tick
    /// (its primary is published instead).
    pub(crate) fn on_tick_message<M: Message>(&mut self, msg: &M) {
        if strikeflow_kafka::is_control(msg) {
            self.counters.reference_copies.increment(1);
        } else {
            self.on_tick(msg.payload());
        }
    }

    /// Publish one tick.
    pub(crate) fn on_tick(&mut self, payload: Option<&[u8]>) {
        self.counters.ticks_in.increment(1);
        let tick = match decode::<Tick>(payload) {
            Ok(tick) => tick,
            Err(err) => {
                self.counters.tick_errors.increment(1);
                tracing::warn!(error = %err, "undecodable tick skipped");
                return;
            }
        };
        let (channel, symbol) = self.channel(ChannelKind::Ticks, tick.instrument_token);
        if let Some(data) = to_data(&tick, symbol.as_deref()) {
            self.hub.publish(ChannelKind::Ticks, &channel, &data);
        }
    }

    /// Publish one bar and hand it to the snapshot store.
    pub(crate) fn on_bar(&mut self, payload: Option<&[u8]>) {
        self.counters.bars_in.increment(1);
        let bar = match decode::<Bar>(payload) {
            Ok(bar) => bar,
            Err(err) => {
                self.counters.bar_errors.increment(1);
                tracing::warn!(error = %err, "undecodable bar skipped");
                return;
            }
        };
        let (channel, symbol) = self.channel(ChannelKind::Bars, bar.instrument_token);
        if let Some(data) = to_data(&bar, symbol.as_deref()) {
            let published = self.hub.publish(ChannelKind::Bars, &channel, &data);
            self.snapshots.store(&channel, published.message);
        }
    }

    /// The channel for `token`'s data of `kind`, and its trading symbol if known.
    fn channel(&self, kind: ChannelKind, token: i64) -> (Arc<str>, Option<Arc<str>>) {
        match self.symbols.get(&token) {
            Some(names) => {
                let channel = match kind {
                    ChannelKind::Bars => names.bars.clone(),
                    ChannelKind::Ticks => names.ticks.clone(),
                };
                (channel, Some(names.symbol.clone()))
            }
            None => {
                self.counters.unknown_token.increment(1);
                tracing::debug!(
                    token,
                    kind = kind.prefix(),
                    "unknown instrument token; using fallback channel"
                );
                (Arc::from(kind.channel(&token.to_string())), None)
            }
        }
    }
}

fn to_data<T: Serialize>(record: &T, tradingsymbol: Option<&str>) -> Option<String> {
    match serde_json::to_string(&WithSymbol {
        record,
        tradingsymbol,
    }) {
        Ok(data) => Some(data),
        Err(err) => {
            tracing::warn!(error = %err, "could not serialise a record to JSON");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
    use rdkafka::Timestamp;
    use strikeflow_schemas::REFERENCE_COPY_HEADER;
    use strikeflow_schemas::{encode, InstrumentType};
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::queue::ClientQueue;

    fn instrument(token: i64, symbol: &str) -> Instrument {
        Instrument {
            instrument_token: token,
            exchange_token: token >> 8,
            tradingsymbol: symbol.to_owned(),
            name: "NIFTY".to_owned(),
            last_price: 0.0,
            expiry: Some(20_814),
            strike: 0.0,
            tick_size: 0.05,
            lot_size: 65,
            instrument_type: InstrumentType::FUT,
            segment: "NFO-FUT".to_owned(),
            exchange: "NFO".to_owned(),
        }
    }

    fn bar(token: i64, close: f64) -> Bar {
        Bar {
            instrument_token: token,
            window_start: 1_766_000_000_000_000,
            window_end: 1_766_000_060_000_000,
            open: 26_000.0,
            high: 26_050.5,
            low: 25_990.0,
            close,
            volume: 1_300,
            oi: 12_000_000,
            tick_count: 42,
        }
    }

    fn tick(token: i64) -> Tick {
        Tick {
            instrument_token: token,
            exchange_ts: 1_766_000_001_000_000,
            ltp: 26_010.05,
            last_qty: 65,
            volume: 10_000,
            oi: 12_000_000,
            bid: 26_010.0,
            bid_qty: 130,
            ask: 26_010.1,
            ask_qty: 195,
        }
    }

    fn setup() -> (FeedState, Arc<Hub>) {
        let hub = Arc::new(Hub::new());
        let link = Arc::new(crate::redis_link::RedisLink::new("redis://127.0.0.1:1").expect("url"));
        let snapshots = Arc::new(SnapshotStore::new(link, ""));
        (FeedState::new(hub.clone(), snapshots), hub)
    }

    fn subscribe(hub: &Hub, kind: ChannelKind, channel: &str) -> Arc<ClientQueue> {
        let q = Arc::new(ClientQueue::new(64, CancellationToken::new()));
        hub.subscribe(hub.next_client_id(), &q, kind, channel, None);
        q.pop_batch(usize::MAX);
        q
    }

    fn drain(q: &ClientQueue) -> Vec<serde_json::Value> {
        q.pop_batch(usize::MAX)
            .into_iter()
            .map(|m| serde_json::from_str(m.as_str()).expect("json"))
            .collect()
    }

    #[test]
    fn bars_go_to_the_symbol_channel_with_all_fields() {
        let (mut state, hub) = setup();
        let q = subscribe(&hub, ChannelKind::Bars, "bars.NIFTY26DECFUT");
        let inst = encode(&instrument(13_238_786, "NIFTY26DECFUT")).expect("encode");
        state.on_instrument(Some(&inst));
        let b = bar(13_238_786, 26_031.5);
        state.on_bar(Some(&encode(&b).expect("encode")));
        let got = drain(&q);
        assert_eq!(got.len(), 1);
        let msg = &got[0];
        assert_eq!(msg["type"], "bar");
        assert_eq!(msg["channel"], "bars.NIFTY26DECFUT");
        assert_eq!(msg["seq"], 1);
        let mut expected = serde_json::to_value(&b).expect("json");
        expected["tradingsymbol"] = "NIFTY26DECFUT".into();
        assert_eq!(msg["data"], expected);
        // The latest bar is waiting for Redis.
        assert_eq!(state.snapshots.pending_len(), 1);
    }

    #[test]
    fn ticks_go_to_the_symbol_channel() {
        let (mut state, hub) = setup();
        let q = subscribe(&hub, ChannelKind::Ticks, "ticks.NIFTY26DECFUT");
        state.on_instrument(Some(
            &encode(&instrument(1, "NIFTY26DECFUT")).expect("encode"),
        ));
        state.on_tick(Some(&encode(&tick(1)).expect("encode")));
        state.on_tick(Some(&encode(&tick(1)).expect("encode")));
        let got = drain(&q);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["type"], "tick");
        assert_eq!(got[1]["seq"], 2);
        assert_eq!(got[1]["data"]["ltp"], 26_010.05);
        assert_eq!(got[1]["data"]["tradingsymbol"], "NIFTY26DECFUT");
        assert_eq!(
            state.snapshots.pending_len(),
            0,
            "ticks are not snapshotted"
        );
    }

    /// A message of the ticks topic as the live consumer hands it over.
    fn tick_message(token: i64, partition: i32, header: Option<&str>) -> OwnedMessage {
        let headers = header.map(|key| {
            OwnedHeaders::new().insert(Header {
                key,
                value: Some("1"),
            })
        });
        OwnedMessage::new(
            Some(encode(&tick(token)).expect("encode")),
            Some(b"NIFTY".to_vec()),
            "ticks.v1".to_owned(),
            Timestamp::NotAvailable,
            partition,
            0,
            headers,
        )
    }

    #[test]
    fn reference_copies_of_spot_ticks_are_not_pushed() {
        let (mut state, hub) = setup();
        let q = subscribe(&hub, ChannelKind::Ticks, "ticks.NIFTY50");
        state.on_instrument(Some(
            &encode(&instrument(256_265, "NIFTY50")).expect("encode"),
        ));
        // The primary, then one reference copy per partition (the spot's own included).
        state.on_tick_message(&tick_message(256_265, 3, None));
        for partition in 0..6 {
            state.on_tick_message(&tick_message(
                256_265,
                partition,
                Some(REFERENCE_COPY_HEADER),
            ));
        }
        // Some other header does not make a tick a copy.
        state.on_tick_message(&tick_message(256_265, 3, Some("traceparent")));
        let got = drain(&q);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0]["seq"], 1);
        assert_eq!(got[1]["seq"], 2);
        assert_eq!(got[0]["data"]["tradingsymbol"], "NIFTY50");
    }

    #[test]
    fn unknown_token_uses_the_fallback_channel() {
        let (mut state, hub) = setup();
        let q = subscribe(&hub, ChannelKind::Bars, "bars.777");
        state.on_bar(Some(&encode(&bar(777, 1.0)).expect("encode")));
        let got = drain(&q);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["channel"], "bars.777");
        assert_eq!(got[0]["data"]["tradingsymbol"], serde_json::Value::Null);
    }

    #[test]
    fn garbage_is_skipped_without_panicking() {
        let (mut state, hub) = setup();
        state.on_bar(Some(b"\xff\x00garbage"));
        state.on_tick(None);
        state.on_instrument(Some(b"\x01"));
        state.on_instrument(None);
        assert_eq!(hub.channel_count(), 0);
    }

    #[test]
    fn consumer_configs_are_unique_and_never_commit() {
        let a = live_config("b:1");
        let b = reader_config("b:1", "push-instruments");
        assert_ne!(a.get("group.id"), b.get("group.id"));
        assert_eq!(a.get("enable.auto.commit"), Some("false"));
        assert_eq!(a.get("auto.offset.reset"), Some("latest"));
        assert_eq!(b.get("enable.partition.eof"), Some("true"));
    }
}
