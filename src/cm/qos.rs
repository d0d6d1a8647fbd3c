//! Pod QoS classes and the effective pod resource totals, as `pkg/apis/core/helper/qos` and
//! `pkg/kubelet/cm/helpers_linux.go` compute them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A pod's quality-of-service class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The API spelling (`status.qosClass`).
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// A parsed quantity, or 0 when absent. Quantities were validated when the pod was admitted.
fn quantity(q: Option<&Quantity>) -> Option<(i64, i64)> {
    let q = q?;
    crate::resource::parse_quantity(&q.0)
        .ok()
        .map(|p| (p.milli_value(), p.value()))
}

/// (request, limit) of one resource of a container, in millis for `cpu` and units otherwise.
/// A request left unset defaults to the limit, as API-server defaulting does.
fn request_limit(c: &Container, name: &str) -> (Option<i64>, Option<i64>) {
    let res = c.resources.as_ref();
    let pick = |m: Option<&std::collections::BTreeMap<String, Quantity>>| {
        quantity(m.and_then(|m| m.get(name)))
            .map(|(milli, v)| if name == "cpu" { milli } else { v })
    };
    let limit = pick(res.and_then(|r| r.limits.as_ref()));
    let request = pick(res.and_then(|r| r.requests.as_ref())).or(limit);
    (request, limit)
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.map(|s| s.init_containers.iter().flatten())
        .into_iter()
        .flatten()
        .chain(spec.map(|s| s.containers.iter()).into_iter().flatten())
}

/// The QoS class of a pod: BestEffort when no container requests or limits CPU or memory,
/// Guaranteed when every container has CPU and memory limits equal to its requests.
pub fn pod_qos_class(pod: &Pod) -> QosClass {
    let mut any = false;
    let mut guaranteed = true;
    for c in all_containers(pod) {
        for name in ["cpu", "memory"] {
            let (req, lim) = request_limit(c, name);
            let req = req.filter(|v| *v > 0);
            let lim = lim.filter(|v| *v > 0);
            if req.is_some() || lim.is_some() {
                any = true;
            }
            match (req, lim) {
                (Some(r), Some(l)) if r == l => {}
                _ => guaranteed = false,
            }
        }
    }
    if !any {
        QosClass::BestEffort
    } else if guaranteed {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// Pod-level sums for the pod cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodTotals {
    pub cpu_request_milli: i64,
    pub cpu_limit_milli: i64,
    pub memory_request: i64,
    pub memory_limit: i64,
    pub all_have_cpu_limit: bool,
    pub all_have_memory_limit: bool,
}

/// Effective pod resources: app containers and restartable init containers (sidecars) add up,
/// and each ordinary init container, running alone, raises the total to its own value if larger.
pub fn pod_totals(pod: &Pod) -> PodTotals {
    let mut t = PodTotals {
        all_have_cpu_limit: true,
        all_have_memory_limit: true,
        ..Default::default()
    };
    let Some(spec) = pod.spec.as_ref() else {
        return t;
    };
    let add = |c: &Container, t: &mut PodTotals| {
        let (cr, cl) = request_limit(c, "cpu");
        let (mr, ml) = request_limit(c, "memory");
        t.cpu_request_milli += cr.unwrap_or(0);
        t.memory_request += mr.unwrap_or(0);
        match cl {
            Some(v) if v > 0 => t.cpu_limit_milli += v,
            _ => t.all_have_cpu_limit = false,
        }
        match ml {
            Some(v) if v > 0 => t.memory_limit += v,
            _ => t.all_have_memory_limit = false,
        }
    };
    let mut sidecars = PodTotals {
        all_have_cpu_limit: true,
        all_have_memory_limit: true,
        ..Default::default()
    };
    let mut init_max = PodTotals::default();
    for c in spec.init_containers.iter().flatten() {
        if c.restart_policy.as_deref() == Some("Always") {
            add(c, &mut sidecars);
        } else {
            let mut one = PodTotals {
                all_have_cpu_limit: true,
                all_have_memory_limit: true,
                ..Default::default()
            };
            add(c, &mut one);
            // An init container runs with the sidecars started before it.
            let with = |a: i64, b: i64| a + b;
            init_max.cpu_request_milli = init_max
                .cpu_request_milli
                .max(with(one.cpu_request_milli, sidecars.cpu_request_milli));
            init_max.cpu_limit_milli = init_max
                .cpu_limit_milli
                .max(with(one.cpu_limit_milli, sidecars.cpu_limit_milli));
            init_max.memory_request = init_max
                .memory_request
                .max(with(one.memory_request, sidecars.memory_request));
            init_max.memory_limit = init_max
                .memory_limit
                .max(with(one.memory_limit, sidecars.memory_limit));
            t.all_have_cpu_limit &= one.all_have_cpu_limit;
            t.all_have_memory_limit &= one.all_have_memory_limit;
        }
    }
    for c in &spec.containers {
        add(c, &mut t);
    }
    t.cpu_request_milli += sidecars.cpu_request_milli;
    t.cpu_limit_milli += sidecars.cpu_limit_milli;
    t.memory_request += sidecars.memory_request;
    t.memory_limit += sidecars.memory_limit;
    t.all_have_cpu_limit &= sidecars.all_have_cpu_limit;
    t.all_have_memory_limit &= sidecars.all_have_memory_limit;
    t.cpu_request_milli = t.cpu_request_milli.max(init_max.cpu_request_milli);
    t.cpu_limit_milli = t.cpu_limit_milli.max(init_max.cpu_limit_milli);
    t.memory_request = t.memory_request.max(init_max.memory_request);
    t.memory_limit = t.memory_limit.max(init_max.memory_limit);
    t
}

/// A pod's huge pages in bytes by page size in bytes, from `hugepages-<size>` limits (which
/// equal the requests): app containers and sidecars add up, an ordinary init container alone
/// raises a size to its own value if larger.
pub fn pod_hugepages(pod: &Pod) -> BTreeMap<u64, i64> {
    let mut total: BTreeMap<u64, i64> = BTreeMap::new();
    let mut init_max: BTreeMap<u64, i64> = BTreeMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return total;
    };
    let pages = |c: &Container| -> Vec<(u64, i64)> {
        let res = c.resources.as_ref();
        let map = res
            .and_then(|r| r.limits.as_ref())
            .or_else(|| res.and_then(|r| r.requests.as_ref()));
        map.into_iter()
            .flatten()
            .filter_map(|(name, q)| {
                let size = name.strip_prefix("hugepages-")?;
                let size = crate::resource::parse_quantity(size).ok()?.value();
                let bytes = crate::resource::parse_quantity(&q.0).ok()?.value();
                (size > 0).then_some((size as u64, bytes))
            })
            .collect()
    };
    for c in spec.init_containers.iter().flatten() {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        for (size, bytes) in pages(c) {
            if sidecar {
                *total.entry(size).or_insert(0) += bytes;
            } else {
                let e = init_max.entry(size).or_insert(0);
                *e = (*e).max(bytes);
            }
        }
    }
    for c in &spec.containers {
        for (size, bytes) in pages(c) {
            *total.entry(size).or_insert(0) += bytes;
        }
    }
    for (size, bytes) in init_max {
        let e = total.entry(size).or_insert(0);
        *e = (*e).max(bytes);
    }
    total
}

/// The container's request and limit of `resource` (millicores for `cpu`, bytes for memory).
pub fn container_request_limit(c: &Container, resource: &str) -> (i64, i64) {
    let (r, l) = request_limit(c, resource);
    (r.unwrap_or(0), l.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(containers: serde_json::Value, init: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": containers, "initContainers": init}
        }))
        .unwrap()
    }

    #[test]
    fn qos_classes() {
        let be = pod(json!([{"name": "a", "image": "i"}]), json!([]));
        assert_eq!(pod_qos_class(&be), QosClass::BestEffort);
        let g = pod(
            json!([{"name": "a", "image": "i", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]),
            json!([]),
        );
        assert_eq!(pod_qos_class(&g), QosClass::Guaranteed);
        let b = pod(
            json!([{"name": "a", "image": "i", "resources": {"requests": {"memory": "64Mi"}}}]),
            json!([]),
        );
        assert_eq!(pod_qos_class(&b), QosClass::Burstable);
        let mixed = pod(
            json!([
                {"name": "a", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}},
                {"name": "b", "image": "i"}
            ]),
            json!([]),
        );
        assert_eq!(pod_qos_class(&mixed), QosClass::Burstable);
        let unequal = pod(
            json!([{"name": "a", "image": "i", "resources": {
                "requests": {"cpu": "100m", "memory": "64Mi"},
                "limits": {"cpu": "200m", "memory": "64Mi"}}}]),
            json!([]),
        );
        assert_eq!(pod_qos_class(&unequal), QosClass::Burstable);
    }

    #[test]
    fn totals_take_the_larger_of_init_and_app() {
        let p = pod(
            json!([
                {"name": "a", "image": "i", "resources": {"limits": {"cpu": "100m", "memory": "10Mi"}}},
                {"name": "b", "image": "i", "resources": {"limits": {"cpu": "100m", "memory": "10Mi"}}}
            ]),
            json!([
                {"name": "i1", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "5Mi"}}}
            ]),
        );
        let t = pod_totals(&p);
        assert_eq!(t.cpu_request_milli, 1000);
        assert_eq!(t.cpu_limit_milli, 1000);
        assert_eq!(t.memory_limit, 20 << 20);
        assert!(t.all_have_cpu_limit && t.all_have_memory_limit);
        let partial = pod(
            json!([
                {"name": "a", "image": "i", "resources": {"limits": {"memory": "10Mi"}}},
                {"name": "b", "image": "i"}
            ]),
            json!([]),
        );
        let t = pod_totals(&partial);
        assert!(!t.all_have_memory_limit);
        assert!(!t.all_have_cpu_limit);
    }

    #[test]
    fn sidecars_add_to_the_app_total() {
        let p = pod(
            json!([{"name": "a", "image": "i", "resources": {"requests": {"cpu": "100m"}}}]),
            json!([{"name": "s", "image": "i", "restartPolicy": "Always",
                    "resources": {"requests": {"cpu": "50m"}}}]),
        );
        assert_eq!(pod_totals(&p).cpu_request_milli, 150);
    }
}
