//! The kubelet's streaming endpoints, after `pkg/kubelet/server/server.go`: `/exec`,
//! `/attach` and `/portForward` (GET or POST, with or without the pod UID in the path) ask the
//! runtime for a single-use URL on its streaming server (CRI `Exec`, `Attach`, `PortForward`)
//! and proxy the client's connection upgrade to it, and `/run` (POST, `cmd=`) runs a command
//! through CRI `ExecSync` and answers with its output.
//!
//! SPDY/3.1 upgrades and the websocket protocols the runtime speaks (`v4.channel.k8s.io`,
//! `channel.k8s.io`, the base64 ones) are passed through byte for byte ([`proxy`]). Two
//! protocols that containerd 1.6 does not speak are terminated here, as the Go kubelet does
//! with `ExtendWebSocketsToKubelet` and kube-apiserver's stream translator: websocket
//! `v5.channel.k8s.io` (kubectl's exec, attach and cp) becomes a SPDY `v4.channel.k8s.io`
//! session with the runtime, its CLOSE signal a half-close of stdin ([`translate`]), and the
//! port-forward tunnel `SPDY/3.1+portforward.k8s.io` (SPDY carried in websocket binary
//! messages) is unwrapped onto a SPDY upgrade to the runtime's port-forward URL. The wire
//! formats are in [`websocket`] and [`spdy`].

pub mod proxy;
pub mod spdy;
pub mod translate;
pub mod websocket;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use proto::cri;

use super::ApiState;
use crate::kuberuntime::RuntimeError;

/// The streaming protocol names of client-go and the kubelet.
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
pub const PROTOCOL_PORT_FORWARD: &str = "portforward.k8s.io";
pub const PROTOCOL_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";
/// The websocket protocols for exec/attach that a client may offer, v5 included: the first
/// one a client lists decides whether the kubelet translates (v5) or passes through.
const EXEC_WS_PROTOCOLS: [&str; 7] = [
    PROTOCOL_V5,
    PROTOCOL_V4,
    "v4.base64.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];

/// Why a streaming request failed before any upgrade.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
    /// A CRI call failed: answered as the kubelet's `streaming.WriteError` does (NotFound →
    /// 404, ResourceExhausted → 429 with `Retry-After`, anything else 500).
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
}

impl IntoResponse for StreamingError {
    fn into_response(self) -> Response {
        let (code, retry) = match &self {
            StreamingError::BadRequest(_) => (StatusCode::BAD_REQUEST, false),
            StreamingError::NotFound(_) => (StatusCode::NOT_FOUND, false),
            StreamingError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, false),
            StreamingError::Runtime(RuntimeError::Rpc { code, .. }) => match code {
                tonic::Code::NotFound => (StatusCode::NOT_FOUND, false),
                tonic::Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, true),
                _ => (StatusCode::INTERNAL_SERVER_ERROR, false),
            },
            StreamingError::Runtime(_) => (StatusCode::INTERNAL_SERVER_ERROR, false),
        };
        let body = match &self {
            StreamingError::Runtime(e) => e.message(),
            e => e.to_string(),
        };
        let mut r = text(code, body);
        if retry {
            // The streaming server's request cache TTL (`streaming.CacheTTL`, one minute).
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        }
        r
    }
}

/// A plain-text answer, as go-restful's `WriteError` and `http.Error` give.
pub(crate) fn text(code: StatusCode, body: impl Into<String>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

/// `/exec`, `/attach`, `/portForward` and `/run` on `api`'s pods and runtime.
pub fn routes(api: Arc<ApiState>) -> Router {
    Router::new()
        .route(
            "/run/{ns}/{pod}/{container}",
            post(run).fallback(not_allowed),
        )
        .route(
            "/run/{ns}/{pod}/{uid}/{container}",
            post(run).fallback(not_allowed),
        )
        .route("/exec/{ns}/{pod}/{container}", get(exec).post(exec))
        .route("/exec/{ns}/{pod}/{uid}/{container}", get(exec).post(exec))
        .route("/attach/{ns}/{pod}/{container}", get(attach).post(attach))
        .route(
            "/attach/{ns}/{pod}/{uid}/{container}",
            get(attach).post(attach),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(port_forward).post(port_forward),
        )
        .route(
            "/portForward/{ns}/{pod}/{uid}",
            get(port_forward).post(port_forward),
        )
        .with_state(api)
}

async fn not_allowed() -> Response {
    // go-restful's answer to a method no route of the path takes.
    let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    r.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    r
}

/// The query's pairs, in order (`command` repeats).
fn query_pairs(req: &Request) -> Vec<(String, String)> {
    req.uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The streams a client asks for (`remotecommand` `NewOptions`): `input`, `output`, `error`
/// and `tty` set to `1`; a TTY has no separate stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    pub fn from_query(pairs: &[(String, String)]) -> Result<Self, StreamingError> {
        let on = |k: &str| first(pairs, k) == Some("1");
        let tty = on("tty");
        let o = StreamOptions {
            stdin: on("input"),
            stdout: on("output"),
            stderr: on("error") && !tty,
            tty,
        };
        if !o.stdin && !o.stdout && !o.stderr {
            return Err(StreamingError::BadRequest(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        Ok(o)
    }
}

/// The path's parts: namespace, pod, optional UID, optional container.
struct Target {
    ns: String,
    pod: String,
    uid: Option<String>,
    container: String,
}

impl Target {
    fn from(mut p: HashMap<String, String>) -> Self {
        Target {
            ns: p.remove("ns").unwrap_or_default(),
            pod: p.remove("pod").unwrap_or_default(),
            uid: p.remove("uid").filter(|u| !u.is_empty()),
            container: p.remove("container").unwrap_or_default(),
        }
    }

    fn full_name(&self) -> String {
        format!("{}_{}", self.pod, self.ns)
    }
}

/// The pod named `ns/name` among the kubelet's pods (404 `pod does not exist`).
fn find_pod(api: &ApiState, t: &Target) -> Result<k8s_openapi::api::core::v1::Pod, StreamingError> {
    api.status
        .pods()
        .into_iter()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some(t.ns.as_str())
                && p.metadata.name.as_deref() == Some(t.pod.as_str())
        })
        .ok_or_else(|| StreamingError::NotFound("pod does not exist".into()))
}

/// The runtime ID of the running container `name` of `pod`, when the path's UID (if any)
/// matches: the kubelet's `findContainer` over the runtime's running pods.
fn running_container(pod: &k8s_openapi::api::core::v1::Pod, t: &Target) -> Option<String> {
    if t.uid.is_some() && t.uid.as_deref() != pod.metadata.uid.as_deref() {
        return None;
    }
    let st = pod.status.as_ref()?;
    st.container_statuses
        .iter()
        .flatten()
        .chain(st.init_container_statuses.iter().flatten())
        .chain(st.ephemeral_container_statuses.iter().flatten())
        .find(|c| c.name == t.container)
        .filter(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
        .and_then(|c| c.container_id.as_deref())
        .and_then(|id| id.split_once("://").map(|(_, id)| id.to_string()))
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.get(header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
        && h.contains_key(header::UPGRADE)
}

/// `Upgrade: websocket` with `Connection: upgrade` (wsstream's `IsWebSocketRequest`).
pub fn is_websocket(h: &HeaderMap) -> bool {
    is_upgrade(h)
        && h.get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The websocket subprotocols a client offers, in its order.
pub fn offered_protocols(h: &HeaderMap) -> Vec<String> {
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

/// Whether an exec/attach websocket request is served by translating `v5.channel.k8s.io`:
/// v5 is the first of the offered protocols that anyone here speaks.
fn wants_v5(h: &HeaderMap) -> bool {
    is_websocket(h)
        && offered_protocols(h)
            .iter()
            .find(|p| EXEC_WS_PROTOCOLS.contains(&p.as_str()))
            .is_some_and(|p| p == PROTOCOL_V5)
}

/// How an exec or attach connection reaches the runtime.
async fn serve_stream(url: String, opts: StreamOptions, req: Request) -> Response {
    if wants_v5(req.headers()) {
        tracing::debug!(path = %req.uri().path(), "streaming: websocket v5 translated to SPDY");
        return translate::serve_v5(url, opts, req).await;
    }
    tracing::debug!(path = %req.uri().path(), "streaming: upgrade passed through");
    proxy::pass_through(url, req).await
}

async fn exec(
    State(api): State<Arc<ApiState>>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
) -> Response {
    let (headers, pairs) = (req.headers().clone(), query_pairs(&req));
    match exec_url(&api, Target::from(p), &headers, &pairs).await {
        Ok((url, opts)) => serve_stream(url, opts, req).await,
        Err(e) => e.into_response(),
    }
}

async fn exec_url(
    api: &ApiState,
    t: Target,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(String, StreamOptions), StreamingError> {
    let opts = StreamOptions::from_query(pairs)?;
    let pod = find_pod(api, &t)?;
    let id = running_container(&pod, &t).ok_or_else(|| {
        StreamingError::Internal(format!("container not found ({:?})", t.container))
    })?;
    upgrade_required(headers)?;
    let cmd = pairs
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    let url = api
        .kubelet
        .runtime
        .exec(cri::ExecRequest {
            container_id: id,
            cmd,
            tty: opts.tty,
            stdin: opts.stdin,
            stdout: opts.stdout,
            stderr: opts.stderr,
        })
        .await?;
    Ok((url, opts))
}

/// The upgrade-aware proxy's refusal of a plain request (`upgradeRequired`), checked before
/// the runtime is asked for a URL that nobody would use.
fn upgrade_required(headers: &HeaderMap) -> Result<(), StreamingError> {
    if is_upgrade(headers) {
        Ok(())
    } else {
        Err(StreamingError::Internal(
            "upgrade request required\n".into(),
        ))
    }
}

async fn attach(
    State(api): State<Arc<ApiState>>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
) -> Response {
    let (headers, pairs) = (req.headers().clone(), query_pairs(&req));
    match attach_url(&api, Target::from(p), &headers, &pairs).await {
        Ok((url, opts)) => serve_stream(url, opts, req).await,
        Err(e) => e.into_response(),
    }
}

async fn attach_url(
    api: &ApiState,
    t: Target,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<(String, StreamOptions), StreamingError> {
    let mut opts = StreamOptions::from_query(pairs)?;
    let pod = find_pod(api, &t)?;
    let missing = || {
        StreamingError::Internal(format!(
            "container {} not found in pod {}",
            t.container,
            t.full_name()
        ))
    };
    let id = running_container(&pod, &t).ok_or_else(missing)?;
    // Whether the process has a TTY was fixed when it started: the spec decides, not the query.
    let spec = pod.spec.as_ref();
    let container = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == t.container);
    let tty = match container {
        Some(c) => c.tty.unwrap_or(false),
        None => spec
            .and_then(|s| s.ephemeral_containers.as_ref())
            .and_then(|e| e.iter().find(|c| c.name == t.container))
            .map(|c| c.tty.unwrap_or(false))
            .ok_or_else(missing)?,
    };
    upgrade_required(headers)?;
    opts.tty = tty;
    let url = api
        .kubelet
        .runtime
        .attach(cri::AttachRequest {
            container_id: id,
            stdin: opts.stdin,
            tty,
            stdout: opts.stdout,
            stderr: opts.stderr,
        })
        .await?;
    Ok((url, opts))
}

/// The ports of a port-forward websocket request (`portforward.NewV4Options`): `port`
/// repeated or comma-separated, each 1–65535. Other requests carry their ports in SPDY
/// stream headers and need none.
pub fn port_forward_ports(pairs: &[(String, String)]) -> Result<Vec<i32>, StreamingError> {
    let values: Vec<&str> = pairs
        .iter()
        .filter(|(k, _)| k == "port")
        .map(|(_, v)| v.as_str())
        .collect();
    if values.is_empty() {
        return Err(StreamingError::BadRequest(
            "query parameter \"port\" is required".into(),
        ));
    }
    let mut ports = Vec::new();
    for v in values {
        if v.is_empty() {
            return Err(StreamingError::BadRequest(
                "query parameter \"port\" cannot be empty".into(),
            ));
        }
        for p in v.split(',') {
            let port: u16 = p.parse().map_err(|e| {
                StreamingError::BadRequest(format!("unable to parse {v:?} as a port: {e}"))
            })?;
            if port < 1 {
                return Err(StreamingError::BadRequest(format!(
                    "port {v:?} must be > 0"
                )));
            }
            ports.push(port as i32);
        }
    }
    Ok(ports)
}

async fn port_forward(
    State(api): State<Arc<ApiState>>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
) -> Response {
    let tunnel = is_websocket(req.headers())
        && offered_protocols(req.headers())
            .iter()
            .any(|p| p == PROTOCOL_TUNNEL);
    let (headers, pairs) = (req.headers().clone(), query_pairs(&req));
    match port_forward_url(&api, Target::from(p), &headers, &pairs, tunnel).await {
        Ok(url) if tunnel => {
            tracing::debug!(path = %req.uri().path(), "streaming: port-forward websocket tunnel");
            translate::serve_tunnel(url, req).await
        }
        Ok(url) => {
            tracing::debug!(path = %req.uri().path(), "streaming: upgrade passed through");
            proxy::pass_through(url, req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn port_forward_url(
    api: &ApiState,
    t: Target,
    headers: &HeaderMap,
    pairs: &[(String, String)],
    tunnel: bool,
) -> Result<String, StreamingError> {
    let ports = if !tunnel && is_websocket(headers) {
        port_forward_ports(pairs)?
    } else {
        Vec::new()
    };
    let pod = find_pod(api, &t)?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if t.uid.as_ref().is_some_and(|u| *u != uid) {
        return Err(StreamingError::NotFound("pod not found".into()));
    }
    let desc = format!("{}_{}({uid})", t.pod, t.ns);
    let sandboxes = api
        .kubelet
        .runtime
        .list_pod_sandboxes(Some(&uid))
        .await
        .map_err(|e| {
            StreamingError::Internal(format!("failed to find sandboxID for pod {desc}: {e}"))
        })?;
    let sandbox = sandboxes
        .iter()
        .max_by_key(|s| s.created_at)
        .ok_or_else(|| {
            StreamingError::Internal(format!("failed to find sandboxID for pod {desc}"))
        })?;
    upgrade_required(headers)?;
    Ok(api
        .kubelet
        .runtime
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox.id.clone(),
            port: ports,
        })
        .await?)
}

/// `/run`: ExecSync with the command split on spaces; the output (stdout, then stderr) as
/// the body, or 500 with the runtime's error.
async fn run(
    State(api): State<Arc<ApiState>>,
    Path(p): Path<HashMap<String, String>>,
    req: Request,
) -> Response {
    let t = Target::from(p);
    let pairs = query_pairs(&req);
    let pod = match find_pod(&api, &t) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let cmd: Vec<String> = first(&pairs, "cmd")
        .unwrap_or("")
        .split(' ')
        .map(str::to_string)
        .collect();
    let Some(id) = running_container(&pod, &t) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("container not found ({:?})", t.container),
        );
    };
    match api.kubelet.runtime.run_in_container(&id, cmd.clone()).await {
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.message()),
        Ok(r) if r.exit_code != 0 => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "command '{}' exited with {}: {}",
                cmd.join(" "),
                r.exit_code,
                String::from_utf8_lossy(&r.stderr)
            ),
        ),
        Ok(r) => {
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            if out.is_empty() {
                return StatusCode::OK.into_response();
            }
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(out))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Vec<(String, String)> {
        form_urlencoded::parse(s.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    #[test]
    fn stream_options_as_remotecommand_reads_them() {
        let o = StreamOptions::from_query(&q("input=1&output=1&error=1&tty=1")).unwrap();
        assert_eq!(
            o,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true
            }
        );
        let o = StreamOptions::from_query(&q("output=1&error=1")).unwrap();
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        // Only "1" turns a stream on (the API server translates `stdin=true` to `input=1`).
        let e = StreamOptions::from_query(&q("stdin=true&output=true")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
    }

    #[test]
    fn port_forward_ports_as_new_v4_options_reads_them() {
        assert_eq!(
            port_forward_ports(&q("port=80&port=8080,9090")).unwrap(),
            vec![80, 8080, 9090]
        );
        assert_eq!(
            port_forward_ports(&q("ports=80")).unwrap_err().to_string(),
            "query parameter \"port\" is required"
        );
        assert_eq!(
            port_forward_ports(&q("port=")).unwrap_err().to_string(),
            "query parameter \"port\" cannot be empty"
        );
        assert!(port_forward_ports(&q("port=70000"))
            .unwrap_err()
            .to_string()
            .starts_with("unable to parse \"70000\" as a port"));
        assert_eq!(
            port_forward_ports(&q("port=0")).unwrap_err().to_string(),
            "port \"0\" must be > 0"
        );
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn v5_is_translated_only_when_it_is_the_clients_first_choice() {
        let ws = [("connection", "Upgrade"), ("upgrade", "websocket")];
        let with = |p: &str| {
            let mut h = headers(&ws);
            h.append(header::SEC_WEBSOCKET_PROTOCOL, p.parse().unwrap());
            h
        };
        assert!(wants_v5(&with("v5.channel.k8s.io")));
        assert!(wants_v5(&with("foo, v5.channel.k8s.io, v4.channel.k8s.io")));
        assert!(!wants_v5(&with("v4.channel.k8s.io, v5.channel.k8s.io")));
        assert!(!wants_v5(&with("channel.k8s.io")));
        let spdy = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1"),
            ("sec-websocket-protocol", "v5.channel.k8s.io"),
        ]);
        assert!(!wants_v5(&spdy));
        assert!(!is_websocket(&headers(&[("upgrade", "websocket")])));
    }
}
