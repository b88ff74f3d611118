//! The latest bar of every bar channel, kept in Redis.
//!
//! The hub already holds the latest bar in memory for subscribers of this process; Redis is
//! what a freshly (re)started push instance has before its first live bar, since push reads
//! bars from the live end of the topic. Keys are `strikeflow:last:<topic prefix><channel>`
//! (plain `strikeflow:last:<channel>` in production, where the prefix is empty), so
//! deployments that share a Kafka cluster through topic prefixes share no snapshots either;
//! values are the exact message sent to clients, sequence number included.
//!
//! Writes never sit on the fan-out path: the feed drops the latest bar into a pending map
//! (newer replaces older, so it is bounded by the number of channels) and a writer task
//! flushes it to Redis in pipelines. If Redis is down the pending bars wait and the writer
//! retries; only the newest bar per channel is ever written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::Snapshot;
use crate::protocol::SnapshotHead;
use crate::redis_link::{RedisLink, RedisLinkError};
use crate::stats;

/// Prefix of the Redis keys holding the latest message per channel.
pub const KEY_PREFIX: &str = "strikeflow:last:";
/// How long a stored snapshot lives without being refreshed, so keys of expired contracts do
/// not pile up forever.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most snapshots written in one pipeline.
const MAX_PIPELINE: usize = 512;
/// Pause after a failed write before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Redis failed, is unreachable or did not answer in time.
    #[error(transparent)]
    Redis(#[from] RedisLinkError),
    /// The stored value is not a message for the requested channel.
    #[error("stored snapshot for {channel} is unusable: {reason}")]
    Corrupt {
        /// The channel.
        channel: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The Redis key for `channel` in the deployment whose topics are prefixed with `namespace`.
pub fn key(namespace: &str, channel: &str) -> String {
    format!("{KEY_PREFIX}{namespace}{channel}")
}

/// Redis-backed store of the latest message per channel, on the shared Redis link.
pub struct SnapshotStore {
    link: Arc<RedisLink>,
    namespace: String,
    pending: Mutex<HashMap<Arc<str>, Utf8Bytes>>,
    dirty: Notify,
}

impl SnapshotStore {
    /// A store on `link`, with keys under `namespace` (the topic prefix). Does not connect.
    pub fn new(link: Arc<RedisLink>, namespace: &str) -> SnapshotStore {
        SnapshotStore {
            link,
            namespace: namespace.to_owned(),
            pending: Mutex::new(HashMap::new()),
            dirty: Notify::new(),
        }
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<Arc<str>, Utf8Bytes>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Read the stored latest message of `channel`, if any.
    pub async fn load(&self, channel: &str) -> Result<Option<Snapshot>, SnapshotError> {
        let key = key(&self.namespace, channel);
        let value: Option<String> = self
            .link
            .query(async |conn| redis::cmd("GET").arg(&key).query_async(conn).await)
            .await?;
        let Some(text) = value else {
            return Ok(None);
        };
        let corrupt = |reason: String| SnapshotError::Corrupt {
            channel: channel.to_owned(),
            reason,
        };
        let head: SnapshotHead = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if head.channel != channel {
            return Err(corrupt(format!("it belongs to {:?}", head.channel)));
        }
        Ok(Some(Snapshot {
            seq: head.seq,
            epoch: head.epoch,
            message: Utf8Bytes::from(text),
        }))
    }

    /// Remember `message` as the latest of `channel`; the writer task stores it soon.
    /// Never blocks on Redis.
    pub fn store(&self, channel: &Arc<str>, message: Utf8Bytes) {
        self.pending().insert(channel.clone(), message);
        self.dirty.notify_one();
    }

    /// Number of snapshots waiting to be written.
    pub fn pending_len(&self) -> usize {
        self.pending().len()
    }

    /// Write pending snapshots until `shutdown`, then make one last bounded attempt.
    pub async fn run_writer(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.dirty.notified() => {}
            }
            while self.pending_len() > 0 && !shutdown.is_cancelled() {
                if let Err(err) = self.flush().await {
                    metrics::counter!(stats::SNAPSHOT_ERRORS).increment(1);
                    tracing::warn!(error = %err, "writing bar snapshots to redis failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(RETRY_AFTER) => {}
                    }
                }
            }
        }
        if self.pending_len() > 0 {
            if let Err(err) = self.flush().await {
                tracing::warn!(error = %err, "final snapshot flush failed");
            }
        }
    }

    /// Write up to `MAX_PIPELINE` pending snapshots in one pipeline. On failure they go
    /// back to the pending map unless a newer one arrived meanwhile.
    pub async fn flush(&self) -> Result<usize, SnapshotError> {
        let batch: Vec<(Arc<str>, Utf8Bytes)> = {
            let mut pending = self.pending();
            let keys: Vec<Arc<str>> = pending.keys().take(MAX_PIPELINE).cloned().collect();
            keys.into_iter()
                .filter_map(|k| pending.remove_entry(&k))
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for (channel, message) in &batch {
            pipe.cmd("SET")
                .arg(key(&self.namespace, channel))
                .arg(message.as_str())
                .arg("EX")
                .arg(SNAPSHOT_TTL.as_secs())
                .ignore();
        }
        let written = batch.len();
        match self
            .link
            .query(async |conn| pipe.query_async::<()>(conn).await)
            .await
        {
            Ok(()) => Ok(written),
            Err(err) => {
                let mut pending = self.pending();
                for (channel, message) in batch {
                    pending.entry(channel).or_insert(message);
                }
                Err(err.into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_documented_layout() {
        assert_eq!(
            key("", "bars.NIFTY26DECFUT"),
            "strikeflow:last:bars.NIFTY26DECFUT"
        );
        assert_eq!(
            key("t1.", "bars.NIFTY26DECFUT"),
            "strikeflow:last:t1.bars.NIFTY26DECFUT"
        );
    }

    #[tokio::test]
    async fn pending_keeps_only_the_newest_per_channel_and_survives_failures() {
        // Port 1: nothing listens, so the flush fails fast and must keep the bars.
        let link = Arc::new(RedisLink::new("redis://127.0.0.1:1").expect("url"));
        let store = SnapshotStore::new(link, "");
        let ch: Arc<str> = Arc::from("bars.X");
        store.store(&ch, Utf8Bytes::from("old"));
        store.store(&ch, Utf8Bytes::from("new"));
        assert_eq!(store.pending_len(), 1);
        assert!(store.flush().await.is_err());
        assert_eq!(store.pending_len(), 1);
        assert_eq!(
            store.pending().get(&ch).map(|m| m.as_str().to_owned()),
            Some("new".to_owned())
        );
    }
}
