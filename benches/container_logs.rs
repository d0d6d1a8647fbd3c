//! `/containerLogs?follow=true` streaming throughput through the handler vs reading the same
//! log file directly (issue 13's benchmark; target: the handler at ≥ 0.8× the direct read).
//!
//! The agent runs in-process against the fake CRI runtime (a hollow node: no root, no
//! containerd) with one pod; the bench writes that container's log file itself, in the CRI
//! format containerd writes (`<RFC 3339 time> stdout F <line>`, one line in 50 cut into a `P`
//! and an `F` record as containerd cuts long lines), `--lines` lines of about 100 bytes (page
//! cache warm after the first pass). Then, each `--reps` times, best kept:
//!
//! - `raw read`: the file read in 256 KiB chunks, nothing else: the floor of any reader;
//! - `direct parse`: the same reads through the CRI decoder (`logs::cri`), i.e. what a reader
//!   of the file must do to print what the handler prints;
//! - `handler, follow`: `GET /containerLogs/default/<pod>/main?follow=true` on the handler's
//!   router served by axum on 127.0.0.1 (plain HTTP: TLS and authentication are the server's,
//!   not the handler's), read by a hyper client until every output byte arrived. The follower
//!   is in `follow` mode throughout (inotify watch, liveness checks); the container still runs.
//!
//! Throughput is file bytes per second (the same file each time); `handler/it` is the
//! handler's throughput as a fraction of that reader's. The last repetition then stops the container in
//! the fake and checks that the stream ends by itself.
//!
//! Run: `cargo bench --bench container_logs` (options after `--`: `--lines 1500000`
//! `--reps 5`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use kubelet_rs::fakeruntime::{pod_manifest, pod_running, HollowConfig, HollowNode};
use kubelet_rs::logs::cri::{Decoder, LogWriter};
use kubelet_rs::server::{containerlogs, ApiState};

const BUSYBOX: &str = "127.0.0.1:5000/kubelet-rs/busybox:1.35";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
const CHUNK: usize = 256 << 10;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: expected a whole number, got {v:?}"))
        })
        .unwrap_or(default)
}

/// Writes the log; returns (file bytes, output bytes).
fn write_log(path: &Path, lines: usize) -> (u64, u64) {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let pad = "p".repeat(80);
    let (mut file, mut out) = (0u64, 0u64);
    for i in 0..lines {
        let text = format!("line {i:09} {pad}");
        let ts = format!("2026-01-01T00:{:02}:{:02}.{:09}Z", (i / 60) % 60, i % 60, i);
        let rec = if i % 50 == 0 {
            let (a, b) = text.split_at(40);
            format!("{ts} stdout P {a}\n{ts} stdout F {b}\n")
        } else {
            format!("{ts} stdout F {text}\n")
        };
        f.write_all(rec.as_bytes()).unwrap();
        file += rec.len() as u64;
        out += text.len() as u64 + 1;
    }
    f.flush().unwrap();
    (file, out)
}

fn raw_read(path: &Path) -> Duration {
    let start = Instant::now();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let r = f.read(&mut buf).unwrap();
        if r == 0 {
            break;
        }
        n += r as u64;
    }
    std::hint::black_box(n);
    start.elapsed()
}

/// Reads and decodes the file as the handler does; returns the time and the output size.
fn direct_parse(path: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut filled = 0;
    let mut out = Vec::with_capacity(CHUNK);
    let mut total = 0u64;
    let mut d = Decoder::new();
    let mut w = LogWriter::new(None, false, None);
    loop {
        let r = f.read(&mut buf[filled..]).unwrap();
        if r == 0 {
            break;
        }
        filled += r;
        let (used, _) = d.feed_lines(&buf[..filled], &mut w, &mut out);
        buf.copy_within(used..filled, 0);
        filled -= used;
        total += out.len() as u64;
        std::hint::black_box(&out);
        out.clear();
    }
    (start.elapsed(), total)
}

/// Follows the log through the handler until `expected` output bytes arrived; returns the time
/// and the response body (still open).
async fn via_handler(
    addr: std::net::SocketAddr,
    uri: &str,
    expected: u64,
) -> (Duration, hyper::body::Incoming) {
    let start = Instant::now();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(uri)
        .header("host", "127.0.0.1")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut got = 0u64;
    while got < expected {
        let frame = body
            .frame()
            .await
            .expect("the stream goes on")
            .expect("a frame");
        if let Ok(data) = frame.into_data() {
            got += data.len() as u64;
        }
    }
    assert_eq!(got, expected, "output bytes");
    (start.elapsed(), body)
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let lines = arg("--lines", 1_500_000);
    let reps = arg("--reps", 5).max(1);
    let dir = tempfile::Builder::new()
        .prefix("kubelet-rs-bench-logs-")
        .tempdir()
        .unwrap();
    let hollow = HollowNode::start(
        dir.path(),
        HollowConfig {
            node_name: "bench-logs".into(),
            preload_images: vec![BUSYBOX.into()],
            // The kubelet API on a port of its own (not 10250, which parallel nodes share).
            extra_flags: vec![
                "--address=127.0.0.1".into(),
                format!("--port={}", free_port()),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    hollow
        .write_manifest(
            "logs.yaml",
            &pod_manifest("logs", "Always", &[("main", BUSYBOX)]),
        )
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while hollow.pod("logs").filter(pod_running).is_none() {
        assert!(Instant::now() < deadline, "the pod did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let full = hollow.pod_name("logs");
    let id = hollow
        .fake
        .containers()
        .into_iter()
        .find(|c| c.pod_name == full)
        .unwrap()
        .id;
    let kl = hollow.agent.kubelet.clone();
    let log = PathBuf::from(kl.runtime.container_status(&id).await.unwrap().log_path);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let (file_bytes, out_bytes) = write_log(&log, lines);

    let state = ApiState {
        status: kl.status.clone(),
        kubelet: kl,
        metrics: kubelet_rs::metrics::Metrics::new("bench-logs"),
        monitor: hollow.agent.monitor.clone(),
        names: Arc::new(kubelet_rs::cadvisor::names::RuntimeNames::new("containerd")),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, containerlogs::routes(Arc::new(state)))
            .await
            .unwrap()
    });
    let uri = format!("/containerLogs/default/{full}/main?follow=true");

    println!(
        "container log: {lines} lines, {:.1} MB of file, {:.1} MB of output; best of {reps}",
        file_bytes as f64 / 1e6,
        out_bytes as f64 / 1e6
    );
    let (mut raw, mut direct, mut handler) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for rep in 0..reps {
        let p = log.clone();
        raw = raw.min(
            tokio::task::spawn_blocking(move || raw_read(&p))
                .await
                .unwrap(),
        );
        let p = log.clone();
        let (d, n) = tokio::task::spawn_blocking(move || direct_parse(&p))
            .await
            .unwrap();
        assert_eq!(n, out_bytes, "the direct reader's output");
        direct = direct.min(d);
        let (h, body) = via_handler(addr, &uri, out_bytes).await;
        handler = handler.min(h);
        if rep + 1 == reps {
            // The container stops: the follower ends the stream by itself.
            hollow.fake.exit_container(&id, 0).unwrap();
            let rest = tokio::time::timeout(Duration::from_secs(30), body.collect())
                .await
                .expect("the stream ends after the container stopped")
                .unwrap()
                .to_bytes();
            assert!(rest.is_empty(), "{} bytes after the end", rest.len());
        }
    }
    println!(
        "{:<18} {:>9} {:>10} {:>10}",
        "reader", "time", "file MB/s", "handler/it"
    );
    for (name, d) in [
        ("raw read", raw),
        ("direct parse", direct),
        ("handler, follow", handler),
    ] {
        println!(
            "{name:<18} {:>7.1}ms {:>10.0} {:>10.2}",
            d.as_secs_f64() * 1e3,
            mbps(file_bytes, d),
            d.as_secs_f64() / handler.as_secs_f64()
        );
    }
    println!(
        "handler vs direct parse: {:.2}× (target ≥ 0.8×); vs raw read: {:.2}×",
        direct.as_secs_f64() / handler.as_secs_f64(),
        raw.as_secs_f64() / handler.as_secs_f64()
    );
}
