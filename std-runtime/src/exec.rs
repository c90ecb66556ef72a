//! The executor: runs frozen graphs inline on the calling thread (fan-outs forked on a rayon
//! pool above the inline cutoff) or through prioritized, admission-controlled submission.
//!
//! Submissions are run by *dispatchers*: rayon jobs, at most one per pool thread, that loop
//! over the priority queues until they are empty ([`Executor::submit`]); tickets come from a
//! pool of recycled cells ([`Cells`]). When a dispatcher starts and when it may stop is one
//! atomic word's protocol ([`dispatch::Dispatchers`], loom-checked): a submission either takes
//! a free place and starts a dispatcher, or marks work queued, which the next dispatcher to
//! leave sees and looks again.
//!
//! Everything a run does is the core interpreter's ([`Runner::run_in`]); the executor lends it
//! a [`Host`](flujo_core::interp::Host) that catches panics per attempt, forks fan-outs, and
//! shares the result cache, and it keeps what the runs did (exact counts, sampled latencies
//! and spans) per pooled runner for the [`Report`] and the trace.
//!
//! [`Runner::run_in`]: flujo_core::interp::Runner::run_in

mod builder;
mod degrade;
mod dispatch;
mod host;
mod runner_pool;
#[cfg(feature = "prometheus")]
mod scrape;
mod select;
mod shutdown;
mod submit;
mod tally;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use flujo_core::context::Context;
use flujo_core::graph::{CancelFlag, Clock, Graph, NodeId};
use flujo_core::interp::{ErrorKind, Outcome, RunOptions, RunResult, SharedCache};
use flujo_core::policy::Usage;
use flujo_core::telemetry::{Counter, Counters};

use crate::admission::{AdaptiveLimit, Slip};
use crate::cache::ResultCache;
use crate::clock::RuntimeClock;
use crate::config::{CacheConfig, ConfigCell, ConfigError, OptimizationConfig, TelemetryLevel};
use crate::lend::{Lend, Lending, WaitCounts};
use crate::monitor::resources::ProcessSampler;
use crate::monitor::Monitor;
use crate::queue::PriorityQueues;
use crate::report::{AdmissionStats, BreakerRow, MemoryStats, PoolStats, Report, WaitStats};
use crate::ticket::{Cells, Completer};
use crate::trace::TraceWriter;
use crate::Priority;
use crate::Refusal;

use crate::room::Room;
pub use crate::room::WAITERS_MAX;
use crate::sync::{current_cpu, same_cpu, Padded};
pub use builder::ExecutorBuilder;
use dispatch::Dispatchers;
use host::{panic_message, CacheBridge, RtHost};
use runner_pool::{lock, merge_breaker, RunnerPool, Seen};
use shutdown::Running;
pub use shutdown::{Drain, ShutdownReport, ShutdownSpec};
pub use submit::{SubmitFuture, SubmitSpec};
use tally::SeenBreaker;

/// Per-run options of [`Executor::run_with`].
///
/// Built from `RunSpec::default()` and its setters, so a later option does not break the
/// caller:
///
/// ```
/// # use std::time::Duration;
/// # use flujo_runtime::{flujo_core::graph::CancelFlag, RunSpec};
/// let cancel = CancelFlag::new();
/// let spec = RunSpec::default().deadline(Duration::from_millis(5)).cancel(&cancel);
/// assert_eq!(spec.deadline, Some(Duration::from_millis(5)));
/// ```
#[derive(Clone, Copy, Debug, Default)]
#[non_exhaustive]
pub struct RunSpec<'a> {
    /// The run stops (aborted, `DeadlineExceeded`) before any step that would start after
    /// this much time, as the executor's clock reads it; steps can poll it through
    /// `StepCx::should_stop`. Any `Duration` is accepted: one that reaches past what the
    /// clock can represent (about 584 years) is no deadline.
    pub deadline: Option<Duration>,
    /// Cooperative cancellation.
    pub cancel: Option<&'a CancelFlag>,
    /// The run's usage budget.
    pub budget: Option<Usage>,
}

impl<'a> RunSpec<'a> {
    /// Sets [`deadline`](Self::deadline).
    #[must_use]
    pub fn deadline(mut self, after: Duration) -> Self {
        self.deadline = Some(after);
        self
    }

    /// Sets [`cancel`](Self::cancel).
    #[must_use]
    pub fn cancel(mut self, flag: &'a CancelFlag) -> Self {
        self.cancel = Some(flag);
        self
    }

    /// Sets [`budget`](Self::budget).
    #[must_use]
    pub fn budget(mut self, budget: Usage) -> Self {
        self.budget = Some(budget);
        self
    }
}

/// A run's failure, owned (the core's `RunError` borrows the graph).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RunFailure {
    /// The node that failed.
    pub node: NodeId,
    /// Its name.
    pub step: String,
    /// Why.
    pub kind: ErrorKind,
}

impl fmt::Display for RunFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "step `{}` (node {}): {}",
            self.step, self.node.0, self.kind
        )
    }
}

impl std::error::Error for RunFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

/// What a finished run gives back (its step records are read through
/// [`Executor::run_with`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct Completed<P, C> {
    /// The output, when the run succeeded.
    pub output: Option<P>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it did not succeed.
    pub error: Option<RunFailure>,
    /// The final context.
    pub context: C,
    /// Usage reported by its steps.
    pub usage: Usage,
    /// Exact counts of what its tasks did.
    pub counters: Counters,
    /// Step records written.
    pub records: usize,
    /// Records that did not fit (`OptimizationConfig::max_records`).
    pub records_dropped: u32,
}

/// The owned summary of a run, for [`Executor::run_with`]:
/// `ex.run_with(&g, input, ctx, &spec, |r| Completed::from(r))`.
impl<P, C> From<RunResult<'_, P, C>> for Completed<P, C> {
    fn from(r: RunResult<'_, P, C>) -> Self {
        Self::of(r)
    }
}

impl<P, C> Completed<P, C> {
    fn of(r: RunResult<'_, P, C>) -> Self {
        Self {
            output: r.output,
            outcome: r.outcome,
            error: r.error.map(|e| RunFailure {
                node: e.node,
                step: e.step.to_string(),
                kind: e.kind,
            }),
            context: r.context,
            usage: r.usage,
            counters: r.counters,
            records: r.records.len(),
            records_dropped: r.records_dropped,
        }
    }
}

/// A run that panicked outside any step (in a reducer, selector, splitter or merge, which
/// the per-attempt guard does not cover). The executor stays healthy; the run's input and
/// context are lost with the unwinding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panicked {
    /// The panic's message.
    pub message: String,
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "run panicked outside a step: {}", self.message)
    }
}

impl std::error::Error for Panicked {}

/// A submission handed back, with its input and context.
#[derive(Debug)]
pub struct Rejected<P, C> {
    /// Why.
    pub reason: Refusal,
    /// The input, untouched.
    pub input: P,
    /// The context, untouched.
    pub context: C,
}

impl<P, C> fmt::Display for Rejected<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "submission handed back: {}", self.reason)
    }
}

impl<P: fmt::Debug, C: fmt::Debug> std::error::Error for Rejected<P, C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.reason)
    }
}

/// How a submitted run ended, as its [`Ticket`](crate::ticket::Ticket) gives it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Finished<P, C> {
    /// It ran (successfully or not: see `Completed::outcome`).
    Ran(Completed<P, C>),
    /// It was handed back before it started (shutdown).
    HandedBack(Rejected<P, C>),
    /// It panicked outside a step.
    Panicked(Panicked),
}

/// The executor's construction errors.
#[derive(Debug)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid.
    Config(ConfigError),
    /// The rayon pool could not be built.
    Pool(rayon::ThreadPoolBuildError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::Config(e) => write!(f, "{e}"),
            BuildError::Pool(e) => write!(f, "rayon pool: {e}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::Config(e) => Some(e),
            BuildError::Pool(e) => Some(e),
        }
    }
}

/// The most free ticket cells an executor keeps for reuse (see [`Cells`]): a burst of up to
/// this many tickets alive at once is served without allocating once warm.
const TICKET_CELLS_KEPT: usize = 4096;

thread_local! {
    /// Whether this thread is inside a dispatcher (see [`Inner::dispatch`]).
    static DISPATCHING: Cell<bool> = const { Cell::new(false) };
}

struct Job<P, C> {
    graph: Arc<Graph<P, C>>,
    input: P,
    context: C,
    /// The run's deadline tick.
    deadline: Option<u64>,
    budget: Option<Usage>,
    completer: Completer<Finished<P, C>>,
    /// Its permit, attached back to the executor's limit when the submission ends: by its
    /// run ([`Inner::run_job`]), a hand-back, or a refusal after it was taken.
    permit: Option<Slip>,
    /// The tick it was submitted at.
    submitted: u64,
    /// The span current at submission (feature `tracing`).
    #[cfg(feature = "tracing")]
    parent: crate::tracing_spans::Parent,
}

struct Inner<P, C> {
    pool: rayon::ThreadPool,
    config: ConfigCell,
    runners: RunnerPool<P, C>,
    /// The shared result cache (built even when switched off, so switching it on at run
    /// time finds it; sized by the configuration at construction and on `reconfigure`).
    cache: ResultCache<P>,
    /// Every decision's time and every measured latency (see [`crate::clock`]).
    clock: RuntimeClock,
    /// When the executor was made, in real time (the report's wall time and throughput).
    started: Instant,
    queues: PriorityQueues<Job<P, C>>,
    /// Ticket cells reused across submissions.
    cells: Arc<Cells<Finished<P, C>>>,
    /// The dispatchers' places (each a rayon job looping over the queues), at most one per
    /// pool thread, and whether work was queued while all were taken (see [`dispatch`]).
    dispatchers: Dispatchers,
    limit: Arc<AdaptiveLimit>,
    admission: bool,
    closed: AtomicBool,
    /// The cancel flags of the submitted runs under way (a time-limited shutdown raises them).
    running: Running,
    /// Set when a time-limited shutdown passed its limit: a job popped after it is handed
    /// back, and one that registers after it cancels itself.
    halting: AtomicBool,
    /// Submissions admitted and not yet ended (queued or running), and the submissions
    /// waiting for room (see [`crate::room`]); with a condition to wait for none pending,
    /// whose lock holds how many threads wait on it (so the last submission to end signals
    /// it only when someone waits: a `Condvar` signal is a system call, even with no waiter).
    room: Room,
    idle: (Mutex<usize>, Condvar),
    /// Calls to `submit`/`submit_with`/`submit_async`, accepted or refused, and `try_run` calls
    /// refused: counted first thing in the
    /// call, so before anything that ends the submission (`Relaxed`: each ending count is
    /// bumped with `Release` after it, and the report reads those with `Acquire` first).
    submitted: Padded<AtomicU64>,
    /// `try_run` calls under way (the `refuse_runs` degradation action bounds them).
    trying: AtomicU64,
    /// Submissions that ran to their end, with an outcome or panicked (the shutdown
    /// report's `finished`).
    finished: Padded<AtomicU64>,
    /// Submissions that panicked outside a step (`Release`, see `submitted`).
    panicked_jobs: AtomicU64,
    /// Inline runs that panicked outside a step (their completed ones are counted by
    /// their pooled runner).
    panicked_inline: AtomicU64,
    /// Submissions handed back at shutdown (`Release`, see `submitted`).
    handed_back: AtomicU64,
    /// Refusals, one count per reason: queue full, over the limit, shutting down (the order
    /// of [`Refusal`] and of the report's `rejected_*` fields; `Release`, see `submitted`).
    rejected: [AtomicU64; 4],
    /// The lowest and highest concurrency limit seen (the report's admission readings).
    limit_seen: [AtomicU64; 2],
    /// How the runs' waits went: lent to queued runs or held (see [`crate::lend`]).
    waits: WaitCounts,
    /// Windows, alert rules and detectors (see [`crate::monitor`]).
    monitor: Monitor,
    /// The health and the degradation actions in force.
    degrade: degrade::Degrade,
    /// The process readings of the reports (each report's CPU utilisation is since the last).
    process: Mutex<ProcessSampler>,
}

impl<P, C> Lend for Inner<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    fn run_one(&self, at_least: Priority) -> bool {
        match self.queues.pop_at_least(at_least) {
            Some((job, priority)) => {
                self.run_job(job, priority);
                true
            }
            None => false,
        }
    }

    fn waits(&self) -> &WaitCounts {
        &self.waits
    }
}

/// Runs graphs on a rayon pool with the configured optimizations (how: `docs/runtime.md`).
///
/// # Examples
///
/// ```
/// use flujo_core::graph::Graph;
/// use flujo_core::interp::Outcome;
/// use flujo_runtime::config::OptimizationConfig;
/// use flujo_runtime::{Executor, Priority};
///
/// let g = Graph::<u64, ()>::build(|b| {
///     let a = b.task("a", |x, _| Ok(x + 1));
///     let c = b.task("c", |x, _| Ok(x * 2));
///     let both = b.parallel("both", &[a, c], |x, y| x + y, Default::default());
///     let d = b.task("d", |x, _| Ok(x - 1));
///     b.sequence("s", &[both, d])
/// })
/// .unwrap();
/// let ex = Executor::new(OptimizationConfig::latency()).unwrap();
/// let done = ex.run(&g, 10, ()).unwrap();
/// assert_eq!((done.outcome, done.output), (Outcome::Succeeded, Some(11 + 20 - 1)));
///
/// let g = std::sync::Arc::new(g);
/// let ticket = ex.submit(&g, 1, (), Priority::High).ok().unwrap();
/// match ticket.wait().unwrap() {
///     flujo_runtime::Finished::Ran(done) => assert_eq!(done.output, Some(2 + 2 - 1)),
///     other => panic!("{other:?}"),
/// }
/// ```
pub struct Executor<P, C> {
    inner: Arc<Inner<P, C>>,
}

impl<P, C> fmt::Debug for Executor<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("threads", &self.inner.pool.current_num_threads())
            .field("limit", &self.inner.limit.limit())
            .field("pending", &self.inner.room.pending())
            .finish_non_exhaustive()
    }
}

/// The executor's result cache: sized, timed and weighed by `c`, on the executor's `clock`
/// (expiry and waits read it), weighing outputs with `weigher` (default `size_of::<P>()`).
fn result_cache<P: Clone + Send + Sync>(
    c: &CacheConfig,
    clock: &RuntimeClock,
    weigher: Option<crate::cache::Weigher<P>>,
) -> ResultCache<P> {
    let mut b = ResultCache::builder(c.max_entries.max(1), c.max_bytes.max(1))
        .shards(c.shards.clamp(1, c.max_entries.max(1)))
        .clock(clock.clone());
    if let Some(ttl) = c.ttl {
        b = b.ttl(ttl);
    }
    if let Some(timeout) = c.flight_timeout {
        b = b.flight_timeout(timeout);
    }
    if let Some(weigher) = weigher {
        b = b.boxed_weigher(weigher);
    }
    b.build()
}

impl<P, C> Executor<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// An executor with its own rayon pool of `config.workers` threads, on the monotonic
    /// clock. [`Executor::builder`] sets the rest (a pool of the host's, a clock).
    pub fn new(config: OptimizationConfig) -> Result<Self, BuildError> {
        Self::builder(config).build()
    }

    /// A builder of an executor of `config`.
    pub fn builder(config: OptimizationConfig) -> ExecutorBuilder<P, C> {
        ExecutorBuilder::new(config)
    }

    fn build(
        config: OptimizationConfig,
        pool: rayon::ThreadPool,
        clock: RuntimeClock,
        weigher: Option<crate::cache::Weigher<P>>,
        on_alert: Option<crate::monitor::OnAlert>,
        on_health: Option<degrade::OnHealth>,
        on_selection: Option<select::OnSelection>,
    ) -> Result<Self, BuildError> {
        let limit = AdaptiveLimit::new(config.adaptive_concurrency).map_err(|e| {
            BuildError::Config(ConfigError::Invalid {
                field: e.config_path(),
                rule: e.to_string(),
            })
        })?;
        let queues = PriorityQueues::new(config.queues).map_err(BuildError::Config)?;
        let admission = config.adaptive_concurrency.enabled;
        let cache = result_cache(&config.result_cache, &clock, weigher);
        let monitor = Monitor::new(&config.monitor, on_alert);
        let degrade = degrade::Degrade::new(&config, on_health, on_selection);
        let cell = ConfigCell::new(config).map_err(BuildError::Config)?;
        let (snapshot, generation) = cell.load_with_generation();
        let initial = u64::from(limit.limit());
        let dispatchers = pool.current_num_threads().max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                cells: Cells::new(TICKET_CELLS_KEPT),
                dispatchers: Dispatchers::new(dispatchers),
                runners: RunnerPool::new(snapshot, generation, dispatchers),
                cache,
                config: cell,
                clock,
                started: Instant::now(),
                queues,
                limit: Arc::new(limit),
                admission,
                closed: AtomicBool::new(false),
                running: Running::new(dispatchers),
                halting: AtomicBool::new(false),
                room: Room::new(),
                idle: (Mutex::new(0), Condvar::new()),
                submitted: Padded(AtomicU64::new(0)),
                trying: AtomicU64::new(0),
                finished: Padded(AtomicU64::new(0)),
                panicked_jobs: AtomicU64::new(0),
                panicked_inline: AtomicU64::new(0),
                handed_back: AtomicU64::new(0),
                rejected: Default::default(),
                limit_seen: [AtomicU64::new(initial), AtomicU64::new(initial)],
                waits: WaitCounts::default(),
                monitor,
                degrade,
                process: Mutex::new(ProcessSampler::new()),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<OptimizationConfig> {
        self.inner.config.load()
    }

    /// Replaces the configuration (validated first). Runs already started keep the one they
    /// began with; every later run sees the new one whole. The pool size, queue capacities
    /// and admission algorithm are fixed at construction; the admission bounds follow.
    pub fn reconfigure(&self, config: OptimizationConfig) -> Result<u64, ConfigError> {
        let (min, max) = config.adaptive_concurrency.bounds();
        config.validate()?;
        self.inner
            .limit
            .set_bounds(min, max)
            .map_err(|e| ConfigError::Invalid {
                field: e.config_path(),
                rule: e.to_string(),
            })?;
        let (entries, bytes) = (
            config.result_cache.max_entries,
            config.result_cache.max_bytes,
        );
        self.inner.monitor.reconfigure(&config.monitor);
        let generation = self.inner.config.store(config)?;
        self.inner.cache.set_capacity(entries.max(1), bytes.max(1));
        let (snapshot, generation) = (self.inner.config.load(), generation);
        self.inner.runners.reconfigure(snapshot, generation);
        self.inner.reconfigure_health(&self.inner.config.load());
        // The limit may have grown: a waiting submission looks, and wakes the next if it got in.
        if self.inner.room.has_waiters() {
            self.inner.room.wake_one();
        }
        Ok(generation)
    }

    /// The clock the executor reads.
    pub fn clock(&self) -> &RuntimeClock {
        &self.inner.clock
    }

    /// The current concurrency limit (admitted submissions not yet ended).
    pub fn concurrency_limit(&self) -> u32 {
        self.inner.limit.limit()
    }

    /// Threads of the rayon pool.
    pub fn threads(&self) -> usize {
        self.inner.pool.current_num_threads()
    }

    /// Runs `graph` on the calling thread (fan-outs above the inline cutoff fork on the
    /// pool) and returns what it did.
    pub fn run(
        &self,
        graph: &Graph<P, C>,
        input: P,
        context: C,
    ) -> Result<Completed<P, C>, Panicked> {
        self.run_with(graph, input, context, &RunSpec::default(), Completed::of)
    }

    /// [`run`](Self::run) for a host that opts in to being refused under pressure: while the
    /// degradation action `refuse_runs { above }` is in force (see
    /// [`Action::RefuseRuns`](crate::config::Action::RefuseRuns)), a call that would make more
    /// than `above` `try_run` calls under way at once is refused with
    /// [`Refusal::Shed`](crate::Refusal::Shed), its input and context handed back, and counted
    /// with the shed submissions (`report.runs.rejected_shed`; it counts as submitted too).
    /// Otherwise it is `run`. `run` itself is never refused.
    ///
    /// ```
    /// use flujo_runtime::flujo_core::graph::Graph;
    /// use flujo_runtime::{config::OptimizationConfig, Executor, TryRunError};
    ///
    /// let exec = Executor::<u64, ()>::new(OptimizationConfig::latency()).unwrap();
    /// let g = Graph::<u64, ()>::build(|b| b.task("inc", |x, _| Ok(x + 1))).unwrap();
    /// match exec.try_run(&g, 1, ()) {
    ///     Ok(done) => assert_eq!(done.output, Some(2)),
    ///     Err(TryRunError::Refused(back)) => drop(back.input), // degraded: try later
    ///     Err(e) => panic!("{e}"),
    /// }
    /// ```
    pub fn try_run(
        &self,
        graph: &Graph<P, C>,
        input: P,
        context: C,
    ) -> Result<Completed<P, C>, TryRunError<P, C>> {
        let inner = &self.inner;
        let under_way = inner.trying.fetch_add(1, Ordering::AcqRel) + 1;
        let _ending = Decrement(&inner.trying);
        if under_way > u64::from(inner.degrade.runs_above()) {
            // Counted as a submission refused, so the report's identity holds.
            inner.submitted.fetch_add(1, Ordering::Relaxed);
            inner.rejected[Refusal::Shed.index()].fetch_add(1, Ordering::Release);
            return Err(TryRunError::Refused(Rejected {
                reason: Refusal::Shed,
                input,
                context,
            }));
        }
        self.run(graph, input, context)
            .map_err(TryRunError::Panicked)
    }

    /// Runs `graph` with `spec`, handing the core's [`RunResult`] (step records included,
    /// borrowed from the pooled runner) to `f`. If `f` panics, this returns `Err(Panicked)`,
    /// but the run had ended: the report counts it as completed, with its outcome.
    pub fn run_with<R>(
        &self,
        graph: &Graph<P, C>,
        input: P,
        context: C,
        spec: &RunSpec<'_>,
        f: impl FnOnce(RunResult<'_, P, C>) -> R,
    ) -> Result<R, Panicked> {
        let deadline = spec
            .deadline
            .and_then(|d| self.inner.clock.deadline_after(d));
        let queued = None; // inline
        self.inner
            .run(
                graph,
                input,
                context,
                deadline,
                spec.cancel,
                spec.budget,
                queued,
                f,
            )
            .map(|(out, _)| out)
    }

    /// What the runs did so far: exact counts, sampled latencies, pool, admission and
    /// telemetry readings.
    ///
    /// Every submission is in it once (see [`Runs`](crate::report::Runs) for the identity,
    /// which holds in every report); a run under way is counted when it ends. It costs one
    /// short lock per pooled runner (O(runners)) and never waits for a running step: a run holds
    /// what the report reads only to add to it at its end. Its [`memory`](Report::memory)
    /// figures are counted then, from the engine's structures, plus one process reading
    /// ([`monitor::resources`](crate::monitor::resources): a read of `/proc/self/stat`, about
    /// 10 µs, and the cgroup limit at most once a second).
    pub fn report(&self) -> Report {
        self.inner.report()
    }

    /// The monitor's windows (by default the last 1 s, 10 s and 60 s), ending with the last
    /// bucket the executor's clock has closed; closes the buckets due first. Per window: every
    /// run, each graph and each step, with exact counts, rates and error rates by class, and
    /// latency and queue-wait quantiles with the samples they come from (see
    /// [`crate::monitor`]). Empty when the monitor is off or no bucket has closed yet.
    ///
    /// ```
    /// use std::time::Duration;
    /// use flujo_runtime::flujo_core::graph::{Graph, ManualClock};
    /// use flujo_runtime::{config::OptimizationConfig, Executor};
    ///
    /// let clock = ManualClock::new(0);
    /// let exec = Executor::<u64, ()>::builder(OptimizationConfig::latency())
    ///     .clock(clock.clone())
    ///     .build()
    ///     .unwrap();
    /// let g = Graph::<u64, ()>::build(|b| b.task("double", |x, _| Ok(x * 2))).unwrap();
    /// for i in 0..5 {
    ///     exec.run(&g, i, ()).unwrap();
    /// }
    /// clock.advance(1_000_000_000); // one second: the first bucket closes
    /// let w = exec.windows();
    /// assert_eq!(w.windows[0].total.ended, 5);
    /// assert_eq!(w.windows[0].steps[0].0, "double");
    /// assert_eq!(w.windows[0].steps[0].1.ended, 5);
    /// ```
    pub fn windows(&self) -> crate::monitor::Windows {
        self.inner.poll_monitor(true);
        let mut windows = self.inner.monitor.windows();
        let mut seen: Vec<SeenBreaker> = Vec::new();
        self.inner.runners.each_stats(|_, stats| {
            for b in stats.tallies.breakers() {
                merge_breaker(&mut seen, b);
            }
        });
        windows.breakers = seen
            .iter()
            .map(|b| (b.step.clone(), b.breaker.state().as_str().to_string()))
            .collect();
        windows
    }

    /// The monitor's bottleneck query: the `n` rows of largest critical-path share of the
    /// sampled runs so far (a step, a fan-out, the queue or the run overhead; see
    /// [`BottleneckRow`](crate::report::BottleneckRow)), as in the report's `bottlenecks`.
    /// Costs what a report costs.
    ///
    /// ```
    /// use flujo_runtime::flujo_core::graph::Graph;
    /// use flujo_runtime::{config::OptimizationConfig, Executor};
    ///
    /// let mut cfg = OptimizationConfig::latency();
    /// cfg.telemetry.run_sample_period = 1;
    /// let exec = Executor::<u64, ()>::new(cfg).unwrap();
    /// let g = Graph::<u64, ()>::build(|b| b.task("only", |x, _| Ok(x))).unwrap();
    /// exec.run(&g, 1, ()).unwrap();
    /// let top = exec.bottlenecks(1);
    /// assert_eq!(top.len(), 1);
    /// assert!(top[0].share > 0.0);
    /// ```
    pub fn bottlenecks(&self, n: usize) -> Vec<crate::report::BottleneckRow> {
        let mut top = Vec::new();
        self.inner
            .report_with(|collected| top = collected.top_bottlenecks(n));
        top
    }

    /// Pins the change-point detector's baselines of `step` (of every step the monitor watches
    /// when `None`) at what they learned so far: from now on a shift is measured against them
    /// and keeps being reported until the step comes back (see [`crate::monitor::detect`]).
    /// Returns how many steps were pinned.
    pub fn pin_baselines(&self, step: Option<&str>) -> usize {
        self.inner.poll_monitor(true);
        self.inner.monitor.pin(step)
    }

    /// The executor's health now (see
    /// [`DegradationConfig`](crate::config::DegradationConfig)); closes the monitor's buckets
    /// due first, so a move they call for is made.
    pub fn health(&self) -> crate::monitor::health::Health {
        self.inner.poll_monitor(true);
        self.inner
            .degrade
            .stats(&self.inner.config.load().inline_cutoff)
            .health
    }

    /// Closes the monitor's buckets that the clock has passed and evaluates the alert rules on
    /// them; returns the alert events this raised (also given to the
    /// [`on_alert`](ExecutorBuilder::on_alert) callback). Runs' ends and reads do this on their
    /// own; a host that wants alerts while nothing runs calls it on a timer.
    pub fn poll_monitor(&self) -> Vec<crate::monitor::AlertEvent> {
        self.inner.poll_monitor(true)
    }

    /// Writes the sampled spans (telemetry level `events`) as Chrome trace-event JSON,
    /// which Perfetto and `chrome://tracing` open.
    pub fn write_trace(&self, w: impl io::Write) -> io::Result<()> {
        let mut trace = TraceWriter::new(1 << 20);
        trace.process_name("flujo");
        self.inner.runners.each_stats(|id, w| {
            trace.thread_name(id, format!("flujo runner {id}"));
            for s in w.trace.spans() {
                trace.span(s.clone());
            }
            for i in w.trace.instants() {
                trace.instant(i.clone());
            }
        });
        // The monitor's alerts and health moves, as instant events on a thread of their own.
        self.inner.poll_monitor(true);
        let alerts = self.inner.monitor.alert_stats().events;
        let health = self
            .inner
            .degrade
            .stats(&self.inner.config.load().inline_cutoff);
        let (moves, flips) = (health.events, health.selection.events);
        if !alerts.is_empty() || !moves.is_empty() || !flips.is_empty() {
            trace.thread_name(MONITOR_TID, "flujo monitor");
        }
        for e in moves {
            use crate::trace::{ArgValue, Instant};
            trace.instant(Instant {
                name: format!("health {} -> {}", e.from.as_str(), e.to.as_str()).into(),
                cat: "health",
                tid: MONITOR_TID,
                ts_ns: e.at_ns,
                args: vec![
                    ("level", ArgValue::Str(e.level.unwrap_or_default().into())),
                    ("triggers", ArgValue::Str(e.triggers.join(",").into())),
                    ("taken", ArgValue::Str(e.taken.join(",").into())),
                    ("undone", ArgValue::Str(e.undone.join(",").into())),
                ],
            });
        }
        for e in flips {
            use crate::trace::{ArgValue, Instant};
            trace.instant(Instant {
                name: format!("selection {} {}", e.change.as_str(), e.step).into(),
                cat: "selection",
                tid: MONITOR_TID,
                ts_ns: e.at_ns,
                args: vec![
                    ("step", ArgValue::Str(e.step.into())),
                    ("graph", ArgValue::U64(e.graph.into())),
                    ("node", ArgValue::U64(e.node.into())),
                    ("hit_rate", ArgValue::F64(e.hit_rate)),
                    ("lookups", ArgValue::U64(e.lookups)),
                    ("cutoff_from", ArgValue::U64(e.cutoff.0.into())),
                    ("cutoff_to", ArgValue::U64(e.cutoff.1.into())),
                    ("per_task_ns", ArgValue::U64(e.per_task_ns)),
                ],
            });
        }
        for e in alerts {
            use crate::trace::{ArgValue, Instant};
            let mut args = vec![
                ("rule", ArgValue::Str(e.rule.clone().into())),
                ("metric", ArgValue::Str(e.metric.as_str().into())),
                ("value", ArgValue::F64(e.value)),
                ("threshold", ArgValue::F64(e.threshold)),
                ("samples", ArgValue::U64(e.samples)),
                ("window_ns", ArgValue::U64(e.window_ns)),
            ];
            if let Some(step) = e.step {
                args.push(("step", ArgValue::Str(step.into())));
            }
            trace.instant(Instant {
                name: format!("alert {} {}", e.rule, e.state.as_str()).into(),
                cat: "alert",
                tid: MONITOR_TID,
                ts_ns: e.at_ns,
                args,
            });
        }
        trace.write_json(w)
    }

    /// [`write_trace`](Self::write_trace), and takes what it writes: the runners' trace
    /// records move out of them (each runner's lock held only for the move), so the next
    /// trace holds only spans recorded after this one, the memory the records held is freed
    /// (the report's [`MemoryStats::trace_bytes`] falls to zero), and a runner whose trace was
    /// full records again. A service that keeps telemetry level `events` on calls this
    /// periodically instead of `write_trace`.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::graph::Graph;
    /// use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
    /// use flujo_runtime::Executor;
    ///
    /// let g = Graph::<u64, ()>::build(|b| b.task("a", |x, _| Ok(x + 1))).unwrap();
    /// let mut config = OptimizationConfig::latency();
    /// (config.telemetry.level, config.telemetry.run_sample_period) = (TelemetryLevel::Events, 1);
    /// let ex = Executor::new(config).unwrap();
    /// ex.run(&g, 1, ()).unwrap();
    /// assert!(ex.report().memory.trace_bytes > 0);
    /// let mut json = Vec::new();
    /// ex.take_trace(&mut json).unwrap();
    /// assert!(String::from_utf8(json).unwrap().contains(r#""name":"a""#));
    /// assert_eq!(ex.report().memory.trace_bytes, 0);
    /// ```
    pub fn take_trace(&self, w: impl io::Write) -> io::Result<()> {
        let mut trace = TraceWriter::new(1 << 20);
        trace.process_name("flujo");
        self.inner.runners.take_traces(&mut trace);
        trace.write_json(w)
    }
}

/// Why [`Executor::try_run`] gave no run: refused (the input handed back), or the run
/// panicked outside a step.
#[derive(Debug)]
#[non_exhaustive]
pub enum TryRunError<P, C> {
    /// Refused by the degradation action `refuse_runs`; the run never started.
    Refused(Rejected<P, C>),
    /// The run panicked outside a step (see [`Executor::run`]).
    Panicked(Panicked),
}

impl<P, C> fmt::Display for TryRunError<P, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryRunError::Refused(back) => write!(f, "run refused: {}", back.reason),
            TryRunError::Panicked(p) => p.fmt(f),
        }
    }
}

impl<P: fmt::Debug, C: fmt::Debug> std::error::Error for TryRunError<P, C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryRunError::Refused(back) => Some(&back.reason),
            TryRunError::Panicked(_) => None,
        }
    }
}

/// Takes one back from a count when dropped.
struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The trace's thread id of the monitor's alert events.
const MONITOR_TID: u32 = u32::MAX - 1;

impl<P, C> Inner<P, C>
where
    P: Clone + Send + Sync + 'static,
    C: Context + Send + Sync + 'static,
{
    /// Runs `graph` on a pooled runner and hands its result to `f`; returns what `f` returned
    /// and the tick the run ended at (a submitted run's permit reads its latency from it,
    /// without another read of the clock).
    #[allow(clippy::too_many_arguments)]
    fn run<R>(
        &self,
        graph: &Graph<P, C>,
        input: P,
        context: C,
        deadline: Option<u64>,
        cancel: Option<&CancelFlag>,
        budget: Option<Usage>,
        queued: Option<(Priority, u64)>,
        f: impl FnOnce(RunResult<'_, P, C>) -> R,
    ) -> Result<(R, u64), Panicked> {
        // A submitted run comes with its priority and the tick it was submitted at. An inline
        // run has no priority of its own: its waits help with `Normal` work and up.
        let inline = queued.is_none();
        let at_least = queued.map_or(Priority::Normal, |(p, _)| p);
        let cfg = self.config.load();
        let name = |n: NodeId| graph.name(n).to_string();
        let bridge = cfg.result_cache.enabled.then(|| {
            let bypass = &cfg.degradation.cache_bypass;
            let select = bypass.enabled.then_some(select::Selecting {
                table: &self.degrade.selection,
                cfg: bypass,
                graph: graph.id(),
                name: &name,
                clock: &self.clock,
            });
            CacheBridge::new(&self.cache, deadline, self.degrade.store_max()).selecting(select)
        });
        let host = RtHost {
            runners: &self.runners,
            pool: &self.pool,
            cutoff: cfg.inline_cutoff.enabled.then_some(
                (self.degrade).cutoff(self.degrade.adaptive.current(&cfg.inline_cutoff)),
            ),
            adapt: (cfg.inline_cutoff.enabled && cfg.inline_cutoff.adaptive).then_some(
                select::Adapting {
                    state: &self.degrade.adaptive,
                    cfg: &cfg.inline_cutoff,
                    events: &self.degrade.selection,
                    graph: graph.id(),
                    name: &name,
                    clock: &self.clock,
                },
            ),
            cache: bridge.as_ref().map(|b| b as &dyn SharedCache<P>),
            parallel: self.pool.current_num_threads() > 1,
        };
        let counting = cfg.telemetry.level >= TelemetryLevel::Counters;
        let clock = &self.clock;
        let started = clock.now();
        // Whether the run's end was added to its pooled runner's stats: a panic after that (in `f`)
        // must not count the run again, as panicked.
        let mut counted = false;
        let attempt = panic::catch_unwind(AssertUnwindSafe(|| {
            self.runners.with(|w| {
                let sampled = w.sampled(self.degrade.sampling_off());
                // Feature `tracing`: the run's span, opened if sampled (see `tracing_spans`).
                #[cfg(feature = "tracing")]
                let mut span =
                    crate::tracing_spans::RunSpan::start(sampled, graph, queued.map(|(p, _)| p));
                let opts = RunOptions {
                    deadline,
                    cancel,
                    budget,
                };
                // What the report keeps of the run is added to the pooled runner's stats before `f`
                // (user code, for `run_with`) consumes it: the stats are locked only for
                // that. Both arms read the same clock for every decision; only a sampled run
                // reads it around every step, for the latencies it records.
                #[cfg(feature = "tracing")]
                let entered = span.enter();
                // Both clocks lend the thread to queued runs while the run waits.
                let r = if sampled {
                    let measured = Lending::<true> {
                        clock,
                        lender: self,
                        at_least,
                        cancel,
                    };
                    w.runner
                        .run_in(graph, input, context, &measured, &opts, &host)
                } else {
                    let unmeasured = Lending::<false> {
                        clock,
                        lender: self,
                        at_least,
                        cancel,
                    };
                    w.runner
                        .run_in(graph, input, context, &unmeasured, &opts, &host)
                };
                #[cfg(feature = "tracing")]
                drop(entered);
                let now = clock.now();
                let bucket = self.monitor.bucket_of(now);
                let end = RunEnd {
                    graph,
                    r: &r,
                    wall: now.saturating_sub(started),
                    queue_wait: queued.map(|(p, at)| (p, started.saturating_sub(at))),
                    bucket,
                    counting,
                    sampled,
                    inline,
                };
                end.add_to(&mut lock(&w.shared.stats), &mut w.samples, &self.monitor);
                counted = true;
                // A run that ends in a later bucket than the last evaluated closes those before.
                if let Some((_, bucket)) = bucket {
                    if self.monitor.due(bucket) {
                        self.poll_monitor(false);
                    }
                }
                #[cfg(feature = "tracing")]
                span.steps(graph, &r, end.wall);
                let out = f(r);
                if sampled {
                    // The core samples task executions for events on its own; drain what it
                    // kept (only a sampled run's telemetry is unpaused).
                    let shared = Arc::clone(&w.shared);
                    w.drain(&mut lock(&shared.stats), &|id| {
                        graph.name(NodeId(id)).to_string()
                    });
                    #[cfg(feature = "tracing")]
                    span.events(graph, w.drained());
                }
                (out, now)
            })
        }));
        attempt.map_err(|payload| {
            // Unless `f` panicked after the run was counted, the run ended without an
            // outcome; either way its pooled runner was freed as the loan unwound.
            if !counted {
                let count = if inline {
                    &self.panicked_inline
                } else {
                    &self.panicked_jobs
                };
                count.fetch_add(1, Ordering::Release);
            }
            Panicked {
                message: panic_message(&*payload),
            }
        })
    }

    /// Closes the monitor's buckets before the current one: hands it every runner's open
    /// bucket older than that, then lets it evaluate its rules (see [`crate::monitor`]). With
    /// `wait` false, returns at once if another poll is under way.
    fn poll_monitor(&self, wait: bool) -> Vec<crate::monitor::AlertEvent> {
        let Some(_polling) = self.monitor.polling(wait) else {
            return Vec::new();
        };
        let Some((epoch, now)) = self.monitor.bucket_of(self.clock.now()) else {
            return Vec::new();
        };
        if !self.monitor.due(now) {
            return Vec::new();
        }
        self.runners.each_window(
            |stats| {
                if let Some(part) = stats.open_window(epoch, now) {
                    self.monitor.absorb(part);
                }
            },
            |part| self.monitor.absorb(part),
        );
        let submitted = self.submitted.load(Ordering::Acquire);
        let refused = self
            .rejected
            .iter()
            .map(|r| r.load(Ordering::Acquire))
            .sum();
        let events = self.monitor.close(now, submitted, refused);
        let firing = self.monitor.firing();
        let (memory, cpu) = self.read_process();
        self.evaluate_health(self.monitor.tick_of(now), &firing, memory);
        if let Some(cpu) = cpu {
            // BBR admission under CPU saturation: nothing below 85% of the cores, half the
            // limit at 100% (`docs/operations.md`, "Admission under pressure").
            let pressure = ((cpu - 0.85) / 0.15).clamp(0.0, 1.0) * 0.5;
            let _ = self.limit.set_pressure(pressure);
        }
        events
    }

    /// Reads the process once a poll, when something watches it: the resident memory's share
    /// of the degradation's memory budget (its `budget_bytes`, else the cgroup limit) when a
    /// level has the memory trigger, and the share of the cores busy since the last poll when
    /// admission is BBR (which the CPU pressure scales). `None` for what is not watched or
    /// cannot be read.
    fn read_process(&self) -> (Option<f64>, Option<f64>) {
        let cfg = self.config.load();
        let d = &cfg.degradation;
        let memory_watched = d.enabled
            && d.levels
                .iter()
                .any(|l| l.when.iter().any(|t| t == crate::config::MEMORY_TRIGGER));
        let a = &cfg.adaptive_concurrency;
        let cpu_watched = a.enabled && a.algorithm == crate::config::Algorithm::Bbr;
        if !memory_watched && !cpu_watched {
            return (None, None);
        }
        let reading = self.degrade.read_process();
        let memory = memory_watched
            .then(|| {
                let budget = match d.memory.budget_bytes {
                    0 => reading.memory_limit_bytes?,
                    b => b,
                };
                Some(reading.resident_bytes? as f64 / budget.max(1) as f64)
            })
            .flatten();
        let cpu = cpu_watched.then_some(reading.cpu_share_of_cores).flatten();
        (memory, cpu)
    }

    /// Notes the current limit in the lowest and highest seen: two loads when it is within
    /// them (a submission and a run's end both call this).
    fn note_limit(&self) {
        let l = u64::from(self.limit.limit());
        let [low, high] = &self.limit_seen;
        if l < low.load(Ordering::Relaxed) {
            low.fetch_min(l, Ordering::Relaxed);
        }
        if l > high.load(Ordering::Relaxed) {
            high.fetch_max(l, Ordering::Relaxed);
        }
    }

    /// Gives back the permit of a submission that does not run (a hand-back, or a queue
    /// found full): it ends as ignored, with no change of the limit.
    fn give_back(&self, permit: Option<Slip>) {
        if let Some(slip) = permit {
            drop(self.limit.attach(slip));
        }
    }

    /// Ends one pending submission, waking a shutdown waiting for none.
    fn end_one(&self) {
        drop(self.ending());
    }

    /// Ends one pending submission when dropped (also when unwinding).
    fn ending(&self) -> Ending<'_> {
        Ending {
            room: &self.room,
            idle: &self.idle,
        }
    }

    /// Sees that a dispatcher will find the submission just queued: starts one if fewer than
    /// the pool's threads run; otherwise marks work queued, and the next running dispatcher
    /// that finds the queues empty looks again before it stops (see [`dispatch`]), and wakes
    /// a waiting run lending its thread, if one is parked (see [`crate::lend`]).
    ///
    /// Returns whether the submission was left to a dispatcher lingering on the caller's own
    /// CPU: its ticket's wait should then yield the CPU at once rather than spin.
    fn kick(self: &Arc<Self>) -> bool {
        let cpu = current_cpu();
        if self.dispatchers.submitted(cpu) {
            self.start_dispatcher();
            false
        } else {
            // A run waiting on a dispatcher's thread may be parked with nothing to run.
            self.waits.wake_one();
            same_cpu(cpu, self.dispatchers.lingers_on())
        }
    }

    /// Starts a dispatcher on the pool, holding a place the caller took (or handed on).
    fn start_dispatcher(self: &Arc<Self>) {
        let me = Arc::clone(self);
        // rayon boxes the job: one allocation per dispatcher started, not per submission.
        self.pool.spawn(move || me.dispatch());
    }

    /// A dispatcher, started holding a place: runs queued submissions (the queues pick which:
    /// priority, with aging) until the queues are empty, then lingers a moment for more
    /// (bounded: see [`dispatch`]) and leaves, unless work was queued meanwhile while every
    /// place was taken or it lingered: then it looks again.
    ///
    /// A dispatcher started on a thread already inside one (rayon lets a thread waiting in a
    /// forked run's `join` take other jobs) runs one submission only, as a job of its own
    /// would, and hands its place to a fresh dispatcher if work is left: the run it
    /// interrupted waits for it.
    fn dispatch(self: &Arc<Self>) {
        let nested = DISPATCHING.with(|d| d.replace(true));
        let looped = panic::catch_unwind(AssertUnwindSafe(|| self.dispatch_loop(nested)));
        DISPATCHING.with(|d| d.set(nested));
        if let Err(payload) = looped {
            // Only a job can panic (a user `Drop` run outside the run's guard, say), so the
            // place is held: hand it on if work is left, else give it up, then unwind on.
            self.stop_early();
            panic::resume_unwind(payload);
        }
    }

    /// The loop of [`dispatch`](Self::dispatch), entered holding a place.
    fn dispatch_loop(self: &Arc<Self>, nested: bool) {
        if nested {
            if let Some((job, priority)) = self.next_job() {
                self.run_job(job, priority);
            }
            self.stop_early();
            return;
        }
        loop {
            while let Some((job, priority)) = self.next_job() {
                self.run_job(job, priority);
            }
            // Lingers a moment first (unless another dispatcher does): a submitter that
            // waits for its run and submits again at once leaves its next job to this one,
            // instead of starting a rayon job on a pool thread that may have gone to sleep.
            let left = match self.dispatchers.try_linger() {
                dispatch::Empty::Left => true,
                // Work was queued while every place was taken: look again.
                dispatch::Empty::LookAgain => false,
                dispatch::Empty::Linger => {
                    self.dispatchers.linger();
                    self.dispatchers.end_linger()
                }
            };
            if left {
                break;
            }
        }
    }

    /// Ends a dispatcher that stops before it found the queues empty (nested, or unwinding):
    /// its place goes to a fresh dispatcher if work may be left, else it is given up.
    fn stop_early(self: &Arc<Self>) {
        if self.dispatchers.stop(|| self.queues.is_empty()) {
            self.start_dispatcher();
        }
    }

    /// The next queued submission, or `None` when the queues are empty (another dispatcher
    /// took the last, or a shutdown handed it back).
    fn next_job(&self) -> Option<(Job<P, C>, Priority)> {
        loop {
            if let Some(next) = self.queues.pop() {
                return Some(next);
            }
            if self.queues.is_empty() {
                return None;
            }
            // A push or pop in progress holds a place: it is done in a moment.
            std::thread::yield_now();
        }
    }

    /// Runs one submission of `priority` and completes its ticket.
    fn run_job(&self, job: Job<P, C>, priority: Priority) {
        // Ends the submission last (after the ticket is completed), also if this unwinds:
        // when the ticket is gone, completing drops the value, and a user `Drop` may panic.
        let _ending = self.ending();
        if self.halting.load(Ordering::Acquire) {
            // A time-limited shutdown passed its limit before this one started.
            self.hand_back(job);
            return;
        }
        let Job {
            graph,
            input,
            context,
            deadline,
            budget,
            completer,
            permit,
            submitted,
            #[cfg(feature = "tracing")]
            parent,
        } = job;
        // Attached at once: if this unwinds, dropping it gives the slot back.
        let mut permit = permit.map(|slip| self.limit.attach(slip));
        let cancel = completer.cancel_flag();
        // Feature `tracing`: the submitter's span, the run span's parent (see `tracing_spans`).
        #[cfg(feature = "tracing")]
        let _parent = parent.lend();
        let result = self.running.during(cancel, || {
            // Registered: a shutdown that passed its limit since the check above either
            // raised this flag, or set `halting` before it locked this thread's slot, which
            // the registration locked after (so this load sees it).
            if self.halting.load(Ordering::SeqCst) {
                cancel.cancel();
            }
            self.run(
                &graph,
                input,
                context,
                deadline,
                Some(cancel),
                budget,
                Some((priority, submitted)),
                Completed::of,
            )
        });
        let finished = match result {
            Ok((done, ended)) => {
                if let Some(p) = permit.take() {
                    let latency = ended.saturating_sub(submitted);
                    if self.admission && done.outcome == Outcome::Aborted {
                        p.dropped();
                    } else {
                        p.success(latency);
                    }
                }
                Finished::Ran(done)
            }
            Err(p) => Finished::Panicked(p),
        };
        drop(permit);
        self.note_limit();
        self.finished.fetch_add(1, Ordering::Relaxed);
        completer.complete(finished);
    }

    /// See [`Executor::report`]. Built from the pooled runners' collected reports (runs ended,
    /// step counts, latencies, counters, events), with the executor's own counts
    /// (refusals, hand-backs, panics, submissions) and readings set on it. The counts that
    /// end a submission are read before the submissions (each is bumped after its
    /// submission was counted, and read with `Acquire` or under the pooled runner's lock), so
    /// `in_flight` is never negative.
    fn report(&self) -> Report {
        self.poll_monitor(true);
        self.report_with(|_| ()).0
    }

    /// [`report`](Self::report), also showing the collected report builder (its latency
    /// histograms) to `on_collected` while it is locked, and returning each breaker's current
    /// state beside `report.breakers` (same order).
    fn report_with(
        &self,
        on_collected: impl FnOnce(&crate::report::ReportBuilder),
    ) -> (Report, Vec<flujo_core::policy::BreakerState>) {
        let mut on_collected = Some(on_collected);
        let rejected = self.rejected.each_ref().map(|c| c.load(Ordering::Acquire));
        let handed_back = self.handed_back.load(Ordering::Acquire);
        let panicked_inline = self.panicked_inline.load(Ordering::Acquire);
        let panicked = self.panicked_jobs.load(Ordering::Acquire) + panicked_inline;
        let wall = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Each breaker of the graphs run, once (pooled runners may share one), read exactly.
        let mut breakers: Vec<SeenBreaker> = Vec::new();
        let (mut loans, mut inline) = (0u64, panicked_inline);
        let (mut used, mut reserved, mut reserve_max) = (0u64, 0u64, 0u64);
        let mut freed = 0;
        let mut report = None;
        let mut memory = MemoryStats::default();
        self.runners.read(|seen| match seen {
            Seen::Live {
                shared,
                breakers: met,
                inline_runs,
                trace_bytes,
                telemetry_bytes,
            } => {
                let (u, r) = shared.arena_bytes();
                (used, reserved, reserve_max) = (used + u, reserved + r, reserve_max.max(r));
                let (arena, runner) = shared.held_bytes();
                memory.arena_bytes += arena;
                memory.runner_bytes += runner;
                memory.trace_bytes += trace_bytes;
                memory.telemetry_bytes += telemetry_bytes;
                loans += shared.loans();
                for seen in met {
                    merge_breaker(&mut breakers, seen);
                }
                inline += inline_runs;
            }
            Seen::Retired(retired) => {
                for seen in &retired.breakers {
                    merge_breaker(&mut breakers, seen);
                }
                loans += retired.loans;
                inline += retired.inline_runs;
                freed = retired.freed;
                memory.telemetry_bytes += retired.report.held_bytes();
            }
            Seen::Collected(collected) => {
                if let Some(f) = on_collected.take() {
                    f(collected);
                }
                memory.telemetry_bytes += collected.held_bytes();
                memory.telemetry_bytes += self.monitor.heap_bytes() as u64;
                report = Some(collected.build(wall));
            }
        });
        let mut report = report.expect("`read` shows the collected report");
        // Last: every submission whose end was counted above is counted here.
        let submissions = self.submitted.load(Ordering::Acquire);
        let runs = &mut report.runs;
        [
            runs.rejected_queue_full,
            runs.rejected_over_limit,
            runs.rejected_shutting_down,
            runs.rejected_shed,
        ] = rejected;
        (runs.handed_back, runs.panicked, runs.inline) = (handed_back, panicked, inline);
        runs.submitted = submissions + inline;
        let ended = runs.completed + runs.panicked + runs.handed_back + runs.rejected();
        debug_assert!(ended <= runs.submitted, "{runs:?}");
        runs.in_flight = runs.submitted.saturating_sub(ended);
        report.breakers = breakers.iter().map(breaker_row).collect();
        let states = breakers.iter().map(|seen| seen.breaker.state()).collect();
        report.breakers_exact = true;
        let made = self.runners.made();
        let idle_max = self.runners.idle_max() as u64;
        report.pool = PoolStats {
            // Each pooled runner's first loan made it; every later one was a hit.
            pool_hits: loans.saturating_sub(made),
            pool_misses: made,
            pool_live: self.runners.live() as u64,
            pool_idle: self.runners.idle() as u64,
            pool_idle_max: idle_max,
            pool_freed: freed,
            arena_bytes_used: used,
            arena_bytes_reserved: reserved,
            arena_bytes_reserved_idle_max: idle_max * reserve_max,
        };
        let [low, high] = &self.limit_seen;
        report.admission = AdmissionStats {
            limit_current: u64::from(self.limit.limit()),
            limit_min_seen: low.load(Ordering::Relaxed),
            limit_max_seen: high.load(Ordering::Relaxed),
        };
        let (lent, held, helped) = self.waits.read();
        report.waits = WaitStats { lent, held, helped };
        report.alerts = self.monitor.alert_stats();
        report.health = self.degrade.stats(&self.config.load().inline_cutoff);
        let cache = self.cache.memory();
        (
            memory.cache_entries,
            memory.cache_weight_bytes,
            memory.cache_slot_bytes,
        ) = (
            cache.entries as u64,
            cache.weight_bytes as u64,
            cache.slot_bytes as u64,
        );
        (memory.queue_bytes, memory.queued_items) =
            (self.queues.held_bytes() as u64, self.queues.len() as u64);
        memory.process = lock(&self.process).sample();
        report.memory = memory;
        (report, states)
    }
}

/// What the report keeps of a run that ended, added to its pooled runner's stats.
struct RunEnd<'g, 'r, P, C> {
    graph: &'g Graph<P, C>,
    r: &'r RunResult<'r, P, C>,
    /// Ticks (nanoseconds) from the run's start to its end.
    wall: u64,
    /// A submitted run's priority and ticks from its submission to its start.
    queue_wait: Option<(Priority, u64)>,
    /// The monitor's epoch and the bucket the run ended in; `None` when the monitor is off.
    bucket: Option<(u64, u64)>,
    counting: bool,
    sampled: bool,
    inline: bool,
}

impl<P, C> RunEnd<'_, '_, P, C> {
    /// Adds the run to `stats`: its outcome, counters, dropped records, exact step counts
    /// (when `counting`), the step latencies of a `sampled` one (through `samples`), and the
    /// monitor's open bucket (handing `monitor` the bucket it closes, if any).
    #[inline]
    fn add_to(
        &self,
        stats: &mut runner_pool::RunnerStats,
        samples: &mut Vec<(NodeId, u64)>,
        monitor: &Monitor,
    ) {
        let (graph, r) = (self.graph, self.r);
        stats.report.add_run(r.outcome, self.wall);
        // Kept only for the Prometheus exposition (one histogram record per submitted run).
        #[cfg(feature = "prometheus")]
        if let Some((priority, wait)) = self.queue_wait {
            stats.report.add_queue_wait(priority, wait);
        }
        let windowed = if let Some((epoch, bucket)) = self.bucket {
            if let Some(part) = stats.open_window(epoch, bucket) {
                monitor.absorb(part);
            }
            let c = &r.counters;
            crate::monitor::count_run(
                stats.window.graph(graph.id()),
                r.error.as_ref().map(|e| e.kind.class()),
                r.outcome == Outcome::Succeeded,
                c.get(Counter::CacheHits),
                c.get(Counter::CacheMisses),
                self.wall,
                self.queue_wait.map(|(_, wait)| wait),
            );
            true
        } else {
            false
        };
        stats.report.add_counters(&r.counters);
        stats
            .report
            .add_records_dropped(u64::from(r.records_dropped));
        stats.inline_runs += u64::from(self.inline);
        if self.counting {
            stats.tallies.count(graph, r, windowed);
        }
        if self.sampled {
            samples.extend(r.records.iter().map(|rec| (rec.node, rec.latency_ticks)));
        }
        for &(node, latency) in samples.iter() {
            stats
                .report
                .add_node_latency(graph.id(), node.0, graph.name(node), latency);
        }
        if windowed && self.counting && !samples.is_empty() {
            stats.tallies.sample(graph, samples);
        }
        samples.clear();
        if self.sampled {
            let queue = self.queue_wait.map_or(0, |(_, wait)| wait);
            let dropped = r.records_dropped;
            (stats.report).add_bottleneck_run(graph, r.records, dropped, self.wall, queue);
        }
    }
}

/// The report row of a breaker a pooled runner met: its own counts, exact.
fn breaker_row(seen: &SeenBreaker) -> BreakerRow {
    let counts = seen.breaker.transition_counts();
    let step = if seen.shared {
        format!("{} (+others)", seen.step)
    } else {
        seen.step.clone()
    };
    BreakerRow {
        step_id: seen.step_id,
        step,
        to_open: (counts.closed_to_open + counts.half_open_to_open) as u64,
        to_half_open: counts.open_to_half_open as u64,
        to_closed: counts.half_open_to_closed as u64,
        rejected: seen.breaker.refusals() as u64,
    }
}

/// Ends one pending submission when dropped, waking a waiting submission (see `room`) and a
/// shutdown waiting for none.
struct Ending<'a> {
    room: &'a Room,
    idle: &'a (Mutex<usize>, Condvar),
}

impl Drop for Ending<'_> {
    fn drop(&mut self) {
        // The waiter counts itself and reads `pending` under the lock, and the last end takes
        // the lock after its decrement: either the waiter saw none pending, or it is counted
        // (and waiting) when the last end looks. With nobody waiting, no system call.
        if self.room.end() && *lock(&self.idle.0) > 0 {
            self.idle.1.notify_all();
        }
    }
}

#[cfg(test)]
mod tests;
