//! From a node summary to signal observations (`makeSignalObservations`): how much of each
//! resource is available, against what capacity, as of when.
//!
//! A [`NodeSummary`] is the plain-data input of one eviction pass: node memory (capacity and
//! working set of the cgroup that bounds the node's memory), the pods' cgroup, the node and
//! image filesystems, PIDs, and per-pod usage. [`super::stats`] builds it from the collector's
//! rings; tests build it by hand.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::api::Signal;

/// Nanoseconds since the UNIX epoch, as the collectors stamp samples.
pub type Timestamp = u64;

/// Memory of the node (or of the pods' cgroup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// The capacity the working set is measured against, bytes.
    pub capacity: i64,
    /// Working set (usage minus inactive file pages), bytes.
    pub working_set: i64,
    /// Usage including all page cache, bytes.
    pub usage: i64,
    /// When it was sampled.
    pub time: Timestamp,
    /// The memory cgroup these figures come from (its directory in the memory hierarchy),
    /// for usage-threshold notifications. `None` when the figures come from `/proc/meminfo`.
    pub cgroup_dir: Option<PathBuf>,
}

impl MemoryStats {
    /// `capacity - working_set`, never negative.
    pub fn available(&self) -> i64 {
        (self.capacity - self.working_set).max(0)
    }

    /// Page cache that reclaim can drop (`usage - working_set`).
    pub fn inactive_file(&self) -> i64 {
        (self.usage - self.working_set).max(0)
    }
}

/// A filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsStats {
    /// Device number (`major << 32 | minor`): two roles on one device share it.
    pub device: u64,
    /// Total bytes.
    pub capacity: i64,
    /// Bytes available.
    pub available: i64,
    /// Total inodes.
    pub inodes: i64,
    /// Free inodes.
    pub inodes_free: i64,
    /// When it was measured.
    pub time: Timestamp,
}

/// Process IDs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidStats {
    /// `kernel.pid_max`.
    pub max: i64,
    /// Tasks running now.
    pub running: i64,
    /// When it was measured.
    pub time: Timestamp,
}

/// A pod's disk-backed emptyDir that has a `sizeLimit`, measured (local-storage isolation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeUsage {
    /// The pod.
    pub uid: String,
    /// The volume's name in the pod spec.
    pub volume: String,
    /// Bytes used (allocated blocks, as `du` counts them).
    pub used: i64,
    /// Its `sizeLimit`, bytes.
    pub limit: i64,
    /// Its `sizeLimit` as the API prints it (`1Mi`), for the eviction message.
    pub limit_text: String,
}

/// Disk usage of a pod (logs, local volumes, writable layers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes.
    pub bytes: i64,
    /// Inodes.
    pub inodes: i64,
}

/// What one pod uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodUsage {
    /// Working set of the pod's cgroup, bytes.
    pub memory_working_set: Option<i64>,
    /// Working set of each of its containers (by container name), bytes.
    pub containers: Vec<(String, i64)>,
    /// Processes (tasks) in the pod's cgroup.
    pub processes: Option<i64>,
    /// Disk usage, when measured (only for disk signals).
    pub disk: Option<DiskUsage>,
}

/// The input of one eviction pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSummary {
    /// Node memory.
    pub memory: Option<MemoryStats>,
    /// The pods' cgroup against its own limit (only when one is set).
    pub allocatable_memory: Option<MemoryStats>,
    /// The filesystem holding the agent's root directory.
    pub nodefs: Option<FsStats>,
    /// The runtime's image filesystem.
    pub imagefs: Option<FsStats>,
    /// PIDs.
    pub pids: Option<PidStats>,
    /// Usage of each active pod, by UID.
    pub pods: HashMap<String, PodUsage>,
}

impl NodeSummary {
    /// Whether the image filesystem is on a device of its own.
    pub fn dedicated_image_fs(&self) -> Option<bool> {
        match (&self.nodefs, &self.imagefs) {
            (Some(n), Some(i)) => Some(n.device != i.device),
            _ => None,
        }
    }
}

/// What is available of one signal's resource, against what capacity, as of when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// Available amount.
    pub available: i64,
    /// Capacity (percentage thresholds are shares of it).
    pub capacity: i64,
    /// When it was measured.
    pub time: Timestamp,
}

/// Observations by signal.
pub type Observations = BTreeMap<Signal, Observation>;

/// Derives the observation of every signal the summary covers. `containerfs.*` follows the
/// image filesystem: the runtime keeps its writable layers there.
pub fn observations(s: &NodeSummary) -> Observations {
    let mut o = Observations::new();
    if let Some(m) = &s.memory {
        o.insert(
            Signal::MemoryAvailable,
            Observation {
                available: m.available(),
                capacity: m.capacity,
                time: m.time,
            },
        );
    }
    if let Some(m) = &s.allocatable_memory {
        o.insert(
            Signal::AllocatableMemoryAvailable,
            Observation {
                available: m.available(),
                capacity: m.capacity,
                time: m.time,
            },
        );
    }
    let mut fs = |f: &FsStats, bytes: Signal, inodes: Signal| {
        o.insert(
            bytes,
            Observation {
                available: f.available.min(f.capacity),
                capacity: f.capacity,
                time: f.time,
            },
        );
        if f.inodes > 0 {
            o.insert(
                inodes,
                Observation {
                    available: f.inodes_free,
                    capacity: f.inodes,
                    time: f.time,
                },
            );
        }
    };
    if let Some(f) = &s.nodefs {
        fs(f, Signal::NodeFsAvailable, Signal::NodeFsInodesFree);
    }
    if let Some(f) = &s.imagefs {
        fs(f, Signal::ImageFsAvailable, Signal::ImageFsInodesFree);
        fs(
            f,
            Signal::ContainerFsAvailable,
            Signal::ContainerFsInodesFree,
        );
    }
    if let Some(p) = &s.pids {
        o.insert(
            Signal::PidAvailable,
            Observation {
                available: p.max - p.running,
                capacity: p.max,
                time: p.time,
            },
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_available_is_capacity_minus_working_set() {
        let s = NodeSummary {
            memory: Some(MemoryStats {
                capacity: 1 << 30,
                working_set: 700 << 20,
                usage: 900 << 20,
                time: 7,
                cgroup_dir: None,
            }),
            pids: Some(PidStats {
                max: 32768,
                running: 148,
                time: 7,
            }),
            nodefs: Some(FsStats {
                device: 1,
                capacity: 100,
                available: 120,
                inodes: 10,
                inodes_free: 4,
                time: 7,
            }),
            ..Default::default()
        };
        let o = observations(&s);
        assert_eq!(o[&Signal::MemoryAvailable].available, 324 << 20);
        assert_eq!(s.memory.as_ref().unwrap().inactive_file(), 200 << 20);
        assert_eq!(o[&Signal::PidAvailable].available, 32620);
        assert_eq!(
            o[&Signal::NodeFsAvailable].available,
            100,
            "capped at capacity"
        );
        assert_eq!(o[&Signal::NodeFsInodesFree].available, 4);
        assert!(!o.contains_key(&Signal::ImageFsAvailable));
        // A working set above capacity leaves nothing available, not a negative amount.
        let mut m = s.memory.clone().unwrap();
        m.working_set = m.capacity + 5;
        assert_eq!(m.available(), 0);
    }

    #[test]
    fn containerfs_follows_the_image_filesystem() {
        let f = FsStats {
            device: 9,
            capacity: 50,
            available: 5,
            inodes: 0,
            inodes_free: 0,
            time: 1,
        };
        let s = NodeSummary {
            imagefs: Some(f),
            nodefs: Some(FsStats { device: 1, ..f }),
            ..Default::default()
        };
        let o = observations(&s);
        assert_eq!(o[&Signal::ContainerFsAvailable].available, 5);
        assert!(
            !o.contains_key(&Signal::ImageFsInodesFree),
            "no inode figures"
        );
        assert_eq!(s.dedicated_image_fs(), Some(true));
    }
}
