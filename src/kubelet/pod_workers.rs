//! Pod workers (`pkg/kubelet/pod_workers.go`): one task per pod, so that a pod's syncs never
//! overlap while different pods proceed in parallel. A worker wakes on an update, a PLEG event,
//! or its own timer (the end of a backoff window or the resync period), coalesces whatever
//! queued up meanwhile, and syncs once. Termination is the worker's last job: it stops the pod,
//! removes what it created, reports to the sync loop and exits.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sync::{SyncOutcome, WorkerState};
use super::Kubelet;
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

async fn worker(
    kl: Arc<Kubelet>,
    mut pod: Arc<Pod>,
    mut rx: mpsc::UnboundedReceiver<WorkKind>,
    done: mpsc::UnboundedSender<String>,
) {
    let uid = uid_of(&pod);
    let mut state = WorkerState::new();
    let mut next = Instant::now();
    let mut terminate = false;
    loop {
        tokio::select! {
            biased;
            msg = rx.recv() => match msg {
                Some(WorkKind::Update(p)) => pod = p,
                Some(WorkKind::Sync) => {}
                Some(WorkKind::Terminate) => terminate = true,
                None => return,
            },
            _ = tokio::time::sleep_until(next) => {}
        }
        while let Ok(msg) = rx.try_recv() {
            match msg {
                WorkKind::Update(p) => pod = p,
                WorkKind::Sync => {}
                WorkKind::Terminate => terminate = true,
            }
        }
        if terminate {
            super::sync::terminate_pod(&kl, &pod, &mut state).await;
            let _ = done.send(uid);
            return;
        }
        let started = Instant::now();
        let outcome: SyncOutcome = super::sync::sync_pod(&kl, &pod, &mut state).await;
        kl.metrics
            .pod_worker_duration_seconds
            .with_label_values(&[outcome.operation])
            .observe(started.elapsed().as_secs_f64());
        next = Instant::now() + outcome.requeue_after;
    }
}
