//! kubelet-rs: the node agent library.
//!
//! The module names follow the Go kubelet's packages so that a reader who knows `pkg/kubelet`
//! finds their way: `config` (flags and KubeletConfiguration), `sources` (static pod files,
//! manifest URL, API server), `podconfig` (merging sources into ADD/UPDATE/REMOVE),
//! `kuberuntime` (the CRI-facing runtime manager), `images` (the image manager), `cm` (pod
//! cgroups and QoS), `kubelet` (the sync loop and pod workers), `pleg`, `status` (the status
//! manager), `server` (healthz and the kubelet HTTP APIs) and `cadvisor` (the cAdvisor-compatible
//! API on 4194 over the `collectors` crate).

pub mod agent;
pub mod backoff;
pub mod cadvisor;
pub mod cm;
pub mod config;
pub mod fieldpath;
pub mod health;
pub mod images;
pub mod kubelet;
pub mod kuberuntime;
pub mod metrics;
pub mod nodeinfo;
pub mod objects;
pub mod pleg;
pub mod podconfig;
pub mod resource;
pub mod server;
pub mod sources;
pub mod status;
