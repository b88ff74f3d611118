//! The tables of the processors' analytics outputs, late ticks and the instrument history
//! (`migrations/0003_stored_analytics.sql`): their columns in COPY order, and how one batch
//! of each is written.
//!
//! Every table is filled with binary COPY, the fastest way into PostgreSQL. Tables with a
//! natural key are upserted: COPY into a session temp table, then one `INSERT … SELECT …
//! ON CONFLICT DO UPDATE`, because COPY itself cannot resolve conflicts and a record can
//! legitimately come again with its key (see the migration). Late ticks have no natural key
//! and are copied straight in.

use std::pin::pin;

use strikeflow_schemas::{
    date_from_days, BuildUp, InstrumentType, NoIvReason, OptionSide, ReferenceKind, Tick,
};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{Client, Error, Transaction};

use crate::writer::timestamp;
use crate::Batch;

/// A table the sink writes: its columns in COPY order and, for upserts, the conflict.
struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Type)],
    upsert: Option<Upsert>,
}

/// How rows staged for a table are merged into it.
struct Upsert {
    /// The `ON CONFLICT` target: the table's primary key.
    conflict: &'static str,
    /// Copied columns an update leaves alone (those the key is made of).
    fixed: &'static [&'static str],
    /// Extra assignments when a row changed (e.g. `updated_at = now()`), or empty.
    touch: &'static str,
}

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

    fn copy_sql(&self) -> String {
        let into = match self.upsert {
            Some(_) => self.stage(),
            None => self.name.to_owned(),
        };
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

    /// Starts a binary COPY into the table (or its stage).
    async fn copy_in(&self, tx: &Transaction<'_>) -> Result<BinaryCopyInWriter, Error> {
        let sink = tx.copy_in(&self.copy_sql()).await?;
        let types: Vec<Type> = self.columns.iter().map(|(_, t)| t.clone()).collect();
        Ok(BinaryCopyInWriter::new(sink, &types))
    }

    /// Merges the staged rows into the table (nothing for a plain-COPY table).
    async fn merge(&self, tx: &Transaction<'_>) -> Result<(), Error> {
        match &self.upsert {
            Some(upsert) => tx.batch_execute(&self.merge_sql(upsert)).await,
            None => Ok(()),
        }
    }
}

const STRIKES: Table = Table {
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
    }),
};

const CHAINS: Table = Table {
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
    }),
};

const MONEYNESS: Table = Table {
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
    }),
};

const INDICATORS: Table = Table {
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
    }),
};

/// The columns of a tick row. A late tick is a tick, so `ticks` and `late_ticks` share them
/// and one writer ([`copy_ticks`]) fills both.
const TICK_COLUMNS: &[(&str, Type)] = &[
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
const TICKS: Table = Table {
    name: "ticks",
    columns: TICK_COLUMNS,
    upsert: None,
};

/// Ticks that arrived after their bar closed, likewise plain COPY.
const LATE_TICKS: Table = Table {
    name: "late_ticks",
    columns: TICK_COLUMNS,
    upsert: None,
};

/// `live_until` (the key's second half) is generated from `expiry`, so it is not copied;
/// a contract's expiry never changes, so `expiry` is fixed too.
const CONTRACTS: Table = Table {
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
    }),
};

const ALL: [&Table; 6] = [
    &STRIKES,
    &CHAINS,
    &MONEYNESS,
    &INDICATORS,
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
    let mut sql = String::from("DELETE FROM bars_1m_stage;");
    for table in ALL {
        if table.upsert.is_some() {
            sql.push_str(&format!("DELETE FROM {};", table.stage()));
        }
    }
    tx.batch_execute(&sql).await
}

/// Writes the batch's analytics, late ticks and contracts inside `tx`.
pub(crate) async fn write(tx: &Transaction<'_>, batch: &Batch<'_>) -> Result<(), Error> {
    if !batch.contracts.is_empty() {
        let mut w = pin!(CONTRACTS.copy_in(tx).await?);
        for i in batch.contracts.values() {
            let row: [&(dyn ToSql + Sync); 12] = [
                &i.instrument_token,
                &i.expiry.and_then(date_from_days),
                &i.exchange_token,
                &i.tradingsymbol,
                &i.name,
                &i.last_price,
                &i.strike,
                &i.tick_size,
                &i.lot_size,
                &instrument_type(i.instrument_type),
                &i.segment,
                &i.exchange,
            ];
            w.as_mut().write(&row).await?;
        }
        w.finish().await?;
        CONTRACTS.merge(tx).await?;
    }

    if !batch.strikes.is_empty() {
        let mut w = pin!(STRIKES.copy_in(tx).await?);
        for s in batch.strikes.values() {
            let row: [&(dyn ToSql + Sync); 25] = [
                &timestamp(s.ts),
                &s.instrument_token,
                &s.tradingsymbol,
                &s.underlying,
                &date_from_days(s.expiry),
                &s.strike,
                &side(s.option_type),
                &s.ltp,
                &s.ltp_change_prev_close,
                &s.oi,
                &s.oi_change_prev_close,
                &s.oi_change_window,
                &s.volume,
                &s.bid,
                &s.ask,
                &s.iv,
                &s.no_iv_reason.map(no_iv_reason),
                &s.delta,
                &s.gamma,
                &s.theta,
                &s.vega,
                &s.rho,
                &build_up(s.build_up),
                &s.strike_pcr,
                &s.gex,
            ];
            w.as_mut().write(&row).await?;
        }
        w.finish().await?;
        STRIKES.merge(tx).await?;
    }

    if !batch.chains.is_empty() {
        let mut w = pin!(CHAINS.copy_in(tx).await?);
        for c in batch.chains.values() {
            let row: [&(dyn ToSql + Sync); 27] = [
                &c.underlying,
                &date_from_days(c.expiry),
                &timestamp(c.ts),
                &c.minute_close,
                &c.time_to_expiry,
                &c.spot,
                &c.future,
                &c.parity_forward,
                &c.reference_price,
                &reference_kind(c.reference_kind),
                &c.atm_strike,
                &c.pcr_oi,
                &c.pcr_volume,
                &c.max_pain,
                &c.atm_straddle,
                &c.implied_move_pct,
                &c.atm_iv,
                &c.skew_25d,
                &c.support,
                &c.resistance,
                &c.basis,
                &c.annualised_carry,
                &c.net_gex,
                &c.total_ce_oi,
                &c.total_pe_oi,
                &c.ce_oi_change_prev_close,
                &c.pe_oi_change_prev_close,
            ];
            w.as_mut().write(&row).await?;
        }
        w.finish().await?;
        CHAINS.merge(tx).await?;
    }

    if !batch.moneyness.is_empty() {
        let mut w = pin!(MONEYNESS.copy_in(tx).await?);
        for m in batch.moneyness.values() {
            let row: [&(dyn ToSql + Sync); 13] = [
                &m.underlying,
                &date_from_days(m.expiry),
                &timestamp(m.minute),
                &m.bucket,
                &m.level,
                &side(m.side),
                &m.instrument_token,
                &m.strike,
                &m.ltp,
                &m.iv,
                &m.delta,
                &m.oi,
                &m.volume,
            ];
            w.as_mut().write(&row).await?;
        }
        w.finish().await?;
        MONEYNESS.merge(tx).await?;
    }

    if !batch.indicators.is_empty() {
        let mut w = pin!(INDICATORS.copy_in(tx).await?);
        for p in batch.indicators.values() {
            // serde_json writes each double in its shortest round-trip form, so
            // `(outputs->>'x')::float8` reads back the published value exactly.
            let row: [&(dyn ToSql + Sync); 6] = [
                &p.instrument_token,
                &p.timeframe_minutes,
                &p.indicator,
                &p.params,
                &timestamp(p.window_start),
                &Json(&p.outputs),
            ];
            w.as_mut().write(&row).await?;
        }
        w.finish().await?;
        INDICATORS.merge(tx).await?;
    }

    copy_ticks(&LATE_TICKS, tx, &batch.late).await?;
    Ok(())
}

/// Copies the primary ticks of a batch into `ticks`.
pub(crate) async fn write_ticks(tx: &Transaction<'_>, ticks: &[Tick]) -> Result<(), Error> {
    copy_ticks(&TICKS, tx, ticks).await
}

/// Binary COPY of tick rows into `table` (`ticks` or `late_ticks`).
async fn copy_ticks(table: &Table, tx: &Transaction<'_>, ticks: &[Tick]) -> Result<(), Error> {
    if ticks.is_empty() {
        return Ok(());
    }
    let mut w = pin!(table.copy_in(tx).await?);
    for t in ticks {
        let row: [&(dyn ToSql + Sync); 10] = [
            &timestamp(t.exchange_ts),
            &t.instrument_token,
            &t.ltp,
            &t.last_qty,
            &t.volume,
            &t.oi,
            &t.bid,
            &t.bid_qty,
            &t.ask,
            &t.ask_qty,
        ];
        w.as_mut().write(&row).await?;
    }
    w.finish().await?;
    Ok(())
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
            LATE_TICKS.copy_sql(),
            "COPY late_ticks (ts, instrument_token, ltp, last_qty, volume, oi, bid, bid_qty, ask, \
             ask_qty) FROM STDIN (FORMAT binary)"
        );
    }
}
