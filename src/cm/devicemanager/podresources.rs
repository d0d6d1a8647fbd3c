//! The PodResources API v1 on `<root-dir>/pod-resources/kubelet.sock`: `List` (every active
//! pod's containers with their devices), `GetAllocatableResources` (the node's healthy
//! devices) and `Get` (one pod). CPU and memory assignments are empty: kubelet-rs has no CPU
//! or memory manager. Each device is its own `ContainerDevices` entry with its NUMA topology,
//! as the kubelet reports them. `Get` is served without the kubelet's `KubeletPodResourcesGet`
//! feature gate.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use proto::podresources::{
    pod_resources_lister_server::{PodResourcesLister, PodResourcesListerServer},
    AllocatableResourcesRequest, AllocatableResourcesResponse, ContainerDevices,
    ContainerResources, GetPodResourcesRequest, GetPodResourcesResponse, ListPodResourcesRequest,
    ListPodResourcesResponse, NumaNode, PodResources, TopologyInfo,
};
use tonic::{Request, Response, Status};

use super::server::{listen, ServeError};
use super::DeviceManager;

/// The PodResources directory under the root dir, and its socket.
pub const DIR: &str = "pod-resources";
pub const SOCKET: &str = "kubelet.sock";

/// The node's active pods (terminated ones excluded), and whether every pod source has
/// reported (only then are the allocations of other pods released).
pub type ActivePods = Arc<dyn Fn() -> (Vec<Pod>, bool) + Send + Sync>;

/// Serves the API on `<root-dir>/pod-resources/kubelet.sock` until the task is aborted.
pub fn serve(
    root_dir: &Path,
    dm: DeviceManager,
    pods: ActivePods,
) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let path = root_dir.join(DIR).join(SOCKET);
    let listener = listen(&path)?;
    tracing::info!(path = %path.display(), "pod resources server listening");
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(PodResourcesListerServer::new(Lister { dm, pods }))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
        if let Err(e) = served {
            tracing::error!(path = %path.display(), error = %e, "pod resources server stopped");
        }
    }))
}

struct Lister {
    dm: DeviceManager,
    pods: ActivePods,
}

fn devices_entries(
    by_resource: BTreeMap<String, BTreeMap<String, Vec<i64>>>,
) -> Vec<ContainerDevices> {
    by_resource
        .into_iter()
        .flat_map(|(resource, ids)| {
            ids.into_iter().map(move |(id, numa)| ContainerDevices {
                resource_name: resource.clone(),
                device_ids: vec![id],
                topology: (!numa.is_empty()).then(|| TopologyInfo {
                    nodes: numa.into_iter().map(|id| NumaNode { id }).collect(),
                }),
            })
        })
        .collect()
}

impl Lister {
    fn active(&self) -> Vec<Pod> {
        let (pods, ready) = (self.pods)();
        if ready {
            let uids: HashSet<String> =
                pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
            self.dm.release_inactive(&uids);
        }
        pods
    }

    fn pod_resources(&self, pod: &Pod) -> PodResources {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        let spec = pod.spec.as_ref();
        // App containers and restartable init containers (sidecars), as the kubelet lists.
        let sidecars = spec
            .and_then(|s| s.init_containers.as_deref())
            .unwrap_or_default()
            .iter()
            .filter(|c| c.restart_policy.as_deref() == Some("Always"));
        let containers = sidecars
            .chain(spec.map(|s| s.containers.as_slice()).unwrap_or_default())
            .map(|c| ContainerResources {
                name: c.name.clone(),
                devices: devices_entries(self.dm.container_devices(uid, &c.name)),
                ..Default::default()
            })
            .collect();
        PodResources {
            name: pod.metadata.name.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            containers,
        }
    }
}

#[tonic::async_trait]
impl PodResourcesLister for Lister {
    async fn list(
        &self,
        _: Request<ListPodResourcesRequest>,
    ) -> Result<Response<ListPodResourcesResponse>, Status> {
        let pod_resources = self
            .active()
            .iter()
            .map(|p| self.pod_resources(p))
            .collect();
        Ok(Response::new(ListPodResourcesResponse { pod_resources }))
    }

    async fn get_allocatable_resources(
        &self,
        _: Request<AllocatableResourcesRequest>,
    ) -> Result<Response<AllocatableResourcesResponse>, Status> {
        let devices = self
            .dm
            .allocatable_devices()
            .into_iter()
            .map(|(r, ids)| {
                (
                    r,
                    ids.into_iter().map(|(id, d)| (id, d.numa_nodes)).collect(),
                )
            })
            .collect();
        Ok(Response::new(AllocatableResourcesResponse {
            devices: devices_entries(devices),
            ..Default::default()
        }))
    }

    async fn get(
        &self,
        req: Request<GetPodResourcesRequest>,
    ) -> Result<Response<GetPodResourcesResponse>, Status> {
        let r = req.into_inner();
        let pods = self.active();
        let pod = pods.iter().find(|p| {
            p.metadata.name.as_deref() == Some(r.pod_name.as_str())
                && p.metadata.namespace.as_deref() == Some(r.pod_namespace.as_str())
        });
        match pod {
            Some(p) => Ok(Response::new(GetPodResourcesResponse {
                pod_resources: Some(self.pod_resources(p)),
            })),
            None => Err(Status::unknown(format!(
                "pod {} in namespace {} not found",
                r.pod_name, r.pod_namespace
            ))),
        }
    }
}
