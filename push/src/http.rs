//! The accept loop: HTTP/1.1 connections served by hyper with a deadline on every request
//! head, so a client that connects and then sends its headers (the WebSocket handshake
//! included) slowly, or not at all, is disconnected instead of holding a socket forever.
//! `axum::serve` sets no such deadline, hence this loop.

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Pause after a failed `accept` (out of file descriptors, …) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long shutdown waits for HTTP requests in flight (upgraded WebSockets are sessions,
/// drained separately).
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Serve `router` on `listener` until `stop`; then stop accepting, let requests in flight
/// finish (up to [`HTTP_DRAIN`]) and return.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    stop: CancellationToken,
) {
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    loop {
        let stream = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        // Small frames go out at once; pushing latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let stop = stop.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let _done = done;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = result {
                // Includes request heads that missed the deadline.
                tracing::debug!(error = %err, "http connection ended with an error");
            }
        });
    }
    drop(done_tx);
    if tokio::time::timeout(HTTP_DRAIN, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP connections did not finish within {HTTP_DRAIN:?}");
    }
}
