//! A topic that moves from single-object encoding to Confluent framing while push reads it
//! (real Kafka and the `./dev` schema registry): a subscriber gets every record, in order,
//! numbered without a gap, whichever framing it was written in.

mod common;

use std::time::Duration;

use common::tokens::{claims, hs256};
use common::*;
use serde_json::json;
use strikeflow_kafka::{Registry, RegistryConnection};
use strikeflow_schemas::{encode_framed, Bar, Encoding, Framing};

fn registry_connection() -> RegistryConnection {
    let url = ["DEV_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:18081/apis/ccompat/v7".into());
    RegistryConnection {
        url,
        timeout: Duration::from_secs(15),
        encoding: Encoding::Confluent,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_then_confluent_records_all_reach_the_subscriber() {
    let topics = fresh_topics();
    create_topics(&topics).await;
    // What `strikeflow migrate` does for a deployment: every subject of these topics.
    let connection = registry_connection();
    let registry = Registry::new(Some(&connection)).expect("a registry URL");
    for spec in topics.subjects() {
        registry
            .register(&spec.subject, spec.schema_json)
            .await
            .expect("registering (is the registry up? ./dev up)");
    }
    let confluent = registry
        .framing::<Bar>(&topics, &topics.bars())
        .await
        .expect("the bars subject is registered");
    assert!(matches!(confluent, Framing::Confluent { .. }));

    let mut cfg = config(&topics);
    cfg.registry = Some(connection);
    let server = TestServer::start(cfg).await;
    let producer = producer();
    let symbol = format!("NIFTY26DEC{}FUT", unique().to_uppercase());
    let channel = format!("bars.{symbol}");
    let token_id: i64 = 13_238_788;
    let mut ws = connect(&server, &hs256(&claims("trader", &["bars.*"]))).await;
    send_json(&mut ws, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut ws, &channel).await;
    let inst =
        encode_framed(&instrument(token_id, &symbol), Framing::SingleObject).expect("encode");
    produce(
        &producer,
        &topics.instruments(),
        &token_id.to_string(),
        &inst,
    )
    .await;
    // Single-object bars until push is reading (it discovers fresh topics), then five more
    // single-object bars and five Confluent ones.
    let (first, _, mut last) =
        produce_bars_until_received(&producer, &topics, &mut ws, token_id, &channel).await;
    let mut seq = first["seq"].as_u64().expect("seq");
    let mut expected = Vec::new();
    for framing in [Framing::SingleObject, confluent] {
        for _ in 0..5 {
            last += 1;
            let bytes = encode_framed(&bar(token_id, last), framing).expect("encode bar");
            produce(&producer, &topics.bars(), &token_id.to_string(), &bytes).await;
            expected.push(last);
        }
    }
    let mut got = Vec::new();
    while got.last() != Some(&last) {
        let msg = next_json(&mut ws).await;
        assert_eq!(msg["type"], "bar", "{msg}");
        let next_seq = msg["seq"].as_u64().expect("seq");
        assert_eq!(
            next_seq,
            seq + 1,
            "no gap in the channel's numbering: {msg}"
        );
        seq = next_seq;
        let index = (msg["data"]["close"].as_f64().expect("close") - 26_000.0) as i64;
        if index > expected[0] - 1 {
            got.push(index);
        }
    }
    assert_eq!(got, expected, "every bar of both framings, in order");
    drop(ws);
    server.stop().await;
}
