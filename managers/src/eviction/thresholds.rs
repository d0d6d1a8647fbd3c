//! Threshold evaluation over observations, and the time-based bookkeeping around it: when a
//! threshold was first met (for soft grace periods), when a node condition was last observed
//! (for the pressure transition period), which thresholds have fresh data. Pure functions of
//! their inputs and an `Instant`, so tests drive them with a fake clock.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::api::Threshold;
use super::signals::Observations;
use crate::conditions::ConditionType;

/// The thresholds met by `obs`. With `enforce_min_reclaim`, a threshold counts as met until
/// the signal has recovered past the threshold plus its minimum reclaim.
pub fn met(
    thresholds: &[Threshold],
    obs: &Observations,
    enforce_min_reclaim: bool,
) -> Vec<Threshold> {
    thresholds
        .iter()
        .filter(|t| {
            let Some(o) = obs.get(&t.signal) else {
                return false;
            };
            let (mut q, _) = t.value.quantity(o.capacity);
            if enforce_min_reclaim {
                if let Some(r) = &t.min_reclaim {
                    q = q.saturating_add(r.quantity(o.capacity).0);
                }
            }
            q > o.available
        })
        .copied()
        .collect()
}

/// `a` plus those of `b` not already in it.
pub fn merge(mut a: Vec<Threshold>, b: Vec<Threshold>) -> Vec<Threshold> {
    for t in b {
        if !a.iter().any(|x| x.same(&t)) {
            a.push(t);
        }
    }
    a
}

/// When each currently met threshold was first met: the time recorded before, or `now`.
pub fn first_observed(
    met: &[Threshold],
    before: &[(Threshold, Instant)],
    now: Instant,
) -> Vec<(Threshold, Instant)> {
    met.iter()
        .map(|t| {
            let at = before
                .iter()
                .find(|(b, _)| b.same(t))
                .map_or(now, |(_, at)| *at);
            (*t, at)
        })
        .collect()
}

/// The thresholds whose grace period has passed.
pub fn grace_period_met(observed: &[(Threshold, Instant)], now: Instant) -> Vec<Threshold> {
    observed
        .iter()
        .filter(|(t, at)| now.saturating_duration_since(*at) >= t.grace_period)
        .map(|(t, _)| *t)
        .collect()
}

/// The node conditions that `met` raises, each once.
pub fn conditions(met: &[Threshold]) -> Vec<ConditionType> {
    let mut out: Vec<ConditionType> = Vec::new();
    for t in met {
        let c = t.signal.condition();
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// The conditions observed now are stamped `now`; the others keep their last time.
pub fn conditions_last_observed(
    now_observed: &[ConditionType],
    before: &BTreeMap<ConditionType, Instant>,
    now: Instant,
) -> BTreeMap<ConditionType, Instant> {
    let mut out = before.clone();
    for c in now_observed {
        out.insert(*c, now);
    }
    out
}

/// The conditions observed within the last `period` (the pressure transition period): a
/// condition stays true that long after its thresholds stop being met.
pub fn conditions_observed_since(
    last: &BTreeMap<ConditionType, Instant>,
    period: Duration,
    now: Instant,
) -> Vec<ConditionType> {
    last.iter()
        .filter(|(_, at)| now.saturating_duration_since(**at) < period)
        .map(|(c, _)| *c)
        .collect()
}

/// The thresholds whose signal was measured after the previous pass's observation (so a pod
/// is never evicted twice on the same figures).
pub fn updated_stats(met: &[Threshold], obs: &Observations, last: &Observations) -> Vec<Threshold> {
    met.iter()
        .filter(|t| {
            let Some(o) = obs.get(&t.signal) else {
                return false;
            };
            match last.get(&t.signal) {
                None => true,
                Some(l) => o.time == 0 || o.time > l.time,
            }
        })
        .copied()
        .collect()
}

/// Orders thresholds for reclaim: memory signals first, the rest in their given order.
pub fn sort_by_eviction_priority(thresholds: &mut [Threshold]) {
    thresholds.sort_by_key(|t| !t.signal.is_memory());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eviction::api::{Signal, ThresholdValue};
    use crate::eviction::signals::Observation;

    fn obs(signal: Signal, available: i64, capacity: i64, time: u64) -> Observations {
        [(
            signal,
            Observation {
                available,
                capacity,
                time,
            },
        )]
        .into()
    }

    #[test]
    fn quantity_and_percentage_thresholds_with_min_reclaim() {
        let t = Threshold::hard(Signal::MemoryAvailable, ThresholdValue::bytes(100))
            .with_min_reclaim(ThresholdValue::bytes(50));
        assert_eq!(
            met(&[t], &obs(Signal::MemoryAvailable, 99, 1000, 1), false).len(),
            1
        );
        assert!(met(&[t], &obs(Signal::MemoryAvailable, 100, 1000, 1), false).is_empty());
        // Recovered past the threshold but not past threshold + reclaim: still met.
        assert_eq!(
            met(&[t], &obs(Signal::MemoryAvailable, 120, 1000, 1), true).len(),
            1
        );
        assert!(met(&[t], &obs(Signal::MemoryAvailable, 150, 1000, 1), true).is_empty());
        let p = Threshold::hard(Signal::NodeFsAvailable, ThresholdValue::Percentage(0.1))
            .with_min_reclaim(ThresholdValue::Percentage(0.05));
        assert_eq!(
            met(&[p], &obs(Signal::NodeFsAvailable, 99, 1000, 1), false).len(),
            1
        );
        assert_eq!(
            met(&[p], &obs(Signal::NodeFsAvailable, 149, 1000, 1), true).len(),
            1
        );
        assert!(met(&[p], &obs(Signal::NodeFsAvailable, 150, 1000, 1), true).is_empty());
        // No observation, never met.
        assert!(met(&[p], &Observations::new(), false).is_empty());
    }

    #[test]
    fn grace_periods_count_from_the_first_observation() {
        let t0 = Instant::now();
        let soft = Threshold::soft(
            Signal::MemoryAvailable,
            ThresholdValue::bytes(1),
            Duration::from_secs(30),
        );
        let hard = Threshold::hard(Signal::MemoryAvailable, ThresholdValue::bytes(1));
        let seen = first_observed(&[soft, hard], &[], t0);
        assert_eq!(grace_period_met(&seen, t0), vec![hard]);
        let later = t0 + Duration::from_secs(29);
        let seen = first_observed(&[soft, hard], &seen, later);
        assert_eq!(seen[0].1, t0, "keeps the first time");
        assert_eq!(grace_period_met(&seen, later).len(), 1);
        assert_eq!(
            grace_period_met(&seen, t0 + Duration::from_secs(30)).len(),
            2
        );
        // Unmet in between: the clock starts again.
        let seen = first_observed(&[hard], &seen, later);
        let seen = first_observed(&[soft, hard], &seen, t0 + Duration::from_secs(31));
        assert_eq!(
            grace_period_met(&seen, t0 + Duration::from_secs(40)),
            vec![hard]
        );
    }

    #[test]
    fn conditions_outlive_their_thresholds_for_the_transition_period() {
        let t0 = Instant::now();
        let period = Duration::from_secs(300);
        let hard = Threshold::hard(Signal::ImageFsAvailable, ThresholdValue::bytes(1));
        let now_conds = conditions(&[hard, hard]);
        assert_eq!(now_conds, vec![ConditionType::DiskPressure]);
        let last = conditions_last_observed(&now_conds, &BTreeMap::new(), t0);
        let last = conditions_last_observed(&[], &last, t0 + Duration::from_secs(10));
        assert_eq!(last[&ConditionType::DiskPressure], t0);
        assert_eq!(
            conditions_observed_since(&last, period, t0 + Duration::from_secs(299)),
            vec![ConditionType::DiskPressure]
        );
        assert!(conditions_observed_since(&last, period, t0 + period).is_empty());
    }

    #[test]
    fn only_fresh_observations_drive_evictions() {
        let t = Threshold::hard(Signal::MemoryAvailable, ThresholdValue::bytes(100));
        let old = obs(Signal::MemoryAvailable, 1, 1000, 5);
        assert_eq!(updated_stats(&[t], &old, &Observations::new()).len(), 1);
        assert!(updated_stats(&[t], &old, &old).is_empty());
        let new = obs(Signal::MemoryAvailable, 1, 1000, 6);
        assert_eq!(updated_stats(&[t], &new, &old).len(), 1);
    }

    #[test]
    fn memory_is_reclaimed_first() {
        let mut v = vec![
            Threshold::hard(Signal::NodeFsAvailable, ThresholdValue::bytes(1)),
            Threshold::hard(Signal::PidAvailable, ThresholdValue::bytes(1)),
            Threshold::hard(Signal::MemoryAvailable, ThresholdValue::bytes(1)),
        ];
        sort_by_eviction_priority(&mut v);
        assert_eq!(v[0].signal, Signal::MemoryAvailable);
        assert_eq!(v[1].signal, Signal::NodeFsAvailable);
        let merged = merge(
            v.clone(),
            vec![
                v[0],
                Threshold::hard(Signal::ImageFsAvailable, ThresholdValue::bytes(1)),
            ],
        );
        assert_eq!(merged.len(), 4);
    }
}
