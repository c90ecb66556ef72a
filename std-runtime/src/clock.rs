//! The clocks the runtime gives the core: ticks are nanoseconds.

use std::thread;
use std::time::{Duration, Instant};

use flujo_core::graph::Clock;

/// Nanoseconds since the clock was made, from the monotonic [`Instant`]; waits sleep.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::Clock;
/// use flujo_runtime::clock::MonoClock;
/// let c = MonoClock::new();
/// let a = c.now();
/// c.wait(1_000);
/// assert!(c.now() >= a + 1_000);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MonoClock {
    origin: Instant,
}

impl MonoClock {
    /// A clock reading 0 now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }

    /// The tick of `at` (0 before the clock was made; saturating after 584 years).
    pub fn tick_of(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

impl Default for MonoClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonoClock {
    #[inline]
    fn now(&self) -> u64 {
        self.tick_of(Instant::now())
    }

    fn wait(&self, ticks: u64) {
        thread::sleep(Duration::from_nanos(ticks));
    }
}

/// A clock for runs that need no time: it always reads 0 (so records carry no latency and
/// no deadline can pass), but its waits still sleep, so retry backoff keeps its pace. The
/// executor runs with it when telemetry is off and the run has no deadline, saving a clock
/// read per step.
#[derive(Clone, Copy, Debug, Default)]
pub struct UntimedClock;

impl Clock for UntimedClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        0
    }

    fn wait(&self, ticks: u64) {
        thread::sleep(Duration::from_nanos(ticks));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_clock_is_monotonic_and_waits_at_least_the_ticks() {
        let c = MonoClock::new();
        let mut last = c.now();
        for _ in 0..1000 {
            let t = c.now();
            assert!(t >= last);
            last = t;
        }
        let before = c.now();
        c.wait(2_000_000);
        assert!(c.now() - before >= 2_000_000);
    }

    #[test]
    fn untimed_clock_reads_zero_but_still_waits() {
        let c = UntimedClock;
        let start = Instant::now();
        c.wait(1_000_000);
        assert_eq!(c.now(), 0);
        assert!(start.elapsed() >= Duration::from_millis(1));
    }
}
