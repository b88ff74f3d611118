//! The sink under faults, on the real services, storing a whole simulated session (every
//! output topic) and compared table by table with what was published:
//!
//! * `kill -9` of the sink process at chosen points of its batch cycle — inside a COPY, with
//!   every row written but the offsets not, and while idle between batches — then a restart;
//! * PostgreSQL stopped for 60 s mid-batch, then crashing at the moment a commit is durable
//!   but not yet acknowledged (crash recovery keeps it), while the sink keeps running;
//! * two sinks with different names sharing the outputs between them.
//!
//! The points are reached deterministically: the test holds a table lock the sink's next
//! statement needs, or makes commits wait for a synchronous standby that does not exist, and
//! sees the sink's session wait for it in `pg_stat_activity` before striking.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::private_postgres::PrivatePostgres;
use common::stored::{self, Published};
use common::{connect, count, eventually, wait_until_stored, wait_until_stored_while, Sandbox};
use strikeflow::Config;
use strikeflow_ingest::MarketSimulator;
use strikeflow_kafka::Outbox;
use strikeflow_sink::Source;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

/// Ticks published after the third kill, while no sink runs.
const MORE_TICKS: usize = 400;

/// Publishes a session into `sandbox`'s topics (the processor runs until it committed every
/// tick) and reads back what each table must hold.
async fn published_session(sandbox: &mut Sandbox) -> Published {
    stored::configure(sandbox);
    // Small batches: the session spans many sink transactions, so every fault lands with
    // rows already stored and rows still to come.
    sandbox.config.sink.batch_rows = 300;
    sandbox.config.sink.batch_wait_ms = 20;
    let config = sandbox.config.clone();
    let stop = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(config.processor(), stop.clone()));
    stored::publish(&config, &processor).await;
    stop.cancel();
    processor.await.unwrap().expect("processor stops cleanly");
    Published::read(&config.kafka.brokers, &config.topics())
}

/// The `application_name` a sink's session carries (see `strikeflow_sink` ownership).
fn session_of(consumer: &str) -> String {
    format!("strikeflow sink {consumer}")
}

/// Waits until the sink's session shows `wait_event_type`/`wait_event` (`None` for any
/// event of the type) and returns the statement it is in.
async fn wait_for_sink(
    db: &Client,
    consumer: &str,
    event_type: &str,
    event: Option<&str>,
) -> String {
    let session = session_of(consumer);
    eventually(
        &format!("the sink's session to wait on {event_type} {event:?}"),
        Duration::from_secs(60),
        || async {
            let rows = db
                .query(
                    "SELECT wait_event, query FROM pg_stat_activity \
                     WHERE application_name = $1 AND wait_event_type = $2",
                    &[&session, &event_type],
                )
                .await
                .expect("reading pg_stat_activity");
            rows.iter()
                .find(|r| event.is_none_or(|e| r.get::<_, Option<String>>(0).as_deref() == Some(e)))
                .map(|r| r.get::<_, String>(1))
        },
    )
    .await
}

/// Holds `LOCK TABLE table IN EXCLUSIVE MODE` in an open transaction on its own session:
/// the sink's next write to `table` waits for it.
async fn lock_table(url: &str, table: &str) -> Client {
    let blocker = connect(url).await;
    blocker
        .batch_execute(&format!("BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE"))
        .await
        .expect("locking");
    blocker
}

/// `strikeflow sink` as a child process, so it can be killed with SIGKILL.
struct SinkProcess {
    child: Child,
    log: PathBuf,
}

impl SinkProcess {
    fn spawn(config: &Config, run: usize) -> Self {
        let log =
            std::env::temp_dir().join(format!("{}-sink-{run}.log", config.sink.consumer_name));
        let stderr = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_strikeflow"))
            .arg("sink")
            .env("KAFKA_BROKERS", &config.kafka.brokers)
            .env("DATABASE_URL", &config.database.url)
            .env("STRIKEFLOW_KAFKA__TOPIC_PREFIX", &config.kafka.topic_prefix)
            .env("STRIKEFLOW_SINK__CONSUMER_NAME", &config.sink.consumer_name)
            .env(
                "STRIKEFLOW_SINK__BATCH_ROWS",
                config.sink.batch_rows.to_string(),
            )
            .env(
                "STRIKEFLOW_SINK__BATCH_WAIT_MS",
                config.sink.batch_wait_ms.to_string(),
            )
            .env("STRIKEFLOW_TELEMETRY__METRICS_LISTEN", "")
            .env("RUST_LOG", "info,librdkafka=warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting strikeflow sink");
        Self { child, log }
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown code runs; whatever the sink had in flight is simply gone.
    fn kill_9(mut self) {
        assert!(
            self.running(),
            "the sink exited before it was killed; log: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }
}

/// A failing test must not leave a sink running behind it.
impl Drop for SinkProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the server has ended a killed sink's session (its open transaction rolled
/// back, its lock released), so the next sink starts from what was committed.
async fn wait_session_gone(db: &Client, consumer: &str) {
    let session = session_of(consumer);
    eventually(
        "the killed sink's session to end",
        Duration::from_secs(30),
        || async {
            let n = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&session],
                )
                .await
                .expect("reading pg_stat_activity")
                .get::<_, i64>(0);
            (n == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_each_point_of_the_batch_cycle_loses_and_duplicates_nothing() {
    let mut sandbox = Sandbox::new("sinkkill").await;
    let published = published_session(&mut sandbox).await;
    let session_ticks = published.expected()[0].1;
    let config = sandbox.config.clone();
    let url = config.database.url.clone();
    let name = config.sink.consumer_name.clone();
    let db = sandbox.db().await;
    let stored = || async { count(&db, "SELECT count(*) FROM ticks").await };

    // 1. Inside a COPY: the sink's COPY into ticks waits for the test's lock on ticks.
    let blocker = lock_table(&url, "ticks").await;
    let sink = SinkProcess::spawn(&config, 1);
    let statement = wait_for_sink(&db, &name, "Lock", None).await;
    assert!(
        statement.starts_with("COPY ticks"),
        "waiting in {statement:?}"
    );
    sink.kill_9();
    blocker.batch_execute("ROLLBACK").await.expect("unlocking");
    wait_session_gone(&db, &name).await;
    eprintln!("killed inside COPY ticks, {} ticks stored", stored().await);

    // 2. Every row of a batch written, its offsets not: the sink's INSERT into sink_offsets
    //    waits for the test's lock.
    let blocker = lock_table(&url, "sink_offsets").await;
    let sink = SinkProcess::spawn(&config, 2);
    let statement = wait_for_sink(&db, &name, "Lock", None).await;
    assert!(
        statement.contains("sink_offsets"),
        "waiting in {statement:?}"
    );
    let before = stored().await;
    sink.kill_9();
    blocker.batch_execute("ROLLBACK").await.expect("unlocking");
    wait_session_gone(&db, &name).await;
    assert_eq!(
        stored().await,
        before,
        "the killed batch's rows were not committed"
    );
    eprintln!("killed between the rows and the offsets, {before} ticks stored");

    // 3. Between batches: the session idle, outside any transaction, after a commit.
    let mut sink = SinkProcess::spawn(&config, 3);
    let session = session_of(&name);
    eventually(
        "the sink idle after a commit",
        Duration::from_secs(60),
        || async {
            let idle = db
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                 WHERE application_name = $1 AND state = 'idle' AND xact_start IS NULL",
                    &[&session],
                )
                .await
                .expect("reading pg_stat_activity")
                .get::<_, i64>(0);
            (idle == 1 && stored().await > before).then_some(())
        },
    )
    .await;
    assert!(sink.running(), "the sink exited");
    sink.kill_9();
    wait_session_gone(&db, &name).await;
    eprintln!("killed between batches, {} ticks stored", stored().await);

    // 4. More input arrives while no sink runs (the killed one may have been idle for want
    //    of it), then a last run to the end.
    let mut market = MarketSimulator::new(&config.simulate.market).expect("a market");
    let mut outbox = Outbox::connect(&config.kafka.brokers()).expect("a producer");
    for _ in 0..MORE_TICKS {
        let tick = market.next_tick();
        let payload = strikeflow_schemas::encode(&tick).expect("encoded");
        outbox
            .send(
                &config.topics().ticks(),
                &tick.instrument_token.to_string(),
                &payload,
            )
            .expect("enqueued");
    }
    outbox.flush().await.expect("delivered");
    let published = Published::read(&config.kafka.brokers, &config.topics());
    assert_eq!(
        published.expected()[0],
        ("ticks", session_ticks + MORE_TICKS)
    );
    let mut sink = SinkProcess::spawn(&config, 4);
    wait_until_stored_while(&db, &published.expected(), || sink.running()).await;
    // Give a duplicating sink the chance to show itself.
    tokio::time::sleep(Duration::from_millis(500)).await;
    published.assert_stored(&db).await;
}

/// Waits `outage`, checking every half second that the sink rides it out.
async fn ride_out<T: std::fmt::Debug>(outage: Duration, sink: &mut tokio::task::JoinHandle<T>) {
    let start = Instant::now();
    while start.elapsed() < outage {
        assert!(
            !sink.is_finished(),
            "the sink stopped during the outage: {:?}",
            sink.await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_for_60_s_and_crashing_mid_commit_loses_and_duplicates_nothing() {
    const OUTAGE: Duration = Duration::from_secs(60);
    let server = PrivatePostgres::start("outage");
    let mut sandbox = Sandbox::on_server("outage", &server.url()).await;
    let published = published_session(&mut sandbox).await;
    // Reconnect attempts at most 2 s apart, so the test sees the recovery promptly.
    sandbox.config.sink.max_backoff_secs = 2;
    let config = sandbox.config.clone();
    let name = config.sink.consumer_name.clone();

    // 1. Stopped for 60 s mid-batch: the sink's COPY waits for the test's lock on ticks when
    //    PostgreSQL shuts down (pg_ctl stop -m fast), rolling the batch back.
    let blocker = lock_table(&config.database.url, "ticks").await;
    let stop = CancellationToken::new();
    let mut sink = tokio::spawn(strikeflow_sink::run(config.sink(), stop.clone()));
    let admin = connect(&server.url()).await;
    wait_for_sink(&admin, &name, "Lock", None).await;
    drop((admin, blocker));
    let down = Instant::now();
    server.stop();
    eprintln!("PostgreSQL stopped mid-batch");
    ride_out(OUTAGE, &mut sink).await;
    server.start_again(&[]);
    eprintln!("PostgreSQL started again after {:.1?}", down.elapsed());
    // Before the sink's next attempt (at least 0.25 s away), its first batch is held again.
    let blocker = lock_table(&config.database.url, "ticks").await;
    let admin = connect(&server.url()).await;
    wait_for_sink(&admin, &name, "Lock", None).await;
    eprintln!("the sink reconnected after {:.1?}", down.elapsed());

    // 2. A crash mid-commit: commits now wait for a synchronous standby that does not exist,
    //    the lock goes, and the batch's commit is flushed but never acknowledged when the
    //    server crashes (immediate shutdown). Crash recovery keeps it; the sink, reconnecting,
    //    must resume after it from the stored offsets rather than write it again.
    admin
        .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'strikeflow_test_nobody'")
        .await
        .expect("making commits wait");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .await
        .expect("reloading");
    // The reload reaches the server's processes asynchronously.
    tokio::time::sleep(Duration::from_secs(1)).await;
    blocker.batch_execute("ROLLBACK").await.expect("unlocking");
    let statement = wait_for_sink(&admin, &name, "IPC", Some("SyncRep")).await;
    assert_eq!(statement, "COMMIT", "waiting in {statement:?}");
    drop((admin, blocker));
    server.crash();
    eprintln!("PostgreSQL crashed with a commit unacknowledged");
    ride_out(Duration::from_secs(3), &mut sink).await;
    // Back, with commits no longer waiting (the command line overrides ALTER SYSTEM).
    server.start_again(&["synchronous_standby_names=''"]);
    let db = connect(&config.database.url).await;
    let recovered = count(&db, "SELECT count(*) FROM ticks").await;
    eprintln!("{recovered} ticks stored after crash recovery");
    assert!(recovered > 0, "the flushed commit survived the crash");

    wait_until_stored(&db, &published.expected(), &sink).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    sink.await.unwrap().expect("the sink stops cleanly");
    published.assert_stored(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sinks_with_different_names_share_the_outputs() {
    let mut sandbox = Sandbox::new("sinksplit").await;
    let published = published_session(&mut sandbox).await;
    let mut ticks = sandbox.config.clone();
    ticks.sink.consumer_name = "ticks".into();
    ticks.sink.topics = vec![Source::Ticks, Source::Late];
    let mut analytics = sandbox.config.clone();
    analytics.sink.consumer_name = "analytics".into();
    analytics.sink.topics = vec![
        Source::Instruments,
        Source::Bars,
        Source::Strikes,
        Source::Chains,
        Source::Moneyness,
        Source::Indicators,
    ];
    let stop = CancellationToken::new();
    let first = tokio::spawn(strikeflow_sink::run(ticks.sink(), stop.clone()));
    let second = tokio::spawn(strikeflow_sink::run(analytics.sink(), stop.clone()));
    let db = sandbox.db().await;
    wait_until_stored_while(&db, &published.expected(), || {
        !first.is_finished() && !second.is_finished()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    first.await.unwrap().expect("the ticks sink stops cleanly");
    second
        .await
        .unwrap()
        .expect("the analytics sink stops cleanly");
    published.assert_stored(&db).await;

    // Each stored only its own share, and its own offsets.
    let offsets = db
        .query(
            "SELECT consumer, array_agg(DISTINCT topic ORDER BY topic) FROM sink_offsets GROUP BY consumer ORDER BY consumer",
            &[],
        )
        .await
        .expect("reading sink_offsets");
    let topics = sandbox.config.topics();
    let by_consumer: Vec<(String, Vec<String>)> =
        offsets.iter().map(|r| (r.get(0), r.get(1))).collect();
    let mut analytics_topics = vec![
        topics.instruments(),
        topics.bars(),
        topics.strikes(),
        topics.chains(),
        topics.moneyness(),
        topics.indicators(),
    ];
    analytics_topics.sort();
    let mut ticks_topics = vec![topics.ticks(), topics.late()];
    ticks_topics.sort();
    assert_eq!(
        by_consumer,
        vec![
            ("analytics".to_owned(), analytics_topics),
            ("ticks".to_owned(), ticks_topics)
        ]
    );
}
