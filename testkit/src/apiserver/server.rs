//! The HTTPS front: TLS with optional client certificates (HTTP/2 and HTTP/1.1 with upgrades),
//! authentication, authorization, routing of non-resource paths (health, version, discovery,
//! OpenAPI, metrics, OIDC discovery) and resource requests to the REST verbs, watches and
//! kubelet proxies, and per-user request and byte counters served at `/metrics`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::auth::{self, Attributes, ResourceAttrs, UserInfo};
use super::discovery;
use super::errors::ApiError;
use super::openapi;
use super::pki;
use super::registry;
use super::request::{negotiate, parse_query, request_info, Representation, RequestInfo};
use super::rest::{self, Reply, Req};
use super::watch;
use super::Server;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// Bodies above this are refused (as kube-apiserver's 3 MiB limit).
const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    full(Bytes::new())
}

fn json_response(code: u16, v: &Value, warnings: &[String]) -> Response<Body> {
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private");
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(h) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r = r.header("Warning", h);
        }
    }
    r.body(full(bytes))
        .unwrap_or_else(|_| Response::new(empty()))
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    json_response(e.code, &e.to_status(), &[])
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("X-Content-Type-Options", "nosniff")
        .body(full(body.into()))
        .unwrap_or_else(|_| Response::new(empty()))
}

/// Requests and bytes per user, verb and resource: what a node costs the control plane.
/// (user, verb, resource) → (requests, request bytes, response bytes).
type Counters = HashMap<(String, String, String), (u64, u64, u64)>;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
}

impl Metrics {
    pub fn add_request(
        &self,
        user: &str,
        verb: &str,
        resource: &str,
        bytes_in: usize,
        bytes_out: usize,
    ) {
        let mut c = self.counters.lock();
        let e = c
            .entry((user.to_string(), verb.to_string(), resource.to_string()))
            .or_default();
        e.0 += 1;
        e.1 += bytes_in as u64;
        e.2 += bytes_out as u64;
    }

    pub fn add_bytes(&self, user: &str, verb: &str, resource: &str, bytes_out: usize) {
        let mut c = self.counters.lock();
        c.entry((user.to_string(), verb.to_string(), resource.to_string()))
            .or_default()
            .2 += bytes_out as u64;
    }

    pub fn render(&self) -> String {
        let c = self.counters.lock();
        let mut keys: Vec<_> = c.keys().cloned().collect();
        keys.sort();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::new();
        for (name, idx, help) in [
            (
                "testkit_apiserver_requests_total",
                0,
                "Requests by user, verb and resource.",
            ),
            (
                "testkit_apiserver_request_bytes_total",
                1,
                "Request body bytes by user, verb and resource.",
            ),
            (
                "testkit_apiserver_response_bytes_total",
                2,
                "Response bytes (watch events included) by user, verb and resource.",
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for k in &keys {
                let v = c[k];
                let n = [v.0, v.1, v.2][idx];
                out.push_str(&format!(
                    "{name}{{user=\"{}\",verb=\"{}\",resource=\"{}\"}} {n}\n",
                    esc(&k.0),
                    esc(&k.1),
                    esc(&k.2)
                ));
            }
        }
        out
    }
}

fn bearer(req: &Request<Incoming>) -> Option<String> {
    let v = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(token.trim().to_string())
    } else {
        None
    }
}

fn attributes(info: &RequestInfo) -> Attributes {
    Attributes {
        verb: info.verb.clone(),
        resource: info.is_resource.then(|| ResourceAttrs {
            group: info.group.clone(),
            resource: info.resource.clone(),
            subresource: info.subresource.clone(),
            namespace: info.namespace.clone(),
            name: info.name.clone(),
        }),
        path: info.path.clone(),
    }
}

/// Serve one request.
pub async fn handle(
    srv: Arc<Server>,
    cert_user: Option<UserInfo>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let raw_query = req.uri().query().map(str::to_string);
    let query = parse_query(raw_query.as_deref());
    let user = match bearer(&req) {
        Some(token) => match srv
            .store
            .read(|g| auth::authenticate_token(&srv, g, &token, &[]))
        {
            Ok((u, _)) => u,
            Err(why) => {
                tracing::debug!(%path, %why, "authentication failed");
                return Ok(error_response(&ApiError::unauthorized()));
            }
        },
        None => cert_user.unwrap_or_else(UserInfo::anonymous),
    };
    let info = request_info(&method, &path, &query);
    let attrs = attributes(&info);
    if let Err(reason) = auth::authorize(&user, &attrs) {
        let e = auth::forbidden(&user, &attrs, &reason);
        srv.metrics
            .add_request(&user.name, &info.verb, &info.resource, 0, 0);
        return Ok(error_response(&e));
    }
    let resource = info.resource.clone();
    let verb = info.verb.clone();
    let resp = if info.is_resource {
        match resource_request(&srv, &user, &info, raw_query.as_deref(), &query, req).await {
            Ok((r, n)) => {
                srv.metrics
                    .add_request(&user.name, &verb, &resource, n, body_len(&r));
                r
            }
            Err(e) => {
                srv.metrics.add_request(&user.name, &verb, &resource, 0, 0);
                error_response(&e)
            }
        }
    } else {
        srv.metrics.add_request(&user.name, &verb, &path, 0, 0);
        non_resource(&srv, &method, &path, &query)
    };
    tracing::debug!(
        user = %user.name, %method, %path, query = raw_query.as_deref().unwrap_or(""),
        code = resp.status().as_u16(), latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(resp)
}

fn body_len(r: &Response<Body>) -> usize {
    use hyper::body::Body as _;
    r.body().size_hint().exact().unwrap_or(0) as usize
}

fn non_resource(
    srv: &Arc<Server>,
    method: &Method,
    path: &str,
    query: &super::request::Query,
) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "405: Method Not Allowed");
    }
    let verbose = query.contains_key("verbose");
    let health = |name: &str| {
        if verbose {
            text(
                StatusCode::OK,
                format!("[+]ping ok\n[+]log ok\n[+]etcd ok\n{name} check passed\n"),
            )
        } else {
            text(StatusCode::OK, "ok")
        }
    };
    let segs: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["healthz", ..] => health("healthz"),
        ["livez", ..] => health("livez"),
        ["readyz", ..] => {
            if srv.ready.load(std::sync::atomic::Ordering::Acquire) {
                health("readyz")
            } else {
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "[-]startup failed\nreadyz check failed\n",
                )
            }
        }
        ["version"] => json_response(200, &discovery::version(), &[]),
        ["api"] => json_response(200, &discovery::api_versions(&srv.addr.to_string()), &[]),
        ["api", v] => match discovery::resource_list("", v) {
            Some(d) => json_response(200, &d, &[]),
            None => not_found(),
        },
        ["apis"] => json_response(200, &discovery::api_group_list(), &[]),
        ["apis", g] => match discovery::api_group(g) {
            Some(d) => json_response(200, &d, &[]),
            None => not_found(),
        },
        ["apis", g, v] => match discovery::resource_list(g, v) {
            Some(d) => json_response(200, &d, &[]),
            None => not_found(),
        },
        ["openapi", "v3"] => json_response(200, &openapi::v3_index(&srv.openapi_hash), &[]),
        ["openapi", "v3", "api", v] => openapi_doc(srv, "", v),
        ["openapi", "v3", "apis", g, v] => openapi_doc(srv, g, v),
        ["metrics"] => text(StatusCode::OK, srv.metrics.render()),
        [".well-known", "openid-configuration"] => json_response(
            200,
            &json!({"issuer": super::sa::API_AUDIENCE,
                    "jwks_uri": format!("https://{}/openid/v1/jwks", srv.addr),
                    "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["ES256"]}),
            &[],
        ),
        ["openid", "v1", "jwks"] => json_response(200, &jwks(srv), &[]),
        _ => text(StatusCode::NOT_FOUND, "404 page not found\n"),
    }
}

fn jwks(srv: &Server) -> Value {
    use ring::signature::KeyPair;
    let pk = srv.pki.sa_key.public_key().as_ref();
    // Uncompressed point: 0x04 || X (32) || Y (32).
    let (x, y) = if pk.len() == 65 {
        (&pk[1..33], &pk[33..65])
    } else {
        (&pk[..0], &pk[..0])
    };
    let b = |d: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d);
    json!({"keys": [{"use": "sig", "kty": "EC", "kid": srv.pki.sa_key_id, "crv": "P-256",
                     "alg": "ES256", "x": b(x), "y": b(y)}]})
}

fn openapi_doc(srv: &Server, group: &str, version: &str) -> Response<Body> {
    if !registry::group_versions().contains(&(group, version)) {
        return not_found();
    }
    let doc = openapi::v3_document(&srv.graph, group, version);
    let mut r = json_response(200, &doc, &[]);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, immutable"),
    );
    r
}

fn not_found() -> Response<Body> {
    error_response(&ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    ))
}

fn header_str(req: &Request<Incoming>, h: header::HeaderName) -> String {
    req.headers()
        .get(h)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn resource_request(
    srv: &Arc<Server>,
    user: &UserInfo,
    info: &RequestInfo,
    raw_query: Option<&str>,
    query: &super::request::Query,
    req: Request<Incoming>,
) -> Result<(Response<Body>, usize), ApiError> {
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let r = registry::lookup(&info.group, &info.version, &info.resource).ok_or_else(not_found)?;
    let sub = info.subresource.as_str();
    let subdef = if sub.is_empty() {
        None
    } else {
        Some(r.subresource(sub).ok_or_else(not_found)?)
    };
    if r.namespaced
        && info.namespace.is_empty()
        && !(sub.is_empty() && matches!(info.verb.as_str(), "list" | "watch"))
    {
        return Err(not_found());
    }
    if !r.namespaced && !info.namespace.is_empty() {
        return Err(not_found());
    }
    let allowed = match subdef {
        Some(s) => s.verbs.contains(&info.verb.as_str()) || (s.name == "proxy"),
        None => r.has_verb(&info.verb),
    };
    if !allowed {
        return Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource",
        ));
    }
    match (r.resource, sub) {
        ("pods", "log" | "exec" | "attach" | "portforward" | "proxy") => {
            return super::proxy::pod_subresource(srv, info, raw_query, req)
                .await
                .map(|r| (r, 0));
        }
        ("nodes", "proxy") => {
            return super::proxy::node_proxy(srv, info, raw_query, req)
                .await
                .map(|r| (r, 0));
        }
        _ => {}
    }
    let repr = negotiate(
        req.headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok()),
    );
    if repr == Representation::NotAcceptable {
        return Err(ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/yaml",
        ));
    }
    let content_type = header_str(&req, header::CONTENT_TYPE);
    let user_agent = header_str(&req, header::USER_AGENT);
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(ApiError::too_large());
            }
            return Err(ApiError::bad_request(format!(
                "failed to read the request body: {e}"
            )));
        }
    };
    let n_in = body.len();
    let rq = Req {
        srv,
        user,
        info,
        query,
        repr,
        content_type,
        user_agent,
        body,
    };
    if info.verb == "watch" && sub.is_empty() {
        let rx = watch::watch(&rq, r).await?;
        let stream = ReceiverStream::new(rx).map(|b| Ok::<_, BoxError>(Frame::data(b)));
        let resp = Response::builder()
            .status(StatusCode::OK)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CACHE_CONTROL, "no-cache, private")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        return Ok((resp, n_in));
    }
    let reply: Reply = match (info.verb.as_str(), sub) {
        ("list", "") => rest::list(&rq, r).await?,
        ("get", "") | ("get", "status" | "approval" | "ephemeralcontainers") => rest::get(&rq, r)?,
        ("create", "") if !r.stored => rest::review(&rq, r)?,
        ("create", "") => rest::create(&rq, r)?,
        ("update", "") | ("update", "status" | "approval" | "finalize" | "ephemeralcontainers") => {
            rest::update(&rq, r, sub)?
        }
        ("patch", "") | ("patch", "status" | "approval" | "ephemeralcontainers") => {
            rest::patch(&rq, r, sub)?
        }
        ("delete", "") => rest::delete(&rq, r)?,
        ("deletecollection", "") => rest::delete_collection(&rq, r)?,
        ("create", "binding") => rest::binding(&rq, r)?,
        ("create", "eviction") => rest::eviction(&rq, r)?,
        ("create", "token") => rest::token(&rq, r)?,
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    Ok((
        json_response(reply.code, &reply.body, &reply.warnings),
        n_in,
    ))
}

/// Accept TLS connections until `shutdown` fires.
pub async fn serve(
    srv: Arc<Server>,
    listener: tokio::net::TcpListener,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(srv.pki.server_config.clone());
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let srv = srv.clone();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(t)) => t,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "TLS handshake failed: {e}");
                        return;
                    }
                    Err(_) => return,
                };
            let cert_user = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| pki::user_from_cert(c.as_ref()))
                .map(|(cn, o)| auth::cert_user(cn, o));
            let service =
                hyper::service::service_fn(move |req| handle(srv.clone(), cert_user.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
