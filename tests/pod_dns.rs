//! Pod DNS on the real containerd: each `dnsPolicy` gives the pod the kubelet's
//! `/etc/resolv.conf` under `clusterDNS`/`clusterDomain`/`resolvConf`, read back from inside
//! the running container (CRI ExecSync `cat /etc/resolv.conf`). Integration tier: root and
//! `scripts/runtime up`.

mod common;

use std::time::Duration;

use common::{cri_client, cri_containers, http_get, require_runtime, Agent, BUSYBOX};
use proto::cri;
use serde_json::Value;

const START: Duration = Duration::from_secs(90);

/// A busybox pod that sleeps, with extra `spec` lines (indented two spaces).
fn pod(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         terminationGracePeriodSeconds: 1\n{spec}  containers:\n  - name: main\n    image: \
         {BUSYBOX}\n    command: [\"sleep\", \"3600\"]\n"
    )
}

/// The pod's `/etc/resolv.conf`, as its container sees it.
fn resolv_conf(agent: &Agent, name: &str) -> String {
    let p = agent.wait_running(name, START);
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let id = cri_containers(&uid)
        .into_iter()
        .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == "main"))
        .expect("container main")
        .id;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let out = rt.block_on(async {
        let mut c = cri_client().await.unwrap();
        c.exec_sync(cri::ExecSyncRequest {
            container_id: id,
            cmd: vec!["cat".into(), "/etc/resolv.conf".into()],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner()
    });
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

#[test]
fn each_dns_policy_gets_the_kubelets_resolv_conf() {
    if !require_runtime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let host = dir.path().join("resolv.conf");
    std::fs::write(
        &host,
        "# the node's resolver\nnameserver 192.0.2.53\nsearch corp.example. lab.example\n\
         options timeout:2\n",
    )
    .unwrap();
    let agent = Agent::start_with(
        "pod-dns",
        &[
            "--cluster-dns=10.96.0.10",
            "--cluster-domain=cluster.local",
            &format!("--resolv-conf={}", host.display()),
        ],
    );
    let cases = [
        ("cluster-first", "  dnsPolicy: ClusterFirst\n"),
        ("default", "  dnsPolicy: Default\n"),
        (
            "none",
            "  dnsPolicy: None\n  dnsConfig:\n    nameservers: [192.0.2.1]\n    searches: \
             [a.example]\n    options:\n    - name: ndots\n      value: \"2\"\n    - name: \
             edns0\n",
        ),
        (
            "merged",
            "  dnsPolicy: ClusterFirst\n  dnsConfig:\n    nameservers: [192.0.2.7]\n    \
             searches: [extra.example]\n    options:\n    - name: ndots\n      value: \"1\"\n",
        ),
        (
            "hostnet",
            "  hostNetwork: true\n  dnsPolicy: ClusterFirst\n",
        ),
        (
            "hostnet-cluster",
            "  hostNetwork: true\n  dnsPolicy: ClusterFirstWithHostNet\n",
        ),
    ];
    for (name, spec) in cases {
        agent.write_manifest(&format!("{name}.yaml"), &pod(name, spec));
    }
    let cluster_search =
        "search default.svc.cluster.local svc.cluster.local cluster.local corp.example lab.example";
    let expected: [(&str, Vec<&str>); 6] = [
        (
            "cluster-first",
            vec![cluster_search, "nameserver 10.96.0.10", "options ndots:5"],
        ),
        (
            "default",
            vec![
                "search corp.example lab.example",
                "nameserver 192.0.2.53",
                "options timeout:2",
            ],
        ),
        (
            "none",
            vec![
                "search a.example",
                "nameserver 192.0.2.1",
                "options ndots:2 edns0",
            ],
        ),
        (
            "merged",
            vec![
                "search default.svc.cluster.local svc.cluster.local cluster.local corp.example \
                 lab.example extra.example",
                "nameserver 10.96.0.10",
                "nameserver 192.0.2.7",
                "options ndots:1",
            ],
        ),
        (
            "hostnet",
            vec![
                "search corp.example lab.example",
                "nameserver 192.0.2.53",
                "options timeout:2",
            ],
        ),
        (
            "hostnet-cluster",
            vec![cluster_search, "nameserver 10.96.0.10", "options ndots:5"],
        ),
    ];
    for (name, want) in expected {
        let got = resolv_conf(&agent, name);
        assert_eq!(lines(&got), want, "pod {name}:\n{got}");
    }
}

#[test]
fn without_cluster_dns_or_host_dns() {
    if !require_runtime() {
        return;
    }
    // resolvConf '' turns the host's DNS off; no clusterDNS makes ClusterFirst fall back to
    // Default, with the kubelet's MissingClusterDNS warning on the pod.
    let agent = Agent::start_with("pod-dns-off", &["--resolv-conf="]);
    agent.write_manifest("plain.yaml", &pod("plain", ""));
    let got = resolv_conf(&agent, "plain");
    assert_eq!(lines(&got), ["search .", "nameserver 127.0.0.1"], "{got}");
    let event = agent.wait("a MissingClusterDNS event", START, || {
        let (_, body) = http_get(agent.read_only_port, "/events").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        v["items"]
            .as_array()?
            .iter()
            .find(|e| e["reason"] == "MissingClusterDNS")
            .cloned()
    });
    assert_eq!(event["type"], "Warning", "{event}");
    assert_eq!(event["involvedObject"]["name"], agent.pod_name("plain"));
    let msg = event["message"].as_str().unwrap();
    assert!(
        msg.ends_with(
            "kubelet does not have ClusterDNS IP configured and cannot create Pod using \
             \"ClusterFirst\" policy. Falling back to \"Default\" policy."
        ),
        "{msg}"
    );
}
