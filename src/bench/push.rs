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

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rdkafka::producer::{FutureProducer, FutureRecord};
use strikeflow_analytics::indicator_bank::{IndicatorBank, IndicatorChoice};
use strikeflow_analytics::{CoreSettings, Output, TickProcessor};
use strikeflow_ingest::MarketSimulator;
use strikeflow_kafka::{ensure_topics, Outbox};
use strikeflow_processors::runner::routing::{strike_row_counts, strike_rows_headers, Boundary};
use strikeflow_push::protocol::{chain_channel, ChannelKind};
use strikeflow_schemas::{encode, ChainKey, Topics};
use tokio_util::sync::CancellationToken;

use super::drop_topics;
use crate::Config;

mod clients;
mod procfs;

use clients::{Crowd, Plan};

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

/// The outputs' topics, in the order their publish times are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Stream {
    Ticks,
    Bars,
    Strikes,
    Chains,
    Moneyness,
    Indicators,
}

impl Stream {
    const ALL: [Stream; 6] = [
        Stream::Ticks,
        Stream::Bars,
        Stream::Strikes,
        Stream::Chains,
        Stream::Moneyness,
        Stream::Indicators,
    ];

    fn topic(self, topics: &Topics) -> String {
        match self {
            Stream::Ticks => topics.ticks(),
            Stream::Bars => topics.bars(),
            Stream::Strikes => topics.strikes(),
            Stream::Chains => topics.chains(),
            Stream::Moneyness => topics.moneyness(),
            Stream::Indicators => topics.indicators(),
        }
    }
}

/// One record to publish.
struct Record {
    stream: Stream,
    /// Its offset in its one-partition topic.
    offset: usize,
    key: String,
    payload: Vec<u8>,
    /// A chain summary's strike-row count header, as the processors set it.
    strike_rows: Option<u32>,
}

/// The session played through the core: records in publish order and what clients need to
/// subscribe to and time them.
struct Session {
    records: Vec<Record>,
    /// Encoded instruments, published before push starts.
    instruments: Vec<(String, Vec<u8>)>,
    /// Records per stream.
    counts: BTreeMap<Stream, usize>,
    /// Tick symbols by activity, busiest first.
    symbols: Vec<String>,
    /// Chain channels and, per boundary, the offset of its summary in the chains topic.
    chains: HashMap<String, HashMap<u64, usize>>,
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
    ensure_topics(&config.kafka.brokers, &specs, config.kafka.replication)
        .await
        .context("creating benchmark topics (is Kafka up? ./dev up)")?;
    let result = measure(config, &bench, &topics, &prefix, session).await;
    let dropped = drop_topics(config, &topics, &[]).await;
    result?;
    dropped
}

/// Simulator → analytics core until `wanted` records are ready.
fn play_session(config: &Config, wanted: usize) -> Result<Session> {
    let mut market = MarketSimulator::new(&config.simulate.market)?;
    let instruments: Vec<_> = market.instruments().to_vec();
    let settings = CoreSettings {
        allowed_lateness_micros: 2_000_000,
        chain: config.processor().settings.analytics.chain_settings(),
    };
    let bank = IndicatorBank::new(&IndicatorChoice::defaults(), &[1, 3, 5, 15])?;
    let mut core = TickProcessor::new(settings, bank);
    let mut symbol_of = HashMap::new();
    let mut encoded_instruments = Vec::new();
    for instrument in &instruments {
        core.on_instrument(instrument)?;
        symbol_of.insert(
            instrument.instrument_token,
            instrument.tradingsymbol.clone(),
        );
        encoded_instruments.push((instrument.instrument_token.to_string(), encode(instrument)?));
    }
    let mut session = Session {
        records: Vec::with_capacity(wanted),
        instruments: encoded_instruments,
        counts: BTreeMap::new(),
        symbols: Vec::new(),
        chains: HashMap::new(),
    };
    let mut activity: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(4_096);
    while session.records.len() < wanted {
        let tick = market.next_tick();
        if let Some(symbol) = symbol_of.get(&tick.instrument_token) {
            *activity.entry(symbol.clone()).or_default() += 1;
        }
        let key = tick.instrument_token.to_string();
        session.add(Stream::Ticks, key, encode(&tick)?);
        core.on_tick(tick, &mut out);
        let strike_rows = strike_row_counts(&out);
        for output in out.drain(..) {
            session.add_output(output, &strike_rows)?;
        }
    }
    session.records.truncate(wanted);
    let mut symbols: Vec<_> = activity.into_iter().collect();
    symbols.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    session.symbols = symbols.into_iter().map(|(s, _)| s).collect();
    Ok(session)
}

impl Session {
    fn add(&mut self, stream: Stream, key: String, payload: Vec<u8>) {
        let count = self.counts.entry(stream).or_default();
        self.records.push(Record {
            stream,
            offset: *count,
            key,
            payload,
            strike_rows: None,
        });
        *count += 1;
    }

    /// Keys as the processors' routing gives them (chain key or instrument token).
    fn add_output(&mut self, output: Output, strike_rows: &HashMap<Boundary, u32>) -> Result<()> {
        let chain_key = |underlying: &str, expiry: i32| {
            ChainKey::new(underlying.to_owned(), Some(expiry)).to_string()
        };
        match output {
            Output::Bar(bar) => {
                self.add(
                    Stream::Bars,
                    bar.instrument_token.to_string(),
                    encode(&bar)?,
                );
            }
            Output::Strike(s) => {
                let key = chain_key(&s.underlying, s.expiry);
                self.add(Stream::Strikes, key, encode(&s)?);
            }
            Output::Chain(c) => {
                if let Some(channel) = chain_channel(ChannelKind::Chain, &c.underlying, c.expiry) {
                    let offset = self.counts.get(&Stream::Chains).copied().unwrap_or(0);
                    let boundary = u64::try_from(c.ts).unwrap_or(0);
                    self.chains
                        .entry(channel)
                        .or_default()
                        .insert(boundary, offset);
                }
                let key = chain_key(&c.underlying, c.expiry);
                let rows = strike_rows
                    .get(&(c.underlying.clone(), c.expiry, c.ts))
                    .copied()
                    .unwrap_or(0);
                self.add(Stream::Chains, key, encode(&c)?);
                if let Some(record) = self.records.last_mut() {
                    record.strike_rows = Some(rows);
                }
            }
            Output::Moneyness(m) => {
                let key = chain_key(&m.underlying, m.expiry);
                self.add(Stream::Moneyness, key, encode(&m)?);
            }
            Output::Indicator(i) => {
                let key = i.instrument_token.to_string();
                self.add(Stream::Indicators, key, encode(&i)?);
            }
            // Late ticks go to a topic push does not read.
            Output::Late(_) => {}
        }
        Ok(())
    }
}

/// Start push, connect the crowd, publish, and report.
async fn measure(
    config: &Config,
    bench: &PushBench,
    topics: &Topics,
    prefix: &str,
    session: Session,
) -> Result<()> {
    let outbox = Outbox::connect(&config.kafka.brokers)?;
    let producer = outbox.producer().clone();
    let mut instruments = Outbox::new(producer.clone());
    for (key, payload) in &session.instruments {
        instruments.send(&topics.instruments(), key, payload)?;
    }
    instruments.flush().await?;

    let port = free_port()?;
    let mut push = PushChild::start(config, prefix, port, bench.clients)?;
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
        config.kafka.brokers.clone(),
        topics.ticks(),
        times.clone(),
        stop.clone(),
    ));
    let idle_before = procfs::rss_kib(push.pid())?;
    let crowd = Crowd::connect(push.url(), &token, &plan, times.clone(), stop.clone()).await?;
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
    brokers: String,
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

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `strikeflow push` in a child process, so its memory and CPU are its own.
struct PushChild {
    child: Child,
    port: u16,
}

impl PushChild {
    fn start(config: &Config, prefix: &str, port: u16, clients: usize) -> Result<Self> {
        let exe = std::env::current_exe().context("locating the strikeflow binary")?;
        let child = Command::new(exe)
            .arg("push")
            .env("KAFKA_BROKERS", &config.kafka.brokers)
            .env("REDIS_URL", &config.redis.url)
            .env("DATABASE_URL", &config.database.url)
            .env("STRIKEFLOW_JWT_SECRET", &config.auth.jwt_secret)
            .env("STRIKEFLOW_AUTH__ISSUER", &config.auth.issuer)
            .env("STRIKEFLOW_AUTH__AUDIENCE", &config.auth.audience)
            .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", prefix)
            .env("STRIKEFLOW_PUSH__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "STRIKEFLOW_PUSH__MAX_CONNECTIONS",
                (clients + 1_000).to_string(),
            )
            .env(
                "STRIKEFLOW_PUSH__MAX_CONNECTIONS_PER_USER",
                (clients + 1_000).to_string(),
            )
            .env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("starting strikeflow push")?;
        Ok(Self { child, port })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }

    /// Polls `/readyz` until it answers 200.
    async fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("strikeflow push exited during start-up: {status}");
            }
            if readyz(self.port).await.unwrap_or(false) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("push was not ready within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `GET /readyz`: whether it answered 200.
async fn readyz(port: u16) -> Result<bool> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    Ok(head.ends_with(b"200"))
}
