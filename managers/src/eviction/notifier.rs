//! Memory-pressure notifications from the kernel, so the eviction manager reacts within
//! milliseconds of a memory threshold being crossed instead of at its next periodic pass.
//!
//! - **cgroup v1**: a memcg usage threshold. An eventfd is registered through
//!   `cgroup.event_control` (`"<eventfd> <fd of memory.usage_in_bytes> <bytes>"`); the kernel
//!   signals it whenever usage crosses `bytes`, either way (and when the cgroup goes away). The
//!   eviction manager arms it at `capacity - threshold + inactive_file`, the usage at which the
//!   working set reaches the threshold, as the kubelet's `memoryThresholdNotifier` does.
//! - **cgroup v2** has no usage thresholds: a PSI trigger on the cgroup's `memory.pressure`
//!   (`some 100000 1000000`: 100 ms of stall in any 1 s window) and `memory.events` (modified
//!   when the cgroup hits `memory.high`/`memory.max` or OOMs) wake the manager instead.
//!
//! Each armed notification is a small thread blocked in `poll(2)` on its descriptors plus a
//! stop eventfd; it forwards every wakeup to a channel of capacity 1, so bursts coalesce.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use crossbeam::channel::Sender;

use crate::sys;

/// The PSI trigger armed on cgroup v2: 100 ms of memory stall within 1 s.
pub const PSI_TRIGGER: &str = "some 100000 1000000";

/// Why a notification could not be armed.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// A cgroup file could not be opened or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The thread watching the descriptors could not start.
    #[error("cannot start the notification thread: {0}")]
    Thread(io::Error),
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> NotifierError + 'a {
    move |source| NotifierError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Which kernel interface to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Memory cgroup v1 usage thresholds.
    V1,
    /// Cgroup v2 PSI trigger and `memory.events`.
    V2,
}

/// What an armed notification watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The memory cgroup's directory.
    pub dir: PathBuf,
    /// v1: the usage threshold, bytes (ignored on v2).
    pub usage_threshold: u64,
}

/// An armed notification: the descriptors it owns and its thread.
struct Armed {
    target: Target,
    stop: OwnedFd,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        let _ = sys::eventfd_signal(&self.stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One memory notification, re-armed as its target moves.
pub struct MemoryNotifier {
    backend: Backend,
    /// Where to find the machine-wide PSI file when the target is the v2 root.
    proc_root: PathBuf,
    wake: Sender<()>,
    armed: Option<Armed>,
}

impl MemoryNotifier {
    /// A notifier that sends on `wake` (use a channel of capacity 1).
    pub fn new(backend: Backend, proc_root: &Path, wake: Sender<()>) -> MemoryNotifier {
        MemoryNotifier {
            backend,
            proc_root: proc_root.to_path_buf(),
            wake,
            armed: None,
        }
    }

    /// The target armed now.
    pub fn target(&self) -> Option<&Target> {
        self.armed.as_ref().map(|a| &a.target)
    }

    /// Arms the notification on `target`, replacing the previous one. Does nothing if the
    /// same directory is armed with a threshold within `slack` bytes.
    pub fn arm(&mut self, target: Target, slack: u64) -> Result<bool, NotifierError> {
        if let Some(a) = &self.armed {
            if a.target.dir == target.dir
                && (self.backend == Backend::V2
                    || a.target.usage_threshold.abs_diff(target.usage_threshold) <= slack)
            {
                return Ok(false);
            }
        }
        // Drop the old registration first: its eventfd closing unregisters it.
        self.armed = None;
        let mut watched: Vec<(OwnedFd, i16)> = Vec::new();
        let mut keep: Vec<File> = Vec::new();
        match self.backend {
            Backend::V1 => {
                let usage_path = target.dir.join("memory.usage_in_bytes");
                let usage = File::open(&usage_path).map_err(io_err("open", &usage_path))?;
                let efd = sys::eventfd().map_err(io_err("create an eventfd for", &usage_path))?;
                let control = target.dir.join("cgroup.event_control");
                let line = format!(
                    "{} {} {}",
                    efd.as_raw_fd(),
                    usage.as_raw_fd(),
                    target.usage_threshold
                );
                OpenOptions::new()
                    .write(true)
                    .open(&control)
                    .and_then(|mut f| f.write_all(line.as_bytes()))
                    .map_err(io_err("write", &control))?;
                watched.push((efd, libc::POLLIN));
                keep.push(usage);
            }
            Backend::V2 => {
                let mut psi = target.dir.join("memory.pressure");
                if !psi.exists() {
                    psi = self.proc_root.join("pressure/memory");
                }
                let mut f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&psi)
                    .map_err(io_err("open", &psi))?;
                f.write_all(format!("{PSI_TRIGGER}\0").as_bytes())
                    .map_err(io_err("write a PSI trigger to", &psi))?;
                watched.push((OwnedFd::from(f), libc::POLLPRI));
                let events = target.dir.join("memory.events");
                if let Ok(f) = File::open(&events) {
                    watched.push((OwnedFd::from(f), libc::POLLPRI));
                }
            }
        }
        let stop = sys::eventfd().map_err(NotifierError::Thread)?;
        let stop_raw = stop.as_raw_fd();
        let wake = self.wake.clone();
        let backend = self.backend;
        let thread = std::thread::Builder::new()
            .name("memcg-notify".into())
            .spawn(move || watch(backend, watched, keep, stop_raw, wake))
            .map_err(NotifierError::Thread)?;
        tracing::debug!(dir = %target.dir.display(), threshold = target.usage_threshold, ?backend, "armed memory notification");
        self.armed = Some(Armed {
            target,
            stop,
            thread: Some(thread),
        });
        Ok(true)
    }

    /// Removes the notification.
    pub fn disarm(&mut self) {
        self.armed = None;
    }
}

/// The notification thread: forwards every event until told to stop or the cgroup goes.
fn watch(
    backend: Backend,
    watched: Vec<(OwnedFd, i16)>,
    _keep: Vec<File>,
    stop: std::os::fd::RawFd,
    wake: Sender<()>,
) {
    let mut fds: Vec<(std::os::fd::RawFd, i16)> =
        watched.iter().map(|(f, e)| (f.as_raw_fd(), *e)).collect();
    fds.push((stop, libc::POLLIN));
    loop {
        let revents = match sys::poll(&fds, None) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "memory notification: poll failed; notifications stop");
                return;
            }
        };
        if revents.last().is_some_and(|r| *r != 0) {
            return;
        }
        let mut fired = false;
        let mut gone = false;
        for (i, r) in revents[..revents.len() - 1].iter().enumerate() {
            if *r == 0 {
                continue;
            }
            fired = true;
            match backend {
                Backend::V1 => {
                    let _ = sys::eventfd_drain(fds[i].0);
                    gone |= r & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0;
                }
                Backend::V2 => {
                    // A PSI trigger keeps reporting POLLPRI until the window passes; a vanished
                    // cgroup reports POLLERR forever.
                    gone |= r & (libc::POLLNVAL | libc::POLLHUP) != 0;
                }
            }
        }
        if fired {
            let _ = wake.try_send(());
        }
        if gone {
            return;
        }
        if backend == Backend::V2 && fired {
            // PSI events are rate-limited by the kernel to one per window; memory.events
            // stays readable: do not spin.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use collectors::layout::CgroupLayout;
    use collectors::testing::ScratchCgroups;
    use std::time::Duration;

    #[test]
    fn arming_a_missing_cgroup_names_the_file() {
        let (tx, _rx) = crossbeam::channel::bounded(1);
        let mut n = MemoryNotifier::new(Backend::V1, Path::new("/proc"), tx);
        let err = n
            .arm(
                Target {
                    dir: "/nonexistent/cgroup".into(),
                    usage_threshold: 1,
                },
                0,
            )
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.starts_with("cannot open /nonexistent/cgroup/memory.usage_in_bytes"),
            "{err}"
        );
        assert!(n.target().is_none());
    }

    /// On the live kernel (root, memory cgroup v1): a process growing past the armed usage
    /// wakes the channel.
    #[test]
    fn a_v1_usage_threshold_fires_when_crossed() {
        let root = Path::new("/sys/fs/cgroup");
        let memory = match CgroupLayout::detect(root)
            .ok()
            .as_ref()
            .and_then(|l| l.v1())
        {
            Some(v1) if v1.memory.is_some() => v1.memory.clone().unwrap(),
            _ => {
                eprintln!("skipped: no cgroup v1 memory hierarchy");
                return;
            }
        };
        let mut sc = match ScratchCgroups::new(root, "notify") {
            Ok(s) => s,
            // Only an unprivileged developer run may skip; as root (CI) this must work.
            // SAFETY: geteuid has no preconditions.
            Err(e) if unsafe { libc::geteuid() } != 0 => {
                eprintln!("skipped (not root): {e}");
                return;
            }
            Err(e) => panic!("cannot create scratch cgroups as root: {e}"),
        };
        let name = sc.add("grow").unwrap();
        let dir = collectors::layout::cgroup_dir(&memory, &name);
        let (tx, rx) = crossbeam::channel::bounded(1);
        let mut n = MemoryNotifier::new(Backend::V1, Path::new("/proc"), tx);
        let base: u64 = std::fs::read_to_string(dir.join("memory.usage_in_bytes"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let target = Target {
            dir: dir.clone(),
            usage_threshold: base + (8 << 20),
        };
        assert!(n.arm(target.clone(), 0).unwrap());
        assert!(!n.arm(target, 1 << 20).unwrap(), "same target: kept");
        assert!(rx.try_recv().is_err(), "nothing crossed yet");
        // 32 MiB held in one line by `tail`, then a pause before exiting.
        sc.spawn_into(
            &name,
            std::process::Command::new("sh")
                .arg("-c")
                .arg("sleep 0.2; head -c 33554432 /dev/zero | tail -n 1 >/dev/null; sleep 5"),
        )
        .unwrap();
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the usage threshold notification");
        n.disarm();
    }
}
