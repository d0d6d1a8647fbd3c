//! The HTTP/1.1 wire format of a probe's GET, without I/O: the URL and its redirect resolution,
//! the request head, and [`ResponseReader`], an incremental parser of the response that keeps
//! the status, `Location` and at most [`MAX_BODY`] bytes of the body.
//!
//! Everything here reads bytes a pod's server chose, so every length and count from the wire is
//! bounded or checked: the head (with any 1xx answers before it) stays under [`MAX_HEAD`], at
//! most [`MAX_INFORMATIONAL`] 1xx answers, `Content-Length` must be one decimal number, chunk
//! sizes are parsed with checked arithmetic into a `u64` and their lines bounded by
//! [`MAX_CHUNK_LINE`], trailers are bounded like a head, and bytes beyond what is kept are
//! counted, never stored. The reader's buffer holds at most an unfinished head, chunk line or
//! trailer plus one read.
//!
//! This file uses only `std` and `httparse`, so the fuzz targets in `fuzz/` compile it on its
//! own (`cargo fuzz run http_response`, see CONTRIBUTING.md).

use std::fmt;

/// The kubelet keeps this much of a probe's response body.
pub const MAX_BODY: usize = 10 << 10;
/// The largest response head accepted, 1xx answers before it included (also the bound on a
/// chunked body's trailers).
pub const MAX_HEAD: usize = 64 << 10;
/// 1xx answers accepted before the real one (Go's transport allows 5).
pub const MAX_INFORMATIONAL: usize = 5;
/// The longest chunk-size line (Go's `net/http/internal` allows 4096 bytes).
pub const MAX_CHUNK_LINE: usize = 4096;
/// Header fields parsed in a response head.
const MAX_HEADERS: usize = 64;

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// From a probe's `scheme` (`HTTP` when unset; the API accepts `HTTP` and `HTTPS`).
    pub fn parse(s: Option<&str>) -> Scheme {
        match s {
            Some(s) if s.eq_ignore_ascii_case("https") => Scheme::Https,
            _ => Scheme::Http,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An absolute URL as the client needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub scheme: Scheme,
    /// A host name or an IP address (without brackets).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// The URL of a probe: `path` gets a leading `/` when it lacks one.
    pub fn new(scheme: Scheme, host: &str, port: u16, path: &str) -> Url {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let path = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        Url {
            scheme,
            host,
            port,
            path,
        }
    }

    /// `host:port`, bracketing an IPv6 address (the `Host` header and error texts).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Whether the host can go into a request: a name or an address of visible ASCII without
    /// the characters a URL reserves (Go's `url.Parse` refuses the rest).
    pub fn host_is_valid(&self) -> bool {
        !self.host.is_empty()
            && self
                .host
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"/?#@[]\\\"<>{}|^`".contains(&b))
    }

    /// Resolves a `Location` header against this URL; None when it is not an HTTP(S) URL.
    pub fn join(&self, location: &str) -> Option<Url> {
        let location = location.trim();
        for (prefix, scheme) in [("http://", Scheme::Http), ("https://", Scheme::Https)] {
            // Byte-wise: the header is the server's, and may put a multi-byte character where
            // a `str` slice would split it.
            if location
                .as_bytes()
                .get(..prefix.len())
                .is_some_and(|p| p.eq_ignore_ascii_case(prefix.as_bytes()))
            {
                return Self::parse_authority_path(scheme, &location[prefix.len()..]);
            }
        }
        if let Some(rest) = location.strip_prefix("//") {
            return Self::parse_authority_path(self.scheme, rest);
        }
        if location.contains("://") {
            return None;
        }
        let path = if location.starts_with('/') {
            location.to_string()
        } else {
            let base = self.path.split('?').next().unwrap_or("/");
            let dir = &base[..base.rfind('/').map(|i| i + 1).unwrap_or(0)];
            format!("{dir}{location}")
        };
        Some(Url {
            scheme: self.scheme,
            host: self.host.clone(),
            port: self.port,
            path,
        })
    }

    fn parse_authority_path(scheme: Scheme, rest: &str) -> Option<Url> {
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6.find(']')?;
            let port = match &v6[end + 1..] {
                "" => default_port,
                p => p.strip_prefix(':')?.parse().ok()?,
            };
            (v6[..end].to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()?),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() {
            return None;
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        Some(Url {
            scheme,
            host,
            port,
            path,
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.path
        )
    }
}

/// Headers Go's request writer sets itself and never takes from the caller's header map (and
/// `Connection`, which is always `close` here).
const OWN_HEADERS: [&str; 6] = [
    "host",
    "user-agent",
    "connection",
    "content-length",
    "transfer-encoding",
    "trailer",
];

/// The request head: `GET <path>`, `Host` (the spec's, else the URL's authority), the
/// `User-Agent` and `Accept: */*` defaults unless the spec sets them (an empty value in the spec
/// sends none), `Connection: close`, then the spec's other headers with Go's canonical names.
/// Names that are not HTTP tokens and values with control characters are left out, so that a
/// spec cannot inject a header or end the head early.
pub fn request_head(url: &Url, headers: &[(String, String)], user_agent: &str) -> Vec<u8> {
    let spec = |name: &'static str| {
        headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let mut out = Vec::with_capacity(160 + url.path.len());
    out.extend_from_slice(b"GET ");
    push_request_target(&mut out, &url.path);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    match spec("host")
        .next()
        .filter(|h| valid_value(h) && !h.is_empty())
    {
        Some(h) => out.extend_from_slice(h.as_bytes()),
        // The client refuses a host that is not valid before it connects; should one come
        // here anyway, its bytes cannot break the head.
        None => push_escaped(&mut out, url.authority().as_bytes(), b"-._~:[]%!$&'()*+,;="),
    }
    out.extend_from_slice(b"\r\n");
    let user_agent = spec("user-agent").next().unwrap_or(user_agent);
    if !user_agent.is_empty() && valid_value(user_agent) {
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(user_agent.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if spec("accept").next().is_none() {
        out.extend_from_slice(b"Accept: */*\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n");
    for (k, v) in headers {
        if OWN_HEADERS.iter().any(|o| k.eq_ignore_ascii_case(o))
            || (k.eq_ignore_ascii_case("accept") && v.is_empty())
            || !valid_name(k)
            || !valid_value(v)
        {
            continue;
        }
        push_canonical_name(&mut out, k);
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// A header name is a non-empty token (RFC 9110 `tchar`s).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A header value has no control characters but tab.
fn valid_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || !b.is_ascii_control())
}

/// Go's `CanonicalMIMEHeaderKey`: `x-custom-header` → `X-Custom-Header`.
fn push_canonical_name(out: &mut Vec<u8>, name: &str) {
    let mut upper = true;
    for b in name.bytes() {
        out.push(if upper {
            b.to_ascii_uppercase()
        } else {
            b.to_ascii_lowercase()
        });
        upper = b == b'-';
    }
}

/// The request target for a probe's path: the fragment dropped, and bytes a URI cannot carry
/// (spaces, controls, non-ASCII) percent-encoded, as Go's `url.URL` writes them.
fn push_request_target(out: &mut Vec<u8>, path: &str) {
    let path = path.split('#').next().unwrap_or("");
    if !path.starts_with('/') {
        out.push(b'/');
    }
    push_escaped(out, path.as_bytes(), b"-._~!$&'()*+,;=:@/?%[]");
}

/// `bytes` with every byte that is not alphanumeric or in `keep` percent-encoded.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8], keep: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

/// A response that is not HTTP, or not one a probe accepts: no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// The connection closed before any byte of a response.
    Eof,
    /// The connection closed in the middle of the response head.
    EofInHead,
    /// The head (1xx answers before it included) is larger than [`MAX_HEAD`].
    HeadTooLarge,
    /// More than [`MAX_INFORMATIONAL`] 1xx answers.
    TooManyInformational,
    /// The head does not parse, or frames the body in a way that cannot be read.
    Malformed(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Eof => f.write_str("EOF"),
            WireError::EofInHead => f.write_str("unexpected EOF in the response head"),
            WireError::HeadTooLarge => write!(f, "response head larger than {MAX_HEAD} bytes"),
            WireError::TooManyInformational => f.write_str("too many 1xx informational responses"),
            WireError::Malformed(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for WireError {}

/// What [`ResponseReader::process`] needs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More bytes (or the end of the connection).
    NeedMore,
    /// The response is read as far as a probe reads it: [`ResponseReader::finish`].
    Done,
}

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// `Content-Length`: this many bytes are still to come.
    Length(u64),
    /// Neither length nor chunks: the body ends with the connection.
    UntilEof,
    Chunked(Chunk),
}

/// Where a chunked body's decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// A chunk-size line.
    Size,
    /// This many bytes of chunk data are still to come.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk; this many bytes of them so far.
    Trailers(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(Framing),
    Done,
}

/// The response as a probe keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub status: u16,
    /// The first `Location` header.
    pub location: Option<String>,
    /// The first [`MAX_BODY`] bytes of the body.
    pub body: Vec<u8>,
    /// Reading the body failed after the head: what went wrong.
    pub body_error: Option<String>,
    /// The whole response was read to its end as framed: the connection may close in order.
    /// False when the body was cut at [`MAX_BODY`] or failed.
    pub complete: bool,
}

/// An incremental response parser: bytes go into [`buffer`](Self::buffer) as they are read,
/// [`process`](Self::process) consumes them, and once it says [`Step::Done`],
/// [`finish`](Self::finish) gives the response.
#[derive(Debug)]
pub struct ResponseReader {
    buf: Vec<u8>,
    state: State,
    informational: usize,
    /// Head bytes already consumed by 1xx answers (they count against [`MAX_HEAD`]).
    head_used: usize,
    resp: Response,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseReader {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(1024),
            state: State::Head,
            informational: 0,
            head_used: 0,
            resp: Response::default(),
        }
    }

    /// Where the next read goes (append only).
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Whether the response head is in (an I/O error after it is a body error, not a failure).
    pub fn head_done(&self) -> bool {
        self.state != State::Head
    }

    /// Consumes what is in the buffer; `eof` says the connection has ended.
    pub fn process(&mut self, eof: bool) -> Result<Step, WireError> {
        loop {
            match self.state {
                State::Head => {
                    if !self.parse_head()? {
                        if eof {
                            return Err(if self.buf.is_empty() && self.head_used == 0 {
                                WireError::Eof
                            } else {
                                WireError::EofInHead
                            });
                        }
                        return Ok(Step::NeedMore);
                    }
                }
                State::Body(framing) => {
                    if !self.read_body(framing, eof) {
                        return Ok(Step::NeedMore);
                    }
                }
                State::Done => return Ok(Step::Done),
            }
        }
    }

    /// The body could not be read further (`error`, an I/O error after the head).
    pub fn fail_body(&mut self, error: String) {
        self.fail(error);
    }

    /// The response read so far.
    pub fn finish(self) -> Response {
        self.resp
    }

    /// Parses one head from the buffer; false when it is not all there yet.
    fn parse_head(&mut self) -> Result<bool, WireError> {
        let mut hdrs = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut hdrs);
        let len = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if self.head_used.saturating_add(self.buf.len()) > MAX_HEAD {
                    return Err(WireError::HeadTooLarge);
                }
                return Ok(false);
            }
            Err(e) => return Err(WireError::Malformed(e.to_string())),
        };
        self.head_used = self.head_used.saturating_add(len);
        if self.head_used > MAX_HEAD {
            return Err(WireError::HeadTooLarge);
        }
        let status = resp.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            self.informational += 1;
            if self.informational > MAX_INFORMATIONAL {
                return Err(WireError::TooManyInformational);
            }
            self.buf.drain(..len);
            return Ok(true);
        }
        let headers = &*resp.headers;
        let values = |name: &'static str| {
            headers
                .iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        self.resp.status = status;
        self.resp.location = values("location")
            .next()
            .map(|v| String::from_utf8_lossy(v).into_owned());
        let framing = if status == 101 || status == 204 || status == 304 {
            Framing::Length(0)
        } else if let Some(te) = values("transfer-encoding").next_back() {
            // Chunked must be the last coding; any other ends with the connection.
            let last = te.rsplit(|&b| b == b',').next().unwrap_or_default();
            if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked(Chunk::Size)
            } else {
                Framing::UntilEof
            }
        } else {
            let mut length = None;
            for v in values("content-length") {
                let n = parse_content_length(v)?;
                if length.is_some_and(|l| l != n) {
                    return Err(WireError::Malformed(
                        "conflicting Content-Length headers".into(),
                    ));
                }
                length = Some(n);
            }
            length.map_or(Framing::UntilEof, Framing::Length)
        };
        self.buf.drain(..len);
        self.state = State::Body(framing);
        Ok(true)
    }

    /// Reads body bytes from the buffer; false when it needs more.
    fn read_body(&mut self, framing: Framing, eof: bool) -> bool {
        match framing {
            Framing::Length(0) => self.end(true),
            Framing::Length(left) => {
                let n = clamp(left, self.buf.len());
                self.keep(n);
                self.buf.drain(..n);
                let left = left - n as u64;
                if left == 0 {
                    self.end(true)
                } else if self.body_full() {
                    self.end(false)
                } else if eof {
                    self.fail(format!(
                        "unexpected EOF: {left} bytes of the body's Content-Length missing"
                    ))
                } else {
                    self.state = State::Body(Framing::Length(left));
                    false
                }
            }
            Framing::UntilEof => {
                let n = self.buf.len();
                self.keep(n);
                self.buf.clear();
                if eof {
                    self.end(true)
                } else if self.body_full() {
                    self.end(false)
                } else {
                    false
                }
            }
            Framing::Chunked(chunk) => self.read_chunked(chunk, eof),
        }
    }

    /// One step of the chunked decoder; false when it needs more.
    fn read_chunked(&mut self, chunk: Chunk, eof: bool) -> bool {
        let next = match chunk {
            Chunk::Size => match self.take_line(MAX_CHUNK_LINE) {
                Line::Some(line) => match parse_chunk_size(&line) {
                    Ok(0) => Chunk::Trailers(0),
                    Ok(size) => Chunk::Data(size),
                    Err(e) => return self.fail(e),
                },
                Line::TooLong => return self.fail("chunk size line too long".into()),
                Line::Partial => return self.need_more(eof, chunk),
            },
            Chunk::Data(left) => {
                let n = clamp(left, self.buf.len());
                self.keep(n);
                self.buf.drain(..n);
                let left = left - n as u64;
                if self.body_full() {
                    return self.end(false);
                }
                if left > 0 {
                    return self.need_more(eof, Chunk::Data(left));
                }
                Chunk::DataEnd
            }
            Chunk::DataEnd => {
                if self.buf.len() < 2 {
                    return self.need_more(eof, chunk);
                }
                if &self.buf[..2] != b"\r\n" {
                    return self.fail("malformed chunked encoding".into());
                }
                self.buf.drain(..2);
                Chunk::Size
            }
            Chunk::Trailers(used) => {
                let room = MAX_HEAD.saturating_sub(used);
                match self.take_line(room) {
                    Line::Some(line) if line.is_empty() => return self.end(true),
                    Line::Some(line) => Chunk::Trailers(used + line.len() + 2),
                    Line::TooLong => return self.fail("chunked trailers too large".into()),
                    Line::Partial => return self.need_more(eof, chunk),
                }
            }
        };
        self.state = State::Body(Framing::Chunked(next));
        true
    }

    /// Waits for more of a chunked body, or fails it at the end of the connection.
    fn need_more(&mut self, eof: bool, chunk: Chunk) -> bool {
        if eof {
            return self.fail("unexpected EOF in a chunked body".into());
        }
        self.state = State::Body(Framing::Chunked(chunk));
        false
    }

    /// Takes one line (without its CRLF or LF) off the buffer, if it is there and at most
    /// `max` bytes long.
    fn take_line(&mut self, max: usize) -> Line {
        let window = &self.buf[..self.buf.len().min(max.saturating_add(2))];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = if i > 0 && self.buf[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                let line = self.buf[..end].to_vec();
                self.buf.drain(..=i);
                Line::Some(line)
            }
            None if window.len() > max => Line::TooLong,
            None => Line::Partial,
        }
    }

    /// Keeps the first `n` bytes of the buffer, as far as [`MAX_BODY`] allows.
    fn keep(&mut self, n: usize) {
        let room = MAX_BODY - self.resp.body.len();
        self.resp.body.extend_from_slice(&self.buf[..n.min(room)]);
    }

    fn body_full(&self) -> bool {
        self.resp.body.len() >= MAX_BODY
    }

    /// The body ends here: `complete` when read to its framed end (not cut at [`MAX_BODY`]).
    fn end(&mut self, complete: bool) -> bool {
        self.resp.complete = complete;
        self.buf = Vec::new();
        self.state = State::Done;
        true
    }

    /// The body cannot be read further: `error`, and what came before it.
    fn fail(&mut self, error: String) -> bool {
        self.resp.body_error = Some(error);
        self.end(false)
    }
}

enum Line {
    Some(Vec<u8>),
    TooLong,
    Partial,
}

/// `min(left, available)` as a `usize`.
fn clamp(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |l| l.min(available))
}

/// A `Content-Length` value: one decimal number that fits an `i64` (as Go parses it).
fn parse_content_length(v: &[u8]) -> Result<u64, WireError> {
    let v = v.trim_ascii();
    let bad = || {
        WireError::Malformed(format!(
            "bad Content-Length {:?}",
            String::from_utf8_lossy(v)
        ))
    };
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    v.iter()
        .try_fold(0u64, |n, &d| {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        })
        .filter(|&n| i64::try_from(n).is_ok())
        .ok_or_else(bad)
}

/// A chunk-size line: hex digits (at most 16, as a `u64` holds), then optional extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, String> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() {
        return Err("empty chunk size".into());
    }
    let mut size: u64 = 0;
    for &b in digits {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return Err(format!("invalid byte {b:#04x} in a chunk size")),
        };
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(d)))
            .ok_or("chunk size too large")?;
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes, then the end of the connection.
    fn read(wire: &[u8], step: usize) -> Result<Response, WireError> {
        let mut r = ResponseReader::new();
        for piece in wire.chunks(step.max(1)) {
            r.buffer().extend_from_slice(piece);
            if r.process(false)? == Step::Done {
                return Ok(r.finish());
            }
        }
        r.process(true)?;
        Ok(r.finish())
    }

    /// Every split of `wire` gives the same result.
    fn read_all_ways(wire: &[u8]) -> Result<Response, WireError> {
        let whole = read(wire, wire.len());
        for step in 1..wire.len().min(40) {
            assert_eq!(read(wire, step), whole, "split every {step} bytes");
        }
        whole
    }

    #[test]
    fn lengths_chunks_and_eof_frame_the_body() {
        let r =
            read_all_ways(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nLocation: /x\r\n\r\nokEXTRA")
                .unwrap();
        assert_eq!(
            (r.status, r.body.as_slice(), r.location.as_deref()),
            (200, &b"ok"[..], Some("/x"))
        );
        assert!(r.complete && r.body_error.is_none());
        let r = read_all_ways(
            b"HTTP/1.1 500 E\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3;x=y\r\nbad\r\n1\r\n!\r\n0\r\nT: 1\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (500, &b"bad!"[..]));
        assert!(r.complete, "{r:?}");
        let r = read_all_ways(b"HTTP/1.0 200 OK\r\n\r\nuntil the end").unwrap();
        assert_eq!(r.body, b"until the end");
        assert!(r.complete);
        let r = read_all_ways(b"HTTP/1.1 204 No\r\nContent-Length: 5\r\n\r\n").unwrap();
        assert!(r.body.is_empty() && r.complete);
        let r = read_all_ways(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Hints\r\nLink: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.status, 200);
    }

    #[test]
    fn sizes_from_the_wire_are_checked() {
        // The size that overflowed `start + size`: the data that came is kept, the end of the
        // connection is a body error.
        let r = read_all_ways(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc",
        )
        .unwrap();
        assert_eq!(r.body, b"abc");
        assert_eq!(
            r.body_error.as_deref(),
            Some("unexpected EOF in a chunked body")
        );
        assert!(!r.complete);
        let r = read_all_ways(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc",
        )
        .unwrap();
        assert_eq!(r.body_error.as_deref(), Some("chunk size too large"));
        let r =
            read_all_ways(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n")
                .unwrap();
        assert_eq!(r.body_error.as_deref(), Some("malformed chunked encoding"));
        let r =
            read_all_ways(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").unwrap();
        assert!(r.body_error.unwrap().starts_with("invalid byte 0x7a"));
        let long = format!(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            "0".repeat(MAX_CHUNK_LINE + 10)
        );
        let r = read_all_ways(long.as_bytes()).unwrap();
        assert_eq!(r.body_error.as_deref(), Some("chunk size line too long"));
        let r = read_all_ways(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").unwrap();
        assert_eq!(r.body, b"abc");
        assert!(r.body_error.unwrap().starts_with("unexpected EOF: 7 bytes"));
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551616\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775808\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"NOT HTTP\r\n\r\n",
        ] {
            assert!(
                matches!(read_all_ways(bad), Err(WireError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn heads_bodies_and_1xx_answers_are_bounded() {
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "p".repeat(MAX_HEAD));
        assert_eq!(read(huge.as_bytes(), 4096), Err(WireError::HeadTooLarge));
        let endless = format!("HTTP/1.1 200 OK\r\n{}", "X".repeat(MAX_HEAD + 1));
        assert_eq!(read(endless.as_bytes(), 1000), Err(WireError::HeadTooLarge));
        let many = "HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INFORMATIONAL + 1);
        assert_eq!(
            read(many.as_bytes(), 7),
            Err(WireError::TooManyInformational)
        );
        assert_eq!(read(b"", 1), Err(WireError::Eof));
        assert_eq!(read(b"HTTP/1.1 200", 1), Err(WireError::EofInHead));
        // Bodies are kept to MAX_BODY, however framed; the rest is not read.
        let big = "x".repeat(MAX_BODY * 3);
        for wire in [
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{big}",
                big.len()
            ),
            format!("HTTP/1.1 200 OK\r\n\r\n{big}"),
            format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
                big.len()
            ),
        ] {
            let r = read(wire.as_bytes(), 1500).unwrap();
            assert_eq!(r.body.len(), MAX_BODY);
            assert!(
                r.body_error.is_none() && !r.complete,
                "cut, so not complete"
            );
        }
    }

    #[test]
    fn request_heads_follow_go() {
        let url = Url::new(Scheme::Http, "10.0.0.1", 80, "/a b/é?q=1#frag");
        let headers = [
            ("x-custom-header".to_string(), "v".to_string()),
            ("Host".into(), "example".into()),
            ("Bad Name".into(), "dropped".into()),
            ("X-Bad-Value".into(), "a\r\nInjected: 1".into()),
            ("Content-Length".into(), "5".into()),
            ("Accept".into(), String::new()),
        ];
        let head = String::from_utf8(request_head(&url, &headers, "kube-probe/1.33")).unwrap();
        assert_eq!(
            head,
            "GET /a%20b/%C3%A9?q=1 HTTP/1.1\r\nHost: example\r\nUser-Agent: kube-probe/1.33\r\n\
             Connection: close\r\nX-Custom-Header: v\r\n\r\n"
        );
        let head = String::from_utf8(request_head(
            &Url::new(Scheme::Http, "::1", 8080, "x"),
            &[("User-Agent".into(), String::new())],
            "kube-probe/1.33",
        ))
        .unwrap();
        assert_eq!(
            head,
            "GET /x HTTP/1.1\r\nHost: [::1]:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn hosts_that_cannot_go_on_the_wire_are_refused_and_never_break_a_head() {
        let bad = Url::new(Scheme::Http, "evil\r\nInjected: 1", 80, "/");
        assert!(!bad.host_is_valid());
        let head = String::from_utf8(request_head(&bad, &[], "ua")).unwrap();
        assert!(
            head.starts_with("GET / HTTP/1.1\r\nHost: [evil%0D%0AInjected:%201]:80\r\n"),
            "{head}"
        );
        for ok in ["10.0.0.1", "::1", "fe80::1%eth0", "web.default.svc"] {
            assert!(Url::new(Scheme::Http, ok, 80, "/").host_is_valid(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a@b", "é"] {
            assert!(
                !Url::new(Scheme::Http, bad, 80, "/").host_is_valid(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn locations_resolve_like_a_browser() {
        // Multi-byte characters where a scheme would be: no slicing inside one.
        let base = Url::new(Scheme::Http, "10.0.0.1", 8080, "/");
        assert_eq!(base.join("ééééé").unwrap().path, "/ééééé");
        assert_eq!(base.join("httpé://x").map(|u| u.host), None);
        let base = Url::new(Scheme::Http, "10.0.0.1", 8080, "/a/b?q");
        assert_eq!(base.join("c").unwrap().path, "/a/c");
        assert_eq!(
            base.join("/d").unwrap().to_string(),
            "http://10.0.0.1:8080/d"
        );
        assert_eq!(
            base.join("https://[::1]:8443/z").unwrap().to_string(),
            "https://[::1]:8443/z"
        );
        assert_eq!(base.join("//other/p").unwrap().host, "other");
        assert!(base.join("ftp://x/").is_none());
        assert!(base.join("http://[::1/").is_none());
        assert!(base.join("http://h:99999/").is_none());
    }
}
