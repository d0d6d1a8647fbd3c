//! Ephemeral containers (`kubectl debug`) on the real containerd through the test API server:
//! the debug container starts in the running pod, in the target container's process namespace
//! (`--target`), its status is reported in `ephemeralContainerStatuses`, it is never restarted,
//! and `kubectl debug -i` attaches to it.

mod common;

use std::io::Write;
use std::time::Duration;

use common::apiserver::Cluster;
use common::{cri_containers, require_runtime, BUSYBOX};
use serde_json::Value;

const START: Duration = Duration::from_secs(120);

fn ephemeral<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

#[test]
fn kubectl_debug_runs_a_container_in_the_targets_process_namespace() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let ca = format!("--client-ca-file={}", cluster.api.ca_cert().display());
    let agent = cluster.agent(
        "ephemeral",
        &[
            &ca,
            "--authorization-mode=AlwaysAllow",
            "--node-ip=127.0.0.1",
        ],
    );
    cluster.wait_node_ready(&agent.node);
    let pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: target\n  namespace: default\nspec:\n  nodeName: {node}\n  terminationGracePeriodSeconds: 1\n  automountServiceAccountToken: false\n  containers:\n  - name: app\n    image: {BUSYBOX}\n    command: [\"sh\", \"-c\", \"exec sleep 3601\"]\n",
        node = agent.node,
    );
    let out = cluster.kubectl_stdin(&["apply", "-f", "-"], &pod);
    assert!(out.success(), "{}", out.stderr);
    let uid = cluster.wait("pod target running", START, || {
        let p = cluster.get_json(&["pod", "target"])?;
        (p["status"]["phase"] == "Running")
            .then(|| p["metadata"]["uid"].as_str().unwrap().to_string())
    });

    // Non-interactive: `ps` in the target's PID namespace sees the app's `sleep 3601`.
    let out = cluster.kubectl(&[
        "debug",
        "target",
        &format!("--image={BUSYBOX}"),
        "--target=app",
        "--container=dbg",
        "--",
        "ps",
    ]);
    assert!(
        out.success(),
        "kubectl debug: {}\n{}",
        out.stderr,
        agent.log_tail()
    );
    let done = cluster.wait("dbg terminated", START, || {
        let p = cluster.get_json(&["pod", "target"])?;
        let st = ephemeral(&p, "dbg")?.clone();
        st["state"]["terminated"].is_object().then_some(st)
    });
    assert_eq!(done["state"]["terminated"]["exitCode"], 0, "{done}");
    assert_eq!(done["restartCount"], 0);
    assert!(done["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    let logs = cluster.kubectl(&["logs", "target", "-c", "dbg"]);
    assert!(logs.success(), "{}", logs.stderr);
    assert!(
        logs.stdout.contains("sleep 3601"),
        "the debug container sees the target's processes: {}",
        logs.stdout
    );
    // Never restarted: one container named dbg, exited, after several syncs.
    std::thread::sleep(Duration::from_secs(3));
    let dbg: Vec<_> = cri_containers(&uid)
        .into_iter()
        .filter(|c| c.metadata.as_ref().is_some_and(|m| m.name == "dbg"))
        .collect();
    assert_eq!(dbg.len(), 1, "{dbg:?}");
    let p = cluster.get_json(&["pod", "target"]).unwrap();
    assert_eq!(p["status"]["phase"], "Running", "the pod is undisturbed");
    assert_eq!(p["status"]["containerStatuses"][0]["restartCount"], 0);

    // Interactive: kubectl attaches to the new container; stdin stays open (as a person's
    // would) until the shell has answered and exits.
    let mut kubectl = cluster
        .api
        .kubectl_command()
        .args([
            "debug",
            "-i",
            "target",
            &format!("--image={BUSYBOX}"),
            "--target=app",
            "--container=shell",
            "--",
            "sh",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = kubectl.stdin.take().unwrap();
    let stdout = kubectl.stdout.take().unwrap();
    // containerd registers an attach's stdout after its stdin: output written at once can go
    // only to the log, so the shell waits a little before answering.
    writeln!(
        stdin,
        "sleep 2; echo from-the-debugger; ps | grep -c 'sleep 3601'; exit 0"
    )
    .unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut text).unwrap();
        text
    });
    let deadline = std::time::Instant::now() + START;
    let status = loop {
        if let Some(s) = kubectl.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = kubectl.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(stdin);
    let stdout = reader.join().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut kubectl.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "kubectl debug -i: {status:?} {stderr}\n{}",
        agent.log_tail()
    );
    let shell_logs = cluster.kubectl(&["logs", "target", "-c", "shell"]);
    let p = cluster.get_json(&["pod", "target"]).unwrap();
    assert!(
        stdout.contains("from-the-debugger"),
        "stdout {stdout:?}\nstderr {stderr:?}\nlogs {:?}\nstatus {}",
        shell_logs.stdout,
        p["status"]["ephemeralContainerStatuses"],
    );
    assert!(stdout.contains("\n1\n"), "the target's process: {stdout}");
    let st = cluster.wait("shell terminated", START, || {
        let p = cluster.get_json(&["pod", "target"])?;
        let st = ephemeral(&p, "shell")?.clone();
        st["state"]["terminated"].is_object().then_some(st)
    });
    assert_eq!(st["state"]["terminated"]["exitCode"], 0, "{st}");
}
