//! The catalogue a client asks for with `{"op":"list"}`: which underlyings and expiries
//! exist (from the instrument master) and which channel patterns it may subscribe to, all
//! filtered by its token's `channels` claim so a client learns nothing it cannot use.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use serde::Serialize;
use strikeflow_schemas::{date_from_days, Instrument, InstrumentType};

use crate::auth::Claims;

/// Every channel pattern push serves, with the prefix a token pattern must be able to
/// match for it to be listed.
pub const CHANNEL_PATTERNS: [(&str, &str); 5] = [
    ("chain.", "chain.<UNDERLYING>.<EXPIRY>"),
    ("moneyness.", "moneyness.<UNDERLYING>.<EXPIRY>"),
    ("indicators.", "indicators.<SYMBOL>.<TF>"),
    ("bars.", "bars.<SYMBOL>[.<TF>]"),
    ("ticks.", "ticks.<SYMBOL>"),
];

/// Underlyings and their expiries (`YYYY-MM-DD`), as the instrument master lists them.
#[derive(Default)]
pub struct Catalogue {
    expiries: RwLock<BTreeMap<String, BTreeSet<String>>>,
}

#[derive(Serialize)]
struct Underlying<'a> {
    underlying: &'a str,
    expiries: Vec<&'a str>,
}

#[derive(Serialize)]
struct ListReply<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    underlyings: Vec<Underlying<'a>>,
    channels: Vec<&'static str>,
    timeframes: Vec<String>,
}

impl Catalogue {
    /// Note an instrument's underlying and expiry (derivatives only).
    pub fn on_instrument(&self, instrument: &Instrument) {
        if instrument.instrument_type == InstrumentType::EQ {
            return;
        }
        let Some(date) = instrument.expiry.and_then(date_from_days) else {
            return;
        };
        let date = date.to_string();
        let mut map = self.expiries.write().unwrap_or_else(|e| e.into_inner());
        let set = map.entry(instrument.name.clone()).or_default();
        if !set.contains(&date) {
            set.insert(date);
        }
    }

    /// The `list` reply for a client holding `claims`: the (underlying, expiry) pairs whose
    /// chain or moneyness channel it may subscribe to, and the channel patterns its token
    /// can match at all.
    pub fn list(&self, claims: &Claims) -> String {
        let map = self.expiries.read().unwrap_or_else(|e| e.into_inner());
        let underlyings = map
            .iter()
            .filter_map(|(underlying, expiries)| {
                let expiries: Vec<&str> = expiries
                    .iter()
                    .map(String::as_str)
                    .filter(|e| {
                        claims.allows(&format!("chain.{underlying}.{e}"))
                            || claims.allows(&format!("moneyness.{underlying}.{e}"))
                    })
                    .collect();
                (!expiries.is_empty()).then_some(Underlying {
                    underlying,
                    expiries,
                })
            })
            .collect();
        let channels = CHANNEL_PATTERNS
            .iter()
            .filter(|(prefix, _)| claims.channels.iter().any(|p| may_match(p, prefix)))
            .map(|(_, pattern)| *pattern)
            .collect();
        let reply = ListReply {
            kind: "list",
            underlyings,
            channels,
            timeframes: crate::protocol::TIMEFRAMES
                .iter()
                .map(|m| format!("{m}m"))
                .collect(),
        };
        serde_json::to_string(&reply)
            .unwrap_or_else(|_| r#"{"type":"error","message":"internal error"}"#.to_owned())
    }
}

/// Whether token pattern `pattern` can match some channel starting with `prefix`: its
/// literal head (up to the first `*`) and the prefix agree as far as both go.
fn may_match(pattern: &str, prefix: &str) -> bool {
    let head = pattern.split('*').next().unwrap_or("");
    prefix.starts_with(head) || head.starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_patterns_select_channel_kinds() {
        assert!(may_match("*", "chain."));
        assert!(may_match("chain.NIFTY.*", "chain."));
        assert!(!may_match("chain.NIFTY.*", "bars."));
        assert!(may_match("b*", "bars."));
        assert!(!may_match("ticks.X", "bars."));
    }
}
