//! Which pod to evict first, as the kubelet ranks them.
//!
//! - Memory: pods using more than they request first (a pod with no stats counts as such),
//!   then lower priority first, then the largest usage above request first.
//! - PIDs: lower priority first, then the most processes first.
//! - Disk: pods using more local storage than they request first, then lower priority, then
//!   the largest usage above request.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::api::{Resource, Signal};
use super::signals::PodUsage;

/// One container of a pod's spec, with what it requests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerRequest {
    /// Container name.
    pub name: String,
    /// Memory request, bytes (0 when none).
    pub memory_request: i64,
    /// The memory request as written in the spec (`0` when none), for messages.
    pub memory_request_text: String,
}

/// A pod the eviction manager may evict.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodCandidate {
    /// Pod UID.
    pub uid: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Scheduling priority (0 when unset).
    pub priority: i32,
    /// A critical pod (system priority) is never evicted.
    pub critical: bool,
    /// The pod's effective memory request, bytes.
    pub memory_request: i64,
    /// The pod's effective ephemeral-storage request, bytes.
    pub ephemeral_storage_request: i64,
    /// Its containers (init containers included) and their requests.
    pub containers: Vec<ContainerRequest>,
    /// The pod's cgroup (hierarchy path), where its usage is read.
    pub cgroup: String,
}

impl PodCandidate {
    /// `namespace/name`.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Sorts `pods` so that the first is the one to evict for `signal`.
pub fn rank(signal: Signal, pods: &mut [PodCandidate], stats: &HashMap<String, PodUsage>) {
    match signal.resource() {
        Resource::Memory => pods.sort_by(|a, b| {
            exceeds_memory_request(a, b, stats)
                .then_with(|| by_priority(a, b))
                .then_with(|| by_memory_above_request(a, b, stats))
        }),
        Resource::Pids => {
            pods.sort_by(|a, b| by_priority(a, b).then_with(|| by_processes(a, b, stats)))
        }
        Resource::EphemeralStorage | Resource::Inodes => {
            let inodes = signal.resource() == Resource::Inodes;
            pods.sort_by(|a, b| {
                exceeds_disk_request(a, b, stats, inodes)
                    .then_with(|| by_priority(a, b))
                    .then_with(|| by_disk_above_request(a, b, stats, inodes))
            })
        }
    }
}

/// `true` sorts first.
fn true_first(a: bool, b: bool) -> Ordering {
    b.cmp(&a)
}

fn by_priority(a: &PodCandidate, b: &PodCandidate) -> Ordering {
    a.priority.cmp(&b.priority)
}

/// Stats of both pods, or the order that puts the pod without stats first.
fn both<'a>(
    a: &PodCandidate,
    b: &PodCandidate,
    stats: &'a HashMap<String, PodUsage>,
) -> Result<(&'a PodUsage, &'a PodUsage), Ordering> {
    match (stats.get(&a.uid), stats.get(&b.uid)) {
        (Some(x), Some(y)) => Ok((x, y)),
        (x, y) => Err(true_first(x.is_none(), y.is_none())),
    }
}

fn memory_of(u: &PodUsage) -> i64 {
    u.memory_working_set.unwrap_or(0)
}

fn exceeds_memory_request(
    a: &PodCandidate,
    b: &PodCandidate,
    stats: &HashMap<String, PodUsage>,
) -> Ordering {
    match both(a, b, stats) {
        Ok((x, y)) => true_first(
            memory_of(x) > a.memory_request,
            memory_of(y) > b.memory_request,
        ),
        Err(o) => o,
    }
}

fn by_memory_above_request(
    a: &PodCandidate,
    b: &PodCandidate,
    stats: &HashMap<String, PodUsage>,
) -> Ordering {
    match both(a, b, stats) {
        Ok((x, y)) => (memory_of(y) - b.memory_request).cmp(&(memory_of(x) - a.memory_request)),
        Err(o) => o,
    }
}

fn by_processes(a: &PodCandidate, b: &PodCandidate, stats: &HashMap<String, PodUsage>) -> Ordering {
    match both(a, b, stats) {
        Ok((x, y)) => y.processes.unwrap_or(0).cmp(&x.processes.unwrap_or(0)),
        Err(o) => o,
    }
}

fn disk_of(u: &PodUsage, inodes: bool) -> i64 {
    u.disk
        .map(|d| if inodes { d.inodes } else { d.bytes })
        .unwrap_or(0)
}

fn disk_request(p: &PodCandidate, inodes: bool) -> i64 {
    // Nothing requests inodes.
    if inodes {
        0
    } else {
        p.ephemeral_storage_request
    }
}

fn exceeds_disk_request(
    a: &PodCandidate,
    b: &PodCandidate,
    stats: &HashMap<String, PodUsage>,
    inodes: bool,
) -> Ordering {
    match both(a, b, stats) {
        Ok((x, y)) => true_first(
            disk_of(x, inodes) > disk_request(a, inodes),
            disk_of(y, inodes) > disk_request(b, inodes),
        ),
        Err(o) => o,
    }
}

fn by_disk_above_request(
    a: &PodCandidate,
    b: &PodCandidate,
    stats: &HashMap<String, PodUsage>,
    inodes: bool,
) -> Ordering {
    match both(a, b, stats) {
        Ok((x, y)) => (disk_of(y, inodes) - disk_request(b, inodes))
            .cmp(&(disk_of(x, inodes) - disk_request(a, inodes))),
        Err(o) => o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::signals::DiskUsage;

    fn pod(uid: &str, priority: i32, request: i64) -> PodCandidate {
        PodCandidate {
            uid: uid.into(),
            namespace: "default".into(),
            name: uid.into(),
            priority,
            memory_request: request,
            ..Default::default()
        }
    }

    fn mem(ws: i64) -> PodUsage {
        PodUsage {
            memory_working_set: Some(ws),
            ..Default::default()
        }
    }

    fn order(
        signal: Signal,
        mut pods: Vec<PodCandidate>,
        stats: &HashMap<String, PodUsage>,
    ) -> Vec<String> {
        rank(signal, &mut pods, stats);
        pods.into_iter().map(|p| p.uid).collect()
    }

    #[test]
    fn memory_ranking_puts_pods_above_their_request_first() {
        // guaranteed: within its 100 request; burstable: 50 over its request;
        // besteffort: 30 over (no request); critical-ish high priority hog: far over.
        let pods = vec![
            pod("guaranteed", 0, 100),
            pod("burstable", 0, 100),
            pod("besteffort", 0, 0),
            pod("important-hog", 1000, 0),
        ];
        let stats: HashMap<String, PodUsage> = [
            ("guaranteed".to_string(), mem(90)),
            ("burstable".to_string(), mem(150)),
            ("besteffort".to_string(), mem(30)),
            ("important-hog".to_string(), mem(5000)),
        ]
        .into();
        assert_eq!(
            order(Signal::MemoryAvailable, pods.clone(), &stats),
            vec!["burstable", "besteffort", "important-hog", "guaranteed"]
        );
        // A pod with no stats goes first.
        let mut stats2 = stats.clone();
        stats2.remove("guaranteed");
        assert_eq!(
            order(Signal::MemoryAvailable, pods, &stats2)[0],
            "guaranteed"
        );
    }

    #[test]
    fn pid_ranking_is_by_priority_then_processes() {
        let pods = vec![pod("a", 10, 0), pod("b", 0, 0), pod("c", 0, 0)];
        let p = |n| PodUsage {
            processes: Some(n),
            ..Default::default()
        };
        let stats: HashMap<String, PodUsage> = [
            ("a".to_string(), p(900)),
            ("b".to_string(), p(5)),
            ("c".to_string(), p(50)),
        ]
        .into();
        assert_eq!(
            order(Signal::PidAvailable, pods, &stats),
            vec!["c", "b", "a"]
        );
    }

    #[test]
    fn disk_ranking_uses_usage_above_the_storage_request() {
        let mut a = pod("a", 0, 0);
        a.ephemeral_storage_request = 1000;
        let b = pod("b", 0, 0);
        let d = |bytes, inodes| PodUsage {
            disk: Some(DiskUsage { bytes, inodes }),
            ..Default::default()
        };
        let stats: HashMap<String, PodUsage> = [
            ("a".to_string(), d(900, 10)),
            ("b".to_string(), d(100, 500)),
        ]
        .into();
        assert_eq!(
            order(Signal::NodeFsAvailable, vec![a.clone(), b.clone()], &stats),
            vec!["b", "a"]
        );
        assert_eq!(
            order(Signal::ImageFsInodesFree, vec![a, b], &stats),
            vec!["b", "a"]
        );
    }
}
