//! Volumes on the real containerd: an init container writes into an emptyDir that the app
//! reads; a Memory emptyDir is a tmpfs of its sizeLimit; a downwardAPI file holds the pod's
//! labels; a hostPath is shared with the host; a subPath that resolves through a symlink out of
//! its volume is refused; a pod that writes more into a disk emptyDir than its sizeLimit is
//! evicted; bad input (a failing hostPath type check, a missing ConfigMap key)
//! leaves the pod waiting with a clear reason. Every pod is removed at the end and nothing stays
//! mounted below the agent's root.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

fn manifest(name: &str, spec: Value) -> String {
    let mut spec = spec;
    spec["terminationGracePeriodSeconds"] = json!(2);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name, "tier": "test"}},
        "spec": spec,
    })
    .to_string()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

/// The container's log (CRI format) from /var/log/pods.
fn container_log(pod: &Value, container: &str) -> String {
    let path = format!(
        "/var/log/pods/default_{}_{}/{container}/0.log",
        pod["metadata"]["name"].as_str().unwrap(),
        pod["metadata"]["uid"].as_str().unwrap()
    );
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Mount points below `dir` in the host's mount table.
fn mounts_below(dir: &Path) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

fn remove_and_check_clean(agent: &Agent, file: &str, name: &str, uid: &str) {
    agent.remove_manifest(file);
    agent.wait(&format!("pod {name} removed"), WAIT, || {
        agent.pod(name).is_none().then_some(())
    });
    let pod_dir = agent.root.join("pods").join(uid);
    agent.wait("pod directory removed", WAIT, || {
        (!pod_dir.exists()).then_some(())
    });
    assert!(
        mounts_below(&agent.root).is_empty(),
        "left mounted: {:?}",
        mounts_below(&agent.root)
    );
}

#[test]
fn init_container_fills_an_empty_dir_the_app_reads() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("emptydir");
    agent.write_manifest(
        "share.yaml",
        &manifest(
            "share",
            json!({
                "initContainers": [{
                    "name": "init", "image": BUSYBOX,
                    "command": ["sh", "-c", "echo hello-from-init > /data/msg"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "containers": [{
                    "name": "app", "image": BUSYBOX,
                    "command": ["sh", "-c", "cat /data/msg; exec sleep 3600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}]
                }],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }),
        ),
    );
    let pod = agent.wait_running("share", WAIT);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    agent.wait("the app printed what init wrote", WAIT, || {
        container_log(&pod, "app")
            .contains("hello-from-init")
            .then_some(())
    });
    let dir = agent
        .root
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/data");
    assert_eq!(
        std::fs::read_to_string(dir.join("msg")).unwrap(),
        "hello-from-init\n"
    );
    remove_and_check_clean(&agent, "share.yaml", "share", &uid);
}

#[test]
fn memory_empty_dir_is_a_tmpfs_of_its_size_limit_and_downward_api_has_labels() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("tmpfs");
    agent.write_manifest(
        "mem.yaml",
        &manifest(
            "mem",
            json!({
                "containers": [{
                    "name": "app", "image": BUSYBOX,
                    "command": ["sh", "-c", "grep ' /cache ' /proc/mounts; echo LABELS; cat /etc/podinfo/labels; echo; echo NAME=$(cat /etc/podinfo/name); exec sleep 3600"],
                    "volumeMounts": [
                        {"name": "cache", "mountPath": "/cache"},
                        {"name": "podinfo", "mountPath": "/etc/podinfo"}
                    ]
                }],
                "volumes": [
                    {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
                    {"name": "podinfo", "downwardAPI": {"items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}
                    ]}}
                ]
            }),
        ),
    );
    let pod = agent.wait_running("mem", WAIT);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let log = agent.wait("the app's report", WAIT, || {
        let l = container_log(&pod, "app");
        l.contains("NAME=").then_some(l)
    });
    assert!(log.contains("tmpfs /cache tmpfs"), "{log}");
    assert!(log.contains("size=65536k"), "{log}");
    assert!(log.contains("app=\"mem\""), "{log}");
    assert!(log.contains("tier=\"test\""), "{log}");
    assert!(
        log.contains(&format!("NAME={}", agent.pod_name("mem"))),
        "{log}"
    );
    // On the host: the volume directory is the tmpfs.
    let vol = agent
        .root
        .join("pods")
        .join(&uid)
        .join("volumes/kubernetes.io~empty-dir/cache");
    assert!(
        mounts_below(&agent.root)
            .iter()
            .any(|m| Path::new(m) == vol),
        "{:?}",
        mounts_below(&agent.root)
    );
    remove_and_check_clean(&agent, "mem.yaml", "mem", &uid);
}

#[test]
fn an_empty_dir_over_its_size_limit_gets_its_pod_evicted() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("emptydir-limit");
    agent.write_manifest(
        "fill.yaml",
        &manifest(
            "fill",
            json!({
                "restartPolicy": "Never",
                "containers": [{
                    "name": "app", "image": BUSYBOX,
                    "command": ["sh", "-c", "dd if=/dev/zero of=/data/blob bs=1048576 count=4 && sync && echo FILLED; exec sleep 3600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "1Mi"}}]
            }),
        ),
    );
    // Measured at the eviction manager's monitoring interval (10 s); it may come before this
    // test sees the pod running.
    let evicted = agent.wait("the pod evicted", WAIT, || {
        agent
            .pod("fill")
            .filter(|p| p["status"]["phase"] == "Failed")
    });
    let uid = evicted["metadata"]["uid"].as_str().unwrap().to_string();
    let message = "Usage of EmptyDir volume \"data\" exceeds the limit \"1Mi\". ";
    assert_eq!(evicted["status"]["reason"], "Evicted", "{evicted}");
    assert_eq!(evicted["status"]["message"], message, "{evicted}");
    assert!(
        container_log(&evicted, "app").contains("FILLED"),
        "the container wrote its 4 MiB"
    );
    // Its container is stopped, and the eviction is an event on the pod.
    agent.wait("the container stopped", WAIT, || {
        let p = agent.pod("fill")?;
        container(&p, "app")["state"]
            .get("terminated")
            .is_some()
            .then_some(())
    });
    let (code, body) = http_get(agent.read_only_port, "/events").unwrap();
    assert_eq!(code, 200, "{body}");
    let events: Value = serde_json::from_str(&body).unwrap();
    assert!(
        events["items"].as_array().unwrap().iter().any(|e| {
            e["reason"] == "Evicted"
                && e["message"] == message
                && e["involvedObject"]["uid"] == uid.as_str()
        }),
        "{body}"
    );
    remove_and_check_clean(&agent, "fill.yaml", "fill", &uid);
}

#[test]
fn host_path_is_shared_with_the_host() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("hostpath");
    let host = tempfile::Builder::new()
        .prefix("kubelet-rs-hostpath-")
        .tempdir()
        .unwrap();
    std::fs::write(host.path().join("in"), "from-host\n").unwrap();
    let sock_dir = host.path().join("created-by-kubelet");
    agent.write_manifest(
        "hp.yaml",
        &manifest(
            "hp",
            json!({
                "containers": [{
                    "name": "app", "image": BUSYBOX,
                    "command": ["sh", "-c", "cat /host/in > /host/out; echo from-container >> /host/out; ls -d /made; exec sleep 3600"],
                    "volumeMounts": [
                        {"name": "host", "mountPath": "/host"},
                        {"name": "made", "mountPath": "/made"}
                    ]
                }],
                "volumes": [
                    {"name": "host", "hostPath": {"path": host.path().to_str().unwrap(), "type": "Directory"}},
                    {"name": "made", "hostPath": {"path": sock_dir.to_str().unwrap(), "type": "DirectoryOrCreate"}}
                ]
            }),
        ),
    );
    let pod = agent.wait_running("hp", WAIT);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let out = agent.wait("the container wrote to the host", WAIT, || {
        let s = std::fs::read_to_string(host.path().join("out")).ok()?;
        s.contains("from-container").then_some(s)
    });
    assert_eq!(out, "from-host\nfrom-container\n");
    assert!(sock_dir.is_dir(), "DirectoryOrCreate created it");
    remove_and_check_clean(&agent, "hp.yaml", "hp", &uid);
    assert!(
        host.path().join("out").exists(),
        "teardown never touches a hostPath"
    );
}

#[test]
fn sub_path_through_a_symlink_out_of_the_volume_is_refused() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("subpath");
    let outside = tempfile::Builder::new()
        .prefix("kubelet-rs-outside-")
        .tempdir()
        .unwrap();
    std::fs::write(outside.path().join("secret"), "host secret\n").unwrap();
    agent.write_manifest(
        "esc.yaml",
        &manifest(
            "esc",
            json!({
                "initContainers": [{
                    "name": "plant", "image": BUSYBOX,
                    "command": ["sh", "-c", format!("ln -s {} /data/evil; mkdir -p /data/fine; echo ok > /data/fine/f", outside.path().display())],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]
                }],
                "containers": [{
                    "name": "victim", "image": BUSYBOX,
                    "command": ["sh", "-c", "ls /mnt; exec sleep 3600"],
                    "volumeMounts": [{"name": "data", "mountPath": "/mnt", "subPath": "evil"}]
                }, {
                    "name": "ok", "image": BUSYBOX,
                    "command": ["sh", "-c", "cat /mnt/f; exec sleep 3600"],
                    "env": [{"name": "DIR", "value": "fine"}],
                    "volumeMounts": [{"name": "data", "mountPath": "/mnt", "subPathExpr": "$(DIR)"}]
                }],
                "volumes": [{"name": "data", "emptyDir": {}}]
            }),
        ),
    );
    let pod = agent.wait("the victim refused", WAIT, || {
        let p = agent.pod("esc")?;
        let c = container(&p, "victim");
        (c["state"]["waiting"]["reason"] == "CreateContainerConfigError").then_some(p)
    });
    let msg = container(&pod, "victim")["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.starts_with(
            "failed to prepare subPath for volumeMount \"data\" of container \"victim\""
        ) && msg.contains("not within volume path"),
        "{msg}"
    );
    let pod = agent.wait("the safe subPathExpr container runs", WAIT, || {
        let p = agent.pod("esc")?;
        container(&p, "ok")["state"]["running"]
            .is_object()
            .then_some(p)
    });
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    agent.wait("ok printed its subPath file", WAIT, || {
        container_log(&pod, "ok").contains("ok").then_some(())
    });
    assert!(
        !mounts_below(&agent.root)
            .iter()
            .any(|m| m.contains("volume-subpaths/data/victim")),
        "nothing mounted for the refused subPath"
    );
    remove_and_check_clean(&agent, "esc.yaml", "esc", &uid);
    assert_eq!(
        std::fs::read_to_string(outside.path().join("secret")).unwrap(),
        "host secret\n"
    );
}

#[test]
fn bad_volume_input_leaves_the_pod_waiting_with_a_reason() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("badvol");
    let missing = tempfile::Builder::new()
        .prefix("kubelet-rs-missing-")
        .tempdir()
        .unwrap();
    let absent = missing.path().join("absent");
    agent.write_manifest(
        "bad.yaml",
        &manifest(
            "bad",
            json!({
                "containers": [{
                    "name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "hp", "mountPath": "/hp"}]
                }],
                "volumes": [{"name": "hp", "hostPath": {"path": absent.to_str().unwrap(), "type": "Directory"}}]
            }),
        ),
    );
    agent.write_manifest(
        "env.yaml",
        &manifest(
            "env",
            json!({
                "containers": [{
                    "name": "app", "image": BUSYBOX, "command": ["sleep", "3600"],
                    "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]
                }]
            }),
        ),
    );
    agent.write_manifest(
        "fine.yaml",
        &manifest(
            "fine",
            json!({"containers": [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}]}),
        ),
    );
    agent.wait("FailedMount reported", WAIT, || {
        agent
            .log_text()
            .contains(&format!(
                "MountVolume.SetUp failed for volume \"hp\" : hostPath type check failed: {} is not a directory",
                absent.display()
            ))
            .then_some(())
    });
    let pod = agent.pod("bad").unwrap();
    assert_eq!(pod["status"]["phase"], "Pending");
    assert_eq!(
        container(&pod, "app")["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
    let env = agent.wait("env pod config error", WAIT, || {
        let p = agent.pod("env")?;
        (container(&p, "app")["state"]["waiting"]["reason"] == "CreateContainerConfigError")
            .then_some(p)
    });
    assert_eq!(
        container(&env, "app")["state"]["waiting"]["message"],
        "configmap \"cfg\" not found"
    );
    // Nothing else is disturbed.
    agent.wait_running("fine", WAIT);
    // Creating the directory lets the pod start.
    std::fs::create_dir(&absent).unwrap();
    let pod = agent.wait_running("bad", WAIT);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    remove_and_check_clean(&agent, "bad.yaml", "bad", &uid);
}
