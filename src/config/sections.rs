//! The resolution of each part of the configuration, one function per KubeletConfiguration
//! section: node identity and API server, pod sources, runtime, directories, servers and their
//! authentication, capacity, eviction, image GC, periods, cgroups and resources, process
//! settings, DNS and network, logging and container logs, shutdown, and the kubelet behaviours
//! set only in the file. Each takes the [`Resolver`] (flags and file) and returns its typed,
//! defaulted, checked values; [`super::resolve`] puts them together.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use super::eviction::{self, EvictionSignal, EvictionThresholds};
use super::features::FeatureGates;
use super::{
    flag_pairs, format_go_duration, in_range, invalid, key, nonzero, one_of, opt_path, pairs_from,
    parse_ip, positive_period, quantity_map, unix_endpoint, Authentication, Authorization,
    AuthorizationMode, CgroupDriver, ConfigError, Key, KubeletConfiguration, Origin, Resolver,
    TlsMinVersion, DEFAULT_CADVISOR_PORT, DEFAULT_CONTAINER_RUNTIME_ENDPOINT, DEFAULT_HEALTHZ_PORT,
    DEFAULT_MAX_PODS, DEFAULT_POD_INFRA_CONTAINER_IMAGE, DEFAULT_POD_LOGS_DIR, DEFAULT_PORT,
    DEFAULT_ROOT_DIR, MINUTE, SECOND,
};
use crate::resource::{parse_quantity, Quantity};
use crate::sources::validation::{is_dns1123_subdomain, is_qualified_name, is_valid_label_value};

/// Node name, IP and labels; the API server.
pub(super) struct NodeIdentity {
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub node_labels: BTreeMap<String, String>,
    pub kubeconfig: Option<PathBuf>,
    pub bootstrap_kubeconfig: Option<PathBuf>,
    pub register_node: bool,
    pub api: ApiNode,
}

/// What the node side of API-server mode takes: the client's rate limit, the taints to
/// register with, the events' rate limit and how many images the node status lists.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiNode {
    /// `kubeAPIQPS` (50); 0 is no limit.
    pub kube_api_qps: u32,
    /// `kubeAPIBurst` (100).
    pub kube_api_burst: u32,
    /// `eventRecordQPS` (50); 0 is no limit.
    pub event_record_qps: u32,
    /// `eventBurst` (100).
    pub event_burst: u32,
    /// `registerWithTaints` · `--register-with-taints`.
    pub register_with_taints: Vec<k8s_openapi::api::core::v1::Taint>,
    /// `nodeStatusMaxImages` (50); -1 is no limit.
    pub node_status_max_images: i32,
}

impl Default for ApiNode {
    fn default() -> Self {
        ApiNode {
            kube_api_qps: 50,
            kube_api_burst: 100,
            event_record_qps: 50,
            event_burst: 100,
            register_with_taints: Vec::new(),
            node_status_max_images: 50,
        }
    }
}

/// One `--register-with-taints` item: `key=value:Effect` or `key:Effect`.
fn parse_taint(item: &str) -> Result<k8s_openapi::api::core::v1::Taint, String> {
    let (kv, effect) = item
        .rsplit_once(':')
        .ok_or("malformed taint, expected key=value:Effect")?;
    let (k, v) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v)),
        None => (kv, None),
    };
    if let Some(m) = is_qualified_name(k).into_iter().next() {
        return Err(format!("taint key: {m}"));
    }
    if let Some(m) = v.and_then(|v| is_valid_label_value(v).into_iter().next()) {
        return Err(format!("taint value: {m}"));
    }
    if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        return Err(format!(
            "invalid taint effect {effect:?}, must be one of NoSchedule, PreferNoSchedule, NoExecute"
        ));
    }
    Ok(k8s_openapi::api::core::v1::Taint {
        key: k.to_string(),
        value: v.map(str::to_string),
        effect: effect.to_string(),
        time_added: None,
    })
}

fn api_node(r: &Resolver<'_>) -> Result<ApiNode, ConfigError> {
    let flags = r.flags;
    let d = ApiNode::default();
    let count =
        |k: Key, flag: Option<i32>, file: fn(&KubeletConfiguration) -> Option<i32>, def: u32| {
            let (v, s) = r.pick(k, flag, file, || def as i32);
            if v < 0 {
                return Err(invalid(&s, v, "must not be a negative number"));
            }
            Ok(v as u32)
        };
    let kube_api_qps = count(
        key("kubeAPIQPS", "kube-api-qps"),
        flags.kube_api_qps,
        |c| c.kube_api_qps,
        d.kube_api_qps,
    )?;
    let kube_api_burst = count(
        key("kubeAPIBurst", "kube-api-burst"),
        flags.kube_api_burst,
        |c| c.kube_api_burst,
        d.kube_api_burst,
    )?;
    let event_record_qps = count(
        key("eventRecordQPS", ""),
        None,
        |c| c.event_record_qps,
        d.event_record_qps,
    )?;
    let event_burst = count(
        key("eventBurst", ""),
        None,
        |c| c.event_burst,
        d.event_burst,
    )?;
    let (node_status_max_images, _) =
        r.file_only("nodeStatusMaxImages", |c| c.node_status_max_images, || 50);
    let register_with_taints =
        if flags.register_with_taints.is_empty() {
            r.cfg()
                .and_then(|c| c.register_with_taints.clone())
                .unwrap_or_default()
        } else {
            let mut out = Vec::new();
            for v in &flags.register_with_taints {
                for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                    out.push(parse_taint(item).map_err(|e| {
                        invalid("flag --register-with-taints", format!("{item:?}"), e)
                    })?);
                }
            }
            out
        };
    Ok(ApiNode {
        kube_api_qps,
        kube_api_burst,
        event_record_qps,
        event_burst,
        register_with_taints,
        node_status_max_images,
    })
}

pub(super) fn node_identity(
    r: &Resolver<'_>,
    machine_hostname: &str,
) -> Result<NodeIdentity, ConfigError> {
    let flags = r.flags;
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
        let reasons = is_qualified_name(&k)
            .into_iter()
            .map(|m| format!("label key: {m}"))
            .chain(
                is_valid_label_value(&v)
                    .into_iter()
                    .map(|m| format!("label value: {m}")),
            );
        if let Some(reason) = reasons.into_iter().next() {
            return Err(invalid("flag --node-labels", format!("{k}={v}"), reason));
        }
        node_labels.insert(k, v);
    }
    let (register_node, _) = r.pick(
        key("registerNode", "register-node"),
        flags.register_node,
        |c| c.register_node,
        || true,
    );
    Ok(NodeIdentity {
        node_name,
        node_ip: flags.node_ip,
        node_labels,
        kubeconfig: flags.kubeconfig.clone(),
        bootstrap_kubeconfig: flags.bootstrap_kubeconfig.clone(),
        register_node,
        api: api_node(r)?,
    })
}

/// Static pods from a path or a URL, and the sync period.
pub(super) struct PodSources {
    pub pod_manifest_path: Option<PathBuf>,
    pub file_check_frequency: Duration,
    pub manifest_url: Option<String>,
    pub manifest_url_header: Vec<(String, String)>,
    pub http_check_frequency: Duration,
    pub sync_frequency: Duration,
}

pub(super) fn pod_sources(r: &Resolver<'_>) -> Result<PodSources, ConfigError> {
    let flags = r.flags;
    let (pod_manifest_path, _) = r.pick(
        key("staticPodPath", "pod-manifest-path"),
        flags
            .pod_manifest_path
            .clone()
            .map(|p| opt_path(&p.to_string_lossy())),
        |c| c.static_pod_path.as_deref().map(opt_path),
        || None,
    );
    let file_check_frequency = r.period(
        key("fileCheckFrequency", "file-check-frequency"),
        flags.file_check_frequency,
        |c| c.file_check_frequency,
        20 * SECOND,
    )?;
    let http_check_frequency = r.period(
        key("httpCheckFrequency", "http-check-frequency"),
        flags.http_check_frequency,
        |c| c.http_check_frequency,
        20 * SECOND,
    )?;
    let sync_frequency = r.period(
        key("syncFrequency", "sync-frequency"),
        flags.sync_frequency,
        |c| c.sync_frequency,
        MINUTE,
    )?;
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
    Ok(PodSources {
        pod_manifest_path,
        file_check_frequency,
        manifest_url,
        manifest_url_header: manifest_url_header(r)?,
        http_check_frequency,
        sync_frequency,
    })
}

/// `--manifest-url-header` (which accumulates) or the file's `staticPodURLHeader`.
fn manifest_url_header(r: &Resolver<'_>) -> Result<Vec<(String, String)>, ConfigError> {
    let from_flag = !r.flags.manifest_url_header.is_empty();
    let headers: Vec<(String, String)> = if from_flag {
        flag_pairs("manifest-url-header", &r.flags.manifest_url_header, ':')?
    } else {
        r.cfg()
            .and_then(|c| c.static_pod_url_header.as_ref())
            .map(|m| {
                m.iter()
                    .flat_map(|(k, vs)| vs.iter().map(move |v| (k.clone(), v.clone())))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (name, _) in &headers {
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_whitespace() || b == b':') {
            let setting = if from_flag {
                "flag --manifest-url-header".to_string()
            } else {
                r.describe(key("staticPodURLHeader", ""), Origin::File)
            };
            return Err(invalid(
                &setting,
                format!("{name:?}"),
                "not a valid HTTP header name",
            ));
        }
    }
    Ok(headers)
}

/// The CRI endpoints and image pulls.
pub(super) struct Runtime {
    pub container_runtime_endpoint: String,
    pub image_service_endpoint: String,
    pub runtime_request_timeout: Duration,
    pub pod_infra_container_image: String,
    pub serialize_image_pulls: bool,
    pub max_parallel_image_pulls: Option<u32>,
}

pub(super) fn runtime(r: &Resolver<'_>) -> Result<Runtime, ConfigError> {
    let flags = r.flags;
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
    let runtime_request_timeout = r.period(
        key("runtimeRequestTimeout", "runtime-request-timeout"),
        flags.runtime_request_timeout,
        |c| c.runtime_request_timeout,
        2 * MINUTE,
    )?;
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
    Ok(Runtime {
        container_runtime_endpoint,
        image_service_endpoint,
        runtime_request_timeout,
        pod_infra_container_image,
        serialize_image_pulls,
        max_parallel_image_pulls,
    })
}

/// Where the agent keeps its state, certificates and pod logs.
pub(super) struct Directories {
    pub root_dir: PathBuf,
    pub cert_dir: PathBuf,
    pub pod_logs_dir: PathBuf,
}

pub(super) fn directories(r: &Resolver<'_>) -> Result<Directories, ConfigError> {
    let root_dir = r
        .flags
        .root_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT_DIR));
    let cert_dir = r
        .flags
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
    Ok(Directories {
        root_dir,
        cert_dir,
        pod_logs_dir,
    })
}

/// Listening addresses and ports, and the kubelet API's TLS files.
pub(super) struct Servers {
    pub enable_server: bool,
    pub address: IpAddr,
    pub port: u16,
    pub read_only_port: u16,
    pub healthz_port: u16,
    pub healthz_bind_address: IpAddr,
    pub cadvisor_port: u16,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_private_key_file: Option<PathBuf>,
    pub tls_min_version: TlsMinVersion,
    pub server_tls_bootstrap: bool,
    pub enable_debugging_handlers: bool,
    pub enable_system_log_handler: bool,
    pub streaming_connection_idle_timeout: Duration,
}

pub(super) fn servers(r: &Resolver<'_>) -> Result<Servers, ConfigError> {
    let flags = r.flags;
    let (enable_server, _) = r.file_only("enableServer", |c| c.enable_server, || true);
    let address = r.ip(
        key("address", "address"),
        flags.address,
        |c| c.address.as_deref(),
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    )?;
    let (port, s) = r.pick(
        key("port", "port"),
        flags.port.map(i64::from),
        |c| c.port.filter(|&p| p != 0).map(i64::from),
        || i64::from(DEFAULT_PORT),
    );
    let port = in_range(&s, port, if enable_server { 1 } else { 0 }, 65535)? as u16;
    let read_only_port = r.port(
        key("readOnlyPort", "read-only-port"),
        flags.read_only_port,
        |c| c.read_only_port,
        0,
    )?;
    let healthz_port = r.port(
        key("healthzPort", "healthz-port"),
        flags.healthz_port,
        |c| c.healthz_port,
        DEFAULT_HEALTHZ_PORT,
    )?;
    let healthz_bind_address = r.ip(
        key("healthzBindAddress", "healthz-bind-address"),
        flags.healthz_bind_address,
        |c| c.healthz_bind_address.as_deref(),
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    )?;
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
    let (tls_min_version, s) = r.file_only(
        "tlsMinVersion",
        |c| c.tls_min_version.clone().filter(|v| !v.is_empty()),
        || "VersionTLS12".to_string(),
    );
    let tls_min_version = match tls_min_version.as_str() {
        "VersionTLS12" => TlsMinVersion::Tls12,
        "VersionTLS13" => TlsMinVersion::Tls13,
        other => {
            return Err(invalid(
                &s,
                format!("{other:?}"),
                "kubelet-rs serves TLS 1.2 and 1.3 only: supported values VersionTLS12, \
                 VersionTLS13",
            ))
        }
    };
    let (server_tls_bootstrap, _) =
        r.file_only("serverTLSBootstrap", |c| c.server_tls_bootstrap, || false);
    let (enable_debugging_handlers, _) = r.file_only(
        "enableDebuggingHandlers",
        |c| c.enable_debugging_handlers,
        || true,
    );
    let (enable_system_log_handler, _) = r.file_only(
        "enableSystemLogHandler",
        |c| c.enable_system_log_handler,
        || true,
    );
    let streaming_connection_idle_timeout =
        nonzero(r.cfg().and_then(|c| c.streaming_connection_idle_timeout)).unwrap_or(240 * MINUTE);
    Ok(Servers {
        tls_min_version,
        server_tls_bootstrap,
        enable_debugging_handlers,
        enable_system_log_handler,
        streaming_connection_idle_timeout,
        enable_server,
        address,
        port,
        read_only_port,
        healthz_port,
        healthz_bind_address,
        cadvisor_port: flags.cadvisor_port.unwrap_or(DEFAULT_CADVISOR_PORT),
        tls_cert_file,
        tls_private_key_file,
    })
}

/// `authentication` and `authorization` of the kubelet API.
pub(super) fn auth(r: &Resolver<'_>) -> Result<(Authentication, Authorization), ConfigError> {
    let flags = r.flags;
    let authn = r.cfg().and_then(|c| c.authentication.as_ref());
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
    let (webhook_enabled, _) = r.pick(
        key(
            "authentication.webhook.enabled",
            "authentication-token-webhook",
        ),
        flags.authentication_token_webhook,
        |_| webhook.and_then(|w| w.enabled),
        || true,
    );
    let authentication = Authentication {
        anonymous,
        webhook: webhook_enabled,
        webhook_cache_ttl: nonzero(webhook.and_then(|w| w.cache_ttl)).unwrap_or(2 * MINUTE),
        client_ca_file,
    };
    let authz = r.cfg().and_then(|c| c.authorization.as_ref());
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
    Ok((authentication, authorization))
}

/// How many pods, and PIDs per pod.
pub(super) struct Capacity {
    pub max_pods: u32,
    pub pods_per_core: u32,
    pub pod_pids_limit: i64,
}

pub(super) fn capacity(r: &Resolver<'_>) -> Result<Capacity, ConfigError> {
    let flags = r.flags;
    let (max_pods, s) = r.pick(
        key("maxPods", "max-pods"),
        flags.max_pods.map(i64::from),
        |c| c.max_pods.filter(|&n| n != 0).map(i64::from),
        || i64::from(DEFAULT_MAX_PODS),
    );
    let max_pods = in_range(&s, max_pods, 0, i64::from(i32::MAX))? as u32;
    let (pods_per_core, s) = r.pick(
        key("podsPerCore", "pods-per-core"),
        flags.pods_per_core.map(i64::from),
        |c| c.pods_per_core.map(i64::from),
        || 0,
    );
    let pods_per_core = in_range(&s, pods_per_core, 0, i64::from(i32::MAX))? as u32;
    let (pod_pids_limit, _) = r.pick(
        key("podPidsLimit", "pod-max-pids"),
        flags.pod_max_pids,
        |c| c.pod_pids_limit,
        || -1,
    );
    Ok(Capacity {
        max_pods,
        pods_per_core,
        pod_pids_limit: pod_pids_limit.max(-1),
    })
}

/// Eviction thresholds and their timing.
pub(super) struct Eviction {
    pub hard: EvictionThresholds,
    pub soft: EvictionThresholds,
    pub soft_grace_period: BTreeMap<EvictionSignal, Duration>,
    pub pressure_transition_period: Duration,
    pub max_pod_grace_period: i64,
    pub minimum_reclaim: EvictionThresholds,
    pub local_storage_capacity_isolation: bool,
}

pub(super) fn eviction(r: &Resolver<'_>) -> Result<Eviction, ConfigError> {
    let flags = r.flags;
    let err = |s: &str, e| super::eviction_err(s, e);
    let k_hard = key("evictionHard", "eviction-hard");
    let hard = match pairs_from(r, k_hard, &flags.eviction_hard, '<', |c| {
        c.eviction_hard.as_ref()
    })? {
        Some((pairs, s)) => {
            let mut t =
                eviction::parse_thresholds(super::as_refs(&pairs)).map_err(|e| err(&s, e))?;
            let merge = flags.eviction_hard.is_empty()
                && r.cfg().and_then(|c| c.merge_default_eviction_settings) == Some(true);
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
    let (soft, soft_setting) = match pairs_from(r, k_soft, &flags.eviction_soft, '<', |c| {
        c.eviction_soft.as_ref()
    })? {
        Some((pairs, s)) => (
            eviction::parse_thresholds(super::as_refs(&pairs)).map_err(|e| err(&s, e))?,
            s,
        ),
        None => (
            EvictionThresholds::new(),
            r.describe(k_soft, Origin::Default),
        ),
    };
    let k_grace = key("evictionSoftGracePeriod", "eviction-soft-grace-period");
    let soft_grace_period =
        match pairs_from(r, k_grace, &flags.eviction_soft_grace_period, '=', |c| {
            c.eviction_soft_grace_period.as_ref()
        })? {
            Some((pairs, s)) => {
                eviction::parse_grace_periods(super::as_refs(&pairs)).map_err(|e| err(&s, e))?
            }
            None => BTreeMap::new(),
        };
    eviction::check_soft_grace_periods(&soft, &soft_grace_period)
        .map_err(|e| err(&soft_setting, e))?;
    let k_reclaim = key("evictionMinimumReclaim", "eviction-minimum-reclaim");
    let minimum_reclaim =
        match pairs_from(r, k_reclaim, &flags.eviction_minimum_reclaim, '=', |c| {
            c.eviction_minimum_reclaim.as_ref()
        })? {
            Some((pairs, s)) => {
                eviction::parse_minimum_reclaims(super::as_refs(&pairs)).map_err(|e| err(&s, e))?
            }
            None => EvictionThresholds::new(),
        };
    let (pressure_transition_period, _) = r.pick(
        key(
            "evictionPressureTransitionPeriod",
            "eviction-pressure-transition-period",
        ),
        flags.eviction_pressure_transition_period,
        |c| nonzero(c.eviction_pressure_transition_period),
        || 5 * MINUTE,
    );
    let (max_pod_grace_period, s) = r.pick(
        key("evictionMaxPodGracePeriod", "eviction-max-pod-grace-period"),
        flags.eviction_max_pod_grace_period,
        |c| c.eviction_max_pod_grace_period,
        || 0,
    );
    let max_pod_grace_period = in_range(&s, max_pod_grace_period.into(), 0, i64::from(i32::MAX))?;
    let (local_storage_capacity_isolation, _) = r.file_only(
        "localStorageCapacityIsolation",
        |c| c.local_storage_capacity_isolation,
        || true,
    );
    Ok(Eviction {
        hard,
        soft,
        soft_grace_period,
        pressure_transition_period,
        max_pod_grace_period,
        minimum_reclaim,
        local_storage_capacity_isolation,
    })
}

/// Image garbage collection.
pub(super) struct ImageGc {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub minimum_age: Duration,
    pub maximum_age: Duration,
}

pub(super) fn image_gc(r: &Resolver<'_>, gates: &FeatureGates) -> Result<ImageGc, ConfigError> {
    let flags = r.flags;
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
    let (minimum_age, s_min) = r.pick(
        key("imageMinimumGCAge", "minimum-image-ttl-duration"),
        flags.minimum_image_ttl_duration,
        |c| nonzero(c.image_minimum_gc_age),
        || 2 * MINUTE,
    );
    let (maximum_age, s) = r.file_only(
        "imageMaximumGCAge",
        |c| c.image_maximum_gc_age.map(|d| d.0),
        || Duration::ZERO,
    );
    if !maximum_age.is_zero() && !gates.enabled("ImageMaximumGCAge") {
        return Err(ConfigError::Setting {
            setting: s,
            reason: "ImageMaximumGCAge feature gate is required for Kubelet configuration \
                     option imageMaximumGCAge"
                .to_string(),
        });
    }
    if !maximum_age.is_zero() && maximum_age <= minimum_age {
        return Err(invalid(
            &s,
            format_go_duration(maximum_age),
            format!(
                "must be greater than imageMinimumGCAge ({}, {s_min})",
                format_go_duration(minimum_age)
            ),
        ));
    }
    Ok(ImageGc {
        high_threshold_percent: high,
        low_threshold_percent: low,
        minimum_age,
        maximum_age,
    })
}

/// How often the agent samples, housekeeps, reports and measures.
pub(super) struct Periods {
    pub housekeeping_interval: Duration,
    pub pod_housekeeping_period: Duration,
    pub node_status_update_frequency: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_duration_seconds: u32,
    pub volume_stats_agg_period: Duration,
}

pub(super) fn periods(r: &Resolver<'_>) -> Result<Periods, ConfigError> {
    let flags = r.flags;
    let housekeeping_interval = positive_period(
        "flag --housekeeping-interval",
        flags.housekeeping_interval.unwrap_or(SECOND),
    )?;
    let (pod_housekeeping_period, _) = r.file_only(
        "podHousekeepingPeriod",
        |c| nonzero(c.pod_housekeeping_period),
        || 2 * SECOND,
    );
    let status_update_given = flags.node_status_update_frequency.is_some()
        || r.cfg()
            .and_then(|c| nonzero(c.node_status_update_frequency))
            .is_some();
    let node_status_update_frequency = r.period(
        key("nodeStatusUpdateFrequency", "node-status-update-frequency"),
        flags.node_status_update_frequency,
        |c| c.node_status_update_frequency,
        10 * SECOND,
    )?;
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
    Ok(Periods {
        housekeeping_interval,
        pod_housekeeping_period,
        node_status_update_frequency,
        node_status_report_frequency,
        node_lease_duration_seconds,
        volume_stats_agg_period,
    })
}

/// The cgroup tree and node allocatable.
pub(super) struct Cgroups {
    pub cgroup_root: String,
    pub cgroups_per_qos: bool,
    pub cgroup_driver: CgroupDriver,
    pub enforce_node_allocatable: Vec<String>,
    pub system_reserved: BTreeMap<String, Quantity>,
    pub kube_reserved: BTreeMap<String, Quantity>,
    pub system_reserved_cgroup: Option<String>,
    pub kube_reserved_cgroup: Option<String>,
}

/// The enforcement levels `enforceNodeAllocatable` may name.
const ENFORCEMENT_LEVELS: &[&str] = &[
    "none",
    "pods",
    "system-reserved",
    "system-reserved-compressible",
    "kube-reserved",
    "kube-reserved-compressible",
];

pub(super) fn cgroups(r: &Resolver<'_>) -> Result<Cgroups, ConfigError> {
    let flags = r.flags;
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
    let enforce_given = (!flags.enforce_node_allocatable.is_empty()).then(|| {
        flags
            .enforce_node_allocatable
            .iter()
            .flat_map(|s| s.split(','))
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
    for level in &enforce {
        one_of(&s_enforce, level, ENFORCEMENT_LEVELS)?;
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
    if !cgroups_per_qos {
        return Err(invalid(
            &s_qos,
            false,
            "not supported by kubelet-rs: pods always get the kubelet's QoS cgroups \
             (kubepods/burstable, kubepods/besteffort)",
        ));
    }
    Ok(Cgroups {
        cgroup_root,
        cgroups_per_qos,
        cgroup_driver: cgroup_driver(r)?,
        enforce_node_allocatable,
        system_reserved: quantity_map(
            &r.describe(key("systemReserved", ""), Origin::File),
            r.cfg().and_then(|c| c.system_reserved.as_ref()),
        )?,
        kube_reserved: quantity_map(
            &r.describe(key("kubeReserved", ""), Origin::File),
            r.cfg().and_then(|c| c.kube_reserved.as_ref()),
        )?,
        system_reserved_cgroup,
        kube_reserved_cgroup,
    })
}

fn cgroup_driver(r: &Resolver<'_>) -> Result<CgroupDriver, ConfigError> {
    let (driver, s) = r.pick(
        key("cgroupDriver", "cgroup-driver"),
        r.flags.cgroup_driver.clone(),
        |c| c.cgroup_driver.clone().filter(|d| !d.is_empty()),
        || "cgroupfs".to_string(),
    );
    match driver.as_str() {
        "cgroupfs" => Ok(CgroupDriver::Cgroupfs),
        "systemd" => Err(invalid(
            &s,
            "\"systemd\"",
            "the systemd cgroup driver is not supported by kubelet-rs; use cgroupfs (and \
             configure the container runtime for cgroupfs too)",
        )),
        other => Err(invalid(
            &s,
            format!("{other:?}"),
            "supported values: cgroupfs",
        )),
    }
}

/// CPU limits as CFS quota.
pub(super) struct CpuQuota {
    pub enforce: bool,
    pub period: Duration,
}

/// The kubelet's CFS period when `CustomCPUCFSQuotaPeriod` is off.
pub const DEFAULT_CPU_CFS_QUOTA_PERIOD: Duration = Duration::from_millis(100);

pub(super) fn cpu_quota(r: &Resolver<'_>, gates: &FeatureGates) -> Result<CpuQuota, ConfigError> {
    let (enforce, _) = r.pick(
        key("cpuCFSQuota", "cpu-cfs-quota"),
        r.flags.cpu_cfs_quota,
        |c| c.cpu_cfs_quota,
        || true,
    );
    let (period, s) = r.pick(
        key("cpuCFSQuotaPeriod", "cpu-cfs-quota-period"),
        r.flags.cpu_cfs_quota_period,
        |c| c.cpu_cfs_quota_period.map(|d| d.0),
        || DEFAULT_CPU_CFS_QUOTA_PERIOD,
    );
    // The kubelet's checks and texts; the kernel's own floor for cfs_period_us is 1 ms.
    if !gates.enabled("CustomCPUCFSQuotaPeriod") && period != DEFAULT_CPU_CFS_QUOTA_PERIOD {
        return Err(invalid(
            &s,
            format_go_duration(period),
            "cpuCFSQuotaPeriod (--cpu-cfs-quota-period) requires feature gate \
             CustomCPUCFSQuotaPeriod",
        ));
    }
    if !(Duration::from_millis(1)..=SECOND).contains(&period) {
        return Err(invalid(
            &s,
            format_go_duration(period),
            "must be between 1ms and 1s, inclusive",
        ));
    }
    Ok(CpuQuota { enforce, period })
}

/// Settings of the agent's own process and the host checks it makes at start.
pub(super) struct Process {
    pub fail_swap_on: bool,
    pub oom_score_adj: i32,
    pub max_open_files: u64,
    pub protect_kernel_defaults: bool,
    pub fail_cgroup_v1: bool,
}

pub(super) fn process(r: &Resolver<'_>) -> Result<Process, ConfigError> {
    let (fail_swap_on, _) = r.pick(
        key("failSwapOn", "fail-swap-on"),
        r.flags.fail_swap_on,
        |c| c.fail_swap_on,
        || true,
    );
    let (oom_score_adj, s) = r.file_only("oomScoreAdj", |c| c.oom_score_adj, || -999);
    let oom_score_adj = in_range(&s, oom_score_adj.into(), -1000, 1000)? as i32;
    let (max_open_files, s) = r.pick(
        key("maxOpenFiles", "max-open-files"),
        r.flags
            .max_open_files
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
        |c| c.max_open_files.filter(|&n| n != 0),
        || 1_000_000,
    );
    let max_open_files = in_range(&s, max_open_files, 1, i64::MAX)? as u64;
    let (protect_kernel_defaults, _) = r.file_only(
        "protectKernelDefaults",
        |c| c.protect_kernel_defaults,
        || false,
    );
    let (fail_cgroup_v1, _) = r.file_only("failCgroupV1", |c| c.fail_cgroup_v1, || false);
    Ok(Process {
        fail_swap_on,
        oom_score_adj,
        max_open_files,
        protect_kernel_defaults,
        fail_cgroup_v1,
    })
}

/// Pod DNS and the node's pod network.
pub(super) struct Network {
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    pub resolv_conf: Option<PathBuf>,
    pub pod_cidr: Option<String>,
    pub hairpin_mode: String,
}

pub(super) fn network(r: &Resolver<'_>) -> Result<Network, ConfigError> {
    let flags = r.flags;
    let given = (!flags.cluster_dns.is_empty()).then(|| {
        flags
            .cluster_dns
            .iter()
            .flat_map(|s| s.split(','))
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect::<Vec<_>>()
    });
    let (dns, s) = r.pick(
        key("clusterDNS", "cluster-dns"),
        given,
        |c| c.cluster_dns.clone(),
        Vec::new,
    );
    let cluster_dns = dns
        .iter()
        .map(|ip| parse_ip(&s, ip))
        .collect::<Result<Vec<_>, _>>()?;
    let (cluster_domain, s) = r.pick(
        key("clusterDomain", "cluster-domain"),
        flags.cluster_domain.clone(),
        |c| c.cluster_domain.clone(),
        String::new,
    );
    // The kubelet builds `<ns>.svc.<domain>` search domains from it.
    let cluster_domain = cluster_domain.trim_end_matches('.').to_string();
    if !cluster_domain.is_empty() {
        if let Some(reason) = is_dns1123_subdomain(&cluster_domain).into_iter().next() {
            return Err(invalid(&s, format!("{cluster_domain:?}"), reason));
        }
    }
    let (resolv_conf, _) = r.pick(
        key("resolvConf", "resolv-conf"),
        flags.resolv_conf.clone(),
        |c| c.resolv_conf.clone(),
        || "/etc/resolv.conf".to_string(),
    );
    let (pod_cidr, s_cidr) = r.file_only(
        "podCIDR",
        |c| Some(c.pod_cidr.clone().filter(|s| !s.is_empty())),
        || None,
    );
    if let Some(cidr) = &pod_cidr {
        check_cidr(&s_cidr, cidr)?;
    }
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
    Ok(Network {
        cluster_dns,
        cluster_domain,
        resolv_conf: opt_path(&resolv_conf),
        pod_cidr,
        hairpin_mode,
    })
}

/// `a.b.c.d/n` or an IPv6 prefix; several separated by commas (dual stack).
fn check_cidr(setting: &str, cidrs: &str) -> Result<(), ConfigError> {
    for cidr in cidrs.split(',') {
        let ok = cidr.split_once('/').is_some_and(|(ip, bits)| {
            match (ip.parse::<IpAddr>(), bits.parse::<u8>()) {
                (Ok(IpAddr::V4(_)), Ok(b)) => b <= 32,
                (Ok(IpAddr::V6(_)), Ok(b)) => b <= 128,
                _ => false,
            }
        });
        if !ok {
            return Err(invalid(
                setting,
                format!("{cidr:?}"),
                "must be a CIDR such as 10.88.0.0/16",
            ));
        }
    }
    Ok(())
}

/// The agent's log and the containers' logs.
pub(super) struct Logs {
    pub verbosity: u8,
    pub container_log_max_size: Quantity,
    pub container_log_max_files: u32,
    pub container_log_max_workers: u32,
    pub container_log_monitor_interval: Duration,
}

pub(super) fn logs(r: &Resolver<'_>) -> Result<Logs, ConfigError> {
    let (verbosity, _) = r.pick(
        key("logging.verbosity", "v"),
        r.flags.verbosity,
        |c| {
            c.logging
                .as_ref()
                .and_then(|l| l.verbosity)
                .map(|v| v.min(u32::from(u8::MAX)) as u8)
        },
        || 0,
    );
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
    let (workers, s) = r.file_only(
        "containerLogMaxWorkers",
        |c| c.container_log_max_workers,
        || 1,
    );
    let container_log_max_workers = in_range(&s, workers.into(), 1, i64::from(i32::MAX))? as u32;
    // At least 3 s: checked with the other ranges in `support`.
    let (container_log_monitor_interval, _) = r.file_only(
        "containerLogMonitorInterval",
        |c| c.container_log_monitor_interval.map(|d| d.0),
        || Duration::from_secs(10),
    );
    Ok(Logs {
        verbosity,
        container_log_max_size,
        container_log_max_files,
        container_log_max_workers,
        container_log_monitor_interval,
    })
}

/// Graceful node shutdown.
pub(super) struct Shutdown {
    pub grace_period: Duration,
    pub grace_period_critical_pods: Duration,
    /// `(priority, seconds)` in the order written.
    pub by_pod_priority: Vec<(i32, i64)>,
}

/// The kubelet's checks of the shutdown settings (`ValidateKubeletConfiguration`).
pub(super) fn shutdown(r: &Resolver<'_>, gates: &FeatureGates) -> Result<Shutdown, ConfigError> {
    let (grace_period, s_total) = r.file_only(
        "shutdownGracePeriod",
        |c| c.shutdown_grace_period.map(|d| d.0),
        || Duration::ZERO,
    );
    let (grace_period_critical_pods, s) = r.file_only(
        "shutdownGracePeriodCriticalPods",
        |c| c.shutdown_grace_period_critical_pods.map(|d| d.0),
        || Duration::ZERO,
    );
    let (by_pod_priority, s_prio) = r.file_only(
        "shutdownGracePeriodByPodPriority",
        |c| c.shutdown_grace_period_by_pod_priority.clone(),
        Vec::new,
    );
    for (d, setting, name) in [
        (grace_period, &s_total, "shutdownGracePeriod"),
        (
            grace_period_critical_pods,
            &s,
            "shutdownGracePeriodCriticalPods",
        ),
    ] {
        if !d.is_zero() && d < SECOND {
            return Err(invalid(
                setting,
                format_go_duration(d),
                format!("{name} must be either zero or otherwise >= 1 sec"),
            ));
        }
    }
    if grace_period_critical_pods > grace_period {
        return Err(invalid(
            &s,
            format_go_duration(grace_period_critical_pods),
            format!(
                "must not be greater than shutdownGracePeriod ({}, {s_total})",
                format_go_duration(grace_period)
            ),
        ));
    }
    let legacy = !grace_period.is_zero() || !grace_period_critical_pods.is_zero();
    if legacy && !gates.enabled("GracefulNodeShutdown") {
        return Err(ConfigError::Setting {
            setting: s_total,
            reason: "specifying shutdownGracePeriod or shutdownGracePeriodCriticalPods requires \
                     feature gate GracefulNodeShutdown"
                .to_string(),
        });
    }
    if !by_pod_priority.is_empty() {
        if !gates.enabled("GracefulNodeShutdownBasedOnPodPriority") {
            return Err(ConfigError::Setting {
                setting: s_prio,
                reason: "Specifying shutdownGracePeriodByPodPriority requires feature gate \
                         GracefulNodeShutdownBasedOnPodPriority"
                    .to_string(),
            });
        }
        if legacy {
            return Err(ConfigError::Setting {
                setting: s_prio,
                reason: "Cannot specify both shutdownGracePeriodByPodPriority and \
                         shutdownGracePeriod at the same time"
                    .to_string(),
            });
        }
        // Not checked by the kubelet, which would then stop those pods with a negative grace
        // period.
        if let Some((i, p)) = by_pod_priority
            .iter()
            .enumerate()
            .find(|(_, p)| p.shutdown_grace_period_seconds < 0)
        {
            return Err(invalid(
                &format!("{s_prio}, entry {i}"),
                p.shutdown_grace_period_seconds,
                "shutdownGracePeriodSeconds must not be negative",
            ));
        }
    }
    Ok(Shutdown {
        grace_period,
        grace_period_critical_pods,
        by_pod_priority: by_pod_priority
            .iter()
            .map(|p| (p.priority, p.shutdown_grace_period_seconds))
            .collect(),
    })
}

/// Container behaviours set only in the file.
pub(super) struct Containers {
    pub seccomp_default: bool,
    pub kernel_memcg_notification: bool,
    /// The crash-loop backoff's first delay and its cap.
    pub crash_loop_backoff: (Duration, Duration),
}

pub(super) fn containers(
    r: &Resolver<'_>,
    gates: &FeatureGates,
) -> Result<Containers, ConfigError> {
    let (seccomp_default, _) = r.file_only("seccompDefault", |c| c.seccomp_default, || false);
    // kubelet-rs's own default: the threshold notifications are its fast path (README).
    let (kernel_memcg_notification, _) = r.file_only(
        "kernelMemcgNotification",
        |c| c.kernel_memcg_notification,
        || true,
    );
    // The kubelet's `newCrashLoopBackOff`: 10 s doubling to 300 s, or 1 s to 60 s with
    // ReduceDefaultCrashLoopBackOffDecay; a configured cap (KubeletCrashLoopBackOffMax) wins.
    let (mut initial, mut max) = if gates.enabled("ReduceDefaultCrashLoopBackOffDecay") {
        (SECOND, MINUTE)
    } else {
        (10 * SECOND, 5 * MINUTE)
    };
    let (cap, s) = r.file_only(
        "crashLoopBackOff.maxContainerRestartPeriod",
        |c| {
            c.crash_loop_back_off
                .as_ref()
                .map(|b| b.max_container_restart_period.map(|d| d.0))
        },
        || None,
    );
    if let Some(cap) = cap {
        if !gates.enabled("KubeletCrashLoopBackOffMax") {
            return Err(ConfigError::Setting {
                setting: s,
                reason: "FeatureGate KubeletCrashLoopBackOffMax not enabled, \
                         CrashLoopBackOff.MaxContainerRestartPeriod must not be set"
                    .to_string(),
            });
        }
        if !(SECOND..=5 * MINUTE).contains(&cap) {
            return Err(invalid(
                &s,
                format_go_duration(cap),
                "CrashLoopBackOff.MaxContainerRestartPeriod must be set between 1 and 300 seconds",
            ));
        }
        max = cap;
        initial = initial.min(cap);
    }
    Ok(Containers {
        seccomp_default,
        kernel_memcg_notification,
        crash_loop_backoff: (initial, max),
    })
}

#[cfg(test)]
mod api_node_tests {
    use super::*;
    use crate::config::{resolve, Flags};

    #[test]
    fn taints_parse_as_the_kubelets_flag() {
        let t = parse_taint("example.com/dedicated=test:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref(), t.effect.as_str()),
            ("example.com/dedicated", Some("test"), "NoSchedule")
        );
        let t = parse_taint("gpu:NoExecute").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("gpu", None, "NoExecute")
        );
        assert!(parse_taint("gpu=yes")
            .unwrap_err()
            .contains("malformed taint"));
        assert!(parse_taint("gpu=yes:Sometimes")
            .unwrap_err()
            .contains("invalid taint effect"));
        assert!(parse_taint("bad key=x:NoSchedule")
            .unwrap_err()
            .starts_with("taint key"));
    }

    #[test]
    fn api_node_defaults_and_flags() {
        let s = resolve(&Flags::default(), None, "n1").unwrap();
        assert_eq!(s.api_node, ApiNode::default());
        let flags = Flags {
            register_with_taints: vec!["a=b:NoSchedule,c:NoExecute".into()],
            kube_api_qps: Some(5),
            kube_api_burst: Some(10),
            ..Default::default()
        };
        let s = resolve(&flags, None, "n1").unwrap();
        assert_eq!(s.api_node.register_with_taints.len(), 2);
        assert_eq!(
            (s.api_node.kube_api_qps, s.api_node.kube_api_burst),
            (5, 10)
        );
        let flags = Flags {
            register_with_taints: vec!["a=b:Never".into()],
            ..Default::default()
        };
        let e = resolve(&flags, None, "n1").unwrap_err().to_string();
        assert!(
            e.contains("--register-with-taints") && e.contains("a=b:Never"),
            "{e}"
        );
    }
}
