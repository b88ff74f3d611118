//! Channels → subscribers, the fan-out, and each channel's recovery history.
//!
//! The feed publishes each decoded message once, already numbered (`seq` and `epoch` come
//! from Kafka positions, see `docs/protocol.md`); the hub wraps the serialised data in the
//! envelope once and hands the same shared bytes to every subscriber's queue (a
//! reference-count bump per client, no copy, no per-client serialisation; a [`Frame`] also
//! carries the MessagePack encoding, made once if a MessagePack client needs it). Queues
//! never block, so one slow client cannot delay the others.
//!
//! Per channel the hub keeps:
//! * the state a new subscriber starts from: the latest bar, or the whole chain /
//!   moneyness / indicator state as one `"snapshot":true` message;
//! * a history of the last messages, bounded in bytes, from which a client resuming with
//!   `since` gets exactly what it missed. `covered_from` is the first sequence number from
//!   which this node knows every message of the channel (where it started reading the
//!   partition, or the oldest message still in the history); a `since` older than that is
//!   answered with the snapshot and `"recovered":false` instead — never a silent gap.
//!
//! A subscription is answered (`subscribed`, then the snapshot or the missed messages)
//! under the same lock as publishing, so nothing can slip in between or arrive out of order.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::ws::Utf8Bytes;
use metrics::Counter;

use crate::frame::Frame;
use crate::protocol::{data_envelope, ChannelKind, ServerMsg, Since};
use crate::queue::{ClientQueue, Pushed};
use crate::stats;

/// Identifies one WebSocket session within the hub.
pub type ClientId = u64;

/// Default bytes of history kept per channel for recovery (`push.history_bytes`).
pub const DEFAULT_HISTORY_BYTES: usize = 128 * 1024;

/// A stored latest message for a channel, e.g. read back from Redis after a restart.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The message's per-channel sequence number.
    pub seq: u64,
    /// The epoch of that number.
    pub epoch: String,
    /// The full message, exactly as sent to clients.
    pub message: Utf8Bytes,
}

/// One message for the hub to number-check, wrap and fan out.
#[derive(Debug)]
pub struct Publication<'a> {
    /// What the channel carries.
    pub kind: ChannelKind,
    /// The channel (canonical name), shared so the feed keeps one allocation per channel.
    pub channel: &'a Arc<str>,
    /// Names the numbering `seq` belongs to (the source partition).
    pub epoch: &'a Arc<str>,
    /// The message's number, derived from its Kafka position; increases within an epoch.
    pub seq: u64,
    /// The message's `data`, serialised JSON.
    pub data: &'a str,
    /// The channel's whole state after this message, as `data` JSON (chain, moneyness,
    /// indicators): what a new subscriber, a resuming client beyond the history, or a slow
    /// subscriber's conflated queue entry gets.
    pub state: Option<String>,
    /// The item within the channel this message updates (moneyness bucket and side,
    /// indicator); a slow subscriber keeps only the latest message per item.
    pub item: Option<&'a str>,
}

/// The result of publishing one message.
#[derive(Debug, Clone)]
pub struct Published {
    /// The message's per-channel sequence number.
    pub seq: u64,
    /// The full message, as sent to clients; `None` if it was a repeat (seq not newer).
    pub message: Option<Utf8Bytes>,
    /// How many subscribers it was queued for.
    pub delivered: usize,
}

struct Subscriber {
    queue: Arc<ClientQueue>,
    /// Messages numbered up to this were already sent (or the client had them).
    after: u64,
}

struct Channel {
    /// The channel name, shared with queues as the conflation key.
    name: Arc<str>,
    /// The numbering of `seq`; `None` until the first message.
    epoch: Option<Arc<str>>,
    /// Sequence number of the last message published on the channel.
    seq: u64,
    /// Every message numbered from this on is known to this node (in `history` or after).
    covered_from: u64,
    history: VecDeque<(u64, Frame)>,
    history_bytes: usize,
    /// What a new subscriber starts from (latest bar, or a `"snapshot":true` message).
    snapshot: Option<Frame>,
    subscribers: HashMap<ClientId, Subscriber>,
}

impl Channel {
    fn new(name: Arc<str>) -> Channel {
        Channel {
            name,
            epoch: None,
            seq: 0,
            covered_from: 0,
            history: VecDeque::new(),
            history_bytes: 0,
            snapshot: None,
            subscribers: HashMap::new(),
        }
    }

    /// Whether a client holding every message up to `since` can get exactly the rest here.
    fn recovers(&self, since: &Since, origins: &HashMap<Arc<str>, u64>) -> bool {
        match &self.epoch {
            Some(epoch) => {
                **epoch == *since.epoch && since.seq.saturating_add(1) >= self.covered_from
            }
            // Never seen on this node: nothing was missed if the node has read the
            // partition the epoch names since before `since`.
            None => origins
                .get(since.epoch.as_str())
                .is_some_and(|&origin| since.seq.saturating_add(1) >= origin),
        }
    }
}

struct Channels {
    map: HashMap<Arc<str>, Channel>,
    /// Sessions given messages by [`Hub::publish`] since the last [`Hub::wake_pending`].
    unwoken: Vec<Arc<ClientQueue>>,
    /// Per epoch (source partition), the first seq this node has read in it.
    origins: HashMap<Arc<str>, u64>,
}

/// The registry of channels and their subscribers.
pub struct Hub {
    channels: Mutex<Channels>,
    history_limit: usize,
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
    /// An empty hub keeping [`DEFAULT_HISTORY_BYTES`] of history per channel.
    pub fn new() -> Hub {
        Hub::with_history(DEFAULT_HISTORY_BYTES)
    }

    /// An empty hub keeping up to `history_bytes` of messages per channel for recovery
    /// (at least the latest message is always kept).
    pub fn with_history(history_bytes: usize) -> Hub {
        Hub {
            channels: Mutex::new(Channels {
                map: HashMap::new(),
                origins: HashMap::new(),
                unwoken: Vec::new(),
            }),
            history_limit: history_bytes,
            next_client: AtomicU64::new(1),
            deliveries: metrics::counter!(stats::DELIVERIES),
            slow_closes: metrics::counter!(stats::SLOW_CLIENT_CLOSES),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh id for a new session.
    pub fn next_client_id(&self) -> ClientId {
        self.next_client.fetch_add(1, Ordering::Relaxed)
    }

    /// Record that this node reads the source partition `epoch` names from `first_seq` on
    /// (the first message it read there), so a client resuming a channel this node has
    /// not seen yet can be told truthfully that it missed nothing. The first call wins.
    pub fn origin(&self, epoch: &Arc<str>, first_seq: u64) {
        self.lock()
            .origins
            .entry(epoch.clone())
            .or_insert(first_seq);
    }

    /// Publish one numbered message: keep it in the channel's history and snapshot, and
    /// queue it for every subscriber. A message not newer than the channel's last (a repeat
    /// after a feed reassignment) is dropped. Subscribers that overflow are closed as slow
    /// consumers. Wakes nobody: the sessions given the message are woken by the next
    /// [`Hub::wake_pending`].
    pub fn publish(&self, p: Publication<'_>) -> Published {
        let mut guard = self.lock();
        let Channels {
            map,
            origins,
            unwoken,
        } = &mut *guard;
        let entry = map
            .entry(p.channel.clone())
            .or_insert_with(|| Channel::new(p.channel.clone()));
        let same_epoch = entry.epoch.as_deref() == Some(&**p.epoch);
        if same_epoch && p.seq <= entry.seq {
            return Published {
                seq: p.seq,
                message: None,
                delivered: 0,
            };
        }
        if !same_epoch {
            // A new numbering (first message, or the channel moved partition): the old
            // history means nothing in it.
            entry.epoch = Some(p.epoch.clone());
            entry.history.clear();
            entry.history_bytes = 0;
            entry.covered_from = origins.get(p.epoch).copied().unwrap_or(p.seq).min(p.seq);
        }
        entry.seq = p.seq;
        let message = Frame::from(data_envelope(
            p.kind,
            &entry.name,
            p.epoch,
            p.seq,
            false,
            p.data,
        ));
        match (&p.state, p.kind) {
            (Some(state), _) => {
                entry.snapshot = Some(Frame::from(data_envelope(
                    p.kind,
                    &entry.name,
                    p.epoch,
                    p.seq,
                    true,
                    state,
                )));
            }
            (None, ChannelKind::Bars) => entry.snapshot = Some(message.clone()),
            (None, _) => {}
        }
        entry.history_bytes += message.len();
        entry.history.push_back((p.seq, message.clone()));
        while entry.history_bytes > self.history_limit && entry.history.len() > 1 {
            if let Some((seq, old)) = entry.history.pop_front() {
                entry.history_bytes -= old.len();
                entry.covered_from = seq + 1;
            }
        }
        let item_key = p
            .item
            .map(|item| Arc::<str>::from(format!("{}\u{0}{item}", entry.name)));
        let key = match p.kind {
            ChannelKind::Chain => Some(&entry.name),
            ChannelKind::Moneyness | ChannelKind::Indicators => {
                item_key.as_ref().or(Some(&entry.name))
            }
            ChannelKind::Bars | ChannelKind::Ticks => None,
        };
        let replacement = match p.kind {
            ChannelKind::Chain => entry.snapshot.as_ref(),
            _ => None,
        };
        let mut delivered = 0;
        for sub in entry.subscribers.values_mut() {
            if p.seq <= sub.after {
                continue;
            }
            sub.after = p.seq;
            match sub.queue.push_quietly(message.clone(), key, replacement) {
                Pushed::Queued | Pushed::Conflated => {
                    delivered += 1;
                    if sub.queue.arm_wake() {
                        unwoken.push(sub.queue.clone());
                    }
                }
                Pushed::Overflow => self.slow_close(),
                Pushed::Closed => {}
            }
        }
        drop(guard);
        self.deliveries.increment(delivered as u64);
        Published {
            seq: p.seq,
            message: Some(message.json().clone()),
            delivered,
        }
    }

    /// Whether the hub holds a latest message for `channel` (so a Redis read is unneeded).
    pub fn has_latest(&self, channel: &str) -> bool {
        self.lock()
            .map
            .get(channel)
            .is_some_and(|entry| entry.snapshot.is_some())
    }

    /// Subscribe `queue` to `channel` and enqueue `subscribed`, then either the messages
    /// missed since `since` (when this node has all of them: `"recovered":true`) or the
    /// channel's snapshot (`"recovered":false` when `since` was given). `stored` (from
    /// Redis) stands in for a bar channel's snapshot when the hub has none. Subscribing
    /// twice is harmless: the reply and snapshot are simply sent again.
    pub fn subscribe(
        &self,
        id: ClientId,
        queue: &Arc<ClientQueue>,
        kind: ChannelKind,
        channel: &str,
        since: Option<&Since>,
        stored: Option<Snapshot>,
    ) {
        let mut guard = self.lock();
        let Channels { map, origins, .. } = &mut *guard;
        let entry = map
            .entry(Arc::from(channel))
            .or_insert_with_key(|name| Channel::new(name.clone()));
        let recovered = since.map(|since| entry.recovers(since, origins));
        let subscribed = ServerMsg::Subscribed {
            channel,
            epoch: entry.epoch.as_deref(),
            seq: entry.epoch.as_ref().map(|_| entry.seq),
            recovered,
        }
        .to_json();
        if !self.deliver(queue, Frame::from(subscribed), None, None) {
            return;
        }
        let key = kind.conflates().then_some(&entry.name);
        let after = match (since, recovered) {
            (Some(since), Some(true)) => {
                for (seq, message) in &entry.history {
                    if *seq > since.seq && !self.deliver(queue, message.clone(), None, None) {
                        return;
                    }
                }
                since.seq.max(entry.seq)
            }
            _ => {
                let mut after = entry.seq;
                if kind.keeps_latest() {
                    if entry.snapshot.is_none() {
                        if let Some(stored) = stored {
                            // Messages this node has yet to read (or replay) up to the
                            // stored one must not follow it, when their numbers compare.
                            if origins.contains_key(stored.epoch.as_str()) {
                                after = after.max(stored.seq);
                            }
                            entry.snapshot = Some(Frame::from(stored.message));
                        }
                    }
                    if let Some(snapshot) = &entry.snapshot {
                        self.deliver(queue, snapshot.clone(), key, None);
                    }
                }
                after
            }
        };
        entry.subscribers.insert(
            id,
            Subscriber {
                queue: queue.clone(),
                after,
            },
        );
    }

    /// Remove one subscription. Channels that never carried data are forgotten once unused,
    /// so clients cannot grow the hub with made-up names.
    pub fn unsubscribe(&self, id: ClientId, channel: &str) {
        let mut guard = self.lock();
        let forget = match guard.map.get_mut(channel) {
            Some(entry) => {
                entry.subscribers.remove(&id);
                entry.subscribers.is_empty() && entry.epoch.is_none() && entry.snapshot.is_none()
            }
            None => false,
        };
        if forget {
            guard.map.remove(channel);
        }
    }

    /// Remove every subscription of `id`: for a session whose own list of them is lost (its
    /// reader failed), so the hub does not keep feeding a closed queue.
    pub fn unsubscribe_everywhere(&self, id: ClientId) {
        let mut guard = self.lock();
        guard.map.retain(|_, entry| {
            entry.subscribers.remove(&id);
            !(entry.subscribers.is_empty() && entry.epoch.is_none() && entry.snapshot.is_none())
        });
    }

    /// Number of subscribers of `channel`.
    pub fn subscriber_count(&self, channel: &str) -> usize {
        self.lock()
            .map
            .get(channel)
            .map_or(0, |entry| entry.subscribers.len())
    }

    /// Number of channels the hub tracks.
    pub fn channel_count(&self) -> usize {
        self.lock().map.len()
    }

    fn deliver(
        &self,
        queue: &ClientQueue,
        message: Frame,
        key: Option<&Arc<str>>,
        replacement: Option<&Frame>,
    ) -> bool {
        match queue.push_conflating(message, key, replacement) {
            Pushed::Queued | Pushed::Conflated => true,
            Pushed::Overflow => {
                self.slow_close();
                false
            }
            Pushed::Closed => false,
        }
    }

    fn slow_close(&self) {
        self.slow_closes.increment(1);
        tracing::info!("closing slow consumer");
    }

    /// Wakes every session [`Hub::publish`] gave messages to since the last call, once
    /// each. The feed calls it after each batch of Kafka records.
    pub fn wake_pending(&self) {
        let unwoken = std::mem::take(&mut self.lock().unwoken);
        for queue in unwoken {
            queue.wake();
        }
    }
}

#[cfg(test)]
mod tests;
