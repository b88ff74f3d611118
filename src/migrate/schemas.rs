//! The schema-registry part of `strikeflow migrate`: every `.avsc` registered under its
//! subject, each subject `BACKWARD` compatible.
//!
//! Producers never register anything (a typo in a topic prefix must not create a subject),
//! so this is the one place schemas enter the registry. Re-running it is harmless: a schema
//! already registered keeps its id, and a changed one becomes the subject's next version
//! only if the registry finds it backward compatible with the previous one.

use strikeflow_kafka::{Registry, RegistryError};
use strikeflow_schemas::Topics;

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
    let mut registered = Vec::new();
    for spec in topics.subjects() {
        let id = registry.register(&spec.subject, spec.schema_json).await?;
        registry
            .set_compatibility(&spec.subject, COMPATIBILITY)
            .await?;
        registered.push(RegisteredSubject {
            subject: spec.subject,
            id,
        });
    }
    Ok(registered)
}
