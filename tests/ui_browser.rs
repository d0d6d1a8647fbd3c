//! The container UI in a real browser: headless Chromium (Debian's `chromium`) loads
//! `/containers/` from a running `kubelet-rs cadvisor` on a random loopback port, driven over
//! the DevTools protocol on `--remote-debugging-pipe` (file descriptors 3 and 4, NUL-separated
//! JSON messages). The test waits until the page has redrawn its charts with live data several
//! times, saves a screenshot (`$CARGO_TARGET_TMPDIR/ui-containers.png`), and fails on any
//! console error, uncaught exception, error log entry or request to a non-loopback address.
//!
//! Chromium is required under `scripts/test` (which installs it); elsewhere a missing
//! browser is a loud skip.

mod cadvisor_support;
mod common;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use cadvisor_support::{require_tool, Cadvisor};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

/// A Chromium driven over its DevTools pipe.
struct Browser {
    child: Child,
    to: File,
    from: Receiver<Value>,
    next_id: u64,
    /// Events received while waiting for responses.
    events: VecDeque<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn launch() -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("kubelet-rs-chromium-")
            .tempdir()
            .unwrap();
        let (to_chrome_r, to_chrome_w) = pipe();
        let (from_chrome_r, from_chrome_w) = pipe();
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1400,2400",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe; it
        // installs the pipe ends as the descriptors 3 (commands in) and 4 (messages out)
        // that --remote-debugging-pipe reads and writes (dup2 clears close-on-exec).
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(to_chrome_r, 3) < 0 || libc::dup2(from_chrome_w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn chromium");
        // SAFETY: the child has its copies; these are our own descriptors, closed once.
        unsafe {
            libc::close(to_chrome_r);
            libc::close(from_chrome_w);
        }
        // SAFETY: each descriptor is owned by exactly one File from here on.
        let to = unsafe { File::from_raw_fd(to_chrome_w) };
        // SAFETY: as above.
        let mut from_file = unsafe { File::from_raw_fd(from_chrome_r) };
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                match from_file.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while let Some(i) = buf.iter().position(|&b| b == 0) {
                    let msg: Vec<u8> = buf.drain(..=i).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..msg.len() - 1]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to,
            from: rx,
            next_id: 0,
            events: VecDeque::new(),
            _profile: profile,
        }
    }

    /// Sends a command (to a session when given) and waits for its result.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self
                .from
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"));
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method} failed: {e}");
                }
                return v["result"].clone();
            }
            self.events.push_back(v);
        }
    }

    fn drain(&mut self) {
        while let Ok(v) = self.from.try_recv() {
            self.events.push_back(v);
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .to
            .write_all(b"{\"id\":999999,\"method\":\"Browser.close\"}\0");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `url` stays on this machine (loopback) or is page-internal.
fn is_local(url: &str) -> bool {
    if ["data:", "blob:", "about:", "chrome:", "devtools:"]
        .iter()
        .any(|p| url.starts_with(p))
    {
        return true;
    }
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(host, "127.0.0.1" | "localhost" | "[::1]")
}

/// Problems seen in the protocol's events: console errors, exceptions, error logs, requests
/// leaving the machine.
fn problems(events: &VecDeque<Value>) -> Vec<String> {
    let mut out = Vec::new();
    for e in events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or("") {
            "Runtime.consoleAPICalled"
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                out.push(format!("console error: {}", p["args"]))
            }
            "Runtime.exceptionThrown" => out.push(format!("exception: {}", p["exceptionDetails"])),
            "Log.entryAdded" if p["entry"]["level"] == "error" => {
                out.push(format!("log error: {}", p["entry"]))
            }
            "Network.requestWillBeSent" => {
                let url = p["request"]["url"].as_str().unwrap_or("");
                if !is_local(url) {
                    out.push(format!("request leaving the machine: {url}"));
                }
            }
            _ => {}
        }
    }
    out
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = acc << 6 | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn base64_and_url_rules() {
    assert_eq!(decode_base64("aGVsbG8="), b"hello");
    assert!(is_local("http://127.0.0.1:4194/static/charts.js"));
    assert!(is_local("http://localhost/x") && is_local("data:,") && is_local("http://[::1]:80/"));
    assert!(!is_local("https://cdn.example.com/chart.js"));
    assert!(!is_local("http://10.0.0.1:80/"));
}

#[test]
fn container_page_draws_live_charts_in_chromium() {
    if !require_tool(CHROMIUM, "chromium") {
        return;
    }
    let c = Cadvisor::start(&[]);
    let url = format!("http://127.0.0.1:{}/containers/", c.port);
    let mut b = Browser::launch();
    let target = b.call(None, "Target.createTarget", json!({"url": "about:blank"}));
    let target_id = target["targetId"].as_str().unwrap().to_string();
    let attached = b.call(
        None,
        "Target.attachToTarget",
        json!({"targetId": target_id, "flatten": true}),
    );
    let session = attached["sessionId"].as_str().unwrap().to_string();
    let s = Some(session.as_str());
    for m in [
        "Runtime.enable",
        "Log.enable",
        "Network.enable",
        "Page.enable",
    ] {
        b.call(s, m, json!({}));
    }
    b.call(
        s,
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1400, "height": 2200, "deviceScaleFactor": 1, "mobile": false}),
    );
    b.call(s, "Page.navigate", json!({"url": url}));

    // Live data: several full refreshes, every chart drawn with points.
    let probe = "JSON.stringify({page: window.__containerPage || null, charts: [...document.querySelectorAll('canvas.chart, canvas.gauge, canvas.bar')].map(c => [c.id, +(c.dataset.points || 0)])})";
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        let r = b.call(
            s,
            "Runtime.evaluate",
            json!({"expression": probe, "returnByValue": true}),
        );
        let v: Value = serde_json::from_str(r["result"]["value"].as_str().unwrap_or("{}"))
            .unwrap_or(Value::Null);
        let draws = v["page"]["draws"].as_u64().unwrap_or(0);
        let cpu_points = v["charts"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c[0] == "cpu-total"))
            .and_then(|c| c[1].as_u64())
            .unwrap_or(0);
        if draws >= 4 && cpu_points >= 3 {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "charts never drew live data: {v}\n{}",
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(state["page"]["errors"], 0, "{state}");
    let charts: Vec<(String, u64)> = state["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].as_u64().unwrap()))
        .collect();
    for id in [
        "cpu-total",
        "cpu-breakdown",
        "mem-usage",
        "net-throughput",
        "net-errors",
        "gauge-cpu",
        "gauge-mem",
        "mem-hotcold",
    ] {
        let points = charts.iter().find(|(c, _)| c == id).map_or(0, |c| c.1);
        assert!(points > 0, "{id} did not draw: {charts:?}");
    }
    if std::path::Path::new("/sys/fs/cgroup/cpuacct/cpuacct.usage_percpu").exists() {
        assert!(
            charts.iter().any(|(c, p)| c == "cpu-percore" && *p > 0),
            "per-core chart: {charts:?}"
        );
    }
    // The tables filled in: isolation, subcontainers, processes.
    let tables = b.call(
        s,
        "Runtime.evaluate",
        json!({"expression": "[document.querySelectorAll('#isolation tr').length, document.querySelectorAll('#subcontainers li a').length, document.querySelectorAll('#ps tr').length]", "returnByValue": true}),
    );
    let counts: Vec<u64> = tables["result"]["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(
        counts.iter().all(|n| *n > 0),
        "isolation rows, subcontainer links, process rows: {counts:?}"
    );

    let shot = b.call(
        s,
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true}),
    );
    let png = decode_base64(shot["data"].as_str().unwrap());
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "screenshot of {} bytes",
        png.len()
    );
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-containers.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());

    b.drain();
    let found = problems(&b.events);
    assert!(
        found.is_empty(),
        "the page misbehaved:\n{}",
        found.join("\n")
    );
    let requests: Vec<&str> = b
        .events
        .iter()
        .filter(|e| e["method"] == "Network.requestWillBeSent")
        .filter_map(|e| e["params"]["request"]["url"].as_str())
        .collect();
    assert!(
        requests.iter().any(|u| u.ends_with("/static/charts.js")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|u| u.contains("/api/v1.3/containers")),
        "{requests:?}"
    );
}
