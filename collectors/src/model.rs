//! The samples the collectors produce, as plain data, and their fixed word encoding.
//!
//! A [`ContainerStats`] or [`NodeStats`] is what readers get back from a ring. Inside the ring a
//! sample is a record of `u64` words (see [`Record`]): the sampler encodes into a reused word
//! buffer, so the steady state allocates nothing, and readers decode into owned values.
//! Units follow cAdvisor: nanoseconds for CPU time, bytes for memory and I/O, counts otherwise.

/// Nanoseconds since the UNIX epoch.
pub type Timestamp = u64;

/// A sample type that can live in a ring: encodes to and decodes from `u64` words.
pub trait Record: Sized {
    /// Appends this sample's words to `out` (which the caller cleared).
    fn encode(&self, out: &mut Vec<u64>);
    /// Rebuilds a sample from the words of one record; `None` if they are malformed.
    fn decode(words: &[u64]) -> Option<Self>;
    /// When the sample was taken.
    fn timestamp(&self) -> Timestamp;
}

/// Cursor over the words of one record.
struct Words<'a> {
    w: &'a [u64],
}

impl Words<'_> {
    fn next(&mut self) -> Option<u64> {
        let (first, rest) = self.w.split_first()?;
        self.w = rest;
        Some(*first)
    }
}

/// Declares a struct of `u64` counters with its word encoding.
macro_rules! counters {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $f:ident),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $f: u64,)* }
        impl $name {
            fn put(&self, out: &mut Vec<u64>) { $(out.push(self.$f);)* }
            fn get(w: &mut Words<'_>) -> Option<Self> { Some(Self { $($f: w.next()?,)* }) }
        }
    };
}

counters! {
    /// CPU usage of a cgroup (cumulative).
    pub struct CpuStats {
        /// Total CPU time consumed, ns.
        usage_total,
        /// Time in user mode, ns.
        usage_user,
        /// Time in kernel mode, ns.
        usage_system,
        /// CFS enforcement periods elapsed.
        cfs_periods,
        /// Periods in which the cgroup was throttled.
        cfs_throttled_periods,
        /// Total time throttled, ns.
        cfs_throttled_time,
    }
}

counters! {
    /// CFS bandwidth bursts of a cgroup (cumulative): `nr_bursts` and `burst_time` (v1, ns) or
    /// `burst_usec` (v2) of `cpu.stat`, which kernels have since 5.14.
    pub struct CpuBurstStats {
        /// Periods in which the cgroup ran over its quota on burst credit.
        bursts,
        /// Total time over quota, ns.
        burst_time,
    }
}

counters! {
    /// Open file descriptors of the processes in a cgroup (cAdvisor's `ProcessStats`
    /// `fd_count` and `socket_count`).
    pub struct FdStats {
        /// Entries of `/proc/<pid>/fd`, summed over the cgroup's processes.
        fds,
        /// Those that are sockets (`socket:[inode]` links).
        sockets,
    }
}

counters! {
    /// Memory usage of a cgroup. `working_set` = `usage` − inactive file pages
    /// (`total_inactive_file` on v1, `inactive_file` on v2), as cAdvisor computes it.
    pub struct MemoryStats {
        /// Current usage, bytes (`memory.usage_in_bytes` / `memory.current`).
        usage,
        /// Peak usage, bytes (`memory.max_usage_in_bytes` / `memory.peak`; 0 if unknown).
        max_usage,
        /// Limit, bytes (`u64::MAX` when unlimited).
        limit,
        /// Working set, bytes.
        working_set,
        /// Anonymous memory (`total_rss` / `anon`).
        rss,
        /// Page cache (`total_cache` / `file`).
        cache,
        /// Swap in use.
        swap,
        /// Mapped file pages (`total_mapped_file` / `file_mapped`).
        mapped_file,
        /// Active file pages.
        total_active_file,
        /// Inactive file pages.
        total_inactive_file,
        /// Dirty file pages (v2 `file_dirty`, v1 `total_dirty`).
        file_dirty,
        /// File pages under writeback.
        file_writeback,
        /// Page faults (this cgroup: v1 `pgfault`).
        pgfault,
        /// Major page faults.
        pgmajfault,
        /// Page faults, hierarchical (v1 `total_pgfault`).
        hierarchical_pgfault,
        /// Major page faults, hierarchical.
        hierarchical_pgmajfault,
        /// Times the limit was hit (v1 `memory.failcnt`, v2 `memory.events` `max`).
        failcnt,
        /// Kernel memory, bytes (v2 `kernel`).
        kernel,
        /// Pages scanned (v2).
        pgscan,
        /// Pages reclaimed (v2).
        pgsteal,
        /// Refaults of evicted anonymous pages.
        workingset_refault_anon,
        /// Refaults of evicted file pages.
        workingset_refault_file,
        /// OOM kills in this cgroup (v2 `memory.events` `oom_kill`; v1 `memory.oom_control`).
        oom_kill,
    }
}

counters! {
    /// Task counts of a cgroup.
    pub struct PidsStats {
        /// Tasks (threads) in the cgroup (`pids.current`).
        current,
        /// Task limit (`pids.max`; `u64::MAX` for `max`).
        max,
    }
}

/// One line of a PSI file: `some` or `full`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiData {
    /// Total stall time, µs.
    pub total: u64,
    /// Share of the last 10 s stalled, percent.
    pub avg10: f64,
    /// Share of the last 60 s stalled, percent.
    pub avg60: f64,
    /// Share of the last 300 s stalled, percent.
    pub avg300: f64,
}

/// Pressure stall information for one resource.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Psi {
    /// Some tasks stalled.
    pub some: PsiData,
    /// All non-idle tasks stalled (zero for the CPU of the root on old kernels).
    pub full: PsiData,
}

impl Psi {
    fn put(&self, out: &mut Vec<u64>) {
        for d in [&self.some, &self.full] {
            out.extend_from_slice(&[
                d.total,
                d.avg10.to_bits(),
                d.avg60.to_bits(),
                d.avg300.to_bits(),
            ]);
        }
    }
    fn get(w: &mut Words<'_>) -> Option<Self> {
        let mut d = || -> Option<PsiData> {
            Some(PsiData {
                total: w.next()?,
                avg10: f64::from_bits(w.next()?),
                avg60: f64::from_bits(w.next()?),
                avg300: f64::from_bits(w.next()?),
            })
        };
        let some = d()?;
        let full = d()?;
        Some(Psi { some, full })
    }
}

/// PSI for CPU, memory and I/O, each where the kernel offers it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiStats {
    /// `cpu.pressure` / `/proc/pressure/cpu`.
    pub cpu: Option<Psi>,
    /// `memory.pressure` / `/proc/pressure/memory`.
    pub memory: Option<Psi>,
    /// `io.pressure` / `/proc/pressure/io`.
    pub io: Option<Psi>,
}

impl PsiStats {
    /// Whether no resource has PSI.
    pub fn is_empty(&self) -> bool {
        self.cpu.is_none() && self.memory.is_none() && self.io.is_none()
    }
    fn put(&self, out: &mut Vec<u64>) {
        let mask = u64::from(self.cpu.is_some())
            | u64::from(self.memory.is_some()) << 1
            | u64::from(self.io.is_some()) << 2;
        out.push(mask);
        for p in [&self.cpu, &self.memory, &self.io].into_iter().flatten() {
            p.put(out);
        }
    }
    fn get(w: &mut Words<'_>) -> Option<Self> {
        let mask = w.next()?;
        let mut one = |bit: u64| -> Option<Option<Psi>> {
            if mask & bit != 0 {
                Psi::get(w).map(Some)
            } else {
                Some(None)
            }
        };
        let cpu = one(1)?;
        let memory = one(2)?;
        let io = one(4)?;
        Some(PsiStats { cpu, memory, io })
    }
}

/// A block device number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl DevNum {
    fn word(self) -> u64 {
        u64::from(self.major) << 32 | u64::from(self.minor)
    }
    fn from_word(w: u64) -> Self {
        DevNum {
            major: (w >> 32) as u32,
            minor: w as u32,
        }
    }
}

impl std::fmt::Display for DevNum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

counters! {
    /// Bytes or operations of one device, split the way cgroup v1 `blkio` reports them.
    pub struct IoCounts {
        /// Reads.
        read,
        /// Writes.
        write,
        /// Synchronous I/O.
        sync,
        /// Asynchronous I/O.
        async_,
        /// Discards.
        discard,
    }
}

impl IoCounts {
    /// `Read + Write` (+ `Discard` on kernels that count it), as the kernel's `Total` line.
    pub fn total(&self) -> u64 {
        self.read + self.write + self.discard
    }
}

/// Block I/O of a cgroup on one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkioDevice {
    /// The device.
    pub dev: DevNum,
    /// Bytes transferred (`io_service_bytes` / `rbytes`, `wbytes`, `dbytes`).
    pub bytes: IoCounts,
    /// Operations (`io_serviced` / `rios`, `wios`, `dios`).
    pub ops: IoCounts,
}

/// A network interface name, stored inline (`IFNAMSIZ` bytes, NUL padded): no allocation.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct IfName([u8; 16]);

impl IfName {
    /// From bytes, truncated to 15 bytes like the kernel's names.
    pub fn new(name: &[u8]) -> Self {
        let mut b = [0u8; 16];
        let n = name.len().min(15);
        b[..n].copy_from_slice(&name[..n]);
        IfName(b)
    }
    /// The name as a string (lossy for non-UTF-8 names).
    pub fn as_str(&self) -> std::borrow::Cow<'_, str> {
        let n = self.0.iter().position(|&c| c == 0).unwrap_or(16);
        String::from_utf8_lossy(&self.0[..n])
    }
    fn words(&self) -> [u64; 2] {
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&self.0[..8]);
        b.copy_from_slice(&self.0[8..]);
        [u64::from_le_bytes(a), u64::from_le_bytes(b)]
    }
    fn from_words(a: u64, b: u64) -> Self {
        let mut n = [0u8; 16];
        n[..8].copy_from_slice(&a.to_le_bytes());
        n[8..].copy_from_slice(&b.to_le_bytes());
        IfName(n)
    }
}

impl std::fmt::Debug for IfName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

counters! {
    /// Counters of one interface, from `/proc/<pid>/net/dev`.
    pub struct NetCounters {
        /// Bytes received.
        rx_bytes,
        /// Packets received.
        rx_packets,
        /// Receive errors.
        rx_errors,
        /// Received packets dropped.
        rx_dropped,
        /// Bytes sent.
        tx_bytes,
        /// Packets sent.
        tx_packets,
        /// Send errors.
        tx_errors,
        /// Sent packets dropped.
        tx_dropped,
    }
}

/// One network interface and its counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceStats {
    /// Interface name.
    pub name: IfName,
    /// Its counters.
    pub counters: NetCounters,
}

counters! {
    /// Cumulative I/O counters of one disk, from `/proc/diskstats` (times in ms).
    pub struct DiskCounters {
        /// Reads completed.
        reads_completed,
        /// Reads merged.
        reads_merged,
        /// Sectors read.
        sectors_read,
        /// Time spent reading, ms.
        read_time,
        /// Writes completed.
        writes_completed,
        /// Writes merged.
        writes_merged,
        /// Sectors written.
        sectors_written,
        /// Time spent writing, ms.
        write_time,
        /// I/Os in progress now.
        io_in_progress,
        /// Time spent doing I/O, ms.
        io_time,
        /// Weighted time spent doing I/O, ms.
        weighted_io_time,
    }
}

/// One disk of `/proc/diskstats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// The device.
    pub dev: DevNum,
    /// Its counters.
    pub counters: DiskCounters,
}

counters! {
    /// The aggregate `cpu` line of `/proc/stat`, converted from USER_HZ ticks to ns.
    pub struct NodeCpuStats {
        /// User time.
        user,
        /// Niced user time.
        nice,
        /// System time.
        system,
        /// Idle time.
        idle,
        /// I/O wait.
        iowait,
        /// Hard interrupts.
        irq,
        /// Soft interrupts.
        softirq,
        /// Stolen by the hypervisor.
        steal,
    }
}

impl NodeCpuStats {
    /// CPU time used (everything but idle and iowait), ns.
    pub fn usage_total(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }
}

counters! {
    /// `/proc/meminfo`, in bytes.
    pub struct NodeMemoryStats {
        /// MemTotal.
        total,
        /// MemFree.
        free,
        /// MemAvailable.
        available,
        /// Buffers.
        buffers,
        /// Cached.
        cached,
        /// Active(file).
        active_file,
        /// Inactive(file).
        inactive_file,
        /// Shmem.
        shmem,
        /// SwapTotal.
        swap_total,
        /// SwapFree.
        swap_free,
    }
}

impl NodeMemoryStats {
    /// Memory in use, `total − free` (what cAdvisor reports as the root's usage).
    pub fn usage(&self) -> u64 {
        self.total.saturating_sub(self.free)
    }
    /// Working set, `usage − inactive_file`, as the kubelet's eviction signal uses it.
    pub fn working_set(&self) -> u64 {
        self.usage().saturating_sub(self.inactive_file)
    }
}

/// Which role a node filesystem plays (bit flags: one device may be several).
pub mod fs_role {
    /// The root filesystem (`/` or the configured root path).
    pub const ROOT: u8 = 1;
    /// The image filesystem (container runtime's storage).
    pub const IMAGE: u8 = 2;
    /// The log filesystem (`/var/log`).
    pub const LOG: u8 = 4;
}

/// Capacity and usage of one node filesystem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    /// The device (from `stat(2)` of the path).
    pub dev: DevNum,
    /// [`fs_role`] bits.
    pub roles: u8,
    /// Total bytes.
    pub capacity: u64,
    /// Bytes available to non-root users.
    pub available: u64,
    /// Bytes used.
    pub usage: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

/// One sample of one container's cgroup. A section is `None` when the cgroup has no such
/// controller or the kernel offers no such file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContainerStats {
    /// When the sample was taken.
    pub timestamp: Timestamp,
    /// CPU usage.
    pub cpu: Option<CpuStats>,
    /// Memory usage.
    pub memory: Option<MemoryStats>,
    /// Task counts.
    pub pids: Option<PidsStats>,
    /// CFS bursts, where the kernel reports them.
    pub cpu_burst: Option<CpuBurstStats>,
    /// Processes in the cgroup (lines of `cgroup.procs`).
    pub process_count: Option<u64>,
    /// Descriptors of those processes: counted only when the monitor is asked to
    /// ([`crate::sampler::SamplerOptions::process_fds`]), as cAdvisor's `process` metrics.
    pub fds: Option<FdStats>,
    /// Block I/O per device (empty when none has been charged).
    pub blkio: Option<Vec<BlkioDevice>>,
    /// Network of the cgroup's network namespace, `lo` and `veth*` left out.
    pub network: Option<Vec<InterfaceStats>>,
    /// Pressure stall information (cgroup v2 or the unified half of a hybrid layout).
    pub psi: PsiStats,
}

const C_CPU: u64 = 1;
const C_MEM: u64 = 2;
const C_PIDS: u64 = 4;
const C_PROCS: u64 = 8;
const C_BLKIO: u64 = 16;
const C_NET: u64 = 32;
const C_BURST: u64 = 64;
const C_FDS: u64 = 128;

impl ContainerStats {
    /// Empties every section, keeping the vectors' capacity (for reuse by the sampler).
    pub fn reset(&mut self, timestamp: Timestamp) {
        self.timestamp = timestamp;
        self.cpu = None;
        self.memory = None;
        self.pids = None;
        self.cpu_burst = None;
        self.process_count = None;
        self.fds = None;
        if let Some(v) = self.blkio.as_mut() {
            v.clear();
        }
        if let Some(v) = self.network.as_mut() {
            v.clear();
        }
        self.psi = PsiStats::default();
    }
}

fn put_interfaces(v: &[InterfaceStats], out: &mut Vec<u64>) {
    out.push(v.len() as u64);
    for i in v {
        out.extend_from_slice(&i.name.words());
        i.counters.put(out);
    }
}

fn get_interfaces(w: &mut Words<'_>) -> Option<Vec<InterfaceStats>> {
    let n = w.next()? as usize;
    if n > w.w.len() / 10 {
        return None;
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let a = w.next()?;
        let b = w.next()?;
        v.push(InterfaceStats {
            name: IfName::from_words(a, b),
            counters: NetCounters::get(w)?,
        });
    }
    Some(v)
}

impl Record for ContainerStats {
    fn encode(&self, out: &mut Vec<u64>) {
        let mask = (if self.cpu.is_some() { C_CPU } else { 0 })
            | (if self.memory.is_some() { C_MEM } else { 0 })
            | (if self.pids.is_some() { C_PIDS } else { 0 })
            | (if self.process_count.is_some() {
                C_PROCS
            } else {
                0
            })
            | (if self.blkio.is_some() { C_BLKIO } else { 0 })
            | (if self.network.is_some() { C_NET } else { 0 })
            | (if self.cpu_burst.is_some() { C_BURST } else { 0 })
            | (if self.fds.is_some() { C_FDS } else { 0 });
        out.push(self.timestamp);
        out.push(mask);
        if let Some(c) = &self.cpu {
            c.put(out);
        }
        if let Some(m) = &self.memory {
            m.put(out);
        }
        if let Some(p) = &self.pids {
            p.put(out);
        }
        if let Some(p) = self.process_count {
            out.push(p);
        }
        if let Some(b) = &self.blkio {
            out.push(b.len() as u64);
            for d in b {
                out.push(d.dev.word());
                d.bytes.put(out);
                d.ops.put(out);
            }
        }
        if let Some(n) = &self.network {
            put_interfaces(n, out);
        }
        if let Some(b) = &self.cpu_burst {
            b.put(out);
        }
        if let Some(f) = &self.fds {
            f.put(out);
        }
        self.psi.put(out);
    }

    fn decode(words: &[u64]) -> Option<Self> {
        let mut w = Words { w: words };
        let timestamp = w.next()?;
        let mask = w.next()?;
        let mut s = ContainerStats {
            timestamp,
            ..Default::default()
        };
        if mask & C_CPU != 0 {
            s.cpu = Some(CpuStats::get(&mut w)?);
        }
        if mask & C_MEM != 0 {
            s.memory = Some(MemoryStats::get(&mut w)?);
        }
        if mask & C_PIDS != 0 {
            s.pids = Some(PidsStats::get(&mut w)?);
        }
        if mask & C_PROCS != 0 {
            s.process_count = Some(w.next()?);
        }
        if mask & C_BLKIO != 0 {
            let n = w.next()? as usize;
            if n > w.w.len() / 11 {
                return None;
            }
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let dev = DevNum::from_word(w.next()?);
                let bytes = IoCounts::get(&mut w)?;
                let ops = IoCounts::get(&mut w)?;
                v.push(BlkioDevice { dev, bytes, ops });
            }
            s.blkio = Some(v);
        }
        if mask & C_NET != 0 {
            s.network = Some(get_interfaces(&mut w)?);
        }
        if mask & C_BURST != 0 {
            s.cpu_burst = Some(CpuBurstStats::get(&mut w)?);
        }
        if mask & C_FDS != 0 {
            s.fds = Some(FdStats::get(&mut w)?);
        }
        s.psi = PsiStats::get(&mut w)?;
        Some(s)
    }

    fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
}

/// One sample of node-wide figures: `/proc/stat`, `/proc/meminfo`, `/proc/diskstats`,
/// `/proc/net/dev`, the node filesystems and `/proc/pressure/*`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeStats {
    /// When the sample was taken.
    pub timestamp: Timestamp,
    /// Aggregate CPU times.
    pub cpu: NodeCpuStats,
    /// Memory.
    pub memory: NodeMemoryStats,
    /// Per-disk I/O counters (partitions included, as the kernel lists them).
    pub disks: Vec<DiskStats>,
    /// Host network interfaces, `lo` and `veth*` left out.
    pub network: Vec<InterfaceStats>,
    /// Root, image and log filesystems.
    pub filesystems: Vec<FsStats>,
    /// Node PSI.
    pub psi: PsiStats,
    /// Processes running (`procs_running` of `/proc/stat`).
    pub procs_running: u64,
    /// Processes blocked on I/O (`procs_blocked`).
    pub procs_blocked: u64,
}

impl NodeStats {
    /// Empties the vectors (keeping capacity) and stamps a new time.
    pub fn reset(&mut self, timestamp: Timestamp) {
        self.timestamp = timestamp;
        self.disks.clear();
        self.network.clear();
        self.filesystems.clear();
        self.psi = PsiStats::default();
    }
}

impl Record for NodeStats {
    fn encode(&self, out: &mut Vec<u64>) {
        out.push(self.timestamp);
        self.cpu.put(out);
        self.memory.put(out);
        out.push(self.procs_running);
        out.push(self.procs_blocked);
        out.push(self.disks.len() as u64);
        for d in &self.disks {
            out.push(d.dev.word());
            d.counters.put(out);
        }
        put_interfaces(&self.network, out);
        out.push(self.filesystems.len() as u64);
        for f in &self.filesystems {
            out.extend_from_slice(&[
                f.dev.word(),
                u64::from(f.roles),
                f.capacity,
                f.available,
                f.usage,
                f.inodes,
                f.inodes_free,
            ]);
        }
        self.psi.put(out);
    }

    fn decode(words: &[u64]) -> Option<Self> {
        let mut w = Words { w: words };
        let mut s = NodeStats {
            timestamp: w.next()?,
            cpu: NodeCpuStats::get(&mut w)?,
            memory: NodeMemoryStats::get(&mut w)?,
            procs_running: w.next()?,
            procs_blocked: w.next()?,
            ..Default::default()
        };
        let n = w.next()? as usize;
        if n > w.w.len() / 12 {
            return None;
        }
        for _ in 0..n {
            let dev = DevNum::from_word(w.next()?);
            s.disks.push(DiskStats {
                dev,
                counters: DiskCounters::get(&mut w)?,
            });
        }
        s.network = get_interfaces(&mut w)?;
        let n = w.next()? as usize;
        if n > w.w.len() / 7 {
            return None;
        }
        for _ in 0..n {
            s.filesystems.push(FsStats {
                dev: DevNum::from_word(w.next()?),
                roles: w.next()? as u8,
                capacity: w.next()?,
                available: w.next()?,
                usage: w.next()?,
                inodes: w.next()?,
                inodes_free: w.next()?,
            });
        }
        s.psi = PsiStats::get(&mut w)?;
        Some(s)
    }

    fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn psi(t: u64) -> Psi {
        Psi {
            some: PsiData {
                total: t,
                avg10: 0.5,
                avg60: 1.25,
                avg300: 3.0,
            },
            full: PsiData {
                total: t / 2,
                avg10: 0.0,
                avg60: 0.1,
                avg300: 0.2,
            },
        }
    }

    pub(crate) fn sample_container(ts: u64) -> ContainerStats {
        ContainerStats {
            timestamp: ts,
            cpu: Some(CpuStats {
                usage_total: 10,
                usage_user: 6,
                usage_system: 4,
                cfs_periods: 3,
                cfs_throttled_periods: 2,
                cfs_throttled_time: 1,
            }),
            memory: Some(MemoryStats {
                usage: 100,
                working_set: 80,
                limit: u64::MAX,
                ..Default::default()
            }),
            pids: Some(PidsStats {
                current: 3,
                max: u64::MAX,
            }),
            cpu_burst: Some(CpuBurstStats {
                bursts: 5,
                burst_time: 6,
            }),
            process_count: Some(2),
            fds: Some(FdStats {
                fds: 11,
                sockets: 4,
            }),
            blkio: Some(vec![BlkioDevice {
                dev: DevNum { major: 8, minor: 0 },
                bytes: IoCounts {
                    read: 1,
                    write: 2,
                    sync: 3,
                    async_: 4,
                    discard: 0,
                },
                ops: IoCounts {
                    read: 5,
                    ..Default::default()
                },
            }]),
            network: Some(vec![InterfaceStats {
                name: IfName::new(b"eth0"),
                counters: NetCounters {
                    rx_bytes: 7,
                    tx_bytes: 9,
                    ..Default::default()
                },
            }]),
            psi: PsiStats {
                cpu: Some(psi(10)),
                memory: None,
                io: Some(psi(20)),
            },
        }
    }

    #[test]
    fn container_stats_round_trip() {
        let s = sample_container(42);
        let mut w = Vec::new();
        s.encode(&mut w);
        assert_eq!(ContainerStats::decode(&w), Some(s));
        // A sample with no sections at all.
        let empty = ContainerStats {
            timestamp: 7,
            ..Default::default()
        };
        w.clear();
        empty.encode(&mut w);
        assert_eq!(w.len(), 3);
        assert_eq!(ContainerStats::decode(&w), Some(empty));
    }

    #[test]
    fn truncated_records_do_not_decode() {
        let s = sample_container(42);
        let mut w = Vec::new();
        s.encode(&mut w);
        for cut in 0..w.len() {
            assert_eq!(ContainerStats::decode(&w[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn node_stats_round_trip() {
        let s = NodeStats {
            timestamp: 5,
            cpu: NodeCpuStats {
                user: 1,
                idle: 2,
                ..Default::default()
            },
            memory: NodeMemoryStats {
                total: 100,
                free: 30,
                inactive_file: 20,
                ..Default::default()
            },
            disks: vec![DiskStats {
                dev: DevNum {
                    major: 254,
                    minor: 0,
                },
                counters: DiskCounters {
                    reads_completed: 9,
                    ..Default::default()
                },
            }],
            network: vec![],
            filesystems: vec![FsStats {
                dev: DevNum {
                    major: 254,
                    minor: 1,
                },
                roles: fs_role::ROOT | fs_role::IMAGE,
                capacity: 10,
                available: 4,
                usage: 5,
                inodes: 3,
                inodes_free: 1,
            }],
            psi: PsiStats {
                memory: Some(psi(3)),
                ..Default::default()
            },
            procs_running: 2,
            procs_blocked: 1,
        };
        let mut w = Vec::new();
        s.encode(&mut w);
        assert_eq!(NodeStats::decode(&w), Some(s.clone()));
        assert_eq!(s.memory.usage(), 70);
        assert_eq!(s.memory.working_set(), 50);
    }

    #[test]
    fn ifname_truncates_and_round_trips() {
        let n = IfName::new(b"a-very-long-interface-name");
        assert_eq!(n.as_str(), "a-very-long-int");
        let [a, b] = n.words();
        assert_eq!(IfName::from_words(a, b), n);
    }
}
