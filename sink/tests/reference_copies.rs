//! Reference copies of spot ticks (header `REFERENCE_COPY_HEADER`) are not stored, yet the
//! sink's offsets move past them, in the same transaction as the rows (real Kafka and
//! PostgreSQL from `./dev up`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strikeflow_kafka::rdkafka::message::{Header, OwnedHeaders};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::{ensure_topics, KafkaConnection, Outbox};
use strikeflow_schemas::{encode, Tick, Topics, REFERENCE_COPY_HEADER};
use strikeflow_sink::{SinkConfig, SinkSettings};
use tokio_postgres::{Client, NoTls};
use tokio_util::sync::CancellationToken;

/// The tables the sink writes, from the workspace's migrations (the `strikeflow` crate that
/// applies them depends on this one).
const CORE_TABLES: &str = include_str!("../../migrations/0001_core_tables.sql");
const ANALYTICS_TABLES: &str = include_str!("../../migrations/0003_stored_analytics.sql");

fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url} (is PostgreSQL up? ./dev up): {e}"));
    tokio::spawn(connection);
    client
}

/// A fresh database with the core tables, and fresh topics, both named `name`.
async fn sandbox(name: &str) -> SinkConfig {
    let brokers = var("KAFKA_BROKERS", "127.0.0.1:19092");
    let server = var(
        "DATABASE_URL",
        "postgres://strikeflow@127.0.0.1:15432/strikeflow",
    );
    connect(&server)
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("creating a test database");
    let (base, _) = server
        .rsplit_once('/')
        .expect("DATABASE_URL has a /database");
    let query = server
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    let database_url = format!("{base}/{name}{query}");
    connect(&database_url)
        .await
        .batch_execute(&format!("{CORE_TABLES}\n{ANALYTICS_TABLES}"))
        .await
        .expect("creating the tables");
    let topics = Topics::new(format!("{name}."));
    ensure_topics(&brokers, &topics.all(), 1)
        .await
        .expect("creating test topics (is Kafka up? ./dev up)");
    SinkConfig {
        kafka: KafkaConnection { brokers, topics },
        database_url,
        settings: SinkSettings {
            consumer_name: "sink".into(),
            batch_rows: 100,
            batch_wait_ms: 20,
        },
    }
}

fn tick(token: i64, second: i64) -> Tick {
    Tick {
        instrument_token: token,
        exchange_ts: 1_766_000_000_000_000 + second * 1_000_000,
        ltp: 24_500.5,
        last_qty: 0,
        volume: 0,
        oi: 0,
        bid: 0.0,
        bid_qty: 0,
        ask: 0.0,
        ask_qty: 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_copies_are_skipped_and_their_offsets_committed() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!("sf_sinkref_{}_{nanos:08x}", std::process::id());
    let config = sandbox(&name).await;
    let ticks_topic = config.kafka.topics.ticks();

    // Partition 0: primary, copy, primary of an option, copy. Partition 1: only a copy.
    let header = OwnedHeaders::new().insert(Header {
        key: REFERENCE_COPY_HEADER,
        value: Some("1"),
    });
    let spot = encode(&tick(256_265, 1)).unwrap();
    let spot_later = encode(&tick(256_265, 2)).unwrap();
    let option = encode(&tick(12_345_602, 1)).unwrap();
    let mut outbox = Outbox::connect(&config.kafka.brokers).unwrap();
    let sends: [(i32, &[u8], bool); 5] = [
        (0, &spot, false),
        (0, &spot, true),
        (0, &option, false),
        (0, &spot_later, true),
        (1, &spot, true),
    ];
    for (partition, payload, copy) in sends {
        let record = FutureRecord::to(&ticks_topic)
            .partition(partition)
            .key("NIFTY")
            .payload(payload);
        let record = if copy {
            record.headers(header.clone())
        } else {
            record
        };
        outbox.send_record(record).unwrap();
        // One at a time, so the offsets are the order above.
        outbox.flush().await.unwrap();
    }

    let db = connect(&config.database_url).await;
    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.clone(), stop.clone()));
    let started = Instant::now();
    let offsets = loop {
        let rows = db
            .query(
                "SELECT partition, next_offset FROM sink_offsets \
                 WHERE consumer = 'sink' AND topic = $1 ORDER BY partition",
                &[&ticks_topic],
            )
            .await
            .unwrap();
        let offsets: Vec<(i32, i64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if offsets == [(0, 4), (1, 1)] {
            break offsets;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sink did not commit past the copies: {offsets:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Give a sink that stores copies the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    sink.await.unwrap().expect("graceful stop");

    assert_eq!(offsets, [(0, 4), (1, 1)], "offsets move past every copy");
    let stored: Vec<(i64, i64)> = db
        .query(
            "SELECT instrument_token, (extract(epoch FROM ts) * 1000000)::bigint FROM ticks \
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        stored,
        vec![
            (256_265, tick(256_265, 1).exchange_ts),
            (12_345_602, tick(12_345_602, 1).exchange_ts),
        ],
        "only the primaries are stored"
    );
}
