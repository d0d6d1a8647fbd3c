//! The image manager (`pkg/kubelet/images`): makes sure a container's image is present before the
//! container is created, following `imagePullPolicy`, with the kubelet's pull backoff and its
//! waiting reasons (`ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`, `InvalidImageName`).
//!
//! Presence is checked with ImageStatus first: containerd's PullImage always contacts the
//! registry, even for an image it has (DESIGN.md).

pub mod keyring;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Container;
use parking_lot::Mutex;
use proto::cri;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::kuberuntime::RuntimeService;

/// Why a container's image is not available; `reason` is the container's waiting reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct ImageError {
    pub reason: &'static str,
    pub message: String,
}

pub const ERR_IMAGE_PULL: &str = "ErrImagePull";
pub const IMAGE_PULL_BACKOFF: &str = "ImagePullBackOff";
pub const ERR_IMAGE_NEVER_PULL: &str = "ErrImageNeverPull";
pub const INVALID_IMAGE_NAME: &str = "InvalidImageName";

/// Adds `:latest` to an image without tag or digest, as the kubelet's `applyDefaultImageTag`.
pub fn with_default_tag(image: &str) -> Result<String, ImageError> {
    let invalid = |why: &str| {
        ImageError {
        reason: INVALID_IMAGE_NAME,
        message: format!("Failed to apply default image tag \"{image}\": couldn't parse image name \"{image}\": {why}"),
    }
    };
    if image.is_empty() {
        return Err(invalid("repository name must have at least one component"));
    }
    if image.chars().any(char::is_whitespace) {
        return Err(invalid("invalid reference format"));
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let last_component = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (repo, tag) = match name[last_component..].rfind(':') {
        Some(i) => (
            &name[..last_component + i],
            Some(&name[last_component + i + 1..]),
        ),
        None => (name, None),
    };
    if repo.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(
            "invalid reference format: repository name must be lowercase",
        ));
    }
    if digest.is_some() || tag.is_some() {
        Ok(image.to_string())
    } else {
        Ok(format!("{image}:latest"))
    }
}

/// The effective pull policy: the spec's, else `Always` for `:latest` or untagged images and
/// `IfNotPresent` otherwise (API defaulting).
pub fn pull_policy(c: &Container) -> String {
    if let Some(p) = c.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        return p.to_string();
    }
    let image = c.image.as_deref().unwrap_or("");
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') {
        "IfNotPresent".into()
    } else if !last.contains(':') || last.ends_with(":latest") {
        "Always".into()
    } else {
        "IfNotPresent".into()
    }
}

/// Ensures images for containers; one per agent.
#[derive(Clone)]
pub struct ImageManager {
    runtime: RuntimeService,
    backoff: Arc<Mutex<Backoff>>,
    /// Pulls allowed at once: one when serialized (`--serialize-image-pulls`, the kubelet's
    /// default), `maxParallelImagePulls` otherwise, no limit when that is unset.
    pulls: Option<Arc<tokio::sync::Semaphore>>,
}

impl ImageManager {
    pub fn new(runtime: RuntimeService, serialize_pulls: bool) -> Self {
        Self {
            runtime,
            backoff: Arc::new(Mutex::new(Backoff::crash_loop())),
            pulls: serialize_pulls.then(|| Arc::new(tokio::sync::Semaphore::new(1))),
        }
    }

    /// At most `n` pulls at once (`maxParallelImagePulls`).
    pub fn with_max_parallel_pulls(mut self, n: usize) -> Self {
        self.pulls = Some(Arc::new(tokio::sync::Semaphore::new(n.max(1))));
        self
    }

    /// How many more pulls may start now (`None`: no limit).
    pub fn pull_slots(&self) -> Option<usize> {
        self.pulls.as_ref().map(|s| s.available_permits())
    }

    /// Makes the container's image present per its pull policy; returns the runtime's image
    /// reference to create the container from.
    pub async fn ensure_image(
        &self,
        pod_uid: &str,
        container: &Container,
        sandbox: Option<&cri::PodSandboxConfig>,
    ) -> Result<String, ImageError> {
        self.ensure_image_with(pod_uid, container, sandbox, &keyring::Keyring::default())
            .await
    }

    /// [`ImageManager::ensure_image`] with the pod's pull credentials: each credential that
    /// matches the image is tried in order until a pull succeeds (without any, one anonymous
    /// pull), and the errors of all attempts are reported together, as the kubelet does.
    pub async fn ensure_image_with(
        &self,
        pod_uid: &str,
        container: &Container,
        sandbox: Option<&cri::PodSandboxConfig>,
        creds: &keyring::Keyring,
    ) -> Result<String, ImageError> {
        let spec_image = container.image.as_deref().unwrap_or("");
        let image = with_default_tag(spec_image)?;
        let policy = pull_policy(container);
        let present = self
            .runtime
            .image_status(&image)
            .await
            .map_err(|e| ImageError {
                reason: ERR_IMAGE_PULL,
                message: format!("Failed to inspect image \"{spec_image}\": {e}"),
            })?;
        let must_pull = match policy.as_str() {
            "Always" => true,
            "Never" => {
                return present.map(|i| i.id).ok_or_else(|| ImageError {
                    reason: ERR_IMAGE_NEVER_PULL,
                    message: format!(
                        "Container image \"{spec_image}\" is not present with pull policy of Never"
                    ),
                })
            }
            _ => present.is_none(),
        };
        if !must_pull {
            if let Some(img) = present {
                return Ok(img.id);
            }
        }
        let key = format!("{pod_uid}_{image}");
        let now = Instant::now();
        // The kubelet's pull duration includes the wait for a serialized pull slot.
        let pull_started = std::time::Instant::now();
        if self.backoff.lock().is_in_backoff_since_update(&key, now) {
            return Err(ImageError {
                reason: IMAGE_PULL_BACKOFF,
                message: format!("Back-off pulling image \"{spec_image}\""),
            });
        }
        // The semaphore is never closed, so acquiring only waits.
        let _permit = match &self.pulls {
            Some(s) => s.acquire().await.ok(),
            None => None,
        };
        tracing::info!(image = %image, pod_uid, "pulling image");
        let auths = creds.lookup(&image);
        let mut result = Err(Vec::new());
        if auths.is_empty() {
            result = self
                .runtime
                .pull_image(&image, sandbox.cloned(), None)
                .await
                .map_err(|e| vec![e.message()]);
        } else {
            for auth in auths {
                match self
                    .runtime
                    .pull_image(&image, sandbox.cloned(), Some(auth))
                    .await
                {
                    Ok(r) => {
                        result = Ok(r);
                        break;
                    }
                    Err(e) => {
                        if let Err(errs) = &mut result {
                            errs.push(e.message());
                        }
                    }
                }
            }
        }
        match result {
            Ok(r) => {
                let took = pull_started.elapsed();
                self.backoff.lock().reset(&key);
                // Prefer the image ID: CreateContainer then needs no further resolution.
                let status = self.runtime.image_status(&image).await;
                let size = match &status {
                    Ok(Some(img)) => img.size,
                    _ => 0,
                };
                self.runtime
                    .metrics()
                    .image_pull_duration_seconds
                    .with_label_values(&[crate::metrics::image_size_bucket(size)])
                    .observe(took.as_secs_f64());
                match status {
                    Ok(Some(img)) => Ok(img.id),
                    _ => Ok(r),
                }
            }
            Err(e) => {
                {
                    let now = Instant::now();
                    self.backoff.lock().next(&key, now, now);
                }
                Err(ImageError {
                    reason: ERR_IMAGE_PULL,
                    message: format!("Failed to pull image \"{spec_image}\": {}", aggregate(&e)),
                })
            }
        }
    }

    /// Pre-pulls an image (the sandbox image at start-up), ignoring the pull policy.
    pub async fn ensure_present(&self, image: &str) -> Result<String, ImageError> {
        let err = |e: crate::kuberuntime::RuntimeError| ImageError {
            reason: ERR_IMAGE_PULL,
            message: format!("Failed to pull image \"{image}\": {}", e.message()),
        };
        if let Some(img) = self.runtime.image_status(image).await.map_err(err)? {
            return Ok(img.id);
        }
        self.runtime
            .pull_image(image, None, None)
            .await
            .map_err(err)
    }

    /// Drops stale backoff entries.
    pub fn gc(&self) {
        self.backoff.lock().gc(Instant::now());
    }
}

/// Several errors as Go's `utilerrors.NewAggregate` prints them: one as itself, more as
/// `[a, b]`.
fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn default_tags() {
        assert_eq!(with_default_tag("busybox").unwrap(), "busybox:latest");
        assert_eq!(
            with_default_tag("127.0.0.1:5000/kubelet-rs/busybox").unwrap(),
            "127.0.0.1:5000/kubelet-rs/busybox:latest"
        );
        assert_eq!(
            with_default_tag("127.0.0.1:5000/kubelet-rs/busybox:1.35").unwrap(),
            "127.0.0.1:5000/kubelet-rs/busybox:1.35"
        );
        assert_eq!(with_default_tag("x@sha256:abcd").unwrap(), "x@sha256:abcd");
        let e = with_default_tag("Bad/Name").unwrap_err();
        assert_eq!(e.reason, INVALID_IMAGE_NAME);
        assert!(e.message.contains("Bad/Name"));
        assert_eq!(
            with_default_tag("has space").unwrap_err().reason,
            INVALID_IMAGE_NAME
        );
        assert_eq!(with_default_tag("").unwrap_err().reason, INVALID_IMAGE_NAME);
    }

    #[test]
    fn pull_policy_defaults() {
        let c = |image: &str, policy: Option<&str>| -> Container {
            serde_json::from_value(json!({"name": "c", "image": image, "imagePullPolicy": policy}))
                .unwrap()
        };
        assert_eq!(pull_policy(&c("busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox:latest", None)), "Always");
        assert_eq!(
            pull_policy(&c("127.0.0.1:5000/x/busybox:1.35", None)),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c("127.0.0.1:5000/x/busybox", None)), "Always");
        assert_eq!(pull_policy(&c("busybox", Some("Never"))), "Never");
    }
}

#[cfg(test)]
mod pull_secret_tests {
    use super::keyring::{Keyring, DOCKER_CONFIG_JSON, DOCKER_CONFIG_JSON_KEY};
    use super::*;
    use base64::Engine;
    use k8s_openapi::api::core::v1::Secret;
    use serde_json::json;

    fn pull_secret(name: &str, registry: &str, user: &str, pass: &str) -> Secret {
        let cfg = json!({"auths": {registry: {"username": user, "password": pass}}});
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns"},
            "type": DOCKER_CONFIG_JSON,
            "data": {DOCKER_CONFIG_JSON_KEY:
                base64::engine::general_purpose::STANDARD.encode(cfg.to_string())}
        }))
        .unwrap()
    }

    fn container(image: &str) -> Container {
        serde_json::from_value(json!({"name": "c", "image": image})).unwrap()
    }

    /// Against a registry that wants credentials (the fake CRI's 401): each matching
    /// credential is tried in order until one works; with none right, every attempt's error
    /// is reported.
    #[tokio::test]
    async fn pull_credentials_are_tried_in_order_until_one_works() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("fake.sock");
        let (fake, _task) = crate::fakeruntime::serve(&sock).await.unwrap();
        fake.require_registry_auth("reg.example:5000/", "right", "pw");
        let channel = proto::cri::connect(&sock).await.unwrap();
        let rt = RuntimeService::new(
            channel,
            std::time::Duration::from_secs(10),
            crate::metrics::Metrics::new("n"),
            "n",
        );
        let images = ImageManager::new(rt, false);
        let (keyring, errs) = Keyring::from_secrets(&[
            pull_secret("a", "reg.example:5000", "wrong", "x"),
            pull_secret("b", "other.example", "unrelated", "y"),
            pull_secret("c", "https://reg.example:5000/v2/", "right", "pw"),
        ]);
        assert!(errs.is_empty());
        images
            .ensure_image_with("u1", &container("reg.example:5000/app:1"), None, &keyring)
            .await
            .expect("pulled with the second matching credential");
        assert_eq!(
            fake.pull_auths(),
            [("wrong".into(), "x".into()), ("right".into(), "pw".into())]
        );

        // No right credential: one error naming both attempts.
        let (only_wrong, _) =
            Keyring::from_secrets(&[pull_secret("a", "reg.example:5000", "wrong", "x")]);
        let e = images
            .ensure_image_with(
                "u2",
                &container("reg.example:5000/app:2"),
                None,
                &only_wrong,
            )
            .await
            .unwrap_err();
        assert_eq!(e.reason, ERR_IMAGE_PULL);
        assert!(e.message.contains("401 Unauthorized"), "{}", e.message);
        // Without credentials at all: an anonymous pull, refused the same way.
        let e = images
            .ensure_image_with(
                "u3",
                &container("reg.example:5000/app:3"),
                None,
                &Keyring::default(),
            )
            .await
            .unwrap_err();
        assert!(e.message.contains("401 Unauthorized"), "{}", e.message);
        assert_eq!(
            fake.pull_auths().last().unwrap(),
            &(String::new(), String::new())
        );
    }
}
