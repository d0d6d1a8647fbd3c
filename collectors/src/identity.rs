//! Naming cgroups: who a container is (pod, namespace, container name, image).
//!
//! The collectors only know cgroup paths. The agent's sync loop knows which pod and container
//! a cgroup belongs to; it fills a [`NameRegistry`] (or implements [`ContainerNamer`] itself)
//! and the HTTP layer attaches the identity as cAdvisor's `aliases`, `namespace`, `labels` and
//! `image` when it serves a container.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;

/// Identity of a container, in cAdvisor's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerIdentity {
    /// Other names (e.g. `k8s_<container>_<pod>_<namespace>_<uid>_0` and the container id).
    pub aliases: Vec<String>,
    /// Namespace under which the aliases are unique (cAdvisor uses the runtime name,
    /// e.g. `containerd`).
    pub namespace: String,
    /// Labels (`io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`,
    /// `io.kubernetes.container.name`, ...).
    pub labels: BTreeMap<String, String>,
    /// Image reference.
    pub image: String,
}

/// Tells who the container at a cgroup is. Implemented by the agent; the standalone monitor
/// uses [`NoNames`].
pub trait ContainerNamer: Send + Sync {
    /// The identity of container `cgroup_name` (`/kubepods/.../<id>`), if known.
    fn identify(&self, cgroup_name: &str) -> Option<ContainerIdentity>;
}

/// Knows no one: every container is just its cgroup path.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoNames;

impl ContainerNamer for NoNames {
    fn identify(&self, _cgroup_name: &str) -> Option<ContainerIdentity> {
        None
    }
}

/// A thread-safe table from cgroup name to identity, for the sync loop to keep up to date.
#[derive(Debug, Default)]
pub struct NameRegistry {
    names: RwLock<HashMap<String, ContainerIdentity>>,
}

impl NameRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the identity of `cgroup_name`.
    pub fn set(&self, cgroup_name: impl Into<String>, identity: ContainerIdentity) {
        self.names.write().insert(cgroup_name.into(), identity);
    }

    /// Forgets `cgroup_name`.
    pub fn remove(&self, cgroup_name: &str) {
        self.names.write().remove(cgroup_name);
    }

    /// Number of known containers.
    pub fn len(&self) -> usize {
        self.names.read().len()
    }

    /// Whether no container is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ContainerNamer for NameRegistry {
    fn identify(&self, cgroup_name: &str) -> Option<ContainerIdentity> {
        self.names.read().get(cgroup_name).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_sets_and_forgets() {
        let r = NameRegistry::new();
        assert!(NoNames.identify("/a").is_none());
        r.set(
            "/kubepods/pod1/c1",
            ContainerIdentity {
                namespace: "containerd".into(),
                image: "busybox".into(),
                ..Default::default()
            },
        );
        assert_eq!(r.identify("/kubepods/pod1/c1").unwrap().image, "busybox");
        assert_eq!(r.len(), 1);
        r.remove("/kubepods/pod1/c1");
        assert!(r.identify("/kubepods/pod1/c1").is_none());
        assert!(r.is_empty());
    }
}
