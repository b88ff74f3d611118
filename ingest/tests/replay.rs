//! simulate → record → replay → the same ticks on the topic (real Kafka from `./dev up`).

use std::path::PathBuf;
use std::time::Duration;

use strikeflow_ingest::calendar::{ist_micros, SESSION_CLOSE};
use strikeflow_ingest::master::write_master;
use strikeflow_ingest::replay::{run_replay, ReplayConfig, Speed, TickRecorder};
use strikeflow_ingest::{MarketSimulator, SimulatorConfig};
use strikeflow_schemas::{decode, Tick, Topics, Watermark};
use tokio_util::sync::CancellationToken;

mod common;
use common::{brokers, consumer, read_rest, topics_and_dir};

async fn sandbox(label: &str) -> (Topics, PathBuf) {
    topics_and_dir(&format!("replay_{label}")).await
}

/// Reads `n` messages from the start of `topic`, with their headers as (key, value) pairs.
async fn read(topic: &str, n: usize) -> Vec<(Vec<u8>, Vec<(String, String)>)> {
    common::read(&consumer(topic), n, Duration::from_secs(30)).await
}

/// Reads `n` ticks from the start of `topic` as published, skipping the reference copies of
/// spot ticks.
async fn read_ticks(topic: &str, n: usize) -> Vec<Tick> {
    common::read_primaries(&consumer(topic), n, Duration::from_secs(30))
        .await
        .iter()
        .map(|(p, _)| decode(p).unwrap())
        .collect()
}

fn sorted(mut ticks: Vec<Tick>) -> Vec<Tick> {
    ticks.sort_by_key(|t| (t.instrument_token, t.exchange_ts));
    ticks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_session_replays_to_identical_ticks_and_resumes() {
    let (topics, dir) = sandbox("roundtrip").await;
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let master = dir.join("master.csv");
    write_master(std::fs::File::create(&master).unwrap(), sim.instruments()).unwrap();
    let ticks: Vec<Tick> = (0..3_000).map(|_| sim.next_tick()).collect();
    // Half recorded as NDJSON, half as CSV: both formats in one replay.
    let (first, second) = (dir.join("a.ndjson"), dir.join("b.csv"));
    for (path, part) in [(&first, &ticks[..1_500]), (&second, &ticks[1_500..])] {
        let mut recorder = TickRecorder::create(path).unwrap();
        part.iter().for_each(|t| recorder.record(t).unwrap());
        recorder.finish().unwrap();
    }
    let config = ReplayConfig {
        brokers: brokers(),
        topics: topics.clone(),
        registry: None,
        files: vec![first, second],
        instruments_csv: master,
        speed: Speed::Max,
        from_line: 1,
        progress: false,
    };
    let report = run_replay(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        (
            report.published,
            report.rejected,
            report.malformed,
            report.next_line
        ),
        (3_000, 0, 0, 3_001)
    );
    let on_topic = read_ticks(&topics.ticks(), 3_000).await;
    assert_eq!(sorted(on_topic), sorted(ticks.clone()));

    // The end of the input closed the session: one marker at 15:30 IST in every partition.
    assert_eq!(report.markers, 1);
    let close = ist_micros(
        chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        SESSION_CLOSE,
    );
    let markers: Vec<(i32, Watermark)> =
        read_rest(&consumer(&topics.ticks()), Duration::from_secs(5))
            .await
            .into_iter()
            .filter(|r| r.is_watermark())
            .map(|r| (r.partition, decode(&r.payload).unwrap()))
            .collect();
    let partitions: std::collections::BTreeSet<i32> = markers.iter().map(|(p, _)| *p).collect();
    assert_eq!((markers.len(), partitions.len()), (6, 6), "{markers:?}");
    assert!(markers
        .iter()
        .all(|(_, m)| m.event_ts == close && m.source == "replay"));

    // Resuming from line 2_901 publishes exactly the last 100 lines again.
    let resumed = run_replay(
        ReplayConfig {
            from_line: 2_901,
            ..config
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((resumed.published, resumed.next_line), (100, 3_001));
    let all = read_ticks(&topics.ticks(), 3_100).await;
    let mut expected = ticks.clone();
    expected.extend_from_slice(&ticks[2_900..]);
    assert_eq!(sorted(all), sorted(expected));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_lines_and_invalid_ticks_are_dead_lettered_with_position() {
    let (topics, dir) = sandbox("bad").await;
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let master = dir.join("master.csv");
    write_master(std::fs::File::create(&master).unwrap(), sim.instruments()).unwrap();
    let good = sim.next_tick();
    let off_grid = Tick {
        ltp: 100.01,
        ..sim.next_tick()
    };
    let format = strikeflow_ingest::replay::Format::Ndjson;
    let text = format!(
        "{}\nnot json at all\n{}\n",
        format.format(&good),
        format.format(&off_grid)
    );
    let file = dir.join("mixed.ndjson");
    std::fs::write(&file, text).unwrap();

    let config = ReplayConfig {
        brokers: brokers(),
        topics: topics.clone(),
        registry: None,
        files: vec![file.clone()],
        instruments_csv: master,
        speed: Speed::Factor(1_000.0),
        from_line: 1,
        progress: false,
    };
    let report = run_replay(config, CancellationToken::new()).await.unwrap();
    assert_eq!(
        (report.published, report.rejected, report.malformed),
        (1, 1, 1)
    );
    let letters = read(&topics.dead_letter(&topics.ticks()), 2).await;
    let header = |i: usize, k: &str| {
        letters[i]
            .1
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(letters[0].0, b"not json at all");
    assert_eq!(
        header(0, "source.position"),
        Some(format!("{}:2", file.display()))
    );
    assert!(header(0, "reason").unwrap().starts_with("not a tick"));
    assert_eq!(
        header(1, "source.position"),
        Some(format!("{}:3", file.display()))
    );
    assert!(
        header(1, "reason")
            .unwrap()
            .contains("off the 0.05 tick grid"),
        "{:?}",
        header(1, "reason")
    );
    assert_eq!(
        decode::<Tick>(&letters[1].0).unwrap(),
        off_grid,
        "the rejected tick is kept whole"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_mid_line_loses_only_that_line_and_resumes_from_it() {
    let (topics, dir) = sandbox("truncated").await;
    let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
    let master = dir.join("master.csv");
    write_master(std::fs::File::create(&master).unwrap(), sim.instruments()).unwrap();
    let ticks: Vec<Tick> = (0..200).map(|_| sim.next_tick()).collect();
    let file = dir.join("cut.ndjson");
    let mut recorder = TickRecorder::create(&file).unwrap();
    ticks.iter().for_each(|t| recorder.record(t).unwrap());
    recorder.finish().unwrap();
    // A recorder that died mid-write (a full disk, a killed process): the last line is cut.
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() - 25]).unwrap();

    let config = ReplayConfig {
        brokers: brokers(),
        topics: topics.clone(),
        registry: None,
        files: vec![file.clone()],
        instruments_csv: master,
        speed: Speed::Max,
        from_line: 1,
        progress: false,
    };
    let report = run_replay(config.clone(), CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(
        (report.published, report.malformed, report.next_line),
        (199, 1, 201),
        "every whole line is published, the cut one dead-lettered"
    );
    let letters = read(&topics.dead_letter(&topics.ticks()), 1).await;
    let position = letters[0]
        .1
        .iter()
        .find(|(key, _)| key == "source.position")
        .map(|(_, v)| v.clone());
    assert_eq!(position, Some(format!("{}:200", file.display())));

    // The recording is completed (copied again whole); resuming from the dead-lettered line
    // publishes it, and the topic then holds every tick exactly once.
    std::fs::write(&file, &whole).unwrap();
    let resumed = run_replay(
        ReplayConfig {
            from_line: 200,
            ..config
        },
        CancellationToken::new(),
    )
    .await
    .unwrap();
    assert_eq!((resumed.published, resumed.malformed), (1, 0));
    assert_eq!(
        sorted(read_ticks(&topics.ticks(), 200).await),
        sorted(ticks)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_onto_a_full_disk_stops_with_the_file_and_the_cause() {
    let (topics, dir) = sandbox("full").await;
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let file = dir.join("session.ndjson");
    std::os::unix::fs::symlink("/dev/full", &file).unwrap();
    let config = strikeflow_ingest::SimulateConfig {
        brokers: brokers(),
        topics,
        registry: None,
        simulator: SimulatorConfig::default(),
        max_ticks: Some(5_000),
        rate: None,
        record: Some(file.clone()),
    };
    let error = strikeflow_ingest::run_simulation(config, CancellationToken::new())
        .await
        .expect_err("recording onto a full disk fails");
    let message = error.to_string();
    assert!(
        message.contains(&file.display().to_string()) && message.contains("No space left"),
        "{message}"
    );
}
