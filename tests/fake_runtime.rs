//! The agent in-process against the fake CRI runtime (hollow mode): pod lifecycle cases driven
//! deterministically through the fake's hooks, without containerd, root or real cgroups.
//!
//! Each test starts its own [`HollowNode`] under a temporary directory (fixture cgroup tree,
//! manifests, root and log directories, the fake's socket) and removes it at the end. Nothing
//! asserts on wall-clock durations: tests poll the agent's own view (the status manager and the
//! health checks) with generous timeouts, and order is forced with the fake's hooks (held
//! calls, exits on demand), never with sleeps.
//!
//! Run: `cargo test --test fake_runtime` (`RUST_LOG=kubelet_rs=debug` shows the agent's log).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kubelet_rs::fakeruntime::{
    pod_manifest, pod_running, Fault, HollowConfig, HollowNode, Lifecycle, Matcher, Op,
};
use proto::cri;
use tonic::Code;

const BUSYBOX: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";
/// Generous: the slowest path here waits out one 10 s crash-loop or pull backoff.
const WAIT: Duration = Duration::from_secs(90);

/// A hollow node and the directory it lives in (removed after the node stops).
struct Node {
    hollow: HollowNode,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Node {
    type Target = HollowNode;
    fn deref(&self) -> &HollowNode {
        &self.hollow
    }
}

fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
}

async fn start(test: &str) -> Node {
    init_logging();
    let dir = tempfile::Builder::new()
        .prefix("kubelet-rs-hollow-")
        .tempdir()
        .unwrap();
    let hollow = HollowNode::start(
        dir.path(),
        HollowConfig {
            node_name: format!("hollow-{test}"),
            preload_images: vec![BUSYBOX.into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    Node { hollow, _dir: dir }
}

/// Polls `f` every 20 ms until it yields, or fails the test naming `what` after [`WAIT`].
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn container<'a>(pod: &'a Pod, name: &str) -> Option<&'a ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref()?.phase.as_deref()
}

fn waiting_reason(c: &ContainerStatus) -> Option<&str> {
    c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()
}

fn is_running(c: &ContainerStatus) -> bool {
    c.state.as_ref().and_then(|s| s.running.as_ref()).is_some()
}

impl Node {
    async fn running(&self, name: &str) -> Pod {
        wait_for(&format!("pod {name} Running"), || {
            self.pod(name).filter(pod_running)
        })
        .await
    }

    async fn pod_where(&self, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
        wait_for(&format!("pod {name}: {what}"), || {
            self.pod(name).filter(|p| f(p))
        })
        .await
    }

    /// Writes `<name>.yaml`: pod `name` with one container, `main`, running `image`.
    fn add_pod(&self, name: &str, restart_policy: &str, image: &str) {
        self.write_manifest(
            &format!("{name}.yaml"),
            &pod_manifest(name, restart_policy, &[("main", image)]),
        )
        .unwrap();
    }

    /// Waits until container `main` of pod `name` is waiting with `reason`; returns the pod
    /// and the waiting state's message.
    async fn main_waiting(&self, name: &str, reason: &str) -> (Pod, String) {
        let pod = self
            .pod_where(name, reason, |p| {
                container(p, "main").and_then(waiting_reason) == Some(reason)
            })
            .await;
        let message = container(&pod, "main")
            .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.message.clone())
            .unwrap_or_default();
        (pod, message)
    }

    fn containers_of(&self, name: &str) -> Vec<kubelet_rs::fakeruntime::ContainerInfo> {
        let full = self.pod_name(name);
        self.fake
            .containers()
            .into_iter()
            .filter(|c| c.pod_name == full)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_pod_reaches_running() {
    let node = start("running").await;
    node.add_pod("web", "Always", BUSYBOX);
    let pod = node.running("web").await;
    let status = pod.status.as_ref().unwrap();
    assert!(
        status.pod_ip.as_deref().unwrap().starts_with("10.250."),
        "{status:?}"
    );
    let main = container(&pod, "main").unwrap();
    let id = main.container_id.as_deref().unwrap();
    assert!(id.starts_with("fake://"), "{id}");
    assert_eq!(main.restart_count, 0);
    assert_eq!(main.image, BUSYBOX);
    assert!(main.image_id.contains("@sha256:"), "{main:?}");

    // The runtime holds exactly what the agent made, under the agent's labels.
    let sandboxes = node.fake.sandboxes();
    assert_eq!(sandboxes.len(), 1);
    assert!(sandboxes[0].ready);
    assert_eq!(sandboxes[0].labels["kubelet-rs.io/node"], node.node);
    let cs = node.containers_of("web");
    assert_eq!(cs.len(), 1);
    assert_eq!(format!("fake://{}", cs[0].id), id);
    assert_eq!(cs[0].labels["io.kubernetes.container.name"], "main");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_container_restarts_with_crash_loop_backoff() {
    let node = start("crash").await;
    let pod_name = node.pod_name("crash");
    node.add_pod("crash", "Always", BUSYBOX);
    node.running("crash").await;

    // First exit: restarted at once (the backoff starts counting now), restartCount 1.
    let first = node.fake.running_container(&pod_name, "main").unwrap();
    node.fake.exit_container(&first, 1).unwrap();
    node.pod_where("crash", "restartCount 1 and running", |p| {
        container(p, "main").is_some_and(|c| c.restart_count == 1 && is_running(c))
    })
    .await;

    // Second exit inside the 10 s window: CrashLoopBackOff with the kubelet's message.
    let second = node.fake.running_container(&pod_name, "main").unwrap();
    assert_ne!(first, second);
    node.fake.exit_container(&second, 1).unwrap();
    let (pod, message) = node.main_waiting("crash", "CrashLoopBackOff").await;
    let main = container(&pod, "main").unwrap();
    assert!(
        message.starts_with("back-off 10s restarting failed container=main pod="),
        "{message}"
    );
    let last = main
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .unwrap();
    assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
    assert_eq!(main.restart_count, 1);
    assert_eq!(
        phase(&pod),
        Some("Running"),
        "restartPolicy Always keeps the pod Running"
    );

    // After the backoff the container is started again: restartCount 2.
    node.pod_where("crash", "restartCount 2 and running", |p| {
        container(p, "main").is_some_and(|c| c.restart_count == 2 && is_running(c))
    })
    .await;
    let attempts: Vec<u32> = node
        .containers_of("crash")
        .iter()
        .map(|c| c.attempt)
        .collect();
    assert_eq!(attempts, vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policy_never_pod_ends_failed() {
    let node = start("never").await;
    node.fake
        .on_start(Matcher::pod_name(node.pod_name("once")), Lifecycle::exit(1));
    node.add_pod("once", "Never", BUSYBOX);
    let pod = node
        .pod_where("once", "phase Failed", |p| phase(p) == Some("Failed"))
        .await;
    let main = container(&pod, "main").unwrap();
    let t = main
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (1, Some("Error")));
    assert_eq!(main.restart_count, 0);
    // Never restarted; the finished pod's sandbox is stopped.
    let full = node.pod_name("once");
    wait_for("the sandbox stopped", || {
        node.fake
            .sandboxes()
            .iter()
            .all(|s| s.pod_name != full || !s.ready)
            .then_some(())
    })
    .await;
    assert_eq!(node.containers_of("once").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_failure_pod_exiting_zero_ends_succeeded() {
    let node = start("onfailure").await;
    node.fake
        .on_start(Matcher::pod_name(node.pod_name("job")), Lifecycle::exit(0));
    node.add_pod("job", "OnFailure", BUSYBOX);
    let pod = node
        .pod_where("job", "phase Succeeded", |p| phase(p) == Some("Succeeded"))
        .await;
    let t = container(&pod, "main")
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .unwrap();
    assert_eq!((t.exit_code, t.reason.as_deref()), (0, Some("Completed")));
    assert_eq!(node.containers_of("job").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pull_shows_err_image_pull_then_recovers() {
    let node = start("pull").await;
    let image = "127.0.0.1:5000/kubelet-rs/missing:1.0";
    node.fake.inject(
        Fault::fail(Op::PullImage, Code::NotFound)
            .times(1)
            .matching(Matcher::image(image))
            .message("pull access denied, repository does not exist"),
    );
    node.add_pod("pull", "Always", image);
    let (pod, message) = node.main_waiting("pull", "ErrImagePull").await;
    assert!(
        message.contains(image) && message.contains("pull access denied"),
        "{message}"
    );
    assert_eq!(phase(&pod), Some("Pending"));
    // The fault was for one pull only: after the pull backoff the image is pulled and runs.
    node.running("pull").await;
    assert_eq!(node.fake.calls(Op::PullImage), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_create_shows_create_container_error_then_recovers() {
    let node = start("create").await;
    node.fake.inject(
        Fault::fail(Op::CreateContainer, Code::Unknown)
            .times(1)
            .matching(Matcher::container_name("main"))
            .message("failed to create containerd container: injected"),
    );
    node.add_pod("mk", "Always", BUSYBOX);
    let (_, message) = node.main_waiting("mk", "CreateContainerError").await;
    assert!(message.contains("injected"), "{message}");
    // The next attempt (after the worker's error backoff) succeeds.
    node.running("mk").await;
    assert_eq!(node.containers_of("mk").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sandbox_does_not_block_other_pods() {
    let node = start("slow").await;
    // The slow pod's RunPodSandbox is held (an hour of latency) until released.
    node.fake.inject(
        Fault::delay(Op::RunPodSandbox, Duration::from_secs(3600))
            .matching(Matcher::pod_name(node.pod_name("slow"))),
    );
    node.add_pod("slow", "Always", BUSYBOX);
    wait_for("the slow sandbox call held", || {
        (node.fake.delayed_calls() == 1).then_some(())
    })
    .await;
    node.add_pod("fast", "Always", BUSYBOX);
    node.running("fast").await;

    // The fast pod runs while the slow one still waits for its sandbox.
    assert_eq!(node.fake.delayed_calls(), 1);
    let slow = node.pod("slow").unwrap();
    assert!(!pod_running(&slow), "{:?}", slow.status);
    let names: Vec<String> = node
        .fake
        .sandboxes()
        .into_iter()
        .map(|s| s.pod_name)
        .collect();
    assert_eq!(names, vec![node.pod_name("fast")]);

    node.fake.release_delays();
    node.running("slow").await;
    assert_eq!(node.fake.sandboxes().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_down_fails_the_runtime_check_then_recovers() {
    let node = start("down").await;
    node.add_pod("web", "Always", BUSYBOX);
    let before = node.running("web").await;
    let id = container(&before, "main").unwrap().container_id.clone();
    let health = node.agent.kubelet.health.clone();
    let runtime_error = || {
        health
            .checks()
            .into_iter()
            .find(|c| c.name == "runtime")
            .and_then(|c| c.error)
    };
    assert_eq!(runtime_error(), None);

    node.fake.set_down(true);
    let err = wait_for("the runtime check to fail", runtime_error).await;
    assert!(err.starts_with("container runtime is down:"), "{err}");
    assert!(!health.node_ready().0);

    node.fake.set_down(false);
    wait_for("the runtime check to pass", || {
        runtime_error().is_none().then_some(())
    })
    .await;
    // Reconciled without restarts or duplicates: a few relists later nothing has changed.
    let lists = node.fake.calls(Op::ListPodSandbox);
    wait_for("three more relists", || {
        (node.fake.calls(Op::ListPodSandbox) >= lists + 3).then_some(())
    })
    .await;
    let after = node.running("web").await;
    assert_eq!(container(&after, "main").unwrap().container_id, id);
    assert_eq!(container(&after, "main").unwrap().restart_count, 0);
    assert_eq!(node.fake.sandboxes().len(), 1);
    assert_eq!(node.containers_of("web").len(), 1);
    assert!(node
        .fake
        .containers()
        .iter()
        .all(|c| c.state == cri::ContainerState::ContainerRunning));
}

/// Once every pod runs and the PLEG has reported the starts, nothing wakes a pod worker until
/// `--sync-frequency` (1 m): over several relists the agent makes the PLEG's lean lists (one
/// ListPodSandbox and one ListContainers per relist, plus housekeeping's sandbox lists) and no
/// per-pod status read at all (no PodSandboxStatus, no ContainerStatus, no pod-scoped lists).
/// Counts only: the window is measured in relists, not in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_per_pod_status_reads() {
    let node = start("steady").await;
    let pods = ["a", "b", "c"];
    for name in pods {
        node.write_manifest(
            &format!("{name}.yaml"),
            &pod_manifest(name, "Always", &[("main", BUSYBOX), ("side", BUSYBOX)]),
        )
        .unwrap();
    }
    for name in pods {
        node.running(name).await;
    }
    let relists = || {
        node.agent
            .kubelet
            .metrics
            .pleg_relist_duration_seconds
            .get_sample_count()
    };
    let wait_relists = |n: u64| {
        let target = relists() + n;
        async move {
            wait_for(&format!("{n} relists"), || {
                (relists() >= target).then_some(())
            })
            .await
        }
    };
    // The first relist after the starts reports them (each pod's worker then syncs once);
    // two more let those syncs finish.
    wait_relists(3).await;

    let ops = [
        Op::PodSandboxStatus,
        Op::ContainerStatus,
        Op::ListPodSandbox,
        Op::ListContainers,
    ];
    let before: Vec<u64> = ops.iter().map(|op| node.fake.calls(*op)).collect();
    let relists_before = relists();
    wait_relists(5).await;
    let window = relists() - relists_before;
    let calls: Vec<u64> = ops
        .iter()
        .zip(&before)
        .map(|(op, b)| node.fake.calls(*op) - b)
        .collect();
    assert_eq!(
        calls[0], 0,
        "PodSandboxStatus calls over {window} steady relists"
    );
    assert_eq!(
        calls[1], 0,
        "ContainerStatus calls over {window} steady relists"
    );
    // One lean ListContainers per relist (one more for a relist under way at either end); a
    // pod sync would add one each.
    assert!(
        calls[3] <= window + 1,
        "{} ListContainers calls over {window} relists",
        calls[3]
    );
    // ListPodSandbox: the PLEG's, and housekeeping's (every 2 s, i.e. at most one per relist).
    assert!(
        calls[2] <= 2 * (window + 1),
        "{} ListPodSandbox calls over {window} relists",
        calls[2]
    );
    for name in pods {
        assert_eq!(
            container(&node.running(name).await, "main")
                .unwrap()
                .restart_count,
            0
        );
    }
}
