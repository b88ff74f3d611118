//! The command line: what `strikeflow` accepts, and how the simulator flags override the
//! configuration. Only definitions live here; `commands` does the work.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use strikeflow::Config;

/// Real-time analytics for NSE index derivatives: ticks in, bars and chain analytics out,
/// stored in PostgreSQL and pushed to dashboards.
#[derive(Debug, Parser)]
#[command(name = "strikeflow", version)]
pub(crate) struct Cli {
    /// TOML configuration file (default: ./strikeflow.toml when present). Environment
    /// variables override it: KAFKA_BROKERS, DATABASE_URL, REDIS_URL, STRIKEFLOW_JWT_SECRET,
    /// and STRIKEFLOW_<SECTION>__<KEY> for any other setting. Unknown keys are an error.
    #[arg(long, global = true, env = "STRIKEFLOW_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// One subcommand per pipeline stage, plus the tools around them.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Feed market data into Kafka.
    Ingest {
        /// Where the data comes from.
        #[command(subcommand)]
        source: IngestSource,
    },
    /// Consume ticks, build event-time bars and analytics, publish them to Kafka.
    Process,
    /// Write ticks, bars and instruments to PostgreSQL exactly once.
    Sink,
    /// Serve the authenticated WebSocket fan-out and health endpoints.
    Push,
    /// Serve the query API: REST /api/v1 and the TradingView UDF datafeed /udf over
    /// PostgreSQL (docs/api.md), on 127.0.0.1:8081 by default.
    Api,
    /// Run every stage in one process (simulator, processor, sink, push, api): the quick
    /// start.
    Run(RunArgs),
    /// Apply database migrations and create the Kafka topics.
    Migrate(MigrateArgs),
    /// Mint a development JWT for push's WebSocket and/or the query API.
    Token(TokenArgs),
    /// Print throughput figures (see docs/benchmarks.md).
    Bench {
        /// Which stage to measure.
        #[command(subcommand)]
        what: BenchTarget,
    },
}

/// How `migrate` treats the database (see docs/migrations.md).
#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Convert this database to TimescaleDB: ticks, bars_1m, late_ticks and the analytics
    /// tables become compressed hypertables with retention, bars_3m .. bars_1d and
    /// chain_summary_1m continuous aggregates. For a database created
    /// before the server had TimescaleDB (a fresh one uses it by itself). Moves every row and
    /// locks the tables while it does, so stop the sinks first. Fails unless TimescaleDB is
    /// available and in shared_preload_libraries.
    #[arg(long, conflicts_with = "no_timescale")]
    pub(crate) timescale: bool,
    /// Keep plain tables and views even where TimescaleDB loads (for a new database; it does
    /// not undo a conversion).
    #[arg(long)]
    pub(crate) no_timescale: bool,
    /// Seconds to wait for the migration lock when another `migrate` holds it, before giving
    /// up naming the holder.
    #[arg(long, default_value_t = 60)]
    pub(crate) lock_timeout_secs: u64,
    /// Only the database: do not create the Kafka topics (for a DBA, or the TimescaleDB
    /// check, where no Kafka runs).
    #[arg(long)]
    pub(crate) database_only: bool,
}

/// The benchmarks behind `docs/benchmarks.md`.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchTarget {
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
    /// The sink stage (Kafka → decode → batch → binary COPY with offsets) on a private
    /// database, beside `psql \copy` of the same rows from a file. Needs `psql` on PATH.
    Sink {
        /// How many simulated tick rows to store.
        #[arg(long, default_value_t = 2_000_000)]
        rows: u64,
        /// How many strike-analytics rows (25 columns, upserted) to store afterwards.
        #[arg(long, default_value_t = 500_000)]
        strike_rows: u64,
    },
    /// A recorded simulated session (`[simulate.market]`) replayed at full speed through a
    /// processor and a sink on private topics and a private database, timed until every
    /// tick and output is stored: the replay factor against the session's event time.
    Replay {
        /// Ticks to record and replay; 0 = the whole first session (the default market
        /// makes ~4.5 million).
        #[arg(long, default_value_t = 0)]
        ticks: u64,
    },
    /// The push stage (a child `strikeflow push`) under N WebSocket clients in this process,
    /// fed a simulated session through private Kafka topics: deliveries/s, publish → client
    /// latency, CPU and memory per connection.
    Push {
        /// WebSocket clients (each on one chain, one bar and two tick channels).
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        /// Kafka records published per second, every output topic together.
        #[arg(long, default_value_t = 2_000.0)]
        rate: f64,
        /// Seconds of publishing.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// Tick channels the clients spread over: the most active symbols of the session.
        #[arg(long, default_value_t = 100)]
        tick_channels: usize,
    },
    /// The query API (in this process, on a private database filled with a simulated
    /// session) under keep-alive HTTP/1.1 connections: health, instrument search, UDF
    /// history, option chain (cached and uncached), F&O strike analysis; requests/s and
    /// p50/p95/p99 per scenario.
    Api {
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        secs: u64,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Simulated ticks stored before the load.
        #[arg(long, default_value_t = 300_000)]
        ticks: usize,
    },
    /// Fuzz the decoders and parsers (docs/fuzzing.md): seeded, structure-aware mutations of
    /// real inputs, each run under a panic catcher, a time limit and an allocation bound;
    /// prints inputs/s, the slowest input and the peak allocation, and saves any failing input.
    Fuzz {
        /// A target (avro-tick, avro-instrument, avro-bar, avro-watermark, avro-strike,
        /// avro-chain, avro-moneyness, avro-indicator, kite-frame, client-op-json,
        /// client-op-msgpack, replay-ndjson, replay-csv, jwt) or `all`.
        #[arg(long, default_value = "all")]
        target: String,
        /// Inputs per target.
        #[arg(long, default_value_t = 10_000_000)]
        inputs: u64,
        /// The seed every input derives from (a failure reproduces from seed and index).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// An input taking longer than this many milliseconds is a failure.
        #[arg(long, default_value_t = 1_000)]
        time_limit_ms: u64,
        /// Directory failing inputs are saved in.
        #[arg(long, default_value = "fuzz-failures")]
        out: std::path::PathBuf,
        /// Check one saved input against the target instead of fuzzing.
        #[arg(long)]
        replay: Option<std::path::PathBuf>,
    },
    /// The whole pipeline on the local services: a feed at fixed rates, `strikeflow
    /// process`, `sink` (scratch database) and `push` as child processes, and WebSocket
    /// clients; per rate step the sustained rate, tick → WebSocket and tick → stored-row
    /// latency, consumer lag and CPU per stage, then the highest rate held.
    E2e {
        /// Ticks per second of each step, comma-separated (run from the lowest).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "10000,25000,50000,100000,200000"
        )]
        rates: Vec<f64>,
        /// Seconds of each step.
        #[arg(long, default_value_t = 20)]
        secs: u64,
        /// WebSocket clients (each on one chain, one bar and two tick channels).
        #[arg(long, default_value_t = 100)]
        clients: usize,
        /// Seconds of feed at the lowest rate before the first step, not measured.
        #[arg(long, default_value_t = 5)]
        warmup_secs: u64,
    },
}

/// The feeds `strikeflow ingest` can publish.
#[derive(Debug, Subcommand)]
pub(crate) enum IngestSource {
    /// Publish a simulated NIFTY/BANKNIFTY session (seeded, reproducible).
    Simulate(SimulateArgs),
    /// Load a Kite-format instrument master CSV: publish it and upsert the instruments table.
    Instruments(InstrumentsArgs),
    /// Replay recorded ticks (NDJSON or CSV, see docs/formats.md) keeping event timestamps.
    Replay(ReplayArgs),
    /// Connect to a Kite-protocol WebSocket ticker and publish its ticks.
    Kite(KiteArgs),
}

/// `ingest instruments`.
#[derive(Debug, Args)]
pub(crate) struct InstrumentsArgs {
    /// The instrument master (Kite CSV columns: instrument_token, exchange_token,
    /// tradingsymbol, name, last_price, expiry, strike, tick_size, lot_size,
    /// instrument_type, segment, exchange).
    #[arg(long)]
    pub(crate) file: PathBuf,
}

/// `ingest replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// Recordings to replay, in order (.ndjson/.jsonl or .csv).
    #[arg(required = true)]
    pub(crate) files: Vec<PathBuf>,
    /// The instrument master the recorded tokens belong to.
    #[arg(long)]
    pub(crate) instruments: PathBuf,
    /// `max` (no pacing), `realtime` / `1x`, or a factor such as `10x`.
    #[arg(long, default_value = "max")]
    pub(crate) speed: strikeflow_ingest::replay::Speed,
    /// Resume at this data line (1-based, counted across the files; a previous run prints
    /// the line to resume from).
    #[arg(long, default_value_t = 1)]
    pub(crate) from_line: u64,
    /// Do not draw the progress bar.
    #[arg(long)]
    pub(crate) no_progress: bool,
}

/// `ingest kite`.
#[derive(Debug, Args)]
pub(crate) struct KiteArgs {
    /// Ticker WebSocket URL.
    #[arg(long, default_value = "wss://ws.kite.trade")]
    pub(crate) url: String,
    /// API key of the Kite Connect app.
    #[arg(long, env = "KITE_API_KEY")]
    pub(crate) api_key: String,
    /// Access token of the session.
    #[arg(long, env = "KITE_ACCESS_TOKEN", hide_env_values = true)]
    pub(crate) access_token: String,
    /// The instrument master (Kite CSV) of the tokens.
    #[arg(long)]
    pub(crate) instruments: PathBuf,
    /// Tokens to subscribe in full mode (repeatable); default: every token in the master.
    #[arg(long = "token")]
    pub(crate) tokens: Vec<i64>,
}

/// `ingest simulate`, and the simulator half of `run`: flags that override `[simulate]`.
#[derive(Debug, Args, Clone)]
pub(crate) struct SimulateArgs {
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
    pub(crate) record: Option<PathBuf>,
    /// Write the simulated instrument master (Kite CSV) to this file, then exit.
    #[arg(long)]
    pub(crate) write_master: Option<PathBuf>,
}

/// `run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Do not start the simulator (consume whatever feeds the ticks topic).
    #[arg(long)]
    pub(crate) no_simulator: bool,
    /// Overrides of the simulator's settings.
    #[command(flatten)]
    pub(crate) simulate: SimulateArgs,
}

/// `token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// Subject (user name) of the token.
    #[arg(long, default_value = "dev")]
    pub(crate) sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub(crate) ttl_secs: u64,
    /// Channel patterns the token may subscribe to (e.g. "bars.*"); none means all.
    #[arg(long = "channel")]
    pub(crate) channels: Vec<String>,
    /// Scopes of a query-API token (e.g. "api:read"; repeatable), written as the `scope`
    /// claim. With --scope the token is for the API (`[api] audience`), and for push as well
    /// when --channel is also given, unless --audience says otherwise.
    #[arg(long = "scope", value_name = "SCOPE")]
    pub(crate) scopes: Vec<String>,
    /// The token's `aud` (repeatable: a token for push and the API names both, e.g.
    /// `--audience strikeflow-push --audience strikeflow-api`). Default: see --scope.
    #[arg(long = "audience", value_name = "AUD")]
    pub(crate) audiences: Vec<String>,
    /// Revoke the token with this `jti` (in Redis, for every push node) instead of minting
    /// one; the revocation lasts `--ttl-secs` (make it at least the token's remaining life).
    #[arg(long, value_name = "JTI", conflicts_with_all = ["channels", "scopes", "audiences"])]
    pub(crate) revoke: Option<String>,
}

impl TokenArgs {
    /// Whether this is more than push's plain development token: it names scopes or
    /// audiences (then `commands::api` mints it).
    pub(crate) fn is_api_token(&self) -> bool {
        self.revoke.is_none() && !(self.scopes.is_empty() && self.audiences.is_empty())
    }
}

impl SimulateArgs {
    /// Writes the flags given into `config`, then checks the result again: a flag is held
    /// to the same rules as the file.
    pub(crate) fn apply(&self, config: &mut Config) -> Result<()> {
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
        config
            .validate()
            .context("checking the configuration with the command-line flags applied")
    }
}
