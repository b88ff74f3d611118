//! Avro single-object encoding of the messages that travel on our topics.
//!
//! The other wire format, Confluent's schema-registry framing, and the decoder that accepts
//! both are in [`crate::framing`]; both share the datum reader and writer built here.
//!
//! Wire format (Avro spec, "Single-object encoding"): the two marker bytes `C3 01`, the 8-byte
//! little-endian CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the
//! Avro binary encoding of the datum. The header is written here, not by apache-avro's
//! single-object writer, because apache-avro 0.22 computes the fingerprint over a wrong
//! canonical form for schemas with logical types (AVRO-4004; see [`crate::canonical`]).
//!
//! The datum body goes through apache-avro's schema-aware serde path (`GenericDatumWriter::
//! write_ser` / `GenericDatumReader::read_deser`), which writes and reads Avro bytes directly
//! from our structs without building an intermediate `apache_avro::types::Value`. Callers only
//! see [`encode`], [`encode_into`] and [`decode`], so a hand-written codec for the hot types can
//! replace it later without touching them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{OnceLock, PoisonError, RwLock};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::canonical::{canonical_form, rabin_fingerprint};

/// The two marker bytes that open every Avro single-object encoded message.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];

/// Length of the single-object header: marker plus 8-byte fingerprint.
pub const HEADER_LEN: usize = 10;

/// The most bytes the decoder may reserve for one string, byte array or collection before
/// reading it: Kafka's default `max.message.bytes` (1 MiB), since no field can be longer than
/// the message carrying it.
///
/// apache-avro allocates a string's declared length before it reads the bytes, up to a
/// process-wide cap that defaults to 512 MiB; without this lower cap a 15-byte message
/// declaring a 500 MB string made `decode` reserve 500 MB (found by fuzzing, see
/// `docs/fuzzing.md`). A longer declared length is a [`CodecError::Malformed`].
pub const MAX_FIELD_BYTES: usize = 1 << 20;

/// Why encoding or decoding a message failed. Consumers route undecodable messages to the dead
/// letter topic, so each cause is a distinct, typed variant rather than a string.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The bytes do not start with the `C3 01` marker or are shorter than the 10-byte header.
    #[error("not an Avro single-object message (missing C3 01 marker or shorter than 10 bytes)")]
    NotSingleObject,
    /// The header carries the fingerprint of a schema other than the one asked for.
    #[error(
        "message fingerprint {found:#018x} is not the fingerprint of {record} ({expected:#018x})"
    )]
    UnknownFingerprint {
        /// Fingerprint found in the message header.
        found: u64,
        /// Fingerprint of the schema the caller tried to decode with.
        expected: u64,
        /// Full Avro name of that schema.
        record: &'static str,
    },
    /// The body ended before the datum was complete.
    #[error("{record} body is truncated")]
    Truncated {
        /// Full Avro name of the record being decoded.
        record: &'static str,
    },
    /// The datum was complete but bytes were left over.
    #[error("{record} body has {extra} trailing byte(s)")]
    TrailingBytes {
        /// Full Avro name of the record being decoded.
        record: &'static str,
        /// How many bytes followed the datum.
        extra: usize,
    },
    /// The body bytes are not a valid datum of the schema (bad union/enum index, overlong
    /// varint, invalid UTF-8, out-of-range int, ...).
    #[error("{record} body is malformed: {reason}")]
    Malformed {
        /// Full Avro name of the record being decoded.
        record: &'static str,
        /// What the Avro reader reported.
        reason: String,
    },
    /// The value could not be written with its schema.
    #[error("cannot encode {record}: {reason}")]
    Encode {
        /// Full Avro name of the record being encoded.
        record: &'static str,
        /// What the Avro writer reported.
        reason: String,
    },
    /// The schema text is not a valid Avro schema, or does not match the record's name.
    #[error("invalid Avro schema: {0}")]
    Schema(String),
    /// The first byte is neither the single-object marker (`0xC3`) nor the Confluent magic
    /// byte (`0x00`), or the message is too short to hold either header.
    #[error("not an Avro message: starts with neither C3 01 (single object) nor 00 + a 4-byte schema id (Confluent); first byte {first:?}, {len} byte(s)")]
    UnknownFraming {
        /// The first byte, if any.
        first: Option<u8>,
        /// Length of the message.
        len: usize,
    },
    /// A Confluent-framed message names a schema id this process could not resolve: the
    /// registry does not know it, could not be reached, or none is configured.
    #[error("schema id {id} is unknown: {reason}")]
    UnknownSchemaId {
        /// The schema id from the message header.
        id: u32,
        /// Why it could not be resolved.
        reason: String,
    },
    /// A Confluent-framed message names a schema other than the reader's (its canonical-form
    /// fingerprint differs), so reading it as that record would misinterpret the bytes.
    #[error("schema id {id} is {found}, not {record} (fingerprint {fingerprint:#018x} differs)")]
    SchemaIdMismatch {
        /// The schema id from the message header.
        id: u32,
        /// Full name of the schema that id stands for in the registry.
        found: String,
        /// CRC-64-AVRO fingerprint of that schema's canonical form.
        fingerprint: u64,
        /// Full Avro name of the record the caller tried to decode.
        record: &'static str,
    },
}

/// Implemented by every message type that travels on a topic: ties a Rust type to its Avro
/// schema so the codec can find the schema, its fingerprint and its name.
pub trait AvroRecord: Serialize + DeserializeOwned + Sized {
    /// Full Avro name, e.g. "strikeflow.Tick".
    const NAME: &'static str;
    /// The .avsc text (include_str!).
    const SCHEMA_JSON: &'static str;

    /// The parsed schema, fingerprint and datum reader/writer of this type, built once.
    ///
    /// The default looks the type up in a process-wide registry (a read lock and a hash of the
    /// schema text per call); the crate's own types override it with a per-type `OnceLock`,
    /// which is what [`impl_avro_record!`](crate::impl_avro_record) generates.
    #[doc(hidden)]
    fn schema_codec() -> Result<&'static SchemaCodec, CodecError> {
        registry_codec(Self::NAME, Self::SCHEMA_JSON)
    }
}

/// Implements [`AvroRecord`] for a type with a per-type cached [`SchemaCodec`]. Exists so every
/// message type gets the fast cache without repeating the boilerplate.
#[macro_export]
macro_rules! impl_avro_record {
    ($ty:ty, $name:expr, $schema:expr) => {
        impl $crate::AvroRecord for $ty {
            const NAME: &'static str = $name;
            const SCHEMA_JSON: &'static str = $schema;

            fn schema_codec(
            ) -> ::std::result::Result<&'static $crate::SchemaCodec, $crate::CodecError> {
                static CODEC: ::std::sync::OnceLock<
                    ::std::result::Result<$crate::SchemaCodec, ::std::string::String>,
                > = ::std::sync::OnceLock::new();
                CODEC
                    .get_or_init(|| {
                        $crate::SchemaCodec::build(
                            <Self as $crate::AvroRecord>::NAME,
                            <Self as $crate::AvroRecord>::SCHEMA_JSON,
                        )
                        .map_err(|e| e.to_string())
                    })
                    .as_ref()
                    .map_err(|e| $crate::CodecError::Schema(e.clone()))
            }
        }
    };
}

/// Everything the codec needs for one record type, built once from its schema text: the
/// apache-avro reader and writer, the spec-correct fingerprint and the ready-made header.
pub struct SchemaCodec {
    name: &'static str,
    canonical_form: String,
    fingerprint: u64,
    header: [u8; HEADER_LEN],
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

impl fmt::Debug for SchemaCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaCodec")
            .field("name", &self.name)
            .field("fingerprint", &format_args!("{:#018x}", self.fingerprint))
            .field("canonical_form", &self.canonical_form)
            .finish_non_exhaustive()
    }
}

impl SchemaCodec {
    /// Parses `schema_json`, checks that it names the record `name`, and prepares the reader,
    /// writer, fingerprint and header.
    ///
    /// The parsed schema is leaked: apache-avro's reader and writer borrow it, and a codec lives
    /// for the whole process (one per record type, built once), so a `'static` borrow is the
    /// simplest sound way to cache them together.
    pub fn build(name: &'static str, schema_json: &str) -> Result<Self, CodecError> {
        // Process-wide and set once (the first call wins): every codec is built before its
        // first decode, so this runs before apache-avro reads anything.
        apache_avro::util::max_allocation_bytes(MAX_FIELD_BYTES);
        let canonical_form = canonical_form(schema_json)?;
        let fingerprint = rabin_fingerprint(canonical_form.as_bytes());
        let schema =
            Schema::parse_str(schema_json).map_err(|e| CodecError::Schema(e.to_string()))?;
        let full_name = match &schema {
            Schema::Record(record) => record.name.fullname(None),
            other => {
                return Err(CodecError::Schema(format!(
                    "{name}: top-level schema must be a record, found {:?}",
                    apache_avro::schema::SchemaKind::from(other)
                )))
            }
        };
        if full_name != name {
            return Err(CodecError::Schema(format!(
                "schema names record {full_name}, but the Rust type says {name}"
            )));
        }
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let avro_err = |e: apache_avro::Error| CodecError::Schema(format!("{name}: {e}"));
        let writer = GenericDatumWriter::builder(schema)
            .human_readable(false)
            .build()
            .map_err(avro_err)?;
        let reader = GenericDatumReader::builder(schema)
            .human_readable(false)
            .build()
            .map_err(avro_err)?;
        let mut header = [0u8; HEADER_LEN];
        header[..2].copy_from_slice(&SINGLE_OBJECT_MARKER);
        header[2..].copy_from_slice(&fingerprint.to_le_bytes());
        Ok(Self {
            name,
            canonical_form,
            fingerprint,
            header,
            writer,
            reader,
        })
    }

    /// Full Avro name of the record.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Spec-correct Parsing Canonical Form of the schema.
    pub fn canonical_form(&self) -> &str {
        &self.canonical_form
    }

    /// CRC-64-AVRO fingerprint of the canonical form.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The 10-byte single-object header (`C3 01` + little-endian fingerprint).
    pub fn header(&self) -> [u8; HEADER_LEN] {
        self.header
    }
}

type Registry = RwLock<HashMap<(&'static str, &'static str), &'static SchemaCodec>>;

/// Codec cache for `AvroRecord` implementations that do not provide their own (see
/// [`AvroRecord::schema_codec`]). Entries are leaked: one per record type for the process's
/// lifetime. Failed builds are not cached and are retried (and fail again) on the next call.
fn registry_codec(
    name: &'static str,
    schema_json: &'static str,
) -> Result<&'static SchemaCodec, CodecError> {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    let registry = REGISTRY.get_or_init(Registry::default);
    let key = (name, schema_json);
    if let Some(codec) = registry
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
    {
        return Ok(codec);
    }
    let mut map = registry.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(codec) = map.get(&key) {
        return Ok(codec);
    }
    let codec: &'static SchemaCodec = Box::leak(Box::new(SchemaCodec::build(name, schema_json)?));
    map.insert(key, codec);
    Ok(codec)
}

/// Encodes `value` as an Avro single-object message (header + datum) into a new buffer.
///
/// Convenience over [`encode_into`]; hot paths should reuse a buffer with that instead.
pub fn encode<T: AvroRecord>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut buf = Vec::with_capacity(128);
    encode_into(value, &mut buf)?;
    Ok(buf)
}

/// Encodes `value` as an Avro single-object message into `buf`, which is cleared first, so one
/// buffer can be reused for every message on a hot path. On error `buf` is left empty.
pub fn encode_into<T: AvroRecord>(value: &T, buf: &mut Vec<u8>) -> Result<(), CodecError> {
    buf.clear();
    let codec = T::schema_codec()?;
    buf.extend_from_slice(&codec.header);
    write_body(codec, value, buf)
}

/// Appends the Avro binary datum of `value` to `buf` (which holds a header already); on
/// error `buf` is left empty. Shared by both framings.
pub(crate) fn write_body<T: AvroRecord>(
    codec: &SchemaCodec,
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), CodecError> {
    if let Err(e) = codec.writer.write_ser(buf, value) {
        buf.clear();
        return Err(CodecError::Encode {
            record: T::NAME,
            reason: e.to_string(),
        });
    }
    Ok(())
}

/// Splits a single-object message into the fingerprint from its header and the datum body.
///
/// Exists for consumers that must look at the header before choosing a type (a dead-letter
/// inspector, a topic carrying several schemas).
pub fn split_header(bytes: &[u8]) -> Result<(u64, &[u8]), CodecError> {
    if bytes.len() < HEADER_LEN || bytes[..2] != SINGLE_OBJECT_MARKER {
        return Err(CodecError::NotSingleObject);
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[2..HEADER_LEN]);
    Ok((u64::from_le_bytes(fp), &bytes[HEADER_LEN..]))
}

/// Decodes an Avro single-object message written with `T`'s schema.
///
/// Never panics on arbitrary input: a missing marker, a header naming another schema, a short
/// body, leftover bytes and invalid body bytes each come back as their own [`CodecError`].
pub fn decode<T: AvroRecord>(bytes: &[u8]) -> Result<T, CodecError> {
    let (found, body) = split_header(bytes)?;
    let codec = T::schema_codec()?;
    if found != codec.fingerprint {
        return Err(CodecError::UnknownFingerprint {
            found,
            expected: codec.fingerprint,
            record: T::NAME,
        });
    }
    read_body(codec, body)
}

/// Reads a whole datum of `T` from `body` (the bytes after either framing's header); bytes
/// left over are an error.
pub(crate) fn read_body<T: AvroRecord>(codec: &SchemaCodec, body: &[u8]) -> Result<T, CodecError> {
    let mut rest = body;
    let value = codec
        .reader
        .read_deser::<T>(&mut rest)
        .map_err(|e| classify_read_error(T::NAME, &e))?;
    if !rest.is_empty() {
        return Err(CodecError::TrailingBytes {
            record: T::NAME,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// apache-avro reports a short body as an `io::Error` of kind `UnexpectedEof` somewhere in the
/// error's source chain; everything else is a malformed body.
fn classify_read_error(record: &'static str, err: &apache_avro::Error) -> CodecError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::UnexpectedEof {
                return CodecError::Truncated { record };
            }
        }
        source = e.source();
    }
    CodecError::Malformed {
        record,
        reason: err.to_string(),
    }
}

/// The spec-correct CRC-64-AVRO fingerprint of `T`'s schema (cached after the first call).
///
/// # Panics
///
/// If `T::SCHEMA_JSON` is not a valid schema. That text is a compile-time constant (the crate's
/// own schemas are checked by its tests), so this is a programming error; use
/// [`try_fingerprint`] where a `Result` is preferred. [`encode`] and [`decode`] report the same
/// problem as [`CodecError::Schema`] instead of panicking.
pub fn fingerprint<T: AvroRecord>() -> u64 {
    match try_fingerprint::<T>() {
        Ok(fp) => fp,
        Err(e) => panic!("{}: invalid compile-time Avro schema: {e}", T::NAME),
    }
}

/// Non-panicking [`fingerprint`]: the spec-correct CRC-64-AVRO fingerprint of `T`'s schema.
pub fn try_fingerprint<T: AvroRecord>() -> Result<u64, CodecError> {
    T::schema_codec().map(SchemaCodec::fingerprint)
}
