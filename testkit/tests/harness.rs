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
