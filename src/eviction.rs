//! The eviction manager wired to the agent: the kubelet's pods as eviction candidates
//! ([`KubeletPods`]), evictions through [`Kubelet::evict_pod`] ([`PodKiller`]), the node's
//! pressure conditions served at `/node/conditions` on the read-only port, and the admission
//! check that refuses new pods under pressure.
//!
//! The decisions live in `managers::eviction`; see its documentation for the signals, the
//! thresholds and the fast path. What this module adds:
//!
//! - **Thresholds** come from the settings (`--eviction-hard`, `--eviction-soft`,
//!   `--eviction-soft-grace-period`, `--eviction-minimum-reclaim`); with
//!   `--enforce-node-allocatable=pods` (the default) the hard `memory.available` threshold is
//!   copied to `allocatableMemory.available`, as the kubelet does.
//! - **Evicting** a pod fails it (phase `Failed`, reason `Evicted`, the kubelet's message),
//!   counts `kubelet_evictions{eviction_signal}`, then stops its running containers at once
//!   (grace 0 for hard thresholds, `min(pod grace, --eviction-max-pod-grace-period)` for soft
//!   ones) and returns when they have stopped, like the kubelet's `killPodNow`; the pod worker
//!   then stops the sandbox.
//! - **emptyDir `sizeLimit`s** (`localStorageCapacityIsolation`, on by default): every 10 s the
//!   disk-backed emptyDirs that have a `sizeLimit` are measured as `du` does (allocated blocks);
//!   a pod whose emptyDir is over its limit is evicted at once with the kubelet's message
//!   (`Usage of EmptyDir volume "data" exceeds the limit "1Mi". `), counted as
//!   `kubelet_evictions{eviction_signal="emptydirfs.limit"}`. Memory-backed emptyDirs are left
//!   out: their tmpfs is already sized by the limit.
//! - **Critical pods** are those of system priority (`priority >= 2000000000`, or the
//!   `system-node-critical`/`system-cluster-critical` priority classes). Unlike the kubelet,
//!   static pods are not treated as critical: in standalone mode every pod is static, and none
//!   could ever be evicted.
//! - **Reaction**: fast by default; `KUBELET_RS_EVICTION_REACTION=polling` (a diagnostic
//!   setting for the pressure benchmark) makes the manager poll every 10 s like the kubelet.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use collectors::ContainerNamer;
use k8s_openapi::api::core::v1::{NodeCondition, Pod};
use managers::conditions::NodeConditions;
use managers::eviction::notifier::Backend;
use managers::eviction::stats::{MonitorSummary, NodeScope, PodSource};
use managers::eviction::{
    self, AdmitRequest, ContainerRequest, DiskUsage, EvictionManager, Grace, KillPod, KillRequest,
    PodCandidate, Reaction, Runner, RunnerHandle, Threshold, ThresholdValue, VolumeUsage,
};
use managers::quantity::{self, Format};
use managers::{Clock, EventSink};

use crate::cm::qos::{container_request_limit, pod_qos_class, pod_totals, QosClass};
use crate::config::{EvictionSignal, EvictionThresholds, KubeletSettings};
use crate::kubelet::Kubelet;
use crate::resource::{parse_quantity, Quantity, QuantityFormat};
use crate::volumemanager::EmptyDirUsage;

/// The environment variable selecting the reaction mode (`fast`, the default, or `polling`).
pub const REACTION_ENV: &str = "KUBELET_RS_EVICTION_REACTION";

/// Priority at and above which a pod is critical (`scheduling.SystemCriticalPriority`).
pub const SYSTEM_CRITICAL_PRIORITY: i32 = 2_000_000_000;

/// How long, beyond its grace period, an eviction waits for the pod's containers to stop.
const STOP_MARGIN: Duration = Duration::from_secs(30);

fn value(v: &crate::config::ThresholdValue) -> ThresholdValue {
    match v {
        crate::config::ThresholdValue::Quantity(q) => ThresholdValue::Quantity {
            value: q.value(),
            format: match q.format() {
                QuantityFormat::BinarySI => Format::BinarySI,
                _ => Format::DecimalSI,
            },
        },
        crate::config::ThresholdValue::Percentage(p) => ThresholdValue::Percentage(*p),
    }
}

/// The thresholds the settings ask for.
pub fn thresholds(s: &KubeletSettings) -> Vec<Threshold> {
    let reclaim = |sig: &EvictionSignal| s.eviction_minimum_reclaim.get(sig).map(value);
    let mut out = Vec::new();
    let mut add = |set: &EvictionThresholds, soft: bool| {
        for (sig, v) in set {
            let grace = if soft {
                s.eviction_soft_grace_period
                    .get(sig)
                    .copied()
                    .unwrap_or_default()
            } else {
                Duration::ZERO
            };
            out.push(Threshold {
                signal: *sig,
                value: value(v),
                grace_period: grace,
                min_reclaim: reclaim(sig),
            });
        }
    };
    add(&s.eviction_hard, false);
    add(&s.eviction_soft, true);
    if s.enforce_node_allocatable.iter().any(|k| k == "pods") {
        eviction::api::add_allocatable_thresholds(&mut out);
    }
    out
}

/// A quantity as the API prints it (`64Mi`, `500M`).
fn quantity_text(q: &Quantity) -> String {
    quantity::format(
        q.value(),
        if q.format() == QuantityFormat::BinarySI {
            Format::BinarySI
        } else {
            Format::DecimalSI
        },
    )
}

/// A request as the API would print it (`64Mi`, `500M`), `0` when absent.
fn request_text(c: &k8s_openapi::api::core::v1::Container, resource: &str) -> String {
    let res = c.resources.as_ref();
    let q = res
        .and_then(|r| r.requests.as_ref())
        .and_then(|m| m.get(resource))
        .or_else(|| {
            res.and_then(|r| r.limits.as_ref())
                .and_then(|m| m.get(resource))
        });
    match q.and_then(|q| parse_quantity(&q.0).ok()) {
        Some(q) => quantity_text(&q),
        None => "0".into(),
    }
}

/// A pod's scheduling priority: `spec.priority`, else that of the system priority classes.
pub fn priority(pod: &Pod) -> i32 {
    let spec = pod.spec.as_ref();
    if let Some(p) = spec.and_then(|s| s.priority) {
        return p;
    }
    match spec.and_then(|s| s.priority_class_name.as_deref()) {
        Some("system-node-critical") => SYSTEM_CRITICAL_PRIORITY + 1000,
        Some("system-cluster-critical") => SYSTEM_CRITICAL_PRIORITY,
        _ => 0,
    }
}

fn is_terminal(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// An eviction candidate from a pod, its cgroup named by `cgroup`.
pub fn candidate(pod: &Pod, cgroup: impl FnOnce(QosClass, &str) -> String) -> PodCandidate {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.as_ref();
    let all = spec
        .map(|s| {
            s.init_containers
                .iter()
                .flatten()
                .chain(s.containers.iter())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let containers = all
        .iter()
        .map(|c| ContainerRequest {
            name: c.name.clone(),
            memory_request: container_request_limit(c, "memory").0,
            memory_request_text: request_text(c, "memory"),
        })
        .collect();
    let ephemeral = spec
        .map(|s| {
            s.containers
                .iter()
                .map(|c| container_request_limit(c, "ephemeral-storage").0)
                .sum()
        })
        .unwrap_or(0);
    let prio = priority(pod);
    PodCandidate {
        cgroup: cgroup(pod_qos_class(pod), &uid),
        uid,
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name: pod.metadata.name.clone().unwrap_or_default(),
        priority: prio,
        critical: prio >= SYSTEM_CRITICAL_PRIORITY,
        memory_request: pod_totals(pod).memory_request,
        ephemeral_storage_request: ephemeral,
        containers,
    }
}

/// Disk usage of everything under `dir` on its filesystem (blocks and inodes); 0 if absent.
pub fn du(dir: &Path) -> DiskUsage {
    fn walk(p: &Path, dev: u64, acc: &mut DiskUsage, depth: usize) {
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return;
        };
        if md.dev() != dev {
            return;
        }
        acc.bytes += md.blocks() as i64 * 512;
        acc.inodes += 1;
        if md.is_dir() && depth < 64 {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    walk(&e.path(), dev, acc, depth + 1);
                }
            }
        }
    }
    let mut acc = DiskUsage::default();
    if let Ok(md) = std::fs::symlink_metadata(dir) {
        walk(dir, md.dev(), &mut acc, 0);
    }
    acc
}

/// The disk-backed emptyDirs among `dirs` that have a `sizeLimit` and belong to `pods`, measured
/// as `du` measures them. Memory-backed ones are left out: their tmpfs is already that size.
pub fn empty_dir_usage(dirs: Vec<EmptyDirUsage>, pods: &[PodCandidate]) -> Vec<VolumeUsage> {
    dirs.into_iter()
        .filter(|d| !d.memory && pods.iter().any(|p| p.uid == d.pod_uid))
        .filter_map(|d| {
            let limit = d.size_limit?;
            Some(VolumeUsage {
                used: du(&d.path).bytes,
                limit: limit.value(),
                limit_text: quantity_text(&limit),
                uid: d.pod_uid,
                volume: d.volume,
            })
        })
        .collect()
}

/// The kubelet's pods, as eviction candidates.
pub struct KubeletPods {
    kl: Arc<Kubelet>,
    names: Arc<dyn ContainerNamer>,
}

impl KubeletPods {
    /// Candidates from `kl`, container names from `names` (the PLEG's runtime identities).
    pub fn new(kl: Arc<Kubelet>, names: Arc<dyn ContainerNamer>) -> Self {
        KubeletPods { kl, names }
    }
}

impl PodSource for KubeletPods {
    fn active_pods(&self) -> Vec<PodCandidate> {
        self.kl
            .active_pods()
            .iter()
            .filter(|p| !is_terminal(p))
            .map(|p| candidate(p, |q, uid| self.kl.cgroups.pod_cgroup_name(q, uid)))
            .collect()
    }

    fn container_name(&self, cgroup: &str) -> Option<String> {
        if let Some(id) = self.names.identify(cgroup) {
            let name = id
                .labels
                .get(crate::kuberuntime::labels::CONTAINER_NAME_LABEL)?
                .clone();
            return (name != "POD").then_some(name);
        }
        // Started since the last relist: the pod's status already names it.
        let (parent, id) = cgroup.rsplit_once('/')?;
        let uid = parent.rsplit('/').next()?.strip_prefix("pod")?;
        let status = self.kl.status.status(uid)?;
        status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten())
            .find(|c| {
                c.container_id
                    .as_deref()
                    .is_some_and(|cid| cid.rsplit("://").next() == Some(id))
            })
            .map(|c| c.name.clone())
    }

    fn disk_usage(&self, pods: &[PodCandidate]) -> HashMap<String, DiskUsage> {
        pods.iter()
            .map(|p| {
                let logs = du(&crate::kuberuntime::sandbox::pod_log_dir(
                    &self.kl.opts.log_root,
                    &p.namespace,
                    &p.name,
                    &p.uid,
                ));
                let dir = du(&crate::kubelet::poddirs::pod_dir(
                    &self.kl.pods_root(),
                    &p.uid,
                ));
                (
                    p.uid.clone(),
                    DiskUsage {
                        bytes: logs.bytes + dir.bytes,
                        inodes: logs.inodes + dir.inodes,
                    },
                )
            })
            .collect()
    }

    fn empty_dir_usage(&self, pods: &[PodCandidate]) -> Vec<VolumeUsage> {
        empty_dir_usage(self.kl.volumes.empty_dirs(), pods)
    }
}

/// Evicts pods through the kubelet.
pub struct PodKiller {
    kl: Arc<Kubelet>,
    handle: tokio::runtime::Handle,
}

impl PodKiller {
    /// Runs its runtime calls on `handle` (it is called from the eviction thread).
    pub fn new(kl: Arc<Kubelet>, handle: tokio::runtime::Handle) -> Self {
        PodKiller { kl, handle }
    }
}

impl KillPod for PodKiller {
    fn kill_pod(&self, req: &KillRequest<'_>) -> bool {
        let uid = &req.pod.uid;
        let Some(pod) = self.kl.status.pod(uid) else {
            return false;
        };
        let own = crate::kubelet::sync::termination_grace_of(&pod);
        let grace = match req.grace {
            Grace::Immediate => 0,
            Grace::AtMost(n) => own.min(n),
            Grace::PodDefault => own,
        };
        if !self.kl.evict_pod(
            uid,
            managers::events::reason::EVICTED,
            req.message,
            Some(grace),
        ) {
            return false;
        }
        self.kl
            .metrics
            .evictions
            .with_label_values(&[req.cause.as_str()])
            .inc();
        if let Some(at) = req.observed_at {
            let age = collectors::sys::now_unix_nanos().saturating_sub(at);
            self.kl
                .metrics
                .eviction_stats_age_seconds
                .with_label_values(&[req.cause.as_str()])
                .observe(age as f64 / 1e9);
        }
        let kl = self.kl.clone();
        let uid = uid.clone();
        let wait = Duration::from_secs(grace.max(0) as u64) + STOP_MARGIN;
        let stopped = self.handle.block_on(async move {
            tokio::time::timeout(wait, kl.stop_running_containers(&uid, grace)).await
        });
        if stopped.is_err() {
            tracing::warn!(pod = %req.pod.reference(), "eviction: the pod's containers did not stop in time");
        }
        true
    }
}

/// What the eviction wiring needs.
pub struct EvictionDeps {
    /// The kubelet.
    pub kubelet: Arc<Kubelet>,
    /// The monitoring core.
    pub monitor: Arc<collectors::Monitor>,
    /// Runtime identities of cgroups.
    pub names: Arc<dyn ContainerNamer>,
    /// Image GC (the eviction manager's reclaim).
    pub images: Arc<dyn eviction::DeleteUnusedImages>,
    /// Container GC (the eviction manager's reclaim).
    pub containers: Arc<dyn eviction::DeleteUnusedContainers>,
    /// Events.
    pub events: Arc<dyn EventSink>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The runtime the eviction thread calls into.
    pub handle: tokio::runtime::Handle,
    /// The runtime's image filesystem.
    pub imagefs_path: PathBuf,
    /// procfs.
    pub proc_root: PathBuf,
}

/// The running eviction manager.
pub struct EvictionHandle {
    /// The manager (for its conditions and admission).
    pub manager: Arc<EvictionManager>,
    /// The node's pressure conditions.
    pub conditions: Arc<NodeConditions>,
    /// The reaction mode in force.
    pub reaction: Reaction,
    _runner: RunnerHandle,
}

/// The reaction mode `KUBELET_RS_EVICTION_REACTION` asks for.
pub fn reaction_from_env() -> Reaction {
    match std::env::var(REACTION_ENV).as_deref() {
        Ok("polling") => Reaction::Polling {
            period: Reaction::KUBELET_PERIOD,
        },
        Ok("fast") | Err(_) => Reaction::fast(),
        Ok(other) => {
            tracing::warn!(
                value = other,
                "{REACTION_ENV}: expected fast or polling; using fast"
            );
            Reaction::fast()
        }
    }
}

/// Starts the eviction manager and its thread, registers the admission check.
pub fn start(s: &KubeletSettings, d: EvictionDeps) -> std::io::Result<EvictionHandle> {
    let kl = d.kubelet.clone();
    let scope = NodeScope {
        kubepods: kl.cgroups.kubepods(),
        memory_capacity: kl.opts.node_memory,
        nodefs_path: s.root_dir.clone(),
        imagefs_path: d.imagefs_path.clone(),
        proc_root: d.proc_root.clone(),
    };
    let backend = match d.monitor.layout() {
        collectors::layout::CgroupLayout::V2(_) => Backend::V2,
        _ => Backend::V1,
    };
    let source = Arc::new(MonitorSummary::new(
        d.monitor.clone(),
        scope,
        Arc::new(KubeletPods::new(kl.clone(), d.names.clone())),
    ));
    let config = eviction::Config {
        thresholds: thresholds(s),
        pressure_transition_period: s.eviction_pressure_transition_period,
        max_pod_grace_period: s.eviction_max_pod_grace_period,
        local_storage_period: s
            .local_storage_capacity_isolation
            .then_some(eviction::Config::LOCAL_STORAGE_PERIOD),
    };
    for t in &config.thresholds {
        tracing::info!(threshold = %t, "eviction threshold");
    }
    let manager = EvictionManager::new(
        &s.node_name,
        config,
        eviction::Deps {
            source,
            killer: Arc::new(PodKiller::new(kl.clone(), d.handle.clone())),
            images: d.images,
            containers: d.containers,
            events: d.events.clone(),
            clock: d.clock.clone(),
        },
    );
    let conditions = NodeConditions::new(&s.node_name, d.clock, d.events);
    let reaction = reaction_from_env();
    let c = conditions.clone();
    let runner = Runner {
        manager: manager.clone(),
        reaction,
        passes: Some(d.monitor.subscribe()),
        // kernelMemcgNotification: off leaves the per-pass and periodic checks alone.
        notifications: s.kernel_memcg_notification.then_some(backend),
        proc_root: d.proc_root,
        on_pass: Some(Box::new(move |out| c.update(&out.conditions))),
    }
    .spawn()?;
    // A weak reference: the kubelet must not keep the manager (which holds the kubelet) alive.
    let m = Arc::downgrade(&manager);
    kl.add_admit_handler(Arc::new(move |pod: &Pod| {
        let Some(m) = m.upgrade() else {
            return Ok(());
        };
        let tolerates = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.as_ref())
            .is_some_and(|ts| {
                ts.iter().any(|t| {
                    let key_ok = t.key.as_deref() == Some("node.kubernetes.io/memory-pressure")
                        || (t.key.is_none() && t.operator.as_deref() == Some("Exists"));
                    let effect_ok = t.effect.as_deref().is_none_or(|e| e == "NoSchedule");
                    key_ok && effect_ok
                })
            });
        m.admit(&AdmitRequest {
            best_effort: pod_qos_class(pod) == QosClass::BestEffort,
            critical: priority(pod) >= SYSTEM_CRITICAL_PRIORITY,
            tolerates_memory_pressure: tolerates,
        })
        .map_err(|r| (r.reason.to_string(), r.message))
    }));
    Ok(EvictionHandle {
        manager,
        conditions,
        reaction,
        _runner: runner,
    })
}

/// The node's pressure conditions as `v1.NodeCondition`s.
pub fn node_conditions(c: &NodeConditions) -> Vec<NodeCondition> {
    c.snapshot()
        .into_iter()
        .map(|c| NodeCondition {
            type_: c.kind.as_str().into(),
            status: if c.status { "True" } else { "False" }.into(),
            reason: Some(c.reason.into()),
            message: Some(c.message.into()),
            last_heartbeat_time: crate::events::api_time(c.last_heartbeat),
            last_transition_time: crate::events::api_time(c.last_transition),
        })
        .collect()
}

async fn conditions(State(c): State<Arc<NodeConditions>>) -> Response {
    let body = serde_json::to_string(&node_conditions(&c)).unwrap_or_else(|_| "[]".into());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `/node/conditions` for the read-only port: the conditions the API-server mode will put on
/// the Node object.
pub fn router(c: Arc<NodeConditions>) -> Router {
    Router::new()
        .route("/node/conditions", get(conditions))
        .with_state(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use managers::eviction::Signal;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn candidates_carry_requests_priority_and_cgroup() {
        let p = pod(serde_json::json!({
            "metadata": {"name": "web", "namespace": "prod", "uid": "u1"},
            "spec": {
                "priorityClassName": "system-node-critical",
                "initContainers": [{"name": "init", "image": "i"}],
                "containers": [
                    {"name": "app", "image": "i", "resources": {"requests": {"memory": "64Mi", "ephemeral-storage": "1Gi"}}},
                    {"name": "side", "image": "i", "resources": {"limits": {"memory": "500M"}}}
                ]
            }
        }));
        let c = candidate(&p, |q, uid| format!("/kubepods/{}/pod{uid}", q.as_str()));
        assert_eq!(c.uid, "u1");
        assert_eq!(c.cgroup, "/kubepods/Burstable/podu1");
        assert!(c.critical);
        assert_eq!(c.priority, SYSTEM_CRITICAL_PRIORITY + 1000);
        assert_eq!(c.memory_request, 64 * 1024 * 1024 + 500_000_000);
        assert_eq!(c.ephemeral_storage_request, 1 << 30);
        let texts: Vec<(&str, &str)> = c
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.memory_request_text.as_str()))
            .collect();
        assert_eq!(
            texts,
            vec![("init", "0"), ("app", "64Mi"), ("side", "500M")]
        );
        let plain = pod(
            serde_json::json!({"metadata": {"uid": "u2"}, "spec": {"priority": 7, "containers": []}}),
        );
        let c = candidate(&plain, |_, _| String::new());
        assert_eq!(
            (c.priority, c.critical, c.namespace.as_str()),
            (7, false, "default")
        );
    }

    #[test]
    fn thresholds_from_settings() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: crate::config::Flags,
        }
        use clap::Parser;
        let dir = tempfile::tempdir().unwrap();
        let flags = Cli::parse_from([
            "kubelet-rs",
            "--root-dir",
            dir.path().to_str().unwrap(),
            "--eviction-hard",
            "memory.available<500Mi,nodefs.available<10%",
            "--eviction-soft",
            "memory.available<1Gi",
            "--eviction-soft-grace-period",
            "memory.available=1m30s",
            "--eviction-minimum-reclaim",
            "memory.available=100Mi",
        ])
        .flags;
        let s = crate::config::load(&flags).unwrap();
        let t = thresholds(&s);
        let mem_hard = t
            .iter()
            .find(|t| t.signal == Signal::MemoryAvailable && t.is_hard())
            .unwrap();
        assert_eq!(mem_hard.value, ThresholdValue::bytes(500 << 20));
        assert_eq!(mem_hard.min_reclaim, Some(ThresholdValue::bytes(100 << 20)));
        let soft = t.iter().find(|t| !t.is_hard()).unwrap();
        assert_eq!(soft.grace_period, Duration::from_secs(90));
        assert!(
            t.iter()
                .any(|t| t.signal == Signal::AllocatableMemoryAvailable),
            "node allocatable is enforced on pods by default"
        );
        assert!(t
            .iter()
            .any(|t| t.signal == Signal::NodeFsAvailable
                && t.value == ThresholdValue::Percentage(0.1)));
    }

    #[test]
    fn empty_dirs_with_a_disk_size_limit_are_measured() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::write(data.join("f"), vec![1u8; 3 << 20]).unwrap();
        let ed = |uid: &str, volume: &str, memory: bool, limit: Option<&str>| EmptyDirUsage {
            pod_uid: uid.into(),
            volume: volume.into(),
            path: data.clone(),
            memory,
            size_limit: limit.map(|l| parse_quantity(l).unwrap()),
        };
        let pods = [candidate(
            &pod(serde_json::json!({"metadata": {"uid": "u1"}, "spec": {"containers": []}})),
            |_, _| String::new(),
        )];
        let got = empty_dir_usage(
            vec![
                ed("u1", "data", false, Some("1024Ki")),
                ed("u1", "nolimit", false, None),
                ed("u1", "tmpfs", true, Some("1Mi")),
                ed("gone", "data", false, Some("1Mi")),
            ],
            &pods,
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (got[0].uid.as_str(), got[0].volume.as_str()),
            ("u1", "data")
        );
        assert_eq!((got[0].limit, got[0].limit_text.as_str()), (1 << 20, "1Mi"));
        assert!(got[0].used >= 3 << 20, "{:?}", got[0]);
    }

    #[test]
    fn disk_usage_counts_blocks_and_inodes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/f"), vec![1u8; 10000]).unwrap();
        let u = du(dir.path());
        assert_eq!(u.inodes, 4);
        assert!(u.bytes >= 10000, "{u:?}");
        assert_eq!(du(&dir.path().join("missing")), DiskUsage::default());
    }
}
