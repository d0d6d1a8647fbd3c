//! Every panel of every Grafana dashboard in `dashboards/` returns data from a real
//! Prometheus (Debian's `prometheus`) scraping a real kubelet-rs.
//!
//! The test starts an agent on containerd running one pod (a CPU limit for throttling, a
//! memory limit, an `emptyDir` it writes and reads with direct I/O, so that block I/O is
//! charged to the container), and Prometheus on loopback with a generated configuration
//! scraping the agent's five endpoints under the job names the dashboards expect
//! (`kubelet`: `/metrics`, `kubelet-cadvisor`: `/metrics/cadvisor`, `kubelet-resource`:
//! `/metrics/resource`, `kubelet-probes`: `/metrics/probes`, `cadvisor`: 4194 `/metrics`).
//! It then evaluates each panel's expression through the HTTP API (Grafana's variables
//! replaced: `$__rate_interval` by 15s, multi-value variables by `.*`) and requires a
//! non-empty result with at least one finite value. The pod has a readiness probe and a second
//! pod's image cannot be pulled, so the probe-result and runtime-error panels have real series;
//! only the evictions panel (zero until an eviction happens) falls back to `or on() vector(0)`,
//! and that panel must also name the kubelet's eviction family.
//!
//! On cgroup v1 this kernel reports per-device block I/O only once some cgroup has a throttle
//! rule for the device, so the test sets a no-op rule (1 PiB/s) on the agent's own cgroup
//! root, which it removes with the agent.

mod cadvisor_support;
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cadvisor_support::{free_port, http, require_tool};
use common::{require_runtime, Agent};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";

const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: dashed
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: scratch
    emptyDir: {}
  containers:
  - name: main
    image: 127.0.0.1:5000/kubelet-rs/busybox:1.35
    command: [\"sh\", \"-c\", \"while true; do dd if=/dev/zero of=/data/f bs=1M count=2 oflag=direct 2>/dev/null; dd if=/data/f of=/dev/null bs=1M iflag=direct 2>/dev/null; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.2; done\"]
    volumeMounts:
    - name: scratch
      mountPath: /data
    readinessProbe:
      exec:
        command: [\"true\"]
      periodSeconds: 1
    resources:
      limits:
        cpu: 100m
        memory: 64Mi
";

/// A pod whose image does not exist: its failing pulls are the runtime operation errors the
/// kubelet dashboard's error panel shows.
const BROKEN_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: unpullable
  namespace: default
spec:
  containers:
  - name: main
    image: 127.0.0.1:5000/kubelet-rs/does-not-exist:0
";

struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(targets: &[(&str, u16, &str)]) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-rs-prometheus-")
            .tempdir()
            .unwrap();
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, port, path) in targets {
            cfg.push_str(&format!(
                "- job_name: {job}\n  metrics_path: {path}\n  static_configs:\n  - targets: ['127.0.0.1:{port}']\n"
            ));
        }
        let conf = dir.path().join("prometheus.yml");
        std::fs::write(&conf, cfg).unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start prometheus");
        let mut p = Prometheus {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http(port, "GET", "/-/ready", ""), Ok((200, _, _))) {
            if let Ok(Some(st)) = p.child.try_wait() {
                panic!("prometheus exited with {st}: {}", p.log());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        p
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Evaluates `expr` now; the `result` array.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let (code, _, body) = http(
            self.port,
            "GET",
            &format!("/api/v1/query?query={}", urlencode(expr)),
            "",
        )
        .map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{code}: {body}"));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every `targets[].expr` of a dashboard's panels (rows included), with its panel title.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((p["title"].as_str().unwrap_or("").to_string(), e.to_string()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's variables as this test fills them.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "15s")
        .replace("$__interval", "15s")
        .replace("$namespace", ".*")
        .replace("$pod", ".*")
}

fn finite(result: &[Value]) -> bool {
    result.iter().any(|r| {
        r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(f64::is_finite)
    })
}

/// A no-op block I/O throttle rule on `device` in the agent's blkio cgroup.
fn throttle_rule(agent: &Agent) -> Option<()> {
    let dir = agent.cgroup_dir("blkio");
    let file = dir.join("blkio.throttle.read_bps_device");
    if !file.exists() {
        return None;
    }
    let dev = std::fs::metadata("/var/lib/kubelet-rs")
        .or_else(|_| std::fs::metadata("/"))
        .ok()?
        .dev();
    let (maj, min) = (libc::major(dev), libc::minor(dev));
    let rule = format!("{maj}:{min} 1125899906842624");
    std::fs::write(&file, &rule).ok()?;
    std::fs::write(dir.join("blkio.throttle.write_bps_device"), &rule).ok()?;
    Some(())
}

#[test]
fn every_dashboard_panel_returns_data() {
    if !require_runtime() || !require_tool(PROMETHEUS, "prometheus") {
        return;
    }
    let cadvisor_port = free_port();
    let agent = Agent::start_with(
        "dashboards",
        &["--cadvisor-port", &cadvisor_port.to_string()],
    );
    let throttled = throttle_rule(&agent).is_some();
    agent.write_manifest("dashed.yaml", POD);
    agent.write_manifest("unpullable.yaml", BROKEN_POD);
    agent.wait_running("dashed", Duration::from_secs(90));
    let ro = agent.read_only_port;
    let prom = Prometheus::start(&[
        ("kubelet", ro, "/metrics"),
        ("kubelet-cadvisor", ro, "/metrics/cadvisor"),
        ("kubelet-resource", ro, "/metrics/resource"),
        ("kubelet-probes", ro, "/metrics/probes"),
        ("cadvisor", cadvisor_port, "/metrics"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prom.query("sum(up)").unwrap_or_default();
        if up.first().and_then(|r| r["value"][1].as_str()) == Some("5") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "targets not up: {:?}\n{}",
            prom.query("up"),
            prom.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "dashboards: {files:?}");
    let mut pending: Vec<(String, String, String)> = Vec::new();
    for f in &files {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(
            d["uid"].is_string() && d["title"].is_string() && d["schemaVersion"].is_u64(),
            "{}",
            f.display()
        );
        let exprs = expressions(&d);
        assert!(!exprs.is_empty(), "{} has no queries", f.display());
        for (title, expr) in &exprs {
            assert!(
                !expr.contains("vector(0)") || expr.contains("kubelet_evictions"),
                "{} / {title}: only the evictions panel may fall back to vector(0): {expr}",
                f.display()
            );
        }
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        pending.extend(exprs.into_iter().map(|(t, e)| (name.clone(), t, e)));
    }
    if !throttled {
        eprintln!("note: no blkio throttle file; per-container block I/O panels may stay empty");
    }
    // Rates need a few scrapes; I/O and throttling need the workload to run a while.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_errors;
    loop {
        last_errors = Vec::new();
        pending.retain(|(file, title, expr)| match prom.query(&substitute(expr)) {
            Ok(r) if finite(&r) => false,
            Ok(r) => {
                last_errors.push(format!(
                    "{file} / {title}: {expr}\n  -> {} series, none finite",
                    r.len()
                ));
                true
            }
            Err(e) => {
                last_errors.push(format!("{file} / {title}: {expr}\n  -> {e}"));
                true
            }
        });
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} panel queries returned no data:\n{}\n--- agent log ---\n{}",
            pending.len(),
            last_errors.join("\n"),
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}
