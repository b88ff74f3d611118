//! Channels → subscribers, and the fan-out.
//!
//! The feed publishes each decoded message once; the hub numbers it within its channel,
//! wraps the already-serialised data in the envelope once, and hands the same shared bytes
//! to every subscriber's queue (a reference-count bump per client, no copy, no per-client
//! serialisation). Queues never block, so one slow client cannot delay the others.
//!
//! The hub also keeps the latest bar of every bar channel. A new subscriber gets
//! `subscribed`, then that bar, then live data, all enqueued under one lock so nothing can
//! slip in between or arrive out of order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use metrics::Counter;

use crate::protocol::{data_envelope, ChannelKind, ServerMsg};
use crate::queue::{ClientQueue, Pushed};
use crate::stats;

/// Identifies one WebSocket session within the hub.
pub type ClientId = u64;

/// A stored latest message for a channel, e.g. read back from Redis after a restart.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The message's per-channel sequence number.
    pub seq: u64,
    /// The full message, exactly as sent to clients.
    pub message: Utf8Bytes,
}

/// The result of publishing one message.
#[derive(Debug, Clone)]
pub struct Published {
    /// The message's per-channel sequence number.
    pub seq: u64,
    /// The full message, as sent to clients.
    pub message: Utf8Bytes,
    /// How many subscribers it was queued for.
    pub delivered: usize,
}

struct Channel {
    /// The channel name, shared with queues as the conflation key.
    name: Arc<str>,
    /// Sequence number of the last message published on the channel.
    seq: u64,
    /// Latest message, kept for snapshot-like (conflating) kinds only.
    latest: Option<Utf8Bytes>,
    subscribers: HashMap<ClientId, Arc<ClientQueue>>,
}

impl Channel {
    fn new(name: Arc<str>) -> Channel {
        Channel {
            name,
            seq: 0,
            latest: None,
            subscribers: HashMap::new(),
        }
    }
}

/// The registry of channels and their subscribers.
pub struct Hub {
    channels: Mutex<HashMap<Arc<str>, Channel>>,
    next_client: AtomicU64,
    deliveries: Counter,
    slow_closes: Counter,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        Hub {
            channels: Mutex::new(HashMap::new()),
            next_client: AtomicU64::new(1),
            deliveries: metrics::counter!(stats::DELIVERIES),
            slow_closes: metrics::counter!(stats::SLOW_CLIENT_CLOSES),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Channel>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh id for a new session.
    pub fn next_client_id(&self) -> ClientId {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Publish already-serialised `data` on `channel`: number it, wrap it, queue it for every
    /// subscriber. Subscribers that overflow are closed as slow consumers. `channel` is shared so the feed can keep one allocation per instrument.
    pub fn publish(&self, kind: ChannelKind, channel: &Arc<str>, data: &str) -> Published {
        let mut channels = self.lock();
        let entry = channels
            .entry(channel.clone())
            .or_insert_with(|| Channel::new(channel.clone()));
        entry.seq += 1;
        let seq = entry.seq;
        let message = Utf8Bytes::from(data_envelope(kind, &entry.name, seq, data));
        if kind.keeps_latest() {
            entry.latest = Some(message.clone());
        }
        let key = kind.conflates().then_some(&entry.name);
        let mut delivered = 0;
        for queue in entry.subscribers.values() {
            if self.deliver(queue, message.clone(), key) {
                delivered += 1;
            }
        }
        drop(channels);
        self.deliveries.increment(delivered as u64);
        Published {
            seq,
            message,
            delivered,
        }
    }

    /// Whether the hub holds a latest message for `channel` (so a Redis read is unneeded).
    pub fn has_latest(&self, channel: &str) -> bool {
        self.lock()
            .get(channel)
            .is_some_and(|entry| entry.latest.is_some())
    }

    /// Subscribe `queue` to `channel` and enqueue `subscribed` plus the channel's latest
    /// message. The hub's own latest wins; `stored` (from Redis) is used only when the hub has
    /// none, and then also seeds the channel's sequence so numbers keep increasing.
    /// Subscribing twice is harmless: the reply and snapshot are simply sent again.
    pub fn subscribe(
        &self,
        id: ClientId,
        queue: &Arc<ClientQueue>,
        kind: ChannelKind,
        channel: &str,
        stored: Option<Snapshot>,
    ) {
        let mut channels = self.lock();
        let entry = channels
            .entry(Arc::from(channel))
            .or_insert_with_key(|name| Channel::new(name.clone()));
        let subscribed = ServerMsg::Subscribed { channel }.to_json();
        if !self.deliver(queue, Utf8Bytes::from(subscribed), None) {
            return;
        }
        if kind.keeps_latest() {
            if entry.latest.is_none() {
                if let Some(stored) = stored {
                    entry.seq = entry.seq.max(stored.seq);
                    entry.latest = Some(stored.message);
                }
            }
            if let Some(latest) = &entry.latest {
                let key = kind.conflates().then_some(&entry.name);
                self.deliver(queue, latest.clone(), key);
            }
        }
        entry.subscribers.insert(id, queue.clone());
    }

    /// Remove one subscription. Channels that never carried data are forgotten once unused,
    /// so clients cannot grow the hub with made-up names.
    pub fn unsubscribe(&self, id: ClientId, channel: &str) {
        let mut channels = self.lock();
        let forget = match channels.get_mut(channel) {
            Some(entry) => {
                entry.subscribers.remove(&id);
                entry.subscribers.is_empty() && entry.seq == 0 && entry.latest.is_none()
            }
            None => false,
        };
        if forget {
            channels.remove(channel);
        }
    }

    /// Number of subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.lock()
            .get(channel)
            .map_or(0, |entry| entry.subscribers.len())
    }

    /// Number of channels the hub tracks.
    pub fn channel_count(&self) -> usize {
        self.lock().len()
    }

    fn deliver(&self, queue: &ClientQueue, message: Utf8Bytes, key: Option<&Arc<str>>) -> bool {
        match queue.push(message, key) {
            Pushed::Queued | Pushed::Conflated => true,
            Pushed::Overflow => {
                self.slow_closes.increment(1);
                tracing::info!("closing slow consumer");
                false
            }
            Pushed::Closed => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio_util::sync::CancellationToken;

    use super::*;

    fn queue(capacity: usize) -> Arc<ClientQueue> {
        Arc::new(ClientQueue::new(capacity, CancellationToken::new()))
    }

    fn name(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    fn drain(q: &ClientQueue) -> Vec<serde_json::Value> {
        q.pop_batch(usize::MAX)
            .into_iter()
            .map(|m| serde_json::from_str(m.as_str()).expect("json"))
            .collect()
    }

    #[test]
    fn fans_out_shared_bytes_with_per_channel_seq() {
        let hub = Hub::new();
        let (a, b) = (queue(8), queue(8));
        hub.subscribe(1, &a, ChannelKind::Ticks, "ticks.X", None);
        hub.subscribe(2, &b, ChannelKind::Ticks, "ticks.X", None);
        drain(&a);
        drain(&b);
        let p1 = hub.publish(ChannelKind::Ticks, &name("ticks.X"), r#"{"ltp":1}"#);
        let p2 = hub.publish(ChannelKind::Ticks, &name("ticks.X"), r#"{"ltp":2}"#);
        let other = hub.publish(ChannelKind::Ticks, &name("ticks.Y"), r#"{"ltp":3}"#);
        assert_eq!((p1.seq, p2.seq, other.seq), (1, 2, 1));
        assert_eq!((p1.delivered, other.delivered), (2, 0));
        // The same allocation reaches every subscriber.
        let got_a = a.pop_batch(8);
        let got_b = b.pop_batch(8);
        assert_eq!(got_a[0].as_ptr(), got_b[0].as_ptr());
        let v: serde_json::Value = serde_json::from_str(got_a[1].as_str()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type":"tick","channel":"ticks.X","seq":2,"data":{"ltp":2}})
        );
    }

    #[test]
    fn subscriber_gets_subscribed_then_latest_bar() {
        let hub = Hub::new();
        hub.publish(ChannelKind::Bars, &name("bars.X"), r#"{"close":1}"#);
        hub.publish(ChannelKind::Bars, &name("bars.X"), r#"{"close":2}"#);
        let q = queue(8);
        hub.subscribe(7, &q, ChannelKind::Bars, "bars.X", None);
        let got = drain(&q);
        assert_eq!(
            got,
            vec![
                serde_json::json!({"type":"subscribed","channel":"bars.X"}),
                serde_json::json!({"type":"bar","channel":"bars.X","seq":2,"data":{"close":2}}),
            ]
        );
    }

    #[test]
    fn ticks_are_not_snapshotted() {
        let hub = Hub::new();
        hub.publish(ChannelKind::Ticks, &name("ticks.X"), r#"{"ltp":1}"#);
        assert!(!hub.has_latest("ticks.X"));
        let q = queue(8);
        hub.subscribe(7, &q, ChannelKind::Ticks, "ticks.X", None);
        assert_eq!(drain(&q).len(), 1);
    }

    #[test]
    fn stored_snapshot_is_used_only_without_a_live_one_and_seeds_seq() {
        let hub = Hub::new();
        let stored = Snapshot {
            seq: 41,
            message: Utf8Bytes::from(
                r#"{"type":"bar","channel":"bars.X","seq":41,"data":{"close":9}}"#,
            ),
        };
        let q = queue(8);
        hub.subscribe(1, &q, ChannelKind::Bars, "bars.X", Some(stored.clone()));
        let got = drain(&q);
        assert_eq!(got[1]["seq"], 41);
        assert!(hub.has_latest("bars.X"));
        let next = hub.publish(ChannelKind::Bars, &name("bars.X"), r#"{"close":10}"#);
        assert_eq!(next.seq, 42);

        // A live latest beats an older stored one.
        let q2 = queue(8);
        hub.subscribe(2, &q2, ChannelKind::Bars, "bars.X", Some(stored));
        let got = drain(&q2);
        assert_eq!(got[1]["seq"], 42);
        assert_eq!(got[1]["data"]["close"], 10);
    }

    #[test]
    fn slow_tick_subscriber_is_closed_others_continue() {
        let hub = Hub::new();
        let slow_stop = CancellationToken::new();
        let slow = Arc::new(ClientQueue::new(2, slow_stop.clone()));
        let fast = queue(100);
        hub.subscribe(1, &slow, ChannelKind::Ticks, "ticks.X", None);
        hub.subscribe(2, &fast, ChannelKind::Ticks, "ticks.X", None);
        for i in 0..5 {
            hub.publish(
                ChannelKind::Ticks,
                &name("ticks.X"),
                &format!(r#"{{"i":{i}}}"#),
            );
        }
        assert!(slow_stop.is_cancelled());
        assert_eq!(
            slow.close_reason(),
            Some(crate::queue::CloseReason::SlowConsumer)
        );
        assert_eq!(drain(&fast).len(), 6);
    }

    #[test]
    fn slow_bar_subscriber_is_closed_not_conflated() {
        let hub = Hub::new();
        let stop = CancellationToken::new();
        let q = Arc::new(ClientQueue::new(2, stop.clone()));
        hub.subscribe(1, &q, ChannelKind::Bars, "bars.X", None);
        for i in 0..50 {
            hub.publish(
                ChannelKind::Bars,
                &name("bars.X"),
                &format!(r#"{{"i":{i}}}"#),
            );
        }
        // Every bar is a distinct candle: skipping some would corrupt the chart.
        assert!(stop.is_cancelled());
        assert_eq!(
            q.close_reason(),
            Some(crate::queue::CloseReason::SlowConsumer)
        );
    }

    #[test]
    fn a_burst_of_bars_reaches_a_fast_subscriber_whole() {
        let hub = Hub::new();
        let q = queue(64);
        hub.subscribe(1, &q, ChannelKind::Bars, "bars.X", None);
        for i in 0..9 {
            hub.publish(
                ChannelKind::Bars,
                &name("bars.X"),
                &format!(r#"{{"i":{i}}}"#),
            );
        }
        let got = drain(&q);
        let bars: Vec<_> = got
            .iter()
            .filter(|m| m["type"] == "bar")
            .map(|m| m["data"]["i"].clone())
            .collect();
        assert_eq!(
            bars,
            (0..9).map(serde_json::Value::from).collect::<Vec<_>>()
        );
    }

    #[test]
    fn unsubscribe_stops_delivery_and_forgets_unused_channels() {
        let hub = Hub::new();
        let q = queue(8);
        hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.NOPE", None);
        assert_eq!(hub.subscriber_count("ticks.NOPE"), 1);
        hub.unsubscribe(1, "ticks.NOPE");
        assert_eq!(hub.channel_count(), 0);

        hub.subscribe(1, &q, ChannelKind::Ticks, "ticks.X", None);
        hub.publish(ChannelKind::Ticks, &name("ticks.X"), "{}");
        hub.unsubscribe(1, "ticks.X");
        drain(&q);
        hub.publish(ChannelKind::Ticks, &name("ticks.X"), "{}");
        assert!(q.is_empty());
        // A channel with data keeps its sequence.
        assert_eq!(hub.channel_count(), 1);
    }
}
