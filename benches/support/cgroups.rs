//! Cleanup shared by the benches that run kubelet-rs on the real containerd.

use std::path::Path;
use std::time::Duration;

/// Removes the cgroup tree `root` (with or without a leading `/`) in every hierarchy under
/// `/sys/fs/cgroup`, children first, retrying each `rmdir` briefly while its last tasks exit.
pub fn remove_cgroups(root: &str) {
    fn rm(dir: &Path) {
        if let Ok(es) = std::fs::read_dir(dir) {
            for e in es.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    rm(&e.path());
                }
            }
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    for ctl in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        rm(&ctl.path().join(root.trim_start_matches('/')));
    }
}
