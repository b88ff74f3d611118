//! Why a configuration is refused, worded for the operator who wrote it: every message
//! starts with the key as written in the file (`sink.batch_rows`) and says where the value
//! came from (the file, or the exact environment variable).

use figment::error::Kind;
use figment::{Metadata, Provider, Source};

/// Why the configuration cannot be used. Returned at start-up, before anything connects.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or the environment could not be read, or holds an unknown key or a value of
    /// the wrong type; one line per problem.
    #[error("{}", .0.join("\n"))]
    Load(Vec<String>),
    /// A value has the right type but cannot work.
    #[error("{key}: {reason}")]
    Invalid {
        /// The setting, e.g. `kafka.replication`.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A stage refused its settings; its message names the key.
    #[error(transparent)]
    Stage(Box<dyn std::error::Error + Send + Sync>),
}

impl ConfigError {
    /// One line per problem figment found, naming the key and its source. Figment's own
    /// wording prefixes the profile (`default.sink.batch_row`) and names environment
    /// variables only by their prefix, so the message is rebuilt from its parts.
    pub(super) fn load(error: figment::Error) -> Self {
        Self::Load(error.into_iter().map(|e| describe(&e)).collect())
    }

    /// A value out of range.
    pub(super) fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// A stage's own check failed.
    pub(super) fn stage(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Stage(Box::new(error))
    }
}

/// `key: what is wrong (where it came from)`.
fn describe(error: &figment::Error) -> String {
    let what = match &error.kind {
        Kind::UnknownField(_, []) => "unknown key".to_owned(),
        Kind::UnknownField(_, expected) => {
            format!("unknown key (known here: {})", expected.join(", "))
        }
        Kind::UnknownVariant(found, expected) => {
            format!("unknown value {found:?} (one of: {})", expected.join(", "))
        }
        kind => kind.to_string(),
    };
    let origin = error
        .metadata
        .as_ref()
        .map(|metadata| format!(" ({})", origin(metadata, &error.path)))
        .unwrap_or_default();
    if error.path.is_empty() {
        format!("{what}{origin}")
    } else {
        format!("{}: {what}{origin}", error.path.join("."))
    }
}

/// Where a value came from, as precisely as can be said.
fn origin(metadata: &Metadata, path: &[String]) -> String {
    if metadata.name == super::settings_env().metadata().name {
        return env_origin(path);
    }
    match &metadata.source {
        Some(Source::File(file)) => format!("in {}", file.display()),
        _ => format!("from {}", metadata.name),
    }
}

/// The variables that set `path` (or a key below it, when the error is about a whole
/// unknown section such as `STRIKEFLOW_SINKS__BATCH_ROWS`).
fn env_origin(path: &[String]) -> String {
    let name = format!("STRIKEFLOW_{}", path.join("__").to_uppercase());
    let below = format!("{name}__");
    let mut vars: Vec<String> = std::env::vars_os()
        .filter_map(|(var, _)| var.into_string().ok())
        .filter(|var| {
            let upper = var.to_uppercase();
            upper == name || upper.starts_with(&below)
        })
        .collect();
    vars.sort();
    match vars.as_slice() {
        [] => format!("from environment variable {name}"),
        [one] => format!("from environment variable {one}"),
        many => format!("from environment variables {}", many.join(", ")),
    }
}
