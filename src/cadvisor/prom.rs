//! cAdvisor's Prometheus families, rendered straight from the monitor's rings.
//!
//! One [`Exporter`] serves one endpoint: cAdvisor's own `/metrics` on 4194
//! ([`Flavour::Cadvisor`]: labels `id`, `name`, `image` and `container_label_*`, the union over
//! all containers as cAdvisor builds it; cAdvisor's default metric set, which leaves out the
//! `process` group) or the kubelet's `/metrics/cadvisor` ([`Flavour::Kubelet`]: labels
//! `container`, `id`, `image`, `name`, `namespace`, `pod`, and the kubelet's metric set, which
//! has the `process` group and not `pressure`).
//!
//! Names, help texts, types, label names and sample timestamps are cAdvisor v0.60's
//! (`lib/metrics/prometheus.go`, `prometheus_machine.go`); families come out sorted by name, as
//! the Go registry gathers them, labels sorted by name, and a family without samples is left
//! out. Samples within a family are ordered by their container's label values.
//!
//! Cost: nothing is read from the kernel on a scrape (samples come from the rings, specs from
//! the [`Tracker`]'s cache); label sets are formatted once per container and kept until its
//! identity changes; the output buffer is reused, so once warm a scrape allocates only its
//! copy of the body and the decoded samples.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

use collectors::machine::MachineInfo;
use collectors::model::{ContainerStats, DevNum, NodeStats, Psi};
use collectors::{ContainerIdentity, ContainerNamer, ContainerSpec, Monitor, VersionInfo};
use parking_lot::Mutex;

use super::expo::{self, ms, sanitize_label_name, Family, Kind, LabelSet};
use super::names::{PodLookup, PodRef};
use super::tracker::Tracker;
use crate::kuberuntime::labels as kl;

/// The version this API reports as cAdvisor's (`/api/v2.0/version`, `cadvisor_version_info`).
pub const CADVISOR_VERSION: &str = concat!("kubelet-rs-", env!("CARGO_PKG_VERSION"));

/// Which endpoint's labels and metric set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// cAdvisor's own `/metrics` (4194).
    Cadvisor,
    /// The kubelet's `/metrics/cadvisor`.
    Kubelet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Group {
    Base,
    Spec,
    Cpu,
    CpuLoad,
    Memory,
    Disk,
    DiskIo,
    Network,
    Oom,
    Pressure,
    Process,
    Machine,
    Special,
}

impl Group {
    fn included(self, f: Flavour) -> bool {
        match self {
            Group::Process => f == Flavour::Kubelet,
            Group::Pressure => f == Flavour::Cadvisor,
            _ => true,
        }
    }
}

/// One container's data during a scrape.
pub(super) struct Row<'a> {
    pub(super) labels: &'a LabelSet,
    pub(super) s: Option<&'a ContainerStats>,
    pub(super) spec: &'a ContainerSpec,
    pub(super) ts: Option<i64>,
    pub(super) root: bool,
    pub(super) oom: u64,
    /// A CRI container sharing its sandbox's network namespace: no network families (the
    /// sandbox reports them), as cAdvisor's containerd handler does.
    pub(super) shares_network: bool,
}

/// One root filesystem entry: device name and its figures.
pub(super) struct FsRow {
    pub(super) device: String,
    pub(super) capacity: u64,
    pub(super) usage: u64,
    pub(super) inodes: u64,
    pub(super) inodes_free: u64,
    pub(super) disk: collectors::model::DiskCounters,
}

/// What a scrape shares across containers.
pub(super) struct Ctx<'a> {
    pub(super) now_s: f64,
    pub(super) now_ms: i64,
    pub(super) node: Option<&'a NodeStats>,
    pub(super) disks: &'a HashMap<DevNum, String>,
    pub(super) fs: &'a [FsRow],
    pub(super) machine: &'a MachineInfo,
    pub(super) machine_labels: &'a LabelSet,
    pub(super) version: &'a VersionInfo,
}

type ContainerFn = fn(&Ctx<'_>, &Row<'_>, &mut Family<'_>);
type OnceFn = fn(&Ctx<'_>, &mut Family<'_>);

#[derive(Clone, Copy)]
enum Src {
    Container(ContainerFn),
    Once(OnceFn),
}

struct Fam {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    group: Group,
    src: Src,
}

const C: Kind = Kind::Counter;
const G: Kind = Kind::Gauge;

fn one(f: &mut Family<'_>, r: &Row<'_>, v: f64) {
    f.sample(r.labels, &[], v, r.ts);
}

fn spec_one(f: &mut Family<'_>, r: &Row<'_>, v: f64) {
    f.sample(r.labels, &[], v, None);
}

/// cAdvisor's `specMemoryValue`: "unlimited" (above 2^62) reads as 0.
fn spec_memory(v: u64) -> f64 {
    if v > 1 << 62 {
        0.0
    } else {
        v as f64
    }
}

fn cpu(r: &Row<'_>) -> Option<collectors::model::CpuStats> {
    r.s?.cpu
}

fn mem(r: &Row<'_>) -> Option<collectors::model::MemoryStats> {
    r.s?.memory
}

fn has_quota(r: &Row<'_>) -> bool {
    r.spec.has_cpu && r.spec.cpu_quota.is_some_and(|q| q != 0)
}

macro_rules! cpu_fam {
    ($name:literal, $help:literal, $kind:expr, |$c:ident| $v:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: $kind,
            group: Group::Cpu,
            src: Src::Container(|_, r, f| {
                if let Some($c) = cpu(r) {
                    one(f, r, $v)
                }
            }),
        }
    };
}

macro_rules! cfs_fam {
    ($name:literal, $help:literal, |$c:ident| $v:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: C,
            group: Group::Cpu,
            src: Src::Container(|_, r, f| {
                if let (Some($c), true) = (cpu(r), has_quota(r)) {
                    one(f, r, $v)
                }
            }),
        }
    };
}

/// A CFS burst family: containers with a quota, on kernels that report bursts (cAdvisor
/// prints zeros where the kernel has none; nothing is printed here).
macro_rules! burst_fam {
    ($name:literal, $help:literal, |$b:ident| $v:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: C,
            group: Group::Cpu,
            src: Src::Container(|_, r, f| {
                if let (Some($b), true) = (r.s.and_then(|s| s.cpu_burst), has_quota(r)) {
                    one(f, r, $v)
                }
            }),
        }
    };
}

macro_rules! mem_fam {
    ($name:literal, $help:literal, $kind:expr, |$m:ident| $v:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: $kind,
            group: Group::Memory,
            src: Src::Container(|_, r, f| {
                if let Some($m) = mem(r) {
                    one(f, r, $v as f64)
                }
            }),
        }
    };
}

macro_rules! net_fam {
    ($name:literal, $help:literal, |$n:ident| $v:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: C,
            group: Group::Network,
            src: Src::Container(|x, r, f| {
                for i in interfaces(x, r) {
                    let $n = &i.counters;
                    let name = i.name.as_str();
                    f.sample(r.labels, &[("interface", &name)], $v as f64, r.ts);
                }
            }),
        }
    };
}

macro_rules! fs_fam {
    ($name:literal, $help:literal, $kind:expr, |$fs:ident| $v:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: $kind,
            group: Group::Disk,
            src: Src::Container(|x, r, f| {
                if r.root {
                    for $fs in x.fs {
                        f.sample(r.labels, &[("device", &$fs.device)], $v as f64, r.ts);
                    }
                }
            }),
        }
    };
}

/// A disk I/O family: per-device blkio values, then the root's filesystems (a device
/// already written from blkio is skipped: one series per device).
macro_rules! io_fam {
    ($name:literal, $help:literal, $kind:expr, blkio: $blk:expr, fs: $fsv:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: $kind,
            group: Group::DiskIo,
            src: Src::Container(|x, r, f| {
                let blk: Option<fn(&collectors::model::BlkioDevice) -> u64> = $blk;
                let fsv: Option<fn(&FsRow) -> f64> = $fsv;
                let mut written: [DevNum; 8] = [DevNum::default(); 8];
                let mut nw = 0;
                if let (Some(pick), Some(devs)) = (blk, r.s.and_then(|s| s.blkio.as_deref())) {
                    for d in devs {
                        let dev = x.disks.get(&d.dev).map_or("", |s| s.as_str());
                        f.sample(r.labels, &[("device", dev)], pick(d) as f64, r.ts);
                        if nw < written.len() {
                            written[nw] = d.dev;
                            nw += 1;
                        }
                    }
                }
                if let (Some(v), true) = (fsv, r.root) {
                    for fs in x.fs {
                        let seen = written[..nw]
                            .iter()
                            .any(|d| x.disks.get(d).is_some_and(|n| *n == fs.device));
                        if !seen {
                            f.sample(r.labels, &[("device", &fs.device)], v(fs), r.ts);
                        }
                    }
                }
            }),
        }
    };
}

macro_rules! psi_fam {
    ($name:literal, $help:literal, $res:ident, $part:ident) => {
        Fam {
            name: $name,
            help: $help,
            kind: C,
            group: Group::Pressure,
            src: Src::Container(|x, r, f| {
                if let Some(p) = psi(x, r, |p| p.$res) {
                    one(f, r, p.$part.total as f64 / 1e6)
                }
            }),
        }
    };
}

macro_rules! machine_fam {
    ($name:literal, $help:literal, |$m:ident| $v:expr) => {
        Fam {
            name: $name,
            help: $help,
            kind: G,
            group: Group::Machine,
            src: Src::Once(|x, f| {
                let $m = x.machine;
                f.sample(
                    x.machine_labels,
                    &[],
                    $v as f64,
                    Some(ms(x.machine.timestamp)),
                )
            }),
        }
    };
}

fn interfaces<'a>(x: &'a Ctx<'_>, r: &'a Row<'_>) -> &'a [collectors::model::InterfaceStats] {
    if r.shares_network {
        return &[];
    }
    if r.root {
        if let Some(n) = x.node {
            return &n.network;
        }
    }
    r.s.and_then(|s| s.network.as_deref()).unwrap_or(&[])
}

fn psi(
    x: &Ctx<'_>,
    r: &Row<'_>,
    pick: fn(&collectors::model::PsiStats) -> Option<Psi>,
) -> Option<Psi> {
    let own = r.s.and_then(|s| pick(&s.psi));
    match (own, r.root) {
        (Some(p), _) => Some(p),
        (None, true) => x.node.and_then(|n| pick(&n.psi)),
        _ => None,
    }
}

const TASK_STATES: [&str; 5] = [
    "iowaiting",
    "running",
    "sleeping",
    "stopped",
    "uninterruptible",
];
const BLKIO_OPS: [&str; 6] = ["Async", "Discard", "Read", "Sync", "Total", "Write"];

static FAMILIES: &[Fam] = &[
    // ---------------------------------------------------------------- base and spec
    Fam {
        name: "container_last_seen",
        help: "Last time a container was seen by the exporter",
        kind: G,
        group: Group::Base,
        src: Src::Container(|x, r, f| {
            if r.s.is_some() {
                f.sample(r.labels, &[], x.now_s, Some(x.now_ms))
            }
        }),
    },
    Fam {
        name: "container_health_state",
        help: "The result of the container's health check",
        kind: G,
        group: Group::Base,
        // No health checks on raw cgroups or CRI containers: cAdvisor's -1.
        src: Src::Container(|_, r, f| {
            if r.s.is_some() {
                one(f, r, -1.0)
            }
        }),
    },
    Fam {
        name: "container_creation_time_seconds",
        help: "Container creation time since unix epoch in seconds.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| spec_one(f, r, (r.spec.creation_time / 1_000_000_000) as f64)),
    },
    Fam {
        name: "container_start_time_seconds",
        help: "Start time of the container since unix epoch in seconds.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| spec_one(f, r, (r.spec.creation_time / 1_000_000_000) as f64)),
    },
    Fam {
        name: "container_spec_cpu_period",
        help: "CPU period of the container.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| {
            if r.spec.has_cpu {
                spec_one(f, r, r.spec.cpu_period as f64)
            }
        }),
    },
    Fam {
        name: "container_spec_cpu_quota",
        help: "CPU quota of the container.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| {
            if has_quota(r) {
                spec_one(f, r, r.spec.cpu_quota.unwrap_or(0) as f64)
            }
        }),
    },
    Fam {
        name: "container_spec_cpu_shares",
        help: "CPU share of the container.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| {
            if r.spec.has_cpu {
                spec_one(f, r, r.spec.cpu_shares as f64)
            }
        }),
    },
    Fam {
        name: "container_spec_memory_limit_bytes",
        help: "Memory limit for the container.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| {
            if r.spec.has_memory {
                spec_one(f, r, spec_memory(r.spec.memory_limit))
            }
        }),
    },
    Fam {
        name: "container_spec_memory_reservation_limit_bytes",
        help: "Memory reservation limit for the container.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| {
            if r.spec.has_memory {
                spec_one(f, r, spec_memory(r.spec.memory_reservation))
            }
        }),
    },
    Fam {
        name: "container_spec_memory_swap_limit_bytes",
        help: "Memory swap limit for the container.",
        kind: G,
        group: Group::Spec,
        src: Src::Container(|_, r, f| {
            if r.spec.has_memory {
                spec_one(f, r, spec_memory(r.spec.swap_limit))
            }
        }),
    },
    // ---------------------------------------------------------------- cpu
    cpu_fam!("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", C, |c| c.usage_user as f64 / 1e9),
    cpu_fam!("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", C, |c| c.usage_system as f64 / 1e9),
    Fam {
        name: "container_cpu_usage_seconds_total",
        help: "Cumulative cpu time consumed in seconds.",
        kind: C,
        group: Group::Cpu,
        src: Src::Container(|_, r, f| {
            if let Some(c) = cpu(r).filter(|c| c.usage_total > 0) {
                f.sample(r.labels, &[("cpu", "total")], c.usage_total as f64 / 1e9, r.ts)
            }
        }),
    },
    cfs_fam!("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", |c| c.cfs_periods as f64),
    cfs_fam!("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", |c| c.cfs_throttled_periods as f64),
    cfs_fam!("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", |c| c.cfs_throttled_time as f64 / 1e9),
    burst_fam!("container_cpu_cfs_burst_periods_total", "Number of periods when burst occurs.", |b| b.bursts as f64),
    burst_fam!("container_cpu_cfs_burst_seconds_total", "Total time duration the container has been bursted.", |b| b.burst_time as f64 / 1e9),
    // ---------------------------------------------------------------- cpu load (no load reader: zeros, as cAdvisor without --enable_load_reader)
    Fam {
        name: "container_cpu_load_average_10s",
        help: "Value of container cpu load average over the last 10 seconds.",
        kind: G,
        group: Group::CpuLoad,
        src: Src::Container(|_, r, f| {
            if r.s.is_some() {
                one(f, r, 0.0)
            }
        }),
    },
    Fam {
        name: "container_cpu_load_d_average_10s",
        help: "Value of container cpu load.d average over the last 10 seconds.",
        kind: G,
        group: Group::CpuLoad,
        src: Src::Container(|_, r, f| {
            if r.s.is_some() {
                one(f, r, 0.0)
            }
        }),
    },
    Fam {
        name: "container_tasks_state",
        help: "Number of tasks in given state",
        kind: G,
        group: Group::CpuLoad,
        src: Src::Container(|_, r, f| {
            if r.s.is_some() {
                for st in TASK_STATES {
                    f.sample(r.labels, &[("state", st)], 0.0, r.ts);
                }
            }
        }),
    },
    // ---------------------------------------------------------------- memory
    mem_fam!("container_memory_cache", "Number of bytes of page cache memory.", G, |m| m.cache),
    mem_fam!("container_memory_rss", "Size of RSS in bytes.", G, |m| m.rss),
    mem_fam!("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", G, |m| m.kernel),
    mem_fam!("container_memory_mapped_file", "Size of memory mapped files in bytes.", G, |m| m.mapped_file),
    mem_fam!("container_memory_swap", "Container swap usage in bytes.", G, |m| m.swap),
    mem_fam!("container_memory_failcnt", "Number of memory usage hits limits", C, |m| m.failcnt),
    mem_fam!("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", G, |m| m.usage),
    mem_fam!("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes", G, |m| m.max_usage),
    mem_fam!("container_memory_working_set_bytes", "Current working set in bytes.", G, |m| m.working_set),
    mem_fam!("container_memory_total_active_file_bytes", "Current total active file in bytes.", G, |m| m.total_active_file),
    mem_fam!("container_memory_total_inactive_file_bytes", "Current total inactive file in bytes.", G, |m| m.total_inactive_file),
    Fam {
        name: "container_memory_failures_total",
        help: "Cumulative count of memory allocation failures.",
        kind: C,
        group: Group::Memory,
        src: Src::Container(|_, r, f| {
            if let Some(m) = mem(r) {
                for (ty, scope, v) in [
                    ("pgfault", "container", m.pgfault),
                    ("pgfault", "hierarchy", m.hierarchical_pgfault),
                    ("pgmajfault", "container", m.pgmajfault),
                    ("pgmajfault", "hierarchy", m.hierarchical_pgmajfault),
                ] {
                    f.sample(r.labels, &[("failure_type", ty), ("scope", scope)], v as f64, r.ts);
                }
            }
        }),
    },
    mem_fam!("container_memory_events_high_total", "Cumulative count of memory.high throttle events for the container", C, |_m| 0u64),
    mem_fam!("container_memory_events_max_total", "Cumulative count of memory.max limit hit events for the container", C, |m| m.failcnt),
    mem_fam!("container_memory_file_dirty_bytes", "Number of bytes of file cache that has been modified but not yet written back to disk.", G, |m| m.file_dirty),
    mem_fam!("container_memory_file_writeback_bytes", "Number of bytes of file cache that is currently being written back to disk.", G, |m| m.file_writeback),
    mem_fam!("container_memory_pgscan_total", "Cumulative number of pages scanned by the page reclaim algorithm.", C, |m| m.pgscan),
    mem_fam!("container_memory_pgsteal_total", "Cumulative number of pages reclaimed by the page reclaim algorithm.", C, |m| m.pgsteal),
    mem_fam!("container_memory_workingset_refault_file_total", "Cumulative number of refaults of previously evicted file pages.", C, |m| m.workingset_refault_file),
    mem_fam!("container_memory_workingset_refault_anon_total", "Cumulative number of refaults of previously evicted anonymous pages.", C, |m| m.workingset_refault_anon),
    // ---------------------------------------------------------------- filesystems (the root's)
    fs_fam!("container_fs_inodes_free", "Number of available Inodes", G, |fs| fs.inodes_free),
    fs_fam!("container_fs_inodes_total", "Number of Inodes", G, |fs| fs.inodes),
    fs_fam!("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", G, |fs| fs.capacity),
    fs_fam!("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", G, |fs| fs.usage),
    // ---------------------------------------------------------------- disk I/O
    io_fam!("container_fs_reads_bytes_total", "Cumulative count of bytes read", C, blkio: Some(|d| d.bytes.read), fs: None),
    io_fam!("container_fs_reads_total", "Cumulative count of reads completed", C, blkio: Some(|d| d.ops.read), fs: Some(|fs| fs.disk.reads_completed as f64)),
    io_fam!("container_fs_sector_reads_total", "Cumulative count of sector reads completed", C, blkio: None, fs: Some(|fs| fs.disk.sectors_read as f64)),
    io_fam!("container_fs_reads_merged_total", "Cumulative count of reads merged", C, blkio: None, fs: Some(|fs| fs.disk.reads_merged as f64)),
    io_fam!("container_fs_read_seconds_total", "Cumulative count of seconds spent reading", C, blkio: None, fs: Some(|fs| fs.disk.read_time as f64 / 1e3)),
    io_fam!("container_fs_writes_bytes_total", "Cumulative count of bytes written", C, blkio: Some(|d| d.bytes.write), fs: None),
    io_fam!("container_fs_writes_total", "Cumulative count of writes completed", C, blkio: Some(|d| d.ops.write), fs: Some(|fs| fs.disk.writes_completed as f64)),
    io_fam!("container_fs_sector_writes_total", "Cumulative count of sector writes completed", C, blkio: None, fs: Some(|fs| fs.disk.sectors_written as f64)),
    io_fam!("container_fs_writes_merged_total", "Cumulative count of writes merged", C, blkio: None, fs: Some(|fs| fs.disk.writes_merged as f64)),
    io_fam!("container_fs_write_seconds_total", "Cumulative count of seconds spent writing", C, blkio: None, fs: Some(|fs| fs.disk.write_time as f64 / 1e3)),
    io_fam!("container_fs_io_current", "Number of I/Os currently in progress", G, blkio: None, fs: Some(|fs| fs.disk.io_in_progress as f64)),
    io_fam!("container_fs_io_time_seconds_total", "Cumulative count of seconds spent doing I/Os", C, blkio: None, fs: Some(|fs| fs.disk.io_time as f64 / 1e3)),
    io_fam!("container_fs_io_time_weighted_seconds_total", "Cumulative weighted I/O time in seconds", C, blkio: None, fs: Some(|fs| fs.disk.weighted_io_time as f64 / 1e3)),
    Fam {
        name: "container_blkio_device_usage_total",
        help: "Blkio Device bytes usage",
        kind: C,
        group: Group::DiskIo,
        src: Src::Container(|x, r, f| {
            let Some(devs) = r.s.and_then(|s| s.blkio.as_deref()) else {
                return;
            };
            let mut maj = Vec::with_capacity(12);
            let mut min = Vec::with_capacity(12);
            for d in devs {
                maj.clear();
                min.clear();
                expo::write_u64(&mut maj, u64::from(d.dev.major));
                expo::write_u64(&mut min, u64::from(d.dev.minor));
                let (maj, min) = (std::str::from_utf8(&maj).unwrap_or(""), std::str::from_utf8(&min).unwrap_or(""));
                let dev = x.disks.get(&d.dev).map_or("", |s| s.as_str());
                let b = d.bytes;
                for (op, v) in BLKIO_OPS.iter().zip([b.async_, b.discard, b.read, b.sync, b.total(), b.write]) {
                    f.sample(
                        r.labels,
                        &[("device", dev), ("major", maj), ("minor", min), ("operation", op)],
                        v as f64,
                        r.ts,
                    );
                }
            }
        }),
    },
    // ---------------------------------------------------------------- network
    net_fam!("container_network_receive_bytes_total", "Cumulative count of bytes received", |n| n.rx_bytes),
    net_fam!("container_network_receive_packets_total", "Cumulative count of packets received", |n| n.rx_packets),
    net_fam!("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving", |n| n.rx_dropped),
    net_fam!("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving", |n| n.rx_errors),
    net_fam!("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted", |n| n.tx_bytes),
    net_fam!("container_network_transmit_packets_total", "Cumulative count of packets transmitted", |n| n.tx_packets),
    net_fam!("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting", |n| n.tx_dropped),
    net_fam!("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting", |n| n.tx_errors),
    // ---------------------------------------------------------------- processes (the kubelet's set)
    Fam {
        name: "container_processes",
        help: "Number of processes running inside the container.",
        kind: G,
        group: Group::Process,
        src: Src::Container(|_, r, f| {
            if let Some(n) = r.s.and_then(|s| s.process_count) {
                one(f, r, n as f64)
            }
        }),
    },
    Fam {
        name: "container_file_descriptors",
        help: "Number of open file descriptors for the container.",
        kind: G,
        group: Group::Process,
        src: Src::Container(|_, r, f| {
            if let Some(d) = r.s.and_then(|s| s.fds) {
                one(f, r, d.fds as f64)
            }
        }),
    },
    Fam {
        name: "container_sockets",
        help: "Number of open sockets for the container.",
        kind: G,
        group: Group::Process,
        src: Src::Container(|_, r, f| {
            if let Some(d) = r.s.and_then(|s| s.fds) {
                one(f, r, d.sockets as f64)
            }
        }),
    },
    Fam {
        name: "container_threads",
        help: "Number of threads running inside the container",
        kind: G,
        group: Group::Process,
        src: Src::Container(|_, r, f| {
            if let Some(p) = r.s.and_then(|s| s.pids) {
                one(f, r, p.current as f64)
            }
        }),
    },
    Fam {
        name: "container_threads_max",
        help: "Maximum number of threads allowed inside the container, infinity if value is zero",
        kind: G,
        group: Group::Process,
        src: Src::Container(|_, r, f| {
            if let Some(p) = r.s.and_then(|s| s.pids) {
                one(f, r, if p.max == u64::MAX { 0.0 } else { p.max as f64 })
            }
        }),
    },
    // ---------------------------------------------------------------- OOM
    Fam {
        name: "container_oom_events_total",
        help: "Count of out of memory events observed for the container",
        kind: C,
        group: Group::Oom,
        src: Src::Container(|_, r, f| {
            if r.s.is_some() {
                one(f, r, r.oom as f64)
            }
        }),
    },
    // ---------------------------------------------------------------- pressure (cAdvisor's set)
    psi_fam!("container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", cpu, full),
    psi_fam!("container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", cpu, some),
    psi_fam!("container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", memory, full),
    psi_fam!("container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", memory, some),
    psi_fam!("container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", io, full),
    psi_fam!("container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", io, some),
    // ---------------------------------------------------------------- machine
    machine_fam!("machine_cpu_physical_cores", "Number of physical CPU cores.", |m| m.num_physical_cores),
    machine_fam!("machine_cpu_cores", "Number of logical CPU cores.", |m| m.num_cores),
    machine_fam!("machine_cpu_sockets", "Number of CPU sockets.", |m| m.num_sockets),
    machine_fam!("machine_cpu_books", "Number of CPU books.", |_m| 0u64),
    machine_fam!("machine_cpu_drawers", "Number of CPU drawers.", |_m| 0u64),
    machine_fam!("machine_memory_bytes", "Amount of memory installed on the machine.", |m| m.memory_capacity),
    machine_fam!("machine_swap_bytes", "Amount of swap memory available on the machine.", |m| m.swap_capacity),
    Fam {
        name: "machine_nvm_capacity",
        help: "NVM capacity value labeled by NVM mode (memory mode or app direct mode).",
        kind: G,
        group: Group::Machine,
        src: Src::Once(|x, f| {
            for mode in ["app_direct_mode", "memory_mode"] {
                f.sample(x.machine_labels, &[("mode", mode)], 0.0, Some(ms(x.machine.timestamp)));
            }
        }),
    },
    machine_fam!("machine_nvm_avg_power_budget_watts", "NVM power budget.", |_m| 0u64),
    // ---------------------------------------------------------------- collector status
    Fam {
        name: "cadvisor_version_info",
        help: "A metric with a constant '1' value labeled by kernel version, OS version, docker version, cadvisor version & cadvisor revision.",
        kind: G,
        group: Group::Special,
        src: Src::Once(|x, f| {
            f.sample(
                &LabelSet::default(),
                &[
                    ("cadvisorRevision", ""),
                    ("cadvisorVersion", CADVISOR_VERSION),
                    ("dockerVersion", ""),
                    ("kernelVersion", &x.version.kernel_version),
                    ("osVersion", &x.version.container_os_version),
                ],
                1.0,
                None,
            )
        }),
    },
    Fam {
        name: "container_scrape_error",
        help: "1 if there was an error while getting container metrics, 0 otherwise",
        kind: G,
        group: Group::Special,
        // An error: no completed pass of the monitoring core to read from (the root cgroup
        // and the node are sampled together, so a missing node sample means no data).
        src: Src::Once(|x, f| {
            let error = x.node.is_none();
            f.sample(&LabelSet::default(), &[], f64::from(u8::from(error)), None)
        }),
    },
    Fam {
        name: "machine_scrape_error",
        help: "1 if there was an error while getting machine metrics, 0 otherwise.",
        kind: G,
        group: Group::Special,
        // An error: machine information without CPUs or memory (sysfs/procfs unreadable).
        src: Src::Once(|x, f| {
            let error = x.machine.num_cores == 0 || x.machine.memory_capacity == 0;
            f.sample(&LabelSet::default(), &[], f64::from(u8::from(error)), None)
        }),
    },
];

fn families(flavour: Flavour) -> &'static [&'static Fam] {
    static CADVISOR: OnceLock<Vec<&'static Fam>> = OnceLock::new();
    static KUBELET: OnceLock<Vec<&'static Fam>> = OnceLock::new();
    let cell = match flavour {
        Flavour::Cadvisor => &CADVISOR,
        Flavour::Kubelet => &KUBELET,
    };
    cell.get_or_init(|| {
        let mut v: Vec<&'static Fam> = FAMILIES
            .iter()
            .filter(|f| f.group.included(flavour))
            .collect();
        v.sort_by_key(|f| f.name);
        v
    })
}

/// The family names an exporter of `flavour` can emit, sorted (tests, docs).
pub fn family_names(flavour: Flavour) -> Vec<&'static str> {
    families(flavour).iter().map(|f| f.name).collect()
}

struct Slot {
    identity: Option<ContainerIdentity>,
    pod: Option<PodRef>,
    labels: LabelSet,
    built_for: u64,
    seen: u64,
}

#[derive(Default)]
struct State {
    /// Size of the last response, to size the next.
    last_len: usize,
    /// The label union must be recomputed (cAdvisor flavour).
    union_dirty: bool,
    slots: HashMap<String, Slot>,
    scrape: u64,
    /// cAdvisor flavour: (sanitized label name, source) of the label union, sorted by name.
    union: Vec<(String, LabelSource)>,
    union_gen: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum LabelSource {
    Id,
    Name,
    Image,
    Label(String),
}

/// Known identities are looked up again every this many scrapes.
const IDENTITY_RECHECK: u64 = 16;

/// Renders cAdvisor's families for one endpoint. See the module documentation.
pub struct Exporter {
    monitor: Arc<Monitor>,
    tracker: Arc<Tracker>,
    namer: Arc<dyn ContainerNamer>,
    pods: Option<Arc<dyn PodLookup>>,
    flavour: Flavour,
    endpoint: &'static str,
    state: Mutex<State>,
    /// The size of the last rendered body: the next one is allocated at once with room to
    /// spare, so a scrape makes one body allocation instead of a doubling series.
    last_len: std::sync::atomic::AtomicUsize,
}

impl Exporter {
    /// An exporter of `flavour` over `monitor`, naming containers with `namer`; `pods` names
    /// pod-level cgroups (kubelet flavour). `endpoint` labels its own cost metrics.
    pub fn new(
        monitor: Arc<Monitor>,
        tracker: Arc<Tracker>,
        namer: Arc<dyn ContainerNamer>,
        pods: Option<Arc<dyn PodLookup>>,
        flavour: Flavour,
        endpoint: &'static str,
    ) -> Exporter {
        Exporter {
            monitor,
            tracker,
            namer,
            pods,
            flavour,
            endpoint,
            state: Mutex::new(State::default()),
            last_len: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Renders the exposition into `body` (cleared first). Blocking: call it off the async
    /// runtime.
    pub fn render_into(&self, body: &mut Vec<u8>) {
        let started = std::time::Instant::now();
        let mut st = self.state.lock();
        let st = &mut *st;
        st.scrape += 1;
        let scrape = st.scrape;
        let list = self.monitor.subcontainers("/");
        let mut samples: Vec<Option<ContainerStats>> = Vec::with_capacity(list.len());
        let mut specs: Vec<Arc<ContainerSpec>> = Vec::with_capacity(list.len());
        let mut ooms: Vec<u64> = Vec::with_capacity(list.len());
        for c in &list {
            // A container's identity does not change once known (runtime IDs are unique):
            // look it up again only while unknown, and every IDENTITY_RECHECK scrapes.
            let recheck = scrape.is_multiple_of(IDENTITY_RECHECK);
            match st.slots.get_mut(c.name()) {
                Some(slot) if slot.identity.is_some() && !recheck => slot.seen = scrape,
                known => {
                    let identity = self.namer.identify(c.name());
                    let pod = match (&self.pods, &identity) {
                        (Some(p), None) => p.pod_for_cgroup(c.name()),
                        _ => None,
                    };
                    match known {
                        Some(slot) => {
                            if slot.identity != identity || slot.pod != pod {
                                slot.identity = identity;
                                slot.pod = pod;
                                slot.built_for = 0;
                                st.union_dirty = true;
                            }
                            slot.seen = scrape;
                        }
                        None => {
                            st.union_dirty = true;
                            st.slots.insert(
                                c.name().to_string(),
                                Slot {
                                    identity,
                                    pod,
                                    labels: LabelSet::default(),
                                    built_for: 0,
                                    seen: scrape,
                                },
                            );
                        }
                    }
                }
            }
            let s = c.latest();
            let oom = self
                .tracker
                .oom_events(c.name())
                .max(s.as_ref().and_then(|s| s.memory).map_or(0, |m| m.oom_kill));
            samples.push(s);
            specs.push(self.tracker.spec(c));
            ooms.push(oom);
        }
        let before = st.slots.len();
        st.slots.retain(|_, s| s.seen == scrape);
        st.union_dirty |= st.slots.len() != before;
        if self.flavour == Flavour::Cadvisor && std::mem::take(&mut st.union_dirty) {
            let union = label_union(st.slots.values().filter_map(|s| s.identity.as_ref()));
            if union != st.union {
                st.union = union;
                st.union_gen += 1;
            }
        }
        let gen = st.union_gen + 1; // never 0, so that `built_for == 0` always rebuilds
        for (name, slot) in st.slots.iter_mut() {
            if slot.built_for != gen {
                slot.labels = match self.flavour {
                    Flavour::Kubelet => {
                        kubelet_labels(name, slot.identity.as_ref(), slot.pod.as_ref())
                    }
                    Flavour::Cadvisor => cadvisor_labels(name, slot.identity.as_ref(), &st.union),
                };
                slot.built_for = gen;
            }
        }
        // Rows in label order.
        let slots = &st.slots;
        let mut order: Vec<usize> = (0..list.len())
            .filter(|&i| slots.contains_key(list[i].name()))
            .collect();
        order.sort_by(|&a, &b| {
            slots[list[a].name()]
                .labels
                .as_bytes()
                .cmp(slots[list[b].name()].labels.as_bytes())
        });
        let rows: Vec<Row<'_>> = order
            .iter()
            .map(|&i| {
                let s = samples[i].as_ref();
                Row {
                    labels: &slots[list[i].name()].labels,
                    s,
                    spec: &specs[i],
                    ts: s.map(|s| ms(s.timestamp)),
                    root: list[i].name() == "/",
                    oom: ooms[i],
                    shares_network: shares_network(slots[list[i].name()].identity.as_ref()),
                }
            })
            .collect();
        let machine = self.monitor.machine_info();
        let node = self.monitor.node_latest();
        let disks = disk_names(&machine);
        let fs = node
            .as_ref()
            .map(|n| root_filesystems(&machine, n))
            .unwrap_or_default();
        let machine_labels = LabelSet::new([
            ("boot_id", machine.boot_id.as_str()),
            ("machine_id", machine.machine_id.as_str()),
            ("system_uuid", machine.system_uuid.as_str()),
        ]);
        let now = collectors::sys::now_unix_nanos();
        let ctx = Ctx {
            now_s: (now / 1_000_000_000) as f64,
            now_ms: ms(now),
            node: node.as_ref(),
            disks: &disks,
            fs: &fs,
            machine: &machine,
            machine_labels: &machine_labels,
            version: self.monitor.version_info(),
        };
        // Written straight into the response, sized from the last one: one allocation.
        body.clear();
        body.reserve(st.last_len + st.last_len / 8);
        write_families(body, self.flavour, &rows, &ctx);
        if self.flavour == Flavour::Cadvisor {
            crate::metrics::write_process_metrics(body);
            self.tracker.write_cost(body);
        }
        st.last_len = body.len();
        self.tracker
            .record_scrape(self.endpoint, started.elapsed(), body.len());
    }

    /// Renders the exposition.
    pub fn render(&self) -> Vec<u8> {
        use std::sync::atomic::Ordering;
        let last = self.last_len.load(Ordering::Relaxed);
        let mut body = Vec::with_capacity(last + last / 8);
        self.render_into(&mut body);
        self.last_len.store(body.len(), Ordering::Relaxed);
        body
    }
}

/// cAdvisor's label union over the containers' identities: `id`, `name` (if any has
/// aliases), `image` (if any has one), `container_label_<sanitized>`; sorted, the first source
/// winning for a sanitized name.
pub(super) fn label_union<'a>(
    ids: impl Iterator<Item = &'a ContainerIdentity>,
) -> Vec<(String, LabelSource)> {
    let mut u: BTreeSet<(String, LabelSource)> = BTreeSet::new();
    u.insert(("id".into(), LabelSource::Id));
    for id in ids {
        if !id.aliases.is_empty() {
            u.insert(("name".into(), LabelSource::Name));
        }
        if !id.image.is_empty() {
            u.insert(("image".into(), LabelSource::Image));
        }
        for k in id.labels.keys() {
            u.insert((
                sanitize_label_name(&format!("container_label_{k}")),
                LabelSource::Label(k.clone()),
            ));
        }
    }
    let mut union: Vec<(String, LabelSource)> = Vec::with_capacity(u.len());
    for (n, src) in u {
        if union.last().is_none_or(|(last, _)| *last != n) {
            union.push((n, src));
        }
    }
    union
}

/// Writes every family of `flavour` for `rows` (sorted by label values).
pub(super) fn write_families(out: &mut Vec<u8>, flavour: Flavour, rows: &[Row<'_>], ctx: &Ctx<'_>) {
    for fam in families(flavour) {
        let mut f = Family::begin(out, fam.name, fam.help, fam.kind);
        match fam.src {
            Src::Container(write) => {
                for r in rows {
                    write(ctx, r, &mut f);
                }
            }
            Src::Once(write) => write(ctx, &mut f),
        }
        f.finish();
    }
}

/// Whether a container is a CRI container (not a sandbox) and so shares its pod's network.
pub(super) fn shares_network(id: Option<&ContainerIdentity>) -> bool {
    id.and_then(|i| i.labels.get(super::names::KIND_LABEL))
        .is_some_and(|k| k == "container")
}

pub(super) fn kubelet_labels(
    id: &str,
    ident: Option<&ContainerIdentity>,
    pod: Option<&PodRef>,
) -> LabelSet {
    let get = |k: &str| {
        ident
            .and_then(|i| i.labels.get(k))
            .map_or("", |s| s.as_str())
    };
    let (mut pod_name, mut ns) = (get(kl::POD_NAME_LABEL), get(kl::POD_NAMESPACE_LABEL));
    if pod_name.is_empty() && ns.is_empty() {
        if let Some(p) = pod {
            pod_name = &p.name;
            ns = &p.namespace;
        }
    }
    LabelSet::new([
        ("container", get(kl::CONTAINER_NAME_LABEL)),
        ("id", id),
        ("image", ident.map_or("", |i| i.image.as_str())),
        (
            "name",
            ident
                .and_then(|i| i.aliases.first())
                .map_or("", |s| s.as_str()),
        ),
        ("namespace", ns),
        ("pod", pod_name),
    ])
}

pub(super) fn cadvisor_labels(
    id: &str,
    ident: Option<&ContainerIdentity>,
    union: &[(String, LabelSource)],
) -> LabelSet {
    LabelSet::new(union.iter().map(|(n, src)| {
        let v = match src {
            LabelSource::Id => id,
            LabelSource::Name => ident
                .and_then(|i| i.aliases.first())
                .map_or("", |s| s.as_str()),
            LabelSource::Image => ident.map_or("", |i| i.image.as_str()),
            LabelSource::Label(k) => ident
                .and_then(|i| i.labels.get(k))
                .map_or("", |s| s.as_str()),
        };
        (n.as_str(), v)
    }))
}

/// `major:minor` → `/dev/<name>` from the machine's disks (cAdvisor's device names).
pub fn disk_names(m: &MachineInfo) -> HashMap<DevNum, String> {
    let mut out: HashMap<DevNum, String> = m
        .disk_map
        .values()
        .map(|d| {
            (
                DevNum {
                    major: d.major as u32,
                    minor: d.minor as u32,
                },
                format!("/dev/{}", d.name),
            )
        })
        .collect();
    for f in &m.filesystems {
        out.entry(DevNum {
            major: f.major,
            minor: f.minor,
        })
        .or_insert_with(|| f.device.clone());
    }
    out
}

pub(super) fn root_filesystems(m: &MachineInfo, n: &NodeStats) -> Vec<FsRow> {
    let mut seen = BTreeMap::new();
    for f in &n.filesystems {
        if seen.contains_key(&f.dev) {
            continue;
        }
        let device = m
            .filesystems
            .iter()
            .find(|i| i.major == f.dev.major && i.minor == f.dev.minor)
            .map(|i| i.device.clone())
            .unwrap_or_else(|| f.dev.to_string());
        let disk = n
            .disks
            .iter()
            .find(|d| d.dev == f.dev)
            .map(|d| d.counters)
            .unwrap_or_default();
        seen.insert(
            f.dev,
            FsRow {
                device,
                capacity: f.capacity,
                usage: f.usage,
                inodes: f.inodes,
                inodes_free: f.inodes_free,
                disk,
            },
        );
    }
    seen.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_tables_are_sorted_unique_and_flavoured() {
        for fl in [Flavour::Cadvisor, Flavour::Kubelet] {
            let names = family_names(fl);
            let mut sorted = names.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(names, sorted, "{fl:?}");
        }
        let k = family_names(Flavour::Kubelet);
        let c = family_names(Flavour::Cadvisor);
        assert!(k.contains(&"container_processes") && !c.contains(&"container_processes"));
        assert!(c.contains(&"container_pressure_cpu_waiting_seconds_total"));
        assert!(!k.contains(&"container_pressure_cpu_waiting_seconds_total"));
        for name in k.iter().chain(&c) {
            let f = FAMILIES.iter().find(|f| f.name == *name).unwrap();
            // cAdvisor's two exceptions: a counter without the suffix, a gauge with it.
            let exception =
                ["container_memory_failcnt", "container_fs_inodes_total"].contains(name);
            assert_eq!(
                f.kind == Kind::Counter,
                name.ends_with("_total") != exception,
                "{name}: counters end in _total"
            );
        }
    }

    #[test]
    fn spec_memory_unlimited_is_zero() {
        assert_eq!(spec_memory(9_223_372_036_854_771_712), 0.0);
        assert_eq!(spec_memory(u64::MAX), 0.0);
        assert_eq!(spec_memory(1 << 30), (1u64 << 30) as f64);
    }
}
