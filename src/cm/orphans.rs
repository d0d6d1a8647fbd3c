//! Orphaned pod cgroups (`cleanupOrphanedPodCgroups` in `pkg/kubelet/kubelet_pods.go`): pod
//! cgroups under `kubepods` that no pod of this node owns any more, for example those of an
//! earlier agent's pods. Each is destroyed as the kubelet's pod container manager does
//! (`Destroy`: SIGKILL to what is left inside, then remove), one attempt at a time and never
//! waiting: a cgroup that stays busy is retried on its own exponential backoff, and is
//! reported once, when it has failed [`REPORT_AFTER`] attempts in a row, not on every pass.
//! An orphan whose pod still has volumes on disk is left, with its CPU shares at the minimum,
//! until they are torn down (so memory-backed volumes are not charged to the parent), as in
//! the kubelet.
//!
//! [`OrphanTracker`] is the bookkeeping only (which cgroup is due, what to log), with time
//! passed in, so its rules are tested without a clock; [`super::manager`] runs it on the
//! container manager's thread.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// The first retry after a failed attempt: long enough for killed processes to exit.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two attempts on one cgroup.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Consecutive failed attempts after which a cgroup is reported (once). The first attempt
/// usually fails only because the processes it killed have not exited yet.
pub const REPORT_AFTER: u32 = 3;

#[derive(Debug, Clone)]
struct Entry {
    uid: String,
    failures: u32,
    next: Instant,
    reported: bool,
}

/// What an attempt's result means for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Removed. `reported` says whether it had been reported as unremovable.
    Removed { attempts: u32, reported: bool },
    /// Still there; retried after `retry_in`. `report` is true exactly once per cgroup.
    Busy {
        attempts: u32,
        retry_in: Duration,
        report: bool,
    },
}

/// Per-cgroup backoff and report-once bookkeeping for orphaned pod cgroups, keyed by the
/// cgroup's name.
#[derive(Debug, Default)]
pub struct OrphanTracker {
    entries: HashMap<String, Entry>,
}

impl OrphanTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the orphaned cgroups found now, `(cgroup name, pod UID)`: new ones are due at
    /// once, known ones keep their backoff, and those no longer orphaned (gone, or their pod is
    /// back) are forgotten. Returns the new ones.
    pub fn observe(
        &mut self,
        found: impl IntoIterator<Item = (String, String)>,
        now: Instant,
    ) -> Vec<(String, String)> {
        let found: HashMap<String, String> = found.into_iter().collect();
        self.entries.retain(|name, _| found.contains_key(name));
        let mut new = Vec::new();
        for (name, uid) in found {
            if self.entries.contains_key(&name) {
                continue;
            }
            new.push((name.clone(), uid.clone()));
            self.entries.insert(
                name,
                Entry {
                    uid,
                    failures: 0,
                    next: now,
                    reported: false,
                },
            );
        }
        new.sort();
        new
    }

    /// The cgroups due for an attempt at `now`, with their pod UIDs, oldest deadline first.
    pub fn due(&self, now: Instant) -> Vec<(String, String)> {
        let mut due: Vec<(&String, &Entry)> =
            self.entries.iter().filter(|(_, e)| e.next <= now).collect();
        due.sort_by_key(|(name, e)| (e.next, (*name).clone()));
        due.into_iter()
            .map(|(n, e)| (n.clone(), e.uid.clone()))
            .collect()
    }

    /// When the next attempt is due, if any cgroup is tracked.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.next).min()
    }

    /// Puts off the next attempt on `name` by `wait` without counting a failure (its pod's
    /// volumes are not torn down yet).
    pub fn postpone(&mut self, name: &str, now: Instant, wait: Duration) {
        if let Some(e) = self.entries.get_mut(name) {
            e.next = now + wait;
        }
    }

    /// Forgets a cgroup (its pod came back).
    pub fn forget(&mut self, name: &str) {
        self.entries.remove(name);
    }

    /// How many cgroups are tracked.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Records an attempt on `name` at `now`: a removed cgroup is forgotten; a busy one waits
    /// twice as long as last time (from [`INITIAL_BACKOFF`] up to [`MAX_BACKOFF`]) and is
    /// reported on its [`REPORT_AFTER`]th failure only.
    pub fn record(&mut self, name: &str, removed: bool, now: Instant) -> Option<Verdict> {
        if removed {
            let e = self.entries.remove(name)?;
            return Some(Verdict::Removed {
                attempts: e.failures + 1,
                reported: e.reported,
            });
        }
        let e = self.entries.get_mut(name)?;
        e.failures = e.failures.saturating_add(1);
        let retry_in = backoff(e.failures);
        e.next = now + retry_in;
        let report = !e.reported && e.failures >= REPORT_AFTER;
        e.reported |= report;
        Some(Verdict::Busy {
            attempts: e.failures,
            retry_in,
            report,
        })
    }
}

/// The wait after the `failures`th failure in a row.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    INITIAL_BACKOFF
        .saturating_mul(1u32 << doublings)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(names: &[&str]) -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (n.to_string(), format!("uid-{n}")))
            .collect()
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(8), Duration::from_secs(32));
        assert_eq!(backoff(9), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_stuck_cgroup_is_reported_once_and_retried_on_its_own_backoff() {
        let t0 = Instant::now();
        let mut t = OrphanTracker::new();
        let new = t.observe(found(&["/kubepods/besteffort/poda", "/kubepods/podb"]), t0);
        assert_eq!(new.len(), 2);
        assert_eq!(t.due(t0).len(), 2);
        let mut now = t0;
        let mut reports = 0;
        for attempt in 1..=12u32 {
            // Every pass sees the cgroup again; that never resets its backoff.
            let new = t.observe(found(&["/kubepods/besteffort/poda", "/kubepods/podb"]), now);
            assert!(new.is_empty());
            let due = t.due(now);
            assert!(due.iter().any(|(n, _)| n == "/kubepods/besteffort/poda"));
            match t.record("/kubepods/besteffort/poda", false, now).unwrap() {
                Verdict::Busy {
                    attempts,
                    retry_in,
                    report,
                } => {
                    assert_eq!(attempts, attempt);
                    assert_eq!(retry_in, backoff(attempt));
                    reports += report as u32;
                    assert_eq!(report, attempt == REPORT_AFTER);
                    // Not due again before its backoff is over.
                    let just_before = now + retry_in - Duration::from_millis(1);
                    assert!(!t
                        .due(just_before)
                        .iter()
                        .any(|(n, _)| n == "/kubepods/besteffort/poda"));
                    now += retry_in;
                }
                v => panic!("unexpected {v:?}"),
            }
        }
        assert_eq!(reports, 1);
        // The other cgroup is independent: removed at its first attempt, never reported.
        assert_eq!(
            t.record("/kubepods/podb", true, t0),
            Some(Verdict::Removed {
                attempts: 1,
                reported: false
            })
        );
        // Released at last: removed, and the log can say it had been reported.
        assert_eq!(
            t.record("/kubepods/besteffort/poda", true, now),
            Some(Verdict::Removed {
                attempts: 13,
                reported: true
            })
        );
        assert!(t.is_empty());
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn cgroups_no_longer_orphaned_are_forgotten() {
        let t0 = Instant::now();
        let mut t = OrphanTracker::new();
        t.observe(found(&["a", "b"]), t0);
        t.record("a", false, t0);
        assert_eq!(t.next_deadline(), Some(t0));
        t.observe(found(&["b"]), t0);
        assert_eq!(t.len(), 1);
        assert_eq!(t.record("a", false, t0), None);
        t.postpone("b", t0, Duration::from_secs(5));
        assert!(t.due(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(t.due(t0 + Duration::from_secs(5)).len(), 1);
        t.forget("b");
        assert!(t.is_empty());
        // Seen again later: a new episode, due at once and reportable again.
        t.observe(found(&["a"]), t0);
        assert_eq!(t.due(t0), vec![("a".to_string(), "uid-a".to_string())]);
    }
}
