//! `/readyz`: can push reach Kafka, PostgreSQL and Redis right now?
//!
//! Each check has its own time limit and they run concurrently, so a dead dependency makes
//! the probe answer 503 within about two seconds instead of hanging the orchestrator's
//! request. PostgreSQL is not used by push itself; it is checked so one probe tells an
//! operator whether the dashboards' whole backend is healthy.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::Serialize;

use crate::snapshot::SnapshotStore;

/// Time limit of each dependency check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Outcome of one readiness probe: `"ok"` or the error, per dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyReport {
    /// Kafka metadata fetch.
    pub kafka: String,
    /// PostgreSQL `select 1`.
    pub postgres: String,
    /// Redis `PING`.
    pub redis: String,
}

impl ReadyReport {
    /// Whether every dependency answered.
    pub fn all_ok(&self) -> bool {
        self.kafka == "ok" && self.postgres == "ok" && self.redis == "ok"
    }
}

/// The three dependency checks, holding the connections they reuse between probes.
pub struct Readiness {
    kafka: Arc<StreamConsumer>,
    postgres: tokio_postgres::Config,
    pg_client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    redis: Arc<SnapshotStore>,
}

impl Readiness {
    /// Checks using an existing Kafka client, a PostgreSQL configuration (connected lazily)
    /// and the snapshot store's Redis connection.
    pub fn new(
        kafka: Arc<StreamConsumer>,
        mut postgres: tokio_postgres::Config,
        redis: Arc<SnapshotStore>,
    ) -> Readiness {
        postgres.connect_timeout(CHECK_TIMEOUT);
        Readiness {
            kafka,
            postgres,
            pg_client: tokio::sync::Mutex::new(None),
            redis,
        }
    }

    /// Run all three checks concurrently.
    pub async fn check(&self) -> ReadyReport {
        let (kafka, postgres, redis) = tokio::join!(
            limited(self.check_kafka()),
            limited(self.check_postgres()),
            limited(self.check_redis()),
        );
        ReadyReport {
            kafka,
            postgres,
            redis,
        }
    }

    async fn check_kafka(&self) -> Result<(), String> {
        let consumer = self.kafka.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(None, CHECK_TIMEOUT)
                .map(|m| m.brokers().len())
        })
        .await
        .map_err(|e| format!("metadata task failed: {e}"))?
        .map_err(|e| e.to_string())?;
        if metadata == 0 {
            return Err("no brokers in metadata".to_owned());
        }
        Ok(())
    }

    async fn check_postgres(&self) -> Result<(), String> {
        let mut guard = self.pg_client.lock().await;
        let client = match guard.take() {
            Some(client) if !client.is_closed() => client,
            _ => {
                let (client, connection) = self
                    .postgres
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "readiness postgres connection ended");
                    }
                });
                client
            }
        };
        client
            .simple_query("select 1")
            .await
            .map_err(|e| e.to_string())?;
        *guard = Some(client);
        Ok(())
    }

    async fn check_redis(&self) -> Result<(), String> {
        self.redis.ping().await.map_err(|e| e.to_string())
    }
}

async fn limited(check: impl Future<Output = Result<(), String>>) -> String {
    match tokio::time::timeout(CHECK_TIMEOUT + Duration::from_millis(500), check).await {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(err)) => err,
        Err(_) => format!("timed out after {CHECK_TIMEOUT:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_serialises_to_the_documented_shape() {
        let ok = ReadyReport {
            kafka: "ok".into(),
            postgres: "ok".into(),
            redis: "ok".into(),
        };
        assert!(ok.all_ok());
        assert_eq!(
            serde_json::to_value(&ok).expect("json"),
            serde_json::json!({"kafka":"ok","postgres":"ok","redis":"ok"})
        );
        let bad = ReadyReport {
            redis: "connection refused".into(),
            ..ok
        };
        assert!(!bad.all_ok());
    }
}
