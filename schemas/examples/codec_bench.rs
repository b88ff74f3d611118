//! Rough cost of the hot-path codec calls: `cargo run --release -p strikeflow-schemas --example codec_bench`.
use std::hint::black_box;
use std::time::Instant;

use strikeflow_schemas::{decode, encode_into, CodecError, Tick};

fn main() -> Result<(), CodecError> {
    const N: i64 = 2_000_000;
    let mut tick = Tick {
        instrument_token: 12_345_602,
        exchange_ts: 1_798_518_600_123_456,
        ltp: 312.45,
        last_qty: 65,
        volume: 1_234_500,
        oi: 9_876_500,
        bid: 312.4,
        bid_qty: 650,
        ask: 312.5,
        ask_qty: 1300,
    };
    let mut buf = Vec::with_capacity(128);
    let start = Instant::now();
    for i in 0..N {
        tick.exchange_ts += 1;
        tick.volume += i & 7;
        encode_into(black_box(&tick), &mut buf)?;
        black_box(&buf);
    }
    let enc = start.elapsed().as_nanos() as f64 / N as f64;

    encode_into(&tick, &mut buf)?;
    let start = Instant::now();
    for _ in 0..N {
        black_box(decode::<Tick>(black_box(&buf))?);
    }
    let dec = start.elapsed().as_nanos() as f64 / N as f64;
    println!(
        "Tick ({} bytes): encode_into {enc:.0} ns, decode {dec:.0} ns per message (one core)",
        buf.len()
    );
    Ok(())
}
