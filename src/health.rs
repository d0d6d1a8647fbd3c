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
}

/// Shared health record.
#[derive(Debug, Clone)]
pub struct Health(Arc<Mutex<State>>);

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
        Self(Arc::new(Mutex::new(State {
            started: now,
            last_relist: None,
            runtime_error: None,
            network_error: None,
            last_sync_loop: now,
        })))
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

    /// The node's readiness and, when not ready, why (the Ready condition's message).
    pub fn node_ready(&self) -> (bool, String) {
        let problems: Vec<String> = self.checks().into_iter().filter_map(|c| c.error).collect();
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
}
