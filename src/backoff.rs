//! Per-key exponential backoff, with the semantics of client-go's `flowcontrol.Backoff` that the
//! kubelet uses for crash loops and image pulls: the first failure waits `initial`, each later
//! one doubles up to `max`, and a failure that comes more than `2 × max` after the entry was last
//! stepped starts over. An entry's last update is the moment it was stepped (for a crash loop:
//! when the container was restarted), not the failure's own time, so a container is back to
//! 10 s only after it ran cleanly for 10 minutes with the 300 s cap.
//!
//! Time is `tokio::time::Instant`, so tests drive it with the paused clock.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update: Instant,
}

/// A set of backoff timers keyed by string.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// The kubelet's container restart backoff: 10 s doubling to 300 s.
    pub fn crash_loop() -> Self {
        Self::new(Duration::from_secs(10), Duration::from_secs(300))
    }

    fn expired(&self, event: Instant, last_update: Instant) -> bool {
        event.saturating_duration_since(last_update) > self.max * 2
    }

    /// Records a failure that happened at `event`, stepping the backoff at `now`: starts the
    /// key's backoff when it is new or `event` came more than `2 × max` after the last step,
    /// doubles it otherwise. The step's time `now` is the entry's last update (client-go's
    /// `Next`, which stamps `Clock.Now()`).
    pub fn next(&mut self, key: &str, event: Instant, now: Instant) {
        let fresh = match self.entries.get(key) {
            Some(e) => self.expired(event, e.last_update),
            None => true,
        };
        let backoff = if fresh {
            self.initial
        } else {
            let cur = self.entries[key].backoff;
            (cur * 2).min(self.max)
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// The key's current backoff duration (zero when none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map(|e| e.backoff).unwrap_or_default()
    }

    /// Whether `now` is still inside the backoff window that began at `event` (client-go's
    /// `IsInBackOffSince`: an `event` more than `2 × max` after the last step is out of backoff).
    pub fn is_in_backoff_since(&self, key: &str, event: Instant, now: Instant) -> bool {
        let Some(e) = self.entries.get(key) else {
            return false;
        };
        if self.expired(event, e.last_update) {
            return false;
        }
        now.saturating_duration_since(event) < e.backoff
    }

    /// Whether `now` is still inside the window that began at the key's last recorded failure
    /// (client-go's `IsInBackOffSinceUpdate`, which the kubelet's image puller uses).
    pub fn is_in_backoff_since_update(&self, key: &str, now: Instant) -> bool {
        let Some(e) = self.entries.get(key) else {
            return false;
        };
        if self.expired(now, e.last_update) {
            return false;
        }
        now.saturating_duration_since(e.last_update) < e.backoff
    }

    /// When the window that began at `event` ends, if the key is backing off.
    pub fn window_end(&self, key: &str, event: Instant) -> Option<Instant> {
        self.entries.get(key).map(|e| event + e.backoff)
    }

    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops entries idle for longer than `2 × max`.
    pub fn gc(&mut self, now: Instant) {
        let max2 = self.max * 2;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_update) <= max2);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Formats a duration the way Go prints it in kubelet messages (`10s`, `1m20s`, `5m0s`).
pub fn go_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        let ms = d.as_millis();
        return if ms == 0 {
            "0s".into()
        } else {
            format!("{ms}ms")
        };
    }
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Models a crash loop as the kubelet drives it: each restart steps the backoff when the
    /// window since the previous finish has passed, and the container then runs for `run`.
    struct CrashLoop {
        b: Backoff,
        now: Instant,
        finished: Option<Instant>,
    }

    impl CrashLoop {
        fn new() -> Self {
            Self {
                b: Backoff::crash_loop(),
                now: Instant::now(),
                finished: None,
            }
        }

        /// Waits out the current window, restarts (stepping the backoff) and runs for `run`.
        /// Returns the backoff the restart waited for.
        fn restart_and_run(&mut self, run: Duration) -> Duration {
            let mut waited = Duration::ZERO;
            if let Some(f) = self.finished {
                if self.b.is_in_backoff_since("c", f, self.now) {
                    let end = self.b.window_end("c", f).unwrap();
                    waited = end - f;
                    self.now = end;
                    assert!(!self.b.is_in_backoff_since("c", f, self.now));
                }
                self.b.next("c", f, self.now);
            }
            self.now += run;
            self.finished = Some(self.now);
            waited
        }
    }

    #[tokio::test(start_paused = true)]
    async fn doubles_caps_and_resets() {
        let mut b = Backoff::crash_loop();
        let t0 = Instant::now();
        assert!(!b.is_in_backoff_since("c", t0, t0));
        let mut expected = [10u64, 20, 40, 80, 160, 300, 300].into_iter();
        let mut now = t0;
        for _ in 0..7 {
            b.next("c", now, now);
            let want = Duration::from_secs(expected.next().unwrap());
            assert_eq!(b.get("c"), want);
            assert!(b.is_in_backoff_since("c", now, now + want - Duration::from_millis(1)));
            assert!(!b.is_in_backoff_since("c", now, now + want));
            now += want;
        }
        // A failure ten clean minutes (2 × 300 s) after the last step starts from 10 s again.
        now += Duration::from_secs(601);
        b.next("c", now, now);
        assert_eq!(b.get("c"), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(2200)).await;
        b.gc(Instant::now());
        assert!(b.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn crash_loop_at_the_cap_resets_only_after_ten_clean_minutes() {
        let mut cl = CrashLoop::new();
        // Short runs climb to the 5-minute cap: the first restart is immediate, then 10, 20, 40,
        // 80, 160, 300 s.
        cl.restart_and_run(Duration::from_secs(1));
        let waits: Vec<u64> = (0..8)
            .map(|_| cl.restart_and_run(Duration::from_secs(1)).as_secs())
            .collect();
        assert_eq!(waits, [0, 10, 20, 40, 80, 160, 300, 300]);
        // At the cap, runs of 6 and then 9 minutes are not clean enough: the next restart still
        // waits 5 minutes (stamping the step with the finish time would reset after 5 minutes).
        assert_eq!(cl.restart_and_run(Duration::from_secs(360)).as_secs(), 300);
        assert_eq!(cl.restart_and_run(Duration::from_secs(540)).as_secs(), 300);
        // After a run of just over 10 minutes from its restart the container restarts at once,
        // and the backoff starts over from 10 s.
        assert_eq!(cl.restart_and_run(Duration::from_secs(601)).as_secs(), 300);
        assert_eq!(cl.restart_and_run(Duration::from_secs(1)).as_secs(), 0);
        assert_eq!(cl.restart_and_run(Duration::from_secs(1)).as_secs(), 10);
        assert_eq!(cl.restart_and_run(Duration::from_secs(1)).as_secs(), 20);
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_since_update_ends_with_the_window() {
        let mut b = Backoff::crash_loop();
        let t0 = Instant::now();
        assert!(!b.is_in_backoff_since_update("i", t0));
        b.next("i", t0, t0);
        assert!(b.is_in_backoff_since_update("i", t0 + Duration::from_secs(9)));
        assert!(!b.is_in_backoff_since_update("i", t0 + Duration::from_secs(10)));
    }

    #[test]
    fn go_style_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::from_secs(80)), "1m20s");
        assert_eq!(go_duration(Duration::from_secs(300)), "5m0s");
        assert_eq!(go_duration(Duration::from_millis(0)), "0s");
    }
}
