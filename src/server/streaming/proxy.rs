//! The upgrade-aware proxy between a client and the runtime's streaming server (the Go
//! kubelet's `proxyStream`): the client's request goes to the runtime's single-use URL with
//! its upgrade headers; a `101 Switching Protocols` is handed back and bytes are copied both
//! ways until either side closes; any other answer is returned to the client as it came.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;

use super::{is_upgrade, text};

/// The runtime's streaming server could not be reached or answered badly.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid streaming URL {url:?} from the runtime: {why}")]
    Url { url: String, why: String },
    #[error("dial {addr}: {source}")]
    Dial {
        addr: String,
        source: std::io::Error,
    },
    #[error("{method} {url}: {source}")]
    Http {
        method: Method,
        url: String,
        source: hyper::Error,
    },
}

/// Headers never forwarded to the runtime: its connection is its own, and the client's
/// credentials are for the kubelet only.
const NOT_FORWARDED: [&str; 4] = [
    "host",
    "authorization",
    "proxy-authorization",
    "content-length",
];

/// Sends `method url` with `headers` to the runtime and returns its answer (upgrades enabled).
pub async fn send(
    url: &str,
    method: Method,
    headers: &HeaderMap,
) -> Result<Response<hyper::body::Incoming>, ProxyError> {
    let uri: Uri = url
        .parse()
        .map_err(|e: axum::http::uri::InvalidUri| ProxyError::Url {
            url: url.into(),
            why: e.to_string(),
        })?;
    if uri.scheme_str() != Some("http") {
        return Err(ProxyError::Url {
            url: url.into(),
            why: "only http:// streaming servers are supported".into(),
        });
    }
    let authority = uri
        .authority()
        .ok_or_else(|| ProxyError::Url {
            url: url.into(),
            why: "no host".into(),
        })?
        .clone();
    let addr = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|source| ProxyError::Dial {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let http_err = |source| ProxyError::Http {
        method: method.clone(),
        url: url.into(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(http_err)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut req = Request::builder()
        .method(method.clone())
        .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .body(Body::empty())
        .map_err(|e| ProxyError::Url {
            url: url.into(),
            why: e.to_string(),
        })?;
    for (k, v) in headers {
        if !NOT_FORWARDED.contains(&k.as_str()) {
            req.headers_mut().append(k.clone(), v.clone());
        }
    }
    if let Ok(h) = HeaderValue::from_str(authority.as_str()) {
        req.headers_mut().insert(header::HOST, h);
    }
    sender.send_request(req).await.map_err(http_err)
}

/// The runtime's non-101 answer, passed back to the client unchanged.
pub fn relay(resp: Response<hyper::body::Incoming>) -> Response {
    let (parts, body) = resp.into_parts();
    let mut r = Response::new(Body::new(body));
    *r.status_mut() = parts.status;
    for (k, v) in &parts.headers {
        if k != header::CONNECTION && k != header::TRANSFER_ENCODING {
            r.headers_mut().append(k.clone(), v.clone());
        }
    }
    r
}

/// The proxy's own failure: 500 with the reason, as the kubelet's `responder` writes it.
pub fn failed(e: impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "error while proxying a streaming request");
    text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"))
}

/// Proxies the client's upgrade request to `url` and, on `101`, joins the two connections.
pub async fn pass_through(url: String, mut req: Request) -> Response {
    if !is_upgrade(req.headers()) {
        return failed("upgrade request required");
    }
    let client = hyper::upgrade::on(&mut req);
    let mut resp = match send(&url, req.method().clone(), req.headers()).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return relay(resp);
    }
    let backend = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "streaming upgrade did not complete");
                return;
            }
        };
        join(client, backend).await;
    });
    let mut r = StatusCode::SWITCHING_PROTOCOLS.into_response();
    for (k, v) in resp.headers() {
        r.headers_mut().append(k.clone(), v.clone());
    }
    r
}

/// Copies bytes both ways until both directions end (each end's EOF is passed on as a
/// write shutdown).
pub async fn join(client: Upgraded, backend: Upgraded) {
    let mut client = TokioIo::new(client);
    let mut backend = TokioIo::new(backend);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
        tracing::debug!(error = %e, "streaming connection ended");
    }
}
