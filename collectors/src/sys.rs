//! Thin, safe wrappers over the few syscalls the collectors need that `std` does not offer:
//! `pread` into a reusable buffer, `fstatfs`, `statvfs`, `getrusage`, `RLIMIT_NOFILE`, and
//! counting a process's descriptors with `getdents64`/`readlinkat` into reused buffers.
//!
//! Every `unsafe` block of the crate lives here, each with its `SAFETY:` argument.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Filesystem magic numbers (`statfs.f_type`) of the pseudo filesystems whose files the kernel
/// regenerates on every read at offset 0 (seq_file / kernfs backed).
pub mod magic {
    /// cgroup v1 (`cgroup`).
    pub const CGROUP: i64 = 0x0027_e0eb;
    /// cgroup v2 (`cgroup2`).
    pub const CGROUP2: i64 = 0x6367_7270;
    /// procfs.
    pub const PROC: i64 = 0x9fa0;
    /// sysfs.
    pub const SYSFS: i64 = 0x6265_6572;
}

/// Whether an I/O error means "the object went away while we looked at it": the cgroup was
/// removed (`ENODEV` on a kept fd, `ENOENT` on open) or the process exited (`ESRCH`).
pub fn is_vanished(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH)
    ) || err.kind() == io::ErrorKind::NotFound
}

/// `pread(fd, buf, len, offset)`: one positioned read.
pub fn pread(fd: BorrowedFd<'_>, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: `buf` is a valid, writable region of `buf.len()` bytes for the duration of the
    // call and `fd` is an open descriptor borrowed for that duration.
    let n = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            offset as libc::off_t,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Reads a whole small file from offset 0 into `buf` by `pread`; returns its length `n`,
/// the content being `buf[..n]`.
///
/// `buf` is used at its full length and is left at that length, so repeated reads neither
/// allocate nor clear it (zero-filling a 16 KiB buffer per read would cost more than the read).
/// A read shorter than the space offered is the end of file (kernel seq_files and regular files
/// both fill the buffer when they can); when the buffer fills up it is doubled and the file is
/// read again from offset 0, so the result is one consistent snapshot.
pub fn pread_all(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.len() < 4096 {
        buf.resize(buf.capacity().max(4096), 0);
    }
    loop {
        let n = pread(fd, &mut buf[..], 0)?;
        if n < buf.len() {
            return Ok(n);
        }
        let len = buf.len();
        buf.resize(len * 2, 0);
    }
}

/// `fstatfs(fd).f_type`: which filesystem an open file lives on.
pub fn fs_type(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: `st` points to writable memory large enough for a `statfs`; `fd` is open.
    let rc = unsafe { libc::fstatfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fstatfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64)
}

/// Capacity and usage of the filesystem holding `path` (`statvfs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfsUsage {
    /// Total bytes.
    pub capacity: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
    /// Bytes in use (`capacity - free`).
    pub usage: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
}

/// `statvfs(path)`.
// The casts are no-ops on 64-bit Linux but not on every target libc supports.
#[allow(clippy::unnecessary_cast)]
pub fn statvfs(path: &Path) -> io::Result<VfsUsage> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated string alive for the call; `st` is writable memory of
    // the right size.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as u64;
    let capacity = st.f_blocks as u64 * frsize;
    let free = st.f_bfree as u64 * frsize;
    Ok(VfsUsage {
        capacity,
        available: st.f_bavail as u64 * frsize,
        usage: capacity.saturating_sub(free),
        inodes: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
    })
}

/// User plus system CPU time consumed so far by this whole process (all threads).
pub fn process_cpu_time() -> Duration {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is writable memory of the right size; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage returned 0, so it initialised the struct.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Raises the soft `RLIMIT_NOFILE` to at least `wanted` (capped by the hard limit).
/// Returns the soft limit in force afterwards.
#[allow(clippy::unnecessary_cast)]
pub fn raise_nofile_limit(wanted: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let cur = lim.rlim_cur as u64;
    if cur >= wanted {
        return Ok(cur);
    }
    let target = (wanted as libc::rlim_t).min(lim.rlim_max);
    if target as u64 <= cur {
        return Ok(cur);
    }
    lim.rlim_cur = target;
    // SAFETY: `lim` is a valid rlimit with cur <= max.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(target as u64)
}

/// Descriptors of one process: `(entries of <proc_root>/<pid>/fd, those linking to a socket)`,
/// as cAdvisor counts them (a link `socket:[inode]` is a socket). `path` and `dents` are
/// reused between calls (nothing is allocated once they have grown). An error means the
/// process is gone (`ENOENT`) or unreadable; the caller skips it, as cAdvisor does.
pub fn count_fds(
    proc_root: &Path,
    pid: u32,
    path: &mut Vec<u8>,
    dents: &mut Vec<u8>,
) -> io::Result<(u64, u64)> {
    use std::io::Write as _;
    use std::os::fd::{FromRawFd, OwnedFd};
    path.clear();
    path.extend_from_slice(proc_root.as_os_str().as_bytes());
    // Writing into a Vec cannot fail.
    let _ = write!(path, "/{pid}/fd\0");
    // SAFETY: `path` is NUL-terminated and lives across the call.
    let raw = unsafe {
        libc::open(
            path.as_ptr().cast(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor we just opened and own; OwnedFd closes it once.
    let dir = unsafe { OwnedFd::from_raw_fd(raw) };
    if dents.len() < 8192 {
        dents.resize(8192, 0);
    }
    let (mut fds, mut sockets) = (0u64, 0u64);
    let mut link = [0u8; 16];
    loop {
        // SAFETY: `dents` is a writable buffer of `dents.len()` bytes and `dir` an open
        // directory descriptor, both valid for the call.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                dents.as_mut_ptr(),
                dents.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            break;
        }
        let filled = &dents[..n as usize];
        let mut off = 0;
        // linux_dirent64: d_ino u64, d_off i64, d_reclen u16, d_type u8, d_name (NUL ended).
        while off + 19 < filled.len() {
            let reclen = u16::from_ne_bytes([filled[off + 16], filled[off + 17]]) as usize;
            if reclen == 0 || off + reclen > filled.len() {
                break;
            }
            let record = &filled[off + 19..off + reclen];
            let Some(end) = record.iter().position(|&c| c == 0) else {
                off += reclen;
                continue;
            };
            let name = &record[..end];
            if name != b"." && name != b".." {
                fds += 1;
                // SAFETY: `record` holds the name and its NUL (found above), and `link` is a
                // writable buffer of `link.len()` bytes.
                let len = unsafe {
                    libc::readlinkat(
                        dir.as_raw_fd(),
                        record.as_ptr().cast(),
                        link.as_mut_ptr().cast(),
                        link.len(),
                    )
                };
                if len > 0 && link[..len as usize].starts_with(b"socket:") {
                    sockets += 1;
                }
            }
            off += reclen;
        }
    }
    Ok((fds, sockets))
}

/// Number of descriptors this process has open (entries of `<proc_root>/self/fd`).
pub fn open_fd_count(proc_root: &Path) -> usize {
    std::fs::read_dir(proc_root.join("self/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits up to `timeout` for `fd` to become readable. `Ok(true)` if it is.
pub fn poll_readable(fd: std::os::fd::RawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `pfd` is one valid pollfd and we pass a count of 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    match rc {
        n if n > 0 => Ok(pfd.revents & libc::POLLIN != 0),
        0 => Ok(false),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// Wall-clock time now, in nanoseconds since the UNIX epoch.
pub fn now_unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    #[test]
    fn counts_this_process_descriptors_and_sockets() {
        let before = count_fds(
            Path::new("/proc"),
            std::process::id(),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
        let (_a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let _f = std::fs::File::open("/proc/self/stat").unwrap();
        let after = count_fds(
            Path::new("/proc"),
            std::process::id(),
            &mut Vec::new(),
            &mut Vec::new(),
        )
        .unwrap();
        // Other test threads open and close descriptors too: at least ours are seen.
        assert!(after.1 >= 2, "{before:?} -> {after:?}");
        assert!(after.0 >= 3 && after.0 >= after.1, "{after:?}");
        let gone = count_fds(
            Path::new("/proc"),
            u32::MAX - 1,
            &mut Vec::new(),
            &mut Vec::new(),
        );
        assert!(gone.is_err_and(|e| is_vanished(&e)));
    }

    #[test]
    fn pread_all_reads_whole_file_and_grows() {
        let mut f = tempfile::tempfile().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let mut buf = Vec::new();
        let n = pread_all(f.as_fd(), &mut buf).unwrap();
        assert_eq!(n, data.len());
        assert_eq!(&buf[..n], &data[..]);
        // Re-reading reuses the buffer and sees rewritten content at offset 0.
        f.write_all(b"tail").unwrap();
        let cap = buf.capacity();
        let n = pread_all(f.as_fd(), &mut buf).unwrap();
        assert_eq!(n, data.len() + 4);
        assert_eq!(&buf[data.len()..n], b"tail");
        assert_eq!(buf.capacity(), cap, "no reallocation");
    }

    #[test]
    fn vanished_errors_are_classified() {
        assert!(is_vanished(&io::Error::from_raw_os_error(libc::ENODEV)));
        assert!(is_vanished(&io::Error::from_raw_os_error(libc::ESRCH)));
        assert!(is_vanished(&io::Error::from_raw_os_error(libc::ENOENT)));
        assert!(!is_vanished(&io::Error::from_raw_os_error(libc::EACCES)));
    }

    #[test]
    fn fs_type_of_proc_is_procfs() {
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(fs_type(f.as_fd()).unwrap(), magic::PROC);
    }

    #[test]
    fn statvfs_of_root_is_consistent() {
        let u = statvfs(Path::new("/")).unwrap();
        assert!(u.capacity > 0);
        assert!(u.usage <= u.capacity);
        assert!(u.available <= u.capacity);
    }

    #[test]
    fn raising_nofile_never_lowers_it() {
        let before = raise_nofile_limit(0).unwrap();
        let after = raise_nofile_limit(before + 1).unwrap();
        assert!(after >= before);
    }
}
