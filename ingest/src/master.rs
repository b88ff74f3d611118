//! The instrument master in Kite's CSV format, read and written.
//!
//! Columns: `instrument_token, exchange_token, tradingsymbol, name, last_price, expiry,
//! strike, tick_size, lot_size, instrument_type, segment, exchange`. Lot sizes and tick
//! sizes always come from here, never from code.

use std::io::{Read, Write};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use strikeflow_schemas::{date_from_days, days_from_date, Instrument, InstrumentType};

/// A master row that could not be used, with its line number for the operator.
#[derive(Debug, Clone, PartialEq)]
pub struct RowError {
    /// 1-based line in the file (the header is line 1).
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// The outcome of reading a master: every good row, and every bad one with its reason.
/// Bad rows are skipped whole, never half-loaded.
#[derive(Debug, Clone, Default)]
pub struct Master {
    /// Instruments from the well-formed rows, in file order.
    pub instruments: Vec<Instrument>,
    /// Rows that were skipped.
    pub errors: Vec<RowError>,
}

/// Reading the file itself failed (not a bad row: those are in [`Master::errors`]).
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    /// The CSV could not be read at all (I/O, or no usable header).
    #[error("reading the instrument master: {0}")]
    Csv(#[from] csv::Error),
    /// Writing failed.
    #[error("writing the instrument master: {0}")]
    Io(#[from] std::io::Error),
    /// The master file could not be opened.
    #[error("{path}: {source}")]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Opens and reads a master file (every source that takes `--instruments FILE` uses this).
pub fn load_master_file(path: &std::path::Path) -> Result<Master, MasterError> {
    let file = std::fs::File::open(path).map_err(|source| MasterError::Open {
        path: path.to_owned(),
        source,
    })?;
    read_master(std::io::BufReader::new(file))
}

#[derive(Debug, Deserialize, Serialize)]
struct Row {
    instrument_token: i64,
    exchange_token: i64,
    tradingsymbol: String,
    name: String,
    last_price: f64,
    expiry: String,
    strike: f64,
    tick_size: f64,
    lot_size: i32,
    instrument_type: String,
    segment: String,
    exchange: String,
}

/// Kite names index rows by the index ("NIFTY 50"); derivatives name the underlying
/// ("NIFTY"). Chains are keyed by the underlying, so index names map onto it (and back when
/// a master is written).
const INDEX_UNDERLYINGS: [(&str, &str); 5] = [
    ("NIFTY 50", "NIFTY"),
    ("NIFTY BANK", "BANKNIFTY"),
    ("NIFTY FIN SERVICE", "FINNIFTY"),
    ("NIFTY MID SELECT", "MIDCPNIFTY"),
    ("SENSEX", "SENSEX"),
];

fn underlying_of_index(name: &str) -> &str {
    INDEX_UNDERLYINGS
        .iter()
        .find(|(index, _)| *index == name)
        .map_or(name, |(_, u)| u)
}

fn index_name_of(underlying: &str) -> &str {
    INDEX_UNDERLYINGS
        .iter()
        .find(|(_, u)| *u == underlying)
        .map_or(underlying, |(index, _)| index)
}

fn instrument(row: Row) -> Result<Instrument, String> {
    let instrument_type = match row.instrument_type.as_str() {
        "EQ" => InstrumentType::EQ,
        "FUT" => InstrumentType::FUT,
        "CE" => InstrumentType::CE,
        "PE" => InstrumentType::PE,
        other => return Err(format!("unknown instrument_type {other:?}")),
    };
    let expiry = match row.expiry.trim() {
        "" => None,
        text => Some(
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map_err(|e| format!("expiry {text:?} is not YYYY-MM-DD: {e}"))?,
        ),
    };
    for (field, value) in [
        ("last_price", row.last_price),
        ("strike", row.strike),
        ("tick_size", row.tick_size),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(format!(
                "{field} must be a finite, non-negative number, got {value}"
            ));
        }
    }
    let derivative = matches!(
        instrument_type,
        InstrumentType::FUT | InstrumentType::CE | InstrumentType::PE
    );
    if derivative && expiry.is_none() {
        return Err("a derivative needs an expiry".into());
    }
    if matches!(instrument_type, InstrumentType::CE | InstrumentType::PE) && row.strike <= 0.0 {
        return Err(format!(
            "an option needs a positive strike, got {}",
            row.strike
        ));
    }
    if derivative && (row.tick_size <= 0.0 || row.lot_size <= 0) {
        return Err("a derivative needs a positive tick_size and lot_size".into());
    }
    for (field, value) in [
        ("last_price", row.last_price),
        ("strike", row.strike),
        ("tick_size", row.tick_size),
    ] {
        if !value.is_finite() || value < 0.0 {
            return Err(format!(
                "{field} must be a finite, non-negative number, got {value}"
            ));
        }
    }
    if row.tradingsymbol.trim().is_empty() || row.name.trim().is_empty() {
        return Err("tradingsymbol and name must not be empty".into());
    }
    let name = if row.segment == "INDICES" {
        underlying_of_index(&row.name).to_owned()
    } else {
        row.name
    };
    Ok(Instrument {
        instrument_token: row.instrument_token,
        exchange_token: row.exchange_token,
        tradingsymbol: row.tradingsymbol,
        name,
        last_price: row.last_price,
        expiry: expiry.map(days_from_date),
        strike: row.strike,
        tick_size: row.tick_size,
        lot_size: row.lot_size,
        instrument_type,
        segment: row.segment,
        exchange: row.exchange,
    })
}

/// Reads a Kite-format master. Malformed rows are reported with line numbers and skipped.
pub fn read_master(input: impl Read) -> Result<Master, MasterError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    reader.headers()?; // a file without the header row is unusable, not a bad row
    let mut master = Master::default();
    for (index, record) in reader.deserialize::<Row>().enumerate() {
        let line = record
            .as_ref()
            .err()
            .and_then(|e| e.position())
            .map_or(index as u64 + 2, |p| p.line());
        match record.map_err(|e| e.to_string()).and_then(instrument) {
            Ok(i) => master.instruments.push(i),
            Err(reason) => master.errors.push(RowError { line, reason }),
        }
    }
    Ok(master)
}

/// Writes instruments as a Kite-format master (what the simulator lists, for replay).
pub fn write_master<'a>(
    output: impl Write,
    instruments: impl IntoIterator<Item = &'a Instrument>,
) -> Result<(), MasterError> {
    let mut writer = csv::Writer::from_writer(output);
    for i in instruments {
        let (name, expiry) = if i.segment == "INDICES" {
            (index_name_of(&i.name).to_owned(), String::new())
        } else {
            (
                i.name.clone(),
                i.expiry
                    .and_then(date_from_days)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            )
        };
        writer.serialize(Row {
            instrument_token: i.instrument_token,
            exchange_token: i.exchange_token,
            tradingsymbol: i.tradingsymbol.clone(),
            name,
            last_price: i.last_price,
            expiry,
            strike: i.strike,
            tick_size: i.tick_size,
            lot_size: i.lot_size,
            instrument_type: format!("{:?}", i.instrument_type),
            segment: i.segment.clone(),
            exchange: i.exchange.clone(),
        })?;
    }
    writer.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::{MarketSimulator, SimulatorConfig};

    const HEADER: &str = "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n";

    #[test]
    fn reads_good_rows_and_reports_bad_ones_by_line() {
        let csv = format!(
            "{HEADER}\
             256265,1001,NIFTY 50,NIFTY 50,24500.5,,0,0,0,EQ,INDICES,NSE\n\
             12345678,48225,NIFTY26DEC24500CE,NIFTY,0,2026-12-29,24500,0.05,65,CE,NFO-OPT,NFO\n\
             12345679,48226,NIFTY26DEC24500PE,NIFTY,0,2026-13-29,24500,0.05,65,PE,NFO-OPT,NFO\n\
             12345680,48227,NIFTY26DECFUT,NIFTY,0,2026-12-29,0,0.05,65,XX,NFO-FUT,NFO\n\
             notanumber,1,X,NIFTY,0,,0,0.05,65,EQ,NSE,NSE\n\
             12345681,48228,NIFTY26DEC0CE,NIFTY,0,2026-12-29,0,0.05,65,CE,NFO-OPT,NFO\n\
             12345682,48229,NIFTY26DECFUT,NIFTY,0,2026-12-29\n"
        );
        let master = read_master(csv.as_bytes()).unwrap();
        let tokens: Vec<i64> = master
            .instruments
            .iter()
            .map(|i| i.instrument_token)
            .collect();
        assert_eq!(tokens, vec![256_265, 12_345_678]);
        assert_eq!(
            master.instruments[0].name, "NIFTY",
            "index rows key by the underlying"
        );
        assert_eq!(master.instruments[1].lot_size, 65);
        let lines: Vec<u64> = master.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7, 8]);
        assert!(
            master.errors[0].reason.contains("expiry"),
            "{:?}",
            master.errors[0]
        );
        assert!(master.errors[1].reason.contains("instrument_type"));
        assert!(master.errors[3].reason.contains("strike"));
    }

    #[test]
    fn simulator_master_round_trips() {
        let sim = MarketSimulator::new(&SimulatorConfig::default()).unwrap();
        let mut out = Vec::new();
        write_master(&mut out, sim.instruments()).unwrap();
        let master = read_master(&out[..]).unwrap();
        assert!(master.errors.is_empty(), "{:?}", master.errors);
        assert_eq!(master.instruments, sim.instruments());
    }

    #[test]
    fn rows_under_a_foreign_header_are_reported_not_loaded() {
        let master = read_master(&b"token,symbol\n256265,NIFTY 50\n"[..]).unwrap();
        assert!(master.instruments.is_empty());
        assert_eq!(master.errors.len(), 1);
        assert_eq!(master.errors[0].line, 2);
        assert!(
            master.errors[0].reason.contains("missing field"),
            "{:?}",
            master.errors[0]
        );
    }
}
