//! The kubelet's HTTP endpoints: `/healthz` on the healthz port (127.0.0.1:10248) and the
//! read-only API (`--read-only-port`, plain HTTP, off by default): `/pods`, `/healthz`, and
//! the monitoring endpoints of [`endpoints`] (`/metrics`, `/metrics/cadvisor`,
//! `/metrics/resource`, `/metrics/probes`, `/stats/summary`), which the authenticated 10250
//! server will mount the same way ([`endpoints::routes`]). [`instrument`] counts every request
//! of a kubelet API server in the kubelet's `kubelet_http_*` families, as its `ServeHTTP`
//! does (the healthz port is not counted, as the kubelet's is not).

pub mod containerlogs;
pub mod endpoints;
pub mod secure;
pub mod stats;
pub mod streaming;

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::health::Health;
use crate::metrics::Metrics;
use crate::status::StatusManager;

#[derive(Clone)]
struct HealthState {
    health: Health,
}

/// The k8s healthz format: `ok`, or HTTP 500 listing each check (`[+]name ok` /
/// `[-]name failed: reason`) and `healthz check failed`. `?verbose` lists checks even when all
/// pass.
fn healthz_body(health: &Health, verbose: bool, only: Option<&str>) -> (StatusCode, String) {
    let checks = health.checks();
    let checks: Vec<_> = match only {
        Some(name) => {
            let Some(c) = checks.into_iter().find(|c| c.name == name) else {
                return (
                    StatusCode::NOT_FOUND,
                    format!("healthz check {name:?} not found\n"),
                );
            };
            return match c.error {
                None => (StatusCode::OK, "ok".into()),
                Some(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("internal server error: {e}\n"),
                ),
            };
        }
        None => checks,
    };
    let failed = checks.iter().any(|c| c.error.is_some());
    if !failed && !verbose {
        return (StatusCode::OK, "ok".into());
    }
    let mut body = String::new();
    for c in &checks {
        match &c.error {
            None => body.push_str(&format!("[+]{} ok\n", c.name)),
            Some(e) => body.push_str(&format!("[-]{} failed: {e}\n", c.name)),
        }
    }
    if failed {
        body.push_str("healthz check failed\n");
        (StatusCode::INTERNAL_SERVER_ERROR, body)
    } else {
        body.push_str("healthz check passed\n");
        (StatusCode::OK, body)
    }
}

#[derive(serde::Deserialize, Default)]
struct HealthQuery {
    verbose: Option<String>,
}

async fn healthz(State(s): State<HealthState>, Query(q): Query<HealthQuery>) -> Response {
    let (code, body) = healthz_body(&s.health, q.verbose.is_some(), None);
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn healthz_one(State(s): State<HealthState>, Path(name): Path<String>) -> Response {
    let (code, body) = healthz_body(&s.health, false, Some(&name));
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `/healthz` (and `/healthz/<check>`) only: the healthz port.
pub fn healthz_router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/healthz/{check}", get(healthz_one))
        .with_state(HealthState { health })
}

/// The state behind the read-only API (and later the authenticated 10250 API).
#[derive(Clone)]
pub struct ApiState {
    pub kubelet: Arc<crate::kubelet::Kubelet>,
    pub status: StatusManager,
    pub metrics: Metrics,
    pub monitor: Arc<collectors::Monitor>,
    /// Container identities for cgroups (pod, namespace, container, image).
    pub names: Arc<crate::cadvisor::names::RuntimeNames>,
}

/// One item of a `PodList`: the pod without its own kind/apiVersion, in the API's field order.
#[derive(serde::Serialize)]
struct PodItem<'a> {
    metadata: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<&'a k8s_openapi::api::core::v1::PodSpec>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a k8s_openapi::api::core::v1::PodStatus>,
}

#[derive(serde::Serialize)]
struct PodList<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: serde_json::Map<String, Value>,
    items: Vec<PodItem<'a>>,
}

/// A v1 `PodList` of the node's pods, as the kubelet's `/pods` writes it: `kind`,
/// `apiVersion`, `metadata`, `items` in that order, items without their own kind/apiVersion.
pub fn pod_list_body(status: &StatusManager) -> String {
    let pods = status.pods();
    let list = PodList {
        kind: "PodList",
        api_version: "v1",
        metadata: serde_json::Map::new(),
        items: pods
            .iter()
            .map(|p| PodItem {
                metadata: &p.metadata,
                spec: p.spec.as_ref(),
                status: p.status.as_ref(),
            })
            .collect(),
    };
    serde_json::to_string(&list).unwrap_or_default()
}

async fn pods(State(s): State<Arc<ApiState>>) -> Response {
    let body = pod_list_body(&s.status);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The path label of `kubelet_http_*` (the kubelet's `getMetricBucket`): the first segment of
/// the path (`metrics/<x>` for the metrics endpoints) if it is one of the kubelet API's
/// endpoints, `other` otherwise, so that labels stay bounded whatever clients ask for.
pub fn path_bucket(path: &str) -> &'static str {
    const BUCKETS: [&str; 17] = [
        "healthz",
        "pods",
        "stats",
        "metrics",
        "metrics/cadvisor",
        "metrics/probes",
        "metrics/resource",
        "run",
        "exec",
        "attach",
        "portForward",
        "containerLogs",
        "runningpods",
        "configz",
        "logs",
        "debug",
        "checkpoint",
    ];
    let mut parts = path.trim_start_matches('/').splitn(3, '/');
    let first = parts.next().unwrap_or("");
    let root: std::borrow::Cow<'_, str> = match (first, parts.next()) {
        ("metrics", Some(sub)) => format!("metrics/{sub}").into(),
        _ => first.into(),
    };
    BUCKETS
        .iter()
        .find(|b| **b == root)
        .copied()
        .unwrap_or("other")
}

/// The method label of `kubelet_http_*`: the HTTP verbs the kubelet knows, `other` otherwise.
fn method_bucket(method: &axum::http::Method) -> &'static str {
    const METHODS: [&str; 8] = [
        "OPTIONS", "GET", "HEAD", "POST", "PUT", "DELETE", "TRACE", "CONNECT",
    ];
    METHODS
        .iter()
        .find(|m| **m == method.as_str())
        .copied()
        .unwrap_or("other")
}

#[derive(Clone)]
struct HttpMetrics {
    metrics: Metrics,
    server_type: &'static str,
}

/// Decrements the in-flight gauge however the request ends.
struct Inflight(prometheus::IntGauge);

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn count_request(
    State(h): State<HttpMetrics>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = path_bucket(req.uri().path());
    let long_running = matches!(path, "exec" | "attach" | "portForward" | "debug");
    let labels = [
        method_bucket(req.method()),
        path,
        h.server_type,
        if long_running { "true" } else { "false" },
    ];
    h.metrics
        .http_requests_total
        .with_label_values(&labels)
        .inc();
    let gauge = h.metrics.http_inflight_requests.with_label_values(&labels);
    gauge.inc();
    let _inflight = Inflight(gauge);
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    h.metrics
        .http_requests_duration_seconds
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// Counts every request `router` serves in `kubelet_http_requests_total`,
/// `kubelet_http_requests_duration_seconds` and `kubelet_http_inflight_requests`, labelled with
/// `server_type` (`readonly` for the read-only port, `readwrite` for the authenticated one).
pub fn instrument(router: Router, metrics: Metrics, server_type: &'static str) -> Router {
    router.layer(axum::middleware::from_fn_with_state(
        HttpMetrics {
            metrics,
            server_type,
        },
        count_request,
    ))
}

/// The read-only port: `/pods`, the monitoring endpoints, and `/healthz`.
pub fn readonly_router(state: ApiState, health: Health) -> Router {
    let state = Arc::new(state);
    Router::new()
        .route("/pods", get(pods))
        .route("/pods/", get(pods))
        .with_state(state.clone())
        .merge(endpoints::routes(state))
        .merge(healthz_router(health))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_fall_in_the_kubelets_buckets() {
        for (path, bucket) in [
            ("/pods", "pods"),
            ("/pods/", "pods"),
            ("/metrics", "metrics"),
            ("/metrics/cadvisor", "metrics/cadvisor"),
            ("/metrics/probes/", "metrics/probes"),
            ("/metrics/", "other"),
            ("/metrics/nope", "other"),
            ("/stats/summary", "stats"),
            ("/healthz/pleg", "healthz"),
            ("/exec/ns/pod/c", "exec"),
            ("/", "other"),
            ("/events", "other"),
            ("/%2e%2e/etc/passwd", "other"),
        ] {
            assert_eq!(path_bucket(path), bucket, "{path}");
        }
        assert_eq!(method_bucket(&axum::http::Method::GET), "GET");
        assert_eq!(method_bucket(&axum::http::Method::PATCH), "other");
    }

    #[tokio::test]
    async fn every_request_is_counted_with_bounded_labels() {
        use tower::ServiceExt;
        let m = Metrics::new("n");
        let app = instrument(
            Router::new().route("/pods", get(|| async { "[]" })),
            m.clone(),
            "readonly",
        );
        for uri in ["/pods", "/pods", "/no/such/thing"] {
            let req = axum::http::Request::get(uri)
                .body(axum::body::Body::empty())
                .unwrap();
            app.clone().oneshot(req).await.unwrap();
        }
        let text = m.encode();
        assert!(text.contains("kubelet_http_requests_total{long_running=\"false\",method=\"GET\",path=\"pods\",server_type=\"readonly\"} 2\n"), "{text}");
        assert!(text.contains("kubelet_http_requests_total{long_running=\"false\",method=\"GET\",path=\"other\",server_type=\"readonly\"} 1\n"), "{text}");
        assert!(text.contains("kubelet_http_requests_duration_seconds_count{long_running=\"false\",method=\"GET\",path=\"pods\",server_type=\"readonly\"} 2\n"), "{text}");
        assert!(text.contains("kubelet_http_inflight_requests{long_running=\"false\",method=\"GET\",path=\"pods\",server_type=\"readonly\"} 0\n"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn healthz_lists_failing_checks() {
        let h = Health::new();
        h.relist_ok();
        assert_eq!(healthz_body(&h, false, None), (StatusCode::OK, "ok".into()));
        let (code, body) = healthz_body(&h, true, None);
        assert_eq!(code, StatusCode::OK);
        assert!(
            body.contains("[+]pleg ok\n") && body.ends_with("healthz check passed\n"),
            "{body}"
        );
        h.runtime_failed("dial unix /run/x.sock: connection refused".into());
        let (code, body) = healthz_body(&h, false, None);
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            body.contains("[-]runtime failed: container runtime is down: dial unix /run/x.sock"),
            "{body}"
        );
        assert!(body.ends_with("healthz check failed\n"));
        let (code, _) = healthz_body(&h, false, Some("pleg"));
        assert_eq!(code, StatusCode::OK);
        let (code, _) = healthz_body(&h, false, Some("runtime"));
        assert_eq!(code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            healthz_body(&h, false, Some("nope")).0,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn pod_list_shape() {
        let s = StatusManager::new();
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p", "namespace": "default", "uid": "u"}}),
        )
        .unwrap();
        s.set_pod("u", Arc::new(pod));
        let body = pod_list_body(&s);
        assert!(
            body.starts_with(
                r#"{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[{"metadata":"#
            ),
            "{body}"
        );
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["kind"], "PodList");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["items"][0]["metadata"]["name"], "p");
        assert!(v["items"][0].get("kind").is_none());
    }
}
