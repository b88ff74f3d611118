//! Exactly-once processing on the real services, with the processor run as the real
//! binary in child processes:
//!
//! * **crash**: `kill -9` the processor several times while it works through the input,
//!   restart it each time, and
//! * **rebalance**: start a second instance in the same group mid-stream, then stop the
//!   first,
//!
//! and in both cases every output topic must hold exactly what one uninterrupted run over
//! the same input produced: the same records, per key in the same order, none missing and
//! none repeated (read with `read_committed`, as every downstream reader does).

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{group_progress, read_all, Record, Sandbox};
use strikeflow_ingest::{MarketSimulator, SimulatorConfig, TickPublisher};
use strikeflow_kafka::Outbox;
use strikeflow_schemas::{Instrument, Tick, Topics};

/// Ticks per input chunk; the input is published chunk by chunk while processors run.
const CHUNK: usize = 8_000;
const CHUNKS: usize = 6;

/// The input every run gets: the test market's instruments, its ticks in chunks (each
/// followed by an event-time marker), some ticks re-sent minutes late (for the late topic)
/// and one undecodable record (for the dead-letter topic).
struct Input {
    instruments: Vec<Instrument>,
    chunks: Vec<Vec<Tick>>,
}

impl Input {
    fn new() -> Self {
        let mut market = SimulatorConfig::single_chain();
        // 20 ticks per event second over 12 instruments: 40 event minutes in all, enough
        // for bars, every analytics stream and warmed-up short indicators.
        market.tick_interval_ms = 50;
        let mut simulator = MarketSimulator::new(&market).expect("the test market");
        let instruments = simulator.instruments().to_vec();
        let mut ticks: Vec<Tick> = (0..CHUNK * CHUNKS).map(|_| simulator.next_tick()).collect();
        // Every 997th tick is followed by a copy of the tick 3,000 earlier (2.5 event
        // minutes back): its bar has closed, so it must come out on the late topic.
        let mut with_late = Vec::with_capacity(ticks.len() + ticks.len() / 997);
        for (i, tick) in ticks.drain(..).enumerate() {
            with_late.push(tick);
            if i % 997 == 996 && i >= 3_000 {
                with_late.push(with_late[with_late.len() - 3_000].clone());
            }
        }
        let chunks = with_late.chunks(CHUNK).map(<[Tick]>::to_vec).collect();
        Self {
            instruments,
            chunks,
        }
    }
}

/// Publishes the input into one sandbox's topics, chunk by chunk.
struct Feed {
    publisher: TickPublisher,
    raw: Outbox,
    ticks_topic: String,
    next_chunk: usize,
}

impl Feed {
    async fn start(sandbox: &Sandbox, input: &Input) -> Self {
        let brokers = &sandbox.config.kafka.brokers();
        let topics = Topics::new(sandbox.config.kafka.topic_prefix.clone());
        let mut publisher = TickPublisher::connect(brokers, &topics, None).expect("a publisher");
        publisher
            .publish_instruments(&input.instruments)
            .await
            .expect("publishing instruments");
        Self {
            publisher,
            raw: Outbox::connect(brokers).expect("a raw producer"),
            ticks_topic: topics.ticks(),
            next_chunk: 0,
        }
    }

    /// Publishes the next chunk and waits for its acknowledgements.
    async fn publish_next(&mut self, input: &Input) {
        let chunk = &input.chunks[self.next_chunk];
        for (i, tick) in chunk.iter().enumerate() {
            self.publisher
                .publish(tick, || format!("chunk {}:{i}", self.next_chunk), None)
                .await
                .expect("publishing a tick");
            if self.next_chunk == 2 && i == CHUNK / 2 {
                self.raw
                    .send(&self.ticks_topic, "NIFTY", b"not a tick".as_slice())
                    .expect("sending garbage");
                self.raw.flush().await.expect("garbage acknowledged");
            }
        }
        // Each chunk ends with an event-time marker at its newest tick, in every partition:
        // restores replay across markers, which must close bars exactly as the first time.
        let newest = chunk
            .iter()
            .map(|t| t.exchange_ts)
            .max()
            .unwrap_or_default();
        self.publisher
            .publish_watermark(newest, "test")
            .await
            .expect("publishing a marker");
        self.publisher.flush().await.expect("chunk acknowledged");
        self.next_chunk += 1;
    }

    async fn publish_rest(&mut self, input: &Input) {
        while self.next_chunk < input.chunks.len() {
            self.publish_next(input).await;
        }
    }
}

/// A `strikeflow process` child process.
struct Processor {
    child: Child,
    name: String,
    log: std::path::PathBuf,
}

impl Processor {
    fn spawn(sandbox: &Sandbox, instance: &str, batch_max: usize) -> Self {
        let config = &sandbox.config;
        let log = std::env::temp_dir().join(format!("{}-{instance}.log", sandbox.name));
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_strikeflow"))
            .arg("process")
            .env("KAFKA_BROKERS", &config.kafka.brokers)
            .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", &config.kafka.topic_prefix)
            .env("STRIKEFLOW_PROCESSOR__GROUP_ID", group(sandbox))
            .env("STRIKEFLOW_PROCESSOR__INSTANCE_ID", instance)
            .env("STRIKEFLOW_PROCESSOR__BATCH_MAX", batch_max.to_string())
            .env("STRIKEFLOW_PROCESSOR__SNAPSHOT_INTERVAL_MS", "300")
            .env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "")
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting strikeflow process");
        eprintln!("started processor {instance} (log: {})", log.display());
        Self {
            child,
            name: instance.to_owned(),
            log,
        }
    }

    /// How many times this instance restored its partitions (start, rebalances).
    fn restores(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches("partitions restored")
            .count()
    }

    /// SIGKILL: no shutdown code runs, whatever was in flight is simply gone.
    fn kill_9(mut self) {
        self.child.kill().expect("kill -9");
        eprintln!("killed processor {} with SIGKILL", self.name);
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("sending SIGTERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting") {
                assert!(
                    status.success(),
                    "processor {} exited with {status}",
                    self.name
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processor {} did not stop",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("waiting") {
            panic!("processor {} exited early with {status}", self.name);
        }
    }
}

/// A failing test must not leave processors running behind it.
impl Drop for Processor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn group(sandbox: &Sandbox) -> String {
    format!("{}-processors", sandbox.name)
}

fn progress(sandbox: &Sandbox) -> (i64, i64) {
    let topics = Topics::new(sandbox.config.kafka.topic_prefix.clone());
    group_progress(
        &sandbox.config.kafka.brokers,
        &group(sandbox),
        &topics.ticks(),
    )
}

/// Waits until the group has committed every published tick.
async fn wait_caught_up(sandbox: &Sandbox, running: &mut [&mut Processor]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (done, end) = progress(sandbox);
        if done == end && end > 0 {
            return;
        }
        for p in running.iter_mut() {
            p.assert_running();
        }
        assert!(
            Instant::now() < deadline,
            "processors committed {done} of {end} ticks in 180 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until the group committed more than `before` but not everything yet, so the
/// next kill lands while the processor is working (returns false if it finished first).
async fn wait_mid_stream(sandbox: &Sandbox, before: i64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done, end) = progress(sandbox);
        if done > before {
            return done < end;
        }
        assert!(
            Instant::now() < deadline,
            "no progress past {before} in 120 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every output topic's records, per key in log order (Kafka orders per key only).
type Outputs = BTreeMap<String, BTreeMap<Option<Vec<u8>>, Vec<Vec<u8>>>>;

fn outputs(sandbox: &Sandbox) -> Outputs {
    let topics = Topics::new(sandbox.config.kafka.topic_prefix.clone());
    let brokers = &sandbox.config.kafka.brokers;
    let mut all = Outputs::new();
    for (name, topic) in [
        ("bars", topics.bars()),
        ("strikes", topics.strikes()),
        ("chains", topics.chains()),
        ("moneyness", topics.moneyness()),
        ("indicators", topics.indicators()),
        ("late", topics.late()),
        ("dead letters", topics.dead_letter(&topics.ticks())),
    ] {
        let mut by_key: BTreeMap<Option<Vec<u8>>, Vec<Vec<u8>>> = BTreeMap::new();
        for Record { key, payload, .. } in read_all(brokers, &topic) {
            by_key.entry(key).or_default().push(payload);
        }
        all.insert(name.to_owned(), by_key);
    }
    all
}

fn sizes(outputs: &Outputs) -> BTreeMap<&str, usize> {
    outputs
        .iter()
        .map(|(name, by_key)| (name.as_str(), by_key.values().map(Vec::len).sum()))
        .collect()
}

/// Asserts two runs produced the same records, naming the first difference.
fn assert_same(run: &str, got: &Outputs, expected: &Outputs) {
    for (topic, expected_by_key) in expected {
        let got_by_key = &got[topic];
        for (key, expected_records) in expected_by_key {
            let key_text = key.as_deref().map(String::from_utf8_lossy);
            let got_records = got_by_key.get(key).map_or(&[][..], Vec::as_slice);
            if let Some(i) = (0..expected_records.len().max(got_records.len()))
                .find(|&i| got_records.get(i) != expected_records.get(i))
            {
                panic!(
                    "{run}: {topic} key {key_text:?}: first difference at record {i} \
                     ({} records there, {} in the uninterrupted run)",
                    got_records.len(),
                    expected_records.len()
                );
            }
        }
        let extra: Vec<_> = got_by_key
            .keys()
            .filter(|k| !expected_by_key.contains_key(*k))
            .collect();
        assert!(extra.is_empty(), "{run}: {topic} has extra keys {extra:?}");
    }
    assert_eq!(got, expected);
}

async fn uninterrupted(input: &Input) -> Outputs {
    let sandbox = Sandbox::new("eos_ref").await;
    let mut feed = Feed::start(&sandbox, input).await;
    feed.publish_rest(input).await;
    let mut processor = Processor::spawn(&sandbox, "solo", 5_000);
    wait_caught_up(&sandbox, &mut [&mut processor]).await;
    processor.stop();
    let out = outputs(&sandbox);
    let sizes = sizes(&out);
    eprintln!("uninterrupted run: {sizes:?}");
    for (topic, n) in &sizes {
        assert!(*n > 0, "the uninterrupted run produced no {topic}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_and_rebalance_leave_exactly_the_uninterrupted_outputs() {
    let input = Input::new();
    let expected = uninterrupted(&input).await;

    // Crash: small batches (many transactions) so each kill lands mid-stream.
    let sandbox = Sandbox::new("eos_crash").await;
    let mut feed = Feed::start(&sandbox, &input).await;
    let mut mid_stream_kills = 0;
    for round in 0..3 {
        let before = progress(&sandbox).0;
        feed.publish_next(&input).await;
        let processor = Processor::spawn(&sandbox, "a", 300 + round * 200);
        if wait_mid_stream(&sandbox, before).await {
            mid_stream_kills += 1;
        }
        processor.kill_9();
    }
    let mut processor = Processor::spawn(&sandbox, "a", 300);
    feed.publish_rest(&input).await;
    wait_caught_up(&sandbox, &mut [&mut processor]).await;
    processor.stop();
    eprintln!("crash run: {mid_stream_kills} of 3 kills landed mid-stream");
    assert!(
        mid_stream_kills >= 1,
        "no kill landed while the processor was working"
    );
    assert_same("crash run", &outputs(&sandbox), &expected);

    // Rebalance: a second instance joins mid-stream, then the first leaves.
    let sandbox = Sandbox::new("eos_rebalance").await;
    let mut feed = Feed::start(&sandbox, &input).await;
    feed.publish_next(&input).await;
    let mut first = Processor::spawn(&sandbox, "a", 300);
    wait_restores(&mut first, 1).await;
    feed.publish_next(&input).await;
    let mut second = Processor::spawn(&sandbox, "b", 300);
    // Joining rebalances the group: the first gives up partitions, the second takes them.
    wait_restores(&mut first, 2).await;
    wait_restores(&mut second, 1).await;
    let before = progress(&sandbox).0;
    feed.publish_next(&input).await;
    feed.publish_next(&input).await;
    wait_mid_stream(&sandbox, before).await;
    first.stop();
    // Leaving rebalances again: the second takes every partition.
    wait_restores(&mut second, 2).await;
    feed.publish_rest(&input).await;
    wait_caught_up(&sandbox, &mut [&mut second]).await;
    second.stop();
    assert_same("rebalance run", &outputs(&sandbox), &expected);
}

/// Waits until `processor` restored its partitions `n` times (start, then each rebalance).
async fn wait_restores(processor: &mut Processor, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while processor.restores() < n {
        processor.assert_running();
        assert!(
            Instant::now() < deadline,
            "processor {} restored {} times, not {n}, in 90 s",
            processor.name,
            processor.restores()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
