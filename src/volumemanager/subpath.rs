//! `volumeMounts[].subPath` without symlink escapes (`pkg/volume/util/subpath`).
//!
//! A container could plant a symlink in a writable volume (`data -> /etc`) and ask a later
//! container to mount `subPath: data`; mounting the path naively would bind the host's `/etc`.
//! So the subPath is resolved, checked to stay inside the volume, then opened one element at a
//! time from the volume root with `O_NOFOLLOW` (a symlink swapped in meanwhile fails the open),
//! and the descriptor itself — `/proc/self/fd/N` — is bind-mounted to a private target under the
//! pod directory, which is what the container gets. Missing directories of the subPath are
//! created the same way, element by element with `mkdirat` under verified descriptors.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::mount;

/// A subPath that cannot be mounted; each names the subPath and the volume.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subpath {subpath:?} must be a relative path without '..' elements")]
    Invalid { subpath: String },
    #[error("subpath {subpath:?} not within volume path {volume:?}")]
    Escapes { subpath: String, volume: PathBuf },
    #[error("subpath {subpath:?} of volume path {volume:?}: {what}: {source}")]
    Io {
        subpath: String,
        volume: PathBuf,
        what: &'static str,
        #[source]
        source: io::Error,
    },
}

fn cstr(s: &std::ffi::OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn openat(dir: &OwnedFd, name: &std::ffi::OsStr, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: `dir` is an open descriptor and `c` a valid NUL-terminated name.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: a valid NUL-terminated path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open (O_PATH descriptors support fstat) and `st` a valid out-pointer.
    let rc = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The elements of a relative subPath, or an error for absolute paths and `..`.
fn elements(subpath: &str) -> Result<Vec<&std::ffi::OsStr>, SubPathError> {
    let invalid = || SubPathError::Invalid {
        subpath: subpath.to_string(),
    };
    let mut out = Vec::new();
    for c in Path::new(subpath).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(invalid()),
        }
    }
    if out.is_empty() {
        return Err(invalid());
    }
    Ok(out)
}

/// Opens `volume/subpath` safely and returns the descriptor (O_PATH) and whether it is a
/// directory. Creates missing directories when `create` is set (the kubelet creates a missing
/// subPath as a directory).
pub fn safe_open(
    volume: &Path,
    subpath: &str,
    create: bool,
) -> Result<(OwnedFd, bool), SubPathError> {
    let io_e = |what: &'static str| {
        let volume = volume.to_path_buf();
        let subpath = subpath.to_string();
        move |source| SubPathError::Io {
            subpath,
            volume,
            what,
            source,
        }
    };
    let escapes = || SubPathError::Escapes {
        subpath: subpath.to_string(),
        volume: volume.to_path_buf(),
    };
    elements(subpath)?;
    let base = std::fs::canonicalize(volume).map_err(io_e("cannot resolve the volume path"))?;
    // Resolve what exists of the subPath (symlinks inside the volume are fine as long as the
    // result stays inside); the rest is created below.
    let full = base.join(subpath);
    let mut existing = full.clone();
    let mut missing: Vec<std::ffi::OsString> = Vec::new();
    let resolved_existing = loop {
        match std::fs::canonicalize(&existing) {
            Ok(r) => break r,
            Err(e) if e.kind() == io::ErrorKind::NotFound && existing != base => {
                // A dangling symlink counts as existing: refuse rather than create through it.
                if std::fs::symlink_metadata(&existing).is_ok() {
                    return Err(escapes());
                }
                missing.push(existing.file_name().unwrap_or_default().to_os_string());
                existing = existing
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or(base.clone());
            }
            Err(e) => return Err(io_e("cannot resolve the subpath")(e)),
        }
    };
    if !resolved_existing.starts_with(&base) {
        return Err(escapes());
    }
    if !missing.is_empty() && !create {
        return Err(io_e("cannot open")(io::Error::from(
            io::ErrorKind::NotFound,
        )));
    }
    // Walk from the volume root with O_NOFOLLOW at every step.
    let rel = resolved_existing
        .strip_prefix(&base)
        .map_err(|_| escapes())?
        .to_path_buf();
    let mut fd = open_dir(&base).map_err(io_e("cannot open the volume"))?;
    let mut is_dir = true;
    let steps: Vec<std::ffi::OsString> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    for (i, name) in steps.iter().enumerate() {
        let next = openat(&fd, name, libc::O_PATH | libc::O_NOFOLLOW)
            .map_err(io_e("cannot open an element"))?;
        let st = fstat(&next).map_err(io_e("cannot stat an element"))?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFLNK {
            // Replaced by a symlink after resolution.
            return Err(escapes());
        }
        is_dir = kind == libc::S_IFDIR;
        if !is_dir && (i + 1 < steps.len() || !missing.is_empty()) {
            return Err(io_e("cannot descend")(io::Error::from_raw_os_error(
                libc::ENOTDIR,
            )));
        }
        fd = next;
    }
    for name in missing.iter().rev() {
        let c = cstr(name).map_err(io_e("bad name"))?;
        // SAFETY: `fd` is an open directory descriptor and `c` a valid name.
        let rc = unsafe { libc::mkdirat(fd.as_raw_fd(), c.as_ptr(), 0o755) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::AlreadyExists {
                return Err(io_e("cannot create a directory")(e));
            }
        }
        let next = openat(
            &fd,
            name,
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_DIRECTORY,
        )
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::ENOTDIR) {
                escapes()
            } else {
                io_e("cannot open a created directory")(e)
            }
        })?;
        fd = next;
        is_dir = true;
    }
    Ok((fd, is_dir))
}

/// Prepares `volume/subpath` for a container: opens it safely and bind-mounts it on `target`
/// (created as a directory or an empty file to match). A target already mounted is reused.
/// Returns the path to give the runtime.
pub fn prepare(
    volume: &Path,
    subpath: &str,
    target: &Path,
    mountinfo: &Path,
) -> Result<PathBuf, SubPathError> {
    let io_e = |what: &'static str| {
        let volume = volume.to_path_buf();
        let subpath = subpath.to_string();
        move |source| SubPathError::Io {
            subpath,
            volume,
            what,
            source,
        }
    };
    let (fd, is_dir) = safe_open(volume, subpath, true)?;
    if let Ok(table) = mount::mount_table(mountinfo) {
        if mount::mount_at(&table, target).is_some() {
            return Ok(target.to_path_buf());
        }
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(io_e("cannot create the target's directory"))?;
    }
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() == is_dir && !m.file_type().is_symlink() => {}
        Ok(_) => {
            let _ = std::fs::remove_file(target).or_else(|_| std::fs::remove_dir(target));
            create_target(target, is_dir).map_err(io_e("cannot create the mount target"))?;
        }
        Err(_) => create_target(target, is_dir).map_err(io_e("cannot create the mount target"))?,
    }
    let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    if let Err(e) = mount::bind_mount(&source, target) {
        let _ = std::fs::remove_file(target).or_else(|_| std::fs::remove_dir(target));
        return Err(io_e("cannot bind-mount the subpath")(e));
    }
    drop(fd);
    Ok(target.to_path_buf())
}

fn create_target(target: &Path, is_dir: bool) -> io::Result<()> {
    if is_dir {
        std::fs::create_dir(target)
    } else {
        File::create(target).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_refused_and_inside_links_allowed() {
        let d = tempfile::tempdir().unwrap();
        let vol = d.path().join("vol");
        let outside = d.path().join("outside");
        std::fs::create_dir_all(vol.join("real/deeper")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, vol.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../outside", vol.join("real/rel-evil")).unwrap();
        std::os::unix::fs::symlink("real", vol.join("inside")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/x", vol.join("dangling")).unwrap();
        std::fs::write(vol.join("real/f"), "x").unwrap();

        for sub in [
            "evil",
            "evil/new",
            "real/rel-evil",
            "dangling",
            "dangling/y",
        ] {
            let e = safe_open(&vol, sub, true).unwrap_err();
            assert!(matches!(e, SubPathError::Escapes { .. }), "{sub}: {e}");
            assert!(e.to_string().contains("not within volume path"), "{e}");
        }
        assert!(!outside.join("new").exists(), "nothing created outside");
        for sub in ["/abs", "../x", "a/../../b", ""] {
            assert!(matches!(
                safe_open(&vol, sub, true).unwrap_err(),
                SubPathError::Invalid { .. }
            ));
        }
        let (_, dir) = safe_open(&vol, "inside/deeper", false).unwrap();
        assert!(dir);
        let (_, dir) = safe_open(&vol, "real/f", false).unwrap();
        assert!(!dir);
        let (_, dir) = safe_open(&vol, "made/on/demand", true).unwrap();
        assert!(dir && vol.join("made/on/demand").is_dir());
        assert!(safe_open(&vol, "real/f/under-a-file", true).is_err());
    }
}
