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

/// Creates the agent's Node object (Ready, 4 CPUs, 8 GiB) with `labels` (`,"k":"v"` pairs).
fn create_node(cluster: &Cluster, node: &str, labels: &str) {
    let json = format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{node}","labels":{{"kubernetes.io/hostname":"{node}"{labels}}}}},
 "status":{{"capacity":{{"cpu":"4","memory":"8Gi","pods":"110"}},"allocatable":{{"cpu":"4","memory":"8Gi","pods":"110"}},
  "conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}}],
  "addresses":[{{"type":"InternalIP","address":"127.0.0.1"}},{{"type":"Hostname","address":"{node}"}}]}}}}"#
    );
    let out = cluster.kubectl_stdin(&["create", "-f", "-"], &json);
    assert!(out.success(), "create node: {}", out.stderr);
    // kubectl create drops status: set it through the status subresource.
    let status: Value = serde_json::from_str(&json).unwrap();
    let patch = serde_json::json!({"status": status["status"]}).to_string();
    let out = cluster.kubectl(&[
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    assert!(out.success(), "node status: {}", out.stderr);
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
fn a_pod_bound_to_the_node_runs_on_the_runtime() {
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
    // Clean up through the API as a user would (the agent's drop removes what is left).
    cluster.kubectl(&["delete", "pod", "web", "--wait=false"]);
}
