//! API-server mode, pods, on the real containerd: kubelet-rs joined to a test API server runs
//! the pods bound to its node (`kubectl apply` with nodeName), reports their status to the API,
//! stops and finally deletes pods `kubectl delete` asks to go.
//!
//! Until the agent registers its own Node, each test creates it with kubectl (Ready, so the
//! test server's scheduler binds pods to it).

mod common;

use std::time::Duration;

use common::apiserver::Cluster;
use common::*;
use serde_json::Value;

const START: Duration = Duration::from_secs(90);

/// Waits for the agent to register its Node and turn it Ready (the scheduler binds to Ready
/// nodes); the agent's `--node-labels` carry any labels a test needs.
fn create_node(cluster: &Cluster, node: &str, _labels: &str) {
    cluster.wait_node_ready(node);
}

/// A busybox pod manifest (JSON) in namespace default, bound to `node` when given.
fn api_pod(name: &str, node: Option<&str>, command: &str) -> String {
    let mut v = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            // Service-account tokens are another part's work: keep these pods free of them.
            "automountServiceAccountToken": false,
            "containers": [{"name": "main", "image": BUSYBOX, "command": ["sh", "-c", command]}]
        }
    });
    if let Some(n) = node {
        v["spec"]["nodeName"] = n.into();
    }
    v.to_string()
}

/// The pod from the agent's read-only `/pods`, by name (API pods keep their names).
fn local_pod(agent: &Agent, name: &str) -> Option<Value> {
    agent.pods()["items"]
        .as_array()?
        .iter()
        .find(|p| p["metadata"]["name"] == name)
        .cloned()
}

fn running(p: &Value) -> bool {
    p["status"]["phase"] == "Running"
        && p["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| cs.iter().all(|c| c["state"]["running"].is_object()))
}

#[test]
fn a_pod_bound_to_the_node_runs_reports_status_and_is_deleted_gracefully() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let agent = cluster.agent("api-run", &[]);
    create_node(&cluster, &agent.node, "");
    let out = cluster.kubectl_stdin(
        &["apply", "-f", "-"],
        &api_pod("web", Some(&agent.node), "exec sleep 3600"),
    );
    assert!(out.success(), "{}", out.stderr);
    let api_uid = cluster.get_json(&["pod", "web"]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let pod = agent.wait("API pod web running", START, || {
        local_pod(&agent, "web").filter(running)
    });
    assert_eq!(pod["metadata"]["uid"], api_uid.as_str());
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/config.source"],
        "api"
    );
    let containers = cri_containers(&api_uid);
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(
        containers[0].state,
        proto::cri::ContainerState::ContainerRunning as i32
    );
    // The status reaches the API: kubectl sees it Running, with the runtime's container ID.
    let api_pod = cluster.wait("web Running in the API", START, || {
        cluster.get_json(&["pod", "web"]).filter(running)
    });
    assert_eq!(
        api_pod["status"]["containerStatuses"][0]["containerID"],
        pod["status"]["containerStatuses"][0]["containerID"]
    );
    assert!(api_pod["status"]["podIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.88.")));

    // kubectl delete waits for the pod to go: the agent stops it with its grace period, then
    // deletes it from the API once nothing of it runs.
    let out = cluster.kubectl(&["delete", "pod", "web", "--timeout=60s"]);
    assert!(
        out.success(),
        "kubectl delete: {}\n{}",
        out.stderr,
        agent.log_tail()
    );
    assert!(
        cluster.get_json(&["pod", "web"]).is_none(),
        "gone from the API"
    );
    agent.wait("web gone from the runtime", START, || {
        let running = cri_containers(&api_uid)
            .iter()
            .any(|c| c.state == proto::cri::ContainerState::ContainerRunning as i32);
        (!running && local_pod(&agent, "web").is_none()).then_some(())
    });
    assert!(agent
        .log_text()
        .contains("Pod fully terminated and removed from etcd"));
}

#[test]
fn a_static_pod_has_a_mirror_pod_recreated_when_deleted_and_removed_with_its_manifest() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let agent = cluster.agent("api-mirror", &[]);
    create_node(&cluster, &agent.node, "");
    let node_uid = cluster.get_json(&["node", &agent.node]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    agent.write_manifest("web.yaml", &busybox_pod("web", "exec sleep 3600", ""));
    let name = agent.pod_name("web");
    let local = agent.wait_running("web", START);
    let hash = local["metadata"]["annotations"]["kubernetes.io/config.hash"].clone();
    // The mirror pod: the static pod's hash, owned by the Node, with the static pod's status.
    let mirror = cluster.wait("mirror pod Running", START, || {
        cluster.get_json(&["pod", &name]).filter(running)
    });
    assert_eq!(
        mirror["metadata"]["annotations"]["kubernetes.io/config.mirror"],
        hash
    );
    assert_eq!(mirror["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert_eq!(
        mirror["metadata"]["ownerReferences"][0]["uid"],
        node_uid.as_str()
    );
    assert_eq!(
        mirror["status"]["containerStatuses"][0]["containerID"],
        local["status"]["containerStatuses"][0]["containerID"]
    );
    let first_uid = mirror["metadata"]["uid"].as_str().unwrap().to_string();

    // Deleted by a user: created again (a new UID), and the static pod kept running.
    let out = cluster.kubectl(&["delete", "pod", &name, "--wait=false"]);
    assert!(out.success(), "{}", out.stderr);
    cluster.wait("mirror pod recreated", START, || {
        let p = cluster.get_json(&["pod", &name])?;
        (p["metadata"]["uid"] != first_uid.as_str() && p["metadata"]["deletionTimestamp"].is_null())
            .then_some(())
    });
    assert!(running(&local_pod(&agent, &name).unwrap()));

    // The manifest goes: so does the mirror pod.
    agent.remove_manifest("web.yaml");
    cluster.wait("mirror pod removed", START, || {
        cluster.get_json(&["pod", &name]).is_none().then_some(())
    });
}
