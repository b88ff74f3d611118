//! The pipeline under faults, on real services: each test runs a simulated session through
//! ingest → processor → sink while a fault strikes, then requires every table to equal an
//! uninterrupted run's, row for row — nothing lost, nothing stored twice — and the stages'
//! `/healthz` to keep answering while the fault lasts.
//!
//! Faults that would disturb other tests run on services of the test's own: a private
//! broker (`common::private_kafka`) is killed, frozen and restarted here.

mod common;

use std::time::{Duration, Instant};

use common::children::StageChild;
use common::private_kafka::PrivateKafka;
use common::stored::{self, Published};
use common::{try_group_progress, wait_until_stored, wait_until_stored_within, Sandbox};
use strikeflow_kafka::ensure_topics;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// The reference: the same session, stored by an in-process processor and sink on the
/// shared services with nothing going wrong.
async fn uninterrupted() -> Client {
    let mut sandbox = Sandbox::new("faults_ref").await;
    stored::configure(&mut sandbox);
    let config = sandbox.config.clone();
    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let sink = tokio::spawn(strikeflow_sink::run(config.sink(), shutdown.clone()));
    let report = strikeflow_ingest::run_simulation(config.simulate(), CancellationToken::new())
        .await
        .expect("the reference simulation");
    assert_eq!(report.ticks, stored::TICKS);
    common::wait_processed(&config, &processor).await;
    let published = Published::read_with_late(&config.kafka.brokers, &config.topics(), 0);
    let db = sandbox.db().await;
    wait_until_stored(&db, &published.expected(), &sink).await;
    shutdown.cancel();
    processor.await.unwrap().expect("processor stops cleanly");
    sink.await.unwrap().expect("sink stops cleanly");
    db
}

/// A processor child of the faulted run.
fn processor(sandbox: &Sandbox, instance: &str) -> StageChild {
    let config = &sandbox.config;
    let mut child = StageChild::spawn(
        sandbox,
        "process",
        &format!("processor {instance}"),
        &[
            (
                "STRIKEFLOW_PROCESSOR__GROUP_ID",
                config.processor.group_id.clone(),
            ),
            ("STRIKEFLOW_PROCESSOR__INSTANCE_ID", instance.to_owned()),
            (
                "STRIKEFLOW_PROCESSOR__ALLOWED_LATENESS_MS",
                config.processor.allowed_lateness_ms.to_string(),
            ),
        ],
    );
    tokio::task::block_in_place(|| child.wait_listening());
    child
}

/// Probes `/healthz` of each stage every 0.5 s for `period`; the slowest answer.
async fn health_during(stages: &[&StageChild], period: Duration) -> Duration {
    let deadline = Instant::now() + period;
    let mut slowest = Duration::ZERO;
    while Instant::now() < deadline {
        for stage in stages {
            let port_stage = (stage.name.clone(), stage.port);
            let answered = tokio::task::block_in_place(|| stage.healthz());
            let took = answered.unwrap_or_else(|| {
                panic!("{} did not answer /healthz: {port_stage:?}", stage.name)
            });
            slowest = slowest.max(took);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    slowest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_then_black_holed_with_the_processor_killed_loses_and_duplicates_nothing() {
    let reference = uninterrupted().await;

    let mut kafka = tokio::task::spawn_blocking(|| PrivateKafka::start("faults"))
        .await
        .unwrap();
    let mut sandbox = Sandbox::new("faults").await;
    stored::configure(&mut sandbox);
    sandbox.config.kafka.brokers = kafka.brokers();
    // Slow enough that the faults land mid-stream: ~60 s of publishing.
    sandbox.config.simulate.rate = 100.0;
    ensure_topics(
        &sandbox.config.kafka.brokers(),
        &sandbox.config.topics().all(),
        1,
    )
    .await
    .expect("topics on the private broker");
    let config = sandbox.config.clone();
    let group = config.processor.group_id.clone();
    let ticks_topic = config.topics().ticks();
    let brokers = config.kafka.brokers.clone();
    let progress = move || {
        let (brokers, group, topic) = (brokers.clone(), group.clone(), ticks_topic.clone());
        async move {
            // While the broker recovers it may answer "not leader": no news, not a failure.
            tokio::task::spawn_blocking(move || try_group_progress(&brokers, &group, &topic))
                .await
                .unwrap()
                .unwrap_or((0, -1))
        }
    };

    let mut sink = StageChild::spawn(&sandbox, "sink", "sink", &[]);
    tokio::task::block_in_place(|| sink.wait_listening());
    let mut first = processor(&sandbox, "a");
    let simulation = tokio::spawn(strikeflow_ingest::run_simulation(
        config.simulate(),
        CancellationToken::new(),
    ));

    // 1. Once the processor is under way (a fresh broker first creates its offsets and
    //    transaction logs), the broker is killed and comes back 5 s later on the same log.
    let deadline = Instant::now() + Duration::from_secs(120);
    let before = loop {
        let (done, _) = progress().await;
        if done > 0 {
            break done;
        }
        assert!(
            Instant::now() < deadline,
            "the processor made no progress in 120 s"
        );
        first.assert_running();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    kafka.kill_9();
    eprintln!("broker killed with SIGKILL after {before} ticks were processed");
    let slowest = health_during(&[&sink, &first], Duration::from_secs(5)).await;
    eprintln!("/healthz while the broker was down: slowest answer {slowest:?}");
    kafka = tokio::task::spawn_blocking(move || {
        kafka.restart();
        kafka
    })
    .await
    .unwrap();
    eprintln!("broker restarted");
    let deadline = Instant::now() + Duration::from_secs(120);
    while progress().await.0 <= before {
        assert!(
            Instant::now() < deadline,
            "no progress within 120 s of the broker's restart"
        );
        first.assert_running();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 2. The broker is frozen (its connections hang, nothing is refused) for 30 s; the
    //    processor is killed meanwhile and another starts while the broker is unreachable.
    kafka.freeze();
    eprintln!("broker frozen (black hole)");
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.kill_9();
    let mut second = processor(&sandbox, "b");
    let slowest = health_during(&[&sink, &second], Duration::from_secs(28)).await;
    eprintln!("/healthz while the broker was a black hole: slowest answer {slowest:?}");
    kafka.thaw();
    eprintln!("broker thawed");

    let report = simulation
        .await
        .unwrap()
        .expect("the simulation rides out the faults");
    assert_eq!(report.ticks, stored::TICKS);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let (done, end) = progress().await;
        if done == end && end > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the processor committed {done} of {end} ticks"
        );
        second.assert_running();
        sink.assert_running();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let published = tokio::task::spawn_blocking({
        let (brokers, topics) = (config.kafka.brokers.clone(), config.topics());
        move || Published::read_with_late(&brokers, &topics, 0)
    })
    .await
    .unwrap();
    let db = sandbox.db().await;
    let started = Instant::now();
    wait_until_stored_within(&db, &published.expected(), Duration::from_secs(300), || {
        true
    })
    .await;
    eprintln!(
        "the sink caught up {:.1?} after the processor",
        started.elapsed()
    );
    // Give a sink that writes twice the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sink.assert_running();
    second.stop();
    sink.stop();
    published.assert_stored(&db).await;
    stored::assert_same_tables(&reference, &db, "faulted run").await;
    drop(kafka);
}
