//! kubelet-rs: the node agent library.
//!
//! The module names follow the Go kubelet's packages so that a reader who knows `pkg/kubelet`
//! finds their way: `config` (flags and KubeletConfiguration), `sources` (static pod files,
//! manifest URL, API server), `podconfig` (merging sources into ADD/UPDATE/REMOVE),
//! `kuberuntime` (the CRI-facing runtime manager), `images` (the image manager), `cm` (pod
//! cgroups and QoS), `kubelet` (the sync loop and pod workers), `pleg`, `status` (the status
//! manager), `server` (healthz and the kubelet HTTP APIs) and `cadvisor` (the cAdvisor-compatible
//! API on 4194 over the `collectors` crate), `prober` (startup/liveness/readiness probes),
//! `lifecycle` (postStart/preStop hooks and events) and `volumemanager` (pod volumes). The node's
//! managers (the `managers` crate) are wired in `eviction` (eviction manager, node pressure
//! conditions, admission), `gc` (image and container GC), `oomwatcher` (OOM events) and
//! `events` (the event recorder and `/events`).

pub mod admission;
pub mod agent;
pub mod apiclient;
pub mod apievents;
pub mod backoff;
pub mod cadvisor;
pub mod cm;
pub mod config;
pub mod cputime;
pub mod events;
pub mod eviction;
pub mod fakeruntime;
pub mod fieldpath;
pub mod gc;
pub mod health;
pub mod images;
pub mod kubelet;
pub mod kuberuntime;
pub mod lifecycle;
pub mod logs;
pub mod metrics;
pub mod mirror;
pub mod nodeinfo;
pub mod nodeshutdown;
pub mod nodestatus;
pub mod objects;
pub mod oomwatcher;
pub mod percent;
pub mod pleg;
pub mod podconfig;
pub mod prober;
pub mod prober_metrics;
pub mod resource;
pub mod rtthread;
pub mod server;
pub mod sources;
pub mod status;
pub mod tokens;
pub mod volumemanager;
