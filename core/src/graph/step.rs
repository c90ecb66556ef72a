//! The step trait, the step context a step sees, and the caller's clock.

use core::fmt;

use crate::context::Spares;
use crate::policy::{ErrorClass, Usage};
use crate::step_error::StepError;
use crate::sync::{AtomicBool, Ordering};

/// The caller's clock: ticks of any unit the host chooses (under `flujo-runtime` a tick is
/// one nanosecond since the process's clock origin). The core never reads a clock of its own.
///
/// Every decision that depends on time reads [`now`](Self::now) where it is made: a breaker's
/// permit and the latency it learns (open period, half-open, slow-call rule), an attempt's
/// timeout, the run's deadline before each task, a retry's backoff, a cache entry's expiry.
pub trait Clock {
    /// The current tick.
    fn now(&self) -> u64;

    /// Waits `ticks` between attempts (backoff). The default does not wait: a `no_std` host
    /// that cannot sleep still gets the delays reported in the step records.
    fn wait(&self, ticks: u64) {
        let _ = ticks;
    }

    /// Waits until `ready()` is true or tick `until` has come, whichever is first, and
    /// returns whether `ready()` was true at the end: how a step waits for work done
    /// elsewhere (a call handed to another thread, say) without spinning on its own.
    ///
    /// A host may run other work on the waiting thread meanwhile: the runtime's clock runs
    /// queued runs while it waits (see `docs/waiting.md`). The default polls `ready` and the
    /// clock, calling [`wait`](Self::wait)`(1)` between polls.
    fn wait_until(&self, until: u64, ready: &dyn Fn() -> bool) -> bool {
        poll_until(self, until, ready, || self.wait(1))
    }

    /// Whether the interpreter reads this clock around every task to record its latency (the
    /// default). A clock that answers `false` is read only where a decision needs the time
    /// (the reads listed above, a task with a breaker, timeout or cache, the deadline test
    /// of a run that has one) and at a sampled telemetry execution; every other record
    /// carries a latency of 0. Decisions are the same either way: this trades the records'
    /// latencies for a clock read per task. Answer with a constant, so that the interpreter's
    /// test of it folds away.
    #[inline(always)]
    fn measures_latency(&self) -> bool {
        true
    }
}

/// Polls `ready` and `clock` until `ready()` or tick `until`, calling `between` (and a spin
/// hint) between polls; returns the last `ready()`.
fn poll_until<K: Clock + ?Sized>(
    clock: &K,
    until: u64,
    ready: &dyn Fn() -> bool,
    between: impl Fn(),
) -> bool {
    loop {
        if ready() {
            return true;
        }
        if clock.now() >= until {
            return ready();
        }
        between();
        core::hint::spin_loop();
    }
}

/// The start tick of a task whose latency is not measured ([`Clock::measures_latency`]):
/// every latency measured from it saturates to 0.
pub(crate) const UNTIMED: u64 = u64::MAX;

/// A clock that always reads 0 (latencies are all 0): the cheapest clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoClock;

impl Clock for NoClock {
    #[inline(always)]
    fn now(&self) -> u64 {
        0
    }
}

/// A hand-driven clock for tests, simulations and replays: it moves only when told to
/// ([`advance`](Self::advance), [`set`](Self::set)), and a backoff's [`wait`](Clock::wait)
/// advances it instead of sleeping, so a test of breakers, timeouts and deadlines runs in no
/// wall time and the same way every time.
///
/// Its clones share one reading: the test that moves it and the runner (or the runtime's
/// executor, whose ticks are nanoseconds) that reads it see the same time. It is
/// `Send + Sync` where the target has 64-bit atomics; on a target without them (a Cortex-M)
/// it is a one-thread clock with the same methods.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Clock, ManualClock};
/// let clock = ManualClock::new(5);
/// let seen_by_the_engine = clock.clone();
/// clock.advance(10);
/// assert_eq!(seen_by_the_engine.now(), 15);
/// seen_by_the_engine.wait(3); // a backoff moves the clock
/// assert_eq!(clock.now(), 18);
/// clock.set(1); // back in time: allowed, a step that ended "before" it started lasted 0
/// assert_eq!(clock.now(), 1);
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(SharedTicks);

#[cfg(any(loom, target_has_atomic = "64"))]
type SharedTicks = crate::sync::Arc<crate::sync::AtomicU64>;

#[cfg(not(any(loom, target_has_atomic = "64")))]
type SharedTicks = alloc::rc::Rc<core::cell::Cell<u64>>;

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: u64) -> Self {
        Self(SharedTicks::new(start.into()))
    }

    /// Moves every clone of this clock forward by `ticks` (saturating); two threads that
    /// advance it at once both count.
    #[inline]
    pub fn advance(&self, ticks: u64) {
        #[cfg(any(loom, target_has_atomic = "64"))]
        {
            let mut t = self.0.load(Ordering::Acquire);
            while let Err(seen) = self.0.compare_exchange_weak(
                t,
                t.saturating_add(ticks),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                t = seen;
            }
        }
        #[cfg(not(any(loom, target_has_atomic = "64")))]
        self.0.set(self.0.get().saturating_add(ticks));
    }

    /// Sets every clone of this clock to `tick`. Setting it back is allowed (for tests of a
    /// clock going back): the engine reads a step that ended "before" it started as 0 ticks
    /// long.
    #[inline]
    pub fn set(&self, tick: u64) {
        #[cfg(any(loom, target_has_atomic = "64"))]
        self.0.store(tick, Ordering::Release);
        #[cfg(not(any(loom, target_has_atomic = "64")))]
        self.0.set(tick);
    }
}

impl Default for ManualClock {
    /// A clock reading tick 0.
    fn default() -> Self {
        Self::new(0)
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        #[cfg(any(loom, target_has_atomic = "64"))]
        return self.0.load(Ordering::Acquire);
        #[cfg(not(any(loom, target_has_atomic = "64")))]
        return self.0.get();
    }

    #[inline]
    fn wait(&self, ticks: u64) {
        self.advance(ticks);
    }

    /// Polls `ready` until it is true or the clock, moved by someone else, reaches `until`:
    /// unlike a backoff's [`wait`](Clock::wait), waiting for something moves no time.
    fn wait_until(&self, until: u64, ready: &dyn Fn() -> bool) -> bool {
        poll_until(self, until, ready, || {})
    }
}

/// A cooperative cancellation flag, shareable between threads.
#[derive(Debug, Default)]
pub struct CancelFlag(AtomicBool);

impl CancelFlag {
    /// A flag not yet raised.
    pub fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Raises the flag: the run stops before its next step, steps polling
    /// [`StepCx::should_stop`] see it at once.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether the flag was raised.
    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What a step sees besides its input: the run context (read, and write through
/// copy-on-write), the previous failed attempt's feedback, its attempt number, usage
/// reporting, and a cooperative cancel/deadline check.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, StepCx, StepError, TaskConfig};
/// use flujo_core::interp::{Runner, RunOptions};
/// use flujo_core::graph::NoClock;
///
/// // The context is a plain counter; this step counts its calls in it.
/// let g = Graph::<u64, u64>::build(|b| {
///     b.task_with("count", |x, cx: &mut StepCx<'_, u64>| {
///         *cx.ctx_mut()? += 1;
///         Ok(x * 2)
///     }, TaskConfig::new().writes_context())
/// }).unwrap();
/// let mut runner = Runner::new(Default::default());
/// let r = runner.run(&g, 21, 0, &NoClock, &RunOptions::default());
/// assert_eq!(r.output, Some(42));
/// assert_eq!(r.context, 1);
/// ```
pub struct StepCx<'a, C> {
    view: &'a C,
    written: Option<C>,
    spares: &'a mut Spares<C>,
    env: &'a RunEnv<'a>,
    feedback: Option<&'a StepError>,
    pub(crate) usage: Usage,
    pub(crate) attempt: u32,
    pub(crate) may_write: bool,
    /// Set by the first write or usage report: the fast path looks at this one byte instead
    /// of the usage and the written copy after every step.
    pub(crate) touched: bool,
}

/// The cancel flags a run (or a forked branch of one) answers to: its own and, up the
/// chain, those of the fan-outs and the run it belongs to. At most one link per nesting
/// level, so the walk is bounded by [`MAX_DEPTH`](super::MAX_DEPTH) + 1.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cancel<'a> {
    pub(crate) flag: &'a CancelFlag,
    pub(crate) up: Option<&'a Cancel<'a>>,
}

impl Cancel<'_> {
    /// Whether this flag or one up the chain was raised.
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        let mut link = Some(self);
        while let Some(l) = link {
            if l.flag.is_cancelled() {
                return true;
            }
            link = l.up;
        }
        false
    }
}

/// What stays the same for every step of a run: the clock, the deadline, the cancel flags.
#[derive(Clone, Copy)]
pub(crate) struct RunEnv<'a> {
    pub(crate) clock: &'a dyn Clock,
    pub(crate) deadline: u64,
    pub(crate) cancel: Option<&'a Cancel<'a>>,
    /// Whether the run can stop early at all (a deadline or a cancel flag was given): when
    /// false the interpreter skips the per-task stop check.
    pub(crate) watch: bool,
}

impl<'a> RunEnv<'a> {
    /// The environment of one run.
    pub(crate) fn new(clock: &'a dyn Clock, deadline: u64, cancel: Option<&'a Cancel<'a>>) -> Self {
        Self {
            clock,
            deadline,
            cancel,
            watch: deadline != u64::MAX || cancel.is_some(),
        }
    }
}

impl<C> fmt::Debug for StepCx<'_, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepCx")
            .field("attempt", &self.attempt)
            .field("written", &self.written.is_some())
            .field("feedback", &self.feedback)
            .field("usage", &self.usage)
            .field("deadline", &self.env.deadline)
            .finish_non_exhaustive()
    }
}

impl<C> StepCx<'_, C> {
    /// The run context as this attempt sees it (its own writes included).
    #[inline]
    pub fn ctx(&self) -> &C {
        match &self.written {
            Some(c) => c,
            None => self.view,
        }
    }
}

impl<'a, C: Clone> StepCx<'a, C> {
    #[inline(always)]
    pub(crate) fn new(
        view: &'a C,
        spares: &'a mut Spares<C>,
        env: &'a RunEnv<'a>,
        may_write: bool,
        attempt: u32,
        feedback: Option<&'a StepError>,
    ) -> Self {
        Self {
            view,
            written: None,
            spares,
            env,
            feedback,
            usage: Usage::ZERO,
            attempt,
            may_write,
            touched: false,
        }
    }

    /// The run context for writing. The first call copies the context (reusing a spare
    /// copy's memory through `Clone::clone_from`); the copy replaces the run's context only
    /// if the attempt succeeds, so a failed attempt's writes are discarded.
    ///
    /// Fails with a [`ErrorClass::Usage`] error (which aborts the run) when the task did not
    /// declare context writes (`TaskConfig::writes_context`): a step analysed as read-only
    /// must not write.
    #[inline]
    pub fn ctx_mut(&mut self) -> Result<&mut C, StepError> {
        if !self.may_write {
            return Err(StepError::new(
                ErrorClass::Usage,
                "step wrote the context without declaring it (TaskConfig::writes_context)",
            ));
        }
        if self.written.is_none() {
            self.written = Some(self.spares.copy_of(self.view));
            self.touched = true;
        }
        match &mut self.written {
            Some(c) => Ok(c),
            None => unreachable!("written was just filled"),
        }
    }

    /// Whether this attempt wrote the context.
    pub fn wrote_context(&self) -> bool {
        self.written.is_some()
    }

    /// The error or validator feedback of the previous failed attempt, if any.
    #[inline]
    pub fn feedback(&self) -> Option<&StepError> {
        self.feedback
    }

    /// This attempt's number, from 1.
    #[inline]
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Reports usage spent by this attempt (added to the step record and the run's totals).
    #[inline]
    pub fn report_usage(&mut self, usage: Usage) {
        self.usage = self.usage.saturating_add(usage);
        self.touched = true;
    }

    /// Usage reported so far by this attempt.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// The current tick of the run's clock.
    pub fn now(&self) -> u64 {
        self.env.clock.now()
    }

    /// The run's deadline tick (`u64::MAX` when there is none).
    pub fn deadline(&self) -> u64 {
        self.env.deadline
    }

    /// Whether the run was cancelled.
    pub fn is_cancelled(&self) -> bool {
        self.env.cancel.is_some_and(Cancel::is_cancelled)
    }

    /// Waits until `ready()` is true, the attempt's deadline (the run's deadline, brought
    /// forward by the task's timeout) has come, or the run was cancelled, and returns whether
    /// `ready()` was true: a step that handed work to another thread waits for it here. The
    /// host decides what the thread does meanwhile: under `flujo-runtime` it runs other
    /// queued runs (see `docs/waiting.md`).
    ///
    /// # Examples
    ///
    /// ```
    /// use core::sync::atomic::{AtomicBool, Ordering};
    /// use flujo_core::graph::{Graph, ManualClock, StepError};
    /// use flujo_core::interp::{RunOptions, Runner, RunnerConfig};
    ///
    /// let g = Graph::<u64, ()>::build(|b| {
    ///     b.task("waits", |x, cx| {
    ///         let done = AtomicBool::new(true); // set by another thread, in real use
    ///         if cx.wait_until(|| done.load(Ordering::Acquire)) {
    ///             Ok(x + 1)
    ///         } else {
    ///             Err(StepError::timeout("no answer in time"))
    ///         }
    ///     })
    /// })
    /// .unwrap();
    /// let mut runner = Runner::new(RunnerConfig::default());
    /// let clock = ManualClock::new(0);
    /// let r = runner.run(&g, 1, (), &clock, &RunOptions::default());
    /// assert_eq!(r.output, Some(2));
    /// ```
    pub fn wait_until(&self, ready: impl Fn() -> bool) -> bool {
        let stop = || ready() || self.is_cancelled();
        self.env.clock.wait_until(self.env.deadline, &stop);
        ready()
    }

    /// Whether the step should stop early: the run was cancelled or its deadline passed.
    pub fn should_stop(&self) -> bool {
        self.is_cancelled()
            || (self.env.deadline != u64::MAX && self.env.clock.now() >= self.env.deadline)
    }

    #[inline(always)]
    pub(crate) fn finish(self) -> (Option<C>, Usage) {
        (self.written, self.usage)
    }

    /// Whether the current step wrote (the fast path then commits before the next step).
    #[inline(always)]
    pub(crate) fn has_written(&self) -> bool {
        self.written.is_some()
    }
}

/// A step: `input -> output` with access to the [`StepCx`]. Closures
/// `Fn(P, &mut StepCx<'_, C>) -> Result<P, StepError>` implement it.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Step, StepCx, StepError};
/// struct AddN(u64);
/// impl<C: Clone> Step<u64, C> for AddN {
///     fn run(&self, input: u64, _cx: &mut StepCx<'_, C>) -> Result<u64, StepError> {
///         Ok(input + self.0)
///     }
/// }
/// ```
pub trait Step<P, C>: Send + Sync {
    /// Runs the step once (one attempt).
    fn run(&self, input: P, cx: &mut StepCx<'_, C>) -> Result<P, StepError>;
}

impl<P, C, F> Step<P, C> for F
where
    F: Fn(P, &mut StepCx<'_, C>) -> Result<P, StepError> + Send + Sync,
{
    #[inline(always)]
    fn run(&self, input: P, cx: &mut StepCx<'_, C>) -> Result<P, StepError> {
        self(input, cx)
    }
}
