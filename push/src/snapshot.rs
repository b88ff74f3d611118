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
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::hub::Snapshot;
use crate::protocol::SnapshotHead;
use crate::stats;

/// Prefix of the Redis keys holding the latest message per channel.
pub const KEY_PREFIX: &str = "strikeflow:last:";
/// How long a stored snapshot lives without being refreshed, so keys of expired contracts do
/// not pile up forever.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Time limit for connecting to Redis and for each command.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Most snapshots written in one pipeline.
const MAX_PIPELINE: usize = 512;
/// Pause after a failed write before retrying.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Redis failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
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

/// Redis-backed store of the latest message per channel, with a lazily (re)connected
/// multiplexed connection.
pub struct SnapshotStore {
    client: redis::Client,
    namespace: String,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    pending: Mutex<HashMap<Arc<str>, Utf8Bytes>>,
    dirty: Notify,
}

impl SnapshotStore {
    /// A store for the Redis at `url`, with keys under `namespace` (the topic prefix). Does
    /// not connect yet (so a down Redis does not stop push from starting); fails only if the
    /// URL is invalid.
    pub fn new(url: &str, namespace: &str) -> Result<SnapshotStore, redis::RedisError> {
        Ok(SnapshotStore {
            client: redis::Client::open(url)?,
            namespace: namespace.to_owned(),
            conn: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            dirty: Notify::new(),
        })
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<Arc<str>, Utf8Bytes>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn connection(&self) -> Result<MultiplexedConnection, SnapshotError> {
        let mut guard = self.conn.lock().await;
        if let Some(conn) = guard.as_ref() {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT));
        let conn = tokio::time::timeout(
            REDIS_TIMEOUT + Duration::from_millis(500),
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| SnapshotError::Timeout(REDIS_TIMEOUT))??;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Run `cmd` on the shared connection, dropping the connection if it looks broken so the
    /// next call reconnects.
    async fn query<T: redis::FromRedisValue>(
        &self,
        run: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, SnapshotError> {
        let mut conn = self.connection().await?;
        let result =
            tokio::time::timeout(REDIS_TIMEOUT + Duration::from_millis(500), run(&mut conn)).await;
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => {
                if err.is_io_error()
                    || err.is_connection_dropped()
                    || err.is_timeout()
                    || err.is_unrecoverable_error()
                {
                    *self.conn.lock().await = None;
                }
                Err(err.into())
            }
            Err(_) => {
                *self.conn.lock().await = None;
                Err(SnapshotError::Timeout(REDIS_TIMEOUT))
            }
        }
    }

    /// `PING`, for readiness.
    pub async fn ping(&self) -> Result<(), SnapshotError> {
        let pong: String = self
            .query(async |conn| redis::cmd("PING").query_async(conn).await)
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(SnapshotError::Corrupt {
                channel: String::new(),
                reason: format!("PING answered {pong:?}"),
            })
        }
    }

    /// Read the stored latest message of `channel`, if any.
    pub async fn load(&self, channel: &str) -> Result<Option<Snapshot>, SnapshotError> {
        let key = key(&self.namespace, channel);
        let value: Option<String> = self
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
            .query(async |conn| pipe.query_async::<()>(conn).await)
            .await
        {
            Ok(()) => Ok(written),
            Err(err) => {
                let mut pending = self.pending();
                for (channel, message) in batch {
                    pending.entry(channel).or_insert(message);
                }
                Err(err)
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

    #[test]
    fn invalid_url_is_rejected_without_connecting() {
        assert!(SnapshotStore::new("not a url", "").is_err());
        assert!(SnapshotStore::new("redis://127.0.0.1:1", "").is_ok());
    }

    #[tokio::test]
    async fn pending_keeps_only_the_newest_per_channel_and_survives_failures() {
        // Port 1: nothing listens, so the flush fails fast and must keep the bars.
        let store = SnapshotStore::new("redis://127.0.0.1:1", "").expect("url");
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
