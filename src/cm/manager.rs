//! The container manager (`pkg/kubelet/cm/container_manager_linux.go`): the node's cgroup
//! work that must never hold up a pod.
//!
//! [`ContainerManager::setup`] (blocking; the agent runs it on `spawn_blocking` at start)
//! creates `kubepods` with its node-allocatable limits, enforces the reserved cgroups and
//! creates the QoS tiers. [`ContainerManager::start`] then runs one thread, `cgroup-manager`,
//! that
//! - keeps the QoS tiers' shares up to date when pods come and go ([`ContainerManager::pods_changed`])
//!   and every minute (the kubelet's `periodicQOSCgroupUpdateInterval`),
//! - retries the `kubepods` limits every minute until they are written (the kubelet does so
//!   while memory usage is above a new, lower limit),
//! - destroys orphaned pod cgroups after each housekeeping pass
//!   ([`ContainerManager::housekeep`]): kill what is left inside, then remove, with a backoff
//!   per cgroup and one report per stuck cgroup ([`super::orphans`]).
//!
//! The sync loop and pod workers only post requests (a lock held for a field write, never
//! across I/O); pod teardown removes its own cgroup with [`ContainerManager::destroy_pod_cgroup`],
//! which runs the filesystem work on `spawn_blocking` and waits between attempts with tokio's
//! timer. A panic in one pass of the thread is logged and the thread carries on.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use parking_lot::{Condvar, Mutex};

use super::node::NodeConfig;
use super::orphans::{OrphanTracker, Verdict};
use super::qos::QosClass;
use super::qos_manager::{qos_configs, QosConfigs};
use super::{CgroupError, CgroupManager, Layout, PodResources, ResourceConfig};

/// How often the QoS tiers are rewritten even when nothing changed.
pub const QOS_RESYNC: Duration = Duration::from_secs(60);
/// How long an orphan whose pod's volumes are still there waits before it is looked at again.
pub const VOLUMES_WAIT: Duration = Duration::from_secs(10);
/// How often a failed `kubepods` limit is retried.
pub const ENFORCE_RETRY: Duration = Duration::from_secs(60);
/// Waits between a pod teardown's attempts at removing its cgroup, before it leaves the
/// cgroup to housekeeping.
const TEARDOWN_RETRIES: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(50),
    Duration::from_millis(250),
];

/// What the container manager needs to know about the node's pods (the status manager
/// implements it).
pub trait ActivePods: Send + Sync {
    /// The pods the node runs, with their status (a finished pod no longer counts for its QoS
    /// tier).
    fn active_pods(&self) -> Vec<Pod>;
    /// Whether the node still has the pod (desired, running or terminating): its cgroup is
    /// then not an orphan.
    fn knows(&self, uid: &str) -> bool;
    /// Whether a pod's volumes are still on disk (the kubelet's `podVolumesExist`): its
    /// orphaned cgroup then waits, so memory-backed volumes are not charged to the parent.
    fn volumes_exist(&self, _uid: &str) -> bool {
        false
    }
}

/// Requests posted to the thread.
#[derive(Default)]
struct Pending {
    qos: bool,
    housekeep: Option<HashSet<String>>,
    stop: bool,
    started: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    fn post(&self, f: impl FnOnce(&mut Pending)) {
        f(&mut self.pending.lock());
        self.wake.notify_one();
    }
}

/// Stops the thread when the last [`ContainerManager`] clone goes.
struct Stopper(Arc<Shared>);

impl Drop for Stopper {
    fn drop(&mut self) {
        self.0.post(|p| p.stop = true);
    }
}

/// The node's cgroup manager: the cgroupfs driver ([`CgroupManager`]) plus node allocatable,
/// the QoS tiers and orphan cleanup on a thread of its own. Cheap to clone.
#[derive(Clone)]
pub struct ContainerManager {
    cgroups: CgroupManager,
    node: Arc<NodeConfig>,
    shared: Arc<Shared>,
    _stopper: Arc<Stopper>,
}

impl std::fmt::Debug for ContainerManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerManager")
            .field("cgroups", &self.cgroups)
            .field("node", &self.node)
            .finish()
    }
}

impl ContainerManager {
    pub fn new(cgroups: CgroupManager, node: NodeConfig) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        Self {
            cgroups,
            node: Arc::new(node),
            _stopper: Arc::new(Stopper(shared.clone())),
            shared,
        }
    }

    /// The cgroupfs driver.
    pub fn cgroups(&self) -> &CgroupManager {
        &self.cgroups
    }

    /// The node-allocatable configuration in force.
    pub fn node_config(&self) -> &NodeConfig {
        &self.node
    }

    /// `<cgroup-root>/kubepods`.
    pub fn kubepods(&self) -> String {
        self.cgroups.kubepods()
    }

    /// The hierarchy path of a pod's cgroup.
    pub fn pod_cgroup_name(&self, qos: QosClass, uid: &str) -> String {
        self.cgroups.pod_cgroup_name(qos, uid)
    }

    /// Creates a pod's cgroup with its limits; see [`CgroupManager::ensure_pod_cgroup`].
    pub fn ensure_pod_cgroup(
        &self,
        qos: QosClass,
        uid: &str,
        resources: &PodResources,
    ) -> Result<String, CgroupError> {
        self.cgroups.ensure_pod_cgroup(qos, uid, resources)
    }

    /// Whether memory QoS applies: the gate, on cgroup v2.
    fn memory_qos(&self) -> bool {
        self.node.memory_qos && matches!(self.cgroups.layout(), Layout::V2 { .. })
    }

    /// Blocking, at start: creates `kubepods` with its limits, enforces the reserved cgroups
    /// (which must exist) and creates the QoS tiers. A `kubepods` limit the kernel refuses is
    /// not fatal (the thread retries it, as the kubelet does); a missing or unwritable reserved
    /// cgroup is. Returns whether the `kubepods` limits were written.
    pub fn setup(&self) -> Result<bool, CgroupError> {
        let kubepods = self.kubepods();
        self.cgroups.ensure(&kubepods, &ResourceConfig::default())?;
        let enforced = self.enforce_kubepods();
        for r in self.node.reserved_cgroups() {
            // The hierarchies the kubelet's `Validate` requires (those mounted).
            let missing = self.cgroups.missing_dirs(
                &r.name,
                &[
                    "cpu", "cpuacct", "cpuset", "memory", "systemd", "pids", "hugetlb",
                ],
            );
            if !missing.is_empty() {
                return Err(CgroupError::Missing {
                    name: format!("{} ({} enforcement)", r.name, r.level),
                    missing,
                });
            }
            self.cgroups.update(&r.name, &r.config)?;
            tracing::info!(cgroup = %r.name, level = r.level, limits = ?r.config, "enforced reserved cgroup limits");
        }
        let tiers = qos_configs([], self.cgroups.hugepage_sizes(), false);
        self.cgroups.ensure(
            &self.cgroups.qos_cgroup_name(QosClass::Burstable),
            &tiers.burstable,
        )?;
        self.cgroups.ensure(
            &self.cgroups.qos_cgroup_name(QosClass::BestEffort),
            &tiers.besteffort,
        )?;
        Ok(enforced)
    }

    /// Writes the `kubepods` limits; false (logged) when the kernel refuses them.
    fn enforce_kubepods(&self) -> bool {
        let config = self.node.kubepods_config();
        match self.cgroups.update(&self.kubepods(), &config) {
            Ok(()) => {
                tracing::info!(cgroup = %self.kubepods(), limits = ?config, "node allocatable enforced on the pods' cgroup");
                true
            }
            Err(e) => {
                tracing::warn!(cgroup = %self.kubepods(), error = %e, "cannot update node allocatable limits; retrying every minute");
                false
            }
        }
    }

    /// Starts the thread (once). `kubepods_enforced` is [`Self::setup`]'s answer.
    pub fn start(
        &self,
        pods: Arc<dyn ActivePods>,
        kubepods_enforced: bool,
    ) -> Result<(), CgroupError> {
        {
            let mut p = self.shared.pending.lock();
            if p.started {
                return Ok(());
            }
            p.started = true;
            p.qos = true;
        }
        let mut worker = Worker {
            cm: self.clone_without_stopper(),
            pods,
            tracker: OrphanTracker::new(),
            keep: HashSet::new(),
            last_qos: None,
            next_qos_resync: Instant::now(),
            next_enforce: (!kubepods_enforced).then(|| Instant::now() + ENFORCE_RETRY),
        };
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("cgroup-manager".into())
            .spawn(move || worker.run(&shared))
            .map_err(|source| CgroupError::Thread { source })?;
        Ok(())
    }

    /// The thread's handle on the manager: without the stopper, or the thread would keep
    /// itself alive.
    fn clone_without_stopper(&self) -> WorkerCm {
        WorkerCm {
            cgroups: self.cgroups.clone(),
            node: self.node.clone(),
            memory_qos: self.memory_qos(),
        }
    }

    /// Pods were added or removed: recompute the QoS tiers soon. Never blocks.
    pub fn pods_changed(&self) {
        self.shared.post(|p| p.qos = true);
    }

    /// After a housekeeping pass: every pod cgroup whose UID is not in `keep` (pods the sources
    /// want, pods the runtime still has) and that no known pod owns is an orphan to destroy.
    /// Never blocks.
    pub fn housekeep(&self, keep: HashSet<String>) {
        self.shared.post(|p| p.housekeep = Some(keep));
    }

    /// Stops the thread.
    pub fn stop(&self) {
        self.shared.post(|p| p.stop = true);
    }

    /// Pod teardown: destroys the pod's cgroup (every QoS tier where it exists when `qos` is
    /// `None`) on `spawn_blocking`, retrying briefly with tokio's timer while the kernel says
    /// it is busy. Returns false when it is still there: housekeeping then takes it over as an
    /// orphan, with its backoff and report.
    pub async fn destroy_pod_cgroup(&self, uid: &str, qos: Option<QosClass>) -> bool {
        let mut last = String::new();
        for wait in TEARDOWN_RETRIES {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let cgroups = self.cgroups.clone();
            let uid2 = uid.to_string();
            let r = tokio::task::spawn_blocking(move || destroy_pod(&cgroups, &uid2, qos)).await;
            match r {
                Ok(Ok(())) => return true,
                // Only a busy cgroup (a process still exiting) is worth the short retries.
                Ok(Err(e)) if e.is_busy() => last = e.to_string(),
                Ok(Err(e)) => {
                    last = e.to_string();
                    break;
                }
                Err(e) => {
                    last = format!("the removal task failed: {e}");
                    break;
                }
            }
        }
        tracing::debug!(uid = %uid, error = %last, "pod cgroup not removed yet; housekeeping will retry");
        false
    }
}

/// Destroys a pod's cgroup in the tier given, or in every tier where it exists.
fn destroy_pod(
    cgroups: &CgroupManager,
    uid: &str,
    qos: Option<QosClass>,
) -> Result<(), CgroupError> {
    let tiers: Vec<QosClass> = match qos {
        Some(q) => vec![q],
        None => cgroups
            .list_pod_cgroups()
            .into_iter()
            .filter(|(u, _)| u == uid)
            .map(|(_, q)| q)
            .collect(),
    };
    let mut first_err = None;
    for q in tiers {
        if let Err(e) = cgroups.destroy(&cgroups.pod_cgroup_name(q, uid)) {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// What the thread holds of the manager.
struct WorkerCm {
    cgroups: CgroupManager,
    node: Arc<NodeConfig>,
    memory_qos: bool,
}

/// The `cgroup-manager` thread's state.
struct Worker {
    cm: WorkerCm,
    pods: Arc<dyn ActivePods>,
    tracker: OrphanTracker,
    /// The last housekeeping pass's UIDs to keep.
    keep: HashSet<String>,
    /// What the QoS tiers were last given.
    last_qos: Option<QosConfigs>,
    next_qos_resync: Instant,
    /// When to retry the `kubepods` limits; `None` once written.
    next_enforce: Option<Instant>,
}

impl Worker {
    fn run(&mut self, shared: &Shared) {
        loop {
            let (qos, housekeep) = {
                let mut p = shared.pending.lock();
                loop {
                    if p.stop {
                        return;
                    }
                    if p.qos || p.housekeep.is_some() {
                        break;
                    }
                    let deadline = self.next_deadline();
                    if Instant::now() >= deadline {
                        break;
                    }
                    shared.wake.wait_until(&mut p, deadline);
                }
                (std::mem::take(&mut p.qos), p.housekeep.take())
            };
            let pass = std::panic::catch_unwind(AssertUnwindSafe(|| self.pass(qos, housekeep)));
            if pass.is_err() {
                tracing::error!("a cgroup manager pass panicked; the thread carries on");
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        [
            Some(self.next_qos_resync),
            self.next_enforce,
            self.tracker.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or_else(|| Instant::now() + QOS_RESYNC)
    }

    fn pass(&mut self, qos: bool, housekeep: Option<HashSet<String>>) {
        let now = Instant::now();
        if let Some(at) = self.next_enforce {
            if now >= at {
                self.retry_kubepods(now);
            }
        }
        let resync = now >= self.next_qos_resync;
        if qos || resync {
            self.update_qos(resync, now);
        }
        if let Some(keep) = housekeep {
            self.find_orphans(keep, now);
        }
        self.destroy_due_orphans(now);
    }

    fn retry_kubepods(&mut self, now: Instant) {
        let name = self.cm.cgroups.kubepods();
        match self
            .cm
            .cgroups
            .update(&name, &self.cm.node.kubepods_config())
        {
            Ok(()) => {
                tracing::info!(cgroup = %name, "node allocatable enforced on the pods' cgroup");
                self.next_enforce = None;
            }
            Err(e) => {
                tracing::debug!(cgroup = %name, error = %e, "node allocatable limits still refused");
                self.next_enforce = Some(now + ENFORCE_RETRY);
            }
        }
    }

    /// Writes the QoS tiers' settings when they changed, or all of them when `force`.
    fn update_qos(&mut self, force: bool, now: Instant) {
        let pods = self.pods.active_pods();
        let want = qos_configs(&pods, self.cm.cgroups.hugepage_sizes(), self.cm.memory_qos);
        let last = self.last_qos.take().unwrap_or_default();
        let mut ok = true;
        for (qos, config, before) in [
            (QosClass::Guaranteed, &want.guaranteed, &last.guaranteed),
            (QosClass::Burstable, &want.burstable, &last.burstable),
            (QosClass::BestEffort, &want.besteffort, &last.besteffort),
        ] {
            if *config == ResourceConfig::default() || (!force && config == before) {
                continue;
            }
            let name = self.cm.cgroups.qos_cgroup_name(qos);
            match self.cm.cgroups.update(&name, config) {
                Ok(()) => tracing::debug!(cgroup = %name, settings = ?config, "updated QoS cgroup"),
                Err(e) => {
                    ok = false;
                    tracing::warn!(cgroup = %name, error = %e, "cannot update QoS cgroup");
                }
            }
        }
        // A failed write is tried again on the next change or resync.
        self.last_qos = ok.then_some(want);
        if force {
            self.next_qos_resync = now + QOS_RESYNC;
        }
    }

    /// Lists the pod cgroups (after the caller's list of pods to keep was made, so a pod
    /// started meanwhile is known to [`ActivePods::knows`]) and tracks the orphans.
    fn find_orphans(&mut self, keep: HashSet<String>, now: Instant) {
        let cgroups = &self.cm.cgroups;
        let found: Vec<(String, String)> = cgroups
            .list_pod_cgroups()
            .into_iter()
            .filter(|(uid, _)| !keep.contains(uid) && !self.pods.knows(uid))
            .map(|(uid, q)| (cgroups.pod_cgroup_name(q, &uid), uid))
            .collect();
        self.keep = keep;
        for (name, uid) in self.tracker.observe(found, now) {
            tracing::info!(cgroup = %name, uid = %uid, "orphaned pod cgroup: killing what is left inside and removing it");
        }
    }

    /// One attempt on each orphan due at `now`; returns what each attempt came to.
    fn destroy_due_orphans(&mut self, now: Instant) -> Vec<(String, Verdict)> {
        let mut out = Vec::new();
        for (name, uid) in self.tracker.due(now) {
            // Checked again right before acting: the pod may have come back since the list.
            if self.keep.contains(&uid) || self.pods.knows(&uid) {
                self.tracker.forget(&name);
                continue;
            }
            if self.pods.volumes_exist(&uid) {
                // The kubelet's `ReduceCPULimits` while it waits for the volumes to go.
                let min = ResourceConfig {
                    cpu_shares: Some(super::MIN_SHARES),
                    ..Default::default()
                };
                if let Err(e) = self.cm.cgroups.update(&name, &min) {
                    tracing::debug!(cgroup = %name, error = %e, "cannot reduce the CPU shares of an orphaned pod cgroup");
                }
                tracing::debug!(cgroup = %name, uid = %uid, "orphaned pod cgroup waits for its pod's volumes to be torn down");
                self.tracker.postpone(&name, now, VOLUMES_WAIT);
                continue;
            }
            let pids = self.cm.cgroups.pids(&name);
            let result = self.cm.cgroups.destroy(&name);
            let verdict = self.tracker.record(&name, result.is_ok(), now);
            if let Some(v) = &verdict {
                out.push((name.clone(), v.clone()));
            }
            match (verdict, result) {
                (Some(Verdict::Removed { attempts, reported }), _) => {
                    tracing::info!(cgroup = %name, uid = %uid, attempts, was_reported = reported, "removed orphaned pod cgroup");
                }
                (
                    Some(Verdict::Busy {
                        attempts,
                        retry_in,
                        report,
                    }),
                    Err(e),
                ) => {
                    if report {
                        tracing::warn!(
                            cgroup = %name,
                            uid = %uid,
                            pids = ?pids,
                            attempts,
                            error = %e,
                            "cannot remove orphaned pod cgroup: it stays busy after its processes were killed; retrying with backoff, and not reporting it again"
                        );
                    } else {
                        tracing::debug!(cgroup = %name, uid = %uid, pids = ?pids, attempts, retry_in = ?retry_in, error = %e, "orphaned pod cgroup still busy; retrying");
                    }
                }
                _ => {}
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cm::node::{Enforcement, NodeResources};
    use crate::cm::orphans::{backoff, REPORT_AFTER};
    use serde_json::json;
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;

    const GI: i64 = 1 << 30;

    /// Pods the test says the node has.
    struct FakePods(Vec<Pod>);

    impl ActivePods for FakePods {
        fn active_pods(&self) -> Vec<Pod> {
            self.0.clone()
        }
        fn knows(&self, uid: &str) -> bool {
            self.0
                .iter()
                .any(|p| p.metadata.uid.as_deref() == Some(uid))
        }
    }

    /// No pods, but the UIDs given still have volumes.
    struct WithVolumes(Vec<&'static str>);

    impl ActivePods for WithVolumes {
        fn active_pods(&self) -> Vec<Pod> {
            Vec::new()
        }
        fn knows(&self, _: &str) -> bool {
            false
        }
        fn volumes_exist(&self, uid: &str) -> bool {
            self.0.contains(&uid)
        }
    }

    fn pod(uid: &str, resources: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": uid, "uid": uid},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": resources}]},
            "status": {"phase": "Running"}
        }))
        .unwrap()
    }

    /// A v1 fixture: each controller a directory with a `cgroup.procs`.
    fn v1_tree(controllers: &[&str]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for c in controllers {
            fs::create_dir_all(t.path().join(c)).unwrap();
            fs::write(t.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        t
    }

    fn v2_tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids\n",
        )
        .unwrap();
        t
    }

    fn node(levels: &[&str]) -> NodeConfig {
        NodeConfig {
            capacity: NodeResources {
                cpu_milli: Some(2000),
                memory: Some(8 * GI),
                pids: Some(32768),
                hugepages: BTreeMap::from([(2 << 20, 0)]),
            },
            system_reserved: NodeResources {
                cpu_milli: Some(500),
                memory: Some(GI),
                pids: Some(1000),
                ..Default::default()
            },
            kube_reserved: NodeResources {
                cpu_milli: Some(250),
                memory: Some(GI / 2),
                ..Default::default()
            },
            hard_eviction: NodeResources::default(),
            enforce: Enforcement::from_levels(
                &levels.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ),
            system_reserved_cgroup: Some("/sys-reserved".into()),
            kube_reserved_cgroup: Some("/kube-reserved".into()),
            memory_qos: false,
        }
    }

    fn read(p: impl AsRef<Path>) -> String {
        fs::read_to_string(p.as_ref())
            .unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
            .trim()
            .to_string()
    }

    fn worker(cm: &ContainerManager, pods: Vec<Pod>) -> Worker {
        Worker {
            cm: cm.clone_without_stopper(),
            pods: Arc::new(FakePods(pods)),
            tracker: OrphanTracker::new(),
            keep: HashSet::new(),
            last_qos: None,
            next_qos_resync: Instant::now(),
            next_enforce: None,
        }
    }

    #[test]
    fn v1_setup_enforces_node_allocatable_and_reserved_cgroups() {
        let t = v1_tree(&["cpu", "memory", "pids", "hugetlb"]);
        for c in ["cpu", "memory", "pids", "hugetlb"] {
            fs::create_dir_all(t.path().join(c).join("sys-reserved")).unwrap();
            fs::create_dir_all(t.path().join(c).join("kube-reserved")).unwrap();
        }
        let cgroups = CgroupManager::new(t.path(), "/node-a")
            .unwrap()
            .with_hugepage_sizes([2 << 20]);
        let cm = ContainerManager::new(
            cgroups,
            node(&["pods", "system-reserved", "kube-reserved-compressible"]),
        );
        assert!(cm.setup().unwrap());
        let kp = |c: &str, f: &str| read(t.path().join(c).join("node-a/kubepods").join(f));
        // 8Gi − 1Gi − 512Mi; 2000m − 750m = 1250m → 1280 shares; 32768 − 1000 PIDs.
        assert_eq!(
            kp("memory", "memory.limit_in_bytes"),
            (6 * GI + GI / 2).to_string()
        );
        assert_eq!(kp("cpu", "cpu.shares"), "1280");
        assert_eq!(kp("pids", "pids.max"), "31768");
        assert_eq!(kp("hugetlb", "hugetlb.2MB.limit_in_bytes"), "0");
        // The QoS tiers: besteffort minimal, huge pages unbounded.
        let tier = |c: &str, q: &str, f: &str| {
            read(t.path().join(c).join("node-a/kubepods").join(q).join(f))
        };
        assert_eq!(tier("cpu", "besteffort", "cpu.shares"), "2");
        assert_eq!(
            tier("hugetlb", "burstable", "hugetlb.2MB.limit_in_bytes"),
            (1i64 << 62).to_string()
        );
        // system-reserved gets its whole reservation; kube-reserved-compressible only shares.
        let sys = |c: &str, f: &str| read(t.path().join(c).join("sys-reserved").join(f));
        assert_eq!(sys("memory", "memory.limit_in_bytes"), GI.to_string());
        assert_eq!(sys("cpu", "cpu.shares"), "512");
        assert_eq!(sys("pids", "pids.max"), "1000");
        assert_eq!(read(t.path().join("cpu/kube-reserved/cpu.shares")), "256");
        assert!(!t
            .path()
            .join("memory/kube-reserved/memory.limit_in_bytes")
            .exists());
        // v2 files are not written on v1.
        assert!(!t.path().join("memory/node-a/kubepods/memory.min").exists());
    }

    #[test]
    fn without_pods_enforcement_kubepods_gets_capacity() {
        let t = v1_tree(&["cpu", "memory", "pids"]);
        let cm = ContainerManager::new(CgroupManager::new(t.path(), "/").unwrap(), node(&[]));
        cm.setup().unwrap();
        assert_eq!(
            read(t.path().join("memory/kubepods/memory.limit_in_bytes")),
            (8 * GI).to_string()
        );
        assert_eq!(read(t.path().join("cpu/kubepods/cpu.shares")), "2048");
        assert_eq!(read(t.path().join("pids/kubepods/pids.max")), "32768");
    }

    #[test]
    fn v2_setup_writes_unified_files() {
        let t = v2_tree();
        fs::create_dir_all(t.path().join("sys-reserved")).unwrap();
        let cgroups = CgroupManager::new(t.path(), "/")
            .unwrap()
            .with_hugepage_sizes([2 << 20, 1 << 30]);
        let cm = ContainerManager::new(cgroups, node(&["pods", "system-reserved"]));
        cm.setup().unwrap();
        let kp = |f: &str| read(t.path().join("kubepods").join(f));
        assert_eq!(kp("memory.max"), (6 * GI + GI / 2).to_string());
        // 1280 shares → weight 1 + (1278 · 9999) / 262142 = 49.
        assert_eq!(kp("cpu.weight"), "49");
        assert_eq!(kp("pids.max"), "31768");
        // Without the MemoryQoS gate, memory protection is reset.
        assert_eq!(kp("memory.min"), "0");
        assert_eq!(kp("memory.low"), "0");
        // Sizes node allocatable has no pool of are limited to 0 on kubepods.
        assert_eq!(kp("hugetlb.2MB.max"), "0");
        assert_eq!(kp("hugetlb.1GB.max"), "0");
        assert_eq!(read(t.path().join("kubepods/besteffort/cpu.weight")), "1");
        assert_eq!(
            read(t.path().join("kubepods/burstable/hugetlb.1GB.max")),
            (1i64 << 62).to_string()
        );
        assert_eq!(
            read(t.path().join("sys-reserved/memory.max")),
            GI.to_string()
        );
        assert_eq!(read(t.path().join("sys-reserved/cpu.weight")), "20");
        // Each level delegates the controllers to the next.
        assert!(read(t.path().join("cgroup.subtree_control")).contains("+memory"));
    }

    #[test]
    fn a_missing_reserved_cgroup_fails_setup_naming_it() {
        let t = v1_tree(&["cpu", "memory", "pids"]);
        let cm = ContainerManager::new(
            CgroupManager::new(t.path(), "/").unwrap(),
            node(&["pods", "kube-reserved"]),
        );
        let err = cm.setup().unwrap_err().to_string();
        assert!(
            err.contains("/kube-reserved (kube-reserved enforcement)"),
            "{err}"
        );
        assert!(
            err.contains(&t.path().join("memory/kube-reserved").display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn qos_tiers_follow_the_pods() {
        let t = v1_tree(&["cpu", "memory"]);
        let cm = ContainerManager::new(CgroupManager::new(t.path(), "/").unwrap(), node(&["pods"]));
        cm.setup().unwrap();
        let shares = || read(t.path().join("cpu/kubepods/burstable/cpu.shares"));
        let now = Instant::now();
        let mut w = worker(
            &cm,
            vec![
                pod("a", json!({"requests": {"cpu": "300m"}})),
                pod("b", json!({"requests": {"cpu": "200m", "memory": "10Mi"}})),
                pod("g", json!({"limits": {"cpu": "1", "memory": "10Mi"}})),
            ],
        );
        w.update_qos(false, now);
        assert_eq!(shares(), "512");
        // A pod goes: the tier follows.
        w.pods = Arc::new(FakePods(vec![pod(
            "a",
            json!({"requests": {"cpu": "300m"}}),
        )]));
        w.update_qos(false, now);
        assert_eq!(shares(), "307");
        // Unchanged values are not rewritten, except on the periodic resync.
        fs::write(t.path().join("cpu/kubepods/burstable/cpu.shares"), "999").unwrap();
        w.update_qos(false, now);
        assert_eq!(shares(), "999");
        w.update_qos(true, now);
        assert_eq!(shares(), "307");
        assert_eq!(w.next_qos_resync, now + QOS_RESYNC);
    }

    #[test]
    fn orphaned_pod_cgroups_are_destroyed_with_backoff_and_reported_once() {
        let t = v1_tree(&["cpu", "memory", "pids"]);
        let cgroups = CgroupManager::new(t.path(), "/").unwrap();
        let dir = |c: &str, rel: &str| t.path().join(c).join("kubepods").join(rel);
        for c in ["cpu", "memory", "pids"] {
            // A removable orphan, one the node still runs, one the sources still want.
            fs::create_dir_all(dir(c, "besteffort/podgone")).unwrap();
            fs::create_dir_all(dir(c, "burstable/podknown")).unwrap();
            fs::create_dir_all(dir(c, "podwanted")).unwrap();
        }
        // An orphan that cannot be removed: in a fixture, a plain file keeps rmdir failing as
        // a process keeps a real cgroup busy. In one hierarchy only, as a leftover may be.
        fs::create_dir_all(dir("memory", "podstuck/container")).unwrap();
        fs::write(dir("memory", "podstuck/container/held"), "").unwrap();
        let cm = ContainerManager::new(cgroups, node(&["pods"]));
        let mut w = worker(&cm, vec![pod("known", json!({}))]);
        let t0 = Instant::now();
        w.find_orphans(HashSet::from(["wanted".to_string()]), t0);
        let mut verdicts: BTreeMap<String, Verdict> =
            w.destroy_due_orphans(t0).into_iter().collect();
        assert_eq!(verdicts.len(), 2, "{verdicts:?}");
        assert_eq!(
            verdicts.remove("/kubepods/besteffort/podgone"),
            Some(Verdict::Removed {
                attempts: 1,
                reported: false
            })
        );
        for c in ["cpu", "memory", "pids"] {
            assert!(!dir(c, "besteffort/podgone").exists());
            assert!(dir(c, "burstable/podknown").exists());
            assert!(dir(c, "podwanted").exists());
        }
        // The stuck one: every attempt fails, on its own backoff, reported once.
        let mut now = t0;
        let mut reports = 0;
        let mut attempts = 1;
        let mut last = verdicts.remove("/kubepods/podstuck").unwrap();
        loop {
            let Verdict::Busy {
                retry_in, report, ..
            } = last
            else {
                panic!("{last:?}");
            };
            reports += report as u32;
            // Housekeeping passes meanwhile do not reset the backoff nor retry early.
            w.find_orphans(HashSet::from(["wanted".to_string()]), now);
            assert!(w.destroy_due_orphans(now + retry_in / 2).is_empty());
            now += retry_in;
            if attempts == REPORT_AFTER + 3 {
                break;
            }
            let v = w.destroy_due_orphans(now);
            assert_eq!(v.len(), 1);
            attempts += 1;
            last = v[0].1.clone();
            assert_eq!(
                last,
                Verdict::Busy {
                    attempts,
                    retry_in: backoff(attempts),
                    report: attempts == REPORT_AFTER
                }
            );
        }
        assert_eq!(reports, 1);
        assert!(dir("memory", "podstuck").exists());
        // Released: removed at the next attempt, every hierarchy.
        fs::remove_file(dir("memory", "podstuck/container/held")).unwrap();
        let v = w.destroy_due_orphans(now);
        assert_eq!(
            v,
            vec![(
                "/kubepods/podstuck".to_string(),
                Verdict::Removed {
                    attempts: attempts + 1,
                    reported: true
                }
            )]
        );
        assert!(!dir("memory", "podstuck").exists());
        assert_eq!(w.tracker.next_deadline(), None);
    }

    #[test]
    fn an_orphan_whose_pod_comes_back_is_left_alone() {
        let t = v1_tree(&["cpu"]);
        fs::create_dir_all(t.path().join("cpu/kubepods/podback")).unwrap();
        let cm = ContainerManager::new(CgroupManager::new(t.path(), "/").unwrap(), node(&["pods"]));
        let mut w = worker(&cm, vec![]);
        let t0 = Instant::now();
        w.find_orphans(HashSet::new(), t0);
        assert_eq!(w.tracker.len(), 1);
        // The pod is started again before the attempt.
        w.pods = Arc::new(FakePods(vec![pod("back", json!({}))]));
        assert!(w.destroy_due_orphans(t0).is_empty());
        assert!(t.path().join("cpu/kubepods/podback").exists());
        assert!(w.tracker.is_empty());
    }

    #[test]
    fn an_orphan_with_volumes_waits_at_minimum_cpu() {
        let t = v1_tree(&["cpu"]);
        fs::create_dir_all(t.path().join("cpu/kubepods/burstable/podv")).unwrap();
        fs::write(
            t.path().join("cpu/kubepods/burstable/podv/cpu.shares"),
            "512",
        )
        .unwrap();
        let cm = ContainerManager::new(CgroupManager::new(t.path(), "/").unwrap(), node(&["pods"]));
        let mut w = worker(&cm, vec![]);
        w.pods = Arc::new(WithVolumes(vec!["v"]));
        let t0 = Instant::now();
        w.find_orphans(HashSet::new(), t0);
        assert!(w.destroy_due_orphans(t0).is_empty());
        assert_eq!(
            read(t.path().join("cpu/kubepods/burstable/podv/cpu.shares")),
            "2"
        );
        // Not attempted again before the wait is over, and never counted as a failure.
        assert!(w.destroy_due_orphans(t0 + VOLUMES_WAIT / 2).is_empty());
        w.pods = Arc::new(WithVolumes(vec![]));
        fs::remove_file(t.path().join("cpu/kubepods/burstable/podv/cpu.shares")).unwrap();
        assert_eq!(
            w.destroy_due_orphans(t0 + VOLUMES_WAIT),
            vec![(
                "/kubepods/burstable/podv".to_string(),
                Verdict::Removed {
                    attempts: 1,
                    reported: false
                }
            )]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn teardown_leaves_a_busy_pod_cgroup_to_housekeeping() {
        let t = v1_tree(&["cpu", "memory"]);
        let cm = ContainerManager::new(CgroupManager::new(t.path(), "/").unwrap(), node(&["pods"]));
        fs::create_dir_all(t.path().join("cpu/kubepods/burstable/podp")).unwrap();
        fs::create_dir_all(t.path().join("memory/kubepods/burstable/podp")).unwrap();
        assert!(cm.destroy_pod_cgroup("p", Some(QosClass::Burstable)).await);
        assert!(!t.path().join("memory/kubepods/burstable/podp").exists());
        // Busy: a few quick tries, then false; the qos is found when not given.
        fs::create_dir_all(t.path().join("memory/kubepods/podq")).unwrap();
        fs::write(t.path().join("memory/kubepods/podq/held"), "").unwrap();
        assert!(!cm.destroy_pod_cgroup("q", None).await);
        assert!(t.path().join("memory/kubepods/podq").exists());
        // Absent is success.
        assert!(cm.destroy_pod_cgroup("never", None).await);
    }

    #[test]
    fn the_thread_stops_with_the_last_handle() {
        let t = v1_tree(&["cpu"]);
        let cm = ContainerManager::new(CgroupManager::new(t.path(), "/").unwrap(), node(&["pods"]));
        cm.start(Arc::new(FakePods(vec![])), true).unwrap();
        // Starting twice is a no-op.
        cm.start(Arc::new(FakePods(vec![])), true).unwrap();
        let shared = cm.shared.clone();
        drop(cm);
        assert!(shared.pending.lock().stop);
    }
}
