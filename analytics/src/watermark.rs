//! The event-time watermark of one Kafka partition.
//!
//! A window may only close once no more on-time data can arrive for it. Each ticks partition
//! is processed by its own core, and a partition is ordered by itself, so its watermark is
//! its own newest event time minus the allowed lateness. Nothing here looks at other
//! partitions: a quiet partition cannot stall a busy one, and the watermark (hence every
//! output) depends only on the partition's own log, which is what lets a restarted
//! processor reproduce exactly what an uninterrupted one would have.

use serde::{Deserialize, Serialize};

/// Event time of one partition and the watermark derived from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionWatermark {
    allowed_lateness_micros: i64,
    /// Newest event time seen; `None` until the partition delivered something.
    max_event_ts: Option<i64>,
}

impl PartitionWatermark {
    /// A watermark that lets events arrive up to `allowed_lateness_micros` behind the newest
    /// event of the partition before their window closes.
    pub fn new(allowed_lateness_micros: i64) -> Self {
        Self {
            allowed_lateness_micros: allowed_lateness_micros.max(0),
            max_event_ts: None,
        }
    }

    /// Records an event's time; an event older than the newest changes nothing.
    pub fn observe(&mut self, event_ts: i64) {
        self.max_event_ts = Some(self.max_event_ts.map_or(event_ts, |m| m.max(event_ts)));
    }

    /// Raises the watermark to at least `watermark` (an event-time marker: the source
    /// promises no older event follows), never lowering it.
    ///
    /// Stored as the newest event time it implies (`watermark` plus the lateness), so the
    /// state keeps its shape (snapshots of earlier builds stay readable) and the watermark
    /// stays one formula: a marker at `T` behaves like an event at `T + lateness`. Returns
    /// whether the watermark moved.
    pub fn advance_to(&mut self, watermark: i64) -> bool {
        let implied = watermark.saturating_add(self.allowed_lateness_micros);
        if self.max_event_ts.is_some_and(|m| m >= implied) {
            return false;
        }
        self.max_event_ts = Some(implied);
        true
    }

    /// The watermark: every window ending at or before it is complete. Never moves back,
    /// because the newest event time never does.
    pub fn current(&self) -> Option<i64> {
        self.max_event_ts
            .map(|m| m.saturating_sub(self.allowed_lateness_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_event_minus_lateness() {
        let mut w = PartitionWatermark::new(5);
        w.observe(100);
        assert_eq!(w.current(), Some(95));
        w.observe(200);
        assert_eq!(w.current(), Some(195));
    }

    #[test]
    fn out_of_order_event_never_moves_it_back() {
        let mut w = PartitionWatermark::new(10);
        w.observe(500);
        w.observe(320);
        assert_eq!(w.current(), Some(490));
    }

    #[test]
    fn advance_to_raises_to_exactly_the_marker_and_never_lowers() {
        let mut w = PartitionWatermark::new(5);
        assert!(
            w.advance_to(100),
            "an empty partition gets the marker's time"
        );
        assert_eq!(w.current(), Some(100));
        w.observe(103);
        assert_eq!(
            w.current(),
            Some(100),
            "an event within the lateness adds nothing"
        );
        assert!(!w.advance_to(100), "the same marker again is a no-op");
        assert!(!w.advance_to(50), "an older marker never moves it back");
        assert_eq!(w.current(), Some(100));
        w.observe(300);
        assert!(!w.advance_to(200));
        assert_eq!(w.current(), Some(295));
    }

    #[test]
    fn nothing_seen_means_no_watermark() {
        let w = PartitionWatermark::new(0);
        assert_eq!(w.current(), None);
    }

    #[test]
    fn negative_lateness_counts_as_zero() {
        let mut w = PartitionWatermark::new(-7);
        w.observe(42);
        assert_eq!(w.current(), Some(42));
    }
}
