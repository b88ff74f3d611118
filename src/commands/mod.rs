//! What each subcommand does, given a checked configuration. The stages themselves live
//! in their crates; these functions only build their configurations and report results.

mod api;
mod ingest;
mod token;

use std::time::Duration;

use anyhow::{Context, Result};
use strikeflow::config::redact_url;
use strikeflow::migrate::{migrate_database_with, MigrateOptions, TimescaleMode};
use strikeflow::Config;
use strikeflow_kafka::ensure_topics;
use tokio_util::sync::CancellationToken;

use crate::cli::{BenchTarget, Command, MigrateArgs};
use crate::supervisor::{self, Restart, StageBoard, StageState};

/// Runs `command` until it finishes or `shutdown` is cancelled; stages run supervised
/// (restarted when they fail, their state on `board`).
pub(crate) async fn execute(
    command: Command,
    mut config: Config,
    board: StageBoard,
    shutdown: CancellationToken,
) -> Result<()> {
    match command {
        Command::Ingest { source } => {
            // A feed is not restarted: starting a simulation or a replay again would publish
            // its ticks twice (a replay resumes by `--from-line`, an operator's decision).
            board.set("ingest", StageState::Running { restarts: 0 });
            let result = ingest::execute(source, &mut config, shutdown).await;
            let reason = match &result {
                Ok(()) => supervisor::FINISHED.to_owned(),
                Err(e) => format!("{e:#}"),
            };
            board.set("ingest", StageState::Stopped { reason });
            result
        }
        Command::Process => {
            supervisor::run_one(
                "processor",
                Restart::WithBackoff,
                board,
                shutdown,
                |token| strikeflow_processors::run(config.processor(), token),
            )
            .await
        }
        Command::Sink => {
            supervisor::run_one("sink", Restart::WithBackoff, board, shutdown, |token| {
                strikeflow_sink::run(config.sink(), token)
            })
            .await
        }
        Command::Push => {
            supervisor::run_one("push", Restart::WithBackoff, board, shutdown, |token| {
                strikeflow_push::run(config.push(), token)
            })
            .await
        }
        Command::Api => {
            supervisor::run_one("api", Restart::WithBackoff, board, shutdown, |token| {
                strikeflow_api::run(config.api(), token)
            })
            .await
        }
        Command::Run(args) => {
            args.simulate.apply(&mut config)?;
            // Push's and the API's own checks (a weak secret on a public address, the token
            // keys) before any stage starts.
            config.push().validate()?;
            config.api().validate()?;
            supervisor::run_all(&config, !args.no_simulator, board, shutdown).await
        }
        Command::Migrate(args) => migrate(&config, args).await,
        Command::Token(args) if args.is_api_token() => api::token(&config, args),
        Command::Token(args) => token::execute(&config, args).await,
        Command::Bench { what } => bench(&config, what).await,
    }
}

/// `migrate`: the database schema, then the Kafka topics.
async fn migrate(config: &Config, args: MigrateArgs) -> Result<()> {
    let options = MigrateOptions {
        lock_timeout: Duration::from_secs(args.lock_timeout_secs),
        timescale: match (args.timescale, args.no_timescale) {
            (true, _) => TimescaleMode::Convert,
            (_, true) => TimescaleMode::Off,
            _ => TimescaleMode::Auto,
        },
        ..MigrateOptions::default()
    };
    let report = migrate_database_with(&config.database.url, &options)
        .await
        .with_context(|| {
            format!(
                "migrating the database at {}",
                redact_url(&config.database.url)
            )
        })?;
    let layer = if report.hypertables {
        "ticks, bars_1m and the analytics tables are hypertables"
    } else {
        "plain tables, rollups are views"
    };
    println!(
        "database: {} migration(s) applied; timescaledb {}: {layer}",
        report.applied.len(),
        report.timescaledb,
    );
    if report.timescale_convertible() {
        println!(
            "database: TimescaleDB can be used here but this database is plain; \
             `strikeflow migrate --timescale` converts it (see docs/migrations.md)"
        );
    }
    if args.database_only {
        return Ok(());
    }
    ensure_topics(
        &config.kafka.brokers(),
        &config.topics().all(),
        config.kafka.replication,
    )
    .await
    .with_context(|| format!("creating topics on {}", config.kafka.brokers))?;
    println!("kafka: topics ready on {}", config.kafka.brokers);
    if let Some(connection) = config.registry_connection() {
        let registry = strikeflow_kafka::Registry::new(Some(&connection))?;
        let registered =
            strikeflow::migrate::schemas::register_schemas(&registry, &config.topics())
                .await
                .with_context(|| format!("registering the schemas at {}", connection.url))?;
        println!(
            "registry: {} subject(s) registered, compatibility {} ({})",
            registered.len(),
            strikeflow::migrate::schemas::COMPATIBILITY,
            connection.url
        );
    }
    Ok(())
}

/// `bench`: the throughput figures of `docs/benchmarks.md`.
async fn bench(config: &Config, what: BenchTarget) -> Result<()> {
    match what {
        BenchTarget::Ingest { ticks } => strikeflow::bench::ingest(config, ticks).await,
        BenchTarget::Process {
            ticks,
            tick_interval_ms,
            kafka: true,
        } => strikeflow::bench::process_kafka(config, ticks as u64, tick_interval_ms).await,
        BenchTarget::Process {
            ticks,
            tick_interval_ms,
            kafka: false,
        } => strikeflow::bench::process(config, ticks, tick_interval_ms),
        BenchTarget::Sink { rows, strike_rows } => {
            strikeflow::bench::sink(config, rows, strike_rows).await
        }
        BenchTarget::Replay { ticks } => {
            strikeflow::bench::replay(config, strikeflow::bench::ReplayBench { ticks }).await
        }
        BenchTarget::Push {
            clients,
            rate,
            secs,
            tick_channels,
        } => {
            let bench = strikeflow::bench::PushBench {
                clients,
                rate,
                secs,
                tick_channels,
            };
            strikeflow::bench::push(config, bench).await
        }
        BenchTarget::Api {
            secs,
            connections,
            ticks,
        } => {
            let bench = strikeflow::bench::ApiBench {
                secs,
                connections,
                ticks,
            };
            strikeflow::bench::api(config, bench).await
        }
        BenchTarget::Fuzz {
            target,
            inputs,
            seed,
            time_limit_ms,
            out,
            replay,
        } => {
            strikeflow::bench::fuzz(strikeflow::bench::FuzzBench {
                target,
                inputs,
                seed,
                time_limit: std::time::Duration::from_millis(time_limit_ms),
                out,
                replay,
            })
            .await
        }
        BenchTarget::E2e {
            rates,
            secs,
            clients,
            warmup_secs,
        } => {
            strikeflow::bench::e2e(
                config,
                strikeflow::bench::E2eBench {
                    rates,
                    secs,
                    clients,
                    warmup_secs,
                },
            )
            .await
        }
    }
}
