//! `/stats/summary`: the kubelet's stats API (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`),
//! built from the monitor's rings, the status manager's pods and the runtime's identities,
//! as the kubelet's summary provider builds it from cAdvisor.
//!
//! - node: the root cgroup's CPU (`usageNanoCores` from the last two samples) and memory
//!   (`availableBytes` = machine memory − working set), the host's interfaces (`eth0` inline
//!   when present), the root and image filesystems, `rlimit` (`pid_max`, running processes)
//!   and the system containers `pods` (the kubepods cgroup) and `kubelet` (this process's
//!   cgroup, when tracked);
//! - pods: `podRef`, the pod cgroup's CPU and memory, the sandbox's network, per container
//!   CPU, memory and log usage, volume usage under `<root-dir>/pods/<uid>/volumes`,
//!   `ephemeral-storage` (logs plus local volumes) and `process_stats`.
//!
//! `only_cpu_and_memory=true` keeps only the CPU and memory parts (the kubelet's
//! `GetCPUAndMemoryStats`, also behind `/metrics/resource`). Directory usage (logs, volumes)
//! is measured by walking the tree and cached for a minute per directory, as the kubelet's
//! periodic `du`. Container writable layers (`rootfs`) would need the runtime's
//! `ListContainerStats` (tens of milliseconds per call here) and are left out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use collectors::model::{fs_role, ContainerStats as CStats};
use collectors::{Container, ContainerNamer, Monitor};
use k8s_openapi::api::core::v1::Pod;
use parking_lot::Mutex;
use serde::Serialize;

use crate::cadvisor::api::rfc3339_nano;
use crate::cadvisor::names::{pod_uid_of_cgroup, RuntimeNames, KIND_LABEL};
use crate::cadvisor::tracker::Tracker;

/// A `metav1.Time`: RFC 3339 with whole seconds, UTC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Time(pub u64);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 < 1_000_000_000 {
            // metav1.Time's zero value marshals as null.
            return s.serialize_none();
        }
        s.serialize_str(&rfc3339_nano(self.0 / 1_000_000_000 * 1_000_000_000))
    }
}

macro_rules! opt {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            $($(#[$fm])* #[serde(skip_serializing_if = "Option::is_none")] pub $f: Option<$t>,)*
        }
    };
}

/// `CPUStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_core_nano_seconds: Option<u64>,
}

/// `MemoryStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub working_set_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page_faults: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major_page_faults: Option<u64>,
}

opt! {
    /// `InterfaceStats` fields (after `name`).
    pub struct InterfaceCounters {
        rx_bytes: u64,
        rx_errors: u64,
        tx_bytes: u64,
        tx_errors: u64,
    }
}

/// `InterfaceStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct InterfaceStats {
    pub name: String,
    #[serde(flatten)]
    pub counters: InterfaceCounters,
}

/// `NetworkStats`: the default interface inline, then all.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NetworkStats {
    pub time: Time,
    #[serde(flatten)]
    pub default: InterfaceStats,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceStats>,
}

/// `FsStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

/// `RuntimeStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_fs: Option<FsStats>,
}

/// `RlimitStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RlimitStats {
    pub time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maxpid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub curproc: Option<i64>,
}

/// `ContainerStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    pub name: String,
    pub start_time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs: Option<FsStats>,
}

/// `NodeStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub system_containers: Vec<ContainerStats>,
    pub start_time: Time,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs: Option<FsStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rlimit: Option<RlimitStats>,
}

/// `PodReference`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PodReference {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

/// `VolumeStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VolumeStats {
    #[serde(flatten)]
    pub fs: FsStats,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `ProcessStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ProcessStats {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process_count: Option<u64>,
}

/// `PodStats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodReference,
    pub start_time: Time,
    pub containers: Vec<ContainerStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemoryStats>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    #[serde(rename = "volume", skip_serializing_if = "Vec::is_empty")]
    pub volume_stats: Vec<VolumeStats>,
    #[serde(rename = "ephemeral-storage", skip_serializing_if = "Option::is_none")]
    pub ephemeral_storage: Option<FsStats>,
    #[serde(rename = "process_stats", skip_serializing_if = "Option::is_none")]
    pub process_stats: Option<ProcessStats>,
}

/// `Summary`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub node: NodeStats,
    pub pods: Vec<PodStats>,
}

/// Directory usage (bytes in blocks, inodes), cached per directory for `volumeStatsAggPeriod`.
pub struct DuCache {
    entries: Mutex<HashMap<PathBuf, (Instant, u64, u64)>>,
    max_age: Duration,
}

/// How long a measured directory usage is reused by default (`volumeStatsAggPeriod`, 1m).
pub const DU_MAX_AGE: Duration = Duration::from_secs(60);

impl Default for DuCache {
    fn default() -> Self {
        Self::new(DU_MAX_AGE)
    }
}

impl DuCache {
    /// A cache that reuses a measurement for `max_age`.
    pub fn new(max_age: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            max_age,
        }
    }

    /// Bytes used (allocated blocks) and inodes under `dir`; `None` if it does not exist.
    pub fn usage(&self, dir: &Path) -> Option<(u64, u64)> {
        if let Some((at, b, i)) = self.entries.lock().get(dir) {
            if at.elapsed() < self.max_age {
                return Some((*b, *i));
            }
        }
        let (b, i) = du(dir)?;
        self.entries
            .lock()
            .insert(dir.to_path_buf(), (Instant::now(), b, i));
        Some((b, i))
    }
}

/// Walks `dir` without following symlinks: (bytes allocated, inodes).
pub fn du(dir: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).ok()?;
    let (mut bytes, mut inodes) = (meta.blocks() * 512, 1);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            bytes += m.blocks() * 512;
            inodes += 1;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Some((bytes, inodes))
}

/// What the summary is built from.
pub struct SummarySource<'a> {
    pub monitor: &'a Monitor,
    pub tracker: &'a Tracker,
    pub names: &'a RuntimeNames,
    pub node_name: &'a str,
    pub pods: &'a [Pod],
    pub kubepods: &'a str,
    pub root_dir: &'a Path,
    pub log_root: &'a Path,
    pub du: &'a DuCache,
    /// Bytes the runtime's images take (CRI `ImageFsInfo`), when known.
    pub image_fs_used: Option<u64>,
}

fn cpu_of(recent: &[CStats]) -> Option<CpuStats> {
    let last = recent.last()?;
    let c = last.cpu?;
    let nano_cores = recent.len().checked_sub(2).and_then(|i| {
        let p = &recent[i];
        let pc = p.cpu?;
        let dt = last.timestamp.checked_sub(p.timestamp).filter(|d| *d > 0)?;
        let du = c.usage_total.checked_sub(pc.usage_total)?;
        Some((du as u128 * 1_000_000_000 / dt as u128) as u64)
    });
    Some(CpuStats {
        time: Time(last.timestamp),
        usage_nano_cores: nano_cores,
        usage_core_nano_seconds: Some(c.usage_total),
    })
}

fn memory_of(s: &CStats, limit: Option<u64>) -> Option<MemoryStats> {
    let m = s.memory?;
    Some(MemoryStats {
        time: Time(s.timestamp),
        available_bytes: limit.map(|l| l.saturating_sub(m.working_set)),
        usage_bytes: Some(m.usage),
        working_set_bytes: Some(m.working_set),
        rss_bytes: Some(m.rss),
        page_faults: Some(m.pgfault),
        major_page_faults: Some(m.pgmajfault),
    })
}

/// The CPU and memory of a cgroup from its newest samples, memory available against `limit`.
fn cpu_and_memory_of(
    recent: &[CStats],
    limit: Option<u64>,
) -> (Option<CpuStats>, Option<MemoryStats>) {
    (
        cpu_of(recent),
        recent.last().and_then(|s| memory_of(s, limit)),
    )
}

/// A memory limit, unless unlimited (above 2^62, or no less than the machine's memory).
fn limit(v: u64, machine: u64) -> Option<u64> {
    (v != 0 && v <= 1 << 62 && (machine == 0 || v < machine)).then_some(v)
}

fn network_of(ts: u64, v: &[collectors::model::InterfaceStats]) -> Option<NetworkStats> {
    if v.is_empty() {
        return None;
    }
    let iface = |i: &collectors::model::InterfaceStats| InterfaceStats {
        name: i.name.as_str().into_owned(),
        counters: InterfaceCounters {
            rx_bytes: Some(i.counters.rx_bytes),
            rx_errors: Some(i.counters.rx_errors),
            tx_bytes: Some(i.counters.tx_bytes),
            tx_errors: Some(i.counters.tx_errors),
        },
    };
    let all: Vec<InterfaceStats> = v.iter().map(iface).collect();
    Some(NetworkStats {
        time: Time(ts),
        default: all
            .iter()
            .find(|i| i.name == "eth0")
            .cloned()
            .unwrap_or_default(),
        interfaces: all,
    })
}

fn fs_of(
    ts: u64,
    f: &collectors::model::FsStats,
    used: Option<u64>,
    inodes_used: Option<u64>,
) -> FsStats {
    FsStats {
        time: Time(ts),
        available_bytes: Some(f.available),
        capacity_bytes: Some(f.capacity),
        used_bytes: Some(used.unwrap_or(f.usage)),
        inodes_free: Some(f.inodes_free),
        inodes: Some(f.inodes),
        inodes_used: Some(inodes_used.unwrap_or(f.inodes.saturating_sub(f.inodes_free))),
    }
}

/// The node's first filesystem with `role` (an `fs_role` bit).
fn fs_with_role(n: &collectors::model::NodeStats, role: u8) -> Option<collectors::model::FsStats> {
    n.filesystems.iter().find(|f| f.roles & role != 0).copied()
}

fn read_i64(p: &str) -> Option<i64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn running_processes() -> Option<i64> {
    // SAFETY: sysinfo fills the zeroed struct we pass.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the pointer is valid for the call.
    (unsafe { libc::sysinfo(&mut si) } == 0).then(|| i64::from(si.procs))
}

/// The cgroup (`/proc/self/cgroup`, memory or unified hierarchy) this process runs in.
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mut unified = None;
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctl, path) = (f.next()?, f.next()?, f.next()?);
        if ctl.split(',').any(|c| c == "memory") {
            return Some(path.to_string());
        }
        if ctl.is_empty() {
            unified = Some(path.to_string());
        }
    }
    unified
}

fn pod_uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// Builds the summary. `only_cpu_and_memory` keeps the CPU and memory parts only.
pub fn build(src: &SummarySource<'_>, only_cpu_and_memory: bool) -> Summary {
    let m = src.monitor;
    let machine = m.machine_info();
    let mem_cap = machine.memory_capacity;
    let root = m.container("/");
    let root_recent = root.as_ref().map(|c| c.recent(2)).unwrap_or_default();
    let node_sample = m.node_latest();
    let started = root
        .as_ref()
        .map(|c| src.tracker.spec(c).creation_time)
        .unwrap_or(0);
    let system = |name: &str, cg: &str| -> Option<ContainerStats> {
        let c = m.container(cg)?;
        let recent = c.recent(2);
        if recent.is_empty() {
            return None;
        }
        let spec = src.tracker.spec(&c);
        let (cpu, memory) =
            cpu_and_memory_of(&recent, limit(spec.memory_limit, mem_cap).or(Some(mem_cap)));
        Some(ContainerStats {
            name: name.to_string(),
            start_time: Time(spec.creation_time),
            cpu,
            memory,
            ..Default::default()
        })
    };
    let (cpu, memory) = cpu_and_memory_of(&root_recent, Some(mem_cap));
    let mut node = NodeStats {
        node_name: src.node_name.to_string(),
        system_containers: [
            own_cgroup().and_then(|cg| system("kubelet", &cg)),
            system("pods", src.kubepods),
        ]
        .into_iter()
        .flatten()
        .collect(),
        start_time: Time(started),
        cpu,
        memory,
        ..Default::default()
    };
    if !only_cpu_and_memory {
        if let Some(n) = &node_sample {
            node.network = network_of(n.timestamp, &n.network);
            node.fs = fs_with_role(n, fs_role::ROOT).map(|f| fs_of(n.timestamp, &f, None, None));
            node.runtime = Some(RuntimeStats {
                image_fs: fs_with_role(n, fs_role::IMAGE)
                    .map(|f| fs_of(n.timestamp, &f, src.image_fs_used, None)),
            });
        }
        node.rlimit = Some(RlimitStats {
            time: Time(collectors::sys::now_unix_nanos()),
            maxpid: read_i64("/proc/sys/kernel/pid_max"),
            curproc: running_processes(),
        });
    }
    // Cgroups under kubepods: pod cgroups by UID, containers by runtime ID.
    let mut pod_cgroups: HashMap<String, Arc<Container>> = HashMap::new();
    let mut by_id: HashMap<String, Arc<Container>> = HashMap::new();
    for c in m.subcontainers(src.kubepods) {
        let last = c.name().rsplit('/').next().unwrap_or("").to_string();
        if let Some(uid) = pod_uid_of_cgroup(c.name()) {
            pod_cgroups.insert(uid, c.clone());
        } else {
            by_id.insert(last, c.clone());
        }
    }
    let log_fs = node_sample
        .as_ref()
        .and_then(|n| fs_with_role(n, fs_role::LOG));
    let root_fs = node_sample
        .as_ref()
        .and_then(|n| fs_with_role(n, fs_role::ROOT));
    let now = collectors::sys::now_unix_nanos();
    let mut pods = Vec::new();
    for p in src.pods {
        let uid = pod_uid(p);
        let pod_cg = pod_cgroups.get(&uid);
        let status = p.status.as_ref();
        let statuses = status.and_then(|s| s.container_statuses.as_ref());
        if pod_cg.is_none() && statuses.is_none_or(|v| v.is_empty()) {
            continue;
        }
        let name = p.metadata.name.clone().unwrap_or_default();
        let ns = p.metadata.namespace.clone().unwrap_or_default();
        let start = status
            .and_then(|s| s.start_time.as_ref())
            .and_then(|t| u64::try_from(t.0.as_nanosecond()).ok())
            .unwrap_or(0);
        let mut ps = PodStats {
            pod_ref: PodReference {
                name: name.clone(),
                namespace: ns.clone(),
                uid: uid.clone(),
            },
            start_time: Time(start),
            ..Default::default()
        };
        let mut process_count = 0u64;
        let mut logs_used = (0u64, 0u64);
        for cs in statuses.into_iter().flatten() {
            let id = cs
                .container_id
                .as_deref()
                .and_then(|s| s.split_once("://"))
                .map(|(_, id)| id);
            let Some(c) = id.and_then(|id| by_id.get(id)) else {
                continue;
            };
            if cs.state.as_ref().is_none_or(|s| s.running.is_none()) {
                continue;
            }
            let recent = c.recent(2);
            let spec = src.tracker.spec(c);
            let (cpu, memory) = cpu_and_memory_of(&recent, limit(spec.memory_limit, mem_cap));
            let mut out = ContainerStats {
                name: cs.name.clone(),
                start_time: Time(spec.creation_time),
                cpu,
                memory,
                ..Default::default()
            };
            process_count += recent.last().and_then(|s| s.process_count).unwrap_or(0);
            if !only_cpu_and_memory {
                let dir = src
                    .log_root
                    .join(format!("{ns}_{name}_{uid}"))
                    .join(&cs.name);
                if let (Some((b, i)), Some(f)) = (src.du.usage(&dir), log_fs.as_ref()) {
                    logs_used.0 += b;
                    logs_used.1 += i;
                    out.logs = Some(fs_of(now, f, Some(b), Some(i)));
                }
            }
            ps.containers.push(out);
        }
        ps.containers.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(c) = pod_cg {
            let spec = src.tracker.spec(c);
            (ps.cpu, ps.memory) =
                cpu_and_memory_of(&c.recent(2), limit(spec.memory_limit, mem_cap));
            if !only_cpu_and_memory {
                // The sandbox holds the pod's network namespace.
                ps.network = m
                    .subcontainers(c.name())
                    .iter()
                    .filter(|k| {
                        src.names.identify(k.name()).is_some_and(|i| {
                            i.labels.get(KIND_LABEL).map(String::as_str) == Some("sandbox")
                        })
                    })
                    .find_map(|k| k.latest().and_then(|s| Some((s.timestamp, s.network?))))
                    .and_then(|(ts, v)| network_of(ts, &v));
            }
        }
        if !only_cpu_and_memory {
            let mut local = (logs_used.0, logs_used.1);
            let vol_root = src.root_dir.join("pods").join(&uid).join("volumes");
            for plugin in std::fs::read_dir(&vol_root).into_iter().flatten().flatten() {
                let plugin_name = plugin.file_name().to_string_lossy().into_owned();
                for v in std::fs::read_dir(plugin.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let Some((b, i)) = src.du.usage(&v.path()) else {
                        continue;
                    };
                    let Ok(vfs) = collectors::sys::statvfs(&v.path()) else {
                        continue;
                    };
                    if plugin_name == "kubernetes.io~empty-dir" {
                        local.0 += b;
                        local.1 += i;
                    }
                    ps.volume_stats.push(VolumeStats {
                        fs: FsStats {
                            time: Time(now),
                            available_bytes: Some(vfs.available),
                            capacity_bytes: Some(vfs.capacity),
                            used_bytes: Some(b),
                            inodes_free: Some(vfs.inodes_free),
                            inodes: Some(vfs.inodes),
                            inodes_used: Some(i),
                        },
                        name: v.file_name().to_string_lossy().into_owned(),
                    });
                }
            }
            ps.volume_stats.sort_by(|a, b| a.name.cmp(&b.name));
            ps.ephemeral_storage = root_fs
                .as_ref()
                .map(|f| fs_of(now, f, Some(local.0), Some(local.1)));
            ps.process_stats = Some(ProcessStats {
                process_count: Some(process_count),
            });
        }
        pods.push(ps);
    }
    Summary { node, pods }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_marshal_like_metav1() {
        assert_eq!(
            serde_json::to_string(&Time(1_700_000_000_900_000_000)).unwrap(),
            "\"2023-11-14T22:13:20Z\""
        );
        assert_eq!(serde_json::to_string(&Time(0)).unwrap(), "null");
    }

    #[test]
    fn network_inlines_eth0() {
        let v = vec![
            collectors::model::InterfaceStats {
                name: collectors::model::IfName::new(b"eth1"),
                counters: Default::default(),
            },
            collectors::model::InterfaceStats {
                name: collectors::model::IfName::new(b"eth0"),
                counters: collectors::model::NetCounters {
                    rx_bytes: 5,
                    ..Default::default()
                },
            },
        ];
        let n = network_of(1_700_000_000_000_000_000, &v).unwrap();
        let j = serde_json::to_value(&n).unwrap();
        assert_eq!(j["name"], "eth0");
        assert_eq!(j["rxBytes"], 5);
        assert_eq!(j["interfaces"].as_array().unwrap().len(), 2);
        assert_eq!(j["time"], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn du_counts_blocks_and_inodes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("a")).unwrap();
        std::fs::write(d.path().join("a/f"), vec![1u8; 10_000]).unwrap();
        let (b, i) = du(d.path()).unwrap();
        assert_eq!(i, 3);
        assert!(b >= 10_000, "{b}");
        let c = DuCache::default();
        assert_eq!(c.usage(d.path()), Some((b, i)));
        std::fs::write(d.path().join("a/g"), b"x").unwrap();
        assert_eq!(c.usage(d.path()), Some((b, i)), "cached for a minute");
        assert!(du(&d.path().join("nope")).is_none());
        // volumeStatsAggPeriod sets the age; a zero age measures every time.
        let fresh = DuCache::new(Duration::ZERO);
        assert_eq!(fresh.usage(d.path()).map(|u| u.1), Some(i + 1));
    }
}
