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
    canonical_form, days_from_date, encode, fingerprint, AvroRecord, Bar, BuildUp, ChainAnalytics,
    IndicatorPoint, Instrument, InstrumentType, MoneynessPoint, NoIvReason, OptionSide,
    ReferenceKind, StrikeAnalytics, Tick, Watermark, AVRO_SCHEMA_DIR,
};

/// What one field must decode to, in the integer/string/double terms of the wire.
#[derive(Debug, Clone)]
enum Expect {
    Long(i64),
    Double(f64),
    Str(String),
    Bool(bool),
    Null,
    /// An Avro map of doubles: every key present, every value bit for bit.
    DoubleMap(Vec<(String, f64)>),
}

fn opt_double(v: Option<f64>) -> Expect {
    v.map_or(Expect::Null, Expect::Double)
}

fn opt_long(v: Option<i64>) -> Expect {
    v.map_or(Expect::Null, Expect::Long)
}

fn side_symbol(s: OptionSide) -> Expect {
    Expect::Str(match s {
        OptionSide::CE => "CE".into(),
        OptionSide::PE => "PE".into(),
    })
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

impl Fields for Watermark {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        vec![
            ("event_ts", Long(self.event_ts)),
            ("source", Str(self.source.clone())),
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

impl Fields for StrikeAnalytics {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        let reason = self.no_iv_reason.map_or(Null, |r| {
            Str(match r {
                NoIvReason::BelowIntrinsic => "BELOW_INTRINSIC",
                NoIvReason::AboveMaximum => "ABOVE_MAXIMUM",
                NoIvReason::NoTwoSidedMarket => "NO_TWO_SIDED_MARKET",
                NoIvReason::Expired => "EXPIRED",
                NoIvReason::InvalidInput => "INVALID_INPUT",
                NoIvReason::NoUnderlying => "NO_UNDERLYING",
            }
            .into())
        });
        let build_up = match self.build_up {
            BuildUp::LongBuildup => "LONG_BUILDUP",
            BuildUp::ShortBuildup => "SHORT_BUILDUP",
            BuildUp::ShortCovering => "SHORT_COVERING",
            BuildUp::LongUnwinding => "LONG_UNWINDING",
            BuildUp::Neutral => "NEUTRAL",
        };
        vec![
            ("instrument_token", Long(self.instrument_token)),
            ("tradingsymbol", Str(self.tradingsymbol.clone())),
            ("underlying", Str(self.underlying.clone())),
            ("expiry", Long(self.expiry.into())),
            ("strike", Double(self.strike)),
            ("option_type", side_symbol(self.option_type)),
            ("ts", Long(self.ts)),
            ("ltp", Double(self.ltp)),
            (
                "ltp_change_prev_close",
                opt_double(self.ltp_change_prev_close),
            ),
            ("oi", Long(self.oi)),
            ("oi_change_prev_close", opt_long(self.oi_change_prev_close)),
            ("oi_change_window", opt_long(self.oi_change_window)),
            ("volume", Long(self.volume)),
            ("bid", Double(self.bid)),
            ("ask", Double(self.ask)),
            ("iv", opt_double(self.iv)),
            ("no_iv_reason", reason),
            ("delta", opt_double(self.delta)),
            ("gamma", opt_double(self.gamma)),
            ("theta", opt_double(self.theta)),
            ("vega", opt_double(self.vega)),
            ("rho", opt_double(self.rho)),
            ("build_up", Str(build_up.into())),
            ("strike_pcr", opt_double(self.strike_pcr)),
            ("gex", opt_double(self.gex)),
        ]
    }
}

impl Fields for ChainAnalytics {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        let kind = match self.reference_kind {
            ReferenceKind::Spot => "SPOT",
            ReferenceKind::Future => "FUTURE",
            ReferenceKind::ParityForward => "PARITY_FORWARD",
        };
        vec![
            ("underlying", Str(self.underlying.clone())),
            ("expiry", Long(self.expiry.into())),
            ("ts", Long(self.ts)),
            ("minute_close", Bool(self.minute_close)),
            ("time_to_expiry", Double(self.time_to_expiry)),
            ("spot", opt_double(self.spot)),
            ("future", opt_double(self.future)),
            ("parity_forward", opt_double(self.parity_forward)),
            ("reference_price", Double(self.reference_price)),
            ("reference_kind", Str(kind.into())),
            ("atm_strike", Double(self.atm_strike)),
            ("pcr_oi", opt_double(self.pcr_oi)),
            ("pcr_volume", opt_double(self.pcr_volume)),
            ("max_pain", opt_double(self.max_pain)),
            ("atm_straddle", opt_double(self.atm_straddle)),
            ("implied_move_pct", opt_double(self.implied_move_pct)),
            ("atm_iv", opt_double(self.atm_iv)),
            ("skew_25d", opt_double(self.skew_25d)),
            ("support", opt_double(self.support)),
            ("resistance", opt_double(self.resistance)),
            ("basis", opt_double(self.basis)),
            ("annualised_carry", opt_double(self.annualised_carry)),
            ("net_gex", opt_double(self.net_gex)),
            ("total_ce_oi", Long(self.total_ce_oi)),
            ("total_pe_oi", Long(self.total_pe_oi)),
            (
                "ce_oi_change_prev_close",
                opt_long(self.ce_oi_change_prev_close),
            ),
            (
                "pe_oi_change_prev_close",
                opt_long(self.pe_oi_change_prev_close),
            ),
        ]
    }
}

impl Fields for IndicatorPoint {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        vec![
            ("instrument_token", Long(self.instrument_token)),
            ("timeframe_minutes", Long(self.timeframe_minutes.into())),
            ("window_start", Long(self.window_start)),
            ("indicator", Str(self.indicator.clone())),
            ("params", Str(self.params.clone())),
            (
                "outputs",
                DoubleMap(self.outputs.iter().map(|(k, v)| (k.clone(), *v)).collect()),
            ),
        ]
    }
}

fn indicator_points() -> Vec<IndicatorPoint> {
    let outputs =
        |pairs: &[(&str, f64)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    vec![
        IndicatorPoint {
            instrument_token: 13_238_786,
            timeframe_minutes: 5,
            window_start: 1_798_518_600_000_000,
            indicator: "macd".into(),
            params: "fast=12,slow=26,signal=9".into(),
            outputs: outputs(&[("macd", 12.345_678_9), ("signal", -0.1), ("hist", 1e-300)]),
        },
        IndicatorPoint {
            instrument_token: 256_265,
            timeframe_minutes: 1,
            window_start: 0,
            indicator: "obv".into(),
            params: String::new(),
            outputs: BTreeMap::new(),
        },
    ]
}

impl Fields for MoneynessPoint {
    fn fields(&self) -> Vec<(&'static str, Expect)> {
        use Expect::*;
        vec![
            ("underlying", Str(self.underlying.clone())),
            ("expiry", Long(self.expiry.into())),
            ("minute", Long(self.minute)),
            ("bucket", Str(self.bucket.clone())),
            ("level", Long(self.level.into())),
            ("side", side_symbol(self.side)),
            ("instrument_token", Long(self.instrument_token)),
            ("strike", Double(self.strike)),
            ("ltp", Double(self.ltp)),
            ("iv", opt_double(self.iv)),
            ("delta", opt_double(self.delta)),
            ("oi", Long(self.oi)),
            ("volume", Long(self.volume)),
        ]
    }
}

fn strike_analytics() -> Vec<StrikeAnalytics> {
    let s = StrikeAnalytics {
        instrument_token: 12_345_602,
        tradingsymbol: "NIFTY26DEC24500CE".into(),
        underlying: "NIFTY".into(),
        expiry: date(2026, 12, 29),
        strike: 24_500.0,
        option_type: OptionSide::CE,
        ts: 1_798_518_601_000_000,
        ltp: 312.45,
        ltp_change_prev_close: Some(-12.3),
        oi: 9_876_500,
        oi_change_prev_close: Some(-65_000),
        oi_change_window: Some(1_300),
        volume: 1_234_500,
        bid: 312.4,
        ask: 312.5,
        iv: Some(0.1234),
        no_iv_reason: None,
        delta: Some(0.52),
        gamma: Some(0.0004),
        theta: Some(-9.1),
        vega: Some(18.2),
        rho: Some(0.0),
        build_up: BuildUp::ShortBuildup,
        strike_pcr: Some(1.25),
        gex: Some(1.5e9),
    };
    let mut out = vec![s.clone()];
    for (i, reason) in [
        NoIvReason::BelowIntrinsic,
        NoIvReason::AboveMaximum,
        NoIvReason::NoTwoSidedMarket,
        NoIvReason::Expired,
        NoIvReason::InvalidInput,
        NoIvReason::NoUnderlying,
    ]
    .into_iter()
    .enumerate()
    {
        let build_up = [
            BuildUp::LongBuildup,
            BuildUp::ShortBuildup,
            BuildUp::ShortCovering,
            BuildUp::LongUnwinding,
            BuildUp::Neutral,
        ][i % 5];
        out.push(StrikeAnalytics {
            option_type: OptionSide::PE,
            ltp_change_prev_close: None,
            oi_change_prev_close: None,
            oi_change_window: None,
            iv: None,
            no_iv_reason: Some(reason),
            delta: None,
            gamma: None,
            theta: None,
            vega: None,
            rho: None,
            build_up,
            strike_pcr: None,
            gex: None,
            ..s.clone()
        });
    }
    out
}

fn chain_analytics() -> Vec<ChainAnalytics> {
    let c = ChainAnalytics {
        underlying: "NIFTY".into(),
        expiry: date(2026, 12, 29),
        ts: 1_798_518_660_000_000,
        minute_close: true,
        time_to_expiry: 0.0123,
        spot: Some(24_512.35),
        future: Some(24_580.0),
        parity_forward: Some(24_579.5),
        reference_price: 24_580.0,
        reference_kind: ReferenceKind::Future,
        atm_strike: 24_600.0,
        pcr_oi: Some(0.93),
        pcr_volume: Some(1.07),
        max_pain: Some(24_500.0),
        atm_straddle: Some(410.5),
        implied_move_pct: Some(1.67),
        atm_iv: Some(0.118),
        skew_25d: Some(0.021),
        support: Some(24_000.0),
        resistance: Some(25_000.0),
        basis: Some(67.65),
        annualised_carry: Some(0.22),
        net_gex: Some(-3.2e10),
        total_ce_oi: 123_456_789,
        total_pe_oi: 114_000_000,
        ce_oi_change_prev_close: Some(-1_000),
        pe_oi_change_prev_close: Some(2_000),
    };
    vec![
        c.clone(),
        ChainAnalytics {
            minute_close: false,
            spot: None,
            future: None,
            parity_forward: None,
            reference_kind: ReferenceKind::ParityForward,
            pcr_oi: None,
            pcr_volume: None,
            max_pain: None,
            atm_straddle: None,
            implied_move_pct: None,
            atm_iv: None,
            skew_25d: None,
            support: None,
            resistance: None,
            basis: None,
            annualised_carry: None,
            net_gex: None,
            ce_oi_change_prev_close: None,
            pe_oi_change_prev_close: None,
            ..c.clone()
        },
        ChainAnalytics {
            reference_kind: ReferenceKind::Spot,
            ..c
        },
    ]
}

fn moneyness_points() -> Vec<MoneynessPoint> {
    let m = MoneynessPoint {
        underlying: "BANKNIFTY".into(),
        expiry: date(2026, 12, 29),
        minute: 1_798_518_600_000_000,
        bucket: "OTM1".into(),
        level: 1,
        side: OptionSide::CE,
        instrument_token: 12_345_858,
        strike: 52_100.0,
        ltp: 401.2,
        iv: Some(0.14),
        delta: Some(0.41),
        oi: 650_000,
        volume: 1_200_000,
    };
    vec![
        m.clone(),
        MoneynessPoint {
            bucket: "ITM2".into(),
            level: 2,
            side: OptionSide::PE,
            iv: None,
            delta: None,
            ..m
        },
    ]
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

fn watermarks() -> Vec<Watermark> {
    vec![
        Watermark {
            event_ts: 1_798_536_600_000_000, // 2026-12-29T10:00:00Z (15:30 IST)
            source: "simulator".into(),
        },
        Watermark {
            event_ts: -1,
            source: String::new(),
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
        Expect::Bool(b) => assert_eq!(actual.as_bool(), Some(*b), "{ctx}: got {actual}"),
        Expect::Null => assert!(actual.is_null(), "{ctx}: expected null, got {actual}"),
        Expect::DoubleMap(entries) => {
            let object = actual
                .as_object()
                .unwrap_or_else(|| panic!("{ctx}: expected a map, got {actual}"));
            assert_eq!(object.len(), entries.len(), "{ctx}: keys {object:?}");
            for (key, value) in entries {
                check_field(
                    &format!("{ctx}.{key}"),
                    &Expect::Double(*value),
                    object.get(key),
                );
            }
        }
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
    write_all(&dir, &watermarks(), &mut written);
    write_all(&dir, &strike_analytics(), &mut written);
    write_all(&dir, &chain_analytics(), &mut written);
    write_all(&dir, &moneyness_points(), &mut written);
    write_all(&dir, &indicator_points(), &mut written);

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
        (
            Watermark::NAME,
            Watermark::SCHEMA_JSON,
            fingerprint::<Watermark>(),
        ),
        (
            StrikeAnalytics::NAME,
            StrikeAnalytics::SCHEMA_JSON,
            fingerprint::<StrikeAnalytics>(),
        ),
        (
            ChainAnalytics::NAME,
            ChainAnalytics::SCHEMA_JSON,
            fingerprint::<ChainAnalytics>(),
        ),
        (
            MoneynessPoint::NAME,
            MoneynessPoint::SCHEMA_JSON,
            fingerprint::<MoneynessPoint>(),
        ),
        (
            IndicatorPoint::NAME,
            IndicatorPoint::SCHEMA_JSON,
            fingerprint::<IndicatorPoint>(),
        ),
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
