//! The kubelet's own metrics, declared in one place with their upstream names, types, labels and
//! buckets, in one registry served at `/metrics`. Labels are bounded: operation names, container
//! states and eviction signals, never pod names.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
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
    pub started_containers_total: IntCounterVec,
    pub started_containers_errors_total: IntCounterVec,
    pub evictions: IntCounterVec,
    pub node_name: GaugeVec,
}

impl std::ops::Deref for Metrics {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

fn hist(name: &str, help: &str, buckets: Vec<f64>) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(buckets)
}

impl Metrics {
    /// A fresh registry; `node` fills `kubelet_node_name`.
    pub fn new(node: &str) -> Self {
        let registry = Registry::new();
        let op_buckets = exponential_buckets(0.005, 2.5, 14).expect("static buckets");
        let default_buckets = prometheus::DEFAULT_BUCKETS.to_vec();
        let inner = Inner {
            runtime_operations_total: IntCounterVec::new(
                Opts::new("kubelet_runtime_operations_total", "Cumulative number of runtime operations by operation type."),
                &["operation_type"],
            )
            .expect("metric"),
            runtime_operations_errors_total: IntCounterVec::new(
                Opts::new(
                    "kubelet_runtime_operations_errors_total",
                    "Cumulative number of runtime operation errors by operation type.",
                ),
                &["operation_type"],
            )
            .expect("metric"),
            runtime_operations_duration_seconds: HistogramVec::new(
                hist(
                    "kubelet_runtime_operations_duration_seconds",
                    "Duration in seconds of runtime operations. Broken down by operation type.",
                    op_buckets.clone(),
                ),
                &["operation_type"],
            )
            .expect("metric"),
            pleg_relist_duration_seconds: Histogram::with_opts(hist(
                "kubelet_pleg_relist_duration_seconds",
                "Duration in seconds for relisting pods in PLEG.",
                exponential_buckets(0.0001, 2.0, 16).expect("static buckets"),
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
                "Timestamp in seconds when PLEG was last seen active.",
            )
            .expect("metric"),
            running_pods: IntGauge::new("kubelet_running_pods", "Number of pods that have a running pod sandbox")
                .expect("metric"),
            running_containers: IntGaugeVec::new(
                Opts::new("kubelet_running_containers", "Number of containers currently running"),
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
                    op_buckets,
                ),
                &["operation_type"],
            )
            .expect("metric"),
            started_containers_total: IntCounterVec::new(
                Opts::new("kubelet_started_containers_total", "Cumulative number of containers started"),
                &["container_type"],
            )
            .expect("metric"),
            started_containers_errors_total: IntCounterVec::new(
                Opts::new("kubelet_started_containers_errors_total", "Cumulative number of errors when starting containers"),
                &["code", "container_type"],
            )
            .expect("metric"),
            evictions: IntCounterVec::new(
                Opts::new("kubelet_evictions", "Cumulative number of pod evictions by eviction signal"),
                &["eviction_signal"],
            )
            .expect("metric"),
            node_name: GaugeVec::new(Opts::new("kubelet_node_name", "The node's name. The count is always 1."), &["node"])
                .expect("metric"),
            registry,
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

    /// The Prometheus text exposition of the registry.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        // Encoding into a Vec cannot fail for well-formed families.
        let _ = enc.encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
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
    }
}
