//! The test cluster's PKI, kept in the data directory and reused at each start: the CA
//! (`ca.crt`, `ca.key`), the serving certificate, the admin client certificate, the client
//! certificate the server shows kubelets (`apiserver-kubelet-client.{crt,key}`, CN
//! `kube-apiserver-kubelet-client`, O `system:masters`), the service-account signing key
//! (`sa.key`, ECDSA P-256, tokens are ES256 JWTs) and the admin bearer token. It also signs
//! approved CertificateSigningRequests and writes the kubeconfigs.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use x509_parser::prelude::FromDer;

use super::util;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("failed to read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not usable: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("certificate generation failed: {0}")]
    Gen(#[from] rcgen::Error),
    #[error("TLS configuration failed: {0}")]
    Tls(String),
}

pub struct Pki {
    pub dir: PathBuf,
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    pub sa_key: EcdsaKeyPair,
    pub sa_key_id: String,
    pub admin_token: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub server_config: Arc<ServerConfig>,
    pub kubelet_client: Arc<ClientConfig>,
}

fn read_opt(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.into(),
            source,
        }),
    }
}

fn write(path: &Path, data: &str, private: bool) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| PkiError::Write {
        path: path.into(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if private { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data.as_bytes()).map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)
}

fn load_key(path: &Path) -> Result<Option<KeyPair>, PkiError> {
    match read_opt(path)? {
        Some(pem) => KeyPair::from_pem(&pem)
            .map(Some)
            .map_err(|e| PkiError::Bad {
                path: path.into(),
                reason: e.to_string(),
            }),
        None => Ok(None),
    }
}

fn key_or_new(path: &Path) -> Result<KeyPair, PkiError> {
    if let Some(k) = load_key(path)? {
        return Ok(k);
    }
    let k = KeyPair::generate()?;
    write(path, &k.serialize_pem(), true)?;
    Ok(k)
}

fn serial() -> SerialNumber {
    let mut b = [0u8; 16];
    util::random_bytes(&mut b);
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut d = DistinguishedName::new();
    for o in orgs {
        d.push(DnType::OrganizationName, *o);
    }
    d.push(DnType::CommonName, cn);
    d
}

fn validity(p: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::seconds(lifetime.as_secs() as i64);
}

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The user a verified client certificate names: CN is the user, each O a group.
pub fn user_from_cert(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, groups))
}

impl Pki {
    /// Load the PKI from `dir`, creating what is missing, and issue a serving certificate for
    /// `bind` (plus `localhost` and the in-cluster names).
    pub fn load_or_create(
        dir: &Path,
        bind: IpAddr,
        kubelet_ca: Option<&Path>,
    ) -> Result<Pki, PkiError> {
        let ca_key_path = dir.join("ca.key");
        let ca_crt_path = dir.join("ca.crt");
        let ca_key = key_or_new(&ca_key_path)?;
        let ca_pem = match read_opt(&ca_crt_path)? {
            Some(pem) => pem,
            None => {
                let mut p = CertificateParams::default();
                p.distinguished_name = dn("kubernetes", &[]);
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                    KeyUsagePurpose::KeyCertSign,
                ];
                p.serial_number = Some(serial());
                validity(&mut p, YEAR * 10);
                let cert = p.self_signed(&ca_key)?;
                write(&ca_crt_path, &cert.pem(), false)?;
                cert.pem()
            }
        };
        let ca_der = pem_cert_der(&ca_pem).ok_or_else(|| PkiError::Bad {
            path: ca_crt_path.clone(),
            reason: "no CERTIFICATE block".into(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| PkiError::Bad {
            path: ca_crt_path.clone(),
            reason: e.to_string(),
        })?;

        // Serving certificate: reissued at every start for the bind address.
        let srv_key = key_or_new(&dir.join("apiserver.key"))?;
        let mut sans: Vec<String> = vec![
            "localhost".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            "kubernetes.default.svc.cluster.local".into(),
            "127.0.0.1".into(),
        ];
        if bind.to_string() != "127.0.0.1" {
            sans.push(bind.to_string());
        }
        let mut p = CertificateParams::new(sans)?;
        p.distinguished_name = dn("kube-apiserver", &[]);
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.serial_number = Some(serial());
        validity(&mut p, YEAR);
        let srv_cert = p.signed_by(&srv_key, &issuer)?;
        write(&dir.join("apiserver.crt"), &srv_cert.pem(), false)?;

        let (admin_cert_pem, admin_key_pem) = client_cert(
            dir,
            "admin",
            "kubernetes-admin",
            &["system:masters"],
            &issuer,
        )?;
        let (kc_cert, kc_key) = client_cert(
            dir,
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            &issuer,
        )?;

        let sa_path = dir.join("sa.key");
        let sa = key_or_new(&sa_path)?;
        let rng = ring::rand::SystemRandom::new();
        let sa_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &sa.serialize_der(), &rng)
                .map_err(|e| PkiError::Bad {
                path: sa_path.clone(),
                reason: format!("not an ECDSA P-256 key: {e}"),
            })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, sa.public_key_raw());
        let sa_key_id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());

        let token_path = dir.join("admin.token");
        let admin_token = match read_opt(&token_path)? {
            Some(t) if !t.trim().is_empty() => t.trim().to_string(),
            _ => {
                let t = util::random_token_chars(32);
                write(&token_path, &t, true)?;
                t
            }
        };

        let server_config = server_tls(&ca_der, &srv_cert.der().clone(), &srv_key)?;
        let kubelet_client = kubelet_tls(&kc_cert, &kc_key, kubelet_ca)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_der,
            issuer,
            sa_key,
            sa_key_id,
            admin_token,
            admin_cert_pem,
            admin_key_pem,
            server_config,
            kubelet_client,
        })
    }

    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca_der
    }

    /// Sign a PEM certificate request for the given key usages (`client auth`, `server auth`,
    /// `digital signature`, `key encipherment`) and lifetime; returns the certificate PEM.
    pub fn sign_csr(
        &self,
        request_pem: &str,
        usages: &[String],
        lifetime: Duration,
    ) -> Result<String, String> {
        let mut csr = CertificateSigningRequestParams::from_pem(request_pem)
            .map_err(|e| format!("unable to parse csr: {e}"))?;
        let p = &mut csr.params;
        p.serial_number = Some(serial());
        validity(p, lifetime);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages.clear();
        p.extended_key_usages.clear();
        for u in usages {
            match u.as_str() {
                "digital signature" => p.key_usages.push(KeyUsagePurpose::DigitalSignature),
                "key encipherment" => p.key_usages.push(KeyUsagePurpose::KeyEncipherment),
                "client auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth),
                "server auth" => p
                    .extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ServerAuth),
                "signing" | "cert sign" | "crl sign" => {}
                other => return Err(format!("unsupported key usage: {other:?}")),
            }
        }
        p.use_authority_key_identifier_extension = true;
        let cert = csr
            .signed_by(&self.issuer)
            .map_err(|e| format!("signing failed: {e}"))?;
        Ok(cert.pem())
    }
}

/// Subject and SANs of a PEM certificate request, for the approvers' checks.
pub struct CsrInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ips: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

pub fn parse_csr(request_pem: &str) -> Result<CsrInfo, String> {
    let csr = CertificateSigningRequestParams::from_pem(request_pem).map_err(|e| match e {
        rcgen::Error::CouldNotParseCertificationRequest => {
            "PEM block type must be CERTIFICATE REQUEST".to_string()
        }
        other => other.to_string(),
    })?;
    let mut info = CsrInfo {
        common_name: String::new(),
        organizations: Vec::new(),
        dns_names: Vec::new(),
        ips: Vec::new(),
        emails: Vec::new(),
        uris: Vec::new(),
    };
    for (ty, v) in csr.params.distinguished_name.iter() {
        let s = match v {
            rcgen::DnValue::PrintableString(s) => s.to_string(),
            rcgen::DnValue::Utf8String(s) => s.clone(),
            rcgen::DnValue::Ia5String(s) => s.to_string(),
            rcgen::DnValue::TeletexString(s) => s.to_string(),
            rcgen::DnValue::BmpString(_) | rcgen::DnValue::UniversalString(_) => continue,
            _ => continue,
        };
        match ty {
            DnType::CommonName => info.common_name = s,
            DnType::OrganizationName => info.organizations.push(s),
            _ => {}
        }
    }
    for san in &csr.params.subject_alt_names {
        match san {
            SanType::DnsName(d) => info.dns_names.push(d.to_string()),
            SanType::IpAddress(ip) => info.ips.push(ip.to_string()),
            SanType::Rfc822Name(e) => info.emails.push(e.to_string()),
            SanType::URI(u) => info.uris.push(u.to_string()),
            _ => {}
        }
    }
    Ok(info)
}

fn client_cert(
    dir: &Path,
    base: &str,
    cn: &str,
    orgs: &[&str],
    issuer: &Issuer<'static, KeyPair>,
) -> Result<(String, String), PkiError> {
    let crt = dir.join(format!("{base}.crt"));
    let key_path = dir.join(format!("{base}.key"));
    let key = key_or_new(&key_path)?;
    if let Some(pem) = read_opt(&crt)? {
        return Ok((pem, key.serialize_pem()));
    }
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, orgs);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(serial());
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, YEAR);
    let cert = p.signed_by(&key, issuer)?;
    write(&crt, &cert.pem(), false)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Mints a client certificate for `cn` in `orgs`, signed by the CA kept in `dir` (`ca.crt`,
/// `ca.key`), and writes a kubeconfig for `server` with it to `out`. Tests use it to give a
/// kubelet its node identity (`system:node:<name>` in `system:nodes`) without TLS bootstrap.
pub fn mint_client_kubeconfig(
    dir: &Path,
    server: &str,
    cn: &str,
    orgs: &[&str],
    out: &Path,
) -> Result<(), PkiError> {
    let ca_crt_path = dir.join("ca.crt");
    let ca_pem = read_opt(&ca_crt_path)?.ok_or_else(|| PkiError::Bad {
        path: ca_crt_path.clone(),
        reason: "missing".into(),
    })?;
    let ca_key = key_or_new(&dir.join("ca.key"))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(|e| PkiError::Bad {
        path: ca_crt_path.clone(),
        reason: e.to_string(),
    })?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::default();
    p.distinguished_name = dn(cn, orgs);
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.serial_number = Some(serial());
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, YEAR);
    let cert = p.signed_by(&key, &issuer)?;
    write_kubeconfig(
        out,
        server,
        &ca_pem,
        cn,
        cert_credentials(&cert.pem(), &key.serialize_pem()),
    )
}

fn pem_cert_der(pem: &str) -> Option<CertificateDer<'static>> {
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    let body_start = start + "-----BEGIN CERTIFICATE-----".len();
    let end = pem[body_start..].find("-----END CERTIFICATE-----")? + body_start;
    let b64: String = pem[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(CertificateDer::from(der))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_tls(
    ca: &CertificateDer<'static>,
    cert: &CertificateDer<'static>,
    key: &KeyPair,
) -> Result<Arc<ServerConfig>, PkiError> {
    let tls = |e: rustls::Error| PkiError::Tls(e.to_string());
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).map_err(tls)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.clone(), ca.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(tls)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// kube-apiserver does not verify kubelets' serving certificates unless
/// `--kubelet-certificate-authority` is given; this verifier does the same (signatures are
/// still checked, the chain is not).
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn kubelet_tls(
    cert_pem: &str,
    key_pem: &str,
    ca_path: Option<&Path>,
) -> Result<Arc<ClientConfig>, PkiError> {
    let tls = |e: rustls::Error| PkiError::Tls(e.to_string());
    let cert = pem_cert_der(cert_pem).ok_or_else(|| PkiError::Tls("bad client cert".into()))?;
    let key = KeyPair::from_pem(key_pem)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls)?;
    let cfg = match ca_path {
        Some(p) => {
            let pem = std::fs::read_to_string(p).map_err(|source| PkiError::Read {
                path: p.into(),
                source,
            })?;
            let mut roots = RootCertStore::empty();
            let der = pem_cert_der(&pem).ok_or_else(|| PkiError::Bad {
                path: p.into(),
                reason: "no CERTIFICATE block".into(),
            })?;
            roots.add(der).map_err(tls)?;
            builder
                .with_root_certificates(roots)
                .with_client_auth_cert(vec![cert], key)
                .map_err(tls)?
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider())))
            .with_client_auth_cert(vec![cert], key)
            .map_err(tls)?,
    };
    Ok(Arc::new(cfg))
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A kubeconfig with one cluster, one user and one context, written atomically.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca_pem: &str,
    user: &str,
    credentials: serde_json::Value,
) -> Result<(), PkiError> {
    let doc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test-apiserver", "cluster": {
            "server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": format!("{user}@test-apiserver"),
                      "context": {"cluster": "test-apiserver", "user": user}}],
        "current-context": format!("{user}@test-apiserver"),
        "preferences": {},
    });
    let yaml = serde_yaml::to_string(&doc).map_err(|e| PkiError::Write {
        path: path.into(),
        source: std::io::Error::other(e),
    })?;
    write(path, &yaml, true)
}

pub fn cert_credentials(cert_pem: &str, key_pem: &str) -> serde_json::Value {
    serde_json::json!({
        "client-certificate-data": b64(cert_pem),
        "client-key-data": b64(key_pem),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reuses_the_ca_and_signs_requests() {
        let dir = tempfile::tempdir().unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = Pki::load_or_create(dir.path(), ip, None).unwrap();
        let b = Pki::load_or_create(dir.path(), ip, None).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.admin_token, b.admin_token);
        let pem = std::fs::read_to_string(dir.path().join("apiserver-kubelet-client.crt")).unwrap();
        let (cn, groups) = user_from_cert(pem_cert_der(&pem).unwrap().as_ref()).unwrap();
        assert_eq!(cn, "kube-apiserver-kubelet-client");
        assert_eq!(groups, ["system:masters"]);

        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::default();
        p.distinguished_name = dn("system:node:n1", &["system:nodes"]);
        let req = p.serialize_request(&key).unwrap().pem().unwrap();
        let info = parse_csr(&req).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, ["system:nodes"]);
        let cert = b
            .sign_csr(
                &req,
                &["digital signature".into(), "client auth".into()],
                Duration::from_secs(3600),
            )
            .unwrap();
        let (cn, groups) = user_from_cert(pem_cert_der(&cert).unwrap().as_ref()).unwrap();
        assert_eq!(
            (cn.as_str(), groups[0].as_str()),
            ("system:node:n1", "system:nodes")
        );
        assert!(parse_csr("garbage").is_err());
    }
}
