//! The node's resource-pressure conditions (`MemoryPressure`, `DiskPressure`, `PIDPressure`)
//! with the kubelet's reasons and messages, their heartbeat and transition times, and the
//! `NodeHas...` events the kubelet records when one changes ("Node n1 status is now:
//! NodeHasInsufficientMemory").
//!
//! The eviction manager decides which pressures hold (thresholds met, kept for the pressure
//! transition period); [`NodeConditions::update`] turns that into conditions. In standalone mode
//! the agent serves them read-only; the API-server mode will put them on the Node object.

use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::clock::Clock;
use crate::events::{reason, EventSink, EventType, ObjectRef};

/// A pressure condition type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionType {
    /// Memory signals met.
    MemoryPressure,
    /// Disk (nodefs, imagefs, containerfs) signals met.
    DiskPressure,
    /// `pid.available` met.
    PIDPressure,
}

impl ConditionType {
    /// Every pressure condition, in the order the kubelet reports them.
    pub const ALL: [ConditionType; 3] = [
        ConditionType::MemoryPressure,
        ConditionType::DiskPressure,
        ConditionType::PIDPressure,
    ];

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::MemoryPressure => "MemoryPressure",
            ConditionType::DiskPressure => "DiskPressure",
            ConditionType::PIDPressure => "PIDPressure",
        }
    }

    /// (reason, message, event) for a condition that is True (`pressure`) or False.
    pub fn texts(self, pressure: bool) -> (&'static str, &'static str, &'static str) {
        match (self, pressure) {
            (ConditionType::MemoryPressure, true) => (
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
                reason::NODE_HAS_INSUFFICIENT_MEMORY,
            ),
            (ConditionType::MemoryPressure, false) => (
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                reason::NODE_HAS_SUFFICIENT_MEMORY,
            ),
            (ConditionType::DiskPressure, true) => (
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
                reason::NODE_HAS_DISK_PRESSURE,
            ),
            (ConditionType::DiskPressure, false) => (
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                reason::NODE_HAS_NO_DISK_PRESSURE,
            ),
            (ConditionType::PIDPressure, true) => (
                "KubeletHasInsufficientPID",
                "kubelet has insufficient PID available",
                reason::NODE_HAS_INSUFFICIENT_PID,
            ),
            (ConditionType::PIDPressure, false) => (
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                reason::NODE_HAS_SUFFICIENT_PID,
            ),
        }
    }
}

impl std::fmt::Display for ConditionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One node condition as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCondition {
    /// Which condition.
    pub kind: ConditionType,
    /// True when under pressure.
    pub status: bool,
    /// Machine-readable reason.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: &'static str,
    /// When it was last confirmed.
    pub last_heartbeat: SystemTime,
    /// When its status last changed.
    pub last_transition: SystemTime,
}

/// The node's pressure conditions.
pub struct NodeConditions {
    node: ObjectRef,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn EventSink>,
    state: Mutex<Vec<NodeCondition>>,
}

impl NodeConditions {
    /// All three conditions False, each announced with its `NodeHas...` event as the kubelet
    /// does when it first sets them.
    pub fn new(node: &str, clock: Arc<dyn Clock>, sink: Arc<dyn EventSink>) -> Arc<Self> {
        let now = clock.wall();
        let node = ObjectRef::node(node);
        let state = ConditionType::ALL
            .iter()
            .map(|&kind| {
                let (reason, message, event) = kind.texts(false);
                sink.event(
                    &node,
                    EventType::Normal,
                    event,
                    &format!("Node {} status is now: {event}", node.name),
                );
                NodeCondition {
                    kind,
                    status: false,
                    reason,
                    message,
                    last_heartbeat: now,
                    last_transition: now,
                }
            })
            .collect();
        Arc::new(NodeConditions {
            node,
            clock,
            sink,
            state: Mutex::new(state),
        })
    }

    /// Sets the conditions: those in `pressure` True, the others False. Records an event for
    /// every condition that changes.
    pub fn update(&self, pressure: &[ConditionType]) {
        let now = self.clock.wall();
        let mut changed = Vec::new();
        {
            let mut st = self.state.lock();
            for c in st.iter_mut() {
                let want = pressure.contains(&c.kind);
                c.last_heartbeat = now;
                if c.status != want {
                    let (reason, message, event) = c.kind.texts(want);
                    c.status = want;
                    c.reason = reason;
                    c.message = message;
                    c.last_transition = now;
                    changed.push(event);
                }
            }
        }
        for event in changed {
            tracing::info!(node = %self.node.name, condition = event, "node condition changed");
            self.sink.event(
                &self.node,
                EventType::Normal,
                event,
                &format!("Node {} status is now: {event}", self.node.name),
            );
        }
    }

    /// The current conditions.
    pub fn snapshot(&self) -> Vec<NodeCondition> {
        self.state.lock().clone()
    }

    /// Whether `kind` is True now.
    pub fn is_true(&self, kind: ConditionType) -> bool {
        self.state.lock().iter().any(|c| c.kind == kind && c.status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::events::testing::RecordingSink;
    use std::time::Duration;

    #[test]
    fn transitions_are_timed_and_announced() {
        let clock = FakeClock::new();
        let sink = Arc::new(RecordingSink::default());
        let c = NodeConditions::new("n1", clock.clone(), sink.clone());
        assert_eq!(
            sink.reasons(),
            vec![
                "NodeHasSufficientMemory",
                "NodeHasNoDiskPressure",
                "NodeHasSufficientPID"
            ]
        );
        let t0 = c.snapshot()[0].last_transition;
        clock.advance(Duration::from_secs(3));
        c.update(&[ConditionType::MemoryPressure]);
        let (_, kind, reason, msg) = sink.events.lock().last().cloned().unwrap();
        assert_eq!(kind, EventType::Normal);
        assert_eq!(reason, "NodeHasInsufficientMemory");
        assert_eq!(msg, "Node n1 status is now: NodeHasInsufficientMemory");
        let mem = c.snapshot()[0].clone();
        assert!(mem.status);
        assert_eq!(mem.reason, "KubeletHasInsufficientMemory");
        assert_eq!(
            mem.last_transition.duration_since(t0).unwrap(),
            Duration::from_secs(3)
        );
        // No change, no event; the heartbeat still moves.
        clock.advance(Duration::from_secs(1));
        c.update(&[ConditionType::MemoryPressure]);
        assert_eq!(sink.events.lock().len(), 4);
        let disk = c.snapshot()[1].clone();
        assert_eq!(disk.last_transition, t0);
        assert!(disk.last_heartbeat > t0);
        c.update(&[]);
        assert_eq!(sink.reasons().last().unwrap(), "NodeHasSufficientMemory");
        assert!(!c.is_true(ConditionType::MemoryPressure));
    }
}
