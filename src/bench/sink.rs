//! `strikeflow bench sink`: the sink's real path (Kafka → decode → batch → binary COPY with
//! the offsets in the same transaction) against `psql \copy` of the same rows from a file,
//! in the same run, on a private database and private topics that are removed afterwards.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::migrate::migrate_database;
use anyhow::{bail, Context, Result};
use strikeflow_analytics::indicator_bank::{IndicatorBank, IndicatorChoice};
use strikeflow_analytics::{CoreSettings, Output, TickProcessor};
use strikeflow_ingest::MarketSimulator;
use strikeflow_kafka::Outbox;
use strikeflow_schemas::{encode, encode_into, Topics};
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::psql::{self, TickCsv, TICK_COLUMNS};
use super::scratch::{connect, create_database, drop_database};
use super::{bench_topics, drop_topics};
use crate::Config;

/// An encoded record and its key.
type Keyed = (String, Vec<u8>);

/// The sink's name in the private database's `sink_offsets`.
const CONSUMER: &str = "bench";
/// The name the Kafka-less breakdown stores its offsets under.
const WRITER: &str = "bench-writer";

/// Times the sink on `ticks` simulated tick rows, then on `strike_rows` strike-analytics
/// rows, each beside `psql \copy` of the same rows into an identical empty table.
pub async fn sink(config: &Config, ticks: u64, strike_rows: u64) -> Result<()> {
    psql::require_psql()?;
    let name = format!("sf_bench_{}", std::process::id());
    let (admin, url) = create_database(&config.database.url, &name).await?;
    let dir = std::env::temp_dir().join(&name);
    let topics = match bench_topics(config).await {
        Ok(topics) => topics,
        Err(e) => {
            drop_database(&admin, &name).await?;
            return Err(e);
        }
    };
    let result = async {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        measure(config, &topics, &url, &dir, ticks, strike_rows).await
    }
    .await;
    // Clean up whatever happened, then report the first failure.
    let topics_dropped = drop_topics(config, &topics, &[]).await;
    let database_dropped = drop_database(&admin, &name).await;
    let _ = std::fs::remove_dir_all(&dir);
    let figures = result?;
    topics_dropped?;
    database_dropped?;
    figures.print(config, &name);
    Ok(())
}

/// What one run measured.
struct Figures {
    instruments: usize,
    ticks: Table,
    strikes: Table,
    strike_source_ticks: u64,
}

/// One table's figures.
struct Table {
    rows: i64,
    csv: psql::Run,
    binary: psql::Run,
    ours: SinkRun,
    identical: bool,
    split: Option<Split>,
}

/// The sink's own work without Kafka: decoding and `write_batch`, timed apart.
struct Split {
    decode: Duration,
    write: Duration,
    batches: usize,
    /// CPU time of this process and of its PostgreSQL backend during `write_batch`.
    write_cpu: Cpu,
}

/// How long the sink took to store a backlog.
struct SinkRun {
    /// From starting the stage until `sink_offsets` covered every record.
    total: Duration,
    /// From the first committed batch until the last.
    after_first: Duration,
    /// Records covered by the first committed batch.
    first_batch: i64,
    /// CPU time of this process (the sink, and the bench polling its progress) and of the
    /// sink's PostgreSQL backend, from start until every record was stored.
    cpu: Cpu,
}

/// CPU time used by the client and by its PostgreSQL backend over a measured span, when
/// both are local Linux processes (`/proc`); on a shared, busy machine wall times vary
/// with the load, CPU times much less.
#[derive(Default, Clone, Copy)]
struct Cpu {
    ours: Option<Duration>,
    backend: Option<Duration>,
}

impl Cpu {
    fn add(&mut self, ours: Option<Duration>, backend: Option<Duration>) {
        let sum = |a: Option<Duration>, b: Option<Duration>| Some(a.unwrap_or_default() + b?);
        self.ours = sum(self.ours, ours);
        self.backend = sum(self.backend, backend);
    }
}

impl std::fmt::Display for Cpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |d: Option<Duration>| d.map_or("n/a".to_owned(), |d| format!("{d:.2?}"));
        write!(
            f,
            "CPU: strikeflow {}, its PostgreSQL backend {}",
            show(self.ours),
            show(self.backend)
        )
    }
}

/// CPU time a local process has used so far, all its threads (`/proc/<pid>/task/*/schedstat`,
/// nanoseconds on a CPU); `None` where there is no such process or no `/proc`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let mut total = 0_u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}

/// The local process id of the PostgreSQL backend behind `client`, if the server runs on
/// this machine (its pid is a process named `postgres` here).
async fn local_backend(client: &Client) -> Result<Option<u32>> {
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    Ok(u32::try_from(pid).ok().filter(|pid| is_postgres(*pid)))
}

fn is_postgres(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres")
}

/// CPU used by this process and by `backend` since `since` (from [`cpu_now`]).
fn cpu_since(since: (Option<Duration>, Option<Duration>), backend: Option<u32>) -> Cpu {
    let (ours, theirs) = cpu_now(backend);
    let delta = |now: Option<Duration>, then: Option<Duration>| Some(now?.saturating_sub(then?));
    Cpu {
        ours: delta(ours, since.0),
        backend: delta(theirs, since.1),
    }
}

/// CPU used so far by this process and by `backend`.
fn cpu_now(backend: Option<u32>) -> (Option<Duration>, Option<Duration>) {
    (cpu_time(std::process::id()), backend.and_then(cpu_time))
}

impl Figures {
    fn print(&self, config: &Config, database: &str) {
        let s = &config.sink;
        println!(
            "bench sink: private database {database}, sink batch_rows {}, batch_wait_ms {}; \
             psql times include its start-up and connection",
            s.batch_rows, s.batch_wait_ms
        );
        println!(
            "  ticks: {} rows (simulated market, {} instruments), 10 columns, plain COPY into ticks",
            self.ticks.rows, self.instruments
        );
        self.ticks.print();
        println!(
            "  strikes: {} rows (TickProcessor outputs of {} simulated ticks, 1 ms apart), 25 columns, \
             upserted (new keys: COPY straight into strike_analytics)",
            self.strikes.rows, self.strike_source_ticks
        );
        self.strikes.print();
    }
}

impl Table {
    fn print(&self) {
        let rate = |d: Duration| self.rows as f64 / d.as_secs_f64();
        let ours = rate(self.ours.total);
        let backend = |run: &psql::Run| {
            run.backend_cpu
                .map_or("n/a".to_owned(), |d| format!("{d:.2?}"))
        };
        println!(
            "    reference psql \\copy, CSV file:     {:>10.0} rows/s ({:.2?}; CPU: its PostgreSQL backend {})",
            rate(self.csv.wall),
            self.csv.wall,
            backend(&self.csv)
        );
        println!(
            "    reference psql \\copy, binary file:  {:>10.0} rows/s ({:.2?}; CPU: its PostgreSQL backend {})",
            rate(self.binary.wall),
            self.binary.wall,
            backend(&self.binary)
        );
        let steady = match self.rows - self.ours.first_batch {
            0 => "one batch".to_owned(),
            rest => format!(
                "{:.0} rows/s after the first commit",
                rest as f64 / self.ours.after_first.as_secs_f64()
            ),
        };
        println!(
            "    strikeflow sink (Kafka → decode → batch → COPY + offsets, one transaction per batch): \
             {ours:>10.0} rows/s ({:.2?} from start; {steady}; {})",
            self.ours.total, self.ours.cpu,
        );
        if let Some(split) = &self.split {
            let both = split.decode + split.write;
            println!(
                "    breakdown, same rows without Kafka (decode, then write_batch per {}-row batch): \
                 {:>10.0} rows/s ({both:.2?}: decode {:.2?}, write_batch = COPY + offsets + commit {:.2?}, {} batches; \
                 write_batch {})",
                self.rows / split.batches.max(1) as i64,
                self.rows as f64 / both.as_secs_f64(),
                split.decode,
                split.write,
                split.batches,
                split.write_cpu,
            );
        }
        println!(
            "    ratio to \\copy CSV: {:.2}   to \\copy binary: {:.2}   stored rows equal the reference's: {}",
            ours / rate(self.csv.wall),
            ours / rate(self.binary.wall),
            if self.identical { "yes" } else { "NO" }
        );
    }
}

async fn measure(
    config: &Config,
    topics: &Topics,
    url: &str,
    dir: &Path,
    ticks: u64,
    strike_rows: u64,
) -> Result<Figures> {
    migrate_database(url)
        .await
        .context("migrating the benchmark database")?;
    let db = connect(url).await?;
    let brokers = &config.kafka.brokers();
    let mut outbox = Outbox::connect(brokers)?;

    // Everything is generated and encoded before any clock starts. The ticks go to Kafka
    // and to a CSV file at once; the strike rows wait until the ticks are stored, so the
    // sink's first run sees only ticks.
    let market = &config.simulate.market;
    let mut sim = MarketSimulator::new(market)?;
    let instruments = sim.instruments().len();
    let keys: HashMap<i64, String> = sim
        .instruments()
        .iter()
        .map(|i| (i.instrument_token, i.chain_key().to_string()))
        .collect();
    let csv_path = dir.join("ticks.csv");
    let mut csv = TickCsv::create(&csv_path)?;
    let mut bytes = Vec::with_capacity(128);
    let mut payloads = Vec::with_capacity(ticks as usize);
    let ticks_topic = topics.ticks();
    for _ in 0..ticks {
        let tick = sim.next_tick();
        encode_into(&tick, &mut bytes)?;
        let key = keys.get(&tick.instrument_token).map_or("", String::as_str);
        outbox.send(&ticks_topic, key, &bytes)?;
        payloads.push(bytes.clone());
        csv.write(&tick)?;
        if outbox.pending() >= 50_000 {
            outbox.flush().await?;
        }
    }
    outbox.flush().await?;
    csv.finish()?;
    let (strikes, strike_source_ticks) = strike_records(config, strike_rows)?;

    db.batch_execute(
        "CREATE TABLE ticks_ref (LIKE ticks INCLUDING ALL); \
         CREATE TABLE ticks_ref_bin (LIKE ticks INCLUDING ALL); \
         CREATE TABLE strike_analytics_ref (LIKE strike_analytics INCLUDING ALL); \
         CREATE TABLE strike_analytics_ref_bin (LIKE strike_analytics INCLUDING ALL); \
         CHECKPOINT",
    )
    .await?;

    // Ticks: the reference from the CSV file written above, then the sink.
    let tick_csv = blocking(|| {
        psql::copy_from(
            url,
            &format!("ticks_ref ({TICK_COLUMNS})"),
            &csv_path,
            "csv",
        )
    })?;
    db.batch_execute("CHECKPOINT").await?;
    let split = without_kafka(config, topics, url, &payloads).await?;
    drop(payloads);
    db.batch_execute(&format!(
        "TRUNCATE ticks; DELETE FROM sink_offsets WHERE consumer = '{WRITER}'; CHECKPOINT"
    ))
    .await?;
    let ours = run_sink(config, topics, url, &db, &ticks_topic, ticks as i64).await?;
    let tick_binary = binary_reference(url, &db, dir, "ticks", "ticks_ref_bin").await?;
    let ticks = Table {
        split: Some(split),
        rows: count(&db, "ticks").await?,
        csv: tick_csv,
        binary: tick_binary,
        ours,
        identical: same_rows(&db, "ticks", "ticks_ref").await?
            && same_rows(&db, "ticks", "ticks_ref_bin").await?,
    };

    // Strike rows: the sink (it resumes from the tick offsets it stored), then references
    // loaded from the rows it stored, exported with \copy … TO.
    let strikes_topic = topics.strikes();
    let produced = strikes.len() as i64;
    for (key, payload) in &strikes {
        outbox.send(&strikes_topic, key, payload)?;
        if outbox.pending() >= 50_000 {
            outbox.flush().await?;
        }
    }
    outbox.flush().await?;
    drop(strikes);
    db.batch_execute("CHECKPOINT").await?;
    let ours = run_sink(config, topics, url, &db, &strikes_topic, produced).await?;
    let strike_csv_path = dir.join("strikes.csv");
    let export = strike_csv_path.clone();
    blocking(|| psql::copy_to(url, "strike_analytics", &export, "csv"))?;
    db.batch_execute("CHECKPOINT").await?;
    let strike_csv =
        blocking(|| psql::copy_from(url, "strike_analytics_ref", &strike_csv_path, "csv"))?;
    let strike_binary = binary_reference(
        url,
        &db,
        dir,
        "strike_analytics",
        "strike_analytics_ref_bin",
    )
    .await?;
    let strikes = Table {
        split: None,
        rows: count(&db, "strike_analytics").await?,
        csv: strike_csv,
        binary: strike_binary,
        ours,
        identical: same_rows(&db, "strike_analytics", "strike_analytics_ref").await?
            && same_rows(&db, "strike_analytics", "strike_analytics_ref_bin").await?,
    };
    Ok(Figures {
        instruments,
        ticks,
        strikes,
        strike_source_ticks,
    })
}

/// Strike-analytics records, encoded and keyed by chain: the processor core's outputs on
/// simulated ticks 1 ms apart (1,000 ticks per event second, as `bench process`), until
/// there are `rows`; also returns how many ticks that took.
fn strike_records(config: &Config, rows: u64) -> Result<(Vec<Keyed>, u64)> {
    let mut market_config = config.simulate.market.clone();
    market_config.tick_interval_ms = 1;
    let mut market = MarketSimulator::new(&market_config)?;
    let settings = CoreSettings {
        allowed_lateness_micros: 2_000_000,
        chain: config.processor().settings.analytics.chain_settings(),
    };
    let bank = IndicatorBank::new(&IndicatorChoice::defaults(), &[1, 3, 5, 15])?;
    let mut core = TickProcessor::new(settings, bank);
    for instrument in market.instruments() {
        core.on_instrument(instrument)?;
    }
    let mut records = Vec::with_capacity(rows as usize);
    let mut out = Vec::with_capacity(4_096);
    let mut fed = 0;
    while (records.len() as u64) < rows {
        if fed >= rows.saturating_mul(100).max(1_000_000) {
            bail!(
                "the processor core produced only {} strike rows from {fed} ticks",
                records.len()
            );
        }
        core.on_tick(market.next_tick(), &mut out);
        fed += 1;
        for o in out.drain(..) {
            if let Output::Strike(s) = o {
                let key = format!("{}:{}", s.underlying, s.expiry);
                records.push((key, encode(&s)?));
            }
        }
    }
    records.truncate(rows as usize);
    Ok((records, fed))
}

/// Starts the sink stage on the private topics and database and times it until its
/// `sink_offsets` rows for `topic` add up to `records` (every record stored), then stops it.
async fn run_sink(
    config: &Config,
    topics: &Topics,
    url: &str,
    db: &Client,
    topic: &str,
    records: i64,
) -> Result<SinkRun> {
    let mut sink = config.sink();
    sink.kafka.topics = topics.clone();
    sink.database_url = url.to_owned();
    sink.settings.consumer_name = CONSUMER.to_owned();
    let progress = db
        .prepare(
            "SELECT coalesce(sum(next_offset), 0)::bigint FROM sink_offsets \
             WHERE consumer = $1 AND topic = $2",
        )
        .await?;
    let backend_of_sink = db
        .prepare(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = $1",
        )
        .await?;
    let application = format!("strikeflow sink {CONSUMER}");
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let cpu_start = cpu_now(None);
    let mut backend: Option<u32> = None;
    let stage = tokio::spawn(strikeflow_sink::run(sink, shutdown.clone()));
    let mut first: Option<(Instant, i64)> = None;
    let finished = loop {
        if backend.is_none() {
            // The sink's session counts from its start: it connects within milliseconds and
            // is idle until its first batch.
            let pids = db.query(&backend_of_sink, &[&application]).await?;
            backend = pids
                .first()
                .and_then(|row| u32::try_from(row.get::<_, i32>(0)).ok())
                .filter(|pid| is_postgres(*pid));
        }
        let row = db.query_one(&progress, &[&CONSUMER, &topic]).await?;
        let done: i64 = row.get(0);
        let now = Instant::now();
        if done > 0 && first.is_none() {
            first = Some((now, done));
        }
        if done >= records {
            break now;
        }
        if stage.is_finished() {
            let outcome = stage.await?;
            bail!("the sink stopped after storing {done} of {records} records: {outcome:?}");
        }
        if started.elapsed() > Duration::from_secs(600) {
            shutdown.cancel();
            bail!("the sink stored only {done} of {records} records in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let mut cpu = cpu_since(cpu_start, None);
    cpu.backend = backend.and_then(cpu_time);
    shutdown.cancel();
    stage.await?.context("the sink failed")?;
    let (first_at, first_batch) = first.unwrap_or((finished, records));
    Ok(SinkRun {
        total: finished - started,
        after_first: finished - first_at,
        first_batch,
        cpu,
    })
}

/// The sink's work on `payloads` without Kafka: batches of `sink.batch_rows` encoded ticks
/// are decoded into a [`strikeflow_sink::Batch`] (timed) and stored with
/// [`strikeflow_sink::write_batch`] (timed: binary COPY, offsets, ownership check, commit) on
/// a session holding the sink lock of [`WRITER`], as the sink's own session does.
async fn without_kafka(
    config: &Config,
    topics: &Topics,
    url: &str,
    payloads: &[Vec<u8>],
) -> Result<Split> {
    use strikeflow_sink::{write_batch, Batch, Source, Sources, SINK_LOCK_CLASS};
    let mut client = connect(url).await?;
    client
        .execute(
            "SELECT pg_advisory_lock($1, hashtext($2))",
            &[&SINK_LOCK_CLASS, &WRITER],
        )
        .await?;
    let backend = local_backend(&client).await?;
    let sources = Sources::new(topics);
    let (mut decode, mut write, mut batches) = (Duration::ZERO, Duration::ZERO, 0);
    let mut write_cpu = Cpu::default();
    let mut offset = 0_i64;
    for chunk in payloads.chunks(config.sink.batch_rows.max(1)) {
        let mut batch = Batch::new(&sources);
        let started = Instant::now();
        for bytes in chunk {
            batch.ticks.push(strikeflow_schemas::decode(bytes)?);
        }
        offset += chunk.len() as i64;
        batch.offsets.insert((Source::Ticks, 0), offset);
        decode += started.elapsed();
        let started = Instant::now();
        let cpu_start = cpu_now(backend);
        write_batch(&mut client, WRITER, &batch).await?;
        write += started.elapsed();
        let used = cpu_since(cpu_start, backend);
        write_cpu.add(used.ours, used.backend);
        batches += 1;
    }
    Ok(Split {
        decode,
        write,
        batches,
        write_cpu,
    })
}

/// Exports `table` in PostgreSQL's binary COPY format (untimed), then times `\copy` of it
/// into `into`.
async fn binary_reference(
    url: &str,
    db: &Client,
    dir: &Path,
    table: &str,
    into: &str,
) -> Result<psql::Run> {
    let file: PathBuf = dir.join(format!("{table}.bin"));
    blocking(|| psql::copy_to(url, table, &file, "binary"))?;
    db.batch_execute("CHECKPOINT").await?;
    blocking(|| psql::copy_from(url, into, &file, "binary"))
}

/// Whether two tables hold the same multiset of rows.
async fn same_rows(db: &Client, a: &str, b: &str) -> Result<bool> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM (TABLE {a} EXCEPT ALL TABLE {b}) x) \
              + (SELECT count(*) FROM (TABLE {b} EXCEPT ALL TABLE {a}) y)"
    );
    let differing: i64 = db.query_one(&sql, &[]).await?.get(0);
    Ok(differing == 0)
}

async fn count(db: &Client, table: &str) -> Result<i64> {
    Ok(db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

/// Runs blocking work (a psql child) without stalling the runtime's other tasks.
fn blocking<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    tokio::task::block_in_place(work)
}
