//! A pod's HTTP server is hostile (issue 11), on the real containerd: a pod whose httpGet
//! readiness probe and postStart hook hit a server the test runs on the host (127.0.0.1, which
//! the agent reaches from the host's network, as it does a pod's IP). The server answers the
//! hook with a chunk size of `ffffffffffffffff` (the answer that once panicked the HTTP client
//! and wedged the pod's worker for good) and the probe, in turn, with that same huge chunk, a
//! chunk cut short, and a response head that never ends.
//!
//! Checked: the hook completes (an answer came; as in the kubelet, its body does not matter) and
//! the container runs; the agent logs each probe outcome (the chunk errors as probe errors, the
//! endless head as a failure at the probe's timeout); the container never turns ready; and the
//! pod is still managed: a changed manifest replaces it, removing the manifest tears it down,
//! and no worker panicked.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(90);

/// The answers, by kind.
const HUGE_CHUNK: &[u8] =
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nabc";
const TRUNCATED_CHUNK: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n100\r\nabc";

/// A hostile HTTP server on 127.0.0.1, one thread per connection. `/hook` gets the huge chunk;
/// `/probe` gets the huge chunk, a truncated chunk and an endless head, in turn.
struct HostileServer {
    port: u16,
    stop: Arc<AtomicBool>,
    /// Request paths in arrival order, with the kind of answer each got.
    seen: Arc<Mutex<Vec<(String, &'static str)>>>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl HostileServer {
    fn start() -> HostileServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let probes = Arc::new(AtomicUsize::new(0));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (stop, seen, probes) = (stop2.clone(), seen2.clone(), probes.clone());
                std::thread::spawn(move || serve(conn, &stop, &seen, &probes));
            }
        });
        HostileServer {
            port,
            stop,
            seen,
            accept: Some(accept),
        }
    }

    fn kinds(&self, path: &str) -> Vec<&'static str> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, k)| *k)
            .collect()
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut s: TcpStream,
    stop: &AtomicBool,
    seen: &Mutex<Vec<(String, &'static str)>>,
    probes: &AtomicUsize,
) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => return,
            Ok(k) => n += k,
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let kind = match path.as_str() {
        "/probe" => ["huge-chunk", "truncated-chunk", "endless-head"]
            [probes.fetch_add(1, Ordering::SeqCst) % 3],
        _ => "huge-chunk",
    };
    seen.lock().unwrap().push((path, kind));
    match kind {
        "huge-chunk" => {
            let _ = s.write_all(HUGE_CHUNK);
        }
        "truncated-chunk" => {
            let _ = s.write_all(TRUNCATED_CHUNK);
        }
        _ => {
            // A status line, then header lines forever, until the client gives up.
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
            for i in 0.. {
                if stop.load(Ordering::SeqCst)
                    || s.write_all(format!("X-Endless-{i}: more\r\n").as_bytes())
                        .is_err()
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn manifest(port: u16, version: &str) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "hostile", "namespace": "default", "labels": {"version": version}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [{
                "name": "app",
                "image": BUSYBOX,
                "command": ["sh", "-c", "exec sleep 3600"],
                "readinessProbe": {
                    "httpGet": {"host": "127.0.0.1", "port": port, "path": "/probe"},
                    "periodSeconds": 1, "timeoutSeconds": 1
                },
                "lifecycle": {"postStart": {"httpGet": {"host": "127.0.0.1", "port": port, "path": "/hook"}}}
            }]
        }
    })
    .to_string()
}

fn app(pod: &Value) -> &Value {
    pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "app"))
        .unwrap_or(&Value::Null)
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_hostile_http_server_fails_probes_and_never_unmanages_its_pod() {
    if !require_runtime() {
        return;
    }
    let server = HostileServer::start();
    let agent = Agent::start("hostile-http");
    agent.write_manifest("hostile.yaml", &manifest(server.port, "1"));

    // The hook got the huge chunk and completed: the container runs.
    let pod = agent.wait_running("hostile", WAIT);
    let first = uid(&pod);
    assert_eq!(server.kinds("/hook"), ["huge-chunk"]);

    // Every hostile answer reached the probe, and each is in the agent's log.
    let url = format!("http://127.0.0.1:{}/probe", server.port);
    agent.wait("each hostile answer probed and logged", WAIT, || {
        let log = agent.log_text();
        let kinds = server.kinds("/probe");
        (["huge-chunk", "truncated-chunk", "endless-head"]
            .iter()
            .all(|k| kinds.contains(k))
            && log.contains(&format!(
                "Readiness probe errored: reading the response body from {url}: unexpected EOF in a chunked body"
            ))
            && log.contains(&format!(
                "Readiness probe failed: Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )))
        .then_some(())
    });
    let pod = agent.pod("hostile").unwrap();
    assert_eq!(app(&pod)["ready"], false, "{pod}");
    assert!(app(&pod)["state"]["running"].is_object(), "{pod}");

    // Still managed: a changed manifest replaces the pod...
    agent.write_manifest("hostile.yaml", &manifest(server.port, "2"));
    let pod = agent.wait("the changed pod running", WAIT, || {
        let p = agent.pod("hostile")?;
        (uid(&p) != first && app(&p)["state"]["running"].is_object()).then_some(p)
    });
    let second = uid(&pod);
    agent.wait("the first pod gone from the runtime", WAIT, || {
        (cri_containers(&first).is_empty() && cri_sandboxes(&first).is_empty()).then_some(())
    });
    assert_eq!(pod["metadata"]["labels"]["version"], "2");

    // ...and removing the manifest tears it down.
    agent.remove_manifest("hostile.yaml");
    agent.wait("the pod torn down", WAIT, || {
        (agent.pod("hostile").is_none()
            && cri_containers(&second).is_empty()
            && cri_sandboxes(&second).is_empty())
        .then_some(())
    });
    let (code, metrics) = http_get(agent.read_only_port, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("\nkubelet_pod_worker_panics_total 0\n"),
        "no worker panicked"
    );
    assert!(
        !agent.log_text().contains("panicked"),
        "{}",
        agent.log_tail()
    );
}
