//! `downwardAPI` volumes (`pkg/volume/downwardapi`): one file per item holding a pod field
//! (`metadata.name`, `metadata.labels`, ... in the kubelet's format, labels as `key="value"`
//! lines) or a container resource (`resourceFieldRef` with its divisor), on a tmpfs, rewritten
//! when the pod's labels or annotations change.

use k8s_openapi::api::core::v1::{DownwardAPIVolumeFile, Pod};

use super::atomic_writer::{FileProjection, Payload};
use super::{SetupContext, SetupError};
use crate::fieldpath::{self, FieldPathError, PodRuntimeFacts};

pub const PLUGIN_DIR: &str = "kubernetes.io~downward-api";
pub const DEFAULT_MODE: i32 = 0o644;

/// Pod fields a volume file may hold (status fields are for env vars only).
const VOLUME_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

fn item_value(
    pod: &Pod,
    item: &DownwardAPIVolumeFile,
    facts: &PodRuntimeFacts,
) -> Result<String, SetupError> {
    let err = |source: FieldPathError| SetupError::FieldRef {
        path: item.path.clone(),
        source,
    };
    if let Some(f) = &item.field_ref {
        let p = f.field_path.as_str();
        let allowed = VOLUME_FIELDS.contains(&p)
            || p.starts_with("metadata.labels[")
            || p.starts_with("metadata.annotations[");
        if !allowed {
            return Err(err(FieldPathError::UnsupportedField(p.to_string())));
        }
        return fieldpath::field_value(pod, p, facts).map_err(err);
    }
    if let Some(r) = &item.resource_field_ref {
        let name = r.container_name.as_deref().unwrap_or("");
        let spec = pod.spec.as_ref();
        let c = spec
            .into_iter()
            .flat_map(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
            })
            .find(|c| c.name == name)
            .ok_or_else(|| err(FieldPathError::NoSuchContainer(name.to_string())))?;
        return fieldpath::resource_value(
            c,
            &r.resource,
            r.divisor.as_ref().map(|d| d.0.as_str()),
            facts,
        )
        .map_err(err);
    }
    Err(SetupError::Invalid {
        what: format!(
            "downwardAPI item {:?} has neither fieldRef nor resourceFieldRef",
            item.path
        ),
    })
}

/// The files of downward API items.
pub fn payload_of(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    facts: &PodRuntimeFacts,
    fs_group: Option<u32>,
) -> Result<Payload, SetupError> {
    let mut payload = Payload::new();
    for it in items {
        let v = item_value(pod, it, facts)?;
        payload.insert(
            it.path.clone(),
            FileProjection {
                data: v.into_bytes(),
                mode: it.mode.unwrap_or(default_mode) as u32 & 0o7777,
                fs_group,
            },
        );
    }
    Ok(payload)
}

pub fn payload(
    ctx: &SetupContext<'_>,
    src: &k8s_openapi::api::core::v1::DownwardAPIVolumeSource,
) -> Result<Payload, SetupError> {
    payload_of(
        ctx.pod,
        src.items.as_deref().unwrap_or(&[]),
        src.default_mode.unwrap_or(DEFAULT_MODE),
        ctx.facts,
        ctx.fs_group(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_and_resources() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"memory": "64Mi"}}}]}
        }))
        .unwrap();
        let items: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "sub/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o400},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}
        ]))
        .unwrap();
        let p = payload_of(&pod, &items, 0o644, &PodRuntimeFacts::default(), None).unwrap();
        assert_eq!(p["labels"].data, b"app=\"web\"\ntier=\"fe\"");
        assert_eq!(p["sub/name"].mode, 0o400);
        assert_eq!(p["mem"].data, b"64");
        let bad: Vec<DownwardAPIVolumeFile> = serde_json::from_value(json!([
            {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}}]))
        .unwrap();
        let e = payload_of(&pod, &bad, 0o644, &PodRuntimeFacts::default(), None).unwrap_err();
        assert!(e.to_string().contains("status.podIP"), "{e}");
    }
}
