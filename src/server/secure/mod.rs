//! The authenticated kubelet API (`--address`:`--port`, 10250): TLS ([`tls`]), then every
//! request authenticated ([`authn`]: client certificate, bearer token through TokenReview,
//! anonymous when allowed; else `401 Unauthorized`) and authorized ([`authz`]: `AlwaysAllow`
//! or SubjectAccessReview; else `403 Forbidden (user=…, verb=…, resource=…, subresource=…)`),
//! as the kubelet's auth filter does. It serves what the read-only port serves (`/pods`, the
//! monitoring endpoints, `/healthz`), plus `/runningpods/`, `/configz`, `/logs/` and the
//! debugging handlers mounted by [`router`]; with `enableDebuggingHandlers: false` those answer
//! 405 as the kubelet's do.
//!
//! Hardening: a cap on concurrent connections, a TLS handshake and request-header deadline (a
//! slow client cannot hold a connection or a worker), header and body size limits, and no
//! panic on any request (a handler that panics answers 500 and the connection closes).

pub mod authn;
pub mod authz;
pub mod configz;
pub mod serving;
pub mod syslogs;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rustls::pki_types::CertificateDer;

use super::ApiState;
use crate::health::Health;
use authn::Authenticator;
use authz::{Authorizer, Decision};

/// The connection a request came in on: the peer and its client certificate chain.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    pub certs: Option<Vec<CertificateDer<'static>>>,
}

/// The authenticated user of a request (an extension set by the auth filter).
#[derive(Debug, Clone)]
pub struct User(pub authn::UserInfo);

/// Authentication and authorization of the kubelet API.
pub struct Auth {
    pub authenticator: Authenticator,
    pub authorizer: Authorizer,
    pub node: String,
}

fn plain(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg,
    )
        .into_response()
}

/// The kubelet's auth filter.
async fn auth_filter(
    State(auth): State<Arc<Auth>>,
    mut req: Request,
    next: axum::middleware::Next,
) -> Response {
    let certs = req
        .extensions()
        .get::<Connection>()
        .and_then(|c| c.certs.clone());
    let user = match auth
        .authenticator
        .authenticate(req.headers(), certs.as_deref())
        .await
    {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(error = %e, path = %req.uri().path(), "kubelet API: unauthorized");
            return plain(StatusCode::UNAUTHORIZED, "Unauthorized".into());
        }
    };
    let attrs = authz::request_attributes(&user, req.method(), req.uri().path(), &auth.node);
    match auth.authorizer.authorize(attrs).await {
        Decision::Allow => {}
        Decision::Deny(a) => {
            let msg = format!(
                "Forbidden (user={}, verb={}, resource=nodes, subresource={})",
                a.user, a.verb, a.subresource
            );
            tracing::info!(path = %req.uri().path(), "kubelet API: {msg}");
            return plain(StatusCode::FORBIDDEN, msg);
        }
        Decision::Error(a, e) => {
            let msg = format!(
                "Authorization error (user={}, verb={}, resource=nodes, subresource={})",
                a.user, a.verb, a.subresource
            );
            tracing::warn!(error = %e, "kubelet API: {msg}");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, msg);
        }
    }
    req.extensions_mut().insert(User(user));
    next.run(req).await
}

/// What the authenticated server serves besides the read-only endpoints.
pub struct SecureOptions {
    pub enable_debugging_handlers: bool,
    pub enable_system_log_handler: bool,
    /// The directory `/logs/` serves (`/var/log`).
    pub system_log_dir: std::path::PathBuf,
    /// `/configz`'s body.
    pub configz: serde_json::Value,
}

/// The kubelet's answer on a debugging endpoint that is turned off.
async fn debugging_disabled() -> Response {
    plain(
        StatusCode::METHOD_NOT_ALLOWED,
        "Debug endpoints are disabled.".into(),
    )
}

/// The debugging handlers' path prefixes, for the 405 answer when they are turned off.
const DEBUG_PREFIXES: &[&str] = &[
    "/run",
    "/exec",
    "/attach",
    "/portForward",
    "/containerLogs",
    "/runningpods",
    "/logs",
];

/// The authenticated API's routes, without the auth filter: the read-only ones, `/configz`,
/// `/runningpods/`, `/logs/` and `debug` (the debugging handlers' router, mounted when they
/// are enabled).
pub fn routes(api: Arc<ApiState>, health: Health, opts: SecureOptions, debug: Router) -> Router {
    let configz = Arc::new(opts.configz);
    let mut r = Router::new()
        .route("/pods", get(super::pods))
        .route("/pods/", get(super::pods))
        .with_state(api.clone())
        .merge(super::endpoints::routes(api.clone()))
        .merge(super::healthz_router(health))
        .route(
            "/configz",
            get(move || {
                let c = configz.clone();
                async move { axum::Json((*c).clone()) }
            }),
        );
    if opts.enable_debugging_handlers {
        r = r
            .route("/runningpods/", get(running_pods).with_state(api.clone()))
            .merge(debug);
        if opts.enable_system_log_handler {
            r = r.merge(syslogs::routes(opts.system_log_dir));
        }
    } else {
        for p in DEBUG_PREFIXES {
            r = r
                .route(p, axum::routing::any(debugging_disabled))
                .route(&format!("{p}/"), axum::routing::any(debugging_disabled))
                .route(
                    &format!("{p}/{{*rest}}"),
                    axum::routing::any(debugging_disabled),
                );
        }
    }
    r
}

/// `/runningpods/`: the pods with running containers in the runtime, as a PodList of names,
/// UIDs and containers (name and image), as the kubelet's runtime cache gives them.
async fn running_pods(State(api): State<Arc<ApiState>>) -> Response {
    use crate::kuberuntime::labels::{
        CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL,
    };
    let containers = match api.kubelet.runtime.list_running_containers().await {
        Ok(c) => c,
        Err(e) => {
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to list running pods: {e}"),
            )
        }
    };
    let mut pods: std::collections::BTreeMap<String, serde_json::Value> = Default::default();
    for c in containers {
        let l = |k: &str| c.labels.get(k).cloned().unwrap_or_default();
        let uid = l(POD_UID_LABEL);
        let pod = pods.entry(uid.clone()).or_insert_with(|| {
            serde_json::json!({
                "metadata": {"name": l(POD_NAME_LABEL), "namespace": l(POD_NAMESPACE_LABEL),
                             "uid": uid, "creationTimestamp": null},
                "spec": {"containers": []},
                "status": {}
            })
        });
        if let Some(list) = pod["spec"]["containers"].as_array_mut() {
            list.push(serde_json::json!({
                "name": l(CONTAINER_NAME_LABEL),
                "image": c.image.as_ref().map(|i| i.image.clone()).unwrap_or_default(),
                "resources": {}
            }));
        }
    }
    axum::Json(serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": pods.into_values().collect::<Vec<_>>(),
    }))
    .into_response()
}

/// Wraps `routes` in the auth filter.
pub fn with_auth(routes: Router, auth: Arc<Auth>) -> Router {
    routes.layer(axum::middleware::from_fn_with_state(auth, auth_filter))
}

/// Limits of the serving loop.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// The TLS handshake and each request's header must arrive within this.
    pub header_timeout: Duration,
    /// Largest request header block.
    pub max_header_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            max_header_bytes: 1 << 20,
            max_body_bytes: 3 << 20,
        }
    }
}

/// Serves `app` over TLS on `listener` until the task is dropped.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    limits: Limits,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let app = app
        .layer(axum::extract::DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn(catch_panic));
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "kubelet API: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "kubelet API: TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "kubelet API: TLS handshake timed out");
                    return;
                }
            };
            let certs = tls
                .get_ref()
                .1
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
            let conn = Connection { peer, certs };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(conn.clone());
                    let app = app.clone();
                    async move {
                        use tower::ServiceExt;
                        app.oneshot(req.map(axum::body::Body::new)).await
                    }
                },
            );
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "kubelet API: connection ended");
            }
        });
    }
}

/// Turns a panicking handler into a 500 for that request.
async fn catch_panic(req: Request, next: axum::middleware::Next) -> Response {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(_) => {
            tracing::error!("kubelet API: a handler panicked");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error".into(),
            )
        }
    }
}
