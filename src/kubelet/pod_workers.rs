//! Pod workers (`pkg/kubelet/pod_workers.go`): one task per pod, so that a pod's syncs never
//! overlap while different pods proceed in parallel. A worker wakes on an update, a PLEG event,
//! or its own timer (the end of a backoff window or the resync period), coalesces whatever
//! queued up meanwhile, and syncs once. Termination is the worker's last job: it stops the pod,
//! removes what it created, reports to the sync loop and exits.
//!
//! Each worker is supervised: a panic in a sync or a termination is caught, logged with the
//! pod, counted (`kubelet_pod_worker_panics_total`) and the worker restarted after a pause, with
//! whatever was sent to it meanwhile still queued, so no pod is ever left without a worker.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sync::{SyncOutcome, WorkerState};
use super::{pod_ref, Kubelet};
use crate::podconfig::uid_of;

/// Work for a pod worker.
#[derive(Debug, Clone)]
pub enum WorkKind {
    /// A new version of the pod's spec.
    Update(Arc<Pod>),
    /// Something changed in the runtime: sync now.
    Sync,
    /// The pod is gone from its source: stop and remove it.
    Terminate,
}

struct Handle {
    tx: mpsc::UnboundedSender<WorkKind>,
    terminating: bool,
    task: JoinHandle<()>,
}

/// The set of workers, owned by the sync loop.
pub struct PodWorkers {
    kl: Arc<Kubelet>,
    workers: HashMap<String, Handle>,
    done: mpsc::UnboundedSender<String>,
}

impl PodWorkers {
    pub fn new(kl: Arc<Kubelet>, done: mpsc::UnboundedSender<String>) -> Self {
        Self {
            kl,
            workers: HashMap::new(),
            done,
        }
    }

    pub fn exists(&self, uid: &str) -> bool {
        self.workers.contains_key(uid)
    }

    pub fn is_terminating(&self, uid: &str) -> bool {
        self.workers.get(uid).is_some_and(|h| h.terminating)
    }

    /// Workers not terminating (the pods counted against max-pods).
    pub fn active_count(&self) -> usize {
        self.workers.values().filter(|h| !h.terminating).count()
    }

    /// Workers terminating their pod.
    pub fn terminating_count(&self) -> usize {
        self.workers.values().filter(|h| h.terminating).count()
    }

    pub fn start(&mut self, pod: Arc<Pod>) {
        let uid = uid_of(&pod);
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(worker(self.kl.clone(), pod, rx, self.done.clone()));
        self.workers.insert(
            uid,
            Handle {
                tx,
                terminating: false,
                task,
            },
        );
    }

    pub fn send(&mut self, uid: &str, work: WorkKind) {
        if let Some(h) = self.workers.get_mut(uid) {
            if matches!(work, WorkKind::Terminate) {
                h.terminating = true;
            }
            let _ = h.tx.send(work);
        }
    }

    /// The worker for `uid` has exited.
    pub fn finished(&mut self, uid: &str) {
        self.workers.remove(uid);
    }
}

impl Drop for PodWorkers {
    fn drop(&mut self) {
        // On agent shutdown workers stop where they are; pods keep running, as with the kubelet.
        for h in self.workers.values() {
            h.task.abort();
        }
    }
}

/// The first pause after a worker panicked; it doubles with each panic in a row, up to
/// [`PANIC_BACKOFF_MAX`], and resets once a sync or termination completes.
pub const PANIC_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between restarts of a worker that keeps panicking.
pub const PANIC_BACKOFF_MAX: Duration = Duration::from_secs(60);

/// What a pod worker keeps across restarts: the newest spec it was given, whether it was told
/// to terminate, and the messages still queued for it.
struct Inbox {
    pod: Arc<Pod>,
    rx: mpsc::UnboundedReceiver<WorkKind>,
    terminate: bool,
    /// Panics since the last sync or termination that completed.
    panics: u32,
}

impl Inbox {
    fn take(&mut self, msg: WorkKind) {
        match msg {
            WorkKind::Update(p) => self.pod = p,
            WorkKind::Sync => {}
            WorkKind::Terminate => self.terminate = true,
        }
    }
}

/// How a worker's loop ended without a panic.
enum Exit {
    /// The pod was stopped and removed.
    Terminated,
    /// The sync loop dropped the worker's channel (agent shutdown).
    Closed,
}

/// The text a panic carried (`panic!("...")` payloads are `&str` or `String`).
pub fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

/// A pod's worker, supervised: a panic anywhere in a sync or in the termination (a bug, or a
/// pod's hostile input reaching one) is caught, logged with the pod, counted in
/// `kubelet_pod_worker_panics_total`, and the worker is restarted with fresh per-pod state after
/// a pause ([`PANIC_BACKOFF`], doubling). Updates and `Terminate` sent meanwhile stay queued, so
/// a pod is never left without a worker.
async fn worker(
    kl: Arc<Kubelet>,
    pod: Arc<Pod>,
    rx: mpsc::UnboundedReceiver<WorkKind>,
    done: mpsc::UnboundedSender<String>,
) {
    let uid = uid_of(&pod);
    let mut inbox = Inbox {
        pod,
        rx,
        terminate: false,
        panics: 0,
    };
    loop {
        match AssertUnwindSafe(run(&kl, &mut inbox)).catch_unwind().await {
            Ok(Exit::Terminated) => {
                let _ = done.send(uid);
                return;
            }
            Ok(Exit::Closed) => return,
            Err(payload) => {
                inbox.panics = inbox.panics.saturating_add(1);
                kl.metrics.pod_worker_panics_total.inc();
                let pause = PANIC_BACKOFF
                    .saturating_mul(1 << (inbox.panics - 1).min(16))
                    .min(PANIC_BACKOFF_MAX);
                tracing::error!(
                    pod = %pod_ref(&inbox.pod),
                    uid = %uid,
                    panic = %panic_message(payload.as_ref()),
                    panics_in_a_row = inbox.panics,
                    "pod worker panicked; restarting it in {pause:?}"
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The worker's loop: wait for work or the requeue timer, coalesce what queued up, sync once
/// (or terminate). Its per-pod state starts fresh on each (re)start.
async fn run(kl: &Kubelet, inbox: &mut Inbox) -> Exit {
    let mut state = WorkerState::new();
    // A fresh worker syncs at once; a restarted one too (its pause is over).
    let mut next = Instant::now();
    loop {
        if !inbox.terminate {
            tokio::select! {
                biased;
                msg = inbox.rx.recv() => match msg {
                    Some(m) => inbox.take(m),
                    None => return Exit::Closed,
                },
                _ = tokio::time::sleep_until(next) => {}
            }
        }
        while let Ok(msg) = inbox.rx.try_recv() {
            inbox.take(msg);
        }
        let pod = inbox.pod.clone();
        if inbox.terminate {
            super::sync::terminate_pod(kl, &pod, &mut state).await;
            return Exit::Terminated;
        }
        let started = Instant::now();
        let outcome: SyncOutcome = super::sync::sync_pod(kl, &pod, &mut state).await;
        inbox.panics = 0;
        kl.metrics
            .pod_worker_duration_seconds
            .with_label_values(&[outcome.operation])
            .observe(started.elapsed().as_secs_f64());
        next = Instant::now() + outcome.requeue_after;
    }
}

#[cfg(test)]
mod tests {
    //! Panics injected through the event recorder (a hook the kubelet takes from outside): the
    //! agent runs in-process on the fake runtime, a lifecycle hook fails there, and the
    //! recorder panics on the event that failure raises, inside the pod's worker.

    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use k8s_openapi::api::core::v1::Pod;
    use proto::cri;

    use crate::fakeruntime::{pod_running, HollowConfig, HollowNode};
    use crate::lifecycle::{EventRecorder, EventType};

    const IMAGE: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";
    const WAIT: Duration = Duration::from_secs(60);

    /// Panics on the first `times` events with `reason`.
    struct PanicOn {
        reason: &'static str,
        left: AtomicU32,
    }

    impl EventRecorder for PanicOn {
        fn event(&self, _pod: &Pod, _kind: EventType, reason: &str, _message: &str) {
            if reason == self.reason
                && self
                    .left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                panic!("injected panic on the {reason} event");
            }
        }
    }

    async fn start(test: &str) -> (HollowNode, tempfile::TempDir) {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-rs-podworkers-")
            .tempdir()
            .unwrap();
        let node = HollowNode::start(
            dir.path(),
            HollowConfig {
                node_name: format!("hollow-{test}"),
                preload_images: vec![IMAGE.into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        // The first exec (a hook below) exits 1, so that hook fails; later ones succeed.
        let execs = AtomicU32::new(0);
        node.fake.set_exec(move |_, _| cri::ExecSyncResponse {
            exit_code: i32::from(execs.fetch_add(1, Ordering::SeqCst) == 0),
            ..Default::default()
        });
        (node, dir)
    }

    /// A static pod with one container and an exec hook (`postStart` or `preStop`); `label`
    /// changes the spec (a changed static pod is a new UID).
    fn manifest(hook: &str, label: &str) -> String {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "labels": {"v": label}},
            "spec": {"restartPolicy": "Always", "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent",
                    "lifecycle": {hook: {"exec": {"command": ["false"]}}}}]}
        })
        .to_string()
    }

    async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !f() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn uid(pod: &Pod) -> String {
        pod.metadata.uid.clone().unwrap_or_default()
    }

    /// A worker that panics in the middle of a sync (right after its container started) is
    /// restarted: the pod runs, a changed manifest replaces it, and removing the manifest
    /// tears the new one down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_that_panics_in_a_sync_is_restarted_and_keeps_managing_its_pod() {
        let (node, _dir) = start("sync-panic").await;
        let kl = node.agent.kubelet.clone();
        kl.events.set_recorder(Arc::new(PanicOn {
            reason: "FailedPostStartHook",
            left: AtomicU32::new(1),
        }));
        node.write_manifest("web.yaml", &manifest("postStart", "1"))
            .unwrap();
        wait_for("pod web Running after the worker restarted", || {
            node.pod("web").is_some_and(|p| pod_running(&p))
        })
        .await;
        assert_eq!(kl.metrics.pod_worker_panics_total.get(), 1);
        let first = uid(&node.pod("web").unwrap());

        // A changed manifest: the old pod's worker gets Terminate, a new pod starts.
        node.write_manifest("web.yaml", &manifest("postStart", "2"))
            .unwrap();
        wait_for("the old pod removed from the runtime", || {
            node.fake.containers().iter().all(|c| c.pod_uid != first)
                && node.fake.sandboxes().iter().all(|s| s.pod_uid != first)
        })
        .await;
        wait_for("the changed pod Running", || {
            node.pod("web")
                .is_some_and(|p| uid(&p) != first && pod_running(&p))
        })
        .await;

        node.remove_manifest("web.yaml").unwrap();
        wait_for("every pod torn down", || {
            node.fake.containers().is_empty() && node.fake.sandboxes().is_empty()
        })
        .await;
        assert_eq!(kl.metrics.pod_worker_panics_total.get(), 1);
        assert!(kl
            .metrics
            .encode()
            .contains("\nkubelet_pod_worker_panics_total 1\n"));
    }

    /// A worker that panics while terminating its pod (in the preStop hook's failure) is
    /// restarted and terminates the pod again, to the end.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_that_panics_while_terminating_finishes_the_termination() {
        let (node, _dir) = start("terminate-panic").await;
        let kl = node.agent.kubelet.clone();
        kl.events.set_recorder(Arc::new(PanicOn {
            reason: "FailedPreStopHook",
            left: AtomicU32::new(1),
        }));
        node.write_manifest("web.yaml", &manifest("preStop", "1"))
            .unwrap();
        wait_for("pod web Running", || {
            node.pod("web").is_some_and(|p| pod_running(&p))
        })
        .await;
        node.remove_manifest("web.yaml").unwrap();
        wait_for("the pod torn down", || {
            node.fake.containers().is_empty()
                && node.fake.sandboxes().is_empty()
                && node.pod("web").is_none()
        })
        .await;
        assert_eq!(kl.metrics.pod_worker_panics_total.get(), 1);
    }
}
