//! Option chains for the push tests: chain summaries and strike rows to publish, and a
//! client-side chain that applies push's snapshot and delta messages.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;
use strikeflow_schemas::{
    encode, BuildUp, ChainAnalytics, ChainKey, OptionSide, ReferenceKind, StrikeAnalytics, Topics,
};

use super::{brokers, next_frame_by, Frame, Ws, STARTUP};

/// The expiry every test chain uses (days since the epoch) and its date.
pub(crate) const EXPIRY: i32 = 20_816;

pub(crate) fn expiry_date() -> String {
    strikeflow_schemas::date_from_days(EXPIRY)
        .expect("date")
        .to_string()
}

/// Create every topic push reads.
pub(crate) async fn create_all_topics(topics: &Topics) {
    let wanted = [
        topics.instruments(),
        topics.ticks(),
        topics.bars(),
        topics.strikes(),
        topics.chains(),
        topics.moneyness(),
        topics.indicators(),
    ];
    let specs: Vec<_> = topics
        .all()
        .into_iter()
        .filter(|s| wanted.contains(&s.name))
        .collect();
    strikeflow_kafka::ensure_topics(&brokers(), &specs, 1)
        .await
        .expect("create topics");
}

pub(crate) fn chain_key(underlying: &str) -> String {
    ChainKey {
        underlying: underlying.to_owned(),
        expiry: Some(EXPIRY),
    }
    .to_string()
}

pub(crate) fn summary(underlying: &str, ts: i64) -> ChainAnalytics {
    ChainAnalytics {
        underlying: underlying.to_owned(),
        expiry: EXPIRY,
        ts,
        minute_close: false,
        time_to_expiry: 0.05,
        spot: Some(26_000.0 + ts as f64),
        future: Some(26_050.0),
        parity_forward: Some(26_040.0),
        reference_price: 26_050.0,
        reference_kind: ReferenceKind::Future,
        atm_strike: 26_050.0,
        pcr_oi: Some(0.9),
        pcr_volume: Some(1.1),
        max_pain: Some(26_000.0),
        atm_straddle: Some(310.5),
        implied_move_pct: Some(1.19),
        atm_iv: Some(0.13),
        skew_25d: Some(0.01),
        support: Some(25_800.0),
        resistance: Some(26_300.0),
        basis: Some(50.0),
        annualised_carry: Some(0.04),
        net_gex: None,
        total_ce_oi: 1_000_000,
        total_pe_oi: 900_000,
        ce_oi_change_prev_close: None,
        pe_oi_change_prev_close: None,
    }
}

pub(crate) fn row(
    underlying: &str,
    ts: i64,
    strike: f64,
    side: OptionSide,
    pad: usize,
) -> StrikeAnalytics {
    StrikeAnalytics {
        instrument_token: strike as i64 * 10 + i64::from(side == OptionSide::PE),
        // Padding makes rows as large as a test needs (the slow-reader test).
        tradingsymbol: format!("NIFTY{}{:?}{}", strike as i64, side, "X".repeat(pad)),
        underlying: underlying.to_owned(),
        expiry: EXPIRY,
        strike,
        option_type: side,
        ts,
        ltp: 100.0 + ts as f64,
        ltp_change_prev_close: None,
        oi: 1_000 + ts,
        oi_change_prev_close: None,
        oi_change_window: None,
        volume: 10 * ts,
        bid: 99.5,
        ask: 100.5,
        iv: Some(0.12),
        no_iv_reason: None,
        delta: Some(0.5),
        gamma: None,
        theta: None,
        vega: None,
        rho: None,
        build_up: BuildUp::Neutral,
        strike_pcr: None,
        gex: None,
    }
}

/// What a client holds of a chain: the summary and the latest row per strike and side.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ChainView {
    pub(crate) summary: Value,
    pub(crate) rows: BTreeMap<String, Value>,
}

impl ChainView {
    pub(crate) fn row_key(row: &Value) -> String {
        format!("{}/{}", row["strike"], row["option_type"])
    }

    /// Apply a chain message: a snapshot replaces, a delta updates.
    pub(crate) fn apply(&mut self, msg: &Value) {
        assert_eq!(msg["type"], "chain", "{msg}");
        if msg["snapshot"] == true {
            *self = ChainView::default();
        }
        let data = &msg["data"];
        if !data["summary"].is_null() {
            self.summary = data["summary"].clone();
        }
        for row in data["strikes"].as_array().expect("strikes") {
            self.rows.insert(Self::row_key(row), row.clone());
        }
    }

    /// The chain as published: the last summary and the last row per key.
    pub(crate) fn published(summaries: &[ChainAnalytics], rows: &[StrikeAnalytics]) -> ChainView {
        let mut view = ChainView::default();
        if let Some(last) = summaries.last() {
            view.summary = serde_json::to_value(last).expect("json");
        }
        for r in rows {
            let value = serde_json::to_value(r).expect("json");
            view.rows.insert(Self::row_key(&value), value);
        }
        view
    }
}

/// Publish boundary `ts` of a chain: its summary, then rows for `strikes` (all enqueued at
/// once, in order, then awaited).
pub(crate) async fn publish_boundary(
    producer: &FutureProducer,
    topics: &Topics,
    underlying: &str,
    ts: i64,
    strikes: &[f64],
    pad: usize,
) -> (ChainAnalytics, Vec<StrikeAnalytics>) {
    let key = chain_key(underlying);
    let s = summary(underlying, ts);
    let mut records = vec![(topics.chains(), encode(&s).expect("encode"))];
    let mut rows = Vec::new();
    for &strike in strikes {
        for side in [OptionSide::CE, OptionSide::PE] {
            let r = row(underlying, ts, strike, side, pad);
            records.push((topics.strikes(), encode(&r).expect("encode")));
            rows.push(r);
        }
    }
    let sends = records.iter().map(|(topic, payload)| {
        producer.send(
            FutureRecord::to(topic).key(&key).payload(payload),
            Duration::from_secs(10),
        )
    });
    for result in futures::future::join_all(sends).await {
        result.map_err(|(err, _)| err).expect("produce");
    }
    (s, rows)
}

/// Read chain messages into `view` until one numbered `seq` has been applied; returns the
/// data messages read. Waits up to [`STARTUP`] in all, since a fresh node's first chain
/// comes only once it has found and replayed the fresh topics.
pub(crate) async fn read_chain_until(ws: &mut Ws, view: &mut ChainView, seq: u64) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + STARTUP;
    let mut got = Vec::new();
    loop {
        let msg = match next_frame_by(ws, deadline).await {
            Some(Frame::Json(msg)) => msg,
            None => panic!(
                "no chain seq {seq} within {STARTUP:?} (got {} messages)",
                got.len()
            ),
            other => panic!("waiting for chain seq {seq}: {other:?}"),
        };
        if msg["type"] != "chain" {
            continue;
        }
        view.apply(&msg);
        let at = msg["seq"].as_u64().expect("seq");
        got.push(msg);
        if at >= seq {
            return got;
        }
    }
}
