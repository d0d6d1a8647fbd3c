//! Container identity for the agent's cAdvisor API: the PLEG's relist already carries every
//! sandbox and container with its labels, so each relist refreshes a table from runtime ID to
//! identity, and a cgroup is named by its last path component (`.../pod<uid>/<id>`), which is
//! the runtime ID under the cgroupfs driver.

use std::collections::{BTreeMap, HashMap};

use collectors::{ContainerIdentity, ContainerNamer};
use parking_lot::RwLock;
use proto::cri;

use crate::kuberuntime::labels;

/// Runtime ID → identity, refreshed by the PLEG.
#[derive(Debug, Default)]
pub struct RuntimeNames {
    by_id: RwLock<HashMap<String, ContainerIdentity>>,
    runtime: String,
}

fn identity(
    id: &str,
    container_name: &str,
    l: &HashMap<String, String>,
    image: &str,
    runtime: &str,
) -> ContainerIdentity {
    let pod = l.get(labels::POD_NAME_LABEL).cloned().unwrap_or_default();
    let ns = l
        .get(labels::POD_NAMESPACE_LABEL)
        .cloned()
        .unwrap_or_default();
    let uid = l.get(labels::POD_UID_LABEL).cloned().unwrap_or_default();
    let labels: BTreeMap<String, String> = [
        (labels::POD_NAME_LABEL, pod.clone()),
        (labels::POD_NAMESPACE_LABEL, ns.clone()),
        (labels::POD_UID_LABEL, uid.clone()),
        (labels::CONTAINER_NAME_LABEL, container_name.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    ContainerIdentity {
        aliases: vec![
            format!("k8s_{container_name}_{pod}_{ns}_{uid}_0"),
            id.to_string(),
        ],
        namespace: runtime.to_string(),
        labels,
        image: image.to_string(),
    }
}

impl RuntimeNames {
    pub fn new(runtime: &str) -> Self {
        Self {
            by_id: RwLock::new(HashMap::new()),
            runtime: runtime.to_string(),
        }
    }

    /// Replaces the table with what one relist saw. Sandboxes are named `POD`, as the kubelet's
    /// cAdvisor labels them.
    pub fn update(
        &self,
        sandboxes: &[cri::PodSandbox],
        containers: &[cri::Container],
        pause_image: &str,
    ) {
        let mut m = HashMap::with_capacity(sandboxes.len() + containers.len());
        for s in sandboxes {
            m.insert(
                s.id.clone(),
                identity(&s.id, "POD", &s.labels, pause_image, &self.runtime),
            );
        }
        for c in containers {
            let name = c
                .labels
                .get(labels::CONTAINER_NAME_LABEL)
                .cloned()
                .unwrap_or_default();
            let image = c
                .annotations
                .get(labels::CONTAINER_IMAGE_ANNOTATION)
                .cloned()
                .or_else(|| c.image.as_ref().map(|i| i.image.clone()))
                .unwrap_or_default();
            m.insert(
                c.id.clone(),
                identity(&c.id, &name, &c.labels, &image, &self.runtime),
            );
        }
        *self.by_id.write() = m;
    }
}

impl ContainerNamer for RuntimeNames {
    fn identify(&self, cgroup_name: &str) -> Option<ContainerIdentity> {
        let last = cgroup_name.rsplit('/').next()?;
        self.by_id.read().get(last).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cgroups_by_runtime_id() {
        let names = RuntimeNames::new("containerd");
        let l: HashMap<String, String> = [
            (labels::POD_NAME_LABEL.to_string(), "web".to_string()),
            (
                labels::POD_NAMESPACE_LABEL.to_string(),
                "default".to_string(),
            ),
            (labels::POD_UID_LABEL.to_string(), "u1".to_string()),
            (labels::CONTAINER_NAME_LABEL.to_string(), "app".to_string()),
        ]
        .into();
        let c = cri::Container {
            id: "abc123".into(),
            labels: l.clone(),
            image: Some(cri::ImageSpec {
                image: "busybox".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let sb = cri::PodSandbox {
            id: "sb1".into(),
            labels: l,
            ..Default::default()
        };
        names.update(&[sb], &[c], "pause:3.10");
        let id = names.identify("/kubepods/besteffort/podu1/abc123").unwrap();
        assert_eq!(id.labels[labels::CONTAINER_NAME_LABEL], "app");
        assert_eq!(id.image, "busybox");
        assert_eq!(id.aliases[0], "k8s_app_web_default_u1_0");
        let pod = names.identify("/kubepods/besteffort/podu1/sb1").unwrap();
        assert_eq!(pod.labels[labels::CONTAINER_NAME_LABEL], "POD");
        assert!(names.identify("/kubepods/besteffort/podu1").is_none());
    }
}
