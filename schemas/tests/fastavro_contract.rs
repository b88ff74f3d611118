//! Contract test: messages encoded by this crate must be readable by an independent Avro
//! implementation (fastavro) that resolves the writer schema by the fingerprint in the
//! single-object header, exactly as a consumer in another language would.
//!
//! Needs `STRIKEFLOW_PYTHON` pointing at a Python with fastavro installed; `./dev test` creates
//! that venv and sets it. Without it the test fails instead of silently passing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use strikeflow_schemas::{
    canonical_form, days_from_date, encode, fingerprint, AvroRecord, Bar, Instrument,
    InstrumentType, Tick, AVRO_SCHEMA_DIR,
};

/// What one field must decode to, in the integer/string/double terms of the wire.
#[derive(Debug, Clone)]
enum Expect {
    Long(i64),
    Double(f64),
    Str(String),
    Null,
}

/// The fields of a record in the form the Python side reports them.
trait Fields: AvroRecord {
    fn fields(&self) -> Vec<(&'static str, Expect)>;
}

fn symbol(t: InstrumentType) -> String {
    match t {
        InstrumentType::EQ => "EQ",
        InstrumentType::FUT => "FUT",
        InstrumentType::CE => "CE",
        InstrumentType::PE => "PE",
    }
    .to_owned()
}

impl Fields for Instrument {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        vec![
            ("instrument_token", Long(self.instrument_token)),
            ("exchange_token", Long(self.exchange_token)),
            ("tradingsymbol", Str(self.tradingsymbol.clone())),
            ("name", Str(self.name.clone())),
            ("last_price", Double(self.last_price)),
            ("expiry", self.expiry.map_or(Null, |d| Long(d.into()))),
            ("strike", Double(self.strike)),
            ("tick_size", Double(self.tick_size)),
            ("lot_size", Long(self.lot_size.into())),
            ("instrument_type", Str(symbol(self.instrument_type))),
            ("segment", Str(self.segment.clone())),
            ("exchange", Str(self.exchange.clone())),
        ]
    }
}

impl Fields for Tick {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        vec![
            ("instrument_token", Long(self.instrument_token)),
            ("exchange_ts", Long(self.exchange_ts)),
            ("ltp", Double(self.ltp)),
            ("last_qty", Long(self.last_qty)),
            ("volume", Long(self.volume)),
            ("oi", Long(self.oi)),
            ("bid", Double(self.bid)),
            ("bid_qty", Long(self.bid_qty)),
            ("ask", Double(self.ask)),
            ("ask_qty", Long(self.ask_qty)),
        ]
    }
}

impl Fields for Bar {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        vec![
            ("instrument_token", Long(self.instrument_token)),
            ("window_start", Long(self.window_start)),
            ("window_end", Long(self.window_end)),
            ("open", Double(self.open)),
            ("high", Double(self.high)),
            ("low", Double(self.low)),
            ("close", Double(self.close)),
            ("volume", Long(self.volume)),
            ("oi", Long(self.oi)),
            ("tick_count", Long(self.tick_count.into())),
        ]
    }
}

fn date(y: i32, m: u32, d: u32) -> i32 {
    days_from_date(chrono::NaiveDate::from_ymd_opt(y, m, d).expect("valid date"))
}

fn instruments() -> Vec<Instrument> {
    let option = Instrument {
        instrument_token: 12_345_602,
        exchange_token: 48_225,
        tradingsymbol: "NIFTY26DEC24500CE".into(),
        name: "NIFTY".into(),
        last_price: 312.45,
        expiry: Some(date(2026, 12, 29)),
        strike: 24_500.0,
        tick_size: 0.05,
        lot_size: 65,
        instrument_type: InstrumentType::CE,
        segment: "NFO-OPT".into(),
        exchange: "NFO".into(),
    };
    vec![
        option.clone(),
        Instrument {
            instrument_token: 12_345_858,
            tradingsymbol: "BANKNIFTY26DEC52000PE".into(),
            name: "BANKNIFTY".into(),
            strike: 52_000.0,
            lot_size: 30,
            instrument_type: InstrumentType::PE,
            last_price: 0.0,
            ..option.clone()
        },
        Instrument {
            instrument_token: 13_238_786,
            tradingsymbol: "NIFTY26DECFUT".into(),
            strike: 0.0,
            instrument_type: InstrumentType::FUT,
            segment: "NFO-FUT".into(),
            ..option.clone()
        },
        Instrument {
            instrument_token: 256_265,
            exchange_token: 1001,
            tradingsymbol: "NIFTY 50".into(),
            name: "NIFTY".into(),
            last_price: 24_512.3,
            expiry: None,
            strike: 0.0,
            tick_size: 0.0,
            lot_size: 0,
            instrument_type: InstrumentType::EQ,
            segment: "INDICES".into(),
            exchange: "NSE".into(),
        },
        // Edge values: pre-epoch and far dates, extreme integers, non-ASCII text, empty strings.
        Instrument {
            instrument_token: i64::MIN,
            exchange_token: i64::MAX,
            tradingsymbol: "ニフティ \"q\" \\ é\u{1F4C8}".into(),
            name: String::new(),
            last_price: -0.0,
            expiry: Some(date(1969, 12, 31)),
            strike: f64::MAX,
            tick_size: f64::MIN_POSITIVE,
            lot_size: i32::MIN,
            instrument_type: InstrumentType::PE,
            segment: String::new(),
            exchange: "x".repeat(300),
        },
        Instrument {
            expiry: Some(date(9999, 12, 31)),
            lot_size: i32::MAX,
            strike: f64::INFINITY,
            last_price: 5e-324,
            ..option
        },
    ]
}

fn ticks() -> Vec<Tick> {
    let t = Tick {
        instrument_token: 12_345_602,
        exchange_ts: 1_798_518_600_123_456, // 2026-12-29T04:30:00.123456Z (10:00 IST)
        ltp: 312.45,
        last_qty: 65,
        volume: 1_234_500,
        oi: 9_876_500,
        bid: 312.4,
        bid_qty: 650,
        ask: 312.5,
        ask_qty: 1300,
    };
    vec![
        t.clone(),
        Tick {
            instrument_token: 256_265,
            ltp: 24_512.35,
            last_qty: 0,
            volume: 0,
            oi: 0,
            bid: 0.0,
            bid_qty: 0,
            ask: 0.0,
            ask_qty: 0,
            ..t.clone()
        },
        Tick {
            exchange_ts: 0,
            ltp: 0.1 + 0.2,
            volume: i64::MAX,
            oi: i64::MIN,
            bid: f64::NEG_INFINITY,
            ask: 1e300,
            ..t.clone()
        },
        Tick {
            exchange_ts: -1, // 1969-12-31T23:59:59.999999Z
            ltp: -1.5,
            ..t
        },
    ]
}

fn bars() -> Vec<Bar> {
    let b = Bar {
        instrument_token: 12_345_602,
        window_start: 1_798_518_600_000_000,
        window_end: 1_798_518_660_000_000,
        open: 310.0,
        high: 315.55,
        low: 309.05,
        close: 312.45,
        volume: 84_500,
        oi: 9_876_500,
        tick_count: 412,
    };
    vec![
        b.clone(),
        Bar {
            tick_count: 1,
            volume: 0,
            open: 24_512.35,
            high: 24_512.35,
            low: 24_512.35,
            close: 24_512.35,
            ..b.clone()
        },
        Bar {
            window_start: -60_000_000,
            window_end: 0,
            tick_count: i32::MAX,
            oi: i64::MIN,
            ..b
        },
    ]
}

fn python() -> String {
    match std::env::var("STRIKEFLOW_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "STRIKEFLOW_PYTHON is not set. This contract test decodes our Avro bytes with fastavro \
             and must not be skipped: run `./dev test` (it creates the venv with fastavro and sets \
             STRIKEFLOW_PYTHON), or set STRIKEFLOW_PYTHON to a Python that has fastavro installed."
        ),
    }
}

fn scratch_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("fastavro-contract-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// One encoded message waiting to be checked: its file and the fields it must decode to.
struct Written {
    file: PathBuf,
    record: &'static str,
    fields: Vec<(&'static str, Expect)>,
}

fn write_all<T: Fields>(dir: &Path, values: &[T], out: &mut Vec<Written>) {
    for (i, v) in values.iter().enumerate() {
        let file = dir.join(format!("{}-{i}.bin", T::NAME));
        std::fs::write(&file, encode(v).expect("encode")).expect("write message file");
        out.push(Written {
            file,
            record: T::NAME,
            fields: v.fields(),
        });
    }
}

fn check_field(ctx: &str, expected: &Expect, actual: Option<&Value>) {
    let actual = actual.unwrap_or_else(|| panic!("{ctx}: missing in fastavro output"));
    match expected {
        Expect::Long(n) => assert_eq!(actual.as_i64(), Some(*n), "{ctx}: got {actual}"),
        Expect::Str(s) => assert_eq!(actual.as_str(), Some(s.as_str()), "{ctx}: got {actual}"),
        Expect::Null => assert!(actual.is_null(), "{ctx}: expected null, got {actual}"),
        Expect::Double(x) => {
            let text = actual
                .as_str()
                .unwrap_or_else(|| panic!("{ctx}: expected a repr string, got {actual}"));
            let got: f64 = text
                .parse()
                .unwrap_or_else(|e| panic!("{ctx}: {text:?} is not a double: {e}"));
            assert_eq!(
                got.to_bits(),
                x.to_bits(),
                "{ctx}: expected {x:?}, got {text}"
            );
        }
    }
}

#[test]
fn fastavro_decodes_rust_encoded_messages_by_fingerprint() {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/contract/decode_avro.py");
    assert!(script.is_file(), "missing {}", script.display());

    let dir = scratch_dir();
    let mut written = Vec::new();
    write_all(&dir, &instruments(), &mut written);
    write_all(&dir, &ticks(), &mut written);
    write_all(&dir, &bars(), &mut written);

    let output = Command::new(&python)
        .arg(&script)
        .arg(AVRO_SCHEMA_DIR)
        .args(written.iter().map(|w| &w.file))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "decode_avro.py failed ({}):\n{stderr}\n{stdout}",
        output.status
    );

    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect();

    // fastavro's own canonical forms and fingerprints equal ours.
    let schemas: BTreeMap<&str, &Value> = lines
        .iter()
        .filter(|l| l["kind"] == "schema")
        .map(|l| (l["record"].as_str().expect("record name"), l))
        .collect();
    let ours = [
        (
            Instrument::NAME,
            Instrument::SCHEMA_JSON,
            fingerprint::<Instrument>(),
        ),
        (Tick::NAME, Tick::SCHEMA_JSON, fingerprint::<Tick>()),
        (Bar::NAME, Bar::SCHEMA_JSON, fingerprint::<Bar>()),
    ];
    assert_eq!(
        schemas.len(),
        ours.len(),
        "schemas seen by fastavro: {schemas:?}"
    );
    for (name, json, fp) in ours {
        let theirs = schemas
            .get(name)
            .unwrap_or_else(|| panic!("fastavro did not load {name}"));
        assert_eq!(
            theirs["fingerprint"].as_u64(),
            Some(fp),
            "{name} fingerprint"
        );
        assert_eq!(
            theirs["canonical_form"].as_str(),
            Some(canonical_form(json).expect("pcf").as_str()),
            "{name} canonical form"
        );
    }

    // Every message decoded, by fingerprint, to the record and the exact field values written.
    let messages: Vec<&Value> = lines.iter().filter(|l| l["kind"] == "message").collect();
    assert_eq!(messages.len(), written.len());
    for (w, m) in written.iter().zip(messages) {
        let ctx = w.file.display().to_string();
        assert_eq!(m["file"].as_str(), Some(ctx.as_str()));
        assert_eq!(
            m["record"].as_str(),
            Some(w.record),
            "{ctx}: resolved to the wrong schema"
        );
        let datum = m["datum"]
            .as_object()
            .unwrap_or_else(|| panic!("{ctx}: datum is not an object"));
        let mut names: Vec<&str> = datum.keys().map(String::as_str).collect();
        let mut expected_names: Vec<&str> = w.fields.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        expected_names.sort_unstable();
        assert_eq!(names, expected_names, "{ctx}: field set");
        for (name, expected) in &w.fields {
            check_field(&format!("{ctx}: {name}"), expected, datum.get(*name));
        }
    }

    let _ = std::fs::remove_dir_all(&dir);
}
