//! Hollow-node scale benchmark (issue 4, benchmark (a)): N static pods (default 110, the
//! default `--max-pods`) on the in-process fake CRI runtime with zero latency.
//!
//! One process holds the whole agent (`agent::start_with`, its multi-threaded tokio runtime
//! with one worker per CPU as in `main`) and the fake runtime, which is served from its own
//! thread with its own single-threaded runtime so that its CPU time can be measured apart
//! (`pthread_getcpuclockid`). The bench's own thread (writing manifests, polling the status
//! manager every 5 ms) is measured with `CLOCK_THREAD_CPUTIME_ID`. So:
//!
//! - process CPU = `getrusage(RUSAGE_SELF)` user + system, every thread;
//! - fake CPU = the fake's thread: its gRPC server, HTTP/2, protobuf and bookkeeping;
//! - agent CPU = process − fake − bench thread: the agent's runtime workers and blocking
//!   threads, including the agent's side of gRPC (client encode/decode, HTTP/2) and the file
//!   source's manifest scans. Allocator and kernel work is charged to whichever thread did it.
//!
//! Reported: time from writing the manifests (atomically, one rename each) until the status
//! manager shows every pod Running with its container running; the CPU of each part in that
//! window; the CRI calls the agent made; then the settling after it: the status manager shows a
//! pod Running as soon as the sync that started it returns, but the PLEG reports the start only
//! at its next relist (up to 1 s later), and that report wakes the pod's worker for one more
//! sync (PodSandboxStatus, ListPodSandbox, ListContainers, ContainerStatus), so the bench waits
//! until a relist period passes with no PodSandboxStatus call and reports those calls apart;
//! then the steady-state CPU per second over a window (PLEG relist every 1 s, housekeeping every
//! 2 s, runtime status every 5 s; pod resyncs every `--sync-frequency`, 1 m by default, so a
//! window shorter than that sees none).
//!
//! Logging: by default the agent logs at the binary's default level (`info`) into a sink, so
//! the cost of formatting log lines is included and the cost of writing them is not;
//! `--log off` installs no subscriber.
//!
//! Run: `cargo bench --bench hollow_pods` (use your own `CARGO_TARGET_DIR` if others build).
//! Options (after `--`): `--pods 110` `--steady-secs 10` `--latency-ms 0` (every CRI call)
//! `--log info|off` `--dir /dev/shm` (where the node's directory goes; tmpfs by default, see
//! `default_dir`).

#[path = "support/hollow.rs"]
mod hollow;

use std::time::{Duration, Instant};

use kubelet_rs::fakeruntime::{
    current_thread_cpu_time, pod_manifest, pod_running, HollowConfig, HollowNode, Op,
};

const IMAGE: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";
const POLL: Duration = Duration::from_millis(5);
const TIMEOUT: Duration = Duration::from_secs(300);
/// No PodSandboxStatus call for this long (more than a relist period) ends the settling.
const SETTLE_QUIET: Duration = Duration::from_millis(1500);

struct Args {
    pods: usize,
    steady_secs: u64,
    latency_ms: u64,
    log: bool,
    /// Where the node's directory is made (fixture cgroups, manifests, pod dirs, logs).
    dir: std::path::PathBuf,
}

/// tmpfs when there is one: the fixture tree stands in for cgroupfs, which lives in memory, and
/// a disk filesystem shared with other work would add its journal and inode allocator to the
/// agent's CPU time (measured: up to half of it on this machine's loaded ext4).
fn default_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pods: 110,
        steady_secs: 10,
        latency_ms: 0,
        log: true,
        dir: default_dir(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--pods" => a.pods = hollow::parse_num("--pods", &value("--pods")?)?,
            "--steady-secs" => {
                a.steady_secs = hollow::parse_num("--steady-secs", &value("--steady-secs")?)?
            }
            "--latency-ms" => {
                a.latency_ms = hollow::parse_num("--latency-ms", &value("--latency-ms")?)?
            }
            "--log" => a.log = hollow::parse_log(&value("--log")?)?,
            "--dir" => a.dir = value("--dir")?.into(),
            // cargo bench passes --bench; ignore it and any other harness flag.
            _ => {}
        }
    }
    if a.pods == 0 {
        return Err("--pods must be at least 1".into());
    }
    Ok(a)
}

/// CPU split at one instant.
#[derive(Clone, Copy)]
struct Cpu {
    process: Duration,
    fake: Duration,
    bench: Duration,
}

impl Cpu {
    fn now(node: &HollowNode) -> Self {
        Self {
            process: hollow::process_cpu(),
            fake: node.fake_cpu_time(),
            bench: current_thread_cpu_time(),
        }
    }

    fn since(self, before: Cpu) -> Split {
        let process = self.process.saturating_sub(before.process);
        let fake = self.fake.saturating_sub(before.fake);
        let bench = self.bench.saturating_sub(before.bench);
        Split {
            process,
            fake,
            bench,
            agent: process.saturating_sub(fake).saturating_sub(bench),
        }
    }
}

struct Split {
    process: Duration,
    fake: Duration,
    bench: Duration,
    agent: Duration,
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn running_count(node: &HollowNode) -> usize {
    node.agent
        .kubelet
        .status
        .pods()
        .iter()
        .filter(|p| pod_running(p))
        .count()
}

async fn run(args: &Args, base: &std::path::Path) -> Result<(), String> {
    let node = HollowNode::start(
        base,
        HollowConfig {
            node_name: "hollow-bench".into(),
            extra_flags: vec!["--max-pods".into(), args.pods.max(110).to_string()],
            fake_on_own_thread: true,
            preload_images: vec![IMAGE.into()],
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    if args.latency_ms > 0 {
        node.fake
            .set_latency_all(Duration::from_millis(args.latency_ms));
    }
    // Let start-up settle: the first relist and the file source's first (empty) scan.
    let lists = node.fake.calls(Op::ListContainers);
    while node.fake.calls(Op::ListContainers) < lists + 2 {
        tokio::time::sleep(POLL).await;
    }
    let manifests: Vec<(String, String)> = (0..args.pods)
        .map(|i| {
            let name = format!("pod-{i:04}");
            (
                format!("{name}.yaml"),
                pod_manifest(&name, "Always", &[("main", IMAGE)]),
            )
        })
        .collect();
    let calls_before: Vec<u64> = Op::ALL.iter().map(|op| node.fake.calls(*op)).collect();

    // ---- start: write every manifest, wait until every pod runs ----
    let cpu0 = Cpu::now(&node);
    let t0 = Instant::now();
    for (file, content) in &manifests {
        node.write_manifest(file, content)
            .map_err(|e| format!("{file}: {e}"))?;
    }
    let written = t0.elapsed();
    let mut first_running = None;
    loop {
        let n = running_count(&node);
        if n > 0 && first_running.is_none() {
            first_running = Some(t0.elapsed());
        }
        if n == args.pods {
            break;
        }
        if t0.elapsed() > TIMEOUT {
            return Err(format!(
                "only {n}/{} pods Running after {TIMEOUT:?}",
                args.pods
            ));
        }
        tokio::time::sleep(POLL).await;
    }
    let all_running = t0.elapsed();
    let start = Cpu::now(&node).since(cpu0);
    let calls: Vec<(Op, u64)> = Op::ALL
        .iter()
        .zip(&calls_before)
        .map(|(op, before)| (*op, node.fake.calls(*op) - before))
        .filter(|(_, n)| *n > 0)
        .collect();

    // ---- settling: the PLEG reports the starts, each pod's worker syncs once more ----
    let settle_before: Vec<u64> = Op::ALL.iter().map(|op| node.fake.calls(*op)).collect();
    let t_settle = Instant::now();
    let mut quiet_since = (Instant::now(), node.fake.calls(Op::PodSandboxStatus));
    loop {
        let n = node.fake.calls(Op::PodSandboxStatus);
        if n != quiet_since.1 {
            quiet_since = (Instant::now(), n);
        } else if quiet_since.0.elapsed() > SETTLE_QUIET {
            break;
        }
        if t_settle.elapsed() > TIMEOUT {
            return Err(format!("pod syncs still running after {TIMEOUT:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
    let settled = t_settle.elapsed();
    let settle_calls: Vec<(Op, u64)> = Op::ALL
        .iter()
        .zip(&settle_before)
        .map(|(op, before)| (*op, node.fake.calls(*op) - before))
        .filter(|(_, n)| *n > 0)
        .collect();

    // ---- steady state ----
    let cpu1 = Cpu::now(&node);
    let steady_before: Vec<u64> = Op::ALL.iter().map(|op| node.fake.calls(*op)).collect();
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.steady_secs)).await;
    let window = t1.elapsed();
    let steady_calls: Vec<(Op, u64)> = Op::ALL
        .iter()
        .zip(&steady_before)
        .map(|(op, before)| (*op, node.fake.calls(*op) - before))
        .filter(|(_, n)| *n > 0)
        .collect();
    let steady = Cpu::now(&node).since(cpu1);
    let still = running_count(&node);

    // ---- report ----
    let per_s = |d: Duration| {
        format!(
            "{:.2} ms/s ({:.3} % of a core)",
            d.as_secs_f64() * 1e3 / window.as_secs_f64(),
            d.as_secs_f64() * 100.0 / window.as_secs_f64()
        )
    };
    println!(
        "hollow_pods: {} pods, fake runtime latency {} ms, logging {}, {} CPUs, \
         node directory in {}",
        args.pods,
        args.latency_ms,
        if args.log { "info (to a sink)" } else { "off" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        args.dir.display()
    );
    println!();
    println!("start-up (manifests written -> all pods Running)");
    println!("  {:<44} {:>12}", "wall: manifests written", ms(written));
    println!(
        "  {:<44} {:>12}",
        "wall: first pod Running",
        ms(first_running.unwrap_or_default())
    );
    println!("  {:<44} {:>12}", "wall: all pods Running", ms(all_running));
    println!(
        "  {:<44} {:>12}",
        "CPU: agent (process - fake - bench)",
        ms(start.agent)
    );
    println!(
        "  {:<44} {:>12}",
        "CPU: agent per pod",
        ms(start.agent / args.pods as u32)
    );
    println!(
        "  {:<44} {:>12}",
        "CPU: fake runtime thread",
        ms(start.fake)
    );
    println!(
        "  {:<44} {:>12}",
        "CPU: bench thread (writes, polling)",
        ms(start.bench)
    );
    println!("  {:<44} {:>12}", "CPU: whole process", ms(start.process));
    println!();
    println!("  CRI calls made by the agent during start-up:");
    for (op, n) in &calls {
        println!(
            "    {:<28} {:>6}  ({:.1} per pod)",
            op.name(),
            n,
            *n as f64 / args.pods as f64
        );
    }
    println!();
    println!(
        "settling (all pods Running -> {:.1} s without a pod sync, {:.1} s in all)",
        SETTLE_QUIET.as_secs_f64(),
        settled.as_secs_f64()
    );
    println!("  CRI calls (the PLEG reporting the starts, and the syncs that follow):");
    for (op, n) in &settle_calls {
        println!(
            "    {:<28} {:>6}  ({:.1} per pod)",
            op.name(),
            n,
            *n as f64 / args.pods as f64
        );
    }
    println!();
    println!(
        "steady state ({:.1} s window, {still}/{} pods Running)",
        window.as_secs_f64(),
        args.pods
    );
    println!("  {:<44} {:>12}", "CPU: agent", per_s(steady.agent));
    println!(
        "  {:<44} {:>12}",
        "CPU: fake runtime thread",
        per_s(steady.fake)
    );
    println!(
        "  {:<44} {:>12}",
        "CPU: whole process",
        per_s(steady.process)
    );
    println!("  CRI calls per second in the window:");
    for (op, n) in &steady_calls {
        println!(
            "    {:<28} {:>8.1}",
            op.name(),
            *n as f64 / window.as_secs_f64()
        );
    }
    let _ = steady.bench;
    if still != args.pods {
        return Err(format!(
            "pods stopped running during the steady-state window: {still}/{}",
            args.pods
        ));
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hollow_pods: {e}");
            std::process::exit(2);
        }
    };
    let (rt, dir) = hollow::setup(
        "hollow_pods",
        args.log,
        "kubelet-rs-hollow-bench-",
        Some(&args.dir),
    );
    let result = rt.block_on(run(&args, dir.path()));
    hollow::finish("hollow_pods", rt, dir, result);
}
