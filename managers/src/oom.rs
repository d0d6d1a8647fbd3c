//! The OOM watcher: the kernel log (`/dev/kmsg`) read record by record, the kernel's OOM-kill
//! report recognised in it, and what cAdvisor and the kubelet make of each kill.
//!
//! - [`parse_record`] reads one `/dev/kmsg` record (`prio,seq,usec,flags;message`, then
//!   continuation lines starting with a space).
//! - [`OomParser`] follows the report: `<task> invoked oom-killer:` opens it; the
//!   `oom-kill:constraint=...,oom_memcg=...,task_memcg=...,task=...,pid=...,uid=...` line
//!   (kernels since 4.19) or, on older kernels, `Task in <memcg> killed as a result of limit of
//!   <memcg>` followed by `Killed process <pid> (<name>)` closes it into an [`OomEvent`].
//! - [`OomWatcher`] is the thread reading `/dev/kmsg` (8 KiB buffer: the largest record the
//!   kernel writes) from its end, so OOMs from before the agent started are not replayed and
//!   reported twice. Lost records (`EPIPE`, the ring overwrote them) are skipped. It hands
//!   each kill to an [`OomSink`]: the agent's turns them into `SystemOOM` / `OOMKilling`
//!   events, as the kubelet's OOM watcher does. (cAdvisor's `oom`/`oomKill` container events
//!   and `container_oom_events_total` are the cAdvisor API's, which reads the log on its own,
//!   like cAdvisor beside the kubelet.)

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// The buffer one `/dev/kmsg` read needs (the kernel's `CONSOLE_EXT_LOG_MAX`).
pub const KMSG_BUFFER: usize = 8192;

/// One kernel log record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KmsgRecord<'a> {
    /// Syslog priority (0 emergency .. 7 debug).
    pub priority: u8,
    /// Sequence number.
    pub seq: u64,
    /// Microseconds since boot (monotonic).
    pub timestamp_us: u64,
    /// The message (first line only).
    pub message: &'a str,
}

/// Parses one record line (`6,522,2041359121,-;oom-kill:...`). Continuation lines (starting
/// with a space) and malformed lines give `None`.
pub fn parse_record(line: &str) -> Option<KmsgRecord<'_>> {
    let (prefix, message) = line.split_once(';')?;
    let mut f = prefix.split(',');
    let prio: u32 = f.next()?.parse().ok()?;
    let seq = f.next()?.parse().ok()?;
    let timestamp_us = f.next()?.parse().ok()?;
    Some(KmsgRecord {
        priority: (prio & 7) as u8,
        seq,
        timestamp_us,
        message: message.trim_end_matches(['\n', '\r']),
    })
}

/// One OOM kill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OomEvent {
    /// The killed process.
    pub pid: u32,
    /// Its command name.
    pub process_name: String,
    /// When, microseconds since boot.
    pub timestamp_us: u64,
    /// The cgroup of the killed task (`task_memcg`; `/` when unknown).
    pub container: String,
    /// The cgroup whose limit was hit (`oom_memcg`; `/` for a system-wide OOM).
    pub victim_container: String,
    /// `CONSTRAINT_NONE`, `CONSTRAINT_MEMCG`, `CONSTRAINT_CPUSET`, ... (empty on old kernels).
    pub constraint: String,
}

impl OomEvent {
    /// A system-wide OOM (no memory cgroup limit involved).
    pub fn is_system(&self) -> bool {
        self.victim_container == "/"
    }
}

/// Fields of an `oom-kill:` line: (constraint, oom_memcg, task_memcg, task, pid), parsed from
/// the right (a command name may hold commas). A system-wide OOM says `global_oom` instead of
/// `oom_memcg=...`: its memcg is `/`.
fn parse_oom_kill_line(msg: &str) -> Option<(String, String, String, String, u32)> {
    let rest = msg.split_once("oom-kill:")?.1;
    let (rest, _uid) = rest.rsplit_once(",uid=")?;
    let (rest, pid) = rest.rsplit_once(",pid=")?;
    let (rest, task) = rest.rsplit_once(",task=")?;
    let (rest, task_memcg) = rest.rsplit_once(",task_memcg=")?;
    let (rest, oom_memcg) = match rest.rsplit_once(",oom_memcg=") {
        Some((r, m)) => (r, m),
        None => (rest, "/"),
    };
    let constraint = rest
        .strip_prefix("constraint=")?
        .split(',')
        .next()
        .unwrap_or_default();
    Some((
        constraint.to_string(),
        oom_memcg.to_string(),
        task_memcg.to_string(),
        task.to_string(),
        pid.trim().parse().ok()?,
    ))
}

/// `Killed process 11408 (sh) total-vm:...` → (pid, name).
fn parse_killed_process(msg: &str) -> Option<(u32, String)> {
    let rest = msg.split_once("Killed process ")?.1;
    let (pid, rest) = rest.split_once(" (")?;
    let name = rest.rsplit_once(')').map(|(n, _)| n)?;
    // `name) total-vm:...`: the name ends at the last ')' before " total-vm" if present.
    let name = match rest.find(") total-vm") {
        Some(i) => &rest[..i],
        None => name,
    };
    Some((pid.parse().ok()?, name.to_string()))
}

/// `Task in /a killed as a result of limit of /b` → (/a, /b).
fn parse_legacy_task_line(msg: &str) -> Option<(String, String)> {
    let rest = msg.split_once("Task in ")?.1;
    let (task, limit) = rest.split_once(" killed as a result of limit of ")?;
    Some((task.trim().to_string(), limit.trim().to_string()))
}

/// Follows the kernel's OOM report across records.
#[derive(Debug, Default)]
pub struct OomParser {
    pending: Option<OomEvent>,
}

impl OomParser {
    /// A parser waiting for the start of a report.
    pub fn new() -> OomParser {
        OomParser::default()
    }

    /// Feeds one record; returns the kill it completes, if any.
    pub fn feed(&mut self, r: &KmsgRecord<'_>) -> Option<OomEvent> {
        if r.message.contains("invoked oom-killer:") {
            self.pending = Some(OomEvent {
                pid: 0,
                process_name: String::new(),
                timestamp_us: r.timestamp_us,
                container: "/".into(),
                victim_container: "/".into(),
                constraint: String::new(),
            });
            return None;
        }
        let ev = self.pending.as_mut()?;
        if let Some((constraint, oom_memcg, task_memcg, task, pid)) = parse_oom_kill_line(r.message)
        {
            ev.constraint = constraint;
            ev.victim_container = if oom_memcg.is_empty() {
                "/".into()
            } else {
                oom_memcg
            };
            ev.container = if task_memcg.is_empty() {
                "/".into()
            } else {
                task_memcg
            };
            ev.process_name = task;
            ev.pid = pid;
            ev.timestamp_us = r.timestamp_us;
            return self.pending.take();
        }
        if let Some((task, limit)) = parse_legacy_task_line(r.message) {
            ev.container = task;
            ev.victim_container = limit;
            return None;
        }
        if let Some((pid, name)) = parse_killed_process(r.message) {
            ev.pid = pid;
            ev.process_name = name;
            ev.timestamp_us = r.timestamp_us;
            return self.pending.take();
        }
        None
    }
}

/// Converts kernel-log timestamps (µs since boot) to wall time.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    boot: SystemTime,
}

impl BootClock {
    /// From the current wall and boot-relative clocks.
    pub fn now() -> BootClock {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the valid timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        let since_boot = if rc == 0 {
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        } else {
            Duration::ZERO
        };
        BootClock {
            boot: SystemTime::now()
                .checked_sub(since_boot)
                .unwrap_or(SystemTime::UNIX_EPOCH),
        }
    }

    /// A clock whose boot happened at `boot`.
    pub fn with_boot(boot: SystemTime) -> BootClock {
        BootClock { boot }
    }

    /// The wall time of a record stamped `us` after boot.
    pub fn wall(&self, us: u64) -> SystemTime {
        self.boot + Duration::from_micros(us)
    }
}

/// Where the watcher sends kills.
pub trait OomSink: Send + Sync {
    /// One OOM kill, with its wall time.
    fn oom(&self, event: &OomEvent, at: SystemTime);
}

/// Why the watcher could not start.
#[derive(Debug, thiserror::Error)]
pub enum OomWatcherError {
    /// The kernel log could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// The thread could not start.
    #[error("cannot start the OOM watcher thread: {0}")]
    Thread(io::Error),
}

/// The thread reading the kernel log. Stops when dropped.
pub struct OomWatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OomWatcher {
    /// Starts reading `path` (normally `/dev/kmsg`) from its end; `from_start` replays what
    /// the log still holds (tests with a fixture file or a FIFO).
    pub fn start(
        path: &Path,
        from_start: bool,
        sink: Arc<dyn OomSink>,
    ) -> Result<OomWatcher, OomWatcherError> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| OomWatcherError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        if !from_start {
            // On /dev/kmsg SEEK_END moves past every record already logged.
            let _ = file.seek(SeekFrom::End(0));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let clock = BootClock::now();
        let p = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("oom-watcher".into())
            .spawn(move || read_loop(file, &p, &s, clock, sink.as_ref()))
            .map_err(OomWatcherError::Thread)?;
        Ok(OomWatcher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for OomWatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_loop(mut file: File, path: &Path, stop: &AtomicBool, clock: BootClock, sink: &dyn OomSink) {
    let mut buf = vec![0u8; KMSG_BUFFER];
    let mut parser = OomParser::new();
    // A regular file or FIFO may hand over several records, or half of one, per read.
    let mut partial = String::new();
    let fd = file.as_raw_fd();
    tracing::info!(path = %path.display(), "OOM watcher started");
    while !stop.load(Ordering::Relaxed) {
        match file.read(&mut buf) {
            Ok(0) => {
                // End of a regular file (tests): wait for more. /dev/kmsg never says 0.
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(n) => {
                partial.push_str(&String::from_utf8_lossy(&buf[..n]));
                while let Some(i) = partial.find('\n') {
                    let line: String = partial.drain(..=i).collect();
                    if line.starts_with(' ') {
                        continue;
                    }
                    if let Some(r) = parse_record(&line) {
                        if let Some(ev) = parser.feed(&r) {
                            tracing::info!(pid = ev.pid, process = %ev.process_name, container = %ev.container, victim = %ev.victim_container, "OOM kill");
                            sink.oom(&ev, clock.wall(ev.timestamp_us));
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = crate::sys::poll(&[(fd, libc::POLLIN)], Some(Duration::from_millis(200)));
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                tracing::debug!("kernel log records were overwritten before being read");
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "cannot read the kernel log; OOM events stop");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    const FIXTURE: &str = include_str!("../tests/fixtures/kmsg-memcg-oom.txt");

    fn events_of(text: &str) -> Vec<OomEvent> {
        let mut p = OomParser::new();
        text.lines()
            .filter(|l| !l.starts_with(' '))
            .filter_map(parse_record)
            .filter_map(|r| p.feed(&r))
            .collect()
    }

    #[test]
    fn records_and_continuation_lines() {
        let r = parse_record("6,522,2041359121,-;oom-kill:constraint=X").unwrap();
        assert_eq!((r.priority, r.seq, r.timestamp_us), (6, 522, 2041359121));
        assert_eq!(r.message, "oom-kill:constraint=X");
        assert_eq!(
            parse_record("12,5,7,c;m").unwrap().priority,
            4,
            "facility 1, warning"
        );
        assert!(parse_record(" SUBSYSTEM=acpi").is_none());
        assert!(parse_record("garbage").is_none());
    }

    #[test]
    fn a_real_memcg_oom_report_from_this_kernel() {
        let evs = events_of(FIXTURE);
        assert_eq!(evs.len(), 1, "{evs:?}");
        let e = &evs[0];
        assert_eq!(e.pid, 11408);
        assert_eq!(e.process_name, "sh");
        assert_eq!(e.constraint, "CONSTRAINT_MEMCG");
        assert_eq!(
            e.victim_container,
            "/oom-11172-0/kubepods/burstable/pode8445653f257e9dfc4aed28e9c35b3de"
        );
        assert_eq!(
            e.container,
            "/oom-11172-0/kubepods/burstable/pode8445653f257e9dfc4aed28e9c35b3de/1f50970433a33faae0f971eed2f965be3daca7edb5defe925c89e1d1f9cc18c8"
        );
        assert_eq!(e.timestamp_us, 2041359121);
        assert!(!e.is_system());
    }

    #[test]
    fn a_system_oom_and_the_legacy_format() {
        let global = "4,1,100,-;stress invoked oom-killer: gfp_mask=0x100cca(GFP_HIGHUSER_MOVABLE), order=0, oom_score_adj=0\n\
6,2,101,-;oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,mems_allowed=0-1,global_oom,task_memcg=/user.slice,task=stress,pid=4242,uid=1000\n\
3,3,102,-;Out of memory: Killed process 4242 (stress) total-vm:9000kB, anon-rss:8000kB\n";
        // The global form says global_oom instead of oom_memcg.
        let evs = events_of(global);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].pid, 4242);
        assert_eq!(evs[0].process_name, "stress");
        assert_eq!(evs[0].container, "/user.slice");
        assert_eq!(evs[0].constraint, "CONSTRAINT_NONE");
        assert!(evs[0].is_system());
        let legacy =
            "4,1,100,-;java invoked oom-killer: gfp_mask=0x24000c0, order=0, oom_score_adj=0\n\
6,2,101,-;Task in /docker/abc killed as a result of limit of /docker\n\
3,3,102,-;Killed process 77 (java (worker)) total-vm:1kB, anon-rss:1kB\n";
        let evs = events_of(legacy);
        assert_eq!(evs[0].container, "/docker/abc");
        assert_eq!(evs[0].victim_container, "/docker");
        assert_eq!(evs[0].process_name, "java (worker)");
        assert_eq!(evs[0].pid, 77);
        // A task name with commas in the modern line.
        let odd = "4,1,1,-;a invoked oom-killer: x\n6,2,2,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=c,mems_allowed=0,2,oom_memcg=/p,task_memcg=/p/c,task=a,b,pid=9,uid=0\n";
        let evs = events_of(odd);
        assert_eq!(evs[0].process_name, "a,b");
        assert_eq!(evs[0].victim_container, "/p");
        // Killed-process lines outside a report are ignored.
        assert!(events_of("3,3,102,-;Killed process 1 (x)\n").is_empty());
    }

    struct Collect(Mutex<Vec<OomEvent>>, crossbeam::channel::Sender<()>);
    impl OomSink for Collect {
        fn oom(&self, event: &OomEvent, _at: SystemTime) {
            self.0.lock().push(event.clone());
            let _ = self.1.send(());
        }
    }

    #[test]
    fn the_watcher_reads_a_log_written_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kmsg");
        std::fs::write(&path, "").unwrap();
        let (tx, rx) = crossbeam::channel::unbounded();
        let sink = Arc::new(Collect(Mutex::new(Vec::new()), tx));
        let w = OomWatcher::start(&path, true, sink.clone()).unwrap();
        // Half a record first, then the rest.
        let (a, b) = FIXTURE.split_at(FIXTURE.find("oom-kill:").unwrap() + 20);
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(a.as_bytes()).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        f.write_all(b.as_bytes()).unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("one OOM event");
        drop(w);
        assert_eq!(sink.0.lock()[0].pid, 11408);
        let err = OomWatcher::start(Path::new("/nonexistent/kmsg"), false, sink)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("cannot open /nonexistent/kmsg"), "{err}");
    }

    #[test]
    fn boot_relative_timestamps_become_wall_time() {
        let boot = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(
            BootClock::with_boot(boot).wall(2_500_000),
            boot + Duration::from_millis(2500)
        );
        let now = BootClock::now();
        assert!(now.wall(0) <= SystemTime::now());
    }
}
