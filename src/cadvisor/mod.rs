//! The cAdvisor-compatible API and UI over the `collectors` monitoring core (port 4194, and
//! the `kubelet-rs cadvisor` subcommand).
//!
//! [`router`] serves cAdvisor's REST API with its versions and request types, dispatched like
//! cAdvisor's `/api/<version>/<type>/<container>` handler: v1.0–v1.3 (`machine`,
//! `containers`, `subcontainers`, `docker`, `events`; options in a JSON body `num_stats`,
//! `start`, `end`), v2.0 (`version`, `attributes`, `machine`, `spec`, `stats`, `summary`, `ps`,
//! `storage`, `events`, `appmetrics`; query `type`, `recursive`, `count` default 64,
//! `max_age`) and v2.1 (`stats`, `machinestats`). It also serves `/metrics` (cAdvisor's
//! Prometheus families, [`prom`]), the UI at `/containers/` (`/` redirects there, [`ui`]) and
//! `/healthz`.
//!
//! Container identity (aliases, namespace, labels, image) comes from a
//! [`collectors::ContainerNamer`], which the agent's PLEG fills ([`names`]); the standalone
//! monitor knows only cgroup paths. Specs, events, derived stats and the collector's own cost
//! are kept by the monitor's [`tracker::Tracker`].
//!
//! Errors read like cAdvisor's texts, with HTTP statuses that say what went wrong: an unknown
//! container is 404 (`unknown container "/x"`), a bad parameter 400 naming it, an unknown API
//! version or request type 404. Nothing in a request can panic a handler.

pub mod api;
pub mod derived;
pub mod events;
pub mod expo;
pub mod names;
pub mod prom;
pub mod tracker;
pub mod ui;
pub mod v1;
pub mod v2;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use collectors::discovery::NameFilter;
use collectors::model::{fs_role, NodeStats, Timestamp};
use collectors::{Container, ContainerNamer, Monitor, MonitorConfig, NoNames};

use crate::config::parse_go_duration;
use events::{EventRequest, EventType};
use tracker::{Tracker, TrackerOptions};

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

/// What the handlers share: the monitor, who names its cgroups, and the monitor's tracker.
#[derive(Clone)]
pub struct CadvisorState {
    /// The monitoring core.
    pub monitor: Arc<Monitor>,
    /// Container identity, from the agent (or [`NoNames`]).
    pub namer: Arc<dyn ContainerNamer>,
    /// Specs, events, derived stats and own cost of the monitor.
    pub tracker: Arc<Tracker>,
    shared: Arc<Shared>,
}

struct Shared {
    exporter: OnceLock<prom::Exporter>,
    users: OnceLock<HashMap<u32, String>>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Shared {
    fn new() -> Arc<Shared> {
        Arc::new(Shared {
            exporter: OnceLock::new(),
            users: OnceLock::new(),
            shutdown: tokio::sync::watch::channel(false).0,
        })
    }
}

/// Where OOM reports are read from.
pub const KMSG_PATH: &str = "/dev/kmsg";

impl CadvisorState {
    /// State with no container identities; OOM events from `/dev/kmsg`.
    pub fn new(monitor: Arc<Monitor>) -> Self {
        Self::with_options(
            monitor,
            TrackerOptions {
                kmsg: Some(KMSG_PATH.into()),
            },
        )
    }

    /// State whose tracker (if this starts it) uses `opts`.
    pub fn with_options(monitor: Arc<Monitor>, opts: TrackerOptions) -> Self {
        CadvisorState {
            tracker: Tracker::for_monitor(&monitor, opts),
            monitor,
            namer: Arc::new(NoNames),
            shared: Shared::new(),
        }
    }

    /// Attaches identities from `namer`.
    pub fn with_namer(mut self, namer: Arc<dyn ContainerNamer>) -> Self {
        self.namer = namer;
        self.shared = Shared::new();
        self
    }

    /// Ends open event streams (call before a graceful shutdown).
    pub fn shutdown(&self) {
        let _ = self.shared.shutdown.send(true);
    }

    fn exporter(&self) -> &prom::Exporter {
        self.shared.exporter.get_or_init(|| {
            prom::Exporter::new(
                self.monitor.clone(),
                self.tracker.clone(),
                self.namer.clone(),
                None,
                prom::Flavour::Cadvisor,
                "/metrics",
            )
        })
    }

    fn users(&self) -> &HashMap<u32, String> {
        self.shared
            .users
            .get_or_init(|| v2::read_users(&self.monitor.config().rootfs))
    }
}

/// The cAdvisor-compatible routes: the API, `/metrics`, the UI and `/healthz`.
pub fn router(state: CadvisorState) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/containers/") }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .route("/api", get(api_root).post(api_root))
        .route("/api/", get(api_root).post(api_root))
        .route("/api/{*rest}", get(api).post(api))
        .with_state(state)
        .merge(ui::router())
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
    fn internal(message: String) -> Self {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
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
        Err(e) => ApiError::internal(format!("failed to marshall response with error: {e}"))
            .into_response(),
    }
}

async fn blocking<F>(f: F) -> Result<Response, ApiError>
where
    F: FnOnce() -> Result<Response, ApiError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
}

async fn metrics(State(st): State<CadvisorState>) -> Response {
    let out = tokio::task::spawn_blocking(move || st.exporter().render()).await;
    match out {
        Ok(body) => ([(header::CONTENT_TYPE, expo::CONTENT_TYPE)], body).into_response(),
        Err(e) => ApiError::internal(e.to_string()).into_response(),
    }
}

/// API versions and the request types each supports (cAdvisor's `SupportedRequestTypes`).
const VERSIONS: &[(&str, &[&str])] = &[
    ("v1.0", &["containers", "machine"]),
    ("v1.1", &["containers", "machine", "subcontainers"]),
    (
        "v1.2",
        &["containers", "machine", "subcontainers", "docker"],
    ),
    (
        "v1.3",
        &["containers", "machine", "subcontainers", "docker", "events"],
    ),
    (
        "v2.0",
        &[
            "version",
            "attributes",
            "events",
            "machine",
            "summary",
            "stats",
            "spec",
            "storage",
            "ps",
            "appmetrics",
        ],
    ),
    (
        "v2.1",
        &[
            "machinestats",
            "version",
            "attributes",
            "events",
            "machine",
            "summary",
            "stats",
            "spec",
            "storage",
            "ps",
            "appmetrics",
        ],
    ),
];

async fn api_root() -> Response {
    let versions: Vec<&str> = VERSIONS.iter().map(|(v, _)| *v).collect();
    (
        StatusCode::BAD_REQUEST,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("Supported API versions: {}\n", versions.join(",")),
    )
        .into_response()
}

/// `/api/<version>/<type>/<container...>`, dispatched as cAdvisor's `handleRequest`.
async fn api(
    State(st): State<CadvisorState>,
    Query(q): Query<BTreeMap<String, String>>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = req.uri().path().to_string();
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|e| ApiError::bad_request(format!("unable to read the request body: {e}")))?;
    let rest = path.trim_start_matches("/api/");
    let mut parts = rest.splitn(3, '/');
    let version = parts.next().unwrap_or("");
    let rtype = parts.next().unwrap_or("");
    let args = parts.next().unwrap_or("");
    let Some((_, types)) = VERSIONS.iter().find(|(v, _)| *v == version) else {
        return Err(ApiError::not_found(format!(
            "unsupported API version {version:?}"
        )));
    };
    if rtype.is_empty() {
        let mut t: Vec<&str> = types.to_vec();
        t.sort_unstable();
        return Err(ApiError::bad_request(format!(
            "Supported request types: {:?}",
            t.join(",")
        )));
    }
    if !types.contains(&rtype) {
        return Err(ApiError::not_found(format!(
            "unknown request type {rtype:?}"
        )));
    }
    let name = container_name(args);
    if version.starts_with("v1.") {
        return v1_request(st, rtype, name, args, &body, &q).await;
    }
    let o = request_options(&q)?;
    match (version, rtype) {
        ("v2.1", "machinestats") => blocking(move || machinestats(&st, &o)).await,
        ("v2.1", "stats") => blocking(move || stats_v21(&st, &name, &o)).await,
        (_, "version") => Ok(json(&prom::CADVISOR_VERSION)),
        (_, "attributes") => Ok(json(&v2::attributes(
            &st.monitor.machine_info(),
            st.monitor.version_info(),
        ))),
        (_, "machine") => Ok(json(&api::MachineInfo::from(&st.monitor.machine_info()))),
        (_, "summary") => blocking(move || summary(&st, &name, &o)).await,
        (_, "stats") => blocking(move || stats_blocking(&st, &name, &o)).await,
        (_, "spec") => blocking(move || spec_blocking(&st, &name, &o)).await,
        (_, "storage") => storage(&st, &q),
        (_, "ps") => blocking(move || ps(&st, &name, &o)).await,
        (_, "appmetrics") => {
            blocking(move || {
                let list = requested(&st.monitor, &name, &o)?;
                let m: BTreeMap<String, BTreeMap<String, ()>> = list
                    .iter()
                    .map(|c| (c.name().to_string(), BTreeMap::new()))
                    .collect();
                Ok(json(&m))
            })
            .await
        }
        (_, "events") => events(st, &name, &q),
        _ => Err(ApiError::not_found(format!(
            "unknown request type {rtype:?}"
        ))),
    }
}

async fn v1_request(
    st: CadvisorState,
    rtype: &str,
    name: String,
    args: &str,
    body: &Bytes,
    q: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    match rtype {
        "machine" => Ok(json(&api::MachineInfo::from(&st.monitor.machine_info()))),
        "events" => events(st, &name, q),
        "docker" => {
            // No container lives in a Docker namespace here.
            let arg = args.trim_matches('/');
            if arg.is_empty() {
                return Ok(json(&BTreeMap::<String, ()>::new()));
            }
            Err(ApiError::not_found(format!(
                "failed to get Docker container {arg:?} with error: unable to find Docker container {arg:?}"
            )))
        }
        "containers" | "subcontainers" => {
            let r = info_request(body)?;
            let sub = rtype == "subcontainers";
            blocking(move || {
                let c = st.monitor.container(&name).ok_or_else(|| {
                    let what = if sub {
                        "subcontainers for container"
                    } else {
                        "container"
                    };
                    ApiError::not_found(format!(
                        "failed to get {what} {name:?} with error: unknown container {name:?}"
                    ))
                })?;
                if !sub {
                    return Ok(json(&container_info(&st, &c, &r)));
                }
                let list: Vec<v1::ContainerInfo> = st
                    .monitor
                    .subcontainers(c.name())
                    .iter()
                    .map(|c| container_info(&st, c, &r))
                    .collect();
                Ok(json(&list))
            })
            .await
        }
        other => Err(ApiError::not_found(format!(
            "unknown request type {other:?}"
        ))),
    }
}

/// The v1 request options, with times in ns (0: unbounded).
struct InfoRequest {
    num_stats: i64,
    start: Timestamp,
    end: Timestamp,
}

fn parse_time(field: &str, v: &Option<String>) -> Result<Timestamp, ApiError> {
    let Some(s) = v.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(0);
    };
    let t: jiff::Timestamp = s.parse().map_err(|e| {
        ApiError::bad_request(format!(
            "unable to decode the json value: invalid {field:?} time {s:?}: {e}"
        ))
    })?;
    Ok(u64::try_from(t.as_nanosecond()).unwrap_or(0))
}

fn info_request(body: &Bytes) -> Result<InfoRequest, ApiError> {
    let r: v1::ContainerInfoRequest = if body.iter().all(|b| b.is_ascii_whitespace()) {
        v1::ContainerInfoRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("unable to decode the json value: {e}")))?
    };
    if r.num_stats < -1 {
        return Err(ApiError::bad_request(format!(
            "invalid \"num_stats\": only -1 and larger values allowed, not {}",
            r.num_stats
        )));
    }
    Ok(InfoRequest {
        num_stats: r.num_stats,
        start: parse_time("start", &r.start)?,
        end: parse_time("end", &r.end)?,
    })
}

/// Device names for converting samples: disks (`major:minor` → `/dev/x`) and filesystems
/// (`major:minor` → (device, type)).
struct DeviceNames {
    disks: BTreeMap<String, String>,
    fs: BTreeMap<String, (String, String)>,
}

impl DeviceNames {
    fn of(m: &Monitor) -> Self {
        let mi = m.machine_info();
        DeviceNames {
            disks: mi
                .disk_map
                .iter()
                .map(|(k, d)| (k.clone(), format!("/dev/{}", d.name)))
                .collect(),
            fs: mi
                .filesystems
                .iter()
                .map(|f| {
                    (
                        format!("{}:{}", f.major, f.minor),
                        (f.device.clone(), f.fs_type.clone()),
                    )
                })
                .collect(),
        }
    }
}

fn node_by_time(m: &Monitor, c: &Container) -> Option<BTreeMap<Timestamp, NodeStats>> {
    (c.name() == "/").then(|| {
        m.node_recent(-1)
            .into_iter()
            .map(|n| (n.timestamp, n))
            .collect()
    })
}

fn direct_children(m: &Monitor, name: &str) -> Vec<v1::ContainerReference> {
    let depth = |n: &str| if n == "/" { 0 } else { n.matches('/').count() };
    let d = depth(name);
    m.subcontainers(name)
        .iter()
        .filter(|c| c.name() != name && depth(c.name()) == d + 1)
        .map(|c| v1::ContainerReference {
            name: c.name().to_string(),
            ..Default::default()
        })
        .collect()
}

fn container_info(st: &CadvisorState, c: &Container, r: &InfoRequest) -> v1::ContainerInfo {
    let m = &st.monitor;
    let identity = st.namer.identify(c.name());
    let spec = st.tracker.spec(c);
    let end = if r.end == 0 { u64::MAX } else { r.end };
    let samples = c.range(r.start, end, r.num_stats);
    let names = DeviceNames::of(m);
    let node = node_by_time(m, c);
    let ctx = api::StatsContext {
        spec: &spec,
        disk_names: &names.disks,
        node: node.as_ref(),
        fs_names: &names.fs,
    };
    let has_network = samples.iter().any(|s| s.network.is_some());
    let mut stats = v1::stats(&samples, &ctx, st.tracker.oom_events(c.name()));
    fill_newest_percpu(c, &samples, stats.last_mut().map(|s| &mut s.cpu));
    v1::ContainerInfo {
        reference: v1::reference(c.name(), identity.as_ref()),
        subcontainers: direct_children(m, c.name()),
        spec: v1::spec(
            c.name(),
            &spec,
            has_network,
            m.machine_info().memory_capacity,
            identity.as_ref(),
        ),
        stats,
    }
}

fn spec_blocking(st: &CadvisorState, name: &str, o: &RequestOptions) -> Result<Response, ApiError> {
    let list = requested(&st.monitor, name, o)?;
    let capacity = st.monitor.machine_info().memory_capacity;
    let mut specs = BTreeMap::new();
    for c in list {
        let has_network = c.latest().is_some_and(|s| s.network.is_some());
        specs.insert(
            c.name().to_string(),
            api::spec_from(
                c.name(),
                &st.tracker.spec(&c),
                has_network,
                capacity,
                st.namer.identify(c.name()),
            ),
        );
    }
    Ok(json(&specs))
}

fn refresh(m: &Monitor, list: &[Arc<Container>], max_age: Option<Duration>) {
    if let Some(max_age) = max_age {
        let now = collectors::sys::now_unix_nanos();
        for c in list {
            let fresh = c
                .latest()
                .is_some_and(|s| now.saturating_sub(s.timestamp) <= max_age.as_nanos() as u64);
            if !fresh {
                // Vanished while we looked: answered from history, like cAdvisor.
                let _ = m.sample_now(c.name());
            }
        }
    }
}

/// Per-CPU usage of the newest sample, read now from `cpuacct.usage_percpu` (cgroup v1; the
/// rings do not keep it), when that sample is the container's latest.
fn fill_newest_percpu(
    c: &Container,
    samples: &[collectors::model::ContainerStats],
    cpu: Option<&mut api::CpuStats>,
) {
    let newest_is_latest = c.latest().map(|l| l.timestamp) == samples.last().map(|s| s.timestamp);
    if let (Some(cpu), true) = (cpu, newest_is_latest) {
        if let Some(dir) = c.paths().cpuacct.as_deref() {
            cpu.usage.per_cpu_usage = v1::read_percpu(dir).unwrap_or_default();
        }
    }
}

fn stats_blocking(
    st: &CadvisorState,
    name: &str,
    o: &RequestOptions,
) -> Result<Response, ApiError> {
    let m = &st.monitor;
    let list = requested(m, name, o)?;
    refresh(m, &list, o.max_age);
    let names = DeviceNames::of(m);
    let mut out = BTreeMap::new();
    for c in list {
        let samples = c.recent(o.count);
        let node = node_by_time(m, &c);
        let spec = st.tracker.spec(&c);
        let ctx = api::StatsContext {
            spec: &spec,
            disk_names: &names.disks,
            node: node.as_ref(),
            fs_names: &names.fs,
        };
        let mut stats = api::deprecated_stats(&samples, &ctx);
        fill_newest_percpu(&c, &samples, stats.last_mut().map(|s| &mut s.cpu));
        out.insert(c.name().to_string(), stats);
    }
    Ok(json(&out))
}

fn v1_of(
    st: &CadvisorState,
    c: &Container,
    count: i64,
    names: &DeviceNames,
) -> (v1::ContainerSpec, Vec<v1::ContainerStats>) {
    let m = &st.monitor;
    let samples = c.recent(count);
    let spec = st.tracker.spec(c);
    let node = node_by_time(m, c);
    let ctx = api::StatsContext {
        spec: &spec,
        disk_names: &names.disks,
        node: node.as_ref(),
        fs_names: &names.fs,
    };
    let has_network = samples.iter().any(|s| s.network.is_some());
    let identity = st.namer.identify(c.name());
    (
        v1::spec(
            c.name(),
            &spec,
            has_network,
            m.machine_info().memory_capacity,
            identity.as_ref(),
        ),
        v1::stats(&samples, &ctx, st.tracker.oom_events(c.name())),
    )
}

fn stats_v21(st: &CadvisorState, name: &str, o: &RequestOptions) -> Result<Response, ApiError> {
    let m = &st.monitor;
    let list = requested(m, name, o)?;
    refresh(m, &list, o.max_age);
    let names = DeviceNames::of(m);
    let capacity = m.machine_info().memory_capacity;
    let mut out = BTreeMap::new();
    for c in list.iter().filter(|c| c.name() != "/") {
        let (spec1, stats) = v1_of(st, c, o.count, &names);
        let has_network = spec1.has_network && c.name() != "/";
        let spec = api::spec_from(
            c.name(),
            &st.tracker.spec(c),
            has_network,
            capacity,
            st.namer.identify(c.name()),
        );
        out.insert(
            c.name().to_string(),
            v2::ContainerInfo {
                spec,
                stats: v2::stats_from_v1(&spec1, stats),
            },
        );
    }
    Ok(json(&out))
}

fn machinestats(st: &CadvisorState, o: &RequestOptions) -> Result<Response, ApiError> {
    let root = st
        .monitor
        .container("/")
        .ok_or_else(|| ApiError::not_found("unknown container \"/\"".into()))?;
    refresh(&st.monitor, std::slice::from_ref(&root), o.max_age);
    let (spec, stats) = v1_of(st, &root, o.count, &DeviceNames::of(&st.monitor));
    Ok(json(&v2::machine_stats_from_v1(&spec, stats)))
}

fn summary(st: &CadvisorState, name: &str, o: &RequestOptions) -> Result<Response, ApiError> {
    let list = requested(&st.monitor, name, o)?;
    let out: BTreeMap<String, derived::DerivedStats> = list
        .iter()
        .map(|c| (c.name().to_string(), st.tracker.derived(c)))
        .collect();
    Ok(json(&out))
}

fn storage(st: &CadvisorState, q: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let m = &st.monitor;
    let mi = m.machine_info();
    let node = m.node_latest().unwrap_or_default();
    let mut out: Vec<v2::StorageInfo> = Vec::new();
    for f in &node.filesystems {
        let info = mi
            .filesystems
            .iter()
            .find(|i| i.major == f.dev.major && i.minor == f.dev.minor);
        let device = info.map_or_else(|| f.dev.to_string(), |i| i.device.clone());
        let labels = v2::storage_labels(f.roles);
        if let Some(o) = out.iter_mut().find(|o| o.device == device) {
            for l in labels {
                if !o.labels.contains(&l) {
                    o.labels.push(l);
                }
            }
            continue;
        }
        out.push(v2::StorageInfo {
            timestamp: node.timestamp,
            device,
            mountpoint: info.map(|i| i.mountpoint.clone()).unwrap_or_default(),
            capacity: f.capacity,
            available: f.available,
            usage: f.usage,
            labels,
            inodes: (f.inodes > 0).then_some(f.inodes),
            inodes_free: (f.inodes > 0).then_some(f.inodes_free),
        });
    }
    if let Some(uuid) = q.get("uuid").filter(|u| !u.is_empty()) {
        return Err(ApiError::not_found(format!(
            "no filesystem with uuid {uuid:?}"
        )));
    }
    if let Some(label) = q.get("label").filter(|l| !l.is_empty()) {
        out.retain(|o| o.labels.contains(label));
        if out.is_empty() {
            return Err(ApiError::not_found(format!(
                "no filesystem with label {label:?}"
            )));
        }
    }
    Ok(json(&out))
}

fn ps(st: &CadvisorState, name: &str, o: &RequestOptions) -> Result<Response, ApiError> {
    let m = &st.monitor;
    let list = requested(m, name, o)?;
    let proc_root = m.config().proc_root.clone();
    let boot_s = std::fs::read_to_string(proc_root.join("stat"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("btime ")
                    .and_then(|v| v.trim().parse::<f64>().ok())
            })
        })
        .unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let x = v2::PsContext {
        proc_root: &proc_root,
        users: st.users(),
        now_s: collectors::sys::now_unix_nanos() as f64 / 1e9,
        boot_s,
        ticks,
        page,
        mem_total: m.machine_info().memory_capacity,
    };
    let mut out = Vec::new();
    for c in &list {
        let p = c.paths();
        let dirs: Vec<&std::path::Path> = [&p.unified, &p.cpu, &p.memory, &p.pids, &p.cpuacct]
            .into_iter()
            .flatten()
            .map(|d| d.as_path())
            .collect();
        out.extend(
            v2::cgroup_pids(&dirs)
                .into_iter()
                .filter_map(|pid| v2::process_info(pid, c.name(), &x)),
        );
    }
    Ok(json(&out))
}

fn parse_bool(q: &BTreeMap<String, String>, k: &str) -> Result<Option<bool>, ApiError> {
    match q.get(k).map(|s| s.as_str()) {
        None => Ok(None),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(Some(true)),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False" | "") => Ok(Some(false)),
        Some(v) => Err(ApiError::bad_request(format!(
            "invalid {k:?} option {v:?}: expected true or false"
        ))),
    }
}

/// cAdvisor's `getEventRequest`, strict: a malformed value is a 400 naming its parameter.
fn event_request(
    name: &str,
    q: &BTreeMap<String, String>,
) -> Result<(EventRequest, bool), ApiError> {
    let mut r = EventRequest::new(name);
    let stream = parse_bool(q, "stream")?.unwrap_or(false);
    r.include_subcontainers = parse_bool(q, "subcontainers")?.unwrap_or(false);
    let all = parse_bool(q, "all_events")?.unwrap_or(false);
    for t in EventType::ALL {
        let on = all || parse_bool(q, t.param())?.unwrap_or(false);
        r.set_type(t, on);
    }
    if let Some(v) = q.get("max_events") {
        r.max_events = v.parse().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid \"max_events\" option {v:?}: expected an integer"
            ))
        })?;
    }
    for (k, slot) in [("start_time", &mut r.start), ("end_time", &mut r.end)] {
        if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
            let t: jiff::Timestamp = v
                .parse()
                .map_err(|e| ApiError::bad_request(format!("invalid {k:?} option {v:?}: {e}")))?;
            *slot = u64::try_from(t.as_nanosecond()).unwrap_or(0);
        }
    }
    if stream && (r.start != 0 || r.end != 0) {
        return Err(ApiError::bad_request(
            "for a call to watch, request.StartTime and request.EndTime must be uninitialized"
                .into(),
        ));
    }
    Ok((r, stream))
}

fn events(
    st: CadvisorState,
    name: &str,
    q: &BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let (r, stream) = event_request(name, q)?;
    if !stream {
        return Ok(json(&st.tracker.events.query(&r)));
    }
    let rx = st.tracker.events.subscribe();
    let stop = st.shared.shutdown.subscribe();
    let body = futures_util::stream::unfold((rx, stop, r), |(mut rx, mut stop, r)| async move {
        loop {
            let next = tokio::select! {
                ev = rx.recv() => Some(ev),
                _ = stop.wait_for(|v| *v) => None,
            };
            match next? {
                Ok(e) if r.matches(&e) => {
                    let mut line = serde_json::to_vec(&e).unwrap_or_default();
                    line.push(b'\n');
                    return Some((
                        Ok::<_, std::convert::Infallible>(Bytes::from(line)),
                        (rx, stop, r),
                    ));
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
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
    let state = CadvisorState::new(monitor);
    let app = router(state.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            // Ends event streams, which would otherwise hold the shutdown.
            state.shutdown();
        })
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
