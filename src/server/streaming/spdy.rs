//! SPDY/3.1 framing, as far as the streaming protocols of Kubernetes use it (the
//! `moby/spdystream` framer that client-go, the kubelet and containerd speak): data frames,
//! `SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `SETTINGS`, `PING`, `GOAWAY`, `HEADERS` and
//! `WINDOW_UPDATE`. Header blocks travel in one zlib stream per direction and connection, with
//! the SPDY/3 preset dictionary and a sync flush after each block ([`Encoder`], [`Decoder`]).
//! Flow control is not enforced: spdystream neither sends nor honors window updates.

use bytes::{Buf, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The zlib preset dictionary of SPDY/3 header blocks (the draft's section 2.6.10.1).
#[rustfmt::skip]
pub(super) const DICTIONARY: &[u8] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\x00\
    \x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eaccept-char\
    set\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\x00\x0daccept-\
    ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthorization\x00\x00\x00\
    \x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent-base\x00\x00\x00\x10c\
    ontent-encoding\x00\x00\x00\x10content-language\x00\x00\x00\x0econtent-length\x00\x00\
    \x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\x00\x00\x0dcontent-range\x00\x00\
    \x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\x00\x04etag\x00\x00\x00\x06expect\x00\
    \x00\x00\x07expires\x00\x00\x00\x04from\x00\x00\x00\x04host\x00\x00\x00\x08if-match\x00\
    \x00\x00\x11if-modified-since\x00\x00\x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\
    \x00\x00\x13if-unmodified-since\x00\x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\
    \x00\x00\x0cmax-forwards\x00\x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\
    \x00\x13proxy-authorization\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0br\
    etry-after\x00\x00\x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\
    \x11transfer-encoding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04va\
    ry\x00\x00\x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\
    \x06method\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\x00\
    \x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin10010120120220520630030230\
    3304305306307402405406407408409410411412413414415416417502504505203\x20Non-Authoritative\
    \x20Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\x20Request401\
    \x20Unauthorized403\x20Forbidden404\x20Not\x20Found500\x20Internal\x20Server\x20Error501\
    \x20Not\x20Implemented503\x20Service\x20UnavailableJan\x20Feb\x20Mar\x20Apr\x20May\x20Ju\
    n\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20Mon,\x20Tue,\x20Wed,\x20Thu,\
    \x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/html,image/png,image/jpg,image/gif,applicati\
    on/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflat\
    e,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.\
";

/// `SYN_STREAM`/`SYN_REPLY`/`HEADERS`/data flag: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// `SYN_STREAM` flag: the receiver must not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The largest payload a frame can say it has (a 24-bit length).
pub const MAX_FRAME_LENGTH: usize = (1 << 24) - 1;
/// The largest decompressed header block accepted: far above what the streaming protocols send.
const MAX_HEADER_BLOCK: usize = 256 << 10;
/// The most name/value pairs one header block may declare.
const MAX_HEADERS: usize = 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// Header names (lower case on the wire) and values; several values of one name are joined
/// with NUL bytes, as in the spec.
pub type Headers = Vec<(String, String)>;

/// One SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    /// Settings are read and ignored (the spdystream peers send none).
    Settings {
        entries: Vec<(u8, u32, u32)>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
}

/// `RST_STREAM` status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// A malformed or unsupported frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    #[error("SPDY control frame of version {0}, expected 3")]
    Version(u16),
    #[error("SPDY {kind} frame of {len} bytes is too short")]
    Short { kind: &'static str, len: usize },
    #[error("SPDY frame for stream 0 ({0})")]
    ZeroStream(&'static str),
    #[error("SPDY header block: {0}")]
    HeaderBlock(String),
    #[error("SPDY header compression: {0}")]
    Zlib(String),
    #[error("SPDY frame payload of {0} bytes is over the 24-bit limit")]
    TooLong(usize),
}

/// Writes frames, compressing header blocks in this direction's zlib stream.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        let mut zlib = Compress::new(Compression::best(), true);
        // A fresh stream always accepts a dictionary; with zlib-rs this cannot fail.
        let _ = zlib.set_dictionary(DICTIONARY);
        Self { zlib }
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), SpdyError> {
        match frame {
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                if data.len() > MAX_FRAME_LENGTH {
                    return Err(SpdyError::TooLong(data.len()));
                }
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                out.push(*flags);
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                Ok(())
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                flags,
                headers,
            } => {
                let block = self.header_block(headers)?;
                let mut p = Vec::with_capacity(10 + block.len());
                p.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                p.extend_from_slice(&(associated & 0x7fff_ffff).to_be_bytes());
                p.push((priority & 0x07) << 5);
                p.push(0); // slot
                p.extend_from_slice(&block);
                control(TYPE_SYN_STREAM, *flags, &p, out)
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            } => {
                let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&self.header_block(headers)?);
                control(TYPE_SYN_REPLY, *flags, &p, out)
            }
            Frame::Headers {
                stream,
                flags,
                headers,
            } => {
                let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&self.header_block(headers)?);
                control(TYPE_HEADERS, *flags, &p, out)
            }
            Frame::RstStream { stream, status } => {
                let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(TYPE_RST_STREAM, 0, &p, out)
            }
            Frame::Settings { entries } => {
                let mut p = (entries.len() as u32).to_be_bytes().to_vec();
                for (flag, id, value) in entries {
                    p.push(*flag);
                    p.extend_from_slice(&id.to_be_bytes()[1..]);
                    p.extend_from_slice(&value.to_be_bytes());
                }
                control(TYPE_SETTINGS, 0, &p, out)
            }
            Frame::Ping { id } => control(TYPE_PING, 0, &id.to_be_bytes(), out),
            Frame::GoAway { last_good, status } => {
                let mut p = (last_good & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                control(TYPE_GOAWAY, 0, &p, out)
            }
            Frame::WindowUpdate { stream, delta } => {
                let mut p = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
                p.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(TYPE_WINDOW_UPDATE, 0, &p, out)
            }
        }
    }

    /// The compressed header block: the pair count, then each length-prefixed name and value.
    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
            raw.extend_from_slice(value.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start = self.zlib.total_in();
        loop {
            let used = (self.zlib.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            self.zlib
                .compress_vec(&raw[used..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Zlib(e.to_string()))?;
            let used = (self.zlib.total_in() - start) as usize;
            // A sync flush is complete once it leaves output space unused.
            if used == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

fn control(kind: u16, flags: u8, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SpdyError> {
    if payload.len() > MAX_FRAME_LENGTH {
        return Err(SpdyError::TooLong(payload.len()));
    }
    out.extend_from_slice(&(0x8000u16 | 3).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(payload);
    Ok(())
}

/// Reads frames, decompressing header blocks in this direction's zlib stream.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Self {
            zlib: Decompress::new(true),
        }
    }

    /// The next whole frame at the front of `buf` (consumed), or `None` until more bytes come.
    /// Frames of unknown control types are skipped, as the spec asks.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, SpdyError> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
            if buf.len() < 8 + len {
                buf.reserve(8 + len - buf.len());
                return Ok(None);
            }
            let head = buf.split_to(8);
            let payload = buf.split_to(len);
            let flags = head[4];
            if head[0] & 0x80 == 0 {
                let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
                if stream == 0 {
                    return Err(SpdyError::ZeroStream("data"));
                }
                return Ok(Some(Frame::Data {
                    stream,
                    flags,
                    data: payload.to_vec(),
                }));
            }
            let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
            if version != 3 {
                return Err(SpdyError::Version(version));
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            if let Some(frame) = self.control(kind, flags, &payload)? {
                return Ok(Some(frame));
            }
        }
    }

    fn control(&mut self, kind: u16, flags: u8, p: &[u8]) -> Result<Option<Frame>, SpdyError> {
        let need = |name: &'static str, n: usize| {
            if p.len() < n {
                Err(SpdyError::Short {
                    kind: name,
                    len: p.len(),
                })
            } else {
                Ok(())
            }
        };
        let word = |at: usize| u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        let stream_at = |name: &'static str, at: usize| {
            let id = word(at) & 0x7fff_ffff;
            if id == 0 {
                Err(SpdyError::ZeroStream(name))
            } else {
                Ok(id)
            }
        };
        Ok(Some(match kind {
            TYPE_SYN_STREAM => {
                need("SYN_STREAM", 10)?;
                Frame::SynStream {
                    stream: stream_at("SYN_STREAM", 0)?,
                    associated: word(4) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    flags,
                    headers: self.headers(&p[10..])?,
                }
            }
            TYPE_SYN_REPLY => {
                need("SYN_REPLY", 4)?;
                Frame::SynReply {
                    stream: stream_at("SYN_REPLY", 0)?,
                    flags,
                    headers: self.headers(&p[4..])?,
                }
            }
            TYPE_HEADERS => {
                need("HEADERS", 4)?;
                Frame::Headers {
                    stream: stream_at("HEADERS", 0)?,
                    flags,
                    headers: self.headers(&p[4..])?,
                }
            }
            TYPE_RST_STREAM => {
                need("RST_STREAM", 8)?;
                Frame::RstStream {
                    stream: stream_at("RST_STREAM", 0)?,
                    status: word(4),
                }
            }
            TYPE_SETTINGS => {
                need("SETTINGS", 4)?;
                let n = word(0) as usize;
                if p.len() != 4 + n.saturating_mul(8) {
                    return Err(SpdyError::Short {
                        kind: "SETTINGS",
                        len: p.len(),
                    });
                }
                let entries = (0..n)
                    .map(|i| {
                        let at = 4 + 8 * i;
                        (p[at], word(at) & 0x00ff_ffff, word(at + 4))
                    })
                    .collect();
                Frame::Settings { entries }
            }
            TYPE_PING => {
                need("PING", 4)?;
                Frame::Ping { id: word(0) }
            }
            TYPE_GOAWAY => {
                need("GOAWAY", 8)?;
                Frame::GoAway {
                    last_good: word(0) & 0x7fff_ffff,
                    status: word(4),
                }
            }
            TYPE_WINDOW_UPDATE => {
                need("WINDOW_UPDATE", 8)?;
                Frame::WindowUpdate {
                    stream: word(0) & 0x7fff_ffff,
                    delta: word(4) & 0x7fff_ffff,
                }
            }
            _ => return Ok(None),
        }))
    }

    fn headers(&mut self, compressed: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(compressed)?;
        parse_header_block(&raw)
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        let start = self.zlib.total_in();
        loop {
            let used = (self.zlib.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::HeaderBlock(format!(
                        "decompresses to more than {MAX_HEADER_BLOCK} bytes"
                    )));
                }
                out.reserve(out.capacity());
            }
            let before = (self.zlib.total_in(), self.zlib.total_out());
            match self
                .zlib
                .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(DICTIONARY)
                        .map_err(|e| SpdyError::Zlib(format!("preset dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(SpdyError::Zlib(e.to_string())),
            }
            let used = (self.zlib.total_in() - start) as usize;
            if used == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if (self.zlib.total_in(), self.zlib.total_out()) == before && out.len() < out.capacity()
            {
                return Err(SpdyError::Zlib("no progress on the header block".into()));
            }
        }
    }
}

/// The name/value pairs of an uncompressed header block.
pub fn parse_header_block(mut raw: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |m: &str| SpdyError::HeaderBlock(m.to_string());
    let take = |raw: &mut &[u8], what: &str| -> Result<Vec<u8>, SpdyError> {
        if raw.len() < 4 {
            return Err(bad(&format!("truncated {what} length")));
        }
        let n = raw.get_u32() as usize;
        if raw.len() < n {
            return Err(bad(&format!("{what} of {n} bytes past the block's end")));
        }
        let v = raw[..n].to_vec();
        raw.advance(n);
        Ok(v)
    };
    if raw.len() < 4 {
        return Err(bad("truncated pair count"));
    }
    let n = raw.get_u32() as usize;
    if n > MAX_HEADERS {
        return Err(bad(&format!("{n} pairs, at most {MAX_HEADERS} accepted")));
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let name = String::from_utf8(take(&mut raw, "name")?)
            .map_err(|_| bad("a header name is not UTF-8"))?;
        let value = String::from_utf8(take(&mut raw, "value")?)
            .map_err(|_| bad(&format!("the value of {name:?} is not UTF-8")))?;
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad(&format!(
                "header name {name:?} is empty or not lower case"
            )));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// The first value of header `name` (lower case).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + x as u32) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        // 1423 bytes; its Adler-32 is the DICTID every spdystream header stream carries.
        assert_eq!(DICTIONARY.len(), 1423);
        assert_eq!(adler32(DICTIONARY), 0xe3c6_a7c2);
        assert!(DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(DICTIONARY.ends_with(b"utf-,*,enq=0."));
    }

    fn roundtrip(frames: &[Frame]) -> Vec<Frame> {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        for f in frames {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        // Fed one byte at a time: a frame is only returned whole.
        let mut buf = BytesMut::new();
        for b in wire {
            buf.extend_from_slice(&[b]);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn frames_roundtrip_with_one_header_stream_per_direction() {
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                priority: 7,
                flags: FLAG_FIN,
                headers: vec![
                    ("streamtype".into(), "stdout".into()),
                    ("port".into(), "8080".into()),
                ],
            },
            Frame::SynReply {
                stream: 3,
                flags: 0,
                headers: vec![],
            },
            Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            },
            Frame::Data {
                stream: 5,
                flags: 0,
                data: vec![0; 70_000],
            },
            Frame::RstStream {
                stream: 3,
                status: RST_CANCEL,
            },
            Frame::Settings {
                entries: vec![(0, 7, 65536)],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::Headers {
                stream: 1,
                flags: 0,
                headers: vec![("a".into(), "b\0c".into())],
            },
            Frame::WindowUpdate {
                stream: 1,
                delta: 1024,
            },
        ];
        assert_eq!(roundtrip(&frames), frames);
    }

    #[test]
    fn wire_layout_of_data_and_control_frames() {
        let mut enc = Encoder::new();
        let mut wire = Vec::new();
        enc.encode(
            &Frame::Data {
                stream: 5,
                flags: FLAG_FIN,
                data: b"ab".to_vec(),
            },
            &mut wire,
        )
        .unwrap();
        assert_eq!(wire, [0, 0, 0, 5, 1, 0, 0, 2, b'a', b'b']);
        wire.clear();
        enc.encode(&Frame::Ping { id: 7 }, &mut wire).unwrap();
        assert_eq!(wire, [0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 7]);
        wire.clear();
        // A header stream starts with a zlib header naming the dictionary (FDICT, DICTID).
        enc.encode(
            &Frame::SynReply {
                stream: 1,
                flags: 0,
                headers: vec![],
            },
            &mut wire,
        )
        .unwrap();
        let block = &wire[12..];
        assert_eq!(block[1] & 0x20, 0x20, "FDICT set");
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
    }

    #[test]
    fn a_dictionary_less_zlib_stream_is_read_too() {
        // Some peers compress without the dictionary: the FDICT bit decides.
        let raw = {
            let mut r = 1u32.to_be_bytes().to_vec();
            for s in ["streamtype", "data"] {
                r.extend_from_slice(&(s.len() as u32).to_be_bytes());
                r.extend_from_slice(s.as_bytes());
            }
            r
        };
        let mut c = Compress::new(Compression::fast(), true);
        let mut block = Vec::with_capacity(256);
        c.compress_vec(&raw, &mut block, FlushCompress::Sync)
            .unwrap();
        let mut wire = vec![0x80, 3, 0, 2, 0];
        wire.extend_from_slice(&((4 + block.len()) as u32).to_be_bytes()[1..]);
        wire.extend_from_slice(&9u32.to_be_bytes());
        wire.extend_from_slice(&block);
        let f = Decoder::new()
            .decode(&mut BytesMut::from(&wire[..]))
            .unwrap()
            .unwrap();
        assert_eq!(
            f,
            Frame::SynReply {
                stream: 9,
                flags: 0,
                headers: vec![("streamtype".into(), "data".into())]
            }
        );
    }

    #[test]
    fn bad_frames_are_named() {
        let mut d = Decoder::new();
        let e = d
            .decode(&mut BytesMut::from(
                &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..],
            ))
            .unwrap_err();
        assert_eq!(e, SpdyError::Version(2));
        let e = d
            .decode(&mut BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 2, 0, 1][..]))
            .unwrap_err();
        assert_eq!(
            e,
            SpdyError::Short {
                kind: "RST_STREAM",
                len: 2
            }
        );
        let e = d
            .decode(&mut BytesMut::from(&[0, 0, 0, 0, 0, 0, 0, 0][..]))
            .unwrap_err();
        assert_eq!(e, SpdyError::ZeroStream("data"));
        // An unknown control type is skipped; the next frame is returned.
        let mut b = BytesMut::from(&[0x80, 3, 0, 0x20, 0, 0, 0, 1, 9][..]);
        b.extend_from_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 2]);
        assert_eq!(d.decode(&mut b).unwrap(), Some(Frame::Ping { id: 2 }));
        // Header blocks: bounds, case.
        assert!(parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 9, b'a'])
            .unwrap_err()
            .to_string()
            .contains("name of 9 bytes past the block's end"));
        assert!(
            parse_header_block(&[0, 0, 0, 1, 0, 0, 0, 1, b'A', 0, 0, 0, 0])
                .unwrap_err()
                .to_string()
                .contains("not lower case")
        );
        assert!(parse_header_block(&[0xff, 0, 0, 0])
            .unwrap_err()
            .to_string()
            .contains("at most 1024"));
        // Garbage where a zlib stream should be.
        let mut wire = vec![0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1];
        wire.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert!(matches!(
            Decoder::new().decode(&mut BytesMut::from(&wire[..])),
            Err(SpdyError::Zlib(_))
        ));
    }

    /// Mutations of a valid session (flipped bytes, truncations) and random bytes: the
    /// decoder returns frames or an error, never panics. (The `streaming_frames` fuzz target
    /// does this at length.)
    #[test]
    fn mangled_input_never_panics() {
        let mut enc = Encoder::new();
        let mut valid = Vec::new();
        for f in [
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: b"{}".to_vec(),
            },
            Frame::GoAway {
                last_good: 1,
                status: 0,
            },
        ] {
            enc.encode(&f, &mut valid).unwrap();
        }
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..3000 {
            let mut input = if round % 3 == 0 {
                (0..(next() % 200))
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
                let cut = next() as usize % (input.len() + 1);
                input.truncate(cut.max(input.len() / 2));
            }
            let mut dec = Decoder::new();
            let mut buf = BytesMut::from(&input[..]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}
