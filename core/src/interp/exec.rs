//! The interpreter proper: one method per node kind, the plain-task fast path, and the task
//! policy pipeline.

use alloc::vec::Vec;
use core::mem::MaybeUninit;

mod overrun;
mod pure;

use super::host::{Fan, Host, Lane as Branch};
use super::{
    ErrorKind, LoopExit, Records, Sampling, Scratch, StepOutcome, StepRecord, Stop, Telemetry,
};
use crate::cache::CacheKey;
use crate::context::{merge_branch, Context, Frame, MergeError, MergeStrategy};
use crate::graph::{
    AroundStep as Checks, Cancel, CancelFlag, ChainTask as RunTask, Clock, FailureStrategy, Graph,
    Items, NodeId, NodeKind, RunEnv, Step, StepCx, StepError, StepFlags, TaskConfig, TaskPolicy,
    NO_POLICY, UNTIMED,
};
use crate::policy::{
    Breaker, BreakerState, Decision, ErrorClass, Reservation, RetryState, Usage, UsageBudget,
    UsageDenied,
};
use crate::policy::{CallOutcome, Permit, Transition};
use crate::telemetry::{Counter, Counters, EventKind, EventSink, StepOutcome as EndOutcome};

/// Why the run must stop before a task that would start at `now`, if it must.
#[inline(always)]
fn stop_reason(env: &RunEnv<'_>, now: u64) -> Option<ErrorKind> {
    if now >= env.deadline {
        Some(ErrorKind::DeadlineExceeded)
    } else if env.cancel.is_some_and(Cancel::is_cancelled) {
        Some(ErrorKind::Cancelled)
    } else {
        None
    }
}

/// The start tick of a task: the clock's reading when tasks are `timed`, else [`UNTIMED`]
/// (see [`Clock::measures_latency`]).
#[inline(always)]
fn stamp<K: Clock + ?Sized>(clock: &K, timed: bool) -> u64 {
    if timed {
        clock.now()
    } else {
        UNTIMED
    }
}

/// The tick the stop test before a task reads: the task's `start` when tasks are `timed`;
/// untimed, the clock only when the run has a deadline (a cancel flag needs no time).
#[inline(always)]
fn stop_tick<K: Clock + ?Sized>(clock: &K, timed: bool, start: u64, env: &RunEnv<'_>) -> u64 {
    match (timed, env.deadline) {
        (true, _) => start,
        (false, u64::MAX) => 0,
        (false, _) => clock.now(),
    }
}

/// Ticks from `start` to `end`: 0 when the clock went back (`saturating_sub`, with the
/// clock going back out of line, so the common case is a subtraction and a branch).
#[inline(always)]
fn elapsed(start: u64, end: u64) -> u64 {
    match end.checked_sub(start) {
        Some(ticks) => ticks,
        None => went_back(),
    }
}

/// The latency of a step during which the clock went back.
#[cold]
#[inline(never)]
fn went_back() -> u64 {
    0
}

/// Why [`stretch_turn`] came back.
enum Exit<'g, P, C> {
    /// Every task of the chunk ran and put its record; the last one's output.
    Done(P),
    /// The task just run succeeded but reported usage or wrote the context: its record is
    /// not put.
    Touched { y: P, node: u32, latency_ticks: u64 },
    /// The run must stop before the task just taken.
    Stopped { node: u32, kind: ErrorKind },
    /// The plain task just run failed.
    Failed {
        node: u32,
        e: StepError,
        latency_ticks: u64,
    },
    /// The breaker of the lean task just taken refused it: its input, and the time it was
    /// asked.
    BreakerOpen {
        pol: &'g TaskPolicy<P, C>,
        x: P,
        start: u64,
    },
    /// The first attempt of the lean task just taken failed.
    LeanFailed {
        pol: &'g TaskPolicy<P, C>,
        err: StepError,
        kept: Option<P>,
        permit: Option<(&'g Breaker, Permit)>,
        start: u64,
    },
}

/// One turn of the stretch loop, out of line so that the registers go to what a task needs:
/// runs the tasks of `chunk` from `x`, each with the step context `cx`, one clock read per
/// task (`t0` is the current task's start), putting the record of each at `dst`, until the
/// chunk ends or a task needs more than its record (see [`Exit`]). When `LEAN`, a lean
/// policy task's first attempt runs here too (breaker permit, processors, step,
/// validators; the breaker learns a success), and its breaker is asked only when
/// `BREAKERS` (the runner's switch). When `TEL`, telemetry (`tel`) sees each task's start,
/// end and latency (`EVERY`: the sampler keeps every execution). Only when `WATCH` is the
/// run's deadline and cancel flag tested before each task (the caller passes `false` only
/// when the run has neither). `chunk`, `dst` and `t0` are left where it stopped.
///
/// # Safety
///
/// `*dst` must be valid for writing `chunk.len()` records one after the other.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
unsafe fn stretch_turn<
    'g,
    P,
    C,
    K,
    S,
    H,
    const LEAN: bool,
    const TEL: bool,
    const EVERY: bool,
    const BREAKERS: bool,
    const WATCH: bool,
>(
    g: &'g Graph<P, C>,
    clock: &K,
    host: &H,
    env: &RunEnv<'_>,
    counters: &mut Counters,
    mut tel: Option<&mut Telemetry<S>>,
    cx: &mut StepCx<'_, C>,
    chunk: &mut core::slice::Iter<'_, RunTask>,
    dst: &mut *mut StepRecord,
    t0: &mut u64,
    mut x: P,
) -> Exit<'g, P, C>
where
    P: Clone,
    C: Clone,
    K: Clock,
    S: EventSink,
    H: Host<P, C, K>,
{
    let steps = &*g.task_step;
    let (mut it, mut at, mut start) = (chunk.clone(), *dst, *t0);
    debug_assert!(!TEL || tel.is_some(), "a turn with telemetry is given it");
    // A sampler that keeps every execution (`EVERY`): no decision per task, and the run of
    // equal latencies waiting for the histogram lives in locals until the turn ends.
    if let (true, Some(t)) = (EVERY, tel.as_deref_mut()) {
        let every = t.keep_all();
        debug_assert!(every, "the caller asked the telemetry");
    }
    let mut pending = match &tel {
        Some(t) if EVERY => t.pending(),
        _ => (0, 0),
    };
    // Any other sampler: its counter and the current execution's decision live in locals
    // until the turn ends, and an execution it skips costs no call.
    let mut sampling = match &tel {
        Some(t) if TEL && !EVERY => t.sampling(),
        _ => Sampling::default(),
    };
    // Whether each task's start and end are read (a sampled execution needs them for its
    // events); otherwise the clock is read only where a decision needs the time.
    let timed = TEL || clock.measures_latency();
    let exit = loop {
        let Some(pt) = it.next() else {
            break Exit::Done(x);
        };
        if WATCH && env.watch {
            if let Some(kind) = stop_reason(env, stop_tick(clock, timed, start, env)) {
                let node = pt.node;
                break Exit::Stopped { node, kind };
            }
        }
        if TEL {
            if let Some(t) = tel.as_deref_mut() {
                if EVERY {
                    t.emit(pt.node, start, EventKind::StepStart);
                } else if sampling.next() {
                    t.sampled_start(pt.node, start);
                }
            }
        }
        cx.may_write = pt.may_write;
        debug_assert!((pt.task as usize) < steps.len(), "validated: task index");
        // SAFETY: `RunTask::task` is a task slot taken from the frozen graph's own nodes
        // when it was built (`GraphBuilder::flatten`, `Exec::task`), so it is below
        // `task_step.len()`; the graph is immutable after freezing.
        let step = unsafe { steps.get_unchecked(pt.task as usize) };
        // When `LEAN`, a plain task takes the lean path too: it has no breaker, keeps no
        // input and runs its step alone, so only a failure tells the two apart.
        debug_assert!(!LEAN || pt.lean || pt.policy == NO_POLICY, "a stretch task");
        debug_assert!(pt.lean || (pt.breaker.is_none() && !pt.keep && pt.checks == Checks::None));
        // A lean task's policy, looked up where needed rather than kept: the fewer values live
        // across the step's call, the fewer the loop spills. Called for lean tasks only (a
        // breaker, checks or a lean failure).
        let pol = || {
            debug_assert!(
                pt.lean && (pt.policy as usize) < g.policies.len(),
                "validated"
            );
            // SAFETY: `RunTask::policy` of a lean task is the index of its entry in
            // `policies`, set when the graph was frozen; the graph is immutable after
            // freezing.
            unsafe { g.policies.get_unchecked(pt.policy as usize) }
        };
        // The permit as a word (0: no breaker), so that no discriminant is kept.
        // SAFETY: the task run's breaker is its policy's, which the graph holds.
        let breaker = pt
            .breaker
            .filter(|_| LEAN && BREAKERS)
            .map(|b| unsafe { b.get() });
        let permit = match breaker {
            Some(b) => match b.try_acquire({
                if !timed {
                    start = clock.now();
                }
                start
            }) {
                Ok(permit) => {
                    if let Some(t) = permit.transition() {
                        note_transition(counters, tel.as_deref_mut(), pt.node, start, t);
                    }
                    permit.into_word()
                }
                Err(_) => {
                    let pol = pol();
                    break Exit::BreakerOpen { pol, x, start };
                }
            },
            None => 0,
        };
        // The input again, for a failure's retry or fallback: written only when the task
        // can need it (read back by the same test, without a discriminant).
        let mut kept = if LEAN && pt.keep {
            MaybeUninit::new(x.clone())
        } else {
            MaybeUninit::uninit()
        };
        // The attempt: the step alone (its first validator compiled in), or the general
        // order for processors and further validators.
        let attempt = || {
            if !LEAN || pt.checks == Checks::None {
                step.run(x, cx)
            } else {
                checked_attempt(&pol().cfg, &**step, x, cx)
            }
        };
        // The clock is read in each arm, so the success of the attempt's last part goes
        // straight on.
        let (y, t1, latency_ticks) = match host.guard(attempt) {
            Ok(y) => {
                // Untimed, a task without a breaker keeps `start` (latency 0).
                let t1 = if timed || breaker.is_some() {
                    clock.now()
                } else {
                    start
                };
                let latency_ticks = elapsed(start, t1);
                if LEAN && core::mem::needs_drop::<P>() && pt.keep {
                    // SAFETY: written above exactly when `pt.keep`; not read again.
                    unsafe { kept.assume_init_drop() };
                }
                if let Some(b) = breaker {
                    let permit = Permit::from_word(permit);
                    let moved = b.record(permit, CallOutcome::Success, latency_ticks, t1);
                    if let Some(transition) = moved {
                        let tel = tel.as_deref_mut();
                        note_transition(counters, tel, pt.node, t1, transition);
                    }
                }
                (y, t1, latency_ticks)
            }
            Err(err) if LEAN && pt.lean => {
                // Read as the stretch always did after an attempt (a host's clock may count
                // its reads).
                if timed {
                    let _ = clock.now();
                }
                let pol = pol();
                let permit = breaker.map(|b| (b, Permit::from_word(permit)));
                // Untimed, a task without a breaker was not timed: its record says 0.
                let start = if timed || breaker.is_some() {
                    start
                } else {
                    UNTIMED
                };
                // Read from the policy (the same flags `pt.keep` was frozen from), so that
                // `pt.keep` is not kept across the step's call.
                let keep = pol.flags.intersects(StepFlags::RETRY | StepFlags::FALLBACK);
                debug_assert_eq!(keep, pt.keep, "frozen from the same flags");
                // SAFETY: written above exactly when `pt.keep`, that is when `keep`.
                let kept = keep.then(|| unsafe { kept.assume_init() });
                break Exit::LeanFailed {
                    pol,
                    err,
                    kept,
                    permit,
                    start,
                };
            }
            Err(e) => {
                let latency_ticks = if timed {
                    elapsed(start, clock.now())
                } else {
                    0
                };
                let node = pt.node;
                break Exit::Failed {
                    node,
                    e,
                    latency_ticks,
                };
            }
        };
        start = t1;
        if TEL {
            if let Some(t) = tel.as_deref_mut() {
                if !EVERY {
                    if sampling.kept {
                        t.sampled_success(pt.node, t1, latency_ticks);
                    }
                } else {
                    if latency_ticks == pending.0 {
                        pending.1 += 1;
                    } else {
                        pending = t.swap_pending(pending, latency_ticks);
                    }
                    let outcome = EndOutcome::Succeeded;
                    t.emit(pt.node, t1, EventKind::StepEnd { outcome });
                }
            }
        }
        if cx.touched {
            let node = pt.node;
            break Exit::Touched {
                y,
                node,
                latency_ticks,
            };
        }
        x = y;
        // SAFETY: the caller gave room for `chunk.len()` records at `*dst`; this is the
        // record of one task taken from it, and `at` moves one slot per record.
        unsafe {
            at.write(StepRecord::plain(pt.node, latency_ticks, Usage::ZERO));
            at = at.add(1);
        }
    };
    (*chunk, *dst, *t0) = (it, at, start);
    if let Some(t) = tel {
        if EVERY {
            t.set_pending(pending);
        } else if TEL {
            t.set_sampling(sampling);
        }
    }
    exit
}

/// Why a stretch of plain tasks ended early.
enum PlainFailure {
    /// The run was stopped before the task started.
    Stopped(ErrorKind),
    /// The task failed.
    Step {
        e: StepError,
        latency_ticks: u64,
        usage: Usage,
    },
}

/// Charges `actual` usage that had no reservation (a step without an estimate) to `budget`.
///
/// The budget charges only through reservations, so this reserves nothing and reconciles at
/// `actual`. When even that is refused, the budget is already at (or past) a limit, so every
/// later estimate is denied anyway; the run's own usage total still counts `actual`. A charge
/// that takes the budget past a limit marks it exceeded (later reservations are denied);
/// the step that made it already ran, so nothing else happens.
#[inline]
fn charge(budget: &mut UsageBudget, actual: Usage) {
    if actual == Usage::ZERO {
        return;
    }
    if let Ok(r) = budget.reserve(Usage::ZERO) {
        let _ = budget.reconcile(r, actual);
    }
}

/// Takes the usage a step reported from its context and books it in the run's totals.
#[inline]
fn take_usage<C: Clone>(
    cx: &mut StepCx<'_, C>,
    total: &mut Usage,
    budget: &mut UsageBudget,
) -> Usage {
    let usage = cx.usage;
    cx.usage = Usage::ZERO;
    cx.touched = false;
    if usage != Usage::ZERO {
        *total = total.saturating_add(usage);
        charge(budget, usage);
    }
    usage
}

/// Counts (a trip to open) and emits a breaker transition.
#[cold]
fn note_transition<S: EventSink>(
    counters: &mut Counters,
    tel: Option<&mut Telemetry<S>>,
    node: u32,
    tick: u64,
    transition: Transition,
) {
    let (from, to) = (
        breaker_state(transition.from()),
        breaker_state(transition.to()),
    );
    if to == BreakerState::Open {
        counters.increment(Counter::BreakerTrips);
    }
    if let Some(t) = tel {
        t.emit_always(node, tick, EventKind::BreakerTransition { from, to });
    }
}

/// The telemetry state a breaker transition names.
fn breaker_state(state: BreakerState) -> BreakerState {
    use crate::policy::BreakerState as State;
    match state {
        State::Closed => BreakerState::Closed,
        State::Open => BreakerState::Open,
        State::HalfOpen => BreakerState::HalfOpen,
    }
}

/// The telemetry outcome of a record's.
fn end_outcome(outcome: StepOutcome) -> EndOutcome {
    match outcome {
        StepOutcome::Succeeded => EndOutcome::Succeeded,
        StepOutcome::Failed => EndOutcome::Failed,
        StepOutcome::Skipped => EndOutcome::Skipped,
        StepOutcome::Aborted => EndOutcome::Aborted,
    }
}

/// The counter of a record's outcome.
fn outcome_counter(outcome: StepOutcome) -> Counter {
    match outcome {
        StepOutcome::Succeeded => Counter::StepsSucceeded,
        StepOutcome::Failed => Counter::StepsFailed,
        StepOutcome::Skipped => Counter::StepsSkipped,
        StepOutcome::Aborted => Counter::StepsAborted,
    }
}

/// A lean task's attempt in the stretch loop when its step is not alone (its task run's
/// checks are `Checks::Many`), out of line: the step then its one boxed validator without a
/// loop, or the general order.
#[inline(never)]
fn checked_attempt<P, C: Clone>(
    cfg: &TaskConfig<P, C>,
    step: &dyn Step<P, C>,
    x: P,
    cx: &mut StepCx<'_, C>,
) -> Result<P, StepError> {
    match &cfg.validators[..] {
        [validate] if cfg.pre.is_empty() && cfg.post.is_empty() => {
            let y = step.run(x, cx)?;
            match validate(&y, cx.ctx()) {
                Ok(()) => Ok(y),
                Err(e) => Err(invalid(e)),
            }
        }
        _ => run_attempt(cfg, step, x, cx),
    }
}

/// One attempt, without the context bookkeeping: pre-processors, step, post-processors,
/// validators (whose errors are classified as validation).
#[inline(always)]
fn run_attempt<P, C: Clone>(
    cfg: &TaskConfig<P, C>,
    step: &dyn Step<P, C>,
    mut x: P,
    cx: &mut StepCx<'_, C>,
) -> Result<P, StepError> {
    for pre in &cfg.pre {
        x = pre(x, cx.ctx())?;
    }
    let mut y = step.run(x, cx)?;
    // Post-processors and validators only read the context: the view is the same for all.
    let ctx = cx.ctx();
    for post in &cfg.post {
        y = post(y, ctx)?;
    }
    for validate in &cfg.validators {
        if let Err(e) = validate(&y, ctx) {
            return Err(invalid(e));
        }
    }
    Ok(y)
}

/// A validator's error, classified as validation.
#[cold]
fn invalid(e: StepError) -> StepError {
    e.with_class(ErrorClass::Validation)
}

/// How a policy task's execution ends, for [`Exec::settle`].
struct Settle<'b> {
    start: u64,
    permit: Option<(&'b Breaker, Permit)>,
    /// The key of a cache miss, and whether it missed the host's shared cache (which then
    /// waits for a `fill`).
    key: Option<(CacheKey, bool)>,
    reservation: Option<Reservation>,
    used: Usage,
    step_succeeded: bool,
}

/// A lean policy task's failed first attempt, handed from the stretch loop to the
/// recovery path.
struct FirstAttempt<'b, P> {
    err: StepError,
    kept: Option<P>,
    permit: Option<(&'b Breaker, Permit)>,
    start: u64,
    used: Usage,
}

/// The share-stack mark of a fan-out in a run without a budget: no shares were lent.
const UNLIMITED: usize = usize::MAX;

/// Record buffers of forked branches kept for reuse by a runner.
const MAX_RECORD_BUFS: usize = 64;

/// One run's state: the graph, the caller's clock, options, the run's usage budget, totals
/// and exact counters, the runner's telemetry (if on) and its scratch.
pub(crate) struct Exec<'e, 'a, P, C, K, S, H> {
    pub(crate) g: &'e Graph<P, C>,
    pub(crate) clock: &'e K,
    pub(crate) env: RunEnv<'e>,
    pub(crate) budget: UsageBudget,
    /// Whether the run has a budget (else fan-outs share the unlimited one).
    pub(crate) limited: bool,
    pub(crate) usage: Usage,
    pub(crate) counters: Counters,
    pub(crate) tel: Option<&'e mut Telemetry<S>>,
    pub(crate) s: &'e mut Scratch<P, C>,
    /// The run's step records (in the runner's arena).
    pub(crate) records: Records<'a>,
    /// The host: panic guard, forks, shared cache.
    pub(crate) host: &'e H,
}

impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
    /// Runs node `id` on `input` against the context view `frame`.
    pub(crate) fn node(&mut self, id: u32, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let slot = g.slot[id as usize] as usize;
        match g.kind[id as usize] {
            NodeKind::Task => self.task(slot as u32, input, frame),
            NodeKind::Sequence => self.sequence(slot, input, frame),
            NodeKind::Parallel => self.parallel(id, slot, input, frame),
            NodeKind::Loop => self.repeat(id, slot, input, frame),
            NodeKind::Switch => self.branch(id, slot, input, frame),
            NodeKind::Map => self.map(id, slot, input, frame),
        }
    }

    fn task(&mut self, t: u32, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        match g.task_policy[t as usize] {
            NO_POLICY if self.s.fast_paths && self.tel.is_none() => self.plain_one(t, input, frame),
            NO_POLICY => {
                let flags = g.task_flags[t as usize];
                let one = [RunTask {
                    node: g.task_node[t as usize],
                    task: t,
                    policy: NO_POLICY,
                    stretch: 1,
                    may_write: flags.contains(StepFlags::WRITES_CONTEXT),
                    lean: false,
                    stretch_lean: false,
                    checks: Checks::None,
                    keep: false,
                    breaker: None,
                }];
                self.stretch::<false>(&one, input, frame)
            }
            policy => self.policy_task(policy, input, frame),
        }
    }

    /// A plain task on its own (a fan-out's branch, a loop body, a branch arm), without
    /// telemetry: what one turn of the stretch loop does, without setting the loop up.
    #[inline]
    fn plain_one(&mut self, t: u32, x: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let node = g.task_node[t as usize];
        let timed = self.clock.measures_latency();
        let t0 = stamp(self.clock, timed);
        if self.env.watch {
            let now = stop_tick(self.clock, timed, t0, &self.env);
            if let Some(kind) = stop_reason(&self.env, now) {
                return Err(self.stopped(node, kind));
            }
        }
        let may_write = g.task_flags[t as usize].contains(StepFlags::WRITES_CONTEXT);
        let step = &*g.task_step[t as usize];
        let mut cx = StepCx::new(
            frame.get(),
            &mut self.s.spares,
            &self.env,
            may_write,
            1,
            None,
        );
        let result = self.host.guard(|| step.run(x, &mut cx));
        let latency_ticks = if timed {
            self.clock.now().saturating_sub(t0)
        } else {
            0
        };
        let (written, usage) = cx.finish();
        self.book(usage);
        match result {
            Ok(y) => {
                if let Some(w) = written {
                    frame.commit(w, &mut self.s.spares);
                }
                self.counters.increment(Counter::StepsRun);
                self.counters.increment(Counter::StepsSucceeded);
                self.records
                    .push(StepRecord::plain(node, latency_ticks, usage));
                if self.overran(usage) {
                    return Err(self.overrun(node, usage));
                }
                Ok(y)
            }
            Err(e) => {
                let why = PlainFailure::Step {
                    e,
                    latency_ticks,
                    usage,
                };
                Err(self.plain_failure(node, written, why))
            }
        }
    }

    fn sequence(&mut self, s: usize, mut x: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let seq = &g.seqs[s];
        if let (Some(tasks), true) = (seq.tasks, self.s.fast_paths) {
            return self.task_run(&g.chains[tasks.range()], x, frame);
        }
        for &child in &g.children[seq.children.range()] {
            x = self.node(child, x, frame)?;
        }
        Ok(x)
    }

    /// A sequence whose children are all tasks: each stretch (plain and lean policy tasks)
    /// runs in one loop, the other policy tasks through the full policy pipeline.
    fn task_run(
        &mut self,
        tasks: &[RunTask],
        mut x: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let mut rest = tasks;
        while let Some(&head) = rest.first() {
            if head.in_stretch() {
                let n = (head.stretch as usize).clamp(1, rest.len());
                let (stretch, tail) = rest.split_at(n);
                x = if head.stretch_lean {
                    self.stretch::<true>(stretch, x, frame)?
                } else {
                    self.stretch::<false>(stretch, x, frame)?
                };
                rest = tail;
            } else {
                x = self.policy_task(head.policy, x, frame)?;
                rest = &rest[1..];
            }
        }
        Ok(x)
    }

    /// A failure of `node`: the reason goes to the runner's error slot (the run reports the
    /// last one, which is the one its stop carries), the small [`Stop`] up the call chain.
    #[cold]
    #[inline(never)]
    fn fail(&mut self, node: u32, kind: ErrorKind, abort: bool) -> Stop {
        let class = kind.class();
        self.s.error = Some(kind);
        Stop { node, class, abort }
    }

    /// Writes a task's record (outside the stretch loop), counts it (one step run, one
    /// outcome) and tells the telemetry its end.
    fn task_record(&mut self, rec: StepRecord, end_tick: u64) {
        self.counters.increment(Counter::StepsRun);
        self.counters.increment(outcome_counter(rec.outcome));
        if let Some(t) = self.tel.as_deref_mut() {
            t.latency(rec.latency_ticks);
            let outcome = end_outcome(rec.outcome);
            t.emit(rec.node.0, end_tick, EventKind::StepEnd { outcome });
        }
        self.records.push(rec);
    }

    /// Emits an event of the current task execution (telemetry on and the execution
    /// sampled).
    #[inline(always)]
    fn emit(&mut self, node: u32, tick: u64, kind: EventKind) {
        if let Some(t) = self.tel.as_deref_mut() {
            t.emit(node, tick, kind);
        }
    }

    /// Starts a task execution for telemetry: sampled or not, and its start event.
    #[inline(always)]
    fn begin(&mut self, node: u32, tick: u64) {
        if let Some(t) = self.tel.as_deref_mut() {
            t.begin();
            t.emit(node, tick, EventKind::StepStart);
        }
    }

    /// Records a step stopped before it started and returns the abort.
    #[cold]
    fn stopped(&mut self, node: u32, kind: ErrorKind) -> Stop {
        let mut rec = StepRecord::new(node);
        rec.outcome = StepOutcome::Aborted;
        rec.error_class = Some(kind.class());
        if let Some(t) = self.tel.as_deref_mut() {
            t.begin();
        }
        let now = self.clock.now();
        self.task_record(rec, now);
        self.fail(node, kind, true)
    }

    /// Stops the run before a task when it was cancelled or its deadline passed.
    #[inline(always)]
    fn check_stop(&mut self, node: u32, now: u64) -> Result<(), Stop> {
        if !self.env.watch {
            return Ok(());
        }
        match stop_reason(&self.env, now) {
            None => Ok(()),
            Some(kind) => Err(self.stopped(node, kind)),
        }
    }

    /// Books usage that had no reservation.
    #[inline(always)]
    fn book(&mut self, used: Usage) {
        if used != Usage::ZERO {
            self.usage = self.usage.saturating_add(used);
            charge(&mut self.budget, used);
        }
    }

    /// Records a failed plain task and returns its failure. A plain task has one attempt, no
    /// fallback and no skip: every recovery but abort ends in failure.
    #[cold]
    fn plain_failed(&mut self, mut rec: StepRecord, e: StepError) -> Stop {
        let abort = e.class().always_aborts();
        rec.outcome = if abort {
            StepOutcome::Aborted
        } else {
            StepOutcome::Failed
        };
        rec.error_class = Some(e.class());
        let now = self.clock.now();
        self.task_record(rec, now);
        self.fail(rec.node.0, ErrorKind::Step(e), abort)
    }

    /// The fast path: a stretch of plain tasks (and, when `LEAN`, lean policy tasks) in
    /// order, one clock read per task (a task's end is the next one's start), and one step
    /// context for as long as no task writes (a write ends the step context, so the copy is
    /// committed before the next task reads).
    ///
    /// The tasks run in an out-of-line turn ([`stretch_turn`]) that keeps the record cursor
    /// and the clock in registers: the buffer's room is checked once per chunk of tasks (no
    /// check per record; a full buffer sends each further record to a spill slot that is
    /// only counted), and a step that neither wrote nor reported usage costs one flag test
    /// (`StepCx::touched`) after it returns. A lean policy task's first attempt runs there
    /// (breaker permit, processors, step, validators); a failure or an open breaker comes
    /// back here for the recovery path, and the loop resumes after it.
    fn stretch<const LEAN: bool>(
        &mut self,
        tasks: &[RunTask],
        x: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        // Telemetry is picked once per stretch: off (or sampling nothing: only its breaker
        // transitions are reported, which the loop does in any case), the loop has no
        // per-step test for it.
        if self.tel.as_deref().is_some_and(Telemetry::samples_any) {
            self.stretch_loop::<LEAN, true>(tasks, x, frame)
        } else {
            self.stretch_loop::<LEAN, false>(tasks, x, frame)
        }
    }

    fn stretch_loop<const LEAN: bool, const TEL: bool>(
        &mut self,
        tasks: &[RunTask],
        mut x: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let clock = self.clock;
        let host = self.host;
        let timed = TEL || clock.measures_latency();
        let mut t0 = stamp(clock, timed);
        let mut rest = tasks;
        'stretch: while !rest.is_empty() {
            let env = &self.env;
            let s = &mut *self.s;
            let mut cx = StepCx::new(frame.get(), &mut s.spares, env, false, 1, None);
            let records = &mut self.records;
            let free = records.buf.get_mut(records.len..).unwrap_or_default();
            let room = free.len();
            let segment = rest.len();
            // The tasks of `chunk` put their records at `dst`, one after the other: the
            // chunk has at most `room` tasks, so each record has a free slot of its own and
            // the loop checks nothing per record. Once the buffer is full, each chunk is one
            // task whose record goes to `spill` (overwritten, never read) and is counted as
            // dropped.
            let mut spill = MaybeUninit::<StepRecord>::uninit();
            let (mut dst, mut chunk, mut after) = if room == 0 {
                let (chunk, after) = rest.split_at(1);
                (spill.as_mut_ptr(), chunk.iter(), after)
            } else {
                let (chunk, after) = rest.split_at(room.min(rest.len()));
                (free.as_mut_ptr().cast::<StepRecord>(), chunk.iter(), after)
            };
            // Puts the record of the task under way.
            macro_rules! put {
                ($rec:expr) => {{
                    // SAFETY: `dst` is `spill` (for a chunk of one task) or the next free
                    // slot of `free`: a chunk has at most `room` tasks, each puts at most one
                    // record, and `dst` moves one slot per record put, so it stays below
                    // `free.len()`; nothing else touches `free` until the segment settles.
                    unsafe {
                        dst.write($rec);
                        dst = dst.add(1);
                    }
                }};
            }
            // The next chunk, when the buffer is full: one task, its record to `spill`.
            macro_rules! spill_chunk {
                () => {{
                    let (next, tail) = after.split_at(1);
                    dst = spill.as_mut_ptr();
                    (chunk, after) = (next.iter(), tail);
                }};
            }
            // The tasks of the stretch not taken yet.
            macro_rules! remaining {
                () => {
                    &rest[segment - (chunk.len() + after.len())..]
                };
            }
            // Accounts for the records put so far (the tasks taken, but `$pending` of them
            // that put none): each is one step run that succeeded.
            macro_rules! settle_records {
                ($pending:expr) => {{
                    let put = segment - (chunk.len() + after.len()) - $pending;
                    let written_records = put.min(room);
                    let dropped = u32::try_from(put - written_records).unwrap_or(u32::MAX);
                    records.settle(written_records, dropped);
                    self.counters.add_n(Counter::StepsRun, put as u64);
                    self.counters.add_n(Counter::StepsSucceeded, put as u64);
                }};
            }
            loop {
                let every = TEL && self.tel.as_deref().is_some_and(Telemetry::keeps_all);
                let tel = self.tel.as_deref_mut();
                let counters = &mut self.counters;
                macro_rules! turn {
                    ($every:literal, $breakers:literal, $watch:literal) => {
                        // SAFETY: `dst` has room for `chunk.len()` records (see `put`).
                        unsafe {
                            stretch_turn::<P, C, K, S, H, LEAN, TEL, $every, $breakers, $watch>(
                                g, clock, host, env, counters, tel, &mut cx, &mut chunk, &mut dst,
                                &mut t0, x,
                            )
                        }
                    };
                }
                // Breakers matter only to lean tasks. Without a deadline or a cancel flag a
                // lean turn has no stop test per task (a plain one's loop is small enough for
                // the compiler to take the test out itself).
                macro_rules! lean_turn {
                    ($every:literal) => {
                        match (s.breakers, env.watch) {
                            (true, true) => turn!($every, true, true),
                            (true, false) => turn!($every, true, false),
                            (false, true) => turn!($every, false, true),
                            (false, false) => turn!($every, false, false),
                        }
                    };
                }
                let exit = match (LEAN, TEL && every) {
                    (false, false) => turn!(false, false, true),
                    (false, true) => turn!(true, false, true),
                    (true, false) => lean_turn!(false),
                    (true, true) => lean_turn!(true),
                };
                match exit {
                    Exit::Done(y) => {
                        x = y;
                        if after.is_empty() {
                            break;
                        }
                        spill_chunk!();
                    }
                    Exit::Touched {
                        y,
                        node,
                        latency_ticks,
                    } => {
                        x = y;
                        // The step wrote the context or reported usage.
                        let usage = take_usage(&mut cx, &mut self.usage, &mut self.budget);
                        put!(StepRecord::plain(node, latency_ticks, usage));
                        // Its usage took the budget past a limit (see `overrun`).
                        if self.limited && self.budget.exceeded().is_some() {
                            let (written, _) = cx.finish();
                            settle_records!(0);
                            return Err(self.overrun_after(node, usage, written, frame));
                        }
                        if cx.has_written() {
                            // Commit the write before the next task reads.
                            break;
                        }
                    }
                    Exit::Stopped { node, kind } => {
                        let (written, _) = cx.finish();
                        settle_records!(1);
                        let why = PlainFailure::Stopped(kind);
                        return Err(self.plain_failure(node, written, why));
                    }
                    Exit::Failed {
                        node,
                        e,
                        latency_ticks,
                    } => {
                        let usage = take_usage(&mut cx, &mut self.usage, &mut self.budget);
                        let (written, _) = cx.finish();
                        settle_records!(1);
                        let why = PlainFailure::Step {
                            e,
                            latency_ticks,
                            usage,
                        };
                        return Err(self.plain_failure(node, written, why));
                    }
                    Exit::BreakerOpen {
                        pol,
                        x: input,
                        start,
                    } => {
                        let (written, _) = cx.finish();
                        debug_assert!(written.is_none(), "a write ends the context");
                        settle_records!(1);
                        rest = remaining!();
                        let rec = StepRecord::new(pol.node);
                        x = self.breaker_open(pol, input, rec, start, frame)?;
                        t0 = stamp(clock, timed);
                        continue 'stretch;
                    }
                    Exit::LeanFailed {
                        pol,
                        err,
                        kept,
                        permit,
                        start,
                    } => {
                        // The attempt's usage is booked with the task's; its writes are
                        // discarded.
                        let used = cx.usage;
                        let (written, _) = cx.finish();
                        settle_records!(1);
                        rest = remaining!();
                        if let Some(w) = written {
                            self.s.spares.give(w);
                        }
                        let first = FirstAttempt {
                            err,
                            kept,
                            permit,
                            start,
                            used,
                        };
                        x = self.lean_failed(pol, first, frame)?;
                        t0 = stamp(clock, timed);
                        continue 'stretch;
                    }
                }
            }
            settle_records!(0);
            rest = remaining!();
            let (written, _) = cx.finish();
            if let Some(w) = written {
                frame.commit(w, &mut self.s.spares);
            }
        }
        Ok(x)
    }

    /// Records a plain task that failed or was stopped before it started.
    #[cold]
    #[inline(never)]
    fn plain_failure(&mut self, node: u32, written: Option<C>, why: PlainFailure) -> Stop {
        // A failed (or never started) task's writes are discarded.
        if let Some(w) = written {
            self.s.spares.give(w);
        }
        match why {
            PlainFailure::Stopped(kind) => self.stopped(node, kind),
            PlainFailure::Step {
                e,
                latency_ticks,
                usage,
            } => {
                let mut rec = StepRecord::new(node);
                rec.attempts = 1;
                rec.latency_ticks = latency_ticks;
                rec.usage = usage;
                let stop = self.plain_failed(rec, e);
                self.or_overrun(node, usage, Err::<(), _>(stop))
                    .unwrap_err()
            }
        }
    }

    /// One attempt: pre-processors, step, post-processors, validators. The attempt's context
    /// writes are committed only if it succeeds.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &mut self,
        t: u32,
        cfg: &TaskConfig<P, C>,
        x: P,
        attempt: u32,
        feedback: Option<&StepError>,
        frame: &mut Frame<'_, C>,
        used: &mut Usage,
    ) -> Result<P, StepError> {
        let g = self.g;
        // A timeout brings the attempt's deadline forward; taking longer fails the attempt.
        let timed = cfg.timeout.map(|limit| (self.clock.now(), limit));
        let env = match timed {
            None => self.env,
            Some((start, limit)) => RunEnv {
                deadline: self.env.deadline.min(start.saturating_add(limit)),
                watch: true,
                ..self.env
            },
        };
        let mut cx = StepCx::new(
            frame.get(),
            &mut self.s.spares,
            &env,
            cfg.writes,
            attempt,
            feedback,
        );
        let step = &*g.task_step[t as usize];
        let mut result = self.host.guard(|| run_attempt(cfg, step, x, &mut cx));
        if let (Some((start, limit)), true) = (timed, result.is_ok()) {
            let took = self.clock.now().saturating_sub(start);
            if took > limit {
                result = Err(StepError::timeout(
                    "the attempt took longer than its timeout",
                ));
            }
        }
        let (written, usage) = cx.finish();
        *used = used.saturating_add(usage);
        if let Some(w) = written {
            if result.is_ok() {
                frame.commit(w, &mut self.s.spares);
            } else {
                self.s.spares.give(w);
            }
        }
        result
    }

    /// A task with policies, in the contract's order: breaker, cache, usage, attempts,
    /// classification, fallback, record. A first attempt that succeeds is the straight path;
    /// a failure (or an open breaker) goes to [`recover`](Self::recover).
    fn policy_task(&mut self, p: u32, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let pol = &g.policies[p as usize];
        let cfg = &pol.cfg;
        // Untimed (see `Clock::measures_latency`), only a task whose policies need the time
        // reads the clock.
        let timed = self.clock.measures_latency()
            || self.tel.is_some()
            || pol.flags.intersects(StepFlags::TIMED);
        let start = stamp(self.clock, timed);
        self.check_stop(pol.node, stop_tick(self.clock, timed, start, &self.env))?;
        self.begin(pol.node, start);
        let mut rec = StepRecord::new(pol.node);

        // 1. Circuit breaker: an open breaker fails fast (classified, so the fallback runs).
        let permit = match cfg.breaker.as_ref().filter(|_| self.s.breakers) {
            None => None,
            Some(b) => match b.try_acquire(start) {
                Ok(permit) => {
                    if let Some(t) = permit.transition() {
                        let tel = self.tel.as_deref_mut();
                        note_transition(&mut self.counters, tel, pol.node, start, t);
                    }
                    Some((&**b, permit))
                }
                Err(_) => return self.breaker_open(pol, input, rec, start, frame),
            },
        };

        // 2. Cache: a hit returns the stored output without running the step.
        let mut key = None;
        let shared = self.host.cache();
        if let (Some(slot), true) = (&cfg.cache, shared.is_some() || self.s.cache.is_some()) {
            let k = (slot.key)(&slot.fingerprint, &input);
            let hit = match (shared, &mut self.s.cache) {
                (Some(c), _) => c.lookup(&k),
                (None, Some(c)) => c.get(&k, start).cloned(),
                (None, None) => None,
            };
            if let Some(out) = hit {
                // The step did not run: the breaker learns no outcome, but gets its permit
                // back (a half-open probe must not be lost to a hit).
                if let Some((b, permit)) = permit {
                    b.release(permit);
                }
                self.counters.increment(Counter::CacheHits);
                self.emit(pol.node, start, EventKind::CacheHit);
                rec.cache_hit = true;
                let now = self.clock.now();
                rec.latency_ticks = now.saturating_sub(start);
                self.task_record(rec, now);
                return Ok(out);
            }
            self.counters.increment(Counter::CacheMisses);
            self.emit(pol.node, start, EventKind::CacheMiss);
            key = Some((k, shared.is_some()));
        }

        // 3. Usage: reserve the estimate; a denial aborts the run (no retry, no fallback).
        let mut reservation = None;
        if pol.flags.contains(StepFlags::USAGE) {
            match self.budget.reserve(cfg.usage_estimate) {
                Ok(r) => reservation = Some(r),
                Err(denied) => {
                    if let Some((b, permit)) = permit {
                        b.release(permit);
                    }
                    if let (Some((k, true)), Some(c)) = (key, shared) {
                        c.fill(k, None);
                    }
                    return Err(self.usage_denied(pol, rec, start, denied));
                }
            }
        }

        // 4. The first attempt; 5-6 (classification, retries, fallback) only if it fails.
        let keep_input = pol.flags.intersects(StepFlags::RETRY | StepFlags::FALLBACK);
        let (x, kept) = if keep_input {
            (input.clone(), Some(input))
        } else {
            (input, None)
        };
        let mut used = Usage::ZERO;
        rec.attempts = 1;
        let first = self.attempt(pol.task, cfg, x, 1, None, frame, &mut used);
        let (result, step_succeeded) = match first {
            Ok(y) => (Ok(y), true),
            Err(e) => self.recover(pol, kept, e, &mut rec, &mut used, frame),
        };
        let end = Settle {
            start,
            permit,
            key,
            reservation,
            used,
            step_succeeded,
        };
        self.settle(pol, rec, end, result)
    }

    /// 7. Settles usage, fills the cache, teaches the breaker, writes the record.
    #[inline(always)]
    fn settle(
        &mut self,
        pol: &TaskPolicy<P, C>,
        mut rec: StepRecord,
        end: Settle<'_>,
        result: Result<P, Stop>,
    ) -> Result<P, Stop> {
        match end.reservation {
            Some(r) => {
                // An overrun past a limit marks the budget exceeded (later reservations
                // are denied); this step already ran.
                let _ = self.budget.reconcile(r, end.used);
                self.usage = self.usage.saturating_add(end.used);
            }
            None => self.book(end.used),
        }
        // An untimed start (see `policy_task`) needs no end: its latency is 0.
        let now = match end.start {
            UNTIMED => UNTIMED,
            _ => self.clock.now(),
        };
        match (end.key, end.step_succeeded, &result) {
            (Some((k, true)), ok, result) => {
                let output = if ok { result.as_ref().ok() } else { None };
                if let Some(c) = self.host.cache() {
                    c.fill(k, output);
                }
            }
            (Some((k, false)), true, Ok(out)) => {
                if let Some(cache) = &mut self.s.cache {
                    // What the insert pushes out (an older entry) is dropped.
                    drop(cache.insert(k, out.clone(), now));
                }
            }
            _ => {}
        }
        if let Some((b, permit)) = end.permit {
            let outcome = if end.step_succeeded {
                CallOutcome::Success
            } else {
                CallOutcome::Failure
            };
            let latency = now.saturating_sub(end.start);
            if let Some(transition) = b.record(permit, outcome, latency, now) {
                let tel = self.tel.as_deref_mut();
                note_transition(&mut self.counters, tel, pol.node, now, transition);
            }
        }
        rec.usage = end.used;
        rec.latency_ticks = now.saturating_sub(end.start);
        if let Err(stop) = &result {
            rec.outcome = if stop.abort {
                StepOutcome::Aborted
            } else {
                StepOutcome::Failed
            };
        }
        self.task_record(rec, now);
        self.or_overrun(pol.node, end.used, result)
    }

    /// A lean policy task whose first attempt (run by the stretch loop) failed:
    /// classification, retries, fallback, then the usual settling.
    #[cold]
    #[inline(never)]
    fn lean_failed(
        &mut self,
        pol: &TaskPolicy<P, C>,
        first: FirstAttempt<'_, P>,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let mut rec = StepRecord::new(pol.node);
        rec.attempts = 1;
        let mut used = first.used;
        let (result, step_succeeded) =
            self.recover(pol, first.kept, first.err, &mut rec, &mut used, frame);
        let end = Settle {
            start: first.start,
            permit: first.permit,
            key: None,
            reservation: None,
            used,
            step_succeeded,
        };
        self.settle(pol, rec, end, result)
    }

    /// An open breaker: the step does not run (no cache lookup, no reservation); the
    /// circuit-open error is classified like any other, so the fallback still runs.
    #[cold]
    #[inline(never)]
    fn breaker_open(
        &mut self,
        pol: &TaskPolicy<P, C>,
        input: P,
        mut rec: StepRecord,
        start: u64,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        self.counters.increment(Counter::BreakerRejections);
        if let Some(t) = self.tel.as_deref_mut() {
            t.emit_always(pol.node, start, EventKind::BreakerRejected);
        }
        let open = StepError::new(ErrorClass::CircuitOpen, "circuit breaker open");
        let mut used = Usage::ZERO;
        let (result, _) = self.recover(pol, Some(input), open, &mut rec, &mut used, frame);
        let end = Settle {
            start,
            permit: None,
            key: None,
            reservation: None,
            used,
            step_succeeded: false,
        };
        self.settle(pol, rec, end, result)
    }

    /// A usage denial: recorded, and the run aborts.
    #[cold]
    #[inline(never)]
    fn usage_denied(
        &mut self,
        pol: &TaskPolicy<P, C>,
        mut rec: StepRecord,
        start: u64,
        denied: UsageDenied,
    ) -> Stop {
        self.counters.increment(Counter::UsageDenials);
        self.emit(pol.node, start, EventKind::UsageDenied);
        rec.outcome = StepOutcome::Aborted;
        rec.error_class = Some(ErrorClass::Usage);
        let now = self.clock.now();
        rec.latency_ticks = now.saturating_sub(start);
        self.task_record(rec, now);
        let kind = ErrorKind::UsageDenied {
            requested: pol.cfg.usage_estimate,
            denied,
        };
        self.fail(pol.node, kind, true)
    }

    /// Classification, retries with backoff, and the fallback, after a failed attempt (or an
    /// open breaker): `err` is the failure, `input` the task's input when it was kept (or
    /// never used). Returns the task's result and whether the step itself succeeded.
    #[cold]
    #[inline(never)]
    fn recover(
        &mut self,
        pol: &TaskPolicy<P, C>,
        mut input: Option<P>,
        mut err: StepError,
        rec: &mut StepRecord,
        used: &mut Usage,
        frame: &mut Frame<'_, C>,
    ) -> (Result<P, Stop>, bool) {
        let cfg = &pol.cfg;
        let node = pol.node;
        let keep_input = pol.flags.intersects(StepFlags::RETRY | StepFlags::FALLBACK);
        // The failure at hand is the first attempt's (or the open breaker's, in place of it).
        let mut retry = RetryState::new(cfg.retry);
        loop {
            rec.error_class = Some(err.class());
            match retry.on_failure(err.class(), &cfg.recovery, &mut self.s.rng) {
                Decision::RetryAfter(ticks) => {
                    self.clock.wait(ticks);
                    rec.backoff_ticks = rec.backoff_ticks.saturating_add(ticks);
                    let now = self.clock.now();
                    if let Err(stop) = self.check_stop(node, now) {
                        return (Err(stop), false);
                    }
                    let x = if keep_input {
                        input
                            .as_ref()
                            .expect("kept for retries and the fallback")
                            .clone()
                    } else {
                        input.take().expect("one attempt without a fallback")
                    };
                    let attempt = rec.attempts + 1;
                    rec.attempts = attempt;
                    self.counters.increment(Counter::Retries);
                    self.emit(node, now, EventKind::Retry { attempt });
                    match self.attempt(pol.task, cfg, x, attempt, Some(&err), frame, used) {
                        Ok(y) => return (Ok(y), true),
                        Err(e) => err = e,
                    }
                }
                Decision::Fallback => {
                    let result = match pol.fallback_task {
                        Some(fb) => {
                            rec.fallback_used = true;
                            self.counters.increment(Counter::FallbacksUsed);
                            let to_step = self.g.task_node[fb as usize];
                            let now = self.clock.now();
                            self.emit(node, now, EventKind::Fallback { to_step });
                            let x = input.take().expect("kept for the fallback");
                            self.task(fb, x, frame)
                        }
                        None => Err(self.fail(node, ErrorKind::Step(err), false)),
                    };
                    return (result, false);
                }
                Decision::Skip => {
                    rec.outcome = StepOutcome::Skipped;
                    let out = cfg
                        .default_output
                        .clone()
                        .expect("validated: skip has a default");
                    return (Ok(out), false);
                }
                decision @ (Decision::Fail | Decision::Abort) => {
                    let abort = decision == Decision::Abort;
                    let stop = self.fail(node, ErrorKind::Step(err), abort);
                    return (Err(stop), false);
                }
            }
        }
    }

    /// Merges a finished branch's context (if it wrote one) and gives the copy back.
    fn merge_back(
        &mut self,
        node: u32,
        strategy: &MergeStrategy<C>,
        base: &C,
        merged: &mut Option<C>,
        branch_frame: Frame<'_, C>,
        position: u32,
    ) -> Result<(), Stop> {
        let c = match branch_frame {
            Frame::Owned(c) => c,
            Frame::Borrowed(_) => return Ok(()),
            Frame::Copied(c) => {
                self.s.spares.give(c);
                return Ok(());
            }
        };
        let r = merge_branch(strategy, base, merged, &c, position, &mut self.s.spares);
        self.s.spares.give(c);
        r.map_err(|e| {
            let kind = match e {
                MergeError::Conflict { part, branch } => ErrorKind::MergeConflict { part, branch },
                MergeError::User(e) => ErrorKind::MergeFailed(e),
            };
            self.fail(node, kind, false)
        })
    }

    /// Lends the run's budget to the `parts` branches (or items) of a fan-out: the shares
    /// sum to what was available, so branches cannot together overspend it whatever order a
    /// concurrent runtime runs them in (the same rule here, one branch after another). They
    /// wait on the share stack, the first branch's on top; returns the stack's height below
    /// them.
    ///
    /// A run without a budget shares its unlimited one instead ([`UNLIMITED`]): nothing can
    /// be denied, so splitting would only cost time.
    fn lend(&mut self, parts: usize) -> usize {
        if !self.limited {
            return UNLIMITED;
        }
        let bottom = self.s.shares.len();
        let split = self.budget.split(parts);
        self.s.shares.extend(split);
        self.s.shares[bottom..].reverse();
        bottom
    }

    /// Runs node `id` on the next share of the fan-out under way, then merges the share
    /// back: what the branch did not use returns to the budget.
    fn on_share(
        &mut self,
        shares: usize,
        id: u32,
        x: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        if shares == UNLIMITED {
            return self.node(id, x, frame);
        }
        let share = self.s.shares.pop().expect("one share per branch");
        let parent = core::mem::replace(&mut self.budget, share);
        let result = self.node(id, x, frame);
        let share = core::mem::replace(&mut self.budget, parent);
        // A branch that went past its share (an overrun at reconciliation) reported it in
        // its own budget; the charge here can only mark the run's budget exceeded.
        let _ = self.budget.merge(share);
        result
    }

    /// Merges back, unused, the shares of branches that will not run (a fan-out that
    /// stopped early).
    fn repay(&mut self, bottom: usize) {
        if bottom == UNLIMITED {
            return;
        }
        while self.s.shares.len() > bottom {
            let share = self.s.shares.pop().expect("above bottom");
            let _ = self.budget.merge(share);
        }
    }

    /// What the branches of a forked fan-out over `base` share.
    fn fan<'f>(&self, base: &'f C, flags: &'f [CancelFlag], stop_later: bool) -> Fan<'f, P, C, K, H>
    where
        Self: 'f,
    {
        Fan {
            g: self.g,
            base,
            clock: self.clock,
            deadline: self.env.deadline,
            cancel: self.env.cancel,
            flags,
            stop_later,
            limited: self.limited,
            telemetry: self.tel.is_some(),
            host: self.host,
        }
    }

    /// One branch (or map item) of a forked fan-out, with its share of the budget (lent by
    /// [`lend`](Self::lend)) and a spare record buffer.
    fn branch_job(&mut self, node: u32, input: P, index: usize, shares: usize) -> Branch<P, C> {
        let budget = if shares == UNLIMITED {
            UsageBudget::unlimited()
        } else {
            self.s.shares.pop().expect("one share per branch")
        };
        Branch {
            node,
            input: Some(input),
            index,
            budget,
            records: self.s.record_bufs.pop().unwrap_or_default(),
            out: None,
        }
    }

    /// `count` lowered cancel flags and an empty branch list, from the scratch's spares.
    fn take_fan(&mut self, count: usize) -> (Vec<CancelFlag>, Vec<Branch<P, C>>) {
        let mut flags = self.s.flag_bufs.pop().unwrap_or_default();
        flags.clear();
        flags.resize_with(count, CancelFlag::new);
        let branches = self.s.fan_bufs.pop().unwrap_or_default();
        (flags, branches)
    }

    /// Keeps a forked fan-out's flags and (emptied) branch list for the next one.
    fn give_fan(&mut self, flags: Vec<CancelFlag>, mut branches: Vec<Branch<P, C>>) {
        branches.clear();
        if self.s.fan_bufs.len() < MAX_RECORD_BUFS {
            self.s.fan_bufs.push(branches);
            self.s.flag_bufs.push(flags);
        }
    }

    /// Hands a forked fan-out's branches to the host (at most `width` at once), folds what
    /// they did ([`fold_forked`](Self::fold_forked)) and keeps the lists for the next fork.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn fork_fold(
        &mut self,
        id: u32,
        width: u32,
        merge: &MergeStrategy<C>,
        propagate: bool,
        (flags, mut branches): (Vec<CancelFlag>, Vec<Branch<P, C>>),
        base: &C,
        acc: Option<P>,
        reduce: &(dyn Fn(P, P) -> P + Send + Sync),
    ) -> Result<(Option<P>, Option<C>), Stop> {
        let fan = self.fan(base, &flags, propagate);
        self.host.fork(width as usize, &fan, &mut branches);
        let folded = self.fold_forked(id, merge, propagate, &mut branches, base, acc, reduce);
        self.give_fan(flags, branches);
        folded
    }

    /// Folds what the branches of a forked fan-out did, in declaration order, by the inline
    /// path's rules: every branch's records, counters, usage and unused share are taken (they
    /// ran); outputs are reduced from `acc` and contexts merged until the first failure that
    /// stops the fan-out (any under `propagate`, an abort always), which is returned. Returns
    /// the reduced output (`None` if no branch succeeded) and the merged context.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn fold_forked(
        &mut self,
        id: u32,
        merge: &MergeStrategy<C>,
        propagate: bool,
        branches: &mut [Branch<P, C>],
        base: &C,
        mut acc: Option<P>,
        reduce: &(dyn Fn(P, P) -> P + Send + Sync),
    ) -> Result<(Option<P>, Option<C>), Stop> {
        let mut merged: Option<C> = None;
        let mut stop: Option<Stop> = None;
        for (position, b) in branches.iter_mut().enumerate() {
            let out = b
                .out
                .take()
                .expect("the host runs every branch it is given");
            for rec in &b.records {
                self.records.push(*rec);
            }
            self.records.dropped = self.records.dropped.saturating_add(out.dropped);
            if self.s.record_bufs.len() < MAX_RECORD_BUFS {
                let mut buf = core::mem::take(&mut b.records);
                buf.clear();
                self.s.record_bufs.push(buf);
            }
            self.counters.add(&out.counters);
            self.usage = self.usage.saturating_add(out.usage);
            if self.limited {
                let share = core::mem::replace(&mut b.budget, UsageBudget::unlimited());
                let _ = self.budget.merge(share);
            }
            if stop.is_some() {
                if let Some(c) = out.context {
                    self.s.spares.give(c);
                }
                continue;
            }
            match out.result {
                Ok(y) => {
                    let bf = match out.context {
                        Some(c) => Frame::Owned(c),
                        None => Frame::Borrowed(base),
                    };
                    match self.merge_back(id, merge, base, &mut merged, bf, position as u32) {
                        Ok(()) => {
                            acc = Some(match acc.take() {
                                None => y,
                                Some(a) => reduce(a, y),
                            });
                        }
                        Err(s) => stop = Some(s),
                    }
                }
                Err((s, kind)) => {
                    if let Some(c) = out.context {
                        self.s.spares.give(c);
                    }
                    if s.abort || propagate {
                        self.s.error = Some(kind);
                        stop = Some(s);
                    }
                }
            }
        }
        match stop {
            Some(s) => {
                self.release(merged);
                Err(s)
            }
            None => Ok((acc, merged)),
        }
    }

    /// A branch's view of the fan-out's context `base`: borrowed (copy-on-write), or an
    /// eager copy when copy-on-write is switched off.
    #[inline]
    pub(crate) fn branch_frame<'b>(&mut self, base: &'b C) -> Frame<'b, C> {
        if self.s.copy_on_write {
            Frame::Borrowed(base)
        } else {
            Frame::Copied(self.s.spares.copy_of(base))
        }
    }

    fn release(&mut self, merged: Option<C>) {
        if let Some(m) = merged {
            self.s.spares.give(m);
        }
    }

    fn parallel(
        &mut self,
        id: u32,
        p: usize,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let par = &g.pars[p];
        debug_assert!(par.max_width >= 1, "validated: width");
        if let (Some(program), true) = (par.program, self.pure_ok()) {
            return self.pure_fan(&g.pure_ops[program.range()], input, frame.get());
        }
        let count = par.branches.len;
        let propagate = par.failure == FailureStrategy::Propagate;
        if count >= 2
            && self
                .host
                .forks(NodeId(id), count as usize, g.cost[id as usize])
        {
            return self.parallel_forked(id, p, input, frame);
        }
        let base: &C = frame.get();
        let mut merged: Option<C> = None;
        let mut acc: Option<P> = None;
        let mut input = Some(input);
        let shares = self.lend(count as usize);
        for (position, &branch) in g.children[par.branches.range()].iter().enumerate() {
            let position = position as u32;
            let x = if position + 1 == count {
                input.take().expect("the last branch takes the input")
            } else {
                input
                    .as_ref()
                    .expect("input kept until the last branch")
                    .clone()
            };
            let mut bf = self.branch_frame(base);
            match self.on_share(shares, branch, x, &mut bf) {
                Ok(out) => {
                    if let Err(stop) =
                        self.merge_back(id, &par.merge, base, &mut merged, bf, position)
                    {
                        self.release(merged);
                        self.repay(shares);
                        return Err(stop);
                    }
                    acc = Some(match acc.take() {
                        None => out,
                        Some(a) => (g.par_reduce[p])(a, out),
                    });
                }
                Err(stop) => {
                    bf.release(&mut self.s.spares);
                    if stop.abort || propagate {
                        // Siblings not yet started are told to stop by never starting.
                        self.release(merged);
                        self.repay(shares);
                        return Err(stop);
                    }
                }
            }
        }
        debug_assert!(
            shares == UNLIMITED || self.s.shares.len() == shares,
            "every branch took its share"
        );
        self.parallel_end(id, count, acc, merged, frame)
    }

    /// A parallel node whose branches the host runs ([`Host::fork`]).
    fn parallel_forked(
        &mut self,
        id: u32,
        p: usize,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let par = &g.pars[p];
        let count = par.branches.len;
        let propagate = par.failure == FailureStrategy::Propagate;
        let (flags, mut branches) = self.take_fan(count as usize);
        let shares = self.lend(count as usize);
        let mut input = Some(input);
        let children = &g.children[par.branches.range()];
        for (index, &node) in children.iter().enumerate() {
            let x = if index + 1 == children.len() {
                input.take().expect("the last branch takes the input")
            } else {
                input.as_ref().expect("kept until the last branch").clone()
            };
            branches.push(self.branch_job(node, x, index, shares));
        }
        let (acc, merged) = self.fork_fold(
            id,
            par.max_width,
            &par.merge,
            propagate,
            (flags, branches),
            frame.get(),
            None,
            &*g.par_reduce[p],
        )?;
        self.parallel_end(id, count, acc, merged, frame)
    }

    /// A parallel node's end: its reduced output and merged context, or, when no branch
    /// succeeded (the ignore strategy), the all-failed error.
    fn parallel_end(
        &mut self,
        id: u32,
        count: u32,
        acc: Option<P>,
        merged: Option<C>,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        match acc {
            Some(out) => {
                if let Some(m) = merged {
                    frame.commit(m, &mut self.s.spares);
                }
                Ok(out)
            }
            None => {
                self.release(merged);
                Err(self.fail(id, ErrorKind::AllBranchesFailed { branches: count }, false))
            }
        }
    }

    fn repeat(&mut self, id: u32, l: usize, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let lp = &g.loops[l];
        let start = stamp(self.clock, self.clock.measures_latency());
        let mut rec = StepRecord::new(id);
        let mut x = input;
        let exit = loop {
            x = match self.node(lp.body, x, frame) {
                Ok(y) => y,
                Err(stop) => {
                    rec.outcome = if stop.abort {
                        StepOutcome::Aborted
                    } else {
                        StepOutcome::Failed
                    };
                    rec.error_class = Some(stop.class);
                    rec.latency_ticks = stamp(self.clock, start != UNTIMED).saturating_sub(start);
                    self.records.push(rec);
                    return Err(stop);
                }
            };
            rec.attempts += 1;
            if let Some(pred) = &lp.exit {
                if pred(&x, frame.get(), rec.attempts) {
                    break LoopExit::Predicate;
                }
            }
            if rec.attempts >= lp.max_iterations {
                break LoopExit::Bound;
            }
        };
        rec.loop_exit = Some(exit);
        rec.latency_ticks = stamp(self.clock, start != UNTIMED).saturating_sub(start);
        self.records.push(rec);
        Ok(x)
    }

    fn branch(&mut self, id: u32, b: usize, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let br = &g.switches[b];
        let key = (br.selector)(&input, frame.get());
        let arm = match br.keys.iter().position(|k| *k == key) {
            Some(i) => Some(g.children[br.arms.start as usize + i]),
            None => br.default,
        };
        match arm {
            Some(arm) => self.node(arm, input, frame),
            None => Err(self.fail(id, ErrorKind::NoArmMatched { key }, false)),
        }
    }

    fn map(&mut self, id: u32, m: usize, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let mp = &g.maps[m];
        // Items live on the runner's item stack above `bottom`; nested maps push above ours
        // and pop theirs before returning.
        let bottom = self.s.items.len();
        let mut items = Items {
            buf: &mut self.s.items,
            base: bottom,
            limit: mp.max_items as usize,
            overflowed: false,
        };
        let seed = (mp.split)(input, frame.get(), &mut items);
        let overflowed = items.overflowed;
        let seed = match seed {
            Ok(_) if overflowed => {
                self.s.items.truncate(bottom);
                return Err(self.fail(
                    id,
                    ErrorKind::TooManyItems {
                        limit: mp.max_items,
                    },
                    false,
                ));
            }
            Ok(seed) => seed,
            Err(e) => {
                self.s.items.truncate(bottom);
                let abort = e.class().always_aborts();
                return Err(self.fail(id, ErrorKind::Step(e), abort));
            }
        };
        let count = self.s.items.len() - bottom;
        if count >= 2 && self.host.forks(NodeId(id), count, g.cost[id as usize]) {
            let (flags, mut branches) = self.take_fan(count);
            let shares = self.lend(count);
            let mut items = core::mem::take(&mut self.s.items);
            for (index, item) in items.drain(bottom..).enumerate() {
                branches.push(self.branch_job(mp.body, item, index, shares));
            }
            self.s.items = items;
            let (acc, merged) = self.fork_fold(
                id,
                mp.max_width,
                &mp.merge,
                true,
                (flags, branches),
                frame.get(),
                Some(seed),
                &*mp.reduce,
            )?;
            if let Some(m) = merged {
                frame.commit(m, &mut self.s.spares);
            }
            return Ok(acc.expect("a map's fold starts from its seed"));
        }
        self.s.items[bottom..].reverse();
        let base: &C = frame.get();
        let mut merged: Option<C> = None;
        let mut acc = seed;
        let shares = self.lend(count);
        for position in 0..count as u32 {
            let item = self
                .s
                .items
                .pop()
                .expect("this map's items are above `bottom`");
            let mut bf = self.branch_frame(base);
            let out = match self.on_share(shares, mp.body, item, &mut bf) {
                Ok(out) => out,
                Err(stop) => {
                    bf.release(&mut self.s.spares);
                    self.s.items.truncate(bottom);
                    self.release(merged);
                    self.repay(shares);
                    return Err(stop);
                }
            };
            if let Err(stop) = self.merge_back(id, &mp.merge, base, &mut merged, bf, position) {
                self.s.items.truncate(bottom);
                self.release(merged);
                self.repay(shares);
                return Err(stop);
            }
            acc = (mp.reduce)(acc, out);
        }
        debug_assert_eq!(
            self.s.items.len(),
            bottom,
            "a map leaves the item stack as it found it"
        );
        if let Some(m) = merged {
            frame.commit(m, &mut self.s.spares);
        }
        Ok(acc)
    }
}
