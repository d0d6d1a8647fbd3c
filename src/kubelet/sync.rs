//! One pod's sync (`SyncPod` in `kuberuntime_manager.go` and `kubelet.go`): read what the runtime
//! has, decide ([`compute_pod_actions`]), act (pod cgroup, sandbox, kills, container starts with
//! the crash-loop backoff), and publish the resulting API status. Also pod termination and the
//! teardown of orphaned runtime pods.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::jiff::Timestamp;
use proto::cri;
use tokio::time::Instant;

use super::{pod_ref, poddirs, Kubelet};
use crate::cm::{pod_qos_class, pod_resources, QosClass};
use crate::kuberuntime::actions::{compute_pod_actions, sandbox_hash, SANDBOX_HASH_LABEL};
use crate::kuberuntime::container::{container_config, ContainerContext};
use crate::kuberuntime::labels::{self, PodIdentity};
use crate::kuberuntime::sandbox::{pod_hostname, pod_log_dir, sandbox_config, SandboxContext};
use crate::kuberuntime::PodRuntimeStatus;
use crate::status::generate::{generate_pod_status, StartFailure, StatusInputs};

/// The kubelet's worker backoff after a failed sync.
const ERROR_REQUEUE: Duration = Duration::from_secs(10);
/// How soon to look again while the runtime is unreachable.
const RUNTIME_DOWN_REQUEUE: Duration = Duration::from_secs(2);
/// The shortest grace period a container is stopped with.
const MIN_GRACE_SECONDS: i64 = 2;

pub const CRASH_LOOP_BACKOFF: &str = "CrashLoopBackOff";
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";

/// What a pod worker keeps between syncs.
#[derive(Debug)]
pub struct WorkerState {
    /// Waiting reason of each container's last failed start (the reason cache).
    pub failures: HashMap<String, StartFailure>,
    pub first_seen: Timestamp,
    first_seen_instant: Instant,
    start_reported: bool,
    synced: bool,
}

impl Default for WorkerState {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerState {
    pub fn new() -> Self {
        Self {
            failures: HashMap::new(),
            first_seen: Timestamp::now(),
            first_seen_instant: Instant::now(),
            start_reported: false,
            synced: false,
        }
    }
}

/// When to sync again, and what kind of sync this was (for the worker duration metric).
#[derive(Debug, Clone, Copy)]
pub struct SyncOutcome {
    pub requeue_after: Duration,
    pub operation: &'static str,
}

/// `name_namespace(uid)`, the kubelet's `format.Pod`.
pub fn format_pod(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or("")
    )
}

/// The crash-loop backoff key: pod identity, container name and spec hash.
fn backoff_key(pod: &Pod, c: &Container) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.uid.as_deref().unwrap_or(""),
        c.name,
        labels::container_hash(c)
    )
}

/// A wall-clock time in nanoseconds as a monotonic instant.
fn instant_of(unix_nanos: i64) -> Instant {
    let now_wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let ago = Duration::from_nanos(now_wall.saturating_sub(unix_nanos).max(0) as u64);
    Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
}

fn termination_grace(pod: &Pod) -> i64 {
    termination_grace_of(pod)
}

/// A pod's grace period: the deletion grace period if set, else the spec's, at least 2 s.
pub fn termination_grace_of(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(MIN_GRACE_SECONDS)
}

fn is_terminal(kl: &Kubelet, uid: &str) -> bool {
    kl.status
        .status(uid)
        .and_then(|s| s.phase)
        .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// One sync of a pod.
pub async fn sync_pod(kl: &Kubelet, pod: &Pod, state: &mut WorkerState) -> SyncOutcome {
    let operation = if state.synced { "sync" } else { "create" };
    state.synced = true;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut rt = match kl.runtime.get_pod_status(&uid, &name, &ns).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(pod = %pod_ref(pod), error = %e, "cannot read pod status from the runtime");
            return SyncOutcome {
                requeue_after: RUNTIME_DOWN_REQUEUE,
                operation,
            };
        }
    };
    let qos = pod_qos_class(pod);
    let mut requeue = kl.opts.sync_frequency;
    let mut acted = false;

    if is_terminal(kl, &uid) {
        // A pod that reached Succeeded or Failed (completed, evicted) never runs again.
        if rt
            .containers
            .iter()
            .any(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            || rt
                .sandboxes
                .iter()
                .any(|s| s.state == cri::PodSandboxState::SandboxReady as i32)
        {
            kill_pod(kl, pod, &rt, termination_grace(pod)).await;
            acted = true;
        }
    } else {
        let cgroup_parent = match kl.cgroups.ensure_pod_cgroup(
            qos,
            &uid,
            &pod_resources(pod, kl.opts.pod_pids_limit),
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(pod = %pod_ref(pod), error = %e, "cannot create pod cgroup");
                return SyncOutcome {
                    requeue_after: ERROR_REQUEUE,
                    operation,
                };
            }
        };
        let probes = kl.probes.lock().clone();
        let actions = compute_pod_actions(pod, &rt, &probes);
        tracing::debug!(pod = %pod_ref(pod), ?actions, "computed pod actions");
        if actions.kill_pod {
            if !rt.sandboxes.is_empty() {
                kill_pod(kl, pod, &rt, termination_grace(pod)).await;
                acted = true;
            }
        } else {
            for (id, info) in &actions.containers_to_kill {
                tracing::info!(pod = %pod_ref(pod), container = %info.name, "killing container: {}", info.message);
                let grace = container_grace(pod, &info.name, info.reason);
                if let Err(e) = kl.runtime.stop_container(id, grace).await {
                    tracing::warn!(pod = %pod_ref(pod), container = %info.name, error = %e, "cannot stop container");
                }
                acted = true;
            }
        }
        let mut sandbox_id = actions.sandbox_id.clone();
        let sb_ctx_parent = cgroup_parent;
        let wants_start =
            !actions.init_containers_to_start.is_empty() || !actions.containers_to_start.is_empty();
        if actions.create_sandbox && wants_start {
            let log_dir = pod_log_dir(&kl.opts.log_root, &ns, &name, &uid);
            if let Err(e) = std::fs::create_dir_all(&log_dir) {
                tracing::error!(pod = %pod_ref(pod), dir = %log_dir.display(), error = %e, "cannot create pod log directory");
            }
            let cfg = make_sandbox_config(kl, pod, actions.attempt, &sb_ctx_parent);
            tracing::info!(pod = %pod_ref(pod), attempt = actions.attempt, "creating pod sandbox");
            match kl.runtime.run_pod_sandbox(cfg).await {
                Ok(id) => {
                    sandbox_id = id;
                    acted = true;
                }
                Err(e) => {
                    tracing::error!(pod = %pod_ref(pod), error = %e, "FailedCreatePodSandBox");
                    publish_status(kl, pod, &rt, state);
                    return SyncOutcome {
                        requeue_after: ERROR_REQUEUE,
                        operation,
                    };
                }
            }
        }
        if wants_start && !sandbox_id.is_empty() {
            let sandbox_status = match kl.runtime.pod_sandbox_status(&sandbox_id).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(pod = %pod_ref(pod), error = %e, "cannot read sandbox status");
                    return SyncOutcome {
                        requeue_after: RUNTIME_DOWN_REQUEUE,
                        operation,
                    };
                }
            };
            let attempt = sandbox_status
                .metadata
                .as_ref()
                .map(|m| m.attempt)
                .unwrap_or(actions.attempt);
            let pod_ips: Vec<String> = if crate::kuberuntime::sandbox::host_network(pod) {
                kl.opts.host_ips.clone()
            } else {
                sandbox_status
                    .network
                    .as_ref()
                    .map(|n| {
                        std::iter::once(n.ip.clone())
                            .chain(n.additional_ips.iter().map(|i| i.ip.clone()))
                            .filter(|i| !i.is_empty())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let sb_cfg = make_sandbox_config(kl, pod, attempt, &sb_ctx_parent);
            let spec = pod.spec.as_ref();
            let inits = spec
                .and_then(|s| s.init_containers.as_deref())
                .unwrap_or(&[]);
            let apps = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
            let targets = actions
                .init_containers_to_start
                .iter()
                .map(|&i| (&inits[i], true))
                .chain(
                    actions
                        .containers_to_start
                        .iter()
                        .map(|&i| (&apps[i], false)),
                );
            for (c, init) in targets {
                match start_container(kl, pod, c, init, qos, &sandbox_id, &sb_cfg, &rt, &pod_ips)
                    .await
                {
                    Ok(()) => {
                        state.failures.remove(&c.name);
                        acted = true;
                    }
                    Err((failure, retry)) => {
                        tracing::info!(pod = %pod_ref(pod), container = %c.name, reason = %failure.reason, "{}", failure.message);
                        state.failures.insert(c.name.clone(), failure);
                        requeue = requeue.min(retry);
                    }
                }
            }
        }
    }

    if acted {
        match kl.runtime.get_pod_status(&uid, &name, &ns).await {
            Ok(s) => rt = s,
            Err(e) => tracing::debug!(pod = %pod_ref(pod), error = %e, "cannot re-read pod status"),
        }
    }
    publish_status(kl, pod, &rt, state);
    SyncOutcome {
        requeue_after: requeue,
        operation,
    }
}

fn container_grace(pod: &Pod, name: &str, reason: &str) -> i64 {
    // A liveness kill may carry its own grace period on the probe.
    if reason == "Unhealthy" {
        let spec = pod.spec.as_ref();
        if let Some(g) = spec
            .into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .and_then(|c| c.liveness_probe.as_ref())
            .and_then(|p| p.termination_grace_period_seconds)
        {
            return g.max(MIN_GRACE_SECONDS);
        }
    }
    termination_grace(pod)
}

fn make_sandbox_config(
    kl: &Kubelet,
    pod: &Pod,
    attempt: u32,
    cgroup_parent: &str,
) -> cri::PodSandboxConfig {
    let ctx = SandboxContext {
        node: &kl.opts.node_name,
        cgroup_parent: cgroup_parent.to_string(),
        log_root: &kl.opts.log_root,
        resolv_conf: &kl.opts.resolv_conf,
    };
    let mut cfg = sandbox_config(pod, attempt, &ctx);
    cfg.labels
        .insert(SANDBOX_HASH_LABEL.into(), sandbox_hash(pod));
    cfg
}

fn publish_status(kl: &Kubelet, pod: &Pod, rt: &PodRuntimeStatus, state: &mut WorkerState) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let previous = kl.status.status(&uid);
    let runtime_name = kl.runtime_name.lock().clone();
    let mut rt = rt.clone();
    for c in &mut rt.containers {
        if c.state == cri::ContainerState::ContainerExited as i32 {
            if let Some(m) = poddirs::read_termination_message(c) {
                c.message = m;
            }
        }
    }
    let status = generate_pod_status(
        pod,
        &rt,
        &StatusInputs {
            failures: Some(&state.failures),
            ready: None,
            not_started: None,
            host_ips: &kl.opts.host_ips,
            runtime_name: &runtime_name,
            previous: previous.as_ref(),
            start_time: Some(state.first_seen),
            now: None,
        },
    );
    if !state.start_reported {
        let all_running = status
            .container_statuses
            .iter()
            .flatten()
            .all(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
        if all_running && status.phase.as_deref() == Some("Running") {
            state.start_reported = true;
            kl.metrics
                .pod_start_duration_seconds
                .observe(state.first_seen_instant.elapsed().as_secs_f64());
        }
    }
    kl.status.set_status(&uid, status);
}

/// Starts one container: crash-loop backoff, image, config, create, start. On failure returns
/// the waiting reason and when to try again.
#[allow(clippy::too_many_arguments)]
async fn start_container(
    kl: &Kubelet,
    pod: &Pod,
    c: &Container,
    init: bool,
    qos: QosClass,
    sandbox_id: &str,
    sandbox_cfg: &cri::PodSandboxConfig,
    rt: &PodRuntimeStatus,
    pod_ips: &[String],
) -> Result<(), (StartFailure, Duration)> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ctype = if init { "init_container" } else { "container" };
    let fail = |reason: &str, message: String, retry: Duration| {
        (
            StartFailure {
                reason: reason.to_string(),
                message,
            },
            retry,
        )
    };
    // Crash-loop backoff, counted from when the previous instance finished.
    if let Some(last) = rt
        .container_history(&c.name)
        .find(|s| s.state == cri::ContainerState::ContainerExited as i32)
    {
        let key = backoff_key(pod, c);
        let finished = instant_of(last.finished_at);
        let now = Instant::now();
        let mut b = kl.crash_backoff.lock();
        if b.is_in_backoff_since(&key, finished, now) {
            let wait = b.get(&key);
            let end = b.window_end(&key, finished).unwrap_or(now);
            let retry = end.saturating_duration_since(now) + Duration::from_millis(20);
            return Err(fail(
                CRASH_LOOP_BACKOFF,
                format!(
                    "back-off {} restarting failed container={} pod={}",
                    crate::backoff::go_duration(wait),
                    c.name,
                    format_pod(pod)
                ),
                retry,
            ));
        }
        b.next(&key, finished);
    }
    let image_ref = kl
        .images
        .ensure_image(&uid, c, Some(sandbox_cfg))
        .await
        .map_err(|e| fail(e.reason, e.message, ERROR_REQUEUE))?;
    let restart_count = rt
        .container(&c.name)
        .map(|s| labels::restart_count(&s.annotations) + 1)
        .unwrap_or(0);
    let pods_root = kl.pods_root();
    let mut mounts = Vec::new();
    let hostname = pod_hostname(pod);
    match poddirs::ensure_etc_hosts(&pods_root, pod, pod_ips, &hostname) {
        Ok(Some(m)) => mounts.push(m),
        Ok(None) => {}
        Err(e) => {
            return Err(fail(
                CREATE_CONTAINER_CONFIG_ERROR,
                e.to_string(),
                ERROR_REQUEUE,
            ))
        }
    }
    match poddirs::termination_log_mount(&pods_root, &uid, c, restart_count) {
        Ok(Some(m)) => mounts.push(m),
        Ok(None) => {}
        Err(e) => {
            return Err(fail(
                CREATE_CONTAINER_CONFIG_ERROR,
                e.to_string(),
                ERROR_REQUEUE,
            ))
        }
    }
    let facts = kl.facts(pod_ips.to_vec());
    let ctx = ContainerContext {
        node: &kl.opts.node_name,
        image_ref: &image_ref,
        restart_count,
        init,
        qos,
        facts: &facts,
        objects: kl.objects.as_ref(),
        mounts,
    };
    let cfg = container_config(pod, c, &ctx, kl.opts.node_memory)
        .map_err(|e| fail(CREATE_CONTAINER_CONFIG_ERROR, e.to_string(), ERROR_REQUEUE))?;
    let id = kl
        .runtime
        .create_container(sandbox_id, cfg, sandbox_cfg.clone())
        .await
        .map_err(|e| {
            kl.metrics
                .started_containers_errors_total
                .with_label_values(&["CreateContainerError", ctype])
                .inc();
            fail(CREATE_CONTAINER_ERROR, e.message(), ERROR_REQUEUE)
        })?;
    kl.metrics
        .started_containers_total
        .with_label_values(&[ctype])
        .inc();
    tracing::info!(pod = %pod_ref(pod), container = %c.name, id = %id, "starting container");
    kl.runtime.start_container(&id).await.map_err(|e| {
        kl.metrics
            .started_containers_errors_total
            .with_label_values(&["RunContainerError", ctype])
            .inc();
        fail(RUN_CONTAINER_ERROR, e.message(), ERROR_REQUEUE)
    })?;
    Ok(())
}

fn running_ids<'a>(
    rt: &'a PodRuntimeStatus,
    names: impl Iterator<Item = &'a str>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for n in names {
        for s in rt.container_history(n) {
            if s.state == cri::ContainerState::ContainerRunning as i32
                || s.state == cri::ContainerState::ContainerCreated as i32
            {
                out.push((s.id.clone(), n.to_string()));
            }
        }
    }
    out
}

/// Stops every container (app containers together, then sidecars in reverse order, then any
/// other init container) and every ready sandbox of the pod. Nothing is removed.
pub async fn kill_pod(kl: &Kubelet, pod: &Pod, rt: &PodRuntimeStatus, grace: i64) {
    let spec = pod.spec.as_ref();
    let apps: Vec<&str> = spec
        .map(|s| s.containers.iter().map(|c| c.name.as_str()).collect())
        .unwrap_or_default();
    let inits: Vec<&Container> = spec
        .and_then(|s| s.init_containers.as_ref())
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let stop_all = |targets: Vec<(String, String)>| async move {
        let futs = targets.into_iter().map(|(id, name)| async move {
            if let Err(e) = kl.runtime.stop_container(&id, grace).await {
                if !e.is_not_found() {
                    tracing::warn!(pod = %pod_ref(pod), container = %name, error = %e, "cannot stop container");
                }
            }
        });
        futures_util::future::join_all(futs).await;
    };
    // Containers the spec no longer names (an edited pod) go with the app containers.
    let known: std::collections::HashSet<&str> = apps
        .iter()
        .copied()
        .chain(inits.iter().map(|c| c.name.as_str()))
        .collect();
    let mut first = running_ids(rt, apps.iter().copied());
    for s in &rt.containers {
        let n = s.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or("");
        if !known.contains(n)
            && (s.state == cri::ContainerState::ContainerRunning as i32
                || s.state == cri::ContainerState::ContainerCreated as i32)
        {
            first.push((s.id.clone(), n.to_string()));
        }
    }
    stop_all(first).await;
    for c in inits.iter().rev() {
        stop_all(running_ids(rt, std::iter::once(c.name.as_str()))).await;
    }
    for sb in &rt.sandboxes {
        if sb.state == cri::PodSandboxState::SandboxReady as i32 {
            if let Err(e) = kl.runtime.stop_pod_sandbox(&sb.id).await {
                tracing::warn!(pod = %pod_ref(pod), sandbox = %sb.id, error = %e, "cannot stop pod sandbox");
            }
        }
    }
}

/// Removes every container and sandbox of a stopped pod, then its cgroup, log and pod
/// directories.
async fn remove_pod(kl: &Kubelet, id: &PodIdentity, rt: &PodRuntimeStatus, qos: Option<QosClass>) {
    for c in &rt.containers {
        if let Err(e) = kl.runtime.remove_container(&c.id).await {
            if !e.is_not_found() {
                tracing::warn!(uid = %id.uid, container = %c.id, error = %e, "cannot remove container");
            }
        }
    }
    for sb in &rt.sandboxes {
        if let Err(e) = kl.runtime.remove_pod_sandbox(&sb.id).await {
            if !e.is_not_found() {
                tracing::warn!(uid = %id.uid, sandbox = %sb.id, error = %e, "cannot remove sandbox");
            }
        }
    }
    let qos_list: Vec<QosClass> = match qos {
        Some(q) => vec![q],
        None => kl
            .cgroups
            .list_pod_cgroups()
            .into_iter()
            .filter(|(u, _)| *u == id.uid)
            .map(|(_, q)| q)
            .collect(),
    };
    for q in qos_list {
        if let Err(e) = kl.cgroups.remove_pod_cgroup(q, &id.uid) {
            tracing::warn!(uid = %id.uid, error = %e, "cannot remove pod cgroup");
        }
    }
    let log_dir = pod_log_dir(&kl.opts.log_root, &id.namespace, &id.name, &id.uid);
    if let Err(e) = std::fs::remove_dir_all(&log_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %log_dir.display(), error = %e, "cannot remove pod log directory");
        }
    }
    if let Err(e) = poddirs::remove_pod_dir(&kl.pods_root(), &id.uid) {
        tracing::warn!(uid = %id.uid, error = %e, "cannot remove pod directory");
    }
}

/// The pod left its source: stop it with its grace period and remove everything it had.
pub async fn terminate_pod(kl: &Kubelet, pod: &Pod, _state: &mut WorkerState) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let id = PodIdentity {
        name: pod.metadata.name.clone().unwrap_or_default(),
        namespace: pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        uid: uid.clone(),
    };
    tracing::info!(pod = %pod_ref(pod), "terminating pod");
    // Retry while the runtime is unreachable: a pod is never forgotten half torn down.
    let rt = loop {
        match kl
            .runtime
            .get_pod_status(&uid, &id.name, &id.namespace)
            .await
        {
            Ok(rt) => break rt,
            Err(e) => {
                tracing::warn!(pod = %pod_ref(pod), error = %e, "cannot read pod status for termination; retrying");
                tokio::time::sleep(RUNTIME_DOWN_REQUEUE).await;
            }
        }
    };
    kill_pod(kl, pod, &rt, termination_grace(pod)).await;
    let rt = kl
        .runtime
        .get_pod_status(&uid, &id.name, &id.namespace)
        .await
        .unwrap_or(rt);
    remove_pod(kl, &id, &rt, Some(pod_qos_class(pod))).await;
    tracing::info!(pod = %pod_ref(pod), "pod terminated and removed");
}

/// Tears down a runtime pod no source claims, using the grace period recorded on its containers.
pub async fn teardown_orphan(kl: &Kubelet, id: &PodIdentity) {
    let Ok(rt) = kl
        .runtime
        .get_pod_status(&id.uid, &id.name, &id.namespace)
        .await
    else {
        return;
    };
    let grace = rt
        .containers
        .iter()
        .filter_map(|c| c.annotations.get(labels::POD_TERMINATION_GRACE_ANNOTATION))
        .filter_map(|g| g.parse::<i64>().ok())
        .max()
        .unwrap_or(30)
        .max(MIN_GRACE_SECONDS);
    for c in &rt.containers {
        if c.state == cri::ContainerState::ContainerRunning as i32
            || c.state == cri::ContainerState::ContainerCreated as i32
        {
            if let Err(e) = kl.runtime.stop_container(&c.id, grace).await {
                tracing::warn!(uid = %id.uid, container = %c.id, error = %e, "cannot stop orphaned container");
            }
        }
    }
    for sb in &rt.sandboxes {
        let _ = kl.runtime.stop_pod_sandbox(&sb.id).await;
    }
    let rt = kl
        .runtime
        .get_pod_status(&id.uid, &id.name, &id.namespace)
        .await
        .unwrap_or(rt);
    remove_pod(kl, id, &rt, None).await;
    tracing::info!(pod = %format!("{}/{}", id.namespace, id.name), "orphaned pod removed");
}
