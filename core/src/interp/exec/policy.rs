//! The task policy pipeline, in the contract's order: breaker, cache, usage, attempts,
//! classification and recovery (retries with backoff, fallback, skip), then settling (usage,
//! cache fill, the breaker's lesson, the record).

use super::{stamp, stop_tick, Exec};

use crate::cache::CacheKey;
use crate::context::{Context, Frame};
use crate::graph::{
    Clock, NodeId, RunEnv, Step, StepCx, StepError, StepFlags, TaskConfig, TaskPolicy, UNTIMED,
};
use crate::interp::host::Host;
use crate::interp::records::StepRecord;
use crate::interp::results::{ErrorKind, Stop};
use crate::interp::telemetry::Telemetry;
use crate::policy::{
    Breaker, BreakerState, CallOutcome, Decision, ErrorClass, Permit, Reservation, RetryState,
    Transition, Usage, UsageDenied,
};
use crate::telemetry::{Counter, Counters, EventKind, EventSink, StepOutcome};

/// Counts (a trip to open) and emits a breaker transition.
#[cold]
pub(super) fn note_transition<S: EventSink>(
    counters: &mut Counters,
    tel: Option<&mut Telemetry<S>>,
    node: u32,
    tick: u64,
    transition: Transition,
) {
    let (from, to) = (transition.from(), transition.to());
    if to == BreakerState::Open {
        counters.increment(Counter::BreakerTrips);
    }
    if let Some(t) = tel {
        t.emit_always(node, tick, EventKind::BreakerTransition { from, to });
    }
}

/// A lean task's attempt in the stretch loop when its step is not alone (its task run's
/// checks are `AroundStep::Many`), out of line: the step then its one boxed validator without a
/// loop, or the general order.
#[inline(never)]
pub(super) fn attempt_with_validator<P, C: Clone>(
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
pub(super) struct FirstAttempt<'b, P> {
    pub(super) err: StepError,
    pub(super) kept: Option<P>,
    pub(super) permit: Option<(&'b Breaker, Permit)>,
    pub(super) start: u64,
    pub(super) used: Usage,
}

impl<P: Clone, C: Context, K: Clock, S: EventSink, H: Host<P, C, K>> Exec<'_, '_, P, C, K, S, H> {
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
    pub(super) fn policy_task(
        &mut self,
        p: u32,
        input: P,
        frame: &mut Frame<'_, C>,
    ) -> Result<P, Stop> {
        let g = self.g;
        let pol = &g.policies[p as usize];
        let cfg = &pol.cfg;
        // Untimed (see `Clock::measures_latency`), only a task whose policies need the time
        // reads the clock.
        let timed = self.clock.measures_latency()
            || self.tel.is_some()
            || pol.flags.intersects(StepFlags::TIMED);
        let start = stamp(self.clock, timed);
        self.stop_if_due(pol.node, stop_tick(self.clock, timed, start, &self.env))?;
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
        // A shared cache may decline this execution before its key is computed.
        let uses = |_: &_| match shared {
            Some(c) => c.wants(NodeId(pol.node)),
            None => self.s.cache.is_some(),
        };
        if let Some(slot) = cfg.cache.as_ref().filter(uses) {
            let k = (slot.key)(&slot.fingerprint, &input);
            let hit = match (shared, &mut self.s.cache) {
                (Some(c), _) => c.lookup(NodeId(pol.node), &k),
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
    pub(super) fn lean_failed(
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
    pub(super) fn breaker_open(
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
                    if let Err(stop) = self.stop_if_due(node, now) {
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
}
