//! The tables the sink fills from the pipeline's outputs: bars, the processors' analytics,
//! ticks and late ticks, and the instrument history (`migrations/0001_core_tables.sql`,
//! `migrations/0003_stored_analytics.sql`): their columns in COPY order, and how one batch
//! of each is written.
//!
//! Every table is filled with binary COPY (encoded by [`crate::copy`]), the fastest way into
//! PostgreSQL. Ticks and late ticks have no natural key and are copied straight in. Tables
//! with a natural key are upserted, because a record can legitimately come again with its
//! key (see the migration) and COPY itself cannot resolve conflicts:
//!
//! * first, for tables whose keys are nearly always new ([`Upsert::direct_first`]), COPY
//!   straight into the table inside a savepoint. It stores each row once, with COPY's
//!   multi-row inserts; a row whose key is already stored makes PostgreSQL refuse the COPY
//!   (unique violation, logged by the server as an ERROR), the savepoint is rolled back, and
//!   the table's next [`SKIP_AFTER_REFUSAL`] batches skip this step;
//! * otherwise, and then, COPY into a session temp table and one `INSERT … SELECT … ON
//!   CONFLICT DO UPDATE`, which writes every row twice and inserts them one at a time.
//!
//! Either way the table ends with the latest value per key, once; the batch holds one
//! version per key (the latest), so the direct COPY cannot collide with itself. A concurrent
//! writer of the same key (another sink on the same topic) makes the direct COPY wait for
//! it and then refuse, like the merge would wait and then update.
//!
//! Measured with `bench sink` on 400,000 new strike rows (docs/benchmarks.md): PostgreSQL
//! spent 3.1–3.4 s of CPU on the direct COPY, 3.4–4.5 s on stage + merge, and 6.0–6.3 s on
//! `INSERT … SELECT … FROM unnest($1, …, $25) ON CONFLICT` (arrays as parameters, no stage).

use std::sync::atomic::{AtomicU32, Ordering};

use strikeflow_schemas::{
    date_from_days, Bar, BuildUp, ChainAnalytics, IndicatorPoint, Instrument, InstrumentType,
    MoneynessPoint, NoIvReason, OptionSide, ReferenceKind, StrikeAnalytics, Tick,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Error, Transaction};

use crate::copy::{copy_rows, Column, Row};
use crate::Batch;

/// A table the sink writes: its columns in COPY order and, for upserts, the conflict.
struct Table {
    name: &'static str,
    columns: &'static [Column],
    upsert: Option<Upsert>,
}

/// How rows are upserted into a table.
struct Upsert {
    /// The `ON CONFLICT` target: the table's primary key.
    conflict: &'static str,
    /// Copied columns an update leaves alone (those the key is made of).
    fixed: &'static [&'static str],
    /// Extra assignments when a row changed (e.g. `updated_at = now()`), or empty.
    touch: &'static str,
    /// Try a plain COPY into the table first: worth it when a batch's keys are nearly always
    /// new (analytics and bars, re-emitted only when a processor replays), since a batch
    /// that collides costs a refused COPY on top of the merge.
    direct_first: bool,
    /// Batches still to merge without trying the direct COPY, after one was refused for a
    /// stored key (see [`SKIP_AFTER_REFUSAL`]). Process-wide: it only chooses between two
    /// correct paths.
    skip_direct: AtomicU32,
}

impl Upsert {
    /// Whether this batch tries the direct COPY (counting down the batches to skip).
    fn direct_turn(&self) -> bool {
        self.direct_first
            && self
                .skip_direct
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_err()
    }
}

/// The savepoint around a direct COPY into an upserted table.
const DIRECT: &str = "sink_direct_copy";

/// How many batches of a table go straight to the merge after its direct COPY was refused
/// for a stored key. Keys come again in runs (a processor replaying, a session reprocessed),
/// and each refused COPY costs encoding and sending its batch for nothing and puts an ERROR
/// (`duplicate key value violates unique constraint`) in the server's log; skipping the
/// next 64 bounds both to one batch in 65 during a run, and a live stream that merely saw a
/// processor restart goes back to the direct COPY after 64 batches (seconds at the default
/// batch wait).
const SKIP_AFTER_REFUSAL: u32 = 64;

impl Table {
    fn stage(&self) -> String {
        format!("{}_stage", self.name)
    }

    fn column_list(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(name, _)| *name).collect();
        names.join(", ")
    }

    /// The session temp table rows are copied into before the upsert. Built from the copied
    /// columns only (`AS SELECT … WITH NO DATA`), so generated and defaulted columns of the
    /// target, and its constraints, stay out of the way.
    fn create_stage_sql(&self) -> Option<String> {
        self.upsert.as_ref()?;
        Some(format!(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA",
            self.stage(),
            self.column_list(),
            self.name
        ))
    }

    /// The binary COPY of the table's columns into `into` (the table or its stage).
    fn copy_sql(&self, into: &str) -> String {
        format!(
            "COPY {into} ({}) FROM STDIN (FORMAT binary)",
            self.column_list()
        )
    }

    /// `INSERT … SELECT … ON CONFLICT DO UPDATE`, updating a row only when a value differs,
    /// so a replayed identical record leaves no dead tuple behind.
    fn merge_sql(&self, upsert: &Upsert) -> String {
        let columns = self.column_list();
        let updated: Vec<&str> = self
            .columns
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| !upsert.fixed.contains(name))
            .collect();
        let mut set: Vec<String> = updated
            .iter()
            .map(|c| format!("{c} = EXCLUDED.{c}"))
            .collect();
        if !upsert.touch.is_empty() {
            set.push(upsert.touch.to_owned());
        }
        let old: Vec<String> = updated.iter().map(|c| format!("t.{c}")).collect();
        let new: Vec<String> = updated.iter().map(|c| format!("EXCLUDED.{c}")).collect();
        format!(
            "INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {stage} \
             ON CONFLICT ({conflict}) DO UPDATE SET {set} \
             WHERE ({old}) IS DISTINCT FROM ({new})",
            table = self.name,
            stage = self.stage(),
            conflict = upsert.conflict,
            set = set.join(", "),
            old = old.join(", "),
            new = new.join(", "),
        )
    }

    /// Writes `items` (one row each, by `row`) inside `tx`: plain COPY, or an upsert as the
    /// module describes. Nothing is sent for no items.
    async fn write<I>(
        &self,
        tx: &Transaction<'_>,
        items: I,
        row: impl Fn(&mut Row<'_>, I::Item),
    ) -> Result<(), Error>
    where
        I: IntoIterator + Clone,
    {
        if items.clone().into_iter().next().is_none() {
            return Ok(());
        }
        let Some(upsert) = &self.upsert else {
            copy_rows(tx, &self.copy_sql(self.name), self.columns, items, row).await?;
            return Ok(());
        };
        if upsert.direct_turn() {
            tx.batch_execute(&format!("SAVEPOINT {DIRECT}")).await?;
            let direct = copy_rows(
                tx,
                &self.copy_sql(self.name),
                self.columns,
                items.clone(),
                &row,
            )
            .await;
            match direct {
                Ok(_) => {
                    return tx
                        .batch_execute(&format!("RELEASE SAVEPOINT {DIRECT}"))
                        .await
                }
                // A key is stored already: merge instead. Any other refusal is the rows'
                // own (a CHECK, a NUL byte) and the merge would meet it too.
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    upsert
                        .skip_direct
                        .store(SKIP_AFTER_REFUSAL, Ordering::Relaxed);
                    tx.batch_execute(&format!(
                        "ROLLBACK TO SAVEPOINT {DIRECT}; RELEASE SAVEPOINT {DIRECT}"
                    ))
                    .await?;
                }
                Err(e) => return Err(e),
            }
        }
        copy_rows(tx, &self.copy_sql(&self.stage()), self.columns, items, row).await?;
        tx.batch_execute(&self.merge_sql(upsert)).await
    }
}

/// One-minute bars (`migrations/0001_core_tables.sql`); a processor that replays after a
/// crash re-emits them, so they are upserted.
static BARS: Table = Table {
    name: "bars_1m",
    columns: &[
        ("instrument_token", Type::INT8),
        ("window_start", Type::TIMESTAMPTZ),
        ("window_end", Type::TIMESTAMPTZ),
        ("open", Type::FLOAT8),
        ("high", Type::FLOAT8),
        ("low", Type::FLOAT8),
        ("close", Type::FLOAT8),
        ("volume", Type::INT8),
        ("oi", Type::INT8),
        ("tick_count", Type::INT4),
    ],
    upsert: Some(Upsert {
        conflict: "instrument_token, window_start",
        fixed: &["instrument_token", "window_start"],
        touch: "",
        direct_first: true,
        skip_direct: AtomicU32::new(0),
    }),
};

static STRIKES: Table = Table {
    name: "strike_analytics",
    columns: &[
        ("ts", Type::TIMESTAMPTZ),
        ("instrument_token", Type::INT8),
        ("tradingsymbol", Type::TEXT),
        ("underlying", Type::TEXT),
        ("expiry", Type::DATE),
        ("strike", Type::FLOAT8),
        ("option_type", Type::TEXT),
        ("ltp", Type::FLOAT8),
        ("ltp_change_prev_close", Type::FLOAT8),
        ("oi", Type::INT8),
        ("oi_change_prev_close", Type::INT8),
        ("oi_change_window", Type::INT8),
        ("volume", Type::INT8),
        ("bid", Type::FLOAT8),
        ("ask", Type::FLOAT8),
        ("iv", Type::FLOAT8),
        ("no_iv_reason", Type::TEXT),
        ("delta", Type::FLOAT8),
        ("gamma", Type::FLOAT8),
        ("theta", Type::FLOAT8),
        ("vega", Type::FLOAT8),
        ("rho", Type::FLOAT8),
        ("build_up", Type::TEXT),
        ("strike_pcr", Type::FLOAT8),
        ("gex", Type::FLOAT8),
    ],
    upsert: Some(Upsert {
        conflict: "instrument_token, ts",
        fixed: &["instrument_token", "ts"],
        touch: "",
        direct_first: true,
        skip_direct: AtomicU32::new(0),
    }),
};

static CHAINS: Table = Table {
    name: "chain_analytics",
    columns: &[
        ("underlying", Type::TEXT),
        ("expiry", Type::DATE),
        ("ts", Type::TIMESTAMPTZ),
        ("minute_close", Type::BOOL),
        ("time_to_expiry", Type::FLOAT8),
        ("spot", Type::FLOAT8),
        ("future", Type::FLOAT8),
        ("parity_forward", Type::FLOAT8),
        ("reference_price", Type::FLOAT8),
        ("reference_kind", Type::TEXT),
        ("atm_strike", Type::FLOAT8),
        ("pcr_oi", Type::FLOAT8),
        ("pcr_volume", Type::FLOAT8),
        ("max_pain", Type::FLOAT8),
        ("atm_straddle", Type::FLOAT8),
        ("implied_move_pct", Type::FLOAT8),
        ("atm_iv", Type::FLOAT8),
        ("skew_25d", Type::FLOAT8),
        ("support", Type::FLOAT8),
        ("resistance", Type::FLOAT8),
        ("basis", Type::FLOAT8),
        ("annualised_carry", Type::FLOAT8),
        ("net_gex", Type::FLOAT8),
        ("total_ce_oi", Type::INT8),
        ("total_pe_oi", Type::INT8),
        ("ce_oi_change_prev_close", Type::INT8),
        ("pe_oi_change_prev_close", Type::INT8),
    ],
    upsert: Some(Upsert {
        conflict: "underlying, expiry, ts",
        fixed: &["underlying", "expiry", "ts"],
        touch: "",
        direct_first: true,
        skip_direct: AtomicU32::new(0),
    }),
};

static MONEYNESS: Table = Table {
    name: "moneyness_points",
    columns: &[
        ("underlying", Type::TEXT),
        ("expiry", Type::DATE),
        ("minute", Type::TIMESTAMPTZ),
        ("bucket", Type::TEXT),
        ("level", Type::INT4),
        ("side", Type::TEXT),
        ("instrument_token", Type::INT8),
        ("strike", Type::FLOAT8),
        ("ltp", Type::FLOAT8),
        ("iv", Type::FLOAT8),
        ("delta", Type::FLOAT8),
        ("oi", Type::INT8),
        ("volume", Type::INT8),
    ],
    upsert: Some(Upsert {
        conflict: "underlying, expiry, bucket, side, minute",
        fixed: &["underlying", "expiry", "bucket", "side", "minute"],
        touch: "",
        direct_first: true,
        skip_direct: AtomicU32::new(0),
    }),
};

static INDICATORS: Table = Table {
    name: "indicator_values",
    columns: &[
        ("instrument_token", Type::INT8),
        ("timeframe_minutes", Type::INT4),
        ("indicator", Type::TEXT),
        ("params", Type::TEXT),
        ("window_start", Type::TIMESTAMPTZ),
        ("outputs", Type::JSONB),
    ],
    upsert: Some(Upsert {
        conflict: "instrument_token, timeframe_minutes, indicator, params, window_start",
        fixed: &[
            "instrument_token",
            "timeframe_minutes",
            "indicator",
            "params",
            "window_start",
        ],
        touch: "",
        direct_first: true,
        skip_direct: AtomicU32::new(0),
    }),
};

/// The columns of a tick row. A late tick is a tick, so `ticks` and `late_ticks` share them
/// and one writer ([`tick_row`]) fills both.
const TICK_COLUMNS: &[Column] = &[
    ("ts", Type::TIMESTAMPTZ),
    ("instrument_token", Type::INT8),
    ("ltp", Type::FLOAT8),
    ("last_qty", Type::INT8),
    ("volume", Type::INT8),
    ("oi", Type::INT8),
    ("bid", Type::FLOAT8),
    ("bid_qty", Type::INT8),
    ("ask", Type::FLOAT8),
    ("ask_qty", Type::INT8),
];

/// Primary ticks: plain COPY (two identical ticks are two ticks; offsets in the same
/// transaction keep it exactly once).
static TICKS: Table = Table {
    name: "ticks",
    columns: TICK_COLUMNS,
    upsert: None,
};

/// Ticks that arrived after their bar closed, likewise plain COPY.
static LATE_TICKS: Table = Table {
    name: "late_ticks",
    columns: TICK_COLUMNS,
    upsert: None,
};

/// `live_until` (the key's second half) is generated from `expiry`, so it is not copied;
/// a contract's expiry never changes, so `expiry` is fixed too.
static CONTRACTS: Table = Table {
    name: "instrument_history",
    columns: &[
        ("instrument_token", Type::INT8),
        ("expiry", Type::DATE),
        ("exchange_token", Type::INT8),
        ("tradingsymbol", Type::TEXT),
        ("name", Type::TEXT),
        ("last_price", Type::FLOAT8),
        ("strike", Type::FLOAT8),
        ("tick_size", Type::FLOAT8),
        ("lot_size", Type::INT4),
        ("instrument_type", Type::TEXT),
        ("segment", Type::TEXT),
        ("exchange", Type::TEXT),
    ],
    upsert: Some(Upsert {
        conflict: "instrument_token, live_until",
        fixed: &["instrument_token", "expiry"],
        touch: "updated_at = now()",
        // The compacted instrument master is read again in full whenever the sink starts
        // over and republished daily, so contracts are usually there already.
        direct_first: false,
        skip_direct: AtomicU32::new(0),
    }),
};

static ALL: [&Table; 8] = [
    &BARS,
    &STRIKES,
    &CHAINS,
    &MONEYNESS,
    &INDICATORS,
    &TICKS,
    &LATE_TICKS,
    &CONTRACTS,
];

/// Creates this session's staging tables (temp tables live as long as the connection).
pub(crate) async fn prepare_session(client: &Client) -> Result<(), Error> {
    for table in ALL {
        if let Some(sql) = table.create_stage_sql() {
            client.batch_execute(&sql).await?;
        }
    }
    Ok(())
}

/// Empties this session's staging tables inside the open transaction. They empty
/// themselves at commit; a transaction that writes several pieces of one batch (to isolate
/// a rejected row) must empty them between pieces, or a merge would see the rows of the
/// piece before.
pub(crate) async fn clear_stages(tx: &Transaction<'_>) -> Result<(), Error> {
    let mut sql = String::new();
    for table in ALL {
        if table.upsert.is_some() {
            sql.push_str(&format!("DELETE FROM {};", table.stage()));
        }
    }
    tx.batch_execute(&sql).await
}

/// Copies the primary ticks of a batch into `ticks`.
pub(crate) async fn write_ticks(tx: &Transaction<'_>, ticks: &[Tick]) -> Result<(), Error> {
    TICKS.write(tx, ticks, tick_row).await
}

/// Writes the batch's bars, analytics, late ticks and contracts inside `tx`.
pub(crate) async fn write(tx: &Transaction<'_>, batch: &Batch<'_>) -> Result<(), Error> {
    BARS.write(tx, batch.bars.values(), bar_row).await?;
    CONTRACTS
        .write(tx, batch.contracts.values(), contract_row)
        .await?;
    STRIKES
        .write(tx, batch.strikes.values(), strike_row)
        .await?;
    CHAINS.write(tx, batch.chains.values(), chain_row).await?;
    MONEYNESS
        .write(tx, batch.moneyness.values(), moneyness_row)
        .await?;
    INDICATORS
        .write(tx, batch.indicators.values(), indicator_row)
        .await?;
    LATE_TICKS.write(tx, &batch.late, tick_row).await
}

// One function per row type, writing its values in its table's column order (checked
// against the column types in debug builds, see `copy::Row`).

/// A row of [`TICK_COLUMNS`], for `ticks` and `late_ticks`.
fn tick_row(r: &mut Row<'_>, t: &Tick) {
    r.timestamptz(t.exchange_ts)
        .int8(t.instrument_token)
        .float8(t.ltp)
        .int8(t.last_qty)
        .int8(t.volume)
        .int8(t.oi)
        .float8(t.bid)
        .int8(t.bid_qty)
        .float8(t.ask)
        .int8(t.ask_qty);
}

/// A row of [`BARS`].
fn bar_row(r: &mut Row<'_>, b: &Bar) {
    r.int8(b.instrument_token)
        .timestamptz(b.window_start)
        .timestamptz(b.window_end)
        .float8(b.open)
        .float8(b.high)
        .float8(b.low)
        .float8(b.close)
        .int8(b.volume)
        .int8(b.oi)
        .int4(b.tick_count);
}

/// A row of [`CONTRACTS`].
fn contract_row(r: &mut Row<'_>, i: &Instrument) {
    r.int8(i.instrument_token)
        .date_opt(i.expiry.and_then(date_from_days))
        .int8(i.exchange_token)
        .text(&i.tradingsymbol)
        .text(&i.name)
        .float8(i.last_price)
        .float8(i.strike)
        .float8(i.tick_size)
        .int4(i.lot_size)
        .text(instrument_type(i.instrument_type))
        .text(&i.segment)
        .text(&i.exchange);
}

/// A row of [`STRIKES`].
fn strike_row(r: &mut Row<'_>, s: &StrikeAnalytics) {
    r.timestamptz(s.ts)
        .int8(s.instrument_token)
        .text(&s.tradingsymbol)
        .text(&s.underlying)
        .date_opt(date_from_days(s.expiry))
        .float8(s.strike)
        .text(side(s.option_type))
        .float8(s.ltp)
        .float8_opt(s.ltp_change_prev_close)
        .int8(s.oi)
        .int8_opt(s.oi_change_prev_close)
        .int8_opt(s.oi_change_window)
        .int8(s.volume)
        .float8(s.bid)
        .float8(s.ask)
        .float8_opt(s.iv)
        .text_opt(s.no_iv_reason.map(no_iv_reason))
        .float8_opt(s.delta)
        .float8_opt(s.gamma)
        .float8_opt(s.theta)
        .float8_opt(s.vega)
        .float8_opt(s.rho)
        .text(build_up(s.build_up))
        .float8_opt(s.strike_pcr)
        .float8_opt(s.gex);
}

/// A row of [`CHAINS`].
fn chain_row(r: &mut Row<'_>, c: &ChainAnalytics) {
    r.text(&c.underlying)
        .date_opt(date_from_days(c.expiry))
        .timestamptz(c.ts)
        .bool(c.minute_close)
        .float8(c.time_to_expiry)
        .float8_opt(c.spot)
        .float8_opt(c.future)
        .float8_opt(c.parity_forward)
        .float8(c.reference_price)
        .text(reference_kind(c.reference_kind))
        .float8(c.atm_strike)
        .float8_opt(c.pcr_oi)
        .float8_opt(c.pcr_volume)
        .float8_opt(c.max_pain)
        .float8_opt(c.atm_straddle)
        .float8_opt(c.implied_move_pct)
        .float8_opt(c.atm_iv)
        .float8_opt(c.skew_25d)
        .float8_opt(c.support)
        .float8_opt(c.resistance)
        .float8_opt(c.basis)
        .float8_opt(c.annualised_carry)
        .float8_opt(c.net_gex)
        .int8(c.total_ce_oi)
        .int8(c.total_pe_oi)
        .int8_opt(c.ce_oi_change_prev_close)
        .int8_opt(c.pe_oi_change_prev_close);
}

/// A row of [`MONEYNESS`].
fn moneyness_row(r: &mut Row<'_>, m: &MoneynessPoint) {
    r.text(&m.underlying)
        .date_opt(date_from_days(m.expiry))
        .timestamptz(m.minute)
        .text(&m.bucket)
        .int4(m.level)
        .text(side(m.side))
        .int8(m.instrument_token)
        .float8(m.strike)
        .float8(m.ltp)
        .float8_opt(m.iv)
        .float8_opt(m.delta)
        .int8(m.oi)
        .int8(m.volume);
}

/// A row of [`INDICATORS`]. serde_json writes each double in its shortest round-trip form,
/// so `(outputs->>'x')::float8` reads back the published value exactly.
fn indicator_row(r: &mut Row<'_>, p: &IndicatorPoint) {
    r.int8(p.instrument_token)
        .int4(p.timeframe_minutes)
        .text(&p.indicator)
        .text(&p.params)
        .timestamptz(p.window_start)
        .jsonb(&p.outputs);
}

// The Avro enum symbols, as the migration's CHECK constraints list them. Exhaustive
// matches: a new symbol fails to compile here instead of reaching the database unnamed.

fn side(side: OptionSide) -> &'static str {
    match side {
        OptionSide::CE => "CE",
        OptionSide::PE => "PE",
    }
}

fn instrument_type(kind: InstrumentType) -> &'static str {
    match kind {
        InstrumentType::EQ => "EQ",
        InstrumentType::FUT => "FUT",
        InstrumentType::CE => "CE",
        InstrumentType::PE => "PE",
    }
}

fn no_iv_reason(reason: NoIvReason) -> &'static str {
    match reason {
        NoIvReason::BelowIntrinsic => "BELOW_INTRINSIC",
        NoIvReason::AboveMaximum => "ABOVE_MAXIMUM",
        NoIvReason::NoTwoSidedMarket => "NO_TWO_SIDED_MARKET",
        NoIvReason::Expired => "EXPIRED",
        NoIvReason::InvalidInput => "INVALID_INPUT",
        NoIvReason::NoUnderlying => "NO_UNDERLYING",
    }
}

fn build_up(class: BuildUp) -> &'static str {
    match class {
        BuildUp::LongBuildup => "LONG_BUILDUP",
        BuildUp::ShortBuildup => "SHORT_BUILDUP",
        BuildUp::ShortCovering => "SHORT_COVERING",
        BuildUp::LongUnwinding => "LONG_UNWINDING",
        BuildUp::Neutral => "NEUTRAL",
    }
}

fn reference_kind(kind: ReferenceKind) -> &'static str {
    match kind {
        ReferenceKind::Spot => "SPOT",
        ReferenceKind::Future => "FUTURE",
        ReferenceKind::ParityForward => "PARITY_FORWARD",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upsert_updates_only_what_is_not_key_and_only_when_it_changed() {
        let sql = CONTRACTS.merge_sql(CONTRACTS.upsert.as_ref().expect("an upsert"));
        assert!(sql.starts_with(
            "INSERT INTO instrument_history AS t (instrument_token, expiry, exchange_token, "
        ));
        assert!(sql
            .contains("FROM instrument_history_stage ON CONFLICT (instrument_token, live_until)"));
        assert!(sql.contains("SET exchange_token = EXCLUDED.exchange_token, "));
        assert!(sql.contains(", updated_at = now() WHERE (t.exchange_token, "));
        assert!(!sql.contains("expiry = EXCLUDED.expiry"), "{sql}");
        assert!(!sql.contains("instrument_token = EXCLUDED"), "{sql}");
    }

    #[test]
    fn a_refused_direct_copy_sends_the_next_batches_to_the_merge() {
        let upsert = |direct_first| Upsert {
            conflict: "k",
            fixed: &["k"],
            touch: "",
            direct_first,
            skip_direct: AtomicU32::new(0),
        };
        let table = upsert(true);
        assert!(table.direct_turn() && table.direct_turn());
        table
            .skip_direct
            .store(SKIP_AFTER_REFUSAL, Ordering::Relaxed);
        for _ in 0..SKIP_AFTER_REFUSAL {
            assert!(!table.direct_turn());
        }
        assert!(table.direct_turn(), "back to the direct COPY");
        assert!(!upsert(false).direct_turn(), "never for a merge-only table");
    }

    #[test]
    fn every_table_names_each_column_once_and_keys_are_columns() {
        for table in ALL {
            let names: Vec<&str> = table.columns.iter().map(|(n, _)| *n).collect();
            let mut unique = names.clone();
            unique.sort_unstable();
            unique.dedup();
            assert_eq!(unique.len(), names.len(), "{}", table.name);
            if let Some(upsert) = &table.upsert {
                for fixed in upsert.fixed {
                    assert!(names.contains(fixed), "{}: {fixed}", table.name);
                }
            }
        }
        assert!(
            LATE_TICKS.create_stage_sql().is_none(),
            "plain COPY, no stage"
        );
        assert_eq!(
            LATE_TICKS.copy_sql(LATE_TICKS.name),
            "COPY late_ticks (ts, instrument_token, ltp, last_qty, volume, oi, bid, bid_qty, ask, \
             ask_qty) FROM STDIN (FORMAT binary)"
        );
    }
}
