mod common;
use std::time::Duration;
use common::*;
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch() {
    let topics = fresh_topics();
    let cfg = config(&topics);
    let server = TestServer::start(cfg).await;
    let token = strikeflow_push::auth::mint(SECRET, "x", Duration::from_secs(600), vec![]).unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws?token={token}", server.addr)).await.unwrap();
    ws.send(Message::text(serde_json::json!({"op": "subscribe", "channel": "bars.ZZZ"}).to_string())).await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(60), ws.next()).await.unwrap();
    eprintln!("{m:?}");
    let t0 = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(40)).await;
    while let Ok(Some(f)) = tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
        eprintln!("{:?} {:?}", t0.elapsed(), f);
    }
    eprintln!("done");
}
