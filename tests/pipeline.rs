//! End to end on the real services: simulator → Kafka → processor → Kafka → sink →
//! PostgreSQL, and processor → Kafka → push → an authenticated WebSocket client.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{count, eventually, read_all, read_topic, Sandbox};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use strikeflow_ingest::{MarketSimulator, SimulatorConfig};
use strikeflow_push::PushServer;
use strikeflow_schemas::{decode, ChainAnalytics, IndicatorPoint, StrikeAnalytics, Tick};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

const TICKS: u64 = 5_950;
const LATENESS_MS: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_ticks_become_rows_bars_and_websocket_messages() {
    let mut sandbox = Sandbox::new("e2e").await;
    let config = &mut sandbox.config;
    // Paced like a live feed (~3 s of wall time), so the watermark advances as ticks arrive
    // and the analytics cadence emits second by second instead of once at the end.
    config.simulate.rate = 2_000.0;
    config.simulate.max_ticks = TICKS;
    // A pinned market: the NIFTY index, its near future and one weekly chain of ±2 strikes
    // (12 instruments), so ~10 minutes of ticks give every instrument bars in most minutes.
    config.simulate.market = SimulatorConfig::single_chain();
    config.simulate.market.tick_interval_ms = 100;
    config.processor.allowed_lateness_ms = LATENESS_MS;
    config.processor.group_id = format!("{}-processors", sandbox.name);
    config.push.listen = "127.0.0.1:0".parse().unwrap();
    let config = sandbox.config.clone();
    let shutdown = CancellationToken::new();

    let future_symbol = MarketSimulator::new(&config.simulate.market)
        .unwrap()
        .instruments()
        .iter()
        .find(|i| i.segment == "NFO-FUT")
        .map(|i| i.tradingsymbol.clone())
        .expect("the simulator lists a future");

    let push = PushServer::bind(config.push()).await.expect("binding push");
    let addr = push.local_addr();
    let stages = vec![tokio::spawn(push.serve(shutdown.clone()))];
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));

    // Without a token the upgrade is refused before any WebSocket exists.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!(
            "an unauthenticated client must get 401, got {:?}",
            other.map(|(_, r)| r.status())
        ),
    }
    let token = strikeflow_push::auth::mint(
        &config.auth.jwt_secret,
        "e2e",
        Duration::from_secs(600),
        vec![],
    )
    .expect("minting a token");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token={token}"))
        .await
        .expect("an authenticated client connects");
    let channel = format!("bars.{future_symbol}");
    ws.send(Message::text(
        serde_json::json!({"op": "subscribe", "channel": channel}).to_string(),
    ))
    .await
    .unwrap();
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    assert_eq!(reply["channel"], channel.as_str());
    // Keep reading (which also answers the server's pings) while the pipeline runs.
    let (pushed, mut received_rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        loop {
            let msg = next_json(&mut ws).await;
            if pushed.send(msg).is_err() {
                break;
            }
        }
    });

    let report = strikeflow_ingest::run_simulation(config.simulate(), shutdown.clone())
        .await
        .expect("simulation");
    assert_eq!(report.ticks, TICKS);

    let db = sandbox.db().await;
    eventually(
        "every tick in the ticks table",
        Duration::from_secs(90),
        || async { (count(&db, "SELECT count(*) FROM ticks").await == TICKS as i64).then_some(()) },
    )
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM (SELECT DISTINCT instrument_token, ts FROM ticks) t"
        )
        .await,
        TICKS as i64,
        "no tick stored twice"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM instruments").await,
        report.instruments as i64
    );

    // Each ticks partition has its own watermark: its newest record (the reference copies of
    // the spot included) minus the lateness. Every minute that ended by its partition's
    // watermark must be a bar; computed here from the ticks topic itself.
    let topics = config.topics();
    let records = read_all(&config.kafka.brokers, &topics.ticks());
    let decoded: Vec<(i32, bool, Tick)> = records
        .iter()
        .map(|r| {
            (
                r.partition,
                r.reference_copy,
                decode::<Tick>(&r.payload).expect("a tick"),
            )
        })
        .collect();
    let mut newest: BTreeMap<i32, i64> = BTreeMap::new();
    for (partition, _, tick) in &decoded {
        let n = newest.entry(*partition).or_insert(i64::MIN);
        *n = (*n).max(tick.exchange_ts);
    }
    let minute = 60_000_000;
    let closed: BTreeSet<(i64, i64)> = decoded
        .iter()
        .filter(|(_, reference, _)| !reference)
        .filter_map(|(partition, _, tick)| {
            let start = tick.exchange_ts - tick.exchange_ts.rem_euclid(minute);
            let watermark = newest[partition] - LATENESS_MS as i64 * 1_000;
            (start + minute <= watermark).then_some((tick.instrument_token, start))
        })
        .collect();
    let expected_bars = closed.len() as i64;
    assert!(
        expected_bars >= 12 * 8,
        "the session spans several minutes for each instrument, got {expected_bars}"
    );
    let bars = eventually(
        &format!("{expected_bars} closed bars in bars_1m"),
        Duration::from_secs(60),
        || async {
            let n = count(&db, "SELECT count(*) FROM bars_1m").await;
            eprintln!("bars_1m holds {n} of {expected_bars}");
            (n >= expected_bars).then_some(n)
        },
    )
    .await;
    assert_eq!(
        bars, expected_bars,
        "no bar beyond the watermark was closed"
    );
    // Bars agree with the ticks they were built from.
    let mismatched = count(
        &db,
        "SELECT count(*) FROM bars_1m b JOIN LATERAL ( \
           SELECT count(*) AS n, max(ltp) AS hi, min(ltp) AS lo FROM ticks t \
           WHERE t.instrument_token = b.instrument_token AND t.ts >= b.window_start AND t.ts < b.window_end) t ON true \
         WHERE t.n <> b.tick_count OR t.hi <> b.high OR t.lo <> b.low",
    )
    .await;
    assert_eq!(mismatched, 0, "bars must match their ticks");

    // Chain analytics and indicators reached their topics, decodable and sane.
    // One chain emitting once per event second: 150 records span at least two minute closes.
    let chains: Vec<ChainAnalytics> =
        read_topic(&config.kafka.brokers, &topics.chains(), 150).await;
    let strikes: Vec<f64> = MarketSimulator::new(&config.simulate.market)
        .unwrap()
        .instruments()
        .iter()
        .filter(|i| i.segment == "NFO-OPT")
        .map(|i| i.strike)
        .collect();
    for chain in &chains {
        assert_eq!(chain.underlying, "NIFTY");
        assert!(
            strikes.contains(&chain.atm_strike),
            "ATM {} is a listed strike",
            chain.atm_strike
        );
        assert!(chain.reference_price > 0.0 && chain.reference_price.is_finite());
        assert!(chain.pcr_oi.is_some_and(|p| p > 0.0), "{chain:?}");
    }
    assert!(
        chains.iter().any(|c| c.minute_close),
        "minute closes are flagged"
    );
    // Ten ticks per event second: every second's boundary is crossed by a tick of the
    // chain's partition, so there is one emission per event second, none collapsed.
    let gaps: BTreeSet<i64> = chains.windows(2).map(|w| w[1].ts - w[0].ts).collect();
    assert_eq!(
        gaps,
        BTreeSet::from([1_000_000]),
        "one chain emission per event second"
    );
    let strike_rows: Vec<StrikeAnalytics> =
        read_topic(&config.kafka.brokers, &topics.strikes(), 50).await;
    assert!(
        strike_rows
            .iter()
            .any(|s| s.iv.is_some_and(|iv| iv > 0.01 && iv < 2.0)),
        "some option has an IV"
    );
    // Every chain summary says how many strike rows its boundary has (what lets push
    // release a chain message without waiting for the next boundary). Summaries first:
    // their rows are in the same transaction, so the strikes read afterwards hold them all.
    let summaries = read_all(&config.kafka.brokers, &topics.chains());
    let mut rows_per_boundary: BTreeMap<(String, i32, i64), usize> = BTreeMap::new();
    for record in read_all(&config.kafka.brokers, &topics.strikes()) {
        let row: StrikeAnalytics = decode(&record.payload).expect("a strike row");
        *rows_per_boundary
            .entry((row.underlying, row.expiry, row.ts))
            .or_default() += 1;
    }
    assert!(!summaries.is_empty());
    for record in &summaries {
        let chain: ChainAnalytics = decode(&record.payload).expect("a chain summary");
        let rows = rows_per_boundary
            .get(&(chain.underlying.clone(), chain.expiry, chain.ts))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            record.strike_rows.as_deref(),
            Some(rows.to_string().as_str()),
            "strike-rows header of the summary at {}",
            chain.ts
        );
    }
    let points: Vec<IndicatorPoint> =
        read_topic(&config.kafka.brokers, &topics.indicators(), 10).await;
    assert!(points
        .iter()
        .all(|p| p.outputs.values().all(|v| v.is_finite())));

    // The authenticated client got bars for its channel, matching the stored rows.
    let mut received = 0;
    while received < 3 {
        let msg = tokio::time::timeout(Duration::from_secs(60), received_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {received} bar messages on {channel} within 60 s"))
            .expect("the reader is alive");
        if msg["type"] != "bar" {
            eprintln!("skipping {msg}");
            continue;
        }
        assert_eq!(msg["channel"], channel.as_str());
        let data = &msg["data"];
        let row = db
            .query_one(
                "SELECT close, tick_count FROM bars_1m WHERE instrument_token = $1 \
                 AND window_start = to_timestamp($2::float8 / 1e6)",
                &[
                    &data["instrument_token"].as_i64().unwrap(),
                    &(data["window_start"].as_i64().unwrap() as f64),
                ],
            )
            .await
            .expect("the pushed bar is stored");
        assert_eq!(row.get::<_, f64>(0), data["close"].as_f64().unwrap());
        assert_eq!(
            i64::from(row.get::<_, i32>(1)),
            data["tick_count"].as_i64().unwrap()
        );
        received += 1;
    }

    reader.abort();
    shutdown.cancel();
    processor.await.unwrap().expect("processor stops cleanly");
    sink.await.unwrap().expect("sink stops cleanly");
    for stage in stages {
        stage.await.unwrap().expect("push stops cleanly");
    }
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("a WebSocket message within 60 s")
            .expect("the socket stays open")
            .expect("a valid frame");
        match msg {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON message"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}
