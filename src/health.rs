//! The agent's own health: PLEG relist freshness, runtime reachability and the sync loop's
//! liveness. `/healthz` and the node's Ready condition read it.
//!
//! Times are `tokio::time::Instant`, so tests advance a paused clock instead of sleeping.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::backoff::go_duration;

/// A relist older than this makes the PLEG unhealthy (the kubelet's `relistThreshold`).
pub const RELIST_THRESHOLD: Duration = Duration::from_secs(180);

#[derive(Debug)]
struct State {
    started: Instant,
    last_relist: Option<Instant>,
    runtime_error: Option<String>,
    network_error: Option<String>,
    last_sync_loop: Instant,
    /// The node shutdown manager saw `PrepareForShutdown(true)` and no cancellation since.
    shutting_down: bool,
}

/// Shared health record.
#[derive(Debug, Clone)]
pub struct Health(Arc<Mutex<State>>, Arc<tokio::sync::Notify>);

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

/// One named check's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub error: Option<String>,
}

impl Health {
    pub fn new() -> Self {
        let now = Instant::now();
        Self(
            Arc::new(Mutex::new(State {
                started: now,
                last_relist: None,
                runtime_error: None,
                network_error: None,
                last_sync_loop: now,
                shutting_down: false,
            })),
            Arc::default(),
        )
    }

    pub fn relist_ok(&self) {
        let mut s = self.0.lock();
        s.last_relist = Some(Instant::now());
        s.runtime_error = None;
    }

    pub fn runtime_failed(&self, why: String) {
        self.0.lock().runtime_error = Some(why);
    }

    pub fn runtime_ok(&self) {
        self.0.lock().runtime_error = None;
    }

    pub fn set_network_error(&self, why: Option<String>) {
        self.0.lock().network_error = why;
    }

    pub fn sync_loop_tick(&self) {
        self.0.lock().last_sync_loop = Instant::now();
    }

    /// The node is shutting down (true) or the shutdown was cancelled (false); the node's
    /// status loop is woken to report it at once, as the kubelet syncs the node status.
    pub fn set_shutting_down(&self, yes: bool) {
        self.0.lock().shutting_down = yes;
        self.1.notify_one();
    }

    /// Whether the node is shutting down.
    pub fn shutting_down(&self) -> bool {
        self.0.lock().shutting_down
    }

    /// Returns when something the node's Ready condition reports changed at once (a node
    /// shutdown starting or being cancelled) since the last call.
    pub async fn changed(&self) {
        self.1.notified().await
    }

    /// The runtime's last error, if it is down.
    pub fn runtime_error(&self) -> Option<String> {
        self.0.lock().runtime_error.clone()
    }

    /// PLEG health: relisted within the threshold (counting from start-up before the first).
    pub fn pleg_error(&self) -> Option<String> {
        let s = self.0.lock();
        let since = s.last_relist.unwrap_or(s.started);
        let age = Instant::now().saturating_duration_since(since);
        (age > RELIST_THRESHOLD).then(|| {
            format!(
                "pleg was last seen active {} ago; threshold is {}",
                go_duration(age),
                go_duration(RELIST_THRESHOLD)
            )
        })
    }

    /// Every check, in the order `/healthz?verbose` lists them.
    pub fn checks(&self) -> Vec<Check> {
        let (runtime, network, sync_age) = {
            let s = self.0.lock();
            (
                s.runtime_error.clone(),
                s.network_error.clone(),
                Instant::now().saturating_duration_since(s.last_sync_loop),
            )
        };
        vec![
            Check {
                name: "ping",
                error: None,
            },
            Check {
                name: "log",
                error: None,
            },
            Check {
                name: "syncloop",
                error: (sync_age > Duration::from_secs(60)).then(|| {
                    format!(
                        "sync loop was last seen active {} ago",
                        go_duration(sync_age)
                    )
                }),
            },
            Check {
                name: "pleg",
                error: self.pleg_error(),
            },
            Check {
                name: "runtime",
                error: runtime.map(|e| format!("container runtime is down: {e}")),
            },
            Check {
                name: "network",
                error: network.map(|e| format!("container runtime network not ready: {e}")),
            },
        ]
    }

    /// The node's readiness and, when not ready, why (the Ready condition's message). A node
    /// shutting down is not ready (the kubelet's `nodeShutdownManagerErrorsFunc`), though
    /// `/healthz` stays healthy, as the kubelet's does.
    pub fn node_ready(&self) -> (bool, String) {
        let mut problems: Vec<String> = self.checks().into_iter().filter_map(|c| c.error).collect();
        if self.shutting_down() {
            problems.push("node is shutting down".into());
        }
        if problems.is_empty() {
            (true, "kubelet is posting ready status".into())
        } else {
            (false, problems.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn stale_relist_fails_the_pleg_check() {
        let h = Health::new();
        h.relist_ok();
        assert!(h.pleg_error().is_none());
        tokio::time::advance(Duration::from_secs(179)).await;
        assert!(h.pleg_error().is_none());
        tokio::time::advance(Duration::from_secs(2)).await;
        let e = h.pleg_error().unwrap();
        assert_eq!(e, "pleg was last seen active 3m1s ago; threshold is 3m0s");
        let (ready, why) = h.node_ready();
        assert!(!ready);
        assert!(why.contains("pleg was last seen active"), "{why}");
        h.sync_loop_tick();
        h.relist_ok();
        assert!(h.node_ready().0);
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_down_is_reported_until_it_returns() {
        let h = Health::new();
        h.runtime_failed("connection refused".into());
        let c = h.checks();
        let rt = c.iter().find(|c| c.name == "runtime").unwrap();
        assert_eq!(
            rt.error.as_deref(),
            Some("container runtime is down: connection refused")
        );
        assert!(!h.node_ready().0);
        h.relist_ok();
        assert!(h.node_ready().0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_makes_the_node_not_ready_but_not_unhealthy() {
        let h = Health::new();
        h.relist_ok();
        h.set_shutting_down(true);
        // The status loop is woken.
        tokio::time::timeout(Duration::from_secs(1), h.changed())
            .await
            .unwrap();
        assert_eq!(h.node_ready(), (false, "node is shutting down".to_string()));
        assert!(h.checks().iter().all(|c| c.error.is_none()));
        h.set_shutting_down(false);
        assert!(h.node_ready().0);
    }
}
