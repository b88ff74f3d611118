//! Deterministic replay: a session recorded while it ran live, replayed from the file
//! through a fresh pipeline (ingest replay → processor → sink, real services), stores
//! exactly the aggregates the live run stored — every row of every table, every field.
//!
//! This is what makes "replay a day" (docs/operations.md) an answer to a lost or corrupted
//! database rather than an approximation of it.

mod common;

use std::path::Path;

use common::stored::{self, Published};
use common::{wait_processed, wait_until_stored, Sandbox};
use strikeflow_ingest::replay::{run_replay, ReplayConfig, Speed};
use strikeflow_ingest::MarketSimulator;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_recording_stores_exactly_what_the_live_session_stored() {
    let dir = std::env::temp_dir().join(format!("strikeflow-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let recording = dir.join("session.ndjson");
    let master = dir.join("master.csv");

    // The live session: one whole simulated session (its close marker included, as a
    // replay's end of input marks the close too), recorded on the way out of the simulator.
    let mut live = Sandbox::new("live").await;
    configure(&mut live);
    let session_ticks = ticks_in_first_session(&live);
    live.config.simulate.max_ticks = session_ticks;
    let mut simulate = live.config.simulate();
    simulate.record = Some(recording.clone());
    let live_db = store(&live, |config| async move {
        let report = strikeflow_ingest::run_simulation(simulate, CancellationToken::new())
            .await
            .expect("the live simulation");
        assert_eq!(report.ticks, session_ticks);
        assert_eq!(report.markers, 1, "the session's close is marked");
        drop(config);
    })
    .await;
    let market = MarketSimulator::new(&live.config.simulate.market).expect("the market");
    strikeflow_ingest::master::write_master(
        std::fs::File::create(&master).expect("the master file"),
        market.instruments(),
    )
    .expect("writing the master");

    // The same session from the file, at full speed, into a fresh sandbox.
    let mut replayed = Sandbox::new("replayed").await;
    configure(&mut replayed);
    let replay = replay_config(&replayed, &recording, &master);
    let replay_db = store(&replayed, |_| async move {
        let report = run_replay(replay, CancellationToken::new())
            .await
            .expect("the replay");
        assert_eq!(report.published, session_ticks);
        assert_eq!(
            (report.rejected, report.malformed, report.markers),
            (0, 0, 1)
        );
    })
    .await;

    stored::assert_same_tables(&live_db, &replay_db, "replay").await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The single-chain market of the stored-analytics tests at one tick per event second: a
/// whole session (09:15–15:30) is ~22,500 ticks.
fn configure(sandbox: &mut Sandbox) {
    stored::configure(sandbox);
    sandbox.config.simulate.market.tick_interval_ms = 1_000;
    sandbox.config.simulate.rate = 20_000.0;
}

/// How many ticks the simulator makes before its first session closes.
fn ticks_in_first_session(sandbox: &Sandbox) -> u64 {
    let mut market = MarketSimulator::new(&sandbox.config.simulate.market).expect("the market");
    let mut ticks = 0;
    loop {
        market.next_tick();
        ticks += 1;
        if market.session_over().is_some() {
            return ticks;
        }
    }
}

/// Runs a processor and a sink on `sandbox`, publishes with `publish`, waits until every
/// output is processed and stored, stops both and returns a connection to the database.
async fn store<F, Fut>(sandbox: &Sandbox, publish: F) -> Client
where
    F: FnOnce(strikeflow::Config) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let config = sandbox.config.clone();
    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));
    publish(config.clone()).await;
    wait_processed(&config, &processor).await;
    let published = Published::read_with_late(&config.kafka.brokers, &config.topics(), 0);
    let db = sandbox.db().await;
    wait_until_stored(&db, &published.expected(), &sink).await;
    shutdown.cancel();
    processor.await.unwrap().expect("processor stops cleanly");
    sink.await.unwrap().expect("sink stops cleanly");
    db
}

fn replay_config(sandbox: &Sandbox, recording: &Path, master: &Path) -> ReplayConfig {
    ReplayConfig {
        brokers: sandbox.config.kafka.brokers(),
        topics: sandbox.config.topics(),
        registry: sandbox.config.registry_connection(),
        files: vec![recording.to_owned()],
        instruments_csv: master.to_owned(),
        speed: Speed::Max,
        from_line: 1,
        progress: false,
    }
}
