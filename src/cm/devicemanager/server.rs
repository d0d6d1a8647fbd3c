//! The `Registration` service on `<root-dir>/device-plugins/kubelet.sock` and, per registered
//! plugin, the task that follows its `ListAndWatch` stream and its socket.
//!
//! A registration is refused with the kubelet's messages: a version other than `v1beta1`
//! (`requested API version "v1" is not supported by kubelet. Supported versions are
//! ["v1beta1"]`), a resource name that is not an extended resource name (`the ResourceName
//! "gpu" is invalid`), an endpoint that is not a socket file name in the directory, or a plugin
//! that cannot be dialed or does not answer `GetDevicePluginOptions`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proto::deviceplugin::{
    device_plugin_client::DevicePluginClient,
    registration_server::{Registration, RegistrationServer},
    Empty, RegisterRequest, HEALTHY, KUBELET_SOCKET, VERSION,
};
use tokio::net::UnixListener;
use tonic::{Request, Response, Status};

use super::{is_extended_resource_name, DeviceInfo, DeviceManager};

/// How often a plugin's socket is checked for existence.
const SOCKET_CHECK: Duration = Duration::from_secs(1);

/// Failure to serve a socket.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Removes the sockets in `dir` (what a previous kubelet and its plugins left): plugins watch
/// the kubelet's socket for this and register again.
pub fn remove_sockets(dir: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_socket()) {
            if let Err(err) = std::fs::remove_file(e.path()) {
                tracing::warn!(path = %e.path().display(), error = %err, "cannot remove stale socket");
            }
        }
    }
}

/// Binds `path` (replacing a stale socket there) with mode 0750 on its directory.
pub fn listen(path: &Path) -> Result<UnixListener, ServeError> {
    let err = |source| ServeError::Listen {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    UnixListener::bind(path).map_err(err)
}

/// Serves `Registration` on `<dir>/kubelet.sock` until the task is aborted.
pub fn serve(dm: DeviceManager) -> Result<tokio::task::JoinHandle<()>, ServeError> {
    let path = dm.dir().join(KUBELET_SOCKET);
    let listener = listen(&path)?;
    tracing::info!(path = %path.display(), "device plugin registration server listening");
    Ok(tokio::spawn(async move {
        let served = tonic::transport::Server::builder()
            .add_service(RegistrationServer::new(RegistrationService { dm }))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
        if let Err(e) = served {
            tracing::error!(path = %path.display(), error = %e, "device plugin registration server stopped");
        }
    }))
}

struct RegistrationService {
    dm: DeviceManager,
}

/// The kubelet's checks of a registration request, its messages.
pub fn validate(r: &RegisterRequest) -> Result<(), String> {
    if r.version != VERSION {
        return Err(format!(
            "requested API version {:?} is not supported by kubelet. Supported versions are [{VERSION:?}]",
            r.version
        ));
    }
    if !is_extended_resource_name(&r.resource_name) {
        return Err(format!("the ResourceName {:?} is invalid", r.resource_name));
    }
    let e = &r.endpoint;
    if e.is_empty() || e.contains('/') || e == "." || e == ".." || e == KUBELET_SOCKET {
        return Err(format!(
            "invalid endpoint {e:?}: expected the name of the plugin's socket in the device plugin directory"
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn register(&self, req: Request<RegisterRequest>) -> Result<Response<Empty>, Status> {
        let r = req.into_inner();
        tracing::info!(resource = %r.resource_name, endpoint = %r.endpoint, "got registration request from device plugin");
        self.dm.registered(&r.resource_name);
        if let Err(msg) = validate(&r) {
            tracing::info!(resource = %r.resource_name, error = %msg, "bad registration request from device plugin");
            return Err(Status::unknown(msg));
        }
        let socket = self.dm.dir().join(&r.endpoint);
        let channel = proto::cri::connect(&socket)
            .await
            .map_err(|e| Status::unknown(format!("failed to dial device plugin: {e}")))?;
        let mut client = DevicePluginClient::new(channel);
        let options = client
            .get_device_plugin_options(Empty {})
            .await
            .map_err(|s| {
                Status::unknown(format!(
                    "failed to get device plugin options: {}",
                    s.message()
                ))
            })?
            .into_inner();
        let generation = self.dm.next_generation();
        let dm = self.dm.clone();
        let resource = r.resource_name.clone();
        // The task starts once the endpoint is in place, so that its first device list (or
        // its failure) is not taken for an older endpoint's.
        let (start, started) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let (resource, client) = (resource.clone(), client.clone());
            async move {
                if started.await.is_ok() {
                    run_endpoint(dm, resource, generation, client, socket).await;
                }
            }
        });
        self.dm
            .set_endpoint(&resource, client, options, generation, task.abort_handle());
        let _ = start.send(());
        tracing::info!(resource = %resource, "registered device plugin");
        Ok(Response::new(Empty {}))
    }
}

/// Follows a plugin's `ListAndWatch` until the stream ends or the socket disappears.
async fn run_endpoint(
    dm: DeviceManager,
    resource: String,
    generation: u64,
    mut client: DevicePluginClient<tonic::transport::Channel>,
    socket: PathBuf,
) {
    let mut stream = match client.list_and_watch(Empty {}).await {
        Ok(s) => s.into_inner(),
        Err(e) => {
            tracing::warn!(resource = %resource, error = %e, "ListAndWatch of device plugin failed");
            dm.endpoint_stopped(&resource, generation);
            return;
        }
    };
    let mut tick = tokio::time::interval(SOCKET_CHECK);
    loop {
        tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(resp)) => {
                    let devices: BTreeMap<String, DeviceInfo> = resp
                        .devices
                        .into_iter()
                        .map(|d| {
                            let numa_nodes = d
                                .topology
                                .map(|t| t.nodes.into_iter().map(|n| n.id).collect())
                                .unwrap_or_default();
                            (d.id, DeviceInfo { healthy: d.health == HEALTHY, numa_nodes })
                        })
                        .collect();
                    tracing::debug!(resource = %resource, devices = devices.len(), "device plugin sent its devices");
                    dm.update_devices(&resource, generation, devices);
                }
                Ok(None) => {
                    tracing::info!(resource = %resource, "ListAndWatch of device plugin ended");
                    break;
                }
                Err(e) => {
                    tracing::info!(resource = %resource, error = %e, "ListAndWatch of device plugin failed");
                    break;
                }
            },
            _ = tick.tick() => {
                if !socket.exists() {
                    tracing::info!(resource = %resource, socket = %socket.display(), "device plugin socket disappeared");
                    break;
                }
            }
        }
    }
    dm.endpoint_stopped(&resource, generation);
}
