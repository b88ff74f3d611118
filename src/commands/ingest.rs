//! `strikeflow ingest …`: the feeds into Kafka (simulator, instrument master, replay, Kite).

use anyhow::{Context, Result};
use strikeflow::Config;
use tokio_util::sync::CancellationToken;

use crate::cli::{IngestSource, InstrumentsArgs, KiteArgs, ReplayArgs, SimulateArgs};
use strikeflow::config::redact_url;

/// Runs one feed until it ends or `shutdown` is cancelled, then prints what it published.
pub(super) async fn execute(
    source: IngestSource,
    config: &mut Config,
    shutdown: CancellationToken,
) -> Result<()> {
    match source {
        IngestSource::Simulate(args) => simulate(&args, config, shutdown).await,
        IngestSource::Instruments(args) => instruments(&args, config).await,
        IngestSource::Replay(args) => replay(args, config, shutdown).await,
        IngestSource::Kite(args) => kite(args, config, shutdown).await,
    }
}

/// `ingest simulate`: a simulated session, or only its instrument master with
/// `--write-master`.
async fn simulate(
    args: &SimulateArgs,
    config: &mut Config,
    shutdown: CancellationToken,
) -> Result<()> {
    args.apply(config)?;
    if let Some(path) = &args.write_master {
        let market = strikeflow_ingest::MarketSimulator::new(&config.simulate.market)?;
        let file =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
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
    Ok(())
}

/// `ingest instruments`: the master goes to the instruments topic and, because the sink
/// only writes what flows by while it runs, straight into the instruments table too.
async fn instruments(args: &InstrumentsArgs, config: &Config) -> Result<()> {
    let master = strikeflow_ingest::master::load_master_file(&args.file)?;
    for bad in &master.errors {
        eprintln!(
            "{}:{}: skipped: {}",
            args.file.display(),
            bad.line,
            bad.reason
        );
    }
    let mut publisher =
        strikeflow_ingest::TickPublisher::connect(&config.kafka.brokers(), &config.topics(), None)?;
    publisher.publish_instruments(&master.instruments).await?;
    let (client, connection) = strikeflow_tls::postgres(&config.database.url)?
        .connect()
        .await
        .with_context(|| format!("connecting to {}", redact_url(&config.database.url)))?;
    let connection = tokio::spawn(connection);
    strikeflow_sink::upsert_instruments(&client, &master.instruments).await?;
    drop(client);
    // The upsert has returned, so the rows are committed; how the connection then closes
    // changes nothing.
    let _ = connection.await;
    println!(
        "loaded {} instruments ({} rows skipped) into {} and the instruments table",
        master.instruments.len(),
        master.errors.len(),
        config.topics().instruments()
    );
    Ok(())
}

/// `ingest replay`: recorded ticks, paced as asked, with a line to resume from.
async fn replay(args: ReplayArgs, config: &Config, shutdown: CancellationToken) -> Result<()> {
    let replay = strikeflow_ingest::replay::ReplayConfig {
        brokers: config.kafka.brokers(),
        topics: config.topics(),
        registry: config.registry_connection(),
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
    Ok(())
}

/// `ingest kite`: a live Kite-protocol ticker.
async fn kite(args: KiteArgs, config: &Config, shutdown: CancellationToken) -> Result<()> {
    let kite = strikeflow_ingest::kite::KiteConfig {
        url: args.url,
        api_key: args.api_key,
        access_token: args.access_token,
        instruments_csv: args.instruments,
        tokens: args.tokens,
        brokers: config.kafka.brokers(),
        topics: config.topics(),
        registry: config.registry_connection(),
        ..Default::default()
    };
    let report = strikeflow_ingest::kite::run_kite(kite, shutdown).await?;
    println!("{report:?}");
    Ok(())
}
