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
use crate::kuberuntime::actions::{
    compute_pod_actions, sandbox_hash, KillReason, SANDBOX_HASH_LABEL,
};
use crate::kuberuntime::container::{
    container_config_with_env, environment_reporting, ContainerContext, INVALID_ENV_NAMES,
};
use crate::kuberuntime::dns;
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
/// How long a postStart hook may run (the kubelet waits without a bound; a hung hook would hold
/// the pod worker forever).
const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

pub const CRASH_LOOP_BACKOFF: &str = "CrashLoopBackOff";
pub const CREATE_CONTAINER_CONFIG_ERROR: &str = "CreateContainerConfigError";
pub const CREATE_CONTAINER_ERROR: &str = "CreateContainerError";
pub const RUN_CONTAINER_ERROR: &str = "RunContainerError";
/// A postStart hook failed (the kubelet's `ErrPostStartHook`).
pub const POST_START_HOOK_ERROR: &str = "PostStartHookError";
/// The first retry after a failed volume setup; doubles up to [`MOUNT_RETRY_MAX`].
const MOUNT_RETRY: Duration = Duration::from_secs(1);
const MOUNT_RETRY_MAX: Duration = Duration::from_secs(60);

/// What a pod worker keeps between syncs.
#[derive(Debug)]
pub struct WorkerState {
    /// Waiting reason of each container's last failed start (the reason cache).
    pub failures: HashMap<String, StartFailure>,
    pub first_seen: Timestamp,
    first_seen_instant: Instant,
    start_reported: bool,
    synced: bool,
    /// Consecutive syncs whose volume setup failed (for the retry backoff).
    mount_failures: u32,
    /// A terminal pod's volumes and probes were released.
    released: bool,
    /// The pod's deletion (deletionTimestamp) was noticed.
    deletion_seen: bool,
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
            mount_failures: 0,
            released: false,
            deletion_seen: false,
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

/// The keyring of the pod's `imagePullSecrets` (`getPullSecretsForPod`): Secrets that cannot
/// be read are reported with the kubelet's `FailedToRetrieveImagePullSecret` event and the
/// pull goes on without them; malformed ones are logged and skipped.
fn pull_credentials(kl: &Kubelet, pod: &Pod) -> crate::images::keyring::Keyring {
    let names: Vec<&str> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.as_str())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Default::default();
    }
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut found = Vec::new();
    let mut failed = Vec::new();
    for name in names {
        match kl.objects.secret(ns, name) {
            Some(s) => found.push(s),
            None => failed.push(name),
        }
    }
    if !failed.is_empty() {
        kl.events.warning(
            pod,
            "FailedToRetrieveImagePullSecret",
            &format!(
                "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
                failed.join(", ")
            ),
        );
    }
    let (keyring, errors) = crate::images::keyring::Keyring::from_secrets(&found);
    for e in errors {
        tracing::warn!(pod = %pod_ref(pod), error = %e, "ignoring image pull secret");
    }
    keyring
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

    // A pod the API server is deleting (deletionTimestamp) is stopped with its deletion grace
    // period and never restarted, as the kubelet's pod workers do once termination is
    // requested; the status manager deletes it from the API once nothing of it runs.
    let deleting = pod.metadata.deletion_timestamp.is_some();
    if deleting && !state.deletion_seen {
        state.deletion_seen = true;
        tracing::info!(pod = %pod_ref(pod), grace = termination_grace(pod), "pod is being deleted: stopping it");
    }
    if is_terminal(kl, &uid) || deleting {
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
            // An eviction or a node shutdown may have shortened the grace period.
            let grace = kl
                .grace_override(&uid)
                .unwrap_or_else(|| termination_grace(pod));
            kill_pod(kl, pod, &rt, grace).await;
            acted = true;
        } else if !state.released {
            // Nothing runs any more: probes stop and volumes are torn down (the pod directory
            // stays until the pod leaves its source).
            kl.prober.remove_pod(&uid);
            if let Err(e) = kl.volumes.unmount_pod(&uid).await {
                tracing::warn!(pod = %pod_ref(pod), error = %e, "cannot tear down volumes of a finished pod");
            } else {
                state.released = true;
                kl.status.set_reclaimed(&uid);
            }
        }
    } else {
        let cgroup_parent = match kl.cgroups.ensure_pod_cgroup(
            qos,
            &uid,
            &pod_resources(pod, kl.opts.pod_pids_limit, kl.opts.cfs),
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
        kl.prober.add_pod(pod);
        let (probes, _) = kl.prober.verdicts(pod, &rt);
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
                kl.events.normal(pod, "Killing", &info.message);
                let grace = container_grace(pod, &info.name, info.reason);
                let pod_ip = hook_ip(kl, pod, &rt);
                kill_container(kl, pod, id, &info.name, grace, &pod_ip).await;
                acted = true;
            }
        }
        let mut sandbox_id = actions.sandbox_id.clone();
        let sb_ctx_parent = cgroup_parent;
        let wants_start = !actions.init_containers_to_start.is_empty()
            || !actions.containers_to_start.is_empty()
            || !actions.ephemeral_containers_to_start.is_empty();
        // Volumes are set up before the sandbox and any container (`WaitForAttachAndMount`); a
        // pod whose volumes fail stays ContainerCreating and is retried with a backoff. Every
        // sync hands the volume manager the pod as it is now (downwardAPI files follow it).
        let facts = kl.facts(rt.ips());
        // The Secrets and ConfigMaps the pod references (volumes, env, pull secrets) are
        // waited for here, asynchronously, so that the lookups below answer from the cache
        // without blocking a worker thread.
        kl.objects.wait_synced(pod).await;
        let mounted = kl.volumes.mount_pod(pod, &facts).await;
        if wants_start {
            match mounted {
                Ok(()) => state.mount_failures = 0,
                Err(e) => {
                    state.mount_failures = state.mount_failures.saturating_add(1);
                    let retry = MOUNT_RETRY
                        .saturating_mul(1 << state.mount_failures.min(7).saturating_sub(1))
                        .min(MOUNT_RETRY_MAX);
                    tracing::warn!(pod = %pod_ref(pod), retry = ?retry, "{e}");
                    if acted {
                        if let Ok(s) = kl.runtime.get_pod_status(&uid, &name, &ns).await {
                            rt = s;
                        }
                    }
                    publish_status(kl, pod, &rt, state);
                    return SyncOutcome {
                        requeue_after: retry.min(requeue),
                        operation,
                    };
                }
            }
        }
        if actions.create_sandbox && wants_start {
            let log_dir = pod_log_dir(&kl.opts.log_root, &ns, &name, &uid);
            if let Err(e) = std::fs::create_dir_all(&log_dir) {
                tracing::error!(pod = %pod_ref(pod), dir = %log_dir.display(), error = %e, "cannot create pod log directory");
            }
            let cfg = match make_sandbox_config(kl, pod, actions.attempt, &sb_ctx_parent).await {
                Ok(cfg) => cfg,
                Err(e) => {
                    // The kubelet's createPodSandbox: no sandbox without its config.
                    let message = format!("Failed to create pod sandbox: {e}");
                    tracing::error!(pod = %pod_ref(pod), error = %e, "FailedCreatePodSandBox");
                    kl.events.warning(pod, "FailedCreatePodSandBox", &message);
                    publish_status(kl, pod, &rt, state);
                    return SyncOutcome {
                        requeue_after: ERROR_REQUEUE,
                        operation,
                    };
                }
            };
            tracing::info!(pod = %pod_ref(pod), attempt = actions.attempt, "creating pod sandbox");
            kl.metrics.started_pods_total.inc();
            match kl.runtime.run_pod_sandbox(cfg).await {
                Ok(id) => {
                    sandbox_id = id;
                    acted = true;
                }
                Err(e) => {
                    kl.metrics.started_pods_errors_total.inc();
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
            let sb_cfg = match make_sandbox_config(kl, pod, attempt, &sb_ctx_parent).await {
                Ok(cfg) => cfg,
                Err(e) => {
                    tracing::error!(pod = %pod_ref(pod), error = %e, "GeneratePodSandboxConfig for pod failed");
                    publish_status(kl, pod, &rt, state);
                    return SyncOutcome {
                        requeue_after: ERROR_REQUEUE,
                        operation,
                    };
                }
            };
            let spec = pod.spec.as_ref();
            let inits = spec
                .and_then(|s| s.init_containers.as_deref())
                .unwrap_or(&[]);
            let apps = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
            let ephemerals: Vec<(Container, Option<String>)> = spec
                .and_then(|s| s.ephemeral_containers.as_deref())
                .map(|list| {
                    actions
                        .ephemeral_containers_to_start
                        .iter()
                        .filter_map(|&i| list.get(i))
                        .map(|e| (ephemeral_as_container(e), e.target_container_name.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let targets = actions
                .init_containers_to_start
                .iter()
                .map(|&i| (&inits[i], ContainerKind::Init))
                .chain(
                    actions
                        .containers_to_start
                        .iter()
                        .map(|&i| (&apps[i], ContainerKind::Regular)),
                )
                .chain(ephemerals.iter().map(|(c, target)| {
                    (
                        c,
                        ContainerKind::Ephemeral {
                            target: target.as_deref(),
                        },
                    )
                }));
            for (c, kind) in targets {
                match start_container(kl, pod, c, kind, qos, &sandbox_id, &sb_cfg, &rt, &pod_ips)
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

/// The grace period of a container killed for `reason` (`setTerminationGracePeriod`): a pod
/// being deleted gets its deletion grace period; otherwise a kill for a failed startup or
/// liveness probe takes that probe's `terminationGracePeriodSeconds` when it has one, else the
/// pod's.
fn container_grace(pod: &Pod, name: &str, reason: KillReason) -> i64 {
    if pod.metadata.deletion_grace_period_seconds.is_some() {
        return termination_grace(pod);
    }
    let container = pod.spec.as_ref().and_then(|s| {
        s.containers
            .iter()
            .chain(s.init_containers.iter().flatten())
            .find(|c| c.name == name)
    });
    let probe = container.and_then(|c| match reason {
        KillReason::StartupProbe => c.startup_probe.as_ref(),
        KillReason::LivenessProbe => c.liveness_probe.as_ref(),
        KillReason::SpecChanged | KillReason::UnknownState => None,
    });
    match probe.and_then(|p| p.termination_grace_period_seconds) {
        Some(g) => g.max(MIN_GRACE_SECONDS),
        None => termination_grace(pod),
    }
}

/// The sandbox config, with the pod's DNS (the host's resolver file read now, as the kubelet
/// reads it for every sandbox). DNS warnings become events on the pod; an unreadable resolver
/// file fails the sandbox.
async fn make_sandbox_config(
    kl: &Kubelet,
    pod: &Pod,
    attempt: u32,
    cgroup_parent: &str,
) -> Result<cri::PodSandboxConfig, dns::DnsError> {
    let settings = &kl.opts.dns;
    let host = dns::read_host_config(settings.resolv_conf.as_deref()).await?;
    let (pod_dns, events) = dns::pod_dns(settings, &host, pod);
    for e in events {
        // As the kubelet: the missing cluster DNS is an event only (the agent says it once at
        // start); a cut resolver configuration is also logged.
        if e.reason == "MissingClusterDNS" {
            tracing::debug!(pod = %pod_ref(pod), reason = e.reason, "{}", e.message);
        } else {
            tracing::warn!(pod = %pod_ref(pod), reason = e.reason, "{}", e.message);
        }
        kl.events.warning(pod, e.reason, &e.message);
    }
    let ctx = SandboxContext {
        node: &kl.opts.node_name,
        cgroup_parent: cgroup_parent.to_string(),
        log_root: &kl.opts.log_root,
        dns: pod_dns.into(),
        seccomp: &kl.opts.seccomp,
    };
    let mut cfg = sandbox_config(pod, attempt, &ctx);
    cfg.labels
        .insert(SANDBOX_HASH_LABEL.into(), sandbox_hash(pod));
    Ok(cfg)
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
    let (verdicts, ready) = kl.prober.verdicts(pod, &rt);
    let status = generate_pod_status(
        pod,
        &rt,
        &StatusInputs {
            failures: Some(&state.failures),
            ready: Some(&ready),
            not_started: Some(&verdicts.not_started),
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
    kl.prober.update_pod(pod, &rt, &hook_ip(kl, pod, &rt));
}

/// The IP probes and lifecycle hooks default to: the pod's IP, or the node's for host-network
/// pods.
fn hook_ip(kl: &Kubelet, pod: &Pod, rt: &PodRuntimeStatus) -> String {
    if crate::kuberuntime::sandbox::host_network(pod) {
        return kl.opts.host_ips.first().cloned().unwrap_or_default();
    }
    rt.ips().into_iter().next().unwrap_or_default()
}

fn spec_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// Stops one container: its preStop hook first (`killContainer`), within the grace period, then
/// StopContainer with what is left of it (at least the minimum).
async fn kill_container(kl: &Kubelet, pod: &Pod, id: &str, name: &str, grace: i64, pod_ip: &str) {
    let mut grace = grace;
    if let Some(handler) = spec_container(pod, name).and_then(|c| {
        c.lifecycle
            .as_ref()
            .and_then(|l| l.pre_stop.as_ref())
            .map(|h| (c, h))
    }) {
        let (c, h) = handler;
        let started = Instant::now();
        let budget = Duration::from_secs(grace.max(0) as u64);
        tracing::info!(pod = %pod_ref(pod), container = %name, "running preStop hook");
        if let Err(e) = kl.hooks.run(pod, c, id, h, pod_ip, budget).await {
            kl.events.warning(pod, "FailedPreStopHook", &e.to_string());
        }
        grace = (grace - started.elapsed().as_secs() as i64).max(MIN_GRACE_SECONDS);
    }
    if let Err(e) = kl.runtime.stop_container(id, grace).await {
        if !e.is_not_found() {
            tracing::warn!(pod = %pod_ref(pod), container = %name, error = %e, "cannot stop container");
        }
    }
}

/// Which list of the spec a container comes from.
#[derive(Debug, Clone, Copy)]
enum ContainerKind<'a> {
    Init,
    Regular,
    /// A debug container (`kubectl debug`), in the process namespace of `target` when set.
    Ephemeral {
        target: Option<&'a str>,
    },
}

/// An ephemeral container as the container it runs as (the two share their common fields).
fn ephemeral_as_container(e: &k8s_openapi::api::core::v1::EphemeralContainer) -> Container {
    let mut v = serde_json::to_value(e).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.remove("targetContainerName");
    }
    serde_json::from_value(v).unwrap_or_else(|_| Container {
        name: e.name.clone(),
        image: e.image.clone(),
        ..Default::default()
    })
}

/// Starts one container: crash-loop backoff, image, config, create, start. On failure returns
/// the waiting reason and when to try again.
#[allow(clippy::too_many_arguments)]
async fn start_container(
    kl: &Kubelet,
    pod: &Pod,
    c: &Container,
    kind: ContainerKind<'_>,
    qos: QosClass,
    sandbox_id: &str,
    sandbox_cfg: &cri::PodSandboxConfig,
    rt: &PodRuntimeStatus,
    pod_ips: &[String],
) -> Result<(), (StartFailure, Duration)> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let init = matches!(kind, ContainerKind::Init);
    let ctype = match kind {
        ContainerKind::Init => "init_container",
        ContainerKind::Regular => "container",
        ContainerKind::Ephemeral { .. } => "ephemeral_container",
    };
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
        // Stepped now, as the container restarts: a reset needs 10 clean minutes from here.
        b.next(&key, finished, now);
    }
    let creds = pull_credentials(kl, pod);
    let image_ref = kl
        .images
        .ensure_image_with(&uid, c, Some(sandbox_cfg), &creds)
        .await
        .map_err(|e| fail(e.reason, e.message, ERROR_REQUEUE))?;
    let restart_count = rt
        .container(&c.name)
        .map(|s| labels::restart_count(&s.annotations) + 1)
        .unwrap_or(0);
    let pods_root = kl.pods_root();
    let facts = kl.facts(pod_ips.to_vec());
    // Volume mounts first: subPathExpr expands with the container's environment (computed
    // once, for the mounts and the config).
    let (mut mounts, env) = {
        // A missing Secret, ConfigMap or key fails here (CreateContainerConfigError, retried
        // on the next sync); skipped envFrom keys are reported as the kubelet's event.
        let mut skipped = Vec::new();
        let env = environment_reporting(pod, c, &facts, kl.objects.as_ref(), &mut |w| {
            skipped.push(w)
        })
        .map_err(|e| fail(CREATE_CONTAINER_CONFIG_ERROR, e.to_string(), ERROR_REQUEUE))?;
        for w in skipped {
            kl.events.warning(pod, INVALID_ENV_NAMES, &w);
        }
        let volumes = kl.volumes.clone();
        let (p, cc) = (pod.clone(), c.clone());
        tokio::task::spawn_blocking(move || {
            volumes
                .container_mounts(&p, &cc, &env)
                .map(|mounts| (mounts, env))
        })
        .await
        .map_err(|e| fail(CREATE_CONTAINER_CONFIG_ERROR, e.to_string(), ERROR_REQUEUE))?
        .map_err(|e| fail(CREATE_CONTAINER_CONFIG_ERROR, e.to_string(), ERROR_REQUEUE))?
    };
    let mounts_etc_hosts = mounts.iter().any(|m| m.container_path == "/etc/hosts");
    let hostname = pod_hostname(pod);
    match poddirs::ensure_etc_hosts(&pods_root, pod, pod_ips, &hostname) {
        Ok(Some(_)) if mounts_etc_hosts => {}
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
    let ctx = ContainerContext {
        node: &kl.opts.node_name,
        image_ref: &image_ref,
        restart_count,
        init,
        qos,
        facts: &facts,
        objects: kl.objects.as_ref(),
        mounts,
        cfs: kl.opts.cfs,
        seccomp: &kl.opts.seccomp,
    };
    let mut cfg = container_config_with_env(pod, c, &ctx, kl.opts.node_memory, env);
    // Devices from device plugins: their Allocate answers (envs, mounts, device nodes,
    // annotations, CDI devices), asked once per container; PreStartContainer when wanted.
    if let Some(dm) = kl.devices.get() {
        let opts = dm
            .container_options(&uid, &c.name)
            .await
            .map_err(|e| fail(CREATE_CONTAINER_CONFIG_ERROR, e.to_string(), ERROR_REQUEUE))?;
        opts.apply(&mut cfg);
    }
    if let ContainerKind::Ephemeral {
        target: Some(target),
    } = kind
    {
        // The debug container joins the target's process namespace (`--target`).
        let Some(target_id) = rt
            .container(target)
            .filter(|s| s.state == cri::ContainerState::ContainerRunning as i32)
            .map(|s| s.id.clone())
        else {
            return Err(fail(
                CREATE_CONTAINER_CONFIG_ERROR,
                format!("cannot find the target container {target:?}: it is not running"),
                ERROR_REQUEUE,
            ));
        };
        if let Some(ns) = cfg
            .linux
            .as_mut()
            .and_then(|l| l.security_context.as_mut())
            .and_then(|sc| sc.namespace_options.as_mut())
        {
            ns.pid = cri::NamespaceMode::Target as i32;
            ns.target_id = target_id;
        }
    }
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
    // postStart runs right after the start; the container is not "running" for the pod worker
    // until it returns, and a failure kills it (`FailedPostStartHook`).
    if let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        let pod_ip = if crate::kuberuntime::sandbox::host_network(pod) {
            kl.opts.host_ips.first().cloned().unwrap_or_default()
        } else {
            pod_ips.first().cloned().unwrap_or_default()
        };
        if let Err(e) = kl
            .hooks
            .run(pod, c, &id, h, &pod_ip, POST_START_TIMEOUT)
            .await
        {
            let msg = e.to_string();
            kl.events.warning(pod, "FailedPostStartHook", &msg);
            kill_container(kl, pod, &id, &c.name, termination_grace(pod), &pod_ip).await;
            return Err(fail(POST_START_HOOK_ERROR, msg, ERROR_REQUEUE));
        }
    }
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
    let pod_ip = hook_ip(kl, pod, rt);
    let pod_ip = pod_ip.as_str();
    let stop_all = |targets: Vec<(String, String)>| async move {
        let futs = targets.into_iter().map(|(id, name)| async move {
            kill_container(kl, pod, &id, &name, grace, pod_ip).await;
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

/// Removes every container and sandbox of a stopped pod, then its log directory, volumes,
/// cgroup and pod directory.
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
    let log_dir = pod_log_dir(&kl.opts.log_root, &id.namespace, &id.name, &id.uid);
    if let Err(e) = std::fs::remove_dir_all(&log_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %log_dir.display(), error = %e, "cannot remove pod log directory");
        }
    }
    // Volumes after the containers that used them, and before the pod directory: nothing
    // mounted may be removed through.
    if let Err(e) = kl.volumes.unmount_pod(&id.uid).await {
        tracing::warn!(uid = %id.uid, error = %e, "cannot tear down pod volumes; keeping the pod directory");
        return;
    }
    // The cgroup once the volumes are gone (memory-backed ones are then not charged to the
    // parent), as the kubelet orders it; off the runtime's threads (`spawn_blocking`), a few
    // quick tries, and a cgroup still busy after them is housekeeping's, with its own backoff
    // and a single report. When the volumes could not be torn down, housekeeping also keeps the
    // cgroup, at minimum CPU, until they are.
    kl.cgroups.destroy_pod_cgroup(&id.uid, qos).await;
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
    kl.prober.remove_pod(&uid);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_kill_takes_the_failed_probes_grace_period() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "uid": "u"},
            "spec": {
                "terminationGracePeriodSeconds": 40,
                "containers": [
                    {"name": "both", "image": "i",
                     "startupProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 7},
                     "livenessProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 11}},
                    {"name": "startup-only", "image": "i",
                     "startupProbe": {"exec": {"command": ["true"]}, "terminationGracePeriodSeconds": 0},
                     "livenessProbe": {"exec": {"command": ["true"]}}}
                ]
            }
        }))
        .unwrap();
        assert_eq!(container_grace(&pod, "both", KillReason::StartupProbe), 7);
        assert_eq!(container_grace(&pod, "both", KillReason::LivenessProbe), 11);
        assert_eq!(container_grace(&pod, "both", KillReason::SpecChanged), 40);
        assert_eq!(container_grace(&pod, "both", KillReason::UnknownState), 40);
        // A probe without its own grace period falls back to the pod's; a tiny one is raised
        // to the minimum.
        assert_eq!(
            container_grace(&pod, "startup-only", KillReason::LivenessProbe),
            40
        );
        assert_eq!(
            container_grace(&pod, "startup-only", KillReason::StartupProbe),
            MIN_GRACE_SECONDS
        );
        // A pod being deleted gets its deletion grace period whatever the probe says.
        let mut deleting = pod.clone();
        deleting.metadata.deletion_grace_period_seconds = Some(5);
        assert_eq!(
            container_grace(&deleting, "both", KillReason::LivenessProbe),
            5
        );
    }
}
