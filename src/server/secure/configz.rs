//! `/configz`: the configuration the agent runs with, as the kubelet's
//! `{"kubeletconfig": {...}}` — the resolved settings (flags over file over defaults) under
//! their v1beta1 KubeletConfiguration field names, durations in Go's format.

use serde_json::{json, Map, Value};

use crate::config::{format_go_duration as d, AuthorizationMode, KubeletSettings};

fn thresholds(t: &crate::config::EvictionThresholds) -> Value {
    Value::Object(
        t.iter()
            .map(|(s, v)| (s.as_str().to_string(), Value::String(v.to_string())))
            .collect::<Map<_, _>>(),
    )
}

fn path(p: &Option<std::path::PathBuf>) -> Value {
    p.as_ref()
        .map(|p| Value::String(p.display().to_string()))
        .unwrap_or(Value::Null)
}

/// The `/configz` body for `s`.
pub fn body(s: &KubeletSettings) -> Value {
    let mut c = json!({
        "enableServer": s.enable_server,
        "staticPodPath": path(&s.pod_manifest_path),
        "podLogsDir": s.pod_logs_dir.display().to_string(),
        "syncFrequency": d(s.sync_frequency),
        "fileCheckFrequency": d(s.file_check_frequency),
        "httpCheckFrequency": d(s.http_check_frequency),
        "staticPodURL": s.manifest_url,
        "address": s.address.to_string(),
        "port": s.port,
        "readOnlyPort": s.read_only_port,
        "tlsCertFile": path(&s.tls_cert_file),
        "tlsPrivateKeyFile": path(&s.tls_private_key_file),
        "serverTLSBootstrap": s.server_tls_bootstrap,
        "authentication": {
            "x509": {"clientCAFile": path(&s.authentication.client_ca_file)},
            "webhook": {
                "enabled": s.authentication.webhook,
                "cacheTTL": d(s.authentication.webhook_cache_ttl),
            },
            "anonymous": {"enabled": s.authentication.anonymous},
        },
        "authorization": {
            "mode": match s.authorization.mode {
                AuthorizationMode::AlwaysAllow => "AlwaysAllow",
                AuthorizationMode::Webhook => "Webhook",
            },
            "webhook": {
                "cacheAuthorizedTTL": d(s.authorization.cache_authorized_ttl),
                "cacheUnauthorizedTTL": d(s.authorization.cache_unauthorized_ttl),
            },
        },
        "enableDebuggingHandlers": s.enable_debugging_handlers,
        "enableSystemLogHandler": s.enable_system_log_handler,
        "healthzPort": s.healthz_port,
        "healthzBindAddress": s.healthz_bind_address.to_string(),
        "clusterDomain": s.cluster_domain,
        "clusterDNS": s.cluster_dns.iter().map(|ip| ip.to_string()).collect::<Vec<_>>(),
        "streamingConnectionIdleTimeout": d(s.streaming_connection_idle_timeout),
        "nodeStatusUpdateFrequency": d(s.node_status_update_frequency),
        "nodeStatusReportFrequency": d(s.node_status_report_frequency),
        "nodeLeaseDurationSeconds": s.node_lease_duration_seconds,
        "imageMinimumGCAge": d(s.image_minimum_gc_age),
        "imageMaximumGCAge": d(s.image_maximum_gc_age),
        "imageGCHighThresholdPercent": s.image_gc_high_threshold_percent,
        "imageGCLowThresholdPercent": s.image_gc_low_threshold_percent,
        "volumeStatsAggPeriod": d(s.volume_stats_agg_period),
    });
    let more = json!({
        "cgroupsPerQOS": s.cgroups_per_qos,
        "cgroupRoot": s.cgroup_root,
        "cgroupDriver": "cgroupfs",
        "cpuCFSQuota": s.cpu_cfs_quota,
        "cpuCFSQuotaPeriod": d(s.cpu_cfs_quota_period),
        "maxOpenFiles": s.max_open_files,
        "maxPods": s.max_pods,
        "podsPerCore": s.pods_per_core,
        "podPidsLimit": s.pod_pids_limit,
        "kubeAPIQPS": s.api_node.kube_api_qps,
        "kubeAPIBurst": s.api_node.kube_api_burst,
        "eventRecordQPS": s.api_node.event_record_qps,
        "eventBurst": s.api_node.event_burst,
        "evictionHard": thresholds(&s.eviction_hard),
        "evictionSoft": thresholds(&s.eviction_soft),
        "evictionSoftGracePeriod": Value::Object(
            s.eviction_soft_grace_period
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), Value::String(d(*v))))
                .collect(),
        ),
        "evictionPressureTransitionPeriod": d(s.eviction_pressure_transition_period),
        "evictionMaxPodGracePeriod": s.eviction_max_pod_grace_period,
        "evictionMinimumReclaim": thresholds(&s.eviction_minimum_reclaim),
        "failSwapOn": s.fail_swap_on,
        "oomScoreAdj": s.oom_score_adj,
        "protectKernelDefaults": s.protect_kernel_defaults,
        "failCgroupV1": s.fail_cgroup_v1,
        "containerLogMaxSize": s.container_log_max_size.to_string(),
        "containerLogMaxFiles": s.container_log_max_files,
        "containerLogMaxWorkers": s.container_log_max_workers,
        "containerLogMonitorInterval": d(s.container_log_monitor_interval),
        "shutdownGracePeriod": d(s.shutdown_grace_period),
        "shutdownGracePeriodCriticalPods": d(s.shutdown_grace_period_critical_pods),
        "shutdownGracePeriodByPodPriority": (!s.shutdown_grace_period_by_pod_priority.is_empty()).then(|| {
            s.shutdown_grace_period_by_pod_priority
                .iter()
                .map(|(p, secs)| json!({"priority": p, "shutdownGracePeriodSeconds": secs}))
                .collect::<Vec<_>>()
        }),
        "seccompDefault": s.seccomp_default,
        "registerNode": s.register_node,
        "enforceNodeAllocatable": s.enforce_node_allocatable,
        "systemReserved": s.system_reserved.iter().map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect::<Map<_, _>>(),
        "kubeReserved": s.kube_reserved.iter().map(|(k, v)| (k.clone(), Value::String(v.to_string()))).collect::<Map<_, _>>(),
    });
    if let (Some(obj), Value::Object(more)) = (c.as_object_mut(), more) {
        obj.extend(more);
        obj.retain(|_, v| !v.is_null());
    }
    json!({ "kubeletconfig": c })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configz_names_the_resolved_settings() {
        let flags = crate::config::Flags {
            hostname_override: Some("n1".into()),
            max_pods: Some(42),
            authorization_mode: Some("AlwaysAllow".into()),
            ..Default::default()
        };
        let s = crate::config::load(&flags).unwrap();
        let v = body(&s);
        let c = &v["kubeletconfig"];
        assert_eq!(c["maxPods"], 42);
        assert_eq!(c["authorization"]["mode"], "AlwaysAllow");
        assert_eq!(c["authentication"]["webhook"]["cacheTTL"], "2m0s");
        assert_eq!(c["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(c["evictionHard"]["memory.available"], "100Mi");
        assert_eq!(c["port"], 10250);
    }
}
