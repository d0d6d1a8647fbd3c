//! The atomics the ring buffer uses, swapped for `loom`'s under `--cfg loom` so the ring's
//! memory orderings are model-checked (the pattern of tokio's `src/loom`).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::Arc;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::Arc;
