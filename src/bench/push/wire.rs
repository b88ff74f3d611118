//! A minimal WebSocket client for the push bench's crowd.
//!
//! Written by hand rather than with tungstenite because the crowd runs on the same two cores
//! as the server it measures, so every microsecond it spends per frame is taken from push:
//! tungstenite zero-fills its read buffer before each read and copies every frame into a
//! message of its own. This client reads into one growing buffer without zeroing it, hands
//! out text payloads as slices of that buffer, answers pings and understands close frames —
//! everything a listening client needs from RFC 6455, and nothing more (no extensions, no
//! fragmented messages from the client).

use anyhow::{bail, Context, Result};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Largest HTTP response head accepted during the handshake.
const MAX_HEAD: usize = 16 * 1024;

/// What the server sent next.
pub(super) enum Event {
    /// A whole text message; call [`WireClient::consume`] once done with it.
    Text(usize),
    /// The server closed the connection, with this code if it gave one.
    Closed(Option<u16>),
}

/// One WebSocket connection, client side.
pub(super) struct WireClient {
    stream: TcpStream,
    buf: BytesMut,
    /// Bytes of `buf` taken by the text message last returned (header included).
    pending: usize,
    /// Start of the last text message's payload in `buf`.
    payload_at: usize,
}

impl WireClient {
    /// Connects to `ws://{addr}{path}` with `Authorization: Bearer {token}`.
    pub(super) async fn connect(addr: &str, path: &str, token: &str) -> Result<Self> {
        let mut stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: c3RyaWtlZmxvdy1iZW5jaA==\r\nSec-WebSocket-Version: 13\r\n\
             Authorization: Bearer {token}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let head_end = loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                break end + 4;
            }
            if buf.len() > MAX_HEAD {
                bail!("the handshake response head is too long");
            }
            if stream.read_buf(&mut buf).await? == 0 {
                bail!("the server closed the connection during the handshake");
            }
        };
        if !buf.starts_with(b"HTTP/1.1 101") {
            let status = String::from_utf8_lossy(&buf[..buf.len().min(64)]).into_owned();
            bail!("the upgrade was refused: {status}");
        }
        buf.advance(head_end);
        Ok(Self {
            stream,
            buf,
            pending: 0,
            payload_at: 0,
        })
    }

    /// Sends `text` as one masked text frame (a zero mask: every key is valid, and this one
    /// leaves the payload as it is).
    pub(super) async fn send_text(&mut self, text: &str) -> Result<()> {
        let frame = frame(0x1, text.as_bytes());
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// The payload of the text message [`WireClient::next`] last returned.
    pub(super) fn text(&self, len: usize) -> &[u8] {
        &self.buf[self.payload_at..self.payload_at + len]
    }

    /// Waits for the next text message or the end of the connection; answers pings.
    pub(super) async fn next(&mut self) -> Result<Event> {
        self.buf.advance(self.pending);
        self.pending = 0;
        loop {
            if let Some((opcode, header, len)) = parse_header(&self.buf) {
                if self.buf.len() >= header + len {
                    match opcode {
                        0x1 => {
                            self.payload_at = header;
                            self.pending = header + len;
                            return Ok(Event::Text(len));
                        }
                        0x8 => {
                            let payload = &self.buf[header..header + len];
                            let code =
                                (len >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                            return Ok(Event::Closed(code));
                        }
                        0x9 => {
                            let pong = frame(0xA, &self.buf[header..header + len]);
                            self.buf.advance(header + len);
                            self.stream.write_all(&pong).await?;
                        }
                        // Pongs, binary and continuation frames: not used by the bench.
                        _ => self.buf.advance(header + len),
                    }
                    continue;
                }
            }
            self.buf.reserve(READ_CHUNK);
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Ok(Event::Closed(None));
            }
        }
    }
}

/// Opcode, header length and payload length of the frame at the start of `buf`, once its
/// header is complete. Frames from a server are never masked.
fn parse_header(buf: &[u8]) -> Option<(u8, usize, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let opcode = b0 & 0x0f;
    let masked = b1 & 0x80 != 0;
    let (len, mut header) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    if masked {
        header += 4;
    }
    Some((opcode, header, len))
}

/// A final, masked (with a zero key) frame of `opcode` carrying `payload`.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_the_header_parser() {
        for len in [0, 5, 125, 126, 300, 70_000] {
            let payload = vec![b'x'; len];
            let out = frame(0x1, &payload);
            let (opcode, header, parsed) = parse_header(&out).unwrap();
            assert_eq!((opcode, parsed), (0x1, len));
            // Client frames carry a (zero) mask key after the length.
            assert_eq!(out.len(), header + len);
            assert_eq!(&out[header..], &payload[..]);
        }
        assert!(parse_header(&[0x81]).is_none(), "an incomplete header");
        assert!(parse_header(&[0x81, 126, 1]).is_none());
        // A server's unmasked frame.
        assert_eq!(parse_header(&[0x88, 2, 0x0f, 0xa8]), Some((0x8, 2, 2)));
    }
}
