//! TLS bootstrap (`--bootstrap-kubeconfig`, `--cert-dir`), as the kubelet's
//! `bootstrap.LoadClientCert`: when the `--kubeconfig` file does not exist, the node makes an
//! ECDSA P-256 key, asks for a client certificate with a CertificateSigningRequest (signer
//! `kubernetes.io/kube-apiserver-client-kubelet`, subject CN `system:node:<name>`, O
//! `system:nodes`, usages digital signature and client auth) using the bootstrap credentials,
//! waits for it to be approved and signed, writes certificate and key to
//! `<cert-dir>/kubelet-client-<time>.pem` with the `kubelet-client-current.pem` link to it, and
//! writes the kubeconfig pointing at that link with the bootstrap kubeconfig's cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// The link to the current client certificate and key under the cert dir.
pub const CURRENT: &str = "kubelet-client-current.pem";
/// The key kept while a request is pending (reused when the agent restarts meanwhile).
pub const PENDING_KEY: &str = "kubelet-client.key.tmp";
/// How long the agent waits for the certificate (the kubelet's hour).
pub const WAIT: Duration = Duration::from_secs(3600);

/// Why bootstrap failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{0}")]
    Client(#[from] super::ApiClientError),
    #[error("bootstrap kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error("--cert-dir {path}: {reason}")]
    CertDir { path: PathBuf, reason: String },
    #[error("cannot create the node's key or certificate request: {0}")]
    Key(String),
    #[error("certificate signing request {name}: {reason}")]
    Request { name: String, reason: String },
}

/// The subject's common name for node `node`.
pub fn common_name(node: &str) -> String {
    format!("system:node:{node}")
}

/// A PEM key and CSR for `node` (the key reused when given).
pub fn key_and_request(node: &str, key_pem: Option<&str>) -> Result<(String, String), String> {
    let key = match key_pem {
        Some(p) => rcgen::KeyPair::from_pem(p).map_err(|e| e.to_string())?,
        None => rcgen::KeyPair::generate().map_err(|e| e.to_string())?,
    };
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    dn.push(rcgen::DnType::CommonName, common_name(node));
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| e.to_string())?;
    Ok((key.serialize_pem(), csr))
}

/// The CSR's name: a digest of the key and subject, so that a restarted agent finds its own
/// pending request (the kubelet's `digestedName`).
pub fn request_name(key_pem: &str, node: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key_pem.hash(&mut h);
    common_name(node).hash(&mut h);
    SIGNER.hash(&mut h);
    format!("node-csr-{:016x}", h.finish())
}

/// The kubeconfig the agent writes: the bootstrap kubeconfig's cluster, the new certificate.
pub fn kubeconfig_json(cluster: &serde_json::Value, cert: &Path) -> serde_json::Value {
    let cert = cert.display().to_string();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "default-cluster", "cluster": cluster}],
        "contexts": [{"name": "default-context", "context": {
            "cluster": "default-cluster", "namespace": "default", "user": "default-auth"}}],
        "current-context": "default-context",
        "users": [{"name": "default-auth", "user": {
            "client-certificate": cert, "client-key": cert}}],
    })
}

pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// The cluster of the bootstrap kubeconfig's current context, as kubeconfig JSON.
fn bootstrap_cluster(path: &Path) -> Result<serde_json::Value, BootstrapError> {
    let err = |reason: String| BootstrapError::Kubeconfig {
        path: path.to_path_buf(),
        reason,
    };
    let kc = kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
    let context = kc
        .current_context
        .as_ref()
        .and_then(|c| kc.contexts.iter().find(|n| &n.name == c))
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| err("no current context".into()))?;
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| err(format!("no cluster {:?}", context.cluster)))?;
    let mut v = serde_json::json!({ "server": cluster.server });
    if let Some(data) = &cluster.certificate_authority_data {
        v["certificate-authority-data"] = data.clone().into();
    }
    if let Some(file) = &cluster.certificate_authority {
        // Relative to the bootstrap kubeconfig.
        let f = path.parent().unwrap_or(Path::new(".")).join(file);
        v["certificate-authority"] = f.display().to_string().into();
    }
    if cluster.insecure_skip_tls_verify == Some(true) {
        v["insecure-skip-tls-verify"] = true.into();
    }
    Ok(v)
}

/// Creates the CertificateSigningRequest `name` for `csr` (PEM) with `signer` and `usages`
/// (an existing one of that name is reused: a restarted agent finds its own) and waits up to
/// `wait` for its certificate, retrying while the API server is unreachable. Denied or failed
/// requests end with the condition's reason and message.
pub async fn request_certificate(
    client: kube::Client,
    name: &str,
    csr: String,
    signer: &str,
    usages: &[&str],
    wait: Duration,
) -> Result<Vec<u8>, BootstrapError> {
    let csrs: Api<CertificateSigningRequest> = Api::all(client);
    let req_err = |reason: String| BootstrapError::Request {
        name: name.to_string(),
        reason,
    };
    let object = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr.into_bytes()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let deadline = tokio::time::Instant::now() + wait;
    let mut failures = 0u32;
    let mut created = false;
    loop {
        if tokio::time::Instant::now() > deadline {
            return Err(req_err("timed out waiting for the certificate".into()));
        }
        if !created {
            match csrs.create(&PostParams::default(), &object).await {
                Ok(_) => {
                    tracing::info!(csr = %name, signer, "certificate signing request created");
                    created = true;
                }
                Err(kube::Error::Api(s)) if s.reason == "AlreadyExists" => created = true,
                Err(kube::Error::Api(s)) => return Err(req_err(s.message)),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "cannot reach the API server to request a certificate; retrying");
                    tokio::time::sleep(super::reachability::backoff(
                        failures,
                        Duration::from_secs(7),
                    ))
                    .await;
                    continue;
                }
            }
        }
        match csrs.get_opt(name).await {
            Ok(Some(c)) => {
                let status = c.status.unwrap_or_default();
                if let Some(d) =
                    status.conditions.iter().flatten().find(|c| {
                        (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True"
                    })
                {
                    return Err(req_err(format!(
                        "is {}, reason: {}, message: {}",
                        d.type_.to_lowercase(),
                        d.reason.clone().unwrap_or_default(),
                        d.message.clone().unwrap_or_default()
                    )));
                }
                if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
                    return Ok(cert.0);
                }
            }
            Ok(None) => created = false,
            Err(e) => tracing::debug!(error = %e, "cannot read the certificate signing request"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Bootstraps when `kubeconfig` does not exist; returns at once when it does.
pub async fn ensure(
    kubeconfig: &Path,
    bootstrap: &Path,
    cert_dir: &Path,
    node: &str,
) -> Result<(), BootstrapError> {
    if kubeconfig.exists() {
        return Ok(());
    }
    let dir_err = |e: std::io::Error| BootstrapError::CertDir {
        path: cert_dir.to_path_buf(),
        reason: e.to_string(),
    };
    tracing::info!(kubeconfig = %kubeconfig.display(), bootstrap = %bootstrap.display(), "the kubeconfig does not exist: requesting a client certificate with the bootstrap kubeconfig");
    let cluster = bootstrap_cluster(bootstrap)?;
    std::fs::create_dir_all(cert_dir).map_err(dir_err)?;
    let pending = cert_dir.join(PENDING_KEY);
    let old_key = std::fs::read_to_string(&pending).ok();
    let (key, csr) = key_and_request(node, old_key.as_deref()).map_err(BootstrapError::Key)?;
    write_private(&pending, key.as_bytes()).map_err(dir_err)?;

    let client = super::connect(bootstrap).await?;
    let name = request_name(&key, node);
    let cert = request_certificate(
        client,
        &name,
        csr,
        SIGNER,
        &["digital signature", "client auth"],
        WAIT,
    )
    .await?;

    let stamp = k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%d-%H-%M-%S");
    let file = cert_dir.join(format!("kubelet-client-{stamp}.pem"));
    let mut pem = cert;
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(key.as_bytes());
    write_private(&file, &pem).map_err(dir_err)?;
    let current = cert_dir.join(CURRENT);
    let tmp_link = cert_dir.join(format!("{CURRENT}.tmp"));
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&file, &tmp_link).map_err(dir_err)?;
    std::fs::rename(&tmp_link, &current).map_err(dir_err)?;
    let _ = std::fs::remove_file(&pending);
    let kc = kubeconfig_json(&cluster, &current);
    if let Some(parent) = kubeconfig.parent() {
        std::fs::create_dir_all(parent).map_err(|e| BootstrapError::Kubeconfig {
            path: kubeconfig.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    write_private(kubeconfig, kc.to_string().as_bytes()).map_err(|e| {
        BootstrapError::Kubeconfig {
            path: kubeconfig.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    tracing::info!(certificate = %file.display(), kubeconfig = %kubeconfig.display(), "client certificate issued; kubeconfig written");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_names_the_node_and_is_stable_per_key() {
        let (key, csr) = key_and_request("n1", None).unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        let (key2, _) = key_and_request("n1", Some(&key)).unwrap();
        assert_eq!(key, key2, "a pending key is reused");
        assert_eq!(request_name(&key, "n1"), request_name(&key2, "n1"));
        assert_ne!(request_name(&key, "n1"), request_name(&key, "n2"));
        assert!(request_name(&key, "n1").starts_with("node-csr-"));
        let kc = kubeconfig_json(
            &serde_json::json!({"server": "https://x"}),
            Path::new("/c/kubelet-client-current.pem"),
        );
        assert_eq!(
            kc["users"][0]["user"]["client-key"],
            "/c/kubelet-client-current.pem"
        );
    }
}
