//! The mount syscalls the volume plugins need (tmpfs for memory-backed volumes, bind mounts for
//! subPaths, unmount) and the mount table (`/proc/self/mountinfo`) to know what is mounted where.
//! Parsing is a pure function over the table's text; the table's path is a parameter.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The mount table of the agent's own mount namespace.
pub const MOUNTINFO: &str = "/proc/self/mountinfo";

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Mounts a tmpfs on `target` with `size` bytes (none: the kernel's default of half the RAM) and
/// the root directory mode `mode`.
pub fn mount_tmpfs(target: &Path, size: Option<u64>, mode: u32) -> io::Result<()> {
    let t = cstr(target)?;
    let mut opts = format!("mode={mode:o}");
    if let Some(s) = size {
        opts.push_str(&format!(",size={s}"));
    }
    let data = CString::new(opts).expect("no NUL in mount options");
    let fstype = CString::new("tmpfs").expect("static");
    // SAFETY: every pointer is a valid NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            t.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Bind-mounts `source` (typically `/proc/self/fd/N`, so the kernel mounts exactly the object
/// that descriptor holds) on `target`.
pub fn bind_mount(source: &Path, target: &Path) -> io::Result<()> {
    let s = cstr(source)?;
    let t = cstr(target)?;
    let none = CString::new("none").expect("static");
    // SAFETY: valid NUL-terminated strings; a null data pointer is allowed for MS_BIND.
    let rc = unsafe {
        libc::mount(
            s.as_ptr(),
            t.as_ptr(),
            none.as_ptr(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Unmounts `target` without following a symlink there; a busy mount is detached lazily.
pub fn unmount(target: &Path) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(t.as_ptr(), libc::UMOUNT_NOFOLLOW) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EBUSY) {
        // SAFETY: as above.
        let rc = unsafe { libc::umount2(t.as_ptr(), libc::UMOUNT_NOFOLLOW | libc::MNT_DETACH) };
        if rc == 0 {
            return Ok(());
        }
        return Err(io::Error::last_os_error());
    }
    Err(e)
}

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
    pub options: String,
    pub super_options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let o = &b[i + 1..i + 4];
            if o.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = o.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/<pid>/mountinfo`. Malformed lines are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    let mut out = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < 10 || sep < 6 || fields.len() < sep + 4 {
            continue;
        }
        out.push(MountEntry {
            mount_point: PathBuf::from(unescape(fields[4])),
            options: fields[5].to_string(),
            fs_type: fields[sep + 1].to_string(),
            source: unescape(fields[sep + 2]),
            super_options: fields[sep + 3].to_string(),
        });
    }
    out
}

/// The mount table read from `mountinfo`.
pub fn mount_table(mountinfo: &Path) -> io::Result<Vec<MountEntry>> {
    Ok(parse_mountinfo(&std::fs::read_to_string(mountinfo)?))
}

/// Mount points at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_under(table: &[MountEntry], dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = table
        .iter()
        .map(|m| m.mount_point.clone())
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// The entry mounted last exactly at `path`, if any.
pub fn mount_at<'a>(table: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    table.iter().rev().find(|m| m.mount_point == path)
}

/// Unmounts every mount at or below `dir` (deepest first, stacked mounts until none is left).
pub fn unmount_all_under(mountinfo: &Path, dir: &Path) -> io::Result<()> {
    for _ in 0..16 {
        let table = mount_table(mountinfo)?;
        let mounts = mounts_under(&table, dir);
        if mounts.is_empty() {
            return Ok(());
        }
        for m in mounts {
            match unmount(&m) {
                Ok(()) => {}
                // Gone meanwhile, or a parent's unmount took it.
                Err(e)
                    if e.raw_os_error() == Some(libc::EINVAL)
                        || e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot unmount {}: {e}", m.display()),
                    ))
                }
            }
        }
    }
    Err(io::Error::other(format!(
        "mounts below {} keep reappearing",
        dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:25 / /var/lib/kubelet/pods/u/volumes/kubernetes.io~secret/s rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=1024k,mode=755
31 22 8:1 /data /var/lib/kubelet/pods/u/volume-subpaths/v/c/0 rw,relatime shared:1 - ext4 /dev/sda1 rw
32 22 0:26 / /mnt/with\\040space rw - tmpfs none rw
bad line
";

    #[test]
    fn mountinfo_parses_and_orders_for_unmount() {
        let t = parse_mountinfo(TABLE);
        assert_eq!(t.len(), 4);
        assert_eq!(t[1].fs_type, "tmpfs");
        assert!(t[1].super_options.contains("size=1024k"));
        assert_eq!(t[3].mount_point, PathBuf::from("/mnt/with space"));
        let under = mounts_under(&t, Path::new("/var/lib/kubelet/pods/u"));
        assert_eq!(under.len(), 2);
        assert!(under[0].ends_with("0"), "deepest first: {under:?}");
        assert!(mount_at(&t, Path::new("/mnt/with space")).is_some());
        assert!(mounts_under(&t, Path::new("/var/lib/kubelet/pods/other")).is_empty());
    }
}
