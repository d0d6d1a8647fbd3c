//! The prober's metrics, served at `/metrics/probes`: `prober_probe_total` (BETA) and
//! `prober_probe_duration_seconds` (ALPHA) with the kubelet's names, help texts, label names
//! and buckets (`pkg/kubelet/prober/prober_manager.go`), and kubelet-rs's own
//! `prober_probe_worker_panics_total` (ALPHA, by `probe_type`): probe workers that panicked and
//! were restarted (the Go kubelet has no such family: a panic there ends the process).
//!
//! The prober records every probe result with [`ProbeMetrics::observe`]; as in the kubelet,
//! a duration is recorded only for successful probes. When a pod's probe workers stop, the
//! prober calls [`ProbeMetrics::forget`] so that series of gone pods do not linger (the
//! kubelet's workers delete theirs the same way). Labels are per container, bounded by the
//! pods on the node.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The kind of probe (`probe_type` label values, as the kubelet spells them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeType {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeType {
    /// The label value: `Liveness`, `Readiness` or `Startup`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::Liveness => "Liveness",
            ProbeType::Readiness => "Readiness",
            ProbeType::Startup => "Startup",
        }
    }
}

/// A probe's outcome (`result` label values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    Successful,
    Failed,
    Unknown,
}

impl ProbeResult {
    /// The label value: `successful`, `failed` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeResult::Successful => "successful",
            ProbeResult::Failed => "failed",
            ProbeResult::Unknown => "unknown",
        }
    }
}

/// Which container a probe ran against.
#[derive(Clone, Copy, Debug)]
pub struct ProbeTarget<'a> {
    pub container: &'a str,
    pub pod: &'a str,
    pub namespace: &'a str,
    pub pod_uid: &'a str,
}

/// The prober's families in their own registry. Cheap to clone.
#[derive(Clone)]
pub struct ProbeMetrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    total: IntCounterVec,
    duration: HistogramVec,
    worker_panics: IntCounterVec,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for ProbeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProbeMetrics")
    }
}

impl ProbeMetrics {
    /// Empty families.
    pub fn new() -> Self {
        let total = IntCounterVec::new(
            Opts::new(
                "prober_probe_total",
                "[BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.",
            ),
            &["probe_type", "result", "container", "pod", "namespace", "pod_uid"],
        )
        .expect("static metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "prober_probe_duration_seconds",
                "[ALPHA] Duration in seconds for a probe response.",
            ),
            &["probe_type", "container", "pod", "namespace"],
        )
        .expect("static metric");
        let worker_panics = IntCounterVec::new(
            Opts::new(
                "prober_probe_worker_panics_total",
                "[ALPHA] Cumulative number of probe workers that panicked and were restarted, by probe type.",
            ),
            &["probe_type"],
        )
        .expect("static metric");
        for t in [
            ProbeType::Liveness,
            ProbeType::Readiness,
            ProbeType::Startup,
        ] {
            worker_panics.with_label_values(&[t.as_str()]);
        }
        let registry = Registry::new();
        registry.register(Box::new(total.clone())).expect("unique");
        registry
            .register(Box::new(duration.clone()))
            .expect("unique");
        registry
            .register(Box::new(worker_panics.clone()))
            .expect("unique");
        ProbeMetrics(Arc::new(Inner {
            registry,
            total,
            duration,
            worker_panics,
        }))
    }

    /// Records one probe: counts `result`, and for a successful probe its duration `took`.
    pub fn observe(
        &self,
        probe: ProbeType,
        result: ProbeResult,
        t: ProbeTarget<'_>,
        took: Duration,
    ) {
        self.0
            .total
            .with_label_values(&[
                probe.as_str(),
                result.as_str(),
                t.container,
                t.pod,
                t.namespace,
                t.pod_uid,
            ])
            .inc();
        if result == ProbeResult::Successful {
            self.0
                .duration
                .with_label_values(&[probe.as_str(), t.container, t.pod, t.namespace])
                .observe(took.as_secs_f64());
        }
    }

    /// Counts a probe worker that panicked (it is restarted).
    pub fn worker_panicked(&self, probe: ProbeType) {
        self.0
            .worker_panics
            .with_label_values(&[probe.as_str()])
            .inc();
    }

    /// Drops every series of one container's `probe` (its worker stopped).
    pub fn forget(&self, probe: ProbeType, t: ProbeTarget<'_>) {
        for r in [
            ProbeResult::Successful,
            ProbeResult::Failed,
            ProbeResult::Unknown,
        ] {
            let _ = self.0.total.remove_label_values(&[
                probe.as_str(),
                r.as_str(),
                t.container,
                t.pod,
                t.namespace,
                t.pod_uid,
            ]);
        }
        let _ =
            self.0
                .duration
                .remove_label_values(&[probe.as_str(), t.container, t.pod, t.namespace]);
    }

    /// The text exposition of the families.
    pub fn encode(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.0.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_results_and_times_successes() {
        let m = ProbeMetrics::new();
        let t = ProbeTarget {
            container: "app",
            pod: "web",
            namespace: "default",
            pod_uid: "u1",
        };
        m.observe(
            ProbeType::Readiness,
            ProbeResult::Successful,
            t,
            Duration::from_millis(3),
        );
        m.observe(
            ProbeType::Readiness,
            ProbeResult::Failed,
            t,
            Duration::from_millis(900),
        );
        m.observe(
            ProbeType::Liveness,
            ProbeResult::Successful,
            t,
            Duration::from_millis(1),
        );
        let text = m.encode();
        assert!(text.contains("# HELP prober_probe_total [BETA] Cumulative number of a liveness, readiness or startup probe for a container by result.\n"), "{text}");
        assert!(text.contains("# TYPE prober_probe_total counter\n"));
        assert!(text.contains(
            "prober_probe_total{container=\"app\",namespace=\"default\",pod=\"web\",pod_uid=\"u1\",probe_type=\"Readiness\",result=\"failed\"} 1\n"
        ), "{text}");
        assert!(text.contains(
            "prober_probe_duration_seconds_count{container=\"app\",namespace=\"default\",pod=\"web\",probe_type=\"Readiness\"} 1\n"
        ), "{text}");
        m.forget(ProbeType::Readiness, t);
        let text = m.encode();
        let per_container = |l: &&str| l.contains("pod_uid=") || l.contains("pod=");
        assert!(
            !text
                .lines()
                .filter(per_container)
                .any(|l| l.contains("Readiness")),
            "{text}"
        );
        assert!(text
            .lines()
            .filter(per_container)
            .any(|l| l.contains("Liveness")));
    }

    #[test]
    fn worker_panics_are_counted_by_probe_type_from_zero() {
        let m = ProbeMetrics::new();
        let text = m.encode();
        assert!(
            text.contains("# TYPE prober_probe_worker_panics_total counter\n"),
            "{text}"
        );
        assert!(text.contains("prober_probe_worker_panics_total{probe_type=\"Startup\"} 0\n"));
        m.worker_panicked(ProbeType::Liveness);
        let text = m.encode();
        assert!(
            text.contains("prober_probe_worker_panics_total{probe_type=\"Liveness\"} 1\n"),
            "{text}"
        );
    }
}
