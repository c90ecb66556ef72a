//! The runner pool: pooled runners (a core `Runner` with its scratch, record arena and
//! telemetry ring) lent to one run or forked branch at a time from a bounded lock-free free
//! list, and, apart from each, what its runs did.
//!
//! Words: a *worker* is a thread (`OptimizationConfig::workers` of them in the rayon pool); a
//! [`PooledRunner`] is what a run borrows, on whatever thread it runs. A forked run on one
//! worker thread can hold several pooled runners at once.
//!
//! The split is what lets [`Executor::report`](super::Executor::report) never wait for a
//! step: the runner is owned by whoever borrowed it (no lock), and what a report reads
//! (the runner's [`RunnerStats`]) is behind its own mutex, which a run takes only at its end
//! to add what it did, and a report takes to read it. The arena readings and the loan count
//! are single-writer atomics beside it.
//!
//! A report holds a runner's lock only for a few swaps and copies, so a run ending meanwhile
//! waits microseconds: it swaps the runner's [`ReportBuilder`] (what its runs added since the
//! last report, latency histograms included) for a cleared spare, and takes the exact step
//! counts made since; the merging (tens of KiB per histogram) happens after, outside every
//! runner's lock, into the collected totals, from which the report is built.
//!
//! Idle runners are bounded: at most [`RunnerPool::idle_max`] wait in the free list, and one
//! given back past that is freed, its counts merged into the retired totals first (as an
//! unpooled runner's are), so the report loses nothing and the arena they reserve is bounded.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use flujo_core::context::Context;
use flujo_core::graph::NodeId;
use flujo_core::interp::{Runner, RunnerConfig, Telemetry};
use flujo_core::ring::{mpmc, spsc};
use flujo_core::telemetry::{Event, RingSink, Sampler};

use crate::config::{OptimizationConfig, TelemetryLevel};
use crate::monitor::{OpenWindow, Part};
use crate::report::ReportBuilder;
use crate::trace::{spans_from_events, TraceWriter};

use super::tally::{SeenBreaker, Tallies};

/// The sink of a pooled runner's core runner: the producer end of its event ring.
pub(crate) type EventRing = RingSink<spsc::Producer<Event>>;

/// Spans kept per runner for the trace export.
const MAX_SPANS: usize = 8192;

/// Idle runners kept beyond two per pool thread (see [`idle_max`]).
const IDLE_SPARE: usize = 4;

/// Idle runners kept for runs nested by lending waits (see [`idle_max`]): half the lending
/// depth bound.
const LEND_SPARE: usize = crate::lend::MAX_DEPTH as usize / 2;

/// The most idle runners an executor on `threads` pool threads keeps: a power of two (the
/// free ring's capacity, so a full ring is the bound) of at least
/// `2 * threads + 4 + 16`.
///
/// Why that many: a run holds its runner while it waits for a forked fan-out, and each
/// branch running meanwhile holds one too, so with `threads` pool threads a forked run needs
/// up to `threads` runners beyond its own; a pool thread waiting in a fork may take another
/// submission (nesting once more), and callers outside the pool run inline with a runner of
/// their own. Two per thread covers one level of that nesting on every thread, the spare few
/// the callers; deeper bursts make runners that are freed when they are given back.
///
/// A wait that lends its thread (`crate::lend`) nests a whole run on top of the waiting one,
/// each holding a runner for as long as its own wait lasts: an outage where one run in ten
/// backs off nests about ten deep on one thread. Making a runner costs tens of
/// microseconds (its record arena and histograms are fresh pages), so runners for half the
/// lending depth bound are kept too. The bound is a cap, not an allocation: an executor whose
/// runs never nest never makes them.
pub(crate) fn idle_max(threads: usize) -> usize {
    (2 * threads.max(1) + IDLE_SPARE + LEND_SPARE).next_power_of_two()
}

/// What a runner's runs did, read by reports: a run adds to it at its end (briefly, under
/// [`Shared::stats`]), never while a step runs.
pub(crate) struct RunnerStats {
    /// Exact run counts, sampled latencies, drained events.
    pub(crate) report: ReportBuilder,
    /// Exact per-step counts (telemetry level `counters` and up).
    pub(crate) tallies: Tallies,
    /// Spans of sampled runs, for the trace export (bounded).
    pub(crate) trace: TraceWriter,
    /// Of the runs counted in `report`, those made on the caller's thread
    /// (`Executor::run`).
    pub(crate) inline_runs: u64,
    /// The monitor's open bucket (see [`crate::monitor`]).
    pub(crate) window: OpenWindow,
}

impl RunnerStats {
    /// Makes `bucket` the open bucket of the monitor's window, handing back the one open
    /// before with its step counts, if it counted anything.
    #[inline]
    pub(crate) fn open_window(&mut self, epoch: u64, bucket: u64) -> Option<Part> {
        let Self {
            window, tallies, ..
        } = self;
        window.open(epoch, bucket, &mut |steps| tallies.take_window(steps))
    }
}

/// The part of a runner that reports read: its stats, its loan count and arena readings.
pub(crate) struct Shared {
    /// The id named in traces.
    pub(crate) id: u32,
    /// Taken by a run at its end and by reports; held for a few additions, never across a
    /// step or user code.
    pub(crate) stats: Mutex<RunnerStats>,
    /// Times the runner was lent (runs and forked branches). Written only by the runner's
    /// holder (a load and a store, `Relaxed`: the free ring's hand-over orders successive
    /// holders), read by reports; only grows.
    loans: AtomicU64,
    /// Bytes its arena handed out in its last loan, stored by the holder as it gives the
    /// runner back (`Relaxed`: a reading, exact when no loan is under way).
    arena_used_bytes: AtomicU64,
    /// Bytes its arena reserves, stored when the runner is built.
    arena_reserved_bytes: AtomicU64,
    /// Chunk bytes its arena holds, stored when the runner is built (the record arena is
    /// allocated whole then and never grows: its limit is its first chunk).
    arena_chunk_bytes: AtomicU64,
    /// The runner's other bytes (see [`PooledRunner::held_bytes`]), stored when it is built
    /// and after each sampled run (`Relaxed`: a reading).
    runner_bytes: AtomicU64,
    /// A cleared builder with the step rows of an earlier delta, swapped in for the next
    /// (so the runs do not remake its histograms). Used by reports only, one at a time.
    spare: Mutex<Option<ReportBuilder>>,
}

impl Shared {
    /// Times lent.
    pub(crate) fn loans(&self) -> u64 {
        self.loans.load(Ordering::Relaxed)
    }

    /// Arena bytes used in the last loan, and reserved.
    pub(crate) fn arena_bytes(&self) -> (u64, u64) {
        (
            self.arena_used_bytes.load(Ordering::Relaxed),
            self.arena_reserved_bytes.load(Ordering::Relaxed),
        )
    }

    /// The bytes the runner holds: its arena's chunks, and the rest
    /// ([`PooledRunner::held_bytes`]).
    pub(crate) fn held_bytes(&self) -> (u64, u64) {
        (
            self.arena_chunk_bytes.load(Ordering::Relaxed),
            self.runner_bytes.load(Ordering::Relaxed),
        )
    }
}

/// A pooled runner: a core runner and its scratch. Owned by one run (or forked branch) at a
/// time; what its runs did goes to `shared`.
pub(crate) struct PooledRunner<P, C> {
    /// The configuration generation the runner was built for.
    generation: u64,
    pub(crate) runner: Runner<P, C, EventRing>,
    /// The other end of the runner's event ring (drained after sampled runs).
    events: Option<spsc::Consumer<Event>>,
    /// The step latencies of the run under way, when it is sampled (reused).
    pub(crate) samples: Vec<(NodeId, u64)>,
    /// Runs started on this runner (to sample one in `sample`).
    runs: u64,
    sample: u64,
    level: TelemetryLevel,
    /// Scratch for draining the ring.
    drained: Vec<Event>,
    /// Events the runner's sink refused so far, as last reported.
    dropped_seen: u64,
    /// What reports read.
    pub(crate) shared: Arc<Shared>,
}

impl<P: Clone, C: Context> PooledRunner<P, C> {
    /// A runner for `cfg`, adding to `shared` (a fresh one, or a rebuilt runner's).
    fn new(generation: u64, cfg: &OptimizationConfig, shared: Arc<Shared>) -> Self {
        let id = shared.id;
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
        let period = cfg.telemetry.run_sample_period.max(1);
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
        lock(&shared.stats)
            .report
            .set_run_sample_period(u64::from(period));
        let runner = Runner::build(runner_cfg, telemetry);
        let reserved = runner.arena().memory_bound_bytes() as u64;
        shared
            .arena_reserved_bytes
            .store(reserved, Ordering::Relaxed);
        let chunk = runner.arena().stats().chunk_capacity_bytes as u64;
        shared.arena_chunk_bytes.store(chunk, Ordering::Relaxed);
        let runner = Self {
            generation,
            runner,
            events,
            samples: Vec::new(),
            runs: 0,
            sample: u64::from(period),
            level,
            drained: Vec::new(),
            dropped_seen: 0,
            shared,
        };
        runner.note_held_bytes();
        runner
    }

    /// The bytes the runner holds beside its arena, as far as the executor can see them: the
    /// pooled runner and its shared part (their own structures, the report builder and trace
    /// writer structures inline in them included), the slots of its event ring, and the
    /// scratch a sampled run fills. The core runner's own scratch (spare contexts, fan-out
    /// buffers) is not counted.
    fn held_bytes(&self) -> u64 {
        let ring = self.events.as_ref().map_or(0, |c| c.capacity()) * size_of::<Event>();
        let scratch = self.samples.capacity() * size_of::<(NodeId, u64)>()
            + self.drained.capacity() * size_of::<Event>();
        (size_of::<Self>() + size_of::<Shared>() + ring + scratch) as u64
    }

    /// Stores [`held_bytes`](Self::held_bytes) for reports.
    fn note_held_bytes(&self) {
        let bytes = self.held_bytes();
        self.shared.runner_bytes.store(bytes, Ordering::Relaxed);
    }

    /// A fresh runner with stats of its own.
    fn fresh(id: u32, generation: u64, cfg: &OptimizationConfig) -> Self {
        let mut trace = TraceWriter::new(MAX_SPANS);
        trace.thread_name(id, format!("flujo runner {id}"));
        let shared = Arc::new(Shared {
            id,
            stats: Mutex::new(RunnerStats {
                report: ReportBuilder::new(),
                tallies: Tallies::default(),
                trace,
                inline_runs: 0,
                window: OpenWindow::default(),
            }),
            loans: AtomicU64::new(0),
            arena_used_bytes: AtomicU64::new(0),
            arena_reserved_bytes: AtomicU64::new(0),
            arena_chunk_bytes: AtomicU64::new(0),
            runner_bytes: AtomicU64::new(0),
            spare: Mutex::new(None),
        });
        Self::new(generation, cfg, shared)
    }

    /// Whether the run about to start is sampled (timed, its step latencies into the
    /// per-step histograms, its events into the ring); counts the run and pauses the
    /// runner's telemetry for a run that is not.
    /// With `off` (a degradation action stopped sampling), no run is.
    pub(crate) fn sampled(&mut self, off: bool) -> bool {
        self.runs += 1;
        let kept = !off
            && self.level >= TelemetryLevel::Histograms
            && self.runs.is_multiple_of(self.sample);
        if let Some(t) = self.runner.telemetry_mut() {
            t.set_paused(!kept);
        }
        kept
    }

    /// The events the last [`drain`](Self::drain) took (the `tracing` feature's input).
    #[cfg(feature = "tracing")]
    pub(crate) fn drained(&self) -> &[Event] {
        &self.drained
    }

    /// Drains the event ring (what the core's sampler kept) into `stats` (breaker
    /// transitions, dropped events) and, at the events level, into the trace as spans.
    pub(crate) fn drain(&mut self, stats: &mut RunnerStats, names: &dyn Fn(u32) -> String) {
        let Some(ring) = &mut self.events else {
            return;
        };
        let dropped = self.runner.telemetry().map_or(0, |t| t.events_dropped());
        if dropped > self.dropped_seen {
            stats.report.add_events_dropped(dropped - self.dropped_seen);
            self.dropped_seen = dropped;
        }
        self.drained.clear();
        while let Some(e) = ring.pop() {
            self.drained.push(e);
        }
        // Off the hot path: only a sampled run drains, and only it grows the scratch.
        self.note_held_bytes();
        if self.drained.is_empty() {
            return;
        }
        stats.report.add_events(&self.drained);
        if self.level >= TelemetryLevel::Events && !stats.trace.is_full() {
            stats
                .trace
                .extend(spans_from_events(&self.drained, names, self.shared.id, 1.0));
        }
    }
}

/// What freed runners (unpooled ones after each loan, pooled ones given back past the idle
/// bound or after a panic) counted, kept for the report.
#[derive(Default)]
pub(crate) struct Retired {
    /// Their runs, step counts and events.
    pub(crate) report: ReportBuilder,
    /// The breakers they met, one entry per breaker.
    pub(crate) breakers: Vec<SeenBreaker>,
    /// Loans of the pooled ones.
    pub(crate) loans: u64,
    /// Their inline runs.
    pub(crate) inline_runs: u64,
    /// Pooled runners freed.
    pub(crate) freed: u64,
    /// Their monitor buckets, not yet taken by the monitor (merged by bucket).
    pub(crate) windows: Vec<Part>,
}

impl Retired {
    /// Adds what `stats` counted.
    fn absorb(&mut self, stats: &mut RunnerStats) {
        self.report.merge(&stats.report);
        for row in stats.tallies.rows() {
            self.report.add_step_counts(row);
            self.report.name_step(row.node, row.step.clone());
        }
        for seen in stats.tallies.breakers() {
            merge_breaker(&mut self.breakers, seen);
        }
        self.inline_runs += stats.inline_runs;
        let RunnerStats {
            window, tallies, ..
        } = stats;
        if let Some(part) = window.take(&mut |steps| tallies.take_window(steps)) {
            crate::monitor::merge_part(&mut self.windows, part);
        }
    }
}

/// Adds `seen` to `into` unless the same breaker is there.
pub(crate) fn merge_breaker(into: &mut Vec<SeenBreaker>, seen: &SeenBreaker) {
    match into
        .iter_mut()
        .find(|b| Arc::ptr_eq(&b.breaker, &seen.breaker))
    {
        Some(known) => known.shared |= seen.shared || known.step != seen.step,
        None => into.push(SeenBreaker {
            breaker: Arc::clone(&seen.breaker),
            step_id: seen.step_id,
            step: seen.step.clone(),
            shared: seen.shared,
        }),
    }
}

/// What [`RunnerPool::read`] shows.
pub(crate) enum Seen<'a> {
    /// A live runner: its shared part and, copied from its stats, the breakers it met and
    /// its inline runs.
    Live {
        shared: &'a Shared,
        breakers: &'a [SeenBreaker],
        inline_runs: u64,
        /// Heap bytes of its trace writer's records and of its report builders (its own
        /// and its spare), read under its locks.
        trace_bytes: u64,
        telemetry_bytes: u64,
    },
    /// What freed runners counted (their report is in the collected one).
    Retired(&'a Retired),
    /// Every runner's report (runs, exact step counts, latencies, counters, events),
    /// collected.
    Collected(&'a ReportBuilder),
}

/// The runners of an executor: idle ones wait in `free` (bounded), the stats of every live
/// one are listed in `live`, and what freed ones counted is in `retired`.
pub(crate) struct RunnerPool<P, C> {
    /// Idle runners; its capacity is the idle bound.
    free: mpmc::Ring<Box<PooledRunner<P, C>>>,
    /// The stats of every live (lent or idle) pooled runner. Held by a report while it
    /// reads them and `retired`, and by a runner being made or freed, so a report sees each
    /// runner's counts exactly once.
    live: Mutex<Vec<Arc<Shared>>>,
    /// The next runner id.
    next_id: AtomicU32,
    /// Pooled runners made.
    made: AtomicU64,
    config: Mutex<(Arc<OptimizationConfig>, u64)>,
    /// The generation in `config`, read without the lock on every loan.
    generation: AtomicU64,
    /// Whether runners are pooled (`OptimizationConfig::pooling`).
    pooling: AtomicBool,
    /// What freed runners counted.
    retired: Mutex<Retired>,
    /// The runners' and the retired reports and step counts, collected by reports (each
    /// takes the deltas since the last). Held by one report at a time, before `live`.
    collected: Mutex<ReportBuilder>,
}

/// Locks `m`, recovering from poisoning: nothing holding these locks runs user code, but a
/// panic must not make the counts unreadable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A lent runner, freed (its counts retired) if the loan unwinds: a run that panicked
/// outside a step may have left its runner half-way, so it is not lent again.
struct Loan<'a, P: Clone, C: Context> {
    pool: &'a RunnerPool<P, C>,
    runner: Option<Box<PooledRunner<P, C>>>,
}

impl<P: Clone, C: Context> Drop for Loan<'_, P, C> {
    fn drop(&mut self) {
        if let Some(w) = self.runner.take() {
            self.pool.free_runner(w);
        }
    }
}

impl<P: Clone, C: Context> RunnerPool<P, C> {
    /// A pool of runners for `config`, keeping at most [`idle_max`]`(threads)` idle.
    pub(crate) fn new(config: Arc<OptimizationConfig>, generation: u64, threads: usize) -> Self {
        Self {
            free: mpmc::Ring::with_capacity(idle_max(threads)).expect("a power of two"),
            live: Mutex::new(Vec::new()),
            next_id: AtomicU32::new(0),
            made: AtomicU64::new(0),
            pooling: AtomicBool::new(config.pooling),
            config: Mutex::new((config, generation)),
            generation: AtomicU64::new(generation),
            retired: Mutex::new(Retired::default()),
            collected: Mutex::new(ReportBuilder::new()),
        }
    }

    /// The configuration runners are built for from now on.
    pub(crate) fn reconfigure(&self, config: Arc<OptimizationConfig>, generation: u64) {
        let mut c = lock(&self.config);
        self.pooling.store(config.pooling, Ordering::Relaxed);
        *c = (config, generation);
        self.generation.store(generation, Ordering::Release);
    }

    #[cold]
    fn make(&self) -> Box<PooledRunner<P, C>> {
        let (cfg, generation) = lock(&self.config).clone();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let w = Box::new(PooledRunner::fresh(id, generation, &cfg));
        lock(&self.live).push(Arc::clone(&w.shared));
        self.made.fetch_add(1, Ordering::Relaxed);
        w
    }

    /// Drops `w` and moves what it counted to the retired totals, in one step as reports
    /// see it (under `live`).
    #[cold]
    fn free_runner(&self, w: Box<PooledRunner<P, C>>) {
        let mut live = lock(&self.live);
        if let Some(at) = live.iter().position(|s| Arc::ptr_eq(s, &w.shared)) {
            live.swap_remove(at);
        }
        let mut retired = lock(&self.retired);
        retired.absorb(&mut lock(&w.shared.stats));
        retired.loans += w.shared.loans();
        retired.freed += 1;
    }

    /// Lends a runner to `f`: an idle one built for the current configuration, else a new
    /// one (a stale idle one is rebuilt in place, keeping what it saw). Given back after,
    /// or freed if the idle bound is reached or `f` unwinds.
    ///
    /// With pooling off, every loan builds a runner and frees it after, keeping its counts.
    ///
    /// Inlined: out of line (as a second caller of the same instance made it) it cost
    /// `W1_executor_run` 89 Ir per run, the run's closure and its result passing through
    /// memory.
    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut PooledRunner<P, C>) -> R) -> R {
        if !self.pooling.load(Ordering::Relaxed) {
            let (cfg, generation) = lock(&self.config).clone();
            let mut w = PooledRunner::fresh(u32::MAX, generation, &cfg);
            let r = f(&mut w);
            lock(&self.retired).absorb(&mut lock(&w.shared.stats));
            return r;
        }
        let mut w = loop {
            if let Some(w) = self.free.pop() {
                break w;
            }
            if self.free.is_empty() {
                break self.make();
            }
            // A runner being given back holds its place in the ring, not yet readable: it
            // is in a moment. Making one instead would make a runner with every such race.
            std::thread::yield_now();
        };
        if w.generation != self.generation.load(Ordering::Acquire) {
            self.rebuild(&mut w);
        }
        let loans = &w.shared.loans;
        loans.store(loans.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        let mut loan = Loan {
            pool: self,
            runner: Some(w),
        };
        let r = f(loan.runner.as_mut().expect("lent"));
        let w = loan.runner.take().expect("lent");
        let used = w.runner.arena().allocated_bytes() as u64;
        w.shared.arena_used_bytes.store(used, Ordering::Relaxed);
        if let Err(full) = self.free.push(w) {
            self.free_runner(full.0);
        }
        r
    }

    /// Rebuilds `w` for the current configuration, keeping its stats.
    #[cold]
    fn rebuild(&self, w: &mut Box<PooledRunner<P, C>>) {
        let (cfg, generation) = lock(&self.config).clone();
        let shared = Arc::clone(&w.shared);
        **w = PooledRunner::new(generation, &cfg, shared);
    }

    /// Collects the runners' reports and shows what a report needs to `f`: each live
    /// runner, the retired totals, then the collected report. Holds off runners being made
    /// or freed meanwhile (so each count is seen once) and other reports. Waits for no run:
    /// a run holds its stats only to add to them at its end, and this holds them only to
    /// swap their report for a spare and copy their step counts.
    pub(crate) fn read(&self, mut f: impl FnMut(Seen<'_>)) {
        let mut collected = lock(&self.collected);
        let live = lock(&self.live);
        let (mut rows, mut breakers) = (Vec::new(), Vec::new());
        for shared in live.iter() {
            let mut delta = lock(&shared.spare).take().unwrap_or_default();
            let (inline_runs, trace_bytes, builder_bytes) = {
                let mut stats = lock(&shared.stats);
                delta.set_run_sample_period(stats.report.run_sample_period());
                std::mem::swap(&mut stats.report, &mut delta);
                stats.tallies.take_counts(&mut rows);
                breakers.clear();
                breakers.extend(stats.tallies.breakers().iter().cloned());
                let trace_bytes = stats.trace.held_bytes() as u64;
                (stats.inline_runs, trace_bytes, stats.report.held_bytes())
            };
            collected.merge(&delta);
            for row in &rows {
                collected.add_step_counts(row);
                collected.name_step(row.node, row.step.clone());
            }
            delta.clear();
            let telemetry_bytes = builder_bytes + delta.held_bytes();
            *lock(&shared.spare) = Some(delta);
            f(Seen::Live {
                shared,
                breakers: &breakers,
                inline_runs,
                trace_bytes,
                telemetry_bytes,
            });
        }
        {
            let mut retired = lock(&self.retired);
            collected.merge(&retired.report);
            retired.report.clear();
            f(Seen::Retired(&retired));
        }
        drop(live);
        f(Seen::Collected(&collected));
    }

    /// Frees the idle runners (a degradation action); returns how many.
    pub(crate) fn free_idle(&self) -> usize {
        let mut n = 0;
        while let Some(w) = self.free.pop() {
            self.free_runner(w);
            n += 1;
        }
        n
    }

    /// Calls `f` with the stats of every live runner, then with the monitor buckets of the
    /// freed ones (taken).
    pub(crate) fn each_window(
        &self,
        mut f: impl FnMut(&mut RunnerStats),
        mut retired: impl FnMut(Part),
    ) {
        let live = lock(&self.live);
        for shared in live.iter() {
            f(&mut lock(&shared.stats));
        }
        for part in std::mem::take(&mut lock(&self.retired).windows) {
            retired(part);
        }
    }

    /// Calls `f` with the id and stats of every live runner (for the trace export).
    pub(crate) fn each_stats(&self, mut f: impl FnMut(u32, &RunnerStats)) {
        let live = lock(&self.live);
        for shared in live.iter() {
            f(shared.id, &lock(&shared.stats));
        }
    }

    /// Moves every live runner's trace records into `into` ([`TraceWriter::append`]),
    /// leaving each runner's trace empty with its thread name.
    pub(crate) fn take_traces(&self, into: &mut TraceWriter) {
        let live = lock(&self.live);
        for shared in live.iter() {
            let mut stats = lock(&shared.stats);
            into.append(&mut stats.trace);
            stats
                .trace
                .thread_name(shared.id, format!("flujo runner {}", shared.id));
        }
    }

    /// Idle runners.
    pub(crate) fn idle(&self) -> usize {
        self.free.len()
    }

    /// The most idle runners kept.
    pub(crate) fn idle_max(&self) -> usize {
        self.free.capacity()
    }

    /// Pooled runners made so far.
    pub(crate) fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Live pooled runners.
    pub(crate) fn live(&self) -> usize {
        lock(&self.live).len()
    }
}
