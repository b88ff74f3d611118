//! Per-client rate limits: a token bucket per token subject, or per peer address for a
//! caller without a valid token (`api.requests_per_sec` sustained, `api.requests_burst` at
//! once). Buckets live in this process: each API node limits on its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Whom a bucket belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ClientKey {
    /// A verified token's `sub`.
    Subject(String),
    /// The peer address of a caller without a valid token.
    Address(IpAddr),
}

impl ClientKey {
    /// The label of `api_rate_limited_total`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ClientKey::Subject(_) => "subject",
            ClientKey::Address(_) => "address",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets beyond which full (idle) ones are dropped before adding another.
const PRUNE_AT: usize = 4_096;

/// Every client's bucket.
#[derive(Debug)]
pub(crate) struct Limiter {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<ClientKey, Bucket>,
    prune_at: usize,
}

impl Limiter {
    /// `rate` requests per second sustained, `burst` at once (both at least 1).
    pub(crate) fn new(rate: u32, burst: u32) -> Limiter {
        Limiter {
            rate: f64::from(rate.max(1)),
            burst: f64::from(burst.max(1)),
            state: Mutex::new(State {
                buckets: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        }
    }

    /// Takes one request from `key`'s bucket now, or says how long until one is free.
    pub(crate) fn check(&self, key: &ClientKey) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &ClientKey, now: Instant) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.buckets.contains_key(key) && state.buckets.len() >= state.prune_at {
            let (rate, burst) = (self.rate, self.burst);
            state
                .buckets
                .retain(|_, b| refilled(b, now, rate, burst) < burst);
            state.prune_at = PRUNE_AT.max(state.buckets.len() * 2);
        }
        let bucket = state.buckets.entry(key.clone()).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = refilled(bucket, now, self.rate, self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// `Retry-After` for a wait: whole seconds, at least 1.
    pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
        (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
    }
}

fn refilled(bucket: &Bucket, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
    (bucket.tokens + elapsed * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = Limiter::new(2, 3);
        let alice = ClientKey::Subject("alice".into());
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(&alice, t0).is_ok());
        }
        let wait = limiter.check_at(&alice, t0).expect_err("empty");
        assert_eq!(wait, Duration::from_millis(500));
        // Another client has its own bucket.
        let peer = ClientKey::Address(IpAddr::from([127, 0, 0, 1]));
        assert!(limiter.check_at(&peer, t0).is_ok());
        let later = t0 + Duration::from_millis(500);
        assert!(limiter.check_at(&alice, later).is_ok());
        assert!(limiter.check_at(&alice, later).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(Limiter::retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(Limiter::retry_after_secs(Duration::ZERO), 1);
        assert_eq!(Limiter::retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(Limiter::retry_after_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn idle_buckets_are_dropped() {
        let limiter = Limiter::new(1_000, 1);
        let t0 = Instant::now();
        for i in 0..PRUNE_AT {
            let key = ClientKey::Subject(i.to_string());
            assert!(limiter.check_at(&key, t0).is_ok());
        }
        let later = t0 + Duration::from_secs(1);
        assert!(limiter
            .check_at(&ClientKey::Subject("new".into()), later)
            .is_ok());
        let state = limiter.state.lock().expect("lock");
        assert_eq!(state.buckets.len(), 1, "the refilled buckets were dropped");
    }
}
