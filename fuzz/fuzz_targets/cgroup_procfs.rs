//! The collector's cgroup (v1 and v2) and procfs parsers on arbitrary file contents: a
//! container can make a kernel file say little, but a parser must never panic on what it reads.

#![no_main]

use collectors::model::{CpuStats, MemoryStats};
use collectors::parse::cgroup::BlkioKind;
use collectors::parse::{cgroup, procfs};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cgroup::single_u64(data);
    cgroup::flat_keyed(data, |_, _| {});
    let _ = cgroup::v1_cpuacct_stat(data);
    let mut cpu = CpuStats::default();
    let _ = cgroup::v1_cpu_stat(data, &mut cpu);
    let _ = cgroup::v2_cpu_stat(data);
    let mut m = MemoryStats::default();
    cgroup::v1_memory_stat(data, &mut m);
    cgroup::finish_working_set(&mut m);
    let mut m = MemoryStats::default();
    cgroup::v2_memory_stat(data, &mut m);
    cgroup::finish_working_set(&mut m);
    let _ = cgroup::v2_memory_events(data);
    let mut dev = Vec::new();
    for kind in [BlkioKind::Bytes, BlkioKind::Ops] {
        cgroup::v1_blkio(data, kind, &mut dev);
    }
    cgroup::v2_io_stat(data, &mut dev);
    let _ = cgroup::psi(data);
    let _ = cgroup::pid_list(data);
    let _ = cgroup::pids(data).count();
    let _ = procfs::proc_stat(data);
    let _ = procfs::meminfo(data);
    let mut disks = Vec::new();
    procfs::diskstats(data, |_| true, &mut disks);
    let mut nets = Vec::new();
    procfs::net_dev(data, &mut nets);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = collectors::machine::parse_cpu_list(s);
        let _ = collectors::machine::parse_size(s);
    }
});
