//! The eviction manager's control loop body (`synchronize`): observe, decide which thresholds
//! are met (with grace periods, minimum reclaim and the pressure transition period), reclaim
//! node-level resources first for disk pressure, then evict at most one pod, ranked as the
//! kubelet ranks them.
//!
//! Local-storage isolation (`localStorageEviction`) runs in the same pass, every
//! [`Config::local_storage_period`]: a pod whose disk-backed emptyDir uses more than its
//! `sizeLimit` is evicted at once, with the kubelet's message, and the pass ends there.
//!
//! Everything it acts on is a narrow trait the agent implements: [`SummarySource`] (what the
//! node and its pods use), [`KillPod`], [`DeleteUnusedImages`], [`DeleteUnusedContainers`] and
//! an [`EventSink`]. Time comes from a [`Clock`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::api::{self, Resource, Signal, Threshold};
use super::ranking::{self, PodCandidate};
use super::signals::{self, DiskUsage, NodeSummary, Observations, PodUsage, VolumeUsage};
use super::thresholds;
use crate::clock::Clock;
use crate::conditions::ConditionType;
use crate::containers::ContainerGcError;
use crate::events::{reason, EventSink, EventType, ObjectRef};
use crate::images::ImageGcError;
use crate::quantity;

/// Why the node's usage could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// A file or cgroup needed for a signal could not be read.
    #[error("cannot read {what} from {path}: {message}")]
    Read {
        /// Which figure.
        what: &'static str,
        /// The file or cgroup.
        path: String,
        /// Why.
        message: String,
    },
    /// The collector has not sampled yet.
    #[error("no sample yet for {what}")]
    NotSampled {
        /// Which figure.
        what: &'static str,
    },
}

/// What the node and its pods use, and which pods are running.
pub trait SummarySource: Send + Sync {
    /// The pods that may be evicted (running, not terminal).
    fn active_pods(&self) -> Vec<PodCandidate>;
    /// The node's figures and the usage of `pods`. `fresh`: sample now rather than reuse the
    /// collector's latest pass.
    fn summary(&self, pods: &[PodCandidate], fresh: bool) -> Result<NodeSummary, StatsError>;
    /// Local-storage usage of `pods` (measured only when a disk signal needs ranking).
    fn disk_usage(&self, _pods: &[PodCandidate]) -> HashMap<String, DiskUsage> {
        HashMap::new()
    }
    /// The disk-backed emptyDirs of `pods` that have a `sizeLimit`, measured (called every
    /// [`Config::local_storage_period`], so it may walk directories).
    fn empty_dir_usage(&self, _pods: &[PodCandidate]) -> Vec<VolumeUsage> {
        Vec::new()
    }
}

/// How long an evicted pod gets to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grace {
    /// No grace: kill now (hard thresholds).
    Immediate,
    /// The pod's own grace period, at most this many seconds (soft thresholds with
    /// `evictionMaxPodGracePeriod`).
    AtMost(i64),
    /// The pod's own grace period.
    PodDefault,
}

/// Why a pod is evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A threshold on this signal was met: the node is under pressure.
    Pressure(Signal),
    /// One of the pod's emptyDirs outgrew its `sizeLimit`.
    EmptyDirLimit,
}

impl Cause {
    /// The `eviction_signal` label of `kubelet_evictions` (`memory.available`,
    /// `emptydirfs.limit`).
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Pressure(s) => s.as_str(),
            Cause::EmptyDirLimit => "emptydirfs.limit",
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One eviction.
#[derive(Debug, Clone)]
pub struct KillRequest<'a> {
    /// The pod.
    pub pod: &'a PodCandidate,
    /// Why: the signal that starved, or the limit the pod exceeded.
    pub cause: Cause,
    /// How long it may take to stop.
    pub grace: Grace,
    /// The pod status message (`The node was low on resource: memory. ...`,
    /// `Usage of EmptyDir volume "data" exceeds the limit "1Mi". `).
    pub message: &'a str,
    /// When the observation of the starved signal was measured (ns since the epoch), for
    /// the kubelet's `kubelet_eviction_stats_age_seconds`; `None` for limit evictions.
    pub observed_at: Option<u64>,
}

/// Kills a pod for good: phase `Failed`, reason `Evicted`, the message above; returns once its
/// containers are stopped (or it gave up), false if the pod could not be evicted.
pub trait KillPod: Send + Sync {
    /// Evicts one pod.
    fn kill_pod(&self, req: &KillRequest<'_>) -> bool;
}

/// Image GC, as the eviction manager needs it.
pub trait DeleteUnusedImages: Send + Sync {
    /// Deletes every unused image old enough to go; returns the bytes freed.
    fn delete_unused_images(&self) -> Result<u64, ImageGcError>;
}

/// Container GC, as the eviction manager needs it.
pub trait DeleteUnusedContainers: Send + Sync {
    /// Removes every dead container and sandbox, of live pods too.
    fn delete_all_unused_containers(&self) -> Result<(), ContainerGcError>;
}

/// Configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Hard and soft thresholds.
    pub thresholds: Vec<Threshold>,
    /// How long a pressure condition stays after its thresholds stop being met.
    pub pressure_transition_period: Duration,
    /// `evictionMaxPodGracePeriod`, seconds (0: the pod's own grace period).
    pub max_pod_grace_period: i64,
    /// Local-storage isolation (`localStorageCapacityIsolation`): how often the pods'
    /// emptyDirs are measured against their `sizeLimit`; `None` turns it off.
    pub local_storage_period: Option<Duration>,
}

impl Config {
    /// How often the kubelet enforces local-storage limits (its monitoring interval).
    pub const LOCAL_STORAGE_PERIOD: Duration = Duration::from_secs(10);
}

/// What one pass did.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The summary the pass decided on (the notifiers re-arm from it).
    pub summary: Option<NodeSummary>,
    /// The thresholds met after grace periods.
    pub thresholds_met: Vec<Threshold>,
    /// The pressure conditions now.
    pub conditions: Vec<ConditionType>,
    /// The pod evicted, with the signal.
    pub evicted: Option<(PodCandidate, Signal)>,
    /// The pods evicted for exceeding a local-storage limit (no pressure eviction then).
    pub over_limit: Vec<PodCandidate>,
}

/// A pod refused by admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// `Evicted`.
    pub reason: &'static str,
    /// `The node had condition: [MemoryPressure]. `
    pub message: String,
}

/// What admission needs to know about a pod.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitRequest {
    /// The pod is BestEffort.
    pub best_effort: bool,
    /// The pod is critical (system priority).
    pub critical: bool,
    /// The pod tolerates the `node.kubernetes.io/memory-pressure:NoSchedule` taint.
    pub tolerates_memory_pressure: bool,
}

#[derive(Default)]
struct State {
    thresholds: Vec<Threshold>,
    dedicated_image_fs: Option<bool>,
    conditions: Vec<ConditionType>,
    first_observed: Vec<(Threshold, Instant)>,
    conditions_last_observed: BTreeMap<ConditionType, Instant>,
    thresholds_met: Vec<Threshold>,
    last_observations: Observations,
    /// When emptyDirs were last measured.
    local_storage_checked: Option<Instant>,
}

/// The eviction manager.
pub struct EvictionManager {
    config: Config,
    node: ObjectRef,
    clock: Arc<dyn Clock>,
    source: Arc<dyn SummarySource>,
    killer: Arc<dyn KillPod>,
    images: Arc<dyn DeleteUnusedImages>,
    containers: Arc<dyn DeleteUnusedContainers>,
    events: Arc<dyn EventSink>,
    state: Mutex<State>,
    pass: Mutex<()>,
}

/// The actions and sources the manager works with.
pub struct Deps {
    /// Usage of the node and its pods.
    pub source: Arc<dyn SummarySource>,
    /// Evicts pods.
    pub killer: Arc<dyn KillPod>,
    /// Image GC.
    pub images: Arc<dyn DeleteUnusedImages>,
    /// Container GC.
    pub containers: Arc<dyn DeleteUnusedContainers>,
    /// Events.
    pub events: Arc<dyn EventSink>,
    /// Time.
    pub clock: Arc<dyn Clock>,
}

impl EvictionManager {
    /// A manager for node `node`.
    pub fn new(node: &str, config: Config, deps: Deps) -> Arc<EvictionManager> {
        let state = State {
            thresholds: config.thresholds.clone(),
            ..Default::default()
        };
        Arc::new(EvictionManager {
            config,
            node: ObjectRef::node(node),
            clock: deps.clock,
            source: deps.source,
            killer: deps.killer,
            images: deps.images,
            containers: deps.containers,
            events: deps.events,
            state: Mutex::new(state),
            pass: Mutex::new(()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The thresholds in force (the configured ones plus the derived `containerfs.*`).
    pub fn thresholds(&self) -> Vec<Threshold> {
        self.state.lock().thresholds.clone()
    }

    /// The pressure conditions as of the last pass.
    pub fn conditions(&self) -> Vec<ConditionType> {
        self.state.lock().conditions.clone()
    }

    /// Whether the node is under memory pressure.
    pub fn is_under_memory_pressure(&self) -> bool {
        self.conditions().contains(&ConditionType::MemoryPressure)
    }

    /// Admission under pressure (the kubelet's eviction admit handler): with memory pressure
    /// alone, BestEffort pods are refused unless they tolerate the memory-pressure taint; with
    /// any other pressure every pod is refused. Critical pods are always admitted.
    pub fn admit(&self, req: &AdmitRequest) -> Result<(), Rejection> {
        let conds = self.conditions();
        if conds.is_empty() || req.critical {
            return Ok(());
        }
        let only_memory = conds == [ConditionType::MemoryPressure];
        if only_memory && (!req.best_effort || req.tolerates_memory_pressure) {
            return Ok(());
        }
        let names: Vec<&str> = conds.iter().map(|c| c.as_str()).collect();
        Err(Rejection {
            reason: reason::EVICTED,
            message: format!("The node had condition: [{}]. ", names.join(" ")),
        })
    }

    /// One pass. `fresh` samples the node now (a notification or a timer), rather than using
    /// the collector's pass that just completed.
    pub fn synchronize(&self, fresh: bool) -> Result<Outcome, StatsError> {
        let _pass = self.pass.lock();
        let local_storage = self.local_storage_due();
        if self.config.thresholds.is_empty() {
            if !local_storage {
                return Ok(Outcome::default());
            }
            let pods = self.source.active_pods();
            return Ok(Outcome {
                over_limit: self.local_storage_eviction(&pods),
                ..Default::default()
            });
        }
        let pods = self.source.active_pods();
        let summary = self.source.summary(&pods, fresh)?;
        let now = self.clock.now();
        let obs = signals::observations(&summary);

        let mut st = self.state.lock();
        if st.dedicated_image_fs.is_none() {
            if let Some(d) = summary.dedicated_image_fs() {
                st.dedicated_image_fs = Some(d);
                let mut t = self.config.thresholds.clone();
                api::update_containerfs_thresholds(&mut t, d);
                st.thresholds = t;
            }
        }
        // Thresholds met now, plus those met before whose minimum reclaim is not yet done.
        let mut met = thresholds::met(&st.thresholds, &obs, false);
        if !st.thresholds_met.is_empty() {
            let unresolved = thresholds::met(&st.thresholds_met, &obs, true);
            met = thresholds::merge(met, unresolved);
        }
        let first_observed = thresholds::first_observed(&met, &st.first_observed, now);
        let observed_now = thresholds::conditions(&met);
        let last_observed =
            thresholds::conditions_last_observed(&observed_now, &st.conditions_last_observed, now);
        let mut conditions = thresholds::conditions_observed_since(
            &last_observed,
            self.config.pressure_transition_period,
            now,
        );
        conditions.sort();
        let met_grace = thresholds::grace_period_met(&first_observed, now);
        st.conditions = conditions.clone();
        st.first_observed = first_observed;
        st.conditions_last_observed = last_observed;
        st.thresholds_met = met_grace.clone();
        let mut actionable = thresholds::updated_stats(&met_grace, &obs, &st.last_observations);
        st.last_observations = obs.clone();
        let dedicated = st.dedicated_image_fs.unwrap_or(false);
        drop(st);

        let mut outcome = Outcome {
            summary: None,
            thresholds_met: met_grace,
            conditions,
            evicted: None,
            over_limit: Vec::new(),
        };
        // As the kubelet: evictions for local-storage limits end the pass.
        if local_storage {
            outcome.over_limit = self.local_storage_eviction(&pods);
            if !outcome.over_limit.is_empty() {
                outcome.summary = Some(summary);
                return Ok(outcome);
            }
        }
        if actionable.is_empty() {
            outcome.summary = Some(summary);
            return Ok(outcome);
        }
        thresholds::sort_by_eviction_priority(&mut actionable);
        let to_reclaim = actionable[0];
        let resource = to_reclaim.signal.resource();
        tracing::info!(signal = %to_reclaim.signal, resource = %resource, "eviction manager: attempting to reclaim");
        self.events.event(
            &self.node,
            EventType::Warning,
            reason::EVICTION_THRESHOLD_MET,
            &format!("Attempting to reclaim {resource}"),
        );
        if self.reclaim_node_level(to_reclaim.signal, dedicated, &pods) {
            tracing::info!(resource = %resource, "eviction manager: able to reduce resource pressure without evicting pods");
            outcome.summary = Some(summary);
            return Ok(outcome);
        }
        if pods.is_empty() {
            tracing::error!("eviction manager: eviction thresholds have been met, but no pods are active to evict");
            outcome.summary = Some(summary);
            return Ok(outcome);
        }
        let mut stats = summary.pods.clone();
        if matches!(resource, Resource::EphemeralStorage | Resource::Inodes) {
            for (uid, d) in self.source.disk_usage(&pods) {
                stats.entry(uid).or_default().disk = Some(d);
            }
        }
        let mut ranked = pods;
        ranking::rank(to_reclaim.signal, &mut ranked, &stats);
        tracing::debug!(?stats, "eviction manager: pod usage");
        tracing::info!(pods = ?ranked.iter().map(|p| p.reference()).collect::<Vec<_>>(), "eviction manager: pods ranked for eviction");
        let grace = if to_reclaim.is_hard() {
            Grace::Immediate
        } else if self.config.max_pod_grace_period > 0 {
            Grace::AtMost(self.config.max_pod_grace_period)
        } else {
            Grace::PodDefault
        };
        for pod in &ranked {
            if pod.critical {
                tracing::error!(pod = %pod.reference(), "eviction manager: cannot evict a critical pod");
                continue;
            }
            let message = eviction_message(resource, pod, stats.get(&pod.uid), &actionable, &obs);
            self.events.event(
                &ObjectRef::pod(&pod.namespace, &pod.name, &pod.uid),
                EventType::Warning,
                reason::EVICTED,
                &message,
            );
            let req = KillRequest {
                pod,
                cause: Cause::Pressure(to_reclaim.signal),
                grace,
                message: &message,
                observed_at: obs.get(&to_reclaim.signal).map(|o| o.time),
            };
            if self.killer.kill_pod(&req) {
                tracing::info!(pod = %pod.reference(), signal = %to_reclaim.signal, "eviction manager: pod evicted");
                outcome.evicted = Some((pod.clone(), to_reclaim.signal));
                break;
            }
        }
        if outcome.evicted.is_none() {
            tracing::info!("eviction manager: unable to evict any pods from the node");
        }
        outcome.summary = Some(summary);
        Ok(outcome)
    }

    /// Whether local-storage limits are to be checked in this pass (and if so, the check is
    /// recorded as done now).
    fn local_storage_due(&self) -> bool {
        let Some(period) = self.config.local_storage_period else {
            return false;
        };
        let now = self.clock.now();
        let mut st = self.state.lock();
        if st
            .local_storage_checked
            .is_some_and(|t| now.saturating_duration_since(t) < period)
        {
            return false;
        }
        st.local_storage_checked = Some(now);
        true
    }

    /// `localStorageEviction`, for emptyDirs: evicts, at once, every pod with an emptyDir over
    /// its `sizeLimit`; returns them.
    fn local_storage_eviction(&self, pods: &[PodCandidate]) -> Vec<PodCandidate> {
        let mut over: Vec<(&PodCandidate, &VolumeUsage)> = Vec::new();
        let usage = self.source.empty_dir_usage(pods);
        for u in &usage {
            if u.limit <= 0 || u.used <= u.limit || over.iter().any(|(p, _)| p.uid == u.uid) {
                continue;
            }
            if let Some(p) = pods.iter().find(|p| p.uid == u.uid) {
                over.push((p, u));
            }
        }
        let mut evicted = Vec::new();
        for (pod, u) in over {
            if pod.critical {
                tracing::error!(pod = %pod.reference(), "eviction manager: cannot evict a critical pod");
                continue;
            }
            let message = empty_dir_message(&u.volume, &u.limit_text);
            tracing::info!(pod = %pod.reference(), volume = %u.volume, used = u.used, limit = u.limit, "eviction manager: emptyDir over its sizeLimit");
            self.events.event(
                &ObjectRef::pod(&pod.namespace, &pod.name, &pod.uid),
                EventType::Warning,
                reason::EVICTED,
                &message,
            );
            let req = KillRequest {
                pod,
                cause: Cause::EmptyDirLimit,
                grace: Grace::Immediate,
                message: &message,
                observed_at: None,
            };
            if self.killer.kill_pod(&req) {
                tracing::info!(pod = %pod.reference(), cause = %req.cause, "eviction manager: pod evicted");
                evicted.push(pod.clone());
            }
        }
        evicted
    }

    /// Container and image GC for disk signals; true when that was enough.
    fn reclaim_node_level(&self, signal: Signal, dedicated: bool, pods: &[PodCandidate]) -> bool {
        let reclaims = match signal {
            Signal::NodeFsAvailable | Signal::NodeFsInodesFree => !dedicated,
            Signal::ImageFsAvailable
            | Signal::ImageFsInodesFree
            | Signal::ContainerFsAvailable
            | Signal::ContainerFsInodesFree => true,
            _ => false,
        };
        if !reclaims {
            return false;
        }
        if let Err(e) = self.containers.delete_all_unused_containers() {
            tracing::info!(error = %e, "eviction manager: unexpected error when attempting to reduce resource pressure");
        }
        match self.images.delete_unused_images() {
            Ok(freed) => tracing::info!(freed, "eviction manager: deleted unused images"),
            Err(e) => {
                tracing::info!(error = %e, "eviction manager: unexpected error when attempting to reduce resource pressure")
            }
        }
        let summary = match self.source.summary(pods, true) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "eviction manager: failed to get summary stats after resource reclaim");
                return false;
            }
        };
        let obs = signals::observations(&summary);
        let thresholds = self.state.lock().thresholds.clone();
        thresholds::met(&thresholds, &obs, true).is_empty()
    }
}

/// The pod status message of an eviction for an emptyDir over its `sizeLimit`, as the kubelet
/// writes it.
pub fn empty_dir_message(volume: &str, limit: &str) -> String {
    format!("Usage of EmptyDir volume {volume:?} exceeds the limit {limit:?}. ")
}

/// The pod status message of an eviction, as the kubelet writes it.
pub fn eviction_message(
    resource: Resource,
    pod: &PodCandidate,
    usage: Option<&PodUsage>,
    thresholds: &[Threshold],
    obs: &Observations,
) -> String {
    let mut m = format!("The node was low on resource: {resource}. ");
    if let Some((t, o)) = thresholds
        .iter()
        .filter(|t| t.signal.resource() == resource)
        .find_map(|t| obs.get(&t.signal).map(|o| (t, o)))
    {
        m.push_str(&format!(
            "Threshold quantity: {}, available: {}. ",
            t.quantity_text(o.capacity),
            quantity::format(o.available, resource.format())
        ));
    }
    let Some(usage) = usage else {
        return m;
    };
    if resource == Resource::Memory {
        for (name, ws) in &usage.containers {
            let Some(spec) = pod.containers.iter().find(|c| &c.name == name) else {
                continue;
            };
            if *ws > spec.memory_request {
                let req = if spec.memory_request_text.is_empty() {
                    "0"
                } else {
                    spec.memory_request_text.as_str()
                };
                m.push_str(&format!(
                    "Container {name} was using {}, request is {req}, has larger consumption of {resource}. ",
                    quantity::bytes(*ws)
                ));
            }
        }
    }
    m
}

#[cfg(test)]
mod tests;
