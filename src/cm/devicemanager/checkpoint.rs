//! The device manager's checkpoint, `<root-dir>/device-plugins/kubelet_internal_checkpoint`:
//! every container's devices with the plugin's Allocate answer, and each resource's registered
//! devices, in the kubelet's JSON layout (`checkpoint.go`, v2 with NUMA-keyed device IDs):
//!
//! ```json
//! {"Data":{"PodDeviceEntries":[{"PodUID":"…","ContainerName":"main",
//!   "ResourceName":"example.com/widget","DeviceIDs":{"-1":["w0","w1"]},
//!   "AllocResp":"<base64 protobuf ContainerAllocateResponse>"}],
//!   "RegisteredDevices":{"example.com/widget":["w0","w1","w2","w3"]}},"Checksum":123}
//! ```
//!
//! The checksum is FNV-1a (32 bit) as the kubelet's, but over the JSON of `Data`: the Go kubelet
//! hashes a Go-syntax dump of its structs, which only Go can reproduce. So a checkpoint is
//! restored only if kubelet-rs wrote it; a corrupt or foreign one is reported and ignored, as
//! the kubelet ignores a checkpoint whose checksum fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use prost::Message;
use serde::{Deserialize, Serialize};

use super::allocator::{Entry, PodDevices};

/// The checkpoint's file name in the device-plugins directory.
pub const FILE_NAME: &str = "kubelet_internal_checkpoint";
/// The NUMA key of devices without topology.
const NO_NUMA: &str = "-1";

/// Failure to read or write the checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("failed to read device checkpoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write device checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("device checkpoint {path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("device checkpoint {path} is corrupt: checksum {found} does not match {expected}")]
    Checksum {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("device checkpoint {path}: entry for pod {pod} container {container}: {what}")]
    Entry {
        path: PathBuf,
        pod: String,
        container: String,
        what: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct File {
    #[serde(rename = "Data")]
    data: Data,
    #[serde(rename = "Checksum")]
    checksum: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Data {
    #[serde(rename = "PodDeviceEntries")]
    entries: Vec<PodDevicesEntry>,
    #[serde(rename = "RegisteredDevices")]
    registered: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PodDevicesEntry {
    #[serde(rename = "PodUID")]
    pod_uid: String,
    #[serde(rename = "ContainerName")]
    container: String,
    #[serde(rename = "ResourceName")]
    resource: String,
    #[serde(rename = "DeviceIDs")]
    device_ids: BTreeMap<String, Vec<String>>,
    #[serde(rename = "AllocResp", default, with = "b64")]
    alloc_resp: Vec<u8>,
}

mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// What the checkpoint holds.
#[derive(Debug, Default, PartialEq)]
pub struct Restored {
    pub pods: PodDevices,
    pub registered: BTreeMap<String, BTreeSet<String>>,
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

fn checksum(data: &Data) -> u32 {
    // Serializing plain structs and BTreeMaps cannot fail.
    fnv1a32(&serde_json::to_vec(data).unwrap_or_default())
}

/// The checkpoint's bytes.
pub fn encode(pods: &PodDevices, registered: &BTreeMap<String, BTreeSet<String>>) -> Vec<u8> {
    let entries = pods
        .entries
        .iter()
        .map(|((uid, container, resource), e)| PodDevicesEntry {
            pod_uid: uid.clone(),
            container: container.clone(),
            resource: resource.clone(),
            device_ids: [(NO_NUMA.to_string(), e.device_ids.iter().cloned().collect())].into(),
            alloc_resp: e
                .response
                .as_ref()
                .map(|r| r.encode_to_vec())
                .unwrap_or_default(),
        })
        .collect();
    let data = Data {
        entries,
        registered: registered
            .iter()
            .map(|(r, ids)| (r.clone(), ids.iter().cloned().collect()))
            .collect(),
    };
    let checksum = checksum(&data);
    serde_json::to_vec(&File { data, checksum }).unwrap_or_default()
}

/// Parses checkpoint bytes read from `path`.
pub fn decode(path: &Path, bytes: &[u8]) -> Result<Restored, CheckpointError> {
    let file: File = serde_json::from_slice(bytes).map_err(|source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let expected = checksum(&file.data);
    if expected != file.checksum {
        return Err(CheckpointError::Checksum {
            path: path.to_path_buf(),
            found: file.checksum,
            expected,
        });
    }
    let mut out = Restored::default();
    for e in file.data.entries {
        let response = if e.alloc_resp.is_empty() {
            None
        } else {
            Some(
                proto::deviceplugin::ContainerAllocateResponse::decode(e.alloc_resp.as_slice())
                    .map_err(|err| CheckpointError::Entry {
                        path: path.to_path_buf(),
                        pod: e.pod_uid.clone(),
                        container: e.container.clone(),
                        what: format!("AllocResp is not a ContainerAllocateResponse: {err}"),
                    })?,
            )
        };
        let device_ids = e.device_ids.into_values().flatten().collect();
        out.pods.insert(
            &e.pod_uid,
            &e.container,
            &e.resource,
            Entry {
                device_ids,
                response,
            },
        );
    }
    out.registered = file
        .data
        .registered
        .into_iter()
        .map(|(r, ids)| (r, ids.into_iter().collect()))
        .collect();
    Ok(out)
}

/// Reads the checkpoint in `dir`; `Ok(None)` when there is none.
pub fn read(dir: &Path) -> Result<Option<Restored>, CheckpointError> {
    let path = dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => decode(&path, &bytes).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointError::Read { path, source }),
    }
}

/// Writes the checkpoint in `dir` atomically (a temporary file renamed over it).
pub fn write(dir: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.tmp"));
    let err = |source| CheckpointError::Write {
        path: path.clone(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(err)?;
    std::fs::rename(&tmp, &path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::deviceplugin::{ContainerAllocateResponse, Mount};

    fn sample() -> (PodDevices, BTreeMap<String, BTreeSet<String>>) {
        let mut pods = PodDevices::default();
        pods.insert(
            "uid-1",
            "main",
            "example.com/widget",
            Entry {
                device_ids: ["w0".to_string(), "w2".to_string()].into(),
                response: Some(ContainerAllocateResponse {
                    envs: [("WIDGETS".to_string(), "w0,w2".to_string())].into(),
                    mounts: vec![Mount {
                        container_path: "/widgets".into(),
                        host_path: "/tmp/w".into(),
                        read_only: true,
                    }],
                    ..Default::default()
                }),
            },
        );
        pods.insert(
            "uid-2",
            "side",
            "example.com/widget",
            Entry {
                device_ids: ["w1".to_string()].into(),
                response: None,
            },
        );
        let registered = [(
            "example.com/widget".to_string(),
            ["w0", "w1", "w2", "w3"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        )]
        .into();
        (pods, registered)
    }

    #[test]
    fn round_trips_in_the_kubelets_layout() {
        let (pods, registered) = sample();
        let bytes = encode(&pods, &registered);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let entry = &json["Data"]["PodDeviceEntries"][0];
        assert_eq!(entry["PodUID"], "uid-1");
        assert_eq!(entry["ContainerName"], "main");
        assert_eq!(entry["ResourceName"], "example.com/widget");
        assert_eq!(entry["DeviceIDs"]["-1"], serde_json::json!(["w0", "w2"]));
        assert!(entry["AllocResp"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(
            json["Data"]["RegisteredDevices"]["example.com/widget"][3],
            "w3"
        );
        assert!(json["Checksum"].is_u64());

        let back = decode(Path::new("cp"), &bytes).unwrap();
        assert_eq!(back.pods, pods);
        assert_eq!(back.registered, registered);
    }

    #[test]
    fn a_changed_checkpoint_fails_its_checksum() {
        let (pods, registered) = sample();
        let text = String::from_utf8(encode(&pods, &registered)).unwrap();
        let tampered = text.replace("\"w3\"", "\"w9\"");
        let err = decode(Path::new("/x/cp"), tampered.as_bytes()).unwrap_err();
        assert!(matches!(err, CheckpointError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains("/x/cp"), "{err}");
        let err = decode(Path::new("/x/cp"), b"{not json").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
    }

    #[test]
    fn written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        let (pods, registered) = sample();
        write(dir.path(), &encode(&pods, &registered)).unwrap();
        let back = read(dir.path()).unwrap().unwrap();
        assert_eq!(back.pods, pods);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
