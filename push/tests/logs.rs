//! Tokens never reach the logs: with every log line of every crate captured at TRACE, a
//! client presenting tokens in the query string, a header and a subprotocol (accepted and
//! refused) leaves no trace of them. Its own test binary, as it installs the global
//! subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::tokens::{claims, hs256, with};
use common::*;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Everything written by the subscriber.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_never_logged() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let server = TestServer::start(config(&fresh_topics())).await;
    let good = hs256(&claims("logged", &["*"]));
    let expired = hs256(&with(
        claims("logged", &["*"]),
        "exp",
        json!(common::tokens::now() - 60),
    ));
    let forged = format!("{}x", &good[..good.len() - 1]);
    let signatures: Vec<String> = [&good, &expired, &forged]
        .iter()
        .map(|t| t.rsplit('.').next().expect("signature").to_owned())
        .collect();

    for token in [&good, &expired, &forged] {
        // Query string.
        let _ =
            tokio_tungstenite::connect_async(format!("{}?token={token}", server.ws_url())).await;
        // Header.
        let mut request = server.ws_url().into_client_request().expect("request");
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        let _ = tokio_tungstenite::connect_async(request).await;
        // Subprotocol.
        let mut request = server.ws_url().into_client_request().expect("request");
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_str(&format!("strikeflow.v1, bearer.{token}")).expect("header"),
        );
        let _ = tokio_tungstenite::connect_async(request).await;
    }
    // A session that refreshes in-band, with a good and a refused token.
    let mut ws = connect(&server, &good).await;
    send_json(&mut ws, json!({"op":"auth","token":forged})).await;
    assert_eq!(next_json(&mut ws).await["type"], "error");
    send_json(&mut ws, json!({"op":"auth","token":good})).await;
    assert_eq!(next_json(&mut ws).await["type"], "authenticated");
    drop(ws);
    server.stop().await;

    let text = logs.text();
    assert!(
        text.contains("connection refused"),
        "the capture works and refusals are logged (at debug): {} bytes",
        text.len()
    );
    for signature in &signatures {
        assert!(
            !text.contains(signature.as_str()),
            "a token's signature is in the logs"
        );
    }
}
