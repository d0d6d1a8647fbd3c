//! Settings that act on the host, checked live on the real containerd: `cpuCFSQuota` and
//! `cpuCFSQuotaPeriod` in the container and pod cgroups, `maxOpenFiles` on the agent process.
//! Integration tier: root and `scripts/runtime up`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use collectors::layout::{cgroup_dir, CgroupLayout};
use common::{require_runtime, Agent, BUSYBOX};
use serde_json::Value;

const START: Duration = Duration::from_secs(90);

/// A Guaranteed pod with a 250m CPU limit.
fn limited_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  \
         terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    image: {BUSYBOX}\n    \
         command: [\"sleep\", \"3600\"]\n    resources:\n      limits:\n        cpu: 250m\n        \
         memory: 32Mi\n"
    )
}

/// (period µs, quota µs; -1 for none) of a cgroup, on whichever layout the host has.
fn cfs(name: &str) -> (i64, i64) {
    let layout = CgroupLayout::detect(Path::new("/sys/fs/cgroup")).unwrap();
    let read = |p: PathBuf| {
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    };
    match layout.v1().and_then(|c| c.cpu.clone()) {
        Some(cpu) => {
            let dir = cgroup_dir(&cpu, name);
            (
                read(dir.join("cpu.cfs_period_us")).parse().unwrap(),
                read(dir.join("cpu.cfs_quota_us")).parse().unwrap(),
            )
        }
        None => {
            let dir = cgroup_dir(layout.unified().unwrap(), name);
            let max = read(dir.join("cpu.max"));
            let (quota, period) = max.split_once(' ').unwrap();
            (
                period.parse().unwrap(),
                if quota == "max" {
                    -1
                } else {
                    quota.parse().unwrap()
                },
            )
        }
    }
}

/// The pod cgroup and its container's cgroup (cgroupfs names).
fn cgroups(agent: &Agent, pod: &Value) -> (String, String) {
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let cid = pod["status"]["containerStatuses"][0]["containerID"]
        .as_str()
        .unwrap()
        .rsplit("://")
        .next()
        .unwrap()
        .to_string();
    let pod_cg = format!("{}/kubepods/pod{uid}", agent.cgroup_root);
    let container_cg = format!("{pod_cg}/{cid}");
    (pod_cg, container_cg)
}

#[test]
fn cpu_cfs_quota_off_puts_no_quota_on_limits() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start_with("cfs-off", &["--cpu-cfs-quota=false"]);
    agent.write_manifest("limited.yaml", &limited_pod("limited"));
    let pod = agent.wait_running("limited", START);
    let (pod_cg, container_cg) = cgroups(&agent, &pod);
    assert_eq!(cfs(&container_cg).1, -1, "container {container_cg}");
    assert_eq!(cfs(&pod_cg).1, -1, "pod {pod_cg}");
}

#[test]
fn cpu_cfs_quota_period_sets_period_and_quota() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start_with(
        "cfs-period",
        &[
            "--cpu-cfs-quota-period=50ms",
            "--feature-gates=CustomCPUCFSQuotaPeriod=true",
        ],
    );
    agent.write_manifest("limited.yaml", &limited_pod("limited"));
    let pod = agent.wait_running("limited", START);
    let (pod_cg, container_cg) = cgroups(&agent, &pod);
    // 250m over a 50 ms period: 12.5 ms.
    assert_eq!(
        cfs(&container_cg),
        (50_000, 12_500),
        "container {container_cg}"
    );
    assert_eq!(cfs(&pod_cg), (50_000, 12_500), "pod {pod_cg}");
}

#[test]
fn max_open_files_is_the_agents_limit() {
    if !require_runtime() {
        return;
    }
    let agent = Agent::start_with("max-open-files", &["--max-open-files=4096"]);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", agent.pid().unwrap())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&fields[3..5], ["4096", "4096"], "{line}");
}
