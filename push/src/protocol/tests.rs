//! Tests of the wire protocol: client ops, channel names, envelopes.

use super::*;

#[test]
fn parses_ops() {
    assert_eq!(
        ClientOp::parse(r#"{"op":"subscribe","channel":"bars.NIFTY26DECFUT"}"#),
        Ok(ClientOp::Subscribe {
            channel: "bars.NIFTY26DECFUT".into(),
            since: None,
        })
    );
    assert_eq!(
        ClientOp::parse(
            r#"{"op":"subscribe","channel":"ticks.X","since":{"epoch":"e/1","seq":7}}"#
        ),
        Ok(ClientOp::Subscribe {
            channel: "ticks.X".into(),
            since: Some(Since {
                epoch: "e/1".into(),
                seq: 7
            }),
        })
    );
    assert_eq!(ClientOp::parse(r#"{"op":"list"}"#), Ok(ClientOp::List));
    for bad in [
        r#""x""#,
        r#"{"epoch":"e"}"#,
        r#"{"epoch":"e","seq":-1}"#,
        r#"{"epoch":1,"seq":1}"#,
    ] {
        assert_eq!(
            ClientOp::parse(&format!(
                r#"{{"op":"subscribe","channel":"ticks.X","since":{bad}}}"#
            )),
            Err(ParseError::BadSince),
            "{bad}"
        );
    }
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

fn msgpack(value: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&value).expect("encode")
}

#[test]
fn parses_msgpack_ops_like_json_ones() {
    for text in [
        r#"{"op":"subscribe","channel":"ticks.X","since":{"epoch":"e/1","seq":7}}"#,
        r#"{"op":"unsubscribe","channel":"ticks.X"}"#,
        r#"{"op":"list"}"#,
        r#"{"op":"ping"}"#,
        r#"{"op":"auth","token":"a.b.c"}"#,
        r#"{"op":"dance"}"#,
        r#"{"op":"subscribe","channel":7}"#,
        r#"{"op":"subscribe","channel":"ticks.X","since":{"epoch":"e","seq":-1}}"#,
    ] {
        let value: serde_json::Value = serde_json::from_str(text).expect("json");
        assert_eq!(
            ClientOp::parse_msgpack(&msgpack(value)),
            ClientOp::parse(text),
            "{text}"
        );
    }
}

#[test]
fn rejects_bad_msgpack_frames() {
    let malformed = |bytes: &[u8]| {
        matches!(
            ClientOp::parse_msgpack(bytes),
            Err(ParseError::MalformedMsgPack(_))
        )
    };
    let ping = msgpack(serde_json::json!({"op":"ping"}));
    assert!(malformed(&[]));
    assert!(malformed(&[0xc1]), "reserved marker");
    assert!(malformed(&ping[..ping.len() - 1]), "truncated");
    let mut trailing = ping.clone();
    trailing.push(0xc0);
    assert!(malformed(&trailing), "bytes after the value");
    assert!(malformed(&msgpack(serde_json::json!([1, 2]))), "not a map");
    assert!(malformed(&msgpack(serde_json::json!("op"))), "not a map");
    // A map with an integer key is no JSON object.
    assert!(malformed(&[0x81, 0x01, 0x01]));
    // Nested far deeper than any request: refused, not a stack overflow.
    let mut deep = vec![0x81, 0xa1, b'x'];
    deep.extend(std::iter::repeat_n(0x91, 100_000));
    deep.push(0xc0);
    assert!(malformed(&deep));
    assert!(ClientOp::parse_msgpack(&[0xa1, b'x'])
        .is_err_and(|e| e.to_string().starts_with("malformed MessagePack: ")));
}

#[test]
fn parses_channels() {
    let ok = |c: &str| parse_channel(c).map(|p| (p.kind, p.name));
    assert_eq!(
        ok("bars.NIFTY26DECFUT"),
        Ok((ChannelKind::Bars, "bars.NIFTY26DECFUT".to_owned()))
    );
    assert_eq!(
        ok("bars.NIFTY26DECFUT.1m"),
        Ok((ChannelKind::Bars, "bars.NIFTY26DECFUT".to_owned()))
    );
    assert_eq!(
        ok("bars.NIFTY26DECFUT.15m"),
        Ok((ChannelKind::Bars, "bars.NIFTY26DECFUT.15m".to_owned()))
    );
    assert_eq!(
        ok("ticks.M&M"),
        Ok((ChannelKind::Ticks, "ticks.M&M".to_owned()))
    );
    assert_eq!(
        ok("bars.BAJAJ-AUTO"),
        Ok((ChannelKind::Bars, "bars.BAJAJ-AUTO".to_owned()))
    );
    assert_eq!(
        ok("chain.NIFTY.2026-12-29"),
        Ok((ChannelKind::Chain, "chain.NIFTY.2026-12-29".to_owned()))
    );
    assert_eq!(
        ok("moneyness.BANKNIFTY.2026-12-29"),
        Ok((
            ChannelKind::Moneyness,
            "moneyness.BANKNIFTY.2026-12-29".to_owned()
        ))
    );
    assert_eq!(
        ok("indicators.NIFTY26DECFUT.5m"),
        Ok((
            ChannelKind::Indicators,
            "indicators.NIFTY26DECFUT.5m".to_owned()
        ))
    );
    for bad in [
        "chain.NIFTY",
        "chain.NIFTY.29DEC",
        "indicators.NIFTY26DECFUT",
        "indicators.NIFTY26DECFUT.2m",
        "moneyness..2026-12-29",
    ] {
        assert!(
            matches!(parse_channel(bad), Err(ChannelError::Invalid(..))),
            "{bad}"
        );
    }
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
        Err(ChannelError::Invalid(..))
    ));
    assert!(matches!(
        parse_channel("bars.A B"),
        Err(ChannelError::Invalid(..))
    ));
    assert!(matches!(
        parse_channel("bars.*"),
        Err(ChannelError::Invalid(..))
    ));
    let long = format!("bars.{}", "X".repeat(MAX_CHANNEL_LEN));
    assert!(matches!(
        parse_channel(&long),
        Err(ChannelError::Invalid(..))
    ));
}

#[test]
fn server_messages_have_the_documented_shape() {
    let v: serde_json::Value = serde_json::from_str(
        &ServerMsg::Subscribed {
            channel: "bars.X",
            epoch: None,
            seq: None,
            recovered: None,
        }
        .to_json(),
    )
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
    let text = data_envelope(ChannelKind::Ticks, "ticks.M&M\"X", "t/0", 7, false, &data);
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "type": "tick",
            "channel": "ticks.M&M\"X",
            "epoch": "t/0",
            "seq": 7,
            "data": {"ltp": 1.5, "tradingsymbol": "M&M\"X"}
        })
    );
    let head: SnapshotHead = serde_json::from_str(&text).expect("head");
    assert_eq!(head.seq, 7);
    assert_eq!(head.kind, "tick");
}
