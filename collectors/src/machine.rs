//! Machine information, the equivalent of cAdvisor's `MachineInfo` and `VersionInfo`: CPUs and
//! their topology and caches (sysfs), memory, swap and huge pages, filesystems, disks, network
//! devices, machine/system/boot ids, kernel and OS version.
//!
//! Read once at start (and on request), never on the sampling path. Every path is under a
//! configurable root (`sys_root`, `proc_root`, `rootfs`) so tests run on fixture trees.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::parse::{fields, lines, parse_i64, parse_u64, procfs, trim};
use crate::sys;

/// Errors of machine-info gathering.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// A file every Linux machine has could not be read.
    #[error("failed to read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// Where machine information is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachinePaths {
    /// sysfs (`/sys`).
    pub sys_root: PathBuf,
    /// procfs (`/proc`).
    pub proc_root: PathBuf,
    /// The host's root filesystem (`/`): for `/etc/machine-id` and `/etc/os-release`.
    pub rootfs: PathBuf,
}

impl Default for MachinePaths {
    fn default() -> Self {
        MachinePaths {
            sys_root: "/sys".into(),
            proc_root: "/proc".into(),
            rootfs: "/".into(),
        }
    }
}

/// A CPU cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cache {
    /// Cache id (sysfs `id`, 0 if absent).
    pub id: u64,
    /// Size in bytes.
    pub size: u64,
    /// `Data`, `Instruction` or `Unified`.
    pub cache_type: String,
    /// Level (1, 2, 3).
    pub level: u64,
}

/// A physical core and its hardware threads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Core {
    /// `core_id`.
    pub id: u64,
    /// Logical CPU numbers of its threads.
    pub threads: Vec<u64>,
    /// Caches private to this core.
    pub caches: Vec<Cache>,
    /// Caches shared with some, not all, cores of the node.
    pub uncore_caches: Vec<Cache>,
    /// `physical_package_id`.
    pub socket_id: u64,
}

/// A NUMA node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NumaNode {
    /// Node number.
    pub id: u64,
    /// Memory on the node, bytes.
    pub memory: u64,
    /// Huge pages on the node.
    pub hugepages: Vec<HugePages>,
    /// Cores.
    pub cores: Vec<Core>,
    /// Caches shared by every core of the node (e.g. L3).
    pub caches: Vec<Cache>,
    /// Distances to each node (`distance`).
    pub distances: Vec<u64>,
}

/// Huge pages of one size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HugePages {
    /// Page size in KiB.
    pub page_size: u64,
    /// Number of pages reserved.
    pub num_pages: u64,
}

/// A mounted block-device filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsInfo {
    /// Device (`/dev/vda`).
    pub device: String,
    /// Device major.
    pub major: u32,
    /// Device minor.
    pub minor: u32,
    /// Where it is mounted.
    pub mountpoint: String,
    /// Capacity, bytes.
    pub capacity: u64,
    /// Filesystem type (`ext4`).
    pub fs_type: String,
    /// Inodes.
    pub inodes: u64,
    /// Whether the filesystem reports inodes.
    pub has_inodes: bool,
}

/// A disk of `/sys/block`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiskInfo {
    /// Name (`vda`).
    pub name: String,
    /// Major.
    pub major: u64,
    /// Minor.
    pub minor: u64,
    /// Size, bytes.
    pub size: u64,
    /// Active I/O scheduler (`none`, `mq-deadline`).
    pub scheduler: String,
}

/// A network device of `/sys/class/net`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetInfo {
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac_address: String,
    /// Speed in Mbit/s (`-1` or 0 when unknown, as the kernel says).
    pub speed: i64,
    /// MTU.
    pub mtu: i64,
}

/// Everything cAdvisor's `MachineInfo` carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineInfo {
    /// When this was gathered, ns since the epoch.
    pub timestamp: u64,
    /// CPU vendor (`GenuineIntel`).
    pub vendor_id: String,
    /// Logical CPUs online.
    pub num_cores: u64,
    /// Physical cores.
    pub num_physical_cores: u64,
    /// Sockets.
    pub num_sockets: u64,
    /// Maximum CPU frequency, kHz.
    pub cpu_frequency_khz: u64,
    /// Memory, bytes.
    pub memory_capacity: u64,
    /// Swap, bytes.
    pub swap_capacity: u64,
    /// Huge pages by size.
    pub hugepages: Vec<HugePages>,
    /// `/etc/machine-id`.
    pub machine_id: String,
    /// DMI product UUID (empty if unreadable).
    pub system_uuid: String,
    /// Boot id.
    pub boot_id: String,
    /// Block-device filesystems.
    pub filesystems: Vec<FsInfo>,
    /// Disks by `major:minor`.
    pub disk_map: BTreeMap<String, DiskInfo>,
    /// Network devices.
    pub network_devices: Vec<NetInfo>,
    /// NUMA topology.
    pub topology: Vec<NumaNode>,
    /// Cloud provider (`Unknown`: no metadata service is queried).
    pub cloud_provider: String,
    /// Instance type (`Unknown`).
    pub instance_type: String,
    /// Instance id (`None`).
    pub instance_id: String,
}

/// Kernel and OS version (cAdvisor's `VersionInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionInfo {
    /// `uname -r`.
    pub kernel_version: String,
    /// `PRETTY_NAME` of `/etc/os-release`.
    pub container_os_version: String,
}

fn read_string(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok().map(|s| s.trim().to_string())
}

fn read_u64(p: &Path) -> Option<u64> {
    parse_u64(trim(&fs::read(p).ok()?))
}

/// Parses a CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                    out.extend(a..=b.min(a + 65_536));
                }
            }
            None => {
                if let Ok(a) = part.parse() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// Parses a sysfs size such as `48K`, `2048K`, `1M`.
pub fn parse_size(s: &str) -> u64 {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last() {
        Some(b'K') => (&s[..s.len() - 1], 1024),
        Some(b'M') => (&s[..s.len() - 1], 1024 * 1024),
        Some(b'G') => (&s[..s.len() - 1], 1024 * 1024 * 1024),
        _ => (s, 1),
    };
    num.parse::<u64>().unwrap_or(0) * mult
}

struct CpuEntry {
    cpu: u64,
    node: u64,
    package: u64,
    core: u64,
    caches: Vec<(Cache, Vec<u64>)>,
}

fn cpu_entries(sys: &Path) -> Vec<CpuEntry> {
    let base = sys.join("devices/system/cpu");
    let Ok(rd) = fs::read_dir(&base) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(cpu) = name.strip_prefix("cpu").and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        let dir = e.path();
        if read_u64(&dir.join("online")) == Some(0) {
            continue;
        }
        let node = fs::read_dir(&dir)
            .ok()
            .and_then(|rd| {
                rd.flatten().find_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("node"))
                        .and_then(|n| n.parse().ok())
                })
            })
            .unwrap_or(0);
        let package = read_u64(&dir.join("topology/physical_package_id")).unwrap_or(0);
        let core = read_u64(&dir.join("topology/core_id")).unwrap_or(cpu);
        let mut caches = Vec::new();
        if let Ok(rd) = fs::read_dir(dir.join("cache")) {
            let mut idx: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("index"))
                })
                .collect();
            idx.sort();
            for p in idx {
                let cache = Cache {
                    id: read_u64(&p.join("id")).unwrap_or(0),
                    size: read_string(&p.join("size")).map_or(0, |s| parse_size(&s)),
                    cache_type: read_string(&p.join("type")).unwrap_or_default(),
                    level: read_u64(&p.join("level")).unwrap_or(0),
                };
                let shared = read_string(&p.join("shared_cpu_list"))
                    .map(|s| parse_cpu_list(&s))
                    .unwrap_or_else(|| vec![cpu]);
                caches.push((cache, shared));
            }
        }
        out.push(CpuEntry {
            cpu,
            node,
            package,
            core,
            caches,
        });
    }
    out.sort_by_key(|c| c.cpu);
    out
}

fn hugepages_in(dir: &Path) -> Vec<HugePages> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<HugePages> = rd
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let size = n
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some(HugePages {
                page_size: size,
                num_pages: read_u64(&e.path().join("nr_hugepages")).unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|h| h.page_size);
    out
}

fn topology(sys: &Path, cpus: &[CpuEntry], total_memory: u64) -> Vec<NumaNode> {
    let node_ids: BTreeSet<u64> = cpus.iter().map(|c| c.node).collect();
    let mut nodes = Vec::new();
    for id in node_ids {
        let ndir = sys.join(format!("devices/system/node/node{id}"));
        let mut memory = 0;
        if let Ok(b) = fs::read(ndir.join("meminfo")) {
            for l in lines(&b) {
                let f: Vec<&[u8]> = fields(l).collect();
                if f.len() >= 4 && f[2] == b"MemTotal:" {
                    memory = parse_u64(f[3]).unwrap_or(0) * 1024;
                }
            }
        } else {
            memory = total_memory;
        }
        let distances = read_string(&ndir.join("distance"))
            .map(|s| {
                s.split_whitespace()
                    .filter_map(|d| d.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut node = NumaNode {
            id,
            memory,
            hugepages: hugepages_in(&ndir.join("hugepages")),
            distances,
            ..Default::default()
        };
        let in_node: Vec<&CpuEntry> = cpus.iter().filter(|c| c.node == id).collect();
        let node_threads: BTreeSet<u64> = in_node.iter().map(|c| c.cpu).collect();
        let mut cores: BTreeMap<(u64, u64), Core> = BTreeMap::new();
        for c in &in_node {
            let core = cores.entry((c.package, c.core)).or_insert_with(|| Core {
                id: c.core,
                socket_id: c.package,
                ..Default::default()
            });
            core.threads.push(c.cpu);
        }
        let mut seen_node_caches: BTreeSet<(u64, u64, String, Vec<u64>)> = BTreeSet::new();
        for core in cores.values_mut() {
            let threads: BTreeSet<u64> = core.threads.iter().copied().collect();
            let Some(first) = in_node.iter().find(|c| c.cpu == core.threads[0]) else {
                continue;
            };
            for (cache, shared) in &first.caches {
                let shared_set: BTreeSet<u64> = shared.iter().copied().collect();
                if shared_set.is_subset(&threads) {
                    core.caches.push(cache.clone());
                } else if node_threads.is_subset(&shared_set) {
                    let key = (
                        cache.level,
                        cache.id,
                        cache.cache_type.clone(),
                        shared.clone(),
                    );
                    if seen_node_caches.insert(key) {
                        node.caches.push(cache.clone());
                    }
                } else {
                    core.uncore_caches.push(cache.clone());
                }
            }
        }
        node.cores = cores.into_values().collect();
        nodes.push(node);
    }
    nodes
}

/// Parses `/proc/self/mountinfo` into `(major, minor, mountpoint, fstype, source)` for
/// block-device mounts, first mount of each device only.
pub fn block_mounts(mountinfo: &[u8]) -> Vec<(u32, u32, String, String, String)> {
    let mut out: Vec<(u32, u32, String, String, String)> = Vec::new();
    for l in lines(mountinfo) {
        let f: Vec<&[u8]> = fields(l).collect();
        let Some(sep) = f.iter().position(|x| *x == b"-") else {
            continue;
        };
        if f.len() < sep + 3 || f.len() < 5 {
            continue;
        }
        let Some((ma, mi)) = std::str::from_utf8(f[2])
            .ok()
            .and_then(|d| d.split_once(':'))
        else {
            continue;
        };
        let (Ok(ma), Ok(mi)) = (ma.parse::<u32>(), mi.parse::<u32>()) else {
            continue;
        };
        let source = String::from_utf8_lossy(f[sep + 2]).into_owned();
        if !source.starts_with("/dev/") || out.iter().any(|m| m.0 == ma && m.1 == mi) {
            continue;
        }
        out.push((
            ma,
            mi,
            String::from_utf8_lossy(f[4]).into_owned(),
            String::from_utf8_lossy(f[sep + 1]).into_owned(),
            source,
        ));
    }
    out
}

/// Gathers machine information. Only `/proc/meminfo` is required; anything else that is
/// missing (no DMI, no NUMA directory, no cpufreq) is left empty or zero, as cAdvisor does.
pub fn machine_info(paths: &MachinePaths) -> Result<MachineInfo, MachineError> {
    let sys = &paths.sys_root;
    let proc = &paths.proc_root;
    let meminfo_path = proc.join("meminfo");
    let meminfo = fs::read(&meminfo_path).map_err(|source| MachineError::Read {
        path: meminfo_path,
        source,
    })?;
    let mem = procfs::meminfo(&meminfo);
    let cpuinfo = fs::read(proc.join("cpuinfo")).unwrap_or_default();
    let mut vendor_id = String::new();
    let mut processors = 0u64;
    let mut max_mhz = 0f64;
    for l in lines(&cpuinfo) {
        let Some(colon) = l.iter().position(|&c| c == b':') else {
            continue;
        };
        let (k, v) = (trim(&l[..colon]), trim(&l[colon + 1..]));
        match k {
            b"processor" => processors += 1,
            b"vendor_id" if vendor_id.is_empty() => {
                vendor_id = String::from_utf8_lossy(v).into_owned()
            }
            b"cpu MHz" => {
                if let Some(m) = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                {
                    max_mhz = max_mhz.max(m);
                }
            }
            _ => {}
        }
    }
    let cpus = cpu_entries(sys);
    let num_cores = if cpus.is_empty() {
        processors
    } else {
        cpus.len() as u64
    };
    let physical: BTreeSet<(u64, u64)> = cpus.iter().map(|c| (c.package, c.core)).collect();
    let sockets: BTreeSet<u64> = cpus.iter().map(|c| c.package).collect();
    let cpu_frequency_khz = read_u64(&sys.join("devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"))
        .unwrap_or((max_mhz * 1000.0) as u64);

    let mut filesystems = Vec::new();
    if let Ok(mi) = fs::read(proc.join("self/mountinfo")) {
        for (major, minor, mountpoint, fs_type, device) in block_mounts(&mi) {
            let usage = sys::statvfs(Path::new(&mountpoint)).unwrap_or_default();
            filesystems.push(FsInfo {
                device,
                major,
                minor,
                mountpoint,
                capacity: usage.capacity,
                fs_type,
                inodes: usage.inodes,
                has_inodes: usage.inodes > 0,
            });
        }
    }

    let mut disk_map = BTreeMap::new();
    if let Ok(rd) = fs::read_dir(sys.join("block")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("loop") || name.starts_with("ram") {
                continue;
            }
            let p = e.path();
            let Some((ma, mi)) = read_string(&p.join("dev")).and_then(|d| {
                let (a, b) = d.split_once(':')?;
                Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            }) else {
                continue;
            };
            let scheduler = read_string(&p.join("queue/scheduler"))
                .and_then(|s| {
                    let a = s.find('[')?;
                    let b = s[a..].find(']')?;
                    Some(s[a + 1..a + b].to_string())
                })
                .unwrap_or_else(|| "none".into());
            disk_map.insert(
                format!("{ma}:{mi}"),
                DiskInfo {
                    name,
                    major: ma,
                    minor: mi,
                    size: read_u64(&p.join("size")).unwrap_or(0) * 512,
                    scheduler,
                },
            );
        }
    }

    let mut network_devices = Vec::new();
    if let Ok(rd) = fs::read_dir(sys.join("class/net")) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if ["lo", "veth", "docker", "nerdctl"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                continue;
            }
            let p = e.path();
            let num = |f: &str| {
                fs::read(p.join(f))
                    .ok()
                    .and_then(|b| parse_i64(trim(&b)))
                    .unwrap_or(0)
            };
            network_devices.push(NetInfo {
                mac_address: read_string(&p.join("address")).unwrap_or_default(),
                speed: num("speed"),
                mtu: num("mtu"),
                name,
            });
        }
    }
    network_devices.sort_by(|a, b| a.name.cmp(&b.name));

    let machine_id = ["etc/machine-id", "var/lib/dbus/machine-id"]
        .iter()
        .find_map(|p| read_string(&paths.rootfs.join(p)))
        .unwrap_or_default();

    Ok(MachineInfo {
        timestamp: sys::now_unix_nanos(),
        vendor_id,
        num_cores,
        num_physical_cores: if physical.is_empty() {
            num_cores
        } else {
            physical.len() as u64
        },
        num_sockets: sockets.len().max(1) as u64,
        cpu_frequency_khz,
        memory_capacity: mem.total,
        swap_capacity: mem.swap_total,
        hugepages: hugepages_in(&sys.join("kernel/mm/hugepages")),
        machine_id,
        system_uuid: read_string(&sys.join("class/dmi/id/product_uuid")).unwrap_or_default(),
        boot_id: read_string(&proc.join("sys/kernel/random/boot_id")).unwrap_or_default(),
        filesystems,
        disk_map,
        network_devices,
        topology: topology(sys, &cpus, mem.total),
        cloud_provider: "Unknown".into(),
        instance_type: "Unknown".into(),
        instance_id: "None".into(),
    })
}

/// Kernel release and OS name.
pub fn version_info(paths: &MachinePaths) -> VersionInfo {
    let kernel_version =
        read_string(&paths.proc_root.join("sys/kernel/osrelease")).unwrap_or_default();
    let os = fs::read_to_string(paths.rootfs.join("etc/os-release")).unwrap_or_default();
    let container_os_version = os
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into());
    VersionInfo {
        kernel_version,
        container_os_version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(p: &Path, s: &str) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, s).unwrap();
    }

    /// Two sockets, one core with two threads each, private L1/L2, a socket-wide L3;
    /// two NUMA nodes.
    fn synthetic() -> (tempfile::TempDir, MachinePaths) {
        let d = tempfile::tempdir().unwrap();
        let sys = d.path().join("sys");
        let proc = d.path().join("proc");
        let rootfs = d.path().join("root");
        for cpu in 0..4u64 {
            let c = sys.join(format!("devices/system/cpu/cpu{cpu}"));
            let node = cpu / 2;
            fs::create_dir_all(c.join(format!("node{node}"))).unwrap();
            w(
                &c.join("topology/physical_package_id"),
                &format!("{node}\n"),
            );
            w(&c.join("topology/core_id"), "0\n");
            let siblings = format!("{}-{}\n", node * 2, node * 2 + 1);
            for (i, (level, ty, size, shared)) in [
                (1, "Data", "48K", siblings.as_str()),
                (1, "Instruction", "32K", siblings.as_str()),
                (2, "Unified", "2048K", siblings.as_str()),
                (3, "Unified", "30720K", siblings.as_str()),
            ]
            .iter()
            .enumerate()
            {
                let ix = c.join(format!("cache/index{i}"));
                w(&ix.join("level"), &format!("{level}\n"));
                w(&ix.join("type"), &format!("{ty}\n"));
                w(&ix.join("size"), &format!("{size}\n"));
                w(&ix.join("shared_cpu_list"), shared);
                w(&ix.join("id"), &format!("{node}\n"));
            }
        }
        w(&sys.join("devices/system/cpu/cpu3/online"), "0\n");
        w(
            &sys.join("devices/system/node/node0/meminfo"),
            "Node 0 MemTotal:       1000 kB\nNode 0 MemFree: 1 kB\n",
        );
        w(&sys.join("devices/system/node/node0/distance"), "10 20\n");
        w(
            &sys.join("devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"),
            "4\n",
        );
        w(
            &sys.join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
            "8\n",
        );
        w(
            &sys.join("kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"),
            "0\n",
        );
        w(&sys.join("block/vda/dev"), "254:0\n");
        w(&sys.join("block/vda/size"), "2048\n");
        w(
            &sys.join("block/vda/queue/scheduler"),
            "none [mq-deadline] kyber\n",
        );
        w(&sys.join("block/loop0/dev"), "7:0\n");
        w(&sys.join("class/net/eth0/address"), "02:fc:00:00:00:01\n");
        w(&sys.join("class/net/eth0/mtu"), "1400\n");
        w(&sys.join("class/net/eth0/speed"), "-1\n");
        w(&sys.join("class/net/lo/address"), "00:00:00:00:00:00\n");
        w(&sys.join("class/net/veth1/address"), "00:00:00:00:00:01\n");
        w(&sys.join("class/dmi/id/product_uuid"), "UUID-1\n");
        w(
            &proc.join("meminfo"),
            "MemTotal: 2000 kB\nMemFree: 1000 kB\nSwapTotal: 512 kB\n",
        );
        w(
            &proc.join("cpuinfo"),
            "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2100.000\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2100.000\n",
        );
        w(&proc.join("sys/kernel/random/boot_id"), "boot-1\n");
        w(&proc.join("sys/kernel/osrelease"), "6.1.0-test\n");
        w(
            &proc.join("self/mountinfo"),
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n22 27 0:21 / /proc rw - proc proc rw\n28 1 254:0 /x /y rw - ext4 /dev/vda rw\n",
        );
        w(&rootfs.join("etc/machine-id"), "abc123\n");
        w(
            &rootfs.join("etc/os-release"),
            "NAME=\"X\"\nPRETTY_NAME=\"Test OS 1\"\n",
        );
        (
            d,
            MachinePaths {
                sys_root: sys,
                proc_root: proc,
                rootfs,
            },
        )
    }

    #[test]
    fn synthetic_machine() {
        let (_d, p) = synthetic();
        let m = machine_info(&p).unwrap();
        assert_eq!(m.num_cores, 3, "cpu3 is offline");
        assert_eq!(m.num_physical_cores, 2);
        assert_eq!(m.num_sockets, 2);
        assert_eq!(m.cpu_frequency_khz, 2_100_000);
        assert_eq!(m.vendor_id, "GenuineIntel");
        assert_eq!(m.memory_capacity, 2000 * 1024);
        assert_eq!(m.swap_capacity, 512 * 1024);
        assert_eq!(
            m.hugepages,
            vec![
                HugePages {
                    page_size: 2048,
                    num_pages: 8
                },
                HugePages {
                    page_size: 1048576,
                    num_pages: 0
                }
            ]
        );
        assert_eq!(m.machine_id, "abc123");
        assert_eq!(m.system_uuid, "UUID-1");
        assert_eq!(m.boot_id, "boot-1");
        assert_eq!(m.disk_map.len(), 1);
        let vda = &m.disk_map["254:0"];
        assert_eq!((vda.name.as_str(), vda.size), ("vda", 2048 * 512));
        assert_eq!(vda.scheduler, "mq-deadline");
        assert_eq!(m.network_devices.len(), 1);
        assert_eq!(m.network_devices[0].mac_address, "02:fc:00:00:00:01");
        assert_eq!(
            (m.network_devices[0].mtu, m.network_devices[0].speed),
            (1400, -1)
        );
        assert_eq!(m.filesystems.len(), 1, "one entry per device");
        assert_eq!(m.filesystems[0].device, "/dev/vda");
        assert_eq!(m.filesystems[0].fs_type, "ext4");

        assert_eq!(m.topology.len(), 2);
        let n0 = &m.topology[0];
        assert_eq!(n0.memory, 1000 * 1024);
        assert_eq!(n0.distances, vec![10, 20]);
        assert_eq!(n0.hugepages.len(), 1);
        assert_eq!(n0.cores.len(), 1);
        assert_eq!(n0.cores[0].threads, vec![0, 1]);
        assert_eq!(n0.cores[0].caches.len(), 4, "all caches are per-core here");
        let n1 = &m.topology[1];
        assert_eq!(n1.cores[0].threads, vec![2], "offline thread left out");
        assert_eq!(n1.cores[0].socket_id, 1);
        assert_eq!(
            n1.memory, m.memory_capacity,
            "no node meminfo: whole memory"
        );

        let v = version_info(&p);
        assert_eq!(v.kernel_version, "6.1.0-test");
        assert_eq!(v.container_os_version, "Test OS 1");
    }

    #[test]
    fn shared_caches_go_to_the_node() {
        let (_d, p) = synthetic();
        // Make L3 shared by every CPU of node 0 across two cores.
        for cpu in 0..2 {
            let c = p.sys_root.join(format!("devices/system/cpu/cpu{cpu}"));
            w(&c.join("topology/core_id"), &format!("{cpu}\n"));
            for i in 0..3 {
                w(
                    &c.join(format!("cache/index{i}/shared_cpu_list")),
                    &format!("{cpu}\n"),
                );
            }
        }
        let m = machine_info(&p).unwrap();
        let n0 = &m.topology[0];
        assert_eq!(n0.cores.len(), 2);
        assert_eq!(n0.cores[0].caches.len(), 3);
        assert_eq!(n0.caches.len(), 1, "L3 once for the node");
        assert_eq!(n0.caches[0].level, 3);
        assert_eq!(n0.caches[0].size, 30720 * 1024);
    }

    #[test]
    fn this_machine_matches_proc_cpuinfo() {
        let m = machine_info(&MachinePaths::default()).unwrap();
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap();
        let processors = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        assert_eq!(m.num_cores as usize, processors);
        let threads: usize = m
            .topology
            .iter()
            .flat_map(|n| &n.cores)
            .map(|c| c.threads.len())
            .sum();
        assert_eq!(threads, processors);
        assert!(m.memory_capacity > 0);
        assert!(!m.boot_id.is_empty());
    }

    #[test]
    fn lists_and_sizes() {
        assert_eq!(parse_cpu_list("0-2,5,7-8\n"), vec![0, 1, 2, 5, 7, 8]);
        assert_eq!(parse_cpu_list(""), Vec::<u64>::new());
        assert_eq!(parse_size("48K"), 48 * 1024);
        assert_eq!(parse_size("2M"), 2 * 1024 * 1024);
        assert_eq!(parse_size("512"), 512);
    }
}
