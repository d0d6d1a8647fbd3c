//! The probe results store (`pkg/kubelet/prober/results`): the current result of each probe type
//! for each container ID. Workers write it; the pod worker reads it (through
//! [`super::ProberManager::verdicts`]) to decide kills and readiness. A change that matters to
//! the pod (a liveness or startup failure, readiness turning on or off, startup succeeding)
//! wakes the pod's worker through the `on_change` callback.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{ProbeResult, ProbeType};

/// Called with the pod UID when one of its results changed.
pub type OnChange = Arc<dyn Fn(&str) + Send + Sync>;

#[derive(Debug, Clone, Default)]
struct Entry {
    uid: Arc<str>,
    /// Indexed by [`ProbeType::index`].
    results: [Option<ProbeResult>; 3],
}

/// Results by container ID. Cheap to clone.
#[derive(Clone)]
pub struct Results {
    inner: Arc<Mutex<HashMap<Arc<str>, Entry>>>,
    on_change: OnChange,
}

impl std::fmt::Debug for Results {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Results")
            .field("containers", &self.inner.lock().len())
            .finish()
    }
}

impl Results {
    pub fn new(on_change: OnChange) -> Self {
        Self {
            inner: Arc::new(Mutex::new(HashMap::new())),
            on_change,
        }
    }

    /// Records `result`; returns whether it changed. `notify`: wake the pod's worker on a change
    /// (false for a worker's initial value, which the status already reflects).
    pub fn set(
        &self,
        ptype: ProbeType,
        container_id: &Arc<str>,
        uid: &Arc<str>,
        result: ProbeResult,
        notify: bool,
    ) -> bool {
        let changed = {
            let mut m = self.inner.lock();
            let e = match m.get_mut(&**container_id) {
                Some(e) => e,
                None => m.entry(container_id.clone()).or_insert_with(|| Entry {
                    uid: uid.clone(),
                    results: [None; 3],
                }),
            };
            let slot = &mut e.results[ptype.index()];
            let changed = *slot != Some(result);
            *slot = Some(result);
            changed
        };
        if changed && notify {
            (self.on_change)(uid);
        }
        changed
    }

    pub fn get(&self, ptype: ProbeType, container_id: &str) -> Option<ProbeResult> {
        self.inner
            .lock()
            .get(container_id)
            .and_then(|e| e.results[ptype.index()])
    }

    /// All three results of one container.
    pub fn get_all(&self, container_id: &str) -> [Option<ProbeResult>; 3] {
        self.inner
            .lock()
            .get(container_id)
            .map(|e| e.results)
            .unwrap_or([None; 3])
    }

    /// Forgets one probe type's result for a container (its worker moved on or stopped).
    pub fn remove(&self, ptype: ProbeType, container_id: &str) {
        let mut m = self.inner.lock();
        if let Some(e) = m.get_mut(container_id) {
            e.results[ptype.index()] = None;
            if e.results.iter().all(Option::is_none) {
                m.remove(container_id);
            }
        }
    }

    /// Forgets every result of a pod's containers.
    pub fn remove_pod(&self, uid: &str) {
        self.inner.lock().retain(|_, e| &*e.uid != uid);
    }

    /// How many containers have results (for tests and debugging).
    pub fn len(&self) -> usize {
        self.inner.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn changes_notify_once_and_pods_are_forgotten() {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let r = Results::new(Arc::new(move |uid| {
            assert_eq!(uid, "u");
            n2.fetch_add(1, Ordering::SeqCst);
        }));
        let id: Arc<str> = "c1".into();
        let uid: Arc<str> = "u".into();
        assert!(r.set(ProbeType::Readiness, &id, &uid, ProbeResult::Failure, false));
        assert_eq!(n.load(Ordering::SeqCst), 0);
        assert!(r.set(ProbeType::Readiness, &id, &uid, ProbeResult::Success, true));
        assert!(!r.set(ProbeType::Readiness, &id, &uid, ProbeResult::Success, true));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        assert_eq!(
            r.get(ProbeType::Readiness, "c1"),
            Some(ProbeResult::Success)
        );
        assert_eq!(r.get(ProbeType::Liveness, "c1"), None);
        r.set(ProbeType::Liveness, &id, &uid, ProbeResult::Success, false);
        r.remove(ProbeType::Readiness, "c1");
        assert_eq!(r.len(), 1);
        r.remove_pod("u");
        assert!(r.is_empty());
    }
}
