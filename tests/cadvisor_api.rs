//! The standalone `kubelet-rs cadvisor` on the live kernel: the REST API (v1.3, v2.0, v2.1)
//! on real cgroups with processes in them, events (creation, deletion, an OOM kill read from
//! `/dev/kmsg`, a live stream), `/metrics` through `promtool check metrics`, the UI routes and
//! the error statuses. Needs root (it creates cgroups); prints `skipped:` otherwise, except in CI and under
//! `scripts/test`, where that is a failure.

mod cadvisor_support;
mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cadvisor_support::*;
use collectors::testing::ScratchCgroups;
use serde_json::Value;

fn json(port: u16, method: &str, path: &str, body: &str) -> Value {
    let (code, _, text) = http(port, method, path, body).unwrap();
    assert_eq!(code, 200, "{method} {path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Scratch cgroups, or a loud skip — a failure in CI and under `scripts/test`.
fn scratch(tag: &str) -> Option<ScratchCgroups> {
    ScratchCgroups::new_or_skip(Path::new("/sys/fs/cgroup"), tag)
}

#[test]
fn api_on_live_cgroups() {
    let Some(mut cg) = scratch("capi") else {
        return;
    };
    let parent = cg.parent().to_string();
    let work = cg.add("work").unwrap();
    let pid = cg
        .spawn_into(&work, Command::new("sleep").arg("300"))
        .unwrap();
    let c = Cadvisor::start(&["--cgroup-prefix", &parent]);
    let port = c.port;

    // v1.3 containers: stats accumulate; per-CPU usage on the newest sample (cgroup v1).
    let info = wait_for("two samples", || {
        let v = json(
            port,
            "POST",
            &format!("/api/v1.3/containers{work}"),
            r#"{"num_stats": 5}"#,
        );
        (v["stats"].as_array().map_or(0, |s| s.len()) >= 2).then_some(v)
    });
    assert_eq!(info["name"], work.as_str());
    let last = info["stats"].as_array().unwrap().last().unwrap();
    assert!(
        last["processes"]["process_count"].as_u64().unwrap() >= 1,
        "{last}"
    );
    // (A process moved in keeps its pages charged where they were: usage may be 0.)
    assert!(last["memory"]["usage"].is_u64());
    if Path::new("/sys/fs/cgroup/cpuacct").exists() {
        assert!(!last["cpu"]["usage"]["per_cpu_usage"]
            .as_array()
            .unwrap()
            .is_empty());
    }
    let parent_info = json(port, "POST", &format!("/api/v1.3/containers{parent}"), "{}");
    assert_eq!(parent_info["subcontainers"][0]["name"], work.as_str());
    let subs = json(
        port,
        "POST",
        &format!("/api/v1.3/subcontainers{parent}"),
        r#"{"num_stats": 1}"#,
    );
    assert_eq!(subs.as_array().unwrap().len(), 2);

    // v2.0: spec, stats, ps, summary, storage, attributes, version.
    let spec = json(port, "GET", &format!("/api/v2.0/spec{work}"), "");
    assert_eq!(spec[&work]["has_memory"], true);
    let stats = json(
        port,
        "GET",
        &format!("/api/v2.0/stats{parent}?recursive=true&count=2"),
        "",
    );
    assert!(
        stats[&work][1]["cpu_inst"]["usage"]["total"].is_u64(),
        "{stats}"
    );
    let ps = json(port, "GET", &format!("/api/v2.0/ps{work}"), "");
    let me = ps
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("{ps}"));
    assert_eq!(me["cmd"], "sleep");
    assert_eq!(me["cgroup_path"], work.as_str());
    assert_eq!(me["user"], "root");
    let sum = json(port, "GET", &format!("/api/v2.0/summary{work}"), "");
    assert!(sum[&work]["latest_usage"]["memory"].is_u64(), "{sum}");
    let storage = json(port, "GET", "/api/v2.0/storage?label=root", "");
    assert!(storage[0]["capacity"].as_u64().unwrap() > 0);
    assert!(
        json(port, "GET", "/api/v2.0/attributes", "")["num_cores"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(json(port, "GET", "/api/v2.0/version", "")
        .as_str()
        .unwrap()
        .starts_with("kubelet-rs-"));
    let v21 = json(port, "GET", &format!("/api/v2.1/stats{work}?count=2"), "");
    assert!(v21[&work]["stats"][0]["memory"].is_object());
    let ms = json(port, "GET", "/api/v2.1/machinestats?count=1", "");
    assert!(ms[0]["memory"]["usage"].as_u64().unwrap() > 0);

    // Errors.
    let (code, _, body) = http(port, "GET", "/api/v2.0/stats/no/such/cgroup", "").unwrap();
    assert_eq!(
        (code, body.as_str()),
        (404, "unknown container \"/no/such/cgroup\"\n")
    );
    let (code, _, body) = http(port, "GET", "/api/v2.0/stats/?count=lots", "").unwrap();
    assert_eq!(
        (code, body.as_str()),
        (400, "failed to parse 'count' option: lots\n")
    );
    let (code, _, body) = http(
        port,
        "POST",
        "/api/v1.3/containers/",
        "{\"num_stats\": \"x\"}",
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");

    // Events: creation of what exists, a live stream, then deletion.
    let events_path = format!("/api/v1.3/events{parent}?subcontainers=true&creation_events=true&deletion_events=true&max_events=-1");
    wait_for("creation events", || {
        let v = json(port, "GET", &events_path, "");
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["container_name"] == work.as_str() && e["event_type"] == "containerCreation")
            .then_some(())
    });
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET /api/v2.0/events{parent}?stream=true&subcontainers=true&creation_events=true HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    std::thread::sleep(Duration::from_millis(300));
    let late = cg.add("late").unwrap();
    let event = loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.starts_with('{') {
            break serde_json::from_str::<Value>(line.trim()).unwrap();
        }
    };
    assert_eq!(event["container_name"], late.as_str());
    assert_eq!(event["event_type"], "containerCreation");
    cg.remove(&late).unwrap();
    wait_for("deletion event", || {
        let v = json(port, "GET", &events_path, "");
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["container_name"] == late.as_str() && e["event_type"] == "containerDeletion")
            .then_some(())
    });

    // /metrics: cAdvisor's families for the live cgroups, valid for promtool.
    let text = get_ok(port, "/metrics");
    if require_tool(PROMTOOL, "prometheus") {
        promtool_check("4194 /metrics", &text);
    }
    // (`container_cpu_usage_seconds_total` appears once a cgroup has used CPU; a sleeper may not.)
    let mem = samples(&text, "container_memory_usage_bytes");
    let want = format!("id=\"{work}\"");
    assert!(
        mem.iter().any(|(l, _, ts)| *l == want && ts.is_some()),
        "no timestamped sample for {work}"
    );
    let spec = samples(&text, "container_spec_cpu_shares");
    assert!(
        spec.iter().any(|(l, _, ts)| *l == want && ts.is_none()),
        "spec families carry no timestamp"
    );
    assert!(
        samples(&text, "container_processes").is_empty(),
        "process metrics are not in cAdvisor's default set"
    );
    assert!(!samples(&text, "machine_cpu_cores").is_empty());
    assert!(!samples(&text, "kubelet_rs_collector_passes_total").is_empty());

    // The UI.
    let (code, head, _) = http(port, "GET", "/", "").unwrap();
    assert_eq!(code, 307);
    assert!(
        head.to_ascii_lowercase().contains("location: /containers/"),
        "{head}"
    );
    assert!(get_ok(port, &format!("/containers{work}")).contains("/static/containers.js"));
    assert!(get_ok(port, "/static/charts.js").contains("const Charts"));
    drop(c);
}

/// An OOM kill in a memory-limited cgroup reaches the events API and
/// `container_oom_events_total` through `/dev/kmsg`.
#[test]
fn oom_kills_become_events_and_counts() {
    let Some(mut cg) = scratch("coom") else {
        return;
    };
    let parent = cg.parent().to_string();
    let victim = cg.add("victim").unwrap();
    let mem_dir = cg
        .hierarchies()
        .iter()
        .find(|h| h.ends_with("memory"))
        .map(|h| h.join(victim.trim_start_matches('/')));
    let limit_file = match &mem_dir {
        Some(d) if d.join("memory.limit_in_bytes").exists() => d.join("memory.limit_in_bytes"),
        _ => {
            let unified = cg.hierarchies()[0].join(victim.trim_start_matches('/'));
            unified.join("memory.max")
        }
    };
    std::fs::write(&limit_file, "16777216").unwrap();
    let c = Cadvisor::start(&["--cgroup-prefix", &parent]);
    // A keeper process keeps the cgroup's sample history alive; the allocator gets killed.
    cg.spawn_into(&victim, Command::new("sleep").arg("300"))
        .unwrap();
    wait_for("the victim cgroup sampled", || {
        let (code, _, _) = http(
            c.port,
            "GET",
            &format!("/api/v2.0/stats{victim}?count=1"),
            "",
        )
        .unwrap();
        (code == 200).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    // dd with a 64 MiB block allocates past the 16 MiB limit.
    cg.spawn_into(
        &victim,
        Command::new("sh").args([
            "-c",
            "sleep 0.5; exec dd if=/dev/zero of=/dev/null bs=64M count=4",
        ]),
    )
    .unwrap();
    let events = wait_for("an oomKill event", || {
        let v = json(
            c.port,
            "GET",
            &format!("/api/v2.0/events{victim}?oom_kill_events=true&oom_events=true"),
            "",
        );
        v.as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_type"] == "oomKill")
            .then_some(v)
    });
    let kill = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == "oomKill")
        .unwrap();
    assert_eq!(kill["event_data"]["oom"]["process_name"], "dd", "{events}");
    let count = wait_for("container_oom_events_total", || {
        let text = get_ok(c.port, "/metrics");
        samples(&text, "container_oom_events_total")
            .into_iter()
            .find(|(l, v, _)| *l == format!("id=\"{victim}\"") && *v >= 1.0)
            .map(|(_, v, _)| v)
    });
    assert!(count >= 1.0);
}
