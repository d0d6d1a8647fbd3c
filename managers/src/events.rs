//! The local event recorder: what the kubelet would post as `v1.Event`s, kept in a bounded
//! in-memory store that the agent serves read-only now and that the API-server mode will
//! publish.
//!
//! Like client-go's event correlator, an event identical to one already stored (same object,
//! type, reason and message) is not stored twice: its `count` grows and its last timestamp
//! moves. The store keeps the [`EventRecorder::capacity`] most recently seen events. Every
//! change bumps a resource version, so a publisher can ask for what changed since it last
//! looked ([`EventRecorder::list_since`]).
//!
//! [`reason`] holds the kubelet's reason strings used by the managers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use crate::clock::Clock;

/// The kubelet's event reasons used by the managers (`pkg/kubelet/events` and the eviction,
/// OOM and node-status code).
pub mod reason {
    /// A pod evicted by the eviction manager (also the pod status reason).
    pub const EVICTED: &str = "Evicted";
    /// The eviction manager starts reclaiming a resource.
    pub const EVICTION_THRESHOLD_MET: &str = "EvictionThresholdMet";
    /// The kernel OOM killer ran for the whole node.
    pub const SYSTEM_OOM: &str = "SystemOOM";
    /// The kernel OOM killer killed a process of a pod's container.
    pub const OOM_KILLING: &str = "OOMKilling";
    /// Image GC could not free enough space.
    pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
    /// Image GC failed twice in a row.
    pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";
    /// Container GC failed twice in a row.
    pub const CONTAINER_GC_FAILED: &str = "ContainerGCFailed";
    /// The image filesystem reports no capacity.
    pub const INVALID_DISK_CAPACITY: &str = "InvalidDiskCapacity";
    /// Node condition transitions.
    pub const NODE_HAS_SUFFICIENT_MEMORY: &str = "NodeHasSufficientMemory";
    /// Node condition transitions.
    pub const NODE_HAS_INSUFFICIENT_MEMORY: &str = "NodeHasInsufficientMemory";
    /// Node condition transitions.
    pub const NODE_HAS_NO_DISK_PRESSURE: &str = "NodeHasNoDiskPressure";
    /// Node condition transitions.
    pub const NODE_HAS_DISK_PRESSURE: &str = "NodeHasDiskPressure";
    /// Node condition transitions.
    pub const NODE_HAS_SUFFICIENT_PID: &str = "NodeHasSufficientPID";
    /// Node condition transitions.
    pub const NODE_HAS_INSUFFICIENT_PID: &str = "NodeHasInsufficientPID";
}

/// `Normal` or `Warning`, as the API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Routine.
    Normal,
    /// Something to look at.
    Warning,
}

impl EventType {
    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// The object an event is about (`involvedObject`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ObjectRef {
    /// `Node` or `Pod`.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Its namespace; `None` for cluster-scoped objects (nodes).
    pub namespace: Option<String>,
    /// Its UID (a node's is its name in standalone mode, as the kubelet's node reference).
    pub uid: String,
}

impl ObjectRef {
    /// The reference to node `name`.
    pub fn node(name: &str) -> ObjectRef {
        ObjectRef {
            kind: "Node".into(),
            name: name.into(),
            namespace: None,
            uid: name.into(),
        }
    }

    /// The reference to a pod.
    pub fn pod(namespace: &str, name: &str, uid: &str) -> ObjectRef {
        ObjectRef {
            kind: "Pod".into(),
            name: name.into(),
            namespace: Some(namespace.into()),
            uid: uid.into(),
        }
    }
}

/// Where managers send events. The recorder implements it; tests use fakes that record.
pub trait EventSink: Send + Sync {
    /// Records one occurrence of an event about `object`.
    fn event(&self, object: &ObjectRef, kind: EventType, reason: &str, message: &str);
}

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Order of creation, unique per recorder (names the event with its first timestamp).
    pub seq: u64,
    /// The object it is about.
    pub object: ObjectRef,
    /// Normal or Warning.
    pub kind: EventType,
    /// Machine-readable reason (`Evicted`, `SystemOOM`, ...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Occurrences.
    pub count: u32,
    /// First occurrence.
    pub first_timestamp: SystemTime,
    /// Latest occurrence.
    pub last_timestamp: SystemTime,
    /// The resource version of its latest change.
    pub resource_version: u64,
}

type Key = (ObjectRef, EventType, String, String);

#[derive(Default)]
struct Store {
    events: HashMap<u64, Event>,
    by_key: HashMap<Key, u64>,
    next_seq: u64,
    resource_version: u64,
}

/// The bounded event store. Share it as `Arc<EventRecorder>`.
pub struct EventRecorder {
    host: String,
    capacity: usize,
    clock: Arc<dyn Clock>,
    store: Mutex<Store>,
}

impl std::fmt::Debug for EventRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventRecorder")
            .field("host", &self.host)
            .field("capacity", &self.capacity)
            .finish()
    }
}

/// Events kept by default.
pub const DEFAULT_CAPACITY: usize = 1000;

impl EventRecorder {
    /// A recorder for node `host` keeping at most `capacity` distinct events (at least 1).
    pub fn new(host: &str, capacity: usize, clock: Arc<dyn Clock>) -> Arc<EventRecorder> {
        Arc::new(EventRecorder {
            host: host.into(),
            capacity: capacity.max(1),
            clock,
            store: Mutex::new(Store::default()),
        })
    }

    /// The node name events are reported from (`source.host`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// How many distinct events are kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The current resource version (bumped by every change).
    pub fn resource_version(&self) -> u64 {
        self.store.lock().resource_version
    }

    /// Every stored event, oldest first (by last occurrence).
    pub fn list(&self) -> Vec<Event> {
        self.list_since(0)
    }

    /// Events changed after resource version `rv`, oldest change first.
    pub fn list_since(&self, rv: u64) -> Vec<Event> {
        let s = self.store.lock();
        let mut v: Vec<Event> = s
            .events
            .values()
            .filter(|e| e.resource_version > rv)
            .cloned()
            .collect();
        v.sort_by_key(|e| e.resource_version);
        v
    }
}

impl EventSink for EventRecorder {
    fn event(&self, object: &ObjectRef, kind: EventType, reason: &str, message: &str) {
        let now = self.clock.wall();
        let key: Key = (
            object.clone(),
            kind,
            reason.to_string(),
            message.to_string(),
        );
        let mut s = self.store.lock();
        s.resource_version += 1;
        let rv = s.resource_version;
        if let Some(seq) = s.by_key.get(&key).copied() {
            if let Some(e) = s.events.get_mut(&seq) {
                e.count = e.count.saturating_add(1);
                e.last_timestamp = now;
                e.resource_version = rv;
                return;
            }
        }
        if s.events.len() >= self.capacity {
            // Forget the event seen least recently.
            if let Some(old) = s
                .events
                .values()
                .min_by_key(|e| e.resource_version)
                .map(|e| e.seq)
            {
                if let Some(e) = s.events.remove(&old) {
                    s.by_key.remove(&(e.object, e.kind, e.reason, e.message));
                }
            }
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        s.by_key.insert(key, seq);
        s.events.insert(
            seq,
            Event {
                seq,
                object: object.clone(),
                kind,
                reason: reason.into(),
                message: message.into(),
                count: 1,
                first_timestamp: now,
                last_timestamp: now,
                resource_version: rv,
            },
        );
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! A sink that records every call, for the managers' tests.
    use super::*;

    /// Records `(object name, type, reason, message)` of every event.
    #[derive(Default)]
    pub struct RecordingSink {
        pub events: Mutex<Vec<(String, EventType, String, String)>>,
    }

    impl RecordingSink {
        pub fn reasons(&self) -> Vec<String> {
            self.events.lock().iter().map(|e| e.2.clone()).collect()
        }
        pub fn find(&self, reason: &str) -> Option<(String, EventType, String, String)> {
            self.events.lock().iter().find(|e| e.2 == reason).cloned()
        }
    }

    impl EventSink for RecordingSink {
        fn event(&self, object: &ObjectRef, kind: EventType, reason: &str, message: &str) {
            self.events
                .lock()
                .push((object.name.clone(), kind, reason.into(), message.into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use std::time::Duration;

    #[test]
    fn identical_events_are_counted_not_repeated() {
        let clock = FakeClock::new();
        let r = EventRecorder::new("node-a", 10, clock.clone());
        let node = ObjectRef::node("node-a");
        r.event(
            &node,
            EventType::Warning,
            reason::EVICTION_THRESHOLD_MET,
            "Attempting to reclaim memory",
        );
        clock.advance(Duration::from_secs(5));
        r.event(
            &node,
            EventType::Warning,
            reason::EVICTION_THRESHOLD_MET,
            "Attempting to reclaim memory",
        );
        let pod = ObjectRef::pod("default", "hog", "u1");
        r.event(
            &pod,
            EventType::Warning,
            reason::EVICTED,
            "The node was low on resource: memory. ",
        );
        let all = r.list();
        assert_eq!(all.len(), 2);
        let met = &all[0];
        assert_eq!(met.count, 2);
        assert_eq!(
            met.last_timestamp
                .duration_since(met.first_timestamp)
                .unwrap(),
            Duration::from_secs(5)
        );
        assert_eq!(all[1].object.kind, "Pod");
        assert_eq!(r.resource_version(), 3);
        assert_eq!(r.list_since(2).len(), 1);
    }

    #[test]
    fn the_store_is_bounded_and_forgets_the_stalest() {
        let r = EventRecorder::new("n", 3, FakeClock::new());
        let node = ObjectRef::node("n");
        for i in 0..3 {
            r.event(&node, EventType::Normal, "R", &format!("m{i}"));
        }
        // m0 seen again: it becomes the freshest; m1 is now the stalest.
        r.event(&node, EventType::Normal, "R", "m0");
        r.event(&node, EventType::Normal, "R", "m3");
        let msgs: Vec<String> = r.list().into_iter().map(|e| e.message).collect();
        assert_eq!(msgs, vec!["m2", "m0", "m3"]);
        // A forgotten event starts over with count 1.
        r.event(&node, EventType::Normal, "R", "m1");
        let m1 = r.list().into_iter().find(|e| e.message == "m1").unwrap();
        assert_eq!(m1.count, 1);
        assert_eq!(r.list().len(), 3);
    }
}
