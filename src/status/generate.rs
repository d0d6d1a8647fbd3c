//! Building a pod's API status from what the runtime reports, as the kubelet's
//! `generateAPIPodStatus` / `convertToAPIContainerStatuses` / `getPhase` and
//! `pkg/kubelet/status/generate.go` do: container states with `lastState` and the waiting reason
//! of the last failed start, restart counts, readiness, phase, and the five pod conditions with
//! their transition times.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
    ContainerStateWaiting, ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use proto::cri;

use crate::cm::pod_qos_class;
use crate::kuberuntime::actions::should_restart;
use crate::kuberuntime::{labels, PodRuntimeStatus};

/// The pod condition an eviction or a node shutdown sets (`v1.DisruptionTarget`).
pub const DISRUPTION_TARGET: &str = "DisruptionTarget";

/// The waiting reason and message of a container's last failed start (the kubelet's reason
/// cache): `CrashLoopBackOff`, `ErrImagePull`, `CreateContainerConfigError`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartFailure {
    pub reason: String,
    pub message: String,
}

/// Inputs beyond the pod and the runtime status.
#[derive(Debug, Clone, Default)]
pub struct StatusInputs<'a> {
    pub failures: Option<&'a HashMap<String, StartFailure>>,
    /// Container IDs whose readiness probe currently succeeds; `None`: no prober, running
    /// containers without a readiness probe are ready.
    pub ready: Option<&'a HashSet<String>>,
    /// Container IDs whose startup probe has not yet succeeded.
    pub not_started: Option<&'a HashSet<String>>,
    pub host_ips: &'a [String],
    /// Runtime name for container IDs (`containerd`).
    pub runtime_name: &'a str,
    /// The status last reported, for transition times and states the runtime forgot.
    pub previous: Option<&'a PodStatus>,
    /// When the agent first saw the pod (`startTime`).
    pub start_time: Option<Timestamp>,
    pub now: Option<Timestamp>,
}

fn ts_from_nanos(ns: i64) -> Option<Time> {
    if ns <= 0 {
        return None;
    }
    Timestamp::from_nanosecond(ns as i128).ok().map(Time)
}

fn cri_state(s: &cri::ContainerStatus) -> cri::ContainerState {
    cri::ContainerState::try_from(s.state).unwrap_or(cri::ContainerState::ContainerUnknown)
}

fn waiting(reason: &str) -> ContainerState {
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_string()),
            message: None,
        }),
        ..Default::default()
    }
}

fn terminated_of(s: &cri::ContainerStatus, runtime: &str) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: s.exit_code,
        reason: Some(s.reason.clone()).filter(|r| !r.is_empty()),
        message: Some(s.message.clone()).filter(|m| !m.is_empty()),
        started_at: ts_from_nanos(s.started_at),
        finished_at: ts_from_nanos(s.finished_at),
        container_id: Some(format!("{runtime}://{}", s.id)),
        signal: None,
    }
}

fn convert(
    s: &cri::ContainerStatus,
    spec: &Container,
    runtime: &str,
    old: Option<&ContainerStatus>,
) -> ContainerStatus {
    let state = match cri_state(s) {
        cri::ContainerState::ContainerRunning => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: ts_from_nanos(s.started_at),
            }),
            ..Default::default()
        },
        cri::ContainerState::ContainerExited => ContainerState {
            terminated: Some(terminated_of(s, runtime)),
            ..Default::default()
        },
        cri::ContainerState::ContainerUnknown
            if old
                .and_then(|o| o.state.as_ref())
                .and_then(|st| st.running.as_ref())
                .is_some() =>
        {
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".into()),
                    message: Some(
                        "The container could not be located when the pod was terminated".into(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }
        }
        _ => ContainerState {
            waiting: Some(ContainerStateWaiting::default()),
            ..Default::default()
        },
    };
    ContainerStatus {
        name: spec.name.clone(),
        image: s
            .annotations
            .get(labels::CONTAINER_IMAGE_ANNOTATION)
            .cloned()
            .or_else(|| spec.image.clone())
            .unwrap_or_default(),
        image_id: s.image_ref.clone(),
        container_id: Some(format!("{runtime}://{}", s.id)),
        restart_count: labels::restart_count(&s.annotations),
        state: Some(state),
        ..Default::default()
    }
}

fn spec_init(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

fn spec_app(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

/// The runtime's name for container IDs (`containerd://…`), containerd until it is known.
fn runtime_name<'a>(inp: &StatusInputs<'a>) -> &'a str {
    if inp.runtime_name.is_empty() {
        "containerd"
    } else {
        inp.runtime_name
    }
}

/// Container statuses for `containers` (all init or all app containers), in spec order.
fn container_statuses(
    pod: &Pod,
    containers: &[Container],
    init: bool,
    rt: &PodRuntimeStatus,
    inp: &StatusInputs<'_>,
) -> Vec<ContainerStatus> {
    let runtime = runtime_name(inp);
    let old: HashMap<&str, &ContainerStatus> = inp
        .previous
        .map(|p| {
            let list = if init {
                &p.init_container_statuses
            } else {
                &p.container_statuses
            };
            list.iter()
                .flatten()
                .map(|c| (c.name.as_str(), c))
                .collect()
        })
        .unwrap_or_default();
    let has_init = !spec_init(pod).is_empty();
    let default_reason = if !init && has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let mut out = Vec::with_capacity(containers.len());
    for c in containers {
        let mut st = ContainerStatus {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            state: Some(waiting(default_reason)),
            ..Default::default()
        };
        if let Some(o) = old.get(c.name.as_str()) {
            if o.state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .is_some()
            {
                st = (*o).clone();
            } else {
                st.restart_count = o.restart_count;
                st.last_state = o.last_state.clone();
            }
        }
        let mut history = rt.container_history(&c.name);
        if let Some(latest) = history.next() {
            st = convert(latest, c, runtime, old.get(c.name.as_str()).copied());
            if let Some(prev) = history.next() {
                st.last_state = convert(prev, c, runtime, None).state;
            }
        }
        // A container that will be started again shows why it is waiting.
        let latest = rt.container(&c.name);
        let done_init = init
            && latest.is_some_and(|s| {
                cri_state(s) == cri::ContainerState::ContainerExited && s.exit_code == 0
            });
        let policy = if init && c.restart_policy.as_deref() == Some("Always") {
            Some("Always")
        } else {
            None
        };
        let init_policy = if init && policy.is_none() {
            // Init containers restart unless the pod never restarts.
            match pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) {
                Some("Never") => Some("Never"),
                _ => Some("Always"),
            }
        } else {
            policy
        };
        if !done_init && should_restart(pod, latest, init_policy) {
            if let Some(f) = inp.failures.and_then(|m| m.get(&c.name)) {
                if st
                    .state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref())
                    .is_some()
                {
                    st.last_state = st.state.clone();
                }
                st.state = Some(ContainerState {
                    waiting: Some(ContainerStateWaiting {
                        reason: Some(f.reason.clone()),
                        message: Some(f.message.clone()).filter(|m| !m.is_empty()),
                    }),
                    ..Default::default()
                });
            }
        }
        let running_id = latest
            .filter(|s| cri_state(s) == cri::ContainerState::ContainerRunning)
            .map(|s| s.id.clone());
        let started = running_id
            .as_ref()
            .map(|id| !inp.not_started.is_some_and(|n| n.contains(id)));
        st.started = Some(started.unwrap_or(false));
        st.ready = match (&running_id, started) {
            (Some(id), Some(true)) => match inp.ready {
                Some(r) => r.contains(id) || c.readiness_probe.is_none(),
                None => true,
            },
            _ => false,
        };
        out.push(st);
    }
    out
}

fn is_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.state.as_ref().and_then(|st| st.terminated.as_ref())
}

fn is_waiting(s: &ContainerStatus) -> bool {
    s.state
        .as_ref()
        .and_then(|st| st.waiting.as_ref())
        .is_some()
}

fn is_running(s: &ContainerStatus) -> bool {
    s.state
        .as_ref()
        .and_then(|st| st.running.as_ref())
        .is_some()
}

fn last_terminated(s: &ContainerStatus) -> Option<&ContainerStateTerminated> {
    s.last_state.as_ref().and_then(|st| st.terminated.as_ref())
}

/// The pod phase from its container statuses (the kubelet's `getPhase`).
pub fn phase(pod: &Pod, init: &[ContainerStatus], app: &[ContainerStatus]) -> &'static str {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let find =
        |list: &'_ [ContainerStatus], name: &str| list.iter().find(|s| s.name == name).cloned();
    let (mut pending_init, mut pending_sidecar, mut failed_init) = (0, 0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    for c in spec_init(pod) {
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        let Some(s) = find(init, &c.name) else {
            if sidecar {
                unknown += 1;
            } else {
                pending_init += 1;
            }
            continue;
        };
        if sidecar {
            if is_running(&s) {
                if s.started != Some(true) {
                    pending_sidecar += 1;
                }
                running += 1;
            } else if is_waiting(&s) && last_terminated(&s).is_none() {
                pending_sidecar += 1;
                waiting += 1;
            }
            continue;
        }
        if is_running(&s) {
            pending_init += 1;
        } else if let Some(t) = is_terminated(&s) {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if is_waiting(&s) {
            match last_terminated(&s) {
                Some(t) if t.exit_code != 0 => failed_init += 1,
                Some(_) => {}
                None => pending_init += 1,
            }
        } else {
            pending_init += 1;
        }
    }
    for c in spec_app(pod) {
        let Some(s) = find(app, &c.name) else {
            unknown += 1;
            continue;
        };
        if is_running(&s) {
            running += 1;
        } else if let Some(t) = is_terminated(&s) {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if is_waiting(&s) {
            if last_terminated(&s).is_some() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    if failed_init > 0 && policy == "Never" {
        return "Failed";
    }
    if pending_init > 0 || (pending_sidecar > 0 && running + stopped == 0) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        return "Running";
    }
    "Pending"
}

fn condition(
    type_: &str,
    ok: bool,
    reason: Option<String>,
    message: Option<String>,
    prev: Option<&PodStatus>,
    now: &Time,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let transition = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason,
        message,
        last_transition_time: Some(transition),
        last_probe_time: None,
        observed_generation: None,
    }
}

fn names(list: &[String]) -> String {
    format!("[{}]", list.join(" "))
}

/// `ephemeralContainerStatuses`: each debug container's state from the runtime (waiting with
/// its start failure, `ContainerCreating` before it exists), never ready, never restarted.
fn ephemeral_statuses(
    pod: &Pod,
    rt: &PodRuntimeStatus,
    inp: &StatusInputs<'_>,
) -> Vec<ContainerStatus> {
    let runtime = runtime_name(inp);
    let old: HashMap<&str, &ContainerStatus> = inp
        .previous
        .and_then(|p| p.ephemeral_container_statuses.as_ref())
        .map(|l| l.iter().map(|c| (c.name.as_str(), c)).collect())
        .unwrap_or_default();
    let list = pod
        .spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_deref())
        .unwrap_or(&[]);
    list.iter()
        .map(|e| {
            let c = Container {
                name: e.name.clone(),
                image: e.image.clone(),
                ..Default::default()
            };
            let mut st = match rt.container(&e.name) {
                Some(latest) => convert(latest, &c, runtime, old.get(e.name.as_str()).copied()),
                None => ContainerStatus {
                    name: e.name.clone(),
                    image: e.image.clone().unwrap_or_default(),
                    state: Some(waiting("ContainerCreating")),
                    ..Default::default()
                },
            };
            if rt.container(&e.name).is_none() {
                if let Some(f) = inp.failures.and_then(|m| m.get(&e.name)) {
                    st.state = Some(ContainerState {
                        waiting: Some(ContainerStateWaiting {
                            reason: Some(f.reason.clone()),
                            message: Some(f.message.clone()).filter(|m| !m.is_empty()),
                        }),
                        ..Default::default()
                    });
                }
            }
            st.ready = false;
            st
        })
        .collect()
}

/// The whole API status of a pod.
pub fn generate_pod_status(pod: &Pod, rt: &PodRuntimeStatus, inp: &StatusInputs<'_>) -> PodStatus {
    let now = Time(inp.now.unwrap_or_else(Timestamp::now));
    let init = container_statuses(pod, spec_init(pod), true, rt, inp);
    let app = container_statuses(pod, spec_app(pod), false, rt, inp);
    let mut phase = phase(pod, &init, &app).to_string();
    // A terminal phase never changes again.
    if let Some(prev) = inp.previous.and_then(|p| p.phase.as_deref()) {
        if matches!(prev, "Succeeded" | "Failed") {
            phase = prev.to_string();
        }
    }
    let host_network = crate::kuberuntime::sandbox::host_network(pod);
    let sandbox_ready = rt
        .latest_sandbox()
        .is_some_and(|s| s.state == cri::PodSandboxState::SandboxReady as i32);
    let pod_ips: Vec<String> = if host_network {
        inp.host_ips.to_vec()
    } else {
        rt.ips()
    };
    let networked = sandbox_ready && (host_network || !pod_ips.is_empty());

    let pending_init: Vec<String> = spec_init(pod)
        .iter()
        .filter(|c| c.restart_policy.as_deref() != Some("Always"))
        .filter(|c| {
            let succeeded = init
                .iter()
                .find(|s| s.name == c.name)
                .and_then(is_terminated)
                .is_some_and(|t| t.exit_code == 0);
            !succeeded
        })
        .map(|c| c.name.clone())
        .collect();
    // Once an app container ran the pod counts as initialized even if init records are gone.
    let app_seen = spec_app(pod)
        .iter()
        .any(|c| rt.container(&c.name).is_some());
    let initialized = pending_init.is_empty() || app_seen;
    let unready: Vec<String> = spec_init(pod)
        .iter()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"))
        .filter(|c| !init.iter().any(|s| s.name == c.name && s.ready))
        .chain(
            spec_app(pod)
                .iter()
                .filter(|c| !app.iter().any(|s| s.name == c.name && s.ready)),
        )
        .map(|c| c.name.clone())
        .collect();
    let completed = phase == "Succeeded";
    let prev = inp.previous;
    let (ready_reason, ready_message) = if completed {
        (Some("PodCompleted".to_string()), None)
    } else if unready.is_empty() {
        (None, None)
    } else {
        (
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: {}",
                names(&unready)
            )),
        )
    };
    let containers_ready = unready.is_empty() && !completed;
    // A DisruptionTarget condition (set when an eviction or a node shutdown failed the pod)
    // is kept, ahead of the kubelet-owned conditions, as the kubelet's
    // `generateAPIPodStatus` keeps it.
    let disruption = prev
        .and_then(|p| p.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == DISRUPTION_TARGET))
        .cloned();
    let conditions = disruption
        .into_iter()
        .chain([
            condition(
                "PodReadyToStartContainers",
                networked,
                None,
                None,
                prev,
                &now,
            ),
            if initialized {
                condition(
                    "Initialized",
                    true,
                    completed
                        .then(|| "PodCompleted".to_string())
                        .filter(|_| !spec_init(pod).is_empty()),
                    None,
                    prev,
                    &now,
                )
            } else {
                condition(
                    "Initialized",
                    false,
                    Some("ContainersNotInitialized".into()),
                    Some(format!(
                        "containers with incomplete status: {}",
                        names(&pending_init)
                    )),
                    prev,
                    &now,
                )
            },
            condition(
                "Ready",
                containers_ready,
                ready_reason.clone(),
                ready_message.clone(),
                prev,
                &now,
            ),
            condition(
                "ContainersReady",
                containers_ready,
                ready_reason,
                ready_message,
                prev,
                &now,
            ),
            condition("PodScheduled", true, None, None, prev, &now),
        ])
        .collect::<Vec<_>>();
    let start_time = prev
        .and_then(|p| p.start_time.clone())
        .or_else(|| inp.start_time.map(Time))
        .or_else(|| Some(now.clone()));
    let pod_ips_out: Vec<PodIP> = pod_ips.iter().map(|ip| PodIP { ip: ip.clone() }).collect();
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: inp.host_ips.first().cloned(),
        host_ips: Some(
            inp.host_ips
                .iter()
                .map(|ip| HostIP { ip: ip.clone() })
                .collect(),
        )
        .filter(|v: &Vec<HostIP>| !v.is_empty()),
        pod_ip: pod_ips.first().cloned(),
        pod_ips: Some(pod_ips_out).filter(|v| !v.is_empty()),
        start_time,
        qos_class: Some(pod_qos_class(pod).as_str().to_string()),
        init_container_statuses: Some(init).filter(|v| !v.is_empty()),
        container_statuses: Some(app),
        ephemeral_container_statuses: Some(ephemeral_statuses(pod, rt, inp))
            .filter(|v| !v.is_empty()),
        ..Default::default()
    }
}

/// Count of containers by state for the `kubelet_running_containers` gauge.
pub fn count_states(statuses: &[cri::ContainerStatus]) -> BTreeMap<&'static str, i64> {
    let mut m = BTreeMap::new();
    for s in statuses {
        let k = match cri_state(s) {
            cri::ContainerState::ContainerCreated => "created",
            cri::ContainerState::ContainerRunning => "running",
            cri::ContainerState::ContainerExited => "exited",
            cri::ContainerState::ContainerUnknown => "unknown",
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "d", "uid": "u"}, "spec": spec}),
        )
        .unwrap()
    }

    const SEC: i64 = 1_000_000_000;

    fn cs(
        name: &str,
        state: cri::ContainerState,
        exit: i32,
        created: i64,
        restarts: i32,
    ) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: format!("{name}{created}"),
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: restarts as u32,
            }),
            state: state as i32,
            created_at: created * SEC,
            started_at: (created + 1) * SEC,
            finished_at: if state == cri::ContainerState::ContainerExited {
                (created + 2) * SEC
            } else {
                0
            },
            exit_code: exit,
            reason: match (state, exit) {
                (cri::ContainerState::ContainerExited, 0) => "Completed".into(),
                (cri::ContainerState::ContainerExited, _) => "Error".into(),
                _ => String::new(),
            },
            image_ref: "sha256:abc".into(),
            annotations: [(
                labels::CONTAINER_RESTART_COUNT_ANNOTATION.to_string(),
                restarts.to_string(),
            )]
            .into(),
            ..Default::default()
        }
    }

    fn rt(ready_sandbox: bool, mut containers: Vec<cri::ContainerStatus>) -> PodRuntimeStatus {
        containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        PodRuntimeStatus {
            uid: "u".into(),
            sandboxes: vec![cri::PodSandboxStatus {
                id: "sb".into(),
                state: if ready_sandbox {
                    cri::PodSandboxState::SandboxReady as i32
                } else {
                    cri::PodSandboxState::SandboxNotready as i32
                },
                network: Some(cri::PodSandboxNetworkStatus {
                    ip: "10.88.0.7".into(),
                    additional_ips: vec![],
                }),
                ..Default::default()
            }],
            containers,
            ..Default::default()
        }
    }

    fn inputs<'a>(
        failures: Option<&'a HashMap<String, StartFailure>>,
        previous: Option<&'a PodStatus>,
    ) -> StatusInputs<'a> {
        StatusInputs {
            failures,
            host_ips: &[],
            runtime_name: "containerd",
            previous,
            now: Some(Timestamp::from_second(1_700_000_000).unwrap()),
            ..Default::default()
        }
    }

    fn cond<'a>(s: &'a PodStatus, t: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    use cri::ContainerState::{
        ContainerCreated as Created, ContainerExited as Exited, ContainerRunning as Running,
    };

    #[test]
    fn running_pod_is_ready_with_ip_and_conditions_in_kubelet_order() {
        let p = pod(json!({"containers": [{"name": "a", "image": "img"}]}));
        let s = generate_pod_status(
            &p,
            &rt(true, vec![cs("a", Running, 0, 10, 0)]),
            &inputs(None, None),
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.88.0.7"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let types: Vec<&str> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert!(s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .all(|c| c.status == "True"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert!(c.ready);
        assert_eq!(c.started, Some(true));
        assert_eq!(c.container_id.as_deref(), Some("containerd://a10"));
        assert_eq!(c.image_id, "sha256:abc");
        assert_eq!(c.image, "img");
    }

    #[test]
    fn crash_loop_shows_waiting_reason_and_last_state() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let failures = HashMap::from([(
            "a".to_string(),
            StartFailure {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 10s restarting failed container=a pod=p_d(u)".into(),
            },
        )]);
        let r = rt(
            true,
            vec![cs("a", Exited, 1, 10, 0), cs("a", Exited, 1, 20, 1)],
        );
        let s = generate_pod_status(&p, &r, &inputs(Some(&failures), None));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        let w = c.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(c.restart_count, 1);
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.reason.as_deref(), Some("Error"));
        assert!(!c.ready);
        // Restarting containers keep the pod Running under Always.
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [a]")
        );
    }

    #[test]
    fn phases_by_restart_policy() {
        for (policy, exits, want) in [
            ("Never", vec![0, 0], "Succeeded"),
            ("Never", vec![0, 1], "Failed"),
            ("OnFailure", vec![0, 0], "Succeeded"),
            ("Always", vec![0, 0], "Running"),
        ] {
            let p = pod(
                json!({"restartPolicy": policy, "containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]}),
            );
            let r = rt(
                false,
                vec![
                    cs("a", Exited, exits[0], 10, 0),
                    cs("b", Exited, exits[1], 11, 0),
                ],
            );
            let s = generate_pod_status(&p, &r, &inputs(None, None));
            assert_eq!(s.phase.as_deref(), Some(want), "{policy} {exits:?}");
        }
        // Nothing created yet: Pending, ContainerCreating.
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let s = generate_pod_status(&p, &PodRuntimeStatus::default(), &inputs(None, None));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let w = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .waiting
            .clone()
            .unwrap();
        assert_eq!(w.reason.as_deref(), Some("ContainerCreating"));
        assert_eq!(cond(&s, "PodReadyToStartContainers").status, "False");
        // Created but not started: waiting.
        let s = generate_pod_status(
            &p,
            &rt(true, vec![cs("a", Created, 0, 10, 0)]),
            &inputs(None, None),
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
    }

    #[test]
    fn init_containers_gate_initialization() {
        let p = pod(json!({
            "initContainers": [{"name": "i1", "image": "i"}, {"name": "i2", "image": "i"}],
            "containers": [{"name": "a", "image": "i"}]
        }));
        let s = generate_pod_status(
            &p,
            &rt(true, vec![cs("i1", Running, 0, 10, 0)]),
            &inputs(None, None),
        );
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let init = cond(&s, "Initialized");
        assert_eq!(init.status, "False");
        assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
        assert_eq!(
            init.message.as_deref(),
            Some("containers with incomplete status: [i1 i2]")
        );
        let app = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            app.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        // A failed init container under Never fails the pod.
        let never = pod(json!({
            "restartPolicy": "Never",
            "initContainers": [{"name": "i1", "image": "i"}],
            "containers": [{"name": "a", "image": "i"}]
        }));
        let s = generate_pod_status(
            &never,
            &rt(true, vec![cs("i1", Exited, 1, 10, 0)]),
            &inputs(None, None),
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        // Done: initialized.
        let r = rt(
            true,
            vec![
                cs("i1", Exited, 0, 10, 0),
                cs("i2", Exited, 0, 12, 0),
                cs("a", Running, 0, 14, 0),
            ],
        );
        let s = generate_pod_status(&p, &r, &inputs(None, None));
        assert_eq!(cond(&s, "Initialized").status, "True");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.init_container_statuses.as_ref().unwrap().len(), 2);
    }

    #[test]
    fn a_disruption_target_condition_is_kept_first() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let mut prev = generate_pod_status(
            &p,
            &rt(true, vec![cs("a", Running, 0, 10, 0)]),
            &inputs(None, None),
        );
        prev.phase = Some("Failed".into());
        prev.conditions.as_mut().unwrap().insert(
            0,
            PodCondition {
                type_: DISRUPTION_TARGET.into(),
                status: "True".into(),
                reason: Some("TerminationByKubelet".into()),
                message: Some("m".into()),
                ..Default::default()
            },
        );
        let s = generate_pod_status(
            &p,
            &rt(false, vec![cs("a", Exited, 137, 10, 0)]),
            &inputs(None, Some(&prev)),
        );
        let types: Vec<&str> = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(
            types,
            [
                "DisruptionTarget",
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        assert_eq!(
            cond(&s, DISRUPTION_TARGET).reason.as_deref(),
            Some("TerminationByKubelet")
        );
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        // None before: none after.
        let again = generate_pod_status(&p, &rt(true, vec![]), &inputs(None, None));
        assert!(again
            .conditions
            .unwrap()
            .iter()
            .all(|c| c.type_ != DISRUPTION_TARGET));
    }

    #[test]
    fn transition_times_move_only_on_change() {
        let p = pod(json!({"containers": [{"name": "a", "image": "i"}]}));
        let first = generate_pod_status(
            &p,
            &rt(true, vec![cs("a", Running, 0, 10, 0)]),
            &inputs(None, None),
        );
        let mut later = inputs(None, Some(&first));
        later.now = Some(Timestamp::from_second(1_700_000_100).unwrap());
        let same = generate_pod_status(&p, &rt(true, vec![cs("a", Running, 0, 10, 0)]), &later);
        assert_eq!(
            cond(&same, "Ready").last_transition_time,
            cond(&first, "Ready").last_transition_time
        );
        let changed = generate_pod_status(&p, &rt(true, vec![cs("a", Exited, 1, 10, 0)]), &later);
        assert_eq!(cond(&changed, "Ready").status, "False");
        assert_ne!(
            cond(&changed, "Ready").last_transition_time,
            cond(&first, "Ready").last_transition_time
        );
        assert_eq!(changed.start_time, first.start_time);
    }

    #[test]
    fn oom_killed_reason_passes_through() {
        let p = pod(json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}]}));
        let mut c = cs("a", Exited, 137, 10, 0);
        c.reason = "OOMKilled".into();
        let s = generate_pod_status(&p, &rt(false, vec![c]), &inputs(None, None));
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!(t.reason.as_deref(), Some("OOMKilled"));
        assert_eq!(t.exit_code, 137);
        assert_eq!(s.phase.as_deref(), Some("Failed"));
    }
}
