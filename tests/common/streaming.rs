//! Clients of the kubelet API's streaming endpoints for the tests and the exec benchmark:
//! upgrade requests over the test TLS client, websocket messages (masked, as a client sends
//! them) and a SPDY/3.1 session, plain or carried in websocket binary messages (the
//! port-forward tunnel). The wire formats come from the kubelet's own
//! `server::streaming::{websocket, spdy}`; containerd and kubectl are the independent peers.

use std::io::{Read, Write};

use bytes::BytesMut;
use kubelet_rs::server::streaming::spdy::{self, Frame};
use kubelet_rs::server::streaming::websocket::{self, Message};
use serde_json::Value;

use super::kubeletapi::{KubeletApi, TlsStream};

/// Sends an upgrade request; returns the status, the response head and the connection.
pub fn upgrade(
    api: &KubeletApi,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, TlsStream) {
    let mut s = api.connect().expect("connect to the kubelet API");
    let mut h = vec![("Connection", "Upgrade")];
    h.extend_from_slice(headers);
    s.write_all(api.head(method, path, &h, 0).as_bytes())
        .unwrap();
    s.flush().unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head, s)
}

/// The body after a non-101 head (the server closes the connection).
pub fn rest(s: &mut TlsStream) -> String {
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    String::from_utf8_lossy(&body).into_owned()
}

/// Reads more bytes into `buf`; false at EOF (or a close without close_notify).
pub fn fill<S: Read>(s: &mut S, buf: &mut BytesMut) -> bool {
    let mut tmp = [0u8; 16 << 10];
    match s.read(&mut tmp) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

pub fn ws_send<S: Write>(s: &mut S, payload: &[u8]) {
    let mut w = Vec::new();
    websocket::encode(
        websocket::OP_BINARY,
        payload,
        Some([0x12, 0x34, 0x56, 0x78]),
        &mut w,
    );
    s.write_all(&w).unwrap();
    s.flush().unwrap();
}

/// A websocket exec session's result: bytes per channel, and whether it closed normally.
#[derive(Default, Debug)]
pub struct Session {
    pub channels: [Vec<u8>; 5],
    pub close: Option<Option<(u16, String)>>,
}

impl Session {
    pub fn text(&self, ch: usize) -> String {
        String::from_utf8_lossy(&self.channels[ch]).into_owned()
    }
    pub fn status(&self) -> Value {
        serde_json::from_slice(&self.channels[3])
            .unwrap_or_else(|e| panic!("status on channel 3 {:?}: {e}", self.text(3)))
    }
}

/// Reads websocket messages until the server closes; answers its pings.
pub fn ws_read_all(s: &mut TlsStream) -> Session {
    let mut dec = websocket::Decoder::new(false, 16 << 20);
    let mut buf = BytesMut::new();
    let mut out = Session::default();
    loop {
        match dec.decode(&mut buf).expect("a valid websocket stream") {
            Some(Message::Binary(m)) => {
                if let Some((&ch, data)) = m.split_first() {
                    out.channels[ch as usize].extend_from_slice(data);
                }
            }
            Some(Message::Close(c)) => {
                out.close = Some(c);
                return out;
            }
            Some(Message::Ping(p)) => {
                let mut w = Vec::new();
                websocket::encode(websocket::OP_PONG, &p, Some([1, 2, 3, 4]), &mut w);
                let _ = s.write_all(&w);
            }
            Some(_) => {}
            None => {
                if !fill(s, &mut buf) {
                    return out;
                }
            }
        }
    }
}

pub fn ws_headers(protocol: &str) -> Vec<(&str, &str)> {
    vec![
        ("Upgrade", "websocket"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Protocol", protocol),
    ]
}

/// A SPDY client session: frames read until the server closes the connection.
pub struct SpdyClient<S = TlsStream> {
    s: S,
    enc: spdy::Encoder,
    dec: spdy::Decoder,
    buf: BytesMut,
    /// Wraps every write in a websocket binary message (the port-forward tunnel).
    tunnel: Option<websocket::Decoder>,
    raw: BytesMut,
}

impl<S: Read + Write> SpdyClient<S> {
    pub fn new(s: S, tunnel: bool) -> Self {
        SpdyClient {
            s,
            enc: spdy::Encoder::new(),
            dec: spdy::Decoder::new(),
            buf: BytesMut::new(),
            tunnel: tunnel.then(|| websocket::Decoder::new(false, 16 << 20)),
            raw: BytesMut::new(),
        }
    }

    pub fn send(&mut self, f: &Frame) {
        let mut w = Vec::new();
        self.enc.encode(f, &mut w).unwrap();
        if self.tunnel.is_some() {
            ws_send(&mut self.s, &w);
        } else {
            self.s.write_all(&w).unwrap();
            self.s.flush().unwrap();
        }
    }

    pub fn open(&mut self, id: u32, headers: &[(&str, &str)]) {
        self.send(&Frame::SynStream {
            stream: id,
            associated: 0,
            priority: 0,
            flags: 0,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        });
    }

    /// The next frame; `None` once the connection ends.
    pub fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).expect("valid SPDY") {
                if let Frame::Ping { id } = f {
                    self.send(&Frame::Ping { id });
                    continue;
                }
                return Some(f);
            }
            match &mut self.tunnel {
                None => {
                    if !fill(&mut self.s, &mut self.buf) {
                        return None;
                    }
                }
                Some(dec) => match dec.decode(&mut self.raw).expect("valid websocket") {
                    Some(Message::Binary(m)) => self.buf.extend_from_slice(&m),
                    Some(Message::Close(_)) => return None,
                    Some(_) => {}
                    None => {
                        if !fill(&mut self.s, &mut self.raw) {
                            return None;
                        }
                    }
                },
            }
        }
    }
}

/// A SPDY upgrade straight to a runtime streaming URL (`http://host:port/path`), as the
/// kubelet makes it: the connection after the `101`, or the runtime's answer as an error.
pub fn upgrade_runtime(url: &str, protocol: &str) -> Result<std::net::TcpStream, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http URL: {url}"))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = std::net::TcpStream::connect(host).map_err(|e| format!("{host}: {e}"))?;
    let _ = s.set_nodelay(true);
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if head.split_whitespace().nth(1) != Some("101") {
        return Err(head);
    }
    Ok(s)
}
