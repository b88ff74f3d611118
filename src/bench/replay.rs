//! `strikeflow bench replay`: a recorded session through the whole pipeline at full speed
//! (`ingest replay --speed max` → processor → sink), timed until every tick and every
//! output is stored, against the session's event-time span: the replay factor (issue
//! goal: a full session at ≥ 50× real time). The reference in the same run is the replay
//! alone (publishing the recording to Kafka), so the factor of the pipeline can be read
//! against what feeding it costs.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use strikeflow_ingest::replay::{run_replay, ReplayConfig, Speed, TickRecorder};
use strikeflow_ingest::MarketSimulator;
use strikeflow_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use strikeflow_kafka::rdkafka::{Offset, TopicPartitionList};
use strikeflow_schemas::Topics;
use tokio::time::Instant;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::scratch::{connect, create_database, drop_database};
use super::{bench_topics, drop_topics};
use crate::migrate::migrate_database;
use crate::Config;

/// How long the pipeline may take to store what was replayed before the bench gives up.
const STORE_TIMEOUT: Duration = Duration::from_secs(1_800);

/// What `bench replay` runs.
#[derive(Debug, Clone, Copy)]
pub struct ReplayBench {
    /// Ticks to record and replay; 0 = the whole first simulated session.
    pub ticks: u64,
}

/// Records a simulated session (`[simulate.market]`), replays it through a processor and a
/// sink on private topics and a private database, and prints the replay factor.
pub async fn replay(config: &Config, bench: ReplayBench) -> Result<()> {
    let name = format!("sf_bench_replay_{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let recording = dir.join("session.csv");
    let master = dir.join("master.csv");
    let session = record(config, bench.ticks, &recording, &master)?;
    println!(
        "bench replay: recorded {} ticks of {} instruments, {:.0} s of event time ({:.1} MB)",
        session.ticks,
        session.instruments,
        session.span_secs(),
        std::fs::metadata(&recording).map_or(0.0, |m| m.len() as f64 / 1e6)
    );

    let (admin, url) = create_database(&config.database.url, &name).await?;
    let reference = bench_topics(config).await?;
    let topics = bench_topics(config).await?;
    let result = async {
        migrate_database(&url)
            .await
            .context("migrating the benchmark database")?;
        let alone = replay_alone(config, &reference, &recording, &master).await?;
        let pipeline = through_pipeline(config, &topics, &url, &recording, &master).await?;
        Ok::<_, anyhow::Error>((alone, pipeline))
    }
    .await;
    let dropped = (
        drop_topics(config, &reference, &[]).await,
        drop_topics(config, &topics, &[]).await,
        drop_database(&admin, &name).await,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let (alone, pipeline) = result?;
    dropped.0?;
    dropped.1?;
    dropped.2?;

    let span = session.span_secs();
    let factor = |wall: Duration| span / wall.as_secs_f64();
    let rate = |wall: Duration| session.ticks as f64 / wall.as_secs_f64();
    println!(
        "  reference, replay alone into Kafka: {:.2?} = {:.0} ticks/s, {:.0}x real time",
        alone,
        rate(alone),
        factor(alone)
    );
    println!(
        "  pipeline: published in {:.2?}, processed (every tick committed by the processors) in {:.2?}, stored (every tick and output in PostgreSQL) in {:.2?}",
        pipeline.published, pipeline.processed, pipeline.stored
    );
    println!(
        "  replay factor, through the whole pipeline: {:.1}x real time ({:.0} ticks/s); goal >= 50x",
        factor(pipeline.stored),
        rate(pipeline.stored)
    );
    println!(
        "  stored: {} ticks, {} bars, {} strike rows, {} chain rows, {} moneyness points, {} indicator values",
        pipeline.rows[0],
        pipeline.rows[1],
        pipeline.rows[2],
        pipeline.rows[3],
        pipeline.rows[4],
        pipeline.rows[5]
    );
    Ok(())
}

/// What was recorded.
struct Session {
    ticks: u64,
    instruments: usize,
    first_ts: i64,
    last_ts: i64,
}

impl Session {
    /// Event time from the first tick to the last, in seconds.
    fn span_secs(&self) -> f64 {
        (self.last_ts - self.first_ts) as f64 / 1e6
    }
}

/// Writes `ticks` simulated ticks (0: up to the first session's close) and the instrument
/// master they belong to.
fn record(config: &Config, ticks: u64, recording: &Path, master: &Path) -> Result<Session> {
    let mut market = MarketSimulator::new(&config.simulate.market)?;
    strikeflow_ingest::master::write_master(
        std::fs::File::create(master).with_context(|| format!("creating {}", master.display()))?,
        market.instruments(),
    )?;
    let mut recorder = TickRecorder::create(recording)?;
    let mut session = Session {
        ticks: 0,
        instruments: market.instruments().len(),
        first_ts: i64::MAX,
        last_ts: i64::MIN,
    };
    loop {
        let tick = market.next_tick();
        recorder.record(&tick)?;
        session.ticks += 1;
        session.first_ts = session.first_ts.min(tick.exchange_ts);
        session.last_ts = session.last_ts.max(tick.exchange_ts);
        let closed = market.session_over().is_some();
        if (ticks > 0 && session.ticks >= ticks) || (ticks == 0 && closed) {
            break;
        }
    }
    recorder.finish()?;
    Ok(session)
}

/// The replay's configuration for `topics`.
fn replay_config(
    config: &Config,
    topics: &Topics,
    recording: &Path,
    master: &Path,
) -> ReplayConfig {
    ReplayConfig {
        brokers: config.kafka.brokers(),
        topics: topics.clone(),
        registry: config.registry_connection(),
        files: vec![recording.to_owned()],
        instruments_csv: master.to_owned(),
        speed: Speed::Max,
        from_line: 1,
        progress: false,
    }
}

/// The reference: the recording published to Kafka with nothing consuming it.
async fn replay_alone(
    config: &Config,
    topics: &Topics,
    recording: &Path,
    master: &Path,
) -> Result<Duration> {
    let started = Instant::now();
    let report = run_replay(
        replay_config(config, topics, recording, master),
        CancellationToken::new(),
    )
    .await?;
    if report.rejected + report.malformed > 0 {
        bail!(
            "the replay rejected {} ticks",
            report.rejected + report.malformed
        );
    }
    Ok(started.elapsed())
}

/// When each step of the pipeline finished, from the replay's start.
struct Pipeline {
    published: Duration,
    processed: Duration,
    stored: Duration,
    /// Rows stored: ticks, bars, strikes, chains, moneyness, indicators.
    rows: [i64; 6],
}

/// The recording replayed into a processor and a sink, both started (and caught up with
/// nothing) first, so the clock covers the data's way through and not their start-up.
async fn through_pipeline(
    config: &Config,
    topics: &Topics,
    url: &str,
    recording: &Path,
    master: &Path,
) -> Result<Pipeline> {
    let mut scratch = config.clone();
    scratch.kafka.topic_prefix = topics.prefix.clone();
    scratch.database.url = url.to_owned();
    scratch.processor.group_id = format!("{}processors", topics.prefix);
    scratch.sink.consumer_name = "bench".into();
    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        scratch.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(scratch.sink(), shutdown.clone()));
    let db = connect(url).await?;
    let result = async {
        let started = Instant::now();
        let report = run_replay(
            replay_config(config, topics, recording, master),
            CancellationToken::new(),
        )
        .await?;
        if report.rejected + report.malformed > 0 {
            bail!(
                "the replay rejected {} ticks",
                report.rejected + report.malformed
            );
        }
        let published = started.elapsed();
        let watcher: BaseConsumer = strikeflow_kafka::client_config(&config.kafka.brokers())
            .set("group.id", &scratch.processor.group_id)
            .create()?;
        let deadline = started + STORE_TIMEOUT;
        loop {
            if processor.is_finished() || sink.is_finished() {
                bail!("a stage stopped before the pipeline caught up");
            }
            if processed(&watcher, topics)? {
                break;
            }
            if Instant::now() > deadline {
                bail!("the processors did not catch up within {STORE_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let processed_at = started.elapsed();
        loop {
            if sink.is_finished() {
                bail!("the sink stopped before storing everything");
            }
            if stored(&db, &watcher, topics).await? {
                break;
            }
            if Instant::now() > deadline {
                bail!("the sink did not catch up within {STORE_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stored_at = started.elapsed();
        let mut rows = [0; 6];
        for (n, table) in rows.iter_mut().zip([
            "ticks",
            "bars_1m",
            "strike_analytics",
            "chain_analytics",
            "moneyness_points",
            "indicator_values",
        ]) {
            *n = db
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await?
                .get(0);
        }
        Ok(Pipeline {
            published,
            processed: processed_at,
            stored: stored_at,
            rows,
        })
    }
    .await;
    shutdown.cancel();
    let stopped = (processor.await, sink.await);
    let pipeline = result?;
    stopped.0??;
    stopped.1??;
    Ok(pipeline)
}

/// Every record of the ticks topic (written without transactions, so its end offsets
/// count records) is committed by the processor group.
fn processed(watcher: &BaseConsumer, topics: &Topics) -> Result<bool> {
    let ticks = topics.ticks();
    let mut partitions = TopicPartitionList::new();
    let mut end = 0;
    for p in 0..Topics::TICKS_PARTITIONS {
        partitions.add_partition(&ticks, p);
        end += high_watermark(watcher, &ticks, p)?;
    }
    let committed = tokio::task::block_in_place(|| {
        watcher.committed_offsets(partitions, Duration::from_secs(5))
    })?;
    let done: i64 = committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => n,
            _ => 0,
        })
        .sum();
    Ok(done >= end)
}

/// The sink's stored offsets cover every topic: the ticks topic to its end, and each
/// processor output (written in transactions, so each partition ends with a commit marker
/// the sink never stores past) to within that marker.
async fn stored(db: &Client, watcher: &BaseConsumer, topics: &Topics) -> Result<bool> {
    let rows = db
        .query(
            "SELECT topic, partition, next_offset FROM sink_offsets WHERE consumer = 'bench'",
            &[],
        )
        .await?;
    let stored = |topic: &str, partition: i32| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == topic && r.get::<_, i32>(1) == partition)
            .map_or(0, |r| r.get::<_, i64>(2))
    };
    for p in 0..Topics::TICKS_PARTITIONS {
        if stored(&topics.ticks(), p) < high_watermark(watcher, &topics.ticks(), p)? {
            return Ok(false);
        }
    }
    for topic in [
        topics.bars(),
        topics.strikes(),
        topics.chains(),
        topics.moneyness(),
        topics.indicators(),
    ] {
        let metadata = tokio::task::block_in_place(|| {
            watcher.fetch_metadata(Some(&topic), Duration::from_secs(5))
        })?;
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let high = high_watermark(watcher, &topic, partition.id())?;
            if high > 0 && stored(&topic, partition.id()) < high - 1 {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn high_watermark(watcher: &BaseConsumer, topic: &str, partition: i32) -> Result<i64> {
    let (_, high) = tokio::task::block_in_place(|| {
        watcher.fetch_watermarks(topic, partition, Duration::from_secs(5))
    })?;
    Ok(high)
}
