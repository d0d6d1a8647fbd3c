//! The clock every time-based decision reads: grace periods, the pressure transition period,
//! image ages, event timestamps. Production code uses [`SystemClock`]; tests drive a
//! [`FakeClock`] forward by hand, so no test sleeps to watch a grace period expire.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// A source of monotonic and wall time.
pub trait Clock: Send + Sync {
    /// Monotonic time, for durations.
    fn now(&self) -> Instant;
    /// Wall time, for timestamps shown to users.
    fn wall(&self) -> SystemTime;
}

/// The real clocks.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to. Both readings advance together.
#[derive(Debug)]
pub struct FakeClock {
    base: Instant,
    base_wall: SystemTime,
    offset: Mutex<Duration>,
}

impl FakeClock {
    /// A clock stopped at the current time.
    pub fn new() -> Arc<FakeClock> {
        Arc::new(FakeClock {
            base: Instant::now(),
            base_wall: SystemTime::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock() += by;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock()
    }
    fn wall(&self) -> SystemTime {
        self.base_wall + *self.offset.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_advanced() {
        let c = FakeClock::new();
        let (t0, w0) = (c.now(), c.wall());
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_secs(90));
        assert_eq!(c.now() - t0, Duration::from_secs(90));
        assert_eq!(
            c.wall().duration_since(w0).unwrap(),
            Duration::from_secs(90)
        );
    }
}
