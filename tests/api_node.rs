//! API-server mode, node side, on the real containerd against the test API server, checked
//! with kubectl: the node registers with the kubelet's labels, `--node-labels` and
//! `--register-with-taints` and turns Ready; its status carries capacity, allocatable,
//! nodeInfo, addresses, images and the four conditions; the Lease is held, owned by the Node
//! and renewed; nothing is PATCHed while nothing changes; `Starting` and `NodeReady` events are
//! in `kubectl get events` once each; losing the API server stops nothing, and registration,
//! status and Lease come back with it; a bad kubeconfig is one clear error.

mod common;

use std::process::Command;
use std::time::Duration;

use common::apiserver::Cluster;
use common::*;
use serde_json::Value;

const READY: Duration = Duration::from_secs(60);

fn condition<'a>(node: &'a Value, kind: &str) -> &'a Value {
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
        .unwrap_or(&Value::Null)
}

fn wait_ready(cluster: &Cluster, node: &str) -> Value {
    cluster.wait("the node to be Ready", READY, || {
        let n = cluster.get_json(&["node", node])?;
        (condition(&n, "Ready")["status"] == "True").then_some(n)
    })
}

fn node_events(cluster: &Cluster, node: &str, reason: &str) -> Vec<Value> {
    let sel = format!("involvedObject.name={node},reason={reason}");
    cluster
        .get_json(&["events", "-A", "--field-selector", &sel])
        .and_then(|v| v["items"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn node_registers_turns_ready_and_keeps_status_lease_and_events() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    // Computed every second, reported every 5 minutes when nothing changes (a report
    // frequency set explicitly: otherwise it follows an explicit update frequency).
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         nodeStatusUpdateFrequency: 1s\nnodeStatusReportFrequency: 5m\n",
    )
    .unwrap();
    let config_flag = format!("--config={}", config.path().display());
    let agent = cluster.agent(
        "apinode",
        &[
            "--node-labels=example.com/role=test,node.kubernetes.io/pool=a",
            "--register-with-taints=example.com/dedicated=test:NoSchedule",
            "--node-ip=127.0.0.1",
            &config_flag,
        ],
    );
    let node = agent.node.clone();
    let n = wait_ready(&cluster, &node);

    // Labels and taints.
    let labels = &n["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], node.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert_eq!(labels["example.com/role"], "test");
    assert_eq!(labels["node.kubernetes.io/pool"], "a");
    let taints = n["spec"]["taints"].as_array().expect("taints");
    assert!(
        taints.iter().any(|t| t["key"] == "example.com/dedicated"
            && t["value"] == "test"
            && t["effect"] == "NoSchedule"),
        "{taints:?}"
    );

    // Status.
    let st = &n["status"];
    for r in ["cpu", "memory", "pods", "ephemeral-storage"] {
        assert!(st["capacity"][r].is_string(), "capacity {r}: {st}");
        assert!(st["allocatable"][r].is_string(), "allocatable {r}: {st}");
    }
    assert_eq!(st["capacity"]["pods"], "110");
    let info = &st["nodeInfo"];
    assert!(
        info["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{info}"
    );
    assert_eq!(info["kubeletVersion"], "v1.33.0");
    assert_eq!(info["operatingSystem"], "linux");
    for f in [
        "machineID",
        "bootID",
        "kernelVersion",
        "osImage",
        "architecture",
    ] {
        assert!(
            !info[f].as_str().unwrap_or("").is_empty(),
            "nodeInfo.{f}: {info}"
        );
    }
    assert!(
        st["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_i64()
            .unwrap()
            > 0
    );
    let addrs = st["addresses"].as_array().unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a["type"] == "InternalIP" && a["address"] == "127.0.0.1"),
        "--node-ip: {addrs:?}"
    );
    assert!(addrs
        .iter()
        .any(|a| a["type"] == "Hostname" && a["address"] == node.as_str()));
    assert!(!st["images"].as_array().unwrap().is_empty(), "images");
    let ready = condition(&n, "Ready");
    assert_eq!(ready["reason"], "KubeletReady");
    assert_eq!(ready["message"], "kubelet is posting ready status");
    for (kind, reason) in [
        ("MemoryPressure", "KubeletHasSufficientMemory"),
        ("DiskPressure", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "KubeletHasSufficientPID"),
    ] {
        let c = condition(&n, kind);
        assert_eq!(c["status"], "False", "{kind}: {c}");
        assert_eq!(c["reason"], reason);
    }

    // kubectl's views.
    let wide = cluster.kubectl(&["get", "nodes", "-o", "wide"]);
    assert!(wide.success(), "{}", wide.stderr);
    let line = wide
        .stdout
        .lines()
        .find(|l| l.starts_with(&node))
        .unwrap_or_else(|| panic!("{}", wide.stdout));
    assert!(line.contains(" Ready "), "{line}");
    assert!(line.contains("containerd://"), "{line}");
    let describe = cluster.kubectl(&["describe", "node", &node]);
    assert!(describe.success(), "{}", describe.stderr);
    for want in [
        "Capacity:",
        "Allocatable:",
        "System Info:",
        "KubeletReady",
        "example.com/dedicated=test:NoSchedule",
    ] {
        assert!(
            describe.stdout.contains(want),
            "{want}:\n{}",
            describe.stdout
        );
    }

    // The Lease: held by the node, owned by the Node, renewed.
    let uid = n["metadata"]["uid"].as_str().unwrap().to_string();
    let lease = cluster.wait("the node Lease with its owner", READY, || {
        let l = cluster.get_json(&["lease", "-n", "kube-node-lease", &node])?;
        (!l["metadata"]["ownerReferences"].is_null()).then_some(l)
    });
    assert_eq!(lease["spec"]["holderIdentity"], node.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let owner = &lease["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["uid"], uid.as_str());
    let renewed = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    cluster.wait("the Lease to be renewed", Duration::from_secs(30), || {
        let l = cluster.get_json(&["lease", "-n", "kube-node-lease", &node])?;
        (l["spec"]["renewTime"].as_str()? != renewed).then_some(())
    });

    // Nothing changes: no status PATCH, though the status is computed every second.
    let rv = cluster.get_json(&["node", &node]).unwrap()["metadata"]["resourceVersion"].clone();
    std::thread::sleep(Duration::from_secs(5));
    let after = cluster.get_json(&["node", &node]).unwrap();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        rv,
        "the Node changed while nothing did: {}\n{}",
        after["status"],
        agent.log_tail()
    );

    // Events, once each.
    for reason in ["Starting", "NodeReady", "NodeHasSufficientMemory"] {
        let evs = cluster.wait(&format!("event {reason}"), READY, || {
            let e = node_events(&cluster, &node, reason);
            (!e.is_empty()).then_some(e)
        });
        assert_eq!(evs.len(), 1, "{reason}: {evs:?}");
        assert_eq!(evs[0]["count"], 1, "{reason}: {evs:?}");
        assert_eq!(evs[0]["source"]["component"], "kubelet");
        assert_eq!(evs[0]["source"]["host"], node.as_str());
    }
    let ready_ev = &node_events(&cluster, &node, "NodeReady")[0];
    assert_eq!(
        ready_ev["message"],
        format!("Node {node} status is now: NodeReady").as_str()
    );
    let out = cluster.kubectl(&["get", "events", "-A"]);
    assert!(out.stdout.contains("Starting kubelet."), "{}", out.stdout);

    // A pod's repeated event is one Event whose count goes up (the correlator's PATCH): each
    // restart of this crashing pod warns again that there is no cluster DNS.
    agent.write_manifest("crash.yaml", &busybox_pod("crash", "sleep 1; exit 1", ""));
    let pod = agent.pod_name("crash");
    let started = cluster.wait("a repeated MissingClusterDNS event", READY, || {
        let sel = format!("involvedObject.name={pod},reason=MissingClusterDNS");
        let items = cluster.get_json(&["events", "-n", "default", "--field-selector", &sel])?;
        let items = items["items"].as_array()?.clone();
        (items.first()?["count"].as_i64()? >= 2).then_some(items)
    });
    assert_eq!(
        started.len(),
        1,
        "one object for one repeated event: {started:?}"
    );
    assert_eq!(started[0]["involvedObject"]["kind"], "Pod");
    assert_eq!(started[0]["type"], "Warning");
}

#[test]
fn losing_the_api_server_stops_nothing_and_the_node_comes_back() {
    if !require_runtime() {
        return;
    }
    let mut cluster = Cluster::start();
    let agent = cluster.agent("apiloss", &["--node-status-update-frequency=1s"]);
    let node = agent.node.clone();
    wait_ready(&cluster, &node);
    agent.write_manifest("web.yaml", &busybox_pod("web", "exec sleep 3600", ""));
    agent.wait_running("web", READY);

    cluster.api.stop().unwrap();
    agent.wait(
        "the agent to log that the API server is unreachable",
        READY,
        || {
            agent
                .log_text()
                .contains("the API server is unreachable")
                .then_some(())
        },
    );
    // Still healthy, still running its pods, still taking new ones.
    let (code, _) = http_get(agent.healthz_port, "/healthz").unwrap();
    assert_eq!(code, 200);
    agent.write_manifest("late.yaml", &busybox_pod("late", "exec sleep 3600", ""));
    agent.wait_running("late", READY);
    assert!(agent.pod("web").is_some());
    let unreachable_logs = agent
        .log_text()
        .matches("the API server is unreachable")
        .count();
    assert_eq!(unreachable_logs, 1, "logged once per state change");

    // It comes back empty: the node registers again, the Lease is recreated.
    cluster.api.args_mut().push("--fresh".into());
    cluster.api.start_again().unwrap();
    wait_ready(&cluster, &node);
    cluster.wait("the Lease to be recreated", READY, || {
        cluster.get_json(&["lease", "-n", "kube-node-lease", &node])
    });
    agent.wait(
        "the agent to log that the API server is back",
        READY,
        || {
            agent
                .log_text()
                .contains("the API server is reachable again")
                .then_some(())
        },
    );
    agent.wait_running("web", READY);
}

#[test]
fn a_bad_kubeconfig_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for (name, content, want) in [
        ("missing.kubeconfig", None, "cannot read kubeconfig"),
        (
            "bad.kubeconfig",
            Some("clusters: [this is not: a kubeconfig"),
            "cannot read kubeconfig",
        ),
    ] {
        let path = dir.path().join(name);
        if let Some(c) = content {
            std::fs::write(&path, c).unwrap();
        }
        let out = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args([
                "--hostname-override=badkc",
                "--root-dir",
                dir.path().join("root").to_str().unwrap(),
                "--read-only-port=0",
                "--healthz-port=0",
                "--cadvisor-port=0",
            ])
            .arg(format!("--kubeconfig={}", path.display()))
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want) && err.contains(name), "{err}");
        assert_eq!(
            err.matches(name).count(),
            1,
            "one error naming the file: {err}"
        );
    }
}

#[test]
fn tls_bootstrap_gets_a_certificate_and_registers_the_node() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubelet.kubeconfig");
    let cert_dir = dir.path().join("pki");
    let mut agent = Agent::prepare("apiboot", &[]);
    agent.extra_args.extend([
        format!("--kubeconfig={}", kubeconfig.display()),
        format!(
            "--bootstrap-kubeconfig={}",
            cluster.api.bootstrap_kubeconfig().display()
        ),
        format!("--cert-dir={}", cert_dir.display()),
    ]);
    agent.spawn();
    let node = agent.node.clone();
    wait_ready(&cluster, &node);
    assert!(kubeconfig.exists(), "the kubeconfig is written");
    let current = cert_dir.join("kubelet-client-current.pem");
    let target = std::fs::read_link(&current).expect("kubelet-client-current.pem is a link");
    let pem = std::fs::read_to_string(&target).unwrap();
    assert!(pem.contains("BEGIN CERTIFICATE") && pem.contains("PRIVATE KEY"));
    let csrs = cluster.get_json(&["csr"]).unwrap();
    let csr = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["spec"]["username"]
                .as_str()
                .unwrap_or("")
                .starts_with("system:bootstrap:")
        })
        .unwrap_or_else(|| panic!("the node's CSR: {csrs}"));
    assert_eq!(
        csr["spec"]["signerName"],
        "kubernetes.io/kube-apiserver-client-kubelet"
    );
    assert!(csr["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("node-csr-"));
    let usages = csr["spec"]["usages"].as_array().unwrap();
    assert!(usages.iter().any(|u| u == "client auth"));
    // A restart keeps the certificate: no second request.
    agent.kill();
    agent.spawn();
    wait_ready(&cluster, &node);
    let n = cluster.get_json(&["csr"]).unwrap()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(n, 1, "no new request once the kubeconfig exists");
}
