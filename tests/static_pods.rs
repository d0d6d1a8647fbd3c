//! Static pods on the real containerd: a manifest dropped into the directory becomes a running
//! pod with the kubelet's labels and limits; removing it removes everything; a malformed manifest
//! is reported and does not disturb others; editing a manifest replaces the pod.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cgroups::Knob;
use common::*;

const START: Duration = Duration::from_secs(60);

#[test]
fn static_pod_runs_with_kubelet_labels_and_limits_then_is_removed_cleanly() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("labels");
    let limits = "    resources:\n      limits:\n        memory: 64Mi\n        cpu: 250m\n";
    agent.write_manifest(
        "web.yaml",
        &busybox_pod("web", "echo started; exec sleep 3600", limits),
    );
    let pod = agent.wait_running("web", START);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let name = agent.pod_name("web");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/config.source"],
        "file"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/config.hash"],
        uid.as_str()
    );
    assert_eq!(pod["spec"]["nodeName"], agent.node.as_str());
    assert_eq!(pod["status"]["qosClass"], "Guaranteed");
    let cs = &pod["status"]["containerStatuses"][0];
    assert!(
        cs["containerID"]
            .as_str()
            .unwrap()
            .starts_with("containerd://"),
        "{cs}"
    );
    assert!(cs["imageID"].as_str().unwrap().contains("sha256:"), "{cs}");
    assert_eq!(cs["image"], BUSYBOX);
    assert!(
        pod["status"]["podIP"]
            .as_str()
            .unwrap()
            .starts_with("10.88."),
        "{pod}"
    );

    // Visible over CRI with the kubelet's labels and annotations.
    let sandboxes = cri_sandboxes(&uid);
    assert_eq!(sandboxes.len(), 1);
    let sb = &sandboxes[0];
    assert_eq!(sb.labels["io.kubernetes.pod.name"], name);
    assert_eq!(sb.labels["io.kubernetes.pod.namespace"], "default");
    assert_eq!(sb.labels["io.kubernetes.pod.uid"], uid);
    assert_eq!(sb.labels["app"], "web");
    let containers = cri_containers(&uid);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c.labels["io.kubernetes.container.name"], "main");
    assert_eq!(c.labels["io.kubernetes.pod.name"], name);
    assert_eq!(c.labels["io.kubernetes.pod.uid"], uid);
    assert_eq!(c.annotations["io.kubernetes.container.restartCount"], "0");
    assert_eq!(c.annotations["io.kubernetes.container.hash"].len(), 8);
    assert_eq!(c.pod_sandbox_id, sb.id);

    // Limits land in the cgroups: the pod's (Guaranteed: kubepods/pod<uid>) and the container's.
    let pod_cg = agent.cgroup_name(&format!("kubepods/pod{uid}"));
    let ctr_cg = format!("{pod_cg}/{}", c.id);
    assert_eq!(cgroups::read(&pod_cg, Knob::MemoryLimit), Some(64 << 20));
    assert_eq!(cgroups::read(&ctr_cg, Knob::MemoryLimit), Some(64 << 20));
    assert_eq!(cgroups::read(&pod_cg, Knob::CpuQuota), Some(25000));
    assert_eq!(cgroups::read(&ctr_cg, Knob::CpuQuota), Some(25000));
    assert_eq!(
        cgroups::read(&ctr_cg, Knob::CpuShares),
        Some(cgroups::shares_as_read(256))
    );

    // The container log is where the kubelet puts it.
    let log_dir = Path::new("/var/log/pods").join(format!("default_{name}_{uid}"));
    let log_file = log_dir.join("main/0.log");
    agent.wait("container log", START, || {
        std::fs::read_to_string(&log_file)
            .ok()
            .filter(|s| s.contains("started"))
    });

    // Removing the manifest removes the pod and everything it had.
    agent.remove_manifest("web.yaml");
    agent.wait("pod removed from /pods", START, || {
        agent.pod("web").is_none().then_some(())
    });
    agent.wait("runtime objects removed", START, || {
        (cri_sandboxes(&uid).is_empty() && cri_containers(&uid).is_empty()).then_some(())
    });
    agent.wait("pod cgroup removed", START, || {
        let gone = ["memory", "cpu", "pids"]
            .iter()
            .all(|ctl| !cgroups::dir(ctl, &pod_cg).exists());
        gone.then_some(())
    });
    agent.wait("log directory removed", START, || {
        (!log_dir.exists()).then_some(())
    });
    assert!(
        !agent.root.join("pods").join(&uid).exists(),
        "pod directory left behind"
    );
}

#[test]
fn malformed_manifest_is_reported_and_the_good_pod_still_runs() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("malformed");
    agent.write_manifest("bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  containers:\n  - name: c\n    image: \"\"\n");
    agent.write_manifest(
        "broken.json",
        "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", ",
    );
    agent.write_manifest("good.yaml", &busybox_pod("good", "exec sleep 3600", ""));
    agent.wait_running("good", START);
    assert!(agent.pod("bad").is_none());
    let log = agent.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("bad.yaml") && l.contains("spec.containers[0].image")),
        "no log line names bad.yaml and the field:\n{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("broken.json")),
        "no log line names broken.json:\n{log}"
    );
    // Fixing the bad manifest starts it without disturbing the good pod.
    let good_uid = agent.pod("good").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let good_id = cri_containers(&good_uid)[0].id.clone();
    agent.write_manifest("bad.yaml", &busybox_pod("bad", "exec sleep 3600", ""));
    agent.wait_running("bad", START);
    let after = cri_containers(&good_uid);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].id, good_id, "the good pod was restarted");
}

#[test]
fn editing_a_manifest_replaces_the_pod() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("edit");
    agent.write_manifest("app.yaml", &busybox_pod("app", "exec sleep 3600", ""));
    let old = agent.wait_running("app", START);
    let old_uid = old["metadata"]["uid"].as_str().unwrap().to_string();
    agent.write_manifest("app.yaml", &busybox_pod("app", "exec sleep 7200", ""));
    let new = agent.wait("replacement pod running", START, || {
        let p = agent.pod("app")?;
        let running = p["status"]["containerStatuses"][0]["state"]["running"].is_object();
        (p["metadata"]["uid"] != old_uid.as_str() && running).then_some(p)
    });
    let new_uid = new["metadata"]["uid"].as_str().unwrap();
    assert_ne!(new_uid, old_uid);
    agent.wait("old pod gone from the runtime", START, || {
        cri_sandboxes(&old_uid).is_empty().then_some(())
    });
    assert_eq!(cri_containers(new_uid).len(), 1);
}

#[test]
fn healthz_answers_ok_on_loopback() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("healthz");
    let (code, body) = http_get(agent.healthz_port, "/healthz").unwrap();
    assert_eq!((code, body.as_str()), (200, "ok"));
    let (code, body) = http_get(agent.healthz_port, "/healthz?verbose").unwrap();
    assert_eq!(code, 200);
    assert!(
        body.contains("[+]pleg ok") && body.contains("[+]runtime ok"),
        "{body}"
    );
    let (code, body) = http_get(agent.read_only_port, "/pods").unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "PodList");
}
