//! The kubelet's own metrics, declared in one place with their upstream names, types, labels and
//! buckets, in one registry served at `/metrics`. Labels are bounded: operation names, container
//! states and eviction signals, never pod names.
//!
//! Help texts carry the stability prefix the kubelet's `component-base` registry adds
//! (`[ALPHA] `, `[BETA] `, `[STABLE] `). The process families (`process_*`) are read from
//! `/proc/self` at each scrape ([`write_process_metrics`]), as the Go client's process
//! collector does. The prober's families live in their own registry ([`ProbeMetrics`], served
//! at `/metrics/probes`) and are reachable from here as [`Inner::probes`].

use std::sync::Arc;
use std::time::Duration;

use crate::prober_metrics::ProbeMetrics;
use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Cheap-to-clone handle on the registry and every family.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

pub struct Inner {
    pub registry: Registry,
    pub runtime_operations_total: IntCounterVec,
    pub runtime_operations_errors_total: IntCounterVec,
    pub runtime_operations_duration_seconds: HistogramVec,
    pub pleg_relist_duration_seconds: Histogram,
    pub pleg_relist_interval_seconds: Histogram,
    pub pleg_last_seen_seconds: Gauge,
    pub running_pods: IntGauge,
    pub running_containers: IntGaugeVec,
    pub pod_start_duration_seconds: Histogram,
    pub pod_worker_duration_seconds: HistogramVec,
    /// Pod workers that panicked and were restarted (kubelet-rs's own; the Go kubelet crashes).
    pub pod_worker_panics_total: IntCounter,
    pub started_containers_total: IntCounterVec,
    pub started_containers_errors_total: IntCounterVec,
    pub evictions: IntCounterVec,
    pub node_name: GaugeVec,
    /// The prober's families (`/metrics/probes`).
    pub probes: ProbeMetrics,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn hist(name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
    HistogramOpts::new(name, alpha(help)).buckets(buckets)
}

/// The help text as the kubelet's registry prints an ALPHA metric's.
fn alpha(help: &str) -> String {
    format!("[ALPHA] {help}")
}

impl Metrics {
    /// A fresh registry; `node` fills `kubelet_node_name`.
    pub fn new(node: &str) -> Self {
        let registry = Registry::new();
        let op_buckets = exponential_buckets(0.005, 2.5, 14).expect("static buckets");
        let default_buckets = prometheus::DEFAULT_BUCKETS.to_vec();
        let inner = Inner {
            runtime_operations_total: IntCounterVec::new(
                Opts::new("kubelet_runtime_operations_total", alpha("Cumulative number of runtime operations by operation type.")),
                &["operation_type"],
            )
            .expect("metric"),
            runtime_operations_errors_total: IntCounterVec::new(
                Opts::new("kubelet_runtime_operations_errors_total", alpha("Cumulative number of runtime operation errors by operation type.")),
                &["operation_type"],
            )
            .expect("metric"),
            runtime_operations_duration_seconds: HistogramVec::new(
                hist(
                    "kubelet_runtime_operations_duration_seconds",
                    "Duration in seconds of runtime operations. Broken down by operation type.",
                    op_buckets,
                ),
                &["operation_type"],
            )
            .expect("metric"),
            pleg_relist_duration_seconds: Histogram::with_opts(hist(
                "kubelet_pleg_relist_duration_seconds",
                "Duration in seconds for relisting pods in PLEG.",
                default_buckets.clone(),
            ))
            .expect("metric"),
            pleg_relist_interval_seconds: Histogram::with_opts(hist(
                "kubelet_pleg_relist_interval_seconds",
                "Interval in seconds between relisting in PLEG.",
                default_buckets.clone(),
            ))
            .expect("metric"),
            pleg_last_seen_seconds: Gauge::new(
                "kubelet_pleg_last_seen_seconds",
                alpha("Timestamp in seconds when PLEG was last seen active."),
            )
            .expect("metric"),
            running_pods: IntGauge::new("kubelet_running_pods", alpha("Number of pods that have a running pod sandbox"))
                .expect("metric"),
            running_containers: IntGaugeVec::new(
                Opts::new("kubelet_running_containers", alpha("Number of containers currently running")),
                &["container_state"],
            )
            .expect("metric"),
            pod_start_duration_seconds: Histogram::with_opts(hist(
                "kubelet_pod_start_duration_seconds",
                "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
                vec![0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0, 300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0],
            ))
            .expect("metric"),
            pod_worker_duration_seconds: HistogramVec::new(
                hist(
                    "kubelet_pod_worker_duration_seconds",
                    "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
                    default_buckets,
                ),
                &["operation_type"],
            )
            .expect("metric"),
            pod_worker_panics_total: IntCounter::with_opts(Opts::new(
                "kubelet_pod_worker_panics_total",
                alpha("Cumulative number of pod workers that panicked and were restarted."),
            ))
            .expect("metric"),
            started_containers_total: IntCounterVec::new(
                Opts::new("kubelet_started_containers_total", alpha("Cumulative number of containers started")),
                &["container_type"],
            )
            .expect("metric"),
            started_containers_errors_total: IntCounterVec::new(
                Opts::new("kubelet_started_containers_errors_total", alpha("Cumulative number of errors when starting containers")),
                &["code", "container_type"],
            )
            .expect("metric"),
            evictions: IntCounterVec::new(
                Opts::new("kubelet_evictions", alpha("Cumulative number of pod evictions by eviction signal")),
                &["eviction_signal"],
            )
            .expect("metric"),
            node_name: GaugeVec::new(Opts::new("kubelet_node_name", alpha("The node's name. The count is always 1.")), &["node"])
                .expect("metric"),
            registry,
            probes: ProbeMetrics::new(),
        };
        let r = &inner.registry;
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(inner.runtime_operations_total.clone()),
            Box::new(inner.runtime_operations_errors_total.clone()),
            Box::new(inner.runtime_operations_duration_seconds.clone()),
            Box::new(inner.pleg_relist_duration_seconds.clone()),
            Box::new(inner.pleg_relist_interval_seconds.clone()),
            Box::new(inner.pleg_last_seen_seconds.clone()),
            Box::new(inner.running_pods.clone()),
            Box::new(inner.running_containers.clone()),
            Box::new(inner.pod_start_duration_seconds.clone()),
            Box::new(inner.pod_worker_duration_seconds.clone()),
            Box::new(inner.pod_worker_panics_total.clone()),
            Box::new(inner.started_containers_total.clone()),
            Box::new(inner.started_containers_errors_total.clone()),
            Box::new(inner.evictions.clone()),
            Box::new(inner.node_name.clone()),
        ];
        for c in collectors {
            r.register(c).expect("metric names are unique");
        }
        inner.node_name.with_label_values(&[node]).set(1.0);
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
