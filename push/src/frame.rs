//! Server → client messages in either wire format, encoded at most once per format.
//!
//! A client chooses its format with the WebSocket subprotocol (see `docs/protocol.md`):
//! JSON text frames (`strikeflow.v1`, the default) or MessagePack binary frames
//! (`strikeflow.v1.msgpack`) carrying the same documents. Every message is built as JSON
//! (the hub wraps data it serialised once); a [`Frame`] holds that JSON and, once some
//! MessagePack client is about to receive it, its MessagePack encoding, transcoded from the
//! JSON on that first demand and kept beside it. Cloning a frame (once per subscriber) bumps
//! a reference count, so a broadcast is encoded to MessagePack at most once however many
//! MessagePack clients receive it, and not at all when none does.
//!
//! The transcoding is direct (JSON tokens to MessagePack values, no intermediate tree), so
//! the documents are the same: maps keep their string keys and order, integers stay
//! integers, floats stay 64-bit floats, `null`, booleans, strings and arrays map to their
//! MessagePack counterparts.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::ws::{Message, Utf8Bytes};

/// The encoding a client receives its messages in, chosen by subprotocol at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON text frames (`strikeflow.v1`, or no subprotocol).
    #[default]
    Json,
    /// MessagePack binary frames (`strikeflow.v1.msgpack`).
    MsgPack,
}

/// Why a message could not be sent in a client's format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A message's JSON could not be transcoded to MessagePack (it is not valid JSON).
    #[error("cannot encode the message as MessagePack: {0}")]
    Encode(String),
}

struct Shared {
    json: Utf8Bytes,
    /// The MessagePack encoding, made on first demand (or why it cannot be made).
    msgpack: OnceLock<Result<Bytes, FrameError>>,
}

/// One server → client message, shared by all its recipients: the JSON text, and its
/// MessagePack encoding made at most once, when a MessagePack client first needs it.
/// Cloning is a reference-count bump.
#[derive(Clone)]
pub struct Frame(Arc<Shared>);

impl Frame {
    /// The JSON text, as JSON clients receive it.
    pub fn json(&self) -> &Utf8Bytes {
        &self.0.json
    }

    /// The JSON text as a string slice.
    pub fn as_str(&self) -> &str {
        self.0.json.as_str()
    }

    /// Length of the JSON text in bytes: the size client queues account for, whatever the
    /// client's format.
    pub fn len(&self) -> usize {
        self.0.json.len()
    }

    /// Whether the JSON text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.json.is_empty()
    }

    /// The MessagePack encoding of the same document, transcoded from the JSON on the first
    /// call and shared by every later call on this frame or any of its clones.
    pub fn msgpack(&self) -> Result<Bytes, FrameError> {
        self.0
            .msgpack
            .get_or_init(|| transcode(self.0.json.as_str()))
            .clone()
    }

    /// Whether the MessagePack encoding has been made (a MessagePack client needed it).
    pub fn has_msgpack(&self) -> bool {
        self.0.msgpack.get().is_some()
    }

    /// The WebSocket message carrying this frame to a client of `format`: a text frame with
    /// the JSON, or a binary frame with the MessagePack encoding.
    pub fn to_message(&self, format: Format) -> Result<Message, FrameError> {
        match format {
            Format::Json => Ok(Message::Text(self.0.json.clone())),
            Format::MsgPack => self.msgpack().map(Message::Binary),
        }
    }
}

impl Deref for Frame {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Frame").field(&self.as_str()).finish()
    }
}

impl From<Utf8Bytes> for Frame {
    fn from(json: Utf8Bytes) -> Frame {
        Frame(Arc::new(Shared {
            json,
            msgpack: OnceLock::new(),
        }))
    }
}

impl From<String> for Frame {
    fn from(json: String) -> Frame {
        Frame::from(Utf8Bytes::from(json))
    }
}

impl From<&str> for Frame {
    fn from(json: &str) -> Frame {
        Frame::from(Utf8Bytes::from(json))
    }
}

/// Transcode one JSON document to MessagePack.
fn transcode(json: &str) -> Result<Bytes, FrameError> {
    let encode = |e: &dyn fmt::Display| FrameError::Encode(e.to_string());
    let mut out = Vec::with_capacity(json.len());
    let mut de = serde_json::Deserializer::from_str(json);
    let mut ser = rmp_serde::Serializer::new(&mut out);
    serde_transcode::transcode(&mut de, &mut ser).map_err(|e| encode(&e))?;
    de.end().map_err(|e| encode(&e))?;
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn roundtrip(json: &str) -> Value {
        let bytes = Frame::from(json).msgpack().expect("msgpack");
        rmp_serde::from_slice(&bytes).expect("decodes")
    }

    #[test]
    fn msgpack_is_the_same_document() {
        let text = r#"{"type":"chain","channel":"chain.NIFTY.2026-12-29","epoch":"t/0/ts","seq":1766030160000000,"snapshot":true,"data":{"summary":{"spot":26000.5,"whole":26000.0,"neg":-3,"big":18446744073709551615,"none":null,"flag":false,"s":"é\"\\\n"},"strikes":[{"strike":25900.0},[],{}]}}"#;
        let expected: Value = serde_json::from_str(text).expect("json");
        assert_eq!(roundtrip(text), expected);
        // Floats stay floats, integers integers.
        assert!(roundtrip(text)["data"]["summary"]["whole"].is_f64());
        assert!(roundtrip(text)["seq"].is_u64());
    }

    #[test]
    fn maps_keep_string_keys_in_order() {
        let bytes = Frame::from(r#"{"b":1,"a":{"z":true}}"#)
            .msgpack()
            .expect("msgpack");
        // fixmap(2) "b" 1 "a" fixmap(1) "z" true
        assert_eq!(
            &bytes[..],
            &[0x82, 0xa1, b'b', 0x01, 0xa1, b'a', 0x81, 0xa1, b'z', 0xc3][..]
        );
    }

    #[test]
    fn encoded_once_and_shared_by_clones() {
        let frame = Frame::from(r#"{"type":"pong"}"#);
        let copy = frame.clone();
        assert!(!frame.has_msgpack());
        let a = frame.msgpack().expect("msgpack");
        assert!(copy.has_msgpack());
        let b = copy.msgpack().expect("msgpack");
        assert_eq!(a.as_ptr(), b.as_ptr());
        assert!(matches!(
            copy.to_message(Format::MsgPack),
            Ok(Message::Binary(c)) if c.as_ptr() == a.as_ptr()
        ));
        assert!(matches!(
            copy.to_message(Format::Json),
            Ok(Message::Text(t)) if t.as_str() == r#"{"type":"pong"}"#
        ));
    }

    #[test]
    fn invalid_json_is_an_error_not_a_panic() {
        let frame = Frame::from("{not json");
        assert!(matches!(frame.msgpack(), Err(FrameError::Encode(_))));
        assert!(matches!(
            Frame::from("{} trailing").msgpack(),
            Err(FrameError::Encode(_))
        ));
        assert_eq!(frame.len(), 9);
    }
}
