//! What each KubeletConfiguration field and flag does in kubelet-rs, and the checks that keep
//! a setting from being accepted and then ignored.
//!
//! Every field of `kubelet.config.k8s.io/v1beta1` is parsed (a file written for the Go kubelet
//! loads or fails with a message naming the field). A field either takes effect, or is refused
//! at start with a message saying kubelet-rs does not support that value, or — for the kubelet
//! API's TLS and profiling tuning — is accepted with a warning the agent logs at start. A value
//! kubelet-rs behaves as by default is always accepted. Settings that matter only with an API
//! server have no effect in standalone mode, as in the kubelet.
//!
//! | setting (file field · flag) | in kubelet-rs |
//! |---|---|
//! | `--config` | the file itself: strict decoding, relative paths from its directory |
//! | `apiVersion`, `kind` | must be `kubelet.config.k8s.io/v1beta1`, `KubeletConfiguration` |
//! | `staticPodPath` · `--pod-manifest-path`, `fileCheckFrequency` · `--file-check-frequency` | static pod source (inotify plus the periodic recheck) |
//! | `staticPodURL` · `--manifest-url`, `staticPodURLHeader` · `--manifest-url-header`, `httpCheckFrequency` · `--http-check-frequency` | the manifest URL source (a v1 Pod or PodList, YAML or JSON, read every period with the headers; a bad read keeps the last good set) |
//! | `syncFrequency` · `--sync-frequency` | the longest time between two syncs of a pod |
//! | `podLogsDir` | container log directories |
//! | `--root-dir`, `--hostname-override`, `--node-ip`, `--pod-infra-container-image`, `--cadvisor-port`, `--housekeeping-interval`, `--v` · `logging.verbosity` | as named |
//! | `--kubeconfig` | API-server mode: the client (`src/apiclient`); a missing or malformed file fails at start with one error naming it |
//! | `--bootstrap-kubeconfig`, `--cert-dir` | TLS bootstrap when the `--kubeconfig` file does not exist: a key and CSR, the signed client certificate under the cert dir (`kubelet-client-current.pem`), the kubeconfig written (`src/apiclient/bootstrap.rs`) |
//! | `kubeAPIQPS` · `--kube-api-qps`, `kubeAPIBurst` · `--kube-api-burst` | the client's token-bucket rate limit (50/100; 0 QPS: none) |
//! | `registerNode` · `--register-node`, `--node-labels`, `registerWithTaints` · `--register-with-taints`, `--node-ip` | node registration with these labels, taints and InternalIP (`src/nodestatus`) |
//! | `nodeStatusUpdateFrequency` · `--node-status-update-frequency`, `nodeStatusReportFrequency`, `nodeStatusMaxImages` | node status computed every update period, PATCHed on change or every report period, with at most that many images |
//! | `nodeLeaseDurationSeconds` | the node Lease's duration; renewed every quarter of it |
//! | `eventRecordQPS`, `eventBurst` | the rate limit of events written to the API server (`src/apievents.rs`) |
//! | `providerID`, `contentType`, `enableControllerAttachDetach`, `configMapAndSecretChangeDetectionStrategy` | API-server mode only: validated, no effect standalone (as in the kubelet) |
//! | `containerRuntimeEndpoint` · `--container-runtime-endpoint`, `imageServiceEndpoint` · `--image-service-endpoint` | the CRI runtime and image services (unix sockets) |
//! | `runtimeRequestTimeout` · `--runtime-request-timeout` | deadline of every CRI call but pulls |
//! | `serializeImagePulls` · `--serialize-image-pulls`, `maxParallelImagePulls` | one pull at a time, or at most N at once |
//! | `registryPullQPS`, `registryBurst` | pulls are not rate-limited: `registryPullQPS` other than 0 is refused |
//! | `imagePullCredentialsVerificationPolicy`, `preloadedImagesVerificationAllowlist` | refused when set (KubeletEnsureSecretPulledImages is not implemented) |
//! | `imageGCHighThresholdPercent` · `--image-gc-high-threshold`, `imageGCLowThresholdPercent` · `--image-gc-low-threshold`, `imageMinimumGCAge` · `--minimum-image-ttl-duration`, `imageMaximumGCAge` | image GC |
//! | `evictionHard` · `--eviction-hard`, `evictionSoft` · `--eviction-soft`, `evictionSoftGracePeriod` · `--eviction-soft-grace-period`, `evictionMinimumReclaim` · `--eviction-minimum-reclaim`, `evictionPressureTransitionPeriod` · `--eviction-pressure-transition-period`, `evictionMaxPodGracePeriod` · `--eviction-max-pod-grace-period`, `mergeDefaultEvictionSettings`, `localStorageCapacityIsolation` | the eviction manager |
//! | `kernelMemcgNotification` | memcg threshold notifications for eviction; kubelet-rs defaults it to true (its fast path), false leaves the periodic check alone |
//! | `maxPods` · `--max-pods`, `podsPerCore` · `--pods-per-core` | admission: at most min(maxPods, podsPerCore × cores) pods |
//! | `podPidsLimit` · `--pod-max-pids` | `pids.max` of each pod cgroup |
//! | `cgroupRoot` · `--cgroup-root`, `cgroupDriver` · `--cgroup-driver` | the pod cgroup tree; the systemd driver is refused |
//! | `cgroupsPerQOS` · `--cgroups-per-qos` | false is refused: pods always get QoS cgroups |
//! | `enforceNodeAllocatable` · `--enforce-node-allocatable`, `systemReserved`, `kubeReserved` | node allocatable on `kubepods` (the `pods` level) and the eviction manager's allocatable thresholds; the `system-reserved`/`kube-reserved` levels put the reservation on `systemReservedCgroup`/`kubeReservedCgroup` (which must exist), the `-compressible` levels only their CPU shares (`src/cm`) |
//! | `cpuCFSQuota` · `--cpu-cfs-quota`, `cpuCFSQuotaPeriod` · `--cpu-cfs-quota-period` | CPU limits as CFS quota (or none) with that period, on containers and pod cgroups; a period other than 100 ms needs the CustomCPUCFSQuotaPeriod gate |
//! | `failSwapOn` · `--fail-swap-on` | start refused while `/proc/swaps` lists a device |
//! | `memorySwap.swapBehavior` | `NoSwap` (containers get no swap: containerd sets swap = memory limit); `LimitedSwap` is refused |
//! | `maxOpenFiles` · `--max-open-files` | the agent's `RLIMIT_NOFILE` at start (a failure is logged, as the kubelet does) |
//! | `oomScoreAdj` | the agent's `oom_score_adj` at start (a failure is logged, as the kubelet does) |
//! | `protectKernelDefaults` | true: start refused when the kernel tunables differ from the kubelet's; false: kubelet-rs leaves them alone (the kubelet would set them) |
//! | `failCgroupV1` | true: start refused on a cgroup v1 or hybrid host |
//! | `featureGates` · `--feature-gates` | checked against the v1.33 gates ([`super::features`]); CustomCPUCFSQuotaPeriod, ImageMaximumGCAge, KubeletCrashLoopBackOffMax and ReduceDefaultCrashLoopBackOffDecay change kubelet-rs's behaviour, the others nothing |
//! | `crashLoopBackOff.maxContainerRestartPeriod` | the crash-loop backoff's cap (needs KubeletCrashLoopBackOffMax) |
//! | `clusterDNS` · `--cluster-dns`, `clusterDomain` · `--cluster-domain`, `resolvConf` · `--resolv-conf` | each pod's resolv.conf by `dnsPolicy` (ClusterFirst, ClusterFirstWithHostNet, Default, None with `dnsConfig`), through the sandbox's CRI DNS config; `''` disables the host's DNS |
//! | `podCIDR` | given to the runtime (CRI `UpdateRuntimeConfig`) at start |
//! | `hairpinMode` | validated; no effect, as in the kubelet with a CRI runtime (the CNI configuration decides) |
//! | `seccompDefault` | containers and sandboxes without a profile run `RuntimeDefault` |
//! | `volumeStatsAggPeriod` | how long a measured volume's usage is reused |
//! | `podHousekeepingPeriod` | the period of housekeeping (tearing down pods no source claims) |
//! | `healthzPort` · `--healthz-port`, `healthzBindAddress` · `--healthz-bind-address`, `readOnlyPort` · `--read-only-port`, `address` · `--address` | the healthz and read-only servers (the address also serves the future kubelet API) |
//! | `enableServer`, `port` · `--port`, `tlsCertFile` · `--tls-cert-file`, `tlsPrivateKeyFile` · `--tls-private-key-file`, `tlsMinVersion` (VersionTLS12/13), `serverTLSBootstrap`, `--cert-dir`, `authentication.*` · `--anonymous-auth`, `--client-ca-file`, `--authentication-token-webhook`, `authorization.*` · `--authorization-mode`, `enableDebuggingHandlers`, `enableSystemLogHandler` | the authenticated kubelet API (10250) |
//! | `streamingConnectionIdleTimeout` | shown in `/configz`; as with the kubelet on a CRI runtime, the runtime's streaming server applies its own idle timeout (containerd's `stream_idle_timeout`) to the exec, attach and port-forward sessions the kubelet proxies |
//! | `tlsCipherSuites`, `tlsCurvePreferences`, `rotateCertificates`, `enableContentionProfiling`, `enableProfilingHandler`, `enableDebugFlagsHandler`, `enableSystemLogQuery` | accepted; a warning at start says they have no effect (rustls' modern suites and curves are always used) |
//! | `containerLogMaxSize`, `containerLogMaxFiles`, `containerLogMaxWorkers`, `containerLogMonitorInterval` | container log rotation (`logs::rotation`) |
//! | `shutdownGracePeriod`, `shutdownGracePeriodCriticalPods`, `shutdownGracePeriodByPodPriority` | graceful node shutdown through systemd-logind's delay inhibitor (`nodeshutdown`); without logind the agent logs once that it is unavailable, as the kubelet does |
//! | `kubeletCgroups`, `systemCgroups`, `cpuManagerPolicy` (static), `cpuManagerPolicyOptions`, `reservedSystemCPUs`, `memoryManagerPolicy` (Static), `reservedMemory`, `topologyManagerPolicy` (other than none), `topologyManagerPolicyOptions`, `qosReserved`, `runOnce`, `singleProcessOOMKill` (false), `makeIPTablesUtilChains` (true), `volumePluginDir` (other than the default), `logging.format` (json), `logging.vmodule`, `tracing` (a sampling rate), `userNamespaces.idsPerPod` (other than 65536), `memoryReservationPolicy` (other than None) | refused at start with those values: not supported by kubelet-rs |
//! | `cpuManagerReconcilePeriod`, `draManagerReconcilePeriod`, `topologyManagerScope`, `memoryThrottlingFactor`, `iptablesMasqueradeBit`, `iptablesDropBit`, `logging.flushFrequency`, `logging.options`, `showHiddenMetricsForVersion` | validated; they only matter with a refused setting or a disabled gate (the iptables bits are unused by the v1.33 kubelet too; kubelet-rs hides no metrics) |
//! | `allowedUnsafeSysctls` | sysctls in a pod's security context are passed to the runtime as given; kubelet-rs does not refuse unsafe ones |

use std::time::Duration;

use super::file::KubeletConfiguration;
use super::{in_range, invalid, key, one_of, ConfigError, Origin, Resolver};

/// The kubelet's defaults for the fields whose default value kubelet-rs also honors.
const DEFAULT_VOLUME_PLUGIN_DIR: &str = "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/";
const DEFAULT_IDS_PER_POD: i64 = 65536;

/// A field value kubelet-rs refuses: the field, when it is refused (returning the offending
/// value), and why.
struct Refusal {
    field: &'static str,
    refused: fn(&KubeletConfiguration) -> Option<String>,
    reason: &'static str,
}

fn non_empty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| format!("{v:?}"))
}

fn non_empty_map<V>(m: &Option<std::collections::BTreeMap<String, V>>) -> Option<String> {
    m.as_ref()
        .filter(|m| !m.is_empty())
        .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
}

fn non_empty_list<T: std::fmt::Debug>(l: &Option<Vec<T>>) -> Option<String> {
    l.as_ref()
        .filter(|l| !l.is_empty())
        .map(|l| format!("{l:?}"))
}

/// Values kubelet-rs cannot honor.
const REFUSALS: &[Refusal] = &[
    Refusal {
        field: "registryPullQPS",
        refused: |c| {
            c.registry_pull_qps
                .filter(|&q| q != 0)
                .map(|q| q.to_string())
        },
        reason: "image pulls are not rate-limited by kubelet-rs; set 0 (no limit)",
    },
    Refusal {
        field: "imagePullCredentialsVerificationPolicy",
        refused: |c| non_empty(&c.image_pull_credentials_verification_policy),
        reason: "verifying image pull credentials (KubeletEnsureSecretPulledImages) is not \
                 supported by kubelet-rs",
    },
    Refusal {
        field: "preloadedImagesVerificationAllowlist",
        refused: |c| non_empty_list(&c.preloaded_images_verification_allowlist),
        reason: "verifying image pull credentials (KubeletEnsureSecretPulledImages) is not \
                 supported by kubelet-rs",
    },
    Refusal {
        field: "kubeletCgroups",
        refused: |c| non_empty(&c.kubelet_cgroups),
        reason: "moving the agent into its own cgroup is not supported by kubelet-rs",
    },
    Refusal {
        field: "systemCgroups",
        refused: |c| non_empty(&c.system_cgroups),
        reason: "moving system processes into a cgroup is not supported by kubelet-rs",
    },
    Refusal {
        field: "cpuManagerPolicy",
        refused: |c| non_empty(&c.cpu_manager_policy).filter(|p| p != "\"none\""),
        reason: "the CPU manager is not supported by kubelet-rs; only none",
    },
    Refusal {
        field: "cpuManagerPolicyOptions",
        refused: |c| non_empty_map(&c.cpu_manager_policy_options),
        reason: "the CPU manager is not supported by kubelet-rs",
    },
    Refusal {
        field: "reservedSystemCPUs",
        refused: |c| non_empty(&c.reserved_system_cpus),
        reason: "the CPU manager is not supported by kubelet-rs",
    },
    Refusal {
        field: "memoryManagerPolicy",
        refused: |c| non_empty(&c.memory_manager_policy).filter(|p| p != "\"None\""),
        reason: "the memory manager is not supported by kubelet-rs; only None",
    },
    Refusal {
        field: "reservedMemory",
        refused: |c| non_empty_list(&c.reserved_memory),
        reason: "the memory manager is not supported by kubelet-rs",
    },
    Refusal {
        field: "topologyManagerPolicy",
        refused: |c| non_empty(&c.topology_manager_policy).filter(|p| p != "\"none\""),
        reason: "the topology manager is not supported by kubelet-rs; only none",
    },
    Refusal {
        field: "topologyManagerPolicyOptions",
        refused: |c| non_empty_map(&c.topology_manager_policy_options),
        reason: "the topology manager is not supported by kubelet-rs",
    },
    Refusal {
        field: "qosReserved",
        refused: |c| non_empty_map(&c.qos_reserved),
        reason: "QoS-level memory reservation (QOSReserved) is not supported by kubelet-rs",
    },
    Refusal {
        field: "runOnce",
        refused: |c| c.run_once.filter(|&b| b).map(|b| b.to_string()),
        reason: "run-once mode is not supported by kubelet-rs",
    },
    Refusal {
        field: "singleProcessOOMKill",
        refused: |c| {
            c.single_process_oom_kill
                .filter(|&b| !b)
                .map(|b| b.to_string())
        },
        reason: "killing a whole container on OOM (cgroup v2 memory.oom.group) is not \
                 supported by kubelet-rs yet: the kernel kills single processes",
    },
    Refusal {
        field: "makeIPTablesUtilChains",
        refused: |c| {
            c.make_iptables_util_chains
                .filter(|&b| b)
                .map(|b| b.to_string())
        },
        reason: "kubelet-rs creates no iptables chains; set false",
    },
    Refusal {
        field: "memorySwap.swapBehavior",
        refused: |c| {
            c.memory_swap
                .as_ref()
                .and_then(|m| non_empty(&m.swap_behavior))
                .filter(|b| b != "\"NoSwap\"")
        },
        reason: "only NoSwap is supported by kubelet-rs",
    },
    Refusal {
        field: "volumePluginDir",
        refused: |c| {
            non_empty(&c.volume_plugin_dir).filter(|d| {
                d.trim_matches('"').trim_end_matches('/')
                    != DEFAULT_VOLUME_PLUGIN_DIR.trim_end_matches('/')
            })
        },
        reason: "FlexVolume plugins are not supported by kubelet-rs",
    },
    Refusal {
        field: "logging.format",
        refused: |c| {
            c.logging
                .as_ref()
                .and_then(|l| non_empty(&l.format))
                .filter(|f| f != "\"text\"")
        },
        reason: "kubelet-rs logs text only",
    },
    Refusal {
        field: "logging.vmodule",
        refused: |c| c.logging.as_ref().and_then(|l| non_empty_list(&l.vmodule)),
        reason: "per-file verbosity is not supported by kubelet-rs; use RUST_LOG",
    },
    Refusal {
        field: "tracing.samplingRatePerMillion",
        refused: |c| {
            c.tracing
                .as_ref()
                .and_then(|t| t.sampling_rate_per_million)
                .filter(|&r| r > 0)
                .map(|r| r.to_string())
        },
        reason: "OpenTelemetry tracing is not supported by kubelet-rs",
    },
    Refusal {
        field: "userNamespaces.idsPerPod",
        refused: |c| {
            c.user_namespaces
                .as_ref()
                .and_then(|u| u.ids_per_pod)
                .filter(|&n| n != DEFAULT_IDS_PER_POD)
                .map(|n| n.to_string())
        },
        reason: "user namespaces for pods are not supported by kubelet-rs",
    },
    Refusal {
        field: "memoryReservationPolicy",
        refused: |c| non_empty(&c.memory_reservation_policy).filter(|p| p != "\"None\""),
        reason: "memory QoS is not supported by kubelet-rs",
    },
];

/// A file field and whether it is set to something kubelet-rs should report.
type FieldCheck = (&'static str, fn(&KubeletConfiguration) -> bool);

/// Kubelet API settings (file fields) kubelet-rs accepts without acting on them.
const API_FIELDS: &[FieldCheck] = &[
    ("tlsCipherSuites", |c| {
        non_empty_list(&c.tls_cipher_suites).is_some()
    }),
    ("tlsCurvePreferences", |c| {
        non_empty_list(&c.tls_curve_preferences).is_some()
    }),
    ("rotateCertificates", |c| {
        c.rotate_certificates == Some(true)
    }),
    ("enableContentionProfiling", |c| {
        c.enable_contention_profiling == Some(true)
    }),
    ("enableProfilingHandler", |c| {
        c.enable_profiling_handler == Some(true)
    }),
    ("enableDebugFlagsHandler", |c| {
        c.enable_debug_flags_handler == Some(true)
    }),
    ("enableSystemLogQuery", |c| {
        c.enable_system_log_query == Some(true)
    }),
];

/// Refuses what kubelet-rs cannot honor and returns the warnings for what it accepts without
/// effect yet. Also checks ranges and enumerations of fields kubelet-rs does not act on, so a
/// file the kubelet would refuse is refused here too.
pub(super) fn check(r: &Resolver<'_>) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    let Some(c) = r.cfg() else {
        return Ok(warnings);
    };
    let field = |name: &'static str| r.describe(key(name, ""), Origin::File);
    for refusal in REFUSALS {
        if let Some(value) = (refusal.refused)(c) {
            return Err(invalid(&field(refusal.field), value, refusal.reason));
        }
    }
    push_warning(&mut warnings, &given(r, c, API_FIELDS), API_WARNING);
    check_ranges(r, c)?;
    Ok(warnings)
}

const API_WARNING: &str = "kubelet-rs serves the kubelet API with rustls' modern cipher suites \
                           and curves, a certificate that is reread only at start, and no \
                           profiling, debug-flag or log-query handlers, so these settings have \
                           no effect";

fn given(r: &Resolver<'_>, c: &KubeletConfiguration, fields: &[FieldCheck]) -> Vec<String> {
    fields
        .iter()
        .filter(|(_, set)| set(c))
        .map(|(name, _)| r.describe(key(name, ""), Origin::File))
        .collect()
}

fn push_warning(warnings: &mut Vec<String>, settings: &[String], what: &str) {
    if !settings.is_empty() {
        warnings.push(format!("{what}: {}", settings.join(", ")));
    }
}

/// The kubelet's checks of fields kubelet-rs does not act on.
fn check_ranges(r: &Resolver<'_>, c: &KubeletConfiguration) -> Result<(), ConfigError> {
    let s = |field: &'static str| r.describe(key(field, ""), Origin::File);
    for (field, v) in [
        ("registryPullQPS", c.registry_pull_qps),
        ("registryBurst", c.registry_burst),
        ("eventRecordQPS", c.event_record_qps),
        ("eventBurst", c.event_burst),
        ("kubeAPIQPS", c.kube_api_qps),
        ("kubeAPIBurst", c.kube_api_burst),
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
    for (field, bit) in [
        ("iptablesMasqueradeBit", c.iptables_masquerade_bit),
        ("iptablesDropBit", c.iptables_drop_bit),
    ] {
        if let Some(b) = bit {
            in_range(&s(field), b.into(), 0, 31)?;
        }
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
    if let Some(v) = c
        .show_hidden_metrics_for_version
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        let previous = previous_minor();
        if v != previous {
            return Err(invalid(
                &s("showHiddenMetricsForVersion"),
                format!("{v:?}"),
                format!(
                    "must be omitted or have the value '{previous}'. Only the previous minor \
                     version is allowed"
                ),
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

/// `1.32` for v1.33.
fn previous_minor() -> String {
    let v = super::KUBERNETES_VERSION.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("1");
    let minor: u32 = parts.next().and_then(|m| m.parse().ok()).unwrap_or(1);
    format!("{major}.{}", minor.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use crate::config::{file::parse_config, resolve, Flags};
    use std::path::Path;

    fn load(body: &str) -> Result<crate::config::KubeletSettings, String> {
        let text = format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{body}"
        );
        let c = parse_config(&text, Path::new("/k.yaml")).unwrap();
        resolve(&Flags::default(), Some((Path::new("/k.yaml"), &c)), "node")
            .map_err(|e| e.to_string())
    }

    #[test]
    fn values_kubelet_rs_cannot_honor_are_refused() {
        for (body, expected) in [
            ("registryPullQPS: 5\n", "field registryPullQPS in /k.yaml: invalid value 5: image pulls are not rate-limited"),
            ("cpuManagerPolicy: static\n", "field cpuManagerPolicy in /k.yaml: invalid value \"static\": the CPU manager"),
            ("topologyManagerPolicy: restricted\n", "field topologyManagerPolicy in /k.yaml"),
            ("runOnce: true\n", "field runOnce in /k.yaml: invalid value true: run-once mode"),
            ("memorySwap:\n  swapBehavior: LimitedSwap\n", "only NoSwap"),
            ("logging:\n  format: json\n", "kubelet-rs logs text only"),
            ("volumePluginDir: /opt/flex\n", "FlexVolume"),
            ("kubeletCgroups: /kubelet\n", "field kubeletCgroups"),
            ("makeIPTablesUtilChains: true\n", "creates no iptables chains"),
        ] {
            let err = load(body).unwrap_err();
            assert!(err.starts_with(expected) || err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn values_kubelet_rs_behaves_as_are_accepted() {
        let s = load(
            "registryPullQPS: 0\ncpuManagerPolicy: none\ntopologyManagerPolicy: none\n\
             runOnce: false\nmemorySwap:\n  swapBehavior: NoSwap\nlogging:\n  format: text\n\
             volumePluginDir: /usr/libexec/kubernetes/kubelet-plugins/volume/exec\n\
             makeIPTablesUtilChains: false\nsingleProcessOOMKill: true\n\
             showHiddenMetricsForVersion: \"1.32\"\n",
        )
        .unwrap();
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        let err = load("showHiddenMetricsForVersion: \"1.30\"\n").unwrap_err();
        assert!(
            err.contains("must be omitted or have the value '1.32'"),
            "{err}"
        );
    }

    #[test]
    fn api_settings_warn_and_shutdown_settings_do_not() {
        let s = load(
            "tlsCertFile: /c.crt\ntlsPrivateKeyFile: /c.key\nauthentication:\n  anonymous:\n    \
             enabled: false\ncontainerLogMaxSize: 50Mi\nshutdownGracePeriod: 30s\n\
             enableDebuggingHandlers: false\ntlsCipherSuites: [TLS_AES_128_GCM_SHA256]\n",
        )
        .unwrap();
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        // The kubelet API is served: its settings take effect and do not warn; the TLS tuning
        // rustls decides does.
        assert!(s.warnings[0].starts_with("kubelet-rs serves the kubelet API with rustls"));
        assert!(s.warnings[0].contains("field tlsCipherSuites in /k.yaml"));
        assert!(!s.warnings[0].contains("tlsCertFile"), "{:?}", s.warnings);
        assert!(
            !s.warnings[0].contains("authentication"),
            "{:?}",
            s.warnings
        );
        assert!(!s.enable_debugging_handlers);
        // Log rotation and graceful node shutdown are implemented: their settings do not warn.
        assert!(
            !s.warnings[0].contains("shutdownGracePeriod"),
            "{:?}",
            s.warnings
        );
        assert_eq!(s.shutdown_grace_period, std::time::Duration::from_secs(30));
    }

    #[test]
    fn shutdown_settings_are_checked_as_the_kubelet_checks_them() {
        let s = load(
            "shutdownGracePeriodByPodPriority:\n- priority: 100000\n  shutdownGracePeriodSeconds: 10\n\
             - priority: 0\n  shutdownGracePeriodSeconds: 20\n",
        )
        .unwrap();
        assert_eq!(
            s.shutdown_grace_period_by_pod_priority,
            vec![(100000, 10), (0, 20)]
        );
        let err = load(
            "shutdownGracePeriod: 30s\nshutdownGracePeriodByPodPriority:\n- priority: 0\n  \
             shutdownGracePeriodSeconds: 20\n",
        )
        .unwrap_err();
        assert!(
            err.contains("field shutdownGracePeriodByPodPriority in /k.yaml")
                && err.contains("Cannot specify both shutdownGracePeriodByPodPriority and shutdownGracePeriod at the same time"),
            "{err}"
        );
        let err = load(
            "featureGates:\n  GracefulNodeShutdownBasedOnPodPriority: false\n\
             shutdownGracePeriodByPodPriority:\n- priority: 0\n  shutdownGracePeriodSeconds: 20\n",
        )
        .unwrap_err();
        assert!(
            err.contains("requires feature gate GracefulNodeShutdownBasedOnPodPriority"),
            "{err}"
        );
        let err = load("featureGates:\n  GracefulNodeShutdown: false\nshutdownGracePeriod: 30s\n")
            .unwrap_err();
        assert!(
            err.contains("requires feature gate GracefulNodeShutdown"),
            "{err}"
        );
        let err = load("shutdownGracePeriod: 500ms\n").unwrap_err();
        assert!(
            err.contains("field shutdownGracePeriod in /k.yaml")
                && err.contains("must be either zero or otherwise >= 1 sec"),
            "{err}"
        );
        let err = load(
            "shutdownGracePeriodByPodPriority:\n- priority: 0\n  shutdownGracePeriodSeconds: -1\n",
        )
        .unwrap_err();
        assert!(
            err.contains("entry 0") && err.contains("must not be negative"),
            "{err}"
        );
    }
}
