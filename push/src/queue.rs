//! The per-client outbound queue.
//!
//! The hub pushes into it without ever waiting (it serves every client from one task), and
//! the client's session drains it onto the socket. It is bounded so one stuck client cannot
//! grow the server's memory:
//!
//! * Ordered messages (ticks, bars, control replies) count against `capacity` and
//!   `max_bytes`; one that does not fit means the client cannot keep up, and the queue
//!   closes it as a slow consumer.
//! * Conflating messages (chain, moneyness, indicators) carry a key (their channel, or
//!   channel and item). Once the client is behind (`capacity` messages queued), a newer
//!   message replaces the last still-queued one with the same key in place, so a slow
//!   client skips straight to the latest value and the channel's order is kept; a chain delta replaces a queued one with the chain's whole current state, since
//!   deltas cannot simply overwrite each other. They are admitted even when the queue is
//!   full: there is at most one queued per key, so their number is bounded by the client's
//!   subscriptions and the channels' keys.
//!
//! Closing cancels the session's token, so a session blocked writing to a dead socket stops
//! at once instead of waiting for TCP.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::frame::Frame;

/// Close code sent to a client that fell behind on an ordered stream.
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// Close code sent to a client that sent nothing for two ping intervals.
pub const CLOSE_PING_TIMEOUT: u16 = 4000;
/// Close code sent when the client's token expires without an in-band refresh.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code sent when the server shuts down ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code sent for a client message larger than `push.max_frame_bytes`.
pub const CLOSE_MESSAGE_TOO_BIG: u16 = 1009;
/// Close code sent when a first `auth` message is missing or its token is refused.
pub const CLOSE_UNAUTHORIZED: u16 = 4003;
/// Close code sent when no `auth` message arrives within `push.auth_timeout_secs`.
pub const CLOSE_AUTH_TIMEOUT: u16 = 4004;
/// Close code sent when the token's `jti` is revoked (first `auth` or refresh).
pub const CLOSE_TOKEN_REVOKED: u16 = 4005;
/// Close code sent when a first `auth` message would exceed the per-user connection limit.
pub const CLOSE_TOO_MANY_CONNECTIONS: u16 = 4009;
/// Close code sent when a client exceeds its request rate.
pub const CLOSE_RATE_LIMITED: u16 = 4029;

/// Why a client's session is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down.
    Shutdown,
    /// The client's queue overflowed on an ordered stream.
    SlowConsumer,
    /// The client stopped answering pings.
    PingTimeout,
    /// The client's token expired.
    TokenExpired,
    /// The client sent requests faster than `push.ops_per_sec` (beyond the burst).
    RateLimited,
    /// The client sent a message larger than `push.max_frame_bytes`.
    MessageTooBig,
    /// The client refreshed with a revoked token.
    TokenRevoked,
    /// The client closed the socket or the connection broke: nothing more to send.
    PeerGone,
}

impl CloseReason {
    /// The close frame to send for this reason, if any.
    pub fn close_frame(self) -> Option<(u16, &'static str)> {
        match self {
            CloseReason::Shutdown => Some((CLOSE_GOING_AWAY, "server shutting down")),
            CloseReason::SlowConsumer => Some((CLOSE_SLOW_CONSUMER, "slow consumer")),
            CloseReason::PingTimeout => Some((CLOSE_PING_TIMEOUT, "ping timeout")),
            CloseReason::TokenExpired => Some((CLOSE_TOKEN_EXPIRED, "token expired")),
            CloseReason::RateLimited => Some((CLOSE_RATE_LIMITED, "too many requests")),
            CloseReason::MessageTooBig => Some((CLOSE_MESSAGE_TOO_BIG, "message too big")),
            CloseReason::TokenRevoked => Some((CLOSE_TOKEN_REVOKED, "token revoked")),
            CloseReason::PeerGone => None,
        }
    }
}

/// What happened to a pushed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Appended to the queue.
    Queued,
    /// Replaced an older queued message with the same key.
    Conflated,
    /// Did not fit: the queue has been closed as a slow consumer.
    Overflow,
    /// The queue was already closed; the message was dropped.
    Closed,
}

struct Entry {
    key: Option<Arc<str>>,
    msg: Frame,
}

#[derive(Default)]
struct State {
    items: VecDeque<Entry>,
    /// Absolute position (see `head`) of the queued message for each conflation key.
    keyed: HashMap<Arc<str>, u64>,
    /// Absolute position of `items[0]`; grows as messages are popped.
    head: u64,
    /// Number of queued messages without a key (the ones `capacity` limits).
    ordered: usize,
    /// Bytes of the queued messages without a key (the ones `max_bytes` limits).
    ordered_bytes: usize,
    closed: Option<CloseReason>,
}

/// A bounded, partly conflating queue of messages for one client. Messages are [`Frame`]s,
/// shared with every other recipient; their size is counted as their JSON's, whatever
/// format the client receives them in.
pub struct ClientQueue {
    state: Mutex<State>,
    ready: Notify,
    /// Set while a deferred wake-up is owed (see [`ClientQueue::arm_wake`]).
    wake_armed: AtomicBool,
    capacity: usize,
    max_bytes: usize,
    stop: CancellationToken,
}

impl ClientQueue {
    /// A queue holding at most `capacity` ordered messages. `stop` is cancelled when the
    /// queue closes (and closing is implied when someone else cancels it).
    pub fn new(capacity: usize, stop: CancellationToken) -> ClientQueue {
        ClientQueue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            wake_armed: AtomicBool::new(false),
            capacity: capacity.max(1),
            max_bytes: usize::MAX,
            stop,
        }
    }

    /// Also bound the bytes of queued ordered messages (`push.client_queue_bytes`): a client
    /// that lets more pile up is closed as a slow consumer.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> ClientQueue {
        self.max_bytes = max_bytes.max(1);
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent in a way that
        // matters more than losing the client, so recover rather than propagate poison.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `msg`. With a `key`, replace any still-queued message with that key instead.
    /// Never blocks.
    pub fn push(&self, msg: Frame, key: Option<&Arc<str>>) -> Pushed {
        self.push_conflating(msg, key, None)
    }

    /// Like [`ClientQueue::push`], but a still-queued message with the same `key` is
    /// replaced by `replacement` when given (a chain's whole current state, which supersedes
    /// the queued delta and the new one together) instead of by `msg`.
    pub fn push_conflating(
        &self,
        msg: Frame,
        key: Option<&Arc<str>>,
        replacement: Option<&Frame>,
    ) -> Pushed {
        let pushed = self.push_quietly(msg, key, replacement);
        if pushed == Pushed::Queued {
            self.ready.notify_one();
        }
        pushed
    }

    /// Like [`ClientQueue::push_conflating`] but without waking the session: the hub queues
    /// a whole batch of Kafka records this way and then wakes each session it touched once
    /// ([`ClientQueue::wake`]), so a session writes the batch with one flush instead of
    /// waking, writing and flushing per message. An overflow still stops the session at once.
    pub fn push_quietly(
        &self,
        msg: Frame,
        key: Option<&Arc<str>>,
        replacement: Option<&Frame>,
    ) -> Pushed {
        let mut state = self.lock();
        // Only the queue's own flag: asking the cancellation token takes its lock, a cost on
        // every delivery. A session stopped from outside (shutdown) simply never drains what
        // still arrives, and drops it with the queue.
        if state.closed.is_some() {
            return Pushed::Closed;
        }
        if let Some(key) = key {
            // Conflate only a client that is behind (a full queue's worth waiting): one
            // that keeps up gets every update.
            let behind = state.items.len() >= self.capacity;
            if let Some(&pos) = state.keyed.get(key).filter(|_| behind) {
                let index = pos
                    .checked_sub(state.head)
                    .and_then(|i| usize::try_from(i).ok());
                if let Some(entry) = index.and_then(|i| state.items.get_mut(i)) {
                    entry.msg = replacement.cloned().unwrap_or(msg);
                    return Pushed::Conflated;
                }
            }
            let pos = state.head + state.items.len() as u64;
            state.keyed.insert(key.clone(), pos);
            state.items.push_back(Entry {
                key: Some(key.clone()),
                msg,
            });
        } else {
            if state.ordered >= self.capacity
                || (state.ordered > 0
                    && state.ordered_bytes.saturating_add(msg.len()) > self.max_bytes)
            {
                state.closed = Some(CloseReason::SlowConsumer);
                drop(state);
                self.stop.cancel();
                self.ready.notify_one();
                return Pushed::Overflow;
            }
            state.ordered += 1;
            state.ordered_bytes += msg.len();
            state.items.push_back(Entry { key: None, msg });
        }
        Pushed::Queued
    }

    /// Wake the session after [`ClientQueue::push_quietly`], and allow the next
    /// [`ClientQueue::arm_wake`] to claim it again.
    pub fn wake(&self) {
        self.wake_armed.store(false, Ordering::Release);
        self.ready.notify_one();
    }

    /// Claims this queue's next wake-up for the caller: true the first time after a
    /// [`ClientQueue::wake`], false while a wake is already owed (so a batch wakes each
    /// session once however many of its channels it touched).
    pub fn arm_wake(&self) -> bool {
        !self.wake_armed.swap(true, Ordering::AcqRel)
    }

    /// Take up to `max` queued messages, oldest first (possibly none).
    pub fn pop_batch(&self, max: usize) -> Vec<Frame> {
        let mut state = self.lock();
        let n = max.min(state.items.len());
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(entry) = state.items.pop_front() else {
                break;
            };
            let pos = state.head;
            state.head += 1;
            match entry.key {
                Some(key) => {
                    if state.keyed.get(&key) == Some(&pos) {
                        state.keyed.remove(&key);
                    }
                }
                None => {
                    state.ordered = state.ordered.saturating_sub(1);
                    state.ordered_bytes = state.ordered_bytes.saturating_sub(entry.msg.len());
                }
            }
            out.push(entry.msg);
        }
        out
    }

    /// Wait until something may have been queued (or the queue closed). Spurious wake-ups are
    /// possible; callers re-check with [`ClientQueue::pop_batch`].
    pub async fn wait(&self) {
        self.ready.notified().await
    }

    /// Close the queue for `reason` (the first reason wins) and stop the session.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.closed = Some(reason);
        }
        drop(state);
        self.stop.cancel();
        self.ready.notify_one();
    }

    /// Why the queue closed, if it did.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.lock().closed
    }

    /// Number of queued messages.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The token cancelled when this client must stop.
    pub fn stop_token(&self) -> &CancellationToken {
        &self.stop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(v: Vec<Frame>) -> Vec<String> {
        v.into_iter().map(|m| m.as_str().to_owned()).collect()
    }

    #[test]
    fn ordered_messages_keep_order_and_overflow_closes() {
        let stop = CancellationToken::new();
        let q = ClientQueue::new(2, stop.clone());
        assert_eq!(q.push("a".into(), None), Pushed::Queued);
        assert_eq!(q.push("b".into(), None), Pushed::Queued);
        assert_eq!(q.push("c".into(), None), Pushed::Overflow);
        assert!(stop.is_cancelled());
        assert_eq!(q.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(q.push("d".into(), None), Pushed::Closed);
        assert_eq!(texts(q.pop_batch(10)), vec!["a", "b"]);
    }

    #[test]
    fn ordered_bytes_beyond_the_bound_close_the_client() {
        let stop = CancellationToken::new();
        let q = ClientQueue::new(100, stop.clone()).with_max_bytes(10);
        assert_eq!(q.push("123456".into(), None), Pushed::Queued);
        assert_eq!(q.push("1234".into(), None), Pushed::Queued);
        assert_eq!(q.push("1".into(), None), Pushed::Overflow);
        assert!(stop.is_cancelled());
        // A single message larger than the bound still goes to an otherwise empty queue.
        let q = ClientQueue::new(100, CancellationToken::new()).with_max_bytes(4);
        assert_eq!(q.push("123456".into(), None), Pushed::Queued);
        assert_eq!(texts(q.pop_batch(1)), vec!["123456"]);
        assert_eq!(q.push("12".into(), None), Pushed::Queued);
    }

    #[test]
    fn popping_frees_room() {
        let q = ClientQueue::new(2, CancellationToken::new());
        q.push("a".into(), None);
        q.push("b".into(), None);
        assert_eq!(texts(q.pop_batch(1)), vec!["a"]);
        assert_eq!(q.push("c".into(), None), Pushed::Queued);
        assert_eq!(texts(q.pop_batch(10)), vec!["b", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn keyed_messages_conflate_in_place_once_behind() {
        let q = ClientQueue::new(3, CancellationToken::new());
        let x: Arc<str> = Arc::from("bars.X");
        let y: Arc<str> = Arc::from("bars.Y");
        q.push("x1".into(), Some(&x));
        q.push("t1".into(), None);
        q.push("y1".into(), Some(&y));
        assert_eq!(q.push("x2".into(), Some(&x)), Pushed::Conflated);
        assert_eq!(q.push("x3".into(), Some(&x)), Pushed::Conflated);
        assert_eq!(texts(q.pop_batch(10)), vec!["x3", "t1", "y1"]);
        // Once sent, the next value queues afresh.
        assert_eq!(q.push("x4".into(), Some(&x)), Pushed::Queued);
        assert_eq!(texts(q.pop_batch(10)), vec!["x4"]);
    }

    #[test]
    fn a_client_that_keeps_up_gets_every_keyed_message() {
        let q = ClientQueue::new(3, CancellationToken::new());
        let x: Arc<str> = Arc::from("chain.X");
        let full: Frame = "whole".into();
        assert_eq!(
            q.push_conflating("d1".into(), Some(&x), Some(&full)),
            Pushed::Queued
        );
        assert_eq!(
            q.push_conflating("d2".into(), Some(&x), Some(&full)),
            Pushed::Queued
        );
        assert_eq!(
            q.push_conflating("d3".into(), Some(&x), Some(&full)),
            Pushed::Queued
        );
        // Now behind: the latest queued delta becomes the whole state.
        assert_eq!(
            q.push_conflating("d4".into(), Some(&x), Some(&full)),
            Pushed::Conflated
        );
        assert_eq!(texts(q.pop_batch(10)), vec!["d1", "d2", "whole"]);
    }

    #[test]
    fn keyed_messages_are_admitted_when_full_but_bounded_per_key() {
        let stop = CancellationToken::new();
        let q = ClientQueue::new(1, stop.clone());
        let x: Arc<str> = Arc::from("bars.X");
        q.push("t1".into(), None);
        assert_eq!(q.push("x1".into(), Some(&x)), Pushed::Queued);
        assert_eq!(q.push("x2".into(), Some(&x)), Pushed::Conflated);
        assert_eq!(q.len(), 2);
        assert!(!stop.is_cancelled());
    }

    #[test]
    fn conflation_survives_partial_pops() {
        let q = ClientQueue::new(2, CancellationToken::new());
        let x: Arc<str> = Arc::from("bars.X");
        q.push("t1".into(), None);
        q.push("t2".into(), None);
        q.push("x1".into(), Some(&x));
        assert_eq!(texts(q.pop_batch(1)), vec!["t1"]);
        assert_eq!(q.push("x2".into(), Some(&x)), Pushed::Conflated);
        assert_eq!(texts(q.pop_batch(10)), vec!["t2", "x2"]);
    }

    #[test]
    fn every_close_code_is_documented() {
        let docs = include_str!("../../docs/protocol.md");
        for code in [
            CLOSE_GOING_AWAY,
            CLOSE_MESSAGE_TOO_BIG,
            CLOSE_PING_TIMEOUT,
            CLOSE_TOKEN_EXPIRED,
            CLOSE_UNAUTHORIZED,
            CLOSE_AUTH_TIMEOUT,
            CLOSE_TOKEN_REVOKED,
            CLOSE_SLOW_CONSUMER,
            CLOSE_TOO_MANY_CONNECTIONS,
            CLOSE_RATE_LIMITED,
        ] {
            assert!(
                docs.contains(&format!("| {code} |")),
                "close code {code} is not in docs/protocol.md"
            );
        }
        for reason in [
            CloseReason::Shutdown,
            CloseReason::SlowConsumer,
            CloseReason::PingTimeout,
            CloseReason::TokenExpired,
            CloseReason::RateLimited,
            CloseReason::MessageTooBig,
            CloseReason::TokenRevoked,
        ] {
            let (code, text) = reason.close_frame().expect("a close frame");
            assert!(
                docs.contains(&format!("| {code} | `{text}` |")),
                "{code} {text:?} is not in docs/protocol.md"
            );
        }
    }

    #[test]
    fn first_close_reason_wins() {
        let q = ClientQueue::new(1, CancellationToken::new());
        q.close(CloseReason::PingTimeout);
        q.close(CloseReason::Shutdown);
        assert_eq!(q.close_reason(), Some(CloseReason::PingTimeout));
        assert!(q.stop_token().is_cancelled());
    }

    #[tokio::test]
    async fn wait_wakes_on_push() {
        let q = Arc::new(ClientQueue::new(4, CancellationToken::new()));
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            loop {
                let batch = q2.pop_batch(8);
                if !batch.is_empty() {
                    return texts(batch);
                }
                q2.wait().await;
            }
        });
        tokio::task::yield_now().await;
        q.push("hello".into(), None);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woke")
            .expect("joined");
        assert_eq!(got, vec!["hello"]);
    }
}
