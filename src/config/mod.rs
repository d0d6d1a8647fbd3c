//! The agent's configuration: command-line [`Flags`], the `--config` KubeletConfiguration file,
//! and their merge into one typed [`KubeletSettings`].
//!
//! The merge follows the kubelet: a value comes from the flag when the flag was given on the
//! command line, else from the config file when the file sets it, else from the default. The
//! defaults are the kubelet's v1beta1 defaults, except for this project's choices (see
//! `DESIGN.md`): the containerd socket and state directory under `kubelet-rs`, our pause image,
//! the cAdvisor port 4194, a 1 s housekeeping interval. As in the kubelet, a zero duration (or a
//! zero in a number field the kubelet defaults on zero) in the file means "not set"; a zero given
//! as a flag is taken as given.
//!
//! Then the result is checked across fields as the kubelet's `ValidateKubeletConfiguration`
//! does (image GC thresholds, ports, eviction grace periods, cgroup settings, feature gates, …).
//! Every [`ConfigError`] names the flag (`flag --image-gc-low-threshold`) or the file field
//! (`field imageGCLowThresholdPercent in /etc/kubelet.yaml`) it concerns. A setting kubelet-rs
//! cannot honor is refused, or, for the kubelet API's TLS and profiling tuning, reported in
//! [`KubeletSettings::warnings`]; [`support`] has the table of what every field and flag does.
//!
//! [`resolve`] reads one section at a time (`sections`). [`init_logging`] sets up `tracing`
//! from `--v`.

pub mod duration;
pub mod eviction;
pub mod features;
pub mod file;
pub mod flags;
pub mod sections;
pub mod support;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::duration::{format_go_duration, parse_go_duration, DurationError, GoDuration};
pub use self::eviction::{EvictionError, EvictionSignal, EvictionThresholds, ThresholdValue};
pub use self::features::{FeatureGates, KUBERNETES_VERSION};
pub use self::file::{read_config_file, KubeletConfiguration};
pub use self::flags::Flags;

use crate::resource::{parse_quantity, Quantity};

/// Default `--container-runtime-endpoint`: the project's own containerd.
pub const DEFAULT_CONTAINER_RUNTIME_ENDPOINT: &str =
    "unix:///run/kubelet-rs/containerd/containerd.sock";
/// Default `--root-dir`.
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/kubelet-rs";
/// Default `--pod-infra-container-image`: our own pause image in the local registry.
pub const DEFAULT_POD_INFRA_CONTAINER_IMAGE: &str = "127.0.0.1:5000/kubelet-rs/pause:3.10";
/// Default `podLogsDir`.
pub const DEFAULT_POD_LOGS_DIR: &str = "/var/log/pods";
/// Default kubelet API port.
pub const DEFAULT_PORT: u16 = 10250;
/// Default healthz port.
pub const DEFAULT_HEALTHZ_PORT: u16 = 10248;
/// Default cAdvisor-compatible API port.
pub const DEFAULT_CADVISOR_PORT: u16 = 4194;
/// Default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// Why the configuration was refused. Each variant names the flag or the file and field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The `--config` file is not well-formed YAML or JSON.
    #[error("config file {path}: not valid {format}: {detail}")]
    FileSyntax {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    /// A field of the `--config` file is unknown, of the wrong type, or malformed.
    #[error("config file {path}: field {field}: {detail}")]
    FileField {
        path: PathBuf,
        field: String,
        detail: String,
    },
    /// A setting's value is invalid. `setting` says where it came from: `flag --port`,
    /// `field port in /etc/kubelet.yaml`, or `default port`.
    #[error("{setting}: invalid value {value}: {reason}")]
    Invalid {
        setting: String,
        value: String,
        reason: String,
    },
    /// A setting is invalid; the reason names the offending value.
    #[error("{setting}: {reason}")]
    Setting { setting: String, reason: String },
    /// No usable node name.
    #[error("cannot determine the node name: {reason}")]
    NodeName { reason: String },
}

/// The kubelet API's authentication settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authentication {
    /// Allow anonymous requests (`system:anonymous`).
    pub anonymous: bool,
    /// Authenticate bearer tokens with the API server's TokenReview.
    pub webhook: bool,
    /// How long webhook answers are cached.
    pub webhook_cache_ttl: Duration,
    /// CA bundle for client certificates.
    pub client_ca_file: Option<PathBuf>,
}

/// How the kubelet API authorizes authenticated requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    /// Everything authenticated is allowed.
    AlwaysAllow,
    /// Ask the API server (SubjectAccessReview).
    Webhook,
}

/// The kubelet API's authorization settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub mode: AuthorizationMode,
    pub cache_authorized_ttl: Duration,
    pub cache_unauthorized_ttl: Duration,
}

/// The lowest TLS version the kubelet API accepts (`tlsMinVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMinVersion {
    Tls12,
    Tls13,
}

/// The cgroup driver. Only cgroupfs is supported; `systemd` is refused at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupDriver {
    Cgroupfs,
}

/// The resolved configuration: every setting typed, defaulted and validated.
#[derive(Debug, Clone)]
pub struct KubeletSettings {
    /// The `--config` file used, if any.
    pub config_file: Option<PathBuf>,
    /// The node's name: `--hostname-override` or the machine's hostname, lowercased.
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub node_labels: BTreeMap<String, String>,

    /// Static pod manifests (a directory or one file).
    pub pod_manifest_path: Option<PathBuf>,
    pub file_check_frequency: Duration,
    pub manifest_url: Option<String>,
    /// Headers for `manifest_url`, in order; a name may repeat.
    pub manifest_url_header: Vec<(String, String)>,
    pub http_check_frequency: Duration,
    pub sync_frequency: Duration,

    pub kubeconfig: Option<PathBuf>,
    /// `--bootstrap-kubeconfig`: TLS bootstrap when the kubeconfig does not exist.
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub register_node: bool,
    /// The node side of API-server mode: client and event rate limits, taints, images listed.
    pub api_node: sections::ApiNode,

    /// The CRI runtime endpoint (`unix:///…`).
    pub container_runtime_endpoint: String,
    /// The CRI image endpoint; the runtime endpoint unless set.
    pub image_service_endpoint: String,
    pub runtime_request_timeout: Duration,
    pub pod_infra_container_image: String,
    pub serialize_image_pulls: bool,
    /// Most parallel pulls when not serialized; `None` is no limit.
    pub max_parallel_image_pulls: Option<u32>,

    pub root_dir: PathBuf,
    pub cert_dir: PathBuf,
    pub pod_logs_dir: PathBuf,

    /// Serve the kubelet API on `address:port` (TLS, authenticated).
    pub enable_server: bool,
    pub address: IpAddr,
    pub port: u16,
    /// Read-only API port; 0 means off.
    pub read_only_port: u16,
    /// healthz port; 0 means off.
    pub healthz_port: u16,
    pub healthz_bind_address: IpAddr,
    /// cAdvisor-compatible API/UI and /metrics port; 0 means off.
    pub cadvisor_port: u16,
    /// Always 127.0.0.1: the cAdvisor port is local only.
    pub cadvisor_bind_address: IpAddr,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub tls_min_version: TlsMinVersion,
    /// `serverTLSBootstrap`: ask the API server for the serving certificate (a
    /// `kubernetes.io/kubelet-serving` CSR) instead of a self-signed one.
    pub server_tls_bootstrap: bool,
    /// `/exec`, `/attach`, `/portForward`, `/run`, `/containerLogs`, `/logs/`, `/runningpods/`
    /// (`enableDebuggingHandlers`).
    pub enable_debugging_handlers: bool,
    /// `/logs/` (`enableSystemLogHandler`, with the debugging handlers).
    pub enable_system_log_handler: bool,
    /// `--enable-pod-endpoint`: pods POSTed to the kubelet API run as static pods.
    pub enable_pod_endpoint: bool,
    /// Streaming connections (exec, attach, port-forward, log follow) idle longer than this
    /// are closed.
    pub streaming_connection_idle_timeout: Duration,
    pub authentication: Authentication,
    pub authorization: Authorization,

    /// `--max-pods`; the node's limit is [`KubeletSettings::effective_max_pods`].
    pub max_pods: u32,
    /// Most pods per core; 0 is no limit.
    pub pods_per_core: u32,
    /// Most PIDs per pod; -1 is no limit.
    pub pod_pids_limit: i64,

    pub eviction_hard: EvictionThresholds,
    pub eviction_soft: EvictionThresholds,
    pub eviction_soft_grace_period: BTreeMap<EvictionSignal, Duration>,
    pub eviction_pressure_transition_period: Duration,
    /// Seconds; 0 means the pod's own grace period.
    pub eviction_max_pod_grace_period: i64,
    pub eviction_minimum_reclaim: EvictionThresholds,
    /// `localStorageCapacityIsolation` (file only): emptyDir `sizeLimit`s are enforced by
    /// eviction.
    pub local_storage_capacity_isolation: bool,
    /// `kernelMemcgNotification`: eviction reacts to memcg threshold notifications (kubelet-rs
    /// defaults it to true; false leaves only the periodic check).
    pub kernel_memcg_notification: bool,

    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    pub image_minimum_gc_age: Duration,
    /// Zero means images are never collected for age alone.
    pub image_maximum_gc_age: Duration,

    pub housekeeping_interval: Duration,
    /// How often pods no source claims are cleaned up (the kubelet's 2 s).
    pub pod_housekeeping_period: Duration,
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration_seconds: u32,
    /// How long a measured volume usage is reused for `/stats/summary` and eviction.
    pub volume_stats_agg_period: Duration,

    pub verbosity: u8,

    pub cgroup_root: String,
    pub cgroups_per_qos: bool,
    pub cgroup_driver: CgroupDriver,
    /// `pods`, `system-reserved`, `kube-reserved` (and `-compressible` forms); empty is none.
    pub enforce_node_allocatable: Vec<String>,
    pub system_reserved: BTreeMap<String, Quantity>,
    pub kube_reserved: BTreeMap<String, Quantity>,
    pub system_reserved_cgroup: Option<String>,
    pub kube_reserved_cgroup: Option<String>,
    /// CPU limits become CFS quota on containers and pod cgroups.
    pub cpu_cfs_quota: bool,
    pub cpu_cfs_quota_period: Duration,
    /// Refuse to start when `/proc/swaps` lists a swap device.
    pub fail_swap_on: bool,
    /// The agent's own `oom_score_adj`, applied at start.
    pub oom_score_adj: i32,
    /// The agent's `RLIMIT_NOFILE`, applied at start.
    pub max_open_files: u64,
    /// Refuse to start when the kernel tunables differ from the kubelet's expectations.
    pub protect_kernel_defaults: bool,
    /// Refuse to start on a cgroup v1 (or hybrid) host.
    pub fail_cgroup_v1: bool,

    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// `None` when set to '' (DNS from the host disabled).
    pub resolv_conf: Option<PathBuf>,
    /// Passed to the runtime (CRI `UpdateRuntimeConfig`) at start.
    pub pod_cidr: Option<String>,
    /// Validated only: with a CRI runtime the CNI configuration decides, as for the kubelet.
    pub hairpin_mode: String,
    /// Containers without a seccomp profile get `RuntimeDefault` instead of `Unconfined`.
    pub seccomp_default: bool,
    /// The crash-loop backoff's first delay and its cap.
    pub crash_loop_backoff: (Duration, Duration),

    pub container_log_max_size: Quantity,
    pub container_log_max_files: u32,
    pub container_log_max_workers: u32,
    pub container_log_monitor_interval: Duration,

    pub shutdown_grace_period: Duration,
    pub shutdown_grace_period_critical_pods: Duration,
    /// `shutdownGracePeriodByPodPriority` as `(priority, seconds)`, in the order written.
    pub shutdown_grace_period_by_pod_priority: Vec<(i32, i64)>,
    pub feature_gates: FeatureGates,
    /// Settings accepted with a warning (see [`support`]), for the agent to log at start.
    pub warnings: Vec<String>,

    /// The file as written, for settings not carried above.
    pub file: Option<KubeletConfiguration>,
}

impl KubeletSettings {
    /// The most pods the node runs: `maxPods`, or `podsPerCore × cores` when that is set and
    /// smaller (the kubelet's rule).
    pub fn effective_max_pods(&self, cores: u32) -> u32 {
        if self.pods_per_core == 0 {
            return self.max_pods;
        }
        self.max_pods
            .min(self.pods_per_core.saturating_mul(cores.max(1)))
    }
}

/// Loads the configuration: reads `--config` if given, finds the node name, merges, validates.
pub fn load(flags: &Flags) -> Result<KubeletSettings, ConfigError> {
    let file = match &flags.config {
        Some(path) => Some((path.clone(), read_config_file(path)?)),
        None => None,
    };
    let hostname = match &flags.hostname_override {
        Some(_) => String::new(),
        None => machine_hostname()?,
    };
    resolve(
        flags,
        file.as_ref().map(|(p, c)| (p.as_path(), c)),
        &hostname,
    )
}

/// The machine's hostname, as Go's `os.Hostname` reads it on Linux.
fn machine_hostname() -> Result<String, ConfigError> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .map_err(|e| ConfigError::NodeName {
            reason: format!("cannot read the hostname ({e}); set --hostname-override"),
        })
}

/// Where a value came from, for error messages.
#[derive(Clone, Copy)]
enum Origin {
    Flag,
    File,
    Default,
}

/// A setting's names: its file field (`""` when it has none) and its flag (`""` likewise).
#[derive(Clone, Copy)]
struct Key {
    field: &'static str,
    flag: &'static str,
}

const fn key(field: &'static str, flag: &'static str) -> Key {
    Key { field, flag }
}

/// Where each setting is looked up: the command line, then the file.
struct Resolver<'a> {
    flags: &'a Flags,
    file: Option<(&'a Path, &'a KubeletConfiguration)>,
}

impl<'a> Resolver<'a> {
    /// A positive duration: flag, else the file's (zero there meaning unset), else `default`.
    fn period(
        &self,
        k: Key,
        flag: Option<Duration>,
        file: impl FnOnce(&KubeletConfiguration) -> Option<GoDuration>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let (d, s) = self.pick(k, flag, |c| nonzero(file(c)), || default);
        positive_period(&s, d)
    }

    /// A port, 0 allowed.
    fn port(
        &self,
        k: Key,
        flag: Option<u16>,
        file: impl FnOnce(&KubeletConfiguration) -> Option<i32>,
        default: u16,
    ) -> Result<u16, ConfigError> {
        let (p, s) = self.pick(
            k,
            flag.map(i64::from),
            |c| file(c).map(i64::from),
            || i64::from(default),
        );
        Ok(in_range(&s, p, 0, 65535)? as u16)
    }

    /// An IP address (the file's empty string meaning unset).
    fn ip(
        &self,
        k: Key,
        flag: Option<IpAddr>,
        file: impl FnOnce(&'a KubeletConfiguration) -> Option<&'a str>,
        default: IpAddr,
    ) -> Result<IpAddr, ConfigError> {
        let (ip, s) = self.pick(
            k,
            flag.map(Ok),
            |c| {
                file(c)
                    .filter(|a| !a.is_empty())
                    .map(|a| Err(a.to_string()))
            },
            || Ok(default),
        );
        ip.or_else(|a| parse_ip(&s, &a))
    }

    fn describe(&self, k: Key, origin: Origin) -> String {
        match (origin, self.file) {
            (Origin::Flag, _) => format!("flag --{}", k.flag),
            (Origin::File, Some((path, _))) => format!("field {} in {}", k.field, path.display()),
            _ if !k.field.is_empty() => format!("default {}", k.field),
            _ => format!("default --{}", k.flag),
        }
    }

    /// Flag, else file, else default.
    fn pick<T>(
        &self,
        k: Key,
        flag: Option<T>,
        file: impl FnOnce(&'a KubeletConfiguration) -> Option<T>,
        default: impl FnOnce() -> T,
    ) -> (T, String) {
        if let Some(v) = flag {
            return (v, self.describe(k, Origin::Flag));
        }
        if let Some(v) = self.file.and_then(|(_, c)| file(c)) {
            return (v, self.describe(k, Origin::File));
        }
        (default(), self.describe(k, Origin::Default))
    }

    /// A setting that exists only in the file.
    fn file_only<T>(
        &self,
        field: &'static str,
        file: impl FnOnce(&'a KubeletConfiguration) -> Option<T>,
        default: impl FnOnce() -> T,
    ) -> (T, String) {
        self.pick(key(field, ""), None, file, default)
    }

    fn cfg(&self) -> Option<&'a KubeletConfiguration> {
        self.file.map(|(_, c)| c)
    }
}

fn invalid(setting: &str, value: impl Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// A file duration, where zero means "not set".
fn nonzero(d: Option<GoDuration>) -> Option<Duration> {
    d.map(|d| d.0).filter(|d| !d.is_zero())
}

fn in_range(setting: &str, v: i64, lo: i64, hi: i64) -> Result<i64, ConfigError> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(invalid(
            setting,
            v,
            format!("must be between {lo} and {hi}, inclusive"),
        ))
    }
}

fn positive_period(setting: &str, d: Duration) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        Err(invalid(
            setting,
            format_go_duration(d),
            "must be greater than 0",
        ))
    } else {
        Ok(d)
    }
}

fn parse_ip(setting: &str, s: &str) -> Result<IpAddr, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| invalid(setting, format!("{s:?}"), "must be an IP address"))
}

fn one_of(setting: &str, v: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if allowed.contains(&v) {
        Ok(())
    } else {
        Err(invalid(
            setting,
            format!("{v:?}"),
            format!("supported values: {}", allowed.join(", ")),
        ))
    }
}

fn opt_path(s: &str) -> Option<PathBuf> {
    (!s.is_empty()).then(|| PathBuf::from(s))
}

/// Parses `k=v,k2=v2` (or `k:v` with `sep = ':'`) lists from repeated flags.
fn flag_pairs(
    flag: &str,
    values: &[String],
    sep: char,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut out = Vec::new();
    for v in values {
        for item in v.split(',').filter(|i| !i.trim().is_empty()) {
            let (k, val) = item.split_once(sep).ok_or_else(|| {
                invalid(
                    &format!("flag --{flag}"),
                    format!("{item:?}"),
                    format!("malformed pair, expected key{sep}value"),
                )
            })?;
            out.push((k.trim().to_string(), val.trim().to_string()));
        }
    }
    Ok(out)
}

/// Key/value pairs and a description of where they came from.
type SourcedPairs = (Vec<(String, String)>, String);

/// Threshold-like settings given by flag (`values`, pair syntax `sep`) or file map.
fn pairs_from<'a>(
    r: &Resolver<'a>,
    k: Key,
    flag_values: &[String],
    sep: char,
    file: impl FnOnce(&'a KubeletConfiguration) -> Option<&'a BTreeMap<String, String>>,
) -> Result<Option<SourcedPairs>, ConfigError> {
    if !flag_values.is_empty() {
        let setting = r.describe(k, Origin::Flag);
        let joined = flag_values.join(",");
        let pairs = eviction::split_pairs(&joined, sep)
            .map_err(|e| invalid(&setting, format!("{joined:?}"), e.to_string()))?;
        return Ok(Some((pairs, setting)));
    }
    if let Some(map) = r.cfg().and_then(file) {
        let pairs = map.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
        return Ok(Some((pairs, r.describe(k, Origin::File))));
    }
    Ok(None)
}

fn as_refs(pairs: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
    pairs.iter().map(|(a, b)| (a.as_str(), b.as_str()))
}

fn eviction_err(setting: &str, e: EvictionError) -> ConfigError {
    ConfigError::Setting {
        setting: setting.to_string(),
        reason: e.to_string(),
    }
}

fn quantity_map(
    setting: &str,
    map: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, Quantity>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, v) in map.into_iter().flatten() {
        let q = parse_quantity(v)
            .map_err(|e| invalid(&format!("{setting}[{name}]"), format!("{v:?}"), e.reason()))?;
        if q.is_negative() {
            return Err(invalid(
                &format!("{setting}[{name}]"),
                format!("{v:?}"),
                "must not be negative",
            ));
        }
        out.insert(name.clone(), q);
    }
    Ok(out)
}

/// Merges flags, an already-read config file and the machine's hostname into settings, and
/// validates them. [`load`] is this plus reading the file and the hostname; tests call it
/// directly. Each section of the KubeletConfiguration is resolved by its own function in
/// `sections`; [`support`] then refuses (or warns about) what kubelet-rs cannot honor.
pub fn resolve(
    flags: &Flags,
    file: Option<(&Path, &KubeletConfiguration)>,
    machine_hostname: &str,
) -> Result<KubeletSettings, ConfigError> {
    let r = Resolver { flags, file };
    let (feature_gates, mut warnings) = feature_gates(&r)?;
    let node = sections::node_identity(&r, machine_hostname)?;
    let sources = sections::pod_sources(&r)?;
    let runtime = sections::runtime(&r)?;
    let dirs = sections::directories(&r)?;
    let servers = sections::servers(&r)?;
    let (authentication, authorization) = sections::auth(&r)?;
    let capacity = sections::capacity(&r)?;
    let eviction = sections::eviction(&r)?;
    let image_gc = sections::image_gc(&r, &feature_gates)?;
    let periods = sections::periods(&r)?;
    let cgroups = sections::cgroups(&r)?;
    let cpu = sections::cpu_quota(&r, &feature_gates)?;
    let process = sections::process(&r)?;
    let network = sections::network(&r)?;
    let logs = sections::logs(&r)?;
    let shutdown = sections::shutdown(&r, &feature_gates)?;
    let containers = sections::containers(&r, &feature_gates)?;
    warnings.extend(support::check(&r)?);

    Ok(KubeletSettings {
        config_file: file.map(|(p, _)| p.to_path_buf()),
        node_name: node.node_name,
        node_ip: node.node_ip,
        node_labels: node.node_labels,
        pod_manifest_path: sources.pod_manifest_path,
        file_check_frequency: sources.file_check_frequency,
        manifest_url: sources.manifest_url,
        manifest_url_header: sources.manifest_url_header,
        http_check_frequency: sources.http_check_frequency,
        sync_frequency: sources.sync_frequency,
        kubeconfig: node.kubeconfig,
        bootstrap_kubeconfig: node.bootstrap_kubeconfig,
        register_node: node.register_node,
        api_node: node.api,
        container_runtime_endpoint: runtime.container_runtime_endpoint,
        image_service_endpoint: runtime.image_service_endpoint,
        runtime_request_timeout: runtime.runtime_request_timeout,
        pod_infra_container_image: runtime.pod_infra_container_image,
        serialize_image_pulls: runtime.serialize_image_pulls,
        max_parallel_image_pulls: runtime.max_parallel_image_pulls,
        root_dir: dirs.root_dir,
        cert_dir: dirs.cert_dir,
        pod_logs_dir: dirs.pod_logs_dir,
        enable_server: servers.enable_server,
        address: servers.address,
        port: servers.port,
        read_only_port: servers.read_only_port,
        healthz_port: servers.healthz_port,
        healthz_bind_address: servers.healthz_bind_address,
        cadvisor_port: servers.cadvisor_port,
        cadvisor_bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls_cert_file: servers.tls_cert_file,
        tls_private_key_file: servers.tls_private_key_file,
        tls_min_version: servers.tls_min_version,
        server_tls_bootstrap: servers.server_tls_bootstrap,
        enable_debugging_handlers: servers.enable_debugging_handlers,
        enable_system_log_handler: servers.enable_system_log_handler,
        enable_pod_endpoint: flags.enable_pod_endpoint.unwrap_or(false),
        streaming_connection_idle_timeout: servers.streaming_connection_idle_timeout,
        authentication,
        authorization,
        max_pods: capacity.max_pods,
        pods_per_core: capacity.pods_per_core,
        pod_pids_limit: capacity.pod_pids_limit,
        eviction_hard: eviction.hard,
        eviction_soft: eviction.soft,
        eviction_soft_grace_period: eviction.soft_grace_period,
        eviction_pressure_transition_period: eviction.pressure_transition_period,
        eviction_max_pod_grace_period: eviction.max_pod_grace_period,
        eviction_minimum_reclaim: eviction.minimum_reclaim,
        local_storage_capacity_isolation: eviction.local_storage_capacity_isolation,
        kernel_memcg_notification: containers.kernel_memcg_notification,
        image_gc_high_threshold_percent: image_gc.high_threshold_percent,
        image_gc_low_threshold_percent: image_gc.low_threshold_percent,
        image_minimum_gc_age: image_gc.minimum_age,
        image_maximum_gc_age: image_gc.maximum_age,
        housekeeping_interval: periods.housekeeping_interval,
        pod_housekeeping_period: periods.pod_housekeeping_period,
        node_status_update_frequency: periods.node_status_update_frequency,
        node_status_report_frequency: periods.node_status_report_frequency,
        node_lease_duration_seconds: periods.node_lease_duration_seconds,
        volume_stats_agg_period: periods.volume_stats_agg_period,
        verbosity: logs.verbosity,
        cgroup_root: cgroups.cgroup_root,
        cgroups_per_qos: cgroups.cgroups_per_qos,
        cgroup_driver: cgroups.cgroup_driver,
        enforce_node_allocatable: cgroups.enforce_node_allocatable,
        system_reserved: cgroups.system_reserved,
        kube_reserved: cgroups.kube_reserved,
        system_reserved_cgroup: cgroups.system_reserved_cgroup,
        kube_reserved_cgroup: cgroups.kube_reserved_cgroup,
        cpu_cfs_quota: cpu.enforce,
        cpu_cfs_quota_period: cpu.period,
        fail_swap_on: process.fail_swap_on,
        oom_score_adj: process.oom_score_adj,
        max_open_files: process.max_open_files,
        protect_kernel_defaults: process.protect_kernel_defaults,
        fail_cgroup_v1: process.fail_cgroup_v1,
        cluster_dns: network.cluster_dns,
        cluster_domain: network.cluster_domain,
        resolv_conf: network.resolv_conf,
        pod_cidr: network.pod_cidr,
        hairpin_mode: network.hairpin_mode,
        seccomp_default: containers.seccomp_default,
        crash_loop_backoff: containers.crash_loop_backoff,
        container_log_max_size: logs.container_log_max_size,
        container_log_max_files: logs.container_log_max_files,
        container_log_max_workers: logs.container_log_max_workers,
        container_log_monitor_interval: logs.container_log_monitor_interval,
        shutdown_grace_period: shutdown.grace_period,
        shutdown_grace_period_critical_pods: shutdown.grace_period_critical_pods,
        shutdown_grace_period_by_pod_priority: shutdown.by_pod_priority,
        feature_gates,
        warnings,
        file: r.cfg().cloned(),
    })
}

/// `--feature-gates` merged over the file's `featureGates` (the flag wins per gate, as in the
/// kubelet), checked against the release's gates.
fn feature_gates(r: &Resolver<'_>) -> Result<(FeatureGates, Vec<String>), ConfigError> {
    let from_flag =
        features::parse_flag(&r.flags.feature_gates).map_err(|e| ConfigError::Setting {
            setting: "flag --feature-gates".into(),
            reason: e.to_string(),
        })?;
    let from_file = r.cfg().and_then(|c| c.feature_gates.clone());
    let mut merged = from_file.clone().unwrap_or_default();
    merged.extend(from_flag.clone());
    FeatureGates::new(&merged).map_err(|e| {
        let name = match &e {
            features::GateError::Unknown(n) | features::GateError::Locked { name: n, .. } => n,
            _ => "",
        };
        let origin = if from_flag.contains_key(name) {
            Origin::Flag
        } else {
            Origin::File
        };
        ConfigError::Setting {
            setting: r.describe(key("featureGates", "feature-gates"), origin),
            reason: e.to_string(),
        }
    })
}

/// Accepts `unix:///path` or an absolute path (taken as a unix socket, as the kubelet does).
fn unix_endpoint(setting: &str, endpoint: &str) -> Result<String, ConfigError> {
    if let Some(path) = endpoint.strip_prefix("unix://") {
        if path.starts_with('/') {
            return Ok(endpoint.to_string());
        }
        return Err(invalid(
            setting,
            format!("{endpoint:?}"),
            "a unix endpoint needs an absolute socket path, e.g. unix:///run/containerd/containerd.sock",
        ));
    }
    if endpoint.starts_with('/') {
        return Ok(format!("unix://{endpoint}"));
    }
    Err(invalid(
        setting,
        format!("{endpoint:?}"),
        "only unix:// endpoints are supported on Linux",
    ))
}

/// Sets up `tracing` on stderr: `--v` 0–1 is `info`, 2–3 `debug`, 4 and up `trace` for this
/// project's crates (dependencies stay at `info`, or `debug` from `--v=6`). `RUST_LOG`, when
/// set, replaces all of it. Safe to call more than once (later calls do nothing).
pub fn init_logging(verbosity: u8) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(log_directives(verbosity)));
    use std::io::IsTerminal;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// The `EnvFilter` directives for a `--v` level.
pub fn log_directives(verbosity: u8) -> String {
    let ours = match verbosity {
        0..=1 => "info",
        2..=3 => "debug",
        _ => "trace",
    };
    let deps = if verbosity >= 6 { "debug" } else { "info" };
    let crates = ["kubelet_rs", "collectors", "managers", "proto", "pause"];
    let mut out = deps.to_string();
    for c in crates {
        out.push_str(&format!(",{c}={ours}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let s = resolve(&Flags::default(), None, "MyHost\n").unwrap();
        assert_eq!(s.node_name, "myhost");
        assert_eq!(
            s.container_runtime_endpoint,
            DEFAULT_CONTAINER_RUNTIME_ENDPOINT
        );
        assert_eq!(s.image_service_endpoint, DEFAULT_CONTAINER_RUNTIME_ENDPOINT);
        assert_eq!(s.root_dir, PathBuf::from("/var/lib/kubelet-rs"));
        assert_eq!(s.cert_dir, PathBuf::from("/var/lib/kubelet-rs/pki"));
        assert_eq!(
            s.pod_infra_container_image,
            DEFAULT_POD_INFRA_CONTAINER_IMAGE
        );
        assert_eq!(s.read_only_port, 0);
        assert_eq!(s.port, 10250);
        assert_eq!(s.healthz_port, 10248);
        assert_eq!(s.healthz_bind_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.cadvisor_port, 4194);
        assert_eq!(s.cadvisor_bind_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(s.address, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(s.housekeeping_interval, SECOND);
        assert_eq!(s.file_check_frequency, 20 * SECOND);
        assert_eq!(s.http_check_frequency, 20 * SECOND);
        assert_eq!(s.sync_frequency, MINUTE);
        assert_eq!(s.max_pods, 110);
        assert_eq!(s.eviction_hard, eviction::default_eviction_hard());
        assert_eq!(s.eviction_hard.len(), 4);
        assert!(s.eviction_soft.is_empty());
        assert_eq!(s.eviction_pressure_transition_period, 5 * MINUTE);
        assert!(s.local_storage_capacity_isolation);
        assert_eq!(s.image_gc_high_threshold_percent, 85);
        assert_eq!(s.image_gc_low_threshold_percent, 80);
        assert_eq!(s.image_minimum_gc_age, 2 * MINUTE);
        assert_eq!(s.node_status_update_frequency, 10 * SECOND);
        assert_eq!(s.node_status_report_frequency, 5 * MINUTE);
        assert_eq!(s.runtime_request_timeout, 2 * MINUTE);
        assert_eq!(s.pod_pids_limit, -1);
        assert!(s.register_node && s.cgroups_per_qos && s.serialize_image_pulls);
        assert_eq!(s.cgroup_root, "/");
        assert_eq!(s.enforce_node_allocatable, ["pods"]);
        assert_eq!(s.verbosity, 0);
        assert_eq!(s.authorization.mode, AuthorizationMode::Webhook);
        assert!(!s.authentication.anonymous);
        assert_eq!(s.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
        assert_eq!(s.container_log_max_size.value(), 10 << 20);
        assert!(s.pod_manifest_path.is_none());
    }

    #[test]
    fn bad_machine_hostname() {
        let err = resolve(&Flags::default(), None, "bad_host")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("the machine's hostname: invalid value \"bad_host\""),
            "{err}"
        );
        let err = resolve(&Flags::default(), None, "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty"), "{err}");
    }

    #[test]
    fn log_levels() {
        assert!(log_directives(0).contains("kubelet_rs=info"));
        assert!(log_directives(2).contains("kubelet_rs=debug"));
        assert!(log_directives(4).contains("kubelet_rs=trace"));
        assert!(log_directives(4).starts_with("info,"));
        assert!(log_directives(6).starts_with("debug,"));
    }
}
