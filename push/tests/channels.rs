//! The analytics channels, numbering and recovery over the real server and Kafka
//! (`./dev up`): a chain rebuilt from snapshot + deltas equals what was published; `since`
//! recovers exactly the missed messages or says `recovered:false`; two nodes number the
//! same message alike and a client fails over between them without a loss; a slow chain
//! reader is conflated while a fast one gets every update; `list` follows the token.

mod common;

use std::time::Duration;

use common::chain::*;
use common::tokens::{claims, hs256};
use common::*;
use rdkafka::producer::FutureProducer;
use serde_json::{json, Value};
use strikeflow_schemas::{encode, Instrument, InstrumentType, Topics};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_snapshot_and_deltas_rebuild_the_published_chain() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let server = TestServer::start(config(&topics)).await;
    let producer = producer();
    let channel = format!("chain.NIFTY.{}", expiry_date());
    let token = hs256(&claims("trader", &["chain.*"]));

    let mut early = connect(&server, &token).await;
    send_json(&mut early, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut early, &channel).await;

    let (mut summaries, mut rows) = (Vec::new(), Vec::new());
    let strikes = [25_900.0, 26_000.0, 26_100.0, 26_200.0];
    // Boundary 1 has every strike; later ones only some (the rows that ticked).
    for ts in 1..=6i64 {
        let ticked: Vec<f64> = if ts == 1 {
            strikes.to_vec()
        } else {
            strikes
                .iter()
                .copied()
                .skip(ts as usize % 3)
                .step_by(2)
                .collect()
        };
        let (s, r) = publish_boundary(&producer, &topics, "NIFTY", ts, &ticked, 0).await;
        summaries.push(s);
        rows.extend(r);
    }
    let expected = ChainView::published(&summaries, &rows);

    let mut view = ChainView::default();
    let got = read_chain_until(&mut early, &mut view, 6).await;
    assert_eq!(view, expected, "snapshot + deltas = the published chain");
    // One message per boundary, numbered by it, each carrying only its rows.
    let seqs: Vec<u64> = got
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
    for msg in &got {
        let ts = msg["seq"].as_i64().expect("seq");
        let rows = msg["data"]["strikes"].as_array().expect("rows");
        assert!(rows.iter().all(|r| r["ts"] == ts), "{msg}");
        assert_eq!(msg["data"]["summary"]["ts"], ts);
    }

    // A late subscriber gets the whole chain at once, flagged as a snapshot.
    let mut late = connect(&server, &token).await;
    send_json(&mut late, json!({"op":"subscribe","channel":channel})).await;
    let reply = expect_subscribed(&mut late, &channel).await;
    assert_eq!(reply["seq"], 6);
    let snapshot = next_json(&mut late).await;
    assert_eq!(snapshot["snapshot"], true, "{snapshot}");
    let mut late_view = ChainView::default();
    late_view.apply(&snapshot);
    assert_eq!(late_view, expected);

    // Resuming from boundary 3 gets exactly 4, 5 and 6; from before this node's history,
    // a snapshot with recovered:false.
    let epoch = got[0]["epoch"].as_str().expect("epoch").to_owned();
    let mut resumed = connect(&server, &token).await;
    send_json(
        &mut resumed,
        json!({"op":"subscribe","channel":channel,"since":{"epoch":epoch,"seq":3}}),
    )
    .await;
    assert_eq!(
        expect_subscribed(&mut resumed, &channel).await["recovered"],
        true
    );
    for (i, want) in (4..=6).enumerate() {
        let msg = next_json(&mut resumed).await;
        assert_eq!(msg, got[want as usize - 1], "message {i} after since");
    }
    send_json(
        &mut resumed,
        json!({"op":"subscribe","channel":channel,"since":{"epoch":"some/other/epoch","seq":3}}),
    )
    .await;
    assert_eq!(
        expect_subscribed(&mut resumed, &channel).await["recovered"],
        false
    );
    assert_eq!(next_json(&mut resumed).await, snapshot);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_since_older_than_the_history_gets_a_snapshot_flagged_not_recovered() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let mut cfg = config(&topics);
    // Room for one or two chain messages only.
    cfg.settings.history_bytes = 1;
    let server = TestServer::start(cfg).await;
    let producer = producer();
    let channel = format!("chain.NIFTY.{}", expiry_date());
    let token = hs256(&claims("trader", &["chain.*"]));
    let mut ws = connect(&server, &token).await;
    send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut ws, &channel).await;
    for ts in 1..=4 {
        publish_boundary(&producer, &topics, "NIFTY", ts, &[26_000.0], 0).await;
    }
    let mut view = ChainView::default();
    let got = read_chain_until(&mut ws, &mut view, 4).await;
    let epoch = got[0]["epoch"].as_str().expect("epoch");

    let mut resumed = connect(&server, &token).await;
    send_json(
        &mut resumed,
        json!({"op":"subscribe","channel":channel,"since":{"epoch":epoch,"seq":1}}),
    )
    .await;
    let reply = expect_subscribed(&mut resumed, &channel).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    let snapshot = next_json(&mut resumed).await;
    assert_eq!(snapshot["snapshot"], true);
    assert_eq!(snapshot["seq"], 4);
    // Still exact within what is kept.
    send_json(
        &mut resumed,
        json!({"op":"subscribe","channel":channel,"since":{"epoch":epoch,"seq":3}}),
    )
    .await;
    assert_eq!(
        expect_subscribed(&mut resumed, &channel).await["recovered"],
        true
    );
    assert_eq!(next_json(&mut resumed).await, got[3]);
    server.stop().await;
}

/// Produce ticks of `token` from index `from` until every client in `clients` has
/// received one; returns the index of the next tick to produce.
async fn warm_up_ticks(
    producer: &FutureProducer,
    topics: &Topics,
    token: i64,
    from: i64,
    clients: &mut [&mut Ws],
) -> i64 {
    let deadline = tokio::time::Instant::now() + STARTUP;
    let mut i = from;
    let mut seen = vec![false; clients.len()];
    while !seen.iter().all(|s| *s) {
        assert!(tokio::time::Instant::now() < deadline, "ticks never flowed");
        let bytes = encode(&tick(token, i)).expect("encode");
        produce(producer, &topics.ticks(), &token.to_string(), &bytes).await;
        i += 1;
        for (c, ws) in clients.iter_mut().enumerate() {
            while let Some(Frame::Json(msg)) = next_frame(ws, Duration::from_millis(150)).await {
                if msg["type"] == "tick" {
                    seen[c] = true;
                }
            }
        }
    }
    i
}

/// Read ticks until the one with `volume`; returns (volume, seq, epoch) of each.
async fn ticks_until(ws: &mut Ws, volume: i64) -> Vec<(i64, u64, String)> {
    let mut out = Vec::new();
    loop {
        let msg = next_json(ws).await;
        if msg["type"] != "tick" {
            continue;
        }
        let v = msg["data"]["volume"].as_i64().expect("volume");
        out.push((
            v,
            msg["seq"].as_u64().expect("seq"),
            msg["epoch"].as_str().expect("epoch").to_owned(),
        ));
        if v >= volume {
            return out;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_number_alike_and_a_client_fails_over_without_loss() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let producer = producer();
    let token_id: i64 = 4_242_424;
    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());
    let inst = encode(&instrument(token_id, &symbol)).expect("encode");
    produce(
        &producer,
        &topics.instruments(),
        &token_id.to_string(),
        &inst,
    )
    .await;
    let channel = format!("ticks.{symbol}");
    let token = hs256(&claims("trader", &["ticks.*"]));

    // A starts first and sees ticks B never sees: counting messages per node would number
    // them differently.
    let a = TestServer::start(config(&topics)).await;
    let mut on_a = connect(&a, &token).await;
    send_json(&mut on_a, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut on_a, &channel).await;
    let mut next = warm_up_ticks(&producer, &topics, token_id, 0, &mut [&mut on_a]).await;
    let b = TestServer::start(config(&topics)).await;
    let mut watcher_b = connect(&b, &token).await;
    send_json(&mut watcher_b, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut watcher_b, &channel).await;
    next = warm_up_ticks(
        &producer,
        &topics,
        token_id,
        next,
        &mut [&mut on_a, &mut watcher_b],
    )
    .await;

    // Ten ticks, read on A.
    for _ in 0..10 {
        let bytes = encode(&tick(token_id, next)).expect("encode");
        produce(&producer, &topics.ticks(), &token_id.to_string(), &bytes).await;
        next += 1;
    }
    let last_volume = 10_000 + next - 1;
    let seen_a = ticks_until(&mut on_a, last_volume).await;
    let seen_b = ticks_until(&mut watcher_b, last_volume).await;
    // Both nodes number every tick alike.
    let tail = |v: &[(i64, u64, String)]| v[v.len() - 10..].to_vec();
    assert_eq!(tail(&seen_a), tail(&seen_b));
    let (_, last_seq, epoch) = seen_a.last().cloned().expect("ticks");
    drop(on_a);

    // While the client is away, five more ticks; it resumes on B.
    for _ in 0..5 {
        let bytes = encode(&tick(token_id, next)).expect("encode");
        produce(&producer, &topics.ticks(), &token_id.to_string(), &bytes).await;
        next += 1;
    }
    let missed = ticks_until(&mut watcher_b, 10_000 + next - 1).await;
    let mut on_b = connect(&b, &token).await;
    send_json(
        &mut on_b,
        json!({"op":"subscribe","channel":channel,"since":{"epoch":epoch,"seq":last_seq}}),
    )
    .await;
    assert_eq!(
        expect_subscribed(&mut on_b, &channel).await["recovered"],
        true
    );
    let recovered = ticks_until(&mut on_b, 10_000 + next - 1).await;
    assert_eq!(
        recovered, missed,
        "exactly the missed ticks, numbered alike"
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_chain_reader_is_conflated_while_a_fast_one_gets_every_update() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let mut cfg = config(&topics);
    // A client with this many messages waiting is behind and gets conflated.
    cfg.settings.client_queue = 16;
    // The slow reader answers no pings while it is not reading.
    cfg.settings.ping_interval_secs = 300;
    let server = TestServer::start(cfg).await;
    let producer = producer();
    let channel = format!("chain.NIFTY.{}", expiry_date());
    let token = hs256(&claims("trader", &["chain.*"]));
    let mut fast = connect(&server, &token).await;
    let mut slow = connect(&server, &token).await;
    for ws in [&mut fast, &mut slow] {
        send_json(ws, json!({"op":"subscribe","channel":channel})).await;
        expect_subscribed(ws, &channel).await;
    }

    // Large rows, so the slow reader's socket buffers fill and its queue must conflate.
    // The fast reader reads each boundary before the next is published: it keeps up.
    let strikes: Vec<f64> = (0..40).map(|i| 25_000.0 + 50.0 * f64::from(i)).collect();
    let boundaries = 40i64;
    let (mut summaries, mut rows) = (Vec::new(), Vec::new());
    let (mut fast_view, mut fast_got) = (ChainView::default(), Vec::new());
    for ts in 1..=boundaries {
        let (s, r) = publish_boundary(&producer, &topics, "NIFTY", ts, &strikes, 5_000).await;
        summaries.push(s);
        rows.extend(r);
        fast_got.extend(read_chain_until(&mut fast, &mut fast_view, ts as u64).await);
    }
    let expected = ChainView::published(&summaries, &rows);
    let fast_seqs: Vec<u64> = fast_got
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect();
    assert_eq!(fast_seqs, (1..=boundaries as u64).collect::<Vec<_>>());
    // (Rows are padded to kilobytes: compare without printing them.)
    assert!(
        fast_view == expected,
        "the fast reader's chain is not the published one"
    );

    // Only now does the slow reader read: it skipped to whole current chains and ends on
    // the same chain, still connected.
    let mut slow_view = ChainView::default();
    let slow_got = read_chain_until(&mut slow, &mut slow_view, boundaries as u64).await;
    assert!(
        slow_view == expected,
        "the slow reader's chain is not the published one"
    );
    assert!(
        slow_got.len() < fast_got.len(),
        "the slow reader was not conflated ({} messages)",
        slow_got.len()
    );
    assert!(slow_got.iter().any(|m| m["snapshot"] == true));
    send_json(&mut slow, json!({"op":"ping"})).await;
    loop {
        let msg = next_json(&mut slow).await;
        if msg["type"] == "pong" {
            break;
        }
    }
    server.stop().await;
}

fn option(token: i64, name: &str, expiry: i32) -> Instrument {
    Instrument {
        name: name.to_owned(),
        expiry: Some(expiry),
        strike: 26_000.0,
        instrument_type: InstrumentType::CE,
        segment: "NFO-OPT".to_owned(),
        ..instrument(token, &format!("{name}{token}CE"))
    }
}

/// The `list` reply for a token granting `channels`; with `wait`, asks again (for up to
/// [`STARTUP`]) until the instrument master (read at start-up) has filled the catalogue.
async fn list(server: &TestServer, channels: &[&str], wait: bool) -> Value {
    let mut ws = connect(server, &hs256(&claims("trader", channels))).await;
    let deadline = tokio::time::Instant::now() + STARTUP;
    loop {
        send_json(&mut ws, json!({"op":"list"})).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "list", "{reply}");
        let empty = reply["underlyings"].as_array().is_some_and(Vec::is_empty);
        if !wait || !empty {
            return reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "catalogue stayed empty"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_shows_only_what_the_token_allows() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let producer = producer();
    for (token, name, expiry) in [
        (1, "NIFTY", EXPIRY),
        (2, "NIFTY", EXPIRY + 7),
        (3, "BANKNIFTY", EXPIRY),
    ] {
        let bytes = encode(&option(token, name, expiry)).expect("encode");
        produce(&producer, &topics.instruments(), &token.to_string(), &bytes).await;
    }
    let server = TestServer::start(config(&topics)).await;
    let d0 = expiry_date();
    let d1 = strikeflow_schemas::date_from_days(EXPIRY + 7)
        .expect("date")
        .to_string();

    let all = list(&server, &["*"], true).await;
    assert_eq!(
        all["underlyings"],
        json!([
            {"underlying":"BANKNIFTY","expiries":[d0]},
            {"underlying":"NIFTY","expiries":[d0, d1]},
        ])
    );
    assert_eq!(
        all["channels"],
        json!([
            "chain.<UNDERLYING>.<EXPIRY>",
            "moneyness.<UNDERLYING>.<EXPIRY>",
            "indicators.<SYMBOL>.<TF>",
            "bars.<SYMBOL>[.<TF>]",
            "ticks.<SYMBOL>"
        ])
    );

    let nifty_chains = list(&server, &["chain.NIFTY.*"], false).await;
    assert_eq!(
        nifty_chains["underlyings"],
        json!([{"underlying":"NIFTY","expiries":[d0, d1]}])
    );
    assert_eq!(
        nifty_chains["channels"],
        json!(["chain.<UNDERLYING>.<EXPIRY>"])
    );

    let one_expiry = list(&server, &[&format!("moneyness.NIFTY.{d1}")], false).await;
    assert_eq!(
        one_expiry["underlyings"],
        json!([{"underlying":"NIFTY","expiries":[d1]}])
    );

    // The token's patterns apply to the new channels as to the old.
    let mut ws = connect(&server, &hs256(&claims("trader", &["chain.NIFTY.*"]))).await;
    for denied in [
        format!("chain.BANKNIFTY.{d0}"),
        format!("moneyness.NIFTY.{d0}"),
        "indicators.NIFTY26DECFUT.5m".to_owned(),
        "bars.NIFTY26DECFUT.15m".to_owned(),
    ] {
        send_json(&mut ws, json!({"op":"subscribe","channel":denied})).await;
        let reply = next_json(&mut ws).await;
        assert_eq!(reply["type"], "error", "{denied}: {reply}");
    }
    let allowed = format!("chain.NIFTY.{d1}");
    send_json(&mut ws, json!({"op":"subscribe","channel":allowed})).await;
    expect_subscribed(&mut ws, &allowed).await;

    let bars_only = list(&server, &["bars.*"], false).await;
    assert_eq!(bars_only["underlyings"], json!([]));
    assert_eq!(bars_only["channels"], json!(["bars.<SYMBOL>[.<TF>]"]));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moneyness_indicators_and_built_bars_flow_from_kafka() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let producer = producer();
    let token_id: i64 = 7_777_001;
    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());
    let inst = encode(&instrument(token_id, &symbol)).expect("encode");
    produce(
        &producer,
        &topics.instruments(),
        &token_id.to_string(),
        &inst,
    )
    .await;
    let server = TestServer::start(config(&topics)).await;
    // Produce only once the node has read the instrument master (its catalogue lists the
    // future's underlying): bars and indicators are named by trading symbol, and a node
    // still catching up when they come would publish them under the token instead.
    let listed = list(&server, &["*"], true).await;
    assert_eq!(listed["underlyings"][0]["underlying"], "NIFTY", "{listed}");
    let token = hs256(&claims("trader", &["*"]));
    let (bars3, indicators5, moneyness) = (
        format!("bars.{symbol}.3m"),
        format!("indicators.{symbol}.5m"),
        format!("moneyness.NIFTY.{}", expiry_date()),
    );
    let mut ws = connect(&server, &token).await;
    for channel in [&bars3, &indicators5, &moneyness] {
        send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
        expect_subscribed(&mut ws, channel).await;
    }

    let key = token_id.to_string();
    let minutes: Vec<_> = (0..9).map(|i| bar(token_id, i)).collect();
    for b in &minutes {
        produce(&producer, &topics.bars(), &key, &encode(b).expect("encode")).await;
    }
    let point = |indicator: &str, value: f64| strikeflow_schemas::IndicatorPoint {
        instrument_token: token_id,
        timeframe_minutes: 5,
        window_start: minutes[0].window_start,
        indicator: indicator.to_owned(),
        params: "period=14".to_owned(),
        outputs: [(indicator.to_owned(), value)].into_iter().collect(),
    };
    for p in [
        point("rsi", 40.0),
        point("sma", 26_000.0),
        point("rsi", 45.0),
    ] {
        produce(
            &producer,
            &topics.indicators(),
            &key,
            &encode(&p).expect("encode"),
        )
        .await;
    }
    let m = strikeflow_schemas::MoneynessPoint {
        underlying: "NIFTY".to_owned(),
        expiry: EXPIRY,
        minute: minutes[0].window_start,
        bucket: "ATM".to_owned(),
        level: 0,
        side: strikeflow_schemas::OptionSide::CE,
        instrument_token: 11,
        strike: 26_000.0,
        ltp: 120.5,
        iv: Some(0.12),
        delta: Some(0.5),
        oi: 10,
        volume: 20,
    };
    let chain = chain_key("NIFTY");
    produce(
        &producer,
        &topics.moneyness(),
        &chain,
        &encode(&m).expect("encode"),
    )
    .await;

    // Read until the three indicator values, the moneyness point and two built bars are in
    // (the three topics are read side by side, in no set order). One deadline for all of
    // it: the first messages come only once the node has assigned and replayed the fresh
    // topics, which on a loaded machine can take long.
    let deadline = tokio::time::Instant::now() + STARTUP;
    let (mut built, mut values, mut points) = (Vec::new(), Vec::new(), Vec::new());
    while values.len() < 3 || points.is_empty() || built.len() < 2 {
        let msg = match next_frame_by(&mut ws, deadline).await {
            Some(Frame::Json(msg)) => msg,
            other => panic!(
                "waiting for indicators, moneyness and bars (have {} indicator values, {} \
                 moneyness points, {} bars): {other:?}",
                values.len(),
                points.len(),
                built.len()
            ),
        };
        match msg["type"].as_str() {
            Some("bar") => built.push(msg),
            Some("indicator") => values.push(msg),
            Some("moneyness") => points.push(msg),
            _ => panic!("unexpected {msg}"),
        }
    }
    // Nine minutes complete at least two aligned three-minute windows; each bar closes at
    // its last minute's close and sums the minutes' volume.
    assert!(built.len() >= 2, "{built:?}");
    for b in &built {
        assert_eq!(b["channel"], bars3.as_str());
        let (start, end) = (
            b["data"]["window_start"].as_i64().expect("start"),
            b["data"]["window_end"].as_i64().expect("end"),
        );
        assert_eq!((end - start, start % 180_000_000), (180_000_000, 0), "{b}");
        let inside: Vec<_> = minutes
            .iter()
            .filter(|m| m.window_start >= start && m.window_end <= end)
            .collect();
        let last = inside.last().expect("minutes in the window");
        assert_eq!(b["data"]["close"], last.close);
        assert_eq!(
            b["data"]["volume"],
            inside.iter().map(|m| m.volume).sum::<i64>()
        );
        assert_eq!(b["data"]["tradingsymbol"], symbol.as_str());
    }
    let names: Vec<_> = values
        .iter()
        .map(|v| v["data"]["indicator"].clone())
        .collect();
    assert_eq!(names, vec![json!("rsi"), json!("sma"), json!("rsi")]);
    assert_eq!(values[2]["data"]["outputs"]["rsi"], 45.0);
    assert_eq!(points[0]["data"]["ltp"], 120.5);

    // A late subscriber starts from the latest value of each indicator.
    let mut late = connect(&server, &token).await;
    send_json(&mut late, json!({"op":"subscribe","channel":indicators5})).await;
    expect_subscribed(&mut late, &indicators5).await;
    let snapshot = next_json(&mut late).await;
    assert_eq!(snapshot["snapshot"], true, "{snapshot}");
    let latest: Vec<_> = snapshot["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| (v["indicator"].clone(), v["outputs"].clone()))
        .collect();
    assert_eq!(
        latest,
        vec![
            (json!("rsi"), json!({"rsi": 45.0})),
            (json!("sma"), json!({"sma": 26_000.0}))
        ]
    );
    server.stop().await;
}
