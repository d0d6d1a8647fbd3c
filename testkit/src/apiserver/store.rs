//! The in-memory object store: one global resourceVersion counter (as etcd's revision), one
//! sorted table per resource, and per resource a bounded history of change events (as
//! kube-apiserver's watch cache) that serves watches and reconstructs the state at an older
//! resourceVersion (for `resourceVersionMatch=Exact` and paged lists). A version older than a
//! resource's history is "compacted": asking for it is 410 Gone. Watchers are woken only by
//! changes to their own resource. The whole state is snapshotted to a JSON file and reloaded
//! at start, so resourceVersions continue across restarts, as they would with etcd.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::util;

pub type Obj = Arc<Value>;

/// `(namespace, name)`; cluster-scoped objects have an empty namespace. Sorted as etcd's keys.
pub type Key = (String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change. `prev` is the state before it (for modifications and deletions).
#[derive(Debug)]
pub struct Event {
    pub rv: u64,
    pub resource: &'static str,
    pub kind: EventType,
    pub object: Obj,
    pub prev: Option<Obj>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("too old resource version: {requested} ({oldest})")]
    Compacted { requested: u64, oldest: u64 },
    #[error("failed to read snapshot {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("snapshot {path} is not valid: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("failed to write snapshot {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One resource's recent changes.
#[derive(Default)]
struct History {
    events: VecDeque<Arc<Event>>,
    /// Every event of this resource above this version is in `events`.
    start: u64,
    /// The version of the last change to this resource.
    last: u64,
}

pub struct Inner {
    rv: u64,
    tables: HashMap<&'static str, BTreeMap<Key, Obj>>,
    history: HashMap<&'static str, History>,
    /// The version the histories start from (the snapshot's, after a restart).
    base: u64,
    capacity: usize,
    saved_rv: u64,
    touched: Vec<&'static str>,
}

pub struct Store {
    inner: Mutex<Inner>,
    /// Any change.
    notify: watch::Sender<u64>,
    /// Changes per resource.
    per_resource: Mutex<HashMap<&'static str, watch::Sender<u64>>>,
}

impl Store {
    pub fn new(capacity: usize) -> Store {
        let (notify, _) = watch::channel(0);
        Store {
            inner: Mutex::new(Inner {
                rv: 0,
                tables: HashMap::new(),
                history: HashMap::new(),
                base: 0,
                capacity: capacity.max(1),
                saved_rv: 0,
                touched: Vec::new(),
            }),
            notify,
            per_resource: Mutex::new(HashMap::new()),
        }
    }

    /// Wakes whenever the resourceVersion moves.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    /// Wakes whenever a resource changes.
    pub fn subscribe_to(&self, res: &'static str) -> watch::Receiver<u64> {
        self.per_resource
            .lock()
            .entry(res)
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    pub fn read<R>(&self, f: impl FnOnce(&Inner) -> R) -> R {
        f(&self.inner.lock())
    }

    /// Run one transaction; watchers are woken once it is over.
    pub fn write<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let (r, rv, touched) = {
            let mut g = self.inner.lock();
            let r = f(&mut g);
            let touched = std::mem::take(&mut g.touched);
            (r, g.rv, touched)
        };
        if !touched.is_empty() {
            let senders = self.per_resource.lock();
            for res in touched {
                if let Some(tx) = senders.get(res) {
                    tx.send_replace(rv);
                }
            }
        }
        self.notify.send_if_modified(|cur| {
            if *cur != rv {
                *cur = rv;
                true
            } else {
                false
            }
        });
        r
    }

    pub fn current_rv(&self) -> u64 {
        self.inner.lock().rv
    }

    /// Load a snapshot written by [`Store::save`]; an absent file leaves the store empty.
    pub fn load(&self, path: &Path) -> Result<bool, StoreError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => {
                return Err(StoreError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.display().to_string(),
            reason,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        let rv = v["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| corrupt("resourceVersion missing".into()))?;
        let mut g = self.inner.lock();
        g.tables.clear();
        if let Some(objs) = v["objects"].as_object() {
            for (res, list) in objs {
                let Some(def) = super::registry::by_key(res) else {
                    return Err(corrupt(format!("unknown resource {res}")));
                };
                let table = g.tables.entry(def.key()).or_default();
                for o in list.as_array().into_iter().flatten() {
                    let key = (util::namespace(o).to_string(), util::name(o).to_string());
                    table.insert(key, Arc::new(o.clone()));
                }
            }
        }
        g.rv = rv;
        g.history.clear();
        g.base = rv;
        g.saved_rv = rv;
        drop(g);
        self.notify.send_replace(rv);
        Ok(true)
    }

    /// Write the state atomically (temp file + rename) if it changed since the last save.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), StoreError> {
        let (doc, rv) = {
            let g = self.inner.lock();
            if !force && g.saved_rv == g.rv {
                return Ok(());
            }
            let mut objects = serde_json::Map::new();
            let mut keys: Vec<_> = g.tables.keys().copied().collect();
            keys.sort_unstable();
            for k in keys {
                let list: Vec<Value> = g.tables[k].values().map(|o| (**o).clone()).collect();
                objects.insert(k.to_string(), Value::Array(list));
            }
            (
                json!({"resourceVersion": g.rv.to_string(), "objects": objects}),
                g.rv,
            )
        };
        let err = |source| StoreError::Write {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec(&doc).map_err(|e| err(std::io::Error::other(e)))?;
        std::fs::write(&tmp, bytes).map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)?;
        self.inner.lock().saved_rv = rv;
        Ok(())
    }
}

impl Inner {
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// The oldest version a watch or an exact list of `res` can start from.
    pub fn oldest_rv(&self, res: &'static str) -> u64 {
        self.history
            .get(res)
            .map_or(self.base, |h| h.start.max(self.base))
    }

    /// The version of the last change to `res` (0 if none since start).
    pub fn last_change(&self, res: &'static str) -> u64 {
        self.history.get(res).map_or(0, |h| h.last)
    }

    pub fn get(&self, res: &'static str, ns: &str, name: &str) -> Option<Obj> {
        self.tables
            .get(res)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// The objects of a resource, optionally in one namespace, in key order.
    pub fn list(&self, res: &'static str, ns: Option<&str>) -> Vec<(Key, Obj)> {
        let Some(t) = self.tables.get(res) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => t
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            None => t.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        }
    }

    pub fn count(&self, res: &'static str) -> usize {
        self.tables.get(res).map_or(0, BTreeMap::len)
    }

    /// The state of a resource at an older resourceVersion, rolled back from its history.
    pub fn list_at(
        &self,
        res: &'static str,
        ns: Option<&str>,
        rv: u64,
    ) -> Result<Vec<(Key, Obj)>, StoreError> {
        if rv >= self.rv {
            return Ok(self.list(res, ns));
        }
        let oldest = self.oldest_rv(res);
        if rv < oldest {
            return Err(StoreError::Compacted {
                requested: rv,
                oldest,
            });
        }
        let mut state: BTreeMap<Key, Obj> = self.list(res, ns).into_iter().collect();
        let events = self.history.get(res).map(|h| &h.events);
        for e in events.into_iter().flatten().rev() {
            if e.rv <= rv {
                break;
            }
            let key = (
                util::namespace(&e.object).to_string(),
                util::name(&e.object).to_string(),
            );
            if ns.is_some_and(|n| n != key.0) {
                continue;
            }
            match e.kind {
                EventType::Added => {
                    state.remove(&key);
                }
                EventType::Modified | EventType::Deleted => {
                    if let Some(p) = &e.prev {
                        state.insert(key, p.clone());
                    }
                }
            }
        }
        Ok(state.into_iter().collect())
    }

    /// Changes of `res` after `rv`, or `Compacted` when some of them are gone.
    pub fn events_after(&self, res: &'static str, rv: u64) -> Result<Vec<Arc<Event>>, StoreError> {
        let oldest = self.oldest_rv(res);
        if rv < oldest {
            return Err(StoreError::Compacted {
                requested: rv,
                oldest,
            });
        }
        let Some(h) = self.history.get(res) else {
            return Ok(Vec::new());
        };
        if rv >= h.last {
            return Ok(Vec::new());
        }
        let idx = h.events.partition_point(|e| e.rv <= rv);
        Ok(h.events.range(idx..).cloned().collect())
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, ev: Event) {
        let res = ev.resource;
        if !self.touched.contains(&res) {
            self.touched.push(res);
        }
        let cap = self.capacity;
        let base = self.base;
        let h = self.history.entry(res).or_insert_with(|| History {
            start: base,
            ..Default::default()
        });
        h.last = ev.rv;
        h.events.push_back(Arc::new(ev));
        while h.events.len() > cap {
            if let Some(old) = h.events.pop_front() {
                h.start = old.rv;
            }
        }
    }

    /// Insert a new object; sets its resourceVersion.
    pub fn create(&mut self, res: &'static str, mut obj: Value) -> Obj {
        let rv = self.next_rv();
        util::meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let key = (
            util::namespace(&obj).to_string(),
            util::name(&obj).to_string(),
        );
        let obj = Arc::new(obj);
        let prev = self.tables.entry(res).or_default().insert(key, obj.clone());
        self.record(Event {
            rv,
            resource: res,
            kind: if prev.is_some() {
                EventType::Modified
            } else {
                EventType::Added
            },
            object: obj.clone(),
            prev,
        });
        obj
    }

    /// Replace an existing object; sets its resourceVersion.
    pub fn update(&mut self, res: &'static str, obj: Value) -> Obj {
        self.create(res, obj)
    }

    /// Remove an object. The returned (and watched) object carries the deletion's
    /// resourceVersion, as etcd's delete revision.
    pub fn delete(&mut self, res: &'static str, ns: &str, name: &str) -> Option<Obj> {
        let key = (ns.to_string(), name.to_string());
        let prev = self.tables.get_mut(res)?.remove(&key)?;
        let rv = self.next_rv();
        let mut last = (*prev).clone();
        util::meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        let last = Arc::new(last);
        self.record(Event {
            rv,
            resource: res,
            kind: EventType::Deleted,
            object: last.clone(),
            prev: Some(prev),
        });
        Some(last)
    }

    /// Every stored object of every resource (for the garbage collector).
    pub fn all(&self) -> Vec<(&'static str, Obj)> {
        let mut out = Vec::new();
        for (res, t) in &self.tables {
            for o in t.values() {
                out.push((*res, o.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(name: &str, v: i32) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns"}, "data": {"v": v}})
    }

    #[test]
    fn versions_grow_and_history_rolls_back() {
        let s = Store::new(100);
        s.write(|g| {
            g.create("configmaps", obj("a", 1));
            g.create("configmaps", obj("b", 1));
        });
        let rv2 = s.current_rv();
        s.write(|g| {
            g.update("configmaps", obj("a", 2));
            g.delete("configmaps", "ns", "b");
            g.create("configmaps", obj("c", 1));
        });
        let now = s.read(|g| g.list("configmaps", None));
        assert_eq!(now.len(), 2);
        let then = s
            .read(|g| g.list_at("configmaps", Some("ns"), rv2))
            .unwrap();
        let names: Vec<_> = then.iter().map(|(k, _)| k.1.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(then[0].1["data"]["v"], 1);
        let evs = s.read(|g| g.events_after("configmaps", rv2)).unwrap();
        assert_eq!(evs.len(), 3);
        assert_eq!(evs[1].kind, EventType::Deleted);
        assert_eq!(util::resource_version(&evs[1].object), "4");
    }

    #[test]
    fn a_small_history_compacts() {
        let s = Store::new(2);
        for i in 0..5 {
            s.write(|g| {
                g.create("configmaps", obj(&format!("o{i}"), i));
            });
        }
        let err = s.read(|g| g.events_after("configmaps", 1)).unwrap_err();
        assert!(matches!(
            err,
            StoreError::Compacted {
                requested: 1,
                oldest: 3
            }
        ));
        assert_eq!(
            s.read(|g| g.events_after("configmaps", 3)).unwrap().len(),
            2
        );
        // Another resource's history is its own: an idle resource does not expire.
        assert!(s.read(|g| g.events_after("secrets", 1)).unwrap().is_empty());
    }

    #[test]
    fn snapshots_round_trip_with_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let s = Store::new(10);
        s.write(|g| {
            g.create("configmaps", obj("a", 1));
        });
        s.save(&path, true).unwrap();
        let t = Store::new(10);
        assert!(t.load(&path).unwrap());
        assert_eq!(t.current_rv(), 1);
        assert!(t.read(|g| g.get("configmaps", "ns", "a")).is_some());
        assert!(t.read(|g| g.events_after("configmaps", 0)).is_err());
        assert!(t
            .read(|g| g.events_after("configmaps", 1))
            .unwrap()
            .is_empty());
    }
}
