//! One lazily (re)connected Redis connection shared by everything push keeps in Redis:
//! snapshots, revoked token ids and per-user connection leases.
//!
//! Connecting happens on first use, so a Redis that is down delays those features, never
//! push's start; a connection that looks broken is dropped so the next call reconnects.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// Time limit for connecting to Redis and for each command.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a Redis call failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisLinkError {
    /// Redis failed or is unreachable.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered something unexpected.
    #[error("redis answered {0}")]
    Unexpected(String),
}

/// The shared connection.
pub struct RedisLink {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisLink {
    /// A link to the Redis at `url` (`rediss://` for TLS, see [`strikeflow_tls::redis_client`]).
    /// Does not connect yet; fails only if the URL or its CA file is unusable.
    pub fn new(url: &str) -> Result<RedisLink, strikeflow_tls::TlsError> {
        Ok(RedisLink {
            client: strikeflow_tls::redis_client(url)?,
            conn: tokio::sync::Mutex::new(None),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, RedisLinkError> {
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
        .map_err(|_| RedisLinkError::Timeout(REDIS_TIMEOUT))??;
        *guard = Some(conn.clone());
        Ok(conn)
    }

    /// Run `run` on the shared connection, dropping the connection if it looks broken so
    /// the next call reconnects.
    pub async fn query<T>(
        &self,
        run: impl AsyncFnOnce(&mut MultiplexedConnection) -> redis::RedisResult<T>,
    ) -> Result<T, RedisLinkError> {
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
                Err(RedisLinkError::Timeout(REDIS_TIMEOUT))
            }
        }
    }

    /// `PING`, for readiness.
    pub async fn ping(&self) -> Result<(), RedisLinkError> {
        let pong: String = self
            .query(async |conn| redis::cmd("PING").query_async(conn).await)
            .await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(RedisLinkError::Unexpected(format!("{pong:?} to PING")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_url_is_rejected_without_connecting() {
        assert!(RedisLink::new("not a url").is_err());
        assert!(RedisLink::new("redis://127.0.0.1:1").is_ok());
    }
}
