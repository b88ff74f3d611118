//! The real binary refuses a bad configuration file before it connects to anything: fast,
//! with a non-zero exit and a message naming the key. Needs no services.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A configuration file in the temporary directory, removed when dropped.
struct TempConfig(PathBuf);

impl TempConfig {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "strikeflow-config-errors-{}-{name}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("writing the test configuration");
        Self(path)
    }
}

impl Drop for TempConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Runs `strikeflow <args> --config <file>` with no STRIKEFLOW_/service variables, so
/// nothing but the file decides, and returns its output and how long it took.
fn run(file: &TempConfig, args: &[&str]) -> (Output, Duration) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_strikeflow"));
    command.args(args).arg("--config").arg(&file.0);
    for (var, _) in std::env::vars_os() {
        let var = var.to_string_lossy();
        if var.starts_with("STRIKEFLOW_")
            || ["KAFKA_BROKERS", "DATABASE_URL", "REDIS_URL"].contains(&var.as_ref())
        {
            command.env_remove(var.as_ref());
        }
    }
    // Unreachable services: if the binary got as far as connecting, it would hang or fail
    // with a connection error instead of the key.
    command.env("KAFKA_BROKERS", "127.0.0.1:1");
    let started = Instant::now();
    let output = command.output().expect("running the strikeflow binary");
    (output, started.elapsed())
}

/// Asserts a fast failure whose stderr names every one of `parts`.
fn assert_refused(output: &Output, took: Duration, parts: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "exited successfully: {stderr}");
    // Milliseconds in practice; the bound leaves room for a loaded CI machine.
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} to refuse: {stderr}"
    );
    for part in parts {
        assert!(
            stderr.contains(part),
            "stderr does not mention {part:?}: {stderr}"
        );
    }
}

#[test]
fn a_misspelt_key_stops_every_command_naming_the_key() {
    let file = TempConfig::new("misspelt", "[sink]\nbatch_row = 5\n");
    for args in [
        &["sink"][..],
        &["process"],
        &["push"],
        &["run"],
        &["migrate"],
    ] {
        let (output, took) = run(&file, args);
        assert_refused(&output, took, &["sink.batch_row", "unknown key"]);
    }
}

#[test]
fn a_bad_value_stops_the_binary_naming_the_key_and_the_reason() {
    let file = TempConfig::new("bad-value", "[sink]\nbatch_rows = 0\n");
    let (output, took) = run(&file, &["sink"]);
    assert_refused(&output, took, &["sink.batch_rows: must"]);
}
