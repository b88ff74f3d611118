//! The recorded-tick file formats: NDJSON and CSV, chosen by file extension.
//!
//! NDJSON: one JSON object per line with the fields of [`Tick`]
//! (`{"instrument_token":…,"exchange_ts":<UTC micros>,"ltp":…,"last_qty":…,"volume":…,
//! "oi":…,"bid":…,"bid_qty":…,"ask":…,"ask_qty":…}`).
//! CSV: a header line with the same field names, then one tick per line.
//! Prices are rupees, `exchange_ts` is microseconds since the Unix epoch (UTC).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use strikeflow_schemas::Tick;

/// Which of the two formats a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Ndjson,
    /// Comma-separated with a header line.
    Csv,
}

/// The field order of the CSV format (and its header line).
pub const CSV_HEADER: &str =
    "instrument_token,exchange_ts,ltp,last_qty,volume,oi,bid,bid_qty,ask,ask_qty";

/// A recording or replay file problem.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The extension names neither format.
    #[error("{0}: unknown recording format (use .ndjson, .jsonl or .csv)")]
    UnknownFormat(PathBuf),
    /// The CSV header is not [`CSV_HEADER`].
    #[error("{path}: the CSV header must be `{CSV_HEADER}`")]
    BadHeader {
        /// The file.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

impl Format {
    /// The format a path's extension names.
    pub fn of(path: &Path) -> Result<Self, FormatError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("ndjson" | "jsonl") => Ok(Self::Ndjson),
            Some("csv") => Ok(Self::Csv),
            _ => Err(FormatError::UnknownFormat(path.to_owned())),
        }
    }

    /// Parses one data line.
    pub fn parse(self, line: &str) -> Result<Tick, String> {
        match self {
            Self::Ndjson => serde_json::from_str(line).map_err(|e| e.to_string()),
            Self::Csv => parse_csv(line),
        }
    }

    /// Formats one tick as a data line (no newline).
    pub fn format(self, tick: &Tick) -> String {
        match self {
            // Serialising a plain struct of numbers cannot fail; an empty line would be
            // reported as malformed on replay rather than silently skipped.
            Self::Ndjson => serde_json::to_string(tick).unwrap_or_default(),
            Self::Csv => format!(
                "{},{},{},{},{},{},{},{},{},{}",
                tick.instrument_token,
                tick.exchange_ts,
                tick.ltp,
                tick.last_qty,
                tick.volume,
                tick.oi,
                tick.bid,
                tick.bid_qty,
                tick.ask,
                tick.ask_qty
            ),
        }
    }
}

fn parse_csv(line: &str) -> Result<Tick, String> {
    let fields: Vec<&str> = line.split(',').map(str::trim).collect();
    if fields.len() != 10 {
        return Err(format!("expected 10 fields, found {}", fields.len()));
    }
    let int = |i: usize| {
        fields[i]
            .parse::<i64>()
            .map_err(|e| format!("field {} ({:?}): {e}", i + 1, fields[i]))
    };
    let float = |i: usize| {
        fields[i]
            .parse::<f64>()
            .map_err(|e| format!("field {} ({:?}): {e}", i + 1, fields[i]))
    };
    Ok(Tick {
        instrument_token: int(0)?,
        exchange_ts: int(1)?,
        ltp: float(2)?,
        last_qty: int(3)?,
        volume: int(4)?,
        oi: int(5)?,
        bid: float(6)?,
        bid_qty: int(7)?,
        ask: float(8)?,
        ask_qty: int(9)?,
    })
}

/// Writes ticks to a recording, in the format its extension names.
pub struct TickRecorder {
    path: PathBuf,
    format: Format,
    out: BufWriter<File>,
}

impl TickRecorder {
    /// Creates (truncates) the file and writes the CSV header if needed.
    pub fn create(path: &Path) -> Result<Self, FormatError> {
        let format = Format::of(path)?;
        let io = |source| FormatError::Io {
            path: path.to_owned(),
            source,
        };
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        if format == Format::Csv {
            writeln!(out, "{CSV_HEADER}").map_err(io)?;
        }
        Ok(Self {
            path: path.to_owned(),
            format,
            out,
        })
    }

    /// Appends one tick.
    pub fn record(&mut self, tick: &Tick) -> Result<(), FormatError> {
        writeln!(self.out, "{}", self.format.format(tick)).map_err(|source| FormatError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes buffered lines to the file.
    pub fn finish(mut self) -> Result<(), FormatError> {
        self.out.flush().map_err(|source| FormatError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Opens a recording for reading: its format and its lines after any header.
pub fn open(path: &Path) -> Result<(Format, std::io::Lines<BufReader<File>>), FormatError> {
    let format = Format::of(path)?;
    let io = |source| FormatError::Io {
        path: path.to_owned(),
        source,
    };
    let mut lines = BufReader::new(File::open(path).map_err(io)?).lines();
    if format == Format::Csv {
        let header = lines.next().transpose().map_err(io)?.unwrap_or_default();
        if header.trim() != CSV_HEADER {
            return Err(FormatError::BadHeader {
                path: path.to_owned(),
            });
        }
    }
    Ok((format, lines))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::{MarketSimulator, SimulatorConfig};

    #[test]
    fn both_formats_round_trip_exactly() {
        let mut sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        for _ in 0..500 {
            let tick = sim.next_tick();
            for format in [Format::Ndjson, Format::Csv] {
                assert_eq!(
                    format.parse(&format.format(&tick)),
                    Ok(tick.clone()),
                    "{format:?}"
                );
            }
        }
    }

    #[test]
    fn malformed_lines_say_what_is_wrong() {
        assert!(Format::Csv
            .parse("1,2,3")
            .unwrap_err()
            .contains("expected 10 fields"));
        assert!(Format::Csv
            .parse("1,x,3,4,5,6,7,8,9,10")
            .unwrap_err()
            .contains("field 2"));
        assert!(Format::Ndjson
            .parse("{\"ltp\": 1}")
            .unwrap_err()
            .contains("missing field"));
        assert!(Format::of(Path::new("ticks.parquet")).is_err());
    }
}
