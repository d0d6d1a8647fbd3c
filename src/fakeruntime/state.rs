//! The fake runtime's in-memory model: sandbox, container and image records, the name index,
//! ID and IP allocation, scripted exits, and the conversions to CRI messages. Everything here
//! runs under the handle's mutex; nothing blocks or awaits.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use proto::cri;
use tonic::Status;

use super::{CallInfo, ExecHandler, Fault, Lifecycle, Matcher, Op, RuleId};

#[derive(Debug, Clone)]
pub(super) struct SandboxRec {
    pub(super) id: String,
    pub(super) metadata: cri::PodSandboxMetadata,
    pub(super) labels: HashMap<String, String>,
    pub(super) annotations: HashMap<String, String>,
    pub(super) ready: bool,
    pub(super) created_at: i64,
    pub(super) ip: String,
    pub(super) namespace_options: Option<cri::NamespaceOption>,
    pub(super) log_directory: String,
    pub(super) runtime_handler: String,
    pub(super) name_key: String,
}

#[derive(Debug, Clone)]
pub(super) struct ContainerRec {
    pub(super) id: String,
    pub(super) sandbox_id: String,
    pub(super) pod: cri::PodSandboxMetadata,
    pub(super) metadata: cri::ContainerMetadata,
    /// The image spec of the config, as given.
    pub(super) image: cri::ImageSpec,
    /// The resolved image's ID.
    pub(super) image_id: String,
    pub(super) labels: HashMap<String, String>,
    pub(super) annotations: HashMap<String, String>,
    pub(super) mounts: Vec<cri::Mount>,
    pub(super) log_path: String,
    pub(super) state: cri::ContainerState,
    pub(super) created_at: i64,
    pub(super) started_at: i64,
    pub(super) finished_at: i64,
    pub(super) exit_code: i32,
    pub(super) reason: String,
    /// A scripted exit: (when, code, reason override).
    pub(super) exit_at: Option<(Instant, i32, Option<String>)>,
    pub(super) name_key: String,
}

#[derive(Debug, Clone)]
pub(super) struct ImageRec {
    pub(super) id: String,
    pub(super) repo_tags: Vec<String>,
    pub(super) repo_digests: Vec<String>,
    pub(super) size: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Rule<T> {
    pub(super) id: RuleId,
    pub(super) value: T,
}

pub(super) struct State {
    pub(super) next_id: u64,
    pub(super) next_rule: u64,
    pub(super) next_ip: u32,
    pub(super) last_ns: i64,
    /// Keyed by creation sequence, so lists come out in creation order.
    pub(super) sandboxes: BTreeMap<u64, SandboxRec>,
    pub(super) sandbox_ids: HashMap<String, u64>,
    pub(super) containers: BTreeMap<u64, ContainerRec>,
    pub(super) container_ids: HashMap<String, u64>,
    /// Reserved names (containerd's name index) → ID.
    pub(super) names: HashMap<String, String>,
    pub(super) images: BTreeMap<u64, ImageRec>,
    pub(super) latency: HashMap<Op, Duration>,
    pub(super) faults: Vec<Rule<Fault>>,
    pub(super) lifecycles: Vec<Rule<(Matcher, Lifecycle)>>,
    /// How many containers have a scripted exit pending.
    pub(super) pending_exits: usize,
    pub(super) down: bool,
    pub(super) network_ready: bool,
    pub(super) exec: Option<ExecHandler>,
    /// Registries (image reference prefixes) that want these credentials on PullImage.
    pub(super) registry_auth: Vec<(String, String, String)>,
    /// The credentials (username, password) of every PullImage, empty when none came.
    pub(super) pull_auths: Vec<(String, String)>,
}

/// splitmix64: a bijection on u64 with well-spread output, so distinct counters give distinct
/// (and distinct-looking) IDs.
pub(super) fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 64-hex-character ID for counter value `n`.
pub(super) fn hex_id(n: u64) -> String {
    let mut s = String::with_capacity(64);
    for i in 0..4u64 {
        s.push_str(&format!(
            "{:016x}",
            splitmix64(n.wrapping_mul(4).wrapping_add(i))
        ));
    }
    s
}

/// containerd's sandbox name: `<name>_<namespace>_<uid>_<attempt>`.
pub(super) fn sandbox_name(m: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// containerd's container name: `<container>_<pod>_<namespace>_<uid>_<attempt>`.
pub(super) fn container_name(c: &cri::ContainerMetadata, s: &cri::PodSandboxMetadata) -> String {
    format!(
        "{}_{}_{}_{}_{}",
        c.name, s.name, s.namespace, s.uid, c.attempt
    )
}

/// Docker-style reference normalization: a default registry and `library/` for one-component
/// names, `:latest` when neither tag nor digest is given. IDs (`sha256:…`) are left alone.
pub fn normalize_image(image: &str) -> String {
    if image.starts_with("sha256:") || image.is_empty() {
        return image.to_string();
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    match digest {
        Some(d) => {
            full.push('@');
            full.push_str(d);
        }
        None if !last.contains(':') => full.push_str(":latest"),
        None => {}
    }
    full
}

pub(super) fn matches_labels(
    labels: &HashMap<String, String>,
    selector: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(super) fn not_found(what: &str, id: &str) -> Status {
    Status::not_found(format!(
        "an error occurred when try to find {what} {id:?}: not found"
    ))
}

impl State {
    pub(super) fn new() -> Self {
        Self {
            next_id: 0,
            next_rule: 0,
            next_ip: 0,
            last_ns: 0,
            sandboxes: BTreeMap::new(),
            sandbox_ids: HashMap::new(),
            containers: BTreeMap::new(),
            container_ids: HashMap::new(),
            names: HashMap::new(),
            images: BTreeMap::new(),
            latency: HashMap::new(),
            faults: Vec::new(),
            lifecycles: Vec::new(),
            pending_exits: 0,
            down: false,
            network_ready: true,
            exec: None,
            registry_auth: Vec::new(),
            pull_auths: Vec::new(),
        }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub(super) fn rule_id(&mut self) -> RuleId {
        self.next_rule += 1;
        RuleId(self.next_rule)
    }

    /// Wall-clock nanoseconds, strictly increasing across calls (the agent orders objects by
    /// creation time).
    pub(super) fn now_ns(&mut self) -> i64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or(0);
        self.last_ns = wall.max(self.last_ns + 1);
        self.last_ns
    }

    pub(super) fn next_pod_ip(&mut self) -> String {
        // 10.250.0.1 .. 10.250.255.254, in order, wrapping (no .0 or .255 hosts).
        let k = self.next_ip % (256 * 254);
        self.next_ip += 1;
        format!("10.250.{}.{}", k / 254, k % 254 + 1)
    }

    /// Resolves an exact ID or a unique prefix of one (containerd's truncated-ID index).
    pub(super) fn resolve(ids: &HashMap<String, u64>, id: &str) -> Option<u64> {
        if id.is_empty() {
            return None;
        }
        if let Some(seq) = ids.get(id) {
            return Some(*seq);
        }
        let mut found = ids.iter().filter(|(k, _)| k.starts_with(id));
        match (found.next(), found.next()) {
            (Some((_, seq)), None) => Some(*seq),
            _ => None,
        }
    }

    pub(super) fn sandbox(&self, id: &str) -> Option<&SandboxRec> {
        Self::resolve(&self.sandbox_ids, id).and_then(|s| self.sandboxes.get(&s))
    }

    pub(super) fn container(&self, id: &str) -> Option<&ContainerRec> {
        Self::resolve(&self.container_ids, id).and_then(|s| self.containers.get(&s))
    }

    pub(super) fn container_mut(&mut self, id: &str) -> Option<&mut ContainerRec> {
        Self::resolve(&self.container_ids, id).and_then(|s| self.containers.get_mut(&s))
    }

    /// Applies scripted exits whose time has come.
    pub(super) fn reap(&mut self) {
        if self.pending_exits == 0 {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for c in self.containers.values() {
            if let Some((at, code, reason)) = &c.exit_at {
                if *at <= now {
                    due.push((c.id.clone(), *code, reason.clone()));
                }
            }
        }
        for (id, code, reason) in due {
            self.exit(&id, code, reason);
        }
    }

    /// Ends a running container's process.
    pub(super) fn exit(&mut self, id: &str, code: i32, reason: Option<String>) {
        let now = self.now_ns();
        let Some(c) = self.container_mut(id) else {
            return;
        };
        let had_pending = c.exit_at.take().is_some();
        if c.state == cri::ContainerState::ContainerRunning {
            c.state = cri::ContainerState::ContainerExited;
            c.finished_at = now;
            c.exit_code = code;
            c.reason =
                reason.unwrap_or_else(|| if code == 0 { "Completed" } else { "Error" }.to_string());
        }
        if had_pending {
            self.pending_exits -= 1;
        }
    }

    /// containerd's StopContainer: SIGKILL semantics for the fake, so exit code 137.
    pub(super) fn stop_container(&mut self, id: &str) {
        self.exit(id, 137, None);
    }

    pub(super) fn stop_sandbox(&mut self, seq: u64) {
        let Some(sb) = self.sandboxes.get(&seq) else {
            return;
        };
        let sb_id = sb.id.clone();
        let members: Vec<String> = self
            .containers
            .values()
            .filter(|c| c.sandbox_id == sb_id && c.state == cri::ContainerState::ContainerRunning)
            .map(|c| c.id.clone())
            .collect();
        for id in members {
            self.stop_container(&id);
        }
        if let Some(sb) = self.sandboxes.get_mut(&seq) {
            sb.ready = false;
        }
    }

    pub(super) fn remove_container(&mut self, seq: u64) {
        if let Some(c) = self.containers.remove(&seq) {
            if c.exit_at.is_some() {
                self.pending_exits -= 1;
            }
            self.container_ids.remove(&c.id);
            if self.names.get(&c.name_key) == Some(&c.id) {
                self.names.remove(&c.name_key);
            }
        }
    }

    pub(super) fn info_for_container(&self, op: Op, id: &str) -> CallInfo {
        let mut info = CallInfo::new(op);
        info.id = id.to_string();
        if let Some(c) = self.container(id) {
            info.pod_name = c.pod.name.clone();
            info.pod_namespace = c.pod.namespace.clone();
            info.pod_uid = c.pod.uid.clone();
            info.container_name = c.metadata.name.clone();
            info.image = c.image.image.clone();
        }
        info
    }

    pub(super) fn info_for_sandbox(&self, op: Op, id: &str) -> CallInfo {
        let mut info = CallInfo::new(op);
        info.id = id.to_string();
        if let Some(s) = self.sandbox(id) {
            info.pod_name = s.metadata.name.clone();
            info.pod_namespace = s.metadata.namespace.clone();
            info.pod_uid = s.metadata.uid.clone();
        }
        info
    }

    pub(super) fn find_image(&self, reference: &str) -> Option<&ImageRec> {
        if reference.is_empty() {
            return None;
        }
        let norm = normalize_image(reference);
        self.images.values().find(|i| {
            i.id == reference
                || i.id.strip_prefix("sha256:") == Some(reference)
                || i.repo_tags.contains(&norm)
                || i.repo_digests.contains(&norm)
        })
    }

    pub(super) fn add_image(&mut self, reference: &str, size: u64) -> String {
        if let Some(i) = self.find_image(reference) {
            return i.id.clone();
        }
        let seq = self.next_seq();
        let id = format!("sha256:{}", hex_id(seq));
        let norm = normalize_image(reference);
        let repo = norm.split('@').next().unwrap_or(&norm);
        let repo = match repo.rfind(':') {
            Some(i) if i > repo.rfind('/').unwrap_or(0) => &repo[..i],
            _ => repo,
        };
        let (tags, digests) = if norm.contains('@') {
            (Vec::new(), vec![norm.clone()])
        } else {
            (vec![norm.clone()], vec![format!("{repo}@{id}")])
        };
        self.images.insert(
            seq,
            ImageRec {
                id: id.clone(),
                repo_tags: tags,
                repo_digests: digests,
                size,
            },
        );
        id
    }

    pub(super) fn image_of(&self, rec: &ImageRec) -> cri::Image {
        cri::Image {
            id: rec.id.clone(),
            repo_tags: rec.repo_tags.clone(),
            repo_digests: rec.repo_digests.clone(),
            size: rec.size,
            ..Default::default()
        }
    }

    pub(super) fn pod_sandbox(s: &SandboxRec) -> cri::PodSandbox {
        cri::PodSandbox {
            id: s.id.clone(),
            metadata: Some(s.metadata.clone()),
            state: sandbox_state(s.ready),
            created_at: s.created_at,
            labels: s.labels.clone(),
            annotations: s.annotations.clone(),
            runtime_handler: s.runtime_handler.clone(),
        }
    }

    pub(super) fn sandbox_status(s: &SandboxRec) -> cri::PodSandboxStatus {
        cri::PodSandboxStatus {
            id: s.id.clone(),
            metadata: Some(s.metadata.clone()),
            state: sandbox_state(s.ready),
            created_at: s.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: s.ip.clone(),
                additional_ips: Vec::new(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: s.namespace_options.clone(),
                }),
            }),
            labels: s.labels.clone(),
            annotations: s.annotations.clone(),
            runtime_handler: s.runtime_handler.clone(),
        }
    }

    pub(super) fn list_container(c: &ContainerRec) -> cri::Container {
        cri::Container {
            id: c.id.clone(),
            pod_sandbox_id: c.sandbox_id.clone(),
            metadata: Some(c.metadata.clone()),
            image: Some(c.image.clone()),
            image_ref: c.image_id.clone(),
            state: c.state as i32,
            created_at: c.created_at,
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            image_id: c.image_id.clone(),
        }
    }

    /// containerd's ContainerStatus: the image by its first tag, the reference by its first
    /// digest when the image is still known.
    pub(super) fn container_status(&self, c: &ContainerRec) -> cri::ContainerStatus {
        let img = self.images.values().find(|i| i.id == c.image_id);
        let image = match img.and_then(|i| i.repo_tags.first()) {
            Some(tag) => cri::ImageSpec {
                image: tag.clone(),
                ..Default::default()
            },
            None => c.image.clone(),
        };
        let image_ref = img
            .and_then(|i| i.repo_digests.first().cloned())
            .unwrap_or_else(|| c.image_id.clone());
        cri::ContainerStatus {
            id: c.id.clone(),
            metadata: Some(c.metadata.clone()),
            state: c.state as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: Some(image),
            image_ref,
            reason: c.reason.clone(),
            message: String::new(),
            labels: c.labels.clone(),
            annotations: c.annotations.clone(),
            mounts: c.mounts.clone(),
            log_path: c.log_path.clone(),
            resources: None,
            image_id: c.image_id.clone(),
            user: None,
        }
    }
}

pub(super) fn sandbox_state(ready: bool) -> i32 {
    if ready {
        cri::PodSandboxState::SandboxReady as i32
    } else {
        cri::PodSandboxState::SandboxNotready as i32
    }
}
