//! Reading one container's cgroup (or the node) into a sample.
//!
//! A [`ContainerSampler`] opens its files once (lazily, on the first pass), keeps them as
//! [`KeptFile`]s and re-reads them every pass into a reused buffer, parses them with the pure
//! parsers of [`crate::parse`], and encodes the sample into its ring. Nothing is allocated per
//! sample once the buffers have grown to size. A read that fails with `ENODEV`/`ENOENT` means
//! the cgroup is gone: every descriptor of the container is closed at once (a kept
//! `/proc/<pid>/net/dev` would otherwise keep the pod's network namespace alive) and the sample
//! is simply missed.

use std::io;
use std::path::{Path, PathBuf};

use crate::files::{read_once, KeptFile};
use crate::layout::{cgroup_dir, CgroupLayout};
use crate::model::{
    BlkioDevice, ContainerStats, CpuStats, FdStats, InterfaceStats, MemoryStats, NodeMemoryStats,
    NodeStats, PidsStats, Timestamp,
};
use crate::parse::cgroup::{self as pc, BlkioKind};
use crate::parse::procfs;
use crate::ring::{Ring, RingWriter};
use crate::sync::Arc;
use crate::sys;

/// A container's cgroup directory in each hierarchy where it exists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupPaths {
    /// v1 `cpu`.
    pub cpu: Option<PathBuf>,
    /// v1 `cpuacct`.
    pub cpuacct: Option<PathBuf>,
    /// v1 `memory`.
    pub memory: Option<PathBuf>,
    /// v1 `pids`.
    pub pids: Option<PathBuf>,
    /// v1 `blkio`.
    pub blkio: Option<PathBuf>,
    /// v1 `cpuset`.
    pub cpuset: Option<PathBuf>,
    /// The cgroup2 directory (all controllers on v2; PSI only on hybrid).
    pub unified: Option<PathBuf>,
    /// Pure v2 layout.
    pub v2: bool,
}

impl CgroupPaths {
    /// Resolves container `name` in `layout`, keeping the directories that exist.
    pub fn resolve(layout: &CgroupLayout, name: &str) -> CgroupPaths {
        let at = |h: &Option<PathBuf>| {
            h.as_ref()
                .map(|h| cgroup_dir(h, name))
                .filter(|d| d.is_dir())
        };
        let mut p = CgroupPaths::default();
        if let Some(v1) = layout.v1() {
            p.cpu = at(&v1.cpu);
            p.cpuacct = at(&v1.cpuacct);
            p.memory = at(&v1.memory);
            p.pids = at(&v1.pids);
            p.blkio = at(&v1.blkio);
            p.cpuset = at(&v1.cpuset);
        }
        p.unified = at(&layout.unified().map(Path::to_path_buf));
        p.v2 = matches!(layout, CgroupLayout::V2(_));
        p
    }

    /// Whether the cgroup exists in no hierarchy.
    pub fn is_empty(&self) -> bool {
        [
            &self.cpu,
            &self.cpuacct,
            &self.memory,
            &self.pids,
            &self.blkio,
            &self.cpuset,
            &self.unified,
        ]
        .iter()
        .all(|p| p.is_none())
    }

    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        [
            &self.memory,
            &self.cpu,
            &self.cpuacct,
            &self.pids,
            &self.blkio,
            &self.cpuset,
            &self.unified,
        ]
        .into_iter()
        .flatten()
    }
}

/// Which file a [`KeptFile`] of a container is, deciding how it is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// v1 `cpuacct.usage`.
    V1CpuacctUsage,
    /// v1 `cpuacct.stat`.
    V1CpuacctStat,
    /// v1 `cpu.stat`.
    V1CpuStat,
    /// v1 `memory.usage_in_bytes`.
    V1MemUsage,
    /// v1 `memory.max_usage_in_bytes`.
    V1MemMaxUsage,
    /// v1 `memory.limit_in_bytes`.
    V1MemLimit,
    /// v1 `memory.stat`.
    V1MemStat,
    /// v1 `memory.failcnt`.
    V1MemFailcnt,
    /// v1 `blkio.throttle.io_service_bytes[_recursive]`.
    V1BlkioBytes,
    /// v1 `blkio.throttle.io_serviced[_recursive]`.
    V1BlkioOps,
    /// v2 `cpu.stat`.
    V2CpuStat,
    /// v2 `memory.current`.
    V2MemCurrent,
    /// v2 `memory.peak`.
    V2MemPeak,
    /// v2 `memory.max`.
    V2MemMax,
    /// v2 `memory.stat`.
    V2MemStat,
    /// v2 `memory.events`.
    V2MemEvents,
    /// v2 `memory.swap.current`.
    V2SwapCurrent,
    /// v2 `io.stat`.
    V2IoStat,
    /// `pids.current` (v1 and v2).
    PidsCurrent,
    /// `cgroup.procs`.
    Procs,
    /// `cpu.pressure`.
    PsiCpu,
    /// `memory.pressure`.
    PsiMemory,
    /// `io.pressure`.
    PsiIo,
}

/// The per-pass files of a container: `(kind, path)`, in read order. Files that do not
/// exist are left out when opened.
pub fn file_plan(paths: &CgroupPaths) -> Vec<(FileKind, PathBuf)> {
    use FileKind::*;
    let mut plan = Vec::new();
    // cgroup2's cgroup.procs refreshes on pread; v1's must be reopened (see `files`), so a
    // hybrid layout reads it from the unified hierarchy when the cgroup exists there.
    let procs_dir = paths
        .unified
        .clone()
        .or_else(|| paths.dirs().next().cloned());
    let mut add = |dir: &Option<PathBuf>, kind: FileKind, file: &str| {
        if let Some(d) = dir {
            plan.push((kind, d.join(file)));
        }
    };
    if paths.v2 {
        let u = &paths.unified;
        add(u, V2CpuStat, "cpu.stat");
        add(u, V2MemCurrent, "memory.current");
        add(u, V2MemPeak, "memory.peak");
        add(u, V2MemMax, "memory.max");
        add(u, V2MemStat, "memory.stat");
        add(u, V2MemEvents, "memory.events");
        add(u, V2SwapCurrent, "memory.swap.current");
        add(u, V2IoStat, "io.stat");
        add(u, PidsCurrent, "pids.current");
    } else {
        add(&paths.cpuacct, V1CpuacctUsage, "cpuacct.usage");
        add(&paths.cpuacct, V1CpuacctStat, "cpuacct.stat");
        add(&paths.cpu, V1CpuStat, "cpu.stat");
        add(&paths.memory, V1MemUsage, "memory.usage_in_bytes");
        add(&paths.memory, V1MemMaxUsage, "memory.max_usage_in_bytes");
        add(&paths.memory, V1MemLimit, "memory.limit_in_bytes");
        add(&paths.memory, V1MemStat, "memory.stat");
        add(&paths.memory, V1MemFailcnt, "memory.failcnt");
        add(&paths.pids, PidsCurrent, "pids.current");
        let recursive = paths
            .blkio
            .as_ref()
            .is_some_and(|d| d.join("blkio.throttle.io_service_bytes_recursive").exists());
        let sfx = if recursive { "_recursive" } else { "" };
        add(
            &paths.blkio,
            V1BlkioBytes,
            &format!("blkio.throttle.io_service_bytes{sfx}"),
        );
        add(
            &paths.blkio,
            V1BlkioOps,
            &format!("blkio.throttle.io_serviced{sfx}"),
        );
    }
    add(&procs_dir, Procs, "cgroup.procs");
    add(&paths.unified, PsiCpu, "cpu.pressure");
    add(&paths.unified, PsiMemory, "memory.pressure");
    add(&paths.unified, PsiIo, "io.pressure");
    plan
}

/// Default of [`SamplerOptions::slow_every`]: files that pay off less than once a pass are
/// re-read every this many passes. Limits and peak usage change only when someone
/// reconfigures the cgroup or at a new peak; PSI files carry the kernel's own 10/60/300 s
/// averages and a stall-time total, whose 10-pass resolution matches cAdvisor's usual 10 s
/// housekeeping. In between, a sample carries the last values read (and the peak is kept at
/// least as high as the current usage).
pub const SLOW_FILE_EVERY: u64 = 10;

impl FileKind {
    /// Whether this file is re-read only every [`SamplerOptions::slow_every`] passes.
    pub fn is_slow(self) -> bool {
        matches!(
            self,
            FileKind::V1MemLimit
                | FileKind::V1MemMaxUsage
                | FileKind::V2MemMax
                | FileKind::V2MemPeak
                | FileKind::PsiCpu
                | FileKind::PsiMemory
                | FileKind::PsiIo
        )
    }
}

/// What one sampling attempt gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A sample was taken and stored.
    Sampled,
    /// The cgroup is gone; its descriptors are closed. Not an error.
    Vanished,
}

/// Sampling options shared by all containers.
#[derive(Clone, Debug)]
pub struct SamplerOptions {
    /// procfs root.
    pub proc_root: PathBuf,
    /// Keep descriptors open and `pread` them (false: open/read/close every pass).
    pub keep_fds: bool,
    /// Read `/proc/<pid>/net/dev` even when the container shares the host's network
    /// namespace (off by default: host-network cgroups would all report the host's traffic).
    pub network_in_host_netns: bool,
    /// Inode of the host network namespace (`<proc>/1/ns/net`), to tell pod namespaces apart.
    pub host_netns: Option<u64>,
    /// Records kept per ring.
    pub ring_slots: usize,
    /// Age limit of ring records, ns.
    pub max_age: u64,
    /// Re-read slow files ([`FileKind::is_slow`]) every this many passes (1: every pass).
    pub slow_every: u64,
    /// Count the descriptors and sockets of each cgroup's processes (cAdvisor's `process`
    /// metrics: `fd_count`, `socket_count`), on slow passes only: it lists `/proc/<pid>/fd` and
    /// reads every link, which costs more than the rest of a sample. Off: no figures at all.
    pub process_fds: bool,
}

/// The sampling state of one container: its open files, reused buffers and ring writer.
/// Lives behind a mutex in the container; whoever holds it is the ring's single writer.
pub struct ContainerSampler {
    name: String,
    paths: CgroupPaths,
    files: Vec<(FileKind, KeptFile)>,
    opened: bool,
    net: Option<KeptFile>,
    gone: bool,
    pids_max: u64,
    passes: u64,
    mem_limit: u64,
    mem_peak: u64,
    psi: crate::model::PsiStats,
    fds: Option<FdStats>,
    stats: ContainerStats,
    blk: Vec<BlkioDevice>,
    ifaces: Vec<InterfaceStats>,
    words: Vec<u64>,
    writer: Option<RingWriter>,
    /// Read errors other than "vanished", for [`crate::MonitorStats`].
    pub(crate) errors: u64,
}

impl ContainerSampler {
    /// A sampler for container `name` at `paths` (files are opened on the first sample).
    pub fn new(name: String, paths: CgroupPaths) -> ContainerSampler {
        ContainerSampler {
            name,
            paths,
            files: Vec::new(),
            opened: false,
            net: None,
            gone: false,
            pids_max: u64::MAX,
            passes: 0,
            mem_limit: u64::MAX,
            mem_peak: 0,
            psi: Default::default(),
            fds: None,
            stats: ContainerStats::default(),
            blk: Vec::new(),
            ifaces: Vec::new(),
            words: Vec::new(),
            writer: None,
            errors: 0,
        }
    }

    /// The container's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the cgroup was found gone (all descriptors closed).
    pub fn is_gone(&self) -> bool {
        self.gone
    }

    /// Descriptors this container keeps open now.
    pub fn kept_fds(&self) -> usize {
        self.files
            .iter()
            .map(|(_, f)| f)
            .chain(self.net.as_ref())
            .filter(|f| f.mode() == crate::files::ReadMode::Pread)
            .count()
    }

    /// The files read every pass (after the first sample).
    pub fn file_paths(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .map(|(_, f)| f.path().to_path_buf())
            .chain(self.net.as_ref().map(|f| f.path().to_path_buf()))
            .collect()
    }

    /// Closes every descriptor and marks the container gone.
    pub fn close(&mut self) {
        self.files.clear();
        self.net = None;
        self.gone = true;
    }

    fn open(&mut self, opts: &SamplerOptions, buf: &mut Vec<u8>) -> io::Result<()> {
        for (kind, path) in file_plan(&self.paths) {
            match KeptFile::open(path, opts.keep_fds, buf) {
                Ok(Some(f)) => self.files.push((kind, f)),
                Ok(None) => {}
                Err(e) if sys::is_vanished(&e) => return Err(e),
                // Present but unreadable (PSI disabled: EOPNOTSUPP): leave the metric out.
                Err(_) => self.errors += 1,
            }
        }
        if let Some(p) = &self.paths.pids {
            self.pids_max = read_single(&p.join("pids.max")).unwrap_or(u64::MAX);
        } else if let (true, Some(u)) = (self.paths.v2, &self.paths.unified) {
            self.pids_max = read_single(&u.join("pids.max")).unwrap_or(u64::MAX);
        }
        self.opened = true;
        Ok(())
    }

    fn open_net(&mut self, pid: u32, opts: &SamplerOptions, buf: &mut Vec<u8>) {
        let pdir = opts.proc_root.join(pid.to_string());
        if !opts.network_in_host_netns {
            let ns = std::fs::metadata(pdir.join("ns/net"))
                .ok()
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m));
            if ns.is_none() || ns == opts.host_netns {
                return;
            }
        }
        if let Ok(Some(f)) = KeptFile::open(pdir.join("net/dev"), opts.keep_fds, buf) {
            self.net = Some(f);
        }
    }

    /// Takes one sample at `ts` and stores it in the ring. `node_memory` fills the memory of
    /// a root cgroup that has no memory files (cgroup v2 root).
    pub fn sample(
        &mut self,
        ts: Timestamp,
        opts: &SamplerOptions,
        buf: &mut Vec<u8>,
        node_memory: Option<&NodeMemoryStats>,
    ) -> Outcome {
        if self.gone {
            return Outcome::Vanished;
        }
        if !self.opened && self.open(opts, buf).is_err() {
            self.close();
            return Outcome::Vanished;
        }
        self.stats.reset(ts);
        self.blk.clear();
        self.ifaces.clear();
        let mut cpu = CpuStats::default();
        let mut mem = MemoryStats {
            limit: u64::MAX,
            ..Default::default()
        };
        let (mut have_cpu, mut have_mem, mut have_blk) = (false, false, false);
        let mut first_pid = None;
        let slow_pass = self.passes.is_multiple_of(opts.slow_every.max(1));
        self.passes += 1;
        for (kind, f) in self.files.iter_mut() {
            if !slow_pass && kind.is_slow() {
                continue;
            }
            let b = match f.read(buf) {
                Ok(b) => b,
                Err(e) if sys::is_vanished(&e) => {
                    self.close();
                    return Outcome::Vanished;
                }
                Err(_) => {
                    self.errors += 1;
                    continue;
                }
            };
            use FileKind::*;
            match kind {
                V1CpuacctUsage => {
                    cpu.usage_total = pc::single_u64(b).unwrap_or(0);
                    have_cpu = true;
                }
                V1CpuacctStat => {
                    (cpu.usage_user, cpu.usage_system) = pc::v1_cpuacct_stat(b);
                    have_cpu = true;
                }
                V1CpuStat => {
                    self.stats.cpu_burst = pc::v1_cpu_stat(b, &mut cpu);
                    have_cpu = true;
                }
                V2CpuStat => {
                    (cpu, self.stats.cpu_burst) = pc::v2_cpu_stat(b);
                    have_cpu = true;
                }
                V1MemUsage | V2MemCurrent => {
                    mem.usage = pc::single_u64(b).unwrap_or(0);
                    have_mem = true;
                }
                V1MemMaxUsage | V2MemPeak => self.mem_peak = pc::single_u64(b).unwrap_or(0),
                V1MemLimit | V2MemMax => self.mem_limit = pc::single_u64(b).unwrap_or(u64::MAX),
                V1MemStat => {
                    pc::v1_memory_stat(b, &mut mem);
                    have_mem = true;
                }
                V2MemStat => {
                    pc::v2_memory_stat(b, &mut mem);
                    have_mem = true;
                }
                V1MemFailcnt => mem.failcnt = pc::single_u64(b).unwrap_or(0),
                V2MemEvents => (mem.failcnt, mem.oom_kill) = pc::v2_memory_events(b),
                V2SwapCurrent => mem.swap = pc::single_u64(b).unwrap_or(0),
                V1BlkioBytes => {
                    pc::v1_blkio(b, BlkioKind::Bytes, &mut self.blk);
                    have_blk = true;
                }
                V1BlkioOps => {
                    pc::v1_blkio(b, BlkioKind::Ops, &mut self.blk);
                    have_blk = true;
                }
                V2IoStat => {
                    pc::v2_io_stat(b, &mut self.blk);
                    have_blk = true;
                }
                PidsCurrent => {
                    self.stats.pids = Some(PidsStats {
                        current: pc::single_u64(b).unwrap_or(0),
                        max: self.pids_max,
                    })
                }
                Procs => {
                    let (n, first) = pc::pid_list(b);
                    self.stats.process_count = Some(n);
                    first_pid = first;
                    if opts.process_fds && slow_pass {
                        self.fds = Some(count_fds(&opts.proc_root, b));
                    }
                }
                PsiCpu => self.psi.cpu = pc::psi(b),
                PsiMemory => self.psi.memory = pc::psi(b),
                PsiIo => self.psi.io = pc::psi(b),
            }
        }
        if self.net.is_none() {
            if let Some(pid) = first_pid {
                self.open_net(pid, opts, buf);
            }
        }
        let mut have_net = false;
        if let Some(f) = self.net.as_mut() {
            match f.read(buf) {
                Ok(b) => {
                    procfs::net_dev(b, &mut self.ifaces);
                    have_net = true;
                }
                // Reopen mode and the process is gone: try another pid next pass.
                Err(_) => self.net = None,
            }
        }
        if !have_mem && self.name == "/" {
            if let Some(n) = node_memory {
                mem.usage = n.usage();
                mem.total_inactive_file = n.inactive_file;
                mem.total_active_file = n.active_file;
                mem.cache = n.cached;
                mem.swap = n.swap_total.saturating_sub(n.swap_free);
                have_mem = true;
            }
        }
        if have_mem {
            mem.limit = self.mem_limit;
            self.mem_peak = self.mem_peak.max(mem.usage);
            mem.max_usage = self.mem_peak;
            pc::finish_working_set(&mut mem);
            self.stats.memory = Some(mem);
        }
        if have_cpu {
            self.stats.cpu = Some(cpu);
        }
        self.stats.psi = self.psi;
        self.stats.fds = self.fds;
        self.stats.blkio = have_blk.then(|| std::mem::take(&mut self.blk));
        self.stats.network = have_net.then(|| std::mem::take(&mut self.ifaces));
        self.words.clear();
        crate::model::Record::encode(&self.stats, &mut self.words);
        if self.writer.is_none() {
            let slots = opts.ring_slots.max(2);
            // Room for every slot at this first sample's size, plus one record of slack for
            // the wasted tail at the wrap point; larger later samples shorten the history.
            let words = self.words.len() * (slots + 1);
            self.writer = Some(Ring::new(slots, words, opts.max_age).0);
        }
        if let Some(w) = self.writer.as_mut() {
            w.push(ts, &self.words);
        }
        if let Some(v) = self.stats.blkio.take() {
            self.blk = v;
        }
        if let Some(v) = self.stats.network.take() {
            self.ifaces = v;
        }
        Outcome::Sampled
    }

    /// The ring, once the first sample created it.
    pub fn ring(&self) -> Option<&Arc<Ring>> {
        self.writer.as_ref().map(RingWriter::ring)
    }
}

std::thread_local! {
    /// Per sampling thread: the path and directory-entry buffers of [`count_fds`] (one set
    /// per thread, not per container).
    static FD_BUFS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// Descriptors and sockets of the processes listed in `procs` (a `cgroup.procs` read), as
/// cAdvisor's `processStatsFromProcs` counts them: a process that exits meanwhile is skipped.
fn count_fds(proc_root: &Path, procs: &[u8]) -> FdStats {
    FD_BUFS.with(|bufs| {
        let (path, dents) = &mut *bufs.borrow_mut();
        let mut total = FdStats::default();
        for pid in pc::pids(procs) {
            if let Ok((fds, sockets)) = sys::count_fds(proc_root, pid, path, dents) {
                total.fds += fds;
                total.sockets += sockets;
            }
        }
        total
    })
}

fn read_single(p: &Path) -> Option<u64> {
    let mut b = Vec::new();
    read_once(p, &mut b).ok()?;
    pc::single_u64(&b)
}

/// Node-level files and the filesystems to `statvfs`, sampled every pass.
pub struct NodeSampler {
    stat: Option<KeptFile>,
    meminfo: Option<KeptFile>,
    diskstats: Option<KeptFile>,
    net_dev: Option<KeptFile>,
    psi: [Option<KeptFile>; 3],
    fs_paths: Vec<(u8, PathBuf)>,
    stats: NodeStats,
    words: Vec<u64>,
    writer: Option<RingWriter>,
    pub(crate) errors: u64,
}

impl NodeSampler {
    /// Opens the node files under `proc_root`; `fs_paths` are `(role bits, path)` pairs.
    pub fn new(proc_root: &Path, keep_fds: bool, fs_paths: Vec<(u8, PathBuf)>) -> NodeSampler {
        let mut buf = Vec::new();
        let mut open = |rel: &str| {
            KeptFile::open(proc_root.join(rel), keep_fds, &mut buf)
                .ok()
                .flatten()
        };
        NodeSampler {
            stat: open("stat"),
            meminfo: open("meminfo"),
            diskstats: open("diskstats"),
            net_dev: open("net/dev"),
            psi: [
                open("pressure/cpu"),
                open("pressure/memory"),
                open("pressure/io"),
            ],
            fs_paths,
            stats: NodeStats::default(),
            words: Vec::new(),
            writer: None,
            errors: 0,
        }
    }

    /// Takes one node sample at `ts`, stores it and returns a view of it.
    pub fn sample(
        &mut self,
        ts: Timestamp,
        opts: &SamplerOptions,
        buf: &mut Vec<u8>,
    ) -> &NodeStats {
        self.stats.reset(ts);
        fn read<'b>(
            f: &mut Option<KeptFile>,
            buf: &'b mut Vec<u8>,
            errors: &mut u64,
        ) -> Option<&'b [u8]> {
            match f.as_mut()?.read(buf) {
                Ok(b) => Some(b),
                Err(_) => {
                    *errors += 1;
                    None
                }
            }
        }
        if let Some(b) = read(&mut self.stat, buf, &mut self.errors) {
            let s = procfs::proc_stat(b);
            self.stats.cpu = s.cpu;
            self.stats.procs_running = s.procs_running;
            self.stats.procs_blocked = s.procs_blocked;
        }
        if let Some(b) = read(&mut self.meminfo, buf, &mut self.errors) {
            self.stats.memory = procfs::meminfo(b);
        }
        if let Some(b) = read(&mut self.diskstats, buf, &mut self.errors) {
            procfs::diskstats(
                b,
                |n| !(n.starts_with(b"loop") || n.starts_with(b"ram")),
                &mut self.stats.disks,
            );
        }
        if let Some(b) = read(&mut self.net_dev, buf, &mut self.errors) {
            procfs::net_dev(b, &mut self.stats.network);
        }
        let [cpu, memory, io] = &mut self.psi;
        if let Some(b) = read(cpu, buf, &mut self.errors) {
            self.stats.psi.cpu = pc::psi(b);
        }
        if let Some(b) = read(memory, buf, &mut self.errors) {
            self.stats.psi.memory = pc::psi(b);
        }
        if let Some(b) = read(io, buf, &mut self.errors) {
            self.stats.psi.io = pc::psi(b);
        }
        for (role, path) in &self.fs_paths {
            let Ok(meta) = std::fs::metadata(path) else {
                continue;
            };
            let dev = std::os::unix::fs::MetadataExt::dev(&meta);
            let dev = crate::model::DevNum {
                major: libc::major(dev),
                minor: libc::minor(dev),
            };
            if let Some(f) = self.stats.filesystems.iter_mut().find(|f| f.dev == dev) {
                f.roles |= role;
                continue;
            }
            if let Ok(u) = sys::statvfs(path) {
                self.stats.filesystems.push(crate::model::FsStats {
                    dev,
                    roles: *role,
                    capacity: u.capacity,
                    available: u.available,
                    usage: u.usage,
                    inodes: u.inodes,
                    inodes_free: u.inodes_free,
                });
            }
        }
        self.words.clear();
        crate::model::Record::encode(&self.stats, &mut self.words);
        if self.writer.is_none() {
            let slots = opts.ring_slots.max(2);
            let words = self.words.len() * (slots + 1);
            self.writer = Some(Ring::new(slots, words, opts.max_age).0);
        }
        if let Some(w) = self.writer.as_mut() {
            w.push(ts, &self.words);
        }
        &self.stats
    }

    /// The node ring, once created.
    pub fn ring(&self) -> Option<&Arc<Ring>> {
        self.writer.as_ref().map(RingWriter::ring)
    }

    /// Descriptors kept open.
    pub fn kept_fds(&self) -> usize {
        [&self.stat, &self.meminfo, &self.diskstats, &self.net_dev]
            .into_iter()
            .chain(self.psi.iter())
            .flatten()
            .filter(|f| f.mode() == crate::files::ReadMode::Pread)
            .count()
    }
}

/// What a container is configured to get (cAdvisor's `ContainerSpec`, raw-cgroup part).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Earliest modification time of the cgroup directories (cAdvisor's creation time), ns.
    pub creation_time: Timestamp,
    /// Has a CPU controller.
    pub has_cpu: bool,
    /// CPU shares (v1 `cpu.shares`, v2 `cpu.weight` converted to shares).
    pub cpu_shares: u64,
    /// CFS quota per period, µs (`None`: unlimited).
    pub cpu_quota: Option<u64>,
    /// CFS period, µs.
    pub cpu_period: u64,
    /// Allowed CPUs (`cpuset.cpus`).
    pub cpu_mask: String,
    /// Has a memory controller.
    pub has_memory: bool,
    /// Memory limit as the kernel states it (v1's huge "unlimited" value, or `u64::MAX`).
    pub memory_limit: u64,
    /// Memory reservation (v1 soft limit, v2 `memory.min`).
    pub memory_reservation: u64,
    /// Swap limit.
    pub swap_limit: u64,
    /// Has a pids controller.
    pub has_processes: bool,
    /// `pids.max`.
    pub pids_limit: u64,
    /// Has block I/O accounting.
    pub has_diskio: bool,
}

/// Reads the spec of a container now (open/read/close: specs are not on the sampling path).
pub fn read_spec(paths: &CgroupPaths) -> ContainerSpec {
    let mut s = ContainerSpec::default();
    let one = |d: &Path, f: &str| read_single(&d.join(f));
    let text = |d: &Path, f: &str| {
        std::fs::read_to_string(d.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    let mut lowest = u64::MAX;
    for d in paths.dirs() {
        let marker = if paths.v2 {
            "cgroup.events"
        } else {
            "cgroup.clone_children"
        };
        for p in [d.clone(), d.join(marker)] {
            if let Some(t) = std::fs::metadata(&p)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            {
                lowest = lowest.min(t.as_nanos() as u64);
            }
        }
    }
    s.creation_time = if lowest == u64::MAX { 0 } else { lowest };
    if paths.v2 {
        if let Some(u) = &paths.unified {
            s.has_cpu = true;
            if let Some(w) = one(u, "cpu.weight").filter(|w| (1..=10_000).contains(w)) {
                s.cpu_shares = 2 + ((w - 1) * 262_142) / 9_999;
            }
            if let Some(max) = text(u, "cpu.max") {
                let mut it = max.split_whitespace();
                s.cpu_quota = it.next().and_then(|q| q.parse().ok());
                s.cpu_period = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            }
            s.cpu_mask = text(u, "cpuset.cpus.effective").unwrap_or_default();
            if u.join("memory.max").exists() {
                s.has_memory = true;
                s.memory_limit = one(u, "memory.max").unwrap_or(u64::MAX);
                s.memory_reservation = one(u, "memory.min").unwrap_or(0);
                s.swap_limit = one(u, "memory.swap.max").unwrap_or(0);
            }
            if u.join("pids.max").exists() {
                s.has_processes = true;
                s.pids_limit = one(u, "pids.max").unwrap_or(0);
            }
            s.has_diskio = u.join("io.stat").exists();
        }
    } else {
        if let Some(c) = &paths.cpu {
            s.has_cpu = true;
            s.cpu_shares = one(c, "cpu.shares").unwrap_or(0);
            s.cpu_period = one(c, "cpu.cfs_period_us").unwrap_or(0);
            s.cpu_quota = text(c, "cpu.cfs_quota_us").and_then(|q| q.parse::<u64>().ok());
        }
        if let Some(c) = &paths.cpuset {
            s.cpu_mask = text(c, "cpuset.cpus").unwrap_or_default();
        }
        if let Some(m) = &paths.memory {
            s.has_memory = true;
            s.memory_limit = one(m, "memory.limit_in_bytes").unwrap_or(0);
            s.swap_limit = one(m, "memory.memsw.limit_in_bytes").unwrap_or(0);
            s.memory_reservation = one(m, "memory.soft_limit_in_bytes").unwrap_or(0);
        }
        if let Some(p) = &paths.pids {
            s.has_processes = true;
            s.pids_limit = one(p, "pids.max").unwrap_or(0);
        }
        s.has_diskio = paths.blkio.is_some();
    }
    s
}
