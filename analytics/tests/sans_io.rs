//! The analytics crate stays sans-I/O: no async runtime, Kafka client, logging or metrics
//! library anywhere in its dependency tree, direct or transitive.
//!
//! This is what makes the analytics deterministic and testable without services; the
//! Kafka runner in `processors/` owns all of that. Adding such a dependency here, even
//! through another crate, fails this test.

use std::process::Command;

/// Crates that would bring I/O, a clock-driven runtime or global state into the analytics.
/// (`log` is not listed: apache-avro, under `strikeflow-schemas`, depends on it, and the
/// analytics never call it.)
const FORBIDDEN: &[&str] = &[
    "tokio",
    "tokio-util",
    "rdkafka",
    "rdkafka-sys",
    "tracing",
    "tracing-subscriber",
    "metrics",
    "metrics-exporter-prometheus",
    "tokio-postgres",
    "redis",
    "axum",
    "hyper",
    "mio",
];

#[test]
fn dependency_tree_has_no_io_crates() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "--package",
            "strikeflow-analytics",
            "--edges",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"strikeflow-analytics") && names.contains(&"strikeflow-schemas"),
        "cargo tree output is not what this test expects:\n{tree}"
    );
    let found: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|forbidden| names.contains(forbidden))
        .collect();
    assert!(
        found.is_empty(),
        "strikeflow-analytics must stay sans-I/O, but depends on {found:?}:\n{tree}"
    );
}
