//! Scrape benchmark: the time and size of `/metrics/cadvisor` (the kubelet's labels) and of
//! cAdvisor's `/metrics` with N synthetic containers: real cgroups with one sleeping process
//! each under `/sys/fs/cgroup/<hierarchy>/kubelet-rs-scrape-<pid>/`, named like containerd's
//! (64 hex digits), with pod identities (pod, namespace, container, image) as the agent's
//! PLEG would give them. The monitor samples them every second while scrapes run.
//!
//! Reported per flavour: the first scrape (label sets built, specs read), then the steady
//! state over `--scrapes` renders (min, median, p95, max), the response size and sample
//! count, and allocation: heap allocations and bytes per scrape, and the growth of live
//! heap across all measured scrapes, counted by this binary's allocator with the monitor
//! stopped (so that only the scrapes allocate). Target: under 25 ms per scrape at 1000
//! containers and no growth.
//!
//! Needs root; prints `skipped: <reason>` otherwise. Every cgroup and process it creates is
//! removed at the end, on error and on Ctrl-C.
//!
//! Run: `cargo bench --bench metrics_scrape`
//! Options (after `--`): `--containers 1000` `--scrapes 50`.

#[path = "support/interrupt.rs"]
mod interrupt;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use collectors::discovery::NameFilter;
use collectors::model::fs_role;
use collectors::testing::ScratchCgroups;
use collectors::{ContainerIdentity, Monitor, MonitorConfig, NameRegistry};
use kubelet_rs::cadvisor::names::PodLookup;
use kubelet_rs::cadvisor::prom::{Exporter, Flavour};
use kubelet_rs::cadvisor::tracker::{Tracker, TrackerOptions};

/// Counts allocations and live bytes.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters are atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(l.size() as u64, Ordering::Relaxed);
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        ALLOC_BYTES.fetch_add(new as u64, Ordering::Relaxed);
        LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Pod-level cgroups: none here (every container is its own pod's only cgroup).
struct NoPods;

impl PodLookup for NoPods {
    fn pod_for_cgroup(&self, _: &str) -> Option<kubelet_rs::cadvisor::names::PodRef> {
        None
    }
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hex_id(i: usize) -> String {
    // Deterministic 64-hex IDs, like containerd's.
    let mut x = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995;
    (0..4)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            format!("{x:016x}")
        })
        .collect()
}

struct Stat {
    first: Duration,
    sorted: Vec<Duration>,
    bytes: usize,
    samples: usize,
    allocs_per_scrape: u64,
    bytes_alloc_per_scrape: u64,
    live_growth: i64,
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn measure(e: &Exporter, scrapes: usize, stop: &mut dyn FnMut()) -> Result<Stat, String> {
    let mut body = Vec::new();
    let t = Instant::now();
    e.render_into(&mut body);
    let first = t.elapsed();
    let mut times = Vec::with_capacity(scrapes);
    for _ in 0..scrapes {
        interrupt::check()?;
        let t = Instant::now();
        e.render_into(&mut body);
        times.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let bytes = body.len();
    let samples = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty() && l[0] != b'#')
        .count();
    // Allocation accounting with nothing else running: the monitor stopped.
    stop();
    e.render_into(&mut body);
    let live0 = LIVE.load(Ordering::SeqCst);
    let (a0, b0) = (
        ALLOCS.load(Ordering::SeqCst),
        ALLOC_BYTES.load(Ordering::SeqCst),
    );
    for _ in 0..scrapes {
        e.render_into(&mut body);
    }
    let live1 = LIVE.load(Ordering::SeqCst);
    let (a1, b1) = (
        ALLOCS.load(Ordering::SeqCst),
        ALLOC_BYTES.load(Ordering::SeqCst),
    );
    times.sort();
    Ok(Stat {
        first,
        sorted: times,
        bytes,
        samples,
        allocs_per_scrape: (a1 - a0) / scrapes as u64,
        bytes_alloc_per_scrape: (b1 - b0) / scrapes as u64,
        live_growth: live1 - live0,
    })
}

fn run(n: usize, scrapes: usize) -> Result<Vec<(&'static str, Stat)>, String> {
    let mut cg = ScratchCgroups::new(Path::new("/sys/fs/cgroup"), "scrape")?;
    let parent = cg.parent().to_string();
    let names = Arc::new(NameRegistry::new());
    eprintln!("creating {n} cgroups with a sleeping process each under {parent} ...");
    for i in 0..n {
        interrupt::check()?;
        let id = hex_id(i);
        let name = cg.add(&id).map_err(|e| e.to_string())?;
        cg.spawn_into(&name, Command::new("sleep").arg("3600"))
            .map_err(|e| e.to_string())?;
        let pod = format!("bench-pod-{i:04}");
        names.set(
            name.clone(),
            ContainerIdentity {
                aliases: vec![id.clone(), name.clone()],
                namespace: "containerd".into(),
                labels: BTreeMap::from([
                    (
                        "io.cri-containerd.kind".to_string(),
                        "container".to_string(),
                    ),
                    (
                        "io.kubernetes.container.name".to_string(),
                        "app".to_string(),
                    ),
                    ("io.kubernetes.pod.name".to_string(), pod),
                    (
                        "io.kubernetes.pod.namespace".to_string(),
                        "bench".to_string(),
                    ),
                    (
                        "io.kubernetes.pod.uid".to_string(),
                        format!("{:08x}-0000-4000-8000-{:012x}", i, i),
                    ),
                ]),
                image: "127.0.0.1:5000/kubelet-rs/busybox:1.35".into(),
            },
        );
    }
    let monitor = Monitor::new(MonitorConfig {
        filter: NameFilter::prefixes([parent.clone()]),
        fs_paths: vec![(fs_role::ROOT, "/".into())],
        ..MonitorConfig::default()
    })
    .map_err(|e| e.to_string())?;
    let handle = monitor.start().map_err(|e| e.to_string())?;
    let tracker = Tracker::for_monitor(&monitor, TrackerOptions::default());
    // Two passes so that every container has samples.
    let passes = monitor.subscribe();
    for _ in 0..2 {
        passes
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the monitor made no pass in 30 s".to_string())?;
    }
    let tracked = monitor.container_names().len();
    eprintln!("monitor tracks {tracked} containers; scraping ...");
    let kubelet = Exporter::new(
        monitor.clone(),
        tracker.clone(),
        names.clone(),
        Some(Arc::new(NoPods)),
        Flavour::Kubelet,
        "/metrics/cadvisor",
    );
    let cadvisor = Exporter::new(
        monitor.clone(),
        tracker.clone(),
        names.clone(),
        None,
        Flavour::Cadvisor,
        "/metrics",
    );
    let mut handle = Some(handle);
    let k = measure(&kubelet, scrapes, &mut || {
        if let Some(h) = handle.take() {
            h.stop();
        }
    })?;
    // The monitor is stopped from here on: restart it for the second flavour's timing.
    let handle = monitor.start().map_err(|e| e.to_string())?;
    let mut handle = Some(handle);
    let c = measure(&cadvisor, scrapes, &mut || {
        if let Some(h) = handle.take() {
            h.stop();
        }
    })?;
    drop(cg);
    Ok(vec![("/metrics/cadvisor", k), ("4194 /metrics", c)])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--list" || a == "--exact") {
        // `cargo test --benches` probing: nothing to list.
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: not running as root (the benchmark creates cgroups)");
        return;
    }
    interrupt::install_signal_handlers();
    let n = arg(&args, "--containers", 1000);
    let scrapes = arg(&args, "--scrapes", 50).max(2);
    match run(n, scrapes) {
        Ok(rows) => {
            println!();
            println!("{n} containers, {scrapes} scrapes each (render time of the exposition; the HTTP layer adds a copy)");
            println!(
                "{:>18} | {:>9} | {:>8} {:>8} {:>8} {:>8} | {:>9} {:>8} | {:>10} {:>11} {:>11}",
                "endpoint",
                "first ms",
                "min ms",
                "p50 ms",
                "p95 ms",
                "max ms",
                "bytes",
                "samples",
                "allocs/scr",
                "alloc B/scr",
                "live growth"
            );
            for (name, s) in rows {
                println!(
                    "{:>18} | {:>9.1} | {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>9} {:>8} | {:>10} {:>11} {:>10}B",
                    name,
                    ms(s.first),
                    ms(s.sorted[0]),
                    ms(pct(&s.sorted, 0.5)),
                    ms(pct(&s.sorted, 0.95)),
                    ms(*s.sorted.last().unwrap_or(&Duration::ZERO)),
                    s.bytes,
                    s.samples,
                    s.allocs_per_scrape,
                    s.bytes_alloc_per_scrape,
                    s.live_growth
                );
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
