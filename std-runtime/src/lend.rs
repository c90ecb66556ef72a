//! Help while waiting: a run that waits (a retry's backoff, a step waiting for a call handed
//! to another thread) lends its thread to queued runs until its wait is over.
//!
//! The interpreter keeps a run's whole state on the stack, so a waiting run cannot be set
//! aside; instead its wait, made through the clock the runtime hands the interpreter
//! ([`Lending`]), pops queued submissions of the waiting run's priority or higher and runs
//! them on top of it, one at a time, until the wait is over. The waiting run resumes when
//! the job it is running returns. `docs/waiting.md` has the design and its bounds; in short:
//!
//! - **No wait is shortened.** A backoff returns only once its gap has passed on the
//!   executor's clock. A helped job may make it return later, by at most that job's length
//!   (with its own nested waits): a job is taken only while at least [`SLICE`] is left of
//!   the gap. (A running estimate of the jobs' length was tried as a further bar: the helped
//!   runs that back off themselves inflate it past the gaps, and helping stops.)
//! - **Priority.** A waiting run helps only with submissions of its own priority or higher
//!   (an inline run counts as `Normal`).
//! - **Nesting is bounded**: at most [`MAX_DEPTH`] helped jobs on one thread's stack, and
//!   only while that stack has grown by less than [`STACK_BUDGET`] since the outermost
//!   wait. Past either bound the wait holds its thread, as does a wait inside a forked branch
//!   (its `rayon::join` frame holds the thread; helping there would delay the branch's
//!   siblings) and every wait under a [`ManualClock`](flujo_core::graph::ManualClock)
//!   (a backoff advances it at once; there is no time to lend).
//! - **Cancellation** ends a backoff early: the run is stopped right after it, cancelled,
//!   as it would have been after the whole gap.
//! - **Counted**: [`WaitCounts`] says how many waits lent their thread, how many held it,
//!   and how many jobs were helped; the report shows them (`Report::waits`).

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Mutex, PoisonError};
use std::thread::{self, Thread};
use std::time::Duration;

use flujo_core::graph::{CancelFlag, Clock};

use crate::clock::{sleep_until, RuntimeClock, POLL};
use crate::priority::Priority;
use crate::sync::{AtomicU64, AtomicUsize, Ordering};

/// The most helped jobs nested on one thread's stack.
pub(crate) const MAX_DEPTH: u32 = 32;

/// How far a thread's stack may grow past its outermost lending wait before waits on it
/// stop helping (bytes). In a debug build a nested one-step run takes about 17 KiB of
/// stack, so this bound binds at about 30 deep there (`tests/tests/runtime_waiting.rs`);
/// release frames are smaller, and the depth bound binds first for small graphs.
pub(crate) const STACK_BUDGET: usize = 512 * 1024;

/// The least time left of a wait for a job to be taken (nanoseconds).
pub(crate) const SLICE: u64 = 20_000;

/// How long a lending wait that found nothing to run keeps looking (yielding) before it
/// parks (nanoseconds).
pub(crate) const LINGER: u64 = 50_000;

thread_local! {
    /// Helped jobs on this thread's stack now.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The stack address of the outermost lending wait on this thread (0: none).
    static BASE: Cell<usize> = const { Cell::new(0) };
    /// Forked branches on this thread's stack now (see [`Forked`]).
    static FORKED: Cell<u32> = const { Cell::new(0) };
}

/// What an executor lends a waiting thread to.
pub(crate) trait Lend: Sync {
    /// Runs one queued submission of priority `at_least` or higher; `false` when there was
    /// none to run.
    fn run_one(&self, at_least: Priority) -> bool;

    /// The executor's wait counts.
    fn waits(&self) -> &WaitCounts;
}

/// How the waits of an executor's runs went (exact counts).
#[derive(Debug, Default)]
pub(crate) struct WaitCounts {
    /// Waits that lent their thread (they may have found nothing queued to run).
    lent: AtomicU64,
    /// Waits that held their thread: inside a forked branch, past the nesting bounds.
    held: AtomicU64,
    /// Submissions run by waiting threads.
    helped: AtomicU64,
    /// Lending threads parked because they found nothing to run (see [`wake_one`]).
    ///
    /// [`wake_one`]: Self::wake_one
    idle: Mutex<Vec<Thread>>,
    /// `idle.len()`, read without the lock by every submission that finds every dispatcher
    /// place taken.
    idle_count: AtomicUsize,
}

impl WaitCounts {
    /// Wakes a lending thread parked with nothing to run, if there is one: called after a
    /// submission was queued while every dispatcher place was taken. Best effort: a lender
    /// that registers just after this reads the count misses the wake-up and looks at the
    /// queues after at most [`POLL`] instead.
    #[inline]
    pub(crate) fn wake_one(&self) {
        if self.idle_count.load(Ordering::Relaxed) > 0 {
            self.wake_one_slow();
        }
    }

    #[cold]
    fn wake_one_slow(&self) {
        let thread = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        if let Some(t) = thread {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            t.unpark();
        }
    }

    /// Parks this lending thread for at most `left` ticks (nanoseconds), capped at [`POLL`],
    /// registered so that a submission wakes it.
    fn park_idle(&self, left: u64) {
        let me = thread::current();
        {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.push(me.clone());
            self.idle_count.fetch_add(1, Ordering::Relaxed);
        }
        thread::park_timeout(Duration::from_nanos(left.min(POLL)));
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(at) = idle.iter().position(|t| t.id() == me.id()) {
            idle.swap_remove(at);
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// `(lent, held, helped)`.
    pub(crate) fn read(&self) -> (u64, u64, u64) {
        (
            self.lent.load(Ordering::Relaxed),
            self.held.load(Ordering::Relaxed),
            self.helped.load(Ordering::Relaxed),
        )
    }
}

/// Marks a forked branch on this thread's stack while alive: waits under it hold their
/// thread.
pub(crate) struct Forked(());

impl Forked {
    /// Enters a branch.
    #[inline]
    pub(crate) fn enter() -> Self {
        FORKED.with(|f| f.set(f.get() + 1));
        Forked(())
    }
}

impl Drop for Forked {
    #[inline]
    fn drop(&mut self) {
        FORKED.with(|f| f.set(f.get() - 1));
    }
}

/// One more helped job on this thread's stack while alive.
struct Nested(());

impl Nested {
    fn enter() -> Self {
        DEPTH.with(|d| d.set(d.get() + 1));
        Nested(())
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// The outermost lending wait on this thread while alive: it sets the stack base the budget
/// is measured from.
struct Outermost {
    set: bool,
}

impl Outermost {
    fn enter(at: usize) -> Self {
        let set = BASE.with(|b| {
            if b.get() == 0 {
                b.set(at);
                true
            } else {
                false
            }
        });
        Outermost { set }
    }
}

impl Drop for Outermost {
    fn drop(&mut self) {
        if self.set {
            BASE.with(|b| b.set(0));
        }
    }
}

/// An address on the current stack frame.
#[inline(never)]
fn stack_here() -> usize {
    let marker = 0u8;
    core::ptr::from_ref(std::hint::black_box(&marker)) as usize
}

/// Why a wait on this thread cannot lend it now, if it cannot.
fn must_hold(here: usize) -> bool {
    if FORKED.with(Cell::get) > 0 || DEPTH.with(Cell::get) >= MAX_DEPTH {
        return true;
    }
    let base = BASE.with(Cell::get);
    base != 0 && base.abs_diff(here) >= STACK_BUDGET
}

/// The clock of one run under an executor: reads the executor's clock, and waits by lending
/// the thread to `lender`'s queued submissions of priority `at_least` or higher (see the
/// [module docs](self)). `MEASURED` is [`Clock::measures_latency`]: `false` for a run that
/// telemetry does not sample, which then pays no clock read per step.
pub(crate) struct Lending<'a, const MEASURED: bool> {
    pub(crate) clock: &'a RuntimeClock,
    pub(crate) lender: &'a dyn Lend,
    pub(crate) at_least: Priority,
    /// The run's cancel flag: a backoff ends early once it is raised (the interpreter then
    /// stops the run, cancelled), so a cancel or a time-limited shutdown reaches a run in a
    /// long backoff at once.
    pub(crate) cancel: Option<&'a CancelFlag>,
}

impl<const MEASURED: bool> Lending<'_, MEASURED> {
    /// Waits until `ready()` or tick `until` (see the module docs); returns the last
    /// `ready()`.
    fn lend_until(&self, until: u64, ready: &dyn Fn() -> bool) -> bool {
        let here = stack_here();
        let waits = self.lender.waits();
        if must_hold(here) {
            waits.held.fetch_add(1, Ordering::Relaxed);
            return sleep_until(self.clock, until, ready);
        }
        waits.lent.fetch_add(1, Ordering::Relaxed);
        let _outermost = Outermost::enter(here);
        // When the wait last found work (or began): it yields rather than parks for
        // `LINGER` after that, as a pool worker does, since waking a parked thread costs
        // tens of microseconds on a busy machine.
        let mut busy_at = self.clock.now();
        loop {
            if ready() {
                return true;
            }
            let now = self.clock.now();
            if now >= until {
                return ready();
            }
            let left = until - now;
            if left >= SLICE && self.help_one() {
                busy_at = self.clock.now();
                continue;
            }
            if now.saturating_sub(busy_at) < LINGER {
                thread::yield_now();
            } else {
                waits.park_idle(left);
            }
        }
    }

    /// Runs one queued job, if one is there; `true` when it did.
    fn help_one(&self) -> bool {
        let _nested = Nested::enter();
        // A panic that escapes a job (a user `Drop` of a value its ticket's holder had let
        // go, say) is the job's: its submission was ended as it unwound, and the waiting run
        // goes on.
        let ran = panic::catch_unwind(AssertUnwindSafe(|| self.lender.run_one(self.at_least)))
            .unwrap_or(true);
        if ran {
            self.lender.waits().helped.fetch_add(1, Ordering::Relaxed);
        }
        ran
    }
}

impl<const MEASURED: bool> Clock for Lending<'_, MEASURED> {
    #[inline]
    fn now(&self) -> u64 {
        self.clock.now()
    }

    fn wait(&self, ticks: u64) {
        match self.clock {
            RuntimeClock::Manual(m) => m.wait(ticks),
            RuntimeClock::Mono(_) => {
                let until = self.clock.now().saturating_add(ticks);
                let cancel = self.cancel;
                self.lend_until(until, &|| cancel.is_some_and(CancelFlag::is_cancelled));
            }
        }
    }

    fn wait_until(&self, until: u64, ready: &dyn Fn() -> bool) -> bool {
        match self.clock {
            RuntimeClock::Manual(_) => sleep_until(self.clock, until, ready),
            RuntimeClock::Mono(_) => self.lend_until(until, ready),
        }
    }

    #[inline(always)]
    fn measures_latency(&self) -> bool {
        MEASURED
    }
}

#[cfg(test)]
#[path = "lend/tests.rs"]
mod tests;
