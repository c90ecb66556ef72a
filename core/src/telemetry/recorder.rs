//! A per-run telemetry bundle that applies the sampling rule: counters see every event, the
//! sink and the latency histogram only the events of kept spans.

use super::{Counters, Event, EventSink, Histogram, Sampler};

/// Exact counters, a latency histogram and an event sink, fed through one [`Sampler`].
///
/// Call [`begin_span`](Self::begin_span) (or [`begin_span_key`](Self::begin_span_key)) at the
/// start of each span (a run, or a step execution); the sampler decides whether the span is
/// kept. [`event`](Self::event) always counts the event and forwards it to the sink only in a
/// kept span; [`latency`](Self::latency) records only in a kept span. Before the first span,
/// everything is kept.
///
/// # Examples
///
/// ```
/// use flujo_core::telemetry::{
///     Counter, Event, EventKind, Recorder, Sampler, StepOutcome, VecSink,
/// };
///
/// let mut rec = Recorder::new(VecSink::with_capacity(64), Sampler::one_in(10));
/// for run in 0..100u64 {
///     rec.begin_span();
///     rec.event(Event::new(0, run, EventKind::StepStart));
///     rec.latency(1_000 + run);
/// }
/// assert_eq!(rec.counters().get(Counter::StepsRun), 100); // exact
/// assert_eq!(rec.sink().events().len(), 10); // thinned
/// assert_eq!(rec.latency_histogram().count(), 10); // thinned
/// ```
#[derive(Debug)]
pub struct Recorder<S> {
    counters: Counters,
    latency: Histogram,
    sink: S,
    sampler: Sampler,
    /// Whether the current span is kept.
    kept: bool,
}

impl<S: EventSink> Recorder<S> {
    /// A recorder over `sink` that keeps the spans `sampler` picks. Allocates the histogram.
    pub fn new(sink: S, sampler: Sampler) -> Self {
        Self {
            counters: Counters::new(),
            latency: Histogram::new(),
            sink,
            sampler,
            kept: true,
        }
    }

    /// Starts a span, kept or not by the sampler's counter; returns whether it is kept.
    #[inline]
    pub fn begin_span(&mut self) -> bool {
        self.kept = self.sampler.sample();
        self.kept
    }

    /// Starts a span, kept or not by the sampler's hash of `key`; returns whether it is kept.
    #[inline]
    pub fn begin_span_key(&mut self, key: u64) -> bool {
        self.kept = self.sampler.sample_key(key);
        self.kept
    }

    /// Counts `event` (always) and offers it to the sink (in a kept span). Returns whether
    /// the sink took it: `false` when the span is not kept or the sink was full.
    #[inline]
    pub fn event(&mut self, event: Event) -> bool {
        self.counters.count_event(&event);
        self.kept && self.sink.emit(event)
    }

    /// Records a latency (in the caller's ticks) in a kept span.
    #[inline]
    pub fn latency(&mut self, ticks: u64) {
        if self.kept {
            self.latency.record(ticks);
        }
    }

    /// The exact counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The latency histogram of the kept spans.
    pub fn latency_histogram(&self) -> &Histogram {
        &self.latency
    }

    /// The sink.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The sink, mutably (to drain it).
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// Events the sink dropped because it was full (exact).
    pub fn events_dropped(&self) -> u64 {
        self.sink.dropped()
    }
}
