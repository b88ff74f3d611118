//! The schema-registry part of `strikeflow migrate`: every `.avsc` registered under its
//! subject, each subject `BACKWARD` compatible.
//!
//! Producers never register anything (a typo in a topic prefix must not create a subject),
//! so this is the one place schemas enter the registry. Re-running it is harmless: a schema
//! already registered keeps its id, and a changed one becomes the subject's next version
//! only if the registry finds it backward compatible with the previous one.

use std::future::Future;
use std::time::Duration;

use strikeflow_kafka::{Registry, RegistryError};
use strikeflow_schemas::Topics;
use tokio::time::Instant;
use tracing::warn;

/// How long `migrate` keeps asking a registry that does not answer yet. A registry just
/// started (`./dev up`, a pod beside this Job) answers its first writes slowly while it
/// warms up; one timed-out request must not fail a deployment.
const PATIENCE: Duration = Duration::from_secs(120);

/// The compatibility level set on every subject: a consumer on the new schema reads
/// everything written with the previous one (docs/formats.md, "Compatibility policy").
pub const COMPATIBILITY: &str = "BACKWARD";

/// One registered subject and the id its current schema has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSubject {
    /// The subject, e.g. `ticks.v1-value`.
    pub subject: String,
    /// The schema's id in the registry (what Confluent-framed records carry).
    pub id: u32,
}

/// Registers every schema of `topics` under its subject and sets the subject's
/// compatibility to [`COMPATIBILITY`].
pub async fn register_schemas(
    registry: &Registry,
    topics: &Topics,
) -> Result<Vec<RegisteredSubject>, RegistryError> {
    let deadline = Instant::now() + PATIENCE;
    let mut registered = Vec::new();
    for spec in topics.subjects() {
        let id = patiently(deadline, || {
            registry.register(&spec.subject, spec.schema_json)
        })
        .await?;
        patiently(deadline, || {
            registry.set_compatibility(&spec.subject, COMPATIBILITY)
        })
        .await?;
        registered.push(RegisteredSubject {
            subject: spec.subject,
            id,
        });
    }
    Ok(registered)
}

/// Runs `request` again while the registry is unreachable or slow, until `deadline`
/// (registering a schema twice is harmless: it keeps its id); any other error at once.
async fn patiently<T, F, Fut>(deadline: Instant, mut request: F) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RegistryError>>,
{
    let mut attempt = 0;
    loop {
        match request().await {
            Err(e @ (RegistryError::Timeout { .. } | RegistryError::Unreachable { .. }))
                if Instant::now() < deadline =>
            {
                attempt += 1;
                let delay = strikeflow_kafka::backoff(attempt, Duration::from_secs(5));
                warn!(error = %e, attempt, "schema registry not answering yet; trying again");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
}
