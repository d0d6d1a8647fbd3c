//! Shared harness for the tests that run kubelet-rs against the real containerd started by
//! `scripts/runtime up`.
//!
//! Each [`Agent`] is a separate `kubelet-rs` process with its own node name, manifest directory,
//! root dir, cgroup root and ports, so tests run in parallel on one containerd without seeing
//! each other's pods (the agent filters the runtime by its node label). Dropping an `Agent` kills
//! it and removes every sandbox, container, cgroup and log directory it created.

#![allow(dead_code)]

pub mod apiserver;
pub mod cgroups;
pub mod kubeletapi;
pub mod logind;
pub mod streaming;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proto::cri;
use serde_json::Value;

pub const CONTAINERD_SOCK: &str = "/run/kubelet-rs/containerd/containerd.sock";

/// Eviction thresholds low enough that a shared, fairly full test machine never evicts these
/// tests' pods (the defaults evict at 15 % free image filesystem). Every [`Agent`] runs with
/// them unless its test passes its own `--eviction-hard`.
pub const EVICTION_OFF: &str =
    "memory.available<1Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<1%";
pub const BUSYBOX: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";

/// Fails (never silently passes) when the runtime is missing, unless the developer opted out.
pub fn require_runtime() -> bool {
    if std::env::var_os("KUBELET_RS_SKIP_RUNTIME_TESTS").is_some() {
        eprintln!("skipped: KUBELET_RS_SKIP_RUNTIME_TESTS is set");
        return false;
    }
    assert!(
        Path::new(CONTAINERD_SOCK).exists(),
        "containerd is not running at {CONTAINERD_SOCK}: run `scripts/runtime up` (or set KUBELET_RS_SKIP_RUNTIME_TESTS=1 to skip runtime tests)"
    );
    assert_eq!(unsafe_geteuid(), 0, "runtime tests need root");
    true
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 request on 127.0.0.1; returns (status, headers, body).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((code, head.to_string(), body))
}

/// A plain HTTP/1.1 GET on 127.0.0.1; returns (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http(port, "GET", path, "").map(|(code, _, body)| (code, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A running kubelet-rs process for one test.
pub struct Agent {
    child: Option<Child>,
    pub node: String,
    pub manifests: PathBuf,
    pub root: PathBuf,
    pub cgroup_root: String,
    pub read_only_port: u16,
    pub healthz_port: u16,
    /// The authenticated kubelet API (`--port`).
    pub port: u16,
    pub log: PathBuf,
    pub extra_args: Vec<String>,
    /// Extra environment for the process (`DBUS_SYSTEM_BUS_ADDRESS`, say).
    pub env: Vec<(String, String)>,
    dir: tempfile::TempDir,
}

impl Agent {
    /// Starts an agent with a fresh manifest directory.
    pub fn start(test: &str) -> Agent {
        Self::start_with(test, &[])
    }

    pub fn start_with(test: &str, extra: &[&str]) -> Agent {
        let mut a = Self::prepare(test, extra);
        a.spawn();
        a
    }

    /// An agent whose kubelet API accepts client certificates of the returned PKI's CA, with
    /// `AlwaysAllow` authorization unless `extra` sets a mode.
    pub fn start_secure(test: &str, extra: &[&str]) -> (Agent, kubeletapi::Pki) {
        let pki = kubeletapi::pki();
        let mut args = vec![
            "--client-ca-file".to_string(),
            pki.ca_file.display().to_string(),
        ];
        if !extra.iter().any(|a| a.starts_with("--authorization-mode")) {
            args.push("--authorization-mode=AlwaysAllow".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        (Self::start_with(test, &args), pki)
    }

    /// A client of this agent's kubelet API presenting `identity`.
    pub fn kubelet_api(&self, identity: Option<&kubeletapi::Identity>) -> kubeletapi::KubeletApi {
        kubeletapi::KubeletApi {
            port: self.port,
            identity: identity.cloned(),
            token: None,
        }
    }

    /// An agent with its node name, paths and ports chosen but not started: add to
    /// `extra_args` (flags that need the node name, say), then [`Agent::spawn`].
    pub fn prepare(test: &str, extra: &[&str]) -> Agent {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-rs-test-")
            .tempdir()
            .unwrap();
        let node = unique(test).to_lowercase().replace('_', "-");
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).unwrap();
        Agent {
            child: None,
            cgroup_root: format!("/{node}"),
            node,
            manifests,
            root: dir.path().join("root"),
            read_only_port: free_port(),
            healthz_port: free_port(),
            port: free_port(),
            log: dir.path().join("agent.log"),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            dir,
        }
    }

    /// (Re)starts the process with the same node, paths and ports.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args([
                "--hostname-override",
                &self.node,
                "--pod-manifest-path",
                self.manifests.to_str().unwrap(),
                "--root-dir",
                self.root.to_str().unwrap(),
                "--cgroup-root",
                &self.cgroup_root,
                "--read-only-port",
                &self.read_only_port.to_string(),
                "--healthz-port",
                &self.healthz_port.to_string(),
                "--address",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--file-check-frequency",
                "2s",
                "--v",
                "2",
            ])
            // The cAdvisor port is off unless a test asks for one (clap refuses a repeated flag).
            .args(
                (!self
                    .extra_args
                    .iter()
                    .any(|a| a.starts_with("--cadvisor-port")))
                .then_some(["--cadvisor-port", "0"])
                .into_iter()
                .flatten(),
            )
            // The node's own disk and memory must not decide these tests: unless a test sets
            // its thresholds, EVICTION_OFF applies (no DiskPressure because the build machine's
            // disk is nearly full).
            .args(
                (!self
                    .extra_args
                    .iter()
                    .any(|a| a.starts_with("--eviction-hard")))
                .then_some(["--eviction-hard", EVICTION_OFF])
                .into_iter()
                .flatten(),
            )
            .args(&self.extra_args)
            .env("RUST_LOG", "kubelet_rs=debug,info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn kubelet-rs");
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            // Healthy, and the read-only API (which the tests read pods from) is serving: the
            // servers bind independently, so one being up says nothing of the other.
            if let (Ok((200, _)), Ok((200, _))) = (
                http_get(self.healthz_port, "/healthz"),
                http_get(self.read_only_port, "/pods"),
            ) {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("kubelet-rs exited with {status}:\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "kubelet-rs did not become healthy:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for exit; returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let start = Instant::now();
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        start.elapsed()
    }

    /// The agent process's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn write_manifest(&self, file: &str, content: &str) {
        // Write then rename, as editors and config tools do, so the agent never reads half a file.
        let tmp = self.dir.path().join(format!(".{file}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.manifests.join(file)).unwrap();
    }

    /// A file in the agent's own temporary directory (a `--config` file, say).
    pub fn write_file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    pub fn remove_manifest(&self, file: &str) {
        std::fs::remove_file(self.manifests.join(file)).unwrap();
    }

    /// The static pod name the agent derives.
    pub fn pod_name(&self, name: &str) -> String {
        format!("{name}-{}", self.node)
    }

    pub fn pods(&self) -> Value {
        let (code, body) = http_get(self.read_only_port, "/pods").expect("GET /pods");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).expect("PodList JSON")
    }

    /// The static pod `name` (its name gets the node suffix) from `/pods`.
    pub fn pod(&self, name: &str) -> Option<Value> {
        self.pod_named(&self.pod_name(name))
    }

    /// A pod from `/pods` by its exact name (API pods keep their names).
    pub fn pod_named(&self, name: &str) -> Option<Value> {
        self.pods()["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["metadata"]["name"] == name)
            .cloned()
    }

    /// Polls until `check` returns Some, or panics with the agent's log after `timeout`.
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\n--- /pods ---\n{}\n--- agent log ---\n{}",
                serde_json::to_string_pretty(&self.pods_or_null()).unwrap(),
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pods_or_null(&self) -> Value {
        http_get(self.read_only_port, "/pods")
            .ok()
            .and_then(|(_, b)| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null)
    }

    /// Waits for the pod to be Running with every container running; returns it.
    pub fn wait_running(&self, name: &str, timeout: Duration) -> Value {
        self.wait(&format!("pod {name} running"), timeout, || {
            let p = self.pod(name)?;
            let all = p["status"]["containerStatuses"]
                .as_array()?
                .iter()
                .all(|c| c["state"]["running"].is_object());
            (p["status"]["phase"] == "Running" && all).then_some(p)
        })
    }

    /// The agent's `--cgroup-root` in the hierarchy holding `controller` (through the
    /// collectors' layout detection: v1, v2 and hybrid alike).
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        cgroups::dir(controller, &self.cgroup_root)
    }

    /// The cgroup name of `rel` (`kubepods/pod<uid>`) under the agent's cgroup root.
    pub fn cgroup_name(&self, rel: &str) -> String {
        format!("{}/{}", self.cgroup_root.trim_end_matches('/'), rel)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        cleanup_node(&self.node, &self.cgroup_root);
    }
}

/// Removes everything of a node's from the runtime, the cgroup tree and /var/log/pods.
pub fn cleanup_node(node: &str, cgroup_root: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok(mut c) = cri_client().await else {
            return;
        };
        let filter =
            std::collections::HashMap::from([("kubelet-rs.io/node".to_string(), node.to_string())]);
        if let Ok(r) = c
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: filter.clone(),
                    ..Default::default()
                }),
            })
            .await
        {
            for sb in r.into_inner().items {
                let _ = c
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: sb.id.clone(),
                    })
                    .await;
                let _ = c
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                        pod_sandbox_id: sb.id.clone(),
                    })
                    .await;
                let ns = sb
                    .metadata
                    .as_ref()
                    .map(|m| (m.namespace.clone(), m.name.clone(), m.uid.clone()));
                if let Some((ns, name, uid)) = ns {
                    let _ = std::fs::remove_dir_all(format!("/var/log/pods/{ns}_{name}_{uid}"));
                }
            }
        }
    });
    for hierarchy in cgroups::hierarchies() {
        remove_cgroup_tree(&collectors::layout::cgroup_dir(&hierarchy, cgroup_root));
    }
}

fn remove_cgroup_tree(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_cgroup_tree(&e.path());
            }
        }
        for _ in 0..50 {
            if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub async fn cri_client() -> Result<proto::cri::RuntimeClient, proto::cri::ConnectError> {
    let ch = proto::cri::connect(Path::new(CONTAINERD_SOCK)).await?;
    Ok(proto::cri::RuntimeClient::new(ch))
}

/// Every container of a pod, by UID, as CRI reports it.
pub fn cri_containers(uid: &str) -> Vec<cri::Container> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = cri_client().await.unwrap();
        c.list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: [("io.kubernetes.pod.uid".to_string(), uid.to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .containers
    })
}

/// Every sandbox of a pod, by UID.
pub fn cri_sandboxes(uid: &str) -> Vec<cri::PodSandbox> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = cri_client().await.unwrap();
        c.list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: [("io.kubernetes.pod.uid".to_string(), uid.to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .items
    })
}

/// A busybox pod manifest (YAML) running `command` with a short grace period.
pub fn busybox_pod(name: &str, command: &str, extra_container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    app: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [\"sh\", \"-c\", {cmd}]\n{extra_container}",
        cmd = serde_json::to_string(command).unwrap()
    )
}
