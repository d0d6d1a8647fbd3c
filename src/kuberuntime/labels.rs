//! The labels and annotations the kubelet puts on sandboxes and containers, and reading them
//! back (`pkg/kubelet/kuberuntime/labels.go`). They are how a restarted agent recognises its
//! pods in the runtime: pod identity in labels, container hash and restart count in annotations.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use md5::{Digest, Md5};

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const CONTAINER_TYPE_LABEL: &str = "io.kubernetes.container.type";
/// Which agent instance (node) owns a sandbox or container. The Go kubelet assumes it owns the
/// whole runtime; kubelet-rs filters on this label so that several agents (tests, or a node
/// beside a real kubelet) can share one containerd without touching each other's pods.
pub const NODE_LABEL: &str = "kubelet-rs.io/node";

pub const POD_DELETION_GRACE_ANNOTATION: &str = "io.kubernetes.pod.deletionGracePeriod";
pub const POD_TERMINATION_GRACE_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";
pub const CONTAINER_HASH_ANNOTATION: &str = "io.kubernetes.container.hash";
pub const CONTAINER_RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePath";
pub const CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION: &str =
    "io.kubernetes.container.terminationMessagePolicy";
pub const CONTAINER_PRESTOP_HANDLER_ANNOTATION: &str = "io.kubernetes.container.preStopHandler";
pub const CONTAINER_PORTS_ANNOTATION: &str = "io.kubernetes.container.ports";
/// The spec image a container was created from (the runtime reports the resolved reference).
pub const CONTAINER_IMAGE_ANNOTATION: &str = "kubelet-rs.io/image";

/// Values of [`CONTAINER_TYPE_LABEL`].
pub const CONTAINER_TYPE_INIT: &str = "INIT";
pub const CONTAINER_TYPE_CONTAINER: &str = "CONTAINER";

fn meta(pod: &Pod) -> (&str, &str, &str) {
    let m = &pod.metadata;
    (
        m.name.as_deref().unwrap_or(""),
        m.namespace.as_deref().unwrap_or("default"),
        m.uid.as_deref().unwrap_or(""),
    )
}

/// Sandbox labels: the pod's own labels plus the identity labels.
pub fn sandbox_labels(pod: &Pod, node: &str) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = pod
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let (name, ns, uid) = meta(pod);
    labels.insert(POD_NAME_LABEL.into(), name.into());
    labels.insert(POD_NAMESPACE_LABEL.into(), ns.into());
    labels.insert(POD_UID_LABEL.into(), uid.into());
    labels.insert(NODE_LABEL.into(), node.into());
    labels
}

/// Sandbox annotations: the pod's annotations.
pub fn sandbox_annotations(pod: &Pod) -> HashMap<String, String> {
    pod.metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// Container labels: identity only (the kubelet keeps pod labels off containers).
pub fn container_labels(
    pod: &Pod,
    container: &Container,
    init: bool,
    node: &str,
) -> HashMap<String, String> {
    let (name, ns, uid) = meta(pod);
    HashMap::from([
        (POD_NAME_LABEL.into(), name.into()),
        (POD_NAMESPACE_LABEL.into(), ns.into()),
        (POD_UID_LABEL.into(), uid.into()),
        (CONTAINER_NAME_LABEL.into(), container.name.clone()),
        (
            CONTAINER_TYPE_LABEL.into(),
            if init {
                CONTAINER_TYPE_INIT
            } else {
                CONTAINER_TYPE_CONTAINER
            }
            .into(),
        ),
        (NODE_LABEL.into(), node.into()),
    ])
}

/// Container annotations: hash, restart count, termination message settings, grace period.
pub fn container_annotations(
    pod: &Pod,
    container: &Container,
    restart_count: i32,
) -> HashMap<String, String> {
    let mut a = HashMap::from([
        (CONTAINER_HASH_ANNOTATION.into(), container_hash(container)),
        (
            CONTAINER_RESTART_COUNT_ANNOTATION.into(),
            restart_count.to_string(),
        ),
        (
            CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION.into(),
            container
                .termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
        (
            CONTAINER_TERMINATION_MESSAGE_POLICY_ANNOTATION.into(),
            container
                .termination_message_policy
                .clone()
                .unwrap_or_else(|| "File".into()),
        ),
        (
            CONTAINER_IMAGE_ANNOTATION.into(),
            container.image.clone().unwrap_or_default(),
        ),
    ]);
    if let Some(g) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        a.insert(POD_TERMINATION_GRACE_ANNOTATION.into(), g.to_string());
    }
    if let Some(ports) = container.ports.as_ref().filter(|p| !p.is_empty()) {
        if let Ok(s) = serde_json::to_string(ports) {
            a.insert(CONTAINER_PORTS_ANNOTATION.into(), s);
        }
    }
    if let Some(pre_stop) = container
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
    {
        if let Ok(s) = serde_json::to_string(pre_stop) {
            a.insert(CONTAINER_PRESTOP_HANDLER_ANNOTATION.into(), s);
        }
    }
    a
}

/// The hash that tells whether a running container still matches its spec: any change of the
/// container's spec gives a new hash, and the container is restarted. It is an MD5 over the
/// container's canonical JSON (field order fixed by the type, maps sorted), printed as 8 hex
/// digits like the kubelet's 32-bit hash.
pub fn container_hash(container: &Container) -> String {
    let json = serde_json::to_vec(container).unwrap_or_default();
    let digest = Md5::digest(&json);
    format!(
        "{:08x}",
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
    )
}

/// Identity read back from a sandbox's or container's labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodIdentity {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

pub fn pod_identity(labels: &HashMap<String, String>) -> PodIdentity {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    PodIdentity {
        name: get(POD_NAME_LABEL),
        namespace: get(POD_NAMESPACE_LABEL),
        uid: get(POD_UID_LABEL),
    }
}

/// The restart count stored on a container, 0 when absent or unreadable.
pub fn restart_count(annotations: &HashMap<String, String>) -> i32 {
    annotations
        .get(CONTAINER_RESTART_COUNT_ANNOTATION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hash_is_stable_and_tracks_changes() {
        let a = container(json!({"name": "c", "image": "busybox", "command": ["sleep", "1"]}));
        let b = container(json!({"name": "c", "image": "busybox", "command": ["sleep", "1"]}));
        let c = container(json!({"name": "c", "image": "busybox", "command": ["sleep", "2"]}));
        assert_eq!(container_hash(&a), container_hash(&b));
        assert_ne!(container_hash(&a), container_hash(&c));
        assert_eq!(container_hash(&a).len(), 8);
    }

    #[test]
    fn identity_round_trips() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap();
        let labels = sandbox_labels(&pod, "node-a");
        assert_eq!(labels["app"], "x");
        assert_eq!(labels[NODE_LABEL], "node-a");
        assert_eq!(
            pod_identity(&labels),
            PodIdentity {
                name: "web".into(),
                namespace: "ns".into(),
                uid: "u-1".into()
            }
        );
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let ann = container_annotations(&pod, c, 3);
        assert_eq!(restart_count(&ann), 3);
        assert_eq!(
            ann[CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION],
            "/dev/termination-log"
        );
        let cl = container_labels(&pod, c, true, "node-a");
        assert_eq!(cl[CONTAINER_TYPE_LABEL], "INIT");
        assert_eq!(cl[CONTAINER_NAME_LABEL], "c");
    }
}
