//! `secret` volumes (`pkg/volume/secret`): like configMap volumes, but on a tmpfs so that the
//! secret's bytes never reach a disk. Keys from `data` and `stringData`.

use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource};

use super::atomic_writer::{FileProjection, Payload};
use super::{SetupContext, SetupError};

pub const PLUGIN_DIR: &str = "kubernetes.io~secret";
pub const DEFAULT_MODE: i32 = 0o644;

/// The files of a Secret projection.
pub fn payload_of(
    secret: Option<&Secret>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    fs_group: Option<u32>,
) -> Result<Payload, SetupError> {
    let mut payload = Payload::new();
    let Some(s) = secret else {
        return if optional {
            Ok(payload)
        } else {
            Err(SetupError::ObjectNotFound {
                kind: "secrets",
                name: name.to_string(),
            })
        };
    };
    let mut all: std::collections::BTreeMap<String, Vec<u8>> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in s.string_data.iter().flatten() {
        all.insert(k.clone(), v.as_bytes().to_vec());
    }
    let file = |data: Vec<u8>, mode: i32| FileProjection {
        data,
        mode: mode as u32 & 0o7777,
        fs_group,
    };
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in all {
                payload.insert(k, file(v, default_mode));
            }
        }
        Some(items) => {
            for it in items {
                match all.get(&it.key) {
                    Some(v) => {
                        payload.insert(
                            it.path.clone(),
                            file(v.clone(), it.mode.unwrap_or(default_mode)),
                        );
                    }
                    None if optional => {}
                    None => {
                        return Err(SetupError::MissingKey {
                            what: "secret references non-existent secret key",
                            name: name.to_string(),
                            key: it.key.clone(),
                        })
                    }
                }
            }
        }
    }
    Ok(payload)
}

pub fn payload(ctx: &SetupContext<'_>, src: &SecretVolumeSource) -> Result<Payload, SetupError> {
    let name = src.secret_name.clone().unwrap_or_default();
    let s = ctx.objects.secret(ctx.namespace(), &name);
    payload_of(
        s.as_ref(),
        &name,
        src.items.as_deref(),
        src.default_mode.unwrap_or(DEFAULT_MODE),
        src.optional.unwrap_or(false),
        ctx.fs_group(),
    )
}
