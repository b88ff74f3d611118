//! The schema-evolution guard without a registry: every `.avsc` must be a `BACKWARD`
//! compatible successor of its last released copy in `schemas/avro/released/` (the
//! registry runs the same check in `kafka/tests/registry.rs`). Releasing a new version of a
//! schema means copying it there (docs/formats.md, "Compatibility policy").

use std::path::Path;

use strikeflow_schemas::{check_backward, EvolutionError, AVRO_SCHEMA_DIR, RELEASED_SCHEMA_DIR};

#[test]
fn every_schema_reads_what_its_released_version_wrote() {
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(AVRO_SCHEMA_DIR).expect("schema dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "avsc") {
            continue;
        }
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let current = std::fs::read_to_string(&path).expect("read");
        let released = std::fs::read_to_string(Path::new(RELEASED_SCHEMA_DIR).join(&file))
            .unwrap_or_else(|_| panic!("{file} has no released copy in {RELEASED_SCHEMA_DIR}"));
        if let Err(e) = check_backward(&released, &current) {
            panic!("{file}: {e}");
        }
        checked.push(file);
    }
    checked.sort();
    assert_eq!(
        checked,
        [
            "bar.avsc",
            "chain.avsc",
            "indicator.avsc",
            "instrument.avsc",
            "moneyness.avsc",
            "strike.avsc",
            "tick.avsc",
            "watermark.avsc"
        ]
    );
}

#[test]
fn a_field_added_to_a_real_schema_without_a_default_fails_the_guard() {
    let released = std::fs::read_to_string(Path::new(RELEASED_SCHEMA_DIR).join("tick.avsc"))
        .expect("released tick");
    let mut schema: serde_json::Value = serde_json::from_str(&released).expect("json");
    let fields = schema["fields"].as_array_mut().expect("record");
    fields.push(serde_json::json!({"name": "venue", "type": "string"}));
    let without_default = schema.to_string();
    assert!(matches!(
        check_backward(&released, &without_default),
        Err(EvolutionError::Incompatible(_))
    ));
    let fields = schema["fields"].as_array_mut().expect("record");
    fields.pop();
    fields.push(serde_json::json!({"name": "venue", "type": "string", "default": "NSE"}));
    check_backward(&released, &schema.to_string()).expect("with a default it may be added");
}
