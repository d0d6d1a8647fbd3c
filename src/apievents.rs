//! Events to the API server (core/v1), as client-go's event broadcaster with the kubelet's
//! settings: the agent's [`managers::EventRecorder`] (fed by the pod workers, prober, hooks,
//! volume manager, eviction, GC, OOM watcher, node conditions and node status) already
//! aggregates identical events (same object, type, reason and message: one entry with a count);
//! this publisher reads its changes and, through the [`Correlator`]:
//!
//! - POSTs a new event the first time it is seen, and PATCHes `count` and `lastTimestamp` of
//!   the object it created when it repeats (client-go's `EventCorrelator` / `recordToSink`);
//! - drops events over the spam filter: a token bucket per source and involved object
//!   (burst 25, one more every 5 minutes, as `EventSourceObjectSpamFilter`);
//! - limits the writes to `eventRecordQPS`/`eventBurst`.
//!
//! It never blocks the agent: the queue is bounded (1000, the broadcaster's), a write that gets
//! no answer is retried every 10 s up to 12 times (client-go's `maxTriesPerEvent`) and then dropped, and
//! every dropped event is counted ([`Publisher::dropped`]).

use std::collections::{HashMap, VecDeque};
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
    /// The API name and namespace of each recorded event already created, by its seq.
    created: HashMap<u64, (String, String)>,
    spam: HashMap<ObjectRef, TokenBucket>,
}

impl Correlator {
    pub fn new(host: &str) -> Self {
        Correlator {
            host: host.into(),
            created: HashMap::new(),
            spam: HashMap::new(),
        }
    }

    /// The action for `e` at `now`, or None when the spam filter drops it.
    pub fn decide(&mut self, e: &Recorded, now: Instant) -> Option<Action> {
        let bucket = self
            .spam
            .entry(e.object.clone())
            .or_insert_with(|| TokenBucket::new(SPAM_QPS, SPAM_BURST, now));
        if bucket.try_take(now).is_err() {
            return None;
        }
        if let Some((namespace, name)) = self.created.get(&e.seq) {
            return Some(Action::Update {
                namespace: namespace.clone(),
                name: name.clone(),
                count: e.count as i32,
                last_timestamp: serde_json::to_value(crate::events::api_time(e.last_timestamp))
                    .unwrap_or_default(),
            });
        }
        let mut ev = crate::events::to_api(e, &self.host);
        ev.metadata.resource_version = None;
        ev.metadata.creation_timestamp = None;
        let namespace = ev.metadata.namespace.clone().unwrap_or_default();
        let name = ev.metadata.name.clone().unwrap_or_default();
        self.created.insert(e.seq, (namespace, name));
        Some(Action::Create(Box::new(ev)))
    }

    /// Forgets an event the API never got, so that its next change creates it again.
    pub fn forget(&mut self, seq: u64) {
        self.created.remove(&seq);
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
        Publisher {
            client,
            recorder,
            correlator: Correlator::new(&host),
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
            while let Some((seq, action, tries)) = self.queue.pop_front() {
                if let Err(wait) = self.limiter.try_take(Instant::now()) {
                    self.queue.push_front((seq, action, tries));
                    tokio::time::sleep(wait).await;
                    continue;
                }
                match self.write(&action).await {
                    Ok(()) => {}
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
                        break;
                    }
                }
            }
            tokio::time::sleep(POLL).await;
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
}
