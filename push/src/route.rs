//! Kafka records → numbered channel messages: decoding, symbol lookup, the per-channel
//! state snapshot-like channels start from, and publishing to the hub. Everything the feed
//! does per record apart from Kafka itself, so it can be tested without a broker.
//!
//! Numbering (`docs/protocol.md`, "Sequence numbers and epochs"): every channel but the
//! chain is fed by one partition of one topic (its records share a key), so a message's
//! `seq` is its record's offset + 1 and its `epoch` names the topic and partition; bars of
//! 3/5/15 minutes take the number of the one-minute bar that completed them. Chain
//! messages merge two topics and are numbered by their boundary time (see `chain`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use metrics::Counter;
use rdkafka::message::Message;
use serde::Serialize;
use strikeflow_kafka::Registry;
use strikeflow_schemas::{
    decode_any, AvroRecord, Bar, ChainAnalytics, IndicatorPoint, Instrument, MoneynessPoint,
    OptionSide, SchemaIds, StrikeAnalytics, Tick, Topics,
};

use crate::bars::BarBuilder;
use crate::catalogue::Catalogue;
use crate::chain::{row_key, ChainMerge, Release, Side};
use crate::hub::{Hub, Publication};
use crate::protocol::{
    bars_channel, chain_channel, indicators_channel, ChannelKind, WithSymbol, TIMEFRAMES,
};
use crate::snapshot::SnapshotStore;
use crate::stats;

/// The topics push reads live data from, in the order epochs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// `ticks.v1`.
    Ticks,
    /// `bars.v1`.
    Bars,
    /// `strikes.v1`.
    Strikes,
    /// `chains.v1`.
    Chains,
    /// `moneyness.v1`.
    Moneyness,
    /// `indicators.v1`.
    Indicators,
}

impl Source {
    /// Every source.
    pub(crate) const ALL: [Source; 6] = [
        Source::Ticks,
        Source::Bars,
        Source::Strikes,
        Source::Chains,
        Source::Moneyness,
        Source::Indicators,
    ];

    /// The topic's name.
    pub(crate) fn topic(self, topics: &Topics) -> String {
        match self {
            Source::Ticks => topics.ticks(),
            Source::Bars => topics.bars(),
            Source::Strikes => topics.strikes(),
            Source::Chains => topics.chains(),
            Source::Moneyness => topics.moneyness(),
            Source::Indicators => topics.indicators(),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Source::Ticks => "tick",
            Source::Bars => "bar",
            Source::Strikes => "strike",
            Source::Chains => "chain",
            Source::Moneyness => "moneyness",
            Source::Indicators => "indicator",
        }
    }
}

/// Channel names of one instrument, allocated once and shared with the hub.
struct Names {
    symbol: Arc<str>,
    ticks: Arc<str>,
    bars: [Arc<str>; 4],
    indicators: [Arc<str>; 4],
}

impl Names {
    fn new(symbol: &str) -> Names {
        Names {
            symbol: Arc::from(symbol),
            ticks: Arc::from(ChannelKind::Ticks.channel(symbol)),
            bars: TIMEFRAMES.map(|m| Arc::from(bars_channel(symbol, m))),
            indicators: TIMEFRAMES.map(|m| Arc::from(indicators_channel(symbol, m))),
        }
    }
}

struct Counters {
    instruments_in: Counter,
    instrument_errors: Counter,
    messages_in: HashMap<Source, Counter>,
    errors: HashMap<Source, Counter>,
    unknown_token: Counter,
    reference_copies: Counter,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            instruments_in: metrics::counter!(stats::MESSAGES_IN, "kind" => "instrument"),
            instrument_errors: metrics::counter!(stats::DECODE_ERRORS, "kind" => "instrument"),
            messages_in: Source::ALL
                .into_iter()
                .map(|s| {
                    (
                        s,
                        metrics::counter!(stats::MESSAGES_IN, "kind" => s.label()),
                    )
                })
                .collect(),
            errors: Source::ALL
                .into_iter()
                .map(|s| {
                    (
                        s,
                        metrics::counter!(stats::DECODE_ERRORS, "kind" => s.label()),
                    )
                })
                .collect(),
            unknown_token: metrics::counter!(stats::UNKNOWN_TOKEN),
            reference_copies: metrics::counter!(stats::CONTROL_RECORDS_SKIPPED),
        }
    }
}

/// Where a record sits: its source, partition and offset.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Position {
    /// The topic it came from.
    pub(crate) source: Source,
    /// Its partition.
    pub(crate) partition: i32,
    /// Its offset.
    pub(crate) offset: i64,
}

impl Position {
    /// The position of a consumed message.
    pub(crate) fn of<M: Message>(source: Source, msg: &M) -> Position {
        Position {
            source,
            partition: msg.partition(),
            offset: msg.offset(),
        }
    }

    fn seq(self) -> u64 {
        u64::try_from(self.offset).map_or(0, |o| o + 1)
    }
}

/// Latest item per key of a snapshot-like channel (moneyness buckets, indicators).
type Items = BTreeMap<String, String>;

/// The feed's per-record work and the state it keeps between records.
pub(crate) struct FeedState {
    hub: Arc<Hub>,
    snapshots: Arc<SnapshotStore>,
    catalogue: Arc<Catalogue>,
    topics: Topics,
    symbols: HashMap<i64, Names>,
    epochs: HashMap<(Source, i32), Arc<str>>,
    chain_epochs: HashMap<i32, Arc<str>>,
    chain_names: HashMap<(String, i32), Option<Arc<str>>>,
    builder: BarBuilder,
    items: HashMap<Arc<str>, Items>,
    merge: ChainMerge,
    counters: Counters,
    /// Schema ids of Confluent-framed records; every input may carry either framing.
    registry: Registry,
}

/// Either framing; a Confluent record's schema id must have been resolved into `ids`
/// ([`FeedState::resolve`]).
fn decode<T: AvroRecord>(payload: Option<&[u8]>, ids: &SchemaIds) -> Result<T, String> {
    match payload {
        Some(bytes) => decode_any::<T>(bytes, ids).map_err(|e| e.to_string()),
        None => Err("empty payload".to_owned()),
    }
}

fn to_json<T: Serialize>(record: &T) -> Option<String> {
    match serde_json::to_string(record) {
        Ok(data) => Some(data),
        Err(err) => {
            tracing::warn!(error = %err, "could not serialise a record to JSON");
            None
        }
    }
}

impl FeedState {
    pub(crate) fn new(
        hub: Arc<Hub>,
        snapshots: Arc<SnapshotStore>,
        catalogue: Arc<Catalogue>,
        topics: Topics,
    ) -> FeedState {
        FeedState {
            hub,
            snapshots,
            catalogue,
            topics,
            symbols: HashMap::new(),
            epochs: HashMap::new(),
            chain_epochs: HashMap::new(),
            chain_names: HashMap::new(),
            builder: BarBuilder::default(),
            items: HashMap::new(),
            merge: ChainMerge::default(),
            counters: Counters::new(),
            registry: Registry::none(),
        }
    }

    /// Decodes Confluent-framed records with the ids of `registry`.
    pub(crate) fn set_registry(&mut self, registry: Registry) {
        self.registry = registry;
    }

    /// The registry, to resolve this deployment's own schema ids ahead of the records.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Fetches the schema id of `payload` from the registry the first time it is seen (no
    /// I/O for a known id or a single-object record), before the record is applied.
    pub(crate) async fn resolve(&self, payload: Option<&[u8]>) {
        if let Some(bytes) = payload {
            self.registry.resolve(bytes).await;
        }
    }

    /// Number of instruments known.
    pub(crate) fn instruments(&self) -> usize {
        self.symbols.len()
    }

    /// Apply one record of the instruments topic to the token → symbol map and catalogue.
    pub(crate) fn on_instrument(&mut self, payload: Option<&[u8]>) {
        self.counters.instruments_in.increment(1);
        if payload.is_none() {
            // A compaction tombstone: the instrument is gone, but its last symbol stays useful
            // for any straggling ticks, so keep the mapping.
            tracing::debug!("instrument tombstone ignored");
            return;
        }
        match decode::<Instrument>(payload, self.registry.ids()) {
            Ok(instrument) => {
                self.catalogue.on_instrument(&instrument);
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

    /// The epoch of a source partition: `<topic>/<partition>`. The first record read in it
    /// also tells the hub where this node's knowledge of the partition begins.
    fn epoch(&mut self, at: Position) -> Arc<str> {
        if let Some(epoch) = self.epochs.get(&(at.source, at.partition)) {
            return epoch.clone();
        }
        let epoch: Arc<str> = Arc::from(format!(
            "{}/{}",
            at.source.topic(&self.topics),
            at.partition
        ));
        self.hub.origin(&epoch, at.seq());
        self.epochs.insert((at.source, at.partition), epoch.clone());
        epoch
    }

    /// The epoch of the 3/5/15-minute bars built from a bars partition:
    /// `<topic>/<partition>/built`, numbered 2 × (offset + 1) (see `on_bar`).
    fn built_epoch(&mut self, at: Position) -> Arc<str> {
        let key = (Source::Bars, -1 - at.partition);
        if let Some(epoch) = self.epochs.get(&key) {
            return epoch.clone();
        }
        let epoch: Arc<str> = Arc::from(format!(
            "{}/{}/built",
            Source::Bars.topic(&self.topics),
            at.partition
        ));
        self.hub.origin(&epoch, 2 * at.seq() - 1);
        self.epochs.insert(key, epoch.clone());
        epoch
    }

    fn decoded<T: AvroRecord>(&mut self, at: Position, payload: Option<&[u8]>) -> Option<T> {
        if let Some(c) = self.counters.messages_in.get(&at.source) {
            c.increment(1);
        }
        match decode::<T>(payload, self.registry.ids()) {
            Ok(record) => Some(record),
            Err(err) => {
                if let Some(c) = self.counters.errors.get(&at.source) {
                    c.increment(1);
                }
                tracing::warn!(kind = at.source.label(), error = %err, "undecodable record skipped");
                None
            }
        }
    }

    /// Publish one message of the ticks topic, unless it is a control record (a reference
    /// copy of a spot tick, whose primary is published instead, or an event-time marker).
    pub(crate) fn on_tick_message<M: Message>(&mut self, msg: &M) {
        let at = Position::of(Source::Ticks, msg);
        // Known even for records that are not pushed, so resumption knows the partition.
        let epoch = self.epoch(at);
        if strikeflow_kafka::is_control(msg) {
            self.counters.reference_copies.increment(1);
            return;
        }
        let Some(tick) = self.decoded::<Tick>(at, msg.payload()) else {
            return;
        };
        let (channel, symbol) = match self.symbols.get(&tick.instrument_token) {
            Some(names) => (names.ticks.clone(), Some(names.symbol.clone())),
            None => (
                self.unknown(ChannelKind::Ticks, tick.instrument_token),
                None,
            ),
        };
        let Some(data) = to_json(&WithSymbol {
            record: &tick,
            tradingsymbol: symbol.as_deref(),
        }) else {
            return;
        };
        self.hub.publish(Publication {
            kind: ChannelKind::Ticks,
            channel: &channel,
            epoch: &epoch,
            seq: at.seq(),
            data: &data,
            state: None,
            item: None,
        });
    }

    fn unknown(&self, kind: ChannelKind, token: i64) -> Arc<str> {
        self.counters.unknown_token.increment(1);
        tracing::debug!(
            token,
            kind = kind.prefix(),
            "unknown instrument token; using fallback channel"
        );
        Arc::from(kind.channel(&token.to_string()))
    }

    /// Publish one one-minute bar, and the 3/5/15-minute bars it completes.
    pub(crate) fn on_bar(&mut self, at: Position, payload: Option<&[u8]>) {
        let epoch = self.epoch(at);
        let Some(bar) = self.decoded::<Bar>(at, payload) else {
            return;
        };
        let (channels, symbol) = match self.symbols.get(&bar.instrument_token) {
            Some(names) => (names.bars.clone(), Some(names.symbol.clone())),
            None => {
                let fallback = self.unknown(ChannelKind::Bars, bar.instrument_token);
                let token = bar.instrument_token.to_string();
                let mut channels = TIMEFRAMES.map(|m| Arc::from(bars_channel(&token, m)));
                channels[0] = fallback;
                (channels, None)
            }
        };
        let built_epoch = self.built_epoch(at);
        for (i, minutes) in TIMEFRAMES.into_iter().enumerate() {
            let (done, epoch) = if minutes == 1 {
                (vec![bar.clone()], &epoch)
            } else {
                (self.builder.on_minute(&bar, minutes), &built_epoch)
            };
            // A minute can complete two windows (a late-closed one and its own): built bars
            // are numbered 2 × (offset + 1), minus one for the earlier of two.
            let count = done.len() as u64;
            for (j, finished) in done.into_iter().enumerate() {
                let seq = if minutes == 1 {
                    at.seq()
                } else {
                    2 * at.seq() - (count - 1 - j as u64)
                };
                let Some(data) = to_json(&WithSymbol {
                    record: &finished,
                    tradingsymbol: symbol.as_deref(),
                }) else {
                    continue;
                };
                let published = self.hub.publish(Publication {
                    kind: ChannelKind::Bars,
                    channel: &channels[i],
                    epoch,
                    seq,
                    data: &data,
                    state: None,
                    item: None,
                });
                if let Some(message) = published.message {
                    self.snapshots.store(&channels[i], message);
                }
            }
        }
    }

    /// Publish one moneyness point on its chain's moneyness channel.
    pub(crate) fn on_moneyness(&mut self, at: Position, payload: Option<&[u8]>) {
        let epoch = self.epoch(at);
        let Some(point) = self.decoded::<MoneynessPoint>(at, payload) else {
            return;
        };
        let Some(channel) =
            self.chain_name(ChannelKind::Moneyness, &point.underlying, point.expiry)
        else {
            return;
        };
        let item = format!("{}/{:?}", point.bucket, point.side);
        let Some(data) = to_json(&point) else {
            return;
        };
        self.publish_item(ChannelKind::Moneyness, &channel, &epoch, at, item, data);
    }

    /// Publish one indicator value on its instrument's indicators channel.
    pub(crate) fn on_indicator(&mut self, at: Position, payload: Option<&[u8]>) {
        let epoch = self.epoch(at);
        let Some(point) = self.decoded::<IndicatorPoint>(at, payload) else {
            return;
        };
        let tf = TIMEFRAMES
            .iter()
            .position(|&m| i64::from(m) == i64::from(point.timeframe_minutes));
        let (channel, symbol) = match (self.symbols.get(&point.instrument_token), tf) {
            (Some(names), Some(i)) => (names.indicators[i].clone(), Some(names.symbol.clone())),
            (None, Some(i)) => (
                Arc::from(indicators_channel(
                    &point.instrument_token.to_string(),
                    TIMEFRAMES[i],
                )),
                None,
            ),
            (_, None) => {
                tracing::debug!(
                    tf = point.timeframe_minutes,
                    "indicator timeframe not served"
                );
                return;
            }
        };
        let item = format!("{}({})", point.indicator, point.params);
        let Some(data) = to_json(&WithSymbol {
            record: &point,
            tradingsymbol: symbol.as_deref(),
        }) else {
            return;
        };
        self.publish_item(ChannelKind::Indicators, &channel, &epoch, at, item, data);
    }

    fn publish_item(
        &mut self,
        kind: ChannelKind,
        channel: &Arc<str>,
        epoch: &Arc<str>,
        at: Position,
        item: String,
        data: String,
    ) {
        let items = self.items.entry(channel.clone()).or_default();
        items.insert(item.clone(), data.clone());
        let mut state = String::from("[");
        for (i, value) in items.values().enumerate() {
            if i > 0 {
                state.push(',');
            }
            state.push_str(value);
        }
        state.push(']');
        self.hub.publish(Publication {
            kind,
            channel,
            epoch,
            seq: at.seq(),
            data: &data,
            state: Some(state),
            item: Some(&item),
        });
    }

    /// The chain or moneyness channel of `(underlying, expiry)`, allocated once.
    fn chain_name(&mut self, kind: ChannelKind, underlying: &str, expiry: i32) -> Option<Arc<str>> {
        let key = (format!("{}.{underlying}", kind.prefix()), expiry);
        self.chain_names
            .entry(key)
            .or_insert_with(|| chain_channel(kind, underlying, expiry).map(Arc::from))
            .clone()
    }

    /// A strike row: into the chain merge.
    pub(crate) fn on_strike(&mut self, at: Position, payload: Option<&[u8]>) {
        let Some(row) = self.decoded::<StrikeAnalytics>(at, payload) else {
            return;
        };
        let Some(channel) = self.chain_name(ChannelKind::Chain, &row.underlying, row.expiry) else {
            return;
        };
        let Some(json) = to_json(&row) else {
            return;
        };
        let key = row_key(row.strike, row.option_type == OptionSide::PE);
        let out = self.merge.on_record(
            Side::Strikes,
            at.partition,
            &channel,
            row.ts,
            Some(key),
            json,
        );
        self.publish_chain(out);
    }

    /// A chain summary, with the strike-row count its header gave: into the chain merge.
    pub(crate) fn on_chain(
        &mut self,
        at: Position,
        payload: Option<&[u8]>,
        strike_rows: Option<u32>,
    ) {
        let Some(summary) = self.decoded::<ChainAnalytics>(at, payload) else {
            return;
        };
        let Some(channel) =
            self.chain_name(ChannelKind::Chain, &summary.underlying, summary.expiry)
        else {
            return;
        };
        let Some(json) = to_json(&summary) else {
            return;
        };
        if let Some(rows) = strike_rows {
            self.merge
                .expect_rows(at.partition, &channel, summary.ts, rows);
        }
        let out =
            self.merge
                .on_record(Side::Chains, at.partition, &channel, summary.ts, None, json);
        self.publish_chain(out);
    }

    /// The strikes or chains consumer read `partition` to its end.
    pub(crate) fn on_chain_end(&mut self, side: Side, partition: i32) {
        self.merge.on_end(side, partition);
    }

    /// Wakes the sessions the records handled since the last call gave messages to (see
    /// [`Hub::wake_pending`]); the feed calls it after each batch.
    pub(crate) fn wake_sessions(&self) {
        self.hub.wake_pending();
    }

    /// Periodic: release chain groups whose topics went quiet.
    pub(crate) fn on_merge_tick(&mut self) {
        let out = self.merge.on_tick();
        self.publish_chain(out);
    }

    fn publish_chain(&mut self, releases: Vec<Release>) {
        for r in releases {
            let epoch = match self.chain_epochs.get(&r.partition) {
                Some(epoch) => epoch.clone(),
                None => {
                    let epoch: Arc<str> =
                        Arc::from(format!("{}/{}/ts", self.topics.chains(), r.partition));
                    self.hub.origin(&epoch, r.seq);
                    self.chain_epochs.insert(r.partition, epoch.clone());
                    epoch
                }
            };
            self.hub.publish(Publication {
                kind: ChannelKind::Chain,
                channel: &r.channel,
                epoch: &epoch,
                seq: r.seq,
                data: &r.delta,
                state: Some(r.state),
                item: None,
            });
        }
    }
}

#[cfg(test)]
mod tests;
