//! The node side of API-server mode: registration, node status and the node Lease.
//!
//! - Registration (`registerNode`): create the Node with the kubelet's default labels,
//!   `--node-labels`, `registerWithTaints` and a first status; when it already exists, put the
//!   default labels and the attach/detach annotation on it (`tryRegisterWithAPIServer`).
//!   Retried with backoff (200 ms doubling to 7 s) while the server is away.
//! - Status: computed every `nodeStatusUpdateFrequency`; PATCHed (strategic merge on
//!   `nodes/<n>/status`) only when something besides the heartbeat times changed, or once every
//!   `nodeStatusReportFrequency`. `NodeReady`/`NodeNotReady` events on Ready transitions.
//! - Lease ([`lease`]): `kube-node-lease/<node>` renewed every quarter of
//!   `nodeLeaseDurationSeconds`.
//!
//! None of it blocks the node: static pods run with the server down, and each loop picks up
//! when it returns; [`crate::apiclient::reachability`] logs the server's state changes once.

pub mod lease;
pub mod status;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Node, NodeStatus, NodeSystemInfo};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams, PostParams};
use managers::conditions::NodeConditions;
use managers::{EventSink, EventType, ObjectRef};

use crate::apiclient::reachability::{backoff, Reachability};
use crate::cm::node::{hugepage_resource_name, NodeConfig};
use crate::config::KubeletSettings;
use crate::health::Health;
use crate::kuberuntime::RuntimeService;
use status::{NodeInputs, Observed};

/// The message of the Ready condition before the runtime was first asked (the kubelet's
/// `initError`).
pub const RUNTIME_NOT_CHECKED: &str = "container runtime status check may not have completed yet";
/// The longest wait between two registration attempts (the kubelet's 7 s).
pub const MAX_REGISTER_BACKOFF: Duration = Duration::from_secs(7);
/// The field manager of the agent's writes.
pub const FIELD_MANAGER: &str = "kubelet";

/// Now as an API time.
pub fn now() -> Time {
    crate::events::api_time(SystemTime::now())
        .unwrap_or(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH))
}

/// What the node's API loops share.
#[derive(Clone)]
pub struct NodeApi {
    pub client: kube::Client,
    pub inputs: Arc<NodeInputs>,
    pub register: bool,
    pub update_frequency: Duration,
    pub report_frequency: Duration,
    pub lease_duration_seconds: u32,
    pub health: Health,
    pub conditions: Arc<NodeConditions>,
    pub runtime: RuntimeService,
    /// The runtime's name as the agent learnt it (`containerd`).
    pub runtime_name: String,
    pub events: Arc<dyn EventSink>,
    pub reach: Reachability,
    /// Device plugins' extended resources, in capacity and allocatable.
    pub devices: Option<crate::cm::devicemanager::DeviceManager>,
}

/// The static inputs from the settings, the container manager's node config and the host.
pub fn inputs(settings: &KubeletSettings, node: &NodeConfig, proc_root: &Path) -> NodeInputs {
    let mut capacity = BTreeMap::new();
    let mut allocatable = BTreeMap::new();
    let alloc = node.allocatable();
    if let (Some(c), Some(a)) = (node.capacity.cpu_milli, alloc.cpu_milli) {
        capacity.insert("cpu".to_string(), status::cpu_quantity(c));
        allocatable.insert("cpu".to_string(), status::cpu_quantity(a));
    }
    if let (Some(c), Some(a)) = (node.capacity.memory, alloc.memory) {
        // Allocatable memory also leaves the hard eviction threshold (`GetNodeAllocatableAbsolute`
        // minus `hardEvictionThresholds` in the kubelet's node status).
        let a = (a - node.hard_eviction.memory.unwrap_or(0)).max(0);
        capacity.insert("memory".to_string(), status::bytes_quantity(c));
        allocatable.insert("memory".to_string(), status::bytes_quantity(a));
    }
    for (size, c) in &node.capacity.hugepages {
        let name = hugepage_resource_name(*size);
        capacity.insert(name.clone(), status::bytes_quantity(*c));
        let a = alloc.hugepages.get(size).copied().unwrap_or(*c);
        allocatable.insert(name, status::bytes_quantity(a));
    }
    if let Some(storage) = fs_capacity(&settings.root_dir) {
        let reserved: i64 = [&settings.kube_reserved, &settings.system_reserved]
            .iter()
            .filter_map(|m| m.get("ephemeral-storage"))
            .map(|q| q.value())
            .sum();
        let hard = settings
            .eviction_hard
            .get(&crate::config::eviction::EvictionSignal::NodeFsAvailable)
            .map(|t| match t {
                crate::config::eviction::ThresholdValue::Quantity(q) => q.value(),
                crate::config::eviction::ThresholdValue::Percentage(p) => {
                    (storage as f64 * p) as i64
                }
            })
            .unwrap_or(0);
        capacity.insert(
            "ephemeral-storage".to_string(),
            status::bytes_quantity(storage),
        );
        allocatable.insert(
            "ephemeral-storage".to_string(),
            status::bytes_quantity((storage - reserved - hard).max(0)),
        );
    }
    let cores = node.capacity.cpu_milli.unwrap_or(1000) / 1000;
    let pods = Quantity(settings.effective_max_pods(cores as u32).to_string());
    capacity.insert("pods".to_string(), pods.clone());
    allocatable.insert("pods".to_string(), pods);

    let internal_ip = crate::nodeinfo::host_ips(settings.node_ip, proc_root)
        .into_iter()
        .next()
        .unwrap_or_else(|| "127.0.0.1".into());
    NodeInputs {
        name: settings.node_name.clone(),
        hostname: settings.node_name.clone(),
        labels: settings.node_labels.clone(),
        taints: settings.api_node.register_with_taints.clone(),
        internal_ip,
        capacity,
        allocatable,
        info: system_info(proc_root),
        port: settings.port,
        max_images: settings.api_node.node_status_max_images,
    }
}

/// The size of the filesystem holding `path` in bytes.
fn fs_capacity(path: &Path) -> Option<i64> {
    let mut p = path.to_path_buf();
    while !p.exists() {
        p = p.parent()?.to_path_buf();
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_blocks as i64).saturating_mul(st.f_frsize as i64))
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// nodeInfo from the host: machine ID, system UUID, boot ID, kernel, OS image.
fn system_info(proc_root: &Path) -> NodeSystemInfo {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os_image = os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Unknown".into());
    let machine_id = {
        let id = read_trimmed(Path::new("/etc/machine-id"));
        if id.is_empty() {
            read_trimmed(Path::new("/var/lib/dbus/machine-id"))
        } else {
            id
        }
    };
    NodeSystemInfo {
        machine_id,
        system_uuid: read_trimmed(Path::new("/sys/class/dmi/id/product_uuid")),
        boot_id: read_trimmed(&proc_root.join("sys/kernel/random/boot_id")),
        kernel_version: read_trimmed(&proc_root.join("sys/kernel/osrelease")),
        os_image,
        container_runtime_version: String::new(),
        kubelet_version: crate::config::KUBERNETES_VERSION.to_string(),
        kube_proxy_version: String::new(),
        operating_system: status::go_os().to_string(),
        architecture: status::go_arch().to_string(),
        ..Default::default()
    }
}

impl NodeApi {
    fn node_ref(&self) -> ObjectRef {
        ObjectRef::node(&self.inputs.name)
    }

    fn node_event(&self, reason: &str) {
        self.events.event(
            &self.node_ref(),
            EventType::Normal,
            reason,
            &format!("Node {} status is now: {reason}", self.inputs.name),
        );
    }

    /// What the runtime, the health checks and the eviction manager say now.
    async fn observe(&self) -> Observed {
        let version = self.runtime.version().await.ok();
        let (ready, ready_message) = match &version {
            Some(_) => self.health.node_ready(),
            None => match self.health.node_ready() {
                (false, why) => (false, why),
                (true, _) => (false, RUNTIME_NOT_CHECKED.to_string()),
            },
        };
        let runtime_version = version.map(|v| {
            let name = if v.runtime_name.is_empty() {
                self.runtime_name.clone()
            } else {
                v.runtime_name
            };
            format!("{name}://{}", v.runtime_version)
        });
        let images = self
            .runtime
            .list_images()
            .await
            .map(|imgs| {
                imgs.into_iter()
                    .map(|i| {
                        let mut names = i.repo_digests;
                        names.extend(i.repo_tags);
                        (names, i.size as i64)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Observed {
            ready,
            ready_message,
            runtime_version,
            images,
            ..self.observe_conditions_only()
        }
    }

    /// Creates the Node, or reconciles the one that exists. Err: retry later.
    async fn register(&self, first: &NodeStatus) -> Result<NodeStatus, String> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = status::initial_node(&self.inputs, first.clone());
        let created = nodes.create(&PostParams::default(), &node).await;
        self.reach.observe(&created);
        match created {
            Ok(n) => {
                tracing::info!(node = %self.inputs.name, "successfully registered node");
                return Ok(n.status.unwrap_or_default());
            }
            Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => {}
            Err(e) => return Err(format!("unable to register node with API server: {e}")),
        }
        let existing = nodes.get(&self.inputs.name).await;
        self.reach.observe(&existing);
        let existing = existing.map_err(|e| {
            format!("unable to register node with API server, error getting existing node: {e}")
        })?;
        if let Some(patch) = status::reconcile_existing(&self.inputs, &existing) {
            let r = nodes
                .patch(
                    &self.inputs.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            self.reach.observe(&r);
            r.map_err(|e| format!("unable to reconcile the existing node: {e}"))?;
        }
        tracing::info!(node = %self.inputs.name, "node was previously registered");
        Ok(existing.status.unwrap_or_default())
    }

    /// PATCHes `nodes/<n>/status`.
    async fn patch_status(&self, s: &NodeStatus) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let body = serde_json::json!({ "status": s });
        let r = nodes
            .patch_status(
                &self.inputs.name,
                &PatchParams::default(),
                &Patch::Strategic(&body),
            )
            .await;
        self.reach.observe(&r);
        r.map(|_| ())
    }

    /// The registration and status loop; runs until aborted. Each round reads the Node (as
    /// the kubelet's `tryUpdateNodeStatus`), computes the status over it and PATCHes only when
    /// something but the heartbeats differs from what the server holds, or when the report
    /// period is due. A Node deleted behind the agent's back is registered again.
    pub async fn run_status(self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut registered = !self.register;
        let mut failures = 0u32;
        // The last status computed, for the Ready transitions' events.
        let mut computed: Option<NodeStatus> = None;
        let mut last_report: Option<tokio::time::Instant> = None;
        loop {
            if !registered {
                let first = status::node_status(
                    &self.inputs,
                    &Observed {
                        ready: false,
                        ready_message: RUNTIME_NOT_CHECKED.into(),
                        ..self.observe_conditions_only()
                    },
                    None,
                    &now(),
                );
                match self.register(&first).await {
                    Ok(_) => {
                        registered = true;
                        failures = 0;
                        computed = Some(first);
                        last_report = Some(tokio::time::Instant::now());
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "node registration failed; retrying");
                        failures += 1;
                        tokio::time::sleep(backoff(failures, MAX_REGISTER_BACKOFF)).await;
                        continue;
                    }
                }
                // As the kubelet: the first status round follows registration at once.
                continue;
            }
            let got = nodes.get_opt(&self.inputs.name).await;
            self.reach.observe(&got);
            let server = match got {
                Ok(Some(n)) => n.status.unwrap_or_default(),
                Ok(None) => {
                    if self.register {
                        tracing::warn!(node = %self.inputs.name, "the Node object is gone; registering again");
                        registered = false;
                    } else {
                        tracing::warn!(node = %self.inputs.name, "error updating node status: node not found (registerNode is false)");
                        tokio::time::sleep(self.update_frequency).await;
                    }
                    continue;
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, "error getting the node, will retry");
                    tokio::time::sleep(backoff(failures, self.update_frequency)).await;
                    continue;
                }
            };
            let observed = self.observe().await;
            let s = status::node_status(&self.inputs, &observed, Some(&server), &now());
            let was_ready = computed.as_ref().and_then(status::ready);
            let is_ready = status::ready(&s);
            if was_ready.is_some() && was_ready != is_ready {
                self.node_event(if is_ready == Some(true) {
                    "NodeReady"
                } else {
                    "NodeNotReady"
                });
            }
            computed = Some(s.clone());
            let due = last_report.is_none_or(|t| t.elapsed() >= self.report_frequency);
            let differs = status::differences(&server, &s);
            if !differs.is_empty() || due {
                tracing::debug!(node = %self.inputs.name, changed = ?differs, "updating node status");
                match self.patch_status(&s).await {
                    Ok(()) => last_report = Some(tokio::time::Instant::now()),
                    Err(e) => {
                        failures += 1;
                        tracing::debug!(error = %e, "error updating node status, will retry");
                        tokio::time::sleep(backoff(failures, self.update_frequency)).await;
                        continue;
                    }
                }
            }
            failures = 0;
            // A node shutdown starting or cancelled is reported at once (the kubelet's
            // shutdown manager calls `syncNodeStatus`).
            tokio::select! {
                _ = tokio::time::sleep(self.update_frequency) => {}
                _ = self.health.changed() => {}
            }
        }
    }

    fn observe_conditions_only(&self) -> Observed {
        Observed {
            devices: self
                .devices
                .as_ref()
                .map(|d| d.capacity())
                .unwrap_or_default(),
            pressure: self
                .conditions
                .snapshot()
                .into_iter()
                .map(|c| {
                    (
                        c.kind.as_str().to_string(),
                        c.status,
                        c.reason.to_string(),
                        c.message.to_string(),
                    )
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Starts the status and Lease loops; abort the handles to stop them.
pub fn start(api: NodeApi) -> Vec<tokio::task::JoinHandle<()>> {
    api.events.event(
        &api.node_ref(),
        EventType::Normal,
        "Starting",
        "Starting kubelet.",
    );
    let lease = lease::LeaseLoop {
        client: api.client.clone(),
        node: api.inputs.name.clone(),
        duration_seconds: api.lease_duration_seconds,
        reach: api.reach.clone(),
    };
    vec![tokio::spawn(api.run_status()), tokio::spawn(lease.run())]
}
