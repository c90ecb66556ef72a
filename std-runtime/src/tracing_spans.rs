//! `tracing` spans and events of the executor's runs (feature `tracing`).
//!
//! What is emitted, all with target `flujo` and level `INFO`:
//!
//! | name            | kind  | fields                                                        |
//! |-----------------|-------|---------------------------------------------------------------|
//! | `flujo.run`     | span  | `graph`, `graph_id`, `priority`, `inline`, `outcome`, `error_class`, `error_step`, `steps`, `records_dropped`, `latency_ns` |
//! | `flujo.step`    | span  | `step`, `node`, `attempt`, `outcome`, `error_class`, `latency_ns`, `backoff_ns`, `cache_hit`, `fallback_used` |
//! | `flujo.retry`   | event | `step`, `attempt`, `tick`                                     |
//! | `flujo.fallback`| event | `step`, `to`, `tick`                                          |
//! | `flujo.breaker` | event | `step`, `from`, `to`, `tick`                                  |
//! | `flujo.refused` | event | `reason`, `priority`                                          |
//!
//! **Which runs.** Only *sampled* runs (one in `telemetry.run_sample_period` per pooled
//! runner, at telemetry level `histograms` and up) get spans: the spans are made from what
//! the core recorded for the run (its step records and its event ring), and the core
//! records nothing for the others. Refusals are emitted live, one event each, at every
//! level: a refused submission never ran, so there is nothing to sample.
//!
//! **When.** The `flujo.run` span is live: it is opened when a sampled run starts and
//! entered while the run's steps run on its thread, so a step's own `tracing` spans and
//! events nest under it (steps of a fan-out forked onto other pool threads do not: the span
//! is not entered there), and it closes when the run has ended, so a subscriber sees its
//! real duration. The core (`no_std`, no clock of its own) cannot call into `tracing`, so
//! the `flujo.step` spans are made *after* the run, from its step records, in record order
//! (the order the steps ended; a fallback step ends, and is recorded, before the step it
//! stood in for). `tracing` spans cannot be back-dated: a step span's own open and close
//! times are the run's end, and its duration is the `latency_ns` field (backoff included;
//! `backoff_ns` of it waited between attempts). Retry, fallback and breaker events come from
//! the run's event ring and carry the executor clock's `tick` they happened at; each is a
//! child of the span of the step it happened to (the *k*-th record of a step gets the
//! events before the *k*-th end of that step), or of the run span when that step has no
//! span (its record did not fit `max_records`, or its end event was dropped by a full
//! ring). Breaker transitions are recorded by sampled runs only.
//!
//! **Parent.** A run's span is a child of the span current when it was submitted (captured
//! by [`Parent::submitted`] into the job and lent to its run by [`Parent::lend`], for a
//! submitted run) or when
//! [`Executor::run`](crate::Executor::run) was called (an inline run). A submission made
//! outside any span gives a root span, even when the run is taken by a thread that is
//! itself inside another run's span (a wait lending its thread).
//!
//! **Cost.** Off, this module and every hook into the executor (`#[cfg]`'d statements in
//! `exec.rs`, `exec/submit.rs`) are compiled out: the executor's code is what it is without
//! the feature. On, a submitted run costs one `Span::current()` at submission (a
//! thread-local read and, inside a span, a reference count) and a thread-local swap when it
//! starts, every run a branch; a sampled run with no subscriber interested costs a
//! callsite-interest check per span and event.

use std::cell::Cell;

use flujo_core::graph::{Graph, NodeId};
use flujo_core::interp::{Outcome, RunResult};
use flujo_core::policy::ErrorClass;
use flujo_core::telemetry::{Event, EventKind, StepOutcome};
use tracing::span::Entered;
use tracing::{field, Level, Span};

use crate::{Priority, Refusal};

thread_local! {
    /// The submitter's span of the submitted run about to start on this thread, lent by
    /// [`Parent::lend`] and taken by [`RunSpan::start`].
    static SUBMITTER: Cell<Option<Span>> = const { Cell::new(None) };
}

/// The span current when a run was submitted: its run span's parent.
#[derive(Debug)]
pub(crate) struct Parent(Span);

impl Parent {
    /// The span current now, for a run submitted now.
    #[inline]
    pub(crate) fn submitted() -> Self {
        Self(Span::current())
    }

    /// Lends the span to the submitted run about to start on this thread, until the guard
    /// is dropped (a run nested in this one's wait lends its own and gives this one back).
    #[inline]
    pub(crate) fn lend(self) -> Lent {
        Lent(SUBMITTER.with(|slot| slot.replace(Some(self.0))))
    }
}

/// Puts back what the submitter's slot held before [`Parent::lend`].
pub(crate) struct Lent(Option<Span>);

impl Drop for Lent {
    fn drop(&mut self) {
        let previous = self.0.take();
        SUBMITTER.with(|slot| slot.set(previous));
    }
}

/// The spans of one run: none for a run that is not sampled (or that no subscriber wants),
/// so such a run pays a branch per hook and nothing of `tracing`.
pub(crate) struct RunSpan(Option<Open>);

/// The `flujo.run` span of a sampled run and the `flujo.step` spans made from its records,
/// with their nodes.
struct Open {
    /// Dropped (closed) before the run span.
    steps: Vec<(u32, Span)>,
    span: Span,
}

impl RunSpan {
    /// Opens the span of a run of `graph` that starts now, if it is `sampled`.
    /// `priority` is `None` for an inline run.
    #[inline]
    pub(crate) fn start<P, C>(
        sampled: bool,
        graph: &Graph<P, C>,
        priority: Option<Priority>,
    ) -> Self {
        if !sampled {
            return Self(None);
        }
        let span = open(graph, priority);
        Self((!span.is_disabled()).then(|| Open {
            steps: Vec::new(),
            span,
        }))
    }

    /// Enters the span on this thread, for the run's steps, until the guard is dropped.
    #[inline]
    pub(crate) fn enter(&self) -> Option<Entered<'_>> {
        self.0.as_ref().map(|o| o.span.enter())
    }

    /// Records how the run ended and makes a `flujo.step` span per step record.
    #[inline]
    pub(crate) fn steps<P, C>(
        &mut self,
        graph: &Graph<P, C>,
        r: &RunResult<'_, P, C>,
        wall_ns: u64,
    ) {
        if let Some(open) = &mut self.0 {
            open.record_steps(graph, r, wall_ns);
        }
    }

    /// Emits the run's retries, fallbacks and breaker transitions from its drained
    /// `events`.
    #[inline]
    pub(crate) fn events<P, C>(&self, graph: &Graph<P, C>, events: &[Event]) {
        if let Some(open) = &self.0 {
            if !events.is_empty() {
                open.emit_events(graph, events);
            }
        }
    }
}

impl Open {
    #[cold]
    #[inline(never)]
    fn record_steps<P, C>(&mut self, graph: &Graph<P, C>, r: &RunResult<'_, P, C>, wall_ns: u64) {
        let span = &self.span;
        span.record("outcome", outcome_name(r.outcome));
        if let Some(e) = &r.error {
            span.record("error_class", e.kind.class().as_str());
            span.record("error_step", e.step);
        }
        span.record("steps", r.records.len() as u64);
        span.record("records_dropped", r.records_dropped);
        span.record("latency_ns", wall_ns);
        self.steps.reserve(r.records.len());
        for rec in r.records {
            let step = tracing::span!(
                target: "flujo",
                parent: span,
                Level::INFO,
                "flujo.step",
                step = graph.name(rec.node),
                node = rec.node.0,
                attempt = rec.attempts,
                outcome = step_outcome_name(rec.outcome),
                error_class = rec.error_class.map(ErrorClass::as_str),
                latency_ns = rec.latency_ticks,
                backoff_ns = rec.backoff_ticks,
                cache_hit = rec.cache_hit,
                fallback_used = rec.fallback_used,
            );
            self.steps.push((rec.node.0, step));
        }
    }

    #[cold]
    #[inline(never)]
    fn emit_events<P, C>(&self, graph: &Graph<P, C>, events: &[Event]) {
        // Per node, its end events seen so far: the next event of that node belongs to
        // its record of that index.
        let mut ended: Vec<(u32, usize)> = Vec::new();
        for e in events {
            let step = node_name(graph, e.step);
            let tick = e.tick;
            match e.kind {
                EventKind::StepEnd { .. } => match ended.iter_mut().find(|(n, _)| *n == e.step) {
                    Some((_, k)) => *k += 1,
                    None => ended.push((e.step, 1)),
                },
                EventKind::Retry { attempt } => tracing::event!(
                    name: "flujo.retry",
                    target: "flujo",
                    parent: self.step_span(e.step, &ended),
                    Level::INFO,
                    step,
                    attempt,
                    tick,
                ),
                EventKind::Fallback { to_step } => tracing::event!(
                    name: "flujo.fallback",
                    target: "flujo",
                    parent: self.step_span(e.step, &ended),
                    Level::INFO,
                    step,
                    to = node_name(graph, to_step),
                    tick,
                ),
                EventKind::BreakerTransition { from, to } => tracing::event!(
                    name: "flujo.breaker",
                    target: "flujo",
                    parent: self.step_span(e.step, &ended),
                    Level::INFO,
                    step,
                    from = from.as_str(),
                    to = to.as_str(),
                    tick,
                ),
                _ => {}
            }
        }
    }

    /// The span of the record of `node` that its next event belongs to, or the run's.
    fn step_span(&self, node: u32, ended: &[(u32, usize)]) -> &Span {
        let k = ended
            .iter()
            .find(|(n, _)| *n == node)
            .map_or(0, |&(_, k)| k);
        self.steps
            .iter()
            .filter(|(n, _)| *n == node)
            .nth(k)
            .map_or(&self.span, |(_, s)| s)
    }
}

/// The `flujo.run` span of a sampled run (out of line: one run in `run_sample_period`).
#[cold]
#[inline(never)]
fn open<P, C>(graph: &Graph<P, C>, priority: Option<Priority>) -> Span {
    // An inline run's parent is the caller's current span; a submitted run's, the span its
    // job lent (none, a root, if the slot is empty).
    let parent = match priority {
        None => Span::current(),
        Some(_) => SUBMITTER.with(Cell::take).unwrap_or_else(Span::none),
    };
    tracing::span!(
        target: "flujo",
        parent: &parent,
        Level::INFO,
        "flujo.run",
        graph = graph.name(graph.root()),
        graph_id = graph.id(),
        priority = priority_name(priority),
        inline = priority.is_none(),
        outcome = field::Empty,
        error_class = field::Empty,
        error_step = field::Empty,
        steps = field::Empty,
        records_dropped = field::Empty,
        latency_ns = field::Empty,
    )
}

/// Emits a `flujo.refused` event: a submission of `priority` refused for `reason`.
#[inline]
pub(crate) fn refused(reason: Refusal, priority: Priority) {
    tracing::event!(
        name: "flujo.refused",
        target: "flujo",
        Level::INFO,
        reason = refusal_name(reason),
        priority = priority_name(Some(priority)),
    );
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Aborted => "aborted",
    }
}

fn step_outcome_name(outcome: StepOutcome) -> &'static str {
    match outcome {
        StepOutcome::Succeeded => "succeeded",
        StepOutcome::Failed => "failed",
        StepOutcome::Skipped => "skipped",
        StepOutcome::Aborted => "aborted",
    }
}

/// The name of a priority, or `inline` for a run on the caller's thread.
fn priority_name(priority: Option<Priority>) -> &'static str {
    match priority {
        None => "inline",
        Some(Priority::High) => "high",
        Some(Priority::Normal) => "normal",
        Some(Priority::Low) => "low",
    }
}

/// A refusal's short name.
fn refusal_name(reason: Refusal) -> &'static str {
    match reason {
        Refusal::QueueFull => "queue-full",
        Refusal::OverLimit => "over-limit",
        Refusal::ShuttingDown => "shutting-down",
        Refusal::Shed => "shed",
    }
}

/// The name of node `id` of `graph`, or `?` for an id the graph does not have (an event
/// is always of the run's own graph; this only keeps a bug from panicking here).
fn node_name<P, C>(graph: &Graph<P, C>, id: u32) -> &str {
    if (id as usize) < graph.len() {
        graph.name(NodeId(id))
    } else {
        "?"
    }
}

#[cfg(test)]
mod tests;
