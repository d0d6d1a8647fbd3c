//! Probe benchmark (issue 7): the agent's CPU per probe execution, for N pods (default 110)
//! each with an httpGet readiness probe every second against a real HTTP listener on loopback,
//! on the in-process fake CRI runtime.
//!
//! One process holds the agent (its multi-threaded tokio runtime), the fake runtime on its own
//! thread, and the HTTP listeners on another thread with its own single-threaded runtime (one
//! listener per pod on 127.0.0.1, answering `200 ok` and closing, as a probed app would). CPU is
//! split as in `hollow_pods`: process CPU (`getrusage`) minus the fake's thread, the listeners'
//! thread and the bench's own thread is the agent's. Kernel work is charged to whichever thread
//! did it; on loopback the sender's thread often also runs the receiving side's TCP processing,
//! so part of the listeners' kernel work lands on the agent: the figure is an upper bound.
//!
//! Two runs, same pods: a baseline without probes (PLEG relists, housekeeping, status), then the
//! same pods with probes. Reported: probe executions in the window (the prober's own count, and
//! the requests the listeners served), agent CPU per probe over everything, agent CPU per
//! probe above the baseline, which is the prober's cost, and the prober thread's own CPU clock
//! per probe (the same cost read directly). Target: under 20 µs.
//!
//! Then the floor: a plain thread makes as many connections to the same listeners, at the same
//! rate, doing only what a probe must (blocking connect, the GET, read to EOF, close). Its CPU
//! per connection is what one connection per probe costs on this machine whatever the client's
//! code; the agent's figure minus the floor is what the agent adds.
//!
//! Then each HTTP client alone (issue 11): the hand-written HTTP/1.1 exchange the prober used
//! first and hyper's HTTP/1 client connection, on a thread with a single-threaded runtime like
//! the prober's, making the same GETs to the same listeners at the same rate in the same
//! bursts (three rounds each, alternating). That thread's CPU clock per request is the client's
//! whole cost, the floor's kernel work included; the difference between the two is what the
//! choice of client costs.
//!
//! Run: `cargo bench --bench probes` (use your own `CARGO_TARGET_DIR` if others build).
//! Options (after `--`): `--pods 110` `--secs 20` (each steady window) `--log info|off`.

#[path = "support/hollow.rs"]
mod hollow;
#[path = "support/hyper_client.rs"]
mod hyper_client;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubelet_rs::fakeruntime::{current_thread_cpu_time, HollowConfig, HollowNode, Op};
use kubelet_rs::rtthread::RuntimeThread;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const IMAGE: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";
const POLL: Duration = Duration::from_millis(20);
const TIMEOUT: Duration = Duration::from_secs(300);
/// Rounds of each client alone (alternating), each half as many requests as the probed window.
const CLIENT_ROUNDS: usize = 3;

struct Args {
    pods: usize,
    secs: u64,
    log: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        pods: 110,
        secs: 20,
        log: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--pods" => a.pods = hollow::parse_num("--pods", &value("--pods")?)?,
            "--secs" => a.secs = hollow::parse_num("--secs", &value("--secs")?)?,
            "--log" => a.log = hollow::parse_log(&value("--log")?)?,
            _ => {}
        }
    }
    if a.pods == 0 || a.secs == 0 {
        return Err("--pods and --secs must be at least 1".into());
    }
    Ok(a)
}

/// HTTP listeners on their own thread: one per pod, answering every request with `200 ok`.
struct Listeners {
    ports: Vec<u16>,
    served: Arc<AtomicU64>,
    thread: RuntimeThread,
}

/// User and system CPU.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    user: Duration,
    sys: Duration,
}

impl Usage {
    fn of(who: i32) -> Usage {
        // SAFETY: an all-zero rusage is a valid value for the out-parameter.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `who` is RUSAGE_SELF or RUSAGE_THREAD, with a valid out-pointer.
        if unsafe { libc::getrusage(who, &mut ru) } != 0 {
            return Usage::default();
        }
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
        Usage {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    fn minus(self, o: Usage) -> Usage {
        Usage {
            user: self.user.saturating_sub(o.user),
            sys: self.sys.saturating_sub(o.sys),
        }
    }
}

impl Listeners {
    fn start(n: usize) -> Result<Self, String> {
        let thread = RuntimeThread::start("bench-listeners")
            .map_err(|e| format!("cannot start the listener thread: {e}"))?;
        let served = Arc::new(AtomicU64::new(0));
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            let l = {
                let _in_thread = thread.handle().enter();
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| {
                        l.set_nonblocking(true)?;
                        tokio::net::TcpListener::from_std(l)
                    })
                    .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?
            };
            ports.push(l.local_addr().map(|a| a.port()).unwrap_or(0));
            let served = served.clone();
            thread.handle().spawn(async move {
                loop {
                    let Ok((mut s, _)) = l.accept().await else { continue };
                    let served = served.clone();
                    tokio::spawn(async move {
                        let mut buf = [0u8; 1024];
                        let mut n = 0;
                        while n < buf.len() {
                            match s.read(&mut buf[n..]).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => n += k,
                            }
                            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                break;
                            }
                        }
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                            .await;
                        served.fetch_add(1, Ordering::Relaxed);
                    });
                }
            });
        }
        Ok(Self {
            ports,
            served,
            thread,
        })
    }

    fn cpu(&self) -> Duration {
        self.thread.cpu_time().unwrap_or_default()
    }

    /// The listeners' thread's own user/system split (`RUSAGE_THREAD`, taken on that thread).
    async fn usage(&self) -> Usage {
        self.thread
            .handle()
            .spawn(async { Usage::of(libc::RUSAGE_THREAD) })
            .await
            .unwrap_or_default()
    }
}

/// The kernel's share measured on its own: a plain thread makes `count` connections to the
/// listeners the way one probe does (connect, the probe's GET, read to EOF, close) with
/// blocking sockets and nothing else, in bursts on the prober's grid (`PHASES_PER_PERIOD`
/// bursts a second). Its thread CPU per connection is what any client pays for one
/// connection per probe on this machine, whatever its code: the floor under the agent's figure.
fn floor(ports: &[u16], count: u64, rate: f64) -> Result<(Usage, u64), String> {
    use std::io::{Read, Write};
    let requests: Vec<(std::net::SocketAddr, Vec<u8>)> = ports
        .iter()
        .map(|&p| {
            let req = format!(
                "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nUser-Agent: kube-probe/1.33\r\n\
                 Accept: */*\r\nConnection: close\r\n\r\n"
            );
            (
                std::net::SocketAddr::from(([127, 0, 0, 1], p)),
                req.into_bytes(),
            )
        })
        .collect();
    let bursts_per_sec = kubelet_rs::prober::worker::PHASES_PER_PERIOD as f64;
    let per_burst = ((rate / bursts_per_sec).round() as u64).max(1);
    std::thread::Builder::new()
        .name("bench-floor".into())
        .spawn(move || {
            let u0 = Usage::of(libc::RUSAGE_THREAD);
            let mut done = 0u64;
            let mut buf = [0u8; 512];
            let mut next = Instant::now();
            while done < count {
                for _ in 0..per_burst.min(count - done) {
                    let (addr, req) = &requests[done as usize % requests.len()];
                    let mut s = std::net::TcpStream::connect(addr)
                        .map_err(|e| format!("floor: connect {addr}: {e}"))?;
                    s.write_all(req).map_err(|e| format!("floor: write: {e}"))?;
                    while s.read(&mut buf).map_err(|e| format!("floor: read: {e}"))? > 0 {}
                    drop(s);
                    done += 1;
                }
                next += Duration::from_secs_f64(1.0 / bursts_per_sec);
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
            Ok((Usage::of(libc::RUSAGE_THREAD).minus(u0), done))
        })
        .map_err(|e| format!("cannot start the floor thread: {e}"))?
        .join()
        .map_err(|_| "the floor thread panicked".to_string())?
}

/// An HTTP client the prober could use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// The agent's own HTTP/1.1 client (`kubelet_rs::prober::http::HttpClient`).
    HandWritten,
    /// hyper's HTTP/1 client connection (`hyper::client::conn::http1`), `support/hyper_client.rs`.
    Hyper,
}

impl ClientKind {
    fn name(self) -> &'static str {
        match self {
            ClientKind::HandWritten => "hand-written HTTP/1.1",
            ClientKind::Hyper => "hyper client::conn::http1",
        }
    }
}

/// One client on its own, measured the way the prober runs it: a thread with a
/// single-threaded tokio runtime (the prober's kind), `count` probe GETs to the listeners at
/// `rate` per second in bursts on the prober's grid, the requests of a burst concurrent. Returns
/// the thread's CPU (its own clock, and the user/system split) and the requests answered 200.
async fn client_alone(
    kind: ClientKind,
    ports: &[u16],
    count: u64,
    rate: f64,
) -> Result<(Duration, Usage, u64), String> {
    use kubelet_rs::prober::http::{HttpClient, Scheme, Url, PROBE_USER_AGENT};
    let thread = RuntimeThread::start("bench-client")
        .map_err(|e| format!("cannot start the client thread: {e}"))?;
    let urls: Vec<Url> = ports
        .iter()
        .map(|&p| Url::new(Scheme::Http, "127.0.0.1", p, "/healthz"))
        .collect();
    let bursts_per_sec = kubelet_rs::prober::worker::PHASES_PER_PERIOD as f64;
    let per_burst = ((rate / bursts_per_sec).round() as u64).max(1);
    let cpu0 = thread.cpu_time().unwrap_or_default();
    let run = thread.handle().spawn(async move {
        let hand = HttpClient::new();
        let timeout = Duration::from_secs(1);
        let u0 = Usage::of(libc::RUSAGE_THREAD);
        let mut done = 0u64;
        let mut ok = 0u64;
        let mut next = tokio::time::Instant::now();
        while done < count {
            let n = per_burst.min(count - done);
            let burst = (0..n).map(|i| {
                let url = &urls[(done + i) as usize % urls.len()];
                let hand = &hand;
                async move {
                    let status = match kind {
                        ClientKind::HandWritten => hand
                            .get(url, &[], PROBE_USER_AGENT, timeout)
                            .await
                            .map(|r| r.status)
                            .map_err(|e| e.to_string()),
                        ClientKind::Hyper => {
                            hyper_client::get(url, &[], PROBE_USER_AGENT, timeout).await
                        }
                    };
                    status.is_ok_and(|s| s == 200)
                }
            });
            ok += futures_util::future::join_all(burst)
                .await
                .into_iter()
                .filter(|&b| b)
                .count() as u64;
            done += n;
            next += Duration::from_secs_f64(1.0 / bursts_per_sec);
            tokio::time::sleep_until(next).await;
        }
        (Usage::of(libc::RUSAGE_THREAD).minus(u0), ok)
    });
    let (usage, ok) = run.await.map_err(|e| format!("{}: {e}", kind.name()))?;
    let cpu = thread.cpu_time().unwrap_or_default().saturating_sub(cpu0);
    Ok((cpu, usage, ok))
}

fn manifest(name: &str, port: Option<u16>) -> String {
    let mut c =
        serde_json::json!({"name": "main", "image": IMAGE, "imagePullPolicy": "IfNotPresent"});
    if let Some(port) = port {
        c["readinessProbe"] = serde_json::json!({
            "httpGet": {"host": "127.0.0.1", "port": port, "path": "/healthz"},
            "periodSeconds": 1, "timeoutSeconds": 1
        });
    }
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"restartPolicy": "Always", "containers": [c]}
    })
    .to_string()
}

fn all_ready(node: &HollowNode, n: usize) -> bool {
    let pods = node.agent.kubelet.status.pods();
    pods.len() == n
        && pods.iter().all(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| !cs.is_empty() && cs.iter().all(|c| c.ready))
        })
}

struct Window {
    secs: f64,
    /// Process user/system minus the listeners' thread (the fake and bench threads cancel out
    /// against the baseline, whose windows see the same relists and polling).
    split: Usage,
    agent: Duration,
    fake: Duration,
    listeners: Duration,
    probes: u64,
    served: u64,
    /// The prober's own thread (every probe's code and socket calls).
    prober_thread: Duration,
}

/// Starts a node with `pods` pods (probed when `listeners` is given), waits until every
/// container is ready, settles, and measures a steady window.
async fn measure(
    args: &Args,
    base: &std::path::Path,
    name: &str,
    listeners: Option<&Listeners>,
) -> Result<Window, String> {
    let node = HollowNode::start(
        base,
        HollowConfig {
            node_name: name.into(),
            extra_flags: vec!["--max-pods".into(), args.pods.max(110).to_string()],
            fake_on_own_thread: true,
            preload_images: vec![IMAGE.into()],
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    for i in 0..args.pods {
        let pod = format!("pod-{i:04}");
        let port = listeners.map(|l| l.ports[i]);
        node.write_manifest(&format!("{pod}.yaml"), &manifest(&pod, port))
            .map_err(|e| format!("{pod}: {e}"))?;
    }
    let t0 = Instant::now();
    while !all_ready(&node, args.pods) {
        if t0.elapsed() > TIMEOUT {
            return Err(format!("{name}: pods not all ready after {TIMEOUT:?}"));
        }
        tokio::time::sleep(POLL).await;
    }
    // Settle: the syncs that readiness changes caused, the first relists.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lists = node.fake.calls(Op::ListContainers);
    let (p0, f0, l0, b0) = (
        hollow::process_cpu(),
        node.fake_cpu_time(),
        listeners.map(|l| l.cpu()).unwrap_or_default(),
        current_thread_cpu_time(),
    );
    let u0 = Usage::of(libc::RUSAGE_SELF);
    let lu0 = match listeners {
        Some(l) => l.usage().await,
        None => Usage::default(),
    };
    let probes0 = node.agent.kubelet.prober.executions();
    let prober0 = node.agent.kubelet.prober.thread_cpu_time();
    let served0 = listeners
        .map(|l| l.served.load(Ordering::Relaxed))
        .unwrap_or(0);
    let t1 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.secs)).await;
    let secs = t1.elapsed().as_secs_f64();
    let lu1 = match listeners {
        Some(l) => l.usage().await,
        None => Usage::default(),
    };
    let split = Usage::of(libc::RUSAGE_SELF).minus(u0).minus(lu1.minus(lu0));
    let process = hollow::process_cpu().saturating_sub(p0);
    let fake = node.fake_cpu_time().saturating_sub(f0);
    let lcpu = listeners
        .map(|l| l.cpu())
        .unwrap_or_default()
        .saturating_sub(l0);
    let bench = current_thread_cpu_time().saturating_sub(b0);
    let probes = node.agent.kubelet.prober.executions() - probes0;
    let prober_thread = match (prober0, node.agent.kubelet.prober.thread_cpu_time()) {
        (Some(a), Some(b)) => b.saturating_sub(a),
        _ => {
            return Err(format!(
                "{name}: the prober has no thread of its own to measure"
            ))
        }
    };
    let served = listeners
        .map(|l| l.served.load(Ordering::Relaxed))
        .unwrap_or(0)
        - served0;
    if !all_ready(&node, args.pods) {
        return Err(format!(
            "{name}: pods stopped being ready during the window"
        ));
    }
    let relists = node.fake.calls(Op::ListContainers) - lists;
    println!(
        "  {name}: {} pods ready; window {secs:.1} s; {relists} ListContainers calls",
        args.pods
    );
    Ok(Window {
        secs,
        split,
        agent: process
            .saturating_sub(fake)
            .saturating_sub(lcpu)
            .saturating_sub(bench),
        fake,
        listeners: lcpu,
        probes,
        served,
        prober_thread,
    })
}

fn ms_per_s(d: Duration, secs: f64) -> String {
    format!("{:.2} ms/s", d.as_secs_f64() * 1e3 / secs)
}

async fn run(args: &Args, base: &std::path::Path) -> Result<(), String> {
    println!(
        "probes: {} pods, httpGet readiness every 1 s, {} s windows, logging {}, {} CPUs",
        args.pods,
        args.secs,
        if args.log { "info (to a sink)" } else { "off" },
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let baseline_dir = base.join("baseline");
    let probed_dir = base.join("probed");
    std::fs::create_dir_all(&baseline_dir).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&probed_dir).map_err(|e| e.to_string())?;
    let baseline = measure(args, &baseline_dir, "bench-baseline", None).await?;
    let listeners = Listeners::start(args.pods)?;
    let probed = measure(args, &probed_dir, "bench-probed", Some(&listeners)).await?;
    let rate = probed.probes as f64 / probed.secs;
    let (floor_usage, floor_count) = {
        let ports = listeners.ports.clone();
        let count = probed.probes.max(1);
        tokio::task::spawn_blocking(move || floor(&ports, count, rate))
            .await
            .map_err(|e| format!("floor: {e}"))??
    };
    // Each client alone, as many requests at the same rate, alternating so that drift in the
    // machine's load falls on both alike.
    let mut clients: Vec<(ClientKind, Duration, Usage, u64)> = Vec::new();
    for kind in [ClientKind::HandWritten, ClientKind::Hyper].repeat(CLIENT_ROUNDS) {
        let count = (probed.probes / 2).max(1);
        let (cpu, usage, ok) = client_alone(kind, &listeners.ports, count, rate).await?;
        if ok != count {
            return Err(format!(
                "{}: {ok} of {count} requests answered 200",
                kind.name()
            ));
        }
        clients.push((kind, cpu, usage, count));
    }
    drop(listeners);

    let per_probe = |d: Duration| {
        if probed.probes == 0 {
            "n/a".to_string()
        } else {
            format!("{:.1} µs", d.as_secs_f64() * 1e6 / probed.probes as f64)
        }
    };
    let base_rate = baseline.agent.as_secs_f64() / baseline.secs;
    let extra =
        Duration::from_secs_f64((probed.agent.as_secs_f64() - base_rate * probed.secs).max(0.0));
    // The same, split into user and system time.
    let above = |probed_cpu: Duration, base_cpu: Duration| {
        Duration::from_secs_f64(
            (probed_cpu.as_secs_f64() - base_cpu.as_secs_f64() / baseline.secs * probed.secs)
                .max(0.0),
        )
    };
    let user_extra = above(probed.split.user, baseline.split.user);
    let sys_extra = above(probed.split.sys, baseline.split.sys);
    println!();
    println!(
        "  {:<52} {:>14}",
        "probe executions (prober count)", probed.probes
    );
    println!(
        "  {:<52} {:>14}",
        "requests served by the listeners", probed.served
    );
    println!(
        "  {:<52} {:>14}",
        "probes per second",
        format!("{:.1}", probed.probes as f64 / probed.secs)
    );
    println!(
        "  {:<52} {:>14}",
        "CPU: agent without probes (baseline)",
        ms_per_s(baseline.agent, baseline.secs)
    );
    println!(
        "  {:<52} {:>14}",
        "CPU: agent with probes",
        ms_per_s(probed.agent, probed.secs)
    );
    println!(
        "  {:<52} {:>14}",
        "CPU: listeners thread",
        ms_per_s(probed.listeners, probed.secs)
    );
    println!(
        "  {:<52} {:>14}",
        "CPU: fake runtime thread",
        ms_per_s(probed.fake, probed.secs)
    );
    println!(
        "  {:<52} {:>14}",
        "agent CPU per probe, everything included",
        per_probe(probed.agent)
    );
    println!(
        "  {:<52} {:>14}",
        "agent CPU per probe above the baseline (target < 20 µs)",
        per_probe(extra)
    );
    println!(
        "  {:<52} {:>14}",
        "prober thread CPU per probe (its own clock)",
        per_probe(probed.prober_thread)
    );
    let per_conn = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / floor_count as f64);
    let floor_total = floor_usage.user + floor_usage.sys;
    println!(
        "  {:<52} {:>14}",
        "floor: one blocking connect/GET/close, plain thread",
        per_conn(floor_total)
    );
    println!(
        "  {:<52} {:>14}",
        "  floor user / system",
        format!(
            "{} / {}",
            per_conn(floor_usage.user),
            per_conn(floor_usage.sys)
        )
    );
    for kind in [ClientKind::HandWritten, ClientKind::Hyper] {
        let (mut cpu, mut usage, mut n) = (Duration::ZERO, Usage::default(), 0u64);
        let mut rounds = Vec::new();
        for (_, c, u, count) in clients.iter().filter(|c| c.0 == kind) {
            cpu += *c;
            usage.user += u.user;
            usage.sys += u.sys;
            n += count;
            rounds.push(format!("{:.1}", c.as_secs_f64() * 1e6 / *count as f64));
        }
        let per = |d: Duration| format!("{:.1} µs", d.as_secs_f64() * 1e6 / n.max(1) as f64);
        println!(
            "  {:<52} {:>14}",
            format!("client alone: {}", kind.name()),
            per(cpu)
        );
        println!("  {:<52} {:>14}", "    rounds (µs)", rounds.join(" "));
        println!(
            "  {:<52} {:>14}",
            "    user / system",
            format!("{} / {}", per(usage.user), per(usage.sys))
        );
    }
    let over_floor = extra.as_secs_f64() * 1e6 / probed.probes.max(1) as f64
        - floor_total.as_secs_f64() * 1e6 / floor_count as f64;
    println!(
        "  {:<52} {:>14}",
        "agent per probe above the baseline, minus the floor",
        format!("{over_floor:.1} µs")
    );
    println!(
        "  {:<52} {:>14}",
        "user/system CPU, baseline (process - listeners)",
        format!(
            "{} / {}",
            ms_per_s(baseline.split.user, baseline.secs),
            ms_per_s(baseline.split.sys, baseline.secs)
        )
    );
    println!(
        "  {:<52} {:>14}",
        "user/system CPU, probed (process - listeners)",
        format!(
            "{} / {}",
            ms_per_s(probed.split.user, probed.secs),
            ms_per_s(probed.split.sys, probed.secs)
        )
    );
    println!(
        "  {:<52} {:>14}",
        "  of which user space (the agent's own code)",
        per_probe(user_extra)
    );
    println!(
        "  {:<52} {:>14}",
        "  of which kernel (TCP connect/close, epoll, wakeups)",
        per_probe(sys_extra)
    );
    if probed.probes < (args.pods as u64 * args.secs) * 9 / 10 {
        return Err(format!(
            "only {} probes ran in {:.1} s for {} pods probed every second",
            probed.probes, probed.secs, args.pods
        ));
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("probes: {e}");
            std::process::exit(2);
        }
    };
    let (rt, dir) = hollow::setup("probes", args.log, "kubelet-rs-probe-bench-", None);
    let result = rt.block_on(run(&args, dir.path()));
    hollow::finish("probes", rt, dir, result);
}
