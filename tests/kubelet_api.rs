//! The authenticated kubelet API on `--port` against the real runtime: TLS with the
//! self-signed serving certificate, authentication (client certificates of the client CA,
//! anonymous on and off, bearer tokens through the test API server's TokenReview), authorization
//! (AlwaysAllow, and Webhook through SubjectAccessReview: allowed and denied with the kubelet's
//! 403 message), the endpoints it serves (`/pods`, `/runningpods/`, `/configz`, `/healthz`,
//! `/logs/` without escapes), `enableDebuggingHandlers: false`, and a slow client that does not
//! stop other requests.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::apiserver::Cluster;
use common::kubeletapi::KubeletApi;
use common::{busybox_pod, require_runtime, Agent};
use serde_json::Value;

#[test]
fn client_certificates_and_anonymous_requests() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("kapi-x509", &[]);
    let nobody = agent.kubelet_api(None);
    let (code, body) = nobody.get("/pods");
    assert_eq!(
        (code, body.as_str()),
        (401, "Unauthorized"),
        "anonymous is off by default"
    );
    let stranger = agent.kubelet_api(Some(&pki.stranger));
    assert_eq!(stranger.get("/pods").0, 401, "a certificate of another CA");
    let client = agent.kubelet_api(Some(&pki.client));
    let (code, body) = client.get("/pods");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "PodList");
    // The self-signed serving pair was written under --cert-dir (ROOT_DIR/pki).
    assert!(agent.root.join("pki/kubelet.crt").exists());
    assert!(agent.root.join("pki/kubelet.key").exists());
    drop(agent);

    let (agent, pki) = Agent::start_secure("kapi-anon", &["--anonymous-auth=true"]);
    let (code, body) = agent.kubelet_api(None).get("/healthz");
    assert_eq!((code, body.as_str()), (200, "ok"));
    // An offered credential that fails is still refused with anonymous requests allowed.
    assert_eq!(
        agent.kubelet_api(Some(&pki.stranger)).get("/healthz").0,
        401
    );
}

#[test]
fn endpoints_behind_authentication() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("kapi-endpoints", &[]);
    let api = agent.kubelet_api(Some(&pki.client));
    agent.write_manifest("web.yaml", &busybox_pod("web", "sleep 3600", ""));
    let uid = agent.wait_running("web", Duration::from_secs(90))["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();

    let (code, body) = api.get("/pods");
    assert_eq!(code, 200);
    assert!(body.contains(&agent.pod_name("web")), "{body}");
    let (code, body) = api.get("/runningpods/");
    assert_eq!(code, 200, "{body}");
    let running: Value = serde_json::from_str(&body).unwrap();
    let pod = running["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["metadata"]["uid"] == uid.as_str())
        .unwrap_or_else(|| panic!("pod {uid} not in /runningpods/: {body}"));
    assert_eq!(pod["metadata"]["name"], agent.pod_name("web").as_str());
    assert_eq!(pod["spec"]["containers"][0]["name"], "main");

    let (code, body) = api.get("/configz");
    assert_eq!(code, 200);
    let c: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(c["kubeletconfig"]["port"], agent.port);
    assert_eq!(c["kubeletconfig"]["authorization"]["mode"], "AlwaysAllow");
    assert_eq!(api.get("/healthz").0, 200);
    assert_eq!(api.get("/healthz/ping"), (200, "ok".into()));
    assert_eq!(api.get("/healthz/syncloop").0, 200);
    let (code, body) = api.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        body.contains("kubelet_http_requests_total{long_running=\"false\",method=\"GET\",path=\"pods\",server_type=\"readwrite\"}"),
        "the authenticated port counts as readwrite"
    );
    assert_eq!(api.get("/stats/summary").0, 200);

    // /logs/ serves /var/log and nothing outside it.
    let (code, body) = api.get("/logs/");
    assert_eq!(code, 200);
    assert!(body.starts_with("<pre>\n"), "{body}");
    for escape in ["/logs/../../etc/shadow", "/logs/%2e%2e/%2e%2e/etc/shadow"] {
        let (code, body) = api.get(escape);
        assert_eq!(code, 400, "{escape}: {body}");
    }
    let link = std::path::PathBuf::from(format!(
        "/var/log/kubelet-rs-test-{}-escape",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink("/etc/shadow", &link).unwrap();
    let (code, body) = api.get(&format!(
        "/logs/{}",
        link.file_name().unwrap().to_str().unwrap()
    ));
    std::fs::remove_file(&link).unwrap();
    assert_eq!(code, 404, "a symlink out of /var/log: {body}");
    assert!(!body.contains("root:"), "{body}");
}

#[test]
fn debugging_handlers_can_be_turned_off() {
    if !require_runtime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         enableDebuggingHandlers: false\n",
    )
    .unwrap();
    let (agent, pki) =
        Agent::start_secure("kapi-nodebug", &[&format!("--config={}", config.display())]);
    let api = agent.kubelet_api(Some(&pki.client));
    for path in [
        "/runningpods/",
        "/logs/",
        "/containerLogs/default/p/c",
        "/exec/default/p/c",
    ] {
        let (code, body) = api.get(path);
        assert_eq!(
            (code, body.as_str()),
            (405, "Debug endpoints are disabled."),
            "{path}"
        );
    }
    assert_eq!(api.get("/pods").0, 200);
}

#[test]
fn a_slow_client_does_not_hold_the_server() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("kapi-slow", &[]);
    let api = agent.kubelet_api(Some(&pki.client));
    // Twenty clients that send a request header a byte at a time, never finishing it.
    let mut slow: Vec<_> = (0..20).map(|_| api.connect().unwrap()).collect();
    for s in &mut slow {
        s.write_all(b"GET /pods HTTP/1.1\r\nHost: x\r\n").unwrap();
        s.flush().unwrap();
    }
    // Others are served meanwhile.
    for _ in 0..5 {
        assert_eq!(api.get("/healthz").0, 200);
    }
    // The slow ones are cut off once the header deadline passes.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut s = slow.pop().unwrap();
    let closed = loop {
        if Instant::now() > deadline {
            break false;
        }
        let r = s
            .write_all(b"X-Slow: 1\r\n")
            .and_then(|_| s.flush())
            .and_then(|_| {
                s.sock.set_read_timeout(Some(Duration::from_millis(500)))?;
                let mut b = [0u8; 512];
                match std::io::Read::read(&mut s, &mut b) {
                    Ok(0) => Err(std::io::ErrorKind::ConnectionAborted.into()),
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
                    Err(e) => Err(e),
                }
            });
        if r.is_err() {
            break true;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        closed,
        "a client that never finishes its header is disconnected"
    );
    assert_eq!(api.get("/healthz").0, 200);
}

#[test]
fn tokens_through_the_api_server() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    // AlwaysAllow: any token the API server accepts; a bad token is a 401.
    let pki = common::kubeletapi::pki();
    let ca = format!("--client-ca-file={}", pki.ca_file.display());
    let agent = cluster.agent("kapi-token", &[&ca, "--authorization-mode=AlwaysAllow"]);
    let with = |token: &str| KubeletApi {
        port: agent.port,
        identity: None,
        token: Some(token.into()),
    };
    assert_eq!(with(&cluster.api.bootstrap_token()).get("/pods").0, 200);
    assert_eq!(with(&cluster.api.admin_token()).get("/pods").0, 200);
    let (code, body) = with("not-a-token").get("/pods");
    assert_eq!((code, body.as_str()), (401, "Unauthorized"));
    drop(agent);

    // Webhook (the default): SubjectAccessReview decides.
    let agent = cluster.agent("kapi-sar", &[&ca]);
    let with = |token: &str| KubeletApi {
        port: agent.port,
        identity: None,
        token: Some(token.into()),
    };
    let (code, body) = with(&cluster.api.admin_token()).get("/stats/summary");
    assert_eq!(code, 200, "{body}");
    let (code, body) = with(&cluster.api.bootstrap_token()).get("/stats/summary");
    let user = format!(
        "system:bootstrap:{}",
        cluster.api.bootstrap_token().split('.').next().unwrap()
    );
    assert_eq!(
        (code, body),
        (
            403,
            format!("Forbidden (user={user}, verb=get, resource=nodes, subresource=stats)")
        )
    );
    let (code, body) = with(&cluster.api.bootstrap_token()).get("/pods");
    assert_eq!(
        (code, body),
        (
            403,
            format!("Forbidden (user={user}, verb=get, resource=nodes, subresource=proxy)")
        ),
        "nodes/pods, then nodes/proxy"
    );
    // A client certificate is authorized the same way: the tester (system:masters) is allowed.
    assert_eq!(agent.kubelet_api(Some(&pki.client)).get("/pods").0, 200);
}

/// Connects to `port` trusting only `ca` for the server name `name`; the handshake's result.
fn handshake_with_ca(port: u16, ca: &std::path::Path, name: &str) -> Result<(), String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut conn = rustls::ClientConnection::new(
        std::sync::Arc::new(cfg),
        rustls::pki_types::ServerName::try_from(name.to_string()).unwrap(),
    )
    .map_err(|e| e.to_string())?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn server_tls_bootstrap_gets_the_serving_certificate_from_the_cluster() {
    if !require_runtime() {
        return;
    }
    let cluster = Cluster::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    std::fs::write(
        &config,
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         serverTLSBootstrap: true\n",
    )
    .unwrap();
    let agent = cluster.agent("kapi-serving", &[&format!("--config={}", config.display())]);
    // The cluster's approver signs it; then handshakes verify against the cluster CA.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        match handshake_with_ca(agent.port, &cluster.api.ca_cert(), &agent.node) {
            Ok(()) => break,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    handshake_with_ca(agent.port, &cluster.api.ca_cert(), &agent.node).unwrap_or_else(|e| {
        panic!(
            "no cluster-signed serving certificate: {e} (before: {last})\n{}",
            agent.log_tail()
        )
    });
    let csrs = cluster.get_json(&["csr"]).expect("CSRs listed");
    let serving: Vec<&Value> = csrs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["spec"]["signerName"] == "kubernetes.io/kubelet-serving")
        .collect();
    assert_eq!(serving.len(), 1, "{csrs}");
    assert_eq!(
        serving[0]["spec"]["username"],
        format!("system:node:{}", agent.node).as_str()
    );
    assert!(agent.root.join("pki/kubelet-server-current.pem").exists());
    assert!(
        !agent.root.join("pki/kubelet.crt").exists(),
        "no self-signed pair when the cluster signs"
    );
}

#[test]
fn pods_posted_to_the_endpoint_run_and_a_delete_removes_them() {
    if !require_runtime() {
        return;
    }
    let (agent, pki) = Agent::start_secure("kapi-podep", &["--enable-pod-endpoint"]);
    let api = agent.kubelet_api(Some(&pki.client));
    let manifest = busybox_pod("posted", "sleep 3600", "");
    let r = api
        .request(
            "POST",
            "/pods",
            &[("Content-Type", "application/yaml")],
            manifest.as_bytes(),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let created: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        created["metadata"]["name"],
        agent.pod_name("posted").as_str()
    );
    assert_eq!(
        created["metadata"]["annotations"]["kubernetes.io/config.source"],
        "endpoint"
    );
    let uid = agent.wait_running("posted", Duration::from_secs(90))["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!common::cri_containers(&uid).is_empty());

    let bad = api
        .request(
            "POST",
            "/pods",
            &[],
            b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n",
        )
        .unwrap();
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("spec"), "{}", bad.text());

    let r = api
        .request("DELETE", "/pods/default/posted", &[], b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    agent.wait(
        "the pod and its containers are gone",
        Duration::from_secs(60),
        || (agent.pod("posted").is_none() && common::cri_containers(&uid).is_empty()).then_some(()),
    );
    assert_eq!(
        api.request("DELETE", "/pods/default/posted", &[], b"")
            .unwrap()
            .status,
        404
    );
}
