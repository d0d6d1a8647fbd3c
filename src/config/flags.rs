//! The command-line flags, spelled as the kubelet's.
//!
//! Every field is optional so that [`super::load`] can tell a flag given on the command line
//! (which overrides the `--config` file) from one left out (the file's value, then the default
//! applies). The defaults shown in `--help` are those [`super::load`] applies.
//!
//! Scalar flags are parsed by clap (a malformed value is reported by clap, naming the flag);
//! map-like flags (`--node-labels`, `--eviction-*`, `--manifest-url-header`, `--feature-gates`)
//! are kept as given and parsed by [`super::load`], which names the flag in its errors. Boolean
//! flags take `--flag`, `--flag=true` or `--flag=false`, as Go's do.
//!
//! A flag given twice is not an error: as with the kubelet's flag parser, the last value wins,
//! since service drop-ins append `$KUBELET_EXTRA_ARGS` to override earlier flags. The flags the
//! kubelet accumulates (its string-slice and map flags: `--node-labels`, `--eviction-*`,
//! `--manifest-url-header`, `--feature-gates`, `--cluster-dns`, `--enforce-node-allocatable`)
//! accumulate here too.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ArgAction;

use super::duration::duration_flag;

/// Parses a boolean flag value the way Go's `strconv.ParseBool` does.
pub fn go_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("invalid boolean {s:?}: expected true or false")),
    }
}

/// The kubelet's flags. Flatten into the binary's CLI with `#[command(flatten)]`.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Kubelet options", args_override_self = true)]
pub struct Flags {
    /// A kubelet.config.k8s.io/v1beta1 KubeletConfiguration file (YAML or JSON). Flags given on
    /// the command line override its values.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory of static pod manifests to run, or a single manifest file. Files whose names
    /// start with '.' are ignored. [file: staticPodPath]
    #[arg(long = "pod-manifest-path", value_name = "PATH")]
    pub pod_manifest_path: Option<PathBuf>,

    /// URL for reading static pod manifests. [file: staticPodURL]
    #[arg(long = "manifest-url", value_name = "URL")]
    pub manifest_url: Option<String>,

    /// HTTP headers for --manifest-url, as 'key:value' pairs separated by commas; may be
    /// repeated, and a header name may appear more than once. [file: staticPodURLHeader]
    #[arg(long = "manifest-url-header", value_name = "KEY:VALUE,...", action = ArgAction::Append)]
    pub manifest_url_header: Vec<String>,

    /// How often to re-read the manifest path, besides reacting to inotify events.
    /// [default: 20s] [file: fileCheckFrequency]
    #[arg(long = "file-check-frequency", value_name = "DURATION", value_parser = duration_flag)]
    pub file_check_frequency: Option<Duration>,

    /// How often to poll --manifest-url. [default: 20s] [file: httpCheckFrequency]
    #[arg(long = "http-check-frequency", value_name = "DURATION", value_parser = duration_flag)]
    pub http_check_frequency: Option<Duration>,

    /// The longest time between two syncs of a running pod. [default: 1m] [file: syncFrequency]
    #[arg(long = "sync-frequency", value_name = "DURATION", value_parser = duration_flag)]
    pub sync_frequency: Option<Duration>,

    /// A kubeconfig file for the API server. Without it, the agent runs standalone.
    #[arg(long = "kubeconfig", value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,

    /// A kubeconfig used to get a client certificate (TLS bootstrap) when the file named by
    /// --kubeconfig does not exist; the certificate is written under --cert-dir.
    #[arg(long = "bootstrap-kubeconfig", value_name = "FILE")]
    pub bootstrap_kubeconfig: Option<PathBuf>,

    /// Register the node with the API server (needs --kubeconfig). [default: true]
    /// [file: registerNode]
    #[arg(long = "register-node", value_name = "BOOL", value_parser = go_bool, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub register_node: Option<bool>,

    /// Use this name as the node name instead of the machine's hostname.
    #[arg(long = "hostname-override", value_name = "NAME")]
    pub hostname_override: Option<String>,

    /// The node's IP address, reported in its status.
    #[arg(long = "node-ip", value_name = "IP")]
    pub node_ip: Option<IpAddr>,

    /// Labels for the node when it registers, as 'key=value' pairs separated by commas; may be
    /// repeated.
    #[arg(long = "node-labels", value_name = "KEY=VALUE,...", action = ArgAction::Append)]
    pub node_labels: Vec<String>,

    /// Taints the node registers with, as 'key=value:Effect' (or 'key:Effect') separated by
    /// commas; may be repeated. [file: registerWithTaints]
    #[arg(long = "register-with-taints", value_name = "KEY=VALUE:EFFECT,...", action = ArgAction::Append)]
    pub register_with_taints: Vec<String>,

    /// Queries per second to the API server. [default: 50] [file: kubeAPIQPS]
    #[arg(long = "kube-api-qps", value_name = "QPS")]
    pub kube_api_qps: Option<i32>,

    /// Burst of queries to the API server. [default: 100] [file: kubeAPIBurst]
    #[arg(long = "kube-api-burst", value_name = "N")]
    pub kube_api_burst: Option<i32>,

    /// The CRI runtime endpoint. [default: unix:///run/kubelet-rs/containerd/containerd.sock]
    /// [file: containerRuntimeEndpoint]
    #[arg(long = "container-runtime-endpoint", value_name = "ENDPOINT")]
    pub container_runtime_endpoint: Option<String>,

    /// The CRI image service endpoint. [default: the runtime endpoint]
    /// [file: imageServiceEndpoint]
    #[arg(long = "image-service-endpoint", value_name = "ENDPOINT")]
    pub image_service_endpoint: Option<String>,

    /// Directory for the agent's state. [default: /var/lib/kubelet-rs]
    #[arg(long = "root-dir", value_name = "DIR")]
    pub root_dir: Option<PathBuf>,

    /// Directory for the serving TLS certificate when --tls-cert-file is not given.
    /// [default: ROOT_DIR/pki]
    #[arg(long = "cert-dir", value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,

    /// The image of every pod's sandbox (pause) container.
    /// [default: 127.0.0.1:5000/kubelet-rs/pause:3.10]
    #[arg(long = "pod-infra-container-image", value_name = "IMAGE")]
    pub pod_infra_container_image: Option<String>,

    /// The IP address the kubelet API (--port) and read-only API serve on. [default: 0.0.0.0]
    /// [file: address]
    #[arg(long = "address", value_name = "IP")]
    pub address: Option<IpAddr>,

    /// The port of the authenticated kubelet API (HTTPS). [default: 10250] [file: port]
    #[arg(long = "port", value_name = "PORT")]
    pub port: Option<u16>,

    /// The port of the read-only API (plain HTTP, no authentication); 0 disables it.
    /// [default: 0] [file: readOnlyPort]
    #[arg(long = "read-only-port", value_name = "PORT")]
    pub read_only_port: Option<u16>,

    /// The port of the healthz endpoint; 0 disables it. [default: 10248] [file: healthzPort]
    #[arg(long = "healthz-port", value_name = "PORT")]
    pub healthz_port: Option<u16>,

    /// The address the healthz endpoint serves on. [default: 127.0.0.1]
    /// [file: healthzBindAddress]
    #[arg(long = "healthz-bind-address", value_name = "IP")]
    pub healthz_bind_address: Option<IpAddr>,

    /// The port of the cAdvisor-compatible API, UI and /metrics (on 127.0.0.1); 0 disables it.
    /// [default: 4194]
    #[arg(long = "cadvisor-port", value_name = "PORT")]
    pub cadvisor_port: Option<u16>,

    /// The serving certificate of the kubelet API. [file: tlsCertFile]
    #[arg(long = "tls-cert-file", value_name = "FILE")]
    pub tls_cert_file: Option<PathBuf>,

    /// The key of --tls-cert-file. [file: tlsPrivateKeyFile]
    #[arg(long = "tls-private-key-file", value_name = "FILE")]
    pub tls_private_key_file: Option<PathBuf>,

    /// Allow anonymous requests to the kubelet API. [default: false]
    /// [file: authentication.anonymous.enabled]
    #[arg(long = "anonymous-auth", value_name = "BOOL", value_parser = go_bool, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub anonymous_auth: Option<bool>,

    /// Accept pods on the kubelet API (POST /pods, DELETE /pods/NAMESPACE/NAME) as static pods
    /// (kubelet-rs only). [default: false]
    #[arg(long = "enable-pod-endpoint", value_name = "BOOL", value_parser = go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub enable_pod_endpoint: Option<bool>,

    /// Authenticate bearer tokens on the kubelet API with the API server's TokenReview.
    /// [default: true] [file: authentication.webhook.enabled]
    #[arg(long = "authentication-token-webhook", value_name = "BOOL", value_parser = go_bool,
          action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub authentication_token_webhook: Option<bool>,

    /// CA bundle for client certificates of the kubelet API.
    /// [file: authentication.x509.clientCAFile]
    #[arg(long = "client-ca-file", value_name = "FILE")]
    pub client_ca_file: Option<PathBuf>,

    /// Authorization mode of the kubelet API: AlwaysAllow or Webhook. [default: Webhook]
    /// [file: authorization.mode]
    #[arg(long = "authorization-mode", value_name = "MODE")]
    pub authorization_mode: Option<String>,

    /// The most pods this node runs. [default: 110] [file: maxPods]
    #[arg(long = "max-pods", value_name = "N")]
    pub max_pods: Option<u32>,

    /// The most PIDs in any pod; -1 for no limit. [default: -1] [file: podPidsLimit]
    #[arg(long = "pod-max-pids", value_name = "N", allow_negative_numbers = true)]
    pub pod_max_pids: Option<i64>,

    /// Hard eviction thresholds, 'signal<value' separated by commas (e.g.
    /// memory.available<100Mi,nodefs.available<10%); '' disables them all.
    /// [default: memory.available<100Mi,nodefs.available<10%,nodefs.inodesFree<5%,imagefs.available<15%]
    /// [file: evictionHard]
    #[arg(long = "eviction-hard", value_name = "SIGNAL<VALUE,...", action = ArgAction::Append)]
    pub eviction_hard: Vec<String>,

    /// Soft eviction thresholds, 'signal<value' separated by commas; each needs a grace period.
    /// [file: evictionSoft]
    #[arg(long = "eviction-soft", value_name = "SIGNAL<VALUE,...", action = ArgAction::Append)]
    pub eviction_soft: Vec<String>,

    /// Grace periods of the soft thresholds, 'signal=duration' separated by commas (e.g.
    /// memory.available=1m30s). [file: evictionSoftGracePeriod]
    #[arg(long = "eviction-soft-grace-period", value_name = "SIGNAL=DURATION,...", action = ArgAction::Append)]
    pub eviction_soft_grace_period: Vec<String>,

    /// The least to reclaim once a threshold is crossed, 'signal=value' separated by commas
    /// (e.g. imagefs.available=2Gi). [file: evictionMinimumReclaim]
    #[arg(long = "eviction-minimum-reclaim", value_name = "SIGNAL=VALUE,...", action = ArgAction::Append)]
    pub eviction_minimum_reclaim: Vec<String>,

    /// How long a pressure condition stays after its threshold is no longer crossed.
    /// [default: 5m] [file: evictionPressureTransitionPeriod]
    #[arg(long = "eviction-pressure-transition-period", value_name = "DURATION", value_parser = duration_flag)]
    pub eviction_pressure_transition_period: Option<Duration>,

    /// The longest grace period (seconds) given to pods evicted for a soft threshold; 0 uses
    /// the pod's own. [default: 0] [file: evictionMaxPodGracePeriod]
    #[arg(
        long = "eviction-max-pod-grace-period",
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub eviction_max_pod_grace_period: Option<i32>,

    /// Disk usage percent above which image garbage collection always runs. [default: 85]
    /// [file: imageGCHighThresholdPercent]
    #[arg(
        long = "image-gc-high-threshold",
        value_name = "PERCENT",
        allow_negative_numbers = true
    )]
    pub image_gc_high_threshold: Option<i32>,

    /// Disk usage percent image garbage collection frees down to. [default: 80]
    /// [file: imageGCLowThresholdPercent]
    #[arg(
        long = "image-gc-low-threshold",
        value_name = "PERCENT",
        allow_negative_numbers = true
    )]
    pub image_gc_low_threshold: Option<i32>,

    /// The least time an image stays unused before it may be collected. [default: 2m]
    /// [file: imageMinimumGCAge]
    #[arg(long = "minimum-image-ttl-duration", value_name = "DURATION", value_parser = duration_flag)]
    pub minimum_image_ttl_duration: Option<Duration>,

    /// Pull images one at a time. [default: true] [file: serializeImagePulls]
    #[arg(long = "serialize-image-pulls", value_name = "BOOL", value_parser = go_bool, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub serialize_image_pulls: Option<bool>,

    /// How often the collector samples container statistics. [default: 1s]
    #[arg(long = "housekeeping-interval", value_name = "DURATION", value_parser = duration_flag)]
    pub housekeeping_interval: Option<Duration>,

    /// How often node status is computed. [default: 10s] [file: nodeStatusUpdateFrequency]
    #[arg(long = "node-status-update-frequency", value_name = "DURATION", value_parser = duration_flag)]
    pub node_status_update_frequency: Option<Duration>,

    /// Timeout of every CRI call except long-running ones (pull, logs, exec, attach).
    /// [default: 2m] [file: runtimeRequestTimeout]
    #[arg(long = "runtime-request-timeout", value_name = "DURATION", value_parser = duration_flag)]
    pub runtime_request_timeout: Option<Duration>,

    /// The root cgroup of pods. [default: /] [file: cgroupRoot]
    #[arg(long = "cgroup-root", value_name = "CGROUP")]
    pub cgroup_root: Option<String>,

    /// Put pods under per-QoS cgroups (kubepods/burstable, kubepods/besteffort).
    /// [default: true] [file: cgroupsPerQOS]
    #[arg(long = "cgroups-per-qos", value_name = "BOOL", value_parser = go_bool, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cgroups_per_qos: Option<bool>,

    /// The cgroup driver; only cgroupfs is supported. [default: cgroupfs] [file: cgroupDriver]
    #[arg(long = "cgroup-driver", value_name = "DRIVER")]
    pub cgroup_driver: Option<String>,

    /// Node allocatable enforcement levels, separated by commas: none, pods, system-reserved,
    /// kube-reserved; may be repeated. [default: pods] [file: enforceNodeAllocatable]
    #[arg(long = "enforce-node-allocatable", value_name = "LEVEL,...", action = ArgAction::Append)]
    pub enforce_node_allocatable: Vec<String>,

    /// Put CPU limits on containers and pods as CFS quota. [default: true] [file: cpuCFSQuota]
    #[arg(long = "cpu-cfs-quota", value_name = "BOOL", value_parser = go_bool, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub cpu_cfs_quota: Option<bool>,

    /// The CFS quota period of CPU limits; other than 100ms needs the CustomCPUCFSQuotaPeriod
    /// feature gate. [default: 100ms] [file: cpuCFSQuotaPeriod]
    #[arg(long = "cpu-cfs-quota-period", value_name = "DURATION", value_parser = duration_flag)]
    pub cpu_cfs_quota_period: Option<Duration>,

    /// Refuse to start when swap is on (/proc/swaps lists a device). [default: true]
    /// [file: failSwapOn]
    #[arg(long = "fail-swap-on", value_name = "BOOL", value_parser = go_bool, action = ArgAction::Set,
          num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub fail_swap_on: Option<bool>,

    /// The most pods per CPU core; the node then runs at most min(--max-pods, this × cores).
    /// 0 is no limit. [default: 0] [file: podsPerCore]
    #[arg(long = "pods-per-core", value_name = "N")]
    pub pods_per_core: Option<u32>,

    /// The agent's limit of open files (RLIMIT_NOFILE, soft and hard). [default: 1000000]
    /// [file: maxOpenFiles]
    #[arg(long = "max-open-files", value_name = "N")]
    pub max_open_files: Option<u64>,

    /// Feature gates, 'Name=bool' pairs separated by commas; may be repeated. Merged with the
    /// file's featureGates, these winning. [file: featureGates]
    #[arg(long = "feature-gates", value_name = "NAME=BOOL,...", action = ArgAction::Append)]
    pub feature_gates: Vec<String>,

    /// DNS server IPs for pods, separated by commas; may be repeated. [file: clusterDNS]
    #[arg(long = "cluster-dns", value_name = "IP,...", action = ArgAction::Append)]
    pub cluster_dns: Vec<String>,

    /// The cluster's DNS domain, searched by pods. [file: clusterDomain]
    #[arg(long = "cluster-domain", value_name = "DOMAIN")]
    pub cluster_domain: Option<String>,

    /// The resolver configuration pods' DNS is based on; '' disables it.
    /// [default: /etc/resolv.conf] [file: resolvConf]
    #[arg(long = "resolv-conf", value_name = "FILE")]
    pub resolv_conf: Option<String>,

    /// Log verbosity: 0-1 info, 2-3 debug, 4 and up trace. RUST_LOG overrides it.
    /// [default: 0] [file: logging.verbosity]
    #[arg(long = "v", value_name = "LEVEL")]
    pub verbosity: Option<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        flags: Flags,
    }

    fn parse(args: &[&str]) -> Result<Flags, String> {
        let mut argv = vec!["kubelet-rs"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|c| c.flags)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn every_flag_parses() {
        let f = parse(&[
            "--config=/etc/k.yaml",
            "--pod-manifest-path=/m",
            "--manifest-url=http://x/p",
            "--manifest-url-header=a:b,c:d",
            "--manifest-url-header",
            "a:e",
            "--file-check-frequency=5s",
            "--http-check-frequency=1m",
            "--sync-frequency=30s",
            "--kubeconfig=/k",
            "--register-node=false",
            "--hostname-override=Node1",
            "--node-ip=10.1.2.3",
            "--node-labels=a=b",
            "--node-labels=c=d",
            "--container-runtime-endpoint=unix:///c.sock",
            "--image-service-endpoint=unix:///i.sock",
            "--root-dir=/r",
            "--cert-dir=/pki",
            "--pod-infra-container-image=p:1",
            "--address=127.0.0.1",
            "--port=11250",
            "--read-only-port=10255",
            "--healthz-port=0",
            "--healthz-bind-address=0.0.0.0",
            "--cadvisor-port=4195",
            "--tls-cert-file=/c",
            "--tls-private-key-file=/k.pem",
            "--anonymous-auth",
            "--client-ca-file=/ca",
            "--authorization-mode=AlwaysAllow",
            "--max-pods=20",
            "--pod-max-pids=-1",
            "--eviction-hard=memory.available<1Gi",
            "--eviction-soft=memory.available<2Gi",
            "--eviction-soft-grace-period=memory.available=1m",
            "--eviction-minimum-reclaim=memory.available=100Mi",
            "--eviction-pressure-transition-period=1m",
            "--eviction-max-pod-grace-period=30",
            "--image-gc-high-threshold=90",
            "--image-gc-low-threshold=70",
            "--minimum-image-ttl-duration=5m",
            "--serialize-image-pulls=false",
            "--housekeeping-interval=2s",
            "--node-status-update-frequency=20s",
            "--runtime-request-timeout=1m",
            "--cgroup-root=/custom",
            "--cgroups-per-qos=false",
            "--cgroup-driver=cgroupfs",
            "--enforce-node-allocatable=",
            "--cluster-dns=10.0.0.10",
            "--cluster-domain=cluster.local",
            "--cpu-cfs-quota=false",
            "--cpu-cfs-quota-period=50ms",
            "--fail-swap-on=false",
            "--pods-per-core=4",
            "--max-open-files=4096",
            "--feature-gates=CustomCPUCFSQuotaPeriod=true",
            "--resolv-conf=",
            "--v=4",
        ])
        .unwrap();
        assert_eq!(f.config, Some(PathBuf::from("/etc/k.yaml")));
        assert_eq!(f.manifest_url_header, ["a:b,c:d", "a:e"]);
        assert_eq!(f.file_check_frequency, Some(Duration::from_secs(5)));
        assert_eq!(f.register_node, Some(false));
        assert_eq!(f.anonymous_auth, Some(true));
        assert_eq!(f.node_labels, ["a=b", "c=d"]);
        assert_eq!(f.pod_max_pids, Some(-1));
        assert_eq!(f.read_only_port, Some(10255));
        assert_eq!(f.healthz_port, Some(0));
        assert_eq!(f.enforce_node_allocatable, [""]);
        assert_eq!(f.cpu_cfs_quota, Some(false));
        assert_eq!(f.cpu_cfs_quota_period, Some(Duration::from_millis(50)));
        assert_eq!(f.fail_swap_on, Some(false));
        assert_eq!(f.pods_per_core, Some(4));
        assert_eq!(f.max_open_files, Some(4096));
        assert_eq!(f.feature_gates, ["CustomCPUCFSQuotaPeriod=true"]);
        assert_eq!(f.resolv_conf.as_deref(), Some(""));
        assert_eq!(f.verbosity, Some(4));
    }

    #[test]
    fn a_repeated_flag_takes_the_last_value_and_lists_accumulate() {
        let f = parse(&[
            "--root-dir",
            "/a",
            "--root-dir",
            "/b",
            "--read-only-port=1",
            "--read-only-port=2",
            "--fail-swap-on=false",
            "--fail-swap-on",
            "--v=1",
            "--v=3",
            "--cluster-dns=10.0.0.10",
            "--cluster-dns=10.0.0.11,10.0.0.12",
            "--manifest-url-header=A:1",
            "--manifest-url-header=A:2",
            "--feature-gates=NodeSwap=false",
            "--feature-gates=KubeletPSI=true",
        ])
        .unwrap();
        assert_eq!(f.root_dir, Some(PathBuf::from("/b")));
        assert_eq!(f.read_only_port, Some(2));
        assert_eq!(f.fail_swap_on, Some(true));
        assert_eq!(f.verbosity, Some(3));
        assert_eq!(f.cluster_dns, ["10.0.0.10", "10.0.0.11,10.0.0.12"]);
        assert_eq!(f.manifest_url_header, ["A:1", "A:2"]);
        assert_eq!(f.feature_gates, ["NodeSwap=false", "KubeletPSI=true"]);
    }

    #[test]
    fn nothing_given_is_all_none() {
        let f = parse(&[]).unwrap();
        assert!(f.config.is_none() && f.port.is_none() && f.register_node.is_none());
        assert!(f.eviction_hard.is_empty());
    }

    #[test]
    fn bad_values_name_the_flag() {
        let err = parse(&["--sync-frequency=10"]).unwrap_err();
        assert!(err.contains("--sync-frequency"), "{err}");
        assert!(err.contains("missing unit in duration \"10\""), "{err}");
        let err = parse(&["--port=70000"]).unwrap_err();
        assert!(err.contains("--port"), "{err}");
        let err = parse(&["--node-ip=not-an-ip"]).unwrap_err();
        assert!(err.contains("--node-ip"), "{err}");
        let err = parse(&["--register-node=maybe"]).unwrap_err();
        assert!(
            err.contains("--register-node") && err.contains("invalid boolean"),
            "{err}"
        );
    }

    #[test]
    fn help_renders() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("--pod-manifest-path"));
        assert!(help.contains("--eviction-hard"));
    }
}
