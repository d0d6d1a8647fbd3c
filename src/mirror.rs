//! Mirror pods (`pkg/kubelet/pod/mirror_client.go` and the kubelet's housekeeping): every static
//! pod this node runs has a copy in the API server, so that the cluster sees it.
//!
//! A mirror pod carries the static pod's metadata and spec, the annotation
//! `kubernetes.io/config.mirror` = the static pod's `kubernetes.io/config.hash`, and an owner
//! reference to this node's Node object (a node not registered yet means: retry later). A
//! mirror pod that is deleted, being deleted, or that mirrors another version of the static pod
//! is deleted (grace 0, UID precondition) and created again; one whose static pod is gone is
//! deleted. The static pod's status is written to its mirror pod by the status manager
//! (`crate::status::api`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, PostParams, Preconditions};
use kube::Api;

use crate::kubelet::Kubelet;
use crate::sources::api::{key_of, MirrorPods};
use crate::sources::{
    API_SOURCE, CONFIG_HASH_ANNOTATION, CONFIG_MIRROR_ANNOTATION, CONFIG_SOURCE_ANNOTATION,
};

/// How often mirror pods are checked besides on every change (the kubelet's housekeeping).
pub const RECHECK_PERIOD: Duration = Duration::from_secs(2);

/// Whether `pod` is a static pod (from a file or URL source, not the API).
pub fn is_static_pod(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE_ANNOTATION))
        .is_some_and(|s| s != API_SOURCE)
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(CONFIG_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Whether `mirror` mirrors this version of `static_pod` (`IsMirrorPodOf`).
pub fn is_mirror_pod_of(mirror: &Pod, static_pod: &Pod) -> bool {
    let mirrored = mirror
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_MIRROR_ANNOTATION));
    mirror.metadata.name == static_pod.metadata.name
        && mirror.metadata.namespace == static_pod.metadata.namespace
        && mirrored.is_some()
        && mirrored.map(String::as_str) == hash_of(static_pod)
}

/// The mirror pod of `static_pod`, owned by the node `node_name` (`node_uid`).
pub fn mirror_pod_of(static_pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut annotations = static_pod.metadata.annotations.clone().unwrap_or_default();
    annotations.insert(
        CONFIG_MIRROR_ANNOTATION.to_string(),
        hash_of(static_pod).unwrap_or_default().to_string(),
    );
    Pod {
        metadata: ObjectMeta {
            name: static_pod.metadata.name.clone(),
            namespace: static_pod.metadata.namespace.clone(),
            labels: static_pod.metadata.labels.clone(),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node_name.to_string(),
                uid: node_uid.to_string(),
                ..Default::default()
            }]),
            ..Default::default()
        },
        spec: static_pod.spec.clone(),
        status: None,
    }
}

/// Keeps a mirror pod in the API for every static pod; see the module doc.
pub struct MirrorManager {
    client: kube::Client,
    node_name: String,
    kubelet: Arc<Kubelet>,
    mirrors: MirrorPods,
    node_uid: Option<String>,
    /// Whether "node not registered yet" was said (once per wait).
    waiting_for_node: bool,
}

impl MirrorManager {
    pub fn new(
        client: kube::Client,
        node_name: String,
        kubelet: Arc<Kubelet>,
        mirrors: MirrorPods,
    ) -> Self {
        Self {
            client,
            node_name,
            kubelet,
            mirrors,
            node_uid: None,
            waiting_for_node: false,
        }
    }

    pub async fn run(mut self) {
        let mut changed = self.kubelet.status.subscribe();
        let mut mirrors = self.mirrors.subscribe();
        let mut tick = tokio::time::interval(RECHECK_PERIOD);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = changed.changed() => if r.is_err() { return },
                _ = mirrors.changed() => {}
                _ = tick.tick() => {}
            }
            if self.mirrors.synced() {
                self.reconcile().await;
            }
        }
    }

    async fn node_uid(&mut self) -> Option<String> {
        if let Some(uid) = &self.node_uid {
            return Some(uid.clone());
        }
        let nodes: Api<Node> = Api::all(self.client.clone());
        match nodes.get_opt(&self.node_name).await {
            Ok(Some(n)) => {
                self.node_uid = n.metadata.uid;
                self.waiting_for_node = false;
            }
            Ok(None) => {
                if !self.waiting_for_node {
                    tracing::info!(node = %self.node_name, "the Node is not registered yet: mirror pods wait for it");
                    self.waiting_for_node = true;
                }
            }
            Err(e) => {
                tracing::debug!(node = %self.node_name, error = %e, "cannot read the Node for mirror pods; retrying")
            }
        }
        self.node_uid.clone()
    }

    async fn reconcile(&mut self) {
        let statics: HashMap<String, Pod> = self
            .kubelet
            .status
            .uids()
            .into_iter()
            .filter_map(|uid| self.kubelet.status.pod(&uid))
            .filter(|p| is_static_pod(p))
            .map(|p| (key_of(&p), (*p).clone()))
            .collect();
        let existing = self.mirrors.all();
        // Mirror pods whose static pod is gone (only once every source has spoken).
        if self.kubelet.sources_ready() {
            for (key, mirror) in &existing {
                if !statics.contains_key(key) {
                    tracing::info!(pod = %key, "deleting the mirror pod of a static pod that is gone");
                    self.delete(mirror).await;
                }
            }
        }
        for (key, pod) in &statics {
            match existing.get(key) {
                Some(m) if m.metadata.deletion_timestamp.is_none() && is_mirror_pod_of(m, pod) => {}
                Some(m) => {
                    tracing::info!(pod = %key, "mirror pod is being deleted or mirrors another version: recreating it");
                    if self.delete(m).await {
                        self.create(pod).await;
                    }
                }
                None => self.create(pod).await,
            }
        }
    }

    /// Deletes a mirror pod (grace 0, UID precondition); whether it is gone.
    async fn delete(&self, mirror: &Pod) -> bool {
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            mirror.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: mirror.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        let name = mirror.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &params).await {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => true,
            Err(e) => {
                tracing::warn!(pod = %key_of(mirror), error = %e, "cannot delete mirror pod; will retry");
                false
            }
        }
    }

    async fn create(&mut self, static_pod: &Pod) {
        let Some(node_uid) = self.node_uid().await else {
            return;
        };
        let mirror = mirror_pod_of(static_pod, &self.node_name, &node_uid);
        let api: Api<Pod> = Api::namespaced(
            self.client.clone(),
            static_pod
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
        );
        match api.create(&PostParams::default(), &mirror).await {
            Ok(p) => tracing::info!(pod = %key_of(&p), uid = ?p.metadata.uid, "created mirror pod"),
            // Created already; the watch has not told us yet.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                if let kube::Error::Api(s) = &e {
                    if matches!(s.code, 403 | 404 | 422) {
                        // The Node may have been deleted and registered again under a new UID
                        // (NodeRestriction answers 403 to a stale owner reference): look it up
                        // anew before the next try.
                        self.node_uid = None;
                    }
                }
                tracing::warn!(pod = %key_of(static_pod), error = %e, "cannot create mirror pod; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mirror_pod_copies_the_static_pod_and_names_its_hash_and_node() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-n1", "namespace": "default", "uid": "abc",
                "labels": {"app": "web"},
                "annotations": {CONFIG_HASH_ANNOTATION: "abc", CONFIG_SOURCE_ANNOTATION: "file"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}
        }))
        .unwrap();
        assert!(is_static_pod(&pod));
        let m = mirror_pod_of(&pod, "n1", "node-uid");
        assert_eq!(
            m.metadata.annotations.as_ref().unwrap()[CONFIG_MIRROR_ANNOTATION],
            "abc"
        );
        assert_eq!(m.metadata.uid, None);
        let owner = &m.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("Node", "node-uid")
        );
        assert!(is_mirror_pod_of(&m, &pod));
        let mut other = pod.clone();
        other
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(CONFIG_HASH_ANNOTATION.into(), "def".into());
        assert!(!is_mirror_pod_of(&m, &other));
    }
}
