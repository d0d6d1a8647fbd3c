//! Defaulting of pods that come from a file (static pods): the identity the kubelet gives them,
//! and the API defaults an API server would have filled in.
//!
//! Identity, as the kubelet's `pkg/kubelet/config/common.go` derives it:
//! - **UID**: when the manifest has none, the hex MD5 of `host:<nodeName>`, `file:<path>` and the
//!   pod's content. Go hashes the object with `DeepHashObject` (a `%#v`-style dump), which
//!   cannot be reproduced outside Go; we hash the pod's JSON encoding instead (k8s-openapi
//!   serializes fields in a fixed order and maps sorted, so it is canonical). The UID is
//!   therefore stable for the same file content, node and path, and changes whenever any of them
//!   changes — which is what the kubelet relies on to replace an edited static pod.
//!   The content hashed is the pod *after* API defaulting (as in Go, where the decoder defaults
//!   before `applyDefaults` hashes), so spelling out a default does not change the UID.
//! - **name**: `<name>-<nodeName lowercased>`; **namespace**: `default` when empty;
//!   **spec.nodeName**: the node; annotations `kubernetes.io/config.hash` (= UID) and
//!   `kubernetes.io/config.source` (`file`); a toleration of every `NoExecute` taint; phase
//!   `Pending`. `kubernetes.io/config.seen` is left to the merge layer.
//!
//! API defaults (`pkg/apis/core/v1/defaults.go`), limited to those the node acts on:
//! restartPolicy `Always`, terminationGracePeriodSeconds 30, dnsPolicy `ClusterFirst`,
//! schedulerName `default-scheduler`, enableServiceLinks, an empty pod securityContext,
//! host ports under hostNetwork, container imagePullPolicy (`Always` for `:latest` or untagged
//! images, else `IfNotPresent`), terminationMessagePath/Policy, port protocol `TCP`, requests
//! copied from limits, probe timings and HTTP scheme/path, volume default modes, field-ref
//! API versions.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{
    Container, HTTPGetAction, Pod, PodSecurityContext, PodSpec, PodStatus, Probe, Toleration,
    Volume,
};
use md5::{Digest, Md5};

use super::validation::{FieldError, ValidationError};
use super::{
    CONFIG_HASH_ANNOTATION, CONFIG_SOURCE_ANNOTATION, ENDPOINT_SOURCE, FILE_SOURCE, HTTP_SOURCE,
};
use crate::resource::parse_k8s_quantity;

/// The namespace of a pod that names none.
pub const DEFAULT_NAMESPACE: &str = "default";
/// The scheduler name the API server gives every pod.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// The default `terminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// The default `terminationMessagePath`.
pub const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// The default mode of secret, configMap, downwardAPI and projected volumes (0644).
const DEFAULT_VOLUME_MODE: i32 = 0o644;

/// Applies the API defaults and then the static pod identity to a pod read from `source_path`
/// on node `node_name`. Fails only when the pod has no name (the rest is left to
/// [`super::validation::validate_pod`], which should run next).
pub fn apply_static_pod_defaults(
    pod: &mut Pod,
    node_name: &str,
    source_path: &Path,
) -> Result<(), ValidationError> {
    apply_static_defaults(pod, node_name, StaticOrigin::File(source_path))
}

/// Where a static pod was read from: a manifest file (`--pod-manifest-path`) or a manifest URL
/// (`--manifest-url`). It enters the pod's UID and sets `kubernetes.io/config.source`.
#[derive(Debug, Clone, Copy)]
pub enum StaticOrigin<'a> {
    File(&'a Path),
    Url(&'a str),
    /// POSTed to the kubelet API's pod endpoint (`--enable-pod-endpoint`).
    Endpoint,
}

impl StaticOrigin<'_> {
    /// The `kubernetes.io/config.source` value.
    pub fn source(&self) -> &'static str {
        match self {
            StaticOrigin::File(_) => FILE_SOURCE,
            StaticOrigin::Url(_) => HTTP_SOURCE,
            StaticOrigin::Endpoint => ENDPOINT_SOURCE,
        }
    }
}

/// [`apply_static_pod_defaults`] for a pod from either origin.
pub fn apply_static_defaults(
    pod: &mut Pod,
    node_name: &str,
    origin: StaticOrigin<'_>,
) -> Result<(), ValidationError> {
    if pod.metadata.name.as_deref().unwrap_or("").is_empty() {
        return Err(FieldError::Required {
            field: "metadata.name".to_string(),
            detail: "name or generateName is required".to_string(),
        }
        .into());
    }
    apply_api_defaults(pod);

    if pod.metadata.uid.as_deref().unwrap_or("").is_empty() {
        pod.metadata.uid = Some(static_pod_uid_from(pod, node_name, origin));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.take().unwrap_or_default();
    pod.metadata.name = Some(static_pod_name(&name, node_name));
    if pod.metadata.namespace.as_deref().unwrap_or("").is_empty() {
        pod.metadata.namespace = Some(DEFAULT_NAMESPACE.to_string());
    }
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.node_name = Some(node_name.to_string());
    add_or_update_toleration(
        spec,
        Toleration {
            operator: Some("Exists".to_string()),
            effect: Some("NoExecute".to_string()),
            ..Toleration::default()
        },
    );
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), uid);
    annotations.insert(
        CONFIG_SOURCE_ANNOTATION.to_string(),
        origin.source().to_string(),
    );
    pod.status = Some(PodStatus {
        phase: Some("Pending".to_string()),
        ..PodStatus::default()
    });
    Ok(())
}

/// The name a static pod gets on a node: `<name>-<node name, lowercased>`.
pub fn static_pod_name(name: &str, node_name: &str) -> String {
    format!("{name}-{}", node_name.to_lowercase())
}

/// The UID of a static pod: hex MD5 over `host:<node>`, `file:<path>` and the pod's JSON.
/// Call it on the pod as read (after API defaults, before the identity is applied).
pub fn static_pod_uid(pod: &Pod, node_name: &str, source_path: &Path) -> String {
    static_pod_uid_from(pod, node_name, StaticOrigin::File(source_path))
}

/// [`static_pod_uid`] for either origin: `file:<path>` or `url:<url>` enters the hash, as in
/// the kubelet's `applyDefaults`.
pub fn static_pod_uid_from(pod: &Pod, node_name: &str, origin: StaticOrigin<'_>) -> String {
    let mut hasher = Md5::new();
    hasher.update(format!("host:{node_name}"));
    match origin {
        StaticOrigin::File(path) => hasher.update(format!("file:{}", path.display())),
        StaticOrigin::Url(url) => hasher.update(format!("url:{url}")),
        StaticOrigin::Endpoint => hasher.update("endpoint:"),
    }
    // Serializing a k8s-openapi object cannot fail (no non-string map keys, no custom errors).
    hasher.update(serde_json::to_vec(pod).unwrap_or_default());
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Adds `t` to the pod's tolerations unless an identical one (same key, operator, value and
/// effect) is there; in that case the existing one is replaced by `t`.
fn add_or_update_toleration(spec: &mut PodSpec, t: Toleration) {
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    let same = |a: &Toleration| {
        a.key.as_deref().unwrap_or("") == t.key.as_deref().unwrap_or("")
            && a.operator.as_deref().unwrap_or("Equal") == t.operator.as_deref().unwrap_or("Equal")
            && a.value.as_deref().unwrap_or("") == t.value.as_deref().unwrap_or("")
            && a.effect.as_deref().unwrap_or("") == t.effect.as_deref().unwrap_or("")
    };
    match list.iter_mut().find(|a| same(a)) {
        Some(existing) => *existing = t,
        None => list.push(t),
    }
}

/// The image pull policy the API server gives a container that names none: `Always` when the
/// image is tagged `latest` or not tagged at all, `IfNotPresent` otherwise (and for digests).
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last_segment = image.rsplit('/').next().unwrap_or(image);
    match last_segment.rsplit_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

/// Fills in the defaults the API server applies to a v1 Pod on create, for the fields the
/// node uses. Values already present are kept.
pub fn apply_api_defaults(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    set_default(&mut spec.restart_policy, || "Always".to_string());
    set_default(&mut spec.dns_policy, || "ClusterFirst".to_string());
    set_default(&mut spec.termination_grace_period_seconds, || {
        DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS
    });
    set_default(&mut spec.scheduler_name, || {
        DEFAULT_SCHEDULER_NAME.to_string()
    });
    set_default(&mut spec.enable_service_links, || true);
    set_default(&mut spec.security_context, PodSecurityContext::default);
    let host_network = spec.host_network.unwrap_or(false);
    for c in spec.init_containers.iter_mut().flatten() {
        container_defaults(c, host_network);
    }
    for c in &mut spec.containers {
        container_defaults(c, host_network);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume_defaults(v);
    }
}

fn set_default<T>(slot: &mut Option<T>, value: impl FnOnce() -> T) {
    if slot.is_none() {
        *slot = Some(value());
    }
}

fn container_defaults(c: &mut Container, host_network: bool) {
    if c.image_pull_policy.as_deref().unwrap_or("").is_empty() {
        if let Some(image) = c.image.as_deref().filter(|i| !i.is_empty()) {
            c.image_pull_policy = Some(default_image_pull_policy(image).to_string());
        }
    }
    set_default(&mut c.termination_message_path, || {
        DEFAULT_TERMINATION_MESSAGE_PATH.to_string()
    });
    set_default(&mut c.termination_message_policy, || "File".to_string());
    for p in c.ports.iter_mut().flatten() {
        set_default(&mut p.protocol, || "TCP".to_string());
        if host_network && p.host_port.unwrap_or(0) == 0 {
            p.host_port = Some(p.container_port);
        }
    }
    // A limit with no request requests the limit. Only limits that parse are copied, so that a
    // malformed one is reported once, under `limits`.
    if let Some(res) = &mut c.resources {
        if let Some(limits) = &res.limits {
            let requests = res.requests.get_or_insert_with(BTreeMap::new);
            for (name, q) in limits {
                if !requests.contains_key(name) && parse_k8s_quantity(q).is_ok() {
                    requests.insert(name.clone(), q.clone());
                }
            }
        }
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        probe_defaults(probe);
    }
    if let Some(lc) = &mut c.lifecycle {
        for h in [&mut lc.post_start, &mut lc.pre_stop].into_iter().flatten() {
            if let Some(g) = &mut h.http_get {
                http_get_defaults(g);
            }
        }
    }
    for e in c.env.iter_mut().flatten() {
        if let Some(fr) = e.value_from.as_mut().and_then(|f| f.field_ref.as_mut()) {
            set_default(&mut fr.api_version, || "v1".to_string());
        }
    }
}

fn probe_defaults(p: &mut Probe) {
    set_default(&mut p.timeout_seconds, || 1);
    set_default(&mut p.period_seconds, || 10);
    set_default(&mut p.success_threshold, || 1);
    set_default(&mut p.failure_threshold, || 3);
    if let Some(g) = &mut p.http_get {
        http_get_defaults(g);
    }
}

fn http_get_defaults(g: &mut HTTPGetAction) {
    if g.path.as_deref().unwrap_or("").is_empty() {
        g.path = Some("/".to_string());
    }
    set_default(&mut g.scheme, || "HTTP".to_string());
}

fn volume_defaults(v: &mut Volume) {
    if let Some(s) = &mut v.secret {
        set_default(&mut s.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(c) = &mut v.config_map {
        set_default(&mut c.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(d) = &mut v.downward_api {
        set_default(&mut d.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(p) = &mut v.projected {
        set_default(&mut p.default_mode, || DEFAULT_VOLUME_MODE);
    }
    if let Some(h) = &mut v.host_path {
        set_default(&mut h.type_, String::new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {
                "containers": [
                    {"name": "a", "image": "127.0.0.1:5000/kubelet-rs/busybox:1.35",
                     "ports": [{"containerPort": 80}],
                     "resources": {"limits": {"memory": "64Mi", "cpu": "12Q"}},
                     "livenessProbe": {"httpGet": {"port": 80}}},
                    {"name": "b", "image": "127.0.0.1:5000/kubelet-rs/busybox"},
                    {"name": "c", "image": "busybox:latest", "imagePullPolicy": "Never"}
                ],
                "volumes": [{"name": "s", "secret": {"secretName": "x"}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn identity() {
        let mut p = pod();
        apply_static_pod_defaults(&mut p, "Node-1", Path::new("/etc/manifests/web.yaml")).unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-node-1"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("default"));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 32);
        assert!(uid.bytes().all(|b| b.is_ascii_hexdigit()));
        let ann = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann[CONFIG_HASH_ANNOTATION], uid);
        assert_eq!(ann[CONFIG_SOURCE_ANNOTATION], "file");
        let spec = p.spec.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("Node-1"));
        let tolerations = spec.tolerations.as_ref().unwrap();
        assert_eq!(tolerations.len(), 1);
        assert_eq!(tolerations[0].operator.as_deref(), Some("Exists"));
        assert_eq!(tolerations[0].effect.as_deref(), Some("NoExecute"));
        assert_eq!(p.status.unwrap().phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn uid_is_stable_and_follows_content_node_and_path() {
        let path = Path::new("/m/web.yaml");
        let uid = |p: Pod, node: &str, path: &Path| {
            let mut p = p;
            apply_static_pod_defaults(&mut p, node, path).unwrap();
            p.metadata.uid.unwrap()
        };
        let base = uid(pod(), "n1", path);
        assert_eq!(base, uid(pod(), "n1", path), "same input, same UID");
        assert_ne!(base, uid(pod(), "n2", path), "node is hashed");
        assert_ne!(
            base,
            uid(pod(), "n1", Path::new("/m/other.yaml")),
            "path is hashed"
        );
        let mut changed = pod();
        changed.spec.as_mut().unwrap().containers[0].args = Some(vec!["x".into()]);
        assert_ne!(base, uid(changed, "n1", path), "content is hashed");
        // Spelling out a default does not change the UID.
        let mut explicit = pod();
        explicit.spec.as_mut().unwrap().restart_policy = Some("Always".into());
        assert_eq!(base, uid(explicit, "n1", path));
        // A UID in the manifest is kept.
        let mut given = pod();
        given.metadata.uid = Some("my-uid".into());
        assert_eq!(uid(given, "n1", path), "my-uid");
    }

    #[test]
    fn api_defaults() {
        let mut p = pod();
        apply_api_defaults(&mut p);
        let spec = p.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));
        assert_eq!(spec.termination_grace_period_seconds, Some(30));
        assert_eq!(spec.scheduler_name.as_deref(), Some("default-scheduler"));
        let [a, b, c] = &spec.containers[..] else {
            panic!("three containers")
        };
        assert_eq!(a.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(b.image_pull_policy.as_deref(), Some("Always"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"), "kept");
        assert_eq!(
            a.termination_message_path.as_deref(),
            Some("/dev/termination-log")
        );
        assert_eq!(a.termination_message_policy.as_deref(), Some("File"));
        assert_eq!(
            a.ports.as_ref().unwrap()[0].protocol.as_deref(),
            Some("TCP")
        );
        let res = a.resources.as_ref().unwrap();
        let requests = res.requests.as_ref().unwrap();
        assert_eq!(requests["memory"].0, "64Mi");
        assert!(
            !requests.contains_key("cpu"),
            "a malformed limit is not copied"
        );
        let probe = a.liveness_probe.as_ref().unwrap();
        assert_eq!(probe.period_seconds, Some(10));
        assert_eq!(probe.failure_threshold, Some(3));
        assert_eq!(probe.http_get.as_ref().unwrap().path.as_deref(), Some("/"));
        assert_eq!(
            spec.volumes.unwrap()[0]
                .secret
                .as_ref()
                .unwrap()
                .default_mode,
            Some(0o644)
        );
    }

    #[test]
    fn pull_policy_by_tag() {
        assert_eq!(default_image_pull_policy("busybox"), "Always");
        assert_eq!(default_image_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_image_pull_policy("busybox:1.35"), "IfNotPresent");
        assert_eq!(default_image_pull_policy("127.0.0.1:5000/a/b"), "Always");
        assert_eq!(
            default_image_pull_policy("127.0.0.1:5000/a/b:3.10"),
            "IfNotPresent"
        );
        assert_eq!(
            default_image_pull_policy("127.0.0.1:5000/a/b@sha256:0123"),
            "IfNotPresent"
        );
    }

    #[test]
    fn host_network_ports_and_existing_toleration() {
        let mut p = pod();
        let spec = p.spec.as_mut().unwrap();
        spec.host_network = Some(true);
        spec.tolerations = Some(vec![Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(5),
            ..Default::default()
        }]);
        apply_static_pod_defaults(&mut p, "n", Path::new("/x")).unwrap();
        let spec = p.spec.unwrap();
        assert_eq!(
            spec.containers[0].ports.as_ref().unwrap()[0].host_port,
            Some(80)
        );
        let t = spec.tolerations.unwrap();
        assert_eq!(t.len(), 1, "replaced, not duplicated");
        assert_eq!(t[0].toleration_seconds, None);
    }

    #[test]
    fn a_nameless_pod_is_refused() {
        let mut p = pod();
        p.metadata.name = None;
        let err = apply_static_pod_defaults(&mut p, "n", Path::new("/x")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
    }
}
