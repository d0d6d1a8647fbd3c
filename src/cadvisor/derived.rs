//! cAdvisor's derived statistics (`/api/v2.0/summary`): per container, the latest
//! instantaneous usage, and percentiles of CPU (millicores) and memory working set over the
//! last minute, hour and day, computed the way cAdvisor's `summary` package computes them:
//! a minute sample summarizes the per-second samples of one minute (each as its own
//! percentiles), the hour and day figures summarize the 90th percentiles of up to 60 minute
//! samples (cAdvisor keeps 60, so the day's `percent_complete` never exceeds 4 %).

use std::collections::VecDeque;

use serde::Serialize;

use super::api::rfc3339_nano;

/// `v2.Percentiles`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Percentiles {
    pub present: bool,
    pub mean: u64,
    pub std: u64,
    pub max: u64,
    pub fifty: u64,
    pub ninety: u64,
    #[serde(rename = "ninetyfive")]
    pub ninety_five: u64,
    pub count: u64,
}

/// `v2.Usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub percent_complete: i32,
    pub cpu: Percentiles,
    pub memory: Percentiles,
}

/// `v2.InstantUsage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct InstantUsage {
    /// Millicores.
    pub cpu: u64,
    /// Working set, bytes.
    pub memory: u64,
}

fn go_time<S: serde::Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    if *ns == 0 {
        s.serialize_str(super::api::ZERO_TIME)
    } else {
        s.serialize_str(&rfc3339_nano(*ns))
    }
}

/// `v2.DerivedStats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DerivedStats {
    #[serde(serialize_with = "go_time")]
    pub timestamp: u64,
    pub latest_usage: InstantUsage,
    pub minute_usage: Usage,
    pub hour_usage: Usage,
    pub day_usage: Usage,
}

/// One per-second sample: time (ns), cumulative CPU (ns), memory working set (bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SecondSample {
    pub timestamp: u64,
    pub cpu: u64,
    pub memory: u64,
}

/// CPU rate between two samples in millicores, as cAdvisor's `getCPURate` (at least 10 ms
/// apart, counter not decreasing).
pub fn cpu_rate(latest: &SecondSample, previous: &SecondSample) -> Option<u64> {
    let elapsed = latest.timestamp.checked_sub(previous.timestamp)?;
    if elapsed < 10_000_000 || latest.cpu < previous.cpu {
        return None;
    }
    Some(((latest.cpu - previous.cpu) as u128 * 1000 / elapsed as u128) as u64)
}

/// `Uint64Slice.GetPercentile`: sorts `s` in place.
fn percentile(s: &mut [u64], d: f64) -> u64 {
    if !(0.0..=1.0).contains(&d) || s.is_empty() {
        return 0;
    }
    s.sort_unstable();
    let count = s.len();
    let n = d * (count as f64 + 1.0);
    let idx = n.trunc();
    let frac = n - idx;
    let index = idx as usize;
    if index == 0 {
        // cAdvisor would index s[-1] here (a panic); the smallest sample is the answer.
        return s[0];
    }
    let index = index.min(count);
    let mut p = s[index - 1] as f64;
    if index > 1 && index < count {
        p += frac * (s[index] as f64 - s[index - 1] as f64);
    }
    p as u64
}

/// cAdvisor's `resource`: means, maxima and the 90th percentiles of what was added.
#[derive(Default)]
struct Resource {
    samples: Vec<u64>,
    count: u64,
    mean: f64,
    max: u64,
}

impl Resource {
    fn add(&mut self, p: &Percentiles) {
        if !p.present {
            return;
        }
        self.max = self.max.max(p.max);
        self.count += 1;
        self.mean = if self.count == 1 {
            p.mean as f64
        } else {
            let c = self.count as f64;
            (self.mean * (c - 1.0) + p.mean as f64) / c
        };
        self.samples.push(p.ninety);
    }

    fn add_sample(&mut self, v: u64) {
        self.add(&Percentiles {
            present: true,
            mean: v,
            std: 0,
            max: v,
            fifty: v,
            ninety: v,
            ninety_five: v,
            count: 1,
        });
    }

    fn all(mut self) -> Percentiles {
        let std = if self.samples.len() <= 1 {
            0.0
        } else {
            let ss: f64 = self
                .samples
                .iter()
                .map(|&v| (v as f64 - self.mean).powi(2))
                .sum();
            (ss / (self.samples.len() - 1) as f64).sqrt()
        };
        Percentiles {
            present: true,
            mean: self.mean as u64,
            std: std as u64,
            max: self.max,
            fifty: percentile(&mut self.samples, 0.5),
            ninety: percentile(&mut self.samples, 0.9),
            ninety_five: percentile(&mut self.samples, 0.95),
            count: self.count,
        }
    }
}

/// `GetMinutePercentiles`: a minute's per-second samples (oldest first) summarized.
pub fn minute_percentiles(samples: &[SecondSample], has_cpu: bool, has_memory: bool) -> Usage {
    let mut cpu = Resource::default();
    let mut mem = Resource::default();
    let mut last: Option<&SecondSample> = None;
    for s in samples {
        if let Some(prev) = last {
            let Some(rate) = cpu_rate(s, prev) else {
                continue;
            };
            if has_cpu {
                cpu.add_sample(rate);
            }
        }
        if has_memory {
            mem.add_sample(s.memory);
        }
        last = Some(s);
    }
    // cAdvisor's getPercentComplete, with its unit slip fixed: the share of the minute covered.
    let percent_complete = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) if samples.len() > 1 => {
            let range = b.timestamp.saturating_sub(a.timestamp);
            if range < 58_000_000_000 {
                (range * 100 / 60_000_000_000) as i32
            } else {
                100
            }
        }
        _ => 0,
    };
    Usage {
        percent_complete,
        cpu: cpu.all(),
        memory: mem.all(),
    }
}

/// `GetDerivedPercentiles` over minute samples, with `percent_complete` against `want`
/// minutes.
pub fn derived_percentiles(minutes: &VecDeque<Usage>, n: usize, want: usize) -> Usage {
    let take = minutes.len().min(n);
    if take == 0 {
        return Usage::default();
    }
    let mut cpu = Resource::default();
    let mut mem = Resource::default();
    for u in minutes.iter().skip(minutes.len() - take) {
        cpu.add(&u.cpu);
        mem.add(&u.memory);
    }
    Usage {
        percent_complete: (take * 100 / want) as i32,
        cpu: cpu.all(),
        memory: mem.all(),
    }
}

/// Minute samples kept per container (cAdvisor's `NewSamplesBuffer(60)`).
pub const MINUTES_KEPT: usize = 60;

/// Per-container summary state: the minute samples and when they were last updated.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Up to [`MINUTES_KEPT`] minute usages, oldest first.
    pub minutes: VecDeque<Usage>,
    /// When the newest minute sample was computed, ns.
    pub updated: u64,
}

impl Summary {
    /// Adds a minute sample.
    pub fn push(&mut self, u: Usage, now: u64) {
        if self.minutes.len() == MINUTES_KEPT {
            self.minutes.pop_front();
        }
        self.minutes.push_back(u);
        self.updated = now;
    }

    /// The derived stats now, with `latest` from the two newest samples.
    pub fn derived(&self, latest: &[SecondSample]) -> DerivedStats {
        let mut d = DerivedStats {
            timestamp: latest.last().map_or(0, |s| s.timestamp),
            ..Default::default()
        };
        if let Some(l) = latest.last() {
            d.latest_usage.memory = l.memory;
            if latest.len() > 1 {
                d.latest_usage.cpu = cpu_rate(l, &latest[latest.len() - 2]).unwrap_or(0);
            }
        }
        if let Some(m) = self.minutes.back() {
            d.minute_usage = *m;
            d.hour_usage = derived_percentiles(&self.minutes, 60, 60);
            d.day_usage = derived_percentiles(&self.minutes, 60 * 24, 60 * 24);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(sec: u64, cpu_ms: u64, mem: u64) -> SecondSample {
        SecondSample {
            timestamp: sec * 1_000_000_000,
            cpu: cpu_ms * 1_000_000,
            memory: mem,
        }
    }

    #[test]
    fn percentiles_match_cadvisors_interpolation() {
        // cAdvisor's percentiles_test: 1..=10 → 50th 5 (interpolated 5.5 truncated), 90th 9.
        let mut v: Vec<u64> = (1..=10).rev().collect();
        assert_eq!(percentile(&mut v, 0.5), 5);
        assert_eq!(percentile(&mut v, 0.9), 9);
        assert_eq!(percentile(&mut v, 0.95), 10);
        assert_eq!(percentile(&mut [], 0.5), 0);
        assert_eq!(percentile(&mut [7], 0.2), 7);
    }

    #[test]
    fn minute_summary_of_a_steady_container() {
        // Half a core and 1 MiB for 61 seconds.
        let samples: Vec<_> = (0..=60).map(|i| s(i, i * 500, 1 << 20)).collect();
        let u = minute_percentiles(&samples, true, true);
        assert_eq!(u.percent_complete, 100);
        assert!(u.cpu.present && u.memory.present);
        assert_eq!((u.cpu.mean, u.cpu.max, u.cpu.ninety), (500, 500, 500));
        assert_eq!(u.cpu.count, 60);
        assert_eq!(u.memory.count, 61);
        assert_eq!(u.memory.fifty, 1 << 20);
        let mut sum = Summary::default();
        sum.push(u, 1);
        let d = sum.derived(&samples[59..]);
        assert_eq!(
            d.latest_usage,
            InstantUsage {
                cpu: 500,
                memory: 1 << 20
            }
        );
        assert_eq!(d.minute_usage, u);
        assert_eq!(d.hour_usage.percent_complete, 1);
        assert_eq!(d.day_usage.percent_complete, 0);
        assert_eq!(d.hour_usage.cpu.ninety, 500);
        let v = serde_json::to_value(d).unwrap();
        assert_eq!(v["minute_usage"]["cpu"]["ninetyfive"], 500);
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn rates_need_time_and_monotonic_counters() {
        assert_eq!(cpu_rate(&s(2, 1000, 0), &s(1, 0, 0)), Some(1000));
        assert_eq!(cpu_rate(&s(1, 0, 0), &s(1, 0, 0)), None);
        assert_eq!(cpu_rate(&s(2, 0, 0), &s(1, 10, 0)), None);
    }
}
