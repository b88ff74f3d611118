//! The access log: one line per request with its id, and never the query string, where the
//! UDF's `?token=` travels. Its own test binary, since it installs the global subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Api, Sandbox};

/// Every log line written, in memory.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("the log buffer")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("the log buffer")).into_owned()
    }
}

#[tokio::test]
async fn requests_are_logged_with_their_id_and_without_the_token() {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let sandbox = Sandbox::with_fixture("logs").await;
    let api = Api::start(&sandbox.url).await;
    let token = api.token.clone();
    let paths = [
        format!("/udf/symbols?symbol=NIFTY26DECFUT&token={token}"),
        format!("/udf/history?symbol=NIFTY26DECFUT&resolution=5&from=1796183100&to=1796186700&token={token}"),
        format!("/udf/symbols?symbol=NOPE&token={token}"),
        format!("/api/v1/chain?underlying=NIFTY&expiry=2026-12-08&token={token}"),
    ];
    let mut ids = Vec::new();
    for path in &paths {
        let reply = api
            .get_with(path, &[("X-Request-Id", &format!("req-{}", ids.len()))])
            .await;
        assert!(reply.status < 500, "{path}: {}", reply.body);
        ids.push(reply.header("x-request-id").expect("an id").to_owned());
    }
    api.stop().await;
    sandbox.finish().await;

    let logs = capture.text();
    let signature = token.rsplit('.').next().expect("a signature");
    assert!(
        !logs.contains(signature),
        "a token reached the logs:\n{logs}"
    );
    assert!(
        !logs.contains("token="),
        "a query string reached the logs:\n{logs}"
    );
    for (id, path) in ids.iter().zip(&paths) {
        let path = path.split('?').next().expect("a path");
        let line = logs
            .lines()
            .find(|l| l.contains(&format!("id={id}")) && l.contains("strikeflow_api::access"))
            .unwrap_or_else(|| panic!("no access line for {id}:\n{logs}"));
        assert!(line.contains(&format!("path=\"{path}\"")), "{line}");
        // The subject is known where the query token counts (UDF), not on REST (401).
        let udf = path.starts_with("/udf/");
        assert_eq!(line.contains("sub=tester"), udf, "{line}");
        assert!(line.contains("status="), "{line}");
    }
}
