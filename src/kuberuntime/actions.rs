//! What a pod needs now, decided from its spec and what the runtime reports — the kubelet's
//! `computePodActions`. A pure function: no I/O, so every lifecycle case is a unit test.
//!
//! The rules, in order:
//! - A pod needs a new sandbox when it has none, the newest is not ready, more than one is
//!   ready, its network has no IP, or a sandbox-level part of the spec changed (namespaces,
//!   hostname, DNS, host ports). A pod with `restartPolicy: Never` whose containers already ran
//!   gets no new sandbox.
//! - Init containers run one at a time, in order; a failed one is restarted per the pod's restart
//!   policy (or fails the pod under `Never`) and blocks the app containers. Restartable init
//!   containers (`restartPolicy: Always`, sidecars) keep running and are started before the next
//!   init container; they are restarted whenever they exit.
//! - App containers that are not running start if their restart policy allows it; running
//!   containers whose spec hash changed, or whose liveness or startup probe failed, are killed
//!   (and restarted per policy).
//! - With nothing running and nothing to start, the pod is done: its sandbox is stopped.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{Container, Pod};
use md5::{Digest, Md5};
use proto::cri;

use super::labels;
use super::PodRuntimeStatus;

/// Label on sandboxes holding the hash of the sandbox-level spec.
pub const SANDBOX_HASH_LABEL: &str = "kubelet-rs.io/sandbox-hash";

/// Probe verdicts the decision needs, by container ID.
#[derive(Debug, Clone, Default)]
pub struct ProbeVerdicts {
    pub liveness_failed: HashSet<String>,
    pub startup_failed: HashSet<String>,
    /// Running containers whose startup probe has not succeeded yet.
    pub not_started: HashSet<String>,
}

/// Why a running container is killed (the kubelet's `containerKillReason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// Its spec (hash) changed.
    SpecChanged,
    /// The runtime reports it in an unknown state.
    UnknownState,
    /// Its liveness probe failed.
    LivenessProbe,
    /// Its startup probe failed.
    StartupProbe,
}

impl KillReason {
    /// Whether a probe failed (the kill then counts as a failure for the restart policy).
    pub fn is_probe_failure(self) -> bool {
        matches!(self, KillReason::LivenessProbe | KillReason::StartupProbe)
    }

    /// The event reason: `Unhealthy` for a failed probe, empty otherwise.
    pub fn event_reason(self) -> &'static str {
        if self.is_probe_failure() {
            "Unhealthy"
        } else {
            ""
        }
    }
}

/// Why a running container is killed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KillInfo {
    pub name: String,
    pub message: String,
    pub reason: KillReason,
}

/// The decision for one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodActions {
    /// Stop every container and the sandbox.
    pub kill_pod: bool,
    pub create_sandbox: bool,
    /// The sandbox to use when none is created.
    pub sandbox_id: String,
    pub attempt: u32,
    /// Indexes into `spec.initContainers`.
    pub init_containers_to_start: Vec<usize>,
    /// Indexes into `spec.containers`.
    pub containers_to_start: Vec<usize>,
    /// Indexes into `spec.ephemeralContainers`: those never created (they never restart).
    pub ephemeral_containers_to_start: Vec<usize>,
    /// Running containers to kill, by container ID.
    pub containers_to_kill: BTreeMap<String, KillInfo>,
}

fn state(c: &cri::ContainerStatus) -> cri::ContainerState {
    cri::ContainerState::try_from(c.state).unwrap_or(cri::ContainerState::ContainerUnknown)
}

fn sandbox_ready(s: &cri::PodSandboxStatus) -> bool {
    s.state == cri::PodSandboxState::SandboxReady as i32
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The hash of everything that lives in the sandbox rather than a container.
pub fn sandbox_hash(pod: &Pod) -> String {
    let spec = pod.spec.as_ref();
    let host_ports: Vec<_> = spec
        .map(|s| {
            s.containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter(|p| p.host_port.unwrap_or(0) != 0)
                .map(|p| {
                    (
                        p.container_port,
                        p.host_port,
                        p.protocol.clone(),
                        p.host_ip.clone(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let key = serde_json::json!({
        "hostNetwork": spec.and_then(|s| s.host_network),
        "hostPID": spec.and_then(|s| s.host_pid),
        "hostIPC": spec.and_then(|s| s.host_ipc),
        "shareProcessNamespace": spec.and_then(|s| s.share_process_namespace),
        "hostname": spec.and_then(|s| s.hostname.clone()),
        "subdomain": spec.and_then(|s| s.subdomain.clone()),
        "dnsPolicy": spec.and_then(|s| s.dns_policy.clone()),
        "dnsConfig": spec.and_then(|s| s.dns_config.clone()),
        "sysctls": spec.and_then(|s| s.security_context.as_ref()).and_then(|p| p.sysctls.clone()),
        "hostPorts": host_ports,
    });
    let digest = Md5::digest(key.to_string().as_bytes());
    format!(
        "{:08x}",
        u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
    )
}

/// Whether the pod needs a new sandbox: (create, attempt, current sandbox id).
pub fn sandbox_changed(pod: &Pod, status: &PodRuntimeStatus) -> (bool, u32, String) {
    let Some(newest) = status.sandboxes.first() else {
        return (true, 0, String::new());
    };
    let attempt = newest.metadata.as_ref().map(|m| m.attempt).unwrap_or(0);
    let ready_count = status.sandboxes.iter().filter(|s| sandbox_ready(s)).count();
    let id = newest.id.clone();
    if ready_count > 1 || !sandbox_ready(newest) {
        return (true, attempt + 1, id);
    }
    let host_net = super::sandbox::host_network(pod);
    let sb_host_net = newest
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.as_ref())
        .map(|o| o.network == cri::NamespaceMode::Node as i32)
        .unwrap_or(false);
    if host_net != sb_host_net {
        return (true, attempt + 1, id);
    }
    if !host_net
        && newest
            .network
            .as_ref()
            .map(|n| n.ip.is_empty())
            .unwrap_or(true)
    {
        return (true, attempt + 1, id);
    }
    if let Some(h) = newest.labels.get(SANDBOX_HASH_LABEL) {
        if *h != sandbox_hash(pod) {
            return (true, attempt + 1, id);
        }
    }
    (false, attempt, id)
}

/// The kubelet's `ShouldContainerBeRestarted` for a container that is not running.
pub fn should_restart(
    pod: &Pod,
    latest: Option<&cri::ContainerStatus>,
    policy_override: Option<&str>,
) -> bool {
    if pod.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let Some(s) = latest else {
        return true;
    };
    match state(s) {
        cri::ContainerState::ContainerRunning => false,
        cri::ContainerState::ContainerCreated | cri::ContainerState::ContainerUnknown => true,
        cri::ContainerState::ContainerExited => {
            match policy_override.unwrap_or(restart_policy(pod)) {
                "Never" => false,
                "OnFailure" => s.exit_code != 0,
                _ => true,
            }
        }
    }
}

fn hash_of(s: &cri::ContainerStatus) -> Option<&str> {
    s.annotations
        .get(labels::CONTAINER_HASH_ANNOTATION)
        .map(String::as_str)
}

/// Why a running container must go, if it must.
fn kill_reason(
    c: &Container,
    s: &cri::ContainerStatus,
    probes: &ProbeVerdicts,
) -> Option<(String, KillReason)> {
    if hash_of(s).is_some_and(|h| h != labels::container_hash(c)) {
        return Some((
            format!("Container {} definition changed", c.name),
            KillReason::SpecChanged,
        ));
    }
    if probes.liveness_failed.contains(&s.id) {
        return Some((
            format!("Container {} failed liveness probe", c.name),
            KillReason::LivenessProbe,
        ));
    }
    if probes.startup_failed.contains(&s.id) {
        return Some((
            format!("Container {} failed startup probe", c.name),
            KillReason::StartupProbe,
        ));
    }
    None
}

/// Init container progress. Returns whether the pod is initialized (every ordinary init
/// container succeeded); fills `actions` with init containers to start or kill, or `kill_pod`
/// when an init container failed under `restartPolicy: Never`.
fn init_container_actions(
    pod: &Pod,
    status: &PodRuntimeStatus,
    probes: &ProbeVerdicts,
    actions: &mut PodActions,
) -> bool {
    let spec = match pod.spec.as_ref() {
        Some(s) => s,
        None => return true,
    };
    let inits = spec.init_containers.as_deref().unwrap_or(&[]);
    if inits.is_empty() {
        return true;
    }
    // Once an app container exists the pod was initialized; init containers GC'd since then
    // are not run again (only sidecars are kept running).
    let app_started = spec
        .containers
        .iter()
        .any(|c| status.container(&c.name).is_some());
    let mut initialized = true;
    for (i, c) in inits.iter().enumerate() {
        let latest = status.container(&c.name);
        if is_sidecar(c) {
            match latest {
                Some(s) if state(s) == cri::ContainerState::ContainerRunning => {
                    if let Some((message, reason)) = kill_reason(c, s, probes) {
                        actions.containers_to_kill.insert(
                            s.id.clone(),
                            KillInfo {
                                name: c.name.clone(),
                                message: format!("{message}, will be restarted"),
                                reason,
                            },
                        );
                        actions.init_containers_to_start.push(i);
                        if !app_started {
                            return false;
                        }
                    } else if probes.not_started.contains(&s.id) && !app_started {
                        // The next init container waits for this sidecar to be started.
                        return false;
                    }
                }
                _ => {
                    if let Some(s) =
                        latest.filter(|s| state(s) == cri::ContainerState::ContainerUnknown)
                    {
                        actions.containers_to_kill.insert(
                            s.id.clone(),
                            KillInfo {
                                name: c.name.clone(),
                                message: format!("Container {} is in unknown state", c.name),
                                reason: KillReason::UnknownState,
                            },
                        );
                    }
                    actions.init_containers_to_start.push(i);
                    if !app_started {
                        return false;
                    }
                }
            }
            continue;
        }
        if app_started {
            continue;
        }
        match latest.map(|s| (s, state(s))) {
            None => {
                actions.init_containers_to_start.push(i);
                return false;
            }
            Some((s, cri::ContainerState::ContainerRunning)) => {
                if let Some((message, reason)) = kill_reason(c, s, probes) {
                    actions.containers_to_kill.insert(
                        s.id.clone(),
                        KillInfo {
                            name: c.name.clone(),
                            message,
                            reason,
                        },
                    );
                    actions.init_containers_to_start.push(i);
                }
                return false;
            }
            Some((s, cri::ContainerState::ContainerExited)) => {
                if s.exit_code == 0 {
                    continue;
                }
                // A failed init container: restart it unless the pod never restarts.
                if restart_policy(pod) == "Never" {
                    actions.kill_pod = true;
                } else {
                    actions.init_containers_to_start.push(i);
                }
                return false;
            }
            Some((s, _)) => {
                actions.containers_to_kill.insert(
                    s.id.clone(),
                    KillInfo {
                        name: c.name.clone(),
                        message: format!("Init container {} is in {:?} state", c.name, state(s)),
                        reason: KillReason::UnknownState,
                    },
                );
                actions.init_containers_to_start.push(i);
                initialized = false;
                return initialized;
            }
        }
    }
    initialized
}

/// The decision for one sync of `pod` given what the runtime has.
pub fn compute_pod_actions(
    pod: &Pod,
    status: &PodRuntimeStatus,
    probes: &ProbeVerdicts,
) -> PodActions {
    let (create, attempt, sandbox_id) = sandbox_changed(pod, status);
    let mut actions = PodActions {
        kill_pod: create,
        create_sandbox: create,
        sandbox_id,
        attempt,
        ..Default::default()
    };
    let Some(spec) = pod.spec.as_ref() else {
        return actions;
    };
    let policy = restart_policy(pod);
    if create {
        if policy == "Never" && attempt != 0 && !status.containers.is_empty() {
            // The pod already ran under restartPolicy Never: it does not come back.
            actions.create_sandbox = false;
            return actions;
        }
        let to_start: Vec<usize> = spec
            .containers
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                !(policy == "OnFailure"
                    && status.container(&c.name).is_some_and(|s| {
                        state(s) == cri::ContainerState::ContainerExited && s.exit_code == 0
                    }))
            })
            .map(|(i, _)| i)
            .collect();
        if to_start.is_empty() {
            actions.create_sandbox = false;
            return actions;
        }
        if spec.init_containers.as_ref().is_some_and(|v| !v.is_empty()) {
            actions.init_containers_to_start = vec![0];
        } else {
            actions.containers_to_start = to_start;
        }
        return actions;
    }

    // Ephemeral containers start even before initialization completes, once, in the
    // existing sandbox (the kubelet's `EphemeralContainersToStart`).
    for (i, e) in spec.ephemeral_containers.iter().flatten().enumerate() {
        if status.container(&e.name).is_none() {
            actions.ephemeral_containers_to_start.push(i);
        }
    }
    let initialized = init_container_actions(pod, status, probes, &mut actions);
    if actions.kill_pod {
        actions.ephemeral_containers_to_start.clear();
    }
    if actions.kill_pod || !initialized {
        return actions;
    }

    let mut keep = 0;
    for (i, c) in spec.containers.iter().enumerate() {
        let latest = status.container(&c.name);
        match latest {
            Some(s) if state(s) == cri::ContainerState::ContainerRunning => {
                if let Some((message, reason)) = kill_reason(c, s, probes) {
                    // A spec change restarts the container whatever the policy; a failed probe
                    // restarts it per policy (OnFailure counts a probe kill as a failure).
                    let restart = !reason.is_probe_failure() || policy != "Never";
                    let message = if restart {
                        actions.containers_to_start.push(i);
                        format!("{message}, will be restarted")
                    } else {
                        message
                    };
                    actions.containers_to_kill.insert(
                        s.id.clone(),
                        KillInfo {
                            name: c.name.clone(),
                            message,
                            reason,
                        },
                    );
                } else {
                    keep += 1;
                }
            }
            _ => {
                if should_restart(pod, latest, None) {
                    if let Some(s) =
                        latest.filter(|s| state(s) == cri::ContainerState::ContainerUnknown)
                    {
                        actions.containers_to_kill.insert(
                            s.id.clone(),
                            KillInfo {
                                name: c.name.clone(),
                                message: format!("Container {} is in unknown state", c.name),
                                reason: KillReason::UnknownState,
                            },
                        );
                    }
                    actions.containers_to_start.push(i);
                }
            }
        }
    }
    if keep == 0 && actions.containers_to_start.is_empty() {
        actions.kill_pod = true;
        // Sidecars and debug containers must not keep a finished pod alive.
        actions.init_containers_to_start.clear();
        actions.ephemeral_containers_to_start.clear();
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::HashMap;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec}),
        )
        .unwrap()
    }

    fn sandbox(
        id: &str,
        ready: bool,
        attempt: u32,
        created: i64,
        pod: &Pod,
    ) -> cri::PodSandboxStatus {
        cri::PodSandboxStatus {
            id: id.into(),
            metadata: Some(cri::PodSandboxMetadata {
                attempt,
                ..Default::default()
            }),
            state: if ready {
                cri::PodSandboxState::SandboxReady as i32
            } else {
                cri::PodSandboxState::SandboxNotready as i32
            },
            created_at: created,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: "10.88.0.9".into(),
                additional_ips: vec![],
            }),
            labels: HashMap::from([(SANDBOX_HASH_LABEL.to_string(), sandbox_hash(pod))]),
            ..Default::default()
        }
    }

    fn container(
        pod: &Pod,
        name: &str,
        init: bool,
        st: cri::ContainerState,
        exit: i32,
        created: i64,
    ) -> cri::ContainerStatus {
        let spec = pod.spec.as_ref().unwrap();
        let c = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|c| c.name == name)
            .unwrap();
        let _ = init;
        cri::ContainerStatus {
            id: format!("{name}-{created}"),
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            state: st as i32,
            exit_code: exit,
            created_at: created,
            annotations: HashMap::from([(
                labels::CONTAINER_HASH_ANNOTATION.to_string(),
                labels::container_hash(c),
            )]),
            ..Default::default()
        }
    }

    fn status(
        sandboxes: Vec<cri::PodSandboxStatus>,
        mut containers: Vec<cri::ContainerStatus>,
    ) -> PodRuntimeStatus {
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        PodRuntimeStatus {
            uid: "u".into(),
            sandboxes,
            containers,
            ..Default::default()
        }
    }

    use cri::ContainerState::{ContainerExited as Exited, ContainerRunning as Running};

    #[test]
    fn new_pod_creates_sandbox_and_starts_all() {
        let p =
            pod(json!({"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}));
        let a = compute_pod_actions(&p, &status(vec![], vec![]), &ProbeVerdicts::default());
        assert!(a.create_sandbox && a.kill_pod);
        assert_eq!(a.attempt, 0);
        assert_eq!(a.containers_to_start, vec![0, 1]);
    }

    #[test]
    fn running_pod_needs_nothing() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let st = status(
            vec![sandbox("s1", true, 0, 1, &p)],
            vec![container(&p, "a", false, Running, 0, 2)],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert_eq!(
            a,
            PodActions {
                sandbox_id: "s1".into(),
                ..Default::default()
            }
        );
    }

    #[test]
    fn restart_policies() {
        for (policy, exit, restart) in [
            ("Always", 0, true),
            ("Always", 1, true),
            ("OnFailure", 0, false),
            ("OnFailure", 1, true),
            ("Never", 1, false),
            ("Never", 0, false),
        ] {
            let p =
                pod(json!({"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}]}));
            let st = status(
                vec![sandbox("s1", true, 0, 1, &p)],
                vec![container(&p, "a", false, Exited, exit, 2)],
            );
            let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
            assert_eq!(
                a.containers_to_start == vec![0],
                restart,
                "{policy} exit {exit}"
            );
            // A finished pod has its sandbox stopped.
            assert_eq!(a.kill_pod, !restart, "{policy} exit {exit}");
            assert!(!a.create_sandbox);
        }
    }

    #[test]
    fn dead_sandbox_under_never_is_not_recreated() {
        let p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}]}));
        let st = status(
            vec![sandbox("s1", false, 0, 1, &p)],
            vec![container(&p, "a", false, Exited, 0, 2)],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert!(a.kill_pod);
        assert!(!a.create_sandbox);
        let always = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let st = status(
            vec![sandbox("s1", false, 0, 1, &always)],
            vec![container(&always, "a", false, Exited, 0, 2)],
        );
        let a = compute_pod_actions(&always, &st, &ProbeVerdicts::default());
        assert!(a.create_sandbox);
        assert_eq!(a.attempt, 1);
        assert_eq!(a.containers_to_start, vec![0]);
    }

    #[test]
    fn changed_container_is_restarted() {
        let old =
            pod(json!({"containers": [{"name": "a", "image": "i", "command": ["sleep", "1"]}]}));
        let new =
            pod(json!({"containers": [{"name": "a", "image": "i", "command": ["sleep", "2"]}]}));
        let st = status(
            vec![sandbox("s1", true, 0, 1, &old)],
            vec![container(&old, "a", false, Running, 0, 2)],
        );
        let a = compute_pod_actions(&new, &st, &ProbeVerdicts::default());
        assert_eq!(a.containers_to_start, vec![0]);
        let kill = a.containers_to_kill.get("a-2").unwrap();
        assert_eq!(
            kill.message,
            "Container a definition changed, will be restarted"
        );
        assert!(!a.create_sandbox);
    }

    #[test]
    fn sandbox_level_change_recreates_the_pod() {
        let old = pod(
            json!({"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let new = pod(
            json!({"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "hostPort": 8081}]}]}),
        );
        let st = status(
            vec![sandbox("s1", true, 0, 1, &old)],
            vec![container(&old, "a", false, Running, 0, 2)],
        );
        let a = compute_pod_actions(&new, &st, &ProbeVerdicts::default());
        assert!(a.create_sandbox && a.kill_pod);
        assert_eq!(a.attempt, 1);
    }

    #[test]
    fn startup_failure_is_told_apart_from_liveness_failure() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let st = status(
            vec![sandbox("s1", true, 0, 1, &p)],
            vec![container(&p, "a", false, Running, 0, 2)],
        );
        let probes = ProbeVerdicts {
            startup_failed: HashSet::from(["a-2".to_string()]),
            ..Default::default()
        };
        let a = compute_pod_actions(&p, &st, &probes);
        assert_eq!(a.containers_to_start, vec![0]);
        let kill = &a.containers_to_kill["a-2"];
        assert_eq!(kill.reason, KillReason::StartupProbe);
        assert_eq!(kill.reason.event_reason(), "Unhealthy");
        assert_eq!(
            kill.message,
            "Container a failed startup probe, will be restarted"
        );
        // A spec change is no probe failure: it restarts even under `Never`.
        assert!(!KillReason::SpecChanged.is_probe_failure());
        assert_eq!(KillReason::SpecChanged.event_reason(), "");
    }

    #[test]
    fn liveness_failure_kills_and_restarts() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let st = status(
            vec![sandbox("s1", true, 0, 1, &p)],
            vec![container(&p, "a", false, Running, 0, 2)],
        );
        let probes = ProbeVerdicts {
            liveness_failed: HashSet::from(["a-2".to_string()]),
            ..Default::default()
        };
        let a = compute_pod_actions(&p, &st, &probes);
        assert_eq!(a.containers_to_start, vec![0]);
        assert_eq!(
            a.containers_to_kill["a-2"].reason,
            KillReason::LivenessProbe
        );
        assert_eq!(
            a.containers_to_kill["a-2"].reason.event_reason(),
            "Unhealthy"
        );
        let never =
            pod(json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}]}));
        let st = status(
            vec![sandbox("s1", true, 0, 1, &never)],
            vec![container(&never, "a", false, Running, 0, 2)],
        );
        let a = compute_pod_actions(&never, &st, &probes);
        assert!(a.containers_to_start.is_empty());
        assert!(a.containers_to_kill.contains_key("a-2"));
    }

    #[test]
    fn init_containers_run_one_at_a_time() {
        let p = pod(json!({
            "initContainers": [{"name": "i1", "image": "i"}, {"name": "i2", "image": "i"}],
            "containers": [{"name": "a", "image": "i"}]
        }));
        let a = compute_pod_actions(&p, &status(vec![], vec![]), &ProbeVerdicts::default());
        assert_eq!(a.init_containers_to_start, vec![0]);
        assert!(a.containers_to_start.is_empty());
        let sb = sandbox("s1", true, 0, 1, &p);
        // i1 running: wait.
        let st = status(
            vec![sb.clone()],
            vec![container(&p, "i1", true, Running, 0, 2)],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert!(
            a.init_containers_to_start.is_empty()
                && a.containers_to_start.is_empty()
                && !a.kill_pod
        );
        // i1 done: start i2.
        let st = status(
            vec![sb.clone()],
            vec![container(&p, "i1", true, Exited, 0, 2)],
        );
        assert_eq!(
            compute_pod_actions(&p, &st, &ProbeVerdicts::default()).init_containers_to_start,
            vec![1]
        );
        // both done: start the app.
        let st = status(
            vec![sb.clone()],
            vec![
                container(&p, "i1", true, Exited, 0, 2),
                container(&p, "i2", true, Exited, 0, 3),
            ],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert!(a.init_containers_to_start.is_empty());
        assert_eq!(a.containers_to_start, vec![0]);
        // i1 failed: restart it (Always), not i2, not the app.
        let st = status(
            vec![sb.clone()],
            vec![container(&p, "i1", true, Exited, 1, 2)],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert_eq!(a.init_containers_to_start, vec![0]);
        assert!(a.containers_to_start.is_empty());
    }

    #[test]
    fn failed_init_container_under_never_fails_the_pod() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "i1", "image": "i"}],
            "containers": [{"name": "a", "image": "i"}]
        }));
        let st = status(
            vec![sandbox("s1", true, 0, 1, &p)],
            vec![container(&p, "i1", true, Exited, 2, 2)],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert!(a.kill_pod);
        assert!(a.init_containers_to_start.is_empty() && a.containers_to_start.is_empty());
    }

    #[test]
    fn sidecars_start_before_the_next_init_container_and_keep_running() {
        let p = pod(json!({
            "initContainers": [
                {"name": "side", "image": "i", "restartPolicy": "Always"},
                {"name": "i2", "image": "i"}
            ],
            "containers": [{"name": "a", "image": "i"}]
        }));
        let sb = sandbox("s1", true, 0, 1, &p);
        let st = status(
            vec![sb.clone()],
            vec![container(&p, "side", true, Running, 0, 2)],
        );
        assert_eq!(
            compute_pod_actions(&p, &st, &ProbeVerdicts::default()).init_containers_to_start,
            vec![1]
        );
        // Not started yet (startup probe pending): i2 waits.
        let probes = ProbeVerdicts {
            not_started: HashSet::from(["side-2".to_string()]),
            ..Default::default()
        };
        assert!(compute_pod_actions(&p, &st, &probes)
            .init_containers_to_start
            .is_empty());
        // After initialization a sidecar that exits is restarted alongside the running app.
        let st = status(
            vec![sb],
            vec![
                container(&p, "side", true, Exited, 1, 2),
                container(&p, "i2", true, Exited, 0, 3),
                container(&p, "a", false, Running, 0, 4),
            ],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert_eq!(a.init_containers_to_start, vec![0]);
        assert!(a.containers_to_start.is_empty());
        assert!(!a.kill_pod);
    }

    #[test]
    fn ephemeral_containers_start_once_and_never_restart() {
        let p = pod(json!({
            "containers": [{"name": "app", "image": "i"}],
            "ephemeralContainers": [{"name": "debug", "image": "i", "targetContainerName": "app"}],
        }));
        let sb = || sandbox("s1", true, 0, 1, &p);
        let app = container(&p, "app", false, Running, 0, 2);
        let a = compute_pod_actions(
            &p,
            &status(vec![sb()], vec![app.clone()]),
            &ProbeVerdicts::default(),
        );
        assert_eq!(a.ephemeral_containers_to_start, vec![0]);
        assert!(a.containers_to_start.is_empty() && !a.kill_pod, "{a:?}");
        // Once it has run (and exited), it is neither started again nor killed.
        let mut dbg = container(&p, "app", false, Exited, 1, 3);
        dbg.metadata.as_mut().unwrap().name = "debug".into();
        dbg.id = "debug-3".into();
        let a = compute_pod_actions(
            &p,
            &status(vec![sb()], vec![app, dbg]),
            &ProbeVerdicts::default(),
        );
        assert!(a.ephemeral_containers_to_start.is_empty(), "{a:?}");
        assert!(a.containers_to_kill.is_empty() && !a.kill_pod, "{a:?}");
    }

    #[test]
    fn sidecars_do_not_keep_a_finished_pod_alive() {
        let p = pod(json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "side", "image": "i", "restartPolicy": "Always"}],
            "containers": [{"name": "a", "image": "i"}]
        }));
        let st = status(
            vec![sandbox("s1", true, 0, 1, &p)],
            vec![
                container(&p, "side", true, Running, 0, 2),
                container(&p, "a", false, Exited, 0, 3),
            ],
        );
        let a = compute_pod_actions(&p, &st, &ProbeVerdicts::default());
        assert!(a.kill_pod);
        assert!(a.init_containers_to_start.is_empty());
    }
}
