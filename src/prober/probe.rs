//! Running one probe (`pkg/kubelet/prober/prober.go` and `pkg/probe/*`): `exec` through CRI
//! ExecSync with the probe's timeout, `httpGet` through the shared [`HttpClient`], `tcpSocket` as
//! a bare connect, and `grpc` as a `grpc.health.v1.Health/Check` call. Each gives a
//! [`ProbeOutcome`] whose output reads as the kubelet's (it ends up in `Unhealthy` events).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::future::BoxFuture;
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::TcpStream;

use super::http::{
    os_text, set_probe_linger, HttpClient, Scheme, Url, PROBE_LINGER, PROBE_USER_AGENT,
};
use super::{ProbeOutcome, ProbeRequest, ProbeResult, ProbeRunner};
use crate::kuberuntime::container::expand;
use crate::kuberuntime::RuntimeService;

/// The kubelet keeps this much of an exec probe's output.
pub const MAX_EXEC_OUTPUT: usize = 10 << 10;

/// A port reference that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("port {name} not found in container {container}")]
    NotFound { name: String, container: String },
    #[error("invalid port number: {0}")]
    Invalid(i64),
}

/// A probe or hook port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, PortError> {
    let n = match port {
        IntOrString::Int(n) => *n as i64,
        IntOrString::String(name) => match name.parse::<i64>() {
            Ok(n) => n,
            Err(_) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port as i64)
                .ok_or_else(|| PortError::NotFound {
                    name: name.clone(),
                    container: container.name.clone(),
                })?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|&p| p != 0)
        .ok_or(PortError::Invalid(n))
}

/// A command with `$(VAR)` expanded from the container's literal env values only (the kubelet's
/// `ExpandContainerCommandOnlyStatic`: probes never see values resolved from the API).
pub fn expand_static(cmd: &[String], container: &Container) -> Vec<String> {
    let vars: HashMap<String, String> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.as_ref().map(|v| (e.name.clone(), v.clone())))
        .collect();
    if vars.is_empty() {
        return cmd.to_vec();
    }
    cmd.iter().map(|s| expand(s, &vars)).collect()
}

/// The real prober: the runtime for exec, the HTTP client for httpGet.
#[derive(Clone)]
pub struct Prober {
    pub runtime: Option<RuntimeService>,
    pub http: HttpClient,
}

impl ProbeRunner for Prober {
    fn run<'a>(&'a self, req: &'a ProbeRequest<'a>) -> BoxFuture<'a, ProbeOutcome> {
        Box::pin(self.probe(req))
    }
}

fn outcome(result: ProbeResult, output: impl Into<String>) -> ProbeOutcome {
    ProbeOutcome {
        result,
        output: output.into(),
    }
}

impl Prober {
    pub async fn probe(&self, req: &ProbeRequest<'_>) -> ProbeOutcome {
        let p: &Probe = req.probe;
        if let Some(exec) = &p.exec {
            let cmd = expand_static(exec.command.as_deref().unwrap_or(&[]), req.container);
            return self.exec(req.container_id, cmd, req.timeout).await;
        }
        if let Some(h) = &p.http_get {
            let port = match resolve_port(&h.port, req.container) {
                Ok(p) => p,
                Err(e) => return outcome(ProbeResult::Unknown, e.to_string()),
            };
            let host = h
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or(req.pod_ip);
            let url = Url::new(
                Scheme::parse(h.scheme.as_deref()),
                host,
                port,
                h.path.as_deref().unwrap_or("/"),
            );
            let headers = crate::prober::http::spec_headers(h);
            return http_outcome(&self.http, &url, &headers, req.timeout).await;
        }
        if let Some(t) = &p.tcp_socket {
            let port = match resolve_port(&t.port, req.container) {
                Ok(p) => p,
                Err(e) => return outcome(ProbeResult::Unknown, e.to_string()),
            };
            let host = t
                .host
                .as_deref()
                .filter(|h| !h.is_empty())
                .unwrap_or(req.pod_ip);
            return tcp_probe(host, port, req.timeout).await;
        }
        if let Some(g) = &p.grpc {
            let port = match u16::try_from(g.port).ok().filter(|&p| p != 0) {
                Some(p) => p,
                None => {
                    return outcome(
                        ProbeResult::Unknown,
                        PortError::Invalid(g.port.into()).to_string(),
                    )
                }
            };
            return grpc_probe(
                req.pod_ip,
                port,
                g.service.as_deref().unwrap_or(""),
                req.timeout,
            )
            .await;
        }
        outcome(ProbeResult::Unknown, "missing probe handler")
    }

    async fn exec(&self, id: &str, cmd: Vec<String>, timeout: Duration) -> ProbeOutcome {
        let Some(rt) = &self.runtime else {
            return outcome(ProbeResult::Unknown, "no container runtime for exec probes");
        };
        let shown = format!("{cmd:?}");
        match rt.exec_sync(id, cmd, timeout).await {
            Ok(r) => {
                let mut out = r.stdout;
                out.extend_from_slice(&r.stderr);
                out.truncate(MAX_EXEC_OUTPUT);
                let text = String::from_utf8_lossy(&out).into_owned();
                if r.exit_code == 0 {
                    outcome(ProbeResult::Success, text)
                } else {
                    outcome(ProbeResult::Failure, text)
                }
            }
            Err(e) => {
                let msg = e.to_string();
                let timed_out = matches!(e, crate::kuberuntime::RuntimeError::Timeout { .. })
                    || matches!(
                        &e,
                        crate::kuberuntime::RuntimeError::Rpc { code, .. }
                            if *code == tonic::Code::DeadlineExceeded
                    )
                    || msg.contains("timeout") && msg.contains("exceeded");
                if timed_out {
                    outcome(ProbeResult::Failure, format!("command {shown} timed out"))
                } else {
                    outcome(ProbeResult::Unknown, msg)
                }
            }
        }
    }
}

/// An httpGet probe's outcome, as the kubelet's `DoHTTPProbe`: 2xx succeeds, a 3xx that was not
/// followed (another host, or too many) succeeds with a warning, anything else fails with `HTTP
/// probe failed with statuscode: N`; no answer at all fails with the error; an answer whose body
/// cannot be read is a probe error (Unknown: logged and reported, the result unchanged).
pub async fn http_outcome(
    client: &HttpClient,
    url: &Url,
    headers: &[(String, String)],
    timeout: Duration,
) -> ProbeOutcome {
    match client.get(url, headers, PROBE_USER_AGENT, timeout).await {
        Ok(r) if r.body_error.is_some() => outcome(
            ProbeResult::Unknown,
            format!(
                "reading the response body from {url}: {}",
                r.body_error.as_deref().unwrap_or_default()
            ),
        ),
        Ok(r) if (200..300).contains(&r.status) => outcome(ProbeResult::Success, String::new()),
        Ok(r) if (300..400).contains(&r.status) => outcome(
            ProbeResult::Warning,
            format!(
                "Probe terminated redirects, Response body: {}",
                r.body_text()
            ),
        ),
        Ok(r) => outcome(
            ProbeResult::Failure,
            format!("HTTP probe failed with statuscode: {}", r.status),
        ),
        Err(e) => outcome(ProbeResult::Failure, e.to_string()),
    }
}

/// A tcpSocket probe: success when a connection opens within the timeout.
pub async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> ProbeOutcome {
    let shown = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let connect = async {
        match host.parse::<IpAddr>() {
            Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await,
            Err(_) => TcpStream::connect((host, port)).await,
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(stream)) => {
            // Closed at once, with the kubelet's linger: the peer just answered the handshake,
            // so the close does not wait.
            set_probe_linger(&stream, Some(PROBE_LINGER));
            outcome(ProbeResult::Success, String::new())
        }
        Ok(Err(e)) => outcome(
            ProbeResult::Failure,
            format!("dial tcp {shown}: connect: {}", os_text(&e)),
        ),
        Err(_) => outcome(
            ProbeResult::Failure,
            format!("dial tcp {shown}: i/o timeout"),
        ),
    }
}

/// A grpc probe: `grpc.health.v1.Health/Check` for `service`; SERVING succeeds.
pub async fn grpc_probe(host: &str, port: u16, service: &str, timeout: Duration) -> ProbeOutcome {
    use proto::health::pb::health_check_response::ServingStatus;
    use proto::health::pb::health_client::HealthClient;
    use proto::health::pb::HealthCheckRequest;
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{authority}")) {
        Ok(e) => e,
        Err(e) => {
            return outcome(
                ProbeResult::Unknown,
                format!("invalid address {authority}: {e}"),
            )
        }
    }
    .connect_timeout(timeout)
    .timeout(timeout)
    .user_agent(PROBE_USER_AGENT)
    .expect("static user agent");
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return outcome(
                ProbeResult::Failure,
                format!(
                    "timeout: failed to connect service {authority:?} within {}s: {}",
                    timeout.as_secs(),
                    error_chain(&e)
                ),
            )
        }
        Err(_) => {
            return outcome(
                ProbeResult::Failure,
                format!(
                    "timeout: failed to connect service {authority:?} within {}s: context deadline exceeded",
                    timeout.as_secs()
                ),
            )
        }
    };
    let mut client = HealthClient::new(channel);
    let req = HealthCheckRequest {
        service: service.to_string(),
    };
    match tokio::time::timeout(timeout, client.check(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.into_inner().status;
            if status == ServingStatus::Serving as i32 {
                outcome(ProbeResult::Success, "service healthy")
            } else {
                let name = ServingStatus::try_from(status)
                    .map(|s| s.as_str_name())
                    .unwrap_or("UNKNOWN");
                outcome(
                    ProbeResult::Failure,
                    format!("service unhealthy (responded with {name:?})"),
                )
            }
        }
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => outcome(
            ProbeResult::Failure,
            format!(
                "this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
                s.message()
            ),
        ),
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded || s.code() == tonic::Code::Cancelled => {
            outcome(
                ProbeResult::Failure,
                format!("timeout: health rpc did not complete within {}s", timeout.as_secs()),
            )
        }
        Ok(Err(s)) => outcome(
            ProbeResult::Failure,
            format!("error: health rpc probe failed: {}: {}", s.code(), s.message()),
        ),
        Err(_) => outcome(
            ProbeResult::Failure,
            format!("timeout: health rpc did not complete within {}s", timeout.as_secs()),
        ),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container() -> Container {
        serde_json::from_value(json!({"name": "c", "image": "i",
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "F", "value": "/ok"}, {"name": "G", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}))
        .unwrap()
    }

    #[test]
    fn ports_by_number_and_name() {
        let c = container();
        assert_eq!(resolve_port(&IntOrString::Int(80), &c), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &c),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::String("81".into()), &c), Ok(81));
        assert_eq!(
            resolve_port(&IntOrString::String("nope".into()), &c)
                .unwrap_err()
                .to_string(),
            "port nope not found in container c"
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &c),
            Err(PortError::Invalid(70000))
        );
    }

    #[test]
    fn exec_commands_expand_only_literal_env() {
        let c = container();
        let cmd = vec!["cat".to_string(), "$(F)".into(), "$(G)".into()];
        assert_eq!(expand_static(&cmd, &c), vec!["cat", "/ok", "$(G)"]);
    }

    #[tokio::test]
    async fn tcp_and_grpc_probes() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let ok = tcp_probe("127.0.0.1", port, Duration::from_secs(2)).await;
        assert_eq!(ok.result, ProbeResult::Success);
        drop(l);
        let bad = tcp_probe("127.0.0.1", port, Duration::from_secs(2)).await;
        assert_eq!(bad.result, ProbeResult::Failure);
        assert_eq!(
            bad.output,
            format!("dial tcp 127.0.0.1:{port}: connect: connection refused")
        );

        // A real grpc.health.v1 server.
        let (reporter, service) = proto::health::server::health_reporter();
        reporter
            .set_service_status("ready", proto::health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", proto::health::ServingStatus::NotServing)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
        let t = Duration::from_secs(5);
        let up = grpc_probe("127.0.0.1", port, "ready", t).await;
        assert_eq!(up.result, ProbeResult::Success, "{}", up.output);
        let down = grpc_probe("127.0.0.1", port, "down", t).await;
        assert_eq!(down.result, ProbeResult::Failure);
        assert_eq!(
            down.output,
            "service unhealthy (responded with \"NOT_SERVING\")"
        );
        let unknown = grpc_probe("127.0.0.1", port, "absent", t).await;
        assert_eq!(unknown.result, ProbeResult::Failure);
        server.abort();
    }

    /// Outcomes as the kubelet's `DoHTTPProbe` gives them: 2xx success, an unfollowed 3xx a
    /// warning, 4xx/5xx a failure, an unreadable body a probe error.
    #[tokio::test]
    async fn http_outcomes_read_like_the_kubelets() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let answers: [&[u8]; 4] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.invalid/\r\nContent-Length: 5\r\n\r\nthere",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\ncut",
        ];
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let _server = tokio::spawn(async move {
            for a in answers {
                let (mut s, _) = l.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(a).await;
            }
        });
        let client = HttpClient::new();
        let url = Url::new(Scheme::Http, "127.0.0.1", port, "/");
        let t = Duration::from_secs(5);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(http_outcome(&client, &url, &[], t).await);
        }
        assert_eq!(got[0], outcome(ProbeResult::Success, ""));
        assert_eq!(
            got[1],
            outcome(
                ProbeResult::Warning,
                "Probe terminated redirects, Response body: there"
            )
        );
        assert_eq!(
            got[2],
            outcome(
                ProbeResult::Failure,
                "HTTP probe failed with statuscode: 404"
            )
        );
        assert_eq!(got[3].result, ProbeResult::Unknown, "{:?}", got[3]);
        assert!(
            got[3].output.starts_with(&format!(
                "reading the response body from http://127.0.0.1:{port}/: "
            )),
            "{:?}",
            got[3]
        );
    }

    /// A self-signed certificate for `CN=probe.test` and its PKCS#8 key, both DER, made by the
    /// `openssl` command; `None` when that is not installed.
    fn self_signed_cert() -> Option<(Vec<u8>, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let (key_pem, key, cert) = (
            dir.path().join("key.pem"),
            dir.path().join("key.der"),
            dir.path().join("cert.der"),
        );
        let openssl = |args: &[&std::ffi::OsStr]| match std::process::Command::new("openssl")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
        {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            r => {
                assert!(r.unwrap().success(), "openssl {args:?}");
                Some(())
            }
        };
        openssl(&[
            "req".as_ref(),
            "-x509".as_ref(),
            "-newkey".as_ref(),
            "ec".as_ref(),
            "-pkeyopt".as_ref(),
            "ec_paramgen_curve:prime256v1".as_ref(),
            "-nodes".as_ref(),
            "-days".as_ref(),
            "1".as_ref(),
            "-subj".as_ref(),
            "/CN=probe.test".as_ref(),
            "-keyout".as_ref(),
            key_pem.as_os_str(),
            "-outform".as_ref(),
            "DER".as_ref(),
            "-out".as_ref(),
            cert.as_os_str(),
        ])?;
        openssl(&[
            "pkcs8".as_ref(),
            "-topk8".as_ref(),
            "-nocrypt".as_ref(),
            "-in".as_ref(),
            key_pem.as_os_str(),
            "-outform".as_ref(),
            "DER".as_ref(),
            "-out".as_ref(),
            key.as_os_str(),
        ])?;
        Some((std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()))
    }

    #[tokio::test]
    async fn https_probes_accept_a_self_signed_certificate() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Some((cert, key)) = self_signed_cert() else {
            eprintln!("skipped: the openssl command is not installed");
            return;
        };
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(cert)],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        // One TLS connection per answer; the request heads it read come back.
        let server = tokio::spawn(async move {
            let mut heads = Vec::new();
            for status in ["200 OK", "503 Service Unavailable"] {
                let (tcp, _) = l.accept().await.unwrap();
                let mut s = acceptor.accept(tcp).await.unwrap();
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => n += k,
                    }
                }
                heads.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\nok");
                s.write_all(answer.as_bytes()).await.unwrap();
                let _ = s.shutdown().await;
            }
            heads
        });
        let pod: k8s_openapi::api::core::v1::Pod =
            serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
        let c = container();
        let probe: Probe = serde_json::from_value(json!({
            "httpGet": {"scheme": "HTTPS", "port": port, "path": "/healthz"}
        }))
        .unwrap();
        let prober = Prober {
            runtime: None,
            http: HttpClient::new(),
        };
        let req = ProbeRequest {
            ptype: super::super::ProbeType::Readiness,
            probe: &probe,
            pod: &pod,
            container: &c,
            container_id: "id",
            pod_ip: "127.0.0.1",
            timeout: Duration::from_secs(5),
        };
        let ok = prober.probe(&req).await;
        assert_eq!(ok.result, ProbeResult::Success, "{}", ok.output);
        // The answer really comes over that TLS connection: a 503 fails the probe.
        let bad = prober.probe(&req).await;
        assert_eq!(bad.result, ProbeResult::Failure);
        assert_eq!(bad.output, "HTTP probe failed with statuscode: 503");
        let heads = server.await.unwrap();
        assert!(
            heads[0].starts_with("GET /healthz HTTP/1.1\r\n"),
            "{}",
            heads[0]
        );
    }
}
