//! Pod startup through the API server: `API_POD_START_PODS` (default 30) pods created at once
//! with the kube client against a test API server, each timed from its create call until a
//! watch sees it Running with its container running (kubelet-rs joined with `--kubeconfig`,
//! the real containerd); next to the same number of pods started at once with raw CRI calls
//! (RunPodSandbox, CreateContainer, StartContainer with the agent's own configs) in the same
//! run. Prints p50/p99/max of each.
//!
//! Run with `cargo bench --bench api_pod_start` (root, `scripts/runtime up` first).

#[path = "support/cgroups.rs"]
mod cgroups;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::Api;
use kubelet_rs::cm::{CfsQuota, CgroupManager, PodResources, QosClass};
use kubelet_rs::kuberuntime::container::{container_config, ContainerContext};
use kubelet_rs::kuberuntime::dns::{pod_dns, read_host_config, DnsSettings};
use kubelet_rs::kuberuntime::sandbox::{sandbox_config, SandboxContext, SeccompPolicy};
use kubelet_rs::{fieldpath::PodRuntimeFacts, objects::MemoryObjects};
use proto::cri;

const SOCK: &str = "/run/kubelet-rs/containerd/containerd.sock";
const IMAGE: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";

fn pod_json(name: &str, node: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"nodeName": node, "terminationGracePeriodSeconds": 1,
            "automountServiceAccountToken": false,
            "containers": [{"name": "main", "image": IMAGE, "command": ["sleep", "3600"]}]}
    })
}

fn running(p: &Pod) -> bool {
    let s = p.status.as_ref();
    s.and_then(|s| s.phase.as_deref()) == Some("Running")
        && s.and_then(|s| s.container_statuses.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .all(|c| c.state.as_ref().is_some_and(|st| st.running.is_some()))
            })
}

fn percentiles(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    format!(
        "p50 {:7.1} ms  p99 {:7.1} ms  max {:7.1} ms  (n={})",
        at(0.5),
        at(0.99),
        v[v.len() - 1],
        v.len()
    )
}

/// One raw CRI pod; returns the time until StartContainer returned, and the ids to clean up.
async fn raw_pod(mut rt: cri::RuntimeClient, image_id: String, i: usize) -> (f64, String, String) {
    let uid = format!("bench-apiraw-{}-{i}", std::process::id());
    let p: Pod = serde_json::from_value(pod_json(&format!("apiraw-{i}"), "bench")).unwrap();
    let mut p = p;
    p.metadata.uid = Some(uid.clone());
    let dns_settings = DnsSettings {
        resolv_conf: Some("/etc/resolv.conf".into()),
        ..Default::default()
    };
    let host_dns = read_host_config(dns_settings.resolv_conf.as_deref())
        .await
        .unwrap_or_default();
    let seccomp = SeccompPolicy::default();
    let sctx = SandboxContext {
        node: "bench-apiraw",
        cgroup_parent: String::new(),
        log_root: Path::new("/var/log/pods"),
        dns: pod_dns(&dns_settings, &host_dns, &p).0.into(),
        seccomp: &seccomp,
    };
    let mut scfg = sandbox_config(&p, 0, &sctx);
    let objects = MemoryObjects::default();
    let facts = PodRuntimeFacts::default();
    let c = &p.spec.as_ref().unwrap().containers[0];
    let cctx = ContainerContext {
        node: "bench-apiraw",
        image_ref: &image_id,
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
    let cgroups =
        CgroupManager::new(Path::new("/sys/fs/cgroup"), "/kubelet-rs-bench-apiraw").unwrap();
    scfg.linux.as_mut().unwrap().cgroup_parent = cgroups
        .ensure_pod_cgroup(QosClass::BestEffort, &uid, &PodResources::default())
        .unwrap();
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
    rt.start_container(cri::StartContainerRequest {
        container_id: id.clone(),
    })
    .await
    .unwrap();
    (start.elapsed().as_secs_f64() * 1000.0, sb, id)
}

async fn raw_run(n: usize) -> Vec<f64> {
    let ch = proto::cri::connect(Path::new(SOCK))
        .await
        .expect("containerd");
    let mut rt = cri::RuntimeClient::new(ch.clone());
    let image_id = {
        let mut images = cri::ImageClient::new(ch.clone());
        images
            .image_status(cri::ImageStatusRequest {
                image: Some(cri::ImageSpec {
                    image: IMAGE.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await
            .unwrap()
            .into_inner()
            .image
            .map(|i| i.id)
            .expect("busybox image present (scripts/runtime up)")
    };
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(raw_pod(rt.clone(), image_id.clone(), i)))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        let (ms, sb, id) = t.await.unwrap();
        out.push(ms);
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
    }
    out
}

async fn api_run(client: kube::Client, node: &str, n: usize) -> Vec<f64> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let stream = watcher::watcher(
        pods.clone(),
        watcher::Config::default().fields(&format!("spec.nodeName={node}")),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let watch = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            if let Ok(Event::Apply(p) | Event::InitApply(p)) = ev {
                if running(&p) {
                    let _ = tx.send((p.metadata.name.unwrap_or_default(), Instant::now()));
                }
            }
        }
    });
    let mut created: HashMap<String, Instant> = HashMap::new();
    let creates: Vec<_> = (0..n)
        .map(|i| {
            let pods = pods.clone();
            let name = format!("api-{i}");
            let p: Pod = serde_json::from_value(pod_json(&name, node)).unwrap();
            tokio::spawn(async move {
                let t0 = Instant::now();
                pods.create(&PostParams::default(), &p).await.unwrap();
                (name, t0)
            })
        })
        .collect();
    for c in creates {
        let (name, t0) = c.await.unwrap();
        created.insert(name, t0);
    }
    let mut out: HashMap<String, f64> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while out.len() < n {
        let (name, at) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("every pod Running within 180 s")
            .unwrap();
        if let Some(t0) = created.get(&name) {
            out.entry(name).or_insert((at - *t0).as_secs_f64() * 1000.0);
        }
    }
    watch.abort();
    for name in created.keys() {
        let _ = pods.delete(name, &DeleteParams::default()).await;
    }
    // The agent stops them and deletes them for good: wait, so that nothing is left behind.
    for _ in 0..600 {
        let left = pods
            .list(&kube::api::ListParams::default().fields(&format!("spec.nodeName={node}")))
            .await
            .map(|l| l.items.len())
            .unwrap_or(1);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    out.into_values().collect()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 || !Path::new(SOCK).exists() {
        eprintln!("api_pod_start: needs root and containerd (scripts/runtime up); skipped");
        return;
    }
    let n: usize = std::env::var("API_POD_START_PODS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let server = testkit::TestApiServer::start().expect("test-apiserver");
    let node = format!("bench-api-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.node_kubeconfig(&node).unwrap();
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let hz = free();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
        .args(["--hostname-override", &node, "--kubeconfig"])
        .arg(&kubeconfig)
        .arg("--root-dir")
        .arg(dir.path().join("root"))
        .args(["--cgroup-root", &format!("/{node}")])
        .args(["--healthz-port", &hz.to_string(), "--read-only-port", "0"])
        .args(["--address", "127.0.0.1", "--port", &free().to_string()])
        .args(["--cadvisor-port", "0", "--v", "0"])
        .args(["--eviction-hard", "memory.available<1Mi"])
        .args(["--max-pods", "250"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start kubelet-rs");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (api, raw) = rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(server.admin_kubeconfig()).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        // The Node, so that nothing waits for registration.
        let nodes: Api<Node> = Api::all(client.clone());
        let n_obj: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}
        }))
        .unwrap();
        let _ = nodes.create(&PostParams::default(), &n_obj).await;
        let api = api_run(client, &node, n).await;
        let raw = raw_run(n).await;
        (api, raw)
    });
    println!("pod start, {n} pods at once (create → Running):");
    println!(
        "  through the API server + kubelet-rs: {}",
        percentiles(api)
    );
    println!(
        "  raw CRI (sandbox+create+start):      {}",
        percentiles(raw)
    );
    // The agent removes the stopped pods' containers and sandboxes once the API drops them.
    std::thread::sleep(Duration::from_secs(5));
    let _ = agent.kill();
    let _ = agent.wait();
    cgroups::remove_cgroups(&node);
    cgroups::remove_cgroups("kubelet-rs-bench-apiraw");
    // The raw pods' log directories (`default_apiraw-<i>_bench-apiraw-<pid>-<i>`): the runtime
    // leaves them behind, as it does for the kubelet.
    let ours = format!("_bench-apiraw-{}-", std::process::id());
    for e in std::fs::read_dir("/var/log/pods")
        .into_iter()
        .flatten()
        .flatten()
    {
        if e.file_name().to_string_lossy().contains(&ours) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
