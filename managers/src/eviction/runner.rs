//! The eviction manager's thread: when to run a pass.
//!
//! [`Reaction::Fast`] (the default) runs a pass
//! - at once when a kernel memory notification fires (the memcg usage threshold that
//!   corresponds to each memory eviction threshold, re-armed after every pass as the working
//!   set and page cache move; PSI/`memory.events` on cgroup v2), sampling the cgroups anew;
//! - after every collector pass (1 s by default), on the samples it just took;
//! - every `fallback` (10 s) regardless, sampling anew.
//!
//! [`Reaction::Polling`] only runs a pass every `period`, as the kubelet does (10 s): it exists
//! to measure what the fast path buys (`benches/pressure.rs`).
//!
//! After a pass that evicted a pod (its containers stopped by then), another pass runs
//! immediately on fresh samples, so minimum reclaim and further pressure are handled without
//! waiting.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{self, Receiver, Sender};

use super::api::Signal;
use super::manager::{EvictionManager, Outcome};
use super::notifier::{Backend, MemoryNotifier, Target};
use collectors::PassEvent;

/// How the runner decides to run a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaction {
    /// Notifications, collector passes, and a fallback timer.
    Fast {
        /// The fallback period.
        fallback: Duration,
    },
    /// A timer only (the kubelet's behaviour).
    Polling {
        /// The period.
        period: Duration,
    },
}

impl Reaction {
    /// The kubelet's monitoring interval.
    pub const KUBELET_PERIOD: Duration = Duration::from_secs(10);

    /// The default: fast, with the kubelet's period as fallback.
    pub fn fast() -> Reaction {
        Reaction::Fast {
            fallback: Self::KUBELET_PERIOD,
        }
    }
}

/// Re-arm a notification when its threshold moved by more than this.
const REARM_SLACK: u64 = 1 << 20;

/// Called after every pass.
pub type PassHook = Box<dyn Fn(&Outcome) + Send>;

/// The eviction thread's configuration.
pub struct Runner {
    /// The manager.
    pub manager: Arc<EvictionManager>,
    /// When to run passes.
    pub reaction: Reaction,
    /// Collector passes (fast mode).
    pub passes: Option<Receiver<PassEvent>>,
    /// Kernel notifications (fast mode; `None`: none).
    pub notifications: Option<Backend>,
    /// procfs (the machine-wide PSI file).
    pub proc_root: PathBuf,
    /// Called after every pass (node conditions, metrics).
    pub on_pass: Option<PassHook>,
}

/// Stops and joins the eviction thread when dropped.
pub struct RunnerHandle {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl RunnerHandle {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunnerHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Runner {
    /// Starts the eviction thread.
    pub fn spawn(self) -> std::io::Result<RunnerHandle> {
        let (stop_tx, stop_rx) = channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("eviction".into())
            .spawn(move || self.run(stop_rx))?;
        Ok(RunnerHandle {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    fn run(self, stop: Receiver<()>) {
        let (wake_tx, wake_rx) = channel::bounded::<()>(1);
        let (period, fast) = match self.reaction {
            Reaction::Fast { fallback } => (fallback, true),
            Reaction::Polling { period } => (period, false),
        };
        let passes = if fast {
            self.passes.clone().unwrap_or_else(channel::never)
        } else {
            channel::never()
        };
        let backend = if fast { self.notifications } else { None };
        // One notifier per memory threshold.
        let memory_thresholds: Vec<_> = self
            .manager
            .config()
            .thresholds
            .iter()
            .copied()
            .filter(|t| t.signal.is_memory())
            .collect();
        let mut notifiers: Vec<MemoryNotifier> = match backend {
            Some(b) => memory_thresholds
                .iter()
                .map(|_| MemoryNotifier::new(b, &self.proc_root, wake_tx.clone()))
                .collect(),
            None => Vec::new(),
        };
        let tick = channel::tick(period);
        tracing::info!(reaction = ?self.reaction, notifications = ?backend, "eviction manager started");
        let mut fresh = true;
        let mut last_error = String::new();
        loop {
            loop {
                match self.manager.synchronize(fresh) {
                    Ok(out) => {
                        last_error.clear();
                        if let Some(f) = &self.on_pass {
                            f(&out);
                        }
                        if let Some(s) = &out.summary {
                            for (t, n) in memory_thresholds.iter().zip(notifiers.iter_mut()) {
                                let mem = if t.signal == Signal::MemoryAvailable {
                                    s.memory.as_ref()
                                } else {
                                    s.allocatable_memory.as_ref()
                                };
                                let Some(m) = mem else { continue };
                                let Some(dir) = m.cgroup_dir.clone() else {
                                    continue;
                                };
                                let (q, _) = t.value.quantity(m.capacity);
                                let at = (m.capacity - q + m.inactive_file()).max(0) as u64;
                                if let Err(e) = n.arm(
                                    Target {
                                        dir,
                                        usage_threshold: at,
                                    },
                                    REARM_SLACK,
                                ) {
                                    tracing::warn!(error = %e, "eviction manager: cannot arm the memory notification; relying on the collector's passes");
                                }
                            }
                        }
                        if out.evicted.is_some() {
                            fresh = true;
                            continue;
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        if msg != last_error {
                            tracing::warn!(error = %msg, "eviction manager: failed to synchronize");
                            last_error = msg;
                        }
                    }
                }
                break;
            }
            fresh = channel::select! {
                recv(stop) -> _ => break,
                recv(wake_rx) -> _ => {
                    tracing::debug!("eviction manager: memory threshold notification");
                    true
                }
                recv(passes) -> p => {
                    if p.is_err() {
                        tracing::warn!("eviction manager: the collector stopped; polling only");
                    }
                    false
                }
                recv(tick) -> _ => true,
            };
            // Coalesce what piled up meanwhile: one pass covers it.
            while passes.try_recv().is_ok() {}
            if wake_rx.try_recv().is_ok() {
                fresh = true;
            }
        }
        tracing::info!("eviction manager stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::containers::ContainerGcError;
    use crate::events::testing::RecordingSink;
    use crate::eviction::api::{Threshold, ThresholdValue};
    use crate::eviction::manager::{
        Config, DeleteUnusedContainers, DeleteUnusedImages, Deps, KillPod, KillRequest, StatsError,
        SummarySource,
    };
    use crate::eviction::ranking::PodCandidate;
    use crate::eviction::signals::{MemoryStats, NodeSummary};
    use crate::images::ImageGcError;
    use parking_lot::Mutex;

    struct Src {
        calls: Mutex<Vec<bool>>,
        calls_tx: Sender<bool>,
    }
    impl SummarySource for Src {
        fn active_pods(&self) -> Vec<PodCandidate> {
            Vec::new()
        }
        fn summary(&self, _: &[PodCandidate], fresh: bool) -> Result<NodeSummary, StatsError> {
            self.calls.lock().push(fresh);
            let _ = self.calls_tx.try_send(fresh);
            Ok(NodeSummary {
                memory: Some(MemoryStats {
                    capacity: 1 << 30,
                    working_set: 1 << 20,
                    usage: 1 << 20,
                    time: 1,
                    cgroup_dir: None,
                }),
                ..Default::default()
            })
        }
    }
    struct Nop;
    impl KillPod for Nop {
        fn kill_pod(&self, _: &KillRequest<'_>) -> bool {
            false
        }
    }
    impl DeleteUnusedImages for Nop {
        fn delete_unused_images(&self) -> Result<u64, ImageGcError> {
            Ok(0)
        }
    }
    impl DeleteUnusedContainers for Nop {
        fn delete_all_unused_containers(&self) -> Result<(), ContainerGcError> {
            Ok(())
        }
    }

    fn manager(src: Arc<Src>) -> Arc<EvictionManager> {
        EvictionManager::new(
            "n",
            Config {
                thresholds: vec![Threshold::hard(
                    Signal::MemoryAvailable,
                    ThresholdValue::bytes(100 << 20),
                )],
                pressure_transition_period: Duration::from_secs(1),
                max_pod_grace_period: 0,
                local_storage_period: None,
            },
            Deps {
                source: src,
                killer: Arc::new(Nop),
                images: Arc::new(Nop),
                containers: Arc::new(Nop),
                events: Arc::new(RecordingSink::default()),
                clock: Arc::new(SystemClock),
            },
        )
    }

    #[test]
    fn fast_mode_runs_a_pass_per_collector_pass_and_polling_mode_ignores_them() {
        for fast in [true, false] {
            let (calls_tx, calls_rx) = channel::unbounded();
            let src = Arc::new(Src {
                calls: Mutex::new(Vec::new()),
                calls_tx,
            });
            let (pass_tx, pass_rx) = channel::bounded(16);
            let passes_seen = Arc::new(Mutex::new(0));
            let seen = passes_seen.clone();
            let runner = Runner {
                manager: manager(src.clone()),
                reaction: if fast {
                    Reaction::Fast {
                        fallback: Duration::from_secs(3600),
                    }
                } else {
                    Reaction::Polling {
                        period: Duration::from_secs(3600),
                    }
                },
                passes: Some(pass_rx),
                notifications: None,
                proc_root: "/proc".into(),
                on_pass: Some(Box::new(move |_| *seen.lock() += 1)),
            }
            .spawn()
            .unwrap();
            // The first pass runs at start, on fresh samples.
            assert_eq!(calls_rx.recv_timeout(Duration::from_secs(10)), Ok(true));
            pass_tx
                .send(PassEvent {
                    seq: 1,
                    timestamp: 1,
                    sampled: 0,
                    vanished: 0,
                    wall: Duration::ZERO,
                    cpu: Duration::ZERO,
                })
                .unwrap();
            if fast {
                assert_eq!(calls_rx.recv_timeout(Duration::from_secs(10)), Ok(false));
            } else {
                assert!(calls_rx.recv_timeout(Duration::from_millis(300)).is_err());
            }
            runner.stop();
            assert_eq!(*passes_seen.lock(), if fast { 2 } else { 1 });
        }
    }
}
