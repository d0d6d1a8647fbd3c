//! `configMap` volumes (`pkg/volume/configmap`): the ConfigMap's keys (all of them, or the
//! `items` mapping keys to paths) written with the atomic writer into a directory on disk,
//! `defaultMode` (0644) or the item's `mode`. A missing ConfigMap or key fails the volume unless
//! it is `optional`. Rewritten in place when the ConfigMap changes.

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath};

use super::atomic_writer::{FileProjection, Payload};
use super::{SetupContext, SetupError};

pub const PLUGIN_DIR: &str = "kubernetes.io~configmap";
/// The API's default `defaultMode`.
pub const DEFAULT_MODE: i32 = 0o644;

/// The files of a ConfigMap projection (`MakePayload`).
pub fn payload_of(
    cm: Option<&ConfigMap>,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    fs_group: Option<u32>,
) -> Result<Payload, SetupError> {
    let Some(cm) = cm else {
        return absent_object("configmaps", name, optional);
    };
    let get = |key: &str| -> Option<Vec<u8>> {
        cm.data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| v.as_bytes().to_vec())
            .or_else(|| {
                cm.binary_data
                    .as_ref()
                    .and_then(|d| d.get(key))
                    .map(|v| v.0.clone())
            })
    };
    let all = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .chain(
            cm.binary_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone())),
        );
    keys_to_files(all, get, items, default_mode, optional, fs_group, |key| {
        SetupError::MissingKey {
            what: "configmap references non-existent config key",
            name: name.to_string(),
            key: key.to_string(),
        }
    })
}

/// The payload of a ConfigMap or Secret that does not exist: empty when the volume is
/// `optional`, otherwise an error naming `kind` and `name`.
pub(super) fn absent_object(
    kind: &'static str,
    name: &str,
    optional: bool,
) -> Result<Payload, SetupError> {
    if optional {
        Ok(Payload::new())
    } else {
        Err(SetupError::ObjectNotFound {
            kind,
            name: name.to_string(),
        })
    }
}

/// The files of a ConfigMap's or Secret's keys (`MakePayload` of both plugins). With no
/// `items`, every key of `all` at its own path in `default_mode` (a later duplicate wins);
/// otherwise each item's key, looked up with `get`, at the item's path in its `mode` or
/// `default_mode`. A key that `get` lacks fails with `missing(key)` unless `optional`.
pub(super) fn keys_to_files(
    all: impl IntoIterator<Item = (String, Vec<u8>)>,
    get: impl Fn(&str) -> Option<Vec<u8>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    fs_group: Option<u32>,
    missing: impl Fn(&str) -> SetupError,
) -> Result<Payload, SetupError> {
    let file = |data: Vec<u8>, mode: i32| FileProjection {
        data,
        mode: mode as u32 & 0o7777,
        fs_group,
    };
    let mut payload = Payload::new();
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in all {
                payload.insert(k, file(v, default_mode));
            }
        }
        Some(items) => {
            for it in items {
                match get(&it.key) {
                    Some(data) => {
                        payload
                            .insert(it.path.clone(), file(data, it.mode.unwrap_or(default_mode)));
                    }
                    None if optional => {}
                    None => return Err(missing(&it.key)),
                }
            }
        }
    }
    Ok(payload)
}

/// The payload of a `configMap` volume now.
pub fn payload(
    ctx: &SetupContext<'_>,
    src: &k8s_openapi::api::core::v1::ConfigMapVolumeSource,
) -> Result<Payload, SetupError> {
    let cm = ctx.objects.config_map(ctx.namespace(), &src.name);
    payload_of(
        cm.as_ref(),
        &src.name,
        src.items.as_deref(),
        src.default_mode.unwrap_or(DEFAULT_MODE),
        src.optional.unwrap_or(false),
        ctx.fs_group(),
    )
}
