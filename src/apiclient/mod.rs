//! The API-server client (`--kubeconfig`): a `kube::Client` built from the kubelet's
//! kubeconfig (server URL, CA, client certificate/key or bearer token). Everything that talks to
//! the API server (node status and Lease, the pod source, the status manager, events, Secrets,
//! ConfigMaps and tokens) takes this client, so the same binary works against a real
//! kube-apiserver and the project's test API server.

pub mod bootstrap;
pub mod ratelimit;
pub mod reachability;

use std::path::{Path, PathBuf};

/// Why the API-server client cannot be built: one line naming the file and the innermost
/// cause (kube's errors repeat the path at every level of their chain).
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("cannot read kubeconfig {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("invalid kubeconfig {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("cannot build an API client from kubeconfig {path}: {reason}")]
    Client { path: PathBuf, reason: String },
}

/// The innermost error of a chain.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut e = e;
    while let Some(s) = e.source() {
        e = s;
    }
    e.to_string()
}

/// Builds the client from the kubeconfig at `path` (its current context) with the kubelet's
/// default rate limit (`kubeAPIQPS` 50, `kubeAPIBurst` 100). Nothing is sent to the server: an
/// unreachable server is found, and retried, by the callers.
pub async fn connect(path: &Path) -> Result<kube::Client, ApiClientError> {
    connect_with(path, 50, 100).await
}

/// [`connect`] with the client-side rate limit `qps`/`burst` (`qps` 0: none).
pub async fn connect_with(
    path: &Path,
    qps: u32,
    burst: u32,
) -> Result<kube::Client, ApiClientError> {
    build(path, Some((qps, burst)), None).await
}

/// The heartbeat client for node status and the Lease, as the kubelet's: no client-side rate
/// limit (other traffic never delays a heartbeat) and every request bounded by `timeout`
/// (`nodeStatusUpdateFrequency`), so one hung connection cannot outlive the Lease.
pub async fn connect_heartbeat(
    path: &Path,
    timeout: std::time::Duration,
) -> Result<kube::Client, ApiClientError> {
    build(path, None, Some(timeout)).await
}

async fn build(
    path: &Path,
    limit: Option<(u32, u32)>,
    timeout: Option<std::time::Duration>,
) -> Result<kube::Client, ApiClientError> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|e| ApiClientError::Read {
            path: path.to_path_buf(),
            reason: root_cause(&e),
        })?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| ApiClientError::Invalid {
        path: path.to_path_buf(),
        reason: root_cause(&e),
    })?;
    let mut config = config;
    if let Some(t) = timeout {
        config.connect_timeout = Some(t);
        config.read_timeout = Some(t);
        config.write_timeout = Some(t);
    }
    let builder =
        kube::client::ClientBuilder::try_from(config).map_err(|e| ApiClientError::Client {
            path: path.to_path_buf(),
            reason: root_cause(&e),
        })?;
    Ok(match limit {
        Some((qps, burst)) => builder
            .with_layer(&ratelimit::RateLimitLayer::new(qps, burst))
            .build(),
        None => builder.build(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_or_malformed_kubeconfig_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.kubeconfig");
        let e = connect(&missing).await.err().unwrap().to_string();
        assert!(e.contains("nope.kubeconfig"), "{e}");
        let bad = dir.path().join("bad.kubeconfig");
        std::fs::write(&bad, "clusters: [this is not: a kubeconfig").unwrap();
        let e = connect(&bad).await.err().unwrap().to_string();
        assert!(e.starts_with("cannot read kubeconfig"), "{e}");
        assert!(e.contains("bad.kubeconfig"), "{e}");
    }
}
