//! Wiring: builds the agent from resolved settings and runs it until SIGTERM/SIGINT. On a signal
//! the agent stops promptly and leaves pods running, as the kubelet does; a restarted agent
//! adopts them.
//!
//! Besides the sync loop, PLEG and servers, the agent runs the node's managers
//! ([`start_managers`]): the event recorder (served at `/events` on the read-only port), the
//! eviction manager and the node's pressure conditions (`/node/conditions`), image and container
//! GC, and the OOM watcher.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::mpsc;

use crate::cadvisor::names::RuntimeNames;
use crate::cadvisor::{router as cadvisor_router, CadvisorState};
use crate::cm::CgroupManager;
use crate::config::KubeletSettings;
use crate::health::Health;
use crate::images::ImageManager;
use crate::kubelet::{run_sync_loop, Kubelet, KubeletOptions, SyncLoopInputs};
use crate::kuberuntime::RuntimeService;
use crate::metrics::Metrics;
use crate::objects::MemoryObjects;
use crate::pleg::Pleg;
use crate::server;
use crate::sources::{file::spawn_file_source, FILE_SOURCE};
use managers::conditions::NodeConditions;
use managers::EventRecorder;

/// The cgroup filesystem mount point.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// The PLEG relist period.
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// The containerd root: the image filesystem.
pub const IMAGE_FS_PATH: &str = "/var/lib/kubelet-rs/containerd";
/// The housekeeping period (the kubelet's 2 s).
pub const HOUSEKEEPING_PERIOD: Duration = Duration::from_secs(2);

/// Everything the running agent holds, for tests that drive it in-process.
pub struct Agent {
    pub kubelet: Arc<Kubelet>,
    pub healthz_addr: Option<SocketAddr>,
    pub read_only_addr: Option<SocketAddr>,
    pub cadvisor_addr: Option<SocketAddr>,
    /// The monitoring core.
    pub monitor: Arc<collectors::Monitor>,
    /// The node's events.
    pub events: Arc<EventRecorder>,
    /// The node's pressure conditions.
    pub conditions: Arc<NodeConditions>,
    monitor_handle: Option<collectors::monitor::MonitorHandle>,
    managers: Option<Managers>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // The managers' threads may be waiting on a runtime call: let them finish on their own
        // rather than block whoever drops the agent.
        if let Some(m) = self.managers.take() {
            let _ = std::thread::Builder::new()
                .name("managers-stop".into())
                .spawn(move || drop(m));
        }
        if let Some(h) = self.monitor_handle.take() {
            h.stop();
        }
    }
}

/// The running managers; their threads stop when this drops.
pub struct Managers {
    /// The eviction manager and its thread.
    pub eviction: crate::eviction::EvictionHandle,
    _gc: crate::gc::GcLoop,
    _oom: Option<managers::oom::OomWatcher>,
}

/// Where the OOM watcher reads the kernel log.
pub const KMSG_PATH: &str = "/dev/kmsg";

/// Starts the event recorder's consumers: eviction (with node conditions and admission), image
/// and container GC, and the OOM watcher. Call from within the agent's tokio runtime.
#[allow(clippy::too_many_arguments)]
pub fn start_managers(
    settings: &KubeletSettings,
    kl: &Arc<Kubelet>,
    monitor: &Arc<collectors::Monitor>,
    names: Arc<RuntimeNames>,
    channel: tonic::transport::Channel,
    recorder: Arc<EventRecorder>,
    host: &HostPaths,
) -> anyhow::Result<Managers> {
    let handle = tokio::runtime::Handle::current();
    let clock: Arc<dyn managers::Clock> = Arc::new(managers::SystemClock);
    let sink: Arc<dyn managers::EventSink> = recorder;
    let node = &settings.node_name;
    let image_service = Arc::new(crate::gc::CriImages::new(
        kl.runtime.clone(),
        proto::cri::RuntimeClient::new(channel),
        settings.runtime_request_timeout,
        PathBuf::from(IMAGE_FS_PATH),
        handle.clone(),
    ));
    let infra = &settings.pod_infra_container_image;
    let mut keep = vec![infra.clone()];
    if let Ok(tagged) = crate::images::with_default_tag(infra) {
        keep.push(tagged);
    }
    let image_gc = managers::images::ImageGcManager::new(
        node,
        managers::images::ImageGcPolicy {
            high_threshold_percent: settings.image_gc_high_threshold_percent,
            low_threshold_percent: settings.image_gc_low_threshold_percent,
            min_age: settings.image_minimum_gc_age,
            max_age: settings.image_maximum_gc_age,
        },
        keep,
        image_service.clone(),
        sink.clone(),
        clock.clone(),
    );
    let container_gc = managers::containers::ContainerGcManager::new(
        node,
        managers::containers::ContainerGcPolicy::default(),
        Arc::new(crate::gc::CriContainers::new(
            kl.runtime.clone(),
            node,
            settings.pod_logs_dir.clone(),
            handle.clone(),
        )),
        Arc::new(crate::gc::KubeletPodStates(kl.clone())),
        sink.clone(),
        clock.clone(),
    );
    let gc = crate::gc::GcLoop::start(
        node,
        image_gc.clone(),
        image_service,
        container_gc.clone(),
        sink.clone(),
    )
    .context("cannot start garbage collection")?;
    let eviction = crate::eviction::start(
        settings,
        crate::eviction::EvictionDeps {
            kubelet: kl.clone(),
            monitor: monitor.clone(),
            names: names.clone(),
            images: image_gc,
            containers: container_gc,
            events: sink.clone(),
            clock,
            handle,
            imagefs_path: PathBuf::from(IMAGE_FS_PATH),
            proc_root: host.proc_root.clone(),
        },
    )
    .context("cannot start the eviction manager")?;
    let status = kl.status.clone();
    let oom_events = crate::oomwatcher::OomEvents::new(
        node,
        &kl.cgroups.kubepods(),
        sink,
        names,
        Arc::new(move |uid: &str, container_id: &str| {
            let pod = status.pod(uid)?;
            let name = status.status(uid).and_then(|s| {
                s.init_container_statuses
                    .iter()
                    .flatten()
                    .chain(s.container_statuses.iter().flatten())
                    .find(|c| {
                        c.container_id
                            .as_deref()
                            .is_some_and(|id| id.rsplit("://").next() == Some(container_id))
                    })
                    .map(|c| c.name.clone())
            });
            Some((crate::events::pod_ref(&pod), name))
        }),
    );
    let oom = match managers::oom::OomWatcher::start(
        std::path::Path::new(KMSG_PATH),
        false,
        Arc::new(oom_events),
    ) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "OOM events are off");
            None
        }
    };
    Ok(Managers {
        eviction,
        _gc: gc,
        _oom: oom,
    })
}

async fn bind(
    addr: SocketAddr,
    router: axum::Router,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving HTTP");
    tasks.push(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(addr = %local, error = %e, "HTTP server stopped");
        }
    }));
    Ok(local)
}

/// The host paths the agent reads and writes besides its settings; tests and the hollow-node
/// benchmarks point them at fixture trees.
#[derive(Debug, Clone)]
pub struct HostPaths {
    /// The cgroup filesystem mount (`/sys/fs/cgroup`).
    pub cgroup_mount: PathBuf,
    /// procfs (`/proc`).
    pub proc_root: PathBuf,
}

impl Default for HostPaths {
    fn default() -> Self {
        Self {
            cgroup_mount: PathBuf::from(CGROUP_MOUNT),
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Starts every part of the agent and returns once they are running.
pub async fn start(settings: &KubeletSettings) -> anyhow::Result<Agent> {
    start_with(settings, &HostPaths::default()).await
}

/// [`start`] with explicit host paths.
pub async fn start_with(settings: &KubeletSettings, host: &HostPaths) -> anyhow::Result<Agent> {
    if settings.kubeconfig.is_some() {
        bail!("--kubeconfig: API-server mode is not implemented yet; run standalone with --pod-manifest-path");
    }
    if settings.manifest_url.is_some() {
        bail!("--manifest-url: the HTTP manifest source is not implemented yet");
    }
    let node = settings.node_name.clone();
    let metrics = Metrics::new(&node);
    let health = Health::new();
    let socket = proto::cri::socket_path(&settings.container_runtime_endpoint)
        .with_context(|| "--container-runtime-endpoint".to_string())?;
    let channel = proto::cri::lazy_channel(&socket);
    let runtime = RuntimeService::new(
        channel.clone(),
        settings.runtime_request_timeout,
        metrics.clone(),
        &node,
    );
    let images = ImageManager::new(runtime.clone(), settings.serialize_image_pulls);
    let cgroups = CgroupManager::new(&host.cgroup_mount, &settings.cgroup_root)
        .with_context(|| format!("--cgroup-root {}", settings.cgroup_root))?
        .with_metrics(metrics.clone());
    metrics.cgroup_version.set(match cgroups.layout() {
        crate::cm::Layout::V2 => 2,
        // Hybrid hosts count as v1, as for the kubelet (`IsCgroup2UnifiedMode` is false).
        crate::cm::Layout::V1 { .. } => 1,
    });
    let proc_root = host.proc_root.as_path();
    let (cpu_milli, memory) = crate::nodeinfo::capacity(proc_root);
    let opts = KubeletOptions {
        node_name: node.clone(),
        root_dir: settings.root_dir.clone(),
        log_root: settings.pod_logs_dir.clone(),
        resolv_conf: settings.resolv_conf.clone().unwrap_or_default(),
        sync_frequency: settings.sync_frequency,
        housekeeping_period: HOUSEKEEPING_PERIOD,
        pod_pids_limit: settings.pod_pids_limit,
        max_pods: settings.max_pods as usize,
        host_ips: crate::nodeinfo::host_ips(settings.node_ip, proc_root),
        node_cpu_milli: cpu_milli,
        node_memory: memory,
        pod_infra_container_image: settings.pod_infra_container_image.clone(),
    };
    std::fs::create_dir_all(&settings.root_dir)
        .with_context(|| format!("cannot create --root-dir {}", settings.root_dir.display()))?;
    let kl = Kubelet::new(
        opts,
        runtime.clone(),
        images,
        cgroups,
        metrics.clone(),
        health.clone(),
        Arc::new(MemoryObjects::default()),
    );
    kl.initialize().await.map_err(anyhow::Error::msg)?;

    let mut tasks = Vec::new();
    let (updates_tx, updates_rx) = mpsc::channel(64);
    let mut expected = Vec::new();
    if let Some(path) = &settings.pod_manifest_path {
        tasks.push(spawn_file_source(
            path.clone(),
            node.clone(),
            settings.file_check_frequency,
            updates_tx.clone(),
        ));
        expected.push(FILE_SOURCE);
    } else {
        tracing::warn!("no pod source configured (--pod-manifest-path): the node runs no pods");
    }
    // The monitoring core runs whatever the ports: eviction and the stats endpoints read it.
    let monitor_config = collectors::MonitorConfig {
        cgroup_root: host.cgroup_mount.clone(),
        proc_root: host.proc_root.clone(),
        housekeeping_interval: settings.housekeeping_interval,
        fs_paths: vec![
            (collectors::model::fs_role::ROOT, settings.root_dir.clone()),
            (
                collectors::model::fs_role::IMAGE,
                PathBuf::from(IMAGE_FS_PATH),
            ),
            (
                collectors::model::fs_role::LOG,
                settings.pod_logs_dir.clone(),
            ),
        ],
        // The kubelet's cAdvisor includes the `process` metrics: descriptor and socket counts
        // (counted on slow passes only).
        process_fds: true,
        ..Default::default()
    };
    let monitor = tokio::task::spawn_blocking(move || collectors::Monitor::new(monitor_config))
        .await?
        .context("cannot start the monitoring core")?;
    let monitor_handle = monitor
        .start()
        .context("cannot start the monitoring core")?;
    let names = Arc::new(RuntimeNames::new("containerd"));
    let (pleg_tx, pleg_rx) = mpsc::channel(4096);
    tasks.push(tokio::spawn(
        Pleg::new(
            runtime.clone(),
            metrics.clone(),
            health.clone(),
            RELIST_PERIOD,
            pleg_tx,
        )
        .with_names(names.clone(), &settings.pod_infra_container_image)
        .run(),
    ));
    tasks.push(tokio::spawn(runtime_status_loop(
        runtime.clone(),
        health.clone(),
    )));
    let recorder = EventRecorder::new(
        &node,
        managers::events::DEFAULT_CAPACITY,
        Arc::new(managers::SystemClock),
    );
    kl.events
        .set_recorder(Arc::new(crate::events::PodEvents(recorder.clone())));
    let managers = start_managers(
        settings,
        &kl,
        &monitor,
        names.clone(),
        channel,
        recorder.clone(),
        host,
    )?;
    let conditions = managers.eviction.conditions.clone();

    let healthz_addr = if settings.healthz_port != 0 {
        let addr = SocketAddr::new(settings.healthz_bind_address, settings.healthz_port);
        Some(bind(addr, server::healthz_router(health.clone()), &mut tasks).await?)
    } else {
        None
    };
    let read_only_addr = if settings.read_only_port != 0 {
        let addr = SocketAddr::new(settings.address, settings.read_only_port);
        let state = server::ApiState {
            kubelet: kl.clone(),
            status: kl.status.clone(),
            metrics: metrics.clone(),
            monitor: monitor.clone(),
            names: names.clone(),
        };
        let router = server::readonly_router(state, health.clone())
            .merge(crate::events::router(recorder.clone()))
            .merge(crate::eviction::router(conditions.clone()));
        let router = server::instrument(router, metrics.clone(), "readonly");
        Some(bind(addr, router, &mut tasks).await?)
    } else {
        None
    };
    let cadvisor_addr = if settings.cadvisor_port != 0 {
        let state = CadvisorState::new(monitor.clone()).with_namer(names.clone());
        let addr = SocketAddr::new(settings.cadvisor_bind_address, settings.cadvisor_port);
        Some(bind(addr, cadvisor_router(state), &mut tasks).await?)
    } else {
        None
    };
    tasks.push(tokio::spawn(run_sync_loop(
        kl.clone(),
        SyncLoopInputs {
            updates: updates_rx,
            pleg: pleg_rx,
            expected_sources: expected,
        },
    )));
    drop(updates_tx);
    Ok(Agent {
        kubelet: kl,
        healthz_addr,
        read_only_addr,
        cadvisor_addr,
        monitor,
        events: recorder,
        conditions,
        monitor_handle: Some(monitor_handle),
        managers: Some(managers),
        tasks,
    })
}

/// Polls the runtime's own conditions every 5 s (the kubelet's `updateRuntimeUp`).
async fn runtime_status_loop(runtime: RuntimeService, health: Health) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        match runtime.status().await {
            Ok(s) => {
                let conds = s.status.map(|s| s.conditions).unwrap_or_default();
                let net = conds.iter().find(|c| c.r#type == "NetworkReady");
                health.set_network_error(
                    net.filter(|c| !c.status)
                        .map(|c| format!("{}: {}", c.reason, c.message)),
                );
            }
            Err(e) => health.runtime_failed(e.to_string()),
        }
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(settings: KubeletSettings) -> anyhow::Result<()> {
    let agent = start(&settings).await?;
    tracing::info!(node = %settings.node_name, "kubelet-rs started");
    wait_for_signal().await;
    tracing::info!("signal received: stopping (pods keep running)");
    drop(agent);
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install SIGTERM handler");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
