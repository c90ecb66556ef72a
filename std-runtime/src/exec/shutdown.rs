//! Shutdown: what happens to the queued submissions and the runs under way, within a time
//! limit or not.
//!
//! [`Executor::shutdown_with`](super::Executor::shutdown_with) stops admitting, then
//! finishes or hands back what is queued ([`Drain`]) and waits for the runs under way. With a
//! [`limit`](ShutdownSpec::limit), once the executor's clock passes it, whatever is still
//! queued is handed back and every submitted run under way has its cancel flag raised (the
//! one its [`Ticket::cancel`](crate::ticket::Ticket::cancel) raises): it stops before its next
//! step, and a step polling `StepCx::should_stop` sees it at once. The shutdown then waits
//! up to [`grace`](ShutdownSpec::grace) more and reports the runs that still had not ended
//! ([`ShutdownReport::still_running`]): a step that never polls its flag cannot be stopped
//! from outside (Rust has no safe way to kill a thread), so it goes on, holding its pool
//! thread, and its ticket completes when it ends. The report's totals stay whole: such a
//! run is `in_flight` until it ends.
//!
//! To raise the flags, each submitted run registers its flag while it runs ([`Running`]):
//! one short uncontended lock of its own thread's slot at the start and one at the end.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use flujo_core::context::Context;
use flujo_core::graph::{CancelFlag, Clock};

use super::runner_pool::lock;
use super::{Executor, Finished, Inner, Job, Rejected};
use crate::Refusal;

/// What [`Executor::shutdown`](super::Executor::shutdown) does with the submissions still
/// queued.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drain {
    /// Run every queued submission, then stop.
    #[default]
    Finish,
    /// Hand every queued submission back through its ticket
    /// ([`Finished::HandedBack`](super::Finished::HandedBack)); runs already started finish.
    HandBack,
}

/// How [`Executor::shutdown_with`](super::Executor::shutdown_with) stops: what becomes of
/// the queue, and how long it waits.
///
/// Built from `ShutdownSpec::default()` (finish the queue, no time limit: as
/// [`Executor::shutdown`](super::Executor::shutdown)) and its setters:
///
/// ```
/// # use std::time::Duration;
/// # use flujo_runtime::{Drain, ShutdownSpec};
/// // At most 2 s for the queue and the runs; then cancel, and give them 100 ms more.
/// let spec = ShutdownSpec::default().limit(Duration::from_secs(2)).grace(Duration::from_millis(100));
/// assert_eq!((spec.drain, spec.limit), (Drain::Finish, Some(Duration::from_secs(2))));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownSpec {
    /// What becomes of the queued submissions before the limit ([`Drain::Finish`] by
    /// default). At the limit, whatever is still queued is handed back either way.
    pub drain: Drain,
    /// How long, on the executor's clock, the queue and the runs under way get to end on
    /// their own (`None`, the default: as long as they take). When it passes, the queued
    /// submissions are handed back and the cancel flags of the runs under way are raised.
    pub limit: Option<Duration>,
    /// How long, after the limit, the cancelled runs get to stop before the shutdown
    /// returns and reports those still running (10 ms by default).
    pub grace: Duration,
}

impl Default for ShutdownSpec {
    fn default() -> Self {
        Self {
            drain: Drain::Finish,
            limit: None,
            grace: Duration::from_millis(10),
        }
    }
}

impl ShutdownSpec {
    /// Sets [`drain`](Self::drain).
    #[must_use]
    pub fn drain(mut self, drain: Drain) -> Self {
        self.drain = drain;
        self
    }

    /// Sets [`limit`](Self::limit).
    #[must_use]
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Sets [`grace`](Self::grace).
    #[must_use]
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

/// What a shutdown saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Queued submissions handed back, over the executor's life.
    pub handed_back: u64,
    /// Submissions that ran to their end over the executor's life.
    pub finished: u64,
    /// Runs under way whose cancel flag this shutdown raised when its limit passed (0 when
    /// everything ended in time, or with no limit).
    pub cancelled: u64,
    /// Submitted runs still under way when the shutdown returned (after the grace): their
    /// steps ignored the cancel flag. They end on their own, and their tickets complete
    /// then; the report counts them `in_flight` until that.
    pub still_running: u64,
}

/// The cancel flags of the submitted runs under way: one stack per pool thread (a thread
/// lent to another job while it waits in a fork's join runs a nested one above its own), so a
/// run's registration locks its own thread's slot only.
pub(super) struct Running {
    slots: Box<[Mutex<Vec<FlagRef>>]>,
}

/// A registered run's cancel flag.
struct FlagRef(*const CancelFlag);

// SAFETY: a `FlagRef` is only dereferenced under its slot's lock, while it is registered, and
// `Running::during` removes it (under that lock) before the flag it points to can be dropped;
// `CancelFlag` is `Sync`, so raising it from the shutdown's thread is sound.
unsafe impl Send for FlagRef {}

impl Running {
    /// Slots for a pool of `threads` threads, each with room for a few nested runs (so a
    /// registration allocates nothing in steady state).
    pub(super) fn new(threads: usize) -> Self {
        Self {
            slots: (0..threads.max(1))
                .map(|_| Mutex::new(Vec::with_capacity(4)))
                .collect(),
        }
    }

    /// Runs `f` with `flag` registered, so [`cancel_all`](Self::cancel_all) can raise it;
    /// `halting` is read after the registration (see `Inner::run_job`).
    pub(super) fn during<R>(&self, flag: &CancelFlag, f: impl FnOnce() -> R) -> R {
        let index = rayon::current_thread_index().unwrap_or(0) % self.slots.len();
        let slot = &self.slots[index];
        lock(slot).push(FlagRef(flag));
        /// Removes the flag again, also when `f` unwinds.
        struct Unregister<'a> {
            slot: &'a Mutex<Vec<FlagRef>>,
            flag: *const CancelFlag,
        }
        impl Drop for Unregister<'_> {
            fn drop(&mut self) {
                let mut slot = lock(self.slot);
                // The newest registration of this thread, unless a nested run ended out of
                // order (it cannot: a nested run ends before the one it interrupted resumes).
                if let Some(at) = slot.iter().rposition(|f| f.0 == self.flag) {
                    slot.remove(at);
                }
            }
        }
        let _unregister = Unregister {
            slot,
            flag: core::ptr::from_ref(flag),
        };
        f()
    }

    /// Raises every registered flag; returns how many there were.
    pub(super) fn cancel_all(&self) -> u64 {
        let mut raised = 0;
        for slot in &self.slots[..] {
            let slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            for flag in slot.iter() {
                // SAFETY: the flag is registered, so it is alive: `during` removes it under
                // this lock before returning, and its caller's borrow outlives that.
                unsafe { &*flag.0 }.cancel();
                raised += 1;
            }
        }
        raised
    }
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl<P, C> Executor<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Stops admitting (later submissions are handed back with
    /// [`Refusal::ShuttingDown`]), then finishes or hands back what is queued, and waits
    /// until no submission is left. No submission is lost: each ends as run, or handed back
    /// through its ticket. It waits as long as the runs take: see
    /// [`shutdown_with`](Self::shutdown_with) for a time limit.
    pub fn shutdown(&self, drain: Drain) -> ShutdownReport {
        self.shutdown_with(&ShutdownSpec::default().drain(drain))
    }

    /// [`shutdown`](Self::shutdown) within a time limit: once `spec.limit` has passed on the
    /// executor's clock, what is still queued is handed back, the runs under way have their
    /// cancel flags raised, and after `spec.grace` more it returns, reporting the runs that
    /// still had not ended ([`ShutdownReport::still_running`]: steps that ignore their flag).
    /// Inline runs ([`run`](Self::run)) are the caller's: it neither waits for nor cancels
    /// them (give them a [`RunSpec::cancel`](crate::RunSpec::cancel) flag).
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use std::time::Duration;
    /// # use flujo_core::graph::Graph;
    /// # use flujo_runtime::{config::OptimizationConfig, Executor, Finished, Priority, ShutdownSpec};
    /// // A step that runs until it is told to stop.
    /// let g = Arc::new(Graph::<u64, ()>::build(|b| {
    ///     b.task("poll", |x, cx| {
    ///         while !cx.should_stop() {
    ///             std::thread::sleep(Duration::from_micros(100));
    ///         }
    ///         Ok(x)
    ///     })
    /// }).unwrap());
    /// let ex = Executor::new(OptimizationConfig::latency()).unwrap();
    /// let ticket = ex.submit(&g, 1, (), Priority::Normal).ok().unwrap();
    /// let shut = ex.shutdown_with(&ShutdownSpec::default().limit(Duration::from_millis(20)).grace(Duration::from_secs(5)));
    /// assert_eq!(shut.still_running, 0);
    /// // It was cancelled (if it had started) or handed back (if it had not).
    /// assert!(matches!(ticket.wait().unwrap(), Finished::Ran(_) | Finished::HandedBack(_)));
    /// ```
    pub fn shutdown_with(&self, spec: &ShutdownSpec) -> ShutdownReport {
        let inner = &self.inner;
        inner.closed.store(true, Ordering::Release);
        // Submissions waiting for room are refused (they see `closed`).
        inner.room.close();
        if spec.drain == Drain::HandBack {
            inner.hand_back_queued();
        }
        let limit = spec.limit.map(|d| inner.clock.deadline_after(d));
        let mut cancelled = 0;
        // `Some(None)`: a limit past what the clock can represent, which is none.
        if !inner.wait_idle(limit.flatten()) {
            // The limit passed. A job popped from here on is handed back (`run_job`), so
            // everything not yet started is; the flags of those started are raised.
            inner.halting.store(true, Ordering::SeqCst);
            inner.hand_back_queued();
            cancelled = inner.running.cancel_all();
            inner.wait_idle(inner.clock.deadline_after(spec.grace));
        }
        inner.queues.close();
        ShutdownReport {
            handed_back: inner.handed_back.load(Ordering::Relaxed),
            finished: inner.finished.load(Ordering::Relaxed),
            cancelled,
            still_running: inner.room.pending() as u64,
        }
    }
}

impl<P, C> Inner<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Hands `job` back through its ticket, unrun (the caller ends the submission).
    pub(super) fn hand_back(&self, job: Job<P, C>) {
        self.handed_back.fetch_add(1, Ordering::Release);
        let Job {
            input,
            context,
            completer,
            permit,
            ..
        } = job;
        // Before the completion, whose drop of an unclaimed value may unwind.
        self.give_back(permit);
        completer.complete(Finished::HandedBack(Rejected {
            reason: Refusal::ShuttingDown,
            input,
            context,
        }));
    }

    /// Closes the queues and hands back every submission in them.
    fn hand_back_queued(&self) {
        self.queues.close();
        for (job, _) in self.queues.drain() {
            self.hand_back(job);
            self.end_one();
        }
    }

    /// Waits until no submission is pending (`true`) or the clock reaches `until` (`false`).
    /// Sleeps in real slices of at most 10 ms between looks at the clock (a manual clock is
    /// moved by someone else); the last submission to end wakes it at once.
    fn wait_idle(&self, until: Option<u64>) -> bool {
        let (m, cv) = &self.idle;
        let mut guard = lock(m);
        // Counted while it looks and waits: the last submission to end signals only then.
        *guard += 1;
        let idle = loop {
            if self.room.pending() == 0 {
                break true;
            }
            let slice = match until {
                Some(t) if self.clock.now() >= t => break false,
                Some(t) => self.clock.until(t).min(Duration::from_millis(10)),
                None => Duration::from_millis(10),
            };
            guard = cv
                .wait_timeout(guard, slice)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        };
        *guard -= 1;
        idle
    }
}
