//! The device manager (`pkg/kubelet/cm/devicemanager`): device plugins register on
//! `<root-dir>/device-plugins/kubelet.sock` ([`server`]), each advertising one extended
//! resource (`example.com/widget`) whose devices and their health it streams over
//! `ListAndWatch`. The manager turns that into the node's capacity (every device) and
//! allocatable (healthy devices), hands devices to containers at admission ([`allocator`]),
//! asks the plugin how to expose them (`GetPreferredAllocation`, `Allocate`,
//! `PreStartContainer`) before the container is created, and keeps every allocation in the
//! kubelet's checkpoint ([`checkpoint`]) so that they survive a restart. [`podresources`]
//! serves the PodResources API over the same state.
//!
//! A plugin whose stream ends or whose socket disappears has all its devices marked unhealthy
//! at once (allocatable drops to zero, capacity stays); after [`ENDPOINT_GRACE`] without a new
//! registration the resource is removed (reported with capacity 0). A new registration for
//! the same resource replaces the endpoint.
//!
//! Unlike the kubelet, the plugin's `GetPreferredAllocation` and `Allocate` are called when the
//! container is about to be created rather than inside admission (admission handlers here are
//! synchronous and must not wait on a plugin): admission reserves the devices, so the pod is
//! still refused at once when they are not there, and the reservation may then follow the
//! plugin's preference among the devices still free. Init containers do not lend their
//! devices to the app containers (the kubelet's `devicesToReuse`): each container gets its own.

pub mod allocator;
pub mod checkpoint;
pub mod podresources;
pub mod server;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use parking_lot::Mutex;
use proto::cri;
use proto::deviceplugin::{
    device_plugin_client::DevicePluginClient, ContainerAllocateRequest, ContainerAllocateResponse,
    ContainerPreferredAllocationRequest, DevicePluginOptions, PreStartContainerRequest,
    PreferredAllocationRequest,
};
use tonic::transport::Channel;

use allocator::{Entry, PodDevices};

/// How long the resource of a plugin that went away stays (devices unhealthy) before it is
/// removed (the kubelet's `endpointStopGracePeriod`).
pub const ENDPOINT_GRACE: Duration = Duration::from_secs(5 * 60);
/// The admission refusal reason of a failed allocation (`admission.ErrorReasonUnexpected`).
pub const UNEXPECTED_ADMISSION_ERROR: &str = "UnexpectedAdmissionError";
/// The device-plugins directory under the root dir.
pub const PLUGINS_DIR: &str = "device-plugins";

/// A device-manager failure, with the kubelet's messages where it has them.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("cannot allocate unregistered device {resource}")]
    Unregistered { resource: String },
    #[error("requested number of devices unavailable for {resource}. Requested: {requested}, Available: {available}")]
    Unavailable {
        resource: String,
        requested: usize,
        available: usize,
    },
    #[error("no containers return in allocation response for {resource}")]
    EmptyResponse { resource: String },
    #[error("device plugin for {resource} is not registered (its endpoint stopped)")]
    EndpointStopped { resource: String },
    #[error("{rpc} of device plugin {resource} failed: {status}")]
    Rpc {
        rpc: &'static str,
        resource: String,
        status: Box<tonic::Status>,
    },
    #[error("cannot create device plugin directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
}

/// One advertised device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub healthy: bool,
    pub numa_nodes: Vec<i64>,
}

/// A registered plugin's connection.
#[derive(Clone)]
struct Endpoint {
    client: DevicePluginClient<Channel>,
    options: DevicePluginOptions,
    /// Bumped on each registration, so that an old stream's end cannot stop a newer endpoint.
    generation: u64,
    task: Arc<tokio::task::AbortHandle>,
}

#[derive(Default)]
struct Resource {
    devices: BTreeMap<String, DeviceInfo>,
    endpoint: Option<Endpoint>,
    /// When the plugin went away (or the agent started with only the checkpoint's devices).
    stopped_at: Option<Instant>,
}

impl Resource {
    fn healthy(&self) -> BTreeSet<String> {
        self.devices
            .iter()
            .filter(|(_, d)| d.healthy)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

#[derive(Default)]
struct State {
    resources: BTreeMap<String, Resource>,
    /// Resources removed after their grace period, reported with capacity 0.
    removed: BTreeSet<String>,
    pods: PodDevices,
    generation: u64,
}

/// Extended-resource counts for the Node's capacity and allocatable.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceCapacity {
    pub capacity: BTreeMap<String, i64>,
    pub allocatable: BTreeMap<String, i64>,
}

/// What a container gets from its devices' Allocate answers (`DeviceRunContainerOptions`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerDeviceOptions {
    pub envs: BTreeMap<String, String>,
    pub mounts: Vec<cri::Mount>,
    pub devices: Vec<cri::Device>,
    pub annotations: BTreeMap<String, String>,
    pub cdi_devices: Vec<String>,
}

impl ContainerDeviceOptions {
    fn add(&mut self, r: &ContainerAllocateResponse) {
        self.envs
            .extend(r.envs.iter().map(|(k, v)| (k.clone(), v.clone())));
        for m in &r.mounts {
            if !self
                .mounts
                .iter()
                .any(|x| x.container_path == m.container_path)
            {
                self.mounts.push(cri::Mount {
                    container_path: m.container_path.clone(),
                    host_path: m.host_path.clone(),
                    readonly: m.read_only,
                    ..Default::default()
                });
            }
        }
        for d in &r.devices {
            if !self
                .devices
                .iter()
                .any(|x| x.container_path == d.container_path)
            {
                self.devices.push(cri::Device {
                    container_path: d.container_path.clone(),
                    host_path: d.host_path.clone(),
                    permissions: d.permissions.clone(),
                });
            }
        }
        self.annotations
            .extend(r.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        for c in &r.cdi_devices {
            if !self.cdi_devices.contains(&c.name) {
                self.cdi_devices.push(c.name.clone());
            }
        }
    }

    /// Applies these options to a CRI container config: device envs come before the
    /// container's own (which win on a clash), mounts and devices are added unless the
    /// container already has that path, annotations and CDI devices are merged.
    pub fn apply(&self, cfg: &mut cri::ContainerConfig) {
        let mut envs: Vec<cri::KeyValue> = self
            .envs
            .iter()
            .filter(|(k, _)| !cfg.envs.iter().any(|e| &e.key == *k))
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        envs.append(&mut cfg.envs);
        cfg.envs = envs;
        for m in &self.mounts {
            if !cfg
                .mounts
                .iter()
                .any(|x| x.container_path == m.container_path)
            {
                cfg.mounts.push(m.clone());
            }
        }
        cfg.devices.extend(self.devices.iter().cloned());
        for (k, v) in &self.annotations {
            cfg.annotations
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
        cfg.cdi_devices.extend(
            self.cdi_devices
                .iter()
                .map(|name| cri::CdiDevice { name: name.clone() }),
        );
    }
}

/// The devices of extended resources a container asks for: its limits (as the kubelet reads
/// them) of resources that the manager knows.
pub fn container_requests(c: &Container) -> Vec<(String, usize)> {
    c.resources
        .as_ref()
        .and_then(|r| r.limits.as_ref())
        .into_iter()
        .flatten()
        .filter(|(name, _)| is_extended_resource_name(name))
        .filter_map(|(name, q)| Some((name.clone(), q.0.trim().parse::<usize>().ok()?)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// `IsExtendedResourceName`: a domain-prefixed name outside `kubernetes.io/`, not starting
/// with `requests.`, that makes a valid qualified name.
pub fn is_extended_resource_name(name: &str) -> bool {
    let Some((prefix, rest)) = name.split_once('/') else {
        return false;
    };
    if prefix == "kubernetes.io"
        || prefix.ends_with(".kubernetes.io")
        || name.starts_with("requests.")
    {
        return false;
    }
    let label = |s: &str, max: usize, extra: &[char]| {
        !s.is_empty()
            && s.len() <= max
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    let dns_subdomain = prefix.len() <= 253
        && prefix
            .split('.')
            .all(|l| label(l, 63, &[]) && l.chars().all(|c| !c.is_ascii_uppercase()));
    dns_subdomain && label(rest, 63, &['_', '.'])
}

/// The node's device manager. Cheap to clone.
#[derive(Clone)]
pub struct DeviceManager {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    metrics: Option<crate::metrics::Metrics>,
}

impl DeviceManager {
    /// A manager over `<root-dir>/device-plugins`: creates the directory, removes stale sockets
    /// there (plugins watch for this and register again) and restores the checkpoint.
    pub fn new(root_dir: &Path) -> Result<Self, DeviceError> {
        let dir = root_dir.join(PLUGINS_DIR);
        std::fs::create_dir_all(&dir).map_err(|source| DeviceError::Dir {
            path: dir.clone(),
            source,
        })?;
        server::remove_sockets(&dir);
        let mut state = State::default();
        match checkpoint::read(&dir) {
            Ok(Some(restored)) => {
                for (resource, ids) in restored.registered {
                    // Known but without a plugin until it registers again: no healthy device.
                    let r = state.resources.entry(resource).or_default();
                    r.stopped_at = Some(Instant::now());
                    r.devices = ids
                        .into_iter()
                        .map(|id| {
                            (
                                id,
                                DeviceInfo {
                                    healthy: false,
                                    numa_nodes: Vec::new(),
                                },
                            )
                        })
                        .collect();
                }
                state.pods = restored.pods;
                tracing::info!(
                    path = %dir.join(checkpoint::FILE_NAME).display(),
                    entries = state.pods.entries.len(),
                    "restored device allocations from checkpoint"
                );
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "ignoring the device checkpoint"),
        }
        Ok(Self {
            dir,
            state: Arc::new(Mutex::new(state)),
            metrics: None,
        })
    }

    /// Records registrations and Allocate durations in the kubelet's families
    /// (`kubelet_device_plugin_registration_total`, `kubelet_device_plugin_alloc_duration_seconds`).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn registered(&self, resource: &str) {
        if let Some(m) = &self.metrics {
            m.device_plugin_registration_total
                .with_label_values(&[resource])
                .inc();
        }
    }

    /// The device-plugins directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn write_checkpoint(&self, st: &State) {
        let registered: BTreeMap<String, BTreeSet<String>> = st
            .resources
            .iter()
            .map(|(r, res)| (r.clone(), res.devices.keys().cloned().collect()))
            .collect();
        let bytes = checkpoint::encode(&st.pods, &registered);
        if let Err(e) = checkpoint::write(&self.dir, &bytes) {
            tracing::error!(error = %e, "device checkpoint not written");
        }
    }

    /// Capacity (every device) and allocatable (healthy devices) per resource at `now`;
    /// resources whose plugin has been gone longer than [`ENDPOINT_GRACE`] are removed here
    /// and reported with 0 from then on.
    pub fn capacity_at(&self, now: Instant) -> DeviceCapacity {
        let mut st = self.state.lock();
        let expired: Vec<String> = st
            .resources
            .iter()
            .filter(|(_, r)| {
                r.endpoint.is_none()
                    && r.stopped_at
                        .is_some_and(|t| now.saturating_duration_since(t) >= ENDPOINT_GRACE)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            tracing::info!(resource = %name, "device plugin did not come back within its grace period; resource removed");
            st.resources.remove(&name);
            st.removed.insert(name);
        }
        let mut out = DeviceCapacity::default();
        for name in &st.removed {
            out.capacity.insert(name.clone(), 0);
            out.allocatable.insert(name.clone(), 0);
        }
        for (name, r) in &st.resources {
            out.capacity.insert(name.clone(), r.devices.len() as i64);
            out.allocatable.insert(
                name.clone(),
                r.devices.values().filter(|d| d.healthy).count() as i64,
            );
        }
        out
    }

    /// [`Self::capacity_at`] now.
    pub fn capacity(&self) -> DeviceCapacity {
        self.capacity_at(Instant::now())
    }

    /// Healthy devices per resource (PodResources `GetAllocatableResources`).
    pub fn allocatable_devices(&self) -> BTreeMap<String, BTreeMap<String, DeviceInfo>> {
        let st = self.state.lock();
        st.resources
            .iter()
            .map(|(name, r)| {
                let healthy = r
                    .devices
                    .iter()
                    .filter(|(_, d)| d.healthy)
                    .map(|(id, d)| (id.clone(), d.clone()))
                    .collect();
                (name.clone(), healthy)
            })
            .collect()
    }

    /// A container's devices: resource → (device ID → its NUMA nodes).
    pub fn container_devices(
        &self,
        uid: &str,
        container: &str,
    ) -> BTreeMap<String, BTreeMap<String, Vec<i64>>> {
        let st = self.state.lock();
        st.pods
            .container(uid, container)
            .map(|(resource, e)| {
                let numa = |id: &String| {
                    st.resources
                        .get(resource)
                        .and_then(|r| r.devices.get(id))
                        .map(|d| d.numa_nodes.clone())
                        .unwrap_or_default()
                };
                let ids = e
                    .device_ids
                    .iter()
                    .map(|id| (id.clone(), numa(id)))
                    .collect();
                (resource.to_string(), ids)
            })
            .collect()
    }

    /// Admission (`Allocate(pod, container)` for every container): reserves devices for each
    /// container's device-plugin resources. `active` are the UIDs of the node's active pods
    /// (allocations of other pods are released first), `None` until every pod source has
    /// reported (after a restart, a pod not yet re-admitted must keep its devices, as the
    /// kubelet's `sourcesReady` check in `UpdateAllocatedDevices`). On failure nothing is
    /// reserved.
    pub fn admit(&self, pod: &Pod, active: Option<&HashSet<String>>) -> Result<(), DeviceError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let containers = spec
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default()
            .iter()
            .chain(spec.map(|s| s.containers.as_slice()).unwrap_or_default());
        let mut st = self.state.lock();
        let released = match active {
            Some(active) => {
                let mut keep = active.clone();
                keep.insert(uid.clone());
                st.pods.retain_pods(&keep)
            }
            None => false,
        };
        let mut next = st.pods.clone();
        for c in containers {
            for (resource, needed) in container_requests(c) {
                let known =
                    st.resources.contains_key(&resource) || next.resources().contains(&resource);
                if !known || next.get(&uid, &c.name, &resource).is_some() {
                    continue;
                }
                let Some(r) = st.resources.get(&resource) else {
                    return Err(DeviceError::Unregistered { resource });
                };
                let ids =
                    allocator::choose(&resource, needed, &r.healthy(), &next.in_use(&resource))?;
                next.insert(
                    &uid,
                    &c.name,
                    &resource,
                    Entry {
                        device_ids: ids,
                        response: None,
                    },
                );
            }
        }
        if next != st.pods || released {
            st.pods = next;
            self.write_checkpoint(&st);
        }
        Ok(())
    }

    /// What the container's devices need in its config: the plugins' Allocate answers (asked
    /// once per container and checkpointed, after `GetPreferredAllocation` when the plugin
    /// offers it), and `PreStartContainer` before every start when the plugin asks for it.
    pub async fn container_options(
        &self,
        uid: &str,
        container: &str,
    ) -> Result<ContainerDeviceOptions, DeviceError> {
        let entries: Vec<(String, Entry)> = {
            let st = self.state.lock();
            st.pods
                .container(uid, container)
                .map(|(r, e)| (r.to_string(), e.clone()))
                .collect()
        };
        let mut out = ContainerDeviceOptions::default();
        for (resource, entry) in entries {
            let response = match entry.response {
                Some(r) => r,
                None => {
                    self.allocate(uid, container, &resource, entry.device_ids)
                        .await?
                }
            };
            out.add(&response);
            let endpoint = self.endpoint(&resource);
            if let Some(ep) = endpoint.filter(|e| e.options.pre_start_required) {
                let ids = self
                    .container_devices(uid, container)
                    .remove(&resource)
                    .map(|m| m.into_keys().collect())
                    .unwrap_or_default();
                ep.client
                    .clone()
                    .pre_start_container(PreStartContainerRequest { devices_ids: ids })
                    .await
                    .map_err(|s| rpc_error("PreStartContainer", &resource, s))?;
            }
        }
        Ok(out)
    }

    fn endpoint(&self, resource: &str) -> Option<Endpoint> {
        self.state
            .lock()
            .resources
            .get(resource)
            .and_then(|r| r.endpoint.clone())
    }

    async fn allocate(
        &self,
        uid: &str,
        container: &str,
        resource: &str,
        reserved: BTreeSet<String>,
    ) -> Result<ContainerAllocateResponse, DeviceError> {
        let ep = self
            .endpoint(resource)
            .ok_or_else(|| DeviceError::EndpointStopped {
                resource: resource.to_string(),
            })?;
        let mut ids = reserved.clone();
        if ep.options.get_preferred_allocation_available {
            let available: BTreeSet<String> = {
                let st = self.state.lock();
                let healthy = st
                    .resources
                    .get(resource)
                    .map(Resource::healthy)
                    .unwrap_or_default();
                let in_use = st.pods.in_use(resource);
                healthy
                    .difference(&in_use)
                    .cloned()
                    .chain(reserved.iter().cloned())
                    .collect()
            };
            let req = PreferredAllocationRequest {
                container_requests: vec![ContainerPreferredAllocationRequest {
                    available_device_i_ds: available.iter().cloned().collect(),
                    must_include_device_i_ds: Vec::new(),
                    allocation_size: reserved.len() as i32,
                }],
            };
            let resp = ep
                .client
                .clone()
                .get_preferred_allocation(req)
                .await
                .map_err(|s| rpc_error("GetPreferredAllocation", resource, s))?
                .into_inner();
            let preferred = resp
                .container_responses
                .first()
                .map(|r| r.device_i_ds.clone())
                .unwrap_or_default();
            ids = allocator::prefer(&preferred, reserved.len(), &available, reserved.clone());
        }
        if ids != reserved {
            // Take the preferred devices if they are still free (nothing else took them
            // during the call).
            let mut st = self.state.lock();
            let mut in_use = st.pods.in_use(resource);
            for id in &reserved {
                in_use.remove(id);
            }
            if ids.is_disjoint(&in_use) {
                st.pods.insert(
                    uid,
                    container,
                    resource,
                    Entry {
                        device_ids: ids.clone(),
                        response: None,
                    },
                );
            } else {
                ids = reserved;
            }
        }
        let req = proto::deviceplugin::AllocateRequest {
            container_requests: vec![ContainerAllocateRequest {
                devices_ids: ids.iter().cloned().collect(),
            }],
        };
        let started = Instant::now();
        let resp = ep.client.clone().allocate(req).await;
        if let Some(m) = &self.metrics {
            m.device_plugin_alloc_duration_seconds
                .with_label_values(&[resource])
                .observe(started.elapsed().as_secs_f64());
        }
        let resp = resp
            .map_err(|s| rpc_error("Allocate", resource, s))?
            .into_inner();
        let response = resp.container_responses.into_iter().next().ok_or_else(|| {
            DeviceError::EmptyResponse {
                resource: resource.to_string(),
            }
        })?;
        let mut st = self.state.lock();
        // The pod may have gone during the call: then nothing is recorded.
        if st.pods.get(uid, container, resource).is_some() {
            st.pods.insert(
                uid,
                container,
                resource,
                Entry {
                    device_ids: ids,
                    response: Some(response.clone()),
                },
            );
            self.write_checkpoint(&st);
        }
        Ok(response)
    }

    /// Releases the allocations of pods not in `active` (the kubelet does it lazily, before
    /// each allocation and on PodResources calls).
    pub fn release_inactive(&self, active: &HashSet<String>) {
        let mut st = self.state.lock();
        if st.pods.retain_pods(active) {
            self.write_checkpoint(&st);
        }
    }

    // ---- called by the registration server and the endpoint tasks ----

    fn next_generation(&self) -> u64 {
        let mut st = self.state.lock();
        st.generation += 1;
        st.generation
    }

    /// A (re-)registered plugin: replaces the resource's endpoint, stopping the old stream.
    fn set_endpoint(
        &self,
        resource: &str,
        client: DevicePluginClient<Channel>,
        options: DevicePluginOptions,
        generation: u64,
        task: tokio::task::AbortHandle,
    ) {
        let mut st = self.state.lock();
        st.removed.remove(resource);
        let r = st.resources.entry(resource.to_string()).or_default();
        if let Some(old) = r.endpoint.take() {
            old.task.abort();
        }
        r.endpoint = Some(Endpoint {
            client,
            options,
            generation,
            task: Arc::new(task),
        });
        r.stopped_at = None;
    }

    /// A ListAndWatch update: the resource's devices are exactly `devices`.
    fn update_devices(
        &self,
        resource: &str,
        generation: u64,
        devices: BTreeMap<String, DeviceInfo>,
    ) {
        let mut st = self.state.lock();
        let Some(r) = st.resources.get_mut(resource) else {
            return;
        };
        if r.endpoint.as_ref().map(|e| e.generation) != Some(generation) {
            return;
        }
        let changed_ids = r.devices.keys().ne(devices.keys());
        r.devices = devices;
        if changed_ids {
            self.write_checkpoint(&st);
        }
    }

    /// The plugin's stream ended or its socket went: every device unhealthy, the grace period
    /// starts.
    fn endpoint_stopped(&self, resource: &str, generation: u64) {
        let mut st = self.state.lock();
        let Some(r) = st.resources.get_mut(resource) else {
            return;
        };
        if r.endpoint.as_ref().map(|e| e.generation) != Some(generation) {
            return;
        }
        r.endpoint = None;
        r.stopped_at = Some(Instant::now());
        for d in r.devices.values_mut() {
            d.healthy = false;
        }
        tracing::info!(
            resource,
            "device plugin endpoint stopped; its devices are unhealthy"
        );
    }
}

fn rpc_error(rpc: &'static str, resource: &str, status: tonic::Status) -> DeviceError {
    DeviceError::Rpc {
        rpc,
        resource: resource.to_string(),
        status: Box::new(status),
    }
}

/// The admission refusal for a failed allocation, as the kubelet words it.
pub fn refusal(e: &DeviceError) -> (String, String) {
    (
        UNEXPECTED_ADMISSION_ERROR.to_string(),
        format!("Allocate failed due to {e}, which is unexpected"),
    )
}

#[cfg(test)]
mod tests;
