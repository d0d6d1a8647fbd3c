//! Pod sources: where the pods this node must run come from.
//!
//! Every source sends [`PodUpdate`]s on a channel. A source that knows its whole set at once
//! (a manifest directory, a manifest URL) sends [`PodOperation::Set`] with every pod it has;
//! `podconfig` turns successive sets into ADD / UPDATE / REMOVE for the sync loop, as the
//! kubelet's `pkg/kubelet/config` does.

pub mod api;
pub mod defaults;
pub mod endpoint;
pub mod file;
pub mod url;
pub mod validation;

use k8s_openapi::api::core::v1::Pod;

/// `kubernetes.io/config.source` value of pods read from `--pod-manifest-path`.
pub const FILE_SOURCE: &str = "file";
/// `kubernetes.io/config.source` value of pods read from `--manifest-url`.
pub const HTTP_SOURCE: &str = "http";
/// `kubernetes.io/config.source` value of pods from the API server.
pub const API_SOURCE: &str = "api";
/// Pods POSTed to the kubelet API's pod endpoint (`--enable-pod-endpoint`, kubelet-rs only).
pub const ENDPOINT_SOURCE: &str = "endpoint";

/// Annotation keys the kubelet puts on pods it reads from a source.
pub const CONFIG_HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
pub const CONFIG_SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
pub const CONFIG_SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
pub const CONFIG_MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What a source says about its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodOperation {
    /// The complete set of the source's pods: any pod not listed is gone.
    Set,
    /// Pods that are new.
    Add,
    /// Pods whose spec changed.
    Update,
    /// Pods that are gone.
    Remove,
}

/// One message from a source.
#[derive(Debug, Clone)]
pub struct PodUpdate {
    /// The source's name ([`FILE_SOURCE`], [`HTTP_SOURCE`], [`API_SOURCE`]).
    pub source: &'static str,
    pub op: PodOperation,
    pub pods: Vec<Pod>,
}
