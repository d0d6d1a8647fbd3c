//! One probe of one container (`pkg/kubelet/prober/worker.go`): a tokio task that wakes every
//! `periodSeconds` on a grid shared by all workers ([`PHASES_PER_PERIOD`]), and at once when its
//! container changes, probes the container the pod
//! worker last reported running, and turns raw outcomes into results with the thresholds:
//! a result is recorded once it repeats `successThreshold` / `failureThreshold` times in a row.
//!
//! - A new container ID resets the worker: the old ID's result is dropped and the initial value
//!   recorded (readiness: Failure, liveness: Success, startup: Unknown).
//! - Liveness and readiness wait for the startup probe to succeed; the startup probe stops once
//!   it has. None probe before `initialDelaySeconds` have passed since the container started.
//! - After a liveness or startup failure the worker holds until the container is replaced.
//! - Readiness of a pod that is being deleted is Failure.
//! - Errors of the prober itself (an unknown port name, the runtime not answering) are logged
//!   and change nothing, as in the kubelet.
//! - A panic in the worker is caught and the worker restarted after a pause ([`run`]); its
//!   container's result starts over from the initial value.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use tokio::sync::watch;

use crate::kubelet::pod_workers::{panic_message, PANIC_BACKOFF, PANIC_BACKOFF_MAX};

use super::{ProbeObservation, ProbeOutcome, ProbeRequest, ProbeResult, ProbeType, Shared};

/// What the pod worker last saw of a container; workers read it before each probe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// The running container's ID; empty when it is not running.
    pub id: Arc<str>,
    /// When it started (Unix nanoseconds).
    pub started_at: i64,
    /// The pod's first IP (the default probe host).
    pub pod_ip: Arc<str>,
    /// The startup probe has succeeded (or there is none).
    pub started: bool,
    /// The pod is being deleted.
    pub terminating: bool,
}

/// The probe's settings with the API defaults applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl Timing {
    pub fn of(p: &Probe, ptype: ProbeType) -> Timing {
        let secs = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        Timing {
            initial_delay: secs(p.initial_delay_seconds, 0, 0),
            period: secs(p.period_seconds, 10, 1),
            timeout: secs(p.timeout_seconds, 1, 1),
            // Liveness and startup probes must use 1 (validation says so; be safe anyway).
            success_threshold: match ptype {
                ProbeType::Readiness => p.success_threshold.unwrap_or(1).max(1) as u32,
                _ => 1,
            },
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }
}

/// Consecutive-result counting (`lastResult` / `resultRun`).
#[derive(Debug, Clone, Default)]
pub struct Thresholds {
    last: Option<ProbeResult>,
    run: u32,
}

impl Thresholds {
    /// Feeds one outcome; returns the result to record, or None while a threshold is not met.
    pub fn feed(&mut self, result: ProbeResult, timing: &Timing) -> Option<ProbeResult> {
        if self.last == Some(result) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(result);
            self.run = 1;
        }
        match result {
            ProbeResult::Failure if self.run < timing.failure_threshold => None,
            ProbeResult::Success if self.run < timing.success_threshold => None,
            r => Some(r),
        }
    }

    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// The identity and spec a worker probes.
pub struct WorkerSpec {
    pub ptype: ProbeType,
    pub pod: Arc<Pod>,
    pub uid: Arc<str>,
    pub container: Container,
    pub probe: Probe,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Probes of one period fire in this many phases: each worker's ticks sit on a grid shared by
/// the whole prober (`epoch + phase + k * period`), its phase chosen by a hash of the pod, the
/// container and the probe type. Probes falling due together run in one wakeup: on this
/// machine a wakeup from idle costs more than the probe itself (see `benches/probes.rs`), so a
/// node with many probes spends a fraction of the CPU it would with one wakeup per probe, while
/// the load is still spread over the period and no instant sees every probe at once.
pub const PHASES_PER_PERIOD: u32 = 4;

/// This worker's phase on the grid.
fn phase(spec: &WorkerSpec, period: Duration) -> Duration {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in spec
        .uid
        .bytes()
        .chain(spec.container.name.bytes())
        .chain([spec.ptype.index() as u8])
    {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    period / PHASES_PER_PERIOD * (h % PHASES_PER_PERIOD as u64) as u32
}

/// The first grid point strictly after `now`.
pub fn next_tick(
    epoch: tokio::time::Instant,
    phase: Duration,
    period: Duration,
    now: tokio::time::Instant,
) -> tokio::time::Instant {
    let base = epoch + phase;
    if now < base {
        return base;
    }
    let periods = (now - base).as_nanos() / period.as_nanos().max(1) + 1;
    base + period * periods as u32
}

/// Runs the worker, supervised, until aborted: a panic anywhere in it (in a probe, or in
/// whatever it reports to) is caught, logged with the pod and container, counted
/// (`prober_probe_worker_panics_total`), and the worker restarted after a pause
/// ([`PANIC_BACKOFF`], doubling while it keeps panicking). A restarted worker starts afresh: the
/// container's result goes back to the initial value until it is probed again.
pub async fn run(shared: Arc<Shared>, spec: WorkerSpec, mut target: watch::Receiver<Target>) {
    let mut panics = 0u32;
    loop {
        let started = tokio::time::Instant::now();
        let run = AssertUnwindSafe(probe_loop(&shared, &spec, &mut target)).catch_unwind();
        let Err(payload) = run.await else {
            return;
        };
        // A worker that ran a while before panicking starts its backoff over.
        if started.elapsed() > PANIC_BACKOFF_MAX {
            panics = 0;
        }
        panics = panics.saturating_add(1);
        shared.worker_panicked(spec.ptype);
        let pause = PANIC_BACKOFF
            .saturating_mul(1 << (panics - 1).min(16))
            .min(PANIC_BACKOFF_MAX);
        tracing::error!(
            pod = %format!("{}/{}", spec.pod.metadata.namespace.as_deref().unwrap_or("default"),
                spec.pod.metadata.name.as_deref().unwrap_or("")),
            uid = %spec.uid,
            container = %spec.container.name,
            probe = spec.ptype.as_str(),
            panic = %panic_message(payload.as_ref()),
            "probe worker panicked; restarting it in {pause:?}"
        );
        tokio::time::sleep(pause).await;
    }
}

/// One probe's loop; returns when the pod worker's side of `target` is gone.
async fn probe_loop(shared: &Shared, spec: &WorkerSpec, target: &mut watch::Receiver<Target>) {
    let timing = Timing::of(&spec.probe, spec.ptype);
    let mut thresholds = Thresholds::default();
    let mut current: Arc<str> = Arc::from("");
    let mut on_hold = false;
    // The container's age when first seen, plus the runtime clock since: initialDelaySeconds
    // follows the tokio clock (tests pause it) from the wall-clock start the runtime reported.
    let mut age_at_seen = Duration::ZERO;
    let mut seen_at = tokio::time::Instant::now();
    let name = spec.pod.metadata.name.clone().unwrap_or_default();
    let namespace = spec
        .pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let phase = phase(spec, timing.period);
    let mut next = next_tick(
        shared.epoch,
        phase,
        timing.period,
        tokio::time::Instant::now(),
    );
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {
                next = next_tick(shared.epoch, phase, timing.period, tokio::time::Instant::now());
            }
            changed = target.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let t = target.borrow_and_update().clone();
        if t.id.is_empty() {
            continue;
        }
        if t.id != current {
            if !current.is_empty() {
                shared.results.remove(spec.ptype, &current);
            }
            current = t.id.clone();
            age_at_seen =
                Duration::from_nanos(now_nanos().saturating_sub(t.started_at).max(0) as u64);
            seen_at = tokio::time::Instant::now();
            thresholds.reset();
            on_hold = false;
            shared.results.set(
                spec.ptype,
                &current,
                &spec.uid,
                spec.ptype.initial_value(),
                false,
            );
            // A container that just started is probed at once; one that was already running
            // when the worker met it (an agent restart adopting pods) waits for its grid point,
            // so that a restart does not probe every container at the same instant.
            if age_at_seen > timing.period {
                continue;
            }
        }
        if on_hold {
            continue;
        }
        match spec.ptype {
            ProbeType::Startup if t.started => continue,
            ProbeType::Liveness | ProbeType::Readiness if !t.started => continue,
            _ => {}
        }
        if spec.ptype == ProbeType::Readiness && t.terminating {
            shared
                .results
                .set(spec.ptype, &current, &spec.uid, ProbeResult::Failure, true);
            continue;
        }
        if age_at_seen + seen_at.elapsed() < timing.initial_delay {
            continue;
        }
        let started = tokio::time::Instant::now();
        let outcome = shared
            .runner
            .run(&ProbeRequest {
                ptype: spec.ptype,
                probe: &spec.probe,
                pod: &spec.pod,
                container: &spec.container,
                container_id: &current,
                pod_ip: &t.pod_ip,
                timeout: timing.timeout,
            })
            .await;
        let elapsed = started.elapsed();
        shared.observe(&ProbeObservation {
            probe_type: spec.ptype,
            result: outcome.result,
            pod: &name,
            namespace: &namespace,
            pod_uid: &spec.uid,
            container: &spec.container.name,
            duration: elapsed,
        });
        report(shared, spec, &name, &namespace, &outcome);
        let result = match outcome.result {
            ProbeResult::Warning => ProbeResult::Success,
            ProbeResult::Unknown => continue,
            r => r,
        };
        if let Some(r) = thresholds.feed(result, &timing) {
            shared.results.set(spec.ptype, &current, &spec.uid, r, true);
            if r == ProbeResult::Failure && spec.ptype != ProbeType::Readiness {
                on_hold = true;
                thresholds.reset();
            }
        }
    }
}

/// Events and logs for one outcome, worded as the kubelet's (`Unhealthy`: "Liveness probe
/// failed: ...", `ProbeWarning`, and "probe errored" for the prober's own errors).
fn report(shared: &Shared, spec: &WorkerSpec, name: &str, namespace: &str, o: &ProbeOutcome) {
    match o.result {
        ProbeResult::Success => {}
        ProbeResult::Warning => shared.events.warning(
            &spec.pod,
            "ProbeWarning",
            &format!("{} probe warning: {}", spec.ptype.as_str(), o.output),
        ),
        ProbeResult::Failure => shared.events.warning(
            &spec.pod,
            "Unhealthy",
            &format!("{} probe failed: {}", spec.ptype.as_str(), o.output),
        ),
        ProbeResult::Unknown => {
            tracing::warn!(pod = %format!("{namespace}/{name}"), container = %spec.container.name,
                "{} probe errored: {}", spec.ptype.as_str(), o.output);
            shared.events.warning(
                &spec.pod,
                "Unhealthy",
                &format!("{} probe errored: {}", spec.ptype.as_str(), o.output),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing(success: u32, failure: u32) -> Timing {
        Timing {
            initial_delay: Duration::ZERO,
            period: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    #[test]
    fn thresholds_need_consecutive_results() {
        use ProbeResult::*;
        let t = timing(2, 3);
        let mut th = Thresholds::default();
        assert_eq!(th.feed(Failure, &t), None);
        assert_eq!(th.feed(Failure, &t), None);
        assert_eq!(
            th.feed(Success, &t),
            None,
            "a success breaks the failure run"
        );
        assert_eq!(th.feed(Success, &t), Some(Success));
        assert_eq!(th.feed(Failure, &t), None);
        assert_eq!(th.feed(Failure, &t), None);
        assert_eq!(th.feed(Failure, &t), Some(Failure));
        assert_eq!(th.feed(Failure, &t), Some(Failure), "stays failed");
        let mut one = Thresholds::default();
        assert_eq!(one.feed(Success, &timing(1, 1)), Some(Success));
        assert_eq!(one.feed(Failure, &timing(1, 1)), Some(Failure));
    }

    #[test]
    fn ticks_sit_on_the_grid() {
        let epoch = tokio::time::Instant::now();
        let p = Duration::from_secs(10);
        let ph = Duration::from_millis(2500);
        assert_eq!(next_tick(epoch, ph, p, epoch), epoch + ph);
        assert_eq!(
            next_tick(epoch, ph, p, epoch + ph),
            epoch + ph + p,
            "strictly after now"
        );
        assert_eq!(
            next_tick(epoch, ph, p, epoch + Duration::from_secs(31)),
            epoch + ph + p * 3
        );
    }

    #[test]
    fn timing_defaults_match_the_api() {
        let t = Timing::of(&Probe::default(), ProbeType::Readiness);
        assert_eq!(t.period, Duration::from_secs(10));
        assert_eq!(t.timeout, Duration::from_secs(1));
        assert_eq!((t.success_threshold, t.failure_threshold), (1, 3));
        let p = Probe {
            success_threshold: Some(5),
            period_seconds: Some(0),
            ..Default::default()
        };
        assert_eq!(Timing::of(&p, ProbeType::Liveness).success_threshold, 1);
        assert_eq!(Timing::of(&p, ProbeType::Readiness).success_threshold, 5);
        assert_eq!(
            Timing::of(&p, ProbeType::Readiness).period,
            Duration::from_secs(1)
        );
    }
}
