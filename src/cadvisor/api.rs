//! cAdvisor's JSON wire types (`info/v1` MachineInfo and stats, `info/v2` ContainerSpec and
//! the v2.0 API's stats shape), with cAdvisor's exact field names and field order, and the
//! conversions from the `collectors` model.
//!
//! Go's encoding rules are followed where a client could notice: `omitempty` fields are left
//! out when empty, non-pointer structs are always present, times are RFC 3339 with trimmed
//! nanoseconds (`time.RFC3339Nano`), integral floats print without a fraction.

use std::collections::BTreeMap;

use collectors::machine::{self, MachineInfo as CMachine};
use collectors::model::{self as m, ContainerStats as CStats, NodeStats, Timestamp};
use collectors::{ContainerIdentity, ContainerSpec as CSpec};
use serde::{Serialize, Serializer};

/// Formats nanoseconds since the epoch as Go's `time.RFC3339Nano` in UTC.
pub fn rfc3339_nano(ns: Timestamp) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let nanos = (ns % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    let mut s = format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Go's zero `time.Time`.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub(crate) fn go_time<S: Serializer>(ns: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    if *ns == 0 {
        s.serialize_str(ZERO_TIME)
    } else {
        s.serialize_str(&rfc3339_nano(*ns))
    }
}

/// Go prints integral floats without a fraction (`0`, not `0.0`).
pub(crate) fn go_float<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

pub(crate) fn is_zero(v: &u64) -> bool {
    *v == 0
}

// ---------------------------------------------------------------- machine (info/v1)

/// `v1.FsInfo`.
#[derive(Clone, Serialize)]
pub struct FsInfo {
    pub device: String,
    pub capacity: u64,
    #[serde(rename = "type")]
    pub fs_type: String,
    pub inodes: u64,
    pub has_inodes: bool,
}

/// `v1.Cache`.
#[derive(Clone, Serialize)]
pub struct Cache {
    pub id: u64,
    pub size: u64,
    #[serde(rename = "type")]
    pub cache_type: String,
    pub level: u64,
}

/// `v1.Core`.
#[derive(Clone, Serialize)]
pub struct Core {
    pub core_id: u64,
    pub thread_ids: Vec<u64>,
    pub caches: Vec<Cache>,
    pub uncore_caches: Vec<Cache>,
    pub socket_id: u64,
}

/// `v1.HugePagesInfo`.
#[derive(Clone, Serialize)]
pub struct HugePagesInfo {
    pub page_size: u64,
    pub num_pages: u64,
}

/// `v1.Node`.
#[derive(Clone, Serialize)]
pub struct Node {
    pub node_id: u64,
    pub memory: u64,
    pub hugepages: Vec<HugePagesInfo>,
    pub cores: Vec<Core>,
    pub caches: Vec<Cache>,
    pub distances: Vec<u64>,
}

/// `v1.DiskInfo`.
#[derive(Clone, Serialize)]
pub struct DiskInfo {
    pub name: String,
    pub major: u64,
    pub minor: u64,
    pub size: u64,
    pub scheduler: String,
}

/// `v1.NetInfo`.
#[derive(Clone, Serialize)]
pub struct NetInfo {
    pub name: String,
    pub mac_address: String,
    pub speed: i64,
    pub mtu: i64,
}

/// `v1.NVMInfo`.
#[derive(Clone, Serialize, Default)]
pub struct NvmInfo {
    pub memory_mode_capacity: u64,
    #[serde(rename = "app direct_mode_capacity")]
    pub app_direct_mode_capacity: u64,
    pub avg_power_budget: u64,
}

/// `v1.MemoryInfo`.
#[derive(Clone, Serialize)]
pub struct MemoryInfo {
    pub capacity: u64,
    pub dimm_count: u64,
}

/// `v1.MachineInfo`.
#[derive(Clone, Serialize)]
pub struct MachineInfo {
    #[serde(serialize_with = "go_time")]
    pub timestamp: Timestamp,
    pub vendor_id: String,
    pub num_cores: u64,
    pub num_physical_cores: u64,
    pub num_sockets: u64,
    pub cpu_frequency_khz: u64,
    pub memory_capacity: u64,
    pub swap_capacity: u64,
    pub memory_by_type: BTreeMap<String, MemoryInfo>,
    pub nvm: NvmInfo,
    pub hugepages: Vec<HugePagesInfo>,
    pub machine_id: String,
    pub system_uuid: String,
    pub boot_id: String,
    pub filesystems: Vec<FsInfo>,
    pub disk_map: BTreeMap<String, DiskInfo>,
    pub network_devices: Vec<NetInfo>,
    pub topology: Vec<Node>,
    pub cloud_provider: String,
    pub instance_type: String,
    pub instance_id: String,
}

fn cache(c: &machine::Cache) -> Cache {
    Cache {
        id: c.id,
        size: c.size,
        cache_type: c.cache_type.clone(),
        level: c.level,
    }
}

fn hugepages(h: &[machine::HugePages]) -> Vec<HugePagesInfo> {
    h.iter()
        .map(|h| HugePagesInfo {
            page_size: h.page_size,
            num_pages: h.num_pages,
        })
        .collect()
}

impl From<&CMachine> for MachineInfo {
    fn from(mi: &CMachine) -> Self {
        MachineInfo {
            timestamp: mi.timestamp,
            vendor_id: mi.vendor_id.clone(),
            num_cores: mi.num_cores,
            num_physical_cores: mi.num_physical_cores,
            num_sockets: mi.num_sockets,
            cpu_frequency_khz: mi.cpu_frequency_khz,
            memory_capacity: mi.memory_capacity,
            swap_capacity: mi.swap_capacity,
            memory_by_type: BTreeMap::new(),
            nvm: NvmInfo::default(),
            hugepages: hugepages(&mi.hugepages),
            machine_id: mi.machine_id.clone(),
            system_uuid: mi.system_uuid.clone(),
            boot_id: mi.boot_id.clone(),
            filesystems: mi
                .filesystems
                .iter()
                .map(|f| FsInfo {
                    device: f.device.clone(),
                    capacity: f.capacity,
                    fs_type: f.fs_type.clone(),
                    inodes: f.inodes,
                    has_inodes: f.has_inodes,
                })
                .collect(),
            disk_map: mi
                .disk_map
                .iter()
                .map(|(k, d)| {
                    (
                        k.clone(),
                        DiskInfo {
                            name: d.name.clone(),
                            major: d.major,
                            minor: d.minor,
                            size: d.size,
                            scheduler: d.scheduler.clone(),
                        },
                    )
                })
                .collect(),
            network_devices: mi
                .network_devices
                .iter()
                .map(|n| NetInfo {
                    name: n.name.clone(),
                    mac_address: n.mac_address.clone(),
                    speed: n.speed,
                    mtu: n.mtu,
                })
                .collect(),
            topology: mi
                .topology
                .iter()
                .map(|n| Node {
                    node_id: n.id,
                    memory: n.memory,
                    hugepages: hugepages(&n.hugepages),
                    cores: n
                        .cores
                        .iter()
                        .map(|c| Core {
                            core_id: c.id,
                            thread_ids: c.threads.clone(),
                            caches: c.caches.iter().map(cache).collect(),
                            uncore_caches: c.uncore_caches.iter().map(cache).collect(),
                            socket_id: c.socket_id,
                        })
                        .collect(),
                    caches: n.caches.iter().map(cache).collect(),
                    distances: n.distances.clone(),
                })
                .collect(),
            cloud_provider: mi.cloud_provider.clone(),
            instance_type: mi.instance_type.clone(),
            instance_id: mi.instance_id.clone(),
        }
    }
}

// ---------------------------------------------------------------- spec (info/v2)

/// `v2.CpuSpec` as `/api/v2.0/spec` fills it (limit, max_limit, mask).
#[derive(Clone, Serialize)]
pub struct CpuSpec {
    pub limit: u64,
    pub max_limit: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mask: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub quota: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub period: u64,
}

/// `v2.MemorySpec`.
#[derive(Clone, Serialize)]
pub struct MemorySpec {
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub reservation: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub swap_limit: u64,
}

/// `v1.ProcessSpec`.
#[derive(Clone, Serialize)]
pub struct ProcessSpec {
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

/// `v2.ContainerSpec`.
#[derive(Clone, Serialize)]
pub struct ContainerSpec {
    #[serde(serialize_with = "go_time")]
    pub creation_time: Timestamp,
    #[serde(serialize_with = "go_time")]
    pub start_time: Timestamp,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub envs: BTreeMap<String, String>,
    pub has_cpu: bool,
    pub cpu: CpuSpec,
    pub has_memory: bool,
    pub memory: MemorySpec,
    pub has_hugetlb: bool,
    pub has_custom_metrics: bool,
    pub has_processes: bool,
    pub processes: ProcessSpec,
    pub has_network: bool,
    pub has_filesystem: bool,
    pub has_diskio: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
}

/// Whether cAdvisor would report network for this container: the root, or a cgroup whose
/// processes have their own network namespace (we know it once a sample carried network).
pub fn spec_from(
    name: &str,
    s: &CSpec,
    has_network: bool,
    memory_capacity: u64,
    identity: Option<ContainerIdentity>,
) -> ContainerSpec {
    let id = identity.unwrap_or_default();
    ContainerSpec {
        creation_time: s.creation_time,
        start_time: 0,
        aliases: id.aliases,
        namespace: id.namespace,
        labels: id.labels,
        envs: BTreeMap::new(),
        has_cpu: s.has_cpu,
        // The v2 conversion copies limit, max_limit and mask only.
        cpu: CpuSpec {
            limit: if s.has_cpu { s.cpu_shares } else { 0 },
            max_limit: 0,
            mask: if s.has_cpu {
                s.cpu_mask.clone()
            } else {
                String::new()
            },
            quota: 0,
            period: 0,
        },
        has_memory: s.has_memory,
        memory: if s.has_memory {
            MemorySpec {
                // cAdvisor reports "no limit" read as 0 as the machine's capacity.
                limit: if s.memory_limit == 0 {
                    memory_capacity
                } else {
                    s.memory_limit
                },
                reservation: s.memory_reservation,
                swap_limit: s.swap_limit,
            }
        } else {
            MemorySpec {
                limit: 0,
                reservation: 0,
                swap_limit: 0,
            }
        },
        has_hugetlb: false,
        has_custom_metrics: false,
        has_processes: s.has_processes,
        processes: ProcessSpec { limit: 0 },
        has_network: has_network || name == "/",
        has_filesystem: name == "/",
        has_diskio: s.has_diskio,
        image: id.image,
    }
}

// ---------------------------------------------------------------- stats (v2.0 API)

/// `v1.PSIData`.
#[derive(Clone, Serialize, Default)]
pub struct PsiData {
    pub total: u64,
    #[serde(serialize_with = "go_float")]
    pub avg10: f64,
    #[serde(serialize_with = "go_float")]
    pub avg60: f64,
    #[serde(serialize_with = "go_float")]
    pub avg300: f64,
}

/// `v1.PSIStats` (`full` before `some`, as cAdvisor declares them).
#[derive(Clone, Serialize, Default)]
pub struct PsiStats {
    pub full: PsiData,
    pub some: PsiData,
}

pub(crate) fn psi(p: Option<m::Psi>) -> PsiStats {
    let d = |d: &m::PsiData| PsiData {
        total: d.total,
        avg10: d.avg10,
        avg60: d.avg60,
        avg300: d.avg300,
    };
    p.map(|p| PsiStats {
        full: d(&p.full),
        some: d(&p.some),
    })
    .unwrap_or_default()
}

/// `v1.CpuUsage`.
#[derive(Clone, Serialize, Default)]
pub struct CpuUsage {
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub per_cpu_usage: Vec<u64>,
    pub user: u64,
    pub system: u64,
}

/// `v1.CpuCFS`. The burst figures come from `cpu.stat`'s `nr_bursts` and `burst_time`
/// (`burst_usec` on v2); on kernels without them (before 5.14) they are left out rather than
/// reported as zero (cAdvisor prints a zero there; a client reads a missing field as zero too).
#[derive(Clone, Serialize, Default)]
pub struct CpuCfs {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bursts_periods: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst_time: Option<u64>,
}

/// `v1.CpuSchedstat`.
#[derive(Clone, Serialize, Default)]
pub struct CpuSchedstat {
    pub run_time: u64,
    pub runqueue_time: u64,
    pub run_periods: u64,
}

/// `v1.CpuStats`.
#[derive(Clone, Serialize, Default)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub cfs: CpuCfs,
    pub schedstat: CpuSchedstat,
    pub load_average: i32,
    pub load_d_average: i32,
    pub psi: PsiStats,
}

/// `v2.CpuInstUsage`.
#[derive(Clone, Serialize)]
pub struct CpuInstUsage {
    pub total: u64,
    pub user: u64,
    pub system: u64,
}

/// `v2.CpuInstStats`.
#[derive(Clone, Serialize)]
pub struct CpuInstStats {
    pub usage: CpuInstUsage,
}

/// `v1.PerDiskStats`.
#[derive(Clone, Serialize)]
pub struct PerDiskStats {
    pub device: String,
    pub major: u64,
    pub minor: u64,
    pub stats: BTreeMap<&'static str, u64>,
}

/// `v1.DiskIoStats` (only the fields we fill; the rest are `omitempty`).
#[derive(Clone, Serialize, Default)]
pub struct DiskIoStats {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_service_bytes: Vec<PerDiskStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub io_serviced: Vec<PerDiskStats>,
    pub psi: PsiStats,
}

/// `v1.MemoryNumaStats` (empty: `omitempty` maps).
#[derive(Clone, Serialize, Default)]
pub struct MemoryNumaStats {}

/// `v1.MemoryStatsMemoryData`.
#[derive(Clone, Serialize, Default)]
pub struct MemoryData {
    pub pgfault: u64,
    pub pgmajfault: u64,
    pub numa_stats: MemoryNumaStats,
}

/// `v1.MemoryEvents`.
#[derive(Clone, Serialize, Default)]
pub struct MemoryEvents {
    pub high: u64,
    pub max: u64,
}

/// `v1.MemoryStats`.
#[derive(Clone, Serialize, Default)]
pub struct MemoryStats {
    pub usage: u64,
    pub max_usage: u64,
    pub cache: u64,
    pub rss: u64,
    pub swap: u64,
    pub mapped_file: u64,
    pub working_set: u64,
    pub total_active_file: u64,
    pub total_inactive_file: u64,
    pub file_dirty: u64,
    pub file_writeback: u64,
    pub pgscan: u64,
    pub pgsteal: u64,
    pub workingset_refault_file: u64,
    pub workingset_refault_anon: u64,
    pub failcnt: u64,
    pub kernel: u64,
    pub container_data: MemoryData,
    pub hierarchical_data: MemoryData,
    pub psi: PsiStats,
    pub events: MemoryEvents,
}

/// `v1.InterfaceStats`.
#[derive(Clone, Serialize)]
pub struct InterfaceStats {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// `v2.TcpStat` (Go field names, no JSON tags).
#[derive(Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct TcpStat {
    pub established: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    pub fin_wait1: u64,
    pub fin_wait2: u64,
    pub time_wait: u64,
    pub close: u64,
    pub close_wait: u64,
    pub last_ack: u64,
    pub listen: u64,
    pub closing: u64,
}

/// `v1.UdpStat`.
#[derive(Clone, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct UdpStat {
    pub listen: u64,
    pub dropped: u64,
    pub rx_queued: u64,
    pub tx_queued: u64,
}

/// The counters of cAdvisor's `v1.TcpAdvancedStat`, by their Go names (no JSON tags).
const TCP_ADVANCED: &[&str] = &[
    "RtoAlgorithm",
    "RtoMin",
    "RtoMax",
    "MaxConn",
    "ActiveOpens",
    "PassiveOpens",
    "AttemptFails",
    "EstabResets",
    "CurrEstab",
    "InSegs",
    "OutSegs",
    "RetransSegs",
    "InErrs",
    "OutRsts",
    "InCsumErrors",
    "EmbryonicRsts",
    "SyncookiesSent",
    "SyncookiesRecv",
    "SyncookiesFailed",
    "PruneCalled",
    "RcvPruned",
    "OfoPruned",
    "OutOfWindowIcmps",
    "LockDroppedIcmps",
    "TW",
    "TWRecycled",
    "TWKilled",
    "TCPTimeWaitOverflow",
    "TCPTimeouts",
    "TCPSpuriousRTOs",
    "TCPLossProbes",
    "TCPLossProbeRecovery",
    "TCPRenoRecoveryFail",
    "TCPSackRecoveryFail",
    "TCPRenoFailures",
    "TCPSackFailures",
    "TCPLossFailures",
    "DelayedACKs",
    "DelayedACKLocked",
    "DelayedACKLost",
    "ListenOverflows",
    "ListenDrops",
    "TCPHPHits",
    "TCPPureAcks",
    "TCPHPAcks",
    "TCPRenoRecovery",
    "TCPSackRecovery",
    "TCPSACKReneging",
    "TCPFACKReorder",
    "TCPSACKReorder",
    "TCPRenoReorder",
    "TCPTSReorder",
    "TCPFullUndo",
    "TCPPartialUndo",
    "TCPDSACKUndo",
    "TCPLossUndo",
    "TCPFastRetrans",
    "TCPSlowStartRetrans",
    "TCPLostRetransmit",
    "TCPRetransFail",
    "TCPRcvCollapsed",
    "TCPDSACKOldSent",
    "TCPDSACKOfoSent",
    "TCPDSACKRecv",
    "TCPDSACKOfoRecv",
    "TCPAbortOnData",
    "TCPAbortOnClose",
    "TCPAbortOnMemory",
    "TCPAbortOnTimeout",
    "TCPAbortOnLinger",
    "TCPAbortFailed",
    "TCPMemoryPressures",
    "TCPMemoryPressuresChrono",
    "TCPSACKDiscard",
    "TCPDSACKIgnoredOld",
    "TCPDSACKIgnoredNoUndo",
    "TCPMD5NotFound",
    "TCPMD5Unexpected",
    "TCPMD5Failure",
    "TCPSackShifted",
    "TCPSackMerged",
    "TCPSackShiftFallback",
    "TCPBacklogDrop",
    "PFMemallocDrop",
    "TCPMinTTLDrop",
    "TCPDeferAcceptDrop",
    "IPReversePathFilter",
    "TCPReqQFullDoCookies",
    "TCPReqQFullDrop",
    "TCPFastOpenActive",
    "TCPFastOpenActiveFail",
    "TCPFastOpenPassive",
    "TCPFastOpenPassiveFail",
    "TCPFastOpenListenOverflow",
    "TCPFastOpenCookieReqd",
    "TCPSynRetrans",
    "TCPOrigDataSent",
    "PAWSActive",
    "PAWSEstab",
];

/// `v1.TcpAdvancedStat`, all zero (the v2.0 stats API copies only interfaces).
#[derive(Clone, Default)]
pub struct TcpAdvancedStat;

impl Serialize for TcpAdvancedStat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(TCP_ADVANCED.len()))?;
        for k in TCP_ADVANCED {
            m.serialize_entry(k, &0u64)?;
        }
        m.end()
    }
}

/// `v2.NetworkStats`.
#[derive(Clone, Serialize, Default)]
pub struct NetworkStats {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStats>,
    pub tcp: TcpStat,
    pub tcp6: TcpStat,
    pub udp: UdpStat,
    pub udp6: UdpStat,
    pub tcp_advanced: TcpAdvancedStat,
}

/// `v1.ProcessStats`. `fd_count` and `socket_count` are there when the monitor counts
/// descriptors (cAdvisor's `process` metrics, which the kubelet enables), and left out
/// otherwise rather than reported as zero.
#[derive(Clone, Serialize, Default)]
pub struct ProcessStats {
    pub process_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fd_count: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_count: Option<u64>,
    #[serde(skip_serializing_if = "is_zero")]
    pub threads_current: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub threads_max: u64,
}

/// `v1.FsStats`.
#[derive(Clone, Serialize)]
pub struct FsStats {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub device: String,
    #[serde(rename = "type")]
    pub fs_type: String,
    pub capacity: u64,
    pub usage: u64,
    pub base_usage: u64,
    pub available: u64,
    pub has_inodes: bool,
    pub inodes: u64,
    pub inodes_free: u64,
    pub reads_completed: u64,
    pub reads_merged: u64,
    pub sectors_read: u64,
    pub read_time: u64,
    pub writes_completed: u64,
    pub writes_merged: u64,
    pub sectors_written: u64,
    pub write_time: u64,
    pub io_in_progress: u64,
    pub io_time: u64,
    pub weighted_io_time: u64,
}

/// `v1.LoadStats`.
#[derive(Clone, Serialize, Default)]
pub struct LoadStats {
    pub nr_sleeping: u64,
    pub nr_running: u64,
    pub nr_stopped: u64,
    pub nr_uninterruptible: u64,
    pub nr_io_wait: u64,
}

/// `v1.ResctrlStats` (empty: `omitempty` slices).
#[derive(Clone, Serialize, Default)]
pub struct ResctrlStats {}

/// `v2.DeprecatedContainerStats`: one element of `/api/v2.0/stats` answers.
#[derive(Clone, Serialize)]
pub struct DeprecatedContainerStats {
    #[serde(serialize_with = "go_time")]
    pub timestamp: Timestamp,
    pub has_cpu: bool,
    pub cpu: CpuStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_inst: Option<CpuInstStats>,
    pub has_diskio: bool,
    pub diskio: DiskIoStats,
    pub has_memory: bool,
    pub memory: MemoryStats,
    pub has_hugetlb: bool,
    pub has_network: bool,
    pub network: NetworkStats,
    pub has_processes: bool,
    pub processes: ProcessStats,
    pub has_filesystem: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<FsStats>,
    pub has_load: bool,
    pub load_stats: LoadStats,
    pub has_custom_metrics: bool,
    pub resctrl: ResctrlStats,
}

fn rate(prev: u64, cur: u64, dt_ns: u64) -> Option<u64> {
    (cur >= prev).then(|| ((cur - prev) as f64 / dt_ns as f64 * 1e9) as u64)
}

/// cAdvisor's `InstCpuStats`: rates between two consecutive samples, in nanocores.
pub fn cpu_inst(prev: &CStats, cur: &CStats) -> Option<CpuInstStats> {
    let (p, c) = (prev.cpu?, cur.cpu?);
    if cur.timestamp <= prev.timestamp {
        return None;
    }
    let dt = cur.timestamp - prev.timestamp;
    Some(CpuInstStats {
        usage: CpuInstUsage {
            total: rate(p.usage_total, c.usage_total, dt)?,
            user: rate(p.usage_user, c.usage_user, dt)?,
            system: rate(p.usage_system, c.usage_system, dt)?,
        },
    })
}

pub(crate) fn per_disk(
    devices: &[m::BlkioDevice],
    disk_names: &BTreeMap<String, String>,
    pick: impl Fn(&m::BlkioDevice) -> m::IoCounts,
) -> Vec<PerDiskStats> {
    devices
        .iter()
        .map(|d| {
            let c = pick(d);
            PerDiskStats {
                device: disk_names
                    .get(&d.dev.to_string())
                    .cloned()
                    .unwrap_or_default(),
                major: u64::from(d.dev.major),
                minor: u64::from(d.dev.minor),
                stats: BTreeMap::from([
                    ("Async", c.async_),
                    ("Discard", c.discard),
                    ("Read", c.read),
                    ("Sync", c.sync),
                    ("Total", c.total()),
                    ("Write", c.write),
                ]),
            }
        })
        .collect()
}

pub(crate) fn interfaces(v: &[m::InterfaceStats]) -> Vec<InterfaceStats> {
    v.iter()
        .map(|i| InterfaceStats {
            name: i.name.as_str().into_owned(),
            rx_bytes: i.counters.rx_bytes,
            rx_packets: i.counters.rx_packets,
            rx_errors: i.counters.rx_errors,
            rx_dropped: i.counters.rx_dropped,
            tx_bytes: i.counters.tx_bytes,
            tx_packets: i.counters.tx_packets,
            tx_errors: i.counters.tx_errors,
            tx_dropped: i.counters.tx_dropped,
        })
        .collect()
}

/// The node's filesystems as cAdvisor's root `FsStats` (one per device), with the disk I/O
/// counters of their devices. `fs_names`: `major:minor` → (device, type).
pub(crate) fn node_filesystems(
    n: &NodeStats,
    fs_names: &BTreeMap<String, (String, String)>,
) -> Vec<FsStats> {
    let mut seen = Vec::new();
    n.filesystems
        .iter()
        .filter(|f| {
            let new = !seen.contains(&f.dev);
            seen.push(f.dev);
            new
        })
        .map(|f| {
            let (device, fs_type) = fs_names
                .get(&f.dev.to_string())
                .cloned()
                .unwrap_or_default();
            let dc = n
                .disks
                .iter()
                .find(|d| d.dev == f.dev)
                .map(|d| d.counters)
                .unwrap_or_default();
            FsStats {
                device,
                fs_type,
                capacity: f.capacity,
                usage: f.usage,
                base_usage: 0,
                available: f.available,
                has_inodes: f.inodes > 0,
                inodes: f.inodes,
                inodes_free: f.inodes_free,
                reads_completed: dc.reads_completed,
                reads_merged: dc.reads_merged,
                sectors_read: dc.sectors_read,
                read_time: dc.read_time,
                writes_completed: dc.writes_completed,
                writes_merged: dc.writes_merged,
                sectors_written: dc.sectors_written,
                write_time: dc.write_time,
                io_in_progress: dc.io_in_progress,
                io_time: dc.io_time,
                weighted_io_time: dc.weighted_io_time,
            }
        })
        .collect()
}

/// Context for converting samples: what the spec says the container has, disk names, and
/// for the root container the node samples (network and filesystems).
pub struct StatsContext<'a> {
    pub spec: &'a CSpec,
    /// `major:minor` → `/dev/<name>`.
    pub disk_names: &'a BTreeMap<String, String>,
    /// Node samples by timestamp (root container only).
    pub node: Option<&'a BTreeMap<Timestamp, NodeStats>>,
    /// Device names of node filesystems, `major:minor` → (`/dev/vda`, `ext4`).
    pub fs_names: &'a BTreeMap<String, (String, String)>,
}

/// Converts consecutive samples of one container to the v2.0 stats shape (oldest first,
/// `cpu_inst` from each sample and its predecessor, as cAdvisor's `DeprecatedStatsFromV1`).
pub fn deprecated_stats(
    samples: &[CStats],
    ctx: &StatsContext<'_>,
) -> Vec<DeprecatedContainerStats> {
    let mut out = Vec::with_capacity(samples.len());
    for (i, s) in samples.iter().enumerate() {
        let node = ctx.node.and_then(|n| n.get(&s.timestamp));
        let cpu = s.cpu.unwrap_or_default();
        let mem = s.memory.unwrap_or_default();
        let blk = s.blkio.as_deref().unwrap_or(&[]);
        let net_src: &[m::InterfaceStats] = match (node, s.network.as_deref()) {
            (Some(n), _) => &n.network,
            (None, Some(v)) => v,
            (None, None) => &[],
        };
        let filesystem: Vec<FsStats> = node
            .map(|n| node_filesystems(n, ctx.fs_names))
            .unwrap_or_default();
        let has_network = !net_src.is_empty() || s.network.is_some();
        let has_cpu = ctx.spec.has_cpu || s.cpu.is_some();
        out.push(DeprecatedContainerStats {
            timestamp: s.timestamp,
            has_cpu,
            cpu: cpu_stats(&cpu, s.cpu_burst, psi(s.psi.cpu)),
            cpu_inst: if has_cpu && i > 0 {
                cpu_inst(&samples[i - 1], s)
            } else {
                None
            },
            has_diskio: ctx.spec.has_diskio,
            diskio: disk_io_stats(blk, ctx.disk_names, psi(s.psi.io)),
            has_memory: ctx.spec.has_memory || s.memory.is_some(),
            memory: memory_stats(&mem, psi(s.psi.memory)),
            has_hugetlb: false,
            has_network,
            network: NetworkStats {
                interfaces: interfaces(net_src),
                ..Default::default()
            },
            // cAdvisor's conversion never sets has_processes (so never copies processes);
            // we report them when the cgroup has a pids controller or a process list.
            has_processes: s.process_count.is_some() || s.pids.is_some(),
            processes: process_stats(s),
            has_filesystem: !filesystem.is_empty(),
            filesystem,
            has_load: false,
            load_stats: LoadStats::default(),
            has_custom_metrics: false,
            resctrl: ResctrlStats {},
        });
    }
    out
}

/// cAdvisor's `CpuStats` (info/v1) from one CPU sample and its bursts (where the kernel has
/// them), without per-CPU usage; `psi` is the CPU pressure to report (the container's, or the
/// node's for the root).
pub(crate) fn cpu_stats(
    cpu: &m::CpuStats,
    burst: Option<m::CpuBurstStats>,
    psi: PsiStats,
) -> CpuStats {
    CpuStats {
        usage: CpuUsage {
            total: cpu.usage_total,
            per_cpu_usage: Vec::new(),
            user: cpu.usage_user,
            system: cpu.usage_system,
        },
        cfs: CpuCfs {
            periods: cpu.cfs_periods,
            throttled_periods: cpu.cfs_throttled_periods,
            throttled_time: cpu.cfs_throttled_time,
            bursts_periods: burst.map(|b| b.bursts),
            burst_time: burst.map(|b| b.burst_time),
        },
        schedstat: CpuSchedstat::default(),
        load_average: 0,
        load_d_average: 0,
        psi,
    }
}

/// cAdvisor's `DiskIoStats` from one sample's block devices, named through `disk_names`.
pub(crate) fn disk_io_stats(
    blk: &[m::BlkioDevice],
    disk_names: &BTreeMap<String, String>,
    psi: PsiStats,
) -> DiskIoStats {
    DiskIoStats {
        io_service_bytes: per_disk(blk, disk_names, |d| d.bytes),
        io_serviced: per_disk(blk, disk_names, |d| d.ops),
        psi,
    }
}

/// cAdvisor's `ProcessStats` from one sample: its process count, descriptor and socket counts
/// (when counted) and pids controller (an unlimited `pids.max` reads as 0).
pub(crate) fn process_stats(s: &CStats) -> ProcessStats {
    ProcessStats {
        process_count: s.process_count.unwrap_or(0),
        fd_count: s.fds.map(|f| f.fds),
        socket_count: s.fds.map(|f| f.sockets),
        threads_current: s.pids.map_or(0, |p| p.current),
        threads_max: s
            .pids
            .map_or(0, |p| if p.max == u64::MAX { 0 } else { p.max }),
    }
}

/// cAdvisor's `MemoryStats` (info/v1) from one memory sample; `psi` is the memory pressure to
/// report (the container's, or the node's for the root).
pub(crate) fn memory_stats(mem: &m::MemoryStats, psi: PsiStats) -> MemoryStats {
    MemoryStats {
        usage: mem.usage,
        max_usage: mem.max_usage,
        cache: mem.cache,
        rss: mem.rss,
        swap: mem.swap,
        mapped_file: mem.mapped_file,
        working_set: mem.working_set,
        total_active_file: mem.total_active_file,
        total_inactive_file: mem.total_inactive_file,
        file_dirty: mem.file_dirty,
        file_writeback: mem.file_writeback,
        pgscan: mem.pgscan,
        pgsteal: mem.pgsteal,
        workingset_refault_file: mem.workingset_refault_file,
        workingset_refault_anon: mem.workingset_refault_anon,
        failcnt: mem.failcnt,
        kernel: mem.kernel,
        container_data: MemoryData {
            pgfault: mem.pgfault,
            pgmajfault: mem.pgmajfault,
            numa_stats: MemoryNumaStats {},
        },
        hierarchical_data: MemoryData {
            pgfault: mem.hierarchical_pgfault,
            pgmajfault: mem.hierarchical_pgmajfault,
            numa_stats: MemoryNumaStats {},
        },
        psi,
        events: MemoryEvents {
            high: 0,
            max: mem.failcnt,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_time_format() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nano(1_700_000_000_000_000_000),
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(
            rfc3339_nano(1_700_000_000_120_000_000),
            "2023-11-14T22:13:20.12Z"
        );
        assert_eq!(
            rfc3339_nano(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn cpu_inst_is_a_rate_in_nanocores() {
        let s = |ts: u64, total: u64| CStats {
            timestamp: ts,
            cpu: Some(m::CpuStats {
                usage_total: total,
                usage_user: total / 2,
                usage_system: total / 4,
                ..Default::default()
            }),
            ..Default::default()
        };
        // 0.5 s of CPU over 2 s: half a core = 500_000_000 nanocores.
        let r = cpu_inst(&s(1_000_000_000, 0), &s(3_000_000_000, 1_000_000_000)).unwrap();
        assert_eq!(r.usage.total, 500_000_000);
        assert_eq!(r.usage.user, 250_000_000);
        assert!(
            cpu_inst(&s(2, 10), &s(1, 20)).is_none(),
            "time went backwards"
        );
        assert!(
            cpu_inst(&s(1, 20), &s(2, 10)).is_none(),
            "counter went backwards"
        );
    }

    #[test]
    fn floats_print_like_go() {
        let v = serde_json::to_string(&PsiData {
            total: 1,
            avg10: 0.0,
            avg60: 1.5,
            avg300: 2.0,
        })
        .unwrap();
        assert_eq!(v, r#"{"total":1,"avg10":0,"avg60":1.5,"avg300":2}"#);
    }
}
