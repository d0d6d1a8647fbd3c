//! The eviction manager's view of the node, built from the collector's rings
//! ([`collectors::Monitor`]): a [`SummarySource`] that the agent completes with its pods.
//!
//! **Node memory.** As the kubelet: `memory.available = capacity - working set`, the working
//! set being usage minus inactive file pages. Capacity is the machine's memory and the working
//! set the root cgroup's — unless the pods' cgroup (`<cgroup-root>/kubepods`) or one of its
//! ancestors carries a memory limit below the machine's memory. Then that cgroup is the node's
//! memory: its limit is the capacity and its working set the usage, because that is where the
//! kernel's OOM killer will strike first. This is what a kubelet run inside a memory-limited
//! container or slice needs, and what lets the tests and the pressure benchmark simulate node
//! memory pressure inside a private budget without endangering the machine.
//!
//! **allocatableMemory.available** is observed when the pods' cgroup has a limit of its own:
//! that limit minus the pods' working set.
//!
//! **Disks** are `statvfs` of the agent's root directory (nodefs) and the runtime's root
//! (imagefs), measured on each pass. **PIDs** are `kernel.pid_max` minus the tasks in
//! `/proc/loadavg`.
//!
//! A `fresh` summary samples the cgroups now ([`collectors::Monitor::sample_now`]); otherwise
//! the latest pass is used. A cgroup the collector has not discovered yet is read directly.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use collectors::layout::{cgroup_dir, CgroupLayout};
use collectors::parse::cgroup as parse;
use collectors::Monitor;

use super::manager::{StatsError, SummarySource};
use super::ranking::PodCandidate;
use super::signals::{
    DiskUsage, FsStats, MemoryStats, NodeSummary, PidStats, PodUsage, VolumeUsage,
};

/// A v1 limit at or above this is "no limit" (the kernel reports `PAGE_COUNTER_MAX` pages).
const UNLIMITED: u64 = 1 << 62;

/// What the agent knows about its pods.
pub trait PodSource: Send + Sync {
    /// The pods that may be evicted.
    fn active_pods(&self) -> Vec<PodCandidate>;
    /// The container name of a cgroup inside a pod's cgroup; `None` for the sandbox or an
    /// unknown cgroup.
    fn container_name(&self, cgroup: &str) -> Option<String>;
    /// Local-storage usage of pods.
    fn disk_usage(&self, _pods: &[PodCandidate]) -> HashMap<String, DiskUsage> {
        HashMap::new()
    }
    /// The disk-backed emptyDirs of pods that have a `sizeLimit`, measured.
    fn empty_dir_usage(&self, _pods: &[PodCandidate]) -> Vec<VolumeUsage> {
        Vec::new()
    }
}

/// Where the node's figures come from.
#[derive(Debug, Clone)]
pub struct NodeScope {
    /// The pods' cgroup (`<cgroup-root>/kubepods`).
    pub kubepods: String,
    /// Machine memory (`MemTotal`), bytes.
    pub memory_capacity: i64,
    /// A directory on the node filesystem (the agent's root directory).
    pub nodefs_path: PathBuf,
    /// A directory on the image filesystem (the runtime's root).
    pub imagefs_path: PathBuf,
    /// procfs.
    pub proc_root: PathBuf,
}

/// The memory cgroup that bounds the node: its name, limit, and directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryBound {
    /// Cgroup name (`/` for the whole machine).
    pub name: String,
    /// Capacity, bytes.
    pub capacity: i64,
    /// Its directory in the memory hierarchy.
    pub dir: PathBuf,
}

/// [`SummarySource`] over the collector.
pub struct MonitorSummary {
    monitor: Arc<Monitor>,
    scope: NodeScope,
    pods: Arc<dyn PodSource>,
    memory_hierarchy: Option<(PathBuf, bool)>,
    /// Where `pids.current` lives (the v1 `pids` hierarchy, or the unified one).
    pids_hierarchy: Option<PathBuf>,
}

/// The memory hierarchy of a layout and whether it is cgroup v2.
pub fn memory_hierarchy(layout: &CgroupLayout) -> Option<(PathBuf, bool)> {
    match layout {
        CgroupLayout::V1(v1) | CgroupLayout::Hybrid(v1, _) => v1.memory.clone().map(|m| (m, false)),
        CgroupLayout::V2(u) => Some((u.clone(), true)),
    }
}

/// The ancestors of a cgroup name, itself first, `/` excluded.
fn self_and_ancestors(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = name.trim_end_matches('/').to_string();
    while !cur.is_empty() && cur != "/" {
        out.push(cur.clone());
        match cur.rfind('/') {
            Some(i) => cur.truncate(i),
            None => break,
        }
    }
    out
}

/// The memory limit of cgroup directory `dir`, if any.
fn memory_limit(dir: &Path, v2: bool) -> Option<u64> {
    let file = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let buf = fs::read(dir.join(file)).ok()?;
    parse::single_u64(&buf).filter(|v| *v < UNLIMITED)
}

/// Finds the cgroup, among `kubepods` and its ancestors, with the smallest memory limit below
/// `machine` bytes; the machine itself otherwise.
pub fn memory_bound(hierarchy: &Path, v2: bool, kubepods: &str, machine: i64) -> MemoryBound {
    let mut best = MemoryBound {
        name: "/".into(),
        capacity: machine,
        dir: hierarchy.to_path_buf(),
    };
    for name in self_and_ancestors(kubepods) {
        let dir = cgroup_dir(hierarchy, &name);
        if let Some(limit) = memory_limit(&dir, v2) {
            if (limit as i64) < best.capacity {
                best = MemoryBound {
                    name,
                    capacity: limit as i64,
                    dir,
                };
            }
        }
    }
    best
}

/// Reads memory usage and working set of a cgroup directory.
pub fn read_memory(dir: &Path, v2: bool) -> Result<collectors::model::MemoryStats, StatsError> {
    let err = |what: &'static str, p: &Path, e: std::io::Error| StatsError::Read {
        what,
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let (usage_file, stat_file) = if v2 {
        ("memory.current", "memory.stat")
    } else {
        ("memory.usage_in_bytes", "memory.stat")
    };
    let up = dir.join(usage_file);
    let usage = fs::read(&up).map_err(|e| err("memory usage", &up, e))?;
    let sp = dir.join(stat_file);
    let stat = fs::read(&sp).map_err(|e| err("memory.stat", &sp, e))?;
    let mut m = collectors::model::MemoryStats {
        usage: parse::single_u64(&usage).unwrap_or(0),
        ..Default::default()
    };
    if v2 {
        parse::v2_memory_stat(&stat, &mut m);
    } else {
        parse::v1_memory_stat(&stat, &mut m);
    }
    parse::finish_working_set(&mut m);
    Ok(m)
}

fn fs_stats(path: &Path) -> Option<FsStats> {
    use std::os::unix::fs::MetadataExt;
    let v = collectors::sys::statvfs(path).ok()?;
    let device = fs::metadata(path).map(|m| m.dev()).unwrap_or(0);
    Some(FsStats {
        device,
        capacity: v.capacity as i64,
        available: v.available as i64,
        inodes: v.inodes as i64,
        inodes_free: v.inodes_free as i64,
        time: collectors::sys::now_unix_nanos(),
    })
}

/// `kernel.pid_max` and the tasks in `/proc/loadavg`.
pub fn pid_stats(proc_root: &Path) -> Option<PidStats> {
    let max: i64 = fs::read_to_string(proc_root.join("sys/kernel/pid_max"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let load = fs::read_to_string(proc_root.join("loadavg")).ok()?;
    let running: i64 = load
        .split_whitespace()
        .nth(3)?
        .split('/')
        .nth(1)?
        .parse()
        .ok()?;
    Some(PidStats {
        max,
        running,
        time: collectors::sys::now_unix_nanos(),
    })
}

impl MonitorSummary {
    /// A source reading `monitor` for the node described by `scope` and pods from `pods`.
    pub fn new(monitor: Arc<Monitor>, scope: NodeScope, pods: Arc<dyn PodSource>) -> Self {
        let memory_hierarchy = memory_hierarchy(monitor.layout());
        let pids_hierarchy = match monitor.layout() {
            CgroupLayout::V1(v1) | CgroupLayout::Hybrid(v1, _) => v1.pids.clone(),
            CgroupLayout::V2(u) => Some(u.clone()),
        };
        MonitorSummary {
            monitor,
            scope,
            pods,
            memory_hierarchy,
            pids_hierarchy,
        }
    }

    /// The cgroup bounding the node's memory now (limits are re-read every call).
    pub fn memory_bound(&self) -> Option<MemoryBound> {
        let (h, v2) = self.memory_hierarchy.as_ref()?;
        Some(memory_bound(
            h,
            *v2,
            &self.scope.kubepods,
            self.scope.memory_capacity,
        ))
    }

    /// A cgroup's latest sample (or a new one when `fresh`). Memory figures missing from it
    /// (the collector has not discovered the cgroup yet, or found it before its memory
    /// directory existed) are read directly.
    fn cgroup_stats(&self, name: &str, fresh: bool) -> Option<collectors::ContainerStats> {
        let from_monitor = if fresh {
            self.monitor.sample_now(name).ok()
        } else {
            self.monitor.container(name).and_then(|c| c.latest())
        };
        if from_monitor.as_ref().is_some_and(|s| s.memory.is_some()) {
            return from_monitor;
        }
        let (h, v2) = self.memory_hierarchy.as_ref()?;
        let memory = read_memory(&cgroup_dir(h, name), *v2).ok();
        match from_monitor {
            Some(mut s) => {
                s.memory = memory;
                Some(s)
            }
            None => Some(collectors::ContainerStats {
                timestamp: collectors::sys::now_unix_nanos(),
                memory: Some(memory?),
                ..Default::default()
            }),
        }
    }

    fn node_memory(&self, fresh: bool) -> Result<MemoryStats, StatsError> {
        let bound = self.memory_bound();
        let name = bound.as_ref().map_or("/", |b| b.name.as_str());
        if let Some(s) = self.cgroup_stats(name, fresh) {
            if let Some(m) = s.memory {
                return Ok(MemoryStats {
                    capacity: bound
                        .as_ref()
                        .map_or(self.scope.memory_capacity, |b| b.capacity),
                    working_set: m.working_set as i64,
                    usage: m.usage as i64,
                    time: s.timestamp,
                    cgroup_dir: bound.map(|b| b.dir),
                });
            }
        }
        // No memory cgroup at the root (cgroup v2): the node's meminfo, as cAdvisor does.
        let node = self.monitor.node_latest().ok_or(StatsError::NotSampled {
            what: "node memory",
        })?;
        Ok(MemoryStats {
            capacity: self.scope.memory_capacity,
            working_set: node.memory.working_set() as i64,
            usage: node.memory.usage() as i64,
            time: node.timestamp,
            cgroup_dir: None,
        })
    }

    fn allocatable_memory(&self, fresh: bool) -> Option<MemoryStats> {
        let (h, v2) = self.memory_hierarchy.as_ref()?;
        let dir = cgroup_dir(h, &self.scope.kubepods);
        let limit = memory_limit(&dir, *v2)? as i64;
        let s = self.cgroup_stats(&self.scope.kubepods, fresh)?;
        let m = s.memory?;
        Some(MemoryStats {
            capacity: limit,
            working_set: m.working_set as i64,
            usage: m.usage as i64,
            time: s.timestamp,
            cgroup_dir: Some(dir),
        })
    }

    fn pod_usage(&self, pod: &PodCandidate, fresh: bool) -> Option<PodUsage> {
        let s = self.cgroup_stats(&pod.cgroup, fresh)?;
        let tasks = s.pids.map(|p| p.current).or_else(|| {
            let h = self.pids_hierarchy.as_ref()?;
            let buf = fs::read(cgroup_dir(h, &pod.cgroup).join("pids.current")).ok()?;
            parse::single_u64(&buf)
        });
        let mut u = PodUsage {
            memory_working_set: s.memory.map(|m| m.working_set as i64),
            processes: tasks.or(s.process_count).map(|n| n as i64),
            ..Default::default()
        };
        // The pod cgroup's children, as the kernel has them now: the collector may not have
        // discovered a container that started a moment ago.
        let children: Vec<String> = match self.memory_hierarchy.as_ref() {
            Some((h, _)) => fs::read_dir(cgroup_dir(h, &pod.cgroup))
                .map(|rd| {
                    rd.flatten()
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .filter_map(|e| {
                            e.file_name()
                                .to_str()
                                .map(|n| format!("{}/{n}", pod.cgroup))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            None => self
                .monitor
                .subcontainers(&pod.cgroup)
                .iter()
                .map(|c| c.name().to_string())
                .filter(|n| *n != pod.cgroup)
                .collect(),
        };
        for child in children {
            let Some(name) = self.pods.container_name(&child) else {
                continue;
            };
            if let Some(m) = self.cgroup_stats(&child, fresh).and_then(|s| s.memory) {
                u.containers.push((name, m.working_set as i64));
            }
        }
        Some(u)
    }
}

impl SummarySource for MonitorSummary {
    fn active_pods(&self) -> Vec<PodCandidate> {
        self.pods.active_pods()
    }

    fn summary(&self, pods: &[PodCandidate], fresh: bool) -> Result<NodeSummary, StatsError> {
        let memory = self.node_memory(fresh)?;
        let mut s = NodeSummary {
            memory: Some(memory),
            allocatable_memory: self.allocatable_memory(fresh),
            nodefs: fs_stats(&self.scope.nodefs_path),
            imagefs: fs_stats(&self.scope.imagefs_path),
            pids: pid_stats(&self.scope.proc_root),
            pods: HashMap::new(),
        };
        for p in pods {
            if let Some(u) = self.pod_usage(p, fresh) {
                s.pods.insert(p.uid.clone(), u);
            }
        }
        Ok(s)
    }

    fn disk_usage(&self, pods: &[PodCandidate]) -> HashMap<String, DiskUsage> {
        self.pods.disk_usage(pods)
    }

    fn empty_dir_usage(&self, pods: &[PodCandidate]) -> Vec<VolumeUsage> {
        self.pods.empty_dir_usage(pods)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collectors::testing::{FixtureCgroup, FixtureTree, Layout};

    #[test]
    fn ancestors_of_a_cgroup_name() {
        assert_eq!(
            self_and_ancestors("/a/b/kubepods"),
            vec!["/a/b/kubepods", "/a/b", "/a"]
        );
        assert!(self_and_ancestors("/").is_empty());
    }

    #[test]
    fn the_smallest_limit_on_the_way_up_bounds_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let h = dir.path();
        let mk = |rel: &str, limit: &str| {
            let d = h.join(rel);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("memory.limit_in_bytes"), limit).unwrap();
        };
        mk("budget", "1073741824\n");
        mk("budget/node", "2147483648\n");
        mk("budget/node/kubepods", "9223372036854771712\n");
        let b = memory_bound(h, false, "/budget/node/kubepods", 24 << 30);
        assert_eq!(b.name, "/budget");
        assert_eq!(b.capacity, 1 << 30);
        assert_eq!(b.dir, h.join("budget"));
        // Nothing below the machine: the whole machine.
        let b = memory_bound(h, false, "/budget/node/kubepods", 512 << 20);
        assert_eq!(b.name, "/");
        assert_eq!(b.capacity, 512 << 20);
        // v2 spelling.
        let d = h.join("v2/kubepods");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("memory.max"), "max\n").unwrap();
        fs::write(h.join("v2/memory.max"), "536870912\n").unwrap();
        assert_eq!(memory_bound(h, true, "/v2/kubepods", 1 << 40).name, "/v2");
    }

    #[test]
    fn reads_memory_and_pids_from_fixture_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("memory.usage_in_bytes"), "1000\n").unwrap();
        fs::write(
            dir.path().join("memory.stat"),
            "cache 5\ntotal_inactive_file 300\ntotal_rss 600\n",
        )
        .unwrap();
        let m = read_memory(dir.path(), false).unwrap();
        assert_eq!((m.usage, m.working_set), (1000, 700));
        let err = read_memory(&dir.path().join("gone"), false).unwrap_err();
        assert!(
            err.to_string().contains("gone/memory.usage_in_bytes"),
            "{err}"
        );
        fs::create_dir_all(dir.path().join("sys/kernel")).unwrap();
        fs::write(dir.path().join("sys/kernel/pid_max"), "32768\n").unwrap();
        fs::write(dir.path().join("loadavg"), "5.85 4.86 4.26 7/148 28608\n").unwrap();
        let p = pid_stats(dir.path()).unwrap();
        assert_eq!((p.max, p.running), (32768, 148));
    }

    struct Pods(Vec<PodCandidate>);
    impl PodSource for Pods {
        fn active_pods(&self) -> Vec<PodCandidate> {
            self.0.clone()
        }
        fn container_name(&self, cgroup: &str) -> Option<String> {
            cgroup.ends_with("/c1").then(|| "app".to_string())
        }
    }

    #[test]
    fn summary_from_a_fixture_monitor() {
        let t = FixtureTree::new(Layout::V1);
        std::fs::create_dir_all(t.proc_root().join("sys/kernel")).unwrap();
        fs::write(t.proc_root().join("sys/kernel/pid_max"), "4096\n").unwrap();
        fs::write(t.proc_root().join("loadavg"), "0.1 0.1 0.1 1/100 5\n").unwrap();
        let cg = |usage: u64, inactive: u64| FixtureCgroup {
            memory_usage: usage,
            inactive_file: inactive,
            ..Default::default()
        };
        t.add_cgroup("/", &cg(9 << 20, 1 << 20));
        t.add_cgroup("/node", &cg(6 << 20, 1 << 20));
        t.add_cgroup("/node/kubepods", &cg(5 << 20, 1 << 20));
        t.add_cgroup("/node/kubepods/besteffort", &cg(5 << 20, 1 << 20));
        t.add_cgroup("/node/kubepods/besteffort/podu1", &cg(5 << 20, 1 << 20));
        t.add_cgroup("/node/kubepods/besteffort/podu1/c1", &cg(4 << 20, 0));
        let monitor = Monitor::new(collectors::MonitorConfig {
            cgroup_root: t.root().to_path_buf(),
            proc_root: t.proc_root().to_path_buf(),
            use_inotify: false,
            fs_paths: vec![],
            ..Default::default()
        })
        .unwrap();
        monitor.housekeep();
        let pod = PodCandidate {
            uid: "u1".into(),
            cgroup: "/node/kubepods/besteffort/podu1".into(),
            ..Default::default()
        };
        let src = MonitorSummary::new(
            monitor,
            NodeScope {
                kubepods: "/node/kubepods".into(),
                memory_capacity: 16 << 20,
                nodefs_path: t.root().to_path_buf(),
                imagefs_path: t.root().to_path_buf(),
                proc_root: t.proc_root().to_path_buf(),
            },
            Arc::new(Pods(vec![pod.clone()])),
        );
        for fresh in [false, true] {
            let s = src.summary(std::slice::from_ref(&pod), fresh).unwrap();
            let m = s.memory.unwrap();
            assert_eq!(m.capacity, 16 << 20, "no limit: the machine");
            assert_eq!(m.working_set, 8 << 20, "the root cgroup's working set");
            let u = &s.pods["u1"];
            assert_eq!(u.memory_working_set, Some(4 << 20));
            assert_eq!(u.containers, vec![("app".to_string(), 4 << 20)]);
            assert_eq!(s.pids.unwrap().running, 100);
            assert!(s.nodefs.unwrap().capacity > 0);
            assert!(s.allocatable_memory.is_none());
        }
        // A limit on the cgroup root makes it the node.
        t.write_file(
            "memory",
            "/node",
            "memory.limit_in_bytes",
            &(12u64 << 20).to_string(),
        );
        let s = src.summary(&[], true).unwrap();
        let m = s.memory.unwrap();
        assert_eq!(m.capacity, 12 << 20);
        assert_eq!(m.working_set, 5 << 20);
        assert_eq!(m.cgroup_dir, Some(t.root().join("memory/node")));
        // A limit on the pods' cgroup itself adds allocatableMemory.available.
        t.write_file(
            "memory",
            "/node/kubepods",
            "memory.limit_in_bytes",
            &(10u64 << 20).to_string(),
        );
        let s = src.summary(&[], false).unwrap();
        assert_eq!(s.memory.unwrap().capacity, 10 << 20);
        let a = s.allocatable_memory.unwrap();
        assert_eq!((a.capacity, a.working_set), (10 << 20, 4 << 20));
    }
}
