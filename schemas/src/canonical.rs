//! Avro Parsing Canonical Form (PCF) and the CRC-64-AVRO (Rabin) fingerprint, written from the
//! Avro specification ("Parsing Canonical Form for Schemas" and "Schema Fingerprints").
//!
//! Why our own implementation instead of `apache_avro::Schema::canonical_form` /
//! `Schema::fingerprint::<Rabin>`: apache-avro 0.22 does not apply the PRIMITIVES rule to
//! primitives that carry a logical type. For a field typed
//! `{"type":"long","logicalType":"timestamp-micros"}` it keeps `{"type":"long"}` in the canonical
//! form instead of reducing it to `"long"` (upstream AVRO-4004, apache/avro PR 2976, still open).
//! Every schema we publish has a logical type (`timestamp-micros`, `date`), so its fingerprint,
//! and therefore the single-object header, would differ from the one Java, fastavro and every
//! schema registry compute, and other-language consumers could not resolve our messages.
//!
//! We transform the schema JSON directly (rather than stripping `logicalType` and asking
//! apache-avro) because that keeps the whole algorithm in one place that follows the spec rule by
//! rule, with no dependence on how a given apache-avro release re-serialises a parsed schema.
//! The crate's tests check it against the spec's published fingerprints, against apache-avro for
//! schemas without logical types, and against fastavro in the contract test.

use std::collections::HashSet;
use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::codec::CodecError;

/// The Rabin fingerprint of the empty byte string; the seed (and polynomial) of CRC-64-AVRO.
pub const RABIN_EMPTY: u64 = 0xc15d_213a_a4d7_a795;

/// Lookup table of the spec's table-driven CRC-64-AVRO, built at compile time.
const RABIN_TABLE: [u64; 256] = build_rabin_table();

const fn build_rabin_table() -> [u64; 256] {
    let mut table = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut fp = i as u64;
        let mut j = 0;
        while j < 8 {
            // `0u64.wrapping_sub(fp & 1)` is the spec's `-(fp & 1L)`: all ones when the low bit is set.
            fp = (fp >> 1) ^ (RABIN_EMPTY & 0u64.wrapping_sub(fp & 1));
            j += 1;
        }
        table[i] = fp;
        i += 1;
    }
    table
}

/// CRC-64-AVRO (64-bit Rabin) fingerprint of `bytes`, exactly as the Avro spec defines it.
///
/// Exists so fingerprints can be computed over a spec-correct canonical form (see the module
/// docs for why apache-avro's own fingerprint cannot be used). The single-object header stores
/// the result in little-endian byte order.
pub fn rabin_fingerprint(bytes: &[u8]) -> u64 {
    let mut fp = RABIN_EMPTY;
    for &b in bytes {
        fp = (fp >> 8) ^ RABIN_TABLE[((fp ^ u64::from(b)) & 0xff) as usize];
    }
    fp
}

/// The Avro primitive type names; the PRIMITIVES rule reduces `{"type": <one of these>, ...}` to
/// the bare name, whatever other attributes (such as `logicalType`) the object carries.
const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

fn is_primitive(name: &str) -> bool {
    PRIMITIVES.contains(&name)
}

/// The Parsing Canonical Form of an Avro schema given as JSON text.
///
/// Exists because the schema fingerprint must be taken over a spec-correct canonical form
/// (apache-avro 0.22 gets it wrong for logical types; see the module docs). Applies the spec's
/// rules PRIMITIVES, FULLNAMES, STRIP (keeps only `type`, `name`, `fields`, `symbols`, `items`,
/// `values`, `size`), ORDER, STRINGS, INTEGERS and WHITESPACE. Returns
/// [`CodecError::Schema`] when the text is not JSON or not a well-formed schema (missing names,
/// unknown type references, duplicate definitions, ...).
pub fn canonical_form(schema_json: &str) -> Result<String, CodecError> {
    let value: Value = serde_json::from_str(schema_json)
        .map_err(|e| CodecError::Schema(format!("schema is not valid JSON: {e}")))?;
    let mut out = String::with_capacity(schema_json.len());
    let mut defined = HashSet::new();
    write_schema(&value, "", &mut defined, &mut out)?;
    Ok(out)
}

fn schema_err(msg: impl Into<String>) -> CodecError {
    CodecError::Schema(msg.into())
}

/// Appends `s` as a JSON string literal. serde_json writes non-ASCII characters as raw UTF-8 and
/// escapes only what JSON requires, which is the STRINGS rule.
fn write_json_str(s: &str, out: &mut String) -> Result<(), CodecError> {
    let quoted = serde_json::to_string(s).map_err(|e| schema_err(e.to_string()))?;
    out.push_str(&quoted);
    Ok(())
}

/// FULLNAMES: a name containing a dot is already full; otherwise it is qualified by `namespace`
/// (the empty string being the null namespace).
fn full_name(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

/// Writes the canonical form of one schema. `namespace` is the most tightly enclosing namespace;
/// `defined` holds the full names defined so far (a later bare reference prints the full name).
fn write_schema(
    schema: &Value,
    namespace: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), CodecError> {
    match schema {
        Value::String(name) => write_type_name(name, namespace, defined, out),
        Value::Array(branches) => {
            out.push('[');
            for (i, branch) in branches.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_schema(branch, namespace, defined, out)?;
            }
            out.push(']');
            Ok(())
        }
        Value::Object(obj) => match obj.get("type") {
            Some(Value::String(ty)) => write_object(obj, ty, namespace, defined, out),
            // `{"type": {...}, "logicalType": ...}` (e.g. decimal over a fixed): the attributes
            // around the inner schema are stripped, leaving the inner schema itself.
            Some(inner @ (Value::Object(_) | Value::Array(_))) => {
                write_schema(inner, namespace, defined, out)
            }
            Some(other) => Err(schema_err(format!("schema \"type\" is not valid: {other}"))),
            None => Err(schema_err("schema object has no \"type\"")),
        },
        other => Err(schema_err(format!("not a schema: {other}"))),
    }
}

/// A type given by name: a primitive, or a reference to a named type defined earlier.
fn write_type_name(
    name: &str,
    namespace: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), CodecError> {
    if is_primitive(name) {
        return write_json_str(name, out);
    }
    let full = full_name(name, namespace);
    if defined.contains(&full) {
        write_json_str(&full, out)
    } else if defined.contains(name) {
        // A dotless name of a type defined in the null namespace.
        write_json_str(name, out)
    } else {
        Err(schema_err(format!("unknown type name \"{name}\"")))
    }
}

fn write_object(
    obj: &Map<String, Value>,
    ty: &str,
    namespace: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), CodecError> {
    match ty {
        // PRIMITIVES (+ STRIP of logicalType and every other attribute).
        _ if is_primitive(ty) => write_json_str(ty, out),
        "array" => {
            let items = obj
                .get("items")
                .ok_or_else(|| schema_err("array schema has no \"items\""))?;
            out.push_str("{\"type\":\"array\",\"items\":");
            write_schema(items, namespace, defined, out)?;
            out.push('}');
            Ok(())
        }
        "map" => {
            let values = obj
                .get("values")
                .ok_or_else(|| schema_err("map schema has no \"values\""))?;
            out.push_str("{\"type\":\"map\",\"values\":");
            write_schema(values, namespace, defined, out)?;
            out.push('}');
            Ok(())
        }
        "record" | "error" | "enum" | "fixed" => write_named(obj, ty, namespace, defined, out),
        // `{"type": "SomeNamedType"}`: a reference in object form.
        other => write_type_name(other, namespace, defined, out),
    }
}

/// Records, enums and fixed: `{"name":<fullname>,"type":..,<fields|symbols|size>}` (ORDER).
fn write_named(
    obj: &Map<String, Value>,
    ty: &str,
    enclosing: &str,
    defined: &mut HashSet<String>,
    out: &mut String,
) -> Result<(), CodecError> {
    let name = match obj.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.as_str(),
        _ => return Err(schema_err(format!("{ty} schema has no \"name\""))),
    };
    // FULLNAMES: a dotted name carries its own namespace; otherwise an explicit "namespace"
    // attribute wins over the enclosing one.
    let (full, own_namespace) = if let Some((ns, _)) = name.rsplit_once('.') {
        (name.to_owned(), ns.to_owned())
    } else {
        let ns = match obj.get("namespace") {
            Some(Value::String(ns)) => ns.as_str(),
            Some(Value::Null) | None => enclosing,
            Some(other) => return Err(schema_err(format!("namespace is not a string: {other}"))),
        };
        (full_name(name, ns), ns.to_owned())
    };
    if !defined.insert(full.clone()) {
        return Err(schema_err(format!("type \"{full}\" is defined twice")));
    }

    out.push_str("{\"name\":");
    write_json_str(&full, out)?;
    match ty {
        "record" | "error" => {
            out.push_str(",\"type\":\"record\",\"fields\":[");
            let fields = match obj.get("fields") {
                Some(Value::Array(f)) => f,
                _ => return Err(schema_err(format!("record {full} has no \"fields\" array"))),
            };
            for (i, field) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let fname = field.get("name").and_then(Value::as_str).ok_or_else(|| {
                    schema_err(format!("a field of record {full} has no \"name\""))
                })?;
                let ftype = field
                    .get("type")
                    .ok_or_else(|| schema_err(format!("field {full}.{fname} has no \"type\"")))?;
                out.push_str("{\"name\":");
                write_json_str(fname, out)?;
                out.push_str(",\"type\":");
                write_schema(ftype, &own_namespace, defined, out)?;
                out.push('}');
            }
            out.push(']');
        }
        "enum" => {
            out.push_str(",\"type\":\"enum\",\"symbols\":[");
            let symbols = match obj.get("symbols") {
                Some(Value::Array(s)) => s,
                _ => return Err(schema_err(format!("enum {full} has no \"symbols\" array"))),
            };
            for (i, symbol) in symbols.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let symbol = symbol
                    .as_str()
                    .ok_or_else(|| schema_err(format!("enum {full} has a non-string symbol")))?;
                write_json_str(symbol, out)?;
            }
            out.push(']');
        }
        _ => {
            // "fixed". INTEGERS: the size is printed as a plain decimal integer.
            let size = obj
                .get("size")
                .and_then(Value::as_u64)
                .ok_or_else(|| schema_err(format!("fixed {full} has no integer \"size\"")))?;
            let _ = write!(out, ",\"type\":\"fixed\",\"size\":{size}");
        }
    }
    out.push('}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rabin_of_empty_is_the_seed() {
        assert_eq!(rabin_fingerprint(b""), 0xc15d_213a_a4d7_a795);
    }

    /// Known vectors from the Avro spec's test data (share/test/data/schema-tests.txt), given
    /// there as signed Java longs.
    #[test]
    fn rabin_matches_spec_vectors() {
        let vectors: [(&str, i64); 8] = [
            ("\"null\"", 7195948357588979594),
            ("\"boolean\"", -6970731678124411036),
            ("\"int\"", 8247732601305521295),
            ("\"long\"", -3434872931120570953),
            ("\"float\"", 5583340709985441680),
            ("\"double\"", -8181574048448539266),
            ("\"bytes\"", 5746618253357095269),
            ("\"string\"", -8142146995180207161),
        ];
        for (pcf, expected) in vectors {
            assert_eq!(rabin_fingerprint(pcf.as_bytes()) as i64, expected, "{pcf}");
        }
    }

    #[test]
    fn rabin_matches_apache_avro_implementation() {
        use apache_avro::rabin::Rabin;
        use apache_avro::Schema;
        // Without logical types apache-avro's canonical form is correct, so both must agree.
        let schema = r#"{"type":"record","name":"R","namespace":"n","fields":[
            {"name":"a","type":"long"},{"name":"b","type":{"type":"array","items":"string"}}]}"#;
        let parsed = Schema::parse_str(schema).expect("parse");
        let theirs = parsed.fingerprint::<Rabin>();
        let mut le = [0u8; 8];
        le.copy_from_slice(&theirs.bytes);
        let pcf = canonical_form(schema).expect("pcf");
        assert_eq!(pcf, parsed.canonical_form());
        assert_eq!(rabin_fingerprint(pcf.as_bytes()), u64::from_le_bytes(le));
    }

    #[test]
    fn primitives_reduce_to_bare_names() {
        assert_eq!(canonical_form(r#"{"type":"int"}"#).expect("pcf"), "\"int\"");
        assert_eq!(canonical_form(r#" "string" "#).expect("pcf"), "\"string\"");
        assert_eq!(
            canonical_form(r#"{"type":"long","logicalType":"timestamp-micros"}"#).expect("pcf"),
            "\"long\""
        );
        assert_eq!(
            canonical_form(r#"{"type":"int","logicalType":"date"}"#).expect("pcf"),
            "\"int\""
        );
    }

    #[test]
    fn logical_types_do_not_change_the_canonical_form() {
        let with = r#"{"type":"record","name":"Tick","namespace":"x","doc":"d","fields":[
            {"name":"token","type":"long","doc":"t"},
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}},
            {"name":"expiry","type":["null",{"type":"int","logicalType":"date"}],"default":null},
            {"name":"px","type":"double"}]}"#;
        let without = r#"{"type":"record","name":"Tick","namespace":"x","fields":[
            {"name":"token","type":"long"},
            {"name":"ts","type":"long"},
            {"name":"expiry","type":["null","int"]},
            {"name":"px","type":"double"}]}"#;
        let a = canonical_form(with).expect("pcf");
        let b = canonical_form(without).expect("pcf");
        assert_eq!(a, b);
        assert_eq!(
            a,
            r#"{"name":"x.Tick","type":"record","fields":[{"name":"token","type":"long"},{"name":"ts","type":"long"},{"name":"expiry","type":["null","int"]},{"name":"px","type":"double"}]}"#
        );
    }

    /// Documents AVRO-4004: if this ever fails, apache-avro fixed its canonical form and the
    /// workaround in this module could be dropped.
    #[test]
    fn apache_avro_canonical_form_is_still_wrong_for_logical_types() {
        let schema = r#"{"type":"record","name":"T","fields":[
            {"name":"ts","type":{"type":"long","logicalType":"timestamp-micros"}}]}"#;
        let parsed = apache_avro::Schema::parse_str(schema).expect("parse");
        let ours = canonical_form(schema).expect("pcf");
        assert_eq!(
            ours,
            r#"{"name":"T","type":"record","fields":[{"name":"ts","type":"long"}]}"#
        );
        assert_ne!(parsed.canonical_form(), ours);
    }

    #[test]
    fn fullnames_strip_and_order() {
        let schema = r#"{
            "doc": "top", "fields": [
              {"type": {"symbols": ["A", "B"], "name": "E", "type": "enum", "default": "A"}, "name": "e"},
              {"name": "e2", "type": "E"},
              {"name": "f", "type": {"type": "fixed", "name": "other.F", "size": 16, "aliases": ["x"]}},
              {"name": "f2", "type": "other.F"},
              {"name": "m", "type": {"type": "map", "values": {"type": "record", "name": "Inner",
                  "namespace": "", "fields": []}}},
              {"name": "i", "type": "Inner"},
              {"name": "n", "type": {"type": "record", "name": "Nested", "fields": [
                  {"name": "self", "type": ["null", "Nested"]}]}}
            ],
            "type": "record", "name": "Outer", "namespace": "ns"
        }"#;
        assert_eq!(
            canonical_form(schema).expect("pcf"),
            concat!(
                r#"{"name":"ns.Outer","type":"record","fields":["#,
                r#"{"name":"e","type":{"name":"ns.E","type":"enum","symbols":["A","B"]}},"#,
                r#"{"name":"e2","type":"ns.E"},"#,
                r#"{"name":"f","type":{"name":"other.F","type":"fixed","size":16}},"#,
                r#"{"name":"f2","type":"other.F"},"#,
                r#"{"name":"m","type":{"type":"map","values":{"name":"Inner","type":"record","fields":[]}}},"#,
                r#"{"name":"i","type":"Inner"},"#,
                r#"{"name":"n","type":{"name":"ns.Nested","type":"record","fields":[{"name":"self","type":["null","ns.Nested"]}]}}"#,
                r#"]}"#
            )
        );
    }

    #[test]
    fn strings_are_unescaped_utf8() {
        let pcf = canonical_form(r#"{"type":"enum","name":"\u00e9t\u00e9","symbols":["A"]}"#)
            .expect("pcf");
        assert_eq!(
            pcf,
            "{\"name\":\"été\",\"type\":\"enum\",\"symbols\":[\"A\"]}"
        );
    }

    #[test]
    fn malformed_schemas_are_errors() {
        for bad in [
            "",
            "{",
            "42",
            r#"{"name":"x"}"#,
            r#"{"type":"record","fields":[]}"#,
            r#"{"type":"record","name":"R"}"#,
            r#"{"type":"record","name":"R","fields":[{"type":"int"}]}"#,
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"Missing"}]}"#,
            r#"{"type":"array"}"#,
            r#"{"type":"map"}"#,
            r#"{"type":"fixed","name":"F"}"#,
            r#"{"type":"enum","name":"E","symbols":[1]}"#,
            r#"["int",{"type":"enum","name":"E","symbols":[]},{"type":"enum","name":"E","symbols":[]}]"#,
        ] {
            assert!(
                matches!(canonical_form(bad), Err(CodecError::Schema(_))),
                "{bad:?} should be rejected"
            );
        }
    }
}
