//! Device plugins on the real containerd: a test plugin (a tonic server in this file) registers
//! `example.com/widget` with 4 devices and then marks one unhealthy; allocatable follows (read
//! through the PodResources API, which is what a standalone kubelet exposes); a pod asking for 2
//! gets two distinct healthy devices through the envs, mounts and device nodes that Allocate
//! returned (seen inside the container) and its annotation (on the CRI container); a pod asking for 5 is refused with the kubelet's reason; the
//! allocations survive a SIGKILL and restart of the agent; PodResources lists them for the
//! right pod and container; a plugin that goes away leaves nothing allocatable. In API-server
//! mode the Node object's capacity and allocatable follow the plugin.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use proto::deviceplugin::{
    device_plugin_server::{DevicePlugin, DevicePluginServer},
    registration_client::RegistrationClient,
    AllocateRequest, AllocateResponse, ContainerAllocateResponse,
    ContainerPreferredAllocationResponse, Device, DevicePluginOptions, DeviceSpec, Empty,
    ListAndWatchResponse, Mount, PreStartContainerRequest, PreStartContainerResponse,
    PreferredAllocationRequest, PreferredAllocationResponse, RegisterRequest,
};
use proto::podresources::{
    pod_resources_lister_client::PodResourcesListerClient, AllocatableResourcesRequest,
    GetPodResourcesRequest, ListPodResourcesRequest,
};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

const RESOURCE: &str = "example.com/widget";
const START: Duration = Duration::from_secs(60);

/// The test plugin: 4 widgets, health set by the test; Allocate exposes the chosen IDs in
/// `WIDGETS` and mounts a host directory holding one file per chosen device at `/widgets`.
struct Widgets {
    devices: watch::Sender<Vec<Device>>,
    host_dir: PathBuf,
    allocated: Mutex<Vec<Vec<String>>>,
}

type Stream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<ListAndWatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl DevicePlugin for Widgets {
    async fn get_device_plugin_options(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<DevicePluginOptions>, Status> {
        Ok(Response::new(DevicePluginOptions {
            pre_start_required: true,
            get_preferred_allocation_available: true,
        }))
    }

    type ListAndWatchStream = Stream;

    async fn list_and_watch(&self, _: Request<Empty>) -> Result<Response<Stream>, Status> {
        use tokio_stream::StreamExt;
        let s = tokio_stream::wrappers::WatchStream::new(self.devices.subscribe())
            .map(|devices| Ok(ListAndWatchResponse { devices }));
        Ok(Response::new(Box::pin(s)))
    }

    async fn get_preferred_allocation(
        &self,
        req: Request<PreferredAllocationRequest>,
    ) -> Result<Response<PreferredAllocationResponse>, Status> {
        // Prefers the highest IDs, so that the test sees the preference honoured.
        let container_responses = req
            .into_inner()
            .container_requests
            .into_iter()
            .map(|r| {
                let mut ids = r.available_device_i_ds;
                ids.sort();
                let keep = ids.len().saturating_sub(r.allocation_size as usize);
                ContainerPreferredAllocationResponse {
                    device_i_ds: ids.split_off(keep),
                }
            })
            .collect();
        Ok(Response::new(PreferredAllocationResponse {
            container_responses,
        }))
    }

    async fn allocate(
        &self,
        req: Request<AllocateRequest>,
    ) -> Result<Response<AllocateResponse>, Status> {
        let mut container_responses = Vec::new();
        for c in req.into_inner().container_requests {
            let dir = self.host_dir.join(c.devices_ids.join("-"));
            std::fs::create_dir_all(&dir).map_err(|e| Status::internal(e.to_string()))?;
            for id in &c.devices_ids {
                std::fs::write(dir.join(id), id).map_err(|e| Status::internal(e.to_string()))?;
            }
            self.allocated.lock().unwrap().push(c.devices_ids.clone());
            container_responses.push(ContainerAllocateResponse {
                envs: [("WIDGETS".to_string(), c.devices_ids.join(","))].into(),
                mounts: vec![Mount {
                    container_path: "/widgets".into(),
                    host_path: dir.display().to_string(),
                    read_only: true,
                }],
                // A device node per widget (the host's /dev/null stands in for the hardware).
                devices: c
                    .devices_ids
                    .iter()
                    .map(|id| DeviceSpec {
                        container_path: format!("/dev/widget-{id}"),
                        host_path: "/dev/null".into(),
                        permissions: "rw".into(),
                    })
                    .collect(),
                annotations: [("example.com/widgets".to_string(), c.devices_ids.join(","))].into(),
                ..Default::default()
            });
        }
        Ok(Response::new(AllocateResponse {
            container_responses,
        }))
    }

    async fn pre_start_container(
        &self,
        _: Request<PreStartContainerRequest>,
    ) -> Result<Response<PreStartContainerResponse>, Status> {
        Ok(Response::new(PreStartContainerResponse {}))
    }
}

fn widgets(unhealthy: &[&str]) -> Vec<Device> {
    ["w0", "w1", "w2", "w3"]
        .iter()
        .map(|id| Device {
            id: id.to_string(),
            health: if unhealthy.contains(id) {
                "Unhealthy"
            } else {
                "Healthy"
            }
            .into(),
            topology: None,
        })
        .collect()
}

/// Serves the plugin on `<dir>/<endpoint>` and registers it with the agent.
async fn serve_and_register(
    plugin: Arc<Widgets>,
    dir: &Path,
    endpoint: &str,
) -> tokio::task::JoinHandle<()> {
    let path = dir.join(endpoint);
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(DevicePluginServer::from_arc(plugin))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    });
    let channel = proto::cri::connect(&dir.join("kubelet.sock"))
        .await
        .unwrap();
    RegistrationClient::new(channel)
        .register(RegisterRequest {
            version: "v1beta1".into(),
            endpoint: endpoint.into(),
            resource_name: RESOURCE.into(),
            options: None,
        })
        .await
        .expect("registration");
    task
}

async fn pod_resources(root: &Path) -> PodResourcesListerClient<tonic::transport::Channel> {
    let ch = proto::cri::connect(&root.join("pod-resources/kubelet.sock"))
        .await
        .unwrap();
    PodResourcesListerClient::new(ch)
}

/// Healthy widget IDs as GetAllocatableResources reports them.
async fn allocatable(root: &Path) -> Vec<String> {
    let resp = pod_resources(root)
        .await
        .get_allocatable_resources(AllocatableResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<String> = resp
        .devices
        .into_iter()
        .filter(|d| d.resource_name == RESOURCE)
        .flat_map(|d| d.device_ids)
        .collect();
    ids.sort();
    ids
}

/// (pod name → container → widget IDs) from List.
async fn listed(root: &Path) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let resp = pod_resources(root)
        .await
        .list(ListPodResourcesRequest {})
        .await
        .unwrap()
        .into_inner();
    resp.pod_resources
        .into_iter()
        .map(|p| {
            let containers = p
                .containers
                .into_iter()
                .map(|c| {
                    let mut ids: Vec<String> = c
                        .devices
                        .into_iter()
                        .filter(|d| d.resource_name == RESOURCE)
                        .flat_map(|d| d.device_ids)
                        .collect();
                    ids.sort();
                    (c.name, ids)
                })
                .collect();
            (format!("{}/{}", p.namespace, p.name), containers)
        })
        .collect()
}

fn widget_pod(name: &str, n: u32) -> String {
    busybox_pod(
        name,
        "echo \"widgets=$WIDGETS files=$(ls /widgets | tr '\\n' ' ')nodes=$(ls /dev | grep widget | tr '\\n' ' ')\"; exec sleep 3600",
        &format!("    resources:\n      limits:\n        {RESOURCE}: \"{n}\"\n"),
    )
}

fn log_of(pod: &serde_json::Value) -> String {
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let name = pod["metadata"]["name"].as_str().unwrap();
    std::fs::read_to_string(format!("/var/log/pods/default_{name}_{uid}/main/0.log"))
        .unwrap_or_default()
}

#[test]
fn widgets_are_advertised_allocated_refused_and_survive_a_restart() {
    if !require_runtime() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut agent = Agent::start("devices");
    let dir = agent.root.join("device-plugins");
    let host = tempfile::tempdir().unwrap();
    let plugin = Arc::new(Widgets {
        devices: watch::channel(widgets(&[])).0,
        host_dir: host.path().to_path_buf(),
        allocated: Mutex::new(Vec::new()),
    });

    // A bad registration is refused with the kubelet's message.
    let err = rt.block_on(async {
        let ch = proto::cri::connect(&dir.join("kubelet.sock"))
            .await
            .unwrap();
        RegistrationClient::new(ch)
            .register(RegisterRequest {
                version: "v1alpha1".into(),
                endpoint: "x.sock".into(),
                resource_name: RESOURCE.into(),
                options: None,
            })
            .await
            .unwrap_err()
    });
    assert_eq!(
        err.message(),
        r#"requested API version "v1alpha1" is not supported by kubelet. Supported versions are ["v1beta1"]"#
    );

    let server = rt.block_on(serve_and_register(plugin.clone(), &dir, "widgets.sock"));
    agent.wait("4 allocatable widgets", START, || {
        (rt.block_on(allocatable(&agent.root)) == ["w0", "w1", "w2", "w3"]).then_some(())
    });
    plugin.devices.send_replace(widgets(&["w1"]));
    agent.wait("w1 no longer allocatable", START, || {
        (rt.block_on(allocatable(&agent.root)) == ["w0", "w2", "w3"]).then_some(())
    });

    // Two healthy, distinct devices, the plugin's preference (the highest IDs), seen inside.
    agent.write_manifest("two.yaml", &widget_pod("two", 2));
    let two = agent.wait_running("two", START);
    let line = agent.wait("the container's widgets line", START, || {
        let l = log_of(&two);
        l.contains("widgets=").then_some(l)
    });
    assert!(
        line.contains("widgets=w2,w3 files=w2 w3 nodes=widget-w2 widget-w3 "),
        "{line}"
    );
    // The plugin's annotation reached the runtime's container.
    let uid = two["metadata"]["uid"].as_str().unwrap();
    let main = cri_containers(uid)
        .into_iter()
        .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == "main"))
        .expect("main container");
    assert_eq!(main.annotations["example.com/widgets"], "w2,w3");
    assert_eq!(
        *plugin.allocated.lock().unwrap(),
        [vec!["w2".to_string(), "w3".to_string()]]
    );

    // The kubelet's device plugin families (the refused registration counts too, as there).
    let (code, metrics) = http_get(agent.read_only_port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "kubelet_device_plugin_registration_total{resource_name=\"example.com/widget\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("kubelet_device_plugin_alloc_duration_seconds_count{resource_name=\"example.com/widget\"} 1"),
        "{metrics}"
    );

    let two_name = format!("default/{}", agent.pod_name("two"));
    let list = rt.block_on(listed(&agent.root));
    assert_eq!(list[&two_name]["main"], ["w2", "w3"], "{list:?}");

    // Five cannot be met: refused with the kubelet's reason and message.
    agent.write_manifest("five.yaml", &widget_pod("five", 5));
    let five = agent.wait("pod five refused", START, || {
        let p = agent.pod("five")?;
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert_eq!(
        five["status"]["reason"], "UnexpectedAdmissionError",
        "{five}"
    );
    assert_eq!(
        five["status"]["message"],
        "Pod was rejected: Allocate failed due to requested number of devices unavailable for example.com/widget. Requested: 5, Available: 1, which is unexpected"
    );

    // SIGKILL and restart: the allocation comes back from the checkpoint; the plugin (whose
    // socket the new agent removed) registers again.
    agent.kill();
    server.abort();
    let checkpoint = std::fs::read_to_string(dir.join("kubelet_internal_checkpoint")).unwrap();
    assert!(
        checkpoint.contains("\"w2\"") && checkpoint.contains("\"w3\""),
        "{checkpoint}"
    );
    agent.spawn();
    agent.wait("pod two listed again with its widgets", START, || {
        let list = rt.block_on(listed(&agent.root));
        (list.get(&two_name)?.get("main")? == &["w2", "w3"]).then_some(())
    });
    let _server = rt.block_on(serve_and_register(plugin.clone(), &dir, "widgets-2.sock"));
    agent.wait("3 allocatable widgets again", START, || {
        (rt.block_on(allocatable(&agent.root)) == ["w0", "w2", "w3"]).then_some(())
    });
    // Only w0 is free: two more are refused, and the running pod kept its devices.
    agent.write_manifest("again.yaml", &widget_pod("again", 2));
    let again = agent.wait("pod again refused", START, || {
        let p = agent.pod("again")?;
        (p["status"]["phase"] == "Failed").then_some(p)
    });
    assert!(
        again["status"]["message"]
            .as_str()
            .unwrap()
            .contains("Requested: 2, Available: 1"),
        "{again}"
    );
    let got = rt.block_on(async {
        pod_resources(&agent.root)
            .await
            .get(GetPodResourcesRequest {
                pod_name: agent.pod_name("two"),
                pod_namespace: "default".into(),
            })
            .await
            .unwrap()
            .into_inner()
    });
    let c = &got.pod_resources.unwrap().containers[0];
    assert_eq!(c.name, "main");
    let mut ids: Vec<&str> = c
        .devices
        .iter()
        .flat_map(|d| d.device_ids.iter().map(String::as_str))
        .collect();
    ids.sort();
    assert_eq!(ids, ["w2", "w3"]);
    assert_eq!(
        plugin.allocated.lock().unwrap().len(),
        1,
        "Allocate not asked again after the restart"
    );

    // The plugin goes away: its devices are unhealthy at once.
    _server.abort();
    let _ = std::fs::remove_file(dir.join("widgets-2.sock"));
    agent.wait("no allocatable widgets", START, || {
        rt.block_on(allocatable(&agent.root))
            .is_empty()
            .then_some(())
    });
    for f in ["two.yaml", "five.yaml", "again.yaml"] {
        agent.remove_manifest(f);
    }
}

#[test]
fn the_node_object_carries_widget_capacity_and_allocatable() {
    if !require_runtime() {
        return;
    }
    let cluster = common::apiserver::Cluster::start();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         nodeStatusUpdateFrequency: 1s\nnodeStatusReportFrequency: 1m\n",
    )
    .unwrap();
    let config_flag = format!("--config={}", config.path().display());
    let agent = cluster.agent("devnode", &[&config_flag]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = agent.root.join("device-plugins");
    let host = tempfile::tempdir().unwrap();
    let plugin = Arc::new(Widgets {
        devices: watch::channel(widgets(&[])).0,
        host_dir: host.path().to_path_buf(),
        allocated: Mutex::new(Vec::new()),
    });
    let server = rt.block_on(serve_and_register(plugin.clone(), &dir, "widgets.sock"));
    let counts = || {
        let n = cluster.get_json(&["node", &agent.node])?;
        let get = |field: &str| n["status"][field][RESOURCE].as_str().map(str::to_string);
        Some((get("capacity")?, get("allocatable")?))
    };
    let want = |c: &str, a: &str| Some((c.to_string(), a.to_string()));
    cluster.wait("4 widgets in the Node", START, || {
        (counts() == want("4", "4")).then_some(())
    });
    plugin.devices.send_replace(widgets(&["w1"]));
    cluster.wait("3 allocatable widgets in the Node", START, || {
        (counts() == want("4", "3")).then_some(())
    });
    // The plugin goes away: capacity stays for the grace period, nothing is allocatable.
    server.abort();
    let _ = std::fs::remove_file(dir.join("widgets.sock"));
    cluster.wait("no allocatable widgets in the Node", START, || {
        (counts() == want("4", "0")).then_some(())
    });
}
