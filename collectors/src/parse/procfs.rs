//! Parsers for procfs files: `/proc/stat`, `/proc/meminfo`, `/proc/diskstats`,
//! `/proc/net/dev` (also `/proc/<pid>/net/dev`).

use super::{fields, lines, parse_u64};
use crate::model::{
    DevNum, DiskCounters, DiskStats, IfName, InterfaceStats, NetCounters, NodeCpuStats,
    NodeMemoryStats,
};
use crate::parse::cgroup::NS_PER_TICK;

/// What `/proc/stat` tells the node sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// The aggregate `cpu` line, in ns.
    pub cpu: NodeCpuStats,
    /// `procs_running`.
    pub procs_running: u64,
    /// `procs_blocked`.
    pub procs_blocked: u64,
    /// Number of `cpuN` lines.
    pub num_cpus: u64,
}

/// `/proc/stat`.
pub fn proc_stat(buf: &[u8]) -> ProcStat {
    let mut out = ProcStat::default();
    for line in lines(buf) {
        let mut it = fields(line);
        let Some(key) = it.next() else { continue };
        match key {
            b"cpu" => {
                let mut v = [0u64; 8];
                for (slot, f) in v.iter_mut().zip(it) {
                    *slot = parse_u64(f).unwrap_or(0).saturating_mul(NS_PER_TICK);
                }
                out.cpu = NodeCpuStats {
                    user: v[0],
                    nice: v[1],
                    system: v[2],
                    idle: v[3],
                    iowait: v[4],
                    irq: v[5],
                    softirq: v[6],
                    steal: v[7],
                };
            }
            k if k.starts_with(b"cpu") => out.num_cpus += 1,
            b"procs_running" => out.procs_running = it.next().and_then(parse_u64).unwrap_or(0),
            b"procs_blocked" => out.procs_blocked = it.next().and_then(parse_u64).unwrap_or(0),
            _ => {}
        }
    }
    out
}

/// `/proc/meminfo`, converted to bytes.
pub fn meminfo(buf: &[u8]) -> NodeMemoryStats {
    let mut m = NodeMemoryStats::default();
    for line in lines(buf) {
        let mut it = fields(line);
        let (Some(k), Some(v)) = (it.next(), it.next().and_then(parse_u64)) else {
            continue;
        };
        let bytes = if it.next() == Some(b"kB") {
            v.saturating_mul(1024)
        } else {
            v
        };
        match k {
            b"MemTotal:" => m.total = bytes,
            b"MemFree:" => m.free = bytes,
            b"MemAvailable:" => m.available = bytes,
            b"Buffers:" => m.buffers = bytes,
            b"Cached:" => m.cached = bytes,
            b"Active(file):" => m.active_file = bytes,
            b"Inactive(file):" => m.inactive_file = bytes,
            b"Shmem:" => m.shmem = bytes,
            b"SwapTotal:" => m.swap_total = bytes,
            b"SwapFree:" => m.swap_free = bytes,
            _ => {}
        }
    }
    m
}

/// `/proc/diskstats`: appends one entry per line to `out`. `keep` decides by device name
/// (e.g. skip `loop*` and `ram*`).
pub fn diskstats(buf: &[u8], mut keep: impl FnMut(&[u8]) -> bool, out: &mut Vec<DiskStats>) {
    for line in lines(buf) {
        let mut it = fields(line);
        let (Some(maj), Some(min), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let (Some(maj), Some(min)) = (parse_u64(maj), parse_u64(min)) else {
            continue;
        };
        if !keep(name) {
            continue;
        }
        let mut v = [0u64; 11];
        for (slot, f) in v.iter_mut().zip(it) {
            *slot = parse_u64(f).unwrap_or(0);
        }
        out.push(DiskStats {
            dev: DevNum {
                major: maj as u32,
                minor: min as u32,
            },
            counters: DiskCounters {
                reads_completed: v[0],
                reads_merged: v[1],
                sectors_read: v[2],
                read_time: v[3],
                writes_completed: v[4],
                writes_merged: v[5],
                sectors_written: v[6],
                write_time: v[7],
                io_in_progress: v[8],
                io_time: v[9],
                weighted_io_time: v[10],
            },
        });
    }
}

/// Interfaces cAdvisor leaves out of network statistics: `lo` and `veth*` (the host ends of
/// pod links; counting them would count pod traffic twice).
pub fn is_ignored_interface(name: &[u8]) -> bool {
    name == b"lo" || name.starts_with(b"veth")
}

/// `/proc/net/dev` (or `/proc/<pid>/net/dev`): appends the interfaces not ignored by
/// [`is_ignored_interface`] to `out`.
pub fn net_dev(buf: &[u8], out: &mut Vec<InterfaceStats>) {
    for line in lines(buf) {
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = super::trim(&line[..colon]);
        if name.is_empty() || name.contains(&b'|') || is_ignored_interface(name) {
            continue;
        }
        let mut v = [0u64; 16];
        let mut n = 0;
        for (slot, f) in v.iter_mut().zip(fields(&line[colon + 1..])) {
            *slot = parse_u64(f).unwrap_or(0);
            n += 1;
        }
        if n < 16 {
            continue;
        }
        out.push(InterfaceStats {
            name: IfName::new(name),
            counters: NetCounters {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/real")
            .join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    #[test]
    fn proc_stat_synthetic() {
        let s = proc_stat(
            b"cpu  10 1 5 100 2 0 3 0 0 0\ncpu0 5 0 2 50 1 0 1 0 0 0\ncpu1 5 1 3 50 1 0 2 0 0 0\n\
intr 1 2 3\nctxt 99\nprocs_running 3\nprocs_blocked 1\n",
        );
        assert_eq!(s.cpu.user, 10 * NS_PER_TICK);
        assert_eq!(s.cpu.idle, 100 * NS_PER_TICK);
        assert_eq!(s.cpu.softirq, 3 * NS_PER_TICK);
        assert_eq!(s.cpu.usage_total(), (10 + 1 + 5 + 3) * NS_PER_TICK);
        assert_eq!((s.procs_running, s.procs_blocked, s.num_cpus), (3, 1, 2));
    }

    #[test]
    fn proc_stat_real_snapshot() {
        let s = proc_stat(&fixture("proc_stat"));
        assert_eq!(s.num_cpus, 2);
        assert!(s.cpu.idle > 0 && s.cpu.user > 0);
    }

    #[test]
    fn meminfo_in_bytes() {
        let m = meminfo(
            b"MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    500 kB\n\
Inactive(file):   100 kB\nSwapTotal: 0 kB\nHugePages_Total: 0\n",
        );
        assert_eq!(m.total, 1_024_000);
        assert_eq!(m.free, 204_800);
        assert_eq!(m.available, 512_000);
        assert_eq!(m.inactive_file, 102_400);
        assert_eq!(m.working_set(), (1000 - 200 - 100) * 1024);
        let real = meminfo(&fixture("proc_meminfo"));
        assert!(real.total > real.free && real.available > 0);
    }

    #[test]
    fn diskstats_filters_and_parses() {
        let mut v = Vec::new();
        diskstats(
            &fixture("proc_diskstats"),
            |n| !n.starts_with(b"loop"),
            &mut v,
        );
        let names = v.len();
        assert_eq!(names, 2, "vda and zram0 remain");
        assert_eq!(
            v[0].dev,
            DevNum {
                major: 254,
                minor: 0
            }
        );
        assert_eq!(v[0].counters.reads_completed, 26736);
        assert_eq!(v[0].counters.sectors_written, 4732376);
        assert_eq!(v[0].counters.weighted_io_time, 33579);
    }

    #[test]
    fn net_dev_skips_lo_and_veth() {
        let buf = b"Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
  eth0: 500 5 1 2 0 0 0 0 700 7 3 4 0 0 0 0\n\
vethabc: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n";
        let mut v = Vec::new();
        net_dev(buf, &mut v);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].name.as_str(), "eth0");
        let c = v[0].counters;
        assert_eq!(
            (c.rx_bytes, c.rx_packets, c.rx_errors, c.rx_dropped),
            (500, 5, 1, 2)
        );
        assert_eq!(
            (c.tx_bytes, c.tx_packets, c.tx_errors, c.tx_dropped),
            (700, 7, 3, 4)
        );
        let mut v = Vec::new();
        net_dev(&fixture("proc_net_dev"), &mut v);
        let names: Vec<_> = v.iter().map(|i| i.name.as_str().into_owned()).collect();
        assert_eq!(names, ["ifb0", "ifb1", "eth0"]);
    }
}
