//! `/containerLogs` in-process: the real agent against the fake CRI runtime (hollow mode), the
//! handler's router called directly, and the container log files written by the test where the
//! runtime says they are (the fake writes none). No root, no containerd: the answers for missing
//! pods and containers, each option, `follow` to the container's exit, and `previous` after a
//! restart. `tests/container_logs.rs` does the same on the real containerd through the
//! authenticated port.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use kubelet_rs::fakeruntime::{pod_manifest, pod_running, HollowConfig, HollowNode};
use kubelet_rs::server::{containerlogs, ApiState};
use tower::ServiceExt;

const BUSYBOX: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
const WAIT: Duration = Duration::from_secs(60);

struct Node {
    hollow: HollowNode,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

async fn start(test: &str) -> Node {
    let dir = tempfile::Builder::new()
        .prefix("kubelet-rs-logs-")
        .tempdir()
        .unwrap();
    let hollow = HollowNode::start(
        dir.path(),
        HollowConfig {
            node_name: format!("hollow-{test}"),
            preload_images: vec![BUSYBOX.into()],
            // The kubelet API on a port of its own (not 10250, which parallel nodes share).
            extra_flags: vec![
                "--address=127.0.0.1".into(),
                format!("--port={}", free_port()),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let kl = hollow.agent.kubelet.clone();
    let state = ApiState {
        status: kl.status.clone(),
        kubelet: kl,
        metrics: kubelet_rs::metrics::Metrics::new(&hollow.node),
        monitor: hollow.agent.monitor.clone(),
        names: Arc::new(kubelet_rs::cadvisor::names::RuntimeNames::new("containerd")),
    };
    let app = containerlogs::routes(Arc::new(state));
    Node {
        hollow,
        app,
        _dir: dir,
    }
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Node {
    /// Starts pod `name` (container `main`) and waits for it to run; returns its API name.
    async fn run_pod(&self, name: &str, restart_policy: &str) -> String {
        self.hollow
            .write_manifest(
                &format!("{name}.yaml"),
                &pod_manifest(name, restart_policy, &[("main", BUSYBOX)]),
            )
            .unwrap();
        wait_for(&format!("pod {name} running"), || {
            self.hollow.pod(name).filter(pod_running)
        })
        .await;
        self.hollow.pod_name(name)
    }

    /// The running container `main` of pod `name`: (ID, log path).
    async fn main_container(&self, name: &str, attempt: u32) -> (String, PathBuf) {
        let full = self.hollow.pod_name(name);
        let id = wait_for("the container", || {
            self.hollow
                .fake
                .containers()
                .into_iter()
                .find(|c| c.pod_name == full && c.name == "main" && c.attempt == attempt)
                .map(|c| c.id)
        })
        .await;
        let status = self
            .hollow
            .agent
            .kubelet
            .runtime
            .container_status(&id)
            .await
            .unwrap();
        let path = PathBuf::from(status.log_path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        (id, path)
    }

    async fn request(&self, uri: &str) -> axum::response::Response {
        self.app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let resp = self.request(uri).await;
        let code = resp.status();
        let body = tokio::time::timeout(WAIT, resp.into_body().collect())
            .await
            .expect("the body ends")
            .unwrap()
            .to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }
}

fn record(time: &str, stream: &str, tag: &str, text: &str) -> String {
    format!("{time} {stream} {tag} {text}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_pods_containers_and_bad_options_get_the_kubelets_answers() {
    let node = start("logs-errors").await;
    let pod = node.run_pod("web", "Always").await;
    let (code, body) = node.get("/containerLogs/default/nope/main").await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::NOT_FOUND, "pod \"nope\" does not exist")
    );
    let (code, body) = node.get(&format!("/containerLogs/other/{pod}/main")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{body}");
    let (code, body) = node
        .get(&format!("/containerLogs/default/{pod}/sidecar"))
        .await;
    assert_eq!(
        (code, body),
        (
            StatusCode::NOT_FOUND,
            format!("container \"sidecar\" not found in pod \"{pod}\"")
        )
    );
    let (code, body) = node
        .get(&format!("/containerLogs/default/{pod}/main?tailLines=x"))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(body.contains("tailLines"), "{body}");
    let (code, body) = node
        .get(&format!("/containerLogs/default/{pod}/main?limitBytes=0"))
        .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("limitBytes: Invalid value: 0"), "{body}");
    let (code, body) = node
        .get(&format!("/containerLogs/default/{pod}/main?previous=true"))
        .await;
    assert_eq!(
        (code, body),
        (
            StatusCode::BAD_REQUEST,
            format!("previous terminated container \"main\" in pod \"{pod}\" not found")
        )
    );
    // The fake writes no log file: the reader's error, with the path.
    let (code, body) = node
        .get(&format!("/containerLogs/default/{pod}/main"))
        .await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("failed to try resolving symlinks in path") && body.contains("0.log"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_option_applies() {
    let node = start("logs-options").await;
    let pod = node.run_pod("web", "Always").await;
    let (_, log) = node.main_container("web", 0).await;
    std::fs::write(
        &log,
        [
            record("2024-01-01T00:00:01.5Z", "stdout", "F", "one"),
            record("2024-01-01T00:00:02Z", "stderr", "P", "tw"),
            record("2024-01-01T00:00:03Z", "stderr", "F", "o"),
            "not a record\n".to_string(),
            record("2024-01-01T01:00:04+01:00", "stdout", "F", "three"),
        ]
        .concat(),
    )
    .unwrap();
    let base = format!("/containerLogs/default/{pod}/main");
    for (query, want) in [
        ("", "one\ntwo\nthree\n"),
        ("?tailLines=2", "two\nthree\n"),
        ("?tailLines=0", ""),
        ("?tail=all", "one\ntwo\nthree\n"),
        ("?limitBytes=6", "one\ntw"),
        ("?sinceTime=2024-01-01T00:00:02Z", "two\nthree\n"),
        ("?sinceTime=2024-01-01T00:00:03Z", "three\n"),
        // Everything here is older than a minute.
        ("?sinceSeconds=60", ""),
        (
            "?timestamps=true",
            "2024-01-01T00:00:01.500000000Z one\n\
             2024-01-01T00:00:02.000000000Z two\n\
             2024-01-01T01:00:04.000000000+01:00 three\n",
        ),
        (
            "?timestamps=1&tailLines=1&limitBytes=40",
            "2024-01-01T01:00:04.000000000+01:00 thre",
        ),
    ] {
        let (code, body) = node.get(&format!("{base}{query}")).await;
        assert_eq!((code, body.as_str()), (StatusCode::OK, want), "{query}");
    }
    // A record written just now passes sinceSeconds.
    let now = jiff::Timestamp::now().to_string();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(record(&now, "stdout", "F", "fresh").as_bytes())
        .unwrap();
    let (code, body) = node.get(&format!("{base}?sinceSeconds=60")).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "fresh\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_streams_until_the_container_exits_and_previous_reads_the_last_instance() {
    let node = start("logs-follow").await;
    let pod = node.run_pod("web", "Always").await;
    let (id, log) = node.main_container("web", 0).await;
    let mut f = std::fs::File::create(&log).unwrap();
    f.write_all(record("2024-01-01T00:00:01Z", "stdout", "F", "before").as_bytes())
        .unwrap();
    let resp = node
        .request(&format!("/containerLogs/default/{pod}/main?follow=true"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut got = String::new();
    async fn until(body: &mut Body, got: &mut String, want: &str) {
        while !got.ends_with(want) {
            let frame = tokio::time::timeout(WAIT, body.frame())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} in time; got {got:?}"))
                .expect("the stream goes on")
                .unwrap();
            if let Ok(data) = frame.into_data() {
                got.push_str(std::str::from_utf8(&data).unwrap());
            }
        }
    }
    until(&mut body, &mut got, "before\n").await;
    f.write_all(record("2024-01-01T00:00:02Z", "stdout", "F", "after").as_bytes())
        .unwrap();
    until(&mut body, &mut got, "after\n").await;
    f.write_all(record("2024-01-01T00:00:03Z", "stdout", "F", "last words").as_bytes())
        .unwrap();
    node.hollow.fake.exit_container(&id, 1).unwrap();
    // The stream ends once the container has stopped, with everything it wrote.
    let rest = tokio::time::timeout(WAIT, body.collect())
        .await
        .expect("the stream ends after the container exits")
        .unwrap()
        .to_bytes();
    got.push_str(std::str::from_utf8(&rest).unwrap());
    assert_eq!(got, "before\nafter\nlast words\n");

    // The container restarts (attempt 1): `previous` reads attempt 0's log, the plain request
    // the new one's.
    let (_, log1) = node.main_container("web", 1).await;
    std::fs::write(
        &log1,
        record("2024-01-01T00:01:00Z", "stdout", "F", "second life"),
    )
    .unwrap();
    wait_for("the restart in the status", || {
        let p = node.hollow.pod("web")?;
        let c = p.status?.container_statuses?.into_iter().next()?;
        (c.restart_count == 1 && c.state?.running.is_some()).then_some(())
    })
    .await;
    let base = format!("/containerLogs/default/{pod}/main");
    let (code, body) = node.get(&format!("{base}?previous=true")).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::OK, "before\nafter\nlast words\n")
    );
    let (code, body) = node.get(&base).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "second life\n"));
    // `previous` with `follow` ends at once: that container is not running.
    let (code, body) = node.get(&format!("{base}?previous=true&follow=true")).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::OK, "before\nafter\nlast words\n")
    );
}
