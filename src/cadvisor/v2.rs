//! cAdvisor's `info/v2` types that the v2.0 and v2.1 APIs answer with, beyond the v2.0 stats
//! shape in [`super::api`]: `/api/v2.1/stats` (`ContainerInfo` with pointer sections),
//! `/api/v2.1/machinestats` (`MachineStats`, whose disk counters sit under a key literally
//! named `inline`, as cAdvisor's struct tag makes it), `/api/v2.0/attributes`,
//! `/api/v2.0/storage` (`FsInfo`) and `/api/v2.0/ps` (`ProcessInfo`), and the process listing
//! behind the last.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use collectors::model::Timestamp;
use collectors::{MachineInfo as CMachine, VersionInfo};
use serde::Serialize;

use super::api::{
    self, go_time, CpuInstStats, CpuInstUsage, CpuStats, DiskInfo, DiskIoStats, FsInfo,
    HugePagesInfo, LoadStats, MemoryStats, NetInfo, Node, ProcessStats, ResctrlStats,
    TcpAdvancedStat, UdpStat,
};
use super::v1;

/// `v2.NetworkStats`, which the v2.0 stats shape uses too.
pub use super::api::NetworkStats;

/// `v2.FilesystemStats` (cAdvisor's misspelt `containter_inode_usage` included).
#[derive(Clone, Serialize)]
pub struct FilesystemStats {
    #[serde(rename = "totalUsageBytes", skip_serializing_if = "Option::is_none")]
    pub total_usage_bytes: Option<u64>,
    #[serde(rename = "baseUsageBytes", skip_serializing_if = "Option::is_none")]
    pub base_usage_bytes: Option<u64>,
    #[serde(
        rename = "containter_inode_usage",
        skip_serializing_if = "Option::is_none"
    )]
    pub inode_usage: Option<u64>,
}

/// `v2.ContainerStats`.
#[derive(Clone, Serialize)]
pub struct ContainerStats {
    #[serde(serialize_with = "go_time")]
    pub timestamp: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_inst: Option<CpuInstStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskio: Option<DiskIoStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processes: Option<ProcessStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<FilesystemStats>,
    pub resctrl: ResctrlStats,
}

/// `v2.ContainerInfo`.
#[derive(Clone, Serialize)]
pub struct ContainerInfo {
    pub spec: api::ContainerSpec,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stats: Vec<ContainerStats>,
}

fn inst(
    prev: &CpuStats,
    prev_ts: Timestamp,
    cur: &CpuStats,
    ts: Timestamp,
) -> Option<CpuInstStats> {
    if ts <= prev_ts {
        return None;
    }
    let dt = (ts - prev_ts) as f64;
    let rate = |a: u64, b: u64| (b >= a).then(|| ((b - a) as f64 / dt * 1e9) as u64);
    Some(CpuInstStats {
        usage: CpuInstUsage {
            total: rate(prev.usage.total, cur.usage.total)?,
            user: rate(prev.usage.user, cur.usage.user)?,
            system: rate(prev.usage.system, cur.usage.system)?,
        },
    })
}

/// The `cpu` and `cpu_inst` sections of consecutive samples, as cAdvisor's conversions from
/// v1 fill them: `cpu_inst` is the rate from the previous sample to this one.
#[derive(Default)]
struct CpuSections {
    last: Option<(Timestamp, CpuStats)>,
}

impl CpuSections {
    /// The sections of the next sample, both `None` when the container has no CPU section.
    fn next_if(
        &mut self,
        has_cpu: bool,
        ts: Timestamp,
        cpu: CpuStats,
    ) -> (Option<CpuStats>, Option<CpuInstStats>) {
        if !has_cpu {
            return (None, None);
        }
        let rate = self
            .last
            .as_ref()
            .and_then(|(prev_ts, prev)| inst(prev, *prev_ts, &cpu, ts));
        self.last = Some((ts, cpu.clone()));
        (Some(cpu), rate)
    }
}

fn network(n: &v1::NetworkStats) -> NetworkStats {
    NetworkStats {
        interfaces: n.interfaces.clone(),
        tcp: n.tcp.clone(),
        tcp6: n.tcp6.clone(),
        udp: UdpStat::default(),
        udp6: UdpStat::default(),
        tcp_advanced: TcpAdvancedStat,
    }
}

/// cAdvisor's `ContainerStatsFromV1`: sections only where the spec says the container has them.
pub fn stats_from_v1(
    spec: &v1::ContainerSpec,
    stats: Vec<v1::ContainerStats>,
) -> Vec<ContainerStats> {
    let mut cpu_sections = CpuSections::default();
    stats
        .into_iter()
        .map(|v| {
            let (cpu, cpu_inst) = cpu_sections.next_if(spec.has_cpu, v.timestamp, v.cpu);
            let filesystem = (spec.has_filesystem && v.filesystem.len() == 1).then(|| {
                let f = &v.filesystem[0];
                FilesystemStats {
                    total_usage_bytes: Some(f.usage),
                    base_usage_bytes: Some(f.base_usage),
                    inode_usage: Some(f.inodes),
                }
            });
            ContainerStats {
                timestamp: v.timestamp,
                cpu,
                cpu_inst,
                diskio: spec.has_diskio.then_some(v.diskio),
                memory: spec.has_memory.then_some(v.memory),
                network: spec.has_network.then(|| network(&v.network)),
                processes: spec.has_processes.then_some(v.processes),
                filesystem,
                resctrl: ResctrlStats {},
            }
        })
        .collect()
}

/// `v2.DiskStats` (all optional; durations in nanoseconds, as Go marshals `time.Duration`).
#[derive(Clone, Serialize)]
pub struct DiskStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads_completed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reads_merged: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sectors_read: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_completed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writes_merged: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sectors_written: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_in_progress: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub io_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weighted_io_duration: Option<u64>,
}

/// `v2.MachineFsStats`.
#[derive(Clone, Serialize)]
pub struct MachineFsStats {
    pub device: String,
    #[serde(rename = "type")]
    pub fs_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    /// cAdvisor tags the embedded `DiskStats` `json:"inline"`: a key named `inline`.
    pub inline: DiskStats,
}

/// `v2.MachineStats`.
#[derive(Clone, Serialize)]
pub struct MachineStats {
    #[serde(serialize_with = "go_time")]
    pub timestamp: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_inst: Option<CpuInstStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filesystem: Vec<MachineFsStats>,
    #[serde(rename = "load_stats", skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadStats>,
}

/// cAdvisor's `MachineStatsFromV1` over the root container's v1 stats.
pub fn machine_stats_from_v1(
    spec: &v1::ContainerSpec,
    stats: Vec<v1::ContainerStats>,
) -> Vec<MachineStats> {
    let mut cpu_sections = CpuSections::default();
    stats
        .into_iter()
        .map(|v| {
            let (cpu, cpu_inst) = cpu_sections.next_if(spec.has_cpu, v.timestamp, v.cpu);
            let filesystem = if spec.has_filesystem {
                v.filesystem
                    .iter()
                    .map(|f| MachineFsStats {
                        device: f.device.clone(),
                        fs_type: f.fs_type.clone(),
                        capacity: Some(f.capacity),
                        usage: Some(f.usage),
                        available: Some(f.available),
                        inodes_free: f.has_inodes.then_some(f.inodes_free),
                        inline: DiskStats {
                            reads_completed: Some(f.reads_completed),
                            reads_merged: Some(f.reads_merged),
                            sectors_read: Some(f.sectors_read),
                            read_duration: Some(f.read_time * 1_000_000),
                            writes_completed: Some(f.writes_completed),
                            writes_merged: Some(f.writes_merged),
                            sectors_written: Some(f.sectors_written),
                            write_duration: Some(f.write_time * 1_000_000),
                            io_in_progress: Some(f.io_in_progress),
                            io_duration: Some(f.io_time * 1_000_000),
                            weighted_io_duration: Some(f.weighted_io_time * 1_000_000),
                        },
                    })
                    .collect()
            } else {
                Vec::new()
            };
            MachineStats {
                timestamp: v.timestamp,
                cpu,
                cpu_inst,
                memory: spec.has_memory.then_some(v.memory),
                network: spec.has_network.then(|| network(&v.network)),
                filesystem,
                load: None,
            }
        })
        .collect()
}

/// `v2.Attributes`.
#[derive(Serialize)]
pub struct Attributes {
    pub kernel_version: String,
    pub container_os_version: String,
    pub docker_version: String,
    pub docker_api_version: String,
    pub cadvisor_version: String,
    pub num_cores: u64,
    pub cpu_frequency_khz: u64,
    pub memory_capacity: u64,
    pub machine_id: String,
    pub system_uuid: String,
    pub hugepages: Vec<HugePagesInfo>,
    pub filesystems: Vec<FsInfo>,
    pub disk_map: BTreeMap<String, DiskInfo>,
    pub network_devices: Vec<NetInfo>,
    pub topology: Vec<Node>,
    pub cloud_provider: String,
    pub instance_type: String,
}

/// cAdvisor's `GetAttributes`.
pub fn attributes(mi: &CMachine, vi: &VersionInfo) -> Attributes {
    let m = api::MachineInfo::from(mi);
    Attributes {
        kernel_version: vi.kernel_version.clone(),
        container_os_version: vi.container_os_version.clone(),
        docker_version: String::new(),
        docker_api_version: String::new(),
        cadvisor_version: super::prom::CADVISOR_VERSION.to_string(),
        num_cores: m.num_cores,
        cpu_frequency_khz: m.cpu_frequency_khz,
        memory_capacity: m.memory_capacity,
        machine_id: m.machine_id,
        system_uuid: m.system_uuid,
        hugepages: m.hugepages,
        filesystems: m.filesystems,
        disk_map: m.disk_map,
        network_devices: m.network_devices,
        topology: m.topology,
        cloud_provider: m.cloud_provider,
        instance_type: m.instance_type,
    }
}

/// `v2.FsInfo` (`/api/v2.0/storage`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StorageInfo {
    #[serde(serialize_with = "go_time")]
    pub timestamp: Timestamp,
    pub device: String,
    pub mountpoint: String,
    pub capacity: u64,
    pub available: u64,
    pub usage: u64,
    pub labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
}

/// The storage labels of a node filesystem's roles (cAdvisor's `root` and, by analogy with its
/// `docker-images` / `crio-images`, `containerd-images`; the log filesystem has no label).
pub fn storage_labels(roles: u8) -> Vec<String> {
    use collectors::model::fs_role;
    let mut v = Vec::new();
    if roles & fs_role::ROOT != 0 {
        v.push("root".to_string());
    }
    if roles & fs_role::IMAGE != 0 {
        v.push("containerd-images".to_string());
    }
    v
}

/// `v2.ProcessInfo` (`/api/v2.0/ps`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProcessInfo {
    pub user: String,
    pub pid: i64,
    pub parent_pid: i64,
    pub start_time: String,
    pub percent_cpu: f32,
    pub percent_mem: f32,
    pub rss: u64,
    pub virtual_size: u64,
    pub status: String,
    pub running_time: String,
    pub cgroup_path: String,
    pub cmd: String,
    pub fd_count: i64,
    pub psr: i64,
}

/// What [`process_info`] needs besides the pid.
pub struct PsContext<'a> {
    pub proc_root: &'a Path,
    pub users: &'a HashMap<u32, String>,
    /// Seconds since the epoch now, boot time, ticks per second, page size, memory total.
    pub now_s: f64,
    pub boot_s: f64,
    pub ticks: f64,
    pub page: u64,
    pub mem_total: u64,
}

/// `/etc/passwd` → uid → name.
pub fn read_users(rootfs: &Path) -> HashMap<u32, String> {
    std::fs::read_to_string(rootfs.join("etc/passwd"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}

fn hms(total_s: u64) -> String {
    let (d, rem) = (total_s / 86_400, total_s % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if d > 0 {
        format!("{d}-{h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// One process as `ps -o user,pid,ppid,stime,pcpu,pmem,rss,vsz,stat,time,comm,psr` shows it.
/// `None` if it exited meanwhile.
pub fn process_info(pid: u32, cgroup: &str, x: &PsContext<'_>) -> Option<ProcessInfo> {
    let dir = x.proc_root.join(pid.to_string());
    let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat[open + 1..close].to_string();
    let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // f[0] is field 3 (state).
    let field = |n: usize| {
        f.get(n - 3)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let state = f.first().copied().unwrap_or("?").to_string();
    let ppid = field(4);
    let cpu_ticks = (field(14) + field(15)) as f64;
    let start_s = x.boot_s + field(22) as f64 / x.ticks;
    let vsize = field(23) as u64;
    let rss = field(24) as u64 * x.page;
    let psr = field(39);
    let uid = std::fs::read_to_string(dir.join("status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("Uid:")
                    .and_then(|v| v.split_whitespace().next()?.parse::<u32>().ok())
            })
        })
        .unwrap_or(0);
    let elapsed = (x.now_s - start_s).max(0.001);
    let cpu_s = cpu_ticks / x.ticks;
    let fd_count = std::fs::read_dir(dir.join("fd"))
        .map(|d| d.count() as i64)
        .unwrap_or(0);
    // ps's STIME: HH:MM today, MonDD before (UTC here).
    let start_time = {
        let secs = start_s as u64;
        let ts = api::rfc3339_nano(secs * 1_000_000_000);
        if x.now_s as u64 / 86_400 == secs / 86_400 {
            ts[11..16].to_string()
        } else {
            const MON: [&str; 12] = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            let mo: usize = ts[5..7].parse().unwrap_or(1);
            format!("{}{}", MON[(mo.max(1) - 1).min(11)], &ts[8..10])
        }
    };
    Some(ProcessInfo {
        user: x
            .users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string()),
        pid: i64::from(pid),
        parent_pid: ppid,
        start_time,
        percent_cpu: (cpu_s / elapsed * 100.0) as f32,
        percent_mem: if x.mem_total > 0 {
            (rss as f64 / x.mem_total as f64 * 100.0) as f32
        } else {
            0.0
        },
        rss,
        virtual_size: vsize,
        status: state,
        running_time: hms(cpu_s as u64),
        cgroup_path: cgroup.to_string(),
        cmd: comm,
        fd_count,
        psr,
    })
}

/// The pids listed in `cgroup.procs` of the first of `dirs` that has one.
pub fn cgroup_pids(dirs: &[&Path]) -> Vec<u32> {
    for d in dirs {
        if let Ok(t) = std::fs::read_to_string(d.join("cgroup.procs")) {
            return t
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_reads_like_ps() {
        assert_eq!(hms(0), "00:00:00");
        assert_eq!(hms(3725), "01:02:05");
        assert_eq!(hms(90_061), "1-01:01:01");
    }

    #[test]
    fn lists_this_process() {
        let users = read_users(Path::new("/"));
        let x = PsContext {
            proc_root: Path::new("/proc"),
            users: &users,
            now_s: collectors::sys::now_unix_nanos() as f64 / 1e9,
            boot_s: 0.0,
            ticks: 100.0,
            page: 4096,
            mem_total: 1 << 30,
        };
        let p = process_info(std::process::id(), "/x", &x).unwrap();
        assert_eq!(p.pid, i64::from(std::process::id()));
        assert!(p.rss > 0 && p.virtual_size > 0 && p.fd_count > 0, "{p:?}");
        assert_eq!(p.cgroup_path, "/x");
        assert!(process_info(u32::MAX - 1, "/x", &x).is_none());
    }

    #[test]
    fn machine_fs_stats_nest_disk_stats_under_inline() {
        let m = MachineFsStats {
            device: "/dev/vda".into(),
            fs_type: "ext4".into(),
            capacity: Some(1),
            usage: Some(2),
            available: Some(3),
            inodes_free: None,
            inline: DiskStats {
                reads_completed: Some(4),
                reads_merged: None,
                sectors_read: None,
                read_duration: Some(5_000_000),
                writes_completed: None,
                writes_merged: None,
                sectors_written: None,
                write_duration: None,
                io_in_progress: None,
                io_duration: None,
                weighted_io_duration: None,
            },
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["inline"]["read_duration"], 5_000_000);
        assert_eq!(v["type"], "ext4");
    }
}
