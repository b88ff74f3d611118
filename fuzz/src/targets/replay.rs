//! The replay line parsers (NDJSON and CSV) and what replay does with a parsed line: the
//! validator, the session-boundary arithmetic on its event time, the Avro encoding.
//!
//! Structure-aware: NDJSON lines are mutated token by token (numbers at the edges of
//! `i64`/`f64`, non-finite spellings, duplicated and missing fields, deep nesting), CSV lines
//! field by field (interesting numbers, missing and extra fields, quotes and blanks).
//!
//! Properties on accepted lines: a tick with finite prices formats back to a line that
//! parses to the same tick, and its Avro encoding decodes to the same bytes.

use strikeflow_ingest::calendar::{session_boundary, session_end_after};
use strikeflow_ingest::replay::Format;
use strikeflow_ingest::validate::TickValidator;
use strikeflow_ingest::{MarketSimulator, SimulatorConfig};
use strikeflow_schemas::{decode, encode, Tick};

use crate::harness::Target;
use crate::mutate::{csv_mutation, json_mutation};
use crate::rng::Rng;

/// The fields of a tick line, for field-name mutations.
const FIELDS: &[&str] = &[
    "instrument_token",
    "exchange_ts",
    "ltp",
    "last_qty",
    "volume",
    "oi",
    "bid",
    "bid_qty",
    "ask",
    "ask_qty",
];

/// 2026-12-29 10:00 IST, a session time the boundary arithmetic compares lines against.
const SESSION_TS: i64 = 1_766_982_600_000_000;

/// One of the two line formats, fuzzed from a simulated session's lines.
pub struct ReplayTarget {
    format: Format,
    corpus: Vec<Vec<u8>>,
    validator: TickValidator,
}

impl ReplayTarget {
    /// The target for `format`.
    pub fn new(format: Format) -> Result<Self, String> {
        let mut sim =
            MarketSimulator::new(&SimulatorConfig::default()).map_err(|e| e.to_string())?;
        let validator = TickValidator::new(sim.instruments(), None);
        let corpus = (0..200)
            .map(|_| format.format(&sim.next_tick()).into_bytes())
            .collect();
        Ok(Self {
            format,
            corpus,
            validator,
        })
    }
}

impl Target for ReplayTarget {
    fn name(&self) -> &'static str {
        match self.format {
            Format::Ndjson => "replay-ndjson",
            Format::Csv => "replay-csv",
        }
    }

    fn describe(&self) -> &'static str {
        match self.format {
            Format::Ndjson => "strikeflow_ingest::replay::Format::Ndjson.parse, validation, session boundaries, Avro",
            Format::Csv => "strikeflow_ingest::replay::Format::Csv.parse, validation, session boundaries, Avro",
        }
    }

    fn corpus(&self) -> &[Vec<u8>] {
        &self.corpus
    }

    fn max_len(&self) -> usize {
        4096
    }

    fn mutate(&self, rng: &mut Rng, data: &mut Vec<u8>) {
        match self.format {
            Format::Ndjson => json_mutation(rng, data, FIELDS, self.max_len()),
            Format::Csv => csv_mutation(rng, data, FIELDS, self.max_len()),
        }
    }

    fn run(&self, input: &[u8]) -> Result<bool, String> {
        // Replay reads lines as UTF-8 strings.
        let line = String::from_utf8_lossy(input);
        let Ok(tick) = self.format.parse(&line) else {
            return Ok(false);
        };
        // What replay does with every parsed line, before and after validation.
        let _ = self.validator.check(&tick, None);
        let _ = session_boundary(SESSION_TS, tick.exchange_ts);
        let _ = session_boundary(tick.exchange_ts, SESSION_TS);
        let _ = session_end_after(tick.exchange_ts);
        let bytes = encode(&tick).map_err(|e| format!("a parsed tick does not encode: {e}"))?;
        let back =
            decode::<Tick>(&bytes).map_err(|e| format!("an encoded tick does not decode: {e}"))?;
        if encode(&back).ok().as_deref() != Some(bytes.as_slice()) {
            return Err("a tick's Avro encoding does not round-trip".to_owned());
        }
        if [tick.ltp, tick.bid, tick.ask].iter().all(|p| p.is_finite()) {
            let again = self.format.parse(&self.format.format(&tick));
            if again.as_ref() != Ok(&tick) {
                return Err(format!(
                    "{tick:?} formats to a line that parses to {again:?}"
                ));
            }
        }
        Ok(true)
    }
}
