//! Container GC on the real runtime (one collection a minute, as the kubelet): the dead
//! containers of a crash-looping container are trimmed to the newest one, and the log
//! directory of a pod of this node that no longer exists is removed — while a log directory of
//! another node's pod (the log root is shared by every agent on this machine) is left alone.

mod common;

use std::time::{Duration, Instant};

use common::{busybox_pod, require_runtime, Agent};
use proto::cri::ContainerState;

#[test]
fn dead_containers_and_log_directories_of_gone_pods_are_collected() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start_with(
        "gc-containers",
        &["--eviction-hard", "memory.available<100Mi"],
    );
    let ghost = std::path::PathBuf::from(format!(
        "/var/log/pods/default_ghost-{}_00000000-dead-beef-0000-{}",
        agent.node,
        std::process::id()
    ));
    let foreign = std::path::PathBuf::from(format!(
        "/var/log/pods/default_ghost-other-node-{}_00000000-dead-beef-0001-{}",
        std::process::id(),
        std::process::id()
    ));
    for d in [&ghost, &foreign] {
        std::fs::create_dir_all(d.join("c")).unwrap();
        std::fs::write(d.join("c/0.log"), "old\n").unwrap();
    }
    struct Cleanup(std::path::PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = (Cleanup(ghost.clone()), Cleanup(foreign.clone()));

    agent.write_manifest("crash.yaml", &busybox_pod("crash", "exit 1", ""));
    let uid = agent.wait("the crashing pod", Duration::from_secs(60), || {
        agent
            .pod("crash")
            .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string))
    });
    let exited = || {
        common::cri_containers(&uid)
            .iter()
            .filter(|c| c.state == ContainerState::ContainerExited as i32)
            .count()
    };
    // Dead containers pile up under the crash-loop backoff until a collection runs.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut most = 0;
    while ghost.exists() {
        most = most.max(exited());
        assert!(
            Instant::now() < deadline,
            "the gone pod's log directory was not collected\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let after = exited();
    assert!(most >= 2, "the crash loop left {most} dead containers");
    assert!(
        after < most,
        "dead containers not collected: {most} before, {after} after"
    );
    assert!(after >= 1, "the newest dead container stays (for its logs)");
    assert!(foreign.exists(), "another node's log directory is not ours");
    assert!(agent.log_text().contains("removing dead container"));
}
