//! The runtime's time: one process-wide origin, nanosecond ticks, and a clock a test drives.
//!
//! Under the runtime a core *tick* is one nanosecond since the process's clock origin (taken
//! the first time any runtime clock is made), so every [`MonoClock`], and so every executor and
//! every breaker shared between them, reads the same time scale. Settings are given as
//! [`Duration`]s at the runtime's API; [`ticks`] converts one for a core setting that takes
//! ticks (`TaskConfig::timeout`, `BreakerConfig::open_ticks`, `Backoff`), and [`duration`]
//! converts back.
//!
//! An executor reads time from a [`RuntimeClock`]: the monotonic clock, or the core's
//! [`ManualClock`], which only moves when told to (tests and simulations; its clones share one
//! reading across threads; see `Executor::builder(..).clock(..)`): advance it by
//! `ticks(duration)`. Every
//! policy that depends on time (breaker open periods and the slow-call rule, attempt timeouts,
//! run deadlines, cache expiry, admission latency) reads it on every run, whatever the
//! telemetry level; only the latencies of steps without such a policy are left unmeasured in
//! runs that telemetry does not sample (see `docs/runtime.md`, "Time and units").

use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use flujo_core::graph::{Clock, ManualClock};

/// The instant that reads as tick 0 in this process, and its reading of the monotonic clock
/// in nanoseconds when [`raw`] reads that clock directly ([`NO_RAW`] otherwise).
static ORIGIN: OnceLock<(Instant, u64)> = OnceLock::new();

/// No direct reading of the origin: every read goes through [`Instant`].
const NO_RAW: u64 = u64::MAX;

/// The process's clock origin and its direct reading (taken on first use).
fn origin_pair() -> (Instant, u64) {
    *ORIGIN.get_or_init(|| {
        let at = Instant::now();
        (at, raw::reading_of(at).unwrap_or(NO_RAW))
    })
}

/// The process's clock origin (taken on first use).
#[cfg(test)]
fn origin() -> Instant {
    origin_pair().0
}

/// A direct read of the clock [`Instant`] reads, in nanoseconds: on 64-bit Linux, one
/// `clock_gettime(CLOCK_MONOTONIC)` and a multiply-add, where `Instant::now` and
/// `duration_since` cost about 75 instructions more per read (its `Timespec` subtraction and
/// normalisation). Used only when the origin's own reading could be taken exactly (and was
/// checked against two direct reads around an `Instant`), so a tick read either way is the
/// same number of nanoseconds since the same origin.
#[cfg(all(target_os = "linux", target_pointer_width = "64", not(miri)))]
mod raw {
    use std::time::Instant;

    /// `struct timespec` on 64-bit Linux: both fields are a C `long`.
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }

    /// `CLOCK_MONOTONIC` on Linux: the clock `std::time::Instant` reads there.
    const CLOCK_MONOTONIC: i32 = 1;

    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }

    /// Nanoseconds on the monotonic clock, or `None` if it could not be read.
    #[inline]
    pub(super) fn now() -> Option<u64> {
        let mut ts = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a live, writable `struct timespec` with the 64-bit Linux layout,
        // and `clock_gettime` writes only through that pointer (the libc std links).
        let rc = unsafe { clock_gettime(CLOCK_MONOTONIC, &mut ts) };
        // The monotonic clock counts from boot: seconds times 10^9 fits in a u64 for 584
        // years, so the wrapping arithmetic never wraps.
        (rc == 0).then_some(
            (ts.tv_sec as u64)
                .wrapping_mul(1_000_000_000)
                .wrapping_add(ts.tv_nsec as u64),
        )
    }

    /// The monotonic clock's reading of `at`, if std's `Instant` shows it (its `Debug` output
    /// on Linux names `tv_sec` and `tv_nsec`) and it reads the same clock as [`now`]: an
    /// `Instant` taken between two direct reads must fall between them. `None` otherwise, and
    /// every read then goes through `Instant`.
    pub(super) fn reading_of(at: Instant) -> Option<u64> {
        let before = now()?;
        let probe = Instant::now();
        let after = now()?;
        let read = shown(probe)?;
        if !(before <= read && read <= after) {
            return None;
        }
        shown(at)
    }

    /// The nanoseconds `at`'s `Debug` output shows, if it shows them.
    fn shown(at: Instant) -> Option<u64> {
        let text = format!("{at:?}");
        let field = |name: &str| -> Option<u64> {
            let rest = text.split(name).nth(1)?.strip_prefix(": ")?;
            let end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            rest[..end].parse().ok()
        };
        let (secs, nanos) = (field("tv_sec")?, field("tv_nsec")?);
        if nanos >= 1_000_000_000 {
            return None;
        }
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    }
}

/// Elsewhere every read goes through [`Instant`].
#[cfg(not(all(target_os = "linux", target_pointer_width = "64", not(miri))))]
mod raw {
    use std::time::Instant;

    /// Never read directly here.
    #[inline]
    pub(super) fn now() -> Option<u64> {
        None
    }

    /// Never read directly here.
    pub(super) fn reading_of(_: Instant) -> Option<u64> {
        None
    }
}

/// `d` in the runtime's ticks (nanoseconds), saturating at `u64::MAX` (about 584 years).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_runtime::clock::ticks;
/// assert_eq!(ticks(Duration::from_millis(250)), 250_000_000);
/// assert_eq!(ticks(Duration::MAX), u64::MAX);
/// ```
pub fn ticks(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `ticks` of the runtime (nanoseconds) as a [`Duration`].
pub fn duration(ticks: u64) -> Duration {
    Duration::from_nanos(ticks)
}

/// Nanoseconds since the process's clock origin, from the monotonic [`Instant`]; waits sleep.
///
/// Every `MonoClock` reads the same origin, so ticks taken by two executors made at different
/// times compare (a breaker shared by both keeps one time scale).
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Clock, ManualClock};
/// use flujo_runtime::clock::MonoClock;
/// let c = MonoClock::new();
/// let a = c.now();
/// c.wait(1_000);
/// assert!(c.now() >= a + 1_000);
/// assert!(MonoClock::new().now() >= a, "one origin for every clock");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MonoClock {
    /// The process's origin, copied so a read is one `Instant::now` and a subtraction.
    origin: Instant,
    /// The origin's direct reading of the same clock (`NO_RAW`: none), so a read is one
    /// `clock_gettime` and a subtraction (see `raw`).
    raw_origin: u64,
}

impl MonoClock {
    /// A clock on the process's origin.
    pub fn new() -> Self {
        let (origin, raw_origin) = origin_pair();
        Self { origin, raw_origin }
    }

    /// The tick of `at` (0 before the origin; saturating after 584 years).
    pub fn tick_of(&self, at: Instant) -> u64 {
        ticks(at.saturating_duration_since(self.origin))
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
        if self.raw_origin != NO_RAW {
            if let Some(read) = raw::now() {
                // What `tick_of(Instant::now())` gives, without the `Duration` arithmetic.
                return read.saturating_sub(self.raw_origin);
            }
        }
        self.tick_of(Instant::now())
    }

    fn wait(&self, ticks: u64) {
        thread::sleep(Duration::from_nanos(ticks));
    }
}

/// The clock an executor reads: the monotonic one ([`MonoClock`], the default) or one driven
/// by hand (the core's [`ManualClock`], in nanoseconds under the runtime). One branch per
/// read; the monotonic arm is inlined.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_core::graph::{Clock, ManualClock};
/// use flujo_runtime::clock::{ticks, RuntimeClock};
/// let manual = ManualClock::new(0);
/// let clock = RuntimeClock::from(manual.clone());
/// manual.advance(ticks(Duration::from_secs(1)));
/// assert_eq!(clock.now(), 1_000_000_000);
/// assert_eq!(clock.deadline_after(Duration::from_secs(2)), Some(3_000_000_000));
/// assert_eq!(clock.deadline_after(Duration::MAX), None, "too far to represent: no deadline");
/// ```
#[derive(Clone, Debug)]
pub enum RuntimeClock {
    /// Real time since the process's origin.
    Mono(MonoClock),
    /// Time moved by hand.
    Manual(ManualClock),
}

/// The tick `after` from tick `now`, or `None` when it cannot be represented: a deadline
/// that far away is no deadline.
pub(crate) fn deadline_from(now: u64, after: Duration) -> Option<u64> {
    u64::try_from(after.as_nanos())
        .ok()
        .and_then(|d| now.checked_add(d))
}

impl RuntimeClock {
    /// The tick `after` from now, or `None` when it cannot be represented (about 584 years
    /// after the origin): a deadline that far away is no deadline.
    pub fn deadline_after(&self, after: Duration) -> Option<u64> {
        deadline_from(self.now(), after)
    }

    /// The time left until tick `deadline` (zero once it has passed).
    pub fn until(&self, deadline: u64) -> Duration {
        duration(deadline.saturating_sub(self.now()))
    }
}

impl Default for RuntimeClock {
    fn default() -> Self {
        RuntimeClock::Mono(MonoClock::new())
    }
}

impl From<MonoClock> for RuntimeClock {
    fn from(c: MonoClock) -> Self {
        RuntimeClock::Mono(c)
    }
}

impl From<ManualClock> for RuntimeClock {
    fn from(c: ManualClock) -> Self {
        RuntimeClock::Manual(c)
    }
}

impl Clock for RuntimeClock {
    #[inline]
    fn now(&self) -> u64 {
        match self {
            RuntimeClock::Mono(c) => c.now(),
            RuntimeClock::Manual(c) => c.now(),
        }
    }

    fn wait(&self, ticks: u64) {
        match self {
            RuntimeClock::Mono(c) => c.wait(ticks),
            RuntimeClock::Manual(c) => c.wait(ticks),
        }
    }

    /// Parks between looks, at most 50 µs apart (an unpark ends a look early); a manual clock
    /// is not moved.
    fn wait_until(&self, until: u64, ready: &dyn Fn() -> bool) -> bool {
        sleep_until(self, until, ready)
    }
}

/// The longest a waiting thread sleeps before it looks again at what it waits for and, when
/// it lends itself (see [`crate::lend`]), at the executor's queues (nanoseconds).
pub(crate) const POLL: u64 = 50_000;

/// Waits on `clock` until `ready()` or tick `until`, holding the thread (parked between
/// looks, at most [`POLL`] apart, so an unpark ends a look early); returns the last
/// `ready()`.
pub(crate) fn sleep_until(clock: &RuntimeClock, until: u64, ready: &dyn Fn() -> bool) -> bool {
    loop {
        if ready() {
            return true;
        }
        let now = clock.now();
        if now >= until {
            return ready();
        }
        thread::park_timeout(Duration::from_nanos((until - now).min(POLL)));
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
    fn every_mono_clock_reads_the_process_origin() {
        let a = MonoClock::new();
        thread::sleep(Duration::from_millis(2));
        let b = MonoClock::new();
        let (ta, tb) = (a.now(), b.now());
        // Made 2 ms apart, yet they agree (b was read after a).
        assert!(tb >= ta && tb - ta < 1_000_000_000, "{ta} {tb}");
        assert_eq!(a.tick_of(origin()), 0);
        assert_eq!(b.tick_of(origin()), 0);
    }

    #[test]
    fn a_direct_read_agrees_with_the_instant_it_stands_for() {
        let c = MonoClock::new();
        for _ in 0..10_000 {
            let a = c.now();
            let b = c.tick_of(Instant::now());
            let d = c.now();
            assert!(a <= b && b <= d, "{a} {b} {d}");
        }
    }

    /// On 64-bit Linux the origin's direct reading is found, so reads take the short path
    /// (a `Debug` output of `Instant` that stopped naming its fields would fail this).
    #[cfg(all(target_os = "linux", target_pointer_width = "64", not(miri)))]
    #[test]
    fn on_linux_reads_are_direct() {
        let c = MonoClock::new();
        assert_ne!(c.raw_origin, NO_RAW);
        assert_eq!(raw::reading_of(c.origin), Some(c.raw_origin));
        assert!(raw::now().is_some());
    }

    #[test]
    fn manual_clock_moves_only_when_told_and_its_clones_share_it() {
        let c = ManualClock::new(7);
        let d = c.clone();
        assert_eq!((c.now(), d.now()), (7, 7));
        d.advance(3);
        assert_eq!(c.now(), 10);
        c.wait(5);
        assert_eq!(d.now(), 15);
        c.advance(ticks(Duration::MAX));
        assert_eq!(d.now(), u64::MAX, "saturates");
        c.set(1);
        assert_eq!(d.now(), 1);
        // Clones on other threads share it, and concurrent advances all count.
        let c = ManualClock::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let c = c.clone();
                s.spawn(move || (0..1000).for_each(|_| c.advance(1)));
            }
        });
        assert_eq!(c.now(), 4000);
    }

    #[test]
    fn deadlines_too_far_to_represent_are_none() {
        let c = RuntimeClock::from(ManualClock::new(10));
        assert_eq!(c.deadline_after(Duration::ZERO), Some(10));
        assert_eq!(
            c.deadline_after(Duration::from_nanos(u64::MAX - 10)),
            Some(u64::MAX)
        );
        assert_eq!(c.deadline_after(Duration::from_nanos(u64::MAX - 9)), None);
        assert_eq!(c.deadline_after(Duration::MAX), None);
        assert_eq!(c.until(25), Duration::from_nanos(15));
        assert_eq!(c.until(3), Duration::ZERO);
        let mono = RuntimeClock::default();
        assert!(mono.deadline_after(Duration::from_secs(1)).is_some());
        assert_eq!(mono.deadline_after(Duration::MAX), None);
    }

    #[test]
    fn waiting_until_ready_or_a_tick_moves_no_manual_time() {
        let m = ManualClock::new(10);
        let rc = RuntimeClock::from(m.clone());
        assert!(rc.wait_until(u64::MAX, &|| true));
        assert!(!rc.wait_until(10, &|| false), "the tick has come");
        assert_eq!(m.now(), 10, "no time moved");
        // Ready on another thread's word: the wait ends once it is set.
        let flag = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                thread::sleep(Duration::from_millis(2));
                flag.store(true, std::sync::atomic::Ordering::Release);
            });
            assert!(rc.wait_until(u64::MAX, &|| flag
                .load(std::sync::atomic::Ordering::Acquire)));
        });
        // Real time: the wait lasts until the tick.
        let mono = RuntimeClock::default();
        let until = mono.now() + 1_000_000;
        assert!(!mono.wait_until(until, &|| false));
        assert!(mono.now() >= until);
    }

    #[test]
    fn ticks_and_durations_round_trip() {
        for d in [0, 1, 999, 1_000_000_007, u64::MAX] {
            assert_eq!(ticks(duration(d)), d);
        }
        assert_eq!(ticks(Duration::from_secs(u64::MAX)), u64::MAX);
    }
}
