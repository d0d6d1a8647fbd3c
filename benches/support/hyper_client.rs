//! The probe's GET done with hyper's HTTP/1 client connection (`hyper::client::conn::http1`),
//! for `benches/probes.rs` to measure against the agent's own client in the same run (issue
//! 11). It keeps the prober's policy where it costs anything: the same request headers (built
//! into hyper's `HeaderMap`), the same socket ([`ProbeStream`]: `SO_LINGER` 1 s, reset when
//! abandoned), at most `MAX_BODY` bytes of the body, hyper's head limit at the prober's
//! `MAX_HEAD`, and the connection driven on the caller's task (no task spawned per request) and
//! not shut down, as Go's transport closes a finished connection. Redirects and HTTPS are left
//! out: the bench's listeners answer `200` over plain HTTP.
//!
//! This is the client the agent used between the two measurements in `benches/README.md`; it
//! lost on CPU and lives on here only as the comparison.

use std::time::Duration;

use futures_util::FutureExt;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use kubelet_rs::prober::http::{ProbeStream, Url, MAX_BODY, MAX_HEAD};
use tokio::net::TcpStream;

/// Headers Go's request writer sets itself and never takes from the caller's header map.
const OWN_HEADERS: [&str; 6] = [
    "host",
    "user-agent",
    "connection",
    "content-length",
    "transfer-encoding",
    "trailer",
];

/// GET `url` over plain HTTP within `timeout`; the status.
pub async fn get(
    url: &Url,
    headers: &[(String, String)],
    user_agent: &str,
    timeout: Duration,
) -> Result<u16, String> {
    match tokio::time::timeout(timeout, get_once(url, headers, user_agent)).await {
        Ok(r) => r,
        Err(_) => Err(format!("Get {:?}: timeout", url.to_string())),
    }
}

async fn get_once(
    url: &Url,
    headers: &[(String, String)],
    user_agent: &str,
) -> Result<u16, String> {
    let req = build_request(url, headers, user_agent)?;
    let addr: std::net::SocketAddr = (
        url.host
            .parse::<std::net::IpAddr>()
            .map_err(|e| e.to_string())?,
        url.port,
    )
        .into();
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    exchange(ProbeStream::new(tcp), req).await
}

/// The request: the path, `Host`, the defaults the spec does not override, and the spec's
/// headers (names or values that are not valid HTTP are left out).
fn build_request(
    url: &Url,
    headers: &[(String, String)],
    user_agent: &str,
) -> Result<Request<Empty<Bytes>>, String> {
    let uri = Uri::try_from(request_target(&url.path)).map_err(|e| e.to_string())?;
    let mut req = Request::new(Empty::new());
    *req.uri_mut() = uri;
    let map = req.headers_mut();
    let spec = |name: &'static str| {
        headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let host = spec("host")
        .next()
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| url.authority());
    if let Ok(v) = HeaderValue::try_from(host) {
        map.insert(header::HOST, v);
    }
    let user_agent = spec("user-agent").next().unwrap_or(user_agent);
    if let (false, Ok(v)) = (user_agent.is_empty(), HeaderValue::from_str(user_agent)) {
        map.insert(header::USER_AGENT, v);
    }
    if spec("accept").next().is_none() {
        map.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    }
    map.insert(header::CONNECTION, HeaderValue::from_static("close"));
    for (k, v) in headers {
        if OWN_HEADERS.iter().any(|o| k.eq_ignore_ascii_case(o))
            || (k.eq_ignore_ascii_case("accept") && v.is_empty())
        {
            continue;
        }
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            map.append(k, v);
        }
    }
    Ok(req)
}

/// The path with bytes a URI cannot carry percent-encoded.
fn request_target(path: &str) -> String {
    let path = path.split('#').next().unwrap_or("");
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%[]".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// Sends `req` and reads the status and up to `MAX_BODY` bytes of the body; a connection whose
/// response was read to its end is marked complete.
async fn exchange(io: ProbeStream, req: Request<Empty<Bytes>>) -> Result<u16, String> {
    let (mut sender, mut conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .max_header_size(MAX_HEAD)
        .handshake::<_, Empty<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    let answer = async move {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut kept: Vec<u8> = Vec::new();
        let mut whole = false;
        while kept.len() < MAX_BODY {
            match body.frame().await {
                None => {
                    whole = true;
                    break;
                }
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let take = data.len().min(MAX_BODY - kept.len());
                        kept.extend_from_slice(&data[..take]);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
        Ok::<_, String>((status, whole))
    };
    let mut answer = std::pin::pin!(answer);
    let mut conn_done = None;
    let (status, whole) = loop {
        tokio::select! {
            biased;
            r = &mut answer => break r?,
            c = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)), if conn_done.is_none() => {
                conn_done = Some(c);
            }
        }
    };
    if whole {
        let done = conn_done
            .or_else(|| std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).now_or_never());
        if let Some(Ok(())) = done {
            conn.into_parts().io.into_inner().mark_complete();
        }
    }
    Ok(status)
}
