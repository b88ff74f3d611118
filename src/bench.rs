//! `strikeflow bench …`: throughput figures printed for `docs/benchmarks.md`.
//!
//! Each benchmark runs a reference beside our path in the same process and the same run, so
//! the ratio means something on a noisy two-core machine even when absolute rates move.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use strikeflow_ingest::{MarketSimulator, SimulateConfig};
use strikeflow_kafka::{delete_topics, ensure_topics, Outbox};
use strikeflow_schemas::{encode, Topics};
use tokio_util::sync::CancellationToken;

use crate::Config;

/// Simulator → validation → Avro → Kafka, against librdkafka sending pre-encoded ticks.
pub async fn ingest(config: &Config, ticks: u64) -> Result<()> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let topics = Topics::new(format!("{}bench-{stamp}.", config.kafka.topic_prefix));
    let brokers = &config.kafka.brokers;
    ensure_topics(brokers, &topics.all(), config.kafka.replication)
        .await
        .context("creating benchmark topics (is Kafka up? ./dev up)")?;
    let market = &config.simulate.market;

    // Reference: the same number of messages, already encoded, through the same producer
    // settings: the ceiling librdkafka and the broker allow on this machine.
    let mut sim = MarketSimulator::new(market)?;
    let sample: Vec<(String, Vec<u8>)> = (0..10_000)
        .map(|_| {
            let tick = sim.next_tick();
            let key = sim
                .instruments()
                .iter()
                .find(|i| i.instrument_token == tick.instrument_token)
                .map(|i| i.chain_key().to_string())
                .unwrap_or_default();
            encode(&tick).map(|bytes| (key, bytes))
        })
        .collect::<Result<_, _>>()?;
    let mut outbox = Outbox::connect(brokers)?;
    let reference_topic = format!("{}reference", topics.ticks());
    ensure_topics(
        brokers,
        &[strikeflow_schemas::TopicSpec {
            name: reference_topic.clone(),
            partitions: 6,
            compacted: false,
        }],
        config.kafka.replication,
    )
    .await?;
    let started = Instant::now();
    for i in 0..ticks {
        let (key, payload) = &sample[(i % sample.len() as u64) as usize];
        outbox.send(&reference_topic, key, payload)?;
        if outbox.pending() >= 50_000 {
            outbox.flush().await?;
        }
    }
    outbox.flush().await?;
    let reference = ticks as f64 / started.elapsed().as_secs_f64();

    // Ours: generate, validate, encode, key by chain, send, await acknowledgements.
    let simulate = SimulateConfig {
        brokers: brokers.clone(),
        topics: topics.clone(),
        simulator: market.clone(),
        max_ticks: Some(ticks),
        rate: None,
        record: None,
    };
    let report = strikeflow_ingest::run_simulation(simulate, CancellationToken::new()).await?;
    let ours = report.ticks as f64 / report.elapsed.as_secs_f64();

    let names: Vec<String> = topics
        .all()
        .into_iter()
        .map(|t| t.name)
        .chain([reference_topic])
        .collect();
    delete_topics(
        brokers,
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await?;

    println!(
        "bench ingest: {ticks} ticks, {} instruments, acks=all, idempotent, lz4",
        report.instruments
    );
    println!("  reference (pre-encoded bytes, librdkafka only): {reference:>12.0} ticks/s");
    println!("  strikeflow simulate (generate+validate+encode): {ours:>12.0} ticks/s");
    println!(
        "  ratio: {:.2}  (rejected by the validator: {})",
        ours / reference,
        report.rejected
    );
    Ok(())
}
