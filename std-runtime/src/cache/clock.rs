//! The time source of [`ResultCache`](super::ResultCache) entry deadlines.
//!
//! The cache never reads a clock directly: it asks a [`CacheClock`], so tests drive expiry with
//! a [`ManualClock`] and production uses the monotonic [`SystemClock`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic time source in nanoseconds, as seen by a [`ResultCache`](super::ResultCache).
///
/// Only differences matter: the origin is arbitrary. Implementations must not go backwards
/// (a clock that does makes entries live longer, never shorter, than their TTL). The cache
/// calls it outside its locks.
pub trait CacheClock: Send + Sync {
    /// Returns the current time in nanoseconds since the clock's origin.
    fn now_ns(&self) -> u64;
}

/// A [`CacheClock`] over [`Instant`]: nanoseconds since the clock was made.
///
/// # Examples
///
/// ```
/// use flujo_runtime::cache::{CacheClock, SystemClock};
///
/// let clock = SystemClock::new();
/// let earlier_ns = clock.now_ns();
/// assert!(clock.now_ns() >= earlier_ns);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    /// The instant that reads as 0 ns.
    origin: Instant,
}

impl SystemClock {
    /// Makes a clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheClock for SystemClock {
    fn now_ns(&self) -> u64 {
        // Saturates after 584 years of uptime.
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A [`CacheClock`] that moves only when told to: for tests of expiry.
///
/// Share it with the cache through an `Arc` and keep a clone to move it.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_runtime::cache::{CacheClock, ManualClock};
///
/// let clock = ManualClock::new(10);
/// clock.advance(Duration::from_nanos(5));
/// assert_eq!(clock.now_ns(), 15);
/// clock.set_ns(u64::MAX - 1);
/// clock.advance_ns(10); // saturates
/// assert_eq!(clock.now_ns(), u64::MAX);
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    /// The current time. Written by `set_ns` and `advance*` (any thread), read by `now_ns`;
    /// SeqCst so a test's moves are seen in program order by every thread.
    now_ns: AtomicU64,
}

impl ManualClock {
    /// Makes a clock that reads `start_ns` until moved.
    pub const fn new(start_ns: u64) -> Self {
        Self {
            now_ns: AtomicU64::new(start_ns),
        }
    }

    /// Sets the time to `now_ns` (it may go backwards: tests of odd clocks may want that).
    pub fn set_ns(&self, now_ns: u64) {
        self.now_ns.store(now_ns, Ordering::SeqCst);
    }

    /// Moves the time forward by `delta_ns`, saturating at `u64::MAX`.
    pub fn advance_ns(&self, delta_ns: u64) {
        // The closure always returns Some, so fetch_update cannot fail.
        let _ = self
            .now_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now_ns| {
                Some(now_ns.saturating_add(delta_ns))
            });
    }

    /// Moves the time forward by `delta`, saturating at `u64::MAX` ns.
    pub fn advance(&self, delta: Duration) {
        self.advance_ns(u64::try_from(delta.as_nanos()).unwrap_or(u64::MAX));
    }
}

impl CacheClock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now_ns.load(Ordering::SeqCst)
    }
}
