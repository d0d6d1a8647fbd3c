//! Container garbage collection (`pkg/kubelet/kuberuntime/kuberuntime_gc.go`).
//!
//! A collection removes, in this order:
//! 1. **dead containers**: containers that are not running and were created more than the
//!    minimum age ago, grouped by pod and container name ("evict units"). Every one of them
//!    goes when the pod's content may be removed (the pod is gone, or evicted) — or, for
//!    [`ContainerGcManager::delete_all_unused_containers`], when the pod has terminated; the
//!    rest keep the newest `max_per_pod_container` of each unit (1: what
//!    `kubectl logs --previous` reads), and at most `max_containers` overall when set;
//! 2. **dead sandboxes**: sandboxes that are not ready and hold no container; all of them for a
//!    pod that is gone, all but the newest for a pod that still exists;
//! 3. **log directories** (`/var/log/pods/<namespace>_<name>_<uid>`) of pods that are gone and
//!    have no sandbox left.
//!
//! Nothing of a pod that merely has not been seen yet is removed before every pod source has
//! reported once (`all_sources_ready`), as in the kubelet. A container in the `CREATED` state
//! is left alone for two minutes: it may be about to start.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::events::{reason, EventSink, EventType, ObjectRef};
use crate::images::FailureTracker;

/// Container GC settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerGcPolicy {
    /// Dead containers younger than this stay.
    pub min_age: Duration,
    /// Dead containers kept per pod and container name (negative: no limit).
    pub max_per_pod_container: i32,
    /// Dead containers kept on the node (negative: no limit).
    pub max_containers: i32,
}

impl Default for ContainerGcPolicy {
    fn default() -> Self {
        ContainerGcPolicy {
            min_age: Duration::ZERO,
            max_per_pod_container: 1,
            max_containers: -1,
        }
    }
}

/// How long a container in the `CREATED` state is left alone.
pub const CREATED_GRACE: Duration = Duration::from_secs(120);

/// The state of a container, as far as GC cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerState {
    /// Running: never collected.
    Running,
    /// Created, not started yet.
    Created,
    /// Exited or unknown: dead.
    Dead,
}

/// A container the runtime has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcContainer {
    /// Runtime ID.
    pub id: String,
    /// Its pod's UID.
    pub pod_uid: String,
    /// Container name.
    pub name: String,
    /// State.
    pub state: ContainerState,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
}

/// A sandbox the runtime has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcSandbox {
    /// Runtime ID.
    pub id: String,
    /// Its pod's UID.
    pub pod_uid: String,
    /// Ready (running).
    pub ready: bool,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
}

/// A pod log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLogDir {
    /// The directory.
    pub path: PathBuf,
    /// The pod name parsed from the directory name (`<namespace>_<name>_<uid>`).
    pub pod_name: String,
    /// The pod UID parsed from it.
    pub pod_uid: String,
}

impl PodLogDir {
    /// Parses a log directory name; `None` when it is not `<namespace>_<name>_<uid>`.
    pub fn parse(path: &Path) -> Option<PodLogDir> {
        let name = path.file_name()?.to_str()?;
        let (rest, uid) = name.rsplit_once('_')?;
        let (_namespace, pod) = rest.split_once('_')?;
        if uid.is_empty() || pod.is_empty() {
            return None;
        }
        Some(PodLogDir {
            path: path.to_path_buf(),
            pod_name: pod.to_string(),
            pod_uid: uid.to_string(),
        })
    }
}

/// Why a runtime call failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {object}: {message}")]
pub struct GcRuntimeError {
    /// The operation.
    pub op: &'static str,
    /// The object (ID or path).
    pub object: String,
    /// The error.
    pub message: String,
}

/// What container GC needs from the runtime and the node.
pub trait ContainerRuntime: Send + Sync {
    /// This node's containers.
    fn list_containers(&self) -> Result<Vec<GcContainer>, GcRuntimeError>;
    /// This node's sandboxes.
    fn list_sandboxes(&self) -> Result<Vec<GcSandbox>, GcRuntimeError>;
    /// Removes a container.
    fn remove_container(&self, id: &str) -> Result<(), GcRuntimeError>;
    /// Removes a sandbox.
    fn remove_sandbox(&self, id: &str) -> Result<(), GcRuntimeError>;
    /// The pod log directories.
    fn pod_log_dirs(&self) -> Result<Vec<PodLogDir>, GcRuntimeError>;
    /// Removes a pod log directory.
    fn remove_log_dir(&self, dir: &Path) -> Result<(), GcRuntimeError>;
}

/// What the node knows about its pods.
pub trait PodStateProvider: Send + Sync {
    /// Every pod source has reported at least once.
    fn all_sources_ready(&self) -> bool;
    /// The pod is gone (no source wants it) or was evicted: everything of it may go.
    fn should_pod_content_be_removed(&self, uid: &str) -> bool;
    /// The pod has terminated (or is gone): its dead containers and sandboxes may go.
    fn should_pod_runtime_be_removed(&self, uid: &str) -> bool;
}

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum ContainerGcError {
    /// Listing failed.
    #[error(transparent)]
    Runtime(#[from] GcRuntimeError),
    /// Some removals failed (the rest went ahead).
    #[error("failed to remove {failed} of {attempted} objects: {errors}")]
    Removal {
        /// Removals that failed.
        failed: usize,
        /// Removals attempted.
        attempted: usize,
        /// The errors, joined.
        errors: String,
    },
}

/// What a collection removes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Container IDs.
    pub containers: Vec<String>,
    /// Sandbox IDs.
    pub sandboxes: Vec<String>,
    /// Log directories.
    pub log_dirs: Vec<PathBuf>,
}

fn now_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Decides what to remove. `evict_non_deleted` also empties the units of terminated pods that
/// still exist (the eviction manager's reclaim).
pub fn plan(
    policy: &ContainerGcPolicy,
    containers: &[GcContainer],
    sandboxes: &[GcSandbox],
    log_dirs: &[PodLogDir],
    pods: &dyn PodStateProvider,
    evict_non_deleted: bool,
    now: SystemTime,
) -> GcPlan {
    let now = now_ns(now);
    let newest_gc = now - policy.min_age.as_nanos() as i64;
    let created_cutoff = now - CREATED_GRACE.as_nanos() as i64;
    let ready = pods.all_sources_ready();
    // Evict units: dead containers by (pod, name), newest first.
    let mut units: BTreeMap<(String, String), Vec<&GcContainer>> = BTreeMap::new();
    for c in containers {
        let evictable = match c.state {
            ContainerState::Running => false,
            ContainerState::Created => c.created_at <= created_cutoff,
            ContainerState::Dead => true,
        };
        if evictable && c.created_at <= newest_gc {
            units
                .entry((c.pod_uid.clone(), c.name.clone()))
                .or_default()
                .push(c);
        }
    }
    for u in units.values_mut() {
        u.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    }
    let mut out = GcPlan::default();
    let removable = |uid: &str| {
        pods.should_pod_content_be_removed(uid)
            || (evict_non_deleted && pods.should_pod_runtime_be_removed(uid))
    };
    if ready {
        units.retain(|(uid, _), u| {
            if removable(uid) {
                out.containers.extend(u.iter().map(|c| c.id.clone()));
                false
            } else {
                true
            }
        });
    }
    if policy.max_per_pod_container >= 0 {
        let keep = policy.max_per_pod_container as usize;
        for u in units.values_mut() {
            if u.len() > keep {
                out.containers.extend(u.drain(keep..).map(|c| c.id.clone()));
            }
        }
    }
    if policy.max_containers >= 0 {
        let mut rest: Vec<&GcContainer> = units.values().flatten().copied().collect();
        let max = policy.max_containers as usize;
        if rest.len() > max {
            rest.sort_by_key(|c| c.created_at);
            let extra = rest.len() - max;
            out.containers
                .extend(rest[..extra].iter().map(|c| c.id.clone()));
        }
    }
    // Sandboxes: active ones (ready, or holding a container that stays) are never removed.
    let removed: HashSet<&str> = out.containers.iter().map(String::as_str).collect();
    let with_containers: HashSet<&str> = containers
        .iter()
        .filter(|c| !removed.contains(c.id.as_str()))
        .filter_map(|c| sandbox_of(c, sandboxes))
        .collect();
    let mut by_pod: BTreeMap<&str, Vec<&GcSandbox>> = BTreeMap::new();
    for s in sandboxes {
        by_pod.entry(s.pod_uid.as_str()).or_default().push(s);
    }
    for (uid, mut list) in by_pod {
        list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        let keep = if ready && removable(uid) { 0 } else { 1 };
        for s in list.iter().skip(keep) {
            if !s.ready && !with_containers.contains(s.id.as_str()) {
                out.sandboxes.push(s.id.clone());
            }
        }
    }
    // Log directories of pods that are gone and have no sandbox left.
    if ready {
        let remaining: HashSet<&str> = sandboxes
            .iter()
            .filter(|s| !out.sandboxes.contains(&s.id))
            .map(|s| s.pod_uid.as_str())
            .collect();
        for d in log_dirs {
            if pods.should_pod_content_be_removed(&d.pod_uid)
                && !remaining.contains(d.pod_uid.as_str())
            {
                out.log_dirs.push(d.path.clone());
            }
        }
    }
    out
}

/// The sandbox of a container: the newest sandbox of its pod created before it.
fn sandbox_of<'a>(c: &GcContainer, sandboxes: &'a [GcSandbox]) -> Option<&'a str> {
    sandboxes
        .iter()
        .filter(|s| s.pod_uid == c.pod_uid && s.created_at <= c.created_at)
        .max_by_key(|s| s.created_at)
        .map(|s| s.id.as_str())
}

/// The container GC manager.
pub struct ContainerGcManager {
    policy: ContainerGcPolicy,
    runtime: Arc<dyn ContainerRuntime>,
    pods: Arc<dyn PodStateProvider>,
    events: Arc<dyn EventSink>,
    node: ObjectRef,
    clock: Arc<dyn Clock>,
    failures: Mutex<FailureTracker>,
}

impl ContainerGcManager {
    /// A manager for node `node`.
    pub fn new(
        node: &str,
        policy: ContainerGcPolicy,
        runtime: Arc<dyn ContainerRuntime>,
        pods: Arc<dyn PodStateProvider>,
        events: Arc<dyn EventSink>,
        clock: Arc<dyn Clock>,
    ) -> Arc<ContainerGcManager> {
        Arc::new(ContainerGcManager {
            policy,
            runtime,
            pods,
            events,
            node: ObjectRef::node(node),
            clock,
            failures: Mutex::new(FailureTracker::default()),
        })
    }

    fn collect(&self, evict_non_deleted: bool) -> Result<GcPlan, ContainerGcError> {
        let containers = self.runtime.list_containers()?;
        let sandboxes = self.runtime.list_sandboxes()?;
        let logs = self.runtime.pod_log_dirs().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot list pod log directories");
            Vec::new()
        });
        let p = plan(
            &self.policy,
            &containers,
            &sandboxes,
            &logs,
            self.pods.as_ref(),
            evict_non_deleted,
            self.clock.wall(),
        );
        let mut errors = Vec::new();
        for id in &p.containers {
            tracing::info!(container = %id, "removing dead container");
            if let Err(e) = self.runtime.remove_container(id) {
                errors.push(e.to_string());
            }
        }
        for id in &p.sandboxes {
            tracing::info!(sandbox = %id, "removing dead sandbox");
            if let Err(e) = self.runtime.remove_sandbox(id) {
                errors.push(e.to_string());
            }
        }
        for d in &p.log_dirs {
            tracing::info!(dir = %d.display(), "removing the log directory of a pod that is gone");
            if let Err(e) = self.runtime.remove_log_dir(d) {
                errors.push(e.to_string());
            }
        }
        if errors.is_empty() {
            Ok(p)
        } else {
            Err(ContainerGcError::Removal {
                failed: errors.len(),
                attempted: p.containers.len() + p.sandboxes.len() + p.log_dirs.len(),
                errors: errors.join("; "),
            })
        }
    }

    /// One periodic collection. Records `ContainerGCFailed` on the second failure in a row.
    pub fn garbage_collect(&self) -> Result<GcPlan, ContainerGcError> {
        let r = self.collect(false);
        if self.failures.lock().failed(r.is_err()) {
            if let Err(e) = &r {
                self.events.event(
                    &self.node,
                    EventType::Warning,
                    reason::CONTAINER_GC_FAILED,
                    &e.to_string(),
                );
            }
        }
        r
    }
}

impl crate::eviction::DeleteUnusedContainers for ContainerGcManager {
    fn delete_all_unused_containers(&self) -> Result<(), ContainerGcError> {
        self.collect(true).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::events::testing::RecordingSink;

    struct Pods {
        ready: bool,
        gone: Vec<&'static str>,
        terminated: Vec<&'static str>,
    }
    impl PodStateProvider for Pods {
        fn all_sources_ready(&self) -> bool {
            self.ready
        }
        fn should_pod_content_be_removed(&self, uid: &str) -> bool {
            self.gone.contains(&uid)
        }
        fn should_pod_runtime_be_removed(&self, uid: &str) -> bool {
            self.gone.contains(&uid) || self.terminated.contains(&uid)
        }
    }

    const S: i64 = 1_000_000_000;

    fn c(id: &str, uid: &str, name: &str, state: ContainerState, created_s: i64) -> GcContainer {
        GcContainer {
            id: id.into(),
            pod_uid: uid.into(),
            name: name.into(),
            state,
            created_at: created_s * S,
        }
    }

    fn sb(id: &str, uid: &str, ready: bool, created_s: i64) -> GcSandbox {
        GcSandbox {
            id: id.into(),
            pod_uid: uid.into(),
            ready,
            created_at: created_s * S,
        }
    }

    fn at(s: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s as u64)
    }

    #[test]
    fn keeps_the_newest_dead_container_of_each_live_pod_container() {
        use ContainerState::*;
        let containers = vec![
            c("a1", "live", "app", Dead, 100),
            c("a2", "live", "app", Dead, 200),
            c("a3", "live", "app", Dead, 300),
            c("a4", "live", "app", Running, 400),
            c("s1", "live", "sidecar", Dead, 150),
            c("g1", "gone", "app", Dead, 100),
            c("g2", "gone", "app", Dead, 200),
            c("n1", "live", "new", Created, 950),
            c("n2", "live", "stuck", Created, 100),
        ];
        let sandboxes = vec![
            sb("live-old", "live", false, 50),
            sb("live-cur", "live", true, 90),
            sb("gone-1", "gone", false, 10),
            sb("gone-2", "gone", false, 90),
        ];
        let pods = Pods {
            ready: true,
            gone: vec!["gone"],
            terminated: vec![],
        };
        let logs = vec![
            PodLogDir::parse(Path::new("/var/log/pods/default_web_live")).unwrap(),
            PodLogDir::parse(Path::new("/var/log/pods/default_old_gone")).unwrap(),
            PodLogDir::parse(Path::new("/var/log/pods/default_older_vanished")).unwrap(),
        ];
        let p = plan(
            &ContainerGcPolicy::default(),
            &containers,
            &sandboxes,
            &logs,
            &pods,
            false,
            at(1000),
        );
        let mut cs = p.containers.clone();
        cs.sort();
        // a3 (newest dead app) and s1 (only dead sidecar) stay; the running one and the
        // just-created one are never touched; the stuck CREATED one is old enough to go.
        assert_eq!(cs, vec!["a1", "a2", "g1", "g2"]);
        assert!(
            !p.containers.contains(&"n2".to_string()),
            "a container in CREATED for 15 min stays in its unit"
        );
        let mut sbs = p.sandboxes.clone();
        sbs.sort();
        // The live pod keeps its newest (ready) sandbox, which holds its remaining
        // containers; its old empty one goes, as do both sandboxes of the gone pod.
        assert_eq!(sbs, vec!["gone-1", "gone-2", "live-old"]);
        assert_eq!(
            p.log_dirs,
            vec![PathBuf::from("/var/log/pods/default_old_gone")],
            "only pods that are gone lose their logs"
        );
    }

    #[test]
    fn nothing_of_unknown_pods_goes_before_the_sources_are_ready() {
        use ContainerState::*;
        let containers = vec![
            c("g1", "gone", "app", Dead, 100),
            c("g2", "gone", "app", Dead, 200),
        ];
        let sandboxes = vec![sb("s1", "gone", false, 10), sb("s2", "gone", false, 20)];
        let logs = vec![PodLogDir::parse(Path::new("/l/ns_p_gone")).unwrap()];
        let pods = Pods {
            ready: false,
            gone: vec!["gone"],
            terminated: vec![],
        };
        let p = plan(
            &ContainerGcPolicy::default(),
            &containers,
            &sandboxes,
            &logs,
            &pods,
            false,
            at(1000),
        );
        assert_eq!(
            p.containers,
            vec!["g1"],
            "only the per-container limit applies"
        );
        assert_eq!(p.sandboxes, vec!["s1"], "the newest sandbox stays");
        assert!(p.log_dirs.is_empty());
    }

    #[test]
    fn minimum_age_and_the_eviction_managers_reclaim() {
        use ContainerState::*;
        let containers = vec![
            c("t1", "done", "app", Dead, 100),
            c("t2", "done", "app", Dead, 995),
            c("l1", "live", "app", Dead, 50),
        ];
        let pods = Pods {
            ready: true,
            gone: vec![],
            terminated: vec!["done"],
        };
        let policy = ContainerGcPolicy {
            min_age: Duration::from_secs(60),
            ..Default::default()
        };
        let p = plan(&policy, &containers, &[], &[], &pods, false, at(1000));
        assert!(p.containers.is_empty(), "{p:?}");
        let p = plan(&policy, &containers, &[], &[], &pods, true, at(1000));
        assert_eq!(
            p.containers,
            vec!["t1"],
            "t2 is too young, l1 the last of a live pod"
        );
        let capped = ContainerGcPolicy {
            max_per_pod_container: -1,
            max_containers: 1,
            ..Default::default()
        };
        let p = plan(&capped, &containers, &[], &[], &pods, false, at(1000));
        let mut cs = p.containers;
        cs.sort();
        // Three dead containers, one may stay: the newest (t2).
        assert_eq!(
            cs,
            vec!["l1", "t1"],
            "the oldest beyond the node-wide limit"
        );
    }

    #[test]
    fn log_directory_names() {
        let d = PodLogDir::parse(Path::new("/var/log/pods/kube-system_web-0_1234-abcd")).unwrap();
        assert_eq!(d.pod_uid, "1234-abcd");
        assert_eq!(d.pod_name, "web-0");
        assert!(PodLogDir::parse(Path::new("/var/log/pods/junk")).is_none());
        assert!(PodLogDir::parse(Path::new("/var/log/pods/a_b")).is_none());
    }

    #[derive(Default)]
    struct Rt {
        removed: Mutex<Vec<String>>,
        fail: bool,
    }
    impl ContainerRuntime for Rt {
        fn list_containers(&self) -> Result<Vec<GcContainer>, GcRuntimeError> {
            Ok(vec![
                c("x1", "gone", "app", ContainerState::Dead, 1),
                c("x2", "gone", "app", ContainerState::Dead, 2),
            ])
        }
        fn list_sandboxes(&self) -> Result<Vec<GcSandbox>, GcRuntimeError> {
            Ok(vec![])
        }
        fn remove_container(&self, id: &str) -> Result<(), GcRuntimeError> {
            if self.fail {
                return Err(GcRuntimeError {
                    op: "remove container",
                    object: id.into(),
                    message: "connection refused".into(),
                });
            }
            self.removed.lock().push(id.into());
            Ok(())
        }
        fn remove_sandbox(&self, _: &str) -> Result<(), GcRuntimeError> {
            Ok(())
        }
        fn pod_log_dirs(&self) -> Result<Vec<PodLogDir>, GcRuntimeError> {
            Ok(vec![])
        }
        fn remove_log_dir(&self, _: &Path) -> Result<(), GcRuntimeError> {
            Ok(())
        }
    }

    #[test]
    fn the_manager_removes_what_the_plan_says_and_reports_repeated_failures() {
        let sink = Arc::new(RecordingSink::default());
        let pods = Arc::new(Pods {
            ready: true,
            gone: vec!["gone"],
            terminated: vec![],
        });
        let rt = Arc::new(Rt::default());
        let m = ContainerGcManager::new(
            "n",
            ContainerGcPolicy::default(),
            rt.clone(),
            pods.clone(),
            sink.clone(),
            FakeClock::new(),
        );
        m.garbage_collect().unwrap();
        assert_eq!(*rt.removed.lock(), vec!["x2", "x1"]);
        let bad = ContainerGcManager::new(
            "n",
            ContainerGcPolicy::default(),
            Arc::new(Rt {
                fail: true,
                ..Default::default()
            }),
            pods,
            sink.clone(),
            FakeClock::new(),
        );
        let e = bad.garbage_collect().unwrap_err().to_string();
        assert!(e.contains("remove container x2: connection refused"), "{e}");
        assert!(sink.find("ContainerGCFailed").is_none());
        bad.garbage_collect().unwrap_err();
        assert!(sink.find("ContainerGCFailed").is_some());
    }
}
