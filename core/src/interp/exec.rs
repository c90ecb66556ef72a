//! The interpreter proper: one method per node kind, the plain-task fast path, and the task
//! policy pipeline.

use super::{ErrorKind, LoopExit, Scratch, StepOutcome, StepRecord, Stop};
use crate::context::{merge_branch, Context, Frame, MergeError, MergeStrategy};
use crate::graph::policy_slots::{
    CallOutcome, Decision, ErrorClass, RetryState, Usage, UsageBudget,
};
use crate::graph::{
    CancelFlag, Clock, FailureStrategy, Graph, Items, NodeKind, PlainTask, RunEnv, StepCx,
    StepError, StepFlags, TaskConfig,
};

/// Why the run must stop before a task that would start at `now`, if it must.
#[inline(always)]
fn stop_reason(env: &RunEnv<'_>, now: u64) -> Option<ErrorKind> {
    if now >= env.deadline {
        Some(ErrorKind::DeadlineExceeded)
    } else if env.cancel.is_some_and(CancelFlag::is_cancelled) {
        Some(ErrorKind::Cancelled)
    } else {
        None
    }
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
    if !usage.is_zero() {
        *total = total.saturating_add(usage);
        budget.book(usage);
    }
    usage
}

/// One run's state: the graph, the caller's clock, options, and the runner's scratch.
pub(crate) struct Exec<'e, P, C, K> {
    pub(crate) g: &'e Graph<P, C>,
    pub(crate) clock: &'e K,
    pub(crate) env: RunEnv<'e>,
    pub(crate) budget: UsageBudget,
    pub(crate) usage: Usage,
    pub(crate) s: &'e mut Scratch<P, C>,
}

impl<P: Clone, C: Context, K: Clock> Exec<'_, P, C, K> {
    /// Runs node `id` on `input` against the context view `frame`.
    pub(crate) fn node(&mut self, id: u32, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let slot = g.slot[id as usize] as usize;
        match g.kind[id as usize] {
            NodeKind::Task => self.task(slot as u32, input, frame),
            NodeKind::Sequence => self.sequence(slot, input, frame),
            NodeKind::Parallel => self.parallel(id, slot, input, frame),
            NodeKind::Loop => self.repeat(id, slot, input, frame),
            NodeKind::Branch => self.branch(id, slot, input, frame),
            NodeKind::Map => self.map(id, slot, input, frame),
        }
    }

    fn task(&mut self, t: u32, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let flags = g.task_flags[t as usize];
        if flags.is_plain() {
            let one = [PlainTask {
                node: g.task_node[t as usize],
                task: t,
                may_write: flags.contains(StepFlags::WRITES_CONTEXT),
            }];
            self.plain_tasks(&one, input, frame)
        } else {
            self.policy_task(t, input, frame)
        }
    }

    fn sequence(&mut self, s: usize, mut x: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let seq = &g.seqs[s];
        if let Some(plain) = seq.plain {
            return self.plain_tasks(&g.plain[plain.range()], x, frame);
        }
        for &child in &g.children[seq.children.range()] {
            x = self.node(child, x, frame)?;
        }
        Ok(x)
    }

    /// Records a step stopped before it started and returns the abort.
    #[cold]
    fn stopped(&mut self, node: u32, kind: ErrorKind) -> Stop {
        let mut rec = StepRecord::new(node);
        rec.outcome = StepOutcome::Aborted;
        rec.error_class = Some(kind.class());
        self.s.records.push(rec);
        Stop {
            node,
            kind,
            abort: true,
        }
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

    #[inline(always)]
    fn book(&mut self, used: Usage) {
        if !used.is_zero() {
            self.usage = self.usage.saturating_add(used);
            self.budget.book(used);
        }
    }

    /// Records a failed plain task and returns its failure. A plain task has one attempt, no
    /// fallback and no skip: every recovery but abort ends in failure.
    #[cold]
    fn plain_failed(&mut self, mut rec: StepRecord, e: StepError) -> Stop {
        let abort = e.class.always_aborts();
        rec.outcome = if abort {
            StepOutcome::Aborted
        } else {
            StepOutcome::Failed
        };
        rec.error_class = Some(e.class);
        self.s.records.push(rec);
        Stop {
            node: rec.node.0,
            kind: ErrorKind::Step(e),
            abort,
        }
    }

    /// The fast path: plain tasks in order, one attempt each, no policy lookups, one clock
    /// read per task (a task's end is the next one's start), and one step context per
    /// stretch of tasks that do not write (a write ends the stretch, so the copy is committed
    /// before the next task reads).
    ///
    /// While a stretch runs, the record cursor lives in locals, and a step that neither wrote
    /// nor reported usage costs one flag test (`StepCx::touched`) after it returns.
    fn plain_tasks(
        &mut self,
        tasks: &[PlainTask],
        mut x: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let steps = &*self.g.task_step;
        let clock = self.clock;
        let mut t0 = clock.now();
        let mut rest = tasks;
        while !rest.is_empty() {
            let env = &self.env;
            let s = &mut *self.s;
            let mut cx = StepCx::new(frame.get(), &mut s.spares, env, false, 1, None);
            let records = &mut s.records;
            let free = records.buf.get_mut(records.len..).unwrap_or_default();
            let capacity = free.len();
            let mut slots = free.iter_mut();
            let mut dropped = 0u32;
            let mut put = |rec: StepRecord| match slots.next() {
                Some(slot) => *slot = rec,
                None => dropped = dropped.saturating_add(1),
            };
            while let Some((&pt, tail)) = rest.split_first() {
                if env.watch {
                    if let Some(kind) = stop_reason(env, t0) {
                        drop(put);
                        let (written, _) = cx.finish();
                        let used = capacity - slots.len();
                        records.settle(used, dropped);
                        let why = PlainFailure::Stopped(kind);
                        return Err(self.plain_failure(pt.node, written, why));
                    }
                }
                rest = tail;
                cx.may_write = pt.may_write;
                debug_assert!((pt.task as usize) < steps.len(), "validated: task index");
                // SAFETY: `PlainTask::task` is a task slot taken from the frozen graph's own
                // nodes when it was built (`GraphBuilder::flatten`, `Exec::task`), so it is
                // below `task_step.len()`; the graph is immutable after freezing.
                let step = unsafe { steps.get_unchecked(pt.task as usize) };
                let result = step.run(x, &mut cx);
                let t1 = clock.now();
                let latency_ticks = t1.saturating_sub(t0);
                t0 = t1;
                match result {
                    Ok(y) => {
                        x = y;
                        if !cx.touched {
                            put(StepRecord::plain(pt.node, latency_ticks, Usage::ZERO));
                            continue;
                        }
                        // The step wrote the context or reported usage.
                        let usage = take_usage(&mut cx, &mut self.usage, &mut self.budget);
                        put(StepRecord::plain(pt.node, latency_ticks, usage));
                        if cx.has_written() {
                            break;
                        }
                    }
                    Err(e) => {
                        let usage = take_usage(&mut cx, &mut self.usage, &mut self.budget);
                        drop(put);
                        let (written, _) = cx.finish();
                        let used = capacity - slots.len();
                        records.settle(used, dropped);
                        let why = PlainFailure::Step {
                            e,
                            latency_ticks,
                            usage,
                        };
                        return Err(self.plain_failure(pt.node, written, why));
                    }
                }
            }
            drop(put);
            let used = capacity - slots.len();
            records.settle(used, dropped);
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
                self.plain_failed(rec, e)
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
        let mut cx = StepCx::new(
            frame.get(),
            &mut self.s.spares,
            &self.env,
            cfg.writes,
            attempt,
            feedback,
        );
        let result = (|| {
            let mut x = x;
            for pre in &cfg.pre {
                x = pre(x, cx.ctx())?;
            }
            let mut y = g.task_step[t as usize].run(x, &mut cx)?;
            for post in &cfg.post {
                y = post(y, cx.ctx())?;
            }
            for validate in &cfg.validators {
                validate(&y, cx.ctx()).map_err(|e| StepError {
                    class: ErrorClass::Validation,
                    ..e
                })?;
            }
            Ok(y)
        })();
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
    /// classification, fallback, record.
    fn policy_task(&mut self, t: u32, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let pol = &g.policies[g.task_policy[t as usize] as usize];
        let cfg = &pol.cfg;
        let flags = g.task_flags[t as usize];
        let node = g.task_node[t as usize];
        let start = self.clock.now();
        self.check_stop(node, start)?;
        let mut rec = StepRecord::new(node);
        let mut pending: Option<StepError> = None;

        // 1. Circuit breaker: an open breaker fails fast (classified, so the fallback runs).
        // SEAM(breaker): `policy::CircuitBreaker::try_acquire`.
        let permit = match &cfg.breaker {
            Some(b) => match b.try_acquire(start) {
                Ok(p) => Some(p),
                Err(_) => {
                    pending = Some(StepError::new(
                        ErrorClass::CircuitOpen,
                        "circuit breaker open",
                    ));
                    None
                }
            },
            None => None,
        };

        // 2. Cache: a hit returns the stored output without running the step.
        // SEAM(cache): `cache::StepFingerprint` / `CacheKey` / `FixedCache::get`.
        let mut key = None;
        if let (None, Some(slot)) = (&pending, &cfg.cache) {
            let k = (slot.key)(slot.fingerprint, &input);
            if let Some(out) = self.s.cache.get(t, &k, start) {
                let out = out.clone();
                // The step did not run: the breaker learns nothing from a hit.
                let _ = permit;
                rec.cache_hit = true;
                rec.latency_ticks = self.clock.now().saturating_sub(start);
                self.s.records.push(rec);
                return Ok(out);
            }
            key = Some(k);
        }

        // 3. Usage: reserve the estimate; a denial aborts the run (no retry, no fallback).
        // SEAM(usage): `policy::UsageBudget::reserve` (and `split` for parallel branches).
        let mut reservation = None;
        if pending.is_none() && flags.contains(StepFlags::USAGE) {
            match self.budget.reserve(cfg.usage_estimate) {
                Ok(r) => reservation = Some(r),
                Err(denied) => {
                    rec.outcome = StepOutcome::Aborted;
                    rec.error_class = Some(ErrorClass::Usage);
                    rec.latency_ticks = self.clock.now().saturating_sub(start);
                    self.s.records.push(rec);
                    let kind = ErrorKind::UsageDenied {
                        requested: denied.requested,
                        remaining: denied.remaining,
                    };
                    return Err(Stop {
                        node,
                        kind,
                        abort: true,
                    });
                }
            }
        }

        // 4-6. Attempts, classification, fallback. SEAM(retry): `policy::RetryState`.
        let keep_input = flags.intersects(StepFlags::RETRY | StepFlags::FALLBACK);
        let mut input = Some(input);
        let mut retry = RetryState::new(cfg.retry);
        let mut feedback: Option<StepError> = None;
        let mut used = Usage::ZERO;
        let mut step_succeeded = false;
        let result = loop {
            let err = match pending.take() {
                Some(e) => e,
                None => {
                    let attempt = rec.attempts + 1;
                    let x = if keep_input {
                        input
                            .as_ref()
                            .expect("kept for retries and the fallback")
                            .clone()
                    } else {
                        input.take().expect("one attempt without a fallback")
                    };
                    rec.attempts = attempt;
                    match self.attempt(t, cfg, x, attempt, feedback.as_ref(), frame, &mut used) {
                        Ok(y) => {
                            step_succeeded = true;
                            break Ok(y);
                        }
                        Err(e) => e,
                    }
                }
            };
            rec.error_class = Some(err.class);
            match retry.on_failure(err.class, &cfg.recovery, &mut self.s.rng) {
                Decision::RetryAfter(ticks) => {
                    self.clock.wait(ticks);
                    rec.backoff_ticks = rec.backoff_ticks.saturating_add(ticks);
                    feedback = Some(err);
                    let now = self.clock.now();
                    if let Err(stop) = self.check_stop(node, now) {
                        break Err(stop);
                    }
                }
                Decision::Fallback => match pol.fallback_task {
                    Some(fb) => {
                        rec.fallback_used = true;
                        let x = input.take().expect("kept for the fallback");
                        break self.task(fb, x, frame);
                    }
                    None => {
                        break Err(Stop {
                            node,
                            kind: ErrorKind::Step(err),
                            abort: false,
                        })
                    }
                },
                Decision::Skip => {
                    rec.outcome = StepOutcome::Skipped;
                    break Ok(cfg
                        .default_output
                        .clone()
                        .expect("validated: skip has a default"));
                }
                Decision::Fail => {
                    break Err(Stop {
                        node,
                        kind: ErrorKind::Step(err),
                        abort: false,
                    })
                }
                Decision::Abort => {
                    break Err(Stop {
                        node,
                        kind: ErrorKind::Step(err),
                        abort: true,
                    })
                }
            }
        };

        // 7. Settle usage, fill the cache, teach the breaker, write the record.
        match reservation {
            Some(r) => {
                self.budget.reconcile(r, used);
                self.usage = self.usage.saturating_add(used);
            }
            None => self.book(used),
        }
        let end = self.clock.now();
        if let (Some(k), true, Ok(out)) = (key, step_succeeded, &result) {
            self.s.cache.insert(t, k, out.clone(), end);
        }
        if let (Some(b), Some(p)) = (&cfg.breaker, permit) {
            let outcome = if step_succeeded {
                CallOutcome::Success
            } else {
                CallOutcome::Failure
            };
            b.record(p, outcome, end.saturating_sub(start), end);
        }
        rec.usage = used;
        rec.latency_ticks = end.saturating_sub(start);
        if let Err(stop) = &result {
            rec.outcome = if stop.abort {
                StepOutcome::Aborted
            } else {
                StepOutcome::Failed
            };
        }
        self.s.records.push(rec);
        result
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
        let Frame::Owned(c) = branch_frame else {
            return Ok(());
        };
        let r = merge_branch(strategy, base, merged, &c, position, &mut self.s.spares);
        self.s.spares.give(c);
        r.map_err(|e| {
            let kind = match e {
                MergeError::Conflict { part, branch } => ErrorKind::MergeConflict { part, branch },
                MergeError::User(e) => ErrorKind::MergeFailed(e),
            };
            Stop {
                node,
                kind,
                abort: false,
            }
        })
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
        let base: &C = frame.get();
        let mut merged: Option<C> = None;
        let mut acc: Option<P> = None;
        let count = par.branches.len;
        let mut input = Some(input);
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
            let mut bf = Frame::Borrowed(base);
            match self.node(branch, x, &mut bf) {
                Ok(out) => {
                    if let Err(stop) =
                        self.merge_back(id, &par.merge, base, &mut merged, bf, position)
                    {
                        self.release(merged);
                        return Err(stop);
                    }
                    acc = Some(match acc.take() {
                        None => out,
                        Some(a) => (par.reduce)(a, out),
                    });
                }
                Err(stop) => {
                    bf.release(&mut self.s.spares);
                    if stop.abort || par.failure == FailureStrategy::Propagate {
                        // Siblings not yet started are told to stop by never starting.
                        self.release(merged);
                        return Err(stop);
                    }
                }
            }
        }
        match acc {
            Some(out) => {
                if let Some(m) = merged {
                    frame.commit(m, &mut self.s.spares);
                }
                Ok(out)
            }
            None => {
                self.release(merged);
                Err(Stop {
                    node: id,
                    kind: ErrorKind::AllBranchesFailed { branches: count },
                    abort: false,
                })
            }
        }
    }

    fn repeat(&mut self, id: u32, l: usize, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let lp = &g.loops[l];
        let start = self.clock.now();
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
                    rec.error_class = Some(stop.kind.class());
                    rec.latency_ticks = self.clock.now().saturating_sub(start);
                    self.s.records.push(rec);
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
        rec.latency_ticks = self.clock.now().saturating_sub(start);
        self.s.records.push(rec);
        Ok(x)
    }

    fn branch(&mut self, id: u32, b: usize, input: P, frame: &mut Frame<'_, C>) -> Result<P, Stop> {
        let g = self.g;
        let br = &g.branches[b];
        let key = (br.selector)(&input, frame.get());
        let arm = match br.keys.iter().position(|k| *k == key) {
            Some(i) => Some(g.children[br.arms.start as usize + i]),
            None => br.default,
        };
        match arm {
            Some(arm) => self.node(arm, input, frame),
            None => Err(Stop {
                node: id,
                kind: ErrorKind::NoArmMatched { key },
                abort: false,
            }),
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
                return Err(Stop {
                    node: id,
                    kind: ErrorKind::TooManyItems {
                        limit: mp.max_items,
                    },
                    abort: false,
                });
            }
            Ok(seed) => seed,
            Err(e) => {
                self.s.items.truncate(bottom);
                let abort = e.class.always_aborts();
                return Err(Stop {
                    node: id,
                    kind: ErrorKind::Step(e),
                    abort,
                });
            }
        };
        let count = self.s.items.len() - bottom;
        self.s.items[bottom..].reverse();
        let base: &C = frame.get();
        let mut merged: Option<C> = None;
        let mut acc = seed;
        for position in 0..count as u32 {
            let item = self
                .s
                .items
                .pop()
                .expect("this map's items are above `bottom`");
            let mut bf = Frame::Borrowed(base);
            let out = match self.node(mp.body, item, &mut bf) {
                Ok(out) => out,
                Err(stop) => {
                    bf.release(&mut self.s.spares);
                    self.s.items.truncate(bottom);
                    self.release(merged);
                    return Err(stop);
                }
            };
            if let Err(stop) = self.merge_back(id, &mp.merge, base, &mut merged, bf, position) {
                self.s.items.truncate(bottom);
                self.release(merged);
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
