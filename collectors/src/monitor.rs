//! The monitoring core: discovery, the housekeeping loop, the rayon sampling pool, the
//! container registry, subscribers and on-demand sampling.
//!
//! [`Monitor::new`] detects the layout, walks the hierarchies and gathers machine info;
//! [`Monitor::start`] runs the housekeeping thread: every interval it samples the node, then
//! every container in parallel on the pool, then notifies subscribers; between passes it
//! waits on inotify and applies container creations and removals at once (a removed
//! container's descriptors are closed immediately); every rescan interval it walks the
//! hierarchies again to catch anything inotify missed. [`Monitor::housekeep`] runs one pass
//! synchronously (tests, benchmarks).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TrySendError};
use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;

use crate::discovery::{Change, Discovery, DiscoveryError, NameFilter};
use crate::files;
use crate::layout::{CgroupLayout, LayoutError};
use crate::machine::{self, MachineError, MachineInfo, MachinePaths, VersionInfo};
use crate::model::{fs_role, ContainerStats, NodeStats, Timestamp};
use crate::ring::Ring;
use crate::sampler::{
    read_spec, CgroupPaths, ContainerSampler, ContainerSpec, NodeSampler, Outcome, SamplerOptions,
};
use crate::sync::Arc as RingArc;
use crate::sys;

/// Errors of the monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// Layout detection failed.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// Machine info could not be gathered.
    #[error(transparent)]
    Machine(#[from] MachineError),
    /// A configuration value is out of range.
    #[error("invalid monitor configuration: {field}: {message}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// What was expected.
        message: String,
    },
    /// The sampling pool or the housekeeping thread could not be started.
    #[error("failed to start {what}: {message}")]
    Start {
        /// Which.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// No such container is tracked.
    #[error("unknown container {name:?}")]
    UnknownContainer {
        /// The name asked for.
        name: String,
    },
    /// The container's cgroup disappeared while sampling it on demand.
    #[error("container {name:?} vanished")]
    Vanished {
        /// The container.
        name: String,
    },
}

/// Monitor configuration. Every path is a parameter; defaults are the host's.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// cgroup root (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// procfs root (`/proc`).
    pub proc_root: PathBuf,
    /// sysfs root (`/sys`).
    pub sys_root: PathBuf,
    /// Host root filesystem (`/`), for machine id and OS release.
    pub rootfs: PathBuf,
    /// Time between passes (at least 100 ms; default 1 s).
    pub housekeeping_interval: Duration,
    /// History kept per container (default 2 min).
    pub storage_duration: Duration,
    /// Time between full rescans of the hierarchies (default 10 s; inotify covers between).
    pub rescan_interval: Duration,
    /// Sampling threads (0: one per CPU).
    pub threads: usize,
    /// Which cgroups to track.
    pub filter: NameFilter,
    /// Keep descriptors open and `pread` them (default true).
    pub keep_fds: bool,
    /// Watch the hierarchies with inotify (default true).
    pub use_inotify: bool,
    /// Sample `/proc/<pid>/net/dev` also for cgroups in the host network namespace.
    pub network_in_host_netns: bool,
    /// Filesystems whose capacity and usage the node sample carries: `(fs_role bits, path)`.
    pub fs_paths: Vec<(u8, PathBuf)>,
    /// Re-read limits, peak usage and PSI files every this many passes (default
    /// [`crate::sampler::SLOW_FILE_EVERY`]; 1: every file every pass).
    pub slow_file_every: u64,
    /// Count each container's open descriptors and sockets on slow passes (cAdvisor's
    /// `process` metrics, which the kubelet enables and standalone cAdvisor leaves off; default
    /// off). See [`crate::sampler::SamplerOptions::process_fds`].
    pub process_fds: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            cgroup_root: "/sys/fs/cgroup".into(),
            proc_root: "/proc".into(),
            sys_root: "/sys".into(),
            rootfs: "/".into(),
            housekeeping_interval: Duration::from_secs(1),
            storage_duration: Duration::from_secs(120),
            rescan_interval: Duration::from_secs(10),
            threads: 0,
            filter: NameFilter::all(),
            keep_fds: true,
            use_inotify: true,
            network_in_host_netns: false,
            fs_paths: vec![
                (fs_role::ROOT, "/".into()),
                (fs_role::IMAGE, "/var/lib/kubelet-rs/containerd".into()),
                (fs_role::LOG, "/var/log".into()),
            ],
            slow_file_every: crate::sampler::SLOW_FILE_EVERY,
            process_fds: false,
        }
    }
}

/// The smallest housekeeping interval accepted.
pub const MIN_HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);

/// One tracked container: its name, paths, history ring and sampling state.
pub struct Container {
    name: String,
    paths: CgroupPaths,
    ring: OnceLock<RingArc<Ring>>,
    sampler: Mutex<ContainerSampler>,
    gone: AtomicBool,
}

impl std::fmt::Debug for Container {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Container")
            .field("name", &self.name)
            .field("gone", &self.is_gone())
            .finish()
    }
}

impl Container {
    fn new(name: String, paths: CgroupPaths) -> Container {
        Container {
            sampler: Mutex::new(ContainerSampler::new(name.clone(), paths.clone())),
            name,
            paths,
            ring: OnceLock::new(),
            gone: AtomicBool::new(false),
        }
    }

    /// The cgroup name (`/kubepods/burstable/pod<uid>/<id>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cgroup's directories.
    pub fn paths(&self) -> &CgroupPaths {
        &self.paths
    }

    /// Whether the cgroup was found removed.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// The newest sample.
    pub fn latest(&self) -> Option<ContainerStats> {
        self.ring.get()?.latest()
    }

    /// The `n` most recent samples, oldest first (`n < 0`: all).
    pub fn recent(&self, n: i64) -> Vec<ContainerStats> {
        self.ring.get().map(|r| r.recent(n)).unwrap_or_default()
    }

    /// Samples taken in `[start, end]`, the `max` most recent (`max < 0`: all), oldest first.
    pub fn range(&self, start: Timestamp, end: Timestamp, max: i64) -> Vec<ContainerStats> {
        self.ring
            .get()
            .map(|r| r.range(start, end, max))
            .unwrap_or_default()
    }

    /// Reads the container's spec (limits, creation time) now.
    pub fn spec(&self) -> ContainerSpec {
        read_spec(&self.paths)
    }

    /// Memory held by this container's history.
    pub fn ring_bytes(&self) -> usize {
        self.ring.get().map_or(0, |r| r.memory_bytes())
    }

    /// Descriptors this container keeps open now (0 once it is gone).
    pub fn kept_fds(&self) -> usize {
        self.sampler.lock().kept_fds()
    }

    /// The files sampled every pass (known after the first sample).
    pub fn sampled_files(&self) -> Vec<PathBuf> {
        self.sampler.lock().file_paths()
    }

    fn sample(
        &self,
        ts: Timestamp,
        opts: &SamplerOptions,
        buf: &mut Vec<u8>,
        node: Option<&crate::model::NodeMemoryStats>,
    ) -> Outcome {
        let mut s = self.sampler.lock();
        let out = s.sample(ts, opts, buf, node);
        if self.ring.get().is_none() {
            if let Some(r) = s.ring() {
                let _ = self.ring.set(r.clone());
            }
        }
        if out == Outcome::Vanished {
            self.gone.store(true, Ordering::Relaxed);
        }
        out
    }

    fn close(&self) {
        self.sampler.lock().close();
        self.gone.store(true, Ordering::Relaxed);
    }
}

/// Sent to subscribers after every pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassEvent {
    /// Pass number, from 1.
    pub seq: u64,
    /// The timestamp of the pass's samples.
    pub timestamp: Timestamp,
    /// Containers sampled.
    pub sampled: usize,
    /// Containers found gone during the pass.
    pub vanished: usize,
    /// Wall time of the pass.
    pub wall: Duration,
    /// CPU time of the whole process during the pass.
    pub cpu: Duration,
}

/// Counters describing the monitor's own cost and state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MonitorStats {
    /// Containers tracked.
    pub containers: usize,
    /// Passes run.
    pub passes: u64,
    /// Descriptors kept open by the samplers (process-wide).
    pub kept_fds: usize,
    /// Estimated kernel memory of those descriptors, bytes.
    pub fd_kernel_bytes: usize,
    /// Memory held by all rings, bytes.
    pub ring_bytes: usize,
    /// Wall time of the last pass.
    pub last_pass_wall: Duration,
    /// Process CPU time during the last pass.
    pub last_pass_cpu: Duration,
    /// Containers found vanished, in total.
    pub vanished_total: u64,
    /// Read errors other than vanishing, in total (last counted pass).
    pub read_errors: u64,
    /// Directories watched by inotify.
    pub watches: usize,
    /// Watches that could not be added.
    pub watch_errors: u64,
    /// Soft `RLIMIT_NOFILE` in force.
    pub nofile_limit: u64,
}

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(16 * 1024));
}

/// The monitoring core. Share it as `Arc<Monitor>`.
pub struct Monitor {
    config: MonitorConfig,
    layout: CgroupLayout,
    opts: SamplerOptions,
    machine: RwLock<MachineInfo>,
    version: VersionInfo,
    containers: RwLock<BTreeMap<String, std::sync::Arc<Container>>>,
    generation: AtomicU64,
    snapshot: Mutex<(u64, Vec<std::sync::Arc<Container>>)>,
    node: Mutex<NodeSampler>,
    node_ring: OnceLock<RingArc<Ring>>,
    discovery: Mutex<Discovery>,
    pool: rayon::ThreadPool,
    subscribers: Mutex<Vec<Sender<PassEvent>>>,
    passes: AtomicU64,
    vanished_total: AtomicU64,
    last_wall: AtomicU64,
    last_cpu: AtomicU64,
    nofile: u64,
    stop: AtomicBool,
    pass_lock: Mutex<()>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor")
            .field("layout", &self.layout.kind())
            .field("containers", &self.containers.read().len())
            .finish()
    }
}

impl Monitor {
    /// Sets up the monitor: validates the configuration, raises the descriptor limit,
    /// detects the cgroup layout, discovers containers and gathers machine info. Sampling
    /// starts with [`Monitor::start`] or [`Monitor::housekeep`].
    pub fn new(config: MonitorConfig) -> Result<std::sync::Arc<Monitor>, MonitorError> {
        if config.housekeeping_interval < MIN_HOUSEKEEPING_INTERVAL {
            return Err(MonitorError::InvalidConfig {
                field: "housekeeping_interval",
                message: format!(
                    "{:?} is below the minimum of 100ms",
                    config.housekeeping_interval
                ),
            });
        }
        if config.storage_duration < config.housekeeping_interval {
            return Err(MonitorError::InvalidConfig {
                field: "storage_duration",
                message: "must be at least one housekeeping interval".into(),
            });
        }
        // Each container keeps about a dozen descriptors open: ask for the hard limit.
        let nofile = sys::raise_nofile_limit(u64::MAX).unwrap_or(0);
        let layout = CgroupLayout::detect(&config.cgroup_root)?;
        let mut discovery = Discovery::new(&layout, config.filter.clone(), config.use_inotify)?;
        let names = discovery.scan()?;
        let paths = MachinePaths {
            sys_root: config.sys_root.clone(),
            proc_root: config.proc_root.clone(),
            rootfs: config.rootfs.clone(),
        };
        let machine = machine::machine_info(&paths)?;
        let version = machine::version_info(&paths);
        let slots = (config.storage_duration.as_nanos() / config.housekeeping_interval.as_nanos())
            as usize
            + 2;
        let host_netns = std::fs::metadata(config.proc_root.join("1/ns/net"))
            .ok()
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let opts = SamplerOptions {
            proc_root: config.proc_root.clone(),
            keep_fds: config.keep_fds,
            network_in_host_netns: config.network_in_host_netns,
            host_netns,
            ring_slots: slots,
            max_age: config.storage_duration.as_nanos() as u64,
            slow_every: config.slow_file_every.max(1),
            process_fds: config.process_fds,
        };
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            config.threads
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("collector-{i}"))
            .build()
            .map_err(|e| MonitorError::Start {
                what: "sampling pool",
                message: e.to_string(),
            })?;
        let node = NodeSampler::new(&config.proc_root, config.keep_fds, config.fs_paths.clone());
        let mut map = BTreeMap::new();
        for n in names {
            let p = CgroupPaths::resolve(&layout, &n);
            map.insert(n.clone(), std::sync::Arc::new(Container::new(n, p)));
        }
        Ok(std::sync::Arc::new(Monitor {
            config,
            layout,
            opts,
            machine: RwLock::new(machine),
            version,
            containers: RwLock::new(map),
            generation: AtomicU64::new(1),
            snapshot: Mutex::new((0, Vec::new())),
            node: Mutex::new(node),
            node_ring: OnceLock::new(),
            discovery: Mutex::new(discovery),
            pool,
            subscribers: Mutex::new(Vec::new()),
            passes: AtomicU64::new(0),
            vanished_total: AtomicU64::new(0),
            last_wall: AtomicU64::new(0),
            last_cpu: AtomicU64::new(0),
            nofile,
            stop: AtomicBool::new(false),
            pass_lock: Mutex::new(()),
        }))
    }

    /// The configuration in use.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// The cgroup layout found.
    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    /// Machine information gathered at start (or at the last [`Monitor::refresh_machine_info`]).
    pub fn machine_info(&self) -> MachineInfo {
        self.machine.read().clone()
    }

    /// Re-reads machine information (e.g. after CPU hotplug).
    pub fn refresh_machine_info(&self) -> Result<(), MonitorError> {
        let m = machine::machine_info(&MachinePaths {
            sys_root: self.config.sys_root.clone(),
            proc_root: self.config.proc_root.clone(),
            rootfs: self.config.rootfs.clone(),
        })?;
        *self.machine.write() = m;
        Ok(())
    }

    /// Kernel and OS version.
    pub fn version_info(&self) -> &VersionInfo {
        &self.version
    }

    /// Names of all tracked containers, sorted.
    pub fn container_names(&self) -> Vec<String> {
        self.containers.read().keys().cloned().collect()
    }

    /// The container named `name` (`/` is the root cgroup).
    pub fn container(&self, name: &str) -> Option<std::sync::Arc<Container>> {
        self.containers.read().get(name).cloned()
    }

    /// `name` and every container below it, sorted by name (cAdvisor's `recursive=true`).
    pub fn subcontainers(&self, name: &str) -> Vec<std::sync::Arc<Container>> {
        let map = self.containers.read();
        let prefix = if name == "/" {
            "/".to_string()
        } else {
            format!("{}/", name.trim_end_matches('/'))
        };
        let name = name.trim_end_matches('/');
        let name = if name.is_empty() { "/" } else { name };
        map.range(name.to_string()..)
            .take_while(|(k, _)| k.as_str() == name || k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&prefix))
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// The newest node sample.
    pub fn node_latest(&self) -> Option<NodeStats> {
        self.node_ring.get()?.latest()
    }

    /// The `n` most recent node samples, oldest first.
    pub fn node_recent(&self, n: i64) -> Vec<NodeStats> {
        self.node_ring
            .get()
            .map(|r| r.recent(n))
            .unwrap_or_default()
    }

    /// A channel that receives a [`PassEvent`] after every pass. Slow subscribers miss
    /// events (the channel holds 16); a dropped receiver is forgotten.
    pub fn subscribe(&self) -> Receiver<PassEvent> {
        let (tx, rx) = crossbeam::channel::bounded(16);
        self.subscribers.lock().push(tx);
        rx
    }

    /// Samples container `name` now (for a fast reaction, e.g. the eviction manager
    /// confirming a threshold) and returns the new sample, which also enters its history.
    pub fn sample_now(&self, name: &str) -> Result<ContainerStats, MonitorError> {
        let c = self
            .container(name)
            .ok_or_else(|| MonitorError::UnknownContainer { name: name.into() })?;
        let node = self.node_latest().map(|n| n.memory);
        let ts = sys::now_unix_nanos();
        let out = READ_BUF.with(|b| c.sample(ts, &self.opts, &mut b.borrow_mut(), node.as_ref()));
        match out {
            Outcome::Sampled => c
                .latest()
                .ok_or_else(|| MonitorError::Vanished { name: name.into() }),
            Outcome::Vanished => Err(MonitorError::Vanished { name: name.into() }),
        }
    }

    /// Counters about the monitor itself.
    pub fn stats(&self) -> MonitorStats {
        let containers = self.containers.read();
        let ring_bytes = containers.values().map(|c| c.ring_bytes()).sum::<usize>()
            + self.node_ring.get().map_or(0, |r| r.memory_bytes());
        let read_errors = containers
            .values()
            .filter_map(|c| c.sampler.try_lock().map(|s| s.errors))
            .sum::<u64>()
            + self.node.try_lock().map_or(0, |n| n.errors);
        let d = self.discovery.try_lock();
        let kept = files::kept_fd_count();
        MonitorStats {
            containers: containers.len(),
            passes: self.passes.load(Ordering::Relaxed),
            kept_fds: kept,
            fd_kernel_bytes: kept * files::KERNEL_BYTES_PER_FD,
            ring_bytes,
            last_pass_wall: Duration::from_nanos(self.last_wall.load(Ordering::Relaxed)),
            last_pass_cpu: Duration::from_nanos(self.last_cpu.load(Ordering::Relaxed)),
            vanished_total: self.vanished_total.load(Ordering::Relaxed),
            read_errors,
            watches: d.as_ref().map_or(0, |d| d.watch_count()),
            watch_errors: d.as_ref().map_or(0, |d| d.watch_errors()),
            nofile_limit: self.nofile,
        }
    }

    fn add(&self, name: String) {
        let mut map = self.containers.write();
        let known = map.get(&name).map(|c| dir_count(c.paths()));
        let p = CgroupPaths::resolve(&self.layout, &name);
        if p.is_empty() || known.is_some_and(|n| dir_count(&p) <= n) {
            return;
        }
        // New, or seen in more hierarchies than when first found: runc creates a container's
        // directories one hierarchy after another, and the first inotify event can arrive
        // before the rest exist. Start over with every directory.
        if let Some(old) = map.get(&name) {
            old.close();
        }
        map.insert(name.clone(), std::sync::Arc::new(Container::new(name, p)));
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    fn remove(&self, name: &str) {
        let removed = self.containers.write().remove(name);
        if let Some(c) = removed {
            // Close its descriptors now, not at the next pass: a kept net/dev descriptor
            // holds the pod's network namespace.
            c.close();
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Applies pending inotify events. Returns whether anything changed.
    pub fn apply_events(&self) -> bool {
        let mut changes = Vec::new();
        let overflow = self.discovery.lock().read_events(&mut changes);
        let any = !changes.is_empty();
        for c in changes {
            match c {
                Change::Added(n) => self.add(n),
                Change::Removed(n) => self.remove(&n),
            }
        }
        if overflow {
            let _ = self.rescan();
        }
        any || overflow
    }

    /// Walks the hierarchies and reconciles the registry with what exists.
    pub fn rescan(&self) -> Result<(), MonitorError> {
        let names = self.discovery.lock().scan()?;
        let existing = self.container_names();
        for n in &existing {
            if !names.contains(n) {
                self.remove(n);
            }
        }
        for n in names {
            self.add(n);
        }
        Ok(())
    }

    fn snapshot(&self) -> Vec<std::sync::Arc<Container>> {
        let gen = self.generation.load(Ordering::Relaxed);
        let mut s = self.snapshot.lock();
        if s.0 != gen {
            s.1.clear();
            s.1.extend(self.containers.read().values().cloned());
            s.0 = gen;
        }
        s.1.clone()
    }

    /// Runs one pass now: the node, then every container on the pool; notifies subscribers.
    pub fn housekeep(&self) -> PassEvent {
        let _pass = self.pass_lock.lock();
        let wall0 = Instant::now();
        let cpu0 = sys::process_cpu_time();
        let ts = sys::now_unix_nanos();
        let node_mem = {
            let mut node = self.node.lock();
            let mem = READ_BUF.with(|b| node.sample(ts, &self.opts, &mut b.borrow_mut()).memory);
            if self.node_ring.get().is_none() {
                if let Some(r) = node.ring() {
                    let _ = self.node_ring.set(r.clone());
                }
            }
            mem
        };
        let list = self.snapshot();
        let opts = &self.opts;
        let vanished = AtomicU64::new(0);
        self.pool.install(|| {
            list.par_iter().with_min_len(16).for_each(|c| {
                let out =
                    READ_BUF.with(|b| c.sample(ts, opts, &mut b.borrow_mut(), Some(&node_mem)));
                if out == Outcome::Vanished {
                    vanished.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        let vanished = vanished.into_inner() as usize;
        if vanished > 0 {
            self.vanished_total
                .fetch_add(vanished as u64, Ordering::Relaxed);
            for c in list.iter().filter(|c| c.is_gone()) {
                if CgroupPaths::resolve(&self.layout, c.name()).is_empty() {
                    self.remove(c.name());
                }
            }
        }
        let wall = wall0.elapsed();
        let cpu = sys::process_cpu_time().saturating_sub(cpu0);
        self.last_wall
            .store(wall.as_nanos() as u64, Ordering::Relaxed);
        self.last_cpu
            .store(cpu.as_nanos() as u64, Ordering::Relaxed);
        let seq = self.passes.fetch_add(1, Ordering::Relaxed) + 1;
        let ev = PassEvent {
            seq,
            timestamp: ts,
            sampled: list.len() - vanished,
            vanished,
            wall,
            cpu,
        };
        self.subscribers
            .lock()
            .retain(|tx| !matches!(tx.try_send(ev), Err(TrySendError::Disconnected(_))));
        ev
    }

    /// Starts the housekeeping thread. It stops when the returned handle is stopped or
    /// dropped.
    pub fn start(self: &std::sync::Arc<Self>) -> Result<MonitorHandle, MonitorError> {
        self.stop.store(false, Ordering::Relaxed);
        let me = self.clone();
        let thread = std::thread::Builder::new()
            .name("housekeeping".into())
            .spawn(move || me.run())
            .map_err(|e| MonitorError::Start {
                what: "housekeeping thread",
                message: e.to_string(),
            })?;
        Ok(MonitorHandle {
            monitor: self.clone(),
            thread: Some(thread),
        })
    }

    fn run(&self) {
        let interval = self.config.housekeeping_interval;
        let mut next = Instant::now();
        let mut next_rescan = Instant::now() + self.config.rescan_interval;
        let fd = self.discovery.lock().fd();
        while !self.stop.load(Ordering::Relaxed) {
            self.housekeep();
            next += interval;
            let now = Instant::now();
            if next < now {
                // Fell behind: skip the missed ticks rather than run back to back.
                next = now + interval;
            }
            loop {
                let now = Instant::now();
                if now >= next || self.stop.load(Ordering::Relaxed) {
                    break;
                }
                let wait = (next - now).min(Duration::from_millis(200));
                match fd {
                    Some(fd) => {
                        if sys::poll_readable(fd, wait).unwrap_or(false) {
                            self.apply_events();
                        }
                    }
                    None => std::thread::sleep(wait),
                }
            }
            if Instant::now() >= next_rescan {
                let _ = self.rescan();
                next_rescan = Instant::now() + self.config.rescan_interval;
            }
        }
    }
}

/// How many hierarchies a cgroup's directories were found in.
fn dir_count(p: &CgroupPaths) -> usize {
    [
        &p.cpu, &p.cpuacct, &p.memory, &p.pids, &p.blkio, &p.cpuset, &p.unified,
    ]
    .iter()
    .filter(|d| d.is_some())
    .count()
}

/// Keeps the housekeeping thread running; stops and joins it on [`MonitorHandle::stop`] or
/// drop.
pub struct MonitorHandle {
    monitor: std::sync::Arc<Monitor>,
    thread: Option<JoinHandle<()>>,
}

impl MonitorHandle {
    /// Stops the housekeeping thread and waits for it (at most one pass plus 200 ms).
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.monitor.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MonitorHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FixtureCgroup, FixtureTree, Layout};

    fn config(t: &FixtureTree) -> MonitorConfig {
        MonitorConfig {
            cgroup_root: t.root().to_path_buf(),
            proc_root: t.proc_root().to_path_buf(),
            housekeeping_interval: Duration::from_millis(100),
            storage_duration: Duration::from_secs(2),
            threads: 2,
            fs_paths: vec![(fs_role::ROOT, "/".into())],
            network_in_host_netns: true,
            ..Default::default()
        }
    }

    fn pod(t: &FixtureTree) {
        t.add_cgroup("/kubepods", &FixtureCgroup::default());
        t.add_cgroup(
            "/kubepods/pod1",
            &FixtureCgroup {
                usage_ns: 5_000_000_000,
                user_ns: 3_000_000_000,
                system_ns: 2_000_000_000,
                throttled_periods: 4,
                memory_usage: 10 << 20,
                memory_limit: Some(64 << 20),
                inactive_file: 3 << 20,
                rss: 6 << 20,
                pids: 3,
                procs: vec![4242, 4243],
                io: vec![(254, 0, 4096, 8192)],
                psi_total: Some(1000),
            },
        );
    }

    #[test]
    fn samples_fixture_trees_on_every_layout() {
        for layout in [Layout::V1, Layout::V2, Layout::Hybrid] {
            let t = FixtureTree::new(layout);
            pod(&t);
            let m = Monitor::new(config(&t)).unwrap();
            assert_eq!(
                m.container_names(),
                vec!["/", "/kubepods", "/kubepods/pod1"]
            );
            let ev = m.housekeep();
            assert_eq!((ev.seq, ev.sampled, ev.vanished), (1, 3, 0));
            let s = m.container("/kubepods/pod1").unwrap().latest().unwrap();
            assert_eq!(s.timestamp, ev.timestamp);
            let cpu = s.cpu.unwrap();
            assert_eq!(cpu.usage_total, 5_000_000_000, "{layout:?}");
            assert_eq!(cpu.usage_user, 3_000_000_000, "{layout:?}");
            assert_eq!(cpu.usage_system, 2_000_000_000, "{layout:?}");
            assert_eq!(cpu.cfs_throttled_periods, 4);
            let mem = s.memory.unwrap();
            assert_eq!(mem.usage, 10 << 20);
            assert_eq!(mem.working_set, 7 << 20, "usage - inactive_file");
            assert_eq!(mem.rss, 6 << 20);
            assert_eq!(mem.limit, 64 << 20);
            assert_eq!(s.pids.unwrap().current, 3);
            assert_eq!(s.pids.unwrap().max, u64::MAX);
            assert_eq!(s.process_count, Some(2));
            let io = s.blkio.unwrap();
            assert_eq!(io.len(), 1);
            assert_eq!((io[0].bytes.read, io[0].bytes.write), (4096, 8192));
            let net = s.network.unwrap();
            assert_eq!(net.len(), 1, "lo skipped");
            assert_eq!(net[0].counters.rx_bytes, 10);
            if layout == Layout::V1 {
                assert!(s.psi.is_empty());
            } else {
                assert_eq!(s.psi.memory.unwrap().some.total, 1000, "{layout:?}");
            }
            let node = m.node_latest().unwrap();
            assert_eq!(node.memory.total, 4_096_000 * 1024);
            assert_eq!(node.disks.len(), 1, "loop devices skipped");
            assert_eq!(node.network.len(), 1);
            assert_eq!(node.psi.cpu.unwrap().some.total, 7);
            assert_eq!(node.filesystems.len(), 1);
            // The v2 root has no memory files: its memory comes from /proc/meminfo.
            let root = m.container("/").unwrap().latest().unwrap();
            assert!(root.memory.is_some(), "{layout:?}");
        }
    }

    #[test]
    fn history_and_subscribers() {
        let t = FixtureTree::new(Layout::V2);
        pod(&t);
        let m = Monitor::new(config(&t)).unwrap();
        let rx = m.subscribe();
        for i in 1..=3u64 {
            t.write_file(
                "",
                "/kubepods/pod1",
                "memory.current",
                &format!("{}\n", i << 20),
            );
            let ev = m.housekeep();
            assert_eq!(rx.try_recv().unwrap(), ev);
        }
        let c = m.container("/kubepods/pod1").unwrap();
        let usages: Vec<u64> = c
            .recent(-1)
            .iter()
            .map(|s| s.memory.unwrap().usage)
            .collect();
        assert_eq!(usages, vec![1 << 20, 2 << 20, 3 << 20]);
        assert_eq!(c.recent(2).len(), 2);
        let all = c.recent(-1);
        let mid = c.range(all[1].timestamp, all[1].timestamp, -1);
        assert_eq!(mid.len(), 1);
        assert_eq!(mid[0].memory.unwrap().usage, 2 << 20);
        drop(rx);
        m.housekeep();
        assert!(
            m.subscribers.lock().is_empty(),
            "dropped receivers are forgotten"
        );
    }

    #[test]
    fn limits_are_reread_every_slow_pass_and_peak_tracks_usage() {
        let t = FixtureTree::new(Layout::V1);
        pod(&t);
        let m = Monitor::new(config(&t)).unwrap();
        let c = m.container("/kubepods/pod1").unwrap();
        m.housekeep();
        assert_eq!(c.latest().unwrap().memory.unwrap().limit, 64 << 20);
        t.write_file(
            "memory",
            "/kubepods/pod1",
            "memory.limit_in_bytes",
            "1048576\n",
        );
        t.write_file(
            "memory",
            "/kubepods/pod1",
            "memory.usage_in_bytes",
            "33554432\n",
        );
        let every = crate::sampler::SLOW_FILE_EVERY;
        for pass in 1..every {
            m.housekeep();
            let mem = c.latest().unwrap().memory.unwrap();
            assert_eq!(mem.limit, 64 << 20, "pass {pass}: limit not re-read yet");
            assert_eq!(mem.usage, 32 << 20, "usage is read every pass");
            assert_eq!(mem.max_usage, 32 << 20, "peak never below usage");
        }
        m.housekeep();
        assert_eq!(c.latest().unwrap().memory.unwrap().limit, 1 << 20);
    }

    #[test]
    fn cpu_bursts_come_from_cpu_stat_where_the_kernel_has_them() {
        for layout in [Layout::V1, Layout::V2] {
            let t = FixtureTree::new(layout);
            pod(&t);
            let m = Monitor::new(config(&t)).unwrap();
            let c = m.container("/kubepods/pod1").unwrap();
            // The fixture's cpu.stat is an older kernel's: no burst keys, so no figures.
            m.housekeep();
            let s = c.latest().unwrap();
            assert!(s.cpu.is_some(), "{layout:?}");
            assert_eq!(
                s.cpu_burst, None,
                "{layout:?}: nothing measured, nothing reported"
            );
            let (controller, text) = match layout {
                Layout::V1 => (
                    "cpu",
                    "nr_periods 8\nnr_throttled 4\nthrottled_time 0\nnr_bursts 3\nburst_time 2500\n",
                ),
                _ => (
                    "",
                    "usage_usec 1\nuser_usec 1\nsystem_usec 0\nnr_periods 8\nnr_throttled 4\nthrottled_usec 0\nnr_bursts 3\nburst_usec 25\n",
                ),
            };
            t.write_file(controller, "/kubepods/pod1", "cpu.stat", text);
            m.housekeep();
            let b = c.latest().unwrap().cpu_burst.expect("burst figures");
            let want_ns = if layout == Layout::V1 { 2500 } else { 25_000 };
            assert_eq!((b.bursts, b.burst_time), (3, want_ns), "{layout:?}");
        }
    }

    /// A fake `/proc/<pid>/fd` with `links` (descriptor → link target).
    fn fake_fds(t: &FixtureTree, pid: u32, links: &[&str]) {
        let dir = t.proc_root().join(pid.to_string()).join("fd");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, target) in links.iter().enumerate() {
            std::os::unix::fs::symlink(target, dir.join(i.to_string())).unwrap();
        }
    }

    #[test]
    fn descriptors_are_counted_only_when_asked_and_on_slow_passes() {
        let t = FixtureTree::new(Layout::V1);
        pod(&t);
        fake_fds(
            &t,
            4242,
            &["/dev/null", "socket:[101]", "pipe:[7]", "socket:[102]"],
        );
        fake_fds(&t, 4243, &["/dev/null", "anon_inode:[eventfd]"]);
        // Off (cAdvisor's default): no figures, not zeros.
        let m = Monitor::new(config(&t)).unwrap();
        m.housekeep();
        let s = m.container("/kubepods/pod1").unwrap().latest().unwrap();
        assert_eq!(s.fds, None);
        // On: both processes of cgroup.procs, sockets by their link.
        let m = Monitor::new(MonitorConfig {
            process_fds: true,
            ..config(&t)
        })
        .unwrap();
        let c = m.container("/kubepods/pod1").unwrap();
        m.housekeep();
        let f = c.latest().unwrap().fds.expect("counted");
        assert_eq!((f.fds, f.sockets), (6, 2));
        // A new socket shows at the next slow pass; in between the last count is carried.
        std::os::unix::fs::symlink("socket:[103]", t.proc_root().join("4243/fd/9")).unwrap();
        for _ in 1..crate::sampler::SLOW_FILE_EVERY {
            m.housekeep();
            assert_eq!(c.latest().unwrap().fds.unwrap().sockets, 2);
        }
        m.housekeep();
        let f = c.latest().unwrap().fds.unwrap();
        assert_eq!((f.fds, f.sockets), (7, 3));
        // A cgroup without processes has none, measured: zero.
        let k = m.container("/kubepods").unwrap().latest().unwrap();
        assert_eq!(k.fds.map(|f| f.fds), Some(0));
    }

    #[test]
    fn on_demand_sampling_and_unknown_containers() {
        let t = FixtureTree::new(Layout::V1);
        pod(&t);
        let m = Monitor::new(config(&t)).unwrap();
        t.write_file(
            "memory",
            "/kubepods/pod1",
            "memory.usage_in_bytes",
            "12345\n",
        );
        let s = m.sample_now("/kubepods/pod1").unwrap();
        assert_eq!(s.memory.unwrap().usage, 12345);
        assert_eq!(m.container("/kubepods/pod1").unwrap().latest().unwrap(), s);
        assert!(matches!(
            m.sample_now("/nope"),
            Err(MonitorError::UnknownContainer { .. })
        ));
    }

    #[test]
    fn vanished_cgroups_are_missed_samples_not_errors() {
        let t = FixtureTree::new(Layout::V1);
        pod(&t);
        let mut cfg = config(&t);
        cfg.use_inotify = false;
        let m = Monitor::new(cfg).unwrap();
        m.housekeep();
        t.remove_cgroup("/kubepods/pod1");
        let ev = m.housekeep();
        assert_eq!(ev.vanished, 1);
        assert!(
            m.container("/kubepods/pod1").is_none(),
            "removed from the registry"
        );
        assert_eq!(m.stats().vanished_total, 1);
        assert!(matches!(
            m.sample_now("/kubepods/pod1"),
            Err(MonitorError::UnknownContainer { .. })
        ));
    }

    #[test]
    fn inotify_and_rescan_track_new_containers() {
        let t = FixtureTree::new(Layout::Hybrid);
        let m = Monitor::new(config(&t)).unwrap();
        assert_eq!(m.container_names(), vec!["/"]);
        pod(&t);
        assert!(m.apply_events());
        assert_eq!(
            m.container_names(),
            vec!["/", "/kubepods", "/kubepods/pod1"]
        );
        assert_eq!(
            m.subcontainers("/kubepods")
                .iter()
                .map(|c| c.name().to_string())
                .collect::<Vec<_>>(),
            vec!["/kubepods", "/kubepods/pod1"]
        );
        assert_eq!(m.subcontainers("/").len(), 3);
        t.remove_cgroup("/kubepods");
        m.apply_events();
        assert_eq!(m.container_names(), vec!["/"]);
        // Without inotify, a rescan finds the same.
        t.add_cgroup("/late", &FixtureCgroup::default());
        m.rescan().unwrap();
        assert!(m.container("/late").is_some());
    }

    #[test]
    fn background_loop_samples_until_stopped() {
        let t = FixtureTree::new(Layout::V2);
        pod(&t);
        let m = Monitor::new(config(&t)).unwrap();
        let rx = m.subscribe();
        let h = m.start().unwrap();
        let first = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let second = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(second.seq, first.seq + 1);
        h.stop();
        let passes = m.stats().passes;
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(m.stats().passes, passes, "no pass after stop");
    }

    #[test]
    fn rejects_too_short_intervals() {
        let t = FixtureTree::new(Layout::V2);
        let mut cfg = config(&t);
        cfg.housekeeping_interval = Duration::from_millis(10);
        let e = Monitor::new(cfg).unwrap_err();
        assert!(e.to_string().contains("housekeeping_interval"));
    }

    #[test]
    fn containers_found_in_one_hierarchy_first_get_the_others_later() {
        let t = FixtureTree::new(Layout::V1);
        // Only the cpu hierarchy has it yet, as in the middle of runc creating a container.
        std::fs::create_dir(t.root().join("cpu/late")).unwrap();
        let m = Monitor::new(config(&t)).unwrap();
        let first = m.container("/late").unwrap();
        assert!(first.paths().cpu.is_some() && first.paths().memory.is_none());
        t.add_cgroup("/late", &FixtureCgroup::default());
        m.rescan().unwrap();
        let c = m.container("/late").unwrap();
        assert!(
            c.paths().memory.is_some() && c.paths().pids.is_some(),
            "{:?}",
            c.paths()
        );
        assert!(first.is_gone(), "the incomplete one is closed");
        m.rescan().unwrap();
        assert!(
            std::sync::Arc::ptr_eq(&c, &m.container("/late").unwrap()),
            "complete ones stay"
        );
    }
}
