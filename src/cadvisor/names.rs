//! Container identity for the agent's cAdvisor API: the PLEG's relist already carries every
//! sandbox and container with its labels, so each relist refreshes a table from runtime ID to
//! identity, and a cgroup is named by its last path component (`.../pod<uid>/<id>`), which is
//! the runtime ID under the cgroupfs driver.
//!
//! Identities follow what cAdvisor's containerd handler reports: aliases are the container
//! ID and the cgroup name, the namespace is `containerd`, the labels are the container's CRI
//! labels plus `io.cri-containerd.kind` (`sandbox` or `container`; a sandbox has no
//! `io.kubernetes.container.name`), and the image is the container's image (the pause image
//! for sandboxes). Pod-level cgroups (`.../pod<uid>`) are not containers; [`PodLookup`]
//! names their pod for the kubelet's `/metrics/cadvisor`, as the kubelet's
//! `GetPodByCgroupfs` does.

use std::collections::{BTreeMap, HashMap, HashSet};

use collectors::{ContainerIdentity, ContainerNamer};
use parking_lot::RwLock;
use proto::cri;

use crate::kuberuntime::labels;

/// The label containerd's CRI plugin puts on every container it creates.
pub const KIND_LABEL: &str = "io.cri-containerd.kind";

/// A pod, as the metrics endpoints label it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodRef {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub uid: String,
}

/// Finds the pod a pod-level cgroup belongs to.
pub trait PodLookup: Send + Sync {
    /// The pod of cgroup `cgroup_name` if it is a pod-level cgroup (`.../pod<uid>`).
    fn pod_for_cgroup(&self, cgroup_name: &str) -> Option<PodRef>;
}

/// The pod UID in a pod-level cgroup's last component: `pod<uid>` (cgroupfs driver) or
/// `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd driver).
pub fn pod_uid_of_cgroup(cgroup_name: &str) -> Option<String> {
    let last = cgroup_name.rsplit('/').next()?;
    if let Some(s) = last.strip_suffix(".slice") {
        let (_, uid) = s.rsplit_once("-pod")?;
        return (!uid.is_empty()).then(|| uid.replace('_', "-"));
    }
    let uid = last.strip_prefix("pod")?;
    (!uid.is_empty()).then(|| uid.to_string())
}

#[derive(Debug, Default)]
struct Tables {
    by_id: HashMap<String, ContainerIdentity>,
    pods: HashMap<String, PodRef>,
}

/// Runtime ID → identity, refreshed by the PLEG.
#[derive(Debug, Default)]
pub struct RuntimeNames {
    tables: RwLock<Tables>,
    runtime: String,
}

fn identity(
    id: &str,
    kind: &str,
    l: &HashMap<String, String>,
    image: &str,
    runtime: &str,
) -> ContainerIdentity {
    let mut labels: BTreeMap<String, String> = l
        .iter()
        .filter(|(k, _)| k.as_str() != labels::NODE_LABEL)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.insert(KIND_LABEL.to_string(), kind.to_string());
    ContainerIdentity {
        aliases: vec![id.to_string()],
        namespace: runtime.to_string(),
        labels,
        image: image.to_string(),
    }
}

impl RuntimeNames {
    pub fn new(runtime: &str) -> Self {
        Self {
            tables: RwLock::new(Tables::default()),
            runtime: runtime.to_string(),
        }
    }

    /// Replaces the table with what one relist saw.
    pub fn update(
        &self,
        sandboxes: &[cri::PodSandbox],
        containers: &[cri::Container],
        pause_image: &str,
    ) {
        let mut t = Tables {
            by_id: HashMap::with_capacity(sandboxes.len() + containers.len()),
            pods: HashMap::with_capacity(sandboxes.len()),
        };
        self.insert(&mut t, sandboxes, containers, pause_image);
        *self.tables.write() = t;
    }

    /// Changes the table by what came and went since it was built: adds `sandboxes` and
    /// `containers`, and drops the IDs in `gone` (a pod is dropped with its last sandbox).
    pub fn apply(
        &self,
        sandboxes: &[cri::PodSandbox],
        containers: &[cri::Container],
        gone: &[&str],
        pause_image: &str,
    ) {
        let mut t = self.tables.write();
        let mut uids = HashSet::new();
        for id in gone {
            if let Some(gone) = t.by_id.remove(*id) {
                if gone.labels.get(KIND_LABEL).map(String::as_str) == Some("sandbox") {
                    if let Some(uid) = gone.labels.get(labels::POD_UID_LABEL) {
                        uids.insert(uid.clone());
                    }
                }
            }
        }
        // Pods whose sandboxes are all gone.
        for uid in uids {
            let still = t.by_id.values().any(|i| {
                i.labels.get(KIND_LABEL).map(String::as_str) == Some("sandbox")
                    && i.labels.get(labels::POD_UID_LABEL) == Some(&uid)
            });
            if !still {
                t.pods.remove(&uid);
            }
        }
        self.insert(&mut t, sandboxes, containers, pause_image);
    }

    /// The IDs of every sandbox and container in the table.
    pub fn ids(&self) -> HashSet<String> {
        self.tables.read().by_id.keys().cloned().collect()
    }

    fn insert(
        &self,
        t: &mut Tables,
        sandboxes: &[cri::PodSandbox],
        containers: &[cri::Container],
        pause_image: &str,
    ) {
        for s in sandboxes {
            t.by_id.insert(
                s.id.clone(),
                identity(&s.id, "sandbox", &s.labels, pause_image, &self.runtime),
            );
            let get = |k: &str| s.labels.get(k).cloned().unwrap_or_default();
            let uid = get(labels::POD_UID_LABEL);
            if !uid.is_empty() {
                t.pods.insert(
                    uid.clone(),
                    PodRef {
                        name: get(labels::POD_NAME_LABEL),
                        namespace: get(labels::POD_NAMESPACE_LABEL),
                        uid,
                    },
                );
            }
        }
        for c in containers {
            let image = c
                .annotations
                .get(labels::CONTAINER_IMAGE_ANNOTATION)
                .cloned()
                .or_else(|| c.image.as_ref().map(|i| i.image.clone()))
                .unwrap_or_default();
            t.by_id.insert(
                c.id.clone(),
                identity(&c.id, "container", &c.labels, &image, &self.runtime),
            );
        }
    }

    /// The pod with UID `uid`, if a sandbox of it is known.
    pub fn pod(&self, uid: &str) -> Option<PodRef> {
        self.tables.read().pods.get(uid).cloned()
    }
}

impl ContainerNamer for RuntimeNames {
    fn identify(&self, cgroup_name: &str) -> Option<ContainerIdentity> {
        let last = cgroup_name.rsplit('/').next()?;
        let mut id = self.tables.read().by_id.get(last).cloned()?;
        // cAdvisor's containerd handler: aliases are the ID and the cgroup name.
        id.aliases.push(cgroup_name.to_string());
        Some(id)
    }
}

impl PodLookup for RuntimeNames {
    fn pod_for_cgroup(&self, cgroup_name: &str) -> Option<PodRef> {
        self.pod(&pod_uid_of_cgroup(cgroup_name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cgroups_by_runtime_id() {
        let names = RuntimeNames::new("containerd");
        let pod_labels: HashMap<String, String> = [
            (labels::POD_NAME_LABEL.to_string(), "web".to_string()),
            (
                labels::POD_NAMESPACE_LABEL.to_string(),
                "default".to_string(),
            ),
            (labels::POD_UID_LABEL.to_string(), "u1".to_string()),
            (labels::NODE_LABEL.to_string(), "node-a".to_string()),
        ]
        .into();
        let mut l = pod_labels.clone();
        l.insert(labels::CONTAINER_NAME_LABEL.to_string(), "app".to_string());
        let c = cri::Container {
            id: "abc123".into(),
            labels: l,
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sb = cri::PodSandbox {
            id: "sb1".into(),
            labels: pod_labels,
            ..Default::default()
        };
        names.update(&[sb], &[c], "pause:3.10");
        let id = names.identify("/kubepods/besteffort/podu1/abc123").unwrap();
        assert_eq!(id.labels[labels::CONTAINER_NAME_LABEL], "app");
        assert_eq!(id.labels[KIND_LABEL], "container");
        assert!(!id.labels.contains_key(labels::NODE_LABEL));
        assert_eq!(id.image, "busybox");
        assert_eq!(id.aliases, ["abc123", "/kubepods/besteffort/podu1/abc123"]);
        assert_eq!(id.namespace, "containerd");
        let pod = names.identify("/kubepods/besteffort/podu1/sb1").unwrap();
        assert!(!pod.labels.contains_key(labels::CONTAINER_NAME_LABEL));
        assert_eq!(pod.labels[KIND_LABEL], "sandbox");
        assert_eq!(pod.image, "pause:3.10");
        assert!(names.identify("/kubepods/besteffort/podu1").is_none());
        let want = PodRef {
            name: "web".into(),
            namespace: "default".into(),
            uid: "u1".into(),
        };
        assert_eq!(
            names.pod_for_cgroup("/kubepods/besteffort/podu1"),
            Some(want.clone())
        );
        assert_eq!(names.pod_for_cgroup("/kubepods/besteffort/podu2"), None);
        assert_eq!(names.pod_for_cgroup("/kubepods/besteffort"), None);
        assert_eq!(
            names.pod_for_cgroup(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podu1.slice"
            ),
            Some(want)
        );

        // Incremental changes: a second sandbox of the pod (a sandbox restart) keeps the pod
        // known when the first goes; the pod leaves with its last sandbox.
        let sb2 = cri::PodSandbox {
            id: "sb2".into(),
            labels: pod_labels_of(&names, "sb1"),
            ..Default::default()
        };
        names.apply(&[sb2], &[], &["sb1", "abc123"], "pause:3.10");
        assert!(names
            .identify("/kubepods/besteffort/podu1/abc123")
            .is_none());
        assert!(names.identify("/kubepods/besteffort/podu1/sb1").is_none());
        assert!(names.identify("/kubepods/besteffort/podu1/sb2").is_some());
        assert_eq!(names.pod("u1").map(|p| p.name), Some("web".to_string()));
        names.apply(&[], &[], &["sb2", "not-there"], "pause:3.10");
        assert!(names.pod("u1").is_none());
        assert!(names.ids().is_empty());
    }

    /// The pod labels an identity in the table carries (without the kind).
    fn pod_labels_of(names: &RuntimeNames, id: &str) -> HashMap<String, String> {
        let t = names.tables.read();
        t.by_id[id]
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != KIND_LABEL)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn pod_uids_from_cgroup_names() {
        assert_eq!(
            pod_uid_of_cgroup("/n/kubepods/podabc-1").as_deref(),
            Some("abc-1")
        );
        assert_eq!(
            pod_uid_of_cgroup("/kubepods-besteffort-poda_b_c.slice").as_deref(),
            Some("a-b-c")
        );
        assert_eq!(pod_uid_of_cgroup("/kubepods/burstable"), None);
        assert_eq!(pod_uid_of_cgroup("/pod"), None);
    }
}
