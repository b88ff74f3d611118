//! The Kite client against the local fake ticker and real Kafka (`./dev up`): subscription,
//! ticks on the topic, reconnect after a dropped socket, the watchdog on a silent one, dead
//! letters for unknown tokens and broken frames, and refused credentials.

use std::path::PathBuf;
use std::time::Duration;

use strikeflow_ingest::kite::decode::{DepthLevel, Full, Index, Packet, Quote, DEPTH_LEVELS};
use strikeflow_ingest::kite::{
    run_kite, FakeTicker, FakeTickerConfig, KiteConfig, KiteError, ServerEvent,
};
use strikeflow_kafka::rdkafka::consumer::StreamConsumer;
use strikeflow_schemas::{decode, Tick, Topics};
use tokio_util::sync::CancellationToken;

mod common;
use common::{brokers, consumer, topics_and_dir};

const INDEX: u32 = 256_265;
const CALL: u32 = 12_345_602;
const FUTURE: u32 = 12_345_858;
const UNKNOWN: u32 = 99_999_746;
/// Tuesday 2025-12-02 10:00:00 IST: inside a session, and in the past.
const SESSION_SECONDS: u32 = 1_764_649_800;
const WAIT: Duration = Duration::from_secs(20);

async fn sandbox(label: &str) -> (Topics, PathBuf) {
    let (topics, dir) = topics_and_dir(&format!("kite_{label}")).await;
    let master = dir.join("instruments.csv");
    std::fs::write(
        &master,
        format!(
            "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n\
             {INDEX},1001,NIFTY 50,NIFTY 50,0,,0,0,0,EQ,INDICES,NSE\n\
             {CALL},48225,NIFTY25DEC24500CE,NIFTY,0,2025-12-30,24500,0.05,75,CE,NFO-OPT,NFO\n\
             {FUTURE},48226,NIFTY25DECFUT,NIFTY,0,2025-12-30,0,0.05,75,FUT,NFO-FUT,NFO\n\
             not-a-token,1,BROKEN,NIFTY,0,,0,0.05,75,EQ,NSE,NSE\n"
        ),
    )
    .unwrap();
    (topics, master)
}

fn config(ticker: &FakeTicker, topics: &Topics, master: PathBuf) -> KiteConfig {
    KiteConfig {
        url: ticker.url(),
        api_key: "key".into(),
        access_token: "token".into(),
        instruments_csv: master,
        tokens: Vec::new(),
        brokers: brokers(),
        topics: topics.clone(),
        ping_timeout_secs: 1,
        max_backoff_secs: 1,
        ..KiteConfig::default()
    }
}

/// Rupees from paise, as the wire gives them.
fn rupees(paise: u32) -> f64 {
    f64::from(paise) / 100.0
}

/// A full packet at `SESSION_SECONDS + second` with distinct values per `n`.
fn full(token: u32, n: u32, second: u32) -> Packet {
    let paise = 10_000 + 5 * n;
    let price = rupees(paise);
    let mut bids = [DepthLevel::default(); DEPTH_LEVELS];
    let mut asks = [DepthLevel::default(); DEPTH_LEVELS];
    bids[0] = DepthLevel {
        qty: 75 * (n + 1),
        price: rupees(paise - 5),
        orders: 1,
    };
    asks[0] = DepthLevel {
        qty: 150,
        price: rupees(paise + 5),
        orders: 2,
    };
    Packet::Full(Box::new(Full {
        quote: Quote {
            token,
            ltp: price,
            last_qty: 75,
            avg_price: price,
            volume: 1_000 * (n + 1),
            total_buy_qty: 0,
            total_sell_qty: 0,
            open: price,
            high: price,
            low: price,
            close: price,
        },
        last_trade_time: SESSION_SECONDS + second,
        oi: 500_000 + n,
        oi_day_high: 0,
        oi_day_low: 0,
        exchange_timestamp: SESSION_SECONDS + second,
        bids,
        asks,
    }))
}

fn expected(token: u32, n: u32, second: u32) -> Tick {
    let paise = 10_000 + 5 * n;
    let price = rupees(paise);
    Tick {
        instrument_token: i64::from(token),
        exchange_ts: i64::from(SESSION_SECONDS + second) * 1_000_000,
        ltp: price,
        last_qty: 75,
        volume: i64::from(1_000 * (n + 1)),
        oi: i64::from(500_000 + n),
        bid: rupees(paise - 5),
        bid_qty: i64::from(75 * (n + 1)),
        ask: rupees(paise + 5),
        ask_qty: 150,
    }
}

fn index(second: u32) -> Packet {
    Packet::Index(Index {
        token: INDEX,
        ltp: 24_500.5,
        high: 24_600.0,
        low: 24_400.0,
        open: 24_450.0,
        close: 24_300.0,
        change: 200.5,
        exchange_timestamp: Some(SESSION_SECONDS + second),
    })
}

async fn read(consumer: &StreamConsumer, n: usize) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    common::read(consumer, n, WAIT).await
}

/// The next `n` ticks as published (reference copies of the index's ticks are skipped).
async fn ticks(consumer: &StreamConsumer, n: usize) -> Vec<Tick> {
    let mut ticks: Vec<Tick> = common::read_primaries(consumer, n, WAIT)
        .await
        .iter()
        .map(|(p, _)| decode(p).unwrap())
        .collect();
    ticks.sort_by_key(|t| (t.exchange_ts, t.instrument_token));
    ticks
}

/// Waits for connection `connection` to connect and subscribe every master token in full
/// mode, checking the query string carries the credentials.
async fn subscribed(ticker: &FakeTicker, connection: u64) {
    let query = ticker
        .wait_for(WAIT, |e| match e {
            ServerEvent::Connected {
                connection: c,
                query,
            } if *c == connection => Some(query.clone()),
            _ => None,
        })
        .await
        .unwrap_or_else(|| panic!("connection {connection} never came"));
    assert_eq!(query, "api_key=key&access_token=token");
    let mut all = vec![i64::from(INDEX), i64::from(CALL), i64::from(FUTURE)];
    all.sort_unstable();
    let subscribe = ticker
        .wait_for(WAIT, |e| match e {
            ServerEvent::Subscribe {
                connection: c,
                tokens,
            } if *c == connection => Some(tokens.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        subscribe,
        Some(all.clone()),
        "connection {connection} subscribes every master token"
    );
    let mode = ticker
        .wait_for(WAIT, |e| match e {
            ServerEvent::Mode {
                connection: c,
                mode,
                tokens,
            } if *c == connection => Some((mode.clone(), tokens.clone())),
            _ => None,
        })
        .await;
    assert_eq!(
        mode,
        Some(("full".to_owned(), all)),
        "connection {connection} asks for full mode"
    );
}

async fn disconnected(ticker: &FakeTicker, connection: u64) {
    let gone = ticker
        .wait_for(WAIT, |e| {
            matches!(e, ServerEvent::Disconnected { connection: c } if *c == connection)
                .then_some(())
        })
        .await;
    assert!(gone.is_some(), "connection {connection} was not closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_flow_and_survive_a_dropped_socket_and_a_silent_one() {
    let (topics, master) = sandbox("flow").await;
    let ticker = FakeTicker::start(FakeTickerConfig {
        heartbeat_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_kite(config(&ticker, &topics, master), shutdown.clone()));
    let ticks_topic = consumer(&topics.ticks());
    let dead_letters = consumer(&topics.dead_letter(&topics.ticks()));

    // 1. Subscribe, then a frame with an option, a future and the index.
    subscribed(&ticker, 1).await;
    assert_eq!(
        ticker.send_packets(&[full(CALL, 0, 0), full(FUTURE, 1, 0), index(1)]),
        1
    );
    let mut index_tick = expected(INDEX, 0, 1);
    (
        index_tick.ltp,
        index_tick.last_qty,
        index_tick.volume,
        index_tick.oi,
    ) = (24_500.5, 0, 0, 0);
    (
        index_tick.bid,
        index_tick.bid_qty,
        index_tick.ask,
        index_tick.ask_qty,
    ) = (0.0, 0, 0.0, 0);
    assert_eq!(
        ticks(&ticks_topic, 3).await,
        vec![expected(CALL, 0, 0), expected(FUTURE, 1, 0), index_tick]
    );

    // 2. The socket drops: the client reconnects, resubscribes, and later ticks arrive.
    assert_eq!(ticker.drop_connections(), 1);
    disconnected(&ticker, 1).await;
    subscribed(&ticker, 2).await;
    ticker.send_packets(&[full(CALL, 2, 2)]);
    assert_eq!(ticks(&ticks_topic, 1).await, vec![expected(CALL, 2, 2)]);

    // 3. The feed goes silent (socket open, pings answered): the watchdog reconnects.
    assert_eq!(ticker.silence_connections(), 1);
    disconnected(&ticker, 2).await;
    subscribed(&ticker, 3).await;
    ticker.send_packets(&[full(FUTURE, 3, 3)]);
    assert_eq!(ticks(&ticks_topic, 1).await, vec![expected(FUTURE, 3, 3)]);

    // 4. A token outside the master and a broken frame are dead-lettered, not fatal; text
    //    messages are only logged.
    ticker.send_packets(&[full(UNKNOWN, 4, 4), full(CALL, 4, 4)]);
    ticker.send_frame(vec![0u8, 2, 0, 8, 1, 2, 3]);
    ticker.send_text(r#"{"type":"error","data":"Invalid access token"}"#);
    ticker.send_text(r#"{"type":"order","data":{"order_id":"1"}}"#);
    assert_eq!(ticks(&ticks_topic, 1).await, vec![expected(CALL, 4, 4)]);
    let letters = read(&dead_letters, 2).await;
    let header = |i: usize, k: &str| {
        letters[i]
            .1
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(
        header(0, "reason"),
        Some(format!("unknown instrument token {UNKNOWN}"))
    );
    let position = header(0, "source.position").unwrap();
    assert!(
        position.starts_with("kite:frame ") && position.ends_with(" packet 0"),
        "{position}"
    );
    assert_eq!(
        decode::<Tick>(&letters[0].0).unwrap(),
        expected(UNKNOWN, 4, 4),
        "the rejected tick is kept whole"
    );
    assert!(
        header(1, "reason")
            .unwrap()
            .starts_with("undecodable kite frame"),
        "{:?}",
        letters[1].1
    );
    assert_eq!(
        letters[1].0,
        vec![0u8, 2, 0, 8, 1, 2, 3],
        "the raw frame is kept"
    );

    // 5. Shutdown: a clean stop with a report.
    tokio::time::sleep(Duration::from_millis(300)).await; // let the text messages arrive
    shutdown.cancel();
    let report = tokio::time::timeout(WAIT, run)
        .await
        .expect("stops on shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            report.connections,
            report.disconnects,
            report.watchdog_timeouts
        ),
        (3, 2, 1),
        "{report:?}"
    );
    assert_eq!(
        (report.published, report.rejected, report.decode_errors),
        (6, 1, 1),
        "{report:?}"
    );
    assert_eq!(report.text_messages, 2, "{report:?}");
    assert!(report.heartbeats > 0, "{report:?}");
    disconnected(&ticker, 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_with_backoff_while_the_ticker_is_down() {
    let (topics, master) = sandbox("down").await;
    // Find a free port, then free it: nothing listens there until the ticker starts.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut kite = KiteConfig {
        url: format!("ws://{listen}"),
        ..KiteConfig::default()
    };
    kite = KiteConfig {
        instruments_csv: master,
        brokers: brokers(),
        topics: topics.clone(),
        ping_timeout_secs: 1,
        max_backoff_secs: 1,
        api_key: "key".into(),
        access_token: "token".into(),
        ..kite
    };
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(run_kite(kite, shutdown.clone()));
    tokio::time::sleep(Duration::from_millis(2_500)).await; // several refused attempts
    let ticker = FakeTicker::start(FakeTickerConfig {
        listen,
        heartbeat_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await
    .unwrap();
    subscribed(&ticker, 1).await;
    shutdown.cancel();
    let report = tokio::time::timeout(WAIT, run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(report.connections, 1);
    // Backoff capped at 1 s with jitter in [0.5, 1] s: 2.5 s of refusals is 3 to 6 failed attempts (2 to 7 allows for a loaded machine).
    assert!((2..=7).contains(&report.disconnects), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_fatal() {
    let (topics, master) = sandbox("refused").await;
    let ticker = FakeTicker::start(FakeTickerConfig {
        credentials: Some(("key".into(), "fresh".into())),
        ..Default::default()
    })
    .await
    .unwrap();
    let result = tokio::time::timeout(
        WAIT,
        run_kite(config(&ticker, &topics, master), CancellationToken::new()),
    )
    .await
    .expect("gives up instead of retrying");
    assert!(
        matches!(result, Err(KiteError::Refused { status: 403, .. })),
        "{result:?}"
    );
    let refused = ticker
        .wait_for(WAIT, |e| {
            matches!(e, ServerEvent::Refused { .. }).then_some(())
        })
        .await;
    assert!(refused.is_some());
}
