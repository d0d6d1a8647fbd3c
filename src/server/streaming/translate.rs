//! Protocols terminated at the kubelet because the runtime does not speak them.
//!
//! [`serve_v5`]: a websocket `v5.channel.k8s.io` client (one binary message per write, the
//! first byte its channel: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, 255 CLOSE) against
//! a SPDY/3.1 `v4.channel.k8s.io` session with the runtime (one stream per channel, opened by
//! us with a `streamtype` header: error, stdin, stdout, stderr, resize). A CLOSE naming stdin
//! becomes a FIN on the stdin stream, which is what lets `cat` or `tar` in the container see
//! end of input. The runtime's v4 status (a `metav1.Status` JSON) goes out on channel 3 as it
//! came; the websocket closes normally once the runtime ends the session.
//!
//! [`serve_tunnel`]: the port-forward tunnel (`SPDY/3.1+portforward.k8s.io`), whose binary
//! messages carry a SPDY session byte for byte: it is unwrapped onto a SPDY upgrade with the
//! runtime's port-forward URL.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Mutex;

use super::proxy::{self, failed, relay};
use super::spdy::{self, Frame};
use super::websocket::{self, Message};
use super::{
    text, StreamOptions, PROTOCOL_PORT_FORWARD, PROTOCOL_TUNNEL, PROTOCOL_V4, PROTOCOL_V5,
};

/// The largest websocket message accepted from a client (kubectl writes 32 KiB at most).
const MAX_MESSAGE: usize = 16 << 20;
/// v5 channel numbers.
pub const CH_STDIN: u8 = 0;
pub const CH_STDOUT: u8 = 1;
pub const CH_STDERR: u8 = 2;
pub const CH_ERROR: u8 = 3;
pub const CH_RESIZE: u8 = 4;
pub const CH_CLOSE: u8 = 255;

/// The handshake answer for a websocket request, or the 400 that refuses it.
fn websocket_accept(h: &HeaderMap, protocol: &str) -> Result<Response, Box<Response>> {
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            Box::new(text(
                StatusCode::BAD_REQUEST,
                "websocket: missing Sec-WebSocket-Key\n",
            ))
        })?;
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        let mut r = text(
            StatusCode::BAD_REQUEST,
            "websocket: unsupported Sec-WebSocket-Version, 13 expected\n",
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(r));
    }
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let hs = r.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&websocket::accept_key(key)) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Ok(v) = HeaderValue::from_str(protocol) {
        hs.insert(header::SEC_WEBSOCKET_PROTOCOL, v);
    }
    Ok(r)
}

/// The headers of a SPDY upgrade to the runtime speaking `protocol`.
fn spdy_upgrade_headers(protocol: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    if let Ok(v) = HeaderValue::from_str(protocol) {
        h.insert("x-stream-protocol-version", v);
    }
    h
}

/// Opens a SPDY session with the runtime at `url`, then answers the client's websocket
/// handshake with `ws_protocol` and runs `bridge` over the two connections. A runtime that
/// refuses the upgrade has its answer passed back, so the client sees an upgrade failure
/// (and kubectl falls back to SPDY).
async fn serve_bridged<F, Fut>(
    url: String,
    mut req: Request,
    ws_protocol: &'static str,
    spdy_protocol: &'static str,
    bridge: F,
) -> Response
where
    F: FnOnce(TokioIo<hyper::upgrade::Upgraded>, TokioIo<hyper::upgrade::Upgraded>) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let accept = match websocket_accept(req.headers(), ws_protocol) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let client = hyper::upgrade::on(&mut req);
    let mut resp = match proxy::send(&url, Method::POST, &spdy_upgrade_headers(spdy_protocol)).await
    {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return relay(resp);
    }
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        match tokio::try_join!(client, backend) {
            Ok((c, b)) => bridge(TokioIo::new(c), TokioIo::new(b)).await,
            Err(e) => tracing::debug!(error = %e, "streaming upgrade did not complete"),
        }
    });
    accept
}

/// Serves a `v5.channel.k8s.io` websocket exec or attach against the runtime's SPDY `url`.
pub async fn serve_v5(url: String, opts: StreamOptions, req: Request) -> Response {
    serve_bridged(url, req, PROTOCOL_V5, PROTOCOL_V4, move |c, b| {
        bridge_v5(c, b, opts)
    })
    .await
}

/// Serves a port-forward websocket tunnel against the runtime's port-forward `url`.
pub async fn serve_tunnel(url: String, req: Request) -> Response {
    serve_bridged(
        url,
        req,
        PROTOCOL_TUNNEL,
        PROTOCOL_PORT_FORWARD,
        bridge_tunnel,
    )
    .await
}

/// The client's side: a websocket we write unmasked frames to.
struct WsWriter<W> {
    w: Mutex<(W, bool)>,
}

impl<W: AsyncWrite + Unpin> WsWriter<W> {
    fn new(w: W) -> Self {
        Self {
            w: Mutex::new((w, false)),
        }
    }

    async fn send(&self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut g = self.w.lock().await;
        if g.1 {
            return Ok(()); // closed: nothing more may follow a close frame
        }
        let mut buf = Vec::with_capacity(payload.len() + 10);
        websocket::encode(opcode, payload, None, &mut buf);
        g.0.write_all(&buf).await?;
        g.0.flush().await
    }

    async fn channel(&self, ch: u8, data: &[u8]) -> std::io::Result<()> {
        let mut m = Vec::with_capacity(data.len() + 1);
        m.push(ch);
        m.extend_from_slice(data);
        self.send(websocket::OP_BINARY, &m).await
    }

    async fn close(&self, code: u16, reason: &str) {
        let _ = self
            .send(websocket::OP_CLOSE, &websocket::close_payload(code, reason))
            .await;
        let mut g = self.w.lock().await;
        g.1 = true;
        let _ = g.0.shutdown().await;
    }
}

/// The runtime's side: a SPDY session we write frames to.
struct SpdyWriter<W> {
    w: Mutex<(W, spdy::Encoder)>,
}

impl<W: AsyncWrite + Unpin> SpdyWriter<W> {
    async fn send(&self, frame: &Frame) -> std::io::Result<()> {
        let mut g = self.w.lock().await;
        let mut buf = Vec::new();
        g.1.encode(frame, &mut buf)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        g.0.write_all(&buf).await?;
        g.0.flush().await
    }
}

/// The next websocket message from the client; `None` at EOF.
async fn next_message<R: AsyncRead + Unpin>(
    r: &mut R,
    dec: &mut websocket::Decoder,
    buf: &mut BytesMut,
) -> Result<Option<Message>, String> {
    loop {
        match dec.decode(buf) {
            Ok(Some(m)) => return Ok(Some(m)),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        buf.reserve(16 << 10);
        match r.read_buf(buf).await {
            Ok(0) => return Ok(None),
            Ok(_) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The SPDY stream IDs of one v4 session, as client-go opens them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streams {
    pub error: u32,
    pub stdin: Option<u32>,
    pub stdout: Option<u32>,
    pub stderr: Option<u32>,
    pub resize: Option<u32>,
}

impl Streams {
    /// IDs 1, 3, 5, ... in client-go's order: error, stdin, stdout, stderr, resize.
    pub fn plan(opts: StreamOptions) -> (Self, Vec<Frame>) {
        let mut next = 1u32;
        let mut frames = Vec::new();
        let mut open = |kind: &str, on: bool| -> Option<u32> {
            if !on {
                return None;
            }
            let id = next;
            next += 2;
            frames.push(Frame::SynStream {
                stream: id,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), kind.into())],
            });
            Some(id)
        };
        let error = open("error", true).unwrap_or(1);
        let s = Streams {
            error,
            stdin: open("stdin", opts.stdin),
            stdout: open("stdout", opts.stdout),
            stderr: open("stderr", opts.stderr),
            resize: open("resize", opts.tty),
        };
        (s, frames)
    }

    /// The v5 channel of a stream the runtime writes.
    pub fn channel_of(&self, stream: u32) -> Option<u8> {
        if stream == self.error {
            Some(CH_ERROR)
        } else if Some(stream) == self.stdout {
            Some(CH_STDOUT)
        } else if Some(stream) == self.stderr {
            Some(CH_STDERR)
        } else {
            None
        }
    }

    fn count(&self) -> usize {
        1 + [self.stdin, self.stdout, self.stderr, self.resize]
            .iter()
            .filter(|s| s.is_some())
            .count()
    }
}

/// What one client message asks of the SPDY session.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Send these frames to the runtime.
    Send(Vec<Frame>),
    /// Nothing to do (an empty message, a channel the session does not have).
    Ignore,
}

/// Maps one v5 binary message to frames; `stdin_open` tracks the CLOSE of stdin.
pub fn client_message(streams: &Streams, msg: &[u8], stdin_open: &mut bool) -> ClientAction {
    let Some((&ch, data)) = msg.split_first() else {
        return ClientAction::Ignore;
    };
    let data_frame = |stream: u32, flags: u8, data: &[u8]| Frame::Data {
        stream,
        flags,
        data: data.to_vec(),
    };
    match (ch, streams.stdin, streams.resize) {
        (CH_STDIN, Some(id), _) if *stdin_open && !data.is_empty() => {
            ClientAction::Send(vec![data_frame(id, 0, data)])
        }
        (CH_RESIZE, _, Some(id)) if !data.is_empty() => {
            ClientAction::Send(vec![data_frame(id, 0, data)])
        }
        (CH_CLOSE, Some(id), _) if data.first() == Some(&CH_STDIN) && *stdin_open => {
            *stdin_open = false;
            ClientAction::Send(vec![data_frame(id, spdy::FLAG_FIN, &[])])
        }
        _ => ClientAction::Ignore,
    }
}

/// The v4 status written when the runtime ends the session without one.
fn lost_status(why: &str) -> Vec<u8> {
    serde_json::json!({
        "metadata": {},
        "status": "Failure",
        "message": format!("error executing command in container: {why}"),
        "reason": "InternalError",
        "code": 500,
    })
    .to_string()
    .into_bytes()
}

/// Runs one v5 ↔ SPDY v4 session until the runtime ends it or the client goes away.
pub async fn bridge_v5<C, B>(client: C, backend: B, opts: StreamOptions)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (c_read, c_write) = tokio::io::split(client);
    let (b_read, b_write) = tokio::io::split(backend);
    let ws = Arc::new(WsWriter::new(c_write));
    let sp = Arc::new(SpdyWriter {
        w: Mutex::new((b_write, spdy::Encoder::new())),
    });
    let (streams, syn) = Streams::plan(opts);
    for f in &syn {
        if let Err(e) = sp.send(f).await {
            let _ = ws.channel(CH_ERROR, &lost_status(&e.to_string())).await;
            ws.close(websocket::CLOSE_NORMAL, "").await;
            return;
        }
    }
    // The client learns the session is up from an empty message on its lowest output channel.
    let first = if opts.stdout {
        CH_STDOUT
    } else if opts.stderr {
        CH_STDERR
    } else {
        CH_ERROR
    };
    let _ = ws.channel(first, &[]).await;
    let (replied_tx, replied_rx) = tokio::sync::watch::channel(false);
    let from_runtime = runtime_to_client(b_read, ws.clone(), sp.clone(), streams, replied_tx);
    let from_client = client_to_runtime(c_read, ws.clone(), sp.clone(), streams, replied_rx);
    tokio::select! {
        status = from_runtime => {
            if let Err(why) = status {
                let _ = ws.channel(CH_ERROR, &lost_status(&why)).await;
            }
            ws.close(websocket::CLOSE_NORMAL, "").await;
        }
        _ = from_client => {}
    }
    let mut g = sp.w.lock().await;
    let _ = g.0.shutdown().await;
}

/// Runtime → client: stream data onto channels, PINGs answered, replies counted. Ends when
/// the runtime closes the session; an error means it did so before sending a status.
async fn runtime_to_client<R, W, S>(
    mut r: R,
    ws: Arc<WsWriter<W>>,
    sp: Arc<SpdyWriter<S>>,
    streams: Streams,
    replied: tokio::sync::watch::Sender<bool>,
) -> Result<(), String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: AsyncWrite + Unpin,
{
    let mut dec = spdy::Decoder::new();
    let mut buf = BytesMut::with_capacity(32 << 10);
    let mut replies = 0usize;
    let mut status_seen = false;
    loop {
        let frame = match dec.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                buf.reserve(32 << 10);
                match r.read_buf(&mut buf).await {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) => return Err(format!("reading from the runtime: {e}")),
                }
            }
            Err(e) => return Err(e.to_string()),
        };
        match frame {
            Frame::Data { stream, data, .. } => {
                if data.is_empty() {
                    continue;
                }
                if let Some(ch) = streams.channel_of(stream) {
                    status_seen |= ch == CH_ERROR;
                    if ws.channel(ch, &data).await.is_err() {
                        return Ok(());
                    }
                }
            }
            Frame::SynReply { .. } => {
                replies += 1;
                if replies == streams.count() {
                    let _ = replied.send(true);
                }
            }
            Frame::Ping { id } => {
                let _ = sp.send(&Frame::Ping { id }).await;
            }
            Frame::SynStream { stream, .. } => {
                let _ = sp
                    .send(&Frame::RstStream {
                        stream,
                        status: spdy::RST_REFUSED_STREAM,
                    })
                    .await;
            }
            Frame::RstStream { .. }
            | Frame::GoAway { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. } => {}
        }
    }
    if status_seen {
        Ok(())
    } else {
        Err("the runtime closed the stream without a status".into())
    }
}

/// Client → runtime: stdin and resize data, the CLOSE of stdin, pings answered. Ends when the
/// client closes or goes away.
async fn client_to_runtime<R, W, S>(
    mut r: R,
    ws: Arc<WsWriter<W>>,
    sp: Arc<SpdyWriter<S>>,
    streams: Streams,
    mut replied: tokio::sync::watch::Receiver<bool>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    S: AsyncWrite + Unpin,
{
    let mut dec = websocket::Decoder::new(true, MAX_MESSAGE);
    let mut buf = BytesMut::with_capacity(32 << 10);
    let mut stdin_open = true;
    loop {
        let msg = match next_message(&mut r, &mut dec, &mut buf).await {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(why) => {
                ws.close(websocket::CLOSE_PROTOCOL_ERROR, &why).await;
                return;
            }
        };
        match msg {
            Message::Binary(m) => {
                if let ClientAction::Send(frames) = client_message(&streams, &m, &mut stdin_open) {
                    // Data only after the runtime accepted every stream (spdystream drops data
                    // on a stream it has not replied to).
                    if replied.wait_for(|r| *r).await.is_err() {
                        return;
                    }
                    for f in &frames {
                        if sp.send(f).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Message::Text(_) | Message::Pong(_) => {}
            Message::Ping(p) => {
                let _ = ws.send(websocket::OP_PONG, &p).await;
            }
            Message::Close(_) => {
                ws.close(websocket::CLOSE_NORMAL, "").await;
                return;
            }
        }
    }
}

/// Runs a port-forward tunnel: binary message payloads to the runtime, the runtime's bytes
/// back as binary messages.
pub async fn bridge_tunnel<C, B>(client: C, backend: B)
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut c_read, c_write) = tokio::io::split(client);
    let (mut b_read, mut b_write) = tokio::io::split(backend);
    let ws = Arc::new(WsWriter::new(c_write));
    let ws2 = ws.clone();
    let from_runtime = async move {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match b_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if ws2.send(websocket::OP_BINARY, &buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
        ws2.close(websocket::CLOSE_NORMAL, "").await;
    };
    let ws3 = ws.clone();
    let from_client = async move {
        let mut dec = websocket::Decoder::new(true, MAX_MESSAGE);
        let mut buf = BytesMut::with_capacity(32 << 10);
        loop {
            match next_message(&mut c_read, &mut dec, &mut buf).await {
                Ok(Some(Message::Binary(m))) => {
                    if b_write.write_all(&m).await.is_err() || b_write.flush().await.is_err() {
                        break;
                    }
                }
                Ok(Some(Message::Ping(p))) => {
                    let _ = ws3.send(websocket::OP_PONG, &p).await;
                }
                Ok(Some(Message::Text(_))) => {
                    ws3.close(
                        websocket::CLOSE_PROTOCOL_ERROR,
                        "text message on a port-forward tunnel",
                    )
                    .await;
                    break;
                }
                Ok(Some(Message::Pong(_))) => {}
                Ok(Some(Message::Close(_))) | Ok(None) => {
                    ws3.close(websocket::CLOSE_NORMAL, "").await;
                    break;
                }
                Err(why) => {
                    ws3.close(websocket::CLOSE_PROTOCOL_ERROR, &why).await;
                    break;
                }
            }
        }
        let _ = b_write.shutdown().await;
    };
    tokio::select! {
        _ = from_runtime => {}
        _ = from_client => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> StreamOptions {
        StreamOptions {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        }
    }

    #[test]
    fn streams_are_opened_in_client_go_order() {
        let (s, frames) = Streams::plan(all());
        assert_eq!(
            s,
            Streams {
                error: 1,
                stdin: Some(3),
                stdout: Some(5),
                stderr: None,
                resize: Some(7)
            }
        );
        let kinds: Vec<&str> = frames
            .iter()
            .map(|f| match f {
                Frame::SynStream { headers, .. } => spdy::header(headers, "streamtype").unwrap(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(kinds, ["error", "stdin", "stdout", "resize"]);
        assert_eq!(s.channel_of(5), Some(CH_STDOUT));
        assert_eq!(s.channel_of(1), Some(CH_ERROR));
        assert_eq!(s.channel_of(3), None);
    }

    #[test]
    fn v5_messages_become_frames_and_close_ends_stdin_once() {
        let (s, _) = Streams::plan(all());
        let mut open = true;
        assert_eq!(
            client_message(&s, &[CH_STDIN, b'h', b'i'], &mut open),
            ClientAction::Send(vec![Frame::Data {
                stream: 3,
                flags: 0,
                data: b"hi".to_vec()
            }])
        );
        assert_eq!(
            client_message(&s, br#"{"Width":80,"Height":24}"#.as_slice(), &mut open),
            ClientAction::Ignore,
            "the first byte is the channel: '{{' is none"
        );
        let mut resize = vec![CH_RESIZE];
        resize.extend_from_slice(br#"{"Width":80,"Height":24}"#);
        assert!(matches!(
            client_message(&s, &resize, &mut open),
            ClientAction::Send(f) if matches!(&f[0], Frame::Data { stream: 7, .. })
        ));
        assert_eq!(
            client_message(&s, &[CH_CLOSE, CH_STDIN], &mut open),
            ClientAction::Send(vec![Frame::Data {
                stream: 3,
                flags: spdy::FLAG_FIN,
                data: vec![]
            }])
        );
        assert!(!open);
        // After the CLOSE, stdin data and a second CLOSE are dropped.
        assert_eq!(
            client_message(&s, &[CH_STDIN, b'x'], &mut open),
            ClientAction::Ignore
        );
        assert_eq!(
            client_message(&s, &[CH_CLOSE, CH_STDIN], &mut open),
            ClientAction::Ignore
        );
        assert_eq!(client_message(&s, &[], &mut open), ClientAction::Ignore);
        // No stdin stream: stdin data has nowhere to go.
        let (s, _) = Streams::plan(StreamOptions {
            stdout: true,
            ..Default::default()
        });
        let mut open = true;
        assert_eq!(
            client_message(&s, &[CH_STDIN, b'x'], &mut open),
            ClientAction::Ignore
        );
    }

    /// A fake runtime on one end of a duplex pipe, a v5 client on the other: stdin reaches
    /// the runtime and ends with FIN on CLOSE, stdout and the status come back on channels 1
    /// and 3, and the websocket closes normally when the runtime hangs up.
    #[tokio::test]
    async fn a_v5_session_over_fake_runtime() {
        let (client, client_peer) = tokio::io::duplex(1 << 16);
        let (backend, mut runtime) = tokio::io::duplex(1 << 16);
        let opts = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let bridge = tokio::spawn(bridge_v5(client_peer, backend, opts));
        let (mut c_read, mut c_write) = tokio::io::split(client);
        // The runtime side: read the four SYN_STREAMs, reply to each.
        let mut dec = spdy::Decoder::new();
        let mut enc = spdy::Encoder::new();
        let mut buf = BytesMut::new();
        let mut next_frame = |runtime: &mut tokio::io::DuplexStream, buf: &mut BytesMut| {
            let f = dec.decode(buf).unwrap();
            let _ = runtime;
            f
        };
        let mut syns = Vec::new();
        while syns.len() < 4 {
            if let Some(f) = next_frame(&mut runtime, &mut buf) {
                syns.push(f);
                continue;
            }
            runtime.read_buf(&mut buf).await.unwrap();
        }
        let mut out = Vec::new();
        for id in [1, 3, 5, 7] {
            enc.encode(
                &Frame::SynReply {
                    stream: id,
                    flags: 0,
                    headers: vec![],
                },
                &mut out,
            )
            .unwrap();
        }
        runtime.write_all(&out).await.unwrap();
        // The client: stdin "abc", then CLOSE of stdin, masked as clients must.
        let mut w = Vec::new();
        websocket::encode(websocket::OP_BINARY, b"\x00abc", Some([1, 2, 3, 4]), &mut w);
        websocket::encode(
            websocket::OP_BINARY,
            &[CH_CLOSE, CH_STDIN],
            Some([5, 6, 7, 8]),
            &mut w,
        );
        c_write.write_all(&w).await.unwrap();
        // The runtime sees the data, then the FIN.
        let mut got = Vec::new();
        while got.len() < 2 {
            if let Some(f) = next_frame(&mut runtime, &mut buf) {
                got.push(f);
                continue;
            }
            runtime.read_buf(&mut buf).await.unwrap();
        }
        assert_eq!(
            got,
            vec![
                Frame::Data {
                    stream: 3,
                    flags: 0,
                    data: b"abc".to_vec()
                },
                Frame::Data {
                    stream: 3,
                    flags: spdy::FLAG_FIN,
                    data: vec![]
                }
            ]
        );
        // The runtime answers on stdout and the error stream, then hangs up.
        let status = br#"{"metadata":{},"status":"Success"}"#;
        let mut out = Vec::new();
        for (stream, data) in [(5u32, b"abc".as_slice()), (1, status.as_slice())] {
            enc.encode(
                &Frame::Data {
                    stream,
                    flags: spdy::FLAG_FIN,
                    data: data.to_vec(),
                },
                &mut out,
            )
            .unwrap();
        }
        runtime.write_all(&out).await.unwrap();
        drop(runtime);
        // The client reads: the empty hello on stdout, stdout, the status, a normal close.
        let mut dec = websocket::Decoder::new(false, 1 << 20);
        let mut buf = BytesMut::new();
        let mut msgs = Vec::new();
        loop {
            match next_message(&mut c_read, &mut dec, &mut buf).await.unwrap() {
                Some(Message::Close(c)) => {
                    msgs.push(Message::Close(c));
                    break;
                }
                Some(m) => msgs.push(m),
                None => break,
            }
        }
        let mut want_status = vec![CH_ERROR];
        want_status.extend_from_slice(status);
        assert_eq!(
            msgs,
            vec![
                Message::Binary(vec![CH_STDOUT]),
                Message::Binary(b"\x01abc".to_vec()),
                Message::Binary(want_status),
                Message::Close(Some((1000, String::new()))),
            ]
        );
        bridge.await.unwrap();
    }
}
