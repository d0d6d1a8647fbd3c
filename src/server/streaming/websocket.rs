//! RFC 6455 websocket framing for the kubelet's streaming endpoints: the handshake's
//! `Sec-WebSocket-Accept`, frames with 7-, 16- and 64-bit lengths, masking (clients must mask,
//! servers must not), and messages reassembled from fragments with control frames allowed in
//! between ([`Decoder`]). No extensions are negotiated, so the RSV bits must be zero.

use bytes::BytesMut;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// Close status: normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// Close status: a frame broke the protocol.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Close status: a message is too big to handle.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The GUID RFC 6455 appends to the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// One whole message (or a control frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    /// The status code and reason, if the peer sent any.
    Close(Option<(u16, String)>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// A frame that breaks RFC 6455.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WsError {
    #[error("websocket frame with reserved bits {0:#x} set and no extension negotiated")]
    Reserved(u8),
    #[error("websocket frame with unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("unmasked websocket frame from a client")]
    Unmasked,
    #[error("masked websocket frame from a server")]
    Masked,
    #[error("websocket control frame (opcode {0:#x}) fragmented or longer than 125 bytes")]
    Control(u8),
    #[error("websocket continuation frame without a message to continue")]
    StrayContinuation,
    #[error("websocket data frame (opcode {0:#x}) inside a fragmented message")]
    Interleaved(u8),
    #[error("websocket message of {len} bytes is over the {max}-byte limit")]
    TooBig { len: u64, max: usize },
    #[error("websocket close frame with a 1-byte payload")]
    CloseLength,
}

impl WsError {
    /// The close status to answer this error with.
    pub fn close_code(&self) -> u16 {
        match self {
            WsError::TooBig { .. } => CLOSE_TOO_BIG,
            _ => CLOSE_PROTOCOL_ERROR,
        }
    }
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    let mut input = key.trim().as_bytes().to_vec();
    input.extend_from_slice(ACCEPT_GUID.as_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &input);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Appends one final frame (`FIN` set) to `out`, masked with `mask` when given (a client's).
pub fn encode(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    encode_frame(true, opcode, payload, mask, out)
}

/// Appends one frame; `fin` false starts or continues a fragmented message.
pub fn encode_frame(
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) {
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

/// A close frame's payload: the status code, then a UTF-8 reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason.as_bytes());
    p
}

/// Reads frames from one peer and returns whole messages.
pub struct Decoder {
    /// Frames must be masked (a server reading a client) or must not be (a client).
    from_client: bool,
    max_message: usize,
    /// The opcode and payload so far of a fragmented message.
    partial: Option<(u8, Vec<u8>)>,
}

impl Decoder {
    pub fn new(from_client: bool, max_message: usize) -> Self {
        Self {
            from_client,
            max_message,
            partial: None,
        }
    }

    /// The next message at the front of `buf` (its frames consumed), or `None` until more
    /// bytes come.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, WsError> {
        loop {
            let Some((fin, opcode, payload)) = self.frame(buf)? else {
                return Ok(None);
            };
            match opcode {
                OP_CLOSE => {
                    let close = match payload.len() {
                        0 => None,
                        1 => return Err(WsError::CloseLength),
                        _ => Some((
                            u16::from_be_bytes([payload[0], payload[1]]),
                            String::from_utf8_lossy(&payload[2..]).into_owned(),
                        )),
                    };
                    return Ok(Some(Message::Close(close)));
                }
                OP_PING => return Ok(Some(Message::Ping(payload))),
                OP_PONG => return Ok(Some(Message::Pong(payload))),
                OP_CONTINUATION => {
                    let Some((op, mut data)) = self.partial.take() else {
                        return Err(WsError::StrayContinuation);
                    };
                    data.extend_from_slice(&payload);
                    if fin {
                        return Ok(Some(message(op, data)));
                    }
                    self.partial = Some((op, data));
                }
                op => {
                    if self.partial.is_some() {
                        return Err(WsError::Interleaved(op));
                    }
                    if fin {
                        return Ok(Some(message(op, payload)));
                    }
                    self.partial = Some((op, payload));
                }
            }
        }
    }

    /// One frame: FIN, opcode, unmasked payload.
    fn frame(&mut self, buf: &mut BytesMut) -> Result<Option<(bool, u8, Vec<u8>)>, WsError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(WsError::Reserved(b0 & 0x70));
        }
        let opcode = b0 & 0x0f;
        if !matches!(
            opcode,
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
        ) {
            return Err(WsError::Opcode(opcode));
        }
        let masked = b1 & 0x80 != 0;
        if masked != self.from_client {
            return Err(if masked {
                WsError::Masked
            } else {
                WsError::Unmasked
            });
        }
        let (len, mut at) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([buf[2], buf[3]]) as u64, 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut b = [0u8; 8];
                b.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (n as u64, 2),
        };
        if opcode >= OP_CLOSE && (!fin || len > 125) {
            return Err(WsError::Control(opcode));
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, d)| d.len()) as u64;
        if len.saturating_add(so_far) > self.max_message as u64 {
            return Err(WsError::TooBig {
                len: len.saturating_add(so_far),
                max: self.max_message,
            });
        }
        let len = len as usize;
        let key = if masked {
            if buf.len() < at + 4 {
                return Ok(None);
            }
            let k = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
            at += 4;
            Some(k)
        } else {
            None
        };
        if buf.len() < at + len {
            buf.reserve(at + len - buf.len());
            return Ok(None);
        }
        let _ = buf.split_to(at);
        let mut payload = buf.split_to(len).to_vec();
        if let Some(k) = key {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= k[i % 4];
            }
        }
        Ok(Some((fin, opcode, payload)))
    }
}

fn message(opcode: u8, data: Vec<u8>) -> Message {
    if opcode == OP_TEXT {
        Message::Text(data)
    } else {
        Message::Binary(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(d: &mut Decoder, wire: &[u8]) -> Vec<Message> {
        let mut out = Vec::new();
        let mut buf = BytesMut::new();
        for b in wire {
            buf.extend_from_slice(&[*b]);
            while let Some(m) = d.decode(&mut buf).unwrap() {
                out.push(m);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn accept_key_of_rfc6455() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn rfc6455_examples() {
        // Section 5.7: a masked "Hello" from a client.
        let masked = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut server = Decoder::new(true, 1 << 20);
        assert_eq!(
            decode_all(&mut server, &masked),
            vec![Message::Text(b"Hello".to_vec())]
        );
        let mut enc = Vec::new();
        encode(OP_TEXT, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]), &mut enc);
        assert_eq!(enc, masked);
        // An unmasked "Hello" in two fragments, from a server, with a ping in between.
        let mut client = Decoder::new(false, 1 << 20);
        let wire = [
            0x01, 0x03, 0x48, 0x65, 0x6c, 0x89, 0x02, b'h', b'i', 0x80, 0x02, 0x6c, 0x6f,
        ];
        assert_eq!(
            decode_all(&mut client, &wire),
            vec![
                Message::Ping(b"hi".to_vec()),
                Message::Text(b"Hello".to_vec())
            ]
        );
    }

    #[test]
    fn lengths_of_16_and_64_bits_and_fragments_masked() {
        let big = vec![7u8; 70_000];
        let mid = vec![9u8; 300];
        let mut wire = Vec::new();
        encode(OP_BINARY, &mid, Some([1, 2, 3, 4]), &mut wire);
        assert_eq!(&wire[..4], &[0x82, 0x80 | 126, 0x01, 0x2c]);
        let at = wire.len();
        encode(OP_BINARY, &big, Some([5, 6, 7, 8]), &mut wire);
        assert_eq!(wire[at + 1], 0x80 | 127);
        encode_frame(false, OP_BINARY, b"ab", Some([9, 9, 9, 9]), &mut wire);
        encode(OP_PONG, b"", Some([0, 0, 0, 1]), &mut wire);
        encode_frame(false, OP_CONTINUATION, b"cd", Some([1, 1, 1, 1]), &mut wire);
        encode_frame(true, OP_CONTINUATION, b"e", Some([2, 2, 2, 2]), &mut wire);
        encode(
            OP_CLOSE,
            &close_payload(1000, "bye"),
            Some([3, 3, 3, 3]),
            &mut wire,
        );
        let mut d = Decoder::new(true, 1 << 20);
        assert_eq!(
            decode_all(&mut d, &wire),
            vec![
                Message::Binary(mid),
                Message::Binary(big),
                Message::Pong(vec![]),
                Message::Binary(b"abcde".to_vec()),
                Message::Close(Some((1000, "bye".into()))),
            ]
        );
    }

    #[test]
    fn protocol_violations_are_refused() {
        let err = |from_client: bool, wire: &[u8]| {
            Decoder::new(from_client, 100)
                .decode(&mut BytesMut::from(wire))
                .unwrap_err()
        };
        assert_eq!(err(true, &[0x82, 0x01, 0]), WsError::Unmasked);
        assert_eq!(err(false, &[0x82, 0x81, 0, 0, 0, 0, 0]), WsError::Masked);
        assert_eq!(err(false, &[0xc2, 0x00]), WsError::Reserved(0x40));
        assert_eq!(err(false, &[0x83, 0x00]), WsError::Opcode(3));
        assert_eq!(err(false, &[0x09, 0x00]), WsError::Control(OP_PING));
        assert_eq!(err(false, &[0x80, 0x00]), WsError::StrayContinuation);
        assert_eq!(
            err(false, &[0x02, 0x01, b'a', 0x81, 0x01, b'b']),
            WsError::Interleaved(OP_TEXT)
        );
        assert_eq!(
            err(false, &[0x82, 127, 0, 0, 0, 1, 0, 0, 0, 0]),
            WsError::TooBig {
                len: 1 << 32,
                max: 100
            }
        );
        assert_eq!(err(false, &[0x88, 0x01, 3]), WsError::CloseLength);
        // A message grown past the limit by its fragments.
        let mut wire = Vec::new();
        encode_frame(false, OP_BINARY, &[0; 60], None, &mut wire);
        encode_frame(true, OP_CONTINUATION, &[0; 60], None, &mut wire);
        assert_eq!(err(false, &wire), WsError::TooBig { len: 120, max: 100 });
    }

    /// Random bytes and mangled valid frames, split at random: messages or an error, never a
    /// panic, and never a message bigger than the limit.
    #[test]
    fn mangled_input_never_panics() {
        let mut valid = Vec::new();
        encode_frame(false, OP_BINARY, &[1; 300], Some([1, 2, 3, 4]), &mut valid);
        encode(OP_PING, b"p", Some([5, 6, 7, 8]), &mut valid);
        encode_frame(
            true,
            OP_CONTINUATION,
            &[2; 70],
            Some([9, 9, 9, 9]),
            &mut valid,
        );
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut input = if round % 3 == 0 {
                (0..(next() % 300))
                    .map(|_| next() as u8)
                    .collect::<Vec<u8>>()
            } else {
                valid.clone()
            };
            if !input.is_empty() {
                for _ in 0..(next() % 4 + 1) {
                    let i = next() as usize % input.len();
                    input[i] ^= next() as u8;
                }
            }
            let split = next() as usize % (input.len() + 1);
            let mut dec = Decoder::new(true, 512);
            let mut buf = BytesMut::new();
            'parts: for part in [&input[..split], &input[split..]] {
                buf.extend_from_slice(part);
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(Message::Binary(m) | Message::Text(m))) => assert!(m.len() <= 512),
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(_) => break 'parts,
                    }
                }
            }
        }
    }
}
