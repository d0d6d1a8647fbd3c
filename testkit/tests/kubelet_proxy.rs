//! `kubectl logs`, `kubectl exec` and `nodes/proxy` through the test API server to a kubelet:
//! a small stand-in kubelet here (TLS, client certificates checked against the test CA,
//! `/containerLogs`, `/healthz`, and `/exec` answering the websocket upgrade with the
//! `v5.channel.k8s.io` protocol) shows that the server reaches the node's InternalIP and
//! kubelet port with its kubelet-client certificate, translates the parameters as
//! kube-apiserver does, streams logs and passes the upgraded connection through unchanged.

mod common;

use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use common::{node_json, server};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// What the stand-in kubelet saw: paths with queries, and the client certificate's CN.
#[derive(Default)]
struct Seen {
    requests: Vec<String>,
    client_cn: Vec<String>,
}

fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    if payload.len() < 126 {
        f.push(payload.len() as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(payload);
    f
}

async fn kubelet_handler(
    mut req: Request<Incoming>,
    seen: Arc<Mutex<Seen>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    seen.lock().unwrap().requests.push(pq.clone());
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        return Ok(Response::new(Full::new(Bytes::from("ok"))));
    }
    if path == "/containerLogs/default/web/c" {
        let tail = pq.contains("tailLines=1");
        let body = if tail { "line 2\n" } else { "line 1\nline 2\n" };
        return Ok(Response::builder()
            .header("Content-Type", "text/plain")
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }
    if path == "/exec/default/web/c" {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let protocols = req
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if key.is_empty() || !protocols.contains("v5.channel.k8s.io") {
            return Ok(Response::builder()
                .status(StatusCode::BAD_REQUEST)
                .body(Full::new(Bytes::from(format!(
                    "no websocket upgrade: {protocols}"
                ))))
                .unwrap());
        }
        let digest = ring::digest::digest(
            &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
            format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
        );
        let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let mut io = TokioIo::new(io);
            let mut out = Vec::new();
            out.extend(ws_frame(2, b"\x01hi from the kubelet\n"));
            out.extend(ws_frame(2, b"\x03{\"metadata\":{},\"status\":\"Success\"}"));
            out.extend(ws_frame(8, &1000u16.to_be_bytes()));
            let _ = io.write_all(&out).await;
            let mut sink = [0u8; 1024];
            while let Ok(n) = io.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        });
        return Ok(Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", accept)
            .header("Sec-WebSocket-Protocol", "v5.channel.k8s.io")
            .body(Full::new(Bytes::new()))
            .unwrap());
    }
    Ok(Response::builder()
        .status(StatusCode::NOT_FOUND)
        .body(Full::new(Bytes::from("404 page not found")))
        .unwrap())
}

/// Start the stand-in kubelet; it trusts `ca_pem` for client certificates.
async fn start_kubelet(ca_pem: &str, seen: Arc<Mutex<Seen>>) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pem_der(ca_pem).into()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Some(c) = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                {
                    if let Some((cn, _)) = testkit::apiserver::pki::user_from_cert(c.as_ref()) {
                        seen.lock().unwrap().client_cn.push(cn);
                    }
                }
                let svc = hyper::service::service_fn(move |req| kubelet_handler(req, seen.clone()));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    port
}

const POD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},
  "spec":{"nodeName":"node-1","containers":[{"name":"c","image":"busybox"}]}}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_exec_and_node_proxy_reach_the_kubelet() {
    let s = server();
    let ca = std::fs::read_to_string(s.ca_cert()).unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let port = start_kubelet(&ca, seen.clone()).await;
    let s = Arc::new(s);
    let run = |args: Vec<String>, stdin: Option<String>| {
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            s.kubectl_with_stdin(&a, stdin.as_deref())
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    run(
        args(&["create", "-f", "-"]),
        Some(node_json("node-1", "127.0.0.1", port, "")),
    )
    .await
    .unwrap()
    .ok();
    run(args(&["create", "-f", "-"]), Some(POD.into()))
        .await
        .unwrap()
        .ok();

    let logs = run(args(&["logs", "web"]), None).await.unwrap();
    assert_eq!(logs.ok(), "line 1\nline 2\n");
    let tail = run(args(&["logs", "web", "--tail=1", "--timestamps"]), None)
        .await
        .unwrap();
    assert_eq!(tail.ok(), "line 2\n");

    let exec = run(args(&["exec", "web", "--", "echo", "hi"]), None)
        .await
        .unwrap();
    assert_eq!(
        exec.ok(),
        "hi from the kubelet\n",
        "stderr: {}",
        exec.stderr
    );

    let raw = run(
        args(&["get", "--raw", "/api/v1/nodes/node-1/proxy/healthz"]),
        None,
    )
    .await
    .unwrap();
    assert_eq!(raw.ok(), "ok");

    let seen = seen.lock().unwrap();
    assert!(
        seen.requests
            .contains(&"/containerLogs/default/web/c".to_string()),
        "{:?}",
        seen.requests
    );
    assert!(
        seen.requests
            .iter()
            .any(|r| r.starts_with("/containerLogs/default/web/c?")
                && r.contains("tailLines=1")
                && r.contains("timestamps=true")),
        "{:?}",
        seen.requests
    );
    let exec_req = seen
        .requests
        .iter()
        .find(|r| r.starts_with("/exec/"))
        .expect("exec reached the kubelet");
    assert!(exec_req.contains("command=echo&command=hi"), "{exec_req}");
    assert!(
        exec_req.contains("output=1") && exec_req.contains("error=1"),
        "{exec_req}"
    );
    assert!(seen.requests.contains(&"/healthz".to_string()));
    assert!(!seen.client_cn.is_empty());
    assert!(
        seen.client_cn
            .iter()
            .all(|cn| cn == "kube-apiserver-kubelet-client"),
        "{:?}",
        seen.client_cn
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_an_unreachable_kubelet_and_of_an_unbound_pod_fail_cleanly() {
    let s = Arc::new(server());
    let s2 = s.clone();
    let out = tokio::task::spawn_blocking(move || {
        // A port nothing listens on.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        s2.kubectl_with_stdin(
            &["create", "-f", "-"],
            Some(&node_json("node-1", "127.0.0.1", free, "")),
        )
        .ok();
        s2.kubectl_with_stdin(&["create", "-f", "-"], Some(POD))
            .ok();
        s2.kubectl_with_stdin(
            &["create", "-f", "-"],
            Some(
                &POD.replace("\"web\"", "\"floating\"")
                    .replace("\"nodeName\":\"node-1\",", "\"schedulerName\":\"none\","),
            ),
        )
        .ok();
        (
            s2.kubectl(&["logs", "web"]),
            s2.kubectl(&["logs", "floating"]),
        )
    })
    .await
    .unwrap();
    assert!(!out.0.success());
    assert!(
        out.0.stderr.contains("connection refused"),
        "{}",
        out.0.stderr
    );
    assert!(!out.1.success());
    assert!(
        out.1.stderr.contains("does not have a host assigned"),
        "{}",
        out.1.stderr
    );
}
