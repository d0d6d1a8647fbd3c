//! PLEG relist cost (issue 4, benchmark (b)): `Pleg::relist()` against the in-process fake CRI
//! runtime holding 1000 containers, in several pod shapes.
//!
//! The runtime is filled through the same CRI calls the agent makes, with the agent's own
//! sandbox and container configs (`kuberuntime::sandbox::sandbox_config`,
//! `kuberuntime::container::container_config` for static pods with the file source's
//! defaults), so labels and annotations — most of what a list carries — are the real ones.
//!
//! The relist runs on this thread in a single-threaded tokio runtime, so everything on the
//! agent's side (the tonic client, HTTP/2, protobuf decoding, building the snapshot, the diff,
//! the metrics) is this thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`). The fake serves from its
//! own thread and is measured there (`pthread_getcpuclockid`). The PLEG keeps a cAdvisor names
//! table current, as in the agent. Figures per relist:
//!
//! - `relist (no change)`: one `Pleg::relist()` with nothing changed since the previous one
//!   (steady state: the lean lists only);
//! - `full lists only`: `ListPodSandbox` + `ListContainers` decoded into full CRI objects
//!   (`RuntimeService::list_pod_sandboxes` / `list_containers`), what every relist cost before
//!   the lean lists, and what a relist adds when the set of IDs changed;
//! - `lean lists only`: the same two calls decoded into `proto::cri::lean` objects
//!   (`RuntimeService::list_lean`), to split gRPC cost from the PLEG's own work;
//! - `relist, 1% exited`: 1% of the containers exited since the previous relist, so events
//!   are generated and sent (states changed, IDs did not: lean lists only);
//! - `relist, 1% created`: 1% of the containers were created since the previous relist (as
//!   restarts), so the relist also reads each new container by ID for the names table;
//! - `relist, 1% removed`: 1% of the containers were removed since the previous relist, so the
//!   relist also drops their IDs from the names table.
//!
//! Run: `cargo bench --bench pleg_relist` (use your own `CARGO_TARGET_DIR` if others build).
//! Options (after `--`): `--relists 300` `--shapes 1000x1,500x2,100x10` (pods x containers)
//! `--phases relist,lists,lean,churn,created,removed` (a subset, for profiling one path with
//! `perf record`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kubelet_rs::cadvisor::names::RuntimeNames;
use kubelet_rs::cm::{CfsQuota, QosClass};
use kubelet_rs::fakeruntime::{current_thread_cpu_time, FakeRuntime, FakeThread};
use kubelet_rs::fieldpath::PodRuntimeFacts;
use kubelet_rs::health::Health;
use kubelet_rs::kuberuntime::actions::{sandbox_hash, SANDBOX_HASH_LABEL};
use kubelet_rs::kuberuntime::container::{container_config, ContainerContext};
use kubelet_rs::kuberuntime::dns::{pod_dns, read_host_config, DnsSettings};
use kubelet_rs::kuberuntime::sandbox::{sandbox_config, SandboxContext, SeccompPolicy};
use kubelet_rs::kuberuntime::RuntimeService;
use kubelet_rs::metrics::Metrics;
use kubelet_rs::objects::MemoryObjects;
use kubelet_rs::pleg::Pleg;
use kubelet_rs::sources::defaults::apply_static_pod_defaults;
use prost::Message;
use tokio::sync::mpsc;

const NODE: &str = "hollow-bench";
const IMAGE: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";
const NODE_MEMORY: i64 = 8 << 30;

/// The measured phases, in the order they run (`removed` last: it empties the runtime).
const PHASES: [&str; 6] = ["relist", "lists", "lean", "churn", "created", "removed"];

struct Args {
    relists: usize,
    shapes: Vec<(usize, usize)>,
    phases: Vec<String>,
}

impl Args {
    fn phase(&self, name: &str) -> bool {
        self.phases.iter().any(|p| p == name)
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        relists: 300,
        shapes: vec![(1000, 1), (500, 2), (100, 10)],
        phases: PHASES.map(String::from).to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--relists" => {
                let v = it.next().ok_or("--relists needs a value")?;
                a.relists = v.parse().map_err(|e| format!("--relists {v:?}: {e}"))?;
            }
            "--shapes" => {
                let v = it.next().ok_or("--shapes needs a value")?;
                a.shapes = v
                    .split(',')
                    .map(|s| {
                        let (p, c) = s
                            .split_once('x')
                            .ok_or(format!("--shapes: {s:?} is not PODSxCONTAINERS"))?;
                        Ok((
                            p.parse().map_err(|e| format!("--shapes {s:?}: {e}"))?,
                            c.parse().map_err(|e| format!("--shapes {s:?}: {e}"))?,
                        ))
                    })
                    .collect::<Result<_, String>>()?;
            }
            "--phases" => {
                let v = it.next().ok_or("--phases needs a value")?;
                a.phases = v.split(',').map(str::to_string).collect();
                if let Some(bad) = a.phases.iter().find(|p| !PHASES.contains(&p.as_str())) {
                    return Err(format!(
                        "--phases: unknown phase {bad:?} ({})",
                        PHASES.join(", ")
                    ));
                }
            }
            // cargo bench passes --bench; ignore it and any other harness flag.
            _ => {}
        }
    }
    if a.relists < 10 {
        return Err("--relists must be at least 10".into());
    }
    Ok(a)
}

/// A static pod as the file source makes it: `containers` busybox containers.
fn static_pod(i: usize, containers: usize) -> Pod {
    let spec = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": format!("pod-{i:04}"), "labels": {"app": "bench", "tier": "hollow"}},
        "spec": {
            "restartPolicy": "Always",
            "containers": (0..containers).map(|c| serde_json::json!({
                "name": format!("c{c}"),
                "image": IMAGE,
                "command": ["sleep", "3600"],
                "ports": [{"containerPort": 8080 + c}],
            })).collect::<Vec<_>>(),
        },
    });
    let mut pod: Pod = serde_json::from_value(spec).expect("a valid pod");
    apply_static_pod_defaults(
        &mut pod,
        NODE,
        Path::new(&format!("/etc/kubernetes/manifests/pod-{i}.yaml")),
    )
    .expect("a named pod");
    pod
}

/// Creates and starts every pod's sandbox and containers through the CRI, as the agent would.
/// One relist, recorded in `s`; its events are dropped.
async fn measured_relist(
    pleg: &mut Pleg,
    thread: &FakeThread,
    s: &mut Samples,
    rx: &mut mpsc::Receiver<Vec<kubelet_rs::pleg::PlegEvent>>,
) -> Result<(), String> {
    let m = Mark::now(thread);
    let n = pleg.relist().await?;
    s.record(m, thread, n);
    while rx.try_recv().is_ok() {}
    Ok(())
}

/// What it takes to create one of the populated containers again (as a restart would).
struct Template {
    sandbox: String,
    sandbox_config: proto::cri::PodSandboxConfig,
    config: proto::cri::ContainerConfig,
}

async fn populate(
    rt: &RuntimeService,
    fake: &FakeRuntime,
    pods: usize,
    per_pod: usize,
) -> Result<Vec<Template>, String> {
    let mut templates = Vec::with_capacity(pods * per_pod);
    let image_ref = fake.preload_image(IMAGE);
    let objects = MemoryObjects::default();
    let log_root = Path::new("/var/log/pods");
    let dns_settings = DnsSettings {
        resolv_conf: Some("/etc/resolv.conf".into()),
        ..Default::default()
    };
    let host_dns = read_host_config(dns_settings.resolv_conf.as_deref())
        .await
        .unwrap_or_default();
    let seccomp = SeccompPolicy::default();
    for i in 0..pods {
        let pod = static_pod(i, per_pod);
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let ctx = SandboxContext {
            node: NODE,
            cgroup_parent: format!("/kubepods/besteffort/pod{uid}"),
            log_root,
            dns: pod_dns(&dns_settings, &host_dns, &pod).0.into(),
            seccomp: &seccomp,
        };
        let mut sb_cfg = sandbox_config(&pod, 0, &ctx);
        sb_cfg
            .labels
            .insert(SANDBOX_HASH_LABEL.into(), sandbox_hash(&pod));
        let sb = rt
            .run_pod_sandbox(sb_cfg.clone())
            .await
            .map_err(|e| e.to_string())?;
        let ip = rt
            .pod_sandbox_status(&sb)
            .await
            .map_err(|e| e.to_string())?
            .network
            .map(|n| n.ip)
            .unwrap_or_default();
        let facts = PodRuntimeFacts {
            pod_ips: vec![ip],
            host_ips: vec!["192.0.2.10".into()],
            node_cpu_milli: 2000,
            node_memory: NODE_MEMORY,
            node_ephemeral_storage: 0,
        };
        for c in &pod
            .spec
            .as_ref()
            .map(|s| s.containers.clone())
            .unwrap_or_default()
        {
            let cctx = ContainerContext {
                node: NODE,
                image_ref: &image_ref,
                restart_count: 0,
                init: false,
                qos: QosClass::BestEffort,
                facts: &facts,
                objects: &objects,
                mounts: Vec::new(),
                cfs: CfsQuota::default(),
                seccomp: &seccomp,
            };
            let cfg = container_config(&pod, c, &cctx, NODE_MEMORY).map_err(|e| e.to_string())?;
            let id = rt
                .create_container(&sb, cfg.clone(), sb_cfg.clone())
                .await
                .map_err(|e| e.to_string())?;
            rt.start_container(&id).await.map_err(|e| e.to_string())?;
            templates.push(Template {
                sandbox: sb.clone(),
                sandbox_config: sb_cfg.clone(),
                config: cfg,
            });
        }
    }
    Ok(templates)
}

/// Per-iteration samples of one measured phase.
#[derive(Default)]
struct Samples {
    agent: Vec<Duration>,
    fake: Vec<Duration>,
    wall: Vec<Duration>,
    events: usize,
}

impl Samples {
    fn mean(v: &[Duration]) -> Duration {
        v.iter().sum::<Duration>() / v.len().max(1) as u32
    }

    fn pct(v: &[Duration], p: f64) -> Duration {
        let mut s = v.to_vec();
        s.sort();
        s.get(((s.len() as f64 - 1.0) * p).round() as usize)
            .copied()
            .unwrap_or_default()
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// The CPU clocks and wall clock at the start of one measured call.
struct Mark {
    agent: Duration,
    fake: Duration,
    wall: Instant,
}

impl Mark {
    fn now(fake_thread: &FakeThread) -> Self {
        Self {
            agent: current_thread_cpu_time(),
            fake: fake_thread.cpu_time(),
            wall: Instant::now(),
        }
    }
}

impl Samples {
    /// Records one call that began at `m` and produced `events`.
    fn record(&mut self, m: Mark, fake_thread: &FakeThread, events: usize) {
        let end = Mark::now(fake_thread);
        self.agent.push(end.agent.saturating_sub(m.agent));
        self.fake.push(end.fake.saturating_sub(m.fake));
        self.wall.push(end.wall - m.wall);
        self.events += events;
    }
}

struct Row {
    shape: String,
    phase: &'static str,
    s: Samples,
}

async fn bench_shape(
    pods: usize,
    per_pod: usize,
    args: &Args,
    rows: &mut Vec<Row>,
    socket: &Path,
) -> Result<(), String> {
    let relists = args.relists;
    let fake = FakeRuntime::new();
    let thread = fake.serve_on_thread(socket).map_err(|e| e.to_string())?;
    let metrics = Metrics::new(NODE);
    let runtime = RuntimeService::new(
        proto::cri::lazy_channel(socket),
        Duration::from_secs(120),
        metrics.clone(),
        NODE,
    );
    let templates = populate(&runtime, &fake, pods, per_pod).await?;
    let total = fake.containers().len();
    let (tx, mut rx) = mpsc::channel(1 << 16);
    // As the agent runs it: keeping the cAdvisor names table current.
    let names = Arc::new(RuntimeNames::new("containerd"));
    let mut pleg = Pleg::new(
        runtime.clone(),
        metrics,
        Health::new(),
        Duration::from_secs(1),
        tx,
    )
    .with_names(names, "registry.k8s.io/pause:3.10");
    // Warm up: the first relist builds the snapshot; later ones warm the connection and caches.
    for _ in 0..10 {
        pleg.relist().await?;
    }
    // What one relist moves: the two responses as encoded on the wire.
    let (sbs, cts) = tokio::try_join!(
        runtime.list_pod_sandboxes(None),
        runtime.list_containers(None)
    )
    .map_err(|e| e.to_string())?;
    let wire = proto::cri::ListPodSandboxResponse { items: sbs }.encoded_len()
        + proto::cri::ListContainersResponse { containers: cts }.encoded_len();
    let shape = format!("{pods} pods x {per_pod} = {total} containers");
    println!(
        "{shape}: {:.0} KiB of list responses per relist",
        wire as f64 / 1024.0
    );

    if args.phase("relist") {
        let mut s = Samples::default();
        for _ in 0..relists {
            let m = Mark::now(&thread);
            let n = pleg.relist().await?;
            s.record(m, &thread, n);
        }
        rows.push(Row {
            shape: shape.clone(),
            phase: "relist (no change)",
            s,
        });
    }

    if args.phase("lists") {
        let mut s = Samples::default();
        for _ in 0..relists {
            let m = Mark::now(&thread);
            let (a, b) = tokio::try_join!(
                runtime.list_pod_sandboxes(None),
                runtime.list_containers(None)
            )
            .map_err(|e| e.to_string())?;
            std::hint::black_box((a.len(), b.len()));
            s.record(m, &thread, 0);
        }
        rows.push(Row {
            shape: shape.clone(),
            phase: "full lists only",
            s,
        });
    }

    if args.phase("lean") {
        let mut s = Samples::default();
        for _ in 0..relists {
            let m = Mark::now(&thread);
            let (a, b) = runtime.list_lean().await.map_err(|e| e.to_string())?;
            std::hint::black_box((a.len(), b.len()));
            s.record(m, &thread, 0);
        }
        rows.push(Row {
            shape: shape.clone(),
            phase: "lean lists only",
            s,
        });
    }

    if args.phase("churn") {
        // 1% of the containers exit between relists: ContainerDied events are generated and sent.
        let step = (total / 100).max(1);
        let mut running: Vec<String> = fake.containers().into_iter().map(|c| c.id).collect();
        let rounds = relists.min(running.len() / step);
        let mut s = Samples::default();
        for _ in 0..rounds {
            for id in running.drain(..step) {
                fake.exit_container(&id, 1).map_err(|e| e.to_string())?;
            }
            measured_relist(&mut pleg, &thread, &mut s, &mut rx).await?;
        }
        rows.push(Row {
            shape: shape.clone(),
            phase: "relist, 1% exited",
            s,
        });
    }

    if args.phase("created") {
        // 1% of the containers are created anew between relists (restarts of exited ones):
        // the set of IDs changed; the new objects are read by ID for the names table.
        let step = (total / 100).max(1);
        let mut s = Samples::default();
        for (round, batch) in templates.chunks(step).take(relists).enumerate() {
            for t in batch {
                let mut cfg = t.config.clone();
                if let Some(m) = cfg.metadata.as_mut() {
                    m.attempt += 1 + round as u32;
                }
                let id = runtime
                    .create_container(&t.sandbox, cfg, t.sandbox_config.clone())
                    .await
                    .map_err(|e| e.to_string())?;
                runtime
                    .start_container(&id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            measured_relist(&mut pleg, &thread, &mut s, &mut rx).await?;
        }
        rows.push(Row {
            shape: shape.clone(),
            phase: "relist, 1% created",
            s,
        });
    }

    if args.phase("removed") {
        // 1% of the containers are removed between relists: the set of IDs changed; the gone
        // IDs leave the names table.
        let step = (total / 100).max(1);
        let mut left: Vec<String> = fake.containers().into_iter().map(|c| c.id).collect();
        let rounds = relists.min(left.len() / step);
        let mut s = Samples::default();
        for _ in 0..rounds {
            for id in left.drain(..step) {
                // Most already exited in the `churn` phase.
                let _ = fake.exit_container(&id, 0);
                runtime
                    .remove_container(&id)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            measured_relist(&mut pleg, &thread, &mut s, &mut rx).await?;
        }
        rows.push(Row {
            shape,
            phase: "relist, 1% removed",
            s,
        });
    }
    while rx.try_recv().is_ok() {}
    drop(pleg);
    drop(runtime);
    drop(thread);
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("pleg_relist: {e}");
            std::process::exit(2);
        }
    };
    let dir = match tempfile::Builder::new()
        .prefix("kubelet-rs-pleg-bench-")
        .tempdir()
    {
        Ok(d) => d,
        Err(e) => {
            eprintln!("pleg_relist: cannot create a temporary directory: {e}");
            std::process::exit(1);
        }
    };
    let mut rows = Vec::new();
    for (i, (pods, per_pod)) in args.shapes.iter().enumerate() {
        // A fresh runtime per shape, so that no connection or task outlives its fake.
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("pleg_relist: cannot start the tokio runtime: {e}");
                std::process::exit(1);
            }
        };
        let socket = dir.path().join(format!("fake-{i}.sock"));
        if let Err(e) = rt.block_on(bench_shape(*pods, *per_pod, &args, &mut rows, &socket)) {
            eprintln!("pleg_relist: {pods}x{per_pod}: {e}");
            std::process::exit(1);
        }
    }
    println!(
        "pleg_relist: CPU per relist, agent side (this thread) and fake runtime (its thread); \
         {} relists per row",
        args.relists
    );
    println!();
    println!(
        "{:<34} {:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "shape", "phase", "agent", "agent", "agent", "fake", "wall", "events"
    );
    println!(
        "{:<34} {:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "", "", "mean", "p50", "p99", "mean", "mean", "/relist"
    );
    for r in &rows {
        println!(
            "{:<34} {:<20} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8.1}",
            r.shape,
            r.phase,
            us(Samples::mean(&r.s.agent)),
            us(Samples::pct(&r.s.agent, 0.5)),
            us(Samples::pct(&r.s.agent, 0.99)),
            us(Samples::mean(&r.s.fake)),
            us(Samples::mean(&r.s.wall)),
            r.s.events as f64 / r.s.agent.len().max(1) as f64,
        );
    }
}
