//! Pod lifecycle on the real containerd: restart policies and CrashLoopBackOff, init containers
//! in order, OOMKilled, and the agent's own crash safety (SIGKILL and restart adopts running
//! pods; pods whose manifest vanished meanwhile are torn down; SIGTERM leaves pods running).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const START: Duration = Duration::from_secs(60);

fn manifest(name: &str, policy: &str, init: &str, containers: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {policy}\n  terminationGracePeriodSeconds: 2\n{init}  containers:\n{containers}"
    )
}

fn container(name: &str, script: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    image: {BUSYBOX}\n    command: [\"sh\", \"-c\", {}]\n{extra}",
        serde_json::to_string(script).unwrap()
    )
}

fn status_of<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or(&Value::Null)
}

#[test]
fn crashing_container_backs_off_and_shows_crash_loop() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("crash");
    agent.write_manifest(
        "crash.yaml",
        &manifest(
            "crash",
            "Always",
            "",
            &container("crasher", "echo dying; exit 1", ""),
        ),
    );
    // Restarted at least twice, and between restarts it waits in CrashLoopBackOff.
    let pod = agent.wait(
        "CrashLoopBackOff after restarts",
        Duration::from_secs(120),
        || {
            let p = agent.pod("crash")?;
            let c = status_of(&p, "crasher");
            (c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                && c["restartCount"].as_i64()? >= 2)
                .then_some(p)
        },
    );
    let c = status_of(&pod, "crasher");
    let msg = c["state"]["waiting"]["message"].as_str().unwrap();
    let full = agent.pod_name("crash");
    assert!(
        msg.starts_with("back-off ")
            && msg.contains(&format!(
                "restarting failed container=crasher pod={full}_default("
            )),
        "{msg}"
    );
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(
        pod["status"]["phase"], "Running",
        "restartPolicy Always keeps the pod Running"
    );
    assert_eq!(c["ready"], false);
    // The backoff grows: the message of a later wait names a longer back-off than the first.
    let first: u64 = msg["back-off ".len()..]
        .split('s')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let later = agent.wait("a longer back-off", Duration::from_secs(180), || {
        let p = agent.pod("crash")?;
        let m = status_of(&p, "crasher")["state"]["waiting"]["message"]
            .as_str()?
            .to_string();
        let secs: u64 = m
            .strip_prefix("back-off ")?
            .split('s')
            .next()?
            .parse()
            .ok()?;
        (secs > first).then_some(secs)
    });
    assert_eq!(later, first * 2, "back-off doubles");
}

#[test]
fn restart_policies_end_in_the_right_phase() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("phases");
    agent.write_manifest(
        "never.yaml",
        &manifest("never", "Never", "", &container("c", "exit 3", "")),
    );
    agent.write_manifest(
        "onfailure.yaml",
        &manifest(
            "onfailure",
            "OnFailure",
            "",
            &container("c", "sleep 1; exit 0", ""),
        ),
    );
    let never = agent.wait("Never pod Failed", START, || {
        agent
            .pod("never")
            .filter(|p| p["status"]["phase"] == "Failed")
    });
    let c = status_of(&never, "c");
    assert_eq!(c["state"]["terminated"]["exitCode"], 3);
    assert_eq!(c["state"]["terminated"]["reason"], "Error");
    assert_eq!(c["restartCount"], 0);
    let ok = agent.wait("OnFailure pod Succeeded", START, || {
        agent
            .pod("onfailure")
            .filter(|p| p["status"]["phase"] == "Succeeded")
    });
    let c = status_of(&ok, "c");
    assert_eq!(c["state"]["terminated"]["reason"], "Completed");
    assert_eq!(c["restartCount"], 0);
    let ready = ok["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "PodCompleted");
    // A finished pod's sandbox is stopped, and nothing is restarted later.
    let uid = ok["metadata"]["uid"].as_str().unwrap().to_string();
    agent.wait("sandbox stopped", START, || {
        cri_sandboxes(&uid)
            .iter()
            .all(|s| s.state == proto::cri::PodSandboxState::SandboxNotready as i32)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cri_containers(&uid).len(),
        1,
        "a Succeeded pod must not start again"
    );
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("init");
    let init = format!(
        "  initContainers:\n{}{}",
        container("first", "sleep 1; echo first", ""),
        container("second", "sleep 1; echo second", "")
    );
    agent.write_manifest(
        "init.yaml",
        &manifest(
            "init",
            "Always",
            &init,
            &container("app", "exec sleep 3600", ""),
        ),
    );
    // While initializing the pod is Pending with the kubelet's reasons.
    let pending = agent.wait("pending while initializing", START, || {
        agent.pod("init").filter(|p| {
            p["status"]["phase"] == "Pending" && p["status"]["initContainerStatuses"].is_array()
        })
    });
    let app = status_of(&pending, "app");
    assert_eq!(
        app["state"]["waiting"]["reason"], "PodInitializing",
        "{pending}"
    );
    let pod = agent.wait_running("init", START);
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    let t = |v: &Value| v.as_str().unwrap().to_string();
    let first = &inits[0]["state"]["terminated"];
    let second = &inits[1]["state"]["terminated"];
    assert_eq!(inits[0]["name"], "first");
    assert_eq!(first["exitCode"], 0);
    assert_eq!(second["exitCode"], 0);
    assert_eq!(first["reason"], "Completed");
    let app_started = t(&status_of(&pod, "app")["state"]["running"]["startedAt"]);
    assert!(
        t(&first["finishedAt"]) <= t(&second["startedAt"]),
        "{inits:?}"
    );
    assert!(
        t(&second["finishedAt"]) <= app_started,
        "{inits:?} app {app_started}"
    );
    // The runtime agrees: each container was created after the previous one finished.
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let mut cs = cri_containers(uid);
    cs.sort_by_key(|c| c.created_at);
    let names: Vec<&str> = cs
        .iter()
        .map(|c| c.metadata.as_ref().unwrap().name.as_str())
        .collect();
    assert_eq!(names, vec!["first", "second", "app"]);
    let initialized = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap();
    assert_eq!(initialized["status"], "True");
}

#[test]
fn container_over_its_memory_limit_is_oom_killed() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("oom");
    let limits = "    resources:\n      limits:\n        memory: 16Mi\n";
    // The shell keeps 64 MiB of output in a variable: far past the 16 MiB limit.
    let hog = container(
        "hog",
        "x=$(head -c 67108864 /dev/zero | tr '\\000' a); echo survived",
        limits,
    );
    agent.write_manifest("oom.yaml", &manifest("oom", "Never", "", &hog));
    let pod = agent.wait("OOMKilled", START, || {
        agent
            .pod("oom")
            .filter(|p| p["status"]["phase"] == "Failed")
    });
    let c = status_of(&pod, "hog");
    assert_eq!(c["state"]["terminated"]["reason"], "OOMKilled", "{pod}");
    assert_eq!(c["state"]["terminated"]["exitCode"], 137);
}

#[test]
fn sigkilled_agent_adopts_running_pods_and_reaps_vanished_ones() {
    if !require_runtime() {
        return;
    }
    let mut agent = Agent::start("adopt");
    agent.write_manifest(
        "keep.yaml",
        &manifest("keep", "Always", "", &container("c", "exec sleep 3600", "")),
    );
    agent.write_manifest(
        "gone.yaml",
        &manifest("gone", "Always", "", &container("c", "exec sleep 3600", "")),
    );
    let keep = agent.wait_running("keep", START);
    let gone = agent.wait_running("gone", START);
    let keep_uid = keep["metadata"]["uid"].as_str().unwrap().to_string();
    let gone_uid = gone["metadata"]["uid"].as_str().unwrap().to_string();
    let before: Vec<String> = cri_containers(&keep_uid)
        .into_iter()
        .map(|c| c.id)
        .collect();
    let sandbox_before = cri_sandboxes(&keep_uid)[0].id.clone();

    agent.kill();
    agent.remove_manifest("gone.yaml");
    agent.spawn();

    let after = agent.wait_running("keep", START);
    let cs = status_of(&after, "c");
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(
        cs["containerID"],
        format!("containerd://{}", before[0]).as_str()
    );
    agent.wait("vanished pod torn down", START, || {
        (cri_sandboxes(&gone_uid).is_empty() && cri_containers(&gone_uid).is_empty()).then_some(())
    });
    // A few relists later: still the same container, one sandbox, nothing restarted.
    std::thread::sleep(Duration::from_secs(3));
    let now: Vec<String> = cri_containers(&keep_uid)
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(now, before);
    let sandboxes = cri_sandboxes(&keep_uid);
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(sandboxes[0].id, sandbox_before);
    assert!(agent.pod("gone").is_none());
}

#[test]
fn sigterm_stops_the_agent_and_leaves_pods_running() {
    if !require_runtime() {
        return;
    }
    let mut agent = Agent::start("sigterm");
    agent.write_manifest(
        "p.yaml",
        &manifest("p", "Always", "", &container("c", "exec sleep 3600", "")),
    );
    let pod = agent.wait_running("p", START);
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    agent.terminate();
    assert!(
        http_get(agent.healthz_port, "/healthz").is_err(),
        "agent still serving after SIGTERM"
    );
    let cs = cri_containers(&uid);
    assert_eq!(cs.len(), 1);
    assert_eq!(
        cs[0].state,
        proto::cri::ContainerState::ContainerRunning as i32,
        "pod stopped with the agent"
    );
}

fn uid_manifest(uid: &str, port: u16, second_cmd: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: spec\n  uid: {uid}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n{}{}",
        container(
            "first",
            "exec sleep 3600",
            &format!("    ports:\n    - containerPort: 80\n      hostPort: {port}\n")
        ),
        container("second", second_cmd, "")
    )
}

#[test]
fn container_spec_change_restarts_only_that_container_and_sandbox_change_recreates_the_pod() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("specchange");
    // An explicit UID keeps the pod's identity across edits, as an API-server pod has.
    let uid = format!("spec-{}", agent.node);
    let port = free_port();
    agent.write_manifest("spec.yaml", &uid_manifest(&uid, port, "exec sleep 3600"));
    let pod = agent.wait_running("spec", START);
    assert_eq!(pod["metadata"]["uid"], uid.as_str());
    let id_of = |p: &Value, n: &str| {
        status_of(p, n)["containerID"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let (first, second) = (id_of(&pod, "first"), id_of(&pod, "second"));
    let sandbox = cri_sandboxes(&uid)[0].id.clone();

    agent.write_manifest("spec.yaml", &uid_manifest(&uid, port, "exec sleep 7200"));
    let pod = agent.wait("second container replaced", START, || {
        let p = agent.pod("spec")?;
        let new = id_of(&p, "second");
        (new != second && status_of(&p, "second")["state"]["running"].is_object()).then_some(p)
    });
    assert_eq!(
        id_of(&pod, "first"),
        first,
        "the unchanged container was restarted"
    );
    let sandboxes = cri_sandboxes(&uid);
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(
        sandboxes[0].id, sandbox,
        "a container change must not recreate the sandbox"
    );

    // A host port lives in the sandbox: changing it recreates the pod.
    let port2 = free_port();
    agent.write_manifest("spec.yaml", &uid_manifest(&uid, port2, "exec sleep 7200"));
    agent.wait("pod recreated in a new sandbox", START, || {
        let p = agent.pod("spec")?;
        let ready = cri_sandboxes(&uid)
            .into_iter()
            .filter(|s| s.state == proto::cri::PodSandboxState::SandboxReady as i32)
            .collect::<Vec<_>>();
        let all_running = ["first", "second"]
            .iter()
            .all(|n| status_of(&p, n)["state"]["running"].is_object());
        (ready.len() == 1 && ready[0].id != sandbox && all_running && id_of(&p, "first") != first)
            .then_some(())
    });
}

#[test]
fn a_command_that_cannot_run_is_reported() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("starterr");
    let m = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bad\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n    image: {BUSYBOX}\n    command: [\"/no/such/binary\"]\n"
    );
    agent.write_manifest("bad.yaml", &m);
    let pod = agent.wait("start failure reported", START, || {
        let p = agent.pod("bad")?;
        let c = status_of(&p, "c");
        let term = &c["state"]["terminated"];
        (term["reason"] == "StartError" || c["state"]["waiting"]["reason"] == "RunContainerError")
            .then_some(p)
    });
    let c = status_of(&pod, "c");
    let text = c.to_string();
    assert!(
        text.contains("/no/such/binary"),
        "the error should name the command: {text}"
    );
    let failed = agent.wait("pod Failed", START, || {
        agent
            .pod("bad")
            .filter(|p| p["status"]["phase"] == "Failed")
    });
    assert_eq!(
        status_of(&failed, "c")["state"]["terminated"]["exitCode"],
        128
    );
}

#[test]
fn missing_image_shows_err_image_pull_then_back_off() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("pullerr");
    let m = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nopull\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: c\n    image: 127.0.0.1:5000/kubelet-rs/does-not-exist:1\n";
    agent.write_manifest("nopull.yaml", m);
    let first = agent.wait("ErrImagePull", START, || {
        let p = agent.pod("nopull")?;
        (status_of(&p, "c")["state"]["waiting"]["reason"] == "ErrImagePull").then_some(p)
    });
    let msg = status_of(&first, "c")["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("127.0.0.1:5000/kubelet-rs/does-not-exist:1"),
        "{msg}"
    );
    let back = agent.wait("ImagePullBackOff", Duration::from_secs(90), || {
        let p = agent.pod("nopull")?;
        (status_of(&p, "c")["state"]["waiting"]["reason"] == "ImagePullBackOff").then_some(p)
    });
    assert_eq!(
        status_of(&back, "c")["state"]["waiting"]["message"],
        "Back-off pulling image \"127.0.0.1:5000/kubelet-rs/does-not-exist:1\""
    );
    assert_eq!(back["status"]["phase"], "Pending");
}

#[test]
fn sidecar_starts_before_the_next_init_container_and_keeps_running() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("sidecar");
    let init = format!(
        "  initContainers:\n{}{}",
        container(
            "side",
            "trap 'exit 0' TERM; while true; do sleep 1; done",
            "    restartPolicy: Always\n"
        ),
        container("setup", "sleep 1", "")
    );
    agent.write_manifest(
        "sc.yaml",
        &manifest(
            "sc",
            "Always",
            &init,
            &container("app", "exec sleep 3600", ""),
        ),
    );
    let pod = agent.wait_running("sc", START);
    let inits = pod["status"]["initContainerStatuses"].as_array().unwrap();
    let side = inits.iter().find(|c| c["name"] == "side").unwrap();
    let setup = inits.iter().find(|c| c["name"] == "setup").unwrap();
    assert!(
        side["state"]["running"].is_object(),
        "sidecar keeps running: {side}"
    );
    assert_eq!(setup["state"]["terminated"]["exitCode"], 0);
    let t = |v: &Value| v.as_str().unwrap().to_string();
    assert!(
        t(&side["state"]["running"]["startedAt"]) <= t(&setup["state"]["terminated"]["startedAt"])
    );
    assert_eq!(pod["status"]["phase"], "Running");
}
