//! One stuck cgroup must not stall the node (issue 11, item 2), on the real containerd.
//!
//! An orphaned pod cgroup under the test agent's `kubepods` (as an earlier agent's pod would
//! leave) holds a process that cannot die: on cgroup v1 it also sits in a frozen freezer
//! cgroup the test owns, so the agent's SIGKILL stays pending and `rmdir` keeps failing with
//! EBUSY. (On a pure v2 host, where SIGKILL ends even a frozen process, a tmpfs mounted on a
//! child directory keeps the orphan busy instead; only the v1 path is verified live.)
//!
//! Static pods added a second after the agent starts must start as they do on a clean node:
//! the test asserts ordering, not time — each new pod is Running while the orphan is still
//! there and unremovable, the agent reported the orphan exactly once however many times it
//! retried — and prints the start times with and without the orphan for comparison. Released,
//! the held process dies of the agent's SIGKILL and the orphan is removed.
//!
//! `cargo test -p kubelet-rs --test orphan_cgroups -- --nocapture` shows the times.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use collectors::layout::CgroupLayout;
use common::{busybox_pod, Agent};
use kubelet_rs::agent::CGROUP_MOUNT;

/// The report the agent logs, once, for a cgroup it cannot remove.
const REPORT: &str = "cannot remove orphaned pod cgroup";
/// Its debug line for each further failed attempt.
const RETRY: &str = "orphaned pod cgroup still busy; retrying";
const REMOVED: &str = "removed orphaned pod cgroup";

/// The hierarchies holding the orphan, found by the collectors' layout detection.
fn hierarchies() -> Vec<PathBuf> {
    let layout = CgroupLayout::detect(Path::new(CGROUP_MOUNT)).expect("cgroup layout");
    layout.discovery_roots()
}

/// The v1 freezer hierarchy's mount point, from `/proc/self/mountinfo`; `None` on pure v2.
fn freezer_mount() -> Option<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mi.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let (fstype, _src, opts) = (r.next()?, r.next()?, r.next()?);
        let mount = left.split_whitespace().nth(4)?;
        (fstype == "cgroup" && opts.split(',').any(|o| o == "freezer"))
            .then(|| PathBuf::from(mount))
    })
}

fn write(path: &Path, value: &str) {
    std::fs::write(path, value)
        .unwrap_or_else(|e| panic!("write {value:?} to {}: {e}", path.display()));
}

/// A process held in an orphaned pod cgroup so that it cannot be removed; undoes everything on
/// drop (thaws and kills the process, removes the test's cgroups and mount).
struct Held {
    child: Option<Child>,
    /// The orphan in every hierarchy.
    dirs: Vec<PathBuf>,
    /// The test's frozen freezer cgroup (v1).
    freezer: Option<PathBuf>,
    /// The tmpfs keeping the orphan busy (pure v2).
    mount: Option<PathBuf>,
}

impl Held {
    /// Creates `<cgroup-root>/kubepods/besteffort/pod<uid>` in every hierarchy and holds a
    /// process in it.
    fn new(cgroup_root: &str, uid: &str, node: &str) -> Held {
        let rel = format!(
            "{}/kubepods/besteffort/pod{uid}",
            cgroup_root.trim_start_matches('/')
        );
        let dirs: Vec<PathBuf> = hierarchies().iter().map(|h| h.join(&rel)).collect();
        for d in &dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        let child = Command::new("sleep")
            .arg("1000000")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id().to_string();
        let mut held = Held {
            child: Some(child),
            dirs,
            freezer: None,
            mount: None,
        };
        // Into the orphan wherever a plain task may join (v1 cpuset needs cpus/mems first).
        for d in &held.dirs {
            if !d.starts_with(Path::new(CGROUP_MOUNT).join("cpuset")) {
                write(&d.join("cgroup.procs"), &pid);
            }
        }
        match freezer_mount() {
            Some(f) => {
                let fz = f.join(format!("{node}-hold"));
                std::fs::create_dir_all(&fz).unwrap();
                held.freezer = Some(fz.clone());
                write(&fz.join("cgroup.procs"), &pid);
                write(&fz.join("freezer.state"), "FROZEN");
                let deadline = Instant::now() + Duration::from_secs(10);
                while std::fs::read_to_string(fz.join("freezer.state"))
                    .unwrap()
                    .trim()
                    != "FROZEN"
                {
                    assert!(
                        Instant::now() < deadline,
                        "the test's freezer cgroup did not freeze"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            None => {
                let m = held.dirs[0].join("held");
                std::fs::create_dir_all(&m).unwrap();
                let target = std::ffi::CString::new(m.to_str().unwrap()).unwrap();
                // SAFETY: mount(2) with valid NUL-terminated strings and no data.
                let rc = unsafe {
                    libc::mount(
                        c"none".as_ptr(),
                        target.as_ptr(),
                        c"tmpfs".as_ptr(),
                        0,
                        std::ptr::null(),
                    )
                };
                assert_eq!(
                    rc,
                    0,
                    "mount tmpfs on {}: {}",
                    m.display(),
                    std::io::Error::last_os_error()
                );
                held.mount = Some(m);
            }
        }
        held
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Whether the orphan is still there, and the held process still inside it (v1).
    fn still_held(&self) -> bool {
        let present = self.dirs.iter().any(|d| d.exists());
        let inside = match self.freezer {
            Some(_) => self.dirs.iter().any(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .is_ok_and(|s| s.lines().any(|l| l.trim() == self.pid().to_string()))
            }),
            None => true,
        };
        present && inside
    }

    /// Lets the orphan go: thaws the process (which then dies of the agent's pending SIGKILL) or
    /// unmounts the tmpfs. Returns how the process ended, on v1.
    fn release(&mut self) -> Option<std::process::ExitStatus> {
        if let Some(fz) = &self.freezer {
            write(&fz.join("freezer.state"), "THAWED");
            let child = self.child.as_mut().unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    self.child = None;
                    return Some(status);
                }
                assert!(
                    Instant::now() < deadline,
                    "the held process outlived its thaw"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(m) = self.mount.take() {
            let target = std::ffi::CString::new(m.to_str().unwrap()).unwrap();
            // SAFETY: umount2(2) on a path we mounted.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
        None
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(fz) = &self.freezer {
            let _ = std::fs::write(fz.join("freezer.state"), "THAWED");
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(m) = self.mount.take() {
            if let Ok(target) = std::ffi::CString::new(m.to_str().unwrap_or_default()) {
                // SAFETY: umount2(2) on a path we mounted.
                unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
            }
        }
        if let Some(fz) = &self.freezer {
            let _ = std::fs::remove_dir(fz);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d.join("held"));
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Adds `count` static pods one after the other, a second after the agent came up; returns
/// each one's time from manifest to Running.
fn start_pods(agent: &Agent, count: usize) -> Vec<Duration> {
    std::thread::sleep(Duration::from_secs(1));
    (0..count)
        .map(|i| {
            let name = format!("p{i}");
            let start = Instant::now();
            agent.write_manifest(
                &format!("{name}.yaml"),
                &busybox_pod(&name, "sleep 3600", ""),
            );
            agent.wait_running(&name, Duration::from_secs(120));
            start.elapsed()
        })
        .collect()
}

fn lines_with<'a>(log: &'a str, what: &str, uid: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains(what) && l.contains(uid))
        .collect()
}

#[test]
fn a_stuck_orphaned_pod_cgroup_does_not_hold_up_new_pods() {
    if !common::require_runtime() {
        return;
    }
    // A clean node, for comparison.
    let clean_times = {
        let clean = Agent::start("orphan-clean");
        start_pods(&clean, 2)
    };

    // An agent ran here before and left a pod cgroup behind, with a process in it.
    let mut agent = Agent::start("orphan-stuck");
    agent.kill();
    let uid = format!("0rphan-{}", std::process::id());
    let mut held = Held::new(&agent.cgroup_root, &uid, &agent.node);
    agent.spawn();
    let stuck_times = start_pods(&agent, 2);

    // Ordering, not time: every new pod is Running while the orphan is still there, busy.
    for name in ["p0", "p1"] {
        let pod = agent.pod(name).expect("pod listed");
        assert_eq!(pod["status"]["phase"], "Running", "{pod}");
    }
    assert!(
        held.still_held(),
        "the orphan went before the test released it"
    );

    // The agent reports it once, and keeps retrying quietly on its backoff.
    agent.wait("the orphan reported", Duration::from_secs(60), || {
        (!lines_with(&agent.log_text(), REPORT, &uid).is_empty()).then_some(())
    });
    agent.wait(
        "two retries after the report",
        Duration::from_secs(60),
        || {
            let log = agent.log_text();
            let after = log.split_once(REPORT)?.1;
            (lines_with(after, RETRY, &uid).len() >= 2).then_some(())
        },
    );
    let log = agent.log_text();
    let reports = lines_with(&log, REPORT, &uid);
    assert_eq!(
        reports.len(),
        1,
        "reported more than once:\n{}",
        reports.join("\n")
    );
    assert!(held.still_held());
    for name in ["p0", "p1"] {
        assert_eq!(agent.pod(name).unwrap()["status"]["phase"], "Running");
    }

    println!(
        "static pod start, manifest written → Running:\n  clean node:           {}\n  with a stuck orphan:  {}",
        fmt(&clean_times),
        fmt(&stuck_times)
    );

    // Released: the process dies of the SIGKILL the agent sent, and the orphan goes.
    if let Some(status) = held.release() {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the held process ended with {status}, not the agent's SIGKILL"
        );
    }
    agent.wait("the orphan removed", Duration::from_secs(120), || {
        held.dirs.iter().all(|d| !d.exists()).then_some(())
    });
    let removed = lines_with(&agent.log_text(), REMOVED, &uid).join("\n");
    assert!(removed.contains("was_reported=true"), "{removed}");
    println!(
        "the agent's report:\n  {}\nand once released:\n  {removed}",
        reports[0]
    );
}

fn fmt(times: &[Duration]) -> String {
    times
        .iter()
        .map(|d| format!("{:.2}s", d.as_secs_f64()))
        .collect::<Vec<_>>()
        .join(", ")
}
