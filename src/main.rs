//! `strikeflow`: one subcommand per pipeline stage, plus `run` (all stages in one process),
//! `migrate` and `token`. This file only wires configuration, telemetry and stages.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use strikeflow::migrate::migrate_database;
use strikeflow::Config;
use strikeflow_kafka::ensure_topics;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Real-time analytics for NSE index derivatives: ticks in, bars and chain analytics out,
/// stored in PostgreSQL and pushed to dashboards.
#[derive(Debug, Parser)]
#[command(name = "strikeflow", version)]
struct Cli {
    /// TOML configuration file (default: ./strikeflow.toml when present). Environment
    /// variables override it: KAFKA_BROKERS, DATABASE_URL, REDIS_URL, STRIKEFLOW_JWT_SECRET,
    /// and STRIKEFLOW_<SECTION>__<KEY> for any other setting.
    #[arg(long, global = true, env = "STRIKEFLOW_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Feed market data into Kafka.
    Ingest {
        #[command(subcommand)]
        source: IngestSource,
    },
    /// Consume ticks, build event-time bars and analytics, publish them to Kafka.
    Process,
    /// Write ticks, bars and instruments to PostgreSQL exactly once.
    Sink,
    /// Serve the authenticated WebSocket fan-out and health endpoints.
    Push,
    /// Run every stage in one process (simulator, processor, sink, push): the quick start.
    Run(RunArgs),
    /// Apply database migrations and create the Kafka topics.
    Migrate,
    /// Mint a development JWT for the WebSocket API.
    Token(TokenArgs),
    /// Print throughput figures (see docs/benchmarks.md).
    Bench {
        #[command(subcommand)]
        what: BenchTarget,
    },
}

#[derive(Debug, Subcommand)]
enum BenchTarget {
    /// Simulated ticks into the local Kafka, beside raw librdkafka sends.
    Ingest {
        /// How many ticks to publish.
        #[arg(long, default_value_t = 2_000_000)]
        ticks: u64,
    },
    /// The processor core on simulated chains (one core, no Kafka), and IV + Greeks cost.
    Process {
        /// How many ticks to feed.
        #[arg(long, default_value_t = 2_000_000)]
        ticks: usize,
        /// Event time between ticks: 1 ms is 1,000 ticks per event second across the chains,
        /// a busy but ordinary rate for full NIFTY and BANKNIFTY chains.
        #[arg(long, default_value_t = 1)]
        tick_interval_ms: u64,
        /// Run the processor stage against the local Kafka instead of the bare core.
        #[arg(long)]
        kafka: bool,
    },
}

#[derive(Debug, Subcommand)]
enum IngestSource {
    /// Publish a simulated NIFTY/BANKNIFTY session (seeded, reproducible).
    Simulate(SimulateArgs),
    /// Load a Kite-format instrument master CSV: publish it and upsert the instruments table.
    Instruments(InstrumentsArgs),
    /// Replay recorded ticks (NDJSON or CSV, see docs/formats.md) keeping event timestamps.
    Replay(ReplayArgs),
    /// Connect to a Kite-protocol WebSocket ticker and publish its ticks.
    Kite(KiteArgs),
}

#[derive(Debug, Args)]
struct InstrumentsArgs {
    /// The instrument master (Kite CSV columns: instrument_token, exchange_token,
    /// tradingsymbol, name, last_price, expiry, strike, tick_size, lot_size,
    /// instrument_type, segment, exchange).
    #[arg(long)]
    file: PathBuf,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Recordings to replay, in order (.ndjson/.jsonl or .csv).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The instrument master the recorded tokens belong to.
    #[arg(long)]
    instruments: PathBuf,
    /// `max` (no pacing), `realtime` / `1x`, or a factor such as `10x`.
    #[arg(long, default_value = "max")]
    speed: strikeflow_ingest::replay::Speed,
    /// Resume at this data line (1-based, counted across the files; a previous run prints
    /// the line to resume from).
    #[arg(long, default_value_t = 1)]
    from_line: u64,
    /// Do not draw the progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Debug, Args)]
struct KiteArgs {
    /// Ticker WebSocket URL.
    #[arg(long, default_value = "wss://ws.kite.trade")]
    url: String,
    /// API key of the Kite Connect app.
    #[arg(long, env = "KITE_API_KEY")]
    api_key: String,
    /// Access token of the session.
    #[arg(long, env = "KITE_ACCESS_TOKEN", hide_env_values = true)]
    access_token: String,
    /// The instrument master (Kite CSV) of the tokens.
    #[arg(long)]
    instruments: PathBuf,
    /// Tokens to subscribe in full mode (repeatable); default: every token in the master.
    #[arg(long = "token")]
    tokens: Vec<i64>,
}

#[derive(Debug, Args, Clone)]
struct SimulateArgs {
    /// Random seed: the same seed gives the same ticks.
    #[arg(long)]
    seed: Option<u64>,
    /// Ticks per second of wall time; 0 publishes as fast as Kafka accepts.
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many ticks (default: run until Ctrl-C).
    #[arg(long)]
    max_ticks: Option<u64>,
    /// Event time between consecutive ticks, in milliseconds.
    #[arg(long)]
    tick_interval_ms: Option<u64>,
    /// Event seconds per wall second (e.g. 75 plays a 375-minute session in 5 minutes);
    /// sets the tick interval from the rate.
    #[arg(long, conflicts_with = "tick_interval_ms")]
    speed: Option<f64>,
    /// Also record every tick to this file (.ndjson or .csv) for `ingest replay`.
    #[arg(long)]
    record: Option<PathBuf>,
    /// Write the simulated instrument master (Kite CSV) to this file, then exit.
    #[arg(long)]
    write_master: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Do not start the simulator (consume whatever feeds the ticks topic).
    #[arg(long)]
    no_simulator: bool,
    #[command(flatten)]
    simulate: SimulateArgs,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// Subject (user name) of the token.
    #[arg(long, default_value = "dev")]
    sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// Channel patterns the token may subscribe to (e.g. "bars.*"); none means all.
    #[arg(long = "channel")]
    channels: Vec<String>,
}

impl SimulateArgs {
    fn apply(&self, config: &mut Config) -> Result<()> {
        if let Some(seed) = self.seed {
            config.simulate.market.seed = seed;
        }
        if let Some(rate) = self.rate {
            config.simulate.rate = rate;
        }
        if let Some(max) = self.max_ticks {
            config.simulate.max_ticks = max;
        }
        if let Some(ms) = self.tick_interval_ms {
            config.simulate.market.tick_interval_ms = ms;
        }
        if let Some(speed) = self.speed {
            let rate = config.simulate.rate;
            if !(speed > 0.0 && rate > 0.0) {
                bail!(
                    "--speed needs a positive speed and a positive --rate (ticks per wall second)"
                );
            }
            config.simulate.market.tick_interval_ms =
                ((speed * 1_000.0 / rate).round() as u64).max(1);
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut config = Config::load(cli.config.as_deref()).context("reading configuration")?;
    init_telemetry(&config)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));

    match cli.command {
        Command::Ingest { source } => ingest(source, &mut config, shutdown).await?,
        Command::Process => strikeflow_processors::run(config.processor(), shutdown).await?,
        Command::Sink => strikeflow_sink::run(config.sink(), shutdown).await?,
        Command::Push => strikeflow_push::run(config.push(), shutdown).await?,
        Command::Run(args) => {
            args.simulate.apply(&mut config)?;
            run_all(&config, !args.no_simulator, shutdown).await?;
        }
        Command::Migrate => {
            let report = migrate_database(&config.database.url)
                .await
                .with_context(|| {
                    format!("migrating the database at {}", redact(&config.database.url))
                })?;
            ensure_topics(
                &config.kafka.brokers,
                &config.topics().all(),
                config.kafka.replication,
            )
            .await
            .with_context(|| format!("creating topics on {}", config.kafka.brokers))?;
            println!(
                "database: {} migration(s) applied, timescaledb {}; kafka topics ready on {}",
                report.applied.len(),
                if report.timescaledb {
                    "enabled"
                } else {
                    "not available (plain tables)"
                },
                config.kafka.brokers
            );
        }
        Command::Bench {
            what: BenchTarget::Ingest { ticks },
        } => strikeflow::bench::ingest(&config, ticks).await?,
        Command::Bench {
            what:
                BenchTarget::Process {
                    ticks,
                    tick_interval_ms,
                    kafka,
                },
        } => {
            if kafka {
                strikeflow::bench::process_kafka(&config, ticks as u64, tick_interval_ms).await?
            } else {
                strikeflow::bench::process(&config, ticks, tick_interval_ms)?
            }
        }
        Command::Token(args) => {
            let ttl = Duration::from_secs(args.ttl_secs);
            let token = strikeflow_push::auth::mint(
                &config.auth.jwt_secret,
                &args.sub,
                ttl,
                args.channels,
            )?;
            println!("{token}");
        }
    }
    Ok(())
}

async fn ingest(
    source: IngestSource,
    config: &mut Config,
    shutdown: CancellationToken,
) -> Result<()> {
    match source {
        IngestSource::Simulate(args) => {
            args.apply(config)?;
            if let Some(path) = &args.write_master {
                let market = strikeflow_ingest::MarketSimulator::new(&config.simulate.market)?;
                let file = std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?;
                strikeflow_ingest::master::write_master(file, market.instruments())?;
                println!(
                    "wrote {} instruments to {}",
                    market.instruments().len(),
                    path.display()
                );
                return Ok(());
            }
            let mut simulate = config.simulate();
            simulate.record = args.record.clone();
            let report = strikeflow_ingest::run_simulation(simulate, shutdown).await?;
            println!(
                "published {} instruments and {} ticks ({} rejected) in {:.2?}",
                report.instruments, report.ticks, report.rejected, report.elapsed
            );
        }
        IngestSource::Instruments(args) => {
            let master = strikeflow_ingest::master::load_master_file(&args.file)?;
            for bad in &master.errors {
                eprintln!(
                    "{}:{}: skipped: {}",
                    args.file.display(),
                    bad.line,
                    bad.reason
                );
            }
            let mut publisher = strikeflow_ingest::TickPublisher::connect(
                &config.kafka.brokers,
                &config.topics(),
                None,
            )?;
            publisher.publish_instruments(&master.instruments).await?;
            let (client, connection) =
                tokio_postgres::connect(&config.database.url, tokio_postgres::NoTls)
                    .await
                    .with_context(|| format!("connecting to {}", redact(&config.database.url)))?;
            let connection = tokio::spawn(connection);
            strikeflow_sink::upsert_instruments(&client, &master.instruments).await?;
            drop(client);
            let _ = connection.await;
            println!(
                "loaded {} instruments ({} rows skipped) into {} and the instruments table",
                master.instruments.len(),
                master.errors.len(),
                config.topics().instruments()
            );
        }
        IngestSource::Replay(args) => {
            let replay = strikeflow_ingest::replay::ReplayConfig {
                brokers: config.kafka.brokers.clone(),
                topics: config.topics(),
                files: args.files,
                instruments_csv: args.instruments,
                speed: args.speed,
                from_line: args.from_line,
                progress: !args.no_progress,
            };
            let report = strikeflow_ingest::replay::run_replay(replay, shutdown).await?;
            println!(
                "published {} ticks ({} rejected, {} malformed lines) in {:.2?}; resume with --from-line {}",
                report.published, report.rejected, report.malformed, report.elapsed, report.next_line
            );
        }
        IngestSource::Kite(args) => {
            let kite = strikeflow_ingest::kite::KiteConfig {
                url: args.url,
                api_key: args.api_key,
                access_token: args.access_token,
                instruments_csv: args.instruments,
                tokens: args.tokens,
                brokers: config.kafka.brokers.clone(),
                topics: config.topics(),
                ..Default::default()
            };
            let report = strikeflow_ingest::kite::run_kite(kite, shutdown).await?;
            println!("{report:?}");
        }
    }
    Ok(())
}

/// Runs every stage as a task; the first one to fail stops the others.
async fn run_all(config: &Config, with_simulator: bool, shutdown: CancellationToken) -> Result<()> {
    ensure_topics(
        &config.kafka.brokers,
        &config.topics().all(),
        config.kafka.replication,
    )
    .await
    .context("creating topics (is Kafka up? try ./dev up)")?;
    let mut stages = tokio::task::JoinSet::new();
    let (c, s) = (config.processor(), shutdown.clone());
    stages.spawn(async move {
        (
            "processor",
            strikeflow_processors::run(c, s)
                .await
                .map_err(anyhow::Error::from),
        )
    });
    let (c, s) = (config.sink(), shutdown.clone());
    stages.spawn(async move {
        (
            "sink",
            strikeflow_sink::run(c, s)
                .await
                .map_err(anyhow::Error::from),
        )
    });
    let (c, s) = (config.push(), shutdown.clone());
    stages.spawn(async move {
        (
            "push",
            strikeflow_push::run(c, s)
                .await
                .map_err(anyhow::Error::from),
        )
    });
    if with_simulator {
        let (c, s) = (config.simulate(), shutdown.clone());
        stages.spawn(async move {
            let result = strikeflow_ingest::run_simulation(c, s).await;
            (
                "simulator",
                result
                    .map(|report| info!(ticks = report.ticks, "simulator done"))
                    .map_err(anyhow::Error::from),
            )
        });
    }
    let mut first_error = None;
    while let Some(joined) = stages.join_next().await {
        let (stage, result) = joined.context("a stage panicked")?;
        if let Err(e) = result {
            error!(stage, error = %format!("{e:#}"), "stage failed; stopping the others");
            first_error.get_or_insert(e.context(format!("{stage} failed")));
            shutdown.cancel();
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    info!("shutting down: finishing in-flight work");
    shutdown.cancel();
}

fn init_telemetry(config: &Config) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.telemetry.log))
        .context("parsing the log filter")?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Some(addr) = config.telemetry.metrics_listen {
        // Metrics are for operators, not for the data path: a taken port (a second stage on
        // the same host) is worth a warning, not a refusal to start.
        match metrics_exporter_prometheus::PrometheusBuilder::new()
            .with_http_listener(addr)
            .install()
        {
            Ok(()) => info!(%addr, "prometheus metrics at http://{addr}/metrics"),
            Err(e) => {
                tracing::warn!(%addr, error = %e, "metrics exporter not started; set [telemetry] metrics_listen")
            }
        }
    }
    Ok(())
}

/// A connection string without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{}@{}", &url[..scheme + 3], user, &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
