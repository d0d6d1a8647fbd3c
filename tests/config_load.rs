//! Configuration: flags, the KubeletConfiguration file, their merge, and the errors a user sees.
//! Unit tier: no root, no runtime.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use kubelet_rs::config::{
    self, AuthorizationMode, ConfigError, EvictionSignal, Flags, KubeletSettings, ThresholdValue,
};
use kubelet_rs::resource::parse_quantity;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// Parses a command line (flags only) the way the binary does.
fn flags(args: &[&str]) -> Flags {
    let mut argv = vec!["kubelet-rs"];
    if !args.iter().any(|a| a.starts_with("--hostname-override")) {
        argv.push("--hostname-override=test-node");
    }
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap().flags
}

fn load(args: &[&str]) -> Result<KubeletSettings, ConfigError> {
    config::load(&flags(args))
}

fn load_err(args: &[&str]) -> String {
    load(args)
        .expect_err("configuration should be refused")
        .to_string()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn every_file_field_kubelet_rs_uses_is_read() {
    let path = fixture("full.yaml");
    let s = load(&[&format!("--config={}", path.display())]).unwrap();
    assert_eq!(s.config_file.as_deref(), Some(path.as_path()));
    assert_eq!(s.node_name, "test-node");
    assert!(s.enable_server);
    assert_eq!(
        s.pod_manifest_path,
        Some(PathBuf::from("/etc/kubelet-rs/manifests"))
    );
    assert_eq!(s.pod_logs_dir, PathBuf::from("/var/log/custom-pods"));
    assert_eq!(s.sync_frequency, secs(30));
    assert_eq!(s.file_check_frequency, secs(5));
    assert_eq!(s.http_check_frequency, secs(90));
    assert_eq!(
        s.manifest_url.as_deref(),
        Some("http://127.0.0.1:8000/pods")
    );
    assert_eq!(
        s.manifest_url_header,
        [
            ("Authorization".to_string(), "Bearer abc".to_string()),
            ("X-Trace".to_string(), "a".to_string()),
            ("X-Trace".to_string(), "b".to_string()),
        ]
    );
    assert_eq!(s.address, "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(s.port, 11250);
    assert_eq!(s.read_only_port, 10255);
    assert_eq!(s.tls_cert_file, Some(PathBuf::from("/pki/kubelet.crt")));
    assert_eq!(
        s.tls_private_key_file,
        Some(PathBuf::from("/pki/kubelet.key"))
    );
    assert!(s.authentication.anonymous);
    assert!(!s.authentication.webhook);
    assert_eq!(s.authentication.webhook_cache_ttl, secs(60));
    assert_eq!(
        s.authentication.client_ca_file,
        Some(PathBuf::from("/pki/ca.crt"))
    );
    assert_eq!(s.authorization.mode, AuthorizationMode::AlwaysAllow);
    assert_eq!(s.authorization.cache_authorized_ttl, secs(60));
    assert_eq!(s.authorization.cache_unauthorized_ttl, secs(10));
    assert_eq!(s.healthz_port, 10249);
    assert_eq!(s.healthz_bind_address, "0.0.0.0".parse::<IpAddr>().unwrap());
    assert_eq!(s.oom_score_adj, -500);
    assert_eq!(s.cluster_domain, "cluster.local");
    assert_eq!(s.cluster_dns, ["10.96.0.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(s.node_status_update_frequency, secs(20));
    assert_eq!(
        s.node_status_report_frequency,
        secs(20),
        "follows the update frequency"
    );
    assert_eq!(s.node_lease_duration_seconds, 60);
    assert_eq!(s.image_minimum_gc_age, secs(300));
    assert_eq!(s.image_maximum_gc_age, secs(24 * 3600));
    assert_eq!(s.image_gc_high_threshold_percent, 90);
    assert_eq!(s.image_gc_low_threshold_percent, 70);
    assert_eq!(s.volume_stats_agg_period, secs(120));
    assert_eq!(s.cgroup_root, "/custom");
    assert!(s.cgroups_per_qos);
    assert_eq!(s.runtime_request_timeout, secs(60));
    assert_eq!(s.hairpin_mode, "hairpin-veth");
    assert_eq!(s.max_pods, 50);
    assert_eq!(s.pods_per_core, 10);
    assert_eq!(s.pod_cidr.as_deref(), Some("10.88.0.0/16"));
    assert_eq!(s.pod_pids_limit, 4096);
    assert_eq!(s.resolv_conf, Some(PathBuf::from("/run/resolv.conf")));
    assert!(!s.cpu_cfs_quota);
    assert_eq!(s.cpu_cfs_quota_period, Duration::from_millis(50));
    assert!(!s.serialize_image_pulls);
    assert_eq!(s.max_parallel_image_pulls, Some(3));
    assert_eq!(
        s.eviction_hard.len(),
        2,
        "the file's map replaces the defaults"
    );
    assert_eq!(
        s.eviction_hard[&EvictionSignal::MemoryAvailable],
        ThresholdValue::Quantity(parse_quantity("200Mi").unwrap())
    );
    assert_eq!(
        s.eviction_hard[&EvictionSignal::NodeFsAvailable],
        ThresholdValue::Percentage(0.05)
    );
    assert_eq!(
        s.eviction_soft[&EvictionSignal::MemoryAvailable],
        ThresholdValue::Quantity(parse_quantity("500Mi").unwrap())
    );
    assert_eq!(
        s.eviction_soft_grace_period[&EvictionSignal::MemoryAvailable],
        secs(90)
    );
    assert_eq!(s.eviction_pressure_transition_period, secs(60));
    assert_eq!(s.eviction_max_pod_grace_period, 30);
    assert_eq!(s.eviction_minimum_reclaim.len(), 1);
    assert!(!s.fail_swap_on);
    assert_eq!(s.container_log_max_size.value(), 5 << 20);
    assert_eq!(s.container_log_max_files, 3);
    assert_eq!(s.system_reserved["memory"].value(), 256 << 20);
    assert_eq!(s.system_reserved["cpu"].milli_value(), 100);
    assert_eq!(s.kube_reserved["memory"].value(), 128 << 20);
    assert_eq!(s.enforce_node_allocatable, ["pods"]);
    assert!(s.feature_gates.enabled("CustomCPUCFSQuotaPeriod"));
    // The kubelet API's, log rotation's and graceful shutdown's settings take effect and do
    // not warn.
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    assert_eq!(s.shutdown_grace_period, secs(30));
    assert_eq!(s.shutdown_grace_period_critical_pods, secs(10));
    assert!(!s.register_node);
    assert_eq!(
        s.container_runtime_endpoint,
        "unix:///run/custom/containerd.sock"
    );
    assert_eq!(s.image_service_endpoint, "unix:///run/custom/images.sock");
    assert_eq!(s.max_open_files, 4096);
    assert_eq!(s.verbosity, 3);
    assert!(s.file.is_some());
}

#[test]
fn every_v1beta1_field_is_accepted() {
    let s = load(&[&format!(
        "--config={}",
        fixture("every-field.yaml").display()
    )])
    .unwrap();
    // mergeDefaultEvictionSettings: the one signal given plus the three other defaults.
    assert_eq!(s.eviction_hard.len(), 4);
    assert_eq!(s.cgroup_root, "/");
    assert_eq!(s.image_service_endpoint, s.container_runtime_endpoint);
    assert!(s.manifest_url.is_none());
}

#[test]
fn json_config_files_are_accepted() {
    let s = load(&[&format!("--config={}", fixture("full.json").display())]).unwrap();
    assert_eq!(s.read_only_port, 10255);
    assert_eq!(s.image_gc_low_threshold_percent, 60);
    assert_eq!(s.eviction_hard.len(), 1);
}

#[test]
fn flags_override_the_file_and_defaults_fill_the_rest() {
    let cfg = format!("--config={}", fixture("full.yaml").display());
    let s = load(&[
        &cfg,
        "--pod-manifest-path=/override",
        "--read-only-port=0",
        "--sync-frequency=2m",
        "--image-gc-high-threshold=95",
        "--image-gc-low-threshold=90",
        "--eviction-hard=memory.available<1Gi",
        "--eviction-soft=",
        "--register-node",
        "--cgroup-root=/flag",
        "--v=5",
        "--max-pods=0",
        "--manifest-url-header=A:1,B:2",
        "--manifest-url-header=A:3",
    ])
    .unwrap();
    assert_eq!(s.pod_manifest_path, Some(PathBuf::from("/override")));
    assert_eq!(s.read_only_port, 0);
    assert_eq!(s.sync_frequency, secs(120));
    assert_eq!(s.image_gc_high_threshold_percent, 95);
    assert_eq!(s.image_gc_low_threshold_percent, 90);
    assert_eq!(s.eviction_hard.len(), 1);
    assert!(
        s.eviction_soft.is_empty(),
        "an empty flag clears the file's map"
    );
    assert!(s.register_node);
    assert_eq!(s.cgroup_root, "/flag");
    assert_eq!(s.verbosity, 5);
    assert_eq!(s.max_pods, 0, "a zero flag is taken as given");
    assert_eq!(
        s.manifest_url_header,
        [
            ("A".to_string(), "1".to_string()),
            ("B".to_string(), "2".to_string()),
            ("A".to_string(), "3".to_string()),
        ]
    );
    // Not overridden: from the file.
    assert_eq!(s.port, 11250);
    assert_eq!(s.file_check_frequency, secs(5));
    // In neither: defaults.
    assert_eq!(s.housekeeping_interval, secs(1));
    assert_eq!(s.cadvisor_port, 4194);
    assert_eq!(s.root_dir, PathBuf::from("/var/lib/kubelet-rs"));
}

#[test]
fn flags_alone() {
    let s = load(&[
        "--hostname-override=Node-A",
        "--node-ip=10.1.2.3",
        "--node-labels=role=edge,example.com/zone=a",
        "--eviction-soft=memory.available<1Gi",
        "--eviction-soft-grace-period=memory.available=30s",
        "--eviction-minimum-reclaim=imagefs.available=2Gi",
        "--enforce-node-allocatable=",
        "--root-dir=/tmp/k",
        "--container-runtime-endpoint=/run/c.sock",
        "--cluster-dns=10.0.0.10,10.0.0.11",
        "--resolv-conf=",
    ])
    .unwrap();
    assert_eq!(s.node_name, "node-a", "lowercased");
    assert_eq!(s.node_ip, Some("10.1.2.3".parse().unwrap()));
    assert_eq!(s.node_labels["role"], "edge");
    assert_eq!(s.node_labels["example.com/zone"], "a");
    assert_eq!(
        s.eviction_soft_grace_period[&EvictionSignal::MemoryAvailable],
        secs(30)
    );
    assert!(s.enforce_node_allocatable.is_empty());
    assert_eq!(s.cert_dir, PathBuf::from("/tmp/k/pki"));
    assert_eq!(s.container_runtime_endpoint, "unix:///run/c.sock");
    assert_eq!(s.cluster_dns.len(), 2);
    assert_eq!(s.resolv_conf, None);
}

#[test]
fn relative_paths_in_the_file_follow_the_file() {
    let s = load(&[&format!(
        "--config={}",
        fixture("relative/kubelet.yaml").display()
    )])
    .unwrap();
    assert_eq!(s.pod_manifest_path, Some(fixture("relative/manifests")));
}

#[test]
fn the_example_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubelet-config.yaml");
    let s = load(&[&format!("--config={}", path.display())]).unwrap();
    assert_eq!(s.read_only_port, 10255);
    let manifests = s.pod_manifest_path.unwrap();
    assert!(
        manifests.ends_with("examples/manifests"),
        "{}",
        manifests.display()
    );
}

#[test]
fn unknown_field_is_named_with_the_file() {
    let path = fixture("unknown-field.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert_eq!(
        err,
        format!(
            "config file {}: field staticPodPth: unknown field in KubeletConfiguration \
             kubelet.config.k8s.io/v1beta1 (did you mean \"staticPodPath\"?)",
            path.display()
        )
    );
}

#[test]
fn bad_duration_in_the_file() {
    let path = fixture("bad-duration.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert!(
        err.starts_with(&format!(
            "config file {}: field fileCheckFrequency: ",
            path.display()
        )),
        "{err}"
    );
    assert!(err.contains("expected a Go duration string"), "{err}");
}

#[test]
fn bad_duration_flag() {
    let mut argv = vec!["kubelet-rs"];
    argv.push("--file-check-frequency=20");
    let err = Cli::try_parse_from(argv).unwrap_err().to_string();
    assert!(err.contains("--file-check-frequency"), "{err}");
    assert!(err.contains("missing unit in duration \"20\""), "{err}");
}

#[test]
fn bad_quantity_in_a_threshold() {
    let path = fixture("bad-quantity.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert_eq!(
        err,
        format!(
            "field evictionHard in {}: eviction threshold memory.available: invalid quantity \
             \"12Q\": quantities must match the regular expression \
             '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            path.display()
        )
    );
    let err = load_err(&["--eviction-hard=memory.available<12Q"]);
    assert!(
        err.starts_with("flag --eviction-hard: eviction threshold memory.available"),
        "{err}"
    );
}

#[test]
fn bad_threshold_signal() {
    let path = fixture("bad-threshold.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert!(
        err.starts_with(&format!(
            "field evictionHard in {}: unsupported eviction signal \"memory.free\"; supported signals: memory.available",
            path.display()
        )),
        "{err}"
    );
    let err = load_err(&["--eviction-hard=memory.available=1Gi"]);
    assert!(
        err.starts_with(
            "flag --eviction-hard: invalid value \"memory.available=1Gi\": malformed pair"
        ),
        "{err}"
    );
    let err = load_err(&["--eviction-hard=nodefs.available<110%"]);
    assert!(err.contains("must be <= 100%"), "{err}");
}

#[test]
fn soft_threshold_needs_a_grace_period() {
    let path = fixture("soft-without-grace.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert!(
        err.starts_with(&format!(
            "field evictionSoft in {}: grace period must be specified for the soft eviction \
             threshold memory.available",
            path.display()
        )),
        "{err}"
    );
    let err = load_err(&["--eviction-soft=memory.available<1Gi"]);
    assert!(
        err.starts_with("flag --eviction-soft: grace period must be specified"),
        "{err}"
    );
}

#[test]
fn wrong_api_version() {
    let path = fixture("wrong-api-version.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert_eq!(
        err,
        format!(
            "config file {}: field apiVersion: unsupported value \
             \"kubelet.config.k8s.io/v1alpha1\": expected \"kubelet.config.k8s.io/v1beta1\"",
            path.display()
        )
    );
}

#[test]
fn missing_config_file() {
    let err = load_err(&["--config=/nonexistent/kubelet.yaml"]);
    assert!(
        err.starts_with("cannot read config file /nonexistent/kubelet.yaml: "),
        "{err}"
    );
}

#[test]
fn cross_field_checks() {
    let path = fixture("gc-thresholds.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert_eq!(
        err,
        format!(
            "field imageGCLowThresholdPercent in {p}: invalid value 75: must be less than \
             imageGCHighThresholdPercent (70, field imageGCHighThresholdPercent in {p})",
            p = path.display()
        )
    );
    let err = load_err(&["--image-gc-high-threshold=101"]);
    assert_eq!(
        err,
        "flag --image-gc-high-threshold: invalid value 101: must be between 0 and 100, inclusive"
    );
    let err = load_err(&["--image-gc-low-threshold=85"]);
    assert!(err.contains("default imageGCHighThresholdPercent"), "{err}");

    let path = fixture("systemd-driver.yaml");
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert!(
        err.starts_with(&format!("field cgroupDriver in {}: invalid value \"systemd\": the systemd cgroup driver is not supported", path.display())),
        "{err}"
    );
    let err = load_err(&["--cgroup-driver=systemd"]);
    assert!(
        err.starts_with("flag --cgroup-driver: invalid value \"systemd\""),
        "{err}"
    );

    let err = load_err(&["--cgroups-per-qos=false", "--enforce-node-allocatable=pods"]);
    assert!(err.contains("needs cgroupsPerQOS"), "{err}");
    let err = load_err(&["--sync-frequency=0s"]);
    assert_eq!(
        err,
        "flag --sync-frequency: invalid value 0s: must be greater than 0"
    );
    let err = load_err(&["--port=0"]);
    assert!(err.starts_with("flag --port: invalid value 0"), "{err}");
    let err = load_err(&["--container-runtime-endpoint=tcp://1.2.3.4:1"]);
    assert!(err.contains("only unix:// endpoints"), "{err}");
    let err = load_err(&["--node-labels=bad key=x"]);
    assert!(
        err.starts_with("flag --node-labels: invalid value bad key=x: label key"),
        "{err}"
    );
    let err = load_err(&["--hostname-override=Not_Valid"]);
    assert!(
        err.starts_with("flag --hostname-override: invalid value \"not_valid\""),
        "{err}"
    );
    let err = load_err(&["--authorization-mode=RBAC"]);
    assert!(
        err.contains("supported values: AlwaysAllow, Webhook"),
        "{err}"
    );
}

#[test]
fn machine_hostname_is_the_default_node_name() {
    let expected = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_lowercase();
    let valid = kubelet_rs::sources::validation::is_dns1123_subdomain(&expected).is_empty();
    match config::load(&Flags::default()) {
        Ok(s) => assert_eq!(s.node_name, expected),
        // A machine whose hostname is not a valid node name must be told to override it.
        Err(e) => assert!(!valid, "{e}"),
    }
}

#[test]
fn a_flag_given_twice_takes_the_last_value() {
    let s = load(&[
        "--root-dir=/first",
        "--root-dir=/second",
        "--read-only-port=10255",
        "--read-only-port=0",
        "--cluster-dns=10.0.0.10",
        "--cluster-dns=10.0.0.11",
    ])
    .unwrap();
    assert_eq!(s.root_dir, PathBuf::from("/second"));
    assert_eq!(s.read_only_port, 0);
    // --cluster-dns is a list flag: the kubelet accumulates it.
    assert_eq!(
        s.cluster_dns,
        [
            "10.0.0.10".parse::<IpAddr>().unwrap(),
            "10.0.0.11".parse().unwrap()
        ]
    );
    // The binary's own command line: a repeated flag is not a usage error (the run then stops
    // at the missing config file, after parsing).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
        .args([
            "--root-dir",
            "/a",
            "--root-dir",
            "/b",
            "--config",
            "/nonexistent/kubelet.yaml",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot read config file /nonexistent/kubelet.yaml"),
        "{err}"
    );
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("kubelet.yaml");
    std::fs::write(
        &path,
        format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}"),
    )
    .unwrap();
    path
}

#[test]
fn feature_gates_are_checked_as_the_kubelet_does() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "featureGates:\n  NoSuchGate: true\n");
    let cfg = format!("--config={}", path.display());
    assert_eq!(
        load_err(&[&cfg]),
        format!(
            "field featureGates in {}: unrecognized feature gate: NoSuchGate",
            path.display()
        )
    );
    assert_eq!(
        load_err(&["--feature-gates=SidecarContainers=false"]),
        "flag --feature-gates: cannot set feature gate SidecarContainers to false, feature is \
         locked to true"
    );
    // The flag's gates merge over the file's, the flag winning per gate.
    let path = write_config(
        dir.path(),
        "featureGates:\n  NodeSwap: false\n  KubeletPSI: true\n",
    );
    let cfg = format!("--config={}", path.display());
    let s = load(&[&cfg, "--feature-gates=NodeSwap=true"]).unwrap();
    assert!(s.feature_gates.enabled("NodeSwap"));
    assert!(s.feature_gates.enabled("KubeletPSI"));
    assert!(!s.feature_gates.enabled("CustomCPUCFSQuotaPeriod"));
    // GA gates warn, as the kubelet does.
    let s = load(&["--feature-gates=SidecarContainers=true"]).unwrap();
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("Setting GA feature gate SidecarContainers=true")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn cpu_quota_settings() {
    let s = load(&[]).unwrap();
    assert!(s.cpu_cfs_quota);
    assert_eq!(s.cpu_cfs_quota_period, Duration::from_millis(100));
    let s = load(&["--cpu-cfs-quota=false"]).unwrap();
    assert!(!s.cpu_cfs_quota);
    let err = load_err(&["--cpu-cfs-quota-period=50ms"]);
    assert!(
        err.starts_with("flag --cpu-cfs-quota-period: invalid value 50ms: cpuCFSQuotaPeriod")
            && err.contains("requires feature gate CustomCPUCFSQuotaPeriod"),
        "{err}"
    );
    let s = load(&[
        "--cpu-cfs-quota-period=50ms",
        "--feature-gates=CustomCPUCFSQuotaPeriod=true",
    ])
    .unwrap();
    assert_eq!(s.cpu_cfs_quota_period, Duration::from_millis(50));
    let err = load_err(&[
        "--cpu-cfs-quota-period=2s",
        "--feature-gates=CustomCPUCFSQuotaPeriod=true",
    ]);
    assert!(err.contains("must be between 1ms and 1s"), "{err}");
}

#[test]
fn pods_per_core_caps_max_pods() {
    let s = load(&["--pods-per-core=10"]).unwrap();
    assert_eq!(s.effective_max_pods(4), 40);
    assert_eq!(s.effective_max_pods(64), 110, "maxPods stays the cap");
    let s = load(&["--pods-per-core=10", "--max-pods=20"]).unwrap();
    assert_eq!(s.effective_max_pods(4), 20);
    let s = load(&[]).unwrap();
    assert_eq!(s.effective_max_pods(4), 110, "0 is no per-core limit");
}

#[test]
fn process_settings() {
    let s = load(&[]).unwrap();
    assert!(s.fail_swap_on);
    assert_eq!(s.max_open_files, 1_000_000);
    assert_eq!(s.oom_score_adj, -999);
    let s = load(&["--fail-swap-on=false", "--max-open-files=4096"]).unwrap();
    assert!(!s.fail_swap_on);
    assert_eq!(s.max_open_files, 4096);
}

#[test]
fn unsupported_cgroup_settings_are_refused() {
    let err = load_err(&["--cgroups-per-qos=false", "--enforce-node-allocatable="]);
    assert_eq!(
        err,
        "flag --cgroups-per-qos: invalid value false: not supported by kubelet-rs: pods always \
         get the kubelet's QoS cgroups (kubepods/burstable, kubepods/besteffort)"
    );
    // The reserved levels need their cgroup named (the kubelet's validation).
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "enforceNodeAllocatable: [pods, kube-reserved]\n",
    );
    let err = load_err(&[&format!("--config={}", path.display())]);
    assert!(err.contains("needs kubeReservedCgroup to be set"), "{err}");
    let path = write_config(
        dir.path(),
        "enforceNodeAllocatable: [pods, system-reserved]\nsystemReservedCgroup: /system\n",
    );
    let s = load(&[&format!("--config={}", path.display())]).unwrap();
    assert_eq!(s.enforce_node_allocatable, ["pods", "system-reserved"]);
}

#[test]
fn crash_loop_backoff_cap_needs_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(
        dir.path(),
        "crashLoopBackOff:\n  maxContainerRestartPeriod: 30s\n",
    );
    let cfg = format!("--config={}", path.display());
    let err = load_err(&[&cfg]);
    assert!(
        err.contains("FeatureGate KubeletCrashLoopBackOffMax not enabled"),
        "{err}"
    );
    let s = load(&[&cfg, "--feature-gates=KubeletCrashLoopBackOffMax=true"]).unwrap();
    assert_eq!(s.crash_loop_backoff, (secs(10), secs(30)));
    let s = load(&["--feature-gates=ReduceDefaultCrashLoopBackOffDecay=true"]).unwrap();
    assert_eq!(s.crash_loop_backoff, (secs(1), secs(60)));
    assert_eq!(load(&[]).unwrap().crash_loop_backoff, (secs(10), secs(300)));
}

#[test]
fn image_maximum_gc_age_needs_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "imageMaximumGCAge: 24h\n");
    let cfg = format!("--config={}", path.display());
    assert_eq!(load(&[&cfg]).unwrap().image_maximum_gc_age, secs(24 * 3600));
    let err = load_err(&[&cfg, "--feature-gates=ImageMaximumGCAge=false"]);
    assert!(
        err.ends_with("ImageMaximumGCAge feature gate is required for Kubelet configuration option imageMaximumGCAge"),
        "{err}"
    );
}
