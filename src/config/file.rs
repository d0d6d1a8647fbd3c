//! The `--config` file: a `kubelet.config.k8s.io/v1beta1` `KubeletConfiguration` in YAML or JSON,
//! with the kubelet's camelCase field names.
//!
//! Every v1beta1 field is accepted (so a file written for the Go kubelet loads), though the agent
//! acts only on those [`super::KubeletSettings`] carries; the rest stay readable in
//! [`KubeletConfiguration`]. Decoding is strict, as the kubelet's: a field this version does
//! not know, a value of the wrong type, a malformed duration, or a wrong `apiVersion`/`kind` is
//! an error naming the field (with its full path, like `authentication.webhook.cacheTTL`) and
//! the file. Relative paths (`staticPodPath`, `tlsCertFile`, `tlsPrivateKeyFile`,
//! `authentication.x509.clientCAFile`, `resolvConf`) are resolved against the file's directory,
//! as the kubelet does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Taint;
use serde::{Deserialize, Serialize};

use super::duration::GoDuration;
use super::ConfigError;

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "kubelet.config.k8s.io/v1beta1";
/// The only accepted `kind`.
pub const KIND: &str = "KubeletConfiguration";

/// A `KubeletConfiguration` as written in the file. `None` means "not set"; as in the kubelet, a
/// zero duration or zero number in a field the kubelet defaults on zero also means "not set".
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletConfiguration {
    pub api_version: Option<String>,
    pub kind: Option<String>,

    pub enable_server: Option<bool>,
    pub static_pod_path: Option<String>,
    pub pod_logs_dir: Option<String>,
    pub sync_frequency: Option<GoDuration>,
    pub file_check_frequency: Option<GoDuration>,
    #[serde(rename = "httpCheckFrequency")]
    pub http_check_frequency: Option<GoDuration>,
    #[serde(rename = "staticPodURL")]
    pub static_pod_url: Option<String>,
    #[serde(rename = "staticPodURLHeader")]
    pub static_pod_url_header: Option<BTreeMap<String, Vec<String>>>,
    pub address: Option<String>,
    pub port: Option<i32>,
    pub read_only_port: Option<i32>,
    pub tls_cert_file: Option<String>,
    pub tls_private_key_file: Option<String>,
    pub tls_cipher_suites: Option<Vec<String>>,
    pub tls_curve_preferences: Option<Vec<i32>>,
    pub tls_min_version: Option<String>,
    pub rotate_certificates: Option<bool>,
    #[serde(rename = "serverTLSBootstrap")]
    pub server_tls_bootstrap: Option<bool>,
    pub authentication: Option<KubeletAuthentication>,
    pub authorization: Option<KubeletAuthorization>,
    #[serde(rename = "registryPullQPS")]
    pub registry_pull_qps: Option<i32>,
    pub registry_burst: Option<i32>,
    pub image_pull_credentials_verification_policy: Option<String>,
    pub preloaded_images_verification_allowlist: Option<Vec<String>>,
    #[serde(rename = "eventRecordQPS")]
    pub event_record_qps: Option<i32>,
    pub event_burst: Option<i32>,
    pub enable_debugging_handlers: Option<bool>,
    pub enable_contention_profiling: Option<bool>,
    pub healthz_port: Option<i32>,
    pub healthz_bind_address: Option<String>,
    pub oom_score_adj: Option<i32>,
    pub cluster_domain: Option<String>,
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Option<Vec<String>>,
    pub streaming_connection_idle_timeout: Option<GoDuration>,
    pub node_status_update_frequency: Option<GoDuration>,
    pub node_status_report_frequency: Option<GoDuration>,
    pub node_lease_duration_seconds: Option<i32>,
    #[serde(rename = "imageMinimumGCAge")]
    pub image_minimum_gc_age: Option<GoDuration>,
    #[serde(rename = "imageMaximumGCAge")]
    pub image_maximum_gc_age: Option<GoDuration>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    pub image_gc_high_threshold_percent: Option<i32>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    pub image_gc_low_threshold_percent: Option<i32>,
    pub volume_stats_agg_period: Option<GoDuration>,
    pub kubelet_cgroups: Option<String>,
    pub system_cgroups: Option<String>,
    pub cgroup_root: Option<String>,
    #[serde(rename = "cgroupsPerQOS")]
    pub cgroups_per_qos: Option<bool>,
    pub cgroup_driver: Option<String>,
    #[serde(rename = "cpuManagerPolicy")]
    pub cpu_manager_policy: Option<String>,
    #[serde(rename = "singleProcessOOMKill")]
    pub single_process_oom_kill: Option<bool>,
    #[serde(rename = "cpuManagerPolicyOptions")]
    pub cpu_manager_policy_options: Option<BTreeMap<String, String>>,
    #[serde(rename = "cpuManagerReconcilePeriod")]
    pub cpu_manager_reconcile_period: Option<GoDuration>,
    #[serde(rename = "draManagerReconcilePeriod")]
    pub dra_manager_reconcile_period: Option<GoDuration>,
    pub memory_manager_policy: Option<String>,
    pub topology_manager_policy: Option<String>,
    pub topology_manager_scope: Option<String>,
    pub topology_manager_policy_options: Option<BTreeMap<String, String>>,
    #[serde(rename = "qosReserved")]
    pub qos_reserved: Option<BTreeMap<String, String>>,
    pub runtime_request_timeout: Option<GoDuration>,
    pub hairpin_mode: Option<String>,
    pub max_pods: Option<i32>,
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    pub pod_pids_limit: Option<i64>,
    #[serde(rename = "resolvConf")]
    pub resolv_conf: Option<String>,
    pub run_once: Option<bool>,
    #[serde(rename = "cpuCFSQuota")]
    pub cpu_cfs_quota: Option<bool>,
    #[serde(rename = "cpuCFSQuotaPeriod")]
    pub cpu_cfs_quota_period: Option<GoDuration>,
    pub node_status_max_images: Option<i32>,
    pub max_open_files: Option<i64>,
    pub content_type: Option<String>,
    #[serde(rename = "kubeAPIQPS")]
    pub kube_api_qps: Option<i32>,
    #[serde(rename = "kubeAPIBurst")]
    pub kube_api_burst: Option<i32>,
    pub serialize_image_pulls: Option<bool>,
    pub max_parallel_image_pulls: Option<i32>,
    pub eviction_hard: Option<BTreeMap<String, String>>,
    pub eviction_soft: Option<BTreeMap<String, String>>,
    pub eviction_soft_grace_period: Option<BTreeMap<String, String>>,
    pub eviction_pressure_transition_period: Option<GoDuration>,
    pub eviction_max_pod_grace_period: Option<i32>,
    pub eviction_minimum_reclaim: Option<BTreeMap<String, String>>,
    pub merge_default_eviction_settings: Option<bool>,
    pub pods_per_core: Option<i32>,
    pub enable_controller_attach_detach: Option<bool>,
    pub protect_kernel_defaults: Option<bool>,
    #[serde(rename = "makeIPTablesUtilChains")]
    pub make_iptables_util_chains: Option<bool>,
    pub iptables_masquerade_bit: Option<i32>,
    pub iptables_drop_bit: Option<i32>,
    pub feature_gates: Option<BTreeMap<String, bool>>,
    pub fail_swap_on: Option<bool>,
    pub memory_swap: Option<MemorySwapConfiguration>,
    pub container_log_max_size: Option<String>,
    pub container_log_max_files: Option<i32>,
    pub container_log_max_workers: Option<i32>,
    pub container_log_monitor_interval: Option<GoDuration>,
    pub config_map_and_secret_change_detection_strategy: Option<String>,
    pub system_reserved: Option<BTreeMap<String, String>>,
    pub kube_reserved: Option<BTreeMap<String, String>>,
    #[serde(rename = "reservedSystemCPUs")]
    pub reserved_system_cpus: Option<String>,
    pub show_hidden_metrics_for_version: Option<String>,
    pub system_reserved_cgroup: Option<String>,
    pub kube_reserved_cgroup: Option<String>,
    pub enforce_node_allocatable: Option<Vec<String>>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
    pub volume_plugin_dir: Option<String>,
    #[serde(rename = "providerID")]
    pub provider_id: Option<String>,
    pub kernel_memcg_notification: Option<bool>,
    pub logging: Option<LoggingConfiguration>,
    pub enable_system_log_handler: Option<bool>,
    pub enable_system_log_query: Option<bool>,
    pub shutdown_grace_period: Option<GoDuration>,
    pub shutdown_grace_period_critical_pods: Option<GoDuration>,
    pub shutdown_grace_period_by_pod_priority: Option<Vec<ShutdownGracePeriodByPodPriority>>,
    pub crash_loop_back_off: Option<CrashLoopBackOffConfig>,
    pub reserved_memory: Option<Vec<MemoryReservation>>,
    pub enable_profiling_handler: Option<bool>,
    pub enable_debug_flags_handler: Option<bool>,
    pub seccomp_default: Option<bool>,
    pub memory_throttling_factor: Option<f64>,
    pub memory_reservation_policy: Option<String>,
    pub register_with_taints: Option<Vec<Taint>>,
    pub register_node: Option<bool>,
    pub tracing: Option<TracingConfiguration>,
    pub local_storage_capacity_isolation: Option<bool>,
    pub container_runtime_endpoint: Option<String>,
    pub image_service_endpoint: Option<String>,
    pub fail_cgroup_v1: Option<bool>,
    pub user_namespaces: Option<UserNamespaces>,
    pub pod_housekeeping_period: Option<GoDuration>,
}

/// `authentication`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletAuthentication {
    pub x509: Option<KubeletX509Authentication>,
    pub webhook: Option<KubeletWebhookAuthentication>,
    pub anonymous: Option<KubeletAnonymousAuthentication>,
}

/// `authentication.x509`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletX509Authentication {
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: Option<String>,
}

/// `authentication.webhook`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletWebhookAuthentication {
    pub enabled: Option<bool>,
    #[serde(rename = "cacheTTL")]
    pub cache_ttl: Option<GoDuration>,
}

/// `authentication.anonymous`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletAnonymousAuthentication {
    pub enabled: Option<bool>,
}

/// `authorization`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletAuthorization {
    pub mode: Option<String>,
    pub webhook: Option<KubeletWebhookAuthorization>,
}

/// `authorization.webhook`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubeletWebhookAuthorization {
    #[serde(rename = "cacheAuthorizedTTL")]
    pub cache_authorized_ttl: Option<GoDuration>,
    #[serde(rename = "cacheUnauthorizedTTL")]
    pub cache_unauthorized_ttl: Option<GoDuration>,
}

/// `logging` (component-base `LoggingConfiguration`). Only `verbosity` is used (as `--v`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingConfiguration {
    pub format: Option<String>,
    /// A duration string or a number of nanoseconds.
    pub flush_frequency: Option<serde_json::Value>,
    pub verbosity: Option<u32>,
    pub vmodule: Option<Vec<VModuleItem>>,
    pub options: Option<serde_json::Value>,
}

/// One `logging.vmodule` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VModuleItem {
    pub file_pattern: String,
    pub verbosity: u32,
}

/// `memorySwap`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemorySwapConfiguration {
    pub swap_behavior: Option<String>,
}

/// `crashLoopBackOff`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrashLoopBackOffConfig {
    pub max_container_restart_period: Option<GoDuration>,
}

/// One `shutdownGracePeriodByPodPriority` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShutdownGracePeriodByPodPriority {
    pub priority: i32,
    pub shutdown_grace_period_seconds: i64,
}

/// One `reservedMemory` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemoryReservation {
    pub numa_node: i32,
    pub limits: BTreeMap<String, String>,
}

/// `tracing`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingConfiguration {
    pub endpoint: Option<String>,
    pub sampling_rate_per_million: Option<i32>,
}

/// `userNamespaces`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UserNamespaces {
    pub ids_per_pod: Option<i64>,
}

/// Reads and decodes a KubeletConfiguration file, then resolves its relative paths against the
/// file's directory.
pub fn read_config_file(path: &Path) -> Result<KubeletConfiguration, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut config = parse_config(&text, path)?;
    let base = path.parent().unwrap_or(Path::new("."));
    resolve_relative_paths(&mut config, base);
    Ok(config)
}

/// Decodes a KubeletConfiguration from text (YAML, or JSON when it starts with `{`). `path`
/// only names the file in errors.
pub fn parse_config(text: &str, path: &Path) -> Result<KubeletConfiguration, ConfigError> {
    let file = || path.to_path_buf();
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err(ConfigError::FileField {
            path: file(),
            field: "(file)".to_string(),
            detail: format!("the file is empty; expected a {KIND} ({API_VERSION})"),
        });
    }
    let value: serde_json::Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| ConfigError::FileSyntax {
            path: file(),
            format: "JSON",
            detail: e.to_string(),
        })?
    } else {
        serde_yaml::from_str(trimmed).map_err(|e| ConfigError::FileSyntax {
            path: file(),
            format: "YAML",
            detail: e.to_string(),
        })?
    };
    let Some(object) = value.as_object() else {
        return Err(ConfigError::FileField {
            path: file(),
            field: "(file)".to_string(),
            detail: format!("expected a {KIND} object"),
        });
    };
    for (field, expected) in [("apiVersion", API_VERSION), ("kind", KIND)] {
        let detail = match object.get(field) {
            Some(serde_json::Value::String(s)) if s == expected => continue,
            Some(serde_json::Value::String(s)) => {
                format!("unsupported value {s:?}: expected {expected:?}")
            }
            Some(other) => format!("expected the string {expected:?}, found {other}"),
            None => format!("required: must be {expected:?}"),
        };
        return Err(ConfigError::FileField {
            path: file(),
            field: field.to_string(),
            detail,
        });
    }
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let mut field = e.path().to_string();
        let mut detail = e.into_inner().to_string();
        // serde lists every known field after an unknown one; name the closest instead.
        if let Some(rest) = detail.strip_prefix("unknown field `") {
            if let Some((unknown, expected)) = rest.split_once("`, expected ") {
                // The path already ends with the unknown key.
                if field == "." {
                    field = unknown.to_string();
                }
                let known = expected.strip_prefix("one of ").unwrap_or(expected);
                let hint = closest(unknown, known)
                    .map(|k| format!(" (did you mean {k:?}?)"))
                    .unwrap_or_default();
                detail = format!("unknown field in {KIND} {API_VERSION}{hint}");
            }
        }
        ConfigError::FileField {
            path: file(),
            field,
            detail,
        }
    })
}

/// The known field name closest to `unknown` (by edit distance, case-insensitively), if close.
fn closest(unknown: &str, known_list: &str) -> Option<String> {
    let unknown = unknown.to_lowercase();
    known_list
        .split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim_matches('`'))
        .map(|k| (edit_distance(&unknown, &k.to_lowercase()), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn resolve(path: &mut Option<String>, base: &Path) {
    if let Some(p) = path.as_mut() {
        if !p.is_empty() && !Path::new(p.as_str()).is_absolute() {
            *p = base.join(p.as_str()).to_string_lossy().into_owned();
        }
    }
}

/// Makes the file's relative paths relative to `base` (the file's directory), as the kubelet
/// does for the same fields.
pub fn resolve_relative_paths(config: &mut KubeletConfiguration, base: &Path) {
    resolve(&mut config.static_pod_path, base);
    resolve(&mut config.tls_cert_file, base);
    resolve(&mut config.tls_private_key_file, base);
    resolve(&mut config.resolv_conf, base);
    if let Some(x509) = config.authentication.as_mut().and_then(|a| a.x509.as_mut()) {
        resolve(&mut x509.client_ca_file, base);
    }
}

impl KubeletConfiguration {
    /// The file's `staticPodPath` as a path, when set and non-empty.
    pub fn static_pod_path(&self) -> Option<PathBuf> {
        self.static_pod_path
            .as_deref()
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";

    fn parse(body: &str) -> Result<KubeletConfiguration, String> {
        parse_config(&format!("{HEAD}{body}"), Path::new("/etc/k.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_fields() {
        let c = parse(
            "staticPodPath: /m\nsyncFrequency: 30s\nreadOnlyPort: 10255\n\
             authentication:\n  webhook:\n    cacheTTL: 1m\n  x509:\n    clientCAFile: ca.crt\n\
             evictionHard:\n  memory.available: 200Mi\n\
             logging:\n  verbosity: 3\n  format: text\n\
             registerWithTaints:\n- key: a\n  effect: NoSchedule\n",
        )
        .unwrap();
        assert_eq!(c.static_pod_path(), Some(PathBuf::from("/m")));
        assert_eq!(c.sync_frequency.unwrap().0.as_secs(), 30);
        assert_eq!(c.read_only_port, Some(10255));
        assert_eq!(c.logging.unwrap().verbosity, Some(3));
        assert_eq!(c.register_with_taints.unwrap()[0].key, "a");
    }

    #[test]
    fn errors_name_the_field_and_file() {
        let err = parse("syncFrequency: 1x\n").unwrap_err();
        assert!(err.contains("/etc/k.yaml"), "{err}");
        assert!(err.contains("syncFrequency"), "{err}");
        assert!(err.contains("unknown unit \"x\""), "{err}");

        let err = parse("stattcPodPath: /m\n").unwrap_err();
        assert_eq!(
            err,
            "config file /etc/k.yaml: field stattcPodPath: unknown field in KubeletConfiguration \
             kubelet.config.k8s.io/v1beta1 (did you mean \"staticPodPath\"?)"
        );

        let err = parse("authentication:\n  webhook:\n    cacheTtl: 1m\n").unwrap_err();
        assert!(
            err.contains("field authentication.webhook.cacheTtl"),
            "{err}"
        );
        assert!(err.contains("did you mean \"cacheTTL\""), "{err}");

        let err = parse("port: \"10250\"\n").unwrap_err();
        assert!(
            err.contains("field port: invalid type: string \"10250\", expected i32"),
            "{err}"
        );

        let err = parse_config(
            "apiVersion: kubelet.config.k8s.io/v1\nkind: KubeletConfiguration\n",
            Path::new("/k"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("field apiVersion: unsupported value \"kubelet.config.k8s.io/v1\""),
            "{err}"
        );
        let err = parse_config("kind: KubeletConfiguration\n", Path::new("/k"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("field apiVersion: required"), "{err}");
        let err = parse_config(
            &HEAD.replace("KubeletConfiguration", "Pod"),
            Path::new("/k"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("field kind: unsupported value \"Pod\""),
            "{err}"
        );
        let err = parse_config("a: [", Path::new("/k"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("config file /k: not valid YAML"), "{err}");
    }

    #[test]
    fn json_is_accepted() {
        let c = parse_config(
            r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration","maxPods":20}"#,
            Path::new("/k.json"),
        )
        .unwrap();
        assert_eq!(c.max_pods, Some(20));
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let mut c = parse("staticPodPath: manifests\ntlsCertFile: /abs/c.crt\n").unwrap();
        resolve_relative_paths(&mut c, Path::new("/etc/kubelet"));
        assert_eq!(
            c.static_pod_path(),
            Some(PathBuf::from("/etc/kubelet/manifests"))
        );
        assert_eq!(c.tls_cert_file.as_deref(), Some("/abs/c.crt"));
    }
}
