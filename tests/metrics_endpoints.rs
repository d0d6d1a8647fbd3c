//! The kubelet's monitoring endpoints on a real agent running a pod on containerd:
//! `/metrics/cadvisor` labels (containerd naming: `name` is the container ID, the sandbox and
//! the pod cgroup have `container=""`), `/metrics/resource`, `/metrics/probes`, `/metrics`,
//! `/stats/summary` (both shapes, GET and POST), cAdvisor's `/metrics` on the agent's 4194
//! port with `container_label_*`, and `promtool check metrics` on every one of them. The pod
//! pulls its image (`Always`), has an `emptyDir` and runs a small HTTP server, so that the
//! kubelet's image, volume and sandbox families and the container's descriptor and socket
//! counts are real.

mod cadvisor_support;
mod common;

use std::time::Duration;

use cadvisor_support::{free_port, get_ok, http, promtool_check, require_tool, samples, PROMTOOL};
use collectors::layout::CgroupLayout;
use collectors::sampler::CgroupPaths;
use common::{cri_containers, cri_sandboxes, require_runtime, Agent, BUSYBOX};
use serde_json::Value;

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: metered
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: scratch
    emptyDir: {}
  containers:
  - name: main
    image: 127.0.0.1:5000/kubelet-rs/busybox:1.35
    imagePullPolicy: Always
    command: [\"sh\", \"-c\", \"httpd -f -p 127.0.0.1:8080 & while true; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo tick; sleep 0.3; done\"]
    volumeMounts:
    - name: scratch
      mountPath: /data
    resources:
      limits:
        cpu: 200m
        memory: 64Mi
";

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("{name}=\"");
    let mut rest = labels;
    loop {
        let i = rest.find(&key)?;
        // A whole label name: at the start or after a comma.
        if i == 0 || rest.as_bytes()[i - 1] == b',' {
            let v = &rest[i + key.len()..];
            return Some(&v[..v.find('"')?]);
        }
        rest = &rest[i + key.len()..];
    }
}

#[test]
fn kubelet_metrics_endpoints_describe_a_running_pod() {
    if !require_runtime() {
        return;
    }
    assert!(BUSYBOX.contains("busybox"));
    let cadvisor_port = free_port();
    let agent = Agent::start_with(
        "metrics-endpoints",
        &["--cadvisor-port", &cadvisor_port.to_string()],
    );
    agent.write_manifest("metered.yaml", POD);
    let pod = agent.wait_running("metered", Duration::from_secs(90));
    let pod_name = agent.pod_name("metered");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    let containers = cri_containers(&uid);
    let cid = containers
        .iter()
        .find(|c| c.metadata.as_ref().is_some_and(|m| m.name == "main"))
        .map(|c| c.id.clone())
        .expect("main container");
    let sid = cri_sandboxes(&uid)[0].id.clone();
    let ro = agent.read_only_port;

    // /metrics/cadvisor: the container, its sandbox and its pod cgroup, as the kubelet labels them.
    let text = agent.wait("the pod's cAdvisor series", Duration::from_secs(60), || {
        let t = get_ok(ro, "/metrics/cadvisor");
        let cpu = samples(&t, "container_cpu_usage_seconds_total");
        let has = |pred: &dyn Fn(&str) -> bool| cpu.iter().any(|(l, _, _)| pred(l));
        let ok = has(&|l| label(l, "name") == Some(cid.as_str()))
            && has(&|l| label(l, "name") == Some(sid.as_str()))
            && has(&|l| label(l, "id").is_some_and(|id| id.ends_with(&format!("/pod{uid}"))));
        ok.then_some(t)
    });
    let cpu = samples(&text, "container_cpu_usage_seconds_total");
    let find =
        |pred: &dyn Fn(&str) -> bool| cpu.iter().find(|(l, _, _)| pred(l)).map(|s| s.0).unwrap();
    let c = find(&|l| label(l, "name") == Some(cid.as_str()));
    assert_eq!(label(c, "container"), Some("main"), "{c}");
    assert_eq!(label(c, "pod"), Some(pod_name.as_str()));
    assert_eq!(label(c, "namespace"), Some("default"));
    assert_eq!(label(c, "image"), Some(BUSYBOX));
    assert_eq!(label(c, "cpu"), Some("total"));
    let cgroup = label(c, "id").unwrap().to_string();
    assert!(cgroup.ends_with(&format!("/pod{uid}/{cid}")), "{c}");
    let s = find(&|l| label(l, "name") == Some(sid.as_str()));
    assert_eq!(
        label(s, "container"),
        Some(""),
        "containerd's sandbox has no container name: {s}"
    );
    assert_eq!(label(s, "pod"), Some(pod_name.as_str()));
    assert!(
        label(s, "image").unwrap().contains("/kubelet-rs/pause:"),
        "{s}"
    );
    let p = find(&|l| label(l, "id").is_some_and(|id| id.ends_with(&format!("/pod{uid}"))));
    assert_eq!(
        (
            label(p, "container"),
            label(p, "name"),
            label(p, "image"),
            label(p, "pod"),
            label(p, "namespace")
        ),
        (
            Some(""),
            Some(""),
            Some(""),
            Some(pod_name.as_str()),
            Some("default")
        ),
        "the pod cgroup is named after its pod: {p}"
    );
    // The CPU limit makes CFS families appear; the sandbox's netns gives the pod network.
    let throttle = samples(&text, "container_cpu_cfs_periods_total");
    assert!(throttle
        .iter()
        .any(|(l, _, _)| label(l, "container") == Some("main")));
    let net = samples(&text, "container_network_receive_bytes_total");
    assert!(
        net.iter()
            .any(|(l, _, _)| label(l, "name") == Some(sid.as_str())
                && label(l, "interface") == Some("eth0")),
        "no pod network"
    );
    assert!(samples(&text, "container_processes")
        .iter()
        .any(|(l, v, _)| label(l, "container") == Some("main") && *v >= 1.0));
    // CFS bursts where this kernel's cpu.stat has them, and nothing where it has not.
    let layout = CgroupLayout::detect(std::path::Path::new("/sys/fs/cgroup")).unwrap();
    let paths = CgroupPaths::resolve(&layout, &cgroup);
    let cpu_stat = paths
        .cpu
        .or(paths.unified)
        .map(|d| std::fs::read_to_string(d.join("cpu.stat")).unwrap())
        .expect("the container's cpu cgroup");
    let bursts = samples(&text, "container_cpu_cfs_burst_periods_total");
    assert_eq!(
        bursts
            .iter()
            .any(|(l, _, _)| label(l, "container") == Some("main")),
        cpu_stat.contains("nr_bursts "),
        "burst series follow the kernel's cpu.stat:\n{cpu_stat}"
    );
    // Descriptors and sockets of the container's processes: sh, sleep and httpd's listener
    // (counted every 10th pass, so wait for httpd to be seen).
    agent.wait(
        "the container's socket counted",
        Duration::from_secs(40),
        || {
            let t = get_ok(ro, "/metrics/cadvisor");
            let of = |family: &str| {
                samples(&t, family)
                    .iter()
                    .find(|(l, _, _)| label(l, "container") == Some("main"))
                    .map(|s| s.1)
            };
            let (fds, sockets) = (of("container_file_descriptors")?, of("container_sockets")?);
            assert!(fds >= sockets + 3.0, "fds {fds}, sockets {sockets}");
            (sockets >= 1.0).then_some(())
        },
    );
    assert!(!samples(&text, "machine_memory_bytes").is_empty());
    // cAdvisor's sample timestamps on container metrics, none on spec metrics.
    assert!(cpu.iter().all(|(_, _, ts)| ts.is_some()));
    assert!(samples(&text, "container_spec_memory_limit_bytes")
        .iter()
        .any(|(l, v, ts)| label(l, "container") == Some("main")
            && *v == 67_108_864.0
            && ts.is_none()));

    // /metrics/resource.
    let res = agent.wait(
        "resource metrics for the pod",
        Duration::from_secs(30),
        || {
            let t = get_ok(ro, "/metrics/resource");
            samples(&t, "pod_cpu_usage_seconds_total")
                .iter()
                .any(|(l, _, _)| label(l, "pod") == Some(pod_name.as_str()))
                .then_some(t)
        },
    );
    let want = format!("container=\"main\",namespace=\"default\",pod=\"{pod_name}\"");
    assert!(
        samples(&res, "container_cpu_usage_seconds_total")
            .iter()
            .any(|(l, _, ts)| *l == want && ts.is_some()),
        "{res}"
    );
    assert!(samples(&res, "container_memory_working_set_bytes")
        .iter()
        .any(|(l, v, _)| *l == want && *v > 0.0));
    assert!(samples(&res, "container_start_time_seconds")
        .iter()
        .any(|(l, v, ts)| *l == want && *v > 1.6e9 && ts.is_none()));
    assert_eq!(samples(&res, "node_cpu_usage_seconds_total").len(), 1);
    assert_eq!(samples(&res, "node_memory_working_set_bytes").len(), 1);
    assert_eq!(
        samples(&res, "resource_scrape_error"),
        vec![("", 0.0, None)]
    );
    assert!(res.contains("# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds\n"));

    // /metrics: the kubelet's families, process_*, the collector's own cost.
    let own = get_ok(ro, "/metrics");
    assert!(
        samples(&own, "kubelet_running_pods")
            .iter()
            .any(|(_, v, _)| *v >= 1.0),
        "{own}"
    );
    assert!(samples(&own, "kubelet_node_name")
        .iter()
        .any(|(l, _, _)| label(l, "node") == Some(agent.node.as_str())));
    // The families the kubelet has for what this pod went through: its image pulled, its
    // sandbox run, its cgroup created, its emptyDir set up, the read-only server's requests,
    // the housekeeping's pod counts; an eviction family only once something is evicted.
    let own = agent.wait("housekeeping's pod counts", Duration::from_secs(30), || {
        let t = get_ok(ro, "/metrics");
        let desired = samples(&t, "kubelet_desired_pods")
            .iter()
            .any(|(l, v, _)| *l == "static=\"true\"" && *v >= 1.0);
        desired.then_some(t)
    });
    let value = |family: &str, labels: &str| {
        samples(&own, family)
            .iter()
            .find(|(l, _, _)| *l == labels)
            .map(|s| s.1)
            .unwrap_or_else(|| panic!("{family}{{{labels}}} missing:\n{own}"))
    };
    for (family, labels) in [
        ("kubelet_started_pods_total", ""),
        ("kubelet_started_containers_total", "container_type=\"container\""),
        ("kubelet_run_podsandbox_duration_seconds_count", "runtime_handler=\"\""),
        ("kubelet_image_pull_duration_seconds_count", "image_size_in_bytes=\"0-10MB\""),
        ("kubelet_cgroup_manager_duration_seconds_count", "operation_type=\"create\""),
        ("kubelet_containers_per_pod_count_count", ""),
        ("kubelet_desired_pods", "static=\"true\""),
        ("kubelet_active_pods", "static=\"true\""),
        ("kubelet_working_pods", "config=\"desired\",lifecycle=\"sync\",static=\"true\""),
        ("volume_manager_total_volumes", "plugin_name=\"kubernetes.io/empty-dir\",state=\"desired_state_of_world\""),
        ("volume_manager_total_volumes", "plugin_name=\"kubernetes.io/empty-dir\",state=\"actual_state_of_world\""),
        ("storage_operation_duration_seconds_count", "migrated=\"false\",operation_name=\"volume_mount\",status=\"success\",volume_plugin=\"kubernetes.io/empty-dir\""),
        ("kubelet_http_requests_total", "long_running=\"false\",method=\"GET\",path=\"metrics/cadvisor\",server_type=\"readonly\""),
        ("kubelet_http_requests_duration_seconds_count", "long_running=\"false\",method=\"GET\",path=\"pods\",server_type=\"readonly\""),
    ] {
        assert!(value(family, labels) >= 1.0, "{family}{{{labels}}}:\n{own}");
    }
    assert_eq!(value("kubelet_started_pods_errors_total", ""), 0.0);
    assert_eq!(
        value("kubelet_mirror_pods", ""),
        0.0,
        "no API server, no mirror pods"
    );
    let v = value("kubelet_cgroup_version", "");
    assert!(v == 1.0 || v == 2.0, "{v}");
    let build = samples(&own, "kubernetes_build_info");
    assert!(
        build.len() == 1 && label(build[0].0, "git_version").is_some_and(|g| g.starts_with("v1.")),
        "{build:?}"
    );
    for absent in [
        "kubelet_evictions",
        "kubelet_eviction_stats_age_seconds",
        "kubelet_restarted_pods_total",
    ] {
        assert!(
            samples(&own, absent).is_empty(),
            "{absent} without an event"
        );
    }
    for f in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "kubelet_rs_collector_passes_total",
        "kubelet_rs_collector_pass_duration_seconds_count",
    ] {
        assert!(!samples(&own, f).is_empty(), "{f} missing");
    }
    assert!(samples(&own, "kubelet_rs_metrics_scrapes_total")
        .iter()
        .any(|(l, _, _)| label(l, "endpoint") == Some("/metrics/cadvisor")));
    let probes = get_ok(ro, "/metrics/probes");

    // /stats/summary.
    let summary: Value = agent.wait("a full summary", Duration::from_secs(30), || {
        let v: Value = serde_json::from_str(&get_ok(ro, "/stats/summary")).unwrap();
        v["pods"]
            .as_array()?
            .iter()
            .any(|p| p["podRef"]["uid"] == uid.as_str() && p["containers"][0]["logs"].is_object())
            .then_some(v)
    });
    let node = &summary["node"];
    assert_eq!(node["nodeName"], agent.node.as_str());
    assert!(
        node["cpu"]["usageNanoCores"].is_u64()
            && node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0
    );
    assert!(
        node["memory"]["workingSetBytes"].as_u64().unwrap() > 0
            && node["memory"]["availableBytes"].is_u64()
    );
    assert!(node["fs"]["capacityBytes"].as_u64().unwrap() > 0);
    assert!(node["runtime"]["imageFs"]["usedBytes"].is_u64(), "{node}");
    assert!(node["rlimit"]["maxpid"].as_i64().unwrap() > 0);
    assert!(
        node["systemContainers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "pods"),
        "{node}"
    );
    let p = summary["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["uid"] == uid.as_str())
        .unwrap();
    assert_eq!(p["podRef"]["name"], pod_name.as_str());
    assert_eq!(p["podRef"]["namespace"], "default");
    assert!(
        p["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap() > 0,
        "{p}"
    );
    assert_eq!(
        p["memory"]["availableBytes"].as_u64().unwrap()
            + p["memory"]["workingSetBytes"].as_u64().unwrap(),
        67_108_864,
        "pod limit"
    );
    assert_eq!(p["network"]["name"], "eth0", "{p}");
    let c = &p["containers"][0];
    assert_eq!(c["name"], "main");
    assert!(
        c["logs"]["usedBytes"].as_u64().unwrap() > 0,
        "the container logs ticks"
    );
    assert!(c["memory"]["workingSetBytes"].as_u64().unwrap() > 0);
    assert!(
        p["ephemeral-storage"]["usedBytes"].as_u64().unwrap()
            >= c["logs"]["usedBytes"].as_u64().unwrap()
    );
    assert!(p["process_stats"]["process_count"].as_u64().unwrap() >= 1);
    let small: Value =
        serde_json::from_str(&get_ok(ro, "/stats/summary?only_cpu_and_memory=true")).unwrap();
    assert!(small["node"].get("fs").is_none() && small["node"].get("network").is_none());
    let sp = small["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["podRef"]["uid"] == uid.as_str())
        .unwrap();
    assert!(
        sp.get("network").is_none()
            && sp.get("ephemeral-storage").is_none()
            && sp["containers"][0].get("logs").is_none()
    );
    assert!(sp["cpu"].is_object() && sp["memory"].is_object());
    let (code, _, body) = http(ro, "POST", "/stats/summary", "only_cpu_and_memory=true").unwrap();
    assert_eq!(code, 200);
    assert!(
        serde_json::from_str::<Value>(&body).unwrap()["node"]
            .get("fs")
            .is_none(),
        "the form body is read"
    );
    let (code, _, body) =
        http(ro, "GET", "/stats/summary?only_cpu_and_memory=perhaps", "").unwrap();
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            "invalid only_cpu_and_memory \"perhaps\": expected true or false\n"
        )
    );

    // The agent's 4194: cAdvisor's labels for the same container, and its API naming it.
    let c4194 = get_ok(cadvisor_port, "/metrics");
    assert!(samples(&c4194, "container_memory_usage_bytes")
        .iter()
        .any(|(l, _, _)| {
            label(l, "container_label_io_kubernetes_container_name") == Some("main")
                && label(l, "name") == Some(cid.as_str())
        }));
    let (code, _, body) = http(
        cadvisor_port,
        "POST",
        &format!("/api/v1.3/containers{cgroup}"),
        r#"{"num_stats":1}"#,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["aliases"][0], cid.as_str());
    assert_eq!(info["namespace"], "containerd");
    assert_eq!(
        info["spec"]["labels"]["io.kubernetes.container.name"],
        "main"
    );

    if require_tool(PROMTOOL, "prometheus") {
        for (name, body) in [
            ("/metrics", &own),
            ("/metrics/cadvisor", &text),
            ("/metrics/resource", &res),
            ("/metrics/probes", &probes),
            ("4194 /metrics", &c4194),
        ] {
            promtool_check(name, body);
        }
    }
}
