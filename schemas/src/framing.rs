//! The two wire formats of our topics and the decoder that accepts both.
//!
//! - **single object** (Avro spec): `C3 01`, the 8-byte CRC-64-AVRO fingerprint, the body
//!   ([`crate::codec`]). Needs no registry.
//! - **Confluent** (schema-registry framing): the magic byte `0`, the writer schema's id in
//!   the registry as a 4-byte big-endian integer, the body. What Kafka Connect, ksqlDB,
//!   Flink's `avro-confluent`, `confluent-kafka`'s `AvroDeserializer` and kcat expect.
//!
//! Readers tell them apart by the first byte, so a topic can move from one to the other
//! without downtime. What a schema id stands for is not knowable from the bytes: the
//! [`SchemaIds`] table holds what the registry said (filled by the registry client in
//! `strikeflow-kafka`; this crate does no I/O), and a Confluent message is only decoded when
//! its id's schema has the reader's canonical-form fingerprint.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::canonical::{canonical_form, rabin_fingerprint};
use crate::codec::{decode, read_body, write_body, AvroRecord, CodecError, SINGLE_OBJECT_MARKER};

/// First byte of a Confluent-framed message.
pub const CONFLUENT_MAGIC: u8 = 0;

/// Length of the Confluent header: magic byte plus 4-byte schema id.
pub const CONFLUENT_HEADER_LEN: usize = 5;

/// Which wire format producers write; readers accept both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// Magic byte, schema id from the registry, body: for downstream tools.
    Confluent,
    /// `C3 01`, fingerprint, body: needs no registry.
    SingleObject,
}

impl std::fmt::Display for Encoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Encoding::Confluent => "confluent",
            Encoding::SingleObject => "single-object",
        })
    }
}

/// How one producer frames one record type on one topic: decided once at start (the
/// schema id is looked up then), applied to every message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Avro single-object encoding.
    SingleObject,
    /// Confluent framing with the schema id the registry gave this record's subject.
    Confluent {
        /// The writer schema's id in the registry.
        id: u32,
    },
}

/// Encodes `value` framed as `framing` into `buf`, which is cleared first (reuse one buffer
/// on a hot path). On error `buf` is left empty.
pub fn encode_framed_into<T: AvroRecord>(
    value: &T,
    framing: Framing,
    buf: &mut Vec<u8>,
) -> Result<(), CodecError> {
    buf.clear();
    let codec = T::schema_codec()?;
    match framing {
        Framing::SingleObject => buf.extend_from_slice(&codec.header()),
        Framing::Confluent { id } => {
            buf.push(CONFLUENT_MAGIC);
            buf.extend_from_slice(&id.to_be_bytes());
        }
    }
    write_body(codec, value, buf)
}

/// [`encode_framed_into`] into a new buffer.
pub fn encode_framed<T: AvroRecord>(value: &T, framing: Framing) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(128);
    encode_framed_into(value, framing, &mut buf)?;
    Ok(buf)
}

/// The schema id of a Confluent-framed message, `None` for anything else. Exists so the
/// registry client can resolve unknown ids before the (synchronous) decode.
pub fn confluent_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [CONFLUENT_MAGIC, a, b, c, d, ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// What one schema id stands for, as far as this process knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdStatus {
    /// The registry returned this schema for the id.
    Known {
        /// Full name of the record (e.g. `strikeflow.Tick`).
        name: String,
        /// CRC-64-AVRO fingerprint of its Parsing Canonical Form.
        fingerprint: u64,
    },
    /// The last attempt to resolve the id failed; messages carrying it are rejected with
    /// this reason until a later attempt succeeds.
    Unresolved {
        /// Why (registry unreachable, id unknown to the registry, schema invalid, ...).
        reason: String,
    },
}

/// Schema id -> schema table of one registry, shared by a process's readers.
///
/// Known ids are never forgotten (an id's schema never changes in a registry), so once an
/// id is resolved its messages decode without the registry: an outage never blocks them.
#[derive(Debug, Default)]
pub struct SchemaIds {
    ids: RwLock<HashMap<u32, IdStatus>>,
}

impl SchemaIds {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// What is known about `id`, if anything.
    pub fn status(&self, id: u32) -> Option<IdStatus> {
        self.read().get(&id).cloned()
    }

    /// Whether `id` is resolved (its messages can be decoded without the registry).
    pub fn is_known(&self, id: u32) -> bool {
        matches!(self.read().get(&id), Some(IdStatus::Known { .. }))
    }

    /// Records the schema the registry returned for `id` (its JSON text) and returns its
    /// fingerprint. An invalid schema is recorded as unresolved and returned as the error.
    pub fn insert_schema(&self, id: u32, schema_json: &str) -> Result<u64, CodecError> {
        let status = canonical_form(schema_json).and_then(|form| {
            Ok(IdStatus::Known {
                name: record_name(&form)?,
                fingerprint: rabin_fingerprint(form.as_bytes()),
            })
        });
        match status {
            Ok(status) => {
                let fingerprint = match &status {
                    IdStatus::Known { fingerprint, .. } => *fingerprint,
                    IdStatus::Unresolved { .. } => 0,
                };
                self.write().insert(id, status);
                Ok(fingerprint)
            }
            Err(e) => {
                self.insert_failure(id, format!("the registry's schema is not valid Avro: {e}"));
                Err(e)
            }
        }
    }

    /// Records the schema of `id` as that of `T` (a producer's own id, looked up at start by
    /// its schema text, needs no second fetch).
    pub fn insert_record<T: AvroRecord>(&self, id: u32) -> Result<(), CodecError> {
        let codec = T::schema_codec()?;
        self.write().insert(
            id,
            IdStatus::Known {
                name: T::NAME.to_owned(),
                fingerprint: codec.fingerprint(),
            },
        );
        Ok(())
    }

    /// Records a failed resolution of `id`; a known id stays known.
    pub fn insert_failure(&self, id: u32, reason: String) {
        let mut ids = self.write();
        if !matches!(ids.get(&id), Some(IdStatus::Known { .. })) {
            ids.insert(id, IdStatus::Unresolved { reason });
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u32, IdStatus>> {
        self.ids.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<u32, IdStatus>> {
        self.ids.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The record's full name from a canonical form, which starts `{"name":"<full name>",...`
/// for a named type (ORDER rule) and is a bare string or array otherwise.
fn record_name(form: &str) -> Result<String, CodecError> {
    let value: serde_json::Value =
        serde_json::from_str(form).map_err(|e| CodecError::Schema(e.to_string()))?;
    Ok(value
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("(unnamed)")
        .to_owned())
}

/// Decodes a message in either wire format, told apart by its first byte: `C3` is single
/// object (checked against `T`'s fingerprint), `00` is Confluent (its schema id must be
/// [`IdStatus::Known`] in `ids` with `T`'s fingerprint).
///
/// Never does I/O: an id not in `ids` is [`CodecError::UnknownSchemaId`]; resolve it first
/// (the registry client's `resolve`) where waiting is allowed.
pub fn decode_any<T: AvroRecord>(bytes: &[u8], ids: &SchemaIds) -> Result<T, CodecError> {
    if bytes.first() == Some(&SINGLE_OBJECT_MARKER[0]) {
        return decode(bytes);
    }
    let Some(id) = confluent_id(bytes) else {
        return Err(CodecError::UnknownFraming {
            first: bytes.first().copied(),
            len: bytes.len(),
        });
    };
    let codec = T::schema_codec()?;
    match ids.read().get(&id) {
        Some(IdStatus::Known { fingerprint, .. }) if *fingerprint == codec.fingerprint() => {}
        Some(IdStatus::Known { name, fingerprint }) => {
            return Err(CodecError::SchemaIdMismatch {
                id,
                found: name.clone(),
                fingerprint: *fingerprint,
                record: T::NAME,
            })
        }
        Some(IdStatus::Unresolved { reason }) => {
            return Err(CodecError::UnknownSchemaId {
                id,
                reason: reason.clone(),
            })
        }
        None => {
            return Err(CodecError::UnknownSchemaId {
                id,
                reason: "not resolved from the schema registry yet".into(),
            })
        }
    }
    read_body(codec, &bytes[CONFLUENT_HEADER_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode, Bar, Watermark};

    fn watermark() -> Watermark {
        Watermark {
            event_ts: 1_767_000_000_000_000,
            source: "test".into(),
        }
    }

    #[test]
    fn confluent_header_is_magic_and_big_endian_id() {
        let bytes =
            encode_framed(&watermark(), Framing::Confluent { id: 0x0102_0304 }).expect("encode");
        assert_eq!(&bytes[..5], &[0, 1, 2, 3, 4]);
        let single = encode(&watermark()).expect("encode");
        assert_eq!(&bytes[5..], &single[10..], "same body in both framings");
        assert_eq!(confluent_id(&bytes), Some(0x0102_0304));
        assert_eq!(confluent_id(&single), None);
        assert_eq!(
            encode_framed(&watermark(), Framing::SingleObject).expect("encode"),
            single
        );
    }

    #[test]
    fn both_framings_decode_and_ids_are_checked() {
        let ids = SchemaIds::new();
        let confluent = encode_framed(&watermark(), Framing::Confluent { id: 7 }).expect("enc");
        // Unknown id: a clear error, no panic, no guess.
        assert!(matches!(
            decode_any::<Watermark>(&confluent, &ids),
            Err(CodecError::UnknownSchemaId { id: 7, .. })
        ));
        ids.insert_failure(7, "registry down".into());
        let err = decode_any::<Watermark>(&confluent, &ids).expect_err("unresolved");
        assert!(err.to_string().contains("registry down"), "{err}");
        // Resolved from the schema text, as the registry returns it.
        ids.insert_schema(7, Watermark::SCHEMA_JSON).expect("valid");
        ids.insert_failure(7, "a later outage does not forget it".into());
        assert_eq!(
            decode_any::<Watermark>(&confluent, &ids).expect("decodes"),
            watermark()
        );
        let single = encode(&watermark()).expect("encode");
        assert_eq!(
            decode_any::<Watermark>(&single, &ids).expect("decodes"),
            watermark()
        );
        // The id stands for Watermark: reading it as a Bar is refused.
        assert!(matches!(
            decode_any::<Bar>(&confluent, &ids),
            Err(CodecError::SchemaIdMismatch { id: 7, .. })
        ));
        // Neither framing, or too short for a Confluent header.
        for bad in [&[][..], &[0, 0, 0][..], &[1, 2, 3, 4, 5, 6][..]] {
            assert!(matches!(
                decode_any::<Watermark>(bad, &ids),
                Err(CodecError::UnknownFraming { .. })
            ));
        }
        // Truncated body behind a known id.
        assert!(matches!(
            decode_any::<Watermark>(&confluent[..confluent.len() - 1], &ids),
            Err(CodecError::Truncated { .. })
        ));
    }

    #[test]
    fn invalid_registry_schema_is_unresolved() {
        let ids = SchemaIds::new();
        assert!(ids.insert_schema(3, "{not json").is_err());
        assert!(matches!(ids.status(3), Some(IdStatus::Unresolved { .. })));
        ids.insert_record::<Watermark>(4).expect("own schema");
        assert!(ids.is_known(4));
    }

    #[test]
    fn encoding_names() {
        let parse = |s: &str| serde_json::from_str::<Encoding>(&format!("\"{s}\""));
        assert_eq!(parse("confluent").ok(), Some(Encoding::Confluent));
        assert_eq!(parse("single-object").ok(), Some(Encoding::SingleObject));
        assert!(parse("avro").is_err());
        assert_eq!(Encoding::SingleObject.to_string(), "single-object");
    }
}
