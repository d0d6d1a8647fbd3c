//! Shared helpers for testkit's tests: a server per test, built from this package's binary.

#![allow(dead_code)]

use testkit::harness::kubectl_path;
use testkit::{Options, TestApiServer};

/// A fresh `test-apiserver` for one test (extra flags optional).
pub fn server_with(args: &[&str]) -> TestApiServer {
    assert!(
        kubectl_path().exists(),
        "these tests drive the real kubectl at {}, which is missing",
        kubectl_path().display()
    );
    TestApiServer::start_with(Options {
        binary: Some(env!("CARGO_BIN_EXE_test-apiserver").into()),
        args: args.iter().map(|s| s.to_string()).collect(),
    })
    .expect("test-apiserver starts")
}

pub fn server() -> TestApiServer {
    server_with(&[])
}

/// A Ready node object for `kubectl create -f -`.
pub fn node_json(name: &str, ip: &str, kubelet_port: u16, labels: &str) -> String {
    format!(
        r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"{name}","labels":{{"kubernetes.io/hostname":"{name}"{labels}}}}},
 "status":{{"capacity":{{"cpu":"4","memory":"8Gi","pods":"110"}},
  "conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"2026-01-01T00:00:00Z","lastTransitionTime":"2026-01-01T00:00:00Z"}}],
  "addresses":[{{"type":"InternalIP","address":"{ip}"}},{{"type":"Hostname","address":"{name}"}}],
  "daemonEndpoints":{{"kubeletEndpoint":{{"Port":{kubelet_port}}}}},
  "nodeInfo":{{"machineID":"m","systemUUID":"s","bootID":"b","kernelVersion":"6.1.0-test","osImage":"Debian GNU/Linux 12 (bookworm)","containerRuntimeVersion":"containerd://1.6.20","kubeletVersion":"v1.33.0","kubeProxyVersion":"","operatingSystem":"linux","architecture":"amd64"}}}}}}"#
    )
}

/// Retry `f` for up to `secs` seconds until it returns `Some`.
pub fn eventually<T>(secs: u64, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
