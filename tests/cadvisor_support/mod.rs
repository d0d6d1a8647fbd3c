//! Shared helpers of the monitoring tests (`cadvisor_*`, `metrics_*`, `ui_*`,
//! `dashboards_*`): the standalone `kubelet-rs cadvisor` process, `promtool check metrics`
//! with the lint findings that upstream's own metric names cause, and the rule for tools
//! that `scripts/test` installs.

#![allow(dead_code)]

// The HTTP client and port picker are the runtime harness's (each test that uses this module
// also declares `mod common`).
pub use super::common::{free_port, http};

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Set by `scripts/test` after it installs `prometheus` and `chromium`: their absence is then
/// a failure, not a skip.
pub const TOOLS_REQUIRED_ENV: &str = "KUBELET_RS_MONITORING_TOOLS";

/// Whether `tool` exists. When it does not: a failure under `scripts/test`
/// (`KUBELET_RS_MONITORING_TOOLS=required`), otherwise a loud skip.
pub fn require_tool(tool: &str, package: &str) -> bool {
    if Path::new(tool).exists() {
        return true;
    }
    let required = std::env::var(TOOLS_REQUIRED_ENV).is_ok_and(|v| v == "required");
    assert!(
        !required,
        "{tool} is missing although {TOOLS_REQUIRED_ENV}=required: install Debian's `{package}` (scripts/test does)"
    );
    eprintln!(
        "skipped: {tool} is not installed (Debian package `{package}`; scripts/test installs it)"
    );
    false
}

/// Whether this test can create cgroups and read every process (root).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// GET, expecting 200; returns the body.
pub fn get_ok(port: u16, path: &str) -> String {
    let (code, _, body) = http(port, "GET", path, "").unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(code, 200, "GET {path}: {body}");
    body
}

/// A running `kubelet-rs cadvisor` on a random loopback port; killed on drop.
pub struct Cadvisor {
    child: Child,
    pub port: u16,
    pub log: tempfile::NamedTempFile,
}

impl Cadvisor {
    pub fn start(extra: &[&str]) -> Cadvisor {
        let port = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kubelet-rs"))
            .args([
                "cadvisor",
                "--cadvisor-port",
                &port.to_string(),
                "--housekeeping-interval",
                "500ms",
            ])
            .args(extra)
            .stdout(Stdio::from(log.reopen().unwrap()))
            .stderr(Stdio::from(log.reopen().unwrap()))
            .spawn()
            .expect("spawn kubelet-rs cadvisor");
        let mut c = Cadvisor { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _, _)) = http(port, "GET", "/healthz", "") {
                break;
            }
            if let Ok(Some(st)) = c.child.try_wait() {
                panic!("kubelet-rs cadvisor exited with {st}: {}", c.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "kubelet-rs cadvisor did not come up: {}",
                c.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for Cadvisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const PROMTOOL: &str = "/usr/bin/promtool";

/// Lint findings caused by names exactly as upstream spells them (cAdvisor, the kubelet):
/// (metric, finding). Anything else `promtool` reports fails the test.
pub const UPSTREAM_LINT: &[(&str, &str)] = &[
    (
        "cadvisor_version_info",
        "label names should be written in 'snake_case' not 'camelCase'",
    ),
    (
        "container_cpu_load_d_average_10s",
        "metric names should not contain abbreviated units",
    ),
    (
        "container_cpu_load_average_10s",
        "metric names should not contain abbreviated units",
    ),
    (
        "container_fs_inodes_total",
        "non-counter metrics should not have \"_total\" suffix",
    ),
    (
        "container_memory_failcnt",
        "counter metrics should have \"_total\" suffix",
    ),
    (
        "kubelet_evictions",
        "counter metrics should have \"_total\" suffix",
    ),
    (
        "volume_manager_total_volumes",
        "non-counter metrics should not have \"_total\" suffix",
    ),
];

/// Runs `promtool check metrics` on `text` from `endpoint`: a parse error fails; lint
/// findings other than [`UPSTREAM_LINT`] fail. Returns the upstream findings seen.
pub fn promtool_check(endpoint: &str, text: &str) -> Vec<String> {
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    match out.status.code() {
        Some(0) => return Vec::new(),
        Some(3) => {}
        other => panic!("promtool check metrics failed on {endpoint} ({other:?}):\n{report}\n--- input head ---\n{}", &text[..text.len().min(2000)]),
    }
    let mut seen = Vec::new();
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        let (metric, finding) = line.split_once(' ').unwrap_or((line, ""));
        assert!(
            UPSTREAM_LINT
                .iter()
                .any(|(m, f)| *m == metric && *f == finding),
            "promtool on {endpoint}: unexpected finding {line:?}\n{report}"
        );
        seen.push(line.to_string());
    }
    seen
}

/// Family names (`# TYPE` lines) of an exposition.
pub fn families(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The samples of `family` (exact name) as (labels text, value, timestamp).
pub fn samples<'a>(text: &'a str, family: &str) -> Vec<(&'a str, f64, Option<i64>)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?;
            let (labels, tail) = if let Some(r) = rest.strip_prefix('{') {
                let end = r.rfind('}')?;
                (&r[..end], &r[end + 1..])
            } else if rest.starts_with(' ') {
                ("", rest)
            } else {
                return None;
            };
            let mut it = tail.split_whitespace();
            let v = it.next()?.parse().ok()?;
            let ts = it.next().and_then(|t| t.parse().ok());
            Some((labels, v, ts))
        })
        .collect()
}
