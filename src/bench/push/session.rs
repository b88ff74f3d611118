//! The push bench's input: a simulated session played once through the analytics core, as
//! the records the processors would publish, in publish order.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;
use strikeflow_analytics::indicator_bank::{IndicatorBank, IndicatorChoice};
use strikeflow_analytics::{CoreSettings, Output, TickProcessor};
use strikeflow_ingest::MarketSimulator;
use strikeflow_processors::runner::routing::StrikeRowCounts;
use strikeflow_push::protocol::{chain_channel, ChannelKind};
use strikeflow_schemas::{encode, ChainKey, Topics};

use crate::Config;

/// The outputs' topics, in the order their publish times are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Stream {
    Ticks,
    Bars,
    Strikes,
    Chains,
    Moneyness,
    Indicators,
}

impl Stream {
    pub(super) const ALL: [Stream; 6] = [
        Stream::Ticks,
        Stream::Bars,
        Stream::Strikes,
        Stream::Chains,
        Stream::Moneyness,
        Stream::Indicators,
    ];

    pub(super) fn topic(self, topics: &Topics) -> String {
        match self {
            Stream::Ticks => topics.ticks(),
            Stream::Bars => topics.bars(),
            Stream::Strikes => topics.strikes(),
            Stream::Chains => topics.chains(),
            Stream::Moneyness => topics.moneyness(),
            Stream::Indicators => topics.indicators(),
        }
    }
}

/// One record to publish.
pub(super) struct Record {
    pub(super) stream: Stream,
    /// Its offset in its one-partition topic.
    pub(super) offset: usize,
    pub(super) key: String,
    pub(super) payload: Vec<u8>,
    /// A chain summary's strike-row count header, as the processors set it.
    pub(super) strike_rows: Option<u32>,
}

/// The session played through the core: records in publish order and what clients need to
/// subscribe to and time them.
pub(super) struct Session {
    pub(super) records: Vec<Record>,
    /// Encoded instruments, published before push starts.
    pub(super) instruments: Vec<(String, Vec<u8>)>,
    /// Records per stream.
    pub(super) counts: BTreeMap<Stream, usize>,
    /// Tick symbols by activity, busiest first.
    pub(super) symbols: Vec<String>,
    /// Chain channels and, per boundary, the offset of its summary in the chains topic.
    pub(super) chains: HashMap<String, HashMap<u64, usize>>,
}

/// Simulator → analytics core until `wanted` records are ready.
pub(super) fn play_session(config: &Config, wanted: usize) -> Result<Session> {
    let mut market = MarketSimulator::new(&config.simulate.market)?;
    let instruments: Vec<_> = market.instruments().to_vec();
    let settings = CoreSettings {
        allowed_lateness_micros: 2_000_000,
        chain: config.processor().settings.analytics.chain_settings(),
    };
    let bank = IndicatorBank::new(&IndicatorChoice::defaults(), &[1, 3, 5, 15])?;
    let mut core = TickProcessor::new(settings, bank);
    let mut symbol_of = HashMap::new();
    let mut encoded_instruments = Vec::new();
    for instrument in &instruments {
        core.on_instrument(instrument)?;
        symbol_of.insert(
            instrument.instrument_token,
            instrument.tradingsymbol.clone(),
        );
        encoded_instruments.push((instrument.instrument_token.to_string(), encode(instrument)?));
    }
    let mut session = Session {
        records: Vec::with_capacity(wanted),
        instruments: encoded_instruments,
        counts: BTreeMap::new(),
        symbols: Vec::new(),
        chains: HashMap::new(),
    };
    let mut activity: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(4_096);
    while session.records.len() < wanted {
        let tick = market.next_tick();
        if let Some(symbol) = symbol_of.get(&tick.instrument_token) {
            *activity.entry(symbol.clone()).or_default() += 1;
        }
        let key = tick.instrument_token.to_string();
        session.add(Stream::Ticks, key, encode(&tick)?);
        core.on_tick(tick, &mut out);
        let strike_rows = StrikeRowCounts::of(&out);
        for output in out.drain(..) {
            session.add_output(output, &strike_rows)?;
        }
    }
    session.records.truncate(wanted);
    let mut symbols: Vec<_> = activity.into_iter().collect();
    symbols.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    session.symbols = symbols.into_iter().map(|(s, _)| s).collect();
    Ok(session)
}

impl Session {
    fn add(&mut self, stream: Stream, key: String, payload: Vec<u8>) {
        let count = self.counts.entry(stream).or_default();
        self.records.push(Record {
            stream,
            offset: *count,
            key,
            payload,
            strike_rows: None,
        });
        *count += 1;
    }

    /// Keys as the processors' routing gives them (chain key or instrument token).
    fn add_output(&mut self, output: Output, strike_rows: &StrikeRowCounts) -> Result<()> {
        let chain_key = |underlying: &str, expiry: i32| {
            ChainKey::new(underlying.to_owned(), Some(expiry)).to_string()
        };
        match output {
            Output::Bar(bar) => {
                self.add(
                    Stream::Bars,
                    bar.instrument_token.to_string(),
                    encode(&bar)?,
                );
            }
            Output::Strike(s) => {
                let key = chain_key(&s.underlying, s.expiry);
                self.add(Stream::Strikes, key, encode(&s)?);
            }
            Output::Chain(c) => {
                if let Some(channel) = chain_channel(ChannelKind::Chain, &c.underlying, c.expiry) {
                    let offset = self.counts.get(&Stream::Chains).copied().unwrap_or(0);
                    let boundary = u64::try_from(c.ts).unwrap_or(0);
                    self.chains
                        .entry(channel)
                        .or_default()
                        .insert(boundary, offset);
                }
                let key = chain_key(&c.underlying, c.expiry);
                let rows = strike_rows.rows(&c.underlying, c.expiry, c.ts);
                self.add(Stream::Chains, key, encode(&c)?);
                if let Some(record) = self.records.last_mut() {
                    record.strike_rows = Some(rows);
                }
            }
            Output::Moneyness(m) => {
                let key = chain_key(&m.underlying, m.expiry);
                self.add(Stream::Moneyness, key, encode(&m)?);
            }
            Output::Indicator(i) => {
                let key = i.instrument_token.to_string();
                self.add(Stream::Indicators, key, encode(&i)?);
            }
            // Late ticks go to a topic push does not read.
            Output::Late(_) => {}
        }
        Ok(())
    }
}
