//! Every topic the pipeline produces is stored, exactly: a simulated session runs through
//! ingest → processor → sink on the real services, then each table is compared, field by
//! field, with its topic read back from Kafka (read_committed) — no row missing, none extra.

mod common;

use std::time::{Duration, Instant};

use common::stored::{self, Published};
use common::{wait_until_stored, Sandbox};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_output_topic_is_stored_exactly_as_published() {
    let started = Instant::now();
    let mut sandbox = Sandbox::new("stored").await;
    stored::configure(&mut sandbox);
    // Small batches: a session spans many sink transactions and upserts.
    sandbox.config.sink.batch_rows = 700;
    sandbox.config.sink.batch_wait_ms = 20;
    let config = sandbox.config.clone();
    let shutdown = CancellationToken::new();

    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));
    stored::publish(&config, &processor).await;
    let published = Published::read(&config.kafka.brokers, &config.topics());
    eprintln!(
        "published {:?} in {:.1?}",
        published.expected(),
        started.elapsed()
    );

    // The sink has caught up once every table holds as many rows as its topic has keys.
    let db = sandbox.db().await;
    wait_until_stored(&db, &published.expected(), &sink).await;
    // Give a sink that writes twice the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    processor.await.unwrap().expect("processor stops cleanly");
    sink.await.unwrap().expect("sink stops cleanly");

    published.assert_stored(&db).await;
    eprintln!(
        "all tables equal their topics after {:.1?}",
        started.elapsed()
    );
}
