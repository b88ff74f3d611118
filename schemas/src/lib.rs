//! Wire contract of the strikeflow pipeline: the Avro message types, their single-object codec
//! (with spec-correct schema fingerprints) and Confluent framing, the topic names, the
//! registry subjects, the schema-evolution rule and the Kafka key of an option chain.
//!
//! Every other crate depends on this one; everything is re-exported at the crate root.

pub mod analytics;
pub mod canonical;
pub mod codec;
pub mod evolution;
pub mod framing;
pub mod model;
pub mod subjects;
pub mod topics;

pub use analytics::{
    BuildUp, ChainAnalytics, IndicatorPoint, MoneynessPoint, NoIvReason, OptionSide, ReferenceKind,
    StrikeAnalytics,
};
pub use canonical::{canonical_form, rabin_fingerprint, RABIN_EMPTY};
pub use codec::{
    decode, encode, encode_into, fingerprint, split_header, try_fingerprint, AvroRecord,
    CodecError, SchemaCodec, HEADER_LEN, MAX_FIELD_BYTES, SINGLE_OBJECT_MARKER,
};
pub use evolution::{check_backward, EvolutionError};
pub use framing::{
    confluent_id, decode_any, encode_framed, encode_framed_into, Encoding, Framing, IdStatus,
    SchemaIds, CONFLUENT_HEADER_LEN, CONFLUENT_MAGIC,
};
pub use model::{
    date_from_days, days_from_date, Bar, ChainKey, ChainKeyError, Instrument, InstrumentType, Tick,
    Watermark,
};
pub use subjects::{subject_of, value_subject, SubjectSpec};
pub use topics::{TopicSpec, Topics, REFERENCE_COPY_HEADER, STRIKE_ROWS_HEADER, WATERMARK_HEADER};

/// Directory holding the `.avsc` files, for tools and tests that need the schema files
/// themselves (e.g. the fastavro contract test).
pub const AVRO_SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/avro");

/// Directory holding the last released version of each `.avsc`, which the evolution tests
/// check every schema against (see `docs/formats.md`, "Compatibility policy").
pub const RELEASED_SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/avro/released");
