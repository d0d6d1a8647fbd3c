//! Merging pod sources (`pkg/kubelet/config/config.go`): each source's updates become ADD /
//! UPDATE / REMOVE changes for the sync loop. A SET that repeats a pod unchanged produces
//! nothing, so a periodic recheck of the manifest directory never restarts a pod. Whether every
//! expected source has spoken at least once (`sources_ready`) gates the cleanup of runtime pods
//! no source claims.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::sources::{PodOperation, PodUpdate, CONFIG_SEEN_ANNOTATION};

/// A change to the set of pods the node must run.
#[derive(Debug, Clone)]
pub enum PodChange {
    Add(Arc<Pod>),
    Update(Arc<Pod>),
    Remove(Arc<Pod>),
}

impl PodChange {
    pub fn pod(&self) -> &Arc<Pod> {
        match self {
            PodChange::Add(p) | PodChange::Update(p) | PodChange::Remove(p) => p,
        }
    }
}

pub fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// Annotations that say something about the pod's journey, not what it should be.
fn relevant_annotations(pod: &Pod) -> BTreeMap<String, String> {
    let mut a = pod.metadata.annotations.clone().unwrap_or_default();
    a.remove(CONFIG_SEEN_ANNOTATION);
    a
}

/// Whether a new version of a pod differs from the old one in anything the node acts on.
fn changed(old: &Pod, new: &Pod) -> bool {
    old.spec != new.spec
        || old.metadata.labels != new.metadata.labels
        || old.metadata.deletion_timestamp != new.metadata.deletion_timestamp
        || old.metadata.deletion_grace_period_seconds != new.metadata.deletion_grace_period_seconds
        || relevant_annotations(old) != relevant_annotations(new)
}

/// The merged view of all sources.
#[derive(Debug, Default)]
pub struct PodConfig {
    sources: HashMap<&'static str, HashMap<String, Arc<Pod>>>,
    expected: HashSet<&'static str>,
    seen: HashSet<&'static str>,
}

impl PodConfig {
    /// `expected` lists the sources that must report before orphans may be cleaned up.
    pub fn new(expected: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            expected: expected.into_iter().collect(),
            ..Default::default()
        }
    }

    pub fn sources_ready(&self) -> bool {
        self.expected.iter().all(|s| self.seen.contains(s))
    }

    /// Every pod any source wants, by UID.
    pub fn pods(&self) -> HashMap<String, Arc<Pod>> {
        self.sources
            .values()
            .flat_map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect()
    }

    fn stamp(mut pod: Pod) -> Arc<Pod> {
        let seen = k8s_openapi::jiff::Timestamp::now().to_string();
        pod.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .entry(CONFIG_SEEN_ANNOTATION.to_string())
            .or_insert(seen);
        Arc::new(pod)
    }

    /// Applies one source update; returns what changed.
    pub fn apply(&mut self, update: PodUpdate) -> Vec<PodChange> {
        self.seen.insert(update.source);
        let current = self.sources.entry(update.source).or_default();
        let mut out = Vec::new();
        let upsert =
            |current: &mut HashMap<String, Arc<Pod>>, pod: Pod, out: &mut Vec<PodChange>| {
                let uid = uid_of(&pod);
                match current.get(&uid) {
                    None => {
                        let p = Self::stamp(pod);
                        current.insert(uid, p.clone());
                        out.push(PodChange::Add(p));
                    }
                    Some(old) if changed(old, &pod) => {
                        let mut pod = pod;
                        // Keep the first-seen time across updates.
                        if let Some(seen) = old
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(CONFIG_SEEN_ANNOTATION))
                        {
                            pod.metadata
                                .annotations
                                .get_or_insert_with(Default::default)
                                .insert(CONFIG_SEEN_ANNOTATION.into(), seen.clone());
                        }
                        let p = Arc::new(pod);
                        current.insert(uid, p.clone());
                        out.push(PodChange::Update(p));
                    }
                    Some(_) => {}
                }
            };
        match update.op {
            PodOperation::Set => {
                let wanted: HashSet<String> = update.pods.iter().map(uid_of).collect();
                let gone: Vec<String> = current
                    .keys()
                    .filter(|k| !wanted.contains(*k))
                    .cloned()
                    .collect();
                for uid in gone {
                    if let Some(p) = current.remove(&uid) {
                        out.push(PodChange::Remove(p));
                    }
                }
                for pod in update.pods {
                    upsert(current, pod, &mut out);
                }
            }
            PodOperation::Add | PodOperation::Update => {
                for pod in update.pods {
                    upsert(current, pod, &mut out);
                }
            }
            PodOperation::Remove => {
                for pod in update.pods {
                    if let Some(p) = current.remove(&uid_of(&pod)) {
                        out.push(PodChange::Remove(p));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::FILE_SOURCE;
    use serde_json::json;

    fn pod(uid: &str, image: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "uid": uid},
            "spec": {"containers": [{"name": "c", "image": image}]}
        }))
        .unwrap()
    }

    fn set(pods: Vec<Pod>) -> PodUpdate {
        PodUpdate {
            source: FILE_SOURCE,
            op: PodOperation::Set,
            pods,
        }
    }

    fn kinds(changes: &[PodChange]) -> Vec<(String, &'static str)> {
        changes
            .iter()
            .map(|c| {
                let k = match c {
                    PodChange::Add(_) => "add",
                    PodChange::Update(_) => "update",
                    PodChange::Remove(_) => "remove",
                };
                (uid_of(c.pod()), k)
            })
            .collect()
    }

    #[test]
    fn set_diffs_into_add_update_remove() {
        let mut cfg = PodConfig::new([FILE_SOURCE]);
        assert!(!cfg.sources_ready());
        let c = cfg.apply(set(vec![pod("a", "x"), pod("b", "x")]));
        assert!(cfg.sources_ready());
        let mut k = kinds(&c);
        k.sort();
        assert_eq!(k, vec![("a".into(), "add"), ("b".into(), "add")]);
        // The same set again changes nothing.
        assert!(cfg
            .apply(set(vec![pod("a", "x"), pod("b", "x")]))
            .is_empty());
        let c = cfg.apply(set(vec![pod("a", "y")]));
        let mut k = kinds(&c);
        k.sort();
        assert_eq!(k, vec![("a".into(), "update"), ("b".into(), "remove")]);
        assert_eq!(cfg.pods().len(), 1);
    }

    #[test]
    fn an_empty_first_set_makes_the_source_ready() {
        let mut cfg = PodConfig::new([FILE_SOURCE]);
        assert!(cfg.apply(set(vec![])).is_empty());
        assert!(cfg.sources_ready());
    }

    #[test]
    fn seen_annotation_is_set_once() {
        let mut cfg = PodConfig::new([FILE_SOURCE]);
        let c = cfg.apply(set(vec![pod("a", "x")]));
        let seen =
            c[0].pod().metadata.annotations.as_ref().unwrap()[CONFIG_SEEN_ANNOTATION].clone();
        let c = cfg.apply(set(vec![pod("a", "y")]));
        assert_eq!(
            c[0].pod().metadata.annotations.as_ref().unwrap()[CONFIG_SEEN_ANNOTATION],
            seen
        );
    }
}
