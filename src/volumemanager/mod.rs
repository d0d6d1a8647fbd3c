//! The volume manager (`pkg/kubelet/volumemanager`): sets up a pod's volumes before any of its
//! containers starts, gives each container its mounts, refreshes the volumes whose contents
//! come from objects or the pod itself, and tears everything down after the containers stop.
//!
//! Desired state is the pods the pod workers ask to be mounted ([`VolumeManager::mount_pod`],
//! called on every sync with the pod as it is now); actual state is what was set up for each of
//! them. A sync sets up whatever is desired and not yet set up (the reconciler's mount half, run
//! on the pod worker: it waits for it anyway, as the kubelet's `WaitForAttachAndMount` does); a
//! failed volume is reported (`FailedMount`) and retried on the next sync, and the pod stays
//! `ContainerCreating`. [`VolumeManager::run`] periodically rewrites configMap, secret,
//! downwardAPI and projected volumes whose source changed. [`VolumeManager::unmount_pod`]
//! unmounts every tmpfs and subPath bind mount below the pod directory and removes the volume
//! directories; it works from the mount table, so it also cleans up after a previous agent.
//!
//! Plugins: `emptydir`, `hostpath`, `configmap`, `secret`, `downwardapi`, `projected`, all on
//! the kubelet's `atomic_writer` where they publish files; `subpath` mounts subPaths safely;
//! `mount` holds the syscalls and the mount table.
//!
//! Paths, as the kubelet's: `<root-dir>/pods/<uid>/volumes/kubernetes.io~<plugin>/<volume>` and
//! `<root-dir>/pods/<uid>/volume-subpaths/<volume>/<container>/<mount index>`.
//!
//! Metrics, as the kubelet's: `volume_manager_total_volumes` counts each plugin's volumes in
//! the desired state (the pods' specs) and the actual one (set up), and every set-up and
//! tear-down of a volume is a `volume_mount` or `volume_unmount` in
//! `storage_operation_duration_seconds`.

pub mod atomic_writer;
pub mod configmap;
pub mod downwardapi;
pub mod emptydir;
pub mod hostpath;
pub mod mount;
pub mod projected;
pub mod secret;
pub mod subpath;

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Volume};
use proto::cri;

use crate::fieldpath::{FieldPathError, PodRuntimeFacts};
use crate::kuberuntime::container::expand;
use crate::lifecycle::Events;
use crate::objects::ObjectSource;

/// The directory of volume directories inside a pod directory.
pub const VOLUMES_DIR: &str = "volumes";
/// The directory of subPath bind mounts inside a pod directory.
pub const SUBPATHS_DIR: &str = "volume-subpaths";
/// How often object-backed volumes are refreshed (the kubelet's default sync frequency).
pub const DEFAULT_RESYNC: Duration = Duration::from_secs(60);

/// The plugin behind a set-up volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeKind {
    EmptyDir,
    HostPath,
    ConfigMap,
    Secret,
    DownwardApi,
    Projected,
}

impl VolumeKind {
    /// The kubelet's plugin name (`storage_operation_duration_seconds`'s `volume_plugin`).
    pub fn plugin_name(self) -> &'static str {
        match self {
            VolumeKind::EmptyDir => "kubernetes.io/empty-dir",
            VolumeKind::HostPath => "kubernetes.io/host-path",
            VolumeKind::ConfigMap => "kubernetes.io/configmap",
            VolumeKind::Secret => "kubernetes.io/secret",
            VolumeKind::DownwardApi => "kubernetes.io/downward-api",
            VolumeKind::Projected => "kubernetes.io/projected",
        }
    }

    /// The plugin of a volume in a pod spec; `None` for a type this node does not support.
    pub fn of(v: &Volume) -> Option<VolumeKind> {
        Some(if v.empty_dir.is_some() {
            VolumeKind::EmptyDir
        } else if v.host_path.is_some() {
            VolumeKind::HostPath
        } else if v.config_map.is_some() {
            VolumeKind::ConfigMap
        } else if v.secret.is_some() {
            VolumeKind::Secret
        } else if v.downward_api.is_some() {
            VolumeKind::DownwardApi
        } else if v.projected.is_some() {
            VolumeKind::Projected
        } else {
            return None;
        })
    }

    /// Rewritten when their source changes.
    pub fn refreshable(self) -> bool {
        matches!(
            self,
            VolumeKind::ConfigMap
                | VolumeKind::Secret
                | VolumeKind::DownwardApi
                | VolumeKind::Projected
        )
    }
}

/// A volume that is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounted {
    /// What containers mount (or take subPaths of).
    pub host_path: PathBuf,
    /// The plugin forces read-only mounts (configMap, secret, downwardAPI, projected).
    pub read_only: bool,
    pub kind: VolumeKind,
}

/// Why one volume could not be set up; the text follows the kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType {
        path: String,
        expected: &'static str,
    },
    #[error("{kind} {name:?} not found")]
    ObjectNotFound { kind: &'static str, name: String },
    #[error("{what}: {key} (in {name:?})")]
    MissingKey {
        what: &'static str,
        name: String,
        key: String,
    },
    #[error("item {path:?}: {source}")]
    FieldRef {
        path: String,
        #[source]
        source: FieldPathError,
    },
    #[error("{what}")]
    Invalid { what: String },
    #[error("{0}")]
    Write(#[from] atomic_writer::WriteError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl SetupError {
    pub fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SetupError + 'a {
        move |source| SetupError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Volume setup or teardown that failed for a pod.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("MountVolume.SetUp failed for volume {volume:?} : {source}")]
    SetUp {
        volume: String,
        #[source]
        source: SetupError,
    },
    #[error("Unable to attach or mount volumes for pod {pod}: unmounted volumes=[{}]: {}", .volumes.join(" "), .first)]
    Unmounted {
        pod: String,
        volumes: Vec<String>,
        first: String,
    },
    #[error("cannot tear down volumes in {path}: {source}")]
    Teardown {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A container whose mounts cannot be made (its waiting reason is `CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("cannot find volume {volume:?} to mount into container {container:?}")]
    NoVolume { volume: String, container: String },
    #[error(
        "failed to prepare subPath for volumeMount {volume:?} of container {container:?}: {source}"
    )]
    SubPath {
        volume: String,
        container: String,
        #[source]
        source: subpath::SubPathError,
    },
    #[error("volumeMount {volume:?} of container {container:?}: subPathExpr {expr:?} expands to {expanded:?}, which is not a relative path without '..'")]
    SubPathExpr {
        volume: String,
        container: String,
        expr: String,
        expanded: String,
    },
}

/// What a plugin needs to set up one volume of one pod.
pub struct SetupContext<'a> {
    pub pod: &'a Pod,
    pub pod_dir: PathBuf,
    pub objects: &'a dyn ObjectSource,
    pub facts: &'a PodRuntimeFacts,
    pub mountinfo: &'a Path,
}

impl SetupContext<'_> {
    pub fn volume_dir(&self, plugin: &str, name: &str) -> PathBuf {
        self.pod_dir.join(VOLUMES_DIR).join(plugin).join(name)
    }

    pub fn namespace(&self) -> &str {
        self.pod.metadata.namespace.as_deref().unwrap_or("default")
    }

    pub fn fs_group(&self) -> Option<u32> {
        self.pod
            .spec
            .as_ref()
            .and_then(|s| s.security_context.as_ref())
            .and_then(|c| c.fs_group)
            .and_then(|g| u32::try_from(g).ok())
    }

    pub fn is_mounted(&self, dir: &Path) -> bool {
        mount::mount_table(self.mountinfo)
            .map(|t| mount::mount_at(&t, dir).is_some())
            .unwrap_or(false)
    }
}

/// Sets up one volume (idempotent: an existing tmpfs or version is reused).
pub fn setup_volume(ctx: &SetupContext<'_>, vol: &Volume) -> Result<Mounted, SetupError> {
    if let Some(src) = &vol.empty_dir {
        return emptydir::setup(ctx, &vol.name, src);
    }
    if let Some(src) = &vol.host_path {
        return hostpath::setup(src);
    }
    if let Some(src) = &vol.config_map {
        let payload = configmap::payload(ctx, src)?;
        return writer_volume(
            ctx,
            configmap::PLUGIN_DIR,
            &vol.name,
            false,
            &payload,
            VolumeKind::ConfigMap,
        );
    }
    if let Some(src) = &vol.secret {
        let payload = secret::payload(ctx, src)?;
        return writer_volume(
            ctx,
            secret::PLUGIN_DIR,
            &vol.name,
            true,
            &payload,
            VolumeKind::Secret,
        );
    }
    if let Some(src) = &vol.downward_api {
        let payload = downwardapi::payload(ctx, src)?;
        return writer_volume(
            ctx,
            downwardapi::PLUGIN_DIR,
            &vol.name,
            true,
            &payload,
            VolumeKind::DownwardApi,
        );
    }
    if let Some(src) = &vol.projected {
        let payload = projected::payload(ctx, src)?;
        return writer_volume(
            ctx,
            projected::PLUGIN_DIR,
            &vol.name,
            true,
            &payload,
            VolumeKind::Projected,
        );
    }
    Err(SetupError::Invalid {
        what: "volume type not supported by this node (supported: emptyDir, hostPath, configMap, secret, downwardAPI, projected)".into(),
    })
}

/// The payload a refreshable volume should hold now.
fn current_payload(
    ctx: &SetupContext<'_>,
    vol: &Volume,
) -> Result<atomic_writer::Payload, SetupError> {
    if let Some(src) = &vol.config_map {
        return configmap::payload(ctx, src);
    }
    if let Some(src) = &vol.secret {
        return secret::payload(ctx, src);
    }
    if let Some(src) = &vol.downward_api {
        return downwardapi::payload(ctx, src);
    }
    if let Some(src) = &vol.projected {
        return projected::payload(ctx, src);
    }
    Ok(atomic_writer::Payload::new())
}

/// A directory (on a tmpfs when `tmpfs`) holding `payload` through the atomic writer. On
/// failure, whatever this call created is removed again.
fn writer_volume(
    ctx: &SetupContext<'_>,
    plugin: &str,
    name: &str,
    tmpfs: bool,
    payload: &atomic_writer::Payload,
    kind: VolumeKind,
) -> Result<Mounted, SetupError> {
    let dir = ctx.volume_dir(plugin, name);
    let created = !dir.exists();
    std::fs::create_dir_all(&dir).map_err(SetupError::io("cannot create", &dir))?;
    let mounted_now = if tmpfs && !ctx.is_mounted(&dir) {
        if let Err(e) = mount::mount_tmpfs(&dir, None, 0o755) {
            if created {
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(SetupError::io("cannot mount tmpfs on", &dir)(e));
        }
        true
    } else {
        false
    };
    if let Err(e) = atomic_writer::write(&dir, payload) {
        if mounted_now {
            let _ = mount::unmount(&dir);
        }
        if created && (!tmpfs || mounted_now) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(e.into());
    }
    Ok(Mounted {
        host_path: dir,
        read_only: true,
        kind,
    })
}

/// One emptyDir for the eviction manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyDirUsage {
    pub pod_uid: String,
    pub volume: String,
    pub path: PathBuf,
    /// A tmpfs (its usage is charged to the pod's memory, its size is the limit).
    pub memory: bool,
    /// The positive `sizeLimit`, if any.
    pub size_limit: Option<crate::resource::Quantity>,
}

/// Where the volume manager works.
#[derive(Debug, Clone)]
pub struct VolumeOptions {
    /// `<root-dir>/pods`.
    pub pods_root: PathBuf,
    /// The mount table (`/proc/self/mountinfo`).
    pub mountinfo: PathBuf,
    /// How often object-backed volumes are refreshed.
    pub resync_period: Duration,
    /// Where the volume metrics go, if anywhere.
    pub metrics: Option<crate::metrics::Metrics>,
}

struct PodState {
    pod: Arc<Pod>,
    facts: PodRuntimeFacts,
    mounted: BTreeMap<String, Mounted>,
}

struct PodEntry {
    state: tokio::sync::Mutex<PodState>,
}

/// The volume manager. One per kubelet.
pub struct VolumeManager {
    opts: VolumeOptions,
    objects: Arc<dyn ObjectSource>,
    events: Events,
    pods: parking_lot::Mutex<HashMap<String, Arc<PodEntry>>>,
    /// Per pod: `(plugin, state) → volumes`, for `volume_manager_total_volumes`.
    counts: parking_lot::Mutex<HashMap<String, crate::metrics::VolumeCounts>>,
    /// Set when an object changed: [`VolumeManager::run`] refreshes before its next tick.
    soon: tokio::sync::Notify,
}

const DESIRED: &str = "desired_state_of_world";
const ACTUAL: &str = "actual_state_of_world";

fn pod_uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn pod_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

impl VolumeManager {
    pub fn new(opts: VolumeOptions, objects: Arc<dyn ObjectSource>, events: Events) -> Self {
        Self {
            opts,
            objects,
            events,
            pods: parking_lot::Mutex::new(HashMap::new()),
            counts: parking_lot::Mutex::new(HashMap::new()),
            soon: tokio::sync::Notify::new(),
        }
    }

    /// Asks [`VolumeManager::run`] to refresh object-backed volumes now (a watched object
    /// changed) rather than at its next tick.
    pub fn resync_soon(&self) {
        self.soon.notify_one();
    }

    /// Records the volumes `pod` wants and those set up for it, and publishes the node's
    /// totals (`None`: the pod is gone).
    fn publish_counts(&self, uid: &str, pod: Option<(&Pod, &BTreeMap<String, Mounted>)>) {
        let Some(metrics) = &self.opts.metrics else {
            return;
        };
        let mut counts = self.counts.lock();
        match pod {
            Some((pod, mounted)) => {
                let mut c = crate::metrics::VolumeCounts::new();
                let desired = pod
                    .spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .filter_map(VolumeKind::of);
                for kind in desired {
                    *c.entry((kind.plugin_name().to_string(), DESIRED))
                        .or_default() += 1;
                }
                for m in mounted.values() {
                    *c.entry((m.kind.plugin_name().to_string(), ACTUAL))
                        .or_default() += 1;
                }
                counts.insert(uid.to_string(), c);
            }
            None => {
                counts.remove(uid);
            }
        }
        let mut total = crate::metrics::VolumeCounts::new();
        for (k, n) in counts.values().flatten() {
            *total.entry(k.clone()).or_default() += n;
        }
        metrics.set_volume_counts(total);
    }

    pub fn options(&self) -> &VolumeOptions {
        &self.opts
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.opts.pods_root.join(uid)
    }

    /// Sets up every volume of `pod` that is not set up yet (`WaitForAttachAndMount`), and
    /// records the pod as it is now for refreshes. Fails naming the volumes left unmounted;
    /// each failure is also a `FailedMount` event.
    pub async fn mount_pod(&self, pod: &Pod, facts: &PodRuntimeFacts) -> Result<(), VolumeError> {
        let uid = pod_uid(pod).to_string();
        let entry = {
            let mut pods = self.pods.lock();
            pods.entry(uid.clone())
                .or_insert_with(|| {
                    Arc::new(PodEntry {
                        state: tokio::sync::Mutex::new(PodState {
                            pod: Arc::new(pod.clone()),
                            facts: facts.clone(),
                            mounted: BTreeMap::new(),
                        }),
                    })
                })
                .clone()
        };
        let mut st = entry.state.lock().await;
        if *st.pod != *pod {
            st.pod = Arc::new(pod.clone());
        }
        st.facts = facts.clone();
        let todo: Vec<Volume> = pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.as_ref())
            .into_iter()
            .flatten()
            .filter(|v| !st.mounted.contains_key(&v.name))
            .cloned()
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let pod_arc = st.pod.clone();
        let facts = st.facts.clone();
        let objects = self.objects.clone();
        let pod_dir = self.pod_dir(&uid);
        let mountinfo = self.opts.mountinfo.clone();
        let results = tokio::task::spawn_blocking(move || {
            let ctx = SetupContext {
                pod: &pod_arc,
                pod_dir,
                objects: objects.as_ref(),
                facts: &facts,
                mountinfo: &mountinfo,
            };
            todo.into_iter()
                .map(|v| {
                    let started = std::time::Instant::now();
                    let r = setup_volume(&ctx, &v);
                    (v.name.clone(), VolumeKind::of(&v), started.elapsed(), r)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| VolumeError::Unmounted {
            pod: pod_name(pod),
            volumes: Vec::new(),
            first: format!("volume setup task failed: {e}"),
        })?;
        let mut failed = Vec::new();
        let mut first = None;
        for (name, kind, took, r) in results {
            if let (Some(m), Some(kind)) = (&self.opts.metrics, kind) {
                m.storage_op(kind.plugin_name(), "volume_mount", took, r.is_ok());
            }
            match r {
                Ok(m) => {
                    tracing::debug!(pod = %pod_name(pod), volume = %name, path = %m.host_path.display(), "volume set up");
                    st.mounted.insert(name, m);
                }
                Err(source) => {
                    let e = VolumeError::SetUp {
                        volume: name.clone(),
                        source,
                    };
                    self.events.warning(pod, "FailedMount", &e.to_string());
                    first.get_or_insert_with(|| e.to_string());
                    failed.push(name);
                }
            }
        }
        self.publish_counts(&uid, Some((pod, &st.mounted)));
        if failed.is_empty() {
            Ok(())
        } else {
            Err(VolumeError::Unmounted {
                pod: pod_name(pod),
                volumes: failed,
                first: first.unwrap_or_default(),
            })
        }
    }

    /// The volumes set up for a pod (for tests and the stats summary).
    pub fn mounted(&self, uid: &str) -> BTreeMap<String, Mounted> {
        let entry = self.pods.lock().get(uid).cloned();
        entry
            .and_then(|e| e.state.try_lock().ok().map(|s| s.mounted.clone()))
            .unwrap_or_default()
    }

    /// Every emptyDir set up on this node, with its pod, directory and `sizeLimit` in bytes: what
    /// the eviction manager measures to evict pods whose emptyDir outgrew its limit.
    pub fn empty_dirs(&self) -> Vec<EmptyDirUsage> {
        let entries: Vec<Arc<PodEntry>> = self.pods.lock().values().cloned().collect();
        let mut out = Vec::new();
        for e in entries {
            let Ok(st) = e.state.try_lock() else { continue };
            for v in st.pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
                let (Some(ed), Some(m)) = (&v.empty_dir, st.mounted.get(&v.name)) else {
                    continue;
                };
                out.push(EmptyDirUsage {
                    pod_uid: pod_uid(&st.pod).to_string(),
                    volume: v.name.clone(),
                    path: m.host_path.clone(),
                    memory: ed.medium.as_deref() == Some("Memory"),
                    size_limit: ed
                        .size_limit
                        .as_ref()
                        .and_then(|q| crate::resource::parse_quantity(&q.0).ok())
                        .filter(|q| q.value() > 0),
                });
            }
        }
        out
    }

    /// The CRI mounts of `container` (`makeMounts`): each volumeMount on its volume, with
    /// `readOnly`, `subPath` (safely bind-mounted), `subPathExpr` expanded with `env`, and the
    /// mount propagation. Blocking (it may mount): call from a blocking thread.
    pub fn container_mounts(
        &self,
        pod: &Pod,
        container: &Container,
        env: &[(String, String)],
    ) -> Result<Vec<cri::Mount>, MountError> {
        let uid = pod_uid(pod);
        let mounts = container.volume_mounts.as_deref().unwrap_or(&[]);
        if mounts.is_empty() {
            return Ok(Vec::new());
        }
        let entry = self.pods.lock().get(uid).cloned();
        let guard = entry.as_ref().map(|e| e.state.blocking_lock());
        let mounted = guard.as_ref().map(|g| &g.mounted);
        let vars: HashMap<String, String> = env.iter().cloned().collect();
        let mut out = Vec::with_capacity(mounts.len());
        for (i, m) in mounts.iter().enumerate() {
            let v = mounted
                .and_then(|ms| ms.get(&m.name))
                .ok_or_else(|| MountError::NoVolume {
                    volume: m.name.clone(),
                    container: container.name.clone(),
                })?;
            let sub = match m.sub_path_expr.as_deref().filter(|e| !e.is_empty()) {
                Some(expr) => {
                    let expanded = expand(expr, &vars);
                    let bad = expanded.starts_with('/')
                        || expanded.split('/').any(|s| s == "..")
                        || expanded.contains("$(");
                    if bad {
                        return Err(MountError::SubPathExpr {
                            volume: m.name.clone(),
                            container: container.name.clone(),
                            expr: expr.to_string(),
                            expanded,
                        });
                    }
                    expanded
                }
                None => m.sub_path.clone().unwrap_or_default(),
            };
            let host_path = if sub.is_empty() {
                v.host_path.clone()
            } else {
                let target = self
                    .pod_dir(uid)
                    .join(SUBPATHS_DIR)
                    .join(&m.name)
                    .join(&container.name)
                    .join(i.to_string());
                subpath::prepare(&v.host_path, &sub, &target, &self.opts.mountinfo).map_err(
                    |source| MountError::SubPath {
                        volume: m.name.clone(),
                        container: container.name.clone(),
                        source,
                    },
                )?
            };
            let propagation = match m.mount_propagation.as_deref() {
                Some("HostToContainer") => cri::MountPropagation::PropagationHostToContainer,
                Some("Bidirectional") => cri::MountPropagation::PropagationBidirectional,
                _ => cri::MountPropagation::PropagationPrivate,
            };
            out.push(cri::Mount {
                container_path: m.mount_path.clone(),
                host_path: host_path.to_string_lossy().into_owned(),
                readonly: m.read_only.unwrap_or(false) || v.read_only,
                selinux_relabel: false,
                propagation: propagation as i32,
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Unmounts and removes every volume of the pod `uid` (`UnmountVolumes` + orphan cleanup):
    /// all mounts below its `volumes` and `volume-subpaths` directories, deepest first, then the
    /// directories. Nothing is removed while anything is still mounted there.
    pub async fn unmount_pod(&self, uid: &str) -> Result<(), VolumeError> {
        let entry = self.pods.lock().remove(uid);
        // Wait for a setup in flight.
        let guard = match &entry {
            Some(e) => Some(e.state.lock().await),
            None => None,
        };
        let pod_dir = self.pod_dir(uid);
        let mountinfo = self.opts.mountinfo.clone();
        let (result, torn_down) = tokio::task::spawn_blocking(move || {
            let mut torn_down = Vec::new();
            let r = teardown_pod_dir_with(&pod_dir, &mountinfo, &mut |t| torn_down.push(t));
            (r, torn_down)
        })
        .await
        .map_err(|e| VolumeError::Teardown {
            path: self.pod_dir(uid),
            source: io::Error::other(e.to_string()),
        })?;
        if let Some(m) = &self.opts.metrics {
            for t in &torn_down {
                m.storage_op(&t.plugin, "volume_unmount", t.took, t.ok);
            }
            // hostPath volumes have nothing to tear down (the kubelet's TearDown is a no-op),
            // but the operation is still one.
            let host_paths = guard
                .iter()
                .flat_map(|st| st.mounted.values())
                .filter(|v| v.kind == VolumeKind::HostPath);
            for v in host_paths {
                m.storage_op(v.kind.plugin_name(), "volume_unmount", Duration::ZERO, true);
            }
        }
        self.publish_counts(uid, None);
        result
    }

    /// Rewrites every refreshable volume whose source changed (configMap, secret,
    /// downwardAPI, projected). Failures keep the old contents and are logged.
    /// Returns how many pods were skipped because their worker held them (setting up).
    pub async fn resync(&self) -> usize {
        let entries: Vec<Arc<PodEntry>> = self.pods.lock().values().cloned().collect();
        let mut busy = 0;
        for entry in entries {
            let Ok(st) = entry.state.try_lock() else {
                busy += 1;
                continue;
            };
            let refreshable: Vec<Volume> = st
                .pod
                .spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
                .filter(|v| {
                    st.mounted
                        .get(&v.name)
                        .is_some_and(|m| m.kind.refreshable())
                })
                .cloned()
                .collect();
            if refreshable.is_empty() {
                continue;
            }
            let pod = st.pod.clone();
            let facts = st.facts.clone();
            let dirs: Vec<PathBuf> = refreshable
                .iter()
                .map(|v| st.mounted[&v.name].host_path.clone())
                .collect();
            let objects = self.objects.clone();
            let pod_dir = self.pod_dir(pod_uid(&pod));
            let mountinfo = self.opts.mountinfo.clone();
            let pod2 = pod.clone();
            let failures = tokio::task::spawn_blocking(move || {
                let ctx = SetupContext {
                    pod: &pod2,
                    pod_dir,
                    objects: objects.as_ref(),
                    facts: &facts,
                    mountinfo: &mountinfo,
                };
                let mut failures = Vec::new();
                for (v, dir) in refreshable.iter().zip(dirs) {
                    let r = current_payload(&ctx, v)
                        .and_then(|p| atomic_writer::write(&dir, &p).map_err(SetupError::from));
                    match r {
                        Ok(true) => tracing::info!(pod = %pod_name(&pod2), volume = %v.name, "volume contents updated"),
                        Ok(false) => {}
                        Err(e) => failures.push((v.name.clone(), e)),
                    }
                }
                failures
            })
            .await
            .unwrap_or_default();
            drop(st);
            for (volume, e) in failures {
                tracing::warn!(pod = %pod_name(&pod), volume = %volume, error = %e, "cannot refresh volume; keeping its contents");
            }
        }
        busy
    }

    /// Refreshes volumes every `resync_period` until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.opts.resync_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let soon = tokio::select! {
                _ = tick.tick() => false,
                _ = self.soon.notified() => true,
            };
            // A change must not wait a whole period because a pod was busy: look again shortly.
            if self.resync().await > 0 && soon {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.soon.notify_one();
            }
        }
    }
}

/// One volume directory torn down by [`teardown_pod_dir_with`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornDown {
    /// The kubelet's plugin name, from the plugin directory (`kubernetes.io~empty-dir` →
    /// `kubernetes.io/empty-dir`).
    pub plugin: String,
    /// The volume's name.
    pub volume: String,
    /// How long unmounting and removing it took.
    pub took: Duration,
    /// Whether it is gone.
    pub ok: bool,
}

/// Unmounts everything below the pod's volume and subPath directories and removes them.
pub fn teardown_pod_dir(pod_dir: &Path, mountinfo: &Path) -> Result<(), VolumeError> {
    teardown_pod_dir_with(pod_dir, mountinfo, &mut |_| {})
}

/// [`teardown_pod_dir`], reporting each volume directory as it goes: subPath mounts first,
/// then every `volumes/<plugin>/<volume>` on its own (the kubelet's per-volume
/// `UnmountVolume`), then what is left of the volumes directory.
pub fn teardown_pod_dir_with(
    pod_dir: &Path,
    mountinfo: &Path,
    on_volume: &mut dyn FnMut(TornDown),
) -> Result<(), VolumeError> {
    remove_unmounted(&pod_dir.join(SUBPATHS_DIR), mountinfo)?;
    let volumes = pod_dir.join(VOLUMES_DIR);
    for plugin in std::fs::read_dir(&volumes).into_iter().flatten().flatten() {
        let name = plugin.file_name().to_string_lossy().replace('~', "/");
        for vol in std::fs::read_dir(plugin.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let started = std::time::Instant::now();
            let r = remove_unmounted(&vol.path(), mountinfo);
            on_volume(TornDown {
                plugin: name.clone(),
                volume: vol.file_name().to_string_lossy().into_owned(),
                took: started.elapsed(),
                ok: r.is_ok(),
            });
            r?;
        }
    }
    remove_unmounted(&volumes, mountinfo)
}

/// Unmounts everything below `dir` and removes it; nothing is removed while anything is still
/// mounted there. A missing `dir` is fine.
fn remove_unmounted(dir: &Path, mountinfo: &Path) -> Result<(), VolumeError> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    let err = |source| VolumeError::Teardown {
        path: dir.to_path_buf(),
        source,
    };
    mount::unmount_all_under(mountinfo, dir).map_err(err)?;
    let table = mount::mount_table(mountinfo).map_err(err)?;
    if !mount::mounts_under(&table, dir).is_empty() {
        return Err(err(io::Error::other("still mounted after unmounting")));
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err(e)),
    }
}

#[cfg(test)]
mod tests;
