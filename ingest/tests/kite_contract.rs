//! Cross-check of the Kite decoder against the public `kiteconnect` Python client's parser
//! (`KiteTicker._parse_binary`) on the same bytes: every field, exactly.
//!
//! Needs `STRIKEFLOW_PYTHON` pointing at a Python with the pinned packages of
//! `tests/contract/requirements.txt` (`./dev test` sets it up).

use std::path::PathBuf;
use std::process::Command;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use strikeflow_ingest::kite::decode::{
    decode_frame, encode_frame, is_tradable, price_divisor, DepthLevel, Full, Index, Ltp, Packet,
    Quote, HEARTBEAT,
};

fn python() -> String {
    std::env::var("STRIKEFLOW_PYTHON").unwrap_or_else(|_| {
        panic!(
            "STRIKEFLOW_PYTHON is not set: this contract test needs a Python with kiteconnect \
             (tests/contract/requirements.txt). Run it through `./dev test`, which builds that venv \
             and exports STRIKEFLOW_PYTHON."
        )
    })
}

/// A realistic token of `segment`.
fn token(rng: &mut SmallRng, segment: u32) -> u32 {
    (rng.random_range(1..0x00ff_ffff) << 8) | segment
}

/// A raw price: mostly realistic, sometimes the whole unsigned range (kiteconnect reads u32).
fn raw(rng: &mut SmallRng) -> u32 {
    if rng.random_bool(0.1) {
        rng.random()
    } else {
        rng.random_range(0..5_000_000)
    }
}

fn random_packet(rng: &mut SmallRng, kind: usize) -> Packet {
    let segment = [1u32, 2, 3, 5, 6, 9, 12][rng.random_range(0..7)];
    let t = token(rng, segment);
    let p = |rng: &mut SmallRng| f64::from(raw(rng)) / price_divisor(t);
    let timestamp = |rng: &mut SmallRng| rng.random_range(1_500_000_000..2_100_000_000u32);
    match kind {
        0 => Packet::Ltp(Ltp {
            token: t,
            ltp: p(rng),
        }),
        1 | 2 => {
            let t = token(rng, 9); // index packets come from the indices segment
            let p = |rng: &mut SmallRng| f64::from(raw(rng)) / price_divisor(t);
            Packet::Index(Index {
                token: t,
                ltp: p(rng),
                high: p(rng),
                low: p(rng),
                open: p(rng),
                close: if rng.random_bool(0.1) { 0.0 } else { p(rng) },
                change: f64::from(rng.random_range(-100_000..100_000)) / price_divisor(t),
                exchange_timestamp: (kind == 2).then(|| timestamp(rng)),
            })
        }
        _ => {
            let quote = Quote {
                token: t,
                ltp: p(rng),
                last_qty: rng.random_range(0..10_000),
                avg_price: p(rng),
                volume: rng.random(), // the high bit set now and then: unsigned on both sides
                total_buy_qty: rng.random_range(0..100_000_000),
                total_sell_qty: rng.random_range(0..100_000_000),
                open: p(rng),
                high: p(rng),
                low: p(rng),
                close: if rng.random_bool(0.1) { 0.0 } else { p(rng) },
            };
            if kind == 3 {
                return Packet::Quote(quote);
            }
            let level = |rng: &mut SmallRng| DepthLevel {
                qty: rng.random_range(0..1_000_000),
                price: f64::from(raw(rng)) / price_divisor(t),
                orders: rng.random(),
            };
            Packet::Full(Box::new(Full {
                quote,
                last_trade_time: timestamp(rng),
                oi: rng.random(),
                oi_day_high: rng.random(),
                oi_day_low: rng.random(),
                exchange_timestamp: timestamp(rng),
                bids: std::array::from_fn(|_| level(rng)),
                asks: std::array::from_fn(|_| level(rng)),
            }))
        }
    }
}

/// Frames covering every packet kind, alone and mixed, several packets per frame, plus a
/// heartbeat and a packet of unknown length (which both parsers skip).
fn frames() -> Vec<Vec<u8>> {
    let mut rng = SmallRng::seed_from_u64(0x4b49_5445);
    let mut frames = vec![HEARTBEAT.to_vec()];
    for kind in 0..5 {
        frames.push(encode_frame(&[random_packet(&mut rng, kind)]));
    }
    for _ in 0..200 {
        let n = rng.random_range(1..8);
        let mut packets: Vec<Packet> = (0..n)
            .map(|_| {
                let kind = rng.random_range(0..5);
                random_packet(&mut rng, kind)
            })
            .collect();
        if rng.random_bool(0.1) {
            let at = rng.random_range(0..=packets.len());
            packets.insert(at, Packet::Unknown(vec![7; 12]));
        }
        frames.push(encode_frame(&packets));
    }
    frames
}

fn float(v: &Value, path: &str) -> f64 {
    let field = v
        .pointer(path)
        .unwrap_or_else(|| panic!("no {path} in {v}"));
    match field {
        // The script prints floats as repr() strings: parsing gives back the exact double.
        Value::String(s) => s.parse().unwrap_or_else(|e| panic!("{path} = {s:?}: {e}")),
        // `change` is the integer 0 when close is 0.
        Value::Number(n) => n.as_f64().unwrap(),
        other => panic!("{path} is {other}"),
    }
}

fn int(v: &Value, path: &str) -> u64 {
    v.pointer(path)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("no integer {path} in {v}"))
}

/// kiteconnect's derived `change`: percent change of the last price over the close.
fn change(ltp: f64, close: f64) -> f64 {
    if close != 0.0 {
        (ltp - close) * 100.0 / close
    } else {
        0.0
    }
}

fn compare_quote(q: &Quote, py: &Value, ctx: &str) {
    assert_eq!(int(py, "/instrument_token"), u64::from(q.token), "{ctx}");
    assert_eq!(py["tradable"], Value::Bool(is_tradable(q.token)), "{ctx}");
    let floats = [
        ("/last_price", q.ltp),
        ("/average_traded_price", q.avg_price),
        ("/ohlc/open", q.open),
        ("/ohlc/high", q.high),
        ("/ohlc/low", q.low),
        ("/ohlc/close", q.close),
        ("/change", change(q.ltp, q.close)),
    ];
    for (path, ours) in floats {
        assert_eq!(float(py, path), ours, "{ctx} {path}");
    }
    let ints = [
        ("/last_traded_quantity", q.last_qty),
        ("/volume_traded", q.volume),
        ("/total_buy_quantity", q.total_buy_qty),
        ("/total_sell_quantity", q.total_sell_qty),
    ];
    for (path, ours) in ints {
        assert_eq!(int(py, path), u64::from(ours), "{ctx} {path}");
    }
}

fn compare(ours: &Packet, py: &Value, ctx: &str) {
    assert_eq!(py["mode"].as_str(), ours.mode(), "{ctx} mode");
    match ours {
        Packet::Ltp(l) => {
            assert_eq!(int(py, "/instrument_token"), u64::from(l.token), "{ctx}");
            assert_eq!(py["tradable"], Value::Bool(is_tradable(l.token)), "{ctx}");
            assert_eq!(float(py, "/last_price"), l.ltp, "{ctx}");
        }
        Packet::Index(i) => {
            assert_eq!(int(py, "/instrument_token"), u64::from(i.token), "{ctx}");
            assert_eq!(py["tradable"], Value::Bool(false), "{ctx}");
            for (path, value) in [
                ("/last_price", i.ltp),
                ("/ohlc/high", i.high),
                ("/ohlc/low", i.low),
                ("/ohlc/open", i.open),
                ("/ohlc/close", i.close),
                ("/change", change(i.ltp, i.close)),
            ] {
                assert_eq!(float(py, path), value, "{ctx} {path}");
            }
            match i.exchange_timestamp {
                Some(ts) => assert_eq!(int(py, "/exchange_timestamp"), u64::from(ts), "{ctx}"),
                None => assert!(py.get("exchange_timestamp").is_none(), "{ctx}"),
            }
        }
        Packet::Quote(q) => {
            compare_quote(q, py, ctx);
            assert!(py.get("depth").is_none() && py.get("oi").is_none(), "{ctx}");
        }
        Packet::Full(f) => {
            compare_quote(&f.quote, py, ctx);
            for (path, value) in [
                ("/last_trade_time", f.last_trade_time),
                ("/oi", f.oi),
                ("/oi_day_high", f.oi_day_high),
                ("/oi_day_low", f.oi_day_low),
                ("/exchange_timestamp", f.exchange_timestamp),
            ] {
                assert_eq!(int(py, path), u64::from(value), "{ctx} {path}");
            }
            for (side, levels) in [("buy", &f.bids), ("sell", &f.asks)] {
                let theirs = py["depth"][side]
                    .as_array()
                    .unwrap_or_else(|| panic!("{ctx}: no depth.{side}"));
                assert_eq!(theirs.len(), levels.len(), "{ctx} depth.{side}");
                for (n, (level, py_level)) in levels.iter().zip(theirs).enumerate() {
                    let ctx = format!("{ctx} depth.{side}[{n}]");
                    assert_eq!(int(py_level, "/quantity"), u64::from(level.qty), "{ctx}");
                    assert_eq!(float(py_level, "/price"), level.price, "{ctx}");
                    assert_eq!(int(py_level, "/orders"), u64::from(level.orders), "{ctx}");
                }
            }
        }
        Packet::Unknown(_) => unreachable!("unknown packets are filtered out"),
    }
}

#[test]
fn decoder_agrees_with_kiteconnect_parse_binary_field_by_field() {
    let python = python();
    let frames = frames();
    let dir = std::env::temp_dir().join(format!("strikeflow-kite-contract-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("frames.hex");
    let hex: String = frames
        .iter()
        .map(|f| f.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
        .collect();
    std::fs::write(&file, hex).unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/contract/kite_decode.py");
    let output = Command::new(&python)
        .arg(&script)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {python} {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{python} {} failed:\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let parsed: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), frames.len(), "one line per frame");

    let mut compared = std::collections::BTreeMap::<&str, usize>::new();
    for (n, (frame, theirs)) in frames.iter().zip(&parsed).enumerate() {
        let ours: Vec<Packet> = decode_frame(frame)
            .unwrap()
            .into_iter()
            .filter(|p| !matches!(p, Packet::Unknown(_)))
            .collect();
        let theirs = theirs.as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "frame {n}: packet count");
        for (i, (packet, py)) in ours.iter().zip(theirs).enumerate() {
            compare(packet, py, &format!("frame {n} packet {i}"));
            let kind = match packet {
                Packet::Ltp(_) => "ltp",
                Packet::Index(i) if i.exchange_timestamp.is_some() => "index full",
                Packet::Index(_) => "index quote",
                Packet::Quote(_) => "quote",
                Packet::Full(_) => "full",
                Packet::Unknown(_) => "unknown",
            };
            *compared.entry(kind).or_default() += 1;
        }
    }
    for kind in ["ltp", "index quote", "index full", "quote", "full"] {
        assert!(
            compared.get(kind).copied().unwrap_or(0) >= 20,
            "too few {kind} packets compared: {compared:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
