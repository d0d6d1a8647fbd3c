//! The Node object as the kubelet builds it (`kubelet_node_status.go` `initialNode`,
//! `nodestatus/setters.go`): labels, taints, addresses, capacity and allocatable, nodeInfo,
//! daemon endpoints, images and the four conditions, and the comparison that decides whether a
//! status is worth a PATCH (everything but the heartbeat times). Pure: the loops in
//! [`super`] feed it what they observed.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

/// The node's labels the kubelet owns (`updateDefaultLabels`).
pub const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub const LABEL_OS: &str = "kubernetes.io/os";
pub const LABEL_ARCH: &str = "kubernetes.io/arch";
pub const LABEL_OS_BETA: &str = "beta.kubernetes.io/os";
pub const LABEL_ARCH_BETA: &str = "beta.kubernetes.io/arch";
/// The kubelet's annotation for controller-managed attach/detach (on by default).
pub const ANNOTATION_CMAD: &str = "volumes.kubernetes.io/controller-managed-attach-detach";
/// At most this many names per image in the status (`MaxNamesPerImageInNodeStatus`).
pub const MAX_NAMES_PER_IMAGE: usize = 5;

/// Go's `GOOS`.
pub fn go_os() -> &'static str {
    std::env::consts::OS
}

/// Go's `GOARCH` for this machine.
pub fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// What does not change while the agent runs.
#[derive(Debug, Clone, Default)]
pub struct NodeInputs {
    pub name: String,
    /// The `kubernetes.io/hostname` label (the node name unless overridden).
    pub hostname: String,
    /// `--node-labels`.
    pub labels: BTreeMap<String, String>,
    /// `registerWithTaints`.
    pub taints: Vec<Taint>,
    /// `--node-ip` or the host's address.
    pub internal_ip: String,
    pub capacity: BTreeMap<String, Quantity>,
    pub allocatable: BTreeMap<String, Quantity>,
    /// nodeInfo without the runtime version.
    pub info: NodeSystemInfo,
    /// The kubelet API port (`daemonEndpoints.kubeletEndpoint.Port`).
    pub port: u16,
    /// `nodeStatusMaxImages` (-1: all).
    pub max_images: i32,
}

/// What the status loop observed this round.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Ready, and why not (the health checks' message).
    pub ready: bool,
    pub ready_message: String,
    /// (type, status, reason, message) of each pressure condition, from the eviction manager.
    pub pressure: Vec<(String, bool, String, String)>,
    /// `containerd://1.6.20`, when the runtime answered.
    pub runtime_version: Option<String>,
    /// (names, size) of every image.
    pub images: Vec<(Vec<String>, i64)>,
    /// Device plugins' extended resources (capacity, allocatable).
    pub devices: crate::cm::devicemanager::DeviceCapacity,
}

/// A quantity of bytes as Go's `BinarySI` canonical form (`16314404Ki`).
pub fn bytes_quantity(v: i64) -> Quantity {
    const SUFFIXES: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if v.abs() < 1024 || v % 1024 != 0 {
        return Quantity(v.to_string());
    }
    let (mut n, mut i) = (v / 1024, 0);
    while i + 1 < SUFFIXES.len() && n % 1024 == 0 && n != 0 {
        n /= 1024;
        i += 1;
    }
    Quantity(format!("{n}{}", SUFFIXES[i]))
}

/// A CPU amount in millicores as Go's `DecimalSI` (`4`, `3500m`).
pub fn cpu_quantity(milli: i64) -> Quantity {
    if milli % 1000 == 0 {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// The Node the kubelet creates: labels, taints and the controller-managed attach/detach
/// annotation, with `status` filled in.
pub fn initial_node(inputs: &NodeInputs, status: NodeStatus) -> Node {
    let mut labels = default_labels(inputs);
    for (k, v) in &inputs.labels {
        labels.insert(k.clone(), v.clone());
    }
    Node {
        metadata: ObjectMeta {
            name: Some(inputs.name.clone()),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                ANNOTATION_CMAD.to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!inputs.taints.is_empty()).then(|| inputs.taints.clone()),
            ..Default::default()
        }),
        status: Some(status),
    }
}

/// The labels the kubelet always sets.
pub fn default_labels(inputs: &NodeInputs) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_HOSTNAME.to_string(), inputs.hostname.clone()),
        (LABEL_OS.to_string(), go_os().to_string()),
        (LABEL_ARCH.to_string(), go_arch().to_string()),
        (LABEL_OS_BETA.to_string(), go_os().to_string()),
        (LABEL_ARCH_BETA.to_string(), go_arch().to_string()),
    ])
}

/// The changes the kubelet makes to a Node that already exists (`updateDefaultLabels`,
/// `reconcileCMADAnnotationWithExistingNode`): its default labels and the annotation as this
/// kubelet would set them. `None` when nothing needs changing; else the merge patch.
pub fn reconcile_existing(inputs: &NodeInputs, existing: &Node) -> Option<serde_json::Value> {
    let have = existing.metadata.labels.clone().unwrap_or_default();
    let mut labels = serde_json::Map::new();
    for (k, v) in default_labels(inputs) {
        if have.get(&k) != Some(&v) {
            labels.insert(k, v.into());
        }
    }
    let annotated = existing
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_CMAD))
        .is_some_and(|v| v == "true");
    if labels.is_empty() && annotated {
        return None;
    }
    let mut meta = serde_json::Map::new();
    if !labels.is_empty() {
        meta.insert("labels".into(), labels.into());
    }
    if !annotated {
        meta.insert(
            "annotations".into(),
            serde_json::json!({ ANNOTATION_CMAD: "true" }),
        );
    }
    Some(serde_json::json!({ "metadata": meta }))
}

fn condition(
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
    prev: Option<&NodeStatus>,
) -> NodeCondition {
    let status = if status { "True" } else { "False" }.to_string();
    let transition = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    NodeCondition {
        type_: kind.to_string(),
        status,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(now.clone()),
        last_transition_time: Some(transition),
    }
}

/// `base` plus the device plugins' counts (decimal quantities, as the kubelet sets them).
fn with_devices(
    base: &BTreeMap<String, Quantity>,
    devices: &BTreeMap<String, i64>,
) -> BTreeMap<String, Quantity> {
    let mut out = base.clone();
    for (name, n) in devices {
        out.insert(name.clone(), Quantity(n.to_string()));
    }
    out
}

/// The node's status at `now`: transition times carried over from `prev` while a condition's
/// status stays.
pub fn node_status(
    inputs: &NodeInputs,
    observed: &Observed,
    prev: Option<&NodeStatus>,
    now: &Time,
) -> NodeStatus {
    let mut conditions: Vec<NodeCondition> = observed
        .pressure
        .iter()
        .map(|(kind, status, reason, message)| condition(kind, *status, reason, message, now, prev))
        .collect();
    let (reason, message) = if observed.ready {
        ("KubeletReady", observed.ready_message.as_str())
    } else {
        ("KubeletNotReady", observed.ready_message.as_str())
    };
    conditions.push(condition(
        "Ready",
        observed.ready,
        reason,
        message,
        now,
        prev,
    ));

    let mut images: Vec<&(Vec<String>, i64)> = observed.images.iter().collect();
    images.sort_by_key(|i| std::cmp::Reverse(i.1));
    if inputs.max_images >= 0 {
        images.truncate(inputs.max_images as usize);
    }
    let images = images
        .into_iter()
        .map(|(names, size)| ContainerImage {
            names: Some(names.iter().take(MAX_NAMES_PER_IMAGE).cloned().collect()),
            size_bytes: Some(*size),
        })
        .collect();

    let mut info = inputs.info.clone();
    info.container_runtime_version = observed
        .runtime_version
        .clone()
        .or_else(|| {
            prev.and_then(|p| p.node_info.as_ref())
                .map(|i| i.container_runtime_version.clone())
        })
        .unwrap_or_default();
    NodeStatus {
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: inputs.internal_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: inputs.hostname.clone(),
            },
        ]),
        capacity: Some(with_devices(&inputs.capacity, &observed.devices.capacity)),
        allocatable: Some(with_devices(
            &inputs.allocatable,
            &observed.devices.allocatable,
        )),
        conditions: Some(conditions),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(inputs.port),
            }),
        }),
        images: Some(images),
        node_info: Some(info),
        ..Default::default()
    }
}

/// Whether `new` differs from `old` in anything but the conditions' heartbeat times
/// (`nodeStatusHasChanged`).
/// Only the fields the kubelet sets count, and only the conditions it sets: another
/// controller's condition (`NetworkUnavailable`) or field is no reason for a PATCH.
pub fn changed(old: Option<&NodeStatus>, new: &NodeStatus) -> bool {
    match old {
        None => true,
        Some(old) => !differences(old, new).is_empty(),
    }
}

/// The status fields (as the API names them) in which `new` differs from `old`, heartbeats
/// and other controllers' conditions aside.
pub fn differences(old: &NodeStatus, new: &NodeStatus) -> Vec<&'static str> {
    let ours: Vec<&str> = new
        .conditions
        .iter()
        .flatten()
        .map(|c| c.type_.as_str())
        .collect();
    let strip = |s: &NodeStatus| {
        let conditions = s.conditions.as_ref().map(|cs| {
            let mut cs: Vec<NodeCondition> = cs
                .iter()
                .filter(|c| ours.contains(&c.type_.as_str()))
                .cloned()
                .map(|mut c| {
                    c.last_heartbeat_time = None;
                    c
                })
                .collect();
            cs.sort_by(|a, b| a.type_.cmp(&b.type_));
            cs
        });
        NodeStatus {
            addresses: s.addresses.clone(),
            allocatable: s.allocatable.clone(),
            capacity: s.capacity.clone(),
            conditions,
            daemon_endpoints: s.daemon_endpoints.clone(),
            images: s.images.clone(),
            node_info: s.node_info.clone(),
            ..Default::default()
        }
    };
    let (a, b) = (strip(old), strip(new));
    let mut out = Vec::new();
    if a.addresses != b.addresses {
        out.push("addresses");
    }
    if a.allocatable != b.allocatable {
        out.push("allocatable");
    }
    if a.capacity != b.capacity {
        out.push("capacity");
    }
    if a.conditions != b.conditions {
        out.push("conditions");
    }
    if a.daemon_endpoints != b.daemon_endpoints {
        out.push("daemonEndpoints");
    }
    if a.images != b.images {
        out.push("images");
    }
    if a.node_info != b.node_info {
        out.push("nodeInfo");
    }
    out
}

/// The Ready condition's status in `s`, if any.
pub fn ready(s: &NodeStatus) -> Option<bool> {
    s.conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap())
    }

    fn inputs() -> NodeInputs {
        NodeInputs {
            name: "n1".into(),
            hostname: "n1".into(),
            internal_ip: "192.0.2.1".into(),
            port: 10250,
            max_images: 2,
            ..Default::default()
        }
    }

    fn observed(ready: bool) -> Observed {
        Observed {
            devices: Default::default(),
            ready,
            ready_message: if ready {
                "kubelet is posting ready status".into()
            } else {
                "container runtime is down".into()
            },
            pressure: vec![(
                "MemoryPressure".into(),
                false,
                "KubeletHasSufficientMemory".into(),
                "kubelet has sufficient memory available".into(),
            )],
            runtime_version: Some("containerd://1.6.20".into()),
            images: vec![
                (vec!["a".into()], 10),
                (vec!["b".into()], 30),
                (vec!["c".into()], 20),
            ],
        }
    }

    #[test]
    fn quantities_as_go_writes_them() {
        assert_eq!(bytes_quantity(16_706_150_400).0, "16314600Ki");
        assert_eq!(bytes_quantity(2 * 1024 * 1024 * 1024).0, "2Gi");
        assert_eq!(bytes_quantity(1000).0, "1000");
        assert_eq!(bytes_quantity(1025).0, "1025");
        assert_eq!(bytes_quantity(0).0, "0");
        assert_eq!(cpu_quantity(4000).0, "4");
        assert_eq!(cpu_quantity(3500).0, "3500m");
    }

    #[test]
    fn heartbeats_alone_are_no_change_and_transitions_keep_their_time() {
        let i = inputs();
        let s1 = node_status(&i, &observed(true), None, &t(100));
        let s2 = node_status(&i, &observed(true), Some(&s1), &t(110));
        assert!(!changed(Some(&s1), &s2), "only heartbeats moved");
        let ready = |s: &NodeStatus| {
            s.conditions
                .as_ref()
                .unwrap()
                .iter()
                .find(|c| c.type_ == "Ready")
                .cloned()
                .unwrap()
        };
        assert_eq!(ready(&s2).last_heartbeat_time, Some(t(110)));
        assert_eq!(ready(&s2).last_transition_time, Some(t(100)));
        let s3 = node_status(&i, &observed(false), Some(&s2), &t(120));
        assert!(changed(Some(&s2), &s3));
        let r = ready(&s3);
        assert_eq!(r.status, "False");
        assert_eq!(r.reason.as_deref(), Some("KubeletNotReady"));
        assert_eq!(r.message.as_deref(), Some("container runtime is down"));
        assert_eq!(r.last_transition_time, Some(t(120)));
        assert_eq!(ready(&s1).reason.as_deref(), Some("KubeletReady"));
        assert!(changed(None, &s1));
        // Another controller's condition is not ours to compare.
        let mut other = s2.clone();
        other.conditions.as_mut().unwrap().push(NodeCondition {
            type_: "NetworkUnavailable".into(),
            status: "False".into(),
            ..Default::default()
        });
        assert!(!changed(Some(&other), &s2));
    }

    #[test]
    fn images_largest_first_and_capped() {
        let s = node_status(&inputs(), &observed(true), None, &t(1));
        let names: Vec<_> = s
            .images
            .unwrap()
            .iter()
            .map(|i| i.names.clone().unwrap()[0].clone())
            .collect();
        assert_eq!(names, ["b", "c"]);
        let conds: Vec<_> = s
            .conditions
            .unwrap()
            .iter()
            .map(|c| c.type_.clone())
            .collect();
        assert_eq!(conds, ["MemoryPressure", "Ready"]);
        assert_eq!(
            s.node_info.unwrap().container_runtime_version,
            "containerd://1.6.20"
        );
    }

    #[test]
    fn an_existing_node_gets_the_default_labels() {
        let i = inputs();
        let node = initial_node(&i, NodeStatus::default());
        assert!(reconcile_existing(&i, &node).is_none());
        let mut other = node.clone();
        other
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_HOSTNAME.into(), "old".into());
        other.metadata.annotations = None;
        let p = reconcile_existing(&i, &other).unwrap();
        assert_eq!(p["metadata"]["labels"][LABEL_HOSTNAME], "n1");
        assert_eq!(p["metadata"]["annotations"][ANNOTATION_CMAD], "true");
    }
}
