//! What one node, one user and one connection may hold or do: the node's connection count,
//! the node-local per-user count (the cross-node count is in [`crate::presence`]), and a
//! token bucket for a connection's requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

/// Connection counts of this node.
#[derive(Debug)]
pub struct Limits {
    max_connections: usize,
    max_per_user: usize,
    connections: AtomicUsize,
    per_user: Mutex<HashMap<String, usize>>,
}

impl Limits {
    /// At most `max_connections` sessions on this node and `max_per_user` per subject.
    pub fn new(max_connections: usize, max_per_user: usize) -> Arc<Limits> {
        Arc::new(Limits {
            max_connections,
            max_per_user,
            connections: AtomicUsize::new(0),
            per_user: Mutex::new(HashMap::new()),
        })
    }

    fn users(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        self.per_user.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reserve one of the node's connections, or `None` if all are taken. The slot is
    /// released when dropped.
    pub fn try_connect(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let reserved = self
            .connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .is_ok();
        reserved.then(|| ConnectionSlot {
            limits: self.clone(),
            user: None,
        })
    }

    /// The per-user limit.
    pub fn max_per_user(&self) -> usize {
        self.max_per_user
    }

    /// Sessions open on this node.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Sessions `user` holds on this node.
    pub fn user_connections(&self, user: &str) -> usize {
        self.users().get(user).copied().unwrap_or(0)
    }
}

/// One reserved connection; counted until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    limits: Arc<Limits>,
    user: Option<String>,
}

impl ConnectionSlot {
    /// Count this connection for `user` on this node; false (and not counted) if the user
    /// already holds the limit here. A slot counts for one user at most.
    pub fn claim_user(&mut self, user: &str) -> bool {
        if self.user.is_some() {
            return true;
        }
        let mut users = self.limits.users();
        let count = users.entry(user.to_owned()).or_insert(0);
        if *count >= self.limits.max_per_user {
            if *count == 0 {
                users.remove(user);
            }
            return false;
        }
        *count += 1;
        drop(users);
        self.user = Some(user.to_owned());
        true
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limits.connections.fetch_sub(1, Ordering::AcqRel);
        if let Some(user) = self.user.take() {
            let mut users = self.limits.users();
            if let Some(count) = users.get_mut(&user) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    users.remove(&user);
                }
            }
        }
    }
}

/// A token bucket: `rate` requests per second sustained, bursts of up to `burst`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> RateLimit {
        RateLimit {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: Instant::now(),
        }
    }

    /// Take one token at `now`; false if the bucket is empty.
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn node_limit_is_enforced_and_released_on_drop() {
        let limits = Limits::new(2, 5);
        let a = limits.try_connect().expect("first");
        let b = limits.try_connect().expect("second");
        assert!(limits.try_connect().is_none(), "third is over the limit");
        drop(a);
        let c = limits.try_connect().expect("room again");
        assert_eq!(limits.connections(), 2);
        drop((b, c));
        assert_eq!(limits.connections(), 0);
    }

    #[test]
    fn per_user_count_is_local_and_released() {
        let limits = Limits::new(10, 2);
        let mut slots: Vec<ConnectionSlot> = (0..3)
            .map(|_| limits.try_connect().expect("slot"))
            .collect();
        assert!(slots[0].claim_user("alice"));
        assert!(slots[1].claim_user("alice"));
        assert!(!slots[2].claim_user("alice"), "a third for alice");
        assert!(slots[2].claim_user("bob"), "bob has his own count");
        assert_eq!(limits.user_connections("alice"), 2);
        slots.remove(0);
        assert_eq!(limits.user_connections("alice"), 1);
        slots.clear();
        assert_eq!(limits.user_connections("alice"), 0);
        assert_eq!(limits.user_connections("bob"), 0);
    }

    #[test]
    fn bucket_allows_bursts_then_the_rate() {
        let start = Instant::now();
        let mut bucket = RateLimit::new(10, 3);
        bucket.last = start;
        assert!(bucket.allow(start));
        assert!(bucket.allow(start));
        assert!(bucket.allow(start));
        assert!(!bucket.allow(start), "burst used up");
        // 100 ms later one token (10/s) is back.
        let later = start + Duration::from_millis(100);
        assert!(bucket.allow(later));
        assert!(!bucket.allow(later));
        // Idle for long: refilled to the burst, not beyond.
        let much_later = later + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.allow(much_later));
        }
        assert!(!bucket.allow(much_later));
    }
}
