//! OpenAPI conformance: `tests/contract/openapi_conformance.py` runs schemathesis (pinned in
//! `tests/contract/requirements.txt`) against the served `/api/v1/openapi.json` of an API
//! holding the rows of `common/fixture.rs`, with a valid token. Every operation is called
//! with generated valid and invalid parameters; a 5xx, a response that does not match its
//! documented schema or status, or an undocumented content type fails the run.
//!
//! Needs `STRIKEFLOW_PYTHON` pointing at the venv of `./dev` (`./dev test` exports it) and
//! the services of `./dev up`. A short run: a few examples per operation, well under a minute.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Api, Sandbox};
use strikeflow_api::ApiSettings;

fn python() -> String {
    std::env::var("STRIKEFLOW_PYTHON").unwrap_or_else(|_| {
        panic!(
            "STRIKEFLOW_PYTHON is not set: this contract test needs a Python with schemathesis \
             (tests/contract/requirements.txt). Run it through `./dev test`, which builds that \
             venv and exports STRIKEFLOW_PYTHON."
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failures_against_the_served_document() {
    let sandbox = Sandbox::with_fixture("openapi").await;
    // Generated requests come fast: no rate limit in the way, no cache hiding the database.
    let settings = ApiSettings {
        requests_per_sec: 100_000,
        requests_burst: 100_000,
        ..ApiSettings::default()
    };
    let api = Api::start_with(&sandbox.url, settings).await;

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/contract/openapi_conformance.py"
    );
    // A short run by default; `STRIKEFLOW_SCHEMATHESIS_EXAMPLES=500` for a longer hunt.
    let examples =
        std::env::var("STRIKEFLOW_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".to_owned());
    // Output into a file: the server answers on this runtime while the child runs.
    // Run in a scratch directory: schemathesis keeps a replay cache (`.schemathesis/`) in
    // its working directory.
    let scratch = std::env::temp_dir().join(format!("sf_openapi_{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("a scratch directory");
    let log = scratch.join("schemathesis.log");
    let out = std::fs::File::create(&log).expect("a log file");
    let mut child = Command::new(python())
        .arg(script)
        .arg(format!("http://{}", api.addr))
        .arg(&api.token)
        .arg(examples)
        .stdout(out.try_clone().expect("the log file"))
        .stderr(out)
        .current_dir(&scratch)
        .spawn()
        .expect("start the schemathesis run");
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for schemathesis") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&scratch);
    let status = status.unwrap_or_else(|| panic!("schemathesis ran over 600 s:\n{output}"));
    assert!(
        status.success(),
        "schemathesis found failures ({status}):\n{output}"
    );

    api.stop().await;
    sandbox.finish().await;
}
