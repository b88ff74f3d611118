//! The WebSocket wire protocol: JSON documents, sent as JSON text frames or (subprotocol
//! `strikeflow.v1.msgpack`) as MessagePack binary frames; see [`crate::frame`].
//!
//! Client → server: `{"op":"subscribe","channel":…[,"since":{"epoch":…,"seq":N}]}`,
//! `{"op":"unsubscribe","channel":…}`, `{"op":"list"}`, `{"op":"ping"}` and
//! `{"op":"auth","token":…}` (the first message of a client that upgraded without a token,
//! or an in-band refresh before expiry). `docs/protocol.md` is the full description, with
//! channels, numbering, recovery, authentication, limits and close codes.
//!
//! Server → client: `{"type":"subscribed","channel":…,"epoch":…,"seq":N[,"recovered":…]}`,
//! data `{"type":"chain"|"moneyness"|"indicator"|"bar"|"tick","channel":…,"epoch":…,
//! "seq":N[,"snapshot":true],"data":…}`, `{"type":"list",…}`, `{"type":"pong"}`,
//! `{"type":"authenticated","exp":…}` and `{"type":"error","message":…}`.
//!
//! Data envelopes are built as strings around data JSON that was serialised once, so the hub
//! never re-serialises per subscriber.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest channel name accepted from a client; trading symbols are far shorter.
pub const MAX_CHANNEL_LEN: usize = 128;

/// Deepest nesting accepted in a MessagePack request, as `serde_json` allows in a JSON one
/// (requests are two levels deep); deeper is refused rather than risking the stack.
const MAX_MSGPACK_DEPTH: usize = 128;

/// Bar timeframes push serves, in minutes: one-minute bars come from the bars topic, the
/// others are built in push from them (see `bars`).
pub const TIMEFRAMES: [u32; 4] = [1, 3, 5, 15];

/// The kind of data a channel carries; the part of the channel name before the first dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// `chain.<UNDERLYING>.<EXPIRY>`: the option chain. Snapshot-like: a subscriber gets the
    /// whole chain, then deltas of the strikes that changed; a slow subscriber's queued delta
    /// is replaced by the whole current chain.
    Chain,
    /// `moneyness.<UNDERLYING>.<EXPIRY>`: moneyness points, conflated per bucket and side.
    Moneyness,
    /// `indicators.<SYMBOL>.<TF>`: indicator values, conflated per indicator.
    Indicators,
    /// `bars.<SYMBOL>.<TF>`: closed OHLCV bars. A subscriber gets the latest bar at once;
    /// an ordered series, so a subscriber that cannot keep up is closed.
    Bars,
    /// `ticks.<SYMBOL>`: every tick, in order. Never conflated: a subscriber that cannot
    /// keep up is closed.
    Ticks,
}

impl ChannelKind {
    /// The channel name prefix (without the dot).
    pub fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Chain => "chain",
            ChannelKind::Moneyness => "moneyness",
            ChannelKind::Indicators => "indicators",
            ChannelKind::Bars => "bars",
            ChannelKind::Ticks => "ticks",
        }
    }

    /// The `type` field of this kind's data messages.
    pub fn message_type(self) -> &'static str {
        match self {
            ChannelKind::Chain => "chain",
            ChannelKind::Moneyness => "moneyness",
            ChannelKind::Indicators => "indicator",
            ChannelKind::Bars => "bar",
            ChannelKind::Ticks => "tick",
        }
    }

    /// Whether a slow subscriber may skip to the latest value of a channel of this kind
    /// (per key). Only snapshot-like kinds may; bars and ticks are ordered series where
    /// every message is a distinct record, so a subscriber that cannot keep up is closed
    /// instead of silently missing candles.
    pub fn conflates(self) -> bool {
        matches!(
            self,
            ChannelKind::Chain | ChannelKind::Moneyness | ChannelKind::Indicators
        )
    }

    /// Whether a new subscriber starts from the channel's current state (a snapshot)
    /// instead of an empty screen. Ticks have no state.
    pub fn keeps_latest(self) -> bool {
        !matches!(self, ChannelKind::Ticks)
    }

    /// The channel carrying this kind of data for `symbol` (ticks and one-minute bars'
    /// short form; see [`bars_channel`] and [`parse_channel`] for the others).
    pub fn channel(self, symbol: &str) -> String {
        match self {
            ChannelKind::Bars => bars_channel(symbol, 1),
            _ => format!("{}.{symbol}", self.prefix()),
        }
    }
}

/// The canonical bar channel name: `bars.<symbol>` for one-minute bars (the name push has
/// always served them under), `bars.<symbol>.<tf>m` for the longer ones.
pub fn bars_channel(symbol: &str, minutes: u32) -> String {
    if minutes == 1 {
        format!("bars.{symbol}")
    } else {
        format!("bars.{symbol}.{minutes}m")
    }
}

/// `indicators.<symbol>.<tf>m`.
pub fn indicators_channel(symbol: &str, minutes: u32) -> String {
    format!("indicators.{symbol}.{minutes}m")
}

/// `<kind>.<underlying>.<YYYY-MM-DD>` for the chain and moneyness kinds, or `None` for an
/// expiry that is not a date.
pub fn chain_channel(kind: ChannelKind, underlying: &str, expiry_days: i32) -> Option<String> {
    let date = strikeflow_schemas::date_from_days(expiry_days)?;
    Some(format!("{}.{underlying}.{date}", kind.prefix()))
}

/// Why a client-supplied channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The part before the dot is not a channel kind push serves.
    #[error(
        "unknown channel kind in {0:?} (expected chain.<UNDERLYING>.<EXPIRY>, \
         moneyness.<UNDERLYING>.<EXPIRY>, indicators.<SYMBOL>.<TF>, bars.<SYMBOL>[.<TF>] or \
         ticks.<SYMBOL>)"
    )]
    UnknownKind(String),
    /// Empty symbol, too long, containing whitespace/control characters, or a part
    /// missing or malformed (expiry not `YYYY-MM-DD`, timeframe not 1m/3m/5m/15m).
    #[error("invalid channel name {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// A parsed, canonical channel name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelName {
    /// What it carries.
    pub kind: ChannelKind,
    /// The canonical name (`bars.X.1m` becomes `bars.X`); replies and data use it.
    pub name: String,
}

fn is_tf(s: &str) -> bool {
    s.strip_suffix('m')
        .and_then(|m| m.parse::<u32>().ok())
        .is_some_and(|m| TIMEFRAMES.contains(&m) && s == format!("{m}m"))
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parse and validate a client's channel name into its kind and canonical name.
pub fn parse_channel(channel: &str) -> Result<ChannelName, ChannelError> {
    let Some((prefix, rest)) = channel.split_once('.') else {
        return Err(ChannelError::UnknownKind(truncate(channel)));
    };
    let kind = match prefix {
        "chain" => ChannelKind::Chain,
        "moneyness" => ChannelKind::Moneyness,
        "indicators" => ChannelKind::Indicators,
        "bars" => ChannelKind::Bars,
        "ticks" => ChannelKind::Ticks,
        _ => return Err(ChannelError::UnknownKind(truncate(channel))),
    };
    let invalid = |why| Err(ChannelError::Invalid(truncate(channel), why));
    if rest.is_empty()
        || channel.len() > MAX_CHANNEL_LEN
        || rest
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*')
    {
        return invalid("empty, too long, or containing blanks, control characters or '*'");
    }
    let name = match kind {
        ChannelKind::Chain | ChannelKind::Moneyness => match rest.rsplit_once('.') {
            Some((underlying, expiry)) if !underlying.is_empty() && is_date(expiry) => {
                channel.to_owned()
            }
            _ => return invalid("expected <UNDERLYING>.<YYYY-MM-DD>"),
        },
        ChannelKind::Indicators => match rest.rsplit_once('.') {
            Some((symbol, tf)) if !symbol.is_empty() && is_tf(tf) => channel.to_owned(),
            _ => return invalid("expected <SYMBOL>.<TF> with TF one of 1m, 3m, 5m, 15m"),
        },
        ChannelKind::Bars => match rest.rsplit_once('.') {
            Some((symbol, tf)) if !symbol.is_empty() && is_tf(tf) => {
                bars_channel(symbol, tf.trim_end_matches('m').parse().unwrap_or(1))
            }
            _ => channel.to_owned(),
        },
        ChannelKind::Ticks => channel.to_owned(),
    };
    if name.len() > MAX_CHANNEL_LEN {
        return invalid("too long");
    }
    Ok(ChannelName { kind, name })
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_CHANNEL_LEN).collect()
}

/// Where a resuming client left a channel: the last message it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    /// The epoch of that message.
    pub epoch: String,
    /// Its sequence number.
    pub seq: u64,
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Start receiving a channel.
    Subscribe {
        /// The channel name.
        channel: String,
        /// Resume after this message instead of starting from the current state.
        since: Option<Since>,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        /// The channel name.
        channel: String,
    },
    /// Application-level liveness check; answered with `{"type":"pong"}`.
    Ping,
    /// The catalogue: underlyings, expiries and channel patterns the token allows.
    List,
    /// Replace the session's token before it expires.
    Auth {
        /// The new JWT.
        token: String,
    },
}

/// Why a client frame could not be understood. Its text goes back in an `error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, or not a JSON object.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// A binary frame that is not one MessagePack value, or not a map.
    #[error("malformed MessagePack: {0}")]
    MalformedMsgPack(String),
    /// An object without a string `op`.
    #[error("missing \"op\" field")]
    MissingOp,
    /// An `op` push does not know.
    #[error("unknown op {0:?}")]
    UnknownOp(String),
    /// A known op without a field it needs.
    #[error("op {op:?} needs a string {field:?} field")]
    MissingField {
        /// The op.
        op: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// `since` is not `{"epoch":"…","seq":N}`.
    #[error("\"since\" must be {{\"epoch\":<string>,\"seq\":<non-negative integer>}}")]
    BadSince,
}

impl ClientOp {
    /// Parse one client text frame.
    pub fn parse(text: &str) -> Result<ClientOp, ParseError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ParseError::Malformed(e.to_string()))?;
        let serde_json::Value::Object(fields) = value else {
            return Err(ParseError::Malformed("expected a JSON object".to_owned()));
        };
        ClientOp::from_fields(fields)
    }

    /// Parse one client binary frame (MessagePack clients): the MessagePack encoding of the
    /// same document as the JSON request, a map with string keys.
    pub fn parse_msgpack(bytes: &[u8]) -> Result<ClientOp, ParseError> {
        let malformed = |why: String| ParseError::MalformedMsgPack(why);
        let mut de = rmp_serde::Deserializer::new(bytes);
        de.set_max_depth(MAX_MSGPACK_DEPTH);
        let value =
            serde_json::Value::deserialize(&mut de).map_err(|e| malformed(e.to_string()))?;
        let rest = de.get_ref().len();
        if rest > 0 {
            return Err(malformed(format!("{rest} bytes after the first value")));
        }
        let serde_json::Value::Object(fields) = value else {
            return Err(ParseError::MalformedMsgPack("expected a map".to_owned()));
        };
        ClientOp::from_fields(fields)
    }

    /// The request an object's fields describe.
    fn from_fields(
        mut fields: serde_json::Map<String, serde_json::Value>,
    ) -> Result<ClientOp, ParseError> {
        let Some(serde_json::Value::String(op)) = fields.remove("op") else {
            return Err(ParseError::MissingOp);
        };
        let mut string = |op: &'static str, field: &'static str| match fields.remove(field) {
            Some(serde_json::Value::String(s)) => Ok(s),
            _ => Err(ParseError::MissingField { op, field }),
        };
        match op.as_str() {
            "subscribe" => {
                let channel = string("subscribe", "channel")?;
                let since = match fields.remove("since") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(value) => Some(parse_since(value)?),
                };
                Ok(ClientOp::Subscribe { channel, since })
            }
            "list" => Ok(ClientOp::List),
            "unsubscribe" => Ok(ClientOp::Unsubscribe {
                channel: string("unsubscribe", "channel")?,
            }),
            "ping" => Ok(ClientOp::Ping),
            "auth" => Ok(ClientOp::Auth {
                token: string("auth", "token")?,
            }),
            _ => Err(ParseError::UnknownOp(op.chars().take(64).collect())),
        }
    }
}

fn parse_since(value: serde_json::Value) -> Result<Since, ParseError> {
    let serde_json::Value::Object(mut since) = value else {
        return Err(ParseError::BadSince);
    };
    match (since.remove("epoch"), since.remove("seq")) {
        (Some(serde_json::Value::String(epoch)), Some(seq)) if epoch.len() <= MAX_CHANNEL_LEN => {
            let seq = seq.as_u64().ok_or(ParseError::BadSince)?;
            Ok(Since { epoch, seq })
        }
        _ => Err(ParseError::BadSince),
    }
}

/// A control message from the server (everything except data, which [`data_envelope`]
/// builds).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg<'a> {
    /// The subscription is active; the snapshot (if any) and live data follow.
    Subscribed {
        /// The channel (canonical name).
        channel: &'a str,
        /// The epoch of the channel's numbering, when push has seen the channel.
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        /// The channel's latest sequence number, when push has seen the channel.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        /// With `since` only: `true` when exactly the missed messages follow, `false` when a
        /// fresh snapshot follows instead.
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// Answer to `{"op":"ping"}`.
    Pong,
    /// The in-band token refresh succeeded.
    Authenticated {
        /// The new expiry, seconds since the epoch.
        exp: u64,
    },
    /// A request could not be served; the socket stays open.
    Error {
        /// What went wrong.
        message: &'a str,
    },
}

impl ServerMsg<'_> {
    /// The JSON text of this message.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail; fall back to a fixed error anyway so
        // no runtime path panics.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","message":"internal error"}"#.to_owned())
    }
}

/// A tick or bar plus the instrument's trading symbol: the `data` of a data message.
#[derive(Serialize)]
pub struct WithSymbol<'a, T> {
    /// The record's own fields, flattened.
    #[serde(flatten)]
    pub record: &'a T,
    /// The instrument's trading symbol; `null` when push has not seen the instrument yet.
    pub tradingsymbol: Option<&'a str>,
}

/// Build `{"type":…,"channel":…,"epoch":…,"seq":…,"data":…}` around already-serialised
/// `data` JSON; a snapshot (the channel's whole state) also carries `"snapshot":true`.
pub fn data_envelope(
    kind: ChannelKind,
    channel: &str,
    epoch: &str,
    seq: u64,
    snapshot: bool,
    data: &str,
) -> String {
    let (channel, epoch) = (JsonStr(channel), JsonStr(epoch));
    let flag = if snapshot { r#","snapshot":true"# } else { "" };
    format!(
        r#"{{"type":"{}","channel":{channel},"epoch":{epoch},"seq":{seq}{flag},"data":{data}}}"#,
        kind.message_type()
    )
}

/// Displays a string as a JSON string literal.
struct JsonStr<'a>(&'a str);

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match serde_json::to_string(self.0) {
            Ok(s) => f.write_str(&s),
            Err(_) => f.write_str("\"\""),
        }
    }
}

/// The parts of a stored snapshot push needs to reuse it.
#[derive(Debug, Deserialize)]
pub struct SnapshotHead {
    /// The message type (`bar`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The channel it was published on.
    pub channel: String,
    /// Its per-channel sequence number.
    pub seq: u64,
    /// The epoch of that number.
    #[serde(default)]
    pub epoch: String,
}

#[cfg(test)]
mod tests;
