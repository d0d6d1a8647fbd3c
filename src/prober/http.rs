//! The HTTP(S) GET that `httpGet` probes and lifecycle hooks make, as the kubelet makes it
//! (`pkg/probe/http`): one connection per request (`Connection: close`, no keep-alive, as the
//! kubelet disables it for probes), `User-Agent: kube-probe/<major>.<minor>` and `Accept: */*`
//! unless the spec sets them, a `Host` header from the spec's headers, HTTPS without certificate
//! verification, and redirects followed (at most 10) only while they stay on the same host. A
//! redirect to another host is not followed: the redirect response itself is the answer.
//!
//! One [`HttpClient`] is shared by every probe worker: it holds the TLS configuration. The
//! exchange itself is a small HTTP/1.1 client over a tokio socket (`httparse` reads the response
//! head); at most [`MAX_BODY`] bytes of the body are kept, for the probe's output.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The kubelet keeps this much of a probe's response body.
pub const MAX_BODY: usize = 10 << 10;
/// Redirects followed before giving up (Go's `http.Client` default).
pub const MAX_REDIRECTS: usize = 10;
/// The largest response head accepted.
const MAX_HEAD: usize = 64 << 10;
/// 1xx answers accepted before the real one (Go's transport allows 5).
const MAX_INFORMATIONAL: usize = 5;
/// The `User-Agent` the kubelet's probes send (`kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.33";

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

    /// Resolves a `Location` header against this URL.
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
    #[error("Get {url:?}: malformed HTTP response: {message}")]
    Protocol { url: String, message: String },
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
    /// Set when this is a redirect to another host that was not followed.
    pub redirect_elsewhere: Option<String>,
}

impl HttpResponse {
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
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

    /// GET `url` with `headers`, following same-host redirects, all within `timeout`.
    pub async fn get(
        &self,
        url: &Url,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpResponse, HttpError> {
        match tokio::time::timeout(timeout, self.get_following(url, headers)).await {
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
    ) -> Result<HttpResponse, HttpError> {
        // The first request goes to `url` itself; only redirects allocate a new URL.
        let (mut resp, location) = self.get_once(url, headers).await?;
        let Some(location) = location.filter(|_| (300..400).contains(&resp.status)) else {
            return Ok(resp);
        };
        let Some(mut next) = url.join(&location) else {
            return Ok(resp);
        };
        let mut current = url.clone();
        let mut redirects = 0;
        loop {
            if !next.host.eq_ignore_ascii_case(&current.host) {
                resp.redirect_elsewhere = Some(next.to_string());
                return Ok(resp);
            }
            redirects += 1;
            if redirects > MAX_REDIRECTS {
                return Err(HttpError::TooManyRedirects {
                    url: next.to_string(),
                });
            }
            current = next;
            let (r, location) = self.get_once(&current, headers).await?;
            resp = r;
            let Some(location) = location.filter(|_| (300..400).contains(&resp.status)) else {
                return Ok(resp);
            };
            let Some(n) = current.join(&location) else {
                return Ok(resp);
            };
            next = n;
        }
    }

    /// One exchange: the response and its `Location` header.
    async fn get_once(
        &self,
        url: &Url,
        headers: &[(String, String)],
    ) -> Result<(HttpResponse, Option<String>), HttpError> {
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
        let request = request_bytes(url, headers);
        match url.scheme {
            Scheme::Http => exchange(tcp, &request, url).await,
            Scheme::Https => {
                let name =
                    rustls::pki_types::ServerName::try_from(url.host.clone()).map_err(|e| {
                        HttpError::Tls {
                            url: url.to_string(),
                            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                        }
                    })?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|source| HttpError::Tls {
                        url: url.to_string(),
                        source,
                    })?;
                exchange(tls, &request, url).await
            }
        }
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

/// The request head. The spec's headers come last and replace the defaults they name.
fn request_bytes(url: &Url, headers: &[(String, String)]) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    let mut out = Vec::with_capacity(160 + url.path.len());
    out.extend_from_slice(b"GET ");
    out.extend_from_slice(url.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    match headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("host")) {
        Some((_, v)) => out.extend_from_slice(v.as_bytes()),
        None => out.extend_from_slice(url.authority().as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    if !has("user-agent") {
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(USER_AGENT.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has("accept") {
        out.extend_from_slice(b"Accept: */*\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n");
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("connection") {
            continue;
        }
        // Header names and values come from the pod spec: keep CR/LF out of the request.
        if k.bytes().any(|b| b == b'\r' || b == b'\n' || b == b':')
            || v.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            continue;
        }
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes the request and reads the response head and up to [`MAX_BODY`] bytes of the body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
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
    // One buffer for the head and the kept body, filled without zeroing; nothing but it lives
    // across the reads, so the future stays small.
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    // After a 1xx answer the next head may already be in the buffer: parse before reading.
    let mut parse_first = false;
    let mut informational = 0;
    let (status, location, head_len, body_len, chunked) = loop {
        if !std::mem::take(&mut parse_first) {
            if buf.len() >= MAX_HEAD {
                return Err(HttpError::Protocol {
                    url: url.to_string(),
                    message: format!("response head larger than {MAX_HEAD} bytes"),
                });
            }
            let n = stream.read_buf(&mut buf).await.map_err(io_err)?;
            if n == 0 {
                return Err(HttpError::Protocol {
                    url: url.to_string(),
                    message: if buf.is_empty() {
                        "EOF".into()
                    } else {
                        "unexpected EOF in the response head".into()
                    },
                });
            }
        }
        let mut hdrs = [httparse::EMPTY_HEADER; 48];
        let mut resp = httparse::Response::new(&mut hdrs);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                // 1xx informational answers precede the real one (at most a few, as Go).
                if (100..200).contains(&status) && status != 101 {
                    informational += 1;
                    if informational > MAX_INFORMATIONAL {
                        return Err(HttpError::Protocol {
                            url: url.to_string(),
                            message: "too many 1xx informational responses".into(),
                        });
                    }
                    buf.drain(..len);
                    parse_first = true;
                    continue;
                }
                let header = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).into_owned())
                };
                let location = header("location");
                let body_len = header("content-length").and_then(|v| v.trim().parse().ok());
                let chunked = header("transfer-encoding")
                    .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
                break (status, location, len, body_len, chunked);
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => {
                return Err(HttpError::Protocol {
                    url: url.to_string(),
                    message: e.to_string(),
                })
            }
        }
    };
    buf.drain(..head_len);
    let mut body = buf;
    let want = body_len.unwrap_or(usize::MAX).min(MAX_BODY);
    while body.len() < want && !(chunked && body.ends_with(b"0\r\n\r\n")) {
        body.reserve(2048);
        match stream.read_buf(&mut body).await {
            Ok(0) => break,
            Ok(_) => {}
            // The answer is in; a connection reset while reading the rest does not undo it.
            Err(_) => break,
        }
    }
    if chunked {
        body = dechunk(&body);
    }
    body.truncate(MAX_BODY);
    Ok((
        HttpResponse {
            status,
            body,
            redirect_elsewhere: None,
        },
        location,
    ))
}

/// Decodes as much of a chunked body as is present. Every size comes from the server: a size
/// that does not parse, or whose chunk would end past what any buffer can hold
/// (`ffffffffffffffff`), ends the decoding with what came before it.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let start = eol + 2;
        let Some(chunk_end) = start.checked_add(size) else {
            break;
        };
        let end = chunk_end.min(data.len());
        out.extend_from_slice(&data[start..end]);
        if end < chunk_end || data.len() - end < 2 {
            break;
        }
        data = &data[end + 2..];
    }
    out
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
    use tokio::net::TcpListener;

    /// Serves one canned answer per connection, `answers` in turn, recording each request head.
    async fn serve(answers: Vec<String>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(a.as_bytes()).await.unwrap();
            }
            seen
        });
        (port, task)
    }

    #[tokio::test]
    async fn get_sends_kubelet_headers_and_reads_the_answer() {
        let (port, task) =
            serve(vec!["HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".into()]).await;
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "healthz?x=1");
        let r = HttpClient::new()
            .get(
                &url,
                &[
                    ("X-Custom".into(), "v".into()),
                    ("Host".into(), "example".into()),
                ],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"ok");
        let req = &task.await.unwrap()[0];
        assert!(
            req.starts_with("GET /healthz?x=1 HTTP/1.1\r\nHost: example\r\n"),
            "{req}"
        );
        assert!(req.contains("User-Agent: kube-probe/1.33\r\n"));
        assert!(req.contains("Accept: */*\r\n"));
        assert!(req.contains("Connection: close\r\n"));
        assert!(req.contains("X-Custom: v\r\n"));
    }

    #[tokio::test]
    async fn same_host_redirects_are_followed_others_are_not() {
        let (port, task) = serve(vec![
            "HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n".into(),
            "HTTP/1.1 301 Moved\r\nLocation: http://elsewhere.invalid/x\r\nContent-Length: 0\r\n\r\n"
                .into(),
        ])
        .await;
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "/");
        let r = HttpClient::new()
            .get(&url, &[], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 301);
        assert_eq!(
            r.redirect_elsewhere.as_deref(),
            Some("http://elsewhere.invalid:80/x")
        );
        let seen = task.await.unwrap();
        assert!(seen[1].starts_with("GET /next HTTP/1.1"), "{}", seen[1]);
    }

    #[tokio::test]
    async fn chunked_bodies_are_decoded_and_errors_read_like_go() {
        let (port, _task) = serve(vec![
            "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nbad\r\n0\r\n\r\n".into(),
        ])
        .await;
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "/");
        let r = HttpClient::new()
            .get(&url, &[], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((r.status, r.body_text().as_str()), (500, "bad"));
        // A port nobody listens on.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = l.local_addr().unwrap().port();
        drop(l);
        let url = Url::new(Scheme::Http, "127.0.0.1", closed, "/");
        let e = HttpClient::new()
            .get(&url, &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("Get \"http://127.0.0.1:{closed}/\": dial tcp 127.0.0.1:{closed}: connect: connection refused")
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
            huge_head,
        ])
        .await;
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "/");
        let client = HttpClient::new();
        let r = client.get(&url, &[], Duration::from_secs(5)).await.unwrap();
        assert_eq!((r.status, r.body.len()), (204, 0));
        // No Content-Length: the body is read to EOF, and only MAX_BODY bytes are kept.
        let r = client.get(&url, &[], Duration::from_secs(5)).await.unwrap();
        assert_eq!((r.status, r.body.len()), (200, MAX_BODY));
        assert!(r.body.iter().all(|&b| b == b'x'));
        let e = client
            .get(&url, &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "Get \"http://127.0.0.1:{port}/\": malformed HTTP response: response head larger than {MAX_HEAD} bytes"
            )
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
            .get(&url, &[], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, HttpError::Tls { .. }), "{e}");
        assert!(e
            .to_string()
            .starts_with(&format!("Get \"https://127.0.0.1:{port}/\": tls: ")));
    }

    #[test]
    fn chunk_sizes_from_the_server_are_checked() {
        // The size that overflowed `start + size`.
        assert_eq!(dechunk(b"ffffffffffffffff\r\nabc"), b"");
        assert_eq!(dechunk(b"3\r\nabc\r\nffffffffffffffff\r\nxyz"), b"abc");
        // Truncated: what is there is kept.
        assert_eq!(dechunk(b"10\r\nabc"), b"abc");
        assert_eq!(dechunk(b"3\r\nabc"), b"abc");
        assert_eq!(dechunk(b"zz\r\nabc"), b"");
        assert_eq!(dechunk(b"2;ext=1\r\nok\r\n0\r\n\r\n"), b"ok");
    }

    #[tokio::test]
    async fn a_huge_chunk_size_is_no_panic() {
        let (port, _task) = serve(vec![
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc".into(),
        ])
        .await;
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "/");
        let r = HttpClient::new()
            .get(&url, &[], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
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
    }
}
