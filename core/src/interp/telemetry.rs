//! A runner's optional per-step telemetry ([`Telemetry`]) and the sampler state a step loop
//! keeps in locals (`Sampling`).

use crate::telemetry::{Counters, EventSink, Histogram, Sampler};

/// A runner's optional per-step telemetry: events into a sink and a latency histogram, both
/// thinned by a [`Sampler`] (one decision per task execution), and the exact counters of
/// every run summed (never sampled). Breaker transitions and refusals are emitted whatever
/// the sampler says.
///
/// Off (a runner made with [`Runner::new`]), it costs nothing per step: the interpreter picks
/// its step loops without telemetry once per stretch of tasks.
///
/// [`Runner::new`]: super::Runner::new
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
    pub(super) counters: Counters,
    /// Whether the current task execution is sampled.
    kept: bool,
    /// Whether the sampler keeps every execution (period 1: its state never changes, so
    /// `begin` need not ask it).
    every: bool,
    /// Paused: runs skip it (no events, no latencies) but its counters still sum them.
    pub(super) paused: bool,
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
    pub(super) fn flush_latency(&mut self) {
        if self.pending != 0 {
            self.latency.record_n(self.pending_ticks, self.pending);
            self.pending = 0;
        }
    }
}
