//! Per-pod directories under `<root-dir>/pods/<uid>` and the files the kubelet manages in them:
//! the `etc-hosts` file mounted at `/etc/hosts` of non-host-network pods, and one termination
//! message file per container start, mounted at `terminationMessagePath`.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use proto::cri;

/// Most bytes of a termination message the kubelet reads.
pub const MAX_TERMINATION_MESSAGE: u64 = 4096;

/// A pod directory operation that failed, naming the path.
#[derive(Debug, thiserror::Error)]
#[error("{what} {path}: {source}")]
pub struct PodDirError {
    pub what: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

fn err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PodDirError + 'a {
    move |source| PodDirError {
        what,
        path: path.to_path_buf(),
        source,
    }
}

pub fn pod_dir(pods_root: &Path, uid: &str) -> PathBuf {
    pods_root.join(uid)
}

/// The content of the kubelet-managed hosts file.
pub fn etc_hosts_content(pod: &Pod, ips: &[String], hostname: &str) -> String {
    let mut s = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let fqdn = spec.and_then(|sp| sp.subdomain.as_ref()).map(|sub| {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
        format!("{hostname}.{sub}.{ns}.svc.cluster.local")
    });
    for ip in ips {
        match &fqdn {
            Some(f) => s.push_str(&format!("{ip}\t{f}\t{hostname}\n")),
            None => s.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    let aliases = spec.and_then(|sp| sp.host_aliases.as_ref());
    if let Some(aliases) = aliases.filter(|a| !a.is_empty()) {
        s.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases {
            s.push_str(&format!(
                "{}\t{}\n",
                a.ip,
                a.hostnames.clone().unwrap_or_default().join("\t")
            ));
        }
    }
    s
}

/// Writes `<pod dir>/etc-hosts`; returns the mount for it, or `None` for host-network pods,
/// which keep the node's.
pub fn ensure_etc_hosts(
    pods_root: &Path,
    pod: &Pod,
    ips: &[String],
    hostname: &str,
) -> Result<Option<cri::Mount>, PodDirError> {
    if crate::kuberuntime::sandbox::host_network(pod) {
        return Ok(None);
    }
    let uid = pod.metadata.uid.as_deref().unwrap_or("");
    let dir = pod_dir(pods_root, uid);
    fs::create_dir_all(&dir).map_err(err("cannot create pod directory", &dir))?;
    let path = dir.join("etc-hosts");
    let content = etc_hosts_content(pod, ips, hostname);
    if fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
        fs::write(&path, content).map_err(err("cannot write", &path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
            .map_err(err("cannot chmod", &path))?;
    }
    Ok(Some(cri::Mount {
        container_path: "/etc/hosts".into(),
        host_path: path.to_string_lossy().into_owned(),
        ..Default::default()
    }))
}

/// Creates a fresh termination-message file for one start of `container` and returns its mount.
pub fn termination_log_mount(
    pods_root: &Path,
    uid: &str,
    container: &Container,
    restart_count: i32,
) -> Result<Option<cri::Mount>, PodDirError> {
    let target = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    if target.is_empty() {
        return Ok(None);
    }
    let dir = pod_dir(pods_root, uid)
        .join("containers")
        .join(&container.name);
    fs::create_dir_all(&dir).map_err(err("cannot create container directory", &dir))?;
    let path = dir.join(format!("{restart_count:08x}"));
    fs::write(&path, b"").map_err(err("cannot create termination log", &path))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666))
        .map_err(err("cannot chmod", &path))?;
    Ok(Some(cri::Mount {
        container_path: target,
        host_path: path.to_string_lossy().into_owned(),
        ..Default::default()
    }))
}

/// Reads a container's termination message from the host side of its mount (at most 4 KiB).
pub fn read_termination_message(status: &cri::ContainerStatus) -> Option<String> {
    let target = status
        .annotations
        .get(crate::kuberuntime::labels::CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION)?;
    let mount = status.mounts.iter().find(|m| &m.container_path == target)?;
    let f = fs::File::open(&mount.host_path).ok()?;
    let mut buf = String::new();
    f.take(MAX_TERMINATION_MESSAGE)
        .read_to_string(&mut buf)
        .ok()?;
    (!buf.is_empty()).then_some(buf)
}

/// Removes the pod directory. A directory with something still mounted below it is left (and
/// reported) rather than emptied through the mount.
pub fn remove_pod_dir(pods_root: &Path, uid: &str) -> Result<(), PodDirError> {
    let dir = pod_dir(pods_root, uid);
    // Never delete through a mount (a subPath bind of a hostPath would lose host files).
    let table =
        crate::volumemanager::mount::mount_table(Path::new(crate::volumemanager::mount::MOUNTINFO))
            .map_err(|e| PodDirError {
                what: "cannot read the mount table before removing",
                path: dir.clone(),
                source: e,
            })?;
    let mounted = crate::volumemanager::mount::mounts_under(&table, &dir);
    if let Some(m) = mounted.first() {
        return Err(PodDirError {
            what: "refusing to remove: something is still mounted below",
            path: dir.clone(),
            source: io::Error::other(format!("{} is a mount point", m.display())),
        });
    }
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(PodDirError {
            what: "cannot remove pod directory",
            path: dir,
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hosts_file_names_the_pod() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"containers": [], "hostAliases": [{"ip": "10.1.1.1", "hostnames": ["a", "b"]}]}
        }))
        .unwrap();
        let c = etc_hosts_content(&pod, &["10.88.0.4".into()], "web");
        assert!(c.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(c.contains("10.88.0.4\tweb\n"));
        assert!(c.contains("10.1.1.1\ta\tb\n"));
        let dir = tempfile::tempdir().unwrap();
        let m = ensure_etc_hosts(dir.path(), &pod, &["10.88.0.4".into()], "web")
            .unwrap()
            .unwrap();
        assert_eq!(m.container_path, "/etc/hosts");
        assert_eq!(fs::read_to_string(&m.host_path).unwrap(), c);
        remove_pod_dir(dir.path(), "u").unwrap();
        assert!(!dir.path().join("u").exists());
    }

    #[test]
    fn termination_message_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let c: Container = serde_json::from_value(json!({"name": "c", "image": "i"})).unwrap();
        let m = termination_log_mount(dir.path(), "u", &c, 3)
            .unwrap()
            .unwrap();
        assert_eq!(m.container_path, "/dev/termination-log");
        fs::write(&m.host_path, "x".repeat(5000)).unwrap();
        let status = cri::ContainerStatus {
            annotations: [(
                crate::kuberuntime::labels::CONTAINER_TERMINATION_MESSAGE_PATH_ANNOTATION
                    .to_string(),
                "/dev/termination-log".to_string(),
            )]
            .into(),
            mounts: vec![m],
            ..Default::default()
        };
        assert_eq!(read_termination_message(&status).unwrap().len(), 4096);
    }
}
