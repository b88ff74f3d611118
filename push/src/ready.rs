//! `/readyz`: can push serve, and is each dependency reachable?
//!
//! Only Kafka makes push unready (503): without it there is no data. Redis down makes it
//! `degraded` (snapshots, revocation and the cross-node user limit wait; push still
//! serves), and PostgreSQL, which push does not use, is reported so one probe shows the
//! dashboards' whole backend, `degraded` when it is down. Checks run concurrently, each with
//! its own time limit, and a report is reused for [`CACHE_FOR`], so probes stay cheap
//! however often an orchestrator (or an attacker) asks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use serde::Serialize;
use tokio::time::Instant;

use crate::redis_link::RedisLink;

/// Time limit of each dependency check.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a report is served before the dependencies are asked again.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// What push can do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    /// Every dependency answered.
    Ok,
    /// Push serves, but an optional dependency (Redis, PostgreSQL) is down.
    Degraded,
    /// Push cannot serve data: Kafka is unreachable.
    Unready,
}

/// Outcome of one readiness probe: the overall status, then `"ok"` or the error per
/// dependency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadyReport {
    /// Overall: `ok`, `degraded` or `unready` (the only one answered with 503).
    pub status: ReadyStatus,
    /// Kafka metadata fetch (required).
    pub kafka: String,
    /// Redis `PING` (optional: degraded when down).
    pub redis: String,
    /// PostgreSQL `select 1` (not used by push: degraded when down).
    pub postgres: String,
}

impl ReadyReport {
    /// The report of these check results.
    pub fn new(kafka: String, redis: String, postgres: String) -> ReadyReport {
        let status = if kafka != "ok" {
            ReadyStatus::Unready
        } else if redis != "ok" || postgres != "ok" {
            ReadyStatus::Degraded
        } else {
            ReadyStatus::Ok
        };
        ReadyReport {
            status,
            kafka,
            redis,
            postgres,
        }
    }

    /// Whether push can serve (`ok` or `degraded`).
    pub fn is_ready(&self) -> bool {
        self.status != ReadyStatus::Unready
    }
}

/// The dependency checks, holding the connections they reuse between probes.
pub struct Readiness {
    kafka: Arc<StreamConsumer>,
    topic: String,
    postgres: strikeflow_tls::PgTarget,
    pg_client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    redis: Arc<RedisLink>,
    cached: tokio::sync::Mutex<Option<(Instant, ReadyReport)>>,
}

impl Readiness {
    /// Checks using an existing Kafka client (asking for the metadata of `topic` only), a
    /// PostgreSQL target (connected lazily, over TLS if its URL says so) and the shared Redis
    /// link.
    pub fn new(
        kafka: Arc<StreamConsumer>,
        topic: String,
        mut postgres: strikeflow_tls::PgTarget,
        redis: Arc<RedisLink>,
    ) -> Readiness {
        postgres.config.connect_timeout(CHECK_TIMEOUT);
        Readiness {
            kafka,
            topic,
            postgres,
            pg_client: tokio::sync::Mutex::new(None),
            redis,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The latest report if younger than [`CACHE_FOR`], else a fresh one. Concurrent probes
    /// wait for the one check in flight instead of starting their own.
    pub async fn report(&self) -> ReadyReport {
        let mut cached = self.cached.lock().await;
        if let Some((at, report)) = cached.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return report.clone();
            }
        }
        let report = self.check().await;
        *cached = Some((Instant::now(), report.clone()));
        report
    }

    /// Run all checks concurrently.
    pub async fn check(&self) -> ReadyReport {
        let (kafka, postgres, redis) = tokio::join!(
            limited(self.check_kafka()),
            limited(self.check_postgres()),
            limited(self.check_redis()),
        );
        ReadyReport::new(kafka, redis, postgres)
    }

    async fn check_kafka(&self) -> Result<(), String> {
        let consumer = self.kafka.clone();
        let topic = self.topic.clone();
        let metadata = tokio::task::spawn_blocking(move || {
            consumer
                .fetch_metadata(Some(&topic), CHECK_TIMEOUT)
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
                let (client, connection) =
                    self.postgres.connect().await.map_err(|e| e.to_string())?;
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
    fn only_kafka_makes_push_unready() {
        let ok = || "ok".to_owned();
        let report = ReadyReport::new(ok(), ok(), ok());
        assert_eq!(report.status, ReadyStatus::Ok);
        assert_eq!(
            serde_json::to_value(&report).expect("json"),
            serde_json::json!({"status":"ok","kafka":"ok","redis":"ok","postgres":"ok"})
        );
        let redis_down = ReadyReport::new(ok(), "connection refused".into(), ok());
        assert_eq!(redis_down.status, ReadyStatus::Degraded);
        assert!(redis_down.is_ready());
        let pg_down = ReadyReport::new(ok(), ok(), "timed out".into());
        assert_eq!(pg_down.status, ReadyStatus::Degraded);
        assert!(pg_down.is_ready());
        let kafka_down = ReadyReport::new("no brokers".into(), ok(), ok());
        assert_eq!(kafka_down.status, ReadyStatus::Unready);
        assert!(!kafka_down.is_ready());
        assert_eq!(
            serde_json::to_value(&kafka_down).expect("json")["status"],
            "unready"
        );
    }
}
