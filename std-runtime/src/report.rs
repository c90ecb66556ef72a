//! The run report: what an operator reads after the executor has run a workload.
//!
//! The executor's report builder is fed as runs end (their [`Outcome`], step records,
//! exact [`Counters`] and drained telemetry [`Event`]s) and by the executor's own bookkeeping
//! (rejections, pool, arena and admission readings); it turns what it holds into a
//! [`Report`] at any time ([`Executor::report`](crate::Executor::report)), so a monitor can
//! take reports while runs go on.
//!
//! A [`Report`] prints as an aligned table ([`Display`](fmt::Display)) and, with the crate
//! feature `serde`, serializes to JSON (`Report::to_json_string`).
//!
//! Counts are exact: every count in a report is the sum of what was fed in (saturating at
//! `u64::MAX`). Latency quantiles come from the core's log-linear [`Histogram`] (one per
//! step, keyed by step name), so each is within `1/256` of the exact quantile of the
//! latencies fed in; latencies are kept in whole nanoseconds (`*_ns` fields, exact integers
//! in JSON) and printed in microseconds.
//!
//! Sampling thins events, never counts: the [`Counters`] of a report are exact, while the
//! per-step rows count the step records fed in (records a run could not keep are counted in
//! [`TelemetryStats::records_dropped`]).

#[cfg(test)] // the builder counts refusals by reason only in its tests
use crate::Refusal;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

use flujo_core::interp::{Outcome, StepRecord};
use flujo_core::policy::BreakerState;
use flujo_core::telemetry::StepOutcome;
use flujo_core::telemetry::{Counter, Counters, Event, EventKind, Histogram};

/// The counts a core [`Histogram`] allocates (its `BUCKETS`, which the core does not export;
/// `monitor/resources/tests.rs` counts them).
pub(crate) const HISTOGRAM_BUCKETS: usize = 7_424;

/// What happened to the runs: every submission, and every run made on the caller's thread.
///
/// The identity, exact in every report:
///
/// `submitted == completed + panicked + handed_back + rejected() + in_flight`
///
/// and `completed == succeeded + failed + aborted`. A submission ([`Executor::submit`] and
/// `submit_with`, accepted or refused) counts in `submitted` when the call is made, and
/// later in exactly one of `completed`, `panicked`, `handed_back` or the `rejected_*` counts;
/// until then it is `in_flight`. A run made on the caller's thread ([`Executor::run`] and
/// `run_with`) counts in `inline` and, when it ends, in `submitted` and in `completed` or
/// `panicked` at once: it is never in flight.
///
/// [`Executor::submit`]: crate::Executor::submit
/// [`Executor::run`]: crate::Executor::run
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct Runs {
    /// Submissions, accepted or not, plus the inline runs ended.
    pub submitted: u64,
    /// Runs that ended with an [`Outcome`], however it read.
    pub completed: u64,
    /// Runs whose root produced an output.
    pub succeeded: u64,
    /// Runs that failed.
    pub failed: u64,
    /// Runs stopped (usage denied, cancelled, deadline passed).
    pub aborted: u64,
    /// Runs that panicked outside a step (in a reducer, selector, splitter or merge): they
    /// ended without an outcome.
    pub panicked: u64,
    /// Accepted submissions handed back unrun at shutdown (`Drain::HandBack`).
    pub handed_back: u64,
    /// Submissions accepted and not yet ended when the report was built.
    pub in_flight: u64,
    /// Submissions refused because the queue was full.
    pub rejected_queue_full: u64,
    /// Submissions refused by the admission limit.
    pub rejected_over_limit: u64,
    /// Submissions refused during shutdown.
    pub rejected_shutting_down: u64,
    /// Submissions shed by a degradation action (`shed_low`, `shed_normal`).
    #[cfg_attr(feature = "serde", serde(default))]
    pub rejected_shed: u64,
    /// Of the runs ended (`completed + panicked`), those made on the caller's thread: they
    /// are counted in `submitted` too, as they end.
    pub inline: u64,
}

impl Runs {
    /// Submissions refused, for any reason.
    pub fn rejected(&self) -> u64 {
        self.rejected_queue_full
            .saturating_add(self.rejected_over_limit)
            .saturating_add(self.rejected_shutting_down)
            .saturating_add(self.rejected_shed)
    }
}

/// A latency distribution in nanoseconds: exact count, min, mean and max; quantiles within
/// `1/256` of the exact ones. All zero when `samples` is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Latency {
    /// How many latencies were recorded.
    pub samples: u64,
    /// The smallest.
    pub min_ns: u64,
    /// The mean, rounded down.
    pub mean_ns: u64,
    /// The median.
    pub p50_ns: u64,
    /// The 95th percentile.
    pub p95_ns: u64,
    /// The 99th percentile.
    pub p99_ns: u64,
    /// The largest.
    pub max_ns: u64,
}

impl Latency {
    /// The distribution of the values (in nanoseconds) recorded in `histogram`.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_core::telemetry::Histogram;
    /// use flujo_runtime::report::Latency;
    ///
    /// let mut h = Histogram::new();
    /// for ns in 1..=100 {
    ///     h.record(ns);
    /// }
    /// let l = Latency::from_histogram(&h);
    /// assert_eq!((l.samples, l.min_ns, l.p50_ns, l.p99_ns, l.max_ns), (100, 1, 50, 99, 100));
    /// assert_eq!(Latency::from_histogram(&Histogram::new()), Latency::default());
    /// ```
    pub fn from_histogram(histogram: &Histogram) -> Self {
        let Some(p) = histogram.percentiles() else {
            return Self::default();
        };
        Self {
            samples: histogram.count(),
            min_ns: histogram.min().unwrap_or(0),
            mean_ns: histogram.mean().unwrap_or(0),
            p50_ns: p.p50,
            p95_ns: p.p95,
            p99_ns: p.p99,
            max_ns: histogram.max().unwrap_or(0),
        }
    }
}

/// What one step (by name) did over the runs fed in, from its step records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct StepRow {
    /// The step's name.
    pub step: String,
    /// The node id of the first record seen under this name.
    pub node: u32,
    /// Step records: executions (a cache hit or a refused call is one too).
    pub executions: u64,
    /// Executions that produced an output (by itself, from the cache or its fallback).
    pub succeeded: u64,
    /// Executions that failed.
    pub failed: u64,
    /// Executions that recovery skipped.
    pub skipped: u64,
    /// Executions that aborted their run.
    pub aborted: u64,
    /// Attempts after the first (loops' iterations are not retries).
    pub retries: u64,
    /// Executions whose output came from the cache.
    pub cache_hits: u64,
    /// Executions whose fallback ran.
    pub fallbacks: u64,
    /// Execution latency, start to end (fallback and backoff included).
    pub latency: Latency,
}

impl StepRow {
    /// Counts one step record into this row: an execution, its outcome, its retries (none for
    /// a loop's own record, whose attempts are its iterations), a cache hit, a fallback. The
    /// one place that says how a record counts; `add` accumulates (saturating in a
    /// [`ReportBuilder`], plain in the executor's per-worker tallies, which count from zero
    /// between reports and stay far below `u64::MAX`).
    #[inline]
    pub(crate) fn count_with(&mut self, record: &StepRecord, add: impl Fn(&mut u64, u64)) {
        add(&mut self.executions, 1);
        let outcome = match record.outcome {
            StepOutcome::Succeeded => &mut self.succeeded,
            StepOutcome::Failed => &mut self.failed,
            StepOutcome::Skipped => &mut self.skipped,
            StepOutcome::Aborted => &mut self.aborted,
        };
        add(outcome, 1);
        if record.loop_exit.is_none() {
            add(
                &mut self.retries,
                u64::from(record.attempts.saturating_sub(1)),
            );
        }
        add(&mut self.cache_hits, u64::from(record.cache_hit));
        add(&mut self.fallbacks, u64::from(record.fallback_used));
    }
}

/// A circuit breaker's activity: in an executor's report, one row per breaker of the graphs
/// it ran, read from the breaker itself (exact, and counting every user of a shared
/// breaker); from a builder fed only telemetry events, one row per step, tallied from the
/// events (sampled).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct BreakerRow {
    /// The step's id in its graph (of a breaker's row: the first step seen guarded by it).
    pub step_id: u32,
    /// The step's name (`#<id>` when no record named it); of
    /// a breaker guarding steps of several names, the first one's with ` (+others)`.
    pub step: String,
    /// Transitions to open (trips).
    pub to_open: u64,
    /// Transitions to half-open.
    pub to_half_open: u64,
    /// Transitions to closed.
    pub to_closed: u64,
    /// Calls the open breaker refused.
    pub rejected: u64,
}

/// Object-pool and arena readings, filled by the executor. The pooled objects are the
/// executor's pooled runners (a core runner with its record arena, lent to one run or forked
/// branch at a time), not its worker threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct PoolStats {
    /// Takes served by a recycled object.
    pub pool_hits: u64,
    /// Takes that had to allocate.
    pub pool_misses: u64,
    /// Objects alive (lent or idle).
    pub pool_live: u64,
    /// Objects waiting for reuse.
    pub pool_idle: u64,
    /// The most objects kept waiting for reuse: one given back past it is freed.
    pub pool_idle_max: u64,
    /// Objects freed so far (given back past `pool_idle_max`, or after a run panicked
    /// outside a step while holding one); what they counted stays in the report.
    pub pool_freed: u64,
    /// Bytes the run arenas of the live objects handed out in their last run (a run takes
    /// its record buffer, `max_records` records, whole).
    pub arena_bytes_used: u64,
    /// Bytes the run arenas of the live objects reserve (their bound: `max_records`
    /// records per object).
    pub arena_bytes_reserved: u64,
    /// The bound on `arena_bytes_reserved` while no run is under way:
    /// `pool_idle_max` objects of the largest reserve seen among the live ones.
    pub arena_bytes_reserved_idle_max: u64,
}

/// Admission-control readings, filled by the executor (rejections are in [`Runs`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct AdmissionStats {
    /// The limit on runs in flight when the report was built.
    pub limit_current: u64,
    /// The lowest limit seen.
    pub limit_min_seen: u64,
    /// The highest limit seen.
    pub limit_max_seen: u64,
}

/// How the runs' waits went (exact counts, filled by the executor): a retry's backoff and a
/// step's [`wait_until`](flujo_core::graph::StepCx::wait_until) lend their thread to queued
/// runs of their priority or higher, except where they cannot (see `docs/waiting.md`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct WaitStats {
    /// Waits that lent their thread (whether or not they found queued work).
    pub lent: u64,
    /// Waits that held their thread: inside a forked branch (its `rayon::join` frame holds
    /// the thread), or past the nesting bounds on a thread already helping.
    pub held: u64,
    /// Submitted runs that a waiting thread ran.
    pub helped: u64,
}

/// What telemetry kept and lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct TelemetryStats {
    /// Events drained from the pooled runners' sinks and fed in.
    pub events_recorded: u64,
    /// Events the sinks refused because they were full (exact).
    pub events_dropped: u64,
    /// Step records that did not fit their run's record buffer (exact).
    pub records_dropped: u64,
    /// Whole runs are sampled, one in this many per worker: the configuration's
    /// `telemetry.run_sample_period` (1: every run; 0: not told).
    pub run_sample_period: u64,
    /// Sampled runs left out of [`Report::bottlenecks`]: a record dropped, records that do
    /// not match the graph, or a graph past the bound (exact).
    #[cfg_attr(feature = "serde", serde(default))]
    pub bottleneck_runs_skipped: u64,
}

/// What an operator reads after a run of the executor: runs, throughput, per-step rows,
/// exact counters, cache, breakers, pool and arena, admission, telemetry.
///
/// Made by [`Executor::report`](crate::Executor::report); prints as an aligned table; with
/// the `serde` feature, serializes to JSON.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_core::graph::Graph;
/// use flujo_core::graph::ManualClock;
/// use flujo_runtime::clock::ticks;
/// use flujo_runtime::config::OptimizationConfig;
/// use flujo_runtime::Executor;
///
/// let clock = ManualClock::new(0);
/// let g = Graph::<u64, ()>::build(|b| {
///     let c = clock.clone();
///     b.task("fetch", move |x, _| {
///         c.advance(ticks(Duration::from_micros(x))); // the step takes x µs of the manual clock
///         Ok(x)
///     })
/// })
/// .unwrap();
/// let mut config = OptimizationConfig::latency();
/// config.telemetry.run_sample_period = 1; // time every run
/// let ex = Executor::builder(config).clock(clock.clone()).build().unwrap();
/// for i in 1..=4 {
///     ex.run(&g, i, ()).unwrap();
/// }
///
/// let report = ex.report();
/// assert_eq!((report.runs.submitted, report.runs.completed), (4, 4));
/// let fetch = report.step("fetch").unwrap();
/// assert_eq!(fetch.executions, 4);
/// assert_eq!(fetch.latency.max_ns, 4_000);
/// assert!(report.to_string().contains("fetch"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Report {
    /// Wall time the report covers, in nanoseconds.
    pub wall_ns: u64,
    /// What happened to the runs.
    pub runs: Runs,
    /// Completed runs per second of wall time (0 when the wall time is 0).
    pub throughput_runs_per_s: f64,
    /// Run latency (submission or start to end, as the executor measured it).
    pub run_latency: Latency,
    /// One row per step name, in the order the names were first seen.
    pub steps: Vec<StepRow>,
    /// The exact counters of every run fed in, summed. In JSON: an object from each
    /// counter's `snake_case` name to its value (reading ignores unknown names and takes
    /// missing ones as 0).
    #[cfg_attr(feature = "serde", serde(with = "counters_serde"))]
    pub counters: Counters,
    /// `cache_hits / (cache_hits + cache_misses)` of the counters; `None` without lookups.
    pub cache_hit_rate: Option<f64>,
    /// Breaker rows (see [`BreakerRow`]): by step id.
    pub breakers: Vec<BreakerRow>,
    /// Whether the breaker rows are the breakers' own exact counts (the executor reads every
    /// breaker when it reports) rather than tallied from sampled events.
    #[cfg_attr(feature = "serde", serde(default))]
    pub breakers_exact: bool,
    /// Pool and arena readings.
    pub pool: PoolStats,
    /// Admission-control readings.
    pub admission: AdmissionStats,
    /// How the runs' waits went (backoffs, steps waiting for work handed elsewhere).
    #[cfg_attr(feature = "serde", serde(default))]
    pub waits: WaitStats,
    /// The monitor's alerts: rules fired and resolved, the last events (see
    /// [`crate::monitor`]). Empty from a builder.
    #[cfg_attr(feature = "serde", serde(default))]
    pub alerts: crate::monitor::AlertStats,
    /// The health and the degradation actions: in force, taken and undone, the last moves
    /// (see [`crate::config::DegradationConfig`]).
    #[cfg_attr(feature = "serde", serde(default))]
    pub health: crate::monitor::health::HealthStats,
    /// What telemetry kept and lost.
    pub telemetry: TelemetryStats,
    /// Where sampled runs spent their time on their critical paths: per graph, each step's,
    /// fan-out's and the queue's share ([`BottleneckRow`]), by share descending.
    #[cfg_attr(feature = "serde", serde(default))]
    pub bottlenecks: Vec<BottleneckRow>,
    /// Whether this build catches panics ([`PANICS_CAUGHT`](crate::PANICS_CAUGHT)): `false` in
    /// a host built with `panic = "abort"`, where a panicking step ends the process instead of
    /// failing its attempt. The table's `panics` line says which.
    #[cfg_attr(feature = "serde", serde(default = "panics_caught_default"))]
    pub panics_caught: bool,
    /// The memory the engine holds, part by part, and the process's readings (filled by the
    /// executor; zero and `None` in a builder's own report).
    #[cfg_attr(feature = "serde", serde(default))]
    pub memory: MemoryStats,
}

/// A report written before `panics_caught` existed came from a build that caught panics.
#[cfg(feature = "serde")]
fn panics_caught_default() -> bool {
    true
}

/// The memory the engine holds, in bytes, counted from its own structures when the report is
/// built (no allocator is asked; nothing is guessed), and the process's readings.
///
/// Each part is what its structure holds by its lengths and capacities times its element
/// sizes, plus the owned strings and payload weights it knows; hash-table control bytes and
/// the allocator's own rounding are not in it. Read at report time only: a run never updates
/// any of it, except a pooled runner's scratch reading after a sampled run (see
/// [`runner_bytes`](Self::runner_bytes)).
///
/// The parts, as the text table and the Prometheus gauge
/// `flujo_engine_memory_bytes{part}` name them:
///
/// | part | field(s) |
/// |---|---|
/// | `cache` | [`cache_weight_bytes`](Self::cache_weight_bytes) + [`cache_slot_bytes`](Self::cache_slot_bytes) |
/// | `arenas` | [`arena_bytes`](Self::arena_bytes) |
/// | `runners` | [`runner_bytes`](Self::runner_bytes) |
/// | `queues` | [`queue_bytes`](Self::queue_bytes) |
/// | `trace` | [`trace_bytes`](Self::trace_bytes) |
/// | `telemetry` | [`telemetry_bytes`](Self::telemetry_bytes) |
///
/// # Examples
///
/// ```
/// use flujo_core::graph::Graph;
/// use flujo_runtime::config::OptimizationConfig;
/// use flujo_runtime::Executor;
///
/// let g = Graph::<u64, ()>::build(|b| b.task("a", |x, _| Ok(x + 1))).unwrap();
/// let ex = Executor::new(OptimizationConfig::latency()).unwrap();
/// ex.run(&g, 1, ()).unwrap();
/// let memory = ex.report().memory;
/// assert!(memory.arena_bytes > 0 && memory.queue_bytes > 0);
/// assert_eq!(memory.total(), memory.parts().iter().map(|(_, bytes)| bytes).sum::<u64>());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct MemoryStats {
    /// Entries in the shared result cache (expired ones not yet removed included).
    pub cache_entries: u64,
    /// The weight of the cache's entries as its weigher gives it (by default `size_of` the
    /// output; an executor built with `ExecutorBuilder::cache_weigher` weighs payloads its
    /// own way): at most `result_cache.max_bytes`.
    pub cache_weight_bytes: u64,
    /// The cache's fixed overhead: its shards and the slots of their maps, CLOCK rings and
    /// flight tables (capacity times slot size). A slot holds the output value itself, so with
    /// the default weigher an output's inline bytes are in both cache figures.
    pub cache_slot_bytes: u64,
    /// The pooled runners' record arenas: the chunk memory each live runner's arena holds
    /// (`max_records` step records, allocated when the runner is built).
    pub arena_bytes: u64,
    /// The rest of the live pooled runners that the executor can see: the runner itself, its
    /// telemetry event ring (capacity times `size_of::<Event>()`) and the scratch vectors a
    /// sampled run fills (read after each sampled run). The core runner's own scratch (spare
    /// contexts, fan-out buffers) is not counted.
    pub runner_bytes: u64,
    /// The submission queues: the three priority rings' slots (capacity rounded up to a power
    /// of two, times slot size) and the queues' own structure. Slots are allocated at
    /// construction, queued or not; what a queued input owns on the heap is not counted.
    pub queue_bytes: u64,
    /// Submissions queued when the report was built.
    pub queued_items: u64,
    /// The spans and instants the runners keep for the trace export (each with its owned
    /// strings and argument lists; the names of the process and threads are not counted).
    /// Grows with sampled runs at telemetry level `events`, to at most 8,192 records per
    /// runner, and falls to zero when [`Executor::take_trace`](crate::Executor::take_trace)
    /// takes them.
    pub trace_bytes: u64,
    /// The report builders (each runner's, its spare, the collected and the retired ones):
    /// their latency histograms (58 KiB each: one for run latency, one per step name timed,
    /// and per priority's queue wait with the `prometheus` feature), step rows and names; and
    /// the monitor's merged window buckets and alert events (`crate::monitor`; each runner's
    /// one open bucket is not counted).
    pub telemetry_bytes: u64,
    /// What the operating system says about the whole process (host code included).
    pub process: ProcessStats,
}

impl MemoryStats {
    /// The cache part: weight plus slots.
    pub fn cache_bytes(&self) -> u64 {
        self.cache_weight_bytes
            .saturating_add(self.cache_slot_bytes)
    }

    /// Each part by the name the table and the `part` label use: `cache`, `arenas`,
    /// `runners`, `queues`, `trace`, `telemetry`.
    pub fn parts(&self) -> [(&'static str, u64); 6] {
        [
            ("cache", self.cache_bytes()),
            ("arenas", self.arena_bytes),
            ("runners", self.runner_bytes),
            ("queues", self.queue_bytes),
            ("trace", self.trace_bytes),
            ("telemetry", self.telemetry_bytes),
        ]
    }

    /// The sum of the parts (saturating).
    pub fn total(&self) -> u64 {
        self.parts()
            .iter()
            .fold(0u64, |sum, (_, bytes)| sum.saturating_add(*bytes))
    }
}

/// The process's readings (Linux `/proc` and cgroup files; `None` elsewhere or when a file
/// cannot be read), taken when the report is built: see
/// [`monitor::resources`](crate::monitor::resources) for the files, units and cost.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
#[non_exhaustive]
pub struct ProcessStats {
    /// User plus system CPU time of the process since it started, in nanoseconds (10 ms
    /// resolution).
    pub cpu_time_ns: Option<u64>,
    /// CPU time over wall time since the previous reading (the executor's previous report):
    /// `1.0` is one core busy the whole time. `None` on the first reading.
    pub cpu_cores_busy: Option<f64>,
    /// [`cpu_cores_busy`](Self::cpu_cores_busy) over [`cores_available`](Self::cores_available):
    /// the share of all the process's cores, `0.0..=1.0` (a little over with 10 ms ticks on a
    /// short interval).
    pub cpu_share_of_cores: Option<f64>,
    /// The wall time, in nanoseconds, the utilisation covers.
    pub interval_ns: Option<u64>,
    /// Cores the process may use (`std::thread::available_parallelism`).
    pub cores_available: u64,
    /// Resident memory (`VmRSS`), in bytes.
    pub resident_bytes: Option<u64>,
    /// The smallest cgroup memory limit of the process (v2 `memory.max`, v1
    /// `memory.limit_in_bytes`, up the hierarchy), in bytes; `None` when none is set.
    pub memory_limit_bytes: Option<u64>,
}

/// What a [`BottleneckRow`] is the share of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum BottleneckKind {
    /// A task's own time (its fallback's is the fallback's row), or a loop's own time
    /// beyond its iterations.
    Step,
    /// A fan-out's (parallel or map) own time beyond its branch that finished last: fork
    /// and join, split and reduce, and, run inline, its other branches.
    FanOut,
    /// Submitted runs' time from submission to start.
    Queue,
    /// The run's time outside every step and fan-out of its top level (set-up, the glue
    /// between steps).
    Overhead,
}

impl BottleneckKind {
    /// How many kinds there are.
    pub(crate) const COUNT: usize = 4;

    /// Its name in the report's table: `step`, `fan-out`, `queue` or `overhead`.
    pub fn name(self) -> &'static str {
        match self {
            BottleneckKind::Step => "step",
            BottleneckKind::FanOut => "fan-out",
            BottleneckKind::Queue => "queue",
            BottleneckKind::Overhead => "overhead",
        }
    }
}

/// The share of one graph's sampled runs' time held by one step, fan-out, the queue or the
/// run overhead, on the runs' critical paths. The shares of a graph's rows sum to 1.
///
/// A sampled run's time is its queue wait (submitted runs) plus its latency, split along
/// its critical path: a task holds its latency (less its fallback's, which is the
/// fallback's); a loop holds what its iterations leave of its latency; in a fan-out
/// (parallel or map) only the branch or item that finished last is on the path (records
/// carry no end tick, so the one with the longest critical path, the later on a tie), and
/// the fan-out holds the rest of its time: fork and join, split and reduce, and, run
/// inline, its other branches. A fan-out's own time is not measured: what the measured
/// steps leave of the run goes to the fan-outs on the path, in proportion to their
/// branches' length, or to `(run overhead)` when no fan-out is there. Only sampled runs
/// count (telemetry level `histograms` and up); runs with dropped records are skipped
/// ([`TelemetryStats::bottleneck_runs_skipped`]).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use flujo_core::graph::{Graph, ManualClock};
/// use flujo_runtime::clock::ticks;
/// use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
/// use flujo_runtime::report::BottleneckKind;
/// use flujo_runtime::Executor;
///
/// let clock = ManualClock::new(0);
/// let g = Graph::<u64, ()>::build(|b| {
///     let (c1, c3) = (clock.clone(), clock.clone());
///     let fetch = b.task("fetch", move |x, _| {
///         c1.advance(ticks(Duration::from_millis(1)));
///         Ok(x)
///     });
///     let score = b.task("score", move |x, _| {
///         c3.advance(ticks(Duration::from_millis(3)));
///         Ok(x)
///     });
///     b.sequence("pipeline", &[fetch, score])
/// })
/// .unwrap();
/// let mut config = OptimizationConfig::latency();
/// config.telemetry.level = TelemetryLevel::Histograms;
/// config.telemetry.run_sample_period = 1; // every run sampled
/// let ex = Executor::builder(config).clock(clock.clone()).build().unwrap();
/// ex.run(&g, 1, ()).unwrap();
///
/// let top = &ex.report().bottlenecks[0];
/// assert_eq!((top.step.as_str(), top.kind), ("score", BottleneckKind::Step));
/// assert_eq!((top.share, top.critical_ns, top.runs), (0.75, 3_000_000, 1));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct BottleneckRow {
    /// The graph's root node's name.
    pub graph: String,
    /// The graph's id ([`Graph::id`](flujo_core::graph::Graph::id)).
    pub graph_id: u32,
    /// The step's, loop's or fan-out's name; `(queue)` or `(run overhead)`; past the bound
    /// on rows, [`OTHER_STEPS`].
    pub step: String,
    /// What it is.
    pub kind: BottleneckKind,
    /// `critical_ns` over the graph's total (queue waits plus run latencies), in `[0, 1]`.
    pub share: f64,
    /// Nanoseconds it held on the critical paths, summed over the runs.
    pub critical_ns: u64,
    /// Sampled runs whose critical path it was on.
    pub runs: u64,
    /// Sampled runs of the graph counted.
    pub graph_runs: u64,
}

impl Report {
    /// The value of one counter.
    pub fn counter(&self, counter: Counter) -> u64 {
        self.counters.get(counter)
    }

    /// The row of step `name`, if any record had that name.
    pub fn step(&self, name: &str) -> Option<&StepRow> {
        self.steps.iter().find(|row| row.step == name)
    }

    /// The report as JSON (one line).
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_runtime::config::OptimizationConfig;
    /// use flujo_runtime::report::Report;
    /// use flujo_runtime::Executor;
    ///
    /// let ex = Executor::<u64, ()>::new(OptimizationConfig::default()).unwrap();
    /// let report = ex.report();
    /// let json = report.to_json_string();
    /// assert!(json.contains("\"completed\":0"));
    /// assert_eq!(Report::from_json_str(&json).unwrap(), report);
    /// ```
    #[cfg(feature = "serde")]
    pub fn to_json_string(&self) -> String {
        // Every field serializes infallibly: plain numbers, strings and maps with string keys.
        serde_json::to_string(self).expect("a report always serializes")
    }

    /// Reads a report written by [`to_json_string`](Self::to_json_string).
    ///
    /// # Errors
    ///
    /// When `json` is not a report.
    #[cfg(feature = "serde")]
    pub fn from_json_str(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }
}

/// Per-step data kept by the builder: the row's counts and its latency histogram.
#[derive(Debug)]
struct StepEntry {
    row: StepRow,
    /// Latencies in nanoseconds; made with the first one (a step counted but not timed
    /// costs no histogram).
    latency_ns: Option<Histogram>,
}

impl StepEntry {
    /// The latency histogram, made if needed.
    fn latency_ns_mut(&mut self) -> &mut Histogram {
        self.latency_ns.get_or_insert_with(Histogram::new)
    }
}

/// Step rows a builder keeps (each has a 58 KiB histogram); the steps past them share one
/// row named [`OTHER_STEPS`].
pub const MAX_STEP_ROWS: usize = 256;

/// Nodes of a graph whose step rows a builder remembers by node id (see
/// `ReportBuilder::add_node_latency`); the rest are looked up by name.
const MAX_MEMO_NODES: usize = 1 << 16;

/// The row of the steps past [`MAX_STEP_ROWS`].
pub const OTHER_STEPS: &str = "(other steps)";

/// Collects what the executor feeds in and builds [`Report`]s from it.
///
/// Each step name costs one core [`Histogram`] (58 KiB), as does the run latency.
/// Builders can be kept per worker and [`merge`](Self::merge)d.
#[derive(Debug)]
pub(crate) struct ReportBuilder {
    runs: Runs,
    /// Submissions the executor reported with [`add_submitted`](Self::add_submitted).
    submitted: u64,
    run_latency_ns: Histogram,
    /// Per priority ([`Priority::index`](crate::Priority::index)), submitted runs' times from
    /// submission to start, made on first use; only the Prometheus exposition reads them.
    #[cfg(feature = "prometheus")]
    queue_wait_ns: [Option<Histogram>; 3],
    /// Invariant: `step_index[steps[i].row.step] == i` for every `i`.
    steps: Vec<StepEntry>,
    step_index: HashMap<String, usize, BuildHasherDefault<NameHasher>>,
    /// Of the graph whose latencies were added last (its id), each node's index in `steps`
    /// (`u32::MAX`: not looked up yet), so a sampled run's latencies skip the name lookup.
    node_entries: (u32, Vec<u32>),
    /// Names of step ids, from records and [`name_step`](Self::name_step).
    step_names: HashMap<u32, String>,
    counters: Counters,
    breakers: BTreeMap<u32, BreakerRow>,
    pool: PoolStats,
    admission: AdmissionStats,
    /// Whether [`observe_limit`](Self::observe_limit) or `set_admission` ran.
    admission_seen: bool,
    telemetry: TelemetryStats,
    /// Critical-path shares of sampled runs.
    #[cfg(not(loom))]
    bottlenecks: crate::monitor::bottleneck::Bottlenecks,
}

/// The step-name index's hasher (FxHash's word mix, one multiply per 8 bytes): step names
/// come from the host's own graphs, not from untrusted input, and the index is hit for every
/// sampled step latency, where SipHash cost more than the rest of the row's update.
#[derive(Default)]
struct NameHasher(u64);

impl Hasher for NameHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        let word = u64::from_le_bytes(tail) ^ (bytes.len() as u64) << 56;
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for ReportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ReportBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self {
            runs: Runs::default(),
            submitted: 0,
            run_latency_ns: Histogram::new(),
            #[cfg(feature = "prometheus")]
            queue_wait_ns: [None, None, None],
            steps: Vec::new(),
            step_index: HashMap::default(),
            node_entries: (u32::MAX, Vec::new()),
            step_names: HashMap::new(),
            counters: Counters::new(),
            breakers: BTreeMap::new(),
            pool: PoolStats::default(),
            admission: AdmissionStats::default(),
            admission_seen: false,
            telemetry: TelemetryStats::default(),
            #[cfg(not(loom))]
            bottlenecks: Default::default(),
        }
    }

    #[cfg(test)]
    /// Counts `n` submissions (accepted or refused) and inline runs. Optional: a report's
    /// `submitted` is at least the runs ended plus those handed back or rejected, and the
    /// excess of what is counted here over that is reported as in flight.
    pub fn add_submitted(&mut self, n: u64) {
        self.submitted = self.submitted.saturating_add(n);
    }

    /// Counts a run that ended with `outcome` after `wall_ns` nanoseconds.
    pub fn add_run(&mut self, outcome: Outcome, wall_ns: u64) {
        let count = match outcome {
            Outcome::Succeeded => &mut self.runs.succeeded,
            Outcome::Failed => &mut self.runs.failed,
            Outcome::Aborted => &mut self.runs.aborted,
        };
        *count = count.saturating_add(1);
        self.runs.completed = self.runs.completed.saturating_add(1);
        self.run_latency_ns.record(wall_ns);
    }

    /// Records that a submitted run of `priority` started `wait_ns` nanoseconds after its
    /// submission.
    #[cfg(feature = "prometheus")]
    #[inline]
    pub fn add_queue_wait(&mut self, priority: crate::Priority, wait_ns: u64) {
        self.queue_wait_ns[priority.index()]
            .get_or_insert_with(Histogram::new)
            .record(wait_ns);
    }

    /// The queue wait histograms of [`add_queue_wait`](Self::add_queue_wait), per priority.
    #[cfg(feature = "prometheus")]
    pub(crate) fn queue_wait_histograms(&self) -> &[Option<Histogram>; 3] {
        &self.queue_wait_ns
    }

    #[cfg(test)]
    /// Counts a submission refused for `reason`. A refused submission is also counted as
    /// submitted.
    pub fn rejected(&mut self, reason: Refusal) {
        self.add_rejected(reason, 1);
    }

    #[cfg(test)]
    /// Counts `n` submissions refused for `reason` at once (what an executor that keeps
    /// one count per reason hands over). They are also counted as submitted.
    pub fn add_rejected(&mut self, reason: Refusal, n: u64) {
        let count = match reason {
            Refusal::QueueFull => &mut self.runs.rejected_queue_full,
            Refusal::OverLimit => &mut self.runs.rejected_over_limit,
            Refusal::ShuttingDown => &mut self.runs.rejected_shutting_down,
            Refusal::Shed => &mut self.runs.rejected_shed,
        };
        *count = count.saturating_add(n);
    }

    #[cfg(test)]
    /// Counts `n` runs that panicked outside a step (ended without an outcome).
    pub fn add_panicked(&mut self, n: u64) {
        self.runs.panicked = self.runs.panicked.saturating_add(n);
    }

    #[cfg(test)]
    /// Counts `n` accepted submissions handed back unrun.
    pub fn add_handed_back(&mut self, n: u64) {
        self.runs.handed_back = self.runs.handed_back.saturating_add(n);
    }

    #[cfg(test)]
    /// Counts `n` runs made on the caller's thread (already counted as completed or
    /// panicked; the caller counts them in [`add_submitted`](Self::add_submitted) too).
    pub fn add_inline(&mut self, n: u64) {
        self.runs.inline = self.runs.inline.saturating_add(n);
    }

    #[cfg(test)]
    /// Adds a step record under `step_name`; its latency becomes nanoseconds through
    /// `ns_per_tick` (see `trace::ticks_to_ns`). The record's node id is named `step_name` for
    /// the breaker rows (the first name seen for an id is kept; [`name_step`](Self::name_step)
    /// replaces it).
    ///
    /// # Panics
    ///
    /// If `ns_per_tick` is negative, NaN or infinite.
    pub fn add_record(&mut self, step_name: &str, record: &StepRecord, ns_per_tick: f64) {
        let latency_ns = crate::trace::ticks_to_ns(record.latency_ticks, ns_per_tick);
        let entry = self.entry(step_name, record.node.0);
        entry
            .row
            .count_with(record, |count, n| *count = count.saturating_add(n));
        entry.latency_ns_mut().record(latency_ns);
        self.step_names
            .entry(record.node.0)
            .or_insert_with(|| step_name.to_owned());
    }

    /// Adds the counts of `row` (not its latency) to the row of `row.step`: how an executor
    /// that counts every record itself hands its exact per-step counts over.
    pub fn add_step_counts(&mut self, row: &StepRow) {
        self.add_counts(row);
    }

    fn add_counts(&mut self, row: &StepRow) -> &mut StepEntry {
        let entry = self.entry(&row.step, row.node);
        let mine = &mut entry.row;
        for (m, t) in [
            (&mut mine.executions, row.executions),
            (&mut mine.succeeded, row.succeeded),
            (&mut mine.failed, row.failed),
            (&mut mine.skipped, row.skipped),
            (&mut mine.aborted, row.aborted),
            (&mut mine.retries, row.retries),
            (&mut mine.cache_hits, row.cache_hits),
            (&mut mine.fallbacks, row.fallbacks),
        ] {
            *m = m.saturating_add(t);
        }
        entry
    }

    /// Adds one latency sample (nanoseconds) to the row of `step_name` without counting an
    /// execution: for an executor that counts executions exactly and samples latencies.
    #[cfg(test)]
    pub fn add_latency(&mut self, step_name: &str, node: u32, latency_ns: u64) {
        self.entry(step_name, node)
            .latency_ns_mut()
            .record(latency_ns);
    }

    /// [`add_latency`](Self::add_latency) of node `node` of the graph of id `graph`, named
    /// `name`: the entry found for a node is remembered, for the graph met last.
    #[inline]
    pub(crate) fn add_node_latency(&mut self, graph: u32, node: u32, name: &str, latency_ns: u64) {
        if self.node_entries.0 != graph {
            self.node_entries.0 = graph;
            self.node_entries.1.clear();
        }
        let at = node as usize;
        let index = match self.node_entries.1.get(at) {
            Some(&index) if index != u32::MAX => index as usize,
            _ => {
                let index = self.entry_index(name, node);
                if at < MAX_MEMO_NODES {
                    let memo = &mut self.node_entries.1;
                    if memo.len() <= at {
                        memo.resize(at + 1, u32::MAX);
                    }
                    memo[at] = index as u32;
                }
                index
            }
        };
        self.steps[index].latency_ns_mut().record(latency_ns);
    }

    /// The entry of `name`, made on first use with `node` as its node id. Past
    /// [`MAX_STEP_ROWS`] names, new ones share the row [`OTHER_STEPS`].
    #[inline]
    fn entry(&mut self, name: &str, node: u32) -> &mut StepEntry {
        let index = self.entry_index(name, node);
        &mut self.steps[index]
    }

    /// The index in `steps` of [`entry`](Self::entry).
    #[inline]
    fn entry_index(&mut self, name: &str, node: u32) -> usize {
        match self.step_index.get(name) {
            Some(&index) => index,
            None => self.new_entry(name, node),
        }
    }

    /// [`entry_index`](Self::entry_index) of a name not seen yet.
    #[cold]
    fn new_entry(&mut self, name: &str, node: u32) -> usize {
        let name = if self.steps.len() + 1 < MAX_STEP_ROWS {
            name
        } else {
            OTHER_STEPS
        };
        let index = match self.step_index.get(name) {
            Some(&index) => index,
            None => {
                let index = self.steps.len();
                self.step_index.insert(name.to_owned(), index);
                self.steps.push(StepEntry {
                    row: StepRow {
                        step: name.to_owned(),
                        node,
                        ..StepRow::default()
                    },
                    latency_ns: None,
                });
                index
            }
        };
        index
    }

    /// Adds a run's (or a worker's) exact counters to the totals.
    pub fn add_counters(&mut self, counters: &Counters) {
        self.counters.add(counters);
    }

    /// Takes drained telemetry events: counts them as recorded and tallies breaker
    /// transitions and refusals per step id.
    pub fn add_events(&mut self, events: &[Event]) {
        let recorded = u64::try_from(events.len()).unwrap_or(u64::MAX);
        self.telemetry.events_recorded = self.telemetry.events_recorded.saturating_add(recorded);
        for event in events {
            let count = match event.kind {
                EventKind::BreakerTransition { to, .. } => {
                    let row = self.breaker(event.step);
                    match to {
                        BreakerState::Open => &mut row.to_open,
                        BreakerState::HalfOpen => &mut row.to_half_open,
                        BreakerState::Closed => &mut row.to_closed,
                    }
                }
                EventKind::BreakerRejected => &mut self.breaker(event.step).rejected,
                _ => continue,
            };
            *count = count.saturating_add(1);
        }
    }

    fn breaker(&mut self, step_id: u32) -> &mut BreakerRow {
        self.breakers.entry(step_id).or_insert_with(|| BreakerRow {
            step_id,
            ..BreakerRow::default()
        })
    }

    /// Names step id `step_id` for the breaker rows (records name their node already).
    pub fn name_step(&mut self, step_id: u32, name: impl Into<String>) {
        self.step_names.insert(step_id, name.into());
    }

    /// Counts events the telemetry sinks dropped.
    pub fn add_events_dropped(&mut self, n: u64) {
        self.telemetry.events_dropped = self.telemetry.events_dropped.saturating_add(n);
    }

    /// Counts step records that did not fit their run's buffer
    /// (`RunResult::records_dropped`).
    pub fn add_records_dropped(&mut self, n: u64) {
        self.telemetry.records_dropped = self.telemetry.records_dropped.saturating_add(n);
    }

    /// Adds a sampled run of `graph` to the bottlenecks: its records (`dropped` did not
    /// fit), its latency and its queue wait (0 for an inline run), in nanoseconds.
    #[cfg(not(loom))]
    pub(crate) fn add_bottleneck_run<P, C>(
        &mut self,
        graph: &flujo_core::graph::Graph<P, C>,
        records: &[StepRecord],
        dropped: u32,
        wall_ns: u64,
        queue_ns: u64,
    ) {
        self.bottlenecks
            .add_run(graph, records, dropped, wall_ns, queue_ns);
    }

    /// The critical-path bottlenecks' rows of largest share, at most `n`.
    #[cfg(not(loom))]
    pub(crate) fn top_bottlenecks(&self, n: usize) -> Vec<BottleneckRow> {
        self.bottlenecks.top(n)
    }

    /// Sets the sampling period: one run in `one_in` per worker is sampled (the
    /// configuration's `telemetry.run_sample_period`).
    pub fn set_run_sample_period(&mut self, one_in: u64) {
        self.telemetry.run_sample_period = one_in;
    }

    #[cfg(test)]
    /// Sets the pool and arena readings.
    pub fn set_pool(&mut self, pool: PoolStats) {
        self.pool = pool;
    }

    #[cfg(test)]
    /// Sets the admission readings.
    pub fn set_admission(&mut self, admission: AdmissionStats) {
        self.admission = admission;
        self.admission_seen = true;
    }

    #[cfg(test)]
    /// Records that the admission limit is now `limit`, keeping the lowest and highest seen.
    pub fn observe_limit(&mut self, limit: u64) {
        let a = &mut self.admission;
        if self.admission_seen {
            a.limit_min_seen = a.limit_min_seen.min(limit);
            a.limit_max_seen = a.limit_max_seen.max(limit);
        } else {
            (a.limit_min_seen, a.limit_max_seen) = (limit, limit);
            self.admission_seen = true;
        }
        a.limit_current = limit;
    }

    #[cfg(test)]
    /// The latency histogram (nanoseconds) of step `name`, for exporters that want buckets;
    /// `None` when no latency of that step was fed in.
    pub fn step_histogram(&self, name: &str) -> Option<&Histogram> {
        let &index = self.step_index.get(name)?;
        self.steps[index].latency_ns.as_ref()
    }

    /// The run latency histogram and each step row's latency histogram (nanoseconds; `None`:
    /// no latency of that step was fed in), in row order, for the Prometheus exposition.
    #[cfg(feature = "prometheus")]
    pub(crate) fn latency_histograms(
        &self,
    ) -> (&Histogram, impl Iterator<Item = (&str, Option<&Histogram>)>) {
        let steps = self
            .steps
            .iter()
            .map(|entry| (entry.row.step.as_str(), entry.latency_ns.as_ref()));
        (&self.run_latency_ns, steps)
    }

    /// The sampling period set by [`set_run_sample_period`](Self::set_run_sample_period) (0: not
    /// set).
    pub fn run_sample_period(&self) -> u64 {
        self.telemetry.run_sample_period
    }

    /// Forgets every count, latency and reading, keeping the step rows' names, their
    /// histograms' memory and the sampling period: a builder taken as the delta since the
    /// last collection, [`merge`](Self::merge)d elsewhere and cleared for reuse, costs its
    /// next user no allocation for the steps it saw.
    pub fn clear(&mut self) {
        self.runs = Runs::default();
        self.submitted = 0;
        reset(&mut self.run_latency_ns);
        #[cfg(feature = "prometheus")]
        for h in self.queue_wait_ns.iter_mut().flatten() {
            reset(h);
        }
        for entry in &mut self.steps {
            entry.row = StepRow {
                step: std::mem::take(&mut entry.row.step),
                node: entry.row.node,
                ..StepRow::default()
            };
            if let Some(h) = &mut entry.latency_ns {
                reset(h);
            }
        }
        self.counters = Counters::new();
        self.breakers.clear();
        self.pool = PoolStats::default();
        self.admission = AdmissionStats::default();
        self.admission_seen = false;
        self.telemetry = TelemetryStats {
            run_sample_period: self.telemetry.run_sample_period,
            ..TelemetryStats::default()
        };
        #[cfg(not(loom))]
        self.bottlenecks.clear();
    }

    /// Adds everything `other` collected: runs, records, counters, events, drops. The pool,
    /// admission and sampling readings are snapshots, not sums: `self`'s are kept unless it
    /// has none (then `other`'s are taken).
    pub fn merge(&mut self, other: &ReportBuilder) {
        let (a, b) = (&mut self.runs, &other.runs);
        for (mine, theirs) in [
            (&mut a.completed, b.completed),
            (&mut a.succeeded, b.succeeded),
            (&mut a.failed, b.failed),
            (&mut a.aborted, b.aborted),
            (&mut a.panicked, b.panicked),
            (&mut a.handed_back, b.handed_back),
            (&mut a.inline, b.inline),
            (&mut a.rejected_queue_full, b.rejected_queue_full),
            (&mut a.rejected_over_limit, b.rejected_over_limit),
            (&mut a.rejected_shutting_down, b.rejected_shutting_down),
            (&mut a.rejected_shed, b.rejected_shed),
            (&mut self.submitted, other.submitted),
        ] {
            *mine = mine.saturating_add(theirs);
        }
        self.run_latency_ns.merge(&other.run_latency_ns);
        #[cfg(feature = "prometheus")]
        for (mine, theirs) in self.queue_wait_ns.iter_mut().zip(&other.queue_wait_ns) {
            if let Some(h) = theirs.as_ref().filter(|h| !h.is_empty()) {
                mine.get_or_insert_with(Histogram::new).merge(h);
            }
        }
        for theirs in &other.steps {
            let entry = self.add_counts(&theirs.row);
            if let Some(h) = theirs.latency_ns.as_ref().filter(|h| !h.is_empty()) {
                entry.latency_ns_mut().merge(h);
            }
        }
        for (&id, name) in &other.step_names {
            self.step_names.entry(id).or_insert_with(|| name.clone());
        }
        self.counters.add(&other.counters);
        for (&id, t) in &other.breakers {
            let mine = self.breaker(id);
            for (m, t) in [
                (&mut mine.to_open, t.to_open),
                (&mut mine.to_half_open, t.to_half_open),
                (&mut mine.to_closed, t.to_closed),
                (&mut mine.rejected, t.rejected),
            ] {
                *m = m.saturating_add(t);
            }
        }
        let (mine, t) = (&mut self.telemetry, &other.telemetry);
        mine.events_recorded = mine.events_recorded.saturating_add(t.events_recorded);
        mine.events_dropped = mine.events_dropped.saturating_add(t.events_dropped);
        mine.records_dropped = mine.records_dropped.saturating_add(t.records_dropped);
        if mine.run_sample_period == 0 {
            mine.run_sample_period = t.run_sample_period;
        }
        if self.pool == PoolStats::default() {
            self.pool = other.pool;
        }
        if !self.admission_seen && other.admission_seen {
            self.admission = other.admission;
            self.admission_seen = true;
        }
        #[cfg(not(loom))]
        self.bottlenecks.merge(&other.bottlenecks);
    }

    /// The report of everything fed in so far, covering `wall_ns` nanoseconds of wall time.
    /// The builder keeps its data, so later reports include this one's.
    pub fn build(&self, wall_ns: u64) -> Report {
        let mut runs = self.runs;
        let ended_or_refused = runs
            .completed
            .saturating_add(runs.panicked)
            .saturating_add(runs.handed_back)
            .saturating_add(runs.rejected());
        runs.submitted = self.submitted.max(ended_or_refused);
        runs.in_flight = runs.submitted - ended_or_refused;
        let throughput_runs_per_s = if wall_ns == 0 {
            0.0
        } else {
            runs.completed as f64 * 1e9 / wall_ns as f64
        };
        let steps = self
            .steps
            .iter()
            .map(|entry| StepRow {
                latency: entry
                    .latency_ns
                    .as_ref()
                    .map_or_else(Latency::default, Latency::from_histogram),
                ..entry.row.clone()
            })
            .collect();
        let hits = self.counters.get(Counter::CacheHits);
        let lookups = hits.saturating_add(self.counters.get(Counter::CacheMisses));
        let cache_hit_rate = (lookups > 0).then(|| hits as f64 / lookups as f64);
        let breakers = self
            .breakers
            .values()
            .map(|row| BreakerRow {
                step: match self.step_names.get(&row.step_id) {
                    Some(name) => name.clone(),
                    None => format!("#{}", row.step_id),
                },
                ..row.clone()
            })
            .collect();
        Report {
            wall_ns,
            runs,
            throughput_runs_per_s,
            run_latency: Latency::from_histogram(&self.run_latency_ns),
            steps,
            counters: self.counters,
            cache_hit_rate,
            breakers,
            breakers_exact: false,
            pool: self.pool,
            admission: self.admission,
            waits: WaitStats::default(),
            alerts: Default::default(),
            health: Default::default(),
            #[cfg(not(loom))]
            telemetry: TelemetryStats {
                bottleneck_runs_skipped: self.bottlenecks.skipped(),
                ..self.telemetry
            },
            #[cfg(loom)]
            telemetry: self.telemetry,
            #[cfg(not(loom))]
            bottlenecks: self.bottlenecks.rows(),
            #[cfg(loom)]
            bottlenecks: Vec::new(),
            panics_caught: crate::PANICS_CAUGHT,
            memory: MemoryStats::default(),
        }
    }

    /// The heap bytes this builder holds (its own structure is counted by whatever holds
    /// it), counted from its structures: each latency histogram's counts (58 KiB), its step
    /// rows and their names, its indexes (capacity times entry size; hash-table control bytes
    /// not counted) and breaker rows.
    pub(crate) fn held_bytes(&self) -> u64 {
        let histogram = size_of::<[u64; HISTOGRAM_BUCKETS]>();
        let mut bytes = histogram;
        #[cfg(feature = "prometheus")]
        {
            bytes += self.queue_wait_ns.iter().flatten().count() * histogram;
        }
        bytes += self.steps.capacity() * size_of::<StepEntry>();
        for entry in &self.steps {
            bytes += entry.row.step.capacity();
            bytes += usize::from(entry.latency_ns.is_some()) * histogram;
        }
        bytes += self.step_index.capacity() * size_of::<(String, usize)>();
        bytes += self.step_index.keys().map(String::capacity).sum::<usize>();
        bytes += self.node_entries.1.capacity() * size_of::<u32>();
        bytes += self.step_names.capacity() * size_of::<(u32, String)>();
        bytes += self
            .step_names
            .values()
            .map(String::capacity)
            .sum::<usize>();
        bytes += self.breakers.len() * size_of::<(u32, BreakerRow)>();
        bytes += self
            .breakers
            .values()
            .map(|row| row.step.capacity())
            .sum::<usize>();
        bytes as u64
    }
}

/// Empties `h` (its 58 KiB are written only when it holds something).
fn reset(h: &mut Histogram) {
    if !h.is_empty() {
        h.reset();
    }
}

/// Nanoseconds as microseconds with three decimals, exactly.
struct Micros(u64);

impl fmt::Display for Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = format!("{}.{:03}", self.0 / 1_000, self.0 % 1_000);
        f.pad(&text)
    }
}

/// Nanoseconds as seconds with nine decimals, exactly.
struct Seconds(u64);

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09} s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// Width of the label column of the key-value sections.
const LABEL_WIDTH: usize = 24;
/// Width of each numeric column of the tables: every header fits (asserted below), and so
/// does any count below 10^12; a wider value pushes the rest of its row right rather than
/// being cut.
const NUMBER_WIDTH: usize = 12;
/// Widest step-name column; longer names are cut and end with `~`.
const NAME_WIDTH_MAX: usize = 32;

/// The headers of the step table's numeric columns, in order.
pub const STEP_COLUMNS: [&str; 11] = [
    "executions",
    "succeeded",
    "failed",
    "skipped",
    "aborted",
    "retries",
    "cache hits",
    "fallbacks",
    "p50 µs",
    "p95 µs",
    "p99 µs",
];

/// The headers of the breaker table's numeric columns, in order.
pub const BREAKER_COLUMNS: [&str; 4] = ["to open", "to half-open", "to closed", "rejected"];

/// The headers of the bottleneck table's columns after the step's name, in order.
pub const BOTTLENECK_COLUMNS: [&str; 5] = ["graph", "kind", "share %", "critical µs", "runs"];

/// Bottleneck rows the table shows (the largest shares; the report holds them all).
pub const BOTTLENECK_ROWS_SHOWN: usize = 10;

/// Whether every header fits a numeric column (checked at compile time below).
// Used only by the `const` assertion below, which rustc 1.88 does not count as a use.
#[allow(dead_code)]
const fn headers_fit(headers: &[&str]) -> bool {
    let mut i = 0;
    while i < headers.len() {
        // Bytes bound characters from above, so this is conservative for "µ".
        if headers[i].len() > NUMBER_WIDTH {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(
    headers_fit(&STEP_COLUMNS) && headers_fit(&BREAKER_COLUMNS) && headers_fit(&BOTTLENECK_COLUMNS)
);

/// A name fit for one table cell: control characters escaped, cut to `width` characters.
fn cell_name(name: &str, width: usize) -> String {
    let mut clean = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            clean.extend(c.escape_default());
        } else {
            clean.push(c);
        }
    }
    if clean.chars().count() <= width {
        clean
    } else {
        let mut cut: String = clean.chars().take(width - 1).collect();
        cut.push('~');
        cut
    }
}

/// Writes one table line: the name left-aligned in `name_width`, then each number
/// right-aligned in [`NUMBER_WIDTH`].
fn table_line(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    name_width: usize,
    cells: &[&dyn fmt::Display],
) -> fmt::Result {
    write!(f, "  {name:<name_width$}")?;
    for cell in cells {
        write!(f, " {:>w$}", format!("{cell}"), w = NUMBER_WIDTH)?;
    }
    writeln!(f)
}

/// Writes the header line of a table whose rows are named by step.
fn header_line(f: &mut fmt::Formatter<'_>, name_width: usize, columns: &[&str]) -> fmt::Result {
    let headers: Vec<&dyn fmt::Display> = columns.iter().map(|h| h as &dyn fmt::Display).collect();
    table_line(f, "step", name_width, &headers)
}

/// Writes one `label value` line of a key-value section.
fn field(f: &mut fmt::Formatter<'_>, label: &str, value: impl fmt::Display) -> fmt::Result {
    writeln!(f, "  {label:<LABEL_WIDTH$}{value}")
}

/// The width of a name column holding `names` and `header`.
fn name_width<'a>(header: &str, names: impl Iterator<Item = &'a str>) -> usize {
    names
        .map(|n| cell_name(n, NAME_WIDTH_MAX).chars().count())
        .chain([header.chars().count()])
        .max()
        .unwrap_or(0)
}

impl Report {
    fn fmt_runs(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.runs;
        writeln!(f, "runs")?;
        field(f, "wall time", Seconds(self.wall_ns))?;
        field(f, "submitted", r.submitted)?;
        field(f, "completed", r.completed)?;
        field(f, "  succeeded", r.succeeded)?;
        field(f, "  failed", r.failed)?;
        field(f, "  aborted", r.aborted)?;
        field(f, "panicked", r.panicked)?;
        field(f, "handed back", r.handed_back)?;
        field(f, "in flight", r.in_flight)?;
        field(f, "rejected", r.rejected())?;
        field(f, "  queue full", r.rejected_queue_full)?;
        field(f, "  over limit", r.rejected_over_limit)?;
        field(f, "  shutting down", r.rejected_shutting_down)?;
        field(f, "  shed", r.rejected_shed)?;
        field(f, "inline (of the ended)", r.inline)?;
        field(
            f,
            "throughput",
            format_args!("{:.3} runs/s", self.throughput_runs_per_s),
        )?;
        let l = &self.run_latency;
        field(
            f,
            "run latency µs",
            format_args!(
                "p50 {}  p95 {}  p99 {}  max {}",
                Micros(l.p50_ns),
                Micros(l.p95_ns),
                Micros(l.p99_ns),
                Micros(l.max_ns)
            ),
        )
    }

    fn fmt_steps(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "steps")?;
        let width = name_width("step", self.steps.iter().map(|r| r.step.as_str()));
        header_line(f, width, &STEP_COLUMNS)?;
        for row in &self.steps {
            let l = &row.latency;
            let (p50, p95, p99) = (Micros(l.p50_ns), Micros(l.p95_ns), Micros(l.p99_ns));
            let cells: [&dyn fmt::Display; 11] = [
                &row.executions,
                &row.succeeded,
                &row.failed,
                &row.skipped,
                &row.aborted,
                &row.retries,
                &row.cache_hits,
                &row.fallbacks,
                &p50,
                &p95,
                &p99,
            ];
            table_line(f, &cell_name(&row.step, NAME_WIDTH_MAX), width, &cells)?;
        }
        Ok(())
    }

    fn fmt_breakers(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.breakers_exact {
            writeln!(f, "breakers (each breaker's own counts: exact, every user)")?;
            if self.breakers.is_empty() {
                return writeln!(f, "  (no breaker in the graphs run)");
            }
        } else {
            writeln!(f, "breakers (from the events of sampled runs)")?;
            if self.breakers.is_empty() {
                return writeln!(f, "  (no transitions or refusals in the events seen)");
            }
        }
        let width = name_width("step", self.breakers.iter().map(|r| r.step.as_str()));
        header_line(f, width, &BREAKER_COLUMNS)?;
        for row in &self.breakers {
            let cells: [&dyn fmt::Display; 4] = [
                &row.to_open,
                &row.to_half_open,
                &row.to_closed,
                &row.rejected,
            ];
            table_line(f, &cell_name(&row.step, NAME_WIDTH_MAX), width, &cells)?;
        }
        Ok(())
    }

    fn fmt_resources(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.pool;
        writeln!(f, "pool and arena")?;
        field(f, "pool hits", p.pool_hits)?;
        field(f, "pool misses", p.pool_misses)?;
        field(f, "pool live", p.pool_live)?;
        field(f, "pool idle", p.pool_idle)?;
        field(f, "pool idle max", p.pool_idle_max)?;
        field(f, "pool freed", p.pool_freed)?;
        field(f, "arena bytes used", p.arena_bytes_used)?;
        field(f, "arena bytes reserved", p.arena_bytes_reserved)?;
        field(f, "  idle max", p.arena_bytes_reserved_idle_max)?;
        let a = &self.admission;
        writeln!(f, "admission")?;
        field(f, "limit current", a.limit_current)?;
        field(f, "limit min seen", a.limit_min_seen)?;
        field(f, "limit max seen", a.limit_max_seen)?;
        field(f, "rejections", self.runs.rejected())?;
        let w = &self.waits;
        writeln!(f, "waits")?;
        field(f, "lent their thread", w.lent)?;
        field(f, "held their thread", w.held)?;
        field(f, "runs helped", w.helped)?;
        let t = &self.telemetry;
        writeln!(f, "telemetry")?;
        field(f, "events recorded", t.events_recorded)?;
        field(f, "events dropped", t.events_dropped)?;
        field(f, "records dropped", t.records_dropped)?;
        match t.run_sample_period {
            0 => field(f, "sampling", "unknown")?,
            n => field(f, "sampling", format_args!("1 in {n}"))?,
        }
        field(f, "bottleneck runs skipped", t.bottleneck_runs_skipped)
    }

    fn fmt_bottlenecks(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bottlenecks (critical-path shares of sampled runs, per graph)"
        )?;
        if self.bottlenecks.is_empty() {
            return writeln!(f, "  (no sampled runs)");
        }
        let shown = &self.bottlenecks[..self.bottlenecks.len().min(BOTTLENECK_ROWS_SHOWN)];
        let width = name_width("step", shown.iter().map(|r| r.step.as_str()));
        header_line(f, width, &BOTTLENECK_COLUMNS)?;
        for row in shown {
            let graph = cell_name(&row.graph, NUMBER_WIDTH);
            let share = format!("{:.2}", row.share * 100.0);
            let critical = Micros(row.critical_ns);
            let cells: [&dyn fmt::Display; 5] =
                [&graph, &row.kind.name(), &share, &critical, &row.runs];
            table_line(f, &cell_name(&row.step, NAME_WIDTH_MAX), width, &cells)?;
        }
        Ok(())
    }

    fn fmt_memory(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.memory;
        writeln!(f, "memory (bytes the engine holds)")?;
        for (part, bytes) in m.parts() {
            match part {
                "cache" => field(
                    f,
                    part,
                    format_args!(
                        "{bytes} ({} entries: weight {}, slots {})",
                        m.cache_entries, m.cache_weight_bytes, m.cache_slot_bytes
                    ),
                )?,
                "queues" => field(f, part, format_args!("{bytes} ({} queued)", m.queued_items))?,
                _ => field(f, part, bytes)?,
            }
        }
        field(f, "total", m.total())?;
        let p = &m.process;
        writeln!(f, "process")?;
        let unread = "n/a";
        match p.cpu_time_ns {
            Some(ns) => field(f, "cpu time", Seconds(ns))?,
            None => field(f, "cpu time", unread)?,
        }
        match (p.cpu_cores_busy, p.cpu_share_of_cores) {
            (Some(busy), Some(share)) => field(
                f,
                "cpu busy",
                format_args!(
                    "{busy:.3} cores ({:.1} % of {})",
                    share * 100.0,
                    p.cores_available
                ),
            )?,
            _ => field(f, "cpu busy", "n/a (one reading)")?,
        }
        match p.resident_bytes {
            Some(bytes) => field(f, "resident bytes", bytes)?,
            None => field(f, "resident bytes", unread)?,
        }
        match p.memory_limit_bytes {
            Some(bytes) => field(f, "memory limit bytes", bytes),
            None => field(f, "memory limit bytes", "none"),
        }
    }
}

/// An aligned, human-readable table: sections `runs`, `steps`, `counters` (with the cache
/// hit rate), `breakers`, `pool and arena`, `admission`, `waits`, `telemetry`, `bottlenecks`
/// (the [`BOTTLENECK_ROWS_SHOWN`] rows of largest share), `alerts`, `health`, `memory` and
/// `process`. Latencies are in microseconds with three decimals (exact nanoseconds).
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "flujo run report")?;
        let panics = if self.panics_caught {
            "caught (a panicking step is a failed attempt)"
        } else {
            "not caught: built with panic = \"abort\", a panic ends the process"
        };
        field(f, "panics", panics)?;
        self.fmt_runs(f)?;
        self.fmt_steps(f)?;
        writeln!(f, "counters")?;
        for (counter, value) in self.counters.iter() {
            field(f, counter.name(), value)?;
        }
        match self.cache_hit_rate {
            Some(rate) => field(f, "cache hit rate", format_args!("{:.2} %", rate * 100.0))?,
            None => field(f, "cache hit rate", "n/a (no lookups)")?,
        }
        self.fmt_breakers(f)?;
        self.fmt_resources(f)?;
        self.fmt_bottlenecks(f)?;
        self.fmt_alerts(f)?;
        self.fmt_health(f)?;
        self.fmt_selection(f)?;
        self.fmt_memory(f)
    }
}

use crate::monitor::health::SelectionChange;

impl Report {
    /// The `selection` section: the adaptive inline cutoff; per step the automatic cache
    /// bypass follows, whether it is bypassed and its counts; the last flips.
    fn fmt_selection(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.health.selection;
        if s.steps.is_empty() && s.events.is_empty() && s.inline_cutoff.is_none() {
            return Ok(());
        }
        writeln!(f, "selection")?;
        if let Some(cutoff) = s.inline_cutoff {
            field(
                f,
                "inline cutoff",
                format_args!(
                    "{cutoff} now (adaptive); {} fan-outs timed, raised {}, lowered {}",
                    s.cutoff_samples, s.cutoff_raised, s.cutoff_lowered
                ),
            )?;
        }
        for r in &s.steps {
            field(
                f,
                &r.step,
                format_args!(
                    "cache {}{} lookups, {} hits, {} bypassed, {} probes; taken {}, undone {}",
                    if r.bypassed { "BYPASSED, " } else { "" },
                    r.lookups,
                    r.hits,
                    r.bypassed_runs,
                    r.probes,
                    r.taken,
                    r.undone
                ),
            )?;
        }
        if s.untracked > 0 {
            field(f, "untracked", format_args!("{} executions", s.untracked))?;
        }
        for e in s.events.iter().rev().take(10).rev() {
            let at = e.at_ns as f64 / 1e9;
            match e.change {
                SelectionChange::CutoffRaised | SelectionChange::CutoffLowered => field(
                    f,
                    e.change.as_str(),
                    format_args!(
                        "{} -> {} at {at:.3} s: fan-out {} took {} ns per task",
                        e.cutoff.0, e.cutoff.1, e.step, e.per_task_ns
                    ),
                )?,
                _ => field(
                    f,
                    e.change.as_str(),
                    format_args!(
                        "{} at {at:.3} s: hit rate {:.3} over {} lookups",
                        e.step, e.hit_rate, e.lookups
                    ),
                )?,
            }
        }
        Ok(())
    }

    /// The `health` section: the health, the actions and the last moves.
    fn fmt_health(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = &self.health;
        if h.actions.is_empty() && h.events.is_empty() {
            return Ok(());
        }
        writeln!(f, "health")?;
        let now = match h.health {
            crate::monitor::health::Health::Degraded(n) => format!("degraded (level {n})"),
            other => other.as_str().to_string(),
        };
        field(f, "now", format_args!("{now}, {} moves", h.transitions))?;
        for a in &h.actions {
            field(
                f,
                &a.action,
                format_args!(
                    "{}taken {}, undone {}",
                    if a.active { "IN FORCE, " } else { "" },
                    a.taken,
                    a.undone
                ),
            )?;
        }
        for e in h.events.iter().rev().take(10).rev() {
            field(
                f,
                "moved",
                format_args!(
                    "{} -> {} at {:.3} s ({}); took [{}], undid [{}]",
                    e.from.as_str(),
                    e.to.as_str(),
                    e.at_ns as f64 / 1e9,
                    e.triggers.join(", "),
                    e.taken.join(", "),
                    e.undone.join(", ")
                ),
            )?;
        }
        Ok(())
    }

    /// The `alerts` section: counts, rules firing, the last few events.
    fn fmt_alerts(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.alerts;
        if a.rules.is_empty() && a.events.is_empty() {
            return Ok(());
        }
        writeln!(f, "alerts")?;
        field(
            f,
            "fired / resolved",
            format_args!("{} / {}; {} shifts detected", a.fired, a.resolved, a.shifts),
        )?;
        let firing = if a.firing.is_empty() {
            "none".to_string()
        } else {
            a.firing.join(", ")
        };
        field(f, "firing now", firing)?;
        for e in a.events.iter().rev().take(10).rev() {
            field(
                f,
                e.state.as_str(),
                format_args!(
                    "{} ({}{}) = {:.6} vs {:.6}, {} samples, {:.3} s window ending at {:.3} s",
                    e.rule,
                    e.metric,
                    e.step
                        .as_deref()
                        .map(|s| format!(" of {s}"))
                        .unwrap_or_default(),
                    e.value,
                    e.threshold,
                    e.samples,
                    e.window_ns as f64 / 1e9,
                    e.at_ns as f64 / 1e9
                ),
            )?;
        }
        Ok(())
    }
}

/// `Counters` as a JSON object from counter name to value.
#[cfg(feature = "serde")]
mod counters_serde {
    use std::collections::BTreeMap;

    use flujo_core::telemetry::{Counter, Counters};
    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        counters: &Counters,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(Counter::COUNT))?;
        for (counter, value) in counters.iter() {
            map.serialize_entry(counter.name(), &value)?;
        }
        map.end()
    }

    /// Unknown names are ignored (a newer writer's counters) and missing ones are 0.
    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Counters, D::Error> {
        let values = BTreeMap::<String, u64>::deserialize(deserializer)?;
        let mut counters = Counters::new();
        for counter in Counter::ALL {
            if let Some(&value) = values.get(counter.name()) {
                counters.add_n(counter, value);
            }
        }
        Ok(counters)
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
