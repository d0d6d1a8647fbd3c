//! The HTTP(S) GET that `httpGet` probes and lifecycle hooks make, as the kubelet makes it
//! (`pkg/probe/http`): one connection per request (`Connection: close`, as the kubelet disables
//! keep-alive for probes), `User-Agent: kube-probe/<major>.<minor>` (`kube-lifecycle/...` for
//! hooks) and `Accept: */*` unless the spec sets them (an empty value in the spec removes them),
//! a `Host` header from the spec's headers, HTTPS without certificate verification, and
//! redirects (301, 302, 303, 307, 308) followed, at most 10, only while they stay on the first
//! request's host; a redirect to another host is not followed: the redirect response itself is
//! the answer. At most [`MAX_BODY`] bytes of a body are read, as the kubelet reads.
//!
//! The exchange is a small HTTP/1.1 client over a tokio socket (rustls for HTTPS): the request
//! head is one write, and [`wire::ResponseReader`] parses the answer incrementally (`httparse`
//! for heads), with every length and count from the wire bounded or checked (see [`wire`]); the
//! whole request, redirects included, runs within the probe's timeout, so a head that never
//! ends fails the probe when its time is up. An error while reading the body does not undo the
//! answer: it is reported in [`HttpResponse::body_error`] (the prober treats it as the kubelet
//! does, as a probe error; a hook ignores it). This client was kept over hyper's HTTP/1 client
//! connection on numbers: `benches/probes.rs` measures both in one run, and hyper costs about a
//! quarter more CPU per request (`benches/README.md`); the fuzz targets in `fuzz/` exercise
//! [`wire`].
//!
//! Sockets get `SO_LINGER` of 1 s, as the kubelet's probe dialer sets (`pkg/probe/dialer_others.go`,
//! so that probes do not pile up sockets in TIME-WAIT). Closing such a socket can block until the
//! peer acknowledges the FIN; to keep that off the prober's thread, only a connection whose
//! exchange completed (the peer just answered, so its acknowledgement is immediate) closes with
//! that linger; one abandoned (a timeout, an error, a body cut at [`MAX_BODY`]) closes with a zero
//! linger, a reset that never waits ([`ProbeStream`]).
//!
//! One [`HttpClient`] is shared by every probe worker and hook: it holds the TLS configuration.

pub mod wire;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use wire::{ResponseReader, Step, WireError};
pub use wire::{Scheme, Url, MAX_BODY, MAX_HEAD};

/// Redirects followed before giving up (Go's `http.Client` default).
pub const MAX_REDIRECTS: usize = 10;
/// The `User-Agent` the kubelet's probes send (`kube-probe/<major>.<minor>`).
pub const PROBE_USER_AGENT: &str = "kube-probe/1.33";
/// The `User-Agent` the kubelet's httpGet lifecycle hooks send.
pub const HOOK_USER_AGENT: &str = "kube-lifecycle/1.33";
/// `SO_LINGER` on probe sockets, as the kubelet's probe dialer.
pub const PROBE_LINGER: Duration = Duration::from_secs(1);

/// A request that got no HTTP answer. The texts follow Go's `url.Error`
/// (`Get "http://10.88.0.5:80/": dial tcp 10.88.0.5:80: connect: connection refused`), which is
/// what users of the kubelet see in `Unhealthy` events.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("Get {url:?}: dial tcp {addr}: connect: {}", os_text(.source))]
    Connect {
        url: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Get {url:?}: dial tcp: lookup {host}: {message}")]
    Lookup {
        url: String,
        host: String,
        message: String,
    },
    #[error(
        "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    )]
    Timeout { url: String },
    #[error("Get {url:?}: tls: {source}")]
    Tls {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Get {url:?}: {}", os_text(.source))]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    /// The server closed the connection before a whole response head.
    #[error("Get {url:?}: EOF")]
    Eof { url: String },
    #[error("Get {url:?}: malformed HTTP response: {message}")]
    Protocol { url: String, message: String },
    #[error("parse {url:?}: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("Get {url:?}: stopped after {MAX_REDIRECTS} redirects")]
    TooManyRedirects { url: String },
}

/// An OS error as Go prints it: `connection refused`, lower case, no `(os error N)`.
pub fn os_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = match text.find(" (os error") {
        Some(i) => &text[..i],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect::<String>(),
        None => String::new(),
    }
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// The first [`MAX_BODY`] bytes of the body.
    pub body: Vec<u8>,
    /// Reading the body failed after the head came (a truncated or malformed chunk, a reset):
    /// what went wrong, with `body` holding what was read before.
    pub body_error: Option<String>,
}

impl HttpResponse {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Whether Go's client follows a redirect with this status.
fn followed(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The shared client: TLS configuration (no verification, as the kubelet's probes).
#[derive(Clone)]
pub struct HttpClient {
    tls: tokio_rustls::TlsConnector,
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HttpClient")
    }
}

impl HttpClient {
    pub fn new() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = Arc::new(NoVerification(provider.clone()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// GET `url` with the spec's `headers` and `user_agent` unless they set one, following
    /// same-host redirects, all within `timeout`.
    pub async fn get(
        &self,
        url: &Url,
        headers: &[(String, String)],
        user_agent: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        match tokio::time::timeout(timeout, self.get_following(url, headers, user_agent)).await {
            Ok(r) => r,
            Err(_) => Err(HttpError::Timeout {
                url: url.to_string(),
            }),
        }
    }

    async fn get_following(
        &self,
        url: &Url,
        headers: &[(String, String)],
        user_agent: &str,
    ) -> Result<HttpResponse, HttpError> {
        // The first request goes to `url` itself; only redirects allocate a new URL.
        let (mut resp, mut location) = self.get_once(url, headers, user_agent).await?;
        let mut current: Option<Url> = None;
        let mut redirects = 0;
        loop {
            let base = current.as_ref().unwrap_or(url);
            let next = match location.take() {
                Some(l) if followed(resp.status) => base.join(&l),
                _ => None,
            };
            // The kubelet's redirect checker compares with the first request's host.
            let Some(next) = next.filter(|n| n.host.eq_ignore_ascii_case(&url.host)) else {
                return Ok(resp);
            };
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(HttpError::TooManyRedirects {
                    url: next.to_string(),
                });
            }
            (resp, location) = self.get_once(&next, headers, user_agent).await?;
            current = Some(next);
        }
    }

    /// One exchange: the response and its `Location` header.
    async fn get_once(
        &self,
        url: &Url,
        headers: &[(String, String)],
        user_agent: &str,
    ) -> Result<(HttpResponse, Option<String>), HttpError> {
        if !url.host_is_valid() {
            return Err(HttpError::InvalidUrl {
                url: url.to_string(),
                message: format!("invalid host {:?}", url.host),
            });
        }
        let request = wire::request_head(url, headers, user_agent);
        let addr = resolve(url).await?;
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect {
                url: url.to_string(),
                addr: url.authority(),
                source,
            })?;
        // The request is one write: Nagle cannot hold it. The TLS handshake writes twice in a row,
        // so HTTPS sets TCP_NODELAY (as Go does for every connection).
        if url.scheme == Scheme::Https {
            let _ = tcp.set_nodelay(true);
        }
        let stream = ProbeStream::new(tcp);
        match url.scheme {
            Scheme::Http => exchange(stream, &request, url).await,
            Scheme::Https => {
                let tls = self.tls_connect(url, stream).await?;
                exchange(tls, &request, url).await
            }
        }
    }

    async fn tls_connect<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        url: &Url,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, HttpError> {
        let name = rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
            HttpError::Tls {
                url: url.to_string(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            }
        })?;
        self.tls
            .connect(name, stream)
            .await
            .map_err(|source| HttpError::Tls {
                url: url.to_string(),
                source,
            })
    }
}

async fn resolve(url: &Url) -> Result<SocketAddr, HttpError> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, url.port));
    }
    let lookup_err = |message: String| HttpError::Lookup {
        url: url.to_string(),
        host: url.host.clone(),
        message,
    };
    let mut addrs = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|e| lookup_err(os_text(&e)))?;
    addrs
        .next()
        .ok_or_else(|| lookup_err("no such host".into()))
}

/// The `httpHeaders` of a probe's or hook's `httpGet`, as name/value pairs.
pub fn spec_headers(h: &k8s_openapi::api::core::v1::HTTPGetAction) -> Vec<(String, String)> {
    h.http_headers
        .iter()
        .flatten()
        .map(|hh| (hh.name.clone(), hh.value.clone()))
        .collect()
}

/// Writes the request and reads the answer: the status, `Location`, and up to [`MAX_BODY`]
/// bytes of the body. A connection whose response was read to its end is marked complete (it
/// closes with the kubelet's linger); any other is reset when dropped.
async fn exchange<S: ProbeIo>(
    mut stream: S,
    request: &[u8],
    url: &Url,
) -> Result<(HttpResponse, Option<String>), HttpError> {
    let io_err = |source| HttpError::Io {
        url: url.to_string(),
        source,
    };
    stream.write_all(request).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    let mut reader = ResponseReader::new();
    loop {
        let buf = reader.buffer();
        // Reads of a few KiB at most: the reader keeps only what it has not consumed.
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let eof = match stream.read_buf(buf).await {
            Ok(n) => n == 0,
            // The answer is in: a failure now is the body's (the kubelet reports it as a
            // probe error), not the request's.
            Err(e) if reader.head_done() => {
                reader.fail_body(os_text(&e));
                break;
            }
            Err(e) => return Err(io_err(e)),
        };
        match reader.process(eof) {
            Ok(Step::NeedMore) => {}
            Ok(Step::Done) => break,
            Err(WireError::Eof) => {
                return Err(HttpError::Eof {
                    url: url.to_string(),
                })
            }
            Err(e) => {
                return Err(HttpError::Protocol {
                    url: url.to_string(),
                    message: e.to_string(),
                })
            }
        }
    }
    let r = reader.finish();
    if r.complete {
        stream.mark_complete();
    }
    Ok((
        HttpResponse {
            status: r.status,
            body: r.body,
            body_error: r.body_error,
        },
        r.location,
    ))
}

/// The socket under an exchange, plain or TLS: it can be told that the exchange completed.
trait ProbeIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The exchange ended in order: close with the kubelet's linger, not a reset.
    fn mark_complete(self);
}

impl ProbeIo for ProbeStream {
    fn mark_complete(self) {
        ProbeStream::mark_complete(self);
    }
}

impl ProbeIo for tokio_rustls::client::TlsStream<ProbeStream> {
    fn mark_complete(mut self) {
        self.get_mut().0.complete = true;
    }
}

/// A probe's TCP connection: `SO_LINGER` of [`PROBE_LINGER`] as the kubelet's, and, unless the
/// exchange over it completed ([`ProbeIo::mark_complete`]; a timeout, an error, an unread rest
/// of the body do not), a zero linger when dropped, so that closing it resets it at once
/// instead of blocking the thread until the peer acknowledges.
pub struct ProbeStream {
    tcp: TcpStream,
    complete: bool,
}

impl ProbeStream {
    /// Wraps a probe's connection and sets its linger.
    pub fn new(tcp: TcpStream) -> Self {
        set_probe_linger(&tcp, Some(PROBE_LINGER));
        Self {
            tcp,
            complete: false,
        }
    }

    /// The exchange over it completed: it closes with the linger, not a reset.
    pub fn mark_complete(mut self) {
        self.complete = true;
    }
}

/// Sets `SO_LINGER` on a probe's socket (the kubelet's probe dialer sets 1 s).
pub fn set_probe_linger(tcp: &TcpStream, linger: Option<Duration>) {
    if let Err(e) = socket2::SockRef::from(tcp).set_linger(linger) {
        tracing::debug!(error = %e, "cannot set SO_LINGER on a probe socket");
    }
}

impl Drop for ProbeStream {
    fn drop(&mut self) {
        if !self.complete {
            set_probe_linger(&self.tcp, Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ProbeStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ProbeStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Accepts any server certificate, as the kubelet's probes do (`InsecureSkipVerify`), while
/// still checking that the handshake signatures are sound.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const T: Duration = Duration::from_secs(5);

    /// Reads one request head from `s`.
    async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
        let mut buf = vec![0u8; 4096];
        let mut n = 0;
        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Serves one canned answer per connection, `answers` in turn, recording each request head.
    async fn serve(answers: Vec<String>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                seen.push(read_head(&mut s).await);
                let _ = s.write_all(a.as_bytes()).await;
            }
            seen
        });
        (port, task)
    }

    async fn get(port: u16, path: &str) -> Result<HttpResponse, HttpError> {
        let url = Url::new(Scheme::Http, "127.0.0.1", port, path);
        HttpClient::new().get(&url, &[], PROBE_USER_AGENT, T).await
    }

    #[tokio::test]
    async fn get_sends_kubelet_headers_and_reads_the_answer() {
        let (port, task) = serve(vec![
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".into(),
        ])
        .await;
        let client = HttpClient::new();
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "healthz?x=1");
        let headers = [
            ("X-Custom".to_string(), "v".to_string()),
            ("Host".into(), "example".into()),
            ("Bad\rName".into(), "dropped".into()),
            ("X-Bad-Value".into(), "a\r\nInjected: 1".into()),
        ];
        let r = client
            .get(&url, &headers, PROBE_USER_AGENT, T)
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"ok");
        assert_eq!(r.body_error, None);
        // A spec's own User-Agent replaces the default; an empty Accept sends none.
        let mine = [
            ("user-agent".to_string(), "mine/1".to_string()),
            ("Accept".into(), String::new()),
        ];
        let url2 = Url::new(Scheme::Http, "127.0.0.1", port, "/a b#frag");
        client.get(&url2, &mine, HOOK_USER_AGENT, T).await.unwrap();
        let seen = task.await.unwrap();
        let req = &seen[0];
        assert!(
            req.starts_with("GET /healthz?x=1 HTTP/1.1\r\nHost: example\r\n"),
            "{req}"
        );
        assert!(req.contains("\r\nUser-Agent: kube-probe/1.33\r\n"), "{req}");
        assert!(req.contains("\r\nAccept: */*\r\n"), "{req}");
        assert!(req.contains("\r\nConnection: close\r\n"), "{req}");
        assert!(req.contains("\r\nX-Custom: v\r\n"), "{req}");
        assert!(
            !req.contains("dropped") && !req.contains("Injected"),
            "{req}"
        );
        let req = &seen[1];
        assert!(req.starts_with("GET /a%20b HTTP/1.1\r\n"), "{req}");
        assert!(
            req.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        assert!(req.contains("\r\nUser-Agent: mine/1\r\n"), "{req}");
        assert!(!req.to_ascii_lowercase().contains("accept"), "{req}");
    }

    #[tokio::test]
    async fn same_host_redirects_are_followed_others_are_not() {
        let (port, task) = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 301 Moved\r\nLocation: http://elsewhere.invalid/x\r\nContent-Length: 0\r\n\r\n"
                .into(),
        ])
        .await;
        let r = get(port, "/").await.unwrap();
        assert_eq!(r.status, 301);
        let seen = task.await.unwrap();
        assert!(seen[1].starts_with("GET /next HTTP/1.1"), "{}", seen[1]);

        // 300 and 304 are answers, not redirects, as in Go's client.
        let (port, _task) = serve(vec![
            "HTTP/1.1 300 Choices\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n".into(),
        ])
        .await;
        assert_eq!(get(port, "/").await.unwrap().status, 300);

        // The eleventh redirect is an error.
        let loop_answer =
            "HTTP/1.1 307 Again\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n".to_string();
        let (port, _task) = serve(vec![loop_answer; 11]).await;
        let e = get(port, "/").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Get \"http://127.0.0.1:{port}/again\": stopped after 10 redirects")
        );
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_and_errors_read_like_go() {
        let (port, _task) = serve(vec![
            "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n0\r\n\r\n".into(),
        ])
        .await;
        let r = get(port, "/").await.unwrap();
        assert_eq!((r.status, r.body_text().as_str()), (500, "bad"));
        // A port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = l.local_addr().unwrap().port();
        drop(l);
        let e = get(closed, "/").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Get \"http://127.0.0.1:{closed}/\": dial tcp 127.0.0.1:{closed}: connect: connection refused")
        );
        // A server that closes without answering.
        let (port, _task) = serve(vec![String::new()]).await;
        let e = get(port, "/").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Get \"http://127.0.0.1:{port}/\": EOF")
        );
    }

    #[tokio::test]
    async fn informational_answers_are_skipped_and_sizes_are_bounded() {
        let long_body = "x".repeat(MAX_BODY + 5000);
        let huge_head = format!("HTTP/1.1 200 OK\r\nX-Pad: {}\r\n\r\n", "p".repeat(MAX_HEAD));
        let (port, _task) = serve(vec![
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
                .into(),
            format!("HTTP/1.1 200 OK\r\n\r\n{long_body}"),
            format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{long_body}\r\n0\r\n\r\n", long_body.len()),
            huge_head,
        ])
        .await;
        let r = get(port, "/").await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        // No Content-Length: the body is read to EOF, and only MAX_BODY bytes are kept; a
        // chunked one the same.
        for _ in 0..2 {
            let r = get(port, "/").await.unwrap();
            assert_eq!((r.status, r.body.len()), (200, MAX_BODY));
            assert!(r.body.iter().all(|&b| b == b'x'));
            assert_eq!(r.body_error, None);
        }
        let e = get(port, "/").await.unwrap_err();
        assert!(matches!(e, HttpError::Protocol { .. }), "{e}");
        assert!(
            e.to_string().starts_with(&format!(
                "Get \"http://127.0.0.1:{port}/\": malformed HTTP response: "
            )),
            "{e}"
        );
    }

    /// What a pod's server sends is hostile: sizes that overflow, bodies cut short, heads that
    /// never end. Each ends in an answer with a body error or in an error, never a panic or a
    /// request that outlives its timeout.
    #[tokio::test]
    async fn hostile_answers_end_in_errors() {
        let (port, _task) = serve(vec![
            // The chunk size that overflowed the hand-written decoder.
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc".into(),
            // One digit more than a u64 holds.
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\nabc".into(),
            // A chunk cut short by the server closing.
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc".into(),
            // A Content-Length larger than what comes.
            "HTTP/1.1 503 No\r\nContent-Length: 1000\r\n\r\nabc".into(),
            // A Content-Length no body can have, and conflicting lengths: no answer.
            "HTTP/1.1 200 OK\r\nContent-Length: 18446744073709551615\r\n\r\nabc".into(),
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".into(),
        ])
        .await;
        for (status, body) in [(200, "abc"), (200, ""), (200, "abc"), (503, "abc")] {
            let r = get(port, "/").await.unwrap();
            assert_eq!((r.status, r.body_text().as_str()), (status, body), "{r:?}");
            assert!(r.body_error.is_some(), "{r:?}");
        }
        for _ in 0..2 {
            let e = get(port, "/").await.unwrap_err();
            assert!(matches!(e, HttpError::Protocol { .. }), "{e}");
        }

        // A head that never ends: one byte a while, forever. The request fails at its timeout.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _endless = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            read_head(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
            loop {
                if s.write_all(b"X").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "/");
        let e = HttpClient::new()
            .get(&url, &[], PROBE_USER_AGENT, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Get \"http://127.0.0.1:{port}/\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)")
        );
    }

    #[tokio::test]
    async fn https_talks_tls_and_reports_handshake_failures() {
        // A server that is not TLS: the handshake fails, reported as a TLS error.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _task = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        });
        let url = Url::new(Scheme::Https, "127.0.0.1", port, "/");
        let e = HttpClient::new()
            .get(&url, &[], PROBE_USER_AGENT, T)
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Tls { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with(&format!("Get \"https://127.0.0.1:{port}/\": tls: ")));
    }

    /// A connection whose exchange completed keeps the kubelet's 1 s linger and ends with a
    /// FIN; one dropped mid-exchange is reset instead (a close that cannot block).
    #[tokio::test]
    async fn probe_sockets_linger_like_the_kubelets_unless_abandoned() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        for complete in [true, false] {
            let mut s = ProbeStream::new(TcpStream::connect(addr).await.unwrap());
            let (mut peer, _) = l.accept().await.unwrap();
            assert_eq!(
                socket2::SockRef::from(&s.tcp).linger().unwrap(),
                Some(PROBE_LINGER)
            );
            s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            if complete {
                s.mark_complete();
            } else {
                drop(s);
            }
            let mut buf = Vec::new();
            let end = peer.read_to_end(&mut buf).await;
            assert_eq!(buf, b"GET / HTTP/1.1\r\n\r\n");
            if complete {
                end.unwrap();
            } else {
                assert_eq!(end.unwrap_err().kind(), std::io::ErrorKind::ConnectionReset);
            }
        }
    }

    /// Over a real exchange: a complete answer ends with a FIN (the server reads EOF), a body
    /// cut at MAX_BODY with a reset.
    #[tokio::test]
    async fn exchanges_close_in_order_only_when_complete() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let mut ends = Vec::new();
            for body in [2, MAX_BODY + 100_000] {
                let (mut s, _) = l.accept().await.unwrap();
                read_head(&mut s).await;
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n");
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&vec![b'x'; body]).await;
                // Keep the connection open and see how the client leaves it.
                let mut rest = Vec::new();
                ends.push(s.read_to_end(&mut rest).await.map_err(|e| e.kind()));
            }
            ends
        });
        for _ in 0..2 {
            get(port, "/").await.unwrap();
        }
        let ends = server.await.unwrap();
        assert_eq!(ends[0], Ok(0));
        assert!(ends[1].is_err(), "{ends:?}");
    }
}
