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
    let mut cluster = Cluster::start();
    let agent = cluster.agent("api-run", &[]);
    cluster.wait_node_ready(&agent.node);
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
        agent.pod_named("web").filter(running)
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

    // Nothing changes: across more than one 10 s resync the agent sends no status patch.
    std::thread::sleep(Duration::from_secs(2));
    let before = cluster.node_requests(&agent.node, "patch", "pods");
    assert!(before >= 1, "the Running status was patched");
    std::thread::sleep(Duration::from_secs(12));
    let after = cluster.node_requests(&agent.node, "patch", "pods");
    assert_eq!(before, after, "status patches while nothing changed");

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
        (!running && agent.pod_named("web").is_none()).then_some(())
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
    cluster.wait_node_ready(&agent.node);
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
    assert!(running(&agent.pod_named(&name).unwrap()));

    // The manifest goes: so does the mirror pod.
    agent.remove_manifest("web.yaml");
    cluster.wait("mirror pod removed", START, || {
        cluster.get_json(&["pod", &name]).is_none().then_some(())
    });
}

#[test]
fn pods_that_do_not_fit_fail_admission_with_the_kubelets_reasons() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let agent = cluster.agent("api-admit", &[]);
    cluster.wait_node_ready(&agent.node);
    let with = |name: &str, patch: Value| {
        let mut v: Value =
            serde_json::from_str(&api_pod(name, Some(&agent.node), "exec sleep 3600")).unwrap();
        json_merge(&mut v, patch);
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &v.to_string());
        assert!(out.success(), "{name}: {}", out.stderr);
    };
    let resources = |cpu: &str, mem: &str| {
        serde_json::json!({"spec": {"containers": [{"name": "main", "image": BUSYBOX,
            "command": ["sh", "-c", "exec sleep 3600"],
            "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}})
    };
    with("big-cpu", resources("100000", "1Mi"));
    with("big-mem", resources("10m", "100Ti"));
    with(
        "elsewhere",
        serde_json::json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": "another-node"}}}),
    );
    with("fits", resources("10m", "16Mi"));
    let failed = |name: &str| {
        cluster.wait(&format!("{name} Failed"), START, || {
            cluster
                .get_json(&["pod", name])
                .filter(|p| p["status"]["phase"] == "Failed")
        })
    };
    let p = failed("big-cpu");
    assert_eq!(p["status"]["reason"], "OutOfcpu");
    let msg = p["status"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with(
            "Pod was rejected: Node didn't have enough resource: cpu, requested: 100000000, used: "
        ),
        "{msg}"
    );
    assert_eq!(failed("big-mem")["status"]["reason"], "OutOfmemory");
    let p = failed("elsewhere");
    assert_eq!(p["status"]["reason"], "NodeAffinity");
    assert_eq!(
        p["status"]["message"],
        "Pod was rejected: Predicate NodeAffinity failed: node(s) didn't match Node selector"
    );
    // Nothing else is disturbed: the pod that fits runs, the refused ones never reached the
    // runtime, and each refusal was an event.
    cluster.wait("fits Running", START, || {
        cluster.get_json(&["pod", "fits"]).filter(running)
    });
    for name in ["big-cpu", "big-mem", "elsewhere"] {
        let uid = cluster.get_json(&["pod", name]).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(cri_sandboxes(&uid).is_empty(), "{name} reached the runtime");
    }
    let log = agent.log_text();
    for reason in ["OutOfcpu", "OutOfmemory", "NodeAffinity"] {
        assert!(
            log.lines()
                .any(|l| l.contains("event:") && l.contains(&format!("reason=\"{reason}\""))),
            "no {reason} event in the log"
        );
    }
    for name in ["big-cpu", "big-mem", "elsewhere", "fits"] {
        cluster.kubectl(&["delete", "pod", name, "--wait=false"]);
    }
}

/// RFC 7386 merge of `patch` into `v`.
fn json_merge(v: &mut Value, patch: Value) {
    match (v, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, pv) in b {
                if pv.is_null() {
                    a.remove(&k);
                } else {
                    json_merge(a.entry(k).or_insert(Value::Null), pv);
                }
            }
        }
        (v, p) => *v = p,
    }
}

#[test]
fn kubectl_run_without_a_node_is_scheduled_here_and_runs() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let agent = cluster.agent("api-sched", &[]);
    cluster.wait_node_ready(&agent.node);
    let out = cluster.kubectl(&[
        "run",
        "sched",
        &format!("--image={BUSYBOX}"),
        "--restart=Never",
        "--overrides={\"spec\":{\"automountServiceAccountToken\":false,\"terminationGracePeriodSeconds\":2}}",
        "--",
        "sleep",
        "3600",
    ]);
    assert!(out.success(), "kubectl run: {}", out.stderr);
    let p = cluster.wait("sched Running", START, || {
        cluster.get_json(&["pod", "sched"]).filter(running)
    });
    assert_eq!(p["spec"]["nodeName"], agent.node.as_str());
    assert!(agent.pod_named("sched").is_some_and(|p| running(&p)));
    let out = cluster.kubectl(&["delete", "pod", "sched", "--timeout=60s"]);
    assert!(out.success(), "{}", out.stderr);
}

#[test]
fn an_api_server_outage_leaves_pods_running_and_status_catches_up() {
    if !require_runtime() {
        return;
    }
    let mut cluster = Cluster::start();
    let agent = cluster.agent("api-outage", &[]);
    cluster.wait_node_ready(&agent.node);
    let mut steady: Value =
        serde_json::from_str(&api_pod("steady", Some(&agent.node), "exec sleep 3600")).unwrap();
    steady["spec"]["restartPolicy"] = "Always".into();
    let mut finisher: Value =
        serde_json::from_str(&api_pod("finisher", Some(&agent.node), "sleep 12; exit 0")).unwrap();
    finisher["spec"]["restartPolicy"] = "Never".into();
    for p in [&steady, &finisher] {
        let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &p.to_string());
        assert!(out.success(), "{}", out.stderr);
    }
    for name in ["steady", "finisher"] {
        cluster.wait(&format!("{name} Running"), START, || {
            cluster.get_json(&["pod", name]).filter(running)
        });
    }
    // The API server goes away (its state saved); the node carries on without it.
    cluster.api.stop().expect("stop test-apiserver");
    let done = agent.wait("finisher Succeeded locally", START, || {
        agent
            .pod_named("finisher")
            .filter(|p| p["status"]["phase"] == "Succeeded")
    });
    assert!(agent.pod_named("steady").is_some_and(|p| running(&p)));
    // Back again: the watch resumes and the status the API missed arrives.
    cluster.api.start_again().expect("restart test-apiserver");
    let p = cluster.wait("finisher Succeeded in the API", START, || {
        cluster
            .get_json(&["pod", "finisher"])
            .filter(|p| p["status"]["phase"] == "Succeeded")
    });
    assert_eq!(
        p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        done["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
    );
    assert!(agent.pod_named("steady").is_some_and(|p| running(&p)));
    let log = agent.log_text();
    let outage_lines = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("API pod source: list/watch"))
        .count();
    assert_eq!(
        outage_lines, 1,
        "the outage is one warning (retries are debug)"
    );
    // The watch's recovery is logged with the first event after it (the status just patched).
    agent.wait("the watch's recovery logged", START, || {
        agent
            .log_text()
            .contains("API pod source: watching this node's pods again")
            .then_some(())
    });
    assert!(
        log.contains("pod status updates reach the API server again"),
        "the recovery is logged"
    );
    // Still managed through the API after the outage.
    let out = cluster.kubectl(&["delete", "pod", "steady", "--timeout=60s"]);
    assert!(out.success(), "{}\n{}", out.stderr, agent.log_tail());
}
