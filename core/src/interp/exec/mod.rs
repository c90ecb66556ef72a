//! The interpreter proper: `Exec`, one run's state, and node dispatch. Each concern has a
//! room of its own: the fast path (`stretch`), the task policy pipeline (`policy`), fan-outs
//! (`fanout`), loops and switches (`control`), and pure fan-out programs (`pure`). See
//! `interp/README.md` for the paths a task can take.

use super::host::Host;
use super::records::{Records, StepRecord};
use super::results::{ErrorKind, Stop};
use super::scratch::Scratch;
use super::telemetry::Telemetry;
use crate::context::{Context, Frame};
use crate::graph::{
    AroundStep, Cancel, ChainTask, Clock, Graph, NodeKind, RunEnv, StepFlags, NO_POLICY, UNTIMED,
};
use crate::policy::{Usage, UsageBudget};
use crate::telemetry::{Counter, Counters, EventKind, EventSink, StepOutcome};

mod control;
mod fanout;
mod overrun;
mod policy;
mod pure;
mod stretch;

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

/// The counter of a record's outcome.
fn outcome_counter(outcome: StepOutcome) -> Counter {
    match outcome {
        StepOutcome::Succeeded => Counter::StepsSucceeded,
        StepOutcome::Failed => Counter::StepsFailed,
        StepOutcome::Skipped => Counter::StepsSkipped,
        StepOutcome::Aborted => Counter::StepsAborted,
    }
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

impl<'e, 'a, P, C, K, S, H> Exec<'e, 'a, P, C, K, S, H> {
    /// The state of a run (or of a forked branch's run) of `g` on `clock` in `host`: no
    /// usage and no counts yet. `limited` says whether `budget` is the run's own (else
    /// fan-outs share the unlimited one). The one constructor, for `Runner::run_in` and
    /// `Runner::run_branch` alike.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // one per field a caller sets
    pub(crate) fn new(
        g: &'e Graph<P, C>,
        clock: &'e K,
        host: &'e H,
        env: RunEnv<'e>,
        budget: UsageBudget,
        limited: bool,
        tel: Option<&'e mut Telemetry<S>>,
        s: &'e mut Scratch<P, C>,
        records: Records<'a>,
    ) -> Self {
        Self {
            g,
            clock,
            env,
            budget,
            limited,
            usage: Usage::ZERO,
            counters: Counters::new(),
            tel,
            s,
            records,
            host,
        }
    }
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
            NodeKind::Loop => self.loop_node(id, slot, input, frame),
            NodeKind::Switch => self.switch(id, slot, input, frame),
            NodeKind::Map => self.map(id, slot, input, frame),
        }
    }

    fn task(&mut self, t: u32, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        match g.task_policy[t as usize] {
            NO_POLICY if self.s.fast_paths && self.tel.is_none() => self.plain_one(t, input, frame),
            NO_POLICY => {
                let flags = g.task_flags[t as usize];
                let one = [ChainTask {
                    node: g.task_node[t as usize],
                    task: t,
                    policy: NO_POLICY,
                    stretch: 1,
                    may_write: flags.contains(StepFlags::WRITES_CONTEXT),
                    lean: false,
                    stretch_lean: false,
                    checks: AroundStep::None,
                    keep: false,
                    breaker: None,
                }];
                self.stretch::<false>(&one, input, frame)
            }
            policy => self.policy_task(policy, input, frame),
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
        tasks: &[ChainTask],
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
            let outcome = rec.outcome;
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
    fn stop_if_due(&mut self, node: u32, now: u64) -> Result<(), Stop> {
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
}
