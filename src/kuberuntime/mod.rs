//! The CRI-facing runtime manager, after the kubelet's `pkg/kubelet/kuberuntime`.
//!
//! [`RuntimeService`] wraps the CRI v1 runtime and image clients: every call has a deadline, is
//! counted in `kubelet_runtime_operations_*`, and fails with a [`RuntimeError`] that names the
//! operation and the object. On top of it: the labels and annotations (`labels`), the sandbox
//! and container configs (`sandbox`, `container`), pod DNS (`dns`), and the decision of what a
//! pod needs (`actions`).

pub mod actions;
pub mod container;
pub mod dns;
pub mod labels;
pub mod sandbox;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use proto::cri::{self, ImageClient, RuntimeClient};
use tonic::transport::Channel;
use tonic::Code;

use crate::metrics::Metrics;

/// A CRI call that failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{op} {object}: {message} (code {code:?})")]
    Rpc {
        op: &'static str,
        object: String,
        code: Code,
        message: String,
    },
    #[error("{op} {object}: no answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        object: String,
        timeout: Duration,
    },
}

impl RuntimeError {
    /// The object does not exist (any more).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            RuntimeError::Rpc {
                code: Code::NotFound,
                ..
            }
        )
    }

    /// The runtime could not be reached at all.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RuntimeError::Rpc {
                code: Code::Unavailable | Code::Unknown,
                ..
            } | RuntimeError::Timeout { .. }
        ) && !self.message().contains("not found")
    }

    pub fn message(&self) -> String {
        match self {
            RuntimeError::Rpc { message, .. } => message.clone(),
            RuntimeError::Timeout { timeout, .. } => format!("timeout after {timeout:?}"),
        }
    }
}

/// Everything the runtime knows about one pod: its sandboxes and containers, newest first.
#[derive(Debug, Clone, Default)]
pub struct PodRuntimeStatus {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub sandboxes: Vec<cri::PodSandboxStatus>,
    pub containers: Vec<cri::ContainerStatus>,
}

impl PodRuntimeStatus {
    /// The newest sandbox, if any.
    pub fn latest_sandbox(&self) -> Option<&cri::PodSandboxStatus> {
        self.sandboxes.first()
    }

    /// The pod IPs of the newest ready sandbox.
    pub fn ips(&self) -> Vec<String> {
        let Some(sb) = self.latest_sandbox() else {
            return Vec::new();
        };
        let Some(net) = sb.network.as_ref() else {
            return Vec::new();
        };
        let mut ips = Vec::new();
        if !net.ip.is_empty() {
            ips.push(net.ip.clone());
        }
        ips.extend(
            net.additional_ips
                .iter()
                .map(|i| i.ip.clone())
                .filter(|i| !i.is_empty()),
        );
        ips
    }

    /// The newest status of the container named `name`.
    pub fn container(&self, name: &str) -> Option<&cri::ContainerStatus> {
        self.containers
            .iter()
            .find(|c| c.metadata.as_ref().map(|m| m.name.as_str()) == Some(name))
    }

    /// All statuses of the container named `name`, newest first.
    pub fn container_history<'a>(
        &'a self,
        name: &'a str,
    ) -> impl Iterator<Item = &'a cri::ContainerStatus> {
        self.containers
            .iter()
            .filter(move |c| c.metadata.as_ref().map(|m| m.name.as_str()) == Some(name))
    }
}

/// The CRI runtime and image services behind one socket.
#[derive(Clone)]
pub struct RuntimeService {
    rt: RuntimeClient,
    img: ImageClient,
    /// The list RPCs again, with responses that keep only IDs and states ([`Self::list_lean`]).
    lean: cri::lean::LeanClient,
    timeout: Duration,
    metrics: Metrics,
    node: String,
    /// Signalled after every container start (the log rotation manager starts watching the
    /// new container's log at once, not at its next periodic pass).
    started: Arc<tokio::sync::Notify>,
}

impl RuntimeService {
    /// `timeout` bounds every call but image pulls (the kubelet's `--runtime-request-timeout`).
    /// `node` is the owner label value this agent puts on and filters its sandboxes by.
    pub fn new(channel: Channel, timeout: Duration, metrics: Metrics, node: &str) -> Self {
        Self {
            rt: RuntimeClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            lean: cri::lean::LeanClient::new(channel.clone()).max_decoding_message_size(16 << 20),
            img: ImageClient::new(channel).max_decoding_message_size(16 << 20),
            timeout,
            metrics,
            node: node.to_string(),
            started: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// Completes after the next successful container start (or at once when one happened since
    /// the last call).
    pub async fn container_started(&self) {
        self.started.notified().await
    }

    /// Image calls go to `channel` (`--image-service-endpoint` when it differs from the
    /// runtime's).
    pub fn with_image_channel(mut self, channel: Channel) -> Self {
        self.img = ImageClient::new(channel).max_decoding_message_size(16 << 20);
        self
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Tells the runtime the node's pod CIDR (`podCIDR`), as the kubelet does at start.
    pub async fn update_runtime_config(&self, pod_cidr: &str) -> Result<(), RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "update_runtime_config",
            pod_cidr,
            Some(self.timeout),
            c.update_runtime_config(cri::UpdateRuntimeConfigRequest {
                runtime_config: Some(cri::RuntimeConfig {
                    network_config: Some(cri::NetworkConfig {
                        pod_cidr: pod_cidr.to_string(),
                    }),
                }),
            }),
        )
        .await
        .map(|_| ())
    }

    /// The registry this service records its calls in.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn call<T, F>(
        &self,
        op: &'static str,
        object: &str,
        timeout: Option<Duration>,
        fut: F,
    ) -> Result<T, RuntimeError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let start = Instant::now();
        let res = match timeout {
            Some(t) => match tokio::time::timeout(t, fut).await {
                Ok(r) => r,
                Err(_) => {
                    self.metrics.runtime_op(op, start.elapsed(), false);
                    return Err(RuntimeError::Timeout {
                        op,
                        object: object.to_string(),
                        timeout: t,
                    });
                }
            },
            None => fut.await,
        };
        self.metrics.runtime_op(op, start.elapsed(), res.is_ok());
        res.map(tonic::Response::into_inner)
            .map_err(|s| RuntimeError::Rpc {
                op,
                object: object.to_string(),
                code: s.code(),
                message: s.message().to_string(),
            })
    }

    pub async fn version(&self) -> Result<cri::VersionResponse, RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "version",
            "",
            Some(self.timeout),
            c.version(cri::VersionRequest {
                version: "v1".into(),
            }),
        )
        .await
    }

    /// Runtime conditions (RuntimeReady, NetworkReady).
    pub async fn status(&self) -> Result<cri::StatusResponse, RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "status",
            "",
            Some(self.timeout),
            c.status(cri::StatusRequest { verbose: false }),
        )
        .await
    }

    pub async fn run_pod_sandbox(
        &self,
        config: cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        let mut c = self.rt.clone();
        let handler = String::new();
        let start = Instant::now();
        // Sandbox creation includes CNI setup; allow it the full request timeout.
        let r = self
            .call(
                "run_podsandbox",
                &name,
                Some(self.timeout),
                c.run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: handler.clone(),
                }),
            )
            .await;
        self.metrics
            .run_podsandbox(&handler, start.elapsed(), r.is_ok());
        r.map(|r| r.pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "stop_podsandbox",
            id,
            Some(self.timeout),
            c.stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await
        .map(|_| ())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "remove_podsandbox",
            id,
            Some(self.timeout),
            c.remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await
        .map(|_| ())
    }

    pub async fn pod_sandbox_status(
        &self,
        id: &str,
    ) -> Result<cri::PodSandboxStatus, RuntimeError> {
        let mut c = self.rt.clone();
        let r = self
            .call(
                "podsandbox_status",
                id,
                Some(self.timeout),
                c.pod_sandbox_status(cri::PodSandboxStatusRequest {
                    pod_sandbox_id: id.into(),
                    verbose: false,
                }),
            )
            .await?;
        r.status.ok_or_else(|| RuntimeError::Rpc {
            op: "podsandbox_status",
            object: id.into(),
            code: Code::NotFound,
            message: "runtime returned no status".into(),
        })
    }

    /// The label selector for this agent's objects (its node label), optionally of one pod.
    fn selector(&self, pod_uid: Option<&str>) -> HashMap<String, String> {
        let mut selector = HashMap::from([(labels::NODE_LABEL.to_string(), self.node.clone())]);
        if let Some(uid) = pod_uid {
            selector.insert(labels::POD_UID_LABEL.into(), uid.into());
        }
        selector
    }

    async fn list_sandboxes_filtered(
        &self,
        object: &str,
        filter: cri::PodSandboxFilter,
    ) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "list_podsandbox",
            object,
            Some(self.timeout),
            c.list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(filter),
            }),
        )
        .await
        .map(|r| r.items)
    }

    /// This agent's sandboxes (those carrying its node label), optionally of one pod.
    pub async fn list_pod_sandboxes(
        &self,
        pod_uid: Option<&str>,
    ) -> Result<Vec<cri::PodSandbox>, RuntimeError> {
        let filter = cri::PodSandboxFilter {
            label_selector: self.selector(pod_uid),
            ..Default::default()
        };
        self.list_sandboxes_filtered("", filter).await
    }

    /// This agent's sandbox with ID `id`, if it is still there (ListPodSandbox filtered by ID).
    pub async fn pod_sandbox_by_id(
        &self,
        id: &str,
    ) -> Result<Option<cri::PodSandbox>, RuntimeError> {
        let filter = cri::PodSandboxFilter {
            id: id.into(),
            label_selector: self.selector(None),
            ..Default::default()
        };
        let found = self.list_sandboxes_filtered(id, filter).await?;
        Ok(found.into_iter().find(|s| s.id == id))
    }

    /// This agent's sandboxes and containers as [`cri::lean`] objects: IDs, states, creation
    /// times, a sandbox's pod UID (`metadata.uid`) and a container's sandbox ID, without the
    /// labels and annotations whose decoding dominates a full list. The same two RPCs, selector,
    /// deadline, operation names and metrics as [`Self::list_pod_sandboxes`] and
    /// [`Self::list_containers`], sent at once.
    pub async fn list_lean(
        &self,
    ) -> Result<(Vec<cri::lean::PodSandbox>, Vec<cri::lean::Container>), RuntimeError> {
        let selector = self.selector(None);
        let (mut sb, mut ct) = (self.lean.clone(), self.lean.clone());
        let (sandboxes, containers) = tokio::try_join!(
            self.call(
                "list_podsandbox",
                "",
                Some(self.timeout),
                sb.list_pod_sandbox(cri::ListPodSandboxRequest {
                    filter: Some(cri::PodSandboxFilter {
                        label_selector: selector.clone(),
                        ..Default::default()
                    }),
                }),
            ),
            self.call(
                "list_containers",
                "",
                Some(self.timeout),
                ct.list_containers(cri::ListContainersRequest {
                    filter: Some(cri::ContainerFilter {
                        label_selector: selector.clone(),
                        ..Default::default()
                    }),
                }),
            ),
        )?;
        Ok((sandboxes.items, containers.containers))
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String, RuntimeError> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let mut c = self.rt.clone();
        self.call(
            "create_container",
            &name,
            Some(self.timeout),
            c.create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            }),
        )
        .await
        .map(|r| r.container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "start_container",
            id,
            Some(self.timeout),
            c.start_container(cri::StartContainerRequest {
                container_id: id.into(),
            }),
        )
        .await?;
        self.started.notify_one();
        Ok(())
    }

    /// Stops a container, giving it `grace` seconds after SIGTERM before SIGKILL.
    pub async fn stop_container(&self, id: &str, grace: i64) -> Result<(), RuntimeError> {
        let mut c = self.rt.clone();
        let deadline = self.timeout + Duration::from_secs(grace.max(0) as u64);
        self.call(
            "stop_container",
            id,
            Some(deadline),
            c.stop_container(cri::StopContainerRequest {
                container_id: id.into(),
                timeout: grace,
            }),
        )
        .await
        .map(|_| ())
    }

    pub async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "remove_container",
            id,
            Some(self.timeout),
            c.remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            }),
        )
        .await
        .map(|_| ())
    }

    async fn list_containers_filtered(
        &self,
        object: &str,
        filter: cri::ContainerFilter,
    ) -> Result<Vec<cri::Container>, RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "list_containers",
            object,
            Some(self.timeout),
            c.list_containers(cri::ListContainersRequest {
                filter: Some(filter),
            }),
        )
        .await
        .map(|r| r.containers)
    }

    /// This agent's containers, optionally of one pod.
    pub async fn list_containers(
        &self,
        pod_uid: Option<&str>,
    ) -> Result<Vec<cri::Container>, RuntimeError> {
        let filter = cri::ContainerFilter {
            label_selector: self.selector(pod_uid),
            ..Default::default()
        };
        self.list_containers_filtered("", filter).await
    }

    /// This agent's running containers (log rotation reads only these, as the kubelet does).
    pub async fn list_running_containers(&self) -> Result<Vec<cri::Container>, RuntimeError> {
        let filter = cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            label_selector: self.selector(None),
            ..Default::default()
        };
        self.list_containers_filtered("", filter).await
    }

    /// Asks the runtime to reopen a container's log file after it was renamed (log rotation).
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "reopen_container_log",
            id,
            Some(self.timeout),
            c.reopen_container_log(cri::ReopenContainerLogRequest {
                container_id: id.into(),
            }),
        )
        .await
        .map(|_| ())
    }

    /// This agent's container with ID `id`, if it is still there (ListContainers filtered by ID).
    pub async fn container_by_id(&self, id: &str) -> Result<Option<cri::Container>, RuntimeError> {
        let filter = cri::ContainerFilter {
            id: id.into(),
            label_selector: self.selector(None),
            ..Default::default()
        };
        let found = self.list_containers_filtered(id, filter).await?;
        Ok(found.into_iter().find(|c| c.id == id))
    }

    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, RuntimeError> {
        let mut c = self.rt.clone();
        let r = self
            .call(
                "container_status",
                id,
                Some(self.timeout),
                c.container_status(cri::ContainerStatusRequest {
                    container_id: id.into(),
                    verbose: false,
                }),
            )
            .await?;
        r.status.ok_or_else(|| RuntimeError::Rpc {
            op: "container_status",
            object: id.into(),
            code: Code::NotFound,
            message: "runtime returned no status".into(),
        })
    }

    /// Runs a command in a container and waits for it (probes, exec hooks).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<cri::ExecSyncResponse, RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "exec_sync",
            id,
            Some(timeout + self.timeout),
            c.exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd,
                timeout: timeout.as_secs().max(1) as i64,
            }),
        )
        .await
    }

    /// Runs a command in a container with no deadline (the kubelet's `/run`, which passes a
    /// zero timeout: the command takes what it takes).
    pub async fn run_in_container(
        &self,
        id: &str,
        cmd: Vec<String>,
    ) -> Result<cri::ExecSyncResponse, RuntimeError> {
        let mut c = self.rt.clone();
        self.call(
            "exec_sync",
            id,
            None,
            c.exec_sync(cri::ExecSyncRequest {
                container_id: id.into(),
                cmd,
                timeout: 0,
            }),
        )
        .await
    }

    /// Prepares a streaming exec; returns the single-use URL on the runtime's streaming server
    /// that the client's upgrade request is proxied to.
    pub async fn exec(&self, req: cri::ExecRequest) -> Result<String, RuntimeError> {
        let mut c = self.rt.clone();
        let id = req.container_id.clone();
        self.call("exec", &id, Some(self.timeout), c.exec(req))
            .await
            .map(|r| r.url)
    }

    /// Prepares a streaming attach to a container's main process; returns the runtime's URL.
    pub async fn attach(&self, req: cri::AttachRequest) -> Result<String, RuntimeError> {
        let mut c = self.rt.clone();
        let id = req.container_id.clone();
        self.call("attach", &id, Some(self.timeout), c.attach(req))
            .await
            .map(|r| r.url)
    }

    /// Prepares a port forward into a sandbox's network namespace; returns the runtime's URL.
    pub async fn port_forward(&self, req: cri::PortForwardRequest) -> Result<String, RuntimeError> {
        let mut c = self.rt.clone();
        let id = req.pod_sandbox_id.clone();
        self.call("port_forward", &id, Some(self.timeout), c.port_forward(req))
            .await
            .map(|r| r.url)
    }

    /// The full status of one pod: every sandbox and container the runtime has for its UID,
    /// newest first. Objects that vanish between the list and the status call are skipped.
    pub async fn get_pod_status(
        &self,
        uid: &str,
        name: &str,
        namespace: &str,
    ) -> Result<PodRuntimeStatus, RuntimeError> {
        let (sandboxes, containers) = tokio::try_join!(
            self.list_pod_sandboxes(Some(uid)),
            self.list_containers(Some(uid))
        )?;
        let sb_futs = sandboxes.iter().map(|s| self.pod_sandbox_status(&s.id));
        let c_futs = containers.iter().map(|c| self.container_status(&c.id));
        let (sb, cs) = tokio::join!(join_all(sb_futs), join_all(c_futs));
        let mut status = PodRuntimeStatus {
            uid: uid.into(),
            name: name.into(),
            namespace: namespace.into(),
            sandboxes: keep_found(sb)?,
            containers: keep_found(cs)?,
        };
        status
            .sandboxes
            .sort_by_key(|s| std::cmp::Reverse(s.created_at));
        status
            .containers
            .sort_by_key(|c| std::cmp::Reverse(c.created_at));
        Ok(status)
    }

    // ---- images ----

    /// The image's status, `None` when the runtime does not have it (CRI reports a missing image
    /// as an empty response, not an error).
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>, RuntimeError> {
        let mut c = self.img.clone();
        let r = self
            .call(
                "image_status",
                image,
                Some(self.timeout),
                c.image_status(cri::ImageStatusRequest {
                    image: Some(cri::ImageSpec {
                        image: image.into(),
                        ..Default::default()
                    }),
                    verbose: false,
                }),
            )
            .await?;
        Ok(r.image.filter(|i| !i.id.is_empty()))
    }

    /// Pulls an image; returns the runtime's image reference. No deadline: pulls take what they take.
    pub async fn pull_image(
        &self,
        image: &str,
        sandbox: Option<cri::PodSandboxConfig>,
        auth: Option<cri::AuthConfig>,
    ) -> Result<String, RuntimeError> {
        let mut c = self.img.clone();
        self.call(
            "pull_image",
            image,
            None,
            c.pull_image(cri::PullImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: sandbox,
            }),
        )
        .await
        .map(|r| r.image_ref)
    }

    pub async fn list_images(&self) -> Result<Vec<cri::Image>, RuntimeError> {
        let mut c = self.img.clone();
        self.call(
            "list_images",
            "",
            Some(self.timeout),
            c.list_images(cri::ListImagesRequest { filter: None }),
        )
        .await
        .map(|r| r.images)
    }

    pub async fn remove_image(&self, image: &str) -> Result<(), RuntimeError> {
        let mut c = self.img.clone();
        self.call(
            "remove_image",
            image,
            Some(self.timeout),
            c.remove_image(cri::RemoveImageRequest {
                image: Some(cri::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
            }),
        )
        .await
        .map(|_| ())
    }

    pub async fn image_fs_info(&self) -> Result<cri::ImageFsInfoResponse, RuntimeError> {
        let mut c = self.img.clone();
        self.call(
            "image_fs_info",
            "",
            Some(self.timeout),
            c.image_fs_info(cri::ImageFsInfoRequest {}),
        )
        .await
    }
}

/// Drops NotFound results (the object went away between list and status), keeps other errors.
fn keep_found<T>(results: Vec<Result<T, RuntimeError>>) -> Result<Vec<T>, RuntimeError> {
    let mut out = Vec::with_capacity(results.len());
    for r in results {
        match r {
            Ok(v) => out.push(v),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}
