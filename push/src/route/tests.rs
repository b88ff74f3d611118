//! Tests of routing records to channels: numbering, symbols, built bars, item state.

use std::sync::Arc;

use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::Timestamp;
use strikeflow_schemas::{encode, InstrumentType, REFERENCE_COPY_HEADER};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::queue::ClientQueue;

fn instrument(token: i64, symbol: &str) -> Instrument {
    Instrument {
        instrument_token: token,
        exchange_token: token >> 8,
        tradingsymbol: symbol.to_owned(),
        name: "NIFTY".to_owned(),
        last_price: 0.0,
        expiry: Some(20_814),
        strike: 0.0,
        tick_size: 0.05,
        lot_size: 65,
        instrument_type: InstrumentType::FUT,
        segment: "NFO-FUT".to_owned(),
        exchange: "NFO".to_owned(),
    }
}

fn bar(token: i64, minute: i64, close: f64) -> Bar {
    Bar {
        instrument_token: token,
        window_start: minute * 60_000_000,
        window_end: (minute + 1) * 60_000_000,
        open: 26_000.0,
        high: 26_050.5,
        low: 25_990.0,
        close,
        volume: 1_300,
        oi: 12_000_000,
        tick_count: 42,
    }
}

fn tick(token: i64) -> Tick {
    Tick {
        instrument_token: token,
        exchange_ts: 1_766_000_001_000_000,
        ltp: 26_010.05,
        last_qty: 65,
        volume: 10_000,
        oi: 12_000_000,
        bid: 26_010.0,
        bid_qty: 130,
        ask: 26_010.1,
        ask_qty: 195,
    }
}

fn setup() -> (FeedState, Arc<Hub>) {
    let hub = Arc::new(Hub::new());
    let link = Arc::new(crate::redis_link::RedisLink::new("redis://127.0.0.1:1").expect("url"));
    let snapshots = Arc::new(SnapshotStore::new(link, ""));
    let state = FeedState::new(
        hub.clone(),
        snapshots,
        Arc::new(Catalogue::default()),
        Topics::new(""),
    );
    (state, hub)
}

fn subscribe(hub: &Hub, kind: ChannelKind, channel: &str) -> Arc<ClientQueue> {
    let q = Arc::new(ClientQueue::new(64, CancellationToken::new()));
    hub.subscribe(hub.next_client_id(), &q, kind, channel, None, None);
    q.pop_batch(usize::MAX);
    q
}

fn drain(q: &ClientQueue) -> Vec<serde_json::Value> {
    q.pop_batch(usize::MAX)
        .into_iter()
        .map(|m| serde_json::from_str(m.as_str()).expect("json"))
        .collect()
}

fn at(source: Source, partition: i32, offset: i64) -> Position {
    Position {
        source,
        partition,
        offset,
    }
}

#[test]
fn bars_are_numbered_by_their_kafka_position() {
    let (mut state, hub) = setup();
    let q = subscribe(&hub, ChannelKind::Bars, "bars.NIFTY26DECFUT");
    state.on_instrument(Some(
        &encode(&instrument(13_238_786, "NIFTY26DECFUT")).expect("encode"),
    ));
    let b = bar(13_238_786, 0, 26_031.5);
    state.on_bar(at(Source::Bars, 2, 41), Some(&encode(&b).expect("encode")));
    let got = drain(&q);
    assert_eq!(got.len(), 1);
    let msg = &got[0];
    assert_eq!(msg["type"], "bar");
    assert_eq!(msg["channel"], "bars.NIFTY26DECFUT");
    assert_eq!(msg["seq"], 42);
    assert_eq!(msg["epoch"], "bars.v1/2");
    let mut expected = serde_json::to_value(&b).expect("json");
    expected["tradingsymbol"] = "NIFTY26DECFUT".into();
    assert_eq!(msg["data"], expected);
    // The latest bar is waiting for Redis.
    assert_eq!(state.snapshots.pending_len(), 1);
}

#[test]
fn three_minute_bars_are_built_from_minutes() {
    let (mut state, hub) = setup();
    state.on_instrument(Some(&encode(&instrument(1, "FUT")).expect("encode")));
    let q = subscribe(&hub, ChannelKind::Bars, "bars.FUT.3m");
    for minute in 0..6 {
        let b = bar(1, minute, 100.0 + minute as f64);
        state.on_bar(
            at(Source::Bars, 0, minute),
            Some(&encode(&b).expect("encode")),
        );
    }
    let got = drain(&q);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["data"]["close"], 102.0);
    assert_eq!(
        got[0]["seq"], 6,
        "numbered by the minute that completed it, doubled"
    );
    assert_eq!(got[0]["epoch"], "bars.v1/0/built");
    assert_eq!(got[1]["data"]["window_start"], 180_000_000);
}

#[test]
fn a_minute_completing_two_built_bars_numbers_both() {
    let (mut state, hub) = setup();
    state.on_instrument(Some(&encode(&instrument(1, "FUT")).expect("encode")));
    let q = subscribe(&hub, ChannelKind::Bars, "bars.FUT.3m");
    // Minutes 1-4 had no trades: minute 5 closes window 0-2 late and completes 3-5.
    state.on_bar(
        at(Source::Bars, 0, 10),
        Some(&encode(&bar(1, 0, 100.0)).expect("encode")),
    );
    state.on_bar(
        at(Source::Bars, 0, 11),
        Some(&encode(&bar(1, 5, 105.0)).expect("encode")),
    );
    let got = drain(&q);
    let seqs: Vec<_> = got
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, vec![23, 24], "{got:?}");
    assert_eq!(got[0]["data"]["close"], 100.0);
    assert_eq!(got[1]["data"]["close"], 105.0);
}

#[test]
fn ticks_go_to_the_symbol_channel() {
    let (mut state, hub) = setup();
    let q = subscribe(&hub, ChannelKind::Ticks, "ticks.NIFTY26DECFUT");
    state.on_instrument(Some(
        &encode(&instrument(1, "NIFTY26DECFUT")).expect("encode"),
    ));
    state.on_tick_message(&tick_message(1, 0, 7, None));
    state.on_tick_message(&tick_message(1, 0, 8, None));
    let got = drain(&q);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["type"], "tick");
    assert_eq!(got[1]["seq"], 9);
    assert_eq!(got[1]["data"]["tradingsymbol"], "NIFTY26DECFUT");
    assert_eq!(
        state.snapshots.pending_len(),
        0,
        "ticks are not snapshotted"
    );
}

/// A message of the ticks topic as the live consumer hands it over.
fn tick_message(token: i64, partition: i32, offset: i64, header: Option<&str>) -> OwnedMessage {
    let headers = header.map(|key| {
        OwnedHeaders::new().insert(Header {
            key,
            value: Some("1"),
        })
    });
    OwnedMessage::new(
        Some(encode(&tick(token)).expect("encode")),
        Some(b"NIFTY".to_vec()),
        "ticks.v1".to_owned(),
        Timestamp::NotAvailable,
        partition,
        offset,
        headers,
    )
}

#[test]
fn reference_copies_of_spot_ticks_are_not_pushed() {
    let (mut state, hub) = setup();
    let q = subscribe(&hub, ChannelKind::Ticks, "ticks.NIFTY50");
    state.on_instrument(Some(
        &encode(&instrument(256_265, "NIFTY50")).expect("encode"),
    ));
    state.on_tick_message(&tick_message(256_265, 3, 10, None));
    for partition in 0..6 {
        state.on_tick_message(&tick_message(
            256_265,
            partition,
            11,
            Some(REFERENCE_COPY_HEADER),
        ));
    }
    // Some other header does not make a tick a copy.
    state.on_tick_message(&tick_message(256_265, 3, 12, Some("traceparent")));
    let got = drain(&q);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["seq"], 11);
    assert_eq!(got[1]["seq"], 13);
    assert_eq!(got[0]["data"]["tradingsymbol"], "NIFTY50");
}

#[test]
fn unknown_token_uses_the_fallback_channel() {
    let (mut state, hub) = setup();
    let q = subscribe(&hub, ChannelKind::Bars, "bars.777");
    state.on_bar(
        at(Source::Bars, 0, 0),
        Some(&encode(&bar(777, 0, 1.0)).expect("encode")),
    );
    let got = drain(&q);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["channel"], "bars.777");
    assert_eq!(got[0]["data"]["tradingsymbol"], serde_json::Value::Null);
}

#[test]
fn moneyness_points_conflate_per_bucket_and_snapshot_all_buckets() {
    let (mut state, hub) = setup();
    let point = |bucket: &str, ltp: f64| MoneynessPoint {
        underlying: "NIFTY".to_owned(),
        expiry: 20_816,
        minute: 0,
        bucket: bucket.to_owned(),
        level: 0,
        side: OptionSide::CE,
        instrument_token: 5,
        strike: 26_000.0,
        ltp,
        iv: None,
        delta: None,
        oi: 1,
        volume: 1,
    };
    for (i, (bucket, ltp)) in [("ATM", 1.0), ("OTM1", 2.0), ("ATM", 3.0)]
        .into_iter()
        .enumerate()
    {
        state.on_moneyness(
            at(Source::Moneyness, 1, i as i64),
            Some(&encode(&point(bucket, ltp)).expect("encode")),
        );
    }
    let q = Arc::new(ClientQueue::new(64, CancellationToken::new()));
    hub.subscribe(
        9,
        &q,
        ChannelKind::Moneyness,
        "moneyness.NIFTY.2026-12-29",
        None,
        None,
    );
    let got = drain(&q);
    assert_eq!(got[1]["snapshot"], true, "{got:?}");
    let ltps: Vec<_> = got[1]["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["ltp"].as_f64().expect("ltp"))
        .collect();
    assert_eq!(ltps, vec![3.0, 2.0]);
}

#[test]
fn garbage_is_skipped_without_panicking() {
    let (mut state, hub) = setup();
    state.on_bar(at(Source::Bars, 0, 0), Some(b"\xff\x00garbage"));
    state.on_strike(at(Source::Strikes, 0, 0), None);
    state.on_chain(at(Source::Chains, 0, 0), Some(b"\x01"), None);
    state.on_instrument(Some(b"\x01"));
    state.on_instrument(None);
    assert_eq!(hub.channel_count(), 0);
}

/// A bars topic whose producers switched from single-object to Confluent framing: both
/// halves are pushed, in order; a Confluent record whose schema id the registry could not
/// resolve is counted and skipped, the bars after it still pushed.
#[test]
fn bars_of_both_framings_are_pushed_and_an_unresolved_id_is_skipped() {
    use strikeflow_schemas::{encode_framed, Framing};
    let (mut state, hub) = setup();
    let registry = Registry::none();
    // What `resolve` leaves behind for a Bar id the registry knew and one it could not reach.
    registry.ids().insert_record::<Bar>(7).expect("schema");
    registry
        .ids()
        .insert_failure(8, "schema registry at http://r unreachable".into());
    state.set_registry(registry);
    state.on_instrument(Some(
        &encode_framed(&instrument(1, "FUT"), Framing::SingleObject).expect("encode"),
    ));
    let q = subscribe(&hub, ChannelKind::Bars, "bars.FUT");
    let framings = [
        Framing::SingleObject,
        Framing::SingleObject,
        Framing::Confluent { id: 7 },
        Framing::Confluent { id: 8 },
        Framing::Confluent { id: 7 },
    ];
    for (minute, framing) in framings.into_iter().enumerate() {
        let bytes =
            encode_framed(&bar(1, minute as i64, 100.0 + minute as f64), framing).expect("encode");
        state.on_bar(at(Source::Bars, 0, minute as i64), Some(&bytes));
    }
    let closes: Vec<f64> = drain(&q)
        .iter()
        .map(|m| m["data"]["close"].as_f64().expect("close"))
        .collect();
    assert_eq!(closes, [100.0, 101.0, 102.0, 104.0]);
}
