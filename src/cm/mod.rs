//! Container manager: QoS classes and the node's pod cgroup tree.
//!
//! Like the kubelet's `pkg/kubelet/cm` with the cgroupfs driver, the agent owns
//! `<cgroup-root>/kubepods` with the QoS tiers `burstable` and `besteffort` below it, and one
//! cgroup per pod: `kubepods/pod<uid>` for Guaranteed pods, `kubepods/<qos>/pod<uid>` otherwise.
//! containerd neither limits nor removes the pod cgroup (measured, see DESIGN.md), so the agent
//! creates it with the pod-level limits before the sandbox, and removes it after the sandbox.
//!
//! Both layouts are handled: cgroup v1 (one hierarchy per controller under the mount root, with
//! a cgroup2 beside it on hybrid hosts) and the unified v2 hierarchy.

pub mod qos;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

pub use qos::{pod_qos_class, QosClass};

/// The v1 controllers a pod cgroup is created in (those the kubelet's cgroupfs driver uses).
const V1_CONTROLLERS: &[&str] = &[
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer", "hugetlb",
    "systemd",
];

/// Errors of the pod cgroup manager; each names the cgroup file or directory concerned.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup hierarchy found under {root}")]
    NoHierarchy { root: PathBuf },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: io::Error,
    },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
}

/// The cgroup layout found under the mount root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One directory per controller (`<root>/memory`, `<root>/cpu`, ...).
    V1 { controllers: Vec<String> },
    /// The unified hierarchy mounted at the root.
    V2,
}

/// Resource limits applied to a pod's cgroup, computed like the kubelet's
/// `ResourceConfigForPod`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodResources {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

/// Creates, limits and removes the node's QoS and pod cgroups.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    mount_root: PathBuf,
    /// The `--cgroup-root` inside the hierarchy, e.g. `/` or `/kubelet-rs-test-1`.
    cgroup_root: String,
    layout: Layout,
    /// Where `kubelet_cgroup_manager_duration_seconds` goes, if anywhere.
    metrics: Option<crate::metrics::Metrics>,
}

impl CgroupManager {
    /// Detects the layout under `mount_root` (normally `/sys/fs/cgroup`).
    pub fn new(mount_root: &Path, cgroup_root: &str) -> Result<Self, CgroupError> {
        let layout = detect_layout(mount_root)?;
        let cgroup_root = format!("/{}", cgroup_root.trim_matches('/'));
        Ok(Self {
            mount_root: mount_root.to_path_buf(),
            cgroup_root,
            layout,
            metrics: None,
        })
    }

    /// Records each operation in `kubelet_cgroup_manager_duration_seconds` (`create`,
    /// `update`, `destroy`, as the kubelet's cgroup manager).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn observe(&self, op: &str, started: std::time::Instant) {
        if let Some(m) = &self.metrics {
            m.cgroup_op(op, started.elapsed());
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The hierarchy path (cgroupfs syntax) of the node's pods: `<cgroup-root>/kubepods`.
    pub fn kubepods(&self) -> String {
        join_cgroup(&self.cgroup_root, "kubepods")
    }

    /// The hierarchy path of a pod's cgroup, used as the sandbox's `cgroup_parent`.
    pub fn pod_cgroup_name(&self, qos: QosClass, uid: &str) -> String {
        let pod = format!("pod{uid}");
        match qos {
            QosClass::Guaranteed => join_cgroup(&self.kubepods(), &pod),
            QosClass::Burstable => join_cgroup(&self.kubepods(), &format!("burstable/{pod}")),
            QosClass::BestEffort => join_cgroup(&self.kubepods(), &format!("besteffort/{pod}")),
        }
    }

    /// Creates `kubepods` and its QoS tiers (idempotent). BestEffort gets the minimum CPU
    /// shares, as the kubelet's QoS container manager sets.
    pub fn ensure_qos_cgroups(&self) -> Result<(), CgroupError> {
        let started = std::time::Instant::now();
        let kubepods = self.kubepods();
        self.create(&kubepods)?;
        self.create(&join_cgroup(&kubepods, "burstable"))?;
        let besteffort = join_cgroup(&kubepods, "besteffort");
        self.create(&besteffort)?;
        self.apply(
            &besteffort,
            &PodResources {
                cpu_shares: Some(MIN_SHARES),
                ..Default::default()
            },
        )?;
        self.observe("create", started);
        Ok(())
    }

    /// Creates a pod's cgroup and writes its limits. Returns its hierarchy path.
    pub fn ensure_pod_cgroup(
        &self,
        qos: QosClass,
        uid: &str,
        resources: &PodResources,
    ) -> Result<String, CgroupError> {
        let started = std::time::Instant::now();
        let name = self.pod_cgroup_name(qos, uid);
        // Writing the limits of an existing cgroup again is the kubelet's `update`.
        let existed = self.dirs(&name).first().is_some_and(|d| d.is_dir());
        self.create(&name)?;
        self.apply(&name, resources)?;
        self.observe(if existed { "update" } else { "create" }, started);
        Ok(name)
    }

    /// Removes a pod's cgroup in every hierarchy. Succeeds if it is already gone. A cgroup
    /// that still holds processes (EBUSY) is reported as an error naming it.
    pub fn remove_pod_cgroup(&self, qos: QosClass, uid: &str) -> Result<(), CgroupError> {
        let started = std::time::Instant::now();
        let r = self.remove(&self.pod_cgroup_name(qos, uid));
        self.observe("destroy", started);
        r
    }

    /// Every pod cgroup present (uid, qos), for cleanup of pods the agent no longer runs.
    pub fn list_pod_cgroups(&self) -> Vec<(String, QosClass)> {
        let Some(base) = self.dirs(&self.kubepods()).into_iter().next() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (dir, qos) in [
            (base.clone(), QosClass::Guaranteed),
            (base.join("burstable"), QosClass::Burstable),
            (base.join("besteffort"), QosClass::BestEffort),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if let Some(uid) = e.file_name().to_str().and_then(|n| n.strip_prefix("pod")) {
                    if e.path().is_dir() {
                        out.push((uid.to_string(), qos));
                    }
                }
            }
        }
        out
    }

    /// The directories of one cgroup in every hierarchy that has it.
    pub fn dirs(&self, name: &str) -> Vec<PathBuf> {
        let rel = name.trim_start_matches('/');
        match &self.layout {
            Layout::V2 => vec![self.mount_root.join(rel)],
            Layout::V1 { controllers } => controllers
                .iter()
                .map(|c| self.mount_root.join(c).join(rel))
                .collect(),
        }
    }

    /// The directory of `name` in the hierarchy that holds `controller` (v1) or the unified one.
    pub fn controller_dir(&self, controller: &str, name: &str) -> PathBuf {
        let rel = name.trim_start_matches('/');
        match &self.layout {
            Layout::V2 => self.mount_root.join(rel),
            Layout::V1 { .. } => self.mount_root.join(controller).join(rel),
        }
    }

    fn create(&self, name: &str) -> Result<(), CgroupError> {
        if let Layout::V2 = self.layout {
            self.enable_v2_controllers(name)?;
        }
        for dir in self.dirs(name) {
            match fs::create_dir_all(&dir) {
                Ok(()) => {}
                Err(source) => return Err(CgroupError::Create { path: dir, source }),
            }
        }
        if let Layout::V1 { controllers } = &self.layout {
            if controllers.iter().any(|c| c == "cpuset") {
                self.inherit_cpuset(name)?;
            }
        }
        Ok(())
    }

    /// v1 cpuset cgroups start with empty `cpus`/`mems`; copy them down from the nearest parent
    /// that has them, as the kubelet does, or no task could ever join.
    fn inherit_cpuset(&self, name: &str) -> Result<(), CgroupError> {
        let base = self.mount_root.join("cpuset");
        let mut path = base.clone();
        for part in name
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
        {
            let parent = path.clone();
            path = path.join(part);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let mine = fs::read_to_string(path.join(file)).unwrap_or_default();
                if mine.trim().is_empty() {
                    let theirs = fs::read_to_string(parent.join(file)).unwrap_or_default();
                    if !theirs.trim().is_empty() {
                        write_file(&path.join(file), theirs.trim())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// On v2 each level must delegate the controllers to the next one.
    fn enable_v2_controllers(&self, name: &str) -> Result<(), CgroupError> {
        let mut path = self.mount_root.clone();
        for part in name
            .trim_start_matches('/')
            .split('/')
            .filter(|p| !p.is_empty())
        {
            let avail = fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
            let want: Vec<String> = avail
                .split_whitespace()
                .filter(|c| matches!(*c, "cpu" | "memory" | "pids" | "io" | "cpuset" | "hugetlb"))
                .map(|c| format!("+{c}"))
                .collect();
            if !want.is_empty() {
                // Best effort: a controller busy at the root (no internal process rule) is
                // reported by the write of the limit later if it matters.
                let _ = fs::write(path.join("cgroup.subtree_control"), want.join(" "));
            }
            path = path.join(part);
            if !path.exists() {
                fs::create_dir(&path).map_err(|source| CgroupError::Create {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn apply(&self, name: &str, r: &PodResources) -> Result<(), CgroupError> {
        match &self.layout {
            Layout::V1 { controllers } => {
                let has = |c: &str| controllers.iter().any(|x| x == c);
                if has("cpu") {
                    let dir = self.controller_dir("cpu", name);
                    if let Some(shares) = r.cpu_shares {
                        write_file(&dir.join("cpu.shares"), &shares.to_string())?;
                    }
                    if let Some(period) = r.cpu_period {
                        write_file(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                    }
                    if let Some(quota) = r.cpu_quota {
                        write_file(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
                    }
                }
                if has("memory") {
                    if let Some(limit) = r.memory_limit {
                        let dir = self.controller_dir("memory", name);
                        write_file(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                    }
                }
                if has("pids") {
                    if let Some(limit) = r.pids_limit {
                        let dir = self.controller_dir("pids", name);
                        let v = if limit > 0 {
                            limit.to_string()
                        } else {
                            "max".into()
                        };
                        write_file(&dir.join("pids.max"), &v)?;
                    }
                }
            }
            Layout::V2 => {
                let dir = self.mount_root.join(name.trim_start_matches('/'));
                if let Some(shares) = r.cpu_shares {
                    write_file(
                        &dir.join("cpu.weight"),
                        &shares_to_weight(shares).to_string(),
                    )?;
                }
                if r.cpu_quota.is_some() || r.cpu_period.is_some() {
                    let period = r.cpu_period.unwrap_or(DEFAULT_CPU_PERIOD);
                    let quota = match r.cpu_quota {
                        Some(q) if q > 0 => q.to_string(),
                        _ => "max".to_string(),
                    };
                    write_file(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
                }
                if let Some(limit) = r.memory_limit {
                    write_file(&dir.join("memory.max"), &limit.to_string())?;
                }
                if let Some(limit) = r.pids_limit {
                    let v = if limit > 0 {
                        limit.to_string()
                    } else {
                        "max".into()
                    };
                    write_file(&dir.join("pids.max"), &v)?;
                }
            }
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<(), CgroupError> {
        let mut first_err = None;
        for dir in self.dirs(name) {
            if let Err(e) = remove_cgroup_dir(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Removes `<cgroup-root>/kubepods` entirely (children first). For tests and teardown of a
    /// private `--cgroup-root`; fails if pods are still running.
    pub fn remove_tree(&self, name: &str) -> Result<(), CgroupError> {
        for dir in self.dirs(name) {
            remove_tree_dir(&dir)?;
        }
        Ok(())
    }
}

/// Removes one cgroup directory; an absent one is fine. A cgroup with lingering children (for
/// example container cgroups runc has not removed yet) has them removed first.
fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
    remove_tree_dir(dir)
}

fn remove_tree_dir(dir: &Path) -> Result<(), CgroupError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(CgroupError::Remove {
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree_dir(&e.path())?;
        }
    }
    // rmdir of a cgroup can fail with EBUSY for a moment after its last task exits.
    let mut last = None;
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                last = Some(e);
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(source) => {
                return Err(CgroupError::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
    Err(CgroupError::Remove {
        path: dir.to_path_buf(),
        source: last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EBUSY)),
    })
}

fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(|source| CgroupError::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        source,
    })
}

fn join_cgroup(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Detects v2 (a `cgroup.controllers` at the root) or v1 (controller directories).
pub fn detect_layout(mount_root: &Path) -> Result<Layout, CgroupError> {
    if mount_root.join("cgroup.controllers").exists() {
        return Ok(Layout::V2);
    }
    let controllers: Vec<String> = V1_CONTROLLERS
        .iter()
        .filter(|c| mount_root.join(c).join("cgroup.procs").exists())
        .map(|c| c.to_string())
        .collect();
    if controllers.is_empty() {
        return Err(CgroupError::NoHierarchy {
            root: mount_root.to_path_buf(),
        });
    }
    Ok(Layout::V1 { controllers })
}

/// The kernel's minimum `cpu.shares`.
pub const MIN_SHARES: u64 = 2;
/// The maximum `cpu.shares`.
pub const MAX_SHARES: u64 = 262_144;
/// The CFS period the kubelet uses (100 ms).
pub const DEFAULT_CPU_PERIOD: u64 = 100_000;
/// The smallest CFS quota the kubelet sets (1 ms).
pub const MIN_QUOTA_PERIOD: i64 = 1000;

/// millicores → `cpu.shares`, as the kubelet's `MilliCPUToShares`.
pub fn milli_cpu_to_shares(milli: i64) -> u64 {
    if milli <= 0 {
        return MIN_SHARES;
    }
    let shares = (milli as u64 * 1024) / 1000;
    shares.clamp(MIN_SHARES, MAX_SHARES)
}

/// millicores → CFS quota for `period`, as the kubelet's `MilliCPUToQuota`.
pub fn milli_cpu_to_quota(milli: i64, period: u64) -> i64 {
    if milli <= 0 {
        return 0;
    }
    let quota = milli * period as i64 / 1000;
    quota.max(MIN_QUOTA_PERIOD)
}

/// cgroup v1 shares → cgroup v2 weight (the conversion runc and the kubelet use).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 100;
    }
    1 + ((shares.saturating_sub(2)) * 9999) / 262_142
}

/// The pod-level limits the kubelet puts on a pod cgroup: CPU shares from the sum of requests,
/// a CFS quota and a memory limit only when every container has that limit, and the pod PID
/// limit.
pub fn pod_resources(pod: &Pod, pods_pids_limit: i64) -> PodResources {
    let totals = qos::pod_totals(pod);
    let mut r = PodResources {
        cpu_shares: Some(milli_cpu_to_shares(totals.cpu_request_milli)),
        ..Default::default()
    };
    if totals.all_have_cpu_limit {
        r.cpu_period = Some(DEFAULT_CPU_PERIOD);
        r.cpu_quota = Some(milli_cpu_to_quota(
            totals.cpu_limit_milli,
            DEFAULT_CPU_PERIOD,
        ));
    }
    if totals.all_have_memory_limit {
        r.memory_limit = Some(totals.memory_limit);
    }
    if pods_pids_limit > 0 {
        r.pids_limit = Some(pods_pids_limit);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_and_quota_match_the_kubelet() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(1_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(0, 100_000), 0);
        assert_eq!(milli_cpu_to_quota(5, 100_000), 1000);
        assert_eq!(milli_cpu_to_quota(250, 100_000), 25_000);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }

    fn v1_tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory", "pids", "cpuset"] {
            fs::create_dir_all(t.path().join(c)).unwrap();
            fs::write(t.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        fs::write(t.path().join("cpuset/cpuset.cpus"), "0-1\n").unwrap();
        fs::write(t.path().join("cpuset/cpuset.mems"), "0\n").unwrap();
        t
    }

    #[test]
    fn v1_layout_names_and_limits() {
        let t = v1_tree();
        let m = CgroupManager::new(t.path(), "/").unwrap();
        assert_eq!(
            m.layout(),
            &Layout::V1 {
                controllers: vec![
                    "cpu".into(),
                    "cpuset".into(),
                    "memory".into(),
                    "pids".into()
                ]
            }
        );
        assert_eq!(
            m.pod_cgroup_name(QosClass::Guaranteed, "u1"),
            "/kubepods/podu1"
        );
        assert_eq!(
            m.pod_cgroup_name(QosClass::BestEffort, "u1"),
            "/kubepods/besteffort/podu1"
        );
        m.ensure_qos_cgroups().unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("cpu/kubepods/besteffort/cpu.shares")).unwrap(),
            "2"
        );
        let res = PodResources {
            cpu_shares: Some(102),
            memory_limit: Some(64 << 20),
            pids_limit: Some(100),
            ..Default::default()
        };
        let name = m
            .ensure_pod_cgroup(QosClass::Burstable, "u2", &res)
            .unwrap();
        assert_eq!(name, "/kubepods/burstable/podu2");
        let mem = t
            .path()
            .join("memory/kubepods/burstable/podu2/memory.limit_in_bytes");
        assert_eq!(fs::read_to_string(mem).unwrap(), (64u64 << 20).to_string());
        assert_eq!(
            fs::read_to_string(t.path().join("cpuset/kubepods/burstable/podu2/cpuset.cpus"))
                .unwrap(),
            "0-1"
        );
        assert_eq!(
            m.list_pod_cgroups(),
            vec![("u2".to_string(), QosClass::Burstable)]
        );
        // Plain directories stand in for cgroups here; their files must go first.
        for c in ["cpu", "memory", "pids", "cpuset"] {
            let d = t.path().join(c).join("kubepods/burstable/podu2");
            for e in fs::read_dir(&d).unwrap().flatten() {
                fs::remove_file(e.path()).unwrap();
            }
        }
        m.remove_pod_cgroup(QosClass::Burstable, "u2").unwrap();
        assert!(!t.path().join("memory/kubepods/burstable/podu2").exists());
        // Removing again is fine.
        m.remove_pod_cgroup(QosClass::Burstable, "u2").unwrap();
    }

    #[test]
    fn private_cgroup_root_nests_kubepods() {
        let t = v1_tree();
        let m = CgroupManager::new(t.path(), "/test-root/").unwrap();
        assert_eq!(m.kubepods(), "/test-root/kubepods");
        assert_eq!(
            m.pod_cgroup_name(QosClass::Burstable, "x"),
            "/test-root/kubepods/burstable/podx"
        );
    }

    #[test]
    fn missing_hierarchy_is_named() {
        let t = tempfile::tempdir().unwrap();
        let err = CgroupManager::new(t.path(), "/").unwrap_err().to_string();
        assert!(err.contains(&t.path().display().to_string()), "{err}");
    }

    #[test]
    fn v2_layout_writes_unified_files() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        let m = CgroupManager::new(t.path(), "/").unwrap();
        assert_eq!(m.layout(), &Layout::V2);
        let res = PodResources {
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(1 << 30),
            pids_limit: None,
        };
        m.ensure_pod_cgroup(QosClass::Guaranteed, "g", &res)
            .unwrap();
        let dir = t.path().join("kubepods/podg");
        assert_eq!(
            fs::read_to_string(dir.join("cpu.max")).unwrap(),
            "50000 100000"
        );
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap(),
            "1073741824"
        );
        assert_eq!(fs::read_to_string(dir.join("cpu.weight")).unwrap(), "39");
        assert_eq!(
            fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
    }
}
