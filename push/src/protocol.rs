//! The WebSocket wire protocol: JSON text frames.
//!
//! Client → server: `{"op":"subscribe","channel":"bars.NIFTY26DECFUT"}`,
//! `{"op":"unsubscribe","channel":…}`, `{"op":"ping"}` and `{"op":"auth","token":…}` (the
//! first message of a client that upgraded without a token, or an in-band refresh before
//! expiry). `docs/protocol.md` is the full description, with authentication, limits and
//! close codes.
//!
//! Server → client: `{"type":"subscribed","channel":…}`, data
//! `{"type":"bar"|"tick","channel":…,"seq":N,"data":{…,"tradingsymbol":…}}`,
//! `{"type":"pong"}`, `{"type":"authenticated","exp":…}` and `{"type":"error","message":…}`.
//!
//! Data envelopes are built as strings around data JSON that was serialised once, so the hub
//! never re-serialises per subscriber.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest channel name accepted from a client; trading symbols are far shorter.
pub const MAX_CHANNEL_LEN: usize = 128;

/// The kind of data a channel carries; the part of the channel name before the first dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    /// `bars.<tradingsymbol>`: closed OHLCV bars. Snapshot-like: a subscriber gets the latest
    /// bar at once, and a slow subscriber is conflated to the latest bar.
    Bars,
    /// `ticks.<tradingsymbol>`: every tick, in order. Never conflated: a subscriber that
    /// cannot keep up is closed.
    Ticks,
}

impl ChannelKind {
    /// The channel name prefix (without the dot).
    pub fn prefix(self) -> &'static str {
        match self {
            ChannelKind::Bars => "bars",
            ChannelKind::Ticks => "ticks",
        }
    }

    /// The `type` field of this kind's data messages.
    pub fn message_type(self) -> &'static str {
        match self {
            ChannelKind::Bars => "bar",
            ChannelKind::Ticks => "tick",
        }
    }

    /// Whether a slow subscriber may skip to the latest message of a channel of this kind.
    /// Only snapshot-like kinds may (each message replaces the last); bars and ticks are
    /// ordered series where every message is a distinct record, so a subscriber that cannot
    /// keep up is closed instead of silently missing candles. No such kind exists yet: the
    /// chain and strike analytics channels will be the first.
    pub fn conflates(self) -> bool {
        false
    }

    /// Whether the hub keeps the latest message of a channel of this kind (and Redis a
    /// copy), so a new subscriber starts from it instead of an empty chart.
    pub fn keeps_latest(self) -> bool {
        matches!(self, ChannelKind::Bars)
    }

    /// The channel carrying this kind of data for `symbol`.
    pub fn channel(self, symbol: &str) -> String {
        format!("{}.{symbol}", self.prefix())
    }
}

/// Why a client-supplied channel name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The part before the dot is not `bars` or `ticks`.
    #[error(
        "unknown channel kind in {0:?} (expected bars.<tradingsymbol> or ticks.<tradingsymbol>)"
    )]
    UnknownKind(String),
    /// Empty symbol, too long, or containing whitespace/control characters.
    #[error("invalid channel name {0:?}")]
    Invalid(String),
}

/// Parse `bars.X` / `ticks.X` into its kind, validating the symbol part.
pub fn parse_channel(channel: &str) -> Result<ChannelKind, ChannelError> {
    let Some((prefix, symbol)) = channel.split_once('.') else {
        return Err(ChannelError::UnknownKind(truncate(channel)));
    };
    let kind = match prefix {
        "bars" => ChannelKind::Bars,
        "ticks" => ChannelKind::Ticks,
        _ => return Err(ChannelError::UnknownKind(truncate(channel))),
    };
    let valid = !symbol.is_empty()
        && channel.len() <= MAX_CHANNEL_LEN
        && !symbol
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*');
    if valid {
        Ok(kind)
    } else {
        Err(ChannelError::Invalid(truncate(channel)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(MAX_CHANNEL_LEN).collect()
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Start receiving a channel.
    Subscribe {
        /// The channel name.
        channel: String,
    },
    /// Stop receiving a channel.
    Unsubscribe {
        /// The channel name.
        channel: String,
    },
    /// Application-level liveness check; answered with `{"type":"pong"}`.
    Ping,
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
}

impl ClientOp {
    /// Parse one client text frame.
    pub fn parse(text: &str) -> Result<ClientOp, ParseError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ParseError::Malformed(e.to_string()))?;
        let serde_json::Value::Object(mut fields) = value else {
            return Err(ParseError::Malformed("expected a JSON object".to_owned()));
        };
        let Some(serde_json::Value::String(op)) = fields.remove("op") else {
            return Err(ParseError::MissingOp);
        };
        let mut string = |op: &'static str, field: &'static str| match fields.remove(field) {
            Some(serde_json::Value::String(s)) => Ok(s),
            _ => Err(ParseError::MissingField { op, field }),
        };
        match op.as_str() {
            "subscribe" => Ok(ClientOp::Subscribe {
                channel: string("subscribe", "channel")?,
            }),
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

/// A control message from the server (everything except data, which [`data_envelope`]
/// builds).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ServerMsg<'a> {
    /// The subscription is active; the snapshot (if any) and live data follow.
    Subscribed {
        /// The channel.
        channel: &'a str,
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

/// Build `{"type":…,"channel":…,"seq":…,"data":…}` around already-serialised `data` JSON.
pub fn data_envelope(kind: ChannelKind, channel: &str, seq: u64, data: &str) -> String {
    let channel = JsonStr(channel);
    format!(
        r#"{{"type":"{}","channel":{channel},"seq":{seq},"data":{data}}}"#,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ops() {
        assert_eq!(
            ClientOp::parse(r#"{"op":"subscribe","channel":"bars.NIFTY26DECFUT"}"#),
            Ok(ClientOp::Subscribe {
                channel: "bars.NIFTY26DECFUT".into()
            })
        );
        assert_eq!(
            ClientOp::parse(r#"{"op":"unsubscribe","channel":"ticks.X"}"#),
            Ok(ClientOp::Unsubscribe {
                channel: "ticks.X".into()
            })
        );
        assert_eq!(ClientOp::parse(r#"{"op":"ping"}"#), Ok(ClientOp::Ping));
        assert_eq!(
            ClientOp::parse(r#"{"op":"auth","token":"a.b.c"}"#),
            Ok(ClientOp::Auth {
                token: "a.b.c".into()
            })
        );
    }

    #[test]
    fn rejects_bad_frames() {
        assert!(matches!(
            ClientOp::parse("{not json"),
            Err(ParseError::Malformed(_))
        ));
        assert!(matches!(
            ClientOp::parse("[1,2]"),
            Err(ParseError::Malformed(_))
        ));
        assert_eq!(ClientOp::parse("{}"), Err(ParseError::MissingOp));
        assert_eq!(ClientOp::parse(r#"{"op":5}"#), Err(ParseError::MissingOp));
        assert_eq!(
            ClientOp::parse(r#"{"op":"dance"}"#),
            Err(ParseError::UnknownOp("dance".into()))
        );
        assert_eq!(
            ClientOp::parse(r#"{"op":"subscribe"}"#),
            Err(ParseError::MissingField {
                op: "subscribe",
                field: "channel"
            })
        );
        assert_eq!(
            ClientOp::parse(r#"{"op":"subscribe","channel":7}"#),
            Err(ParseError::MissingField {
                op: "subscribe",
                field: "channel"
            })
        );
    }

    #[test]
    fn parses_channels() {
        assert_eq!(parse_channel("bars.NIFTY26DECFUT"), Ok(ChannelKind::Bars));
        assert_eq!(parse_channel("ticks.M&M"), Ok(ChannelKind::Ticks));
        assert_eq!(parse_channel("bars.BAJAJ-AUTO"), Ok(ChannelKind::Bars));
        assert!(matches!(
            parse_channel("quotes.X"),
            Err(ChannelError::UnknownKind(_))
        ));
        assert!(matches!(
            parse_channel("bars"),
            Err(ChannelError::UnknownKind(_))
        ));
        assert!(matches!(
            parse_channel("bars."),
            Err(ChannelError::Invalid(_))
        ));
        assert!(matches!(
            parse_channel("bars.A B"),
            Err(ChannelError::Invalid(_))
        ));
        assert!(matches!(
            parse_channel("bars.*"),
            Err(ChannelError::Invalid(_))
        ));
        let long = format!("bars.{}", "X".repeat(MAX_CHANNEL_LEN));
        assert!(matches!(
            parse_channel(&long),
            Err(ChannelError::Invalid(_))
        ));
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&ServerMsg::Subscribed { channel: "bars.X" }.to_json())
                .expect("json");
        assert_eq!(
            v,
            serde_json::json!({"type":"subscribed","channel":"bars.X"})
        );
        let v: serde_json::Value = serde_json::from_str(&ServerMsg::Pong.to_json()).expect("json");
        assert_eq!(v, serde_json::json!({"type":"pong"}));
        let v: serde_json::Value = serde_json::from_str(
            &ServerMsg::Error {
                message: "no \"x\"",
            }
            .to_json(),
        )
        .expect("json");
        assert_eq!(v, serde_json::json!({"type":"error","message":"no \"x\""}));
    }

    #[test]
    fn envelope_is_valid_json_with_escaped_channel() {
        #[derive(Serialize)]
        struct Rec {
            ltp: f64,
        }
        let data = serde_json::to_string(&WithSymbol {
            record: &Rec { ltp: 1.5 },
            tradingsymbol: Some("M&M\"X"),
        })
        .expect("data");
        let text = data_envelope(ChannelKind::Ticks, "ticks.M&M\"X", 7, &data);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "type": "tick",
                "channel": "ticks.M&M\"X",
                "seq": 7,
                "data": {"ltp": 1.5, "tradingsymbol": "M&M\"X"}
            })
        );
        let head: SnapshotHead = serde_json::from_str(&text).expect("head");
        assert_eq!(head.seq, 7);
        assert_eq!(head.kind, "tick");
    }
}
