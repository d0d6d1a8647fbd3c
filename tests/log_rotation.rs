//! Container log rotation on the real containerd: a container that writes up to 50 MB/s
//! keeps its log directory within `containerLogMaxSize × containerLogMaxFiles` plus one
//! rotation's slack, older rotated files are gzipped, and the runtime keeps writing to the
//! reopened log.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

const START: Duration = Duration::from_secs(60);
const MAX_SIZE: u64 = 8 << 20;
const MAX_FILES: u64 = 4;

/// The directory's total size and its files' names, with the sizes listed for messages.
fn dir_size(dir: &Path) -> (u64, Vec<String>, String) {
    let mut total = 0;
    let mut names = Vec::new();
    let mut sizes = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                total += m.len();
            }
            names.push(e.file_name().to_string_lossy().into_owned());
            sizes.push(format!(
                "{} {}",
                e.file_name().to_string_lossy(),
                e.metadata().map(|m| m.len()).unwrap_or(0)
            ));
        }
    }
    names.sort();
    sizes.sort();
    (total, names, sizes.join(", "))
}

#[test]
fn a_fast_writer_stays_within_max_size_times_max_files() {
    if !require_runtime() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kubelet.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             containerLogMaxSize: 8Mi\ncontainerLogMaxFiles: {MAX_FILES}\n\
             containerLogMonitorInterval: 10s\n"
        ),
    )
    .unwrap();
    let agent = Agent::start_with("logrot", &[&format!("--config={}", config.display())]);
    // 100-byte lines, 5 MB at a time, ten times a second: up to 50 MB/s.
    let line = "x".repeat(99);
    agent.write_manifest(
        "chatty.yaml",
        &busybox_pod(
            "chatty",
            &format!("while true; do yes {line} | head -c 5000000; sleep 0.1; done"),
            "",
        ),
    );
    let pod = agent.wait_running("chatty", START);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let name = agent.pod_name("chatty");
    let log_dir = Path::new("/var/log/pods")
        .join(format!("default_{name}_{uid}"))
        .join("main");

    let bound = MAX_SIZE * MAX_FILES + MAX_SIZE;
    let started = Instant::now();
    let mut largest = 0;
    let mut rotated = BTreeSet::new();
    let mut gz_seen = false;
    // Well past the 10 s monitor interval: the inotify path must keep up on its own.
    while started.elapsed() < Duration::from_secs(25) {
        let (total, names, sizes) = dir_size(&log_dir);
        largest = largest.max(total);
        assert!(
            total <= bound,
            "log directory at {total} bytes, over {bound}: {sizes}\n{}",
            agent.log_tail()
        );
        assert!(names.len() as u64 <= MAX_FILES + 1, "{names:?}");
        for n in names
            .iter()
            .filter(|n| n.starts_with("0.log.") && !n.ends_with(".tmp"))
        {
            gz_seen |= n.ends_with(".gz");
            rotated.insert(n.trim_end_matches(".gz").to_string());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} rotations in {secs:.1} s (≥ {:.1} MB/s written), largest directory {largest} bytes, bound {bound}",
        rotated.len(),
        (rotated.len() as u64 * MAX_SIZE) as f64 / secs / 1e6
    );
    assert!(
        rotated.len() >= 4,
        "the writer should have filled several files: {rotated:?}\n{}",
        agent.log_tail()
    );
    assert!(gz_seen, "older rotated files are compressed: {rotated:?}");

    // The runtime writes to the reopened live log, and the newest rotated file is plain text in
    // the CRI log format.
    let live = log_dir.join("0.log");
    let a = std::fs::metadata(&live).map(|m| m.len()).unwrap_or(0);
    let (_, names, _) = dir_size(&log_dir);
    let newest = names
        .iter()
        .filter(|n| n.starts_with("0.log.") && !n.ends_with(".gz") && !n.ends_with(".tmp"))
        .max()
        .cloned()
        .expect("a plain rotated file");
    let text = std::fs::read_to_string(log_dir.join(&newest)).unwrap();
    let first = text.lines().next().unwrap();
    // `<RFC 3339 time> stdout <F|P> <text>`: the writer's lines (cut anywhere by `head -c`).
    let fields: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(
        fields.len() == 4
            && fields[0].parse::<jiff::Timestamp>().is_ok()
            && fields[1] == "stdout"
            && ["F", "P"].contains(&fields[2])
            && fields[3].bytes().all(|b| b == b'x'),
        "{first}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let b = std::fs::metadata(&live).map(|m| m.len()).unwrap_or(0);
    let (_, after, _) = dir_size(&log_dir);
    assert!(
        b != a || after != names,
        "the live log keeps growing or rotating"
    );
}
