//! The harness as other crates' tests use it: no binary given, so it builds `test-apiserver`
//! with cargo, starts it, restarts it on the same port and removes everything when dropped.

#[test]
fn start_restart_and_drop() {
    let mut s = testkit::TestApiServer::start().expect("the harness builds and starts the server");
    for f in [
        s.admin_kubeconfig(),
        s.bootstrap_kubeconfig(),
        s.ca_cert(),
        s.ca_key(),
        s.kubelet_client_cert(),
        s.kubelet_client_key(),
    ] {
        assert!(
            f.exists(),
            "{} is written before /readyz answers",
            f.display()
        );
    }
    assert!(s.url().starts_with("https://127.0.0.1:"));
    let out = s.kubectl(&["create", "configmap", "kept", "--from-literal=k=v"]);
    assert!(out.success(), "{}", out.stderr);
    let port = s.port();
    s.restart().unwrap();
    assert_eq!(
        s.port(),
        port,
        "a restart keeps the port, so kubeconfigs stay valid"
    );
    let out = s.kubectl(&["get", "configmap", "kept", "-o", "jsonpath={.data.k}"]);
    assert_eq!(out.stdout, "v", "{}", out.stderr);
    let dir = s.data_dir();
    drop(s);
    assert!(!dir.exists(), "the data directory is removed on drop");
    let listening = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(!listening, "the server is stopped on drop");
}

/// A minted node kubeconfig authenticates as `system:node:<name>`: kubectl with it may read
/// nodes but, as NodeRestriction and the node authorizer have it, not create secrets.
#[test]
fn node_kubeconfig_authenticates_as_the_node() {
    let s = testkit::TestApiServer::start().expect("the harness builds and starts the server");
    let kc = s.node_kubeconfig("n1").unwrap();
    let as_node = |args: &[&str]| {
        let out = std::process::Command::new(testkit::harness::kubectl_path())
            .arg("--kubeconfig")
            .arg(&kc)
            .arg("--cache-dir")
            .arg(s.data_dir().join("node-cache"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (ok, stdout, stderr) = as_node(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout, "system:node:n1");
    let (ok, _, stderr) = as_node(&["create", "secret", "generic", "x", "--from-literal=a=b"]);
    assert!(!ok, "a node cannot create secrets");
    assert!(
        stderr.contains("Forbidden") || stderr.contains("forbidden"),
        "{stderr}"
    );
}
