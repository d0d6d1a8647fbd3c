//! The kubelet's own metrics, declared in one place with their upstream names, types, labels and
//! buckets, in one registry served at `/metrics`. Labels are bounded: operation names, container
//! states, eviction signals, volume plugins, HTTP path buckets, never pod names.
//!
//! Help texts carry the stability prefix the kubelet's `component-base` registry adds
//! (`[ALPHA] `, `[BETA] `, `[STABLE] `); every family here is ALPHA upstream (Kubernetes 1.33:
//! `pkg/kubelet/metrics`, `pkg/kubelet/server/metrics`, `pkg/kubelet/volumemanager/metrics`,
//! `pkg/volume/util/metrics.go`, `component-base/metrics/prometheus/version`). As with the
//! kubelet, a plain counter or gauge prints from the start (`kubelet_started_pods_total 0`),
//! while a vector prints nothing until its first child exists: `kubelet_evictions` appears
//! with the first eviction. The process families (`process_*`) are read from `/proc/self` at
//! each scrape ([`write_process_metrics`]), as the Go client's process collector does. The
//! prober's families live in their own registry ([`ProbeMetrics`], served at
//! `/metrics/probes`) and are reachable from here as [`Inner::probes`].

use std::sync::Arc;
use std::time::Duration;

use crate::prober_metrics::ProbeMetrics;
use parking_lot::Mutex;
use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The Kubernetes release whose kubelet this agent stands in for (`kubernetes_build_info`;
/// probes say `kube-probe/1.33`).
pub const KUBERNETES_MAJOR: &str = "1";
/// See [`KUBERNETES_MAJOR`].
pub const KUBERNETES_MINOR: &str = "33";

/// The kubelet's `podStartupDurationBuckets`.
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];
/// The kubelet's `imagePullDurationBuckets`.
const IMAGE_PULL_BUCKETS: [f64; 18] = [
    1.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0,
    1200.0, 1800.0, 2700.0, 3600.0,
];
/// `storage_operation_duration_seconds` buckets.
const STORAGE_OP_BUCKETS: [f64; 13] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 25.0, 50.0, 120.0, 300.0, 600.0,
];

/// Cheap-to-clone handle on the registry and every family.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

pub struct Inner {
    pub registry: Registry,
    /// `kubernetes_build_info`: the release this agent stands in for, and how it was built.
    pub build_info: GaugeVec,
    pub runtime_operations_total: IntCounterVec,
    pub runtime_operations_errors_total: IntCounterVec,
    pub runtime_operations_duration_seconds: HistogramVec,
    /// `kubelet_run_podsandbox_duration_seconds{runtime_handler}`.
    pub run_podsandbox_duration_seconds: HistogramVec,
    /// `kubelet_run_podsandbox_errors_total{runtime_handler}`.
    pub run_podsandbox_errors_total: IntCounterVec,
    pub pleg_relist_duration_seconds: Histogram,
    pub pleg_relist_interval_seconds: Histogram,
    pub pleg_last_seen_seconds: Gauge,
    pub running_pods: IntGauge,
    pub running_containers: IntGaugeVec,
    /// `kubelet_desired_pods{static}`: pods the sources ask for.
    pub desired_pods: IntGaugeVec,
    /// `kubelet_active_pods{static}`: desired pods not terminal (admission counts them).
    pub active_pods: IntGaugeVec,
    /// `kubelet_mirror_pods`: mirror pods of static pods (none without an API server).
    pub mirror_pods: IntGauge,
    /// `kubelet_working_pods{lifecycle,config,static}`: pod workers by state.
    pub working_pods: IntGaugeVec,
    /// `kubelet_restarted_pods_total{static}`: pods removed and re-added with the same UID.
    pub restarted_pods_total: IntCounterVec,
    /// `kubelet_containers_per_pod_count`.
    pub containers_per_pod_count: Histogram,
    pub pod_start_duration_seconds: Histogram,
    /// `kubelet_pod_start_sli_duration_seconds`: the kubelet observes it when it sees a pod's
    /// started status come back through its API-server watch, so a standalone kubelet (static
    /// pods only) never does; it prints nothing until the API-server source exists.
    pub pod_start_sli_duration_seconds: HistogramVec,
    /// `kubelet_pod_start_total_duration_seconds`: as the SLI family, API-server pods only.
    pub pod_start_total_duration_seconds: HistogramVec,
    pub pod_worker_duration_seconds: HistogramVec,
    /// `kubelet_started_pods_total`: sandbox creations attempted.
    pub started_pods_total: IntCounter,
    /// `kubelet_started_pods_errors_total`: sandbox creations that failed.
    pub started_pods_errors_total: IntCounter,
    /// Pod workers that panicked and were restarted (kubelet-rs's own; the Go kubelet crashes).
    pub pod_worker_panics_total: IntCounter,
    pub started_containers_total: IntCounterVec,
    pub started_containers_errors_total: IntCounterVec,
    /// `kubelet_image_pull_duration_seconds{image_size_in_bytes}`: successful pulls, wait
    /// for a serialized pull slot included.
    pub image_pull_duration_seconds: HistogramVec,
    /// `kubelet_cgroup_manager_duration_seconds{operation_type}`: `create`, `update`,
    /// `destroy` of pod and QoS cgroups.
    pub cgroup_manager_duration_seconds: HistogramVec,
    /// `kubelet_cgroup_version`: 1 (v1 or hybrid) or 2.
    pub cgroup_version: IntGauge,
    /// `kubelet_graceful_shutdown_start_time_seconds` / `..._end_time_seconds`: the last
    /// graceful node shutdown (`nodeshutdown`), seconds since the epoch.
    pub graceful_shutdown_start_time_seconds: Gauge,
    pub graceful_shutdown_end_time_seconds: Gauge,
    pub evictions: IntCounterVec,
    /// `kubelet_eviction_stats_age_seconds{eviction_signal}`: how old the observation was
    /// that an eviction acted on.
    pub eviction_stats_age_seconds: HistogramVec,
    /// `volume_manager_total_volumes{plugin_name,state}`: volumes the pods want
    /// (`desired_state_of_world`) and volumes set up (`actual_state_of_world`).
    pub volume_manager_total_volumes: IntGaugeVec,
    volume_counts: Mutex<VolumeCounts>,
    /// `storage_operation_duration_seconds{volume_plugin,operation_name,status,migrated}`.
    pub storage_operation_duration_seconds: HistogramVec,
    /// `kubelet_http_requests_total{method,path,server_type,long_running}`.
    pub http_requests_total: IntCounterVec,
    /// `kubelet_http_requests_duration_seconds{method,path,server_type,long_running}`.
    pub http_requests_duration_seconds: HistogramVec,
    /// `kubelet_http_inflight_requests{method,path,server_type,long_running}`.
    pub http_inflight_requests: IntGaugeVec,
    pub node_name: GaugeVec,
    /// `kubelet_device_plugin_registration_total{resource_name}`.
    pub device_plugin_registration_total: IntCounterVec,
    /// `kubelet_device_plugin_alloc_duration_seconds{resource_name}`: the plugin's Allocate.
    pub device_plugin_alloc_duration_seconds: HistogramVec,
    /// The prober's families (`/metrics/probes`).
    pub probes: ProbeMetrics,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// The help text as the kubelet's registry prints an ALPHA metric's.
fn alpha(help: &str) -> String {
    format!("[ALPHA] {help}")
}

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, alpha(help))
}

fn hist(name: &str, help: &str, buckets: &[f64]) -> HistogramOpts {
    HistogramOpts::new(name, alpha(help)).buckets(buckets.to_vec())
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(opts(name, help), labels).expect("static metric")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(opts(name, help), labels).expect("static metric")
}

fn histogram_vec(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(hist(name, help, buckets), labels).expect("static metric")
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(hist(name, help, buckets)).expect("static metric")
}

/// `(plugin, state) → volumes`, as published to `volume_manager_total_volumes`.
pub type VolumeCounts = std::collections::BTreeMap<(String, &'static str), i64>;

/// The `image_size_in_bytes` label of `kubelet_image_pull_duration_seconds` (the kubelet's
/// `GetImageSizeBucket`): `N/A` for an unknown size.
pub fn image_size_bucket(bytes: u64) -> &'static str {
    const MB: u64 = 1024 * 1024;
    const GB: u64 = 1024 * MB;
    const BUCKETS: [(u64, &str); 12] = [
        (0, "0-10MB"),
        (10 * MB, "10MB-100MB"),
        (100 * MB, "100MB-500MB"),
        (500 * MB, "500MB-1GB"),
        (GB, "1GB-5GB"),
        (5 * GB, "5GB-10GB"),
        (10 * GB, "10GB-20GB"),
        (20 * GB, "20GB-30GB"),
        (30 * GB, "30GB-40GB"),
        (40 * GB, "40GB-60GB"),
        (60 * GB, "60GB-100GB"),
        (100 * GB, "GT100GB"),
    ];
    if bytes == 0 {
        return "N/A";
    }
    BUCKETS
        .iter()
        .rev()
        .find(|(low, _)| bytes > *low)
        .map_or("", |(_, label)| label)
}

/// `kubernetes_build_info`'s `platform` as Go spells it (`linux/amd64`).
fn platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    format!("{}/{arch}", std::env::consts::OS)
}

impl Metrics {
    /// A fresh registry; `node` fills `kubelet_node_name`.
    pub fn new(node: &str) -> Self {
        let default_buckets = prometheus::DEFAULT_BUCKETS;
        let op_buckets = exponential_buckets(0.005, 2.5, 14).expect("static buckets");
        let http_labels = ["method", "path", "server_type", "long_running"];
        let inner = Inner {
            registry: Registry::new(),
            build_info: GaugeVec::new(
                opts("kubernetes_build_info", "A metric with a constant '1' value labeled by major, minor, git version, git commit, git tree state, build date, Go version, and compiler from which Kubernetes was built, and platform on which it is running."),
                &["major", "minor", "git_version", "git_commit", "git_tree_state", "build_date", "go_version", "compiler", "platform"],
            )
            .expect("static metric"),
            runtime_operations_total: counter_vec("kubelet_runtime_operations_total", "Cumulative number of runtime operations by operation type.", &["operation_type"]),
            runtime_operations_errors_total: counter_vec("kubelet_runtime_operations_errors_total", "Cumulative number of runtime operation errors by operation type.", &["operation_type"]),
            runtime_operations_duration_seconds: histogram_vec("kubelet_runtime_operations_duration_seconds", "Duration in seconds of runtime operations. Broken down by operation type.", &op_buckets, &["operation_type"]),
            run_podsandbox_duration_seconds: histogram_vec("kubelet_run_podsandbox_duration_seconds", "Duration in seconds of the run_podsandbox operations. Broken down by RuntimeClass.Handler.", default_buckets, &["runtime_handler"]),
            run_podsandbox_errors_total: counter_vec("kubelet_run_podsandbox_errors_total", "Cumulative number of the run_podsandbox operation errors by RuntimeClass.Handler.", &["runtime_handler"]),
            pleg_relist_duration_seconds: histogram("kubelet_pleg_relist_duration_seconds", "Duration in seconds for relisting pods in PLEG.", default_buckets),
            pleg_relist_interval_seconds: histogram("kubelet_pleg_relist_interval_seconds", "Interval in seconds between relisting in PLEG.", default_buckets),
            pleg_last_seen_seconds: Gauge::with_opts(opts("kubelet_pleg_last_seen_seconds", "Timestamp in seconds when PLEG was last seen active.")).expect("static metric"),
            running_pods: IntGauge::with_opts(opts("kubelet_running_pods", "Number of pods that have a running pod sandbox")).expect("static metric"),
            running_containers: gauge_vec("kubelet_running_containers", "Number of containers currently running", &["container_state"]),
            desired_pods: gauge_vec("kubelet_desired_pods", "The number of pods the kubelet is being instructed to run. static is true if the pod is not from the apiserver.", &["static"]),
            active_pods: gauge_vec("kubelet_active_pods", "The number of pods the kubelet considers active and which are being considered when admitting new pods. static is true if the pod is not from the apiserver.", &["static"]),
            mirror_pods: IntGauge::with_opts(opts("kubelet_mirror_pods", "The number of mirror pods the kubelet will try to create (one per admitted static pod)")).expect("static metric"),
            working_pods: gauge_vec("kubelet_working_pods", "Number of pods the kubelet is actually running, broken down by lifecycle phase, whether the pod is desired, orphaned, or runtime only (also orphaned), and whether the pod is static. An orphaned pod has been removed from local configuration or force deleted in the API and consumes resources that are not otherwise visible.", &["lifecycle", "config", "static"]),
            restarted_pods_total: counter_vec("kubelet_restarted_pods_total", "Number of pods that have been restarted because they were deleted and recreated with the same UID while the kubelet was watching them (common for static pods, extremely uncommon for API pods)", &["static"]),
            containers_per_pod_count: histogram("kubelet_containers_per_pod_count", "The number of containers per pod.", &exponential_buckets(1.0, 2.0, 5).expect("static buckets")),
            pod_start_duration_seconds: histogram("kubelet_pod_start_duration_seconds", "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run", &POD_START_BUCKETS),
            pod_start_sli_duration_seconds: histogram_vec("kubelet_pod_start_sli_duration_seconds", "Duration in seconds to start a pod, excluding time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started and observed via watch", &POD_START_BUCKETS, &[]),
            pod_start_total_duration_seconds: histogram_vec("kubelet_pod_start_total_duration_seconds", "Duration in seconds to start a pod since creation, including time to pull images and run init containers, measured from pod creation timestamp to when all its containers are reported as started and observed via watch", &POD_START_BUCKETS, &[]),
            pod_worker_panics_total: IntCounter::with_opts(opts("kubelet_pod_worker_panics_total", "Cumulative number of pod workers that panicked and were restarted.")).expect("static metric"),
            pod_worker_duration_seconds: histogram_vec("kubelet_pod_worker_duration_seconds", "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync", default_buckets, &["operation_type"]),
            started_pods_total: IntCounter::with_opts(opts("kubelet_started_pods_total", "Cumulative number of pods started")).expect("static metric"),
            started_pods_errors_total: IntCounter::with_opts(opts("kubelet_started_pods_errors_total", "Cumulative number of errors when starting pods")).expect("static metric"),
            started_containers_total: counter_vec("kubelet_started_containers_total", "Cumulative number of containers started", &["container_type"]),
            started_containers_errors_total: counter_vec("kubelet_started_containers_errors_total", "Cumulative number of errors when starting containers", &["code", "container_type"]),
            image_pull_duration_seconds: histogram_vec("kubelet_image_pull_duration_seconds", "Duration in seconds to pull an image.", &IMAGE_PULL_BUCKETS, &["image_size_in_bytes"]),
            cgroup_manager_duration_seconds: histogram_vec("kubelet_cgroup_manager_duration_seconds", "Duration in seconds for cgroup manager operations. Broken down by method.", default_buckets, &["operation_type"]),
            cgroup_version: IntGauge::with_opts(opts("kubelet_cgroup_version", "cgroup version on the hosts.")).expect("static metric"),
            // Both help texts say "start", as upstream's do.
            graceful_shutdown_start_time_seconds: Gauge::with_opts(opts("kubelet_graceful_shutdown_start_time_seconds", "Last graceful shutdown start time since unix epoch in seconds")).expect("static metric"),
            graceful_shutdown_end_time_seconds: Gauge::with_opts(opts("kubelet_graceful_shutdown_end_time_seconds", "Last graceful shutdown start time since unix epoch in seconds")).expect("static metric"),
            evictions: counter_vec("kubelet_evictions", "Cumulative number of pod evictions by eviction signal", &["eviction_signal"]),
            eviction_stats_age_seconds: histogram_vec("kubelet_eviction_stats_age_seconds", "Time between when stats are collected, and when pod is evicted based on those stats by eviction signal", default_buckets, &["eviction_signal"]),
            volume_manager_total_volumes: gauge_vec("volume_manager_total_volumes", "Number of volumes in Volume Manager", &["plugin_name", "state"]),
            volume_counts: Mutex::new(VolumeCounts::new()),
            storage_operation_duration_seconds: histogram_vec("storage_operation_duration_seconds", "Storage operation duration", &STORAGE_OP_BUCKETS, &["volume_plugin", "operation_name", "status", "migrated"]),
            http_requests_total: counter_vec("kubelet_http_requests_total", "Number of the http requests received since the server started", &http_labels),
            http_requests_duration_seconds: histogram_vec("kubelet_http_requests_duration_seconds", "Duration in seconds to serve http requests", default_buckets, &http_labels),
            http_inflight_requests: gauge_vec("kubelet_http_inflight_requests", "Number of the inflight http requests", &http_labels),
            node_name: GaugeVec::new(opts("kubelet_node_name", "The node's name. The count is always 1."), &["node"]).expect("static metric"),
            device_plugin_registration_total: counter_vec("kubelet_device_plugin_registration_total", "Cumulative number of device plugin registrations. Broken down by resource name.", &["resource_name"]),
            device_plugin_alloc_duration_seconds: histogram_vec("kubelet_device_plugin_alloc_duration_seconds", "Duration in seconds to serve a device plugin Allocation request. Broken down by resource name.", default_buckets, &["resource_name"]),
            probes: ProbeMetrics::new(),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(inner.build_info.clone()),
            Box::new(inner.runtime_operations_total.clone()),
            Box::new(inner.runtime_operations_errors_total.clone()),
            Box::new(inner.runtime_operations_duration_seconds.clone()),
            Box::new(inner.run_podsandbox_duration_seconds.clone()),
            Box::new(inner.run_podsandbox_errors_total.clone()),
            Box::new(inner.pleg_relist_duration_seconds.clone()),
            Box::new(inner.pleg_relist_interval_seconds.clone()),
            Box::new(inner.pleg_last_seen_seconds.clone()),
            Box::new(inner.running_pods.clone()),
            Box::new(inner.running_containers.clone()),
            Box::new(inner.desired_pods.clone()),
            Box::new(inner.active_pods.clone()),
            Box::new(inner.mirror_pods.clone()),
            Box::new(inner.working_pods.clone()),
            Box::new(inner.restarted_pods_total.clone()),
            Box::new(inner.containers_per_pod_count.clone()),
            Box::new(inner.pod_start_duration_seconds.clone()),
            Box::new(inner.pod_start_sli_duration_seconds.clone()),
            Box::new(inner.pod_start_total_duration_seconds.clone()),
            Box::new(inner.pod_worker_duration_seconds.clone()),
            Box::new(inner.started_pods_total.clone()),
            Box::new(inner.started_pods_errors_total.clone()),
            Box::new(inner.pod_worker_panics_total.clone()),
            Box::new(inner.started_containers_total.clone()),
            Box::new(inner.started_containers_errors_total.clone()),
            Box::new(inner.image_pull_duration_seconds.clone()),
            Box::new(inner.cgroup_manager_duration_seconds.clone()),
            Box::new(inner.cgroup_version.clone()),
            Box::new(inner.graceful_shutdown_start_time_seconds.clone()),
            Box::new(inner.graceful_shutdown_end_time_seconds.clone()),
            Box::new(inner.evictions.clone()),
            Box::new(inner.eviction_stats_age_seconds.clone()),
            Box::new(inner.volume_manager_total_volumes.clone()),
            Box::new(inner.storage_operation_duration_seconds.clone()),
            Box::new(inner.http_requests_total.clone()),
            Box::new(inner.http_requests_duration_seconds.clone()),
            Box::new(inner.http_inflight_requests.clone()),
            Box::new(inner.node_name.clone()),
            Box::new(inner.device_plugin_registration_total.clone()),
            Box::new(inner.device_plugin_alloc_duration_seconds.clone()),
        ];
        for c in collectors {
            inner.registry.register(c).expect("metric names are unique");
        }
        inner.node_name.with_label_values(&[node]).set(1.0);
        let git_version = format!(
            "v{KUBERNETES_MAJOR}.{KUBERNETES_MINOR}.0+kubelet-rs-{}",
            env!("CARGO_PKG_VERSION")
        );
        // No git checkout, build date or Go toolchain is recorded in the binary: those stay
        // empty rather than made up.
        inner
            .build_info
            .with_label_values(&[
                KUBERNETES_MAJOR,
                KUBERNETES_MINOR,
                &git_version,
                "",
                "",
                "",
                "",
                "rustc",
                &platform(),
            ])
            .set(1.0);
        Metrics(Arc::new(inner))
    }

    /// Records one CRI call.
    pub fn runtime_op(&self, op: &str, took: Duration, ok: bool) {
        self.runtime_operations_total.with_label_values(&[op]).inc();
        self.runtime_operations_duration_seconds
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
        if !ok {
            self.runtime_operations_errors_total
                .with_label_values(&[op])
                .inc();
        }
    }

    /// Records one `RunPodSandbox` with the runtime handler it asked for (`""`: the default).
    pub fn run_podsandbox(&self, handler: &str, took: Duration, ok: bool) {
        self.run_podsandbox_duration_seconds
            .with_label_values(&[handler])
            .observe(took.as_secs_f64());
        if !ok {
            self.run_podsandbox_errors_total
                .with_label_values(&[handler])
                .inc();
        }
    }

    /// Records one cgroup manager operation: `create`, `update` or `destroy`.
    pub fn cgroup_op(&self, op: &str, took: Duration) {
        self.cgroup_manager_duration_seconds
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }

    /// Records one volume operation (`volume_mount`, `volume_unmount`) of `plugin`
    /// (`kubernetes.io/empty-dir`): status `success` or `fail-unknown`, as the kubelet's
    /// `OperationCompleteHook`.
    pub fn storage_op(&self, plugin: &str, operation: &str, took: Duration, ok: bool) {
        let status = if ok { "success" } else { "fail-unknown" };
        self.storage_operation_duration_seconds
            .with_label_values(&[plugin, operation, status, "false"])
            .observe(took.as_secs_f64());
    }

    /// Publishes the volume manager's counts: `(plugin, state) → volumes`. A pair that is
    /// gone is removed (the kubelet's collector prints only pairs that exist); the others are
    /// set in place, so a scrape never sees the family half empty.
    pub fn set_volume_counts(&self, counts: VolumeCounts) {
        let mut last = self.volume_counts.lock();
        for ((plugin, state), n) in &counts {
            self.volume_manager_total_volumes
                .with_label_values(&[plugin.as_str(), state])
                .set(*n);
        }
        for (plugin, state) in last.keys() {
            if !counts.contains_key(&(plugin.clone(), state)) {
                let _ = self
                    .volume_manager_total_volumes
                    .remove_label_values(&[plugin.as_str(), state]);
            }
        }
        *last = counts;
    }

    /// Records the pods the node runs, as the kubelet's housekeeping does: `desired` pods from
    /// the sources, of which `active` are not terminal; workers `syncing` (desired) and
    /// `terminating` (no longer desired), and runtime pods no source claims being torn down
    /// (`orphans`). Every pod here is static: the only sources are local.
    pub fn set_pod_counts(&self, c: PodCounts) {
        let set = |g: &IntGaugeVec, labels: &[&str], n: usize| {
            g.with_label_values(labels).set(n as i64);
        };
        set(&self.desired_pods, &[""], 0);
        set(&self.desired_pods, &["true"], c.desired);
        set(&self.active_pods, &[""], 0);
        set(&self.active_pods, &["true"], c.active);
        self.mirror_pods.set(0);
        for lifecycle in ["sync", "terminating", "terminated"] {
            for (config, static_) in [
                ("desired", "true"),
                ("desired", ""),
                ("orphan", "true"),
                ("orphan", ""),
                ("runtime_only", "unknown"),
            ] {
                let n = match (lifecycle, config, static_) {
                    ("sync", "desired", "true") => c.syncing,
                    ("terminating", "orphan", "true") => c.terminating,
                    ("terminating", "runtime_only", _) => c.orphans,
                    _ => 0,
                };
                set(&self.working_pods, &[lifecycle, config, static_], n);
            }
        }
    }

    /// The Prometheus text exposition of the registry, then the `process_*` families.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        write_process_metrics(&mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// What [`Metrics::set_pod_counts`] records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodCounts {
    /// Pods the sources want.
    pub desired: usize,
    /// Of those, not in a terminal phase.
    pub active: usize,
    /// Pod workers syncing a desired pod.
    pub syncing: usize,
    /// Pod workers stopping a pod no source wants any more.
    pub terminating: usize,
    /// Runtime pods no source claims, being torn down.
    pub orphans: usize,
}

/// This process's figures from `/proc/self`, as the Go client's process collector reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub open_fds: u64,
    pub max_fds: f64,
    pub virtual_bytes: u64,
    pub virtual_max_bytes: f64,
    pub resident_bytes: u64,
    pub start_time_seconds: f64,
    pub network_receive_bytes: u64,
    pub network_transmit_bytes: u64,
}

/// Parses `/proc/<pid>/stat` after the command (which may hold spaces and parentheses):
/// (utime+stime ticks, starttime ticks, vsize bytes, rss pages).
pub fn parse_proc_stat(stat: &str) -> Option<(u64, u64, u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    // Fields from 3 (state) on; utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    Some((get(14)? + get(15)?, get(22)?, get(23)?, get(24)?))
}

/// The soft limit of `name` in `/proc/<pid>/limits` (`unlimited`: +∞ as u64::MAX, as Go's
/// procfs reads it).
pub fn parse_limit(limits: &str, name: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with(name))?;
    let soft = line[name.len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX as f64);
    }
    soft.parse::<u64>().ok().map(|v| v as f64)
}

/// Reads this process's figures; missing files give zeros.
pub fn process_stats() -> ProcessStats {
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let mut p = ProcessStats::default();
    if let Some((cpu, start, vsize, rss)) = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(parse_proc_stat)
    {
        p.cpu_seconds = cpu as f64 / tck;
        p.virtual_bytes = vsize;
        p.resident_bytes = rss * page;
        let btime = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix("btime ")
                        .and_then(|v| v.trim().parse::<u64>().ok())
                })
            })
            .unwrap_or(0);
        p.start_time_seconds = btime as f64 + start as f64 / tck;
    }
    p.open_fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count() as u64)
        .unwrap_or(0);
    if let Ok(l) = std::fs::read_to_string("/proc/self/limits") {
        p.max_fds = parse_limit(&l, "Max open files").unwrap_or(0.0);
        p.virtual_max_bytes = parse_limit(&l, "Max address space").unwrap_or(0.0);
    }
    if let Ok(dev) = std::fs::read("/proc/self/net/dev") {
        let mut v = Vec::new();
        collectors::parse::procfs::net_dev(&dev, &mut v);
        for i in &v {
            p.network_receive_bytes += i.counters.rx_bytes;
            p.network_transmit_bytes += i.counters.tx_bytes;
        }
    }
    p
}

/// Appends the Go client's `process_*` families for this process.
pub fn write_process_metrics(out: &mut Vec<u8>) {
    use crate::cadvisor::expo::{Family, Kind, LabelSet};
    let p = process_stats();
    let none = LabelSet::default();
    for (name, help, kind, v) in [
        (
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            Kind::Counter,
            p.cpu_seconds,
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors.",
            Kind::Gauge,
            p.max_fds,
        ),
        (
            "process_network_receive_bytes_total",
            "Number of bytes received by the process over the network.",
            Kind::Counter,
            p.network_receive_bytes as f64,
        ),
        (
            "process_network_transmit_bytes_total",
            "Number of bytes sent by the process over the network.",
            Kind::Counter,
            p.network_transmit_bytes as f64,
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            Kind::Gauge,
            p.open_fds as f64,
        ),
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            Kind::Gauge,
            p.resident_bytes as f64,
        ),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            Kind::Gauge,
            p.start_time_seconds,
        ),
        (
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            Kind::Gauge,
            p.virtual_bytes as f64,
        ),
        (
            "process_virtual_memory_max_bytes",
            "Maximum amount of virtual memory available in bytes.",
            Kind::Gauge,
            p.virtual_max_bytes,
        ),
    ] {
        let mut f = Family::begin(out, name, help, kind);
        f.sample(&none, &[], v, None);
        f.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_ops_are_counted_by_type() {
        let m = Metrics::new("node-a");
        m.runtime_op("run_podsandbox", Duration::from_millis(120), true);
        m.runtime_op("run_podsandbox", Duration::from_millis(80), false);
        let text = m.encode();
        assert!(
            text.contains("kubelet_runtime_operations_total{operation_type=\"run_podsandbox\"} 2"),
            "{text}"
        );
        assert!(text.contains(
            "kubelet_runtime_operations_errors_total{operation_type=\"run_podsandbox\"} 1"
        ));
        assert!(text.contains("kubelet_node_name{node=\"node-a\"} 1"));
        assert!(text.contains("# TYPE kubelet_runtime_operations_duration_seconds histogram"));
        assert!(text.contains(
            "# HELP kubelet_running_pods [ALPHA] Number of pods that have a running pod sandbox\n"
        ));
        assert!(
            text.contains("# TYPE process_resident_memory_bytes gauge\n"),
            "{text}"
        );
        let p = process_stats();
        assert!(
            p.cpu_seconds > 0.0 && p.resident_bytes > 0 && p.open_fds > 0,
            "{p:?}"
        );
        assert!(p.start_time_seconds > 1.6e9 && p.max_fds > 0.0, "{p:?}");
    }

    #[test]
    fn build_info_names_the_release_and_the_build() {
        let text = Metrics::new("n").encode();
        let line = text
            .lines()
            .find(|l| l.starts_with("kubernetes_build_info{"))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(line.ends_with("} 1"), "{line}");
        for label in [
            "major=\"1\"",
            "minor=\"33\"",
            "compiler=\"rustc\"",
            "git_version=\"v1.33.0+kubelet-rs-",
            "platform=\"linux/",
        ] {
            assert!(line.contains(label), "{label} in {line}");
        }
        assert!(text
            .contains("# HELP kubernetes_build_info [ALPHA] A metric with a constant '1' value"));
    }

    #[test]
    fn families_print_as_the_kubelets_do() {
        let m = Metrics::new("n");
        let text = m.encode();
        // Plain counters, gauges and histograms print from the start ...
        for present in [
            "kubelet_started_pods_total 0\n",
            "kubelet_started_pods_errors_total 0\n",
            "kubelet_mirror_pods 0\n",
            "kubelet_cgroup_version 0\n",
            "kubelet_containers_per_pod_count_count 0\n",
        ] {
            assert!(text.contains(present), "{present} missing:\n{text}");
        }
        // ... vectors only once they have a child.
        for absent in [
            "kubelet_evictions",
            "kubelet_eviction_stats_age_seconds",
            "kubelet_restarted_pods_total",
            "kubelet_cgroup_manager_duration_seconds",
            "kubelet_run_podsandbox_duration_seconds",
            "kubelet_image_pull_duration_seconds",
            "kubelet_pod_start_sli_duration_seconds",
            "kubelet_pod_start_total_duration_seconds",
            "storage_operation_duration_seconds",
            "volume_manager_total_volumes",
            "kubelet_http_requests_total",
            "kubelet_working_pods",
        ] {
            assert!(
                !text.contains(absent),
                "{absent} printed before its first event"
            );
        }
        m.cgroup_op("create", Duration::from_millis(3));
        m.run_podsandbox("", Duration::from_millis(300), false);
        m.storage_op(
            "kubernetes.io/empty-dir",
            "volume_mount",
            Duration::from_millis(2),
            true,
        );
        let text = m.encode();
        assert!(
            text.contains(
                "kubelet_cgroup_manager_duration_seconds_count{operation_type=\"create\"} 1\n"
            ),
            "{text}"
        );
        assert!(text.contains("kubelet_run_podsandbox_duration_seconds_bucket{runtime_handler=\"\",le=\"0.5\"} 1\n"), "{text}");
        assert!(
            text.contains("kubelet_run_podsandbox_errors_total{runtime_handler=\"\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("storage_operation_duration_seconds_count{migrated=\"false\",operation_name=\"volume_mount\",status=\"success\",volume_plugin=\"kubernetes.io/empty-dir\"} 1\n"), "{text}");
        assert!(text.contains(
            "# HELP storage_operation_duration_seconds [ALPHA] Storage operation duration\n"
        ));
    }

    #[test]
    fn volume_counts_drop_pairs_that_are_gone() {
        let m = Metrics::new("n");
        let c = |pairs: &[(&str, &'static str, i64)]| -> VolumeCounts {
            pairs
                .iter()
                .map(|(p, s, n)| ((p.to_string(), *s), *n))
                .collect()
        };
        m.set_volume_counts(c(&[
            ("kubernetes.io/empty-dir", "desired_state_of_world", 2),
            ("kubernetes.io/secret", "actual_state_of_world", 1),
        ]));
        m.set_volume_counts(c(&[(
            "kubernetes.io/empty-dir",
            "desired_state_of_world",
            1,
        )]));
        let text = m.encode();
        assert!(text.contains("volume_manager_total_volumes{plugin_name=\"kubernetes.io/empty-dir\",state=\"desired_state_of_world\"} 1\n"), "{text}");
        assert!(!text.contains("kubernetes.io/secret"), "{text}");
    }

    #[test]
    fn pod_counts_fill_every_working_pods_combination() {
        let m = Metrics::new("n");
        m.set_pod_counts(PodCounts {
            desired: 3,
            active: 2,
            syncing: 2,
            terminating: 1,
            orphans: 1,
        });
        let text = m.encode();
        let working: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("kubelet_working_pods{"))
            .collect();
        assert_eq!(working.len(), 15, "{working:?}");
        for line in [
            "kubelet_desired_pods{static=\"true\"} 3",
            "kubelet_desired_pods{static=\"\"} 0",
            "kubelet_active_pods{static=\"true\"} 2",
            "kubelet_working_pods{config=\"desired\",lifecycle=\"sync\",static=\"true\"} 2",
            "kubelet_working_pods{config=\"orphan\",lifecycle=\"terminating\",static=\"true\"} 1",
            "kubelet_working_pods{config=\"runtime_only\",lifecycle=\"terminating\",static=\"unknown\"} 1",
            "kubelet_working_pods{config=\"desired\",lifecycle=\"terminated\",static=\"true\"} 0",
        ] {
            assert!(text.contains(&format!("{line}\n")), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn image_sizes_fall_in_the_kubelets_buckets() {
        const MB: u64 = 1024 * 1024;
        for (bytes, bucket) in [
            (0, "N/A"),
            (5 * MB, "0-10MB"),
            (15 * MB, "10MB-100MB"),
            (500 * MB, "100MB-500MB"),
            (15 * 1024 * MB, "10GB-20GB"),
            (200 * 1024 * MB, "GT100GB"),
        ] {
            assert_eq!(image_size_bucket(bytes), bucket, "{bytes}");
        }
    }

    #[test]
    fn proc_files_parse() {
        let stat = "42 (my (odd) proc) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 12345 1000000 300 18446744073709551615";
        assert_eq!(parse_proc_stat(stat), Some((300, 12345, 1_000_000, 300)));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\nMax address space         unlimited            unlimited            bytes\n";
        assert_eq!(parse_limit(limits, "Max open files"), Some(1024.0));
        assert_eq!(
            parse_limit(limits, "Max address space"),
            Some(u64::MAX as f64)
        );
        assert_eq!(parse_limit(limits, "Max nothing"), None);
    }
}
