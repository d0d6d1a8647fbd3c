//! Image and container garbage collection wired to the runtime: the managers' GC
//! (`managers::images`, `managers::containers`) over CRI ([`CriImages`], [`CriContainers`]),
//! the kubelet's view of its pods ([`KubeletPodStates`]), and the thread that runs the
//! collections ([`GcLoop`]).
//!
//! - **Images in use** are those of every container the runtime has, of any node: several
//!   agents may share one containerd (the tests do), and an image another node's pod runs must
//!   not be deleted under it. The pod infra (sandbox) image is never collected.
//! - **When**: container GC every minute and image GC every five minutes, as the kubelet, each
//!   also once at start; and image GC whenever the image filesystem is found at or above the
//!   high threshold (checked every 10 s) — the kubelet waits for its next 5-minute run.
//!   Two failed collections in a row record `ImageGCFailed` / `ContainerGCFailed`.
//! - **Log directories** are collected only for pods whose name carries this node's name (the
//!   static pods of standalone mode): the pod log root may be shared by several agents. The
//!   API-server mode will need the pods' node assignment instead.
//! - A runtime that is down makes a collection fail and be retried at the next tick; nothing
//!   here panics on it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Sender};
use managers::containers::{
    ContainerGcManager, ContainerRuntime, ContainerState, GcContainer, GcRuntimeError, GcSandbox,
    PodLogDir, PodStateProvider,
};
use managers::events::{reason, EventSink, EventType, ObjectRef};
use managers::images::{
    FailureTracker, ImageFsUsage, ImageGcManager, ImageService, ImageServiceError, RuntimeImage,
};
use proto::cri;

use crate::kubelet::Kubelet;
use crate::kuberuntime::{labels, RuntimeService};

/// The kubelet's container GC period.
pub const CONTAINER_GC_PERIOD: Duration = Duration::from_secs(60);
/// The kubelet's image GC period.
pub const IMAGE_GC_PERIOD: Duration = Duration::from_secs(300);
/// How often the image filesystem is checked against the high threshold.
pub const IMAGE_FS_CHECK: Duration = Duration::from_secs(10);

/// Image GC's runtime calls, made from the GC thread on the agent's async runtime.
pub struct CriImages {
    runtime: RuntimeService,
    /// An unfiltered client: images in use are those of every node's containers.
    all: cri::RuntimeClient,
    timeout: Duration,
    imagefs: PathBuf,
    handle: tokio::runtime::Handle,
}

impl CriImages {
    /// Image GC over `runtime` (and `all`, a client on the same channel that sees every
    /// container), the image filesystem holding `imagefs`.
    pub fn new(
        runtime: RuntimeService,
        all: cri::RuntimeClient,
        timeout: Duration,
        imagefs: PathBuf,
        handle: tokio::runtime::Handle,
    ) -> Self {
        CriImages {
            runtime,
            all,
            timeout,
            imagefs,
            handle,
        }
    }
}

fn img_err(op: &'static str, object: &str, message: impl ToString) -> ImageServiceError {
    ImageServiceError {
        op,
        object: object.to_string(),
        message: message.to_string(),
    }
}

impl ImageService for CriImages {
    fn list_images(&self) -> Result<Vec<RuntimeImage>, ImageServiceError> {
        let images = self
            .handle
            .block_on(self.runtime.list_images())
            .map_err(|e| img_err("list images", "", e))?;
        Ok(images
            .into_iter()
            .map(|i| RuntimeImage {
                id: i.id,
                repo_tags: i.repo_tags,
                repo_digests: i.repo_digests,
                size: i.size,
                pinned: i.pinned,
            })
            .collect())
    }

    fn images_in_use(&self) -> Result<HashSet<String>, ImageServiceError> {
        let mut c = self.all.clone();
        let resp = self
            .handle
            .block_on(async {
                tokio::time::timeout(
                    self.timeout,
                    c.list_containers(cri::ListContainersRequest { filter: None }),
                )
                .await
            })
            .map_err(|_| {
                img_err(
                    "list containers",
                    "",
                    format!("no answer within {:?}", self.timeout),
                )
            })?
            .map_err(|s| img_err("list containers", "", s.message()))?;
        let mut used = HashSet::new();
        for c in resp.into_inner().containers {
            if !c.image_ref.is_empty() {
                used.insert(c.image_ref);
            }
            if let Some(spec) = c.image {
                if !spec.image.is_empty() {
                    used.insert(spec.image);
                }
            }
        }
        Ok(used)
    }

    fn remove_image(&self, id: &str) -> Result<(), ImageServiceError> {
        self.handle
            .block_on(self.runtime.remove_image(id))
            .map_err(|e| img_err("remove image", id, e))
    }

    fn image_fs(&self) -> Result<ImageFsUsage, ImageServiceError> {
        let v = collectors::sys::statvfs(&self.imagefs)
            .map_err(|e| img_err("statvfs", &self.imagefs.display().to_string(), e))?;
        Ok(ImageFsUsage {
            capacity: v.capacity,
            available: v.available,
        })
    }
}

/// Container GC's runtime calls (this node's containers only).
pub struct CriContainers {
    runtime: RuntimeService,
    log_root: PathBuf,
    /// Pod names of this node's (static) pods end with `-<node>`.
    node_suffix: String,
    handle: tokio::runtime::Handle,
}

impl CriContainers {
    /// Container GC over `runtime` for node `node`, pod logs under `log_root`.
    pub fn new(
        runtime: RuntimeService,
        node: &str,
        log_root: PathBuf,
        handle: tokio::runtime::Handle,
    ) -> Self {
        CriContainers {
            runtime,
            log_root,
            node_suffix: format!("-{node}"),
            handle,
        }
    }
}

fn gc_err(op: &'static str, object: &str, message: impl ToString) -> GcRuntimeError {
    GcRuntimeError {
        op,
        object: object.to_string(),
        message: message.to_string(),
    }
}

/// A CRI container as container GC sees it.
pub fn gc_container(c: &cri::Container) -> GcContainer {
    let state = if c.state == cri::ContainerState::ContainerRunning as i32 {
        ContainerState::Running
    } else if c.state == cri::ContainerState::ContainerCreated as i32 {
        ContainerState::Created
    } else {
        ContainerState::Dead
    };
    GcContainer {
        id: c.id.clone(),
        pod_uid: c
            .labels
            .get(labels::POD_UID_LABEL)
            .cloned()
            .unwrap_or_default(),
        name: c
            .labels
            .get(labels::CONTAINER_NAME_LABEL)
            .cloned()
            .or_else(|| c.metadata.as_ref().map(|m| m.name.clone()))
            .unwrap_or_default(),
        state,
        created_at: c.created_at,
    }
}

impl ContainerRuntime for CriContainers {
    fn list_containers(&self) -> Result<Vec<GcContainer>, GcRuntimeError> {
        let cs = self
            .handle
            .block_on(self.runtime.list_containers(None))
            .map_err(|e| gc_err("list containers", "", e))?;
        Ok(cs.iter().map(gc_container).collect())
    }

    fn list_sandboxes(&self) -> Result<Vec<GcSandbox>, GcRuntimeError> {
        let sbs = self
            .handle
            .block_on(self.runtime.list_pod_sandboxes(None))
            .map_err(|e| gc_err("list pod sandboxes", "", e))?;
        Ok(sbs
            .into_iter()
            .map(|s| GcSandbox {
                pod_uid: s
                    .metadata
                    .as_ref()
                    .map(|m| m.uid.clone())
                    .or_else(|| s.labels.get(labels::POD_UID_LABEL).cloned())
                    .unwrap_or_default(),
                ready: s.state == cri::PodSandboxState::SandboxReady as i32,
                created_at: s.created_at,
                id: s.id,
            })
            .collect())
    }

    fn remove_container(&self, id: &str) -> Result<(), GcRuntimeError> {
        match self.handle.block_on(self.runtime.remove_container(id)) {
            Err(e) if !e.is_not_found() => Err(gc_err("remove container", id, e)),
            _ => Ok(()),
        }
    }

    fn remove_sandbox(&self, id: &str) -> Result<(), GcRuntimeError> {
        match self.handle.block_on(self.runtime.remove_pod_sandbox(id)) {
            Err(e) if !e.is_not_found() => Err(gc_err("remove pod sandbox", id, e)),
            _ => Ok(()),
        }
    }

    fn pod_log_dirs(&self) -> Result<Vec<PodLogDir>, GcRuntimeError> {
        let rd = match std::fs::read_dir(&self.log_root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(gc_err(
                    "read directory",
                    &self.log_root.display().to_string(),
                    e,
                ))
            }
        };
        // Several agents may share the log directory (the tests run many on one machine):
        // only this node's pods, whose static pod names end with the node name, are ours.
        Ok(rd
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| PodLogDir::parse(&e.path()))
            .filter(|d| d.pod_name.ends_with(&self.node_suffix))
            .collect())
    }

    fn remove_log_dir(&self, dir: &Path) -> Result<(), GcRuntimeError> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(gc_err("remove directory", &dir.display().to_string(), e))
            }
            _ => Ok(()),
        }
    }
}

/// What the kubelet knows of its pods, for container GC.
pub struct KubeletPodStates(pub Arc<Kubelet>);

impl PodStateProvider for KubeletPodStates {
    fn all_sources_ready(&self) -> bool {
        self.0.sources_ready()
    }

    fn should_pod_content_be_removed(&self, uid: &str) -> bool {
        if self.0.status.pod(uid).is_none() {
            return true;
        }
        self.0.status.status(uid).is_some_and(|s| {
            s.phase.as_deref() == Some("Failed") && s.reason.as_deref() == Some("Evicted")
        })
    }

    fn should_pod_runtime_be_removed(&self, uid: &str) -> bool {
        if self.0.status.pod(uid).is_none() {
            return true;
        }
        self.0
            .status
            .status(uid)
            .is_some_and(|s| matches!(s.phase.as_deref(), Some("Failed") | Some("Succeeded")))
    }
}

/// The GC thread. Stops when dropped.
pub struct GcLoop {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for GcLoop {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Image filesystem usage in percent, as image GC computes it.
fn usage_percent(fs: &ImageFsUsage) -> u64 {
    if fs.capacity == 0 {
        return 0;
    }
    100 - (fs.available.min(fs.capacity) as u128 * 100 / fs.capacity as u128) as u64
}

impl GcLoop {
    /// Starts the collections. `images` also answers the image filesystem's usage.
    pub fn start(
        node: &str,
        images: Arc<ImageGcManager>,
        image_service: Arc<dyn ImageService>,
        containers: Arc<ContainerGcManager>,
        events: Arc<dyn EventSink>,
    ) -> std::io::Result<GcLoop> {
        let (stop_tx, stop_rx) = channel::bounded::<()>(0);
        let node = ObjectRef::node(node);
        let thread = std::thread::Builder::new()
            .name("gc".into())
            .spawn(move || {
                let tick = channel::tick(IMAGE_FS_CHECK);
                let mut next_containers = Instant::now();
                let mut next_images = Instant::now();
                let mut image_failures = FailureTracker::default();
                loop {
                    let now = Instant::now();
                    if now >= next_containers {
                        next_containers = now + CONTAINER_GC_PERIOD;
                        if let Err(e) = containers.garbage_collect() {
                            tracing::warn!(error = %e, "container garbage collection failed");
                        }
                    }
                    let high = image_service
                        .image_fs()
                        .map(|fs| {
                            usage_percent(&fs) >= u64::from(images.policy().high_threshold_percent)
                        })
                        .unwrap_or(false);
                    if now >= next_images || high {
                        next_images = now + IMAGE_GC_PERIOD;
                        let r = images.garbage_collect();
                        match &r {
                            Ok(rep) if !rep.deleted.is_empty() => {
                                tracing::info!(
                                    deleted = rep.deleted.len(),
                                    freed = rep.freed,
                                    "image garbage collection"
                                )
                            }
                            Ok(_) => {}
                            Err(e) => tracing::warn!(error = %e, "image garbage collection failed"),
                        }
                        if image_failures.failed(r.is_err()) {
                            if let Err(e) = r {
                                events.event(
                                    &node,
                                    EventType::Warning,
                                    reason::IMAGE_GC_FAILED,
                                    &e.to_string(),
                                );
                            }
                        }
                    }
                    channel::select! {
                        recv(stop_rx) -> _ => break,
                        recv(tick) -> _ => {}
                    }
                }
            })?;
        Ok(GcLoop {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn cri_containers_become_gc_units() {
        let c = cri::Container {
            id: "c1".into(),
            state: cri::ContainerState::ContainerExited as i32,
            created_at: 42,
            labels: HashMap::from([
                (labels::POD_UID_LABEL.to_string(), "u1".to_string()),
                (labels::CONTAINER_NAME_LABEL.to_string(), "app".to_string()),
            ]),
            ..Default::default()
        };
        let g = gc_container(&c);
        assert_eq!(
            (g.pod_uid.as_str(), g.name.as_str(), g.state),
            ("u1", "app", ContainerState::Dead)
        );
        let r = cri::Container {
            state: cri::ContainerState::ContainerRunning as i32,
            ..c.clone()
        };
        assert_eq!(gc_container(&r).state, ContainerState::Running);
        let n = cri::Container {
            state: cri::ContainerState::ContainerCreated as i32,
            ..c
        };
        assert_eq!(gc_container(&n).state, ContainerState::Created);
        assert_eq!(
            usage_percent(&ImageFsUsage {
                capacity: 200,
                available: 30
            }),
            85
        );
        assert_eq!(usage_percent(&ImageFsUsage::default()), 0);
    }
}
