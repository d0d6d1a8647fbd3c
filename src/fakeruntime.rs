//! Hollow mode: an in-process fake CRI runtime, and a hollow node built on it.
//!
//! [`FakeRuntime`] serves `runtime.v1.RuntimeService` and `runtime.v1.ImageService` over a Unix
//! socket with tonic, so the agent talks to it exactly as it talks to containerd (through
//! [`proto::cri::lazy_channel`] or [`proto::cri::connect`]). It keeps sandboxes, containers and
//! images in memory and follows containerd 1.6's observable behaviour where the agent depends on
//! it:
//!
//! - RunPodSandbox gives a READY sandbox with an IP from 10.250.0.0/16 (none for host-network
//!   pods); StopPodSandbox kills its containers (exit 137) and makes it NOTREADY; removing a
//!   sandbox or a container forcibly stops it first, and removing something absent succeeds.
//! - Containers go CREATED → RUNNING → EXITED. A running container's "process" runs until it is
//!   stopped, until a test makes it exit ([`FakeRuntime::exit_container`]), or until a
//!   [`Lifecycle`] rule chosen at start makes it exit. Exit reasons are containerd's:
//!   `Completed` for 0, `Error` otherwise, unless a rule says otherwise (`OOMKilled`).
//! - Sandbox and container names are reserved as containerd reserves them, so a duplicate
//!   create fails until the holder is removed.
//! - CreateContainer needs its image present; ImageStatus of a missing image is an empty answer,
//!   not an error; PullImage adds the image (there is no registry).
//! - List filters (ID or unique ID prefix, sandbox ID, state, label selector) are applied as
//!   containerd applies them. Error codes: `NotFound` for missing objects, `InvalidArgument` for
//!   malformed requests, `Unknown` where containerd answers with a plain error (an object in the
//!   wrong state, a reserved name), `Unimplemented` for RPCs the fake does not model.
//!
//! Everything is deterministic except the timestamps, which come from the real clock (kept
//! strictly increasing): IDs come from a counter, rendered as 64 hex characters like
//! containerd's, and pod IPs are handed out in order.
//!
//! Tests and benchmarks steer it through the handle: per-operation
//! [latency](FakeRuntime::set_latency), [fault injection](Fault) (fail or delay the next N
//! calls, or every call a [`Matcher`] selects), a runtime that is
//! [down](FakeRuntime::set_down), scripted container [lifecycles](Lifecycle),
//! [preloaded images](FakeRuntime::preload_image), and call counters.
//!
//! [`HollowNode`] starts the whole agent in-process against a fake runtime, with a fixture cgroup
//! tree and every directory under one base directory, so the sync loop can be driven with
//! hundreds of pods without containerd, root or real cgroups.
//!
//! Layout: this file holds the controls and the handle; `state` the in-memory model (records,
//! IDs, names, images), `service` the two tonic services, `hollow` the hollow node.

mod hollow;
mod service;
mod state;
#[cfg(test)]
mod tests;

pub use crate::cputime::{clock_cpu_time, current_thread_cpu_time};
use crate::rtthread::RuntimeThread;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use proto::cri;
use proto::cri::image_service_server::ImageServiceServer;
use proto::cri::runtime_service_server::RuntimeServiceServer;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Code;

pub use hollow::{
    create_cgroup_fixture, pod_manifest, pod_running, HollowConfig, HollowError, HollowNode,
    HOLLOW_DEFAULT_FLAGS,
};
pub use service::FakeService;
pub use state::normalize_image;
use state::{Rule, State};

/// The runtime name the fake reports in Version (container IDs read `fake://<id>`).
pub const RUNTIME_NAME: &str = "fake";
/// The fake's version string.
pub const RUNTIME_VERSION: &str = "0.1.0";
/// The size reported for images the fake pulls or preloads without a size.
pub const DEFAULT_IMAGE_SIZE: u64 = 4 << 20;
/// Where the fake claims to keep images (ImageFsInfo).
pub const IMAGE_FS_MOUNTPOINT: &str = "/var/lib/fake-runtime/images";

/// Failures of the fake's own controls and of serving it; gRPC callers see `tonic::Status`.
#[derive(Debug, thiserror::Error)]
pub enum FakeError {
    #[error("fake runtime: no container {id}")]
    NoSuchContainer { id: String },
    #[error("fake runtime: container {id} is not running (state {state:?})")]
    NotRunning {
        id: String,
        state: cri::ContainerState,
    },
    #[error("fake runtime: cannot listen on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fake runtime: serving {path} failed: {source}")]
    Serve {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("fake runtime: cannot start its thread: {0}")]
    Thread(#[source] std::io::Error),
}

// ---------------------------------------------------------------------------------------------
// Operations, matchers, faults and lifecycles: the controls.
// ---------------------------------------------------------------------------------------------

macro_rules! ops {
    ($($op:ident),* $(,)?) => {
        /// One CRI RPC, for latency, faults and call counts.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Op { $($op),* }

        impl Op {
            /// Every RPC of both services.
            pub const ALL: &'static [Op] = &[$(Op::$op),*];

            /// The RPC's name as in the CRI proto (`RunPodSandbox`).
            pub fn name(self) -> &'static str {
                match self { $(Op::$op => stringify!($op)),* }
            }
        }
    };
}

ops!(
    Version,
    RunPodSandbox,
    StopPodSandbox,
    RemovePodSandbox,
    PodSandboxStatus,
    ListPodSandbox,
    CreateContainer,
    StartContainer,
    StopContainer,
    RemoveContainer,
    ListContainers,
    ContainerStatus,
    UpdateContainerResources,
    ReopenContainerLog,
    ExecSync,
    Exec,
    Attach,
    PortForward,
    ContainerStats,
    ListContainerStats,
    PodSandboxStats,
    ListPodSandboxStats,
    UpdateRuntimeConfig,
    Status,
    CheckpointContainer,
    GetContainerEvents,
    ListMetricDescriptors,
    ListPodSandboxMetrics,
    RuntimeConfig,
    ListImages,
    ImageStatus,
    PullImage,
    RemoveImage,
    ImageFsInfo,
);

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a call is about, for [`Matcher`]s. Fields that do not apply to the call are empty: a
/// list call has only `op`; an image call has `image`; a call naming a container or sandbox
/// has its ID and the pod (and container) it belongs to, when the fake knows the object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub op: Op,
    /// The container or sandbox ID in the request.
    pub id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub container_name: String,
    /// The image in the request (image calls, CreateContainer).
    pub image: String,
}

impl CallInfo {
    fn new(op: Op) -> Self {
        Self {
            op,
            id: String::new(),
            pod_name: String::new(),
            pod_namespace: String::new(),
            pod_uid: String::new(),
            container_name: String::new(),
            image: String::new(),
        }
    }
}

/// Selects calls (for faults) or container starts (for lifecycles).
#[derive(Clone)]
pub struct Matcher(Arc<dyn Fn(&CallInfo) -> bool + Send + Sync>);

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Matcher(..)")
    }
}

impl Matcher {
    /// Every call.
    pub fn any() -> Self {
        Self(Arc::new(|_| true))
    }

    /// Any predicate over the call.
    pub fn new(f: impl Fn(&CallInfo) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Calls concerning the pod with this name (the sandbox metadata name).
    pub fn pod_name(name: impl Into<String>) -> Self {
        let name = name.into();
        Self::new(move |c| c.pod_name == name)
    }

    /// Calls concerning the pod with this UID.
    pub fn pod_uid(uid: impl Into<String>) -> Self {
        let uid = uid.into();
        Self::new(move |c| c.pod_uid == uid)
    }

    /// Calls concerning a container with this name (in any pod).
    pub fn container_name(name: impl Into<String>) -> Self {
        let name = name.into();
        Self::new(move |c| c.container_name == name)
    }

    /// Calls concerning this image, compared after normalization (`busybox` is
    /// `docker.io/library/busybox:latest`).
    pub fn image(image: &str) -> Self {
        let want = normalize_image(image);
        Self::new(move |c| normalize_image(&c.image) == want)
    }

    pub fn matches(&self, call: &CallInfo) -> bool {
        (self.0)(call)
    }
}

/// What an injected fault does to a call it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer with this gRPC status instead of doing the operation.
    Fail { code: Code, message: String },
    /// Wait this long before answering (cut short by [`FakeRuntime::release_delays`]).
    Delay(Duration),
}

/// An injected fault: an effect on the calls of one operation (or of every operation) that a
/// matcher selects, for the next `n` such calls or for all of them.
///
/// ```
/// use std::time::Duration;
/// use kubelet_rs::fakeruntime::{FakeRuntime, Fault, Matcher, Op};
///
/// let fake = FakeRuntime::new();
/// // The next pull fails as a missing repository would.
/// fake.inject(Fault::fail(Op::PullImage, tonic::Code::NotFound).times(1));
/// // Every sandbox of one pod takes five seconds (cut short by `release_delays`).
/// let slow = Fault::delay(Op::RunPodSandbox, Duration::from_secs(5))
///     .matching(Matcher::pod_name("slow"));
/// let id = fake.inject(slow);
/// fake.remove_rule(id);
/// ```
#[derive(Debug, Clone)]
pub struct Fault {
    op: Option<Op>,
    matcher: Matcher,
    effect: Effect,
    remaining: Option<u32>,
}

impl Fault {
    /// Fail every call of `op` with `code`.
    pub fn fail(op: Op, code: Code) -> Self {
        Self {
            op: Some(op),
            matcher: Matcher::any(),
            effect: Effect::Fail {
                code,
                message: format!("injected {op} failure"),
            },
            remaining: None,
        }
    }

    /// Fail every call of every operation with `code`.
    pub fn fail_all(code: Code) -> Self {
        Self {
            op: None,
            matcher: Matcher::any(),
            effect: Effect::Fail {
                code,
                message: "injected failure".into(),
            },
            remaining: None,
        }
    }

    /// Delay every call of `op` by `d`.
    pub fn delay(op: Op, d: Duration) -> Self {
        Self {
            op: Some(op),
            matcher: Matcher::any(),
            effect: Effect::Delay(d),
            remaining: None,
        }
    }

    /// Only the next `n` matching calls (then the fault is gone).
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Only calls the matcher selects.
    pub fn matching(mut self, m: Matcher) -> Self {
        self.matcher = m;
        self
    }

    /// The failure message (for [`Effect::Fail`]).
    pub fn message(mut self, msg: impl Into<String>) -> Self {
        if let Effect::Fail { message, .. } = &mut self.effect {
            *message = msg.into();
        }
        self
    }

    fn applies(&self, call: &CallInfo) -> bool {
        self.op.is_none_or(|op| op == call.op)
            && self.remaining != Some(0)
            && self.matcher.matches(call)
    }
}

/// Identifies an injected fault or lifecycle rule, for removing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

/// What a started container's process does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lifecycle {
    /// Runs until it is stopped or a test makes it exit (the default).
    Run,
    /// Exits with `code` once `after` has passed since the start (zero: at once). `reason`
    /// replaces containerd's `Completed`/`Error` (for example `OOMKilled`).
    Exit {
        code: i32,
        after: Duration,
        reason: Option<String>,
    },
}

impl Lifecycle {
    /// Exits at once with `code`.
    pub fn exit(code: i32) -> Self {
        Lifecycle::Exit {
            code,
            after: Duration::ZERO,
            reason: None,
        }
    }
}

type ExecHandler = Arc<dyn Fn(&CallInfo, &[String]) -> cri::ExecSyncResponse + Send + Sync>;

/// A container as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub sandbox_id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub name: String,
    pub attempt: u32,
    pub state: cri::ContainerState,
    pub exit_code: i32,
    pub labels: HashMap<String, String>,
}

/// A sandbox as a test sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxInfo {
    pub id: String,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub attempt: u32,
    pub ready: bool,
    pub ip: String,
    pub labels: HashMap<String, String>,
}

struct Shared {
    state: Mutex<State>,
    calls: Vec<AtomicU64>,
    /// Calls waiting out a delay right now.
    delayed: AtomicU64,
    /// Bumped by `release_delays`; delayed calls wait on it.
    release: watch::Sender<u64>,
}

/// The fake runtime: the handle tests hold to steer and inspect it. Cheap to clone; every clone
/// and the served services share one state.
#[derive(Clone)]
pub struct FakeRuntime {
    shared: Arc<Shared>,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.state.lock();
        f.debug_struct("FakeRuntime")
            .field("sandboxes", &s.sandboxes.len())
            .field("containers", &s.containers.len())
            .field("images", &s.images.len())
            .field("faults", &s.faults.len())
            .field("down", &s.down)
            .finish()
    }
}

impl FakeRuntime {
    /// An empty runtime: no images, no sandboxes, no latency, no faults.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new()),
                calls: Op::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
                delayed: AtomicU64::new(0),
                release: watch::channel(0).0,
            }),
        }
    }

    // ---- serving ----

    /// The two gRPC services, to add to a tonic server of one's own.
    pub fn services(
        &self,
    ) -> (
        RuntimeServiceServer<FakeService>,
        ImageServiceServer<FakeService>,
    ) {
        let svc = Arc::new(FakeService {
            shared: self.shared.clone(),
        });
        (
            RuntimeServiceServer::from_arc(svc.clone()),
            ImageServiceServer::from_arc(svc),
        )
    }

    /// Serves on `socket` from a task on the current tokio runtime. A stale socket file is
    /// replaced. The task ends only on a transport error; abort it to stop accepting.
    pub async fn serve(
        &self,
        socket: &Path,
    ) -> Result<JoinHandle<Result<(), FakeError>>, FakeError> {
        let listener = listen(socket)?;
        let (rt, img) = self.services();
        let path = socket.to_path_buf();
        Ok(tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(rt)
                .add_service(img)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await
                .map_err(|source| FakeError::Serve { path, source })
        }))
    }

    /// Serves on `socket` from a dedicated thread with its own single-threaded tokio runtime
    /// ([`RuntimeThread`] "fake-cri"), so that the fake's CPU time can be told apart from its
    /// client's ([`FakeThread::cpu_time`]). Returns once the socket is listening.
    pub fn serve_on_thread(&self, socket: &Path) -> Result<FakeThread, FakeError> {
        let thread = RuntimeThread::start("fake-cri").map_err(FakeError::Thread)?;
        let listener = {
            // The socket registers with the thread's reactor.
            let _in_thread = thread.handle().enter();
            listen(socket)?
        };
        let (rt_svc, img_svc) = self.services();
        thread.handle().spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(rt_svc)
                .add_service(img_svc)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "fake runtime stopped serving");
            }
        });
        Ok(FakeThread { thread })
    }

    // ---- controls ----

    /// Applies `d` before answering every call of `op` (zero removes it).
    pub fn set_latency(&self, op: Op, d: Duration) {
        let mut s = self.shared.state.lock();
        if d.is_zero() {
            s.latency.remove(&op);
        } else {
            s.latency.insert(op, d);
        }
    }

    /// Applies `d` to every operation (zero removes all latency).
    pub fn set_latency_all(&self, d: Duration) {
        for op in Op::ALL {
            self.set_latency(*op, d);
        }
    }

    /// Adds a fault; the first failing fault that matches a call decides its answer, and every
    /// matching delay adds up.
    pub fn inject(&self, fault: Fault) -> RuleId {
        let mut s = self.shared.state.lock();
        let id = s.rule_id();
        s.faults.push(Rule { id, value: fault });
        id
    }

    /// Fails the next `n` calls of `op` with `code`.
    pub fn fail_next(&self, op: Op, n: u32, code: Code) -> RuleId {
        self.inject(Fault::fail(op, code).times(n))
    }

    /// Removes a fault or a lifecycle rule.
    pub fn remove_rule(&self, id: RuleId) {
        let mut s = self.shared.state.lock();
        s.faults.retain(|r| r.id != id);
        s.lifecycles.retain(|r| r.id != id);
    }

    /// Removes every fault (not latency, not lifecycles).
    pub fn clear_faults(&self) {
        self.shared.state.lock().faults.clear();
    }

    /// Ends every delay in progress now (the calls then answer normally, or fail if a fault
    /// says so).
    pub fn release_delays(&self) {
        self.shared.release.send_modify(|g| *g += 1);
    }

    /// A runtime that is down answers every call with `Unavailable`, as a client sees a
    /// containerd that is not there.
    pub fn set_down(&self, down: bool) {
        self.shared.state.lock().down = down;
    }

    /// The NetworkReady condition reported by Status.
    pub fn set_network_ready(&self, ready: bool) {
        self.shared.state.lock().network_ready = ready;
    }

    /// What containers started from now on do; the first matching rule wins, unmatched
    /// containers [run](Lifecycle::Run).
    pub fn on_start(&self, matcher: Matcher, lifecycle: Lifecycle) -> RuleId {
        let mut s = self.shared.state.lock();
        let id = s.rule_id();
        s.lifecycles.push(Rule {
            id,
            value: (matcher, lifecycle),
        });
        id
    }

    /// The answer of ExecSync (the default: exit 0, no output).
    pub fn set_exec(
        &self,
        f: impl Fn(&CallInfo, &[String]) -> cri::ExecSyncResponse + Send + Sync + 'static,
    ) {
        self.shared.state.lock().exec = Some(Arc::new(f));
    }

    /// Makes a running container exit now with `code` (reason `Completed` or `Error`).
    pub fn exit_container(&self, id: &str, code: i32) -> Result<(), FakeError> {
        self.exit_container_with_reason(id, code, None)
    }

    /// [`exit_container`](Self::exit_container) with a reason of one's own (`OOMKilled`).
    pub fn exit_container_with_reason(
        &self,
        id: &str,
        code: i32,
        reason: Option<&str>,
    ) -> Result<(), FakeError> {
        let mut s = self.shared.state.lock();
        s.reap();
        let c = s
            .container(id)
            .ok_or_else(|| FakeError::NoSuchContainer { id: id.into() })?;
        if c.state != cri::ContainerState::ContainerRunning {
            return Err(FakeError::NotRunning {
                id: id.into(),
                state: c.state,
            });
        }
        s.exit(id, code, reason.map(str::to_string));
        Ok(())
    }

    /// Adds an image as if pulled; returns its ID.
    /// Makes PullImage of references starting with `prefix` fail (401) unless the request
    /// carries exactly these credentials.
    pub fn require_registry_auth(&self, prefix: &str, username: &str, password: &str) {
        self.shared.state.lock().registry_auth.push((
            prefix.to_string(),
            username.to_string(),
            password.to_string(),
        ));
    }

    /// The (username, password) each PullImage carried, in order (empty when none).
    pub fn pull_auths(&self) -> Vec<(String, String)> {
        self.shared.state.lock().pull_auths.clone()
    }

    pub fn preload_image(&self, reference: &str) -> String {
        self.preload_image_with_size(reference, DEFAULT_IMAGE_SIZE)
    }

    pub fn preload_image_with_size(&self, reference: &str, size: u64) -> String {
        self.shared.state.lock().add_image(reference, size)
    }

    // ---- inspection ----

    /// How many calls of `op` arrived (including failed and delayed ones).
    pub fn calls(&self, op: Op) -> u64 {
        self.shared.calls[op as usize].load(Ordering::Relaxed)
    }

    /// How many calls are waiting out a latency or an injected delay right now. A call counted
    /// here is ended by [`release_delays`](Self::release_delays).
    pub fn delayed_calls(&self) -> u64 {
        self.shared.delayed.load(Ordering::SeqCst)
    }

    /// Every container, oldest first.
    pub fn containers(&self) -> Vec<ContainerInfo> {
        let mut s = self.shared.state.lock();
        s.reap();
        s.containers
            .values()
            .map(|c| ContainerInfo {
                id: c.id.clone(),
                sandbox_id: c.sandbox_id.clone(),
                pod_name: c.pod.name.clone(),
                pod_namespace: c.pod.namespace.clone(),
                pod_uid: c.pod.uid.clone(),
                name: c.metadata.name.clone(),
                attempt: c.metadata.attempt,
                state: c.state,
                exit_code: c.exit_code,
                labels: c.labels.clone(),
            })
            .collect()
    }

    /// Every sandbox, oldest first.
    pub fn sandboxes(&self) -> Vec<SandboxInfo> {
        let s = self.shared.state.lock();
        s.sandboxes
            .values()
            .map(|sb| SandboxInfo {
                id: sb.id.clone(),
                pod_name: sb.metadata.name.clone(),
                pod_namespace: sb.metadata.namespace.clone(),
                pod_uid: sb.metadata.uid.clone(),
                attempt: sb.metadata.attempt,
                ready: sb.ready,
                ip: sb.ip.clone(),
                labels: sb.labels.clone(),
            })
            .collect()
    }

    /// The newest running container named `name` in the pod named `pod_name`.
    pub fn running_container(&self, pod_name: &str, name: &str) -> Option<String> {
        self.containers()
            .into_iter()
            .rev()
            .find(|c| {
                c.pod_name == pod_name
                    && c.name == name
                    && c.state == cri::ContainerState::ContainerRunning
            })
            .map(|c| c.id)
    }

    /// Every image reference the runtime holds (its repo tags).
    pub fn images(&self) -> Vec<String> {
        let s = self.shared.state.lock();
        s.images
            .values()
            .flat_map(|i| i.repo_tags.clone())
            .collect()
    }
}

/// Binds a Unix socket, replacing a stale socket file and creating the parent directory.
fn listen(socket: &Path) -> Result<tokio::net::UnixListener, FakeError> {
    let err = |source| FakeError::Listen {
        path: socket.to_path_buf(),
        source,
    };
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent).map_err(err)?;
    }
    match std::fs::remove_file(socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    tokio::net::UnixListener::bind(socket).map_err(err)
}

/// A fake runtime served from its own thread ([`FakeRuntime::serve_on_thread`]). Dropping it
/// stops serving, drops every connection and joins the thread.
pub struct FakeThread {
    thread: RuntimeThread,
}

impl FakeThread {
    /// CPU time the fake's thread has used: gRPC server, HTTP/2, protobuf and the fake's own
    /// bookkeeping. Zero if the platform cannot tell.
    pub fn cpu_time(&self) -> Duration {
        self.thread.cpu_time().unwrap_or_default()
    }
}

/// Starts a fake runtime serving on `socket` from a task on the current tokio runtime.
pub async fn serve(
    socket: &Path,
) -> Result<(FakeRuntime, JoinHandle<Result<(), FakeError>>), FakeError> {
    let fake = FakeRuntime::new();
    let task = fake.serve(socket).await?;
    Ok((fake, task))
}
