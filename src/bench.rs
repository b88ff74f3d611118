//! `strikeflow bench …`: throughput figures printed for `docs/benchmarks.md`.
//!
//! Each benchmark runs a reference beside our path in the same process and the same run, so
//! the ratio means something on a noisy two-core machine even when absolute rates move.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use implied_vol::solver::Jaeckel;
use implied_vol::ImpliedBlackVolatility;
use strikeflow_analytics::indicator_bank::{IndicatorBank, IndicatorChoice};
use strikeflow_analytics::pricing::{Convention, OptionKind, Pricer};
use strikeflow_analytics::{CoreSettings, Output, TickProcessor};
use strikeflow_ingest::{MarketSimulator, SimulateConfig};
use strikeflow_kafka::{delete_topics, ensure_topics, Outbox};
use strikeflow_schemas::{encode, Topics};
use tokio_util::sync::CancellationToken;

use crate::Config;

mod api;
mod child;
mod e2e;
mod fuzz;
mod procfs;
mod psql;
mod push;
mod replay;
mod scratch;
mod sink;

pub use api::{api, ApiBench};
pub use e2e::{e2e, E2eBench};
pub use fuzz::{fuzz, FuzzBench};
pub use push::{push, PushBench};
pub use replay::{replay, ReplayBench};
pub use sink::sink;

/// A private, freshly created set of topics for one benchmark run.
async fn bench_topics(config: &Config) -> Result<Topics> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topics = Topics::new(format!("{}bench-{stamp}.", config.kafka.topic_prefix));
    ensure_topics(
        &config.kafka.brokers(),
        &topics.all(),
        config.kafka.replication,
    )
    .await
    .context("creating benchmark topics (is Kafka up? ./dev up)")?;
    Ok(topics)
}

/// Deletes a benchmark's topics (and any extra ones it made) so runs do not pile up.
async fn drop_topics(config: &Config, topics: &Topics, extra: &[String]) -> Result<()> {
    let names: Vec<String> = topics
        .all()
        .into_iter()
        .map(|t| t.name)
        .chain(extra.iter().cloned())
        .collect();
    delete_topics(
        &config.kafka.brokers(),
        &names.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .await?;
    Ok(())
}

/// Simulator → validation → Avro → Kafka, against librdkafka sending pre-encoded ticks.
pub async fn ingest(config: &Config, ticks: u64) -> Result<()> {
    let topics = bench_topics(config).await?;
    let brokers = &config.kafka.brokers();
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
            max_message_bytes: None,
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
        registry: config.registry_connection(),
        simulator: market.clone(),
        max_ticks: Some(ticks),
        rate: None,
        record: None,
    };
    let report = strikeflow_ingest::run_simulation(simulate, CancellationToken::new()).await?;
    let ours = report.ticks as f64 / report.elapsed.as_secs_f64();

    drop_topics(config, &topics, &[reference_topic]).await?;

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

/// The pure processor core on simulated chains (one core, no Kafka), and IV + Greeks beside
/// the solver crate alone.
/// `tick_interval_ms` sets the event-time density: analytics emit once per event second, so
/// the ticks per event second decide how many ticks share one emission.
pub fn process(config: &Config, ticks: usize, tick_interval_ms: u64) -> Result<()> {
    let mut market_config = config.simulate.market.clone();
    market_config.tick_interval_ms = tick_interval_ms;
    let mut market = MarketSimulator::new(&market_config)?;
    let instruments = market.instruments().to_vec();
    let input: Vec<_> = (0..ticks).map(|_| market.next_tick()).collect();
    let settings = CoreSettings {
        allowed_lateness_micros: 2_000_000,
        chain: config.processor().settings.analytics.chain_settings(),
    };
    let bank = IndicatorBank::new(&IndicatorChoice::defaults(), &[1, 3, 5, 15])?;
    let mut core = TickProcessor::new(settings, bank);
    for instrument in &instruments {
        core.on_instrument(instrument)?;
    }
    let mut out = Vec::with_capacity(4_096);
    let mut produced: BTreeMap<&'static str, u64> = BTreeMap::new();
    let started = Instant::now();
    for tick in input {
        core.on_tick(tick, &mut out);
        for o in out.drain(..) {
            let kind = match o {
                Output::Bar(_) => "bars",
                Output::Late(_) => "late",
                Output::Strike(_) => "strikes",
                Output::Chain(_) => "chains",
                Output::Moneyness(_) => "moneyness",
                Output::Indicator(_) => "indicators",
            };
            *produced.entry(kind).or_default() += 1;
        }
    }
    let elapsed = started.elapsed();
    let event_span = ticks as f64 * tick_interval_ms as f64 / 60_000.0;
    println!(
        "bench process: {ticks} ticks over {} instruments, {} ticks per event second ({event_span:.0} event minutes), one core",
        instruments.len(),
        1_000 / tick_interval_ms.max(1)
    );
    println!(
        "  core (bars, chains, strikes, moneyness, 13 indicators x 4 timeframes): {:>10.0} ticks/s",
        ticks as f64 / elapsed.as_secs_f64()
    );
    println!("  outputs: {produced:?}");
    // What a restart costs: the state snapshot written into each transaction that is due
    // for one, and reading it back.
    let started = Instant::now();
    let snapshot = core.snapshot("bench")?;
    let written = started.elapsed();
    let started = Instant::now();
    let restored = TickProcessor::restore(
        &snapshot,
        "bench",
        CoreSettings {
            allowed_lateness_micros: 2_000_000,
            chain: config.processor().settings.analytics.chain_settings(),
        },
        IndicatorBank::new(&IndicatorChoice::defaults(), &[1, 3, 5, 15])?,
    )?;
    let read = started.elapsed();
    black_box(restored);
    println!(
        "  state snapshot: {} KiB, written in {written:.2?}, restored in {read:.2?}",
        snapshot.len() / 1024
    );

    // IV + Greeks: out-of-the-money NIFTY-like options, 1-90 days, priced on a smile.
    let pricer = Pricer::new(Convention::BLACK76);
    let mut cases = Vec::new();
    for days in [1.0, 2.0, 5.0, 9.0, 16.0, 30.0, 60.0, 90.0] {
        for k in -20..=20 {
            let (forward, strike) = (24_500.0, 24_500.0 + f64::from(k) * 50.0);
            let kind = if strike < forward {
                OptionKind::Put
            } else {
                OptionKind::Call
            };
            let t = days / 365.0;
            let sigma = 0.12 + 0.002 * f64::from(k).abs();
            if let Some(price) = Convention::BLACK76.price(kind, forward, strike, t, sigma) {
                if price > 0.5 {
                    cases.push((kind, forward, strike, t, price));
                }
            }
        }
    }
    let rounds = 1_000_000 / cases.len() + 1;
    let evaluations = (rounds * cases.len()) as f64;
    let started = Instant::now();
    for _ in 0..rounds {
        for &(kind, f, k, t, p) in &cases {
            let iv = ImpliedBlackVolatility::builder()
                .option_price(p)
                .forward(f)
                .strike(k)
                .expiry(t)
                .is_call(kind.is_call())
                .build_unchecked();
            black_box(iv.calculate_with::<Jaeckel>());
        }
    }
    let solver_ns = started.elapsed().as_nanos() as f64 / evaluations;
    let started = Instant::now();
    for _ in 0..rounds {
        for &(kind, f, k, t, p) in &cases {
            let _ = black_box(pricer.iv_and_greeks(kind, black_box(f), k, t, p));
        }
    }
    let ours_ns = started.elapsed().as_nanos() as f64 / evaluations;
    println!("  IV alone, implied-vol crate (Let's Be Rational):  {solver_ns:>6.0} ns");
    println!("  IV + delta/gamma/theta/vega/rho, strikeflow:      {ours_ns:>6.0} ns");
    Ok(())
}

/// The processor stage with Kafka in the loop: pre-fill the ticks topic, start the stage, and
/// time until its consumer group has committed every offset (offsets commit in the same
/// Kafka transaction as the outputs, so a committed offset means its outputs are in Kafka).
pub async fn process_kafka(config: &Config, ticks: u64, tick_interval_ms: u64) -> Result<()> {
    use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};

    let topics = bench_topics(config).await?;
    let brokers = &config.kafka.brokers();
    let mut market = config.simulate.market.clone();
    market.tick_interval_ms = tick_interval_ms;
    let fill = SimulateConfig {
        brokers: brokers.clone(),
        topics: topics.clone(),
        registry: config.registry_connection(),
        simulator: market,
        max_ticks: Some(ticks),
        rate: None,
        record: None,
    };
    let report = strikeflow_ingest::run_simulation(fill, CancellationToken::new()).await?;

    let mut processor = config.processor();
    processor.kafka.topics = topics.clone();
    processor.settings.group_id = format!("{}processors", topics.prefix);
    let group = processor.settings.group_id.clone();
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let stage = tokio::spawn(strikeflow_processors::run(processor, shutdown.clone()));

    // Only reads the group's committed offsets; never joins it.
    let watcher: BaseConsumer = strikeflow_kafka::client_config(brokers)
        .set("group.id", &group)
        .create()?;
    let mut partitions = TopicPartitionList::new();
    // Records to consume: the ticks plus the spot's reference copies (one per partition).
    let mut records = 0;
    for p in 0..Topics::TICKS_PARTITIONS {
        partitions.add_partition(&topics.ticks(), p);
        let (_, high) = tokio::task::block_in_place(|| {
            watcher.fetch_watermarks(&topics.ticks(), p, std::time::Duration::from_secs(5))
        })?;
        records += high;
    }
    let consumed = loop {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        if stage.is_finished() {
            anyhow::bail!("the processor stopped before consuming the backlog");
        }
        let committed = tokio::task::block_in_place(|| {
            watcher.committed_offsets(partitions.clone(), std::time::Duration::from_secs(5))
        })?;
        let done: i64 = committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum();
        if done >= records {
            break done;
        }
        if started.elapsed() > std::time::Duration::from_secs(600) {
            anyhow::bail!("the processor consumed only {done} of {records} records in 10 minutes");
        }
    };
    let elapsed = started.elapsed();
    shutdown.cancel();
    stage.await??;
    let snapshots =
        tokio::task::block_in_place(|| record_sizes(brokers, &topics.processor_state()))?;
    drop_topics(config, &topics, &[]).await?;
    println!(
        "bench process --kafka: {} ticks ({consumed} records with the spot's reference copies), {} per event second, consumed, processed and published in Kafka transactions in {elapsed:.2?}",
        report.ticks,
        1_000 / tick_interval_ms.max(1)
    );
    println!(
        "  sustained: {:.0} ticks/s (includes start-up: instrument master, group join, restore)",
        report.ticks as f64 / elapsed.as_secs_f64()
    );
    if let (Some(min), Some(max)) = (snapshots.iter().min(), snapshots.iter().max()) {
        println!(
            "  state snapshots: {} written, {} to {} KiB each (one per ticks partition per snapshot interval, and at shutdown)",
            snapshots.len(),
            min / 1024,
            max / 1024
        );
    }
    Ok(())
}

/// Sizes of every committed record of `topic` (one partition), read to its end.
fn record_sizes(brokers: &strikeflow_kafka::Brokers, topic: &str) -> Result<Vec<usize>> {
    use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
    use strikeflow_kafka::rdkafka::error::KafkaError;
    use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
    let reader: BaseConsumer =
        strikeflow_kafka::reader_config(brokers, &format!("{topic}-sizes")).create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    reader.assign(&tpl)?;
    let mut sizes = Vec::new();
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while Instant::now() < deadline {
        match reader.poll(std::time::Duration::from_millis(200)) {
            Some(Ok(msg)) => sizes.push(msg.payload_len()),
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
    }
    Ok(sizes)
}
