//! CRI v1: generated types and clients, plus endpoint parsing and Unix-socket connection, and
//! [`lean`] list responses for frequent relists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

pub use k8s_cri::v1::*;

pub mod lean;

/// Client for `runtime.v1.RuntimeService`.
pub type RuntimeClient = runtime_service_client::RuntimeServiceClient<Channel>;
/// Client for `runtime.v1.ImageService`.
pub type ImageClient = image_service_client::ImageServiceClient<Channel>;

/// Failure to reach a CRI endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("container runtime endpoint {endpoint:?} is not a unix:// socket path")]
    BadEndpoint { endpoint: String },
    #[error("cannot connect to container runtime at {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
}

/// Turns a kubelet-style `--container-runtime-endpoint` into a socket path.
/// Accepts `unix:///path`, `unix:/path` and a bare absolute path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ConnectError> {
    let path = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .unwrap_or(endpoint);
    if path.starts_with('/') {
        Ok(PathBuf::from(path))
    } else {
        Err(ConnectError::BadEndpoint {
            endpoint: endpoint.to_string(),
        })
    }
}

/// A lazily connecting channel to the runtime socket: the first RPC connects, and a runtime that
/// restarts is reconnected to on the next RPC, so callers never hold a dead connection.
pub fn lazy_channel(path: &Path) -> Channel {
    let path = path.to_path_buf();
    // The URI is a placeholder: the connector ignores it and dials the socket.
    Endpoint::from_static("http://[::1]:0")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
}

/// Connects eagerly, so that a missing runtime is reported at once with the socket it tried.
pub async fn connect(path: &Path) -> Result<Channel, ConnectError> {
    let p = path.to_path_buf();
    Endpoint::from_static("http://[::1]:0")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let p = p.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .map_err(|source| ConnectError::Connect {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_forms() {
        assert_eq!(
            socket_path("unix:///run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(
            socket_path("unix:/run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert_eq!(
            socket_path("/run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        let err = socket_path("tcp://1.2.3.4:5").unwrap_err().to_string();
        assert!(err.contains("tcp://1.2.3.4:5"), "{err}");
    }
}
