//! Checkpoints: how a partition's state is stored in the compacted state topic, where the
//! committed offset says it is, and when the next one is due.
//!
//! A snapshot record is keyed `<group>/<partition>` and holds the ticks offset the state
//! corresponds to (8 bytes, big-endian) followed by the core's state. Each committed ticks
//! offset carries, as its metadata, the [`SnapshotLocation`] of that partition's latest
//! snapshot, so a restore knows exactly which record to read.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use strikeflow_analytics::CoreSettings;

use crate::ProcessorSettings;

/// Where a snapshot is in the state topic: written into committed offset metadata as
/// `<partition>:<offset>` and parsed back on restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLocation {
    /// Partition of the state topic.
    pub partition: i32,
    /// Offset of the snapshot record there.
    pub offset: i64,
}

impl fmt::Display for SnapshotLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

/// Offset metadata that is not a [`SnapshotLocation`] (written by something else, or by
/// a processor from before snapshots).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("offset metadata {0:?} is not a snapshot location (<partition>:<offset>)")]
pub struct NotALocation(String);

impl FromStr for SnapshotLocation {
    type Err = NotALocation;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let parse = || {
            let (partition, offset) = text.split_once(':')?;
            Some(Self {
                partition: partition.parse().ok()?,
                offset: offset.parse().ok()?,
            })
        };
        parse().ok_or_else(|| NotALocation(text.to_owned()))
    }
}

/// A snapshot record: `next_offset` (the ticks offset the state corresponds to), then the
/// core's state.
pub(super) fn snapshot_record(next_offset: i64, state: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(8 + state.len());
    record.extend_from_slice(&next_offset.to_be_bytes());
    record.extend_from_slice(state);
    record
}

/// The parts of a [`snapshot_record`], or `None` when it is shorter than its header.
pub(super) fn split_snapshot(record: &[u8]) -> Option<(i64, &[u8])> {
    let (offset, state) = record.split_first_chunk::<8>()?;
    Some((i64::from_be_bytes(*offset), state))
}

/// Key of a partition's snapshot in the compacted state topic.
pub(super) fn state_key(group: &str, partition: i32) -> String {
    format!("{group}/{partition}")
}

/// What shapes a core's state: lateness, pricing and chain settings, indicators and
/// timeframes. Written into every snapshot; a snapshot with another one is refused, since
/// its state would not line up with this run's series.
pub(super) fn settings_fingerprint(core: &CoreSettings, settings: &ProcessorSettings) -> String {
    format!(
        "{core:?} indicators={:?} timeframes={:?}",
        settings.indicators, settings.timeframes
    )
}

/// When a partition's next snapshot is due: at its first commit, then once per interval
/// while it receives ticks, and for every partition at shutdown.
#[derive(Debug, Clone, Copy)]
pub(super) struct SnapshotSchedule {
    pub(super) interval: Duration,
}

impl SnapshotSchedule {
    /// Whether a partition last snapshotted at `last` (none yet: `None`) takes one in this
    /// transaction.
    pub(super) fn due(
        &self,
        touched: bool,
        last: Option<Instant>,
        now: Instant,
        final_commit: bool,
    ) -> bool {
        final_commit
            || (touched && last.is_none_or(|last| now.duration_since(last) >= self.interval))
    }
}

#[cfg(test)]
mod tests {
    use strikeflow_analytics::pricing::{Convention, Pricer};

    use super::*;

    #[test]
    fn fingerprint_changes_with_everything_that_shapes_state() {
        let config = ProcessorSettings::default();
        let settings = |lateness| CoreSettings::with_lateness(lateness);
        let base = settings_fingerprint(&settings(2_000_000), &config);
        assert_eq!(base, settings_fingerprint(&settings(2_000_000), &config));
        assert_ne!(base, settings_fingerprint(&settings(3_000_000), &config));
        let mut other = config.clone();
        other.timeframes = vec![1, 5];
        assert_ne!(base, settings_fingerprint(&settings(2_000_000), &other));
        let mut other = config.clone();
        other.indicators[0].params.insert("period".into(), 10.0);
        assert_ne!(base, settings_fingerprint(&settings(2_000_000), &other));
        let mut other = config.clone();
        other.indicators.truncate(1);
        assert_ne!(base, settings_fingerprint(&settings(2_000_000), &other));
        let mut nse = CoreSettings::with_lateness(2_000_000);
        nse.chain.pricer = Pricer::new(Convention::BlackScholesSpot { rate: 0.1 });
        assert_ne!(base, settings_fingerprint(&nse, &config));
    }

    #[test]
    fn snapshot_record_carries_its_offset() {
        let record = snapshot_record(1_234_567_890_123, b"state");
        assert_eq!(
            split_snapshot(&record),
            Some((1_234_567_890_123, &b"state"[..]))
        );
        assert_eq!(split_snapshot(&record[..7]), None, "shorter than an offset");
    }

    #[test]
    fn snapshot_location_parses_only_partition_and_offset() {
        let at = |partition, offset| Ok(SnapshotLocation { partition, offset });
        assert_eq!("0:4711".parse(), at(0, 4711));
        assert_eq!(at(3, 9).map(|l| l.to_string()), Ok("3:9".to_owned()));
        for bad in ["", "0", "x:1", "0:1:2"] {
            assert!(bad.parse::<SnapshotLocation>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn snapshots_are_due_first_then_per_interval_and_at_the_end() {
        let schedule = SnapshotSchedule {
            interval: Duration::from_secs(10),
        };
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(11);
        assert!(schedule.due(true, None, t0, false), "first commit");
        assert!(
            !schedule.due(true, Some(t0), t0, false),
            "within the interval"
        );
        assert!(
            schedule.due(true, Some(t0), later, false),
            "interval passed"
        );
        assert!(!schedule.due(false, Some(t0), later, false), "not touched");
        assert!(schedule.due(false, Some(t0), t0, true), "final commit");
    }
}
