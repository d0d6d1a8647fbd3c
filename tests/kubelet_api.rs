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
