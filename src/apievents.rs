//! Events to the API server (core/v1), as client-go's event broadcaster with the kubelet's
//! settings: the agent's [`managers::EventRecorder`] (fed by the pod workers, prober, hooks,
//! volume manager, eviction, GC, OOM watcher, node conditions and node status) already
//! aggregates identical events (same object, type, reason and message: one entry with a count);
//! this publisher reads its changes and, through the [`Correlator`]:
//!
//! - POSTs a new event the first time it is seen, and PATCHes `count` and `lastTimestamp` of
//!   the object it created when it repeats (client-go's `EventCorrelator` / `recordToSink`);
//!   an Event the server no longer has (its TTL passed) is created anew with the current count;
//! - drops events over the spam filter: a token bucket per source and involved object
//!   (burst 25, one more every 5 minutes, as `EventSourceObjectSpamFilter`);
//! - keeps its state bounded: both caches are LRU caches of [`CACHE_SIZE`] entries (client-go's
//!   `maxLruCacheEntries`), spam buckets idle long enough to be full again are dropped, and the
//!   names of created events the recorder no longer holds are forgotten;
//! - limits the writes to `eventRecordQPS`/`eventBurst`.
//!
//! It never blocks the agent: the queue is bounded (1000, the broadcaster's), a write that gets
//! no answer is retried every 10 s up to 12 times (client-go's `maxTriesPerEvent`) and then dropped, and
//! every dropped event is counted ([`Publisher::dropped`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, Patch, PatchParams, PostParams};
use managers::events::{Event as Recorded, EventRecorder, ObjectRef};
use tokio::time::Instant;

use crate::apiclient::ratelimit::TokenBucket;
use crate::apiclient::reachability::Reachability;

/// Events waiting to be written, at most (client-go's `maxQueuedEvents`).
pub const MAX_QUEUED: usize = 1000;
/// Attempts per event before it is dropped (`maxTriesPerEvent`).
pub const MAX_TRIES: u32 = 12;
/// The spam filter's burst per source and object (`defaultSpamBurst`).
pub const SPAM_BURST: u32 = 25;
/// The spam filter's refill: one event every 5 minutes (`defaultSpamQPS` = 1/300).
pub const SPAM_QPS: f64 = 1.0 / 300.0;
/// The wait after a write that got no answer (client-go's `sleepDuration`).
pub const RETRY: Duration = Duration::from_secs(10);
/// How often the recorder is read.
pub const POLL: Duration = Duration::from_millis(500);
/// Entries kept by each of the correlator's caches (client-go's `maxLruCacheEntries`).
pub const CACHE_SIZE: usize = 4096;
/// How often spam buckets idle for [`spam_idle`] are dropped.
const SPAM_SWEEP: Duration = Duration::from_secs(300);

/// How long a spam bucket must stay unused to be full again: dropping it then loses nothing
/// (a new bucket starts full).
pub fn spam_idle() -> Duration {
    Duration::from_secs_f64(f64::from(SPAM_BURST) / SPAM_QPS)
}

/// A map that keeps its `cap` most recently used entries.
struct Lru<K, V> {
    cap: usize,
    /// Each value with its use stamp (the key in `order`) and the time of its last use.
    map: HashMap<K, (V, u64, Instant)>,
    /// Keys by use stamp, least recently used first.
    order: BTreeMap<u64, K>,
    stamp: u64,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    fn new(cap: usize) -> Self {
        Lru {
            cap: cap.max(1),
            map: HashMap::new(),
            order: BTreeMap::new(),
            stamp: 0,
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// The value of `k`, marked used at `now`, or `make()` stored for it (evicting the least
    /// recently used entry when full).
    fn get_or_insert_with(&mut self, k: &K, now: Instant, make: impl FnOnce() -> V) -> &mut V {
        self.stamp += 1;
        let stamp = self.stamp;
        if let Some((_, old, _)) = self.map.get(k) {
            self.order.remove(old);
        } else {
            while self.map.len() >= self.cap {
                let Some((_, oldest)) = self.order.pop_first() else {
                    break;
                };
                self.map.remove(&oldest);
            }
            self.map.insert(k.clone(), (make(), stamp, now));
        }
        self.order.insert(stamp, k.clone());
        let e = self.map.get_mut(k).expect("just inserted");
        e.1 = stamp;
        e.2 = now;
        &mut e.0
    }

    /// The value of `k`, marked used at `now`.
    fn get(&mut self, k: &K, now: Instant) -> Option<&mut V> {
        if !self.map.contains_key(k) {
            return None;
        }
        Some(self.get_or_insert_with(k, now, || unreachable!("present")))
    }

    fn insert(&mut self, k: K, v: V, now: Instant) {
        let mut v = Some(v);
        let slot = self.get_or_insert_with(&k, now, || v.take().expect("taken once"));
        if let Some(v) = v {
            *slot = v;
        }
    }

    fn remove(&mut self, k: &K) -> Option<V> {
        let (v, stamp, _) = self.map.remove(k)?;
        self.order.remove(&stamp);
        Some(v)
    }

    /// Keeps the entries `keep` says yes to.
    fn retain(&mut self, mut keep: impl FnMut(&K, Instant) -> bool) {
        let order = &mut self.order;
        self.map.retain(|k, (_, stamp, used)| {
            let kept = keep(k, *used);
            if !kept {
                order.remove(stamp);
            }
            kept
        });
    }
}

/// What to do with one change of a recorded event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// POST it as a new Event.
    Create(Box<Event>),
    /// PATCH `count` and `lastTimestamp` of the Event named so.
    Update {
        namespace: String,
        name: String,
        count: i32,
        last_timestamp: serde_json::Value,
    },
}

/// Decides create / update / drop for each change of a recorded event.
pub struct Correlator {
    host: String,
    /// The API namespace and name of each recorded event already created, by its seq.
    created: Lru<u64, (String, String)>,
    spam: Lru<ObjectRef, TokenBucket>,
    /// When idle spam buckets were last dropped.
    swept: Option<Instant>,
}

impl Correlator {
    pub fn new(host: &str) -> Self {
        Self::with_capacity(host, CACHE_SIZE)
    }

    /// A correlator remembering at most `cap` created events and `cap` spam buckets.
    pub fn with_capacity(host: &str, cap: usize) -> Self {
        Correlator {
            host: host.into(),
            created: Lru::new(cap),
            spam: Lru::new(cap),
            swept: None,
        }
    }

    /// Created events and spam buckets remembered now.
    pub fn sizes(&self) -> (usize, usize) {
        (self.created.len(), self.spam.len())
    }

    /// The action for `e` at `now`, or None when the spam filter drops it.
    pub fn decide(&mut self, e: &Recorded, now: Instant) -> Option<Action> {
        self.sweep(now);
        let bucket = self.spam.get_or_insert_with(&e.object, now, || {
            TokenBucket::new(SPAM_QPS, SPAM_BURST, now)
        });
        if bucket.try_take(now).is_err() {
            return None;
        }
        if let Some((namespace, name)) = self.created.get(&e.seq, now) {
            return Some(Action::Update {
                namespace: namespace.clone(),
                name: name.clone(),
                count: e.count as i32,
                last_timestamp: serde_json::to_value(crate::events::api_time(e.last_timestamp))
                    .unwrap_or_default(),
            });
        }
        Some(self.create(e, now))
    }

    /// The creation of `e` as it is now (its current count), remembered as created. Past the
    /// spam filter: for an event that already passed it (its update found no Event).
    pub fn create(&mut self, e: &Recorded, now: Instant) -> Action {
        let mut ev = crate::events::to_api(e, &self.host);
        ev.metadata.resource_version = None;
        ev.metadata.creation_timestamp = None;
        let namespace = ev.metadata.namespace.clone().unwrap_or_default();
        let name = ev.metadata.name.clone().unwrap_or_default();
        self.created.insert(e.seq, (namespace, name), now);
        Action::Create(Box::new(ev))
    }

    /// Forgets an event the API never got (or no longer has), so that its next change creates
    /// it again.
    pub fn forget(&mut self, seq: u64) {
        self.created.remove(&seq);
    }

    /// Forgets the created events `live` says no to (those the recorder no longer holds: they
    /// never change again).
    pub fn retain_created(&mut self, live: impl Fn(u64) -> bool) {
        self.created.retain(|seq, _| live(*seq));
    }

    /// Drops the spam buckets unused for [`spam_idle`] (full again), every [`SPAM_SWEEP`].
    fn sweep(&mut self, now: Instant) {
        let last = *self.swept.get_or_insert(now);
        if now.saturating_duration_since(last) < SPAM_SWEEP {
            return;
        }
        self.swept = Some(now);
        let idle = spam_idle();
        self.spam
            .retain(|_, used| now.saturating_duration_since(used) < idle);
    }
}

/// The publisher task's state.
pub struct Publisher {
    client: kube::Client,
    recorder: Arc<EventRecorder>,
    correlator: Correlator,
    queue: VecDeque<(u64, Action, u32)>,
    limiter: TokenBucket,
    last_rv: u64,
    dropped: Arc<AtomicU64>,
    reach: Reachability,
}

impl Publisher {
    /// A publisher of `recorder`'s events, `qps`/`burst` writes per second (`qps` 0: no limit).
    pub fn new(
        client: kube::Client,
        recorder: Arc<EventRecorder>,
        qps: u32,
        burst: u32,
        reach: Reachability,
    ) -> Self {
        let host = recorder.host().to_string();
        // Every event the recorder holds can repeat: its name is never evicted while it is
        // held (the recorder's evicted events are forgotten in `collect`).
        let cap = CACHE_SIZE.max(2 * recorder.capacity());
        Publisher {
            client,
            recorder,
            correlator: Correlator::with_capacity(&host, cap),
            queue: VecDeque::new(),
            limiter: TokenBucket::new(f64::from(qps), burst, Instant::now()),
            last_rv: 0,
            dropped: Arc::new(AtomicU64::new(0)),
            reach,
        }
    }

    /// The count of events dropped (spam filter, full queue, too many failed writes).
    pub fn dropped(&self) -> Arc<AtomicU64> {
        self.dropped.clone()
    }

    fn drop_one(&self, why: &str) {
        let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1 || n.is_power_of_two() {
            tracing::warn!(
                dropped = n,
                reason = why,
                "events dropped before reaching the API server"
            );
        }
    }

    fn collect(&mut self) {
        let now = Instant::now();
        // The names of events the recorder evicted are of no more use (they never repeat):
        // forgotten when half as many again as the recorder holds are remembered (before the
        // cache is full, so a held event's name is never evicted).
        let held = self.recorder.capacity();
        if self.correlator.sizes().0 >= held + held.div_ceil(2) {
            let live: HashSet<u64> = self.recorder.list().iter().map(|e| e.seq).collect();
            self.correlator.retain_created(|seq| live.contains(&seq));
        }
        for e in self.recorder.list_since(self.last_rv) {
            self.last_rv = self.last_rv.max(e.resource_version);
            match self.correlator.decide(&e, now) {
                None => self.drop_one("spam filter"),
                Some(a) if self.queue.len() >= MAX_QUEUED => {
                    if matches!(a, Action::Create(_)) {
                        self.correlator.forget(e.seq);
                    }
                    self.drop_one("queue full")
                }
                Some(a) => {
                    // A newer count replaces a queued update of the same event.
                    if let Action::Update { .. } = &a {
                        if let Some(q) = self
                            .queue
                            .iter_mut()
                            .find(|(s, q, _)| *s == e.seq && matches!(q, Action::Update { .. }))
                        {
                            q.1 = a;
                            continue;
                        }
                    }
                    self.queue.push_back((e.seq, a, 0));
                }
            }
        }
    }

    async fn write(&self, a: &Action) -> Result<(), kube::Error> {
        let r = match a {
            Action::Create(ev) => {
                let ns = ev.metadata.namespace.clone().unwrap_or_default();
                let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
                api.create(&PostParams::default(), ev).await.map(|_| ())
            }
            Action::Update {
                namespace,
                name,
                count,
                last_timestamp,
            } => {
                let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
                let body = serde_json::json!({"count": count, "lastTimestamp": last_timestamp});
                api.patch(name, &PatchParams::default(), &Patch::Strategic(&body))
                    .await
                    .map(|_| ())
            }
        };
        self.reach.observe(&r);
        r
    }

    /// Publishes until aborted.
    pub async fn run(mut self) {
        loop {
            self.collect();
            self.flush().await;
            tokio::time::sleep(POLL).await;
        }
    }

    /// Writes the queue until it is empty or the server does not answer.
    async fn flush(&mut self) {
        while let Some((seq, action, tries)) = self.queue.pop_front() {
            if let Err(wait) = self.limiter.try_take(Instant::now()) {
                self.queue.push_front((seq, action, tries));
                tokio::time::sleep(wait).await;
                continue;
            }
            match self.write(&action).await {
                Ok(()) => {}
                // The Event to update is gone (its TTL passed): as client-go, created anew
                // with the event's current count.
                Err(kube::Error::Api(s))
                    if s.is_not_found() && matches!(action, Action::Update { .. }) =>
                {
                    self.correlator.forget(seq);
                    match self.recorder.list().into_iter().find(|e| e.seq == seq) {
                        Some(e) => {
                            tracing::debug!(reason = %e.reason, "event gone from the API server; creating it again");
                            let create = self.correlator.create(&e, Instant::now());
                            self.queue.push_front((seq, create, 0));
                        }
                        None => self.drop_one("rejected"),
                    }
                }
                // The API answered with an error status: as client-go, not retried.
                Err(kube::Error::Api(s)) => {
                    tracing::debug!(reason = %s.message, "event rejected by the API server");
                    if let Action::Create(_) = action {
                        self.correlator.forget(seq);
                    }
                    self.drop_one("rejected");
                }
                Err(e) => {
                    if tries + 1 >= MAX_TRIES {
                        tracing::debug!(error = %e, "event dropped after {MAX_TRIES} attempts");
                        if let Action::Create(_) = action {
                            self.correlator.forget(seq);
                        }
                        self.drop_one("API server unreachable");
                    } else {
                        self.queue.push_front((seq, action, tries + 1));
                    }
                    // As client-go: about 10 s between attempts while the server is away.
                    tokio::time::sleep(RETRY).await;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use managers::events::EventSink;
    use managers::EventType;

    #[test]
    fn first_create_then_patch_count() {
        let rec = EventRecorder::new("n1", 100, Arc::new(managers::SystemClock));
        let node = ObjectRef::node("n1");
        rec.event(&node, EventType::Normal, "Starting", "Starting kubelet.");
        let mut c = Correlator::new("n1");
        let now = Instant::now();
        let e = rec.list()[0].clone();
        let Some(Action::Create(ev)) = c.decide(&e, now) else {
            panic!("a new event is created")
        };
        assert_eq!(ev.reason.as_deref(), Some("Starting"));
        assert_eq!(ev.count, Some(1));
        assert!(ev.metadata.resource_version.is_none());
        assert_eq!(ev.metadata.namespace.as_deref(), Some("default"));
        rec.event(&node, EventType::Normal, "Starting", "Starting kubelet.");
        let e = rec.list()[0].clone();
        match c.decide(&e, now) {
            Some(Action::Update { name, count, .. }) => {
                assert_eq!(name, ev.metadata.name.unwrap());
                assert_eq!(count, 2);
            }
            other => panic!("a repeat is a count update: {other:?}"),
        }
        // Forgotten (never written): created again.
        c.forget(e.seq);
        assert!(matches!(c.decide(&e, now), Some(Action::Create(_))));
    }

    #[test]
    fn the_spam_filter_caps_events_per_object() {
        let rec = EventRecorder::new("n1", 1000, Arc::new(managers::SystemClock));
        let pod = ObjectRef::pod("default", "p", "u");
        for i in 0..30 {
            rec.event(&pod, EventType::Warning, "BackOff", &format!("m{i}"));
        }
        let other = ObjectRef::pod("default", "q", "v");
        rec.event(&other, EventType::Normal, "Pulled", "x");
        let mut c = Correlator::new("n1");
        let now = Instant::now();
        let decided: Vec<_> = rec.list().iter().map(|e| c.decide(e, now)).collect();
        let passed = decided.iter().filter(|d| d.is_some()).count();
        assert_eq!(passed, 25 + 1, "25 for p, 1 for q");
        // Five minutes later one more for p.
        let later = now + Duration::from_secs(301);
        let e = rec.list()[0].clone();
        assert!(c.decide(&e, later).is_some());
        assert!(c.decide(&e, later).is_none());
    }

    #[test]
    fn the_correlators_caches_stay_bounded() {
        let rec = EventRecorder::new("n1", 10, Arc::new(managers::SystemClock));
        let mut c = Correlator::with_capacity("n1", 64);
        let now = Instant::now();
        let mut last = None;
        for i in 0..1000 {
            let pod = ObjectRef::pod("default", &format!("p{i}"), &format!("u{i}"));
            rec.event(&pod, EventType::Normal, "Pulled", "x");
            let e = rec.list().into_iter().find(|e| e.object == pod).unwrap();
            assert!(matches!(c.decide(&e, now), Some(Action::Create(_))));
            assert!(c.sizes().0 <= 64 && c.sizes().1 <= 64);
            last = Some(e);
        }
        assert_eq!(c.sizes(), (64, 64), "the 64 most recently used");
        // The most recent event is still known: its repeat is an update.
        let e = last.unwrap();
        assert!(matches!(c.decide(&e, now), Some(Action::Update { .. })));
        // Buckets idle until full again are dropped at the next sweep: nothing is lost.
        let later = now + spam_idle() + SPAM_SWEEP;
        assert!(matches!(c.decide(&e, later), Some(Action::Update { .. })));
        assert_eq!(c.sizes().1, 1, "only the bucket just used");
        // Events the recorder no longer holds are forgotten.
        let held: HashSet<u64> = rec.list().iter().map(|e| e.seq).collect();
        c.retain_created(|seq| held.contains(&seq));
        assert_eq!(c.sizes().0, 10);
    }

    /// What the fake API server was sent: method, path and body.
    type Seen = Arc<parking_lot::Mutex<Vec<(String, String, serde_json::Value)>>>;

    /// A fake API server: POST answers 201 with the Event, each PATCH the next of `patches`.
    fn fake_api(patches: Vec<u16>) -> (kube::Client, Seen) {
        use axum::http::{Request, Response};
        use http_body_util::BodyExt;
        let seen: Seen = Arc::default();
        let patches = Arc::new(parking_lot::Mutex::new(VecDeque::from(patches)));
        let s = seen.clone();
        let svc = tower::service_fn(move |req: Request<kube::client::Body>| {
            let (seen, patches) = (s.clone(), patches.clone());
            async move {
                let method = req.method().to_string();
                let path = req.uri().path().to_string();
                let bytes = req.into_body().collect().await.unwrap().to_bytes();
                let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                seen.lock().push((method.clone(), path, body.clone()));
                let (code, reply) = match method.as_str() {
                    "POST" => (201, body),
                    _ => match patches.lock().pop_front().unwrap_or(200) {
                        200 => (
                            200,
                            serde_json::json!({"apiVersion": "v1", "kind": "Event",
                                "metadata": {"name": "e", "namespace": "default"},
                                "involvedObject": {}}),
                        ),
                        code => (
                            code,
                            serde_json::json!({"kind": "Status", "apiVersion": "v1",
                                "status": "Failure", "reason": "NotFound", "code": code,
                                "message": "events \"e\" not found"}),
                        ),
                    },
                };
                Ok::<_, std::convert::Infallible>(
                    Response::builder()
                        .status(code)
                        .header("content-type", "application/json")
                        .body(kube::client::Body::from(reply.to_string().into_bytes()))
                        .unwrap(),
                )
            }
        });
        (kube::Client::new(svc, "default"), seen)
    }

    #[tokio::test]
    async fn an_event_gone_from_the_server_is_created_again_with_its_count() {
        let (client, seen) = fake_api(vec![404, 200]);
        let rec = EventRecorder::new("n1", 100, Arc::new(managers::SystemClock));
        let mut p = Publisher::new(client, rec.clone(), 0, 1, Reachability::default());
        let node = ObjectRef::node("n1");
        for _ in 0..3 {
            rec.event(&node, EventType::Normal, "Starting", "Starting kubelet.");
            p.collect();
            p.flush().await;
        }
        let seen = seen.lock().clone();
        let methods: Vec<&str> = seen.iter().map(|(m, _, _)| m.as_str()).collect();
        assert_eq!(methods, ["POST", "PATCH", "POST", "PATCH"], "{seen:?}");
        let name = seen[0].2["metadata"]["name"].as_str().unwrap().to_string();
        assert!(seen[1].1.ends_with(&format!("/events/{name}")));
        // The 404 forgot the old one: created anew, with the current count...
        assert_eq!(seen[2].2["count"], 2);
        assert_eq!(seen[2].2["metadata"]["name"], name.as_str());
        // ...and its next repeat updates the new one.
        assert!(seen[3].1.ends_with(&format!("/events/{name}")));
        assert_eq!(seen[3].2["count"], 3);
        assert_eq!(p.dropped().load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn names_of_events_the_recorder_evicted_are_forgotten() {
        let (client, _) = fake_api(vec![]);
        let rec = EventRecorder::new("n1", 4, Arc::new(managers::SystemClock));
        let mut p = Publisher::new(client, rec.clone(), 0, 1, Reachability::default());
        for i in 0..100 {
            let pod = ObjectRef::pod("default", &format!("p{i}"), &format!("u{i}"));
            rec.event(&pod, EventType::Normal, "Pulled", "x");
            p.collect();
            assert!(p.correlator.sizes().0 <= 6, "{:?}", p.correlator.sizes());
        }
    }
}
