//! `hostPath` (`pkg/volume/hostpath`): a path of the node, given to the runtime as is, after the
//! check its `type` asks for. `DirectoryOrCreate` creates a missing directory (0755),
//! `FileOrCreate` a missing file (0644, in an existing directory); the other types only check,
//! failing with the kubelet's `hostPath type check failed: <path> is not a <kind>`.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;

use k8s_openapi::api::core::v1::HostPathVolumeSource;

use super::{Mounted, SetupError, VolumeKind};

/// The hostPath types the API knows.
pub const TYPES: &[&str] = &[
    "",
    "DirectoryOrCreate",
    "Directory",
    "FileOrCreate",
    "File",
    "Socket",
    "CharDevice",
    "BlockDevice",
];

fn type_check_failed(path: &str, expected: &'static str) -> SetupError {
    SetupError::HostPathType {
        path: path.to_string(),
        expected,
    }
}

pub fn setup(src: &HostPathVolumeSource) -> Result<Mounted, SetupError> {
    check(src)?;
    Ok(Mounted {
        host_path: PathBuf::from(&src.path),
        read_only: false,
        kind: VolumeKind::HostPath,
    })
}

/// The type check (`checkType`), creating what the `...OrCreate` types create.
pub fn check(src: &HostPathVolumeSource) -> Result<(), SetupError> {
    let path = src.path.as_str();
    let t = src.type_.as_deref().unwrap_or("");
    let meta = || fs::metadata(path);
    match t {
        "" => Ok(()),
        "DirectoryOrCreate" => {
            if fs::metadata(path).is_err() {
                fs::create_dir_all(path)
                    .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(0o755)))
                    .map_err(SetupError::io("cannot create directory", path.as_ref()))?;
            }
            match meta() {
                Ok(m) if m.is_dir() => Ok(()),
                _ => Err(type_check_failed(path, "directory")),
            }
        }
        "Directory" => match meta() {
            Ok(m) if m.is_dir() => Ok(()),
            _ => Err(type_check_failed(path, "directory")),
        },
        "FileOrCreate" => {
            if fs::metadata(path).is_err() {
                match fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(path)
                {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(SetupError::io("cannot create file", path.as_ref())(e)),
                }
            }
            match meta() {
                Ok(m) if m.is_file() => Ok(()),
                _ => Err(type_check_failed(path, "file")),
            }
        }
        "File" => match meta() {
            Ok(m) if m.is_file() => Ok(()),
            _ => Err(type_check_failed(path, "file")),
        },
        "Socket" => match meta() {
            Ok(m) if m.file_type().is_socket() => Ok(()),
            _ => Err(type_check_failed(path, "socket file")),
        },
        "CharDevice" => match meta() {
            Ok(m) if m.file_type().is_char_device() => Ok(()),
            _ => Err(type_check_failed(path, "character device")),
        },
        "BlockDevice" => match meta() {
            Ok(m) if m.file_type().is_block_device() => Ok(()),
            _ => Err(type_check_failed(path, "block device")),
        },
        other => Err(SetupError::Invalid {
            what: format!("hostPath type {other:?} is not one of {TYPES:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(path: &std::path::Path, t: &str) -> HostPathVolumeSource {
        HostPathVolumeSource {
            path: path.to_string_lossy().into_owned(),
            type_: Some(t.to_string()),
        }
    }

    #[test]
    fn types_check_and_create() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("dir");
        let file = d.path().join("file");
        let e = check(&src(&dir, "Directory")).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "hostPath type check failed: {} is not a directory",
                dir.display()
            )
        );
        check(&src(&dir, "DirectoryOrCreate")).unwrap();
        assert!(dir.is_dir());
        check(&src(&dir, "Directory")).unwrap();
        assert!(check(&src(&dir, "File")).is_err());
        check(&src(&file, "FileOrCreate")).unwrap();
        assert!(file.is_file());
        check(&src(&file, "File")).unwrap();
        assert_eq!(
            check(&src(&file, "Socket")).unwrap_err().to_string(),
            format!(
                "hostPath type check failed: {} is not a socket file",
                file.display()
            )
        );
        assert!(check(&src(&file, "CharDevice")).is_err());
        check(&src(std::path::Path::new("/dev/null"), "CharDevice")).unwrap();
        assert!(
            check(&src(std::path::Path::new("/dev/null"), "BlockDevice"))
                .unwrap_err()
                .to_string()
                .ends_with("is not a block device")
        );
        let sock = d.path().join("s.sock");
        let _l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        check(&src(&sock, "Socket")).unwrap();
        // FileOrCreate does not create missing parent directories.
        assert!(check(&src(&d.path().join("no/such/f"), "FileOrCreate")).is_err());
        check(&src(&d.path().join("anything"), "")).unwrap();
    }
}
