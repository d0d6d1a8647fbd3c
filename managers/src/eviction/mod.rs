//! The eviction manager (`pkg/kubelet/eviction`), reacting in milliseconds instead of the
//! kubelet's 10 s.
//!
//! - [`api`]: signals, thresholds, resources;
//! - [`signals`]: the node summary and the observations derived from it;
//! - [`thresholds`]: which thresholds are met, grace periods, the transition period;
//! - [`ranking`]: which pod goes first;
//! - [`manager`]: one pass (`synchronize`), node-level reclaim, one eviction, admission, and
//!   local-storage isolation (pods whose emptyDir outgrew its `sizeLimit`);
//! - [`stats`]: the summary built from the collector's rings;
//! - [`notifier`]: kernel memory notifications (memcg v1 thresholds, v2 PSI triggers);
//! - [`runner`]: the thread that runs passes on notifications, on each collector pass and on a
//!   10 s fallback timer — or, for comparison, only every 10 s like the kubelet.

pub mod api;
pub mod manager;
pub mod notifier;
pub mod ranking;
pub mod runner;
pub mod signals;
pub mod stats;
pub mod thresholds;

pub use api::{Resource, Signal, Threshold, ThresholdValue};
pub use manager::{
    AdmitRequest, Cause, Config, DeleteUnusedContainers, DeleteUnusedImages, Deps, EvictionManager,
    Grace, KillPod, KillRequest, Outcome, Rejection, StatsError, SummarySource,
};
pub use ranking::{ContainerRequest, PodCandidate};
pub use runner::{Reaction, Runner, RunnerHandle};
pub use signals::{DiskUsage, NodeSummary, PodUsage, VolumeUsage};
