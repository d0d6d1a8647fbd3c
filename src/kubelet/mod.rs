//! The kubelet proper: the shared context every pod worker uses ([`Kubelet`]), the sync loop
//! that turns source changes and PLEG events into work for pod workers, and housekeeping that
//! tears down pods no source claims (for example pods whose manifest vanished while the agent
//! was down) and hands their leftover pod cgroups to the container manager.
//!
//! Housekeeping never runs on the loop itself: each tick posts a request to a housekeeping
//! task (skipped while the previous pass still runs), which lists the runtime's sandboxes and
//! starts teardowns; orphaned pod cgroups are destroyed on the container manager's own thread
//! ([`crate::cm::manager`]), with a backoff per cgroup. A stuck cgroup or a slow runtime call
//! therefore never delays a pod's start.
//!
//! - `sync`: one pod's sync (`SyncPod`), container start with backoff, and termination.
//! - `pod_workers`: one task per pod serializing that pod's syncs.
//! - `poddirs`: `<root-dir>/pods/<uid>` and the kubelet-managed files in it.

pub mod pod_workers;
pub mod poddirs;
pub mod sync;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backoff::Backoff;
use crate::cm::{ActivePods, ContainerManager};
use crate::fieldpath::PodRuntimeFacts;
use crate::health::Health;
use crate::images::ImageManager;
use crate::kuberuntime::RuntimeService;
use crate::lifecycle::{Events, HookRunner};
use crate::metrics::Metrics;
use crate::objects::ObjectSource;
use crate::pleg::PlegEvent;
use crate::podconfig::{uid_of, PodChange, PodConfig};
use crate::prober::http::HttpClient;
use crate::prober::probe::Prober;
use crate::prober::ProberManager;
use crate::sources::PodUpdate;
use crate::status::StatusManager;
use crate::volumemanager::{VolumeManager, VolumeOptions};
use pod_workers::{PodWorkers, WorkKind};

/// What the sync loop needs from the configuration.
#[derive(Debug, Clone)]
pub struct KubeletOptions {
    pub node_name: String,
    /// `--root-dir`; pod directories live in `<root-dir>/pods`.
    pub root_dir: PathBuf,
    /// `/var/log/pods`.
    pub log_root: PathBuf,
    /// Pod DNS: cluster nameservers and domain, the host's resolver file.
    pub dns: crate::kuberuntime::dns::DnsSettings,
    /// CPU limits as CFS quota, for containers and pod cgroups.
    pub cfs: crate::cm::CfsQuota,
    /// `seccompDefault` and the `Localhost` profile root.
    pub seccomp: crate::kuberuntime::sandbox::SeccompPolicy,
    /// The crash-loop backoff's first delay and cap.
    pub crash_loop_backoff: (Duration, Duration),
    /// How long a measured volume usage is reused (`volumeStatsAggPeriod`).
    pub volume_stats_agg_period: Duration,
    pub sync_frequency: Duration,
    pub housekeeping_period: Duration,
    pub pod_pids_limit: i64,
    pub max_pods: usize,
    pub host_ips: Vec<String>,
    /// Node capacity for downward-API defaults and OOM scores.
    pub node_cpu_milli: i64,
    pub node_memory: i64,
    pub pod_infra_container_image: String,
}

/// The shared context of the sync loop and every pod worker.
pub struct Kubelet {
    pub opts: KubeletOptions,
    pub runtime: RuntimeService,
    pub images: ImageManager,
    /// The node's cgroups: pod cgroups, QoS tiers, node allocatable, orphan cleanup.
    pub cgroups: ContainerManager,
    pub status: StatusManager,
    pub metrics: Metrics,
    pub health: Health,
    pub objects: Arc<dyn ObjectSource>,
    /// Startup, liveness and readiness probes; their verdicts feed each sync.
    pub prober: ProberManager,
    /// postStart and preStop hooks.
    pub hooks: HookRunner,
    /// Where events go (logged until an event recorder is set).
    pub events: Events,
    /// Pod volumes: set up before containers start, torn down after they stop.
    pub volumes: Arc<VolumeManager>,
    /// Container restart backoff, keyed like the kubelet's stable container key.
    pub crash_backoff: Mutex<Backoff>,
    /// Runtime name for container IDs (`containerd://...`).
    pub runtime_name: Mutex<String>,
    /// Requests from managers (eviction, prober) to the sync loop.
    commands: mpsc::UnboundedSender<Command>,
    command_rx: Mutex<Option<mpsc::UnboundedReceiver<Command>>>,
    grace_overrides: Mutex<HashMap<String, i64>>,
    /// Set once every pod source has reported (GC may then remove what no source wants).
    sources_ready: std::sync::atomic::AtomicBool,
    /// Admission checks run before a pod starts (the eviction manager's, under pressure).
    admit_handlers: Mutex<Vec<AdmitHandler>>,
    /// Device plugins' devices, when the device manager runs: their Allocate answers go into
    /// each container's config.
    pub devices: std::sync::OnceLock<crate::cm::devicemanager::DeviceManager>,
}

/// An admission check: `Err((reason, message))` refuses the pod, which then fails with them.
pub type AdmitHandler = Arc<dyn Fn(&Pod) -> Result<(), (String, String)> + Send + Sync>;

/// A request to the sync loop from outside it.
#[derive(Debug, Clone)]
pub enum Command {
    /// Sync this pod now.
    SyncPod(String),
}

impl Kubelet {
    pub fn new(
        opts: KubeletOptions,
        runtime: RuntimeService,
        images: ImageManager,
        cgroups: ContainerManager,
        metrics: Metrics,
        health: Health,
        objects: Arc<dyn ObjectSource>,
    ) -> Arc<Self> {
        let (commands, command_rx) = mpsc::unbounded_channel();
        let events = Events::default();
        let http = HttpClient::new();
        let wake = commands.clone();
        let prober = ProberManager::new(
            Arc::new(Prober {
                runtime: Some(runtime.clone()),
                http: http.clone(),
            }),
            events.clone(),
            Arc::new(move |uid: &str| {
                let _ = wake.send(Command::SyncPod(uid.to_string()));
            }),
        );
        // Every probe execution feeds `/metrics/probes`.
        prober.set_observer(Arc::new(metrics.probes.clone()));
        let hooks = HookRunner {
            runtime: Some(runtime.clone()),
            http,
        };
        let volumes = Arc::new(VolumeManager::new(
            VolumeOptions {
                pods_root: opts.root_dir.join("pods"),
                mountinfo: crate::volumemanager::mount::MOUNTINFO.into(),
                resync_period: opts
                    .sync_frequency
                    .min(crate::volumemanager::DEFAULT_RESYNC),
                metrics: Some(metrics.clone()),
            },
            objects.clone(),
            events.clone(),
        ));
        // An object a pod uses changed: its volumes are rewritten and the pod synced (a
        // container waiting for a missing Secret or key starts).
        let wake = commands.clone();
        let refresh = Arc::downgrade(&volumes);
        objects.set_on_change(Arc::new(move |uid: &str| {
            if let Some(v) = refresh.upgrade() {
                v.resync_soon();
            }
            let _ = wake.send(Command::SyncPod(uid.to_string()));
        }));
        let crash_backoff = Backoff::new(opts.crash_loop_backoff.0, opts.crash_loop_backoff.1);
        Arc::new(Self {
            opts,
            runtime,
            images,
            cgroups,
            status: StatusManager::new(),
            metrics,
            health,
            objects,
            prober,
            hooks,
            events,
            volumes,
            crash_backoff: Mutex::new(crash_backoff),
            runtime_name: Mutex::new("containerd".into()),
            commands,
            command_rx: Mutex::new(Some(command_rx)),
            grace_overrides: Mutex::new(HashMap::new()),
            sources_ready: std::sync::atomic::AtomicBool::new(false),
            admit_handlers: Mutex::new(Vec::new()),
            devices: std::sync::OnceLock::new(),
        })
    }

    /// Whether every pod source has reported at least once.
    pub fn sources_ready(&self) -> bool {
        self.sources_ready
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds an admission check run before each new pod starts.
    pub fn add_admit_handler(&self, h: AdmitHandler) {
        self.admit_handlers.lock().push(h);
    }

    /// Asks the sync loop to sync a pod now (after a probe result, say).
    pub fn request_sync(&self, uid: &str) {
        let _ = self.commands.send(Command::SyncPod(uid.to_string()));
    }

    /// Fails a pod for good (the eviction manager's `KillPodFunc`): its phase becomes `Failed`
    /// with `reason` and `message` and the `DisruptionTarget` condition (reason
    /// `TerminationByKubelet`, as the kubelet's eviction manager sets it), and its worker stops
    /// every container, honouring `grace_override` (seconds) when given. Returns false if the
    /// pod is unknown.
    pub fn evict_pod(
        &self,
        uid: &str,
        reason: &str,
        message: &str,
        grace_override: Option<i64>,
    ) -> bool {
        let condition = k8s_openapi::api::core::v1::PodCondition {
            type_: crate::status::generate::DISRUPTION_TARGET.into(),
            status: "True".into(),
            reason: Some("TerminationByKubelet".into()),
            message: Some(message.into()),
            last_transition_time: Some(crate::nodestatus::now()),
            ..Default::default()
        };
        self.fail_pod(uid, reason, message, Some(condition), grace_override)
    }

    /// [`Kubelet::evict_pod`] that also sets `condition` on the pod's status (the kubelet's
    /// `TerminatePodOptions.Conditions`: a `DisruptionTarget` condition, kept by every later
    /// status of the pod).
    pub fn fail_pod(
        &self,
        uid: &str,
        reason: &str,
        message: &str,
        condition: Option<k8s_openapi::api::core::v1::PodCondition>,
        grace_override: Option<i64>,
    ) -> bool {
        let Some(mut status) = self
            .status
            .status(uid)
            .or_else(|| self.status.pod(uid).map(|_| PodStatus::default()))
        else {
            return false;
        };
        status.phase = Some("Failed".into());
        status.reason = Some(reason.to_string());
        status.message = Some(message.to_string());
        if let Some(c) = condition {
            let conditions = status.conditions.get_or_insert_with(Vec::new);
            conditions.retain(|x| x.type_ != c.type_);
            conditions.insert(0, c);
        }
        if let Some(g) = grace_override {
            self.grace_overrides.lock().insert(uid.to_string(), g);
        }
        self.status.set_status(uid, status);
        self.request_sync(uid);
        true
    }

    /// Stops every running or created container of pod `uid` with `grace` seconds, and returns
    /// when they have stopped (the kubelet's `killPodNow` for evictions and node shutdown; the
    /// pod's worker stops the sandbox).
    pub async fn stop_running_containers(&self, uid: &str, grace: i64) {
        let containers = match self.runtime.list_containers(Some(uid)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(uid, error = %e, "cannot list the pod's containers to stop them");
                return;
            }
        };
        let running = containers.into_iter().filter(|c| {
            c.state == proto::cri::ContainerState::ContainerRunning as i32
                || c.state == proto::cri::ContainerState::ContainerCreated as i32
        });
        let stops = running.map(|c| async move {
            if let Err(e) = self.runtime.stop_container(&c.id, grace).await {
                if !e.is_not_found() {
                    tracing::warn!(container = %c.id, error = %e, "cannot stop container");
                }
            }
        });
        futures_util::future::join_all(stops).await;
    }

    /// A grace period set by [`Kubelet::evict_pod`], if any.
    pub fn grace_override(&self, uid: &str) -> Option<i64> {
        self.grace_overrides.lock().get(uid).copied()
    }

    /// The pods the node is running (desired, not terminating), with their current status.
    pub fn active_pods(&self) -> Vec<Pod> {
        self.status.pods()
    }

    /// [`Self::active_pods`] less those that reached `Succeeded` or `Failed` (the kubelet's
    /// `GetActivePods`, which the device manager and PodResources go by).
    pub fn running_pods(&self) -> Vec<Pod> {
        self.active_pods()
            .into_iter()
            .filter(|p| {
                !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .collect()
    }

    pub fn pods_root(&self) -> PathBuf {
        self.opts.root_dir.join("pods")
    }

    pub fn facts(&self, pod_ips: Vec<String>) -> PodRuntimeFacts {
        PodRuntimeFacts {
            pod_ips,
            host_ips: self.opts.host_ips.clone(),
            node_cpu_milli: self.opts.node_cpu_milli,
            node_memory: self.opts.node_memory,
            node_ephemeral_storage: 0,
        }
    }

    /// Sets up the node's cgroups (`kubepods` with node allocatable, reserved cgroups, QoS
    /// tiers; a failure there is fatal) and starts the container manager's thread, then learns
    /// the runtime's name. Runtime errors are reported, not fatal: the runtime may come up later.
    pub async fn initialize(&self) -> Result<(), String> {
        let cm = self.cgroups.clone();
        let enforced = tokio::task::spawn_blocking(move || cm.setup())
            .await
            .map_err(|e| format!("cannot set up the node's cgroups: {e}"))?
            .map_err(|e| format!("cannot set up the node's cgroups: {e}"))?;
        let pods = NodePods {
            status: self.status.clone(),
            pods_root: self.pods_root(),
        };
        self.cgroups
            .start(Arc::new(pods), enforced)
            .map_err(|e| e.to_string())?;
        std::fs::create_dir_all(self.pods_root())
            .map_err(|e| format!("cannot create {}: {e}", self.pods_root().display()))?;
        match self.runtime.version().await {
            Ok(v) => {
                tracing::info!(runtime = %v.runtime_name, version = %v.runtime_version, api = %v.runtime_api_version, "connected to container runtime");
                *self.runtime_name.lock() = v.runtime_name;
                self.health.runtime_ok();
            }
            Err(e) => {
                tracing::error!(error = %e, "container runtime not reachable; will keep retrying");
                self.health.runtime_failed(e.to_string());
            }
        }
        if let Err(e) = self
            .images
            .ensure_present(&self.opts.pod_infra_container_image)
            .await
        {
            tracing::warn!(image = %self.opts.pod_infra_container_image, error = %e, "cannot pre-pull the sandbox image");
        }
        Ok(())
    }
}

/// Inputs of the sync loop.
pub struct SyncLoopInputs {
    pub updates: mpsc::Receiver<PodUpdate>,
    /// One batch per relist with changes.
    pub pleg: mpsc::Receiver<Vec<PlegEvent>>,
    /// Sources that must report before orphaned runtime pods are torn down.
    pub expected_sources: Vec<&'static str>,
}

/// The sync loop (`syncLoop`): merges sources, dispatches work to pod workers, and runs
/// housekeeping. Runs until `updates` closes.
pub async fn run_sync_loop(kl: Arc<Kubelet>, mut inputs: SyncLoopInputs) {
    let mut config = PodConfig::new(inputs.expected_sources.iter().copied());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<String>();
    let mut workers = PodWorkers::new(kl.clone(), done_tx);
    // Pods re-added while their previous incarnation was still terminating.
    let mut readd: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut housekeeper = Housekeeper::spawn(kl.clone());
    let mut commands = kl
        .command_rx
        .lock()
        .take()
        .expect("the sync loop runs once per Kubelet");
    // Object-backed volumes are refreshed on their own timer, off the loop.
    let volume_refresh = tokio::spawn(kl.volumes.clone().run());
    let mut housekeeping = tokio::time::interval(kl.opts.housekeeping_period);
    housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        kl.health.sync_loop_tick();
        tokio::select! {
            update = inputs.updates.recv() => {
                let Some(update) = update else { break };
                for change in config.apply(update) {
                    handle_change(&kl, &mut workers, &mut readd, change);
                }
            }
            Some(events) = inputs.pleg.recv() => {
                // One wake per pod per relist, however many of its objects changed.
                let mut woken = HashSet::new();
                for ev in &events {
                    if woken.insert(ev.pod_uid.as_str()) {
                        workers.send(&ev.pod_uid, WorkKind::Sync);
                    }
                }
            }
            Some(cmd) = commands.recv() => match cmd {
                Command::SyncPod(uid) => workers.send(&uid, WorkKind::Sync),
            },
            Some(uid) = done_rx.recv() => {
                workers.finished(&uid);
                kl.status.remove(&uid);
                kl.cgroups.pods_changed();
                if let Some(pod) = readd.remove(&uid) {
                    // Removed and added again with the same UID while it was stopping.
                    kl.metrics.restarted_pods_total.with_label_values(&["true"]).inc();
                    start_pod(&kl, &mut workers, pod);
                }
            }
            _ = housekeeping.tick() => {
                record_pod_counts(&kl, &config, &workers, housekeeper.orphans());
                kl.images.gc();
                kl.crash_backoff.lock().gc(tokio::time::Instant::now());
                if config.sources_ready() {
                    kl.sources_ready.store(true, std::sync::atomic::Ordering::Relaxed);
                    let desired: HashSet<String> = config.pods().into_keys().collect();
                    housekeeper.request(&kl, desired);
                }
            }
        }
    }
    housekeeper.stop();
    volume_refresh.abort();
    tracing::info!("pod sources closed; sync loop stopping");
}

/// The kubelet's `rejectPod`: a warning event with the reason and message, and the pod Failed
/// with that reason, the message prefixed "Pod was rejected: " and its QoS class kept.
fn reject_pod(kl: &Arc<Kubelet>, pod: Arc<Pod>, uid: &str, reason: String, message: String) {
    tracing::warn!(pod = %pod_ref(&pod), %reason, "rejecting pod: {message}");
    kl.events.warning(&pod, &reason, &message);
    let qos = crate::cm::qos::pod_qos_class(&pod).as_str().to_string();
    kl.status.set_pod(uid, pod);
    kl.status.set_status(
        uid,
        PodStatus {
            phase: Some("Failed".into()),
            reason: Some(reason),
            message: Some(format!("Pod was rejected: {message}")),
            qos_class: Some(qos),
            ..Default::default()
        },
    );
}

fn start_pod(kl: &Arc<Kubelet>, workers: &mut PodWorkers, pod: Arc<Pod>) {
    let uid = uid_of(&pod);
    // A pod the API already has as Succeeded or Failed (before a restart, say) never runs
    // again and is not admitted again: its worker takes over the terminal status.
    if let Some(st) = pod
        .status
        .as_ref()
        .filter(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
    {
        if kl.status.status(&uid).is_none() {
            kl.status.set_pod(&uid, pod.clone());
            kl.status.set_status(&uid, st.clone());
        }
        workers.start(pod);
        return;
    }
    let active = workers.active_count();
    if active >= kl.opts.max_pods {
        let message = format!(
            "Node didn't have enough resource: pods, requested: 1, used: {active}, capacity: {}",
            kl.opts.max_pods
        );
        reject_pod(kl, pod, &uid, "OutOfpods".into(), message);
        return;
    }
    let handlers = kl.admit_handlers.lock().clone();
    for h in handlers {
        if let Err((reason, message)) = h(&pod) {
            reject_pod(kl, pod, &uid, reason, message);
            return;
        }
    }
    kl.status.set_pod(&uid, pod.clone());
    kl.cgroups.pods_changed();
    let containers = pod.spec.as_ref().map_or(0, |s| s.containers.len());
    workers.start(pod);
    kl.metrics
        .containers_per_pod_count
        .observe(containers as f64);
}

/// The pod counts the kubelet's housekeeping records (`kubelet_desired_pods`,
/// `kubelet_active_pods`, `kubelet_mirror_pods`, `kubelet_working_pods`).
fn record_pod_counts(kl: &Kubelet, config: &PodConfig, workers: &PodWorkers, orphans: usize) {
    let desired = config.pods();
    let terminal = |uid: &String| {
        let phase = kl.status.status(uid).and_then(|s| s.phase);
        matches!(phase.as_deref(), Some("Failed" | "Succeeded"))
    };
    kl.metrics.set_pod_counts(crate::metrics::PodCounts {
        desired: desired.len(),
        active: desired.keys().filter(|uid| !terminal(uid)).count(),
        syncing: workers.active_count(),
        terminating: workers.terminating_count(),
        orphans,
    });
}

fn handle_change(
    kl: &Arc<Kubelet>,
    workers: &mut PodWorkers,
    readd: &mut HashMap<String, Arc<Pod>>,
    change: PodChange,
) {
    match change {
        PodChange::Add(pod) => {
            let uid = uid_of(&pod);
            tracing::info!(pod = %pod_ref(&pod), "pod added");
            kl.objects.register_pod(&pod);
            if workers.is_terminating(&uid) {
                readd.insert(uid, pod);
            } else if workers.exists(&uid) {
                kl.status.set_pod(&uid, pod.clone());
                workers.send(&uid, WorkKind::Update(pod));
            } else {
                start_pod(kl, workers, pod);
            }
        }
        PodChange::Update(pod) => {
            let uid = uid_of(&pod);
            tracing::info!(pod = %pod_ref(&pod), "pod updated");
            kl.objects.register_pod(&pod);
            if workers.is_terminating(&uid) {
                readd.insert(uid, pod);
            } else if workers.exists(&uid) {
                kl.status.set_pod(&uid, pod.clone());
                workers.send(&uid, WorkKind::Update(pod));
            } else {
                start_pod(kl, workers, pod);
            }
        }
        PodChange::Remove(pod) => {
            let uid = uid_of(&pod);
            tracing::info!(pod = %pod_ref(&pod), "pod removed");
            kl.objects.unregister_pod(&pod);
            readd.remove(&uid);
            if workers.exists(&uid) {
                workers.send(&uid, WorkKind::Terminate);
            } else {
                kl.status.remove(&uid);
            }
        }
    }
}

/// `namespace/name` for logs.
pub fn pod_ref(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The housekeeping task's handle in the sync loop: a request per tick, dropped while a pass
/// still runs, and a new task if the old one died.
struct Housekeeper {
    tx: mpsc::Sender<HashSet<String>>,
    task: JoinHandle<()>,
    /// Runtime pods being torn down because no source claims them, as of the last pass.
    orphans: Arc<std::sync::atomic::AtomicUsize>,
}

impl Housekeeper {
    fn spawn(kl: Arc<Kubelet>) -> Self {
        let (tx, rx) = mpsc::channel(1);
        let orphans = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let task = tokio::spawn(run_housekeeping(kl, rx, orphans.clone()));
        Self { tx, task, orphans }
    }

    /// Orphaned runtime pods still being torn down (`kubelet_working_pods`' `runtime_only`).
    fn orphans(&self) -> usize {
        self.orphans.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Posts a pass over `desired` (the UIDs the sources want). Never waits.
    fn request(&mut self, kl: &Arc<Kubelet>, desired: HashSet<String>) {
        match self.tx.try_send(desired) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::debug!("previous housekeeping pass still running; skipping this tick");
            }
            Err(mpsc::error::TrySendError::Closed(desired)) => {
                tracing::error!("housekeeping task stopped; restarting it");
                *self = Self::spawn(kl.clone());
                let _ = self.tx.try_send(desired);
            }
        }
    }

    fn stop(self) {
        self.task.abort();
    }
}

/// The housekeeping task: one pass per request, off the sync loop.
async fn run_housekeeping(
    kl: Arc<Kubelet>,
    mut rx: mpsc::Receiver<HashSet<String>>,
    count: Arc<std::sync::atomic::AtomicUsize>,
) {
    let mut orphans: HashMap<String, JoinHandle<()>> = HashMap::new();
    while let Some(desired) = rx.recv().await {
        orphans.retain(|_, h| !h.is_finished());
        cleanup_orphans(&kl, &desired, &mut orphans).await;
        count.store(orphans.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// Tears down runtime pods that no source wants and the node does not know, then hands the
/// container manager the UIDs whose pod cgroups must stay (the rest are orphans it destroys).
/// The node's pods are read live from the status manager after the runtime was listed, so a pod
/// started meanwhile is never taken for an orphan.
async fn cleanup_orphans(
    kl: &Arc<Kubelet>,
    desired: &HashSet<String>,
    orphans: &mut HashMap<String, JoinHandle<()>>,
) {
    let sandboxes = match kl.runtime.list_pod_sandboxes(None).await {
        Ok(s) => s,
        // Without the runtime's view no cgroup can be judged an orphan either.
        Err(_) => return,
    };
    let mut keep: HashSet<String> = desired.clone();
    for sb in sandboxes {
        let id = crate::kuberuntime::labels::pod_identity(&sb.labels);
        if id.uid.is_empty() || !keep.insert(id.uid.clone()) {
            continue;
        }
        if kl.status.pod(&id.uid).is_some() || orphans.contains_key(&id.uid) {
            continue;
        }
        tracing::info!(pod = %format!("{}/{}", id.namespace, id.name), uid = %id.uid, "tearing down pod that no source claims");
        let kl2 = kl.clone();
        let uid = id.uid.clone();
        orphans.insert(
            uid,
            tokio::spawn(async move {
                sync::teardown_orphan(&kl2, &id).await;
            }),
        );
    }
    keep.extend(orphans.keys().cloned());
    kl.cgroups.housekeep(keep);
}

/// The node's pods as the container manager sees them: the status manager's, and their
/// volume directories under `<root-dir>/pods`.
struct NodePods {
    status: StatusManager,
    pods_root: PathBuf,
}

impl ActivePods for NodePods {
    fn active_pods(&self) -> Vec<Pod> {
        self.status.pods()
    }

    fn knows(&self, uid: &str) -> bool {
        self.status.pod(uid).is_some()
    }

    /// `<root-dir>/pods/<uid>/volumes/<plugin>/<name>` on disk (the kubelet's
    /// `getPodVolumePathListFromDisk`); called on the container manager's thread.
    fn volumes_exist(&self, uid: &str) -> bool {
        let volumes =
            poddirs::pod_dir(&self.pods_root, uid).join(crate::volumemanager::VOLUMES_DIR);
        std::fs::read_dir(volumes)
            .into_iter()
            .flatten()
            .flatten()
            .any(|plugin| {
                std::fs::read_dir(plugin.path())
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(false)
            })
    }
}
