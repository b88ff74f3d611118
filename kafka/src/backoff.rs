//! How long a stage waits before reconnecting to a service it lost.
//!
//! Shared by every reconnect loop (the Kite ticker client, the sink's PostgreSQL session) so
//! they all back off the same way; written here rather than pulled from a crate because it
//! is one function and the loops own their own attempt counting and cancellation.

use std::time::Duration;

use rand::Rng;

/// The first reconnect delay (before jitter); it doubles per consecutive failure.
const BASE_BACKOFF: Duration = Duration::from_millis(500);

/// Reconnect delay after `failures` consecutive failures (>= 1): exponential from
/// [`BASE_BACKOFF`], capped at `max`, with "equal jitter" (half fixed and half random), so it
/// never collapses to zero yet clients do not reconnect in lockstep.
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let exponential = BASE_BACKOFF.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let cap = exponential.min(max);
    let half = cap / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_stays_under_the_cap() {
        let max = Duration::from_secs(30);
        for failures in 1..40 {
            let cap = BASE_BACKOFF
                .saturating_mul(1 << (failures - 1).min(20))
                .min(max);
            for _ in 0..50 {
                let d = backoff(failures, max);
                assert!(
                    d >= cap / 2 && d <= cap,
                    "{failures}: {d:?} not in [{:?}, {cap:?}]",
                    cap / 2
                );
            }
        }
        assert_eq!(backoff(3, Duration::ZERO), Duration::ZERO);
    }
}
