//! Reading a container's log file for `/containerLogs` (the kubelet's `ReadLogs`): from where
//! `tailLines` says, through the [`cri`](super::cri) decoder, in batches of whatever one read
//! returns, each sent on as one chunk. Without `follow` it stops at the end of the file. With
//! `follow` it then waits for the file to grow (an inotify watch on the log's directory, with a
//! forced look every second as the kubelet's `logForceCheckPeriod`) and goes on, until the
//! container is no longer running (checked at most once a second while the reader waits) and
//! what it wrote is read, or the client goes away. When log rotation renames the file and the
//! runtime reopens a new one at the same path, the reader finishes the renamed file (it keeps
//! it open: rotation leaves the newest rotated file uncompressed) and continues with the new
//! one from its start. A reader more than one rotation behind (a slow client) reads the
//! rotated files it missed in order, gzipped ones too, before the live one (it finds its own
//! file among them by identity or, once gzipped, by its first record); a file removed as the
//! oldest before the reader got to it is lost to it. All file I/O goes through tokio's blocking pool: no
//! read blocks a runtime thread.

use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use inotify::{Inotify, WatchMask};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::cri::{tail_start, Decoder, Flow, LogWriter};
use super::rotation::rotated_files;

/// How much one read asks for; also the usual size of a chunk sent on.
pub const READ_SIZE: usize = 256 << 10;
/// A record longer than this (no end of line in it) is skipped: a runtime cuts long lines
/// into partial records of 16 KiB by default.
pub const MAX_RECORD: usize = 4 << 20;
/// The most of a gzipped rotated file a follower that fell behind reads back.
pub const MAX_GUNZIP: u64 = 1 << 30;
/// While following, how often the file is looked at even without an inotify event, and how
/// often (at most) the runtime is asked whether the container still runs.
pub const FORCE_CHECK: Duration = Duration::from_secs(1);

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("failed to try resolving symlinks in path {path:?}: {source}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to open log file {path:?}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to tail {tail} lines of log file {path:?}: {source}")]
    Tail {
        path: PathBuf,
        tail: u64,
        #[source]
        source: io::Error,
    },
    #[error("failed to read log file {path:?}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What to read and how.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    pub follow: bool,
    pub tail: Option<u64>,
    pub writer: LogWriter,
}

/// Asks whether the container still runs (for `follow`): `false` once it has stopped or is
/// gone.
pub type Running = Box<dyn FnMut() -> BoxFuture<'static, bool> + Send>;

/// An open log, positioned where reading starts.
pub struct LogReader {
    path: PathBuf,
    file: tokio::fs::File,
    /// The open file's identity, to notice when rotation puts another file at `path`.
    id: (u64, u64),
    /// The open file's place among the log's rotated files, once rotation renamed it.
    key: Option<(String, u32)>,
    opts: ReadOptions,
}

fn file_id(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

impl LogReader {
    /// Resolves symlinks in `path` (as the kubelet does before watching it), opens the file
    /// and seeks to the start of the last `tail` lines.
    pub async fn open(path: &Path, opts: ReadOptions) -> Result<Self, ReadError> {
        let given = path.to_path_buf();
        let tail = opts.tail;
        let (path, file, id) = tokio::task::spawn_blocking(move || {
            let path = std::fs::canonicalize(&given).map_err(|source| ReadError::Resolve {
                path: given.clone(),
                source,
            })?;
            let open = |source| ReadError::Open {
                path: path.clone(),
                source,
            };
            let mut f = std::fs::File::open(&path).map_err(open)?;
            let id = file_id(&f.metadata().map_err(open)?);
            if let Some(n) = tail {
                use std::io::Seek;
                let tail_err = |source| ReadError::Tail {
                    path: path.clone(),
                    tail: n,
                    source,
                };
                let at = tail_start(&mut f, n).map_err(tail_err)?;
                f.seek(io::SeekFrom::Start(at)).map_err(tail_err)?;
            }
            Ok::<_, ReadError>((path, f, id))
        })
        .await
        .map_err(|e| ReadError::Open {
            path: path.to_path_buf(),
            source: io::Error::other(e),
        })??;
        Ok(Self {
            path,
            file: tokio::fs::File::from_std(file),
            id,
            key: None,
            opts,
        })
    }

    /// The resolved path of the log.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `path` now names another file than the one open (rotation made a new log).
    async fn rotated(&self) -> bool {
        match tokio::fs::metadata(&self.path).await {
            Ok(m) => file_id(&m) != self.id,
            Err(_) => false,
        }
    }

    /// Reads (and follows) the log, sending each batch of output to `tx`, until the end (see
    /// the module's doc). Returns early, without error, when `tx`'s receiver is gone.
    pub async fn run(
        mut self,
        tx: mpsc::Sender<Result<Bytes, io::Error>>,
        mut running: Running,
    ) -> Result<(), ReadError> {
        let mut decoder = Decoder::new();
        let mut buf = vec![0u8; READ_SIZE];
        // buf[..filled]: the start of a record whose end of line is not read yet.
        let mut filled = 0usize;
        // Dropping an over-long record up to its end of line.
        let mut skipping = false;
        let mut out: Vec<u8> = Vec::with_capacity(READ_SIZE);
        let mut watch: Option<Watch> = None;
        let mut last_check: Option<tokio::time::Instant> = None;
        let mut exited = false;
        let mut switch_pending = false;
        let mut reported_skips = 0u64;
        loop {
            if filled == buf.len() {
                if buf.len() < MAX_RECORD {
                    buf.resize((buf.len() * 2).min(MAX_RECORD), 0);
                } else {
                    tracing::warn!(
                        "container log {}: skipping a record longer than {MAX_RECORD} bytes",
                        self.path.display()
                    );
                    decoder.skipped += 1;
                    reported_skips = reported_skips.max(1);
                    filled = 0;
                    skipping = true;
                }
            }
            let n = self
                .file
                .read(&mut buf[filled..])
                .await
                .map_err(|source| ReadError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if n > 0 {
                let start = filled;
                filled += n;
                if skipping {
                    match memchr::memchr(b'\n', &buf[start..filled]) {
                        Some(i) => {
                            buf.copy_within(start + i + 1..filled, 0);
                            filled -= start + i + 1;
                            skipping = false;
                        }
                        None => {
                            filled = 0;
                            continue;
                        }
                    }
                }
                let (used, flow) =
                    decoder.feed_lines(&buf[..filled], &mut self.opts.writer, &mut out);
                buf.copy_within(used..filled, 0);
                filled -= used;
                if decoder.skipped > reported_skips {
                    self.report_skips(&decoder, reported_skips);
                    reported_skips = decoder.skipped;
                }
                if !send(&tx, &mut out).await || flow == Flow::LimitReached {
                    return Ok(());
                }
                continue;
            }
            // The end of the file as it stands.
            if switch_pending {
                // The file read so far ends here; a record it left unfinished stays so.
                filled = 0;
                skipping = false;
                match self.next_file().await? {
                    Next::Opened => {
                        switch_pending = false;
                        continue;
                    }
                    Next::Compressed(data) => {
                        // A rotated file already gzipped: read whole, then on to the next.
                        if feed_all(&data, &mut decoder, &mut self.opts.writer, &tx, &mut out).await
                        {
                            return Ok(());
                        }
                        continue;
                    }
                    Next::Nothing => switch_pending = false,
                }
            }
            let end = !self.opts.follow || (exited && !self.rotated().await);
            if end {
                if filled > 0 && !skipping {
                    // An incomplete last record: the kubelet writes what there is.
                    decoder.feed(&buf[..filled], &mut self.opts.writer, &mut out);
                }
                decoder.finish(&mut self.opts.writer, &mut out);
                send(&tx, &mut out).await;
                return Ok(());
            }
            if self.rotated().await {
                // Read what the runtime wrote to the renamed file before it reopened, then go on
                // with the next file.
                if self.key.is_none() {
                    self.key = self.find_key().await;
                }
                switch_pending = true;
                continue;
            }
            if last_check.is_none_or(|t| t.elapsed() >= FORCE_CHECK) {
                last_check = Some(tokio::time::Instant::now());
                if !running().await {
                    // Read what it wrote before it stopped, then end.
                    exited = true;
                    continue;
                }
            }
            if watch.is_none() {
                watch = Some(Watch::new(&self.path));
                // Anything written before the watch was set is read first.
                continue;
            }
            let Some(w) = watch.as_mut() else { continue };
            tokio::select! {
                _ = w.changed() => {}
                _ = tx.closed() => return Ok(()),
            }
        }
    }

    /// The rotation key of the open file, once rotation renamed it: the rotated file that is
    /// this one (same identity), or whose first line is this one's (gzipped meanwhile: its
    /// first record's timestamp, to the nanosecond, tells it apart); `None` if none is.
    async fn find_key(&self) -> Option<(String, u32)> {
        let (path, id) = (self.path.clone(), self.id);
        let file = self.file.try_clone().await.ok()?.into_std().await;
        tokio::task::spawn_blocking(move || {
            use std::os::unix::fs::FileExt;
            let mut head = vec![0u8; 4096];
            let n = file.read_at(&mut head, 0).ok()?;
            let ours = first_line(&head[..n]).to_vec();
            let files = rotated_files(&path).ok()?;
            files.into_iter().rev().find_map(|f| {
                if !f.compressed {
                    let m = std::fs::metadata(&f.path).ok()?;
                    return (file_id(&m) == id).then_some(f.key);
                }
                let mut head = Vec::with_capacity(4096);
                flate2::read::GzDecoder::new(std::fs::File::open(&f.path).ok()?)
                    .take(4096)
                    .read_to_end(&mut head)
                    .ok()?;
                (!ours.is_empty() && first_line(&head) == ours.as_slice()).then_some(f.key)
            })
        })
        .await
        .ok()
        .flatten()
    }

    /// Moves on from the file read to its end: to the next rotated file when the reader is more
    /// than one rotation behind (known by the open file's rotation key), else to the file now at
    /// the log's path.
    async fn next_file(&mut self) -> Result<Next, ReadError> {
        if let Some(key) = self.key.clone() {
            let path = self.path.clone();
            let files = tokio::task::spawn_blocking(move || rotated_files(&path))
                .await
                .map_err(|e| ReadError::Read {
                    path: self.path.clone(),
                    source: io::Error::other(e),
                })?
                .unwrap_or_default();
            for f in files.into_iter().filter(|f| f.key > key) {
                let (k, p) = (f.key, f.path);
                if f.compressed {
                    let read = p.clone();
                    let data = tokio::task::spawn_blocking(move || gunzip(&read)).await;
                    match data {
                        Ok(Ok(data)) => {
                            self.key = Some(k);
                            return Ok(Next::Compressed(data));
                        }
                        // Removed meanwhile as the oldest: the next one.
                        _ => continue,
                    }
                }
                if let Ok(f) = tokio::fs::File::open(&p).await {
                    if let Ok(m) = f.metadata().await {
                        self.id = file_id(&m);
                        self.file = f;
                        self.key = Some(k);
                        return Ok(Next::Opened);
                    }
                }
            }
        }
        self.key = None;
        let file = match tokio::fs::File::open(&self.path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Next::Nothing),
            Err(source) => {
                return Err(ReadError::Open {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let m = file.metadata().await.map_err(|source| ReadError::Open {
            path: self.path.clone(),
            source,
        })?;
        self.id = file_id(&m);
        self.file = file;
        Ok(Next::Opened)
    }

    fn report_skips(&self, decoder: &Decoder, before: u64) {
        if before == 0 {
            if let Some((e, line)) = &decoder.first_error {
                tracing::warn!(
                    "container log {}: skipping a record not in the CRI log format ({e}): {line:?}",
                    self.path.display()
                );
            }
        } else {
            tracing::debug!(
                "container log {}: {} records not in the CRI log format skipped",
                self.path.display(),
                decoder.skipped
            );
        }
    }
}

/// Where a follower goes after the end of a file that rotation renamed.
enum Next {
    /// The next file is open (a rotated file it had not read, or the live log).
    Opened,
    /// The next rotated file, already gzipped, uncompressed.
    Compressed(Vec<u8>),
    /// No file at the log's path yet (between the rename and the runtime's reopen).
    Nothing,
}

/// The first line of `data` (with its end of line), or nothing without one.
fn first_line(data: &[u8]) -> &[u8] {
    memchr::memchr(b'\n', data).map_or(&[][..], |i| &data[..=i])
}

/// A rotated file's bytes, at most [`MAX_GUNZIP`] of them.
fn gunzip(path: &Path) -> io::Result<Vec<u8>> {
    let mut data = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path)?)
        .take(MAX_GUNZIP)
        .read_to_end(&mut data)?;
    Ok(data)
}

/// Feeds a whole (uncompressed) file through the decoder, sending a chunk per [`READ_SIZE`];
/// true when the reader is done (the client went, or `limitBytes` is reached).
async fn feed_all(
    data: &[u8],
    decoder: &mut Decoder,
    writer: &mut LogWriter,
    tx: &mpsc::Sender<Result<Bytes, io::Error>>,
    out: &mut Vec<u8>,
) -> bool {
    let mut at = 0;
    while at < data.len() {
        let end = (at + READ_SIZE).min(data.len());
        let (mut used, mut flow) = decoder.feed_lines(&data[at..end], writer, out);
        if used == 0 && end < data.len() {
            (used, flow) = decoder.feed_lines(&data[at..], writer, out);
        }
        if !send(tx, out).await || flow == Flow::LimitReached {
            return true;
        }
        if used == 0 {
            break;
        }
        at += used;
    }
    false
}

/// Sends what `out` holds (if anything); false when the receiver is gone.
async fn send(tx: &mpsc::Sender<Result<Bytes, io::Error>>, out: &mut Vec<u8>) -> bool {
    if out.is_empty() {
        return true;
    }
    let chunk = Bytes::from(std::mem::replace(out, Vec::with_capacity(READ_SIZE)));
    tx.send(Ok(chunk)).await.is_ok()
}

/// Wakes a follower when the log's directory changes (a write, the new file of a rotation),
/// or after [`FORCE_CHECK`] anyway; without inotify (no instance left), every 100 ms.
struct Watch {
    events: Option<inotify::EventStream<Vec<u8>>>,
}

impl Watch {
    fn new(log: &Path) -> Self {
        let dir = log.parent().unwrap_or(Path::new("/"));
        let events = Inotify::init().and_then(|i| {
            i.watches().add(
                dir,
                WatchMask::MODIFY | WatchMask::CREATE | WatchMask::MOVED_TO | WatchMask::MOVED_FROM,
            )?;
            i.into_event_stream(vec![0u8; 4096])
        });
        match events {
            Ok(s) => Self { events: Some(s) },
            Err(e) => {
                tracing::debug!(
                    "container log {}: no inotify watch ({e}); polling",
                    log.display()
                );
                Self { events: None }
            }
        }
    }

    async fn changed(&mut self) {
        match self.events.as_mut() {
            Some(s) => {
                tokio::select! {
                    ev = s.next() => {
                        if matches!(ev, None | Some(Err(_))) {
                            // The watch broke: poll from now on.
                            self.events = None;
                        }
                    }
                    _ = tokio::time::sleep(FORCE_CHECK) => {}
                }
            }
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn opts(follow: bool, tail: Option<u64>) -> ReadOptions {
        ReadOptions {
            follow,
            tail,
            writer: LogWriter::new(None, false, None),
        }
    }

    fn running_while(flag: Arc<AtomicBool>) -> Running {
        Box::new(move || {
            let v = flag.load(Ordering::SeqCst);
            Box::pin(async move { v })
        })
    }

    fn rec(text: &str) -> String {
        format!("2024-01-01T00:00:00.000000001Z stdout F {text}\n")
    }

    async fn collect(mut rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> String {
        let mut s = Vec::new();
        while let Some(c) = rx.recv().await {
            s.extend_from_slice(&c.unwrap());
        }
        String::from_utf8(s).unwrap()
    }

    #[tokio::test]
    async fn reads_to_the_end_with_tail() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(&log, [rec("a"), rec("b"), rec("c")].concat()).unwrap();
        let r = LogReader::open(&log, opts(false, Some(2))).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(r.run(tx, running_while(Arc::new(AtomicBool::new(true)))));
        assert_eq!(collect(rx).await, "b\nc\n");
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_missing_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("nope.log");
        let Err(e) = LogReader::open(&log, opts(false, None)).await else {
            panic!("opened a missing file");
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with("failed to try resolving symlinks in path") && msg.contains("nope.log"),
            "{msg}"
        );
    }

    /// Receives until `got` ends with `want`.
    async fn expect(
        rx: &mut mpsc::Receiver<Result<Bytes, io::Error>>,
        want: &str,
        got: &mut String,
    ) {
        while !got.ends_with(want) {
            let c = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} in time; got {got:?}"))
                .expect("stream open")
                .unwrap();
            got.push_str(std::str::from_utf8(&c).unwrap());
        }
    }

    #[tokio::test]
    async fn follows_writes_and_a_rotation_then_ends_when_the_container_stops() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let mut f = std::fs::File::create(&log).unwrap();
        f.write_all(rec("first").as_bytes()).unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        let r = LogReader::open(&log, opts(true, None)).await.unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(r.run(tx, running_while(alive.clone())));
        let mut got = String::new();
        expect(&mut rx, "first\n", &mut got).await;
        // Half a record, then the rest: nothing until the line is whole.
        f.write_all(b"2024-01-01T00:00:00Z stdout P par").unwrap();
        f.flush().unwrap();
        f.write_all(b"t\n2024-01-01T00:00:00Z stdout F ial\n")
            .unwrap();
        expect(&mut rx, "partial\n", &mut got).await;
        // Rotation: rename, a last write to the renamed file, then the new file.
        std::fs::rename(&log, dir.path().join("0.log.20240101-000000")).unwrap();
        f.write_all(rec("late in the old file").as_bytes()).unwrap();
        let mut g = std::fs::File::create(&log).unwrap();
        g.write_all(rec("in the new file").as_bytes()).unwrap();
        expect(&mut rx, "in the new file\n", &mut got).await;
        assert_eq!(
            got,
            "first\npartial\nlate in the old file\nin the new file\n"
        );
        // The container stops after a last line: it is read, then the stream ends.
        g.write_all(rec("last").as_bytes()).unwrap();
        alive.store(false, Ordering::SeqCst);
        let rest = tokio::time::timeout(Duration::from_secs(10), collect(rx))
            .await
            .expect("the stream ends once the container stopped");
        assert!(
            got.ends_with("file\n") && (got.clone() + &rest).ends_with("last\n"),
            "{got}{rest}"
        );
        task.await.unwrap().unwrap();
    }

    fn gzip(path: &Path) {
        let data = std::fs::read(path).unwrap();
        let mut gz_name = path.as_os_str().to_os_string();
        gz_name.push(".gz");
        let mut enc = flate2::write::GzEncoder::new(
            std::fs::File::create(PathBuf::from(gz_name)).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(&data).unwrap();
        enc.finish().unwrap();
        std::fs::remove_file(path).unwrap();
    }

    #[tokio::test]
    async fn a_follower_behind_by_several_rotations_reads_the_files_it_missed_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let rotated = |stamp: &str| dir.path().join(format!("0.log.20240101-00000{stamp}"));
        let mut x = std::fs::File::create(&log).unwrap();
        x.write_all(rec("x1").as_bytes()).unwrap();
        let alive = Arc::new(AtomicBool::new(true));
        // Opened, but not reading yet: three rotations go by meanwhile, and the first two
        // rotated files are gzipped (the newest stays plain), as log rotation leaves them.
        let r = LogReader::open(&log, opts(true, None)).await.unwrap();
        x.write_all(b"2024-01-01T00:00:00.000000002Z stdout F x2\n")
            .unwrap();
        for (stamp, text) in [("0", "y"), ("1", "w"), ("2", "z")] {
            std::fs::rename(&log, rotated(stamp)).unwrap();
            std::fs::write(&log, rec(text)).unwrap();
        }
        gzip(&rotated("0"));
        gzip(&rotated("1"));
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(r.run(tx, running_while(alive.clone())));
        let mut rx = rx;
        let mut got = String::new();
        expect(&mut rx, "z\n", &mut got).await;
        assert_eq!(got, "x1\nx2\ny\nw\nz\n");
        alive.store(false, Ordering::SeqCst);
        assert_eq!(collect(rx).await, "");
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_follower_stops_when_the_client_goes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        std::fs::write(&log, rec("x")).unwrap();
        let r = LogReader::open(&log, opts(true, None)).await.unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = tokio::spawn(r.run(tx, running_while(Arc::new(AtomicBool::new(true)))));
        assert_eq!(&rx.recv().await.unwrap().unwrap()[..], b"x\n");
        drop(rx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the reader ends without its client")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn an_over_long_record_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("0.log");
        let long = format!(
            "2024-01-01T00:00:00Z stdout F {}\n",
            "z".repeat(MAX_RECORD + 10)
        );
        std::fs::write(&log, [rec("a"), long, rec("b")].concat()).unwrap();
        let r = LogReader::open(&log, opts(false, None)).await.unwrap();
        let (tx, rx) = mpsc::channel(4);
        let task = tokio::spawn(r.run(tx, running_while(Arc::new(AtomicBool::new(true)))));
        assert_eq!(collect(rx).await, "a\nb\n");
        task.await.unwrap().unwrap();
    }
}
