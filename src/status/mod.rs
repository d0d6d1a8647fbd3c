//! The status manager (`pkg/kubelet/status`): the latest API status of every pod this node runs,
//! next to the pod it belongs to. The read-only API serves it, API-server mode will publish it,
//! and it enforces the kubelet's rules that a terminal phase never changes back and that
//! transition times move only when a condition does.

pub mod api;
pub mod generate;

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use parking_lot::RwLock;
use tokio::sync::watch;

/// One pod and its latest status.
#[derive(Debug, Clone)]
pub struct PodEntry {
    pub pod: Arc<Pod>,
    pub status: Option<PodStatus>,
    /// Nothing of the pod runs and its volumes are torn down (the kubelet's
    /// `PodResourcesAreReclaimed`): the API side may delete it for good.
    pub reclaimed: bool,
}

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct StatusManager {
    pods: Arc<RwLock<HashMap<String, PodEntry>>>,
    /// Bumped on every change, for watchers (API-server status sync, tests).
    generation: Arc<watch::Sender<u64>>,
}

impl Default for StatusManager {
    fn default() -> Self {
        Self::new()
    }
}

impl StatusManager {
    pub fn new() -> Self {
        Self {
            pods: Arc::new(RwLock::new(HashMap::new())),
            generation: Arc::new(watch::channel(0).0),
        }
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Records (or replaces) the desired pod, keeping its status.
    pub fn set_pod(&self, uid: &str, pod: Arc<Pod>) {
        let mut m = self.pods.write();
        m.entry(uid.to_string())
            .and_modify(|e| e.pod = pod.clone())
            .or_insert(PodEntry {
                pod,
                status: None,
                reclaimed: false,
            });
        drop(m);
        self.bump();
    }

    /// Records a new status. A pod already Succeeded or Failed keeps that phase.
    pub fn set_status(&self, uid: &str, mut status: PodStatus) {
        let mut m = self.pods.write();
        let Some(e) = m.get_mut(uid) else {
            return;
        };
        if let Some(prev) = e.status.as_ref().and_then(|s| s.phase.as_deref()) {
            if matches!(prev, "Succeeded" | "Failed") {
                status.phase = Some(prev.to_string());
                if status.reason.is_none() {
                    status.reason = e.status.as_ref().and_then(|s| s.reason.clone());
                    status.message = e.status.as_ref().and_then(|s| s.message.clone());
                }
            }
        }
        if e.status.as_ref() == Some(&status) {
            return;
        }
        e.status = Some(status);
        drop(m);
        self.bump();
    }

    /// The desired pod, if known.
    pub fn pod(&self, uid: &str) -> Option<Arc<Pod>> {
        self.pods.read().get(uid).map(|e| e.pod.clone())
    }

    /// Marks a finished pod's resources reclaimed (nothing runs, volumes torn down).
    pub fn set_reclaimed(&self, uid: &str) {
        let changed = match self.pods.write().get_mut(uid) {
            Some(e) if !e.reclaimed => {
                e.reclaimed = true;
                true
            }
            _ => false,
        };
        if changed {
            self.bump();
        }
    }

    /// Whether [`Self::set_reclaimed`] was called for the pod.
    pub fn reclaimed(&self, uid: &str) -> bool {
        self.pods.read().get(uid).is_some_and(|e| e.reclaimed)
    }

    pub fn status(&self, uid: &str) -> Option<PodStatus> {
        self.pods.read().get(uid).and_then(|e| e.status.clone())
    }

    /// The UIDs of every pod in the cache.
    pub fn uids(&self) -> std::collections::HashSet<String> {
        self.pods.read().keys().cloned().collect()
    }

    pub fn remove(&self, uid: &str) {
        if self.pods.write().remove(uid).is_some() {
            self.bump();
        }
    }

    /// Every pod with its status set on it, sorted by namespace and name.
    pub fn pods(&self) -> Vec<Pod> {
        let m = self.pods.read();
        let mut out: Vec<Pod> = m
            .values()
            .map(|e| {
                let mut p = (*e.pod).clone();
                p.status = e.status.clone();
                p
            })
            .collect();
        out.sort_by(|a, b| {
            (a.metadata.namespace.as_deref(), a.metadata.name.as_deref())
                .cmp(&(b.metadata.namespace.as_deref(), b.metadata.name.as_deref()))
        });
        out
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_phase_is_sticky() {
        let m = StatusManager::new();
        let pod: Pod =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p", "uid": "u"}}))
                .unwrap();
        m.set_pod("u", Arc::new(pod));
        m.set_status(
            "u",
            PodStatus {
                phase: Some("Failed".into()),
                reason: Some("Evicted".into()),
                ..Default::default()
            },
        );
        m.set_status(
            "u",
            PodStatus {
                phase: Some("Running".into()),
                ..Default::default()
            },
        );
        let s = m.status("u").unwrap();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(s.reason.as_deref(), Some("Evicted"));
        assert_eq!(
            m.pods()[0].status.as_ref().unwrap().phase.as_deref(),
            Some("Failed")
        );
        m.remove("u");
        assert!(m.pods().is_empty());
    }
}
