//! A client of an agent's authenticated kubelet API (`--port`, HTTPS): a test PKI (a client CA
//! and a client certificate it signed, plus a stranger's certificate from another CA), and
//! blocking requests over TLS with a client certificate and/or a bearer token. The agent's
//! self-signed serving certificate is not verified (as kube-apiserver does not without
//! `--kubelet-certificate-authority`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// A client certificate and its key.
#[derive(Clone)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_der: Vec<u8>,
}

/// The client CA (its file for `--client-ca-file`) and identities.
pub struct Pki {
    _dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    /// CN `kubelet-rs-tester`, O `system:masters`, signed by the client CA.
    pub client: Identity,
    /// Signed by another CA.
    pub stranger: Identity,
}

fn ca(cn: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    (cert.pem(), rcgen::Issuer::new(p, key))
}

fn identity(issuer: &rcgen::Issuer<'_, rcgen::KeyPair>, cn: &str) -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, cn);
    p.distinguished_name
        .push(rcgen::DnType::OrganizationName, "system:masters");
    let cert = p.signed_by(&key, issuer).unwrap();
    Identity {
        chain: vec![cert.der().clone()],
        key_der: key.serialize_der(),
    }
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, issuer) = ca("kubelet-rs-test-client-ca");
    let (_, other) = ca("someone-else");
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, ca_pem).unwrap();
    Pki {
        ca_file,
        client: identity(&issuer, "kubelet-rs-tester"),
        stranger: identity(&other, "kubelet-rs-tester"),
        _dir: dir,
    }
}

/// Accepts any serving certificate (the agent's is self-signed).
#[derive(Debug)]
struct AnyServer;

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Requests to one agent's kubelet API as one client.
#[derive(Clone)]
pub struct KubeletApi {
    pub port: u16,
    pub identity: Option<Identity>,
    pub token: Option<String>,
}

/// A blocking TLS connection to the kubelet API.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A response: status, header block, body (chunked encoding removed).
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl KubeletApi {
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer));
        let cfg = match &self.identity {
            Some(id) => builder
                .with_client_auth_cert(
                    id.chain.clone(),
                    PrivateKeyDer::Pkcs8(id.key_der.clone().into()),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        Arc::new(cfg)
    }

    /// A fresh TLS connection (handshake done).
    pub fn connect(&self) -> std::io::Result<TlsStream> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        let conn = rustls::ClientConnection::new(
            self.client_config(),
            ServerName::try_from("localhost").unwrap(),
        )
        .map_err(std::io::Error::other)?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(s)
    }

    /// The request line and headers (with the token when set), ending in the blank line.
    pub fn head(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body_len: usize,
    ) -> String {
        let mut h = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if let Some(t) = &self.token {
            h.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        for (k, v) in extra {
            h.push_str(&format!("{k}: {v}\r\n"));
        }
        if !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("connection"))
        {
            h.push_str("Connection: close\r\n");
        }
        h.push_str(&format!("Content-Length: {body_len}\r\n\r\n"));
        h
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Reply> {
        let mut s = self.connect()?;
        s.write_all(self.head(method, path, extra, body.len()).as_bytes())?;
        s.write_all(body)?;
        s.flush()?;
        let mut buf = Vec::new();
        match s.read_to_end(&mut buf) {
            Ok(_) => {}
            // A server that closes without close_notify still sent the whole response.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
            Err(e) => return Err(e),
        }
        let split = buf
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .unwrap_or(buf.len());
        let head = String::from_utf8_lossy(&buf[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let rest = &buf[split..];
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(rest)
        } else {
            rest.to_vec()
        };
        Ok(Reply { status, head, body })
    }

    /// GET `path`: (status, body as text).
    pub fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .request("GET", path, &[], b"")
            .unwrap_or_else(|e| panic!("GET {path} on the kubelet API: {e}"));
        (r.status, r.text())
    }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = s.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&s[..eol]).unwrap_or("0");
        let size = size.split(';').next().unwrap_or("0").trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        let rest = &s[eol + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}
