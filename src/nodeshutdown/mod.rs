//! Graceful node shutdown (the kubelet's `pkg/kubelet/nodeshutdown`): with
//! `shutdownGracePeriod`/`shutdownGracePeriodCriticalPods` or
//! `shutdownGracePeriodByPodPriority` set, the agent holds a systemd-logind *delay* inhibitor
//! lock on shutdown and watches logind's `PrepareForShutdown` signal on the system bus.
//!
//! - **Shutdown** (`PrepareForShutdown(true)`): the node reports NotReady ("node is shutting
//!   down"; its status is sent at once in API-server mode), new pods are refused (`NodeShutdown`,
//!   "Pod was rejected as the node is shutting down."), and the node's pods are stopped group by
//!   group, lowest priority first: each group gets its `shutdownGracePeriodSeconds`, each pod the
//!   smaller of that and its own `terminationGracePeriodSeconds`. A pod stopped this way is
//!   `Failed` with reason `Terminated`, message "Pod was terminated in response to imminent
//!   node shutdown." and a `DisruptionTarget` condition (reason `TerminationByKubelet`). A group
//!   whose pods are not down when its period ends is left behind, as the kubelet leaves it. Then
//!   the lock is released and the shutdown proceeds.
//! - **Cancellation** (`PrepareForShutdown(false)`): the node is Ready again and a new lock is
//!   taken. Pods already stopped stay stopped.
//! - The two legacy settings become two groups, as the kubelet migrates them: priority 0 with
//!   `shutdownGracePeriod - shutdownGracePeriodCriticalPods`, and system-critical pods
//!   (priority >= 2000000000, which the `system-node-critical`/`system-cluster-critical` classes
//!   give) with `shutdownGracePeriodCriticalPods`. A pod's priority is `spec.priority`, or that
//!   of the system priority class it names (static pods get no `spec.priority` from a server).
//! - Without logind (no system bus, no `org.freedesktop.login1` on it) the agent logs once that
//!   graceful shutdown is unavailable and runs on, as the kubelet does; a bus connection lost
//!   later is retried every second. logind's `InhibitDelayMaxSec` is read and a value below the
//!   total grace period logged; unlike the kubelet, no logind drop-in is written.
//! - Metrics `kubelet_graceful_shutdown_start_time_seconds` and
//!   `kubelet_graceful_shutdown_end_time_seconds`, kept across restarts in
//!   `<root-dir>/graceful_node_shutdown_state`, as the kubelet keeps them.
//!
//! The bus address is `DBUS_SYSTEM_BUS_ADDRESS` (what libsystemd honours), else the system
//! bus's standard socket. The D-Bus client is [`dbus`], logind's calls are in [`logind`]; the
//! decisions (groups, budgets) are [`group_by_priority`] and [`process_shutdown`], tested with
//! tokio's paused clock.

pub mod dbus;
pub mod logind;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use managers::{EventSink, EventType, ObjectRef};

use crate::eviction::SYSTEM_CRITICAL_PRIORITY;
use crate::health::Health;
use crate::kubelet::Kubelet;
use logind::{InhibitLock, Logind};

/// The status reason of a pod stopped for a node shutdown.
pub const SHUTDOWN_REASON: &str = "Terminated";
/// Its status message.
pub const SHUTDOWN_MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";
/// The admission refusal while the node shuts down.
pub const NOT_ADMITTED_REASON: &str = "NodeShutdown";
pub const NOT_ADMITTED_MESSAGE: &str = "Pod was rejected as the node is shutting down.";
/// The `DisruptionTarget` condition's reason.
pub const DISRUPTION_REASON: &str = "TerminationByKubelet";
/// The node event's reason.
pub const NODE_SHUTDOWN_EVENT: &str = "NodeShutdown";
/// Where the last shutdown's start and end times are kept, in the root directory.
pub const STATE_FILE: &str = "graceful_node_shutdown_state";
/// How long after a lost bus connection it is tried again (the kubelet's `dbusReconnectPeriod`).
const RECONNECT_PERIOD: Duration = Duration::from_secs(1);

/// Errors of the shutdown manager's setup.
#[derive(Debug, thiserror::Error)]
pub enum NodeShutdownError {
    #[error("cannot reach logind on the system bus at {address}: {source}")]
    Bus {
        address: String,
        source: dbus::DbusError,
    },
    #[error("cannot take a shutdown inhibitor lock from logind: {0}")]
    Inhibit(dbus::DbusError),
    #[error("cannot watch logind's PrepareForShutdown signal: {0}")]
    Monitor(dbus::DbusError),
}

/// One `shutdownGracePeriodByPodPriority` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownPeriod {
    pub priority: i32,
    pub seconds: i64,
}

/// The groups the settings ask for, lowest priority first; empty when graceful shutdown is off.
pub fn periods(
    grace_period: Duration,
    critical_pods: Duration,
    by_pod_priority: &[(i32, i64)],
) -> Vec<ShutdownPeriod> {
    let mut out: Vec<ShutdownPeriod> = if by_pod_priority.is_empty() {
        migrate(grace_period, critical_pods)
    } else {
        by_pod_priority
            .iter()
            .map(|&(priority, seconds)| ShutdownPeriod { priority, seconds })
            .collect()
    };
    out.sort_by_key(|p| p.priority);
    out
}

/// The kubelet's `migrateConfig`: the legacy pair as two priority groups.
fn migrate(grace_period: Duration, critical_pods: Duration) -> Vec<ShutdownPeriod> {
    if grace_period.is_zero() || critical_pods > grace_period {
        return Vec::new();
    }
    let default = grace_period - critical_pods;
    vec![
        ShutdownPeriod {
            priority: 0,
            seconds: default.as_secs() as i64,
        },
        ShutdownPeriod {
            priority: SYSTEM_CRITICAL_PRIORITY,
            seconds: critical_pods.as_secs() as i64,
        },
    ]
}

/// What the shutdown needs to know of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownPod {
    pub uid: String,
    /// `namespace/name`, for logs.
    pub name: String,
    pub priority: i32,
    /// `spec.terminationGracePeriodSeconds`, if set.
    pub grace: Option<i64>,
}

impl ShutdownPod {
    /// From an API pod.
    pub fn from_pod(pod: &Pod) -> ShutdownPod {
        ShutdownPod {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            name: crate::kubelet::pod_ref(pod),
            priority: crate::eviction::priority(pod),
            grace: pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds),
        }
    }
}

/// One group: its period and its pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodGroup {
    pub period: ShutdownPeriod,
    pub pods: Vec<ShutdownPod>,
}

/// The kubelet's `groupByPriority`: each pod goes to the group of the highest priority not
/// above its own; pods below every group go to the lowest, above every group to the highest.
/// `periods` must be sorted by priority.
pub fn group_by_priority(periods: &[ShutdownPeriod], pods: Vec<ShutdownPod>) -> Vec<PodGroup> {
    let mut groups: Vec<PodGroup> = periods
        .iter()
        .map(|&period| PodGroup {
            period,
            pods: Vec::new(),
        })
        .collect();
    if groups.is_empty() {
        return groups;
    }
    for pod in pods {
        let above = groups.partition_point(|g| g.period.priority <= pod.priority);
        groups[above.saturating_sub(1)].pods.push(pod);
    }
    groups
}

/// How the shutdown acts on the node's pods.
pub trait Terminator: Send + Sync {
    /// The pods to stop: every pod the node runs that has not finished.
    fn active_pods(&self) -> Vec<ShutdownPod>;
    /// Fails the pod with the shutdown's status, stops it with `grace` seconds, and returns
    /// once it is down.
    fn terminate(&self, pod: &ShutdownPod, grace: i64) -> impl Future<Output = ()> + Send;
}

/// The kubelet's `processShutdownEvent`: every group with pods in turn, lowest priority first;
/// all pods of a group at once, each with the smaller of the group's period and its own grace
/// period; the next group when they are all down or the group's period has passed.
pub async fn process_shutdown<T: Terminator>(t: &T, periods: &[ShutdownPeriod]) {
    for group in group_by_priority(periods, t.active_pods()) {
        if group.pods.is_empty() {
            continue;
        }
        let budget = group.period.seconds.max(0);
        let all = futures_util::future::join_all(group.pods.iter().map(|pod| {
            let grace = pod.grace.filter(|&g| g <= budget).unwrap_or(budget);
            tracing::info!(pod = %pod.name, grace, "Shutdown manager killing pod with gracePeriod");
            t.terminate(pod, grace)
        }));
        if tokio::time::timeout(Duration::from_secs(budget as u64), all)
            .await
            .is_err()
        {
            tracing::warn!(
                grace_period = budget,
                priority = group.period.priority,
                "Shutdown manager pod killing time out"
            );
        }
    }
}

/// Stops the kubelet's pods for a shutdown.
pub struct KubeletTerminator(pub Arc<Kubelet>);

impl Terminator for KubeletTerminator {
    fn active_pods(&self) -> Vec<ShutdownPod> {
        self.0
            .active_pods()
            .iter()
            .filter(|p| {
                !p.status
                    .as_ref()
                    .and_then(|s| s.phase.as_deref())
                    .is_some_and(|ph| ph == "Succeeded" || ph == "Failed")
            })
            .map(ShutdownPod::from_pod)
            .collect()
    }

    async fn terminate(&self, pod: &ShutdownPod, grace: i64) {
        let kl = &self.0;
        let condition = PodCondition {
            type_: crate::status::generate::DISRUPTION_TARGET.into(),
            status: "True".into(),
            reason: Some(DISRUPTION_REASON.into()),
            message: Some(SHUTDOWN_MESSAGE.into()),
            last_transition_time: Some(crate::nodestatus::now()),
            ..Default::default()
        };
        if !kl.fail_pod(
            &pod.uid,
            SHUTDOWN_REASON,
            SHUTDOWN_MESSAGE,
            Some(condition),
            Some(grace),
        ) {
            return;
        }
        let mut changes = kl.status.subscribe();
        kl.stop_running_containers(&pod.uid, grace).await;
        // Down once its worker has stopped the sandbox and released its volumes; the worker is
        // nudged every second in case a wake-up was folded into a sync already under way.
        while !kl.status.reclaimed(&pod.uid) && kl.status.pod(&pod.uid).is_some() {
            tokio::select! {
                _ = changes.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => kl.request_sync(&pod.uid),
            }
        }
        tracing::info!(pod = %pod.name, "Shutdown manager finished killing pod");
    }
}

/// The shutdown manager's inputs.
pub struct ManagerConfig {
    pub node_name: String,
    /// From [`periods`]; graceful shutdown is off when empty.
    pub periods: Vec<ShutdownPeriod>,
    /// The D-Bus address of the system bus.
    pub bus_address: String,
    /// `<root-dir>/graceful_node_shutdown_state`.
    pub state_file: PathBuf,
}

/// The running manager's parts.
struct Manager<T> {
    cfg: ManagerConfig,
    terminator: T,
    health: Health,
    events: Arc<dyn EventSink>,
    metrics: crate::metrics::Metrics,
}

/// Starts graceful node shutdown for `kl` when the settings ask for it: the admission check,
/// the metrics from the last shutdown, and the task that watches logind (it logs once and ends
/// if logind cannot be reached).
pub fn start(
    cfg: ManagerConfig,
    kl: &Arc<Kubelet>,
    events: Arc<dyn EventSink>,
) -> Option<tokio::task::JoinHandle<()>> {
    if cfg.periods.is_empty() {
        tracing::info!("No graceful configuration specified, node shutdown will be immediate");
        return None;
    }
    tracing::info!(periods = ?cfg.periods, "Creating node shutdown manager");
    let health = kl.health.clone();
    let shutting_down = health.clone();
    kl.add_admit_handler(Arc::new(move |_pod: &Pod| {
        if shutting_down.shutting_down() {
            Err((NOT_ADMITTED_REASON.into(), NOT_ADMITTED_MESSAGE.into()))
        } else {
            Ok(())
        }
    }));
    let m = Manager {
        metrics: kl.metrics.clone(),
        terminator: KubeletTerminator(kl.clone()),
        health,
        events,
        cfg,
    };
    m.load_state();
    Some(tokio::spawn(m.run()))
}

impl<T: Terminator> Manager<T> {
    /// Connects, checks the inhibit delay, takes the lock and subscribes to the signal.
    async fn setup(&self) -> Result<(Logind, InhibitLock), NodeShutdownError> {
        let bus = |source| NodeShutdownError::Bus {
            address: self.cfg.bus_address.clone(),
            source,
        };
        let logind = Logind::connect(&self.cfg.bus_address).await.map_err(bus)?;
        let delay = logind.inhibit_delay_max().await.map_err(bus)?;
        let requested: i64 = self.cfg.periods.iter().map(|p| p.seconds.max(0)).sum();
        let requested = Duration::from_secs(requested as u64);
        if requested > delay {
            tracing::warn!(
                "logind's InhibitDelayMaxSec ({delay:?}) is less than the requested shutdown \
                 grace period ({requested:?}): logind will not wait that long; raise it in a \
                 logind.conf drop-in"
            );
        }
        let lock = logind
            .inhibit_shutdown()
            .await
            .map_err(NodeShutdownError::Inhibit)?;
        logind
            .monitor_shutdown()
            .await
            .map_err(NodeShutdownError::Monitor)?;
        Ok((logind, lock))
    }

    async fn run(self) {
        let mut watched = false;
        let mut reported = false;
        loop {
            match self.setup().await {
                Ok((logind, lock)) => {
                    if watched {
                        tracing::info!("watching the node for shutdown events again");
                    }
                    watched = true;
                    reported = false;
                    self.serve(logind, lock).await;
                    tracing::warn!("lost the system bus connection; restarting the watch for node shutdown events");
                }
                Err(e) if !watched => {
                    // As the kubelet: the manager is not critical; said once, then the agent runs on.
                    tracing::error!(error = %e, "Failed to start node shutdown manager: graceful node shutdown is unavailable, pods will not be stopped before the node shuts down");
                    return;
                }
                Err(e) => {
                    if !reported {
                        tracing::error!(error = %e, "Unable to watch the node for shutdown events; retrying every second");
                        reported = true;
                    }
                }
            }
            tokio::time::sleep(RECONNECT_PERIOD).await;
        }
    }

    /// Handles `PrepareForShutdown` until the connection ends.
    async fn serve(&self, mut logind: Logind, lock: InhibitLock) {
        let mut lock = Some(lock);
        while let Some(shutting_down) = logind.next_event().await {
            let kind = if shutting_down {
                "shutdown"
            } else {
                "cancelled"
            };
            tracing::info!(event = kind, "Shutdown manager detected new shutdown event");
            self.events.event(
                &ObjectRef::node(&self.cfg.node_name),
                EventType::Normal,
                NODE_SHUTDOWN_EVENT,
                if shutting_down {
                    "Shutdown manager detected shutdown event"
                } else {
                    "Shutdown manager detected shutdown cancellation"
                },
            );
            self.health.set_shutting_down(shutting_down);
            if shutting_down {
                self.process().await;
                drop(lock.take());
                tracing::info!("Shutdown manager completed processing shutdown event, node will shutdown shortly");
            } else {
                match logind.inhibit_shutdown().await {
                    Ok(l) => lock = Some(l),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot take a shutdown inhibitor lock again")
                    }
                }
            }
        }
    }

    async fn process(&self) {
        let start = jiff::Timestamp::now();
        self.store_state(start, None);
        self.metrics
            .graceful_shutdown_start_time_seconds
            .set(secs(start));
        self.metrics.graceful_shutdown_end_time_seconds.set(0.0);
        process_shutdown(&self.terminator, &self.cfg.periods).await;
        let end = jiff::Timestamp::now();
        self.store_state(start, Some(end));
        self.metrics
            .graceful_shutdown_end_time_seconds
            .set(secs(end));
    }

    /// The last shutdown's times from the state file, for the metrics.
    fn load_state(&self) {
        let Ok(text) = std::fs::read_to_string(&self.cfg.state_file) else {
            return;
        };
        let v: serde_json::Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(path = %self.cfg.state_file.display(), error = %e, "Failed to load graceful shutdown state");
                return;
            }
        };
        let time = |k: &str| {
            v.get(k)
                .and_then(|t| t.as_str())
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                // Go's zero time: not set.
                .filter(|t| *t > jiff::Timestamp::UNIX_EPOCH)
        };
        if let Some(t) = time("startTime") {
            self.metrics
                .graceful_shutdown_start_time_seconds
                .set(secs(t));
        }
        if let Some(t) = time("endTime") {
            self.metrics.graceful_shutdown_end_time_seconds.set(secs(t));
        }
    }

    fn store_state(&self, start: jiff::Timestamp, end: Option<jiff::Timestamp>) {
        let body = serde_json::json!({
            "startTime": start.to_string(),
            "endTime": end.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), |e| e.to_string()),
        });
        let path = &self.cfg.state_file;
        let tmp = path.with_extension("tmp");
        let written =
            std::fs::write(&tmp, body.to_string()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::error!(path = %path.display(), error = %e, "Failed to store graceful shutdown state");
        }
    }
}

fn secs(t: jiff::Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;
    use tokio::time::Instant;

    fn pod(uid: &str, priority: i32, grace: Option<i64>) -> ShutdownPod {
        ShutdownPod {
            uid: uid.into(),
            name: format!("default/{uid}"),
            priority,
            grace,
        }
    }

    #[test]
    fn legacy_settings_become_two_groups() {
        let p = periods(Duration::from_secs(30), Duration::from_secs(10), &[]);
        assert_eq!(
            p,
            vec![
                ShutdownPeriod {
                    priority: 0,
                    seconds: 20
                },
                ShutdownPeriod {
                    priority: SYSTEM_CRITICAL_PRIORITY,
                    seconds: 10
                }
            ]
        );
        assert!(periods(Duration::ZERO, Duration::ZERO, &[]).is_empty());
        // The list wins, sorted by priority.
        let p = periods(
            Duration::ZERO,
            Duration::ZERO,
            &[(100, 5), (-5, 1), (10, 3)],
        );
        let prios: Vec<i32> = p.iter().map(|p| p.priority).collect();
        assert_eq!(prios, vec![-5, 10, 100]);
    }

    #[test]
    fn pods_go_to_the_group_at_or_below_their_priority() {
        let p = periods(
            Duration::ZERO,
            Duration::ZERO,
            &[(0, 10), (100, 20), (SYSTEM_CRITICAL_PRIORITY, 30)],
        );
        let groups = group_by_priority(
            &p,
            vec![
                pod("neg", -10, None),
                pod("zero", 0, None),
                pod("mid", 50, None),
                pod("hundred", 100, None),
                pod("node-critical", SYSTEM_CRITICAL_PRIORITY + 1000, None),
            ],
        );
        let uids: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.pods.iter().map(|p| p.uid.as_str()).collect())
            .collect();
        assert_eq!(
            uids,
            vec![
                vec!["neg", "zero", "mid"],
                vec!["hundred"],
                vec!["node-critical"]
            ]
        );
        assert!(group_by_priority(&[], vec![pod("a", 0, None)]).is_empty());
    }

    /// Records when each pod was told to stop and with what grace; a pod takes `takes` of its
    /// grace period to go down (`None`: never).
    struct Fake {
        pods: Vec<ShutdownPod>,
        takes: fn(&ShutdownPod) -> Option<Duration>,
        started: Instant,
        calls: Mutex<Vec<(String, i64, Duration)>>,
        done: Mutex<Vec<(String, Duration)>>,
    }

    impl Terminator for Fake {
        fn active_pods(&self) -> Vec<ShutdownPod> {
            self.pods.clone()
        }

        async fn terminate(&self, pod: &ShutdownPod, grace: i64) {
            self.calls
                .lock()
                .push((pod.uid.clone(), grace, self.started.elapsed()));
            match (self.takes)(pod) {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
            self.done
                .lock()
                .push((pod.uid.clone(), self.started.elapsed()));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn groups_run_in_priority_order_within_their_budgets() {
        let fake = Fake {
            pods: vec![
                pod("critical", SYSTEM_CRITICAL_PRIORITY + 1000, None),
                pod("web", 0, Some(3)),
                pod("batch", 0, None),
            ],
            takes: |p| match p.uid.as_str() {
                "web" => Some(Duration::from_secs(2)),
                "batch" => Some(Duration::from_secs(5)),
                _ => Some(Duration::from_secs(1)),
            },
            started: Instant::now(),
            calls: Mutex::default(),
            done: Mutex::default(),
        };
        let p = periods(Duration::from_secs(20), Duration::from_secs(10), &[]);
        process_shutdown(&fake, &p).await;
        let calls = fake.calls.lock().clone();
        // The normal pods first, together, each with min(own grace, the group's 10 s); the
        // critical pod once both are down (at 5 s), with the critical budget.
        assert_eq!(
            calls,
            vec![
                ("web".to_string(), 3, Duration::ZERO),
                ("batch".to_string(), 10, Duration::ZERO),
                ("critical".to_string(), 10, Duration::from_secs(5)),
            ]
        );
        assert_eq!(
            fake.done.lock().last().cloned(),
            Some(("critical".to_string(), Duration::from_secs(6)))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_that_overruns_its_budget_is_left_behind() {
        let fake = Fake {
            pods: vec![
                pod("stuck", 0, None),
                pod("critical", SYSTEM_CRITICAL_PRIORITY, Some(60)),
            ],
            takes: |p| (p.uid != "stuck").then_some(Duration::from_secs(1)),
            started: Instant::now(),
            calls: Mutex::default(),
            done: Mutex::default(),
        };
        let p = periods(Duration::from_secs(12), Duration::from_secs(4), &[]);
        let t0 = Instant::now();
        process_shutdown(&fake, &p).await;
        let calls = fake.calls.lock().clone();
        // The stuck pod's group ends at its 8 s; the critical pod's own 60 s is cut to 4 s.
        assert_eq!(
            calls,
            vec![
                ("stuck".to_string(), 8, Duration::ZERO),
                ("critical".to_string(), 4, Duration::from_secs(8)),
            ]
        );
        assert_eq!(t0.elapsed(), Duration::from_secs(9));
        assert_eq!(
            fake.done.lock().clone(),
            vec![("critical".to_string(), Duration::from_secs(9))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn empty_groups_take_no_time() {
        let fake = Fake {
            pods: vec![pod("critical", SYSTEM_CRITICAL_PRIORITY, None)],
            takes: |_| Some(Duration::from_secs(1)),
            started: Instant::now(),
            calls: Mutex::default(),
            done: Mutex::default(),
        };
        let p = periods(Duration::from_secs(30), Duration::from_secs(10), &[]);
        process_shutdown(&fake, &p).await;
        assert_eq!(
            fake.calls.lock().clone(),
            vec![("critical".to_string(), 10, Duration::ZERO)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_sets_the_metrics_and_keeps_them_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let manager = |metrics: crate::metrics::Metrics| Manager {
            cfg: ManagerConfig {
                node_name: "n".into(),
                periods: periods(Duration::from_secs(2), Duration::from_secs(1), &[]),
                bus_address: String::new(),
                state_file: dir.path().join(STATE_FILE),
            },
            terminator: Fake {
                pods: vec![pod("web", 0, None)],
                takes: |_| Some(Duration::from_millis(500)),
                started: Instant::now(),
                calls: Mutex::default(),
                done: Mutex::default(),
            },
            health: Health::new(),
            events: managers::EventRecorder::new("n", 16, Arc::new(managers::SystemClock)),
            metrics,
        };
        let m = manager(crate::metrics::Metrics::new("n"));
        // A state file from before the first shutdown (Go's zero end time) sets nothing.
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"startTime":"0001-01-01T00:00:00Z","endTime":"0001-01-01T00:00:00Z"}"#,
        )
        .unwrap();
        m.load_state();
        assert_eq!(m.metrics.graceful_shutdown_start_time_seconds.get(), 0.0);
        m.process().await;
        let start = m.metrics.graceful_shutdown_start_time_seconds.get();
        let end = m.metrics.graceful_shutdown_end_time_seconds.get();
        assert!(start > 0.0 && end >= start, "{start} {end}");
        assert_eq!(m.terminator.calls.lock().len(), 1);
        // A restarted agent reports the same times.
        let again = manager(crate::metrics::Metrics::new("n"));
        again.load_state();
        assert_eq!(
            again.metrics.graceful_shutdown_start_time_seconds.get(),
            start
        );
        assert_eq!(again.metrics.graceful_shutdown_end_time_seconds.get(), end);
    }

    #[test]
    fn pods_take_priority_from_spec_or_system_class() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "dns", "namespace": "kube-system", "uid": "u1"},
            "spec": {"priorityClassName": "system-node-critical", "terminationGracePeriodSeconds": 5, "containers": []}
        }))
        .unwrap();
        let s = ShutdownPod::from_pod(&p);
        assert_eq!(s.priority, SYSTEM_CRITICAL_PRIORITY + 1000);
        assert_eq!(s.grace, Some(5));
        assert_eq!(s.name, "kube-system/dns");
    }
}
