//! The pod lifecycle event generator (`pkg/kubelet/pleg/generic.go`). containerd 1.6 does not
//! implement GetContainerEvents, so the PLEG relists: every period it lists this agent's
//! sandboxes and containers, compares their states with the previous relist, and sends one
//! event per change to the sync loop, which wakes the owning pod worker. It also records relist
//! health (a relist older than 3 minutes fails `/healthz`), the relist metrics and the running
//! pod/container gauges, and keeps the cAdvisor names table current. A relist's events go to the
//! sync loop together, as one batch, so that a pod with several changes in one relist (its
//! sandbox and its container started, say) wakes its worker once, not once per event. Relists
//! read lean lists (IDs and states only); only the objects that came since the last relist are
//! read in full (by ID), and gone ones are dropped from the names table, so a relist decodes the
//! labels and annotations of new objects alone.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proto::cri::{self, lean};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cadvisor::names::RuntimeNames;
use crate::health::Health;
use crate::kuberuntime::{labels, RuntimeError, RuntimeService};
use crate::metrics::Metrics;

/// What happened to a container (or sandbox) of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlegEventType {
    ContainerStarted,
    ContainerDied,
    ContainerRemoved,
    ContainerChanged,
    /// Sent for every pod after the runtime comes back, so workers resync.
    PodSync,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlegEvent {
    pub pod_uid: String,
    pub kind: PlegEventType,
    /// The container or sandbox ID concerned.
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Exited,
    Unknown,
    NonExistent,
}

fn container_state(s: i32) -> State {
    match cri::ContainerState::try_from(s) {
        Ok(cri::ContainerState::ContainerRunning) => State::Running,
        Ok(cri::ContainerState::ContainerExited) => State::Exited,
        // Created counts as unknown for the PLEG, as in the kubelet.
        _ => State::Unknown,
    }
}

fn sandbox_state(s: i32) -> State {
    if s == cri::PodSandboxState::SandboxReady as i32 {
        State::Running
    } else {
        State::Exited
    }
}

/// The events for one object going from `old` to `new` (`generateEvents`).
fn events_for(uid: &str, id: &str, old: State, new: State, out: &mut Vec<PlegEvent>) {
    if old == new {
        return;
    }
    let mut push = |kind| {
        out.push(PlegEvent {
            pod_uid: uid.to_string(),
            kind,
            id: id.to_string(),
        })
    };
    match new {
        State::Running => push(PlegEventType::ContainerStarted),
        State::Exited => push(PlegEventType::ContainerDied),
        State::Unknown => push(PlegEventType::ContainerChanged),
        State::NonExistent => {
            if old != State::Exited {
                push(PlegEventType::ContainerDied);
            }
            push(PlegEventType::ContainerRemoved);
        }
    }
}

/// What the PLEG knows of one sandbox or container.
#[derive(Debug)]
struct Known {
    /// The pod's UID.
    uid: String,
    state: State,
    /// The last relist that listed it.
    seen: u64,
}

/// A sandbox or container that a relist listed for the first time.
struct Added<'a> {
    id: &'a str,
    /// `None` for a container whose sandbox is unknown: its pod UID label is read from a full
    /// list.
    uid: Option<String>,
    state: State,
}

/// What one relist found, against what the previous relists knew; nothing is applied yet, so
/// a relist that fails half-way loses no event.
struct Changes<'a> {
    relist: u64,
    /// Known objects listed again.
    seen: usize,
    /// Known objects whose state changed: ID and new state.
    changed: Vec<(&'a str, State)>,
    added: Vec<Added<'a>>,
}

/// Every sandbox and container of the last relist by ID, updated in place by each relist
/// (`podRecords` in the kubelet). A relist in which nothing changed allocates nothing here.
#[derive(Debug, Default)]
struct Tracker {
    objects: HashMap<String, Known>,
    relists: u64,
}

impl Tracker {
    /// Starts a relist.
    fn begin<'a>(&mut self) -> Changes<'a> {
        self.relists += 1;
        Changes {
            relist: self.relists,
            seen: 0,
            changed: Vec::new(),
            added: Vec::new(),
        }
    }

    /// Notes that the relist listed `id` in `state`; `false` when `id` is new (the caller then
    /// adds it to `ch.added` with its pod UID).
    fn scan<'a>(&mut self, ch: &mut Changes<'a>, id: &'a str, state: State) -> bool {
        let Some(k) = self.objects.get_mut(id) else {
            return false;
        };
        k.seen = ch.relist;
        ch.seen += 1;
        if k.state != state {
            ch.changed.push((id, state));
        }
        true
    }

    /// The pod UID of a known object.
    fn uid(&self, id: &str) -> Option<&str> {
        self.objects.get(id).map(|k| k.uid.as_str())
    }

    /// Whether the set of IDs differs from the previous relist's.
    fn ids_changed(&self, ch: &Changes<'_>) -> bool {
        !ch.added.is_empty() || self.objects.len() > ch.seen
    }

    /// Applies a relist's changes; returns their events, or none when `events` is false (the
    /// first relist reports no changes, as in the kubelet).
    fn apply(&mut self, ch: Changes<'_>, events: bool) -> Vec<PlegEvent> {
        let mut out = Vec::new();
        for (id, state) in ch.changed {
            if let Some(k) = self.objects.get_mut(id) {
                events_for(&k.uid, id, k.state, state, &mut out);
                k.state = state;
            }
        }
        let added = ch.added.len();
        for a in ch.added {
            let uid = a.uid.unwrap_or_default();
            events_for(&uid, a.id, State::NonExistent, a.state, &mut out);
            self.objects.insert(
                a.id.to_string(),
                Known {
                    uid,
                    state: a.state,
                    seen: ch.relist,
                },
            );
        }
        if self.objects.len() > ch.seen + added {
            self.objects.retain(|id, k| {
                if k.seen == ch.relist {
                    return true;
                }
                events_for(&k.uid, id, k.state, State::NonExistent, &mut out);
                false
            });
        }
        if !events {
            out.clear();
        }
        out
    }

    /// The UIDs of every pod with a sandbox or container.
    fn pods(&self) -> HashSet<&str> {
        self.objects.values().map(|k| k.uid.as_str()).collect()
    }
}

/// At most this many new sandboxes and containers in one relist are fetched one by one for the
/// names table; more are cheaper as one full list.
pub const INCREMENTAL_MAX: usize = 16;

/// The cAdvisor names table the PLEG keeps up to date.
struct NamesFeed {
    names: Arc<RuntimeNames>,
    pause_image: String,
    /// Whether the table may lack a sandbox or container of the last relist, or hold one that
    /// is gone: before the first build, and when the full lists it was built from did not
    /// hold the same IDs as that relist's lean lists (an object came or went in between).
    stale: bool,
}

/// New containers whose sandbox was not listed take their pod UID from their label (empty
/// when `full` lacks them too).
fn uids_from_labels(added: &mut [Added<'_>], full: &[cri::Container]) {
    for a in added.iter_mut().filter(|a| a.uid.is_none()) {
        let label = full
            .iter()
            .find(|c| c.id == a.id)
            .and_then(|c| c.labels.get(labels::POD_UID_LABEL));
        a.uid = Some(label.cloned().unwrap_or_default());
    }
}

/// The relisting event generator.
///
/// Every relist uses the lean lists ([`RuntimeService::list_lean`]: IDs, states, the sandbox's
/// pod UID, the container's sandbox), which cost a fraction of the full ones; a container's pod
/// is its sandbox's. Full objects are read only when something needs them: for the names table,
/// the sandboxes and containers it lacks, each by a list filtered by its ID (all of them in one
/// full list on the first relist, or when more than [`INCREMENTAL_MAX`] came at once); and a
/// new container whose sandbox is unknown (created between the two lists), whose pod is then
/// read from its `io.kubernetes.pod.uid` label.
pub struct Pleg {
    runtime: RuntimeService,
    metrics: Metrics,
    health: Health,
    period: Duration,
    /// One message per relist with events: all of them.
    tx: mpsc::Sender<Vec<PlegEvent>>,
    known: Tracker,
    /// A relist has succeeded: later ones report changes.
    listed: bool,
    last_relist: Option<Instant>,
    runtime_was_down: bool,
    names: Option<NamesFeed>,
}

impl Pleg {
    pub fn new(
        runtime: RuntimeService,
        metrics: Metrics,
        health: Health,
        period: Duration,
        tx: mpsc::Sender<Vec<PlegEvent>>,
    ) -> Self {
        Self {
            runtime,
            metrics,
            health,
            period,
            tx,
            known: Tracker::default(),
            listed: false,
            last_relist: None,
            runtime_was_down: false,
            names: None,
        }
    }

    /// Keeps `names` (the cAdvisor API's container identities) up to date: it is rebuilt from
    /// the full lists on the first relist and whenever a sandbox or container came or went;
    /// sandboxes are shown with `pause_image`.
    pub fn with_names(mut self, names: Arc<RuntimeNames>, pause_image: &str) -> Self {
        self.names = Some(NamesFeed {
            names,
            pause_image: pause_image.to_string(),
            stale: true,
        });
        self
    }

    /// Relists forever, every period.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.relist().await.is_err() && self.tx.is_closed() {
                return;
            }
        }
    }

    /// A list failed: the runtime is down until a relist succeeds.
    fn list_failed(&mut self, e: RuntimeError) -> String {
        if !self.runtime_was_down {
            tracing::error!(error = %e, "PLEG relist failed: container runtime unreachable");
        }
        self.runtime_was_down = true;
        self.health.runtime_failed(e.to_string());
        e.to_string()
    }

    /// The full lists, for the names table and for new containers of unknown sandboxes:
    /// rebuilds the table and fills in those containers' pod UIDs from their labels.
    async fn full_lists(
        &mut self,
        sandboxes: &[lean::PodSandbox],
        containers: &[lean::Container],
        added: &mut [Added<'_>],
    ) -> Result<(), RuntimeError> {
        let (full_sandboxes, full_containers) = tokio::try_join!(
            self.runtime.list_pod_sandboxes(None),
            self.runtime.list_containers(None)
        )?;
        uids_from_labels(added, &full_containers);
        if let Some(feed) = &mut self.names {
            feed.names
                .update(&full_sandboxes, &full_containers, &feed.pause_image);
            let lean: HashSet<&str> = sandboxes
                .iter()
                .map(|s| s.id.as_str())
                .chain(containers.iter().map(|c| c.id.as_str()))
                .collect();
            feed.stale = full_sandboxes.len() + full_containers.len() != lean.len()
                || !full_sandboxes
                    .iter()
                    .map(|s| s.id.as_str())
                    .chain(full_containers.iter().map(|c| c.id.as_str()))
                    .all(|id| lean.contains(id));
        }
        Ok(())
    }

    /// What came and went since the names table was last brought up to date, fetched by ID:
    /// new sandboxes and containers are listed one by one (a filtered list each), gone ones
    /// dropped, and new containers of unknown sandboxes get their pod UIDs from their labels.
    /// More than [`INCREMENTAL_MAX`] new objects are read with the full lists instead.
    async fn fetch_new(
        &mut self,
        sandboxes: &[lean::PodSandbox],
        containers: &[lean::Container],
        added: &mut [Added<'_>],
    ) -> Result<(), RuntimeError> {
        let table = self.names.as_ref().map(|f| f.names.ids());
        let is_new = |id: &str| match &table {
            Some(t) => !t.contains(id),
            None => false,
        };
        let new_sandboxes: Vec<&str> = sandboxes
            .iter()
            .map(|s| s.id.as_str())
            .filter(|id| is_new(id))
            .collect();
        // Containers the table lacks, and those whose pod only their labels can tell.
        let new_containers: Vec<&str> = containers
            .iter()
            .map(|c| c.id.as_str())
            .filter(|id| is_new(id) || added.iter().any(|a| a.id == *id && a.uid.is_none()))
            .collect();
        if new_sandboxes.len() + new_containers.len() > INCREMENTAL_MAX {
            return self.full_lists(sandboxes, containers, added).await;
        }
        let rt = &self.runtime;
        let (got_sandboxes, got_containers) = tokio::try_join!(
            futures_util::future::try_join_all(
                new_sandboxes.iter().map(|id| rt.pod_sandbox_by_id(id))
            ),
            futures_util::future::try_join_all(
                new_containers.iter().map(|id| rt.container_by_id(id))
            )
        )?;
        let got_sandboxes: Vec<cri::PodSandbox> = got_sandboxes.into_iter().flatten().collect();
        let got_containers: Vec<cri::Container> = got_containers.into_iter().flatten().collect();
        uids_from_labels(added, &got_containers);
        if let (Some(feed), Some(table)) = (&mut self.names, &table) {
            let listed: HashSet<&str> = sandboxes
                .iter()
                .map(|s| s.id.as_str())
                .chain(containers.iter().map(|c| c.id.as_str()))
                .collect();
            let gone: Vec<&str> = table
                .iter()
                .map(String::as_str)
                .filter(|id| !listed.contains(id))
                .collect();
            // An object gone before it could be fetched is simply not added: the next lean
            // lists will not hold it either.
            feed.names
                .apply(&got_sandboxes, &got_containers, &gone, &feed.pause_image);
        }
        Ok(())
    }

    /// One relist; returns the number of events sent (as one batch, when there are any).
    pub async fn relist(&mut self) -> Result<usize, String> {
        let start = Instant::now();
        if let Some(prev) = self.last_relist {
            self.metrics
                .pleg_relist_interval_seconds
                .observe(start.saturating_duration_since(prev).as_secs_f64());
        }
        self.last_relist = Some(start);
        let (sandboxes, containers) = match self.runtime.list_lean().await {
            Ok(v) => v,
            Err(e) => return Err(self.list_failed(e)),
        };

        let mut ch = self.known.begin();
        let mut running_pods = 0i64;
        for s in &sandboxes {
            let st = sandbox_state(s.state);
            if st == State::Running {
                running_pods += 1;
            }
            if !self.known.scan(&mut ch, &s.id, st) {
                ch.added.push(Added {
                    id: &s.id,
                    uid: Some(s.pod_uid().to_string()),
                    state: st,
                });
            }
        }
        // Sandbox ID to pod UID of this relist's sandboxes, for a new container whose sandbox
        // is new too (built when first needed).
        let mut listed_sandboxes: Option<HashMap<&str, &str>> = None;
        // Containers by CRI state: created, running, exited, unknown.
        let mut by_state = [0i64; 4];
        for c in &containers {
            let i = match cri::ContainerState::try_from(c.state) {
                Ok(cri::ContainerState::ContainerCreated) => 0,
                Ok(cri::ContainerState::ContainerRunning) => 1,
                Ok(cri::ContainerState::ContainerExited) => 2,
                _ => 3,
            };
            by_state[i] += 1;
            let st = container_state(c.state);
            if self.known.scan(&mut ch, &c.id, st) {
                continue;
            }
            let uid = match self.known.uid(&c.pod_sandbox_id) {
                Some(uid) => Some(uid.to_string()),
                None => listed_sandboxes
                    .get_or_insert_with(|| {
                        sandboxes
                            .iter()
                            .map(|s| (s.id.as_str(), s.pod_uid()))
                            .collect()
                    })
                    .get(c.pod_sandbox_id.as_str())
                    .map(|uid| uid.to_string()),
            };
            ch.added.push(Added {
                id: &c.id,
                uid,
                state: st,
            });
        }
        let full = self.names.as_ref().is_some_and(|n| n.stale);
        let ids_changed = self.names.is_some() && self.known.ids_changed(&ch);
        let refreshed = if full {
            self.full_lists(&sandboxes, &containers, &mut ch.added)
                .await
        } else if ids_changed || ch.added.iter().any(|a| a.uid.is_none()) {
            self.fetch_new(&sandboxes, &containers, &mut ch.added).await
        } else {
            Ok(())
        };
        if let Err(e) = refreshed {
            return Err(self.list_failed(e));
        }
        let mut events = self.known.apply(ch, self.listed);
        self.listed = true;

        self.metrics.running_pods.set(running_pods);
        for (k, n) in ["created", "running", "exited", "unknown"]
            .into_iter()
            .zip(by_state)
        {
            self.metrics
                .running_containers
                .with_label_values(&[k])
                .set(n);
        }
        if self.runtime_was_down {
            tracing::info!("container runtime reachable again: resyncing every pod");
            self.runtime_was_down = false;
            events.extend(self.known.pods().into_iter().map(|uid| PlegEvent {
                pod_uid: uid.to_string(),
                kind: PlegEventType::PodSync,
                id: String::new(),
            }));
        }
        self.health.relist_ok();
        let elapsed = start.elapsed();
        self.metrics
            .pleg_relist_duration_seconds
            .observe(elapsed.as_secs_f64());
        self.metrics.pleg_last_seen_seconds.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0),
        );
        let n = events.len();
        if n > 0 && self.tx.send(events).await.is_err() {
            return Err("sync loop gone".into());
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relist's objects: (pod UID, ID, state).
    fn snap(entries: &[(&str, &str, State)]) -> Vec<(String, String, State)> {
        entries
            .iter()
            .map(|(uid, id, st)| (uid.to_string(), id.to_string(), *st))
            .collect()
    }

    fn observe<'a>(t: &mut Tracker, objects: &'a [(String, String, State)]) -> Changes<'a> {
        let mut ch = t.begin();
        for (uid, id, st) in objects {
            if !t.scan(&mut ch, id, *st) {
                ch.added.push(Added {
                    id,
                    uid: Some(uid.clone()),
                    state: *st,
                });
            }
        }
        ch
    }

    /// The events of a relist listing `new` after one listing `old`.
    fn diff(old: &[(String, String, State)], new: &[(String, String, State)]) -> Vec<PlegEvent> {
        let mut t = Tracker::default();
        let ch = observe(&mut t, old);
        assert!(t.apply(ch, false).is_empty());
        let ch = observe(&mut t, new);
        t.apply(ch, true)
    }

    fn kinds(mut ev: Vec<PlegEvent>) -> Vec<(String, PlegEventType)> {
        ev.sort_by(|a, b| (&a.id, a.kind as u8).cmp(&(&b.id, b.kind as u8)));
        ev.into_iter().map(|e| (e.id, e.kind)).collect()
    }

    #[test]
    fn transitions_generate_kubelet_events() {
        use PlegEventType::*;
        use State::*;
        let old = snap(&[
            ("p", "a", Running),
            ("p", "b", Running),
            ("p", "c", Exited),
            ("q", "d", Running),
        ]);
        let new = snap(&[
            ("p", "a", Running),
            ("p", "b", Exited),
            ("p", "e", Running),
            ("p", "f", Unknown),
        ]);
        assert_eq!(
            kinds(diff(&old, &new)),
            vec![
                ("b".into(), ContainerDied),
                ("c".into(), ContainerRemoved),
                ("d".into(), ContainerDied),
                ("d".into(), ContainerRemoved),
                ("e".into(), ContainerStarted),
                ("f".into(), ContainerChanged),
            ]
        );
        assert!(diff(&new, &new).is_empty());
    }

    /// The set of IDs changed when an object came or went, not when one changed state; a
    /// relist that is not applied (a later list failed) changes nothing.
    #[test]
    fn ids_change_only_when_objects_come_or_go() {
        use State::*;
        let mut t = Tracker::default();
        let first = snap(&[("p", "a", Running), ("p", "b", Running)]);
        let ch = observe(&mut t, &first);
        assert!(t.ids_changed(&ch));
        t.apply(ch, false);
        let exited = snap(&[("p", "a", Running), ("p", "b", Exited)]);
        let ch = observe(&mut t, &exited);
        assert!(!t.ids_changed(&ch));
        drop(ch);
        let gone = snap(&[("p", "a", Running)]);
        let ch = observe(&mut t, &gone);
        assert!(t.ids_changed(&ch));
        drop(ch);
        let added = snap(&[
            ("p", "a", Running),
            ("p", "b", Running),
            ("q", "c", Running),
        ]);
        let ch = observe(&mut t, &added);
        assert!(t.ids_changed(&ch));
        drop(ch);
        // Nothing was applied since the first relist: b is still running, c unknown.
        let ch = observe(&mut t, &exited);
        assert_eq!(
            kinds(t.apply(ch, true)),
            vec![("b".into(), PlegEventType::ContainerDied)]
        );
        assert_eq!(t.pods(), HashSet::from(["p"]));
    }

    use crate::fakeruntime::{self, FakeRuntime, Op};
    use collectors::ContainerNamer;

    const NODE: &str = "n1";

    struct Runtime {
        fake: FakeRuntime,
        rt: RuntimeService,
        _task: tokio::task::JoinHandle<Result<(), fakeruntime::FakeError>>,
        _dir: tempfile::TempDir,
    }

    async fn runtime() -> Runtime {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("fake.sock");
        let (fake, task) = fakeruntime::serve(&sock).await.unwrap();
        fake.preload_image("busybox:1.35");
        let channel = proto::cri::connect(&sock).await.unwrap();
        let rt = RuntimeService::new(channel, Duration::from_secs(10), Metrics::new(NODE), NODE);
        Runtime {
            fake,
            rt,
            _task: task,
            _dir: dir,
        }
    }

    fn sandbox_config(name: &str, uid: &str) -> cri::PodSandboxConfig {
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            labels: HashMap::from([
                (labels::POD_NAME_LABEL.to_string(), name.to_string()),
                (labels::POD_NAMESPACE_LABEL.to_string(), "default".into()),
                (labels::POD_UID_LABEL.to_string(), uid.to_string()),
                (labels::NODE_LABEL.to_string(), NODE.to_string()),
            ]),
            ..Default::default()
        }
    }

    /// Starts a container `name` in sandbox `sb` of pod `pod`/`uid`; returns its ID.
    async fn start(r: &Runtime, sb: &str, pod: &str, uid: &str, name: &str) -> String {
        let sb_cfg = sandbox_config(pod, uid);
        let mut labels = sb_cfg.labels.clone();
        labels.insert(labels::CONTAINER_NAME_LABEL.to_string(), name.to_string());
        let cfg = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri::ImageSpec {
                image: "busybox:1.35".into(),
                ..Default::default()
            }),
            labels,
            ..Default::default()
        };
        let id = r.rt.create_container(sb, cfg, sb_cfg).await.unwrap();
        r.rt.start_container(&id).await.unwrap();
        id
    }

    /// (ListPodSandbox, ListContainers) calls the fake has answered so far.
    fn lists(r: &Runtime) -> (u64, u64) {
        (
            r.fake.calls(Op::ListPodSandbox),
            r.fake.calls(Op::ListContainers),
        )
    }

    /// A PLEG over the fake runtime, relisting every second, and the receiver of its events.
    fn new_pleg(r: &Runtime, health: Health) -> (Pleg, mpsc::Receiver<Vec<PlegEvent>>) {
        let (tx, rx) = mpsc::channel(64);
        let pleg = Pleg::new(
            r.rt.clone(),
            Metrics::new(NODE),
            health,
            Duration::from_secs(1),
            tx,
        );
        (pleg, rx)
    }

    /// The one event of the one batch sent since the last call.
    fn only(rx: &mut mpsc::Receiver<Vec<PlegEvent>>) -> PlegEvent {
        let mut batch = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err(), "one batch per relist");
        assert_eq!(batch.len(), 1, "{batch:?}");
        batch.pop().unwrap()
    }

    /// Every event sent since the last call.
    fn drain(rx: &mut mpsc::Receiver<Vec<PlegEvent>>) -> Vec<PlegEvent> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .flatten()
            .collect()
    }

    /// Relists an empty sandbox `sb` of pod `u1` without a names table, starts a container in
    /// it, and checks that the next relist reports it started after `calls` (ListPodSandbox,
    /// ListContainers) calls.
    async fn relist_sees_a_start(r: &Runtime, sb: &str, calls: (u64, u64)) {
        let (mut pleg, mut rx) = new_pleg(r, Health::new());
        assert_eq!(pleg.relist().await.unwrap(), 0);
        let c = start(r, sb, "web", "u1", "app").await;
        let before = lists(r);
        assert_eq!(pleg.relist().await.unwrap(), 1);
        assert_eq!(lists(r), (before.0 + calls.0, before.1 + calls.1));
        let e = only(&mut rx);
        assert_eq!(
            (e.pod_uid.as_str(), e.kind, e.id),
            ("u1", PlegEventType::ContainerStarted, c)
        );
    }

    /// A relist with no sandbox or container come or gone makes only the lean lists (one call
    /// of each); a new container is fetched by ID for the names table, a removed one is dropped
    /// from it without any further call, and many new ones at once bring one full list; state
    /// changes still produce their events from the lean lists alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn steady_relists_are_lean_and_new_containers_are_named() {
        let r = runtime().await;
        let sb =
            r.rt.run_pod_sandbox(sandbox_config("web", "u1"))
                .await
                .unwrap();
        let c1 = start(&r, &sb, "web", "u1", "app").await;
        let names = Arc::new(RuntimeNames::new("containerd"));
        let (pleg, mut rx) = new_pleg(&r, Health::new());
        let mut pleg = pleg.with_names(names.clone(), "pause:3.10");
        let cgroup = |id: &str| format!("/kubepods/besteffort/podu1/{id}");

        // First relist: lean, then full for the names table.
        let before = lists(&r);
        assert_eq!(pleg.relist().await.unwrap(), 0);
        assert_eq!(lists(&r), (before.0 + 2, before.1 + 2));
        assert_eq!(
            names.identify(&cgroup(&c1)).unwrap().labels[labels::CONTAINER_NAME_LABEL],
            "app"
        );
        assert_eq!(names.pod("u1").unwrap().name, "web");

        // Steady state: lean lists only.
        for _ in 0..3 {
            let before = lists(&r);
            assert_eq!(pleg.relist().await.unwrap(), 0);
            assert_eq!(lists(&r), (before.0 + 1, before.1 + 1));
        }

        // A state change: an event, from the lean lists alone, with the sandbox's pod UID.
        r.fake.exit_container(&c1, 1).unwrap();
        let before = lists(&r);
        assert_eq!(pleg.relist().await.unwrap(), 1);
        assert_eq!(lists(&r), (before.0 + 1, before.1 + 1));
        assert_eq!(
            only(&mut rx),
            PlegEvent {
                pod_uid: "u1".into(),
                kind: PlegEventType::ContainerDied,
                id: c1.clone(),
            }
        );

        // A new container: fetched by ID (one more ListContainers), and the table knows it.
        let c2 = start(&r, &sb, "web", "u1", "sidecar").await;
        assert!(names.identify(&cgroup(&c2)).is_none());
        let before = lists(&r);
        assert_eq!(pleg.relist().await.unwrap(), 1);
        assert_eq!(lists(&r), (before.0 + 1, before.1 + 2));
        assert_eq!(
            only(&mut rx),
            PlegEvent {
                pod_uid: "u1".into(),
                kind: PlegEventType::ContainerStarted,
                id: c2.clone(),
            }
        );
        let id = names.identify(&cgroup(&c2)).unwrap();
        assert_eq!(id.labels[labels::CONTAINER_NAME_LABEL], "sidecar");
        assert_eq!(id.image, "busybox:1.35");
        let before = lists(&r);
        assert_eq!(pleg.relist().await.unwrap(), 0);
        assert_eq!(lists(&r), (before.0 + 1, before.1 + 1));

        // A removed container: the lean lists alone, and the names table forgets it.
        r.rt.remove_container(&c1).await.unwrap();
        let before = lists(&r);
        assert_eq!(pleg.relist().await.unwrap(), 1);
        assert_eq!(lists(&r), (before.0 + 1, before.1 + 1));
        assert_eq!(only(&mut rx).kind, PlegEventType::ContainerRemoved);
        assert!(names.identify(&cgroup(&c1)).is_none());
        assert!(names.identify(&cgroup(&c2)).is_some());

        // A new pod: its sandbox and both containers fetched by ID.
        let sb2 =
            r.rt.run_pod_sandbox(sandbox_config("db", "u2"))
                .await
                .unwrap();
        let d1 = start(&r, &sb2, "db", "u2", "main").await;
        let d2 = start(&r, &sb2, "db", "u2", "log").await;
        let before = lists(&r);
        pleg.relist().await.unwrap();
        assert_eq!(lists(&r), (before.0 + 2, before.1 + 3));
        let _ = drain(&mut rx);
        assert_eq!(names.pod("u2").unwrap().name, "db");
        let cg2 = |id: &str| format!("/kubepods/besteffort/podu2/{id}");
        assert_eq!(
            names.identify(&cg2(&d2)).unwrap().labels[labels::CONTAINER_NAME_LABEL],
            "log"
        );

        // The pod gone: its sandbox, containers and the pod itself leave the table.
        for id in [&d1, &d2] {
            r.rt.remove_container(id).await.unwrap();
        }
        r.rt.remove_pod_sandbox(&sb2).await.unwrap();
        let before = lists(&r);
        pleg.relist().await.unwrap();
        assert_eq!(lists(&r), (before.0 + 1, before.1 + 1));
        let _ = drain(&mut rx);
        assert!(names.pod("u2").is_none());
        assert!(names.identify(&cg2(&d1)).is_none());
        assert!(names.pod("u1").is_some(), "the other pod stays");

        // Many new containers at once: one full list instead of one call each.
        for i in 0..=INCREMENTAL_MAX {
            start(&r, &sb, "web", "u1", &format!("extra{i}")).await;
        }
        let before = lists(&r);
        pleg.relist().await.unwrap();
        assert_eq!(lists(&r), (before.0 + 2, before.1 + 2));
        let _ = drain(&mut rx);
        assert_eq!(names.ids().len(), 1 + 1 + INCREMENTAL_MAX + 1);
    }

    /// Without a names table nothing needs the full lists: every relist is lean.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn without_names_every_relist_is_lean() {
        let r = runtime().await;
        let sb =
            r.rt.run_pod_sandbox(sandbox_config("web", "u1"))
                .await
                .unwrap();
        relist_sees_a_start(&r, &sb, (1, 1)).await;
    }

    /// A container whose sandbox the lean sandbox list lacks (here: a sandbox without the
    /// node label; in life, one created or removed between the two lists) takes its pod from
    /// its pod UID label, read from a ListContainers filtered by its ID.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_container_without_a_listed_sandbox_takes_its_pod_from_its_label() {
        let r = runtime().await;
        let mut hidden = sandbox_config("web", "u1");
        hidden.labels.remove(labels::NODE_LABEL);
        let sb = r.rt.run_pod_sandbox(hidden).await.unwrap();
        relist_sees_a_start(&r, &sb, (1, 2)).await;
    }

    /// Everything one relist saw goes to the sync loop as one batch: a pod whose sandbox and
    /// containers all started since the last relist wakes its worker once, not once per
    /// object (each wake is a full pod sync: PodSandboxStatus, ListPodSandbox, ListContainers
    /// and one ContainerStatus per container). A relist with nothing new sends nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_relists_events_arrive_as_one_batch() {
        let r = runtime().await;
        let (pleg, mut rx) = new_pleg(&r, Health::new());
        let mut pleg = pleg.with_names(Arc::new(RuntimeNames::new("containerd")), "pause:3.10");
        assert_eq!(pleg.relist().await.unwrap(), 0);
        let mut ids = Vec::new();
        for (pod, uid) in [("web", "u1"), ("db", "u2")] {
            let sb =
                r.rt.run_pod_sandbox(sandbox_config(pod, uid))
                    .await
                    .unwrap();
            ids.push(sb.clone());
            ids.push(start(&r, &sb, pod, uid, "app").await);
            ids.push(start(&r, &sb, pod, uid, "sidecar").await);
        }
        assert_eq!(pleg.relist().await.unwrap(), 6);
        let batch = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err(), "one batch per relist");
        let mut got: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        got.sort();
        ids.sort();
        assert_eq!(got, ids);
        assert!(batch
            .iter()
            .all(|e| e.kind == PlegEventType::ContainerStarted));
        let pods: HashSet<&str> = batch.iter().map(|e| e.pod_uid.as_str()).collect();
        assert_eq!(pods, HashSet::from(["u1", "u2"]));
        assert_eq!(pleg.relist().await.unwrap(), 0);
        assert!(rx.try_recv().is_err());
    }

    /// A runtime that does not answer fails the relist and the runtime check; the first relist
    /// after it returns sends a PodSync for every pod, and the changes made meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runtime_down_then_back_resyncs_every_pod() {
        let r = runtime().await;
        let sb =
            r.rt.run_pod_sandbox(sandbox_config("web", "u1"))
                .await
                .unwrap();
        let c = start(&r, &sb, "web", "u1", "app").await;
        let health = Health::new();
        let (pleg, mut rx) = new_pleg(&r, health.clone());
        let mut pleg = pleg.with_names(Arc::new(RuntimeNames::new("containerd")), "pause:3.10");
        assert_eq!(pleg.relist().await.unwrap(), 0);
        r.fake.set_down(true);
        assert!(pleg.relist().await.is_err());
        assert!(health.runtime_error().is_some());
        r.fake.set_down(false);
        r.fake.exit_container(&c, 0).unwrap();
        assert_eq!(pleg.relist().await.unwrap(), 2);
        assert_eq!(health.runtime_error(), None);
        // One relist, one batch.
        let mut got = rx.try_recv().unwrap();
        assert!(rx.try_recv().is_err());
        got.sort_by_key(|e| e.kind as u8);
        assert_eq!(
            got,
            vec![
                PlegEvent {
                    pod_uid: "u1".into(),
                    kind: PlegEventType::ContainerDied,
                    id: c,
                },
                PlegEvent {
                    pod_uid: "u1".into(),
                    kind: PlegEventType::PodSync,
                    id: String::new(),
                },
            ]
        );
    }
}
