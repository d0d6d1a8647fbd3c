//! Golden files for the JSON shapes, and the routes against a monitor over a fixture tree.
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p kubelet-rs --lib cadvisor`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use collectors::machine as cm;
use collectors::model as m;
use collectors::testing::{FixtureCgroup, FixtureTree, Layout};
use collectors::{ContainerIdentity, ContainerSpec, Monitor, MonitorConfig, NameRegistry};
use tower::ServiceExt;

use super::api::{self, StatsContext};
use super::*;

/// Compares the serializer's own output (field order included: cAdvisor's struct order) with
/// a golden file.
fn golden<T: serde::Serialize>(name: &str, actual: &T) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/cadvisor/testdata")
        .join(name);
    let pretty = serde_json::to_string_pretty(actual).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        pretty,
        want,
        "{} differs from the golden file",
        path.display()
    );
}

fn fixed_machine() -> cm::MachineInfo {
    let cache = |level, ty: &str, size| cm::Cache {
        id: 0,
        size,
        cache_type: ty.into(),
        level,
    };
    cm::MachineInfo {
        timestamp: 1_700_000_000_123_456_789,
        vendor_id: "GenuineIntel".into(),
        num_cores: 2,
        num_physical_cores: 2,
        num_sockets: 1,
        cpu_frequency_khz: 2_100_000,
        memory_capacity: 25_275_133_952,
        swap_capacity: 0,
        hugepages: vec![cm::HugePages {
            page_size: 2048,
            num_pages: 0,
        }],
        machine_id: "3d1219c7c4c5404aaa1f6d2a48adfda4".into(),
        system_uuid: String::new(),
        boot_id: "46ba7661-bb56-476e-98d2-5755239ae7f9".into(),
        filesystems: vec![cm::FsInfo {
            device: "/dev/vda".into(),
            major: 254,
            minor: 0,
            mountpoint: "/".into(),
            capacity: 67_000_000_000,
            fs_type: "ext4".into(),
            inodes: 4_000_000,
            has_inodes: true,
        }],
        disk_map: BTreeMap::from([(
            "254:0".to_string(),
            cm::DiskInfo {
                name: "vda".into(),
                major: 254,
                minor: 0,
                size: 68_719_476_736,
                scheduler: "mq-deadline".into(),
            },
        )]),
        network_devices: vec![cm::NetInfo {
            name: "eth0".into(),
            mac_address: "02:fc:00:00:00:01".into(),
            speed: -1,
            mtu: 1400,
        }],
        topology: vec![cm::NumaNode {
            id: 0,
            memory: 8_013_434_880,
            hugepages: vec![],
            cores: (0..2)
                .map(|i| cm::Core {
                    id: i,
                    threads: vec![i],
                    caches: vec![
                        cache(1, "Data", 49152),
                        cache(1, "Instruction", 32768),
                        cache(2, "Unified", 2_097_152),
                    ],
                    uncore_caches: vec![],
                    socket_id: 0,
                })
                .collect(),
            caches: vec![cache(3, "Unified", 314_572_800)],
            distances: vec![10],
        }],
        cloud_provider: "Unknown".into(),
        instance_type: "Unknown".into(),
        instance_id: "None".into(),
    }
}

fn fixed_samples() -> Vec<m::ContainerStats> {
    let sample = |ts: u64, cpu: u64| m::ContainerStats {
        timestamp: ts,
        cpu: Some(m::CpuStats {
            usage_total: cpu,
            usage_user: cpu * 3 / 4,
            usage_system: cpu / 4,
            cfs_periods: 10,
            cfs_throttled_periods: 2,
            cfs_throttled_time: 5_000_000,
        }),
        memory: Some(m::MemoryStats {
            usage: 10_485_760,
            max_usage: 12_582_912,
            limit: 67_108_864,
            working_set: 7_340_032,
            rss: 6_291_456,
            cache: 3_145_728,
            total_inactive_file: 3_145_728,
            pgfault: 100,
            pgmajfault: 1,
            hierarchical_pgfault: 120,
            hierarchical_pgmajfault: 2,
            ..Default::default()
        }),
        pids: Some(m::PidsStats {
            current: 3,
            max: u64::MAX,
        }),
        cpu_burst: Some(m::CpuBurstStats {
            bursts: 4,
            burst_time: 1_500_000,
        }),
        process_count: Some(2),
        fds: Some(m::FdStats { fds: 9, sockets: 2 }),
        blkio: Some(vec![m::BlkioDevice {
            dev: m::DevNum {
                major: 254,
                minor: 0,
            },
            bytes: m::IoCounts {
                read: 4096,
                write: 8192,
                sync: 4096,
                async_: 8192,
                discard: 0,
            },
            ops: m::IoCounts {
                read: 1,
                write: 2,
                sync: 1,
                async_: 2,
                discard: 0,
            },
        }]),
        network: Some(vec![m::InterfaceStats {
            name: m::IfName::new(b"eth0"),
            counters: m::NetCounters {
                rx_bytes: 1000,
                rx_packets: 10,
                tx_bytes: 2000,
                tx_packets: 20,
                ..Default::default()
            },
        }]),
        psi: m::PsiStats {
            cpu: Some(m::Psi {
                some: m::PsiData {
                    total: 1234,
                    avg10: 0.5,
                    avg60: 0.0,
                    avg300: 0.0,
                },
                full: m::PsiData::default(),
            }),
            memory: None,
            io: None,
        },
    };
    vec![
        sample(1_700_000_000_000_000_000, 1_000_000_000),
        sample(1_700_000_001_000_000_000, 1_250_000_000),
    ]
}

fn fixed_spec() -> ContainerSpec {
    ContainerSpec {
        creation_time: 1_699_999_000_500_000_000,
        has_cpu: true,
        cpu_shares: 512,
        cpu_quota: Some(50_000),
        cpu_period: 100_000,
        cpu_mask: "0-1".into(),
        has_memory: true,
        memory_limit: 67_108_864,
        memory_reservation: 0,
        swap_limit: 9_223_372_036_854_771_712,
        has_processes: true,
        pids_limit: 1024,
        has_diskio: true,
    }
}

#[test]
fn golden_machine() {
    golden("machine.json", &api::MachineInfo::from(&fixed_machine()));
}

#[test]
fn golden_spec() {
    let identity = ContainerIdentity {
        aliases: vec!["k8s_app_web-0_default_uid-1_0".into(), "abc123".into()],
        namespace: "containerd".into(),
        labels: BTreeMap::from([
            ("io.kubernetes.pod.name".to_string(), "web-0".to_string()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                "default".to_string(),
            ),
        ]),
        image: "127.0.0.1:5000/kubelet-rs/busybox:1.35".into(),
    };
    let s = api::spec_from(
        "/kubepods/pod1/abc123",
        &fixed_spec(),
        true,
        1 << 30,
        Some(identity),
    );
    golden("spec.json", &BTreeMap::from([("/kubepods/pod1/abc123", s)]));
}

#[test]
fn golden_stats() {
    let spec = fixed_spec();
    let names = BTreeMap::from([("254:0".to_string(), "/dev/vda".to_string())]);
    let ctx = StatsContext {
        spec: &spec,
        disk_names: &names,
        node: None,
        fs_names: &BTreeMap::new(),
    };
    let v = api::deprecated_stats(&fixed_samples(), &ctx);
    golden(
        "stats.json",
        &BTreeMap::from([("/kubepods/pod1/abc123", v)]),
    );
}

// ------------------------------------------------------------------ routes

fn monitor(t: &FixtureTree) -> Arc<Monitor> {
    t.add_cgroup("/kubepods", &FixtureCgroup::default());
    t.add_cgroup(
        "/kubepods/pod1",
        &FixtureCgroup {
            usage_ns: 2_000_000_000,
            memory_usage: 1 << 20,
            memory_limit: Some(1 << 26),
            pids: 1,
            procs: vec![77],
            ..Default::default()
        },
    );
    let m = Monitor::new(MonitorConfig {
        cgroup_root: t.root().to_path_buf(),
        proc_root: t.proc_root().to_path_buf(),
        housekeeping_interval: Duration::from_millis(100),
        threads: 1,
        use_inotify: false,
        network_in_host_netns: true,
        fs_paths: vec![(fs_role::ROOT, "/".into())],
        ..Default::default()
    })
    .unwrap();
    for _ in 0..3 {
        m.housekeep();
    }
    m
}

async fn get(app: &Router, uri: &str) -> (StatusCode, String) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn parse(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn healthz_and_machine() {
    let t = FixtureTree::new(Layout::V1);
    let app = router(CadvisorState::new(monitor(&t)));
    assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok".into()));
    let (st, body) = get(&app, "/api/v2.0/machine").await;
    assert_eq!(st, StatusCode::OK);
    let v = parse(&body);
    for key in [
        "num_cores",
        "num_physical_cores",
        "num_sockets",
        "cpu_frequency_khz",
        "memory_capacity",
        "swap_capacity",
        "machine_id",
        "system_uuid",
        "boot_id",
        "filesystems",
        "disk_map",
        "network_devices",
        "topology",
        "instance_type",
    ] {
        assert!(v.get(key).is_some(), "machine lacks {key}");
    }
    assert_eq!(
        v["memory_capacity"],
        4_096_000u64 * 1024,
        "from the fixture's meminfo"
    );
}

#[tokio::test]
async fn stats_follow_count_and_recursive() {
    let t = FixtureTree::new(Layout::V2);
    let app = router(CadvisorState::new(monitor(&t)));
    let (st, body) = get(&app, "/api/v2.0/stats/kubepods/pod1?count=2").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v = parse(&body);
    let list = v["/kubepods/pod1"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let s = &list[1];
    assert_eq!(s["has_cpu"], true);
    assert_eq!(s["cpu"]["usage"]["total"], 2_000_000_000u64);
    assert_eq!(s["memory"]["usage"], 1u64 << 20);
    assert!(s.get("cpu_inst").is_some(), "rate from the previous sample");
    assert!(
        list[0].get("cpu_inst").is_none(),
        "first sample has no predecessor"
    );
    assert_eq!(s["network"]["interfaces"][0]["name"], "eth0");
    assert!(s["timestamp"].as_str().unwrap().ends_with('Z'));

    // Default count is 64: all three samples.
    let (_, body) = get(&app, "/api/v2.0/stats/kubepods/pod1").await;
    assert_eq!(parse(&body)["/kubepods/pod1"].as_array().unwrap().len(), 3);
    // Trailing slashes are cleaned like path.Join.
    let (st, _) = get(&app, "/api/v2.0/stats/kubepods/pod1/").await;
    assert_eq!(st, StatusCode::OK);

    let (_, body) = get(&app, "/api/v2.0/stats/kubepods?recursive=true&count=1").await;
    let v = parse(&body);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["/kubepods", "/kubepods/pod1"]);

    // The root carries the node's network and filesystems.
    let (_, body) = get(&app, "/api/v2.0/stats?count=1").await;
    let v = parse(&body);
    let root = &v["/"][0];
    assert_eq!(root["has_filesystem"], true);
    assert_eq!(root["network"]["interfaces"][0]["name"], "eth0");

    // max_age forces a fresh sample when the newest is older.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, body) = get(&app, "/api/v2.0/stats/kubepods/pod1?count=-1&max_age=1ms").await;
    assert_eq!(parse(&body)["/kubepods/pod1"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn errors_read_like_cadvisor() {
    let t = FixtureTree::new(Layout::Hybrid);
    let app = router(CadvisorState::new(monitor(&t)));
    let cases = [
        (
            "/api/v2.0/stats/nope",
            StatusCode::NOT_FOUND,
            "unknown container \"/nope\"\n",
        ),
        (
            "/api/v2.0/stats/nope?recursive=true",
            StatusCode::NOT_FOUND,
            "unknown container: \"/nope\"\n",
        ),
        (
            "/api/v2.0/spec/nope",
            StatusCode::NOT_FOUND,
            "unknown container \"/nope\"\n",
        ),
        (
            "/api/v2.0/stats/kubepods?count=abc",
            StatusCode::BAD_REQUEST,
            "failed to parse 'count' option: abc\n",
        ),
        (
            "/api/v2.0/stats/kubepods?count=-2",
            StatusCode::BAD_REQUEST,
            "invalid 'count' option: only -1 and larger values allowed, not -2\n",
        ),
        (
            "/api/v2.0/stats/kubepods?type=bogus",
            StatusCode::BAD_REQUEST,
            "unknown 'type' \"bogus\"\n",
        ),
        (
            "/api/v2.0/stats/abc?type=docker",
            StatusCode::NOT_FOUND,
            "unable to find container \"abc\" in \"docker\" namespace\n",
        ),
    ];
    for (uri, status, text) in cases {
        assert_eq!(get(&app, uri).await, (status, text.to_string()), "{uri}");
    }
    let (st, body) = get(&app, "/api/v2.0/stats/kubepods?max_age=soon").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        body.starts_with("failed to parse 'max_age' option"),
        "{body}"
    );
}

#[tokio::test]
async fn spec_carries_identity_from_the_namer() {
    let t = FixtureTree::new(Layout::V1);
    let names = Arc::new(NameRegistry::new());
    names.set(
        "/kubepods/pod1",
        ContainerIdentity {
            aliases: vec!["web".into()],
            namespace: "containerd".into(),
            labels: BTreeMap::from([("io.kubernetes.pod.name".into(), "web-0".into())]),
            image: "busybox".into(),
        },
    );
    let app = router(CadvisorState::new(monitor(&t)).with_namer(names));
    let (st, body) = get(&app, "/api/v2.0/spec/kubepods/pod1").await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let s = &parse(&body)["/kubepods/pod1"];
    assert_eq!(s["aliases"][0], "web");
    assert_eq!(s["namespace"], "containerd");
    assert_eq!(s["labels"]["io.kubernetes.pod.name"], "web-0");
    assert_eq!(s["image"], "busybox");
    assert_eq!(s["has_cpu"], true);
    assert_eq!(s["cpu"]["limit"], 1024);
    assert_eq!(s["memory"]["limit"], 1u64 << 26);
    assert_eq!(s["has_network"], true);
    // Without a name, no aliases key at all (omitempty).
    let (_, body) = get(&app, "/api/v2.0/spec/kubepods").await;
    assert!(parse(&body)["/kubepods"].get("aliases").is_none());
}

#[test]
fn request_option_defaults() {
    let o = request_options(&BTreeMap::new()).unwrap();
    assert_eq!(
        o,
        RequestOptions {
            id_type: "name".into(),
            count: 64,
            recursive: false,
            max_age: None
        }
    );
    assert_eq!(container_name(""), "/");
    assert_eq!(container_name("a//b/"), "/a/b");
}

#[test]
fn flags_parse_with_defaults_and_go_durations() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: CadvisorArgs,
    }
    let c = Cli::try_parse_from(["x"]).unwrap().args;
    assert_eq!(c.cadvisor_port, 4194);
    assert_eq!(c.cadvisor_bind_address, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(c.housekeeping_interval, Duration::from_secs(1));
    assert_eq!(c.cgroup_root, PathBuf::from("/sys/fs/cgroup"));
    assert_eq!(c.proc_root, PathBuf::from("/proc"));
    let c = Cli::try_parse_from([
        "x",
        "--housekeeping-interval",
        "100ms",
        "--cgroup-prefix",
        "/kubepods,/system.slice",
    ])
    .unwrap()
    .args;
    assert_eq!(c.housekeeping_interval, Duration::from_millis(100));
    assert_eq!(c.cgroup_prefixes, ["/kubepods", "/system.slice"]);
    let e = Cli::try_parse_from(["x", "--housekeeping-interval", "10ms"])
        .err()
        .unwrap();
    assert!(e.to_string().contains("100ms"), "{e}");
}

// ------------------------------------------------------------------ exposition and v1/v2 shapes

/// Compares text output with a golden file.
fn golden_text(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/cadvisor/testdata")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(
        actual,
        want,
        "{} differs from the golden file",
        path.display()
    );
}

fn fixed_node() -> m::NodeStats {
    m::NodeStats {
        timestamp: 1_700_000_001_000_000_000,
        cpu: m::NodeCpuStats {
            user: 5_000_000_000,
            system: 2_000_000_000,
            idle: 90_000_000_000,
            ..Default::default()
        },
        memory: m::NodeMemoryStats {
            total: 8_013_434_880,
            free: 4_000_000_000,
            available: 6_000_000_000,
            inactive_file: 1_000_000_000,
            ..Default::default()
        },
        disks: vec![m::DiskStats {
            dev: m::DevNum {
                major: 254,
                minor: 0,
            },
            counters: m::DiskCounters {
                reads_completed: 100,
                reads_merged: 3,
                sectors_read: 800,
                read_time: 1500,
                writes_completed: 200,
                writes_merged: 4,
                sectors_written: 1600,
                write_time: 2500,
                io_in_progress: 1,
                io_time: 3000,
                weighted_io_time: 4000,
            },
        }],
        network: vec![m::InterfaceStats {
            name: m::IfName::new(b"eth0"),
            counters: m::NetCounters {
                rx_bytes: 123_456_789,
                rx_packets: 1000,
                tx_bytes: 987_654,
                tx_packets: 900,
                rx_errors: 1,
                ..Default::default()
            },
        }],
        filesystems: vec![
            m::FsStats {
                dev: m::DevNum {
                    major: 254,
                    minor: 0,
                },
                roles: fs_role::ROOT | fs_role::IMAGE,
                capacity: 67_000_000_000,
                available: 30_000_000_000,
                usage: 37_000_000_000,
                inodes: 4_000_000,
                inodes_free: 3_000_000,
            },
            m::FsStats {
                dev: m::DevNum {
                    major: 254,
                    minor: 0,
                },
                roles: fs_role::LOG,
                capacity: 67_000_000_000,
                available: 30_000_000_000,
                usage: 37_000_000_000,
                inodes: 4_000_000,
                inodes_free: 3_000_000,
            },
        ],
        psi: m::PsiStats::default(),
        procs_running: 2,
        procs_blocked: 0,
    }
}

fn fixed_version() -> collectors::VersionInfo {
    collectors::VersionInfo {
        kernel_version: "6.1.0-test".into(),
        container_os_version: "Debian GNU/Linux 12 (bookworm)".into(),
    }
}

fn root_spec() -> ContainerSpec {
    ContainerSpec {
        creation_time: 1_699_990_000_000_000_000,
        has_cpu: true,
        cpu_shares: 1024,
        cpu_quota: None,
        cpu_period: 100_000,
        cpu_mask: "0-1".into(),
        has_memory: true,
        memory_limit: 9_223_372_036_854_771_712,
        memory_reservation: 9_223_372_036_854_771_712,
        swap_limit: 9_223_372_036_854_771_712,
        has_processes: true,
        pids_limit: u64::MAX,
        has_diskio: true,
    }
}

fn identities() -> (ContainerIdentity, ContainerIdentity) {
    let pod_labels = [
        ("io.kubernetes.pod.name", "web-0"),
        ("io.kubernetes.pod.namespace", "default"),
        ("io.kubernetes.pod.uid", "uid-1"),
    ];
    let mk = |kind: &str, id: &str, image: &str, container: Option<&str>| {
        let mut labels: BTreeMap<String, String> = pod_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert(names::KIND_LABEL.into(), kind.into());
        if let Some(c) = container {
            labels.insert("io.kubernetes.container.name".into(), c.into());
        }
        ContainerIdentity {
            aliases: vec![id.into(), format!("/kubepods/burstable/poduid-1/{id}")],
            namespace: "containerd".into(),
            labels,
            image: image.into(),
        }
    };
    (
        mk(
            "container",
            "abc123",
            "127.0.0.1:5000/kubelet-rs/busybox:1.35",
            Some("app"),
        ),
        mk(
            "sandbox",
            "sb1",
            "127.0.0.1:5000/kubelet-rs/pause:3.10",
            None,
        ),
    )
}

/// A container of the exposition fixture: name, identity, pod, sample, spec.
type Entry = (
    &'static str,
    Option<ContainerIdentity>,
    Option<names::PodRef>,
    m::ContainerStats,
    ContainerSpec,
);

fn exposition(flavour: prom::Flavour) -> String {
    let machine = fixed_machine();
    let node = fixed_node();
    let version = fixed_version();
    let samples = fixed_samples();
    let (app, sandbox) = identities();
    let pod = names::PodRef {
        name: "web-0".into(),
        namespace: "default".into(),
        uid: "uid-1".into(),
    };
    let mut root_sample = samples[1].clone();
    root_sample.network = None;
    // A kernel without burst figures, a monitor not counting descriptors: nothing printed.
    root_sample.cpu_burst = None;
    root_sample.fds = None;
    // The container's own sample has the pod's network too; only the sandbox reports it.
    let container_sample = samples[1].clone();
    let sandbox_sample = samples[1].clone();
    let entries: Vec<Entry> = vec![
        ("/", None, None, root_sample, root_spec()),
        (
            "/kubepods/burstable/poduid-1",
            None,
            Some(pod),
            samples[1].clone(),
            fixed_spec(),
        ),
        (
            "/kubepods/burstable/poduid-1/abc123",
            Some(app),
            None,
            container_sample,
            fixed_spec(),
        ),
        (
            "/kubepods/burstable/poduid-1/sb1",
            Some(sandbox),
            None,
            sandbox_sample,
            fixed_spec(),
        ),
    ];
    let union = prom::label_union(entries.iter().filter_map(|e| e.1.as_ref()));
    let labels: Vec<expo::LabelSet> = entries
        .iter()
        .map(|(n, id, pod, _, _)| match flavour {
            prom::Flavour::Kubelet => prom::kubelet_labels(n, id.as_ref(), pod.as_ref()),
            prom::Flavour::Cadvisor => prom::cadvisor_labels(n, id.as_ref(), &union),
        })
        .collect();
    let mut rows: Vec<prom::Row<'_>> = entries
        .iter()
        .zip(&labels)
        .map(|((n, _, _, s, spec), l)| prom::Row {
            labels: l,
            s: Some(s),
            spec,
            ts: Some(expo::ms(s.timestamp)),
            root: *n == "/",
            oom: u64::from(n.ends_with("abc123")),
            shares_network: prom::shares_network(
                entries
                    .iter()
                    .find(|e| e.0 == *n)
                    .and_then(|e| e.1.as_ref()),
            ),
        })
        .collect();
    rows.sort_by(|a, b| a.labels.as_bytes().cmp(b.labels.as_bytes()));
    let disks = prom::disk_names(&machine);
    let fs = prom::root_filesystems(&machine, &node);
    let machine_labels = expo::LabelSet::new([
        ("boot_id", machine.boot_id.as_str()),
        ("machine_id", machine.machine_id.as_str()),
        ("system_uuid", machine.system_uuid.as_str()),
    ]);
    let ctx = prom::Ctx {
        now_s: 1_700_000_002.0,
        now_ms: 1_700_000_002_000,
        node: Some(&node),
        disks: &disks,
        fs: &fs,
        machine: &machine,
        machine_labels: &machine_labels,
        version: &version,
    };
    let mut out = Vec::new();
    prom::write_families(&mut out, flavour, &rows, &ctx);
    String::from_utf8(out).unwrap()
}

#[test]
fn unmeasured_bursts_and_descriptors_are_left_out_not_zero() {
    let mut s = fixed_samples()[1].clone();
    let json = |s: &m::ContainerStats| {
        let cpu = api::cpu_stats(&s.cpu.unwrap(), s.cpu_burst, Default::default());
        (
            serde_json::to_value(&cpu).unwrap(),
            serde_json::to_value(api::process_stats(s)).unwrap(),
        )
    };
    let (cpu, procs) = json(&s);
    assert_eq!(cpu["cfs"]["bursts_periods"], 4);
    assert_eq!(cpu["cfs"]["burst_time"], 1_500_000);
    assert_eq!(
        (procs["fd_count"].clone(), procs["socket_count"].clone()),
        (9.into(), 2.into())
    );
    s.cpu_burst = None;
    s.fds = None;
    let (cpu, procs) = json(&s);
    let cfs = cpu["cfs"].as_object().unwrap();
    assert!(
        !cfs.contains_key("bursts_periods") && !cfs.contains_key("burst_time"),
        "{cfs:?}"
    );
    assert_eq!(cfs["periods"], 10);
    let procs = procs.as_object().unwrap();
    assert!(
        !procs.contains_key("fd_count") && !procs.contains_key("socket_count"),
        "{procs:?}"
    );
    assert_eq!(procs["process_count"], 2);
    // The exposition's root sample has neither: no series for it.
    let text = exposition(prom::Flavour::Kubelet);
    assert!(
        !text.contains("container_file_descriptors{container=\"\",id=\"/\""),
        "{text}"
    );
    assert!(
        text.contains("container_file_descriptors{container=\"app\""),
        "{text}"
    );
}

#[test]
fn golden_exposition_cadvisor() {
    golden_text(
        "metrics_cadvisor.prom",
        &exposition(prom::Flavour::Cadvisor),
    );
}

#[test]
fn golden_exposition_kubelet() {
    let text = exposition(prom::Flavour::Kubelet);
    golden_text("metrics_kubelet_cadvisor.prom", &text);
    // The kubelet's labels: the container by name, its pod; the sandbox and the pod cgroup
    // with container="" (containerd's sandbox has no container name label).
    assert!(text.contains(
        "container_memory_working_set_bytes{container=\"app\",id=\"/kubepods/burstable/poduid-1/abc123\",image=\"127.0.0.1:5000/kubelet-rs/busybox:1.35\",name=\"abc123\",namespace=\"default\",pod=\"web-0\"} 7.340032e+06 1700000001000\n"
    ), "{text}");
    assert!(text.contains(
        "container_memory_working_set_bytes{container=\"\",id=\"/kubepods/burstable/poduid-1\",image=\"\",name=\"\",namespace=\"default\",pod=\"web-0\"} 7.340032e+06 1700000001000\n"
    ));
    assert!(text.contains("container_cpu_usage_seconds_total{container=\"\",cpu=\"total\",id=\"/kubepods/burstable/poduid-1/sb1\",image=\"127.0.0.1:5000/kubelet-rs/pause:3.10\",name=\"sb1\",namespace=\"default\",pod=\"web-0\"} 1.25 1700000001000\n"));
    // Spec families carry no timestamp.
    assert!(text.contains("container_spec_cpu_quota{container=\"app\","));
    assert!(text.contains("container_spec_memory_limit_bytes{container=\"\",id=\"/\",image=\"\",name=\"\",namespace=\"\",pod=\"\"} 0\n"));
}

#[test]
fn golden_v1_container_info() {
    let samples = fixed_samples();
    let spec = fixed_spec();
    let names = BTreeMap::from([("254:0".to_string(), "/dev/vda".to_string())]);
    let ctx = StatsContext {
        spec: &spec,
        disk_names: &names,
        node: None,
        fs_names: &BTreeMap::new(),
    };
    let (app, _) = identities();
    let mut stats = v1::stats(&samples, &ctx, 1);
    stats[1].cpu.usage.per_cpu_usage = vec![600_000_000, 650_000_000];
    let info = v1::ContainerInfo {
        reference: v1::reference("/kubepods/burstable/poduid-1/abc123", Some(&app)),
        subcontainers: vec![],
        spec: v1::spec(
            "/kubepods/burstable/poduid-1/abc123",
            &spec,
            false,
            1 << 30,
            Some(&app),
        ),
        stats: stats.clone(),
    };
    golden("containers_v1.json", &info);
    let spec1 = v1::spec("/x", &spec, true, 1 << 30, None);
    golden("stats_v21.json", &v2::stats_from_v1(&spec1, stats));
}

#[test]
fn golden_machine_stats_and_attributes() {
    let samples = fixed_samples();
    let spec = root_spec();
    let node = fixed_node();
    let by_time = BTreeMap::from([(samples[1].timestamp, node)]);
    let fs_names = BTreeMap::from([(
        "254:0".to_string(),
        ("/dev/vda".to_string(), "ext4".to_string()),
    )]);
    let ctx = StatsContext {
        spec: &spec,
        disk_names: &BTreeMap::new(),
        node: Some(&by_time),
        fs_names: &fs_names,
    };
    let stats = v1::stats(&samples, &ctx, 0);
    let spec1 = v1::spec("/", &spec, true, 1 << 30, None);
    golden(
        "machinestats.json",
        &v2::machine_stats_from_v1(&spec1, stats),
    );
    golden(
        "attributes.json",
        &v2::attributes(&fixed_machine(), &fixed_version()),
    );
}

async fn post(app: &Router, uri: &str, body: &str) -> (StatusCode, String) {
    let resp = app
        .clone()
        .oneshot(
            Request::post(uri)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn state(t: &FixtureTree) -> CadvisorState {
    CadvisorState::with_options(monitor(t), tracker::TrackerOptions::default())
}

#[tokio::test]
async fn v1_containers_and_subcontainers() {
    let t = FixtureTree::new(Layout::V1);
    let app = router(state(&t));
    let (st, body) = post(
        &app,
        "/api/v1.3/containers/kubepods/pod1",
        r#"{"num_stats": 2}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let v = parse(&body);
    assert_eq!(v["name"], "/kubepods/pod1");
    assert_eq!(v["stats"].as_array().unwrap().len(), 2);
    let s = &v["stats"][1];
    assert_eq!(s["cpu"]["usage"]["total"], 2_000_000_000u64);
    assert_eq!(s["memory"]["usage"], 1u64 << 20);
    assert_eq!(s["network"]["name"], "eth0", "first interface inline");
    assert_eq!(s["health"]["status"], "");
    assert_eq!(v["spec"]["has_cpu"], true);
    assert_eq!(v["spec"]["cpu"]["period"], 100_000);
    // GET without a body: the default of 60 (all 3 here).
    let (_, body) = get(&app, "/api/v1.3/containers/kubepods/pod1").await;
    assert_eq!(parse(&body)["stats"].as_array().unwrap().len(), 3);
    // The root lists its direct children only.
    let (_, body) = post(&app, "/api/v1.0/containers/", r#"{"num_stats": 1}"#).await;
    let v = parse(&body);
    let subs: Vec<&str> = v["subcontainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(subs, ["/kubepods"]);
    assert_eq!(v["spec"]["has_filesystem"], true);
    let (st, body) = post(
        &app,
        "/api/v1.1/subcontainers/kubepods",
        r#"{"num_stats": 1}"#,
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let names: Vec<String> = parse(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["/kubepods", "/kubepods/pod1"]);
    // A time range: start after every sample gives none (and no "stats" key, omitempty).
    let (_, body) = post(
        &app,
        "/api/v1.3/containers/kubepods",
        r#"{"start": "2100-01-01T00:00:00Z"}"#,
    )
    .await;
    assert!(parse(&body).get("stats").is_none(), "{body}");
}

#[tokio::test]
async fn api_errors_name_the_problem() {
    let t = FixtureTree::new(Layout::V2);
    let app = router(state(&t));
    let cases: &[(&str, Option<&str>, StatusCode, &str)] = &[
        ("/api/v1.3/containers/nope", Some("{}"), StatusCode::NOT_FOUND, "failed to get container \"/nope\" with error: unknown container \"/nope\"\n"),
        ("/api/v1.3/containers/kubepods", Some("{"), StatusCode::BAD_REQUEST, "unable to decode the json value"),
        ("/api/v1.3/containers/kubepods", Some(r#"{"num_stats": -5}"#), StatusCode::BAD_REQUEST, "invalid \"num_stats\""),
        ("/api/v1.3/containers/kubepods", Some(r#"{"start": "yesterday"}"#), StatusCode::BAD_REQUEST, "unable to decode the json value: invalid \"start\" time"),
        ("/api/v9.9/machine", None, StatusCode::NOT_FOUND, "unsupported API version \"v9.9\"\n"),
        ("/api/v2.0/bogus", None, StatusCode::NOT_FOUND, "unknown request type \"bogus\"\n"),
        ("/api/v1.0/events", None, StatusCode::NOT_FOUND, "unknown request type \"events\"\n"),
        ("/api/v2.0", None, StatusCode::BAD_REQUEST, "Supported request types: \"appmetrics,attributes,events,machine,ps,spec,stats,storage,summary,version\"\n"),
        ("/api/", None, StatusCode::BAD_REQUEST, "Supported API versions: v1.0,v1.1,v1.2,v1.3,v2.0,v2.1\n"),
        ("/api/v2.0/events/?stream=maybe", None, StatusCode::BAD_REQUEST, "invalid \"stream\" option"),
        ("/api/v2.0/events/?max_events=ten", None, StatusCode::BAD_REQUEST, "invalid \"max_events\" option"),
        ("/api/v2.0/events/?start_time=noon", None, StatusCode::BAD_REQUEST, "invalid \"start_time\" option"),
        ("/api/v2.0/events/?stream=true&start_time=2020-01-01T00:00:00Z", None, StatusCode::BAD_REQUEST, "for a call to watch"),
        ("/api/v2.0/storage?label=nope", None, StatusCode::NOT_FOUND, "no filesystem with label \"nope\"\n"),
        ("/api/v2.1/stats/nope", None, StatusCode::NOT_FOUND, "unknown container \"/nope\"\n"),
        ("/api/v2.0/summary/nope", None, StatusCode::NOT_FOUND, "unknown container \"/nope\"\n"),
        ("/api/v2.0/ps/nope", None, StatusCode::NOT_FOUND, "unknown container \"/nope\"\n"),
        ("/api/v2.1/machinestats?count=x", None, StatusCode::BAD_REQUEST, "failed to parse 'count' option: x\n"),
        ("/api/v1.2/docker/abc", None, StatusCode::NOT_FOUND, "failed to get Docker container \"abc\""),
    ];
    for (uri, body, status, text) in cases {
        let (st, got) = match body {
            Some(b) => post(&app, uri, b).await,
            None => get(&app, uri).await,
        };
        assert_eq!(st, *status, "{uri}: {got}");
        assert!(
            got.starts_with(text),
            "{uri}: {got:?} does not start with {text:?}"
        );
    }
}

#[tokio::test]
async fn v2_endpoints_answer_with_cadvisors_shapes() {
    let t = FixtureTree::new(Layout::Hybrid);
    let st = state(&t);
    let app = router(st.clone());
    let (code, body) = get(&app, "/api/v2.0/version").await;
    assert_eq!(
        (code, body.as_str()),
        (
            StatusCode::OK,
            concat!("\"kubelet-rs-", env!("CARGO_PKG_VERSION"), "\"")
        )
    );
    let v = parse(&get(&app, "/api/v2.0/attributes").await.1);
    assert_eq!(v["num_cores"], 2);
    assert_eq!(v["docker_version"], "");
    let v = parse(
        &get(&app, "/api/v2.1/stats/kubepods?recursive=true&count=2")
            .await
            .1,
    );
    let pod = &v["/kubepods/pod1"];
    assert_eq!(pod["stats"].as_array().unwrap().len(), 2);
    assert!(pod["stats"][1]["cpu_inst"]["usage"]["total"].is_u64());
    assert!(pod["spec"]["has_cpu"].as_bool().unwrap());
    let v = parse(&get(&app, "/api/v2.1/stats/?count=1").await.1);
    assert_eq!(
        v,
        serde_json::json!({}),
        "v2.1 stats leave the root out, as cAdvisor does"
    );
    let v = parse(&get(&app, "/api/v2.1/machinestats?count=2").await.1);
    let m = v.as_array().unwrap();
    assert_eq!(m.len(), 2);
    assert!(m[1]["cpu_inst"].is_object() && m[1]["memory"].is_object());
    assert!(m[1]["filesystem"][0]["inline"].is_object(), "{v}");
    let v = parse(&get(&app, "/api/v2.0/summary/kubepods/pod1").await.1);
    let d = &v["/kubepods/pod1"];
    assert_eq!(
        d["latest_usage"]["memory"],
        1u64 << 20,
        "the fixture's working set"
    );
    assert!(d["minute_usage"]["cpu"].is_object());
    let v = parse(&get(&app, "/api/v2.0/storage").await.1);
    assert_eq!(v[0]["labels"][0], "root");
    let v = parse(&get(&app, "/api/v2.0/storage?label=root").await.1);
    assert_eq!(v.as_array().unwrap().len(), 1);
    let v = parse(&get(&app, "/api/v2.0/ps/kubepods/pod1").await.1);
    assert!(v.is_array(), "{v}");
    let v = parse(&get(&app, "/api/v2.0/appmetrics/kubepods").await.1);
    assert_eq!(v, serde_json::json!({"/kubepods": {}}));
    // Events: the tracker's first pass reports the monitor's containers as created.
    st.monitor.housekeep();
    st.tracker.catch_up();
    let v = parse(
        &get(
            &app,
            "/api/v1.3/events/?all_events=true&subcontainers=true&max_events=-1",
        )
        .await
        .1,
    );
    let created: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_type"] == "containerCreation")
        .map(|e| e["container_name"].as_str().unwrap())
        .collect();
    assert!(created.contains(&"/kubepods/pod1"), "{v}");
    let v = parse(
        &get(&app, "/api/v2.0/events/kubepods?creation_events=true")
            .await
            .1,
    );
    assert_eq!(
        v.as_array().unwrap().len(),
        1,
        "only the container itself: {v}"
    );
    // The legacy Docker API: no Docker containers.
    assert_eq!(
        get(&app, "/api/v1.2/docker").await,
        (StatusCode::OK, "{}".into())
    );
}

#[tokio::test]
async fn metrics_ui_and_redirect() {
    let t = FixtureTree::new(Layout::V1);
    let app = router(state(&t));
    let (st, body) = get(&app, "/metrics").await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("# TYPE container_cpu_usage_seconds_total counter\n"));
    assert!(
        body.contains("container_cpu_usage_seconds_total{cpu=\"total\",id=\"/kubepods/pod1\"} 2 "),
        "{body}"
    );
    assert!(body.contains("machine_memory_bytes{boot_id="));
    assert!(body.contains("# TYPE kubelet_rs_collector_passes_total counter\n"));
    assert!(body.contains("# TYPE process_cpu_seconds_total counter\n"));
    let resp = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(resp.headers()["location"], "/containers/");
    for uri in ["/containers/", "/containers/kubepods/pod1"] {
        let (st, body) = get(&app, uri).await;
        assert_eq!(st, StatusCode::OK);
        assert!(body.contains("/static/containers.js"));
    }
    let (st, body) = get(&app, "/static/charts.js").await;
    assert_eq!(st, StatusCode::OK);
    assert!(body.contains("const Charts"));
    assert_eq!(get(&app, "/static/nope.js").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn event_streams_deliver_new_events_and_end_on_shutdown() {
    use futures_util::StreamExt;
    let t = FixtureTree::new(Layout::V1);
    let st = state(&t);
    // The tracker's first pass reports every container as created: get past it.
    st.monitor.housekeep();
    st.tracker.catch_up();
    let app = router(st.clone());
    let resp = app
        .clone()
        .oneshot(
            Request::get(
                "/api/v1.3/events/kubepods?stream=true&subcontainers=true&creation_events=true",
            )
            .body(Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    t.add_cgroup("/kubepods/pod2", &FixtureCgroup::default());
    st.monitor.rescan().unwrap();
    st.monitor.housekeep();
    st.tracker.catch_up();
    let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let e = parse(std::str::from_utf8(&chunk).unwrap().trim_end());
    assert_eq!(e["container_name"], "/kubepods/pod2");
    assert_eq!(e["event_type"], "containerCreation");
    st.shutdown();
    let end = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .unwrap();
    assert!(end.is_none(), "the stream ends on shutdown");
}
