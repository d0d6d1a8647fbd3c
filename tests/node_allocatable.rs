//! Node allocatable is enforced (issue 11, item 4), on the real containerd: with
//! `enforceNodeAllocatable: [pods, system-reserved, kube-reserved-compressible]` the agent's
//! `kubepods` cgroup gets capacity − kubeReserved − systemReserved (memory, CPU shares, PIDs),
//! the reserved cgroups get their reservations (CPU shares only for the `-compressible`
//! level), and the QoS tiers follow the pods as they come and go: `burstable` has the shares of
//! its pods' CPU requests, `besteffort` the minimum.
//!
//! Every value is read from the live cgroups, found through the collectors' layout detection;
//! the expected ones come from the collectors' machine info and the kernel's task limits.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use collectors::layout::CgroupLayout;
use common::{busybox_pod, unique, Agent, BUSYBOX};
use kubelet_rs::agent::CGROUP_MOUNT;

const MI: i64 = 1 << 20;

/// Reads cgroup settings wherever the layout keeps them, in v1 terms.
struct Live {
    layout: CgroupLayout,
}

impl Live {
    fn new() -> Self {
        Live {
            layout: CgroupLayout::detect(Path::new(CGROUP_MOUNT)).expect("cgroup layout"),
        }
    }

    /// The directory of cgroup `name` in the hierarchy of `controller`.
    fn dir(&self, controller: &str, name: &str) -> PathBuf {
        let rel = name.trim_start_matches('/');
        match self.layout.v1() {
            Some(c) => {
                let h = match controller {
                    "cpu" => c.cpu.clone(),
                    "memory" => c.memory.clone(),
                    "pids" => c.pids.clone(),
                    other => panic!("no {other} hierarchy in the layout"),
                };
                h.expect("controller mounted").join(rel)
            }
            None => self.layout.unified().unwrap().join(rel),
        }
    }

    fn read(&self, controller: &str, name: &str, file: &str) -> String {
        let p = self.dir(controller, name).join(file);
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// CPU shares (v1), or the weight the kubelet writes for them (v2).
    fn cpu(&self, name: &str) -> i64 {
        if self.layout.v1().is_some() {
            self.read("cpu", name, "cpu.shares").parse().unwrap()
        } else {
            self.read("cpu", name, "cpu.weight").parse().unwrap()
        }
    }

    /// What [`Live::cpu`] reads for `shares`.
    fn expected_cpu(&self, shares: i64) -> i64 {
        if self.layout.v1().is_some() {
            shares
        } else {
            1 + ((shares - 2) * 9999) / 262_142
        }
    }

    fn memory_limit(&self, name: &str) -> i64 {
        let (file, max) = match self.layout.v1() {
            Some(_) => ("memory.limit_in_bytes", None),
            None => ("memory.max", Some("max")),
        };
        let v = self.read("memory", name, file);
        if Some(v.as_str()) == max {
            i64::MAX
        } else {
            v.parse().unwrap()
        }
    }

    fn pids_max(&self, name: &str) -> String {
        self.read("pids", name, "pids.max")
    }

    /// Creates cgroup `name` in every hierarchy (a reserved cgroup the test owns).
    fn create_everywhere(&self, name: &str) -> Vec<PathBuf> {
        let rel = name.trim_start_matches('/');
        let dirs: Vec<PathBuf> = match self.layout.v1() {
            // Every v1 hierarchy under the mount root, as systemd creates its slices.
            Some(_) => std::fs::read_dir(CGROUP_MOUNT)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.join("cgroup.procs").exists() && p.join("tasks").exists())
                .map(|p| p.join(rel))
                .collect(),
            None => vec![self.layout.unified().unwrap().join(rel)],
        };
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        dirs
    }
}

/// `MilliCPUToShares`.
fn shares(milli: i64) -> i64 {
    (milli * 1024 / 1000).clamp(2, 262_144)
}

fn page_floor(bytes: i64) -> i64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64;
    bytes / page * page
}

/// Removes the test's reserved cgroups on the way out.
struct Cgroups(Vec<PathBuf>);

impl Drop for Cgroups {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn burstable_pod(name: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    command: [\"sleep\", \"3600\"]\n    resources:\n      requests:\n        cpu: {cpu}\n"
    )
}

#[test]
fn kubepods_reserved_and_qos_cgroups_carry_the_kubelets_limits() {
    if !common::require_runtime() {
        return;
    }
    let live = Live::new();
    let system = format!("/{}", unique("nalloc-system"));
    let kube = format!("/{}", unique("nalloc-kube"));
    let _owned = Cgroups(
        live.create_everywhere(&system)
            .into_iter()
            .chain(live.create_everywhere(&kube))
            .collect(),
    );
    let kube_memory_before = live.memory_limit(&kube);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             enforceNodeAllocatable: [pods, system-reserved, kube-reserved-compressible]\n\
             systemReserved: {{cpu: 300m, memory: 200Mi, pid: \"1000\"}}\n\
             kubeReserved: {{cpu: 200m, memory: 100Mi}}\n\
             systemReservedCgroup: {system}\nkubeReservedCgroup: {kube}\n"
        ),
    )
    .unwrap();
    let agent = Agent::start_with("nalloc", &["--config", config.to_str().unwrap()]);

    // Capacity as the collectors see it.
    let machine = collectors::machine::machine_info(&Default::default()).unwrap();
    let cpu_milli = machine.num_cores as i64 * 1000;
    let memory = machine.memory_capacity as i64;
    let tasks = ["/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"]
        .iter()
        .map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .trim()
                .parse::<i64>()
                .unwrap()
        })
        .min()
        .unwrap();

    let kubepods = format!("{}/kubepods", agent.cgroup_root);
    assert_eq!(
        live.memory_limit(&kubepods),
        page_floor(memory - 300 * MI),
        "kubepods memory = capacity − 200Mi − 100Mi (the hard eviction threshold is not subtracted)"
    );
    assert_eq!(
        live.cpu(&kubepods),
        live.expected_cpu(shares(cpu_milli - 500))
    );
    assert_eq!(live.pids_max(&kubepods), (tasks - 1000).to_string());
    // system-reserved: the whole reservation; kube-reserved-compressible: CPU only.
    assert_eq!(live.memory_limit(&system), 200 * MI);
    assert_eq!(live.cpu(&system), live.expected_cpu(shares(300)));
    assert_eq!(live.pids_max(&system), "1000");
    assert_eq!(live.cpu(&kube), live.expected_cpu(shares(200)));
    assert_eq!(live.memory_limit(&kube), kube_memory_before);

    let burstable = format!("{kubepods}/burstable");
    let besteffort = format!("{kubepods}/besteffort");
    let tier = |name: &str, want: i64, what: &str| {
        let want = live.expected_cpu(want);
        agent.wait(what, Duration::from_secs(30), || {
            (live.cpu(name) == want).then_some(())
        });
    };
    tier(&burstable, 2, "burstable at the minimum with no pods");
    tier(&besteffort, 2, "besteffort at the minimum");

    // Pods come: burstable follows their CPU requests; a BestEffort pod changes nothing.
    agent.write_manifest("a.yaml", &burstable_pod("a", "300m"));
    agent.write_manifest("b.yaml", &burstable_pod("b", "200m"));
    agent.write_manifest("e.yaml", &busybox_pod("e", "sleep 3600", ""));
    for p in ["a", "b", "e"] {
        agent.wait_running(p, Duration::from_secs(120));
    }
    tier(&burstable, shares(500), "burstable = shares of 300m + 200m");
    assert_eq!(live.cpu(&besteffort), live.expected_cpu(2));
    println!(
        "burstable cpu with pods a, b: {} ({})",
        live.cpu(&burstable),
        if live.layout.v1().is_some() {
            "cpu.shares"
        } else {
            "cpu.weight"
        }
    );

    // Pods go: burstable follows down to the minimum.
    agent.remove_manifest("a.yaml");
    tier(
        &burstable,
        shares(200),
        "burstable = shares of 200m once a is gone",
    );
    agent.remove_manifest("b.yaml");
    tier(
        &burstable,
        2,
        "burstable back at the minimum once b is gone",
    );
    // kubepods keeps its limits throughout.
    assert_eq!(live.memory_limit(&kubepods), page_floor(memory - 300 * MI));
    assert_eq!(
        live.cpu(&kubepods),
        live.expected_cpu(shares(cpu_milli - 500))
    );
}

#[test]
fn a_missing_reserved_cgroup_stops_the_agent_with_its_name() {
    if !common::require_runtime() {
        return;
    }
    let missing = format!("/{}", unique("nalloc-missing"));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             enforceNodeAllocatable: [pods, kube-reserved]\n\
             kubeReserved: {{cpu: 100m, memory: 100Mi}}\nkubeReservedCgroup: {missing}\n"
        ),
    )
    .unwrap();
    let root = dir.path().join("root");
    let node = unique("nalloc-missing");
    let cgroup_root = format!("/{node}");
    let log = dir.path().join("agent.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "--hostname-override",
            &node,
            "--root-dir",
            root.to_str().unwrap(),
            "--cgroup-root",
            &cgroup_root,
            "--healthz-port",
            "0",
            "--cadvisor-port",
            "0",
            "--port",
            &common::free_port().to_string(),
        ])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // It must give up on its own; one that keeps running is a failure, not a hang.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // The agent made its kubepods before it checked the reserved cgroup.
    common::cleanup_node(&node, &cgroup_root);
    let stderr = std::fs::read_to_string(&log).unwrap();
    let status = status.unwrap_or_else(|| panic!("the agent kept running:\n{stderr}"));
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
}
