//! `projected` volumes (`pkg/volume/projected`): several sources (configMap, secret,
//! downwardAPI, serviceAccountToken) combined into one directory on a tmpfs with the atomic
//! writer. A `serviceAccountToken` is a TokenRequest through the object source (API-server
//! mode, `crate::tokens`); in standalone mode it fails the volume with a message saying so. `clusterTrustBundle` and `podCertificate`
//! sources are not supported by this node.

use k8s_openapi::api::core::v1::ProjectedVolumeSource;

use super::atomic_writer::{FileProjection, Payload};
use super::{configmap, downwardapi, secret, SetupContext, SetupError};

pub const PLUGIN_DIR: &str = "kubernetes.io~projected";
pub const DEFAULT_MODE: i32 = 0o644;

pub fn payload(ctx: &SetupContext<'_>, src: &ProjectedVolumeSource) -> Result<Payload, SetupError> {
    let mode = src.default_mode.unwrap_or(DEFAULT_MODE);
    let mut payload = Payload::new();
    for (i, s) in src.sources.iter().flatten().enumerate() {
        let part = if let Some(c) = &s.config_map {
            let cm = ctx.objects.config_map(ctx.namespace(), &c.name);
            configmap::payload_of(
                cm.as_ref(),
                &c.name,
                c.items.as_deref(),
                mode,
                c.optional.unwrap_or(false),
                ctx.fs_group(),
            )?
        } else if let Some(sec) = &s.secret {
            let obj = ctx.objects.secret(ctx.namespace(), &sec.name);
            secret::payload_of(
                obj.as_ref(),
                &sec.name,
                sec.items.as_deref(),
                mode,
                sec.optional.unwrap_or(false),
                ctx.fs_group(),
            )?
        } else if let Some(d) = &s.downward_api {
            downwardapi::payload_of(
                ctx.pod,
                d.items.as_deref().unwrap_or(&[]),
                mode,
                ctx.facts,
                ctx.fs_group(),
            )?
        } else if let Some(t) = &s.service_account_token {
            let token = ctx
                .objects
                .service_account_token(
                    ctx.pod,
                    t.audience.as_deref().unwrap_or(""),
                    t.expiration_seconds,
                )
                .map_err(|e| SetupError::Invalid {
                    what: format!(
                        "projected source {i}: serviceAccountToken {:?}: {e}",
                        t.path
                    ),
                })?;
            let mut p = Payload::new();
            p.insert(
                t.path.clone(),
                FileProjection {
                    data: token.into_bytes(),
                    mode: mode as u32 & 0o7777,
                    fs_group: ctx.fs_group(),
                },
            );
            p
        } else {
            return Err(SetupError::Invalid {
                what: format!("projected source {i}: source type not supported on this node"),
            });
        };
        payload.extend(part);
    }
    Ok(payload)
}
