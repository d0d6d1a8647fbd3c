//! The QoS tiers' settings (`pkg/kubelet/cm/qos_container_manager_linux.go`), recomputed as
//! pods come and go: `burstable` gets the CPU shares of the sum of its pods' CPU requests,
//! `besteffort` the minimum (2), and both unbounded huge pages. Under the `MemoryQoS` gate (off
//! by default; cgroup v2 only) the tiers also get `memory.min`: the Burstable pods' memory
//! requests on `burstable`, Guaranteed plus Burstable on `kubepods`. The `QOSReserved` memory
//! limits are alpha and not implemented. Pure: [`super::manager`] writes the result.

use k8s_openapi::api::core::v1::Pod;

use super::qos::{pod_qos_class, pod_totals, QosClass};
use super::{milli_cpu_to_shares, ResourceConfig, MIN_SHARES};

/// The limit the kubelet writes for "unbounded" huge pages on the QoS tiers (`1 << 62`).
pub const HUGEPAGES_UNBOUNDED: i64 = 1 << 62;

/// What the three QoS levels get on one update. `guaranteed` is `kubepods` itself: it only
/// gets `memory.min` under memory QoS (its limits are node allocatable's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QosConfigs {
    pub guaranteed: ResourceConfig,
    pub burstable: ResourceConfig,
    pub besteffort: ResourceConfig,
}

/// Whether a pod counts for its tier: the kubelet's active pods exclude those that finished.
fn is_active(pod: &Pod) -> bool {
    !matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// A pod's request of `resource` including its overhead (`resource.PodRequests`).
fn request_with_overhead(pod: &Pod, resource: &str) -> i64 {
    let totals = pod_totals(pod);
    let base = if resource == "cpu" {
        totals.cpu_request_milli
    } else {
        totals.memory_request
    };
    let overhead = pod
        .spec
        .as_ref()
        .and_then(|s| s.overhead.as_ref())
        .and_then(|o| o.get(resource))
        .and_then(|q| crate::resource::parse_quantity(&q.0).ok())
        .map(|q| {
            if resource == "cpu" {
                q.milli_value()
            } else {
                q.value()
            }
        })
        .unwrap_or(0);
    base.saturating_add(overhead)
}

/// The QoS tiers' settings for the active pods among `pods`. `hugepage_sizes` are the node's
/// page sizes in bytes; `memory_qos` is the `MemoryQoS` gate on a cgroup v2 node.
pub fn qos_configs<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    hugepage_sizes: &[u64],
    memory_qos: bool,
) -> QosConfigs {
    let mut burstable_cpu = 0i64;
    let mut burstable_mem = 0i64;
    let mut guaranteed_mem = 0i64;
    for pod in pods.into_iter().filter(|p| is_active(p)) {
        match pod_qos_class(pod) {
            QosClass::Burstable => {
                burstable_cpu = burstable_cpu.saturating_add(request_with_overhead(pod, "cpu"));
                burstable_mem = burstable_mem.saturating_add(request_with_overhead(pod, "memory"));
            }
            QosClass::Guaranteed => {
                guaranteed_mem =
                    guaranteed_mem.saturating_add(request_with_overhead(pod, "memory"));
            }
            QosClass::BestEffort => {}
        }
    }
    let unbounded = (!hugepage_sizes.is_empty()).then(|| {
        hugepage_sizes
            .iter()
            .map(|s| (*s, HUGEPAGES_UNBOUNDED))
            .collect()
    });
    let mut c = QosConfigs {
        guaranteed: ResourceConfig::default(),
        burstable: ResourceConfig {
            cpu_shares: Some(milli_cpu_to_shares(burstable_cpu)),
            hugepage_limits: unbounded.clone(),
            ..Default::default()
        },
        besteffort: ResourceConfig {
            cpu_shares: Some(MIN_SHARES),
            hugepage_limits: unbounded,
            ..Default::default()
        },
    };
    if memory_qos {
        if burstable_mem > 0 {
            c.burstable.memory_min = Some(burstable_mem);
        }
        let guaranteed_min = guaranteed_mem.saturating_add(burstable_mem);
        if guaranteed_min > 0 {
            c.guaranteed.memory_min = Some(guaranteed_min);
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(resources: serde_json::Value, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]},
            "status": {"phase": phase}
        }))
        .unwrap()
    }

    #[test]
    fn burstable_shares_follow_the_pods_requests() {
        let pods = vec![
            pod(json!({"requests": {"cpu": "250m"}}), "Running"),
            pod(
                json!({"requests": {"cpu": "500m", "memory": "64Mi"}}),
                "Pending",
            ),
            // Guaranteed and BestEffort pods do not count for burstable.
            pod(json!({"limits": {"cpu": "1", "memory": "64Mi"}}), "Running"),
            pod(json!({}), "Running"),
            // A finished pod no longer counts.
            pod(json!({"requests": {"cpu": "2"}}), "Succeeded"),
        ];
        let c = qos_configs(&pods, &[], false);
        assert_eq!(c.burstable.cpu_shares, Some(milli_cpu_to_shares(750)));
        assert_eq!(c.burstable.cpu_shares, Some(768));
        assert_eq!(c.besteffort.cpu_shares, Some(2));
        assert_eq!(c.guaranteed, ResourceConfig::default());
        assert_eq!(c.burstable.hugepage_limits, None);
        assert_eq!(c.burstable.memory_min, None);
        // No burstable pod left: the minimum.
        let c = qos_configs(&pods[2..], &[], false);
        assert_eq!(c.burstable.cpu_shares, Some(2));
    }

    #[test]
    fn overhead_counts_with_the_requests() {
        let mut p = pod(json!({"requests": {"cpu": "100m"}}), "Running");
        p.spec.as_mut().unwrap().overhead = Some(
            [(
                "cpu".to_string(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("150m".into()),
            )]
            .into(),
        );
        let c = qos_configs([&p], &[], false);
        assert_eq!(c.burstable.cpu_shares, Some(milli_cpu_to_shares(250)));
    }

    #[test]
    fn huge_pages_are_unbounded_on_the_tiers() {
        let c = qos_configs([], &[2 << 20, 1 << 30], false);
        let want = Some(
            [
                (2 << 20, HUGEPAGES_UNBOUNDED),
                (1 << 30, HUGEPAGES_UNBOUNDED),
            ]
            .into(),
        );
        assert_eq!(c.burstable.hugepage_limits, want);
        assert_eq!(c.besteffort.hugepage_limits, want);
        assert_eq!(c.guaranteed.hugepage_limits, None);
    }

    #[test]
    fn memory_qos_sets_memory_min() {
        let pods = vec![
            pod(json!({"requests": {"memory": "100Mi"}}), "Running"),
            pod(
                json!({"limits": {"cpu": "1", "memory": "200Mi"}}),
                "Running",
            ),
        ];
        let c = qos_configs(&pods, &[], true);
        assert_eq!(c.burstable.memory_min, Some(100 << 20));
        assert_eq!(c.guaranteed.memory_min, Some(300 << 20));
        assert_eq!(c.besteffort.memory_min, None);
    }
}
