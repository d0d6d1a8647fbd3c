//! Container log rotation (`pkg/kubelet/logs/container_log_manager.go`).
//!
//! The runtime writes each container's log to `<pod log dir>/<container>/<restart>.log`. Once
//! that file reaches `containerLogMaxSize`, the manager removes leftovers of interrupted work
//! (`*.tmp`), deletes the oldest rotated files so that the rotated ones plus the one about to be
//! made plus the live one stay within `containerLogMaxFiles`, renames the log to
//! `<log>.<YYYYMMDD-hhmmss>` and asks the runtime to reopen it (CRI `ReopenContainerLog`; when
//! the runtime refuses, the rename is undone). Then it gzips every rotated file but the newest
//! (which a reader following the log may still hold), at gzip's fastest level (the kubelet uses
//! the default level; logs are cheap to compress and a fast writer's files must keep up). The
//! kubelet compresses before the rename;
//! doing it after cuts a fast writer's live file sooner, with the same files in the end. Checks
//! run off the manager's loop, one at a time per log.
//!
//! As in the kubelet, the running containers are listed every `containerLogMonitorInterval`
//! (10 s) and each log is checked, `containerLogMaxWorkers` at a time. A container that writes
//! fast fills many megabytes in 10 s, so the manager also watches every log directory with a
//! one-shot inotify watch: the first write after a check wakes it, the file's size is looked at
//! (at most every [`RECHECK_DELAY`]), and the watch is set again. A busy log costs a few stats a
//! second, an idle one nothing.
//!
//! Two rotations within one second get the names `<log>.<time>` and `<log>.<time>.1`, ...
//! (the kubelet would overwrite the first), the number always past every file of that second
//! still there, even one about to be removed as the oldest, so that a name is not taken again;
//! rotated files are ordered by that name, not by string comparison.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::kuberuntime::RuntimeService;

/// How soon after a write event a busy log's size is looked at again.
pub const RECHECK_DELAY: Duration = Duration::from_millis(20);
/// The timestamp in a rotated file's name (Go's `20060102-150405`).
const TIMESTAMP_FORMAT: &str = "%Y%m%d-%H%M%S";
const COMPRESS_SUFFIX: &str = ".gz";
const TMP_SUFFIX: &str = ".tmp";

/// `containerLogMaxSize`, `containerLogMaxFiles`, `containerLogMaxWorkers` and
/// `containerLogMonitorInterval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    pub max_size: u64,
    pub max_files: usize,
    pub max_workers: usize,
    pub monitor_interval: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            max_size: 10 << 20,
            max_files: 5,
            max_workers: 1,
            monitor_interval: Duration::from_secs(10),
        }
    }
}

/// What one check of a log did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The name the live log was renamed to, when it was rotated.
    pub rotated_to: Option<PathBuf>,
    /// Rotated files removed to stay within `containerLogMaxFiles`.
    pub removed: usize,
}

/// A rotated file of `log`: `<log>.<timestamp>[.<n>][.gz]`, in rotation order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rotated {
    timestamp: String,
    seq: u32,
    compressed: bool,
    path: PathBuf,
}

fn parse_rotated(log: &Path, candidate: &Path) -> Option<Rotated> {
    let base = log.file_name()?.to_str()?;
    let name = candidate.file_name()?.to_str()?;
    let rest = name.strip_prefix(base)?.strip_prefix('.')?;
    if rest.ends_with(TMP_SUFFIX) {
        return None;
    }
    let (rest, compressed) = match rest.strip_suffix(COMPRESS_SUFFIX) {
        Some(r) => (r, true),
        None => (rest, false),
    };
    let (timestamp, seq) = match rest.split_once('.') {
        Some((t, n)) => (t, n.parse().ok()?),
        None => (rest, 0),
    };
    let valid = timestamp.len() == 15
        && timestamp.as_bytes()[8] == b'-'
        && timestamp
            .bytes()
            .enumerate()
            .all(|(i, b)| i == 8 || b.is_ascii_digit());
    valid.then(|| Rotated {
        timestamp: timestamp.to_string(),
        seq,
        compressed,
        path: candidate.to_path_buf(),
    })
}

/// The rotated files of `log` (oldest first) and the leftover `*.tmp` files beside it.
fn list_rotated(log: &Path) -> io::Result<(Vec<Rotated>, Vec<PathBuf>)> {
    let dir = log.parent().unwrap_or(Path::new("."));
    let base = log
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut prefix = base.clone();
    prefix.push(".");
    let mut rotated = Vec::new();
    let mut tmp = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name.to_str() else { continue };
        if !n.starts_with(prefix.to_str().unwrap_or_default()) {
            continue;
        }
        let path = entry.path();
        if n.ends_with(TMP_SUFFIX) {
            tmp.push(path);
        } else if let Some(r) = parse_rotated(log, &path) {
            rotated.push(r);
        }
    }
    rotated.sort();
    Ok((rotated, tmp))
}

/// A rotated file of a log, as a reader following the log sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotatedFile {
    /// Its place in the rotation order: the timestamp of its name and its sequence number.
    pub key: (String, u32),
    pub path: PathBuf,
    /// Gzipped.
    pub compressed: bool,
}

/// The rotated files of `log`, oldest first, one per rotation (the plain file while a
/// compression of it is under way). For readers following the log across rotations.
pub fn rotated_files(log: &Path) -> io::Result<Vec<RotatedFile>> {
    let (rotated, _) = list_rotated(log)?;
    let mut out: Vec<RotatedFile> = Vec::with_capacity(rotated.len());
    // Sorted: a plain file comes just before its compressed copy.
    for r in rotated {
        let key = (r.timestamp, r.seq);
        if out.last().is_some_and(|f| f.key == key) {
            continue;
        }
        out.push(RotatedFile {
            key,
            path: r.path,
            compressed: r.compressed,
        });
    }
    Ok(out)
}

/// Gzips `path` into `<path>.gz` (through `<path>.gz.tmp`) and removes it.
fn compress(path: &Path) -> io::Result<()> {
    let mut gz_name: OsString = path.as_os_str().to_os_string();
    gz_name.push(COMPRESS_SUFFIX);
    let gz = PathBuf::from(gz_name);
    let mut tmp_name = gz.as_os_str().to_os_string();
    tmp_name.push(TMP_SUFFIX);
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let mut input = std::fs::File::open(path)?;
        let out = std::fs::File::create(&tmp)?;
        let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        io::copy(&mut input, &mut enc)?;
        enc.finish()?.sync_all()?;
        std::fs::rename(&tmp, &gz)?;
        match std::fs::remove_file(path) {
            // Removed meanwhile as the oldest file: its compressed copy goes too.
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::remove_file(&gz),
            r => r,
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The part of one check before the reopen: clean up, and when the live log is at least
/// `max_size`, make room (the rotated files plus the one made now plus the live log stay within
/// `max_files`) and rename it. Returns what it did; the caller reopens the
/// log through the runtime (and undoes the rename if that fails).
/// `compressing`: a compression of this log's files is running, so `*.tmp` files are not
/// leftovers.
pub fn prepare_rotation(
    log: &Path,
    policy: &RotationPolicy,
    now: jiff::Zoned,
    compressing: bool,
) -> io::Result<Checked> {
    let mut done = Checked::default();
    let (mut rotated, tmp) = list_rotated(log)?;
    // Leftovers of an interrupted compression, and rotated files whose compressed copy exists.
    for t in tmp.into_iter().filter(|_| !compressing) {
        let _ = std::fs::remove_file(t);
    }
    let compressed: HashSet<(String, u32)> = rotated
        .iter()
        .filter(|r| r.compressed)
        .map(|r| (r.timestamp.clone(), r.seq))
        .collect();
    rotated.retain(|r| {
        let both = !r.compressed && compressed.contains(&(r.timestamp.clone(), r.seq));
        if both && !compressing {
            let _ = std::fs::remove_file(&r.path);
        }
        // A file caught between its compressed copy's rename and its own removal counts once.
        !both
    });
    let size = match std::fs::metadata(log) {
        Ok(m) => m.len(),
        // The runtime may be between files; nothing to rotate.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(done),
        Err(e) => return Err(e),
    };
    if size < policy.max_size {
        return Ok(done);
    }
    let stamp = now.strftime(TIMESTAMP_FORMAT).to_string();
    // After every file of this second, also those removed below: a name freed by removing the
    // oldest is never taken again within the second (it would sort before the newer ones).
    let mut seq = rotated
        .iter()
        .filter(|r| r.timestamp == stamp)
        .map(|r| r.seq + 1)
        .max()
        .unwrap_or(0);
    // Room for the file about to be rotated and the live one.
    let keep = policy.max_files.saturating_sub(2);
    while rotated.len() > keep {
        let oldest = rotated.remove(0);
        std::fs::remove_file(&oldest.path)?;
        done.removed += 1;
    }
    let target = loop {
        let mut name = log.as_os_str().to_os_string();
        name.push(format!(".{stamp}"));
        if seq > 0 {
            name.push(format!(".{seq}"));
        }
        let plain = PathBuf::from(&name);
        name.push(COMPRESS_SUFFIX);
        if !plain.exists() && !Path::new(&name).exists() {
            break plain;
        }
        seq += 1;
    };
    std::fs::rename(log, &target)?;
    done.rotated_to = Some(target);
    Ok(done)
}

/// Gzips every rotated file of `log` but the newest (which a reader following the log may still
/// hold); returns how many.
pub fn compress_rotated(log: &Path) -> io::Result<usize> {
    let (rotated, _) = list_rotated(log)?;
    let newest = rotated.len().saturating_sub(1);
    let mut n = 0;
    for r in rotated.iter().take(newest).filter(|r| !r.compressed) {
        match compress(&r.path) {
            Ok(()) => n += 1,
            // Removed meanwhile as the oldest file by a rotation: nothing to compress.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Checks one container's log and rotates it when it is due: make room and rename, have the
/// runtime reopen the log (the rename is undone when it cannot), then compress older files.
/// The rename and reopen come first so a fast writer's live file is cut as soon as possible.
pub async fn check_log(
    runtime: &RuntimeService,
    id: &str,
    log: &Path,
    policy: &RotationPolicy,
    compressing: &Compressing,
) -> Result<Checked, String> {
    let (path, p) = (log.to_path_buf(), *policy);
    let busy = compressing.lock().contains(log);
    let checked =
        tokio::task::spawn_blocking(move || prepare_rotation(&path, &p, jiff::Zoned::now(), busy))
            .await
            .map_err(|e| format!("log rotation task failed: {e}"))?
            .map_err(|e| format!("{}: {e}", log.display()))?;
    if let Some(rotated) = &checked.rotated_to {
        if let Err(e) = runtime.reopen_container_log(id).await {
            // The runtime still writes to the renamed file: give it its name back.
            let (from, to) = (rotated.clone(), log.to_path_buf());
            let _ = tokio::task::spawn_blocking(move || std::fs::rename(from, to)).await;
            return Err(format!(
                "container {id}: the runtime did not reopen {}: {e}",
                log.display()
            ));
        }
        // Compression runs on its own, one at a time per log, so the next rotation of a fast
        // writer's log need not wait for it.
        if compressing.lock().insert(log.to_path_buf()) {
            let (path, compressing) = (log.to_path_buf(), compressing.clone());
            tokio::task::spawn_blocking(move || {
                if let Err(e) = compress_rotated(&path) {
                    tracing::warn!(
                        "log rotation: compressing rotated logs of {}: {e}",
                        path.display()
                    );
                }
                compressing.lock().remove(&path);
            });
        }
    }
    Ok(checked)
}

/// The logs whose rotated files are being compressed.
pub type Compressing = Arc<Mutex<HashSet<PathBuf>>>;

/// Starts the container log manager on the current tokio runtime; it runs until aborted.
pub fn spawn_log_rotation(runtime: RuntimeService, policy: RotationPolicy) -> JoinHandle<()> {
    tokio::spawn(run(runtime, policy))
}

/// The running containers' logs and the inotify watches on their directories.
struct Watched {
    logs: HashMap<String, PathBuf>,
    /// Directory → its watch, while armed.
    armed: HashMap<PathBuf, WatchDescriptor>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

async fn run(runtime: RuntimeService, policy: RotationPolicy) {
    let mut watched = Watched {
        logs: HashMap::new(),
        armed: HashMap::new(),
        by_wd: HashMap::new(),
    };
    let mut stream = match Inotify::init().and_then(|i| i.into_event_stream([0u8; 4096])) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(
                "log rotation: cannot start inotify ({e}); logs are checked every {:?} only",
                policy.monitor_interval
            );
            None
        }
    };
    let workers = Arc::new(Semaphore::new(policy.max_workers.max(1)));
    let mut ticker = tokio::time::interval(policy.monitor_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty: HashSet<PathBuf> = HashSet::new();
    let reported: Arc<Mutex<HashSet<String>>> = Arc::default();
    let inflight: Arc<Mutex<HashSet<String>>> = Arc::default();
    let compressing: Compressing = Arc::default();
    loop {
        // A periodic pass checks every log; a container start looks for new logs (and checks
        // only those); a write event checks the logs of the directories written to.
        let wake = tokio::select! {
            _ = ticker.tick() => Wake::Pass,
            _ = runtime.container_started() => Wake::Started,
            ev = next_event(&mut stream) => {
                if let Some(ev) = ev {
                    note_event(&mut watched, &mut dirty, &ev);
                }
                // Let a burst of writes settle into one look at each busy log, then take every
                // event that came meanwhile.
                tokio::time::sleep(RECHECK_DELAY).await;
                while let Some(Some(Ok(ev))) =
                    stream.as_mut().map(|s| s.next().now_or_never()).and_then(|r| r)
                {
                    note_event(&mut watched, &mut dirty, &ev);
                }
                Wake::Written
            }
        };
        let mut fresh = HashSet::new();
        if matches!(wake, Wake::Pass | Wake::Started) {
            match runtime.list_running_containers().await {
                Ok(list) => fresh = refresh(&runtime, &mut watched, list).await,
                Err(e) => {
                    tracing::warn!("log rotation: cannot list running containers: {e}");
                    continue;
                }
            }
        }
        let full = matches!(wake, Wake::Pass);
        let due: Vec<(String, PathBuf)> = watched
            .logs
            .iter()
            .filter(|(id, log)| {
                full || fresh.contains(*id) || log.parent().is_some_and(|d| dirty.contains(d))
            })
            .map(|(id, log)| (id.clone(), log.clone()))
            .collect();
        dirty.clear();
        for (id, log) in due {
            // One check per log at a time; a log whose check is still running is looked at
            // again on its next write.
            if !inflight.lock().insert(id.clone()) {
                continue;
            }
            let (workers, rt, inflight, reported, compressing) = (
                workers.clone(),
                runtime.clone(),
                inflight.clone(),
                reported.clone(),
                compressing.clone(),
            );
            tokio::spawn(async move {
                let permit = workers.acquire_owned().await;
                let r = check_log(&rt, &id, &log, &policy, &compressing).await;
                drop(permit);
                match r {
                    Ok(done) => {
                        reported.lock().remove(&id);
                        if let Some(to) = done.rotated_to {
                            tracing::debug!(
                                container = %id,
                                "rotated the container log to {} (removed {})",
                                to.display(),
                                done.removed
                            );
                        }
                    }
                    // Once per container until it works again, not every pass.
                    Err(e) => {
                        if reported.lock().insert(id.clone()) {
                            tracing::warn!("log rotation: {e}");
                        }
                    }
                }
                inflight.lock().remove(&id);
            });
        }
        reported.lock().retain(|id| watched.logs.contains_key(id));
        if let Some(s) = &mut stream {
            let dirs: HashSet<PathBuf> = watched
                .logs
                .values()
                .filter_map(|l| l.parent().map(Path::to_path_buf))
                .collect();
            for dir in dirs {
                if watched.armed.contains_key(&dir) {
                    continue;
                }
                match s
                    .watches()
                    .add(&dir, WatchMask::MODIFY | WatchMask::ONESHOT)
                {
                    Ok(wd) => {
                        watched.by_wd.insert(wd.clone(), dir.clone());
                        watched.armed.insert(dir, wd);
                    }
                    Err(e) => tracing::debug!("log rotation: cannot watch {}: {e}", dir.display()),
                }
            }
            // Directories of containers that stopped: drop their watches.
            let live: HashSet<&Path> = watched.logs.values().filter_map(|l| l.parent()).collect();
            let gone: Vec<PathBuf> = watched
                .armed
                .keys()
                .filter(|d| !live.contains(d.as_path()))
                .cloned()
                .collect();
            for dir in gone {
                if let Some(wd) = watched.armed.remove(&dir) {
                    watched.by_wd.remove(&wd);
                    let _ = s.watches().remove(wd);
                }
            }
        }
    }
}

/// Why the manager woke up.
enum Wake {
    Pass,
    Started,
    Written,
}

/// A one-shot watch fired (the kernel dropped it with this event): its directory is due.
fn note_event(watched: &mut Watched, dirty: &mut HashSet<PathBuf>, ev: &inotify::Event<OsString>) {
    if let Some(dir) = watched.by_wd.remove(&ev.wd) {
        watched.armed.remove(&dir);
        dirty.insert(dir);
    }
    if ev.mask.contains(EventMask::Q_OVERFLOW) {
        dirty.extend(watched.armed.keys().cloned());
    }
}

async fn next_event(
    stream: &mut Option<inotify::EventStream<[u8; 4096]>>,
) -> Option<inotify::Event<OsString>> {
    match stream {
        Some(s) => match s.next().await {
            Some(Ok(ev)) => Some(ev),
            Some(Err(e)) => {
                tracing::warn!("log rotation: inotify failed ({e}); checking on the period only");
                *stream = None;
                None
            }
            None => {
                *stream = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// Updates the set of running containers' logs: new IDs get their log path from
/// ContainerStatus (once), gone ones are dropped. Returns the new IDs.
async fn refresh(
    runtime: &RuntimeService,
    watched: &mut Watched,
    running: Vec<proto::cri::Container>,
) -> HashSet<String> {
    let ids: HashSet<String> = running.into_iter().map(|c| c.id).collect();
    watched.logs.retain(|id, _| ids.contains(id));
    let mut fresh = HashSet::new();
    for id in ids {
        if watched.logs.contains_key(&id) {
            continue;
        }
        match runtime.container_status(&id).await {
            Ok(s) if !s.log_path.is_empty() => {
                watched.logs.insert(id.clone(), PathBuf::from(s.log_path));
                fresh.insert(id);
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => tracing::debug!("log rotation: status of container {id}: {e}"),
        }
    }
    fresh
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `2026-12-02T<hh:mm:ss>` UTC.
    fn at(s: &str) -> jiff::Zoned {
        let hms = s
            .split(':')
            .map(|p| p.parse::<i64>().unwrap())
            .collect::<Vec<_>>();
        let secs = 1_796_169_600 + hms[0] * 3600 + hms[1] * 60 + hms[2];
        jiff::Timestamp::from_second(secs)
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::UTC)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn policy(max_size: u64, max_files: usize) -> RotationPolicy {
        RotationPolicy {
            max_size,
            max_files,
            ..RotationPolicy::default()
        }
    }

    #[test]
    fn a_small_log_is_left_alone_and_a_full_one_is_renamed_with_its_time() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        std::fs::write(&log, vec![b'a'; 99]).unwrap();
        let p = policy(100, 5);
        let t = at("10:11:12");
        assert_eq!(
            prepare_rotation(&log, &p, t.clone(), false).unwrap(),
            Checked::default()
        );
        std::fs::write(&log, vec![b'a'; 100]).unwrap();
        let done = prepare_rotation(&log, &p, t.clone(), false).unwrap();
        assert_eq!(
            done.rotated_to,
            Some(d.path().join("0.log.20261202-101112"))
        );
        assert_eq!(names(d.path()), ["0.log.20261202-101112"]);
        // A second rotation in the same second gets a sequence number, and sorts after.
        std::fs::write(&log, vec![b'b'; 100]).unwrap();
        let done = prepare_rotation(&log, &p, t, false).unwrap();
        assert_eq!(
            done.rotated_to,
            Some(d.path().join("0.log.20261202-101112.1"))
        );
        let (rotated, _) = list_rotated(&log).unwrap();
        let order: Vec<u32> = rotated.iter().map(|r| r.seq).collect();
        assert_eq!(order, [0, 1]);
    }

    #[test]
    fn a_name_freed_within_the_second_is_not_taken_again() {
        // Many rotations in one second with room for two rotated files: the oldest goes each
        // time, and each new name sorts after the ones left (`.2` after `.1`, never `.0` again).
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        let p = policy(10, 3);
        let t = at("10:11:12");
        for n in 0..5 {
            std::fs::write(&log, format!("rotation {n:02}\n")).unwrap();
            prepare_rotation(&log, &p, t.clone(), false).unwrap();
        }
        let (rotated, _) = list_rotated(&log).unwrap();
        let order: Vec<(u32, String)> = rotated
            .iter()
            .map(|r| (r.seq, std::fs::read_to_string(&r.path).unwrap()))
            .collect();
        assert_eq!(
            order,
            [
                (3, "rotation 03\n".to_string()),
                (4, "rotation 04\n".to_string())
            ]
        );
    }

    #[test]
    fn rotation_keeps_max_files_and_compresses_all_but_the_newest() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("1.log");
        let p = policy(10, 4);
        for (n, t) in ["10:00:01", "10:00:02", "10:00:03", "10:00:04"]
            .iter()
            .enumerate()
        {
            std::fs::write(&log, format!("line {n} padded to size\n")).unwrap();
            prepare_rotation(&log, &p, at(t), false).unwrap();
            compress_rotated(&log).unwrap();
        }
        // At most 4 files: room is made for the rotated one and the live log the runtime
        // reopens; all rotated files but the newest are compressed.
        assert_eq!(
            names(d.path()),
            [
                "1.log.20261202-100002.gz",
                "1.log.20261202-100003.gz",
                "1.log.20261202-100004"
            ]
        );
        let gz = std::fs::File::open(d.path().join("1.log.20261202-100002.gz")).unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz), &mut text).unwrap();
        assert_eq!(text, "line 1 padded to size\n");
    }

    #[test]
    fn leftovers_are_cleaned_and_unrelated_files_kept() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("0.log");
        std::fs::write(&log, "x").unwrap();
        for f in [
            "0.log.20261202-100000.gz.tmp",
            "0.log.20261202-100001",
            "0.log.20261202-100001.gz",
            "0.log.notatime",
            "1.log",
            "10.log.20261202-100000",
        ] {
            std::fs::write(d.path().join(f), "y").unwrap();
        }
        prepare_rotation(&log, &policy(100, 5), at("10:00:09"), false).unwrap();
        assert_eq!(
            names(d.path()),
            [
                "0.log",
                "0.log.20261202-100001.gz",
                "0.log.notatime",
                "1.log",
                "10.log.20261202-100000"
            ]
        );
    }

    #[test]
    fn a_missing_log_is_not_an_error() {
        let d = tempfile::tempdir().unwrap();
        let done = prepare_rotation(
            &d.path().join("0.log"),
            &policy(1, 5),
            jiff::Zoned::now(),
            false,
        )
        .unwrap();
        assert_eq!(done, Checked::default());
    }
}
