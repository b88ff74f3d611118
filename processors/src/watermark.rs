//! Event-time watermarks per Kafka partition.
//!
//! A window may only close once no more on-time data can arrive for it. Each partition is
//! ordered by itself, so each keeps its own clock; the operator's watermark is the slowest
//! active partition's clock minus the allowed lateness. A partition that went quiet is
//! marked idle by the I/O shell (which owns the wall clock) so it cannot stall everyone.

use std::collections::HashMap;

/// Tracks per-partition event time and derives one monotonic watermark from it.
#[derive(Debug, Clone)]
pub struct Watermarks {
    allowed_lateness_micros: i64,
    partitions: HashMap<i32, PartitionClock>,
    /// The watermark already handed out; never moves backwards, so a window closed once
    /// stays closed even if an idle partition wakes up behind it.
    current: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// `None` until the partition delivers: an assigned partition that has not spoken yet
    /// may still hold old data, so it holds the watermark back (until it is marked idle).
    max_event_ts: Option<i64>,
    idle: bool,
}

impl Watermarks {
    /// A tracker that lets events arrive up to `allowed_lateness_micros` behind the newest
    /// event of their partition before their window closes.
    pub fn new(allowed_lateness_micros: i64) -> Self {
        Self {
            allowed_lateness_micros: allowed_lateness_micros.max(0),
            partitions: HashMap::new(),
            current: None,
        }
    }

    /// Registers a partition this instance now owns; until it delivers or is marked idle,
    /// no window can close past what it might still hold.
    pub fn assign(&mut self, partition: i32) {
        self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_ts: None,
            idle: false,
        });
    }

    /// Records an event's time on its partition (and wakes the partition if it was idle).
    pub fn observe(&mut self, partition: i32, event_ts: i64) {
        let clock = self.partitions.entry(partition).or_insert(PartitionClock {
            max_event_ts: None,
            idle: false,
        });
        clock.max_event_ts = Some(clock.max_event_ts.map_or(event_ts, |m| m.max(event_ts)));
        clock.idle = false;
    }

    /// Excludes a quiet partition from the minimum until it receives data again.
    pub fn mark_idle(&mut self, partition: i32) {
        if let Some(clock) = self.partitions.get_mut(&partition) {
            clock.idle = true;
        }
    }

    /// Forgets a partition this instance no longer owns (after a rebalance).
    pub fn remove(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Recomputes and returns the watermark: the minimum clock over active partitions, or,
    /// when every partition is idle, the maximum (the stream has drained, so everything
    /// seen so far is complete up to the lateness bound).
    pub fn advance(&mut self) -> Option<i64> {
        let mut active = self.partitions.values().filter(|c| !c.idle).peekable();
        let clock = if active.peek().is_some() {
            // An active partition without data yet yields None here and holds everything.
            active.map(|c| c.max_event_ts).min().flatten()
        } else {
            self.partitions
                .values()
                .filter_map(|c| c.max_event_ts)
                .max()
        };
        if let Some(clock) = clock {
            let candidate = clock.saturating_sub(self.allowed_lateness_micros);
            self.current = Some(self.current.map_or(candidate, |c| c.max(candidate)));
        }
        self.current
    }

    /// The watermark as last computed by [`Watermarks::advance`].
    pub fn current(&self) -> Option<i64> {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slowest_active_partition_holds_the_watermark() {
        let mut w = Watermarks::new(5);
        w.observe(0, 100);
        w.observe(1, 50);
        assert_eq!(w.advance(), Some(45));
        w.observe(1, 200);
        assert_eq!(w.advance(), Some(95));
    }

    #[test]
    fn idle_partition_does_not_stall() {
        let mut w = Watermarks::new(0);
        w.observe(0, 1_000);
        w.observe(1, 10);
        assert_eq!(w.advance(), Some(10));
        w.mark_idle(1);
        assert_eq!(w.advance(), Some(1_000));
    }

    #[test]
    fn all_idle_uses_the_newest_clock_and_never_regresses() {
        let mut w = Watermarks::new(10);
        w.observe(0, 500);
        w.observe(1, 300);
        w.mark_idle(0);
        w.mark_idle(1);
        assert_eq!(w.advance(), Some(490));
        // Partition 1 wakes up behind the watermark: it must not pull it back.
        w.observe(1, 320);
        assert_eq!(w.advance(), Some(490));
    }

    #[test]
    fn assigned_partition_without_data_holds_until_idle() {
        let mut w = Watermarks::new(0);
        w.assign(1);
        w.observe(0, 1_000);
        assert_eq!(
            w.advance(),
            None,
            "partition 1 may still deliver older events"
        );
        w.mark_idle(1);
        assert_eq!(w.advance(), Some(1_000));
        w.observe(1, 2_000);
        w.observe(0, 3_000);
        assert_eq!(w.advance(), Some(2_000));
    }

    #[test]
    fn nothing_seen_means_no_watermark() {
        let mut w = Watermarks::new(0);
        assert_eq!(w.advance(), None);
    }
}
