//! Container and node metrics for the node agent: a cAdvisor-class collector that costs a
//! fraction of cAdvisor's CPU.
//!
//! The data flow, one module per step:
//! - [`layout`] finds which cgroup hierarchies a root holds (v1, v2, hybrid);
//! - [`discovery`] finds the containers (cgroups) in them, by a walk plus inotify;
//! - [`sampler`] reads a container's cgroup files (kept open, re-read with `pread`, see
//!   [`files`]) and the node's procfs files, parsing them with the pure functions of [`parse`]
//!   into the plain types of [`model`];
//! - [`ring`] stores each container's history in a bounded lock-free ring (one writer, many
//!   readers that never block it);
//! - [`monitor`] ties these together: the housekeeping loop on a rayon pool, the registry,
//!   subscribers for the managers, on-demand sampling;
//! - [`machine`] gathers machine information; [`identity`] lets the agent name cgroups.
//!
//! No tokio: this crate is thread based and can be used from any runtime. Every kernel path
//! is a parameter, so tests run on fixture trees built with `testing` (behind the `testing`
//! feature, which only tests and benches enable).

pub mod discovery;
pub mod files;
pub mod identity;
pub mod layout;
pub mod machine;
pub mod model;
pub mod monitor;
pub mod parse;
pub mod ring;
pub mod sampler;
mod sync;
pub mod sys;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use identity::{ContainerIdentity, ContainerNamer, NameRegistry, NoNames};
pub use machine::{MachineInfo, VersionInfo};
pub use model::{ContainerStats, NodeStats, Timestamp};
pub use monitor::{
    Container, Monitor, MonitorConfig, MonitorError, MonitorHandle, MonitorStats, PassEvent,
};
pub use sampler::ContainerSpec;
