//! Whether the API server answers, as the node's API loops see it: each loop reports its
//! calls' outcome; the state changes are logged once each ("the API server is unreachable",
//! "the API server is reachable again") instead of once per failed call, and the read-only
//! port and `/healthz?verbose` can say it. Losing the API server never stops the node.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

#[derive(Debug, Default)]
struct State {
    /// `None` until the first call; then whether the last one reached the server.
    reachable: Option<bool>,
    last_error: Option<String>,
}

/// Shared by every loop that talks to the API server.
#[derive(Clone, Default, Debug)]
pub struct Reachability(Arc<Mutex<State>>);

/// Whether an error means the server did not answer (as opposed to an API error status).
pub fn is_unreachable(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(_))
}

impl Reachability {
    /// A call reached the server (whatever its status).
    pub fn ok(&self) {
        let mut s = self.0.lock();
        if s.reachable != Some(true) {
            if s.reachable == Some(false) {
                tracing::info!("the API server is reachable again");
            }
            s.reachable = Some(true);
            s.last_error = None;
        }
    }

    /// A call got no answer: `why` is the error.
    pub fn failed(&self, why: &str) {
        let mut s = self.0.lock();
        if s.reachable != Some(false) {
            tracing::warn!(error = %why, "the API server is unreachable; the node keeps running its pods and retries");
            s.reachable = Some(false);
        }
        s.last_error = Some(why.to_string());
    }

    /// Records the outcome of a call: a `kube::Error` that is not an API status counts as
    /// unreachable.
    pub fn observe<T>(&self, r: &Result<T, kube::Error>) {
        match r {
            Ok(_) => self.ok(),
            Err(e) if is_unreachable(e) => self.failed(&e.to_string()),
            Err(_) => self.ok(),
        }
    }

    /// `Some(error)` while the server is unreachable.
    pub fn error(&self) -> Option<String> {
        let s = self.0.lock();
        match s.reachable {
            Some(false) => s.last_error.clone(),
            _ => None,
        }
    }

    /// Whether the last call reached the server.
    pub fn reachable(&self) -> bool {
        self.0.lock().reachable == Some(true)
    }
}

/// The retry delay after `failures` consecutive failures: 200 ms doubling up to `max`
/// (the kubelet retries registration with a 7 s cap, node status each period).
pub fn backoff(failures: u32, max: Duration) -> Duration {
    let d = Duration::from_millis(200).saturating_mul(1u32 << failures.min(16));
    d.min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_changes_once() {
        let r = Reachability::default();
        assert!(r.error().is_none() && !r.reachable());
        r.failed("connection refused");
        r.failed("connection refused again");
        assert_eq!(r.error().as_deref(), Some("connection refused again"));
        r.ok();
        assert!(r.error().is_none() && r.reachable());
    }

    #[test]
    fn backoff_doubles_to_the_cap() {
        let max = Duration::from_secs(7);
        assert_eq!(backoff(0, max), Duration::from_millis(200));
        assert_eq!(backoff(1, max), Duration::from_millis(400));
        assert_eq!(backoff(10, max), max);
        assert_eq!(backoff(100, max), max);
    }
}
