//! A simulated session published through ingest and the processor, what each table must
//! hold afterwards (read back from the topics), and the comparison of the tables with it.
//! Shared by the tests that store a session: cleanly, and under faults.

use std::fmt::Debug;
use std::time::{SystemTime, UNIX_EPOCH};

use strikeflow::Config;
use strikeflow_ingest::SimulatorConfig;
use strikeflow_kafka::Outbox;
use strikeflow_schemas::{
    days_from_date, decode, Bar, BuildUp, ChainAnalytics, IndicatorPoint, Instrument,
    InstrumentType, MoneynessPoint, NoIvReason, OptionSide, ReferenceKind, StrikeAnalytics, Tick,
    Topics,
};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, Row};
use tokio_util::sync::CancellationToken;

use super::{last_per_key, read_all, records, Record, Sandbox};

/// Ticks of a session: the pinned 12-instrument market of tests/pipeline.rs at 100 ms per
/// tick is ~10 minutes of event time, so every output topic (moneyness and indicators need
/// closed minutes) gets records.
pub(crate) const TICKS: u64 = 5_950;
const LATENESS_MS: u64 = 2_000;
/// Ticks of the session's first minute published again after it: late by construction.
pub(crate) const REPLAYED_LATE: usize = 5;

/// Sets `sandbox` up for a session of [`TICKS`] ticks and its own processor group.
pub(crate) fn configure(sandbox: &mut Sandbox) {
    let config = &mut sandbox.config;
    config.simulate.market = SimulatorConfig::single_chain();
    config.simulate.market.tick_interval_ms = 100;
    config.simulate.rate = 5_000.0;
    config.simulate.max_ticks = TICKS;
    config.processor.allowed_lateness_ms = LATENESS_MS;
    config.processor.group_id = format!("{}-processors", sandbox.name);
}

/// Publishes the session: the simulated ticks (the processor must be running), then
/// [`REPLAYED_LATE`] ticks of the first minute again under their own keys — their bars
/// closed long ago, so the processor routes them to the late topic (and the sink stores
/// them as ticks too) — and waits until the processor committed every tick, so every
/// output transaction is closed.
pub(crate) async fn publish(config: &Config, processor: &JoinHandle<impl Sized>) {
    let topics = config.topics();
    let brokers = config.kafka.brokers.clone();
    let report = strikeflow_ingest::run_simulation(config.simulate(), CancellationToken::new())
        .await
        .expect("simulation");
    assert_eq!(report.ticks, TICKS);

    let first = read_all(&brokers, &topics.ticks());
    let session_start = first
        .iter()
        .filter(is_tick)
        .map(|r| tick(&r.payload).exchange_ts)
        .min()
        .expect("ticks were published");
    let mut outbox =
        Outbox::connect(&strikeflow_kafka::Brokers::plaintext(&brokers)).expect("a producer");
    let replayed: Vec<_> = first
        .iter()
        .filter(is_tick)
        .filter(|r| r.key.as_ref().is_some_and(|k| k.contains(&b':')))
        .filter(|r| tick(&r.payload).exchange_ts < session_start + 30_000_000)
        .take(REPLAYED_LATE)
        .collect();
    assert_eq!(replayed.len(), REPLAYED_LATE);
    for r in &replayed {
        let key = r.key.as_deref().unwrap_or_default();
        outbox
            .send(&topics.ticks(), key, &r.payload)
            .expect("enqueued");
    }
    outbox.flush().await.expect("replayed ticks delivered");

    super::wait_processed(config, processor).await;
}

/// Event-time markers (no key) and spot reference copies are not ticks.
fn is_tick(r: &&Record) -> bool {
    !r.reference_copy && r.key.is_some()
}

/// What was published, per table: upserted tables keep the last record per key (in log
/// order; a key lives in one partition), the others every record.
pub(crate) struct Published {
    ticks: Vec<Tick>,
    late: Vec<Tick>,
    bars: Vec<Bar>,
    strikes: Vec<StrikeAnalytics>,
    chains: Vec<ChainAnalytics>,
    moneyness: Vec<MoneynessPoint>,
    indicators: Vec<IndicatorPoint>,
    contracts: Vec<Instrument>,
    current: Vec<Instrument>,
}

impl Published {
    /// Reads every output topic of `topics` back (read_committed), after [`publish`].
    pub(crate) fn read(brokers: &str, topics: &Topics) -> Self {
        Self::read_with_late(brokers, topics, REPLAYED_LATE)
    }

    /// [`Published::read`] for a session that published `late` late ticks.
    pub(crate) fn read_with_late(brokers: &str, topics: &Topics, late: usize) -> Self {
        let instruments: Vec<Instrument> = records(brokers, &topics.instruments());
        let published = Self {
            ticks: read_all(brokers, &topics.ticks())
                .iter()
                .filter(is_tick)
                .map(|r| tick(&r.payload))
                .collect(),
            late: records(brokers, &topics.late()),
            bars: last_per_key(records::<Bar>(brokers, &topics.bars()), |b| {
                (b.instrument_token, b.window_start)
            }),
            strikes: last_per_key(
                records::<StrikeAnalytics>(brokers, &topics.strikes()),
                |s| (s.instrument_token, s.ts),
            ),
            chains: last_per_key(records::<ChainAnalytics>(brokers, &topics.chains()), |c| {
                (c.underlying.clone(), c.expiry, c.ts)
            }),
            moneyness: last_per_key(
                records::<MoneynessPoint>(brokers, &topics.moneyness()),
                moneyness_key,
            ),
            indicators: last_per_key(
                records::<IndicatorPoint>(brokers, &topics.indicators()),
                indicator_key,
            ),
            contracts: last_per_key(instruments.clone(), |i| (i.instrument_token, i.expiry)),
            current: last_per_key(instruments, |i| i.instrument_token),
        };
        for (table, n) in published.expected() {
            assert!(
                n > 0 || (table == "late_ticks" && late == 0),
                "the session produced nothing for {table}"
            );
        }
        assert_eq!(published.late.len(), late, "late ticks");
        published
    }

    /// Rows each table must hold.
    pub(crate) fn expected(&self) -> [(&'static str, usize); 9] {
        [
            ("ticks", self.ticks.len()),
            ("bars_1m", self.bars.len()),
            ("strike_analytics", self.strikes.len()),
            ("chain_analytics", self.chains.len()),
            ("moneyness_points", self.moneyness.len()),
            ("indicator_values", self.indicators.len()),
            ("late_ticks", self.late.len()),
            ("instrument_history", self.contracts.len()),
            ("instruments", self.current.len()),
        ]
    }

    /// Asserts that every table holds exactly what was published, field by field: no row
    /// missing, none extra, none different.
    pub(crate) async fn assert_stored(&self, db: &Client) {
        same(
            "ticks",
            stored_ticks(db, "ticks").await,
            self.ticks.clone(),
            tick_identity,
        );
        same(
            "late_ticks",
            stored_ticks(db, "late_ticks").await,
            self.late.clone(),
            tick_identity,
        );
        same("bars_1m", stored_bars(db).await, self.bars.clone(), |b| {
            (b.instrument_token, b.window_start)
        });
        same(
            "strike_analytics",
            stored_strikes(db).await,
            self.strikes.clone(),
            |s| (s.instrument_token, s.ts),
        );
        same(
            "chain_analytics",
            stored_chains(db).await,
            self.chains.clone(),
            |c| (c.underlying.clone(), c.expiry, c.ts),
        );
        same(
            "moneyness_points",
            stored_moneyness(db).await,
            self.moneyness.clone(),
            moneyness_key,
        );
        same(
            "indicator_values",
            stored_indicators(db).await,
            self.indicators.clone(),
            indicator_key,
        );
        same(
            "instrument_history",
            stored_instruments(db, "instrument_history").await,
            self.contracts.clone(),
            |i| (i.instrument_token, i.expiry),
        );
        same(
            "instruments",
            stored_instruments(db, "instruments").await,
            self.current.clone(),
            |i| (i.instrument_token, i.expiry),
        );
    }
}

fn tick(payload: &[u8]) -> Tick {
    decode(payload).expect("a tick")
}

fn moneyness_key(m: &MoneynessPoint) -> (String, i32, String, String, i64) {
    let side = format!("{:?}", m.side);
    (
        m.underlying.clone(),
        m.expiry,
        m.bucket.clone(),
        side,
        m.minute,
    )
}

fn indicator_key(p: &IndicatorPoint) -> (i64, i32, String, String, i64) {
    let (indicator, params) = (p.indicator.clone(), p.params.clone());
    (
        p.instrument_token,
        p.timeframe_minutes,
        indicator,
        params,
        p.window_start,
    )
}

/// Ticks have no key: identical ticks are told apart by nothing, so the comparison is of
/// multisets (the Debug form of a double is exact).
fn tick_identity(t: &Tick) -> (i64, i64, String) {
    (t.instrument_token, t.exchange_ts, format!("{t:?}"))
}

/// Asserts that `stored` and `published` hold the same values, whatever their order, and
/// names the first difference.
fn same<T: PartialEq + Debug, K: Ord + Debug>(
    table: &str,
    mut stored: Vec<T>,
    mut published: Vec<T>,
    key: impl Fn(&T) -> K,
) {
    stored.sort_by_key(&key);
    published.sort_by_key(&key);
    for (s, p) in stored.iter().zip(&published) {
        assert_eq!(
            s,
            p,
            "{table}: the row of {:?} differs from its record",
            key(p)
        );
    }
    assert_eq!(
        stored.len(),
        published.len(),
        "{table}: {} rows for {} records",
        stored.len(),
        published.len()
    );
    eprintln!("{table}: {} rows equal their records", stored.len());
}

// Reading the tables back into the topics' types, column by column.

fn micros(row: &Row, column: &str) -> i64 {
    let t: SystemTime = row.get(column);
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    }
}

fn days(row: &Row, column: &str) -> i32 {
    days_from_date(row.get(column))
}

async fn rows(db: &Client, sql: &str) -> Vec<Row> {
    db.query(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn stored_ticks(db: &Client, table: &str) -> Vec<Tick> {
    rows(db, &format!("SELECT * FROM {table}"))
        .await
        .iter()
        .map(|r| Tick {
            instrument_token: r.get("instrument_token"),
            exchange_ts: micros(r, "ts"),
            ltp: r.get("ltp"),
            last_qty: r.get("last_qty"),
            volume: r.get("volume"),
            oi: r.get("oi"),
            bid: r.get("bid"),
            bid_qty: r.get("bid_qty"),
            ask: r.get("ask"),
            ask_qty: r.get("ask_qty"),
        })
        .collect()
}

async fn stored_bars(db: &Client) -> Vec<Bar> {
    rows(db, "SELECT * FROM bars_1m")
        .await
        .iter()
        .map(|r| Bar {
            instrument_token: r.get("instrument_token"),
            window_start: micros(r, "window_start"),
            window_end: micros(r, "window_end"),
            open: r.get("open"),
            high: r.get("high"),
            low: r.get("low"),
            close: r.get("close"),
            volume: r.get("volume"),
            oi: r.get("oi"),
            tick_count: r.get("tick_count"),
        })
        .collect()
}

async fn stored_strikes(db: &Client) -> Vec<StrikeAnalytics> {
    rows(db, "SELECT * FROM strike_analytics")
        .await
        .iter()
        .map(|r| StrikeAnalytics {
            instrument_token: r.get("instrument_token"),
            tradingsymbol: r.get("tradingsymbol"),
            underlying: r.get("underlying"),
            expiry: days(r, "expiry"),
            strike: r.get("strike"),
            option_type: side(r.get("option_type")),
            ts: micros(r, "ts"),
            ltp: r.get("ltp"),
            ltp_change_prev_close: r.get("ltp_change_prev_close"),
            oi: r.get("oi"),
            oi_change_prev_close: r.get("oi_change_prev_close"),
            oi_change_window: r.get("oi_change_window"),
            volume: r.get("volume"),
            bid: r.get("bid"),
            ask: r.get("ask"),
            iv: r.get("iv"),
            no_iv_reason: r.get::<_, Option<&str>>("no_iv_reason").map(no_iv_reason),
            delta: r.get("delta"),
            gamma: r.get("gamma"),
            theta: r.get("theta"),
            vega: r.get("vega"),
            rho: r.get("rho"),
            build_up: build_up(r.get("build_up")),
            strike_pcr: r.get("strike_pcr"),
            gex: r.get("gex"),
        })
        .collect()
}

async fn stored_chains(db: &Client) -> Vec<ChainAnalytics> {
    rows(db, "SELECT * FROM chain_analytics")
        .await
        .iter()
        .map(|r| ChainAnalytics {
            underlying: r.get("underlying"),
            expiry: days(r, "expiry"),
            ts: micros(r, "ts"),
            minute_close: r.get("minute_close"),
            time_to_expiry: r.get("time_to_expiry"),
            spot: r.get("spot"),
            future: r.get("future"),
            parity_forward: r.get("parity_forward"),
            reference_price: r.get("reference_price"),
            reference_kind: reference_kind(r.get("reference_kind")),
            atm_strike: r.get("atm_strike"),
            pcr_oi: r.get("pcr_oi"),
            pcr_volume: r.get("pcr_volume"),
            max_pain: r.get("max_pain"),
            atm_straddle: r.get("atm_straddle"),
            implied_move_pct: r.get("implied_move_pct"),
            atm_iv: r.get("atm_iv"),
            skew_25d: r.get("skew_25d"),
            support: r.get("support"),
            resistance: r.get("resistance"),
            basis: r.get("basis"),
            annualised_carry: r.get("annualised_carry"),
            net_gex: r.get("net_gex"),
            total_ce_oi: r.get("total_ce_oi"),
            total_pe_oi: r.get("total_pe_oi"),
            ce_oi_change_prev_close: r.get("ce_oi_change_prev_close"),
            pe_oi_change_prev_close: r.get("pe_oi_change_prev_close"),
        })
        .collect()
}

async fn stored_moneyness(db: &Client) -> Vec<MoneynessPoint> {
    rows(db, "SELECT * FROM moneyness_points")
        .await
        .iter()
        .map(|r| MoneynessPoint {
            underlying: r.get("underlying"),
            expiry: days(r, "expiry"),
            minute: micros(r, "minute"),
            bucket: r.get("bucket"),
            level: r.get("level"),
            side: side(r.get("side")),
            instrument_token: r.get("instrument_token"),
            strike: r.get("strike"),
            ltp: r.get("ltp"),
            iv: r.get("iv"),
            delta: r.get("delta"),
            oi: r.get("oi"),
            volume: r.get("volume"),
        })
        .collect()
}

/// Outputs are read as text and parsed here (correctly rounded), the way an analyst's
/// `(outputs->>'rsi')::float8` reads them.
async fn stored_indicators(db: &Client) -> Vec<IndicatorPoint> {
    rows(
        db,
        "SELECT v.*, \
           ARRAY(SELECT key FROM jsonb_each_text(outputs) ORDER BY key) AS output_names, \
           ARRAY(SELECT value FROM jsonb_each_text(outputs) ORDER BY key) AS output_values \
         FROM indicator_values v",
    )
    .await
    .iter()
    .map(|r| {
        let names: Vec<String> = r.get("output_names");
        let values: Vec<String> = r.get("output_values");
        IndicatorPoint {
            instrument_token: r.get("instrument_token"),
            timeframe_minutes: r.get("timeframe_minutes"),
            window_start: micros(r, "window_start"),
            indicator: r.get("indicator"),
            params: r.get("params"),
            outputs: names
                .into_iter()
                .zip(values)
                .map(|(n, v)| {
                    let value = v
                        .parse()
                        .unwrap_or_else(|e| panic!("output {n} = {v}: {e}"));
                    (n, value)
                })
                .collect(),
        }
    })
    .collect()
}

async fn stored_instruments(db: &Client, table: &str) -> Vec<Instrument> {
    rows(db, &format!("SELECT * FROM {table}"))
        .await
        .iter()
        .map(|r| Instrument {
            instrument_token: r.get("instrument_token"),
            exchange_token: r.get("exchange_token"),
            tradingsymbol: r.get("tradingsymbol"),
            name: r.get("name"),
            last_price: r.get("last_price"),
            expiry: r
                .get::<_, Option<chrono::NaiveDate>>("expiry")
                .map(days_from_date),
            strike: r.get("strike"),
            tick_size: r.get("tick_size"),
            lot_size: r.get("lot_size"),
            instrument_type: match r.get("instrument_type") {
                "EQ" => InstrumentType::EQ,
                "FUT" => InstrumentType::FUT,
                "CE" => InstrumentType::CE,
                "PE" => InstrumentType::PE,
                other => panic!("instrument_type {other}"),
            },
            segment: r.get("segment"),
            exchange: r.get("exchange"),
        })
        .collect()
}

fn side(text: &str) -> OptionSide {
    match text {
        "CE" => OptionSide::CE,
        "PE" => OptionSide::PE,
        other => panic!("option side {other}"),
    }
}

fn no_iv_reason(text: &str) -> NoIvReason {
    match text {
        "BELOW_INTRINSIC" => NoIvReason::BelowIntrinsic,
        "ABOVE_MAXIMUM" => NoIvReason::AboveMaximum,
        "NO_TWO_SIDED_MARKET" => NoIvReason::NoTwoSidedMarket,
        "EXPIRED" => NoIvReason::Expired,
        "INVALID_INPUT" => NoIvReason::InvalidInput,
        "NO_UNDERLYING" => NoIvReason::NoUnderlying,
        other => panic!("no_iv_reason {other}"),
    }
}

fn build_up(text: &str) -> BuildUp {
    match text {
        "LONG_BUILDUP" => BuildUp::LongBuildup,
        "SHORT_BUILDUP" => BuildUp::ShortBuildup,
        "SHORT_COVERING" => BuildUp::ShortCovering,
        "LONG_UNWINDING" => BuildUp::LongUnwinding,
        "NEUTRAL" => BuildUp::Neutral,
        other => panic!("build_up {other}"),
    }
}

fn reference_kind(text: &str) -> ReferenceKind {
    match text {
        "SPOT" => ReferenceKind::Spot,
        "FUTURE" => ReferenceKind::Future,
        "PARITY_FORWARD" => ReferenceKind::ParityForward,
        other => panic!("reference_kind {other}"),
    }
}

/// Every table the sink fills.
pub(crate) const TABLES: [&str; 9] = [
    "ticks",
    "bars_1m",
    "strike_analytics",
    "chain_analytics",
    "moneyness_points",
    "indicator_values",
    "late_ticks",
    "instrument_history",
    "instruments",
];

/// Every row of `table` as JSON text without `updated_at` (the only column holding the
/// wall-clock time of the write rather than data), sorted: what two runs that stored the
/// same data have equal.
pub(crate) async fn table_rows(db: &Client, table: &str) -> Vec<String> {
    db.query(
        &format!("SELECT (to_jsonb(t) - 'updated_at')::text FROM {table} t ORDER BY 1"),
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("reading {table}: {e}"))
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Asserts that two databases hold the same rows in every table the sink fills, naming the
/// first rows that differ.
pub(crate) async fn assert_same_tables(expected: &Client, got: &Client, run: &str) {
    for table in TABLES {
        let (expected, got) = (
            table_rows(expected, table).await,
            table_rows(got, table).await,
        );
        assert!(
            !expected.is_empty() || table == "late_ticks",
            "the reference stored nothing in {table}"
        );
        assert_eq!(
            expected.len(),
            got.len(),
            "{run}: {table} holds {} rows, the reference {}",
            got.len(),
            expected.len()
        );
        let differing: Vec<_> = expected
            .iter()
            .zip(&got)
            .filter(|(a, b)| a != b)
            .take(3)
            .collect();
        assert!(
            differing.is_empty(),
            "{run}: {table}: rows differ (reference, {run}): {differing:#?}"
        );
    }
}
