//! Resource-pressure benchmark: how fast a memory hog is stopped once it crosses the eviction
//! threshold, and how often the kernel OOM killer gets it first — kubelet-rs's fast path
//! (memcg threshold notifications + the collector's passes) against a 10-second polling mode
//! that mimics the kubelet (`KUBELET_RS_EVICTION_REACTION=polling`), in the same run.
//!
//! Each mode runs its own `kubelet-rs` against the real containerd (`scripts/runtime up`), with
//! its cgroup root capped at `--budget-mib` (1 GiB): that cgroup is the node's memory for the
//! eviction manager, and the only place the kernel OOM killer can strike — the machine's own
//! memory is never at stake. The agent evicts at `memory.available<--headroom-mib` (256 MiB).
//! Each repetition starts a BestEffort pod (`restartPolicy: Never`) whose `tail` holds an
//! ever-growing line fed in `--chunk-mib` chunks every `--pause-ms`, and measures:
//!
//! - **crossing**: the benchmark's own memcg usage-threshold eventfd on the capped cgroup,
//!   armed at `budget - headroom + inactive_file` (the usage at which the working set reaches
//!   the threshold) — the kernel signals it at the crossing, independently of the agent;
//! - **termination**: the hog's `tail` process exiting, through a pidfd;
//! - **kernel OOM first**: whether `/dev/kmsg` reported an OOM kill of the hog.
//!
//! It reports, per mode, the crossing-to-termination time (p50, p99 by nearest rank: with fewer
//! than 100 repetitions p99 is the slowest one), how many hogs were evicted and how many the
//! kernel OOM-killed first, and the hog's measured growth rate. Needs root and the runtime;
//! prints `skipped: <reason>` otherwise. Agents, pods, cgroups and log directories are removed
//! at the end, on error and on Ctrl-C.
//!
//! Run (release build recommended; use your own target directory if others build):
//! `cargo bench --bench pressure -- --reps 10`
//! Options: `--reps 10` `--modes fast,polling` `--budget-mib 1024` `--headroom-mib 256`
//! `--chunk-mib 32` `--pause-ms 20`.

#[path = "../tests/common/mod.rs"]
mod common;

#[path = "support/interrupt.rs"]
mod interrupt;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam::channel;
use managers::eviction::notifier::{Backend, MemoryNotifier, Target};
use managers::oom::{OomEvent, OomSink, OomWatcher};
use parking_lot::Mutex;
use serde_json::Value;

const MIB: u64 = 1 << 20;
const MEMCG: &str = "/sys/fs/cgroup/memory";

#[derive(Debug, Clone)]
struct Args {
    reps: usize,
    modes: Vec<String>,
    budget_mib: u64,
    headroom_mib: u64,
    chunk_mib: u64,
    pause_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        reps: 10,
        modes: vec!["fast".into(), "polling".into()],
        budget_mib: 1024,
        headroom_mib: 256,
        chunk_mib: 32,
        pause_ms: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |s: String, name: &str| {
            s.parse::<u64>()
                .map_err(|_| format!("{name}: expected a number, got {s:?}"))
        };
        match arg.as_str() {
            "--reps" => a.reps = num(val("--reps")?, "--reps")? as usize,
            "--modes" => a.modes = val("--modes")?.split(',').map(str::to_string).collect(),
            "--budget-mib" => a.budget_mib = num(val("--budget-mib")?, "--budget-mib")?,
            "--headroom-mib" => a.headroom_mib = num(val("--headroom-mib")?, "--headroom-mib")?,
            "--chunk-mib" => a.chunk_mib = num(val("--chunk-mib")?, "--chunk-mib")?,
            "--pause-ms" => a.pause_ms = num(val("--pause-ms")?, "--pause-ms")?,
            "--bench" => {}
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    if a.headroom_mib >= a.budget_mib || a.reps == 0 {
        return Err("need --reps >= 1 and --headroom-mib < --budget-mib".into());
    }
    if a.modes.iter().any(|m| m != "fast" && m != "polling") {
        return Err("--modes: fast and/or polling".into());
    }
    Ok(a)
}

/// One agent under test; killed and cleaned up when dropped.
struct Agent {
    child: Option<Child>,
    node: String,
    cgroup_root: String,
    manifests: PathBuf,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start(mode: &str, headroom_mib: u64) -> Result<Agent, String> {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-rs-pressure-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let node = common::unique(&format!("pressure-{mode}"));
        let manifests = dir.path().join("manifests");
        std::fs::create_dir_all(&manifests).map_err(|e| e.to_string())?;
        let port = common::free_port();
        let log = std::fs::File::create(dir.path().join("agent.log")).map_err(|e| e.to_string())?;
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args([
                "--hostname-override",
                &node,
                "--pod-manifest-path",
                manifests.to_str().unwrap(),
                "--root-dir",
                dir.path().join("root").to_str().unwrap(),
                "--cgroup-root",
                &format!("/{node}"),
                "--read-only-port",
                &port.to_string(),
                "--healthz-port",
                &common::free_port().to_string(),
                "--address",
                "127.0.0.1",
                "--port",
                &common::free_port().to_string(),
                "--cadvisor-port",
                "0",
                "--file-check-frequency",
                "1s",
                "--eviction-hard",
                &format!("memory.available<{headroom_mib}Mi"),
                "--eviction-pressure-transition-period",
                "1s",
            ])
            .env("KUBELET_RS_EVICTION_REACTION", mode)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start kubelet-rs: {e}"))?;
        let a = Agent {
            child: Some(child),
            cgroup_root: format!("/{node}"),
            node,
            manifests,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !common::http_get(port, "/pods").is_ok_and(|r| r.0 == 200) {
            interrupt::check()?;
            if Instant::now() > deadline {
                return Err(format!("the {mode} agent did not come up"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(a)
    }

    fn memcg(&self) -> PathBuf {
        Path::new(MEMCG).join(self.cgroup_root.trim_start_matches('/'))
    }

    fn under_memory_pressure(&self) -> bool {
        common::http_get(self.port, "/node/conditions")
            .ok()
            .and_then(|(_, b)| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| {
                v.as_array()?
                    .iter()
                    .find(|c| c["type"] == "MemoryPressure")
                    .map(|c| c["status"] == "True")
            })
            .unwrap_or(true)
    }

    fn pod(&self, name: &str) -> Option<Value> {
        let (_, body) = common::http_get(self.port, "/pods").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let full = format!("{name}-{}", self.node);
        v["items"]
            .as_array()?
            .iter()
            .find(|p| p["metadata"]["name"] == full.as_str())
            .cloned()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        common::cleanup_node(&self.node, &self.cgroup_root);
    }
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn inactive_file(memcg: &Path) -> u64 {
    std::fs::read_to_string(memcg.join("memory.stat"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("total_inactive_file ")
                    .and_then(|v| v.trim().parse().ok())
            })
        })
        .unwrap_or(0)
}

/// The pids of `comm` anywhere under cgroup directory `dir`.
fn pids_named(dir: &Path, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            for pid in s.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
                if std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == comm)
                {
                    out.push(pid);
                }
            }
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(
                rd.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    out
}

/// Waits (in a thread) for process `pid` to exit; sends the time it did.
fn watch_exit(pid: u32) -> Result<channel::Receiver<Instant>, String> {
    // SAFETY: pidfd_open takes a pid and flags, no pointers; a non-negative result is a new
    // descriptor that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(format!(
            "pidfd_open({pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: fd was just returned by pidfd_open and nothing else owns it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let (tx, rx) = channel::bounded(1);
    std::thread::spawn(move || {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut p, 1, 200) };
            if rc > 0 {
                let _ = tx.send(Instant::now());
                return;
            }
            if interrupt::interrupted()
                || (rc < 0
                    && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted)
            {
                return;
            }
        }
    });
    Ok(rx)
}

/// OOM kills seen in the kernel log.
struct Ooms(Mutex<Vec<(OomEvent, Instant)>>);

impl OomSink for Ooms {
    fn oom(&self, event: &OomEvent, _at: SystemTime) {
        self.0.lock().push((event.clone(), Instant::now()));
    }
}

#[derive(Debug, Default)]
struct Rep {
    latency: Option<Duration>,
    evicted: bool,
    oom_first: bool,
    growth_mib_s: Option<f64>,
}

fn hog_manifest(name: &str, chunk_mib: u64, pause_ms: u64) -> String {
    let cmd = format!(
        "while :; do head -c {} /dev/zero; usleep {}; done | tail -n 1",
        chunk_mib * MIB,
        pause_ms * 1000
    );
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: hog\n    image: {}\n    command: [\"sh\", \"-c\", {}]\n",
        common::BUSYBOX,
        serde_json::to_string(&cmd).unwrap()
    )
}

fn one_rep(a: &Agent, args: &Args, i: usize, ooms: &Ooms) -> Result<Rep, String> {
    let name = format!("hog-{i}");
    let memcg = a.memcg();
    let budget = args.budget_mib * MIB;
    let threshold = budget - args.headroom_mib * MIB + inactive_file(&memcg);
    let (wake_tx, wake_rx) = channel::bounded(1);
    let mut notifier = MemoryNotifier::new(Backend::V1, Path::new("/proc"), wake_tx);
    notifier
        .arm(
            Target {
                dir: memcg.clone(),
                usage_threshold: threshold,
            },
            0,
        )
        .map_err(|e| e.to_string())?;
    let ooms_before = ooms.0.lock().len();
    std::fs::write(
        a.manifests.join(format!("{name}.yaml")),
        hog_manifest(&name, args.chunk_mib, args.pause_ms),
    )
    .map_err(|e| e.to_string())?;
    // The hog's `tail`, as soon as it runs.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (pid, started, usage0) = loop {
        interrupt::check()?;
        if let Some(uid) = a
            .pod(&name)
            .and_then(|p| p["metadata"]["uid"].as_str().map(str::to_string))
        {
            if let Some(pid) = ["besteffort", "burstable", ""]
                .iter()
                .flat_map(|q| {
                    pids_named(
                        &memcg.join("kubepods").join(q).join(format!("pod{uid}")),
                        "tail",
                    )
                })
                .next()
            {
                break (
                    pid,
                    Instant::now(),
                    read_u64(&memcg.join("memory.usage_in_bytes")).unwrap_or(0),
                );
            }
        }
        if Instant::now() > deadline {
            let status = a
                .pod(&name)
                .map(|p| p["status"].to_string())
                .unwrap_or_default();
            return Err(format!("{name} did not start: {status}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let exited = watch_exit(pid)?;
    let mut rep = Rep::default();
    // The crossing (upward), or the hog's end if it never crossed.
    let crossed = channel::select! {
        recv(wake_rx) -> _ => Some(Instant::now()),
        recv(exited) -> _ => None,
        recv(channel::after(Duration::from_secs(120))) -> _ => None,
    };
    let Some(crossed) = crossed else {
        return Err(format!("{name}: no threshold crossing observed"));
    };
    let usage_at = read_u64(&memcg.join("memory.usage_in_bytes")).unwrap_or(0);
    let grown = usage_at.saturating_sub(usage0) as f64 / MIB as f64;
    let secs = crossed.duration_since(started).as_secs_f64();
    if secs > 0.0 {
        rep.growth_mib_s = Some(grown / secs);
    }
    let ended = exited
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| format!("{name}: the hog never stopped"))?;
    rep.latency = Some(ended.saturating_duration_since(crossed));
    drop(notifier);
    // Give the kernel log and the agent a moment to report.
    std::thread::sleep(Duration::from_millis(300));
    rep.oom_first = ooms.0.lock()[ooms_before..]
        .iter()
        .any(|(e, _)| e.pid == pid || e.container.contains(&a.cgroup_root));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = a.pod(&name);
        let phase = p.as_ref().map(|p| p["status"]["phase"].clone());
        if phase
            .as_ref()
            .is_some_and(|ph| ph == "Failed" || ph == "Succeeded")
            || Instant::now() > deadline
        {
            rep.evicted = p.is_some_and(|p| p["status"]["reason"] == "Evicted");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Clean up: the pod goes, its memory with it, and the node's MemoryPressure (which would
    // refuse the next BestEffort hog) clears — in polling mode only at the next 10 s pass.
    let _ = std::fs::remove_file(a.manifests.join(format!("{name}.yaml")));
    let deadline = Instant::now() + Duration::from_secs(60);
    while a.pod(&name).is_some()
        || read_u64(&memcg.join("memory.usage_in_bytes")).unwrap_or(0) > budget / 4
        || a.under_memory_pressure()
    {
        interrupt::check()?;
        if Instant::now() > deadline {
            return Err(format!("{name} was not cleaned up"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(rep)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn run_mode(mode: &str, args: &Args, ooms: &Ooms) -> Result<Vec<Rep>, String> {
    let a = Agent::start(mode, args.headroom_mib)?;
    // Cap the agent's cgroup root: the node's memory for the eviction manager, and the only
    // place the kernel OOM killer can act.
    std::fs::write(
        a.memcg().join("memory.limit_in_bytes"),
        (args.budget_mib * MIB).to_string(),
    )
    .map_err(|e| format!("cannot cap {}: {e}", a.memcg().display()))?;
    // Let the agent see the cap and arm its notification on it.
    std::thread::sleep(Duration::from_secs(3));
    let mut reps = Vec::new();
    for i in 0..args.reps {
        interrupt::check()?;
        let r = one_rep(&a, args, i, ooms)?;
        eprintln!(
            "  {mode:>7} rep {:>2}: {:>8.1} ms  {}  growth {:.0} MiB/s",
            i + 1,
            r.latency.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0),
            if r.oom_first {
                "kernel OOM kill"
            } else if r.evicted {
                "evicted"
            } else {
                "other"
            },
            r.growth_mib_s.unwrap_or(f64::NAN)
        );
        reps.push(r);
    }
    Ok(reps)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pressure: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root (cgroups, /dev/kmsg, the runtime)");
        return;
    }
    if !Path::new(common::CONTAINERD_SOCK).exists() {
        println!(
            "skipped: containerd is not running at {}: run `scripts/runtime up`",
            common::CONTAINERD_SOCK
        );
        return;
    }
    if !Path::new(MEMCG).join("memory.limit_in_bytes").exists() {
        println!("skipped: needs the cgroup v1 memory controller at {MEMCG}");
        return;
    }
    interrupt::install_signal_handlers();
    let ooms = Arc::new(Ooms(Mutex::new(Vec::new())));
    let _watcher = match OomWatcher::start(Path::new("/dev/kmsg"), false, ooms.clone()) {
        Ok(w) => w,
        Err(e) => {
            println!("skipped: {e}");
            return;
        }
    };
    println!(
        "pressure: {} reps per mode; node budget {} MiB, evict at memory.available<{} MiB; hog: {} MiB chunks every {} ms",
        args.reps, args.budget_mib, args.headroom_mib, args.chunk_mib, args.pause_ms
    );
    let mut results = Vec::new();
    for mode in &args.modes {
        match run_mode(mode, &args, &ooms) {
            Ok(r) => results.push((mode.clone(), r)),
            Err(e) => {
                eprintln!("pressure: {mode}: {e}");
                std::process::exit(1);
            }
        }
    }
    println!();
    println!(
        "{:>8} {:>5} {:>8} {:>17} {:>10} {:>10} {:>10} {:>18} {:>14}",
        "mode",
        "reps",
        "evicted",
        "kernel OOM first",
        "p50 ms",
        "p99 ms",
        "max ms",
        "p99 evicted-only",
        "growth MiB/s"
    );
    for (mode, reps) in &results {
        let mut lat: Vec<Duration> = reps.iter().filter_map(|r| r.latency).collect();
        lat.sort();
        // The same latency over the reps the agent itself stopped (evicted, no kernel OOM kill
        // first), so a fast kernel kill cannot flatter the agent's figure.
        let mut lat_evicted: Vec<Duration> = reps
            .iter()
            .filter(|r| r.evicted && !r.oom_first)
            .filter_map(|r| r.latency)
            .collect();
        lat_evicted.sort();
        let growth: Vec<f64> = reps.iter().filter_map(|r| r.growth_mib_s).collect();
        let g = if growth.is_empty() {
            f64::NAN
        } else {
            growth.iter().sum::<f64>() / growth.len() as f64
        };
        println!(
            "{:>8} {:>5} {:>8} {:>17} {:>10.1} {:>10.1} {:>10.1} {:>18.1} {:>14.0}",
            mode,
            reps.len(),
            reps.iter().filter(|r| r.evicted).count(),
            reps.iter().filter(|r| r.oom_first).count(),
            percentile(&lat, 50.0).as_secs_f64() * 1000.0,
            percentile(&lat, 99.0).as_secs_f64() * 1000.0,
            lat.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
            percentile(&lat_evicted, 99.0).as_secs_f64() * 1000.0,
            g
        );
    }
}
