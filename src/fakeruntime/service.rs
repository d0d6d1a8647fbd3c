//! The two CRI gRPC services of the fake runtime. Every RPC first passes the gate (call count,
//! down, latency, injected faults), then acts on the state under the mutex, as containerd 1.6
//! would answer.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use proto::cri;
use proto::cri::image_service_server::ImageService;
use proto::cri::runtime_service_server::RuntimeService;
use tonic::{Request, Response, Status};

use super::state::{
    container_name, hex_id, matches_labels, not_found, sandbox_name, sandbox_state, ContainerRec,
    SandboxRec, State,
};
use super::{
    CallInfo, Effect, Lifecycle, Op, Shared, DEFAULT_IMAGE_SIZE, IMAGE_FS_MOUNTPOINT, RUNTIME_NAME,
    RUNTIME_VERSION,
};

/// The tonic service implementation behind a [`FakeRuntime`](super::FakeRuntime) (both CRI
/// services).
pub struct FakeService {
    pub(super) shared: Arc<Shared>,
}

type RpcResult<T> = Result<Response<T>, Status>;

/// What a client sees when containerd's socket is there but nobody listens (as tonic words it).
const RUNTIME_DOWN_MESSAGE: &str = concat!(
    "connection error: desc = \"transport: Error while dialing: dial unix: connect: ",
    "connection refused\" (fake runtime is down)"
);

/// Counts one call waiting out a delay, for
/// [`FakeRuntime::delayed_calls`](super::FakeRuntime::delayed_calls).
struct Waiting<'a>(&'a Shared);

impl<'a> Waiting<'a> {
    fn new(shared: &'a Shared) -> Self {
        shared.delayed.fetch_add(1, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.delayed.fetch_sub(1, Ordering::SeqCst);
    }
}

impl FakeService {
    /// Counts the call, then applies down/latency/faults. `info` describes the call for
    /// matchers; it is built only when some rule needs it.
    async fn gate(&self, op: Op, info: impl FnOnce(&State) -> CallInfo) -> Result<(), Status> {
        self.shared.calls[op as usize].fetch_add(1, Ordering::Relaxed);
        let (delay, failure, mut release) = {
            let mut s = self.shared.state.lock();
            if s.down {
                return Err(Status::unavailable(RUNTIME_DOWN_MESSAGE));
            }
            let mut delay = s.latency.get(&op).copied().unwrap_or_default();
            let mut failure = None;
            if !s.faults.is_empty() {
                let call = info(&s);
                for rule in s.faults.iter_mut() {
                    let f = &mut rule.value;
                    if !f.applies(&call) {
                        continue;
                    }
                    match &f.effect {
                        Effect::Delay(d) => delay += *d,
                        Effect::Fail { code, message } => {
                            if failure.is_some() {
                                continue;
                            }
                            failure = Some(Status::new(*code, message.clone()));
                        }
                    }
                    if let Some(n) = f.remaining.as_mut() {
                        *n -= 1;
                    }
                }
                s.faults.retain(|r| r.value.remaining != Some(0));
            }
            (delay, failure, self.shared.release.subscribe())
        };
        if !delay.is_zero() {
            // Counted only after subscribing to releases, so a test that sees the count can
            // release the call; uncounted again even if the client gives up and drops it.
            let _waiting = Waiting::new(&self.shared);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = release.changed() => {}
            }
        }
        match failure {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    async fn unimplemented<T>(&self, op: Op) -> RpcResult<T> {
        self.gate(op, |_| CallInfo::new(op)).await?;
        Err(Status::unimplemented(format!(
            "fake runtime does not implement {op}"
        )))
    }

    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        let mut s = self.shared.state.lock();
        s.reap();
        s
    }
}

#[tonic::async_trait]
impl RuntimeService for FakeService {
    async fn version(&self, _r: Request<cri::VersionRequest>) -> RpcResult<cri::VersionResponse> {
        self.gate(Op::Version, |_| CallInfo::new(Op::Version))
            .await?;
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: RUNTIME_VERSION.into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        r: Request<cri::RunPodSandboxRequest>,
    ) -> RpcResult<cri::RunPodSandboxResponse> {
        let r = r.into_inner();
        let meta = r
            .config
            .as_ref()
            .and_then(|c| c.metadata.clone())
            .unwrap_or_default();
        self.gate(Op::RunPodSandbox, |_| {
            let mut info = CallInfo::new(Op::RunPodSandbox);
            info.pod_name = meta.name.clone();
            info.pod_namespace = meta.namespace.clone();
            info.pod_uid = meta.uid.clone();
            info
        })
        .await?;
        let Some(config) = r.config else {
            return Err(Status::invalid_argument("sandbox config must not be nil"));
        };
        let Some(meta) = config.metadata.clone() else {
            return Err(Status::invalid_argument(
                "sandbox config must include metadata",
            ));
        };
        if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
            return Err(Status::invalid_argument(
                "sandbox metadata must include name, namespace and uid",
            ));
        }
        let mut s = self.state();
        let name_key = sandbox_name(&meta);
        if let Some(holder) = s.names.get(&name_key) {
            return Err(Status::unknown(format!(
                "failed to reserve sandbox name {name_key:?}: \
                 name {name_key:?} is reserved for {holder:?}"
            )));
        }
        let namespace_options = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|sc| sc.namespace_options.clone());
        let host_network = namespace_options
            .as_ref()
            .is_some_and(|n| n.network == cri::NamespaceMode::Node as i32);
        let seq = s.next_seq();
        let id = hex_id(seq);
        let ip = if host_network {
            String::new()
        } else {
            s.next_pod_ip()
        };
        let created_at = s.now_ns();
        s.names.insert(name_key.clone(), id.clone());
        s.sandbox_ids.insert(id.clone(), seq);
        s.sandboxes.insert(
            seq,
            SandboxRec {
                id: id.clone(),
                metadata: meta,
                labels: config.labels,
                annotations: config.annotations,
                ready: true,
                created_at,
                ip,
                namespace_options,
                log_directory: config.log_directory,
                runtime_handler: r.runtime_handler,
                name_key,
            },
        );
        Ok(Response::new(cri::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        r: Request<cri::StopPodSandboxRequest>,
    ) -> RpcResult<cri::StopPodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        self.gate(Op::StopPodSandbox, |s| {
            s.info_for_sandbox(Op::StopPodSandbox, &id)
        })
        .await?;
        let mut s = self.state();
        let seq = State::resolve(&s.sandbox_ids, &id).ok_or_else(|| not_found("sandbox", &id))?;
        s.stop_sandbox(seq);
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        r: Request<cri::RemovePodSandboxRequest>,
    ) -> RpcResult<cri::RemovePodSandboxResponse> {
        let id = r.into_inner().pod_sandbox_id;
        self.gate(Op::RemovePodSandbox, |s| {
            s.info_for_sandbox(Op::RemovePodSandbox, &id)
        })
        .await?;
        let mut s = self.state();
        // Idempotent: removing an absent sandbox succeeds.
        let Some(seq) = State::resolve(&s.sandbox_ids, &id) else {
            return Ok(Response::new(cri::RemovePodSandboxResponse {}));
        };
        s.stop_sandbox(seq);
        let sb_id = s.sandboxes[&seq].id.clone();
        let members: Vec<u64> = s
            .containers
            .iter()
            .filter(|(_, c)| c.sandbox_id == sb_id)
            .map(|(k, _)| *k)
            .collect();
        for c in members {
            s.remove_container(c);
        }
        if let Some(sb) = s.sandboxes.remove(&seq) {
            s.sandbox_ids.remove(&sb.id);
            if s.names.get(&sb.name_key) == Some(&sb.id) {
                s.names.remove(&sb.name_key);
            }
        }
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        r: Request<cri::PodSandboxStatusRequest>,
    ) -> RpcResult<cri::PodSandboxStatusResponse> {
        let id = r.into_inner().pod_sandbox_id;
        self.gate(Op::PodSandboxStatus, |s| {
            s.info_for_sandbox(Op::PodSandboxStatus, &id)
        })
        .await?;
        let s = self.state();
        let sb = s.sandbox(&id).ok_or_else(|| not_found("sandbox", &id))?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(State::sandbox_status(sb)),
            ..Default::default()
        }))
    }

    async fn list_pod_sandbox(
        &self,
        r: Request<cri::ListPodSandboxRequest>,
    ) -> RpcResult<cri::ListPodSandboxResponse> {
        self.gate(Op::ListPodSandbox, |_| CallInfo::new(Op::ListPodSandbox))
            .await?;
        let filter = r.into_inner().filter.unwrap_or_default();
        let s = self.state();
        // containerd resolves a truncated ID first; an ID that resolves to nothing matches nothing.
        let want_id = if filter.id.is_empty() {
            None
        } else {
            Some(
                s.sandbox(&filter.id)
                    .map(|sb| sb.id.clone())
                    .unwrap_or(filter.id.clone()),
            )
        };
        let items = s
            .sandboxes
            .values()
            .filter(|sb| want_id.as_ref().is_none_or(|id| *id == sb.id))
            .filter(|sb| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|st| st.state == sandbox_state(sb.ready))
            })
            .filter(|sb| matches_labels(&sb.labels, &filter.label_selector))
            .map(State::pod_sandbox)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        r: Request<cri::CreateContainerRequest>,
    ) -> RpcResult<cri::CreateContainerResponse> {
        let r = r.into_inner();
        self.gate(Op::CreateContainer, |s| {
            let mut info = s.info_for_sandbox(Op::CreateContainer, &r.pod_sandbox_id);
            if let Some(c) = &r.config {
                info.container_name = c
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default();
                info.image = c
                    .image
                    .as_ref()
                    .map(|i| i.image.clone())
                    .unwrap_or_default();
            }
            info
        })
        .await?;
        let Some(config) = r.config else {
            return Err(Status::invalid_argument("container config must not be nil"));
        };
        let Some(meta) = config.metadata.clone() else {
            return Err(Status::invalid_argument(
                "container config must include metadata",
            ));
        };
        if meta.name.is_empty() {
            return Err(Status::invalid_argument(
                "container metadata must include a name",
            ));
        }
        let mut s = self.state();
        let sb = s
            .sandbox(&r.pod_sandbox_id)
            .ok_or_else(|| not_found("sandbox", &r.pod_sandbox_id))?
            .clone();
        if !sb.ready {
            return Err(Status::unknown(format!(
                "sandbox container {:?} is not running",
                sb.id
            )));
        }
        let image = config.image.clone().unwrap_or_default();
        let image_id = match s.find_image(&image.image) {
            Some(i) => i.id.clone(),
            None => {
                return Err(Status::not_found(format!(
                    "failed to resolve image {:?}: not found",
                    image.image
                )))
            }
        };
        let pod_meta = r
            .sandbox_config
            .as_ref()
            .and_then(|c| c.metadata.clone())
            .unwrap_or_else(|| sb.metadata.clone());
        let name_key = container_name(&meta, &pod_meta);
        if let Some(holder) = s.names.get(&name_key) {
            return Err(Status::unknown(format!(
                "failed to reserve container name {name_key:?}: \
                 name {name_key:?} is reserved for {holder:?}"
            )));
        }
        let log_path = if sb.log_directory.is_empty() || config.log_path.is_empty() {
            String::new()
        } else {
            Path::new(&sb.log_directory)
                .join(&config.log_path)
                .to_string_lossy()
                .into_owned()
        };
        let seq = s.next_seq();
        let id = hex_id(seq);
        let created_at = s.now_ns();
        s.names.insert(name_key.clone(), id.clone());
        s.container_ids.insert(id.clone(), seq);
        s.containers.insert(
            seq,
            ContainerRec {
                id: id.clone(),
                sandbox_id: sb.id.clone(),
                pod: sb.metadata.clone(),
                metadata: meta,
                image,
                image_id,
                labels: config.labels,
                annotations: config.annotations,
                mounts: config.mounts,
                log_path,
                state: cri::ContainerState::ContainerCreated,
                created_at,
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                reason: String::new(),
                exit_at: None,
                name_key,
            },
        );
        Ok(Response::new(cri::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        r: Request<cri::StartContainerRequest>,
    ) -> RpcResult<cri::StartContainerResponse> {
        let id = r.into_inner().container_id;
        self.gate(Op::StartContainer, |s| {
            s.info_for_container(Op::StartContainer, &id)
        })
        .await?;
        let mut s = self.state();
        let c = s
            .container(&id)
            .ok_or_else(|| not_found("container", &id))?;
        if c.state != cri::ContainerState::ContainerCreated {
            return Err(Status::unknown(format!(
                "container {:?} is in {} state",
                c.id,
                c.state.as_str_name()
            )));
        }
        if !s.sandbox(&c.sandbox_id).is_some_and(|sb| sb.ready) {
            return Err(Status::unknown(format!(
                "sandbox container {:?} is not running",
                c.sandbox_id
            )));
        }
        let lifecycle = if s.lifecycles.is_empty() {
            Lifecycle::Run
        } else {
            let info = s.info_for_container(Op::StartContainer, &id);
            s.lifecycles
                .iter()
                .find(|r| r.value.0.matches(&info))
                .map(|r| r.value.1.clone())
                .unwrap_or(Lifecycle::Run)
        };
        let now = s.now_ns();
        let full_id = {
            let Some(c) = s.container_mut(&id) else {
                return Err(not_found("container", &id));
            };
            c.state = cri::ContainerState::ContainerRunning;
            c.started_at = now;
            c.id.clone()
        };
        if let Lifecycle::Exit {
            code,
            after,
            reason,
        } = lifecycle
        {
            if after.is_zero() {
                s.exit(&full_id, code, reason);
            } else if let Some(c) = s.container_mut(&full_id) {
                c.exit_at = Some((Instant::now() + after, code, reason));
                s.pending_exits += 1;
            }
        }
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        r: Request<cri::StopContainerRequest>,
    ) -> RpcResult<cri::StopContainerResponse> {
        let id = r.into_inner().container_id;
        self.gate(Op::StopContainer, |s| {
            s.info_for_container(Op::StopContainer, &id)
        })
        .await?;
        let mut s = self.state();
        let full = s
            .container(&id)
            .ok_or_else(|| not_found("container", &id))?
            .id
            .clone();
        // Stopping a container that is not running is a no-op, as in containerd.
        s.stop_container(&full);
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        r: Request<cri::RemoveContainerRequest>,
    ) -> RpcResult<cri::RemoveContainerResponse> {
        let id = r.into_inner().container_id;
        self.gate(Op::RemoveContainer, |s| {
            s.info_for_container(Op::RemoveContainer, &id)
        })
        .await?;
        let mut s = self.state();
        if let Some(seq) = State::resolve(&s.container_ids, &id) {
            let full = s.containers[&seq].id.clone();
            s.stop_container(&full);
            s.remove_container(seq);
        }
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        r: Request<cri::ListContainersRequest>,
    ) -> RpcResult<cri::ListContainersResponse> {
        self.gate(Op::ListContainers, |_| CallInfo::new(Op::ListContainers))
            .await?;
        let filter = r.into_inner().filter.unwrap_or_default();
        let s = self.state();
        let want_id = (!filter.id.is_empty()).then(|| {
            s.container(&filter.id)
                .map(|c| c.id.clone())
                .unwrap_or(filter.id.clone())
        });
        let want_sb = (!filter.pod_sandbox_id.is_empty()).then(|| {
            s.sandbox(&filter.pod_sandbox_id)
                .map(|sb| sb.id.clone())
                .unwrap_or(filter.pod_sandbox_id.clone())
        });
        let containers = s
            .containers
            .values()
            .filter(|c| want_id.as_ref().is_none_or(|id| *id == c.id))
            .filter(|c| want_sb.as_ref().is_none_or(|id| *id == c.sandbox_id))
            .filter(|c| {
                filter
                    .state
                    .as_ref()
                    .is_none_or(|st| st.state == c.state as i32)
            })
            .filter(|c| matches_labels(&c.labels, &filter.label_selector))
            .map(State::list_container)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        r: Request<cri::ContainerStatusRequest>,
    ) -> RpcResult<cri::ContainerStatusResponse> {
        let id = r.into_inner().container_id;
        self.gate(Op::ContainerStatus, |s| {
            s.info_for_container(Op::ContainerStatus, &id)
        })
        .await?;
        let s = self.state();
        let c = s
            .container(&id)
            .ok_or_else(|| not_found("container", &id))?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(s.container_status(c)),
            ..Default::default()
        }))
    }

    async fn update_container_resources(
        &self,
        _r: Request<cri::UpdateContainerResourcesRequest>,
    ) -> RpcResult<cri::UpdateContainerResourcesResponse> {
        self.unimplemented(Op::UpdateContainerResources).await
    }

    async fn reopen_container_log(
        &self,
        _r: Request<cri::ReopenContainerLogRequest>,
    ) -> RpcResult<cri::ReopenContainerLogResponse> {
        self.unimplemented(Op::ReopenContainerLog).await
    }

    async fn exec_sync(
        &self,
        r: Request<cri::ExecSyncRequest>,
    ) -> RpcResult<cri::ExecSyncResponse> {
        let r = r.into_inner();
        let id = r.container_id.clone();
        self.gate(Op::ExecSync, |s| s.info_for_container(Op::ExecSync, &id))
            .await?;
        let (handler, info) = {
            let s = self.state();
            let c = s
                .container(&id)
                .ok_or_else(|| not_found("container", &id))?;
            if c.state != cri::ContainerState::ContainerRunning {
                return Err(Status::unknown(format!(
                    "container is in {} state",
                    c.state.as_str_name()
                )));
            }
            (s.exec.clone(), s.info_for_container(Op::ExecSync, &id))
        };
        let resp = match handler {
            Some(h) => h(&info, &r.cmd),
            None => cri::ExecSyncResponse::default(),
        };
        Ok(Response::new(resp))
    }

    async fn exec(&self, _r: Request<cri::ExecRequest>) -> RpcResult<cri::ExecResponse> {
        self.unimplemented(Op::Exec).await
    }

    async fn attach(&self, _r: Request<cri::AttachRequest>) -> RpcResult<cri::AttachResponse> {
        self.unimplemented(Op::Attach).await
    }

    async fn port_forward(
        &self,
        _r: Request<cri::PortForwardRequest>,
    ) -> RpcResult<cri::PortForwardResponse> {
        self.unimplemented(Op::PortForward).await
    }

    async fn container_stats(
        &self,
        _r: Request<cri::ContainerStatsRequest>,
    ) -> RpcResult<cri::ContainerStatsResponse> {
        self.unimplemented(Op::ContainerStats).await
    }

    async fn list_container_stats(
        &self,
        _r: Request<cri::ListContainerStatsRequest>,
    ) -> RpcResult<cri::ListContainerStatsResponse> {
        self.unimplemented(Op::ListContainerStats).await
    }

    async fn pod_sandbox_stats(
        &self,
        _r: Request<cri::PodSandboxStatsRequest>,
    ) -> RpcResult<cri::PodSandboxStatsResponse> {
        self.unimplemented(Op::PodSandboxStats).await
    }

    async fn list_pod_sandbox_stats(
        &self,
        _r: Request<cri::ListPodSandboxStatsRequest>,
    ) -> RpcResult<cri::ListPodSandboxStatsResponse> {
        self.unimplemented(Op::ListPodSandboxStats).await
    }

    async fn update_runtime_config(
        &self,
        _r: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> RpcResult<cri::UpdateRuntimeConfigResponse> {
        self.unimplemented(Op::UpdateRuntimeConfig).await
    }

    async fn status(&self, _r: Request<cri::StatusRequest>) -> RpcResult<cri::StatusResponse> {
        self.gate(Op::Status, |_| CallInfo::new(Op::Status)).await?;
        let network_ready = self.shared.state.lock().network_ready;
        let cond = |t: &str, ok: bool, reason: &str| cri::RuntimeCondition {
            r#type: t.into(),
            status: ok,
            reason: if ok { String::new() } else { reason.into() },
            message: if ok {
                String::new()
            } else {
                "fake runtime: network not ready".into()
            },
        };
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    cond("RuntimeReady", true, ""),
                    cond("NetworkReady", network_ready, "NetworkPluginNotReady"),
                ],
            }),
            ..Default::default()
        }))
    }

    async fn checkpoint_container(
        &self,
        _r: Request<cri::CheckpointContainerRequest>,
    ) -> RpcResult<cri::CheckpointContainerResponse> {
        self.unimplemented(Op::CheckpointContainer).await
    }

    type GetContainerEventsStream =
        tokio_stream::Empty<Result<cri::ContainerEventResponse, Status>>;

    async fn get_container_events(
        &self,
        _r: Request<cri::GetEventsRequest>,
    ) -> RpcResult<Self::GetContainerEventsStream> {
        // As containerd 1.6: no event stream, the kubelet relists.
        self.unimplemented(Op::GetContainerEvents).await
    }

    async fn list_metric_descriptors(
        &self,
        _r: Request<cri::ListMetricDescriptorsRequest>,
    ) -> RpcResult<cri::ListMetricDescriptorsResponse> {
        self.unimplemented(Op::ListMetricDescriptors).await
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _r: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> RpcResult<cri::ListPodSandboxMetricsResponse> {
        self.unimplemented(Op::ListPodSandboxMetrics).await
    }

    async fn runtime_config(
        &self,
        _r: Request<cri::RuntimeConfigRequest>,
    ) -> RpcResult<cri::RuntimeConfigResponse> {
        self.unimplemented(Op::RuntimeConfig).await
    }
}

fn image_call(op: Op, spec: Option<&cri::ImageSpec>) -> CallInfo {
    let mut info = CallInfo::new(op);
    info.image = spec.map(|i| i.image.clone()).unwrap_or_default();
    info
}

#[tonic::async_trait]
impl ImageService for FakeService {
    async fn list_images(
        &self,
        r: Request<cri::ListImagesRequest>,
    ) -> RpcResult<cri::ListImagesResponse> {
        self.gate(Op::ListImages, |_| CallInfo::new(Op::ListImages))
            .await?;
        let want = r
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|i| i.image)
            .filter(|i| !i.is_empty());
        let s = self.state();
        let images = match want {
            Some(reference) => s
                .find_image(&reference)
                .map(|i| s.image_of(i))
                .into_iter()
                .collect(),
            None => s.images.values().map(|i| s.image_of(i)).collect(),
        };
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> RpcResult<cri::ImageStatusResponse> {
        let spec = r.into_inner().image;
        self.gate(Op::ImageStatus, |_| {
            image_call(Op::ImageStatus, spec.as_ref())
        })
        .await?;
        let reference = spec.map(|i| i.image).unwrap_or_default();
        let s = self.state();
        // A missing image is an empty answer, not an error.
        Ok(Response::new(cri::ImageStatusResponse {
            image: s.find_image(&reference).map(|i| s.image_of(i)),
            ..Default::default()
        }))
    }

    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> RpcResult<cri::PullImageResponse> {
        let req = r.into_inner();
        let spec = req.image;
        self.gate(Op::PullImage, |_| image_call(Op::PullImage, spec.as_ref()))
            .await?;
        let reference = spec.map(|i| i.image).unwrap_or_default();
        if reference.is_empty() {
            return Err(Status::invalid_argument("image spec must include an image"));
        }
        {
            let mut s = self.state();
            let given = req
                .auth
                .map(|a| (a.username, a.password))
                .unwrap_or_default();
            s.pull_auths.push(given.clone());
            let wanted = s
                .registry_auth
                .iter()
                .find(|(prefix, _, _)| reference.starts_with(prefix.as_str()))
                .map(|(_, u, p)| (u.clone(), p.clone()));
            if wanted.is_some_and(|w| w != given) {
                return Err(Status::unknown(format!(
                    "failed to pull and unpack image \"{reference}\": failed to resolve reference \"{reference}\": pull access denied, repository does not exist or may require authorization: authorization failed: 401 Unauthorized"
                )));
            }
        }
        let id = self.state().add_image(&reference, DEFAULT_IMAGE_SIZE);
        Ok(Response::new(cri::PullImageResponse { image_ref: id }))
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> RpcResult<cri::RemoveImageResponse> {
        let spec = r.into_inner().image;
        self.gate(Op::RemoveImage, |_| {
            image_call(Op::RemoveImage, spec.as_ref())
        })
        .await?;
        let reference = spec.map(|i| i.image).unwrap_or_default();
        let mut s = self.state();
        let found = s.find_image(&reference).map(|i| i.id.clone());
        if let Some(id) = found {
            s.images.retain(|_, i| i.id != id);
        }
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> RpcResult<cri::ImageFsInfoResponse> {
        self.gate(Op::ImageFsInfo, |_| CallInfo::new(Op::ImageFsInfo))
            .await?;
        let mut s = self.state();
        let used: u64 = s.images.values().map(|i| i.size).sum();
        let inodes = s.images.len() as u64;
        let timestamp = s.now_ns();
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: IMAGE_FS_MOUNTPOINT.into(),
                }),
                used_bytes: Some(cri::UInt64Value { value: used }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}
