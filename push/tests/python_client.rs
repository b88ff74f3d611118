//! An independent client: `tests/contract/push_client.py`, written with Python's
//! `websockets` package, authenticates with a first `auth` message, subscribes to a chain,
//! checks `epoch` and `seq` continuity and prints the chain it rebuilt, which must be the
//! chain published to Kafka.
//!
//! Needs `STRIKEFLOW_PYTHON` pointing at a Python with the pinned packages of
//! `tests/contract/requirements.txt` (`./dev test` sets it up), and the services of `./dev up`.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::chain::*;
use common::tokens::{claims, hs256};
use common::*;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

fn python() -> String {
    std::env::var("STRIKEFLOW_PYTHON").unwrap_or_else(|_| {
        panic!(
            "STRIKEFLOW_PYTHON is not set: this contract test needs a Python with websockets \
             (tests/contract/requirements.txt). Run it through `./dev test`, which builds that \
             venv and exports STRIKEFLOW_PYTHON."
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_websockets_client_follows_a_chain_without_gaps() {
    let topics = fresh_topics();
    create_all_topics(&topics).await;
    let server = TestServer::start(config(&topics)).await;
    let producer = producer();
    let channel = format!("chain.NIFTY.{}", expiry_date());
    let token = hs256(&claims("python", &["chain.NIFTY.*"]));
    let strikes = [25_900.0, 26_000.0, 26_100.0];

    // Three boundaries before the Python client connects (it starts from the snapshot)...
    let (mut summaries, mut rows) = (Vec::new(), Vec::new());
    let mut watcher = connect(&server, &token).await;
    send_json(&mut watcher, json!({"op":"subscribe","channel":channel})).await;
    expect_subscribed(&mut watcher, &channel).await;
    for ts in 1..=3 {
        let (s, r) = publish_boundary(&producer, &topics, "NIFTY", ts, &strikes, 0).await;
        summaries.push(s);
        rows.extend(r);
    }
    read_chain_until(&mut watcher, &mut ChainView::default(), 3).await;

    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/contract/push_client.py"
    );
    let mut child = tokio::process::Command::new(python())
        .arg(script)
        .arg(server.ws_url())
        .arg(&token)
        .arg(&channel)
        .arg("9")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the python client");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the python client is ready within 30 s")
        .expect("read stdout");
    assert_eq!(ready.as_deref(), Some("READY"));

    // ... and six while it follows the deltas, some strikes only.
    for ts in 4..=9 {
        let ticked: Vec<f64> = strikes.iter().copied().skip(ts as usize % 2).collect();
        let (s, r) = publish_boundary(&producer, &topics, "NIFTY", ts, &ticked, 0).await;
        summaries.push(s);
        rows.extend(r);
    }
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the python client finishes within 60 s")
        .expect("python client");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python client failed: {stderr}");
    let text = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .expect("result line")
        .expect("read stdout")
        .expect("a result line");
    let got: Value = serde_json::from_str(&text).expect("python printed JSON");
    let expected = ChainView::published(&summaries, &rows);
    assert_eq!(got["summary"], expected.summary);
    let got_rows: std::collections::BTreeMap<String, Value> =
        serde_json::from_value(got["rows"].clone()).expect("rows");
    assert_eq!(got_rows, expected.rows);
    server.stop().await;
}
