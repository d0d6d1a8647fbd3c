//! Wiring: builds the agent from resolved settings and runs it until SIGTERM/SIGINT. On a signal
//! the agent stops promptly and leaves pods running, as the kubelet does; a restarted agent
//! adopts them.
//!
//! Besides the sync loop, PLEG and servers, the agent runs the node's managers
//! ([`start_managers`]): the event recorder (served at `/events` on the read-only port), the
//! eviction manager and the node's pressure conditions (`/node/conditions`), image and container
//! GC, and the OOM watcher; and graceful node shutdown when configured.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::mpsc;

use crate::cadvisor::names::RuntimeNames;
use crate::cadvisor::{router as cadvisor_router, CadvisorState};
use crate::cm::node::{task_max, Enforcement, NodeConfig, NodeResources};
use crate::cm::{CgroupManager, ContainerManager};
use crate::config::KubeletSettings;
use crate::health::Health;
use crate::images::ImageManager;
use crate::kubelet::{run_sync_loop, Kubelet, KubeletOptions, SyncLoopInputs};
use crate::kuberuntime::dns::DnsSettings;
use crate::kuberuntime::sandbox::SeccompPolicy;
use crate::kuberuntime::RuntimeService;
use crate::metrics::Metrics;
use crate::objects::api::ApiObjects;
use crate::objects::{MemoryObjects, ObjectSource};
use crate::pleg::Pleg;
use crate::server;
use crate::sources::url::spawn_url_source;
use crate::sources::{file::spawn_file_source, FILE_SOURCE, HTTP_SOURCE};
use managers::conditions::NodeConditions;
use managers::EventRecorder;

/// The cgroup filesystem mount point.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";
/// The PLEG relist period.
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);
/// The containerd root: the image filesystem.
pub const IMAGE_FS_PATH: &str = "/var/lib/kubelet-rs/containerd";

/// Everything the running agent holds, for tests that drive it in-process.
pub struct Agent {
    pub kubelet: Arc<Kubelet>,
    pub healthz_addr: Option<SocketAddr>,
    pub read_only_addr: Option<SocketAddr>,
    /// The authenticated kubelet API (`--port`), when `enableServer`.
    pub server_addr: Option<SocketAddr>,
    pub cadvisor_addr: Option<SocketAddr>,
    /// The monitoring core.
    pub monitor: Arc<collectors::Monitor>,
    /// The node's events.
    pub events: Arc<EventRecorder>,
    /// The node's pressure conditions.
    pub conditions: Arc<NodeConditions>,
    /// The API-server client (`--kubeconfig`); `None` standalone.
    pub api: Option<kube::Client>,
    monitor_handle: Option<collectors::monitor::MonitorHandle>,
    managers: Option<Managers>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.kubelet.cgroups.stop();
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
    // API-server mode: the client is built here; the node, pod and object work that uses it
    // is wired below.
    let api = match &settings.kubeconfig {
        Some(path) => Some({
            if let Some(bootstrap) = &settings.bootstrap_kubeconfig {
                crate::apiclient::bootstrap::ensure(
                    path,
                    bootstrap,
                    &settings.cert_dir,
                    &settings.node_name,
                )
                .await?;
            }

            crate::apiclient::connect_with(
                path,
                settings.api_node.kube_api_qps,
                settings.api_node.kube_api_burst,
            )
            .await?
        }),
        None => None,
    };
    for w in &settings.warnings {
        tracing::warn!("{w}");
    }
    check_swap(&host.proc_root, settings.fail_swap_on).await?;
    if settings.protect_kernel_defaults {
        check_kernel_defaults(&host.proc_root).await?;
    }
    let node = settings.node_name.clone();
    let metrics = Metrics::new(&node);
    let health = Health::new();
    let socket = proto::cri::socket_path(&settings.container_runtime_endpoint)
        .with_context(|| "--container-runtime-endpoint".to_string())?;
    let channel = proto::cri::lazy_channel(&socket);
    let mut runtime = RuntimeService::new(
        channel.clone(),
        settings.runtime_request_timeout,
        metrics.clone(),
        &node,
    );
    if settings.image_service_endpoint != settings.container_runtime_endpoint {
        let socket = proto::cri::socket_path(&settings.image_service_endpoint)
            .with_context(|| "--image-service-endpoint".to_string())?;
        runtime = runtime.with_image_channel(proto::cri::lazy_channel(&socket));
    }
    let mut images = ImageManager::new(runtime.clone(), settings.serialize_image_pulls);
    if let (false, Some(n)) = (
        settings.serialize_image_pulls,
        settings.max_parallel_image_pulls,
    ) {
        images = images.with_max_parallel_pulls(n as usize);
    }
    let cgroups = container_manager(settings, host, &metrics).await?;
    metrics
        .cgroup_version
        .set(match cgroups.cgroups().layout() {
            crate::cm::Layout::V2 { .. } => 2,
            // Hybrid hosts count as v1, as for the kubelet (`IsCgroup2UnifiedMode` is false).
            crate::cm::Layout::V1 { .. } => 1,
        });
    if settings.fail_cgroup_v1
        && !matches!(cgroups.cgroups().layout(), crate::cm::Layout::V2 { .. })
    {
        bail!("kubelet is configured to not run on a host using cgroup v1. cgroup v1 support is in maintenance mode");
    }
    let proc_root = host.proc_root.as_path();
    let (cpu_milli, memory) = crate::nodeinfo::capacity(proc_root);
    let opts = kubelet_options(settings, proc_root, cpu_milli, memory);
    check_host_dns(&opts.dns).await;
    if let Some(cidr) = &settings.pod_cidr {
        // As the kubelet: a runtime that cannot take it is logged, not fatal.
        match runtime.update_runtime_config(cidr).await {
            Ok(()) => tracing::info!(pod_cidr = %cidr, "pod CIDR given to the runtime"),
            Err(e) => {
                tracing::warn!(pod_cidr = %cidr, error = %e, "cannot give the pod CIDR to the runtime")
            }
        }
    }
    std::fs::create_dir_all(&settings.root_dir)
        .with_context(|| format!("cannot create --root-dir {}", settings.root_dir.display()))?;
    // API-server mode (K3): Secrets and ConfigMaps come from the API server, one watch per
    // object a pod on this node references; standalone, there are none.
    let objects: Arc<dyn ObjectSource> = match &api {
        Some(client) => Arc::new(ApiObjects::new(client.clone())),
        None => Arc::new(MemoryObjects::default()),
    };
    let kl = Kubelet::new(
        opts,
        runtime.clone(),
        images,
        cgroups,
        metrics.clone(),
        health.clone(),
        objects,
    );
    kl.initialize().await.map_err(anyhow::Error::msg)?;

    let mut tasks = Vec::new();
    // Device plugins and PodResources; their admission check runs before the predicates.
    tasks.extend(start_devices(settings, &kl)?);
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
    }
    if let Some(url) = &settings.manifest_url {
        tasks.push(spawn_url_source(
            url.clone(),
            settings.manifest_url_header.clone(),
            node.clone(),
            settings.http_check_frequency,
            updates_tx.clone(),
        ));
        expected.push(HTTP_SOURCE);
    }
    let pod_endpoint = if settings.enable_pod_endpoint && settings.enable_server {
        let dir = settings.root_dir.join("pod-endpoint");
        let ep = crate::sources::endpoint::PodEndpoint::start(
            node.clone(),
            dir.clone(),
            updates_tx.clone(),
        )
        .await
        .with_context(|| format!("pod endpoint: cannot use {}", dir.display()))?;
        expected.push(crate::sources::ENDPOINT_SOURCE);
        Some(ep)
    } else {
        if settings.enable_pod_endpoint {
            tracing::warn!("--enable-pod-endpoint has no effect with enableServer: false");
        }
        None
    };
    if expected.is_empty() && api.is_none() {
        tracing::warn!(
            "no pod source configured (--pod-manifest-path, --manifest-url, --kubeconfig): the node runs no pods"
        );
    }
    // API-server mode: the pods bound to this node (source "api") and their status.
    if let Some(client) = &api {
        start_api_pods(
            client,
            settings,
            &kl,
            &updates_tx,
            &mut expected,
            &mut tasks,
        );
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
    tasks.push(crate::logs::rotation::spawn_log_rotation(
        runtime.clone(),
        crate::logs::rotation::RotationPolicy {
            max_size: settings.container_log_max_size.value().max(1) as u64,
            max_files: settings.container_log_max_files as usize,
            max_workers: settings.container_log_max_workers as usize,
            monitor_interval: settings.container_log_monitor_interval,
        },
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
    tasks.extend(start_node_shutdown(settings, &kl, recorder.clone()));
    // API-server mode, node side: registration, node status, the Lease and events to the API.
    if let (Some(client), Some(path)) = (&api, &settings.kubeconfig) {
        let heartbeat =
            crate::apiclient::connect_heartbeat(path, settings.node_status_update_frequency)
                .await?;
        tasks.extend(start_api_node(
            settings,
            client.clone(),
            heartbeat,
            &kl,
            &conditions,
            &recorder,
            host,
        ));
    }

    let healthz_addr = if settings.healthz_port != 0 {
        let addr = SocketAddr::new(settings.healthz_bind_address, settings.healthz_port);
        Some(bind(addr, server::healthz_router(health.clone()), &mut tasks).await?)
    } else {
        None
    };
    let state = server::ApiState {
        kubelet: kl.clone(),
        status: kl.status.clone(),
        metrics: metrics.clone(),
        monitor: monitor.clone(),
        names: names.clone(),
    };
    let server_addr = if settings.enable_server {
        let addr = SocketAddr::new(settings.address, settings.port);
        let mut routes = secure_routes(settings, &state, &health);
        if let Some(ep) = pod_endpoint {
            routes = routes.merge(ep.routes());
        }
        let routes = routes
            .merge(crate::events::router(recorder.clone()))
            .merge(crate::eviction::router(conditions.clone()));
        Some(
            start_secure_server(
                settings,
                addr,
                routes,
                api.clone(),
                &metrics,
                &kl.opts.host_ips,
                &mut tasks,
            )
            .await?,
        )
    } else {
        None
    };
    let read_only_addr = if settings.read_only_port != 0 {
        let addr = SocketAddr::new(settings.address, settings.read_only_port);
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
        server_addr,
        cadvisor_addr,
        monitor,
        events: recorder,
        conditions,
        api,
        monitor_handle: Some(monitor_handle),
        managers: Some(managers),
        tasks,
    })
}

/// Graceful node shutdown ([`crate::nodeshutdown`]) when the settings and feature gates ask for
/// it.
fn start_node_shutdown(
    settings: &KubeletSettings,
    kl: &Arc<Kubelet>,
    events: Arc<EventRecorder>,
) -> Option<tokio::task::JoinHandle<()>> {
    use crate::nodeshutdown::{self, dbus, ManagerConfig};
    if !settings.feature_gates.enabled("GracefulNodeShutdown") {
        tracing::info!(
            "Node graceful shutdown feature is disabled, node shutdown will be immediate"
        );
        return None;
    }
    let cfg = ManagerConfig {
        node_name: settings.node_name.clone(),
        periods: nodeshutdown::periods(
            settings.shutdown_grace_period,
            settings.shutdown_grace_period_critical_pods,
            &settings.shutdown_grace_period_by_pod_priority,
        ),
        bus_address: dbus::system_bus_address(),
        state_file: settings.root_dir.join(nodeshutdown::STATE_FILE),
    };
    nodeshutdown::start(cfg, kl, events)
}

/// The authenticated API's routes (before authentication): the read-only ones, `/configz`, and
/// the debugging handlers.
fn secure_routes(
    settings: &KubeletSettings,
    state: &server::ApiState,
    health: &Health,
) -> axum::Router {
    let api = Arc::new(state.clone());
    let debug =
        server::streaming::routes(api.clone()).merge(server::containerlogs::routes(api.clone()));
    server::secure::routes(
        api,
        health.clone(),
        server::secure::SecureOptions {
            enable_debugging_handlers: settings.enable_debugging_handlers,
            enable_system_log_handler: settings.enable_system_log_handler,
            system_log_dir: PathBuf::from("/var/log"),
            configz: server::secure::configz::body(settings),
        },
        debug,
    )
}

/// Serves the kubelet API on `addr`: TLS with the configured or self-signed certificate,
/// authentication and authorization as configured.
async fn start_secure_server(
    settings: &KubeletSettings,
    addr: SocketAddr,
    routes: axum::Router,
    api: Option<kube::Client>,
    metrics: &Metrics,
    host_ips: &[String],
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> anyhow::Result<SocketAddr> {
    use server::secure::{authn, authz, tls};
    let ips: Vec<std::net::IpAddr> = host_ips.iter().filter_map(|ip| ip.parse().ok()).collect();
    let cert = match (
        &settings.tls_cert_file,
        &settings.tls_private_key_file,
        &api,
    ) {
        (Some(c), Some(k), _) => tls::CertSource::Static(tls::load(c, k)?),
        (_, _, Some(client)) if settings.server_tls_bootstrap => {
            use server::secure::serving;
            let slot = Arc::new(serving::ServingCertSlot::default());
            match serving::load_current(&settings.cert_dir) {
                Some(key) => slot.set(key),
                None => tasks.push(tokio::spawn(serving::bootstrap(
                    client.clone(),
                    settings.cert_dir.clone(),
                    settings.node_name.clone(),
                    ips.clone(),
                    slot.clone(),
                ))),
            }
            tls::CertSource::Dynamic(slot)
        }
        _ => {
            if settings.server_tls_bootstrap {
                tracing::warn!(
                    "serverTLSBootstrap needs --kubeconfig: the kubelet API serves a \
                     self-signed certificate"
                );
            }
            tls::CertSource::Static(tls::self_signed(
                &settings.cert_dir,
                &settings.node_name,
                &ips,
            )?)
        }
    };
    let client_ca = match &settings.authentication.client_ca_file {
        Some(p) => Some(tls::client_verifier(p)?),
        None => None,
    };
    let tls_config = tls::server_config(cert, settings.tls_min_version, client_ca.clone())?;
    let webhook_needs_api = settings.authentication.webhook
        || settings.authorization.mode == crate::config::AuthorizationMode::Webhook;
    if webhook_needs_api && api.is_none() {
        tracing::warn!(
            "the kubelet API's webhook authentication or authorization needs --kubeconfig: \
             without an API server, bearer tokens are refused (401) and, in Webhook \
             authorization mode, every request is denied (403); set authorization.mode \
             AlwaysAllow with a client CA to use the API standalone"
        );
    }
    let authenticator = authn::Authenticator {
        x509: client_ca,
        webhook: match (&api, settings.authentication.webhook) {
            (Some(c), true) => Some(authn::TokenWebhook::new(
                Arc::new(authn::ApiTokenReviewer(c.clone())),
                settings.authentication.webhook_cache_ttl,
            )),
            _ => None,
        },
        webhook_enabled: settings.authentication.webhook,
        anonymous: settings.authentication.anonymous,
    };
    let authorizer = match settings.authorization.mode {
        crate::config::AuthorizationMode::AlwaysAllow => authz::Authorizer::AlwaysAllow,
        crate::config::AuthorizationMode::Webhook => authz::Authorizer::webhook(
            api.map(|c| Arc::new(authz::ApiAccessReviewer(c)) as Arc<dyn authz::AccessReviewer>),
            settings.authorization.cache_authorized_ttl,
            settings.authorization.cache_unauthorized_ttl,
        ),
    };
    let auth = Arc::new(server::secure::Auth {
        authenticator,
        authorizer,
        node: settings.node_name.clone(),
    });
    let app = server::instrument(
        server::secure::with_auth(routes, auth),
        metrics.clone(),
        "readwrite",
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "serving the kubelet API (HTTPS)");
    tasks.push(tokio::spawn(server::secure::serve(
        listener,
        Arc::new(tls_config),
        app,
        server::secure::Limits::default(),
    )));
    Ok(local)
}

/// API-server mode, node side ([`crate::nodestatus`], [`crate::apievents`]): registers the node,
/// keeps its status and Lease, and publishes the recorder's events. Never blocks: every loop
/// retries on its own while the API server is away.
fn start_api_node(
    settings: &KubeletSettings,
    client: kube::Client,
    heartbeat: kube::Client,
    kl: &Arc<Kubelet>,
    conditions: &Arc<NodeConditions>,
    recorder: &Arc<EventRecorder>,
    host: &HostPaths,
) -> Vec<tokio::task::JoinHandle<()>> {
    let reach = crate::apiclient::reachability::Reachability::default();
    let inputs = crate::nodestatus::inputs(settings, kl.cgroups.node_config(), &host.proc_root);
    let node = crate::nodestatus::NodeApi {
        // Registration, status and the Lease go through the heartbeat client.
        client: heartbeat,
        inputs: Arc::new(inputs),
        register: settings.register_node,
        update_frequency: settings.node_status_update_frequency,
        report_frequency: settings.node_status_report_frequency,
        lease_duration_seconds: settings.node_lease_duration_seconds,
        health: kl.health.clone(),
        conditions: conditions.clone(),
        runtime: kl.runtime.clone(),
        runtime_name: kl.runtime_name.lock().clone(),
        events: recorder.clone(),
        reach: reach.clone(),
        devices: kl.devices.get().cloned(),
    };
    let mut tasks = crate::nodestatus::start(node);
    let publisher = crate::apievents::Publisher::new(
        client,
        recorder.clone(),
        settings.api_node.event_record_qps,
        settings.api_node.event_burst,
        reach,
    );
    tasks.push(tokio::spawn(publisher.run()));
    tasks
}

/// The device manager ([`crate::cm::devicemanager`]): restores its checkpoint, serves device
/// plugin registration and the PodResources API under `--root-dir`, and reserves devices at
/// admission (refusing with `UnexpectedAdmissionError` when they are not there).
fn start_devices(
    settings: &KubeletSettings,
    kl: &Arc<Kubelet>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use crate::cm::devicemanager::{self, podresources, DeviceManager};
    let dm = DeviceManager::new(&settings.root_dir)
        .context("device manager")?
        .with_metrics(kl.metrics.clone());
    let mut tasks = vec![devicemanager::server::serve(dm.clone()).context("device manager")?];
    let weak = Arc::downgrade(kl);
    let pods: podresources::ActivePods = Arc::new(move || {
        weak.upgrade()
            .map(|kl| (kl.running_pods(), kl.sources_ready()))
            .unwrap_or_default()
    });
    tasks.push(
        podresources::serve(&settings.root_dir, dm.clone(), pods.clone())
            .context("pod resources API")?,
    );
    let admit_dm = dm.clone();
    kl.add_admit_handler(Arc::new(move |pod: &k8s_openapi::api::core::v1::Pod| {
        let (active, ready) = pods();
        let active: std::collections::HashSet<String> =
            active.into_iter().filter_map(|p| p.metadata.uid).collect();
        admit_dm
            .admit(pod, ready.then_some(&active))
            .map_err(|e| devicemanager::refusal(&e))
    }));
    let _ = kl.devices.set(dm);
    Ok(tasks)
}

/// API-server mode, pods: the API pod source (expected before orphans are cleaned up, as the
/// kubelet's `sourcesReady`) the status manager's API side (status patches, final deletes) and mirror pods.
fn start_api_pods(
    client: &kube::Client,
    settings: &KubeletSettings,
    kl: &Arc<Kubelet>,
    updates: &mpsc::Sender<crate::sources::PodUpdate>,
    expected: &mut Vec<&'static str>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) {
    let mirrors = crate::sources::api::MirrorPods::default();
    tasks.push(crate::sources::api::spawn_api_source(
        client.clone(),
        settings.node_name.clone(),
        mirrors.clone(),
        updates.clone(),
    ));
    expected.push(crate::sources::API_SOURCE);
    tasks.push(tokio::spawn(
        crate::status::api::StatusSync::new(
            client.clone(),
            kl.status.clone(),
            kl.runtime.clone(),
            mirrors.clone(),
        )
        .run(),
    ));
    // Admission: the scheduler's fits on the node, with the API's Node for labels and taints.
    let node_cache = crate::admission::NodeCache::default();
    tasks.push(tokio::spawn(crate::admission::run_node_watch(
        client.clone(),
        settings.node_name.clone(),
        node_cache.clone(),
    )));
    crate::admission::register(kl, admission_node(settings, kl), node_cache);
    tasks.push(tokio::spawn(
        crate::mirror::MirrorManager::new(
            client.clone(),
            settings.node_name.clone(),
            kl.clone(),
            mirrors,
        )
        .run(),
    ));
}

/// The node as admission sees it before the API has a Node: the labels the kubelet registers
/// and allocatable as the Node reports it (less the hard eviction memory threshold).
fn admission_node(settings: &KubeletSettings, kl: &Kubelet) -> crate::admission::NodeView {
    let config = kl.cgroups.node_config();
    let mut allocatable = config.allocatable();
    if let (Some(m), Some(e)) = (allocatable.memory, config.hard_eviction.memory) {
        allocatable.memory = Some(m.saturating_sub(e).max(0));
    }
    let mut labels = settings.node_labels.clone();
    labels.insert("kubernetes.io/hostname".into(), settings.node_name.clone());
    let os = crate::nodestatus::status::go_os();
    labels.insert("kubernetes.io/os".into(), os.into());
    labels.insert("beta.kubernetes.io/os".into(), os.into());
    // The same GOARCH spelling the Node registers with.
    let arch = crate::nodestatus::status::go_arch();
    labels.insert("kubernetes.io/arch".into(), arch.into());
    labels.insert("beta.kubernetes.io/arch".into(), arch.into());
    crate::admission::NodeView {
        name: settings.node_name.clone(),
        labels,
        taints: Vec::new(),
        allocatable,
        max_pods: kl.opts.max_pods as i64,
    }
}

/// The node's container manager: the cgroupfs driver under `--cgroup-root`, with node
/// allocatable computed from the collectors' machine info and the reservations in `settings`.
async fn container_manager(
    settings: &KubeletSettings,
    host: &HostPaths,
    metrics: &Metrics,
) -> anyhow::Result<ContainerManager> {
    let paths = collectors::machine::MachinePaths {
        proc_root: host.proc_root.clone(),
        ..Default::default()
    };
    let proc_root = host.proc_root.clone();
    let (machine, tasks) = tokio::task::spawn_blocking(move || {
        (
            collectors::machine::machine_info(&paths),
            task_max(&proc_root),
        )
    })
    .await?;
    let machine = machine.context("cannot read the node's capacity")?;
    let capacity = NodeResources::capacity(&machine, tasks);
    let hard_eviction = NodeResources {
        memory: settings
            .eviction_hard
            .get(&crate::config::eviction::EvictionSignal::MemoryAvailable)
            .map(|t| match t {
                crate::config::eviction::ThresholdValue::Quantity(q) => q.value(),
                crate::config::eviction::ThresholdValue::Percentage(p) => {
                    (capacity.memory.unwrap_or(0) as f64 * p) as i64
                }
            }),
        ..Default::default()
    };
    let node = NodeConfig {
        system_reserved: NodeResources::reservation("systemReserved", &settings.system_reserved)?,
        kube_reserved: NodeResources::reservation("kubeReserved", &settings.kube_reserved)?,
        capacity,
        hard_eviction,
        enforce: Enforcement::from_levels(&settings.enforce_node_allocatable),
        system_reserved_cgroup: settings.system_reserved_cgroup.clone(),
        kube_reserved_cgroup: settings.kube_reserved_cgroup.clone(),
        memory_qos: settings.feature_gates.enabled("MemoryQoS"),
    };
    node.validate()?;
    let cgroups = CgroupManager::new(&host.cgroup_mount, &settings.cgroup_root)
        .with_context(|| format!("--cgroup-root {}", settings.cgroup_root))?
        .with_hugepage_sizes(node.capacity.hugepages.keys().copied())
        .with_metrics(metrics.clone());
    Ok(ContainerManager::new(cgroups, node))
}

/// What the sync loop and pod workers take from the settings.
fn kubelet_options(
    settings: &KubeletSettings,
    proc_root: &std::path::Path,
    cpu_milli: i64,
    memory: i64,
) -> KubeletOptions {
    let cores = u32::try_from((cpu_milli / 1000).max(1)).unwrap_or(u32::MAX);
    KubeletOptions {
        node_name: settings.node_name.clone(),
        root_dir: settings.root_dir.clone(),
        log_root: settings.pod_logs_dir.clone(),
        dns: DnsSettings {
            cluster_dns: settings.cluster_dns.clone(),
            cluster_domain: settings.cluster_domain.clone(),
            resolv_conf: settings.resolv_conf.clone(),
            node_ips: settings.node_ip.into_iter().collect(),
        },
        cfs: crate::cm::CfsQuota {
            enforce: settings.cpu_cfs_quota,
            period_us: u64::try_from(settings.cpu_cfs_quota_period.as_micros())
                .unwrap_or(crate::cm::DEFAULT_CPU_PERIOD),
        },
        seccomp: SeccompPolicy {
            runtime_default: settings.seccomp_default,
            root: settings.root_dir.join("seccomp"),
        },
        crash_loop_backoff: settings.crash_loop_backoff,
        volume_stats_agg_period: settings.volume_stats_agg_period,
        sync_frequency: settings.sync_frequency,
        housekeeping_period: settings.pod_housekeeping_period,
        pod_pids_limit: settings.pod_pids_limit,
        max_pods: settings.effective_max_pods(cores) as usize,
        host_ips: crate::nodeinfo::host_ips(settings.node_ip, proc_root),
        node_cpu_milli: cpu_milli,
        node_memory: memory,
        pod_infra_container_image: settings.pod_infra_container_image.clone(),
    }
}

/// Why the host refuses the agent at start.
#[derive(Debug, thiserror::Error)]
pub enum HostCheckError {
    #[error("running with swap on is not supported, please disable swap or set --fail-swap-on flag to false (/proc/swaps: {swaps:?})")]
    SwapOn { swaps: Vec<String> },
    #[error("failed to determine if swap is on: cannot read {path}: {source}")]
    Swaps {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("protectKernelDefaults: {0}")]
    KernelDefaults(String),
}

/// Whether `/proc/swaps` content lists a swap device (a line past the header), as the
/// kubelet's `IsSwapOn` reads it; the lines when it does.
pub fn swap_devices(swaps: &str) -> Option<Vec<String>> {
    let lines: Vec<String> = swaps.trim().lines().map(str::to_string).collect();
    (lines.len() > 1).then_some(lines)
}

/// The kubelet's `failSwapOn` check: refuse to start while swap is on. A missing `/proc/swaps`
/// means no swap, as for the kubelet.
pub async fn check_swap(
    proc_root: &std::path::Path,
    fail_swap_on: bool,
) -> Result<(), HostCheckError> {
    let path = proc_root.join("swaps");
    let content = match tokio::fs::read_to_string(&path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(path = %path.display(), "file does not exist, assuming that swap is disabled");
            return Ok(());
        }
        Err(source) => return Err(HostCheckError::Swaps { path, source }),
    };
    let Some(swaps) = swap_devices(&content) else {
        return Ok(());
    };
    tracing::info!(swaps = ?swaps, "swap is on");
    if fail_swap_on {
        return Err(HostCheckError::SwapOn { swaps });
    }
    // memorySwap.swapBehavior NoSwap: containers get no swap (containerd sets swap to the
    // memory limit).
    Ok(())
}

/// The kernel tunables the kubelet expects (its `setupKernelTunables`).
pub const KERNEL_DEFAULTS: &[(&str, i64)] = &[
    ("vm/overcommit_memory", 1),
    ("vm/panic_on_oom", 0),
    ("kernel/panic", 10),
    ("kernel/panic_on_oops", 1),
    ("kernel/keys/root_maxkeys", 1_000_000),
    ("kernel/keys/root_maxbytes", 25_000_000),
];

/// `protectKernelDefaults: true`: refuse to start when a tunable differs, with the kubelet's
/// message for each.
pub async fn check_kernel_defaults(proc_root: &std::path::Path) -> Result<(), HostCheckError> {
    let mut errors = Vec::new();
    for (flag, expected) in KERNEL_DEFAULTS {
        let path = proc_root.join("sys").join(flag);
        match tokio::fs::read_to_string(&path).await {
            Ok(v) => match v.trim().parse::<i64>() {
                Ok(actual) if actual == *expected => {}
                Ok(actual) => errors.push(format!(
                    "invalid kernel flag: {flag}, expected value: {expected}, actual value: {actual}"
                )),
                Err(_) => errors.push(format!("cannot parse {}: {:?}", path.display(), v.trim())),
            },
            Err(e) => errors.push(format!("cannot read {}: {e}", path.display())),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(HostCheckError::KernelDefaults(errors.join("; ")))
    }
}

/// The kubelet's `CheckLimitsForResolvConf`: warns once when cluster pods would lose part of
/// the host's search line.
async fn check_host_dns(dns: &DnsSettings) {
    if dns.cluster_dns.is_empty() {
        tracing::info!(
            "no clusterDNS (--cluster-dns): pods with dnsPolicy ClusterFirst get the host's DNS (Default), each with a MissingClusterDNS event"
        );
    }
    match crate::kuberuntime::dns::read_host_config(dns.resolv_conf.as_deref()).await {
        Ok(host) => {
            if let Some(w) = crate::kuberuntime::dns::check_host_limits(dns, &host) {
                tracing::warn!("{w}");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "pods cannot get DNS settings until the resolver file is readable")
        }
    }
}

/// The agent process's own settings, applied once by the binary (never by in-process agents):
/// `RLIMIT_NOFILE` (`maxOpenFiles`) and `oom_score_adj` (`oomScoreAdj`). Failures are logged
/// and the agent goes on, as the kubelet does.
pub fn apply_process_settings(settings: &KubeletSettings) {
    let n = settings.max_open_files;
    let lim = libc::rlimit {
        rlim_cur: n as libc::rlim_t,
        rlim_max: n as libc::rlim_t,
    };
    // SAFETY: setrlimit reads a valid rlimit for this process.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        let e = std::io::Error::last_os_error();
        tracing::error!(max_open_files = n, error = %e, "failed to set rlimit on max file handles");
    }
    if let Err(e) = std::fs::write(
        "/proc/self/oom_score_adj",
        settings.oom_score_adj.to_string(),
    ) {
        tracing::info!(oom_score_adj = settings.oom_score_adj, error = %e, "failed to apply oom_score_adj");
    }
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
    apply_process_settings(&settings);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> KubeletSettings {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            flags: crate::config::Flags,
        }
        let mut argv = vec!["kubelet-rs", "--hostname-override=n1"];
        argv.extend_from_slice(args);
        crate::config::resolve(&Cli::parse_from(argv).flags, None, "").unwrap()
    }

    #[tokio::test]
    async fn swap_is_refused_as_the_kubelet_refuses_it() {
        let proc = tempfile::tempdir().unwrap();
        // No /proc/swaps: no swap.
        check_swap(proc.path(), true).await.unwrap();
        std::fs::write(
            proc.path().join("swaps"),
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n",
        )
        .unwrap();
        check_swap(proc.path(), true).await.unwrap();
        std::fs::write(
            proc.path().join("swaps"),
            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
             /dev/dm-1                               partition\t16760828\t0\t\t-2\n",
        )
        .unwrap();
        let err = check_swap(proc.path(), true).await.unwrap_err().to_string();
        assert!(
            err.starts_with(
                "running with swap on is not supported, please disable swap or set \
                 --fail-swap-on flag to false"
            ),
            "{err}"
        );
        assert!(err.contains("/dev/dm-1"), "{err}");
        check_swap(proc.path(), false).await.unwrap();
    }

    #[tokio::test]
    async fn kernel_defaults_are_checked_when_protected() {
        let proc = tempfile::tempdir().unwrap();
        for (flag, v) in KERNEL_DEFAULTS {
            let path = proc.path().join("sys").join(flag);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{v}\n")).unwrap();
        }
        check_kernel_defaults(proc.path()).await.unwrap();
        std::fs::write(proc.path().join("sys/vm/overcommit_memory"), "0\n").unwrap();
        let err = check_kernel_defaults(proc.path())
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "protectKernelDefaults: invalid kernel flag: vm/overcommit_memory, expected value: \
             1, actual value: 0"
        );
    }

    #[test]
    fn options_carry_dns_quota_and_the_pod_limit() {
        let s = settings(&[
            "--cluster-dns=10.96.0.10",
            "--cluster-domain=cluster.local",
            "--resolv-conf=",
            "--node-ip=2001:db8::5",
            "--cpu-cfs-quota=false",
            "--pods-per-core=3",
        ]);
        let o = kubelet_options(&s, std::path::Path::new("/nonexistent"), 4000, 1 << 30);
        assert_eq!(
            o.dns.cluster_dns,
            ["10.96.0.10".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(o.dns.cluster_domain, "cluster.local");
        assert_eq!(o.dns.resolv_conf, None);
        assert_eq!(
            o.dns.node_ips,
            ["2001:db8::5".parse::<std::net::IpAddr>().unwrap()]
        );
        assert!(!o.cfs.enforce);
        assert_eq!(o.cfs.period_us, 100_000);
        assert_eq!(o.max_pods, 12, "3 per core × 4 cores");
        assert_eq!(o.housekeeping_period, Duration::from_secs(2));
        assert_eq!(
            o.crash_loop_backoff,
            (Duration::from_secs(10), Duration::from_secs(300))
        );
        let s = settings(&[
            "--cpu-cfs-quota-period=20ms",
            "--feature-gates=CustomCPUCFSQuotaPeriod=true",
        ]);
        let o = kubelet_options(&s, std::path::Path::new("/nonexistent"), 4000, 1 << 30);
        assert_eq!(
            o.cfs,
            crate::cm::CfsQuota {
                enforce: true,
                period_us: 20_000
            }
        );
        assert_eq!(o.max_pods, 110);
        assert_eq!(o.dns.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
    }
}
