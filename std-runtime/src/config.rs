//! The runtime's configuration: which optimizations are on, and the bounds they work within.
//!
//! [`OptimizationConfig`] names every optimization of the engine. Switching one off changes
//! speed or memory, never results (outputs, outcomes, final contexts, step records): the one
//! exception is [`breakers`](OptimizationConfig::breakers), which is a policy rather than an
//! optimization and is documented as such. Three presets ([`latency`], [`throughput`],
//! [`low_memory`]) give sensible starting points; [`Optimization`] lists the switches so that
//! benches (W12) and the "every preset, same results" test can turn each one off in turn.
//!
//! A configuration is validated before it is used ([`OptimizationConfig::validate`]); a rule
//! broken gives a [`ConfigError`] that names the field by its path (`result_cache.shards`).
//! The executor holds the configuration in force and swaps it whole at run time
//! ([`Executor::reconfigure`](crate::Executor::reconfigure)). With the
//! crate feature `serde`, configurations load from and save to TOML; commented templates of the
//! presets live in `docs/config/`, and `docs/configuration.md` is the guide.
//!
//! [`latency`]: OptimizationConfig::latency
//! [`throughput`]: OptimizationConfig::throughput
//! [`low_memory`]: OptimizationConfig::low_memory

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

mod degradation;
pub mod duration;
mod monitor;
pub use degradation::{
    Action, CacheBypass, DegradationConfig, DegradationLevel, MemoryPressure, MAX_BYPASS_STEPS,
    MAX_BYPASS_WINDOW, MAX_LEVELS, MEMORY_TRIGGER,
};
pub use monitor::{
    AlertRule, Metric, MonitorConfig, MAX_DETECTED_STEPS, MAX_RULES, MAX_RULE_NAME, MAX_WINDOWS,
    MAX_WINDOW_BUCKETS, MIN_RESOLUTION,
};

/// The largest accepted [`CacheConfig::shards`].
pub const MAX_CACHE_SHARDS: usize = 1024;
/// The smallest accepted [`TelemetryConfig::ring_capacity`] when a ring is built (level
/// `histograms` or `events`).
pub const MIN_RING_CAPACITY: usize = 16;
/// The largest accepted [`TelemetryConfig::ring_capacity`] (events per pooled runner).
pub const MAX_RING_CAPACITY: usize = 1 << 20;
/// The largest accepted capacity of one priority queue ([`QueueConfig::capacity`]).
pub const MAX_QUEUE_CAPACITY: usize = 1 << 24;
/// The largest accepted [`OptimizationConfig::workers`].
pub const MAX_WORKERS: usize = 1024;
/// The largest accepted [`OptimizationConfig::max_records`]: room for the records is set
/// aside in every runner when it is built, so a larger bound would reserve memory no run uses
/// (a few dozen MiB per pooled runner at this bound).
pub const MAX_RECORDS: usize = 1 << 20;
/// The largest accepted size that has no tighter bound ([`CacheConfig::max_entries`],
/// [`CacheConfig::max_bytes`], and [`TelemetryConfig::ring_capacity`] when no ring is built):
/// TOML integers are signed 64-bit, so every configuration that validates can be written as
/// TOML and read back.
pub const MAX_SIZE: usize = i64::MAX as usize;

/// Every optimization of the engine and the bounds it works within.
///
/// Plain data: build one from a preset and change fields, then [`validate`](Self::validate)
/// it (the executor validates too, at construction and on `reconfigure`). [`Default`] is the
/// [`latency`](Self::latency) preset, because the engine's first hosts are request paths.
///
/// # Examples
///
/// ```
/// use flujo_runtime::config::{Optimization, OptimizationConfig};
///
/// let mut cfg = OptimizationConfig::throughput();
/// cfg.result_cache.max_entries = 1 << 20;
/// assert_eq!(cfg.validate(), Ok(()));
///
/// // Turn exactly one optimization off, e.g. to measure what it buys.
/// let no_cow = cfg.clone().with_off(Optimization::CopyOnWrite);
/// assert!(!no_cow.copy_on_write);
/// assert!(!no_cow.is_on(Optimization::CopyOnWrite));
///
/// cfg.result_cache.shards = 3;
/// let err = cfg.validate().unwrap_err();
/// assert_eq!(err.field(), Some("result_cache.shards"));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct OptimizationConfig {
    /// Runners (with their scratch: record arena, record buffers, spare contexts, event ring)
    /// come from a pool and go back after a run. Off: each run (and forked branch) builds its
    /// runner and frees it after; this costs allocator time on every run (and breaks the "no
    /// heap allocation in steady state" promise, W11), never results. (A submission's ticket
    /// and its rayon job are allocated either way.)
    pub pooling: bool,
    /// The branches of a fan-out see the parent context as a borrowed view that is copied on
    /// its first write. Off: every branch gets an eager clone of the context before it starts;
    /// this costs a copy per branch (time and memory), never results, since merges see the
    /// same writes either way.
    pub copy_on_write: bool,
    /// The interpreter runs sequences of plain and lean tasks in its lean stretch loops (one
    /// loop, one step context, first attempt inline). Off: every task goes through the full
    /// policy pipeline; slower per step, same records and results.
    pub fast_paths: bool,
    /// Small fan-outs run inline on the calling thread instead of forking on rayon.
    pub inline_cutoff: InlineCutoff,
    /// The concurrent result cache of cacheable steps.
    pub result_cache: CacheConfig,
    /// What the runtime's monitor collects, and how often.
    pub telemetry: TelemetryConfig,
    /// Circuit breakers configured on steps are consulted before the step runs and learn each
    /// outcome. Off: breakers never trip, so a step whose breaker would be open runs anyway.
    ///
    /// **This is the one switch that is a policy, not an optimization: it CAN change results**
    /// (a run that would have failed fast with `circuit-open`, or taken its fallback, runs the
    /// step instead). The "every preset, same results" test therefore keeps it on, and
    /// [`Optimization::changes_results`] says so.
    pub breakers: bool,
    /// Adaptive admission: the number of runs in flight is limited by a limit that follows
    /// the measured latency.
    pub adaptive_concurrency: AdmissionConfig,
    /// The bounded submission queues, one per priority.
    pub queues: QueueConfig,
    /// Worker threads of the runtime's rayon pool; 0 = rayon's default (the number of cores,
    /// or `RAYON_NUM_THREADS`). At most [`MAX_WORKERS`].
    pub workers: usize,
    /// Step records kept per run (room for them is set aside when a runner is built; records
    /// past the bound are counted in the run's `records_dropped`). In `1..=`[`MAX_RECORDS`].
    /// A bound, not an optimization: set it above the number of steps your runs execute.
    pub max_records: usize,
    /// The run-time monitor: windows, alert rules, change-point detection. Reads only; never
    /// changes results.
    pub monitor: MonitorConfig,
    /// Health and degradation actions (off in the presets). Unlike the switches above, its
    /// actions may change what a run gets; each is counted (see [`DegradationConfig`]).
    pub degradation: DegradationConfig,
}

/// Inline execution of small fan-outs (parallel and map nodes).
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct InlineCutoff {
    /// On: a fan-out whose analysed cost (`Graph::cost`: the task executions of all its
    /// branches) is at most `max_cost` runs its branches one after another on the calling
    /// worker, avoiding the cost of forking tasks on rayon. Off: every fan-out forks; results
    /// are the same (branch results are reduced in declaration order either way), only the
    /// order of side effects differs. On a one-thread pool nothing forks either way.
    pub enabled: bool,
    /// The largest analysed cost run inline; at least 1 when enabled. With `adaptive`, where
    /// the cutoff starts (and starts again on a `reconfigure` that changes it).
    pub max_cost: u32,
    /// Off by default. On (with `enabled`): the cutoff follows the measured cost of the
    /// branches (performance-based selection, `docs/operations.md`). One fan-out in
    /// `sample_every` that forks is timed; one in `sample_every` that would run inline forks
    /// instead, to be timed (a probe). A timed fan-out whose branches took less than
    /// `fork_cost` per task execution (its analysed cost) doubles the cutoff (inline more), up
    /// to `adaptive_max`; more than `fork_cost` halves it, down to 1. Each change is counted
    /// and raised as a selection event. Results are the same either way: this only moves
    /// where branches run.
    pub adaptive: bool,
    /// The highest the adaptive cutoff goes; at least `max_cost` when `adaptive`.
    pub adaptive_max: u32,
    /// What forking costs per task execution, to weigh the branches' measured time against
    /// (`"1us"` by default; more than zero when `adaptive`). In TOML a string with a unit.
    #[cfg_attr(
        feature = "serde",
        serde(
            serialize_with = "monitor::ser_duration",
            deserialize_with = "de_fork_cost"
        )
    )]
    pub fork_cost: Duration,
    /// One fan-out in this many is timed (or, inline, probed); at least 1 when `adaptive`.
    pub sample_every: u32,
}

#[cfg(feature = "serde")]
fn de_fork_cost<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    monitor::de_required(d, "inline_cutoff.fork_cost")
}

/// The concurrent result cache.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct CacheConfig {
    /// On: a cacheable step whose key is stored returns the stored output without running.
    /// Off: every cacheable step runs; this costs the step's time, never results, because
    /// only deterministic steps may be marked cacheable.
    pub enabled: bool,
    /// The most entries kept (over all shards); at least 1 and at least `shards` when enabled;
    /// at most [`MAX_SIZE`].
    pub max_entries: usize,
    /// The most bytes of stored outputs kept, as the executor's cache weigher counts them
    /// (by default `size_of::<P>()` per output, so what an output owns on the heap is not
    /// counted unless the host gives a weigher: `ExecutorBuilder::cache_weigher`). At least 1
    /// when enabled; at most [`MAX_SIZE`]. Entries past either bound evict the least recently
    /// used ones; an output heavier than its shard's share (`max_bytes / shards`) is not
    /// stored.
    pub max_bytes: usize,
    /// How long an entry stays valid after it is stored, as measured by the executor's clock;
    /// `None` (`"none"` in TOML): until evicted. When set, more than zero. In TOML a string
    /// with a unit (`"60s"`, see [`duration`]). Read when the executor is built.
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "duration::serde_option::serialize")
    )]
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de_ttl"))]
    pub ttl: Option<Duration>,
    /// How long a run waits for another run's computation of the same key before it
    /// computes the value itself (and stores it as well); the wait also ends at the waiting
    /// run's own deadline. `None` (`"none"` in TOML): wait as long as the other run computes.
    /// When set, more than zero. In TOML a string with a unit (`"50ms"`). Read when the
    /// executor is built.
    ///
    /// A short timeout bounds the tail a slow computation adds to every run of the same key,
    /// at the price of computing it twice; a long one saves work. The presets: `latency` 50 ms
    /// (a request should not stall behind another's slow step for long), `throughput` and
    /// `low_memory` 1 s (duplicate computation wastes the CPU and memory they save, yet a hung
    /// step must not hold every run of its key for ever).
    #[cfg_attr(
        feature = "serde",
        serde(serialize_with = "duration::serde_option::serialize")
    )]
    #[cfg_attr(feature = "serde", serde(deserialize_with = "de_flight_timeout"))]
    pub flight_timeout: Option<Duration>,
    /// Independent locks the cache is split into (less contention with more workers); a power
    /// of two in `1..=`[`MAX_CACHE_SHARDS`].
    pub shards: usize,
}

/// How much the runtime's monitor records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
pub enum TelemetryLevel {
    /// Nothing is collected by the monitor.
    Off,
    /// Exact counters (steps run, outcomes, retries, cache hits, breaker trips).
    Counters,
    /// Counters, plus sampled latency histograms.
    Histograms,
    /// Counters, histograms, plus sampled events in a per-runner ring (one per pooled runner) (for trace export).
    Events,
}

/// The runtime's telemetry.
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct TelemetryConfig {
    /// What the monitor collects; each level includes the ones before it. [`Off`] is the
    /// switched-off state: it saves the recording cost and empties the monitor and exporters,
    /// but a run's own result (output, outcome, context, step records, its counters) is the
    /// same.
    ///
    /// [`Off`]: TelemetryLevel::Off
    pub level: TelemetryLevel,
    /// Whole runs are sampled: each pooled runner counts the runs it makes, and one in
    /// `run_sample_period` has every step timed into the histograms and its events recorded
    /// (from level `histograms` up); the others read no clock for telemetry. At least 1
    /// (1 = every run). Sampling thins latencies and spans, never counts.
    pub run_sample_period: u32,
    /// Events each pooled runner's ring holds before the exporter drains it; a power of two in
    /// [`MIN_RING_CAPACITY`]`..=`[`MAX_RING_CAPACITY`] when `level` is `histograms` or
    /// `events` (each builds the ring; unused otherwise). Events that find the ring full are
    /// counted, not blocked on.
    pub ring_capacity: usize,
}

/// The algorithm that moves the admission limit (after Netflix's `concurrency-limits`: see
/// [`AdaptiveLimit`](crate::admission::AdaptiveLimit)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Algorithm {
    /// Additive increase, multiplicative decrease. A success raises the limit by
    /// [`aimd_increase`](AdmissionConfig::aimd_increase) if the in-flight count at the
    /// permit's acquire (the permit included) was at least half the limit (the limit was in
    /// use, so more may help); a drop (overload: a deadline missed, a rejection downstream)
    /// multiplies the limit by [`aimd_backoff_ratio`](AdmissionConfig::aimd_backoff_ratio),
    /// rounded down (0.9 in the presets: a tenth off per overloaded run). Latency is ignored.
    /// Steady, good for throughput.
    Aimd,
    /// Netflix gradient2: the limit follows the ratio of the long-term latency to the latest
    /// one. On each success with latency `short` (ns, at least 1):
    /// 1. `long` = exponential average of the latencies over
    ///    [`GRADIENT_LONG_WINDOW`](crate::admission::GRADIENT_LONG_WINDOW) samples (a plain mean
    ///    for the first [`GRADIENT_WARMUP`](crate::admission::GRADIENT_WARMUP)); if
    ///    `long / short > 2`, `long *= 0.95` so that the average lets go of an old high latency
    ///    sooner;
    /// 2. if the in-flight count at the acquire is below half the estimate, nothing more (the
    ///    limit is not what is in use);
    /// 3. `gradient = clamp(gradient_tolerance * long / short, GRADIENT_MIN, 1)`;
    /// 4. `estimate = (1 - s) * estimate + s * (estimate * gradient + GRADIENT_QUEUE_SIZE)`
    ///    with `s = gradient_smoothing`, clamped to the bounds; the limit is the estimate
    ///    rounded down.
    ///
    /// So a latency up to `gradient_tolerance` times the long-term one still lets the limit
    /// grow, and a higher one shrinks it (at most to half per sample before smoothing): it
    /// backs off as soon as queueing shows. A drop is a sample with gradient
    /// [`GRADIENT_MIN`](crate::admission::GRADIENT_MIN) and no headroom. Good for tail latency.
    Gradient,
    /// BBR-style capacity estimate (Sentinel's system protection, after TCP BBR): the limit
    /// follows `max_rate × min_rt × (1 + bbr_headroom)`, the most runs the server completes at
    /// once without queueing, plus headroom. No clock: each success with latency `l` (ns, at
    /// least 1) is a rate sample `d / l`, where `d` is the permits ended (by success or drop)
    /// during its life, itself included (BBR's delivery rate; a run that jumps a queue by
    /// priority delivers no more for it). Its permit was acquired with `n` in flight (itself
    /// included), which only the probe in step 2 reads. Then:
    /// 1. `max_rate` = the largest rate sample of the last
    ///    [`bbr_window`](AdmissionConfig::bbr_window) samples (a filter of
    ///    [`BBR_BUCKETS`](crate::admission::BBR_BUCKETS) buckets, so between 3/4 and all of
    ///    the window); as in BBR, an app-limited sample (no acquire was refused during its
    ///    life: the load, not the limit, set its rate) may raise it but does not count
    ///    towards the window, so a quiet spell does not make the server look slow;
    /// 2. `min_rt` = the least latency since the last RTT probe; every `bbr_window` samples
    ///    the limit drops to half the estimate for
    ///    [`BBR_PROBE_SAMPLES`](crate::admission::BBR_PROBE_SAMPLES) samples acquired under
    ///    it, whose least latency becomes the new `min_rt` (BBR's ProbeRTT: without it, a
    ///    server always queueing would show its queueing as latency and the estimate would
    ///    grow with it);
    /// 3. the limit is `estimate × (1 + bbr_headroom)` rounded down, and at least one above the
    ///    estimate rounded down (so it can always probe one run further); until a sample is
    ///    not app-limited it stays at least `initial_limit` (BBR's startup never lowers its
    ///    window); all capped by the drop ceiling: a
    ///    [`dropped`](crate::admission::Permit::dropped) permit sets the ceiling to
    ///    [`BBR_DROP_FACTOR`](crate::admission::BBR_DROP_FACTOR) times the lower of itself and
    ///    the limit the estimate allows, and each success raises it by `1 / limit` (one run
    ///    per round, like AIMD);
    /// 4. [`AdaptiveLimit::set_pressure`](crate::admission::AdaptiveLimit::set_pressure)
    ///    (CPU saturation, from the host) multiplies the limit by `1 - share`.
    ///
    /// A server that slows down uniformly (every service time doubled) keeps its estimate in
    /// runs (it completes half as many, each twice as long); one that loses capacity (fewer
    /// workers, a saturated CPU) or whose latency grows with its load lowers it.
    Bbr,
}

/// Adaptive admission control: the limit on runs in flight, and the tuning of the algorithms
/// that can move it.
#[derive(Clone, Copy, Debug, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct AdmissionConfig {
    /// On: the limit on runs in flight moves between `min_limit` and `max_limit` by
    /// `algorithm`. Off: the limit is fixed at `max_limit`; no run is refused below it, and
    /// under overload latency grows instead of submissions being refused early.
    pub enabled: bool,
    /// How the limit moves.
    pub algorithm: Algorithm,
    /// The floor of the limit, in runs; at least 1.
    pub min_limit: u32,
    /// The ceiling of the limit, in runs (and the fixed limit when adaptive admission is off).
    pub max_limit: u32,
    /// The limit at start, in runs; `min_limit <= initial_limit <= max_limit`.
    pub initial_limit: u32,
    /// [`Aimd`](Algorithm::Aimd): runs added to the limit by a success near saturation; at
    /// least 1. Checked whichever algorithm is chosen.
    pub aimd_increase: u32,
    /// [`Aimd`](Algorithm::Aimd): the factor (a ratio, no unit) the limit is multiplied by on
    /// overload; in `(0, 1)`. Checked whichever algorithm is chosen.
    pub aimd_backoff_ratio: f64,
    /// [`Gradient`](Algorithm::Gradient): the weight (a ratio, no unit) of a new sample in the
    /// estimate; in `(0, 1]`. Checked whichever algorithm is chosen.
    pub gradient_smoothing: f64,
    /// [`Gradient`](Algorithm::Gradient): how many times the long-term latency a latency may
    /// be (a ratio, no unit) and still let the limit grow; a finite number, at least 1.
    /// Checked whichever algorithm is chosen.
    pub gradient_tolerance: f64,
    /// [`Bbr`](Algorithm::Bbr): the share (a ratio, no unit) the limit may run above the
    /// capacity estimate, so that the server never idles waiting for the next admission; in
    /// `0..=`[`BBR_MAX_HEADROOM`](crate::admission::BBR_MAX_HEADROOM). Checked whichever
    /// algorithm is chosen.
    pub bbr_headroom: f64,
    /// [`Bbr`](Algorithm::Bbr): the window of the capacity filters, in samples (successes):
    /// how long the highest rate is remembered, and how often the least latency is probed
    /// again; in [`BBR_MIN_WINDOW`](crate::admission::BBR_MIN_WINDOW)`..=`
    /// [`BBR_MAX_WINDOW`](crate::admission::BBR_MAX_WINDOW). Checked whichever algorithm is
    /// chosen.
    pub bbr_window: u32,
}

/// The bounded submission queues, one per priority (the configuration of
/// [`PriorityQueues`](crate::queue::PriorityQueues)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(default, deny_unknown_fields)
)]
pub struct QueueConfig {
    /// Capacity of the `[high, normal, low]` priority queues (indexed by
    /// [`Priority::index`](crate::Priority::index)), each in
    /// `1..=`[`MAX_QUEUE_CAPACITY`]. A submission that finds its queue full is given back.
    pub capacity: [usize; 3],
    /// Anti-starvation, in pops: a non-empty queue that `aging` pops in a row have passed over
    /// is *starved*, and a pop serves the most starved queue (the one passed over most; ties
    /// go to the higher priority) ahead of strict priority; serving a queue resets its count.
    /// So with every queue busy, Normal and Low are each served once in every `aging + 1`
    /// pops. 0 = strict priority (no aging). See the [`queue`](crate::queue) module docs.
    pub aging: u32,
}

impl OptimizationConfig {
    /// The names accepted by [`preset`](Self::preset), in order.
    pub const PRESETS: [&'static str; 3] = ["latency", "throughput", "low_memory"];

    /// What the three presets share: every optimization and the breakers on, one worker per
    /// core, cache entries kept until evicted, the admission tuning of Netflix's defaults
    /// (AIMD +1 and ×0.9, gradient smoothing 0.2 and tolerance 1.5; BBR headroom 1, TCP BBR's
    /// window gain of 2, over a window of 256 samples). The presets set the
    /// sizes and choose the algorithm and the telemetry.
    fn base(
        inline_max_cost: u32,
        result_cache: CacheConfig,
        telemetry: TelemetryConfig,
        (algorithm, min_limit, max_limit, initial_limit): (Algorithm, u32, u32, u32),
        queues: QueueConfig,
        max_records: usize,
    ) -> Self {
        Self {
            pooling: true,
            copy_on_write: true,
            fast_paths: true,
            inline_cutoff: InlineCutoff {
                enabled: true,
                max_cost: inline_max_cost,
                adaptive: false,
                adaptive_max: 1 << 20,
                fork_cost: Duration::from_micros(1),
                sample_every: 64,
            },
            result_cache,
            telemetry,
            breakers: true,
            adaptive_concurrency: AdmissionConfig {
                enabled: true,
                algorithm,
                min_limit,
                max_limit,
                initial_limit,
                aimd_increase: 1,
                aimd_backoff_ratio: 0.9,
                gradient_smoothing: 0.2,
                gradient_tolerance: 1.5,
                bbr_headroom: 1.0,
                bbr_window: 256,
            },
            queues,
            workers: 0,
            max_records,
            monitor: MonitorConfig::default(),
            degradation: DegradationConfig::default(),
        }
    }

    /// For request paths: every optimization on, small fan-outs inline, a gradient limiter
    /// that backs off as soon as latency rises, short queues (a request that would wait long
    /// is better refused), latency histograms of one run in 64 per pooled runner.
    pub fn latency() -> Self {
        Self::base(
            4096,
            CacheConfig {
                enabled: true,
                max_entries: 4096,
                max_bytes: 16 << 20,
                ttl: None,
                flight_timeout: Some(Duration::from_millis(50)),
                shards: 16,
            },
            TelemetryConfig {
                level: TelemetryLevel::Histograms,
                run_sample_period: 64,
                ring_capacity: 4096,
            },
            (Algorithm::Gradient, 1, 256, 16),
            QueueConfig {
                capacity: [1024, 1024, 256],
                aging: 8,
            },
            1024,
        )
    }

    /// For batch work (many runs, total rate matters more than each one's latency): larger
    /// fan-outs inline (forking pays only for big subtrees when every worker is busy anyway),
    /// a big cache on many shards, an AIMD limiter with a high ceiling, deep queues, counters
    /// only.
    pub fn throughput() -> Self {
        Self::base(
            16_384,
            CacheConfig {
                enabled: true,
                max_entries: 65_536,
                max_bytes: 256 << 20,
                ttl: None,
                flight_timeout: Some(Duration::from_secs(1)),
                shards: 64,
            },
            TelemetryConfig {
                level: TelemetryLevel::Counters,
                run_sample_period: 1024,
                ring_capacity: 16_384,
            },
            (Algorithm::Aimd, 4, 4096, 64),
            QueueConfig {
                capacity: [4096, 16_384, 16_384],
                aging: 64,
            },
            4096,
        )
    }

    /// For small machines and embedded hosts: two workers, a small cache on one shard whose
    /// entries expire after a minute, small queues and arenas, few records, counters only.
    /// Pools and copy-on-write stay on: both save memory as well as time.
    pub fn low_memory() -> Self {
        Self {
            workers: 2,
            ..Self::base(
                16_384,
                CacheConfig {
                    enabled: true,
                    max_entries: 256,
                    max_bytes: 1 << 20,
                    ttl: Some(Duration::from_secs(60)),
                    flight_timeout: Some(Duration::from_secs(1)),
                    shards: 1,
                },
                TelemetryConfig {
                    level: TelemetryLevel::Counters,
                    run_sample_period: 1024,
                    ring_capacity: 256,
                },
                (Algorithm::Aimd, 1, 64, 4),
                QueueConfig {
                    capacity: [64, 256, 256],
                    aging: 16,
                },
                256,
            )
        }
    }

    /// The preset called `name` (one of [`PRESETS`](Self::PRESETS)).
    ///
    /// # Errors
    /// [`ConfigError::UnknownPreset`] for any other name; its message lists the valid ones.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_runtime::config::OptimizationConfig;
    ///
    /// assert_eq!(OptimizationConfig::preset("low_memory"), Ok(OptimizationConfig::low_memory()));
    /// let err = OptimizationConfig::preset("fast").unwrap_err();
    /// assert!(err.to_string().contains("latency, throughput, low_memory"));
    /// ```
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        match name {
            "latency" => Ok(Self::latency()),
            "throughput" => Ok(Self::throughput()),
            "low_memory" => Ok(Self::low_memory()),
            _ => Err(ConfigError::UnknownPreset {
                name: name.to_owned(),
            }),
        }
    }

    /// This configuration with exactly the optimization `o` switched off (every other field
    /// unchanged). Switching off one that is already off returns the same configuration.
    pub fn with_off(mut self, o: Optimization) -> Self {
        match o {
            Optimization::Pooling => self.pooling = false,
            Optimization::CopyOnWrite => self.copy_on_write = false,
            Optimization::FastPaths => self.fast_paths = false,
            Optimization::InlineCutoff => self.inline_cutoff.enabled = false,
            Optimization::ResultCache => self.result_cache.enabled = false,
            Optimization::Telemetry => self.telemetry.level = TelemetryLevel::Off,
            Optimization::Breakers => self.breakers = false,
            Optimization::AdaptiveConcurrency => self.adaptive_concurrency.enabled = false,
        }
        self
    }

    /// Whether the optimization `o` is on.
    pub fn is_on(&self, o: Optimization) -> bool {
        match o {
            Optimization::Pooling => self.pooling,
            Optimization::CopyOnWrite => self.copy_on_write,
            Optimization::FastPaths => self.fast_paths,
            Optimization::InlineCutoff => self.inline_cutoff.enabled,
            Optimization::ResultCache => self.result_cache.enabled,
            Optimization::Telemetry => self.telemetry.level != TelemetryLevel::Off,
            Optimization::Breakers => self.breakers,
            Optimization::AdaptiveConcurrency => self.adaptive_concurrency.enabled,
        }
    }

    /// Checks every rule; the first broken one is returned (fields in declaration order).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field's path (`adaptive_concurrency.min_limit`) and
    /// the rule it breaks. The rules are listed in `docs/configuration.md`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.inline_cutoff.validate()?;
        self.result_cache.validate()?;
        self.telemetry.validate()?;
        self.adaptive_concurrency.validate()?;
        self.queues.validate()?;
        self.monitor.validate()?;
        self.degradation.validate(&self.monitor.rules)?;
        check(
            self.workers <= MAX_WORKERS,
            "workers",
            format_args!("must be <= {MAX_WORKERS} (0 = one per core)"),
            self.workers,
        )?;
        check(
            (1..=MAX_RECORDS).contains(&self.max_records),
            "max_records",
            format_args!("must be in 1..={MAX_RECORDS}"),
            self.max_records,
        )
    }
}

impl Default for OptimizationConfig {
    /// The [`latency`](Self::latency) preset.
    fn default() -> Self {
        Self::latency()
    }
}

impl InlineCutoff {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            !self.enabled || self.max_cost > 0,
            "inline_cutoff.max_cost",
            "must be > 0 when enabled",
            self.max_cost,
        )?;
        if !self.adaptive {
            return Ok(());
        }
        check(
            self.adaptive_max >= self.max_cost.max(1),
            "inline_cutoff.adaptive_max",
            format_args!("must be >= max_cost ({}) when adaptive", self.max_cost),
            self.adaptive_max,
        )?;
        check(
            !self.fork_cost.is_zero(),
            "inline_cutoff.fork_cost",
            "must be > 0 when adaptive",
            duration::format(self.fork_cost),
        )?;
        check(
            self.sample_every >= 1,
            "inline_cutoff.sample_every",
            "must be >= 1 when adaptive",
            self.sample_every,
        )
    }
}

impl Default for InlineCutoff {
    /// The default preset's value.
    fn default() -> Self {
        OptimizationConfig::default().inline_cutoff
    }
}

impl CacheConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let on = self.enabled;
        check(
            !on || self.max_entries > 0,
            "result_cache.max_entries",
            "must be > 0 when enabled",
            self.max_entries,
        )?;
        check(
            !on || self.max_bytes > 0,
            "result_cache.max_bytes",
            "must be > 0 when enabled",
            self.max_bytes,
        )?;
        check(
            self.max_entries <= MAX_SIZE,
            "result_cache.max_entries",
            format_args!("must be <= {MAX_SIZE} (TOML integers are signed 64-bit)"),
            self.max_entries,
        )?;
        check(
            self.max_bytes <= MAX_SIZE,
            "result_cache.max_bytes",
            format_args!("must be <= {MAX_SIZE} (TOML integers are signed 64-bit)"),
            self.max_bytes,
        )?;
        check_positive(self.ttl, "result_cache.ttl", "no expiry")?;
        check_positive(
            self.flight_timeout,
            "result_cache.flight_timeout",
            "wait as long as the other run computes",
        )?;
        check(
            self.shards.is_power_of_two() && self.shards <= MAX_CACHE_SHARDS,
            "result_cache.shards",
            format_args!("shards must be a power of two in 1..={MAX_CACHE_SHARDS}"),
            self.shards,
        )?;
        check(
            !on || self.shards <= self.max_entries,
            "result_cache.shards",
            "must be <= max_entries when enabled (each shard holds at least one entry)",
            self.shards,
        )
    }
}

impl Default for CacheConfig {
    /// The default preset's value.
    fn default() -> Self {
        OptimizationConfig::default().result_cache
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.run_sample_period >= 1,
            "telemetry.run_sample_period",
            "must be >= 1 (1 = every run)",
            self.run_sample_period,
        )?;
        let ring = self.ring_capacity;
        check(
            ring <= MAX_SIZE,
            "telemetry.ring_capacity",
            format_args!("must be <= {MAX_SIZE} (TOML integers are signed 64-bit)"),
            ring,
        )?;
        check(
            !self.builds_ring()
                || (ring.is_power_of_two()
                    && (MIN_RING_CAPACITY..=MAX_RING_CAPACITY).contains(&ring)),
            "telemetry.ring_capacity",
            format_args!(
                "must be a power of two in {MIN_RING_CAPACITY}..={MAX_RING_CAPACITY} \
                 when level is histograms or events"
            ),
            ring,
        )
    }

    /// Whether a pooled runner builds an event ring of `ring_capacity` at this level (the runtime's
    /// pooled runners do at `histograms` and `events`), so whether the capacity is checked.
    pub fn builds_ring(&self) -> bool {
        self.level >= TelemetryLevel::Histograms
    }
}

impl Default for TelemetryConfig {
    /// The default preset's value.
    fn default() -> Self {
        OptimizationConfig::default().telemetry
    }
}

impl AdmissionConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        check(
            self.min_limit >= 1,
            "adaptive_concurrency.min_limit",
            "must be >= 1",
            self.min_limit,
        )?;
        check(
            self.min_limit <= self.max_limit,
            "adaptive_concurrency.max_limit",
            format_args!(
                "min_limit <= initial_limit <= max_limit must hold (max_limit is below \
                 min_limit {})",
                self.min_limit
            ),
            self.max_limit,
        )?;
        check(
            (self.min_limit..=self.max_limit).contains(&self.initial_limit),
            "adaptive_concurrency.initial_limit",
            format_args!(
                "min_limit <= initial_limit <= max_limit must hold (min_limit {}, max_limit {})",
                self.min_limit, self.max_limit
            ),
            self.initial_limit,
        )?;
        crate::admission::check_tuning(self).map_err(|e| ConfigError::Invalid {
            field: e.config_path(),
            rule: e.to_string(),
        })
    }

    /// The bounds the limit moves within, in runs: `min_limit..=max_limit` when enabled, else
    /// `max_limit..=max_limit` (the limit fixed at `max_limit`).
    pub fn bounds(&self) -> (u32, u32) {
        if self.enabled {
            (self.min_limit, self.max_limit)
        } else {
            (self.max_limit, self.max_limit)
        }
    }
}

impl Default for AdmissionConfig {
    /// The default preset's value.
    fn default() -> Self {
        OptimizationConfig::default().adaptive_concurrency
    }
}

impl QueueConfig {
    /// Paths of the three capacities and their queue's name, so that an error names both.
    const CAPACITY_FIELDS: [(&'static str, &'static str); 3] = [
        ("queues.capacity[0]", "high"),
        ("queues.capacity[1]", "normal"),
        ("queues.capacity[2]", "low"),
    ];

    /// Checks each capacity is in `1..=`[`MAX_QUEUE_CAPACITY`] (what
    /// [`OptimizationConfig::validate`] and `PriorityQueues::new` check).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first wrong capacity, `queues.capacity[i]`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (&(field, queue), &capacity) in Self::CAPACITY_FIELDS.iter().zip(&self.capacity) {
            check(
                (1..=MAX_QUEUE_CAPACITY).contains(&capacity),
                field,
                format_args!(
                    "the {queue}-priority queue's capacity must be in 1..={MAX_QUEUE_CAPACITY}"
                ),
                capacity,
            )?;
        }
        Ok(())
    }
}

impl Default for QueueConfig {
    /// The default preset's value.
    fn default() -> Self {
        OptimizationConfig::default().queues
    }
}

/// `Ok` unless `value` is set to zero; the error names `field` and what leaving it out means.
fn check_positive(
    value: Option<Duration>,
    field: &'static str,
    unset_means: &str,
) -> Result<(), ConfigError> {
    let Some(d) = value else {
        return Ok(());
    };
    check(
        !d.is_zero(),
        field,
        format_args!("must be > 0 when set (\"none\": {unset_means})"),
        duration::format(d),
    )
}

/// Reads [`CacheConfig::ttl`]; errors name its path.
#[cfg(feature = "serde")]
fn de_ttl<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::serde_option::deserialize(d, "result_cache.ttl")
}

/// Reads [`CacheConfig::flight_timeout`]; errors name its path.
#[cfg(feature = "serde")]
fn de_flight_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::serde_option::deserialize(d, "result_cache.flight_timeout")
}

/// `Ok` when `ok`, else the error naming `field`, `rule` and the offending `value`.
fn check(
    ok: bool,
    field: &'static str,
    rule: impl fmt::Display,
    value: impl fmt::Display,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            field,
            rule: format!("{rule} (is {value})"),
        })
    }
}

#[cfg(feature = "serde")]
impl OptimizationConfig {
    /// Parses a TOML document and validates it. Fields left out take the default preset's
    /// ([`latency`](Self::latency)) values; unknown fields are errors.
    ///
    /// # Errors
    /// [`ConfigError::Toml`] with the parser's message (syntax, wrong type, unknown field),
    /// or the [`validate`](Self::validate) error.
    ///
    /// # Examples
    ///
    /// ```
    /// use flujo_runtime::config::{OptimizationConfig, TelemetryLevel};
    ///
    /// let cfg = OptimizationConfig::from_toml_str(
    ///     "workers = 4\n[telemetry]\nlevel = \"events\"\n",
    /// )
    /// .unwrap();
    /// assert_eq!(cfg.workers, 4);
    /// assert_eq!(cfg.telemetry.level, TelemetryLevel::Events);
    /// assert_eq!(cfg.queues, OptimizationConfig::latency().queues);
    ///
    /// let err = OptimizationConfig::from_toml_str("[result_cache]\nshards = 3\n").unwrap_err();
    /// assert_eq!(err.field(), Some("result_cache.shards"));
    /// assert!(OptimizationConfig::from_toml_str("turbo = true").is_err());
    /// ```
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Toml {
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// This configuration as a TOML document that [`from_toml_str`](Self::from_toml_str)
    /// reads back equal (without the comments of the `docs/config/` templates).
    ///
    /// # Errors
    /// [`ConfigError::Toml`] if a value does not fit TOML (an integer above `i64::MAX`); never
    /// for a configuration that validates (every size is bounded by [`MAX_SIZE`] or less).
    pub fn to_toml_string(&self) -> Result<String, ConfigError> {
        toml::to_string(self).map_err(|e| ConfigError::Toml {
            message: e.to_string(),
        })
    }
}

/// One switchable optimization, for turning each off in turn (benches W12, equality tests).
///
/// # Examples
///
/// ```
/// use flujo_runtime::config::{Optimization, OptimizationConfig};
///
/// for o in Optimization::ALL {
///     let off = OptimizationConfig::latency().with_off(o);
///     assert!(!off.is_on(o));
///     assert_eq!(off.validate(), Ok(()));
///     assert_eq!(Optimization::from_name(o.name()), Some(o));
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Optimization {
    /// [`OptimizationConfig::pooling`].
    Pooling,
    /// [`OptimizationConfig::copy_on_write`].
    CopyOnWrite,
    /// [`OptimizationConfig::fast_paths`].
    FastPaths,
    /// [`InlineCutoff::enabled`].
    InlineCutoff,
    /// [`CacheConfig::enabled`].
    ResultCache,
    /// [`TelemetryConfig::level`] (off = [`TelemetryLevel::Off`]).
    Telemetry,
    /// [`OptimizationConfig::breakers`] (a policy: can change results).
    Breakers,
    /// [`AdmissionConfig::enabled`].
    AdaptiveConcurrency,
}

impl Optimization {
    /// Every optimization, in the order of the configuration's fields.
    pub const ALL: [Self; 8] = [
        Self::Pooling,
        Self::CopyOnWrite,
        Self::FastPaths,
        Self::InlineCutoff,
        Self::ResultCache,
        Self::Telemetry,
        Self::Breakers,
        Self::AdaptiveConcurrency,
    ];

    /// The snake_case name, as the configuration's field and in bench ids
    /// (`W1_chain_off_copy_on_write`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pooling => "pooling",
            Self::CopyOnWrite => "copy_on_write",
            Self::FastPaths => "fast_paths",
            Self::InlineCutoff => "inline_cutoff",
            Self::ResultCache => "result_cache",
            Self::Telemetry => "telemetry",
            Self::Breakers => "breakers",
            Self::AdaptiveConcurrency => "adaptive_concurrency",
        }
    }

    /// The optimization called `name` (as [`name`](Self::name) spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Whether switching this off can change results: true only for
    /// [`Breakers`](Self::Breakers), which is a policy.
    pub const fn changes_results(self) -> bool {
        matches!(self, Self::Breakers)
    }
}

impl fmt::Display for Optimization {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A field breaks a rule.
    Invalid {
        /// The field's path from the root, as in TOML (`result_cache.max_entries`).
        field: &'static str,
        /// The rule, with the offending value.
        rule: String,
    },
    /// [`OptimizationConfig::preset`] was given a name that is not a preset.
    UnknownPreset {
        /// The name asked for.
        name: String,
    },
    /// TOML that does not parse or does not fit (syntax, wrong type, unknown field).
    Toml {
        /// The TOML parser's message (it names the line and the key).
        message: String,
    },
}

impl ConfigError {
    /// The path of the field at fault, for [`Invalid`](Self::Invalid).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { field, rule } => write!(f, "invalid config: {field}: {rule}"),
            Self::UnknownPreset { name } => write!(
                f,
                "unknown preset {name:?}: valid presets are {}",
                OptimizationConfig::PRESETS.join(", ")
            ),
            Self::Toml { message } => write!(f, "invalid config TOML: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

/// The configuration in force, swapped whole at run time.
///
/// Readers take an `Arc` snapshot with [`load`](Self::load) and keep it for as long as they
/// need (a run uses one snapshot from start to end); [`store`](Self::store) validates a new
/// configuration and replaces the snapshot in one step, so a reader sees either the old or the
/// new configuration whole, never a mix. Each successful store increments a generation, which
/// lets a pooled runner notice a change cheaply.
///
/// A `RwLock<(Arc<_>, u64)>`: a load holds the read lock only to clone the `Arc`, and stores
/// are rare. A poisoned lock is recovered, since the guarded pair is replaced in one assignment
/// and so is never half-written (`config/tests.rs`: `a_cell_hands_out_whole_snapshots`).
#[derive(Debug)]
pub(crate) struct ConfigCell {
    /// The snapshot in force and its generation (0 for the first, +1 per store).
    current: RwLock<(Arc<OptimizationConfig>, u64)>,
}

impl ConfigCell {
    /// A cell holding `cfg` at generation 0.
    ///
    /// # Errors
    /// The [`validate`](OptimizationConfig::validate) error of `cfg`.
    pub fn new(cfg: OptimizationConfig) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Self {
            current: RwLock::new((Arc::new(cfg), 0)),
        })
    }

    /// The configuration in force.
    pub fn load(&self) -> Arc<OptimizationConfig> {
        Arc::clone(&self.read().0)
    }

    /// The configuration in force and its generation, read together.
    pub fn load_with_generation(&self) -> (Arc<OptimizationConfig>, u64) {
        let guard = self.read();
        (Arc::clone(&guard.0), guard.1)
    }

    #[cfg(test)]
    /// The generation of the configuration in force.
    pub fn generation(&self) -> u64 {
        self.read().1
    }

    /// Validates `cfg` and makes it the configuration in force; returns its generation.
    ///
    /// # Errors
    /// The [`validate`](OptimizationConfig::validate) error; the configuration in force and
    /// the generation are then unchanged.
    pub fn store(&self, cfg: OptimizationConfig) -> Result<u64, ConfigError> {
        cfg.validate()?;
        let cfg = Arc::new(cfg);
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let generation = guard.1 + 1;
        *guard = (cfg, generation);
        Ok(generation)
    }

    #[cfg(test)]
    /// Replaces the configuration in force by `f(current)` under the write lock, so that two
    /// concurrent updates do not lose one another's change; returns the new generation.
    ///
    /// # Errors
    /// The [`validate`](OptimizationConfig::validate) error of the new configuration; nothing
    /// changes then.
    pub fn update(
        &self,
        f: impl FnOnce(&OptimizationConfig) -> OptimizationConfig,
    ) -> Result<u64, ConfigError> {
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let cfg = f(&guard.0);
        cfg.validate()?;
        let generation = guard.1 + 1;
        *guard = (Arc::new(cfg), generation);
        Ok(generation)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, (Arc<OptimizationConfig>, u64)> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for ConfigCell {
    /// A cell holding the default preset at generation 0.
    fn default() -> Self {
        Self {
            current: RwLock::new((Arc::new(OptimizationConfig::default()), 0)),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
