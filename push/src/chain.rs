//! The option-chain channel, `chain.<UNDERLYING>.<EXPIRY>`: strike rows (strikes topic) and
//! chain summaries (chains topic) merged into one numbered stream per chain.
//!
//! The processor emits a chain's analytics at a cadence boundary `ts` as one summary plus
//! the rows of the options that ticked, all carrying that `ts`, in one Kafka transaction,
//! into the same partition of both topics (both are keyed by the chain). Push reads the two
//! topics with separate consumers, so their records reach it interleaved differently on
//! every node. To number the chain identically everywhere, the merge groups records by
//! `(chain, ts)` and releases a group as one message numbered `seq = ts` (microseconds;
//! `max(ts, previous + 1)` should a straggler arrive after its group left) once both sides
//! are complete:
//!
//! * the chains side when the group has its summary, or a later summary of the chain
//!   arrived, or the chains partition has been at its end for a whole merge tick;
//! * the strikes side when as many rows arrived as the summary's `STRIKE_ROWS_HEADER`
//!   counts (the processors set it; this is the usual case and costs no waiting), or a later
//!   row of the chain arrived, or the strikes partition has been at its end for a whole
//!   merge tick (summaries without the header).
//!
//! A released group is applied to the chain's book (latest row per strike and side, latest
//! summary); the message is the delta (`{"summary":…,"strikes":[…]}`, the rows that
//! changed), and the book's whole state is the snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Which topic a record or partition-end event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// The strikes topic (per-option rows).
    Strikes,
    /// The chains topic (per-chain summaries).
    Chains,
}

/// A row's place in the chain: strike (its bits order positive prices) and side.
pub(crate) type RowKey = (u64, bool);

/// The key of a strike row.
pub(crate) fn row_key(strike: f64, is_put: bool) -> RowKey {
    (strike.max(0.0).to_bits(), is_put)
}

#[derive(Default)]
struct Group {
    partition: i32,
    summary: Option<String>,
    rows: Vec<(RowKey, String)>,
    strikes_done: bool,
    chains_done: bool,
    /// Strike records of this boundary received so far.
    strike_records: u32,
    /// How many the summary said there are (`STRIKE_ROWS_HEADER`), once it arrived.
    expected_rows: Option<u32>,
    /// The merge tick during which the group was created.
    born: u64,
}

#[derive(Default)]
struct Book {
    summary: Option<String>,
    rows: BTreeMap<RowKey, String>,
    last_seq: u64,
}

/// One chain message ready for the hub.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Release {
    /// The chain channel.
    pub(crate) channel: Arc<str>,
    /// The partition of both topics the chain lives in.
    pub(crate) partition: i32,
    /// The message number.
    pub(crate) seq: u64,
    /// `{"summary":…,"strikes":[…]}` with the rows of this group.
    pub(crate) delta: String,
    /// The same shape with every row of the chain.
    pub(crate) state: String,
}

/// Groups strike rows and summaries per chain and boundary until both topics have
/// delivered them, then applies them to the chain's book.
#[derive(Default)]
pub(crate) struct ChainMerge {
    pending: HashMap<Arc<str>, BTreeMap<i64, Group>>,
    books: HashMap<Arc<str>, Book>,
    /// Partitions currently read to their end, per side, with the tick they reached it.
    at_end: HashMap<(Side, i32), u64>,
    tick: u64,
}

impl ChainMerge {
    /// A record of `side` for `channel` at boundary `ts`: a summary (chains side) or a
    /// strike row (strikes side, with its key).
    pub(crate) fn on_record(
        &mut self,
        side: Side,
        partition: i32,
        channel: &Arc<str>,
        ts: i64,
        row: Option<RowKey>,
        json: String,
    ) -> Vec<Release> {
        self.at_end.remove(&(side, partition));
        let groups = self.pending.entry(channel.clone()).or_default();
        // Records of one chain arrive in boundary order on each topic: earlier groups
        // are complete on this side.
        for (_, group) in groups.range_mut(..ts) {
            match side {
                Side::Strikes => group.strikes_done = true,
                Side::Chains => group.chains_done = true,
            }
        }
        let born = self.tick;
        let group = groups.entry(ts).or_insert_with(|| Group {
            partition,
            born,
            ..Group::default()
        });
        match (side, row) {
            (Side::Chains, _) => {
                group.summary = Some(json);
                group.chains_done = true;
            }
            (Side::Strikes, Some(key)) => {
                group.strike_records += 1;
                group.rows.push((key, json));
            }
            (Side::Strikes, None) => group.strike_records += 1,
        }
        if group
            .expected_rows
            .is_some_and(|n| group.strike_records >= n)
        {
            group.strikes_done = true;
        }
        let mut out = Vec::new();
        self.release(channel, &mut out);
        out
    }

    /// The summary of `channel` at `ts` says its boundary has `rows` strike rows: once that
    /// many arrived the strikes side is complete, without waiting for a later row or an idle
    /// partition. Call before [`ChainMerge::on_record`] with that summary.
    pub(crate) fn expect_rows(&mut self, partition: i32, channel: &Arc<str>, ts: i64, rows: u32) {
        let born = self.tick;
        let group = self
            .pending
            .entry(channel.clone())
            .or_default()
            .entry(ts)
            .or_insert_with(|| Group {
                partition,
                born,
                ..Group::default()
            });
        group.expected_rows = Some(rows);
    }

    /// `side`'s consumer read `partition` to its current end.
    pub(crate) fn on_end(&mut self, side: Side, partition: i32) {
        self.at_end.entry((side, partition)).or_insert(self.tick);
    }

    /// Called periodically: a side whose partition has been at its end since before a
    /// group was created and for a whole tick has nothing more for that group.
    pub(crate) fn on_tick(&mut self) -> Vec<Release> {
        self.tick += 1;
        let mut touched = HashSet::new();
        for (channel, groups) in &mut self.pending {
            for group in groups.values_mut() {
                for side in [Side::Strikes, Side::Chains] {
                    let idle = self
                        .at_end
                        .get(&(side, group.partition))
                        .is_some_and(|&since| since < self.tick && group.born < self.tick);
                    if idle {
                        match side {
                            Side::Strikes => group.strikes_done = true,
                            Side::Chains => group.chains_done = true,
                        }
                        touched.insert(channel.clone());
                    }
                }
            }
        }
        let mut out = Vec::new();
        for channel in touched {
            self.release(&channel, &mut out);
        }
        out
    }

    fn release(&mut self, channel: &Arc<str>, out: &mut Vec<Release>) {
        let Some(groups) = self.pending.get_mut(channel) else {
            return;
        };
        while let Some(entry) = groups.first_entry() {
            let group = entry.get();
            if !(group.strikes_done && group.chains_done) {
                break;
            }
            let ts = *entry.key();
            let group = entry.remove();
            let book = self.books.entry(channel.clone()).or_default();
            let seq = u64::try_from(ts).unwrap_or(0).max(book.last_seq + 1);
            book.last_seq = seq;
            if let Some(summary) = &group.summary {
                book.summary = Some(summary.clone());
            }
            for (key, row) in &group.rows {
                book.rows.insert(*key, row.clone());
            }
            let delta = render(
                group.summary.as_deref(),
                group.rows.iter().map(|(_, r)| r.as_str()),
            );
            let state = render(
                book.summary.as_deref(),
                book.rows.values().map(String::as_str),
            );
            out.push(Release {
                channel: channel.clone(),
                partition: group.partition,
                seq,
                delta,
                state,
            });
        }
        if groups.is_empty() {
            self.pending.remove(channel);
        }
    }
}

/// `{"summary":<json or null>,"strikes":[<rows>]}` from already-serialised parts.
fn render<'a>(summary: Option<&str>, rows: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from(r#"{"summary":"#);
    out.push_str(summary.unwrap_or("null"));
    out.push_str(r#","strikes":["#);
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(row);
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch() -> Arc<str> {
        Arc::from("chain.NIFTY.2026-12-29")
    }

    #[test]
    fn a_group_waits_for_both_topics_and_is_numbered_by_its_boundary() {
        let mut m = ChainMerge::default();
        let c = ch();
        // Summary at 10, then rows at 10: nothing yet (more rows may come).
        assert!(m
            .on_record(Side::Chains, 0, &c, 10, None, "{\"s\":10}".into())
            .is_empty());
        assert!(m
            .on_record(
                Side::Strikes,
                0,
                &c,
                10,
                Some(row_key(100.0, false)),
                "{\"r\":1}".into()
            )
            .is_empty());
        // A later row completes the strikes side of 10.
        let out = m.on_record(
            Side::Strikes,
            0,
            &c,
            20,
            Some(row_key(100.0, true)),
            "{\"r\":2}".into(),
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seq, 10);
        assert_eq!(out[0].delta, r#"{"summary":{"s":10},"strikes":[{"r":1}]}"#);
        // Group 20 has no summary yet: a partition end for a whole tick completes it.
        m.on_end(Side::Chains, 0);
        assert!(
            m.on_tick().is_empty(),
            "the strikes side of 20 is still open"
        );
        m.on_end(Side::Strikes, 0);
        let out = m.on_tick();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seq, 20);
        assert_eq!(out[0].delta, r#"{"summary":null,"strikes":[{"r":2}]}"#);
        assert_eq!(
            out[0].state,
            r#"{"summary":{"s":10},"strikes":[{"r":1},{"r":2}]}"#
        );
    }

    #[test]
    fn a_counted_boundary_is_released_with_its_last_row() {
        let row = |strike: f64| Some(row_key(strike, false));
        // Summary first, saying two rows: released by the second row, no later record.
        let mut m = ChainMerge::default();
        let c = ch();
        m.expect_rows(0, &c, 10, 2);
        assert!(m
            .on_record(Side::Chains, 0, &c, 10, None, "{\"s\":10}".into())
            .is_empty());
        assert!(m
            .on_record(Side::Strikes, 0, &c, 10, row(1.0), "{\"r\":1}".into())
            .is_empty());
        let out = m.on_record(Side::Strikes, 0, &c, 10, row(2.0), "{\"r\":2}".into());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].seq, 10);
        assert_eq!(
            out[0].delta,
            r#"{"summary":{"s":10},"strikes":[{"r":1},{"r":2}]}"#
        );
        // Rows first, then the summary counting them: released by the summary.
        let mut m = ChainMerge::default();
        assert!(m
            .on_record(Side::Strikes, 0, &c, 10, row(1.0), "{\"r\":1}".into())
            .is_empty());
        m.expect_rows(0, &c, 10, 1);
        let out = m.on_record(Side::Chains, 0, &c, 10, None, "{\"s\":10}".into());
        assert_eq!(out.len(), 1);
        // A boundary with no rows at all goes with its summary.
        let mut m = ChainMerge::default();
        m.expect_rows(0, &c, 10, 0);
        assert_eq!(
            m.on_record(Side::Chains, 0, &c, 10, None, "{}".into())
                .len(),
            1
        );
    }

    #[test]
    fn the_order_records_arrive_in_does_not_change_the_messages() {
        let records = [
            (Side::Chains, 10, None, "s10"),
            (Side::Strikes, 10, Some(row_key(1.0, false)), "a10"),
            (Side::Strikes, 10, Some(row_key(2.0, false)), "b10"),
            (Side::Chains, 20, None, "s20"),
            (Side::Strikes, 20, Some(row_key(1.0, false)), "a20"),
            (Side::Chains, 30, None, "s30"),
            (Side::Strikes, 30, Some(row_key(2.0, true)), "c30"),
        ];
        let run = |order: &[usize]| {
            let mut m = ChainMerge::default();
            let c = ch();
            let mut out = Vec::new();
            for &i in order {
                let (side, ts, key, text) = records[i];
                out.extend(m.on_record(side, 0, &c, ts, key, format!("\"{text}\"")));
            }
            out.into_iter()
                .map(|r| (r.seq, r.delta))
                .collect::<Vec<_>>()
        };
        // Topic order is kept within each topic; the interleaving differs.
        let a = run(&[0, 1, 2, 3, 4, 5, 6]);
        let b = run(&[1, 2, 4, 6, 0, 3, 5]);
        let c = run(&[0, 3, 5, 1, 2, 4, 6]);
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.len(), 2, "{a:?}");
    }
}
