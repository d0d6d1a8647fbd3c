//! Graceful node shutdown on the real runtime, with a stand-in logind on a private
//! `dbus-daemon` (`common::logind`): the agent takes a delay inhibitor lock at start; on
//! `PrepareForShutdown(true)` it stops the normal pod first and the critical one only after it,
//! each with the kubelet's status (`Failed`, `Terminated`, the message, `DisruptionTarget`),
//! reports the Node NotReady, refuses new pods, and then releases the lock;
//! `PrepareForShutdown(false)` takes a new lock and the node is Ready again. Without logind
//! the agent says so once and runs its pods.

mod common;

use std::time::Duration;

use common::apiserver::Cluster;
use common::logind::{start_bus, FakeLogind};
use common::*;
use proto::cri;
use serde_json::Value;

const MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";
const WHY: &str = "Kubelet needs time to handle node shutdown";
const UNAVAILABLE: &str = "Failed to start node shutdown manager";

fn config(agent: &Agent, extra: &str) -> String {
    agent
        .write_file(
            "kubelet.yaml",
            &format!(
                "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
                 shutdownGracePeriod: 20s\nshutdownGracePeriodCriticalPods: 10s\n{extra}"
            ),
        )
        .display()
        .to_string()
}

/// A pod that takes a moment to stop on SIGTERM (so that the test sees it stopping).
fn pod(name: &str, priority: &str, on_term: &str) -> String {
    let cmd = format!("trap '{on_term}; exit 0' TERM; while true; do sleep 0.2; done");
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         terminationGracePeriodSeconds: 5\n{priority}  containers:\n  - name: main\n    \
         image: {BUSYBOX}\n    command: [\"sh\", \"-c\", {cmd}]\n",
        cmd = serde_json::to_string(&cmd).unwrap()
    )
}

fn phase(p: &Value) -> &str {
    p["status"]["phase"].as_str().unwrap_or("")
}

fn uid(p: &Value) -> String {
    p["metadata"]["uid"].as_str().unwrap().to_string()
}

/// Nothing of the pod runs in the runtime.
fn down(uid: &str) -> bool {
    cri_containers(uid)
        .iter()
        .all(|c| c.state != cri::ContainerState::ContainerRunning as i32)
        && cri_sandboxes(uid)
            .iter()
            .all(|s| s.state != cri::PodSandboxState::SandboxReady as i32)
}

fn assert_shutdown_status(p: &Value) {
    let s = &p["status"];
    assert_eq!(s["phase"], "Failed", "{p:#}");
    assert_eq!(s["reason"], "Terminated", "{p:#}");
    assert_eq!(s["message"], MESSAGE, "{p:#}");
    let c = s["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
        .unwrap_or_else(|| panic!("no DisruptionTarget condition: {p:#}"));
    assert_eq!(c["status"], "True");
    assert_eq!(c["reason"], "TerminationByKubelet");
    assert_eq!(c["message"], MESSAGE);
}

fn node_ready(cluster: &Cluster, node: &str) -> Option<(String, String, String)> {
    let n = cluster.get_json(&["node", node])?;
    let c = n["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str().unwrap_or("").to_string(),
        c["message"].as_str().unwrap_or("").to_string(),
    ))
}

fn metric(agent: &Agent, name: &str) -> f64 {
    let (code, body) = http_get(agent.read_only_port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn shutdown_stops_pods_by_priority_then_releases_the_inhibitor() {
    if !require_runtime() {
        return;
    }
    let logind = FakeLogind::start(Duration::from_secs(30));
    let cluster = Cluster::start();
    let mut agent = cluster.prepare_agent("node-shutdown", &[]);
    let cfg = config(&agent, "nodeStatusUpdateFrequency: 10s\n");
    agent.extra_args.push(format!("--config={cfg}"));
    agent
        .env
        .push(("DBUS_SYSTEM_BUS_ADDRESS".into(), logind.address.clone()));
    agent.spawn();

    // The lock is taken at start, as the kubelet takes it.
    agent.wait("the inhibitor lock", Duration::from_secs(30), || {
        let i = logind.inhibitors();
        (i.len() == 1).then_some(())
    });
    assert_eq!(
        logind.inhibitors(),
        vec![(
            "shutdown".to_string(),
            "kubelet".to_string(),
            WHY.to_string(),
            "delay".to_string(),
            true
        )]
    );
    agent.write_manifest("web.yaml", &pod("web", "", "sleep 2"));
    agent.write_manifest(
        "critical.yaml",
        &pod(
            "critical",
            "  priorityClassName: system-node-critical\n  priority: 2000001000\n",
            "true",
        ),
    );
    let web = uid(&agent.wait_running("web", Duration::from_secs(90)));
    let critical = uid(&agent.wait_running("critical", Duration::from_secs(90)));
    cluster.wait_node_ready(&agent.node);
    assert_eq!(
        metric(&agent, "kubelet_graceful_shutdown_start_time_seconds"),
        0.0
    );

    logind.prepare_for_shutdown(true);

    // The normal pod goes first; while it stops, the critical pod still runs.
    let (w, c) = agent.wait("the normal pod failed", Duration::from_secs(30), || {
        let (w, c) = (agent.pod("web")?, agent.pod("critical")?);
        (phase(&w) == "Failed").then_some((w, c))
    });
    assert_shutdown_status(&w);
    assert_eq!(
        phase(&c),
        "Running",
        "the critical pod was stopped with the normal one: {c:#}"
    );
    assert!(
        !down(&critical),
        "the critical pod stopped before the normal one was down"
    );
    // The critical pod only once the normal one is down.
    let c = agent.wait("the critical pod failed", Duration::from_secs(30), || {
        agent.pod("critical").filter(|c| phase(c) == "Failed")
    });
    assert!(
        down(&web),
        "the critical pod was stopped before the normal one was down"
    );
    assert_shutdown_status(&c);
    assert_eq!(
        agent.pod("web").map(|w| phase(&w).to_string()).as_deref(),
        Some("Failed")
    );

    // Then the lock goes, with both pods down.
    agent.wait("the inhibitor released", Duration::from_secs(30), || {
        (!logind.inhibitors()[0].4).then_some(())
    });
    assert!(down(&web) && down(&critical));

    // The node says why it is not ready; a new pod is refused.
    let (status, reason, message) = cluster.wait(
        "the node NotReady for the shutdown",
        Duration::from_secs(30),
        || node_ready(&cluster, &agent.node).filter(|r| r.0 == "False"),
    );
    assert_eq!(
        (status.as_str(), reason.as_str(), message.as_str()),
        ("False", "KubeletNotReady", "node is shutting down")
    );
    agent.write_manifest("late.yaml", &pod("late", "", "true"));
    let late = agent.wait("the late pod refused", Duration::from_secs(30), || {
        agent.pod("late").filter(|p| phase(p) == "Failed")
    });
    assert_eq!(late["status"]["reason"], "NodeShutdown", "{late:#}");
    assert_eq!(
        late["status"]["message"],
        "Pod was rejected: Pod was rejected as the node is shutting down."
    );
    let start = metric(&agent, "kubelet_graceful_shutdown_start_time_seconds");
    let end = metric(&agent, "kubelet_graceful_shutdown_end_time_seconds");
    assert!(start > 0.0 && end >= start, "start {start}, end {end}");

    // Cancelled: a new lock, and the node is Ready again.
    logind.prepare_for_shutdown(false);
    agent.wait("a new inhibitor lock", Duration::from_secs(30), || {
        let i = logind.inhibitors();
        (i.len() == 2 && i[1].4).then_some(())
    });
    cluster.wait_node_ready(&agent.node);
    // Pods stopped for the shutdown stay stopped.
    assert_eq!(phase(&agent.pod("web").unwrap()), "Failed");
}

#[test]
fn without_a_system_bus_the_agent_says_so_once_and_runs_pods() {
    if !require_runtime() {
        return;
    }
    let mut agent = Agent::prepare("shutdown-nobus", &[]);
    let cfg = config(&agent, "");
    agent.extra_args.push(format!("--config={cfg}"));
    let missing = agent.write_file("no-bus", "");
    std::fs::remove_file(&missing).unwrap();
    agent.env.push((
        "DBUS_SYSTEM_BUS_ADDRESS".into(),
        format!("unix:path={}", missing.display()),
    ));
    agent.spawn();
    agent.write_manifest("web.yaml", &pod("web", "", "true"));
    agent.wait_running("web", Duration::from_secs(90));
    let log = agent.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(UNAVAILABLE)).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains("graceful node shutdown is unavailable")
            && lines[0].contains(&missing.display().to_string()),
        "{}",
        lines[0]
    );
    assert!(!log.contains("not implemented"), "{log}");
    assert_eq!(http_get(agent.healthz_port, "/healthz").unwrap().0, 200);
}

#[test]
fn a_bus_without_logind_is_reported_once() {
    if !require_runtime() {
        return;
    }
    let (mut daemon, address, _dir) = start_bus();
    let mut agent = Agent::prepare("shutdown-nologind", &[]);
    let cfg = config(&agent, "");
    agent.extra_args.push(format!("--config={cfg}"));
    agent.env.push(("DBUS_SYSTEM_BUS_ADDRESS".into(), address));
    agent.spawn();
    let line = agent.wait("the unavailable line", Duration::from_secs(30), || {
        agent
            .log_text()
            .lines()
            .find(|l| l.contains(UNAVAILABLE))
            .map(str::to_string)
    });
    assert!(
        line.contains("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{line}"
    );
    // Still one line, and the agent serves on.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(agent.log_text().matches(UNAVAILABLE).count(), 1);
    assert_eq!(http_get(agent.healthz_port, "/healthz").unwrap().0, 200);
    drop(agent);
    let _ = daemon.kill();
    let _ = daemon.wait();
}
