//! `strikeflow bench e2e`: the whole pipeline on the local services, at fixed tick rates.
//!
//! The bench publishes simulated ticks at a fixed rate (its feed, a thread in this process,
//! through the project's `TickPublisher`) to private topics; `strikeflow process`,
//! `strikeflow sink` (on a scratch database) and `strikeflow push` run as child processes,
//! each in a session of its own (scheduled as its own group, like the broker and
//! PostgreSQL), so `/proc` gives each its own CPU time; N WebSocket clients in this process (the push
//! bench's crowd) subscribe to tick, bar and chain channels. Per rate step it prints the
//! sustained rate, tick → WebSocket latency (each tick's `exchange_ts` is its send time, see
//! `feed.rs`), tick → row visible in PostgreSQL, both consumers' lag and CPU per stage, and
//! at the end the highest rate held with p99 tick → WebSocket ≤ 50 ms.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use strikeflow_schemas::Topics;
use tokio_util::sync::CancellationToken;

use super::child::{free_port, stage_command, PushChild, StageChild};
use super::push::clients::{percentiles, Crowd, Plan, Timing};
use super::scratch::{connect, create_database, drop_database};
use super::{bench_topics, drop_topics, procfs};
use crate::migrate::migrate_database;
use crate::Config;

mod clients;
mod cpu;
mod feed;
mod report;
mod watch;

use cpu::{Pids, Snapshot};
use feed::Feed;
use report::Step;
use watch::{Commits, Lag, Watcher};

/// The sink's name in `sink_offsets` of the scratch database.
const SINK_CONSUMER: &str = "bench-e2e";
/// How long the stages may take to consume what a step left before the bench stops.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// How often the newest stored tick is looked up during a step.
const ROW_POLL: Duration = Duration::from_millis(50);
/// Lags are read on every this many row polls.
const LAG_EVERY: u32 = 10;

/// What `strikeflow bench e2e` is asked to do.
#[derive(Debug, Clone)]
pub struct E2eBench {
    /// Ticks per second of each step, run from the lowest.
    pub rates: Vec<f64>,
    /// Seconds of each step.
    pub secs: u64,
    /// WebSocket clients (each on one chain, one bar and two tick channels).
    pub clients: usize,
    /// Seconds of feed at the lowest rate before the first step, not measured: the
    /// processor joins its group, every stage warms up.
    pub warmup_secs: u64,
}

/// Runs every step and prints the figures.
pub async fn e2e(config: &Config, bench: E2eBench) -> Result<()> {
    if bench.secs == 0 || bench.clients == 0 {
        bail!("--secs and --clients must be positive");
    }
    if bench.rates.is_empty() || bench.rates.iter().any(|r| !r.is_finite() || *r <= 0.0) {
        bail!("--rates must list positive ticks-per-second figures");
    }
    let mut rates = bench.rates.clone();
    rates.sort_by(f64::total_cmp);
    rates.dedup();

    let name = format!("sf_bench_e2e_{}", std::process::id());
    let (admin, url) = create_database(&config.database.url, &name).await?;
    let topics = match bench_topics(config).await {
        Ok(topics) => topics,
        Err(e) => {
            let _ = drop_database(&admin, &name).await;
            return Err(e);
        }
    };
    // The stages' own logs (warnings and errors) go here rather than between the figures.
    let logs = std::env::temp_dir().join(format!("strikeflow-bench-e2e-{}", std::process::id()));
    let result = async {
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        migrate_database(&url)
            .await
            .context("migrating the benchmark database")?;
        measure(config, &bench, &rates, &topics, &url, &name, &logs).await
    }
    .await;
    let dropped = (
        drop_topics(config, &topics, &[]).await,
        drop_database(&admin, &name).await,
    );
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&logs);
    } else {
        eprintln!("the stages' logs are in {}", logs.display());
    }
    let steps = result?;
    dropped.0?;
    dropped.1?;

    println!();
    println!(
        "summary: a rate is held when the feed sustains it, p99 tick → WebSocket ≤ {} ms, both consumers end the step less than 1 s of input behind, and push closes no client",
        report::P99_LIMIT_MS
    );
    report::print_table(&steps);
    match report::highest_held(&steps) {
        Some(rate) => println!("highest rate held: {rate:.0} ticks/s (goal ≥ 100000)"),
        None => println!("highest rate held: none of the steps held (goal ≥ 100000)"),
    }
    Ok(())
}

/// The stages under test.
struct Stages {
    processor: StageChild,
    sink: StageChild,
    push: PushChild,
    logs: PathBuf,
}

impl Stages {
    /// An error naming a stage that has exited.
    fn check(&mut self) -> Result<()> {
        self.processor
            .check_running()
            .and_then(|()| self.sink.check_running())
            .and_then(|()| self.push.check_running())
            .with_context(|| format!("its log is in {}", self.logs.display()))
    }
}

/// A stage's standard error: `<logs>/<stage>.log`.
fn log_file(logs: &Path, stage: &str) -> Result<Stdio> {
    let path = logs.join(format!("{stage}.log"));
    let file =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Stdio::from(file))
}

/// Everything a step needs.
struct Run<'a> {
    feed: Feed,
    stages: Stages,
    watcher: Watcher,
    pids: Pids,
    plan: Plan,
    token: String,
    /// The processor's metrics listener, for its transaction figures.
    processor_metrics: u16,
    bench: &'a E2eBench,
}

/// Starts the feed and the stages, warms up, and runs the steps.
async fn measure(
    config: &Config,
    bench: &E2eBench,
    rates: &[f64],
    topics: &Topics,
    url: &str,
    database: &str,
    logs: &Path,
) -> Result<Vec<Step>> {
    // The master goes out first, so push names every tick channel from the start.
    let feed = Feed::start(config, topics).await?;
    let prefix = &topics.prefix;
    let group = format!("{prefix}processors");
    let processor_metrics = free_port()?;
    let mut processor = stage_command(config, "process", prefix, true)?;
    processor
        .env("STRIKEFLOW_PROCESSOR__GROUP_ID", &group)
        .env(
            "STRIKEFLOW_TELEMETRY__METRICS_LISTEN",
            format!("127.0.0.1:{processor_metrics}"),
        )
        .stderr(log_file(logs, "process")?);
    let processor = StageChild::start("process", processor)?;
    let mut sink = stage_command(config, "sink", prefix, true)?;
    sink.env("DATABASE_URL", url)
        .env("STRIKEFLOW_SINK__CONSUMER_NAME", SINK_CONSUMER)
        .stderr(log_file(logs, "sink")?);
    let sink = StageChild::start("sink", sink)?;
    let mut push = PushChild::start(
        config,
        prefix,
        free_port()?,
        bench.clients,
        log_file(logs, "push")?,
        true,
    )?;
    push.wait_ready(Duration::from_secs(120))
        .await
        .with_context(|| format!("its log is in {}", logs.display()))?;
    let pids = Pids {
        processor: processor.pid(),
        sink: sink.pid(),
        push: push.pid(),
        database: database.to_owned(),
    };
    let watcher = Watcher::new(config, topics, &group, connect(url).await?, SINK_CONSUMER)?;
    let token = strikeflow_push::auth::mint_with(
        &config.auth,
        "bench",
        Duration::from_secs(24 * 3_600),
        vec!["*".to_owned()],
    )
    .context("minting the clients' token with [auth] jwt_secret")?;
    let mut run = Run {
        plan: clients::plan(bench.clients, &feed.instruments),
        feed,
        stages: Stages {
            processor,
            sink,
            push,
            logs: logs.to_owned(),
        },
        watcher,
        pids,
        token,
        processor_metrics,
        bench,
    };

    println!(
        "bench e2e: feed (simulator → validate → Avro → Kafka, a thread of this process) → strikeflow process, strikeflow sink (database {database}) and strikeflow push (child processes) → {} WebSocket clients (this process, each on 1 chain, 1 bar and 2 tick channels); {} instruments, {} ticks partitions; steps of {} s after a {} s warm-up",
        bench.clients,
        run.feed.instruments.len(),
        Topics::TICKS_PARTITIONS,
        bench.secs,
        bench.warmup_secs
    );
    println!(
        "  each tick's exchange_ts is the feed's clock when it handed the tick to the publisher; clients time tick messages by it on receipt, and max(ts) of the stored ticks is polled every {} ms",
        ROW_POLL.as_millis()
    );

    if bench.warmup_secs > 0 {
        run.feed
            .run(rates[0], Duration::from_secs(bench.warmup_secs))
            .await?;
        if drain(&run.watcher, &mut run.stages, Instant::now())
            .await?
            .is_none()
        {
            bail!("the stages did not consume the warm-up's ticks within {DRAIN_LIMIT:?}");
        }
    }
    let mut steps = Vec::with_capacity(rates.len());
    for (n, &rate) in rates.iter().enumerate() {
        let step = run.step(rate).await?;
        step.print(n + 1);
        let drained = step.drained_secs.is_some();
        steps.push(step);
        if !drained {
            println!("  stopping: the next step would start behind");
            break;
        }
    }
    Ok(steps)
}

impl Run<'_> {
    /// One step at `rate`: connect the clients, feed for the step's length while sampling,
    /// then collect, and wait for the stages to catch up.
    async fn step(&mut self, rate: f64) -> Result<Step> {
        self.stages.check()?;
        let load = procfs::load_average();
        let stop = CancellationToken::new();
        let timing: Arc<dyn Timing> = Arc::new(clients::TickTiming(self.feed.clock.clone()));
        let crowd = Crowd::connect(
            self.stages.push.addr(),
            &self.token,
            &self.plan,
            timing,
            stop.clone(),
        )
        .await?;
        // Let the subscriptions' snapshots arrive before anything is timed.
        tokio::time::sleep(Duration::from_secs(1)).await;
        crowd.start_counting();

        let duration = Duration::from_secs(self.bench.secs);
        let commits = Commits::scrape(self.processor_metrics).await?;
        let before = Snapshot::take(&self.pids)?;
        let step_start = self.feed.clock.now_micros();
        let sampling = CancellationToken::new();
        let feeding = async {
            let report = self.feed.run(rate, duration).await;
            sampling.cancel();
            report
        };
        let (fed, sampled) = tokio::join!(
            feeding,
            sample(&self.watcher, &self.feed.clock, step_start, &sampling)
        );
        let after = Snapshot::take(&self.pids)?;
        let fed_at = Instant::now();
        let commits = Commits::scrape(self.processor_metrics)
            .await?
            .since(&commits);
        let fed = fed?;
        let (mut ages, lag_max) = sampled?;
        let lag_end = self.watcher.lag().await?;

        crowd
            .wait_quiet(Duration::from_millis(500), Duration::from_secs(10))
            .await;
        stop.cancel();
        let crowd = crowd.finish().await;
        let drained_secs = drain(&self.watcher, &mut self.stages, fed_at).await?;
        let ws = crowd
            .latency
            .iter()
            .find(|(kind, _)| kind == "ticks")
            .map(|(_, l)| *l)
            .unwrap_or_default();
        Ok(Step {
            target: rate,
            secs: duration.as_secs_f64(),
            load,
            sent: fed.sent,
            rejected: fed.rejected,
            ws,
            deliveries: crowd.deliveries,
            connected: crowd.connected,
            closed: crowd.closes.values().sum(),
            visible: percentiles(&mut ages),
            lag_max: Lag {
                processor: lag_max.processor.max(lag_end.processor),
                sink: lag_max.sink.max(lag_end.sink),
            },
            lag_end,
            drained_secs,
            commits,
            cpu: after.since(&before),
        })
    }
}

/// Until `stop`: the newest visible row's age every [`ROW_POLL`] (in micros) and the
/// largest lags seen.
async fn sample(
    watcher: &Watcher,
    clock: &feed::Clock,
    step_start: i64,
    stop: &CancellationToken,
) -> Result<(Vec<u32>, Lag)> {
    let mut ages = Vec::new();
    let mut lag_max = Lag::default();
    let mut poll = tokio::time::interval(ROW_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u32.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = poll.tick() => {}
        }
        let now = clock.now_micros();
        let newest = watcher
            .newest_tick()
            .await?
            .and_then(|ts| clock.sent_micros(ts));
        let age = watch::visible_age(now, newest, step_start);
        ages.push(u32::try_from(age).unwrap_or(u32::MAX));
        if n % LAG_EVERY == 0 {
            let lag = watcher.lag().await?;
            lag_max.processor = lag_max.processor.max(lag.processor);
            lag_max.sink = lag_max.sink.max(lag.sink);
        }
    }
    Ok((ages, lag_max))
}

/// Waits until both stages have consumed the ticks topic to its end: the seconds since
/// `since` (the feed's stop) when they had, or `None` after [`DRAIN_LIMIT`].
async fn drain(watcher: &Watcher, stages: &mut Stages, since: Instant) -> Result<Option<f64>> {
    let started = since;
    loop {
        stages.check()?;
        let lag = watcher.lag().await?;
        if lag.processor == 0 && lag.sink == 0 {
            return Ok(Some(started.elapsed().as_secs_f64()));
        }
        if started.elapsed() > DRAIN_LIMIT {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
