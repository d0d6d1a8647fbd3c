//! Pod start overhead: the time from writing a static pod manifest until its container runs
//! under kubelet-rs, next to the raw CRI calls for the same pod issued directly, in the same run
//! on the same containerd.
//!
//! Run with `cargo bench --bench pod_start` (root, `scripts/runtime up` first). Iterations:
//! `POD_START_ITERS` (default 15). Both paths are timed the same way: from the first action
//! (manifest write / RunPodSandbox) until `ListContainers` shows the container RUNNING, polled
//! every 2 ms.

#[path = "support/cgroups.rs"]
mod cgroups;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubelet_rs::cm::{CfsQuota, CgroupManager, PodResources, QosClass};
use kubelet_rs::kuberuntime::container::{container_config, ContainerContext};
use kubelet_rs::kuberuntime::dns::{pod_dns, read_host_config, DnsSettings};
use kubelet_rs::kuberuntime::sandbox::{sandbox_config, SandboxContext, SeccompPolicy};
use kubelet_rs::{fieldpath::PodRuntimeFacts, objects::MemoryObjects};
use proto::cri;

const SOCK: &str = "/run/kubelet-rs/containerd/containerd.sock";
const IMAGE: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";
const POLL: Duration = Duration::from_millis(2);

type Rt = cri::RuntimeClient;

/// Per raw run: RunPodSandbox, CreateContainer, StartContainer times (ms).
static RAW_OPS: std::sync::Mutex<Vec<[f64; 3]>> = std::sync::Mutex::new(Vec::new());
const WARMUP: usize = 9999;

async fn running(rt: &mut Rt, selector: HashMap<String, String>) -> bool {
    let r = rt
        .list_containers(cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                label_selector: selector,
                state: Some(cri::ContainerStateValue {
                    state: cri::ContainerState::ContainerRunning as i32,
                }),
                ..Default::default()
            }),
        })
        .await;
    r.map(|r| !r.into_inner().containers.is_empty())
        .unwrap_or(false)
}

async fn wait_running(rt: &mut Rt, selector: HashMap<String, String>, start: Instant) -> Duration {
    loop {
        if running(rt, selector.clone()).await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pod did not start within 60 s"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn pod(name: &str, uid: &str) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": uid},
        "spec": {"terminationGracePeriodSeconds": 2, "containers": [
            {"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}
    }))
    .unwrap()
}

/// The raw CRI path: RunPodSandbox, CreateContainer, StartContainer with the same configs the
/// agent generates, then removal.
async fn raw_once(rt: &mut Rt, image_id: &str, i: usize) -> Duration {
    let uid = format!("bench-raw-{}-{i}", std::process::id());
    let p = pod(&format!("raw-{i}"), &uid);
    // The agent reads the host's resolver file for every sandbox: so does the raw path.
    let dns_settings = DnsSettings {
        resolv_conf: Some("/etc/resolv.conf".into()),
        ..Default::default()
    };
    let host_dns = read_host_config(dns_settings.resolv_conf.as_deref())
        .await
        .unwrap_or_default();
    let seccomp = SeccompPolicy::default();
    let sctx = SandboxContext {
        node: "bench-raw",
        cgroup_parent: String::new(),
        log_root: Path::new("/var/log/pods"),
        dns: pod_dns(&dns_settings, &host_dns, &p).0.into(),
        seccomp: &seccomp,
    };
    let scfg = sandbox_config(&p, 0, &sctx);
    let objects = MemoryObjects::default();
    let facts = PodRuntimeFacts::default();
    let c = &p.spec.as_ref().unwrap().containers[0];
    let cctx = ContainerContext {
        node: "bench-raw",
        image_ref: image_id,
        restart_count: 0,
        init: false,
        qos: QosClass::BestEffort,
        facts: &facts,
        objects: &objects,
        mounts: vec![],
        cfs: CfsQuota::default(),
        seccomp: &seccomp,
    };
    let ccfg = container_config(&p, c, &cctx, 1 << 30).unwrap();
    // The pod cgroup is the agent's work, not the runtime's: make it before the clock starts,
    // as the agent does (inside its own timing) before RunPodSandbox.
    let cgroups = CgroupManager::new(Path::new("/sys/fs/cgroup"), "/kubelet-rs-bench-raw").unwrap();
    let parent = cgroups
        .ensure_pod_cgroup(QosClass::BestEffort, &uid, &PodResources::default())
        .unwrap();
    let mut scfg = scfg;
    scfg.linux.as_mut().unwrap().cgroup_parent = parent;
    let start = Instant::now();
    let sb = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(scfg.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let t_sandbox = start.elapsed();
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: sb.clone(),
            config: Some(ccfg),
            sandbox_config: Some(scfg),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    let t_create = start.elapsed();
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    let t_start = start.elapsed();
    if i != WARMUP {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        RAW_OPS.lock().unwrap().push([
            ms(t_sandbox),
            ms(t_create - t_sandbox),
            ms(t_start - t_create),
        ]);
    }
    let took = wait_running(
        rt,
        HashMap::from([("io.kubernetes.pod.uid".into(), uid.clone())]),
        start,
    )
    .await;
    let _ = rt
        .stop_container(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        })
        .await;
    let _ = rt
        .remove_container(cri::RemoveContainerRequest { container_id: id })
        .await;
    let _ = rt
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: sb.clone(),
        })
        .await;
    let _ = rt
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: sb })
        .await;
    let _ = std::fs::remove_dir_all(format!("/var/log/pods/default_raw-{i}_{uid}"));
    took
}

struct AgentProc {
    child: Child,
    node: String,
    dir: tempfile::TempDir,
    metrics_port: u16,
}

/// Mean duration (ms) of each CRI operation the agent made, from its own metrics.
fn agent_op_means(port: u16, ops: &[&str]) -> Vec<(String, f64)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let value = |name: &str, op: &str| -> f64 {
        let key = format!("{name}{{operation_type=\"{op}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    ops.iter()
        .map(|op| {
            let sum = value("kubelet_runtime_operations_duration_seconds_sum", op);
            let count = value("kubelet_runtime_operations_duration_seconds_count", op);
            (
                op.to_string(),
                if count > 0.0 {
                    sum / count * 1000.0
                } else {
                    0.0
                },
            )
        })
        .collect()
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        cgroups::remove_cgroups(&format!("/{}", self.node));
    }
}

fn start_agent() -> AgentProc {
    let dir = tempfile::tempdir().unwrap();
    let node = format!("bench-agent-{}", std::process::id());
    std::fs::create_dir_all(dir.path().join("m")).unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let hz = free();
    let metrics_port = free();
    let child = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
        .args(["--hostname-override", &node, "--pod-manifest-path"])
        .arg(dir.path().join("m"))
        .arg("--root-dir")
        .arg(dir.path().join("root"))
        .args([
            "--cgroup-root",
            &format!("/{node}"),
            "--healthz-port",
            &hz.to_string(),
        ])
        .args([
            "--read-only-port",
            &metrics_port.to_string(),
            "--address",
            "127.0.0.1",
        ])
        .args(["--cadvisor-port", "0", "--v", "0"])
        // The build machine's disk must not refuse the bench's pods (DiskPressure): only a
        // tiny memory threshold applies.
        .args(["--eviction-hard", "memory.available<1Mi"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubelet-rs");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", hz)).is_err() {
        assert!(Instant::now() < deadline, "kubelet-rs did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    AgentProc {
        child,
        node,
        dir,
        metrics_port,
    }
}

async fn agent_once(rt: &mut Rt, agent: &AgentProc, i: usize) -> Duration {
    let name = format!("agent-{i}");
    let full = format!("{name}-{}", agent.node);
    let manifest = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 2\n  containers:\n  - name: main\n    image: {IMAGE}\n    command: [\"sleep\", \"3600\"]\n"
    );
    let path = agent.dir.path().join("m").join(format!("{name}.yaml"));
    let tmp = agent.dir.path().join(format!(".{name}.tmp"));
    std::fs::write(&tmp, manifest).unwrap();
    let start = Instant::now();
    std::fs::rename(&tmp, &path).unwrap();
    let took = wait_running(
        rt,
        HashMap::from([("io.kubernetes.pod.name".into(), full.clone())]),
        start,
    )
    .await;
    std::fs::remove_file(&path).unwrap();
    // Wait for the agent to remove it before the next round.
    let sel = HashMap::from([("io.kubernetes.pod.name".to_string(), full)]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = rt
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: sel.clone(),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .items;
        if left.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    took
}

fn stats(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = ms(v[v.len() / 2]);
    let p90 = ms(v[((v.len() as f64 * 0.9).ceil() as usize).min(v.len()) - 1]);
    let mean = v.iter().map(|d| ms(*d)).sum::<f64>() / v.len() as f64;
    (median, p90, mean)
}

fn main() {
    if !Path::new(SOCK).exists() {
        eprintln!("pod_start: containerd is not running at {SOCK}; run scripts/runtime up");
        std::process::exit(1);
    }
    let iters: usize = std::env::var("POD_START_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let agent = start_agent();
    let (mut raw, mut via_agent) = rt.block_on(async {
        let ch = proto::cri::connect(Path::new(SOCK))
            .await
            .expect("connect containerd");
        let mut rtc = cri::RuntimeClient::new(ch.clone());
        let mut img = cri::ImageClient::new(ch);
        let spec = cri::ImageSpec {
            image: IMAGE.into(),
            ..Default::default()
        };
        img.pull_image(cri::PullImageRequest {
            image: Some(spec.clone()),
            ..Default::default()
        })
        .await
        .expect("pull busybox");
        let image_id = img
            .image_status(cri::ImageStatusRequest {
                image: Some(spec),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .unwrap()
            .id;
        // One warm-up of each path (first sandbox, first CNI add).
        raw_once(&mut rtc, &image_id, WARMUP).await;
        agent_once(&mut rtc, &agent, WARMUP).await;
        let (mut raw, mut via) = (Vec::new(), Vec::new());
        // Alternate which path goes first, and let the runtime settle between runs, so that
        // neither path inherits the other's background cleanup.
        let settle = Duration::from_millis(500);
        for i in 0..iters {
            if i % 2 == 0 {
                raw.push(raw_once(&mut rtc, &image_id, i).await);
                tokio::time::sleep(settle).await;
                via.push(agent_once(&mut rtc, &agent, i).await);
            } else {
                via.push(agent_once(&mut rtc, &agent, i).await);
                tokio::time::sleep(settle).await;
                raw.push(raw_once(&mut rtc, &image_id, i).await);
            }
            tokio::time::sleep(settle).await;
        }
        (raw, via)
    });
    let ops = agent_op_means(
        agent.metrics_port,
        &["run_podsandbox", "create_container", "start_container"],
    );
    drop(agent);
    cgroups::remove_cgroups("/kubelet-rs-bench-raw");
    let raw_ops = std::mem::take(&mut *RAW_OPS.lock().unwrap());
    let (rm, rp, ra) = stats(&mut raw);
    let (am, ap, aa) = stats(&mut via_agent);
    println!("pod start, {iters} iterations each, interleaved, order alternating (ms)");
    println!("{:<34} {:>9} {:>9} {:>9}", "path", "median", "p90", "mean");
    println!(
        "{:<34} {:>9.1} {:>9.1} {:>9.1}",
        "raw CRI (sandbox+create+start)", rm, rp, ra
    );
    println!(
        "{:<34} {:>9.1} {:>9.1} {:>9.1}",
        "kubelet-rs (manifest -> running)", am, ap, aa
    );
    println!("mean CRI call time (ms): raw / inside kubelet-rs");
    for (i, (op, agent_ms)) in ops.iter().enumerate() {
        let raw_ms = raw_ops.iter().map(|r| r[i]).sum::<f64>() / raw_ops.len().max(1) as f64;
        println!("  {op:<18} {raw_ms:>7.1} / {agent_ms:>7.1}");
    }
    println!(
        "overhead: median {:+.1} ms ({:.1} % of raw), mean {:+.1} ms ({:.1} %)",
        am - rm,
        (am / rm - 1.0) * 100.0,
        aa - ra,
        (aa / ra - 1.0) * 100.0
    );
}
