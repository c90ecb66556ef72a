//! Workers: a runner (scratch, record arena, telemetry ring) plus what it saw, lent to one run
//! or forked branch at a time from a bounded lock-free free list.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use flujo_core::context::Context;
use flujo_core::graph::NodeId;
use flujo_core::interp::{Runner, RunnerConfig, Telemetry};
use flujo_core::ring::{mpmc, spsc};
use flujo_core::telemetry::{Event, RingSink, Sampler};

use crate::config::{OptimizationConfig, TelemetryLevel};
use crate::report::ReportBuilder;
use crate::trace::{spans_from_events, TraceWriter};

use super::tally::Tallies;

/// The sink of a worker's runner: the producer end of its event ring.
pub(crate) type EventRing = RingSink<spsc::Producer<Event>>;

/// Idle workers kept for reuse.
const MAX_IDLE: usize = 256;

/// Spans kept per worker for the trace export.
const MAX_SPANS: usize = 8192;

/// A runner and what it saw. Owned by one run (or forked branch) at a time.
pub(crate) struct Worker<P, C> {
    /// The id named in traces.
    pub(crate) id: u32,
    /// The configuration generation the runner was built for.
    pub(crate) generation: u64,
    pub(crate) runner: Runner<P, C, EventRing>,
    /// The other end of the runner's event ring (drained after sampled runs).
    pub(crate) events: Option<spsc::Consumer<Event>>,
    /// Everything this worker's runs did: exact counts, sampled latencies.
    pub(crate) report: ReportBuilder,
    /// Exact per-step counts (telemetry level `counters` and up).
    pub(crate) tallies: Tallies,
    /// The step latencies of the run under way, when it is sampled (reused).
    pub(crate) samples: Vec<(NodeId, u64)>,
    /// Spans of sampled runs, for the trace export (bounded).
    pub(crate) trace: TraceWriter,
    /// Runs started on this worker (to sample one in `sample`).
    pub(crate) runs: u64,
    /// Times it was lent (runs and forked branches).
    pub(crate) loans: u64,
    pub(crate) sample: u64,
    pub(crate) level: TelemetryLevel,
    /// Scratch for draining the ring.
    drained: Vec<Event>,
    /// Events the runner's sink refused so far, as last reported.
    dropped_seen: u64,
}

impl<P: Clone, C: Context> Worker<P, C> {
    fn new(id: u32, generation: u64, cfg: &OptimizationConfig) -> Self {
        let runner_cfg = RunnerConfig {
            max_records: cfg.max_records,
            max_spare_contexts: 16,
            // With the shared result cache on, runners use it; off, nothing is cached.
            cache_capacity: 0,
            seed: 0x5EED ^ u64::from(id),
            fast_paths: cfg.fast_paths,
            copy_on_write: cfg.copy_on_write,
            breakers: cfg.breakers,
        };
        let level = cfg.telemetry.level;
        let period = cfg.telemetry.span_sample_period.max(1);
        let (telemetry, events) = if level >= TelemetryLevel::Histograms {
            let (producer, consumer) =
                spsc::channel(cfg.telemetry.ring_capacity).expect("validated: ring capacity");
            // Runs are sampled whole (one in `period`, by `sampled`); within a kept run every
            // step is recorded, the others run with the telemetry paused.
            let sampler = Sampler::always();
            (
                Some(Telemetry::new(RingSink::new(producer), sampler)),
                Some(consumer),
            )
        } else {
            (None, None)
        };
        let mut report = ReportBuilder::new();
        report.set_sample_one_in(u64::from(period));
        let mut trace = TraceWriter::new(MAX_SPANS);
        trace.thread_name(id, format!("flujo worker {id}"));
        Self {
            id,
            generation,
            runner: Runner::build(runner_cfg, telemetry),
            events,
            report,
            tallies: Tallies::default(),
            samples: Vec::new(),
            trace,
            runs: 0,
            loans: 0,
            sample: u64::from(period),
            level,
            drained: Vec::new(),
            dropped_seen: 0,
        }
    }

    /// Whether the run about to start is sampled (timed, its step latencies into the
    /// per-step histograms, its events into the ring); counts the run and pauses the
    /// runner's telemetry for a run that is not.
    pub(crate) fn sampled(&mut self) -> bool {
        self.runs += 1;
        let kept = self.level >= TelemetryLevel::Histograms && self.runs % self.sample == 0;
        if let Some(t) = self.runner.telemetry_mut() {
            t.set_paused(!kept);
        }
        kept
    }

    /// Drains the event ring (what the core's sampler kept) into the report (breaker
    /// transitions, dropped events) and, at the events level, into the trace as spans.
    pub(crate) fn drain(&mut self, names: &dyn Fn(u32) -> String) {
        let Some(ring) = &mut self.events else {
            return;
        };
        let dropped = self.runner.telemetry().map_or(0, |t| t.events_dropped());
        if dropped > self.dropped_seen {
            self.report.add_events_dropped(dropped - self.dropped_seen);
            self.dropped_seen = dropped;
        }
        self.drained.clear();
        while let Some(e) = ring.pop() {
            self.drained.push(e);
        }
        if self.drained.is_empty() {
            return;
        }
        self.report.add_events(&self.drained);
        if self.level >= TelemetryLevel::Events && !self.trace.is_full() {
            self.trace
                .extend(spans_from_events(&self.drained, names, self.id, 1.0));
        }
    }
}

/// A worker, shared between the free list and the list of all workers.
type Slot<P, C> = Arc<Mutex<Worker<P, C>>>;

/// The workers of an executor: every one made is kept in `all` (so reports see what each
/// saw); idle ones wait in `free`.
pub(crate) struct Workers<P, C> {
    free: mpmc::Ring<Slot<P, C>>,
    all: Mutex<Vec<Slot<P, C>>>,
    config: Mutex<(Arc<OptimizationConfig>, u64)>,
    /// The generation in `config`, read without the lock on every loan.
    generation: AtomicU64,
    /// Whether workers are pooled (`OptimizationConfig::pooling`).
    pooling: AtomicBool,
    /// What unpooled workers saw before they were dropped.
    retired: Mutex<ReportBuilder>,
}

/// Locks `m`, recovering from poisoning: a worker whose run panicked outside a step is
/// never lent again (it is not put back in the free list), but its counts stay readable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<P: Clone, C: Context> Workers<P, C> {
    pub(crate) fn new(config: Arc<OptimizationConfig>, generation: u64) -> Self {
        Self {
            free: mpmc::Ring::with_capacity(MAX_IDLE).expect("a valid capacity"),
            all: Mutex::new(Vec::new()),
            pooling: AtomicBool::new(config.pooling),
            config: Mutex::new((config, generation)),
            generation: AtomicU64::new(generation),
            retired: Mutex::new(ReportBuilder::new()),
        }
    }

    /// The configuration workers are built for from now on.
    pub(crate) fn reconfigure(&self, config: Arc<OptimizationConfig>, generation: u64) {
        let mut c = lock(&self.config);
        self.pooling.store(config.pooling, Ordering::Relaxed);
        *c = (config, generation);
        self.generation.store(generation, Ordering::Release);
    }

    fn make(&self) -> Slot<P, C> {
        let (cfg, generation) = lock(&self.config).clone();
        let mut all = lock(&self.all);
        let id = u32::try_from(all.len()).unwrap_or(u32::MAX);
        let w = Arc::new(Mutex::new(Worker::new(id, generation, &cfg)));
        all.push(Arc::clone(&w));
        w
    }

    /// Lends a worker to `f`: an idle one built for the current configuration, else a new
    /// one (a stale idle one is rebuilt in place, keeping what it saw).
    ///
    /// With pooling off, every loan builds a worker and drops it after, keeping its counts.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Worker<P, C>) -> R) -> R {
        if !self.pooling.load(Ordering::Relaxed) {
            let (cfg, generation) = lock(&self.config).clone();
            let mut w = Worker::new(u32::MAX, generation, &cfg);
            let r = f(&mut w);
            let mut retired = lock(&self.retired);
            retired.merge(&w.report);
            for row in w.tallies.rows() {
                retired.add_step_counts(row);
            }
            return r;
        }
        let slot = loop {
            if let Some(slot) = self.free.pop() {
                break slot;
            }
            if self.free.is_empty() {
                break self.make();
            }
            // A worker being given back holds its place in the ring, not yet readable: it
            // is in a moment. Making one instead would grow `all` with every such race.
            std::thread::yield_now();
        };
        let r = {
            let mut w = lock(&slot);
            if w.generation != self.generation.load(Ordering::Acquire) {
                let (cfg, generation) = lock(&self.config).clone();
                let mut fresh = Worker::new(w.id, generation, &cfg);
                fresh.report.merge(&w.report);
                fresh.tallies = std::mem::take(&mut w.tallies);
                (fresh.runs, fresh.loans) = (w.runs, w.loans);
                fresh.trace = std::mem::replace(&mut w.trace, TraceWriter::new(0));
                *w = fresh;
            }
            w.loans += 1;
            f(&mut w)
        };
        // A full free list drops the handle; the worker stays in `all`.
        let _ = self.free.push(slot);
        r
    }

    /// Calls `f` on every worker ever made (waiting for a busy one to finish its run).
    pub(crate) fn each(&self, mut f: impl FnMut(&mut Worker<P, C>)) {
        let all: Vec<_> = lock(&self.all).clone();
        for w in &all {
            f(&mut lock(w));
        }
    }

    /// What unpooled workers saw.
    pub(crate) fn retired(&self) -> MutexGuard<'_, ReportBuilder> {
        lock(&self.retired)
    }

    /// Idle workers.
    pub(crate) fn idle(&self) -> usize {
        self.free.len()
    }

    /// Workers made so far.
    pub(crate) fn count(&self) -> usize {
        lock(&self.all).len()
    }
}
