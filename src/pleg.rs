//! The pod lifecycle event generator (`pkg/kubelet/pleg/generic.go`). containerd 1.6 does not
//! implement GetContainerEvents, so the PLEG relists: every period it lists this agent's
//! sandboxes and containers, compares their states with the previous relist, and sends one
//! event per change to the sync loop, which wakes the owning pod worker. It also records relist
//! health (a relist older than 3 minutes fails `/healthz`), the relist metrics and the running
//! pod/container gauges.

use std::collections::HashMap;
use std::time::Duration;

use proto::cri;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::cadvisor::names::RuntimeNames;
use crate::health::Health;
use crate::kuberuntime::{labels, RuntimeService};
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

/// Per pod: state of every container and sandbox by ID.
type Snapshot = HashMap<String, HashMap<String, State>>;

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

/// The events between two relists.
fn diff(old: &Snapshot, new: &Snapshot) -> Vec<PlegEvent> {
    let mut out = Vec::new();
    let empty = HashMap::new();
    for (uid, now) in new {
        let before = old.get(uid).unwrap_or(&empty);
        for (id, st) in now {
            events_for(
                uid,
                id,
                *before.get(id).unwrap_or(&State::NonExistent),
                *st,
                &mut out,
            );
        }
        for (id, st) in before {
            if !now.contains_key(id) {
                events_for(uid, id, *st, State::NonExistent, &mut out);
            }
        }
    }
    for (uid, before) in old {
        if !new.contains_key(uid) {
            for (id, st) in before {
                events_for(uid, id, *st, State::NonExistent, &mut out);
            }
        }
    }
    out
}

/// The relisting event generator.
pub struct Pleg {
    runtime: RuntimeService,
    metrics: Metrics,
    health: Health,
    period: Duration,
    tx: mpsc::Sender<PlegEvent>,
    last: Option<Snapshot>,
    last_relist: Option<Instant>,
    runtime_was_down: bool,
    names: Option<(std::sync::Arc<RuntimeNames>, String)>,
}

impl Pleg {
    pub fn new(
        runtime: RuntimeService,
        metrics: Metrics,
        health: Health,
        period: Duration,
        tx: mpsc::Sender<PlegEvent>,
    ) -> Self {
        Self {
            runtime,
            metrics,
            health,
            period,
            tx,
            last: None,
            last_relist: None,
            runtime_was_down: false,
            names: None,
        }
    }

    /// Keeps `names` (the cAdvisor API's container identities) up to date on every relist;
    /// sandboxes are shown with `pause_image`.
    pub fn with_names(mut self, names: std::sync::Arc<RuntimeNames>, pause_image: &str) -> Self {
        self.names = Some((names, pause_image.to_string()));
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

    /// One relist; returns the events sent.
    pub async fn relist(&mut self) -> Result<usize, String> {
        let start = Instant::now();
        if let Some(prev) = self.last_relist {
            self.metrics
                .pleg_relist_interval_seconds
                .observe(start.saturating_duration_since(prev).as_secs_f64());
        }
        self.last_relist = Some(start);
        let listed = tokio::try_join!(
            self.runtime.list_pod_sandboxes(None),
            self.runtime.list_containers(None)
        );
        let (sandboxes, containers) = match listed {
            Ok(v) => v,
            Err(e) => {
                if !self.runtime_was_down {
                    tracing::error!(error = %e, "PLEG relist failed: container runtime unreachable");
                }
                self.runtime_was_down = true;
                self.health.runtime_failed(e.to_string());
                return Err(e.to_string());
            }
        };
        if let Some((names, pause)) = &self.names {
            names.update(&sandboxes, &containers, pause);
        }
        let mut snap: Snapshot = HashMap::new();
        let mut running_pods = 0i64;
        for s in &sandboxes {
            let uid = s
                .labels
                .get(labels::POD_UID_LABEL)
                .cloned()
                .unwrap_or_default();
            let st = sandbox_state(s.state);
            if st == State::Running {
                running_pods += 1;
            }
            snap.entry(uid).or_default().insert(s.id.clone(), st);
        }
        let mut by_state: HashMap<&'static str, i64> = HashMap::new();
        for c in &containers {
            let uid = c
                .labels
                .get(labels::POD_UID_LABEL)
                .cloned()
                .unwrap_or_default();
            let st = container_state(c.state);
            let name = match cri::ContainerState::try_from(c.state) {
                Ok(cri::ContainerState::ContainerCreated) => "created",
                Ok(cri::ContainerState::ContainerRunning) => "running",
                Ok(cri::ContainerState::ContainerExited) => "exited",
                _ => "unknown",
            };
            *by_state.entry(name).or_default() += 1;
            snap.entry(uid).or_default().insert(c.id.clone(), st);
        }
        self.metrics.running_pods.set(running_pods);
        for k in ["created", "running", "exited", "unknown"] {
            self.metrics
                .running_containers
                .with_label_values(&[k])
                .set(*by_state.get(k).unwrap_or(&0));
        }
        let mut events = match &self.last {
            Some(old) => diff(old, &snap),
            None => Vec::new(),
        };
        if self.runtime_was_down {
            tracing::info!("container runtime reachable again: resyncing every pod");
            self.runtime_was_down = false;
            events.extend(snap.keys().map(|uid| PlegEvent {
                pod_uid: uid.clone(),
                kind: PlegEventType::PodSync,
                id: String::new(),
            }));
        }
        self.last = Some(snap);
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
        for e in events {
            if self.tx.send(e).await.is_err() {
                return Err("sync loop gone".into());
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(entries: &[(&str, &str, State)]) -> Snapshot {
        let mut s: Snapshot = HashMap::new();
        for (uid, id, st) in entries {
            s.entry(uid.to_string())
                .or_default()
                .insert(id.to_string(), *st);
        }
        s
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
}
