//! Hollow nodes against the test API server (issue 12): N in-process agents on the fake CRI
//! runtime, each joined with its own node kubeconfig, register, turn Ready and then idle. The
//! bench reports the time until every node is Ready, then, over a steady window, the API
//! requests each node makes per minute by verb and resource (from the test API server's
//! `/metrics`, users `system:node:*`) and the process CPU per node (agents and fakes; the test
//! API server is a separate process and not counted).
//!
//! Run: `cargo bench --bench api_nodes -- --nodes 10 --window-secs 30`.

#[path = "support/hollow.rs"]
#[allow(dead_code)]
mod hollow;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kubelet_rs::fakeruntime::{HollowConfig, HollowNode};

struct Args {
    nodes: usize,
    window_secs: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        nodes: 10,
        window_secs: 30,
    };
    let mut it = std::env::args().skip(1);
    while let Some(f) = it.next() {
        match f.as_str() {
            "--nodes" => a.nodes = hollow::parse_num(&f, &it.next().unwrap_or_default())?,
            "--window-secs" => {
                a.window_secs = hollow::parse_num(&f, &it.next().unwrap_or_default())?
            }
            "--bench" => {}
            other => return Err(format!("unknown option {other}")),
        }
    }
    Ok(a)
}

/// (verb, resource) → requests by node users.
fn node_requests(
    api: &mut testkit::TestApiServer,
) -> Result<BTreeMap<(String, String), u64>, String> {
    let (code, body) = api.get("/metrics")?;
    if code != 200 {
        return Err(format!("/metrics: {code}"));
    }
    let mut out = BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("testkit_apiserver_requests_total{") else {
            continue;
        };
        let Some((labels, n)) = rest.split_once("} ") else {
            continue;
        };
        let get = |k: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{k}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
                .unwrap_or_default()
        };
        if !get("user").starts_with("system:node:") {
            continue;
        }
        *out.entry((get("verb"), get("resource"))).or_default() += n.parse::<u64>().unwrap_or(0);
    }
    Ok(out)
}

async fn run(args: &Args, dir: &std::path::Path) -> Result<(), String> {
    let mut api = tokio::task::spawn_blocking(testkit::TestApiServer::start)
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let start = Instant::now();
    let mut nodes = Vec::new();
    for i in 0..args.nodes {
        let name = format!("hollow-api-{i}");
        let kubeconfig = api.node_kubeconfig(&name).map_err(|e| e.to_string())?;
        let base = dir.join(&name);
        std::fs::create_dir_all(&base).map_err(|e| e.to_string())?;
        let node = HollowNode::start(
            &base,
            HollowConfig {
                node_name: name,
                extra_flags: vec![format!("--kubeconfig={}", kubeconfig.display())],
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
        nodes.push(node);
    }
    // Every node Ready.
    loop {
        let out = api.kubectl(&["get", "nodes", "--no-headers"]);
        let ready = out
            .stdout
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .count();
        if ready == args.nodes {
            break;
        }
        if start.elapsed() > Duration::from_secs(120) {
            return Err(format!("only {ready} of {} nodes Ready", args.nodes));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "{} hollow nodes registered and Ready in {:.2?}",
        args.nodes,
        start.elapsed()
    );
    // Past the start-up: the first events and status writes.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let before = node_requests(&mut api)?;
    let cpu0 = hollow::process_cpu();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.window_secs)).await;
    let cpu = hollow::process_cpu() - cpu0;
    let window = t0.elapsed();
    let after = node_requests(&mut api)?;
    let per_min = 60.0 / window.as_secs_f64() / args.nodes as f64;
    println!("steady window {window:.2?}: requests per node per minute");
    let mut total = 0.0;
    for (k, n) in &after {
        let d = n - before.get(k).copied().unwrap_or(0);
        if d == 0 {
            continue;
        }
        let r = d as f64 * per_min;
        total += r;
        println!("  {:<8} {:<12} {r:>7.1}", k.0, k.1);
    }
    println!("  total             {total:>7.1}");
    println!(
        "process CPU per node: {:.2} ms/s",
        cpu.as_secs_f64() * 1000.0 / window.as_secs_f64() / args.nodes as f64
    );
    drop(nodes);
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("api_nodes: {e}");
            std::process::exit(2);
        }
    };
    let (rt, dir) = hollow::setup("api_nodes", false, "kubelet-rs-api-nodes-", None);
    let result = rt.block_on(run(&args, dir.path()));
    hollow::finish("api_nodes", rt, dir, result);
}
