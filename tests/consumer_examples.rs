//! The downstream consumer examples of `examples/consumers/`, run against the local services:
//! the same simulated session is processed twice, once written in Confluent framing (read by
//! `chains_confluent.py` through the schema registry) and once in single-object encoding
//! (read by `chains_single_object.py` with fastavro); each script prints every chain summary
//! of its topic, and both print the same lines. Needs `STRIKEFLOW_PYTHON` (the venv of
//! `./dev`).

mod common;

use std::process::Command;

use common::stored::{self, TICKS};
use common::{read_all, wait_processed, Sandbox};
use strikeflow::migrate::schemas::register_schemas;
use strikeflow_kafka::Registry;
use tokio_util::sync::CancellationToken;

fn registry_url() -> String {
    ["DEV_SCHEMA_REGISTRY_URL", "SCHEMA_REGISTRY_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:18081/apis/ccompat/v7".into())
}

fn python() -> String {
    std::env::var("STRIKEFLOW_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .expect("STRIKEFLOW_PYTHON is not set: run `./dev test` (it builds the venv)")
}

/// Runs a session through ingest and the processor in `sandbox`; returns how many chain
/// summaries it produced, and their first byte (the framing).
async fn session(sandbox: &Sandbox) -> (usize, u8) {
    let config = sandbox.config.clone();
    let shutdown = CancellationToken::new();
    let processor = tokio::spawn(strikeflow_processors::run(
        config.processor(),
        shutdown.clone(),
    ));
    let report = strikeflow_ingest::run_simulation(config.simulate(), CancellationToken::new())
        .await
        .expect("simulation");
    assert_eq!(report.ticks, TICKS);
    wait_processed(&config, &processor).await;
    shutdown.cancel();
    processor.await.expect("joined").expect("processor stops");
    let chains = read_all(&config.kafka.brokers, &config.topics().chains());
    assert!(!chains.is_empty(), "no chain summaries");
    let framing = chains[0].payload[0];
    assert!(
        chains.iter().all(|r| r.payload[0] == framing),
        "one framing per session"
    );
    (chains.len(), framing)
}

/// Runs `script` on `sandbox`'s chains topic from the beginning until it printed `n`
/// summaries; returns its lines, sorted (partitions interleave differently per run).
fn run_example(script: &str, sandbox: &Sandbox, n: usize, extra: &[String]) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/consumers/");
    let out = Command::new(python())
        .arg(format!("{path}{script}"))
        .args(["--bootstrap", &sandbox.config.kafka.brokers])
        .args(["--topic", &sandbox.config.topics().chains()])
        .args(["--from-beginning", "--idle-secs", "30"])
        .args(["--max-records", &n.to_string()])
        .args(extra)
        .output()
        .expect("running the example");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), n, "{script} printed every summary");
    lines.sort();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_consumer_examples_print_the_live_chain_summaries() {
    let mut confluent = Sandbox::new("exconfluent").await;
    stored::configure(&mut confluent);
    confluent.config.registry.url = registry_url();
    let registry = Registry::new(confluent.config.registry_connection().as_ref()).expect("URL");
    register_schemas(&registry, &confluent.config.topics())
        .await
        .expect("registering (is the registry up? ./dev up)");
    let (n, framing) = session(&confluent).await;
    assert_eq!(framing, 0, "Confluent magic byte");
    let from_registry = run_example(
        "chains_confluent.py",
        &confluent,
        n,
        &["--registry".into(), registry_url()],
    );

    let mut plain = Sandbox::new("exsingle").await;
    stored::configure(&mut plain);
    let (m, framing) = session(&plain).await;
    assert_eq!(framing, 0xC3, "single-object marker");
    assert_eq!(m, n, "the same session gives the same summaries");
    let from_fingerprints = run_example("chains_single_object.py", &plain, m, &[]);

    assert!(
        from_registry[0].starts_with("NIFTY ") && from_registry[0].contains(" PCR(OI) "),
        "{}",
        from_registry[0]
    );
    assert_eq!(from_registry, from_fingerprints);
}
