//! Mutations: byte-level ones every target uses, and the structure-aware building blocks
//! (JSON tokens, CSV fields, Avro zig-zag varints, interesting numbers and strings) the
//! targets combine with their own knowledge of the format.

use crate::rng::Rng;

/// Bytes that often sit on a boundary: zero, one, sign bits, all ones, ASCII delimiters.
const INTERESTING_BYTES: [u8; 16] = [
    0x00, 0x01, 0x02, 0x7f, 0x80, 0x81, 0xfe, 0xff, b'"', b',', b'.', b'\\', b'{', b'[', b'\n',
    0xc3,
];

/// 16- and 32-bit values on boundaries, written big- or little-endian by [`byte_mutation`].
const INTERESTING_WORDS: [u32; 12] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
];

/// Numbers as text that break naive parsers: signs, overflow, underflow, non-finite
/// spellings, leading zeros, digit-group separators, non-ASCII digits, very long digit runs.
pub const INTERESTING_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "0.0",
    "-0.0",
    "1e308",
    "1e309",
    "-1e309",
    "1e-400",
    "4.9e-324",
    "2.2250738585072014e-308",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "Infinity",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967295",
    "4294967296",
    "00",
    "01",
    "1.",
    ".",
    ".5",
    "+1",
    "1e",
    "1e+",
    "--1",
    "0x10",
    "1_000",
    " 1",
    "1 ",
    "\u{0663}",
    "1.5e3",
    "123456789012345678901234567890",
    "0.000000000000000000000000000000000000000000000000001",
    "1E400000",
    "24500.05",
    "-24500.05",
];

/// String contents (already JSON-escaped where needed) that break naive handling: empty,
/// NUL, lone surrogates, escapes, wildcards, channel-like names, right-to-left marks.
pub const INTERESTING_STRINGS: &[&str] = &[
    "",
    "\\u0000",
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\\\",
    "\\\"",
    "\\x",
    "\\u12",
    "\\/",
    "*",
    "**",
    "*.*",
    ".",
    "..",
    "é",
    "\u{202e}",
    "\u{feff}",
    "\t",
    "a b",
    "bars.",
    "bars.NIFTY26DECFUT",
    "bars.NIFTY26DECFUT.5m",
    "bars.X.0m",
    "bars.X.99999999999m",
    "chain.NIFTY.2026-12-29",
    "chain.NIFTY.2026-13-99",
    "chain..2026-12-29",
    "moneyness.NIFTY.2026-12-29",
    "indicators.NIFTY26DECFUT.15m",
    "ticks.NIFTY*",
    "ticks.é",
    "HS256",
    "RS256",
    "ES256",
    "none",
];

/// Applies one random byte-level mutation to `data`; `other` is another corpus entry to
/// splice from. Never grows `data` beyond `max_len`.
pub fn byte_mutation(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8], max_len: usize) {
    let len = data.len();
    match rng.below(14) {
        0 if len > 0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            data[at] = match rng.below(3) {
                0 => rng.byte(),
                _ => *rng.pick(&INTERESTING_BYTES).unwrap_or(&0),
            };
        }
        2 => {
            let at = rng.below(len + 1);
            let n = rng.small_len(64);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            insert(data, at, &bytes);
        }
        3 => {
            let at = rng.below(len + 1);
            let b = *rng.pick(&INTERESTING_BYTES).unwrap_or(&0);
            let n = rng.small_len(256);
            insert(data, at, &vec![b; n]);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = rng.small_len(len - at);
            data.drain(at..at + n);
        }
        5 if len > 0 => {
            let from = rng.below(len);
            let n = rng.small_len(len - from);
            let chunk = data[from..from + n].to_vec();
            let at = rng.below(len + 1);
            insert(data, at, &chunk);
        }
        6 if len > 0 => data.truncate(rng.below(len)),
        7 if !other.is_empty() => {
            // Splice: our prefix, then the other input's suffix.
            let keep = rng.below(len + 1);
            let from = rng.below(other.len());
            data.truncate(keep);
            data.extend_from_slice(&other[from..]);
        }
        8 if len > 0 && !other.is_empty() => {
            let from = rng.below(other.len());
            let n = rng.small_len(other.len() - from);
            let at = rng.below(len);
            let end = (at + n).min(len);
            data.splice(at..end, other[from..from + n].iter().copied());
        }
        9 if rng.one_in(8) => {
            let n = rng.below(max_len.min(512) + 1);
            *data = (0..n).map(|_| rng.byte()).collect();
        }
        10 if len >= 2 => {
            let word = *rng.pick(&INTERESTING_WORDS).unwrap_or(&0);
            let wide = rng.one_in(2) && len >= 4;
            let bytes: Vec<u8> = match (wide, rng.one_in(2)) {
                (true, true) => word.to_be_bytes().to_vec(),
                (true, false) => word.to_le_bytes().to_vec(),
                (false, true) => (word as u16).to_be_bytes().to_vec(),
                (false, false) => (word as u16).to_le_bytes().to_vec(),
            };
            let at = rng.below(len - bytes.len() + 1);
            data[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        11 if len >= 2 => {
            let (a, b) = (rng.below(len), rng.below(len));
            data.swap(a, b);
        }
        12 if len > 0 => {
            // Arithmetic on one byte: off-by-one lengths and counts.
            let at = rng.below(len);
            let delta = rng.range(1, 35) as u8;
            data[at] = if rng.one_in(2) {
                data[at].wrapping_add(delta)
            } else {
                data[at].wrapping_sub(delta)
            };
        }
        _ => {
            if len > 0 {
                let at = rng.below(len);
                data[at] = rng.byte();
            } else {
                data.push(rng.byte());
            }
        }
    }
    data.truncate(max_len);
}

/// Inserts `bytes` at `at` (clamped to the end).
pub fn insert(data: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let at = at.min(data.len());
    data.splice(at..at, bytes.iter().copied());
}

/// Replaces `data[start..end]` with `bytes`.
pub fn replace(data: &mut Vec<u8>, start: usize, end: usize, bytes: &[u8]) {
    let end = end.min(data.len());
    let start = start.min(end);
    data.splice(start..end, bytes.iter().copied());
}

/// What a JSON token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A string literal, quotes included.
    Str,
    /// A number.
    Num,
    /// `true`, `false`, `null` or any other bare word.
    Word,
    /// One of `{}[]:,`.
    Punct(u8),
}

/// One token of a JSON text: its kind and byte range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Its kind.
    pub kind: TokenKind,
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
}

/// Splits JSON-like text into tokens, tolerating anything (a mutated input is rarely JSON):
/// unknown bytes are skipped, an unterminated string runs to the end.
pub fn json_tokens(text: &[u8]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        let start = i;
        let kind = match c {
            b'"' => {
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    i += if text[i] == b'\\' { 2 } else { 1 };
                }
                i = (i + 1).min(text.len());
                TokenKind::Str
            }
            b'-' | b'0'..=b'9' => {
                while i < text.len()
                    && matches!(text[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                TokenKind::Num
            }
            b'a'..=b'z' | b'A'..=b'Z' => {
                while i < text.len() && text[i].is_ascii_alphanumeric() {
                    i += 1;
                }
                TokenKind::Word
            }
            b'{' | b'}' | b'[' | b']' | b':' | b',' => {
                i += 1;
                TokenKind::Punct(c)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens
}

/// A random JSON value as text: scalars at the edges of their types, containers, deep
/// nesting, or a word from `dictionary`.
pub fn json_value(rng: &mut Rng, dictionary: &[&str]) -> String {
    match rng.below(10) {
        0 => (*rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0")).to_owned(),
        1 => format!("\"{}\"", rng.pick(INTERESTING_STRINGS).unwrap_or(&"")),
        2 => format!("\"{}\"", rng.pick(dictionary).unwrap_or(&"")),
        3 => (*rng
            .pick(&["null", "true", "false", "{}", "[]", "[null]", "{\"\":0}"])
            .unwrap_or(&"null"))
        .to_owned(),
        4 => {
            let depth = *rng
                .pick(&[2usize, 64, 127, 128, 129, 1000, 5000])
                .unwrap_or(&2);
            format!("{}{}", "[".repeat(depth), "]".repeat(depth))
        }
        5 => {
            let depth = *rng.pick(&[2usize, 64, 128, 1000]).unwrap_or(&2);
            format!("{}0{}", "{\"a\":".repeat(depth), "}".repeat(depth))
        }
        6 => format!("\"{}\"", "A".repeat(rng.range(100, 70_000))),
        7 => format!(
            "{{\"epoch\":\"{}\",\"seq\":{}}}",
            rng.pick(INTERESTING_STRINGS).unwrap_or(&""),
            rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0")
        ),
        8 => format!("[{}]", rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0")),
        _ => (*rng.pick(dictionary).unwrap_or(&"null")).to_owned(),
    }
}

/// Applies one token-level mutation to JSON-like text: replace a number, string or any
/// value, delete, duplicate or swap tokens, wrap a value in deep nesting, or insert a
/// dictionary word (field names, ops, channel names). Never grows beyond `max_len`.
pub fn json_mutation(rng: &mut Rng, data: &mut Vec<u8>, dictionary: &[&str], max_len: usize) {
    let tokens = json_tokens(data);
    if tokens.is_empty() {
        let value = json_value(rng, dictionary);
        insert(data, 0, value.as_bytes());
        data.truncate(max_len);
        return;
    }
    let pick = |rng: &mut Rng, want: Option<TokenKind>| -> Option<Token> {
        let candidates: Vec<&Token> = tokens
            .iter()
            .filter(|t| want.is_none_or(|k| t.kind == k))
            .collect();
        rng.pick(&candidates).map(|t| **t)
    };
    match rng.below(10) {
        0 => {
            if let Some(t) = pick(rng, Some(TokenKind::Num)) {
                let n = rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0");
                replace(data, t.start, t.end, n.as_bytes());
            }
        }
        1 => {
            if let Some(t) = pick(rng, Some(TokenKind::Str)) {
                let s = match rng.below(3) {
                    0 => rng.pick(dictionary).unwrap_or(&""),
                    _ => rng.pick(INTERESTING_STRINGS).unwrap_or(&""),
                };
                replace(data, t.start, t.end, format!("\"{s}\"").as_bytes());
            }
        }
        2 | 3 => {
            let value_like: Vec<&Token> = tokens
                .iter()
                .filter(|t| !matches!(t.kind, TokenKind::Punct(_)))
                .collect();
            if let Some(t) = rng.pick(&value_like).map(|t| **t) {
                let value = json_value(rng, dictionary);
                replace(data, t.start, t.end, value.as_bytes());
            }
        }
        4 => {
            if let Some(t) = pick(rng, None) {
                replace(data, t.start, t.end, b"");
            }
        }
        5 => {
            // Duplicate a run of tokens (a key/value pair, an element).
            let i = rng.below(tokens.len());
            let j = (i + rng.range(1, 4)).min(tokens.len() - 1);
            let chunk = data[tokens[i].start..tokens[j].end].to_vec();
            let at = tokens[rng.below(tokens.len())].start;
            insert(data, at, &chunk);
        }
        6 => {
            let (a, b) = (pick(rng, None), pick(rng, None));
            if let (Some(a), Some(b)) = (a, b) {
                let (first, second) = if a.start <= b.start { (a, b) } else { (b, a) };
                if first.end <= second.start {
                    let x = data[first.start..first.end].to_vec();
                    let y = data[second.start..second.end].to_vec();
                    replace(data, second.start, second.end, &x);
                    replace(data, first.start, first.end, &y);
                }
            }
        }
        7 => {
            if let Some(t) = pick(rng, None) {
                let depth = *rng.pick(&[1usize, 127, 128, 129, 3000]).unwrap_or(&1);
                let value = data[t.start..t.end].to_vec();
                let mut wrapped = "[".repeat(depth).into_bytes();
                wrapped.extend_from_slice(&value);
                wrapped.extend_from_slice("]".repeat(depth).as_bytes());
                replace(data, t.start, t.end, &wrapped);
            }
        }
        8 => {
            // A new field after an opening brace or a comma.
            let openings: Vec<&Token> = tokens
                .iter()
                .filter(|t| matches!(t.kind, TokenKind::Punct(b'{' | b',')))
                .collect();
            if let Some(t) = rng.pick(&openings).map(|t| **t) {
                let key = rng.pick(dictionary).unwrap_or(&"op");
                let field = format!("\"{key}\":{},", json_value(rng, dictionary));
                insert(data, t.end, field.as_bytes());
            }
        }
        _ => {
            if let Some(t) = pick(rng, Some(TokenKind::Punct(b':'))).or_else(|| pick(rng, None)) {
                let p = rng
                    .pick(&[&b"{"[..], b"}", b"[", b"]", b":", b",", b"", b"::", b",,"])
                    .copied()
                    .unwrap_or(b"");
                replace(data, t.start, t.end, p);
            }
        }
    }
    data.truncate(max_len);
}

/// Applies one field-level mutation to a CSV line: replace a field with an interesting
/// number or word, delete, duplicate or swap fields, add quotes, blanks or a line break.
pub fn csv_mutation(rng: &mut Rng, data: &mut Vec<u8>, dictionary: &[&str], max_len: usize) {
    let text = String::from_utf8_lossy(data).into_owned();
    let mut fields: Vec<String> = text.split(',').map(str::to_owned).collect();
    let n = fields.len();
    let i = rng.below(n);
    match rng.below(8) {
        0..=2 => fields[i] = (*rng.pick(INTERESTING_NUMBERS).unwrap_or(&"0")).to_owned(),
        3 => fields[i] = (*rng.pick(dictionary).unwrap_or(&"")).to_owned(),
        4 if n > 1 => {
            fields.remove(i);
        }
        5 => {
            let f = fields[i].clone();
            fields.insert(i, f);
        }
        6 => {
            let j = rng.below(n);
            fields.swap(i, j);
        }
        _ => {
            let decoration = *rng
                .pick(&["\"", " ", "\t", "\r", "\n", "\u{00a0}", "\"\"", ";"])
                .unwrap_or(&"\"");
            if rng.one_in(2) {
                fields[i].insert_str(0, decoration);
            } else {
                fields[i].push_str(decoration);
            }
        }
    }
    *data = fields.join(",").into_bytes();
    data.truncate(max_len);
}

/// Appends `value` as an Avro `long` (zig-zag, then base-128 varint).
pub fn avro_long(value: i64, out: &mut Vec<u8>) {
    let mut z = ((value << 1) ^ (value >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// Reads an Avro varint at `at`: its zig-zag-decoded value and its length in bytes, or
/// `None` if the bytes end first or it runs past 10 bytes.
pub fn read_avro_long(bytes: &[u8], at: usize) -> Option<(i64, usize)> {
    let mut z: u64 = 0;
    for i in 0..10 {
        let b = *bytes.get(at + i)?;
        z |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((((z >> 1) as i64) ^ -((z & 1) as i64), i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avro_varints_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 64, 1 << 31, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            avro_long(v, &mut out);
            assert_eq!(read_avro_long(&out, 0), Some((v, out.len())));
        }
    }

    #[test]
    fn json_tokens_cover_a_request() {
        let kinds: Vec<TokenKind> = json_tokens(br#"{"op":"subscribe","seq":-12.5e3,"x":null}"#)
            .iter()
            .map(|t| t.kind)
            .collect();
        assert_eq!(kinds.len(), 13);
        assert_eq!(kinds[7], TokenKind::Num);
        assert_eq!(kinds[11], TokenKind::Word);
    }

    #[test]
    fn mutations_respect_the_size_bound() {
        let mut rng = Rng::new(3);
        for _ in 0..2_000 {
            let mut data = br#"{"op":"subscribe","channel":"bars.X"}"#.to_vec();
            byte_mutation(&mut rng, &mut data, b"abc", 64);
            json_mutation(&mut rng, &mut data, &["op"], 64);
            csv_mutation(&mut rng, &mut data, &["x"], 64);
            assert!(data.len() <= 64);
        }
    }
}
