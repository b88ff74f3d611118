//! The sink on a topic that moves from single-object to Confluent framing, and through an
//! outage of its schema registry (real Kafka, PostgreSQL and Apicurio Registry).
//!
//! The registry here is a private Apicurio process of this test (the distribution `./dev up`
//! fetched into `.dev/registry/app`), so the test can stop it without disturbing anyone.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strikeflow_kafka::{Outbox, Registry, RegistryConnection};
use strikeflow_schemas::{encode, encode_framed, Encoding, Framing, Tick};
use tokio_util::sync::CancellationToken;

use common::{connect, count, eventually, read_topic, sandbox, tick};

/// A registry process owned by the test; killed when dropped.
struct PrivateRegistry {
    child: Child,
    url: String,
}

impl Drop for PrivateRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A Java of release 21 or newer: `JAVA_HOME`, then the JDKs under /usr/lib/jvm (as
/// `./dev` looks for one).
fn java21() -> PathBuf {
    let mut candidates: Vec<PathBuf> = std::env::var_os("JAVA_HOME")
        .map(|home| vec![Path::new(&home).join("bin/java")])
        .unwrap_or_default();
    if let Ok(dirs) = std::fs::read_dir("/usr/lib/jvm") {
        candidates.extend(dirs.filter_map(|d| Some(d.ok()?.path().join("bin/java"))));
    }
    candidates
        .into_iter()
        .find(|java| {
            let Ok(out) = Command::new(java)
                .args(["-XshowSettings:properties", "-version"])
                .output()
            else {
                return false;
            };
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .find_map(|l| l.trim().strip_prefix("java.specification.version = "))
                .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
                .is_some_and(|major| major >= 21)
        })
        .expect("no Java 21+ (JAVA_HOME or /usr/lib/jvm); ./dev up explains")
}

async fn start_private_registry() -> PrivateRegistry {
    let jar = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.dev/registry/app/quarkus-run.jar");
    assert!(
        jar.exists(),
        "{} is missing: run ./dev up (it fetches the registry)",
        jar.display()
    );
    let (port, management) = (free_port(), free_port());
    let child = Command::new(java21())
        .arg("-Xmx256m")
        .arg("-Dquarkus.http.host=127.0.0.1")
        .arg(format!("-Dquarkus.http.port={port}"))
        .arg("-Dquarkus.management.host=127.0.0.1")
        .arg(format!("-Dquarkus.management.port={management}"))
        .arg("-jar")
        .arg(&jar)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the private registry");
    let registry = PrivateRegistry {
        child,
        url: format!("http://127.0.0.1:{port}/apis/ccompat/v7"),
    };
    let client = client(&registry.url);
    eventually(
        "the private registry to answer",
        Duration::from_secs(90),
        || async {
            client.schema(1).await.err().and_then(|e| {
                // Up: it answers, with 404 for an id it does not have.
                matches!(
                    e,
                    strikeflow_kafka::RegistryError::Status { status: 404, .. }
                )
                .then_some(())
            })
        },
    )
    .await;
    registry
}

fn connection(url: &str) -> RegistryConnection {
    RegistryConnection {
        url: url.to_owned(),
        // Generous: a freshly started registry answers its first requests slowly; once it
        // is stopped, requests are refused at once.
        timeout: Duration::from_secs(15),
        encoding: Encoding::Confluent,
    }
}

fn client(url: &str) -> Registry {
    Registry::new(Some(&connection(url))).expect("a registry URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_framings_are_stored_and_an_outage_only_stops_new_schema_ids() {
    let mut config = sandbox("sinkreg").await;
    let registry = start_private_registry().await;
    let topics = config.kafka.topics.clone();
    let producer = client(&registry.url);
    for spec in topics.subjects() {
        producer
            .register(&spec.subject, spec.schema_json)
            .await
            .expect("registering");
    }
    let framing = producer
        .framing::<Tick>(&topics, &topics.ticks())
        .await
        .expect("registered");
    let Framing::Confluent { id } = framing else {
        panic!("confluent expected")
    };

    // The topic's history: single-object ticks, then the producers switch to Confluent.
    let mut outbox = Outbox::connect(&config.kafka.brokers).expect("producer");
    let ticks = topics.ticks();
    for second in 0..3 {
        outbox
            .send(&ticks, "NIFTY", &encode(&tick(1, second)).expect("encode"))
            .expect("send");
    }
    for second in 3..6 {
        let bytes = encode_framed(&tick(1, second), framing).expect("encode");
        outbox.send(&ticks, "NIFTY", &bytes).expect("send");
    }
    outbox.flush().await.expect("delivered");

    config.registry = Some(connection(&registry.url));
    let stop = CancellationToken::new();
    let sink = tokio::spawn(strikeflow_sink::run(config.clone(), stop.clone()));
    let db = connect(&config.database_url).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    if sink.is_finished() {
        panic!("sink ended: {:?}", sink.await);
    }
    let stored = |n: i64| {
        let db = &db;
        move || async move { (count(db, "SELECT count(*) FROM ticks").await == n).then_some(()) }
    };
    eventually(
        "all six ticks of both framings stored",
        Duration::from_secs(60),
        stored(6),
    )
    .await;

    // The registry goes away. Ticks under the id the sink already knows keep flowing; a
    // tick under an id it never saw is dead-lettered with the reason.
    drop(registry);
    for second in 6..9 {
        let bytes = encode_framed(&tick(1, second), framing).expect("encode");
        outbox.send(&ticks, "NIFTY", &bytes).expect("send");
    }
    let new_id = Framing::Confluent { id: id + 1000 };
    outbox
        .send(
            &ticks,
            "NIFTY",
            &encode_framed(&tick(1, 9), new_id).expect("encode"),
        )
        .expect("send");
    for second in 10..12 {
        let bytes = encode_framed(&tick(1, second), framing).expect("encode");
        outbox.send(&ticks, "NIFTY", &bytes).expect("send");
    }
    outbox.flush().await.expect("delivered");
    eventually(
        "the known-id ticks stored during the outage",
        Duration::from_secs(60),
        stored(11),
    )
    .await;
    let letters = read_topic(&config.kafka.brokers, &topics.dead_letter(&ticks), 1).await;
    let reason = letters[0].header("reason").expect("a reason header");
    assert!(
        reason.contains(&format!("schema id {}", id + 1000)) && reason.contains("unreachable"),
        "{reason}"
    );
    assert_eq!(
        letters[0].payload,
        encode_framed(&tick(1, 9), new_id).expect("encode")
    );
    assert!(
        !sink.is_finished(),
        "the sink must keep running through the outage"
    );

    let started = Instant::now();
    stop.cancel();
    sink.await.expect("joined").expect("graceful stop");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(count(&db, "SELECT count(*) FROM ticks").await, 11);
}
