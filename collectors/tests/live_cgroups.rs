//! Integration tests against the live kernel: real cgroups under a test-owned parent
//! (`/sys/fs/cgroup/<hierarchy>/kubelet-rs-<tag>-<pid>`), real processes in them. Every
//! cgroup and process is removed by `ScratchCgroups`' drop, also when an assertion fails.
//! Without root or cgroup write access each test prints `skipped: <reason>` and returns —
//! except in CI and under `scripts/test` (`KUBELET_RS_MONITORING_TOOLS=required`), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use collectors::discovery::NameFilter;
use collectors::files::{KeptFile, ReadMode};
use collectors::layout::{cgroup_dir, CgroupLayout};
use collectors::model::fs_role;
use collectors::testing::ScratchCgroups;
use collectors::{Monitor, MonitorConfig};

const ROOT: &str = "/sys/fs/cgroup";

/// Scratch cgroups, or a loud skip — a failure in CI and under `scripts/test`.
fn scratch(tag: &str) -> Option<ScratchCgroups> {
    ScratchCgroups::new_or_skip(Path::new(ROOT), tag)
}

fn monitor_for(s: &ScratchCgroups) -> Arc<Monitor> {
    Monitor::new(MonitorConfig {
        filter: NameFilter::prefixes([s.parent()]),
        housekeeping_interval: Duration::from_millis(100),
        threads: 2,
        fs_paths: vec![(fs_role::ROOT, "/".into())],
        network_in_host_netns: true,
        ..Default::default()
    })
    .unwrap()
}

fn layout() -> CgroupLayout {
    CgroupLayout::detect(Path::new(ROOT)).unwrap()
}

/// The directory of cgroup `name` holding `file`, in whichever hierarchy has it.
fn file_of(name: &str, file: &str) -> PathBuf {
    let l = layout();
    let mut roots = l.discovery_roots();
    roots.extend(l.unified().map(Path::to_path_buf));
    roots
        .iter()
        .map(|h| cgroup_dir(h, name).join(file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no hierarchy has {name}/{file}"))
}

fn kernel_u64(name: &str, file: &str) -> u64 {
    let s = std::fs::read_to_string(file_of(name, file)).unwrap();
    let t = s.trim();
    if t == "max" {
        u64::MAX
    } else {
        t.parse().unwrap()
    }
}

fn kernel_key(name: &str, file: &str, key: &str) -> u64 {
    let s = std::fs::read_to_string(file_of(name, file)).unwrap();
    s.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key)).then(|| it.next().unwrap().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{key} missing from {file}"))
}

/// Whether the resource controllers are cgroup v2 (pure v2; hybrid hosts use v1 for them).
fn v2() -> bool {
    layout().v1().is_none()
}

/// The v1 or the v2 name of a file, by layout.
fn pick(v1: &'static str, v2_name: &'static str) -> &'static str {
    if v2() {
        v2_name
    } else {
        v1
    }
}

/// CPU usage in ns: v1 `cpuacct.usage`, v2 `cpu.stat` `usage_usec`.
fn cpu_usage_ns(name: &str) -> u64 {
    if v2() {
        kernel_key(name, "cpu.stat", "usage_usec") * 1000
    } else {
        kernel_u64(name, "cpuacct.usage")
    }
}

/// Memory usage: v1 `memory.usage_in_bytes`, v2 `memory.current`.
fn memory_usage(name: &str) -> u64 {
    kernel_u64(name, pick("memory.usage_in_bytes", "memory.current"))
}

/// Inactive file pages: v1 `total_inactive_file`, v2 `inactive_file` of `memory.stat`.
fn inactive_file(name: &str) -> u64 {
    kernel_key(
        name,
        "memory.stat",
        pick("total_inactive_file", "inactive_file"),
    )
}

/// What cAdvisor calls failcnt: v1 `memory.failcnt`, v2 `memory.events` `max`.
fn failcnt(name: &str) -> u64 {
    if v2() {
        kernel_key(name, "memory.events", "max")
    } else {
        kernel_u64(name, "memory.failcnt")
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn burner() -> Command {
    let mut c = Command::new("sh");
    c.args([
        "-c",
        "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 600",
    ]);
    c
}

fn sleeper() -> Command {
    let mut c = Command::new("sleep");
    c.arg("600");
    c
}

#[test]
fn sampled_values_match_the_kernel_files() {
    let Some(mut s) = scratch("it-values") else {
        return;
    };
    let busy = s.add("busy").unwrap();
    let idle = s.add("idle").unwrap();
    // Limits the spec must report.
    let (mem_limit, shares) = (
        pick("memory.limit_in_bytes", "memory.max"),
        pick("cpu.shares", "cpu.weight"),
    );
    std::fs::write(file_of(&idle, mem_limit), "268435456").unwrap();
    std::fs::write(file_of(&idle, "pids.max"), "50").unwrap();
    // 512 shares; on v2 the weight 20, which reads back as 2 + 19 × 262142 / 9999 = 500 shares.
    std::fs::write(file_of(&idle, shares), pick("512", "20")).unwrap();
    let want_shares = if v2() { 500 } else { 512 };
    s.spawn_into(&busy, &mut burner()).unwrap();
    s.spawn_into(&idle, &mut sleeper()).unwrap();
    s.spawn_into(&idle, &mut sleeper()).unwrap();
    // Let the burner finish its loop so CPU figures are being charged to the cgroup.
    wait_until("the burner to use CPU", || cpu_usage_ns(&busy) > 1_000_000);

    let m = monitor_for(&s);
    assert_eq!(
        m.container_names(),
        vec![
            "/".to_string(),
            s.parent().into(),
            busy.clone(),
            idle.clone()
        ]
    );
    let before_usage = cpu_usage_ns(&busy);
    m.housekeep();
    let after_usage = cpu_usage_ns(&busy);

    let b = m.container(&busy).unwrap().latest().unwrap();
    let cpu = b.cpu.unwrap();
    assert!(
        (before_usage..=after_usage).contains(&cpu.usage_total),
        "cpu usage {before_usage}..={after_usage}, sampled {}",
        cpu.usage_total
    );
    assert_eq!(b.process_count, Some(1));
    assert_eq!(b.pids.unwrap().current, kernel_u64(&busy, "pids.current"));

    let i = m.container(&idle).unwrap().latest().unwrap();
    assert_eq!(i.process_count, Some(2));
    assert_eq!(i.pids.unwrap().current, 2);
    assert_eq!(i.pids.unwrap().max, 50);
    assert_eq!(i.memory.unwrap().limit, 268435456);
    // Memory usage is not monotonic (per-CPU charge batching): compare an on-demand sample
    // with the kernel files when they read the same just before and just after it.
    let mut compared = false;
    for _ in 0..100 {
        let before = (memory_usage(&idle), inactive_file(&idle));
        let s = m.sample_now(&idle).unwrap();
        let after = (memory_usage(&idle), inactive_file(&idle));
        if before == after {
            let mem = s.memory.unwrap();
            assert_eq!(mem.usage, before.0);
            assert_eq!(mem.total_inactive_file, before.1);
            compared = true;
            break;
        }
    }
    assert!(compared, "memory never stable across a sample");
    let mem = m
        .container(&idle)
        .unwrap()
        .latest()
        .unwrap()
        .memory
        .unwrap();
    assert_eq!(
        mem.working_set,
        mem.usage.saturating_sub(mem.total_inactive_file)
    );
    assert_eq!(mem.failcnt, failcnt(&idle));
    let net = i.network.expect("net/dev of the cgroup's process");
    assert!(net.iter().all(|n| n.name.as_str() != "lo"));
    if let Some(u) = layout().unified() {
        if cgroup_dir(u, &idle).join("cpu.pressure").exists() {
            assert!(i.psi.cpu.is_some(), "PSI from the unified hierarchy");
        }
    }

    let spec = m.container(&idle).unwrap().spec();
    assert!(spec.has_cpu && spec.has_memory && spec.has_processes);
    assert_eq!(spec.cpu_shares, want_shares);
    assert_eq!(spec.memory_limit, 268435456);
    assert_eq!(spec.pids_limit, 50);
    assert!(spec.creation_time > 0);

    // Every per-pass cgroup file is kept open and re-read with pread.
    let files = m.container(&idle).unwrap().sampled_files();
    assert!(files.iter().any(|p| p.ends_with("memory.stat")));
    assert!(files.iter().any(|p| p.ends_with("net/dev")));
}

#[test]
fn pread_at_offset_zero_refreshes_kept_files() {
    let Some(mut s) = scratch("it-pread") else {
        return;
    };
    let c = s.add("c").unwrap();
    s.spawn_into(&c, &mut sleeper()).unwrap();
    let mut buf = Vec::new();
    let mut open = |name: &str, file: &str| {
        let f = KeptFile::open(file_of(name, file), true, &mut buf)
            .unwrap()
            .unwrap();
        if file != "cgroup.procs" || layout().v1().is_none() {
            assert_eq!(f.mode(), ReadMode::Pread, "{file} is kept open");
        } else {
            // v1 caches the pid list per open file: reopened on every read instead.
            assert_eq!(f.mode(), ReadMode::Reopen, "{file} is reopened on v1");
        }
        f
    };
    let mut procs = open(&c, "cgroup.procs");
    let mut pids = open(&c, "pids.current");
    let mut usage = open(&c, pick("cpuacct.usage", "cpu.stat"));
    let mut mem = open(&c, pick("memory.usage_in_bytes", "memory.current"));
    let mut stat = open(&c, "memory.stat");
    let read = |f: &mut KeptFile| {
        let mut b = Vec::new();
        f.read(&mut b).unwrap().to_vec()
    };
    let before = [
        read(&mut procs),
        read(&mut pids),
        read(&mut usage),
        read(&mut mem),
        read(&mut stat),
    ];
    // A process that burns CPU and touches memory in the cgroup.
    s.spawn_into(
        &c,
        Command::new("sh").args([
            "-c",
            "sleep 0.2; x=$(head -c 4000000 /dev/zero | tr '\\0' a); i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; exec sleep 600",
        ]),
    )
    .unwrap();
    let usage_before = String::from_utf8(before[3].clone()).unwrap();
    wait_until("the second process to run and allocate", || {
        cpu_usage_ns(&c) > 5_000_000
            && kernel_u64(&c, "pids.current") == 2
            && memory_usage(&c).to_string() != usage_before.trim()
    });
    let after = [
        read(&mut procs),
        read(&mut pids),
        read(&mut usage),
        read(&mut mem),
        read(&mut stat),
    ];
    for (i, file) in [
        "cgroup.procs",
        "pids.current",
        pick("cpuacct.usage", "cpu.stat"),
        pick("memory.usage_in_bytes", "memory.current"),
        "memory.stat",
    ]
    .iter()
    .enumerate()
    {
        assert_ne!(before[i], after[i], "{file} did not refresh on pread at 0");
    }
}

#[test]
fn removed_cgroups_close_their_descriptors_at_once() {
    let Some(mut s) = scratch("it-vanish") else {
        return;
    };
    let a = s.add("a").unwrap();
    let b = s.add("b").unwrap();
    s.spawn_into(&a, &mut sleeper()).unwrap();
    s.spawn_into(&b, &mut sleeper()).unwrap();
    let m = monitor_for(&s);
    m.housekeep();
    let ca = m.container(&a).unwrap();
    let cb = m.container(&b).unwrap();
    assert!(
        ca.kept_fds() >= 10,
        "a dozen files per container, got {}",
        ca.kept_fds()
    );

    // Remove `a` behind the monitor's back; the next pass misses it without error.
    s.remove(&a).unwrap();
    let ev = m.housekeep();
    assert_eq!(ev.vanished, 1);
    assert!(m.container(&a).is_none());
    assert!(ca.is_gone());
    assert_eq!(ca.kept_fds(), 0, "all of a's descriptors closed");
    assert!(cb.latest().is_some());
    assert!(cb.kept_fds() >= 10);

    // Removal seen by inotify closes descriptors before any pass.
    s.remove(&b).unwrap();
    wait_until("inotify to report the removal", || {
        m.apply_events();
        m.container(&b).is_none()
    });
    assert_eq!(cb.kept_fds(), 0);
}

#[test]
fn new_cgroups_are_found_by_inotify() {
    let Some(mut s) = scratch("it-inotify") else {
        return;
    };
    let m = monitor_for(&s);
    let handle = m.start().unwrap();
    let rx = m.subscribe();
    let c = s.add("late").unwrap();
    s.spawn_into(&c, &mut sleeper()).unwrap();
    wait_until("the new cgroup to be sampled", || {
        let _ = rx.recv_timeout(Duration::from_secs(1));
        m.container(&c).and_then(|x| x.latest()).is_some()
    });
    assert_eq!(
        m.container(&c).unwrap().latest().unwrap().process_count,
        Some(1)
    );
    handle.stop();
}

/// Dropping the scratch cgroups also kills what a spawned shell started once it was moved in
/// (its children would
/// otherwise keep the cgroups busy and leave them behind), and removes every directory.
#[test]
fn drop_kills_grandchildren_and_removes_the_cgroups() {
    let Some(mut s) = scratch("drop") else { return };
    let name = s.add("shell").unwrap();
    s.spawn_into(
        &name,
        Command::new("sh")
            .arg("-c")
            .arg("sleep 0.3; sleep 30 & sleep 30; wait"),
    )
    .unwrap();
    let procs = file_of(&name, "cgroup.procs");
    wait_until("the shell's children run in the cgroup", || {
        std::fs::read_to_string(&procs).is_ok_and(|p| p.lines().count() >= 3)
    });
    let dirs: Vec<PathBuf> = s
        .hierarchies()
        .iter()
        .map(|h| cgroup_dir(h, s.parent()))
        .collect();
    let t0 = Instant::now();
    drop(s);
    for d in &dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "drop waited for the sleeps"
    );
}
