//! `strikeflow ingest instruments --file X.csv`, run as the binary against the real
//! services: good rows reach the compacted topic and the table, bad rows are reported with
//! their line numbers and loaded nowhere.

mod common;

use common::{count, read_topic, Sandbox};
use strikeflow_schemas::Instrument;

const CSV: &str = "\
instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange
256265,1001,NIFTY 50,NIFTY 50,24500.5,,0,0,0,EQ,INDICES,NSE
12345678,48225,NIFTY26DEC24500CE,NIFTY,0,2026-12-29,24500,0.05,65,CE,NFO-OPT,NFO
12345679,48226,NIFTY26DEC24500PE,NIFTY,0,2026-12-32,24500,0.05,65,PE,NFO-OPT,NFO
12345680,48227,NIFTY26DECFUT,NIFTY,0,2026-12-29,0,0.05,65,FUT,NFO-FUT,NFO
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_file_reaches_topic_and_table_and_bad_rows_are_reported() {
    let sandbox = Sandbox::new("master").await;
    let config = &sandbox.config;
    let file = std::env::temp_dir().join(format!("{}.csv", sandbox.name));
    std::fs::write(&file, CSV).unwrap();

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_strikeflow"))
        .args(["ingest", "instruments", "--file"])
        .arg(&file)
        .env("KAFKA_BROKERS", &config.kafka.brokers)
        .env("DATABASE_URL", &config.database.url)
        .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", &config.kafka.topic_prefix)
        .env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "")
        .output()
        .expect("running strikeflow");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "strikeflow failed: {stderr}");
    assert!(
        stderr.contains(":4: skipped"),
        "the bad row is named by its line: {stderr}"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("loaded 3 instruments (1 rows skipped)")
    );

    let db = sandbox.db().await;
    assert_eq!(count(&db, "SELECT count(*) FROM instruments").await, 3);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM instruments WHERE instrument_token = 12345679"
        )
        .await,
        0
    );
    let lot: i32 = db
        .query_one(
            "SELECT lot_size FROM instruments WHERE tradingsymbol = 'NIFTY26DECFUT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(lot, 65, "lot sizes come from the master");
    let published: Vec<Instrument> =
        read_topic(&config.kafka.brokers, &config.topics().instruments(), 3).await;
    let mut tokens: Vec<i64> = published.iter().map(|i| i.instrument_token).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, vec![256_265, 12_345_678, 12_345_680]);
    assert_eq!(
        published
            .iter()
            .find(|i| i.instrument_token == 256_265)
            .map(|i| i.name.as_str()),
        Some("NIFTY")
    );
}
