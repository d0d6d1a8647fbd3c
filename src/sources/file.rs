//! The static pod source: pods from manifest files in `--pod-manifest-path`.
//!
//! The path is a directory of manifests or a single manifest file, as the kubelet allows. Each
//! regular file whose name does not start with `.` (so editor swap files and hidden files are
//! skipped) holds one `v1.Pod` in YAML or JSON. Sub-directories are not entered.
//!
//! [`FileSource::run`] watches the path with inotify and also rereads it every
//! `fileCheckFrequency`, so a change is seen even if an event is lost or inotify is unavailable.
//! After each read it sends one [`PodUpdate`] with [`PodOperation::Set`] and every valid pod,
//! when that set differs from the last one sent (the first read is always sent, even when
//! empty, so the merge layer knows the source has spoken).
//!
//! A manifest that does not parse or fails validation is skipped with one `warn` line naming the
//! file, the field and what was expected; it is logged again only when the file's content
//! changes. Every other pod is still sent. A missing path is logged once and retried; it is
//! never fatal.
//!
//! Each pod gets the static pod identity and API defaults of [`super::defaults`] and is checked
//! by [`super::validation::validate_pod`]. Two files that yield the same namespace/name: the
//! first in file-name order wins and the other is reported.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask};
use k8s_openapi::api::core::v1::Pod;
use md5::{Digest, Md5};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::StreamExt;

use super::defaults::{apply_static_defaults, StaticOrigin};
use super::validation::{validate_pod, ValidationError};
use super::{PodOperation, PodUpdate, FILE_SOURCE};

/// How long to wait after a create/modify event for the writer to finish, when no
/// close-after-write event arrives first.
const SETTLE_DELAY: Duration = Duration::from_millis(100);
/// The shortest recheck period accepted (a zero period would spin).
const MIN_CHECK_FREQUENCY: Duration = Duration::from_millis(1);
/// At most this many unknown field paths are named in a warning.
const MAX_UNKNOWN_FIELDS_REPORTED: usize = 10;

/// Why a manifest file was skipped. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{path}: cannot read the file: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// The file is empty (or only whitespace).
    #[error("{path}: the file is empty; expected a v1 Pod in YAML or JSON")]
    Empty { path: PathBuf },
    /// The file is not well-formed YAML or JSON.
    #[error("{path}: not valid {format}: {detail}")]
    Syntax {
        path: PathBuf,
        format: &'static str,
        detail: String,
    },
    /// `apiVersion` or `kind` is missing or is not `v1` / `Pod`.
    #[error("{path}: {field}: {detail}")]
    NotAPod {
        path: PathBuf,
        field: &'static str,
        detail: String,
    },
    /// A field has the wrong type or shape for a v1 Pod.
    #[error("{path}: {field}: {detail}")]
    Decode {
        path: PathBuf,
        field: String,
        detail: String,
    },
    /// The pod decoded but failed validation.
    #[error("{path}: invalid pod: {errors}")]
    Invalid {
        path: PathBuf,
        errors: ValidationError,
    },
}

impl ManifestError {
    /// The manifest file concerned.
    pub fn path(&self) -> &Path {
        match self {
            Self::Read { path, .. }
            | Self::Empty { path }
            | Self::Syntax { path, .. }
            | Self::NotAPod { path, .. }
            | Self::Decode { path, .. }
            | Self::Invalid { path, .. } => path,
        }
    }
}

/// A manifest that decoded, defaulted and validated.
#[derive(Debug, Clone)]
pub struct DecodedManifest {
    /// The pod, with its static pod identity and API defaults.
    pub pod: Pod,
    /// Fields present in the file that a v1 Pod does not have (`spec.containers[0].imagePolicy`).
    /// The kubelet drops them silently; we accept the pod but report them.
    pub unknown_fields: Vec<String>,
}

/// Decodes one manifest's bytes into a static pod: parse (YAML, or JSON when the text starts
/// with `{`), check `apiVersion: v1` / `kind: Pod`, decode, apply the static pod defaults for
/// `node_name` and `source_path`, validate.
pub fn decode_manifest(
    data: &[u8],
    source_path: &Path,
    node_name: &str,
) -> Result<DecodedManifest, ManifestError> {
    let value = parse_document(data, source_path)?;
    decode_pod_value(
        &value,
        source_path,
        StaticOrigin::File(source_path),
        node_name,
    )
}

/// Parses a manifest's bytes as JSON (text starting with `{`) or YAML; `source_path` (a file, or
/// a URL for the URL source) names it in errors.
pub fn parse_document(data: &[u8], source_path: &Path) -> Result<serde_json::Value, ManifestError> {
    let path = || source_path.to_path_buf();
    let text = std::str::from_utf8(data).map_err(|e| ManifestError::Syntax {
        path: path(),
        format: "UTF-8 text",
        detail: e.to_string(),
    })?;
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.is_empty() {
        return Err(ManifestError::Empty { path: path() });
    }
    let value: serde_json::Value = if trimmed.starts_with('{') {
        serde_json::from_str(trimmed).map_err(|e| ManifestError::Syntax {
            path: path(),
            format: "JSON",
            detail: e.to_string(),
        })?
    } else {
        serde_yaml::from_str(trimmed).map_err(|e| ManifestError::Syntax {
            path: path(),
            format: "YAML",
            detail: e.to_string(),
        })?
    };
    Ok(value)
}

/// Decodes one parsed v1 Pod into a static pod from `origin`: check `apiVersion: v1` /
/// `kind: Pod`, decode, apply the static pod defaults for `node_name`, validate.
pub fn decode_pod_value(
    value: &serde_json::Value,
    source_path: &Path,
    origin: StaticOrigin<'_>,
    node_name: &str,
) -> Result<DecodedManifest, ManifestError> {
    let path = || source_path.to_path_buf();
    let Some(object) = value.as_object() else {
        return Err(ManifestError::NotAPod {
            path: path(),
            field: "kind",
            detail: format!("expected a v1 Pod object, found {}", json_type_name(value)),
        });
    };
    for (field, expected) in [("apiVersion", "v1"), ("kind", "Pod")] {
        match object.get(field) {
            Some(serde_json::Value::String(s)) if s == expected => {}
            Some(serde_json::Value::String(s)) => {
                return Err(ManifestError::NotAPod {
                    path: path(),
                    field,
                    detail: format!(
                    "Unsupported value: {s:?}: a static pod manifest must be {field}: {expected}"
                ),
                })
            }
            Some(other) => {
                return Err(ManifestError::NotAPod {
                    path: path(),
                    field,
                    detail: format!("expected the string {expected:?}, found {other}"),
                })
            }
            None => {
                return Err(ManifestError::NotAPod {
                    path: path(),
                    field,
                    detail: format!(
                        "Required value: a static pod manifest must set {field}: {expected}"
                    ),
                })
            }
        }
    }
    let mut pod: Pod = serde_path_to_error::deserialize(value).map_err(|e| {
        let field = e.path().to_string();
        ManifestError::Decode {
            path: path(),
            field: if field == "." { "(root)".into() } else { field },
            detail: e.into_inner().to_string(),
        }
    })?;
    let mut unknown_fields = Vec::new();
    if let Ok(known) = serde_json::to_value(&pod) {
        unknown_keys(value, &known, "", &mut unknown_fields);
    }
    apply_static_defaults(&mut pod, node_name, origin).map_err(|errors| {
        ManifestError::Invalid {
            path: path(),
            errors,
        }
    })?;
    validate_pod(&pod).map_err(|errors| ManifestError::Invalid {
        path: path(),
        errors,
    })?;
    Ok(DecodedManifest {
        pod,
        unknown_fields,
    })
}

/// Reads and decodes one manifest file.
pub fn read_manifest(path: &Path, node_name: &str) -> Result<DecodedManifest, ManifestError> {
    let data = std::fs::read(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode_manifest(&data, path, node_name)
}

pub(crate) fn json_type_name(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Collects the paths of keys present in `input` but absent from `known` (the decoded object
/// serialized again). Null and empty values are not reported: serializing drops them.
fn unknown_keys(
    input: &serde_json::Value,
    known: &serde_json::Value,
    prefix: &str,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (input, known) {
        (Value::Object(i), Value::Object(k)) => {
            for (key, value) in i {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match k.get(key) {
                    Some(kv) => unknown_keys(value, kv, &path, out),
                    None => {
                        let empty = match value {
                            Value::Null => true,
                            Value::Object(m) => m.is_empty(),
                            Value::Array(a) => a.is_empty(),
                            _ => false,
                        };
                        if !empty {
                            out.push(path);
                        }
                    }
                }
            }
        }
        (Value::Array(i), Value::Array(k)) => {
            for (n, (iv, kv)) in i.iter().zip(k).enumerate() {
                unknown_keys(iv, kv, &format!("{prefix}[{n}]"), out);
            }
        }
        _ => {}
    }
}

/// The static pod source. Build it with [`FileSource::new`], then `tokio::spawn(source.run(tx))`
/// (or use [`spawn_file_source`]). It runs until the receiving end of `tx` is dropped.
#[derive(Debug, Clone)]
pub struct FileSource {
    path: PathBuf,
    node_name: String,
    check_frequency: Duration,
    inotify: bool,
}

/// Starts the static pod source on the current tokio runtime; see [`FileSource`].
pub fn spawn_file_source(
    path: PathBuf,
    node_name: String,
    check_frequency: Duration,
    tx: mpsc::Sender<PodUpdate>,
) -> JoinHandle<()> {
    tokio::spawn(FileSource::new(path, node_name, check_frequency).run(tx))
}

impl FileSource {
    /// A source for the manifests at `path` (a directory or one file) on node `node_name`,
    /// rereading everything every `check_frequency`.
    pub fn new(path: PathBuf, node_name: String, check_frequency: Duration) -> Self {
        // Like the kubelet, drop trailing slashes so that the path names the directory itself.
        let trimmed = path.to_string_lossy().trim_end_matches('/').to_string();
        let path = if trimmed.is_empty() {
            path
        } else {
            PathBuf::from(trimmed)
        };
        Self {
            path,
            node_name,
            check_frequency: check_frequency.max(MIN_CHECK_FREQUENCY),
            inotify: true,
        }
    }

    /// Turns inotify on (the default) or off. Off, only the periodic recheck sees changes:
    /// for filesystems without inotify support, and for tests of the recheck.
    pub fn with_inotify(mut self, enabled: bool) -> Self {
        self.inotify = enabled;
        self
    }

    /// Watches and rereads the manifests, sending a [`PodOperation::Set`] whenever the set of
    /// valid pods changes. Returns when `tx` is closed.
    pub async fn run(self, tx: mpsc::Sender<PodUpdate>) {
        tracing::info!("watching static pod manifests in {}", self.path.display());
        let mut scanner = Some(ManifestScanner::new(
            self.path.clone(),
            self.node_name.clone(),
        ));
        let mut watcher = Watcher::new(self.path.clone(), self.inotify);
        let mut last_sent: Option<Vec<Pod>> = None;
        let mut ticker =
            tokio::time::interval_at(Instant::now() + self.check_frequency, self.check_frequency);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            watcher.ensure();
            // Reading files blocks; keep it off the runtime's worker threads.
            let Some(mut s) = scanner.take() else { return };
            let (s, pods) = match tokio::task::spawn_blocking(move || {
                let pods = s.scan();
                (s, pods)
            })
            .await
            {
                Ok(result) => result,
                Err(e) => {
                    tracing::error!(error = %e, "static pod scan task failed");
                    return;
                }
            };
            scanner = Some(s);
            if last_sent.as_ref() != Some(&pods) {
                let update = PodUpdate {
                    source: FILE_SOURCE,
                    op: PodOperation::Set,
                    pods: pods.clone(),
                };
                if tx.send(update).await.is_err() {
                    return;
                }
                last_sent = Some(pods);
            }

            // Wait for a reason to reread: an inotify event (settled), or the periodic tick.
            let mut deadline: Option<Instant> = None;
            loop {
                tokio::select! {
                    biased;
                    _ = tx.closed() => return,
                    trigger = watcher.next() => match trigger {
                        Trigger::Now => deadline = Some(Instant::now()),
                        Trigger::Settle => {
                            let at = Instant::now() + SETTLE_DELAY;
                            deadline = Some(deadline.map_or(at, |d| d.min(at)));
                        }
                        Trigger::Ignore => {}
                    },
                    _ = sleep_until(deadline), if deadline.is_some() => break,
                    _ = ticker.tick() => break,
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What an inotify event asks of the source.
enum Trigger {
    /// Reread now (a file was closed after writing, moved, deleted; the queue overflowed).
    Now,
    /// Reread shortly (a file was created or modified and may still be being written).
    Settle,
    /// Nothing to do.
    Ignore,
}

/// The inotify side: a watch on the manifest directory (when the path is one) and one on its
/// parent, so that the path appearing, disappearing or being replaced is seen too.
struct Watcher {
    path: PathBuf,
    /// The path's parent directory and the path's own name in it.
    parent: Option<(PathBuf, OsString)>,
    stream: Option<inotify::EventStream<[u8; 4096]>>,
    /// Watch on `path` itself when it is a directory.
    dir_wd: Option<WatchDescriptor>,
    parent_wd: Option<WatchDescriptor>,
    /// Last failure logged, so that a persistent one is logged once.
    last_error: Option<String>,
    enabled: bool,
}

impl Watcher {
    fn new(path: PathBuf, enabled: bool) -> Self {
        let parent = match (path.parent(), path.file_name()) {
            (Some(p), Some(name)) => {
                let p = if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                };
                Some((p, name.to_os_string()))
            }
            _ => None,
        };
        Self {
            path,
            parent,
            stream: None,
            dir_wd: None,
            parent_wd: None,
            last_error: None,
            enabled,
        }
    }

    fn log_once(&mut self, msg: String) {
        if self.last_error.as_deref() != Some(&msg) {
            tracing::warn!(
                "static pod path {}: {msg}; relying on the periodic recheck",
                self.path.display()
            );
            self.last_error = Some(msg);
        }
    }

    /// Sets up whatever watches are missing. Failures are logged once and leave the periodic
    /// recheck to do the work.
    fn ensure(&mut self) {
        if !self.enabled {
            return;
        }
        if self.stream.is_none() {
            let stream = Inotify::init().and_then(|inotify| inotify.into_event_stream([0u8; 4096]));
            match stream {
                Ok(s) => {
                    self.stream = Some(s);
                    self.dir_wd = None;
                    self.parent_wd = None;
                }
                Err(e) => {
                    self.log_once(format!("cannot start inotify: {e}"));
                    return;
                }
            }
        }
        let Some(stream) = &self.stream else { return };
        let mut watches = stream.watches();
        let content = WatchMask::CREATE
            | WatchMask::MODIFY
            | WatchMask::CLOSE_WRITE
            | WatchMask::MOVED_TO
            | WatchMask::MOVED_FROM
            | WatchMask::DELETE
            | WatchMask::ATTRIB
            | WatchMask::DELETE_SELF
            | WatchMask::MOVE_SELF;
        let mut error = None;
        if self.parent_wd.is_none() {
            if let Some((parent, _)) = &self.parent {
                match watches.add(parent, content) {
                    Ok(wd) => self.parent_wd = Some(wd),
                    Err(e) => error = Some(format!("cannot watch {}: {e}", parent.display())),
                }
            }
        }
        if self.dir_wd.is_none() && self.path.is_dir() {
            match watches.add(&self.path, content | WatchMask::ONLYDIR) {
                Ok(wd) => self.dir_wd = Some(wd),
                Err(e) => error = Some(format!("cannot watch {}: {e}", self.path.display())),
            }
        }
        match error {
            Some(msg) => self.log_once(msg),
            None => self.last_error = None,
        }
    }

    /// The next event, classified. Pending forever when there is no inotify stream.
    async fn next(&mut self) -> Trigger {
        let Some(stream) = &mut self.stream else {
            return std::future::pending().await;
        };
        let event = match stream.next().await {
            Some(Ok(event)) => event,
            Some(Err(e)) => {
                self.log_once(format!("inotify read failed: {e}"));
                self.stream = None;
                return Trigger::Now;
            }
            None => {
                self.stream = None;
                return Trigger::Now;
            }
        };
        if event.mask.contains(EventMask::Q_OVERFLOW) {
            return Trigger::Now;
        }
        let name = event.name.as_deref();
        if Some(&event.wd) == self.parent_wd.as_ref() {
            if event.mask.contains(EventMask::IGNORED) {
                self.parent_wd = None;
                return Trigger::Now;
            }
            // In the parent, only events about the path itself matter.
            let ours = self.parent.as_ref().map(|(_, n)| n.as_os_str());
            if name.is_none() || name != ours {
                return Trigger::Ignore;
            }
            if event.mask.intersects(EventMask::CREATE | EventMask::MODIFY)
                && !event.mask.contains(EventMask::ISDIR)
            {
                return Trigger::Settle;
            }
            return Trigger::Now;
        }
        if Some(&event.wd) == self.dir_wd.as_ref() {
            if event
                .mask
                .intersects(EventMask::IGNORED | EventMask::DELETE_SELF | EventMask::MOVE_SELF)
            {
                // A directory moved away keeps its watch: drop it (after a deletion the kernel
                // has already dropped it, and this fails harmlessly).
                if let (Some(wd), Some(stream)) = (self.dir_wd.take(), &self.stream) {
                    let _ = stream.watches().remove(wd);
                }
                return Trigger::Now;
            }
            if name.is_some_and(|n| n.as_encoded_bytes().starts_with(b".")) {
                return Trigger::Ignore;
            }
            if event.mask.intersects(EventMask::CREATE | EventMask::MODIFY)
                && !event.mask.contains(EventMask::ISDIR)
            {
                return Trigger::Settle;
            }
            return Trigger::Now;
        }
        Trigger::Ignore
    }
}

/// The outcome of the last read of one file, keyed by a digest of what was read.
struct CachedFile {
    digest: [u8; 16],
    pod: Option<Pod>,
}

/// Reads the manifest path and turns it into pods, remembering each file's outcome so that an
/// unchanged file is neither decoded nor reported again. [`FileSource`] runs one; it is public
/// for one-shot reads (a run-once mode) and tests.
pub struct ManifestScanner {
    path: PathBuf,
    node_name: String,
    files: HashMap<PathBuf, CachedFile>,
    /// The last problem with the path itself that was logged.
    path_problem: Option<String>,
    /// Entries already reported as skipped (sub-directories, special files, duplicates).
    reported: HashSet<(PathBuf, String)>,
}

impl ManifestScanner {
    /// A scanner of `path` (a directory or one file) for node `node_name`.
    pub fn new(path: PathBuf, node_name: String) -> Self {
        Self {
            path,
            node_name,
            files: HashMap::new(),
            path_problem: None,
            reported: HashSet::new(),
        }
    }

    fn path_problem(&mut self, problem: Option<String>) {
        if problem != self.path_problem {
            match &problem {
                Some(p) => tracing::warn!("static pod path {}: {p}", self.path.display()),
                None if self.path_problem.is_some() => {
                    tracing::info!("static pod path {} is readable again", self.path.display())
                }
                None => {}
            }
            self.path_problem = problem;
        }
    }

    /// Reads every manifest; returns the valid pods in file-name order. Problems are logged
    /// (`warn`) once per change: a file that stays broken, or a path that stays missing, is not
    /// reported again by the next scan.
    pub fn scan(&mut self) -> Vec<Pod> {
        let mut still_reported = HashSet::new();
        let files = match std::fs::metadata(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.path_problem(Some(
                    "does not exist; no static pods until it is created".to_string(),
                ));
                Vec::new()
            }
            Err(e) => {
                self.path_problem(Some(format!("cannot be read: {e}")));
                Vec::new()
            }
            Ok(meta) if meta.is_dir() => match self.list_dir(&mut still_reported) {
                Ok(files) => {
                    self.path_problem(None);
                    files
                }
                Err(e) => {
                    self.path_problem(Some(format!("cannot list the directory: {e}")));
                    Vec::new()
                }
            },
            Ok(meta) if meta.is_file() => {
                self.path_problem(None);
                vec![self.path.clone()]
            }
            Ok(_) => {
                self.path_problem(Some(
                    "is neither a directory nor a regular file".to_string(),
                ));
                Vec::new()
            }
        };

        let mut pods = Vec::new();
        let mut owners: HashMap<(String, String), PathBuf> = HashMap::new();
        for file in &files {
            let Some(pod) = self.read_file(file) else {
                continue;
            };
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            if let Some(first) = owners.get(&key) {
                let tag = (file.clone(), format!("duplicate:{}", first.display()));
                if !self.reported.contains(&tag) {
                    tracing::warn!(
                        "skipping static pod manifest {}: pod {}/{} is already defined by {}",
                        file.display(),
                        key.0,
                        key.1,
                        first.display()
                    );
                }
                still_reported.insert(tag);
                continue;
            }
            owners.insert(key, file.clone());
            pods.push(pod);
        }
        self.files.retain(|p, _| files.contains(p));
        self.reported = still_reported;
        pods
    }

    /// The candidate manifest files of the directory, sorted by name.
    fn list_dir(
        &mut self,
        still_reported: &mut HashSet<(PathBuf, String)>,
    ) -> io::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            if entry.file_name().as_encoded_bytes().starts_with(b".") {
                continue;
            }
            let path = entry.path();
            // Follow symbolic links, as the kubelet's stat does.
            let skip = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => None,
                Ok(m) if m.is_dir() => Some("not entering a sub-directory".to_string()),
                Ok(_) => Some("not a regular file".to_string()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Some("dangling symbolic link, or removed while reading".to_string())
                }
                Err(e) => Some(format!("cannot stat: {e}")),
            };
            match skip {
                None => files.push(path),
                Some(why) => {
                    let tag = (path.clone(), why.clone());
                    if !self.reported.contains(&tag) {
                        tracing::warn!("skipping {} in the static pod path: {why}", path.display());
                    }
                    still_reported.insert(tag);
                }
            }
        }
        files.sort();
        Ok(files)
    }

    /// The pod of one file, from the cache when the content is unchanged.
    fn read_file(&mut self, path: &Path) -> Option<Pod> {
        let data = std::fs::read(path);
        let digest: [u8; 16] = match &data {
            Ok(bytes) => Md5::digest(bytes).into(),
            Err(e) => Md5::digest(format!("\0read error: {e}")).into(),
        };
        if let Some(cached) = self.files.get(path) {
            if cached.digest == digest {
                return cached.pod.clone();
            }
        }
        let result = match data {
            Ok(bytes) => decode_manifest(&bytes, path, &self.node_name),
            Err(source) => Err(ManifestError::Read {
                path: path.to_path_buf(),
                source,
            }),
        };
        let pod = match result {
            Ok(decoded) => {
                if !decoded.unknown_fields.is_empty() {
                    let mut fields = decoded.unknown_fields;
                    let more = fields.len().saturating_sub(MAX_UNKNOWN_FIELDS_REPORTED);
                    fields.truncate(MAX_UNKNOWN_FIELDS_REPORTED);
                    tracing::warn!(
                        "{}: fields a v1 Pod does not have, ignored: {}{}",
                        path.display(),
                        fields.join(", "),
                        if more > 0 {
                            format!(" and {more} more")
                        } else {
                            String::new()
                        }
                    );
                }
                let pod = decoded.pod;
                tracing::debug!(
                    file = %path.display(),
                    pod = %format!(
                        "{}/{}",
                        pod.metadata.namespace.as_deref().unwrap_or_default(),
                        pod.metadata.name.as_deref().unwrap_or_default()
                    ),
                    uid = pod.metadata.uid.as_deref().unwrap_or_default(),
                    "read static pod manifest"
                );
                Some(pod)
            }
            Err(e) => {
                tracing::warn!("skipping static pod manifest {e}");
                None
            }
        };
        self.files.insert(
            path.to_path_buf(),
            CachedFile {
                digest,
                pod: pod.clone(),
            },
        );
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: app\n    image: busybox:1.35\n";

    #[test]
    fn decodes_yaml_and_json() {
        let p = Path::new("/m/web.yaml");
        let yaml = decode_manifest(GOOD.as_bytes(), p, "node").unwrap();
        assert_eq!(yaml.pod.metadata.name.as_deref(), Some("web-node"));
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},
            "spec":{"containers":[{"name":"app","image":"busybox:1.35"}]}}"#;
        let json = decode_manifest(json.as_bytes(), p, "node").unwrap();
        assert_eq!(
            json.pod, yaml.pod,
            "same pod, same UID, whatever the syntax"
        );
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let p = Path::new("/m/bad.yaml");
        let err = |s: &str| {
            decode_manifest(s.as_bytes(), p, "n")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(""),
            "/m/bad.yaml: the file is empty; expected a v1 Pod in YAML or JSON"
        );
        assert!(err("a: [").starts_with("/m/bad.yaml: not valid YAML: "));
        assert!(err("{\"a\": ").starts_with("/m/bad.yaml: not valid JSON: "));
        assert!(err("- 1\n").contains("kind: expected a v1 Pod object, found a list"));
        assert_eq!(
            err("apiVersion: v1\nkind: Deployment\n"),
            "/m/bad.yaml: kind: Unsupported value: \"Deployment\": a static pod manifest must \
             be kind: Pod"
        );
        assert!(err("kind: Pod\n").contains("apiVersion: Required value"));
        let e = err(&GOOD.replace(
            "image: busybox:1.35",
            "image: x\n    ports:\n    - containerPort: abc",
        ));
        assert_eq!(
            e,
            "/m/bad.yaml: spec.containers[0].ports[0].containerPort: invalid type: string \
             \"abc\", expected i32"
        );
        let e = err(&GOOD.replace("    image: busybox:1.35\n", ""));
        assert_eq!(
            e,
            "/m/bad.yaml: invalid pod: spec.containers[0].image: Required value"
        );
    }

    #[test]
    fn reports_unknown_fields() {
        let with_typo = GOOD.replace("image: busybox:1.35", "image: x\n    imagePolicy: Always");
        let d = decode_manifest(with_typo.as_bytes(), Path::new("/m/x"), "n").unwrap();
        assert_eq!(d.unknown_fields, ["spec.containers[0].imagePolicy"]);
    }

    #[test]
    fn scanner_skips_bad_and_hidden_files_and_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), GOOD).unwrap();
        std::fs::write(dir.path().join("b.yaml"), GOOD).unwrap(); // same pod name
        std::fs::write(dir.path().join(".c.yaml.swp"), "garbage").unwrap();
        std::fs::write(dir.path().join("d.yaml"), "garbage: [").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("e.json"),
            GOOD.replace("name: web", "name: other"),
        )
        .unwrap();
        let mut s = ManifestScanner::new(dir.path().to_path_buf(), "n".into());
        let pods = s.scan();
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["web-n", "other-n"]);
        assert_eq!(
            s.scan(),
            pods,
            "a rescan of unchanged files gives the same pods"
        );
        assert_eq!(s.files.len(), 4, "a, b, d, e are cached");
    }

    #[test]
    fn single_file_and_missing_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("web.yaml");
        let mut s = ManifestScanner::new(file.clone(), "n".into());
        assert!(s.scan().is_empty());
        assert!(s.path_problem.is_some());
        std::fs::write(&file, GOOD).unwrap();
        assert_eq!(s.scan().len(), 1);
        assert!(s.path_problem.is_none());
    }
}
