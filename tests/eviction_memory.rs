//! Memory eviction on the real runtime: a BestEffort pod that allocates a few hundred MiB is
//! evicted (Failed/Evicted, the kubelet's message), a Guaranteed pod within its request
//! survives, and the node shows MemoryPressure, then recovers after the transition period.
//!
//! Safe for the machine: once the agent runs, the test caps its cgroup root (`/<node>`, which
//! holds every pod of this agent and nothing else) at 1 GiB. The eviction manager then takes
//! that cgroup as the node's memory (its limit the capacity, its working set the usage), so
//! `memory.available<800Mi` is met as soon as the pods use more than 224 MiB, while the
//! machine's own memory is never at stake: even if eviction failed, the kernel OOM killer
//! would act inside that 1 GiB and nowhere else. The hog holds about 300 MiB, well below the
//! cap, so the kernel never has to.

mod common;

use std::time::Duration;

use common::{http_get, require_runtime, Agent, BUSYBOX};
use serde_json::Value;

const START: Duration = Duration::from_secs(60);

fn manifest(name: &str, command: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: {name}\n    image: {BUSYBOX}\n    command: [\"sh\", \"-c\", {cmd}]\n{resources}",
        cmd = serde_json::to_string(command).unwrap()
    )
}

fn get_json(port: u16, path: &str) -> Value {
    let (code, body) = http_get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn condition(agent: &Agent, kind: &str) -> Value {
    get_json(agent.read_only_port, "/node/conditions")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap()
}

fn events(agent: &Agent) -> Vec<Value> {
    get_json(agent.read_only_port, "/events")["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn event<'a>(evs: &'a [Value], reason: &str) -> Option<&'a Value> {
    evs.iter().find(|e| e["reason"] == reason)
}

#[test]
fn a_best_effort_hog_is_evicted_and_a_guaranteed_pod_survives() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start_with(
        "evict-mem",
        &[
            "--eviction-hard",
            "memory.available<800Mi",
            "--eviction-pressure-transition-period",
            "10s",
        ],
    );
    // Before the cap the node is the whole machine: no pressure.
    assert_eq!(condition(&agent, "MemoryPressure")["status"], "False");
    common::cgroups::write_memory_limit(&agent.cgroup_root, 1 << 30)
        .expect("cap the agent's cgroup root at 1 GiB");

    agent.write_manifest(
        "guaranteed.yaml",
        &manifest(
            "guaranteed",
            "exec sleep 3600",
            "    resources:\n      requests:\n        cpu: 100m\n        memory: 64Mi\n      limits:\n        cpu: 100m\n        memory: 64Mi\n",
        ),
    );
    agent.wait_running("guaranteed", START);
    let guaranteed = agent.pod("guaranteed").unwrap();
    assert_eq!(
        guaranteed["status"]["qosClass"], "Guaranteed",
        "{guaranteed}"
    );
    assert_eq!(condition(&agent, "MemoryPressure")["status"], "False");

    // ~300 MiB held in one line by `tail` while `sleep` keeps the pipe open.
    agent.write_manifest(
        "hog.yaml",
        &manifest(
            "hog",
            "(head -c 314572800 /dev/zero; exec sleep 3600) | tail -n 1",
            "",
        ),
    );
    let hog = agent.wait("the hog evicted", START, || {
        agent
            .pod("hog")
            .filter(|p| p["status"]["phase"] == "Failed")
    });
    assert_eq!(hog["status"]["reason"], "Evicted", "{hog}");
    let msg = hog["status"]["message"].as_str().unwrap();
    let disruption = hog["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "DisruptionTarget")
        .unwrap_or_else(|| panic!("no DisruptionTarget condition: {hog}"));
    assert_eq!(disruption["reason"], "TerminationByKubelet");
    assert_eq!(disruption["message"], msg);
    assert!(
        msg.starts_with(
            "The node was low on resource: memory. Threshold quantity: 800Mi, available: "
        ),
        "{msg}"
    );
    assert!(
        msg.contains("Container hog was using ")
            && msg.ends_with("request is 0, has larger consumption of memory. "),
        "{msg}"
    );
    // The hog's container is stopped.
    let uid = hog["metadata"]["uid"].as_str().unwrap().to_string();
    agent.wait("the hog's container stopped", START, || {
        common::cri_containers(&uid)
            .iter()
            .all(|c| c.state != proto::cri::ContainerState::ContainerRunning as i32)
            .then_some(())
    });

    // The Guaranteed pod is untouched.
    let g = agent.pod("guaranteed").unwrap();
    assert_eq!(g["status"]["phase"], "Running", "{g}");
    assert!(
        g["status"]["containerStatuses"][0]["state"]["running"].is_object(),
        "{g}"
    );
    assert_eq!(
        g["status"]["containerStatuses"][0]["restartCount"], 0,
        "{g}"
    );

    // Pressure was reported, and clears once the transition period has passed without it.
    agent.wait("MemoryPressure cleared", START, || {
        (condition(&agent, "MemoryPressure")["status"] == "False"
            && event(&events(&agent), "NodeHasInsufficientMemory").is_some())
        .then_some(())
    });
    let mp = condition(&agent, "MemoryPressure");
    assert_eq!(mp["reason"], "KubeletHasSufficientMemory", "{mp}");
    let evs = events(&agent);
    let sufficient = event(&evs, "NodeHasSufficientMemory").unwrap();
    assert_eq!(
        sufficient["count"], 2,
        "at start and on recovery: {sufficient}"
    );
    assert_eq!(
        sufficient["message"],
        format!("Node {} status is now: NodeHasSufficientMemory", agent.node)
    );
    let evicted = event(&evs, "Evicted").expect("an Evicted event");
    assert_eq!(evicted["involvedObject"]["uid"], uid.as_str());
    assert_eq!(evicted["type"], "Warning");
    assert_eq!(evicted["message"], msg);
    assert_eq!(
        event(&evs, "EvictionThresholdMet").unwrap()["message"],
        "Attempting to reclaim memory"
    );
    let (_, metrics) = http_get(agent.read_only_port, "/metrics").unwrap();
    assert!(
        metrics.contains("kubelet_evictions{eviction_signal=\"memory.available\"} 1"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("evictions"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // An evicted pod never runs again, and nobody else was evicted.
    assert_eq!(
        agent.pod("guaranteed").unwrap()["status"]["phase"],
        "Running"
    );
    assert_eq!(agent.pod("hog").unwrap()["status"]["phase"], "Failed");
}
