//! The Avro single-object decoder, one target per record type.
//!
//! Structure-aware: the mutator walks the message with the record's own schema (read from
//! its `.avsc` text) and knows where every varint (int, long, string and bytes length, union
//! and enum index, array and map block count) and every double sits, so it can put an
//! oversized or negative length, an out-of-range union branch, an overlong varint or a NaN
//! exactly where the decoder reads one.
//!
//! Property on accepted inputs: the decoded value re-encodes, and that encoding decodes and
//! re-encodes to the same bytes (decode ∘ encode is the identity on our own encodings).

use std::collections::HashMap;
use std::marker::PhantomData;

use serde_json::Value;
use strikeflow_schemas::{
    confluent_id, decode_any, encode_framed, AvroRecord, Framing, SchemaIds, CONFLUENT_HEADER_LEN,
    CONFLUENT_MAGIC, HEADER_LEN, MAX_FIELD_BYTES,
};

/// The schema id the Confluent-framed half of each corpus carries (resolved to the target's
/// own record in its [`SchemaIds`]); any other id must be refused, not guessed.
const FUZZ_SCHEMA_ID: u32 = 1;

/// Length of the header `data` starts with: Confluent's 5 bytes after its magic byte, the
/// single-object 10 otherwise.
fn header_len(data: &[u8]) -> usize {
    if data.first() == Some(&CONFLUENT_MAGIC) {
        CONFLUENT_HEADER_LEN
    } else {
        HEADER_LEN
    }
}

use crate::harness::{Target, ALLOC_BASE, ALLOC_PER_INPUT_BYTE};
use crate::mutate::{avro_long, read_avro_long, replace};
use crate::rng::Rng;

/// The shape of an Avro schema, as far as the byte layout goes.
#[derive(Debug, Clone)]
enum Ty {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Record(Vec<Ty>),
    Enum(usize),
    Array(Box<Ty>),
    Map(Box<Ty>),
    Union(Vec<Ty>),
    Fixed(usize),
}

/// Parses the JSON schema text into its layout (named types are resolved by full or short
/// name; our schemas define each before use).
fn parse_schema(v: &Value, namespace: &str, names: &mut HashMap<String, Ty>) -> Result<Ty, String> {
    match v {
        Value::String(s) => primitive(s)
            .or_else(|| names.get(s.as_str()).cloned())
            .or_else(|| names.get(&format!("{namespace}.{s}")).cloned())
            .ok_or_else(|| format!("unknown type {s}")),
        Value::Array(branches) => Ok(Ty::Union(
            branches
                .iter()
                .map(|b| parse_schema(b, namespace, names))
                .collect::<Result<_, _>>()?,
        )),
        Value::Object(o) => {
            let kind = o.get("type").ok_or("type without \"type\"")?;
            let Value::String(kind) = kind else {
                return parse_schema(kind, namespace, names);
            };
            let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
            let ns = o
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let ty = match kind.as_str() {
                "record" => {
                    let fields = o
                        .get("fields")
                        .and_then(Value::as_array)
                        .ok_or("record without fields")?;
                    Ty::Record(
                        fields
                            .iter()
                            .map(|f| parse_schema(f.get("type").unwrap_or(&Value::Null), ns, names))
                            .collect::<Result<_, _>>()?,
                    )
                }
                "enum" => Ty::Enum(
                    o.get("symbols")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len),
                ),
                "array" => Ty::Array(Box::new(parse_schema(
                    o.get("items").unwrap_or(&Value::Null),
                    ns,
                    names,
                )?)),
                "map" => Ty::Map(Box::new(parse_schema(
                    o.get("values").unwrap_or(&Value::Null),
                    ns,
                    names,
                )?)),
                "fixed" => Ty::Fixed(o.get("size").and_then(Value::as_u64).unwrap_or(0) as usize),
                other => return primitive(other).ok_or_else(|| format!("unknown type {other}")),
            };
            if !name.is_empty() {
                names.insert(name.to_owned(), ty.clone());
                names.insert(format!("{ns}.{name}"), ty.clone());
            }
            Ok(ty)
        }
        _ => Err(format!("not a schema: {v}")),
    }
}

fn primitive(s: &str) -> Option<Ty> {
    Some(match s {
        "null" => Ty::Null,
        "boolean" => Ty::Boolean,
        "int" => Ty::Int,
        "long" => Ty::Long,
        "float" => Ty::Float,
        "double" => Ty::Double,
        "bytes" => Ty::Bytes,
        "string" => Ty::Str,
        _ => return None,
    })
}

/// What sits at a marked position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// An int or long value.
    Number,
    /// A string or bytes length, or an array/map block's byte size.
    Length,
    /// A union branch or enum symbol index, with the number of branches or symbols.
    Index(usize),
    /// An array or map block's item count.
    Count,
    /// A float or double.
    Real,
    /// A string's bytes.
    Text,
}

/// A marked span of the message.
#[derive(Debug, Clone, Copy)]
struct Span {
    mark: Mark,
    at: usize,
    len: usize,
}

/// Walks `ty` over `b` from `pos`, recording every span; `None` where the bytes stop
/// matching the schema (the spans found so far stay useful).
fn walk(ty: &Ty, b: &[u8], pos: usize, spans: &mut Vec<Span>) -> Option<usize> {
    let varint = |mark: Mark, spans: &mut Vec<Span>| {
        let (v, len) = read_avro_long(b, pos)?;
        spans.push(Span { mark, at: pos, len });
        Some((v, pos + len))
    };
    match ty {
        Ty::Null => Some(pos),
        Ty::Boolean => (pos < b.len()).then_some(pos + 1),
        Ty::Int | Ty::Long => varint(Mark::Number, spans).map(|(_, end)| end),
        Ty::Float | Ty::Double => {
            let len = if matches!(ty, Ty::Float) { 4 } else { 8 };
            (pos + len <= b.len()).then(|| {
                spans.push(Span {
                    mark: Mark::Real,
                    at: pos,
                    len,
                });
                pos + len
            })
        }
        Ty::Bytes | Ty::Str => {
            let (n, start) = varint(Mark::Length, spans)?;
            let n = usize::try_from(n).ok()?;
            let end = start.checked_add(n).filter(|&e| e <= b.len())?;
            spans.push(Span {
                mark: Mark::Text,
                at: start,
                len: n,
            });
            Some(end)
        }
        Ty::Record(fields) => fields.iter().try_fold(pos, |at, f| walk(f, b, at, spans)),
        Ty::Enum(n) => varint(Mark::Index(*n), spans).map(|(_, end)| end),
        Ty::Union(branches) => {
            let (i, at) = varint(Mark::Index(branches.len()), spans)?;
            walk(branches.get(usize::try_from(i).ok()?)?, b, at, spans)
        }
        Ty::Fixed(n) => (pos + n <= b.len()).then_some(pos + n),
        Ty::Array(item) | Ty::Map(item) => {
            let mut at = pos;
            loop {
                let (count, len) = read_avro_long(b, at)?;
                spans.push(Span {
                    mark: Mark::Count,
                    at,
                    len,
                });
                at += len;
                if count == 0 {
                    return Some(at);
                }
                if count < 0 {
                    let (_, len) = read_avro_long(b, at)?;
                    spans.push(Span {
                        mark: Mark::Length,
                        at,
                        len,
                    });
                    at += len;
                }
                let count = usize::try_from(count.unsigned_abs()).ok()?;
                if count > b.len() - at {
                    return None;
                }
                for _ in 0..count {
                    if matches!(ty, Ty::Map(_)) {
                        at = walk(&Ty::Str, b, at, spans)?;
                    }
                    at = walk(item, b, at, spans)?;
                }
            }
        }
    }
}

/// Varints that break length and index handling: negatives, zero, 1 MiB, 512 MiB (the
/// Avro library's default allocation cap) and beyond, `i32`/`i64` edges.
const INTERESTING_LONGS: [i64; 18] = [
    -1,
    -2,
    0,
    1,
    0x3f,
    0x40,
    1 << 20,
    (1 << 29) - 1,
    1 << 29,
    (1 << 29) + 1,
    i32::MAX as i64,
    i32::MAX as i64 + 1,
    i32::MIN as i64 - 1,
    1 << 40,
    i64::MAX,
    i64::MIN,
    i64::MAX - 1,
    -(1 << 40),
];

/// Doubles at the edges: NaN (quiet and signalling), infinities, -0, subnormals, extremes.
const INTERESTING_REALS: [u64; 8] = [
    0x7ff8_0000_0000_0000,
    0x7ff0_0000_0000_0001,
    0x7ff0_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0x8000_0000_0000_0000,
    0x0000_0000_0000_0001,
    0x7fef_ffff_ffff_ffff,
    0xffff_ffff_ffff_ffff,
];

/// The decoder of one record type, fuzzed from encodings of real values.
pub struct AvroTarget<T> {
    name: &'static str,
    layout: Ty,
    corpus: Vec<Vec<u8>>,
    /// Knows [`FUZZ_SCHEMA_ID`] as `T`, as a reader that resolved it from the registry.
    ids: SchemaIds,
    record: PhantomData<fn() -> T>,
}

impl<T: AvroRecord> AvroTarget<T> {
    /// A target for `T` named `name`, whose corpus is the encodings of `values` in both
    /// framings (single object, and Confluent with [`FUZZ_SCHEMA_ID`]).
    pub fn new(name: &'static str, values: &[T]) -> Result<Self, String> {
        let schema: Value = serde_json::from_str(T::SCHEMA_JSON).map_err(|e| e.to_string())?;
        let layout = parse_schema(&schema, "", &mut HashMap::new())?;
        let ids = SchemaIds::new();
        ids.insert_record::<T>(FUZZ_SCHEMA_ID)
            .map_err(|e| e.to_string())?;
        let framings = [
            Framing::SingleObject,
            Framing::Confluent { id: FUZZ_SCHEMA_ID },
        ];
        let corpus = values
            .iter()
            .flat_map(|v| framings.map(|f| encode_framed(v, f).map_err(|e| e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if corpus.is_empty() {
            return Err(format!("{name}: empty corpus"));
        }
        Ok(Self {
            name,
            layout,
            corpus,
            ids,
            record: PhantomData,
        })
    }

    /// Every span of `data`'s body under the record's schema.
    fn spans(&self, data: &[u8]) -> Vec<Span> {
        let mut spans = Vec::new();
        let header = header_len(data);
        if data.len() >= header {
            let _ = walk(&self.layout, data, header, &mut spans);
        }
        spans
    }
}

impl<T: AvroRecord + Send + Sync> Target for AvroTarget<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn describe(&self) -> &'static str {
        "strikeflow_schemas::decode_any (Avro single-object and Confluent framing) and the re-encoding round trip"
    }

    fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    fn max_len(&self) -> usize {
        2048
    }

    /// The default bound plus [`MAX_FIELD_BYTES`]: apache-avro reserves a string's declared
    /// length before reading it, so a short message declaring a long string costs up to that
    /// cap (once: the read then fails). Without the cap this was 512 MiB.
    fn alloc_limit(&self, len: usize) -> u64 {
        ALLOC_PER_INPUT_BYTE * len as u64 + ALLOC_BASE + MAX_FIELD_BYTES as u64
    }

    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        let spans = self.spans(data);
        let Some(span) = rng.pick(&spans).copied() else {
            // Not even the header: damage the header instead.
            let header = header_len(data);
            if data.len() >= header {
                let at = rng.below(header);
                data[at] ^= 1 << rng.below(8);
            }
            return;
        };
        let end = span.at + span.len;
        match (span.mark, rng.below(6)) {
            (Mark::Real, _) => {
                let bits = *rng.pick(&INTERESTING_REALS).unwrap_or(&0);
                let bytes = bits.to_le_bytes();
                data[span.at..end].copy_from_slice(&bytes[..span.len]);
            }
            (Mark::Text, 0) => {
                // Invalid UTF-8 inside a string.
                let at = span.at + rng.below(span.len + 1);
                let bad = *rng
                    .pick(&[
                        &[0xffu8][..],
                        &[0xc3],
                        &[0xed, 0xa0, 0x80],
                        &[0xf4, 0x90, 0x80, 0x80],
                    ])
                    .unwrap_or(&&[0xff][..]);
                replace(data, at, (at + bad.len()).min(end), bad);
            }
            (Mark::Text, 1) => {
                // A longer string than its length says, or a huge one that says so.
                let extra = rng.range(1, 300);
                replace(data, end, end, &vec![b'A'; extra]);
            }
            (Mark::Text, _) => data.truncate(span.at + rng.below(span.len + 1)),
            (Mark::Index(n), 0 | 1) => {
                // Flip to another branch or symbol without changing what follows.
                let mut v = Vec::new();
                avro_long(rng.below(n.max(1) + 1) as i64, &mut v);
                replace(data, span.at, end, &v);
            }
            (_, 0) => {
                // A non-canonical (overlong) encoding of the same value, or a varint that
                // never ends.
                let mut v: Vec<u8> = data[span.at..end].to_vec();
                if let Some(last) = v.last_mut() {
                    *last |= 0x80;
                }
                if rng.one_in(2) {
                    v.push(0x00);
                } else {
                    v.extend(std::iter::repeat_n(0x80, rng.range(1, 12)));
                }
                replace(data, span.at, end, &v);
            }
            (_, 1) => data.truncate(span.at + rng.below(span.len + 1)),
            (mark, _) => {
                let value = match mark {
                    Mark::Length | Mark::Count if rng.one_in(3) => {
                        // Off by a little from the truth.
                        let cur = read_avro_long(data, span.at).map_or(0, |(v, _)| v);
                        cur.saturating_add(rng.range(0, 4) as i64 - 2)
                    }
                    Mark::Length if rng.one_in(4) => {
                        (data.len() - end) as i64 + rng.range(0, 2) as i64
                    }
                    _ => *rng.pick(&INTERESTING_LONGS).unwrap_or(&0),
                };
                let mut v = Vec::new();
                avro_long(value, &mut v);
                replace(data, span.at, end, &v);
            }
        }
    }

    fn run(&self, input: &[u8]) -> Result<bool, String> {
        let Ok(value) = decode_any::<T>(input, &self.ids) else {
            return Ok(false);
        };
        // Only the id the table knows may decode; re-encode in the input's framing.
        let framing = match confluent_id(input) {
            Some(FUZZ_SCHEMA_ID) => Framing::Confluent { id: FUZZ_SCHEMA_ID },
            Some(id) => return Err(format!("unknown schema id {id} decoded as {}", T::NAME)),
            None => Framing::SingleObject,
        };
        let first = encode_framed(&value, framing)
            .map_err(|e| format!("a decoded {} does not re-encode: {e}", T::NAME))?;
        let again = decode_any::<T>(&first, &self.ids)
            .map_err(|e| format!("a re-encoded {} does not decode: {e}", T::NAME))?;
        let second = encode_framed(&again, framing)
            .map_err(|e| format!("a re-decoded {} does not re-encode: {e}", T::NAME))?;
        if first != second {
            return Err(format!("{} re-encoding is not stable", T::NAME));
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strikeflow_schemas::Tick;

    #[test]
    fn the_walker_marks_every_field_of_a_tick() {
        let tick = Tick {
            instrument_token: 256_265,
            exchange_ts: 1_766_979_000_000_000,
            ltp: 24_500.5,
            last_qty: 75,
            volume: 1_000,
            oi: 10,
            bid: 24_500.0,
            bid_qty: 1,
            ask: 24_501.0,
            ask_qty: 2,
        };
        let target = AvroTarget::new("t", &[tick]).unwrap();
        let bytes = &target.corpus()[0];
        let mut spans = Vec::new();
        assert_eq!(
            walk(&target.layout, bytes, HEADER_LEN, &mut spans),
            Some(bytes.len())
        );
        assert_eq!(spans.len(), 10);
        assert_eq!(spans.iter().filter(|s| s.mark == Mark::Real).count(), 3);
    }
}
