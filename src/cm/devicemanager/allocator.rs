//! Which container holds which devices (the kubelet's `podDevices`), and the choice of free
//! healthy devices for a request (`devicesToAllocate`): pure data, no I/O.
//!
//! An entry is keyed by (pod UID, container, resource); a device is in use while any entry
//! holds it, so a device is never handed to two containers. Entries of pods that are no longer
//! active are dropped before each allocation ([`PodDevices::retain_pods`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use proto::deviceplugin::ContainerAllocateResponse;

use super::DeviceError;

/// One container's devices of one resource, with the plugin's Allocate answer once it came.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub device_ids: BTreeSet<String>,
    pub response: Option<ContainerAllocateResponse>,
}

/// (pod UID, container name, resource name).
pub type Key = (String, String, String);

/// Every allocation on the node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodDevices {
    pub entries: BTreeMap<Key, Entry>,
}

impl PodDevices {
    /// Devices of `resource` held by any container.
    pub fn in_use(&self, resource: &str) -> BTreeSet<String> {
        self.entries
            .iter()
            .filter(|((_, _, r), _)| r == resource)
            .flat_map(|(_, e)| e.device_ids.iter().cloned())
            .collect()
    }

    /// Resources that have allocations.
    pub fn resources(&self) -> BTreeSet<String> {
        self.entries.keys().map(|(_, _, r)| r.clone()).collect()
    }

    pub fn get(&self, uid: &str, container: &str, resource: &str) -> Option<&Entry> {
        self.entries
            .get(&(uid.to_string(), container.to_string(), resource.to_string()))
    }

    pub fn insert(&mut self, uid: &str, container: &str, resource: &str, entry: Entry) {
        self.entries.insert(
            (uid.to_string(), container.to_string(), resource.to_string()),
            entry,
        );
    }

    /// One container's (resource, entry) pairs.
    pub fn container<'a>(
        &'a self,
        uid: &'a str,
        container: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries
            .iter()
            .filter(move |((u, c, _), _)| u == uid && c == container)
            .map(|((_, _, r), e)| (r.as_str(), e))
    }

    /// Drops the entries of pods not in `active`. True when something was dropped.
    pub fn retain_pods(&mut self, active: &HashSet<String>) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(uid, _, _), _| active.contains(uid));
        before != self.entries.len()
    }
}

/// Chooses `needed` devices of `resource` among `healthy` ones not in `in_use`, in ID order
/// (the kubelet takes them from an unordered set; an order makes the choice reproducible).
pub fn choose(
    resource: &str,
    needed: usize,
    healthy: &BTreeSet<String>,
    in_use: &BTreeSet<String>,
) -> Result<BTreeSet<String>, DeviceError> {
    let available: Vec<&String> = healthy.difference(in_use).collect();
    if available.len() < needed {
        return Err(DeviceError::Unavailable {
            resource: resource.to_string(),
            requested: needed,
            available: available.len(),
        });
    }
    Ok(available.into_iter().take(needed).cloned().collect())
}

/// `preferred` as the allocation, if it names exactly `needed` distinct devices that are all
/// in `allowed`; otherwise `fallback` (a plugin's preference is only advice).
pub fn prefer(
    preferred: &[String],
    needed: usize,
    allowed: &BTreeSet<String>,
    fallback: BTreeSet<String>,
) -> BTreeSet<String> {
    let set: BTreeSet<String> = preferred.iter().cloned().collect();
    if set.len() == needed && preferred.len() == needed && set.is_subset(allowed) {
        set
    } else {
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn chooses_free_healthy_devices_and_never_double_books() {
        let healthy = set(&["w0", "w1", "w2"]);
        let mut pods = PodDevices::default();
        let first = choose(
            "example.com/widget",
            2,
            &healthy,
            &pods.in_use("example.com/widget"),
        )
        .unwrap();
        assert_eq!(first, set(&["w0", "w1"]));
        pods.insert(
            "u1",
            "main",
            "example.com/widget",
            Entry {
                device_ids: first,
                response: None,
            },
        );
        let second = choose(
            "example.com/widget",
            1,
            &healthy,
            &pods.in_use("example.com/widget"),
        )
        .unwrap();
        assert_eq!(second, set(&["w2"]));
        pods.insert(
            "u2",
            "main",
            "example.com/widget",
            Entry {
                device_ids: second,
                response: None,
            },
        );
        let err = choose(
            "example.com/widget",
            1,
            &healthy,
            &pods.in_use("example.com/widget"),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "requested number of devices unavailable for example.com/widget. Requested: 1, Available: 0"
        );
        // Another resource's devices are not in use for this one.
        assert!(pods.in_use("example.com/other").is_empty());
    }

    #[test]
    fn unhealthy_devices_are_not_available() {
        let healthy = set(&["w0", "w2"]);
        let err = choose("r/x", 3, &healthy, &BTreeSet::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "requested number of devices unavailable for r/x. Requested: 3, Available: 2"
        );
    }

    #[test]
    fn inactive_pods_release_their_devices() {
        let mut pods = PodDevices::default();
        for (uid, id) in [("u1", "w0"), ("u2", "w1")] {
            pods.insert(
                uid,
                "main",
                "r/x",
                Entry {
                    device_ids: set(&[id]),
                    response: None,
                },
            );
        }
        assert!(!pods.retain_pods(&["u1".to_string(), "u2".to_string()].into()));
        assert!(pods.retain_pods(&["u2".to_string()].into()));
        assert_eq!(pods.in_use("r/x"), set(&["w1"]));
        assert_eq!(pods.container("u2", "main").count(), 1);
        assert_eq!(pods.container("u1", "main").count(), 0);
    }

    #[test]
    fn a_plugins_preference_is_taken_only_when_it_fits() {
        let allowed = set(&["a", "b", "c"]);
        let fallback = set(&["a", "b"]);
        let pref = |p: &[&str]| {
            let p: Vec<String> = p.iter().map(|s| s.to_string()).collect();
            prefer(&p, 2, &allowed, fallback.clone())
        };
        assert_eq!(pref(&["b", "c"]), set(&["b", "c"]));
        assert_eq!(pref(&["c"]), fallback, "too few");
        assert_eq!(pref(&["c", "c"]), fallback, "duplicates");
        assert_eq!(pref(&["c", "z"]), fallback, "not available");
    }
}
