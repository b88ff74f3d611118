//! `strikeflow bench push`: the push stage under a crowd of WebSocket clients.
//!
//! The bench plays a simulated session through the real analytics core once, in memory, so
//! the records are what the processors would publish (ticks, one-minute bars, strike and
//! chain analytics, moneyness, indicators). It starts `strikeflow push` as a child process
//! on private one-partition topics, connects N clients over loopback (each on one chain, one
//! bar channel and two tick channels), then publishes the records to Kafka at a fixed rate
//! and measures, per delivered message, the time from the moment the bench handed its
//! record to the producer to the moment the client read the frame.
//!
//! One partition per topic is what lets a client know when its message was published
//! without any help from push: push numbers a channel's messages by Kafka offset
//! (`seq = offset + 1`, `docs/protocol.md`), and on a fresh one-partition topic the offset
//! of the i-th record sent to it is i. Chain messages are numbered by their boundary time
//! instead, so they are timed from the chain summary of that boundary.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use strikeflow_kafka::{ensure_topics, Outbox};
use strikeflow_processors::runner::routing::strike_rows_headers;
use strikeflow_schemas::Topics;
use tokio_util::sync::CancellationToken;

use super::child::{free_port, PushChild};
use super::{drop_topics, procfs};
use crate::Config;

pub(super) mod clients;
mod session;
mod wire;

use clients::{Crowd, Plan, Timing};
use session::{play_session, Session, Stream};

/// What `strikeflow bench push` is asked to do.
#[derive(Debug, Clone)]
pub struct PushBench {
    /// WebSocket clients to connect.
    pub clients: usize,
    /// Kafka records published per second (all output topics together).
    pub rate: f64,
    /// Seconds of publishing.
    pub secs: u64,
    /// Distinct tick channels the clients spread over (the most active symbols).
    pub tick_channels: usize,
}

/// When each record was handed to the producer: nanoseconds after `origin` (0 = not yet).
pub(crate) struct SendTimes {
    origin: Instant,
    by_topic: HashMap<String, Vec<AtomicU64>>,
    chains: HashMap<String, HashMap<u64, usize>>,
    chains_topic: String,
}

impl SendTimes {
    fn stamp(&self, topic: &str, offset: usize) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(slot) = self.by_topic.get(topic).and_then(|v| v.get(offset)) {
            slot.store(nanos.max(1), Ordering::Release);
        }
    }

    /// When the record behind a delivered message was sent, from its channel, epoch and
    /// seq; `None` for messages the bench cannot place (snapshots, unknown epochs).
    pub(crate) fn sent(&self, channel: &str, epoch: &str, seq: u64) -> Option<u64> {
        let (topic, offset) = if channel.starts_with("chain.") {
            let offset = *self.chains.get(channel)?.get(&seq)?;
            (self.chains_topic.as_str(), offset)
        } else if let Some(topic) = epoch.strip_suffix("/0/built") {
            // Built bars take 2 × (seq of the completing one-minute bar), minus one for an
            // earlier bar completed by the same record.
            (
                topic,
                usize::try_from(seq.div_ceil(2)).ok()?.checked_sub(1)?,
            )
        } else {
            let topic = epoch.strip_suffix("/0")?;
            (topic, usize::try_from(seq).ok()?.checked_sub(1)?)
        };
        let nanos = self
            .by_topic
            .get(topic)?
            .get(offset)?
            .load(Ordering::Acquire);
        (nanos > 0).then_some(nanos)
    }

    /// Nanoseconds since the origin, now.
    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Timing for SendTimes {
    fn now(&self) -> u64 {
        SendTimes::now(self)
    }

    fn sent(&self, channel: &str, epoch: &str, seq: u64, _head: &str) -> Option<u64> {
        SendTimes::sent(self, channel, epoch, seq)
    }
}

/// Runs the benchmark and prints its figures.
pub async fn push(config: &Config, bench: PushBench) -> Result<()> {
    if bench.clients == 0 || bench.rate <= 0.0 || bench.secs == 0 {
        bail!("--clients, --rate and --secs must be positive");
    }
    let wanted = (bench.rate * bench.secs as f64).ceil() as usize;
    let session = play_session(config, wanted)?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let prefix = format!("{}bench-push-{stamp}.", config.kafka.topic_prefix);
    let topics = Topics::new(prefix.clone());
    let specs: Vec<_> = topics
        .all()
        .into_iter()
        .map(|mut spec| {
            spec.partitions = 1;
            spec
        })
        .collect();
    ensure_topics(&config.kafka.brokers(), &specs, config.kafka.replication)
        .await
        .context("creating benchmark topics (is Kafka up? ./dev up)")?;
    let result = measure(config, &bench, &topics, &prefix, session).await;
    let dropped = drop_topics(config, &topics, &[]).await;
    result?;
    dropped
}

/// Start push, connect the crowd, publish, and report.
async fn measure(
    config: &Config,
    bench: &PushBench,
    topics: &Topics,
    prefix: &str,
    session: Session,
) -> Result<()> {
    let outbox = Outbox::connect(&config.kafka.brokers())?;
    let producer = outbox.producer().clone();
    let mut instruments = Outbox::new(producer.clone());
    for (key, payload) in &session.instruments {
        instruments.send(&topics.instruments(), key, payload)?;
    }
    instruments.flush().await?;

    let port = free_port()?;
    let mut push = PushChild::start(
        config,
        prefix,
        port,
        bench.clients,
        std::process::Stdio::inherit(),
        false,
    )?;
    let ready = push.wait_ready(Duration::from_secs(120)).await;
    if let Err(e) = ready {
        push.stop();
        return Err(e);
    }
    let result = drive(config, bench, topics, &session, &producer, &push).await;
    push.stop();
    result
}

async fn drive(
    config: &Config,
    bench: &PushBench,
    topics: &Topics,
    session: &Session,
    producer: &FutureProducer,
    push: &PushChild,
) -> Result<()> {
    let origin = Instant::now();
    let times = Arc::new(SendTimes {
        origin,
        by_topic: Stream::ALL
            .iter()
            .map(|s| {
                let n = session.counts.get(s).copied().unwrap_or(0);
                (s.topic(topics), (0..n).map(|_| AtomicU64::new(0)).collect())
            })
            .collect(),
        chains: session.chains.clone(),
        chains_topic: topics.chains(),
    });
    let mut chains: Vec<String> = session.chains.keys().cloned().collect();
    chains.sort();
    let symbols: Vec<String> = session
        .symbols
        .iter()
        .take(bench.tick_channels.max(1))
        .cloned()
        .collect();
    let plan = Plan::new(bench.clients, &chains, &symbols);
    let token = strikeflow_push::auth::mint_with(
        &config.auth,
        "bench",
        Duration::from_secs(3_600),
        vec!["*".to_owned()],
    )
    .context("minting the clients' token with [auth] jwt_secret")?;

    let stop = CancellationToken::new();
    // Started before the crowd so its first fetch is long done when publishing begins.
    let reference = tokio::spawn(kafka_reference(
        config.kafka.brokers(),
        topics.ticks(),
        times.clone(),
        stop.clone(),
    ));
    let idle_before = procfs::rss_kib(push.pid())?;
    let crowd = Crowd::connect(push.addr(), &token, &plan, times.clone(), stop.clone()).await?;
    // Let the subscriptions' snapshots drain before reading the memory of the idle crowd.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_after = procfs::rss_kib(push.pid())?;

    let cpu_push = procfs::cpu_ticks(push.pid())?;
    let cpu_self = procfs::cpu_ticks(std::process::id())?;
    let window = Instant::now();
    crowd.start_counting();
    publish(producer, topics, session, &times, bench.rate).await?;
    let published = window.elapsed();
    // Give the last records time to arrive, then stop.
    crowd
        .wait_quiet(Duration::from_millis(500), Duration::from_secs(10))
        .await;
    let elapsed = window.elapsed();
    let cpu_push = procfs::cpu_ticks(push.pid())?.saturating_sub(cpu_push);
    let cpu_self = procfs::cpu_ticks(std::process::id())?.saturating_sub(cpu_self);
    let busy_rss = procfs::rss_kib(push.pid())?;
    stop.cancel();
    let report = crowd.finish().await;
    let mut reference = reference.await.context("the reference consumer")??;
    let reference = clients::percentiles(&mut reference);

    let per_stream: Vec<String> = session
        .counts
        .iter()
        .map(|(s, n)| format!("{s:?} {n}"))
        .collect();
    println!(
        "bench push: {} clients (each on 1 chain, 1 one-minute bar and 2 tick channels: {} chains, {} tick symbols), {} records at {:.0}/s ({})",
        bench.clients,
        chains.len(),
        symbols.len(),
        session.records.len(),
        bench.rate,
        per_stream.join(", ")
    );
    println!(
        "  connected {} of {} ({} refused); closed by the server: {:?}",
        report.connected, bench.clients, report.refused, report.closes
    );
    println!(
        "  published in {:.2} s; deliveries {} in {:.2} s: {:.0} deliveries/s",
        published.as_secs_f64(),
        report.deliveries,
        elapsed.as_secs_f64(),
        report.deliveries as f64 / published.as_secs_f64()
    );
    for (label, lat) in &report.latency {
        println!(
            "  publish → client latency {label:<12} n={:<9} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
            lat.count, lat.p50_ms, lat.p99_ms, lat.max_ms
        );
    }
    println!(
        "  reference: publish → a plain Kafka consumer of the ticks topic n={:<9} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms",
        reference.count, reference.p50_ms, reference.p99_ms, reference.max_ms
    );
    let secs = elapsed.as_secs_f64();
    println!(
        "  CPU: push {:.2} cores, bench (clients + publisher) {:.2} cores, over {secs:.1} s",
        cpu_push as f64 / procfs::TICKS_PER_SEC / secs,
        cpu_self as f64 / procfs::TICKS_PER_SEC / secs,
    );
    let per_conn = idle_after.saturating_sub(idle_before) as f64 / report.connected.max(1) as f64;
    println!(
        "  push memory: {idle_before} KiB before the crowd, {idle_after} KiB with it idle ({per_conn:.1} KiB per subscribed idle connection), {busy_rss} KiB after the run"
    );
    let _ = config;
    Ok(())
}

/// Publishes every record at `rate` per second, stamping each just before the producer
/// takes it.
async fn publish(
    producer: &FutureProducer,
    topics: &Topics,
    session: &Session,
    times: &SendTimes,
    rate: f64,
) -> Result<()> {
    let names: HashMap<Stream, String> =
        Stream::ALL.iter().map(|s| (*s, s.topic(topics))).collect();
    let mut acks = Vec::new();
    let mut pending = Vec::with_capacity(1_024);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0;
    while next < session.records.len() {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as usize).min(session.records.len());
        while next < due {
            let record = &session.records[next];
            let topic = &names[&record.stream];
            times.stamp(topic, record.offset);
            let mut to_send = FutureRecord::to(topic)
                .key(&record.key)
                .payload(&record.payload);
            if let Some(rows) = record.strike_rows {
                to_send = to_send.headers(strike_rows_headers(rows));
            }
            loop {
                match producer.send_result(to_send) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((err, back)) => {
                        if !matches!(
                            err,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ) {
                            return Err(err).context("publishing a benchmark record");
                        }
                        to_send = back;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            next += 1;
        }
        if pending.len() >= 1_000 {
            acks.push(tokio::spawn(futures::future::join_all(std::mem::take(
                &mut pending,
            ))));
        }
    }
    acks.push(tokio::spawn(futures::future::join_all(pending)));
    for batch in acks {
        for ack in batch.await.context("awaiting acknowledgements")? {
            match ack {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => return Err(err).context("a benchmark record was refused"),
                Err(_) => bail!("the producer dropped a benchmark record"),
            }
        }
    }
    Ok(())
}

/// The reference for the latency figures: publish → a bare librdkafka consumer of the ticks
/// topic in this process (what any Kafka consumer pays before push adds its share).
async fn kafka_reference(
    brokers: strikeflow_kafka::Brokers,
    topic: String,
    times: Arc<SendTimes>,
    stop: CancellationToken,
) -> Result<Vec<u32>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::Message;
    let consumer: StreamConsumer =
        strikeflow_kafka::reader_config(&brokers, "bench-push-reference")
            .set("enable.partition.eof", "false")
            .create()?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, rdkafka::Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let mut latencies = Vec::new();
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            msg = consumer.recv() => msg,
        };
        let Ok(msg) = msg else { continue };
        let now = times.now();
        let sent = usize::try_from(msg.offset())
            .ok()
            .and_then(|offset| times.by_topic.get(&topic)?.get(offset))
            .map_or(0, |slot| slot.load(Ordering::Acquire));
        if sent > 0 {
            let micros = now.saturating_sub(sent) / 1_000;
            latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
    }
    Ok(latencies)
}
