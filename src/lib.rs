//! kubelet-rs: the node agent library.
//!
//! The module names follow the Go kubelet's packages so that a reader who knows `pkg/kubelet`
//! finds their way: `config` (flags and KubeletConfiguration), `sources` (static pod files,
//! manifest URL, API server), `podconfig` (merging sources into ADD/UPDATE/REMOVE),
//! `kuberuntime` (the CRI-facing runtime manager), `cm` (pod cgroups and QoS), `pod_workers`
//! and `kubelet` (the sync loop), `server` (healthz and the kubelet HTTP APIs) and `cadvisor`
//! (the cAdvisor-compatible API on 4194 over the `collectors` crate).

pub mod cadvisor;
pub mod config;
pub mod resource;
pub mod sources;
