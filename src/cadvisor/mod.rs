//! The cAdvisor-compatible API over the `collectors` monitoring core.
//!
//! [`router`] serves `/healthz`, `/api/v2.0/machine`, `/api/v2.0/spec/<name>` and
//! `/api/v2.0/stats/<name>` with cAdvisor's JSON field names and query parameters
//! (`type=name`, `recursive=true`, `count`, default 64, and `max_age`). Container identity
//! (aliases, namespace, labels, image) comes from a [`collectors::ContainerNamer`], which the
//! agent's sync loop fills; the standalone monitor ([`run_standalone`], the `kubelet-rs
//! cadvisor` subcommand) knows only cgroup paths.
//!
//! Errors follow cAdvisor's texts: an unknown container is `unknown container "/x"` with 404,
//! a bad query parameter names it with 400.

pub mod api;
pub mod names;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use collectors::discovery::NameFilter;
use collectors::model::{fs_role, NodeStats, Timestamp};
use collectors::{Container, ContainerNamer, Monitor, MonitorConfig, NoNames};

use crate::config::parse_go_duration;

/// Flags of `kubelet-rs cadvisor` (and the monitoring part of the agent's flags).
#[derive(Clone, Debug, clap::Args)]
pub struct CadvisorArgs {
    /// Port of the cAdvisor-compatible API.
    #[arg(long = "cadvisor-port", default_value_t = 4194, value_name = "PORT")]
    pub cadvisor_port: u16,
    /// Address the cAdvisor-compatible API listens on.
    #[arg(long = "cadvisor-bind-address", default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST), value_name = "IP")]
    pub cadvisor_bind_address: IpAddr,
    /// Time between two samples of every container (Go duration, at least 100ms).
    #[arg(long = "housekeeping-interval", default_value = "1s", value_parser = parse_interval, value_name = "DURATION")]
    pub housekeeping_interval: Duration,
    /// How long samples are kept in memory (Go duration).
    #[arg(long = "storage-duration", default_value = "2m", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub storage_duration: Duration,
    /// Time between full rescans of the cgroup hierarchies (inotify covers the time between).
    #[arg(long = "cgroup-rescan-interval", default_value = "10s", value_parser = parse_duration_arg, value_name = "DURATION")]
    pub rescan_interval: Duration,
    /// Root of the cgroup hierarchies.
    #[arg(
        long = "cgroup-root",
        default_value = "/sys/fs/cgroup",
        value_name = "DIR"
    )]
    pub cgroup_root: PathBuf,
    /// Root of procfs.
    #[arg(long = "proc-root", default_value = "/proc", value_name = "DIR")]
    pub proc_root: PathBuf,
    /// Root of sysfs (machine topology, disks, network devices).
    #[arg(long = "sys-root", default_value = "/sys", value_name = "DIR")]
    pub sys_root: PathBuf,
    /// Only track cgroups under these prefixes (repeatable or comma separated; `/` is
    /// always tracked). Default: every cgroup.
    #[arg(long = "cgroup-prefix", value_delimiter = ',', value_name = "PATH")]
    pub cgroup_prefixes: Vec<String>,
    /// Sampling threads (0: one per CPU).
    #[arg(long = "collector-threads", default_value_t = 0, value_name = "N")]
    pub collector_threads: usize,
    /// A directory on the image filesystem (reported with label `image`).
    #[arg(
        long = "image-fs-path",
        default_value = "/var/lib/kubelet-rs/containerd",
        value_name = "DIR"
    )]
    pub image_fs_path: PathBuf,
    /// A directory on the log filesystem.
    #[arg(long = "log-fs-path", default_value = "/var/log", value_name = "DIR")]
    pub log_fs_path: PathBuf,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    parse_go_duration(s).map_err(|e| e.to_string())
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration_arg(s)?;
    if d < collectors::monitor::MIN_HOUSEKEEPING_INTERVAL {
        return Err(format!(
            "{s:?} is below the minimum housekeeping interval of 100ms"
        ));
    }
    Ok(d)
}

impl CadvisorArgs {
    /// The monitor configuration these flags describe.
    pub fn monitor_config(&self) -> MonitorConfig {
        MonitorConfig {
            cgroup_root: self.cgroup_root.clone(),
            proc_root: self.proc_root.clone(),
            sys_root: self.sys_root.clone(),
            housekeeping_interval: self.housekeeping_interval,
            storage_duration: self.storage_duration,
            rescan_interval: self.rescan_interval,
            threads: self.collector_threads,
            filter: if self.cgroup_prefixes.is_empty() {
                NameFilter::all()
            } else {
                NameFilter::prefixes(self.cgroup_prefixes.iter().cloned())
            },
            fs_paths: vec![
                (fs_role::ROOT, "/".into()),
                (fs_role::IMAGE, self.image_fs_path.clone()),
                (fs_role::LOG, self.log_fs_path.clone()),
            ],
            ..MonitorConfig::default()
        }
    }
}

/// What the handlers share: the monitor and who names its cgroups.
#[derive(Clone)]
pub struct CadvisorState {
    /// The monitoring core.
    pub monitor: Arc<Monitor>,
    /// Container identity, from the agent (or [`NoNames`]).
    pub namer: Arc<dyn ContainerNamer>,
}

impl CadvisorState {
    /// State with no container identities.
    pub fn new(monitor: Arc<Monitor>) -> Self {
        CadvisorState {
            monitor,
            namer: Arc::new(NoNames),
        }
    }

    /// Attaches identities from `namer`.
    pub fn with_namer(mut self, namer: Arc<dyn ContainerNamer>) -> Self {
        self.namer = namer;
        self
    }
}

/// The cAdvisor-compatible routes.
pub fn router(state: CadvisorState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/v2.0/machine", get(machine))
        .route("/api/v2.0/spec", get(spec_root))
        .route("/api/v2.0/spec/", get(spec_root))
        .route("/api/v2.0/spec/{*name}", get(spec))
        .route("/api/v2.0/stats", get(stats_root))
        .route("/api/v2.0/stats/", get(stats_root))
        .route("/api/v2.0/stats/{*name}", get(stats))
        .with_state(state)
}

/// An error answered as cAdvisor does: its text, plus a newline, as text/plain.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
    fn not_found(message: String) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response()
    }
}

/// cAdvisor's `RequestOptions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestOptions {
    /// `name`, `docker` or `podman`.
    pub id_type: String,
    /// Samples per container (-1: all).
    pub count: i64,
    /// Include subcontainers.
    pub recursive: bool,
    /// Refresh stats older than this.
    pub max_age: Option<Duration>,
}

/// Parses the query string the way cAdvisor's `GetRequestOptions` does.
pub fn request_options(q: &BTreeMap<String, String>) -> Result<RequestOptions, ApiError> {
    let mut o = RequestOptions {
        id_type: "name".into(),
        count: 64,
        recursive: false,
        max_age: None,
    };
    if let Some(t) = q.get("type").filter(|t| !t.is_empty()) {
        if !["name", "docker", "podman"].contains(&t.as_str()) {
            return Err(ApiError::bad_request(format!("unknown 'type' {t:?}")));
        }
        o.id_type = t.clone();
    }
    if let Some(c) = q.get("count").filter(|c| !c.is_empty()) {
        let n: i64 = c
            .parse()
            .map_err(|_| ApiError::bad_request(format!("failed to parse 'count' option: {c}")))?;
        if n < -1 {
            return Err(ApiError::bad_request(format!(
                "invalid 'count' option: only -1 and larger values allowed, not {n}"
            )));
        }
        o.count = n;
    }
    o.recursive = q.get("recursive").is_some_and(|r| r == "true");
    if let Some(a) = q.get("max_age").filter(|a| !a.is_empty()) {
        o.max_age = Some(parse_go_duration(a).map_err(|e| {
            ApiError::bad_request(format!("failed to parse 'max_age' option: {e}"))
        })?);
    }
    Ok(o)
}

/// `path.Join("/", name)`: leading slash, no trailing slash, no empty segments.
fn container_name(raw: &str) -> String {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn requested(m: &Monitor, name: &str, o: &RequestOptions) -> Result<Vec<Arc<Container>>, ApiError> {
    match o.id_type.as_str() {
        "name" if o.recursive => {
            let v = m.subcontainers(name);
            if v.is_empty() {
                return Err(ApiError::not_found(format!("unknown container: {name:?}")));
            }
            Ok(v)
        }
        "name" => m
            .container(name)
            .map(|c| vec![c])
            .ok_or_else(|| ApiError::not_found(format!("unknown container {name:?}"))),
        // This monitor tracks raw cgroups only: no container lives in a runtime namespace.
        ns if o.recursive => {
            if name != "/" {
                return Err(ApiError::bad_request(format!(
                    "invalid request for {ns} container {name:?} with subcontainers"
                )));
            }
            Ok(Vec::new())
        }
        ns => Err(ApiError::not_found(format!(
            "unable to find container {:?} in {ns:?} namespace",
            name.trim_start_matches('/')
        ))),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn machine(State(st): State<CadvisorState>) -> Response {
    json(&api::MachineInfo::from(&st.monitor.machine_info()))
}

async fn spec_root(
    st: State<CadvisorState>,
    q: Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    spec(st, Path(String::new()), q).await
}

async fn spec(
    State(st): State<CadvisorState>,
    Path(raw): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let o = request_options(&q)?;
    let name = container_name(&raw);
    let capacity = st.monitor.machine_info().memory_capacity;
    let out = tokio::task::spawn_blocking(move || {
        let list = requested(&st.monitor, &name, &o)?;
        let mut specs = BTreeMap::new();
        for c in list {
            let has_network = c.latest().is_some_and(|s| s.network.is_some());
            specs.insert(
                c.name().to_string(),
                api::spec_from(
                    c.name(),
                    &c.spec(),
                    has_network,
                    capacity,
                    st.namer.identify(c.name()),
                ),
            );
        }
        Ok::<_, ApiError>(json(&specs))
    })
    .await
    .map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: e.to_string(),
    })??;
    Ok(out)
}

async fn stats_root(
    st: State<CadvisorState>,
    q: Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    stats(st, Path(String::new()), q).await
}

async fn stats(
    State(st): State<CadvisorState>,
    Path(raw): Path<String>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Response, ApiError> {
    let o = request_options(&q)?;
    let name = container_name(&raw);
    tokio::task::spawn_blocking(move || stats_blocking(&st, &name, &o))
        .await
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: e.to_string(),
        })?
}

fn stats_blocking(
    st: &CadvisorState,
    name: &str,
    o: &RequestOptions,
) -> Result<Response, ApiError> {
    let m = &st.monitor;
    let list = requested(m, name, o)?;
    if let Some(max_age) = o.max_age {
        let now = collectors::sys::now_unix_nanos();
        for c in &list {
            let fresh = c
                .latest()
                .is_some_and(|s| now.saturating_sub(s.timestamp) <= max_age.as_nanos() as u64);
            if !fresh {
                // Vanished while we looked: answered from history, like cAdvisor.
                let _ = m.sample_now(c.name());
            }
        }
    }
    let mi = m.machine_info();
    let disk_names: BTreeMap<String, String> = mi
        .disk_map
        .iter()
        .map(|(k, d)| (k.clone(), format!("/dev/{}", d.name)))
        .collect();
    let fs_names: BTreeMap<String, (String, String)> = mi
        .filesystems
        .iter()
        .map(|f| {
            (
                format!("{}:{}", f.major, f.minor),
                (f.device.clone(), f.fs_type.clone()),
            )
        })
        .collect();
    let mut node: Option<BTreeMap<Timestamp, NodeStats>> = None;
    let mut out = BTreeMap::new();
    for c in list {
        let samples = c.recent(o.count);
        let node_ref = if c.name() == "/" {
            let n = node.get_or_insert_with(|| {
                m.node_recent(-1)
                    .into_iter()
                    .map(|n| (n.timestamp, n))
                    .collect()
            });
            Some(&*n)
        } else {
            None
        };
        let spec = c.spec();
        let ctx = api::StatsContext {
            spec: &spec,
            disk_names: &disk_names,
            node: node_ref,
            fs_names: &fs_names,
        };
        out.insert(c.name().to_string(), api::deprecated_stats(&samples, &ctx));
    }
    Ok(json(&out))
}

/// Runs the monitoring core and the cAdvisor-compatible API until SIGINT or SIGTERM.
pub async fn run_standalone(args: CadvisorArgs) -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let config = args.monitor_config();
    let monitor = tokio::task::spawn_blocking(move || Monitor::new(config)).await??;
    let handle = monitor.start()?;
    tracing::info!(
        layout = monitor.layout().kind(),
        containers = monitor.container_names().len(),
        interval = ?args.housekeeping_interval,
        "monitoring started"
    );
    let addr = SocketAddr::new(args.cadvisor_bind_address, args.cadvisor_port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr} (--cadvisor-port/--cadvisor-bind-address): {e}")
    })?;
    tracing::info!(%addr, "serving the cAdvisor API");
    let app = router(CadvisorState::new(monitor));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tokio::task::spawn_blocking(move || handle.stop()).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[cfg(test)]
mod tests;
