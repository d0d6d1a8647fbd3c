//! Real Prometheus (Debian's `prometheus`) scraping a real kubelet-rs: every panel of every
//! Grafana dashboard in `dashboards/` returns data, and so does every rule and dashboard query
//! of the kubernetes-mixin's kubelet part (`../shared/kube-prometheus`) that a standalone
//! kubelet can feed.
//!
//! The dashboards test starts an agent on containerd running one pod (a CPU limit for throttling, a
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
//!
//! The kube-prometheus test runs Prometheus with the mixin's scrape configuration (pointed at
//! this agent) and `rules.yaml`: every rule must evaluate without error, and every recording
//! rule, every alert's watched series (its expression without the final threshold) and every
//! query of `queries.txt` must return data, except those listed in `NOT_APPLICABLE` with the
//! reason (API client, certificates, PVC stats, Go runtime, removed metrics, evictions), which
//! must stay empty. Its pods start after Prometheus does, and short-lived pods with an
//! `emptyDir` come and go while it checks, so that pod starts, cgroup and volume operations
//! fall inside the queries' rate windows. It prints how many queries return data.

mod cadvisor_support;
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
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
        let mut cfg = String::from(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, port, path) in targets {
            cfg.push_str(&format!(
                "- job_name: {job}\n  metrics_path: {path}\n  static_configs:\n  - targets: ['127.0.0.1:{port}']\n"
            ));
        }
        Self::start_with_config(&cfg, &[])
    }

    /// Prometheus with configuration `cfg`; `files` (name, content) are written next to it
    /// (rule files are named relative to the configuration).
    fn start_with_config(cfg: &str, files: &[(&str, &str)]) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("kubelet-rs-prometheus-")
            .tempdir()
            .unwrap();
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
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
        self.api(&format!("/api/v1/query?query={}", urlencode(expr)))
            .map(|d| d["result"].as_array().cloned().unwrap_or_default())
    }

    /// GET `path` of the HTTP API; its `data`.
    fn api(&self, path: &str) -> Result<Value, String> {
        let (code, _, body) = http(self.port, "GET", path, "").map_err(|e| e.to_string())?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if code != 200 || v["status"] != "success" {
            return Err(format!("{code}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// Waits until every target of the configuration is up.
    fn wait_targets_up(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let up = self.query("sum(up)").unwrap_or_default();
            if up.first().and_then(|r| r["value"][1].as_str()) == Some(n.to_string().as_str()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "targets not up: {:?}\n{}",
                self.query("up"),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
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
    prom.wait_targets_up(5);
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

// --- kube-prometheus: the kubernetes-mixin's kubelet rules and dashboard queries -------------

/// The kubelet part of the kubernetes-mixin as kube-prometheus renders it (its README says
/// where it comes from): `rules.yaml`, `queries.txt`, `prometheus.yml`.
fn kube_prometheus_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kube-prometheus");
    assert!(
        dir.join("queries.txt").is_file(),
        "{} is missing: the kube-prometheus content (DESIGN.md) must sit next to the checkout",
        dir.display()
    );
    dir
}

/// Series no standalone kubelet feeds, with the reason: a rule or query that reads one of them
/// is not required to return data (and must not: if it does, this list is out of date).
const NOT_APPLICABLE: &[(&str, &str)] = &[
    (
        "rest_client_",
        "API client: a standalone kubelet-rs talks to no API server (comes with the API-server work)",
    ),
    (
        "kubelet_volume_stats_",
        "PVC volume stats: need PersistentVolumeClaims, which come from an API server",
    ),
    (
        "kubelet_certificate_manager_",
        "certificates: no client or serving certificate rotation yet (kubelet-API and TLS-bootstrap work)",
    ),
    (
        "kubelet_server_expiration_renew_errors",
        "certificates: no serving certificate rotation yet",
    ),
    (
        "go_goroutines",
        "a Go runtime metric; kubelet-rs is not a Go program",
    ),
    (
        "kubelet_node_config_error",
        "dynamic kubelet configuration was removed in Kubernetes 1.24, and this metric with it",
    ),
    (
        "storage_operation_errors_total",
        "removed from the kubelet in 1.22 (kubernetes#102801); failures are storage_operation_duration_seconds{status=\"fail-unknown\"}",
    ),
    (
        "kubelet_evictions",
        "a counter vector that prints nothing until the first eviction (as the kubelet's); no pod is evicted in this test",
    ),
];

fn not_applicable(expr: &str) -> Option<&'static str> {
    NOT_APPLICABLE
        .iter()
        .find(|(series, _)| expr.contains(series))
        .map(|(_, why)| *why)
}

/// An alert's expression without its final comparison with a constant (`... > ( 25 / 100 )`,
/// `... == 0`): the series the alert watches, which exist whether or not it fires.
fn without_threshold(expr: &str) -> String {
    let b = expr.as_bytes();
    let (mut depth, mut quoted, mut last) = (0i32, false, None);
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if quoted {
            if c == b'\\' {
                i += 1;
            } else if c == b'"' {
                quoted = false;
            }
        } else {
            match c {
                b'"' => quoted = true,
                b'(' | b'{' | b'[' => depth += 1,
                b')' | b'}' | b']' => depth -= 1,
                b'>' | b'<' | b'=' | b'!' if depth == 0 => {
                    let two = b.get(i + 1) == Some(&b'=');
                    if c != b'=' && c != b'!' || two {
                        last = Some(i);
                    }
                    if two {
                        i += 1;
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    match last {
        Some(at) => {
            let rest = expr[at..].trim_start_matches(['>', '<', '=', '!']);
            let constant = rest
                .chars()
                .all(|c| c.is_ascii_digit() || " \n\t.()/*+-".contains(c));
            if constant {
                expr[..at].trim_end().to_string()
            } else {
                expr.to_string()
            }
        }
        None => expr.to_string(),
    }
}

/// What the mixin's queries need to see on one node: a container with a CPU limit that works
/// hard enough to be throttled, writes and reads its `emptyDir` with direct I/O (block I/O per
/// device) and has a readiness probe. Its volumes are disk-backed: a tmpfs volume would stay
/// mounted under the test's directory when the agent is killed at the end.
const KP_POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: mixed
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

/// A short-lived pod: the test adds and removes one after another, so that pod starts, cgroup
/// and volume operations happen inside every rate window of the queries.
fn churn_pod(n: u32) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: churn-{n}
  namespace: default
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: tmp
    emptyDir: {{}}
  containers:
  - name: main
    image: 127.0.0.1:5000/kubelet-rs/busybox:1.35
    command: [\"sleep\", \"3600\"]
    volumeMounts:
    - name: tmp
      mountPath: /tmp/x
    resources:
      limits:
        cpu: 50m
        memory: 16Mi
"
    )
}

/// One thing to evaluate: a dashboard query, a recording rule or an alert's watched series.
struct Check {
    what: String,
    expr: String,
}

fn rule_checks(rules: &str) -> Vec<Check> {
    let doc: serde_yaml::Value = serde_yaml::from_str(rules).expect("rules.yaml parses");
    let mut out = Vec::new();
    for g in doc["groups"].as_sequence().expect("groups") {
        for r in g["rules"].as_sequence().expect("rules") {
            let expr = r["expr"].as_str().expect("expr").trim().to_string();
            if let Some(name) = r["record"].as_str() {
                // The recorded series itself, as Prometheus stored it.
                out.push(Check {
                    what: format!("record {name}"),
                    expr: name.to_string(),
                });
            } else if let Some(name) = r["alert"].as_str() {
                out.push(Check {
                    what: format!("alert {name}"),
                    expr: without_threshold(&expr),
                });
            }
        }
    }
    out
}

fn query_checks(queries: &str) -> Vec<Check> {
    queries
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (what, expr) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("queries.txt: no tab in {l:?}"));
            Check {
                what: what.to_string(),
                expr: expr.to_string(),
            }
        })
        .collect()
}

#[test]
fn kube_prometheus_rules_and_queries_return_data() {
    if !require_runtime() || !require_tool(PROMETHEUS, "prometheus") {
        return;
    }
    let kp = kube_prometheus_dir();
    let read = |f: &str| std::fs::read_to_string(kp.join(f)).unwrap();
    let rules = read("rules.yaml");
    let queries = query_checks(&read("queries.txt"));
    assert_eq!(queries.len(), 127, "queries.txt changed: update this test");
    let rule_list = rule_checks(&rules);
    assert_eq!(rule_list.len(), 19, "rules.yaml changed: update this test");

    let agent = Agent::start_with("kube-prometheus", &[]);
    let throttled = throttle_rule(&agent).is_some();
    // The scrape configuration as kube-prometheus's ServiceMonitor has it, pointed at this agent.
    let cfg = read("prometheus.yml")
        .replace(
            "127.0.0.1:10255",
            &format!("127.0.0.1:{}", agent.read_only_port),
        )
        .replace("<NODE>", &agent.node);
    let prom = Prometheus::start_with_config(&cfg, &[("rules.yaml", &rules)]);
    prom.wait_targets_up(4);
    // Pods come after Prometheus scrapes, so that their starts fall inside its rate windows.
    agent.write_manifest("mixed.yaml", KP_POD);
    agent.write_manifest("unpullable.yaml", BROKEN_POD);
    agent.wait_running("mixed", Duration::from_secs(90));

    // Every rule loads and evaluates without error.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let groups = prom.api("/api/v1/rules").expect("rules API");
        let all: Vec<&Value> = groups["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        assert_eq!(all.len(), rule_list.len(), "rules loaded: {groups}");
        if all.iter().all(|r| r["health"] != "unknown") {
            for r in &all {
                assert_eq!(
                    r["health"], "ok",
                    "rule {} fails: {}",
                    r["name"], r["lastError"]
                );
            }
            break;
        }
        assert!(Instant::now() < deadline, "rules never evaluated: {groups}");
        std::thread::sleep(Duration::from_secs(1));
    }

    let (mut pending, not_applicable_checks): (Vec<Check>, Vec<Check>) = queries
        .into_iter()
        .chain(rule_list)
        .partition(|c| not_applicable(&c.expr).is_none());
    let total = pending.len() + not_applicable_checks.len();
    for (series, _) in NOT_APPLICABLE {
        assert!(
            not_applicable_checks
                .iter()
                .any(|c| c.expr.contains(series)),
            "NOT_APPLICABLE entry {series} matches no rule or query: remove it"
        );
    }
    if !throttled {
        eprintln!("note: no blkio throttle file; per-device block I/O queries may stay empty");
    }
    let mut churn = 0u32;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut last_errors;
    loop {
        // A new short-lived pod each round, the previous one removed.
        if churn > 0 {
            agent.remove_manifest(&format!("churn-{}.yaml", churn - 1));
        }
        agent.write_manifest(&format!("churn-{churn}.yaml"), &churn_pod(churn));
        churn += 1;
        last_errors = Vec::new();
        pending.retain(|c| match prom.query(&c.expr) {
            Ok(r) if finite(&r) => false,
            Ok(r) => {
                last_errors.push(format!(
                    "{}: {}\n  -> {} series, none finite",
                    c.what,
                    c.expr,
                    r.len()
                ));
                true
            }
            Err(e) => {
                last_errors.push(format!("{}: {}\n  -> {e}", c.what, c.expr));
                true
            }
        });
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {total} kube-prometheus checks a standalone kubelet feeds returned no data:\n{}\n--- agent log ---\n{}",
            pending.len(),
            last_errors.join("\n"),
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_secs(6));
    }
    // The not-applicable ones stay empty: one that gets data belongs in the checks above.
    let mut queries_na = 0;
    for c in &not_applicable_checks {
        let r = prom.query(&c.expr).unwrap_or_default();
        assert!(
            !finite(&r),
            "{} now returns data: remove its entry from NOT_APPLICABLE\n{}",
            c.what,
            c.expr
        );
        if !c.what.starts_with("alert ") && !c.what.starts_with("record ") {
            queries_na += 1;
        }
    }
    let rules_na = not_applicable_checks.len() - queries_na;
    println!(
        "kube-prometheus: {} of 127 dashboard queries return data; {} of {} rules (recording rules, and the series each alert watches) return data; not applicable:",
        127 - queries_na,
        total - 127 - rules_na,
        total - 127
    );
    for c in &not_applicable_checks {
        println!(
            "  {} ({})",
            c.what,
            not_applicable(&c.expr).unwrap_or_default()
        );
    }
}
