//! Confluent framing end to end, on the real services of `./dev up` (Kafka, PostgreSQL and
//! the Apicurio schema registry):
//!
//! - a simulated session through ingest and the processor with `[registry]` set: every
//!   topic they write carries Confluent-framed records, and confluent-kafka's Python
//!   `AvroDeserializer` (tests/contract/decode_confluent.py), fetching the writer schemas from
//!   the registry by id, decodes each one to exactly the value Rust decodes;
//! - a topic migrated without downtime: a session whose first half is single-object and
//!   second half Confluent is processed and stored without a record lost or dead-lettered.
//!
//! The schemas are registered by `strikeflow migrate`'s own registry step. Needs
//! `STRIKEFLOW_PYTHON` (the venv of `./dev`, with confluent-kafka).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::stored::{self, TICKS};
use common::{read_all, wait_processed, wait_until_stored, Record, Sandbox};
use serde_json::Value;
use strikeflow::migrate::schemas::register_schemas;
use strikeflow_kafka::rdkafka::message::{Header, OwnedHeaders};
use strikeflow_kafka::rdkafka::producer::FutureRecord;
use strikeflow_kafka::{Brokers, Outbox, Registry};
use strikeflow_schemas::{
    decode, decode_any, encode_framed, AvroRecord, Bar, ChainAnalytics, IndicatorPoint, Instrument,
    MoneynessPoint, StrikeAnalytics, Tick, Topics, Watermark, REFERENCE_COPY_HEADER,
    WATERMARK_HEADER,
};
use tokio_util::sync::CancellationToken;

fn registry_url() -> String {
    ["DEV_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:18081/apis/ccompat/v7".into())
}

fn python() -> String {
    match std::env::var("STRIKEFLOW_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "STRIKEFLOW_PYTHON is not set: run `./dev test`, or point it at a Python with \
             confluent-kafka[avro] (tests/contract/requirements.txt)"
        ),
    }
}

/// A sandbox whose stages use the registry of `./dev up`, with every subject registered.
async fn confluent_sandbox(label: &str) -> (Sandbox, Registry) {
    let mut sandbox = Sandbox::new(label).await;
    stored::configure(&mut sandbox);
    sandbox.config.registry.url = registry_url();
    let connection = sandbox.config.registry_connection();
    let registry = Registry::new(connection.as_ref()).expect("registry URL");
    let registered = register_schemas(&registry, &sandbox.config.topics())
        .await
        .expect("registering the schemas (is the registry up? ./dev up)");
    assert_eq!(registered.len(), sandbox.config.topics().subjects().len());
    (sandbox, registry)
}

/// Decodes one record in Rust (either framing, ids resolved from `registry`) as JSON.
async fn rust_value(registry: &Registry, topics: &Topics, topic: &str, r: &Record) -> Value {
    registry.resolve(&r.payload).await;
    let ids = registry.ids();
    fn json<T: AvroRecord>(v: T) -> Value {
        serde_json::to_value(v).expect("JSON")
    }
    let decoded = if topic == topics.instruments() {
        decode_any::<Instrument>(&r.payload, ids).map(json)
    } else if topic == topics.ticks() && r.watermark {
        decode_any::<Watermark>(&r.payload, ids).map(json)
    } else if topic == topics.ticks() || topic == topics.late() {
        decode_any::<Tick>(&r.payload, ids).map(json)
    } else if topic == topics.bars() {
        decode_any::<Bar>(&r.payload, ids).map(json)
    } else if topic == topics.strikes() {
        decode_any::<StrikeAnalytics>(&r.payload, ids).map(json)
    } else if topic == topics.chains() {
        decode_any::<ChainAnalytics>(&r.payload, ids).map(json)
    } else if topic == topics.moneyness() {
        decode_any::<MoneynessPoint>(&r.payload, ids).map(json)
    } else if topic == topics.indicators() {
        decode_any::<IndicatorPoint>(&r.payload, ids).map(json)
    } else {
        panic!("no record type for {topic}")
    };
    decoded.unwrap_or_else(|e| panic!("{topic}@{}/{}: {e}", r.partition, r.offset))
}

/// Python's datum against Rust's, field by field: doubles bit for bit (Python prints them
/// as repr strings), everything else exactly.
fn assert_same(python: &Value, rust: &Value, at: &str) {
    match (python, rust) {
        (Value::String(p), Value::Number(r)) if r.is_f64() => {
            let p: f64 = p
                .parse()
                .unwrap_or_else(|_| panic!("{at}: {p} is not a double"));
            let r = r.as_f64().expect("f64");
            assert_eq!(p.to_bits(), r.to_bits(), "{at}: {p} != {r}");
        }
        (Value::String(p), Value::Number(r)) => {
            // A double that happens to be integral is a JSON integer on the Rust side.
            let p: f64 = p
                .parse()
                .unwrap_or_else(|_| panic!("{at}: {p} is not a number"));
            assert_eq!(Some(p), r.as_f64(), "{at}");
        }
        (Value::String(p), Value::Null) if p == "nan" => {} // serde_json writes NaN as null
        (Value::Object(p), Value::Object(r)) => {
            let mut pk: Vec<&String> = p.keys().collect();
            let mut rk: Vec<&String> = r.keys().collect();
            pk.sort();
            rk.sort();
            assert_eq!(pk, rk, "{at}: fields differ");
            for (k, v) in p {
                assert_same(v, &r[k], &format!("{at}.{k}"));
            }
        }
        (Value::Array(p), Value::Array(r)) => {
            assert_eq!(p.len(), r.len(), "{at}: lengths differ");
            for (i, (p, r)) in p.iter().zip(r).enumerate() {
                assert_same(p, r, &format!("{at}[{i}]"));
            }
        }
        (p, r) => assert_eq!(p, r, "{at}"),
    }
}

/// Every record of `records` (topic, record) decoded by confluent-kafka in Python.
fn python_values(records: &[(String, &Record)]) -> Vec<Value> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contract/decode_confluent.py"
    );
    let mut child = Command::new(python())
        .arg(script)
        .arg(registry_url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting decode_confluent.py");
    let mut input = String::new();
    for (topic, r) in records {
        let hex: String = r.payload.iter().map(|b| format!("{b:02x}")).collect();
        input.push_str(&serde_json::json!({"topic": topic, "value": hex}).to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("decode_confluent.py ran");
    writer.join().expect("writer").expect("records written");
    assert!(
        out.status.success(),
        "decode_confluent.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["datum"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_topic_in_confluent_framing_decodes_in_python_as_in_rust() {
    let (sandbox, registry) = confluent_sandbox("confluent").await;
    let config = sandbox.config.clone();
    let topics = config.topics();
    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let report = strikeflow_ingest::run_simulation(config.simulate(), CancellationToken::new())
        .await
        .expect("simulation");
    assert_eq!(report.ticks, TICKS);
    // A few of the first ticks again: late now, so the late topic gets records too.
    let first: Vec<Record> = read_all(&config.kafka.brokers, &topics.ticks())
        .into_iter()
        .filter(|r| !r.reference_copy && !r.watermark)
        .take(5)
        .collect();
    let mut outbox = Outbox::connect(&Brokers::plaintext(&config.kafka.brokers)).expect("producer");
    for r in &first {
        let key = r.key.as_deref().unwrap_or_default();
        outbox.send(&topics.ticks(), key, &r.payload).expect("sent");
    }
    outbox.flush().await.expect("delivered");
    wait_processed(&config, &processor).await;
    shutdown.cancel();
    processor
        .await
        .expect("joined")
        .expect("processor stops cleanly");

    let outputs = [
        topics.instruments(),
        topics.ticks(),
        topics.bars(),
        topics.strikes(),
        topics.chains(),
        topics.moneyness(),
        topics.indicators(),
        topics.late(),
    ];
    let mut all: Vec<(String, Record)> = Vec::new();
    for topic in &outputs {
        let records = read_all(&config.kafka.brokers, topic);
        assert!(!records.is_empty(), "{topic} is empty");
        for r in records {
            assert_eq!(
                r.payload.first(),
                Some(&0),
                "{topic}@{}/{} is not Confluent-framed",
                r.partition,
                r.offset
            );
            all.push((topic.clone(), r));
        }
    }
    let borrowed: Vec<(String, &Record)> = all.iter().map(|(t, r)| (t.clone(), r)).collect();
    let python = python_values(&borrowed);
    assert_eq!(python.len(), all.len(), "one datum per record");
    let mut per_topic = std::collections::BTreeMap::<&str, usize>::new();
    for ((topic, r), p) in all.iter().zip(&python) {
        let rust = rust_value(&registry, &topics, topic, r).await;
        assert_same(p, &rust, &format!("{topic}@{}/{}", r.partition, r.offset));
        *per_topic.entry(topic.as_str()).or_default() += 1;
    }
    eprintln!("decoded in Python and Rust alike: {per_topic:?}");
}

/// Re-publishes `records` of `topic` to `to`, keeping partition, key and control headers;
/// records from index `switch_at` on are re-framed as Confluent, as producers switched over
/// there.
async fn copy_topic(
    outbox: &mut Outbox,
    registry: &Registry,
    (topics, to): (&Topics, &str),
    records: &[Record],
    switch_at: usize,
) -> usize {
    let mut confluent = 0;
    for (i, r) in records.iter().enumerate() {
        let payload = if i < switch_at {
            r.payload.clone()
        } else {
            confluent += 1;
            if to == topics.instruments() {
                let v: Instrument = decode(&r.payload).expect("single object");
                let f = registry
                    .framing::<Instrument>(topics, to)
                    .await
                    .expect("id");
                encode_framed(&v, f).expect("encode")
            } else if r.watermark {
                let v: Watermark = decode(&r.payload).expect("single object");
                let f = registry.framing::<Watermark>(topics, to).await.expect("id");
                encode_framed(&v, f).expect("encode")
            } else {
                let v: Tick = decode(&r.payload).expect("single object");
                let f = registry.framing::<Tick>(topics, to).await.expect("id");
                encode_framed(&v, f).expect("encode")
            }
        };
        let header = |key| {
            OwnedHeaders::new().insert(Header {
                key,
                value: Some("1"),
            })
        };
        let mut record = FutureRecord::<[u8], [u8]>::to(to)
            .partition(r.partition)
            .payload(&payload);
        if let Some(key) = &r.key {
            record = record.key(key.as_slice());
        }
        if r.reference_copy {
            record = record.headers(header(REFERENCE_COPY_HEADER));
        } else if r.watermark {
            record = record.headers(header(WATERMARK_HEADER));
        }
        outbox.send_record(record).expect("sent");
    }
    outbox.flush().await.expect("delivered");
    confluent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_switching_from_single_object_to_confluent_loses_nothing() {
    // The session as producers without a registry wrote it...
    let mut staging = Sandbox::new("cfstage").await;
    stored::configure(&mut staging);
    let report =
        strikeflow_ingest::run_simulation(staging.config.simulate(), CancellationToken::new())
            .await
            .expect("simulation");
    assert_eq!(report.ticks, TICKS);
    let old = staging.config.topics();
    let instruments = read_all(&staging.config.kafka.brokers, &old.instruments());
    let ticks = read_all(&staging.config.kafka.brokers, &old.ticks());

    // ...and the same records in a topic whose producers switched to Confluent halfway.
    let (sandbox, registry) = confluent_sandbox("cfmixed").await;
    let config = sandbox.config.clone();
    let topics = config.topics();
    let mut outbox = Outbox::connect(&Brokers::plaintext(&config.kafka.brokers)).expect("producer");
    let to = topics.instruments();
    let confluent = copy_topic(
        &mut outbox,
        &registry,
        (&topics, &to),
        &instruments,
        instruments.len() / 2,
    )
    .await;
    assert!(confluent > 0 && confluent < instruments.len());
    // Per partition the first half stays single object: offsets follow publish order.
    let to = topics.ticks();
    let confluent = copy_topic(
        &mut outbox,
        &registry,
        (&topics, &to),
        &ticks,
        ticks.len() / 2,
    )
    .await;
    assert!(confluent > 0 && confluent < ticks.len());
    let mixed = read_all(&config.kafka.brokers, &topics.ticks());
    assert!(mixed.iter().any(|r| r.payload[0] == 0xC3) && mixed.iter().any(|r| r.payload[0] == 0));

    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));
    wait_processed(&config, &processor).await;
    // Nothing undecodable: neither the processor nor the sink dead-lettered a record.
    for topic in [topics.ticks(), topics.instruments()] {
        let letters = read_all(&config.kafka.brokers, &topics.dead_letter(&topic));
        assert!(
            letters.is_empty(),
            "{} record(s) dead-lettered from {topic}",
            letters.len()
        );
    }
    // Every primary tick and every instrument stored, the processor's outputs too.
    let primaries = ticks
        .iter()
        .filter(|r| !r.reference_copy && !r.watermark)
        .count();
    let bars = read_all(&config.kafka.brokers, &topics.bars()).len();
    let chains = read_all(&config.kafka.brokers, &topics.chains()).len();
    assert!(bars > 0 && chains > 0, "bars {bars}, chains {chains}");
    let distinct_instruments = instruments
        .iter()
        .map(|r| r.key.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let db = sandbox.db().await;
    wait_until_stored(
        &db,
        &[("ticks", primaries), ("instruments", distinct_instruments)],
        &sink,
    )
    .await;
    shutdown.cancel();
    processor
        .await
        .expect("joined")
        .expect("processor stops cleanly");
    sink.await.expect("joined").expect("sink stops cleanly");
}
