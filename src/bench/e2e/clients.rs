//! The end-to-end bench's WebSocket clients: the push bench's crowd, told when a tick was
//! sent by the tick itself (its `exchange_ts`, stamped by the feed), and which channels to
//! watch.

use std::sync::Arc;

use strikeflow_push::protocol::{chain_channel, ChannelKind};
use strikeflow_schemas::{Instrument, InstrumentType};

use super::feed::Clock;
use crate::bench::push::clients::{Plan, Timing};

/// Times tick messages by the `exchange_ts` in their data; other messages are not timed
/// (bars and chain analytics are emitted on event-time boundaries, so their delay is the
/// window's, not the pipeline's).
pub(super) struct TickTiming(pub(super) Arc<Clock>);

impl Timing for TickTiming {
    fn now(&self) -> u64 {
        u64::try_from(self.0.now_micros()).unwrap_or(0) * 1_000
    }

    fn sent(&self, channel: &str, _epoch: &str, _seq: u64, head: &str) -> Option<u64> {
        if !channel.starts_with("ticks.") {
            return None;
        }
        let micros = self.0.sent_micros(exchange_ts(head)?)?;
        u64::try_from(micros).ok().map(|m| m * 1_000)
    }
}

/// The `exchange_ts` of a tick message's data: push writes the tick's fields in schema
/// order, `{"instrument_token":…,"exchange_ts":N,…}`, after the envelope's head.
fn exchange_ts(text: &str) -> Option<i64> {
    const FIELD: &str = r#""exchange_ts":"#;
    let at = text.find(FIELD)? + FIELD.len();
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Every client on one chain, the one-minute bars of one symbol and the ticks of two
/// ([`Plan`]); the symbols are spread over the whole master (not its first rows, which are
/// one underlying's nearest expiry), so N clients watch 2N different tick channels.
pub(super) fn plan(clients: usize, instruments: &[Instrument]) -> Plan {
    let mut chains: Vec<String> = instruments
        .iter()
        .filter(|i| matches!(i.instrument_type, InstrumentType::CE | InstrumentType::PE))
        .filter_map(|i| chain_channel(ChannelKind::Chain, &i.name, i.expiry?))
        .collect();
    chains.sort();
    chains.dedup();
    let symbols: Vec<String> = spread(instruments.len())
        .into_iter()
        .map(|i| instruments[i].tradingsymbol.clone())
        .collect();
    Plan::new(clients, &chains, &symbols)
}

/// A permutation of `0..n` whose every prefix is spread over the whole range: steps of
/// about n / φ, coprime with n.
fn spread(n: usize) -> Vec<usize> {
    if n < 3 {
        return (0..n).collect();
    }
    let mut step = (n as f64 * 0.618) as usize;
    while gcd(step, n) != 1 {
        step += 1;
    }
    (0..n).map(|i| i * step % n).collect()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exchange_ts_from_a_tick_message() {
        let tick = strikeflow_schemas::Tick {
            instrument_token: 12_345,
            exchange_ts: 1_764_561_900_123_456,
            ltp: 101.5,
            last_qty: 75,
            volume: 1_000,
            oi: 0,
            bid: 101.0,
            bid_qty: 10,
            ask: 102.0,
            ask_qty: 10,
        };
        let data = serde_json::to_string(&strikeflow_push::protocol::WithSymbol {
            record: &tick,
            tradingsymbol: Some("NIFTY26DEC24500CE"),
        })
        .unwrap();
        let text = strikeflow_push::protocol::data_envelope(
            ChannelKind::Ticks,
            "ticks.NIFTY26DEC24500CE",
            "p.ticks.v1/3",
            9,
            false,
            &data,
        );
        assert_eq!(exchange_ts(&text), Some(1_764_561_900_123_456));
        assert_eq!(exchange_ts(r#"{"type":"tick","data":{}}"#), None);
    }

    #[test]
    fn spread_is_a_permutation_whose_prefixes_cover_the_range() {
        for n in [0, 1, 2, 3, 10, 828, 1_000] {
            let mut order = spread(n);
            if n >= 100 {
                // The first tenth reaches into every half of the range.
                let head = &order[..n / 10];
                assert!(head.iter().any(|&i| i < n / 2) && head.iter().any(|&i| i >= n / 2));
            }
            order.sort_unstable();
            assert_eq!(order, (0..n).collect::<Vec<_>>());
        }
    }
}
