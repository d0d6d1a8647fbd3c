//! The hollow node: the real agent, started in-process by `agent::start_with`, against a fake
//! runtime, with a fixture cgroup tree and every other path under one base directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use tokio::task::JoinHandle;

use super::{FakeError, FakeRuntime, FakeThread};
use crate::agent::{Agent, HostPaths};
use crate::config::{self, Flags, KubeletSettings};

/// Why a hollow node did not start; each variant names what it concerns.
#[derive(Debug, thiserror::Error)]
pub enum HollowError {
    #[error("hollow node: cannot prepare {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hollow node: bad flags {flags:?}: {message}")]
    Flags { flags: Vec<String>, message: String },
    #[error("hollow node: {0}")]
    Config(#[from] config::ConfigError),
    #[error("hollow node: {0}")]
    Fake(#[from] FakeError),
    #[error("hollow node: the agent did not start: {0}")]
    Agent(String),
}

/// How a hollow node is set up.
#[derive(Debug, Clone)]
pub struct HollowConfig {
    /// The node name (`--hostname-override`); static pods are named `<pod>-<node>`.
    pub node_name: String,
    /// Further kubelet flags (`--max-pods`, `--sync-frequency`, ...). Those in
    /// [`HOLLOW_DEFAULT_FLAGS`] (eviction and image GC off) apply unless given here.
    pub extra_flags: Vec<String>,
    /// Serve the fake from its own thread ([`FakeRuntime::serve_on_thread`]), so benchmarks can
    /// tell its CPU time apart; otherwise from a task on the caller's runtime.
    pub fake_on_own_thread: bool,
    /// Images present before the agent starts (the sandbox image is always added).
    pub preload_images: Vec<String>,
}

impl Default for HollowConfig {
    fn default() -> Self {
        Self {
            node_name: "hollow-node".into(),
            extra_flags: Vec::new(),
            fake_on_own_thread: false,
            preload_images: Vec::new(),
        }
    }
}

enum Server {
    Task(JoinHandle<Result<(), FakeError>>),
    Thread(FakeThread),
}

/// The agent started in-process against a fake runtime. Every path it writes is under the base
/// directory given to [`HollowNode::start`] (which the caller owns and removes): `cgroup/` (a
/// fixture cgroup v1 tree), `manifests/`, `root/`, `logs/`, `resolv.conf` and `cri.sock`.
/// Dropping it stops the agent's tasks (its pods "keep running" in the fake, as with a real
/// kubelet) and stops serving the fake; the fake's state lives on in any clone of `fake`.
pub struct HollowNode {
    pub fake: FakeRuntime,
    /// The running agent (`agent.kubelet` holds the status manager and the health checks).
    pub agent: Agent,
    pub node: String,
    pub manifests: PathBuf,
    pub socket: PathBuf,
    pub settings: KubeletSettings,
    server: Server,
}

/// Flags a hollow node gets unless [`HollowConfig::extra_flags`] sets them.
pub const HOLLOW_DEFAULT_FLAGS: &[(&str, &str)] = &[
    ("--eviction-hard", ""),
    ("--image-gc-high-threshold", "100"),
    ("--fail-swap-on", "false"),
];

#[derive(clap::Parser)]
struct HollowFlags {
    #[command(flatten)]
    flags: Flags,
}

/// Creates a cgroup v1 fixture tree (plain directories) the agent's cgroup manager accepts.
pub fn create_cgroup_fixture(root: &Path) -> std::io::Result<()> {
    for c in ["cpu", "cpuacct", "memory", "pids", "cpuset"] {
        std::fs::create_dir_all(root.join(c))?;
        std::fs::write(root.join(c).join("cgroup.procs"), "")?;
    }
    std::fs::write(root.join("cpuset/cpuset.cpus"), "0-1\n")?;
    std::fs::write(root.join("cpuset/cpuset.mems"), "0\n")?;
    Ok(())
}

impl HollowNode {
    /// Starts a fake runtime and the agent under `base` (which must exist), and returns once
    /// both are running. Must be called from within a tokio runtime.
    pub async fn start(base: &Path, cfg: HollowConfig) -> Result<Self, HollowError> {
        use clap::Parser;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| HollowError::Io { path, source }
        };
        let cgroup = base.join("cgroup");
        let manifests = base.join("manifests");
        let root = base.join("root");
        let logs = base.join("logs");
        let resolv = base.join("resolv.conf");
        let socket = base.join("cri.sock");
        create_cgroup_fixture(&cgroup).map_err(io(&cgroup))?;
        std::fs::create_dir_all(&manifests).map_err(io(&manifests))?;
        std::fs::create_dir_all(&logs).map_err(io(&logs))?;
        std::fs::write(&resolv, "nameserver 10.250.255.254\nsearch hollow.local\n")
            .map_err(io(&resolv))?;

        let mut argv: Vec<String> = vec![
            "hollow".into(),
            "--container-runtime-endpoint".into(),
            format!("unix://{}", socket.display()),
            "--pod-manifest-path".into(),
            manifests.display().to_string(),
            "--root-dir".into(),
            root.display().to_string(),
            "--hostname-override".into(),
            cfg.node_name.clone(),
            "--read-only-port".into(),
            "0".into(),
            "--healthz-port".into(),
            "0".into(),
            "--cadvisor-port".into(),
            "0".into(),
        ];
        // The host's disks and memory are not the hollow node's: unless the caller says
        // otherwise, no hard eviction thresholds, no image GC and no swap check, so that the
        // real machine's pressure or swap (or the fixture tree's missing files) never evicts a
        // hollow pod or stops a hollow node (kubemark's hollow kubelet does not check swap
        // either).
        for (flag, value) in HOLLOW_DEFAULT_FLAGS {
            let given = cfg
                .extra_flags
                .iter()
                .any(|f| f == flag || f.starts_with(&format!("{flag}=")));
            if !given {
                argv.push(format!("{flag}={value}"));
            }
        }
        argv.extend(cfg.extra_flags.iter().cloned());
        let flags = HollowFlags::try_parse_from(&argv)
            .map_err(|e| HollowError::Flags {
                flags: argv[1..].to_vec(),
                message: e.to_string(),
            })?
            .flags;
        let mut settings = config::resolve(&flags, None, &cfg.node_name)?;
        settings.pod_logs_dir = logs;
        settings.resolv_conf = Some(resolv);
        // Hollow nodes share one host: the authenticated kubelet API only when asked for with
        // a port of the caller's choosing, so that nodes never compete for 10250.
        settings.enable_server = cfg
            .extra_flags
            .iter()
            .any(|f| f == "--port" || f.starts_with("--port="));

        let fake = FakeRuntime::new();
        fake.preload_image(&settings.pod_infra_container_image);
        for image in &cfg.preload_images {
            fake.preload_image(image);
        }
        let server = if cfg.fake_on_own_thread {
            Server::Thread(fake.serve_on_thread(&socket)?)
        } else {
            Server::Task(fake.serve(&socket).await?)
        };
        let host = HostPaths {
            cgroup_mount: cgroup,
            proc_root: PathBuf::from("/proc"),
        };
        let agent = crate::agent::start_with(&settings, &host)
            .await
            .map_err(|e| HollowError::Agent(format!("{e:#}")))?;
        Ok(Self {
            fake,
            agent,
            node: settings.node_name.clone(),
            manifests,
            socket,
            settings,
            server,
        })
    }

    /// The static pod name the agent gives the manifest's pod `name`.
    pub fn pod_name(&self, name: &str) -> String {
        format!("{name}-{}", self.node)
    }

    /// Writes a manifest file atomically (written aside, then renamed into the directory).
    pub fn write_manifest(&self, file: &str, content: &str) -> std::io::Result<()> {
        let tmp = self.manifests.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, content)?;
        std::fs::rename(&tmp, self.manifests.join(file))
    }

    pub fn remove_manifest(&self, file: &str) -> std::io::Result<()> {
        std::fs::remove_file(self.manifests.join(file))
    }

    /// The pod named `name` in the manifest, with its status, as the status manager has it.
    pub fn pod(&self, name: &str) -> Option<Pod> {
        let full = self.pod_name(name);
        self.agent
            .kubelet
            .status
            .pods()
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some(full.as_str()))
    }

    /// CPU time of the fake's own thread (zero unless it was started on one).
    pub fn fake_cpu_time(&self) -> Duration {
        match &self.server {
            Server::Thread(t) => t.cpu_time(),
            Server::Task(_) => Duration::ZERO,
        }
    }
}

impl Drop for HollowNode {
    fn drop(&mut self) {
        if let Server::Task(t) = &self.server {
            t.abort();
        }
    }
}

/// A minimal static pod manifest: one container per entry of `containers` (`name`, `image`),
/// the given restart policy, and nothing else.
pub fn pod_manifest(name: &str, restart_policy: &str, containers: &[(&str, &str)]) -> String {
    let pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "restartPolicy": restart_policy,
            "containers": containers.iter().map(|(n, image)| serde_json::json!({
                "name": n,
                "image": image,
                "imagePullPolicy": "IfNotPresent",
            })).collect::<Vec<_>>(),
        },
    });
    pod.to_string()
}

/// Whether the pod's phase is Running and every container is running.
pub fn pod_running(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.as_ref().is_some_and(|cs| {
            !cs.is_empty()
                && cs
                    .iter()
                    .all(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
        })
}
