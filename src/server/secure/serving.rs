//! `serverTLSBootstrap`: the kubelet API's serving certificate from the cluster, as the
//! kubelet's serving certificate manager gets it — a CertificateSigningRequest with signer
//! `kubernetes.io/kubelet-serving` (CN `system:node:<name>`, O `system:nodes`, the node's name
//! and addresses as subject alternative names, usages digital signature, key encipherment and
//! server auth) sent with the node's own credentials, the certificate and key kept as
//! `<cert-dir>/kubelet-server-current.pem` and reused while valid. Until it is issued the
//! server has no certificate and handshakes fail, as with the kubelet.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::apiclient::bootstrap::{common_name, request_certificate, write_private};

/// The serving certificate's signer.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// The current serving certificate and key under the cert dir.
pub const CURRENT: &str = "kubelet-server-current.pem";

/// The certificate handshakes use, replaced when a new one is issued.
#[derive(Debug, Default)]
pub struct ServingCertSlot(RwLock<Option<Arc<CertifiedKey>>>);

impl ServingCertSlot {
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write() = Some(key);
    }

    pub fn is_set(&self) -> bool {
        self.0.read().is_some()
    }
}

impl rustls::server::ResolvesServerCert for ServingCertSlot {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().clone()
    }
}

/// A certified key from PEM holding a certificate chain and its key; `None` when it does not
/// parse or the leaf has expired.
pub fn certified_key(pem: &[u8]) -> Option<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .ok()?;
    let leaf = chain.first()?;
    {
        use x509_parser::prelude::FromDer;
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf).ok()?;
        let now = jiff::Timestamp::now().as_second();
        if cert.validity().not_after.timestamp() <= now {
            return None;
        }
    }
    let key = PrivateKeyDer::from_pem_slice(pem).ok()?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&key).ok()?;
    Some(Arc::new(CertifiedKey::new(chain, signing)))
}

/// A PEM key and serving CSR for `node` reachable at `ips`.
pub fn key_and_request(node: &str, ips: &[IpAddr]) -> Result<(String, String), String> {
    use rcgen::SanType;
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::OrganizationName, "system:nodes");
    dn.push(rcgen::DnType::CommonName, common_name(node));
    params.distinguished_name = dn;
    params.subject_alt_names.push(SanType::DnsName(
        node.try_into().map_err(|e: rcgen::Error| e.to_string())?,
    ));
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| e.to_string())?;
    Ok((key.serialize_pem(), csr))
}

/// The kept certificate, if it is still valid.
pub fn load_current(cert_dir: &Path) -> Option<Arc<CertifiedKey>> {
    certified_key(&std::fs::read(cert_dir.join(CURRENT)).ok()?)
}

/// Requests a serving certificate and puts it in `slot` (and `cert_dir`); logs and retries
/// every minute when the request fails.
pub async fn bootstrap(
    client: kube::Client,
    cert_dir: PathBuf,
    node: String,
    ips: Vec<IpAddr>,
    slot: Arc<ServingCertSlot>,
) {
    loop {
        match request_once(&client, &cert_dir, &node, &ips).await {
            Ok(key) => {
                slot.set(key);
                tracing::info!(file = %cert_dir.join(CURRENT).display(), "serving certificate issued");
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot get a serving certificate (serverTLSBootstrap); the kubelet API refuses TLS handshakes until it has one; retrying in 1m");
                tokio::time::sleep(Duration::from_secs(60)).await;
            }
        }
    }
}

async fn request_once(
    client: &kube::Client,
    cert_dir: &Path,
    node: &str,
    ips: &[IpAddr],
) -> Result<Arc<CertifiedKey>, String> {
    let (key, csr) = key_and_request(node, ips)?;
    let name = format!(
        "csr-serving-{node}-{}",
        jiff::Timestamp::now().as_millisecond()
    );
    let mut pem = request_certificate(
        client.clone(),
        &name,
        csr,
        SIGNER,
        &["digital signature", "key encipherment", "server auth"],
        Duration::from_secs(3600),
    )
    .await
    .map_err(|e| e.to_string())?;
    if !pem.ends_with(b"\n") {
        pem.push(b'\n');
    }
    pem.extend_from_slice(key.as_bytes());
    let certified = certified_key(&pem).ok_or("the issued certificate does not parse")?;
    std::fs::create_dir_all(cert_dir).map_err(|e| format!("{}: {e}", cert_dir.display()))?;
    let path = cert_dir.join(CURRENT);
    write_private(&path, &pem).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serving_requests_name_the_node_and_kept_certificates_load() {
        let (key, csr) = key_and_request("n1", &["10.0.0.5".parse().unwrap()]).unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        assert!(key.contains("PRIVATE KEY"));
        let dir = tempfile::tempdir().unwrap();
        assert!(load_current(dir.path()).is_none());
        let (cert_pem, key_pem) = super::super::tls::generate("n1", &[]).unwrap();
        std::fs::write(dir.path().join(CURRENT), format!("{cert_pem}{key_pem}")).unwrap();
        let k = load_current(dir.path()).expect("a valid kept certificate loads");
        assert_eq!(k.cert.len(), 2);
        let slot = ServingCertSlot::default();
        assert!(!slot.is_set());
        slot.set(k);
        assert!(slot.is_set());
    }
}
