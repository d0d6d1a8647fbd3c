//! The eviction manager's vocabulary: signals, thresholds, the resources they starve and the
//! node conditions they raise, after `pkg/kubelet/eviction/api`.
//!
//! Thresholds are parsed (and bad ones rejected) by the agent's configuration; this module only
//! holds the parsed form and evaluates it.

use std::fmt;
use std::time::Duration;

use crate::conditions::ConditionType;
use crate::quantity::{self, Format};

/// An eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `memory.available`: node memory capacity minus the node's working set.
    MemoryAvailable,
    /// `allocatableMemory.available`: the pods' cgroup limit minus the pods' working set.
    AllocatableMemoryAvailable,
    /// `nodefs.available`.
    NodeFsAvailable,
    /// `nodefs.inodesFree`.
    NodeFsInodesFree,
    /// `imagefs.available`.
    ImageFsAvailable,
    /// `imagefs.inodesFree`.
    ImageFsInodesFree,
    /// `containerfs.available` (follows nodefs or imagefs, as the kubelet decides).
    ContainerFsAvailable,
    /// `containerfs.inodesFree`.
    ContainerFsInodesFree,
    /// `pid.available`.
    PidAvailable,
}

impl Signal {
    /// Every signal.
    pub const ALL: [Signal; 9] = [
        Signal::MemoryAvailable,
        Signal::AllocatableMemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::ContainerFsAvailable,
        Signal::ContainerFsInodesFree,
        Signal::PidAvailable,
    ];

    /// The kubelet's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::AllocatableMemoryAvailable => "allocatableMemory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::ContainerFsAvailable => "containerfs.available",
            Signal::ContainerFsInodesFree => "containerfs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    /// The resource this signal measures.
    pub fn resource(self) -> Resource {
        match self {
            Signal::MemoryAvailable | Signal::AllocatableMemoryAvailable => Resource::Memory,
            Signal::NodeFsAvailable | Signal::ImageFsAvailable | Signal::ContainerFsAvailable => {
                Resource::EphemeralStorage
            }
            Signal::NodeFsInodesFree
            | Signal::ImageFsInodesFree
            | Signal::ContainerFsInodesFree => Resource::Inodes,
            Signal::PidAvailable => Resource::Pids,
        }
    }

    /// The node condition a met threshold on this signal raises.
    pub fn condition(self) -> ConditionType {
        match self.resource() {
            Resource::Memory => ConditionType::MemoryPressure,
            Resource::EphemeralStorage | Resource::Inodes => ConditionType::DiskPressure,
            Resource::Pids => ConditionType::PIDPressure,
        }
    }

    /// Whether this is a memory signal (ranked before every other when several are met).
    pub fn is_memory(self) -> bool {
        self.resource() == Resource::Memory
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The resource a signal measures, named as in eviction messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `memory`.
    Memory,
    /// `ephemeral-storage`.
    EphemeralStorage,
    /// `inodes`.
    Inodes,
    /// `pids`.
    Pids,
}

impl Resource {
    /// The resource's name as messages and events spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Memory => "memory",
            Resource::EphemeralStorage => "ephemeral-storage",
            Resource::Inodes => "inodes",
            Resource::Pids => "pids",
        }
    }

    /// How amounts of this resource are written.
    pub fn format(self) -> Format {
        match self {
            Resource::Memory | Resource::EphemeralStorage => Format::BinarySI,
            Resource::Inodes | Resource::Pids => Format::DecimalSI,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A threshold's value: an absolute amount or a share of the signal's capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    /// An amount in the signal's unit (bytes, inodes, PIDs) and how it was written.
    Quantity {
        /// The amount.
        value: i64,
        /// Its notation, for messages.
        format: Format,
    },
    /// A fraction of capacity in `0.0..=1.0`.
    Percentage(f64),
}

impl ThresholdValue {
    /// An amount of bytes written in binary SI (`100Mi`).
    pub fn bytes(value: i64) -> ThresholdValue {
        ThresholdValue::Quantity {
            value,
            format: Format::BinarySI,
        }
    }

    /// The absolute amount against `capacity` (`GetThresholdQuantity`): a percentage is
    /// truncated to a whole amount, and written in binary SI as the kubelet does.
    pub fn quantity(&self, capacity: i64) -> (i64, Format) {
        match *self {
            ThresholdValue::Quantity { value, format } => (value, format),
            ThresholdValue::Percentage(p) => ((capacity as f64 * p) as i64, Format::BinarySI),
        }
    }
}

/// One threshold. Hard thresholds have a zero grace period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold {
    /// The signal.
    pub signal: Signal,
    /// The value `signal` must fall below.
    pub value: ThresholdValue,
    /// How long the threshold must hold before pods are evicted (soft thresholds).
    pub grace_period: Duration,
    /// How far past the threshold to reclaim once it is met.
    pub min_reclaim: Option<ThresholdValue>,
}

impl Threshold {
    /// A hard threshold.
    pub fn hard(signal: Signal, value: ThresholdValue) -> Threshold {
        Threshold {
            signal,
            value,
            grace_period: Duration::ZERO,
            min_reclaim: None,
        }
    }

    /// A soft threshold.
    pub fn soft(signal: Signal, value: ThresholdValue, grace_period: Duration) -> Threshold {
        Threshold {
            signal,
            value,
            grace_period,
            min_reclaim: None,
        }
    }

    /// Adds a minimum reclaim.
    pub fn with_min_reclaim(mut self, v: ThresholdValue) -> Threshold {
        self.min_reclaim = Some(v);
        self
    }

    /// Evicts without waiting.
    pub fn is_hard(&self) -> bool {
        self.grace_period.is_zero()
    }

    /// Whether two thresholds are the same one (signal, value and grace period).
    pub fn same(&self, other: &Threshold) -> bool {
        self.signal == other.signal
            && self.grace_period == other.grace_period
            && self.value == other.value
    }

    /// The threshold amount against `capacity`, formatted for messages.
    pub fn quantity_text(&self, capacity: i64) -> String {
        let (v, f) = self.value.quantity(capacity);
        quantity::format(v, f)
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = match self.value {
            ThresholdValue::Quantity { value, format } => quantity::format(value, format),
            ThresholdValue::Percentage(p) => format!("{}%", p * 100.0),
        };
        write!(
            f,
            "{}<{v} ({})",
            self.signal,
            if self.is_hard() {
                "hard".to_string()
            } else {
                format!("soft, grace {:?}", self.grace_period)
            }
        )
    }
}

/// Copies a hard `memory.available` threshold to `allocatableMemory.available`, as the
/// kubelet does when node allocatable is enforced on pods (`--enforce-node-allocatable=pods`).
pub fn add_allocatable_thresholds(thresholds: &mut Vec<Threshold>) {
    let extra: Vec<Threshold> = thresholds
        .iter()
        .filter(|t| t.signal == Signal::MemoryAvailable && t.is_hard())
        .map(|t| Threshold {
            signal: Signal::AllocatableMemoryAvailable,
            ..*t
        })
        .collect();
    for t in extra {
        if !thresholds.iter().any(|x| x.same(&t)) {
            thresholds.push(t);
        }
    }
}

/// Sets the `containerfs.*` thresholds from nodefs (one filesystem, or a split image
/// filesystem holding only images) or from imagefs (containers live on the image
/// filesystem), replacing any the user gave, as the kubelet's `UpdateContainerFsThresholds`.
pub fn update_containerfs_thresholds(thresholds: &mut Vec<Threshold>, dedicated_image_fs: bool) {
    thresholds.retain(|t| {
        !matches!(
            t.signal,
            Signal::ContainerFsAvailable | Signal::ContainerFsInodesFree
        )
    });
    // With a dedicated image filesystem, the runtime keeps the writable layers there too.
    let (bytes_from, inodes_from) = if dedicated_image_fs {
        (Signal::ImageFsAvailable, Signal::ImageFsInodesFree)
    } else {
        (Signal::NodeFsAvailable, Signal::NodeFsInodesFree)
    };
    let derived: Vec<Threshold> = thresholds
        .iter()
        .filter_map(|t| {
            if t.signal == bytes_from {
                Some(Threshold {
                    signal: Signal::ContainerFsAvailable,
                    ..*t
                })
            } else if t.signal == inodes_from {
                Some(Threshold {
                    signal: Signal::ContainerFsInodesFree,
                    ..*t
                })
            } else {
                None
            }
        })
        .collect();
    thresholds.extend(derived);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_map_to_resources_and_conditions() {
        assert_eq!(Signal::MemoryAvailable.resource(), Resource::Memory);
        assert_eq!(
            Signal::AllocatableMemoryAvailable.condition(),
            ConditionType::MemoryPressure
        );
        assert_eq!(Signal::ImageFsInodesFree.resource(), Resource::Inodes);
        assert_eq!(
            Signal::ContainerFsAvailable.condition(),
            ConditionType::DiskPressure
        );
        assert_eq!(Signal::PidAvailable.condition(), ConditionType::PIDPressure);
        assert_eq!(Resource::EphemeralStorage.as_str(), "ephemeral-storage");
    }

    #[test]
    fn percentages_become_quantities_of_capacity() {
        let t = Threshold::hard(Signal::NodeFsAvailable, ThresholdValue::Percentage(0.1));
        assert_eq!(t.value.quantity(1000), (100, Format::BinarySI));
        assert_eq!(t.quantity_text(10 << 30), "1Gi");
        let q = Threshold::hard(Signal::MemoryAvailable, ThresholdValue::bytes(100 << 20));
        assert_eq!(q.quantity_text(0), "100Mi");
    }

    #[test]
    fn allocatable_and_containerfs_thresholds_are_derived() {
        let mem = Threshold::hard(Signal::MemoryAvailable, ThresholdValue::bytes(100 << 20));
        let soft = Threshold::soft(
            Signal::MemoryAvailable,
            ThresholdValue::bytes(200 << 20),
            Duration::from_secs(60),
        );
        let mut v = vec![
            mem,
            soft,
            Threshold::hard(Signal::NodeFsAvailable, ThresholdValue::Percentage(0.1)),
            Threshold::hard(Signal::ImageFsAvailable, ThresholdValue::Percentage(0.15)),
            Threshold::hard(
                Signal::ContainerFsAvailable,
                ThresholdValue::Percentage(0.5),
            ),
        ];
        add_allocatable_thresholds(&mut v);
        let alloc: Vec<_> = v
            .iter()
            .filter(|t| t.signal == Signal::AllocatableMemoryAvailable)
            .collect();
        assert_eq!(alloc.len(), 1, "only the hard memory threshold is copied");
        update_containerfs_thresholds(&mut v, false);
        let cfs: Vec<_> = v
            .iter()
            .filter(|t| t.signal == Signal::ContainerFsAvailable)
            .collect();
        assert_eq!(cfs.len(), 1);
        assert_eq!(
            cfs[0].value,
            ThresholdValue::Percentage(0.1),
            "follows nodefs"
        );
        update_containerfs_thresholds(&mut v, true);
        let cfs: Vec<_> = v
            .iter()
            .filter(|t| t.signal == Signal::ContainerFsAvailable)
            .collect();
        assert_eq!(
            cfs[0].value,
            ThresholdValue::Percentage(0.15),
            "follows imagefs"
        );
    }
}
