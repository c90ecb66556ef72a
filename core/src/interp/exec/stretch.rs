//! The fast path: stretches of plain tasks (and lean policy tasks' first attempts) run in one
//! loop, one step context and one record cursor, and a plain task on its own (`plain_one`).

use super::policy::{attempt_with_validator, note_transition, FirstAttempt};
use super::{charge, elapsed, stamp, stop_reason, stop_tick, Exec};
use core::mem::MaybeUninit;

use crate::context::{Context, Frame};
use crate::graph::{
    AroundStep, ChainTask, Clock, Graph, RunEnv, StepCx, StepError, StepFlags, TaskPolicy,
    NO_POLICY, UNTIMED,
};
use crate::interp::host::Host;
use crate::interp::records::{Records, StepRecord};
use crate::interp::results::{ErrorKind, Stop};
use crate::interp::telemetry::{Sampling, Telemetry};
use crate::policy::{Breaker, CallOutcome, Permit, Usage, UsageBudget};
use crate::telemetry::{Counter, Counters, EventKind, EventSink, StepOutcome};

/// Why [`Exec::stretch_turn`] came back.
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

/// What one compiled instance of the stretch turn does besides running steps: each const is a
/// test the turn then makes once per instance rather than once per task. The stretch loop
/// picks the instance per chunk ([`Exec::stretch_loop`]); [`Turn`] names each combination.
trait TurnKind {
    /// A lean policy task's first attempt runs in the turn too (breaker permit, processors,
    /// step, validators; the breaker learns a success). Else every task is plain.
    const LEAN: bool;
    /// Telemetry sees each task's start, end and latency.
    const TEL: bool;
    /// With `TEL`: the sampler keeps every execution (no decision per task, and equal
    /// latencies wait in locals for the histogram).
    const EVERY: bool;
    /// With `LEAN`: lean tasks' breakers are asked (the runner's `breakers` switch).
    const BREAKERS: bool;
    /// The run's deadline and cancel flag are tested before each task (`false` only when the
    /// run has neither; a plain turn always tests, its loop is small enough for the compiler
    /// to take the test out itself).
    const WATCH: bool;
}

/// The [`TurnKind`] with the given consts, in their order there.
struct Turn<
    const LEAN: bool,
    const TEL: bool,
    const EVERY: bool,
    const BREAKERS: bool,
    const WATCH: bool,
>;

impl<
        const LEAN: bool,
        const TEL: bool,
        const EVERY: bool,
        const BREAKERS: bool,
        const WATCH: bool,
    > TurnKind for Turn<LEAN, TEL, EVERY, BREAKERS, WATCH>
{
    const LEAN: bool = LEAN;
    const TEL: bool = TEL;
    const EVERY: bool = EVERY;
    const BREAKERS: bool = BREAKERS;
    const WATCH: bool = WATCH;
}

/// Where the records of one segment of a stretch go (a segment: the tasks from the stretch's
/// current position that share one step context). The segment is cut into chunks that the
/// turn runs without a check per record: a chunk has at most as many tasks as the record
/// buffer has free slots. Once the buffer is full, each chunk is one task whose record goes
/// to a spill slot (overwritten, never read) and is counted as dropped.
///
/// Invariant: `dst` has room for one record per task of `chunk`, plus one for a task taken
/// from it whose record is not yet put (see [`Exit::Touched`]).
struct Cursor<'t> {
    /// The segment's tasks, from the first not yet settled.
    segment: &'t [ChainTask],
    /// The current chunk's tasks not yet taken.
    chunk: core::slice::Iter<'t, ChainTask>,
    /// The segment's tasks after the current chunk.
    after: &'t [ChainTask],
    /// Where the next record goes: the buffer's next free slot, or `spill`.
    dst: *mut StepRecord,
    /// The slot for records that do not fit (a local of the stretch loop).
    spill: *mut StepRecord,
    /// Free slots of the record buffer when the segment began.
    room: usize,
}

impl<'t> Cursor<'t> {
    /// A cursor over `segment` whose records go to `free` (`room` free slots of the buffer),
    /// then to `spill`.
    #[inline(always)]
    fn new(
        segment: &'t [ChainTask],
        free: *mut StepRecord,
        room: usize,
        spill: *mut StepRecord,
    ) -> Self {
        let (dst, n) = if room == 0 {
            (spill, 1)
        } else {
            (free, room.min(segment.len()))
        };
        let (chunk, after) = segment.split_at(n);
        let chunk = chunk.iter();
        Self {
            segment,
            chunk,
            after,
            dst,
            spill,
            room,
        }
    }

    /// Puts the record of the task under way.
    ///
    /// # Safety
    ///
    /// The task under way was taken from the current chunk and has put no record yet (so
    /// the cursor's invariant leaves a slot for it).
    #[inline(always)]
    unsafe fn put(&mut self, rec: StepRecord) {
        // SAFETY: `dst` is `spill` (for a chunk of one task) or the next free slot of the
        // buffer: a chunk has at most `room` tasks, each puts at most one record (the
        // caller's promise), and `dst` moves one slot per record put, so it stays below the
        // buffer's end; nothing else touches the free slots until the segment settles.
        unsafe {
            self.dst.write(rec);
            self.dst = self.dst.add(1);
        }
    }

    /// Whether the segment has tasks after the current chunk.
    #[inline(always)]
    fn has_more(&self) -> bool {
        !self.after.is_empty()
    }

    /// The next chunk, once the buffer is full: one task, its record to `spill`.
    #[inline(always)]
    fn next_spill_chunk(&mut self) {
        let (next, tail) = self.after.split_at(1);
        self.dst = self.spill;
        (self.chunk, self.after) = (next.iter(), tail);
    }

    /// Tasks taken from the segment so far.
    #[inline(always)]
    fn taken(&self) -> usize {
        self.segment.len() - (self.chunk.len() + self.after.len())
    }

    /// The tasks of the stretch not taken yet.
    #[inline(always)]
    fn remaining(&self) -> &'t [ChainTask] {
        &self.segment[self.taken()..]
    }

    /// Accounts for the records put so far (the tasks taken, but `pending` of them that put
    /// none): each is one step run that succeeded.
    #[inline(always)]
    fn settle(&self, pending: usize, records: &mut Records<'_>, counters: &mut Counters) {
        let put = self.taken() - pending;
        let written_records = put.min(self.room);
        let dropped = u32::try_from(put - written_records).unwrap_or(u32::MAX);
        records.settle(written_records, dropped);
        counters.add_n(Counter::StepsRun, put as u64);
        counters.add_n(Counter::StepsSucceeded, put as u64);
    }
}

// An associated function rather than a free one: rustc places a method's instances in the
// codegen unit of its self type (`Exec`, in `exec/mod.rs`), a free function's in that of its
// own module. Here the turn shares a unit with `stretch_loop`, its only caller, so LLVM may
// change its signature (the unused arguments go, `tel` is passed in a register); as a free
// function in `exec/stretch.rs` it cost W2 one instruction per task (+1.4%).
impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
    /// One turn of the stretch loop, out of line so that the registers go to what a task needs:
    /// runs the tasks of the cursor's chunk from `x`, each with the step context `cx`, one
    /// clock read per task (`t0` is the current task's start), putting the record of each at
    /// the cursor, until the chunk ends or a task needs more than its record (see [`Exit`]).
    /// What it does besides is fixed at compile time by `T` (see [`TurnKind`]). The cursor
    /// (its chunk and `dst`) and `t0` are left where it stopped. Given the cursor itself
    /// rather than its chunk and `dst` apart: W1 then measured 4_226_156 against 4_229_156.
    ///
    /// # Safety
    ///
    /// `cur.dst` must be valid for writing `cur.chunk.len()` records one after the other.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn stretch_turn<'g, T: TurnKind>(
        g: &'g Graph<P, C>,
        clock: &K,
        host: &H,
        env: &RunEnv<'_>,
        counters: &mut Counters,
        mut tel: Option<&mut Telemetry<S>>,
        cx: &mut StepCx<'_, C>,
        cur: &mut Cursor<'_>,
        t0: &mut u64,
        mut x: P,
    ) -> Exit<'g, P, C> {
        let steps = &*g.task_step;
        let (mut it, mut at, mut start) = (cur.chunk.clone(), cur.dst, *t0);
        debug_assert!(
            !T::TEL || tel.is_some(),
            "a turn with telemetry is given it"
        );
        // A sampler that keeps every execution (`T::EVERY`): no decision per task, and the run of
        // equal latencies waiting for the histogram lives in locals until the turn ends.
        if let (true, Some(t)) = (T::EVERY, tel.as_deref_mut()) {
            let every = t.keep_all();
            debug_assert!(every, "the caller asked the telemetry");
        }
        let mut pending = match &tel {
            Some(t) if T::EVERY => t.pending(),
            _ => (0, 0),
        };
        // Any other sampler: its counter and the current execution's decision live in locals
        // until the turn ends, and an execution it skips costs no call.
        let mut sampling = match &tel {
            Some(t) if T::TEL && !T::EVERY => t.sampling(),
            _ => Sampling::default(),
        };
        // Whether each task's start and end are read (a sampled execution needs them for its
        // events); otherwise the clock is read only where a decision needs the time.
        let timed = T::TEL || clock.measures_latency();
        let exit = loop {
            let Some(pt) = it.next() else {
                break Exit::Done(x);
            };
            if T::WATCH && env.watch {
                if let Some(kind) = stop_reason(env, stop_tick(clock, timed, start, env)) {
                    let node = pt.node;
                    break Exit::Stopped { node, kind };
                }
            }
            if T::TEL {
                if let Some(t) = tel.as_deref_mut() {
                    if T::EVERY {
                        t.emit(pt.node, start, EventKind::StepStart);
                    } else if sampling.next() {
                        t.sampled_start(pt.node, start);
                    }
                }
            }
            cx.may_write = pt.may_write;
            debug_assert!((pt.task as usize) < steps.len(), "validated: task index");
            // SAFETY: `ChainTask::task` is a task slot taken from the frozen graph's own nodes
            // when it was built (`GraphBuilder::flatten`, `Exec::task`), so it is below
            // `task_step.len()`; the graph is immutable after freezing.
            let step = unsafe { steps.get_unchecked(pt.task as usize) };
            // When `T::LEAN`, a plain task takes the lean path too: it has no breaker, keeps no
            // input and runs its step alone, so only a failure tells the two apart.
            debug_assert!(
                !T::LEAN || pt.lean || pt.policy == NO_POLICY,
                "a stretch task"
            );
            debug_assert!(
                pt.lean || (pt.breaker.is_none() && !pt.keep && pt.checks == AroundStep::None)
            );
            // A lean task's policy, looked up where needed rather than kept: the fewer values live
            // across the step's call, the fewer the loop spills. Called for lean tasks only (a
            // breaker, checks or a lean failure).
            let pol = || {
                debug_assert!(
                    pt.lean && (pt.policy as usize) < g.policies.len(),
                    "validated"
                );
                // SAFETY: `ChainTask::policy` of a lean task is the index of its entry in
                // `policies`, set when the graph was frozen; the graph is immutable after
                // freezing.
                unsafe { g.policies.get_unchecked(pt.policy as usize) }
            };
            // The permit as a word (0: no breaker), so that no discriminant is kept.
            // SAFETY: the task run's breaker is its policy's, which the graph holds.
            let breaker = pt
                .breaker
                .filter(|_| T::LEAN && T::BREAKERS)
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
            let mut kept = if T::LEAN && pt.keep {
                MaybeUninit::new(x.clone())
            } else {
                MaybeUninit::uninit()
            };
            // The attempt: the step alone (its first validator compiled in), or the general
            // order for processors and further validators.
            let attempt = || {
                if !T::LEAN || pt.checks == AroundStep::None {
                    step.run(x, cx)
                } else {
                    attempt_with_validator(&pol().cfg, &**step, x, cx)
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
                    if T::LEAN && core::mem::needs_drop::<P>() && pt.keep {
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
                Err(err) if T::LEAN && pt.lean => {
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
            if T::TEL {
                if let Some(t) = tel.as_deref_mut() {
                    if !T::EVERY {
                        if sampling.kept {
                            t.sampled_success(pt.node, t1, latency_ticks);
                        }
                    } else {
                        if latency_ticks == pending.0 {
                            pending.1 += 1;
                        } else {
                            pending = t.swap_pending(pending, latency_ticks);
                        }
                        let outcome = StepOutcome::Succeeded;
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
            // SAFETY: the caller gave room for `cur.chunk.len()` records at `cur.dst`; this is the
            // record of one task taken from it, and `at` moves one slot per record.
            unsafe {
                at.write(StepRecord::plain(pt.node, latency_ticks, Usage::ZERO));
                at = at.add(1);
            }
        };
        (cur.chunk, cur.dst, *t0) = (it, at, start);
        if let Some(t) = tel {
            if T::EVERY {
                t.set_pending(pending);
            } else if T::TEL {
                t.set_sampling(sampling);
            }
        }
        exit
    }
}

/// Why a stretch of plain tasks ended early.
pub(super) enum PlainFailure {
    /// The run was stopped before the task started.
    Stopped(ErrorKind),
    /// The task failed.
    Step {
        e: StepError,
        latency_ticks: u64,
        usage: Usage,
    },
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

impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
    /// A plain task on its own (a fan-out's branch, a loop body, a branch arm), without
    /// telemetry: what one turn of the stretch loop does, without setting the loop up.
    #[inline]
    pub(super) fn plain_one(&mut self, t: u32, x: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
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
    /// The tasks run in an out-of-line turn ([`Exec::stretch_turn`]) that keeps the record cursor
    /// and the clock in registers: the buffer's room is checked once per chunk of tasks (no
    /// check per record; a full buffer sends each further record to a spill slot that is
    /// only counted), and a step that neither wrote nor reported usage costs one flag test
    /// (`StepCx::touched`) after it returns. A lean policy task's first attempt runs there
    /// (breaker permit, processors, step, validators); a failure or an open breaker comes
    /// back here for the recovery path, and the loop resumes after it.
    pub(super) fn stretch<const LEAN: bool>(
        &mut self,
        tasks: &[ChainTask],
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
        tasks: &[ChainTask],
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
            let mut spill = MaybeUninit::<StepRecord>::uninit();
            let free_ptr = free.as_mut_ptr().cast::<StepRecord>();
            let mut cur = Cursor::new(rest, free_ptr, free.len(), spill.as_mut_ptr());
            loop {
                let every = TEL && self.tel.as_deref().is_some_and(Telemetry::keeps_all);
                let tel = self.tel.as_deref_mut();
                let counters = &mut self.counters;
                // The turn's instance (see `TurnKind`). Breakers matter only to lean tasks;
                // without a deadline or a cancel flag a lean turn has no stop test per task.
                let kind = (LEAN, TEL && every, s.breakers, env.watch);
                // SAFETY: `cur.dst` has room for `cur.chunk.len()` records (`Cursor`'s
                // invariant), whichever instance the match calls.
                let exit = unsafe {
                    match kind {
                        (false, false, _, _) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, false, false, true>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (false, true, _, _) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, true, false, true>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, false, true, true) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, false, true, true>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, false, true, false) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, false, true, false>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, false, false, true) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, false, false, true>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, false, false, false) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, false, false, false>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, true, true, true) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, true, true, true>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, true, true, false) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, true, true, false>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, true, false, true) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, true, false, true>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                        (true, true, false, false) => {
                            Self::stretch_turn::<Turn<LEAN, TEL, true, false, false>>(
                                g, clock, host, env, counters, tel, &mut cx, &mut cur, &mut t0, x,
                            )
                        }
                    }
                };
                match exit {
                    Exit::Done(y) => {
                        x = y;
                        if !cur.has_more() {
                            break;
                        }
                        cur.next_spill_chunk();
                    }
                    Exit::Touched {
                        y,
                        node,
                        latency_ticks,
                    } => {
                        x = y;
                        // The step wrote the context or reported usage.
                        let usage = take_usage(&mut cx, &mut self.usage, &mut self.budget);
                        // SAFETY: the turn took this task and put no record for it
                        // (`Exit::Touched`).
                        unsafe { cur.put(StepRecord::plain(node, latency_ticks, usage)) };
                        // Its usage took the budget past a limit (see `overrun`).
                        if self.limited && self.budget.exceeded().is_some() {
                            let (written, _) = cx.finish();
                            cur.settle(0, &mut self.records, &mut self.counters);
                            return Err(self.overrun_after(node, usage, written, frame));
                        }
                        if cx.has_written() {
                            // Commit the write before the next task reads.
                            break;
                        }
                    }
                    Exit::Stopped { node, kind } => {
                        let (written, _) = cx.finish();
                        cur.settle(1, &mut self.records, &mut self.counters);
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
                        cur.settle(1, &mut self.records, &mut self.counters);
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
                        cur.settle(1, &mut self.records, &mut self.counters);
                        rest = cur.remaining();
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
                        cur.settle(1, &mut self.records, &mut self.counters);
                        rest = cur.remaining();
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
            cur.settle(0, &mut self.records, &mut self.counters);
            rest = cur.remaining();
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
    pub(super) fn plain_failure(
        &mut self,
        node: u32,
        written: Option<C>,
        why: PlainFailure,
    ) -> Stop {
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
}
