//! The kubelet's atomic writer (`pkg/volume/util/atomic_writer.go`): publishes a set of files in
//! a volume directory so that a reader sees either the whole old set or the whole new set.
//!
//! Layout of a volume directory `<dir>`:
//!
//! ```text
//! <dir>/..2026_01_02_15_04_05.123456789   the files of one version (a timestamped directory)
//! <dir>/..data -> ..2026_01_02_15_04_05.123456789
//! <dir>/key    -> ..data/key              one symlink per top-level path of the payload
//! ```
//!
//! A write: if the current version already holds exactly the payload (content and mode), nothing
//! happens. Otherwise the files go into a new timestamped directory, a `..data_tmp` symlink to it
//! is renamed over `..data` (rename(2) is atomic), user-visible symlinks are added for new
//! top-level paths and removed for paths no longer in the payload, and the old version directory
//! is removed. Every path a container opens resolves through `..data`, so each open sees one
//! version; a reader that needs several files from one version opens `..data` once and reads
//! through that directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The symlink to the current version.
pub const DATA_DIR_NAME: &str = "..data";
const DATA_DIR_TMP_NAME: &str = "..data_tmp";

/// One file of a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    /// Permission bits (`defaultMode` or the item's `mode`).
    pub mode: u32,
    /// Group owner (the pod's `fsGroup`), given group read access.
    pub fs_group: Option<u32>,
}

/// A payload: relative path → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// A write that failed; each names the path or payload entry.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("invalid payload path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> WriteError + 'a {
    move |source| WriteError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks one payload path as the kubelet does: relative, no `..` element, not starting with
/// `..`, not empty.
pub fn validate_path(p: &str) -> Result<(), WriteError> {
    let bad = |reason| {
        Err(WriteError::InvalidPath {
            path: p.to_string(),
            reason,
        })
    };
    if p.is_empty() {
        return bad("must not be empty");
    }
    if p.starts_with('/') {
        return bad("must be relative");
    }
    if p.len() > 4096 {
        return bad("must be at most 4096 characters");
    }
    if p.split('/').any(|seg| seg == "..") {
        return bad("must not contain '..'");
    }
    if p.starts_with("..") {
        return bad("must not start with '..'");
    }
    if Path::new(p)
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return bad("must be a plain relative path");
    }
    Ok(())
}

/// The first element of a payload path: the name of its user-visible symlink.
fn top_level(p: &str) -> &str {
    p.trim_start_matches("./").split('/').next().unwrap_or(p)
}

/// The current version's directory, if `..data` exists.
pub fn current_version(dir: &Path) -> Option<PathBuf> {
    let target = fs::read_link(dir.join(DATA_DIR_NAME)).ok()?;
    Some(dir.join(target))
}

/// Whether the version directory `ver` holds exactly `payload` (contents, modes, group).
fn holds(ver: &Path, payload: &Payload) -> bool {
    let mut count = 0usize;
    for (p, f) in payload {
        let path = ver.join(p);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            return false;
        };
        if !meta.is_file()
            || meta.permissions().mode() & 0o7777 != effective_mode(f)
            || f.fs_group.is_some_and(|g| g != meta.gid())
            || meta.len() != f.data.len() as u64
        {
            return false;
        }
        match fs::read(&path) {
            Ok(d) if d == f.data => count += 1,
            _ => return false,
        }
    }
    // No stray files from an older payload.
    count_files(ver) == count
}

fn count_files(dir: &Path) -> usize {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

fn effective_mode(f: &FileProjection) -> u32 {
    let m = f.mode & 0o7777;
    if f.fs_group.is_some() {
        m | 0o040
    } else {
        m
    }
}

/// A fresh version directory name, `..YYYY_MM_DD_HH_MM_SS.<nanoseconds><n>`.
fn version_name(attempt: u32) -> String {
    let now = jiff::Timestamp::now();
    let z = now.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}{}",
        z.year(),
        z.month(),
        z.day(),
        z.hour(),
        z.minute(),
        z.second(),
        z.subsec_nanosecond(),
        attempt
    )
}

/// Writes `payload` into `dir` atomically. Returns whether anything changed.
pub fn write(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    for p in payload.keys() {
        validate_path(p)?;
    }
    let old = current_version(dir).filter(|v| v.is_dir());
    let wanted_top: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    if let Some(old) = &old {
        if holds(old, payload)
            && wanted_top
                .iter()
                .all(|t| fs::symlink_metadata(dir.join(t)).is_ok())
        {
            return Ok(false);
        }
    }
    // The new version.
    let mut attempt = 0;
    let ver = loop {
        let name = version_name(attempt);
        let path = dir.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => break path,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => attempt += 1,
            Err(e) => return Err(io_err("cannot create version directory", &path)(e)),
        }
    };
    let result = fill_version(&ver, payload).and_then(|()| publish(dir, &ver, &wanted_top));
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&ver);
        return Err(e);
    }
    if let Some(old) = old {
        if old != ver {
            fs::remove_dir_all(&old).map_err(io_err("cannot remove old version", &old))?;
        }
    }
    Ok(true)
}

fn fill_version(ver: &Path, payload: &Payload) -> Result<(), WriteError> {
    fs::set_permissions(ver, fs::Permissions::from_mode(0o755))
        .map_err(io_err("cannot chmod", ver))?;
    for (p, f) in payload {
        let path = ver.join(p);
        if let Some(parent) = path.parent() {
            if parent != ver {
                fs::create_dir_all(parent).map_err(io_err("cannot create directory", parent))?;
            }
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_err("cannot create file", &path))?;
        file.write_all(&f.data)
            .map_err(io_err("cannot write file", &path))?;
        if let Some(g) = f.fs_group {
            std::os::unix::fs::fchown(&file, None, Some(g))
                .map_err(io_err("cannot set the group of", &path))?;
        }
        file.set_permissions(fs::Permissions::from_mode(effective_mode(f)))
            .map_err(io_err("cannot chmod", &path))?;
        file.sync_all().map_err(io_err("cannot sync", &path))?;
    }
    Ok(())
}

/// Swaps `..data` to `ver` and adjusts the user-visible symlinks.
fn publish(dir: &Path, ver: &Path, wanted_top: &BTreeSet<&str>) -> Result<(), WriteError> {
    let name = ver.file_name().expect("version directory has a name");
    let tmp = dir.join(DATA_DIR_TMP_NAME);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("cannot remove", &tmp)(e)),
    }
    symlink(name, &tmp).map_err(io_err("cannot create symlink", &tmp))?;
    let data = dir.join(DATA_DIR_NAME);
    fs::rename(&tmp, &data).map_err(io_err("cannot rename over", &data))?;
    for t in wanted_top {
        let link = dir.join(t);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR_NAME).join(t), &link)
                .map_err(io_err("cannot create symlink", &link))?;
        }
    }
    // User-visible paths no longer in the payload.
    let entries = fs::read_dir(dir).map_err(io_err("cannot list", dir))?;
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with("..") || wanted_top.contains(n.as_ref()) {
            continue;
        }
        let p = e.path();
        if fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&p).map_err(io_err("cannot remove", &p))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
            fs_group: None,
        }
    }

    #[test]
    fn paths_are_validated() {
        for bad in ["", "/abs", "a/../b", "..x", "../x"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
        for good in ["a", "a/b/c", "a..b", "x/.y"] {
            validate_path(good).unwrap();
        }
    }

    #[test]
    fn writes_swap_versions_and_prune_paths() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        p.insert("sub/b".into(), file("2", 0o400));
        assert!(write(dir, &p).unwrap());
        let v1 = current_version(dir).unwrap();
        assert!(v1
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("..20"));
        assert_eq!(fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(fs::read_link(dir.join("a")).unwrap(), Path::new("..data/a"));
        assert_eq!(
            fs::metadata(dir.join("sub/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o400
        );
        // Same payload: nothing happens.
        assert!(!write(dir, &p).unwrap());
        assert_eq!(current_version(dir).unwrap(), v1);
        // A mode change alone is a change.
        p.insert("a".into(), file("1", 0o600));
        assert!(write(dir, &p).unwrap());
        assert!(!v1.exists(), "the old version is removed");
        // Dropping a path removes its symlink.
        p.remove("sub/b");
        p.insert("c".into(), file("3", 0o644));
        assert!(write(dir, &p).unwrap());
        assert!(fs::symlink_metadata(dir.join("sub")).is_err());
        assert_eq!(fs::read_to_string(dir.join("c")).unwrap(), "3");
        let names: BTreeSet<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("..2"))
            .collect();
        assert_eq!(
            names,
            ["..data", "a", "c"].iter().map(|s| s.to_string()).collect()
        );
        // An invalid path fails before touching anything.
        let mut bad = p.clone();
        bad.insert("../escape".into(), file("x", 0o644));
        assert!(write(dir, &bad).is_err());
        assert_eq!(fs::read_to_string(dir.join("c")).unwrap(), "3");
    }
}
