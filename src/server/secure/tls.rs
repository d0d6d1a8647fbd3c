//! The kubelet API's TLS: the serving certificate (`tlsCertFile`/`tlsPrivateKeyFile`, or a
//! self-signed pair kept as `kubelet.crt`/`kubelet.key` under `--cert-dir` and generated at the
//! first start, as the kubelet does) and the rustls server configuration: TLS 1.2 and 1.3 with
//! rustls' modern suites only, HTTP/1.1, and — when `authentication.x509.clientCAFile` is set —
//! a client certificate requested but not required, its chain checked by the authenticator
//! ([`super::authn`]) so that a bad certificate is a 401 and not a failed handshake.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use crate::config::TlsMinVersion;

/// The self-signed serving certificate's file names under `--cert-dir`, as the kubelet's.
pub const SELF_SIGNED_CERT: &str = "kubelet.crt";
pub const SELF_SIGNED_KEY: &str = "kubelet.key";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path} holds no usable PEM {expected}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
        reason: String,
    },
    #[error("cannot write the self-signed serving certificate to {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot generate the self-signed serving certificate: {0}")]
    Generate(String),
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

/// A certificate chain and its key.
pub struct ServingCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            path: path.into(),
            expected: "CERTIFICATE",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            path: path.into(),
            expected: "CERTIFICATE",
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = fs::read(path).map_err(|source| TlsError::Read {
        what: "the TLS private key",
        path: path.into(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        what: "the TLS private key",
        path: path.into(),
        expected: "PRIVATE KEY",
        reason: e.to_string(),
    })
}

/// Reads `tlsCertFile`/`tlsPrivateKeyFile`.
pub fn load(cert: &Path, key: &Path) -> Result<ServingCert, TlsError> {
    Ok(ServingCert {
        chain: read_certs("the TLS certificate", cert)?,
        key: read_key(key)?,
    })
}

/// The self-signed pair under `cert_dir`, generated when either file is missing: a CA
/// (`<node>-ca@<unix time>`) and a serving certificate (`<node>@<unix time>`) for the node name
/// and `ips`, valid a year, both in `kubelet.crt` (serving first), the key in `kubelet.key`
/// (mode 0600).
pub fn self_signed(
    cert_dir: &Path,
    node: &str,
    ips: &[std::net::IpAddr],
) -> Result<ServingCert, TlsError> {
    let cert_path = cert_dir.join(SELF_SIGNED_CERT);
    let key_path = cert_dir.join(SELF_SIGNED_KEY);
    if cert_path.exists() && key_path.exists() {
        return load(&cert_path, &key_path);
    }
    let (cert_pem, key_pem) = generate(node, ips).map_err(TlsError::Generate)?;
    fs::create_dir_all(cert_dir).map_err(|source| TlsError::Write {
        path: cert_dir.into(),
        source,
    })?;
    write_file(&key_path, key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, cert_pem.as_bytes(), 0o644)?;
    tracing::info!(cert = %cert_path.display(), "generated a self-signed serving certificate");
    load(&cert_path, &key_path)
}

/// Writes `data` to a temporary file with `mode` and renames it over `path`.
fn write_file(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|source| TlsError::Write {
        path: path.into(),
        source,
    })
}

/// PEM of the serving certificate followed by its CA, and the serving key.
pub fn generate(node: &str, ips: &[std::net::IpAddr]) -> Result<(String, String), String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyUsagePurpose, SanType};
    let now = jiff::Timestamp::now();
    let secs = now.as_second();
    let not_before = time_of(secs);
    let not_after = time_of(secs + 365 * 24 * 3600);
    let e = |e: rcgen::Error| e.to_string();

    let ca_key = rcgen::KeyPair::generate().map_err(e)?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{node}-ca@{secs}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).map_err(e)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let key = rcgen::KeyPair::generate().map_err(e)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{node}@{secs}"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    match node.parse::<std::net::IpAddr>() {
        Ok(ip) => params.subject_alt_names.push(SanType::IpAddress(ip)),
        Err(_) => params.subject_alt_names.push(SanType::DnsName(
            node.try_into().map_err(|e: rcgen::Error| e.to_string())?,
        )),
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.not_before = not_before;
    params.not_after = not_after;
    let cert = params.signed_by(&key, &issuer).map_err(e)?;
    Ok((
        format!("{}{}", cert.pem(), ca_cert.pem()),
        key.serialize_pem(),
    ))
}

fn time_of(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The client CA bundle (`authentication.x509.clientCAFile`) as a verifier of client chains.
pub fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs("the client CA file", path)? {
        roots.add(c).map_err(|e| TlsError::Pem {
            what: "the client CA file",
            path: path.into(),
            expected: "CA CERTIFICATE",
            reason: e.to_string(),
        })?;
    }
    WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| TlsError::Config(format!("client CA file {}: {e}", path.display())))
}

/// Asks for a client certificate without requiring one, and leaves the chain to the
/// authenticator (the handshake still proves the client holds the key).
#[derive(Debug)]
struct RequestClientCert(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Where the serving certificate comes from.
pub enum CertSource {
    /// Fixed for the process's life.
    Static(ServingCert),
    /// Looked up per handshake (the certificate `serverTLSBootstrap` obtains): no certificate
    /// yet fails the handshake, as the kubelet's does.
    Dynamic(Arc<dyn rustls::server::ResolvesServerCert>),
}

/// The server configuration: `min` and newer, HTTP/1.1, a client certificate requested when
/// `client_ca` is set.
pub fn server_config(
    cert: CertSource,
    min: TlsMinVersion,
    client_ca: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<rustls::ServerConfig, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min {
        TlsMinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsMinVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(versions)
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match client_ca {
        Some(v) => builder.with_client_cert_verifier(Arc::new(RequestClientCert(v))),
        None => builder.with_no_client_auth(),
    };
    let mut config = match cert {
        CertSource::Static(cert) => builder
            .with_single_cert(cert.chain, cert.key)
            .map_err(|e| TlsError::Config(format!("serving certificate and key: {e}")))?,
        CertSource::Dynamic(resolver) => builder.with_cert_resolver(resolver),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_pair_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let ip: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        let first = self_signed(dir.path(), "node-a", &[ip]).unwrap();
        assert_eq!(first.chain.len(), 2, "serving certificate and its CA");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(dir.path().join(SELF_SIGNED_KEY))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let again = self_signed(dir.path(), "node-a", &[ip]).unwrap();
        assert_eq!(first.chain[0], again.chain[0], "kept, not regenerated");
        server_config(CertSource::Static(again), TlsMinVersion::Tls12, None).unwrap();
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        fs::write(&cert, "not pem").unwrap();
        let err = load(&cert, &dir.path().join("missing.key"))
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("c.pem") && err.contains("CERTIFICATE"),
            "{err}"
        );
        let (pem, _) = generate("n", &[]).unwrap();
        fs::write(&cert, pem).unwrap();
        let err = load(&cert, &dir.path().join("missing.key"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing.key"), "{err}");
    }
}
