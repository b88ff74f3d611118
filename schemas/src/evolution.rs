//! The schema-evolution rule, checked without a registry.
//!
//! Our subjects are `BACKWARD` compatible (set by `strikeflow migrate`): a consumer using the
//! new schema must be able to read everything written with the previous one, so a reader can
//! be upgraded before or after the producers. Concretely a new field needs a default, a
//! field's type may only be promoted (int -> long, float -> double, ...), enum symbols may not
//! disappear without a default. The registry enforces this when a schema is registered; this
//! check runs the same rule in `cargo test` against the released copies in
//! `schemas/avro/released/`, so a breaking change fails before it reaches any registry.

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;

use crate::codec::CodecError;

/// Why a new schema version may not replace the previous one.
#[derive(Debug, thiserror::Error)]
pub enum EvolutionError {
    /// One of the two texts is not a valid schema.
    #[error(transparent)]
    Schema(#[from] CodecError),
    /// The record was renamed: a reader of the new name cannot resolve the old records.
    #[error("record renamed from {previous} to {current}")]
    Renamed {
        /// Full name in the previous version.
        previous: String,
        /// Full name in the new version.
        current: String,
    },
    /// Data written with the previous version cannot be read with the new one.
    #[error("not backward compatible: {0}")]
    Incompatible(String),
}

/// Checks that `current` is a `BACKWARD`-compatible successor of `previous` (both `.avsc`
/// texts): a reader with `current` resolves every datum written with `previous`.
pub fn check_backward(previous: &str, current: &str) -> Result<(), EvolutionError> {
    let parse = |text: &str| {
        Schema::parse_str(text)
            .map_err(|e| EvolutionError::Schema(CodecError::Schema(e.to_string())))
    };
    let (previous, current) = (parse(previous)?, parse(current)?);
    let name = |schema: &Schema| schema.name().map(|n| n.fullname(None)).unwrap_or_default();
    if name(&previous) != name(&current) {
        return Err(EvolutionError::Renamed {
            previous: name(&previous),
            current: name(&current),
        });
    }
    SchemaCompatibility::can_read(&previous, &current)
        .map(drop)
        .map_err(|e| EvolutionError::Incompatible(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = r#"{"type":"record","name":"T","namespace":"strikeflow","fields":[
        {"name":"a","type":"long"},
        {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;

    fn v2(extra_field: &str) -> String {
        V1.replace("]}", &format!(",{extra_field}]}}"))
    }

    #[test]
    fn a_field_added_without_a_default_is_refused() {
        let bad = v2(r#"{"name":"b","type":"double"}"#);
        let err = check_backward(V1, &bad).expect_err("no default");
        assert!(matches!(err, EvolutionError::Incompatible(_)), "{err}");
    }

    #[test]
    fn a_field_added_with_a_default_is_accepted() {
        check_backward(
            V1,
            &v2(r#"{"name":"b","type":["null","double"],"default":null}"#),
        )
        .expect("optional field");
        check_backward(V1, V1).expect("unchanged");
    }

    #[test]
    fn removal_promotion_narrowing_and_renaming() {
        let without_a = V1.replace(r#"{"name":"a","type":"long"},"#, "");
        check_backward(V1, &without_a).expect("a reader may ignore a field");
        let narrowed = V1.replace(r#""type":"long"}"#, r#""type":"int"}"#);
        assert!(
            check_backward(V1, &narrowed).is_err(),
            "long -> int loses data"
        );
        check_backward(&narrowed, V1).expect("int -> long is a promotion");
        let renamed = V1.replace(r#""name":"T""#, r#""name":"U""#);
        assert!(matches!(
            check_backward(V1, &renamed),
            Err(EvolutionError::Renamed { .. })
        ));
    }
}
