//! The step trait, the step context a step sees, step errors, and the caller's clock.

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;
use core::num::NonZeroUsize;
use core::ptr::NonNull;

use crate::context::Spares;
use crate::policy::{ErrorClass, Usage};
use crate::sync::{AtomicBool, Ordering};

/// A step's failure: its class (which drives recovery) and a reason for humans.
///
/// One pointer wide, so that a step's `Result<P, StepError>` comes back in registers when the
/// payload is a word: the class and reason live behind the pointer, in a box made by
/// [`new`](Self::new) (and its shorthands), or in a `static` [`StaticStepError`] that
/// [`from_static`](Self::from_static) points to without allocating (for steps that fail often
/// and want no allocation on that path).
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{ErrorClass, StaticStepError, StepError};
/// let e = StepError::transient("service busy");
/// assert_eq!(e.class(), ErrorClass::Transient);
/// assert_eq!(e.reason(), "service busy");
///
/// static BUSY: StaticStepError = StaticStepError::new(ErrorClass::Transient, "service busy");
/// assert_eq!(StepError::from_static(&BUSY), e);
/// ```
pub struct StepError {
    /// A `&'static StaticStepError` (low bit 0), or a `Box<Owned>` with its low bit set.
    tagged: NonNull<u8>,
    _owns: PhantomData<Box<Owned>>,
}

/// A step error known at compile time, for [`StepError::from_static`].
#[derive(Debug)]
pub struct StaticStepError {
    class: ErrorClass,
    reason: &'static str,
}

impl StaticStepError {
    /// An error of `class` with `reason`.
    pub const fn new(class: ErrorClass, reason: &'static str) -> Self {
        Self { class, reason }
    }
}

/// The boxed form of a [`StepError`].
struct Owned {
    class: ErrorClass,
    reason: Cow<'static, str>,
}

/// The low bit of [`StepError::tagged`] that marks a box. Both pointees are aligned to at
/// least 2 (they hold references), so the bit is free.
const OWNED: usize = 1;
const _: () = assert!(
    core::mem::align_of::<Owned>() > OWNED && core::mem::align_of::<StaticStepError>() > OWNED
);

// SAFETY: a `StepError` is either a shared `&'static StaticStepError` (which is `Sync`: a class
// and a `&'static str`) or a uniquely owned `Box<Owned>` (`Send + Sync`: a class and a
// `Cow<'static, str>`); it never shares the box, so it is as thread-safe as those are.
unsafe impl Send for StepError {}
// SAFETY: see `Send`: `&StepError` only reads the pointee.
unsafe impl Sync for StepError {}

impl StepError {
    /// An error of `class` with `reason` (boxed: one allocation).
    pub fn new(class: ErrorClass, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::owned(Box::new(Owned {
            class,
            reason: reason.into(),
        }))
    }

    /// The error `e`, without allocating.
    pub const fn from_static(e: &'static StaticStepError) -> Self {
        Self {
            // SAFETY: a reference is never null.
            tagged: unsafe { NonNull::new_unchecked(e as *const StaticStepError as *mut u8) },
            _owns: PhantomData,
        }
    }

    fn owned(b: Box<Owned>) -> Self {
        debug_assert!(
            core::mem::align_of::<Owned>() > OWNED,
            "the tag bit is free"
        );
        // SAFETY: `Box::into_raw` is never null, and `Owned` is aligned to at least 2 (it
        // holds pointers), so the address has its low bit clear and setting it leaves it
        // non-null.
        let raw = unsafe { NonNull::new_unchecked(Box::into_raw(b)) };
        Self {
            tagged: raw.cast::<u8>().map_addr(|a| a | OWNED),
            _owns: PhantomData,
        }
    }

    /// Whether this error owns a box (else it points to a static error).
    #[inline]
    fn is_owned(&self) -> bool {
        self.tagged.addr().get() & OWNED != 0
    }

    /// The box's pointer, with the tag cleared. Only for an owned error.
    #[inline]
    fn box_ptr(&self) -> NonNull<Owned> {
        debug_assert!(self.is_owned());
        self.tagged
            .map_addr(|a| {
                // SAFETY: the tagged address is a box's address with bit 0 set; clearing the
                // bit gives the box's address back, which is not null.
                unsafe { NonZeroUsize::new_unchecked(a.get() & !OWNED) }
            })
            .cast::<Owned>()
    }

    /// The class and reason, wherever they live.
    #[inline]
    fn parts(&self) -> (ErrorClass, &str) {
        if self.is_owned() {
            // SAFETY: the tag is set only by `owned`, on the pointer of a box this error owns
            // until it drops; the box is never handed out mutably.
            let o = unsafe { self.box_ptr().as_ref() };
            (o.class, &o.reason)
        } else {
            // SAFETY: an untagged pointer is only made by `from_static`, from a
            // `&'static StaticStepError`.
            let s = unsafe { self.tagged.cast::<StaticStepError>().as_ref() };
            (s.class, s.reason)
        }
    }

    /// What kind of failure this is.
    #[inline]
    pub fn class(&self) -> ErrorClass {
        self.parts().0
    }

    /// Why it failed.
    pub fn reason(&self) -> &str {
        self.parts().1
    }

    /// The same error with `class` (a validator's error is reclassified as validation this
    /// way). A boxed error keeps its box; a static one is boxed.
    pub fn with_class(self, class: ErrorClass) -> Self {
        let (own, reason) = self.parts();
        if own == class {
            return self;
        }
        if !self.is_owned() {
            return Self::new(class, String::from(reason));
        }
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` owns the box (it is tagged) and is never dropped (`ManuallyDrop`),
        // so the box is taken back exactly once.
        let mut b = unsafe { Box::from_raw(this.box_ptr().as_ptr()) };
        b.class = class;
        Self::owned(b)
    }

    /// A transient error (retried by the default recovery table).
    pub fn transient(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Transient, reason)
    }

    /// A permanent error (falls back, or fails, by the default recovery table).
    pub fn permanent(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Permanent, reason)
    }

    /// A validation error (what validators return).
    pub fn validation(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Validation, reason)
    }

    /// A timeout.
    pub fn timeout(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorClass::Timeout, reason)
    }
}

impl Drop for StepError {
    fn drop(&mut self) {
        if self.is_owned() {
            // SAFETY: a tagged pointer is the box this error owns; it is taken back once, here.
            drop(unsafe { Box::from_raw(self.box_ptr().as_ptr()) });
        }
    }
}

impl Clone for StepError {
    fn clone(&self) -> Self {
        if self.is_owned() {
            // SAFETY: as in `parts`: the box this error owns.
            let o = unsafe { self.box_ptr().as_ref() };
            Self::new(o.class, o.reason.clone())
        } else {
            Self {
                tagged: self.tagged,
                _owns: PhantomData,
            }
        }
    }
}

impl PartialEq for StepError {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for StepError {}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (class, reason) = self.parts();
        f.debug_struct("StepError")
            .field("class", &class)
            .field("reason", &reason)
            .finish()
    }
}

impl core::error::Error for StepError {}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (class, reason) = self.parts();
        write!(f, "{class:?}: {reason}")
    }
}

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

/// A hand-driven clock for tests and simulations: `wait` advances it.
#[derive(Debug, Default)]
pub struct ManualClock(core::cell::Cell<u64>);

impl ManualClock {
    /// A clock reading `start`.
    pub const fn new(start: u64) -> Self {
        Self(core::cell::Cell::new(start))
    }

    /// Moves the clock forward by `ticks` (saturating).
    #[inline]
    pub fn advance(&self, ticks: u64) {
        self.0.set(self.0.get().saturating_add(ticks));
    }
}

impl Clock for ManualClock {
    #[inline]
    fn now(&self) -> u64 {
        self.0.get()
    }

    #[inline]
    fn wait(&self, ticks: u64) {
        self.advance(ticks);
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
