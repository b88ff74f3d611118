//! Topic names and layouts: the contract between producers and consumers.

use serde::{Deserialize, Serialize};

/// The names of every topic, behind an optional prefix so a test run (or a second deployment on
/// the same cluster) can isolate itself: `Topics::new("t42.")` gives `t42.ticks.v1`, etc. The
/// prefix is used verbatim, so include the separator.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topics {
    /// Prepended verbatim to every topic name (empty in production).
    #[serde(default)]
    pub prefix: String,
}

/// One topic to create, with the layout the design depends on (partition count decides the
/// processing parallelism; the instrument master is compacted to keep the latest row per token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Full topic name, prefix included.
    pub name: String,
    /// Number of partitions.
    pub partitions: i32,
    /// `cleanup.policy=compact` instead of delete.
    pub compacted: bool,
    /// `max.message.bytes` when a topic's records may exceed the broker's 1 MiB default.
    pub max_message_bytes: Option<u32>,
}

/// Header set on the extra copies of a spot-index tick that the ingest publisher writes to
/// every ticks partition (value `"1"`).
///
/// Every option chain needs its underlying's spot, but the spot is keyed by the underlying
/// alone and so lives in one partition. Copying each spot tick into every partition, in
/// publish order, lets a processor compute a chain from its own partition alone, so its
/// outputs depend only on that partition's log (the basis of exactly-once restarts). The
/// copy without this header is the primary: only it is stored, barred and pushed.
pub const REFERENCE_COPY_HEADER: &str = "strikeflow.reference-copy";

/// Header set on an event-time marker (value `"1"`, payload a [`crate::Watermark`]) that a
/// source writes into every ticks partition, e.g. at the session close.
///
/// A partition's bars close on its own event time, so without a marker the session's last
/// bar would wait for the next session's first tick. The marker travels in each partition's
/// log like any record, so a processor restored from a snapshot replays it exactly as the
/// original run applied it. It is not a tick: sink and push skip it (see
/// `strikeflow_kafka::is_control`), and its payload's fingerprint makes a reader that
/// ignores headers and decodes it as a tick fail loudly instead of misreading it.
pub const WATERMARK_HEADER: &str = "strikeflow.watermark";

/// Header on a chain summary (`chains.v1`) giving, as a decimal string, how many strike
/// rows (`strikes.v1`) the processor emitted for the same chain and boundary `ts`, in the
/// same transaction.
///
/// The rows and the summary travel in two topics, so a reader merging them cannot tell from
/// the records alone when a boundary's rows are all in; with the count it can release the
/// boundary the moment the last row arrives instead of waiting for a later boundary or an
/// idle partition (push's chain channel, `push/src/chain.rs`). Optional: without it a
/// reader falls back to waiting.
pub const STRIKE_ROWS_HEADER: &str = "strikeflow.strike-rows";

impl Topics {
    /// Partitions of the ticks topic: the unit of parallelism of the processors.
    pub const TICKS_PARTITIONS: i32 = 6;
    /// Partitions of the bars topic.
    pub const BARS_PARTITIONS: i32 = 6;
    /// Partitions of each analytics topic (strikes, chains, moneyness, indicators): the same
    /// as ticks, since they are keyed by the same chain key.
    pub const ANALYTICS_PARTITIONS: i32 = 6;

    /// Largest processor state snapshot record accepted (64 MiB).
    pub const STATE_MAX_MESSAGE_BYTES: u32 = 64 << 20;

    /// Topic names under `prefix` (used verbatim, e.g. `"test-1."`).
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The instrument master (`strikeflow.Instrument`, compacted, keyed by instrument token).
    pub fn instruments(&self) -> String {
        format!("{}instruments.v1", self.prefix)
    }

    /// Normalised ticks (`strikeflow.Tick`, keyed by [`crate::ChainKey`]).
    pub fn ticks(&self) -> String {
        format!("{}ticks.v1", self.prefix)
    }

    /// One-minute bars (`strikeflow.Bar`).
    pub fn bars(&self) -> String {
        format!("{}bars.v1", self.prefix)
    }

    /// Per-option analytics (`strikeflow.StrikeAnalytics`, keyed by [`crate::ChainKey`]).
    pub fn strikes(&self) -> String {
        format!("{}strikes.v1", self.prefix)
    }

    /// Per-chain analytics (`strikeflow.ChainAnalytics`, keyed by [`crate::ChainKey`]).
    pub fn chains(&self) -> String {
        format!("{}chains.v1", self.prefix)
    }

    /// Moneyness series points (`strikeflow.MoneynessPoint`, keyed by [`crate::ChainKey`]).
    pub fn moneyness(&self) -> String {
        format!("{}moneyness.v1", self.prefix)
    }

    /// Streaming technical indicators over bars.
    pub fn indicators(&self) -> String {
        format!("{}indicators.v1", self.prefix)
    }

    /// Processor state snapshots (compacted, keyed by `<group>/<ticks partition>`), written in
    /// the same Kafka transaction as the outputs and input offsets they correspond to.
    pub fn processor_state(&self) -> String {
        format!("{}processor-state.v1", self.prefix)
    }

    /// Ticks that arrived later than the allowed lateness: counted and routed here, never
    /// silently dropped.
    pub fn late(&self) -> String {
        format!("{}ticks.late.v1", self.prefix)
    }

    /// Dead-letter topic of `source_topic` (a full name, prefix included): `.dlq` goes before
    /// the version suffix, `"x.ticks.v1"` -> `"x.ticks.dlq.v1"`; a name without a `.vN` suffix
    /// just gets `.dlq` appended.
    pub fn dead_letter(&self, source_topic: &str) -> String {
        match source_topic.rsplit_once('.') {
            Some((base, version)) if is_version(version) => format!("{base}.dlq.{version}"),
            _ => format!("{source_topic}.dlq"),
        }
    }

    /// Every topic the pipeline needs, with its layout, for the admin step that creates them:
    /// instruments (1 partition, compacted), ticks (6), bars (6), then the dead-letter topics of
    /// ticks, bars and instruments (1 partition each), then the analytics topics strikes,
    /// chains, moneyness and indicators (6 each), the late-ticks topic (1) and the compacted
    /// processor-state topic (1).
    pub fn all(&self) -> Vec<TopicSpec> {
        let spec = |name: String, partitions: i32, compacted: bool| TopicSpec {
            name,
            partitions,
            compacted,
            max_message_bytes: None,
        };
        vec![
            spec(self.instruments(), 1, true),
            spec(self.ticks(), Self::TICKS_PARTITIONS, false),
            spec(self.bars(), Self::BARS_PARTITIONS, false),
            spec(self.dead_letter(&self.ticks()), 1, false),
            spec(self.dead_letter(&self.bars()), 1, false),
            spec(self.dead_letter(&self.instruments()), 1, false),
            spec(self.strikes(), Self::ANALYTICS_PARTITIONS, false),
            spec(self.chains(), Self::ANALYTICS_PARTITIONS, false),
            spec(self.moneyness(), Self::ANALYTICS_PARTITIONS, false),
            spec(self.indicators(), Self::ANALYTICS_PARTITIONS, false),
            spec(self.late(), 1, false),
            // The sink stores the analytics topics too, and dead-letters what it cannot
            // store (an undecodable record, a value PostgreSQL refuses).
            spec(self.dead_letter(&self.strikes()), 1, false),
            spec(self.dead_letter(&self.chains()), 1, false),
            spec(self.dead_letter(&self.moneyness()), 1, false),
            spec(self.dead_letter(&self.indicators()), 1, false),
            spec(self.dead_letter(&self.late()), 1, false),
            TopicSpec {
                // A snapshot holds one partition's open bars, chain and indicator state: more
                // than the 1 MiB default with full NIFTY and BANKNIFTY chains.
                max_message_bytes: Some(Self::STATE_MAX_MESSAGE_BYTES),
                ..spec(self.processor_state(), 1, true)
            },
        ]
    }
}

/// `v` followed by one or more ASCII digits.
fn is_version(s: &str) -> bool {
    s.strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let t = Topics::default();
        assert_eq!(t.instruments(), "instruments.v1");
        assert_eq!(t.ticks(), "ticks.v1");
        assert_eq!(t.bars(), "bars.v1");
        assert_eq!(t.strikes(), "strikes.v1");
        assert_eq!(t.chains(), "chains.v1");
        assert_eq!(t.moneyness(), "moneyness.v1");
        assert_eq!(t.indicators(), "indicators.v1");
        assert_eq!(t.late(), "ticks.late.v1");
        let p = Topics::new("x.");
        assert_eq!(p.ticks(), "x.ticks.v1");
        assert_eq!(p.dead_letter(&p.ticks()), "x.ticks.dlq.v1");
        assert_eq!(t.dead_letter("ticks.v1"), "ticks.dlq.v1");
        assert_eq!(t.dead_letter("bars.v12"), "bars.dlq.v12");
        assert_eq!(t.dead_letter("raw"), "raw.dlq");
        assert_eq!(t.dead_letter("raw.vx"), "raw.vx.dlq");
    }

    #[test]
    fn all_topics() {
        let specs = Topics::new("p-").all();
        let got: Vec<(&str, i32, bool)> = specs
            .iter()
            .map(|s| (s.name.as_str(), s.partitions, s.compacted))
            .collect();
        assert_eq!(
            got,
            vec![
                ("p-instruments.v1", 1, true),
                ("p-ticks.v1", 6, false),
                ("p-bars.v1", 6, false),
                ("p-ticks.dlq.v1", 1, false),
                ("p-bars.dlq.v1", 1, false),
                ("p-instruments.dlq.v1", 1, false),
                ("p-strikes.v1", 6, false),
                ("p-chains.v1", 6, false),
                ("p-moneyness.v1", 6, false),
                ("p-indicators.v1", 6, false),
                ("p-ticks.late.v1", 1, false),
                ("p-strikes.dlq.v1", 1, false),
                ("p-chains.dlq.v1", 1, false),
                ("p-moneyness.dlq.v1", 1, false),
                ("p-indicators.dlq.v1", 1, false),
                ("p-ticks.late.dlq.v1", 1, false),
                ("p-processor-state.v1", 1, true),
            ]
        );
        let state = specs.iter().find(|s| s.name == "p-processor-state.v1");
        assert_eq!(
            state.and_then(|s| s.max_message_bytes),
            Some(Topics::STATE_MAX_MESSAGE_BYTES)
        );
    }

    #[test]
    fn prefix_defaults_when_missing_in_config() {
        let t: Topics = serde_json::from_str("{}").expect("deserialize");
        assert_eq!(t, Topics::default());
    }
}
