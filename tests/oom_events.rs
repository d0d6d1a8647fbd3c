//! The OOM watcher on the real kernel: a process of a container killed by the container's own
//! memory limit produces an `OOMKilling` event on its pod (not a `SystemOOM`: the node's memory
//! did not run out) and counts in `container_oom_events_total`.
//!
//! The container's shell survives: each round a subshell grows past the 16 MiB limit and is the
//! one the kernel kills, so the container (and its cgroup, which carries the counter) stays.

mod common;

use std::time::Duration;

use common::{http_get, require_runtime, Agent, BUSYBOX};
use serde_json::Value;

const START: Duration = Duration::from_secs(60);

#[test]
fn a_container_over_its_own_limit_produces_oom_events_and_the_counter() {
    if !require_runtime() {
        return;
    }
    // Only the memory threshold: the shared test machine's disk may be past the kubelet's
    // default disk thresholds, and pods would be refused for DiskPressure.
    let agent = Agent::start_with("oom-events", &["--eviction-hard", "memory.available<100Mi"]);
    let hog = "while true; do (x=$(head -c 67108864 /dev/zero | tr '\\000' a); echo survived); sleep 1; done";
    agent.write_manifest(
        "oom.yaml",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: oom\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: hog\n    image: {BUSYBOX}\n    command: [\"sh\", \"-c\", {cmd}]\n    resources:\n      limits:\n        memory: 16Mi\n",
            cmd = serde_json::to_string(hog).unwrap()
        ),
    );
    let pod = agent.wait_running("oom", START);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();

    let event = agent.wait("an OOMKilling event", START, || {
        let (_, body) = http_get(agent.read_only_port, "/events").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "OOMKilling")
            .cloned()
    });
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["involvedObject"]["kind"], "Pod");
    assert_eq!(event["involvedObject"]["uid"], uid.as_str());
    assert_eq!(event["involvedObject"]["name"], agent.pod_name("oom"));
    let msg = event["message"].as_str().unwrap();
    assert!(msg.starts_with("OOM killer killed process "), "{msg}");
    assert!(
        msg.contains("(sh) in container hog: memory cgroup /"),
        "{msg}"
    );
    assert!(msg.contains(&format!("pod{uid}")), "{msg}");

    let line = agent.wait("container_oom_events_total", START, || {
        let (code, body) = http_get(agent.read_only_port, "/metrics/cadvisor").ok()?;
        (code == 200).then_some(())?;
        body.lines()
            .find(|l| {
                l.starts_with("container_oom_events_total{")
                    && l.contains("container=\"hog\"")
                    && l.contains(&format!("pod=\"{}\"", agent.pod_name("oom")))
            })
            .map(str::to_string)
    });
    // `name{labels} value [timestamp]`.
    let count: f64 = line
        .rsplit_once('}')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(count >= 1.0, "{line}");

    // The container lives on; the node never ran out of memory.
    let p = agent.pod("oom").unwrap();
    assert_eq!(p["status"]["phase"], "Running", "{p}");
    let (_, body) = http_get(agent.read_only_port, "/events").unwrap();
    assert!(!body.contains("\"SystemOOM\""), "{body}");
}
