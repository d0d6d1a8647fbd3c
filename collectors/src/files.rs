//! Kept-open kernel files re-read with `pread` at offset 0.
//!
//! Opening a cgroup or procfs file costs more CPU than reading it, so the sampler opens each
//! file once and re-reads it every pass. That is only correct where the kernel regenerates the
//! content on a read at offset 0, which is so for seq_file/kernfs files: cgroup v1 and v2
//! interface files, procfs and sysfs. [`KeptFile::open`] checks the filesystem of every file
//! (`fstatfs`) and does a first `pread`; any other filesystem (a fixture tree on tmpfs, a file
//! that may be replaced by rename) or a file that refuses `pread` falls back to open/read/close
//! on every read. The global [`kept_fd_count`] tracks descriptors held this way.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::sys;

static KEPT_FDS: AtomicUsize = AtomicUsize::new(0);

/// Descriptors currently kept open by [`KeptFile`]s in this process.
pub fn kept_fd_count() -> usize {
    KEPT_FDS.load(Ordering::Relaxed)
}

/// Kernel memory one kept descriptor costs (struct file, kernfs/seq_file state), measured on
/// this project's reference machine: about 4.4 KiB, charged to the collector's memory cgroup.
pub const KERNEL_BYTES_PER_FD: usize = 4506;

/// How a [`KeptFile`] is re-read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Descriptor kept open, `pread` at offset 0 every time.
    Pread,
    /// Opened, read and closed every time.
    Reopen,
}

/// Where kernel files are known to refresh on `pread(fd, .., 0)`: seq_file/kernfs files of
/// cgroup v1/v2, procfs and sysfs, except cgroup v1's `cgroup.procs` and `tasks`, whose pid
/// list is cached per open file and kept for a second after each read (the kernel's
/// `CGROUP_PIDLIST_DESTROY_DELAY`): re-reading them through a kept descriptor within that
/// second returns the old list, so they are reopened every time (verified by the
/// `pread_at_offset_zero_refreshes_kept_files` integration test).
fn refreshes_on_pread(fs_magic: i64, path: &Path) -> bool {
    match fs_magic {
        sys::magic::CGROUP => !path
            .file_name()
            .is_some_and(|n| n == "cgroup.procs" || n == "tasks"),
        sys::magic::CGROUP2 | sys::magic::PROC | sys::magic::SYSFS => true,
        _ => false,
    }
}

/// One kernel file the sampler reads every pass.
#[derive(Debug)]
pub struct KeptFile {
    path: PathBuf,
    file: Option<File>,
    mode: ReadMode,
}

impl KeptFile {
    /// Opens `path`, choosing the read mode. `Ok(None)` if it does not exist (a controller or a
    /// kernel feature this cgroup lacks). `keep` = false forces [`ReadMode::Reopen`].
    pub fn open(path: PathBuf, keep: bool, buf: &mut Vec<u8>) -> io::Result<Option<KeptFile>> {
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut mode = ReadMode::Reopen;
        if keep && refreshes_on_pread(sys::fs_type(file.as_fd())?, &path) {
            match sys::pread_all(file.as_fd(), buf) {
                Ok(_) => mode = ReadMode::Pread,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ESPIPE | libc::EINVAL)) => {}
                // EOPNOTSUPP and friends: the file exists but cannot be read (e.g. PSI
                // disabled at boot). Report it: the caller leaves the metric out.
                Err(e) => return Err(e),
            }
        }
        let file = match mode {
            ReadMode::Pread => {
                KEPT_FDS.fetch_add(1, Ordering::Relaxed);
                Some(file)
            }
            ReadMode::Reopen => None,
        };
        Ok(Some(KeptFile { path, file, mode }))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How it is re-read.
    pub fn mode(&self) -> ReadMode {
        self.mode
    }

    /// Reads the whole file into `buf` (its capacity is reused) and returns the content.
    pub fn read<'b>(&mut self, buf: &'b mut Vec<u8>) -> io::Result<&'b [u8]> {
        match &self.file {
            Some(f) => {
                let n = sys::pread_all(f.as_fd(), buf)?;
                Ok(&buf[..n])
            }
            None => {
                buf.clear();
                File::open(&self.path)?.read_to_end(buf)?;
                Ok(&buf[..])
            }
        }
    }
}

impl Drop for KeptFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            KEPT_FDS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Opens and reads a file once (for specs and machine info, which are not sampled).
pub fn read_once(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    File::open(path)?.read_to_end(buf)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn procfs_files_are_kept_and_refresh() {
        let mut buf = Vec::new();
        let before = kept_fd_count();
        let mut f = KeptFile::open("/proc/self/stat".into(), true, &mut buf)
            .unwrap()
            .unwrap();
        assert_eq!(f.mode(), ReadMode::Pread);
        assert_eq!(kept_fd_count(), before + 1);
        // utime/stime of this process grow as we burn CPU: the re-read sees new content.
        let first = f.read(&mut buf).unwrap().to_vec();
        let mut x = 0u64;
        let mut n = 0;
        let changed = loop {
            for i in 0..1_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            n += 1;
            if f.read(&mut buf).unwrap() != &first[..] || n > 10_000 {
                break f.read(&mut buf).unwrap() != &first[..];
            }
        };
        assert!(changed, "pread at 0 did not refresh /proc/self/stat ({x})");
        drop(f);
        assert_eq!(kept_fd_count(), before);
    }

    #[test]
    fn regular_files_fall_back_to_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory.usage_in_bytes");
        std::fs::write(&p, "1\n").unwrap();
        let mut buf = Vec::new();
        let mut f = KeptFile::open(p.clone(), true, &mut buf).unwrap().unwrap();
        assert_eq!(f.mode(), ReadMode::Reopen);
        // Replaced by rename: a kept descriptor would still see "1".
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "2\n").unwrap();
        std::fs::rename(&tmp, &p).unwrap();
        assert_eq!(f.read(&mut buf).unwrap(), b"2\n");
        std::fs::remove_file(&p).unwrap();
        assert!(sys::is_vanished(&f.read(&mut buf).unwrap_err()));
    }

    #[test]
    fn missing_files_are_none() {
        let mut buf = Vec::new();
        assert!(KeptFile::open("/nonexistent/x".into(), true, &mut buf)
            .unwrap()
            .is_none());
    }
}
