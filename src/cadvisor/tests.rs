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
        process_count: Some(2),
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
