//! `strikeflow`: one subcommand per pipeline stage, plus `run` (all stages in one process),
//! `migrate`, `token` and `bench`. This file only wires configuration, telemetry and stages:
//! the command line is in `cli`, what each subcommand does in `commands`, running stages
//! together in `supervisor`, logs and metrics in `telemetry`.

mod cli;
mod commands;
mod supervisor;
mod telemetry;

use anyhow::{Context, Result};
use clap::Parser;
use strikeflow::Config;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = cli::Cli::parse();
    // Checked before anything connects, so a bad file fails in milliseconds, naming the key.
    let config = Config::load(cli.config.as_deref()).context("reading the configuration")?;
    config.validate().context("checking the configuration")?;
    let board = supervisor::StageBoard::default();
    telemetry::init(&config.telemetry, board.clone())?;
    let shutdown = CancellationToken::new();
    tokio::spawn(supervisor::stop_on_signal(shutdown.clone()));
    commands::execute(cli.command, config, board, shutdown).await
}
