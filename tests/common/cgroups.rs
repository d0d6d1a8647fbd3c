//! The live cgroup tree as the integration tests read it, through the collectors' layout
//! detection (`collectors::layout::CgroupLayout`): a test names a controller and a cgroup, and
//! gets the right directory and file on cgroup v1, v2 and hybrid hosts alike. Values whose file
//! differs between v1 and v2 (memory limit, CFS quota, CPU shares/weight) are read through
//! [`Knob`], normalized to the v1 meaning.

use std::path::{Path, PathBuf};

use collectors::layout::{cgroup_dir, CgroupLayout};

/// The host's cgroup mount.
pub const CGROUP_MOUNT: &str = "/sys/fs/cgroup";

/// The layout of the host's cgroup mount.
pub fn layout() -> CgroupLayout {
    CgroupLayout::detect(Path::new(CGROUP_MOUNT))
        .unwrap_or_else(|e| panic!("cgroup layout of {CGROUP_MOUNT}: {e}"))
}

/// Whether the resource controllers are cgroup v2 (pure v2; hybrid hosts use v1 for them).
pub fn is_v2() -> bool {
    layout().v1().is_none()
}

/// The directory of cgroup `name` (`/a/b`) in the hierarchy that holds `controller` (`memory`,
/// `cpu`, `cpuacct`, `pids`, `blkio`, `cpuset`); the unified hierarchy on cgroup v2.
pub fn dir(controller: &str, name: &str) -> PathBuf {
    let l = layout();
    let hierarchy = match l.v1() {
        Some(v1) => match controller {
            "memory" => v1.memory.clone(),
            "cpu" => v1.cpu.clone(),
            "cpuacct" => v1.cpuacct.clone(),
            "pids" => v1.pids.clone(),
            "blkio" | "io" => v1.blkio.clone(),
            "cpuset" => v1.cpuset.clone(),
            other => panic!("no cgroup v1 controller named {other}"),
        }
        .unwrap_or_else(|| panic!("the {controller} controller is not mounted")),
        None => l.unified().expect("a unified hierarchy").to_path_buf(),
    };
    cgroup_dir(&hierarchy, name)
}

/// Every hierarchy directory that holds resource controllers (and the unified one on hybrid
/// hosts), for cleanup.
pub fn hierarchies() -> Vec<PathBuf> {
    let l = layout();
    let mut out = l.discovery_roots();
    if let CgroupLayout::Hybrid(_, u) = &l {
        out.push(u.clone());
    }
    out
}

/// A cgroup setting that lives in differently named files on v1 and v2.
#[derive(Clone, Copy, Debug)]
pub enum Knob {
    /// Bytes; `None` when unlimited. v1 `memory.limit_in_bytes`, v2 `memory.max`.
    MemoryLimit,
    /// Microseconds per period; `None` when unlimited. v1 `cpu.cfs_quota_us`, v2 `cpu.max`.
    CpuQuota,
    /// v1 `cpu.shares`; on v2 `cpu.weight`, compared through [`shares_as_read`].
    CpuShares,
    /// `None` when unlimited. `pids.max` on both.
    PidsMax,
}

/// Reads `knob` of cgroup `name`; `None` means unlimited. Panics naming the file when it is
/// missing or malformed.
pub fn read(name: &str, knob: Knob) -> Option<u64> {
    let v2 = is_v2();
    let (controller, file) = match (knob, v2) {
        (Knob::MemoryLimit, false) => ("memory", "memory.limit_in_bytes"),
        (Knob::MemoryLimit, true) => ("memory", "memory.max"),
        (Knob::CpuQuota, false) => ("cpu", "cpu.cfs_quota_us"),
        (Knob::CpuQuota, true) => ("cpu", "cpu.max"),
        (Knob::CpuShares, false) => ("cpu", "cpu.shares"),
        (Knob::CpuShares, true) => ("cpu", "cpu.weight"),
        (Knob::PidsMax, _) => ("pids", "pids.max"),
    };
    let path = dir(controller, name).join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let first = text.split_whitespace().next().unwrap_or("");
    if first == "max" || first == "-1" {
        return None;
    }
    let v: u64 = first
        .parse()
        .unwrap_or_else(|e| panic!("{}: {text:?}: {e}", path.display()));
    // v1 reports "no memory limit" as a huge page-aligned number.
    if matches!(knob, Knob::MemoryLimit) && v >= (1 << 62) {
        return None;
    }
    Some(v)
}

/// What [`read`] returns for [`Knob::CpuShares`] when the kubelet set `shares`: the shares on
/// v1, the `cpu.weight` the kubelet converts them to on v2.
pub fn shares_as_read(shares: u64) -> u64 {
    if is_v2() {
        1 + (shares.saturating_sub(2) * 9999) / 262142
    } else {
        shares
    }
}

/// Writes a memory limit on cgroup `name` (v1 `memory.limit_in_bytes`, v2 `memory.max`).
pub fn write_memory_limit(name: &str, bytes: u64) -> std::io::Result<()> {
    let file = if is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    std::fs::write(dir("memory", name).join(file), bytes.to_string())
}
