//! The API-server pod source (`pkg/kubelet/config/apiserver.go`): every pod bound to this node
//! (`fieldSelector=spec.nodeName=<node>`), listed and watched through kube-runtime's watcher.
//!
//! The watcher keeps the resourceVersion, asks for bookmarks, restarts a broken watch with a
//! backoff and relists on `410 Gone`; each list becomes one [`PodOperation::Set`] (so pods
//! deleted while the watch was down go away), each watch event an UPDATE (podconfig tells a new
//! pod from a changed one) or a REMOVE. Every error is logged once, as one line, and the source
//! goes on.
//!
//! Mirror pods (annotation `kubernetes.io/config.mirror`) are the API's copies of this node's
//! static pods: they are never run. The source hands them to the mirror pod manager
//! ([`MirrorPods`]) instead.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Api;
use parking_lot::Mutex;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{
    PodOperation, PodUpdate, API_SOURCE, CONFIG_MIRROR_ANNOTATION, CONFIG_SOURCE_ANNOTATION,
};

/// The mirror pods the API server holds for this node, by `namespace/name`, as the API
/// source last saw them. Shared with the mirror pod manager; `changed` wakes it.
#[derive(Debug, Clone)]
pub struct MirrorPods {
    pods: Arc<Mutex<HashMap<String, Pod>>>,
    changed: Arc<watch::Sender<u64>>,
    /// Whether a first list has been seen (until then, "absent" means "unknown").
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for MirrorPods {
    fn default() -> Self {
        Self {
            pods: Arc::default(),
            changed: Arc::new(watch::channel(0).0),
            synced: Arc::default(),
        }
    }
}

impl MirrorPods {
    /// The mirror pod named `namespace/name`, if the API has one.
    pub fn get(&self, key: &str) -> Option<Pod> {
        self.pods.lock().get(key).cloned()
    }

    /// Every mirror pod, by `namespace/name`.
    pub fn all(&self) -> HashMap<String, Pod> {
        self.pods.lock().clone()
    }

    /// Whether the source has listed the node's pods at least once.
    pub fn synced(&self) -> bool {
        self.synced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Woken whenever the set changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn replace(&self, pods: Vec<Pod>) {
        *self.pods.lock() = pods.into_iter().map(|p| (key_of(&p), p)).collect();
        self.synced
            .store(true, std::sync::atomic::Ordering::Release);
        self.changed.send_modify(|g| *g += 1);
    }

    fn upsert(&self, pod: Pod) {
        self.pods.lock().insert(key_of(&pod), pod);
        self.changed.send_modify(|g| *g += 1);
    }

    fn remove(&self, pod: &Pod) {
        let key = key_of(pod);
        let mut m = self.pods.lock();
        // Only the same incarnation: a recreated mirror pod may already be there.
        if m.get(&key).and_then(|p| p.metadata.uid.as_ref()) == pod.metadata.uid.as_ref() {
            m.remove(&key);
        }
        drop(m);
        self.changed.send_modify(|g| *g += 1);
    }
}

/// `namespace/name` of a pod.
pub fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Whether `pod` is a mirror pod (the API copy of a static pod).
pub fn is_mirror_pod(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR_ANNOTATION))
}

/// The field selector of the pods bound to `node`.
pub fn node_field_selector(node: &str) -> String {
    format!("spec.nodeName={node}")
}

/// Starts the API pod source on the current tokio runtime. Returns when `tx` closes.
pub fn spawn_api_source(
    client: kube::Client,
    node_name: String,
    mirrors: MirrorPods,
    tx: mpsc::Sender<PodUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(run(client, node_name, mirrors, tx))
}

/// A pod as the node takes it from the API: stamped with its source.
fn prepare(mut pod: Pod) -> Pod {
    pod.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(CONFIG_SOURCE_ANNOTATION.to_string(), API_SOURCE.to_string());
    if pod.metadata.namespace.is_none() {
        pod.metadata.namespace = Some("default".into());
    }
    pod
}

/// The source's state between watcher events: the pods of a list in progress.
#[derive(Default)]
struct Lister {
    listing: Option<Vec<Pod>>,
    mirrors: Vec<Pod>,
}

impl Lister {
    /// Turns one watcher event into the update to send, if any.
    fn on_event(&mut self, event: Event<Pod>, mirrors: &MirrorPods) -> Option<PodUpdate> {
        let update = |op, pods| {
            Some(PodUpdate {
                source: API_SOURCE,
                op,
                pods,
            })
        };
        match event {
            Event::Init => {
                self.listing = Some(Vec::new());
                self.mirrors.clear();
                None
            }
            Event::InitApply(pod) => {
                if is_mirror_pod(&pod) {
                    self.mirrors.push(pod);
                } else {
                    self.listing.get_or_insert_with(Vec::new).push(prepare(pod));
                }
                None
            }
            Event::InitDone => {
                mirrors.replace(std::mem::take(&mut self.mirrors));
                let pods = self.listing.take().unwrap_or_default();
                tracing::info!(pods = pods.len(), "API pod source: listed this node's pods");
                update(PodOperation::Set, pods)
            }
            Event::Apply(pod) if is_mirror_pod(&pod) => {
                mirrors.upsert(pod);
                None
            }
            Event::Delete(pod) if is_mirror_pod(&pod) => {
                mirrors.remove(&pod);
                None
            }
            Event::Apply(pod) => update(PodOperation::Update, vec![prepare(pod)]),
            Event::Delete(pod) => update(PodOperation::Remove, vec![prepare(pod)]),
        }
    }
}

async fn run(
    client: kube::Client,
    node_name: String,
    mirrors: MirrorPods,
    tx: mpsc::Sender<PodUpdate>,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&node_field_selector(&node_name));
    tracing::info!(node = %node_name, "watching the API server for this node's pods");
    let stream = watcher::watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut lister = Lister::default();
    // The first failure of an outage is a warning; its retries are debug lines.
    let mut failing = false;
    loop {
        let event = tokio::select! {
            biased;
            _ = tx.closed() => return,
            e = stream.next() => e,
        };
        let Some(event) = event else { return };
        match event {
            Ok(event) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("API pod source: watching this node's pods again");
                }
                if let Some(update) = lister.on_event(event, &mirrors) {
                    if tx.send(update).await.is_err() {
                        return;
                    }
                }
            }
            // The watcher relists after a 410 and rewatches after any other failure, with
            // a backoff; the pods keep running meanwhile.
            Err(watcher::Error::WatchError(s)) if s.code == 410 => tracing::info!(
                message = %s.message,
                "API pod source: the watch's resourceVersion is too old (410 Gone); relisting"
            ),
            Err(e) if failing => {
                tracing::debug!(error = %e, "API pod source: list/watch of this node's pods failed again; retrying")
            }
            Err(e) => {
                failing = true;
                tracing::warn!(error = %e, "API pod source: list/watch of this node's pods failed; retrying with a backoff")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, mirror: bool) -> Pod {
        let mut v = json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]}
        });
        if mirror {
            v["metadata"]["annotations"] = json!({CONFIG_MIRROR_ANNOTATION: "h"});
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_list_becomes_one_set_and_events_become_updates() {
        let mirrors = MirrorPods::default();
        let mut l = Lister::default();
        assert!(l.on_event(Event::Init, &mirrors).is_none());
        assert!(l
            .on_event(Event::InitApply(pod("a", false)), &mirrors)
            .is_none());
        assert!(l
            .on_event(Event::InitApply(pod("m", true)), &mirrors)
            .is_none());
        assert!(!mirrors.synced());
        let u = l.on_event(Event::InitDone, &mirrors).unwrap();
        assert_eq!(u.source, API_SOURCE);
        assert_eq!(u.op, PodOperation::Set);
        assert_eq!(u.pods.len(), 1, "mirror pods are never run");
        assert_eq!(
            u.pods[0].metadata.annotations.as_ref().unwrap()[CONFIG_SOURCE_ANNOTATION],
            "api"
        );
        assert!(mirrors.synced());
        assert!(mirrors.get("default/m").is_some());

        let u = l.on_event(Event::Apply(pod("b", false)), &mirrors).unwrap();
        assert_eq!(u.op, PodOperation::Update);
        let u = l
            .on_event(Event::Delete(pod("b", false)), &mirrors)
            .unwrap();
        assert_eq!(u.op, PodOperation::Remove);
        assert!(l
            .on_event(Event::Delete(pod("m", true)), &mirrors)
            .is_none());
        assert!(mirrors.get("default/m").is_none());
        // A relist with nothing in it says every pod is gone.
        l.on_event(Event::Init, &mirrors);
        let u = l.on_event(Event::InitDone, &mirrors).unwrap();
        assert_eq!(u.op, PodOperation::Set);
        assert!(u.pods.is_empty());
    }
}
