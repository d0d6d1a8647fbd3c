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
//! does (image GC thresholds, ports, eviction grace periods, cgroup settings, …). Every
//! [`ConfigError`] names the flag (`flag --image-gc-low-threshold`) or the file field
//! (`field imageGCLowThresholdPercent in /etc/kubelet.yaml`) it concerns.
//!
//! [`init_logging`] sets up `tracing` from `--v`.

pub mod duration;
pub mod eviction;
pub mod file;
pub mod flags;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::duration::{format_go_duration, parse_go_duration, DurationError, GoDuration};
pub use self::eviction::{EvictionError, EvictionSignal, EvictionThresholds, ThresholdValue};
pub use self::file::{read_config_file, KubeletConfiguration};
pub use self::flags::Flags;

use crate::resource::{parse_quantity, Quantity};
use crate::sources::validation::{is_dns1123_subdomain, is_qualified_name, is_valid_label_value};

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
    pub register_node: bool,

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
    pub authentication: Authentication,
    pub authorization: Authorization,

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

    pub image_gc_high_threshold_percent: u8,
    pub image_gc_low_threshold_percent: u8,
    pub image_minimum_gc_age: Duration,
    /// Zero means images are never collected for age alone.
    pub image_maximum_gc_age: Duration,

    pub housekeeping_interval: Duration,
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration_seconds: u32,
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
    pub cpu_cfs_quota: bool,
    pub cpu_cfs_quota_period: Duration,
    pub fail_swap_on: bool,
    pub oom_score_adj: i32,
    pub max_open_files: u64,

    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// `None` when set to '' (DNS from the host disabled).
    pub resolv_conf: Option<PathBuf>,
    pub pod_cidr: Option<String>,
    pub hairpin_mode: String,

    pub container_log_max_size: Quantity,
    pub container_log_max_files: u32,

    pub shutdown_grace_period: Duration,
    pub shutdown_grace_period_critical_pods: Duration,
    pub feature_gates: BTreeMap<String, bool>,

    /// The file as written, for settings not carried above.
    pub file: Option<KubeletConfiguration>,
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

struct Resolver<'a> {
    file: Option<(&'a Path, &'a KubeletConfiguration)>,
}

impl<'a> Resolver<'a> {
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
        file: impl FnOnce(&KubeletConfiguration) -> Option<T>,
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
        file: impl FnOnce(&KubeletConfiguration) -> Option<T>,
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
/// directly.
pub fn resolve(
    flags: &Flags,
    file: Option<(&Path, &KubeletConfiguration)>,
    machine_hostname: &str,
) -> Result<KubeletSettings, ConfigError> {
    let r = Resolver { file };
    let cfg = r.cfg();

    // --- Node identity -------------------------------------------------------------------
    let (node_name, node_setting) = match &flags.hostname_override {
        Some(h) => (
            h.trim().to_lowercase(),
            "flag --hostname-override".to_string(),
        ),
        None => (
            machine_hostname.trim().to_lowercase(),
            "the machine's hostname".to_string(),
        ),
    };
    if node_name.is_empty() {
        return Err(ConfigError::NodeName {
            reason: format!("{node_setting} is empty"),
        });
    }
    if let Some(reason) = is_dns1123_subdomain(&node_name).into_iter().next() {
        return Err(invalid(&node_setting, format!("{node_name:?}"), reason));
    }
    let mut node_labels = BTreeMap::new();
    for (k, v) in flag_pairs("node-labels", &flags.node_labels, '=')? {
        let reasons: Vec<String> = is_qualified_name(&k)
            .into_iter()
            .map(|m| format!("label key: {m}"))
            .chain(
                is_valid_label_value(&v)
                    .into_iter()
                    .map(|m| format!("label value: {m}")),
            )
            .collect();
        if let Some(reason) = reasons.into_iter().next() {
            return Err(invalid("flag --node-labels", format!("{k}={v}"), reason));
        }
        node_labels.insert(k, v);
    }

    // --- Pod sources ----------------------------------------------------------------------
    let (pod_manifest_path, _) = r.pick(
        key("staticPodPath", "pod-manifest-path"),
        flags
            .pod_manifest_path
            .clone()
            .map(|p| opt_path(&p.to_string_lossy())),
        |c| c.static_pod_path.as_deref().map(opt_path),
        || None,
    );
    let (file_check_frequency, s) = r.pick(
        key("fileCheckFrequency", "file-check-frequency"),
        flags.file_check_frequency,
        |c| nonzero(c.file_check_frequency),
        || 20 * SECOND,
    );
    let file_check_frequency = positive_period(&s, file_check_frequency)?;
    let (http_check_frequency, s) = r.pick(
        key("httpCheckFrequency", "http-check-frequency"),
        flags.http_check_frequency,
        |c| nonzero(c.http_check_frequency),
        || 20 * SECOND,
    );
    let http_check_frequency = positive_period(&s, http_check_frequency)?;
    let (sync_frequency, s) = r.pick(
        key("syncFrequency", "sync-frequency"),
        flags.sync_frequency,
        |c| nonzero(c.sync_frequency),
        || MINUTE,
    );
    let sync_frequency = positive_period(&s, sync_frequency)?;
    let (manifest_url, s) = r.pick(
        key("staticPodURL", "manifest-url"),
        flags.manifest_url.clone(),
        |c| c.static_pod_url.clone(),
        String::new,
    );
    let manifest_url = (!manifest_url.is_empty()).then_some(manifest_url);
    if let Some(url) = &manifest_url {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(
                &s,
                format!("{url:?}"),
                "must be an http:// or https:// URL",
            ));
        }
    }
    let manifest_url_header = if !flags.manifest_url_header.is_empty() {
        flag_pairs("manifest-url-header", &flags.manifest_url_header, ':')?
    } else {
        cfg.and_then(|c| c.static_pod_url_header.as_ref())
            .map(|m| {
                m.iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (name, _) in &manifest_url_header {
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b == b':') {
            let setting = if flags.manifest_url_header.is_empty() {
                r.describe(key("staticPodURLHeader", ""), Origin::File)
            } else {
                "flag --manifest-url-header".to_string()
            };
            return Err(invalid(
                &setting,
                format!("{name:?}"),
                "not a valid HTTP header name",
            ));
        }
    }

    // --- API server ------------------------------------------------------------------------
    let kubeconfig = flags.kubeconfig.clone();
    let (register_node, _) = r.pick(
        key("registerNode", "register-node"),
        flags.register_node,
        |c| c.register_node,
        || true,
    );

    // --- Runtime ---------------------------------------------------------------------------
    let (endpoint, s) = r.pick(
        key("containerRuntimeEndpoint", "container-runtime-endpoint"),
        flags.container_runtime_endpoint.clone(),
        |c| {
            c.container_runtime_endpoint
                .clone()
                .filter(|e| !e.is_empty())
        },
        || DEFAULT_CONTAINER_RUNTIME_ENDPOINT.to_string(),
    );
    let container_runtime_endpoint = unix_endpoint(&s, &endpoint)?;
    let (image_endpoint, s) = r.pick(
        key("imageServiceEndpoint", "image-service-endpoint"),
        flags.image_service_endpoint.clone(),
        |c| c.image_service_endpoint.clone().filter(|e| !e.is_empty()),
        || container_runtime_endpoint.clone(),
    );
    let image_service_endpoint = unix_endpoint(&s, &image_endpoint)?;
    let (runtime_request_timeout, s) = r.pick(
        key("runtimeRequestTimeout", "runtime-request-timeout"),
        flags.runtime_request_timeout,
        |c| nonzero(c.runtime_request_timeout),
        || 2 * MINUTE,
    );
    let runtime_request_timeout = positive_period(&s, runtime_request_timeout)?;
    let pod_infra_container_image = flags
        .pod_infra_container_image
        .clone()
        .unwrap_or_else(|| DEFAULT_POD_INFRA_CONTAINER_IMAGE.to_string());
    if pod_infra_container_image.trim().is_empty() {
        return Err(invalid(
            "flag --pod-infra-container-image",
            "\"\"",
            "must name an image",
        ));
    }
    let (max_parallel, s_parallel) = r.file_only(
        "maxParallelImagePulls",
        |c| c.max_parallel_image_pulls.map(Some),
        || None,
    );
    let max_parallel_image_pulls = match max_parallel {
        Some(n) if n < 1 => return Err(invalid(&s_parallel, n, "must be 1 or more")),
        Some(n) => Some(n as u32),
        None => None,
    };
    let (serialize_image_pulls, s) = r.pick(
        key("serializeImagePulls", "serialize-image-pulls"),
        flags.serialize_image_pulls,
        |c| c.serialize_image_pulls,
        || max_parallel_image_pulls.is_none_or(|n| n < 2),
    );
    if serialize_image_pulls && max_parallel_image_pulls.is_some_and(|n| n > 1) {
        return Err(invalid(
            &s_parallel,
            max_parallel_image_pulls.unwrap_or_default(),
            format!("must be 1 or unset when serializeImagePulls is true ({s})"),
        ));
    }

    // --- Directories ----------------------------------------------------------------------
    let root_dir = flags
        .root_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT_DIR));
    let cert_dir = flags
        .cert_dir
        .clone()
        .unwrap_or_else(|| root_dir.join("pki"));
    let (pod_logs_dir, s) = r.file_only(
        "podLogsDir",
        |c| c.pod_logs_dir.clone().filter(|p| !p.is_empty()),
        || DEFAULT_POD_LOGS_DIR.to_string(),
    );
    let pod_logs_dir = PathBuf::from(pod_logs_dir);
    if !pod_logs_dir.is_absolute() {
        return Err(invalid(
            &s,
            pod_logs_dir.display(),
            "must be an absolute path",
        ));
    }

    // --- Servers ----------------------------------------------------------------------------
    let (enable_server, _) = r.file_only("enableServer", |c| c.enable_server, || true);
    let (address, s) = r.pick(
        key("address", "address"),
        flags.address.map(Ok),
        |c| {
            c.address
                .as_deref()
                .filter(|a| !a.is_empty())
                .map(|a| Err(a.to_string()))
        },
        || Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    );
    let address = address.or_else(|a| parse_ip(&s, &a))?;
    let (port, s) = r.pick(
        key("port", "port"),
        flags.port.map(i64::from),
        |c| c.port.filter(|&p| p != 0).map(i64::from),
        || i64::from(DEFAULT_PORT),
    );
    let port = in_range(&s, port, if enable_server { 1 } else { 0 }, 65535)? as u16;
    let (read_only_port, s) = r.pick(
        key("readOnlyPort", "read-only-port"),
        flags.read_only_port.map(i64::from),
        |c| c.read_only_port.map(i64::from),
        || 0,
    );
    let read_only_port = in_range(&s, read_only_port, 0, 65535)? as u16;
    let (healthz_port, s) = r.pick(
        key("healthzPort", "healthz-port"),
        flags.healthz_port.map(i64::from),
        |c| c.healthz_port.map(i64::from),
        || i64::from(DEFAULT_HEALTHZ_PORT),
    );
    let healthz_port = in_range(&s, healthz_port, 0, 65535)? as u16;
    let (healthz_bind_address, s) = r.pick(
        key("healthzBindAddress", "healthz-bind-address"),
        flags.healthz_bind_address.map(Ok),
        |c| {
            c.healthz_bind_address
                .as_deref()
                .filter(|a| !a.is_empty())
                .map(|a| Err(a.to_string()))
        },
        || Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    let healthz_bind_address = healthz_bind_address.or_else(|a| parse_ip(&s, &a))?;
    let cadvisor_port = flags.cadvisor_port.unwrap_or(DEFAULT_CADVISOR_PORT);
    let (tls_cert_file, _) = r.pick(
        key("tlsCertFile", "tls-cert-file"),
        flags
            .tls_cert_file
            .clone()
            .map(|p| opt_path(&p.to_string_lossy())),
        |c| c.tls_cert_file.as_deref().map(opt_path),
        || None,
    );
    let (tls_private_key_file, s) = r.pick(
        key("tlsPrivateKeyFile", "tls-private-key-file"),
        flags
            .tls_private_key_file
            .clone()
            .map(|p| opt_path(&p.to_string_lossy())),
        |c| c.tls_private_key_file.as_deref().map(opt_path),
        || None,
    );
    if tls_cert_file.is_some() != tls_private_key_file.is_some() {
        return Err(invalid(
            &s,
            format!("{tls_private_key_file:?}"),
            "tlsCertFile (--tls-cert-file) and tlsPrivateKeyFile (--tls-private-key-file) \
             must be set together",
        ));
    }
    let authn = cfg.and_then(|c| c.authentication.as_ref());
    let (anonymous, _) = r.pick(
        key("authentication.anonymous.enabled", "anonymous-auth"),
        flags.anonymous_auth,
        |_| {
            authn
                .and_then(|a| a.anonymous.as_ref())
                .and_then(|a| a.enabled)
        },
        || false,
    );
    let webhook = authn.and_then(|a| a.webhook.as_ref());
    let (client_ca_file, _) = r.pick(
        key("authentication.x509.clientCAFile", "client-ca-file"),
        flags
            .client_ca_file
            .clone()
            .map(|p| opt_path(&p.to_string_lossy())),
        |_| {
            authn
                .and_then(|a| a.x509.as_ref())
                .and_then(|x| x.client_ca_file.as_deref())
                .map(opt_path)
        },
        || None,
    );
    let authentication = Authentication {
        anonymous,
        webhook: webhook.and_then(|w| w.enabled).unwrap_or(true),
        webhook_cache_ttl: nonzero(webhook.and_then(|w| w.cache_ttl)).unwrap_or(2 * MINUTE),
        client_ca_file,
    };
    let authz = cfg.and_then(|c| c.authorization.as_ref());
    let (mode, s) = r.pick(
        key("authorization.mode", "authorization-mode"),
        flags.authorization_mode.clone(),
        |_| authz.and_then(|a| a.mode.clone()).filter(|m| !m.is_empty()),
        || "Webhook".to_string(),
    );
    let mode = match mode.as_str() {
        "AlwaysAllow" => AuthorizationMode::AlwaysAllow,
        "Webhook" => AuthorizationMode::Webhook,
        other => {
            return Err(invalid(
                &s,
                format!("{other:?}"),
                "supported values: AlwaysAllow, Webhook",
            ))
        }
    };
    let authz_webhook = authz.and_then(|a| a.webhook.as_ref());
    let authorization = Authorization {
        mode,
        cache_authorized_ttl: nonzero(authz_webhook.and_then(|w| w.cache_authorized_ttl))
            .unwrap_or(5 * MINUTE),
        cache_unauthorized_ttl: nonzero(authz_webhook.and_then(|w| w.cache_unauthorized_ttl))
            .unwrap_or(30 * SECOND),
    };

    // --- Capacity -----------------------------------------------------------------------------
    let (max_pods, s) = r.pick(
        key("maxPods", "max-pods"),
        flags.max_pods.map(i64::from),
        |c| c.max_pods.filter(|&n| n != 0).map(i64::from),
        || i64::from(DEFAULT_MAX_PODS),
    );
    let max_pods = in_range(&s, max_pods, 0, i64::from(i32::MAX))? as u32;
    let (pods_per_core, s) = r.file_only("podsPerCore", |c| c.pods_per_core, || 0);
    let pods_per_core = in_range(&s, pods_per_core.into(), 0, i64::from(i32::MAX))? as u32;
    let (pod_pids_limit, _) = r.pick(
        key("podPidsLimit", "pod-max-pids"),
        flags.pod_max_pids,
        |c| c.pod_pids_limit,
        || -1,
    );
    let pod_pids_limit = if pod_pids_limit < 0 {
        -1
    } else {
        pod_pids_limit
    };

    // --- Eviction -----------------------------------------------------------------------------
    let k_hard = key("evictionHard", "eviction-hard");
    let eviction_hard = match pairs_from(&r, k_hard, &flags.eviction_hard, '<', |c| {
        c.eviction_hard.as_ref()
    })? {
        Some((pairs, s)) => {
            let mut t =
                eviction::parse_thresholds(as_refs(&pairs)).map_err(|e| eviction_err(&s, e))?;
            let merge = flags.eviction_hard.is_empty()
                && cfg.and_then(|c| c.merge_default_eviction_settings) == Some(true);
            if merge {
                let given: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
                for (sig, v) in eviction::default_eviction_hard() {
                    if !given.contains(&sig.as_str()) {
                        t.insert(sig, v);
                    }
                }
            }
            t
        }
        None => eviction::default_eviction_hard(),
    };
    let k_soft = key("evictionSoft", "eviction-soft");
    let (eviction_soft, soft_setting) =
        match pairs_from(&r, k_soft, &flags.eviction_soft, '<', |c| {
            c.eviction_soft.as_ref()
        })? {
            Some((pairs, s)) => (
                eviction::parse_thresholds(as_refs(&pairs)).map_err(|e| eviction_err(&s, e))?,
                s,
            ),
            None => (
                EvictionThresholds::new(),
                r.describe(k_soft, Origin::Default),
            ),
        };
    let k_grace = key("evictionSoftGracePeriod", "eviction-soft-grace-period");
    let eviction_soft_grace_period =
        match pairs_from(&r, k_grace, &flags.eviction_soft_grace_period, '=', |c| {
            c.eviction_soft_grace_period.as_ref()
        })? {
            Some((pairs, s)) => {
                eviction::parse_grace_periods(as_refs(&pairs)).map_err(|e| eviction_err(&s, e))?
            }
            None => BTreeMap::new(),
        };
    eviction::check_soft_grace_periods(&eviction_soft, &eviction_soft_grace_period)
        .map_err(|e| eviction_err(&soft_setting, e))?;
    let k_reclaim = key("evictionMinimumReclaim", "eviction-minimum-reclaim");
    let eviction_minimum_reclaim =
        match pairs_from(&r, k_reclaim, &flags.eviction_minimum_reclaim, '=', |c| {
            c.eviction_minimum_reclaim.as_ref()
        })? {
            Some((pairs, s)) => eviction::parse_minimum_reclaims(as_refs(&pairs))
                .map_err(|e| eviction_err(&s, e))?,
            None => EvictionThresholds::new(),
        };
    let (eviction_pressure_transition_period, _) = r.pick(
        key(
            "evictionPressureTransitionPeriod",
            "eviction-pressure-transition-period",
        ),
        flags.eviction_pressure_transition_period,
        |c| nonzero(c.eviction_pressure_transition_period),
        || 5 * MINUTE,
    );
    let (eviction_max_pod_grace_period, s) = r.pick(
        key("evictionMaxPodGracePeriod", "eviction-max-pod-grace-period"),
        flags.eviction_max_pod_grace_period,
        |c| c.eviction_max_pod_grace_period,
        || 0,
    );
    let eviction_max_pod_grace_period = in_range(
        &s,
        eviction_max_pod_grace_period.into(),
        0,
        i64::from(i32::MAX),
    )?;
    let (local_storage_capacity_isolation, _) = r.file_only(
        "localStorageCapacityIsolation",
        |c| c.local_storage_capacity_isolation,
        || true,
    );

    // --- Image GC -------------------------------------------------------------------------------
    let (high, s_high) = r.pick(
        key("imageGCHighThresholdPercent", "image-gc-high-threshold"),
        flags.image_gc_high_threshold,
        |c| c.image_gc_high_threshold_percent,
        || 85,
    );
    let (low, s_low) = r.pick(
        key("imageGCLowThresholdPercent", "image-gc-low-threshold"),
        flags.image_gc_low_threshold,
        |c| c.image_gc_low_threshold_percent,
        || 80,
    );
    let high = in_range(&s_high, high.into(), 0, 100)? as u8;
    let low = in_range(&s_low, low.into(), 0, 100)? as u8;
    if low >= high {
        return Err(invalid(
            &s_low,
            low,
            format!("must be less than imageGCHighThresholdPercent ({high}, {s_high})"),
        ));
    }
    let (image_minimum_gc_age, s_min) = r.pick(
        key("imageMinimumGCAge", "minimum-image-ttl-duration"),
        flags.minimum_image_ttl_duration,
        |c| nonzero(c.image_minimum_gc_age),
        || 2 * MINUTE,
    );
    let (image_maximum_gc_age, s) = r.file_only(
        "imageMaximumGCAge",
        |c| c.image_maximum_gc_age.map(|d| d.0),
        || Duration::ZERO,
    );
    if !image_maximum_gc_age.is_zero() && image_maximum_gc_age <= image_minimum_gc_age {
        return Err(invalid(
            &s,
            format_go_duration(image_maximum_gc_age),
            format!(
                "must be greater than imageMinimumGCAge ({}, {s_min})",
                format_go_duration(image_minimum_gc_age)
            ),
        ));
    }

    // --- Periods --------------------------------------------------------------------------------
    let housekeeping_interval = positive_period(
        "flag --housekeeping-interval",
        flags.housekeeping_interval.unwrap_or(SECOND),
    )?;
    let status_update_given = flags.node_status_update_frequency.is_some()
        || cfg
            .and_then(|c| nonzero(c.node_status_update_frequency))
            .is_some();
    let (node_status_update_frequency, s) = r.pick(
        key("nodeStatusUpdateFrequency", "node-status-update-frequency"),
        flags.node_status_update_frequency,
        |c| nonzero(c.node_status_update_frequency),
        || 10 * SECOND,
    );
    let node_status_update_frequency = positive_period(&s, node_status_update_frequency)?;
    let (node_status_report_frequency, _) = r.file_only(
        "nodeStatusReportFrequency",
        |c| nonzero(c.node_status_report_frequency),
        || {
            if status_update_given {
                node_status_update_frequency
            } else {
                5 * MINUTE
            }
        },
    );
    let (node_lease_duration_seconds, s) = r.file_only(
        "nodeLeaseDurationSeconds",
        |c| c.node_lease_duration_seconds.filter(|&n| n != 0),
        || 40,
    );
    let node_lease_duration_seconds = in_range(
        &s,
        node_lease_duration_seconds.into(),
        1,
        i64::from(i32::MAX),
    )? as u32;
    let (volume_stats_agg_period, _) = r.file_only(
        "volumeStatsAggPeriod",
        |c| nonzero(c.volume_stats_agg_period),
        || MINUTE,
    );

    // --- Logging --------------------------------------------------------------------------------
    let (verbosity, _) = r.pick(
        key("logging.verbosity", "v"),
        flags.verbosity,
        |c| {
            c.logging
                .as_ref()
                .and_then(|l| l.verbosity)
                .map(|v| v.min(u32::from(u8::MAX)) as u8)
        },
        || 0,
    );

    // --- Cgroups ----------------------------------------------------------------------------------
    let (cgroup_root, _) = r.pick(
        key("cgroupRoot", "cgroup-root"),
        flags.cgroup_root.clone(),
        |c| c.cgroup_root.clone(),
        || "/".to_string(),
    );
    let cgroup_root = if cgroup_root.is_empty() {
        "/".to_string()
    } else {
        cgroup_root
    };
    let (cgroups_per_qos, s_qos) = r.pick(
        key("cgroupsPerQOS", "cgroups-per-qos"),
        flags.cgroups_per_qos,
        |c| c.cgroups_per_qos,
        || true,
    );
    let (driver, s) = r.pick(
        key("cgroupDriver", "cgroup-driver"),
        flags.cgroup_driver.clone(),
        |c| c.cgroup_driver.clone().filter(|d| !d.is_empty()),
        || "cgroupfs".to_string(),
    );
    let cgroup_driver = match driver.as_str() {
        "cgroupfs" => CgroupDriver::Cgroupfs,
        "systemd" => {
            return Err(invalid(
                &s,
                "\"systemd\"",
                "the systemd cgroup driver is not supported by kubelet-rs; use cgroupfs (and \
                 configure the container runtime for cgroupfs too)",
            ))
        }
        other => {
            return Err(invalid(
                &s,
                format!("{other:?}"),
                "supported values: cgroupfs",
            ))
        }
    };
    let (system_reserved_cgroup, _) = r.file_only(
        "systemReservedCgroup",
        |c| Some(c.system_reserved_cgroup.clone().filter(|s| !s.is_empty())),
        || None,
    );
    let (kube_reserved_cgroup, _) = r.file_only(
        "kubeReservedCgroup",
        |c| Some(c.kube_reserved_cgroup.clone().filter(|s| !s.is_empty())),
        || None,
    );
    let enforce_given = flags.enforce_node_allocatable.as_deref().map(|s| {
        s.split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
    });
    let (enforce, s_enforce) = r.pick(
        key("enforceNodeAllocatable", "enforce-node-allocatable"),
        enforce_given,
        |c| c.enforce_node_allocatable.clone(),
        // Like the kubelet, enforce on pods by default; unlike it, do not make
        // --cgroups-per-qos=false also require --enforce-node-allocatable=''.
        || {
            if cgroups_per_qos {
                vec!["pods".to_string()]
            } else {
                Vec::new()
            }
        },
    );
    const LEVELS: &[&str] = &[
        "none",
        "pods",
        "system-reserved",
        "system-reserved-compressible",
        "kube-reserved",
        "kube-reserved-compressible",
    ];
    for level in &enforce {
        one_of(&s_enforce, level, LEVELS)?;
    }
    if enforce.iter().any(|l| l == "none") && enforce.len() > 1 {
        return Err(invalid(
            &s_enforce,
            enforce.join(","),
            "'none' cannot be combined with other levels",
        ));
    }
    let enforce_node_allocatable: Vec<String> =
        enforce.into_iter().filter(|l| l != "none").collect();
    if !cgroups_per_qos && !enforce_node_allocatable.is_empty() {
        return Err(invalid(
            &s_enforce,
            enforce_node_allocatable.join(","),
            format!("node allocatable enforcement needs cgroupsPerQOS ({s_qos} is false)"),
        ));
    }
    for level in &enforce_node_allocatable {
        if level.starts_with("system-reserved") && system_reserved_cgroup.is_none() {
            return Err(invalid(
                &s_enforce,
                level,
                "needs systemReservedCgroup to be set",
            ));
        }
        if level.starts_with("kube-reserved") && kube_reserved_cgroup.is_none() {
            return Err(invalid(
                &s_enforce,
                level,
                "needs kubeReservedCgroup to be set",
            ));
        }
    }
    let system_reserved = quantity_map(
        &r.describe(key("systemReserved", ""), Origin::File),
        cfg.and_then(|c| c.system_reserved.as_ref()),
    )?;
    let kube_reserved = quantity_map(
        &r.describe(key("kubeReserved", ""), Origin::File),
        cfg.and_then(|c| c.kube_reserved.as_ref()),
    )?;
    let (cpu_cfs_quota, _) = r.file_only("cpuCFSQuota", |c| c.cpu_cfs_quota, || true);
    let (cpu_cfs_quota_period, s) = r.file_only(
        "cpuCFSQuotaPeriod",
        |c| c.cpu_cfs_quota_period.map(|d| d.0),
        || Duration::from_millis(100),
    );
    if !(Duration::from_millis(1)..=SECOND).contains(&cpu_cfs_quota_period) {
        return Err(invalid(
            &s,
            format_go_duration(cpu_cfs_quota_period),
            "must be between 1ms and 1s, inclusive",
        ));
    }
    let (fail_swap_on, _) = r.file_only("failSwapOn", |c| c.fail_swap_on, || true);
    let (oom_score_adj, s) = r.file_only("oomScoreAdj", |c| c.oom_score_adj, || -999);
    let oom_score_adj = in_range(&s, oom_score_adj.into(), -1000, 1000)? as i32;
    let (max_open_files, s) = r.file_only(
        "maxOpenFiles",
        |c| c.max_open_files.filter(|&n| n != 0),
        || 1_000_000,
    );
    let max_open_files = in_range(&s, max_open_files, 0, i64::MAX)? as u64;

    // --- DNS and network ---------------------------------------------------------------------------
    let (dns, s) = r.pick(
        key("clusterDNS", "cluster-dns"),
        flags.cluster_dns.as_deref().map(|s| {
            s.split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect::<Vec<_>>()
        }),
        |c| c.cluster_dns.clone(),
        Vec::new,
    );
    let cluster_dns = dns
        .iter()
        .map(|ip| parse_ip(&s, ip))
        .collect::<Result<Vec<_>, _>>()?;
    let (cluster_domain, _) = r.pick(
        key("clusterDomain", "cluster-domain"),
        flags.cluster_domain.clone(),
        |c| c.cluster_domain.clone(),
        String::new,
    );
    let (resolv_conf, _) = r.pick(
        key("resolvConf", "resolv-conf"),
        flags.resolv_conf.clone(),
        |c| c.resolv_conf.clone(),
        || "/etc/resolv.conf".to_string(),
    );
    let resolv_conf = opt_path(&resolv_conf);
    let (pod_cidr, _) = r.file_only(
        "podCIDR",
        |c| Some(c.pod_cidr.clone().filter(|s| !s.is_empty())),
        || None,
    );
    let (hairpin_mode, s) = r.file_only(
        "hairpinMode",
        |c| c.hairpin_mode.clone().filter(|m| !m.is_empty()),
        || "promiscuous-bridge".to_string(),
    );
    one_of(
        &s,
        &hairpin_mode,
        &["promiscuous-bridge", "hairpin-veth", "none"],
    )?;

    // --- Logs -----------------------------------------------------------------------------------------
    let (max_size, s) = r.file_only(
        "containerLogMaxSize",
        |c| c.container_log_max_size.clone().filter(|v| !v.is_empty()),
        || "10Mi".to_string(),
    );
    let container_log_max_size =
        parse_quantity(&max_size).map_err(|e| invalid(&s, format!("{max_size:?}"), e.reason()))?;
    if container_log_max_size.value() <= 0 {
        return Err(invalid(
            &s,
            format!("{max_size:?}"),
            "must be greater than 0",
        ));
    }
    let (max_files, s) = r.file_only("containerLogMaxFiles", |c| c.container_log_max_files, || 5);
    let container_log_max_files = in_range(&s, max_files.into(), 2, i64::from(i32::MAX))? as u32;

    // --- Shutdown, gates ----------------------------------------------------------------------------
    let (shutdown_grace_period, s_total) = r.file_only(
        "shutdownGracePeriod",
        |c| c.shutdown_grace_period.map(|d| d.0),
        || Duration::ZERO,
    );
    let (shutdown_grace_period_critical_pods, s) = r.file_only(
        "shutdownGracePeriodCriticalPods",
        |c| c.shutdown_grace_period_critical_pods.map(|d| d.0),
        || Duration::ZERO,
    );
    if shutdown_grace_period_critical_pods > shutdown_grace_period {
        return Err(invalid(
            &s,
            format_go_duration(shutdown_grace_period_critical_pods),
            format!(
                "must not be greater than shutdownGracePeriod ({}, {s_total})",
                format_go_duration(shutdown_grace_period)
            ),
        ));
    }
    let feature_gates = cfg
        .and_then(|c| c.feature_gates.clone())
        .unwrap_or_default();

    if let Some(c) = cfg {
        validate_file_only_fields(&r, c)?;
    }

    Ok(KubeletSettings {
        config_file: file.map(|(p, _)| p.to_path_buf()),
        node_name,
        node_ip: flags.node_ip,
        node_labels,
        pod_manifest_path,
        file_check_frequency,
        manifest_url,
        manifest_url_header,
        http_check_frequency,
        sync_frequency,
        kubeconfig,
        register_node,
        container_runtime_endpoint,
        image_service_endpoint,
        runtime_request_timeout,
        pod_infra_container_image,
        serialize_image_pulls,
        max_parallel_image_pulls,
        root_dir,
        cert_dir,
        pod_logs_dir,
        enable_server,
        address,
        port,
        read_only_port,
        healthz_port,
        healthz_bind_address,
        cadvisor_port,
        cadvisor_bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
        tls_cert_file,
        tls_private_key_file,
        authentication,
        authorization,
        max_pods,
        pods_per_core,
        pod_pids_limit,
        eviction_hard,
        eviction_soft,
        eviction_soft_grace_period,
        eviction_pressure_transition_period,
        eviction_max_pod_grace_period,
        eviction_minimum_reclaim,
        local_storage_capacity_isolation,
        image_gc_high_threshold_percent: high,
        image_gc_low_threshold_percent: low,
        image_minimum_gc_age,
        image_maximum_gc_age,
        housekeeping_interval,
        node_status_update_frequency,
        node_status_report_frequency,
        node_lease_duration_seconds,
        volume_stats_agg_period,
        verbosity,
        cgroup_root,
        cgroups_per_qos,
        cgroup_driver,
        enforce_node_allocatable,
        system_reserved,
        kube_reserved,
        system_reserved_cgroup,
        kube_reserved_cgroup,
        cpu_cfs_quota,
        cpu_cfs_quota_period,
        fail_swap_on,
        oom_score_adj,
        max_open_files,
        cluster_dns,
        cluster_domain,
        resolv_conf,
        pod_cidr,
        hairpin_mode,
        container_log_max_size,
        container_log_max_files,
        shutdown_grace_period,
        shutdown_grace_period_critical_pods,
        feature_gates,
        file: cfg.cloned(),
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

/// Range and enumeration checks of file fields the agent does not act on yet, so that a file
/// the Go kubelet would refuse is refused here too.
fn validate_file_only_fields(
    r: &Resolver<'_>,
    c: &KubeletConfiguration,
) -> Result<(), ConfigError> {
    let s = |field: &'static str| r.describe(key(field, ""), Origin::File);
    for (field, v) in [
        ("registryPullQPS", c.registry_pull_qps),
        ("registryBurst", c.registry_burst),
        ("eventRecordQPS", c.event_record_qps),
        ("eventBurst", c.event_burst),
        ("kubeAPIQPS", c.kube_api_qps),
        ("kubeAPIBurst", c.kube_api_burst),
        (
            "containerLogMaxWorkers",
            c.container_log_max_workers.map(|n| n - 1),
        ),
    ] {
        if let Some(v) = v.filter(|&v| v < 0) {
            return Err(invalid(&s(field), v, "must not be a negative number"));
        }
    }
    if let Some(n) = c.node_status_max_images.filter(|&n| n < -1) {
        return Err(invalid(
            &s("nodeStatusMaxImages"),
            n,
            "must be -1 or greater",
        ));
    }
    if let Some(f) = c.memory_throttling_factor {
        if !(f > 0.0 && f <= 1.0) {
            return Err(invalid(
                &s("memoryThrottlingFactor"),
                f,
                "must be greater than 0 and less than or equal to 1.0",
            ));
        }
    }
    if let Some(d) = c.container_log_monitor_interval {
        if d.0 < Duration::from_secs(3) {
            return Err(invalid(
                &s("containerLogMonitorInterval"),
                d,
                "must be a positive time duration greater than or equal to 3s",
            ));
        }
    }
    let enums: [(&'static str, &Option<String>, &[&str]); 5] = [
        (
            "cpuManagerPolicy",
            &c.cpu_manager_policy,
            &["none", "static"],
        ),
        (
            "memoryManagerPolicy",
            &c.memory_manager_policy,
            &["None", "Static"],
        ),
        (
            "topologyManagerPolicy",
            &c.topology_manager_policy,
            &["none", "best-effort", "restricted", "single-numa-node"],
        ),
        (
            "topologyManagerScope",
            &c.topology_manager_scope,
            &["container", "pod"],
        ),
        (
            "configMapAndSecretChangeDetectionStrategy",
            &c.config_map_and_secret_change_detection_strategy,
            &["Get", "Cache", "Watch"],
        ),
    ];
    for (field, value, allowed) in enums {
        if let Some(v) = value.as_deref().filter(|v| !v.is_empty()) {
            one_of(&s(field), v, allowed)?;
        }
    }
    if let Some(fmt) = c.logging.as_ref().and_then(|l| l.format.as_deref()) {
        one_of(&s("logging.format"), fmt, &["text", "json"])?;
    }
    Ok(())
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
