//! The kubelet's monitoring endpoints, mountable on any of its servers (the read-only port
//! now, the authenticated 10250 server later): `/metrics` (the kubelet's own families,
//! `process_*` and the collector's own cost), `/metrics/cadvisor` (cAdvisor's families with
//! the kubelet's labels), `/metrics/resource` (the resource metrics metrics-server reads),
//! `/metrics/probes` (the prober's families) and `/stats/summary`.
//!
//! Every exposition passes `promtool check metrics` apart from names the kubelet and cAdvisor
//! themselves spell that way (see the tests in `tests/metrics_endpoints.rs`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::stats::{self, DuCache, Summary, SummarySource};
use super::ApiState;
use crate::cadvisor::expo::{self, ms, Family, Kind, LabelSet};
use crate::cadvisor::prom::{Exporter, Flavour};
use crate::cadvisor::tracker::{Tracker, TrackerOptions};

/// What the endpoints share.
pub struct Endpoints {
    api: Arc<ApiState>,
    tracker: Arc<Tracker>,
    cadvisor: Exporter,
    du: DuCache,
}

impl Endpoints {
    /// The endpoints over the agent's state (the monitor's tracker is shared with 4194).
    pub fn new(api: Arc<ApiState>) -> Arc<Endpoints> {
        let tracker = Tracker::for_monitor(
            &api.monitor,
            TrackerOptions {
                kmsg: Some(crate::cadvisor::KMSG_PATH.into()),
            },
        );
        let cadvisor = Exporter::new(
            api.monitor.clone(),
            tracker.clone(),
            api.names.clone(),
            Some(api.names.clone()),
            Flavour::Kubelet,
            "/metrics/cadvisor",
        );
        let du = DuCache::new(api.kubelet.opts.volume_stats_agg_period);
        Arc::new(Endpoints {
            api,
            tracker,
            cadvisor,
            du,
        })
    }

    /// The summary (blocking: reads the rings, walks log and volume directories).
    pub fn summary(&self, only_cpu_and_memory: bool, image_fs_used: Option<u64>) -> Summary {
        let kl = &self.api.kubelet;
        let pods = self.api.status.pods();
        let kubepods = kl.cgroups.kubepods();
        stats::build(
            &SummarySource {
                monitor: &self.api.monitor,
                tracker: &self.tracker,
                names: &self.api.names,
                node_name: &kl.opts.node_name,
                pods: &pods,
                kubepods: &kubepods,
                root_dir: &kl.opts.root_dir,
                log_root: &kl.opts.log_root,
                du: &self.du,
                image_fs_used,
            },
            only_cpu_and_memory,
        )
    }
}

/// The monitoring routes over `api`.
pub fn routes(api: Arc<ApiState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/metrics/cadvisor", get(metrics_cadvisor))
        .route("/metrics/resource", get(metrics_resource))
        .route("/metrics/probes", get(metrics_probes))
        .route("/stats/summary", get(summary).post(summary))
        .with_state(Endpoints::new(api))
}

fn text(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, expo::CONTENT_TYPE)], body).into_response()
}

fn error(status: StatusCode, msg: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

async fn blocking(
    e: Arc<Endpoints>,
    endpoint: &'static str,
    f: fn(&Endpoints) -> Vec<u8>,
) -> Response {
    let out = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let body = f(&e);
        e.tracker.record_scrape(endpoint, t.elapsed(), body.len());
        body
    })
    .await;
    match out {
        Ok(body) => text(body),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

async fn metrics(State(e): State<Arc<Endpoints>>) -> Response {
    blocking(e, "/metrics", |e| {
        let mut body = e.api.metrics.encode().into_bytes();
        e.tracker.write_cost(&mut body);
        body
    })
    .await
}

async fn metrics_cadvisor(State(e): State<Arc<Endpoints>>) -> Response {
    // The exporter records its own cost.
    match tokio::task::spawn_blocking(move || e.cadvisor.render()).await {
        Ok(body) => text(body),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

async fn metrics_probes(State(e): State<Arc<Endpoints>>) -> Response {
    blocking(e, "/metrics/probes", |e| {
        e.api.metrics.probes.encode().into_bytes()
    })
    .await
}

async fn metrics_resource(State(e): State<Arc<Endpoints>>) -> Response {
    blocking(e, "/metrics/resource", |e| {
        resource_metrics(&e.summary(true, None))
    })
    .await
}

/// The kubelet's resource metrics (`pkg/kubelet/metrics/collectors/resource_metrics.go`) from
/// a CPU-and-memory summary, families sorted by name, help texts with their stability level.
pub fn resource_metrics(s: &Summary) -> Vec<u8> {
    let mut out = Vec::new();
    let none = LabelSet::default();
    let ts = |t: &stats::Time| Some(ms(t.0));
    let containers = || {
        s.pods.iter().flat_map(|p| {
            p.containers.iter().map(move |c| {
                (
                    c,
                    LabelSet::new([
                        ("container", c.name.as_str()),
                        ("namespace", p.pod_ref.namespace.as_str()),
                        ("pod", p.pod_ref.name.as_str()),
                    ]),
                )
            })
        })
    };
    let pod_labels = |p: &stats::PodStats| {
        LabelSet::new([
            ("namespace", p.pod_ref.namespace.as_str()),
            ("pod", p.pod_ref.name.as_str()),
        ])
    };
    let mut f = Family::begin(
        &mut out,
        "container_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the container in core-seconds",
        Kind::Counter,
    );
    for (c, l) in containers() {
        if let Some(cpu) = &c.cpu {
            if let Some(v) = cpu.usage_core_nano_seconds {
                f.sample(&l, &[], v as f64 / 1e9, ts(&cpu.time));
            }
        }
    }
    f.finish();
    let mut f = Family::begin(
        &mut out,
        "container_memory_working_set_bytes",
        "[STABLE] Current working set of the container in bytes",
        Kind::Gauge,
    );
    for (c, l) in containers() {
        if let Some(m) = &c.memory {
            if let Some(v) = m.working_set_bytes {
                f.sample(&l, &[], v as f64, ts(&m.time));
            }
        }
    }
    f.finish();
    let mut f = Family::begin(
        &mut out,
        "container_start_time_seconds",
        "[STABLE] Start time of the container since unix epoch in seconds",
        Kind::Gauge,
    );
    for (c, l) in containers() {
        if c.start_time.0 >= 1_000_000_000 {
            f.sample(&l, &[], c.start_time.0 as f64 / 1e9, None);
        }
    }
    f.finish();
    let mut f = Family::begin(
        &mut out,
        "node_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the node in core-seconds",
        Kind::Counter,
    );
    if let Some(cpu) = &s.node.cpu {
        if let Some(v) = cpu.usage_core_nano_seconds {
            f.sample(&none, &[], v as f64 / 1e9, ts(&cpu.time));
        }
    }
    f.finish();
    let mut f = Family::begin(
        &mut out,
        "node_memory_working_set_bytes",
        "[STABLE] Current working set of the node in bytes",
        Kind::Gauge,
    );
    if let Some(m) = &s.node.memory {
        if let Some(v) = m.working_set_bytes {
            f.sample(&none, &[], v as f64, ts(&m.time));
        }
    }
    f.finish();
    let mut f = Family::begin(
        &mut out,
        "pod_cpu_usage_seconds_total",
        "[STABLE] Cumulative cpu time consumed by the pod in core-seconds",
        Kind::Counter,
    );
    for p in &s.pods {
        if let Some(cpu) = &p.cpu {
            if let Some(v) = cpu.usage_core_nano_seconds {
                f.sample(&pod_labels(p), &[], v as f64 / 1e9, ts(&cpu.time));
            }
        }
    }
    f.finish();
    let mut f = Family::begin(
        &mut out,
        "pod_memory_working_set_bytes",
        "[STABLE] Current working set of the pod in bytes",
        Kind::Gauge,
    );
    for p in &s.pods {
        if let Some(m) = &p.memory {
            if let Some(v) = m.working_set_bytes {
                f.sample(&pod_labels(p), &[], v as f64, ts(&m.time));
            }
        }
    }
    f.finish();
    let mut f = Family::begin(
        &mut out,
        "resource_scrape_error",
        "[STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
        Kind::Gauge,
    );
    // The kubelet sets it when its summary provider fails; here the summary cannot fail as a
    // whole, so an error is the node's own CPU or memory sample missing (the monitoring core
    // has not sampled the root cgroup, or cannot read it).
    let scrape_error = s
        .node
        .cpu
        .as_ref()
        .and_then(|c| c.usage_core_nano_seconds)
        .is_none()
        || s.node
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes)
            .is_none();
    f.sample(&none, &[], if scrape_error { 1.0 } else { 0.0 }, None);
    f.finish();
    out
}

#[derive(serde::Deserialize, Default)]
struct SummaryQuery {
    only_cpu_and_memory: Option<String>,
}

async fn summary(
    State(e): State<Arc<Endpoints>>,
    method: Method,
    Query(q): Query<SummaryQuery>,
    body: Bytes,
) -> Response {
    // The kubelet reads the form: the query string, and for POST a urlencoded body too.
    let mut raw = q.only_cpu_and_memory;
    if method == Method::POST && raw.is_none() {
        raw = form_value(&body, "only_cpu_and_memory");
    }
    let only = match raw.as_deref() {
        None => false,
        Some(v) => match crate::config::flags::go_bool(v) {
            Ok(b) => b,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("invalid only_cpu_and_memory {v:?}: expected true or false"),
                )
            }
        },
    };
    let image_fs_used = if only {
        None
    } else {
        let rt = e.api.kubelet.runtime.clone();
        match tokio::time::timeout(std::time::Duration::from_secs(2), rt.image_fs_info()).await {
            Ok(Ok(r)) => {
                let used: u64 = r
                    .image_filesystems
                    .iter()
                    .filter_map(|f| f.used_bytes.as_ref().map(|u| u.value))
                    .sum();
                (!r.image_filesystems.is_empty()).then_some(used)
            }
            _ => None,
        }
    };
    let out = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let s = e.summary(only, image_fs_used);
        let body = serde_json::to_vec(&s).unwrap_or_default();
        e.tracker
            .record_scrape("/stats/summary", t.elapsed(), body.len());
        body
    })
    .await;
    match out {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(err) => error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string()),
    }
}

/// The first value of `key` in an `application/x-www-form-urlencoded` body (`a=b&c=d`, with
/// `+` and `%XX` decoded), as Go's `Request.FormValue` reads it.
fn form_value(body: &[u8], key: &str) -> Option<String> {
    form_urlencoded::parse(body)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode() {
        let body = b"only_cpu_and_memory=true&x=a%20b+c&y&x=second";
        assert_eq!(
            form_value(body, "only_cpu_and_memory").as_deref(),
            Some("true")
        );
        assert_eq!(form_value(body, "x").as_deref(), Some("a b c"));
        assert_eq!(form_value(body, "y").as_deref(), Some(""));
        assert_eq!(form_value(body, "absent"), None);
        assert_eq!(form_value(b"z=%4", "z").as_deref(), Some("%4"));
        // Bytes that are not UTF-8, and a multi-byte character right after a `%`.
        assert_eq!(
            form_value(b"k=%ff\xff", "k").as_deref(),
            Some("\u{fffd}\u{fffd}")
        );
        assert_eq!(form_value("k=%é".as_bytes(), "k").as_deref(), Some("%é"));
    }

    /// `resource_scrape_error` is 1 while the node's own CPU or memory sample is missing.
    #[test]
    fn resource_scrape_error_reports_a_missing_node_sample() {
        let empty = Summary::default();
        let text = String::from_utf8(resource_metrics(&empty)).unwrap();
        assert!(text.contains("\nresource_scrape_error 1\n"), "{text}");
    }
}
