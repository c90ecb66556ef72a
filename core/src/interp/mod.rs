//! The single-thread interpreter: runs any frozen graph on the calling thread.
//!
//! A [`Runner`] owns the scratch a run needs (the per-run [`RunArena`] its step records live
//! in, reset at the start of each run; spare context copies,
//! the map item stack, the step cache, the seeded generator) and reuses it run after run, so
//! after warm-up a run of plain tasks allocates nothing. Parallel branches and map items run
//! one after another, in declaration order.
//!
//! Task policies apply in the contract's order on every execution: circuit breaker, cache,
//! usage reservation, attempts (pre-processors, step, post-processors, validators; a failed
//! attempt's context writes discarded; its error is the next attempt's feedback; backoff
//! between attempts reported to [`Clock::wait`]), classification by
//! the recovery table, fallback, and finally the step record (and the breaker learns the
//! outcome). Tasks that the build-time analysis found *plain* skip all of it.
//!
//! A sequence whose children are all tasks is frozen as a *task run* and runs in
//! *stretches*: one loop runs consecutive plain tasks and *lean* policy tasks (no cache, no
//! usage estimate) with one step context, one clock read per task and the record cursor in
//! locals; a lean task's first attempt (breaker permit, processors, step, validators) runs in
//! the loop, and only a failure or an open breaker leaves it for the recovery path. Other
//! policy tasks run alone through the full pipeline. Both paths give the same results
//! (`lean_and_full_paths_give_the_same_results`).
//!
//! Policies are `crate::policy`'s: the atomic [`Breaker`](crate::policy::Breaker) (a cache hit
//! or a usage denial gives its permit back with `release`, never an outcome), the retry state
//! machine and recovery table, and the [`UsageBudget`]: a parallel node or a map lends each
//! branch (item) an equal share of what is left (`split`), and what a branch does not use
//! comes back when it ends (`merge`), so branches cannot together overspend whatever order a
//! concurrent runtime runs them in. A run without a budget skips the splitting. Usage a
//! step reports is charged when it ends; a charge past the budget (the run's, or a branch's
//! share) aborts the run right after that step ([`ErrorKind::UsageOverrun`]). Cacheable
//! tasks go through a [`FixedCache`] of the runner keyed by [`CacheKey`](crate::cache::CacheKey).
//!
//! Every run returns exact [`Counters`] (never sampled). A runner made
//! [`with_telemetry`](Runner::with_telemetry) also feeds a [`Telemetry`]: per task execution, a
//! sampling decision, a latency in its histogram and events into its sink; a runner without
//! it runs step loops that have no telemetry code at all.
//!
//! A failure travels up as an eight-byte `Stop` (node, class, abort), so a small payload's
//! `Result` comes back in registers; its reason waits in the runner's error slot.
//!
//! Recursion: the interpreter recurses once per nesting level, which building bounds at
//! [`MAX_DEPTH`](crate::graph::MAX_DEPTH), plus at most
//! [`MAX_FALLBACK_CHAIN`](crate::graph::MAX_FALLBACK_CHAIN) fallback hops inside a task.
//!
//! Architecture invariant: the interpreter allocates nothing per run once its buffers have
//! grown to the graph's needs (the record arena is presized to `RunnerConfig::max_records`
//! and its reset is O(1); spares and the item stack keep their memory).

mod exec;
mod host;

pub use host::{Fan, Host, Inline, Lane, SharedCache};

use alloc::vec::Vec;
use core::fmt;
use core::mem::MaybeUninit;
use core::slice;

use crate::arena::RunArena;
use crate::cache::FixedCache;
use crate::context::{Context, Frame, Spares};
use crate::graph::{Cancel, CancelFlag, Clock, Graph, NodeId, RunEnv, StepError};
use crate::policy::{ErrorClass, Rng, Usage, UsageBudget, UsageDenied};
use crate::telemetry::{Counter, Counters, EventSink, Histogram, NullSink, Sampler, StepOutcome};

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The root produced an output.
    Succeeded,
    /// A step (or a composite rule) failed and nothing recovered it.
    Failed,
    /// The run was stopped: usage denied or overrun, cancelled, or its deadline passed.
    /// Results so far (records, context, usage) are returned.
    Aborted,
}

/// Why a loop stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoopExit {
    /// The exit predicate held.
    Predicate,
    /// The iteration bound was hit.
    Bound,
}

/// What happened to one task execution (or one loop), written when it ends.
///
/// Laid out (`repr(C)`) so that the record of a plain task that succeeded, written once per
/// step by the interpreter's fast path, is a few wide stores: the latency and the node
/// first, then the usage, then the constant rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct StepRecord {
    /// Ticks from its start to its end (fallback and backoff included).
    pub latency_ticks: u64,
    /// The task (or loop) node.
    pub node: NodeId,
    /// Attempts made (0 when it never ran: breaker open, cache hit, denied, stopped); for a
    /// loop, the iterations done.
    pub attempts: u32,
    /// Usage reported by its attempts.
    pub usage: Usage,
    /// Ticks of backoff between attempts.
    pub backoff_ticks: u64,
    /// How it ended.
    pub outcome: StepOutcome,
    /// Whether the output came from the cache.
    pub cache_hit: bool,
    /// Whether the fallback ran.
    pub fallback_used: bool,
    /// Class of the last error met, if any.
    pub error_class: Option<ErrorClass>,
    /// For a loop: why it stopped.
    pub loop_exit: Option<LoopExit>,
}

impl StepRecord {
    /// The record of a plain task that succeeded in its one attempt.
    #[inline(always)]
    pub(crate) fn plain(node: u32, latency_ticks: u64, usage: Usage) -> Self {
        Self {
            node: NodeId(node),
            outcome: StepOutcome::Succeeded,
            attempts: 1,
            latency_ticks,
            backoff_ticks: 0,
            cache_hit: false,
            fallback_used: false,
            error_class: None,
            usage,
            loop_exit: None,
        }
    }

    #[inline(always)]
    pub(crate) fn new(node: u32) -> Self {
        Self {
            node: NodeId(node),
            outcome: StepOutcome::Succeeded,
            attempts: 0,
            latency_ticks: 0,
            backoff_ticks: 0,
            cache_hit: false,
            fallback_used: false,
            error_class: None,
            usage: Usage::ZERO,
            loop_exit: None,
        }
    }
}

/// Why a run failed or aborted. New reasons may come (`#[non_exhaustive]`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A step's error that recovery did not absorb (its class says which kind).
    Step(StepError),
    /// The usage budget denied a step's estimate.
    UsageDenied {
        /// The step's estimate.
        requested: Usage,
        /// The limit in the way, its value and what the run would have reached.
        denied: UsageDenied,
    },
    /// The usage this step reported took the budget it ran under (the run's, or in a fan-out
    /// its branch's share) past a limit. The step itself ended (its record says how, its
    /// context writes and its usage stand); the run aborts after it, without its output.
    UsageOverrun {
        /// The usage the step reported.
        reported: Usage,
        /// The limit passed, its value and the usage reached (`wanted`).
        over: UsageDenied,
    },
    /// The run was cancelled before this step.
    Cancelled,
    /// The run's deadline passed before this step.
    DeadlineExceeded,
    /// No arm of a switch matched and it has no default.
    NoArmMatched {
        /// The selector's key.
        key: u64,
    },
    /// A map's split produced more items than the map's bound.
    TooManyItems {
        /// The bound.
        limit: u32,
    },
    /// Two branches changed the same context part under error-on-conflict.
    MergeConflict {
        /// The part.
        part: &'static str,
        /// The later of the two branches (0-based position).
        branch: u32,
    },
    /// A user merge failed.
    MergeFailed(StepError),
    /// Every branch of a parallel node with the ignore strategy failed.
    AllBranchesFailed {
        /// Number of branches.
        branches: u32,
    },
}

impl ErrorKind {
    /// The error class.
    pub fn class(&self) -> ErrorClass {
        match self {
            ErrorKind::Step(e) | ErrorKind::MergeFailed(e) => e.class(),
            ErrorKind::UsageDenied { .. } | ErrorKind::UsageOverrun { .. } => ErrorClass::Usage,
            ErrorKind::Cancelled => ErrorClass::Cancelled,
            ErrorKind::DeadlineExceeded => ErrorClass::Timeout,
            ErrorKind::NoArmMatched { .. }
            | ErrorKind::TooManyItems { .. }
            | ErrorKind::MergeConflict { .. }
            | ErrorKind::AllBranchesFailed { .. } => ErrorClass::Permanent,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Step(e) => write!(f, "{e}"),
            ErrorKind::UsageDenied { requested, denied } => {
                write!(f, "estimate {requested:?} denied: {denied}")
            }
            ErrorKind::UsageOverrun { reported, over } => write!(
                f,
                "reported usage {reported:?} took the budget past {} of {}: usage reached {}",
                over.limit.as_str(),
                over.max,
                over.wanted
            ),
            ErrorKind::Cancelled => f.write_str("run cancelled"),
            ErrorKind::DeadlineExceeded => f.write_str("run deadline passed"),
            ErrorKind::NoArmMatched { key } => write!(f, "no arm for key {key} and no default arm"),
            ErrorKind::TooManyItems { limit } => {
                write!(f, "split produced more than {limit} items")
            }
            ErrorKind::MergeConflict { part, branch } => {
                write!(
                    f,
                    "context part `{part}` changed by branch {branch} and an earlier branch"
                )
            }
            ErrorKind::MergeFailed(e) => write!(f, "user merge failed: {e}"),
            ErrorKind::AllBranchesFailed { branches } => {
                write!(f, "all {branches} branches failed")
            }
        }
    }
}

impl core::error::Error for ErrorKind {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ErrorKind::Step(e) | ErrorKind::MergeFailed(e) => Some(e),
            ErrorKind::UsageDenied { denied, .. } => Some(denied),
            ErrorKind::UsageOverrun { over, .. } => Some(over),
            _ => None,
        }
    }
}

/// A run's error: the step (node) and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunError<'r> {
    /// The node that failed.
    pub node: NodeId,
    /// Its name.
    pub step: &'r str,
    /// Why.
    pub kind: ErrorKind,
}

impl core::error::Error for RunError<'_> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl fmt::Display for RunError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step `{}` (node {}): {}",
            self.step, self.node.0, self.kind
        )
    }
}

/// The interpreter's internal failure: the node, the error class, and whether it aborts the
/// run. Eight bytes, so a `Result<P, Stop>` of a small payload comes back in registers; the
/// full reason ([`ErrorKind`]) waits in the runner's error slot (`Scratch::error`), written
/// when the stop is made. The stop a run ends with is always the last one made: a failure is
/// either returned at once or dropped for good (an ignored branch) before another is made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stop {
    pub(crate) node: u32,
    pub(crate) class: ErrorClass,
    pub(crate) abort: bool,
}

/// What a run returns. Records borrow the runner's arena (valid until its next run, which
/// resets it).
#[derive(Debug)]
pub struct RunResult<'r, P, C> {
    /// The root's output, when the run succeeded.
    pub output: Option<P>,
    /// How the run ended.
    pub outcome: Outcome,
    /// The error, when it did not succeed.
    pub error: Option<RunError<'r>>,
    /// The final context (writes of failed attempts and failed branches excluded).
    pub context: C,
    /// One record per task execution and per loop, in the order they ended.
    pub records: &'r [StepRecord],
    /// Records that did not fit the buffer (`RunnerConfig::max_records`), counted exactly.
    pub records_dropped: u32,
    /// Usage reported by every step of the run.
    pub usage: Usage,
    /// Exact counts of what the run's tasks did (never sampled). Every task record is one
    /// step run and one outcome: `steps_run == succeeded + failed + skipped + aborted`.
    pub counters: Counters,
}

/// Sizes of a runner's reusable scratch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunnerConfig {
    /// Step records kept per run (their room in the runner's arena is allocated when the
    /// runner is built; more are counted in `records_dropped`).
    pub max_records: usize,
    /// Spare context copies kept for reuse.
    pub max_spare_contexts: usize,
    /// Entries of the step-output cache (0: caching off; results are unchanged).
    pub cache_capacity: usize,
    /// Seed of the generator used for backoff jitter.
    pub seed: u64,
    /// Sequences of tasks run in stretches (one loop for consecutive plain and lean policy
    /// tasks), and pure fan-outs (parallel subtrees of plain tasks that do not write the
    /// context) as flat programs when the run has no budget and no telemetry. Off, every
    /// task runs alone, a policy task through the full pipeline, and every fan-out through
    /// context frames and merges: slower, same results.
    pub fast_paths: bool,
    /// Branches of fan-outs read their parent's context until they write it. Off, each gets
    /// an eager copy: slower, same results.
    pub copy_on_write: bool,
    /// Circuit breakers configured on tasks are consulted and learn outcomes. Off, they are
    /// ignored: a step whose breaker is open runs anyway. This one is a policy, not an
    /// optimization: switching it off can change results.
    pub breakers: bool,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self {
            max_records: 1024,
            max_spare_contexts: 16,
            cache_capacity: 64,
            seed: 0x5EED,
            fast_paths: true,
            copy_on_write: true,
            breakers: true,
        }
    }
}

/// Per-run options.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions<'o> {
    /// Tick at which the run stops (checked before each task; steps can poll it).
    pub deadline: Option<u64>,
    /// Cooperative cancellation.
    pub cancel: Option<&'o CancelFlag>,
    /// The run's usage budget (`None`: unlimited).
    pub budget: Option<Usage>,
}

/// The step records of one run: a bounded buffer in the runner's [`RunArena`] (taken
/// afresh after the arena's reset at the start of each run), counting what does not fit.
#[derive(Debug)]
pub(crate) struct Records<'a> {
    /// `..len` are this run's records (initialized); the rest are free slots.
    pub(crate) buf: &'a mut [MaybeUninit<StepRecord>],
    pub(crate) len: usize,
    pub(crate) dropped: u32,
}

impl<'a> Records<'a> {
    /// `max_records` slots from `arena` (presized by the runner, so this never calls the
    /// global allocator). Should the arena refuse (it cannot: its limit is exactly this
    /// request), the buffer is empty and every record is counted as dropped.
    fn new(arena: &'a RunArena, max_records: usize) -> Self {
        let buf = arena
            .try_alloc_uninit_slice(max_records)
            .unwrap_or_default();
        Self {
            buf,
            len: 0,
            dropped: 0,
        }
    }

    #[inline(always)]
    pub(crate) fn push(&mut self, rec: StepRecord) {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                slot.write(rec);
                self.len += 1;
            }
            None => self.dropped = self.dropped.saturating_add(1),
        }
    }

    /// Accounts for `written` records put in the free slots after `len` (in order, each
    /// slot written) and `dropped` that did not fit.
    #[inline(always)]
    pub(crate) fn settle(&mut self, written: usize, dropped: u32) {
        self.len += written;
        debug_assert!(self.len <= self.buf.len());
        self.dropped = self.dropped.saturating_add(dropped);
    }

    fn into_slice(self) -> &'a [StepRecord] {
        let (initialized, _free) = self.buf.split_at_mut(self.len);
        // SAFETY: `buf[..len]` are initialized: `len` grows only in `push` after a slot was
        // written, and in `settle` by the number of free slots the stretch loop wrote in
        // order; `MaybeUninit<StepRecord>` has the layout of `StepRecord`.
        unsafe { slice::from_raw_parts(initialized.as_ptr().cast::<StepRecord>(), self.len) }
    }
}

/// The scratch a run needs, reused run after run.
#[derive(Debug)]
pub(crate) struct Scratch<P, C> {
    pub(crate) spares: Spares<C>,
    pub(crate) items: Vec<P>,
    /// The step-output cache (`None` when `RunnerConfig::cache_capacity` is 0).
    pub(crate) cache: Option<FixedCache<P>>,
    pub(crate) rng: Rng,
    /// Usage sub-budgets of the parallel branches and map items under way (a stack: nested
    /// fan-outs push above and pop theirs before returning).
    pub(crate) shares: Vec<UsageBudget>,
    /// The reason of the last [`Stop`] made.
    pub(crate) error: Option<ErrorKind>,
    /// Record buffers of forked branches, kept for reuse.
    pub(crate) record_bufs: Vec<Vec<StepRecord>>,
    /// Branch lists and cancel flags of forked fan-outs, kept for reuse (a stack: nested
    /// fan-outs take their own).
    pub(crate) fan_bufs: Vec<Vec<host::Lane<P, C>>>,
    pub(crate) flag_bufs: Vec<Vec<CancelFlag>>,
    /// `RunnerConfig::fast_paths`.
    pub(crate) fast_paths: bool,
    /// `RunnerConfig::copy_on_write`.
    pub(crate) copy_on_write: bool,
    /// `RunnerConfig::breakers`.
    pub(crate) breakers: bool,
}

/// Runs graphs on the calling thread, reusing its scratch memory run after run.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, ManualClock};
/// use flujo_core::interp::{Runner, RunnerConfig, RunOptions, Outcome};
///
/// let g = Graph::<u64, ()>::build(|b| {
///     let steps: Vec<_> = (0..100).map(|i| b.task(&format!("s{i}"), |x, _| Ok(x + 1))).collect();
///     b.sequence("chain", &steps)
/// })
/// .unwrap();
/// let mut runner = Runner::new(RunnerConfig::default());
/// let clock = ManualClock::new(0);
/// for _ in 0..3 {
///     let r = runner.run(&g, 0, (), &clock, &RunOptions::default());
///     assert_eq!((r.outcome, r.output, r.records.len()), (Outcome::Succeeded, Some(100), 100));
/// }
/// ```
#[derive(Debug)]
pub struct Runner<P, C, S = NullSink> {
    scratch: Scratch<P, C>,
    /// The per-run arena the step records live in (reset at the start of each run).
    arena: RunArena,
    max_records: usize,
    telemetry: Option<Telemetry<S>>,
}

/// A runner's optional per-step telemetry: events into a sink and a latency histogram, both
/// thinned by a [`Sampler`] (one decision per task execution), and the exact counters of
/// every run summed (never sampled). Breaker transitions and refusals are emitted whatever
/// the sampler says.
///
/// Off (a runner made with [`Runner::new`]), it costs nothing per step: the interpreter picks
/// its step loops without telemetry once per stretch of tasks.
///
/// # Examples
///
/// ```
/// use flujo_core::graph::{Graph, ManualClock};
/// use flujo_core::interp::{Runner, RunnerConfig, RunOptions, Telemetry};
/// use flujo_core::telemetry::{Counter, Sampler, VecSink};
///
/// let g = Graph::<u64, ()>::build(|b| {
///     let a = b.task("a", |x, _| Ok(x + 1));
///     let c = b.task("c", |x, _| Ok(x * 2));
///     b.sequence("s", &[a, c])
/// })
/// .unwrap();
/// let tel = Telemetry::new(VecSink::with_capacity(64), Sampler::always());
/// let mut runner = Runner::with_telemetry(RunnerConfig::default(), tel);
/// let clock = ManualClock::new(0);
/// let r = runner.run(&g, 1, (), &clock, &RunOptions::default());
/// assert_eq!(r.output, Some(4));
/// assert_eq!(r.counters.get(Counter::StepsSucceeded), 2);
/// let tel = runner.telemetry().unwrap();
/// assert_eq!(tel.latency_histogram().count(), 2);
/// assert_eq!(tel.sink().events().len(), 4, "a start and an end per step");
/// ```
#[derive(Debug)]
pub struct Telemetry<S> {
    sink: S,
    sampler: Sampler,
    latency: Histogram,
    /// Latencies not yet in the histogram: `pending` of the value `pending_ticks` (a run of
    /// equal latencies goes in with one `record_n`; flushed when the value changes and when
    /// a run ends, so the histogram is exact whenever it can be read).
    pending_ticks: u64,
    pending: u64,
    counters: Counters,
    /// Whether the current task execution is sampled.
    kept: bool,
    /// Whether the sampler keeps every execution (period 1: its state never changes, so
    /// `begin` need not ask it).
    every: bool,
    /// Paused: runs skip it (no events, no latencies) but its counters still sum them.
    paused: bool,
}

/// A counter sampler's state held in a step loop's locals: what [`Sampler::sample`] would
/// decide, without a call or a store per execution.
///
/// [`Sampler::sample`]: crate::telemetry::Sampler::sample
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sampling {
    countdown: u32,
    period: u32,
    /// Whether the current execution is sampled.
    pub(crate) kept: bool,
}

impl Sampling {
    /// Decides the next execution, as [`Sampler::sample`] does: the first of every `period`
    /// is kept. A sampler that keeps nothing (period 0) never gets here: its telemetry takes
    /// the loops without per-step telemetry.
    ///
    /// [`Sampler::sample`]: crate::telemetry::Sampler::sample
    #[inline(always)]
    pub(crate) fn next(&mut self) -> bool {
        self.kept = crate::telemetry::Sampler::decide(&mut self.countdown, self.period);
        self.kept
    }
}

impl<S: EventSink> Telemetry<S> {
    /// Telemetry into `sink`, keeping the task executions `sampler` picks. Allocates the
    /// histogram (once).
    pub fn new(sink: S, sampler: Sampler) -> Self {
        let every = sampler.period() == 1;
        Self {
            sink,
            sampler,
            latency: Histogram::new(),
            pending_ticks: 0,
            pending: 0,
            counters: Counters::new(),
            kept: false,
            every,
            paused: false,
        }
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably (to drain it).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Latencies (in the caller's ticks) of the sampled task executions.
    pub fn latency_histogram(&self) -> &Histogram {
        &self.latency
    }

    /// The exact counters of every run so far, summed.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Pauses (or resumes) event and latency recording: while paused, runs take the step
    /// loops without telemetry (as a runner without it would), and only the exact counters
    /// are summed. A host that samples whole runs pauses it for the runs it does not keep.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Whether recording is paused.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Events the sink refused because it was full (exact).
    pub fn events_dropped(&self) -> u64 {
        self.sink.dropped()
    }

    /// Starts a task execution: sampled or not.
    #[inline]
    pub(crate) fn begin(&mut self) -> bool {
        self.kept = self.every || self.sampler.sample();
        self.kept
    }

    /// Whether the sampler keeps any execution (its period is not 0).
    #[inline]
    pub(crate) fn samples_any(&self) -> bool {
        self.sampler.period() != 0
    }

    /// Whether the sampler keeps every execution.
    #[inline]
    pub(crate) fn keeps_all(&self) -> bool {
        self.every
    }

    /// When the sampler keeps every execution, marks the executions to come as sampled
    /// and says so: `begin` would decide the same for each, so a loop may skip it.
    #[inline]
    pub(crate) fn keep_all(&mut self) -> bool {
        if self.every {
            self.kept = true;
        }
        self.every
    }

    /// Emits an event of the current task execution, if it is sampled.
    #[inline]
    pub(crate) fn emit(&mut self, step: u32, tick: u64, kind: crate::telemetry::EventKind) {
        if self.kept {
            self.sink
                .emit(crate::telemetry::Event::new(step, tick, kind));
        }
    }

    /// Emits an event whatever the sampler said: breaker transitions and refusals are rare
    /// and each one matters, so a sink sees all of them (while it has room).
    #[cold]
    pub(crate) fn emit_always(&mut self, step: u32, tick: u64, kind: crate::telemetry::EventKind) {
        self.sink
            .emit(crate::telemetry::Event::new(step, tick, kind));
    }

    /// Records the latency of the current task execution, if it is sampled.
    #[inline]
    pub(crate) fn latency(&mut self, ticks: u64) {
        if self.kept {
            if ticks == self.pending_ticks {
                self.pending += 1;
            } else {
                self.new_latency(ticks);
            }
        }
    }

    /// The sampler's state and the current execution's decision, for a loop that samples
    /// in locals (see [`Sampling`]).
    #[inline]
    pub(crate) fn sampling(&self) -> Sampling {
        Sampling {
            countdown: self.sampler.countdown(),
            period: self.sampler.period(),
            kept: self.kept,
        }
    }

    /// Puts back what [`sampling`](Self::sampling) gave, advanced by the loop.
    #[inline]
    pub(crate) fn set_sampling(&mut self, sampling: Sampling) {
        self.sampler.set_countdown(sampling.countdown);
        self.kept = sampling.kept;
    }

    /// A sampled execution starts (its decision taken in a loop's [`Sampling`]).
    #[cold]
    #[inline(never)]
    pub(crate) fn sampled_start(&mut self, step: u32, tick: u64) {
        self.kept = true;
        self.emit(step, tick, crate::telemetry::EventKind::StepStart);
    }

    /// A sampled execution succeeded after `ticks`.
    #[cold]
    #[inline(never)]
    pub(crate) fn sampled_success(&mut self, step: u32, tick: u64, ticks: u64) {
        self.kept = true;
        self.latency(ticks);
        let outcome = crate::telemetry::StepOutcome::Succeeded;
        self.emit(step, tick, crate::telemetry::EventKind::StepEnd { outcome });
    }

    /// The latencies not yet in the histogram: (value, how many).
    #[inline]
    pub(crate) fn pending(&self) -> (u64, u64) {
        (self.pending_ticks, self.pending)
    }

    /// Puts back the latencies not yet in the histogram (what [`pending`](Self::pending)
    /// gave, grown by a loop that kept them in locals).
    #[inline]
    pub(crate) fn set_pending(&mut self, (ticks, n): (u64, u64)) {
        self.pending_ticks = ticks;
        self.pending = n;
    }

    /// A latency unlike `pending` (held by a loop): those go in the histogram, and the new
    /// pending run is this one latency.
    #[cold]
    #[inline(never)]
    pub(crate) fn swap_pending(&mut self, pending: (u64, u64), ticks: u64) -> (u64, u64) {
        self.set_pending(pending);
        self.new_latency(ticks);
        self.pending()
    }

    /// A latency unlike the pending ones: those go in the histogram, this one waits.
    /// Out of line, so the step loops stay small.
    #[inline(never)]
    fn new_latency(&mut self, ticks: u64) {
        self.flush_latency();
        self.pending_ticks = ticks;
        self.pending = 1;
    }

    /// Puts the pending latencies in the histogram.
    #[inline]
    fn flush_latency(&mut self) {
        if self.pending != 0 {
            self.latency.record_n(self.pending_ticks, self.pending);
            self.pending = 0;
        }
    }
}

impl<P: Clone, C: Context> Runner<P, C> {
    /// A runner with scratch sized by `config` (records and spares presized), telemetry off.
    pub fn new(config: RunnerConfig) -> Self {
        Self::build(config, None)
    }
}

impl<P: Clone, C: Context, S: EventSink> Runner<P, C, S> {
    /// A runner with per-step telemetry (see [`Telemetry`]).
    pub fn with_telemetry(config: RunnerConfig, telemetry: Telemetry<S>) -> Self {
        Self::build(config, Some(telemetry))
    }

    /// A runner with per-step telemetry when `telemetry` is given, else without (a host
    /// that picks at run time keeps one runner type either way).
    pub fn build(config: RunnerConfig, telemetry: Option<Telemetry<S>>) -> Self {
        // Exactly the records' bytes, allocated up front: a run never grows the arena.
        let bytes = config
            .max_records
            .checked_mul(core::mem::size_of::<StepRecord>())
            .expect("max_records fits in memory");
        let arena =
            RunArena::with_capacity_and_limit(bytes, bytes).expect("the record arena is allocated");
        Self {
            arena,
            max_records: config.max_records,
            scratch: Scratch {
                spares: Spares::new(config.max_spare_contexts),
                items: Vec::new(),
                cache: (config.cache_capacity > 0).then(|| {
                    FixedCache::new(config.cache_capacity).expect("a valid cache capacity")
                }),
                rng: Rng::new(config.seed),
                shares: Vec::new(),
                error: None,
                record_bufs: Vec::new(),
                fan_bufs: Vec::new(),
                flag_bufs: Vec::new(),
                fast_paths: config.fast_paths,
                copy_on_write: config.copy_on_write,
                breakers: config.breakers,
            },
            telemetry,
        }
    }

    /// Runs `graph` on `input` with context `ctx`, reading time from `clock`, on the calling
    /// thread.
    pub fn run<'r, K: Clock>(
        &'r mut self,
        graph: &'r Graph<P, C>,
        input: P,
        ctx: C,
        clock: &K,
        opts: &RunOptions<'_>,
    ) -> RunResult<'r, P, C> {
        self.run_in(graph, input, ctx, clock, opts, &Inline)
    }

    /// Runs `graph` like [`run`](Self::run), in `host`: the host guards every attempt, may
    /// fork fan-outs onto other threads and may share a result cache (see [`Host`]). The
    /// results are the ones [`run`](Self::run) gives, but for the order of side effects of
    /// forked branches and the steps of siblings a failure cancelled.
    pub fn run_in<'r, K: Clock, H: Host<P, C, K>>(
        &'r mut self,
        graph: &'r Graph<P, C>,
        input: P,
        ctx: C,
        clock: &K,
        opts: &RunOptions<'_>,
        host: &H,
    ) -> RunResult<'r, P, C> {
        self.arena.reset();
        let records = Records::new(&self.arena, self.max_records);
        let s = &mut self.scratch;
        s.error = None;
        debug_assert!(
            s.items.is_empty(),
            "map items are popped before a map returns"
        );
        s.items.clear();
        let mut frame = Frame::Owned(ctx);
        let cancel = opts.cancel.map(|flag| Cancel { flag, up: None });
        let mut ex = exec::Exec {
            g: graph,
            clock,
            env: RunEnv::new(clock, opts.deadline.unwrap_or(u64::MAX), cancel.as_ref()),
            budget: opts
                .budget
                .map_or(UsageBudget::unlimited(), UsageBudget::with_max),
            limited: opts.budget.is_some(),
            usage: Usage::ZERO,
            counters: Counters::new(),
            tel: self.telemetry.as_mut().filter(|t| !t.paused),
            s,
            records,
            host,
        };
        let result = ex.node(graph.root, input, &mut frame);
        let (usage, counters, records) = (ex.usage, ex.counters, ex.records);
        debug_assert_eq!(
            counters.get(Counter::StepsRun),
            [
                Counter::StepsSucceeded,
                Counter::StepsFailed,
                Counter::StepsSkipped,
                Counter::StepsAborted
            ]
            .iter()
            .map(|&c| counters.get(c))
            .sum::<u64>(),
            "every step run has one outcome"
        );
        if let Some(tel) = &mut self.telemetry {
            tel.flush_latency();
            tel.counters.add(&counters);
        }
        let context = match frame {
            Frame::Owned(c) => c,
            Frame::Borrowed(_) | Frame::Copied(_) => unreachable!("the top frame is owned"),
        };
        let s = &mut self.scratch;
        let (output, outcome, error) = match result {
            Ok(out) => (Some(out), Outcome::Succeeded, None),
            Err(stop) => {
                let kind = s.error.take().expect("every stop leaves its reason");
                debug_assert_eq!(kind.class(), stop.class, "the reason is the stop's");
                let error = RunError {
                    node: NodeId(stop.node),
                    step: graph.name(NodeId(stop.node)),
                    kind,
                };
                let outcome = if stop.abort {
                    Outcome::Aborted
                } else {
                    Outcome::Failed
                };
                (None, outcome, Some(error))
            }
        };
        RunResult {
            output,
            outcome,
            error,
            context,
            records_dropped: records.dropped,
            records: records.into_slice(),
            usage,
            counters,
        }
    }

    /// The arena the step records of a run live in (reset at the start of each run).
    pub fn arena(&self) -> &RunArena {
        &self.arena
    }

    /// Entries in the runner's step cache.
    pub fn cached_entries(&self) -> usize {
        self.scratch.cache.as_ref().map_or(0, FixedCache::len)
    }

    /// The runner's telemetry, when it was made with [`with_telemetry`](Self::with_telemetry).
    pub fn telemetry(&self) -> Option<&Telemetry<S>> {
        self.telemetry.as_ref()
    }

    /// The runner's telemetry, mutably (to drain its sink).
    pub fn telemetry_mut(&mut self) -> Option<&mut Telemetry<S>> {
        self.telemetry.as_mut()
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
