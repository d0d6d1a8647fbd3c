//! `secret` volumes (`pkg/volume/secret`): like configMap volumes, but on a tmpfs so that the
//! secret's bytes never reach a disk. Keys from `data` and `stringData`.

use k8s_openapi::api::core::v1::{KeyToPath, Secret, SecretVolumeSource};

use super::atomic_writer::Payload;
use super::{configmap, SetupContext, SetupError};

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
    let Some(s) = secret else {
        return configmap::absent_object("secrets", name, optional);
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
    configmap::keys_to_files(
        all.iter().map(|(k, v)| (k.clone(), v.clone())),
        |key| all.get(key).cloned(),
        items,
        default_mode,
        optional,
        fs_group,
        |key| SetupError::MissingKey {
            what: "secret references non-existent secret key",
            name: name.to_string(),
            key: key.to_string(),
        },
    )
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
