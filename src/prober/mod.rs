//! The prober manager (`pkg/kubelet/prober`): startup, liveness and readiness probes.
//!
//! Each probe of each container is a [`worker`] task with its own timer; thousands of probes are
//! thousands of cheap tasks on the prober's one thread, never a thread each,
//! and never block the sync loop. Workers learn which container to probe from
//! [`ProberManager::update_pod`], which the pod worker calls after every sync, and record their results in the [`results`] store. The pod
//! worker reads them back as [`ProberManager::verdicts`]: liveness and startup failures make
//! `compute_pod_actions` kill and restart the container, readiness feeds `ready` and the pod's
//! Ready/ContainersReady conditions, and startup gates the other two and `started`.
//!
//! - `probe`: running one probe (exec through CRI, httpGet, tcpSocket, grpc).
//! - `http`: the shared HTTP(S) client, also used by lifecycle hooks.
//! - `worker`: one probe's loop with its thresholds.
//! - `results`: the results store.
//!
//! Counting: every probe execution is counted ([`ProberManager::executions`]) and passed to the
//! [`ProbeObserver`] if one is set (the `/metrics/probes` families implement it); `Unhealthy`
//! events go to the kubelet's [`Events`]. Workers are supervised: a panicking worker is logged,
//! counted ([`ProberManager::worker_panics`], `prober_probe_worker_panics_total`) and restarted.

pub mod http;
pub mod probe;
pub mod results;
pub mod worker;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use parking_lot::{Mutex, RwLock};
use proto::cri;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kuberuntime::actions::ProbeVerdicts;
use crate::kuberuntime::PodRuntimeStatus;
use crate::lifecycle::Events;
use crate::rtthread::RuntimeThread;
use results::Results;
use worker::{Target, WorkerSpec};

/// The three kinds of probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeType {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeType {
    pub const ALL: [ProbeType; 3] = [
        ProbeType::Liveness,
        ProbeType::Readiness,
        ProbeType::Startup,
    ];

    /// As the kubelet names it in events and the `probe_type` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeType::Liveness => "Liveness",
            ProbeType::Readiness => "Readiness",
            ProbeType::Startup => "Startup",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// The result a worker records for a container it has not probed yet.
    pub fn initial_value(self) -> ProbeResult {
        match self {
            ProbeType::Liveness => ProbeResult::Success,
            ProbeType::Readiness => ProbeResult::Failure,
            ProbeType::Startup => ProbeResult::Unknown,
        }
    }

    fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeType::Liveness => c.liveness_probe.as_ref(),
            ProbeType::Readiness => c.readiness_probe.as_ref(),
            ProbeType::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// One probe's outcome, and a recorded result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeResult {
    Success,
    /// Succeeded with a remark (an HTTP redirect to another host); counts as success.
    Warning,
    Failure,
    /// The probe could not be run (the prober's own error); changes nothing.
    Unknown,
}

impl ProbeResult {
    /// The `result` label of `prober_probe_total`.
    pub fn metric_label(self) -> &'static str {
        match self {
            ProbeResult::Success | ProbeResult::Warning => "successful",
            ProbeResult::Failure => "failed",
            ProbeResult::Unknown => "unknown",
        }
    }
}

/// What running a probe gave, with the output that goes into events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub result: ProbeResult,
    pub output: String,
}

/// One probe to run.
pub struct ProbeRequest<'a> {
    pub ptype: ProbeType,
    pub probe: &'a Probe,
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub container_id: &'a str,
    pub pod_ip: &'a str,
    pub timeout: Duration,
}

/// Runs probes: [`probe::Prober`] for real, scripted runners in tests.
pub trait ProbeRunner: Send + Sync {
    fn run<'a>(&'a self, req: &'a ProbeRequest<'a>) -> BoxFuture<'a, ProbeOutcome>;
}

/// One probe execution, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct ProbeObservation<'a> {
    pub probe_type: ProbeType,
    pub result: ProbeResult,
    pub pod: &'a str,
    pub namespace: &'a str,
    pub pod_uid: &'a str,
    pub container: &'a str,
    pub duration: Duration,
}

/// Receives every probe execution (`prober_probe_total`, `prober_probe_duration_seconds`).
pub trait ProbeObserver: Send + Sync {
    fn observe(&self, o: &ProbeObservation<'_>);

    /// A worker panicked and is being restarted (`prober_probe_worker_panics_total`).
    fn worker_panicked(&self, _probe_type: ProbeType) {}

    /// A worker stopped: its series may go (`probe_type` of `container` in the pod).
    fn forget(
        &self,
        _probe_type: ProbeType,
        _pod: &str,
        _namespace: &str,
        _pod_uid: &str,
        _container: &str,
    ) {
    }
}

fn metric_type(t: ProbeType) -> crate::prober_metrics::ProbeType {
    use crate::prober_metrics as pm;
    match t {
        ProbeType::Liveness => pm::ProbeType::Liveness,
        ProbeType::Readiness => pm::ProbeType::Readiness,
        ProbeType::Startup => pm::ProbeType::Startup,
    }
}

/// The `/metrics/probes` families observe every execution.
impl ProbeObserver for crate::prober_metrics::ProbeMetrics {
    fn observe(&self, o: &ProbeObservation<'_>) {
        use crate::prober_metrics as pm;
        let probe = metric_type(o.probe_type);
        let result = match o.result {
            ProbeResult::Success | ProbeResult::Warning => pm::ProbeResult::Successful,
            ProbeResult::Failure => pm::ProbeResult::Failed,
            ProbeResult::Unknown => pm::ProbeResult::Unknown,
        };
        let target = pm::ProbeTarget {
            container: o.container,
            pod: o.pod,
            namespace: o.namespace,
            pod_uid: o.pod_uid,
        };
        crate::prober_metrics::ProbeMetrics::observe(self, probe, result, target, o.duration);
    }

    fn worker_panicked(&self, probe_type: ProbeType) {
        crate::prober_metrics::ProbeMetrics::worker_panicked(self, metric_type(probe_type));
    }

    fn forget(
        &self,
        probe_type: ProbeType,
        pod: &str,
        namespace: &str,
        pod_uid: &str,
        container: &str,
    ) {
        use crate::prober_metrics as pm;
        let probe = metric_type(probe_type);
        crate::prober_metrics::ProbeMetrics::forget(
            self,
            probe,
            pm::ProbeTarget {
                container,
                pod,
                namespace,
                pod_uid,
            },
        );
    }
}

/// What every worker shares.
pub struct Shared {
    /// The origin of the probe grid ([`worker::PHASES_PER_PERIOD`]).
    pub epoch: tokio::time::Instant,
    pub runner: Arc<dyn ProbeRunner>,
    pub results: Results,
    pub events: Events,
    executions: std::sync::atomic::AtomicU64,
    worker_panics: std::sync::atomic::AtomicU64,
    observer: RwLock<Option<Arc<dyn ProbeObserver>>>,
}

impl Shared {
    fn worker_panicked(&self, t: ProbeType) {
        self.worker_panics
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(obs) = self.observer.read().as_ref() {
            obs.worker_panicked(t);
        }
    }

    fn observe(&self, o: &ProbeObservation<'_>) {
        self.executions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(obs) = self.observer.read().as_ref() {
            obs.observe(o);
        }
    }
}

type WorkerKey = (Arc<str>, String, ProbeType);

struct PodEntry {
    pod: Arc<Pod>,
    /// Per container name.
    targets: HashMap<String, watch::Sender<Target>>,
}

/// The prober manager. One per kubelet.
pub struct ProberManager {
    shared: Arc<Shared>,
    workers: Mutex<HashMap<WorkerKey, JoinHandle<()>>>,
    pods: Mutex<HashMap<Arc<str>, PodEntry>>,
    /// Where workers run: the prober's own thread, or (None) the runtime `add_pod` is called on.
    ///
    /// The thread ("prober") is a single-threaded tokio runtime running every worker and its
    /// probe I/O. A probe is a few system calls and a few microseconds of code, so one thread
    /// keeps up with thousands a second; what it saves is the wakeups: on the agent's
    /// multi-threaded runtime each socket event of a probe can wake a parked worker thread and
    /// then a second one to steal the task, and on a VM a cross-CPU wakeup costs more than the
    /// probe's own code (`benches/probes.rs`).
    thread: Option<RuntimeThread>,
}

impl Drop for ProberManager {
    fn drop(&mut self) {
        for (_, h) in self.workers.get_mut().drain() {
            h.abort();
        }
    }
}

/// Containers that may have probes: app containers and restartable init containers (sidecars).
fn probed_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.into_iter().flat_map(|s| {
        s.init_containers
            .iter()
            .flatten()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"))
            .chain(s.containers.iter())
    })
}

fn has_probes(c: &Container) -> bool {
    c.liveness_probe.is_some() || c.readiness_probe.is_some() || c.startup_probe.is_some()
}

impl ProberManager {
    /// Workers run on the prober's own thread; should it fail to start, on
    /// the runtime that adds pods. `on_change` wakes a pod's worker (the kubelet's
    /// `request_sync`).
    pub fn new(runner: Arc<dyn ProbeRunner>, events: Events, on_change: results::OnChange) -> Self {
        let thread = match RuntimeThread::start("prober") {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the prober thread; probes run on the agent's runtime");
                None
            }
        };
        Self::build(runner, events, on_change, thread)
    }

    /// Workers run on the runtime that calls [`ProberManager::add_pod`] (tests pause its
    /// clock).
    pub fn on_current_runtime(
        runner: Arc<dyn ProbeRunner>,
        events: Events,
        on_change: results::OnChange,
    ) -> Self {
        Self::build(runner, events, on_change, None)
    }

    fn build(
        runner: Arc<dyn ProbeRunner>,
        events: Events,
        on_change: results::OnChange,
        thread: Option<RuntimeThread>,
    ) -> Self {
        Self {
            thread,
            shared: Arc::new(Shared {
                epoch: tokio::time::Instant::now(),
                runner,
                results: Results::new(on_change),
                events,
                executions: std::sync::atomic::AtomicU64::new(0),
                worker_panics: std::sync::atomic::AtomicU64::new(0),
                observer: RwLock::new(None),
            }),
            workers: Mutex::new(HashMap::new()),
            pods: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the observer every probe execution is reported to (the metrics hook).
    pub fn set_observer(&self, observer: Arc<dyn ProbeObserver>) {
        *self.shared.observer.write() = Some(observer);
    }

    /// Probe executions so far.
    pub fn executions(&self) -> u64 {
        self.shared
            .executions
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Probe workers that panicked and were restarted so far.
    pub fn worker_panics(&self) -> u64 {
        self.shared
            .worker_panics
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// CPU time the prober's own thread has used (None when workers run on the caller's
    /// runtime): every probe's code and its socket system calls.
    pub fn thread_cpu_time(&self) -> Option<Duration> {
        self.thread.as_ref()?.cpu_time()
    }

    pub fn results(&self) -> &Results {
        &self.shared.results
    }

    /// Starts workers for the pod's probes (`AddPod`). Idempotent: a pod already known keeps its
    /// workers (probes are immutable; a changed static pod is a new UID).
    pub fn add_pod(&self, pod: &Pod) {
        let uid_str = pod.metadata.uid.as_deref().unwrap_or("");
        let mut pods = self.pods.lock();
        if pods.contains_key(uid_str) {
            return;
        }
        let uid: Arc<str> = Arc::from(uid_str);
        let pod = Arc::new(pod.clone());
        let mut entry = PodEntry {
            pod: pod.clone(),
            targets: HashMap::new(),
        };
        let mut workers = self.workers.lock();
        for c in probed_containers(&pod).filter(|c| has_probes(c)) {
            let (tx, _) = watch::channel(Target::default());
            for ptype in ProbeType::ALL {
                let Some(p) = ptype.of(c) else { continue };
                let spec = WorkerSpec {
                    ptype,
                    pod: pod.clone(),
                    uid: uid.clone(),
                    container: c.clone(),
                    probe: p.clone(),
                };
                let work = worker::run(self.shared.clone(), spec, tx.subscribe());
                let task = match &self.thread {
                    Some(t) => t.handle().spawn(work),
                    None => tokio::spawn(work),
                };
                workers.insert((uid.clone(), c.name.clone(), ptype), task);
            }
            entry.targets.insert(c.name.clone(), tx);
        }
        pods.insert(uid, entry);
    }

    /// Stops the pod's workers and forgets its results (`RemovePod`).
    pub fn remove_pod(&self, uid: &str) {
        let entry = self.pods.lock().remove(uid);
        let mut stopped = Vec::new();
        self.workers.lock().retain(|(u, c, t), h| {
            if &**u == uid {
                h.abort();
                stopped.push((c.clone(), *t));
                false
            } else {
                true
            }
        });
        self.shared.results.remove_pod(uid);
        let observer = self.shared.observer.read().clone();
        if let (Some(obs), Some(e)) = (observer, entry) {
            let name = e.pod.metadata.name.as_deref().unwrap_or("");
            let ns = e.pod.metadata.namespace.as_deref().unwrap_or("default");
            for (container, t) in stopped {
                obs.forget(t, name, ns, uid, &container);
            }
        }
    }

    /// Workers running (for tests and debugging).
    pub fn worker_count(&self) -> usize {
        self.workers.lock().len()
    }

    /// Tells the pod's workers which containers run now (`UpdatePodStatus`): the newest running
    /// instance of each probed container, when it started, the IP probes default to (the pod's,
    /// or the node's for host-network pods), whether its startup probe passed, and whether the
    /// pod is being deleted. A change wakes the workers.
    pub fn update_pod(&self, pod: &Pod, rt: &PodRuntimeStatus, pod_ip: &str) {
        let uid = pod.metadata.uid.as_deref().unwrap_or("");
        let pods = self.pods.lock();
        let Some(entry) = pods.get(uid) else {
            return;
        };
        let pod_ip: Arc<str> = Arc::from(pod_ip);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        for c in probed_containers(&entry.pod) {
            let Some(tx) = entry.targets.get(&c.name) else {
                continue;
            };
            let running = rt
                .container(&c.name)
                .filter(|s| s.state == cri::ContainerState::ContainerRunning as i32);
            let (id, started_at): (Arc<str>, i64) = match running {
                Some(s) => (Arc::from(s.id.as_str()), s.started_at),
                None => (Arc::from(""), 0),
            };
            let started = c.startup_probe.is_none()
                || (!id.is_empty()
                    && self.shared.results.get(ProbeType::Startup, &id)
                        == Some(ProbeResult::Success));
            tx.send_if_modified(|t| {
                let changed = *t.id != *id
                    || t.started_at != started_at
                    || *t.pod_ip != *pod_ip
                    || t.started != started
                    || t.terminating != terminating;
                if changed {
                    *t = Target {
                        id: id.clone(),
                        started_at,
                        pod_ip: pod_ip.clone(),
                        started,
                        terminating,
                    };
                }
                changed
            });
        }
    }

    /// What the pod worker needs from the probes, for the running containers in `rt`:
    /// the kill verdicts for `compute_pod_actions` and the ready set for the status.
    pub fn verdicts(&self, pod: &Pod, rt: &PodRuntimeStatus) -> (ProbeVerdicts, HashSet<String>) {
        let mut v = ProbeVerdicts::default();
        let mut ready = HashSet::new();
        for c in probed_containers(pod) {
            for s in rt.container_history(&c.name) {
                if s.state != cri::ContainerState::ContainerRunning as i32 {
                    continue;
                }
                let [liveness, readiness, startup] = self.shared.results.get_all(&s.id);
                if c.liveness_probe.is_some() && liveness == Some(ProbeResult::Failure) {
                    v.liveness_failed.insert(s.id.clone());
                }
                if c.startup_probe.is_some() {
                    match startup {
                        Some(ProbeResult::Success) => {}
                        Some(ProbeResult::Failure) => {
                            v.startup_failed.insert(s.id.clone());
                            v.not_started.insert(s.id.clone());
                        }
                        _ => {
                            v.not_started.insert(s.id.clone());
                        }
                    }
                }
                if c.readiness_probe.is_some() && readiness == Some(ProbeResult::Success) {
                    ready.insert(s.id.clone());
                }
            }
        }
        (v, ready)
    }
}

#[cfg(test)]
mod tests;
