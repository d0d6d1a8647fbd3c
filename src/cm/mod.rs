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
//!
//! [`CgroupManager`] is the cgroupfs driver: plain, blocking filesystem operations that never
//! sleep. [`ContainerManager`] (`manager`) runs them where they cannot stall anything: its own
//! thread keeps the node-allocatable limits on `kubepods` (`node`), the QoS tiers' shares
//! (`qos_manager`) and removes orphaned pod cgroups with a backoff per cgroup (`orphans`); pod
//! teardown removes its cgroup through `spawn_blocking`.

pub mod devicemanager;
pub mod manager;
pub mod node;
pub mod orphans;
pub mod qos;
pub mod qos_manager;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

pub use manager::{ActivePods, ContainerManager};
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
    #[error("cgroup {name} does not exist: {} missing", .missing.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Missing { name: String, missing: Vec<PathBuf> },
    #[error("invalid node allocatable configuration: {message}")]
    Allocatable { message: String },
    #[error("cannot start the container manager thread: {source}")]
    Thread { source: io::Error },
}

impl CgroupError {
    /// Whether the kernel refused to remove a cgroup because it is busy (processes or child
    /// cgroups still in it): worth retrying soon.
    pub fn is_busy(&self) -> bool {
        matches!(self, CgroupError::Remove { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }
}

/// The cgroup layout found under the mount root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// One directory per controller (`<root>/memory`, `<root>/cpu`, ...).
    V1 { controllers: Vec<String> },
    /// The unified hierarchy mounted at the root, with the controllers its root offers.
    V2 { controllers: Vec<String> },
}

/// Resource settings written to a cgroup (the kubelet's `ResourceConfig`): a pod's limits
/// (`ResourceConfigForPod`), a QoS tier's shares, `kubepods`' node-allocatable limits or a
/// reserved cgroup's. `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceConfig {
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
    /// Huge page limits in bytes by page size in bytes. When set, every other page size the
    /// node has is limited to 0, as the kubelet's cgroup manager does. Written only where the
    /// `hugetlb` controller exists.
    pub hugepage_limits: Option<BTreeMap<u64, i64>>,
    /// cgroup v2 `memory.min` (memory QoS); ignored on v1.
    pub memory_min: Option<i64>,
    /// cgroup v2 `memory.low`; ignored on v1.
    pub memory_low: Option<i64>,
}

/// The name the pod cgroup code has always used for [`ResourceConfig`].
pub type PodResources = ResourceConfig;

/// Creates, limits and removes the node's QoS and pod cgroups.
#[derive(Debug, Clone)]
pub struct CgroupManager {
    mount_root: PathBuf,
    /// The `--cgroup-root` inside the hierarchy, e.g. `/` or `/kubelet-rs-test-1`.
    cgroup_root: String,
    layout: Layout,
    /// The node's huge page sizes in bytes (from machine info), for `hugetlb` limits.
    hugepage_sizes: Vec<u64>,
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
            hugepage_sizes: Vec::new(),
            metrics: None,
        })
    }

    /// Sets the node's huge page sizes (bytes), which `hugetlb` limits cover.
    pub fn with_hugepage_sizes(mut self, sizes: impl IntoIterator<Item = u64>) -> Self {
        let set: BTreeSet<u64> = sizes.into_iter().filter(|s| *s > 0).collect();
        self.hugepage_sizes = set.into_iter().collect();
        self
    }

    /// The node's huge page sizes in bytes.
    pub fn hugepage_sizes(&self) -> &[u64] {
        &self.hugepage_sizes
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

    /// Whether the hierarchy has `controller` (a v1 hierarchy, or enabled at the v2 root).
    pub fn has_controller(&self, controller: &str) -> bool {
        match &self.layout {
            Layout::V1 { controllers } | Layout::V2 { controllers } => {
                controllers.iter().any(|c| c == controller)
            }
        }
    }

    /// The hierarchy path of `--cgroup-root` (`/` or `/<name>`).
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
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

    /// The hierarchy path of a QoS tier: `kubepods` itself for Guaranteed pods.
    pub fn qos_cgroup_name(&self, qos: QosClass) -> String {
        match qos {
            QosClass::Guaranteed => self.kubepods(),
            QosClass::Burstable => join_cgroup(&self.kubepods(), "burstable"),
            QosClass::BestEffort => join_cgroup(&self.kubepods(), "besteffort"),
        }
    }

    /// Creates cgroup `name` (idempotent) and writes `resources` to it.
    pub fn ensure(&self, name: &str, resources: &ResourceConfig) -> Result<(), CgroupError> {
        let started = std::time::Instant::now();
        self.create(name)?;
        self.apply(name, resources)?;
        self.observe("create", started);
        Ok(())
    }

    /// Writes `resources` to the existing cgroup `name`.
    pub fn update(&self, name: &str, resources: &ResourceConfig) -> Result<(), CgroupError> {
        let started = std::time::Instant::now();
        self.apply(name, resources)?;
        self.observe("update", started);
        Ok(())
    }

    /// The directories of `name` that are missing in the hierarchies of `controllers` (all
    /// hierarchies when empty); empty when the cgroup exists everywhere it must.
    pub fn missing_dirs(&self, name: &str, controllers: &[&str]) -> Vec<PathBuf> {
        let dirs: Vec<PathBuf> = match &self.layout {
            Layout::V2 { .. } => self.dirs(name),
            Layout::V1 { .. } if controllers.is_empty() => self.dirs(name),
            Layout::V1 { .. } => controllers
                .iter()
                .filter(|c| self.has_controller(c))
                .map(|c| self.controller_dir(c, name))
                .collect(),
        };
        dirs.into_iter().filter(|d| !d.is_dir()).collect()
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

    /// Removes a pod's cgroup in every hierarchy, once, without waiting: see [`Self::destroy`].
    pub fn remove_pod_cgroup(&self, qos: QosClass, uid: &str) -> Result<(), CgroupError> {
        self.destroy(&self.pod_cgroup_name(qos, uid))
    }

    /// Every process in cgroup `name` or below it, in any hierarchy (the kubelet's `Pids`).
    pub fn pids(&self, name: &str) -> Vec<i32> {
        let mut out = BTreeSet::new();
        for dir in self.dirs(name) {
            collect_pids(&dir, &mut out);
        }
        out.into_iter().collect()
    }

    /// Destroys cgroup `name` as the kubelet's pod container manager does: SIGKILL to every
    /// process left in it or below it, then one attempt to remove its directories (children
    /// first) in every hierarchy. Never sleeps: a process that has not exited yet, or cannot,
    /// leaves the cgroup busy, and the error names the directory; the caller retries later.
    /// An absent cgroup is success.
    pub fn destroy(&self, name: &str) -> Result<(), CgroupError> {
        let started = std::time::Instant::now();
        kill_all(&self.pids(name));
        let r = self.remove(name);
        self.observe("destroy", started);
        r
    }

    /// Every pod cgroup present in any hierarchy, `(uid, qos)`, sorted: the direct `pod<uid>`
    /// children of the QoS tiers (the kubelet's `GetAllPodsFromCgroups`).
    pub fn list_pod_cgroups(&self) -> Vec<(String, QosClass)> {
        let mut out = BTreeSet::new();
        for qos in [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ] {
            for dir in self.dirs(&self.qos_cgroup_name(qos)) {
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for e in entries.flatten() {
                    let name = e.file_name();
                    let Some(uid) = name.to_str().and_then(|n| n.strip_prefix("pod")) else {
                        continue;
                    };
                    if !uid.is_empty() && e.file_type().is_ok_and(|t| t.is_dir()) {
                        out.insert((uid.to_string(), qos_rank(qos)));
                    }
                }
            }
        }
        out.into_iter().map(|(uid, r)| (uid, RANKED[r])).collect()
    }

    /// The directories of one cgroup in every hierarchy that has it.
    pub fn dirs(&self, name: &str) -> Vec<PathBuf> {
        let rel = name.trim_start_matches('/');
        match &self.layout {
            Layout::V2 { .. } => vec![self.mount_root.join(rel)],
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
            Layout::V2 { .. } => self.mount_root.join(rel),
            Layout::V1 { .. } => self.mount_root.join(controller).join(rel),
        }
    }

    fn create(&self, name: &str) -> Result<(), CgroupError> {
        if let Layout::V2 { .. } = self.layout {
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

    fn apply(&self, name: &str, r: &ResourceConfig) -> Result<(), CgroupError> {
        let pids_value = |limit: i64| {
            if limit > 0 {
                limit.to_string()
            } else {
                "max".to_string()
            }
        };
        match &self.layout {
            Layout::V1 { .. } => {
                if self.has_controller("cpu") {
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
                if self.has_controller("memory") {
                    if let Some(limit) = r.memory_limit {
                        let dir = self.controller_dir("memory", name);
                        write_file(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                    }
                }
                if self.has_controller("pids") {
                    if let Some(limit) = r.pids_limit {
                        let dir = self.controller_dir("pids", name);
                        write_file(&dir.join("pids.max"), &pids_value(limit))?;
                    }
                }
            }
            Layout::V2 { .. } => {
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
                if let Some(min) = r.memory_min {
                    write_file(&dir.join("memory.min"), &min.to_string())?;
                }
                if let Some(low) = r.memory_low {
                    write_file(&dir.join("memory.low"), &low.to_string())?;
                }
                if let Some(limit) = r.pids_limit {
                    write_file(&dir.join("pids.max"), &pids_value(limit))?;
                }
            }
        }
        self.apply_hugetlb(name, r.hugepage_limits.as_ref())
    }

    /// Huge page limits: the sizes given, and 0 for every other size the node has (the
    /// kubelet's `maybeSetHugetlb`). Skipped where there is no `hugetlb` controller.
    fn apply_hugetlb(
        &self,
        name: &str,
        limits: Option<&BTreeMap<u64, i64>>,
    ) -> Result<(), CgroupError> {
        let Some(limits) = limits else {
            return Ok(());
        };
        if !self.has_controller("hugetlb") {
            return Ok(());
        }
        let dir = self.controller_dir("hugetlb", name);
        let suffix = match self.layout {
            Layout::V1 { .. } => "limit_in_bytes",
            Layout::V2 { .. } => "max",
        };
        let sizes: BTreeSet<u64> = self
            .hugepage_sizes
            .iter()
            .chain(limits.keys())
            .copied()
            .collect();
        for size in sizes {
            let limit = limits.get(&size).copied().unwrap_or(0).max(0);
            let file = format!("hugetlb.{}.{suffix}", hugetlb_size_name(size));
            write_file(&dir.join(file), &limit.to_string())?;
        }
        Ok(())
    }

    /// One pass over every hierarchy: the first failure is returned, after every hierarchy
    /// was tried.
    fn remove(&self, name: &str) -> Result<(), CgroupError> {
        let mut first_err = None;
        for dir in self.dirs(name) {
            if let Err(e) = remove_cgroup_dir(&dir) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

/// Removes one cgroup directory, children first (container cgroups runc has not removed
/// yet), one `rmdir` each. An absent directory is fine. Never sleeps: a busy cgroup (EBUSY,
/// processes still inside) is an error for the caller to retry later.
fn remove_cgroup_dir(dir: &Path) -> Result<(), CgroupError> {
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
    let mut first_err = None;
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            if let Err(e) = remove_cgroup_dir(&e.path()) {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Remove {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

/// Adds the processes of `dir` and of every cgroup below it to `out`.
fn collect_pids(dir: &Path, out: &mut BTreeSet<i32>) {
    if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_pids(&e.path(), out);
        }
    }
}

/// SIGKILL to each process (the kubelet's `killOnePid`); one that already exited is fine.
/// Never the agent itself or init, whatever a cgroup file says.
fn kill_all(pids: &[i32]) {
    let me = std::process::id() as i32;
    for &pid in pids {
        if pid <= 1 || pid == me {
            continue;
        }
        // SAFETY: kill(2) with a plain pid and signal; it touches no memory of ours.
        let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::ESRCH) {
                tracing::debug!(pid, error = %err, "cannot kill a process left in a cgroup");
            }
        }
    }
}

/// The kernel's name of a huge page size in `hugetlb.<size>.*` files: `2MB`, `1GB`, `64KB`
/// (runc's `HugePageSizes` spelling).
pub fn hugetlb_size_name(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v}{}", UNITS[i])
}

/// QoS classes in a fixed order, for sorting.
const RANKED: [QosClass; 3] = [
    QosClass::Guaranteed,
    QosClass::Burstable,
    QosClass::BestEffort,
];

fn qos_rank(q: QosClass) -> usize {
    RANKED.iter().position(|r| *r == q).unwrap_or(0)
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
    if let Ok(s) = fs::read_to_string(mount_root.join("cgroup.controllers")) {
        let controllers = s.split_whitespace().map(str::to_string).collect();
        return Ok(Layout::V2 { controllers });
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

/// How CPU limits become CFS quota (`cpuCFSQuota`, `cpuCFSQuotaPeriod` in µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CfsQuota {
    pub enforce: bool,
    pub period_us: u64,
}

impl Default for CfsQuota {
    fn default() -> Self {
        Self {
            enforce: true,
            period_us: DEFAULT_CPU_PERIOD,
        }
    }
}

/// The pod-level limits the kubelet puts on a pod cgroup: CPU shares from the sum of requests,
/// a CFS quota (unlimited, -1, when `cpuCFSQuota` is off) and a memory limit only when every
/// container has that limit, the pod PID limit, and its huge pages (every size it does not
/// request limited to 0).
pub fn pod_resources(pod: &Pod, pods_pids_limit: i64, cfs: CfsQuota) -> PodResources {
    let totals = qos::pod_totals(pod);
    let mut r = PodResources {
        cpu_shares: Some(milli_cpu_to_shares(totals.cpu_request_milli)),
        hugepage_limits: Some(qos::pod_hugepages(pod)),
        ..Default::default()
    };
    if totals.all_have_cpu_limit {
        r.cpu_period = Some(cfs.period_us);
        r.cpu_quota = Some(if cfs.enforce {
            milli_cpu_to_quota(totals.cpu_limit_milli, cfs.period_us)
        } else {
            -1
        });
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
        m.ensure(
            &m.qos_cgroup_name(QosClass::BestEffort),
            &ResourceConfig {
                cpu_shares: Some(MIN_SHARES),
                ..Default::default()
            },
        )
        .unwrap();
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
        assert_eq!(
            m.layout(),
            &Layout::V2 {
                controllers: vec!["cpu".into(), "memory".into(), "pids".into()]
            }
        );
        let res = PodResources {
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_limit: Some(1 << 30),
            ..Default::default()
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

    #[test]
    fn hugetlb_file_names_follow_the_kernel() {
        assert_eq!(hugetlb_size_name(2 << 20), "2MB");
        assert_eq!(hugetlb_size_name(1 << 30), "1GB");
        assert_eq!(hugetlb_size_name(64 << 10), "64KB");
        assert_eq!(hugetlb_size_name(32 << 20), "32MB");
    }

    #[test]
    fn pods_get_their_huge_pages_and_zero_for_other_sizes() {
        let t = tempfile::tempdir().unwrap();
        for c in ["cpu", "memory", "hugetlb"] {
            fs::create_dir_all(t.path().join(c)).unwrap();
            fs::write(t.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let m = CgroupManager::new(t.path(), "/")
            .unwrap()
            .with_hugepage_sizes([2 << 20, 1 << 30]);
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "h"},
            "spec": {"containers": [
                {"name": "a", "image": "i", "resources": {"limits": {
                    "cpu": "1", "memory": "1Gi", "hugepages-2Mi": "64Mi"}}},
                {"name": "b", "image": "i", "resources": {"limits": {
                    "cpu": "1", "memory": "1Gi", "hugepages-2Mi": "32Mi"}}}
            ]}
        }))
        .unwrap();
        let r = pod_resources(&pod, 0, CfsQuota::default());
        assert_eq!(
            r.hugepage_limits,
            Some(BTreeMap::from([(2 << 20, 96 << 20)]))
        );
        m.ensure_pod_cgroup(QosClass::Guaranteed, "h", &r).unwrap();
        let dir = t.path().join("hugetlb/kubepods/podh");
        assert_eq!(
            fs::read_to_string(dir.join("hugetlb.2MB.limit_in_bytes")).unwrap(),
            (96u64 << 20).to_string()
        );
        assert_eq!(
            fs::read_to_string(dir.join("hugetlb.1GB.limit_in_bytes")).unwrap(),
            "0"
        );
    }

    #[test]
    fn pod_cgroups_are_found_in_any_hierarchy() {
        let t = v1_tree();
        let m = CgroupManager::new(t.path(), "/").unwrap();
        fs::create_dir_all(t.path().join("memory/kubepods/besteffort/poda")).unwrap();
        fs::create_dir_all(t.path().join("cpu/kubepods/besteffort/poda")).unwrap();
        fs::create_dir_all(t.path().join("pids/kubepods/podb")).unwrap();
        fs::create_dir_all(t.path().join("pids/kubepods/burstable")).unwrap();
        fs::write(t.path().join("cpu/kubepods/podfile"), "").unwrap();
        assert_eq!(
            m.list_pod_cgroups(),
            vec![
                ("a".to_string(), QosClass::BestEffort),
                ("b".to_string(), QosClass::Guaranteed)
            ]
        );
    }

    #[test]
    fn pids_are_collected_below_the_cgroup_in_every_hierarchy() {
        let t = v1_tree();
        let m = CgroupManager::new(t.path(), "/").unwrap();
        // Beyond any kernel's pid range: nothing real is ever named here.
        let d = t.path().join("memory/kubepods/podx/c1");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("cgroup.procs"), "2147483001\n2147483002\n").unwrap();
        fs::create_dir_all(t.path().join("cpu/kubepods/podx")).unwrap();
        fs::write(
            t.path().join("cpu/kubepods/podx/cgroup.procs"),
            "2147483002\n",
        )
        .unwrap();
        assert_eq!(m.pids("/kubepods/podx"), vec![2_147_483_001, 2_147_483_002]);
        // Destroying kills them (no such processes: fine) and removes what it can: the
        // fixture's plain files keep these directories, so the error names one.
        let err = m.destroy("/kubepods/podx").unwrap_err().to_string();
        assert!(err.contains("kubepods/podx"), "{err}");
        fs::remove_file(d.join("cgroup.procs")).unwrap();
        fs::remove_file(t.path().join("cpu/kubepods/podx/cgroup.procs")).unwrap();
        m.destroy("/kubepods/podx").unwrap();
        assert!(!t.path().join("memory/kubepods/podx").exists());
    }

    #[test]
    fn only_ebusy_is_busy() {
        let err = |code| CgroupError::Remove {
            path: "/x".into(),
            source: io::Error::from_raw_os_error(code),
        };
        assert!(err(libc::EBUSY).is_busy());
        assert!(!err(libc::ENOTEMPTY).is_busy());
        assert!(!err(libc::EACCES).is_busy());
    }
}
