//! `emptyDir` (`pkg/volume/emptydir`): a directory under the pod directory that lives as long
//! as the pod. On disk by default (its `sizeLimit` is enforced by the eviction manager, which
//! measures it), or a tmpfs for `medium: Memory`, sized by `sizeLimit` or else by the pod's
//! memory limit. Mode 0777, as the kubelet leaves it, so any user in the pod can write.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use k8s_openapi::api::core::v1::{EmptyDirVolumeSource, Pod};

use super::{mount, Mounted, SetupContext, SetupError, VolumeKind};
use crate::resource::parse_quantity;

pub const PLUGIN_DIR: &str = "kubernetes.io~empty-dir";

/// The tmpfs size of a memory-backed emptyDir: its `sizeLimit`, else the sum of the pod's
/// container memory limits when every container sets one, else none (the kernel's default).
pub fn memory_size(pod: &Pod, src: &EmptyDirVolumeSource) -> Result<Option<u64>, SetupError> {
    if let Some(q) = &src.size_limit {
        let v = parse_quantity(&q.0).map_err(|e| SetupError::Invalid {
            what: format!("sizeLimit {:?}: {e}", q.0),
        })?;
        let bytes = v.value();
        if bytes > 0 {
            return Ok(Some(bytes as u64));
        }
    }
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    let mut total: u64 = 0;
    for c in containers {
        let limit = c
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("memory"))
            .and_then(|q| parse_quantity(&q.0).ok())
            .map(|q| q.value());
        match limit {
            Some(l) if l > 0 => total += l as u64,
            _ => return Ok(None),
        }
    }
    Ok((total > 0).then_some(total))
}

pub fn setup(
    ctx: &SetupContext<'_>,
    name: &str,
    src: &EmptyDirVolumeSource,
) -> Result<Mounted, SetupError> {
    let dir = ctx.volume_dir(PLUGIN_DIR, name);
    let memory = src.medium.as_deref() == Some("Memory");
    match src.medium.as_deref() {
        None | Some("") | Some("Memory") => {}
        Some(other) => {
            return Err(SetupError::Invalid {
                what: format!("emptyDir medium {other:?} is not supported on this node"),
            })
        }
    }
    let created = !dir.exists();
    fs::create_dir_all(&dir).map_err(SetupError::io("cannot create", &dir))?;
    if memory && !ctx.is_mounted(&dir) {
        let size = memory_size(ctx.pod, src)?;
        if let Err(e) = mount::mount_tmpfs(&dir, size, 0o777) {
            if created {
                let _ = fs::remove_dir(&dir);
            }
            return Err(SetupError::io("cannot mount tmpfs on", &dir)(e));
        }
    }
    set_mode(&dir, ctx.fs_group())?;
    Ok(Mounted {
        host_path: dir,
        read_only: false,
        kind: VolumeKind::EmptyDir,
    })
}

/// 0777, or with an fsGroup: the group owns it, with setgid so new files inherit the group.
fn set_mode(dir: &Path, fs_group: Option<u32>) -> Result<(), SetupError> {
    let mut mode = 0o777;
    if let Some(g) = fs_group {
        std::os::unix::fs::chown(dir, None, Some(g))
            .map_err(SetupError::io("cannot chown", dir))?;
        mode |= 0o2000;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .map_err(SetupError::io("cannot chmod", dir))
}
