//! Pod admission before a pod starts (`pkg/kubelet/lifecycle/predicate.go`): the scheduler's
//! checks the kubelet repeats on the node, in the scheduler's order, the first failure giving
//! the reason and message the pod fails with.
//!
//! - Resources (`noderesources` fit): pods, cpu, memory, huge pages against node allocatable
//!   (`crate::cm::node`, less the hard eviction memory threshold, as the Node reports it) minus
//!   what the node's other active pods request: reason `OutOf<resource>`, message
//!   `Node didn't have enough resource: <r>, requested: N, used: N, capacity: N`. Extended
//!   resources the node does not have are ignored, as the kubelet ignores them.
//! - `NodeAffinity` (nodeSelector and required node affinity), `NodeName`, `NodePorts`
//!   (host ports in use by other pods): message `Predicate <name> failed: <scheduler reason>`.
//! - `TaintToleration`: a NoExecute taint on the Node the pod does not tolerate (not for static
//!   pods).
//!
//! The Node's labels and taints come from the API's Node object when there is one, else from
//! the node the kubelet would register (its name and `--node-labels`), as `getNodeAnyWay`.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};
use parking_lot::RwLock;

use crate::cm::node::NodeResources;
use crate::kubelet::Kubelet;

/// A refusal: the reason and message the pod fails with.
pub type Refusal = (String, String);

/// What admission knows of the node.
#[derive(Debug, Clone, Default)]
pub struct NodeView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    /// Allocatable cpu (milli), memory (bytes), huge pages; pods separately.
    pub allocatable: NodeResources,
    pub max_pods: i64,
}

impl NodeView {
    /// Labels and taints from the API's Node object.
    pub fn with_node(mut self, node: &Node) -> Self {
        if let Some(l) = &node.metadata.labels {
            self.labels = l.clone();
        }
        self.taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        self
    }
}

fn is_static(pod: &Pod) -> bool {
    crate::mirror::is_static_pod(pod)
}

/// The admission checks for `pod` among `others` (the node's other active pods).
pub fn admit(pod: &Pod, others: &[Pod], node: &NodeView) -> Result<(), Refusal> {
    fits_resources(pod, others, node)?;
    let predicate = |name: &str, desc: &str| {
        Err((name.to_string(), format!("Predicate {name} failed: {desc}")))
    };
    if !matches_node_affinity(pod, node) {
        return predicate("NodeAffinity", "node(s) didn't match Node selector");
    }
    let spec = pod.spec.as_ref();
    if let Some(n) = spec.and_then(|s| s.node_name.as_deref()) {
        if !n.is_empty() && n != node.name {
            return predicate("NodeName", "node(s) didn't match the requested node name");
        }
    }
    if ports_conflict(pod, others) {
        return predicate(
            "NodePorts",
            "node(s) didn't have free ports for the requested pod ports",
        );
    }
    if !is_static(pod) {
        let tolerations = spec
            .and_then(|s| s.tolerations.as_deref())
            .unwrap_or_default();
        let untolerated = node
            .taints
            .iter()
            .filter(|t| t.effect == "NoExecute")
            .any(|t| !tolerations.iter().any(|tol| tolerates(tol, t)));
        if untolerated {
            return predicate(
                "TaintToleration",
                "node(s) had taints that the pod didn't tolerate",
            );
        }
    }
    Ok(())
}

fn insufficient(resource: &str, requested: i64, used: i64, capacity: i64) -> Refusal {
    (
        format!("OutOf{resource}"),
        format!(
            "Node didn't have enough resource: {resource}, requested: {requested}, used: {used}, capacity: {capacity}"
        ),
    )
}

fn fits_resources(pod: &Pod, others: &[Pod], node: &NodeView) -> Result<(), Refusal> {
    let used_pods = others.len() as i64;
    if used_pods + 1 > node.max_pods {
        return Err(insufficient("pods", 1, used_pods, node.max_pods));
    }
    let want = crate::cm::qos::pod_totals(pod);
    let want_pages = crate::cm::qos::pod_hugepages(pod);
    if want.cpu_request_milli == 0 && want.memory_request == 0 && want_pages.is_empty() {
        return Ok(());
    }
    let (mut cpu, mut mem) = (0i64, 0i64);
    let mut pages: BTreeMap<u64, i64> = BTreeMap::new();
    for o in others {
        let t = crate::cm::qos::pod_totals(o);
        cpu = cpu.saturating_add(t.cpu_request_milli);
        mem = mem.saturating_add(t.memory_request);
        for (size, b) in crate::cm::qos::pod_hugepages(o) {
            *pages.entry(size).or_insert(0) += b;
        }
    }
    let a = &node.allocatable;
    if let Some(cap) = a.cpu_milli {
        if want.cpu_request_milli > 0 && cap < cpu.saturating_add(want.cpu_request_milli) {
            return Err(insufficient("cpu", want.cpu_request_milli, cpu, cap));
        }
    }
    if let Some(cap) = a.memory {
        if want.memory_request > 0 && cap < mem.saturating_add(want.memory_request) {
            return Err(insufficient("memory", want.memory_request, mem, cap));
        }
    }
    for (size, bytes) in want_pages {
        let cap = a.hugepages.get(&size).copied().unwrap_or(0);
        let used = pages.get(&size).copied().unwrap_or(0);
        if bytes > 0 && cap < used.saturating_add(bytes) {
            let name = crate::cm::node::hugepage_resource_name(size);
            return Err(insufficient(&name, bytes, used, cap));
        }
    }
    Ok(())
}

/// nodeSelector and the required node affinity (`GetRequiredNodeAffinity(pod).Match`).
pub fn matches_node_affinity(pod: &Pod, node: &NodeView) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    if let Some(sel) = &spec.node_selector {
        if !sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)) {
            return false;
        }
    }
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice());
    match terms {
        None => true,
        // Terms are ORed; an empty term matches nothing.
        Some(terms) => terms.iter().any(|t| term_matches(t, node)),
    }
}

fn term_matches(t: &NodeSelectorTerm, node: &NodeView) -> bool {
    let exprs = t.match_expressions.as_deref().unwrap_or_default();
    let fields = t.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, node.labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name").then_some(node.name.as_str());
            requirement_matches(r, value)
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let int = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (value.and_then(int), values.first().and_then(|b| int(b)))
            else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

/// Whether `tol` tolerates `taint` (`Toleration.ToleratesTaint`).
pub fn tolerates(tol: &Toleration, taint: &Taint) -> bool {
    if let Some(e) = tol.effect.as_deref().filter(|e| !e.is_empty()) {
        if e != taint.effect {
            return false;
        }
    }
    let key = tol.key.as_deref().unwrap_or("");
    let exists = tol.operator.as_deref() == Some("Exists");
    if key.is_empty() {
        return exists;
    }
    if key != taint.key {
        return false;
    }
    exists || tol.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
}

/// (protocol, host IP, host port) of every host port a pod asks for.
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    spec.init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let hp = p.host_port.filter(|hp| *hp > 0)?;
            let ip = p
                .host_ip
                .clone()
                .filter(|i| !i.is_empty())
                .unwrap_or_else(|| "0.0.0.0".into());
            Some((p.protocol.clone().unwrap_or_else(|| "TCP".into()), ip, hp))
        })
        .collect()
}

fn ports_conflict(pod: &Pod, others: &[Pod]) -> bool {
    let wanted = host_ports(pod);
    if wanted.is_empty() {
        return false;
    }
    let used: Vec<_> = others.iter().flat_map(host_ports).collect();
    wanted.iter().any(|(proto, ip, port)| {
        used.iter().any(|(p2, ip2, port2)| {
            proto == p2 && port == port2 && (ip == ip2 || ip == "0.0.0.0" || ip2 == "0.0.0.0")
        })
    })
}

/// The Node object as the API last showed it (kept by [`run_node_watch`]).
pub type NodeCache = Arc<RwLock<Option<Node>>>;

/// Registers the predicate admission handler on the kubelet. `base` is the node as the
/// kubelet knows it locally; `node` the API's Node, when there is one.
pub fn register(kl: &Arc<Kubelet>, base: NodeView, node: NodeCache) {
    let weak: Weak<Kubelet> = Arc::downgrade(kl);
    kl.add_admit_handler(Arc::new(move |pod: &Pod| {
        let Some(kl) = weak.upgrade() else {
            return Ok(());
        };
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let others: Vec<Pod> = kl
            .active_pods()
            .into_iter()
            .filter(|p| p.metadata.uid.as_deref() != Some(uid))
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .collect();
        let view = match node.read().as_ref() {
            Some(n) => base.clone().with_node(n),
            None => base.clone(),
        };
        admit(pod, &others, &view)
    }));
}

/// Keeps `cache` at the API's Node named `name` (a watch on that one object).
pub async fn run_node_watch(client: kube::Client, name: String, cache: NodeCache) {
    use futures_util::StreamExt;
    use kube::runtime::watcher::{self, Event};
    use kube::runtime::WatchStreamExt;
    let api: kube::Api<Node> = kube::Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher::watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(Event::Apply(n)) | Ok(Event::InitApply(n)) => *cache.write() = Some(n),
            Ok(Event::Delete(_)) => *cache.write() = None,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "watch of the Node for admission failed; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> NodeView {
        NodeView {
            name: "n1".into(),
            labels: [("disk".to_string(), "ssd".to_string())].into(),
            taints: Vec::new(),
            allocatable: NodeResources {
                cpu_milli: Some(2000),
                memory: Some(1 << 30),
                ..Default::default()
            },
            max_pods: 3,
        }
    }

    fn pod(spec: serde_json::Value) -> Pod {
        let mut s = json!({"containers": [{"name": "c", "image": "i"}]});
        s.as_object_mut()
            .unwrap()
            .extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({"metadata": {"name": "p", "uid": "u"}, "spec": s})).unwrap()
    }

    fn requests(cpu: &str, mem: &str) -> Pod {
        pod(json!({"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}))
    }

    #[test]
    fn resources_are_checked_against_allocatable_minus_other_pods() {
        let n = node();
        assert!(admit(&requests("1", "512Mi"), &[], &n).is_ok());
        let (reason, msg) = admit(&requests("3", "1Mi"), &[], &n).unwrap_err();
        assert_eq!(reason, "OutOfcpu");
        assert_eq!(
            msg,
            "Node didn't have enough resource: cpu, requested: 3000, used: 0, capacity: 2000"
        );
        let other = requests("1500m", "768Mi");
        let (reason, msg) =
            admit(&requests("100m", "512Mi"), std::slice::from_ref(&other), &n).unwrap_err();
        assert_eq!(reason, "OutOfmemory");
        assert!(
            msg.contains("used: 805306368, capacity: 1073741824"),
            "{msg}"
        );
        let (reason, _) =
            admit(&pod(json!({})), &[other.clone(), other.clone(), other], &n).unwrap_err();
        assert_eq!(reason, "OutOfpods");
    }

    #[test]
    fn selectors_affinity_node_name_ports_and_taints() {
        let mut n = node();
        assert!(admit(&pod(json!({"nodeSelector": {"disk": "ssd"}})), &[], &n).is_ok());
        let (r, m) = admit(&pod(json!({"nodeSelector": {"disk": "hdd"}})), &[], &n).unwrap_err();
        assert_eq!(r, "NodeAffinity");
        assert_eq!(
            m,
            "Predicate NodeAffinity failed: node(s) didn't match Node selector"
        );
        let aff = |op: &str, vals: serde_json::Value| {
            pod(
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": op, "values": vals}]}]}}}}),
            )
        };
        assert!(admit(&aff("In", json!(["ssd", "nvme"])), &[], &n).is_ok());
        assert!(admit(&aff("NotIn", json!(["ssd"])), &[], &n).is_err());
        assert!(admit(&aff("Exists", json!([])), &[], &n).is_ok());
        let (r, _) = admit(&pod(json!({"nodeName": "n2"})), &[], &n).unwrap_err();
        assert_eq!(r, "NodeName");
        let web = pod(json!({"containers": [{"name": "c", "image": "i",
            "ports": [{"containerPort": 80, "hostPort": 8080}]}]}));
        let (r, _) = admit(&web, std::slice::from_ref(&web), &n).unwrap_err();
        assert_eq!(r, "NodePorts");
        n.taints = vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoExecute".into(),
            ..Default::default()
        }];
        let (r, m) = admit(&pod(json!({})), &[], &n).unwrap_err();
        assert_eq!(r, "TaintToleration");
        assert_eq!(
            m,
            "Predicate TaintToleration failed: node(s) had taints that the pod didn't tolerate"
        );
        let tolerant = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal",
            "value": "db", "effect": "NoExecute"}]}),
        );
        assert!(admit(&tolerant, &[], &n).is_ok());
    }
}
