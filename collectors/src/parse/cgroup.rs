//! Parsers for cgroup interface files (v1 and v2) and PSI files.

use super::{fields, lines, parse_u64, trim};
use crate::model::{
    BlkioDevice, CpuBurstStats, CpuStats, DevNum, IoCounts, MemoryStats, Psi, PsiData,
};

/// Nanoseconds per USER_HZ tick (USER_HZ is 100 on every Linux architecture we run on).
pub const NS_PER_TICK: u64 = 10_000_000;

/// A single-value file (`memory.usage_in_bytes`, `pids.current`, `memory.max`): a decimal
/// number, or `max` for "no limit" (returned as `u64::MAX`).
pub fn single_u64(buf: &[u8]) -> Option<u64> {
    let t = trim(buf);
    if t == b"max" {
        return Some(u64::MAX);
    }
    parse_u64(t)
}

/// A flat keyed file (`memory.stat`, `cpu.stat`, `memory.events`): `key value` per line.
/// Calls `f` for every well-formed line.
pub fn flat_keyed<'a>(buf: &'a [u8], mut f: impl FnMut(&'a [u8], u64)) {
    for line in lines(buf) {
        let mut it = fields(line);
        if let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Some(v) = parse_u64(v) {
                f(k, v);
            }
        }
    }
}

/// cgroup v1 `cpuacct.stat`: `(user, system)` in ns (the file counts USER_HZ ticks).
pub fn v1_cpuacct_stat(buf: &[u8]) -> (u64, u64) {
    let (mut user, mut system) = (0, 0);
    flat_keyed(buf, |k, v| match k {
        b"user" => user = v.saturating_mul(NS_PER_TICK),
        b"system" => system = v.saturating_mul(NS_PER_TICK),
        _ => {}
    });
    (user, system)
}

/// cgroup v1 `cpu.stat`: fills the CFS fields of `cpu` (`throttled_time` is already in ns) and
/// returns the burst figures if the kernel has them (`nr_bursts`, `burst_time` in ns: 5.14+);
/// `None` on older kernels, which have no such keys.
pub fn v1_cpu_stat(buf: &[u8], cpu: &mut CpuStats) -> Option<CpuBurstStats> {
    let mut burst: Option<CpuBurstStats> = None;
    flat_keyed(buf, |k, v| match k {
        b"nr_periods" => cpu.cfs_periods = v,
        b"nr_throttled" => cpu.cfs_throttled_periods = v,
        b"throttled_time" => cpu.cfs_throttled_time = v,
        b"nr_bursts" => burst.get_or_insert_with(Default::default).bursts = v,
        b"burst_time" => burst.get_or_insert_with(Default::default).burst_time = v,
        _ => {}
    });
    burst
}

/// cgroup v2 `cpu.stat`: usage and CFS figures, converted from µs to ns, and the burst figures
/// where the kernel has them (`nr_bursts`, `burst_usec`). Fields the kernel leaves out (no
/// `cpu` controller: no `nr_periods`, no `nr_bursts`) stay zero or `None`.
pub fn v2_cpu_stat(buf: &[u8]) -> (CpuStats, Option<CpuBurstStats>) {
    let mut cpu = CpuStats::default();
    let mut burst: Option<CpuBurstStats> = None;
    flat_keyed(buf, |k, v| match k {
        b"usage_usec" => cpu.usage_total = v.saturating_mul(1000),
        b"user_usec" => cpu.usage_user = v.saturating_mul(1000),
        b"system_usec" => cpu.usage_system = v.saturating_mul(1000),
        b"nr_periods" => cpu.cfs_periods = v,
        b"nr_throttled" => cpu.cfs_throttled_periods = v,
        b"throttled_usec" => cpu.cfs_throttled_time = v.saturating_mul(1000),
        b"nr_bursts" => burst.get_or_insert_with(Default::default).bursts = v,
        b"burst_usec" => {
            burst.get_or_insert_with(Default::default).burst_time = v.saturating_mul(1000)
        }
        _ => {}
    });
    (cpu, burst)
}

/// cgroup v1 `memory.stat` (hierarchical `total_*` figures, as cAdvisor reports with
/// `use_hierarchy`, which every current kernel forces on). Leaves usage, limit and failcnt to
/// the caller; call [`finish_working_set`] once `usage` is known.
pub fn v1_memory_stat(buf: &[u8], m: &mut MemoryStats) {
    flat_keyed(buf, |k, v| match k {
        b"total_cache" => m.cache = v,
        b"total_rss" => m.rss = v,
        b"total_swap" => m.swap = v,
        b"total_mapped_file" => m.mapped_file = v,
        b"total_active_file" => m.total_active_file = v,
        b"total_inactive_file" => m.total_inactive_file = v,
        b"total_dirty" => m.file_dirty = v,
        b"total_writeback" => m.file_writeback = v,
        b"pgfault" => m.pgfault = v,
        b"pgmajfault" => m.pgmajfault = v,
        b"total_pgfault" => m.hierarchical_pgfault = v,
        b"total_pgmajfault" => m.hierarchical_pgmajfault = v,
        b"total_workingset_refault_anon" => m.workingset_refault_anon = v,
        b"total_workingset_refault_file" => m.workingset_refault_file = v,
        _ => {}
    });
}

/// cgroup v2 `memory.stat`. Call [`finish_working_set`] once `usage` is known.
pub fn v2_memory_stat(buf: &[u8], m: &mut MemoryStats) {
    flat_keyed(buf, |k, v| match k {
        b"file" => m.cache = v,
        b"anon" => m.rss = v,
        b"file_mapped" => m.mapped_file = v,
        b"active_file" => m.total_active_file = v,
        b"inactive_file" => m.total_inactive_file = v,
        b"file_dirty" => m.file_dirty = v,
        b"file_writeback" => m.file_writeback = v,
        b"pgfault" => {
            m.pgfault = v;
            m.hierarchical_pgfault = v;
        }
        b"pgmajfault" => {
            m.pgmajfault = v;
            m.hierarchical_pgmajfault = v;
        }
        b"kernel" => m.kernel = v,
        b"pgscan" => m.pgscan = v,
        b"pgsteal" => m.pgsteal = v,
        b"workingset_refault_anon" => m.workingset_refault_anon = v,
        b"workingset_refault_file" => m.workingset_refault_file = v,
        _ => {}
    });
}

/// Working set = usage − inactive file pages, floored at zero (cAdvisor's definition).
pub fn finish_working_set(m: &mut MemoryStats) {
    m.working_set = m.usage.saturating_sub(m.total_inactive_file);
}

/// cgroup v2 `memory.events`: `(max, oom_kill)`; `max` is what cAdvisor reports as `failcnt`.
pub fn v2_memory_events(buf: &[u8]) -> (u64, u64) {
    let (mut max, mut oom_kill) = (0, 0);
    flat_keyed(buf, |k, v| match k {
        b"max" => max = v,
        b"oom_kill" => oom_kill = v,
        _ => {}
    });
    (max, oom_kill)
}

/// Which counter a v1 `blkio` file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlkioKind {
    /// `*io_service_bytes*`: bytes.
    Bytes,
    /// `*io_serviced*`: operations.
    Ops,
}

fn device_entry(out: &mut Vec<BlkioDevice>, dev: DevNum) -> &mut BlkioDevice {
    match out.iter().position(|d| d.dev == dev) {
        Some(i) => &mut out[i],
        None => {
            out.push(BlkioDevice {
                dev,
                ..Default::default()
            });
            out.last_mut().unwrap()
        }
    }
}

fn parse_dev(s: &[u8]) -> Option<DevNum> {
    let colon = s.iter().position(|&c| c == b':')?;
    let major = u32::try_from(parse_u64(&s[..colon])?).ok()?;
    let minor = u32::try_from(parse_u64(&s[colon + 1..])?).ok()?;
    Some(DevNum { major, minor })
}

/// cgroup v1 `blkio.throttle.io_service_bytes` / `io_serviced` (and the `_recursive` and CFQ/BFQ
/// variants, same format): `MAJ:MIN Op value` lines plus a final `Total value`. Merges into
/// `out` by device; the per-device `Total` line is ignored (it is the sum).
pub fn v1_blkio(buf: &[u8], kind: BlkioKind, out: &mut Vec<BlkioDevice>) {
    for line in lines(buf) {
        let mut it = fields(line);
        let (Some(dev), Some(op), Some(v)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let (Some(dev), Some(v)) = (parse_dev(dev), parse_u64(v)) else {
            continue;
        };
        let e = device_entry(out, dev);
        let c: &mut IoCounts = match kind {
            BlkioKind::Bytes => &mut e.bytes,
            BlkioKind::Ops => &mut e.ops,
        };
        match op {
            b"Read" => c.read = v,
            b"Write" => c.write = v,
            b"Sync" => c.sync = v,
            b"Async" => c.async_ = v,
            b"Discard" => c.discard = v,
            _ => {}
        }
    }
}

/// cgroup v2 `io.stat`: `MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=.. dbytes=.. dios=..`.
pub fn v2_io_stat(buf: &[u8], out: &mut Vec<BlkioDevice>) {
    for line in lines(buf) {
        let mut it = fields(line);
        let Some(dev) = it.next().and_then(parse_dev) else {
            continue;
        };
        let e = device_entry(out, dev);
        for kv in it {
            let Some(eq) = kv.iter().position(|&c| c == b'=') else {
                continue;
            };
            let Some(v) = parse_u64(&kv[eq + 1..]) else {
                continue;
            };
            match &kv[..eq] {
                b"rbytes" => e.bytes.read = v,
                b"wbytes" => e.bytes.write = v,
                b"dbytes" => e.bytes.discard = v,
                b"rios" => e.ops.read = v,
                b"wios" => e.ops.write = v,
                b"dios" => e.ops.discard = v,
                _ => {}
            }
        }
    }
}

fn parse_f64(s: &[u8]) -> Option<f64> {
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// A PSI file (`cpu.pressure`, `/proc/pressure/io`, ...):
/// `some avg10=0.00 avg60=0.00 avg300=0.00 total=0` and the same for `full`.
/// `None` if no `some` line parses (PSI disabled reads as `EOPNOTSUPP` or empty).
pub fn psi(buf: &[u8]) -> Option<Psi> {
    let mut out = Psi::default();
    let mut seen_some = false;
    for line in lines(buf) {
        let mut it = fields(line);
        let target = match it.next() {
            Some(b"some") => {
                seen_some = true;
                &mut out.some
            }
            Some(b"full") => &mut out.full,
            _ => continue,
        };
        let mut d = PsiData::default();
        for kv in it {
            let Some(eq) = kv.iter().position(|&c| c == b'=') else {
                continue;
            };
            let (k, v) = (&kv[..eq], &kv[eq + 1..]);
            match k {
                b"avg10" => d.avg10 = parse_f64(v).unwrap_or(0.0),
                b"avg60" => d.avg60 = parse_f64(v).unwrap_or(0.0),
                b"avg300" => d.avg300 = parse_f64(v).unwrap_or(0.0),
                b"total" => d.total = parse_u64(v).unwrap_or(0),
                _ => {}
            }
        }
        *target = d;
    }
    seen_some.then_some(out)
}

/// `cgroup.procs` / `tasks`: `(number of pids, first pid)`.
pub fn pid_list(buf: &[u8]) -> (u64, Option<u32>) {
    let mut n = 0;
    let mut first = None;
    for p in pids(buf) {
        n += 1;
        first.get_or_insert(p);
    }
    (n, first)
}

/// The pids of `cgroup.procs` / `tasks`, malformed lines skipped.
pub fn pids(buf: &[u8]) -> impl Iterator<Item = u32> + '_ {
    lines(buf).filter_map(|l| parse_u64(trim(l)).and_then(|p| u32::try_from(p).ok()))
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
    fn single_values() {
        assert_eq!(single_u64(b"12345\n"), Some(12345));
        assert_eq!(single_u64(b"max\n"), Some(u64::MAX));
        assert_eq!(
            single_u64(b"9223372036854771712\n"),
            Some(9223372036854771712)
        );
        assert_eq!(single_u64(b"\n"), None);
        assert_eq!(single_u64(b"garbage"), None);
    }

    #[test]
    fn cpuacct_stat_converts_ticks() {
        assert_eq!(
            v1_cpuacct_stat(b"user 12\nsystem 3\n"),
            (120_000_000, 30_000_000)
        );
        let (u, s) = v1_cpuacct_stat(&fixture("v1_root_cpuacct.stat"));
        assert!(u > 0 && s > 0);
    }

    #[test]
    fn v1_cpu_stat_fills_cfs() {
        let mut c = CpuStats::default();
        let burst = v1_cpu_stat(
            b"nr_periods 10\nnr_throttled 4\nthrottled_time 5000\nnr_bursts 3\nburst_time 7000\n",
            &mut c,
        );
        assert_eq!(
            (c.cfs_periods, c.cfs_throttled_periods, c.cfs_throttled_time),
            (10, 4, 5000)
        );
        assert_eq!(
            burst,
            Some(CpuBurstStats {
                bursts: 3,
                burst_time: 7000
            })
        );
        // Kernels before 5.14 have no burst keys: no burst figures at all, not zeros.
        let mut c = CpuStats::default();
        let burst = v1_cpu_stat(
            b"nr_periods 10\nnr_throttled 4\nthrottled_time 5000\n",
            &mut c,
        );
        assert_eq!((c.cfs_periods, burst), (10, None));
        // A real snapshot of a 6.x kernel's root: the keys are there (zero).
        let mut c = CpuStats::default();
        let burst = v1_cpu_stat(&fixture("v1_root_cpu.stat"), &mut c);
        assert_eq!(c.usage_total, 0, "cpu.stat carries no usage on v1");
        assert_eq!(burst, Some(CpuBurstStats::default()));
    }

    #[test]
    fn v2_cpu_stat_converts_usec() {
        let (c, burst) = v2_cpu_stat(
            b"usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\nnr_bursts 2\nburst_usec 40\n",
        );
        assert_eq!(
            burst,
            Some(CpuBurstStats {
                bursts: 2,
                burst_time: 40_000
            })
        );
        assert_eq!(c.usage_total, 1_500_000);
        assert_eq!(c.usage_user, 1_000_000);
        assert_eq!(c.usage_system, 500_000);
        assert_eq!(c.cfs_periods, 7);
        assert_eq!(c.cfs_throttled_periods, 2);
        assert_eq!(c.cfs_throttled_time, 30_000);
        // Real root snapshot: usage present, no CFS keys, so no burst figures either.
        let (c, burst) = v2_cpu_stat(&fixture("v2_root_cpu.stat"));
        assert_eq!(burst, None);
        assert!(c.usage_total >= c.usage_user);
        assert!(c.usage_total > 0);
    }

    #[test]
    fn v1_memory_stat_uses_hierarchical_figures() {
        let buf = b"cache 1\nrss 2\nmapped_file 3\npgfault 4\npgmajfault 5\ninactive_file 6\n\
total_cache 10\ntotal_rss 20\ntotal_swap 30\ntotal_mapped_file 40\ntotal_inactive_file 50\n\
total_active_file 60\ntotal_pgfault 70\ntotal_pgmajfault 80\ntotal_dirty 90\ntotal_writeback 91\n";
        let mut m = MemoryStats {
            usage: 45,
            ..Default::default()
        };
        v1_memory_stat(buf, &mut m);
        finish_working_set(&mut m);
        assert_eq!((m.cache, m.rss, m.swap, m.mapped_file), (10, 20, 30, 40));
        assert_eq!((m.total_inactive_file, m.total_active_file), (50, 60));
        assert_eq!((m.pgfault, m.pgmajfault), (4, 5));
        assert_eq!(
            (m.hierarchical_pgfault, m.hierarchical_pgmajfault),
            (70, 80)
        );
        assert_eq!((m.file_dirty, m.file_writeback), (90, 91));
        assert_eq!(m.working_set, 0, "usage below inactive_file floors at zero");
        m.usage = 150;
        finish_working_set(&mut m);
        assert_eq!(m.working_set, 100);
    }

    #[test]
    fn v1_memory_stat_real_snapshot() {
        let buf = fixture("v1_memory.stat");
        let mut m = MemoryStats::default();
        v1_memory_stat(&buf, &mut m);
        // The snapshot is of a busy cgroup: it has page cache and anonymous memory.
        let mut total_cache = None;
        flat_keyed(&buf, |k, v| {
            if k == b"total_cache" {
                total_cache = Some(v)
            }
        });
        assert_eq!(Some(m.cache), total_cache);
        assert!(m.rss > 0);
    }

    #[test]
    fn v2_memory_stat_and_events() {
        let buf = b"anon 100\nfile 200\nkernel 7\nfile_mapped 3\nfile_dirty 4\nfile_writeback 5\n\
active_file 60\ninactive_file 140\npgfault 9\npgmajfault 1\npgscan 11\npgsteal 12\n\
workingset_refault_anon 13\nworkingset_refault_file 14\n";
        let mut m = MemoryStats {
            usage: 400,
            ..Default::default()
        };
        v2_memory_stat(buf, &mut m);
        finish_working_set(&mut m);
        assert_eq!((m.rss, m.cache, m.kernel, m.mapped_file), (100, 200, 7, 3));
        assert_eq!(m.working_set, 260);
        assert_eq!((m.pgfault, m.hierarchical_pgfault), (9, 9));
        assert_eq!((m.pgscan, m.pgsteal), (11, 12));
        assert_eq!(
            (m.workingset_refault_anon, m.workingset_refault_file),
            (13, 14)
        );
        assert_eq!(
            v2_memory_events(b"low 0\nhigh 1\nmax 5\noom 2\noom_kill 1\n"),
            (5, 1)
        );
    }

    #[test]
    fn v1_blkio_merges_bytes_and_ops_per_device() {
        let bytes = b"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1024\n8:0 Async 11264\n\
8:0 Discard 0\n8:0 Total 12288\n8:16 Read 1\n8:16 Write 0\n8:16 Total 1\nTotal 12289\n";
        let ops = b"8:0 Read 1\n8:0 Write 2\n8:0 Sync 3\n8:0 Async 0\n8:0 Discard 0\n8:0 Total 3\nTotal 3\n";
        let mut v = Vec::new();
        v1_blkio(bytes, BlkioKind::Bytes, &mut v);
        v1_blkio(ops, BlkioKind::Ops, &mut v);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].dev, DevNum { major: 8, minor: 0 });
        assert_eq!(v[0].bytes.read, 4096);
        assert_eq!(v[0].bytes.write, 8192);
        assert_eq!(v[0].bytes.total(), 12288);
        assert_eq!(v[0].bytes.sync, 1024);
        assert_eq!(v[0].bytes.async_, 11264);
        assert_eq!((v[0].ops.read, v[0].ops.write, v[0].ops.sync), (1, 2, 3));
        assert_eq!(
            v[1].dev,
            DevNum {
                major: 8,
                minor: 16
            }
        );
        // This kernel's real file before any throttle is set: just "Total 0".
        let mut v = Vec::new();
        v1_blkio(
            &fixture("v1_root_blkio.throttle.io_service_bytes"),
            BlkioKind::Bytes,
            &mut v,
        );
        assert!(v.is_empty());
    }

    #[test]
    fn v2_io_stat_per_device() {
        let mut v = Vec::new();
        v2_io_stat(
            b"254:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n253:0 rbytes=5 wbytes=6 rios=7 wios=8 dbytes=9 dios=10\n",
            &mut v,
        );
        assert_eq!(v.len(), 2);
        assert_eq!((v[0].bytes.read, v[0].bytes.write), (100, 200));
        assert_eq!((v[0].ops.read, v[0].ops.write), (1, 2));
        assert_eq!((v[1].bytes.discard, v[1].ops.discard), (9, 10));
    }

    #[test]
    fn psi_lines() {
        let p = psi(b"some avg10=1.50 avg60=0.25 avg300=0.00 total=12345\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=99\n").unwrap();
        assert_eq!(p.some.total, 12345);
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.avg60, 0.25);
        assert_eq!(p.full.total, 99);
        assert_eq!(p.full.avg10, 0.1);
        assert_eq!(psi(b""), None);
        let p = psi(&fixture("proc_pressure_io")).unwrap();
        assert!(p.some.total >= p.full.total);
        let cpu = psi(&fixture("proc_pressure_cpu")).unwrap();
        assert!(cpu.some.total > 0);
    }

    #[test]
    fn pid_lists() {
        assert_eq!(pid_list(b"12\n34\n"), (2, Some(12)));
        assert_eq!(pid_list(b""), (0, None));
    }
}
