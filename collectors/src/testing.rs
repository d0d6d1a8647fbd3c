//! Test and benchmark support: synthetic cgroup/proc trees, and scratch cgroups on the live
//! kernel that are removed (processes killed, directories deleted) when dropped.
//!
//! Public so that integration tests, the benchmark and other crates' tests can build the
//! same fixtures; nothing in the sampling path uses it.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout::{cgroup_dir, CgroupLayout};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!(
        "kubelet-rs-{tag}-{}-{n}-{}",
        std::process::id(),
        crate::sys::now_unix_nanos() % 1_000_000_007
    ))
}

/// Which synthetic layout to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One directory per controller.
    V1,
    /// A single unified hierarchy.
    V2,
    /// v1 controllers plus `unified/` (cgroup2, PSI only).
    Hybrid,
}

/// Values written into a synthetic cgroup's files.
#[derive(Clone, Debug, Default)]
pub struct FixtureCgroup {
    /// CPU usage, ns.
    pub usage_ns: u64,
    /// User CPU, ns (written as USER_HZ ticks on v1, µs on v2).
    pub user_ns: u64,
    /// System CPU, ns.
    pub system_ns: u64,
    /// Throttled periods.
    pub throttled_periods: u64,
    /// Memory usage, bytes.
    pub memory_usage: u64,
    /// Memory limit, bytes (`None`: unlimited).
    pub memory_limit: Option<u64>,
    /// Inactive file pages, bytes.
    pub inactive_file: u64,
    /// Anonymous memory, bytes.
    pub rss: u64,
    /// Tasks.
    pub pids: u64,
    /// Processes in `cgroup.procs`.
    pub procs: Vec<u32>,
    /// `(major, minor, read_bytes, write_bytes)` per device.
    pub io: Vec<(u32, u32, u64, u64)>,
    /// PSI `some` total for cpu/memory/io (written where the layout has PSI).
    pub psi_total: Option<u64>,
}

const V1_CONTROLLERS: [&str; 6] = ["cpu", "cpuacct", "memory", "pids", "blkio", "cpuset"];

/// A synthetic cgroup root (and a synthetic proc root) in a temporary directory, removed on
/// drop.
pub struct FixtureTree {
    root: PathBuf,
    proc_root: PathBuf,
    base: PathBuf,
    layout: Layout,
}

impl FixtureTree {
    /// Builds an empty tree of the given layout, with a root cgroup and a proc root holding
    /// node files (`stat`, `meminfo`, `diskstats`, `net/dev`, `pressure/*`).
    pub fn new(layout: Layout) -> FixtureTree {
        let base = unique_dir("fixture");
        let root = base.join("cgroup");
        let proc_root = base.join("proc");
        fs::create_dir_all(&root).unwrap();
        match layout {
            Layout::V2 => {
                fs::write(root.join("cgroup.controllers"), "cpu io memory pids\n").unwrap();
            }
            Layout::V1 | Layout::Hybrid => {
                for c in V1_CONTROLLERS {
                    fs::create_dir(root.join(c)).unwrap();
                }
                if layout == Layout::Hybrid {
                    fs::create_dir(root.join("unified")).unwrap();
                    fs::write(root.join("unified/cgroup.controllers"), "").unwrap();
                }
            }
        }
        fs::create_dir_all(proc_root.join("net")).unwrap();
        fs::create_dir_all(proc_root.join("pressure")).unwrap();
        fs::write(
            proc_root.join("stat"),
            "cpu  100 0 50 1000 10 0 5 0 0 0\ncpu0 100 0 50 1000 10 0 5 0 0 0\nprocs_running 2\nprocs_blocked 0\n",
        )
        .unwrap();
        fs::write(
            proc_root.join("meminfo"),
            "MemTotal:       4096000 kB\nMemFree:        1024000 kB\nMemAvailable:   2048000 kB\n\
Buffers:          1000 kB\nCached:         500000 kB\nActive(file):   200000 kB\n\
Inactive(file): 300000 kB\nShmem:            100 kB\nSwapTotal:      0 kB\nSwapFree:       0 kB\n",
        )
        .unwrap();
        fs::write(
            proc_root.join("diskstats"),
            " 254       0 vda 10 1 80 5 20 2 160 7 0 12 12 0 0 0 0 0 0\n   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
        )
        .unwrap();
        fs::write(
            proc_root.join("net/dev"),
            net_dev_text(&[("eth0", 1000, 2000)]),
        )
        .unwrap();
        for r in ["cpu", "memory", "io"] {
            fs::write(proc_root.join("pressure").join(r), psi_text(7)).unwrap();
        }
        let t = FixtureTree {
            root,
            proc_root,
            base,
            layout,
        };
        t.add_cgroup("/", &FixtureCgroup::default());
        t
    }

    /// The cgroup root (what `--cgroup-root` would be).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The synthetic proc root (what `--proc-root` would be).
    pub fn proc_root(&self) -> &Path {
        &self.proc_root
    }

    /// The layout built.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    fn v1_dirs(&self, name: &str) -> Vec<(&'static str, PathBuf)> {
        V1_CONTROLLERS
            .iter()
            .map(|c| (*c, cgroup_dir(&self.root.join(c), name)))
            .collect()
    }

    /// Creates (or rewrites) cgroup `name` (`/a/b`) with the given values, in every
    /// hierarchy of the layout. Also writes `<proc>/<pid>/net/dev` for its processes.
    pub fn add_cgroup(&self, name: &str, v: &FixtureCgroup) {
        let procs: String = v.procs.iter().map(|p| format!("{p}\n")).collect();
        let limit = v.memory_limit;
        match self.layout {
            Layout::V1 | Layout::Hybrid => {
                for (c, dir) in self.v1_dirs(name) {
                    fs::create_dir_all(&dir).unwrap();
                    let w = |f: &str, s: String| fs::write(dir.join(f), s).unwrap();
                    w("cgroup.procs", procs.clone());
                    match c {
                        "cpuacct" => {
                            w("cpuacct.usage", format!("{}\n", v.usage_ns));
                            w(
                                "cpuacct.stat",
                                format!(
                                    "user {}\nsystem {}\n",
                                    v.user_ns / 10_000_000,
                                    v.system_ns / 10_000_000
                                ),
                            );
                        }
                        "cpu" => {
                            w(
                                "cpu.stat",
                                format!(
                                    "nr_periods {}\nnr_throttled {}\nthrottled_time 0\n",
                                    v.throttled_periods * 2,
                                    v.throttled_periods
                                ),
                            );
                            w("cpu.shares", "1024\n".into());
                            w("cpu.cfs_quota_us", "-1\n".into());
                            w("cpu.cfs_period_us", "100000\n".into());
                        }
                        "memory" => {
                            w("memory.usage_in_bytes", format!("{}\n", v.memory_usage));
                            w("memory.max_usage_in_bytes", format!("{}\n", v.memory_usage));
                            w(
                                "memory.limit_in_bytes",
                                format!("{}\n", limit.unwrap_or(9223372036854771712)),
                            );
                            w("memory.failcnt", "0\n".into());
                            w(
                                "memory.stat",
                                format!(
                                    "cache 0\nrss {r}\ntotal_cache {i}\ntotal_rss {r}\ntotal_inactive_file {i}\n\
total_active_file 0\ntotal_pgfault 5\ntotal_pgmajfault 1\npgfault 5\npgmajfault 1\n",
                                    r = v.rss,
                                    i = v.inactive_file
                                ),
                            );
                        }
                        "pids" if name != "/" => {
                            w("pids.current", format!("{}\n", v.pids));
                            w("pids.max", "max\n".into());
                        }
                        "blkio" => {
                            let mut b = String::new();
                            let mut o = String::new();
                            for (ma, mi, r, wr) in &v.io {
                                b.push_str(&format!("{ma}:{mi} Read {r}\n{ma}:{mi} Write {wr}\n{ma}:{mi} Total {}\n", r + wr));
                                o.push_str(&format!(
                                    "{ma}:{mi} Read 1\n{ma}:{mi} Write 1\n{ma}:{mi} Total 2\n"
                                ));
                            }
                            b.push_str("Total 0\n");
                            o.push_str("Total 0\n");
                            w("blkio.throttle.io_service_bytes", b);
                            w("blkio.throttle.io_serviced", o);
                        }
                        "cpuset" => w("cpuset.cpus", "0-1\n".into()),
                        _ => {}
                    }
                }
                if self.layout == Layout::Hybrid {
                    let dir = cgroup_dir(&self.root.join("unified"), name);
                    fs::create_dir_all(&dir).unwrap();
                    fs::write(dir.join("cgroup.procs"), &procs).unwrap();
                    if let Some(t) = v.psi_total {
                        for r in ["cpu", "memory", "io"] {
                            fs::write(dir.join(format!("{r}.pressure")), psi_text(t)).unwrap();
                        }
                    }
                }
            }
            Layout::V2 => {
                let dir = cgroup_dir(&self.root, name);
                fs::create_dir_all(&dir).unwrap();
                let w = |f: &str, s: String| fs::write(dir.join(f), s).unwrap();
                w("cgroup.procs", procs);
                w(
                    "cpu.stat",
                    format!(
                        "usage_usec {}\nuser_usec {}\nsystem_usec {}\nnr_periods {}\nnr_throttled {}\nthrottled_usec 0\n",
                        v.usage_ns / 1000,
                        v.user_ns / 1000,
                        v.system_ns / 1000,
                        v.throttled_periods * 2,
                        v.throttled_periods
                    ),
                );
                if name != "/" {
                    w("cpu.weight", "100\n".into());
                    w("cpu.max", "max 100000\n".into());
                    w("memory.current", format!("{}\n", v.memory_usage));
                    w("memory.peak", format!("{}\n", v.memory_usage));
                    w(
                        "memory.max",
                        limit.map_or("max\n".into(), |l| format!("{l}\n")),
                    );
                    w(
                        "memory.events",
                        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n".into(),
                    );
                    w("memory.swap.current", "0\n".into());
                    w("pids.current", format!("{}\n", v.pids));
                    w("pids.max", "max\n".into());
                }
                w(
                    "memory.stat",
                    format!(
                        "anon {}\nfile {i}\ninactive_file {i}\nactive_file 0\npgfault 5\npgmajfault 1\n",
                        v.rss,
                        i = v.inactive_file
                    ),
                );
                let io: String = v
                    .io
                    .iter()
                    .map(|(ma, mi, r, wr)| {
                        format!("{ma}:{mi} rbytes={r} wbytes={wr} rios=1 wios=1 dbytes=0 dios=0\n")
                    })
                    .collect();
                w("io.stat", io);
                if let Some(t) = v.psi_total {
                    for r in ["cpu", "memory", "io"] {
                        w(&format!("{r}.pressure"), psi_text(t));
                    }
                }
            }
        }
        for p in &v.procs {
            let d = self.proc_root.join(p.to_string()).join("net");
            fs::create_dir_all(&d).unwrap();
            fs::write(
                d.join("dev"),
                net_dev_text(&[("eth0", 10, 20), ("lo", 5, 5)]),
            )
            .unwrap();
        }
    }

    /// Removes cgroup `name` from every hierarchy (children first).
    pub fn remove_cgroup(&self, name: &str) {
        let mut dirs: Vec<PathBuf> = match self.layout {
            Layout::V2 => vec![cgroup_dir(&self.root, name)],
            _ => self.v1_dirs(name).into_iter().map(|(_, d)| d).collect(),
        };
        if self.layout == Layout::Hybrid {
            dirs.push(cgroup_dir(&self.root.join("unified"), name));
        }
        for d in dirs {
            let _ = fs::remove_dir_all(d);
        }
    }

    /// Overwrites one file of cgroup `name` in `controller` (`""` on v2).
    pub fn write_file(&self, controller: &str, name: &str, file: &str, content: &str) {
        let h = if controller.is_empty() {
            self.root.clone()
        } else {
            self.root.join(controller)
        };
        fs::write(cgroup_dir(&h, name).join(file), content).unwrap();
    }
}

impl Drop for FixtureTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// A `/proc/net/dev` text with the given `(name, rx_bytes, tx_bytes)` interfaces.
pub fn net_dev_text(ifaces: &[(&str, u64, u64)]) -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n \
face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for (n, rx, tx) in ifaces {
        s.push_str(&format!("{n:>6}: {rx} 1 0 0 0 0 0 0 {tx} 2 0 0 0 0 0 0\n"));
    }
    s
}

/// A PSI file text whose `some` total is `total` and `full` total `total / 2`.
pub fn psi_text(total: u64) -> String {
    format!(
        "some avg10=0.50 avg60=0.25 avg300=0.10 total={total}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total={}\n",
        total / 2
    )
}

/// Whether live tests must run rather than skip: in CI (`CI` set to anything but `false`) and
/// under `scripts/test` (`KUBELET_RS_MONITORING_TOOLS=required`).
pub fn live_tests_required() -> bool {
    std::env::var("KUBELET_RS_MONITORING_TOOLS").is_ok_and(|v| v == "required")
        || std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false")
}

/// Scratch cgroups on the live kernel under a test-owned parent
/// (`<hierarchy>/kubelet-rs-<tag>-<pid>` in every hierarchy of the layout), with processes in
/// them. Dropping it kills the processes and removes every directory it created, deepest
/// first, whatever happened before.
pub struct ScratchCgroups {
    hierarchies: Vec<PathBuf>,
    parent: String,
    created: Vec<String>,
    children: Vec<(String, Child)>,
}

impl ScratchCgroups {
    /// Creates the parent cgroup, or says why it cannot (not root, no cgroup hierarchy, no
    /// write access): callers print `skipped: <reason>` and return.
    pub fn new(cgroup_root: &Path, tag: &str) -> Result<ScratchCgroups, String> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err("not running as root".into());
        }
        let layout = CgroupLayout::detect(cgroup_root).map_err(|e| e.to_string())?;
        let mut hierarchies = layout.discovery_roots();
        if let CgroupLayout::Hybrid(_, u) = &layout {
            hierarchies.push(u.clone());
        }
        let mut s = ScratchCgroups {
            hierarchies,
            parent: format!("/kubelet-rs-{tag}-{}", std::process::id()),
            created: Vec::new(),
            children: Vec::new(),
        };
        let parent = s.parent.clone();
        s.mkdir(&parent).map_err(|e| {
            format!(
                "cannot create cgroup {parent} under {}: {e}",
                cgroup_root.display()
            )
        })?;
        Ok(s)
    }

    /// [`ScratchCgroups::new`] for live tests: when scratch cgroups cannot be made, a loud skip
    /// (`None`) on a developer's machine, but a failure where the live tests are required: in
    /// CI (`CI` set) and under `scripts/test` (`KUBELET_RS_MONITORING_TOOLS=required`), so that a
    /// test can never pass there by skipping.
    pub fn new_or_skip(cgroup_root: &Path, tag: &str) -> Option<ScratchCgroups> {
        match ScratchCgroups::new(cgroup_root, tag) {
            Ok(s) => Some(s),
            Err(reason) => {
                assert!(
                    !live_tests_required(),
                    "cannot create scratch cgroups although live tests are required \
                     (KUBELET_RS_MONITORING_TOOLS=required or CI is set): {reason}"
                );
                eprintln!("skipped: {reason}");
                None
            }
        }
    }

    /// The parent's name (`/kubelet-rs-<tag>-<pid>`).
    pub fn parent(&self) -> &str {
        &self.parent
    }

    /// The hierarchy directories in use.
    pub fn hierarchies(&self) -> &[PathBuf] {
        &self.hierarchies
    }

    fn mkdir(&mut self, name: &str) -> io::Result<()> {
        for h in &self.hierarchies {
            let dir = cgroup_dir(h, name);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            // A v1 cpuset cgroup starts with no CPUs and no memory nodes and refuses tasks
            // (ENOSPC) until both are set: inherit the parent's.
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let own = dir.join(f);
                if fs::read_to_string(&own).is_ok_and(|v| v.trim().is_empty()) {
                    if let Some(parent) = dir.parent() {
                        if let Ok(v) = fs::read_to_string(parent.join(f)) {
                            fs::write(&own, v.trim())?;
                        }
                    }
                }
            }
        }
        self.created.push(name.to_string());
        Ok(())
    }

    /// Creates child cgroup `leaf` of the parent; returns its full name.
    pub fn add(&mut self, leaf: &str) -> io::Result<String> {
        let name = format!("{}/{leaf}", self.parent);
        self.mkdir(&name)?;
        Ok(name)
    }

    /// Moves process `pid` into cgroup `name` in every hierarchy.
    pub fn attach(&self, name: &str, pid: u32) -> io::Result<()> {
        for h in &self.hierarchies {
            fs::write(cgroup_dir(h, name).join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Spawns `cmd` (stdio to /dev/null) and moves it into cgroup `name`; returns its pid.
    /// The process is killed when this value drops or [`ScratchCgroups::remove`] runs.
    pub fn spawn_into(&mut self, name: &str, cmd: &mut Command) -> io::Result<u32> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        self.children.push((name.to_string(), child));
        self.attach(name, pid)?;
        Ok(pid)
    }

    /// Kills the processes spawned into `name` and removes the cgroup.
    pub fn remove(&mut self, name: &str) -> io::Result<()> {
        let mut i = 0;
        while i < self.children.len() {
            if self.children[i].0 == name {
                let (_, mut c) = self.children.swap_remove(i);
                let _ = c.kill();
                let _ = c.wait();
            } else {
                i += 1;
            }
        }
        self.kill_all_in(name);
        let mut result = Ok(());
        for h in &self.hierarchies {
            if let Err(e) = rmdir_retry(&cgroup_dir(h, name)) {
                result = Err(e);
            }
        }
        self.created.retain(|n| n != name);
        result
    }

    /// Kills every process left in cgroup `name`: what a spawned shell started lives on when
    /// only the shell is killed, and would keep the cgroup busy.
    fn kill_all_in(&self, name: &str) {
        for h in &self.hierarchies {
            let Ok(procs) = fs::read_to_string(cgroup_dir(h, name).join("cgroup.procs")) else {
                continue;
            };
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill has no memory-safety preconditions; the pid is in a cgroup this
                // test created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

fn rmdir_retry(dir: &Path) -> io::Result<()> {
    let mut last = Ok(());
    for _ in 0..50 {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // EBUSY while the killed tasks are still being reaped.
            Err(e) => last = Err(e),
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    last
}

impl Drop for ScratchCgroups {
    fn drop(&mut self) {
        for (_, c) in &mut self.children {
            let _ = c.kill();
        }
        for (_, c) in &mut self.children {
            let _ = c.wait();
        }
        // Deepest first.
        self.created
            .sort_by_key(|n| std::cmp::Reverse(n.matches('/').count()));
        for name in std::mem::take(&mut self.created) {
            self.kill_all_in(&name);
            for h in &self.hierarchies {
                if let Err(e) = rmdir_retry(&cgroup_dir(h, &name)) {
                    eprintln!(
                        "warning: could not remove {}: {e}",
                        cgroup_dir(h, &name).display()
                    );
                }
            }
        }
    }
}
