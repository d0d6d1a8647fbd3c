//! cAdvisor's `info/v1` container types as the v1.x API writes them (`/api/v1.3/containers`,
//! `/api/v1.3/subcontainers`), with field names and order from cAdvisor v0.60, and the
//! conversions from the `collectors` model. The sub-structures (CPU, memory, disk I/O, ...)
//! are shared with the v2.0 types in [`super::api`].
//!
//! Go encoding rules as in `api`: struct fields are always present (Go's `omitempty` has no
//! effect on structs), empty slices and maps tagged `omitempty` are left out, the embedded
//! `InterfaceStats` of `NetworkStats` is inlined (the first interface, zeros when none).
//! Per-CPU usage (`per_cpu_usage`) is read on demand from `cpuacct.usage_percpu` for the newest
//! sample only; the rings do not keep it.

use std::collections::BTreeMap;
use std::path::Path;

use collectors::model::{ContainerStats as CStats, NodeStats, Timestamp};
use collectors::{ContainerIdentity, ContainerSpec as CSpec};
use serde::{Deserialize, Serialize};

use super::api::{
    self, cpu_stats, disk_io_stats, go_time, interfaces, memory_stats, process_stats, psi, CpuSpec,
    CpuStats, DiskIoStats, FsStats, InterfaceStats, LoadStats, MemorySpec, MemoryStats,
    ProcessSpec, ProcessStats, ResctrlStats, TcpAdvancedStat, TcpStat, UdpStat,
};

/// `v1.ContainerReference`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ContainerReference {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `v1.ContainerSpec`.
#[derive(Clone, Serialize)]
pub struct ContainerSpec {
    #[serde(serialize_with = "go_time")]
    pub creation_time: Timestamp,
    #[serde(serialize_with = "go_time")]
    pub start_time: Timestamp,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
    pub has_cpu: bool,
    pub cpu: CpuSpec,
    pub has_memory: bool,
    pub memory: MemorySpec,
    pub has_hugetlb: bool,
    pub has_network: bool,
    pub has_processes: bool,
    pub processes: ProcessSpec,
    pub has_filesystem: bool,
    pub has_diskio: bool,
    pub has_custom_metrics: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// `v1.NetworkStats`: the first interface inline, then all of them.
#[derive(Clone, Serialize)]
pub struct NetworkStats {
    #[serde(flatten)]
    pub default: InterfaceStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStats>,
    pub tcp: TcpStat,
    pub tcp6: TcpStat,
    pub udp: UdpStat,
    pub udp6: UdpStat,
    pub tcp_advanced: TcpAdvancedStat,
}

/// `v1.CPUSetStats`.
#[derive(Clone, Default, Serialize)]
pub struct CpuSetStats {
    pub memory_migrate: u64,
}

/// `v1.Health`.
#[derive(Clone, Default, Serialize)]
pub struct Health {
    pub status: String,
}

/// `v1.ContainerStats`.
#[derive(Clone, Serialize)]
pub struct ContainerStats {
    #[serde(serialize_with = "go_time")]
    pub timestamp: Timestamp,
    pub cpu: CpuStats,
    pub diskio: DiskIoStats,
    pub memory: MemoryStats,
    pub network: NetworkStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<FsStats>,
    pub task_stats: LoadStats,
    pub processes: ProcessStats,
    pub resctrl: ResctrlStats,
    pub cpuset: CpuSetStats,
    #[serde(skip_serializing_if = "api::is_zero")]
    pub oom_events: u64,
    pub health: Health,
}

/// `v1.ContainerInfo`.
#[derive(Clone, Serialize)]
pub struct ContainerInfo {
    #[serde(flatten)]
    pub reference: ContainerReference,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subcontainers: Vec<ContainerReference>,
    pub spec: ContainerSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stats: Vec<ContainerStats>,
}

/// `v1.ContainerInfoRequest`, the JSON body of the v1.x container requests.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ContainerInfoRequest {
    pub num_stats: i64,
    /// RFC 3339 (Go's zero time or absent: no bound).
    pub start: Option<String>,
    pub end: Option<String>,
}

impl Default for ContainerInfoRequest {
    fn default() -> Self {
        ContainerInfoRequest {
            num_stats: 60,
            start: None,
            end: None,
        }
    }
}

/// The reference of a container from its name and identity.
pub fn reference(name: &str, id: Option<&ContainerIdentity>) -> ContainerReference {
    ContainerReference {
        id: id
            .and_then(|i| i.aliases.first())
            .cloned()
            .unwrap_or_default(),
        name: name.to_string(),
        aliases: id.map(|i| i.aliases.clone()).unwrap_or_default(),
        namespace: id.map(|i| i.namespace.clone()).unwrap_or_default(),
    }
}

/// The v1 spec of container `name` (cAdvisor's raw handler, plus identity).
pub fn spec(
    name: &str,
    s: &CSpec,
    has_network: bool,
    memory_capacity: u64,
    id: Option<&ContainerIdentity>,
) -> ContainerSpec {
    ContainerSpec {
        creation_time: s.creation_time,
        start_time: 0,
        labels: id.map(|i| i.labels.clone()).unwrap_or_default(),
        envs: BTreeMap::new(),
        has_cpu: s.has_cpu,
        cpu: CpuSpec {
            limit: if s.has_cpu { s.cpu_shares } else { 0 },
            max_limit: 0,
            mask: if s.has_cpu {
                s.cpu_mask.clone()
            } else {
                String::new()
            },
            quota: if s.has_cpu {
                s.cpu_quota.unwrap_or(0)
            } else {
                0
            },
            period: if s.has_cpu { s.cpu_period } else { 0 },
        },
        has_memory: s.has_memory,
        memory: MemorySpec {
            limit: match (s.has_memory, s.memory_limit) {
                (false, _) => 0,
                (true, 0) => memory_capacity,
                (true, l) => l,
            },
            reservation: if s.has_memory {
                s.memory_reservation
            } else {
                0
            },
            swap_limit: if s.has_memory { s.swap_limit } else { 0 },
        },
        has_hugetlb: false,
        has_network: has_network || name == "/",
        has_processes: s.has_processes,
        processes: ProcessSpec {
            limit: if s.pids_limit == u64::MAX {
                0
            } else {
                s.pids_limit
            },
        },
        has_filesystem: name == "/",
        has_diskio: s.has_diskio,
        has_custom_metrics: false,
        image: id.map(|i| i.image.clone()).unwrap_or_default(),
    }
}

/// Reads `cpuacct.usage_percpu` in `dir` (cgroup v1), ns per CPU.
pub fn read_percpu(dir: &Path) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(dir.join("cpuacct.usage_percpu")).ok()?;
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Converts samples of one container (oldest first) to v1 stats. `node` (root only) gives
/// network and filesystems by timestamp; `oom_events` goes on every sample.
pub fn stats(
    samples: &[CStats],
    ctx: &api::StatsContext<'_>,
    oom_events: u64,
) -> Vec<ContainerStats> {
    samples
        .iter()
        .map(|s| {
            let node: Option<&NodeStats> = ctx.node.and_then(|n| n.get(&s.timestamp));
            let cpu = s.cpu.unwrap_or_default();
            let mem = s.memory.unwrap_or_default();
            let blk = s.blkio.as_deref().unwrap_or(&[]);
            let net = match (node, s.network.as_deref()) {
                (Some(n), _) => interfaces(&n.network),
                (None, Some(v)) => interfaces(v),
                (None, None) => Vec::new(),
            };
            let default = net.first().cloned().unwrap_or(InterfaceStats {
                name: String::new(),
                rx_bytes: 0,
                rx_packets: 0,
                rx_errors: 0,
                rx_dropped: 0,
                tx_bytes: 0,
                tx_packets: 0,
                tx_errors: 0,
                tx_dropped: 0,
            });
            ContainerStats {
                timestamp: s.timestamp,
                cpu: cpu_stats(
                    &cpu,
                    s.cpu_burst,
                    psi(s.psi.cpu.or(node.and_then(|n| n.psi.cpu))),
                ),
                diskio: disk_io_stats(
                    blk,
                    ctx.disk_names,
                    psi(s.psi.io.or(node.and_then(|n| n.psi.io))),
                ),
                memory: memory_stats(&mem, psi(s.psi.memory.or(node.and_then(|n| n.psi.memory)))),
                network: NetworkStats {
                    default,
                    interfaces: net,
                    tcp: TcpStat::default(),
                    tcp6: TcpStat::default(),
                    udp: UdpStat::default(),
                    udp6: UdpStat::default(),
                    tcp_advanced: TcpAdvancedStat,
                },
                filesystem: node
                    .map(|n| api::node_filesystems(n, ctx.fs_names))
                    .unwrap_or_default(),
                task_stats: LoadStats::default(),
                processes: process_stats(s),
                resctrl: ResctrlStats {},
                cpuset: CpuSetStats::default(),
                oom_events,
                health: Health::default(),
            }
        })
        .collect()
}
