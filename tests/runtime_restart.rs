//! containerd killed and restarted under a running agent: the agent reports the runtime down
//! (healthz) without crashing, then reconciles when it returns. This test kills the shared
//! containerd, so it lives alone in its own test binary (cargo runs test binaries one at a time).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const PID_FILE: &str = "/run/kubelet-rs/containerd.pid";

#[test]
fn agent_survives_a_containerd_restart_and_reconciles() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start("ctrd-restart");
    agent.write_manifest("p.yaml", &busybox_pod("p", "exec sleep 3600", ""));
    let pod = agent.wait_running("p", Duration::from_secs(60));
    let id_before = pod["status"]["containerStatuses"][0]["containerID"].clone();

    let pid: i32 = std::fs::read_to_string(PID_FILE)
        .expect("containerd pid file (started by scripts/runtime)")
        .trim()
        .parse()
        .unwrap();
    // SAFETY: kill(2) on the containerd that scripts/runtime started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);

    let body = agent.wait(
        "healthz to report the runtime down",
        Duration::from_secs(30),
        || {
            let (code, body) = http_get(agent.healthz_port, "/healthz?verbose").ok()?;
            (code == 500 && body.contains("[-]runtime failed: container runtime is down"))
                .then_some(body)
        },
    );
    assert!(body.ends_with("healthz check failed\n"), "{body}");
    // A pod added while the runtime is down waits instead of failing.
    agent.write_manifest("q.yaml", &busybox_pod("q", "exec sleep 3600", ""));

    let runtime = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/runtime");
    let st = Command::new(runtime)
        .arg("up")
        .status()
        .expect("scripts/runtime up");
    assert!(
        st.success(),
        "scripts/runtime up failed to restart containerd"
    );

    agent.wait("healthz ok again", Duration::from_secs(60), || {
        matches!(http_get(agent.healthz_port, "/healthz"), Ok((200, _))).then_some(())
    });
    let pod = agent.wait_running("p", Duration::from_secs(60));
    assert_eq!(
        pod["status"]["containerStatuses"][0]["containerID"], id_before,
        "the running container was replaced"
    );
    agent.wait_running("q", Duration::from_secs(60));
}
