//! The node's resource managers: they read what the `collectors` crate samples and decide what
//! the agent must do about it. Each declares the narrow trait it needs to act, and the agent
//! (the root crate) implements those traits over the kubelet and the CRI runtime.
//!
//! - [`eviction`]: the eviction manager. Signals (`memory.available`, `nodefs.*`, `imagefs.*`,
//!   `pid.available`, ...) from the collector's rings, hard and soft thresholds with grace
//!   periods, minimum reclaim, the pressure transition period, node-level reclaim (container
//!   and image GC) before disk evictions, the kubelet's pod ranking, one pod per pass, the
//!   node's pressure conditions, and the fast path: memcg usage-threshold notifications
//!   (cgroup v1 `cgroup.event_control` + eventfd, cgroup v2 PSI triggers and `memory.events`)
//!   plus the collector's passes, with 10 s polling only as the fallback.
//! - [`oom`]: the OOM watcher: `/dev/kmsg` records, the kernel's OOM-kill report parsed into
//!   [`oom::OomEvent`]s, cAdvisor's `oom`/`oomKill` container events and per-container OOM
//!   counts.
//! - [`images`]: image garbage collection (high/low thresholds, least recently used first,
//!   minimum and maximum age, in-use and pinned images kept).
//! - [`containers`]: container garbage collection (dead containers beyond `MaxPerPodContainer`,
//!   dead sandboxes, log directories of pods that are gone).
//! - [`conditions`]: the node's `MemoryPressure`, `DiskPressure` and `PIDPressure` conditions
//!   and their transition events.
//! - [`events`]: the local event recorder with the kubelet's reasons, bounded and queryable.
//! - [`clock`]: the injectable clock every time-based decision uses; [`quantity`]: resource
//!   quantities printed the way the API machinery prints them.
//!
//! No tokio: every manager is a plain thread or a function called from one, and nothing here
//! blocks the agent's async runtime.

pub mod clock;
pub mod conditions;
pub mod containers;
pub mod events;
pub mod eviction;
pub mod images;
pub mod oom;
pub mod quantity;
mod sys;

pub use clock::{Clock, FakeClock, SystemClock};
pub use events::{EventRecorder, EventSink, EventType, ObjectRef};
